//! jitgate replicas through a real PostgreSQL failover (issue 22): a primary with a streaming
//! standby and haproxy routing to whichever node is writable (`support::cluster`, started by
//! `scripts/test-postgres.sh`), a `kill -9` of the primary under load and the promotion of the
//! standby; a stalled synchronous commit; a front routing to a read-only node; libpq-style
//! multi-host URLs; a history rewound by an asynchronous failover; an old primary restarted
//! writable. The bar: nothing acknowledged lost, every revocation enforced on the other
//! replica within 1 s of its 200, every write answered (2xx or 503 with `Retry-After`) within
//! the write bound, single use stays once, the audit chain verifies, lost or forked history is
//! refused and alarmed, and the database password is in no log line.
//!
//! The load of the first test runs ~9 s before and ~8 s after the kill; set
//! `JITGATE_FAILOVER_SECONDS=N` for N seconds on each side (docs/deploy.md quotes such a run).

use crate::support::cluster::{Cluster, Node, Replication, PASSWORD};
use crate::support::*;
use reqwest::blocking::Client;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a write may take when the database cannot commit: the 5 s write bound of the
/// issue, plus 1 s slack for the HTTP call.
const WRITE_BOUND: Duration = Duration::from_secs(6);
/// How long `/readyz` may take to say a stalled database is not ready: ~3 s, plus 1 s slack.
const READY_BOUND: Duration = Duration::from_secs(4);
/// The longest a revocation on one replica may stay allowed on the other after its 200.
const REVOCATION_BOUND: Duration = Duration::from_secs(1);
/// Every line the replicas log is read for the password: log all of it.
const LOG_ALL: &[(&str, &str)] = &[("JITGATE_LOG", "info")];

/// The quickstart, plus `lag-db`: granted at once and bound to a payload (not single use), so
/// that each grant is checked on its own (its payload) and its revocation measured alone.
fn policy() -> tempfile::TempDir {
    let policy = quickstart_with_workflows(
        r#"
[[workflow]]
resource = "lag-db"
action = "read"
description = "Failover tests: one grant per payload, to time each revocation"
requesters = ["dev"]
auto_approve = true
action_bound = true
single_use = false
max_duration = "1h"
"#,
    );
    let path = policy.path().join("resources.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(
        "\n[[resource]]\nname = \"lag-db\"\nkind = \"postgres\"\nlabels = { env = \"test\" }\ndescription = \"Failover tests\"\n",
    );
    std::fs::write(&path, text).unwrap();
    policy
}

fn replica(policy: &tempfile::TempDir, url: &str) -> Server {
    Server::start_on_with_env(policy.path(), url, LOG_ALL)
}

/// Every call fails on its own after 30 s: a hang is a failure, never a stuck test.
fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// One HTTP answer, with how long it took; status 0 when none came (timeout, refused).
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    body: Value,
    took: Duration,
    retry_after: Option<String>,
    /// When the answer was in.
    at: Instant,
}

fn send(http: &Client, base: &str, method: &str, path: &str, token: &str, body: Option<Value>) -> Answer {
    let url = format!("{base}{path}");
    let mut req = if method == "GET" {
        http.get(&url)
    } else {
        http.post(&url)
    };
    if !token.is_empty() {
        req = req.bearer_auth(token);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let started = Instant::now();
    match req.send() {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let text = resp.text().unwrap_or_default();
            Answer {
                status,
                body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
                took: started.elapsed(),
                retry_after,
                at: Instant::now(),
            }
        }
        Err(e) => Answer {
            status: 0,
            body: Value::String(format!("no answer: {e}")),
            took: started.elapsed(),
            retry_after: None,
            at: Instant::now(),
        },
    }
}

fn post(s: &Server, http: &Client, path: &str, token: &str, body: Value) -> Answer {
    send(http, &s.url, "POST", path, token, Some(body))
}

fn get(s: &Server, http: &Client, path: &str, token: &str) -> Answer {
    send(http, &s.url, "GET", path, token, None)
}

fn check(s: &Server, http: &Client, principal: &str, resource: &str, action: &str, payload: &str) -> Answer {
    post(
        s,
        http,
        "/v1/check",
        "demo-svc",
        json!({"principal": principal, "resource": resource, "action": action, "payload": payload}),
    )
}

/// A 503 in the API's shape (`unavailable`).
fn is_unavailable(a: &Answer) -> bool {
    a.status == 503 && (a.body["error"]["code"] == "unavailable" || a.body["error"] == "unavailable")
}

/// A write the database could not take: 503 `unavailable` with `Retry-After`, within the bound.
fn assert_refused_in_bound(a: &Answer, what: &str) {
    assert!(is_unavailable(a), "{what}: {} {} after {:?}", a.status, a.body, a.took);
    assert!(a.retry_after.is_some(), "{what}: a 503 carries Retry-After: {}", a.body);
    assert!(a.took <= WRITE_BOUND, "{what}: answered after {:?}", a.took);
}

/// The message of an error answer, lower-cased.
fn message(a: &Answer) -> String {
    let m = &a.body["error"]["message"];
    let m = if m.is_string() { m } else { &a.body["message"] };
    m.as_str().unwrap_or_default().to_lowercase()
}

/// A sample of the gauge or counter `name` (no labels) on the replica's /metrics.
fn metric(s: &Server, name: &str) -> Option<f64> {
    let text = client().get(format!("{}/metrics", s.url)).send().ok()?.text().ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

/// The superuser password appears in no line either replica logged (nor percent-encoded).
fn assert_password_in_no_log(servers: &[&Server]) {
    let encoded: String = PASSWORD
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let mut lines = 0;
    for (i, s) in servers.iter().enumerate() {
        let log = s.log();
        for line in log.lines() {
            lines += 1;
            assert!(
                !line.contains(PASSWORD) && !line.contains(&encoded),
                "replica {i} logged the database password: {line}"
            );
        }
    }
    eprintln!("password in none of {lines} log lines");
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) * p) / 100]
}

fn wait_ready(s: &Server, within: Duration) {
    let started = Instant::now();
    while get(s, &client(), "/readyz", "").status != 200 {
        assert!(
            started.elapsed() < within,
            "{} not ready after {within:?}; log:\n{}",
            s.url,
            s.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the requests and grants a replica acknowledged may look like afterwards: a state the
/// last acknowledged answer gave, or one an unanswered (503, timed-out) later call may have
/// committed. `"none"` in `grant`: no grant.
#[derive(Debug, Clone)]
struct Expect {
    request: Vec<&'static str>,
    grant: Vec<&'static str>,
}

/// One write call of the load.
#[derive(Debug)]
struct Write {
    kind: &'static str,
    /// The replica's URL.
    on: String,
    started: Instant,
    answer: Answer,
}

#[derive(Default)]
struct Load {
    writes: Vec<Write>,
    expect: HashMap<String, Expect>,
    /// Prod-db read requests filed and not yet decided, for the approvers.
    pending: VecDeque<String>,
    filings: usize,
    approvals: usize,
    revocations: usize,
    /// Each acknowledged revocation: how long the other replica provably still allowed it (the
    /// latest send of a check it allowed, after the revocation's 200), and when that 200 came.
    /// A check's own round trip and the poll gap are not counted against the replica: a check
    /// judged in time and answered late proves nothing.
    lags: Vec<(Duration, Instant)>,
    /// The same, measured when the first deny arrived: an upper bound, for the report.
    arrival_lags: Vec<Duration>,
    /// Single-use grants: request id -> (payload, allows so far).
    single_use: HashMap<String, (String, usize)>,
    /// Single-use checks answered deny marked as errors (consumption not recorded).
    single_use_errors: usize,
    /// Checks that did not answer 200.
    check_failures: Vec<String>,
    reads: usize,
    read_failures: usize,
}

impl Load {
    fn write(&mut self, kind: &'static str, on: &Server, started: Instant, answer: &Answer) {
        self.writes.push(Write {
            kind,
            on: on.url.clone(),
            started,
            answer: answer.clone(),
        });
    }
}

type Stock = Mutex<VecDeque<(String, String, String)>>;

fn scope_stock(stocks: &[Stock; 2], i: usize) -> &Stock {
    &stocks[i]
}

fn lock_stock(stock: &Stock) -> std::sync::MutexGuard<'_, VecDeque<(String, String, String)>> {
    stock.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn lock(load: &Mutex<Load>) -> std::sync::MutexGuard<'_, Load> {
    load.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn seconds(default: u64) -> Duration {
    Duration::from_secs(
        std::env::var("JITGATE_FAILOVER_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

#[test]
fn kill_9_of_the_primary_under_load_loses_nothing_acknowledged() {
    let cluster = Cluster::start(Replication::Sync, true);
    let policy = policy();
    let url = cluster.database_url();
    let servers = [replica(&policy, &url), replica(&policy, &url)];
    let (before, after) = (seconds(9), seconds(8));
    let load = Mutex::new(Load::default());
    let stop = AtomicBool::new(false);
    let serial = AtomicUsize::new(0);
    let next = || serial.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let mut kill_began = started;
    let mut killed = started;
    let mut promoted = started;
    let stocks = [Mutex::new(VecDeque::new()), Mutex::new(VecDeque::new())];

    std::thread::scope(|scope| {
        // Filers, one per replica: an automatic grant (staging-db) and a request that waits for
        // an sre (prod-db read), in turns.
        for s in &servers {
            let (load, stop) = (&load, &stop);
            scope.spawn(move || {
                let http = client();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let a = post(
                        s,
                        &http,
                        "/v1/requests",
                        "demo-alice",
                        json!({"resource": "staging-db", "action": "read", "duration": "1h"}),
                    );
                    {
                        let mut l = lock(load);
                        l.write("file", s, t, &a);
                        if a.status == 201 {
                            l.filings += 1;
                            l.expect.insert(
                                a.body["id"].as_str().unwrap().to_string(),
                                Expect {
                                    request: vec!["approved"],
                                    grant: vec!["active"],
                                },
                            );
                        }
                    }
                    let t = Instant::now();
                    let a = post(
                        s,
                        &http,
                        "/v1/requests",
                        "demo-alice",
                        json!({"resource": "prod-db", "action": "read", "duration": "30m", "reason": format!("INC-{}", next())}),
                    );
                    {
                        let mut l = lock(load);
                        l.write("file", s, t, &a);
                        if a.status == 201 {
                            l.filings += 1;
                            let rid = a.body["id"].as_str().unwrap().to_string();
                            l.expect.insert(
                                rid.clone(),
                                Expect {
                                    request: vec!["pending"],
                                    grant: vec!["none"],
                                },
                            );
                            l.pending.push_back(rid);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(40));
                }
            });
        }
        // Approvers, one per replica: bob approves whatever waits, filed on either replica.
        for s in &servers {
            let (load, stop) = (&load, &stop);
            scope.spawn(move || {
                let http = client();
                while !stop.load(Ordering::Relaxed) {
                    let Some(rid) = lock(load).pending.pop_front() else {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    let t = Instant::now();
                    let a = post(s, &http, &format!("/v1/requests/{rid}/approve"), "demo-bob", json!({}));
                    let mut l = lock(load);
                    l.write("approve", s, t, &a);
                    let e = l.expect.get_mut(&rid).unwrap();
                    if a.status == 200 {
                        *e = Expect {
                            request: vec!["approved"],
                            grant: vec!["active"],
                        };
                        l.approvals += 1;
                    } else {
                        // Unknown outcome: the approval may have committed.
                        e.request.push("approved");
                        e.grant.push("active");
                    }
                }
            });
        }
        // Revocations, each way: grants made on one replica and held by the other (it allows
        // them) build up a stock; a revoker revokes them on the first replica one at a time and
        // checks the other every 10 ms from the revocation's 200 until it refuses. The stock
        // outlasts the failover, so grants the other replica held from before are revoked
        // right after the promotion too, whatever that replica missed meanwhile.
        for (x, y, holder, token) in [(0, 1, "alice", "demo-alice"), (1, 0, "dave", "demo-dave")] {
            let (on, other) = (&servers[x], &servers[y]);
            let (load, stop) = (&load, &stop);
            let next = &next;
            let stock = scope_stock(&stocks, x);
            scope.spawn(move || {
                let http = client();
                while !stop.load(Ordering::Relaxed) {
                    let payload = format!("lag-{}", next());
                    let t = Instant::now();
                    let a = post(
                        on,
                        &http,
                        "/v1/requests",
                        token,
                        json!({"resource": "lag-db", "action": "read", "duration": "1h", "payload": payload}),
                    );
                    lock(load).write("file", on, t, &a);
                    if a.status != 201 {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                    let rid = a.body["id"].as_str().unwrap().to_string();
                    let gid = a.body["grant"]["id"].as_str().unwrap().to_string();
                    {
                        let mut l = lock(load);
                        l.filings += 1;
                        l.expect.insert(
                            rid.clone(),
                            Expect {
                                request: vec!["approved"],
                                grant: vec!["active"],
                            },
                        );
                    }
                    // Into the stock once the other replica allows it.
                    let seen_by = Instant::now() + Duration::from_secs(10);
                    while Instant::now() < seen_by && !stop.load(Ordering::Relaxed) {
                        let c = check(other, &http, holder, "lag-db", "read", &payload);
                        if c.status != 200 {
                            lock(load).check_failures.push(format!("{} {}", c.status, c.body));
                        } else if c.body["allow"] == true {
                            lock_stock(stock).push_back((rid, gid, payload));
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            });
            scope.spawn(move || {
                let http = client();
                while !stop.load(Ordering::Relaxed) {
                    let Some((rid, gid, payload)) = lock_stock(stock).pop_front() else {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    let t = Instant::now();
                    let a = post(on, &http, &format!("/v1/grants/{gid}/revoke"), token, json!({}));
                    {
                        let mut l = lock(load);
                        l.write("revoke", on, t, &a);
                        let e = l.expect.get_mut(&rid).unwrap();
                        if a.status == 200 {
                            e.grant = vec!["revoked"];
                            l.revocations += 1;
                        } else {
                            // Unknown outcome: the revocation may have committed.
                            e.grant.push("revoked");
                        }
                    }
                    if a.status == 200 {
                        let acknowledged = a.at;
                        let mut proven = Duration::ZERO;
                        let arrival = loop {
                            let c = check(other, &http, holder, "lag-db", "read", &payload);
                            if c.status != 200 {
                                lock(load).check_failures.push(format!("{} {}", c.status, c.body));
                            } else if c.body["allow"] == false {
                                break c.at.duration_since(acknowledged);
                            } else {
                                // Allowed a check sent this long after the 200.
                                let sent = c.at.checked_sub(c.took).unwrap_or(c.at);
                                proven = proven.max(sent.saturating_duration_since(acknowledged));
                            }
                            if acknowledged.elapsed() > Duration::from_secs(15) {
                                // Never denied: the whole wait counts.
                                proven = acknowledged.elapsed();
                                break proven;
                            }
                            std::thread::sleep(Duration::from_millis(10));
                        };
                        let mut l = lock(load);
                        l.lags.push((proven, acknowledged));
                        l.arrival_lags.push(arrival);
                    }
                    std::thread::sleep(Duration::from_millis(40));
                }
            });
        }
        // Single use: a deploy filed on one replica, approved on the other, then checked twice
        // on each replica at the same moment.
        {
            let (load, stop, servers) = (&load, &stop, &servers);
            let next = &next;
            scope.spawn(move || {
                let http = client();
                while !stop.load(Ordering::Relaxed) {
                    let payload = format!("sha256:{:08x}", next());
                    let t = Instant::now();
                    let a = post(
                        &servers[0],
                        &http,
                        "/v1/requests",
                        "demo-alice",
                        json!({"resource": "prod-api", "action": "deploy", "duration": "30m", "reason": "release", "payload": payload}),
                    );
                    lock(load).write("file", &servers[0], t, &a);
                    if a.status != 201 {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                    let rid = a.body["id"].as_str().unwrap().to_string();
                    {
                        let mut l = lock(load);
                        l.filings += 1;
                        l.expect.insert(
                            rid.clone(),
                            Expect {
                                request: vec!["pending"],
                                grant: vec!["none"],
                            },
                        );
                    }
                    let t = Instant::now();
                    let a = post(&servers[1], &http, &format!("/v1/requests/{rid}/approve"), "demo-bob", json!({}));
                    {
                        let mut l = lock(load);
                        l.write("approve", &servers[1], t, &a);
                        let e = l.expect.get_mut(&rid).unwrap();
                        if a.status == 200 {
                            *e = Expect {
                                request: vec!["approved"],
                                grant: vec!["active", "used"],
                            };
                            l.approvals += 1;
                        } else {
                            e.request.push("approved");
                            e.grant.extend(["active", "used"]);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(100));
                    let answers: Vec<Answer> = std::thread::scope(|race| {
                        let racers: Vec<_> = [0, 1, 0, 1]
                            .into_iter()
                            .map(|i| {
                                let (s, payload) = (&servers[i], &payload);
                                race.spawn(move || check(s, &client(), "alice", "prod-api", "deploy", payload))
                            })
                            .collect();
                        racers.into_iter().map(|r| r.join().unwrap()).collect()
                    });
                    let mut l = lock(load);
                    let allows = answers.iter().filter(|c| c.body["allow"] == true).count();
                    l.single_use_errors += answers.iter().filter(|c| c.body["error"] == true).count();
                    for c in answers.iter().filter(|c| c.status != 200) {
                        l.check_failures.push(format!("{} {}", c.status, c.body));
                    }
                    l.single_use.insert(rid, (payload, allows));
                }
            });
        }
        // A reader: requests read back on alternate replicas.
        {
            let (load, stop, servers) = (&load, &stop, &servers);
            scope.spawn(move || {
                let http = client();
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let rid = lock(load).expect.keys().nth(n % 64).cloned();
                    if let Some(rid) = rid {
                        let a = get(&servers[n % 2], &http, &format!("/v1/requests/{rid}"), "demo-admin");
                        let mut l = lock(load);
                        l.reads += 1;
                        if a.status != 200 {
                            l.read_failures += 1;
                        }
                    }
                    n += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
        }

        std::thread::sleep(before);
        for (i, s) in servers.iter().enumerate() {
            eprintln!(
                "before the kill, replica {i}: jitgate_database_history_diverged {:?}",
                metric(s, "jitgate_database_history_diverged")
            );
        }
        // The primary dies somewhere between the two: writes that start after `killed`
        // cannot reach it; the outage counts from `kill_began`.
        kill_began = Instant::now();
        cluster.primary.kill();
        killed = Instant::now();
        cluster.standby.promote();
        promoted = Instant::now();
        std::thread::sleep(after);
        stop.store(true, Ordering::Relaxed);
    });
    let mut l = load.into_inner().unwrap();
    // The figures, for docs/deploy.md.
    let mut lags: Vec<Duration> = l.lags.iter().map(|(lag, _)| *lag).collect();
    lags.sort();
    let after_kill: Vec<Duration> = l
        .lags
        .iter()
        .filter(|(_, at)| *at > killed)
        .map(|(lag, _)| *lag)
        .collect();
    let worst = lags.last().copied().unwrap_or_default();
    let worst_after_kill = after_kill.iter().max().copied().unwrap_or_default();
    let back = l
        .writes
        .iter()
        .filter(|w| w.started > killed && (200..300).contains(&w.answer.status))
        .map(|w| w.answer.at)
        .min();
    // From when the kill began: the primary died somewhere in the kill command.
    let outage = back.map(|b| b.duration_since(kill_began));
    // Each replica on its own: the first write it acknowledged after the kill.
    let back_on: Vec<Option<Duration>> = servers
        .iter()
        .map(|s| {
            l.writes
                .iter()
                .filter(|w| w.on == s.url && w.started > killed && (200..300).contains(&w.answer.status))
                .map(|w| w.answer.at.duration_since(kill_began))
                .min()
        })
        .collect();
    let during: Vec<&Write> = l
        .writes
        .iter()
        .filter(|w| w.answer.at > kill_began && back.is_none_or(|b| w.started < b))
        .collect();
    let refused = l.writes.iter().filter(|w| w.answer.status == 503).count();
    // Before the kill nothing failed over: every write there is 2xx.
    let refused_before: Vec<&Write> = l
        .writes
        .iter()
        .filter(|w| w.answer.at < kill_began && !(200..300).contains(&w.answer.status))
        .collect();
    let slowest = l.writes.iter().map(|w| w.answer.took).max().unwrap_or_default();
    eprintln!(
        "failover under load: {:?} before the kill, {:?} after; promotion done {:?} after the kill",
        before,
        after,
        promoted.duration_since(kill_began)
    );
    eprintln!(
        "acknowledged: {} filings, {} approvals, {} revocations; {} single-use grants raced ({} checks marked error); {} reads ({} not 200)",
        l.filings,
        l.approvals,
        l.revocations,
        l.single_use.len(),
        l.single_use_errors,
        l.reads,
        l.read_failures
    );
    eprintln!(
        "writes: {} attempted, {} answered 503, slowest answer {:?}; outage (kill to first 2xx write) {:?}; {} writes in the outage: {:?}",
        l.writes.len(),
        refused,
        slowest,
        outage,
        during.len(),
        during.iter().map(|w| (w.kind, w.answer.status, w.answer.took)).collect::<Vec<_>>()
    );
    eprintln!("first write acknowledged after the kill, on each replica: {back_on:?}");
    eprintln!(
        "revocation lag on the other replica: {} measured ({} after the kill): worst {:?}, p50 {:?}, p99 {:?}; worst after the kill {:?}",
        lags.len(),
        after_kill.len(),
        worst,
        percentile(&lags, 50),
        percentile(&lags, 99),
        worst_after_kill
    );
    let mut arrival_lags = l.arrival_lags.clone();
    arrival_lags.sort();
    eprintln!(
        "the same, up to the first deny's arrival (its round trip and the poll gap included, an upper bound): worst {:?}, p50 {:?}, p99 {:?}",
        arrival_lags.last().copied().unwrap_or_default(),
        percentile(&arrival_lags, 50),
        percentile(&arrival_lags, 99)
    );

    // The bar, every part of it checked and reported before the test fails on any.
    let mut missed: Vec<String> = Vec::new();
    for (i, s) in servers.iter().enumerate() {
        let since = Instant::now();
        while get(s, &client(), "/readyz", "").status != 200 {
            if since.elapsed() > Duration::from_secs(30) {
                missed.push(format!("replica {i} is not ready 30 s after the load"));
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // Nothing acknowledged is lost: every request and grant, on both replicas, as acknowledged.
    let http = client();
    let mut lost = 0;
    for (rid, e) in &l.expect {
        for (i, s) in servers.iter().enumerate() {
            let a = get(s, &http, &format!("/v1/requests/{rid}"), "demo-admin");
            let status = a.body["status"].as_str().unwrap_or("absent");
            let grant = a.body["grant"]["status"].as_str().unwrap_or("none");
            if a.status != 200 || !e.request.contains(&status) || !e.grant.contains(&grant) {
                lost += 1;
                missed.push(format!(
                    "replica {i}: request {rid} is {} {status}, grant {grant}; acknowledged {e:?}",
                    a.status
                ));
            }
        }
    }
    // Single use stays once: the raced checks and one more on each replica now.
    let mut twice = 0;
    for (rid, (payload, allows)) in &mut l.single_use {
        for s in &servers {
            let c = check(s, &http, "alice", "prod-api", "deploy", payload);
            *allows += usize::from(c.body["allow"] == true);
        }
        if *allows > 1 {
            twice += 1;
            missed.push(format!("single-use grant of {rid} allowed {allows} times"));
        }
    }
    if !l.check_failures.is_empty() {
        missed.push(format!("checks that failed: {:?}", l.check_failures));
    }
    // Every write answered within the bound: 2xx, or 503 with Retry-After.
    for w in &l.writes {
        let a = &w.answer;
        if !((200..300).contains(&a.status) || is_unavailable(a)) {
            missed.push(format!(
                "{} answered {} {} after {:?}",
                w.kind, a.status, a.body, a.took
            ));
        } else if a.status == 503 && a.retry_after.is_none() {
            missed.push(format!("{}: a 503 without Retry-After: {}", w.kind, a.body));
        }
        if a.took > WRITE_BOUND {
            missed.push(format!(
                "{} answered after {:?} (bound {WRITE_BOUND:?})",
                w.kind, a.took
            ));
        }
    }
    if let Some(first) = refused_before.first() {
        missed.push(format!(
            "{} writes refused before the kill, with one primary and nothing failing, the first {:?} after the load began: {} {} {}",
            refused_before.len(),
            first.started.duration_since(started),
            first.kind,
            first.answer.status,
            first.answer.body
        ));
    }
    if outage.is_none() {
        missed.push("no write succeeded after the failover".into());
    }
    // With synchronous replication nothing acknowledged was lost: the failover is no
    // divergence, and each replica writes again by itself, without a restart.
    for (i, s) in servers.iter().enumerate() {
        let a = post(
            s,
            &http,
            "/v1/requests",
            "demo-alice",
            json!({"resource": "staging-db", "action": "read", "duration": "1h"}),
        );
        if a.status != 201 {
            missed.push(format!(
                "replica {i} does not write after a synchronous failover (first write after the kill: {:?}): {} {}",
                back_on[i], a.status, a.body
            ));
        }
        let gauge = metric(s, "jitgate_database_history_diverged");
        if gauge != Some(0.0) {
            missed.push(format!(
                "replica {i}: jitgate_database_history_diverged is {gauge:?} after a synchronous failover, not 0"
            ));
        }
    }
    if l.revocations == 0 || after_kill.is_empty() {
        missed.push("no revocation was measured after the kill".into());
    }
    if worst > REVOCATION_BOUND {
        missed.push(format!(
            "a revocation stayed allowed on the other replica for {worst:?} (bound {REVOCATION_BOUND:?}; worst after the kill {worst_after_kill:?}; {} of {} over the bound)",
            lags.iter().filter(|lag| **lag > REVOCATION_BOUND).count(),
            lags.len()
        ));
    }
    let mut verified = Vec::new();
    for (i, s) in servers.iter().enumerate() {
        let a = get(s, &http, "/v1/audit/verify", "demo-admin");
        verified.push(a.body["ok"] == true);
        if a.body["ok"] != true {
            missed.push(format!("replica {i}: audit verify {} {}", a.status, a.body));
        }
    }
    eprintln!(
        "bar: {lost} acknowledged states missing, {twice} single-use grants allowed twice, audit verify ok {verified:?}, worst revocation lag {worst:?}"
    );
    assert_password_in_no_log(&[&servers[0], &servers[1]]);
    assert!(
        missed.is_empty(),
        "{} misses of the bar:\n{}",
        missed.len(),
        missed.join("\n")
    );
}

#[test]
fn a_stalled_synchronous_commit_answers_503_within_the_bound_and_readyz_says_so() {
    let cluster = Cluster::start(Replication::Sync, false);
    let policy = policy();
    let url = cluster.database_url();
    let servers = [replica(&policy, &url), replica(&policy, &url)];
    let (a, b) = (&servers[0], &servers[1]);
    let http = client();
    // A single-use grant, approved and known to both replicas before the stall.
    let r = a.file(
        "demo-alice",
        json!({"resource": "prod-api", "action": "deploy", "duration": "30m", "reason": "REL-1", "payload": "sha256:5a11"}),
    );
    assert_eq!(
        b.post(&format!("/v1/requests/{}/approve", id(&r)), "demo-bob", json!({}))
            .0,
        200
    );
    // Replica a learns of b's approval through a notification and its index; under load that
    // can take longer than any fixed sleep, and a check on a grant a does not hold is an
    // ordinary deny, not the marked error this test is about. The gauge is a's index size.
    wait_until("replica a holds the approved grant", || {
        metric(a, "jitgate_active_grants") == Some(1.0)
    });

    // The synchronous standby stops: no commit can complete.
    cluster.standby.pause();
    let filing = |reason: &str| json!({"resource": "prod-db", "action": "read", "duration": "30m", "reason": reason});
    let (filed, checked, ready): (Vec<Answer>, Answer, Vec<Answer>) = std::thread::scope(|scope| {
        let filings: Vec<_> = [(a, "STALL-A"), (b, "STALL-B")]
            .into_iter()
            .map(|(s, reason)| {
                let body = filing(reason);
                scope.spawn(move || post(s, &client(), "/v1/requests", "demo-alice", body))
            })
            .collect();
        let check = scope.spawn(|| check(a, &client(), "alice", "prod-api", "deploy", "sha256:5a11"));
        // Readiness says so while the writes wait.
        std::thread::sleep(Duration::from_millis(500));
        let ready: Vec<Answer> = [a, b].iter().map(|s| get(s, &client(), "/readyz", "")).collect();
        (
            filings.into_iter().map(|f| f.join().unwrap()).collect(),
            check.join().unwrap(),
            ready,
        )
    });
    eprintln!(
        "stalled commit: filings {:?}, single-use check {} {} after {:?}, readyz {:?}",
        filed.iter().map(|f| (f.status, f.took)).collect::<Vec<_>>(),
        checked.status,
        checked.body,
        checked.took,
        ready.iter().map(|r| (r.status, r.took)).collect::<Vec<_>>()
    );
    for (i, f) in filed.iter().enumerate() {
        assert_refused_in_bound(f, &format!("a filing on replica {i} while commits stall"));
    }
    assert_eq!(checked.status, 200, "{}", checked.body);
    assert_eq!(checked.body["allow"], false, "{}", checked.body);
    assert_eq!(
        checked.body["error"], true,
        "a deny because the use could not be recorded is marked: {}",
        checked.body
    );
    assert!(
        checked.took <= WRITE_BOUND,
        "the check answered after {:?}",
        checked.took
    );
    for (i, r) in ready.iter().enumerate() {
        assert_eq!(r.status, 503, "replica {i} /readyz while commits stall: {}", r.body);
        assert!(r.took <= READY_BOUND, "replica {i} /readyz answered after {:?}", r.took);
    }

    // The standby is back: writes commit again and readiness follows.
    cluster.standby.resume();
    for s in [a, b] {
        wait_ready(s, Duration::from_secs(10));
        let started = Instant::now();
        loop {
            let f = post(
                s,
                &http,
                "/v1/requests",
                "demo-alice",
                json!({"resource": "staging-db", "action": "read", "duration": "1h"}),
            );
            if f.status == 201 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "writes after the stall: {} {}",
                f.status,
                f.body
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // A filing whose client got 503 may have committed after all (the commit was on the
    // primary, waiting for the standby): read before retrying, as docs/failover.md says ("After a 503 or a timeout on a write").
    for reason in ["STALL-A", "STALL-B"] {
        let find = || -> usize {
            let list = get(a, &http, "/v1/requests?requester=alice&limit=500", "demo-admin");
            assert_eq!(list.status, 200, "{}", list.body);
            list.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["reason"] == reason)
                .count()
        };
        let found = find();
        eprintln!(
            "the filing {reason} answered 503 and is {} after the stall",
            if found == 1 { "present (committed)" } else { "absent" }
        );
        if found == 0 {
            assert_eq!(post(b, &http, "/v1/requests", "demo-alice", filing(reason)).status, 201);
        }
        assert_eq!(find(), 1, "{reason}: read before retrying files it exactly once");
    }
    // The grant is still single use: at most one allow from now on.
    let allows = [a, b, a]
        .iter()
        .filter(|s| check(s, &http, "alice", "prod-api", "deploy", "sha256:5a11").body["allow"] == true)
        .count();
    assert!(allows <= 1, "{allows}");
}

#[test]
fn a_read_only_node_behind_the_front_is_503_not_500() {
    let cluster = Cluster::start(Replication::Async, false);
    let policy = policy();
    let writable = replica(&policy, &cluster.primary.url("jitgate"));
    let http = client();
    let pending = writable.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "read", "duration": "30m", "reason": "INC-7"}),
    );
    let granted = writable.file(
        "demo-alice",
        json!({"resource": "staging-db", "action": "read", "duration": "1h"}),
    );
    let gid = granted["grant"]["id"].as_str().unwrap().to_string();
    cluster.wait_replayed();
    let writes = |s: &Server| -> Vec<(&'static str, Answer)> {
        vec![
            (
                "file",
                post(
                    s,
                    &http,
                    "/v1/requests",
                    "demo-alice",
                    json!({"resource": "staging-db", "action": "read", "duration": "1h"}),
                ),
            ),
            (
                "approve",
                post(
                    s,
                    &http,
                    &format!("/v1/requests/{}/approve", id(&pending)),
                    "demo-bob",
                    json!({}),
                ),
            ),
            (
                "revoke",
                post(s, &http, &format!("/v1/grants/{gid}/revoke"), "demo-alice", json!({})),
            ),
        ]
    };

    // The node behind a replica turns read-only (as a front routing to a standby would make
    // it): 503, not ready; writable again, it serves again.
    cluster
        .primary
        .admin("postgres", "ALTER SYSTEM SET default_transaction_read_only = on");
    cluster.primary.admin("postgres", "SELECT pg_reload_conf()");
    std::thread::sleep(Duration::from_millis(300));
    for (what, a) in writes(&writable) {
        assert_ne!(a.status, 500, "{what} on a read-only node: {}", a.body);
        assert_refused_in_bound(&a, &format!("{what} on a read-only node"));
    }
    let r = get(&writable, &http, "/readyz", "");
    assert_eq!(r.status, 503, "/readyz on a read-only node: {}", r.body);
    cluster
        .primary
        .admin("postgres", "ALTER SYSTEM RESET default_transaction_read_only");
    cluster.primary.admin("postgres", "SELECT pg_reload_conf()");
    wait_ready(&writable, Duration::from_secs(10));
    let started = Instant::now();
    while post(
        &writable,
        &http,
        "/v1/requests",
        "demo-alice",
        json!({"resource": "staging-db", "action": "read", "duration": "1h"}),
    )
    .status
        != 201
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "writes again once writable"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // A replica pointed at the standby: it runs, refuses writes with 503, and is not ready.
    let mut on_standby = Server::spawn_on_with_env(policy.path(), &cluster.standby.url("jitgate"), LOG_ALL);
    let started = Instant::now();
    while get(&on_standby, &http, "/healthz", "").status == 0 {
        let exited = on_standby.child.try_wait().ok().flatten();
        assert!(
            exited.is_none() && started.elapsed() < Duration::from_secs(30),
            "a replica on a read-only node must run and answer 503 (exited: {exited:?}); log:\n{}",
            on_standby.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for (what, a) in writes(&on_standby) {
        assert_ne!(a.status, 500, "{what} on a read-only node: {}", a.body);
        assert_refused_in_bound(&a, &format!("{what} on a read-only node"));
    }
    assert_eq!(get(&on_standby, &http, "/readyz", "").status, 503);

    assert_password_in_no_log(&[&writable, &on_standby]);
}

#[test]
fn multi_host_urls_choose_the_writable_node() {
    let cluster = Cluster::start(Replication::Sync, false);
    let policy = policy();
    // The standby is listed first: the replica must skip it for the writable primary.
    let servers: Vec<Server> = ["read-write", "primary"]
        .iter()
        .map(|attrs| {
            let url = Cluster::multi_host_url(&cluster.standby, &cluster.primary, attrs);
            replica(&policy, &url)
        })
        .collect();
    let http = client();
    let file = |s: &Server| {
        post(
            s,
            &http,
            "/v1/requests",
            "demo-alice",
            json!({"resource": "staging-db", "action": "read", "duration": "1h"}),
        )
    };
    let mut acknowledged = Vec::new();
    for s in &servers {
        let a = file(s);
        assert_eq!(a.status, 201, "before any failover: {}", a.body);
        acknowledged.push(a.body["id"].as_str().unwrap().to_string());
    }

    cluster.failover();
    let promoted = Instant::now();
    // Both continue on the promoted node, without a restart, within a few seconds.
    for s in &servers {
        loop {
            let a = file(s);
            assert!(
                (200..300).contains(&a.status) || is_unavailable(&a),
                "{} {}",
                a.status,
                a.body
            );
            assert!(a.took <= WRITE_BOUND, "answered after {:?}", a.took);
            if a.status == 201 {
                acknowledged.push(a.body["id"].as_str().unwrap().to_string());
                break;
            }
            assert!(
                promoted.elapsed() < Duration::from_secs(10),
                "{} writes nothing after the promotion: {}",
                s.url,
                a.body
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    eprintln!(
        "multi-host URLs: writes again {:?} after the promotion",
        promoted.elapsed()
    );
    for s in &servers {
        assert_eq!(
            metric(s, "jitgate_database_history_diverged"),
            Some(0.0),
            "a synchronous failover lost nothing: no divergence"
        );
    }
    for rid in &acknowledged {
        for s in &servers {
            assert_eq!(
                get(s, &http, &format!("/v1/requests/{rid}"), "demo-admin").status,
                200,
                "{rid}"
            );
        }
    }
    assert_password_in_no_log(&servers.iter().collect::<Vec<_>>());
}

/// Writes on `s` until one answers 503 naming the divergence (15 s at most); none may succeed.
fn refuses_writes_for_divergence(s: &Server, what: &str) {
    let http = client();
    let started = Instant::now();
    loop {
        let a = post(
            s,
            &http,
            "/v1/requests",
            "demo-alice",
            json!({"resource": "staging-db", "action": "read", "duration": "1h"}),
        );
        assert!(
            !(200..300).contains(&a.status),
            "{what}: a write was acknowledged on a history behind what it acknowledged before: {}",
            a.body
        );
        assert!(a.took <= WRITE_BOUND, "{what}: answered after {:?}", a.took);
        let m = message(&a);
        if is_unavailable(&a) && ["diverg", "rewound", "behind", "fork"].iter().any(|w| m.contains(w)) {
            assert!(a.retry_after.is_some(), "{what}: a 503 carries Retry-After");
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{what}: no 503 naming the divergence after 15 s: {} {}",
            a.status,
            a.body
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_rewound_history_after_an_async_failover_is_detected_and_alarmed() {
    let cluster = Cluster::start(Replication::Async, true);
    let policy = policy();
    let url = cluster.database_url();
    let servers = [replica(&policy, &url), replica(&policy, &url)];
    let (a, b) = (&servers[0], &servers[1]);
    let http = client();
    for i in 0..6 {
        servers[i % 2].file(
            "demo-alice",
            json!({"resource": "staging-db", "action": "read", "duration": "1h"}),
        );
    }
    // A single-use grant, approved while the standby follows.
    const PAYLOAD: &str = "sha256:0ld";
    let r = a.file(
        "demo-alice",
        json!({"resource": "prod-api", "action": "deploy", "duration": "30m", "reason": "REL-2", "payload": PAYLOAD}),
    );
    assert_eq!(
        b.post(&format!("/v1/requests/{}/approve", id(&r)), "demo-bob", json!({}))
            .0,
        200
    );
    cluster.wait_replayed();
    let gauge_before = metric(a, "jitgate_database_history_diverged");

    // The standby falls behind; the primary acknowledges 20 more writes, the single use among
    // them; then it dies and the lagging standby is promoted: those writes are gone and their
    // sequence numbers will be handed out again.
    cluster.standby.pause();
    let c = a.check("alice", "prod-api", "deploy", Some(PAYLOAD));
    assert_eq!(c["allow"], true, "{c}");
    for i in 0..19 {
        servers[i % 2].file(
            "demo-alice",
            json!({"resource": "staging-db", "action": "read", "duration": "1h"}),
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    cluster.primary.kill();
    cluster.standby.resume();
    cluster.standby.promote();

    for (i, s) in servers.iter().enumerate() {
        refuses_writes_for_divergence(s, &format!("replica {i}"));
    }
    for (i, s) in servers.iter().enumerate() {
        let r = get(s, &http, "/readyz", "");
        assert_eq!(r.status, 503, "replica {i} /readyz on a rewound history: {}", r.body);
        assert_eq!(
            metric(s, "jitgate_database_history_diverged"),
            Some(1.0),
            "replica {i} raises the alarm"
        );
        let c = check(s, &http, "alice", "prod-api", "deploy", PAYLOAD);
        assert_eq!(
            c.body["allow"], false,
            "replica {i}: a single-use grant consumed before the failover allows again: {}",
            c.body
        );
    }
    assert_eq!(gauge_before, Some(0.0), "the gauge exists, 0 before the failover");
    assert_password_in_no_log(&[a, b]);
}

#[test]
fn an_old_primary_restarted_writable_is_refused() {
    let cluster = Cluster::start(Replication::Sync, false);
    let policy = policy();
    // The old primary is listed first.
    let url = Cluster::multi_host_url(&cluster.primary, &cluster.standby, "read-write");
    let s = replica(&policy, &url);
    let http = client();
    let file = || {
        post(
            &s,
            &http,
            "/v1/requests",
            "demo-alice",
            json!({"resource": "staging-db", "action": "read", "duration": "1h"}),
        )
    };
    for _ in 0..5 {
        let a = file();
        assert_eq!(a.status, 201, "before any failover: {}", a.body);
    }
    cluster.failover();
    let promoted = Instant::now();
    let mut on_new = Vec::new();
    while on_new.len() < 5 {
        let a = file();
        assert!(a.took <= WRITE_BOUND, "answered after {:?}", a.took);
        if a.status == 201 {
            on_new.push(a.body["id"].as_str().unwrap().to_string());
        } else {
            assert!(is_unavailable(&a), "{} {}", a.status, a.body);
            assert!(
                promoted.elapsed() < Duration::from_secs(10),
                "no write on the promoted node: {}",
                a.body
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // The old primary comes back writable on its old timeline (split brain), and the replica's
    // connections to the new primary drop: its URL names the old one first.
    cluster.primary.solo();
    let head = |n: &Node| {
        n.admin(
            "jitgate",
            "SELECT coalesce(max(seq), 0) || ':' || count(*) FROM audit_events",
        )
    };
    let old_head = head(&cluster.primary);
    cluster.standby.admin(
        "postgres",
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = 'jitgate' AND pid <> pg_backend_pid()",
    );
    let mut refused = 0;
    let mut written = Vec::new();
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        let a = file();
        assert!(a.took <= WRITE_BOUND, "answered after {:?}", a.took);
        if a.status == 201 {
            written.push(a.body["id"].as_str().unwrap().to_string());
        } else {
            assert!(is_unavailable(&a), "{} {}", a.status, a.body);
            refused += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "split brain: {} writes went on, {refused} refused; old primary's head {old_head} -> {}",
        written.len(),
        head(&cluster.primary)
    );
    // Nothing reached the old primary: the chain did not fork.
    assert_eq!(head(&cluster.primary), old_head, "the replica wrote to the old primary");
    for rid in &written {
        assert_eq!(
            cluster
                .standby
                .admin("jitgate", &format!("SELECT count(*) FROM requests WHERE id = '{rid}'")),
            "1",
            "{rid} is on the new primary"
        );
    }
    if refused > 0 {
        assert_eq!(
            metric(&s, "jitgate_database_history_diverged"),
            Some(1.0),
            "refusing the old primary raises the alarm"
        );
    }
    assert_password_in_no_log(&[&s]);
}
