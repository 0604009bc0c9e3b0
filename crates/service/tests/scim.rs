//! The SCIM use cases (`jitgate_service::scim`) on a real SQLite store, wrapped in a store
//! that can make a write answer `Unavailable` after it committed (the bounded write timed out)
//! and make reads fail: what a write that timed out leaves behind, and the review findings on
//! retries, `If-Match` and the manager reference.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jitgate_core::scim::ScimUser;
use jitgate_core::Identity;
use jitgate_service::auth::{caller_for, config::AuthConfig, op, Authenticator, BearerOnly};
use jitgate_service::inputs::NewRequest;
use jitgate_service::scim::{self, ScimClient, ScimFailure};
use jitgate_service::{App, ServiceError};
use offline::{NoFetch, ProxyUser};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;

const DIRECTORY: &str = r#"
[groups]
provisioned = ["dev", "sre"]

[[principal]]
name = "checker"
service = true
token = "token-checker"
"#;

const WORKFLOWS: &str = r#"
[[workflow]]
resource = "staging-db"
action = "read"
requesters = ["dev"]
auto_approve = true

[[workflow]]
resource = "prod-db"
action = "read"
requesters = ["dev"]
steps = [{ group = "sre", approvals = 1 }]
"#;

const FORWARD_AUTH: &str = r#"
user_header = "X-Auth-User"
services = ["checker"]
trusted_proxies = ["127.0.0.1/32"]
"#;

struct Bed {
    app: Arc<App>,
    store: Arc<hooked::Hooked>,
    client: ScimClient,
    _dir: tempfile::TempDir,
}

async fn bed() -> Bed {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = jitgate_store::open(&format!("sqlite://{}", dir.path().join("jitgate.db").display()))
        .await
        .unwrap();
    let store = Arc::new(hooked::Hooked::new(sqlite));
    let policy = jitgate_policy::Policy::from_texts_with_catalog(DIRECTORY, WORKFLOWS, None, &[], &[])
        .unwrap_or_else(|e| panic!("{e:?}"));
    let auth: AuthConfig = toml::from_str(
        r#"
[trusted_proxy]
user_header = "X-Forwarded-User"
sources = ["127.0.0.1/32"]
"#,
    )
    .unwrap();
    let authenticator = Authenticator::new(&auth, Arc::new(NoFetch)).await.unwrap();
    let notifier =
        jitgate_service::notify::Notifier::new(None, None, "127.0.0.1:0".parse().unwrap(), Vec::new()).unwrap();
    let app = App::new(
        store.clone(),
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
        store,
        client: ScimClient {
            principal: "scim-okta".into(),
        },
        _dir: dir,
    }
}

fn user_body(name: &str) -> serde_json::Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "active": true,
    })
}

fn deactivate() -> serde_json::Value {
    json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{ "op": "replace", "path": "active", "value": false }],
    })
}

fn status(result: &Result<impl std::fmt::Debug, ScimFailure>) -> u16 {
    match result {
        Ok(_) => 200,
        Err(e) => e.error().status,
    }
}

impl Bed {
    async fn create_user(&self, name: &str) -> ScimUser {
        scim::create_user(&self.app, &self.client, &user_body(name))
            .await
            .unwrap()
    }

    /// `name`, in group dev (which may file staging-db read, auto-approved).
    async fn developer(&self, name: &str) -> ScimUser {
        let user = self.create_user(name).await;
        let group = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "dev",
            "members": [{ "value": user.id }],
        });
        scim::create_group(&self.app, &self.client, &group).await.unwrap();
        user
    }

    async fn auth_proxy(&self, principal: &str) -> Result<Identity, ServiceError> {
        self.app
            .authenticate(
                &ProxyUser(principal.as_bytes().to_vec()),
                Some("127.0.0.1".parse().unwrap()),
            )
            .await
    }

    /// An active grant of staging-db read for `principal`, its request id.
    async fn grant(&self, principal: &str) -> String {
        let who = self.auth_proxy(principal).await.unwrap();
        let ask = NewRequest {
            resource: "staging-db".into(),
            action: "read".into(),
            duration: None,
            reason: "OPS-1 scim test".into(),
            payload: None,
            break_glass: false,
            items: None,
        };
        let request = self.app.file(&who, &ask).await.unwrap();
        assert!(self.allowed(principal).await, "the grant was given");
        request.id
    }

    async fn allowed(&self, principal: &str) -> bool {
        self.allowed_to(principal, "staging-db").await
    }

    async fn allowed_to(&self, principal: &str, resource: &str) -> bool {
        let checker = self
            .app
            .authenticate(&BearerOnly(b"Bearer token-checker"), None)
            .await
            .unwrap();
        self.app.check(&checker, principal, resource, "read", None).await.allow
    }

    async fn grant_live_in_store(&self, request_id: &str) -> bool {
        let request = self.app.store.get_request(request_id).await.unwrap().unwrap();
        let live = request.grants().any(|g| g.is_live(jitgate_service::now()));
        live
    }
}

/// A deactivation whose write timed out but committed: the server reads the user again, sees
/// its own write, and answers success with everything a commit does here — ann is blocked,
/// and her grant (revoked in the write) is gone from the check index too.
#[tokio::test]
async fn a_deactivation_that_timed_out_but_committed_is_answered_and_applied() {
    let b = bed().await;
    let ann = b.developer("ann").await;
    let request = b.grant("ann").await;
    b.store.scim_writes_time_out.store(1, Ordering::SeqCst);
    let result = scim::patch_user(&b.app, &b.client, &ann.id, &deactivate(), None).await;
    assert_eq!(status(&result), 200, "{result:?}");
    assert!(!result.unwrap().active);
    assert!(!b.grant_live_in_store(&request).await, "revoked in the write");
    assert!(!b.allowed("ann").await, "the check index learned of the revocation");
    assert!(b.auth_proxy("ann").await.is_err(), "ann is blocked in memory");
}

/// The write timed out and the read after it failed too: the outcome cannot be told, the
/// answer is 503. The provider's retry finds the write committed (a write that changes
/// nothing) and must not answer 200 over a directory in memory that never learned of it:
/// the retry brings memory and the check index up to date.
#[tokio::test]
async fn a_retry_of_a_write_memory_missed_repairs_memory_before_answering() {
    let b = bed().await;
    let ann = b.developer("ann").await;
    b.grant("ann").await;
    b.store.scim_writes_time_out.store(1, Ordering::SeqCst);
    b.store.scim_reads_fail_after_write.store(1, Ordering::SeqCst);
    let first = scim::patch_user(&b.app, &b.client, &ann.id, &deactivate(), None).await;
    assert_eq!(status(&first), 503, "{first:?}");
    let retry = scim::patch_user(&b.app, &b.client, &ann.id, &deactivate(), None).await;
    assert_eq!(status(&retry), 200, "{retry:?}");
    // Memory holds ann as the store does (not only as the leaving mark, which lapses).
    assert!(
        !b.app.directory().user(&ann.id).unwrap().active,
        "memory learned of the deactivation"
    );
    assert!(b.auth_proxy("ann").await.is_err(), "ann is blocked in memory");
    assert!(!b.allowed("ann").await, "the check index learned of the revocation");
}

/// A deactivation that answered `Unavailable` and did not commit (the record is as before):
/// 503, and the leaving mark its effects set is gone: ann may still file.
#[tokio::test]
async fn a_deactivation_that_did_not_commit_is_503_and_leaves_no_mark() {
    let b = bed().await;
    let ann = b.developer("ann").await;
    b.store.scim_writes_fail.store(1, Ordering::SeqCst);
    let result = scim::patch_user(&b.app, &b.client, &ann.id, &deactivate(), None).await;
    assert_eq!(status(&result), 503, "{result:?}");
    assert!(scim::user(&b.app, &ann.id).await.unwrap().active);
    b.grant("ann").await;
}

/// A deactivation that timed out and whose outcome cannot be told (the read after it fails):
/// 503, and ann stays marked leaving (it may have committed): her filing is refused.
#[tokio::test]
async fn a_deactivation_whose_outcome_cannot_be_told_keeps_the_leaving_mark() {
    let b = bed().await;
    let ann = b.developer("ann").await;
    let who = b.auth_proxy("ann").await.unwrap();
    b.store.scim_writes_time_out.store(1, Ordering::SeqCst);
    b.store.scim_reads_fail_after_write.store(1, Ordering::SeqCst);
    let result = scim::patch_user(&b.app, &b.client, &ann.id, &deactivate(), None).await;
    assert_eq!(status(&result), 503, "{result:?}");
    let ask = NewRequest {
        resource: "staging-db".into(),
        action: "read".into(),
        duration: None,
        reason: "OPS-3 scim test".into(),
        payload: None,
        break_glass: false,
        items: None,
    };
    let filed = b.app.file(&who, &ask).await;
    assert!(filed.is_err(), "ann is still marked leaving: {filed:?}");
}

/// A create that timed out but committed: answered with the user, who is in memory at once.
#[tokio::test]
async fn a_create_that_timed_out_but_committed_is_answered_and_applied() {
    let b = bed().await;
    b.store.scim_writes_time_out.store(1, Ordering::SeqCst);
    let created = scim::create_user(&b.app, &b.client, &user_body("bob")).await;
    assert_eq!(status(&created), 200, "{created:?}");
    assert!(
        b.app.directory().user(&created.unwrap().id).is_some(),
        "bob is in memory"
    );
}

/// A group write that timed out but committed: memory learns the new member at once.
#[tokio::test]
async fn a_group_write_that_timed_out_but_committed_is_applied() {
    let b = bed().await;
    let ann = b.developer("ann").await;
    let bob = b.create_user("bob").await;
    let groups = scim::list_groups(&b.app, &scim::ListRequest::default(), true)
        .await
        .unwrap()
        .0;
    let dev = groups.items.into_iter().find(|g| g.display_name == "dev").unwrap();
    let add_bob = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{ "op": "add", "path": "members", "value": [{ "value": bob.id }] }],
    });
    b.store.scim_writes_time_out.store(1, Ordering::SeqCst);
    let result = scim::patch_group(&b.app, &b.client, &dev.id, &add_bob, None).await;
    assert_eq!(status(&result), 200, "{result:?}");
    let _ = ann;
    let who = b.auth_proxy("bob").await.unwrap();
    assert!(who.groups.iter().any(|g| g == "dev"), "{who:?}");
}

/// A write that committed is answered with success even when reading it back fails: user
/// create and update, group create and update.
#[tokio::test]
async fn a_committed_write_whose_read_back_fails_is_still_a_success() {
    let b = bed().await;
    b.store.scim_reads_fail_after_write.store(1, Ordering::SeqCst);
    let ann = scim::create_user(&b.app, &b.client, &user_body("ann")).await;
    assert_eq!(status(&ann), 200, "{ann:?}");
    let ann = ann.unwrap();
    b.store.scim_reads_fail_after_write.store(1, Ordering::SeqCst);
    let patched = scim::patch_user(&b.app, &b.client, &ann.id, &deactivate(), None).await;
    assert_eq!(status(&patched), 200, "{patched:?}");
    assert!(!patched.unwrap().active);
    let group = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "sre",
    });
    b.store.scim_reads_fail_after_write.store(1, Ordering::SeqCst);
    let created = scim::create_group(&b.app, &b.client, &group).await;
    assert_eq!(status(&created), 200, "{created:?}");
    let renamed = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "dev",
    });
    b.store.scim_reads_fail_after_write.store(1, Ordering::SeqCst);
    let replaced = scim::replace_group(&b.app, &b.client, &created.unwrap().id, &renamed, None).await;
    assert_eq!(status(&replaced), 200, "{replaced:?}");
    assert_eq!(replaced.unwrap().display_name, "dev");
}

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn set_manager(manager: &str) -> serde_json::Value {
    json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{ "op": "add", "path": format!("{ENTERPRISE}:manager"), "value": manager }],
    })
}

fn invalid_manager(result: &Result<ScimUser, ScimFailure>) {
    let Err(e) = result else {
        panic!("expected 400 invalidValue, got {result:?}");
    };
    let e = e.error();
    assert_eq!(e.status, 400, "{e:?}");
    assert_eq!(e.scim_type, Some(jitgate_core::scim::ScimType::InvalidValue), "{e:?}");
    assert!(e.detail.contains("manager"), "{e:?}");
}

/// A user cannot be their own manager, nor have a manager who is not a user: both are
/// refused (400 invalidValue naming manager), on create, PATCH and PUT, and nothing changes.
#[tokio::test]
async fn a_manager_that_is_the_user_or_no_user_is_refused() {
    let b = bed().await;
    let ann = b.create_user("ann").await;
    let boss = b.create_user("boss").await;
    invalid_manager(&scim::patch_user(&b.app, &b.client, &ann.id, &set_manager(&ann.id), None).await);
    invalid_manager(&scim::patch_user(&b.app, &b.client, &ann.id, &set_manager("u-nobody"), None).await);
    // Look-alikes of a real id (case, a NUL byte, trailing space) are no user either.
    for fake in [
        boss.id.to_uppercase(),
        format!("{}\u{0}", boss.id),
        format!("{} ", boss.id),
    ] {
        invalid_manager(&scim::patch_user(&b.app, &b.client, &ann.id, &set_manager(&fake), None).await);
    }
    let mut put = user_body("ann");
    put[ENTERPRISE] = json!({ "manager": { "value": ann.id } });
    invalid_manager(&scim::replace_user(&b.app, &b.client, &ann.id, &put, None).await);
    let mut create = user_body("carl");
    create[ENTERPRISE] = json!({ "manager": { "value": "u-nobody" } });
    invalid_manager(&scim::create_user(&b.app, &b.client, &create).await);
    assert_eq!(
        scim::user(&b.app, &ann.id).await.unwrap().version,
        ann.version,
        "nothing written"
    );
    // A real manager is taken.
    let managed = scim::patch_user(&b.app, &b.client, &ann.id, &set_manager(&boss.id), None)
        .await
        .unwrap();
    assert_eq!(managed.manager_id.as_deref(), Some(boss.id.as_str()));
}

/// A deactivation with If-Match whose write conflicts on a request its effects cancel (bob
/// approved ann's request between the effects and the write), not on ann's version: the
/// version If-Match names still holds, so the write is computed again (now revoking the
/// grant the approval gave) and answered 200, not 412.
#[tokio::test]
async fn a_conflict_on_a_request_the_effects_end_is_retried_despite_if_match() {
    let b = bed().await;
    let ann = b.developer("ann").await;
    let bob = b.create_user("bob").await;
    let sre = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "sre",
        "members": [{ "value": bob.id }],
    });
    scim::create_group(&b.app, &b.client, &sre).await.unwrap();
    let ann_who = b.auth_proxy("ann").await.unwrap();
    let ask = NewRequest {
        resource: "prod-db".into(),
        action: "read".into(),
        duration: None,
        reason: "OPS-2 scim test".into(),
        payload: None,
        break_glass: false,
        items: None,
    };
    let pending = b.app.file(&ann_who, &ask).await.unwrap();
    {
        let (app, id) = (b.app.clone(), pending.id.clone());
        let bob_who = b.auth_proxy("bob").await.unwrap();
        *b.store.before_scim_write.lock() = Some(Box::new(move || {
            Box::pin(async move {
                let caller = caller_for::<op::ApproveRequest>(bob_who).unwrap();
                app.approve(&caller, &id, None).await.unwrap();
            })
        }));
    }
    let tag = format!("W/\"{}\"", ann.version);
    let result = scim::patch_user(&b.app, &b.client, &ann.id, &deactivate(), Some(&tag)).await;
    assert_eq!(status(&result), 200, "{result:?}");
    assert!(
        !b.grant_live_in_store(&pending.id).await,
        "the grant the approval gave is revoked"
    );
    assert!(!b.allowed_to(&ann.user_name, "prod-db").await);
    // A real change of ann's version under an If-Match is still 412.
    let stale = scim::patch_user(&b.app, &b.client, &ann.id, &deactivate(), Some(&tag)).await;
    assert_eq!(status(&stale), 412, "{stale:?}");
}

/// GET /Groups/{id}?excludedAttributes=members reads no members: the read with members
/// (`scim_group`) is made to fail, and the member-less read still answers the group; with
/// members, the group comes with them. An unknown id (and a look-alike of a real one) is 404.
#[tokio::test]
async fn a_group_read_without_members_does_not_read_them() {
    let b = bed().await;
    let ann = b.developer("ann").await;
    let dev = scim::list_groups(&b.app, &scim::ListRequest::default(), true)
        .await
        .unwrap()
        .0
        .items
        .remove(0);
    b.store.scim_reads_fail.store(1, Ordering::SeqCst);
    let bare = scim::group_with(&b.app, &dev.id, false).await;
    assert_eq!(status(&bare), 200, "{bare:?}");
    let bare = bare.unwrap();
    assert_eq!(bare.display_name, "dev");
    assert!(bare.members.is_empty());
    b.store.scim_reads_fail.store(0, Ordering::SeqCst);
    let full = scim::group_with(&b.app, &dev.id, true).await.unwrap();
    assert_eq!(full.members, vec![ann.id.clone()]);
    for unknown in [
        "g-nobody".to_string(),
        dev.id.to_uppercase(),
        format!("{}\u{0}", dev.id),
    ] {
        let missing = scim::group_with(&b.app, &unknown, false).await;
        assert_eq!(status(&missing), 404, "{missing:?}");
    }
}

#[path = "support/hooked.rs"]
mod hooked;

#[path = "support/offline.rs"]
mod offline;
