//! Audit events and the hash chain that makes the log tamper-evident.

use crate::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Every kind of event jitgate records. The wire name is `noun.verb`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    #[serde(rename = "request.filed")]
    RequestFiled,
    /// One approval given; the request may need more.
    #[serde(rename = "request.approval")]
    RequestApproval,
    #[serde(rename = "request.approved")]
    RequestApproved,
    #[serde(rename = "request.denied")]
    RequestDenied,
    #[serde(rename = "request.cancelled")]
    RequestCancelled,
    #[serde(rename = "request.expired")]
    RequestExpired,
    #[serde(rename = "grant.issued")]
    GrantIssued,
    #[serde(rename = "grant.used")]
    GrantUsed,
    #[serde(rename = "grant.revoked")]
    GrantRevoked,
    #[serde(rename = "grant.expired")]
    GrantExpired,
    #[serde(rename = "grant.extended")]
    GrantExtended,
    /// A break-glass grant was taken: an alert, and a review is owed.
    #[serde(rename = "breakglass.raised")]
    BreakGlassRaised,
    /// The review a break-glass request demands was given.
    #[serde(rename = "breakglass.reviewed")]
    BreakGlassReviewed,
    /// A policy version started serving.
    #[serde(rename = "policy.loaded")]
    PolicyLoaded,
    /// A changed policy failed validation and was not loaded; the previous one serves on.
    #[serde(rename = "policy.refused")]
    PolicyRefused,
    /// An admin issued an API token.
    #[serde(rename = "token.created")]
    TokenCreated,
    /// An admin revoked an API token.
    #[serde(rename = "token.revoked")]
    TokenRevoked,
    /// A new grant-signing key took over; the previous one stays published until its tokens
    /// expire.
    #[serde(rename = "key.rotated")]
    KeyRotated,
    /// An OpenSSH user certificate was issued for a grant.
    #[serde(rename = "grant.ssh_certificate")]
    SshCertificateIssued,
    /// jitgate's SSH user CA was created.
    #[serde(rename = "ssh.ca_created")]
    SshCaCreated,
    /// A provider made the grant real in its target system.
    #[serde(rename = "grant.provisioned")]
    GrantProvisioned,
    /// A provider removed the grant from its target system.
    #[serde(rename = "grant.deprovisioned")]
    GrantDeprovisioned,
    /// A provider failed to remove an ended grant; retried until it succeeds.
    #[serde(rename = "grant.deprovision_failed")]
    GrantDeprovisionFailed,
    /// The holder finished the task a grant was for (`jitgate done`, `jitgate run`): an active
    /// grant ends here; the comment holds the outcome (exit code and duration for a run).
    #[serde(rename = "grant.done")]
    GrantDone,
    /// Nobody decided the request in time: its workflow's backup reviewers may approve it too.
    #[serde(rename = "request.escalated")]
    RequestEscalated,
    /// The holder was reminded that the grant ends soon.
    #[serde(rename = "grant.expiring")]
    GrantExpiring,
    /// A grant's holder was handed the credentials a provider made (a database login), once.
    #[serde(rename = "grant.credentials_issued")]
    GrantCredentialsIssued,
    /// Checks that were denied, counted over a window per principal, resource and action (one
    /// event per window, so a flood of denials cannot swamp the log).
    #[serde(rename = "check.denied")]
    CheckDenied,
    /// Old events were moved out of the database into an archived segment (retention).
    #[serde(rename = "audit.archived")]
    AuditArchived,
    /// An operator accepted the database's history as it is after it diverged from what a
    /// replica had seen (a failover lost acknowledged work, or a second primary forked the
    /// log); the comment says what was given up.
    #[serde(rename = "database.history_accepted")]
    DatabaseHistoryAccepted,
    /// A live audit sink found the log rewound or forked under what it had shipped (an event
    /// it shipped is gone, or its seq came back with another hash): it ships nothing more
    /// until an operator acts. An alarm.
    #[serde(rename = "audit.fork_detected")]
    AuditForkDetected,
    /// An operator let a sink held by a fork go on, from the event its `resume_after` names.
    #[serde(rename = "audit.sink_resumed")]
    AuditSinkResumed,
    /// A provisioning client (SCIM) created a user; the subject is the user's principal.
    #[serde(rename = "scim.user_created")]
    ScimUserCreated,
    /// A provisioning client changed a user (replace or patch), still active.
    #[serde(rename = "scim.user_updated")]
    ScimUserUpdated,
    /// A user was set `active = false`: their grants, pending requests, pending approvals and
    /// tokens ended in the same transaction (each with its own event).
    #[serde(rename = "scim.user_deactivated")]
    ScimUserDeactivated,
    /// A deactivated user was set active again; nothing they lost comes back by itself.
    #[serde(rename = "scim.user_reactivated")]
    ScimUserReactivated,
    /// A user was deleted; as deactivation, and the user is gone from the directory.
    #[serde(rename = "scim.user_deleted")]
    ScimUserDeleted,
    /// A provisioning client created a group; the subject is the group's name.
    #[serde(rename = "scim.group_created")]
    ScimGroupCreated,
    /// A group's name or members changed; the comment says which members came and went.
    #[serde(rename = "scim.group_updated")]
    ScimGroupUpdated,
    /// A group was deleted.
    #[serde(rename = "scim.group_deleted")]
    ScimGroupDeleted,
    /// An approval given to a still-pending request stopped counting: its reviewer left, or
    /// left the group the approval was given as a member of.
    #[serde(rename = "request.approval_withdrawn")]
    ApprovalWithdrawn,
    /// jitgate decided what to tell GitHub about a deployment waiting on a protection rule
    /// (`approved` or `rejected`, and why, in the comment); the call is queued.
    #[serde(rename = "github.deployment_answered")]
    GithubDeploymentAnswered,
    /// GitHub accepted the answer to a deployment protection rule (the callback succeeded).
    #[serde(rename = "github.deployment_reported")]
    GithubDeploymentReported,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::RequestFiled => "request.filed",
            EventKind::RequestApproval => "request.approval",
            EventKind::RequestApproved => "request.approved",
            EventKind::RequestDenied => "request.denied",
            EventKind::RequestCancelled => "request.cancelled",
            EventKind::RequestExpired => "request.expired",
            EventKind::GrantIssued => "grant.issued",
            EventKind::GrantUsed => "grant.used",
            EventKind::GrantRevoked => "grant.revoked",
            EventKind::GrantExpired => "grant.expired",
            EventKind::GrantExtended => "grant.extended",
            EventKind::BreakGlassRaised => "breakglass.raised",
            EventKind::BreakGlassReviewed => "breakglass.reviewed",
            EventKind::PolicyLoaded => "policy.loaded",
            EventKind::PolicyRefused => "policy.refused",
            EventKind::TokenCreated => "token.created",
            EventKind::TokenRevoked => "token.revoked",
            EventKind::KeyRotated => "key.rotated",
            EventKind::SshCertificateIssued => "grant.ssh_certificate",
            EventKind::SshCaCreated => "ssh.ca_created",
            EventKind::GrantProvisioned => "grant.provisioned",
            EventKind::GrantDeprovisioned => "grant.deprovisioned",
            EventKind::GrantDeprovisionFailed => "grant.deprovision_failed",
            EventKind::GrantCredentialsIssued => "grant.credentials_issued",
            EventKind::GrantDone => "grant.done",
            EventKind::GrantExpiring => "grant.expiring",
            EventKind::RequestEscalated => "request.escalated",
            EventKind::CheckDenied => "check.denied",
            EventKind::AuditArchived => "audit.archived",
            EventKind::DatabaseHistoryAccepted => "database.history_accepted",
            EventKind::AuditForkDetected => "audit.fork_detected",
            EventKind::AuditSinkResumed => "audit.sink_resumed",
            EventKind::ScimUserCreated => "scim.user_created",
            EventKind::ScimUserUpdated => "scim.user_updated",
            EventKind::ScimUserDeactivated => "scim.user_deactivated",
            EventKind::ScimUserReactivated => "scim.user_reactivated",
            EventKind::ScimUserDeleted => "scim.user_deleted",
            EventKind::ScimGroupCreated => "scim.group_created",
            EventKind::ScimGroupUpdated => "scim.group_updated",
            EventKind::ScimGroupDeleted => "scim.group_deleted",
            EventKind::ApprovalWithdrawn => "request.approval_withdrawn",
            EventKind::GithubDeploymentAnswered => "github.deployment_answered",
            EventKind::GithubDeploymentReported => "github.deployment_reported",
        }
    }

    /// Every kind, in the order docs/audit.md lists them.
    pub const ALL: [EventKind; 43] = [
        EventKind::RequestFiled,
        EventKind::RequestApproval,
        EventKind::RequestApproved,
        EventKind::RequestDenied,
        EventKind::RequestCancelled,
        EventKind::RequestExpired,
        EventKind::RequestEscalated,
        EventKind::ApprovalWithdrawn,
        EventKind::GrantIssued,
        EventKind::GrantUsed,
        EventKind::GrantExtended,
        EventKind::GrantRevoked,
        EventKind::GrantDone,
        EventKind::GrantExpired,
        EventKind::GrantExpiring,
        EventKind::GrantProvisioned,
        EventKind::GrantDeprovisioned,
        EventKind::GrantDeprovisionFailed,
        EventKind::SshCertificateIssued,
        EventKind::GrantCredentialsIssued,
        EventKind::BreakGlassRaised,
        EventKind::BreakGlassReviewed,
        EventKind::CheckDenied,
        EventKind::PolicyLoaded,
        EventKind::PolicyRefused,
        EventKind::TokenCreated,
        EventKind::TokenRevoked,
        EventKind::KeyRotated,
        EventKind::SshCaCreated,
        EventKind::AuditArchived,
        EventKind::DatabaseHistoryAccepted,
        EventKind::AuditForkDetected,
        EventKind::AuditSinkResumed,
        EventKind::ScimUserCreated,
        EventKind::ScimUserUpdated,
        EventKind::ScimUserDeactivated,
        EventKind::ScimUserReactivated,
        EventKind::ScimUserDeleted,
        EventKind::ScimGroupCreated,
        EventKind::ScimGroupUpdated,
        EventKind::ScimGroupDeleted,
        EventKind::GithubDeploymentAnswered,
        EventKind::GithubDeploymentReported,
    ];
}

/// An event as the domain produces it; the store gives it a sequence number and a hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    pub kind: EventKind,
    pub at: Timestamp,
    /// Who caused it: a principal, or `system` for expiry.
    pub actor: String,
    /// Whose access it concerns.
    pub subject: String,
    pub request_id: Option<String>,
    pub grant_id: Option<String>,
    pub resource: String,
    pub action: String,
    /// The reason or reviewer comment, when there is one.
    pub comment: Option<String>,
}

/// The actor named on events nobody caused (expiry).
pub const SYSTEM_ACTOR: &str = "system";

/// An event as stored: numbered and chained to the one before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub seq: i64,
    #[serde(flatten)]
    pub event: NewEvent,
    pub prev_hash: String,
    pub hash: String,
}

/// The hash before the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The chain hash of an event: SHA-256 over the previous hash, the sequence number and every
/// field of the event, each length-prefixed so no two different events can hash alike. The
/// bytes are specified in docs/audit.md ("The hash of an event") for verifiers in other
/// languages.
pub fn chain_hash(prev_hash: &str, seq: i64, event: &NewEvent) -> String {
    let mut h = Sha256::new();
    chain_hash_input(prev_hash, seq, event, |bytes| h.update(bytes));
    hex::encode(h.finalize())
}

/// Marks an absent optional field in the hashed bytes (a NUL first, so no text collides).
const ABSENT: &str = "\u{0}none";

/// The bytes `chain_hash` hashes, handed to `sink` in order: each field as its length (u64,
/// big-endian) then its bytes; integers big-endian; `at` as Unix milliseconds.
fn chain_hash_input(prev_hash: &str, seq: i64, event: &NewEvent, mut sink: impl FnMut(&[u8])) {
    let mut field = |bytes: &[u8]| {
        sink(&(bytes.len() as u64).to_be_bytes());
        sink(bytes);
    };
    field(prev_hash.as_bytes());
    field(&seq.to_be_bytes());
    field(event.kind.as_str().as_bytes());
    field(&event.at.timestamp_millis().to_be_bytes());
    field(event.actor.as_bytes());
    field(event.subject.as_bytes());
    field(event.request_id.as_deref().unwrap_or(ABSENT).as_bytes());
    field(event.grant_id.as_deref().unwrap_or(ABSENT).as_bytes());
    field(event.resource.as_bytes());
    field(event.action.as_bytes());
    field(event.comment.as_deref().unwrap_or(ABSENT).as_bytes());
}

/// Where verification of a chain stopped, if it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    pub ok: bool,
    pub events: u64,
    /// The first sequence number at which the chain breaks.
    pub first_bad_seq: Option<i64>,
    pub problem: Option<String>,
    /// Signed checkpoints the log was compared with.
    pub checkpoints: u64,
    /// Events up to this one were archived (retention): the log starts after it, at a signed
    /// checkpoint of its hash.
    pub archived_through: Option<i64>,
    /// The newest event a signed checkpoint vouches for.
    pub signed_through: Option<i64>,
    /// The first and the last event that was checked (and found intact, for the last).
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
}

impl ChainReport {
    pub fn intact(events: u64) -> Self {
        ChainReport {
            ok: true,
            events,
            first_bad_seq: None,
            problem: None,
            checkpoints: 0,
            archived_through: None,
            signed_through: None,
            first_seq: None,
            last_seq: None,
        }
    }

    pub fn broken(events: u64, seq: i64, problem: String) -> Self {
        ChainReport {
            ok: false,
            first_bad_seq: Some(seq),
            problem: Some(problem),
            ..ChainReport::intact(events)
        }
    }
}

/// A signed statement that the log had event `seq` with hash `hash` at `at`: whoever later
/// cuts events off the end, or rewrites the chain and recomputes its hashes, no longer matches
/// it. The signature (a JWT by a grant-signing key) is checked by the server, which holds the
/// keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    pub at: Timestamp,
    pub signature: String,
}

/// Whether a log in the database that starts at event `first` lost events that were never
/// archived, given the sequence numbers of the checkpoints the database keeps. Archiving
/// through event N deletes the checkpoints before N and keeps N's, so a log that starts after
/// event 1 needs the checkpoint of the event just before it, and none earlier: an earlier one
/// marks where the archive really ends, and the events after it were deleted, not archived.
/// The event the problem is at and what it is.
pub fn archive_gap(first: i64, checkpoints: impl IntoIterator<Item = i64>) -> Option<(i64, String)> {
    if first <= 1 {
        return None;
    }
    let before = first - 1;
    let checkpoints: std::collections::BTreeSet<i64> = checkpoints.into_iter().collect();
    if !checkpoints.contains(&before) {
        return Some((first, missing_without_checkpoint(first)));
    }
    let earliest = checkpoints.first().copied()?;
    (earliest < before).then(|| deleted_after_the_archive(earliest, before))
}

fn missing_without_checkpoint(first: i64) -> String {
    let before = first - 1;
    format!(
        "the log starts at event {first}: events 1 to {before} are missing, and no signed checkpoint at event {before} shows they were archived"
    )
}

/// Events `earliest + 1 ..= before` gone, though the checkpoint at `earliest` is still there.
fn deleted_after_the_archive(earliest: i64, before: i64) -> (i64, String) {
    let missing = if earliest + 1 == before {
        format!("event {before} is missing")
    } else {
        format!("events {} to {before} are missing", earliest + 1)
    };
    (
        earliest + 1,
        format!(
            "{missing}: the checkpoint at event {earliest} marks where the archive ends, so the events after it were deleted, not archived"
        ),
    )
}

/// Walks the log page by page (memory stays flat however long it is), checking the chain and
/// each checkpoint at its event.
pub struct ChainVerifier {
    /// Checkpoints by sequence number, not yet met.
    pending: std::collections::BTreeMap<i64, Checkpoint>,
    tail: Option<AuditEvent>,
    /// Accept a first event that is not event 1 without a checkpoint before it (a partial
    /// export); the log itself must start at 1 or at an archive's checkpoint.
    trust_first_link: bool,
    /// Checkpoints come as lines among the events (an export, a segment): each must come right
    /// after the event it signs, or before the first event when it signs an earlier one.
    in_order: bool,
    report: ChainReport,
}

impl ChainVerifier {
    /// For the whole log: it starts at event 1, or right after archived events whose last one
    /// a signed checkpoint vouches for.
    pub fn new(checkpoints: Vec<Checkpoint>) -> Self {
        ChainVerifier {
            pending: checkpoints.into_iter().map(|c| (c.seq, c)).collect(),
            tail: None,
            trust_first_link: false,
            in_order: false,
            report: ChainReport::intact(0),
        }
    }

    /// For the lines of an export or of segments in a row, read in file order with
    /// [`ChainVerifier::event_line`] and [`ChainVerifier::checkpoint_line`]. Like
    /// [`ChainVerifier::trusting_first_link`], and where each checkpoint stands is checked too:
    /// every exporter writes a checkpoint right after the event it signs (the head at that
    /// point of the log), so a checkpoint anywhere else was moved, or events were cut around
    /// it. Memory stays flat: a checkpoint is compared with the event just read.
    pub fn reading_lines() -> Self {
        ChainVerifier {
            trust_first_link: true,
            in_order: true,
            ..ChainVerifier::new(Vec::new())
        }
    }

    /// The next event line. `false` once a problem is found (the report says where).
    pub fn event_line(&mut self, event: &AuditEvent) -> bool {
        self.feed(std::slice::from_ref(event))
    }

    /// The next checkpoint line: before the first event, one that signs an earlier event (the
    /// anchor of a log that starts after archived events); after that, one that signs the
    /// event just read. `false` once a problem is found.
    pub fn checkpoint_line(&mut self, checkpoint: Checkpoint) -> bool {
        if !self.report.ok {
            return false;
        }
        let seq = checkpoint.seq;
        let Some(tail) = &self.tail else {
            // Before the first event: whether it precedes that event is seen when it comes.
            self.pending.insert(seq, checkpoint);
            return true;
        };
        let (last, last_hash) = (tail.seq, tail.hash.clone());
        if seq > last {
            self.fail(
                seq,
                format!(
                    "the checkpoint of event {seq} comes before event {seq} (right after event {last}): a checkpoint follows the event it signs, so lines were moved or events cut off"
                ),
            );
            return false;
        }
        if seq < last {
            self.fail(
                seq,
                format!(
                    "the checkpoint of event {seq} comes after event {last}, not right after event {seq}: a checkpoint follows the event it signs, so lines were moved"
                ),
            );
            return false;
        }
        if checkpoint.hash != last_hash {
            self.fail(seq, differs_from_checkpoint(seq, &checkpoint));
            return false;
        }
        self.report.checkpoints += 1;
        self.report.signed_through = Some(seq);
        true
    }

    /// For an export, which may start anywhere: without a checkpoint just before its first
    /// event, that event's link to the one before is taken on trust.
    pub fn trusting_first_link(checkpoints: Vec<Checkpoint>) -> Self {
        ChainVerifier {
            trust_first_link: true,
            ..ChainVerifier::new(checkpoints)
        }
    }

    /// Where a log that does not start at event 1 continues from: the checkpoint of its last
    /// archived event.
    /// On a problem, the event it is at and what it is.
    fn anchor(&mut self, first: &AuditEvent) -> Result<Option<AuditEvent>, (i64, String)> {
        if self.in_order {
            if let Some(&early) = self.pending.range(first.seq..).next().map(|(seq, _)| seq) {
                return Err((early, format!(
                    "the checkpoint of event {early} comes before event {early} (before the first event, {}): a checkpoint follows the event it signs, so lines were moved",
                    first.seq
                )));
            }
        }
        if first.seq <= 1 {
            return Ok(None);
        }
        let before = first.seq - 1;
        match self.pending.remove(&before) {
            Some(checkpoint) => {
                if !self.trust_first_link {
                    if let Some(&earliest) = self.pending.keys().next().filter(|&&earliest| earliest < before) {
                        return Err(deleted_after_the_archive(earliest, before));
                    }
                }
                self.report.checkpoints += 1;
                self.report.archived_through = Some(before);
                self.report.signed_through = Some(before);
                Ok(Some(AuditEvent {
                    seq: before,
                    hash: checkpoint.hash,
                    ..first.clone()
                }))
            }
            None if self.trust_first_link => Ok(Some(AuditEvent {
                seq: before,
                hash: first.prev_hash.clone(),
                ..first.clone()
            })),
            None => Err((first.seq, missing_without_checkpoint(first.seq))),
        }
    }

    /// The next page of events, in sequence order. `false` once a problem is found (the report
    /// says where): there is no need to read further.
    pub fn feed(&mut self, page: &[AuditEvent]) -> bool {
        if !self.report.ok {
            return false;
        }
        if self.tail.is_none() {
            if let Some(first) = page.first() {
                match self.anchor(first) {
                    Ok(anchor) => self.tail = anchor,
                    Err((seq, problem)) => {
                        self.fail(seq, problem);
                        return false;
                    }
                }
            }
        }
        let report = match &self.tail {
            None => verify_chain(page),
            Some(tail) => verify_chain_from(tail, page),
        };
        self.report.events += report.events;
        if self.report.first_seq.is_none() {
            self.report.first_seq = report.first_seq;
        }
        self.report.last_seq = report.last_seq.or(self.report.last_seq);
        if !report.ok {
            self.fail(report.first_bad_seq.unwrap_or(0), report.problem.unwrap_or_default());
            return false;
        }
        for event in page {
            if let Some(checkpoint) = self.pending.remove(&event.seq) {
                if checkpoint.hash != event.hash {
                    self.fail(event.seq, differs_from_checkpoint(event.seq, &checkpoint));
                    return false;
                }
                self.report.checkpoints += 1;
                self.report.signed_through = Some(event.seq);
            }
        }
        self.tail = page.last().cloned().or(self.tail.take());
        true
    }

    /// The report, once every page was fed: checkpoints beyond the last event mean the log was
    /// cut short.
    pub fn finish(mut self) -> ChainReport {
        if self.report.ok {
            let last = self.tail.as_ref().map_or(0, |t| t.seq);
            // Checkpoints before the first event vouch for archived events: not evidence here.
            if let Some((seq, checkpoint)) = self.pending.range(last + 1..).next() {
                let (seq, at) = (*seq, checkpoint.at.to_rfc3339());
                self.fail(
                    last + 1,
                    format!(
                        "the log ends at event {last}, but a checkpoint signed at {at} shows it reached event {seq}: events {} to {seq} or more were cut off",
                        last + 1
                    ),
                );
            }
        }
        self.report
    }

    fn fail(&mut self, seq: i64, problem: String) {
        self.report.ok = false;
        self.report.first_bad_seq = Some(seq);
        self.report.problem = Some(problem);
    }
}

fn differs_from_checkpoint(seq: i64, checkpoint: &Checkpoint) -> String {
    format!(
        "event {seq} differs from the checkpoint signed at {}: the log was rewritten from there or before",
        checkpoint.at.to_rfc3339()
    )
}

/// Verify a run of events in sequence order, starting from the genesis hash.
pub fn verify_chain<'a>(events: impl IntoIterator<Item = &'a AuditEvent>) -> ChainReport {
    verify_linked(GENESIS_HASH.to_string(), 1, events)
}

/// Verify a run of events that continues the chain after `tail`.
pub fn verify_chain_from<'a>(tail: &AuditEvent, events: impl IntoIterator<Item = &'a AuditEvent>) -> ChainReport {
    verify_linked(tail.hash.clone(), tail.seq + 1, events)
}

fn verify_linked<'a>(
    mut prev: String,
    mut expected_seq: i64,
    events: impl IntoIterator<Item = &'a AuditEvent>,
) -> ChainReport {
    let mut count = 0;
    let (mut first_seq, mut last_seq) = (None, None);
    for e in events {
        count += 1;
        first_seq.get_or_insert(e.seq);
        let problem = if e.seq != expected_seq {
            Some(format!(
                "expected event {expected_seq} but found {}: events missing or reordered",
                e.seq
            ))
        } else if e.prev_hash != prev {
            Some(format!("event {} does not link to the event before it", e.seq))
        } else if chain_hash(&prev, e.seq, &e.event) != e.hash {
            Some(format!(
                "event {} was altered: its content does not match its hash",
                e.seq
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            return ChainReport {
                first_seq,
                last_seq,
                ..ChainReport::broken(count, e.seq, problem)
            };
        }
        prev = e.hash.clone();
        expected_seq += 1;
        last_seq = Some(e.seq);
    }
    ChainReport {
        first_seq,
        last_seq,
        ..ChainReport::intact(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditEvent> {
        let mut prev = GENESIS_HASH.to_string();
        (1..=n)
            .map(|seq| {
                let event = NewEvent {
                    kind: EventKind::RequestFiled,
                    at: chrono::DateTime::from_timestamp_millis(1_700_000_000_000 + seq).unwrap_or_default(),
                    actor: "alice".into(),
                    subject: "alice".into(),
                    request_id: Some(format!("r{seq}")),
                    grant_id: None,
                    resource: "db".into(),
                    action: "read".into(),
                    comment: Some("why".into()),
                };
                let hash = chain_hash(&prev, seq, &event);
                let e = AuditEvent {
                    seq,
                    event,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                e
            })
            .collect()
    }

    fn checkpoint_at(chain: &[AuditEvent], seq: i64) -> Checkpoint {
        let e = &chain[usize::try_from(seq - 1).unwrap_or(0)];
        Checkpoint {
            seq,
            hash: e.hash.clone(),
            at: e.event.at,
            signature: "signed".into(),
        }
    }

    fn verify_in_pages(events: &[AuditEvent], checkpoints: Vec<Checkpoint>) -> ChainReport {
        let mut verifier = ChainVerifier::new(checkpoints);
        for page in events.chunks(3) {
            if !verifier.feed(page) {
                break;
            }
        }
        verifier.finish()
    }

    #[test]
    fn checkpoints_catch_truncation_and_consistent_rewrites() {
        let events = chain(10);
        let checkpoints = vec![checkpoint_at(&events, 4), checkpoint_at(&events, 8)];
        let report = verify_in_pages(&events, checkpoints.clone());
        assert!(report.ok, "{report:?}");
        assert_eq!((report.events, report.checkpoints), (10, 2));

        // Cut off after event 6: the chain that is left is whole, but the checkpoint at 8 says
        // the log was longer.
        let report = verify_in_pages(&events[..6], checkpoints.clone());
        assert!(!report.ok);
        assert_eq!(report.first_bad_seq, Some(7));
        assert!(report.problem.unwrap().contains("ends at event 6"), "cut off");

        // Rewrite event 3 and recompute every hash after it: the chain verifies by itself, but
        // the checkpoint at 4 no longer matches.
        let mut rewritten = events.clone();
        rewritten[2].event.comment = Some("nothing to see".into());
        let mut prev = rewritten[1].hash.clone();
        for e in rewritten.iter_mut().skip(2) {
            e.prev_hash = prev.clone();
            e.hash = chain_hash(&prev, e.seq, &e.event);
            prev = e.hash.clone();
        }
        assert!(
            verify_chain(&rewritten).ok,
            "a consistent rewrite fools the chain alone"
        );
        let report = verify_in_pages(&rewritten, checkpoints);
        assert_eq!(report.first_bad_seq, Some(4));
        assert!(report.problem.unwrap().contains("differs from the checkpoint"));
    }

    #[test]
    fn an_archived_start_needs_its_signed_checkpoint() {
        let events = chain(10);
        let checkpoints = vec![checkpoint_at(&events, 4), checkpoint_at(&events, 8)];
        // Events 1 to 4 archived: the log continues from the checkpoint at 4.
        let report = verify_in_pages(&events[4..], checkpoints.clone());
        assert!(report.ok, "{report:?}");
        assert_eq!(report.archived_through, Some(4));
        assert_eq!(report.signed_through, Some(8));
        assert_eq!((report.events, report.checkpoints), (6, 2));

        // Events 1 to 5 gone, and no checkpoint at 5: a deletion, not an archive.
        let report = verify_in_pages(&events[5..], checkpoints.clone());
        assert_eq!(report.first_bad_seq, Some(6));
        assert!(report.problem.unwrap().contains("events 1 to 5 are missing"));
        // Events 5 and 6 gone, with a checkpoint at 6 as well as the one at 4.
        let more = vec![
            checkpoint_at(&events, 4),
            checkpoint_at(&events, 6),
            checkpoint_at(&events, 8),
        ];
        let report = verify_in_pages(&events[6..], more);
        assert_eq!(report.first_bad_seq, Some(5));
        assert!(
            report
                .problem
                .as_deref()
                .unwrap()
                .starts_with("events 5 to 6 are missing: the checkpoint at event 4"),
            "{report:?}"
        );

        // Events 5 to 8 gone too, although a checkpoint signs event 8: the one at 4, which an
        // archive through 8 would have deleted, shows they were deleted, not archived.
        let report = verify_in_pages(&events[8..], checkpoints.clone());
        assert_eq!(report.first_bad_seq, Some(5), "{report:?}");
        assert!(
            report.problem.as_deref().unwrap().contains("events 5 to 8 are missing"),
            "{report:?}"
        );
        assert_eq!(archive_gap(9, [4, 8]).map(|(at, _)| at), Some(5));
        assert_eq!(
            archive_gap(9, [8]),
            None,
            "archived through 8: its checkpoint is the earliest"
        );
        assert_eq!(archive_gap(5, [4, 8]), None);
        assert_eq!(archive_gap(1, [4]), None, "a log from event 1 lost nothing before it");
        assert_eq!(
            archive_gap(7, [4, 8]).map(|(at, _)| at),
            Some(7),
            "no checkpoint just before the first event: nothing shows an archive"
        );

        // The first kept event rewritten to link elsewhere: caught against the checkpoint.
        let mut relinked = events[4..].to_vec();
        relinked[0].prev_hash = "f".repeat(64);
        let report = verify_in_pages(&relinked, checkpoints.clone());
        assert_eq!(report.first_bad_seq, Some(5));

        // An export from event 6 on is taken from its first link when asked to.
        let mut verifier = ChainVerifier::trusting_first_link(checkpoints);
        assert!(verifier.feed(&events[5..]));
        let report = verifier.finish();
        assert!(report.ok, "{report:?}");
        assert_eq!((report.archived_through, report.signed_through), (None, Some(8)));
    }

    /// One line of an export: an event, or the checkpoint of an event.
    enum Line {
        Event(AuditEvent),
        Checkpoint(Checkpoint),
    }

    /// The events as an exporter writes them: each checkpoint right after its event.
    fn export_lines(events: &[AuditEvent], checkpoints: &[Checkpoint]) -> Vec<Line> {
        let mut lines = Vec::new();
        for e in events {
            lines.push(Line::Event(e.clone()));
            for c in checkpoints.iter().filter(|c| c.seq == e.seq) {
                lines.push(Line::Checkpoint(c.clone()));
            }
        }
        lines
    }

    fn verify_lines(lines: Vec<Line>) -> ChainReport {
        let mut verifier = ChainVerifier::reading_lines();
        for line in lines {
            let going = match line {
                Line::Event(e) => verifier.event_line(&e),
                Line::Checkpoint(c) => verifier.checkpoint_line(c),
            };
            if !going {
                break;
            }
        }
        verifier.finish()
    }

    /// Where each checkpoint line was met, for moving one.
    fn position_of_checkpoint(lines: &[Line], seq: i64) -> usize {
        lines
            .iter()
            .position(|l| matches!(l, Line::Checkpoint(c) if c.seq == seq))
            .unwrap_or(usize::MAX)
    }

    fn position_of_event(lines: &[Line], seq: i64) -> usize {
        lines
            .iter()
            .position(|l| matches!(l, Line::Event(e) if e.seq == seq))
            .unwrap_or(usize::MAX)
    }

    #[test]
    fn lines_in_order_verify_and_name_their_first_and_last_event() {
        let events = chain(10);
        let checkpoints: Vec<Checkpoint> = [4, 8, 10].iter().map(|&s| checkpoint_at(&events, s)).collect();
        let report = verify_lines(export_lines(&events, &checkpoints));
        assert!(report.ok, "{report:?}");
        assert_eq!((report.first_seq, report.last_seq), (Some(1), Some(10)));
        assert_eq!(
            (report.events, report.checkpoints, report.signed_through),
            (10, 3, Some(10))
        );

        // From event 5 on, anchored by the checkpoint of event 4 before the first line.
        let mut lines = vec![Line::Checkpoint(checkpoint_at(&events, 4))];
        lines.extend(export_lines(&events[4..], &checkpoints));
        let report = verify_lines(lines);
        assert!(report.ok, "{report:?}");
        assert_eq!((report.first_seq, report.last_seq), (Some(5), Some(10)));

        // Segments in a row: the second repeats the first's last checkpoint as its anchor.
        let mut lines = export_lines(&events[..4], &checkpoints);
        lines.push(Line::Checkpoint(checkpoint_at(&events, 4)));
        lines.extend(export_lines(&events[4..], &checkpoints));
        assert!(verify_lines(lines).ok);
    }

    #[test]
    fn a_checkpoint_moved_away_from_its_event_is_caught() {
        let events = chain(10);
        let checkpoints: Vec<Checkpoint> = [4, 8, 10].iter().map(|&s| checkpoint_at(&events, s)).collect();

        // The checkpoint of event 8 moved up before event 8: its hash still matches event 8,
        // so only its place gives it away.
        let mut lines = export_lines(&events, &checkpoints);
        let moved = lines.remove(position_of_checkpoint(&lines, 8));
        lines.insert(position_of_event(&lines, 8), moved);
        let report = verify_lines(lines);
        assert!(!report.ok);
        assert_eq!(report.first_bad_seq, Some(8));
        let problem = report.problem.unwrap_or_default();
        assert!(problem.contains("comes before event 8"), "{problem}");

        // Moved to the very top, before the first event.
        let mut lines = export_lines(&events, &checkpoints);
        let moved = lines.remove(position_of_checkpoint(&lines, 4));
        lines.insert(0, moved);
        let report = verify_lines(lines);
        assert_eq!(report.first_bad_seq, Some(4), "{report:?}");
        assert!(report.problem.unwrap_or_default().contains("comes before event 4"));

        // Moved down, away from its event.
        let mut lines = export_lines(&events, &checkpoints);
        let moved = lines.remove(position_of_checkpoint(&lines, 4));
        lines.insert(position_of_event(&lines, 6) + 1, moved);
        let report = verify_lines(lines);
        assert_eq!(report.first_bad_seq, Some(4), "{report:?}");
        assert!(report.problem.unwrap_or_default().contains("comes after event 6"));

        // Right after its event but for another hash: the log was rewritten.
        let mut lines = export_lines(&events, &checkpoints);
        let at = position_of_checkpoint(&lines, 8);
        lines[at] = Line::Checkpoint(Checkpoint {
            hash: events[6].hash.clone(),
            ..checkpoint_at(&events, 8)
        });
        let report = verify_lines(lines);
        assert_eq!(report.first_bad_seq, Some(8), "{report:?}");
        assert!(report
            .problem
            .unwrap_or_default()
            .contains("differs from the checkpoint"));
    }

    /// The worked example of docs/audit.md, recomputed from the page itself: its event line,
    /// the bytes it lists field by field, and the hash. A change to the hashing (or to the
    /// page) that makes them disagree fails here.
    #[test]
    fn the_worked_example_in_the_docs_is_what_the_code_hashes() {
        let doc = include_str!("../../../../docs/audit.md");
        let block = |marker: &str| -> String {
            let after = doc.split_once(marker).map(|(_, rest)| rest).unwrap_or_default();
            let fence = after.split_once("```").map(|(_, rest)| rest).unwrap_or_default();
            let body = fence.split_once('\n').map(|(_, rest)| rest).unwrap_or_default();
            body.split_once("```")
                .map(|(b, _)| b)
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        let line = block("<!-- worked-example:event -->");
        let event: AuditEvent =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("the example event line: {e}: {line}"));
        assert_eq!(event.event.grant_id, None, "the example shows an absent field");

        let listed = block("<!-- worked-example:bytes -->");
        let mut doc_bytes = Vec::new();
        for row in listed.lines() {
            let (_, hex_text) = row
                .split_once(':')
                .unwrap_or_else(|| panic!("a row without a field name: {row}"));
            let compact: String = hex_text.split_whitespace().collect();
            doc_bytes.extend(hex::decode(&compact).unwrap_or_else(|e| panic!("{row}: {e}")));
        }
        let mut code_bytes = Vec::new();
        chain_hash_input(&event.prev_hash, event.seq, &event.event, |b| {
            code_bytes.extend_from_slice(b)
        });
        assert_eq!(
            hex::encode(&doc_bytes),
            hex::encode(&code_bytes),
            "the bytes the page lists"
        );
        assert!(
            doc.contains(&format!("these {} bytes", code_bytes.len())),
            "the page states the length"
        );

        let hash = doc
            .split_once("<!-- worked-example:hash -->")
            .and_then(|(_, rest)| rest.trim_start().strip_prefix('`'))
            .and_then(|rest| rest.split_once('`'))
            .map(|(h, _)| h)
            .unwrap_or_default();
        assert_eq!(
            hex::encode(Sha256::digest(&doc_bytes)),
            hash,
            "SHA-256 of the listed bytes"
        );
        assert_eq!(chain_hash(&event.prev_hash, event.seq, &event.event), hash);
        assert_eq!(event.hash, hash, "the line's own hash");
        assert_eq!(event.prev_hash, GENESIS_HASH);
        assert!(verify_chain([&event]).ok);
    }

    #[test]
    fn every_kind_is_listed_once_and_names_itself_on_the_wire() {
        let mut names: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        for kind in EventKind::ALL {
            let wire = serde_json::to_value(kind).unwrap_or_default();
            assert_eq!(wire, kind.as_str(), "{kind:?}");
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), EventKind::ALL.len(), "a kind is listed twice");
        // The documented schema names every kind.
        let doc = include_str!("../../../../docs/audit.md");
        for kind in EventKind::ALL {
            assert!(
                doc.contains(&format!("`{}`", kind.as_str())),
                "docs/audit.md lacks {}",
                kind.as_str()
            );
        }
    }

    #[test]
    fn intact_chain_verifies() {
        let report = verify_chain(&chain(5));
        assert!(report.ok);
        assert_eq!(report.events, 5);
    }

    #[test]
    fn edits_deletions_and_reorders_are_found_where_they_are() {
        let mut edited = chain(5);
        edited[2].event.actor = "mallory".into();
        assert_eq!(verify_chain(&edited).first_bad_seq, Some(3));

        let mut deleted = chain(5);
        deleted.remove(1);
        assert_eq!(verify_chain(&deleted).first_bad_seq, Some(3));

        let mut swapped = chain(5);
        swapped.swap(3, 4);
        assert_eq!(verify_chain(&swapped).first_bad_seq, Some(5));
    }
}
