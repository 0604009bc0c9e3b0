//! The lines audit events travel in. An export, an archived segment and a `json` sink all
//! write one event per line exactly as `GET /v1/audit` gives it, with signed checkpoints as
//! `{"checkpoint": {...}}` lines among them, so any of them re-verifies offline with
//! `jitgate audit verify --file`. The `ecs` shape maps the same event onto the Elastic Common
//! Schema for SIEMs that ingest it.

use jitgate_core::audit::{Checkpoint, EventKind};
use jitgate_core::{AuditEvent, NewEvent, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// One event as it is exported, archived and shipped, and as `GET /v1/audit` lists it (the
/// API's `EventView` is the same shape; a test there holds them together).
#[derive(Debug, Clone, Serialize)]
pub struct EventRecord {
    pub seq: i64,
    pub kind: &'static str,
    pub at: Timestamp,
    pub actor: String,
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    pub resource: String,
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

impl From<AuditEvent> for EventRecord {
    fn from(e: AuditEvent) -> Self {
        EventRecord {
            seq: e.seq,
            kind: e.event.kind.as_str(),
            at: e.event.at,
            actor: e.event.actor,
            subject: e.event.subject,
            request_id: e.event.request_id,
            grant_id: e.event.grant_id,
            resource: e.event.resource,
            action: e.event.action,
            comment: e.event.comment,
            prev_hash: e.prev_hash,
            hash: e.hash,
        }
    }
}

/// One event as a line of JSON (no newline).
pub fn event_line(event: &AuditEvent) -> String {
    serde_json::to_string(&EventRecord::from(event.clone())).unwrap_or_default()
}

/// A signed checkpoint as a line of JSON (no newline).
pub fn checkpoint_line(checkpoint: &Checkpoint) -> String {
    json!({ "checkpoint": checkpoint }).to_string()
}

/// One line read back.
#[derive(Debug)]
pub enum Line {
    Event(AuditEvent),
    Checkpoint(Checkpoint),
}

/// Read one line of an export or a segment.
pub fn parse_line(line: &str) -> Result<Line, String> {
    #[derive(Deserialize)]
    struct CheckpointLine {
        checkpoint: Checkpoint,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct EventLine {
        seq: i64,
        kind: EventKind,
        at: Timestamp,
        actor: String,
        subject: String,
        request_id: Option<String>,
        grant_id: Option<String>,
        resource: String,
        action: String,
        comment: Option<String>,
        prev_hash: String,
        hash: String,
    }
    if line.trim_start().starts_with("{\"checkpoint\"") {
        let c: CheckpointLine = serde_json::from_str(line).map_err(|e| format!("not a checkpoint: {e}"))?;
        return Ok(Line::Checkpoint(c.checkpoint));
    }
    let l: EventLine = serde_json::from_str(line).map_err(|e| format!("not an exported event: {e}"))?;
    Ok(Line::Event(AuditEvent {
        seq: l.seq,
        event: NewEvent {
            kind: l.kind,
            at: l.at,
            actor: l.actor,
            subject: l.subject,
            request_id: l.request_id,
            grant_id: l.grant_id,
            resource: l.resource,
            action: l.action,
            comment: l.comment,
        },
        prev_hash: l.prev_hash,
        hash: l.hash,
    }))
}

/// The event in the Elastic Common Schema (ECS 8): `@timestamp`, `event.*`, `user.*`, and
/// jitgate's own fields (the chain included) under `jitgate`.
pub fn ecs_line(event: &AuditEvent) -> String {
    let e = &event.event;
    let (category, types, outcome) = ecs_class(e.kind);
    let mut doc = json!({
        "@timestamp": e.at,
        "message": summary(e),
        "ecs": {"version": "8.11.0"},
        "event": {
            "kind": "event",
            "category": [category],
            "type": types,
            "action": e.kind.as_str(),
            "outcome": outcome,
            "sequence": event.seq,
            "provider": "jitgate",
            "dataset": "jitgate.audit",
        },
        "user": {"name": e.actor, "target": {"name": e.subject}},
        "jitgate": {
            "resource": e.resource,
            "action": e.action,
            "prev_hash": event.prev_hash,
            "hash": event.hash,
        },
    });
    if let Some(comment) = &e.comment {
        doc["event"]["reason"] = Value::String(comment.clone());
    }
    for (key, value) in [("request_id", &e.request_id), ("grant_id", &e.grant_id)] {
        if let Some(value) = value {
            doc["jitgate"][key] = Value::String(value.clone());
        }
    }
    doc.to_string()
}

/// ECS `event.category`, `event.type` and `event.outcome` for a kind.
fn ecs_class(kind: EventKind) -> (&'static str, Vec<&'static str>, &'static str) {
    use EventKind::*;
    match kind {
        RequestFiled => ("iam", vec!["creation"], "success"),
        RequestApproval | RequestApproved => ("iam", vec!["allowed", "change"], "success"),
        RequestDenied => ("iam", vec!["denied", "change"], "success"),
        CheckDenied => ("iam", vec!["denied", "access"], "failure"),
        GrantIssued | BreakGlassRaised => ("iam", vec!["start", "allowed"], "success"),
        GrantUsed | SshCertificateIssued | GrantCredentialsIssued => ("iam", vec!["access", "allowed"], "success"),
        GrantRevoked | GrantDone | GrantExpired | RequestCancelled | RequestExpired => ("iam", vec!["end"], "success"),
        GrantDeprovisionFailed => ("iam", vec!["deletion", "error"], "failure"),
        GrantDeprovisioned => ("iam", vec!["deletion"], "success"),
        GrantProvisioned => ("iam", vec!["creation"], "success"),
        PolicyLoaded => ("configuration", vec!["change"], "success"),
        PolicyRefused => ("configuration", vec!["change", "error"], "failure"),
        TokenCreated | SshCaCreated => ("iam", vec!["creation", "admin"], "success"),
        TokenRevoked => ("iam", vec!["deletion", "admin"], "success"),
        KeyRotated => ("configuration", vec!["change", "admin"], "success"),
        AuditArchived => ("database", vec!["deletion", "admin"], "success"),
        DatabaseHistoryAccepted => ("database", vec!["change", "admin"], "success"),
        AuditForkDetected => ("database", vec!["error"], "failure"),
        AuditSinkResumed => ("database", vec!["change", "admin"], "success"),
        RequestEscalated | GrantExtended | GrantExpiring | BreakGlassReviewed => ("iam", vec!["change"], "success"),
        ScimUserCreated | ScimGroupCreated => ("iam", vec!["user", "creation"], "success"),
        ScimUserUpdated | ScimUserReactivated | ScimGroupUpdated => ("iam", vec!["user", "change"], "success"),
        ScimUserDeactivated | ScimUserDeleted | ScimGroupDeleted => ("iam", vec!["user", "deletion"], "success"),
        ApprovalWithdrawn => ("iam", vec!["change"], "success"),
        GithubDeploymentAnswered | GithubDeploymentReported => ("iam", vec!["change"], "success"),
    }
}

/// One line a person reads: "bob request.approved: read prod-db for alice (go ahead)".
fn summary(e: &NewEvent) -> String {
    let mut line = format!("{} {}", e.actor, e.kind.as_str());
    if !e.resource.is_empty() {
        line.push_str(&format!(": {} {} for {}", e.action, e.resource, e.subject));
    }
    if let Some(comment) = &e.comment {
        line.push_str(&format!(" ({comment})"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind) -> AuditEvent {
        let new = NewEvent {
            kind,
            at: crate::clock::now(),
            actor: "bob".into(),
            subject: "alice".into(),
            request_id: Some("req_1".into()),
            grant_id: None,
            resource: "prod-db".into(),
            action: "read".into(),
            comment: Some("INC-1 \"quoted\"\nnewline".into()),
        };
        let hash = jitgate_core::audit::chain_hash(jitgate_core::audit::GENESIS_HASH, 1, &new);
        AuditEvent {
            seq: 1,
            event: new,
            prev_hash: jitgate_core::audit::GENESIS_HASH.into(),
            hash,
        }
    }

    #[test]
    fn lines_read_back_as_they_were_written() {
        let original = event(EventKind::RequestApproved);
        let line = event_line(&original);
        assert!(!line.contains('\n'), "one line: {line}");
        match parse_line(&line) {
            Ok(Line::Event(back)) => assert_eq!(back, original),
            other => panic!("{other:?}"),
        }
        let checkpoint = Checkpoint {
            seq: 1,
            hash: original.hash.clone(),
            at: original.event.at,
            signature: "a.b.c".into(),
        };
        match parse_line(&checkpoint_line(&checkpoint)) {
            Ok(Line::Checkpoint(back)) => assert_eq!(back, checkpoint),
            other => panic!("{other:?}"),
        }
        assert!(parse_line("{\"seq\": 1}").is_err());
    }

    #[test]
    fn ecs_names_who_what_and_the_outcome() {
        for kind in EventKind::ALL {
            let doc: Value = serde_json::from_str(&ecs_line(&event(kind))).unwrap_or_default();
            assert_eq!(doc["event"]["action"], kind.as_str());
            assert!(doc["@timestamp"].is_string(), "{doc}");
        }
        let doc: Value = serde_json::from_str(&ecs_line(&event(EventKind::CheckDenied))).unwrap_or_default();
        assert_eq!(doc["event"]["outcome"], "failure");
        assert_eq!(doc["user"]["name"], "bob");
        assert_eq!(doc["user"]["target"]["name"], "alice");
        assert_eq!(doc["jitgate"]["request_id"], "req_1");
        assert_eq!(doc["event"]["reason"], "INC-1 \"quoted\"\nnewline");
    }
}
