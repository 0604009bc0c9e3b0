//! `policy diff` between two catalogs of 10,000 resources and 500 workflows (issue #21: under
//! 10 s). Run: cargo bench -p jitgate-policy --bench diff
//!
//! The two versions are generated here: a base, and a variant with 1% more resources, 0.5%
//! moved from staging to prod (another workflow governs them) and a few owner changes. Also
//! measured: the same diff when a principal joins the directory (every class is asked again),
//! and loading both versions plus the diff, as `jitgate policy diff` does.
//!
//! To diff directories written by `cargo run --release -p jitgate-policy --example
//! generate_catalog -- DIR [--variant]` instead, set JITGATE_BENCH_OLD and JITGATE_BENCH_NEW.

// A benchmark whose set-up fails should stop loudly.
#![allow(clippy::panic)]

use criterion::{criterion_group, criterion_main, Criterion};
use jitgate_policy::{diff, Policy};
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

const KINDS: [(&str, &[&str]); 4] = [
    ("postgres", &["read", "write"]),
    ("ssh", &["login"]),
    ("http", &["access"]),
    ("mcp", &["call"]),
];
const TEAMS: usize = 40;
const ENVS: [&str; 3] = ["prod", "staging", "dev"];

/// A policy directory's files: directory, workflows and catalog.
struct Texts {
    directory: String,
    workflows: String,
    resources: String,
}

fn generate(variant: bool, extra_principal: bool) -> Texts {
    let mut directory = String::from(
        "[[principal]]\nname = \"bob\"\ngroups = [\"sre\"]\n\n[[principal]]\nname = \"sre-2\"\ngroups = [\"sre\"]\n\n",
    );
    for t in 0..TEAMS {
        for n in 1..=3 {
            let _ = writeln!(
                directory,
                "[[principal]]\nname = \"t{t}-{n}\"\ngroups = [\"dev\", \"team-t{t}\"]\n"
            );
        }
    }
    if extra_principal {
        directory.push_str("[[principal]]\nname = \"newcomer\"\ngroups = [\"dev\", \"team-t0\"]\n\n");
    }
    // 10,000 resources over kinds, teams and environments; the variant adds 100, moves 50
    // from staging to prod and gives 20 other owners.
    let count = if variant { 10_100 } else { 10_000 };
    let mut resources = String::new();
    for i in 0..count {
        let (kind, _) = KINDS[i % KINDS.len()];
        let team = (i / KINDS.len()) % TEAMS;
        let mut env = ENVS[(i / (KINDS.len() * TEAMS)) % ENVS.len()];
        if variant && env == "staging" && i % 67 == 0 {
            env = "prod";
        }
        let owner = if variant && i % 500 == 7 {
            "sre".to_string()
        } else {
            format!("team-t{team}")
        };
        let _ = writeln!(
            resources,
            "[[resource]]\nname = \"{kind}-t{team}-{env}-{i:05}\"\nkind = \"{kind}\"\nlabels = {{ team = \"t{team}\", env = \"{env}\", region = \"r{}\" }}\nowners = [\"{owner}\"]\n",
            i % 3
        );
    }
    // 480 label selectors (kind x team x env), 20 globs over some production teams' postgres
    // (more specific than the labels) with owners steps.
    let mut workflows = String::new();
    for (kind, actions) in KINDS {
        for t in 0..TEAMS {
            for env in ENVS {
                let actions: Vec<String> = actions.iter().map(|a| format!("\"{a}\"")).collect();
                // A reviewed tool call must be bound to the exact call (`policy check`).
                let rules = match (env, kind) {
                    ("prod", "mcp") => {
                        "steps = [{ group = \"sre\", approvals = 1 }]\nmax_duration = \"1h\"\naction_bound = true"
                    }
                    ("prod", _) => "steps = [{ group = \"sre\", approvals = 1 }]\nmax_duration = \"1h\"",
                    _ => "auto_approve = true\nmax_duration = \"8h\"",
                };
                let _ = writeln!(
                    workflows,
                    "[[workflow]]\nresources = {{ kind = \"{kind}\", labels = {{ team = \"t{t}\", env = \"{env}\" }} }}\nactions = [{}]\nrequesters = [\"dev\"]\n{rules}\n",
                    actions.join(", ")
                );
            }
        }
    }
    for t in 0..20 {
        let _ = writeln!(
            workflows,
            "[[workflow]]\nresources = {{ names = [\"postgres-t{t}-prod-*\"] }}\naction = \"write\"\nrequesters = [\"team-t{t}\"]\nsteps = [{{ owners = true }}]\nreason_required = true\n"
        );
    }
    Texts {
        directory,
        workflows,
        resources,
    }
}

fn load(t: &Texts) -> Policy {
    match Policy::from_texts_with_catalog(
        &t.directory,
        &t.workflows,
        None,
        &[],
        &[("resources.toml".to_string(), t.resources.clone())],
    ) {
        Ok(p) => p,
        Err(e) => panic!("generated policy is invalid: {:?}", &e[..e.len().min(3)]),
    }
}

fn bench_diff(c: &mut Criterion) {
    let mut group = c.benchmark_group("diff");
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    if let (Ok(old), Ok(new)) = (std::env::var("JITGATE_BENCH_OLD"), std::env::var("JITGATE_BENCH_NEW")) {
        let load_dir = |d: &str| match Policy::load(Path::new(d)) {
            Ok(p) => p,
            Err(e) => panic!("{d} is invalid: {:?}", &e[..e.len().min(3)]),
        };
        let (o, n) = (load_dir(&old), load_dir(&new));
        let report = diff::review(&o, &n);
        eprintln!(
            "generated directories: {} changes in {} groups",
            report.changes.len(),
            report.groups.len()
        );
        // Once, for comparison: asking every subject about every pair, as diff did before.
        if std::env::var_os("JITGATE_BENCH_EXHAUSTIVE").is_some() {
            let started = std::time::Instant::now();
            let all = diff::diff_exhaustive(&o, &n);
            eprintln!(
                "exhaustive diff: {:?} ({} changes, {})",
                started.elapsed(),
                all.len(),
                if all == report.changes { "the same" } else { "DIFFERENT" }
            );
        }
        group.bench_function("generated directories: review", |b| {
            b.iter(|| diff::review(black_box(&o), black_box(&n)))
        });
        group.bench_function("generated directories: load both and review", |b| {
            b.iter(|| diff::review(&load_dir(&old), &load_dir(&new)))
        });
        group.finish();
        return;
    }
    let (old_texts, new_texts) = (generate(false, false), generate(true, false));
    let (old, new) = (load(&old_texts), load(&new_texts));
    let joined = load(&generate(true, true));
    let report = diff::review(&old, &new);
    eprintln!(
        "10,000 -> 10,100 resources, 500 workflows: {} changes in {} groups",
        report.changes.len(),
        report.groups.len()
    );
    group.bench_function("10k catalog edited: review", |b| {
        b.iter(|| diff::review(black_box(&old), black_box(&new)))
    });
    group.bench_function("10k catalog edited, a principal added: review", |b| {
        b.iter(|| diff::review(black_box(&old), black_box(&joined)))
    });
    group.bench_function("10k catalog edited: load both and review", |b| {
        b.iter(|| diff::review(&load(&old_texts), &load(&new_texts)))
    });
    group.finish();
}

criterion_group!(benches, bench_diff);
criterion_main!(benches);
