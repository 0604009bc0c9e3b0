//! The two things jitgate keeps: requests for access, and the grants they produce.

use crate::duration::DurationSecs;
use crate::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Where a request stands. `pending` is the only state that can still change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestStatus {
    Pending,
    Approved,
    Denied,
    Cancelled,
    Expired,
}

impl RequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Approved => "approved",
            RequestStatus::Denied => "denied",
            RequestStatus::Cancelled => "cancelled",
            RequestStatus::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => RequestStatus::Pending,
            "approved" => RequestStatus::Approved,
            "denied" => RequestStatus::Denied,
            "cancelled" => RequestStatus::Cancelled,
            "expired" => RequestStatus::Expired,
            _ => return None,
        })
    }
}

/// Where a grant stands. Only `active` allows anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GrantStatus {
    Active,
    Expired,
    Revoked,
    /// A single-use grant that has been consumed by a check.
    Used,
    /// Ended early by its holder: the task is done (`jitgate done`, or `jitgate run` when its
    /// command exits). Not a revocation: nobody took the access away.
    Done,
}

impl GrantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantStatus::Active => "active",
            GrantStatus::Expired => "expired",
            GrantStatus::Revoked => "revoked",
            GrantStatus::Used => "used",
            GrantStatus::Done => "done",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "active" => GrantStatus::Active,
            "expired" => GrantStatus::Expired,
            "revoked" => GrantStatus::Revoked,
            "used" => GrantStatus::Used,
            "done" => GrantStatus::Done,
            _ => return None,
        })
    }
}

/// One approval step: `approvals` distinct members of `group`, never the requester. A group
/// of the form `user:NAME` is the one principal NAME (a manager step, resolved when the
/// request is filed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub group: String,
    pub approvals: u32,
}

impl Step {
    /// The prefix that names one principal instead of a group.
    pub const PRINCIPAL_PREFIX: &'static str = "user:";
    /// In a workflow (before filing): "the requester's manager".
    pub const MANAGER: &'static str = "manager";

    /// A step that one named principal must approve.
    pub fn principal(name: &str) -> Step {
        Step {
            group: format!("{}{name}", Step::PRINCIPAL_PREFIX),
            approvals: 1,
        }
    }

    /// May `who` give an approval towards this step?
    pub fn admits(&self, who: &crate::Identity) -> bool {
        match self.group.strip_prefix(Step::PRINCIPAL_PREFIX) {
            Some(name) => who.principal == name,
            None => who.in_group(&self.group),
        }
    }
}

/// What a request needs, fixed when it is filed: a later policy change does not move the
/// goalposts of a request already in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    /// All steps must be satisfied; empty means automatic approval.
    pub steps: Vec<Step>,
    /// The grant may be used by exactly one check.
    pub single_use: bool,
    /// The grant is valid only for the request's payload.
    pub action_bound: bool,
    /// How long a pending request waits for a decision before it expires.
    pub pending_ttl: DurationSecs,
    /// For break-glass: the groups one of whose members must review it afterwards.
    #[serde(default)]
    pub review_groups: Vec<String>,
    /// For break-glass: the alert text recorded when it is raised.
    #[serde(default)]
    pub alert: Option<String>,
    /// Providers that make the grant real in target systems (webhooks, ...), by name.
    #[serde(default)]
    pub providers: Vec<String>,
    /// Backup reviewers for a request nobody decides in time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation: Option<Escalation>,
}

/// If a request is still pending `after` it was filed, members of `groups` are told and may
/// approve it too, counting towards whichever step still needs approvals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    pub after: DurationSecs,
    pub groups: Vec<String>,
}

/// A reviewer's approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub reviewer: String,
    /// Index of the requirement step this approval counted towards.
    pub step: usize,
    pub comment: Option<String>,
    pub at: Timestamp,
    /// The payload's SHA-256 the reviewer confirmed they saw when approving (`payload_sha256`
    /// on approve), if they sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_sha256: Option<String>,
}

/// A decision that ended a request without a grant (a denial or a cancellation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub by: String,
    pub comment: Option<String>,
    pub at: Timestamp,
}

/// A request for one action on one resource, for a duration, with a reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub id: String,
    pub requester: String,
    /// When the requester is an agent: the person it acts for (issue #24). Shown beside the
    /// requester everywhere; that person never counts as a reviewer of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
    pub resource: String,
    pub action: String,
    pub reason: String,
    /// The exact command, statement or artifact digest an action-bound request is for.
    pub payload: Option<String>,
    pub payload_sha256: Option<String>,
    /// How long the grant lasts, counted from approval.
    pub duration: DurationSecs,
    pub break_glass: bool,
    pub status: RequestStatus,
    pub requirement: Requirement,
    pub approvals: Vec<Approval>,
    /// Who denied or cancelled it.
    pub closed_by: Option<Review>,
    pub created_at: Timestamp,
    /// A pending request expires at this moment if nobody decides.
    pub pending_expires_at: Timestamp,
    pub decided_at: Option<Timestamp>,
    pub grant: Option<Grant>,
    /// The after-the-fact review a break-glass request demands, once given.
    #[serde(default)]
    pub post_review: Option<Review>,
    /// When nobody had decided it in time and backup reviewers were called in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalated_at: Option<Timestamp>,
    /// The holder's word that the task is done, with its outcome; given once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<Review>,
    /// A request for several things at once (issue #21): the items after the first, whose
    /// resource, action, payload, requirement, approvals and grant are the request's own
    /// fields above. Empty for a single-item request, which is stored and shown as before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<Item>,
    /// Optimistic-concurrency counter: the store refuses a save based on a stale copy.
    pub version: i64,
}

/// Most items one request may hold.
pub const MAX_ITEMS: usize = 20;

/// One further thing a multi-item request asks for, judged by its own workflow: its own
/// requirement and approvals and, once the whole request is approved, its own grant (whose
/// window is the request's, shared by every item).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub resource: String,
    pub action: String,
    pub payload: Option<String>,
    pub payload_sha256: Option<String>,
    pub requirement: Requirement,
    pub approvals: Vec<Approval>,
    /// Kept in the grants table, not in the request's document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<Grant>,
}

/// A time-boxed permission for exactly one principal, resource and action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub id: String,
    pub request_id: String,
    pub principal: String,
    pub resource: String,
    pub action: String,
    /// Hex SHA-256 of the payload the grant is bound to, for action-bound grants.
    pub payload_sha256: Option<String>,
    pub single_use: bool,
    pub break_glass: bool,
    pub status: GrantStatus,
    pub starts_at: Timestamp,
    pub expires_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub ended_by: Option<String>,
    pub end_comment: Option<String>,
    /// How many times the grant has been extended.
    #[serde(default)]
    pub extensions: u32,
    /// The signed grant token (a JWT) for offline verification, for its current window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Providers that provision the grant in target systems and deprovision it at its end.
    #[serde(default)]
    pub providers: Vec<String>,
}

impl Grant {
    /// Does this grant allow anything at `now`? Judged on the clock, whatever the stored
    /// status says about expiry: no background job is needed for expiry to take effect.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.status == GrantStatus::Active && self.starts_at <= now && now < self.expires_at
    }

    /// The status as of `now`: an active grant past its end reads as expired.
    pub fn status_at(&self, now: Timestamp) -> GrantStatus {
        if self.status == GrantStatus::Active && now >= self.expires_at {
            GrantStatus::Expired
        } else {
            self.status
        }
    }
}

impl Request {
    /// The person the agent that filed it acts for; `None` for a person's request and for a
    /// CI job's (whose `on_behalf_of` names who triggered it: a CI job is no agent).
    pub fn agent_person(&self) -> Option<&str> {
        if self.requester.starts_with(crate::identity::CI_PRINCIPAL_PREFIX) {
            return None;
        }
        self.on_behalf_of.as_deref()
    }

    /// The status as of `now`: a pending request past its deadline reads as expired.
    /// When this request escalates to backup reviewers, if it still waits and will.
    pub fn escalates_at(&self) -> Option<Timestamp> {
        let rule = self.requirement.escalation.as_ref()?;
        (self.status == RequestStatus::Pending && self.escalated_at.is_none())
            .then(|| self.created_at + rule.after.as_delta())
    }

    /// Is `who` a backup reviewer of this request now (it has escalated)?
    pub fn is_backup_reviewer(&self, who: &crate::Identity) -> bool {
        self.escalated_at.is_some()
            && self
                .requirement
                .escalation
                .as_ref()
                .is_some_and(|e| e.groups.iter().any(|g| who.in_group(g)))
    }

    pub fn status_at(&self, now: Timestamp) -> RequestStatus {
        if self.status == RequestStatus::Pending && now >= self.pending_expires_at {
            RequestStatus::Expired
        } else {
            self.status
        }
    }

    /// A break-glass request whose after-the-fact review has not been given yet.
    pub fn review_due(&self) -> bool {
        self.break_glass && self.post_review.is_none()
    }

    /// Approvals still missing, per step, given the approvals so far.
    pub fn missing_approvals(&self) -> Vec<Step> {
        crate::machine::remaining_steps(&self.requirement.steps, &self.approvals)
    }

    /// How many things it asks for: 1, or 1 + the further items.
    pub fn item_count(&self) -> usize {
        1 + self.items.len()
    }

    /// Item `i` (0: the request's own resource and action) seen as a single-item request, so
    /// that what judges one request (the policy's review and extension rules) judges each item.
    pub fn item_request(&self, i: usize) -> Option<Request> {
        if i == 0 {
            let mut first = self.clone();
            first.items.clear();
            return Some(first);
        }
        let item = self.items.get(i - 1)?;
        let mut view = self.clone();
        view.items.clear();
        view.resource = item.resource.clone();
        view.action = item.action.clone();
        view.payload = item.payload.clone();
        view.payload_sha256 = item.payload_sha256.clone();
        view.requirement = item.requirement.clone();
        view.approvals = item.approvals.clone();
        view.grant = item.grant.clone();
        Some(view)
    }

    /// Approvals still missing for item `i`.
    pub fn item_missing_approvals(&self, i: usize) -> Vec<Step> {
        match i {
            0 => self.missing_approvals(),
            _ => self
                .items
                .get(i - 1)
                .map(|item| crate::machine::remaining_steps(&item.requirement.steps, &item.approvals))
                .unwrap_or_default(),
        }
    }

    /// Every grant of the request: the first item's, then the further items' in order.
    pub fn grants(&self) -> impl Iterator<Item = &Grant> {
        self.grant
            .iter()
            .chain(self.items.iter().filter_map(|item| item.grant.as_ref()))
    }

    /// Every grant, to change in place.
    pub fn grants_mut(&mut self) -> impl Iterator<Item = &mut Grant> {
        self.grant
            .iter_mut()
            .chain(self.items.iter_mut().filter_map(|item| item.grant.as_mut()))
    }

    /// The grant with this id, of any item.
    pub fn grant_by_id(&self, id: &str) -> Option<&Grant> {
        self.grants().find(|g| g.id == id)
    }

    /// The grant with this id, of any item, to change in place.
    pub fn grant_by_id_mut(&mut self, id: &str) -> Option<&mut Grant> {
        self.grants_mut().find(|g| g.id == id)
    }

    /// The item whose grant has this id, seen as a single-item request (`item_request`): what
    /// a grant's own payload and workflow are read from.
    pub fn view_of_grant(&self, id: &str) -> Option<Request> {
        if self.grant.as_ref().is_some_and(|g| g.id == id) {
            return self.item_request(0);
        }
        let k = self
            .items
            .iter()
            .position(|item| item.grant.as_ref().is_some_and(|g| g.id == id))?;
        self.item_request(k + 1)
    }
}

/// Hex SHA-256 of a payload, the form grants are bound to.
/// Who filed a request, as people are shown it: the requester, and for an agent the person it
/// acts for, `claude-alice (agent for alice)`.
pub fn requester_text(requester: &str, on_behalf_of: Option<&str>) -> String {
    match on_behalf_of {
        Some(person) if requester.starts_with(crate::identity::CI_PRINCIPAL_PREFIX) => {
            format!("{requester} (triggered by {person})")
        }
        Some(person) => format!("{requester} (agent for {person})"),
        None => requester.to_string(),
    }
}

pub fn payload_digest(payload: &str) -> String {
    hex::encode(Sha256::digest(payload.as_bytes()))
}
