//! What the provisioned directory means (issue #25), through the service on a real store:
//! every way of authenticating sees provisioned groups and refuses blocked principals;
//! leavers and movers lose what the rules say, in the change's own write; what races a
//! deactivation is undone; `directory.toml` wins; reactivation restores nothing.
//!
//! Each change goes as the SCIM edge sends it: `directory::*_change_effects`, one
//! `Store::scim_write`, `directory::committed`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jitgate_core::scim::{DirectoryWrite, MemberChange, ScimChange, ScimGroup, ScimUser};
use jitgate_core::{EventKind, GrantStatus, Identity, NewEvent, Request, RequestStatus};
use jitgate_service::auth::{caller_for, config::AuthConfig, op, Authenticator, BearerOnly, Presented};
use jitgate_service::directory::{self, Effects};
use jitgate_service::inputs::{NewRequest, NewToken};
use jitgate_service::{App, ServiceError};
use jitgate_store::{AuditFilter, Store, StoreError};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use offline::{NoFetch, ProxyUser};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

const CLIENT: &str = "scim-okta";
const ISSUER: &str = "https://idp.example";

const DIRECTORY: &str = r#"
[groups]
provisioned = ["dev", "sre", "ops", "oncall"]

[[principal]]
name = "root"
groups = ["admins"]
token = "token-root"

[[principal]]
name = "checker"
service = true
token = "token-checker"

[[principal]]
name = "alice"
groups = ["dev"]
"#;

const WORKFLOWS: &str = r#"
[[workflow]]
resource = "staging-db"
action = "read"
requesters = ["dev", "ops"]
auto_approve = true

[[workflow]]
resource = "prod-db"
action = "read"
requesters = ["dev"]
steps = [{ group = "sre", approvals = 1 }]

[[workflow]]
resource = "prod-db"
action = "write"
requesters = ["dev", "sre"]
steps = [{ group = "sre", approvals = 2 }]

[[workflow]]
resource = "payroll"
action = "read"
requesters = ["dev"]
steps = [{ manager = true }]

[[workflow]]
resource = "grafana"
action = "read"
requesters = ["dev"]
auto_approve = true

[[workflow]]
resource = "prod-api"
action = "deploy"
requesters = ["dev"]
steps = [{ group = "sre", approvals = 1 }]
break_glass = { groups = ["oncall"], max_duration = "30m", reviewers = ["sre"] }
"#;

const RESOURCES: &str = r#"
[[resource]]
name = "grafana"
kind = "http"
http = { hosts = ["grafana.example.test"] }
"#;

const FORWARD_AUTH: &str = r#"
user_header = "X-Auth-User"
services = ["checker"]
trusted_proxies = ["127.0.0.1/32"]
"#;

fn bearer(token: &str) -> Vec<u8> {
    format!("Bearer {token}").into_bytes()
}

/// The identity provider's signing key, as an OpenID issuer's.
struct Idp {
    key: EncodingKey,
    jwk: serde_json::Value,
}

impl Idp {
    fn new() -> Idp {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).unwrap();
        // PKCS#8 v1 wrapping of an Ed25519 seed: a fixed 16-byte prefix, then the seed.
        let mut der = hex::decode("302e020100300506032b657004220420").unwrap();
        der.extend_from_slice(&seed);
        let key = EncodingKey::from_ed_der(&der);
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::EdDSA).unwrap();
        jwk.common.key_id = Some("k1".into());
        Idp {
            key,
            jwk: serde_json::to_value(jwk).unwrap(),
        }
    }

    /// An ID token for `sub`, as a browser session or a CLI sign-in presents it.
    fn id_token(&self, sub: &str) -> String {
        let now = chrono::Utc::now().timestamp();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("k1".into());
        let claims = serde_json::json!({
            "iss": ISSUER, "aud": "jitgate", "sub": sub, "iat": now, "nbf": now - 5, "exp": now + 600,
        });
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }
}

struct Bed {
    app: Arc<App>,
    idp: Idp,
    users: Mutex<HashMap<String, ScimUser>>,
    groups: Mutex<HashMap<String, ScimGroup>>,
    _dir: tempfile::TempDir,
}

async fn bed() -> Bed {
    let dir = tempfile::tempdir().unwrap();
    let store = jitgate_store::open(&format!("sqlite://{}", dir.path().join("jitgate.db").display()))
        .await
        .unwrap();
    bed_on(store, dir).await
}

async fn bed_on(store: Arc<dyn Store>, dir: tempfile::TempDir) -> Bed {
    let policy = jitgate_policy::Policy::from_texts_with_catalog(
        DIRECTORY,
        WORKFLOWS,
        None,
        &[],
        &[("resources.toml".to_string(), RESOURCES.to_string())],
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let idp = Idp::new();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, serde_json::json!({ "keys": [idp.jwk.clone()] }).to_string()).unwrap();
    let auth: AuthConfig = toml::from_str(&format!(
        r#"
[[oidc]]
issuer = "{ISSUER}"
audience = ["jitgate"]
jwks_file = "{}"
algorithms = ["EdDSA"]

[trusted_proxy]
user_header = "X-Forwarded-User"
sources = ["127.0.0.1/32"]
"#,
        jwks.display()
    ))
    .unwrap();
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
    app.configure_forward_auth(toml::from_str(FORWARD_AUTH).unwrap())
        .unwrap();
    Bed {
        app: Arc::new(app),
        idp,
        users: Mutex::new(HashMap::new()),
        groups: Mutex::new(HashMap::new()),
        _dir: dir,
    }
}

fn loopback() -> Option<std::net::IpAddr> {
    Some("127.0.0.1".parse().unwrap())
}

fn scim_event(kind: EventKind, subject: &str, comment: &str) -> NewEvent {
    NewEvent {
        kind,
        at: jitgate_service::now(),
        actor: CLIENT.into(),
        subject: subject.into(),
        request_id: None,
        grant_id: None,
        resource: String::new(),
        action: String::new(),
        comment: Some(comment.into()),
    }
}

/// Commit a provisioning write: one `scim_write`, the change and all it ends together.
async fn commit(app: &App, write: &DirectoryWrite) -> Result<(), StoreError> {
    app.store.scim_write(write).await
}

impl Bed {
    /// Create or replace user `id`, as a provisioning client does: effects, write (retried on
    /// a conflict, computed again), committed.
    async fn put_user(&self, id: &str, principal: &str, active: bool, manager: Option<&str>) -> Effects {
        self.put_user_after(id, principal, active, manager, |_| {}).await
    }

    /// `put_user`, running `between` after the effects are computed and before they are written.
    async fn put_user_after(
        &self,
        id: &str,
        principal: &str,
        active: bool,
        manager: Option<&str>,
        between: impl Fn(usize),
    ) -> Effects {
        for attempt in 0..16 {
            let before = self.users.lock().get(id).cloned();
            let now = jitgate_service::now();
            let after = ScimUser {
                id: id.into(),
                user_name: format!("{principal}@example.com"),
                principal: principal.into(),
                external_id: None,
                display_name: None,
                active,
                manager_id: manager.map(str::to_string),
                doc: serde_json::json!({ "userName": format!("{principal}@example.com") }),
                version: before.as_ref().map_or(1, |b| b.version + 1),
                created_at: before.as_ref().map_or(now, |b| b.created_at),
                modified_at: now,
            };
            let effects = directory::user_change_effects(&self.app, before.as_ref(), Some(&after), CLIENT, now)
                .await
                .unwrap();
            between(attempt);
            let kind = match (&before, active) {
                (None, _) => EventKind::ScimUserCreated,
                (Some(b), false) if b.active => EventKind::ScimUserDeactivated,
                (Some(b), true) if !b.active => EventKind::ScimUserReactivated,
                _ => EventKind::ScimUserUpdated,
            };
            let mut events = effects.events.clone();
            events.push(scim_event(kind, principal, &format!("active {active}")));
            let write = DirectoryWrite {
                change: ScimChange::PutUser {
                    user: after.clone(),
                    expected_version: before.as_ref().map(|b| b.version),
                },
                transitions: effects.transitions.clone(),
                revoked_tokens: effects.revoked_tokens.clone(),
                events,
            };
            match commit(&self.app, &write).await {
                Ok(()) => {}
                Err(StoreError::Conflict) => continue,
                Err(e) => panic!("{e}"),
            }
            directory::committed(&self.app, &write, Some(&after), None);
            self.users.lock().insert(id.into(), after);
            return effects;
        }
        panic!("user {id} kept conflicting");
    }

    async fn delete_user(&self, id: &str) -> Effects {
        let before = self.users.lock().get(id).cloned().unwrap();
        let now = jitgate_service::now();
        let effects = directory::user_change_effects(&self.app, Some(&before), None, CLIENT, now)
            .await
            .unwrap();
        let mut events = effects.events.clone();
        events.push(scim_event(EventKind::ScimUserDeleted, &before.principal, "deleted"));
        let write = DirectoryWrite {
            change: ScimChange::DeleteUser {
                id: id.into(),
                expected_version: before.version,
            },
            transitions: effects.transitions.clone(),
            revoked_tokens: effects.revoked_tokens.clone(),
            events,
        };
        commit(&self.app, &write).await.unwrap();
        directory::committed(&self.app, &write, None, None);
        self.users.lock().remove(id);
        effects
    }

    /// Create or replace group `id` with exactly `members` (SCIM ids).
    async fn put_group(&self, id: &str, name: &str, members: &[&str]) -> Effects {
        let before = self.groups.lock().get(id).cloned();
        let now = jitgate_service::now();
        let after = ScimGroup {
            id: id.into(),
            display_name: name.into(),
            external_id: None,
            doc: serde_json::json!({ "displayName": name }),
            members: members.iter().map(|m| m.to_string()).collect(),
            version: before.as_ref().map_or(1, |b| b.version + 1),
            created_at: now,
            modified_at: now,
        };
        let effects = directory::group_change_effects(&self.app, before.as_ref(), Some(&after), CLIENT, now)
            .await
            .unwrap();
        let mut events = effects.events.clone();
        events.push(scim_event(
            if before.is_none() {
                EventKind::ScimGroupCreated
            } else {
                EventKind::ScimGroupUpdated
            },
            name,
            "members",
        ));
        let write = DirectoryWrite {
            change: ScimChange::PutGroup {
                group: after.clone(),
                expected_version: before.as_ref().map(|b| b.version),
                members: MemberChange::Set(after.members.clone()),
            },
            transitions: effects.transitions.clone(),
            revoked_tokens: effects.revoked_tokens.clone(),
            events,
        };
        commit(&self.app, &write).await.unwrap();
        directory::committed(&self.app, &write, None, Some(&after));
        self.groups.lock().insert(id.into(), after);
        effects
    }

    async fn delete_group(&self, id: &str) -> Effects {
        let before = self.groups.lock().get(id).cloned().unwrap();
        let now = jitgate_service::now();
        let effects = directory::group_change_effects(&self.app, Some(&before), None, CLIENT, now)
            .await
            .unwrap();
        let mut events = effects.events.clone();
        events.push(scim_event(EventKind::ScimGroupDeleted, &before.display_name, "deleted"));
        let write = DirectoryWrite {
            change: ScimChange::DeleteGroup {
                id: id.into(),
                expected_version: before.version,
            },
            transitions: effects.transitions.clone(),
            revoked_tokens: effects.revoked_tokens.clone(),
            events,
        };
        commit(&self.app, &write).await.unwrap();
        directory::committed(&self.app, &write, None, None);
        self.groups.lock().remove(id);
        effects
    }

    async fn root(&self) -> Identity {
        self.app
            .authenticate(&BearerOnly(&bearer("token-root")), None)
            .await
            .unwrap()
    }

    /// An API token an admin made for `principal` (an agent's when `agent_for`).
    async fn token_for(&self, principal: &str, agent_for: Option<&str>) -> String {
        let root = caller_for::<op::ManageTokens>(self.root().await).unwrap();
        let body = NewToken {
            principal: principal.into(),
            agent_for: agent_for.map(str::to_string),
            ..Default::default()
        };
        self.app.create_token(&root, &body).await.unwrap().1
    }

    async fn auth_token(&self, token: &str) -> Result<Identity, ServiceError> {
        self.app.authenticate(&BearerOnly(&bearer(token)), None).await
    }

    async fn auth_proxy(&self, principal: &str) -> Result<Identity, ServiceError> {
        self.app
            .authenticate(&ProxyUser(principal.as_bytes().to_vec()), loopback())
            .await
    }

    /// A browser session: the ID token as the web UI presents it.
    async fn auth_session(&self, principal: &str) -> Result<Identity, ServiceError> {
        let token = self.idp.id_token(principal);
        self.app.authenticate(&BearerOnly(&bearer(&token)), None).await
    }

    async fn allowed(&self, principal: &str, resource: &str, action: &str) -> bool {
        let checker = self.auth_token("token-checker").await.unwrap();
        self.app.check(&checker, principal, resource, action, None).await.allow
    }

    async fn request(&self, id: &str) -> Request {
        self.app.store.get_request(id).await.unwrap().unwrap()
    }

    async fn approve(&self, who: &Identity, id: &str) -> Result<Request, ServiceError> {
        let caller = caller_for::<op::ApproveRequest>(who.clone())?;
        self.app.approve(&caller, id, None).await
    }

    async fn events(&self, kind: &str) -> Vec<NewEvent> {
        self.app
            .store
            .audit_events(&AuditFilter {
                kind: Some(kind.into()),
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event)
            .collect()
    }
}

fn ask(resource: &str, action: &str) -> NewRequest {
    NewRequest {
        resource: resource.into(),
        action: action.into(),
        duration: None,
        reason: "OPS-1 directory test".into(),
        payload: None,
        break_glass: false,
        items: None,
    }
}

fn told(result: Result<Identity, ServiceError>) -> String {
    match result {
        Err(ServiceError::Unauthenticated(m)) => m,
        other => panic!("expected 401, got {other:?}"),
    }
}

/// ann in dev; bob, carol and erin in sre.
async fn team(b: &Bed) {
    for (id, p) in [
        ("u-ann", "ann"),
        ("u-bob", "bob"),
        ("u-carol", "carol"),
        ("u-erin", "erin"),
    ] {
        b.put_user(id, p, true, None).await;
    }
    b.put_group("g-dev", "dev", &["u-ann"]).await;
    b.put_group("g-sre", "sre", &["u-bob", "u-carol", "u-erin"]).await;
}

#[tokio::test]
async fn every_way_in_carries_provisioned_groups_and_a_deactivation_ends_everything_at_once() {
    let b = bed().await;
    team(&b).await;
    let ann_token = b.token_for("ann", None).await;
    let agent_token = b.token_for("claude-ann", Some("ann")).await;
    let ann = b.auth_token(&ann_token).await.unwrap();
    assert_eq!(ann.groups, ["dev"]);
    assert_eq!(b.auth_proxy("ann").await.unwrap().groups, ["dev"]);
    assert_eq!(b.auth_session("ann").await.unwrap().groups, ["dev"]);
    let agent = b.auth_token(&agent_token).await.unwrap();
    assert!(agent.in_group("dev") && agent.in_group("agents"), "{agent:?}");
    // Cedar sees the provisioned group: automatic staging access, for ann and her agent.
    let staging = b.app.file(&ann, &ask("staging-db", "read")).await.unwrap();
    assert_eq!(staging.status, RequestStatus::Approved);
    b.app.file(&agent, &ask("staging-db", "read")).await.unwrap();
    let pending = b.app.file(&ann, &ask("prod-db", "read")).await.unwrap();
    assert_eq!(pending.status, RequestStatus::Pending);
    assert!(b.allowed("ann", "staging-db", "read").await);
    assert!(b.allowed("claude-ann", "staging-db", "read").await);
    // Notifications reach the provisioned reviewers.
    assert_eq!(b.app.policy().members_of("sre"), ["bob", "carol", "erin"]);

    let effects = b.put_user("u-ann", "ann", false, None).await;
    assert_eq!(effects.revoked_tokens.len(), 2, "{effects:?}");
    assert_eq!(effects.transitions.len(), 3, "{effects:?}");
    // At once: checks, every credential.
    assert!(!b.allowed("ann", "staging-db", "read").await);
    assert!(!b.allowed("claude-ann", "staging-db", "read").await);
    assert_eq!(
        told(b.auth_token(&ann_token).await),
        "ann is deactivated in the directory"
    );
    assert_eq!(
        told(b.auth_token(&agent_token).await),
        "claude-ann acts for ann, who is deactivated in the directory"
    );
    assert_eq!(told(b.auth_proxy("ann").await), "ann is deactivated in the directory");
    assert_eq!(told(b.auth_session("ann").await), "ann is deactivated in the directory");
    // Not `Ann` either.
    assert_eq!(told(b.auth_proxy("Ann").await), "Ann is deactivated in the directory");
    // Their requests: cancelled, grants revoked, by the provisioning client, saying why.
    assert_eq!(b.request(&pending.id).await.status, RequestStatus::Cancelled);
    let grant = b.request(&staging.id).await.grant.unwrap();
    assert_eq!(grant.status, GrantStatus::Revoked);
    assert_eq!(grant.ended_by.as_deref(), Some(CLIENT));
    let revoked = b.events("grant.revoked").await;
    assert_eq!(revoked.len(), 2);
    assert!(revoked.iter().all(
        |e| e.actor == CLIENT && e.comment.as_deref() == Some("ann was deactivated in the directory by scim-okta")
    ));
    assert_eq!(b.events("token.revoked").await.len(), 2);
    // Filing with the identity held from before: refused, nothing written.
    let before = b.events("request.filed").await.len();
    assert!(matches!(
        b.app.file(&ann, &ask("staging-db", "read")).await,
        Err(ServiceError::Unauthenticated(m)) if m == "ann is deactivated in the directory"
    ));
    assert_eq!(b.events("request.filed").await.len(), before);
}

/// A reverse proxy's forward-auth asking for a user it asserts (with its own service
/// credential): a deactivated user is not let through, even with a live grant in memory
/// (revoked with the deactivation anyway).
#[tokio::test]
async fn forward_auth_refuses_a_deactivated_user_it_is_told_of() {
    use jitgate_service::forward_auth::{ForwardAuthAnswer, Original};
    struct Asserted(HashMap<&'static str, Vec<u8>>);
    impl Presented for Asserted {
        fn field(&self, name: &str) -> Option<&[u8]> {
            self.0.get(name).map(Vec::as_slice)
        }
    }
    let b = bed().await;
    team(&b).await;
    let ann = b.auth_proxy("ann").await.unwrap();
    b.app.file(&ann, &ask("grafana", "read")).await.unwrap();
    let headers = Asserted(HashMap::from([
        ("x-auth-user", b"ann".to_vec()),
        ("x-jitgate-proxy-authorization", bearer("token-checker")),
    ]));
    let original = || Original {
        method: "GET",
        host: "grafana.example.test",
        uri: "/",
    };
    let answer = b.app.forward_auth(&headers, None, original(), loopback()).await;
    assert!(
        matches!(&answer, ForwardAuthAnswer::Allow { principal, .. } if principal == "ann"),
        "{answer:?}"
    );
    b.put_user("u-ann", "ann", false, None).await;
    let answer = b.app.forward_auth(&headers, None, original(), loopback()).await;
    assert!(
        matches!(&answer, ForwardAuthAnswer::Unauthenticated { reason } if reason.contains("ann is deactivated in the directory")),
        "{answer:?}"
    );
}

#[tokio::test]
async fn reactivation_restores_nothing() {
    let b = bed().await;
    team(&b).await;
    let ann_token = b.token_for("ann", None).await;
    let ann = b.auth_token(&ann_token).await.unwrap();
    let staging = b.app.file(&ann, &ask("staging-db", "read")).await.unwrap();
    b.put_user("u-ann", "ann", false, None).await;
    let effects = b.put_user("u-ann", "ann", true, None).await;
    assert_eq!(effects, Effects::default());
    // Signing in works again, with the groups; the revoked token stays revoked, the grant
    // stays revoked.
    assert_eq!(b.auth_proxy("ann").await.unwrap().groups, ["dev"]);
    assert_eq!(told(b.auth_token(&ann_token).await), "the credentials are not valid");
    assert_eq!(b.request(&staging.id).await.grant.unwrap().status, GrantStatus::Revoked);
    assert!(!b.allowed("ann", "staging-db", "read").await);
}

#[tokio::test]
async fn a_deleted_user_is_refused_and_a_new_user_of_the_name_is_not() {
    let b = bed().await;
    team(&b).await;
    let ann_token = b.token_for("ann", None).await;
    let ann = b.auth_token(&ann_token).await.unwrap();
    let staging = b.app.file(&ann, &ask("staging-db", "read")).await.unwrap();
    let effects = b.delete_user("u-ann").await;
    assert_eq!(effects.transitions.len(), 1);
    assert_eq!(
        b.request(&staging.id).await.grant.unwrap().end_comment.as_deref(),
        Some("ann was deleted in the directory by scim-okta")
    );
    assert_eq!(told(b.auth_session("ann").await), "ann was deleted from the directory");
    assert_eq!(b.app.policy().members_of("dev"), ["alice"], "alice is directory.toml's");
    // Someone new provisioned under the name: not blocked, and holds nothing of the old.
    b.put_user("u-ann2", "ann", true, None).await;
    assert!(b.auth_session("ann").await.unwrap().groups.is_empty());
    assert_eq!(told(b.auth_token(&ann_token).await), "the credentials are not valid");
}

#[tokio::test]
async fn a_leavers_approvals_on_pending_requests_are_withdrawn() {
    let b = bed().await;
    team(&b).await;
    let ann = b.auth_proxy("ann").await.unwrap();
    let bob = b.auth_proxy("bob").await.unwrap();
    let carol = b.auth_proxy("carol").await.unwrap();
    let write = b.app.file(&ann, &ask("prod-db", "write")).await.unwrap();
    b.approve(&bob, &write.id).await.unwrap();
    b.put_user("u-bob", "bob", false, None).await;
    let after = b.request(&write.id).await;
    assert!(after.approvals.is_empty(), "{:?}", after.approvals);
    let withdrawn = b.events("request.approval_withdrawn").await;
    assert_eq!(withdrawn.len(), 1);
    assert_eq!(withdrawn[0].actor, CLIENT);
    assert_eq!(withdrawn[0].request_id.as_deref(), Some(write.id.as_str()));
    // Carol's approval alone does not grant: two are still needed.
    let one = b.approve(&carol, &write.id).await.unwrap();
    assert_eq!(one.status, RequestStatus::Pending, "{one:?}");
    // And bob cannot come back to give it.
    assert!(matches!(
        b.approve(&bob, &write.id).await,
        Err(ServiceError::Unauthenticated(_))
    ));
    assert_eq!(b.request(&write.id).await.status, RequestStatus::Pending);
}

#[tokio::test]
async fn a_provisioned_user_never_approves_their_own_request() {
    let b = bed().await;
    team(&b).await;
    // bob is in dev and sre.
    b.put_group("g-dev", "dev", &["u-ann", "u-bob"]).await;
    let bob = b.auth_proxy("bob").await.unwrap();
    assert_eq!(bob.groups, ["dev", "sre"]);
    let own = b.app.file(&bob, &ask("prod-db", "read")).await.unwrap();
    assert!(matches!(
        b.approve(&bob, &own.id).await,
        Err(ServiceError::Forbidden(m)) if m.contains("your own request")
    ));
    // Nor with a token made for his principal.
    let token = b.token_for("bob", None).await;
    let by_token = b.auth_token(&token).await.unwrap();
    assert!(matches!(
        b.approve(&by_token, &own.id).await,
        Err(ServiceError::Forbidden(_))
    ));
}

/// bob approves while his deactivation is under way (computed, not yet written): the mark
/// refuses the approval before its write. (The approval that committed before the mark and
/// undoes itself after: `an_approval_committed_just_before_the_deactivation_marks_the_reviewer_undoes_itself`.)
#[tokio::test]
async fn a_leavers_approval_while_the_deactivation_is_under_way_is_refused() {
    let b = bed().await;
    team(&b).await;
    let ann = b.auth_proxy("ann").await.unwrap();
    let bob = b.auth_proxy("bob").await.unwrap();
    let read = b.app.file(&ann, &ask("prod-db", "read")).await.unwrap();
    // bob's approval commits after the deactivation read the requests, before it is written.
    let app = b.app.clone();
    let id = read.id.clone();
    let bob2 = bob.clone();
    let raced = std::sync::Mutex::new(None);
    b.put_user_after("u-bob", "bob", false, None, |attempt| {
        if attempt == 0 {
            let app = app.clone();
            let id = id.clone();
            let bob = bob2.clone();
            let result = std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(async move {
                        let caller = caller_for::<op::ApproveRequest>(bob).unwrap();
                        app.approve(&caller, &id, None).await
                    })
            })
            .join()
            .unwrap();
            *raced.lock().unwrap() = Some(result);
        }
    })
    .await;
    let result = raced.lock().unwrap().take().unwrap();
    assert!(
        matches!(&result, Err(ServiceError::Unauthenticated(m)) if m == "bob is deactivated in the directory"),
        "{result:?}"
    );
    // The approval granted for a moment and was revoked at once: nothing stays allowed.
    let after = b.request(&read.id).await;
    assert_ne!(
        after.grant.as_ref().map(|g| g.status),
        Some(GrantStatus::Active),
        "{after:?}"
    );
    assert!(!b.allowed("ann", "prod-db", "read").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deactivations_and_approvals_never_leave_a_grant_given_after_the_deactivation_began() {
    let b = Arc::new(bed().await);
    team(&b).await;
    let ann = b.auth_proxy("ann").await.unwrap();
    for round in 0..6 {
        let id = format!("u-rev{round}");
        let principal = format!("rev{round}");
        b.put_user(&id, &principal, true, None).await;
        let members: Vec<String> = vec!["u-bob".into(), id.clone()];
        let members: Vec<&str> = members.iter().map(String::as_str).collect();
        b.put_group("g-sre", "sre", &members).await;
        let reviewer = b.auth_proxy(&principal).await.unwrap();
        let read = b.app.file(&ann, &ask("prod-db", "read")).await.unwrap();
        let began = jitgate_service::now();
        let approving = {
            let b = b.clone();
            let id = read.id.clone();
            tokio::spawn(async move { b.approve(&reviewer, &id).await })
        };
        let deactivating = {
            let b = b.clone();
            let id = id.clone();
            let principal = principal.clone();
            tokio::spawn(async move { b.put_user(&id, &principal, false, None).await })
        };
        let approval = approving.await.unwrap();
        deactivating.await.unwrap();
        let after = b.request(&read.id).await;
        let active = after.grant.as_ref().filter(|g| g.status == GrantStatus::Active);
        // The designed property: the reviewer's answer tells the truth. An approval that
        // committed before the deactivation marked the reviewer stands (answered Ok, the
        // grant active and allowed); one that met the mark, before or after its write, is
        // answered 401 and leaves nothing: no active grant, no approval of theirs on a request
        // still pending.
        match &approval {
            Ok(_) => {
                assert!(active.is_some(), "round {round}: approved, but {after:?}");
                assert!(after.approvals.iter().any(|a| a.reviewer == principal));
                assert!(after.approvals.iter().all(|a| a.at >= began));
                assert!(b.allowed("ann", "prod-db", "read").await, "round {round}");
            }
            Err(ServiceError::Unauthenticated(m)) => {
                assert_eq!(m, &format!("{principal} is deactivated in the directory"));
                assert!(active.is_none(), "round {round}: refused, but {after:?}");
                assert!(!b.allowed("ann", "prod-db", "read").await, "round {round}");
                if after.status == RequestStatus::Pending {
                    assert!(
                        !after.approvals.iter().any(|a| a.reviewer == principal),
                        "round {round}: {after:?}"
                    );
                }
            }
            Err(other) => panic!("round {round}: {other:?}"),
        }
        assert!(b.auth_proxy(&principal).await.is_err());
    }
}

#[tokio::test]
async fn a_request_filed_while_the_filer_is_being_deactivated_is_refused() {
    let b = bed().await;
    team(&b).await;
    let ann = b.auth_proxy("ann").await.unwrap();
    let app = b.app.clone();
    let filed = std::sync::Mutex::new(None);
    b.put_user_after("u-ann", "ann", false, None, |attempt| {
        if attempt == 0 {
            let app = app.clone();
            let ann = ann.clone();
            let result = std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(async move { app.file(&ann, &ask("staging-db", "read")).await })
            })
            .join()
            .unwrap();
            *filed.lock().unwrap() = Some(result);
        }
    })
    .await;
    let result = filed.lock().unwrap().take().unwrap();
    assert!(
        matches!(&result, Err(ServiceError::Unauthenticated(m)) if m == "ann is deactivated in the directory"),
        "{result:?}"
    );
    assert!(!b.allowed("ann", "staging-db", "read").await);
    // Refused before anything was written: the deactivation was under way.
    assert!(b.events("request.filed").await.is_empty());
}

/// Filing and deactivating at the same moment, many times: whichever commits first, ann
/// holds nothing once both are done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_filings_and_deactivations_leave_the_filer_nothing() {
    let b = Arc::new(bed().await);
    team(&b).await;
    for round in 0..8 {
        let id = format!("u-filer{round}");
        let principal = format!("filer{round}");
        b.put_user(&id, &principal, true, None).await;
        b.put_group("g-dev", "dev", &["u-ann", id.as_str()]).await;
        let filer = b.auth_proxy(&principal).await.unwrap();
        let filing = {
            let b = b.clone();
            tokio::spawn(async move {
                let auto = b.app.file(&filer, &ask("staging-db", "read")).await;
                let pending = b.app.file(&filer, &ask("prod-db", "read")).await;
                (auto, pending)
            })
        };
        let deactivating = {
            let b = b.clone();
            let id = id.clone();
            let principal = principal.clone();
            tokio::spawn(async move { b.put_user(&id, &principal, false, None).await })
        };
        let _ = filing.await.unwrap();
        deactivating.await.unwrap();
        assert!(!b.allowed(&principal, "staging-db", "read").await, "round {round}");
        let pending = b
            .app
            .store
            .list_requests(
                &jitgate_store::RequestFilter {
                    status: Some(RequestStatus::Pending),
                    requester: Some(principal.clone()),
                    limit: 10,
                    before: None,
                },
                jitgate_service::now(),
            )
            .await
            .unwrap();
        assert!(pending.is_empty(), "round {round}: {pending:?}");
    }
}

/// What a replica does on hearing of a leaver: what raced the change on another replica (a
/// request filed, an approval that completed a grant after the change was made) ends; an
/// approval given before the change stands.
#[tokio::test]
async fn a_replica_hearing_of_a_leaver_ends_what_raced_the_change() {
    let b = bed().await;
    team(&b).await;
    let ann = b.auth_proxy("ann").await.unwrap();
    let bob = b.auth_proxy("bob").await.unwrap();
    // Before the change: bob completes ann's read.
    let early = b.app.file(&ann, &ask("prod-db", "read")).await.unwrap();
    b.approve(&bob, &early.id).await.unwrap();
    // Further back than the clocks' skew a sweep allows for (5 s): an approval given within
    // it counts as racing the change.
    tokio::time::sleep(std::time::Duration::from_millis(5_100)).await;
    let made = jitgate_service::now();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    // After the change was made (on another replica, not heard here yet): bob completes
    // another, erin files.
    let late = b.app.file(&ann, &ask("prod-db", "read")).await.unwrap();
    b.approve(&bob, &late.id).await.unwrap();
    b.put_group("g-dev", "dev", &["u-ann", "u-erin"]).await;
    let erin = b.auth_proxy("erin").await.unwrap();
    let erins = b.app.file(&erin, &ask("staging-db", "read")).await.unwrap();
    // Heard now.
    let heard = |principal: &str| ScimUser {
        id: format!("u-{principal}"),
        user_name: principal.into(),
        principal: principal.into(),
        external_id: None,
        display_name: None,
        active: false,
        manager_id: None,
        doc: serde_json::json!({}),
        version: 9,
        created_at: made,
        modified_at: made,
    };
    b.app.directory().put_user(&heard("bob"));
    directory::sweep_leaver(&b.app, "bob", Some(made)).await.unwrap();
    assert_eq!(b.request(&early.id).await.grant.unwrap().status, GrantStatus::Active);
    let revoked = b.request(&late.id).await.grant.unwrap();
    assert_eq!(revoked.status, GrantStatus::Revoked);
    assert_eq!(revoked.ended_by.as_deref(), Some("system"));
    b.app.directory().put_user(&heard("erin"));
    directory::sweep_leaver(&b.app, "erin", Some(made)).await.unwrap();
    assert_eq!(b.request(&erins.id).await.grant.unwrap().status, GrantStatus::Revoked);
    assert!(!b.allowed("erin", "staging-db", "read").await);
    // directory.toml's principals are never swept.
    let alice = b.auth_proxy("alice").await.unwrap();
    let alices = b.app.file(&alice, &ask("staging-db", "read")).await.unwrap();
    directory::sweep_leaver(&b.app, "alice", None).await.unwrap();
    assert_eq!(b.request(&alices.id).await.grant.unwrap().status, GrantStatus::Active);
}

#[tokio::test]
async fn movers_lose_exactly_what_no_group_they_keep_allows() {
    let b = bed().await;
    team(&b).await;
    b.put_group("g-ops", "ops", &["u-ann"]).await;
    let ann = b.auth_proxy("ann").await.unwrap();
    assert_eq!(ann.groups, ["dev", "ops"]);
    let agent_token = b.token_for("claude-ann", Some("ann")).await;
    let agent = b.auth_token(&agent_token).await.unwrap();
    let staging = b.app.file(&ann, &ask("staging-db", "read")).await.unwrap();
    let agent_staging = b.app.file(&agent, &ask("staging-db", "read")).await.unwrap();
    let prod = b.app.file(&ann, &ask("prod-db", "read")).await.unwrap();
    let carol = b.auth_proxy("carol").await.unwrap();
    let bob = b.auth_proxy("bob").await.unwrap();
    // bob's approval of carol's write (2 from sre needed) counts while he is in sre.
    let carols = b.app.file(&carol, &ask("prod-db", "write")).await.unwrap();
    b.approve(&bob, &carols.id).await.unwrap();

    // ann leaves dev: ops still lets her (and her agent) read staging; prod-db read was dev's.
    let effects = b.put_group("g-dev", "dev", &[]).await;
    assert_eq!(effects.transitions.len(), 1, "{effects:?}");
    let cancelled = b.request(&prod.id).await;
    assert_eq!(cancelled.status, RequestStatus::Cancelled);
    assert_eq!(
        cancelled.closed_by.unwrap().comment.as_deref(),
        Some("ann left dev (scim-okta)")
    );
    assert!(b.allowed("ann", "staging-db", "read").await);
    assert!(b.allowed("claude-ann", "staging-db", "read").await);
    assert_eq!(b.auth_proxy("ann").await.unwrap().groups, ["ops"]);
    // The group deleted: nothing lets her any more.
    b.delete_group("g-ops").await;
    assert!(!b.allowed("ann", "staging-db", "read").await);
    assert!(!b.allowed("claude-ann", "staging-db", "read").await);
    for id in [&staging.id, &agent_staging.id] {
        let grant = b.request(id).await.grant.unwrap();
        assert_eq!(grant.status, GrantStatus::Revoked);
        assert_eq!(grant.end_comment.as_deref(), Some("ann left ops (scim-okta)"));
    }
    // bob leaves sre: his approval no longer counts; carol's request still pending.
    b.put_group("g-sre", "sre", &["u-carol", "u-erin"]).await;
    let after = b.request(&carols.id).await;
    assert!(after.approvals.is_empty(), "{after:?}");
    assert_eq!(after.status, RequestStatus::Pending);
}

#[tokio::test]
async fn members_after_an_edit_come_from_memory() {
    let b = bed().await;
    team(&b).await;
    let edit = MemberChange::Edit {
        add: vec!["u-ann".into(), "u-ann".into()],
        remove: vec!["u-bob".into(), "u-nobody".into()],
    };
    assert_eq!(
        directory::members_after(&b.app, "g-sre", &edit),
        ["u-ann", "u-carol", "u-erin"]
    );
    assert_eq!(
        directory::members_after(&b.app, "g-sre", &MemberChange::Keep),
        ["u-bob", "u-carol", "u-erin"]
    );
    assert_eq!(
        directory::members_after(&b.app, "g-sre", &MemberChange::Set(vec!["u-erin".into()])),
        ["u-erin"]
    );
    assert!(directory::members_after(&b.app, "g-none", &MemberChange::Keep).is_empty());
}

#[tokio::test]
async fn break_glass_counts_provisioned_groups_and_ends_with_them() {
    let b = bed().await;
    team(&b).await;
    b.put_group("g-oncall", "oncall", &["u-ann"]).await;
    let ann = b.auth_proxy("ann").await.unwrap();
    let glass = b
        .app
        .file(
            &ann,
            &NewRequest {
                break_glass: true,
                ..ask("prod-api", "deploy")
            },
        )
        .await
        .unwrap();
    assert_eq!(glass.status, RequestStatus::Approved);
    assert!(b.allowed("ann", "prod-api", "deploy").await);
    // Still in dev (a requester of prod-api deploy), but no longer on call: break-glass ends.
    b.put_group("g-oncall", "oncall", &[]).await;
    assert!(!b.allowed("ann", "prod-api", "deploy").await);
}

#[tokio::test]
async fn a_provisioned_group_too_small_at_filing_is_refused_clearly() {
    let b = bed().await;
    b.put_user("u-ann", "ann", true, None).await;
    b.put_user("u-bob", "bob", true, None).await;
    b.put_group("g-dev", "dev", &["u-ann"]).await;
    b.put_group("g-sre", "sre", &["u-bob"]).await;
    let ann = b.auth_proxy("ann").await.unwrap();
    match b.app.file(&ann, &ask("prod-db", "write")).await {
        Err(ServiceError::Forbidden(m)) => assert_eq!(
            m,
            "prod-db write needs 2 approvals from sre, but sre has 1 member besides ann who may approve: \
             add reviewers to sre in the identity provider"
        ),
        other => panic!("{other:?}"),
    }
    // A deactivated member does not count.
    b.put_user("u-carol", "carol", true, None).await;
    b.put_group("g-sre", "sre", &["u-bob", "u-carol"]).await;
    assert!(b.app.file(&ann, &ask("prod-db", "write")).await.is_ok());
    b.put_user("u-carol", "carol", false, None).await;
    assert!(matches!(
        b.app.file(&ann, &ask("prod-db", "write")).await,
        Err(ServiceError::Forbidden(m)) if m.contains("sre has 1 member besides ann")
    ));
}

#[tokio::test]
async fn the_identity_providers_manager_approves_a_manager_step() {
    let b = bed().await;
    team(&b).await;
    b.put_user("u-mia", "mia", true, None).await;
    b.put_user("u-dana", "dana", true, Some("u-mia")).await;
    b.put_group("g-dev", "dev", &["u-ann", "u-dana"]).await;
    let dana = b.auth_proxy("dana").await.unwrap();
    let payroll = b.app.file(&dana, &ask("payroll", "read")).await.unwrap();
    assert_eq!(payroll.requirement.steps, vec![jitgate_core::Step::principal("mia")]);
    let bob = b.auth_proxy("bob").await.unwrap();
    let by_bob = b.approve(&bob, &payroll.id).await;
    // Not his to review: he may not even see it.
    assert!(
        matches!(by_bob, Err(ServiceError::Forbidden(_) | ServiceError::NotFound(_))),
        "{by_bob:?}"
    );
    let mia = b.auth_proxy("mia").await.unwrap();
    assert_eq!(
        b.approve(&mia, &payroll.id).await.unwrap().status,
        RequestStatus::Approved
    );
    // ann has no manager anywhere: refused with the reason.
    let ann = b.auth_proxy("ann").await.unwrap();
    assert!(matches!(
        b.app.file(&ann, &ask("payroll", "read")).await,
        Err(ServiceError::Forbidden(m)) if m.contains("ann has no manager")
    ));
}

#[tokio::test]
async fn directory_toml_wins_over_the_identity_provider() {
    let b = bed().await;
    team(&b).await;
    // As if the file named alice after the identity provider had provisioned her (the
    // provisioning itself refuses the name: see the next test), inactive and in sre.
    b.app.directory().put_user(&ScimUser {
        id: "u-alice".into(),
        user_name: "alice".into(),
        principal: "alice".into(),
        external_id: None,
        display_name: None,
        active: false,
        manager_id: None,
        doc: serde_json::json!({}),
        version: 1,
        created_at: jitgate_service::now(),
        modified_at: jitgate_service::now(),
    });
    let alice = b.auth_proxy("alice").await.unwrap();
    assert_eq!(alice.groups, ["dev"]);
    assert!(b.app.file(&alice, &ask("staging-db", "read")).await.is_ok());
}

#[tokio::test]
async fn principals_and_group_names_that_collide_or_deceive_are_refused() {
    let b = bed().await;
    team(&b).await;
    b.token_for("claude-ann", Some("ann")).await;
    b.app.set_scim_settings(jitgate_service::scim::ScimSettings {
        principal_attribute: "userName".into(),
        principal_prefix: String::new(),
        foreign_prefixes: vec!["ci:".into(), "gh:".into()],
    });
    let problem = |p: &str, own: Option<&str>| directory::principal_problem(&b.app, p, own);
    for taken in [
        "alice",
        "Alice",
        "ALICE",
        "root",
        "claude-ann",
        "Claude-Ann",
        "ANN",
        "Bob",
    ] {
        assert!(problem(taken, None).is_some(), "{taken}");
    }
    assert!(problem("Alice", None).unwrap().contains("directory.toml"));
    // Its own principal, renamed in case only: its own.
    assert_eq!(problem("ANN", Some("u-ann")), None);
    assert!(problem("bob", Some("u-ann")).is_some());
    for foreign in ["ci:acme/app", "CI:acme/app", "gh:me"] {
        assert!(
            problem(foreign, None).unwrap().contains("another sign-in issuer"),
            "{foreign}"
        );
    }
    let long = "a".repeat(10_000);
    for deceiving in [
        "\u{430}nn",   // Cyrillic a
        "ann\u{200b}", // zero-width space
        "ann\u{0}",    // NUL
        "an\u{7}n",    // BEL
        "ann\u{202e}", // right-to-left override
        " ann",
        "",
        long.as_str(),
    ] {
        assert!(problem(deceiving, None).is_some(), "{deceiving:?}");
    }
    assert_eq!(problem("frank@example.com", None), None);

    for reserved in ["admins", "Admins", "ADMINS", "auditors", "Auditors", "agents", "AGENTS"] {
        assert!(
            directory::group_name_problem(reserved)
                .unwrap()
                .contains("jitgate's own roles"),
            "{reserved}"
        );
    }
    for deceiving in [
        "\u{430}dmins",
        "admins\u{200b}",
        "adm\u{0}ins",
        "sre\n",
        "s re",
        "",
        "user:bob",
        long.as_str(),
    ] {
        assert!(directory::group_name_problem(deceiving).is_some(), "{deceiving:?}");
    }
    assert_eq!(directory::group_name_problem("platform-sre"), None);
}

/// A NUL or control character a store let through into a group's name never becomes a group
/// of anyone's identity that could match a policy's group by a look-alike.
#[tokio::test]
async fn reserved_names_never_reach_an_identity_whatever_the_store_holds() {
    let b = bed().await;
    team(&b).await;
    // Written straight into memory, as if a store had let it through.
    b.app.directory().put_group(
        &ScimGroup {
            id: "g-admins".into(),
            display_name: "Admins".into(),
            external_id: None,
            doc: serde_json::json!({}),
            members: Vec::new(),
            version: 1,
            created_at: jitgate_service::now(),
            modified_at: jitgate_service::now(),
        },
        &MemberChange::Set(vec!["u-ann".into()]),
    );
    let ann = b.auth_proxy("ann").await.unwrap();
    assert_eq!(ann.groups, ["dev"]);
    assert!(!ann.is_admin());
}

#[tokio::test]
async fn ten_thousand_users_in_a_thousand_groups_authenticate_from_memory() {
    let b = bed().await;
    let users: Vec<ScimUser> = (0..10_000)
        .map(|i| ScimUser {
            id: format!("u{i}"),
            user_name: format!("user{i}"),
            principal: format!("user{i}"),
            external_id: None,
            display_name: None,
            active: true,
            manager_id: None,
            doc: serde_json::json!({}),
            version: 1,
            created_at: jitgate_service::now(),
            modified_at: jitgate_service::now(),
        })
        .collect();
    let groups: Vec<ScimGroup> = (0..1_000)
        .map(|g| ScimGroup {
            id: format!("g{g}"),
            display_name: if g == 0 { "dev".into() } else { format!("group{g}") },
            external_id: None,
            doc: serde_json::json!({}),
            members: (0..50).map(|k| format!("u{}", (g * 10 + k) % 10_000)).collect(),
            version: 1,
            created_at: jitgate_service::now(),
            modified_at: jitgate_service::now(),
        })
        .collect();
    b.app.directory().load(&jitgate_core::scim::ScimSnapshot {
        users,
        departed: Vec::new(),
        groups,
    });
    let started = std::time::Instant::now();
    for i in 0..1_000 {
        let who = b.auth_proxy(&format!("user{i}")).await.unwrap();
        assert!(!who.groups.is_empty());
    }
    let elapsed = started.elapsed();
    // A debug build on a shared machine: generous, but far from a database round trip each.
    assert!(elapsed < std::time::Duration::from_secs(5), "{elapsed:?}");
    assert!(b.auth_proxy("user5").await.unwrap().in_group("dev"));
}

/// Two replicas on one PostgreSQL: a user provisioned and deactivated on A; B's check denies
/// within a second, and B refuses the user's credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_write_deactivation_reaches_the_other_replica_within_a_second() {
    let server = pg::Postgres::start();
    server.create_database("directory");
    let url = server.url("directory");
    let store_a: Arc<dyn Store> = Arc::new(jitgate_store::PostgresStore::open(&url).await.unwrap());
    let store_b: Arc<dyn Store> = Arc::new(jitgate_store::PostgresStore::open(&url).await.unwrap());
    let a = bed_on(store_a, tempfile::tempdir().unwrap()).await;
    let b = bed_on(store_b, tempfile::tempdir().unwrap()).await;
    let _follow_a = tokio::spawn(jitgate_service::background::replicas::follow(a.app.clone()));
    let _follow_b = tokio::spawn(jitgate_service::background::replicas::follow(b.app.clone()));
    followed(&a.app).await;
    followed(&b.app).await;
    team(&a).await;
    let token = a.token_for("ann", None).await;
    // B hears of ann and her groups.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let ann = loop {
        match b.auth_token(&token).await {
            Ok(ann) if ann.in_group("dev") => break ann,
            _ if std::time::Instant::now() < deadline => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            other => panic!("B never saw ann in dev: {other:?}"),
        }
    };
    b.app.file(&ann, &ask("staging-db", "read")).await.unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !a.allowed("ann", "staging-db", "read").await {
        assert!(std::time::Instant::now() < until, "A never heard of B's grant");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    a.put_user("u-ann", "ann", false, None).await;
    let deactivated = std::time::Instant::now();
    while b.allowed("ann", "staging-db", "read").await || b.auth_proxy("ann").await.is_ok() {
        assert!(
            deactivated.elapsed() < std::time::Duration::from_secs(1),
            "B still allows ann a second after her deactivation on A; B's follower: {}",
            follower_state(&b.app)
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(told(b.auth_token(&token).await), "ann is deactivated in the directory");
}

/// What a replica's follower has done, for a failure of a one-second bar to point at a
/// cause (resyncs after a lost feed, which mean reconnecting) rather than just "too slow".
fn follower_state(app: &App) -> String {
    app.metrics
        .encode()
        .lines()
        .filter(|line| line.contains("replica") && !line.starts_with('#'))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Two replicas on one PostgreSQL, each following the other's changes: a deactivation made
/// on A reaches B's check index and B's token table within a second (the grants' and tokens'
/// own notices), whatever B knows of the directory yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deactivation_on_one_replica_ends_access_on_the_other_within_a_second() {
    let server = pg::Postgres::start();
    server.create_database("leavers");
    let url = server.url("leavers");
    let store_a: Arc<dyn Store> = Arc::new(jitgate_store::PostgresStore::open(&url).await.unwrap());
    let store_b: Arc<dyn Store> = Arc::new(jitgate_store::PostgresStore::open(&url).await.unwrap());
    let a = bed_on(store_a, tempfile::tempdir().unwrap()).await;
    let b = bed_on(store_b, tempfile::tempdir().unwrap()).await;
    let _follow_a = tokio::spawn(jitgate_service::background::replicas::follow(a.app.clone()));
    let _follow_b = tokio::spawn(jitgate_service::background::replicas::follow(b.app.clone()));
    followed(&a.app).await;
    followed(&b.app).await;
    team(&a).await;
    let token = a.token_for("ann", None).await;
    let ann = a.auth_token(&token).await.unwrap();
    let staging = a.app.file(&ann, &ask("staging-db", "read")).await.unwrap();
    let pending = a.app.file(&ann, &ask("prod-db", "read")).await.unwrap();
    let heard = std::time::Instant::now();
    while !b.allowed("ann", "staging-db", "read").await || b.auth_token(&token).await.is_err() {
        assert!(
            heard.elapsed() < std::time::Duration::from_secs(5),
            "B never heard of A's grant and token"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    a.put_user("u-ann", "ann", false, None).await;
    let deactivated = std::time::Instant::now();
    assert!(!a.allowed("ann", "staging-db", "read").await);
    while b.allowed("ann", "staging-db", "read").await || b.auth_token(&token).await.is_ok() {
        assert!(
            deactivated.elapsed() < std::time::Duration::from_secs(1),
            "B still allows ann a second after her deactivation on A; B's follower: {}",
            follower_state(&b.app)
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(b.request(&pending.id).await.status, RequestStatus::Cancelled);
    assert_eq!(
        b.request(&staging.id).await.grant.unwrap().ended_by.as_deref(),
        Some(CLIENT)
    );
}

/// A leaver's principal in another spelling (ASCII case aside) is the same principal: what
/// `dana@corp.com` (a sign-in of another spelling, a token made for it) holds ends when the
/// identity provider deactivates `Dana@corp.com`.
#[tokio::test]
async fn a_leaver_loses_what_every_spelling_of_their_principal_holds() {
    let b = bed().await;
    team(&b).await;
    b.put_user("u-dana", "Dana@corp.com", true, None).await;
    let root = caller_for::<op::ManageTokens>(b.root().await).unwrap();
    let body = NewToken {
        principal: "dana@corp.com".into(),
        groups: vec!["dev".into(), "sre".into()],
        ..Default::default()
    };
    let token = b.app.create_token(&root, &body).await.unwrap().1;
    let dana = b.auth_token(&token).await.unwrap();
    let staging = b.app.file(&dana, &ask("staging-db", "read")).await.unwrap();
    let pending = b.app.file(&dana, &ask("prod-db", "read")).await.unwrap();
    let carol = b.auth_proxy("carol").await.unwrap();
    let write = b.app.file(&carol, &ask("prod-db", "write")).await.unwrap();
    b.approve(&dana, &write.id).await.unwrap();
    assert!(b.allowed("dana@corp.com", "staging-db", "read").await);

    let effects = b.put_user("u-dana", "Dana@corp.com", false, None).await;
    assert_eq!(effects.revoked_tokens.len(), 1, "{effects:?}");
    assert!(!b.allowed("dana@corp.com", "staging-db", "read").await);
    assert_eq!(b.request(&staging.id).await.grant.unwrap().status, GrantStatus::Revoked);
    assert_eq!(b.request(&pending.id).await.status, RequestStatus::Cancelled);
    let write = b.request(&write.id).await;
    assert!(write.approvals.is_empty(), "{write:?}");
    assert_eq!(
        told(b.auth_token(&token).await),
        "dana@corp.com is deactivated in the directory"
    );
}

/// A replica on database `db` of `server`, loading the directory as it stands.
async fn pg_bed(server: &pg::Postgres, db: &str) -> Bed {
    let store: Arc<dyn Store> = Arc::new(jitgate_store::PostgresStore::open(&server.url(db)).await.unwrap());
    bed_on(store, tempfile::tempdir().unwrap()).await
}

/// A deletion on A, heard by B (through the follower's `refresh_user`) after bob, on B, gave
/// the approval that completed ann's request: the grant ends on B, though the deletion's
/// moment is not kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_hearing_of_a_deletion_ends_grants_the_leavers_racing_approval_completed() {
    let server = pg::Postgres::start();
    server.create_database("deleted");
    let a = pg_bed(&server, "deleted").await;
    team(&a).await;
    let b = pg_bed(&server, "deleted").await;
    let ann = b.auth_proxy("ann").await.unwrap();
    let bob = b.auth_proxy("bob").await.unwrap();
    let read = b.app.file(&ann, &ask("prod-db", "read")).await.unwrap();
    a.delete_user("u-bob").await;
    // B has not heard yet: bob's approval goes through there.
    let approved = b.approve(&bob, &read.id).await.unwrap();
    assert_eq!(approved.status, RequestStatus::Approved);
    assert!(b.allowed("ann", "prod-db", "read").await);
    directory::refresh_user(&b.app, "u-bob").await.unwrap();
    let grant = b.request(&read.id).await.grant.unwrap();
    assert_eq!(grant.status, GrantStatus::Revoked, "{grant:?}");
    assert_eq!(grant.ended_by.as_deref(), Some("system"));
    assert!(!b.allowed("ann", "prod-db", "read").await);
    assert_eq!(told(b.auth_proxy("bob").await), "bob was deleted from the directory");
}

/// A replica that hears of a deactivation only through a full reload of the directory (its
/// follower starting, a gap caught up on, too many notices at once) still sweeps the leaver:
/// the approval bob gave on B after A deactivated him ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_directory_reload_sweeps_each_newly_blocked_principal() {
    let server = pg::Postgres::start();
    server.create_database("reload");
    let a = pg_bed(&server, "reload").await;
    team(&a).await;
    let b = pg_bed(&server, "reload").await;
    let ann = b.auth_proxy("ann").await.unwrap();
    let bob = b.auth_proxy("bob").await.unwrap();
    let read = b.app.file(&ann, &ask("prod-db", "read")).await.unwrap();
    a.put_user("u-bob", "bob", false, None).await;
    b.approve(&bob, &read.id).await.unwrap();
    assert!(b.allowed("ann", "prod-db", "read").await);
    // B's follower starts: one full load, the directory with it, no per-user notice.
    let _follow_b = tokio::spawn(jitgate_service::background::replicas::follow(b.app.clone()));
    followed(&b.app).await;
    let started = std::time::Instant::now();
    while b.allowed("ann", "prod-db", "read").await {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "B's reload never swept bob's racing approval"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let grant = b.request(&read.id).await.grant.unwrap();
    assert_eq!(grant.status, GrantStatus::Revoked, "{grant:?}");
    assert_eq!(told(b.auth_proxy("bob").await), "bob is deactivated in the directory");
}

/// A renamed user's old principal leaves: refused at once on the replica that wrote the
/// rename, and on another replica that hears of it (which sweeps what the old principal's
/// approval completed there meanwhile); the new principal works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_users_old_principal_is_blocked_and_swept_on_every_replica() {
    let server = pg::Postgres::start();
    server.create_database("renamed");
    let a = pg_bed(&server, "renamed").await;
    team(&a).await;
    let b = pg_bed(&server, "renamed").await;
    let ann = b.auth_proxy("ann").await.unwrap();
    let bob = b.auth_proxy("bob").await.unwrap();
    let read = b.app.file(&ann, &ask("prod-db", "read")).await.unwrap();
    a.put_user("u-bob", "robert", true, None).await;
    assert_eq!(told(a.auth_proxy("bob").await), "bob was renamed in the directory");
    assert_eq!(told(a.auth_proxy("BOB").await), "BOB was renamed in the directory");
    assert_eq!(a.auth_proxy("robert").await.unwrap().groups, ["sre"]);
    // B has not heard yet: bob's approval goes through there.
    b.approve(&bob, &read.id).await.unwrap();
    assert!(b.allowed("ann", "prod-db", "read").await);
    directory::refresh_user(&b.app, "u-bob").await.unwrap();
    let grant = b.request(&read.id).await.grant.unwrap();
    assert_eq!(grant.status, GrantStatus::Revoked, "{grant:?}");
    assert!(!b.allowed("ann", "prod-db", "read").await);
    assert_eq!(told(b.auth_proxy("bob").await), "bob was renamed in the directory");
    assert_eq!(b.auth_proxy("robert").await.unwrap().groups, ["sre"]);
    // A user given the name again holds it: not blocked.
    a.put_user("u-bob2", "bob", true, None).await;
    assert!(a.auth_proxy("bob").await.is_ok());
}

/// A service's token names a principal the identity provider cannot take (in any case), and
/// a provisioned user of that name (provisioned before the token, say) neither gives the
/// service groups nor blocks or ends it.
#[tokio::test]
async fn a_service_tokens_principal_is_never_the_identity_providers() {
    let b = bed().await;
    team(&b).await;
    let root = caller_for::<op::ManageTokens>(b.root().await).unwrap();
    let body = NewToken {
        principal: "deployer".into(),
        service: true,
        ..Default::default()
    };
    let service = b.app.create_token(&root, &body).await.unwrap().1;
    for taken in ["deployer", "Deployer", "DEPLOYER"] {
        let problem = directory::principal_problem(&b.app, taken, None).unwrap_or_default();
        assert!(problem.contains("a service's token"), "{taken}: {problem:?}");
    }
    // Provisioned anyway (the store does not ask): in ops, then deactivated.
    b.put_user("u-dep", "deployer", true, None).await;
    b.put_group("g-ops", "ops", &["u-dep"]).await;
    let who = b.auth_token(&service).await.unwrap();
    assert!(who.groups.is_empty(), "{who:?}");
    let effects = b.put_user("u-dep", "deployer", false, None).await;
    assert!(effects.revoked_tokens.is_empty(), "{effects:?}");
    let who = b.auth_token(&service).await.unwrap();
    assert_eq!(who.kind, jitgate_core::PrincipalKind::Service);
}

/// A token-table rebuild from a list read before a deactivation revoked a token, landing
/// after it (a reload racing the change), never brings the token back.
#[tokio::test]
async fn a_stale_token_list_never_undoes_a_revocation() {
    let b = bed().await;
    team(&b).await;
    let token = b.token_for("ann", None).await;
    let stale = b.app.store.list_tokens().await.unwrap();
    b.put_user("u-ann", "ann", false, None).await;
    // Active again (so the directory's block does not hide the token's state).
    b.put_user("u-ann", "ann", true, None).await;
    assert_eq!(told(b.auth_token(&token).await), "the credentials are not valid");
    b.app.authenticator().rebuild(&b.app.policy(), Some(stale));
    assert_eq!(told(b.auth_token(&token).await), "the credentials are not valid");
}

/// Movers lose only what the directory gave them and the change took away: ann leaves dev
/// in the identity provider, but a token of hers carries dev of its own, so her request
/// filed with it, and bob's approval through a token's sre, stay; erin, whose only sre was
/// the identity provider's, loses her request.
#[tokio::test]
async fn a_movers_token_groups_keep_what_they_allow() {
    let b = bed().await;
    team(&b).await;
    let root = caller_for::<op::ManageTokens>(b.root().await).unwrap();
    let mut tokens = HashMap::new();
    for (principal, group) in [("ann", "dev"), ("bob", "sre")] {
        let body = NewToken {
            principal: principal.into(),
            groups: vec![group.into()],
            ..Default::default()
        };
        tokens.insert(principal, b.app.create_token(&root, &body).await.unwrap().1);
    }
    let ann = b.auth_token(&tokens["ann"]).await.unwrap();
    let bob = b.auth_token(&tokens["bob"]).await.unwrap();
    let erin = b.auth_proxy("erin").await.unwrap();
    let read = b.app.file(&ann, &ask("prod-db", "read")).await.unwrap();
    let carol = b.auth_proxy("carol").await.unwrap();
    let write = b.app.file(&carol, &ask("prod-db", "write")).await.unwrap();
    b.approve(&bob, &write.id).await.unwrap();
    let erins = b.app.file(&erin, &ask("prod-db", "write")).await.unwrap();
    // ann out of dev, bob and erin out of sre.
    b.put_group("g-dev", "dev", &[]).await;
    b.put_group("g-sre", "sre", &["u-carol"]).await;
    assert_eq!(b.request(&read.id).await.status, RequestStatus::Pending);
    let write = b.request(&write.id).await;
    assert_eq!(write.approvals.len(), 1, "{write:?}");
    assert_eq!(write.approvals[0].reviewer, "bob");
    assert_eq!(b.request(&erins.id).await.status, RequestStatus::Cancelled);
}

/// A leaver's write that fails (here: another client changed the user first) leaves no
/// leaving mark once the edge says so: ann files again at once. A rename in case alone ends
/// nothing and locks nobody out.
#[tokio::test]
async fn a_failed_leavers_write_and_a_case_only_rename_leave_no_one_locked_out() {
    let b = bed().await;
    team(&b).await;
    let ann = b.auth_proxy("ann").await.unwrap();
    let before = b.users.lock().get("u-ann").cloned().unwrap();
    let after = ScimUser {
        active: false,
        version: before.version + 1,
        ..before.clone()
    };
    let effects = directory::user_change_effects(&b.app, Some(&before), Some(&after), CLIENT, jitgate_service::now())
        .await
        .unwrap();
    // Marked while the write is under way: filing is refused.
    assert!(matches!(
        b.app.file(&ann, &ask("staging-db", "read")).await,
        Err(ServiceError::Unauthenticated(_))
    ));
    let stale = DirectoryWrite {
        change: ScimChange::PutUser {
            user: after.clone(),
            expected_version: Some(before.version + 7),
        },
        transitions: effects.transitions,
        revoked_tokens: effects.revoked_tokens,
        events: vec![scim_event(EventKind::ScimUserDeactivated, "ann", "active false")],
    };
    assert!(matches!(commit(&b.app, &stale).await, Err(StoreError::Conflict)));
    directory::write_failed(&b.app, Some(&before), Some(&after));
    let filed = b.app.file(&ann, &ask("staging-db", "read")).await.unwrap();
    assert!(b.allowed("ann", "staging-db", "read").await);

    // Case alone: nothing ends, nobody is locked out, in either spelling.
    let effects = b.put_user("u-ann", "Ann", true, None).await;
    assert_eq!(effects, Effects::default());
    assert!(b.allowed("ann", "staging-db", "read").await);
    assert_eq!(b.request(&filed.id).await.grant.unwrap().status, GrantStatus::Active);
    let big_ann = b.auth_proxy("Ann").await.unwrap();
    assert_eq!(big_ann.groups, ["dev"]);
    b.app.file(&big_ann, &ask("grafana", "read")).await.unwrap();
    assert!(b.auth_proxy("ann").await.is_ok());
}

/// The after-commit look of an approval: bob's approval passes the look before its write
/// (nothing marks him yet), commits, and only then does a deactivation of bob mark him (run
/// by the store right after that commit). The approval undoes itself: the grant it completed
/// is revoked by the system ("undone: it raced the change"), and bob is told he is
/// deactivated.
#[tokio::test]
async fn an_approval_committed_just_before_the_deactivation_marks_the_reviewer_undoes_itself() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = jitgate_store::open(&format!("sqlite://{}", dir.path().join("jitgate.db").display()))
        .await
        .unwrap();
    let hooked = Arc::new(hooked::Hooked::new(sqlite));
    let b = bed_on(hooked.clone(), dir).await;
    team(&b).await;
    let ann = b.auth_proxy("ann").await.unwrap();
    let bob = b.auth_proxy("bob").await.unwrap();
    let read = b.app.file(&ann, &ask("prod-db", "read")).await.unwrap();
    let before = b.users.lock().get("u-bob").cloned().unwrap();
    let after = ScimUser {
        active: false,
        version: before.version + 1,
        modified_at: jitgate_service::now(),
        ..before.clone()
    };
    let computed: Arc<Mutex<Option<Effects>>> = Arc::new(Mutex::new(None));
    {
        let app = b.app.clone();
        let (before, after, computed) = (before.clone(), after.clone(), computed.clone());
        *hooked.after_save.lock() = Some(Box::new(move || {
            Box::pin(async move {
                let effects =
                    directory::user_change_effects(&app, Some(&before), Some(&after), CLIENT, jitgate_service::now())
                        .await
                        .unwrap();
                *computed.lock() = Some(effects);
            })
        }));
    }
    let result = b.approve(&bob, &read.id).await;
    assert!(
        matches!(&result, Err(ServiceError::Unauthenticated(m)) if m == "bob is deactivated in the directory"),
        "{result:?}"
    );
    let effects = computed
        .lock()
        .take()
        .expect("the deactivation ran between the write and the look");
    let grant = b.request(&read.id).await.grant.unwrap();
    assert_eq!(grant.status, GrantStatus::Revoked, "{grant:?}");
    assert_eq!(grant.ended_by.as_deref(), Some("system"));
    assert!(
        grant
            .end_comment
            .as_deref()
            .is_some_and(|c| c.ends_with("undone: it raced the change")),
        "{grant:?}"
    );
    assert!(!b.allowed("ann", "prod-db", "read").await);
    // The deactivation commits as computed (the approval was not pending when it read).
    let mut events = effects.events.clone();
    events.push(scim_event(EventKind::ScimUserDeactivated, "bob", "active false"));
    let write = DirectoryWrite {
        change: ScimChange::PutUser {
            user: after.clone(),
            expected_version: Some(before.version),
        },
        transitions: effects.transitions,
        revoked_tokens: effects.revoked_tokens,
        events,
    };
    commit(&b.app, &write).await.unwrap();
    directory::committed(&b.app, &write, Some(&after), None);
    assert!(!b.allowed("ann", "prod-db", "read").await);
    assert_eq!(told(b.auth_proxy("bob").await), "bob is deactivated in the directory");
}

/// Case variants on two replicas: the identity provider's `Dave` is deactivated on A, while
/// on B `dave` (a token made for that spelling) holds a grant filed there and not yet heard
/// by A; B, hearing the change through the follower's `refresh_user`, ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_ends_what_a_leavers_other_spelling_holds_there() {
    let server = pg::Postgres::start();
    server.create_database("spelling");
    let a = pg_bed(&server, "spelling").await;
    team(&a).await;
    a.put_user("u-dave", "Dave", true, None).await;
    let b = pg_bed(&server, "spelling").await;
    let root = caller_for::<op::ManageTokens>(b.root().await).unwrap();
    let body = NewToken {
        principal: "dave".into(),
        groups: vec!["dev".into()],
        ..Default::default()
    };
    let token = b.app.create_token(&root, &body).await.unwrap().1;
    let dave = b.auth_token(&token).await.unwrap();
    let staging = b.app.file(&dave, &ask("staging-db", "read")).await.unwrap();
    assert!(b.allowed("dave", "staging-db", "read").await);
    a.put_user("u-dave", "Dave", false, None).await;
    directory::refresh_user(&b.app, "u-dave").await.unwrap();
    assert!(!b.allowed("dave", "staging-db", "read").await);
    assert_eq!(b.request(&staging.id).await.grant.unwrap().status, GrantStatus::Revoked);
    assert_eq!(told(b.auth_token(&token).await), "dave is deactivated in the directory");
}

/// The sweep of `a_replica_hearing_of_a_leaver_ends_what_raced_the_change`, through the
/// follower's path on two replicas: A deactivates bob; on B, which has not heard, bob's
/// approval completes ann's request; B's follower hears the change (`refresh_user`) and
/// ends the grant, while an approval bob gave well before the change stands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_following_the_change_ends_the_leavers_racing_approval() {
    let server = pg::Postgres::start();
    server.create_database("sweep");
    let a = pg_bed(&server, "sweep").await;
    team(&a).await;
    let b = pg_bed(&server, "sweep").await;
    let ann = b.auth_proxy("ann").await.unwrap();
    let bob = b.auth_proxy("bob").await.unwrap();
    let early = b.app.file(&ann, &ask("prod-db", "read")).await.unwrap();
    b.approve(&bob, &early.id).await.unwrap();
    // Further back than the clocks' skew a sweep allows for.
    tokio::time::sleep(std::time::Duration::from_millis(5_100)).await;
    let late = b.app.file(&ann, &ask("prod-db", "read")).await.unwrap();
    a.put_user("u-bob", "bob", false, None).await;
    b.approve(&bob, &late.id).await.unwrap();
    directory::refresh_user(&b.app, "u-bob").await.unwrap();
    assert_eq!(b.request(&early.id).await.grant.unwrap().status, GrantStatus::Active);
    let revoked = b.request(&late.id).await.grant.unwrap();
    assert_eq!(revoked.status, GrantStatus::Revoked, "{revoked:?}");
    assert_eq!(revoked.ended_by.as_deref(), Some("system"));
    assert_eq!(told(b.auth_proxy("bob").await), "bob is deactivated in the directory");
}

/// Until `app`'s replica follower has loaded everything once (its start): what is provisioned
/// after is heard as changes.
async fn followed(app: &App) {
    let started = std::time::Instant::now();
    loop {
        let loaded = app
            .metrics
            .replica_resyncs
            .get_or_create(&jitgate_service::metrics::OutcomeLabel { outcome: "full".into() })
            .get();
        if loaded > 0 {
            return;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the follower never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[path = "support/postgres.rs"]
mod pg;

#[path = "support/hooked.rs"]
mod hooked;

#[path = "support/offline.rs"]
mod offline;
