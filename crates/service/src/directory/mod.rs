//! The directory people and groups come from: `directory.toml` (in the policy) joined with
//! what an identity provider provisions over SCIM (issue #25), kept in memory on every
//! replica, and what a provisioning change ends (leavers and movers).
//!
//! The SCIM edge (`crate::scim`) reads the record, asks here what the change ends
//! (`user_change_effects`, `group_change_effects`), writes the change and its effects in one
//! `Store::scim_write`, then calls `committed`. The rules:
//!
//! - `directory.toml` wins: a principal it names is never blocked, given groups or a manager
//!   by the identity provider (an identity provider must not redefine a break-glass or
//!   service principal reviewed in git).
//! - Leavers (a user set inactive, deleted, or renamed — the old principal): every active
//!   grant of the principal and of the agents acting for them is revoked, every pending
//!   request of theirs cancelled, every approval they gave to a pending request withdrawn,
//!   every API token of theirs and of their agents revoked. Reactivation restores nothing.
//! - Movers (a user who leaves a group): what the directory's identity of theirs before the
//!   change admitted and none of their identities after it admits is revoked, cancelled or
//!   withdrawn; the exact rule is on [`group_change_effects`].
//!
//! Races with a leaver's own writes. Computing a leaver's effects first marks the principal as
//! leaving (in memory, for a minute at most); filing and approving refuse a blocked or
//! leaving principal before they write, and look again after they commit, undoing what they
//! wrote (as the system) if the principal became blocked or leaving meanwhile: a write that
//! committed before the mark was read by the effects; one after it undoes itself. On another
//! replica, the follower, on hearing that a user is blocked, sweeps what committed since the
//! change was made (`sweep_leaver`).

mod effects;
pub mod memory;

pub use memory::{Blocked, Directory};

use crate::{App, ServiceError};
use jitgate_core::scim::{DirectoryWrite, MemberChange, ScimChange, ScimGroup, ScimUser};
use jitgate_core::{ApiToken, Identity, NewEvent, Request, Timestamp};
use std::collections::HashSet;

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

/// Why a principal leaves: the words of the comment on what it ends.
#[derive(Debug, Clone)]
pub(crate) enum Leaving {
    Deactivated,
    Deleted,
    Renamed(String),
}

impl Leaving {
    fn comment(&self, principal: &str, client: &str) -> String {
        match self {
            Leaving::Deactivated => format!("{principal} was deactivated in the directory by {client}"),
            Leaving::Deleted => format!("{principal} was deleted in the directory by {client}"),
            Leaving::Renamed(to) => format!("{principal} was renamed to {to} in the directory by {client}"),
        }
    }
}

/// The principal a change of user `before` into `after` ends, and why: the deleted or
/// deactivated user's, or a renamed user's old one (never the new one). A rename in ASCII
/// case alone is no rename: blocking compares ignoring case, the principal stays.
/// `directory.toml`'s principals are never ended (it wins).
fn leaving_of<'a>(app: &App, before: Option<&'a ScimUser>, after: Option<&'a ScimUser>) -> Option<(&'a str, Leaving)> {
    let leaving = match (before, after) {
        (Some(b), None) => Some((b.principal.as_str(), Leaving::Deleted)),
        (Some(b), Some(a)) if !b.principal.eq_ignore_ascii_case(&a.principal) => {
            Some((b.principal.as_str(), Leaving::Renamed(a.principal.clone())))
        }
        // Deactivated, or written again while inactive: what raced the first write ends too.
        (_, Some(a)) if !a.active => Some((a.principal.as_str(), Leaving::Deactivated)),
        _ => None,
    };
    leaving.filter(|(principal, _)| app.policy().rules().principal(principal).is_none())
}

/// What changing user `before` into `after` (`None`: created / deleted) ends, as `client`
/// (the provisioning token's principal) does it at `now`.
///
/// Computing a leaver's effects marks their principal as leaving (see the module). When this
/// returns `Ok`, the caller MUST call [`write_failed`] with the same `before` and `after` if
/// the write of these effects does not commit — `Conflict` (before computing them again),
/// `Taken`, `Refused`, a failed precondition, any error — and [`committed`] when it does:
/// otherwise the mark refuses the principal for up to a minute. When this returns `Err`,
/// nothing stays marked (do not call `write_failed`).
pub async fn user_change_effects(
    app: &App,
    before: Option<&ScimUser>,
    after: Option<&ScimUser>,
    client: &str,
    now: Timestamp,
) -> Result<Effects, ServiceError> {
    let Some((principal, why)) = leaving_of(app, before, after) else {
        return Ok(Effects::default());
    };
    // Before anything is read: a request filed or an approval given from now on looks here
    // after it commits, and undoes itself (what committed before is read below).
    app.directory().mark_leaving(principal);
    let comment = why.comment(principal, client);
    let effects = effects::leaver(app, principal, client, &comment, None, now).await;
    if effects.is_err() {
        // Nothing will be written: no mark left behind.
        app.directory().unmark_leaving(principal);
    }
    effects
}

/// The write of what [`user_change_effects`] computed for `before` into `after` did not
/// commit (any error, a `Conflict` before computing it again included): the leaving mark it
/// set goes (unless another write under way set one too). The SCIM edge calls this on every
/// failed write of a user change; calling it for a change that marked nothing does nothing.
pub fn write_failed(app: &App, before: Option<&ScimUser>, after: Option<&ScimUser>) {
    if let Some((principal, _)) = leaving_of(app, before, after) {
        app.directory().unmark_leaving(principal);
    }
}

/// What changing group `before` into `after` ends: `after.members` is the full member list
/// after the change (`None`: created / deleted) — also for a change that keeps or edits the
/// members (take it from [`members_after`]): a member missing from it counts as removed.
///
/// The rule for each member who leaves the group (removed, left out of a replaced list, the
/// group renamed or deleted), "removing a user from a group ends grants that only that
/// group's workflows allowed", exactly: take their identity BEFORE the change as the
/// directory gives it (directory.toml's groups and the identity provider's groups then), and
/// their identities AFTER it (the directory's, and each live API token of theirs with the
/// token's own groups added). An active grant is revoked, and a pending request cancelled,
/// when Cedar (the `request` ability, `break_glass` for a break-glass grant; duration and
/// reason limits are not judged again) admits it for the identity before and for none of the
/// identities after. An approval of theirs on a pending request is withdrawn when the step
/// it counted towards admitted the identity before and admits none after. What the identity
/// before did not admit (obtained through a token's or an OpenID token's own groups) and
/// what a group they keep still admits are untouched. Their agents are judged alike, with
/// the agent's own groups and their person's before and after.
pub async fn group_change_effects(
    app: &App,
    before: Option<&ScimGroup>,
    after: Option<&ScimGroup>,
    client: &str,
    now: Timestamp,
) -> Result<Effects, ServiceError> {
    let Some(before) = before else {
        // A new group takes nothing away.
        return Ok(Effects::default());
    };
    let directory = app.directory();
    let staying: HashSet<&str> = after
        .map(|a| a.members.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let renamed = after.is_some_and(|a| a.display_name != before.display_name);
    let mut movers = Vec::new();
    for member in directory.members_by_id(&before.id) {
        let stays = staying.contains(member.id.as_str());
        if stays && !renamed {
            continue;
        }
        if !member.active {
            // Inactive users hold nothing to judge (ended when they left).
            continue;
        }
        let groups_before = directory.group_names_of_id(&member.id);
        let mut groups_after: Vec<String> = groups_before
            .iter()
            .filter(|g| **g != before.display_name)
            .cloned()
            .collect();
        if let (true, Some(a)) = (stays, after) {
            groups_after.push(a.display_name.clone());
        }
        movers.push(effects::Mover {
            principal: member.principal,
            groups_before,
            groups_after,
        });
    }
    if movers.is_empty() {
        return Ok(Effects::default());
    }
    effects::movers(app, &movers, &before.display_name, client, now).await
}

/// After `write` committed: bring this replica's directory, check index, token table and
/// waiters up to date. `user` / `group` are the records as written (`None` when deleted).
pub fn committed(app: &App, write: &DirectoryWrite, user: Option<&ScimUser>, group: Option<&ScimGroup>) {
    let _ = (user, group);
    let directory = app.directory();
    let mut touched: HashSet<String> = HashSet::new();
    match &write.change {
        ScimChange::PutUser { user, .. } => {
            if let Some(old) = directory.user(&user.id) {
                touched.insert(old.principal.to_ascii_lowercase());
                if !old.principal.eq_ignore_ascii_case(&user.principal) {
                    // Renamed: the old principal is blocked from now on by the directory
                    // itself (departed, in memory).
                    directory.leaving_done(&old.principal);
                }
            }
            directory.put_user(user);
            touched.insert(user.principal.to_ascii_lowercase());
            if !user.active {
                // Blocked from now on by the directory itself.
                directory.leaving_done(&user.principal);
            }
        }
        ScimChange::DeleteUser { id, .. } => {
            if let Some(principal) = directory.delete_user(id) {
                directory.leaving_done(&principal);
                touched.insert(principal.to_ascii_lowercase());
            }
        }
        ScimChange::PutGroup { group, members, .. } => {
            let renamed = directory
                .group_name(&group.id)
                .is_some_and(|name| name != group.display_name);
            let changed: Vec<String> = match members {
                _ if renamed => directory.members_by_id(&group.id).into_iter().map(|u| u.id).collect(),
                MemberChange::Keep => Vec::new(),
                MemberChange::Edit { add, remove } => add.iter().chain(remove).cloned().collect(),
                MemberChange::Set(list) => {
                    let now: HashSet<&String> = list.iter().collect();
                    let before: Vec<String> = directory.members_by_id(&group.id).into_iter().map(|u| u.id).collect();
                    let had: HashSet<&String> = before.iter().collect();
                    let mut changed: Vec<String> = before.iter().filter(|m| !now.contains(m)).cloned().collect();
                    changed.extend(list.iter().filter(|m| !had.contains(m)).cloned());
                    changed
                }
            };
            // A group write changes no user's principal: read before or after alike.
            touched.extend(
                changed
                    .iter()
                    .filter_map(|id| directory.user(id))
                    .map(|u| u.principal.to_ascii_lowercase()),
            );
            directory.put_group(group, members);
        }
        ScimChange::DeleteGroup { id, .. } => {
            touched.extend(
                directory
                    .members_by_id(id)
                    .into_iter()
                    .map(|u| u.principal.to_ascii_lowercase()),
            );
            directory.delete_group(id);
        }
    }
    for (before, after) in &write.transitions {
        app.track_committed(before, after);
    }
    app.authenticator()
        .directory_changed(&app.policy(), &touched, &write.revoked_tokens);
}

/// The member ids group `group_id` has after `change`, from this replica's memory, sorted:
/// what `group_change_effects` takes as `after.members`, without reading a large group's
/// members from the store.
pub fn members_after(app: &App, group_id: &str, change: &MemberChange) -> Vec<String> {
    let mut members: Vec<String> = match change {
        MemberChange::Set(list) => list.clone(),
        MemberChange::Keep => app.directory().member_ids(group_id),
        MemberChange::Edit { add, remove } => {
            let remove: HashSet<&String> = remove.iter().collect();
            let mut members: Vec<String> = app
                .directory()
                .member_ids(group_id)
                .into_iter()
                .filter(|m| !remove.contains(m))
                .collect();
            // Removed first, then added, as the directory in memory applies an edit.
            members.extend(add.iter().cloned());
            members
        }
    };
    members.sort();
    members.dedup();
    members
}

/// Why `principal` cannot be the principal of SCIM user `own_id` (`None` on create): it
/// names (case-insensitively) a `directory.toml` principal, the principal of an API token of
/// a service or of an agent, another SCIM user, or falls in another OIDC issuer's names.
/// `None` when it can.
pub fn principal_problem(app: &App, principal: &str, own_id: Option<&str>) -> Option<String> {
    if let Some(problem) = jitgate_core::principal_name_problem(principal) {
        return Some(format!(
            "principal {:?} {problem}",
            principal.escape_debug().to_string()
        ));
    }
    let settings = app.scim_settings();
    if let Some(prefix) = settings
        .foreign_prefixes
        .iter()
        .find(|p| !p.is_empty() && starts_with_ignoring_case(principal, p))
    {
        return Some(format!(
            "principal '{principal}' starts with '{prefix}', the prefix of another sign-in issuer's principals"
        ));
    }
    let policy = app.policy();
    if let Some(entry) = policy
        .principals()
        .find(|e| e.identity.principal.eq_ignore_ascii_case(principal))
    {
        return Some(format!(
            "principal '{principal}' is taken: directory.toml names '{}', and directory.toml wins",
            entry.identity.principal
        ));
    }
    // A service's or an agent's token (revoked or not): an identity provider must not take
    // over a name jitgate's admins gave a machine.
    if let Some(token) = app
        .authenticator()
        .api_tokens()
        .iter()
        .find(|t| (t.service || t.on_behalf_of.is_some()) && t.principal.eq_ignore_ascii_case(principal))
    {
        return Some(match token.on_behalf_of.as_deref() {
            Some(person) => format!(
                "principal '{principal}' is taken: '{}' is an agent acting for {person}",
                token.principal
            ),
            None => format!(
                "principal '{principal}' is taken: '{}' is a service's token",
                token.principal
            ),
        });
    }
    match app.directory().holder_of(principal) {
        Some(holder) if Some(holder.as_str()) != own_id => Some(format!(
            "principal '{principal}' is taken by another user of the directory"
        )),
        _ => None,
    }
}

fn starts_with_ignoring_case(text: &str, prefix: &str) -> bool {
    text.len() >= prefix.len()
        && text.is_char_boundary(prefix.len())
        && text[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// Why a SCIM group may not be called `name` (the roles jitgate reserves), or `None`.
pub fn group_name_problem(name: &str) -> Option<String> {
    if jitgate_policy::is_reserved_group(name) {
        return Some(format!(
            "group '{name}' is one of jitgate's own roles ({}); its members come from directory.toml only",
            jitgate_policy::RESERVED_GROUPS.join(", ")
        ));
    }
    if let Some(problem) = jitgate_core::principal_name_problem(name) {
        return Some(format!(
            "group name {:?} {}",
            name.escape_debug().to_string(),
            problem.replace("principal names", "group names")
        ));
    }
    if name.starts_with(jitgate_core::Step::PRINCIPAL_PREFIX) {
        return Some(format!(
            "group name '{name}': names starting with '{}' are reserved",
            jitgate_core::Step::PRINCIPAL_PREFIX
        ));
    }
    None
}

/// Why `who` may not act now because the provisioned directory blocks them (or their
/// person), or is ending their access: what filing and approving ask after they commit.
pub(crate) fn refusal(app: &App, who: &Identity) -> Option<String> {
    let policy = app.policy();
    let directory = app.directory();
    if who.kind == jitgate_core::PrincipalKind::Service {
        // The identity provider's blocking never reaches a service.
        return None;
    }
    let of = |principal: &str| {
        if policy.rules().principal(principal).is_some() {
            return None;
        }
        directory.blocked_or_leaving(principal)
    };
    if let Some(blocked) = of(&who.principal) {
        return Some(blocked.told(&who.principal));
    }
    // A CI job's `on_behalf_of` is who triggered it: their leaving does not stop the job (the
    // login is linked to them only while they are active, and they never review its request).
    let person = who.agent_person()?;
    of(person).map(|blocked| blocked.told_agent(&who.principal, person))
}

/// Another replica changed user `id`: read it again, and end what raced its leaving here.
/// What the replica follower does on hearing `Change::ScimUser(id)` (public for the tests
/// that drive that path).
pub async fn refresh_user(app: &App, id: &str) -> Result<(), ServiceError> {
    let directory = app.directory();
    let mut touched = HashSet::new();
    let old = directory.user(id);
    if let Some(old) = &old {
        touched.insert(old.principal.to_ascii_lowercase());
    }
    // Renamed (not in case alone): the old principal leaves, as of the change.
    let mut renamed_from = None;
    // The principal now blocked, and since when. A deletion's moment is not read back (the
    // store answers nothing for a deleted id): heard within moments of the write, it is no
    // earlier than a leaving mark lasts (`LEAVING_FOR`) before now, so approvals from then on
    // count as racing it.
    let blocked = match app.store.scim_user(id).await? {
        Some(user) => {
            directory.put_user(&user);
            touched.insert(user.principal.to_ascii_lowercase());
            if let Some(old) = old.filter(|o| !o.principal.eq_ignore_ascii_case(&user.principal)) {
                renamed_from = Some((old.principal, user.modified_at));
            }
            (!user.active).then_some((user.principal, user.modified_at))
        }
        None => directory
            .delete_user(id)
            .map(|principal| (principal, deleted_since(crate::clock::now()))),
    };
    app.authenticator().directory_changed(&app.policy(), &touched, &[]);
    // Owed first, then done: read again on a retry, the record no longer shows the rename or
    // the deletion, so a sweep that fails must stay owed where the retry finds it.
    for (principal, since) in renamed_from.into_iter().chain(blocked) {
        directory.owe_sweep(principal, since);
    }
    sweep_owed(app).await
}

/// Do the sweeps owed (by a user heard of, or a full reload that found principals newly
/// blocked); those that fail stay owed, and the first failure is returned (the follower
/// retries, and the retry sweeps them).
pub(crate) async fn sweep_owed(app: &App) -> Result<(), ServiceError> {
    let mut failed = None;
    for (principal, since) in app.directory().take_owed_sweeps() {
        if let Err(e) = effects::sweep(app, &principal, Some(since)).await {
            app.directory().owe_sweep(principal, since);
            failed = failed.or(Some(e));
        }
    }
    failed.map_or(Ok(()), Err)
}

/// Since when a deletion heard now (whose moment is not kept) is taken to have been made:
/// a leaving mark's lifetime ago.
pub(crate) fn deleted_since(now: Timestamp) -> Timestamp {
    let window = chrono::TimeDelta::from_std(memory::LEAVING_FOR).unwrap_or(chrono::TimeDelta::minutes(1));
    now - window
}

/// What a replica does on hearing that `principal` is blocked (deactivated at `since`, or
/// deleted: `None`): end, as the system, what committed on any replica between the change's
/// reads and its write — requests filed, approvals given, grants those approvals completed
/// from `since` on — and tokens of theirs still live.
pub async fn sweep_leaver(app: &App, principal: &str, since: Option<Timestamp>) -> Result<(), ServiceError> {
    effects::sweep(app, principal, since).await
}

/// Another replica changed group `id`: read it again with its members.
pub(crate) async fn refresh_group(app: &App, id: &str) -> Result<(), ServiceError> {
    let directory = app.directory();
    let mut touched: HashSet<String> = directory
        .members_by_id(id)
        .into_iter()
        .map(|u| u.principal.to_ascii_lowercase())
        .collect();
    match app.store.scim_group(id).await? {
        Some(group) => {
            directory.put_group(&group, &MemberChange::Set(group.members.clone()));
            touched.extend(
                directory
                    .members_by_id(id)
                    .into_iter()
                    .map(|u| u.principal.to_ascii_lowercase()),
            );
        }
        None => directory.delete_group(id),
    }
    app.authenticator().directory_changed(&app.policy(), &touched, &[]);
    Ok(())
}

/// Undo what `who` committed while the directory was ending their access (a request filed,
/// an approval given): `request` as it was saved. Conflicts are read again and retried.
pub(crate) async fn undo_raced(app: &App, who: &Identity, request_id: &str, told: &str) -> Result<(), ServiceError> {
    effects::undo_raced(app, who, request_id, told).await
}
