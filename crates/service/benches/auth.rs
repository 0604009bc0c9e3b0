//! Bearer-token lookup: a valid token, an unknown one, and a "near miss" (a valid token with its
//! last character changed) must cost the same, so response time tells a guesser nothing.
//! Run: cargo bench -p jitgate-service --bench auth

// Benchmark set-up: a failure should abort loudly.
#![allow(clippy::panic)]

use criterion::{criterion_group, criterion_main, Criterion};
use jitgate_core::ApiToken;
use jitgate_service::auth::tokens::{generate, hash_hex, TokenTable};
use std::hint::black_box;

fn table(n: usize) -> (TokenTable, String) {
    let policy = jitgate_policy::Policy::from_texts("", "", None, &[]).unwrap_or_else(|e| panic!("{e:?}"));
    let now = chrono::Utc::now();
    let mut tokens = Vec::with_capacity(n);
    let mut last = String::new();
    for i in 0..n {
        last = generate().unwrap_or_else(|e| panic!("{e}"));
        tokens.push(ApiToken {
            id: format!("tok_{i}"),
            hash: hash_hex(&last),
            principal: format!("svc-{i}"),
            groups: Vec::new(),
            service: true,
            on_behalf_of: None,
            scim: false,
            label: None,
            created_by: "admin".into(),
            created_at: now,
            expires_at: None,
            revoked_at: None,
            revoked_by: None,
        });
    }
    (TokenTable::build(&policy, &tokens), last)
}

fn lookups(c: &mut Criterion) {
    let (table, valid) = table(10_000);
    let now = chrono::Utc::now();
    let unknown = generate().unwrap_or_else(|e| panic!("{e}"));
    let mut near_miss = valid.clone();
    let flipped = if near_miss.ends_with('0') { '1' } else { '0' };
    near_miss.pop();
    near_miss.push(flipped);
    let mut group = c.benchmark_group("token_lookup_10k");
    for (name, token) in [("valid", &valid), ("unknown", &unknown), ("near_miss", &near_miss)] {
        group.bench_function(name, |b| {
            b.iter(|| black_box(table.lookup(black_box(token), now).is_ok()))
        });
    }
    group.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
