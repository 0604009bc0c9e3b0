//! The in-process decision: (principal, resource, action) → allow/deny with expiry judged.
//! Run: cargo bench -p jitgate-core --bench check

mod fixtures;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use fixtures::{index_with, spread_keys};
use std::hint::black_box;

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
        let keys = spread_keys(n);
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
