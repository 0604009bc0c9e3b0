//! Agents (issue #24) through the service, on a real store: agent tokens and the identity they
//! give, the rules about who decides an agent's request (never the agent, never its person,
//! also when they race), what the person may do with it, and approving bound to the payload
//! hash the reviewer saw.

// Test code: a failed expectation should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jitgate_core::authz::op;
use jitgate_core::{Identity, Request, RequestStatus};
use jitgate_service::auth::{caller_for, config::AuthConfig, Authenticator, Presented};
use jitgate_service::inputs::{NewRequest, NewToken};
use jitgate_service::{App, ServiceError};
use jitgate_store::AuditFilter;
use offline::NoFetch;
use std::sync::Arc;

const DIRECTORY: &str = r#"
[[principal]]
name = "alice"
groups = ["dev", "auditors"]
token = "token-alice"

[[principal]]
name = "dave"
groups = ["dev"]
token = "token-dave"

[[principal]]
name = "bob"
groups = ["sre", "admins"]
token = "token-bob"

[[principal]]
name = "carol"
groups = ["sre"]
token = "token-carol"

[[principal]]
name = "erin"
groups = ["sre"]
token = "token-erin"

[[principal]]
name = "root"
groups = ["admins"]
token = "token-root"
"#;

const WORKFLOWS: &str = r#"
[[workflow]]
resource = "prod-db"
action = "write"
requesters = ["dev", "sre"]
steps = [{ group = "sre", approvals = 2 }]

[[workflow]]
resource = "prod-db"
action = "read"
requesters = ["dev", "sre"]
steps = [{ group = "sre", approvals = 1 }]

[[workflow]]
resource = "prod-api"
action = "deploy"
requesters = ["dev", "sre"]
steps = [{ group = "sre", approvals = 1 }]
action_bound = true
single_use = true
"#;

struct Bearer(Vec<u8>);

impl Presented for Bearer {
    fn field(&self, name: &str) -> Option<&[u8]> {
        (name == "authorization").then_some(self.0.as_slice())
    }
}

struct Bed {
    app: Arc<App>,
    _dir: tempfile::TempDir,
}

async fn bed() -> Bed {
    let policy = jitgate_policy::Policy::from_texts_with_catalog(DIRECTORY, WORKFLOWS, None, &[], &[])
        .unwrap_or_else(|e| panic!("{e:?}"));
    let dir = tempfile::tempdir().unwrap();
    let store = jitgate_store::open(&format!("sqlite://{}", dir.path().join("jitgate.db").display()))
        .await
        .unwrap();
    let auth: AuthConfig = toml::from_str("").unwrap();
    let authenticator = Authenticator::new(&auth, Arc::new(NoFetch)).await.unwrap();
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

fn token(principal: &str, agent_for: Option<&str>) -> NewToken {
    NewToken {
        principal: principal.into(),
        groups: Vec::new(),
        ttl: None,
        label: None,
        service: false,
        agent_for: agent_for.map(str::to_string),
        scim: false,
    }
}

fn write_request(reason: &str) -> NewRequest {
    NewRequest {
        resource: "prod-db".into(),
        action: "write".into(),
        duration: None,
        reason: reason.into(),
        payload: None,
        break_glass: false,
        items: None,
    }
}

impl Bed {
    async fn who(&self, token: &str) -> Identity {
        self.app
            .authenticate(&Bearer(format!("Bearer {token}").into_bytes()), None)
            .await
            .unwrap_or_else(|e| panic!("{token}: {e}"))
    }

    /// An agent token for `person`, created by root, and the identity it authenticates as.
    async fn agent(&self, name: &str, person: &str) -> Identity {
        let root = caller_for::<op::ManageTokens>(self.who("token-root").await).unwrap();
        let (_, secret) = self.app.create_token(&root, &token(name, Some(person))).await.unwrap();
        self.who(&secret).await
    }

    async fn approve(&self, token: &str, id: &str, sha: Option<&str>) -> Result<Request, ServiceError> {
        let caller = caller_for::<op::ApproveRequest>(self.who(token).await)?;
        self.app.approve_confirmed(&caller, id, None, sha).await
    }

    async fn events(&self, request_id: &str) -> Vec<jitgate_core::AuditEvent> {
        self.app
            .store
            .audit_events(&AuditFilter {
                request_id: Some(request_id.into()),
                limit: 100,
                ..AuditFilter::default()
            })
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn an_agent_token_acts_for_its_person_without_their_roles() {
    let bed = bed().await;
    let claude = bed.agent("claude-alice", "alice").await;
    assert_eq!(claude.principal, "claude-alice");
    assert_eq!(claude.on_behalf_of.as_deref(), Some("alice"));
    assert_eq!(claude.kind, jitgate_core::PrincipalKind::User);
    // alice's dev, never her auditors; and the group every agent is in.
    let mut groups = claude.groups.clone();
    groups.sort();
    assert_eq!(groups, ["agents", "dev"]);
    // An admin's agent is no admin: it may not manage tokens, read the audit log, or cancel
    // others' requests.
    let bobs = bed.agent("claude-bob", "bob").await;
    assert!(!bobs.is_admin());
    assert!(caller_for::<op::ManageTokens>(bobs.clone()).is_err());
    assert!(caller_for::<op::ReadAudit>(claude.clone()).is_err());
    // The token list shows whom it acts for.
    let tokens = bed.app.list_tokens().await.unwrap();
    let listed = tokens.iter().find(|t| t.principal == "claude-alice").unwrap();
    assert_eq!(listed.on_behalf_of.as_deref(), Some("alice"));
    // A person's own token carries no person, even in the group agents.
    let root = caller_for::<op::ManageTokens>(bed.who("token-root").await).unwrap();
    let mut plain = token("frank", None);
    plain.groups = vec!["agents".into()];
    let (_, secret) = bed.app.create_token(&root, &plain).await.unwrap();
    let frank = bed.who(&secret).await;
    assert_eq!(frank.on_behalf_of, None);
    assert!(frank.in_group("agents"));
}

#[tokio::test]
async fn agent_tokens_refuse_bad_people_and_roles_naming_the_field() {
    let bed = bed().await;
    let root = caller_for::<op::ManageTokens>(bed.who("token-root").await).unwrap();
    let refused = |t: NewToken| {
        let app = bed.app.clone();
        let root = root.clone();
        async move {
            match app.create_token(&root, &t).await {
                Err(ServiceError::Invalid(m)) => m.to_string(),
                other => panic!("{:?}: {other:?}", t.agent_for),
            }
        }
    };
    // Look-alike, invisible, bidi and control characters: never a person's name.
    for person in [
        "\u{0430}lice",
        "alice\u{200b}",
        "alice\u{202e}",
        "ali\0ce",
        " alice",
        "",
    ] {
        let m = refused(token("claude-x", Some(person))).await;
        assert!(m.starts_with("agent_for: "), "{m}");
    }
    let m = refused(token("alice", Some("alice"))).await;
    assert!(m.contains("principal of its own"), "{m}");
    let mut service = token("claude-x", Some("alice"));
    service.service = true;
    assert!(refused(service).await.contains("service token"));
    for role in ["admins", "auditors"] {
        let mut t = token("claude-x", Some("alice"));
        t.groups = vec![role.into()];
        let m = refused(t).await;
        assert!(m.starts_with("groups: ") && m.contains(role), "{m}");
    }
    // A person of the directory is no agent's name: their grants would be the agent's.
    let m = refused(token("dave", Some("alice"))).await;
    assert!(m.starts_with("principal: dave is a principal of directory.toml"), "{m}");
    // `ci:` names CI jobs (who triggered one is no agent's person).
    for name in ["ci:example/app", "CI:claude"] {
        let m = refused(token(name, Some("alice"))).await;
        assert!(m.starts_with("principal: ") && m.contains("names CI jobs"), "{m}");
    }
    let m = refused(token("claude\u{200b}-x", Some("alice"))).await;
    assert!(m.starts_with("principal: "), "{m}");
    assert!(bed.app.list_tokens().await.unwrap().is_empty(), "nothing was created");
}

#[tokio::test]
async fn agents_never_review_and_their_person_never_counts() {
    let bed = bed().await;
    let claude_bob = bed.agent("claude-bob", "bob").await;
    let alices = bed
        .app
        .file(&bed.who("token-alice").await, &write_request("OPS-1"))
        .await
        .unwrap();
    // An sre's agent may not approve, deny or review: refused before any request is read,
    // naming its person.
    for refusal in [
        caller_for::<op::ApproveRequest>(claude_bob.clone()).err(),
        caller_for::<op::DenyRequest>(claude_bob.clone()).err(),
        caller_for::<op::ReviewBreakGlass>(claude_bob.clone()).err(),
    ] {
        match refusal {
            Some(ServiceError::Forbidden(m)) => {
                assert!(m.contains("claude-bob is an agent acting for bob"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }
    // Nor is it a reviewer: others' requests do not exist for it.
    let reader = caller_for::<op::ReadRequests>(claude_bob.clone()).unwrap();
    assert!(matches!(
        bed.app.visible_request(&reader, &alices.id).await,
        Err(ServiceError::NotFound(_))
    ));

    // bob's agent files; bob, though in sre, is its requester as far as reviews go.
    let filed = bed.app.file(&claude_bob, &write_request("OPS-2")).await.unwrap();
    assert_eq!(filed.on_behalf_of.as_deref(), Some("bob"));
    match bed.approve("token-bob", &filed.id, None).await {
        Err(ServiceError::Forbidden(m)) => assert!(m.contains("agent acting for bob"), "{m}"),
        other => panic!("{other:?}"),
    }
    let bob = caller_for::<op::DenyRequest>(bed.who("token-bob").await).unwrap();
    assert!(matches!(
        bed.app.deny(&bob, &filed.id, None).await,
        Err(ServiceError::Forbidden(_))
    ));
    // Two other reviewers are needed, and suffice.
    bed.approve("token-carol", &filed.id, None).await.unwrap();
    let done = bed.approve("token-erin", &filed.id, None).await.unwrap();
    assert_eq!(done.status, RequestStatus::Approved);
    assert_eq!(done.grant.unwrap().principal, "claude-bob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_the_person_and_a_reviewer_never_counts_the_person() {
    let bed = bed().await;
    let claude_bob = bed.agent("claude-bob", "bob").await;
    for round in 0..8 {
        let filed = bed
            .app
            .file(&claude_bob, &write_request(&format!("OPS-{round}")))
            .await
            .unwrap();
        // The person and a real reviewer approve at the same moment, several times over: the
        // person's approvals never count, so the request still needs one more.
        let (a, b, c) = tokio::join!(
            bed.approve("token-bob", &filed.id, None),
            bed.approve("token-carol", &filed.id, None),
            bed.approve("token-bob", &filed.id, None),
        );
        assert!(matches!(a, Err(ServiceError::Forbidden(_))), "{a:?}");
        assert!(matches!(c, Err(ServiceError::Forbidden(_))), "{c:?}");
        let after = b.unwrap();
        assert_eq!(after.status, RequestStatus::Pending);
        assert_eq!(
            after.approvals.iter().map(|a| a.reviewer.as_str()).collect::<Vec<_>>(),
            ["carol"]
        );
    }
}

#[tokio::test]
async fn the_person_reads_lists_and_cancels_their_agents_requests() {
    let bed = bed().await;
    let claude = bed.agent("claude-alice", "alice").await;
    let filed = bed.app.file(&claude, &write_request("OPS-3")).await.unwrap();
    let alice = bed.who("token-alice").await;
    let reader = caller_for::<op::ReadRequests>(alice.clone()).unwrap();
    assert_eq!(bed.app.visible_request(&reader, &filed.id).await.unwrap().id, filed.id);
    let (listed, _) = bed
        .app
        .visible_requests(
            &reader,
            jitgate_store::RequestFilter {
                status: None,
                requester: None,
                limit: 50,
                before: None,
            },
            jitgate_core::Timestamp::from(std::time::SystemTime::now()),
        )
        .await
        .unwrap();
    assert!(listed.iter().any(|r| r.id == filed.id));
    // Another dev sees nothing of it, and cannot cancel it.
    let dave = bed.who("token-dave").await;
    let dave_reads = caller_for::<op::ReadRequests>(dave.clone()).unwrap();
    assert!(bed.app.visible_request(&dave_reads, &filed.id).await.is_err());
    let dave_cancels = caller_for::<op::CancelRequest>(dave).unwrap();
    assert!(matches!(
        bed.app.cancel(&dave_cancels, &filed.id).await,
        Err(ServiceError::NotFound(_))
    ));
    // The person withdraws it; the log says who.
    let cancels = caller_for::<op::CancelRequest>(alice).unwrap();
    let cancelled = bed.app.cancel(&cancels, &filed.id).await.unwrap();
    assert_eq!(cancelled.status, RequestStatus::Cancelled);
    assert_eq!(cancelled.closed_by.unwrap().by, "alice");
    let events = bed.events(&filed.id).await;
    let filed_event = events
        .iter()
        .find(|e| e.event.kind == jitgate_core::EventKind::RequestFiled)
        .unwrap();
    assert_eq!(filed_event.event.actor, "claude-alice");
    assert_eq!(
        filed_event.event.comment.as_deref(),
        Some("OPS-3 (filed by claude-alice, an agent acting for alice)")
    );
    assert!(bed.app.verify_audit().await.unwrap().ok);
}

#[tokio::test]
async fn approving_is_bound_to_the_payload_hash_shown() {
    let bed = bed().await;
    let claude = bed.agent("claude-alice", "alice").await;
    let payload = r#"{"arguments":{"path":"/srv/a"},"tool":"delete_file"}"#;
    let filed = bed
        .app
        .file(
            &claude,
            &NewRequest {
                resource: "prod-api".into(),
                action: "deploy".into(),
                payload: Some(payload.into()),
                ..write_request("MCP tool call")
            },
        )
        .await
        .unwrap();
    let right = jitgate_core::model::payload_digest(payload);
    let other = jitgate_core::model::payload_digest(r#"{"arguments":{"path":"/srv/b"},"tool":"delete_file"}"#);
    match bed.approve("token-carol", &filed.id, Some(&other)).await {
        Err(ServiceError::PayloadMismatch(m)) => {
            assert!(m.contains(&other) && m.contains(&right), "{m}")
        }
        other => panic!("{other:?}"),
    }
    match bed.approve("token-carol", &filed.id, Some("not-a-hash")).await {
        Err(ServiceError::Invalid(m)) => assert!(m.to_string().starts_with("payload_sha256: "), "{m}"),
        other => panic!("{other:?}"),
    }
    // Nothing was approved by either.
    let reader = caller_for::<op::ReadRequests>(bed.who("token-carol").await).unwrap();
    assert!(bed
        .app
        .visible_request(&reader, &filed.id)
        .await
        .unwrap()
        .approvals
        .is_empty());
    let approved = bed.approve("token-carol", &filed.id, Some(&right)).await.unwrap();
    assert_eq!(approved.status, RequestStatus::Approved);
    assert_eq!(approved.approvals[0].payload_sha256.as_deref(), Some(right.as_str()));
    let events = bed.events(&filed.id).await;
    let approval = events
        .iter()
        .find(|e| e.event.kind == jitgate_core::EventKind::RequestApproval)
        .unwrap();
    assert_eq!(
        approval.event.comment.as_deref(),
        Some(format!("approved payload sha256 {right}").as_str())
    );
}

#[path = "support/offline.rs"]
mod offline;
