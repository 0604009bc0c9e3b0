//! Issue #21: the policy at catalog scale. Loading and validating the generated directory of
//! 10,000 resources and 500 workflows (with two authored Cedar policies over labels and
//! collections), and `Policy::admit` for a resource in the middle of that catalog.
//! Run: cargo bench -p jitgate-policy --bench catalog

// A benchmark whose set-up fails should stop loudly.
#![allow(clippy::panic)]

use criterion::{criterion_group, criterion_main, Criterion};
use jitgate_core::{Ask, Identity};
use jitgate_policy::Policy;
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

#[allow(dead_code)]
#[path = "../examples/generate_catalog.rs"]
mod generate_catalog;

/// Authored policies that read labels (tags), kinds and collections, so that evaluation does.
const CEDAR: &str = r#"
@id("prod-freeze-at-weekends")
forbid(principal, action == Action::"request", resource)
when { resource.hasTag("env") && resource.getTag("env") == "prod" && context.weekday >= 6 && context.access != "read" };

@id("pci-is-reviewed")
forbid(principal, action == Action::"auto_approve", resource in Collection::"pci");

@id("staging-reads-for-on-call")
permit(principal, action == Action::"auto_approve", resource)
when { resource.kind == "postgres" && resource.hasTag("env") && resource.getTag("env") == "staging" && context.on_call.contains("sre") };
"#;

fn generated(dir: &Path, resources: usize, workflows: usize) {
    let options = generate_catalog::Options {
        out: dir.to_path_buf(),
        resources,
        workflows,
        seed: 1,
        variant: false,
    };
    if let Err(e) = generate_catalog::generate(&options) {
        panic!("cannot generate the catalog: {e}");
    }
    if let Err(e) = std::fs::write(dir.join("catalog.cedar"), CEDAR) {
        panic!("cannot write catalog.cedar: {e}");
    }
}

fn load(dir: &Path) -> Policy {
    match Policy::load(dir) {
        Ok(p) => p,
        Err(e) => panic!("the generated policy is invalid: {:?}", &e[..e.len().min(5)]),
    }
}

/// From the middle of the catalog (by name) on, the first request a team member may file
/// that is automatic (`want_automatic`) or waits for review.
fn pick(policy: &Policy, want_automatic: bool) -> (Identity, String, &'static str) {
    let now = wednesday();
    let names: Vec<String> = policy.rules().catalog().resources().map(|r| r.name.clone()).collect();
    for name in &names[names.len() / 2..] {
        let team = name.split('-').nth(1).unwrap_or_default();
        let who = Identity::user(&format!("{team}-1"), &["dev", &format!("team-{team}")]);
        for action in ["read", "write", "login", "access", "call", "deploy", "admin"] {
            if let Ok(a) = policy.admit(&who, &ask(name, action), now) {
                if a.requirement.steps.is_empty() == want_automatic {
                    return (who, name.clone(), action);
                }
            }
        }
    }
    panic!("no resource from the middle of the catalog can be filed for");
}

fn ask<'a>(resource: &'a str, action: &'a str) -> Ask<'a> {
    Ask {
        resource,
        action,
        duration: None,
        reason: "OPS-1 benchmark",
        payload: None,
        break_glass: false,
    }
}

fn wednesday() -> jitgate_core::Timestamp {
    chrono::DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn bench_catalog(c: &mut Criterion) {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    let big = dir.path().join("10k");
    let small = dir.path().join("1k");
    generated(&big, 10_000, 500);
    generated(&small, 1_000, 50);
    let mut group = c.benchmark_group("catalog");
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    group.bench_function("load+validate 10k resources, 500 workflows", |b| {
        b.iter(|| load(black_box(&big)))
    });
    group.finish();

    let now = wednesday();
    for (label, dir) in [("10k", &big), ("1k", &small)] {
        let policy = load(dir);
        for (case, automatic) in [("needs approval", false), ("automatic", true)] {
            let (who, resource, action) = pick(&policy, automatic);
            eprintln!("{label} {case}: {} {action} on {resource}", who.principal);
            let ask = ask(&resource, action);
            c.bench_function(&format!("catalog/admit mid-catalog {label}, {case}"), |b| {
                b.iter(|| policy.admit(black_box(&who), black_box(&ask), now))
            });
        }
    }
}

criterion_group!(benches, bench_catalog);
criterion_main!(benches);
