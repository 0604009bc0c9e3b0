//! Every state transition of jitgate, walked one after another through one real server: after
//! each step exactly the expected new audit events appear (read with `GET /v1/audit?after=`),
//! each saying who did it, whose access it concerns, which access, which request and grant, and
//! the comment where there is one. At the end every kind of event the product knows has been
//! seen, but for those that other tests cover (`grant.credentials_issued` needs PostgreSQL:
//! tests/end_to_end/postgres.rs; `audit.archived` needs retention: tests/end_to_end/audit.rs;
//! `database.history_accepted` needs a PostgreSQL whose history diverged: tests/end_to_end/failover.rs).

use crate::github::{delivery, github_config, post_webhook, GitHub, SECRET, SECRET_ENV};
use crate::support::receiver::receiver;
use crate::support::*;
use jitgate_core::audit::EventKind;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The kinds this test does not walk, and the tests that do.
const COVERED_ELSEWHERE: [&str; 5] = [
    "grant.credentials_issued",
    "audit.archived",
    "database.history_accepted",
    // audit.rs: a file sink under a rewound log.
    "audit.fork_detected",
    "audit.sink_resumed",
];

const SCIM_USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const SCIM_GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const SCIM_PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

const HOOK_SECRET: &str = "0123456789abcdef-transitions";

/// An SSH public key to certify (only its public half; nothing logs in with it).
const SSH_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK2N9inQD9f0Ps8WT5q0AkutX/IwEL8YT9IVDajPfag9 alice@laptop";

/// The quickstart, plus: a workflow whose undecided requests lapse after a second, one that
/// escalates to the leads after a second, and one a webhook provider makes real; and a lead.
const WORKFLOWS: &str = r#"
[[workflow]]
resource = "legacy-db"
action = "read"
requesters = ["dev"]
steps = [{ group = "sre", approvals = 1 }]
pending_ttl = "1s"

[[workflow]]
resource = "prod-db"
action = "migrate"
requesters = ["dev"]
steps = [{ group = "sre", approvals = 1 }]
max_duration = "1h"
escalation = { after = "1s", groups = ["leads"] }

[[workflow]]
resource = "app-db"
action = "read"
requesters = ["dev"]
auto_approve = true
max_duration = "1h"
providers = ["hook"]

[[workflow]]
resource = "github:example/app/production"
action = "deploy"
requesters = ["ci"]
steps = [{ group = "sre", approvals = 1 }]
action_bound = true
single_use = true
max_duration = "1h"
"#;

/// A GitHub environment in the catalog: the App files deployments to it (github.rs).
const GITHUB_ENVIRONMENT: &str = r#"
[[resource]]
name = "github:example/app/production"
kind = "github-environment"
owners = ["sre"]
"#;

/// What the comment of an expected event must be.
enum Comment {
    Absent,
    Is(String),
    StartsWith(String),
    /// Starts with the first, and holds each of the others.
    Holds(String, Vec<String>),
}

/// One expected event. `request_id`, `grant_id` and `comment` must be absent unless given.
struct Want {
    kind: &'static str,
    actor: String,
    subject: String,
    resource: String,
    action: String,
    request_id: Option<String>,
    grant_id: Option<String>,
    comment: Comment,
}

fn want(kind: &'static str, actor: &str, subject: &str, resource: &str, action: &str) -> Want {
    Want {
        kind,
        actor: actor.into(),
        subject: subject.into(),
        resource: resource.into(),
        action: action.into(),
        request_id: None,
        grant_id: None,
        comment: Comment::Absent,
    }
}

impl Want {
    fn request(mut self, id: &str) -> Self {
        self.request_id = Some(id.into());
        self
    }

    fn grant(mut self, id: &str) -> Self {
        self.grant_id = Some(id.into());
        self
    }

    fn comment(mut self, text: &str) -> Self {
        self.comment = Comment::Is(text.into());
        self
    }

    fn comment_starting(mut self, text: &str) -> Self {
        self.comment = Comment::StartsWith(text.into());
        self
    }

    fn comment_holding(mut self, start: &str, parts: &[&str]) -> Self {
        self.comment = Comment::Holds(start.into(), parts.iter().map(|p| p.to_string()).collect());
        self
    }

    fn assert_matches(&self, step: &str, e: &Value) {
        let field = |name: &str| e[name].as_str().map(str::to_string);
        let got = (
            field("kind"),
            field("actor"),
            field("subject"),
            field("resource"),
            field("action"),
            field("request_id"),
            field("grant_id"),
        );
        let expected = (
            Some(self.kind.to_string()),
            Some(self.actor.clone()),
            Some(self.subject.clone()),
            Some(self.resource.clone()),
            Some(self.action.clone()),
            self.request_id.clone(),
            self.grant_id.clone(),
        );
        assert_eq!(
            got, expected,
            "{step}: (kind, actor, subject, resource, action, request_id, grant_id) of {e}"
        );
        let comment = e["comment"].as_str();
        let ok = match (&self.comment, comment) {
            (Comment::Absent, None) => true,
            (Comment::Is(want), Some(c)) => c == want,
            (Comment::StartsWith(start), Some(c)) => c.starts_with(start.as_str()),
            (Comment::Holds(start, parts), Some(c)) => {
                c.starts_with(start.as_str()) && parts.iter().all(|p| c.contains(p.as_str()))
            }
            _ => false,
        };
        let expected = match &self.comment {
            Comment::Absent => "no comment".to_string(),
            Comment::Is(c) => format!("comment {c:?}"),
            Comment::StartsWith(c) => format!("a comment starting {c:?}"),
            Comment::Holds(c, parts) => format!("a comment starting {c:?} and holding {parts:?}"),
        };
        assert!(ok, "{step}: {} should have {expected}: {e}", self.kind);
    }
}

/// The audit log as this test has read it so far.
struct Log<'a> {
    s: &'a Server,
    /// The last event seen.
    seen: i64,
    kinds: BTreeSet<String>,
    started: Instant,
}

impl<'a> Log<'a> {
    fn new(s: &'a Server) -> Log<'a> {
        Log {
            s,
            seen: 0,
            kinds: BTreeSet::new(),
            started: Instant::now(),
        }
    }

    fn unseen(&self) -> Vec<Value> {
        let (status, v) = self
            .s
            .get(&format!("/v1/audit?after={}&limit=5000", self.seen), "demo-auditor");
        assert_eq!(status, 200, "{v}");
        v["items"].as_array().unwrap().clone()
    }

    /// Wait for as many new events as `wants` has; the first that many must be exactly
    /// those, in that order. Events past them are left for the next step: a timed transition
    /// (a 1 s lapse or escalation) can land before this step's read on a loaded machine, and
    /// it is then checked, in order, by the step that names it. The final check that no
    /// event is left over still catches anything no step explains.
    fn expect(&mut self, step: &str, wants: &[Want]) -> Vec<Value> {
        let mut got = Vec::new();
        wait_until(step, || {
            got = self.unseen();
            got.len() >= wants.len()
        });
        got.truncate(wants.len());
        let kinds: Vec<&str> = got.iter().map(|e| e["kind"].as_str().unwrap()).collect();
        let wanted: Vec<&str> = wants.iter().map(|w| w.kind).collect();
        assert_eq!(kinds, wanted, "{step}: the new events: {got:#?}");
        for (e, w) in got.iter().zip(wants) {
            self.seen += 1;
            assert_eq!(e["seq"], self.seen, "{step}: the log has no gaps: {e}");
            w.assert_matches(step, e);
            self.kinds.insert(w.kind.to_string());
        }
        eprintln!("{:>6} ms  {step}: {wanted:?}", self.started.elapsed().as_millis());
        got
    }
}

fn post_ok(s: &Server, path: &str, token: &str, body: Value) -> Value {
    let (status, v) = s.post(path, token, body);
    assert!(status == 200 || status == 201, "{path}: {status} {v}");
    v
}

fn grant_id(v: &Value) -> String {
    v["grant"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no grant: {v}"))
        .to_string()
}

fn time(v: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
        .unwrap()
        .with_timezone(&chrono::Utc)
}

/// Replace a policy file at once, so the reloader never sees it half written.
fn replace(path: &Path, text: &str) {
    let staged = path.with_extension("staged");
    std::fs::write(&staged, text).unwrap();
    std::fs::rename(&staged, path).unwrap();
}

#[test]
fn every_transition_records_its_event() {
    let policy = quickstart_with_workflows(WORKFLOWS);
    let directory = policy.path().join("directory.toml");
    let mut people = std::fs::read_to_string(&directory).unwrap();
    people.push_str("\n[[principal]]\nname = \"lena\"\ngroups = [\"leads\"]\ntoken = \"demo-lena\"\n");
    std::fs::write(&directory, people).unwrap();
    let resources = policy.path().join("resources.toml");
    let mut catalog = std::fs::read_to_string(&resources).unwrap();
    catalog.push_str(GITHUB_ENVIRONMENT);
    std::fs::write(&resources, catalog).unwrap();
    let dir = policy.path().display().to_string();

    let hook = receiver();
    let config = format!(
        "[notify]\nremind_before = \"3s\"\n\n[audit]\ndenied_checks_every = \"1s\"\n\n\
         [[providers]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}\"\nsecret = \"{HOOK_SECRET}\"\ntimeout = \"2s\"\n",
        hook.url
    );
    // GitHub's REST API, as the stand-in plays it (github.rs): the App answers deployments there.
    let github = GitHub::start();
    let config = format!("{config}\n{}", github_config(&github, ""));
    let s = Server::start_with_env(policy.path(), Some(&config), &[(SECRET_ENV, SECRET)]);
    let mut log = Log::new(&s);

    // Start: the first signing key, the SSH CA, and the policy that serves.
    let (status, ca) = s.get("/v1/ssh/ca.pub", "");
    assert_eq!(status, 200, "{ca}");
    let ca = ca.as_str().unwrap().trim().to_string();
    log.expect(
        "start",
        &[
            want("key.rotated", "system", "system", "jitgate:signing-keys", "rotate")
                .comment_starting("new signing key "),
            want("ssh.ca_created", "system", "system", "jitgate:ssh-ca", "create").comment(&ca),
            want("policy.loaded", "system", "", "", "")
                .comment_starting(&format!("{dir}: 14 workflows, 10 principals, ")),
        ],
    );

    // request.filed, then two approvals: request.approval twice, request.approved and
    // grant.issued with the second.
    let r = s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "write", "duration": "10m", "reason": "OPS-42 fix data"}),
    );
    let write_rid = id(&r);
    let on_write = |kind, actor: &str| want(kind, actor, "alice", "prod-db", "write").request(&write_rid);
    log.expect(
        "file a request needing two approvals",
        &[on_write("request.filed", "alice").comment("OPS-42 fix data")],
    );
    let once = post_ok(
        &s,
        &format!("/v1/requests/{write_rid}/approve"),
        "demo-bob",
        json!({"comment": "looks right"}),
    );
    assert_eq!(once["status"], "pending", "{once}");
    log.expect(
        "the first approval",
        &[on_write("request.approval", "bob").comment("looks right")],
    );
    let twice = post_ok(
        &s,
        &format!("/v1/requests/{write_rid}/approve"),
        "demo-carol",
        json!({"comment": "agreed"}),
    );
    assert_eq!(twice["status"], "approved", "{twice}");
    let write_gid = grant_id(&twice);
    log.expect(
        "the second approval",
        &[
            on_write("request.approval", "carol").comment("agreed"),
            on_write("request.approved", "carol").grant(&write_gid),
            on_write("grant.issued", "system").grant(&write_gid),
        ],
    );

    // grant.revoked: a reviewer ends it, saying why.
    post_ok(
        &s,
        &format!("/v1/grants/{write_gid}/revoke"),
        "demo-bob",
        json!({"comment": "data fixed"}),
    );
    log.expect(
        "revoke",
        &[on_write("grant.revoked", "bob").grant(&write_gid).comment("data fixed")],
    );

    // request.denied.
    let rid = id(&s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "read", "reason": "INC-1 look around"}),
    ));
    let on_read = |kind, actor: &str| want(kind, actor, "alice", "prod-db", "read").request(&rid);
    log.expect(
        "file a request to deny",
        &[on_read("request.filed", "alice").comment("INC-1 look around")],
    );
    post_ok(
        &s,
        &format!("/v1/requests/{rid}/deny"),
        "demo-carol",
        json!({"comment": "use staging"}),
    );
    log.expect("deny", &[on_read("request.denied", "carol").comment("use staging")]);

    // request.cancelled.
    let rid = id(&s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "read", "reason": "INC-2 look again"}),
    ));
    let on_read = |kind, actor: &str| want(kind, actor, "alice", "prod-db", "read").request(&rid);
    log.expect(
        "file a request to cancel",
        &[on_read("request.filed", "alice").comment("INC-2 look again")],
    );
    post_ok(&s, &format!("/v1/requests/{rid}/cancel"), "demo-alice", json!({}));
    log.expect("cancel", &[on_read("request.cancelled", "alice")]);

    // request.expired: nobody decides within the workflow's pending_ttl (1s).
    let rid = id(&s.file(
        "demo-alice",
        json!({"resource": "legacy-db", "action": "read", "reason": "old report"}),
    ));
    let on_legacy = |kind, actor: &str| want(kind, actor, "alice", "legacy-db", "read").request(&rid);
    log.expect(
        "file a request nobody decides",
        &[on_legacy("request.filed", "alice").comment("old report")],
    );
    log.expect("the request lapses", &[on_legacy("request.expired", "system")]);
    let (_, lapsed) = s.get(&format!("/v1/requests/{rid}"), "demo-alice");
    assert_eq!(lapsed["status"], "expired", "{lapsed}");

    // request.escalated: undecided for a second, the leads are called in; one approves.
    let rid = id(&s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "migrate", "reason": "OPS-9 add index"}),
    ));
    let on_migrate = |kind, actor: &str| want(kind, actor, "alice", "prod-db", "migrate").request(&rid);
    log.expect(
        "file a request that escalates",
        &[on_migrate("request.filed", "alice").comment("OPS-9 add index")],
    );
    log.expect(
        "escalation",
        &[on_migrate("request.escalated", "system").comment("nobody decided in time; backup reviewers: leads")],
    );
    let approved = post_ok(
        &s,
        &format!("/v1/requests/{rid}/approve"),
        "demo-lena",
        json!({"comment": "as backup"}),
    );
    let gid = grant_id(&approved);
    log.expect(
        "a backup reviewer approves",
        &[
            on_migrate("request.approval", "lena").comment("as backup"),
            on_migrate("request.approved", "lena").grant(&gid),
            on_migrate("grant.issued", "system").grant(&gid),
        ],
    );

    // An automatic request: filed, approved and issued at once; then grant.extended, then
    // grant.done with its outcome.
    let r = s.file(
        "demo-alice",
        json!({"resource": "staging-db", "action": "read", "duration": "1h", "reason": "migration"}),
    );
    let (rid, gid) = (id(&r), grant_id(&r));
    let on_staging = |kind, actor: &str| {
        want(kind, actor, "alice", "staging-db", "read")
            .request(&rid)
            .grant(&gid)
    };
    log.expect(
        "an automatic request",
        &[
            want("request.filed", "alice", "alice", "staging-db", "read")
                .request(&rid)
                .comment("migration"),
            // Nobody reviewed it: the event names what in the policy approved it (issue #19).
            on_staging("request.approved", "system")
                .comment("automatic: workflow staging-db read (auto_approve = true in workflows.toml)"),
            on_staging("grant.issued", "system"),
        ],
    );
    let extended = post_ok(
        &s,
        &format!("/v1/grants/{gid}/extend"),
        "demo-alice",
        json!({"duration": "30m", "reason": "migration runs long"}),
    );
    let until = time(&extended["expires_at"]).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    log.expect(
        "extend",
        &[on_staging("grant.extended", "alice").comment(&format!("by 30m until {until}: migration runs long"))],
    );
    post_ok(
        &s,
        &format!("/v1/grants/{gid}/done"),
        "demo-alice",
        json!({"exit_code": 0, "duration_ms": 1234, "comment": "migrated"}),
    );
    log.expect(
        "done",
        &[on_staging("grant.done", "alice").comment("exit 0 after 1.234 s: migrated")],
    );

    // grant.used: a single-use, action-bound grant consumed by its one check.
    let payload = "deploy api v1.2.3";
    let rid = id(&s.file(
        "demo-alice",
        json!({"resource": "prod-api", "action": "deploy", "reason": "release 1.2.3", "payload": payload}),
    ));
    let on_deploy = |kind, actor: &str| want(kind, actor, "alice", "prod-api", "deploy").request(&rid);
    log.expect(
        "file a single-use request",
        &[on_deploy("request.filed", "alice").comment("release 1.2.3")],
    );
    let gid = grant_id(&post_ok(
        &s,
        &format!("/v1/requests/{rid}/approve"),
        "demo-bob",
        json!({}),
    ));
    log.expect(
        "approve it",
        &[
            on_deploy("request.approval", "bob"),
            on_deploy("request.approved", "bob").grant(&gid),
            on_deploy("grant.issued", "system").grant(&gid),
        ],
    );
    let answer = s.check("alice", "prod-api", "deploy", Some(payload));
    assert_eq!(answer["allow"], true, "{answer}");
    log.expect("the one check", &[on_deploy("grant.used", "svc-api").grant(&gid)]);

    // grant.ssh_certificate.
    let rid = id(&s.file(
        "demo-alice",
        json!({"resource": "bastion", "action": "login", "duration": "30m", "reason": "INC-5 check logs"}),
    ));
    let on_bastion = |kind, actor: &str| want(kind, actor, "alice", "bastion", "login").request(&rid);
    log.expect(
        "file an SSH request",
        &[on_bastion("request.filed", "alice").comment("INC-5 check logs")],
    );
    let approved = post_ok(
        &s,
        &format!("/v1/requests/{rid}/approve"),
        "demo-bob",
        json!({"comment": "ok"}),
    );
    let gid = grant_id(&approved);
    let starts = time(&approved["grant"]["starts_at"]);
    let window = format!(
        "valid {} to {} for principal alice (the certificate from {}: hosts' clocks may lag 60 s)",
        starts.to_rfc3339(),
        time(&approved["grant"]["expires_at"]).to_rfc3339(),
        (starts - chrono::Duration::seconds(60)).to_rfc3339()
    );
    log.expect(
        "approve it",
        &[
            on_bastion("request.approval", "bob").comment("ok"),
            on_bastion("request.approved", "bob").grant(&gid),
            on_bastion("grant.issued", "system").grant(&gid),
        ],
    );
    let cert = post_ok(
        &s,
        &format!("/v1/grants/{gid}/ssh-cert"),
        "demo-alice",
        json!({"public_key": SSH_KEY}),
    );
    assert!(
        cert["certificate"]
            .as_str()
            .unwrap()
            .starts_with("ssh-ed25519-cert-v01@openssh.com "),
        "{cert}"
    );
    log.expect(
        "an SSH certificate",
        &[on_bastion("grant.ssh_certificate", "alice")
            .grant(&gid)
            .comment(&window)],
    );

    // breakglass.raised, then breakglass.reviewed.
    let r = s.file(
        "demo-bob",
        json!({"resource": "prod-db", "action": "write", "duration": "5m", "reason": "INC-99 outage", "break_glass": true}),
    );
    let (rid, gid) = (id(&r), grant_id(&r));
    let on_glass = |kind, actor: &str| want(kind, actor, "bob", "prod-db", "write").request(&rid);
    log.expect(
        "break the glass",
        &[
            on_glass("request.filed", "bob").comment("INC-99 outage"),
            on_glass("breakglass.raised", "bob")
                .grant(&gid)
                .comment("BREAK-GLASS on prod-db write: INC-99 outage"),
            on_glass("request.approved", "system")
                .grant(&gid)
                .comment("break-glass: workflow prod-db write (break_glass.groups in workflows.toml)"),
            on_glass("grant.issued", "system").grant(&gid),
        ],
    );
    post_ok(
        &s,
        &format!("/v1/requests/{rid}/review"),
        "demo-carol",
        json!({"comment": "justified by INC-99"}),
    );
    log.expect(
        "review the break-glass access",
        &[on_glass("breakglass.reviewed", "carol")
            .grant(&gid)
            .comment("justified by INC-99")],
    );

    // grant.expiring, then grant.expired: a 7-second grant, reminded 3 seconds ahead (a
    // window wide enough for a worker delayed by a loaded machine; only grants longer than
    // twice the lead are reminded, and every other grant here lasts minutes).
    let r = s.file(
        "demo-alice",
        json!({"resource": "staging-db", "action": "read", "duration": "7s", "reason": "quick look"}),
    );
    let (rid, gid) = (id(&r), grant_id(&r));
    let ends = time(&r["grant"]["expires_at"]);
    let on_short = |kind, actor: &str| {
        want(kind, actor, "alice", "staging-db", "read")
            .request(&rid)
            .grant(&gid)
    };
    log.expect(
        "a short grant",
        &[
            want("request.filed", "alice", "alice", "staging-db", "read")
                .request(&rid)
                .comment("quick look"),
            on_short("request.approved", "system")
                .comment("automatic: workflow staging-db read (auto_approve = true in workflows.toml)"),
            on_short("grant.issued", "system"),
        ],
    );
    let reminded = log.expect(
        "the reminder",
        &[on_short("grant.expiring", "system").comment_starting("ends at ")],
    );
    let said = reminded[0]["comment"].as_str().unwrap().trim_start_matches("ends at ");
    assert_eq!(time(&json!(said)), ends, "the reminder names the end");
    assert!(
        time(&reminded[0]["at"]) < ends,
        "reminded before the end: {}",
        reminded[0]
    );
    let expired = log.expect("the grant ends", &[on_short("grant.expired", "system")]);
    assert!(time(&expired[0]["at"]) >= ends, "{}", expired[0]);

    // grant.provisioned, then grant.deprovision_failed and grant.deprovisioned: a webhook
    // provider makes the grant real, then fails to remove it three times before it does.
    let r = s.file(
        "demo-alice",
        json!({"resource": "app-db", "action": "read", "duration": "1h", "reason": "report"}),
    );
    let (rid, gid) = (id(&r), grant_id(&r));
    let on_app = |kind, actor: &str| want(kind, actor, "alice", "app-db", "read").request(&rid).grant(&gid);
    log.expect(
        "a provisioned grant",
        &[
            want("request.filed", "alice", "alice", "app-db", "read")
                .request(&rid)
                .comment("report"),
            on_app("request.approved", "system")
                .comment("automatic: workflow app-db read (auto_approve = true in workflows.toml)"),
            on_app("grant.issued", "system"),
            on_app("grant.provisioned", "system").comment("provider hook: delivered after 1 attempt(s)"),
        ],
    );
    hook.fail.store(3, Ordering::SeqCst);
    post_ok(
        &s,
        &format!("/v1/grants/{gid}/revoke"),
        "demo-alice",
        json!({"comment": "report done"}),
    );
    log.expect(
        "revoke a provisioned grant while its provider fails",
        &[
            on_app("grant.revoked", "alice").comment("report done"),
            on_app("grant.deprovision_failed", "system").comment_holding("provider hook: ", &["500"]),
            on_app("grant.deprovisioned", "system").comment("provider hook: delivered after 4 attempt(s)"),
        ],
    );
    assert_eq!(hook.fail.load(Ordering::SeqCst), 0, "every failure was used");

    // check.denied: counted over the window, recorded once it closes.
    let denied = s.check("dave", "prod-db", "write", None);
    assert_eq!(denied["allow"], false, "{denied}");
    let reason = denied["reason"].as_str().unwrap();
    log.expect(
        "a denied check",
        &[want("check.denied", "svc-api", "dave", "prod-db", "write")
            .comment_holding("1 denied from ", &[&format!(": {reason}")])],
    );

    // token.created, token.revoked.
    let token = post_ok(
        &s,
        "/v1/tokens",
        "demo-admin",
        json!({"principal": "frank", "label": "laptop"}),
    );
    let token_id = id(&token);
    let about_token = format!("token {token_id} (laptop)");
    log.expect(
        "create a token",
        &[want("token.created", "admin", "frank", "jitgate:tokens", "create").comment(&about_token)],
    );
    post_ok(&s, &format!("/v1/tokens/{token_id}/revoke"), "demo-admin", json!({}));
    log.expect(
        "revoke the token",
        &[want("token.revoked", "admin", "frank", "jitgate:tokens", "revoke").comment(&about_token)],
    );

    // scim.*: a provisioning client creates a user and puts them in sre; they approve a
    // request; the client changes them, deactivates them (their approval of the still pending
    // request is withdrawn and their token revoked, in the same write), reactivates and
    // deletes them, and changes and deletes the group.
    let made = post_ok(
        &s,
        "/v1/tokens",
        "demo-admin",
        json!({"principal": "scim-okta", "scim": true}),
    );
    let scim = made["token"].as_str().unwrap().to_string();
    log.expect(
        "create a provisioning token",
        &[want("token.created", "admin", "scim-okta", "jitgate:tokens", "create")
            .comment_starting(&format!("token {}", id(&made)))],
    );
    let scim_call = |method: &str, path: &str, body: Option<Value>| {
        let (status, answer) = s.call(method, &format!("/scim/v2{path}"), &scim, body);
        assert!((200..300).contains(&status), "{method} {path}: {status} {answer}");
        answer
    };
    let user = scim_call(
        "POST",
        "/Users",
        Some(json!({"schemas": [SCIM_USER], "userName": "sam", "active": true})),
    );
    let uid = id(&user);
    let on_user = |kind, comment: &str| {
        want(
            kind,
            "scim-okta",
            "sam",
            &format!("scim:Users/{uid}"),
            kind.trim_start_matches("scim."),
        )
        .comment_starting(comment)
    };
    log.expect("provision a user", &[on_user("scim.user_created", "userName sam")]);
    let group = scim_call(
        "POST",
        "/Groups",
        Some(json!({"schemas": [SCIM_GROUP], "displayName": "sre", "members": [{"value": uid}]})),
    );
    let gid = id(&group);
    let on_group = |kind, comment: &str| {
        want(
            kind,
            "scim-okta",
            "sre",
            &format!("scim:Groups/{gid}"),
            kind.trim_start_matches("scim."),
        )
        .comment(&format!("{comment} (by scim-okta)"))
    };
    log.expect(
        "provision a group",
        &[on_group("scim.group_created", "displayName sre; members +sam")],
    );
    let sam = post_ok(&s, "/v1/tokens", "demo-admin", json!({"principal": "sam"}));
    let sam_token = sam["token"].as_str().unwrap().to_string();
    let about_sam_token = format!("token {}", id(&sam));
    log.expect(
        "a token for the provisioned user",
        &[want("token.created", "admin", "sam", "jitgate:tokens", "create").comment_starting(&about_sam_token)],
    );
    let r = s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "write", "duration": "10m", "reason": "OPS-77 move rows"}),
    );
    let pending_rid = id(&r);
    let on_pending = |kind, actor: &str| want(kind, actor, "alice", "prod-db", "write").request(&pending_rid);
    log.expect(
        "file a request a provisioned reviewer approves",
        &[on_pending("request.filed", "alice").comment("OPS-77 move rows")],
    );
    post_ok(
        &s,
        &format!("/v1/requests/{pending_rid}/approve"),
        &sam_token,
        json!({"comment": "fine by me"}),
    );
    log.expect(
        "the provisioned reviewer's approval",
        &[on_pending("request.approval", "sam").comment("fine by me")],
    );
    let patch = |ops: Value| json!({"schemas": [SCIM_PATCH], "Operations": ops});
    scim_call(
        "PATCH",
        &format!("/Users/{uid}"),
        Some(patch(
            json!([{"op": "replace", "path": "displayName", "value": "Sam Reviewer"}]),
        )),
    );
    log.expect("change the user", &[on_user("scim.user_updated", "")]);
    scim_call(
        "PATCH",
        &format!("/Users/{uid}"),
        Some(patch(json!([{"op": "replace", "value": {"active": false}}]))),
    );
    log.expect(
        "deactivate the user",
        &[
            on_user("scim.user_deactivated", "active false"),
            want("token.revoked", "scim-okta", "sam", "jitgate:tokens", "revoke").comment_starting(&about_sam_token),
            on_pending("request.approval_withdrawn", "scim-okta").comment_starting(
                "the approval of sam no longer counts: sam was deactivated in the directory by scim-okta",
            ),
        ],
    );
    let (_, still) = s.get(&format!("/v1/requests/{pending_rid}"), "demo-alice");
    assert_eq!(still["status"], "pending", "{still}");
    assert_eq!(still["approvals"], json!([]), "{still}");
    scim_call(
        "PATCH",
        &format!("/Users/{uid}"),
        Some(patch(json!([{"op": "Replace", "path": "active", "value": "True"}]))),
    );
    log.expect(
        "reactivate the user",
        &[on_user("scim.user_reactivated", "active true")],
    );
    scim_call(
        "PATCH",
        &format!("/Groups/{gid}"),
        Some(patch(
            json!([{"op": "remove", "path": format!("members[value eq \"{uid}\"]")}]),
        )),
    );
    log.expect(
        "a member leaves the group",
        &[on_group("scim.group_updated", "members -sam")],
    );
    scim_call("DELETE", &format!("/Users/{uid}"), None);
    log.expect("delete the user", &[on_user("scim.user_deleted", "userName sam")]);
    scim_call("DELETE", &format!("/Groups/{gid}"), None);
    log.expect("delete the group", &[on_group("scim.group_deleted", "displayName sre")]);
    post_ok(
        &s,
        &format!("/v1/requests/{pending_rid}/cancel"),
        "demo-alice",
        json!({}),
    );
    log.expect("cancel the request", &[on_pending("request.cancelled", "alice")]);

    // github.deployment_answered and github.deployment_reported: a GitHub deployment waits
    // for an sre; once approved, jitgate uses the grant, decides what to tell GitHub, and
    // records GitHub's acceptance of the callback.
    let commit = "4f2a6c1e9b0d3a5f7c8e1b2d4a6c8e0f1a3b5c7d";
    let d = delivery(
        "deployment_protection_rule",
        json!({"environment": "production", "run_id": 77, "sha": commit, "sender": "octocat"}),
    );
    let (status, outcome) = post_webhook(
        &s,
        Some(&d.event),
        Some(&d.delivery),
        Some(&d.signature),
        d.body.as_bytes(),
    );
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["status"], "pending", "{outcome}");
    let deploy_rid = outcome["request_id"].as_str().unwrap().to_string();
    let on_github = |kind, actor: &str| {
        want(kind, actor, "ci:example/app", "github:example/app/production", "deploy").request(&deploy_rid)
    };
    log.expect(
        "GitHub asks before a deployment",
        &[on_github("request.filed", "ci:example/app").comment_starting("GitHub deployment of 4f2a6c1e9b0d")],
    );
    let approved = post_ok(
        &s,
        &format!("/v1/requests/{deploy_rid}/approve"),
        "demo-bob",
        json!({"comment": "ship it"}),
    );
    let deploy_gid = grant_id(&approved);
    log.expect(
        "approve the deployment; jitgate tells GitHub",
        &[
            on_github("request.approval", "bob").comment("ship it"),
            on_github("request.approved", "bob").grant(&deploy_gid),
            on_github("grant.issued", "system").grant(&deploy_gid),
            on_github("grant.used", "jitgate:github").grant(&deploy_gid),
            on_github("github.deployment_answered", "bob")
                .grant(&deploy_gid)
                .comment_starting("approved: "),
            on_github("github.deployment_reported", "system")
                .grant(&deploy_gid)
                .comment_starting("approved after 1 attempt"),
        ],
    );
    assert_eq!(github.answer(77)["state"], "approved");
    github.assert_all_valid();

    // key.rotated.
    let rotated = post_ok(&s, "/v1/keys/rotate", "demo-admin", json!({}));
    let kid = rotated["kid"].as_str().unwrap();
    log.expect(
        "rotate the signing key",
        &[want("key.rotated", "admin", "admin", "jitgate:signing-keys", "rotate")
            .comment_starting(&format!("new signing key {kid} "))],
    );

    // policy.refused, then policy.loaded: a broken edit is refused, the repair serves.
    let workflows = policy.path().join("workflows.toml");
    let good = std::fs::read_to_string(&workflows).unwrap();
    replace(&workflows, &good.replace("[[workflow]]", "[[workflow]\n"));
    log.expect(
        "a broken policy edit",
        &[want("policy.refused", "system", "", "", "").comment_holding(&format!("{dir}: "), &["workflows.toml"])],
    );
    replace(&workflows, &good);
    log.expect(
        "the policy repaired",
        &[want("policy.loaded", "system", "", "", "")
            .comment_starting(&format!("{dir}: 14 workflows, 10 principals, "))],
    );

    // Nothing else happens after the last step (a denied-check window and a few worker ticks
    // later), and the log verifies.
    std::thread::sleep(Duration::from_millis(1500));
    let stray = log.unseen();
    assert!(stray.is_empty(), "events no step caused: {stray:#?}");
    let (_, verify) = s.get("/v1/audit/verify", "demo-auditor");
    assert_eq!(verify["ok"], true, "{verify}");
    assert_eq!(verify["events"], log.seen, "{verify}");

    // Every kind the product knows was seen, but the two other tests cover.
    for elsewhere in COVERED_ELSEWHERE {
        assert!(!log.kinds.contains(elsewhere), "{elsewhere} is walked here after all");
    }
    let mut covered = log.kinds.clone();
    covered.extend(COVERED_ELSEWHERE.iter().map(|k| k.to_string()));
    let all: BTreeSet<String> = EventKind::ALL.iter().map(|k| k.as_str().to_string()).collect();
    assert_eq!(
        covered,
        all,
        "not walked: {:?}; unknown: {:?}",
        all.difference(&covered).collect::<Vec<_>>(),
        covered.difference(&all).collect::<Vec<_>>()
    );
    eprintln!(
        "all {} transitions walked in {:?}",
        log.kinds.len(),
        log.started.elapsed()
    );
}
