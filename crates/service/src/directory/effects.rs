//! What a provisioning change ends, computed from the store as it is now and the pure
//! transitions of the core: nothing here writes, except the sweep a replica does after
//! hearing of a leaver (what raced the change) and the undoing of a filing or approval that
//! raced it.

use super::Effects;
use crate::{App, ServiceError};
use jitgate_core::machine::{self, Transition};
use jitgate_core::{ApiToken, GrantStatus, Identity, PrincipalKind, Request, RequestStatus, Timestamp};
use jitgate_store::{GrantFilter, RequestFilter, StoreError};
use std::collections::{BTreeSet, HashMap};

/// Rows read per page while looking for what a change ends.
const PAGE: u32 = 500;
/// How far replicas' clocks may disagree, for what a sweep looks back on.
const CLOCK_SKEW_SECONDS: i64 = 5;
/// How often an undo is tried again when the request changed meanwhile.
const UNDO_RETRIES: usize = 16;

/// A user who left a group, with the provisioned groups they were in before the change and
/// are in after it.
#[derive(Debug, Clone)]
pub(super) struct Mover {
    pub principal: String,
    pub groups_before: Vec<String>,
    pub groups_after: Vec<String>,
}

/// Transitions gathered per request: a request touched twice (an agent's request its person
/// approved) gets both, applied one after the other, saved once.
#[derive(Default)]
struct Gathered {
    order: Vec<String>,
    by_id: HashMap<String, (Request, Request)>,
    events: Vec<jitgate_core::NewEvent>,
    tokens: Vec<ApiToken>,
}

impl Gathered {
    /// The request as the transitions gathered so far leave it.
    fn current(&self, read: &Request) -> Request {
        self.by_id
            .get(&read.id)
            .map_or_else(|| read.clone(), |(_, after)| after.clone())
    }

    fn add(&mut self, read: &Request, t: Transition) {
        if t.events.is_empty() {
            return;
        }
        self.events.extend(t.events);
        match self.by_id.get_mut(&read.id) {
            Some((_, after)) => *after = t.request,
            None => {
                self.order.push(read.id.clone());
                self.by_id.insert(read.id.clone(), (read.clone(), t.request));
            }
        }
    }

    fn into_effects(mut self) -> Effects {
        let transitions = self.order.iter().filter_map(|id| self.by_id.remove(id)).collect();
        Effects {
            transitions,
            revoked_tokens: self.tokens,
            events: self.events,
        }
    }
}

/// Every active grant of `holder`, with the request it belongs to (each request once).
async fn active_grants(app: &App, holder: &str, now: Timestamp) -> Result<Vec<Request>, StoreError> {
    let mut requests: Vec<Request> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut filter = GrantFilter {
        principal: Some(holder.to_string()),
        status: Some(GrantStatus::Active),
        limit: PAGE,
        before: None,
    };
    loop {
        let page = app.store.list_grants(&filter, now).await?;
        for grant in &page {
            if !seen.insert(grant.request_id.clone()) {
                continue;
            }
            if let Some(request) = app.store.get_request_by_grant(&grant.id).await? {
                requests.push(request);
            }
        }
        if page.len() < PAGE as usize {
            return Ok(requests);
        }
        filter.before = page.last().map(|g| g.id.clone());
    }
}

/// Every request matching `filter` (paged through to the end).
async fn all_requests(app: &App, mut filter: RequestFilter, now: Timestamp) -> Result<Vec<Request>, StoreError> {
    filter.limit = PAGE;
    let mut all = Vec::new();
    loop {
        let page = app.store.list_requests(&filter, now).await?;
        let full = page.len() == PAGE as usize;
        filter.before = page.last().map(|r| r.id.clone());
        all.extend(page);
        if !full {
            return Ok(all);
        }
    }
}

fn pending_of(requester: &str) -> RequestFilter {
    RequestFilter {
        status: Some(RequestStatus::Pending),
        requester: Some(requester.to_string()),
        limit: PAGE,
        before: None,
    }
}

fn all_pending() -> RequestFilter {
    RequestFilter {
        status: Some(RequestStatus::Pending),
        requester: None,
        limit: PAGE,
        before: None,
    }
}

/// The spellings of `principal` (ASCII case aside) among the reviewers of `request`'s
/// approvals: a leaver's approvals under any spelling.
fn reviewers_like(request: &Request, principal: &str) -> BTreeSet<String> {
    std::iter::once(&request.approvals)
        .chain(request.items.iter().map(|i| &i.approvals))
        .flatten()
        .filter(|a| a.reviewer.eq_ignore_ascii_case(principal))
        .map(|a| a.reviewer.clone())
        .collect()
}

/// Every active grant held under any spelling of `holder` (ASCII case aside): the spellings
/// this replica's check index holds grants under, and `holder` itself.
async fn active_grants_like(app: &App, holder: &str, now: Timestamp) -> Result<Vec<Request>, StoreError> {
    let mut spellings = app.principals_holding_like(holder);
    if !spellings.iter().any(|s| s == holder) {
        spellings.push(holder.to_string());
    }
    let mut requests = Vec::new();
    for spelling in &spellings {
        requests.extend(active_grants(app, spelling, now).await?);
    }
    Ok(requests)
}

/// What a leaver's leaving ends (see the module of `directory`): `since`, when given, also
/// ends grants whose request an approval of the leaver's completed at or after it, less
/// `CLOCK_SKEW_SECONDS` (a sweep after the fact: the approval raced the change).
///
/// Principals compare ignoring ASCII case throughout, as `Directory::blocked` does: `Alice`
/// deactivated ends what `alice` (an OpenID sign-in, a token made for that spelling) holds.
pub(super) async fn leaver(
    app: &App,
    principal: &str,
    actor: &str,
    comment: &str,
    since: Option<Timestamp>,
    now: Timestamp,
) -> Result<Effects, ServiceError> {
    let like = |name: &str| name.eq_ignore_ascii_case(principal);
    let mut gathered = Gathered::default();
    let tokens = app.store.list_tokens().await?;
    let agents: BTreeSet<String> = tokens
        .iter()
        .filter(|t| t.on_behalf_of.as_deref().is_some_and(like))
        .map(|t| t.principal.clone())
        .collect();
    // A service's token is never the identity provider's to end.
    for token in tokens.iter().filter(|t| {
        t.revoked_at.is_none()
            && !t.scim
            && !t.service
            && (like(&t.principal) || t.on_behalf_of.as_deref().is_some_and(like))
    }) {
        let (revoked, mut event) = token.revoke(actor, now);
        event.comment = Some(match event.comment.take() {
            Some(detail) => format!("{detail}: {comment}"),
            None => comment.to_string(),
        });
        gathered.tokens.push(revoked);
        gathered.events.push(event);
    }
    let holders: Vec<&str> = std::iter::once(principal)
        .chain(agents.iter().map(String::as_str))
        .collect();
    for holder in &holders {
        for request in active_grants_like(app, holder, now).await? {
            let current = gathered.current(&request);
            if let Ok(t) = machine::revoke_by_system(&current, actor, Some(comment.to_string()), now) {
                gathered.add(&request, t);
            }
        }
    }
    // One scan of the pending requests: theirs (any spelling) cancelled, their approvals
    // (any spelling) on the others withdrawn.
    for request in all_requests(app, all_pending(), now).await? {
        if holders.iter().any(|h| request.requester.eq_ignore_ascii_case(h)) {
            let current = gathered.current(&request);
            if let Ok(t) = machine::cancel_by_system(&current, actor, Some(comment.to_string()), now) {
                gathered.add(&request, t);
            }
            continue;
        }
        for reviewer in reviewers_like(&request, principal) {
            let current = gathered.current(&request);
            let t = machine::withdraw_approvals(&current, &reviewer, actor, Some(comment.to_string()), now);
            gathered.add(&request, t);
        }
    }
    if let Some(since) = since {
        // Grants completed by an approval the leaver gave once their leaving began.
        let mut filter = GrantFilter {
            principal: None,
            status: Some(GrantStatus::Active),
            limit: PAGE,
            before: None,
        };
        // Newest first: a grant issued before the change (less the clocks' skew between
        // replicas) was not completed by a late approval, nor is any older one. An approval
        // is late by the same allowance: it may have been stamped by a replica whose clock
        // is behind the one that stamped the change.
        let issued_after = since - chrono::TimeDelta::seconds(CLOCK_SKEW_SECONDS);
        'pages: loop {
            let page = app.store.list_grants(&filter, now).await?;
            for grant in &page {
                if grant.starts_at < issued_after {
                    break 'pages;
                }
                let Some(request) = app.store.get_request_by_grant(&grant.id).await? else {
                    continue;
                };
                let late = std::iter::once(&request.approvals)
                    .chain(request.items.iter().map(|i| &i.approvals))
                    .flatten()
                    .any(|a| a.reviewer.eq_ignore_ascii_case(principal) && a.at >= issued_after);
                if late && !gathered.by_id.contains_key(&request.id) {
                    let current = gathered.current(&request);
                    if let Ok(t) = machine::revoke_by_system(&current, actor, Some(comment.to_string()), now) {
                        gathered.add(&request, t);
                    }
                }
            }
            if page.len() < PAGE as usize {
                break;
            }
            filter.before = page.last().map(|g| g.id.clone());
        }
    }
    Ok(gathered.into_effects())
}

/// Does Cedar admit `view` for `identity` (the `request` ability, or `break_glass` for a
/// break-glass one; duration and reason limits are not judged again)?
fn admits(policy: &jitgate_policy::Policy, identity: &Identity, view: &Request, now: Timestamp) -> bool {
    policy.still_admits(identity, view, now).is_ok()
}

/// What the change took away for `view`: the identity `before` was admitted, and none of the
/// identities `after` is.
fn taken_away(
    policy: &jitgate_policy::Policy,
    before: &Identity,
    after: &[Identity],
    view: &Request,
    now: Timestamp,
) -> bool {
    admits(policy, before, view, now) && !after.iter().any(|a| admits(policy, a, view, now))
}

/// Judge one holder's grants and pending requests with their identity `before` the change
/// and their identities `after` it; end what the change took away (see
/// `directory::group_change_effects`). The principal compares exactly here, unlike a
/// leaver's: the identity provider's groups reach only the exact principal (another
/// spelling never had them, so nothing of its was obtained through them), and a group of
/// 10,000 members deleted must not scan the check index once per member.
async fn judge_holder(
    app: &App,
    before: &Identity,
    after: &[Identity],
    actor: &str,
    comment: &str,
    now: Timestamp,
    gathered: &mut Gathered,
) -> Result<(), ServiceError> {
    let policy = app.policy();
    for request in active_grants(app, &before.principal, now).await? {
        let at = now;
        let ended = request
            .grants()
            .filter(|g| g.status_at(at) == GrantStatus::Active)
            .filter_map(|g| request.view_of_grant(&g.id))
            .any(|view| taken_away(&policy, before, after, &view, now));
        if !ended {
            continue;
        }
        let current = gathered.current(&request);
        if let Ok(t) = machine::revoke_by_system(&current, actor, Some(comment.to_string()), now) {
            gathered.add(&request, t);
        }
    }
    for request in all_requests(app, pending_of(&before.principal), now).await? {
        let ended = (0..request.item_count())
            .filter_map(|i| request.item_request(i))
            .any(|item| taken_away(&policy, before, after, &item, now));
        if !ended {
            continue;
        }
        let current = gathered.current(&request);
        if let Ok(t) = machine::cancel_by_system(&current, actor, Some(comment.to_string()), now) {
            gathered.add(&request, t);
        }
    }
    Ok(())
}

/// `identity` with the provisioned `groups` added (never a reserved one, nor one of
/// `except`).
fn with_groups(mut identity: Identity, groups: &[String], except: &[&str]) -> Identity {
    for g in groups {
        if !jitgate_policy::is_reserved_group(g) && !except.contains(&g.as_str()) && !identity.in_group(g) {
            identity.groups.push(g.clone());
        }
    }
    identity
}

/// The person's groups an agent never inherits (as `auth::tokens` resolves agents).
const NOT_INHERITED: [&str; 2] = [jitgate_core::identity::ADMIN_GROUP, jitgate_core::authz::AUDITOR_GROUP];

/// What users leaving group `left` (renamed or deleted, or they were removed) ends.
pub(super) async fn movers(
    app: &App,
    movers: &[Mover],
    left: &str,
    client: &str,
    now: Timestamp,
) -> Result<Effects, ServiceError> {
    let policy = app.policy();
    let tokens = app.store.list_tokens().await?;
    let live = |t: &&ApiToken| t.revoked_at.is_none() && !t.scim && !t.service;
    let mut gathered = Gathered::default();
    let mut judged: Vec<(&str, Identity, Vec<Identity>)> = Vec::new();
    for mover in movers {
        // directory.toml wins: the identity provider's groups are not theirs.
        if policy.rules().principal(&mover.principal).is_some() {
            continue;
        }
        let comment = format!("{} left {left} ({client})", mover.principal);
        let base = crate::auth::tokens::resolve(&policy, Identity::user(&mover.principal, &[]));
        let before = with_groups(base.clone(), &mover.groups_before, &[]);
        // After: the directory's identity, and each live token of theirs with its own groups.
        let mut after = vec![with_groups(base, &mover.groups_after, &[])];
        for token in tokens
            .iter()
            .filter(live)
            .filter(|t| t.on_behalf_of.is_none() && t.principal == mover.principal)
        {
            let own = crate::auth::tokens::resolve(&policy, Identity::user(&mover.principal, &[]));
            let mut own = with_groups(own, &mover.groups_after, &[]);
            for g in &token.groups {
                if !own.in_group(g) {
                    own.groups.push(g.clone());
                }
            }
            after.push(own);
        }
        judge_holder(app, &before, &after, client, &comment, now, &mut gathered).await?;
        // Their agents carry their groups: judged with the person's groups before and after.
        for token in tokens
            .iter()
            .filter(live)
            .filter(|t| t.on_behalf_of.as_deref() == Some(mover.principal.as_str()))
        {
            let own = Identity {
                principal: token.principal.clone(),
                groups: token.groups.clone(),
                kind: PrincipalKind::User,
                on_behalf_of: None,
                ci: None,
            };
            let agent = crate::auth::tokens::resolve_agent(&policy, own, &mover.principal);
            let agent_before = with_groups(agent.clone(), &mover.groups_before, &NOT_INHERITED);
            let agent_after = with_groups(agent, &mover.groups_after, &NOT_INHERITED);
            judge_holder(app, &agent_before, &[agent_after], client, &comment, now, &mut gathered).await?;
        }
        judged.push((mover.principal.as_str(), before, after));
    }
    if judged.is_empty() {
        return Ok(gathered.into_effects());
    }
    for request in all_requests(app, all_pending(), now).await? {
        for (principal, before, after) in &judged {
            // Exactly their principal's approvals: the groups were that spelling's only.
            if !reviewers_like(&request, principal).contains(*principal) {
                continue;
            }
            let current = gathered.current(&request);
            let comment = format!("{principal} left {left} ({client})");
            let t = machine::withdraw_approvals_moved(&current, principal, before, after, client, Some(comment), now);
            gathered.add(&request, t);
        }
    }
    Ok(gathered.into_effects())
}

/// Save `transitions` one by one (after the fact: not with the change), ignoring those
/// another writer moved on first; then take them into this replica's memory.
async fn save_each(app: &App, effects: Effects) -> Result<(), ServiceError> {
    let mut events_of: HashMap<String, Vec<jitgate_core::NewEvent>> = HashMap::new();
    let mut other_events = Vec::new();
    for event in effects.events {
        match &event.request_id {
            Some(id) => events_of.entry(id.clone()).or_default().push(event),
            None => other_events.push(event),
        }
    }
    for (before, after) in effects.transitions {
        let events = events_of.remove(&before.id).unwrap_or_default();
        match app.store.save_transition(&before, &after, &events).await {
            Ok(saved) => app.track_committed(&before, &saved),
            Err(StoreError::Conflict) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut revoked_any = false;
    for token in &effects.revoked_tokens {
        let Some(event) = other_events
            .iter()
            .find(|e| {
                e.kind == jitgate_core::EventKind::TokenRevoked
                    && e.comment
                        .as_deref()
                        .is_some_and(|c| c.starts_with(&format!("token {}", token.id)))
            })
            .cloned()
        else {
            continue;
        };
        match app.store.revoke_token(token, &event).await {
            Ok(()) => revoked_any = true,
            Err(StoreError::Conflict) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if revoked_any {
        app.reload_tokens().await?;
    }
    Ok(())
}

/// A replica heard that `principal` is blocked: end what committed between the change's
/// reads and its write (a request filed, an approval given, on any replica), as the system.
/// `since`: when the change was made (the record's `modified_at`); grants an approval of
/// theirs completed from then on are revoked too (the change's own reads saw everything
/// older, and an approval that completed a request before it stands).
pub(super) async fn sweep(app: &App, principal: &str, since: Option<Timestamp>) -> Result<(), ServiceError> {
    if app.policy().rules().principal(principal).is_some() {
        return Ok(());
    }
    let now = crate::clock::now();
    let comment = format!("{principal} left the directory while this was under way");
    let effects = leaver(app, principal, jitgate_core::audit::SYSTEM_ACTOR, &comment, since, now).await?;
    if effects.transitions.is_empty() && effects.revoked_tokens.is_empty() {
        return Ok(());
    }
    tracing::warn!(
        principal,
        requests = effects.transitions.len(),
        tokens = effects.revoked_tokens.len(),
        "ending what raced a leaver's deactivation"
    );
    save_each(app, effects).await
}

/// Undo what `who` committed on `request_id` while the directory was ending their access:
/// a request they filed is cancelled (or its grant revoked), an approval they gave is
/// withdrawn (or, if it completed the request, its grant revoked).
pub(super) async fn undo_raced(app: &App, who: &Identity, request_id: &str, told: &str) -> Result<(), ServiceError> {
    let actor = jitgate_core::audit::SYSTEM_ACTOR;
    let comment = format!("{told}; undone: it raced the change");
    for _ in 0..UNDO_RETRIES {
        let Some(current) = app.store.get_request(request_id).await? else {
            return Ok(());
        };
        let now = crate::clock::now();
        let filed_by_them = current.requester == who.principal;
        let transition = match current.status_at(now) {
            RequestStatus::Pending if filed_by_them => {
                machine::cancel_by_system(&current, actor, Some(comment.clone()), now).ok()
            }
            RequestStatus::Pending => Some(machine::withdraw_approvals(
                &current,
                &who.principal,
                actor,
                Some(comment.clone()),
                now,
            ))
            .filter(|t| !t.events.is_empty()),
            RequestStatus::Approved => machine::revoke_by_system(&current, actor, Some(comment.clone()), now).ok(),
            _ => None,
        };
        let Some(Transition { request, events }) = transition else {
            return Ok(());
        };
        match app.store.save_transition(&current, &request, &events).await {
            Ok(saved) => {
                app.track_committed(&current, &saved);
                return Ok(());
            }
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ServiceError::Conflict(format!(
        "{request_id} is changing too often to undo what {} did; try again",
        who.principal
    )))
}
