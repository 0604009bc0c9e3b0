//! Several `jitgate serve` replicas on one real PostgreSQL (started by
//! `scripts/test-postgres.sh`) behave as one system: what one commits takes effect on every
//! replica's `/v1/check` within a second, concurrent approvals on different replicas issue
//! one grant, and a single-use grant is consumed once across replicas.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::postgres::{Postgres, SUPERUSER_PASSWORD};
use support::*;

/// A database on a throwaway PostgreSQL and `n` replicas serving it.
fn replicas(pg: &Postgres, n: usize) -> Vec<Server> {
    pg.admin("postgres", "CREATE DATABASE jitgate");
    let url = pg.url("postgres", SUPERUSER_PASSWORD, "jitgate");
    (0..n)
        .map(|_| Server::start_on(&quickstart(), None, Some(&url)))
        .collect()
}

/// How long until `done` holds (at most 5 s).
fn within(what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(5), "{what}: not after 5 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    started.elapsed()
}

/// The replica's `jitgate_active_grants` gauge.
fn active_grants(s: &Server) -> u64 {
    let (_, metrics) = s.get("/metrics", "");
    metrics
        .as_str()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("jitgate_active_grants "))
        .unwrap()
        .parse()
        .unwrap()
}

fn allowed(s: &Server, principal: &str, resource: &str, action: &str) -> bool {
    s.check(principal, resource, action, None)["allow"] == true
}

#[test]
fn what_one_replica_commits_every_replica_enforces_within_a_second() {
    let pg = Postgres::start();
    let servers = replicas(&pg, 2);
    let (a, b) = (&servers[0], &servers[1]);

    // Filed on A, approved on B: A allows within a second; a caller long-polling on A hears
    // of B's decision.
    let r = a.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "read", "duration": "30m", "reason": "INC-1"}),
    );
    let rid = id(&r);
    assert!(!allowed(a, "alice", "prod-db", "read"));
    let waiter = {
        let (url, rid) = (a.url.clone(), rid.clone());
        std::thread::spawn(move || {
            let answer: Value = reqwest::blocking::Client::new()
                .get(format!("{url}/v1/requests/{rid}?wait=30s"))
                .bearer_auth("demo-alice")
                .send()
                .unwrap()
                .json()
                .unwrap();
            (answer, Instant::now())
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let approving = Instant::now();
    let (status, approved) = b.post(&format!("/v1/requests/{rid}/approve"), "demo-bob", json!({}));
    assert_eq!(status, 200, "{approved}");
    let took = within("A allows B's approval", || allowed(a, "alice", "prod-db", "read"));
    eprintln!("approval on B enforced on A after {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    let (answer, heard) = waiter.join().unwrap();
    assert_eq!(answer["status"], "approved");
    assert!(heard.duration_since(approving) < Duration::from_secs(1));

    // Revoked on A: B refuses within a second.
    let gid = approved["grant"]["id"].as_str().unwrap().to_string();
    assert!(allowed(b, "alice", "prod-db", "read"));
    assert_eq!(
        a.post(&format!("/v1/grants/{gid}/revoke"), "demo-alice", json!({})).0,
        200
    );
    let took = within("B refuses A's revocation", || !allowed(b, "alice", "prod-db", "read"));
    eprintln!("revocation on A enforced on B after {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");

    // Expiry needs no message: a 2-second grant is refused on both at its end.
    let short = a.file(
        "demo-alice",
        json!({"resource": "staging-db", "action": "read", "duration": "2s"}),
    );
    within("B holds the grant", || allowed(b, "alice", "staging-db", "read"));
    let end = chrono::DateTime::parse_from_rfc3339(short["grant"]["expires_at"].as_str().unwrap()).unwrap();
    std::thread::sleep(Duration::from_millis(
        u64::try_from(
            (end.with_timezone(&chrono::Utc) - chrono::Utc::now())
                .num_milliseconds()
                .max(0),
        )
        .unwrap()
            + 50,
    ));
    assert!(!allowed(a, "alice", "staging-db", "read") && !allowed(b, "alice", "staging-db", "read"));

    // An API token made on A works on B; revoked on A, B refuses it within a second.
    let (code, out, err) = a.cli(
        "demo-admin",
        &[
            "token",
            "create",
            "--principal",
            "svc-billing",
            "--service",
            "--output",
            "json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    let token = created["token"].as_str().unwrap();
    within("B knows the new token", || {
        b.post(
            "/v1/check",
            token,
            json!({"principal": "x", "resource": "y", "action": "z"}),
        )
        .0 == 200
    });
    let (code, _, err) = a.cli("demo-admin", &["token", "revoke", created["id"].as_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let took = within("B refuses the revoked token", || {
        b.post(
            "/v1/check",
            token,
            json!({"principal": "x", "resource": "y", "action": "z"}),
        )
        .0 == 401
    });
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[test]
fn concurrent_approvals_and_single_use_across_replicas_count_once() {
    let pg = Postgres::start();
    let servers = replicas(&pg, 3);

    // prod-db write needs two distinct sre: bob and carol approve at the same moment on
    // different replicas, erin on a third. Exactly one grant is issued; the approval that came
    // too late is refused as already decided, never counted.
    for round in 0..5 {
        let r = servers[0].file(
            "demo-alice",
            json!({"resource": "prod-db", "action": "write", "duration": "10m", "reason": format!("OPS-{round} fix")}),
        );
        let rid = id(&r);
        let results: Vec<(u16, Value)> = std::thread::scope(|scope| {
            let handles: Vec<_> = ["demo-bob", "demo-carol", "demo-erin"]
                .iter()
                .zip(&servers)
                .map(|(token, s)| {
                    let path = format!("/v1/requests/{rid}/approve");
                    scope.spawn(move || s.post(&path, token, json!({})))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let ok = results.iter().filter(|(status, _)| *status == 200).count();
        assert_eq!(ok, 2, "two approvals count, the third finds it decided: {results:?}");
        assert!(
            results.iter().all(|(status, _)| *status == 200 || *status == 409),
            "{results:?}"
        );
        let kinds = servers[1].event_kinds(&rid);
        assert_eq!(kinds.iter().filter(|k| *k == "grant.issued").count(), 1, "{kinds:?}");
        assert_eq!(
            kinds.iter().filter(|k| *k == "request.approval").count(),
            2,
            "{kinds:?}"
        );
    }

    // A single-use grant checked 30 times at once across three replicas: exactly one allow.
    let r = servers[0].file(
        "demo-alice",
        json!({"resource": "prod-api", "action": "deploy", "duration": "10m", "reason": "release", "payload": "sha256:ab12"}),
    );
    let (status, _) = servers[1].post(&format!("/v1/requests/{}/approve", id(&r)), "demo-bob", json!({}));
    assert_eq!(status, 200);
    let held = active_grants(&servers[1]);
    for s in &servers {
        within("every replica holds the grant", || active_grants(s) == held);
    }
    let allows: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..30)
            .map(|i| {
                let s = &servers[i % servers.len()];
                scope.spawn(move || {
                    usize::from(s.check("alice", "prod-api", "deploy", Some("sha256:ab12"))["allow"] == true)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(allows, 1, "a single-use grant allows once across replicas");
    let (_, verify) = servers[2].get("/v1/audit/verify", "demo-admin");
    assert_eq!(verify["ok"], true, "{verify}");
}
