//! The audit log's signed checkpoints against the real server: an untouched log verifies with
//! its checkpoints; events cut off the end, or a checkpoint whose signature was tampered with,
//! are reported at the exact spot. Tampering is done directly in the SQLite file, with the
//! `sqlite3` program, while the server runs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::{json, Value};
use std::process::Command;
use support::*;

const CONFIG: &str = "[audit]\ncheckpoint_every = \"1s\"\n";

fn sql(s: &Server, statement: &str) -> String {
    let out = Command::new("sqlite3")
        .arg(s.dir.path().join("jitgate.db"))
        .arg(statement)
        .output()
        .expect("sqlite3 (apt-get install sqlite3)");
    assert!(
        out.status.success(),
        "{statement}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A server with a few dozen events, all under a signed checkpoint.
fn checkpointed() -> Server {
    let s = Server::start_with(&quickstart(), Some(CONFIG));
    for i in 0..8 {
        s.file(
            "demo-alice",
            json!({"resource": "staging-db", "action": "read", "duration": "1h", "reason": format!("job {i}")}),
        );
    }
    wait_until("the head is signed", || {
        sql(
            &s,
            "SELECT (SELECT MAX(seq) FROM audit_checkpoints) = (SELECT MAX(seq) FROM audit_events)",
        ) == "1"
    });
    s
}

fn verify(s: &Server) -> Value {
    let (status, v) = s.get("/v1/audit/verify", "demo-auditor");
    assert_eq!(status, 200, "{v}");
    v
}

#[test]
fn events_cut_off_the_end_are_caught_by_the_signed_checkpoint() {
    let s = checkpointed();
    let whole = verify(&s);
    assert_eq!(whole["ok"], true, "{whole}");
    assert!(whole["checkpoints"].as_u64().unwrap() >= 1, "{whole}");
    let head: i64 = sql(&s, "SELECT MAX(seq) FROM audit_events").parse().unwrap();

    // Cut the last three events off: what is left is a perfect chain, but the checkpoint says
    // the log went further.
    sql(&s, &format!("DELETE FROM audit_events WHERE seq > {}", head - 3));
    let cut = verify(&s);
    assert_eq!(cut["ok"], false, "{cut}");
    assert_eq!(cut["first_bad_seq"], head - 2, "{cut}");
    let problem = cut["problem"].as_str().unwrap();
    assert!(
        problem.contains(&format!("ends at event {}", head - 3)) && problem.contains("cut off"),
        "{problem}"
    );

    // The CLI says so too, and exits non-zero.
    let (code, out, err) = s.cli("demo-admin", &["audit", "verify"]);
    assert_ne!(code, 0, "{out}");
    assert!(format!("{out}{err}").contains("cut off"), "{out}{err}");
}

#[test]
fn a_forged_checkpoint_is_refused() {
    let s = checkpointed();
    assert_eq!(verify(&s)["ok"], true);
    // Someone who cut the log and wants the checkpoint to agree must re-sign it: without the
    // key, any change to a checkpoint breaks its signature.
    let seq: i64 = sql(&s, "SELECT MIN(seq) FROM audit_checkpoints").parse().unwrap();
    sql(
        &s,
        &format!("UPDATE audit_checkpoints SET signature = signature || 'x' WHERE seq = {seq}"),
    );
    let forged = verify(&s);
    assert_eq!(forged["ok"], false, "{forged}");
    assert_eq!(forged["first_bad_seq"], seq);
    assert!(
        forged["problem"].as_str().unwrap().contains("does not verify"),
        "{forged}"
    );
}

#[test]
fn an_export_re_verifies_offline_and_filters_select_events() {
    let s = Server::start();
    for i in 0..3 {
        s.file(
            "demo-alice",
            json!({"resource": "staging-db", "action": "read", "duration": "1h", "reason": format!("job {i}")}),
        );
    }
    let r = s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "read", "duration": "30m", "reason": "INC-3"}),
    );
    assert_eq!(
        s.post(&format!("/v1/requests/{}/approve", id(&r)), "demo-bob", json!({}))
            .0,
        200
    );

    // The whole log, exported and checked offline: intact.
    let (code, out, err) = s.cli("demo-admin", &["audit", "export"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), s.audit_count());
    let export = s.dir.path().join("audit.jsonl");
    std::fs::write(&export, &out).unwrap();
    let (code, text, err) = s.cli("", &["audit", "verify", "--file", export.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}{err}");
    assert!(text.contains("chain intact"), "{text}");

    // One line edited in the file: caught at that event.
    let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let victim: Value = serde_json::from_str(&edited[4]).unwrap();
    edited[4] = edited[4].replacen("\"alice\"", "\"mallory\"", 1);
    assert_ne!(edited[4], lines[4], "the edit changed the line");
    std::fs::write(&export, edited.join("\n")).unwrap();
    let (code, text, _) = s.cli("", &["audit", "verify", "--file", export.to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains(&format!("BROKEN at event {}", victim["seq"])), "{text}");

    // Filters by kind, resource and action select exactly those events.
    let (code, out, err) = s.cli(
        "demo-auditor",
        &["audit", "list", "--kind", "request.filed", "--output", "json"],
    );
    assert_eq!(code, 0, "{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    assert!(items.iter().all(|e| e["kind"] == "request.filed"));
    let (_, prod) = s.get("/v1/audit?resource=prod-db&action=read", "demo-auditor");
    let prod = prod["items"].as_array().unwrap();
    assert!(!prod.is_empty() && prod.iter().all(|e| e["resource"] == "prod-db" && e["action"] == "read"));
    assert!(prod.iter().any(|e| e["kind"] == "request.approved"));
    let (status, v) = s.get("/v1/audit?kind=request.nonsense", "demo-auditor");
    assert_eq!(status, 422, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().starts_with("kind:"), "{v}");
}
