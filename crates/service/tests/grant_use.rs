//! `App::use_grant` (`POST /v1/grants/use`) against a real store: the caller's own grants only,
//! an action-bound grant for its exact payload only, and a single-use grant used exactly once
//! however many uses race for it.

// Test code: a failed expectation should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jitgate_core::authz::op;
use jitgate_core::Identity;
use jitgate_service::auth::{caller_for, config::AuthConfig, Authenticator};
use jitgate_service::inputs::NewRequest;
use jitgate_service::App;
use offline::NoFetch;
use std::sync::Arc;

const DIRECTORY: &str = r#"
[[principal]]
name = "alice"
groups = ["dev"]
token = "tok-alice"

[[principal]]
name = "dave"
groups = ["dev"]
token = "tok-dave-1"

[[principal]]
name = "bob"
groups = ["sre"]
token = "tok-bob-1"
"#;

const WORKFLOWS: &str = r#"
[[workflow]]
resource = "files"
actions = ["read_file"]
requesters = ["dev"]
auto_approve = true

[[workflow]]
resource = "files"
actions = ["delete_file"]
requesters = ["dev"]
steps = [{ group = "sre", approvals = 1 }]
action_bound = true
"#;

const RESOURCES: &str = r#"
[[resource]]
name = "files"
kind = "mcp"
"#;

struct Bed {
    app: Arc<App>,
    _dir: tempfile::TempDir,
}

async fn bed() -> Bed {
    let policy = jitgate_policy::Policy::from_texts_with_catalog(
        DIRECTORY,
        WORKFLOWS,
        None,
        &[],
        &[("resources.toml".to_string(), RESOURCES.to_string())],
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let dir = tempfile::tempdir().unwrap();
    let store = jitgate_store::open(&format!("sqlite://{}", dir.path().join("jitgate.db").display()))
        .await
        .unwrap();
    let authenticator = Authenticator::new(&AuthConfig::default(), Arc::new(NoFetch))
        .await
        .unwrap();
    let notifier =
        jitgate_service::notify::Notifier::new(None, None, "127.0.0.1:0".parse().unwrap(), Vec::new()).unwrap();
    let app = App::new(
        store,
        policy,
        authenticator,
        jitgate_service::provision::Providers::new(Vec::new()),
        notifier,
    )
    .await
    .unwrap();
    Bed {
        app: Arc::new(app),
        _dir: dir,
    }
}

const CALL: &str = r#"{"arguments":{"path":"a.txt"},"tool":"delete_file"}"#;

impl Bed {
    fn who(&self, name: &str) -> Identity {
        self.app.policy().rules().principal(name).unwrap().identity.clone()
    }

    async fn file(&self, action: &str, payload: Option<&str>) -> jitgate_core::Request {
        self.app
            .file(
                &self.who("alice"),
                &NewRequest {
                    resource: "files".into(),
                    action: action.into(),
                    duration: None,
                    reason: "MCP tool call".into(),
                    payload: payload.map(str::to_string),
                    break_glass: false,
                    items: None,
                },
            )
            .await
            .unwrap()
    }

    /// alice's delete of a.txt, approved by bob.
    async fn approved_delete(&self) -> jitgate_core::Request {
        let filed = self.file("delete_file", Some(CALL)).await;
        let bob = caller_for::<op::ApproveRequest>(self.who("bob")).unwrap();
        self.app.approve(&bob, &filed.id, None).await.unwrap()
    }

    async fn use_as(&self, name: &str, action: &str, payload: Option<&str>) -> jitgate_service::Decision {
        let caller = caller_for::<op::UseGrant>(self.who(name)).unwrap();
        self.app.use_grant(&caller, "files", action, payload).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_many_concurrent_uses_of_a_single_use_grant_exactly_one_is_allowed() {
    let b = bed().await;
    let approved = b.approved_delete().await;
    let grant = approved.grant.clone().unwrap();
    assert!(grant.single_use);
    let uses: Vec<_> = (0..32)
        .map(|_| {
            let app = b.app.clone();
            let alice = caller_for::<op::UseGrant>(b.who("alice")).unwrap();
            tokio::spawn(async move { app.use_grant(&alice, "files", "delete_file", Some(CALL)).await })
        })
        .collect();
    let mut allowed = Vec::new();
    for answer in futures_util::future::join_all(uses).await {
        let answer = answer.unwrap();
        assert!(!answer.error, "{answer:?}");
        if answer.allow {
            allowed.push(answer.grant_id.clone().unwrap());
        } else {
            assert!(
                answer.reason.contains("used") || answer.reason.contains("no active grant"),
                "{}",
                answer.reason
            );
        }
    }
    assert_eq!(allowed, vec![grant.id.clone()], "exactly one use is allowed");
    let after = b.app.store.get_request(&approved.id).await.unwrap().unwrap();
    assert_eq!(after.grant.unwrap().status, jitgate_core::GrantStatus::Used);
    // And never again.
    assert!(!b.use_as("alice", "delete_file", Some(CALL)).await.allow);
}

#[tokio::test]
async fn a_use_is_judged_for_the_caller_and_the_exact_payload_only() {
    let b = bed().await;
    b.approved_delete().await;
    // Another person, even one who could file the same request, has no use of alice's grant.
    let daves = b.use_as("dave", "delete_file", Some(CALL)).await;
    assert!(!daves.allow, "{daves:?}");
    // One byte different, or no payload at all: denied, and the grant stays unused.
    let other = CALL.replace("a.txt", "b.txt");
    let differs = b.use_as("alice", "delete_file", Some(&other)).await;
    assert!(!differs.allow && differs.reason.contains("payload"), "{differs:?}");
    assert!(!b.use_as("alice", "delete_file", None).await.allow);
    assert!(!b.use_as("alice", "read_file", Some(CALL)).await.allow);
    // The exact call: allowed, once.
    assert!(b.use_as("alice", "delete_file", Some(CALL)).await.allow);
    assert!(!b.use_as("alice", "delete_file", Some(CALL)).await.allow);
}

#[tokio::test]
async fn a_reusable_grant_allows_every_use_while_it_lasts() {
    let b = bed().await;
    let read = b.file("read_file", None).await;
    let grant = read.grant.unwrap();
    assert!(!grant.single_use);
    for payload in [None, Some(r#"{"arguments":{"path":"x"},"tool":"read_file"}"#)] {
        let answer = b.use_as("alice", "read_file", payload).await;
        assert!(answer.allow, "{answer:?}");
        assert_eq!(answer.grant_id.as_deref(), Some(grant.id.as_str()));
    }
    // Denied uses are recorded like denied checks, with the caller as both asker and subject.
    assert!(!b.use_as("dave", "read_file", None).await.allow);
}

#[path = "support/offline.rs"]
mod offline;
