//! The audit log's signed checkpoints against the real server: an untouched log verifies with
//! its checkpoints; events cut off the end, or a checkpoint whose signature was tampered with,
//! are reported at the exact spot. Tampering is done directly in the SQLite file, with the
//! `sqlite3` program, while the server runs.

use crate::support::*;
use serde_json::{json, Value};
use std::process::Command;

const CONFIG: &str = "[audit]\ncheckpoint_every = \"1s\"\n";

fn sql(s: &Server, statement: &str) -> String {
    // The server keeps writing (checkpoints every second): `sqlite` waits for its lock.
    s.sqlite(statement)
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

/// File `n` automatically approved requests from four callers at once: three events each.
fn busy(s: &Server, n: usize) {
    std::thread::scope(|scope| {
        for worker in 0..4 {
            scope.spawn(move || {
                for i in (worker..n).step_by(4) {
                    s.file(
                        "demo-alice",
                        json!({"resource": "staging-db", "action": "read", "duration": "1h", "reason": format!("batch job {i}")}),
                    );
                }
            });
        }
    });
}

fn head(s: &Server) -> i64 {
    sql(s, "SELECT MAX(seq) FROM audit_events").parse().unwrap()
}

fn wait_signed_head(s: &Server) {
    wait_until("the head is signed", || {
        sql(
            s,
            "SELECT (SELECT MAX(seq) FROM audit_checkpoints) = (SELECT MAX(seq) FROM audit_events)",
        ) == "1"
    });
}

/// Thousands of events, then every kind of tampering done directly in the database file, one
/// at a time and undone after: each is reported at the event where it was done, and the
/// untouched log verifies before and after each.
#[test]
fn every_kind_of_tampering_in_the_database_file_is_found_where_it_was_done() {
    let s = Server::start_with(&quickstart(), Some(CONFIG));
    busy(&s, 1100);
    wait_signed_head(&s);
    let last = head(&s);
    assert!(last >= 3300, "{last} events");
    let whole = verify(&s);
    assert_eq!(whole["ok"], true, "{whole}");
    assert_eq!(whole["events"], last);
    sql(&s, "CREATE TABLE pristine AS SELECT * FROM audit_events");
    let restore = || {
        sql(
            &s,
            "DELETE FROM audit_events; INSERT INTO audit_events SELECT * FROM pristine",
        );
        let again = verify(&s);
        let added = sql(
            &s,
            "SELECT group_concat(seq || ' ' || kind || ' ' || actor, '; ') FROM audit_events WHERE seq > (SELECT MAX(seq) FROM pristine)",
        );
        assert_eq!(again["ok"], true, "restored: {again}; added since: {added}");
    };
    let k = 1234;
    // The start cut off where no checkpoint signs the event before the new first one (a
    // checkpoint there, with every earlier one, would read as an archive's anchor).
    let signed: Vec<i64> = sql(&s, "SELECT seq FROM audit_checkpoints")
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let unsigned_start = (100..).find(|start| !signed.contains(&(start - 1))).unwrap();
    let cut_off_start_says = format!("events 1 to {} are missing", unsigned_start - 1);
    let cases: Vec<(&str, String, i64, &str)> = vec![
        (
            "an edited field",
            format!("UPDATE audit_events SET subject = 'mallory' WHERE seq = {k}"),
            k,
            "was altered",
        ),
        (
            "a deleted event",
            format!("DELETE FROM audit_events WHERE seq = {k}"),
            k + 1,
            "expected event 1234 but found 1235",
        ),
        (
            "an inserted event",
            format!(
                "UPDATE audit_events SET seq = -seq - 1 WHERE seq > {k}; \
                 UPDATE audit_events SET seq = -seq WHERE seq < 0; \
                 INSERT INTO audit_events SELECT {k} + 1, at, kind, 'mallory', 'mallory', request_id, grant_id, resource, action, 'backdated', hash, hash FROM pristine WHERE seq = {k}"
            ),
            k + 1,
            "was altered",
        ),
        (
            "two events swapped",
            format!(
                "UPDATE audit_events SET seq = -1 WHERE seq = {k}; \
                 UPDATE audit_events SET seq = {k} WHERE seq = {k} + 1; \
                 UPDATE audit_events SET seq = {k} + 1 WHERE seq = -1"
            ),
            k,
            "does not link",
        ),
        (
            "events cut off the end",
            format!("DELETE FROM audit_events WHERE seq > {}", last - 5),
            last - 4,
            "cut off",
        ),
        (
            "events cut off the start",
            format!("DELETE FROM audit_events WHERE seq < {unsigned_start}"),
            unsigned_start,
            &cut_off_start_says,
        ),
    ];
    for (what, tampering, at, says) in cases {
        // The log as it is now (an event the server records meanwhile is kept).
        sql(
            &s,
            "DELETE FROM pristine; INSERT INTO pristine SELECT * FROM audit_events",
        );
        sql(&s, &tampering);
        if what == "an inserted event" {
            // The log grew by one: the signer, which runs every second, must not sign a head
            // that does not extend its last checkpoint (that would launder the insertion).
            let signed = sql(&s, "SELECT MAX(seq) FROM audit_checkpoints");
            std::thread::sleep(std::time::Duration::from_millis(2500));
            assert_eq!(
                sql(&s, "SELECT MAX(seq) FROM audit_checkpoints"),
                signed,
                "a tampered head was signed"
            );
        }
        let report = verify(&s);
        assert_eq!(report["ok"], false, "{what}: {report}");
        assert_eq!(report["first_bad_seq"], at, "{what}: {report}");
        let problem = report["problem"].as_str().unwrap();
        assert!(problem.contains(says), "{what}: {problem}");
        restore();
    }
}

/// An export with its checkpoints re-verifies offline with the signing keys: a cut-off end, a
/// forged key set and an edited line are each caught.
#[test]
fn an_export_with_checkpoints_proves_its_end_offline() {
    let s = checkpointed();
    let (code, export, err) = s.cli("demo-auditor", &["audit", "export", "--checkpoints"]);
    assert_eq!(code, 0, "{err}");
    let (code, keys, err) = s.cli("demo-auditor", &["audit", "keys"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = export.lines().collect();
    assert!(lines.last().unwrap().starts_with("{\"checkpoint\""), "ends signed");
    let dir = tempfile::tempdir().unwrap();
    let (file, keys_file) = (dir.path().join("export.jsonl"), dir.path().join("keys.json"));
    std::fs::write(&keys_file, keys).unwrap();
    let check = |text: &str, keys: Option<&std::path::Path>| {
        std::fs::write(&file, text).unwrap();
        let mut args = vec!["audit", "verify", "--file", file.to_str().unwrap()];
        if let Some(k) = keys {
            args.extend(["--keys", k.to_str().unwrap()]);
        }
        let (code, out, err) = s.cli("", &args);
        (code, format!("{out}{err}"))
    };
    let (code, out) = check(&export, Some(&keys_file));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("signatures valid"), "{out}");

    // The last two events and the final checkpoint cut off: the rest is a perfect chain, but
    // nothing vouches for its last events any more.
    let cut: Vec<&str> = lines[..lines.len() - 3].to_vec();
    let cut_at: Value = serde_json::from_str(cut.iter().rev().find(|l| l.starts_with("{\"seq\"")).unwrap()).unwrap();
    let (code, out) = check(&cut.join("\n"), Some(&keys_file));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("come after the last signed checkpoint"), "{out}");
    assert!(out.contains(&format!("to {}", cut_at["seq"])), "{out}");

    // Keys that did not sign it.
    let other = Server::start();
    let (_, other_keys, _) = other.cli("demo-auditor", &["audit", "keys"]);
    let other_file = dir.path().join("other.json");
    std::fs::write(&other_file, other_keys).unwrap();
    let (code, out) = check(&export, Some(&other_file));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not among the keys given"), "{out}");

    // A filtered export cannot carry checkpoints.
    let (code, _, err) = s.cli(
        "demo-auditor",
        &["audit", "export", "--checkpoints", "--kind", "request.filed"],
    );
    assert_ne!(code, 0);
    assert!(err.contains("--checkpoints"), "{err}");
}

/// Offline verification checks what each line shows against what is signed, and where it
/// stands: a checkpoint whose `at` was edited (the signature states `iat`), a checkpoint moved
/// before its event, and a line cut off in the middle are each BROKEN (exit 1) at the line;
/// an intact export names the first and last event it verified.
#[test]
fn an_export_is_broken_by_an_edited_checkpoint_time_a_moved_checkpoint_or_a_cut_off_line() {
    let s = checkpointed();
    let (code, export, err) = s.cli("demo-auditor", &["audit", "export", "--checkpoints"]);
    assert_eq!(code, 0, "{err}");
    let (code, keys, err) = s.cli("demo-auditor", &["audit", "keys"]);
    assert_eq!(code, 0, "{err}");
    let dir = tempfile::tempdir().unwrap();
    let (file, keys_file) = (dir.path().join("export.jsonl"), dir.path().join("keys.json"));
    std::fs::write(&keys_file, keys).unwrap();
    let check = |text: &str, with_keys: bool| {
        std::fs::write(&file, text).unwrap();
        let mut args = vec!["audit", "verify", "--file", file.to_str().unwrap()];
        if with_keys {
            args.extend(["--keys", keys_file.to_str().unwrap()]);
        }
        let (code, out, err) = s.cli("", &args);
        (code, format!("{out}{err}"))
    };
    let lines: Vec<String> = export.lines().map(str::to_string).collect();
    let parsed: Vec<Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let event_seqs: Vec<i64> = parsed.iter().filter_map(|v| v["seq"].as_i64()).collect();
    let (first, last) = (event_seqs[0], *event_seqs.last().unwrap());

    // Intact: the success line names the first and the last event verified.
    let (code, out) = check(&export, true);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("events {first} to {last} ({} events)", event_seqs.len())),
        "{out}"
    );

    // A checkpoint's `at` moved an hour back: its signature still holds (it signs `iat`), but
    // the line no longer shows what was signed. Caught with the keys and without them.
    let victim = parsed.iter().position(|v| v.get("checkpoint").is_some()).unwrap();
    let seq = parsed[victim]["checkpoint"]["seq"].as_i64().unwrap();
    let at: chrono::DateTime<chrono::Utc> = parsed[victim]["checkpoint"]["at"].as_str().unwrap().parse().unwrap();
    let mut edited_line = parsed[victim].clone();
    edited_line["checkpoint"]["at"] = json!((at - chrono::Duration::hours(1)).to_rfc3339());
    let mut edited = lines.clone();
    edited[victim] = edited_line.to_string();
    for with_keys in [true, false] {
        let (code, out) = check(&edited.join("\n"), with_keys);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains(&format!("BROKEN at event {seq}")), "{out}");
        assert!(
            out.contains(&format!("export.jsonl:{}", victim + 1)),
            "names the line: {out}"
        );
        assert!(out.contains("is not the time it was signed at"), "{out}");
    }

    // The last checkpoint moved up before the event it signs (hash and signature untouched).
    let last_checkpoint = parsed.iter().rposition(|v| v.get("checkpoint").is_some()).unwrap();
    let seq = parsed[last_checkpoint]["checkpoint"]["seq"].as_i64().unwrap();
    let its_event = parsed.iter().position(|v| v["seq"].as_i64() == Some(seq)).unwrap();
    let mut moved = lines.clone();
    let line = moved.remove(last_checkpoint);
    moved.insert(its_event, line);
    let (code, out) = check(&moved.join("\n"), true);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("BROKEN at event {seq}")), "{out}");
    assert!(out.contains(&format!("comes before event {seq}")), "{out}");

    // The last line cut off in the middle: BROKEN like every other break, not a usage error.
    let whole = export.trim_end();
    let cut = &whole[..whole.len() - 20];
    let (code, out) = check(cut, true);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("BROKEN at event"), "{out}");
    assert!(
        out.contains(&format!("export.jsonl:{}", lines.len())) && out.contains("cut off"),
        "{out}"
    );

    // The same with an event line: an export without checkpoints whose last event is cut.
    let (code, plain, err) = s.cli("demo-auditor", &["audit", "export"]);
    assert_eq!(code, 0, "{err}");
    let plain = plain.trim_end();
    let last_event: Value = serde_json::from_str(plain.lines().last().unwrap()).unwrap();
    let (code, out) = check(&plain[..plain.len() - 30], false);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("BROKEN at event {}", last_event["seq"])), "{out}");
}

/// Runs the verifier of scripts/independent-verifier (Node.js, written from docs/audit.md
/// alone); scripts/test.sh installs Node.js when it is missing.
fn independent_verifier(args: &[&str]) -> (i32, String) {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../scripts/independent-verifier/verify.mjs");
    let out = Command::new("node")
        .arg(script)
        .args(args)
        .output()
        .expect("node (apt-get install nodejs; scripts/test.sh does)");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// "BROKEN at event N" of a report, the part both verifiers must agree on.
fn broken_at(report: &str) -> &str {
    let start = report
        .find("BROKEN at event ")
        .unwrap_or_else(|| panic!("not broken: {report}"));
    let rest = &report[start..];
    &rest[..rest.find(':').unwrap_or(rest.len())]
}

/// docs/audit.md is enough to verify an export: a verifier written from it alone, in another
/// language, accepts a real export (checkpoints signed by two keys across a rotation) and the
/// page's worked example, and rejects an edited field, a deleted event, an edited checkpoint
/// time, a moved checkpoint and a cut-off line at the same event as `jitgate audit verify`.
#[test]
fn a_verifier_written_from_the_docs_alone_agrees_with_jitgate() {
    let s = checkpointed();
    let (code, _, err) = s.cli("demo-admin", &["keys", "rotate"]);
    assert_eq!(code, 0, "{err}");
    let r = s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "read", "duration": "30m", "reason": "INC-7 \"quoted\" ünïcode — ok"}),
    );
    assert_eq!(
        s.post(
            &format!("/v1/requests/{}/approve", id(&r)),
            "demo-bob",
            json!({"comment": "go ahead"})
        )
        .0,
        200
    );
    wait_signed_head(&s);
    let (code, export, err) = s.cli("demo-auditor", &["audit", "export", "--checkpoints"]);
    assert_eq!(code, 0, "{err}");
    let (code, keys, err) = s.cli("demo-auditor", &["audit", "keys"]);
    assert_eq!(code, 0, "{err}");
    let key_count = serde_json::from_str::<Value>(&keys).unwrap()["keys"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(key_count, 2, "signed before and after the rotation: {keys}");
    let dir = tempfile::tempdir().unwrap();
    let (file, keys_file) = (dir.path().join("export.jsonl"), dir.path().join("keys.json"));
    std::fs::write(&keys_file, keys).unwrap();
    let both = |text: &str| {
        std::fs::write(&file, text).unwrap();
        let (f, k) = (file.to_str().unwrap(), keys_file.to_str().unwrap());
        let theirs = independent_verifier(&["--keys", k, f]);
        let (code, out, err) = s.cli("", &["audit", "verify", "--file", f, "--keys", k]);
        (theirs, (code, format!("{out}{err}")))
    };

    let ((code, theirs), (our_code, ours)) = both(&export);
    assert_eq!((code, our_code), (0, 0), "theirs: {theirs}\nours: {ours}");
    assert!(
        theirs.starts_with("ok: events 1 to ") && theirs.contains("signatures valid"),
        "{theirs}"
    );

    let lines: Vec<String> = export.lines().map(str::to_string).collect();
    let parsed: Vec<Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let is_event = |i: usize| parsed[i].get("seq").is_some();
    let mut tampered: Vec<(&str, String)> = Vec::new();
    // An edited field: the approver's comment.
    let approved = parsed.iter().position(|v| v["comment"] == "go ahead").unwrap();
    let mut edited = lines.clone();
    edited[approved] = lines[approved].replacen("go ahead", "go ahead, all of prod", 1);
    assert_ne!(edited[approved], lines[approved]);
    tampered.push(("edited field", edited.join("\n")));
    // A deleted event from the middle.
    let middle = (lines.len() / 2..).find(|&i| is_event(i)).unwrap();
    let mut deleted = lines.clone();
    deleted.remove(middle);
    tampered.push(("deleted event", deleted.join("\n")));
    // An edited checkpoint time.
    let checkpoint = parsed.iter().position(|v| v.get("checkpoint").is_some()).unwrap();
    let at: chrono::DateTime<chrono::Utc> = parsed[checkpoint]["checkpoint"]["at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut line = parsed[checkpoint].clone();
    line["checkpoint"]["at"] = json!((at + chrono::Duration::minutes(5)).to_rfc3339());
    let mut edited_time = lines.clone();
    edited_time[checkpoint] = line.to_string();
    tampered.push(("edited checkpoint time", edited_time.join("\n")));
    // A checkpoint moved up before its event.
    let mut moved = lines.clone();
    let line = moved.remove(checkpoint);
    moved.insert(checkpoint - 1, line);
    tampered.push(("moved checkpoint", moved.join("\n")));
    // Cut off after an event that no checkpoint signs: nothing vouches for the end.
    let unsigned = (0..lines.len() - 1)
        .rev()
        .find(|&i| is_event(i) && is_event(i + 1))
        .unwrap();
    tampered.push(("cut-off end", lines[..=unsigned].join("\n")));
    // The last line cut off in the middle.
    let whole = export.trim_end();
    tampered.push(("cut-off line", whole[..whole.len() - 25].to_string()));

    for (what, text) in &tampered {
        let ((code, theirs), (our_code, ours)) = both(text);
        assert_eq!(code, 1, "{what}: the independent verifier accepted it: {theirs}");
        assert_eq!(our_code, 1, "{what}: jitgate accepted it: {ours}");
        assert_eq!(
            broken_at(&theirs),
            broken_at(&ours),
            "{what}: theirs: {theirs}\nours: {ours}"
        );
    }

    // The page's worked example, as a one-line export.
    let doc = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../docs/audit.md"));
    let example = doc
        .split_once("<!-- worked-example:event -->\n```json\n")
        .and_then(|(_, rest)| rest.split_once('\n'))
        .map(|(line, _)| line)
        .unwrap();
    std::fs::write(&file, example).unwrap();
    let (code, out) = independent_verifier(&[file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok: events 1 to 1"), "{out}");
}

/// A checkpoint whose time was edited in the database is refused online too: the server
/// compares each checkpoint with what its signature states.
#[test]
fn a_checkpoint_whose_time_was_edited_in_the_database_is_refused() {
    let s = checkpointed();
    assert_eq!(verify(&s)["ok"], true);
    let seq: i64 = sql(&s, "SELECT MIN(seq) FROM audit_checkpoints").parse().unwrap();
    sql(
        &s,
        &format!("UPDATE audit_checkpoints SET at = at - 86400000 WHERE seq = {seq}"),
    );
    let edited = verify(&s);
    assert_eq!(edited["ok"], false, "{edited}");
    assert_eq!(edited["first_bad_seq"], seq, "{edited}");
    assert!(
        edited["problem"]
            .as_str()
            .unwrap()
            .contains("is not the time it was signed at"),
        "{edited}"
    );
}

/// Live sinks: a file sink rotated by size holds every event in order, once, across a kill -9,
/// and its files re-verify offline; an HTTP sink receives the same events in ECS, as JSON lines,
/// after its receiver failed for a while.
#[test]
fn live_sinks_ship_every_event_once_in_order() {
    let out = tempfile::tempdir().unwrap();
    let siem = receiver::receiver();
    siem.fail.store(2, std::sync::atomic::Ordering::SeqCst);
    let path = out.path().join("audit.jsonl");
    let config = format!(
        "[[audit.sinks]]\nname = \"file\"\nkind = \"file\"\npath = \"{}\"\nrotate_bytes = 8192\nkeep = 1000\n\n\
         [[audit.sinks]]\nname = \"siem\"\nkind = \"http\"\nformat = \"ecs\"\nurl = \"{}\"\nbatch = 50\n",
        path.display(),
        siem.url
    );
    let mut s = Server::start_with(&quickstart(), Some(&config));
    busy(&s, 60);
    let files_in_order = || {
        let mut rotated: Vec<(usize, std::path::PathBuf)> = std::fs::read_dir(out.path())
            .unwrap()
            .filter_map(|e| {
                let p = e.unwrap().path();
                let n = p.extension()?.to_str()?.parse().ok()?;
                Some((n, p))
            })
            .collect();
        rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
        let mut files: Vec<std::path::PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
        files.push(path.clone());
        files
    };
    let seqs_on_disk = || -> Vec<i64> {
        files_in_order()
            .iter()
            .flat_map(|f| {
                std::fs::read_to_string(f)
                    .unwrap_or_default()
                    .lines()
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .map(|l| serde_json::from_str::<Value>(&l).unwrap()["seq"].as_i64().unwrap())
            .collect()
    };
    let all = |n: i64| (1..=n).collect::<Vec<i64>>();
    let total = head(&s);
    wait_until("the file sink has every event", || seqs_on_disk().len() as i64 >= total);
    assert_eq!(seqs_on_disk(), all(total));
    assert!(files_in_order().len() > 2, "rotated: {:?}", files_in_order());

    // Killed and restarted: the file goes on where it was, nothing twice.
    let delivered_before_the_kill = siem.deliveries.lock().unwrap().len();
    s.kill9_and_restart();
    busy(&s, 10);
    let total = head(&s);
    wait_until("the file sink caught up", || seqs_on_disk().len() as i64 >= total);
    assert_eq!(seqs_on_disk(), all(total));
    let mut args = vec!["audit".to_string(), "verify".into()];
    for f in files_in_order() {
        args.extend(["--file".into(), f.display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, text, err) = s.cli("", &args);
    assert_eq!(code, 0, "{text}{err}");

    // The SIEM got every event, in ECS, after two failed attempts. An HTTP sink delivers at
    // least once (docs/audit.md): killed after the receiver took a batch but before the cursor
    // was stored, the server sends that batch again after the restart, so a repeat need not be
    // next to the first copy. In order and nothing skipped means: every delivery is a run of
    // consecutive seqs that starts one past the highest seq delivered before it, except one
    // delivery after the kill, which may start again earlier (the batch the kill interrupted);
    // every event means: the set of seqs is exactly 1..=total.
    wait_until("the SIEM has every event", || {
        let batches: Vec<(usize, Vec<i64>)> = siem
            .deliveries
            .lock()
            .unwrap()
            .iter()
            .enumerate()
            .filter(|(_, d)| d.answered == 200)
            .map(|(index, d)| {
                let seqs = d
                    .raw
                    .lines()
                    .map(|l| {
                        serde_json::from_str::<Value>(l).unwrap()["event"]["sequence"]
                            .as_i64()
                            .unwrap()
                    })
                    .collect();
                (index, seqs)
            })
            .collect();
        let mut highest = 0;
        let mut repeated = false;
        for (index, batch) in &batches {
            assert!(
                batch.windows(2).all(|w| w[1] == w[0] + 1),
                "a delivery holds consecutive seqs in order: {batch:?}"
            );
            let Some(&first) = batch.first() else { continue };
            if first <= highest {
                // The batch the kill interrupted, sent again: once, and only after the kill.
                assert!(
                    *index >= delivered_before_the_kill && !repeated,
                    "each event once, in order, but after {highest} came {batch:?} (delivery {index}, {delivered_before_the_kill} before the kill)"
                );
                repeated = true;
            } else {
                assert_eq!(first, highest + 1, "a delivery skipped seqs after {highest}: {batch:?}");
            }
            highest = highest.max(*batch.last().unwrap());
        }
        let mut unique: Vec<i64> = batches.into_iter().flat_map(|(_, seqs)| seqs).collect();
        unique.sort_unstable();
        unique.dedup();
        unique == all(total)
    });
    let deliveries = siem.deliveries.lock().unwrap().clone();
    assert_eq!(deliveries[0].answered, 500);
    let first = &deliveries.iter().find(|d| d.answered == 200).unwrap();
    assert_eq!(first.headers["content-type"], "application/x-ndjson");
    let doc: Value = serde_json::from_str(first.raw.lines().next().unwrap()).unwrap();
    assert_eq!(doc["event"]["dataset"], "jitgate.audit");
    assert!(
        doc["@timestamp"].is_string() && doc["user"]["name"].is_string(),
        "{doc}"
    );
}

/// Retention moves old events into segments under archive_dir: the log left in the database
/// verifies from the last segment's signed checkpoint, the segments and an export of the rest
/// verify offline in a row, and requests outlive their archived events.
#[test]
fn retention_archives_segments_that_keep_verification_whole() {
    let archive = tempfile::tempdir().unwrap();
    let config = format!(
        "[audit]\ncheckpoint_every = \"1s\"\nretain = \"1s\"\narchive_every = \"1s\"\narchive_dir = \"{}\"\n",
        archive.path().display()
    );
    let mut s = Server::start_with(&quickstart(), Some(&config));
    let first = s.file(
        "demo-alice",
        json!({"resource": "staging-db", "action": "read", "duration": "1h", "reason": "old work"}),
    );
    busy(&s, 30);
    let segments = || -> Vec<std::path::PathBuf> {
        let mut files: Vec<_> = std::fs::read_dir(archive.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        files.sort();
        files
    };
    // Everything up to here is the old work; the passes archive it whatever the pace of busy
    // (a slow busy lets segments be written while it runs, so counting segments says nothing
    // of how far they reach).
    let old = head(&s);
    assert!(old >= 90, "thirty filings and approvals: {old} events");
    wait_until("a segment is archived", || !segments().is_empty());
    busy(&s, 10);
    wait_until("a second segment", || segments().len() >= 2);
    wait_until("the old work is archived", || {
        verify(&s)["archived_through"].as_i64().is_some_and(|a| a >= old)
    });
    let report = verify(&s);
    assert_eq!(report["ok"], true, "{report}");
    let archived = report["archived_through"].as_i64().unwrap();
    assert!(archived >= 90, "{report}");
    assert!(!s.audit_kinds("kind=audit.archived").is_empty());
    // The request's events are gone from the database; the request is not.
    let (status, r) = s.get(&format!("/v1/requests/{}", id(&first)), "demo-alice");
    assert_eq!((status, r["status"].as_str()), (200, Some("approved")), "{r}");

    // Segments and an export of what is left verify offline, in a row, with the keys.
    let dir = tempfile::tempdir().unwrap();
    let (_, export, _) = s.cli("demo-auditor", &["audit", "export", "--checkpoints"]);
    let (_, keys, _) = s.cli("demo-auditor", &["audit", "keys"]);
    let (export_file, keys_file) = (dir.path().join("rest.jsonl"), dir.path().join("keys.json"));
    std::fs::write(&export_file, &export).unwrap();
    std::fs::write(&keys_file, keys).unwrap();
    let mut args: Vec<String> = vec!["audit".into(), "verify".into()];
    // Segments written after the export started may overlap it; take those it follows.
    let exported_from: i64 = serde_json::from_str::<Value>(export.lines().find(|l| l.starts_with("{\"seq\"")).unwrap())
        .unwrap()["seq"]
        .as_i64()
        .unwrap();
    for f in segments() {
        let name = f.file_name().unwrap().to_str().unwrap().to_string();
        let first_seq: i64 = name[6..18].parse().unwrap();
        if first_seq < exported_from {
            args.extend(["--file".into(), f.display().to_string()]);
        }
    }
    args.extend(["--file".into(), export_file.display().to_string()]);
    args.extend(["--keys".into(), keys_file.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, text, err) = s.cli("", &args);
    assert_eq!(code, 0, "{text}{err}");
    assert!(text.contains("signatures valid"), "{text}");

    // Deleting more than was archived is not an archive: caught at the gap. The archiver must
    // not run between the deletion and the verification: a pass there archives from the new
    // first event on and leaves no gap in the database for verify to see. So the test takes
    // the archiver's lease as another holder, and a clean stop ends any pass in flight.
    let held_until = chrono::Utc::now().timestamp_millis() + 3_600_000;
    let taken = sql(
        &s,
        &format!(
            "UPDATE notification_cursors SET leased_by = 'the test', leased_until = {held_until} \
             WHERE sink = 'audit:retention'; SELECT changes();"
        ),
    );
    assert_eq!(taken.trim(), "1", "the archiver's lease row");
    s.stop_and_restart();
    // The archive ends at the earliest checkpoint left; the log goes on right after it.
    let anchor: i64 = sql(&s, "SELECT MIN(seq) FROM audit_checkpoints").parse().unwrap();
    let start: i64 = sql(&s, "SELECT MIN(seq) FROM audit_events").parse().unwrap();
    assert_eq!(start, anchor + 1, "the log starts right after the archive's anchor");
    // Events after the archive are deleted up to a checkpoint, so the new first event has a
    // signed checkpoint just before it, as an archive would leave: the earlier anchor still
    // shows where the archive really ends.
    busy(&s, 2);
    wait_signed_head(&s);
    let cut: i64 = sql(&s, "SELECT MAX(seq) FROM audit_checkpoints").parse().unwrap();
    assert!(cut > anchor, "a checkpoint after the archive's anchor");
    // A later checkpoint below the head, so retention has something due past the gap.
    busy(&s, 2);
    wait_signed_head(&s);
    busy(&s, 1);
    sql(&s, &format!("DELETE FROM audit_events WHERE seq <= {cut}"));
    let gap = |report: &Value| {
        assert_eq!(report["ok"], false, "{report}");
        assert_eq!(report["first_bad_seq"], start, "{report}");
        let problem = report["problem"].as_str().unwrap_or_default();
        assert!(
            problem.contains(&format!("events {start} to {cut} are missing")),
            "{report}"
        );
    };
    gap(&verify(&s));

    // Let run again (past the 1 s retention), the archiver does not launder the deletion into
    // an archive (a segment from the new first event on, and the anchor that shows the gap
    // deleted): it refuses and says why, and the gap stays for verify to see.
    let segments_before = segments();
    sql(
        &s,
        "UPDATE notification_cursors SET leased_until = 0 WHERE sink = 'audit:retention'",
    );
    wait_until("the archiver refuses to archive past the gap", || {
        s.log().contains("nothing is archived until the log verifies")
    });
    assert_eq!(segments(), segments_before, "no segment past the gap");
    gap(&verify(&s));
}

/// Denied checks are counted, not logged one by one: fifty denials make one event that says
/// fifty, with who checked, for whom, what, and why.
#[test]
fn denied_checks_are_aggregated_into_one_event_per_window() {
    // One window for the whole burst: with a short window its boundary (the phase of a timer
    // started with the server) could fall between two of alice's checks and split her count.
    // The window is closed by a clean stop, which records the open window before exiting.
    let mut s = Server::start_with(&quickstart(), Some("[audit]\ndenied_checks_every = \"1h\"\n"));
    for _ in 0..50 {
        assert_eq!(s.check("alice", "prod-db", "read", None)["allow"], false);
    }
    s.check("bob", "prod-db", "write", None);
    assert!(
        s.audit_kinds("kind=check.denied").is_empty(),
        "nothing recorded before the window ends"
    );
    s.stop_and_restart();
    wait_until("the window is recorded", || {
        s.audit_kinds("kind=check.denied").len() >= 2
    });
    let (_, v) = s.get("/v1/audit?kind=check.denied", "demo-auditor");
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{v}");
    let alice = items.iter().find(|e| e["subject"] == "alice").unwrap();
    assert_eq!(alice["resource"], "prod-db");
    assert_eq!(alice["action"], "read");
    assert!(
        alice["comment"].as_str().unwrap().starts_with("50 denied from "),
        "{alice}"
    );
    assert_eq!(alice["actor"], "svc-api", "the checker: {alice}");
}

/// Retention never archives what a live sink has not shipped: while the SIEM refuses, events
/// stay in the database; once it takes them, they are archived.
#[test]
fn retention_waits_for_every_live_sink() {
    let archive = tempfile::tempdir().unwrap();
    let siem = receiver::receiver();
    siem.fail.store(1_000_000, std::sync::atomic::Ordering::SeqCst);
    let config = format!(
        "[audit]\ncheckpoint_every = \"1s\"\nretain = \"1s\"\narchive_every = \"1s\"\narchive_dir = \"{}\"\n\n\
         [[audit.sinks]]\nname = \"siem\"\nkind = \"http\"\nurl = \"{}\"\n",
        archive.path().display(),
        siem.url
    );
    let s = Server::start_with(&quickstart(), Some(&config));
    busy(&s, 20);
    std::thread::sleep(std::time::Duration::from_secs(4));
    assert_eq!(
        std::fs::read_dir(archive.path()).unwrap().count(),
        0,
        "nothing archived while the sink has shipped nothing"
    );
    assert_eq!(sql(&s, "SELECT MIN(seq) FROM audit_events"), "1");
    siem.fail.store(0, std::sync::atomic::Ordering::SeqCst);
    // The sink's next try comes after its backoff, which has doubled since the first refusal
    // and may be anywhere up to the product's 30 s cap (outbox::retry_delay); then a checkpoint,
    // the 1 s retention and an archive pass. The wait holds all of that, not the usual 10 s.
    wait_until_within("archived once shipped", std::time::Duration::from_secs(30 + 10), || {
        std::fs::read_dir(archive.path()).unwrap().count() > 0
    });
    assert_eq!(verify(&s)["ok"], true);
}

/// Issue #22: an asynchronous failover rewinds the log under a file sink (the last events and
/// the sink's cursor gone, their seqs reused by other events). The file sink notices from its
/// own last line: it writes nothing of the other history, never skips silently, and the server
/// alarms (an `audit.fork_detected` event, a metric, an error line) until the operator moves
/// the file aside and sets `resume_after`; then the new file holds the new history and
/// verifies, and the old one still verifies as the history it was.
#[test]
fn a_file_sink_refuses_a_rewound_log_and_alarms_until_the_operator_resumes_it() {
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("audit.jsonl");
    let config = format!(
        "[[audit.sinks]]\nname = \"archive\"\nkind = \"file\"\npath = \"{}\"\n",
        path.display()
    );
    let mut s = Server::start_with(&quickstart(), Some(&config));
    busy(&s, 8);
    let shipped = head(&s);
    let lines_of = |p: &std::path::Path| -> Vec<Value> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    wait_until("the file has every event", || lines_of(&path).len() as i64 == shipped);
    let before = std::fs::read_to_string(&path).unwrap();
    let shipped_hash = lines_of(&path).last().unwrap()["hash"].as_str().unwrap().to_string();

    // A failover to a standby that lacked the last five events: they are gone, with the
    // checkpoints and the sink's cursor that covered them.
    let kept = shipped - 5;
    s.kill9_and_restart_after(|s| {
        s.sqlite(&format!(
            "DELETE FROM audit_events WHERE seq > {kept}; DELETE FROM audit_checkpoints WHERE seq > {kept}; \
             UPDATE notification_cursors SET after_seq = {kept}, \
             after_hash = (SELECT hash FROM audit_events WHERE seq = {kept}) WHERE sink = 'audit:archive';"
        ));
    });
    // The new primary goes on, reusing the lost numbers for other events.
    busy(&s, 4);
    assert!(head(&s) > shipped, "seqs were reused");
    let reused = sql(&s, &format!("SELECT hash FROM audit_events WHERE seq = {shipped}"));
    assert_ne!(reused, shipped_hash);
    let alarms = || s.audit_kinds("kind=audit.fork_detected");
    wait_until("the sink alarms", || !alarms().is_empty());
    let (_, listed) = s.get("/v1/audit?kind=audit.fork_detected", "demo-auditor");
    let alarm = listed["items"][0].clone();
    let comment = alarm["comment"].as_str().unwrap();
    assert!(
        comment.contains(&format!(
            "audit sink 'archive' shipped event {shipped} with hash {shipped_hash}"
        )) && comment.contains("resume_after"),
        "{alarm}"
    );
    assert_eq!(alarm["actor"], "system");
    // Holding: more work, more looks, nothing written, and one alarm.
    busy(&s, 4);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        before,
        "nothing appended, nothing skipped"
    );
    assert_eq!(alarms().len(), 1);
    let metrics = s.http.get(format!("{}/metrics", s.url)).send().unwrap().text().unwrap();
    assert!(
        metrics.contains("jitgate_audit_forks_detected_total{sink=\"archive\"} 1"),
        "{metrics}"
    );
    let log = s.log();
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("audit sink 'archive' shipped event")),
        "{log}"
    );

    // The operator keeps the old file, and lets the sink go on after the last event both
    // histories share.
    let aside = out.path().join("audit-before-failover.jsonl");
    std::fs::rename(&path, &aside).unwrap();
    let config_path = s.dir.path().join("config.toml");
    let text = std::fs::read_to_string(&config_path).unwrap();
    std::fs::write(
        &config_path,
        text.replace(
            "name = \"archive\"\n",
            &format!("name = \"archive\"\nresume_after = {kept}\n"),
        ),
    )
    .unwrap();
    s.kill9_and_restart();
    let now_head = head(&s);
    wait_until("the new history is shipped", || {
        lines_of(&path).last().and_then(|l| l["seq"].as_i64()) >= Some(now_head)
    });
    let new_lines = lines_of(&path);
    assert_eq!(
        new_lines[0]["seq"],
        kept + 1,
        "from the first event after the shared ones"
    );
    assert_eq!(new_lines[0]["prev_hash"], lines_of(&aside)[(kept - 1) as usize]["hash"]);
    let resumed = s.audit_kinds("kind=audit.sink_resumed");
    assert_eq!(resumed.len(), 1);
    for file in [&aside, &path] {
        let (code, text, err) = s.cli("", &["audit", "verify", "--file", &file.display().to_string()]);
        assert_eq!(code, 0, "{}: {text}{err}", file.display());
    }
    // A bad resume_after is refused at start, naming the key.
    let bad = out.path().join("bad.toml");
    std::fs::write(
        &bad,
        config.replace("kind = \"file\"", "kind = \"file\"\nresume_after = -1"),
    )
    .unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let database = format!("sqlite://{}", out.path().join("bad.db").display());
    let (code, _, err) = s.cli(
        "",
        &[
            "serve",
            "--listen",
            &listen,
            "--database",
            &database,
            "--policy",
            &quickstart().display().to_string(),
            "--config",
            &bad.display().to_string(),
        ],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("audit.sinks[0].resume_after: name an event of the log by its seq"),
        "{err}"
    );
}
