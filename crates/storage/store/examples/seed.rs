//! Data generator for benchmarks: fills a jitgate database with N active grants, through the
//! same core transitions and store the server uses (so the audit chain is real too).
//!
//! cargo run --release -p jitgate-store --example seed -- PATH N [HOURS]
//!
//! Grant i belongs to principal `user-{i % 10000}` for `read` on `resource-{i / 10000}`.
//! All of them end at the same moment. `SEED_EXPIRES_IN=40s` sets their length instead of
//! HOURS, and `SEED_PROVIDER=NAME` gives each one a provider (its provisioning and
//! deprovisioning go into the outbox), for the expiry benchmark.

use jitgate_core::machine::{self, NewIds};
use jitgate_core::{Admission, Ask, DurationSecs, Identity, Requirement};
use jitgate_store::{SqliteStore, Store};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err("usage: seed PATH N [HOURS]".into());
    }
    let path = &args[1];
    let n: usize = args[2].parse()?;
    let hours: u64 = args.get(3).map(|h| h.parse()).transpose()?.unwrap_or(8);
    let length = match std::env::var("SEED_EXPIRES_IN") {
        Ok(text) => jitgate_core::parse_duration(&text)?,
        Err(_) => DurationSecs(hours * 3600),
    };
    let providers: Vec<String> = std::env::var("SEED_PROVIDER").into_iter().collect();
    let admission = Admission {
        requirement: Requirement {
            steps: Vec::new(),
            single_use: false,
            action_bound: false,
            pending_ttl: DurationSecs(3600),
            review_groups: Vec::new(),
            alert: None,
            providers: providers.clone(),
            escalation: None,
        },
        duration: length,
        decided_by: None,
    };
    let store = SqliteStore::open(path).await?;
    let now = jitgate_core::millis(chrono::Utc::now());
    let started = std::time::Instant::now();
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..n {
        let who = Identity::user(&format!("user-{}", i % 10_000), &["bench"]);
        let resource = format!("resource-{}", i / 10_000);
        let ask = Ask {
            resource: &resource,
            action: "read",
            duration: Some(length),
            reason: "seed",
            payload: None,
            break_glass: false,
        };
        let ids = NewIds {
            request_id: format!("req_seed{i:08}"),
            grant_id: format!("grt_seed{i:08}"),
        };
        let t = machine::file(&who, &ask, admission.clone(), ids, now);
        batch.push((t.request, t.events));
        if batch.len() == 10_000 {
            store.create_requests(&batch).await?;
            batch.clear();
        }
    }
    store.create_requests(&batch).await?;
    eprintln!(
        "seeded {n} active grants into {path} in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
