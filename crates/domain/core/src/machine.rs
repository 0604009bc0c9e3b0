//! The state machine. Every transition is one function that takes the current request, the
//! actor and `now`, and returns the new request together with the audit events it owes, so
//! no state change can exist without its event. Nothing here does I/O.

use crate::admission::{Admission, Ask};
use crate::audit::{EventKind, NewEvent, SYSTEM_ACTOR};
use crate::error::DomainError;
use crate::identity::Identity;
use crate::model::{
    payload_digest, Approval, Grant, GrantStatus, Item, Request, RequestStatus, Requirement, Review, Step,
};
use crate::Timestamp;

/// A new state and the events that record how it came about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub request: Request,
    pub events: Vec<NewEvent>,
}

/// Identifiers minted by the caller (the core has no randomness either).
#[derive(Debug, Clone)]
pub struct NewIds {
    pub request_id: String,
    pub grant_id: String,
}

/// Longest reviewer comment kept.
pub const MAX_COMMENT_LEN: usize = 2000;

fn event(kind: EventKind, request: &Request, actor: &str, comment: Option<String>, at: Timestamp) -> NewEvent {
    NewEvent {
        kind,
        at,
        actor: actor.to_string(),
        subject: request.requester.clone(),
        request_id: Some(request.id.clone()),
        grant_id: request.grant.as_ref().map(|g| g.id.clone()),
        resource: request.resource.clone(),
        action: request.action.clone(),
        comment,
    }
}

/// An event about one grant: it names that grant's resource and action, so a multi-item
/// request's events file under each item.
fn grant_event(
    kind: EventKind,
    request: &Request,
    grant: &Grant,
    actor: &str,
    comment: Option<String>,
    at: Timestamp,
) -> NewEvent {
    NewEvent {
        grant_id: Some(grant.id.clone()),
        resource: grant.resource.clone(),
        action: grant.action.clone(),
        ..event(kind, request, actor, comment, at)
    }
}

/// An event about item `i` of a request (0: its own resource and action).
fn item_event(
    kind: EventKind,
    request: &Request,
    i: usize,
    actor: &str,
    comment: Option<String>,
    at: Timestamp,
) -> NewEvent {
    let mut e = event(kind, request, actor, comment, at);
    if let Some(item) = i.checked_sub(1).and_then(|k| request.items.get(k)) {
        e.resource = item.resource.clone();
        e.action = item.action.clone();
        e.grant_id = item.grant.as_ref().map(|g| g.id.clone());
    }
    e
}

/// The `request.filed` comment: the reason, and for an agent's request who it acts for, so
/// the log names both the agent (the actor) and its person.
fn filed_comment(request: &Request, reason: &str) -> String {
    match &request.on_behalf_of {
        Some(person) if request.agent_person().is_none() => format!("{reason} (triggered by {person})"),
        Some(person) => format!(
            "{reason} (filed by {}, an agent acting for {person})",
            request.requester
        ),
        None => reason.to_string(),
    }
}

/// Refuse a reviewer who may never decide this request: an agent (agents never approve, deny
/// or review), or the person the request's agent acts for (who counts as its requester, so an
/// agent cannot get its person's approval of what it asked).
fn refuse_reviewer(request: &Request, reviewer: &Identity, verb: &str) -> Result<(), DomainError> {
    if let Some(why) = reviewer.agent_may_not_review() {
        return Err(DomainError::Forbidden(why));
    }
    if request.on_behalf_of.as_deref() == Some(reviewer.principal.as_str()) && request.agent_person().is_none() {
        return Err(DomainError::Forbidden(format!(
            "{} may not {verb} request {}: {} triggered the CI job that filed it (as {}) and counts as \
             its requester; someone else must decide",
            reviewer.principal, request.id, reviewer.principal, request.requester
        )));
    }
    if request.on_behalf_of.as_deref() == Some(reviewer.principal.as_str()) {
        return Err(DomainError::Forbidden(format!(
            "{} may not {verb} request {}: it was filed by {}, an agent acting for {}, and an agent's \
             person counts as its requester; another reviewer must decide (the person may cancel it)",
            reviewer.principal, request.id, request.requester, reviewer.principal
        )));
    }
    Ok(())
}

/// Approving is bound to what the reviewer saw: if they send an item's payload SHA-256, it must
/// be that item's own payload's, or nothing is approved. `request` is the one-item view of the
/// item (see [`Request::item_request`]).
fn confirm_payload(request: &Request, confirmed: Option<&str>) -> Result<(), DomainError> {
    let Some(confirmed) = confirmed else {
        return Ok(());
    };
    let what = format!("{} on {}", request.action, request.resource);
    match &request.payload_sha256 {
        Some(actual) if actual.eq_ignore_ascii_case(confirmed) => Ok(()),
        Some(actual) => Err(DomainError::PayloadMismatch(format!(
            "payload_sha256: you confirmed {confirmed} for {what}, but request {} carries the payload with \
             sha256 {actual} there; look at the payload again (jitgate show {} --payload) before approving",
            request.id, request.id
        ))),
        None => Err(DomainError::PayloadMismatch(format!(
            "payload_sha256: you confirmed {confirmed} for {what}, but request {} carries no payload there",
            request.id
        ))),
    }
}

/// What the reviewer was shown before approving, which the approval is bound to: it is saved
/// only if the request, at the moment it is saved, still is what they saw. Empty: bound to
/// nothing (the API's approval without `payload_sha256`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shown {
    /// Item `i`'s payload SHA-256 (hex) as shown, at index `i`; `None` or missing: not shown.
    /// Each must be that item's own payload's; item `i`'s approval records its own.
    pub payload_sha256: Vec<Option<String>>,
    /// Where the approval was told it lands: at index `i`, the approvals item `i`'s step already
    /// had ([`ApprovalPlace::given`]), `None` for an item it counts towards no step of. Checked
    /// when `Some`.
    pub places: Option<Vec<Option<u32>>>,
    /// Whether the reviewer was told theirs is the last approval (access at once). Checked
    /// when `Some`.
    pub last: Option<bool>,
}

impl Shown {
    /// Bound to the first item's payload hash only, as the API's `payload_sha256` is.
    pub fn payload(confirmed: Option<&str>) -> Shown {
        Shown {
            payload_sha256: vec![confirmed.map(str::to_string)],
            ..Shown::default()
        }
    }

    fn hash(&self, i: usize) -> Option<&str> {
        self.payload_sha256.get(i).and_then(|h| h.as_deref())
    }

    /// Refused (409, nothing saved) when the approval would not land where the reviewer was
    /// told: someone approved (or the request changed) between their look and their click.
    fn check_places(&self, request: &Request, landed: &[Option<u32>], completes: bool) -> Result<(), DomainError> {
        let places_differ = self.places.as_ref().is_some_and(|told| {
            (0..request.item_count()).any(|i| told.get(i).copied().flatten() != landed.get(i).copied().flatten())
        });
        let last_differs = self.last.is_some_and(|told| told != completes);
        if places_differ || last_differs {
            return Err(DomainError::Conflict(format!(
                "request {} changed since you looked: another approval came in, so yours would not count \
                 as you were told{}; nothing was approved: reload the request and look again",
                request.id,
                match (self.last, completes) {
                    (Some(false), true) => " (it would now be the last one and grant access at once)",
                    (Some(true), false) => " (it would no longer be the last one)",
                    _ => "",
                }
            )));
        }
        Ok(())
    }
}

/// The approval event's comment: the reviewer's, and the payload hash they confirmed.
fn approval_comment(comment: &Option<String>, confirmed: Option<&str>) -> Option<String> {
    match (comment, confirmed) {
        (c, None) => c.clone(),
        (None, Some(h)) => Some(format!("approved payload sha256 {}", h.to_ascii_lowercase())),
        (Some(c), Some(h)) => Some(format!("{c} (approved payload sha256 {})", h.to_ascii_lowercase())),
    }
}

fn check_comment(comment: &Option<String>) -> Result<(), DomainError> {
    match comment {
        Some(c) => {
            DomainError::check_len("comment", c, MAX_COMMENT_LEN)?;
            crate::text::check_reviewed("comment", c, crate::text::Lines::Many)
        }
        None => Ok(()),
    }
}

/// Approvals still owed per step. Each approval counted towards the step it was given for.
pub fn remaining_steps(steps: &[Step], approvals: &[Approval]) -> Vec<Step> {
    steps
        .iter()
        .enumerate()
        .filter_map(|(i, step)| {
            let given = approvals.iter().filter(|a| a.step == i).count() as u32;
            (given < step.approvals).then(|| Step {
                group: step.group.clone(),
                approvals: step.approvals - given,
            })
        })
        .collect()
}

/// The grant of one item, with the request's window.
fn item_grant(request: &Request, id: String, item: Option<&Item>, now: Timestamp) -> Grant {
    let (resource, action, payload_sha256, requirement) = match item {
        Some(i) => (&i.resource, &i.action, &i.payload_sha256, &i.requirement),
        None => (
            &request.resource,
            &request.action,
            &request.payload_sha256,
            &request.requirement,
        ),
    };
    Grant {
        id,
        request_id: request.id.clone(),
        principal: request.requester.clone(),
        resource: resource.clone(),
        action: action.clone(),
        payload_sha256: if requirement.action_bound {
            payload_sha256.clone()
        } else {
            None
        },
        single_use: requirement.single_use,
        break_glass: request.break_glass,
        status: GrantStatus::Active,
        starts_at: now,
        expires_at: now + request.duration.as_delta(),
        ended_at: None,
        ended_by: None,
        end_comment: None,
        extensions: 0,
        token: None,
        providers: requirement.providers.clone(),
    }
}

/// Approve the request and issue one grant per item, all with one window starting now: the
/// first item's under `grant_ids[0]`, item `i`'s under `grant_ids[i]`. The events name each
/// grant's own resource and action.
fn issue_grants(request: &mut Request, grant_ids: &[String], now: Timestamp) -> Vec<NewEvent> {
    let first_id = grant_ids
        .first()
        .cloned()
        .unwrap_or_else(|| format!("grt_{}", request.id));
    let first = issue_grant(request, first_id.clone(), now);
    let mut events = vec![first];
    for k in 0..request.items.len() {
        // The caller mints one id per item; should it not, the id still stays unique.
        let id = grant_ids
            .get(k + 1)
            .cloned()
            .unwrap_or_else(|| format!("{first_id}.{}", k + 1));
        let grant = item_grant(request, id, request.items.get(k), now);
        events.push(grant_event(
            EventKind::GrantIssued,
            request,
            &grant,
            SYSTEM_ACTOR,
            None,
            now,
        ));
        if let Some(item) = request.items.get_mut(k) {
            item.grant = Some(grant);
        }
    }
    events
}

fn issue_grant(request: &mut Request, grant_id: String, now: Timestamp) -> NewEvent {
    request.status = RequestStatus::Approved;
    request.decided_at = Some(now);
    request.grant = Some(item_grant(request, grant_id, None, now));
    event(EventKind::GrantIssued, request, SYSTEM_ACTOR, None, now)
}

/// A further item of a multi-item filing, as its own workflow admitted it.
#[derive(Debug, Clone)]
pub struct FiledItem {
    pub resource: String,
    pub action: String,
    pub payload: Option<String>,
    pub requirement: Requirement,
    /// The id its grant gets if the request is approved at filing (all items automatic).
    pub grant_id: String,
}

/// File a request the policy has admitted. An automatic or break-glass request (one with no
/// approval steps) is approved, and its grant issued, in the same transition.
pub fn file(who: &Identity, ask: &Ask<'_>, admission: Admission, ids: NewIds, now: Timestamp) -> Transition {
    file_items(who, ask, admission, Vec::new(), ids, now)
}

/// File a request for several things at once: `ask` and `admission` are its first item,
/// `further` the others, each admitted by its own workflow. It waits as long as the most
/// impatient item's workflow allows, and is approved at filing only if no item needs a review.
pub fn file_items(
    who: &Identity,
    ask: &Ask<'_>,
    admission: Admission,
    further: Vec<FiledItem>,
    ids: NewIds,
    now: Timestamp,
) -> Transition {
    let decided_by = admission.decided_by;
    let pending_ttl = further
        .iter()
        .map(|i| i.requirement.pending_ttl)
        .fold(admission.requirement.pending_ttl, |a, b| if b.0 < a.0 { b } else { a });
    let mut grant_ids = vec![ids.grant_id];
    let items: Vec<Item> = further
        .into_iter()
        .map(|i| {
            grant_ids.push(i.grant_id);
            Item {
                resource: i.resource,
                action: i.action,
                payload_sha256: i.payload.as_deref().map(payload_digest),
                payload: i.payload,
                requirement: i.requirement,
                approvals: Vec::new(),
                grant: None,
            }
        })
        .collect();
    let mut request = Request {
        id: ids.request_id,
        requester: who.principal.clone(),
        on_behalf_of: who.on_behalf_of.clone(),
        resource: ask.resource.to_string(),
        action: ask.action.to_string(),
        reason: crate::text::trim_invisible(ask.reason).to_string(),
        payload: ask.payload.map(str::to_string),
        payload_sha256: ask.payload.map(payload_digest),
        duration: admission.duration,
        break_glass: ask.break_glass,
        status: RequestStatus::Pending,
        pending_expires_at: now + pending_ttl.as_delta(),
        requirement: admission.requirement,
        approvals: Vec::new(),
        closed_by: None,
        created_at: now,
        decided_at: None,
        grant: None,
        post_review: None,
        escalated_at: None,
        done: None,
        items,
        version: 0,
    };
    let mut events = vec![event(
        EventKind::RequestFiled,
        &request,
        &who.principal,
        Some(filed_comment(&request, &request.reason)),
        now,
    )];
    // Each further item is filed under its own resource and action, so the log finds it there.
    let count = request.item_count();
    for i in 1..count {
        let comment = filed_comment(&request, &format!("item {} of {count}: {}", i + 1, request.reason));
        events.push(item_event(
            EventKind::RequestFiled,
            &request,
            i,
            &who.principal,
            Some(comment),
            now,
        ));
    }
    let automatic =
        request.requirement.steps.is_empty() && request.items.iter().all(|i| i.requirement.steps.is_empty());
    if automatic {
        let issued = issue_grants(&mut request, &grant_ids, now);
        if request.break_glass {
            // The alert names the workflow's alert text, then the requester's reason.
            for i in 0..count {
                let requirement = match i {
                    0 => &request.requirement,
                    _ => &request.items[i - 1].requirement,
                };
                let alert = match &requirement.alert {
                    Some(alert) => format!("{alert}: {}", request.reason),
                    None => request.reason.clone(),
                };
                events.push(item_event(
                    EventKind::BreakGlassRaised,
                    &request,
                    i,
                    &who.principal,
                    Some(alert),
                    now,
                ));
            }
        }
        // Nobody reviewed it, so the event names what in the policy approved it instead.
        let kind = if request.break_glass {
            "break-glass"
        } else {
            "automatic"
        };
        let why = decided_by.map(|by| format!("{kind}: {by}"));
        events.push(event(EventKind::RequestApproved, &request, SYSTEM_ACTOR, why, now));
        events.extend(issued);
    }
    Transition { request, events }
}

fn require_pending(request: &Request, now: Timestamp) -> Result<(), DomainError> {
    match request.status_at(now) {
        RequestStatus::Pending => Ok(()),
        status => Err(DomainError::Conflict(format!(
            "request {} is already {}; only pending requests can be reviewed or cancelled",
            request.id,
            status.as_str()
        ))),
    }
}

/// Give one approval. The request is approved, and its grant issued starting now, once every
/// step has its approvals. The requester never counts, nor does anyone twice.
pub fn approve(
    request: &Request,
    reviewer: &Identity,
    comment: Option<String>,
    grant_id: String,
    now: Timestamp,
) -> Result<Transition, DomainError> {
    approve_confirmed(request, reviewer, comment, None, grant_id, now)
}

/// [`approve`], bound to the payload the reviewer saw: `confirmed` is its SHA-256 (hex), and
/// must be the request's payload's, or the approval is refused as a payload mismatch. The
/// approval and its audit event record the hash.
pub fn approve_confirmed(
    request: &Request,
    reviewer: &Identity,
    comment: Option<String>,
    confirmed: Option<&str>,
    grant_id: String,
    now: Timestamp,
) -> Result<Transition, DomainError> {
    approve_shown(request, reviewer, comment, &Shown::payload(confirmed), grant_id, now)
}

/// [`approve`], bound to everything the reviewer was shown ([`Shown`]): each item's payload
/// hash, where the approval lands and whether it is the last.
pub fn approve_shown(
    request: &Request,
    reviewer: &Identity,
    comment: Option<String>,
    shown: &Shown,
    grant_id: String,
    now: Timestamp,
) -> Result<Transition, DomainError> {
    if !request.items.is_empty() {
        return approve_items_shown(request, reviewer, comment, shown, &[grant_id], |_| true, now);
    }
    check_comment(&comment)?;
    require_pending(request, now)?;
    refuse_reviewer(request, reviewer, "approve")?;
    if reviewer.principal == request.requester {
        return Err(DomainError::Forbidden("you cannot approve your own request".into()));
    }
    let confirmed = shown.hash(0);
    confirm_payload(request, confirmed)?;
    if request.approvals.iter().any(|a| a.reviewer == reviewer.principal) {
        return Err(DomainError::Conflict(format!(
            "{} has already approved request {}; another reviewer must give the next approval",
            reviewer.principal, request.id
        )));
    }
    let remaining = remaining_steps(&request.requirement.steps, &request.approvals);
    let step = open_step(request, &request.requirement, &request.approvals, reviewer).ok_or_else(|| {
        let needs: Vec<String> = remaining
            .iter()
            .map(|s| format!("{} from {}", s.approvals, s.group))
            .collect();
        DomainError::Forbidden(format!(
            "{} may not approve request {}: it needs {}",
            reviewer.principal,
            request.id,
            needs.join(" and ")
        ))
    })?;
    let given = request.approvals.iter().filter(|a| a.step == step).count() as u32;
    let mut next = request.clone();
    next.approvals.push(Approval {
        reviewer: reviewer.principal.clone(),
        step,
        comment: comment.clone(),
        at: now,
        payload_sha256: confirmed.map(str::to_ascii_lowercase),
    });
    let completes = remaining_steps(&next.requirement.steps, &next.approvals).is_empty();
    shown.check_places(request, &[Some(given)], completes)?;
    let mut events = vec![event(
        EventKind::RequestApproval,
        &next,
        &reviewer.principal,
        approval_comment(&comment, confirmed),
        now,
    )];
    if completes {
        let issued = issue_grant(&mut next, grant_id, now);
        events.push(event(EventKind::RequestApproved, &next, &reviewer.principal, None, now));
        events.push(issued);
    }
    Ok(Transition { request: next, events })
}

/// The step of `requirement` that `reviewer`'s approval would count towards, if any: one they
/// may give (or, once the request escalated, any that still needs approvals) and that is not
/// full yet.
fn open_step(
    request: &Request,
    requirement: &Requirement,
    approvals: &[Approval],
    reviewer: &Identity,
) -> Option<usize> {
    requirement.steps.iter().enumerate().position(|(i, s)| {
        (s.admits(reviewer) || request.is_backup_reviewer(reviewer))
            && approvals.iter().filter(|a| a.step == i).count() < s.approvals as usize
    })
}

/// Where `reviewer`'s approval of a (single-item view of a) request would land: the step it
/// counts towards, how many approvals that step has had and needs, and what the request
/// still needs once it is given. What a reviewer is told before approving ("yours is the 2nd
/// of 2 from sre") is computed by the same rule the approval is counted by ([`open_step`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalPlace {
    /// The step's group (or `user:NAME`).
    pub group: String,
    /// Approvals the step already has.
    pub given: u32,
    /// Approvals the step needs in all.
    pub of: u32,
    /// Counted as a backup reviewer (the request escalated), not as a member of the step.
    pub as_backup: bool,
    /// What the request still needs after this approval; empty: it is then approved.
    pub then_needs: Vec<Step>,
}

/// The requirement and the approvals so far of item `i` (0: the request's own).
fn item_steps(request: &Request, i: usize) -> Option<(&Requirement, &[Approval])> {
    match i {
        0 => Some((&request.requirement, &request.approvals)),
        _ => request
            .items
            .get(i - 1)
            .map(|item| (&item.requirement, item.approvals.as_slice())),
    }
}

/// [`ApprovalPlace`] of `reviewer` on item `i` of `request` (0 for a one-item request);
/// `None` when their approval would count towards no step of it (they approved it already, or
/// are no reviewer of it). The same rule [`approve_items_shown`] counts by: the item's own
/// steps, and the request's escalation for backup reviewers. Does not judge the rest (the
/// requester, agents, the policy): the caller asks only for reviewers the approval itself would
/// admit. `then_needs` is what item `i` still needs after this approval.
pub fn approval_place(request: &Request, i: usize, reviewer: &Identity) -> Option<ApprovalPlace> {
    let (requirement, approvals) = item_steps(request, i)?;
    if approvals.iter().any(|a| a.reviewer == reviewer.principal) {
        return None;
    }
    let step_index = open_step(request, requirement, approvals, reviewer)?;
    let step = requirement.steps.get(step_index)?;
    let given = approvals.iter().filter(|a| a.step == step_index).count() as u32;
    let mut after = approvals.to_vec();
    after.push(Approval {
        reviewer: reviewer.principal.clone(),
        step: step_index,
        comment: None,
        at: request.created_at,
        payload_sha256: None,
    });
    Some(ApprovalPlace {
        group: step.group.clone(),
        given,
        of: step.approvals,
        as_backup: !step.admits(reviewer),
        then_needs: remaining_steps(&requirement.steps, &after),
    })
}

/// Approve, in one call, every item of a multi-item request that `reviewer` may approve
/// (`allowed(i)`: what the policy says of item `i` on top of its steps) and has not approved
/// yet. The request is approved once every item has all its approvals; then one grant per
/// item is issued (`grant_ids[i]` for item `i`), all with one window starting now. Refused if
/// the approval counts towards no item: 409 if the reviewer already approved every item they
/// may, 403 if they may approve none.
pub fn approve_items(
    request: &Request,
    reviewer: &Identity,
    comment: Option<String>,
    grant_ids: &[String],
    allowed: impl Fn(usize) -> bool,
    now: Timestamp,
) -> Result<Transition, DomainError> {
    approve_items_confirmed(request, reviewer, comment, None, grant_ids, allowed, now)
}

/// [`approve_items`], bound to the payload the reviewer saw: `confirmed` must be the SHA-256 of
/// the request's own payload (its first item's), as in [`approve_confirmed`]; it is recorded on
/// the first item's approval only.
pub fn approve_items_confirmed(
    request: &Request,
    reviewer: &Identity,
    comment: Option<String>,
    confirmed: Option<&str>,
    grant_ids: &[String],
    allowed: impl Fn(usize) -> bool,
    now: Timestamp,
) -> Result<Transition, DomainError> {
    approve_items_shown(
        request,
        reviewer,
        comment,
        &Shown::payload(confirmed),
        grant_ids,
        allowed,
        now,
    )
}

/// [`approve_items`], bound to what the reviewer was shown ([`Shown`]): each item's payload hash
/// is checked against that item's own payload and recorded on that item's approval, and the
/// approval is refused if it would not land where the reviewer was told.
pub fn approve_items_shown(
    request: &Request,
    reviewer: &Identity,
    comment: Option<String>,
    shown: &Shown,
    grant_ids: &[String],
    allowed: impl Fn(usize) -> bool,
    now: Timestamp,
) -> Result<Transition, DomainError> {
    check_comment(&comment)?;
    require_pending(request, now)?;
    refuse_reviewer(request, reviewer, "approve")?;
    if reviewer.principal == request.requester {
        return Err(DomainError::Forbidden("you cannot approve your own request".into()));
    }
    for i in 0..request.item_count() {
        if let Some(item) = request.item_request(i) {
            confirm_payload(&item, shown.hash(i))?;
        }
    }
    let mut next = request.clone();
    let mut events = Vec::new();
    let mut already = false;
    // Where the approval lands on each item: the approvals its step already had.
    let mut landed: Vec<Option<u32>> = vec![None; request.item_count()];
    for i in 0..request.item_count() {
        let Some((requirement, approvals)) = item_steps(request, i) else {
            continue;
        };
        if approvals.iter().any(|a| a.reviewer == reviewer.principal) {
            already = true;
            continue;
        }
        let Some(step) = open_step(request, requirement, approvals, reviewer) else {
            continue;
        };
        if !allowed(i) {
            continue;
        }
        if let Some(place) = landed.get_mut(i) {
            *place = Some(approvals.iter().filter(|a| a.step == step).count() as u32);
        }
        let confirmed = shown.hash(i);
        let approval = Approval {
            reviewer: reviewer.principal.clone(),
            step,
            comment: comment.clone(),
            at: now,
            payload_sha256: confirmed.map(str::to_ascii_lowercase),
        };
        match i {
            0 => next.approvals.push(approval),
            _ => {
                if let Some(item) = next.items.get_mut(i - 1) {
                    item.approvals.push(approval);
                }
            }
        }
        events.push(item_event(
            EventKind::RequestApproval,
            &next,
            i,
            &reviewer.principal,
            approval_comment(&comment, confirmed),
            now,
        ));
    }
    if events.is_empty() {
        let needs: Vec<String> = (0..request.item_count())
            .flat_map(|i| {
                let (resource, action) = match i {
                    0 => (request.resource.as_str(), request.action.as_str()),
                    _ => request
                        .items
                        .get(i - 1)
                        .map(|it| (it.resource.as_str(), it.action.as_str()))
                        .unwrap_or_default(),
                };
                request
                    .item_missing_approvals(i)
                    .into_iter()
                    .map(move |s| format!("{action} {resource}: {} from {}", s.approvals, s.group))
            })
            .collect();
        if already {
            return Err(DomainError::Conflict(format!(
                "{} has already approved every item of request {} they may approve; it still needs {}",
                reviewer.principal,
                request.id,
                needs.join("; ")
            )));
        }
        return Err(DomainError::Forbidden(format!(
            "{} may approve no item of request {}: it needs {}",
            reviewer.principal,
            request.id,
            needs.join("; ")
        )));
    }
    let completes = (0..next.item_count()).all(|i| next.item_missing_approvals(i).is_empty());
    shown.check_places(request, &landed, completes)?;
    if completes {
        let issued = issue_grants(&mut next, grant_ids, now);
        events.push(event(EventKind::RequestApproved, &next, &reviewer.principal, None, now));
        events.extend(issued);
    }
    Ok(Transition { request: next, events })
}

/// Whether `who` is a reviewer of this request: in a group that one of its steps draws on.
/// Never an agent (agents never review), whatever groups it inherits from its person.
pub fn is_reviewer(request: &Request, who: &Identity) -> bool {
    !who.is_agent()
        && std::iter::once(&request.requirement)
            .chain(request.items.iter().map(|i| &i.requirement))
            .any(|r| r.steps.iter().any(|s| s.admits(who)) || r.review_groups.iter().any(|g| who.in_group(g)))
        || !who.is_agent() && request.is_backup_reviewer(who)
}

/// Deny a pending request. Any eligible reviewer may; one denial ends it.
pub fn deny(
    request: &Request,
    reviewer: &Identity,
    comment: Option<String>,
    now: Timestamp,
) -> Result<Transition, DomainError> {
    check_comment(&comment)?;
    require_pending(request, now)?;
    if reviewer.principal == request.requester {
        return Err(DomainError::Forbidden(
            "you cannot review your own request; cancel it instead".into(),
        ));
    }
    refuse_reviewer(request, reviewer, "deny")?;
    if !is_reviewer(request, reviewer) && !reviewer.is_admin() {
        return Err(DomainError::Forbidden(format!(
            "{} is not a reviewer of request {}",
            reviewer.principal, request.id
        )));
    }
    let mut next = request.clone();
    next.status = RequestStatus::Denied;
    next.decided_at = Some(now);
    next.closed_by = Some(Review {
        by: reviewer.principal.clone(),
        comment: comment.clone(),
        at: now,
    });
    let events = vec![event(
        EventKind::RequestDenied,
        &next,
        &reviewer.principal,
        comment,
        now,
    )];
    Ok(Transition { request: next, events })
}

/// Withdraw a pending request: its requester, the person its agent acts for, or an admin.
pub fn cancel(request: &Request, who: &Identity, now: Timestamp) -> Result<Transition, DomainError> {
    let person = request.on_behalf_of.as_deref() == Some(who.principal.as_str());
    if who.principal != request.requester && !person && !who.is_admin() {
        return Err(DomainError::Forbidden(
            "only the requester, the person an agent's request is filed for, or an admin can cancel a request".into(),
        ));
    }
    require_pending(request, now)?;
    let mut next = request.clone();
    next.status = RequestStatus::Cancelled;
    next.decided_at = Some(now);
    next.closed_by = Some(Review {
        by: who.principal.clone(),
        comment: None,
        at: now,
    });
    let events = vec![event(EventKind::RequestCancelled, &next, &who.principal, None, now)];
    Ok(Transition { request: next, events })
}

/// Cancel a pending request on behalf of the system: the caller has already decided that
/// `actor` may (a provisioning client ending a leaver's requests). The comment says why.
pub fn cancel_by_system(
    request: &Request,
    actor: &str,
    comment: Option<String>,
    now: Timestamp,
) -> Result<Transition, DomainError> {
    require_pending(request, now)?;
    let mut next = request.clone();
    next.status = RequestStatus::Cancelled;
    next.decided_at = Some(now);
    next.closed_by = Some(Review {
        by: actor.to_string(),
        comment: comment.clone(),
        at: now,
    });
    let events = vec![event(EventKind::RequestCancelled, &next, actor, comment, now)];
    Ok(Transition { request: next, events })
}

/// Revoke every active grant of a request on behalf of the system: the caller has already
/// decided that `actor` may (a provisioning client ending a leaver's access).
pub fn revoke_by_system(
    request: &Request,
    actor: &str,
    comment: Option<String>,
    now: Timestamp,
) -> Result<Transition, DomainError> {
    end_active_grants(request, actor, comment, now)
}

/// Withdraw every approval `reviewer` gave to a still-pending request (each item's too): they
/// left the directory, so what they approved no longer counts and their step needs another
/// reviewer. Nothing changes (no events) when the request is not pending or holds no approval
/// of theirs.
pub fn withdraw_approvals(
    request: &Request,
    reviewer: &str,
    actor: &str,
    comment: Option<String>,
    now: Timestamp,
) -> Transition {
    withdraw_approvals_where(request, reviewer, |_, _| true, actor, comment, now)
}

/// Withdraw the approvals `reviewer` gave to a still-pending request that counted towards a
/// step their identity `after` a directory change is no longer admitted to (neither by the
/// step's group nor, once escalated, as a backup reviewer). Those that still count stay.
pub fn withdraw_approvals_outside(
    request: &Request,
    after: &Identity,
    actor: &str,
    comment: Option<String>,
    now: Timestamp,
) -> Transition {
    let backup = request.is_backup_reviewer(after);
    withdraw_approvals_where(
        request,
        &after.principal,
        |step: Option<&Step>, _| !backup && !step.is_some_and(|s| s.admits(after)),
        actor,
        comment,
        now,
    )
}

/// Withdraw the approvals `reviewer` (the spelling the approvals carry) gave to a
/// still-pending request that counted towards a step their identity `before` a directory
/// change was admitted to (by the step's group, or once escalated as a backup reviewer) and
/// none of their identities `after` it is. An approval that counted through something the
/// change did not take away (a group kept, a token's own group) stays.
pub fn withdraw_approvals_moved(
    request: &Request,
    reviewer: &str,
    before: &Identity,
    after: &[Identity],
    actor: &str,
    comment: Option<String>,
    now: Timestamp,
) -> Transition {
    let was_backup = request.is_backup_reviewer(before);
    let is_backup = after.iter().any(|a| request.is_backup_reviewer(a));
    withdraw_approvals_where(
        request,
        reviewer,
        |step: Option<&Step>, _| {
            let was = was_backup || step.is_some_and(|s| s.admits(before));
            let is = is_backup || step.is_some_and(|s| after.iter().any(|a| s.admits(a)));
            was && !is
        },
        actor,
        comment,
        now,
    )
}

/// Withdraw the approvals of `reviewer` for which `withdraw(step, item)` holds (`step` the
/// step it counted towards, `None` if the requirement has no such step).
fn withdraw_approvals_where(
    request: &Request,
    reviewer: &str,
    withdraw: impl Fn(Option<&Step>, usize) -> bool,
    actor: &str,
    comment: Option<String>,
    now: Timestamp,
) -> Transition {
    let mut next = request.clone();
    let mut events = Vec::new();
    if request.status_at(now) != RequestStatus::Pending {
        return Transition { request: next, events };
    }
    for i in 0..request.item_count() {
        let (requirement, approvals) = match i {
            0 => (&next.requirement, &mut next.approvals),
            _ => match next.items.get_mut(i - 1) {
                Some(item) => (&item.requirement, &mut item.approvals),
                None => continue,
            },
        };
        let before = approvals.len();
        approvals.retain(|a| a.reviewer != reviewer || !withdraw(requirement.steps.get(a.step), i));
        let withdrawn = before - approvals.len();
        for _ in 0..withdrawn {
            let mut e = item_event(EventKind::ApprovalWithdrawn, request, i, actor, comment.clone(), now);
            e.comment = Some(match &comment {
                Some(c) => format!("the approval of {reviewer} no longer counts: {c}"),
                None => format!("the approval of {reviewer} no longer counts"),
            });
            events.push(e);
        }
    }
    Transition { request: next, events }
}

/// Revoke an active grant: its holder, a reviewer of its request, or an admin.
pub fn revoke(
    request: &Request,
    who: &Identity,
    comment: Option<String>,
    now: Timestamp,
) -> Result<Transition, DomainError> {
    check_comment(&comment)?;
    let Some(grant) = &request.grant else {
        return Err(DomainError::NotFound(format!("request {} has no grant", request.id)));
    };
    if who.principal != grant.principal && !is_reviewer(request, who) && !who.is_admin() {
        return Err(DomainError::Forbidden(
            "only the grant's holder, a reviewer of its resource or an admin can revoke it".into(),
        ));
    }
    end_active_grants(request, &who.principal, comment, now)
}

/// End every active grant of the request as revoked by `actor`.
fn end_active_grants(
    request: &Request,
    actor: &str,
    comment: Option<String>,
    now: Timestamp,
) -> Result<Transition, DomainError> {
    let Some(grant) = &request.grant else {
        return Err(DomainError::NotFound(format!("request {} has no grant", request.id)));
    };
    // A multi-item request's grants share one window and end together: revoking is refused
    // only when none is active any more. The first item's grant alone may have ended (a
    // single-use grant used by its check) while the other items' stay live, and those must
    // still be revocable.
    if !request.grants().any(|g| g.status_at(now) == GrantStatus::Active) {
        return Err(DomainError::Conflict(format!(
            "grant {} is already {}",
            grant.id,
            grant.status_at(now).as_str()
        )));
    }
    let mut next = request.clone();
    let mut revoked = Vec::new();
    for g in next.grants_mut().filter(|g| g.status_at(now) == GrantStatus::Active) {
        g.status = GrantStatus::Revoked;
        g.ended_at = Some(now);
        g.ended_by = Some(actor.to_string());
        g.end_comment = comment.clone();
        revoked.push(g.clone());
    }
    let events = revoked
        .iter()
        .map(|g| grant_event(EventKind::GrantRevoked, &next, g, actor, comment.clone(), now))
        .collect();
    Ok(Transition { request: next, events })
}

/// The holder says the task the grant was for is finished (`jitgate done`, or `jitgate run`
/// when its command exits), with what came of it. An active grant ends here (status `done`);
/// a grant that already ended otherwise (used by its single check, expired, revoked by a
/// reviewer while the task ran) keeps its state and the outcome is recorded all the same.
/// Once per grant: a second `done` is a conflict, and so is one on a grant its holder revoked.
pub fn done(
    request: &Request,
    who: &Identity,
    outcome: Option<String>,
    now: Timestamp,
) -> Result<Transition, DomainError> {
    check_comment(&outcome)?;
    let Some(grant) = &request.grant else {
        return Err(DomainError::NotFound(format!("request {} has no grant", request.id)));
    };
    if who.principal != grant.principal {
        return Err(DomainError::Forbidden(
            "only the grant's holder can say its task is done".into(),
        ));
    }
    // Once per grant: each call writes an audit event, so a repeated `done` would let a
    // caller grow the log at will.
    if let Some(done) = &request.done {
        return Err(DomainError::Conflict(format!(
            "grant {}: its holder already said the task is done, at {}",
            grant.id,
            done.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        )));
    }
    if grant.status == GrantStatus::Revoked && grant.ended_by.as_deref() == Some(&who.principal) {
        return Err(DomainError::Conflict(format!(
            "grant {} has already ended: its holder revoked it",
            grant.id
        )));
    }
    let mut next = request.clone();
    for g in next.grants_mut().filter(|g| g.status_at(now) == GrantStatus::Active) {
        g.status = GrantStatus::Done;
        g.ended_at = Some(now);
        g.ended_by = Some(who.principal.clone());
        g.end_comment = Some(outcome.clone().unwrap_or_else(|| "done".into()));
    }
    next.done = Some(Review {
        by: who.principal.clone(),
        comment: outcome.clone(),
        at: now,
    });
    let events = next
        .grants()
        .map(|g| grant_event(EventKind::GrantDone, &next, g, &who.principal, outcome.clone(), now))
        .collect();
    Ok(Transition { request: next, events })
}

/// Give the review a break-glass request demands afterwards: a member of its review groups
/// (or an admin), never the one who broke the glass; once.
pub fn review_break_glass(
    request: &Request,
    who: &Identity,
    comment: Option<String>,
    now: Timestamp,
) -> Result<Transition, DomainError> {
    check_comment(&comment)?;
    if !request.break_glass {
        return Err(DomainError::Conflict(format!(
            "request {} is not a break-glass request; there is nothing to review",
            request.id
        )));
    }
    if let Some(done) = &request.post_review {
        return Err(DomainError::Conflict(format!(
            "request {} was already reviewed by {}",
            request.id, done.by
        )));
    }
    if who.principal == request.requester {
        return Err(DomainError::Forbidden(
            "you cannot review your own break-glass access".into(),
        ));
    }
    refuse_reviewer(request, who, "review")?;
    // Of a multi-item request, any item's review groups may give it.
    let groups: Vec<String> = std::iter::once(&request.requirement)
        .chain(request.items.iter().map(|i| &i.requirement))
        .flat_map(|r| r.review_groups.iter().cloned())
        .fold(Vec::new(), |mut all, g| {
            if !all.contains(&g) {
                all.push(g);
            }
            all
        });
    if !who.is_admin() && !groups.iter().any(|g| who.in_group(g)) {
        return Err(DomainError::Forbidden(format!(
            "{} may not review request {}: members of {} may",
            who.principal,
            request.id,
            groups.join(", ")
        )));
    }
    let mut next = request.clone();
    next.post_review = Some(Review {
        by: who.principal.clone(),
        comment: comment.clone(),
        at: now,
    });
    let events = vec![event(
        EventKind::BreakGlassReviewed,
        &next,
        &who.principal,
        comment,
        now,
    )];
    Ok(Transition { request: next, events })
}

/// The policy's limits on extending a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtensionLimits {
    pub max_times: u32,
    /// The longest the grant may last from the moment of extension.
    pub max_duration: crate::DurationSecs,
}

/// Extend an active grant by `by`, counted from its current end. Only its holder may, at most
/// `max_times`, and never so that more than `max_duration` remains from now.
pub fn extend(
    request: &Request,
    who: &Identity,
    by: crate::DurationSecs,
    reason: &str,
    limits: ExtensionLimits,
    now: Timestamp,
) -> Result<Transition, DomainError> {
    let Some(grant) = &request.grant else {
        return Err(DomainError::NotFound(format!("request {} has no grant", request.id)));
    };
    if who.principal != grant.principal {
        return Err(DomainError::Forbidden("only the grant's holder can extend it".into()));
    }
    let status = grant.status_at(now);
    if status != GrantStatus::Active {
        return Err(DomainError::Conflict(format!(
            "grant {} is already {}; file a new request",
            grant.id,
            status.as_str()
        )));
    }
    if grant.extensions >= limits.max_times {
        return Err(DomainError::Conflict(format!(
            "grant {} has been extended {} time(s), the most its workflow allows; file a new request",
            grant.id, grant.extensions
        )));
    }
    let new_end = grant.expires_at + by.as_delta();
    // Compared to the millisecond: whole seconds would let an extension overshoot the
    // maximum by up to a second.
    let remaining_ms = (new_end - now).num_milliseconds();
    let max_ms = i64::try_from(limits.max_duration.0)
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000);
    if remaining_ms > max_ms {
        let remaining = remaining_ms.div_euclid(1000) + i64::from(remaining_ms.rem_euclid(1000) > 0);
        // What may still be added, rounded down to a whole second so that asking for it works.
        let allowed = (max_ms - (grant.expires_at - now).num_milliseconds()).div_euclid(1000);
        return Err(DomainError::invalid(
            "duration",
            format!(
                "extending by {by} would leave {} of access, more than the {} allowed; extend by {} or less",
                crate::format_duration(crate::DurationSecs(remaining.max(0).unsigned_abs())),
                limits.max_duration,
                crate::format_duration(crate::DurationSecs(allowed.max(0).unsigned_abs()))
            ),
        ));
    }
    // Every item's grant keeps the one window: all are extended together.
    let mut next = request.clone();
    for g in next.grants_mut().filter(|g| g.status_at(now) == GrantStatus::Active) {
        g.expires_at = new_end;
        g.extensions += 1;
    }
    let comment = format!(
        "by {by} until {}: {}",
        new_end.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        crate::text::trim_invisible(reason)
    );
    let events = next
        .grants()
        .filter(|g| g.expires_at == new_end)
        .map(|g| {
            grant_event(
                EventKind::GrantExtended,
                &next,
                g,
                &who.principal,
                Some(comment.clone()),
                now,
            )
        })
        .collect();
    Ok(Transition { request: next, events })
}

/// Apply the passage of time: a pending request past its deadline expires; an active grant
/// past its end expires. `None` when nothing is due.
pub fn settle(request: &Request, now: Timestamp) -> Option<Transition> {
    let mut next = request.clone();
    let mut events = Vec::new();
    if next.status == RequestStatus::Pending && now >= next.pending_expires_at {
        next.status = RequestStatus::Expired;
        next.decided_at = Some(next.pending_expires_at);
        events.push(event(EventKind::RequestExpired, &next, SYSTEM_ACTOR, None, now));
    } else if request.escalates_at().is_some_and(|at| now >= at) {
        next.escalated_at = Some(now);
        let groups = request
            .requirement
            .escalation
            .as_ref()
            .map(|e| e.groups.join(", "))
            .unwrap_or_default();
        let comment = format!("nobody decided in time; backup reviewers: {groups}");
        events.push(event(
            EventKind::RequestEscalated,
            &next,
            SYSTEM_ACTOR,
            Some(comment),
            now,
        ));
    }
    let mut expired = Vec::new();
    for g in next.grants_mut() {
        if g.status == GrantStatus::Active && now >= g.expires_at {
            g.status = GrantStatus::Expired;
            g.ended_at = Some(g.expires_at);
            expired.push(g.clone());
        }
    }
    for g in &expired {
        events.push(grant_event(EventKind::GrantExpired, &next, g, SYSTEM_ACTOR, None, now));
    }
    (!events.is_empty()).then_some(Transition { request: next, events })
}

/// The event recorded when a single-use grant is consumed by a check.
pub fn used_event(grant: &Grant, checked_by: &str, now: Timestamp) -> NewEvent {
    NewEvent {
        kind: EventKind::GrantUsed,
        at: now,
        actor: checked_by.to_string(),
        subject: grant.principal.clone(),
        request_id: Some(grant.request_id.clone()),
        grant_id: Some(grant.id.clone()),
        resource: grant.resource.clone(),
        action: grant.action.clone(),
        comment: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Requirement, Step};
    use crate::DurationSecs;
    use chrono::TimeDelta;

    fn t0() -> Timestamp {
        chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    fn ask<'a>(resource: &'a str, action: &'a str, reason: &'a str) -> Ask<'a> {
        Ask {
            resource,
            action,
            duration: Some(DurationSecs(600)),
            reason,
            payload: None,
            break_glass: false,
        }
    }

    fn needs(steps: &[(&str, u32)]) -> Admission {
        Admission {
            requirement: Requirement {
                steps: steps
                    .iter()
                    .map(|(g, n)| Step {
                        group: g.to_string(),
                        approvals: *n,
                    })
                    .collect(),
                single_use: false,
                action_bound: false,
                pending_ttl: DurationSecs(3600),
                review_groups: vec!["sre".into()],
                alert: None,
                providers: Vec::new(),
                escalation: None,
            },
            duration: DurationSecs(600),
            decided_by: None,
        }
    }

    fn ids(n: u32) -> NewIds {
        NewIds {
            request_id: format!("r{n}"),
            grant_id: format!("g{n}"),
        }
    }

    fn filed(who: &Identity, steps: &[(&str, u32)]) -> Request {
        file(who, &ask("prod-db", "write", "OPS-1"), needs(steps), ids(1), t0()).request
    }

    /// An agent acting for `person`, with the groups it inherited from them.
    fn agent(name: &str, person: &str, groups: &[&str]) -> Identity {
        Identity {
            on_behalf_of: Some(person.into()),
            ..Identity::user(name, groups)
        }
    }

    #[test]
    fn the_approval_place_is_the_step_the_approval_counts_towards() {
        let alice = Identity::user("alice", &["dev"]);
        let bob = Identity::user("bob", &["sre"]);
        let carol = Identity::user("carol", &["sre"]);
        let sam = Identity::user("sam", &["security"]);
        let pending = filed(&alice, &[("sre", 2), ("security", 1)]);
        let place = approval_place(&pending, 0, &bob).unwrap();
        assert_eq!(
            (place.group.as_str(), place.given, place.of, place.as_backup),
            ("sre", 0, 2, false)
        );
        assert_eq!(
            place.then_needs,
            vec![
                Step {
                    group: "sre".into(),
                    approvals: 1
                },
                Step {
                    group: "security".into(),
                    approvals: 1
                }
            ]
        );
        let after_bob = approve(&pending, &bob, None, "g1".into(), t0()).unwrap().request;
        // bob's approval is counted: he has no place left; carol's is the 2nd of 2.
        assert_eq!(approval_place(&after_bob, 0, &bob), None);
        let place = approval_place(&after_bob, 0, &carol).unwrap();
        assert_eq!((place.given, place.of), (1, 2));
        assert_eq!(
            place.then_needs,
            vec![Step {
                group: "security".into(),
                approvals: 1
            }]
        );
        // The place told is where the approval really lands, and the last one approves.
        let after_carol = approve(&after_bob, &carol, None, "g1".into(), t0()).unwrap().request;
        assert_eq!(after_carol.missing_approvals(), place.then_needs);
        let last = approval_place(&after_carol, 0, &sam).unwrap();
        assert!(last.then_needs.is_empty());
        assert_eq!(
            approve(&after_carol, &sam, None, "g1".into(), t0())
                .unwrap()
                .request
                .status,
            RequestStatus::Approved
        );
        // No step of theirs: no place.
        assert_eq!(approval_place(&pending, 0, &Identity::user("dave", &["dev"])), None);
    }

    #[test]
    fn an_agents_request_names_its_person_and_the_person_never_approves_it() {
        let claude = agent("claude-bob", "bob", &["sre", "agents"]);
        let bob = Identity::user("bob", &["sre"]);
        let carol = Identity::user("carol", &["sre"]);
        let t = file(
            &claude,
            &ask("prod-db", "write", "OPS-1"),
            needs(&[("sre", 1)]),
            ids(1),
            t0(),
        );
        let pending = t.request;
        assert_eq!(pending.on_behalf_of.as_deref(), Some("bob"));
        assert_eq!(
            t.events[0].comment.as_deref(),
            Some("OPS-1 (filed by claude-bob, an agent acting for bob)")
        );
        // The person is in the reviewing group, yet counts as the requester: self-approval
        // through one's agent is refused, and so are deny and the break-glass review.
        let err = approve(&pending, &bob, None, "g1".into(), t0()).unwrap_err();
        assert!(
            matches!(&err, DomainError::Forbidden(m) if m.contains("agent acting for bob") && m.contains("claude-bob")),
            "{err}"
        );
        let items = approve_items(&pending, &bob, None, &["g1".into()], |_| true, t0()).unwrap_err();
        assert!(matches!(items, DomainError::Forbidden(_)), "{items}");
        assert!(matches!(
            deny(&pending, &bob, None, t0()),
            Err(DomainError::Forbidden(_))
        ));
        // The agent itself never decides anything, even as a member of the group.
        let err = approve(&pending, &claude, None, "g1".into(), t0()).unwrap_err();
        assert!(
            matches!(&err, DomainError::Forbidden(m) if m.contains("an agent may not approve, deny or review")),
            "{err}"
        );
        // Another person of the group may.
        let approved = approve(&pending, &carol, None, "g1".into(), t0()).unwrap().request;
        assert_eq!(approved.status, RequestStatus::Approved);
        assert_eq!(
            approved.grant.as_ref().map(|g| g.principal.as_str()),
            Some("claude-bob")
        );
    }

    #[test]
    fn agents_never_review_anyone_and_are_no_reviewers() {
        let alice = Identity::user("alice", &["dev"]);
        // An agent of an sre member, even one some directory made an admin.
        let claude = agent("claude-carol", "carol", &["sre", "agents", "admins"]);
        let pending = filed(&alice, &[("sre", 1)]);
        assert!(!is_reviewer(&pending, &claude));
        assert!(is_reviewer(&pending, &Identity::user("carol", &["sre"])));
        for refused in [
            approve(&pending, &claude, None, "g1".into(), t0()).err(),
            deny(&pending, &claude, None, t0()).err(),
        ] {
            assert!(
                matches!(refused, Some(DomainError::Forbidden(ref m)) if m.contains("acting for carol")),
                "{refused:?}"
            );
        }
        let mut glass = needs(&[]);
        glass.requirement.review_groups = vec!["sre".into()];
        let mut broke = ask("prod-db", "write", "INC-1");
        broke.break_glass = true;
        let taken = file(&alice, &broke, glass, ids(2), t0()).request;
        assert!(matches!(
            review_break_glass(&taken, &claude, None, t0()),
            Err(DomainError::Forbidden(_))
        ));
        // The person may not review the break glass of their own agent either.
        let by_agent = file(
            &claude,
            &broke,
            {
                let mut g = needs(&[]);
                g.requirement.review_groups = vec!["sre".into()];
                g
            },
            ids(3),
            t0(),
        )
        .request;
        assert!(matches!(
            review_break_glass(&by_agent, &Identity::user("carol", &["sre"]), None, t0()),
            Err(DomainError::Forbidden(_))
        ));
        assert!(review_break_glass(&by_agent, &Identity::user("bob", &["sre"]), None, t0()).is_ok());
    }

    #[test]
    fn the_person_may_cancel_their_agents_request_and_nobody_elses() {
        let claude = agent("claude-alice", "alice", &["dev", "agents"]);
        let pending = file(
            &claude,
            &ask("prod-db", "write", "OPS-1"),
            needs(&[("sre", 1)]),
            ids(1),
            t0(),
        )
        .request;
        let cancelled = cancel(&pending, &Identity::user("alice", &["dev"]), t0()).unwrap();
        assert_eq!(cancelled.request.status, RequestStatus::Cancelled);
        assert_eq!(cancelled.events[0].actor, "alice");
        assert!(cancel(&pending, &claude, t0()).is_ok(), "the agent withdraws its own");
        assert!(matches!(
            cancel(&pending, &Identity::user("dave", &["dev"]), t0()),
            Err(DomainError::Forbidden(_))
        ));
        // Another agent of the same person is not that person.
        let other = agent("cursor-alice", "alice", &["dev", "agents"]);
        assert!(matches!(cancel(&pending, &other, t0()), Err(DomainError::Forbidden(_))));
    }

    #[test]
    fn approving_is_bound_to_the_payload_hash_the_reviewer_saw() {
        let alice = Identity::user("alice", &["dev"]);
        let bob = Identity::user("bob", &["sre"]);
        let mut deploy = ask("prod-api", "deploy", "release");
        deploy.payload = Some("deploy api v1.2.3");
        let pending = file(&alice, &deploy, needs(&[("sre", 1)]), ids(1), t0()).request;
        let right = payload_digest("deploy api v1.2.3");
        let wrong = payload_digest("deploy api v1.2.4");
        let err = approve_confirmed(&pending, &bob, None, Some(&wrong), "g1".into(), t0()).unwrap_err();
        assert!(
            matches!(&err, DomainError::PayloadMismatch(m) if m.contains(&wrong) && m.contains(&right)),
            "{err}"
        );
        // Upper-case hex is the same hash; the approval and its event record it.
        let t = approve_confirmed(
            &pending,
            &bob,
            Some("ok".into()),
            Some(&right.to_uppercase()),
            "g1".into(),
            t0(),
        )
        .unwrap();
        assert_eq!(t.request.approvals[0].payload_sha256.as_deref(), Some(right.as_str()));
        assert_eq!(t.request.approvals[0].comment.as_deref(), Some("ok"));
        assert_eq!(
            t.events[0].comment.as_deref(),
            Some(format!("ok (approved payload sha256 {right})").as_str())
        );
        // A hash confirmed for a request without a payload is a mismatch too.
        let plain = filed(&alice, &[("sre", 1)]);
        assert!(matches!(
            approve_confirmed(&plain, &bob, None, Some(&right), "g1".into(), t0()),
            Err(DomainError::PayloadMismatch(_))
        ));
        // Without a hash, approving works as it always did, and records none.
        let t = approve(&pending, &bob, None, "g1".into(), t0()).unwrap();
        assert_eq!(t.request.approvals[0].payload_sha256, None);
        assert_eq!(t.events[0].comment, None);
    }

    #[test]
    fn undecided_requests_escalate_once_and_backup_reviewers_may_then_approve() {
        let alice = Identity::user("alice", &["dev"]);
        let lead = Identity::user("lena", &["leads"]);
        let mut admission = needs(&[("sre", 1)]);
        admission.requirement.escalation = Some(crate::model::Escalation {
            after: DurationSecs(300),
            groups: vec!["leads".into()],
        });
        let pending = file(&alice, &ask("prod-db", "write", "OPS-1"), admission, ids(1), t0()).request;
        assert_eq!(pending.escalates_at(), Some(t0() + TimeDelta::seconds(300)));
        // Before the time: no backup reviewer, nothing to settle.
        assert!(matches!(
            approve(&pending, &lead, None, "g1".into(), t0()),
            Err(DomainError::Forbidden(_))
        ));
        assert!(settle(&pending, t0() + TimeDelta::seconds(299)).is_none());
        // At the time: escalated once, with its event.
        let at = t0() + TimeDelta::seconds(300);
        let t = settle(&pending, at).unwrap();
        assert_eq!(t.request.escalated_at, Some(at));
        assert_eq!(
            t.events.iter().map(|e| e.kind).collect::<Vec<_>>(),
            [EventKind::RequestEscalated]
        );
        assert_eq!(t.request.escalates_at(), None);
        assert!(settle(&t.request, at + TimeDelta::seconds(1)).is_none(), "once");
        // Now the backup reviewer's approval counts; the requester still never does.
        let approved = approve(&t.request, &lead, None, "g1".into(), at).unwrap().request;
        assert_eq!(approved.status, RequestStatus::Approved);
        let mut as_lead = t.request.clone();
        as_lead.requester = "lena".into();
        assert!(matches!(
            approve(&as_lead, &lead, None, "g1".into(), at),
            Err(DomainError::Forbidden(_))
        ));
        // Pending expiry wins over escalation when both are due.
        let late = pending.pending_expires_at;
        assert_eq!(settle(&pending, late).unwrap().request.status, RequestStatus::Expired);
    }

    fn item(resource: &str, steps: &[(&str, u32)], n: u32) -> FiledItem {
        FiledItem {
            resource: resource.into(),
            action: "read".into(),
            payload: Some("a\u{0}b".into()),
            requirement: needs(steps).requirement,
            grant_id: format!("g{n}"),
        }
    }

    #[test]
    fn an_approval_told_its_place_is_refused_when_the_place_changed_before_it_is_saved() {
        let alice = Identity::user("alice", &["dev"]);
        let bob = Identity::user("bob", &["sre"]);
        let carol = Identity::user("carol", &["sre"]);
        let pending = filed(&alice, &[("sre", 2)]);
        // bob looks: his would be the 1st of 2, not the last.
        let place = approval_place(&pending, 0, &bob).unwrap();
        let told = Shown {
            places: Some(vec![Some(place.given)]),
            last: Some(place.then_needs.is_empty()),
            ..Shown::default()
        };
        assert_eq!(told.last, Some(false));
        // carol approves in between; bob's click is refused, and nothing is recorded.
        let after_carol = approve(&pending, &carol, None, "g1".into(), t0()).unwrap().request;
        let refused = approve_shown(&after_carol, &bob, None, &told, "g1".into(), t0());
        match refused {
            Err(DomainError::Conflict(m)) => {
                assert!(m.contains("changed since you looked"), "{m}");
                assert!(m.contains("the last one"), "{m}");
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        // Told the truth (the 2nd of 2, the last), it is saved and grants access.
        let now_told = Shown {
            places: Some(vec![Some(1)]),
            last: Some(true),
            ..Shown::default()
        };
        let t = approve_shown(&after_carol, &bob, None, &now_told, "g1".into(), t0()).unwrap();
        assert_eq!(t.request.status, RequestStatus::Approved);
        // Told nothing (the API without the fields): as before.
        assert!(approve_shown(&after_carol, &bob, None, &Shown::default(), "g1".into(), t0()).is_ok());
        // The same on a multi-item request.
        let multi = file_items(
            &alice,
            &ask("prod-db", "read", "OPS-1"),
            needs(&[("sre", 2)]),
            vec![item("ops-db", &[("sre", 1)], 2)],
            ids(1),
            t0(),
        )
        .request;
        let told: Vec<Option<u32>> = (0..2)
            .map(|i| approval_place(&multi, i, &bob).map(|p| p.given))
            .collect();
        assert_eq!(told, vec![Some(0), Some(0)]);
        let shown = Shown {
            places: Some(told),
            last: Some(false),
            ..Shown::default()
        };
        let by_carol = approve_items(&multi, &carol, None, &[], |_| true, t0())
            .unwrap()
            .request;
        assert!(matches!(
            approve_items_shown(&by_carol, &bob, None, &shown, &[], |_| true, t0()),
            Err(DomainError::Conflict(_))
        ));
    }

    #[test]
    fn each_items_payload_hash_is_checked_against_its_own_payload_and_recorded_on_its_own_approval() {
        let alice = Identity::user("alice", &["dev"]);
        let bob = Identity::user("bob", &["sre"]);
        let mut first = ask("prod-api", "deploy", "OPS-1");
        first.payload = Some("deploy v1");
        let mut second = item("ops-api", &[("sre", 1)], 2);
        second.payload = Some("deploy v2".into());
        let pending = file_items(&alice, &first, needs(&[("sre", 1)]), vec![second], ids(1), t0()).request;
        let h0 = pending.payload_sha256.clone().unwrap();
        let h1 = pending.items[0].payload_sha256.clone().unwrap();
        assert_ne!(h0, h1);
        // Item 1 shown with item 0's hash: refused, whatever item 0 says.
        let wrong = Shown {
            payload_sha256: vec![Some(h0.clone()), Some(h0.clone())],
            ..Shown::default()
        };
        assert!(matches!(
            approve_items_shown(&pending, &bob, None, &wrong, &[], |_| true, t0()),
            Err(DomainError::PayloadMismatch(m)) if m.contains("ops-api")
        ));
        // Each its own: each approval records its own item's hash.
        let right = Shown {
            payload_sha256: vec![Some(h0.to_uppercase()), Some(h1.clone())],
            ..Shown::default()
        };
        let t = approve_items_shown(
            &pending,
            &bob,
            None,
            &right,
            &["g1".into(), "g2".into()],
            |_| true,
            t0(),
        )
        .unwrap();
        assert_eq!(t.request.approvals[0].payload_sha256.as_deref(), Some(h0.as_str()));
        assert_eq!(
            t.request.items[0].approvals[0].payload_sha256.as_deref(),
            Some(h1.as_str())
        );
        // The API's one hash (the first item's) is recorded on the first item only.
        let t = approve_items_confirmed(&pending, &bob, None, Some(&h0), &[], |_| true, t0()).unwrap();
        assert_eq!(t.request.approvals[0].payload_sha256.as_deref(), Some(h0.as_str()));
        assert_eq!(t.request.items[0].approvals[0].payload_sha256, None);
    }

    #[test]
    fn a_backup_reviewers_place_on_a_further_item_is_where_the_approval_lands() {
        let alice = Identity::user("alice", &["dev"]);
        let lena = Identity::user("lena", &["leads"]);
        let mut admission = needs(&[("sre", 1)]);
        admission.requirement.escalation = Some(crate::model::Escalation {
            after: DurationSecs(300),
            groups: vec!["leads".into()],
        });
        // The further item has no escalation of its own: the request escalates as a whole.
        let pending = file_items(
            &alice,
            &ask("prod-db", "read", "OPS-1"),
            admission,
            vec![item("ops-db", &[("ops", 1)], 2)],
            ids(1),
            t0(),
        )
        .request;
        let escalated = settle(&pending, t0() + TimeDelta::seconds(300)).unwrap().request;
        let told: Vec<Option<ApprovalPlace>> = (0..2).map(|i| approval_place(&escalated, i, &lena)).collect();
        assert!(told.iter().all(|p| p.as_ref().is_some_and(|p| p.as_backup)), "{told:?}");
        let t = approve_items(&escalated, &lena, None, &["g1".into(), "g2".into()], |_| true, t0()).unwrap();
        assert_eq!(t.request.approvals.len(), 1);
        assert_eq!(t.request.items[0].approvals.len(), 1);
        assert_eq!(t.request.status, RequestStatus::Approved);
    }

    #[test]
    fn items_are_approved_each_by_its_own_reviewers_and_granted_together() {
        let alice = Identity::user("alice", &["dev"]);
        let bob = Identity::user("bob", &["sre"]);
        let olga = Identity::user("olga", &["ops", "sre"]);
        let further = vec![item("ops-db", &[("ops", 1)], 2), item("cache", &[], 3)];
        let t = file_items(
            &alice,
            &ask("prod-db", "read", "OPS-1"),
            needs(&[("sre", 1)]),
            further,
            ids(1),
            t0(),
        );
        assert_eq!(t.request.status, RequestStatus::Pending);
        let filed: Vec<_> = t.events.iter().map(|e| (e.kind, e.resource.as_str())).collect();
        assert_eq!(
            filed,
            [
                (EventKind::RequestFiled, "prod-db"),
                (EventKind::RequestFiled, "ops-db"),
                (EventKind::RequestFiled, "cache")
            ]
        );
        // The requester never; an outsider approves nothing.
        assert!(matches!(
            approve(&t.request, &alice, None, "x".into(), t0()),
            Err(DomainError::Forbidden(_))
        ));
        let dave = Identity::user("dave", &["dev"]);
        assert!(matches!(
            approve(&t.request, &dave, None, "x".into(), t0()),
            Err(DomainError::Forbidden(_))
        ));
        // bob approves the item he may (prod-db); the rest still waits, and no grant exists.
        let ids3 = ["g1".to_string(), "g2".into(), "g3".into()];
        let once = approve_items(&t.request, &bob, None, &ids3, |_| true, t0()).unwrap();
        assert_eq!(once.request.status, RequestStatus::Pending);
        assert_eq!(once.request.approvals.len(), 1);
        assert!(once.request.items[0].approvals.is_empty());
        assert_eq!(once.events.len(), 1);
        assert_eq!(once.events[0].resource, "prod-db");
        assert_eq!(once.request.grants().count(), 0);
        // Twice is a conflict: he already gave every approval he may.
        assert!(matches!(
            approve_items(&once.request, &bob, None, &ids3, |_| true, t0()),
            Err(DomainError::Conflict(_))
        ));
        // olga may approve ops-db (and prod-db's step is full): the request is approved, a grant per item.
        let later = t0() + TimeDelta::seconds(10);
        let done = approve_items(&once.request, &olga, None, &ids3, |_| true, later).unwrap();
        assert_eq!(done.request.status, RequestStatus::Approved);
        let grants: Vec<_> = done
            .request
            .grants()
            .map(|g| (g.id.as_str(), g.resource.as_str()))
            .collect();
        assert_eq!(grants, [("g1", "prod-db"), ("g2", "ops-db"), ("g3", "cache")]);
        assert!(done
            .request
            .grants()
            .all(|g| g.starts_at == later && g.expires_at == later + TimeDelta::seconds(600)));
        let issued: Vec<_> = done
            .events
            .iter()
            .filter(|e| e.kind == EventKind::GrantIssued)
            .map(|e| e.grant_id.clone().unwrap_or_default())
            .collect();
        assert_eq!(issued, ["g1", "g2", "g3"]);
        // Revocation, extension and expiry act on every item's grant.
        let revoked = revoke(&done.request, &bob, None, later).unwrap();
        assert!(revoked.request.grants().all(|g| g.status == GrantStatus::Revoked));
        assert_eq!(revoked.events.len(), 3);
        let limits = ExtensionLimits {
            max_times: 1,
            max_duration: DurationSecs(1200),
        };
        let extended = extend(&done.request, &alice, DurationSecs(60), "more", limits, later).unwrap();
        assert!(extended
            .request
            .grants()
            .all(|g| g.expires_at == later + TimeDelta::seconds(660)));
        assert_eq!(extended.events.len(), 3);
        let settled = settle(&done.request, later + TimeDelta::seconds(600)).unwrap();
        assert!(settled.request.grants().all(|g| g.status == GrantStatus::Expired));
        assert_eq!(settled.events.len(), 3);
    }

    #[test]
    fn the_other_items_stay_revocable_after_the_first_items_single_use_grant_is_used() {
        let alice = Identity::user("alice", &["dev"]);
        let admin = Identity::user("root", &["admins"]);
        let mut first = needs(&[]);
        first.requirement.single_use = true;
        let t = file_items(
            &alice,
            &ask("prod-api", "deploy", "OPS-1"),
            first,
            vec![item("prod-db", &[], 2)],
            ids(1),
            t0(),
        );
        assert_eq!(t.request.status, RequestStatus::Approved);
        let mut used = t.request.clone();
        if let Some(g) = used.grant.as_mut() {
            g.status = GrantStatus::Used;
        }
        let at = t0() + TimeDelta::seconds(5);
        let revoked = revoke(&used, &admin, Some("stop".into()), at).unwrap();
        let statuses: Vec<_> = revoked.request.grants().map(|g| g.status).collect();
        assert_eq!(statuses, [GrantStatus::Used, GrantStatus::Revoked]);
        assert_eq!(revoked.events.len(), 1);
        // Once nothing is active, a second revocation is a conflict.
        assert!(matches!(
            revoke(&revoked.request, &admin, None, at),
            Err(DomainError::Conflict(_))
        ));
    }

    #[test]
    fn a_denial_denies_every_item_and_the_policy_may_withhold_an_item() {
        let alice = Identity::user("alice", &["dev"]);
        let olga = Identity::user("olga", &["ops"]);
        let further = vec![item("ops-db", &[("ops", 1)], 2)];
        let pending = file_items(
            &alice,
            &ask("prod-db", "read", "OPS-1"),
            needs(&[("sre", 1)]),
            further,
            ids(1),
            t0(),
        )
        .request;
        // The policy refuses olga's item: her approval counts for nothing.
        assert!(matches!(
            approve_items(&pending, &olga, None, &[], |i| i != 1, t0()),
            Err(DomainError::Forbidden(_))
        ));
        let denied = deny(&pending, &olga, Some("no".into()), t0()).unwrap().request;
        assert_eq!(denied.status, RequestStatus::Denied);
        assert_eq!(denied.grants().count(), 0);
    }

    #[test]
    fn automatic_items_are_granted_at_filing() {
        let alice = Identity::user("alice", &["dev"]);
        let t = file_items(
            &alice,
            &ask("staging-db", "read", ""),
            needs(&[]),
            vec![item("cache", &[], 2)],
            ids(1),
            t0(),
        );
        assert_eq!(t.request.status, RequestStatus::Approved);
        assert_eq!(t.request.grants().count(), 2);
        assert_eq!(
            t.request.items[0].grant.as_ref().map(|g| g.payload_sha256.is_none()),
            Some(true)
        );
    }

    #[test]
    fn done_ends_the_holders_grant_once_and_records_the_outcome() {
        let alice = Identity::user("alice", &["dev"]);
        let bob = Identity::user("bob", &["sre"]);
        let granted = file(&alice, &ask("staging-db", "read", ""), needs(&[]), ids(1), t0()).request;
        let later = t0() + TimeDelta::seconds(5);
        assert!(matches!(
            done(&granted, &bob, None, later),
            Err(DomainError::Forbidden(_))
        ));
        let outcome = Some("exit 0 after 1.2 s".to_string());
        let t = done(&granted, &alice, outcome.clone(), later).unwrap();
        let grant = t.request.grant.as_ref().unwrap();
        // Its own status: the holder ended it, nobody revoked it (issue #19, item 20).
        assert_eq!((grant.status, grant.ended_at), (GrantStatus::Done, Some(later)));
        assert_eq!(grant.end_comment, outcome);
        assert_eq!(t.request.done.as_ref().map(|d| d.by.as_str()), Some("alice"));
        assert_eq!(t.events.len(), 1);
        assert_eq!(
            (t.events[0].kind, &t.events[0].comment),
            (EventKind::GrantDone, &outcome)
        );
        assert!(!grant.is_live(later));
        // Once ended by its holder, it cannot be done again.
        assert!(matches!(
            done(&t.request, &alice, None, later),
            Err(DomainError::Conflict(_))
        ));
        // A grant that ended by itself (used up, expired) still takes the outcome, unchanged.
        let mut used = granted.clone();
        if let Some(g) = used.grant.as_mut() {
            g.status = GrantStatus::Used;
        }
        let t = done(&used, &alice, outcome.clone(), later).unwrap();
        assert_eq!(t.request.grant.as_ref().unwrap().status, GrantStatus::Used);
        assert_eq!(t.events[0].kind, EventKind::GrantDone);
        // Said once, whatever the grant's state: a repeat would only grow the log.
        assert!(matches!(
            done(&t.request, &alice, outcome.clone(), later),
            Err(DomainError::Conflict(_))
        ));
        let revoked = revoke(&granted, &bob, None, later).unwrap().request;
        let t = done(&revoked, &alice, outcome.clone(), later).unwrap();
        assert_eq!(t.request.grant.as_ref().unwrap().ended_by.as_deref(), Some("bob"));
        let expired = done(&granted, &alice, None, t0() + TimeDelta::seconds(601)).unwrap();
        assert_eq!(expired.request.grant.unwrap().status, GrantStatus::Active);
        assert!(matches!(
            done(&granted, &alice, Some("x".repeat(MAX_COMMENT_LEN + 1)), later),
            Err(DomainError::TooLong { field: "comment", .. })
        ));
    }

    #[test]
    fn automatic_requests_are_granted_at_once_for_their_duration() {
        let alice = Identity::user("alice", &["dev"]);
        let t = file(&alice, &ask("staging-db", "read", ""), needs(&[]), ids(1), t0());
        assert_eq!(t.request.status, RequestStatus::Approved);
        let grant = t.request.grant.as_ref().unwrap();
        assert_eq!(grant.expires_at, t0() + TimeDelta::seconds(600));
        let kinds: Vec<_> = t.events.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                EventKind::RequestFiled,
                EventKind::RequestApproved,
                EventKind::GrantIssued
            ]
        );
    }

    #[test]
    fn an_automatic_approval_names_what_decided_it() {
        let alice = Identity::user("alice", &["dev"]);
        let mut admission = needs(&[]);
        admission.decided_by = Some("cedar policy tune at policy.cedar:3".into());
        let t = file(&alice, &ask("prod-db", "write", "OPS-1"), admission, ids(1), t0());
        let approved = t.events.iter().find(|e| e.kind == EventKind::RequestApproved).unwrap();
        assert_eq!(approved.actor, SYSTEM_ACTOR);
        assert_eq!(
            approved.comment.as_deref(),
            Some("automatic: cedar policy tune at policy.cedar:3")
        );
    }

    #[test]
    fn two_distinct_reviewers_never_the_requester_and_grant_starts_at_approval() {
        let erin = Identity::user("erin", &["sre", "dev"]);
        let bob = Identity::user("bob", &["sre"]);
        let carol = Identity::user("carol", &["sre"]);
        let pending = filed(&erin, &[("sre", 2)]);
        assert_eq!(pending.status, RequestStatus::Pending);

        let own = approve(&pending, &erin, None, "g".into(), t0()).unwrap_err();
        assert!(matches!(own, DomainError::Forbidden(_)));

        let once = approve(&pending, &bob, None, "g".into(), t0()).unwrap().request;
        assert_eq!(once.status, RequestStatus::Pending);
        assert_eq!(
            once.missing_approvals(),
            vec![Step {
                group: "sre".into(),
                approvals: 1
            }]
        );
        assert!(matches!(
            approve(&once, &bob, None, "g".into(), t0()),
            Err(DomainError::Conflict(_))
        ));

        let later = t0() + TimeDelta::seconds(100);
        let twice = approve(&once, &carol, Some("ok".into()), "g1".into(), later).unwrap();
        assert_eq!(twice.request.status, RequestStatus::Approved);
        let grant = twice.request.grant.as_ref().unwrap();
        assert_eq!(grant.starts_at, later);
        assert_eq!(grant.expires_at, later + TimeDelta::seconds(600));
        assert!(matches!(
            approve(&twice.request, &carol, None, "g".into(), later),
            Err(DomainError::Conflict(_))
        ));
        assert!(matches!(
            deny(&twice.request, &carol, None, later),
            Err(DomainError::Conflict(_))
        ));
    }

    #[test]
    fn every_step_must_pass_and_each_approval_counts_once() {
        let alice = Identity::user("alice", &["dev"]);
        let bob = Identity::user("bob", &["sre", "dba"]);
        let dan = Identity::user("dan", &["dba"]);
        let pending = filed(&alice, &[("sre", 1), ("dba", 1)]);
        // bob counts for the first step he qualifies for; dba still needs someone else.
        let once = approve(&pending, &bob, None, "g".into(), t0()).unwrap().request;
        assert_eq!(
            once.missing_approvals(),
            vec![Step {
                group: "dba".into(),
                approvals: 1
            }]
        );
        let done = approve(&once, &dan, None, "g".into(), t0()).unwrap().request;
        assert_eq!(done.status, RequestStatus::Approved);
    }

    #[test]
    fn outsiders_cannot_approve() {
        let alice = Identity::user("alice", &["dev"]);
        let dave = Identity::user("dave", &["dev"]);
        let pending = filed(&alice, &[("sre", 2)]);
        assert!(matches!(
            approve(&pending, &dave, None, "g".into(), t0()),
            Err(DomainError::Forbidden(_))
        ));
        assert!(matches!(
            deny(&pending, &dave, None, t0()),
            Err(DomainError::Forbidden(_))
        ));
    }

    #[test]
    fn pending_requests_expire_and_cannot_then_be_approved() {
        let alice = Identity::user("alice", &["dev"]);
        let bob = Identity::user("bob", &["sre"]);
        let pending = filed(&alice, &[("sre", 1)]);
        let late = t0() + TimeDelta::hours(1);
        assert!(matches!(
            approve(&pending, &bob, None, "g".into(), late),
            Err(DomainError::Conflict(_))
        ));
        let settled = settle(&pending, late).unwrap();
        assert_eq!(settled.request.status, RequestStatus::Expired);
        assert_eq!(settled.events[0].kind, EventKind::RequestExpired);
    }

    #[test]
    fn break_glass_is_immediate_and_raises_an_alert() {
        let bob = Identity::user("bob", &["sre"]);
        let mut bg = ask("prod-db", "write", "outage OPS-9");
        bg.break_glass = true;
        let t = file(&bob, &bg, needs(&[]), ids(1), t0());
        assert_eq!(t.request.status, RequestStatus::Approved);
        assert!(t.request.grant.as_ref().unwrap().break_glass);
        assert!(t.events.iter().any(|e| e.kind == EventKind::BreakGlassRaised));
        assert!(t.request.review_due());
        // Not by the one who broke the glass, not by an outsider; once, by another sre.
        assert!(matches!(
            review_break_glass(&t.request, &bob, None, t0()),
            Err(DomainError::Forbidden(_))
        ));
        let dave = Identity::user("dave", &["dev"]);
        assert!(matches!(
            review_break_glass(&t.request, &dave, None, t0()),
            Err(DomainError::Forbidden(_))
        ));
        let carol = Identity::user("carol", &["sre"]);
        let reviewed = review_break_glass(&t.request, &carol, Some("justified".into()), t0()).unwrap();
        assert!(!reviewed.request.review_due());
        assert_eq!(reviewed.events[0].kind, EventKind::BreakGlassReviewed);
        assert!(matches!(
            review_break_glass(&reviewed.request, &carol, None, t0()),
            Err(DomainError::Conflict(_))
        ));
    }

    #[test]
    fn revocation_ends_a_grant_once() {
        let alice = Identity::user("alice", &["dev"]);
        let dave = Identity::user("dave", &["dev"]);
        let granted = file(&alice, &ask("staging-db", "read", ""), needs(&[]), ids(1), t0()).request;
        assert!(matches!(
            revoke(&granted, &dave, None, t0()),
            Err(DomainError::Forbidden(_))
        ));
        let revoked = revoke(&granted, &alice, None, t0()).unwrap().request;
        assert_eq!(revoked.grant.as_ref().unwrap().status, GrantStatus::Revoked);
        assert!(matches!(
            revoke(&revoked, &alice, None, t0()),
            Err(DomainError::Conflict(_))
        ));
    }

    #[test]
    fn extensions_are_capped_in_count_and_remaining_time() {
        let alice = Identity::user("alice", &["dev"]);
        let bob = Identity::user("bob", &["sre"]);
        let granted = file(&alice, &ask("staging-db", "read", ""), needs(&[]), ids(1), t0()).request;
        let limits = ExtensionLimits {
            max_times: 2,
            max_duration: DurationSecs(1200),
        };
        assert!(matches!(
            extend(&granted, &bob, DurationSecs(60), "", limits, t0()),
            Err(DomainError::Forbidden(_))
        ));
        // 600s left; +600 leaves 1200 = the maximum.
        let once = extend(&granted, &alice, DurationSecs(600), "more", limits, t0()).unwrap();
        assert_eq!(
            once.request.grant.as_ref().unwrap().expires_at,
            t0() + TimeDelta::seconds(1200)
        );
        assert_eq!(once.events[0].kind, EventKind::GrantExtended);
        let too_long = extend(&once.request, &alice, DurationSecs(60), "more", limits, t0()).unwrap_err();
        assert!(
            matches!(too_long, DomainError::Invalid { ref field, .. } if field == "duration"),
            "{too_long}"
        );
        let later = t0() + TimeDelta::seconds(600);
        let twice = extend(&once.request, &alice, DurationSecs(600), "more", limits, later)
            .unwrap()
            .request;
        assert_eq!(twice.grant.as_ref().unwrap().extensions, 2);
        let thrice = extend(&twice, &alice, DurationSecs(1), "more", limits, later);
        assert!(matches!(thrice, Err(DomainError::Conflict(_))));
        let expired_at = twice.grant.as_ref().unwrap().expires_at;
        assert!(matches!(
            extend(
                &granted,
                &alice,
                DurationSecs(1),
                "",
                limits,
                t0() + TimeDelta::seconds(600)
            ),
            Err(DomainError::Conflict(_))
        ));
        assert!(expired_at > t0());
    }

    #[test]
    fn an_extension_never_overshoots_the_maximum_by_a_fraction_of_a_second() {
        let alice = Identity::user("alice", &["dev"]);
        let granted = file(&alice, &ask("staging-db", "read", ""), needs(&[]), ids(1), t0()).request;
        let limits = ExtensionLimits {
            max_times: 5,
            max_duration: DurationSecs(1200),
        };
        // 1 ms after t0, 599.999 s are left: +601 would leave 1200.999 s, which whole seconds
        // counted as 1200.
        let now = t0() + TimeDelta::milliseconds(1);
        let over = extend(&granted, &alice, DurationSecs(601), "more", limits, now).unwrap_err();
        assert!(
            matches!(over, DomainError::Invalid { ref field, .. } if field == "duration"),
            "{over}"
        );
        // What the message offers is accepted, and lands within the maximum.
        let offer = format!("extend by {} or less", crate::format_duration(DurationSecs(600)));
        assert!(over.to_string().contains(&offer), "{over}");
        let offered = extend(&granted, &alice, DurationSecs(600), "more", limits, now).unwrap();
        let end = offered.request.grant.as_ref().unwrap().expires_at;
        assert!(end - now <= TimeDelta::seconds(1200));
    }

    #[test]
    fn settling_an_expired_grant_records_it_once() {
        let alice = Identity::user("alice", &["dev"]);
        let granted = file(&alice, &ask("staging-db", "read", ""), needs(&[]), ids(1), t0()).request;
        let end = granted.grant.as_ref().unwrap().expires_at;
        assert!(settle(&granted, end - TimeDelta::milliseconds(1)).is_none());
        let settled = settle(&granted, end).unwrap();
        assert_eq!(settled.request.grant.as_ref().unwrap().status, GrantStatus::Expired);
        assert!(settle(&settled.request, end + TimeDelta::hours(1)).is_none());
        assert!(matches!(
            revoke(&settled.request, &alice, None, end),
            Err(DomainError::Conflict(_))
        ));
    }

    #[test]
    fn a_leavers_approvals_are_withdrawn_and_their_step_needs_another_reviewer() {
        let alice = Identity::user("alice", &["dev"]);
        let bob = Identity::user("bob", &["sre"]);
        let carol = Identity::user("carol", &["sre"]);
        let pending = filed(&alice, &[("sre", 2)]);
        let once = approve(&pending, &bob, None, "g1".into(), t0()).unwrap().request;
        let withdrawn = withdraw_approvals(&once, "bob", "scim-okta", Some("bob was deactivated".into()), t0());
        assert!(withdrawn.request.approvals.is_empty());
        assert_eq!(withdrawn.events.len(), 1);
        let e = &withdrawn.events[0];
        assert_eq!(e.kind, EventKind::ApprovalWithdrawn);
        assert_eq!(e.actor, "scim-okta");
        assert_eq!(e.subject, "alice");
        assert!(e.comment.as_deref().unwrap().contains("bob"), "{e:?}");
        // Carol's approval alone does not grant: the step still needs two.
        let after_carol = approve(&withdrawn.request, &carol, None, "g1".into(), t0())
            .unwrap()
            .request;
        assert_eq!(after_carol.status, RequestStatus::Pending);
        // Nothing of someone else's is touched, and a decided request is left as it is.
        let other = withdraw_approvals(&once, "carol", "scim-okta", None, t0());
        assert_eq!(other.request, once);
        assert!(other.events.is_empty());
        let done = approve(&after_carol, &bob, None, "g1".into(), t0()).unwrap().request;
        assert_eq!(done.status, RequestStatus::Approved);
        let late = withdraw_approvals(&done, "bob", "scim-okta", None, t0());
        assert_eq!(late.request, done);
        assert!(late.events.is_empty());
    }

    #[test]
    fn a_movers_approval_stays_only_where_they_are_still_admitted() {
        let alice = Identity::user("alice", &["dev"]);
        let olga = Identity::user("olga", &["ops", "sre"]);
        let pending = filed(&alice, &[("ops", 1), ("sre", 2)]);
        // Olga's one approval counts towards the first step she is admitted to: ops.
        let approved = approve(&pending, &olga, None, "g1".into(), t0()).unwrap().request;
        assert_eq!(approved.approvals[0].step, 0);
        // She leaves sre: the ops approval stays.
        let left_sre = Identity::user("olga", &["ops"]);
        let kept = withdraw_approvals_outside(&approved, &left_sre, "scim", None, t0());
        assert_eq!(kept.request, approved);
        assert!(kept.events.is_empty());
        // She leaves ops: withdrawn.
        let left_ops = Identity::user("olga", &["sre"]);
        let gone = withdraw_approvals_outside(&approved, &left_ops, "scim", Some("olga left ops".into()), t0());
        assert!(gone.request.approvals.is_empty());
        assert_eq!(gone.events.len(), 1);
    }

    #[test]
    fn a_movers_approval_is_withdrawn_only_where_the_change_took_the_step_away() {
        let alice = Identity::user("alice", &["dev"]);
        let olga = Identity::user("olga", &["ops", "sre"]);
        let pending = filed(&alice, &[("ops", 1), ("sre", 2)]);
        let approved = approve(&pending, &olga, None, "g1".into(), t0()).unwrap().request;
        assert_eq!(approved.approvals[0].step, 0);
        // Out of ops in the directory, but a token of hers still carries ops: it stays.
        let before = Identity::user("olga", &["ops", "sre"]);
        let directory_after = Identity::user("olga", &["sre"]);
        let token_after = Identity::user("olga", &["ops", "sre"]);
        let kept = withdraw_approvals_moved(
            &approved,
            "olga",
            &before,
            &[directory_after.clone(), token_after],
            "scim",
            None,
            t0(),
        );
        assert!(kept.events.is_empty());
        // A step the directory never admitted her to (ops came from elsewhere): untouched.
        let never = Identity::user("olga", &["sre"]);
        let untouched = withdraw_approvals_moved(
            &approved,
            "olga",
            &never,
            &[Identity::user("olga", &[])],
            "scim",
            None,
            t0(),
        );
        assert!(untouched.events.is_empty());
        // Out of ops everywhere: withdrawn.
        let gone = withdraw_approvals_moved(&approved, "olga", &before, &[directory_after], "scim", None, t0());
        assert!(gone.request.approvals.is_empty());
        assert_eq!(gone.events.len(), 1);
    }

    #[test]
    fn the_system_cancels_and_revokes_with_its_actor_and_comment() {
        let alice = Identity::user("alice", &["dev"]);
        let bob = Identity::user("bob", &["sre"]);
        let pending = filed(&alice, &[("sre", 1)]);
        let cancelled = cancel_by_system(&pending, "scim-okta", Some("alice was deactivated".into()), t0()).unwrap();
        assert_eq!(cancelled.request.status, RequestStatus::Cancelled);
        assert_eq!(cancelled.request.closed_by.as_ref().unwrap().by, "scim-okta");
        assert_eq!(cancelled.events[0].actor, "scim-okta");
        assert_eq!(cancelled.events[0].comment.as_deref(), Some("alice was deactivated"));
        assert!(matches!(
            cancel_by_system(&cancelled.request, "scim-okta", None, t0()),
            Err(DomainError::Conflict(_))
        ));
        let granted = approve(&pending, &bob, None, "g1".into(), t0()).unwrap().request;
        let revoked = revoke_by_system(&granted, "scim-okta", Some("gone".into()), t0()).unwrap();
        let grant = revoked.request.grant.as_ref().unwrap();
        assert_eq!(grant.status, GrantStatus::Revoked);
        assert_eq!(grant.ended_by.as_deref(), Some("scim-okta"));
        assert_eq!(revoked.events[0].kind, EventKind::GrantRevoked);
        assert!(matches!(
            revoke_by_system(&revoked.request, "scim-okta", None, t0()),
            Err(DomainError::Conflict(_))
        ));
    }
}
