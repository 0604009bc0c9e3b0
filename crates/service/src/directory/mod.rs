//! The directory people and groups come from: `directory.toml` (in the policy) joined with
//! what an identity provider provisions over SCIM (issue #25), kept in memory on every
//! replica, and what a provisioning change ends (leavers and movers).
//!
//! Skeleton: the SCIM edge (`crate::scim`) calls the functions below; their bodies are the
//! directory's to fill in.

use crate::{App, ServiceError};
use jitgate_core::scim::{DirectoryWrite, ScimGroup, ScimUser};
use jitgate_core::{ApiToken, NewEvent, Request, Timestamp};

/// What a provisioning change ends, to commit in the same transaction as the change.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Effects {
    /// (as read, as it becomes): grants revoked, pending requests cancelled, approvals
    /// withdrawn.
    pub transitions: Vec<(Request, Request)>,
    /// The leaver's API tokens and their agents' tokens, marked revoked.
    pub revoked_tokens: Vec<ApiToken>,
    /// The events of the transitions and revocations (not the `scim.*` event itself, which
    /// the SCIM edge writes).
    pub events: Vec<NewEvent>,
}

/// What changing user `before` into `after` (`None`: created / deleted) ends, as `client`
/// (the provisioning token's principal) does it at `now`.
pub async fn user_change_effects(
    app: &App,
    before: Option<&ScimUser>,
    after: Option<&ScimUser>,
    client: &str,
    now: Timestamp,
) -> Result<Effects, ServiceError> {
    let _ = (app, before, after, client, now);
    Ok(Effects::default())
}

/// What changing group `before` into `after` ends: `after.members` is the full member list
/// after the change (`None`: created / deleted).
pub async fn group_change_effects(
    app: &App,
    before: Option<&ScimGroup>,
    after: Option<&ScimGroup>,
    client: &str,
    now: Timestamp,
) -> Result<Effects, ServiceError> {
    let _ = (app, before, after, client, now);
    Ok(Effects::default())
}

/// After `write` committed: bring this replica's directory, check index, token table and
/// waiters up to date. `user` / `group` are the records as written (`None` when deleted).
pub fn committed(app: &App, write: &DirectoryWrite, user: Option<&ScimUser>, group: Option<&ScimGroup>) {
    let _ = (app, write, user, group);
}

/// Why `principal` cannot be the principal of SCIM user `own_id` (`None` on create): it
/// names (case-insensitively) a `directory.toml` principal, an agent, another SCIM user, or
/// falls in another OIDC issuer's names. `None` when it can.
pub fn principal_problem(app: &App, principal: &str, own_id: Option<&str>) -> Option<String> {
    let _ = (app, principal, own_id);
    None
}

/// Why a SCIM group may not be called `name` (the roles jitgate reserves), or `None`.
pub fn group_name_problem(name: &str) -> Option<String> {
    let _ = name;
    None
}
