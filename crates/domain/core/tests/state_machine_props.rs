//! Property tests of the state machine and the check index together (issue #11): for any
//! sequence of filings, approvals, denials, cancellations, revocations, extensions, break-glass
//! reviews, checks, expiry rounds and clock moves,
//! - no grant exists without its policy's approvals, none given by the requester, none counted
//!   twice, each from someone its step admits (or a backup reviewer after escalation), none by
//!   an agent, none by the person an agent's request is filed for;
//! - no check allows outside a grant's window, after it ended, for someone else or for another
//!   payload;
//! - a single-use grant allows at most once;
//! - every change of state comes with the audit event that records it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::TimeDelta;
use jitgate_core::machine::{self, ExtensionLimits, NewIds, Transition};
use jitgate_core::model::{Escalation, Requirement, Step};
use jitgate_core::{
    Admission, Ask, CheckOutcome, DomainError, DurationSecs, EventKind, Grant, GrantIndex, GrantStatus, Identity,
    Request, RequestStatus, Timestamp,
};
use proptest::prelude::*;
use std::collections::HashMap;

fn people() -> Vec<Identity> {
    vec![
        Identity::user("ann", &["dev"]),
        Identity::user("bob", &["ops"]),
        Identity::user("cat", &["ops", "leads"]),
        Identity::user("dan", &["leads"]),
        Identity::user("eve", &["ops"]),
        Identity::user("root", &["admins"]),
        // Agents (issue #24), with the groups they inherit from their person: they file, and
        // never count as reviewers; nor does their person on what they file.
        Identity {
            on_behalf_of: Some("bob".into()),
            ..Identity::user("ai-bob", &["ops", "agents"])
        },
        Identity {
            on_behalf_of: Some("cat".into()),
            ..Identity::user("ai-cat", &["ops", "leads", "agents"])
        },
    ]
}

/// The workflows a filing may meet: automatic, one or two approvals from ops, ops then leads.
fn steps_of(kind: u8) -> Vec<Step> {
    let step = |group: &str, approvals| Step {
        group: group.into(),
        approvals,
    };
    match kind % 4 {
        0 => vec![],
        1 => vec![step("ops", 1)],
        2 => vec![step("ops", 2)],
        _ => vec![step("ops", 1), step("leads", 1)],
    }
}

#[derive(Debug, Clone)]
enum Op {
    File {
        who: usize,
        kind: u8,
        single_use: bool,
        bound: bool,
        break_glass: bool,
    },
    Approve {
        req: usize,
        who: usize,
    },
    Deny {
        req: usize,
        who: usize,
    },
    Cancel {
        req: usize,
        who: usize,
    },
    Revoke {
        req: usize,
        who: usize,
    },
    Done {
        req: usize,
        who: usize,
    },
    Extend {
        req: usize,
        who: usize,
        minutes: u64,
    },
    ReviewBreakGlass {
        req: usize,
        who: usize,
    },
    Check {
        req: usize,
        as_other: bool,
        right_payload: bool,
    },
    Settle,
    Advance {
        seconds: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let who = 0..8usize;
    let req = 0..8usize;
    prop_oneof![
        2 => (who.clone(), any::<u8>(), any::<bool>(), any::<bool>(), prop::bool::weighted(0.1)).prop_map(
            |(who, kind, single_use, bound, break_glass)| Op::File { who, kind, single_use, bound, break_glass }
        ),
        3 => (req.clone(), who.clone()).prop_map(|(req, who)| Op::Approve { req, who }),
        1 => (req.clone(), who.clone()).prop_map(|(req, who)| Op::Deny { req, who }),
        1 => (req.clone(), who.clone()).prop_map(|(req, who)| Op::Cancel { req, who }),
        1 => (req.clone(), who.clone()).prop_map(|(req, who)| Op::Revoke { req, who }),
        1 => (req.clone(), who.clone()).prop_map(|(req, who)| Op::Done { req, who }),
        1 => (req.clone(), who.clone(), 1..30u64).prop_map(|(req, who, minutes)| Op::Extend { req, who, minutes }),
        1 => (req.clone(), who).prop_map(|(req, who)| Op::ReviewBreakGlass { req, who }),
        4 => (req, any::<bool>(), prop::bool::weighted(0.8))
            .prop_map(|(req, as_other, right_payload)| Op::Check { req, as_other, right_payload }),
        1 => Just(Op::Settle),
        2 => (0..900i64).prop_map(|seconds| Op::Advance { seconds }),
    ]
}

const PAYLOAD: &str = "DELETE FROM sessions WHERE expired";

/// The world the operations act on: the requests as the store would hold them, the index as
/// the server keeps it, the clock, and what checks have allowed.
struct World {
    people: Vec<Identity>,
    requests: Vec<Request>,
    index: GrantIndex,
    now: Timestamp,
    single_use_allowed: HashMap<String, u32>,
    events: Vec<EventKind>,
}

impl World {
    fn new() -> World {
        World {
            people: people(),
            requests: Vec::new(),
            index: GrantIndex::new(),
            now: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
            single_use_allowed: HashMap::new(),
            events: Vec::new(),
        }
    }

    fn person(&self, who: usize) -> Identity {
        self.people[who % self.people.len()].clone()
    }

    /// Keep a transition as the store would, and the index as the server does.
    fn commit(&mut self, n: usize, t: Transition) {
        check_events(&self.requests[n], &t);
        if let Some(grant) = &t.request.grant {
            self.index.upsert(grant);
        }
        self.events.extend(t.events.iter().map(|e| e.kind));
        self.requests[n] = t.request;
    }

    fn commit_result(&mut self, n: usize, result: Result<Transition, DomainError>) {
        if let Ok(t) = result {
            self.commit(n, t);
        }
    }

    fn file(&mut self, who: usize, kind: u8, single_use: bool, bound: bool, break_glass: bool) {
        let who = self.person(who);
        let n = self.requests.len();
        let ask = Ask {
            resource: "prod-db",
            action: "write",
            duration: Some(DurationSecs(600)),
            reason: "OPS-1",
            payload: bound.then_some(PAYLOAD),
            break_glass,
        };
        let admission = Admission {
            requirement: Requirement {
                steps: if break_glass { vec![] } else { steps_of(kind) },
                single_use,
                action_bound: bound,
                pending_ttl: DurationSecs(3600),
                review_groups: vec!["leads".into()],
                alert: None,
                providers: Vec::new(),
                escalation: Some(Escalation {
                    after: DurationSecs(1200),
                    groups: vec!["leads".into()],
                }),
            },
            duration: DurationSecs(600),
            decided_by: None,
        };
        let ids = NewIds {
            request_id: format!("r{n}"),
            grant_id: format!("g{n}"),
        };
        let t = machine::file(&who, &ask, admission, ids, self.now);
        assert_eq!(t.events.first().map(|e| e.kind), Some(EventKind::RequestFiled));
        if t.request.grant.is_some() {
            assert!(t.events.iter().any(|e| e.kind == EventKind::GrantIssued));
        }
        if let Some(grant) = &t.request.grant {
            self.index.upsert(grant);
        }
        self.events.extend(t.events.iter().map(|e| e.kind));
        self.requests.push(t.request);
    }

    fn apply(&mut self, op: &Op) {
        let now = self.now;
        if let Op::File {
            who,
            kind,
            single_use,
            bound,
            break_glass,
        } = *op
        {
            return self.file(who, kind, single_use, bound, break_glass);
        }
        if let Op::Advance { seconds } = *op {
            self.now += TimeDelta::seconds(seconds);
            return;
        }
        if let Op::Settle = op {
            for n in 0..self.requests.len() {
                if let Some(t) = machine::settle(&self.requests[n], now) {
                    self.commit(n, t);
                }
            }
            return;
        }
        if self.requests.is_empty() {
            return;
        }
        let at = |req: usize| req % self.requests.len();
        match *op {
            Op::Approve { req, who } => {
                let n = at(req);
                let result = machine::approve(&self.requests[n], &self.person(who), None, format!("g{n}"), now);
                self.commit_result(n, result);
            }
            Op::Deny { req, who } => {
                let n = at(req);
                let result = machine::deny(&self.requests[n], &self.person(who), None, now);
                self.commit_result(n, result);
            }
            Op::Cancel { req, who } => {
                let n = at(req);
                let result = machine::cancel(&self.requests[n], &self.person(who), now);
                self.commit_result(n, result);
            }
            Op::Revoke { req, who } => {
                let n = at(req);
                let result = machine::revoke(&self.requests[n], &self.person(who), None, now);
                self.commit_result(n, result);
            }
            Op::Done { req, who } => {
                let n = at(req);
                let result = machine::done(&self.requests[n], &self.person(who), None, now);
                self.commit_result(n, result);
            }
            Op::Extend { req, who, minutes } => {
                let n = at(req);
                let limits = ExtensionLimits {
                    max_times: 2,
                    max_duration: DurationSecs(1800),
                };
                let by = DurationSecs(minutes * 60);
                let result = machine::extend(&self.requests[n], &self.person(who), by, "more", limits, now);
                if let Ok(t) = &result {
                    let (before, after) = (grant_of(&self.requests[n]), grant_of(&t.request));
                    assert!(after.extensions <= limits.max_times, "extended more often than allowed");
                    assert!(
                        (after.expires_at - now).num_seconds() <= 1800,
                        "extended past the limit"
                    );
                    assert_eq!(after.expires_at, before.expires_at + by.as_delta());
                }
                self.commit_result(n, result);
            }
            Op::ReviewBreakGlass { req, who } => {
                let n = at(req);
                let who = self.person(who);
                let result = machine::review_break_glass(&self.requests[n], &who, None, now);
                if result.is_ok() {
                    assert_ne!(
                        who.principal, self.requests[n].requester,
                        "reviewed their own break-glass"
                    );
                }
                self.commit_result(n, result);
            }
            Op::Check {
                req,
                as_other,
                right_payload,
            } => self.check(at(req), as_other, right_payload),
            Op::File { .. } | Op::Settle | Op::Advance { .. } => {}
        }
    }

    fn check(&mut self, n: usize, as_other: bool, right_payload: bool) {
        let now = self.now;
        let r = self.requests[n].clone();
        let principal = if as_other { "mallory" } else { r.requester.as_str() };
        let payload = Some(if right_payload { PAYLOAD } else { "DROP TABLE users" });
        match self.index.check(principal, &r.resource, &r.action, payload, now) {
            CheckOutcome::Deny { .. } => {}
            CheckOutcome::Allow { grant_id, .. } => {
                let g = self.assert_may_allow(principal, &grant_id, payload);
                assert!(!g.single_use, "a single-use grant allowed without being consumed");
            }
            CheckOutcome::AllowIfConsumed { grant_id, .. } => {
                self.assert_may_allow(principal, &grant_id, payload);
                // What the store's consume does: an active, unexpired grant becomes used, once.
                let m = self.holder_of(&grant_id);
                if grant_of(&self.requests[m]).status_at(now) != GrantStatus::Active {
                    return;
                }
                let mut next = self.requests[m].clone();
                if let Some(g) = next.grant.as_mut() {
                    g.status = GrantStatus::Used;
                    g.ended_at = Some(now);
                }
                let used = machine::used_event(grant_of(&next), "svc", now);
                self.commit(
                    m,
                    Transition {
                        request: next,
                        events: vec![used],
                    },
                );
                let count = self.single_use_allowed.entry(grant_id).or_default();
                *count += 1;
                assert!(*count <= 1, "a single-use grant allowed twice");
            }
        }
    }

    fn holder_of(&self, grant_id: &str) -> usize {
        self.requests
            .iter()
            .position(|r| r.grant.as_ref().is_some_and(|g| g.id == grant_id))
            .unwrap_or_else(|| panic!("the index allowed unknown grant {grant_id}"))
    }

    /// An allowed check names a grant that is the caller's, live now, and (if bound) for
    /// this payload.
    fn assert_may_allow(&self, principal: &str, grant_id: &str, payload: Option<&str>) -> &Grant {
        let g = grant_of(&self.requests[self.holder_of(grant_id)]);
        assert_eq!(g.principal, principal, "allowed on someone else's grant");
        assert!(g.starts_at <= self.now, "allowed before the grant's start");
        assert!(self.now < g.expires_at, "allowed at or after the grant's end");
        assert_eq!(
            g.status,
            GrantStatus::Active,
            "allowed on a grant that is {:?}",
            g.status
        );
        if g.payload_sha256.is_some() {
            assert_eq!(payload, Some(PAYLOAD), "allowed another payload");
        }
        g
    }

    /// Every grant that exists was earned.
    fn check_invariants(&self) {
        for r in &self.requests {
            if r.grant.is_none() {
                assert_ne!(r.status, RequestStatus::Approved, "approved without a grant");
                continue;
            }
            assert_eq!(r.status, RequestStatus::Approved, "a grant on a {:?} request", r.status);
            let mut reviewers: Vec<&str> = r.approvals.iter().map(|a| a.reviewer.as_str()).collect();
            assert!(
                !reviewers.contains(&r.requester.as_str()),
                "the requester approved their own request"
            );
            if let Some(person) = &r.on_behalf_of {
                assert!(
                    !reviewers.contains(&person.as_str()),
                    "{person} approved the request their agent {} filed",
                    r.requester
                );
            }
            for a in &r.approvals {
                let by_agent = self.people.iter().any(|p| p.principal == a.reviewer && p.is_agent());
                assert!(!by_agent, "the agent {} approved {}", a.reviewer, r.id);
            }
            reviewers.sort_unstable();
            let given = reviewers.len();
            reviewers.dedup();
            assert_eq!(given, reviewers.len(), "a reviewer counted twice");
            if r.break_glass {
                assert!(r.requirement.steps.is_empty());
                continue;
            }
            assert!(
                machine::remaining_steps(&r.requirement.steps, &r.approvals).is_empty(),
                "a grant without its approvals: {r:?}"
            );
            for a in &r.approvals {
                let who = self
                    .people
                    .iter()
                    .find(|p| p.principal == a.reviewer)
                    .expect("a known reviewer");
                let step = &r.requirement.steps[a.step];
                let backup = r.escalated_at.is_some_and(|at| at <= a.at) && r.is_backup_reviewer(who);
                assert!(
                    step.admits(who) || backup,
                    "{} counted for {} without being admitted",
                    a.reviewer,
                    step.group
                );
            }
        }
    }
}

fn grant_of(r: &Request) -> &Grant {
    r.grant.as_ref().expect("a request with a grant")
}

/// Each change of state is recorded by its event.
fn check_events(previous: &Request, t: &Transition) {
    let kinds: Vec<EventKind> = t.events.iter().map(|e| e.kind).collect();
    assert!(!kinds.is_empty(), "a transition without an event");
    assert!(t
        .events
        .iter()
        .all(|e| e.request_id.as_deref() == Some(previous.id.as_str())));
    let next = &t.request;
    let status_event = match next.status {
        _ if next.status == previous.status => None,
        RequestStatus::Approved => Some(EventKind::RequestApproved),
        RequestStatus::Denied => Some(EventKind::RequestDenied),
        RequestStatus::Cancelled => Some(EventKind::RequestCancelled),
        RequestStatus::Expired => Some(EventKind::RequestExpired),
        RequestStatus::Pending => panic!("a request went back to pending"),
    };
    if let Some(kind) = status_event {
        assert!(
            kinds.contains(&kind),
            "{:?} -> {:?} without {kind:?}: {kinds:?}",
            previous.status,
            next.status
        );
    }
    if previous.approvals.len() != next.approvals.len() {
        assert!(kinds.contains(&EventKind::RequestApproval));
    }
    match (&previous.grant, &next.grant) {
        (None, Some(_)) => assert!(kinds.contains(&EventKind::GrantIssued)),
        (Some(_), None) => panic!("a grant disappeared"),
        (Some(old), Some(new)) => {
            if old.status != new.status {
                let expected: &[EventKind] = match new.status {
                    GrantStatus::Revoked => &[EventKind::GrantRevoked],
                    GrantStatus::Done => &[EventKind::GrantDone],
                    GrantStatus::Expired => &[EventKind::GrantExpired],
                    GrantStatus::Used => &[EventKind::GrantUsed],
                    GrantStatus::Active => panic!("a grant came back to life"),
                };
                assert!(
                    kinds.iter().any(|k| expected.contains(k)),
                    "grant {:?} -> {:?} without its event: {kinds:?}",
                    old.status,
                    new.status
                );
            }
            if old.expires_at != new.expires_at {
                assert!(kinds.contains(&EventKind::GrantExtended));
            }
        }
        (None, None) => {}
    }
    if previous.post_review.is_none() && next.post_review.is_some() {
        assert!(kinds.contains(&EventKind::BreakGlassReviewed));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn no_sequence_of_operations_breaks_the_rules(ops in prop::collection::vec(op(), 1..120)) {
        let mut world = World::new();
        for op in &ops {
            world.apply(op);
            world.check_invariants();
        }
        // Every filing has its event, and every issued grant too.
        let filed = world.events.iter().filter(|k| **k == EventKind::RequestFiled).count();
        prop_assert_eq!(filed, world.requests.len());
        let issued = world.events.iter().filter(|k| **k == EventKind::GrantIssued).count();
        prop_assert_eq!(issued, world.requests.iter().filter(|r| r.grant.is_some()).count());
    }
}

/// The generator reaches the states the properties are about (else they would hold vacuously).
#[test]
fn the_operations_reach_grants_checks_and_single_use() {
    let mut world = World::new();
    // ann asks for a single-use grant needing ops then leads; bob and dan approve.
    world.apply(&Op::File {
        who: 0,
        kind: 3,
        single_use: true,
        bound: false,
        break_glass: false,
    });
    world.apply(&Op::Approve { req: 0, who: 0 });
    assert!(
        world.requests[0].approvals.is_empty(),
        "the requester's approval counted"
    );
    world.apply(&Op::Approve { req: 0, who: 1 });
    world.apply(&Op::Approve { req: 0, who: 1 });
    assert_eq!(world.requests[0].approvals.len(), 1, "bob counted twice");
    world.apply(&Op::Approve { req: 0, who: 3 });
    assert_eq!(grant_of(&world.requests[0]).status, GrantStatus::Active);
    world.apply(&Op::Check {
        req: 0,
        as_other: false,
        right_payload: true,
    });
    world.apply(&Op::Check {
        req: 0,
        as_other: false,
        right_payload: true,
    });
    assert_eq!(world.single_use_allowed.get("g0"), Some(&1));
    assert_eq!(grant_of(&world.requests[0]).status, GrantStatus::Used);
    world.check_invariants();
}
