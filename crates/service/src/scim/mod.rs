//! SCIM 2.0 service provider (issue #25): the use cases behind `/scim/v2`. Each write reads
//! the record, computes the new one with the pure protocol (`jitgate_core::scim`), asks the
//! directory what the change ends (`directory::*_change_effects`), commits all of it in one
//! `Store::scim_write`, and brings this replica up to date (`directory::committed`). When
//! someone else changed the record meanwhile the write is computed again from a fresh read,
//! unless the client pinned the version it saw with `If-Match` and the record's version moved
//! (then 412): a conflict on a request the write's effects end is computed again even then.

pub mod config;

pub use config::{ScimConfig, ScimConfigError};

use crate::{directory, App, ServiceError};
use jitgate_core::scim::filter::{self, Resource};
use jitgate_core::scim::patch;
use jitgate_core::scim::resource::{self as rep, UserFields};
use jitgate_core::scim::schema::{DEFAULT_COUNT, MAX_RESULTS};
use jitgate_core::scim::{
    DirectoryWrite, MemberChange, ScimChange, ScimError, ScimGroup, ScimPage, ScimQuery, ScimType, ScimUser,
};
use jitgate_core::{EventKind, NewEvent, Timestamp};
use jitgate_store::StoreError;
use serde_json::{Map, Value};

/// How SCIM users become principals, checked at start against the OIDC issuers
/// (`[scim]` in the server's config; see docs/scim.md).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScimSettings {
    /// The attribute the principal is made from: `userName` (the default), `externalId` or
    /// `email` (the primary email's value).
    pub principal_attribute: String,
    /// Put before the attribute's value (`okta:`), to match the linked OIDC issuer's
    /// `principal_prefix`.
    pub principal_prefix: String,
    /// The `principal_prefix` of every OIDC issuer other than the linked one: a SCIM
    /// principal never starts with one of these, so it cannot be another issuer's principal.
    pub foreign_prefixes: Vec<String>,
}

/// How many times a write is computed again when the record changed under it: with N
/// clients writing one group at once, one of them wins each round, so a writer may lose
/// N - 1 times (tested with eight).
const ATTEMPTS: usize = 16;
/// How many member names an audit comment lists before it counts the rest.
const NAMED_IN_COMMENT: usize = 20;

/// A refused SCIM call: in the protocol's terms, or the service's (database unavailable,
/// internal fault), which the edge answers in SCIM's error shape too.
#[derive(Debug, thiserror::Error)]
pub enum ScimFailure {
    #[error(transparent)]
    Protocol(#[from] ScimError),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<StoreError> for ScimFailure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Taken(m) => ScimError::uniqueness(m).into(),
            StoreError::Refused(m) => ScimError::invalid_value(m).into(),
            other => ScimFailure::Service(other.into()),
        }
    }
}

type Result<T> = std::result::Result<T, ScimFailure>;

/// The provisioning client a SCIM token stands for: its principal is the actor of every
/// `scim.*` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimClient {
    pub principal: String,
}

/// What a list asks for, as the query string or a `.search` body gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListRequest {
    pub filter: Option<String>,
    pub start_index: Option<i64>,
    pub count: Option<i64>,
}

impl ListRequest {
    /// The store's query, or `None` when the filter can match nothing.
    fn query(&self, resource: Resource) -> Result<Option<ScimQuery>> {
        let parsed = match self.filter.as_deref().map(str::trim).filter(|f| !f.is_empty()) {
            None => filter::Filter::default(),
            Some(text) => filter::parse(text, resource)?,
        };
        let mut query = parsed.query;
        // RFC 7644 3.4.2.4: below 1 is 1; a negative count is 0; the server caps the page.
        query.start_index = self.start_index.unwrap_or(1).max(1) as u64;
        query.count = self.count.map_or(DEFAULT_COUNT, |c| c.max(0) as u64).min(MAX_RESULTS);
        Ok((!parsed.impossible).then_some(query))
    }
}

/// Before computing a write again: a pause that grows with the attempt and differs between
/// writers (a random part), so that writers who lost together do not collide again.
async fn back_off(attempt: usize) {
    let mut byte = [0u8; 1];
    let jitter = getrandom::getrandom(&mut byte).map_or(0, |()| u64::from(byte[0] % 8));
    let millis = (attempt as u64).min(8) * 2 + jitter;
    tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
}

fn now() -> Timestamp {
    crate::clock::now()
}

fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

fn precondition(kind: &str, id: &str) -> ScimFailure {
    ScimError::precondition_failed(format!(
        "{kind} {id} changed since the version If-Match names; read it again"
    ))
    .into()
}

fn check_version(kind: &str, id: &str, if_match: Option<&str>, version: i64) -> Result<()> {
    match if_match {
        Some(tag) if !rep::if_match(tag, version) => Err(precondition(kind, id)),
        _ => Ok(()),
    }
}

/// Is the principal free for user `own_id`: not another issuer's, not in `directory.toml`,
/// not an agent's, not another live user's?
fn check_principal(app: &App, principal: &str, own_id: Option<&str>) -> Result<()> {
    let settings = app.scim_settings();
    if let Some(prefix) = settings.foreign_prefixes.iter().find(|p| {
        principal
            .get(..p.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(p))
    }) {
        return Err(ScimError::uniqueness(if prefix.is_empty() {
            format!(
                "principal '{principal}' could be the principal of an OIDC issuer without principal_prefix; \
                 name that issuer in [scim] oidc_issuer or give it a prefix (docs/scim.md)"
            )
        } else {
            format!("principal '{principal}' starts with '{prefix}', the prefix of another OIDC issuer's principals")
        })
        .into());
    }
    match directory::principal_problem(app, principal, own_id) {
        Some(problem) => Err(ScimError::uniqueness(problem).into()),
        None => Ok(()),
    }
}

/// Is the manager `after` names one jitgate can follow: not the user themself (an approval
/// step "manager" would let them approve their own request), and a user the store holds (a
/// dangling reference would leave the step without an approver)? Asked only when the
/// reference changes: a provider re-sending a user whose manager was deleted since is not
/// refused for it.
async fn check_manager(app: &App, before: Option<&ScimUser>, after: &ScimUser) -> Result<()> {
    let Some(manager) = after.manager_id.as_deref() else {
        return Ok(());
    };
    if before.is_some_and(|b| b.manager_id.as_deref() == Some(manager)) {
        return Ok(());
    }
    if manager == after.id {
        return Err(ScimError::invalid_value(format!(
            "manager '{}' is the user themself; a user cannot be their own manager",
            manager.escape_debug()
        ))
        .into());
    }
    // No store keeps a NUL (PostgreSQL cannot even be asked about one): no such user.
    if manager.contains('\0') || app.store.scim_user(manager).await?.is_none() {
        return Err(ScimError::invalid_value(format!(
            "manager '{}' is not the id of a user of this directory",
            manager.escape_debug()
        ))
        .into());
    }
    Ok(())
}

/// The user record a cleaned document makes, as a change of `before` (`None`: a new user).
fn user_record(
    app: &App,
    id: &str,
    before: Option<&ScimUser>,
    doc: Map<String, Value>,
    at: Timestamp,
) -> Result<ScimUser> {
    let fields = UserFields::of(&doc)?;
    let settings = app.scim_settings();
    let principal = fields.principal(&settings.principal_attribute, &settings.principal_prefix)?;
    check_principal(app, &principal, before.map(|b| b.id.as_str()))?;
    // A write that does not say keeps the user as they are: only `active: true` reactivates
    // a deactivated user (removing `active` does not).
    let active = fields.active.unwrap_or(before.is_none_or(|b| b.active));
    Ok(ScimUser {
        id: id.to_string(),
        user_name: fields.user_name,
        principal,
        external_id: fields.external_id,
        display_name: fields.display_name,
        active,
        manager_id: fields.manager_id,
        doc: Value::Object(doc),
        version: before.map_or(1, |b| b.version + 1),
        created_at: before.map_or(at, |b| b.created_at),
        modified_at: at,
    })
}

/// Does `after` say what `before` says (all but the version and the time)?
fn same_user(before: &ScimUser, after: &ScimUser) -> bool {
    before.user_name == after.user_name
        && before.principal == after.principal
        && before.external_id == after.external_id
        && before.display_name == after.display_name
        && before.active == after.active
        && before.manager_id == after.manager_id
        && before.doc == after.doc
}

fn same_group(before: &ScimGroup, after: &ScimGroup) -> bool {
    before.display_name == after.display_name
        && before.external_id == after.external_id
        && before.doc == after.doc
        && before.members == after.members
}

/// What a write did to a record, for its audit event.
enum Step<'a, T> {
    Created(&'a T),
    Changed(&'a T, &'a T),
    Deleted(&'a T),
}

// By hand: a derive would ask `T: Copy` of the records the references point to.
impl<T> Clone for Step<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Step<'_, T> {}

impl<'a, T> Step<'a, T> {
    fn of(before: Option<&'a T>, after: &'a Option<T>) -> Option<Self> {
        match (before, after.as_ref()) {
            (None, Some(a)) => Some(Step::Created(a)),
            (Some(b), Some(a)) => Some(Step::Changed(b, a)),
            (Some(b), None) => Some(Step::Deleted(b)),
            (None, None) => None,
        }
    }

    fn before(self) -> Option<&'a T> {
        match self {
            Step::Created(_) => None,
            Step::Changed(b, _) | Step::Deleted(b) => Some(b),
        }
    }

    fn after(self) -> Option<&'a T> {
        match self {
            Step::Deleted(_) => None,
            Step::Created(a) | Step::Changed(_, a) => Some(a),
        }
    }

    /// The record as it is now, or as it was when deleted.
    fn record(self) -> &'a T {
        match self {
            Step::Created(r) | Step::Changed(_, r) | Step::Deleted(r) => r,
        }
    }
}

fn user_event(client: &ScimClient, step: Step<'_, ScimUser>, at: Timestamp) -> NewEvent {
    let user = step.record();
    let kind = match step {
        Step::Created(_) => EventKind::ScimUserCreated,
        Step::Deleted(_) => EventKind::ScimUserDeleted,
        Step::Changed(b, a) if b.active && !a.active => EventKind::ScimUserDeactivated,
        Step::Changed(b, a) if !b.active && a.active => EventKind::ScimUserReactivated,
        Step::Changed(..) => EventKind::ScimUserUpdated,
    };
    let mut parts = Vec::new();
    match step {
        Step::Created(a) => {
            parts.push(format!("userName {}", a.user_name));
            parts.push(format!("active {}", a.active));
        }
        Step::Changed(b, a) => {
            if b.user_name != a.user_name {
                parts.push(format!("userName {} -> {}", b.user_name, a.user_name));
            }
            if b.principal != a.principal {
                parts.push(format!("principal {} -> {}", b.principal, a.principal));
            }
            if b.active != a.active {
                parts.push(format!("active {}", a.active));
            }
            if b.external_id != a.external_id {
                parts.push(format!("externalId {}", a.external_id.as_deref().unwrap_or("(none)")));
            }
            if b.display_name != a.display_name {
                parts.push(format!("displayName {}", a.display_name.as_deref().unwrap_or("(none)")));
            }
            if b.manager_id != a.manager_id {
                parts.push(format!("manager {}", a.manager_id.as_deref().unwrap_or("(none)")));
            }
            if parts.is_empty() {
                parts.push("attributes".into());
            }
        }
        Step::Deleted(b) => parts.push(format!("userName {}", b.user_name)),
    }
    NewEvent {
        kind,
        at,
        actor: client.principal.clone(),
        subject: user.principal.clone(),
        request_id: None,
        grant_id: None,
        resource: format!("scim:Users/{}", user.id),
        action: kind.as_str().trim_start_matches("scim.").to_string(),
        comment: Some(format!("{} (by {})", parts.join("; "), client.principal)),
    }
}

/// The write of a user change, after `directory::user_change_effects` was asked, did not
/// commit (a `Conflict` before computing it again included): the directory forgets what that
/// call set up for it (a leaver's "leaving" mark, which refuses their filings meanwhile).
fn user_write_failed(app: &App, before: Option<&ScimUser>, after: Option<&ScimUser>) {
    directory::write_failed(app, before, after);
}

/// Commit a user write computed by `compute` from the record as read, again on `Conflict`.
async fn write_user<F>(
    app: &App,
    client: &ScimClient,
    id: &str,
    if_match: Option<&str>,
    compute: F,
) -> Result<Option<ScimUser>>
where
    F: Fn(&ScimUser) -> Result<Option<Map<String, Value>>>,
{
    for attempt in 0..ATTEMPTS {
        let before = app
            .store
            .scim_user(id)
            .await?
            .ok_or_else(|| ScimError::not_found(format!("no user {id}")))?;
        check_version("user", id, if_match, before.version)?;
        let at = now();
        let after = match compute(&before)? {
            Some(doc) => Some(user_record(app, id, Some(&before), doc, at)?),
            None => None,
        };
        // Providers repeat themselves (Entra re-sends what it already sent): a write that
        // changes nothing is answered with the record as it is, with no new version or event.
        if let Some(user) = &after {
            if same_user(&before, user) {
                repair_user(app, &before).await?;
                return Ok(Some(before));
            }
            check_manager(app, Some(&before), user).await?;
        }
        let effects = directory::user_change_effects(app, Some(&before), after.as_ref(), &client.principal, at).await?;
        let change = match &after {
            Some(user) => ScimChange::PutUser {
                user: user.clone(),
                expected_version: Some(before.version),
            },
            None => ScimChange::DeleteUser {
                id: id.to_string(),
                expected_version: before.version,
            },
        };
        let step = Step::of(Some(&before), &after).unwrap_or(Step::Deleted(&before));
        let mut events = vec![user_event(client, step, at)];
        events.extend(effects.events);
        let write = DirectoryWrite {
            change,
            transitions: effects.transitions,
            revoked_tokens: effects.revoked_tokens,
            events,
        };
        match app.store.scim_write(&write).await {
            Ok(()) => {
                directory::committed(app, &write, after.as_ref(), None);
                return Ok(after);
            }
            Err(StoreError::Unavailable(cause)) => match user_landed(app, id, after.as_ref(), true).await {
                Landed::Yes => {
                    directory::committed(app, &write, after.as_ref(), None);
                    return Ok(after);
                }
                Landed::No => {
                    user_write_failed(app, Some(&before), after.as_ref());
                    return Err(StoreError::Unavailable(cause).into());
                }
                // It may yet have committed: the leaving mark stays (it lapses by itself).
                Landed::Unknown => return Err(StoreError::Unavailable(cause).into()),
            },
            Err(e) => {
                user_write_failed(app, Some(&before), after.as_ref());
                match e {
                    // The user's version moved, or a request the effects end did: read
                    // again (with If-Match, 412 only if the user's version no longer
                    // matches, which the check above the write tells).
                    StoreError::Conflict => back_off(attempt).await,
                    e => return Err(e.into()),
                }
            }
        }
    }
    Err(busy("user", id))
}

fn busy(kind: &str, id: &str) -> ScimFailure {
    ScimFailure::Service(ServiceError::Conflict(format!(
        "{kind} {id} kept changing while this write was made; send it again"
    )))
}

/// Whether a write that answered `Unavailable` (the bounded write timed out: it may still
/// have committed) committed, as a read of the record afterwards tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Landed {
    /// The store holds what the write wrote (or, for a deletion, nothing).
    Yes,
    /// The store holds something else: the write did not commit.
    No,
    /// The read failed too, or the record moved on past the write: cannot tell.
    Unknown,
}

/// Did the write of `after` (`None`: the deletion of `id`) commit, given the record the store
/// holds now? A record is the write's own when it has the write's version and moment (a
/// write's moment is a millisecond, kept exactly by both stores); another writer taking the
/// same version would have a moment of its own.
fn landed<T>(
    stored: std::result::Result<Option<T>, StoreError>,
    after: Option<&T>,
    existed: bool,
    version_and_moment: impl Fn(&T) -> (i64, Timestamp),
) -> Landed {
    let stored = match stored {
        Ok(stored) => stored,
        Err(e) => {
            tracing::warn!(error = %e, "a SCIM write timed out and the record could not be read again");
            return Landed::Unknown;
        }
    };
    match (stored.as_ref(), after) {
        // A deletion: gone is done.
        (None, None) => Landed::Yes,
        (Some(_), None) => Landed::No,
        // A new id nobody else writes: absent means not written.
        (None, Some(_)) if !existed => Landed::No,
        // Deleted by someone else since: whether this write committed before cannot be told.
        (None, Some(_)) => Landed::Unknown,
        (Some(s), Some(a)) => {
            let (stored_version, stored_at) = version_and_moment(s);
            let (written_version, written_at) = version_and_moment(a);
            if stored_version == written_version {
                if stored_at == written_at {
                    Landed::Yes
                } else {
                    Landed::No
                }
            } else if stored_version < written_version {
                Landed::No
            } else {
                // Written over since, by this write's successor or another's: cannot tell.
                Landed::Unknown
            }
        }
    }
}

async fn user_landed(app: &App, id: &str, after: Option<&ScimUser>, existed: bool) -> Landed {
    landed(app.store.scim_user(id).await, after, existed, |u| {
        (u.version, u.modified_at)
    })
}

async fn group_landed(app: &App, id: &str, after: Option<&ScimGroup>, existed: bool) -> Landed {
    landed(app.store.scim_group(id).await, after, existed, |g| {
        (g.version, g.modified_at)
    })
}

/// A provider repeated a write this replica's memory may have missed (a write that timed out
/// here and committed after all, with nothing to tell memory: no follower on SQLite): when the
/// directory in memory does not hold user `stored` as the store does, read it again here
/// (which also sweeps what raced a leaver's change).
async fn repair_user(app: &App, stored: &ScimUser) -> Result<()> {
    let held = app.directory().user(&stored.id);
    let current = held
        .as_ref()
        .is_some_and(|h| h.principal == stored.principal && h.active == stored.active);
    if !current {
        tracing::warn!(id = %stored.id, "the directory in memory missed a committed SCIM user write; reading it again");
        directory::refresh_user(app, &stored.id).await?;
        // The missed write's request transitions (grants revoked, requests cancelled) are
        // not known here: the check index is loaded again from the store (rare: only after
        // a write whose outcome could not be told).
        app.resync().await?;
    }
    Ok(())
}

/// As `repair_user`, for a group: its name and members as memory holds them.
async fn repair_group(app: &App, stored: &ScimGroup) -> Result<()> {
    let directory = app.directory();
    let mut held_members = directory.member_ids(&stored.id);
    held_members.sort();
    let mut stored_members = stored.members.clone();
    stored_members.sort();
    let current = directory.group_name(&stored.id).as_deref() == Some(stored.display_name.as_str())
        && held_members == stored_members;
    if !current {
        tracing::warn!(id = %stored.id, "the directory in memory missed a committed SCIM group write; reading it again");
        directory::refresh_group(app, &stored.id).await?;
        app.resync().await?;
    }
    Ok(())
}

/// Read a user as stored now (the version the store gave it), falling back to `written`:
/// the write committed, so a read that fails now must not turn it into a failure (the
/// provider would send it again).
async fn reread_user(app: &App, written: ScimUser) -> Result<ScimUser> {
    Ok(reread(app.store.scim_user(&written.id).await, written))
}

/// As `reread_user`, for a group.
async fn reread_group(app: &App, written: ScimGroup) -> Result<ScimGroup> {
    Ok(reread(app.store.scim_group(&written.id).await, written))
}

fn reread<T>(read: std::result::Result<Option<T>, StoreError>, written: T) -> T {
    match read {
        Ok(Some(stored)) => stored,
        Ok(None) => written,
        Err(e) => {
            tracing::warn!(error = %e, "reading a committed SCIM write again failed; answering with the record as written");
            written
        }
    }
}

/// POST /Users.
pub async fn create_user(app: &App, client: &ScimClient, body: &Value) -> Result<ScimUser> {
    let doc = rep::clean_user(body)?;
    for attempt in 0..ATTEMPTS {
        let at = now();
        let user = user_record(app, &new_id(), None, doc.clone(), at)?;
        check_manager(app, None, &user).await?;
        let effects = directory::user_change_effects(app, None, Some(&user), &client.principal, at).await?;
        let mut events = vec![user_event(client, Step::Created(&user), at)];
        events.extend(effects.events);
        let write = DirectoryWrite {
            change: ScimChange::PutUser {
                user: user.clone(),
                expected_version: None,
            },
            transitions: effects.transitions,
            revoked_tokens: effects.revoked_tokens,
            events,
        };
        match app.store.scim_write(&write).await {
            Ok(()) => {
                directory::committed(app, &write, Some(&user), None);
                return reread_user(app, user).await;
            }
            Err(StoreError::Unavailable(cause)) => match user_landed(app, &user.id, Some(&user), false).await {
                Landed::Yes => {
                    directory::committed(app, &write, Some(&user), None);
                    return reread_user(app, user).await;
                }
                Landed::No => {
                    user_write_failed(app, None, Some(&user));
                    return Err(StoreError::Unavailable(cause).into());
                }
                Landed::Unknown => return Err(StoreError::Unavailable(cause).into()),
            },
            Err(e) => {
                user_write_failed(app, None, Some(&user));
                match e {
                    // A new id that exists, or a transition that moved: compute again.
                    StoreError::Conflict => back_off(attempt).await,
                    e => return Err(e.into()),
                }
            }
        }
    }
    Err(busy("user", "(new)"))
}

/// PUT /Users/{id}: the representation replaces the kept one.
pub async fn replace_user(
    app: &App,
    client: &ScimClient,
    id: &str,
    body: &Value,
    if_match: Option<&str>,
) -> Result<ScimUser> {
    let doc = rep::clean_user(body)?;
    let after = write_user(app, client, id, if_match, |_| Ok(Some(doc.clone()))).await?;
    finish_user(app, id, after).await
}

/// PATCH /Users/{id}.
pub async fn patch_user(
    app: &App,
    client: &ScimClient,
    id: &str,
    body: &Value,
    if_match: Option<&str>,
) -> Result<ScimUser> {
    let operations = patch::parse(body)?;
    let after = write_user(app, client, id, if_match, |before| {
        let doc = before.doc.as_object().cloned().unwrap_or_default();
        Ok(Some(patch::apply_user(&doc, &operations)?))
    })
    .await?;
    finish_user(app, id, after).await
}

async fn finish_user(app: &App, id: &str, after: Option<ScimUser>) -> Result<ScimUser> {
    match after {
        Some(user) => reread_user(app, user).await,
        None => Err(ScimError::not_found(format!("no user {id}")).into()),
    }
}

/// DELETE /Users/{id}.
pub async fn delete_user(app: &App, client: &ScimClient, id: &str, if_match: Option<&str>) -> Result<()> {
    write_user(app, client, id, if_match, |_| Ok(None)).await?;
    Ok(())
}

/// GET /Users/{id}.
pub async fn user(app: &App, id: &str) -> Result<ScimUser> {
    Ok(app
        .store
        .scim_user(id)
        .await?
        .ok_or_else(|| ScimError::not_found(format!("no user {id}")))?)
}

/// The groups a user is in, as (id, name).
pub async fn groups_of(app: &App, user_id: &str) -> Result<Vec<(String, String)>> {
    Ok(app.store.scim_groups_of(user_id).await?)
}

/// The groups of each of `user_ids`, as (id, name), asked of the store at once rather than
/// one after another: a page of 100 users reads 100 memberships.
pub async fn groups_of_each(app: &App, user_ids: &[&str]) -> Result<Vec<Vec<(String, String)>>> {
    let reads = user_ids.iter().map(|id| app.store.scim_groups_of(id));
    Ok(futures_util::future::try_join_all(reads).await?)
}

/// The answer when `ListRequest::query` finds that the filter can match nothing: an empty
/// first page.
fn nothing_matches<T>() -> (ScimPage<T>, u64) {
    (
        ScimPage {
            total: 0,
            items: Vec::new(),
        },
        1,
    )
}

/// GET /Users, POST /Users/.search.
pub async fn list_users(app: &App, list: &ListRequest) -> Result<(ScimPage<ScimUser>, u64)> {
    let Some(query) = list.query(Resource::User)? else {
        return Ok(nothing_matches());
    };
    let start = query.start_index;
    Ok((app.store.scim_users(&query).await?, start))
}

/// GET /Groups, POST /Groups/.search; with members unless `members` is false.
pub async fn list_groups(app: &App, list: &ListRequest, members: bool) -> Result<(ScimPage<ScimGroup>, u64)> {
    let Some(query) = list.query(Resource::Group)? else {
        return Ok(nothing_matches());
    };
    let start = query.start_index;
    Ok((app.store.scim_groups(&query, members).await?, start))
}

/// GET /Groups/{id}.
pub async fn group(app: &App, id: &str) -> Result<ScimGroup> {
    group_with(app, id, true).await
}

/// GET /Groups/{id}, with its members unless `members` is false
/// (`excludedAttributes=members`): then they are not read at all (a group may have 10,000).
pub async fn group_with(app: &App, id: &str, members: bool) -> Result<ScimGroup> {
    let found = if id.contains('\0') {
        // No store keeps a NUL (PostgreSQL cannot even be asked about one): no such group.
        None
    } else if members {
        app.store.scim_group(id).await?
    } else {
        let query = ScimQuery {
            id: Some(id.to_string()),
            start_index: 1,
            count: 1,
            ..ScimQuery::default()
        };
        app.store.scim_groups(&query, false).await?.items.into_iter().next()
    };
    Ok(found.ok_or_else(|| ScimError::not_found(format!("no group {id}")))?)
}

/// Why a group may not have this name: reserved, or not a name jitgate's policy can use.
fn check_group_name(name: &str) -> Result<()> {
    if let Some(problem) = directory::group_name_problem(name) {
        return Err(ScimError::invalid_value(problem).into());
    }
    if let Some(problem) = jitgate_core::principal_name_problem(name) {
        return Err(ScimError::invalid_value(format!(
            "displayName '{}' cannot name a group: it {problem}",
            name.escape_debug()
        ))
        .into());
    }
    Ok(())
}

fn group_record(
    id: &str,
    before: Option<&ScimGroup>,
    doc: Map<String, Value>,
    members: Vec<String>,
    at: Timestamp,
) -> Result<ScimGroup> {
    let display_name = doc
        .get("displayName")
        .and_then(Value::as_str)
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| ScimError::invalid_value("displayName is required"))?
        .to_string();
    check_group_name(&display_name)?;
    let external_id = doc.get("externalId").and_then(Value::as_str).map(String::from);
    let mut doc = doc;
    // The name is a column; the members are rows: the document keeps neither twice.
    doc.remove("members");
    Ok(ScimGroup {
        id: id.to_string(),
        display_name,
        external_id,
        doc: Value::Object(doc),
        members,
        version: before.map_or(1, |b| b.version + 1),
        created_at: before.map_or(at, |b| b.created_at),
        modified_at: at,
    })
}

/// The members after `change` applied to `before`.
fn members_after(before: &[String], change: &MemberChange) -> Vec<String> {
    match change {
        MemberChange::Keep => before.to_vec(),
        MemberChange::Set(list) => {
            let mut list = list.clone();
            list.sort();
            list.dedup();
            list
        }
        MemberChange::Edit { add, remove } => {
            let mut set: std::collections::BTreeSet<String> = before.iter().cloned().collect();
            for id in remove {
                set.remove(id);
            }
            set.extend(add.iter().cloned());
            set.into_iter().collect()
        }
    }
}

/// Member ids named by principal where known, for the audit comment.
async fn member_names(app: &App, ids: &[String]) -> String {
    let mut names = Vec::new();
    for id in ids.iter().take(NAMED_IN_COMMENT) {
        match app.store.scim_user(id).await {
            Ok(Some(user)) => names.push(user.principal),
            _ => names.push(id.clone()),
        }
    }
    let mut text = names.join(" ");
    if ids.len() > NAMED_IN_COMMENT {
        text.push_str(&format!(" and {} more", ids.len() - NAMED_IN_COMMENT));
    }
    text
}

async fn group_event(app: &App, client: &ScimClient, step: Step<'_, ScimGroup>, at: Timestamp) -> NewEvent {
    let group = step.record();
    let kind = match step {
        Step::Created(_) => EventKind::ScimGroupCreated,
        Step::Deleted(_) => EventKind::ScimGroupDeleted,
        Step::Changed(..) => EventKind::ScimGroupUpdated,
    };
    let mut parts = Vec::new();
    match step {
        Step::Changed(b, a) if b.display_name != a.display_name => {
            parts.push(format!("displayName {} -> {}", b.display_name, a.display_name));
        }
        Step::Created(g) | Step::Deleted(g) => parts.push(format!("displayName {}", g.display_name)),
        Step::Changed(..) => {}
    }
    let old: std::collections::BTreeSet<&String> =
        step.before().map(|b| b.members.iter().collect()).unwrap_or_default();
    let new: std::collections::BTreeSet<&String> = step.after().map(|a| a.members.iter().collect()).unwrap_or_default();
    let joined: Vec<String> = new.difference(&old).map(|s| (*s).clone()).collect();
    let left: Vec<String> = old.difference(&new).map(|s| (*s).clone()).collect();
    if !joined.is_empty() {
        parts.push(format!("members +{}", member_names(app, &joined).await));
    }
    if !left.is_empty() {
        parts.push(format!("members -{}", member_names(app, &left).await));
    }
    if parts.is_empty() {
        parts.push("attributes".into());
    }
    NewEvent {
        kind,
        at,
        actor: client.principal.clone(),
        subject: group.display_name.clone(),
        request_id: None,
        grant_id: None,
        resource: format!("scim:Groups/{}", group.id),
        action: kind.as_str().trim_start_matches("scim.").to_string(),
        comment: Some(format!("{} (by {})", parts.join("; "), client.principal)),
    }
}

/// POST /Groups.
pub async fn create_group(app: &App, client: &ScimClient, body: &Value) -> Result<ScimGroup> {
    let (doc, members) = rep::clean_group(body)?;
    let members = members.unwrap_or_default();
    for attempt in 0..ATTEMPTS {
        let at = now();
        let change = MemberChange::Set(members.clone());
        let group = group_record(&new_id(), None, doc.clone(), members_after(&[], &change), at)?;
        let effects = directory::group_change_effects(app, None, Some(&group), &client.principal, at).await?;
        let mut events = vec![group_event(app, client, Step::Created(&group), at).await];
        events.extend(effects.events);
        let write = DirectoryWrite {
            change: ScimChange::PutGroup {
                group: group.clone(),
                expected_version: None,
                members: change,
            },
            transitions: effects.transitions,
            revoked_tokens: effects.revoked_tokens,
            events,
        };
        match app.store.scim_write(&write).await {
            Ok(()) => {
                directory::committed(app, &write, None, Some(&group));
                return reread_group(app, group).await;
            }
            Err(StoreError::Unavailable(cause)) => {
                if group_landed(app, &group.id, Some(&group), false).await == Landed::Yes {
                    directory::committed(app, &write, None, Some(&group));
                    return Ok(group);
                }
                return Err(StoreError::Unavailable(cause).into());
            }
            Err(StoreError::Conflict) => back_off(attempt).await,
            Err(e) => return Err(e.into()),
        }
    }
    Err(busy("group", "(new)"))
}

/// Commit a group write computed by `compute` (document and member change, or `None` to
/// delete) from the group as read with its members, again on `Conflict`.
async fn write_group<F>(
    app: &App,
    client: &ScimClient,
    id: &str,
    if_match: Option<&str>,
    compute: F,
) -> Result<Option<ScimGroup>>
where
    F: Fn(&ScimGroup) -> Result<Option<(Map<String, Value>, MemberChange)>>,
{
    for attempt in 0..ATTEMPTS {
        let before = app
            .store
            .scim_group(id)
            .await?
            .ok_or_else(|| ScimError::not_found(format!("no group {id}")))?;
        check_version("group", id, if_match, before.version)?;
        let at = now();
        let (after, members) = match compute(&before)? {
            Some((doc, change)) => {
                let list = members_after(&before.members, &change);
                (Some(group_record(id, Some(&before), doc, list, at)?), change)
            }
            None => (None, MemberChange::Keep),
        };
        if let Some(group) = &after {
            if same_group(&before, group) {
                repair_group(app, &before).await?;
                return Ok(Some(before));
            }
        }
        let effects =
            directory::group_change_effects(app, Some(&before), after.as_ref(), &client.principal, at).await?;
        let change = match &after {
            Some(group) => ScimChange::PutGroup {
                group: group.clone(),
                expected_version: Some(before.version),
                members,
            },
            None => ScimChange::DeleteGroup {
                id: id.to_string(),
                expected_version: before.version,
            },
        };
        let step = Step::of(Some(&before), &after).unwrap_or(Step::Deleted(&before));
        let mut events = vec![group_event(app, client, step, at).await];
        events.extend(effects.events);
        let write = DirectoryWrite {
            change,
            transitions: effects.transitions,
            revoked_tokens: effects.revoked_tokens,
            events,
        };
        match app.store.scim_write(&write).await {
            Ok(()) => {
                directory::committed(app, &write, None, after.as_ref());
                return Ok(after);
            }
            Err(StoreError::Unavailable(cause)) => {
                if group_landed(app, id, after.as_ref(), true).await == Landed::Yes {
                    directory::committed(app, &write, None, after.as_ref());
                    return Ok(after);
                }
                return Err(StoreError::Unavailable(cause).into());
            }
            // As for users: 412 only when the group's own version no longer matches If-Match.
            Err(StoreError::Conflict) => back_off(attempt).await,
            Err(e) => return Err(e.into()),
        }
    }
    Err(busy("group", id))
}

async fn finish_group(app: &App, id: &str, after: Option<ScimGroup>) -> Result<ScimGroup> {
    match after {
        Some(group) => reread_group(app, group).await,
        None => Err(ScimError::not_found(format!("no group {id}")).into()),
    }
}

/// PUT /Groups/{id}: name and members become what the body says (no `members`: none).
pub async fn replace_group(
    app: &App,
    client: &ScimClient,
    id: &str,
    body: &Value,
    if_match: Option<&str>,
) -> Result<ScimGroup> {
    let (doc, members) = rep::clean_group(body)?;
    let change = MemberChange::Set(members.unwrap_or_default());
    let after = write_group(app, client, id, if_match, |_| Ok(Some((doc.clone(), change.clone())))).await?;
    finish_group(app, id, after).await
}

/// PATCH /Groups/{id}.
pub async fn patch_group(
    app: &App,
    client: &ScimClient,
    id: &str,
    body: &Value,
    if_match: Option<&str>,
) -> Result<ScimGroup> {
    let operations = patch::parse(body)?;
    let after = write_group(app, client, id, if_match, |before| {
        let doc = before.doc.as_object().cloned().unwrap_or_default();
        let mut doc = doc;
        doc.insert("displayName".into(), before.display_name.clone().into());
        Ok(Some(patch::apply_group(&doc, &operations)?))
    })
    .await?;
    finish_group(app, id, after).await
}

/// DELETE /Groups/{id}.
pub async fn delete_group(app: &App, client: &ScimClient, id: &str, if_match: Option<&str>) -> Result<()> {
    write_group(app, client, id, if_match, |_| Ok(None)).await?;
    Ok(())
}

impl ScimFailure {
    /// The status and SCIM body of this failure; the detail of an internal fault stays in
    /// the log.
    pub fn error(&self) -> ScimError {
        match self {
            ScimFailure::Protocol(e) => e.clone(),
            ScimFailure::Service(e) => {
                let (status, scim_type) = match e {
                    ServiceError::Invalid(_) => (400, Some(ScimType::InvalidValue)),
                    ServiceError::Unauthenticated(_) => (401, None),
                    ServiceError::Forbidden(_) => (403, None),
                    ServiceError::NotFound(_) => (404, None),
                    ServiceError::Conflict(_) | ServiceError::PayloadMismatch(_) => (409, None),
                    ServiceError::OverLimit(crate::error::Limit::BodySize, _) => (413, Some(ScimType::TooLarge)),
                    ServiceError::OverLimit(..) | ServiceError::TooLong(_) => (400, Some(ScimType::TooMany)),
                    ServiceError::RetryLater { .. } => (429, None),
                    ServiceError::Unavailable(_) => (503, None),
                    ServiceError::Internal(detail) => {
                        tracing::error!(%detail, "internal error in a SCIM call");
                        return ScimError::new(500, None, "internal error; the server log has the details");
                    }
                };
                ScimError::new(status, scim_type, e.to_string())
            }
        }
    }
}
