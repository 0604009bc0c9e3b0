//! jitgate as a GitHub App (issue #26) against the real binary and GitHub's own definitions:
//! webhook deliveries built from @octokit/webhooks-examples and validated against
//! @octokit/openapi-webhooks, signed by @octokit/webhooks-methods, and a stand-in for GitHub's
//! REST API that checks every call jitgate makes against @octokit/openapi (method, path,
//! headers, the App JWT and installation tokens, the body) and records it
//! (scripts/github.sh, scripts/github/*.mjs; the npm packages are installed on first use into
//! target/node-github). The policy is examples/github.
//!
//! Tests: GitHub's signature example; forged and replayed deliveries; a deployment that waits
//! and is approved by a pull-request comment and reported `approved`; one policy approves at
//! once; one denied; one that expires and is reported `rejected`; GitHub unreachable for a
//! while, across kill -9; attacks on every input; the same on PostgreSQL. After each test every
//! call jitgate made to the stand-in was valid.

use crate::support::postgres::{Postgres, SUPERUSER_PASSWORD};
use crate::support::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub(crate) const APP_ID: u64 = 31337;
pub(crate) const SECRET: &str = "the webhook secret of the end-to-end tests' App";
pub(crate) const SECRET_ENV: &str = "JITGATE_GITHUB_WEBHOOK_SECRET";
/// The App's installation on the `example` organisation.
const INSTALLATION: i64 = 42;
/// Its installation on `evil`, an account `allowed_owners` does not list.
const EVIL_INSTALLATION: i64 = 43;
/// Its installation on `еxample`: the first letter is Cyrillic (U+0435).
const LOOKALIKE_INSTALLATION: i64 = 44;
const LOOKALIKE_OWNER: &str = "\u{0435}xample";

const CALLBACK: &str = "actions/review-custom-gates-for-run";
const COMMENT: &str = "issues/create-comment";
const ACCESS_TOKEN: &str = "apps/create-installation-access-token";

/// Long enough for a worker tick, a retry's backoff and a slow CI machine (two cores shared by
/// several test servers once went 30 s without a call).
const SOON: Duration = Duration::from_secs(60);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

fn example_policy() -> PathBuf {
    repo().join("examples/github")
}

/// `scripts/github.sh ARGS` with `stdin`: its stdout (trimmed); the test fails with its stderr
/// if it fails.
fn github_sh(args: &[&str], stdin: Option<&[u8]>) -> String {
    let mut child = Command::new(repo().join("scripts/github.sh"))
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("scripts/github.sh (node and npm: apt-get install nodejs npm)");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "scripts/github.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A 40-hex commit SHA of its own for each `seed`.
fn sha(seed: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(seed.as_bytes()))[..40].to_string()
}

/// GitHub's REST API, as the stand-in (scripts/github/standin.mjs) plays it, and the test App's
/// key pair.
pub(crate) struct GitHub {
    child: Child,
    url: String,
    keys: tempfile::TempDir,
    http: reqwest::blocking::Client,
}

impl GitHub {
    pub(crate) fn start() -> GitHub {
        Self::start_with(&[])
    }

    /// With more stand-in options (`--token-ttl 400`).
    fn start_with(extra: &[&str]) -> GitHub {
        let keys = tempfile::tempdir().unwrap();
        github_sh(&["keys", &keys.path().display().to_string()], None);
        let public = keys.path().join("app.pub.pem").display().to_string();
        let log = std::fs::File::create(keys.path().join("standin.log")).unwrap();
        let mut child = Command::new(repo().join("scripts/github.sh"))
            .args(["standin", "--app-id", &APP_ID.to_string(), "--public-key", &public])
            .args(["--installation", &format!("{INSTALLATION}=example")])
            .args(["--installation", &format!("{EVIL_INSTALLATION}=evil")])
            .args(["--installation", &format!("{LOOKALIKE_INSTALLATION}={LOOKALIKE_OWNER}")])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("scripts/github.sh standin");
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        let first = lines.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|e| {
            panic!(
                "the stand-in did not start ({e}): {}",
                std::fs::read_to_string(keys.path().join("standin.log")).unwrap_or_default()
            )
        });
        let started: Value = serde_json::from_str(&first).unwrap();
        assert_eq!(started["openapi"], "23.0.2", "{started}");
        GitHub {
            child,
            url: started["url"].as_str().unwrap().to_string(),
            keys,
            http: reqwest::blocking::Client::new(),
        }
    }

    fn private_key(&self) -> PathBuf {
        self.keys.path().join("app.pem")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.keys.path().join("standin.log")).unwrap_or_default()
    }

    /// Every call jitgate made, in order, with the stand-in's verdict.
    pub(crate) fn calls(&self) -> Vec<Value> {
        let v: Value = self
            .http
            .get(format!("{}/_standin/calls", self.url))
            .send()
            .unwrap()
            .json()
            .unwrap();
        v["calls"].as_array().unwrap().clone()
    }

    fn control(&self, what: &str, body: Value) {
        let r = self
            .http
            .post(format!("{}/_standin/{what}", self.url))
            .json(&body)
            .send()
            .unwrap();
        assert!(r.status().is_success(), "{what}");
    }

    /// Every API call fails with `status` until `up`.
    fn down(&self, status: u16) {
        self.control("down", json!({ "status": status }));
    }

    fn up(&self) {
        self.control("up", json!({}));
    }

    /// GitHub forgets every installation token it issued.
    fn revoke_tokens(&self) {
        self.control("revoke-tokens", json!({}));
    }

    fn of(&self, operation: &str, matches: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.calls()
            .into_iter()
            .filter(|c| c["operation_id"] == operation && matches(c))
            .collect()
    }

    /// The callbacks for workflow run `run`.
    fn callbacks(&self, run: i64) -> Vec<Value> {
        self.of(CALLBACK, |c| param(c, "run_id") == Some(run))
    }

    /// The callbacks for run `run` GitHub accepted (204).
    fn accepted_callbacks(&self, run: i64) -> Vec<Value> {
        self.callbacks(run).into_iter().filter(|c| c["status"] == 204).collect()
    }

    /// The comments jitgate posted on issue or pull request `number` of example/app.
    fn comments(&self, number: i64) -> Vec<Value> {
        self.of(COMMENT, |c| {
            param(c, "issue_number") == Some(number) && c["status"] == 201
        })
    }

    /// Wait until `select` returns at least `n` calls; those calls.
    fn wait_for(&self, what: &str, n: usize, select: impl Fn(&GitHub) -> Vec<Value>) -> Vec<Value> {
        self.wait_for_within(what, n, SOON, select)
    }

    fn wait_for_within(
        &self,
        what: &str,
        n: usize,
        within: Duration,
        select: impl Fn(&GitHub) -> Vec<Value>,
    ) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let found = select(self);
            if found.len() >= n {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the calls: {:#?}",
                self.calls()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The one accepted callback of run `run`, once made: its body.
    pub(crate) fn answer(&self, run: i64) -> Value {
        let calls = self.wait_for(&format!("run {run}'s callback"), 1, |g| g.accepted_callbacks(run));
        calls[0]["body"].clone()
    }

    /// As `answer`, waiting up to `within` (a call a killed server had leased waits out the
    /// lease, 60 s, before another takes it).
    fn answer_within(&self, run: i64, within: Duration) -> Value {
        let calls = self.wait_for_within(&format!("run {run}'s callback"), 1, within, |g| {
            g.accepted_callbacks(run)
        });
        calls[0]["body"].clone()
    }

    /// Every call jitgate made was as GitHub's description says, and authenticated as the
    /// App's installation of the repository's owner.
    pub(crate) fn assert_all_valid(&self) {
        let calls = self.calls();
        let invalid: Vec<&Value> = calls.iter().filter(|c| c["valid"] != true).collect();
        assert!(invalid.is_empty(), "calls GitHub would not take: {invalid:#?}");
        for c in &calls {
            let op = c["operation_id"].as_str().unwrap_or_default();
            assert!(
                [CALLBACK, COMMENT, ACCESS_TOKEN].contains(&op),
                "a call jitgate should not make: {c}"
            );
            let user_agent = c["headers"]["user-agent"].as_str().unwrap_or_default();
            assert!(user_agent.starts_with("jitgate/"), "{c}");
        }
    }
}

impl Drop for GitHub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- GitHub stand-in log ---\n{}", self.log());
        }
    }
}

/// A call's numeric path parameter (the stand-in records them as the path spelt them).
fn param(call: &Value, name: &str) -> Option<i64> {
    call["params"][name].as_str().and_then(|v| v.parse().ok())
}

/// One webhook delivery as GitHub sends it.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub(crate) event: String,
    pub(crate) delivery: String,
    pub(crate) signature: String,
    pub(crate) body: String,
}

/// A delivery of `event` built by scripts/github/payload.mjs from `options` (validated against
/// GitHub's schema), signed with the App's secret.
pub(crate) fn delivery(event: &str, options: Value) -> Delivery {
    let out = github_sh(&["deliver", event, SECRET, &options.to_string()], None);
    let v: Value = serde_json::from_str(&out).unwrap();
    Delivery {
        event: v["event"].as_str().unwrap().into(),
        delivery: v["delivery"].as_str().unwrap().into(),
        signature: v["signature"].as_str().unwrap().into(),
        body: v["body"].as_str().unwrap().into(),
    }
}

/// The `[github]` config for an App calling `gh`, with `extra` lines after it.
pub(crate) fn github_config(gh: &GitHub, extra: &str) -> String {
    format!(
        "[github]\napp_id = {APP_ID}\nprivate_key_file = \"{}\"\nwebhook_secret_env = \"{SECRET_ENV}\"\n\
         api_url = \"{}\"\nallowed_owners = [\"example\"]\n{extra}\n",
        gh.private_key().display(),
        gh.url
    )
}

/// POST to `s`'s webhook what GitHub would: the event, delivery and signature headers (each
/// when given) and the raw body.
pub(crate) fn post_webhook(
    s: &Server,
    event: Option<&str>,
    delivery: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
) -> (u16, Value) {
    let mut req = s
        .http
        .post(format!("{}/v1/github/webhook", s.url))
        .header("Content-Type", "application/json")
        .header("User-Agent", "GitHub-Hookshot/e2e")
        .header("X-GitHub-Hook-ID", "109948940")
        .header("X-GitHub-Hook-Installation-Target-Type", "integration")
        .header("X-GitHub-Hook-Installation-Target-ID", APP_ID.to_string());
    if let Some(e) = event {
        req = req.header("X-GitHub-Event", e);
    }
    if let Some(d) = delivery {
        req = req.header("X-GitHub-Delivery", d);
    }
    if let Some(sig) = signature {
        req = req.header("X-Hub-Signature-256", sig);
    }
    let resp = req.body(body.to_vec()).send().expect("deliver");
    let status = resp.status().as_u16();
    let text = resp.text().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// A server on a policy, its App calling the stand-in.
struct Bed {
    gh: GitHub,
    s: Server,
}

impl Bed {
    fn start() -> Bed {
        Self::start_with(&example_policy(), "", None)
    }

    fn start_with(policy: &Path, extra_config: &str, database: Option<&str>) -> Bed {
        Self::start_against(GitHub::start(), policy, extra_config, database)
    }

    /// With a stand-in of the test's own making.
    fn start_against(gh: GitHub, policy: &Path, extra_config: &str, database: Option<&str>) -> Bed {
        let s = Server::start_with_everything(
            policy,
            Some(&github_config(&gh, extra_config)),
            database,
            &[(SECRET_ENV, SECRET), ("JITGATE_LOG", "info")],
        );
        Bed { gh, s }
    }

    /// POST a delivery to the webhook exactly as GitHub does, answered within GitHub's
    /// timeout (10 s: slow work goes through the store's queue, never in the answer).
    fn send(&self, d: &Delivery) -> (u16, Value) {
        let started = Instant::now();
        let answer = self.send_raw(Some(&d.event), Some(&d.delivery), Some(&d.signature), d.body.as_bytes());
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "GitHub gives up on a delivery after 10 s; this one took {:?}",
            started.elapsed()
        );
        answer
    }

    fn send_raw(
        &self,
        event: Option<&str>,
        delivery: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> (u16, Value) {
        post_webhook(&self.s, event, delivery, signature, body)
    }

    /// A `deployment_protection_rule` delivery (example/app unless `options` says otherwise);
    /// the webhook's answer, which must be 200.
    fn deploy(&self, options: Value) -> Value {
        let d = delivery("deployment_protection_rule", options);
        let (status, outcome) = self.send(&d);
        assert_eq!(status, 200, "{outcome}");
        outcome
    }

    /// An `issue_comment` `created` delivery; the webhook's answer, which must be 200.
    fn comment(&self, options: Value) -> Value {
        let d = delivery("issue_comment", options);
        let (status, outcome) = self.send(&d);
        assert_eq!(status, 200, "{outcome}");
        outcome
    }

    fn request(&self, id: &str) -> Value {
        let (status, r) = self.s.get(&format!("/v1/requests/{id}"), "demo-admin");
        assert_eq!(status, 200, "{r}");
        r
    }

    fn wait_status(&self, id: &str, status: &str) -> Value {
        let mut r = Value::Null;
        wait_until(&format!("{id} is {status}"), || {
            r = self.request(id);
            r["status"] == status
        });
        r
    }

    fn pending(&self) -> Vec<Value> {
        let (status, list) = self.s.get("/v1/requests?status=pending", "demo-admin");
        assert_eq!(status, 200, "{list}");
        list["items"].as_array().unwrap().clone()
    }
}

fn filed(outcome: &Value, status: &str) -> String {
    assert_eq!(outcome["outcome"], "filed", "{outcome}");
    assert_eq!(outcome["status"], status, "{outcome}");
    outcome["request_id"].as_str().unwrap().to_string()
}

fn rejected(outcome: &Value) -> String {
    assert_eq!(outcome["outcome"], "rejected", "{outcome}");
    outcome["request_id"].as_str().unwrap().to_string()
}

fn command(outcome: &Value, done: bool) -> String {
    assert_eq!(outcome["outcome"], "command", "{outcome}");
    assert_eq!(outcome["done"], done, "{outcome}");
    outcome["reply"].as_str().unwrap().to_string()
}

/// The sum of the samples of counter `name` whose labels include every `labels` pair, as
/// `/metrics` shows them now.
fn counter(s: &Server, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = s.http.get(format!("{}/metrics", s.url)).send().unwrap().text().unwrap();
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter(|line| labels.iter().all(|(k, v)| line.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A copy of examples/github whose workflows.toml has `from` replaced by `to`.
fn example_with(from: &str, to: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tests")).unwrap();
    for name in [
        "directory.toml",
        "resources.toml",
        "workflows.toml",
        "github.cedar",
        "tests/github.toml",
    ] {
        std::fs::copy(example_policy().join(name), dir.path().join(name)).unwrap();
    }
    let path = dir.path().join("workflows.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from} is not in workflows.toml");
    std::fs::write(&path, text.replace(from, to)).unwrap();
    dir
}

#[test]
fn the_example_policy_checks_and_passes_its_own_tests() {
    let policy = example_policy().display().to_string();
    for args in [["policy", "check", &policy], ["policy", "test", &policy]] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "jitgate {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_stand_in_refuses_what_github_would() {
    // Without this, "every call jitgate made was valid" could be a stand-in that accepts all:
    // forged, expired or over-long App JWTs, a misspelt state, unknown properties, missing
    // headers, another owner's repository, an operation jitgate should not make.
    let out = github_sh(&["selftest"], None);
    assert!(out.ends_with("passed, 0 failed"), "{out}");
}

#[test]
fn githubs_signature_example_verifies() {
    // GitHub's published example, by GitHub's own library...
    let body = b"Hello, World!";
    let expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    assert_eq!(github_sh(&["sign", "It's a Secret to Everybody"], Some(body)), expected);
    github_sh(&["verify", "It's a Secret to Everybody", expected], Some(body));

    // ...and by jitgate, configured with that secret: signed, it is read (a ping, or an event
    // jitgate does not handle, is ignored); one hex digit off, or another secret, it is 401.
    let gh = GitHub::start();
    let config = github_config(&gh, "");
    let s = Server::start_with_env(
        &example_policy(),
        Some(&config),
        &[(SECRET_ENV, "It's a Secret to Everybody")],
    );
    let bed = Bed { gh, s };
    for event in ["ping", "push"] {
        let (status, v) = bed.send_raw(
            Some(event),
            Some("0b6bd3d0-8a29-11ee-9d1f-6d7a1e0c1a01"),
            Some(expected),
            body,
        );
        assert_eq!(status, 200, "{event}: {v}");
        assert_eq!(v["outcome"], "ignored", "{v}");
    }
    let off_by_one = format!("{}f", &expected[..expected.len() - 1]);
    let (status, v) = bed.send_raw(
        Some("ping"),
        Some("0b6bd3d0-8a29-11ee-9d1f-6d7a1e0c1a02"),
        Some(&off_by_one),
        body,
    );
    assert_eq!(status, 401, "{v}");
    let (status, _) = bed.send(&delivery("ping", json!({})));
    assert_eq!(status, 401, "signed with another secret");
    assert!(bed.gh.calls().is_empty());
}

#[test]
fn a_forged_delivery_changes_nothing() {
    let bed = Bed::start();
    let before = bed.s.audit_count();
    let d = delivery(
        "deployment_protection_rule",
        json!({"environment": "production", "run_id": 501, "pull_requests": [5]}),
    );
    let other_secret = github_sh(&["sign", "not the App's secret"], Some(d.body.as_bytes()));
    let tampered = d.body.replace("production", "staging");
    let sha1 = format!("sha1={}", "0".repeat(40));
    let short = d.signature[..d.signature.len() - 2].to_string();
    let attempts: Vec<(&str, Option<&str>, &[u8])> = vec![
        ("unsigned", None, d.body.as_bytes()),
        ("signed with another secret", Some(&other_secret), d.body.as_bytes()),
        (
            "the body changed after signing",
            Some(&d.signature),
            tampered.as_bytes(),
        ),
        ("sha1 instead of sha256", Some(&sha1), d.body.as_bytes()),
        ("a truncated signature", Some(&short), d.body.as_bytes()),
        ("an empty signature", Some(""), d.body.as_bytes()),
        ("the bare hex", Some(&d.signature["sha256=".len()..]), d.body.as_bytes()),
    ];
    for (what, signature, body) in attempts {
        let (status, v) = bed.send_raw(Some(&d.event), Some(&d.delivery), signature, body);
        assert_eq!(status, 401, "{what}: {v}");
        assert!(
            v.to_string().contains("not signed with the App's webhook secret"),
            "{what}: {v}"
        );
    }
    // Nothing was filed, recorded or told GitHub; the genuine delivery still files (so its
    // delivery id was not spent by the forgeries).
    assert!(bed.pending().is_empty());
    assert_eq!(bed.s.audit_count(), before);
    std::thread::sleep(Duration::from_millis(600));
    assert!(bed.gh.calls().is_empty(), "{:#?}", bed.gh.calls());
    let (status, v) = bed.send(&d);
    assert_eq!(status, 200, "{v}");
    filed(&v, "pending");

    // Without [github], the webhook is not there at all.
    let plain = Server::start_with_policy(&example_policy());
    let r = plain
        .http
        .post(format!("{}/v1/github/webhook", plain.url))
        .header("X-GitHub-Event", &d.event)
        .header("X-GitHub-Delivery", &d.delivery)
        .header("X-Hub-Signature-256", &d.signature)
        .body(d.body.clone())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    bed.gh.assert_all_valid();
}

#[test]
fn a_replayed_delivery_changes_nothing() {
    let bed = Bed::start();
    let d = delivery(
        "deployment_protection_rule",
        json!({"environment": "production", "run_id": 601, "sha": sha("replay"), "pull_requests": [6]}),
    );
    let (status, first) = bed.send(&d);
    assert_eq!(status, 200, "{first}");
    let rid = filed(&first, "pending");
    bed.gh.wait_for("the announcement", 1, |g| g.comments(6));
    let audit = bed.s.audit_count();
    for _ in 0..3 {
        let (status, again) = bed.send(&d);
        assert_eq!(status, 200, "{again}");
        assert_eq!(again["outcome"], "duplicate", "{again}");
    }
    assert_eq!(bed.pending().len(), 1);
    assert_eq!(bed.s.audit_count(), audit);

    // A reviewer's command, delivered twice, acts and replies once.
    let approve = delivery(
        "issue_comment",
        json!({"number": 6, "body": format!("/jitgate approve {rid} ship it"), "login": "bob-gh"}),
    );
    let (status, v) = bed.send(&approve);
    assert_eq!(status, 200, "{v}");
    command(&v, true);
    let (status, v) = bed.send(&approve);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["outcome"], "duplicate", "{v}");
    bed.gh.answer(601);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(bed.gh.comments(6).len(), 2, "the announcement and one reply");
    assert_eq!(bed.gh.accepted_callbacks(601).len(), 1);
    assert_eq!(bed.request(&rid)["approvals"].as_array().unwrap().len(), 1);
    bed.gh.assert_all_valid();
}

/// Found by this test and fixed in the service: a delivery is remembered by its signed body.
#[test]
fn a_signed_body_replayed_under_another_delivery_id_files_nothing_more() {
    // The headers are not signed: whoever saw a delivery can send its body and signature again
    // with a fresh X-GitHub-Delivery. The run is still one deployment.
    let bed = Bed::start();
    let d = delivery(
        "deployment_protection_rule",
        json!({"environment": "production", "run_id": 650, "pull_requests": [65]}),
    );
    let (status, first) = bed.send(&d);
    assert_eq!(status, 200, "{first}");
    let rid = filed(&first, "pending");
    bed.gh.wait_for("the announcement", 1, |g| g.comments(65));
    for fresh in [
        "7f0e1c2a-0000-4000-8000-000000000001",
        "7f0e1c2a-0000-4000-8000-000000000002",
    ] {
        let (status, again) = bed.send_raw(Some(&d.event), Some(fresh), Some(&d.signature), d.body.as_bytes());
        assert!(status == 200 || status == 409, "{status} {again}");
        assert_ne!(again["outcome"], "filed", "{again}");
    }
    let pending = bed.pending();
    assert_eq!(pending.len(), 1, "{pending:#?}");
    assert_eq!(id(&pending[0]), rid);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(bed.gh.comments(65).len(), 1, "announced once");
    bed.gh.assert_all_valid();
}

/// The Bar: a signed delivery makes a pending request for the environment, an unsigned
/// one nothing; approving it makes jitgate call back `approved`; a `/jitgate approve` comment
/// from a mapped reviewer approves a second one.
#[test]
fn a_deployment_waits_then_a_pull_request_comment_approves_it_and_github_is_told() {
    let bed = Bed::start();
    let commit = sha("bar-1");

    // Unsigned: nothing.
    let unsigned = delivery(
        "deployment_protection_rule",
        json!({"environment": "production", "run_id": 700, "sha": commit}),
    );
    let (status, _) = bed.send_raw(
        Some(&unsigned.event),
        Some(&unsigned.delivery),
        None,
        unsigned.body.as_bytes(),
    );
    assert_eq!(status, 401);
    assert!(bed.pending().is_empty());

    // Signed: a pending request for the environment, bound to the commit, by the workflow.
    let outcome = bed.deploy(json!({
        "environment": "production", "run_id": 701, "sha": commit, "ref": "feature/login",
        "pull_requests": [7], "sender": "octocat"
    }));
    let first = filed(&outcome, "pending");
    let r = bed.request(&first);
    assert_eq!(r["resource"], "github:example/app/production", "{r}");
    assert_eq!(r["action"], "deploy", "{r}");
    assert_eq!(r["requester"], "ci:example/app", "{r}");
    assert_eq!(r["payload"], commit.as_str(), "{r}");
    assert_eq!(r["needs"], json!([{"group": "sre", "approvals": 1}]), "{r}");
    let reason = r["reason"].as_str().unwrap();
    for part in [&commit[..12], "production", "701", "octocat"] {
        assert!(reason.contains(part), "the reason names {part}: {reason}");
    }

    // It is announced on its pull request with the command and a link; GitHub is not told
    // anything yet.
    let announcement = bed.gh.wait_for("the announcement", 1, |g| g.comments(7))[0]["body"]["body"]
        .as_str()
        .unwrap()
        .to_string();
    for part in [first.as_str(), "/jitgate approve", &commit[..12], "production"] {
        assert!(
            announcement.contains(part),
            "the announcement holds {part}: {announcement}"
        );
    }
    assert!(bed.gh.callbacks(701).is_empty());

    // A developer cannot approve it, an unlinked login neither; each is told why.
    let reply = command(
        &bed.comment(json!({"number": 7, "body": format!("/jitgate approve {first} lgtm"), "login": "alice-gh"})),
        false,
    );
    assert!(!reply.is_empty());
    let reply = command(
        &bed.comment(json!({"number": 7, "body": format!("/jitgate approve {first}"), "login": "mallory-gh"})),
        false,
    );
    assert!(reply.contains("is not linked to a jitgate principal"), "{reply}");
    assert!(reply.contains("github_user"), "{reply}");
    assert_eq!(bed.request(&first)["status"], "pending");

    // bob approves through the API: GitHub is told `approved`, once, and the grant is used.
    let (status, v) = bed.s.post(
        &format!("/v1/requests/{first}/approve"),
        "demo-bob",
        json!({"comment": "release window open"}),
    );
    assert_eq!(status, 200, "{v}");
    let answer = bed.gh.answer(701);
    assert_eq!(answer["environment_name"], "production", "{answer}");
    assert_eq!(answer["state"], "approved", "{answer}");
    assert!(answer["comment"].as_str().unwrap().contains(&first), "{answer}");
    assert!(answer["comment"].as_str().unwrap().chars().count() <= 1000, "{answer}");
    let used = bed.wait_status(&first, "approved");
    wait_until("the grant is used by the answer", || {
        bed.request(&first)["grant"]["status"] == "used"
    });
    assert_eq!(used["grant"]["id"], bed.request(&first)["grant"]["id"]);
    let check = bed.s.check(
        "ci:example/app",
        "github:example/app/production",
        "deploy",
        Some(&commit),
    );
    assert_eq!(check["allow"], false, "single use: {check}");

    // A second deployment is approved by carol with a comment on the pull request.
    let second = filed(
        &bed.deploy(json!({
            "environment": "production", "run_id": 702, "sha": sha("bar-2"), "pull_requests": [8]
        })),
        "pending",
    );
    bed.gh.wait_for("the second announcement", 1, |g| g.comments(8));
    let reply = command(
        &bed.comment(
            json!({"number": 8, "body": format!("/jitgate approve {second} tested on staging"), "login": "carol-gh"}),
        ),
        true,
    );
    assert!(reply.contains("approved"), "{reply}");
    let decided = bed.wait_status(&second, "approved");
    let approval = &decided["approvals"][0];
    assert_eq!(approval["reviewer"], "carol", "{decided}");
    let comment = approval["comment"].as_str().unwrap();
    assert!(comment.starts_with("tested on staging"), "{comment}");
    assert!(
        comment.contains("https://github.com/example/app/pull/8#issuecomment-"),
        "{comment}"
    );
    assert_eq!(bed.gh.answer(702)["state"], "approved");
    // The reply went to the same pull request.
    bed.gh.wait_for("the reply", 2, |g| g.comments(8));

    // Both answers are in the audit log, each once (reported once jitgate has GitHub's
    // answer and committed it, which is after the stand-in recorded the call).
    for rid in [&first, &second] {
        wait_until("the answer is reported", || {
            bed.s.event_kinds(rid).iter().any(|k| k == "github.deployment_reported")
        });
        let kinds = bed.s.event_kinds(rid);
        for kind in ["github.deployment_answered", "github.deployment_reported"] {
            assert_eq!(kinds.iter().filter(|k| *k == kind).count(), 1, "{rid}: {kinds:?}");
        }
    }
    // Every call as GitHub documents it; one installation token served them all.
    bed.gh.assert_all_valid();
    let calls = bed.gh.calls();
    assert_eq!(calls[0]["operation_id"], ACCESS_TOKEN, "{:#?}", calls[0]);
    assert_eq!(calls[0]["auth"], "app-jwt");
    assert_eq!(calls[0]["installation_id"], INSTALLATION);
    assert_eq!(bed.gh.of(ACCESS_TOKEN, |_| true).len(), 1, "{calls:#?}");

    // What operators watch.
    let webhooks = "jitgate_github_webhooks_total";
    assert_eq!(counter(&bed.s, webhooks, &[("outcome", "filed")]), 2.0);
    assert_eq!(counter(&bed.s, webhooks, &[("outcome", "command")]), 3.0);
    assert_eq!(counter(&bed.s, webhooks, &[("outcome", "unauthenticated")]), 1.0);
    let github_calls = "jitgate_github_calls_total";
    assert_eq!(
        counter(&bed.s, github_calls, &[("purpose", "callback"), ("result", "ok")]),
        2.0
    );
    // Two announcements and three replies; the last may be counted just after GitHub took it.
    wait_until("five comments are counted", || {
        counter(&bed.s, github_calls, &[("purpose", "comment"), ("result", "ok")]) >= 5.0
    });
}

#[test]
fn policy_approves_main_of_example_app_to_staging_at_once() {
    let bed = Bed::start();
    // `deployment.ref` is the branch's name (`main`): the policy sees it exactly so.
    let auto = filed(
        &bed.deploy(json!({"environment": "staging", "run_id": 801, "ref": "main", "pull_requests": [9]})),
        "approved",
    );
    let answer = bed.gh.answer(801);
    assert_eq!(answer["state"], "approved", "{answer}");
    assert_eq!(answer["environment_name"], "staging", "{answer}");
    wait_until("the grant is used", || bed.request(&auto)["grant"]["status"] == "used");
    // Nothing waits, so nothing is announced.
    std::thread::sleep(Duration::from_millis(800));
    assert!(bed.gh.comments(9).is_empty(), "{:#?}", bed.gh.comments(9));

    // Another branch to staging, and main to production, wait for an sre.
    filed(
        &bed.deploy(json!({"environment": "staging", "run_id": 802, "ref": "feature"})),
        "pending",
    );
    filed(
        &bed.deploy(json!({"environment": "production", "run_id": 803, "ref": "main"})),
        "pending",
    );
    // A full ref is passed as sent, never shortened: `refs/heads/main` is not the `main` the
    // policy names, so it waits (jitgate never guesses whether a name is a branch or a tag).
    filed(
        &bed.deploy(json!({"environment": "staging", "run_id": 805, "ref": "refs/heads/main"})),
        "pending",
    );
    // GitHub's environment names are case-insensitive: the catalog's spelling is used.
    let upper = filed(
        &bed.deploy(json!({"environment": "Staging", "run_id": 804, "ref": "main"})),
        "approved",
    );
    assert_eq!(bed.request(&upper)["resource"], "github:example/app/staging");
    assert_eq!(bed.gh.answer(804)["environment_name"], "Staging");
    std::thread::sleep(Duration::from_millis(800));
    assert!(bed.gh.callbacks(802).is_empty());
    assert!(bed.gh.callbacks(803).is_empty());
    assert!(bed.gh.callbacks(805).is_empty());
    bed.gh.assert_all_valid();
}

#[test]
fn a_denied_deployment_is_reported_rejected() {
    let bed = Bed::start();
    let by_api = filed(
        &bed.deploy(json!({"environment": "production", "run_id": 901})),
        "pending",
    );
    let (status, v) = bed.s.post(
        &format!("/v1/requests/{by_api}/deny"),
        "demo-bob",
        json!({"comment": "not during the freeze"}),
    );
    assert_eq!(status, 200, "{v}");
    let answer = bed.gh.answer(901);
    assert_eq!(answer["state"], "rejected", "{answer}");
    let text = answer["comment"].as_str().unwrap();
    assert!(text.contains("bob") && text.contains("not during the freeze"), "{text}");

    // Denied with a comment on the pull request.
    let by_comment = filed(
        &bed.deploy(json!({"environment": "production", "run_id": 902, "pull_requests": [12]})),
        "pending",
    );
    bed.gh.wait_for("the announcement", 1, |g| g.comments(12));
    command(
        &bed.comment(
            json!({"number": 12, "body": format!("/jitgate deny {by_comment} too risky today"), "login": "erin-gh"}),
        ),
        true,
    );
    bed.wait_status(&by_comment, "denied");
    let answer = bed.gh.answer(902);
    assert_eq!(answer["state"], "rejected", "{answer}");
    assert!(
        answer["comment"].as_str().unwrap().contains("too risky today"),
        "{answer}"
    );
    // A comment after the decision changes nothing and says so.
    command(
        &bed.comment(json!({"number": 12, "body": format!("/jitgate approve {by_comment}"), "login": "bob-gh"})),
        false,
    );
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(bed.gh.callbacks(902).len(), 1);
    bed.gh.assert_all_valid();
}

#[test]
fn an_undecided_deployment_expires_and_is_reported_rejected() {
    let policy = example_with("pending_ttl = \"4h\"", "pending_ttl = \"2s\"");
    let bed = Bed::start_with(policy.path(), "", None);
    let rid = filed(
        &bed.deploy(json!({"environment": "production", "run_id": 1001})),
        "pending",
    );
    let answer = bed.gh.answer(1001);
    assert_eq!(answer["state"], "rejected", "{answer}");
    assert!(answer["comment"].as_str().unwrap().contains("expired"), "{answer}");
    assert_eq!(bed.request(&rid)["status"], "expired");
    bed.gh.assert_all_valid();
}

#[test]
fn github_unreachable_for_a_while_loses_nothing_across_kill_9() {
    let mut bed = Bed::start();
    bed.gh.down(503);
    let auto = filed(
        &bed.deploy(json!({"environment": "staging", "run_id": 1101, "ref": "main"})),
        "approved",
    );
    let waiting = filed(
        &bed.deploy(json!({"environment": "production", "run_id": 1102})),
        "pending",
    );
    // jitgate keeps trying while GitHub answers 503 (its installation token first).
    bed.gh.wait_for("two failed attempts", 2, |g| {
        g.calls().into_iter().filter(|c| c["status"] == 503).collect()
    });
    bed.s.kill9_and_restart();
    // Decided while GitHub is still down, by a server that was killed.
    let (status, v) = bed
        .s
        .post(&format!("/v1/requests/{waiting}/approve"), "demo-carol", json!({}));
    assert_eq!(status, 200, "{v}");
    // Rate limited for a while: also retried.
    bed.gh.down(403);
    bed.gh.wait_for("a rate-limited attempt", 1, |g| {
        g.calls().into_iter().filter(|c| c["status"] == 403).collect()
    });
    bed.s.kill9_and_restart();
    bed.gh.up();

    // Exactly one answer each reaches GitHub, and each is recorded as reported once. A call the
    // killed server had leased (and could not give back) is taken up when its 60 s lease runs
    // out: nothing is lost, though it may come that much later.
    let after_a_lease = Duration::from_secs(90);
    assert_eq!(bed.gh.answer_within(1101, after_a_lease)["state"], "approved");
    assert_eq!(bed.gh.answer_within(1102, after_a_lease)["state"], "approved");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(bed.gh.accepted_callbacks(1101).len(), 1);
    assert_eq!(bed.gh.accepted_callbacks(1102).len(), 1);
    for rid in [&auto, &waiting] {
        wait_until("reported", || {
            bed.s.event_kinds(rid).iter().any(|k| k == "github.deployment_reported")
        });
        let kinds = bed.s.event_kinds(rid);
        assert_eq!(
            kinds.iter().filter(|k| *k == "github.deployment_answered").count(),
            1,
            "{kinds:?}"
        );
        assert_eq!(
            kinds.iter().filter(|k| *k == "github.deployment_reported").count(),
            1,
            "{kinds:?}"
        );
        assert_eq!(bed.request(rid)["grant"]["status"], "used");
    }
    let (_, events) = bed.s.get(&format!("/v1/audit?request_id={auto}"), "demo-admin");
    let reported = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "github.deployment_reported")
        .unwrap()
        .clone();
    assert!(reported["comment"].as_str().unwrap().contains("attempt"), "{reported}");
    bed.gh.assert_all_valid();
}

#[test]
fn a_callback_github_refuses_is_not_retried_for_ever() {
    let bed = Bed::start();
    // GitHub's answer when the run no longer waits (cancelled, or answered by another rule).
    bed.gh.control(
        "down",
        json!({"status": 422, "operation": CALLBACK, "message": "No pending deployment requests to approve or reject"}),
    );
    let rid = filed(
        &bed.deploy(json!({"environment": "staging", "run_id": 1211, "ref": "main"})),
        "approved",
    );
    bed.gh.wait_for("the refused callback", 1, |g| g.callbacks(1211));
    wait_until("the refusal is recorded", || {
        bed.s
            .event_kinds(&rid)
            .iter()
            .any(|k| k == "github.deployment_reported")
    });
    let (_, events) = bed.s.get(&format!("/v1/audit?request_id={rid}"), "demo-admin");
    let reported = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "github.deployment_reported")
        .unwrap()
        .clone();
    let comment = reported["comment"].as_str().unwrap();
    assert!(comment.contains("GitHub refused"), "{reported}");
    // Once: a refusal is final.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(bed.gh.callbacks(1211).len(), 1, "{:#?}", bed.gh.callbacks(1211));
    assert_eq!(
        counter(
            &bed.s,
            "jitgate_github_calls_total",
            &[("purpose", "callback"), ("result", "refused")]
        ),
        1.0
    );
    bed.gh.assert_all_valid();
}

#[test]
fn a_revoked_installation_token_is_replaced_once() {
    let bed = Bed::start();
    filed(
        &bed.deploy(json!({"environment": "staging", "run_id": 1201, "ref": "main"})),
        "approved",
    );
    bed.gh.answer(1201);
    bed.gh.revoke_tokens();
    filed(
        &bed.deploy(json!({"environment": "staging", "run_id": 1202, "ref": "main"})),
        "approved",
    );
    bed.gh.answer(1202);
    let calls = bed.gh.callbacks(1202);
    assert_eq!(calls[0]["status"], 401, "{calls:#?}");
    assert_eq!(bed.gh.of(ACCESS_TOKEN, |_| true).len(), 2);
    bed.gh.assert_all_valid();
}

#[test]
fn installation_tokens_are_cached_until_five_minutes_before_they_expire() {
    // Tokens that expire in 4 minutes 59 seconds are never worth keeping: one per call.
    let bed = Bed::start_against(GitHub::start_with(&["--token-ttl", "299"]), &example_policy(), "", None);
    for run in [1251, 1252] {
        filed(
            &bed.deploy(json!({"environment": "staging", "run_id": run, "ref": "main"})),
            "approved",
        );
        bed.gh.answer(run);
    }
    assert_eq!(bed.gh.of(ACCESS_TOKEN, |_| true).len(), 2);
    // An hour's token serves every call (the other tests: one token for all).
    bed.gh.assert_all_valid();
}

#[test]
fn github_enterprise_server_is_called_below_its_api_path() {
    // GHES serves the REST API below /api/v3; a trailing slash in api_url changes nothing.
    let gh = GitHub::start_with(&["--base-path", "/api/v3"]);
    assert!(gh.url.ends_with("/api/v3"), "{}", gh.url);
    let config = github_config(&gh, "").replace("/api/v3\"", "/api/v3/\"");
    assert!(config.contains("/api/v3/\""), "{config}");
    let s = Server::start_with_env(&example_policy(), Some(&config), &[(SECRET_ENV, SECRET)]);
    let bed = Bed { gh, s };
    filed(
        &bed.deploy(json!({"environment": "staging", "run_id": 1271, "ref": "main"})),
        "approved",
    );
    assert_eq!(bed.gh.answer(1271)["state"], "approved");
    bed.gh.assert_all_valid();
}

#[test]
fn a_deployment_is_announced_on_at_most_three_pull_requests() {
    let bed = Bed::start();
    filed(
        &bed.deploy(json!({"environment": "production", "run_id": 1261, "pull_requests": [31, 32, 33, 34]})),
        "pending",
    );
    for pr in [31, 32, 33] {
        bed.gh
            .wait_for(&format!("the announcement on #{pr}"), 1, |g| g.comments(pr));
    }
    std::thread::sleep(Duration::from_millis(800));
    assert!(bed.gh.comments(34).is_empty());
    for pr in [31, 32, 33] {
        assert_eq!(bed.gh.comments(pr).len(), 1, "#{pr}");
    }
    bed.gh.assert_all_valid();
}

#[test]
fn hostile_deliveries_are_refused_or_rejected_and_never_followed() {
    let bed = Bed::start();

    // Unreadable or unusable environments: tracked and answered `rejected` at once, filing
    // nothing that waits.
    let long = "e".repeat(256);
    let mut run = 1300;
    for (what, environment) in [
        ("a right-to-left override", "production\u{202e}"),
        ("a NUL byte", "production\u{0}"),
        ("a zero-width space", "produc\u{200b}tion"),
        ("a newline", "production\nstaging"),
        ("256 bytes", long.as_str()),
    ] {
        run += 1;
        let outcome = bed.deploy(json!({"environment": environment, "run_id": run}));
        rejected(&outcome);
        let answer = bed.gh.answer(run);
        assert_eq!(answer["state"], "rejected", "{what}: {answer}");
    }
    assert!(bed.pending().is_empty(), "{:#?}", bed.pending());

    // Owners the App may not serve: another account, and one that only looks like `example`.
    for (owner, installation) in [("evil", EVIL_INSTALLATION), (LOOKALIKE_OWNER, LOOKALIKE_INSTALLATION)] {
        run += 1;
        rejected(&bed.deploy(
            json!({"owner": owner, "environment": "production", "run_id": run, "installation_id": installation}),
        ));
        let answer = bed.gh.answer(run);
        assert_eq!(answer["state"], "rejected", "{owner}: {answer}");
    }
    // An environment the catalog does not list.
    run += 1;
    rejected(&bed.deploy(json!({"environment": "qa", "run_id": run})));
    assert_eq!(bed.gh.answer(run)["state"], "rejected");
    // A commit that is not a SHA.
    run += 1;
    rejected(&bed.deploy(json!({"environment": "production", "run_id": run, "sha": "HEAD~1"})));
    assert_eq!(bed.gh.answer(run)["state"], "rejected");
    assert!(bed.pending().is_empty());

    // The callback URL is never followed: one on another host is answered on api_url...
    run += 1;
    filed(
        &bed.deploy(json!({
            "environment": "staging", "run_id": run, "ref": "main",
            "callback_url": format!("https://evil.example/repos/example/app/actions/runs/{run}/deployment_protection_rule")
        })),
        "approved",
    );
    assert_eq!(bed.gh.answer(run)["state"], "approved");
    // ...and one for another repository, or not a callback at all, or missing, files nothing.
    let before = bed.s.audit_count();
    for (what, options) in [
        (
            "another repository's run",
            json!({"environment": "staging", "ref": "main", "run_id": 1390,
            "callback_url": "https://api.github.com/repos/example/other/actions/runs/1390/deployment_protection_rule"}),
        ),
        (
            "another endpoint",
            json!({"environment": "staging", "ref": "main", "run_id": 1391,
            "callback_url": "https://api.github.com/repos/example/app/issues/1/comments"}),
        ),
        (
            "a run id that is not a number",
            json!({"environment": "staging", "ref": "main", "run_id": 1392,
            "callback_url": "https://api.github.com/repos/example/app/actions/runs/1392x/deployment_protection_rule"}),
        ),
        (
            "a path that climbs",
            json!({"environment": "staging", "ref": "main", "run_id": 1393,
            "callback_url": "https://api.github.com/repos/example/app/actions/runs/1393/deployment_protection_rule/../../../../../../app/installations/42/access_tokens"}),
        ),
        (
            "no callback",
            json!({"environment": "staging", "ref": "main", "run_id": 1394, "omit": ["deployment_callback_url"]}),
        ),
        (
            "no installation",
            json!({"environment": "staging", "ref": "main", "run_id": 1395, "omit": ["installation"]}),
        ),
    ] {
        let (status, v) = bed.send(&delivery("deployment_protection_rule", options));
        assert_eq!(status, 400, "{what}: {v}");
    }
    assert_eq!(bed.s.audit_count(), before);

    // Missing or unprintable headers name themselves.
    let d = delivery("ping", json!({}));
    let (status, v) = bed.send_raw(None, Some(&d.delivery), Some(&d.signature), d.body.as_bytes());
    assert_eq!(status, 400, "{v}");
    assert!(v.to_string().contains("X-GitHub-Event"), "{v}");
    let (status, v) = bed.send_raw(
        Some("ping"),
        Some(&"d".repeat(101)),
        Some(&d.signature),
        d.body.as_bytes(),
    );
    assert_eq!(status, 400, "{v}");
    assert!(v.to_string().contains("X-GitHub-Delivery"), "{v}");

    // Oversize: 413 before anything is read.
    let huge = format!("{{\"action\":\"requested\",\"pad\":\"{}\"}}", "x".repeat(1024 * 1024));
    let signature = github_sh(&["sign", SECRET], Some(huge.as_bytes()));
    let (status, _) = bed.send_raw(
        Some("deployment_protection_rule"),
        Some("0b6bd3d0-8a29-11ee-9d1f-6d7a1e0c1a99"),
        Some(&signature),
        huge.as_bytes(),
    );
    assert_eq!(status, 413);

    // Not JSON, though signed.
    let garbage = b"{\"action\": \"requested\", ";
    let signature = github_sh(&["sign", SECRET], Some(garbage));
    let (status, v) = bed.send_raw(
        Some("deployment_protection_rule"),
        Some("0b6bd3d0-8a29-11ee-9d1f-6d7a1e0c1a98"),
        Some(&signature),
        garbage,
    );
    assert_eq!(status, 400, "{v}");
    bed.gh.assert_all_valid();
}

#[test]
fn hostile_comments_decide_nothing() {
    let bed = Bed::start();
    let rid = filed(
        &bed.deploy(json!({
            "environment": "production", "run_id": 1401, "pull_requests": [14],
            // A branch name that mentions a team: escaped wherever jitgate repeats it.
            "ref": "feature/@example/admins"
        })),
        "pending",
    );
    let announcement = bed.gh.wait_for("the announcement", 1, |g| g.comments(14))[0]["body"]["body"]
        .as_str()
        .unwrap()
        .to_string();
    for (i, _) in announcement.match_indices('@') {
        assert!(
            i > 0 && announcement.as_bytes()[i - 1] == b'\\',
            "an unescaped @ in: {announcement}"
        );
    }
    let other = filed(
        &bed.deploy(json!({"repo": "other", "environment": "production", "run_id": 1402})),
        "pending",
    );

    // Bots and Apps (jitgate itself among them) are never answered.
    for options in [
        json!({"number": 14, "body": format!("/jitgate approve {rid}"), "login": "bob-gh", "user_type": "Bot"}),
        json!({"number": 14, "body": format!("/jitgate approve {rid}"), "login": "bob-gh", "via_app": true}),
        json!({"number": 14, "body": "looks good, will /jitgate approve later", "login": "bob-gh"}),
        json!({"number": 14, "body": format!("/jitgateapprove {rid}"), "login": "bob-gh"}),
    ] {
        let outcome = bed.comment(options.clone());
        assert_eq!(outcome["outcome"], "ignored", "{options}: {outcome}");
    }
    // Edited and deleted comments are not commands.
    for action in ["edited", "deleted"] {
        let outcome = bed.comment(
            json!({"action": action, "number": 14, "body": format!("/jitgate approve {rid}"), "login": "bob-gh"}),
        );
        assert_eq!(outcome["outcome"], "ignored", "{action}: {outcome}");
    }

    // Commands that cannot be read are refused, with the usage or the reason.
    for (what, body) in [
        (
            "a right-to-left override",
            format!("/jitgate approve {rid} \u{202e}ti pihs"),
        ),
        ("a NUL byte", format!("/jitgate approve {rid} ok\u{0}")),
        (
            "a zero-width joiner in the id",
            format!("/jitgate approve {}\u{200d}", rid),
        ),
        ("an unknown verb", format!("/jitgate merge {rid}")),
        ("no id", "/jitgate approve".to_string()),
        ("an id that is not one", "/jitgate approve ../../v1/grants".to_string()),
        (
            "too long a comment",
            format!("/jitgate approve {rid} {}", "a".repeat(501)),
        ),
    ] {
        let reply = command(
            &bed.comment(json!({"number": 14, "body": body, "login": "bob-gh"})),
            false,
        );
        assert!(!reply.is_empty(), "{what}");
    }
    // Another repository's deployment cannot be decided from this one; nothing about it leaks.
    let reply = command(
        &bed.comment(json!({"number": 14, "body": format!("/jitgate approve {other}"), "login": "bob-gh"})),
        false,
    );
    assert!(reply.contains("is not a deployment of example/app"), "{reply}");
    assert!(!reply.contains("other"), "{reply}");
    // A look-alike login (a Cyrillic о) is not the reviewer's.
    command(
        &bed.comment(json!({"number": 14, "body": format!("/jitgate approve {rid}"), "login": "b\u{043e}b-gh"})),
        false,
    );
    assert_eq!(bed.request(&rid)["status"], "pending");
    // The login's case does not matter (GitHub's logins are case-insensitive).
    command(
        &bed.comment(json!({"number": 14, "body": format!("/jitgate approve {rid}"), "login": "Bob-GH"})),
        true,
    );
    assert_eq!(bed.request(&rid)["status"], "approved");
    assert_eq!(bed.request(&other)["status"], "pending");
    // Every reply escapes what it repeats.
    for c in bed.gh.comments(14) {
        let text = c["body"]["body"].as_str().unwrap();
        assert!(!text.contains('\u{202e}') && !text.contains('\u{0}'), "{text}");
    }
    bed.gh.assert_all_valid();
}

#[test]
fn one_repository_exhausting_its_filing_limit_does_not_stop_another() {
    let bed = Bed::start_with(
        &example_policy(),
        "\n[limits]\nrequests_per_minute = 1\nrequests_burst = 2\nwrites_per_minute = 0\nmax_pending_per_requester = 0\n",
        None,
    );
    for run in [1501, 1502] {
        filed(
            &bed.deploy(json!({"environment": "production", "run_id": run})),
            "pending",
        );
    }
    // The third of example/app in the minute is not filed now (GitHub may redeliver; jitgate
    // files it later itself)...
    let d = delivery(
        "deployment_protection_rule",
        json!({"environment": "production", "run_id": 1503}),
    );
    let (status, v) = bed.send(&d);
    assert_eq!(status, 429, "{v}");
    // ...while example/other's is.
    filed(
        &bed.deploy(json!({"repo": "other", "environment": "production", "run_id": 1504})),
        "pending",
    );
    bed.gh.assert_all_valid();
}

#[test]
fn on_postgresql_a_deployment_is_approved_by_comment_and_nul_bytes_are_refused() {
    let pg = Postgres::start();
    pg.admin("postgres", "CREATE DATABASE jitgate");
    let url = pg.url("postgres", SUPERUSER_PASSWORD, "jitgate");
    let bed = Bed::start_with(&example_policy(), "", Some(&url));
    let rid = filed(
        &bed.deploy(json!({"environment": "production", "run_id": 1601, "pull_requests": [16]})),
        "pending",
    );
    bed.gh.wait_for("the announcement", 1, |g| g.comments(16));
    command(
        &bed.comment(json!({"number": 16, "body": format!("/jitgate approve {rid} \u{0}"), "login": "bob-gh"})),
        false,
    );
    command(
        &bed.comment(json!({"number": 16, "body": format!("/jitgate approve {rid} fine"), "login": "bob-gh"})),
        true,
    );
    assert_eq!(bed.gh.answer(1601)["state"], "approved");
    rejected(&bed.deploy(json!({"environment": "production\u{0}", "run_id": 1602})));
    assert_eq!(bed.gh.answer(1602)["state"], "rejected");
    rejected(&bed.deploy(json!({"environment": "production", "run_id": 1603, "ref": "main\u{0}"})));
    assert_eq!(bed.gh.answer(1603)["state"], "rejected");
    bed.gh.assert_all_valid();
}
