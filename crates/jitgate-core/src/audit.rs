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
        }
    }

    /// Every kind, in the order docs/audit.md lists them.
    pub const ALL: [EventKind; 29] = [
        EventKind::RequestFiled,
        EventKind::RequestApproval,
        EventKind::RequestApproved,
        EventKind::RequestDenied,
        EventKind::RequestCancelled,
        EventKind::RequestExpired,
        EventKind::RequestEscalated,
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
/// field of the event, each length-prefixed so no two different events can hash alike.
pub fn chain_hash(prev_hash: &str, seq: i64, event: &NewEvent) -> String {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    field(prev_hash.as_bytes());
    field(&seq.to_be_bytes());
    field(event.kind.as_str().as_bytes());
    field(&event.at.timestamp_millis().to_be_bytes());
    field(event.actor.as_bytes());
    field(event.subject.as_bytes());
    field(event.request_id.as_deref().unwrap_or("\u{0}none").as_bytes());
    field(event.grant_id.as_deref().unwrap_or("\u{0}none").as_bytes());
    field(event.resource.as_bytes());
    field(event.action.as_bytes());
    field(event.comment.as_deref().unwrap_or("\u{0}none").as_bytes());
    hex::encode(h.finalize())
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

/// Walks the log page by page (memory stays flat however long it is), checking the chain and
/// each checkpoint at its event.
pub struct ChainVerifier {
    /// Checkpoints by sequence number, not yet met.
    pending: std::collections::BTreeMap<i64, Checkpoint>,
    tail: Option<AuditEvent>,
    /// Accept a first event that is not event 1 without a checkpoint before it (a partial
    /// export); the log itself must start at 1 or at an archive's checkpoint.
    trust_first_link: bool,
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
            report: ChainReport::intact(0),
        }
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
    fn anchor(&mut self, first: &AuditEvent) -> Result<Option<AuditEvent>, String> {
        if first.seq <= 1 {
            return Ok(None);
        }
        let before = first.seq - 1;
        match self.pending.remove(&before) {
            Some(checkpoint) => {
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
            None => Err(format!(
                "the log starts at event {}: events 1 to {before} are missing, and no signed checkpoint at event {before} shows they were archived",
                first.seq
            )),
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
                    Err(problem) => {
                        self.fail(first.seq, problem);
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
        if !report.ok {
            self.fail(report.first_bad_seq.unwrap_or(0), report.problem.unwrap_or_default());
            return false;
        }
        for event in page {
            if let Some(checkpoint) = self.pending.remove(&event.seq) {
                if checkpoint.hash != event.hash {
                    self.fail(
                        event.seq,
                        format!(
                            "event {} differs from the checkpoint signed at {}: the log was rewritten from there or before",
                            event.seq,
                            checkpoint.at.to_rfc3339()
                        ),
                    );
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
    for e in events {
        count += 1;
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
            return ChainReport::broken(count, e.seq, problem);
        }
        prev = e.hash.clone();
        expected_seq += 1;
    }
    ChainReport::intact(count)
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
        let doc = include_str!("../../../docs/audit.md");
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
