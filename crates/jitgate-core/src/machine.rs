//! The state machine. Every transition is one function that takes the current request, the
//! actor and `now`, and returns the new request together with the audit events it owes, so
//! no state change can exist without its event. Nothing here does I/O.

use crate::audit::{EventKind, NewEvent, SYSTEM_ACTOR};
use crate::error::DomainError;
use crate::identity::Identity;
use crate::model::{payload_digest, Approval, Grant, GrantStatus, Request, RequestStatus, Review, Step};
use crate::policy::{Ask, Policy};
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

fn check_comment(comment: &Option<String>) -> Result<(), DomainError> {
    match comment {
        Some(c) if c.len() > MAX_COMMENT_LEN => Err(DomainError::invalid(
            "comment",
            format!("is {} bytes; keep it under {MAX_COMMENT_LEN}", c.len()),
        )),
        _ => Ok(()),
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

fn issue_grant(request: &mut Request, grant_id: String, now: Timestamp) -> NewEvent {
    request.status = RequestStatus::Approved;
    request.decided_at = Some(now);
    request.grant = Some(Grant {
        id: grant_id,
        request_id: request.id.clone(),
        principal: request.requester.clone(),
        resource: request.resource.clone(),
        action: request.action.clone(),
        payload_sha256: if request.requirement.action_bound {
            request.payload_sha256.clone()
        } else {
            None
        },
        single_use: request.requirement.single_use,
        break_glass: request.break_glass,
        status: GrantStatus::Active,
        starts_at: now,
        expires_at: now + request.duration.as_delta(),
        ended_at: None,
        ended_by: None,
        end_comment: None,
    });
    event(EventKind::GrantIssued, request, SYSTEM_ACTOR, None, now)
}

/// File a request. The policy decides whether it may be filed and what it needs; an automatic
/// or break-glass request is approved, and its grant issued, in the same transition.
pub fn file(
    policy: &Policy,
    who: &Identity,
    ask: &Ask<'_>,
    ids: NewIds,
    now: Timestamp,
) -> Result<Transition, DomainError> {
    let workflow = policy.workflow(ask.resource, ask.action)?;
    let admission = workflow.admit(who, ask)?;
    let mut request = Request {
        id: ids.request_id,
        requester: who.principal.clone(),
        resource: ask.resource.to_string(),
        action: ask.action.to_string(),
        reason: ask.reason.trim().to_string(),
        payload: ask.payload.map(str::to_string),
        payload_sha256: ask.payload.map(payload_digest),
        duration: admission.duration,
        break_glass: ask.break_glass,
        status: RequestStatus::Pending,
        pending_expires_at: now + admission.requirement.pending_ttl.as_delta(),
        requirement: admission.requirement,
        approvals: Vec::new(),
        closed_by: None,
        created_at: now,
        decided_at: None,
        grant: None,
        version: 0,
    };
    let mut events = vec![event(
        EventKind::RequestFiled,
        &request,
        &who.principal,
        Some(request.reason.clone()),
        now,
    )];
    if request.requirement.steps.is_empty() {
        let issued = issue_grant(&mut request, ids.grant_id, now);
        if request.break_glass {
            events.push(event(
                EventKind::BreakGlassRaised,
                &request,
                &who.principal,
                Some(request.reason.clone()),
                now,
            ));
        }
        events.push(event(EventKind::RequestApproved, &request, SYSTEM_ACTOR, None, now));
        events.push(issued);
    }
    Ok(Transition { request, events })
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
    check_comment(&comment)?;
    require_pending(request, now)?;
    if reviewer.principal == request.requester {
        return Err(DomainError::Forbidden("you cannot approve your own request".into()));
    }
    if request.approvals.iter().any(|a| a.reviewer == reviewer.principal) {
        return Err(DomainError::Conflict(format!(
            "{} has already approved request {}; another reviewer must give the next approval",
            reviewer.principal, request.id
        )));
    }
    let remaining = remaining_steps(&request.requirement.steps, &request.approvals);
    let step = request
        .requirement
        .steps
        .iter()
        .enumerate()
        .position(|(i, s)| {
            reviewer.in_group(&s.group)
                && request.approvals.iter().filter(|a| a.step == i).count() < s.approvals as usize
        })
        .ok_or_else(|| {
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
    let mut next = request.clone();
    next.approvals.push(Approval {
        reviewer: reviewer.principal.clone(),
        step,
        comment: comment.clone(),
        at: now,
    });
    let mut events = vec![event(
        EventKind::RequestApproval,
        &next,
        &reviewer.principal,
        comment,
        now,
    )];
    if remaining_steps(&next.requirement.steps, &next.approvals).is_empty() {
        let issued = issue_grant(&mut next, grant_id, now);
        events.push(event(EventKind::RequestApproved, &next, &reviewer.principal, None, now));
        events.push(issued);
    }
    Ok(Transition { request: next, events })
}

/// Whether `who` is a reviewer of this request: in a group that one of its steps draws on.
pub fn is_reviewer(request: &Request, who: &Identity) -> bool {
    request.requirement.steps.iter().any(|s| who.in_group(&s.group))
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

/// Withdraw a pending request: its requester or an admin.
pub fn cancel(request: &Request, who: &Identity, now: Timestamp) -> Result<Transition, DomainError> {
    if who.principal != request.requester && !who.is_admin() {
        return Err(DomainError::Forbidden(
            "only the requester or an admin can cancel a request".into(),
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
    let status = grant.status_at(now);
    if status != GrantStatus::Active {
        return Err(DomainError::Conflict(format!(
            "grant {} is already {}",
            grant.id,
            status.as_str()
        )));
    }
    let mut next = request.clone();
    if let Some(g) = next.grant.as_mut() {
        g.status = GrantStatus::Revoked;
        g.ended_at = Some(now);
        g.ended_by = Some(who.principal.clone());
        g.end_comment = comment.clone();
    }
    let events = vec![event(EventKind::GrantRevoked, &next, &who.principal, comment, now)];
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
    }
    if let Some(g) = next.grant.as_mut() {
        if g.status == GrantStatus::Active && now >= g.expires_at {
            g.status = GrantStatus::Expired;
            g.ended_at = Some(g.expires_at);
            events.push(event(EventKind::GrantExpired, &next, SYSTEM_ACTOR, None, now));
        }
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
    use crate::policy::Policy;
    use chrono::TimeDelta;

    fn policy() -> Policy {
        let directory = r#"
[[principal]]
name = "alice"
groups = ["dev"]
[[principal]]
name = "bob"
groups = ["sre"]
[[principal]]
name = "carol"
groups = ["sre"]
[[principal]]
name = "erin"
groups = ["sre", "dev"]
"#;
        let workflows = r#"
[[workflow]]
resource = "staging-db"
action = "read"
requesters = ["dev"]
auto_approve = true
max_duration = "8h"

[[workflow]]
resource = "prod-db"
action = "write"
requesters = ["dev"]
ticket_pattern = "[A-Z]+-[0-9]+"
max_duration = "30m"
steps = [{ group = "sre", approvals = 2 }]
break_glass = { groups = ["sre"], max_duration = "15m" }
"#;
        match Policy::parse(directory, workflows) {
            Ok(p) => p,
            Err(e) => unreachable!("test policy is valid: {e:?}"),
        }
    }

    fn t0() -> Timestamp {
        chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    fn ask<'a>(resource: &'a str, action: &'a str, reason: &'a str) -> Ask<'a> {
        Ask {
            resource,
            action,
            duration: Some(crate::DurationSecs(600)),
            reason,
            payload: None,
            break_glass: false,
        }
    }

    fn ids(n: u32) -> NewIds {
        NewIds {
            request_id: format!("r{n}"),
            grant_id: format!("g{n}"),
        }
    }

    #[test]
    fn automatic_requests_are_granted_at_once_for_their_duration() {
        let alice = Identity::user("alice", &["dev"]);
        let t = file(&policy(), &alice, &ask("staging-db", "read", ""), ids(1), t0()).unwrap();
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
    fn two_distinct_reviewers_never_the_requester_and_grant_starts_at_approval() {
        let p = policy();
        let erin = Identity::user("erin", &["sre", "dev"]);
        let bob = Identity::user("bob", &["sre"]);
        let carol = Identity::user("carol", &["sre"]);
        let filed = file(&p, &erin, &ask("prod-db", "write", "fix OPS-1"), ids(1), t0())
            .unwrap()
            .request;
        assert_eq!(filed.status, RequestStatus::Pending);

        let own = approve(&filed, &erin, None, "g".into(), t0()).unwrap_err();
        assert!(matches!(own, DomainError::Forbidden(_)));

        let once = approve(&filed, &bob, None, "g".into(), t0()).unwrap().request;
        assert_eq!(once.status, RequestStatus::Pending);
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
    fn outsiders_cannot_approve() {
        let p = policy();
        let alice = Identity::user("alice", &["dev"]);
        let dave = Identity::user("dave", &["dev"]);
        let filed = file(&p, &alice, &ask("prod-db", "write", "OPS-2"), ids(1), t0())
            .unwrap()
            .request;
        assert!(matches!(
            approve(&filed, &dave, None, "g".into(), t0()),
            Err(DomainError::Forbidden(_))
        ));
    }

    #[test]
    fn ticket_and_duration_limits_are_enforced() {
        let p = policy();
        let alice = Identity::user("alice", &["dev"]);
        let err = file(&p, &alice, &ask("prod-db", "write", "no ticket"), ids(1), t0()).unwrap_err();
        assert!(
            matches!(err, DomainError::Invalid { ref field, .. } if field == "reason"),
            "{err}"
        );
        let mut long = ask("prod-db", "write", "OPS-3");
        long.duration = Some(crate::DurationSecs(3600));
        let err = file(&p, &alice, &long, ids(1), t0()).unwrap_err();
        assert!(
            matches!(err, DomainError::Invalid { ref field, .. } if field == "duration"),
            "{err}"
        );
    }

    #[test]
    fn pending_requests_expire_and_cannot_then_be_approved() {
        let p = policy();
        let alice = Identity::user("alice", &["dev"]);
        let bob = Identity::user("bob", &["sre"]);
        let filed = file(&p, &alice, &ask("prod-db", "write", "OPS-4"), ids(1), t0())
            .unwrap()
            .request;
        let late = t0() + TimeDelta::hours(1);
        assert!(matches!(
            approve(&filed, &bob, None, "g".into(), late),
            Err(DomainError::Conflict(_))
        ));
        let settled = settle(&filed, late).unwrap();
        assert_eq!(settled.request.status, RequestStatus::Expired);
        assert_eq!(settled.events[0].kind, EventKind::RequestExpired);
    }

    #[test]
    fn break_glass_is_immediate_for_sre_only_and_raises_an_alert() {
        let p = policy();
        let bob = Identity::user("bob", &["sre"]);
        let alice = Identity::user("alice", &["dev"]);
        let mut bg = ask("prod-db", "write", "outage OPS-9");
        bg.break_glass = true;
        let t = file(&p, &bob, &bg, ids(1), t0()).unwrap();
        assert_eq!(t.request.status, RequestStatus::Approved);
        assert!(t.events.iter().any(|e| e.kind == EventKind::BreakGlassRaised));
        assert!(matches!(
            file(&p, &alice, &bg, ids(2), t0()),
            Err(DomainError::Forbidden(_))
        ));
        bg.duration = Some(crate::DurationSecs(3600));
        assert!(matches!(
            file(&p, &bob, &bg, ids(3), t0()),
            Err(DomainError::Invalid { .. })
        ));
    }

    #[test]
    fn revocation_ends_a_grant_once() {
        let p = policy();
        let alice = Identity::user("alice", &["dev"]);
        let dave = Identity::user("dave", &["dev"]);
        let granted = file(&p, &alice, &ask("staging-db", "read", ""), ids(1), t0())
            .unwrap()
            .request;
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
}
