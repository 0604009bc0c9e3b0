//! Limits on everything a caller controls (issue #11): a call over each gets its 4xx, with a
//! message naming the field or limit and the fix, changes nothing, and is counted in
//! `jitgate_limits_exceeded_total` by limit.

use crate::support::*;
use serde_json::{json, Value};

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
    // The first waits far longer than the test needs (so a slow machine cannot end its wait
    // before the second arrives), and cancelling the request then ends it at once.
    let pending = s.file(
        "demo-dave",
        json!({"resource": "prod-db", "action": "read", "reason": "INC-1"}),
    );
    let path = format!("/v1/requests/{}", id(&pending));
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| s.get(&format!("{path}?wait=60s"), "demo-dave"));
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
        let (status, v) = s.post(&format!("{path}/cancel"), "demo-dave", json!({}));
        assert_eq!(status, 200, "{v}");
        let (status, v) = waiting.join().unwrap();
        assert_eq!(
            (status, v["status"].as_str()),
            (200, Some("cancelled")),
            "the first caller is answered: {v}"
        );
    });

    let metrics = limit_counts(&s);
    assert_eq!(count(&metrics, "body_size"), 1, "{metrics}");
    assert_eq!(count(&metrics, "field_length"), 2, "{metrics}");
    assert_eq!(count(&metrics, "list_size"), 2, "{metrics}");
    assert_eq!(count(&metrics, "rate"), 1, "{metrics}");
    assert_eq!(count(&metrics, "waiters"), 1, "{metrics}");
}

/// A call's status, `Retry-After` (if any) and body.
fn call_with_retry_after(s: &Server, path: &str, token: &str, body: Option<Value>) -> (u16, Option<u64>, Value) {
    let url = format!("{}{path}", s.url);
    let request = match body {
        Some(body) => s.http.post(url).json(&body),
        None => s.http.get(url),
    };
    let response = request.bearer_auth(token).send().unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
    let text = response.text().unwrap();
    (
        status,
        retry_after,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// An approved grant of `token`'s principal for the bastion (SSH), approved by `reviewer`.
fn bastion_grant(s: &Server, token: &str, reviewer: &str) -> String {
    let r = s.file(
        token,
        json!({"resource": "bastion", "action": "login", "reason": "INC-7"}),
    );
    let (status, approved) = s.post(&format!("/v1/requests/{}/approve", id(&r)), reviewer, json!({}));
    assert_eq!(status, 200, "{approved}");
    approved["grant"]["id"].as_str().unwrap().to_string()
}

const PUBLIC_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g limits-test";

#[test]
fn every_write_a_caller_can_repeat_counts_against_that_callers_limit() {
    // Five writes at once, then one a minute: the rest of this test is refused.
    let s = Server::start_with(
        &quickstart(),
        Some("[limits]\nrequests_per_minute = 0\nwrites_per_minute = 1\nwrites_burst = 5\nmax_pending_per_requester = 0\n"),
    );
    let alices = bastion_grant(&s, ALICE, "demo-bob");
    let events_before = s.audit_count();

    // 100 SSH certificates for one grant: five are issued, each with its audit event; the
    // other 95 are refused with 429, Retry-After, and nothing written.
    let mut issued = 0;
    for n in 0..100 {
        let (status, retry_after, v) = call_with_retry_after(
            &s,
            &format!("/v1/grants/{alices}/ssh-cert"),
            ALICE,
            Some(json!({"public_key": PUBLIC_KEY})),
        );
        if n < 5 {
            assert_eq!(status, 200, "certificate {n}: {v}");
            assert!(
                v["certificate"].as_str().unwrap().starts_with("ssh-ed25519-cert"),
                "{v}"
            );
            issued += 1;
            continue;
        }
        assert_eq!(status, 429, "certificate {n}: {v}");
        assert_eq!(v["error"]["code"], "too_many_requests", "{v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("writes_per_minute") && message.contains("try again in"),
            "{message}"
        );
        let retry_after = retry_after.expect("a 429 for a rate says when to come back");
        assert!((1..=60).contains(&retry_after), "Retry-After: {retry_after}");
    }
    assert_eq!(issued, 5);
    assert_eq!(
        s.audit_count(),
        events_before + 5,
        "only the allowed certificates were recorded"
    );

    // The same limit holds for every other write alice can repeat, from every entry point:
    // ending her grant through the API, cancelling a request from the web UI.
    let (status, _, v) = call_with_retry_after(&s, &format!("/v1/grants/{alices}/done"), ALICE, Some(json!({})));
    assert_eq!(status, 429, "{v}");
    let pending = s.file(
        ALICE,
        json!({"resource": "prod-db", "action": "read", "reason": "INC-8"}),
    );
    let csrf = "a".repeat(64);
    let page = s
        .http
        .post(format!("{}/ui/requests/{}/cancel", s.url, id(&pending)))
        .header("Cookie", format!("jitgate_session={ALICE}; jitgate_csrf={csrf}"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}"))
        .send()
        .unwrap();
    assert_eq!(page.status().as_u16(), 429);
    let (_, now) = s.get(&format!("/v1/requests/{}", id(&pending)), ALICE);
    assert_eq!(now["status"], "pending", "the refused cancellation changed nothing");

    // One caller cannot spend another's: dave's certificate and carol's approval go through.
    let daves = bastion_grant(&s, "demo-dave", "demo-carol");
    let (status, v) = s.post(
        &format!("/v1/grants/{daves}/ssh-cert"),
        "demo-dave",
        json!({"public_key": PUBLIC_KEY}),
    );
    assert_eq!(status, 200, "{v}");

    let metrics = limit_counts(&s);
    assert_eq!(count(&metrics, "rate"), 95 + 2, "{metrics}");
}

#[test]
fn one_principal_cannot_hold_every_place_among_the_waiters() {
    let s = Server::start_with(
        &quickstart(),
        Some("[limits]\nrequests_per_minute = 0\nmax_waiters = 100\nmax_waiters_per_principal = 2\n"),
    );
    let pending = s.file(
        ALICE,
        json!({"resource": "prod-db", "action": "read", "reason": "INC-9"}),
    );
    let path = format!("/v1/requests/{}", id(&pending));
    let waiting = || {
        let metrics = s.http.get(format!("{}/metrics", s.url)).send().unwrap().text().unwrap();
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("jitgate_waiting_callers "))
            .map(|n| n.trim().parse::<u64>().unwrap())
            .unwrap()
    };
    std::thread::scope(|scope| {
        let alices: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| s.get(&format!("{path}?wait=20s"), ALICE)))
            .collect();
        wait_until("alice holds both her places", || waiting() == 2);

        // A third wait of alice's is refused, naming the limit, and says when to ask again.
        let (status, retry_after, v) = call_with_retry_after(&s, &format!("{path}?wait=20s"), ALICE, None);
        assert_eq!(status, 429, "{v}");
        assert_eq!(v["error"]["code"], "too_many_requests");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("alice already has 2 callers waiting") && message.contains("max_waiters_per_principal"),
            "{message}"
        );
        assert!(retry_after.is_some_and(|r| r >= 1), "{retry_after:?}");
        // Asking without waiting still works.
        assert_eq!(s.get(&path, ALICE).0, 200);

        // bob still gets a place: his wait is held until the decision, like alice's.
        let bobs = scope.spawn(|| s.get(&format!("{path}?wait=20s"), "demo-bob"));
        wait_until("bob waits too", || waiting() == 3);
        let (status, v) = s.post(&format!("{path}/approve"), "demo-carol", json!({}));
        assert_eq!(status, 200, "{v}");
        for waiter in alices.into_iter().chain([bobs]) {
            let (status, v) = waiter.join().unwrap();
            assert_eq!((status, v["status"].as_str()), (200, Some("approved")), "{v}");
        }
    });
    assert_eq!(waiting(), 0, "every place is given back");
    assert_eq!(count(&limit_counts(&s), "waiters"), 1);
}

#[test]
fn one_requester_cannot_bury_the_reviewers_inbox() {
    let s = Server::start_with(
        &quickstart(),
        Some("[limits]\nrequests_per_minute = 0\nmax_pending_per_requester = 3\n"),
    );
    let ask = json!({"resource": "prod-db", "action": "read", "reason": "INC-10"});
    let filed: Vec<Value> = (0..3).map(|_| s.file(ALICE, ask.clone())).collect();
    let alices_requests = || {
        let (status, v) = s.get("/v1/requests?requester=alice", "demo-admin");
        assert_eq!(status, 200, "{v}");
        v["items"].as_array().unwrap().len()
    };
    let events_before = s.audit_count();

    // The fourth is refused with a 429 that says what to do, and nothing is stored.
    let (status, _, v) = call_with_retry_after(&s, "/v1/requests", ALICE, Some(ask.clone()));
    assert_eq!(status, 429, "{v}");
    assert_eq!(v["error"]["code"], "too_many_requests");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("alice has 3 pending requests")
            && message.contains("max_pending_per_requester")
            && message.contains("cancel some"),
        "{message}"
    );
    assert_eq!(alices_requests(), 3);
    assert_eq!(s.audit_count(), events_before, "a refused filing writes nothing");

    // What would not wait for reviewers is not held back, and dave has his own count.
    assert_eq!(
        s.file(ALICE, json!({"resource": "staging-db", "action": "read"}))["status"],
        "approved"
    );
    assert_eq!(s.file("demo-dave", ask.clone())["status"], "pending");

    // A decision or a cancellation makes room again.
    let (status, v) = s.post(&format!("/v1/requests/{}/cancel", id(&filed[0])), ALICE, json!({}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(s.file(ALICE, ask.clone())["status"], "pending");
    assert_eq!(s.post("/v1/requests", ALICE, ask.clone()).0, 429);
    let (status, v) = s.post(&format!("/v1/requests/{}/deny", id(&filed[1])), "demo-bob", json!({}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(s.file(ALICE, ask)["status"], "pending");

    // From the web UI the same: the form says why.
    let csrf = "a".repeat(64);
    let page = s
        .http
        .post(format!("{}/ui/requests", s.url))
        .header("Cookie", format!("jitgate_session={ALICE}; jitgate_csrf={csrf}"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&target=prod-db%7Cread&reason=INC-11"))
        .send()
        .unwrap();
    assert_eq!(page.status().as_u16(), 429);
    assert!(page.text().unwrap().contains("max_pending_per_requester"));

    assert_eq!(count(&limit_counts(&s), "pending"), 3);
}

/// The request ids a page of the web UI links to, in order.
fn linked_requests(html: &str) -> Vec<String> {
    html.split("href=\"/ui/requests/")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_string)
        .collect()
}

/// The "Older" link of a page of the inbox, if it has one.
fn older_link(html: &str) -> Option<String> {
    let at = html.find("rel=\"next\"")?;
    let start = html[..at].rfind("href=\"")? + "href=\"".len();
    Some(html[start..].split('"').next()?.replace("&amp;", "&"))
}

#[test]
fn the_inbox_pages_through_everything_that_waits() {
    let s = Server::start();
    let ask = json!({"resource": "prod-db", "action": "read", "reason": "INC-12"});
    // A page holds 50; 57 wait, newest first.
    let mut filed: Vec<String> = (0..57).map(|_| id(&s.file(ALICE, ask.clone()))).collect();
    filed.reverse();
    let page = |path: &str| {
        let response = s
            .http
            .get(format!("{}{path}", s.url))
            .header("Cookie", "jitgate_session=demo-bob")
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        response.text().unwrap()
    };

    let first = page("/ui/inbox");
    assert_eq!(linked_requests(&first), filed[..50], "the first page: the newest 50");
    let older = older_link(&first).expect("the first page links to older requests");
    assert!(older.starts_with(&format!("/ui/inbox?before={}", filed[49])), "{older}");

    let second = page(&older);
    assert_eq!(linked_requests(&second), filed[50..], "the next page: the rest");
    assert!(older_link(&second).is_none(), "nothing is older");
    assert!(second.contains("href=\"/ui/inbox\""), "a way back to the newest");
    // The rows that refresh themselves on the second page stay on the second page.
    assert!(
        second.contains(&format!("hx-get=\"/ui/inbox/rows?before={}\"", filed[49])),
        "{second}"
    );
    let rows = page(&format!("/ui/inbox/rows?before={}", filed[49]));
    assert_eq!(linked_requests(&rows), filed[50..]);
}
