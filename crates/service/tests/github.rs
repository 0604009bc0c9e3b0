//! jitgate as a GitHub App (issue #26), through the service on a real SQLite store: signed
//! deliveries file requests for deployments and `/jitgate` comments decide them; the worker
//! answers GitHub once, whatever crashes or runs twice.
//!
//! GitHub's REST API is a recording test double here (unit level: what the service queues
//! and makes); the end-to-end tests (crates/edges/cli/tests/end_to_end/github.rs) call the
//! OpenAPI-checking stand-in instead.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use jitgate_core::github::{
    CallPurpose, DeploymentAnswer, DeploymentState, GithubCall, GithubDeployment, NewGithubCall,
};
use jitgate_core::{EventKind, GrantStatus, Identity, RequestStatus};
use jitgate_service::auth::{caller_for, config::AuthConfig, op, Authenticator};
use jitgate_service::connectors::{Failure, GithubApi};
use jitgate_service::github::{worker, GithubSettings, WebhookDelivery, WebhookOutcome};
use jitgate_service::{App, ServiceError};
use jitgate_store::{AuditFilter, Store};
use parking_lot::Mutex;
use serde_json::{json, Value};
use sha2::Sha256;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[path = "support/offline.rs"]
mod offline;

const SECRET: &str = "It's a Secret to Everybody";
const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

const DIRECTORY: &str = r#"
[groups]
provisioned = ["sre"]

[[principal]]
name = "root"
groups = ["admins"]

[[principal]]
name = "alice"
groups = ["dev"]

[[principal]]
name = "bob"
groups = ["sre"]

[[principal]]
name = "carol"
groups = ["sre"]

# Makes the group `ci` known: deployments file as `ci:OWNER/REPO` in it.
[[principal]]
name = "ci:example/seed"
groups = ["ci"]
"#;

/// GitHub logins of directory.toml's people (`github_user`, compared ignoring ASCII case).
const GITHUB_USERS: [(&str, &str); 2] = [("alice", "alice-gh"), ("bob", "Bob-GH")];

const WORKFLOWS: &str = r#"
[[workflow]]
resources = { kind = "github-environment" }
actions = ["deploy"]
requesters = ["ci"]
steps = [{ group = "sre", approvals = 1 }]
action_bound = true
single_use = true

[[workflow]]
resource = "github:example/app/qa"
action = "deploy"
requesters = ["ci"]
steps = [{ group = "sre", approvals = 1 }]
action_bound = true
pending_ttl = "1s"
"#;

const RESOURCES: &str = r#"
[[resource]]
name = "github:example/app/production"
kind = "github-environment"

[[resource]]
name = "github:example/app/staging"
kind = "github-environment"

[[resource]]
name = "github:example/app/qa"
kind = "github-environment"

[[resource]]
name = "github:example/other/production"
kind = "github-environment"

[[resource]]
name = "github:example/app/ledger"
kind = "database"
"#;

const CEDAR: &str = r#"
@id("main-deploys-to-staging")
permit(principal in Group::"ci", action == Action::"auto_approve", resource == Resource::"github:example/app/staging")
when {
  context.access == "deploy" &&
  context has ci && context.ci.repository == "example/app" && context.ci.ref == "main"
};
"#;

/// GitHub's REST API as a recording double: every call made, and what to answer.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<NewGithubCall>>,
    /// `Some(retry)`: fail every call (`true`: Retry, `false`: Refused).
    failing: Mutex<Option<bool>>,
}

#[async_trait]
impl GithubApi for Recorder {
    async fn call(&self, call: &NewGithubCall) -> Result<Option<Value>, Failure> {
        match *self.failing.lock() {
            Some(true) => return Err(Failure::Retry("503 from GitHub".into())),
            Some(false) => return Err(Failure::Refused("422: the run is not waiting".into())),
            None => {}
        }
        self.calls.lock().push(call.clone());
        Ok(None)
    }
}

impl Recorder {
    fn made(&self, purpose: CallPurpose) -> Vec<NewGithubCall> {
        self.calls
            .lock()
            .iter()
            .filter(|c| c.purpose == purpose)
            .cloned()
            .collect()
    }
}

struct Bed {
    app: Arc<App>,
    api: Arc<Recorder>,
    _dir: Arc<tempfile::TempDir>,
}

fn settings() -> GithubSettings {
    GithubSettings {
        webhook_secret: SECRET.as_bytes().to_vec(),
        api_url: "https://api.github.com".into(),
        requester_groups: vec!["ci".into()],
        allowed_owners: Some(vec!["example".into()]),
        announce: true,
        scim_login_attribute: None,
    }
}

async fn bed() -> Bed {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let store = jitgate_store::open(&format!("sqlite://{}", dir.path().join("jitgate.db").display()))
        .await
        .unwrap();
    bed_on(store, dir, 1).await
}

/// A bed whose directory.toml links alice and bob to GitHub logins.
async fn linked_bed() -> Bed {
    let bed = bed().await;
    bed.app.replace_policy(policy_with(true));
    bed
}

/// The reply of a `/jitgate` command that was refused (not carried out).
fn refusal_reply(outcome: &WebhookOutcome) -> &str {
    let WebhookOutcome::Command { done, reply, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(!done, "{reply}");
    reply
}

/// The policy, with `github_user` given to directory.toml's people when `linked`.
fn policy_with(linked: bool) -> jitgate_policy::Policy {
    policy_linking(if linked { &GITHUB_USERS[..] } else { &[] })
}

/// The policy, with `github_user` given to the principals `links` names.
fn policy_linking(links: &[(&str, &str)]) -> jitgate_policy::Policy {
    let mut directory = DIRECTORY.to_string();
    for (principal, login) in links {
        let entry = format!("name = \"{principal}\"\n");
        directory = directory.replace(&entry, &format!("{entry}github_user = \"{login}\"\n"));
    }
    jitgate_policy::Policy::from_texts_with_catalog(
        &directory,
        WORKFLOWS,
        None,
        &[("github.cedar".to_string(), CEDAR.to_string())],
        &[("resources.toml".to_string(), RESOURCES.to_string())],
    )
    .unwrap_or_else(|e| panic!("{e:?}"))
}

fn policy() -> jitgate_policy::Policy {
    policy_with(false)
}

/// A replica on `store`, named by `port` (each holds its own leases).
async fn bed_on(store: Arc<dyn Store>, dir: Arc<tempfile::TempDir>, port: u16) -> Bed {
    let policy = policy();
    let authenticator = Authenticator::new(&AuthConfig::default(), Arc::new(offline::NoFetch))
        .await
        .unwrap();
    let notifier = jitgate_service::notify::Notifier::new(
        Some("https://jitgate.example"),
        None,
        format!("127.0.0.1:{port}").parse().unwrap(),
        Vec::new(),
    )
    .unwrap();
    let app = App::new(
        store,
        policy,
        authenticator,
        jitgate_service::provision::Providers::new(Vec::new()),
        notifier,
    )
    .await
    .unwrap();
    let api = Arc::new(Recorder::default());
    app.configure_github(settings(), api.clone());
    Bed {
        app: Arc::new(app),
        api,
        _dir: dir,
    }
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

static DELIVERIES: AtomicU64 = AtomicU64::new(1);

fn new_delivery_id() -> String {
    format!(
        "72d3162e-cc78-11e3-81ab-{:012}",
        DELIVERIES.fetch_add(1, Ordering::SeqCst)
    )
}

/// A `deployment_protection_rule` (`requested`) payload, shaped as GitHub sends it.
fn deployment_payload(full_name: &str, environment: &str, git_ref: &str, prs: &[i64]) -> Value {
    deployment_payload_by(full_name, environment, git_ref, prs, "octo-dev")
}

/// A deployment payload whose `sender` (who triggered it) is `sender`.
fn deployment_payload_by(full_name: &str, environment: &str, git_ref: &str, prs: &[i64], sender: &str) -> Value {
    let (owner, name) = full_name.split_once('/').unwrap();
    json!({
        "action": "requested",
        "environment": environment,
        "event": "push",
        "deployment_callback_url": format!("https://api.github.com/repos/{full_name}/actions/runs/4242/deployment_protection_rule"),
        // Each event's deployment is a new one: no two events have the same body.
        "deployment": { "id": DELIVERIES.fetch_add(1, Ordering::SeqCst), "sha": SHA, "ref": git_ref, "environment": environment, "task": "deploy" },
        "pull_requests": prs.iter().map(|n| json!({ "number": n })).collect::<Vec<_>>(),
        "repository": { "id": 7, "name": name, "full_name": full_name, "owner": { "login": owner, "type": "Organization" } },
        "organization": { "login": owner },
        "installation": { "id": 99 },
        "sender": { "login": sender, "type": "User" },
    })
}

/// An `issue_comment` (`created`) payload on pull request 7 of `full_name`.
fn comment_payload(full_name: &str, login: &str, kind: &str, body: &str) -> Value {
    comment_payload_on(full_name, login, kind, body, 7, "MEMBER")
}

/// An `issue_comment` payload on issue (or pull request) `issue`, by a commenter of this
/// `author_association`.
fn comment_payload_on(full_name: &str, login: &str, kind: &str, body: &str, issue: i64, association: &str) -> Value {
    let (owner, name) = full_name.split_once('/').unwrap();
    json!({
        "action": "created",
        "issue": { "number": issue, "pull_request": { "url": "https://api.github.com/..." } },
        "comment": {
            "id": DELIVERIES.fetch_add(1, Ordering::SeqCst),
            "body": body,
            "html_url": format!("https://github.com/{full_name}/pull/7#issuecomment-11"),
            "user": { "login": login, "type": kind },
            "author_association": association,
            "performed_via_github_app": null,
        },
        "repository": { "id": 7, "name": name, "full_name": full_name, "owner": { "login": owner } },
        "installation": { "id": 99 },
        "sender": { "login": login },
    })
}

impl Bed {
    async fn deliver_as(&self, event: &str, delivery: &str, body: &Value) -> Result<WebhookOutcome, ServiceError> {
        let body = serde_json::to_vec(body).unwrap();
        let signature = sign(SECRET, &body);
        self.app
            .github_webhook(&WebhookDelivery {
                event: Some(event),
                delivery: Some(delivery),
                signature: Some(&signature),
                body: &body,
            })
            .await
    }

    async fn deliver(&self, event: &str, body: &Value) -> Result<WebhookOutcome, ServiceError> {
        self.deliver_as(event, &new_delivery_id(), body).await
    }

    /// A deployment delivered: its request id.
    async fn deploy(&self, full_name: &str, environment: &str, git_ref: &str, prs: &[i64]) -> (String, String) {
        match self
            .deliver(
                "deployment_protection_rule",
                &deployment_payload(full_name, environment, git_ref, prs),
            )
            .await
            .unwrap()
        {
            WebhookOutcome::Filed { request_id, status } => (request_id, status),
            other => panic!("not filed: {other:?}"),
        }
    }

    /// A deployment triggered by GitHub user `sender`: its request id.
    async fn deploy_by(&self, environment: &str, prs: &[i64], sender: &str) -> String {
        let payload = deployment_payload_by("example/app", environment, "main", prs, sender);
        match self.deliver("deployment_protection_rule", &payload).await.unwrap() {
            WebhookOutcome::Filed { request_id, .. } => request_id,
            other => panic!("not filed: {other:?}"),
        }
    }

    async fn comment(&self, login: &str, body: &str) -> WebhookOutcome {
        self.deliver("issue_comment", &comment_payload("example/app", login, "User", body))
            .await
            .unwrap()
    }

    fn identity(&self, principal: &str) -> Identity {
        self.app.policy().rules().principal(principal).unwrap().identity.clone()
    }

    async fn calls(&self, request_id: &str) -> Vec<GithubCall> {
        self.app.store.github_calls(request_id).await.unwrap()
    }

    async fn events(&self, request_id: &str, kind: EventKind) -> Vec<jitgate_core::AuditEvent> {
        self.app
            .store
            .audit_events(&AuditFilter {
                request_id: Some(request_id.into()),
                kind: Some(kind.as_str().into()),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap()
    }

    /// The answer queued on the deployment's callback: (state, comment).
    async fn answered(&self, request_id: &str) -> Option<(String, String)> {
        let calls = self.calls(request_id).await;
        let callbacks: Vec<&GithubCall> = calls
            .iter()
            .filter(|c| c.call.purpose == CallPurpose::Callback)
            .collect();
        assert!(callbacks.len() <= 1, "one callback at most: {callbacks:?}");
        callbacks.first().map(|c| {
            (
                c.call.body["state"].as_str().unwrap().to_string(),
                c.call.body["comment"].as_str().unwrap().to_string(),
            )
        })
    }
}

#[tokio::test]
async fn githubs_signature_example_is_believed_and_ping_ignored() {
    let bed = bed().await;
    let signature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    let outcome = bed
        .app
        .github_webhook(&WebhookDelivery {
            event: Some("ping"),
            delivery: Some("d-1"),
            signature: Some(signature),
            body: b"Hello, World!",
        })
        .await
        .unwrap();
    assert!(matches!(outcome, WebhookOutcome::Ignored { .. }), "{outcome:?}");
}

#[tokio::test]
async fn forged_unsigned_or_wrongly_signed_deliveries_change_nothing() {
    let bed = bed().await;
    let body = serde_json::to_vec(&deployment_payload("example/app", "production", "main", &[7])).unwrap();
    let head = bed.app.store.audit_head().await.unwrap();
    let wrong_secret = sign("another secret", &body);
    let right = sign(SECRET, &body);
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    for (signature, body) in [
        (None, &body),
        (Some(wrong_secret.as_str()), &body),
        (Some(right.as_str()), &tampered),
        (Some("sha256=00"), &body),
        (Some(right.trim_start_matches("sha256=")), &body),
    ] {
        let refused = bed
            .app
            .github_webhook(&WebhookDelivery {
                event: Some("deployment_protection_rule"),
                delivery: Some("d-forged"),
                signature,
                body,
            })
            .await;
        assert!(matches!(refused, Err(ServiceError::Unauthenticated(_))), "{refused:?}");
    }
    assert_eq!(bed.app.store.audit_head().await.unwrap(), head);
    assert!(bed.app.store.github_waiting(10).await.unwrap().is_empty());
    // The delivery id was never claimed: the genuine delivery is carried out.
    let genuine = bed
        .deliver_as(
            "deployment_protection_rule",
            "d-forged",
            &deployment_payload("example/app", "production", "main", &[7]),
        )
        .await
        .unwrap();
    assert!(matches!(genuine, WebhookOutcome::Filed { .. }), "{genuine:?}");
}

#[tokio::test]
async fn github_unconfigured_is_not_found_and_headers_are_checked() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let store = jitgate_store::open(&format!("sqlite://{}", dir.path().join("jitgate.db").display()))
        .await
        .unwrap();
    let bed = bed_on(store, dir, 1).await;
    let body = b"{}";
    let signature = sign(SECRET, body);
    for (event, delivery, named) in [
        (None, Some("d"), "X-GitHub-Event"),
        (Some("push"), None, "X-GitHub-Delivery"),
        (Some("push"), Some(""), "X-GitHub-Delivery"),
        (Some("pu sh"), Some("d"), "X-GitHub-Event"),
        (Some("push"), Some("d\0"), "X-GitHub-Delivery"),
    ] {
        let refused = bed
            .app
            .github_webhook(&WebhookDelivery {
                event,
                delivery,
                signature: Some(&signature),
                body,
            })
            .await;
        match refused {
            Err(ServiceError::Invalid(m)) => assert!(m.to_string().contains(named), "{m}"),
            other => panic!("{other:?}"),
        }
    }
    let long = "d".repeat(101);
    let refused = bed
        .app
        .github_webhook(&WebhookDelivery {
            event: Some("push"),
            delivery: Some(&long),
            signature: Some(&signature),
            body,
        })
        .await;
    assert!(matches!(refused, Err(ServiceError::Invalid(_))));
    let ignored = bed
        .app
        .github_webhook(&WebhookDelivery {
            event: Some("push"),
            delivery: Some("d"),
            signature: Some(&signature),
            body,
        })
        .await
        .unwrap();
    assert!(matches!(ignored, WebhookOutcome::Ignored { .. }));

    // Without [github]: 404, whatever is sent.
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let store = jitgate_store::open(&format!("sqlite://{}", dir.path().join("jitgate.db").display()))
        .await
        .unwrap();
    let app = App::new(
        store,
        policy(),
        Authenticator::new(&AuthConfig::default(), Arc::new(offline::NoFetch))
            .await
            .unwrap(),
        jitgate_service::provision::Providers::new(Vec::new()),
        jitgate_service::notify::Notifier::new(None, None, "127.0.0.1:1".parse().unwrap(), Vec::new()).unwrap(),
    )
    .await
    .unwrap();
    let refused = app
        .github_webhook(&WebhookDelivery {
            event: Some("ping"),
            delivery: Some("d"),
            signature: Some(&signature),
            body,
        })
        .await;
    assert!(matches!(refused, Err(ServiceError::NotFound(_))), "{refused:?}");
}

#[tokio::test]
async fn a_deployment_waits_as_a_pending_request_announced_on_its_pull_requests() {
    let bed = bed().await;
    let payload = deployment_payload("example/app", "production", "main", &[7, 8, 9, 10]);
    let delivery = new_delivery_id();
    let outcome = bed
        .deliver_as("deployment_protection_rule", &delivery, &payload)
        .await
        .unwrap();
    let WebhookOutcome::Filed { request_id, status } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(status, "pending");
    let request = bed.app.store.get_request(&request_id).await.unwrap().unwrap();
    assert_eq!(request.requester, "ci:example/app");
    assert_eq!(request.resource, "github:example/app/production");
    assert_eq!(request.action, "deploy");
    assert_eq!(request.payload.as_deref(), Some(SHA));
    assert_eq!(
        request.reason,
        format!(
            "GitHub deployment of {} (main) to production, run 4242, triggered by octo-dev",
            &SHA[..12]
        )
    );
    let tracked = bed.app.store.github_deployment(&request_id).await.unwrap().unwrap();
    assert_eq!(tracked.state, DeploymentState::Waiting);
    assert_eq!(tracked.run_id, 4242);
    assert_eq!(tracked.installation_id, 99);
    assert_eq!(tracked.git_ref, "main", "as GitHub sent it");

    // A redelivery of the same event changes nothing.
    let again = bed
        .deliver_as("deployment_protection_rule", &delivery, &payload)
        .await
        .unwrap();
    assert_eq!(again, WebhookOutcome::Duplicate);
    // Nor does its signed body sent again under a fresh X-GitHub-Delivery (the headers are
    // not signed).
    let replayed = bed.deliver("deployment_protection_rule", &payload).await.unwrap();
    assert_eq!(replayed, WebhookOutcome::Duplicate);
    assert_eq!(bed.app.store.github_waiting(10).await.unwrap().len(), 1);

    // Announced on three pull requests at most, with the command and the link.
    let announced = bed.calls(&request_id).await;
    assert_eq!(announced.len(), 3, "{announced:?}");
    for (call, pr) in announced.iter().zip([7, 8, 9]) {
        assert_eq!(call.call.key, format!("announce:{request_id}:{pr}"));
        assert_eq!(call.call.path, format!("/repos/example/app/issues/{pr}/comments"));
        assert_eq!(call.call.method, "POST");
        let body = call.call.body["body"].as_str().unwrap();
        assert!(body.contains(&format!("`{SHA}`")), "{body}");
        assert!(body.contains(&format!("/jitgate approve {request_id}")), "{body}");
        assert!(
            body.contains(&format!("https://jitgate.example/ui/requests/{request_id}")),
            "{body}"
        );
        assert!(body.contains("1 from sre"), "{body}");
    }
    // Waiting: the sweep answers nothing, the calls are made.
    assert_eq!(worker::sweep(&bed.app).await.unwrap(), 0);
    assert_eq!(worker::make_calls(&bed.app).await.unwrap(), 3);
    assert_eq!(bed.api.made(CallPurpose::Comment).len(), 3);
    assert_eq!(worker::make_calls(&bed.app).await.unwrap(), 0, "made once");
    assert_eq!(bed.answered(&request_id).await, None);
}

#[tokio::test]
async fn a_deployment_the_policy_approves_is_approved_once_its_grant_is_used() {
    let bed = bed().await;
    let (request_id, status) = bed.deploy("example/app", "staging", "main", &[7]).await;
    assert_eq!(status, "approved");
    // Nothing to announce: nobody needs to act.
    assert!(bed.calls(&request_id).await.is_empty());
    assert_eq!(worker::sweep(&bed.app).await.unwrap(), 1);
    assert_eq!(worker::sweep(&bed.app).await.unwrap(), 0, "answered once");
    let (state, comment) = bed.answered(&request_id).await.unwrap();
    assert_eq!(state, "approved");
    assert!(comment.contains("approved by the policy"), "{comment}");
    let request = bed.app.store.get_request(&request_id).await.unwrap().unwrap();
    assert_eq!(request.grant.unwrap().status, GrantStatus::Used, "consumed by jitgate");
    let answered = bed.events(&request_id, EventKind::GithubDeploymentAnswered).await;
    assert_eq!(answered.len(), 1);
    assert_eq!(answered[0].event.actor, "system");
    assert_eq!(answered[0].event.subject, "ci:example/app");
    assert_eq!(answered[0].event.resource, "github:example/app/staging");
    assert!(answered[0].event.comment.as_deref().unwrap().starts_with("approved: "));

    assert_eq!(worker::make_calls(&bed.app).await.unwrap(), 1);
    let made = bed.api.made(CallPurpose::Callback);
    assert_eq!(made.len(), 1);
    assert_eq!(
        made[0].path,
        "/repos/example/app/actions/runs/4242/deployment_protection_rule"
    );
    assert_eq!(made[0].installation_id, 99);
    assert_eq!(made[0].body["environment_name"], "staging");
    assert_eq!(made[0].body["state"], "approved");
    assert!(made[0].body["comment"].as_str().unwrap().chars().count() <= 1000);
    let reported = bed.events(&request_id, EventKind::GithubDeploymentReported).await;
    assert_eq!(reported.len(), 1);
    assert_eq!(
        reported[0].event.comment.as_deref(),
        Some("approved after 1 attempt(s)")
    );

    // Another branch of the same repository waits for a reviewer.
    let (_, status) = bed.deploy("example/app", "staging", "feature", &[]).await;
    assert_eq!(status, "pending");
    // GitHub's names ignore case: the catalog's spelling is used.
    let (request_id, _) = bed.deploy("Example/App", "Production", "main", &[]).await;
    let request = bed.app.store.get_request(&request_id).await.unwrap().unwrap();
    assert_eq!(request.resource, "github:example/app/production");
    assert_eq!(request.requester, "ci:Example/App");
}

#[tokio::test]
async fn a_denied_deployment_is_rejected_with_who_and_why() {
    let bed = bed().await;
    let (request_id, _) = bed.deploy("example/app", "production", "main", &[]).await;
    let caller = caller_for::<op::DenyRequest>(bed.identity("bob")).unwrap();
    bed.app
        .deny(&caller, &request_id, Some("not during the freeze".into()))
        .await
        .unwrap();
    assert_eq!(worker::sweep(&bed.app).await.unwrap(), 1);
    let (state, comment) = bed.answered(&request_id).await.unwrap();
    assert_eq!(state, "rejected");
    assert!(comment.contains("denied by bob: not during the freeze"), "{comment}");
    let answered = bed.events(&request_id, EventKind::GithubDeploymentAnswered).await;
    assert_eq!(answered[0].event.actor, "bob");
    assert_eq!(
        answered[0].event.comment.as_deref(),
        Some("rejected: denied by bob: not during the freeze")
    );
}

#[tokio::test]
async fn a_deployment_nobody_decides_is_rejected_when_it_expires() {
    let bed = bed().await;
    let (request_id, status) = bed.deploy("example/app", "qa", "main", &[]).await;
    assert_eq!(status, "pending");
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    assert_eq!(worker::sweep(&bed.app).await.unwrap(), 1);
    let (state, comment) = bed.answered(&request_id).await.unwrap();
    assert_eq!(state, "rejected");
    assert!(comment.contains("nobody decided before it expired"), "{comment}");
}

#[tokio::test]
async fn an_approval_that_ends_before_github_is_told_rejects() {
    let bed = bed().await;
    let (request_id, _) = bed.deploy("example/app", "production", "main", &[]).await;
    let caller = caller_for::<op::ApproveRequest>(bed.identity("bob")).unwrap();
    let approved = bed.app.approve(&caller, &request_id, None).await.unwrap();
    let grant = approved.grant.unwrap();
    let admin = caller_for::<op::RevokeGrant>(bed.identity("root")).unwrap();
    bed.app
        .revoke(&admin, &grant.id, Some("wrong commit".into()))
        .await
        .unwrap();
    assert_eq!(worker::sweep(&bed.app).await.unwrap(), 1);
    let (state, comment) = bed.answered(&request_id).await.unwrap();
    assert_eq!(state, "rejected");
    assert!(
        comment.contains("the approval ended before GitHub was told"),
        "{comment}"
    );
}

#[tokio::test]
async fn a_mapped_reviewer_approves_with_a_comment() {
    let bed = linked_bed().await;
    let (request_id, _) = bed.deploy("example/app", "production", "main", &[7]).await;
    // `github_user` compares ignoring ASCII case.
    let outcome = bed
        .comment("bob-gh", &format!("/jitgate approve {request_id} ship it\r\nthanks"))
        .await;
    let WebhookOutcome::Command { done, reply, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(done, "{reply}");
    assert!(reply.contains("approved"), "{reply}");
    let request = bed.app.store.get_request(&request_id).await.unwrap().unwrap();
    assert_eq!(request.status, RequestStatus::Approved);
    assert_eq!(request.approvals[0].reviewer, "bob");
    assert_eq!(
        request.approvals[0].comment.as_deref(),
        Some("ship it (from GitHub: https://github.com/example/app/pull/7#issuecomment-11)")
    );
    let replies: Vec<GithubCall> = bed
        .calls(&request_id)
        .await
        .into_iter()
        .filter(|c| c.call.key.starts_with("reply:"))
        .collect();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].call.path, "/repos/example/app/issues/7/comments");

    assert_eq!(worker::sweep(&bed.app).await.unwrap(), 1);
    let (state, comment) = bed.answered(&request_id).await.unwrap();
    assert_eq!(state, "approved");
    assert!(comment.contains("approved by bob"), "{comment}");
    let answered = bed.events(&request_id, EventKind::GithubDeploymentAnswered).await;
    assert_eq!(answered[0].event.actor, "bob");
}

#[tokio::test]
async fn commands_act_only_with_the_commenters_rights() {
    let bed = linked_bed().await;
    let (request_id, _) = bed.deploy("example/app", "production", "main", &[7]).await;

    // Mapped, but no reviewer: the reply says why.
    let outcome = bed.comment("alice-gh", &format!("/jitgate approve {request_id}")).await;
    let reply = refusal_reply(&outcome);
    assert!(reply.contains("alice cannot do that"), "{reply}");

    // Unmapped.
    let outcome = bed.comment("mallory", &format!("/jitgate approve {request_id}")).await;
    let reply = refusal_reply(&outcome);
    assert!(reply.contains("is not linked to a jitgate principal"), "{reply}");
    assert!(
        reply.contains("@mallory is not linked to a jitgate principal: add `github_user = \"mallory\"`"),
        "{reply}"
    );

    // Another repository's deployment: nothing about it leaks, nothing is done.
    let (other_id, _) = bed.deploy("example/other", "production", "main", &[]).await;
    let outcome = bed.comment("bob-gh", &format!("/jitgate approve {other_id}")).await;
    let reply = refusal_reply(&outcome);
    assert!(reply.contains("is not a deployment of example/app"), "{reply}");
    // Nor a request that is no deployment at all, nor a made-up id.
    for id in ["req_0000", "req_x'; --", "<script>"] {
        let outcome = bed.comment("bob-gh", &format!("/jitgate deny {id} no")).await;
        let reply = refusal_reply(&outcome);
        assert!(reply.contains("is not a deployment of example/app"), "{reply}");
        assert!(!reply.contains("<script>"), "escaped: {reply}");
    }
    let other = bed.app.store.get_request(&other_id).await.unwrap().unwrap();
    assert_eq!(other.status, RequestStatus::Pending);

    // Usage, and commands jitgate will not read.
    let outcome = bed.comment("bob-gh", "/jitgate merge it").await;
    let WebhookOutcome::Command { reply, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(reply.contains("usage"), "{reply}");
    for hidden in [
        format!("/jitgate approve {request_id} ok\u{202e}"),
        format!("/jitgate approve {request_id} \u{200b}"),
        format!("/jitgate approve {request_id} \0"),
        format!("/jitgate approve {request_id} {}", "x".repeat(501)),
    ] {
        let outcome = bed.comment("bob-gh", &hidden).await;
        let WebhookOutcome::Command { done, .. } = &outcome else {
            panic!("{outcome:?}")
        };
        assert!(!done, "{hidden:?}");
    }
    let still = bed.app.store.get_request(&request_id).await.unwrap().unwrap();
    assert_eq!(still.status, RequestStatus::Pending);

    // A deny by the reviewer, then a second decision is refused with the service's words.
    let outcome = bed
        .comment("bob-gh", &format!("/jitgate deny {request_id} wrong branch"))
        .await;
    assert!(
        matches!(outcome, WebhookOutcome::Command { done: true, .. }),
        "{outcome:?}"
    );
    let outcome = bed.comment("bob-gh", &format!("/jitgate approve {request_id}")).await;
    let reply = refusal_reply(&outcome);
    assert!(reply.contains("bob cannot do that"), "{reply}");
}

#[tokio::test]
async fn comment_deliveries_are_carried_out_once_and_bots_are_ignored() {
    let bed = linked_bed().await;
    let (request_id, _) = bed.deploy("example/app", "production", "main", &[7]).await;
    let delivery = new_delivery_id();
    let payload = comment_payload(
        "example/app",
        "bob-gh",
        "User",
        &format!("/jitgate approve {request_id}"),
    );
    let first = bed.deliver_as("issue_comment", &delivery, &payload).await.unwrap();
    assert!(matches!(first, WebhookOutcome::Command { done: true, .. }), "{first:?}");
    let again = bed.deliver_as("issue_comment", &delivery, &payload).await.unwrap();
    assert_eq!(again, WebhookOutcome::Duplicate);
    let replayed = bed.deliver("issue_comment", &payload).await.unwrap();
    assert_eq!(replayed, WebhookOutcome::Duplicate);

    for (kind, via_app) in [("Bot", Value::Null), ("User", json!({ "id": 1, "slug": "jitgate" }))] {
        let mut payload = comment_payload("example/app", "bob-gh", kind, &format!("/jitgate deny {request_id}"));
        payload["comment"]["performed_via_github_app"] = via_app;
        let outcome = bed.deliver("issue_comment", &payload).await.unwrap();
        assert!(matches!(outcome, WebhookOutcome::Ignored { .. }), "{outcome:?}");
    }
    // Not a command; an edited comment.
    let outcome = bed.comment("bob-gh", "LGTM\n/jitgate deny x").await;
    assert!(matches!(outcome, WebhookOutcome::Ignored { .. }), "{outcome:?}");
    let mut edited = comment_payload("example/app", "bob-gh", "User", &format!("/jitgate deny {request_id}"));
    edited["action"] = json!("edited");
    let outcome = bed.deliver("issue_comment", &edited).await.unwrap();
    assert!(matches!(outcome, WebhookOutcome::Ignored { .. }), "{outcome:?}");
    let request = bed.app.store.get_request(&request_id).await.unwrap().unwrap();
    assert_eq!(request.status, RequestStatus::Approved);
    let replies = bed
        .calls(&request_id)
        .await
        .into_iter()
        .filter(|c| c.call.key.starts_with("reply:"))
        .count();
    assert_eq!(replies, 1);
}

#[tokio::test]
async fn concurrent_sweeps_on_two_replicas_answer_once() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let url = format!("sqlite://{}", dir.path().join("jitgate.db").display());
    let one = bed_on(jitgate_store::open(&url).await.unwrap(), dir.clone(), 1).await;
    let two = bed_on(jitgate_store::open(&url).await.unwrap(), dir.clone(), 2).await;
    let mut ids = Vec::new();
    // Distinct commits: the check a sweep makes uses the grant that matches (principal,
    // environment, commit), and each must be this deployment's own.
    for i in 0..5u64 {
        let mut payload = deployment_payload("example/app", "production", "main", &[]);
        payload["deployment"]["sha"] = json!(format!("{i:040x}"));
        let outcome = one.deliver("deployment_protection_rule", &payload).await.unwrap();
        let WebhookOutcome::Filed { request_id, .. } = outcome else {
            panic!("{outcome:?}")
        };
        let caller = caller_for::<op::ApproveRequest>(one.identity("carol")).unwrap();
        one.app.approve(&caller, &request_id, None).await.unwrap();
        ids.push(request_id);
    }
    let (request_id, _) = two.deploy("example/app", "staging", "main", &[]).await;
    ids.push(request_id);
    // Both replicas sweep at once, several times; each takes the lease only when free.
    for _ in 0..3 {
        let (a, b) = tokio::join!(worker::sweep(&one.app), worker::sweep(&two.app));
        a.unwrap();
        b.unwrap();
    }
    // The lease of replica one runs until it lapses: the second replica answers nothing
    // meanwhile, and every deployment was answered by exactly one of them.
    for id in &ids {
        let answered = one.events(id, EventKind::GithubDeploymentAnswered).await;
        assert_eq!(answered.len(), 1, "{id}");
        let (state, _) = one.answered(id).await.unwrap();
        assert_eq!(state, "approved", "{id}");
        let used = one.events(id, EventKind::GrantUsed).await;
        assert_eq!(used.len(), 1, "the grant was used exactly once: {id}");
    }
    // Calls, made by both replicas at once: each exactly once.
    let (a, b) = tokio::join!(worker::make_calls(&one.app), worker::make_calls(&two.app));
    assert_eq!(a.unwrap() + b.unwrap(), ids.len());
    assert_eq!(
        one.api.made(CallPurpose::Callback).len() + two.api.made(CallPurpose::Callback).len(),
        ids.len()
    );
}

#[tokio::test]
async fn a_deployment_tracked_but_not_filed_is_filed_by_the_sweep() {
    let bed = bed().await;
    let request_id = App::new_request_id();
    let deployment = GithubDeployment {
        delivery_id: new_delivery_id(),
        request_id: request_id.clone(),
        installation_id: 99,
        owner: "example".into(),
        repo: "app".into(),
        environment: "production".into(),
        run_id: 4242,
        sha: SHA.into(),
        git_ref: "refs/heads/main".into(),
        event: "push".into(),
        actor: "octo-dev".into(),
        pull_requests: vec![7],
        state: DeploymentState::Waiting,
        answer: None,
        comment: None,
        // The crash came after tracking: long enough ago that no webhook is still filing.
        received_at: jitgate_service::now() - chrono::TimeDelta::seconds(11),
        answered_at: None,
    };
    assert!(bed.app.store.github_track_deployment(&deployment).await.unwrap());
    assert!(bed.app.store.get_request(&request_id).await.unwrap().is_none());
    assert_eq!(worker::sweep(&bed.app).await.unwrap(), 0);
    let request = bed.app.store.get_request(&request_id).await.unwrap().unwrap();
    assert_eq!(request.status, RequestStatus::Pending);
    assert_eq!(request.requester, "ci:example/app");
    // Announced as the webhook would have.
    assert_eq!(bed.calls(&request_id).await.len(), 1);
    // Swept again: filed once.
    assert_eq!(worker::sweep(&bed.app).await.unwrap(), 0);
    assert_eq!(bed.events(&request_id, EventKind::RequestFiled).await.len(), 1);

    // A deployment tracked just now is left to the webhook still filing it.
    let fresh = GithubDeployment {
        delivery_id: new_delivery_id(),
        request_id: App::new_request_id(),
        received_at: jitgate_service::now(),
        ..deployment
    };
    assert!(bed.app.store.github_track_deployment(&fresh).await.unwrap());
    worker::sweep(&bed.app).await.unwrap();
    assert!(bed.app.store.get_request(&fresh.request_id).await.unwrap().is_none());
}

#[tokio::test]
async fn github_down_is_retried_and_a_refused_callback_is_not_retried_for_ever() {
    let bed = bed().await;
    let (request_id, _) = bed.deploy("example/app", "staging", "main", &[]).await;
    worker::sweep(&bed.app).await.unwrap();
    *bed.api.failing.lock() = Some(true);
    // To the millisecond, as the store keeps times.
    let before = chrono::DateTime::from_timestamp_millis(jitgate_service::now().timestamp_millis()).unwrap();
    let failed = std::time::Instant::now();
    assert_eq!(worker::make_calls(&bed.app).await.unwrap(), 0);
    let calls = bed.calls(&request_id).await;
    assert_eq!(calls[0].attempts, 1);
    assert!(calls[0].done_at.is_none());
    assert_eq!(calls[0].last_error.as_deref(), Some("503 from GitHub"));
    // Not due again at once (backoff): the stored due time is the first retry's delay
    // (400 ms) after the failure, whatever the machine's speed; and a look made well inside
    // that delay finds nothing due. (A look after a longer stall would rightly find it due
    // and call again, so it is made only when it can mean something.)
    let backoff = jitgate_core::outbox::retry_delay(1);
    assert!(
        calls[0].call.due_at >= before + backoff,
        "due at {}, sooner than {backoff} after {before}",
        calls[0].call.due_at
    );
    if failed.elapsed() < std::time::Duration::from_millis(200) {
        assert_eq!(worker::make_calls(&bed.app).await.unwrap(), 0);
    }
    *bed.api.failing.lock() = None;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(worker::make_calls(&bed.app).await.unwrap(), 1);
    let reported = bed.events(&request_id, EventKind::GithubDeploymentReported).await;
    assert_eq!(
        reported[0].event.comment.as_deref(),
        Some("approved after 2 attempt(s)")
    );

    let (request_id, _) = bed.deploy("example/app", "staging", "main", &[]).await;
    worker::sweep(&bed.app).await.unwrap();
    *bed.api.failing.lock() = Some(false);
    assert_eq!(worker::make_calls(&bed.app).await.unwrap(), 0);
    let calls = bed.calls(&request_id).await;
    assert!(calls[0].done_at.is_some(), "refused: done, not retried");
    let reported = bed.events(&request_id, EventKind::GithubDeploymentReported).await;
    assert!(
        reported[0]
            .event
            .comment
            .as_deref()
            .unwrap()
            .starts_with("GitHub refused"),
        "{reported:?}"
    );

    let metrics = bed.app.metrics.encode();
    for sample in [
        r#"jitgate_github_calls_total{purpose="callback",result="retry"} 1"#,
        r#"jitgate_github_calls_total{purpose="callback",result="ok"} 1"#,
        r#"jitgate_github_calls_total{purpose="callback",result="refused"} 1"#,
        r#"jitgate_github_webhooks_total{outcome="filed"} 2"#,
    ] {
        assert!(metrics.contains(sample), "{sample} in\n{metrics}");
    }
}

#[tokio::test]
async fn deployments_jitgate_cannot_file_are_rejected_at_once() {
    let bed = bed().await;
    let mut cases: Vec<(&str, Value)> = vec![
        (
            "NUL in the environment",
            deployment_payload("example/app", "prod\0uction", "main", &[]),
        ),
        (
            "bidi in the environment",
            deployment_payload("example/app", "production\u{202e}", "main", &[]),
        ),
        (
            "invisible in the environment",
            deployment_payload("example/app", "produc\u{200b}tion", "main", &[]),
        ),
        (
            "control in the ref",
            deployment_payload("example/app", "production", "main\u{1b}[2K", &[]),
        ),
        (
            "NUL in the ref",
            deployment_payload("example/app", "production", "ma\0in", &[]),
        ),
        (
            "oversize environment",
            deployment_payload("example/app", &"p".repeat(300), "main", &[]),
        ),
        // Cyrillic `е`: looks like the catalog's owner, is not it.
        (
            "look-alike owner",
            deployment_payload("\u{0435}xample/app", "production", "main", &[]),
        ),
        (
            "owner not served",
            deployment_payload("elsewhere/app", "production", "main", &[]),
        ),
        ("another kind", deployment_payload("example/app", "ledger", "main", &[])),
        (
            "no workflow",
            deployment_payload("example/app", "unknown-env", "main", &[]),
        ),
    ];
    let mut no_environment = deployment_payload("example/app", "production", "main", &[]);
    no_environment.as_object_mut().unwrap().remove("environment");
    let mut no_deployment = deployment_payload("example/app", "production", "main", &[]);
    no_deployment.as_object_mut().unwrap().remove("deployment");
    let mut bad_sha = deployment_payload("example/app", "production", "main", &[]);
    bad_sha["deployment"]["sha"] = json!(SHA.to_uppercase());
    let mut no_sender = deployment_payload("example/app", "production", "main", &[]);
    no_sender.as_object_mut().unwrap().remove("sender");
    cases.extend([
        ("no environment", no_environment),
        ("no deployment (no SHA, no ref)", no_deployment),
        ("an upper-case SHA", bad_sha),
        ("no sender", no_sender),
    ]);
    for (case, payload) in cases {
        let outcome = bed.deliver("deployment_protection_rule", &payload).await.unwrap();
        let WebhookOutcome::Rejected { request_id, reason } = &outcome else {
            panic!("{case}: {outcome:?}")
        };
        assert!(bed.app.store.get_request(request_id).await.unwrap().is_none(), "{case}");
        let tracked = bed.app.store.github_deployment(request_id).await.unwrap().unwrap();
        assert_eq!(tracked.state, DeploymentState::Answered, "{case}");
        assert_eq!(tracked.answer, Some(DeploymentAnswer::Rejected), "{case}");
        for text in [&tracked.environment, &tracked.git_ref, &tracked.owner] {
            assert!(!text.contains('\0') && text.len() <= 255, "{case}: {text:?}");
        }
        let (state, comment) = bed.answered(request_id).await.unwrap();
        assert_eq!(state, "rejected", "{case}");
        assert!(
            comment.contains("jitgate rejected this deployment"),
            "{case}: {comment}"
        );
        assert!(!reason.is_empty());
    }
    // The sweep does not file them again.
    worker::sweep(&bed.app).await.unwrap();
    assert!(bed.app.store.github_waiting(100).await.unwrap().is_empty());

    // Missing what any answer needs: 400, nothing tracked.
    let mut no_callback = deployment_payload("example/app", "production", "main", &[]);
    no_callback.as_object_mut().unwrap().remove("deployment_callback_url");
    let mut no_installation = deployment_payload("example/app", "production", "main", &[]);
    no_installation.as_object_mut().unwrap().remove("installation");
    let mut other_repo_callback = deployment_payload("example/app", "production", "main", &[]);
    other_repo_callback["deployment_callback_url"] =
        json!("https://api.github.com/repos/example/other/actions/runs/1/deployment_protection_rule");
    for (payload, named) in [
        (no_callback, "deployment_callback_url"),
        (no_installation, "installation.id"),
        (other_repo_callback, "deployment_callback_url"),
    ] {
        match bed.deliver("deployment_protection_rule", &payload).await {
            Err(ServiceError::Invalid(m)) => assert!(m.to_string().contains(named), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn text_from_github_cannot_mention_or_link_in_comments() {
    let bed = bed().await;
    // Not in the catalog, no workflow: rejected, and the reason names the environment.
    let outcome = bed
        .deliver(
            "deployment_protection_rule",
            &deployment_payload(
                "example/app",
                "prod @example/admins [click](https://evil.example)",
                "main",
                &[7],
            ),
        )
        .await
        .unwrap();
    let WebhookOutcome::Rejected { request_id, .. } = outcome else {
        panic!("{outcome:?}")
    };
    let (_, comment) = bed.answered(&request_id).await.unwrap();
    assert!(!comment.contains(" @example"), "{comment}");
    assert!(!comment.contains("[click]("), "{comment}");
    assert!(comment.contains("\\@\u{200b}example"), "{comment}");
    assert!(!comment.contains("@example"), "no @ directly before a name: {comment}");

    // A reply quoting a made-up id.
    let outcome = bed.comment("bob-gh", "/jitgate approve @example/admins").await;
    let WebhookOutcome::Command { reply, .. } = outcome else {
        panic!()
    };
    assert!(!reply.contains(" @example"), "{reply}");
    assert!(!reply.contains("@example"), "{reply}");
    // A character reference is no way around it.
    let outcome = bed.comment("bob-gh", "/jitgate approve &#64;example/admins").await;
    let WebhookOutcome::Command { reply, .. } = outcome else {
        panic!()
    };
    assert!(reply.contains("\\&\\#64;example"), "{reply}");
}

#[tokio::test]
async fn one_repository_exhausting_its_filing_rate_does_not_stop_another() {
    let bed = bed().await;
    bed.app.caller_limits().configure(
        toml::from_str::<jitgate_service::limits::LimitsConfig>("requests_per_minute = 1\nrequests_burst = 2").unwrap(),
    );
    bed.deploy("example/app", "production", "main", &[]).await;
    bed.deploy("example/app", "production", "main", &[]).await;
    let refused = bed
        .deliver(
            "deployment_protection_rule",
            &deployment_payload("example/app", "production", "main", &[]),
        )
        .await;
    assert!(matches!(refused, Err(ServiceError::RetryLater { .. })), "{refused:?}");
    // Tracked: the worker files it once the rate allows; nothing is rejected for it.
    let waiting = bed.app.store.github_waiting(100).await.unwrap();
    assert_eq!(waiting.len(), 3);
    let (_, status) = bed.deploy("example/other", "production", "main", &[]).await;
    assert_eq!(status, "pending");
}

const EMPLOYEE_NUMBER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber";

/// Provision user `principal` (SCIM id `id`) with `login` in the enterprise extension's
/// `employeeNumber`, active or not.
async fn provision(bed: &Bed, id: &str, principal: &str, login: &str, active: bool) {
    use jitgate_core::scim::{DirectoryWrite, ScimChange, ScimUser};
    let now = jitgate_service::now();
    let user = ScimUser {
        id: id.into(),
        user_name: format!("{principal}@example.com"),
        principal: principal.into(),
        external_id: None,
        display_name: None,
        active,
        manager_id: None,
        doc: json!({
            "userName": format!("{principal}@example.com"),
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": { "employeeNumber": login },
        }),
        version: 1,
        created_at: now,
        modified_at: now,
    };
    let write = DirectoryWrite {
        change: ScimChange::PutUser {
            user: user.clone(),
            expected_version: None,
        },
        transitions: Vec::new(),
        revoked_tokens: Vec::new(),
        events: Vec::new(),
    };
    bed.app.store.scim_write(&write).await.unwrap();
    jitgate_service::directory::committed(&bed.app, &write, Some(&user), None);
}

#[tokio::test]
async fn a_scim_user_is_linked_by_the_configured_attribute_with_their_groups() {
    use jitgate_core::scim::{DirectoryWrite, MemberChange, ScimChange, ScimGroup};
    let bed = bed().await;
    bed.app.configure_github(
        GithubSettings {
            scim_login_attribute: Some(EMPLOYEE_NUMBER.into()),
            ..settings()
        },
        bed.api.clone(),
    );
    provision(&bed, "u-dana", "dana", "Dana-GH", true).await;
    provision(&bed, "u-erin", "erin", "erin-gh", false).await;
    let now = jitgate_service::now();
    let group = ScimGroup {
        id: "g-sre".into(),
        display_name: "sre".into(),
        external_id: None,
        doc: json!({ "displayName": "sre" }),
        members: vec!["u-dana".into(), "u-erin".into()],
        version: 1,
        created_at: now,
        modified_at: now,
    };
    let write = DirectoryWrite {
        change: ScimChange::PutGroup {
            group: group.clone(),
            expected_version: None,
            members: MemberChange::Set(group.members.clone()),
        },
        transitions: Vec::new(),
        revoked_tokens: Vec::new(),
        events: Vec::new(),
    };
    bed.app.store.scim_write(&write).await.unwrap();
    jitgate_service::directory::committed(&bed.app, &write, None, Some(&group));

    let (request_id, _) = bed.deploy("example/app", "production", "main", &[7]).await;
    // Deactivated: refused as authentication would refuse them.
    let outcome = bed.comment("erin-gh", &format!("/jitgate approve {request_id}")).await;
    let reply = refusal_reply(&outcome);
    assert!(reply.contains("deactivated"), "{reply}");
    // Linked ignoring case, a reviewer through the provisioned group.
    let outcome = bed
        .comment("dana-gh", &format!("/jitgate approve {request_id} ok"))
        .await;
    let WebhookOutcome::Command { done, reply, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(done, "{reply}");
    let request = bed.app.store.get_request(&request_id).await.unwrap().unwrap();
    assert_eq!(request.approvals[0].reviewer, "dana");
}

#[path = "support/postgres.rs"]
mod pg;

/// On PostgreSQL, two replicas at once: the same delivery handled by both files one request;
/// NUL bytes from GitHub reach the store as nothing it refuses; sweeps and calls running on
/// both answer each deployment once and make each call once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_postgres_answer_each_deployment_once() {
    let server = pg::Postgres::start();
    server.create_database("github");
    let url = server.url("github");
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let store_one: Arc<dyn Store> = Arc::new(jitgate_store::PostgresStore::open(&url).await.unwrap());
    let store_two: Arc<dyn Store> = Arc::new(jitgate_store::PostgresStore::open(&url).await.unwrap());
    let one = bed_on(store_one, dir.clone(), 1).await;
    let two = bed_on(store_two, dir.clone(), 2).await;

    // One delivery reaching both replicas at once (GitHub's redelivery racing the first).
    let delivery = new_delivery_id();
    let payload = deployment_payload("example/app", "staging", "main", &[]);
    let (a, b) = tokio::join!(
        one.deliver_as("deployment_protection_rule", &delivery, &payload),
        two.deliver_as("deployment_protection_rule", &delivery, &payload)
    );
    let outcomes = [a.unwrap(), b.unwrap()];
    assert_eq!(
        outcomes.iter().filter(|o| **o == WebhookOutcome::Duplicate).count(),
        1,
        "{outcomes:?}"
    );
    let mut ids: Vec<String> = outcomes
        .iter()
        .filter_map(|o| match o {
            WebhookOutcome::Filed { request_id, .. } => Some(request_id.clone()),
            _ => None,
        })
        .collect();
    for i in 0..4u64 {
        let mut payload = deployment_payload("example/app", "production", "main", &[]);
        payload["deployment"]["sha"] = json!(format!("{i:040x}"));
        let WebhookOutcome::Filed { request_id, .. } =
            two.deliver("deployment_protection_rule", &payload).await.unwrap()
        else {
            panic!()
        };
        let caller = caller_for::<op::ApproveRequest>(two.identity("carol")).unwrap();
        two.app.approve(&caller, &request_id, None).await.unwrap();
        ids.push(request_id);
    }
    // NUL bytes in what GitHub sends: rejected at once, stored escaped.
    let outcome = one
        .deliver(
            "deployment_protection_rule",
            &deployment_payload("example/app", "prod\0", "ma\0in", &[]),
        )
        .await
        .unwrap();
    let WebhookOutcome::Rejected { request_id, .. } = outcome else {
        panic!("{outcome:?}")
    };
    let tracked = one.app.store.github_deployment(&request_id).await.unwrap().unwrap();
    assert!(!tracked.environment.contains('\0') && !tracked.git_ref.contains('\0'));
    ids.push(request_id);
    let outcome = one.comment("bob-gh", "/jitgate approve req_1 \0").await;
    assert!(
        matches!(outcome, WebhookOutcome::Command { done: false, .. }),
        "{outcome:?}"
    );

    for _ in 0..3 {
        let (a, b) = tokio::join!(worker::sweep(&one.app), worker::sweep(&two.app));
        a.unwrap();
        b.unwrap();
    }
    for id in &ids {
        assert_eq!(
            one.events(id, EventKind::GithubDeploymentAnswered).await.len(),
            1,
            "{id}"
        );
        assert!(one.answered(id).await.is_some(), "{id}");
    }
    let (a, b) = tokio::join!(worker::make_calls(&one.app), worker::make_calls(&two.app));
    a.unwrap();
    b.unwrap();
    let made = one.api.made(CallPurpose::Callback).len() + two.api.made(CallPurpose::Callback).len();
    assert_eq!(made, ids.len());
    for id in &ids {
        assert_eq!(
            one.events(id, EventKind::GithubDeploymentReported).await.len(),
            1,
            "{id}"
        );
    }
}

#[tokio::test]
async fn one_commenter_exhausting_the_write_rate_does_not_stop_another() {
    let bed = linked_bed().await;
    bed.app.caller_limits().configure(
        toml::from_str::<jitgate_service::limits::LimitsConfig>("writes_per_minute = 1\nwrites_burst = 2").unwrap(),
    );
    let (request_id, _) = bed.deploy("example/app", "production", "main", &[7]).await;
    for _ in 0..2 {
        let outcome = bed.comment("mallory", &format!("/jitgate approve {request_id}")).await;
        assert!(
            matches!(outcome, WebhookOutcome::Command { done: false, .. }),
            "{outcome:?}"
        );
    }
    // The same login in another case is the same commenter.
    let refused = bed
        .deliver(
            "issue_comment",
            &comment_payload(
                "example/app",
                "MALLORY",
                "User",
                &format!("/jitgate approve {request_id}"),
            ),
        )
        .await;
    assert!(matches!(refused, Err(ServiceError::RetryLater { .. })), "{refused:?}");
    let replies = bed
        .calls(&request_id)
        .await
        .into_iter()
        .filter(|c| c.call.key.starts_with("reply:"))
        .count();
    assert_eq!(replies, 2, "no reply beyond the rate");
    let outcome = bed.comment("bob-gh", &format!("/jitgate approve {request_id}")).await;
    assert!(
        matches!(outcome, WebhookOutcome::Command { done: true, .. }),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn whoever_triggered_a_deployment_cannot_decide_it_on_any_channel() {
    let bed = linked_bed().await;
    // bob (an sre, `github_user = "Bob-GH"`) triggered it: he counts as its requester.
    let request_id = bed.deploy_by("production", &[7], "bob-gh").await;
    let request = bed.app.store.get_request(&request_id).await.unwrap().unwrap();
    assert_eq!(request.requester, "ci:example/app");
    assert_eq!(request.on_behalf_of.as_deref(), Some("bob"));
    assert_eq!(request.agent_person(), None, "a CI job is no agent");
    assert_eq!(
        jitgate_core::model::requester_text(&request.requester, request.on_behalf_of.as_deref()),
        "ci:example/app (triggered by bob)"
    );
    let filed = bed.events(&request_id, EventKind::RequestFiled).await;
    let filed_comment = filed[0].event.comment.as_deref().unwrap();
    assert!(filed_comment.ends_with("(triggered by bob)"), "{filed_comment}");
    assert!(!filed_comment.contains("agent"), "{filed_comment}");

    // The API (what the UI, the CLI and Slack call) refuses him, approving or denying.
    let approve = caller_for::<op::ApproveRequest>(bed.identity("bob")).unwrap();
    let refused = bed.app.approve(&approve, &request_id, None).await.unwrap_err();
    assert!(matches!(refused, ServiceError::Forbidden(_)), "{refused:?}");
    assert!(refused.to_string().contains("someone else must decide"), "{refused}");
    let deny = caller_for::<op::DenyRequest>(bed.identity("bob")).unwrap();
    assert!(matches!(
        bed.app.deny(&deny, &request_id, None).await.unwrap_err(),
        ServiceError::Forbidden(_)
    ));
    // So does a comment, whatever the login's case.
    for body in [
        format!("/jitgate approve {request_id}"),
        format!("/jitgate deny {request_id}"),
    ] {
        let outcome = bed.comment("BOB-gh", &body).await;
        let WebhookOutcome::Command { done, reply, .. } = &outcome else {
            panic!("{outcome:?}")
        };
        assert!(!done, "{reply}");
        assert!(reply.contains("someone else must decide"), "{reply}");
    }
    assert_eq!(
        bed.app.store.get_request(&request_id).await.unwrap().unwrap().status,
        RequestStatus::Pending
    );
    // Another sre decides; the deployment is approved once its own grant is used.
    let carol = caller_for::<op::ApproveRequest>(bed.identity("carol")).unwrap();
    bed.app.approve(&carol, &request_id, None).await.unwrap();
    assert_eq!(worker::sweep(&bed.app).await.unwrap(), 1);
    assert_eq!(bed.answered(&request_id).await.unwrap().0, "approved");

    // Linked only after filing (carol's login joins directory.toml later): the request has no
    // on_behalf_of, yet carol still may not approve what her own push triggered.
    let unlinked_then = bed.deploy_by("production", &[7], "carol-gh").await;
    let request = bed.app.store.get_request(&unlinked_then).await.unwrap().unwrap();
    assert_eq!(request.on_behalf_of, None);
    bed.app.replace_policy(policy_linking(&[
        ("alice", "alice-gh"),
        ("bob", "Bob-GH"),
        ("carol", "carol-gh"),
    ]));
    let refused = bed.app.approve(&carol, &unlinked_then, None).await.unwrap_err();
    assert!(matches!(refused, ServiceError::Forbidden(_)), "{refused:?}");
    assert!(refused.to_string().contains("someone else must decide"), "{refused}");
    // Another sre decides.
    bed.app.approve(&approve, &unlinked_then, None).await.unwrap();

    // The policy's automatic approval still holds for a CI job someone triggered.
    let request_id = bed.deploy_by("staging", &[], "alice-gh").await;
    let request = bed.app.store.get_request(&request_id).await.unwrap().unwrap();
    assert_eq!(request.on_behalf_of.as_deref(), Some("alice"));
    assert_eq!(request.status, RequestStatus::Approved);

    // A sender linked to nobody when it was filed is still refused by login (linked later,
    // or commenting as the deployment's actor).
    let request_id = bed.deploy_by("production", &[7], "bob-gh").await;
    bed.app.replace_policy(policy());
    let outcome = bed.comment("Bob-GH", &format!("/jitgate approve {request_id}")).await;
    let reply = refusal_reply(&outcome);
    assert!(reply.contains("someone else must decide"), "{reply}");
    let request_id = bed.deploy_by("production", &[7], "mallory").await;
    let request = bed.app.store.get_request(&request_id).await.unwrap().unwrap();
    assert_eq!(request.on_behalf_of, None, "linked to nobody");
    bed.app.replace_policy(policy_with(true));
    let outcome = bed.comment("MALLORY", &format!("/jitgate approve {request_id}")).await;
    let reply = refusal_reply(&outcome);
    assert!(reply.contains("someone else must decide"), "{reply}");
}

#[tokio::test]
async fn the_ref_is_passed_to_the_policy_exactly_as_github_sent_it() {
    let bed = bed().await;
    // GitHub names a branch or a tag by its short name: `main` may be a tag named main.
    let (request_id, status) = bed.deploy("example/app", "staging", "main", &[]).await;
    assert_eq!(status, "approved", "the policy's rule is for the short name");
    let tracked = bed.app.store.github_deployment(&request_id).await.unwrap().unwrap();
    assert_eq!(tracked.git_ref, "main");
    let (request_id, status) = bed.deploy("example/app", "staging", "refs/heads/main", &[]).await;
    assert_eq!(
        status, "pending",
        "refs/heads/main is not the short name the rule names"
    );
    let tracked = bed.app.store.github_deployment(&request_id).await.unwrap().unwrap();
    assert_eq!(tracked.git_ref, "refs/heads/main");

    // A rule for refs/heads/main is never passed by a bare `main` (a tag named main would
    // pass it if jitgate wrote refs/heads/ in front).
    let branch_only = CEDAR.replace(r#"context.ci.ref == "main""#, r#"context.ci.ref == "refs/heads/main""#);
    assert_ne!(branch_only, CEDAR);
    bed.app.replace_policy(
        jitgate_policy::Policy::from_texts_with_catalog(
            DIRECTORY,
            WORKFLOWS,
            None,
            &[("github.cedar".to_string(), branch_only)],
            &[("resources.toml".to_string(), RESOURCES.to_string())],
        )
        .unwrap(),
    );
    for short in ["main", "heads/main", "refs/tags/main"] {
        let (request_id, status) = bed.deploy("example/app", "staging", short, &[]).await;
        assert_eq!(status, "pending", "{short}");
        let request = bed.app.store.get_request(&request_id).await.unwrap().unwrap();
        assert!(request.reason.contains(&format!("({short})")), "{}", request.reason);
    }
    let (_, status) = bed.deploy("example/app", "staging", "refs/heads/main", &[]).await;
    assert_eq!(status, "approved");
}

#[tokio::test]
async fn two_approved_deployments_of_one_commit_each_consume_their_own_grant() {
    let bed = bed().await;
    // Two runs deploying the same commit of the same repository to the same environment.
    let (first, _) = bed.deploy("example/app", "production", "main", &[]).await;
    let (second, _) = bed.deploy("example/app", "production", "main", &[]).await;
    let bob = caller_for::<op::ApproveRequest>(bed.identity("bob")).unwrap();
    let first_grant = bed.app.approve(&bob, &first, None).await.unwrap().grant.unwrap();
    // The second approval lasts a little longer: a check would pick its grant for either.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let second_grant = bed.app.approve(&bob, &second, None).await.unwrap().grant.unwrap();
    assert!(second_grant.expires_at > first_grant.expires_at);

    assert_eq!(worker::sweep(&bed.app).await.unwrap(), 2);
    for (request_id, grant) in [(&first, &first_grant), (&second, &second_grant)] {
        assert_eq!(bed.answered(request_id).await.unwrap().0, "approved");
        let request = bed.app.store.get_request(request_id).await.unwrap().unwrap();
        let own = request.grant.unwrap();
        assert_eq!(own.id, grant.id);
        assert_eq!(own.status, GrantStatus::Used, "{request_id} consumed its own grant");
        let used = bed.events(request_id, EventKind::GrantUsed).await;
        assert_eq!(used.len(), 1, "consumed once: {used:?}");
        assert_eq!(used[0].event.grant_id.as_deref(), Some(grant.id.as_str()));
    }

    // A grant already consumed for its deployment (by an overlapping sweep, which spends it
    // under jitgate's own name) still answers approved; using it again is refused, and
    // nothing is consumed twice.
    let (third, _) = bed.deploy("example/app", "production", "main", &[]).await;
    let third_grant = bed.app.approve(&bob, &third, None).await.unwrap().grant.unwrap();
    let sweep = Identity::user(worker::GITHUB_SPENDER, &[]);
    assert!(bed.app.use_grant_by_id(&sweep, &third_grant.id).await.allow);
    let again = bed.app.use_grant_by_id(&sweep, &third_grant.id).await;
    assert!(!again.allow && !again.error, "{again:?}");
    assert_eq!(worker::sweep(&bed.app).await.unwrap(), 1);
    assert_eq!(bed.answered(&third).await.unwrap().0, "approved");
    assert_eq!(bed.events(&third, EventKind::GrantUsed).await.len(), 1);

    // A workflow authenticated as ci:example/app (or a service checking for it) spends the
    // approved grant first: the one use the reviewer approved is gone, so GitHub is told
    // rejected, not approved a second time.
    let (fourth, _) = bed.deploy("example/app", "production", "main", &[]).await;
    let fourth_grant = bed.app.approve(&bob, &fourth, None).await.unwrap().grant.unwrap();
    let ci = Identity {
        principal: "ci:example/app".into(),
        groups: vec!["ci".into()],
        kind: jitgate_core::PrincipalKind::User,
        ci: None,
        on_behalf_of: None,
    };
    assert!(bed.app.use_grant_by_id(&ci, &fourth_grant.id).await.allow);
    assert_eq!(worker::sweep(&bed.app).await.unwrap(), 1);
    let (state, comment) = bed.answered(&fourth).await.unwrap();
    assert_eq!(state, "rejected", "{comment}");
    assert_eq!(bed.events(&fourth, EventKind::GrantUsed).await.len(), 1);
    assert!(!bed.app.use_grant_by_id(&ci, "grt_unknown").await.allow);
}

#[tokio::test]
async fn commands_are_taken_only_on_the_deployments_pull_requests_from_its_people() {
    let bed = linked_bed().await;
    let (request_id, _) = bed.deploy("example/app", "production", "main", &[7, 8]).await;
    let on = |issue: i64, association: &str, body: String| {
        comment_payload_on("example/app", "bob-gh", "User", &body, issue, association)
    };
    // On another issue of the repository: refused, naming the pull requests to use.
    let outcome = bed
        .deliver(
            "issue_comment",
            &on(12, "MEMBER", format!("/jitgate approve {request_id}")),
        )
        .await
        .unwrap();
    let reply = refusal_reply(&outcome);
    assert!(reply.contains("#7, #8"), "{reply}");
    assert_eq!(
        bed.app.store.get_request(&request_id).await.unwrap().unwrap().status,
        RequestStatus::Pending
    );
    let replies: Vec<GithubCall> = bed
        .calls(&request_id)
        .await
        .into_iter()
        .filter(|c| c.call.key.starts_with("reply:"))
        .collect();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].call.path, "/repos/example/app/issues/12/comments");

    // Not the repository's owner, a member or a collaborator: no answer at all.
    for association in [
        "CONTRIBUTOR",
        "FIRST_TIMER",
        "FIRST_TIME_CONTRIBUTOR",
        "NONE",
        "MANNEQUIN",
        "member",
        "",
    ] {
        let outcome = bed
            .deliver(
                "issue_comment",
                &on(8, association, format!("/jitgate approve {request_id}")),
            )
            .await
            .unwrap();
        assert!(
            matches!(outcome, WebhookOutcome::Ignored { .. }),
            "{association}: {outcome:?}"
        );
    }
    let mut no_association = on(8, "MEMBER", format!("/jitgate approve {request_id}"));
    no_association["comment"]
        .as_object_mut()
        .unwrap()
        .remove("author_association");
    assert!(matches!(
        bed.deliver("issue_comment", &no_association).await.unwrap(),
        WebhookOutcome::Ignored { .. }
    ));
    assert_eq!(
        bed.calls(&request_id).await.len(),
        replies.len() + 2,
        "no reply queued (two announcements)"
    );

    // A long id is echoed cut to 64 characters.
    let long = format!("req_{}", "x".repeat(5000));
    let outcome = bed
        .deliver(
            "issue_comment",
            &on(8, "COLLABORATOR", format!("/jitgate approve {long}")),
        )
        .await
        .unwrap();
    let WebhookOutcome::Command { reply, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(!reply.contains(&"x".repeat(62)), "{reply}");
    assert!(reply.chars().count() < 200, "{reply}");

    // On one of its pull requests, by a member: decided, and the reply names what.
    let outcome = bed
        .deliver(
            "issue_comment",
            &on(8, "OWNER", format!("/jitgate approve {request_id}")),
        )
        .await
        .unwrap();
    let WebhookOutcome::Command { done, reply, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(done, "{reply}");
    assert!(reply.contains(&format!("`{}`", &SHA[..12])), "{reply}");
    assert!(reply.contains("production") && reply.contains("main"), "{reply}");

    // A deployment with no pull requests is decided on any issue of its repository.
    let (request_id, _) = bed.deploy("example/app", "production", "main", &[]).await;
    let outcome = bed
        .deliver(
            "issue_comment",
            &on(12, "MEMBER", format!("/jitgate approve {request_id}")),
        )
        .await
        .unwrap();
    assert!(
        matches!(outcome, WebhookOutcome::Command { done: true, .. }),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn managed_users_logins_with_a_short_code_are_linked() {
    let bed = bed().await;
    // GitHub Enterprise Managed Users: the enterprise's short code after `_`.
    let directory = DIRECTORY
        .replace("name = \"carol\"\n", "name = \"carol\"\ngithub_user = \"carol_acme\"\n")
        .replace("name = \"bob\"\n", "name = \"bob\"\ngithub_user = \"bob_acme\"\n");
    bed.app.replace_policy(
        jitgate_policy::Policy::from_texts_with_catalog(
            &directory,
            WORKFLOWS,
            None,
            &[("github.cedar".to_string(), CEDAR.to_string())],
            &[("resources.toml".to_string(), RESOURCES.to_string())],
        )
        .unwrap_or_else(|e| panic!("{e:?}")),
    );
    // Triggered by bob's managed account: he counts as its requester.
    let request_id = bed.deploy_by("production", &[7], "bob_acme").await;
    let request = bed.app.store.get_request(&request_id).await.unwrap().unwrap();
    assert_eq!(request.on_behalf_of.as_deref(), Some("bob"));
    // Another look-alike of a short code links nobody.
    for login in ["carol_acme_x", "carol_acmе", "carol_", "carol__acme"] {
        let outcome = bed.comment(login, &format!("/jitgate approve {request_id}")).await;
        let WebhookOutcome::Command { done, reply, .. } = &outcome else {
            panic!("{login}: {outcome:?}")
        };
        assert!(!done, "{login}: {reply}");
    }
    let outcome = bed
        .comment("Carol_ACME", &format!("/jitgate approve {request_id}"))
        .await;
    let WebhookOutcome::Command { done, reply, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(done, "{reply}");
    let request = bed.app.store.get_request(&request_id).await.unwrap().unwrap();
    assert_eq!(request.approvals[0].reviewer, "carol");
}
