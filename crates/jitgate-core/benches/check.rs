//! The in-process decision: (principal, resource, action) → allow/deny with expiry judged.
//! Run: cargo bench -p jitgate-core --bench check

use chrono::TimeDelta;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use jitgate_core::{Grant, GrantIndex, GrantStatus};
use std::hint::black_box;

fn index_with(n: usize) -> GrantIndex {
    let now = chrono::Utc::now();
    let mut index = GrantIndex::new();
    for i in 0..n {
        index.upsert(&Grant {
            id: format!("grant-{i}"),
            request_id: format!("request-{i}"),
            principal: format!("user-{}", i % 10_000),
            resource: format!("resource-{}", i / 10_000),
            action: "read".into(),
            payload_sha256: None,
            single_use: false,
            break_glass: false,
            status: GrantStatus::Active,
            starts_at: now - TimeDelta::seconds(1),
            expires_at: now + TimeDelta::hours(1),
            ended_at: None,
            ended_by: None,
            end_comment: None,
            extensions: 0,
            token: None,
            providers: Vec::new(),
        });
    }
    index
}

fn bench_check(c: &mut Criterion) {
    let mut group = c.benchmark_group("check");
    for n in [1_000usize, 10_000, 100_000, 1_000_000] {
        let index = index_with(n);
        let now = chrono::Utc::now();
        let last = n - 1;
        let principal = format!("user-{}", last % 10_000);
        let resource = format!("resource-{}", last / 10_000);
        group.bench_with_input(BenchmarkId::new("allow", n), &n, |b, _| {
            b.iter(|| {
                index.check(
                    black_box(&principal),
                    black_box(&resource),
                    black_box("read"),
                    None,
                    now,
                )
            })
        });
        // The same grant every time stays in the CPU's caches; a real caller asks about
        // anyone. Spread checks over every grant (the keys are made beforehand).
        let keys: Vec<(String, String)> = (0..4096)
            .map(|k| {
                let i = (k * 7919 + 13) % n;
                (format!("user-{}", i % 10_000), format!("resource-{}", i / 10_000))
            })
            .collect();
        let mut next = 0usize;
        group.bench_with_input(BenchmarkId::new("allow_spread", n), &n, |b, _| {
            b.iter(|| {
                next = (next + 1) & 4095;
                let (principal, resource) = &keys[next];
                index.check(black_box(principal), black_box(resource), black_box("read"), None, now)
            })
        });
        group.bench_with_input(BenchmarkId::new("deny", n), &n, |b, _| {
            b.iter(|| index.check(black_box("nobody"), black_box(&resource), black_box("read"), None, now))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_check);
criterion_main!(benches);
