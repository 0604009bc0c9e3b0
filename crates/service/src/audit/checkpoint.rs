//! Signed checkpoints of the audit log: every so often the head of the log (its last event's
//! sequence number and hash) is signed with the grant-signing key and kept. A log cut short,
//! or rewritten and re-hashed, no longer matches its checkpoints, and a checkpoint nobody could
//! sign without the key cannot be forged. `GET /v1/audit/verify` checks both.

use crate::clock::now;
use crate::signing::GrantSigner;
use jitgate_core::audit::Checkpoint;
use jitgate_store::AuditFilter;
use jitgate_store::{Store, StoreError};

/// Why the head was not signed.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The database could not be read or written.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The log does not deserve a signature, or the key could not sign.
    #[error("{0}")]
    Refused(String),
}

impl From<CheckpointError> for crate::ServiceError {
    fn from(e: CheckpointError) -> Self {
        match e {
            CheckpointError::Store(e) => e.into(),
            CheckpointError::Refused(m) => crate::ServiceError::Internal(m),
        }
    }
}

/// Sign the head if it is past `signed` (pass 0 to sign it whatever it is); the checkpoint
/// kept, if one was.
pub async fn sign_head(
    store: &dyn Store,
    signer: &GrantSigner,
    signed: i64,
) -> Result<Option<Checkpoint>, CheckpointError> {
    let head = store.audit_head().await?;
    if head <= signed {
        return Ok(None);
    }
    let checkpoints = store.checkpoints().await?;
    if let Some(beyond) = checkpoints.iter().find(|c| c.seq > head) {
        return Err(CheckpointError::Refused(format!(
            "not signing: a checkpoint vouches for event {} but the log ends at {head}: it was cut short; run jitgate audit verify",
            beyond.seq
        )));
    }
    let last = checkpoints.into_iter().max_by_key(|c| c.seq);
    if let Some(checkpoint) = last.as_ref().filter(|c| c.seq == head) {
        // Already signed (by another replica, or before a restart), if the head is still it.
        let event = store
            .audit_events(&AuditFilter {
                after_seq: Some(head - 1),
                limit: 1,
                ..Default::default()
            })
            .await?;
        if event.first().map(|e| e.hash.as_str()) != Some(checkpoint.hash.as_str()) {
            return Err(CheckpointError::Refused(format!(
                "not signing: event {head} differs from its checkpoint; run jitgate audit verify"
            )));
        }
        return Ok(Some(checkpoint.clone()));
    }
    let Some(event) = extends_last_checkpoint(store, head, last.as_ref()).await? else {
        return Ok(None);
    };
    // In whole seconds, as the signature states it (`iat`): what the checkpoint shows is
    // exactly what was signed.
    let at = chrono::DateTime::from_timestamp(now().timestamp(), 0).unwrap_or_else(now);
    let checkpoint = Checkpoint {
        seq: event.seq,
        hash: event.hash.clone(),
        at,
        signature: signer
            .sign_checkpoint(event.seq, &event.hash, at)
            .map_err(|e| CheckpointError::Refused(e.to_string()))?,
    };
    store.add_checkpoint(&checkpoint).await?;
    Ok(Some(checkpoint))
}

/// The head event, if the events since the last checkpoint chain onto it: a log tampered with
/// after the last checkpoint (an event inserted, removed or edited) is never signed, so a
/// checkpoint cannot launder tampering; verification reports it instead.
async fn extends_last_checkpoint(
    store: &dyn Store,
    head: i64,
    last: Option<&Checkpoint>,
) -> Result<Option<jitgate_core::AuditEvent>, CheckpointError> {
    const PAGE: u32 = 5000;
    // The events after the last checkpoint (or the head alone, before any checkpoint), each
    // linked to the one before, the first to the checkpoint's hash.
    let mut after = last.as_ref().map_or(head - 1, |c| c.seq);
    let mut tail: Option<jitgate_core::AuditEvent> = None;
    loop {
        let page = store
            .audit_events(&AuditFilter {
                after_seq: Some(after),
                limit: PAGE,
                ..Default::default()
            })
            .await?;
        // Up to the head read above: events appended meanwhile wait for the next round.
        let page: Vec<jitgate_core::AuditEvent> = page.into_iter().filter(|e| e.seq <= head).collect();
        let Some(newest) = page.last().cloned() else { break };
        let link = match (&tail, last) {
            (Some(tail), _) => Some(tail.clone()),
            // The checkpoint stands for its event (which retention may have archived).
            (None, Some(checkpoint)) => Some(jitgate_core::AuditEvent {
                seq: checkpoint.seq,
                hash: checkpoint.hash.clone(),
                ..newest.clone()
            }),
            (None, None) => None,
        };
        if let Some(link) = link {
            let report = jitgate_core::audit::verify_chain_from(&link, &page);
            if !report.ok {
                return Err(CheckpointError::Refused(format!(
                    "not signing: the audit log does not extend its last signed checkpoint ({}); run jitgate audit verify",
                    report.problem.unwrap_or_default()
                )));
            }
        }
        after = newest.seq;
        tail = Some(newest);
        if after >= head || page.len() < PAGE as usize {
            break;
        }
    }
    Ok(tail.filter(|t| t.seq == head))
}
