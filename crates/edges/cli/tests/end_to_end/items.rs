//! Requests for several things at once (issue #21): `POST /v1/requests` with `items`, each item
//! judged by its own workflow and approved by its own reviewers; the request is approved when
//! every item is, and then every item is granted for one window. On SQLite and on PostgreSQL.

use crate::support::postgres::{Postgres, SUPERUSER_PASSWORD};
use crate::support::*;
use serde_json::{json, Value};

/// The quickstart, plus a group `ops` (olga) and two workflows: `ops-cache read` waits for one
/// member of `ops`, `ops-metrics read` is automatic.
fn policy() -> tempfile::TempDir {
    let policy = quickstart_with_workflows(
        r#"
[[workflow]]
resource = "ops-cache"
action = "read"
requesters = ["dev"]
max_duration = "2h"
steps = [{ group = "ops", approvals = 1 }]
extension = { max_times = 1 }

[[workflow]]
resource = "ops-metrics"
action = "read"
requesters = ["dev"]
auto_approve = true
max_duration = "4h"
default_duration = "20m"
"#,
    );
    let path = policy.path().join("directory.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("\n[[principal]]\nname = \"olga\"\ngroups = [\"ops\"]\ntoken = \"demo-olga\"\n");
    std::fs::write(&path, text).unwrap();
    policy
}

/// Three items under three workflows: automatic, one sre, one ops.
fn three_items() -> Value {
    json!({
        "items": [
            {"resource": "staging-db", "action": "read"},
            {"resource": "prod-db", "action": "read"},
            {"resource": "ops-cache", "action": "read"},
        ],
        "duration": "30m",
        "reason": "OPS-7 compare staging with prod",
    })
}

const PAIRS: [(&str, &str); 3] = [("staging-db", "read"), ("prod-db", "read"), ("ops-cache", "read")];

fn allowed(s: &Server, principal: &str, resource: &str, action: &str) -> bool {
    s.check(principal, resource, action, None)["allow"] == true
}

fn approvers(item: &Value) -> Vec<String> {
    item["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["reviewer"].as_str().unwrap().to_string())
        .collect()
}

/// The whole walk, item by item: what the bar of issue #21 asks.
fn approved_item_by_item(s: &Server) {
    let r = s.file("demo-alice", three_items());
    let id = id(&r);
    assert_eq!(r["status"], "pending", "{r}");
    let items = r["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{r}");
    assert_eq!(
        (r["resource"].as_str(), r["action"].as_str()),
        (Some("staging-db"), Some("read"))
    );
    assert_eq!(items[0]["needs"], json!([]));
    assert_eq!(items[1]["needs"], json!([{"group": "sre", "approvals": 1}]));
    assert_eq!(items[2]["needs"], json!([{"group": "ops", "approvals": 1}]));
    assert_eq!(
        r["needs"],
        json!([{"group": "sre", "approvals": 1}, {"group": "ops", "approvals": 1}])
    );
    // The window is the one asked for, within every item's maximum.
    assert_eq!(r["duration_seconds"], 1800);
    for (resource, action) in PAIRS {
        assert!(!allowed(s, "alice", resource, action), "{resource} before any approval");
    }

    // Self-approval is impossible; an outsider does not even see it.
    let (status, refused) = s.post(&format!("/v1/requests/{id}/approve"), "demo-alice", json!({}));
    assert_eq!(status, 403, "{refused}");
    let (status, refused) = s.post(&format!("/v1/requests/{id}/approve"), "demo-dave", json!({}));
    assert_eq!(status, 404, "{refused}");

    // bob (sre) approves what he may: prod-db read alone. Nothing is granted yet.
    let (status, after_bob) = s.post(
        &format!("/v1/requests/{id}/approve"),
        "demo-bob",
        json!({"comment": "ok"}),
    );
    assert_eq!(status, 200, "{after_bob}");
    assert_eq!(after_bob["status"], "pending");
    let items = after_bob["items"].as_array().unwrap();
    assert!(approvers(&items[0]).is_empty());
    assert_eq!(approvers(&items[1]), ["bob"]);
    assert!(approvers(&items[2]).is_empty());
    assert_eq!(items[1]["needs"], json!([]));
    assert!(items.iter().all(|i| i.get("grant").is_none()), "{after_bob}");
    for (resource, action) in PAIRS {
        assert!(
            !allowed(s, "alice", resource, action),
            "{resource} after the first reviewer"
        );
    }
    // His approval applies to nothing more: a conflict that says so.
    let (status, again) = s.post(&format!("/v1/requests/{id}/approve"), "demo-bob", json!({}));
    assert_eq!(status, 409, "{again}");
    assert!(again["error"]["message"].as_str().unwrap().contains("ops"), "{again}");

    // olga (ops) approves the last item: every item is granted, with one window.
    let (status, done) = s.post(&format!("/v1/requests/{id}/approve"), "demo-olga", json!({}));
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["status"], "approved", "{done}");
    let items = done["items"].as_array().unwrap();
    assert_eq!(approvers(&items[2]), ["olga"]);
    let grants: Vec<&Value> = items.iter().map(|i| &i["grant"]).collect();
    assert!(grants.iter().all(|g| g["status"] == "active"), "{done}");
    assert!(grants
        .iter()
        .all(|g| g["starts_at"] == grants[0]["starts_at"] && g["expires_at"] == grants[0]["expires_at"]));
    // Each grant has its own token, shown to its holder.
    let (_, mine) = s.get(&format!("/v1/requests/{id}"), "demo-alice");
    let tokens: Vec<&str> = mine["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["grant"]["token"].as_str().unwrap())
        .collect();
    assert_eq!(tokens.len(), 3);
    assert!(tokens[0] != tokens[1] && tokens[1] != tokens[2], "{mine}");
    let mut ids: Vec<&str> = grants.iter().map(|g| g["id"].as_str().unwrap()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    assert_eq!(done["grant"]["id"], grants[0]["id"]);
    for ((resource, action), g) in PAIRS.iter().zip(&grants) {
        assert_eq!(
            (g["resource"].as_str(), g["action"].as_str()),
            (Some(*resource), Some(*action))
        );
        let answer = s.check("alice", resource, action, None);
        assert_eq!(answer["allow"], true, "{resource}: {answer}");
        assert_eq!(answer["grant_id"], g["id"]);
    }
    // Nothing else: another action, another principal.
    assert!(!allowed(s, "alice", "prod-db", "write"));
    assert!(!allowed(s, "dave", "prod-db", "read"));
    assert!(!allowed(s, "alice", "ops-metrics", "read"));

    // The log files each item under its own resource: filing, approval, grant.
    let (_, events) = s.get(&format!("/v1/audit?request_id={id}"), "demo-admin");
    let seen: Vec<(String, String)> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["resource"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (kind, resource) in [
        ("request.filed", "staging-db"),
        ("request.filed", "prod-db"),
        ("request.filed", "ops-cache"),
        ("request.approval", "prod-db"),
        ("request.approval", "ops-cache"),
        ("grant.issued", "staging-db"),
        ("grant.issued", "prod-db"),
        ("grant.issued", "ops-cache"),
    ] {
        assert!(
            seen.contains(&(kind.to_string(), resource.to_string())),
            "{kind} {resource}: {seen:?}"
        );
    }

    // Extending any item's grant extends every one of them (each workflow allows one).
    let second = grants[1]["id"].as_str().unwrap();
    let (status, extended) = s.post(
        &format!("/v1/grants/{second}/extend"),
        "demo-alice",
        json!({"duration": "5m", "reason": "a little longer"}),
    );
    assert_eq!(status, 200, "{extended}");
    let (_, read) = s.get(&format!("/v1/requests/{id}"), "demo-alice");
    let ends: Vec<&Value> = read["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["grant"]["expires_at"])
        .collect();
    assert!(ends.iter().all(|e| **e == extended["expires_at"]), "{read}");
    assert_ne!(extended["expires_at"], grants[1]["expires_at"]);

    // Revoking any item's grant ends every one of them.
    let third = grants[2]["id"].as_str().unwrap();
    let (status, revoked) = s.post(&format!("/v1/grants/{third}/revoke"), "demo-alice", json!({}));
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["id"], third);
    for (resource, action) in PAIRS {
        assert!(!allowed(s, "alice", resource, action), "{resource} after revocation");
    }
    let (_, read) = s.get(&format!("/v1/requests/{id}"), "demo-alice");
    assert!(
        read["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["grant"]["status"] == "revoked"),
        "{read}"
    );
    assert!(s.get("/v1/audit/verify", "demo-admin").1["ok"] == true);
}

#[test]
fn three_items_are_approved_item_by_item_and_granted_together() {
    let policy = policy();
    let s = Server::start_with_policy(policy.path());
    approved_item_by_item(&s);
}

#[test]
fn a_denial_denies_every_item() {
    let policy = policy();
    let s = Server::start_with_policy(policy.path());
    let r = s.file("demo-alice", three_items());
    let id = id(&r);
    let (status, after_bob) = s.post(&format!("/v1/requests/{id}/approve"), "demo-bob", json!({}));
    assert_eq!(status, 200, "{after_bob}");
    let (status, denied) = s.post(
        &format!("/v1/requests/{id}/deny"),
        "demo-olga",
        json!({"comment": "not now"}),
    );
    assert_eq!(status, 200, "{denied}");
    assert_eq!(denied["status"], "denied");
    assert!(denied["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i.get("grant").is_none()));
    for (resource, action) in PAIRS {
        assert!(!allowed(&s, "alice", resource, action));
    }
    let (status, late) = s.post(&format!("/v1/requests/{id}/approve"), "demo-carol", json!({}));
    assert_eq!(status, 409, "{late}");
}

#[test]
fn two_reviewers_approving_at_once_both_count() {
    let policy = policy();
    let s = Server::start_with_policy(policy.path());
    for _ in 0..5 {
        let id = id(&s.file("demo-alice", three_items()));
        let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
            let calls: Vec<_> = ["demo-bob", "demo-olga"]
                .into_iter()
                .map(|token| {
                    let (s, id) = (&s, &id);
                    scope.spawn(move || s.post(&format!("/v1/requests/{id}/approve"), token, json!({})))
                })
                .collect();
            calls.into_iter().map(|c| c.join().unwrap()).collect()
        });
        assert!(answers.iter().all(|(status, _)| *status == 200), "{answers:?}");
        let (_, read) = s.get(&format!("/v1/requests/{id}"), "demo-alice");
        assert_eq!(read["status"], "approved", "{read}");
        let items = read["items"].as_array().unwrap();
        assert_eq!(approvers(&items[1]), ["bob"]);
        assert_eq!(approvers(&items[2]), ["olga"]);
        assert!(items.iter().all(|i| i["grant"]["status"] == "active"), "{read}");
        let (_, events) = s.get(&format!("/v1/audit?request_id={id}&kind=grant.issued"), "demo-admin");
        assert_eq!(events["items"].as_array().unwrap().len(), 3, "one grant per item, once");
        for (resource, action) in PAIRS {
            assert!(allowed(&s, "alice", resource, action));
        }
        let first = items[0]["grant"]["id"].as_str().unwrap();
        let (status, _) = s.post(&format!("/v1/grants/{first}/revoke"), "demo-alice", json!({}));
        assert_eq!(status, 200);
    }
}

#[test]
fn bad_item_lists_are_refused_naming_the_item_and_the_fix() {
    let policy = policy();
    let s = Server::start_with_policy(policy.path());
    let refused = |body: Value| {
        let (status, v) = s.post("/v1/requests", "demo-alice", body);
        (status, v["error"]["message"].as_str().unwrap_or_default().to_string())
    };
    let (status, m) = refused(json!({"items": [], "reason": "x"}));
    assert_eq!(status, 422, "{m}");
    assert!(m.starts_with("items: 0 items") && m.contains("1 to 20"), "{m}");
    let many: Vec<Value> = (0..21)
        .map(|i| json!({"resource": format!("r{i}"), "action": "read"}))
        .collect();
    let (status, m) = refused(json!({"items": many, "reason": "x"}));
    assert_eq!(status, 422, "{m}");
    assert!(m.contains("21 items") && m.contains("1 to 20"), "{m}");
    let (status, m) = refused(json!({"items": [
        {"resource": "staging-db", "action": "read"},
        {"resource": "staging-db", "action": "read"}
    ], "reason": "x"}));
    assert_eq!(status, 422, "{m}");
    assert!(m.starts_with("items[1].resource: ") && m.contains("items[0]"), "{m}");
    for (bad, shown) in [
        ("prod\u{200b}-db", "U+200B"),
        ("prod-db\u{0}", "U+0000"),
        ("\u{202e}bd-dorp", "U+202E"),
    ] {
        let (status, m) = refused(json!({"items": [
            {"resource": "staging-db", "action": "read"},
            {"resource": "ops-cache", "action": "read"},
            {"resource": bad, "action": "read"}
        ], "reason": "x"}));
        assert_eq!(status, 422, "{m}");
        assert!(m.starts_with("items[2].resource: ") && m.contains(shown), "{m}");
        assert!(m.contains("jitgate resources"), "{m}");
    }
    let (status, m) = refused(json!({"items": [
        {"resource": "staging-db", "action": "read"},
        {"resource": "prod-db", "action": "drop"}
    ], "reason": "x"}));
    assert_eq!(status, 422, "{m}");
    assert!(m.starts_with("items[1].action: "), "{m}");
    // An item's own workflow judges it: a longer window than one item allows names that item.
    let (status, m) = refused(json!({"items": [
        {"resource": "staging-db", "action": "read"},
        {"resource": "prod-db", "action": "read"}
    ], "duration": "4h", "reason": "OPS-1"}));
    assert_eq!(status, 422, "{m}");
    assert!(m.starts_with("items[1].duration: "), "{m}");
    // One item a requester may not ask for refuses the lot.
    // bob (sre) may ask for prod-db read, not for staging-db read.
    let (status, v) = s.post(
        "/v1/requests",
        "demo-bob",
        json!({"items": [
        {"resource": "prod-db", "action": "read"},
        {"resource": "staging-db", "action": "read"}
    ], "reason": "OPS-1"}),
    );
    let m = v["error"]["message"].as_str().unwrap_or_default();
    assert_eq!(status, 403, "{m}");
    assert!(m.starts_with("items[1] (read on staging-db): "), "{m}");
    // Break-glass needs every item's workflow to allow it.
    let (status, v) = s.post(
        "/v1/requests",
        "demo-bob",
        json!({"items": [
        {"resource": "prod-db", "action": "write"},
        {"resource": "prod-db", "action": "read"}
    ], "reason": "OPS-1 outage", "break_glass": true}),
    );
    let m = v["error"]["message"].as_str().unwrap_or_default();
    assert!(status == 403 || status == 422, "{status} {m}");
    assert!(m.starts_with("items[1]"), "{m}");
    let (status, m) = refused(json!({"resource": "staging-db", "action": "read", "items": [
        {"resource": "staging-db", "action": "read"}
    ]}));
    assert_eq!(status, 422, "{m}");
    assert!(m.contains("either"), "{m}");
    // Without a duration, the window is the shortest any item's workflow gives.
    let r = s.file(
        "demo-alice",
        json!({"items": [
            {"resource": "staging-db", "action": "read"},
            {"resource": "ops-metrics", "action": "read"}
        ]}),
    );
    assert_eq!(r["status"], "approved", "{r}");
    // staging-db read gives 8h by default, ops-metrics read 20m: both grants last 20m.
    assert_eq!(r["duration_seconds"], 1200, "{r}");
    let windows: Vec<i64> = r["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let at = |f: &str| chrono::DateTime::parse_from_rfc3339(i["grant"][f].as_str().unwrap()).unwrap();
            (at("expires_at") - at("starts_at")).num_seconds()
        })
        .collect();
    assert_eq!(windows, [1200, 1200]);
    // An item's payload is reviewed text like any other: a control character is refused by index.
    let (status, m) = refused(json!({"items": [
        {"resource": "staging-db", "action": "read"},
        {"resource": "prod-api", "action": "deploy", "payload": "deploy\u{0}\u{1b}[31m"}
    ], "reason": "x"}));
    assert_eq!(status, 422, "{m}");
    assert!(m.starts_with("items[1].payload: "), "{m}");
    // Nothing of the refused ones was filed.
    let (_, mine) = s.get("/v1/requests?requester=alice", "demo-alice");
    assert_eq!(mine["items"].as_array().unwrap().len(), 1, "{mine}");
}

#[test]
fn expiry_ends_every_items_grant_and_the_cli_files_with_also() {
    let policy = policy();
    let s = Server::start_with_policy(policy.path());
    let r = s.file(
        "demo-alice",
        json!({"items": [
        {"resource": "staging-db", "action": "read"},
        {"resource": "ops-metrics", "action": "read"}
    ], "duration": "5s", "reason": "look"}),
    );
    assert_eq!(r["status"], "approved", "{r}");
    // Both checks fall well inside the 5 s grant, however slow the machine between them.
    assert!(allowed(&s, "alice", "staging-db", "read") && allowed(&s, "alice", "ops-metrics", "read"));
    let id = id(&r);
    wait_until_within("every item's grant expired", std::time::Duration::from_secs(20), || {
        let (_, read) = s.get(&format!("/v1/requests/{id}"), "demo-alice");
        read["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["grant"]["status"] == "expired")
    });
    assert!(!allowed(&s, "alice", "staging-db", "read") && !allowed(&s, "alice", "ops-metrics", "read"));
    wait_until("both expiries are recorded", || {
        let (_, events) = s.get(&format!("/v1/audit?request_id={id}&kind=grant.expired"), "demo-admin");
        events["items"].as_array().unwrap().len() == 2
    });

    // The CLI: --also adds items; the answer lists each.
    let (code, out, err) = s.cli(
        "demo-alice",
        &[
            "request",
            "staging-db",
            "read",
            "--also",
            "ops-cache:read",
            "--for",
            "30m",
            "--reason",
            "cli",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("item 0    read on staging-db"), "{out}");
    assert!(out.contains("item 1    read on ops-cache; needs 1 from ops"), "{out}");
    let (code, out, err) = s.cli("demo-alice", &["request", "staging-db", "read", "--also", "ops-cache"]);
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("RESOURCE:ACTION"), "{err}");
    // gate waits for the whole request: automatic items pass at once.
    let (code, out, err) = s.cli(
        "demo-alice",
        &[
            "gate",
            "staging-db",
            "read",
            "--also",
            "ops-metrics:read",
            "--timeout",
            "10s",
            "--output",
            "json",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let gated: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(gated["items"].as_array().unwrap().len(), 2);
    // run waits for the whole request and hands the command every item's grant.
    let (code, out, err) = s.cli(
        "demo-alice",
        &[
            "run",
            "staging-db",
            "read",
            "--also",
            "ops-metrics:read",
            "--reason",
            "look",
            "--",
            "sh",
            "-c",
            "echo \"ids=$JITGATE_GRANT_IDS\"",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let ids = out.lines().find_map(|l| l.strip_prefix("ids=")).unwrap_or_default();
    assert_eq!(ids.split(',').filter(|i| i.starts_with("grt_")).count(), 2, "{out}");
    // ... and ended every grant when the command finished.
    let first = ids.split(',').next().unwrap();
    let (_, read) = s.get("/v1/grants?limit=10", "demo-alice");
    let ended: Vec<&Value> = read["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| ids.split(',').any(|i| g["id"] == i))
        .collect();
    assert_eq!(ended.len(), 2, "{read}");
    assert!(ended.iter().all(|g| g["status"] == "done"), "{read}");
    assert!(!first.is_empty());
    // ... and one item nobody approves in time keeps the whole request from passing.
    let (code, out, err) = s.cli(
        "demo-alice",
        &[
            "gate",
            "staging-db",
            "read",
            "--also",
            "ops-cache:read",
            "--timeout",
            "1s",
        ],
    );
    assert_eq!(code, 3, "{out}{err}");
}

/// A page of the web UI as `token`'s holder sees it, signed in with a CSRF cookie of our own
/// choosing.
fn ui_page(s: &Server, token: &str, path: &str) -> String {
    no_redirects()
        .get(format!("{}{path}", s.url))
        .header("Cookie", ui_session(s, token))
        .send()
        .unwrap()
        .text()
        .unwrap()
}

#[test]
fn the_reviewer_is_shown_every_item_on_its_page() {
    let policy = policy();
    let s = Server::start_with_policy(policy.path());
    let r = s.file(
        "demo-alice",
        json!({"items": [
        {"resource": "prod-db", "action": "read"},
        {"resource": "prod-api", "action": "deploy", "payload": "<script>x</script>"}
    ], "reason": "OPS-2"}),
    );
    let page = ui_page(&s, "demo-bob", &format!("/ui/requests/{}", id(&r)));
    assert!(page.contains("id=\"items\""), "{page}");
    assert!(
        page.contains("prod-api") && page.contains("&#60;script&#62;x"),
        "{page}"
    );
    assert!(page.contains("id=\"approve\""), "bob may approve the item he reviews");
    assert!(!page.contains("<script>x</script>"));
    // The inbox of a reviewer of any item holds it, even when the first item is not theirs.
    let mine = s.file(
        "demo-alice",
        json!({"items": [
        {"resource": "staging-db", "action": "read"},
        {"resource": "ops-cache", "action": "read"}
    ], "reason": "cache"}),
    );
    let inbox = ui_page(&s, "demo-olga", "/ui/inbox");
    assert!(inbox.contains(&id(&mine)), "{inbox}");
    assert!(inbox.contains("and 1 more"), "{inbox}");
    assert!(!inbox.contains(&id(&r)), "olga reviews no item of the first one");
}

#[test]
fn items_on_postgres() {
    let pg = Postgres::start();
    pg.admin("postgres", "CREATE DATABASE jitgate");
    let url = pg.url("postgres", SUPERUSER_PASSWORD, "jitgate");
    let policy = policy();
    let s = Server::start_on(policy.path(), None, Some(&url));
    approved_item_by_item(&s);
    // A NUL byte in an item's payload is refused by its index, as on SQLite, before the
    // database (which cannot store one in text) sees it.
    let (status, refused) = s.post(
        "/v1/requests",
        "demo-alice",
        json!({"items": [
        {"resource": "staging-db", "action": "read"},
        {"resource": "prod-api", "action": "deploy", "payload": "a\u{0}b\u{7}"}
    ], "reason": "x"}),
    );
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("items[1].payload: "),
        "{refused}"
    );
    let r = s.file(
        "demo-alice",
        json!({"items": [
        {"resource": "staging-db", "action": "read"},
        {"resource": "prod-api", "action": "deploy", "payload": "sha256:ab12 \u{e9}t\u{e9}"}
    ], "duration": "5m", "reason": "ship"}),
    );
    let (_, read) = s.get(&format!("/v1/requests/{}", id(&r)), "demo-alice");
    assert_eq!(read["items"][1]["payload"], "sha256:ab12 \u{e9}t\u{e9}", "{read}");
    assert_eq!(read["items"][1]["action_bound"], true, "{read}");
}
