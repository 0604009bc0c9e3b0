//! Crash test (issue #11): the server is killed with SIGKILL at random moments, twenty times,
//! while callers file automatic and reviewed requests, approve them and check grants. After
//! every restart each acknowledged write must be there (a 201 filing, a 200 approval), the
//! audit chain must verify, and in the end no grant may outlive its window.

use crate::support::*;
use rand::{Rng, SeedableRng};
use reqwest::blocking::Client;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

const KILLS: usize = 20;
const PACE: Duration = Duration::from_millis(10);

/// What the server acknowledged: these must survive every crash.
#[derive(Default)]
struct Acknowledged {
    /// Automatic filings (granted on the spot).
    granted: Vec<String>,
    /// Reviewed filings, pending when acknowledged.
    filed: Vec<String>,
    /// Reviewed filings whose approval was acknowledged.
    approved: Vec<String>,
}

fn post(http: &Client, url: &str, path: &str, token: &str, body: Value) -> Option<(u16, Value)> {
    let resp = http
        .post(format!("{url}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .ok()?;
    let status = resp.status().as_u16();
    let v = resp.json().ok()?;
    Some((status, v))
}

/// Callers that keep filing, approving and checking until told to stop, at a steady pace (so
/// that what they wrote can be read back in the test's time). Calls cut off by a crash fail
/// and are simply not acknowledged.
fn load(url: &str, stop: &AtomicBool, acknowledged: &Mutex<Acknowledged>) {
    let http = Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    std::thread::scope(|scope| {
        // alice: automatic grants of two seconds.
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let body = json!({"resource": "staging-db", "action": "read", "duration": "2s"});
                if let Some((201, v)) = post(&http, url, "/v1/requests", "demo-alice", body) {
                    acknowledged.lock().unwrap().granted.push(id(&v));
                }
                std::thread::sleep(PACE);
            }
        });
        // dave files prod-db reads; bob approves them.
        scope.spawn(|| {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let body =
                    json!({"resource": "prod-db", "action": "read", "duration": "3s", "reason": format!("INC-{n}")});
                let Some((201, v)) = post(&http, url, "/v1/requests", "demo-dave", body) else {
                    std::thread::sleep(PACE);
                    continue;
                };
                let rid = id(&v);
                acknowledged.lock().unwrap().filed.push(rid.clone());
                std::thread::sleep(PACE);
                let path = format!("/v1/requests/{rid}/approve");
                if let Some((200, _)) = post(&http, url, &path, "demo-bob", json!({})) {
                    acknowledged.lock().unwrap().approved.push(rid);
                }
            }
        });
        // A service checks both.
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                for (principal, resource) in [("alice", "staging-db"), ("dave", "prod-db")] {
                    let body = json!({"principal": principal, "resource": resource, "action": "read"});
                    post(&http, url, "/v1/check", "demo-svc", body);
                }
                std::thread::sleep(PACE);
            }
        });
    });
}

/// Every acknowledged write is there: those acknowledged since the last look, a random
/// sample of the older ones (all of them when `all`), and the audit chain verifies.
fn assert_nothing_lost(
    s: &Server,
    acknowledged: &Acknowledged,
    since: &mut [usize; 3],
    all: bool,
    rng: &mut impl Rng,
    after: &str,
) {
    let lists = [&acknowledged.granted, &acknowledged.filed, &acknowledged.approved];
    for (kind, (list, seen)) in lists.iter().zip(since.iter_mut()).enumerate() {
        let mut look: Vec<&String> = list[*seen..].iter().collect();
        if all {
            look = list.iter().collect();
        } else if *seen > 0 {
            look.extend((0..50).map(|_| &list[rng.gen_range(0..*seen)]));
        }
        for rid in look {
            let (status, v) = s.get(&format!("/v1/requests/{rid}"), "demo-admin");
            assert_eq!(status, 200, "{after}: acknowledged filing {rid} is lost: {v}");
            if kind != 1 {
                assert_eq!(
                    v["status"], "approved",
                    "{after}: acknowledged approval of {rid} is lost: {v}"
                );
                assert!(v["grant"].is_object(), "{after}: {rid} lost its grant: {v}");
            }
        }
        *seen = list.len();
    }
    let (status, verify) = s.get("/v1/audit/verify", "demo-admin");
    assert_eq!(status, 200, "{verify}");
    assert_eq!(verify["ok"], true, "{after}: the audit chain is broken: {verify}");
}

#[test]
fn nothing_acknowledged_is_lost_across_twenty_kills() {
    let seed: u64 = rand::random();
    println!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut s = Server::start();
    let url = s.url.clone();
    let stop = AtomicBool::new(false);
    let acknowledged = Mutex::new(Acknowledged::default());
    let mut since = [0; 3];
    std::thread::scope(|scope| {
        let load = scope.spawn(|| load(&url, &stop, &acknowledged));
        for kill in 1..=KILLS {
            std::thread::sleep(Duration::from_millis(rng.gen_range(150..900)));
            s.kill9_and_restart();
            // A snapshot: the load goes on while it is checked.
            let snapshot = {
                let a = acknowledged.lock().unwrap();
                Acknowledged {
                    granted: a.granted.clone(),
                    filed: a.filed.clone(),
                    approved: a.approved.clone(),
                }
            };
            assert_nothing_lost(&s, &snapshot, &mut since, false, &mut rng, &format!("kill {kill}"));
        }
        stop.store(true, Ordering::Relaxed);
        load.join().unwrap();
    });
    let acknowledged = acknowledged.into_inner().unwrap();
    println!(
        "{KILLS} kills: {} automatic filings, {} reviewed filings, {} approvals acknowledged",
        acknowledged.granted.len(),
        acknowledged.filed.len(),
        acknowledged.approved.len()
    );
    assert!(
        acknowledged.granted.len() >= KILLS && acknowledged.approved.len() >= KILLS,
        "the load must really run between kills"
    );
    assert_nothing_lost(&s, &acknowledged, &mut since, true, &mut rng, "the end");

    // No grant outlives its window: once the last one's end has passed, checks refuse and
    // the store holds no active grant (the worker records the expiries after the crashes).
    std::thread::sleep(Duration::from_secs(3));
    for (principal, resource) in [("alice", "staging-db"), ("dave", "prod-db")] {
        let v = s.check(principal, resource, "read", None);
        assert_eq!(
            v["allow"], false,
            "{principal} on {resource} after every grant ended: {v}"
        );
    }
    // What the store holds, not what the clock implies: the worker recorded every expiry,
    // crashes notwithstanding (its event is written with the grant's new state).
    for rid in acknowledged.granted.iter().chain(&acknowledged.approved) {
        wait_until(&format!("{rid}'s expiry is recorded"), || {
            s.event_kinds(rid).iter().any(|k| k == "grant.expired")
        });
    }
}
