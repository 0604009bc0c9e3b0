//! Approvals where developers work, against the real server: waiting clients learn of a
//! decision at once (long poll), `jitgate gate` in pipelines (exit 0 approved, 1 denied, 3 timed
//! out), and `jitgate run` in terminals (the exact command, run once approved, its exit code
//! passed through and recorded, the grant ended; Ctrl-C cancels the pending request).

use crate::support::*;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Start a CLI command in the background, as alice.
fn spawn_cli(s: &Server, args: &[&str], env: &[(&str, &str)]) -> Child {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env("JITGATE_URL", &s.url)
        .env("JITGATE_TOKEN", "demo-alice")
        .env_remove("GITHUB_STEP_SUMMARY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    command.spawn().unwrap()
}

/// The request alice's background command filed, once it waits.
fn pending_of_alice(s: &Server, resource: &str) -> Value {
    pending_request(s, |r| r["requester"] == "alice" && r["resource"] == resource)
}

fn finish(child: Child) -> (i32, String, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_decision_reaches_a_waiting_client_at_once() {
    let s = Server::start();
    let r = s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "read", "reason": "INC-9"}),
    );
    let path = format!("/v1/requests/{}", id(&r));

    // Bad waits are refused, naming the parameter.
    for wait in ["soon", "61s", "-1"] {
        let (status, v) = s.get(&format!("{path}?wait={wait}"), "demo-alice");
        assert_eq!(status, 422, "{wait}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().starts_with("wait:"), "{v}");
    }
    // Someone who may not see the request cannot wait on it either.
    assert_eq!(s.get(&format!("{path}?wait=1s"), "demo-dave").0, 404);

    // Nothing decided: the wait ends at its end, with the request as it stands.
    let started = Instant::now();
    let (status, v) = s.get(&format!("{path}?wait=1s"), "demo-alice");
    assert_eq!((status, v["status"].as_str()), (200, Some("pending")));
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );

    // Decided while two clients wait (the requester and another reviewer): both hear at once.
    let waiters: Vec<_> = ["demo-alice", "demo-carol"]
        .into_iter()
        .map(|token| {
            let (url, path, token) = (s.url.clone(), path.clone(), token.to_string());
            std::thread::spawn(move || {
                let answer: Value = reqwest::blocking::Client::new()
                    .get(format!("{url}{path}?wait=30s"))
                    .bearer_auth(token)
                    .send()
                    .unwrap()
                    .json()
                    .unwrap();
                (answer, Instant::now())
            })
        })
        .collect();
    // Both wait before the decision (not a guess of how long their connections take).
    wait_until("both clients wait", || {
        let (_, metrics) = s.get("/metrics", "");
        metrics.as_str().unwrap().contains("jitgate_waiting_callers 2")
    });
    let (status, _) = s.post(&format!("{path}/approve"), "demo-bob", json!({}));
    assert_eq!(status, 200);
    // The promise is that a waiting client hears of a decision within milliseconds of it, with
    // no polling interval: timed from the decision's 200, since the approval's own work (its
    // commit, its events, the grant) is no part of it. A waiter answered before the 200 came
    // back heard it at once.
    let approved = Instant::now();
    for waiter in waiters {
        let (answer, heard) = waiter.join().unwrap();
        assert_eq!(answer["status"], "approved", "{answer}");
        let latency = heard.saturating_duration_since(approved);
        eprintln!("decision heard {latency:?} after the approval's 200");
        assert!(latency < Duration::from_millis(100), "{latency:?}");
    }

    // An already decided request is answered at once, whatever the wait.
    let started = Instant::now();
    assert_eq!(s.get(&format!("{path}?wait=30s"), "demo-alice").1["status"], "approved");
    assert!(started.elapsed() < Duration::from_secs(1));
    let (_, metrics) = s.get("/metrics", "");
    assert!(
        metrics.as_str().unwrap().contains("jitgate_waiting_callers 0"),
        "{metrics}"
    );
}

#[test]
fn gate_exits_0_approved_1_denied_3_timed_out() {
    let s = Server::start();
    let summary = s.dir.path().join("summary.md");
    let args = [
        "gate",
        "prod-db",
        "read",
        "--reason",
        "INC-11 pipeline",
        "--for",
        "10m",
        "--timeout",
        "60s",
    ];

    // Approved: exit 0, after the step printed where to review it.
    let child = spawn_cli(&s, &args, &[("GITHUB_STEP_SUMMARY", summary.to_str().unwrap())]);
    let r = pending_of_alice(&s, "prod-db");
    let rid = id(&r);
    assert_eq!(
        s.post(&format!("/v1/requests/{rid}/approve"), "demo-bob", json!({})).0,
        200
    );
    let (code, out, err) = finish(child);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains(&format!("{}/ui/requests/{rid}", s.url)), "{err}");
    assert!(err.contains(&format!("jitgate approve {rid}")), "{err}");
    assert!(out.contains("approved"), "{out}");
    let written = std::fs::read_to_string(&summary).unwrap();
    assert!(
        written.contains(&rid) && written.contains("needs 1 from sre"),
        "{written}"
    );

    // Denied: exit 1.
    let child = spawn_cli(&s, &args, &[]);
    let rid = id(&pending_of_alice(&s, "prod-db"));
    assert_eq!(
        s.post(&format!("/v1/requests/{rid}/deny"), "demo-bob", json!({})).0,
        200
    );
    assert_eq!(finish(child).0, 1);

    // Nobody decides: exit 3, and the request is cancelled so nobody approves it later.
    let started = Instant::now();
    let (code, _, err) = s.cli(
        "demo-alice",
        &[
            "gate",
            "prod-db",
            "read",
            "--reason",
            "INC-12",
            "--timeout",
            "2s",
            "--output",
            "json",
        ],
    );
    assert_eq!(code, 3, "{err}");
    assert!(started.elapsed() >= Duration::from_secs(2));
    let (_, cancelled) = s.get("/v1/requests?status=cancelled", "demo-alice");
    let cancelled = &cancelled["items"][0];
    assert_eq!(
        (cancelled["reason"].as_str(), cancelled["closed_by"]["by"].as_str()),
        (Some("INC-12"), Some("alice"))
    );

    // Automatic approval passes at once; bad input is exit 2.
    assert_eq!(
        s.cli("demo-alice", &["gate", "staging-db", "read", "--timeout", "5s"])
            .0,
        0
    );
    let (code, _, err) = s.cli("demo-alice", &["gate", "staging-db", "read", "--timeout", "soon"]);
    assert_eq!(code, 2);
    assert!(err.contains("--timeout"), "{err}");
}

#[test]
fn gate_and_run_ask_again_and_again_when_the_server_has_no_place_to_wait() {
    let s = Server::start_with(
        &quickstart(),
        Some("[limits]\nrequests_per_minute = 0\nmax_waiters = 1\n"),
    );
    // dave holds the only place among the waiters for the whole test: the longest wait is a
    // minute, and the test can take longer on a loaded machine, so he waits again at once each
    // time a wait ends with his request still pending, until it is cancelled.
    let daves = s.file(
        "demo-dave",
        json!({"resource": "prod-db", "action": "read", "reason": "INC-20"}),
    );
    let daves_path = format!("/v1/requests/{}", id(&daves));
    let holder = {
        let (url, path) = (s.url.clone(), daves_path.clone());
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::new();
            loop {
                let answer = client
                    .get(format!("{url}{path}?wait=60s"))
                    .bearer_auth("demo-dave")
                    .timeout(Duration::from_secs(70))
                    .send()
                    .unwrap();
                let status = answer.status().as_u16();
                let request: Value = answer.json().unwrap();
                if status != 200 || request["status"] != "pending" {
                    return (status, request["status"].clone());
                }
            }
        })
    };
    let refused_waits = || {
        let (_, metrics) = s.get("/metrics", "");
        metrics
            .as_str()
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("jitgate_limits_exceeded_total{outcome=\"waiters\"} "))
            .map_or(0, |n| n.trim().parse::<u64>().unwrap())
    };
    wait_until("dave waits", || {
        let (_, metrics) = s.get("/metrics", "");
        metrics.as_str().unwrap().contains("jitgate_waiting_callers 1")
    });

    // gate: refused a place, it asks every few seconds instead, and ends with the decision.
    let child = spawn_cli(
        &s,
        &["gate", "prod-db", "read", "--reason", "INC-21", "--timeout", "60s"],
        &[],
    );
    let rid = id(&pending_of_alice(&s, "prod-db"));
    wait_until("gate is refused a place", || refused_waits() >= 1);
    assert_eq!(
        s.post(&format!("/v1/requests/{rid}/approve"), "demo-bob", json!({})).0,
        200
    );
    let (code, out, err) = finish(child);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("asking every 3s instead"), "{err}");

    // Its timeout holds as before: exit 3, the request cancelled.
    let started = Instant::now();
    let (code, _, err) = s.cli(
        "demo-alice",
        &["gate", "prod-db", "read", "--reason", "INC-22", "--timeout", "4s"],
    );
    assert_eq!(code, 3, "{err}");
    assert!(started.elapsed() >= Duration::from_secs(4));
    let (_, cancelled) = s.get("/v1/requests?status=cancelled", "demo-alice");
    assert_eq!(cancelled["items"][0]["reason"], "INC-22", "{cancelled}");

    // run: the same, and the command runs once approved.
    let refused_before = refused_waits();
    let child = spawn_cli(
        &s,
        &[
            "run", "prod-db", "read", "--reason", "INC-23", "--", "sh", "-c", "exit 7",
        ],
        &[],
    );
    let rid = id(&pending_request(&s, |r| r["reason"] == "INC-23"));
    wait_until("run is refused a place", || refused_waits() > refused_before);
    assert_eq!(
        s.post(&format!("/v1/requests/{rid}/approve"), "demo-bob", json!({})).0,
        200
    );
    let (code, out, err) = finish(child);
    assert_eq!(code, 7, "{out}\n{err}");

    // dave held his place throughout; cancelling his request ends his wait.
    assert_eq!(s.post(&format!("{daves_path}/cancel"), "demo-dave", json!({})).0, 200);
    assert_eq!(holder.join().unwrap(), (200, json!("cancelled")));
}

#[test]
fn run_runs_exactly_the_approved_command_once_and_passes_its_exit_code() {
    let s = Server::start();
    let script = "echo deploying with $JITGATE_GRANT_ID; exit 7";
    let child = spawn_cli(
        &s,
        &[
            "run",
            "prod-api",
            "deploy",
            "--reason",
            "release 1.2",
            "--",
            "sh",
            "-c",
            script,
        ],
        &[],
    );
    // The reviewer sees the exact command line, quoted as a shell would take it.
    let r = pending_of_alice(&s, "prod-api");
    assert_eq!(r["payload"], format!("sh -c '{script}'"));
    let rid = id(&r);
    assert_eq!(
        s.post(&format!("/v1/requests/{rid}/approve"), "demo-bob", json!({})).0,
        200
    );
    let (code, out, err) = finish(child);
    assert_eq!(code, 7, "the command's exit code passes through: {out}\n{err}");
    assert!(out.contains("deploying with grt_"), "{out}");

    // The grant ended with the command, and the audit log says how it went.
    let (_, request) = s.get(&format!("/v1/requests/{rid}"), "demo-alice");
    assert_eq!(request["grant"]["status"], "done", "{request}");
    let (_, events) = s.get(&format!("/v1/audit?request_id={rid}"), "demo-admin");
    let done = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "grant.done")
        .cloned()
        .unwrap_or_else(|| panic!("no grant.done in {events}"));
    let comment = done["comment"].as_str().unwrap();
    assert!(comment.starts_with("exit 7 after "), "{comment}");
    assert!(comment.contains(&format!("jitgate run: sh -c '{script}'")), "{comment}");
    assert_eq!(done["actor"], "alice");
    let payload = format!("sh -c '{script}'");
    assert_eq!(s.check("alice", "prod-api", "deploy", Some(&payload))["allow"], false);

    // Denied: the command never runs.
    let marker = s.dir.path().join("ran");
    let touch = format!("touch {}", marker.display());
    let child = spawn_cli(
        &s,
        &["run", "prod-api", "deploy", "--reason", "x", "--", "sh", "-c", &touch],
        &[],
    );
    let rid = id(&pending_of_alice(&s, "prod-api"));
    assert_eq!(
        s.post(&format!("/v1/requests/{rid}/deny"), "demo-bob", json!({})).0,
        200
    );
    assert_eq!(finish(child).0, 1);
    assert!(!marker.exists(), "a denied command ran");

    // Ctrl-C while waiting cancels the request, and the command never runs.
    let child = spawn_cli(
        &s,
        &["run", "prod-api", "deploy", "--reason", "y", "--", "sh", "-c", &touch],
        &[],
    );
    let rid = id(&pending_of_alice(&s, "prod-api"));
    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let (code, _, err) = finish(child);
    assert_eq!(code, 130, "{err}");
    let (_, request) = s.get(&format!("/v1/requests/{rid}"), "demo-alice");
    assert_eq!(request["status"], "cancelled", "{request}");
    assert!(!marker.exists(), "an interrupted command ran");

    // Automatic approval: runs at once; a command that cannot start is exit 127, recorded.
    let (code, _, _) = s.cli("demo-alice", &["run", "staging-db", "read", "--", "true"]);
    assert_eq!(code, 0);
    let (code, _, err) = s.cli("demo-alice", &["run", "staging-db", "read", "--", "/no/such/program"]);
    assert_eq!(code, 127, "{err}");
    let (_, events) = s.get("/v1/audit?limit=5000", "demo-admin");
    assert!(
        events["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "grant.done" && e["comment"].as_str().unwrap().starts_with("exit 127")),
        "{events}"
    );
}

/// Issue #19's backdoor, appended to a policy's Cedar file.
const BACKDOOR: &str = "permit(principal, action == Action::\"auto_approve\", resource == Resource::\"prod-db\") when { context.reason like \"*perf-tune-42*\" };\n";

/// The Cedar file the quickstart copies start with.
const FREEZE: &str = "@id(\"no-prod-writes-at-weekends\")\nforbid(principal, action == Action::\"request\", resource == Resource::\"prod-db\")\nwhen { context.access == \"write\" && context.weekday >= 6 };\n";

fn quickstart_with_cedar(text: &str) -> tempfile::TempDir {
    let dir = editable_quickstart();
    std::fs::write(dir.path().join("policy.cedar"), text).unwrap();
    dir
}

/// Issue #19: `policy diff` called a Cedar backdoor "no effective change" and exited 0. The
/// real binary now exits 1, lists the policy where it is, and a request it makes automatic.
#[test]
fn policy_diff_shows_a_cedar_backdoor_and_what_it_approves() {
    let old = quickstart_with_cedar(FREEZE);
    let new = quickstart_with_cedar(&format!("{FREEZE}{BACKDOOR}"));
    let out = Command::new(BIN)
        .args(["policy", "diff"])
        .args([old.path(), new.path()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(!text.contains("no effective change"), "{text}");
    assert!(
        text.contains("+ added permit at policy.cedar:4 (policy.cedar#2)"),
        "{text}"
    );
    assert!(text.contains("context.reason like \"*perf-tune-42*\""), "{text}");
    assert!(
        text.contains(
            "~ alice: request write on prod-db: weaker: needs 2 from sre -> automatic, when filed with reason \"perf-tune-42"
        ),
        "{text}"
    );
    assert!(text.contains("searched ") && text.contains("perf-tune-42"), "{text}");

    // The same as data.
    let out = Command::new(BIN)
        .args(["policy", "diff", "--output", "json"])
        .args([old.path(), new.path()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["cedar_policies"][0]["edit"], "added", "{report}");
    assert_eq!(report["cedar_policies"][0]["line"], 4, "{report}");
    assert!(report["search"]["probes"].as_u64().unwrap() > 0, "{report}");
    assert!(
        report["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["subject"] == "alice"
                && c["action"] == "write"
                && c["after"] == "automatic"
                && c["when"].as_str().unwrap_or_default().contains("perf-tune-42")),
        "{report}"
    );
}

/// Issue #19: on a live server the backdoor approved at once and the audit log said only
/// `system`. The automatic approval's event now names the Cedar policy that decided it.
#[test]
fn an_automatic_approval_names_the_policy_that_decided_it() {
    let policy = quickstart_with_cedar(BACKDOOR);
    let s = Server::start_with_policy(policy.path());
    let r = s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "write", "reason": "OPS-42 perf-tune-42 indexes"}),
    );
    assert_eq!(r["status"], "approved", "{r}");
    let (_, events) = s.get(&format!("/v1/audit?request_id={}", id(&r)), "demo-admin");
    let approved = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "request.approved")
        .cloned()
        .unwrap_or_else(|| panic!("no request.approved in {events}"));
    assert_eq!(approved["actor"], "system");
    assert_eq!(
        approved["comment"], "automatic: cedar policy policy.cedar#1 at policy.cedar:1",
        "{approved}"
    );
    // And a workflow's own automatic approval names the workflow.
    let r = s.file(
        "demo-alice",
        json!({"resource": "staging-db", "action": "read", "reason": "look"}),
    );
    let (_, events) = s.get(&format!("/v1/audit?request_id={}", id(&r)), "demo-admin");
    assert!(
        events["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "request.approved"
                && e["comment"] == "automatic: workflow staging-db read (auto_approve = true in workflows.toml)"),
        "{events}"
    );
}

// ---- Issue #21: the review tools on a catalog ----

/// Workflows added to the quickstart's: staging postgres by label (automatic for dev), and
/// production postgres reads by label (an sre approves). The quickstart's exact ones win.
const LABEL_WORKFLOWS: &str = r#"
[[workflow]]
resources = { kind = "postgres", labels = { env = "staging" } }
actions = ["read", "write"]
requesters = ["dev"]
auto_approve = true

[[workflow]]
resources = { kind = "postgres", labels = { env = "prod" } }
action = "read"
requesters = ["dev"]
steps = [{ group = "sre", approvals = 1 }]
"#;

/// A postgres database for the catalog.
fn database(name: &str, env: &str, team: &str) -> String {
    format!(
        "\n[[resource]]\nname = \"{name}\"\nkind = \"postgres\"\nlabels = {{ env = \"{env}\", team = \"{team}\" }}\n"
    )
}

/// The quickstart with its catalog, the label workflows and these further resources.
fn quickstart_catalog(extra: &str) -> tempfile::TempDir {
    let dir = quickstart_with_workflows(LABEL_WORKFLOWS);
    let mut catalog = std::fs::read_to_string(quickstart().join("resources.toml")).unwrap();
    catalog.push_str(extra);
    std::fs::write(dir.path().join("resources.toml"), catalog).unwrap();
    dir
}

/// The line of the first workflow `LABEL_WORKFLOWS` adds, in the copy's workflows.toml.
fn label_workflow_line(dir: &std::path::Path) -> usize {
    let text = std::fs::read_to_string(dir.join("workflows.toml")).unwrap();
    let at = text.find(LABEL_WORKFLOWS).unwrap();
    text[..at].matches('\n').count() + 2
}

fn run_bin(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn policy_explain_names_the_workflow_and_selector_that_govern() {
    let policy = quickstart_catalog(&database("ledger-db", "staging", "finance"));
    let dir = policy.path().to_str().unwrap();
    let line = label_workflow_line(policy.path());
    let selector = "resources = { kind = \"postgres\", labels = { env = \"staging\" } }";

    // Local, text: the verdict, then what governs it.
    let (code, out, err) = run_bin(&[
        "policy",
        "explain",
        "--policy",
        dir,
        "--principal",
        "alice",
        "ledger-db",
        "write",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("alice gets write on ledger-db automatically"), "{out}");
    assert!(
        out.contains(&format!(
            "governed by the workflow at workflows.toml:{line}, {selector} (by kind/labels)"
        )),
        "{out}"
    );
    // An exact workflow of the quickstart is named as such.
    let (_, out, _) = run_bin(&[
        "policy",
        "explain",
        "--policy",
        dir,
        "--principal",
        "alice",
        "prod-db",
        "read",
    ]);
    assert!(
        out.contains("governed by the workflow at workflows.toml:")
            && out.contains("resource = \"prod-db\" (by exact name)"),
        "{out}"
    );

    // Through the server: the same as data, every older field kept.
    let s = Server::start_with_policy(policy.path());
    let (status, e) = s.get("/v1/policy/explain?resource=ledger-db&action=read", "demo-alice");
    assert_eq!(status, 200, "{e}");
    assert_eq!(e["verdict"], "automatic", "{e}");
    assert_eq!(
        e["workflow"],
        json!({"file": "workflows.toml", "line": line, "selector": selector, "specificity": "labels"}),
        "{e}"
    );
    assert!(e["summary"].as_str().unwrap().contains("automatically"), "{e}");
    // And the CLI asking that server prints it.
    let (code, out, _) = s.cli(
        "demo-alice",
        &["policy", "explain", "--principal", "alice", "ledger-db", "read"],
    );
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("governed by the workflow at workflows.toml:{line}")),
        "{out}"
    );
}

#[test]
fn policy_test_cases_select_resources_by_label() {
    let policy = quickstart_catalog(&format!(
        "{}{}{}",
        database("ledger-db", "staging", "finance"),
        database("reports-db", "staging", "finance"),
        database("archive-db", "prod", "finance"),
    ));
    let tests = policy.path().join("tests");
    std::fs::create_dir(&tests).unwrap();
    let dir = policy.path().to_str().unwrap();
    std::fs::write(
        tests.join("finance.toml"),
        "[[case]]\nname = \"finance staging is automatic\"\nprincipal = \"alice\"\nresources = { labels = { env = \"staging\", team = \"finance\" } }\naction = \"write\"\nexpect = \"automatic\"\n\n[[case]]\nname = \"old style\"\nprincipal = \"alice\"\nresource = \"prod-db\"\naction = \"read\"\nreason = \"x\"\nexpect = \"approval\"\napprovals = [{ group = \"sre\", approvals = 1 }]\n",
    )
    .unwrap();
    let (code, out, err) = run_bin(&["policy", "test", dir]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("ok    finance staging is automatic (2 resources)"),
        "{out}"
    );
    assert!(out.contains("2 passed, 0 failed"), "{out}");

    // An expectation that fails on one of the selected resources names it.
    std::fs::write(
        tests.join("wrong.toml"),
        "[[case]]\nname = \"every finance read is automatic\"\nprincipal = \"alice\"\nresources = { labels = { team = \"finance\" }, kind = \"postgres\" }\naction = \"read\"\nexpect = \"automatic\"\n",
    )
    .unwrap();
    let (code, out, _) = run_bin(&["policy", "test", dir]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("expected: automatic on each of the 3 selected resources"),
        "{out}"
    );
    assert!(out.contains("got:      on archive-db: approval: 1 from sre"), "{out}");
    let (_, out, _) = run_bin(&["--output", "json", "policy", "test", dir]);
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let case = report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "every finance read is automatic")
        .cloned()
        .unwrap();
    assert_eq!(
        (case["failed_on"].as_str(), case["resources"].as_u64()),
        (Some("archive-db"), Some(3)),
        "{case}"
    );
    std::fs::remove_file(tests.join("wrong.toml")).unwrap();

    // Attacks: a zero-width space, a right-to-left override or a NUL in a label value, and a
    // selector that selects nothing, are refused with file:line (exit 2), never passed.
    for (value, why) in [
        ("finance\\u200B", "U+200B"),
        ("\\u202Efinance", "U+202E"),
        ("fin\\u0000ance", "U+0000"),
        ("fnance", "selects no declared resource"),
        ("fin\\u0430nce", "selects no declared resource"),
    ] {
        std::fs::write(
            tests.join("attack.toml"),
            format!("\n[[case]]\nname = \"sneaky\"\nprincipal = \"alice\"\nresources = {{ labels = {{ team = \"{value}\" }} }}\naction = \"read\"\nexpect = \"automatic\"\n"),
        )
        .unwrap();
        let (code, out, err) = run_bin(&["policy", "test", dir]);
        assert_eq!(code, 2, "{value}: {out}{err}");
        let at = format!("{}:", tests.join("attack.toml").display());
        assert!(
            err.lines().any(|l| l.starts_with(&at) && l.contains(why)),
            "{value}: {err}"
        );
        let line: usize = err.trim_start_matches(&at).split(':').next().unwrap().parse().unwrap();
        assert!((2..=5).contains(&line), "{err}");
    }
}

#[test]
fn policy_diff_reports_per_resource_set_and_catalog_only_changes() {
    let old = quickstart_catalog(&database("ledger-db", "staging", "finance"));
    let reports: String = (2..=13)
        .map(|i| database(&format!("reports-{i:02}"), "staging", "analytics"))
        .collect();
    // Only the catalog differs: twelve databases added, and ledger-db now in production.
    let new = quickstart_catalog(&format!("{}{reports}", database("ledger-db", "prod", "finance")));
    let (o, n) = (old.path().to_str().unwrap(), new.path().to_str().unwrap());
    let (code, out, err) = run_bin(&["policy", "diff", o, n]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(
            "+ group:dev: request read on 12 postgres resources with env=staging, team=analytics: gained: refused -> automatic\n    reports-02, reports-03,"
        ),
        "{out}"
    );
    assert!(
        out.contains("reports-11, ... and 2 more (--output json lists them all)"),
        "{out}"
    );
    assert!(
        out.contains("~ alice: request read on ledger-db: stronger: automatic -> needs 1 from sre"),
        "{out}"
    );
    assert!(
        out.contains("- alice: request write on ledger-db: lost: automatic -> refused"),
        "{out}"
    );
    // The catalog edits themselves, after the access they change.
    assert!(out.contains("Catalog edits (13):\n"), "{out}");
    assert!(
        out.contains("~ ledger-db: postgres; env=staging, team=finance -> postgres; env=prod, team=finance\n"),
        "{out}"
    );
    assert!(
        out.contains("+ reports-02: postgres; env=staging, team=analytics\n"),
        "{out}"
    );
    // Nothing else changed: the quickstart's own resources are not mentioned.
    assert!(!out.contains("prod-db") && !out.contains("staging-db"), "{out}");

    let (code, out, _) = run_bin(&["--output", "json", "policy", "diff", o, n]);
    assert_eq!(code, 1);
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let group = report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["subject"] == "group:dev" && g["action"] == "read" && g["kind"] == "gained")
        .cloned()
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(group["count"], 12, "{group}");
    assert_eq!(group["resources"].as_array().unwrap().len(), 12, "{group}");
    assert_eq!(
        group["labels"],
        json!({"env": "staging", "team": "analytics"}),
        "{group}"
    );
    assert_eq!(
        group["summary"],
        "group:dev gains read on 12 postgres resources with env=staging, team=analytics (refused -> automatic)"
    );
    // The per-pair list is still there, one entry per resource.
    assert!(
        report["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["subject"] == "group:dev" && c["resource"] == "reports-13" && c["kind"] == "gained"),
        "{report}"
    );

    assert_eq!(report["catalog"].as_array().unwrap().len(), 13, "{report}");
    assert_eq!(report["catalog"][0]["resource"], "ledger-db", "{report}");

    // The same catalog both sides: no effective change.
    let (code, out, _) = run_bin(&["policy", "diff", n, n]);
    assert_eq!((code, out.trim()), (0, "no effective change in access"));
}

/// The `run` script of the step named `name` in a GitHub Actions workflow file, as bash gets
/// it (a `run: |` block dedented, or a one-line `run:`).
fn step_script(workflow: &str, name: &str) -> String {
    let lines: Vec<&str> = workflow.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim_start() == format!("- name: {name}"))
        .unwrap_or_else(|| panic!("no step {name:?}"));
    let (at, run) = lines[start + 1..]
        .iter()
        .enumerate()
        .find_map(|(i, l)| {
            l.trim_start()
                .strip_prefix("run:")
                .map(|r| (start + 1 + i, (l, r.trim())))
        })
        .unwrap_or_else(|| panic!("step {name:?} has no run"));
    let (line, rest) = run;
    if rest != "|" {
        return format!("{rest}\n");
    }
    let key_indent = line.len() - line.trim_start().len();
    let block: Vec<&str> = lines[at + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > key_indent)
        .copied()
        .collect();
    let indent = block
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    block
        .iter()
        .map(|l| format!("{}\n", l.get(indent..).unwrap_or("")))
        .collect()
}

fn git(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.com",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue #26: the job of examples/github-actions/policy-diff.yml, its steps run as written
/// (bash, git, the real binary) on a repository whose pull request relinks bob's GitHub
/// account and adds a resource named to mention a team. The comment it would post is the
/// Markdown report, which mentions nobody; changes to review do not fail the job; a policy
/// that does not load does.
#[test]
fn the_actions_job_writes_the_semantic_diff_as_a_pull_request_comment() {
    let job = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../examples/github-actions/policy-diff.yml"),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let origin = tmp.path().join("origin");
    let policy = origin.join("policy");
    std::fs::create_dir_all(policy.join("tests")).unwrap();
    for name in [
        "directory.toml",
        "workflows.toml",
        "resources.toml",
        "tests/quickstart.toml",
    ] {
        std::fs::copy(quickstart().join(name), policy.join(name)).unwrap();
    }
    let directory = std::fs::read_to_string(policy.join("directory.toml")).unwrap();
    let linked = directory.replacen(
        "name = \"bob\"\ngroups = [\"sre\"]\n",
        "name = \"bob\"\ngroups = [\"sre\"]\ngithub_user = \"octo-bob\"\n",
        1,
    );
    assert_ne!(linked, directory);
    std::fs::write(policy.join("directory.toml"), &linked).unwrap();
    git(&origin, &["init", "-q"]);
    git(&origin, &["add", "-A"]);
    git(&origin, &["commit", "-q", "-m", "policy"]);
    let work = tmp.path().join("work");
    git(tmp.path(), &["clone", "-q", origin.to_str().unwrap(), "work"]);
    git(&work, &["checkout", "-q", "-b", "relink"]);
    let policy = work.join("policy");
    std::fs::write(
        policy.join("directory.toml"),
        linked.replace("github_user = \"octo-bob\"", "github_user = \"mallory\""),
    )
    .unwrap();
    let mut resources = std::fs::read_to_string(policy.join("resources.toml")).unwrap();
    resources.push_str("\n[[resource]]\nname = \"@acme/admins\"\nkind = \"postgres\"\n");
    std::fs::write(policy.join("resources.toml"), resources).unwrap();
    let mut workflows = std::fs::read_to_string(policy.join("workflows.toml")).unwrap();
    workflows.push_str(
        "\n[[workflow]]\nresource = \"@acme/admins\"\naction = \"read\"\nrequesters = [\"dev\"]\nauto_approve = true\n",
    );
    std::fs::write(policy.join("workflows.toml"), workflows).unwrap();
    git(&work, &["commit", "-q", "-a", "-m", "relink bob"]);

    let runner = tmp.path().join("runner");
    std::fs::create_dir_all(&runner).unwrap();
    let summary = tmp.path().join("summary.md");
    let bin_dir = std::path::Path::new(BIN).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let step = |name: &str| {
        // As the runner does: bash -e, in the checkout, with the step's environment.
        Command::new("bash")
            .args(["--noprofile", "--norc", "-e", "-c", &step_script(&job, name)])
            .current_dir(&work)
            .env("PATH", &path)
            .env("BASE_REF", "main")
            .env("RUNNER_TEMP", &runner)
            .env("GITHUB_STEP_SUMMARY", &summary)
            .output()
            .unwrap()
    };
    for name in ["Validate the policy", "Run the policy's test cases"] {
        let out = step(name);
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let out = step("Semantic diff against the base branch");
    let log = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{log}{}", String::from_utf8_lossy(&out.stderr));
    // The whole text report in the log; the comment in diff.md and the step summary.
    assert!(
        log.contains("~ bob: GitHub user mallory now acts as bob from GitHub, instead of GitHub user octo-bob"),
        "{log}"
    );
    let comment = std::fs::read_to_string(work.join("diff.md")).unwrap();
    assert!(comment.starts_with("<!-- jitgate policy diff -->\n"), "{comment}");
    assert!(
        comment.contains("**bob** `github_user`: `octo-bob` → `mallory`"),
        "{comment}"
    );
    assert!(comment.contains("\\@acme/admins"), "{comment}");
    assert!(
        !comment.replace("\\@", "").contains('@'),
        "a mention in the comment: {comment}"
    );
    assert_eq!(std::fs::read_to_string(&summary).unwrap(), comment);
    // The comment step posts that file with `gh pr comment --body-file`.
    assert!(step_script(&job, "Comment on the pull request")
        .contains("gh pr comment \"$PR\" --repo \"$REPO\" --body-file diff.md"));

    // A pull request whose policy does not load fails the job, at check and at diff.
    std::fs::write(policy.join("workflows.toml"), "[[workflow]]\nresource = \n").unwrap();
    git(&work, &["commit", "-q", "-a", "-m", "broken"]);
    let out = step("Validate the policy");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("workflows.toml:"),
        "{out:?}"
    );
    // (A job of its own: a fresh temporary directory, as every job on a runner has.)
    std::fs::remove_dir_all(&runner).unwrap();
    git(&work, &["worktree", "prune"]);
    std::fs::create_dir_all(&runner).unwrap();
    let out = step("Semantic diff against the base branch");
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    // The first pull request that adds the policy compares it with an empty one.
    let fresh = tmp.path().join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    git(&fresh, &["init", "-q"]);
    std::fs::write(fresh.join("README"), "no policy yet\n").unwrap();
    git(&fresh, &["add", "-A"]);
    git(&fresh, &["commit", "-q", "-m", "start"]);
    let first = tmp.path().join("first");
    git(tmp.path(), &["clone", "-q", fresh.to_str().unwrap(), "first"]);
    std::fs::create_dir_all(first.join("policy")).unwrap();
    std::fs::write(first.join("policy/directory.toml"), &linked).unwrap();
    std::fs::copy(quickstart().join("workflows.toml"), first.join("policy/workflows.toml")).unwrap();
    std::fs::copy(quickstart().join("resources.toml"), first.join("policy/resources.toml")).unwrap();
    let out = Command::new("bash")
        .args([
            "--noprofile",
            "--norc",
            "-e",
            "-c",
            &step_script(&job, "Semantic diff against the base branch"),
        ])
        .current_dir(&first)
        .env("PATH", &path)
        .env("BASE_REF", "main")
        .env("RUNNER_TEMP", tmp.path().join("runner-first"))
        .env("GITHUB_STEP_SUMMARY", tmp.path().join("summary-first.md"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let comment = std::fs::read_to_string(first.join("diff.md")).unwrap();
    assert!(
        comment.contains("**bob** `github_user`: none → `octo-bob`"),
        "{comment}"
    );
}
