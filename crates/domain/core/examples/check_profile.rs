//! The check path under a profiler: builds an index of GRANTS active grants, then makes CHECKS
//! checks of the kind asked for: allowed ones spread over all grants, or denied ones.
//! `scripts/profile-check.sh` runs it under callgrind, counting instructions inside
//! `GrantIndex::check` only.
//!   cargo run --release -p jitgate-core --example check_profile -- 100000 100000 allow

#[path = "../benches/fixtures/mod.rs"]
mod fixtures;

use jitgate_core::CheckOutcome;
use std::hint::black_box;

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let (Some(Ok(grants)), Some(Ok(checks))) = (args.next(), args.next()) else {
        eprintln!("usage: check_profile GRANTS CHECKS allow|deny");
        std::process::exit(2);
    };
    let kind = std::env::args().nth(3).unwrap_or_default();
    let index = fixtures::index_with(grants);
    let keys = fixtures::spread_keys(grants);
    let now = chrono::Utc::now();
    let mut allowed = 0usize;
    for k in (0..checks).filter(|_| kind == "allow") {
        let (principal, resource) = &keys[k & 4095];
        if matches!(
            black_box(index.check(black_box(principal), black_box(resource), "read", None, now)),
            CheckOutcome::Allow { .. }
        ) {
            allowed += 1;
        }
    }
    let mut denied = 0usize;
    for k in (0..checks).filter(|_| kind == "deny") {
        let (_, resource) = &keys[k & 4095];
        if matches!(
            black_box(index.check(black_box("nobody"), black_box(resource), "read", None, now)),
            CheckOutcome::Deny { .. }
        ) {
            denied += 1;
        }
    }
    if allowed + denied != checks {
        eprintln!("{grants} grants: {allowed} allowed and {denied} denied of {checks} {kind} checks");
        std::process::exit(1);
    }
}
