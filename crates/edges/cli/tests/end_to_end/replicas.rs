//! Several `jitgate serve` replicas on one real PostgreSQL (started by
//! `scripts/test-postgres.sh`) behave as one system: what one commits takes effect on every
//! replica's `/v1/check` within a second, concurrent approvals on different replicas issue
//! one grant, and a single-use grant is consumed once across replicas.

use crate::support::postgres::{Postgres, SUPERUSER_PASSWORD};
use crate::support::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A database on a throwaway PostgreSQL and `n` replicas serving it.
fn replicas(pg: &Postgres, n: usize) -> Vec<Server> {
    pg.admin("postgres", "CREATE DATABASE jitgate");
    let url = pg.url("postgres", SUPERUSER_PASSWORD, "jitgate");
    // Denied checks are flushed as `check.denied` events once a window ends (60 s by default):
    // the tests here deny checks on purpose and compare audit logs, so no window ends while
    // one runs, however slow the machine.
    (0..n)
        .map(|_| {
            Server::start_on(
                &quickstart(),
                Some("[audit]\ndenied_checks_every = \"1h\"\n"),
                Some(&url),
            )
        })
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
    // The caller waits on A before B decides (not a guess of how long its connection takes).
    within("the caller waits on A", || {
        let (_, metrics) = a.get("/metrics", "");
        metrics.as_str().unwrap().contains("jitgate_waiting_callers 1")
    });
    let (status, approved) = b.post(&format!("/v1/requests/{rid}/approve"), "demo-bob", json!({}));
    assert_eq!(status, 200, "{approved}");
    // Timed from B's 200: the approval's own commit is no part of how fast A passes it on.
    let approving = Instant::now();
    let took = within("A allows B's approval", || allowed(a, "alice", "prod-db", "read"));
    eprintln!("approval on B enforced on A after {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    let (answer, heard) = waiter.join().unwrap();
    assert_eq!(answer["status"], "approved");
    assert!(heard.saturating_duration_since(approving) < Duration::from_secs(1));

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

    // An agent token made on A is an agent on B too: its person comes along, so B files its
    // request for that person and refuses it any review.
    let (status, agent) = a.post(
        "/v1/tokens",
        "demo-admin",
        json!({"principal": "claude-bob", "agent_for": "bob"}),
    );
    assert_eq!(status, 201, "{agent}");
    let agent = agent["token"].as_str().unwrap().to_string();
    within("B knows the agent token", || b.get("/v1/requests", &agent).0 == 200);
    let filed = b.file(
        &agent,
        json!({"resource": "prod-db", "action": "read", "duration": "10m", "reason": "INC-1 on B"}),
    );
    assert_eq!(filed["on_behalf_of"], "bob", "{filed}");
    let (status, v) = b.post(&format!("/v1/requests/{}/approve", id(&filed)), "demo-bob", json!({}));
    assert_eq!(status, 403, "{v}");

    // Signing keys rotated on A are published by B within a second.
    let (code, out, err) = a.cli("demo-admin", &["keys", "rotate", "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    let kid = serde_json::from_str::<Value>(&out).unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_string();
    let took = within("B publishes A's new key", || {
        b.get("/.well-known/jwks.json", "").1.to_string().contains(&kid)
    });
    assert!(took < Duration::from_secs(1), "{took:?}");

    // PostgreSQL goes away: readiness fails and writes answer 503, never a wrong answer; it
    // comes back: both replicas serve again by themselves, nothing acknowledged is lost, and
    // changes cross replicas again.
    let log = |s: &Server| -> Vec<Value> {
        let (status, v) = s.get("/v1/audit?limit=5000", "demo-admin");
        assert_eq!(status, 200, "{v}");
        v["items"].as_array().unwrap().clone()
    };
    // A single-use grant, approved, not yet used: while the database is away its check cannot
    // be recorded, so it is denied (fail closed), counted, and the grant stays unused.
    const DEPLOY: &str = "deploy sha256:4f1c";
    let r = a.file(
        "demo-alice",
        json!({"resource": "prod-api", "action": "deploy", "duration": "30m", "reason": "REL-9", "payload": DEPLOY}),
    );
    assert_eq!(
        a.post(&format!("/v1/requests/{}/approve", id(&r)), "demo-bob", json!({}))
            .0,
        200
    );
    let deploy_check = json!({"principal": "alice", "resource": "prod-api", "action": "deploy", "payload": DEPLOY});
    // B holds the grant before the database goes (it learns of it through NOTIFY and reads it
    // from the database, which could otherwise be gone before it did).
    let b_holds_the_grant = || {
        within("B holds the single-use grant", || active_grants(b) == active_grants(a));
    };
    b_holds_the_grant();
    let before = log(a);
    pg.pause();
    let (status, v) = a.post("/v1/check", "demo-svc", deploy_check.clone());
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["allow"], false, "a decision that cannot be recorded is a deny: {v}");
    assert!(v["reason"].as_str().unwrap().contains("could not be recorded"), "{v}");
    assert_eq!(v["error"], true, "marked, so that the caller retries: {v}");
    let metrics = a.http.get(format!("{}/metrics", a.url)).send().unwrap().text().unwrap();
    assert!(
        metrics.contains("jitgate_check_errors_total 1"),
        "the failure alarms: {metrics}"
    );
    for s in [a, b] {
        let (status, _) = s.get("/readyz", "");
        assert_eq!(status, 503);
        let (status, v) = s.post(
            "/v1/requests",
            "demo-alice",
            json!({"resource": "staging-db", "action": "read", "duration": "1h"}),
        );
        assert_eq!(status, 503, "{v}");
        assert_eq!(v["error"]["code"], "unavailable");
    }
    pg.resume();
    for s in [a, b] {
        within("ready again", || s.get("/readyz", "").0 == 200);
    }
    // Every event from before is there, unchanged; the refused writes left nothing. The
    // only events since are the expiry worker's (the 2-second grant above may be recorded as
    // expired at any moment).
    let after = log(a);
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "nothing acknowledged was lost or changed"
    );
    for e in &after[before.len()..] {
        assert!(
            e["actor"] == "system" && e["kind"].as_str().unwrap().ends_with(".expired"),
            "nothing half-written stayed: {e}"
        );
    }
    // The denied check consumed nothing: the grant allows once now, and only once. B is ready
    // (its database answers), which is not the same as caught up: it is asked once it holds
    // the grant again (the gauge consumes nothing).
    b_holds_the_grant();
    let (_, v) = b.post("/v1/check", "demo-svc", deploy_check.clone());
    assert_eq!(v["allow"], true, "{v}");
    let (_, v) = a.post("/v1/check", "demo-svc", deploy_check);
    assert_eq!(v["allow"], false, "{v}");
    let r = a.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "read", "duration": "30m", "reason": "INC-2"}),
    );
    assert_eq!(
        a.post(&format!("/v1/requests/{}/approve", id(&r)), "demo-bob", json!({}))
            .0,
        200
    );
    let took = within("B follows A again after the restart", || {
        allowed(b, "alice", "prod-db", "read")
    });
    eprintln!("after the database restart, an approval on A reached B in {took:?}");
    let (_, verify) = b.get("/v1/audit/verify", "demo-admin");
    assert_eq!(verify["ok"], true, "{verify}");
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
        let started = Instant::now();
        while active_grants(s) != held {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "every replica holds the grant: {:?}",
                servers.iter().map(active_grants).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
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
    // A replica killed mid-load costs nothing but its in-flight requests: every request any
    // replica acknowledged (201) is there afterwards, on the replicas left.
    let victim = servers[0].child.id().to_string();
    let acknowledged: Vec<String> = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..6)
            .map(|w| {
                let s = &servers[w % servers.len()];
                scope.spawn(move || {
                    let mut ids = Vec::new();
                    for _ in 0..40 {
                        let sent = s
                            .http
                            .post(format!("{}/v1/requests", s.url))
                            .bearer_auth("demo-alice")
                            .json(&json!({"resource": "staging-db", "action": "read", "duration": "1h"}))
                            .send();
                        // The killed replica's in-flight and later requests fail; that is all.
                        let Ok(response) = sent else { break };
                        if response.status().as_u16() == 201 {
                            let v: Value = response.json().unwrap();
                            ids.push(v["id"].as_str().unwrap().to_string());
                        }
                    }
                    ids
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        assert!(std::process::Command::new("kill")
            .args(["-9", &victim])
            .status()
            .unwrap()
            .success());
        writers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    assert!(
        acknowledged.len() >= 160,
        "the replicas left kept serving: {}",
        acknowledged.len()
    );
    for rid in &acknowledged {
        assert_eq!(
            servers[1].get(&format!("/v1/requests/{rid}"), "demo-alice").0,
            200,
            "{rid} was lost"
        );
    }
    let (_, verify) = servers[2].get("/v1/audit/verify", "demo-admin");
    assert_eq!(verify["ok"], true, "{verify}");
}

#[test]
fn background_work_is_done_once_across_replicas_and_taken_over_when_one_dies() {
    use crate::support::receiver::receiver;
    let pg = Postgres::start();
    let hook = receiver();
    let policy = quickstart_with_workflows(
        r#"
[[workflow]]
resource = "app-db"
action = "read"
requesters = ["dev"]
auto_approve = true
max_duration = "1h"
providers = ["hook"]
"#,
    );
    let secret = "0123456789abcdef-replica-secret";
    let config = format!(
        "[[providers]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{url}\"\nsecret = \"{secret}\"\n\n\
         [[notify.sinks]]\nname = \"pager\"\nkind = \"webhook\"\nurl = \"{url}\"\nsecret = \"{secret}\"\n",
        url = hook.url
    );
    pg.admin("postgres", "CREATE DATABASE jitgate");
    let url = pg.url("postgres", SUPERUSER_PASSWORD, "jitgate");
    let mut servers: Vec<Server> = (0..2)
        .map(|_| Server::start_on(policy.path(), Some(&config), Some(&url)))
        .collect();

    // Grants that end in a few seconds, and requests that wait for review, through both
    // replicas. Each grant must be provisioned before its end (a provisioning for an ended
    // grant is dropped, and "provisioned once" below would read 0): six seconds leave room for
    // the twelve filings and the outbox's turns on a loaded machine, where two did not.
    let mut grants = Vec::new();
    let mut waiting = Vec::new();
    for i in 0..6 {
        let s = &servers[i % 2];
        let g = s.file(
            "demo-alice",
            json!({"resource": "app-db", "action": "read", "duration": "6s"}),
        );
        grants.push(g["grant"]["id"].as_str().unwrap().to_string());
        waiting.push(id(&s.file(
            "demo-dave",
            json!({"resource": "prod-db", "action": "read", "reason": format!("INC-{i}")}),
        )));
    }
    let acknowledged = |needle: &str, field: &str, value: &str| -> usize {
        hook.deliveries
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.answered == 200 && d.raw.contains(needle) && d.body[field] == value)
            .count()
    };
    wait_until_within("every grant is deprovisioned", Duration::from_secs(30), || {
        grants.iter().all(|g| acknowledged(g, "operation", "deprovision") >= 1)
    });
    within("every review request is announced", || {
        waiting.iter().all(|r| acknowledged(r, "event", "request.filed") >= 1)
    });
    // Give a second replica the time to do anything twice, then count.
    std::thread::sleep(Duration::from_millis(1500));
    for g in &grants {
        assert_eq!(acknowledged(g, "operation", "provision"), 1, "provisioned once: {g}");
        assert_eq!(
            acknowledged(g, "operation", "deprovision"),
            1,
            "deprovisioned once: {g}"
        );
    }
    for r in &waiting {
        assert_eq!(acknowledged(r, "event", "request.filed"), 1, "announced once: {r}");
    }

    // One replica dies (whichever held the sink): the other takes the sink over.
    servers[0].child.kill().unwrap();
    servers[0].child.wait().unwrap();
    let late = id(&servers[1].file(
        "demo-dave",
        json!({"resource": "prod-db", "action": "read", "reason": "INC-late"}),
    ));
    let started = Instant::now();
    while acknowledged(&late, "event", "request.filed") == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the surviving replica did not take the sink over"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("sink taken over after {:?}", started.elapsed());
    servers.truncate(2);
}

/// A replica's counter `jitgate_replica_resyncs_total{outcome=how}` (0 before the first).
fn resyncs(s: &Server, how: &str) -> u64 {
    let (_, metrics) = s.get("/metrics", "");
    let prefix = format!("jitgate_replica_resyncs_total{{outcome=\"{how}\"}} ");
    metrics
        .as_str()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map_or(0, |n| n.parse().unwrap())
}

/// `method path` as `token`: the status, `Retry-After` (if any) and the body.
fn call_with_headers(s: &Server, method: &str, path: &str, token: &str, body: Value) -> (u16, Option<u64>, Value) {
    let url = format!("{}{path}", s.url);
    let request = match method {
        "GET" => s.http.get(&url),
        _ => s.http.post(&url).json(&body),
    };
    let request = if token.is_empty() {
        request
    } else {
        request.bearer_auth(token)
    };
    let response = request.send().unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let text = response.text().unwrap();
    (
        status,
        retry_after,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The database goes away and comes back; a revocation made on A right after it is back
/// reaches B within a second, by catching up on the audit log from the last change B heard
/// (not by loading every grant again), even when B's feed was not listening yet when the
/// revocation committed. Needs the store's feed to say `Resync` once it listens again.
#[test]
fn a_revocation_right_after_the_database_is_back_reaches_the_other_replica_within_a_second() {
    let pg = Postgres::start();
    let servers = replicas(&pg, 2);
    let (a, b) = (&servers[0], &servers[1]);
    let r = a.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "read", "duration": "30m", "reason": "INC-7"}),
    );
    let (status, approved) = a.post(&format!("/v1/requests/{}/approve", id(&r)), "demo-bob", json!({}));
    assert_eq!(status, 200, "{approved}");
    let grant = approved["grant"]["id"].as_str().unwrap().to_string();
    within("B allows", || allowed(b, "alice", "prod-db", "read"));
    // B follows: its first load done (the only one it needs).
    within("B follows A", || resyncs(b, "full") == 1);

    pg.pause();
    // While it is away: writes answer 503 with Retry-After, and so does /readyz, at once.
    let started = Instant::now();
    let (status, retry_after, v) = call_with_headers(a, "GET", "/readyz", "", json!(null));
    assert_eq!(status, 503, "{v}");
    assert!(retry_after.is_some_and(|s| (1..=5).contains(&s)), "{retry_after:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "/readyz answers within its bound"
    );
    let (status, retry_after, v) = call_with_headers(
        b,
        "POST",
        "/v1/requests",
        "demo-alice",
        json!({"resource": "staging-db", "action": "read", "duration": "1h"}),
    );
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["code"], "unavailable", "{v}");
    assert!(retry_after.is_some(), "every 503 says when to come back");
    // B still answers checks from memory.
    assert!(allowed(b, "alice", "prod-db", "read"));
    std::thread::sleep(Duration::from_millis(500));
    pg.resume();
    within("A ready again", || a.get("/readyz", "").0 == 200);

    let (status, v) = a.post(&format!("/v1/grants/{grant}/revoke"), "demo-bob", json!({}));
    assert_eq!(status, 200, "{v}");
    let revoked = Instant::now();
    let took = within("B refuses the revoked grant", || {
        !allowed(b, "alice", "prod-db", "read")
    });
    eprintln!("a revocation right after the database came back reached B in {took:?}");
    assert!(
        took < Duration::from_secs(1),
        "B refused {:?} after the revocation's 200",
        revoked.elapsed()
    );
    assert_eq!(
        resyncs(b, "full"),
        1,
        "B caught up from the log, without loading everything again"
    );
    assert!(resyncs(b, "catch_up") >= 1, "B caught up");
    within("B ready again", || b.get("/readyz", "").0 == 200);
}

/// A front that routes to a read-only node (a standby): writes answer 503 `unavailable` with
/// Retry-After and a message naming the cause, the log says it once in plain words, never a
/// 500; checks go on from memory; /readyz says not ready; writable again, writes go through.
#[test]
fn a_read_only_database_is_unavailable_not_an_internal_error() {
    let pg = Postgres::start();
    let servers = replicas(&pg, 1);
    let s = &servers[0];
    let r = s.file(
        "demo-alice",
        json!({"resource": "staging-db", "action": "read", "duration": "1h", "reason": "before"}),
    );
    assert_eq!(r["status"], "approved", "{r}");
    let cut_sessions =
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'jitgate' AND pid <> pg_backend_pid()";
    pg.admin(
        "postgres",
        "ALTER DATABASE jitgate SET default_transaction_read_only = on",
    );
    pg.admin("postgres", cut_sessions);

    // The first write may meet a connection that was cut; the ones after meet the read-only node.
    let file = json!({"resource": "prod-db", "action": "read", "duration": "30m", "reason": "INC-9"});
    let started = Instant::now();
    let (status, retry_after, v) = loop {
        let (status, retry_after, v) = call_with_headers(s, "POST", "/v1/requests", "demo-dave", file.clone());
        assert_ne!(status, 500, "never an internal error: {v}");
        assert_ne!(status, 201, "a read-only database took a write: {v}");
        if v["error"]["message"].as_str().is_some_and(|m| m.contains("read-only")) {
            break (status, retry_after, v);
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no read-only refusal: {v}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["code"], "unavailable", "{v}");
    assert!(retry_after.is_some_and(|s| s >= 1), "{retry_after:?}");
    // Other writes the same way: a revocation, a token.
    let (status, _, v) = call_with_headers(s, "POST", "/v1/tokens", "demo-admin", json!({"principal": "frank"}));
    assert_eq!(status, 503, "{v}");
    // Checks of reusable grants are answered from memory.
    assert!(allowed(s, "alice", "staging-db", "read"));
    let log = s.log();
    assert!(
        log.contains("the database refused the write: the node is read-only (a standby?)"),
        "{log}"
    );
    assert!(!log.contains("internal error"), "{log}");
    let (status, v) = s.get("/readyz", "");
    assert_eq!(status, 503, "a read-only database is not ready for writes: {v}");

    pg.admin(
        "postgres",
        "ALTER DATABASE jitgate SET default_transaction_read_only = off",
    );
    pg.admin("postgres", cut_sessions);
    within("writes go through again", || {
        call_with_headers(s, "POST", "/v1/requests", "demo-dave", file.clone()).0 == 201
    });
    within("ready again", || s.get("/readyz", "").0 == 200);
}
