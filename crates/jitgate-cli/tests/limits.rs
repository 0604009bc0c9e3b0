//! Limits on everything a caller controls (issue #11): a call over each gets its 4xx, with a
//! message naming the field or limit and the fix, changes nothing, and is counted in
//! `jitgate_limits_exceeded_total` by limit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::{json, Value};
use support::*;

const ALICE: &str = "demo-alice";

fn limit_counts(s: &Server) -> String {
    s.http
        .get(format!("{}/metrics", s.url))
        .send()
        .unwrap()
        .text()
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("jitgate_limits_exceeded_total"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn count(metrics: &str, limit: &str) -> u64 {
    let prefix = format!("jitgate_limits_exceeded_total{{outcome=\"{limit}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |n| n.trim().parse().unwrap())
}

fn refused(s: &Server, path: &str, token: &str, body: Value, status: u16, says: &str) {
    let (got, v) = s.post(path, token, body);
    assert_eq!(got, status, "{path}: {v}");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(says), "{path}: '{message}' should say '{says}'");
}

#[test]
fn a_call_over_each_limit_gets_its_4xx_and_is_counted() {
    let s = Server::start_with(
        &quickstart(),
        Some("[limits]\nrequests_per_minute = 6\nrequests_burst = 3\nmax_waiters = 1\n"),
    );
    let events_before = s.audit_count();

    // Body size: 256 KiB at most.
    let big = "x".repeat(300 * 1024);
    let (status, v) = s.post(
        "/v1/requests",
        ALICE,
        json!({"resource": "staging-db", "action": "read", "reason": big}),
    );
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["error"]["code"], "payload_too_large");
    assert!(v["error"]["message"].as_str().unwrap().contains("262144 bytes"), "{v}");

    // Field lengths: a reason, a check's principal.
    refused(
        &s,
        "/v1/requests",
        ALICE,
        json!({"resource": "staging-db", "action": "read", "reason": "r".repeat(2001)}),
        422,
        "reason: is 2001 bytes; keep it under 2000",
    );
    refused(
        &s,
        "/v1/check",
        "demo-svc",
        json!({"principal": "p".repeat(300), "resource": "staging-db", "action": "read"}),
        422,
        "principal: is 300 bytes; keep it under 256",
    );

    // List sizes: a batch of checks, a token's groups.
    let check = json!({"principal": "alice", "resource": "staging-db", "action": "read"});
    refused(
        &s,
        "/v1/check/batch",
        "demo-svc",
        json!({"checks": vec![check; 1001]}),
        422,
        "checks: 1001 checks in one batch; send at most 1000",
    );
    let groups: Vec<String> = (0..65).map(|n| format!("g{n}")).collect();
    refused(
        &s,
        "/v1/tokens",
        "demo-admin",
        json!({"principal": "frank", "groups": groups}),
        422,
        "groups: 65 groups; give at most 64",
    );
    assert_eq!(s.audit_count(), events_before, "a refused call changed nothing");

    // Rate per principal: a burst of 3, then 6 a minute. Every attempt counts, the refused
    // one above too: a flood of bad filings is held back like a flood of good ones.
    for _ in 0..2 {
        s.file(ALICE, json!({"resource": "staging-db", "action": "read"}));
    }
    refused(
        &s,
        "/v1/requests",
        ALICE,
        json!({"resource": "staging-db", "action": "read"}),
        429,
        "try again in",
    );
    // Someone else still files.
    s.file("demo-dave", json!({"resource": "staging-db", "action": "read"}));

    // Waiters: one caller waits for a decision on a pending request; a second is refused.
    let pending = s.file(
        "demo-dave",
        json!({"resource": "prod-db", "action": "read", "reason": "INC-1"}),
    );
    let path = format!("/v1/requests/{}", id(&pending));
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| s.get(&format!("{path}?wait=3s"), "demo-dave"));
        wait_until("the first caller waits", || {
            let metrics = s.http.get(format!("{}/metrics", s.url)).send().unwrap().text().unwrap();
            metrics.contains("jitgate_waiting_callers 1")
        });
        let (status, v) = s.get(&format!("{path}?wait=3s"), "demo-dave");
        assert_eq!(status, 429, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("1 callers are already waiting"),
            "{v}"
        );
        assert_eq!(waiting.join().unwrap().0, 200, "the first caller is answered");
    });

    let metrics = limit_counts(&s);
    assert_eq!(count(&metrics, "body_size"), 1, "{metrics}");
    assert_eq!(count(&metrics, "field_length"), 2, "{metrics}");
    assert_eq!(count(&metrics, "list_size"), 2, "{metrics}");
    assert_eq!(count(&metrics, "rate"), 1, "{metrics}");
    assert_eq!(count(&metrics, "waiters"), 1, "{metrics}");
}
