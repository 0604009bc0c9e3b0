//! Signed checkpoints of the audit log: every so often the head of the log (its last event's
//! sequence number and hash) is signed with the grant-signing key and kept. A log cut short,
//! or rewritten and re-hashed, no longer matches its checkpoints, and a checkpoint nobody could
//! sign without the key cannot be forged. `GET /v1/audit/verify` checks both.

use crate::app::{now, App};
use jitgate_core::audit::Checkpoint;
use jitgate_store::AuditFilter;
use std::sync::Arc;
use std::time::Duration;

/// Sign the log's head every `every`, when it moved.
pub async fn run(app: Arc<App>, every: Duration) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut signed = 0i64;
    loop {
        interval.tick().await;
        match sign_head(&app, signed).await {
            Ok(Some(checkpoint)) => signed = checkpoint.seq,
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "cannot sign an audit checkpoint; retrying"),
        }
    }
}

/// Sign the head if it is past `signed` (pass 0 to sign it whatever it is); the checkpoint
/// kept, if one was.
pub(crate) async fn sign_head(app: &App, signed: i64) -> Result<Option<Checkpoint>, String> {
    let head = app.store.audit_head().await.map_err(|e| e.to_string())?;
    if head <= signed {
        return Ok(None);
    }
    let events = app
        .store
        .audit_events(&AuditFilter {
            after_seq: Some(head - 1),
            limit: 1,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let Some(event) = events.first() else {
        return Ok(None);
    };
    let at = now();
    let checkpoint = Checkpoint {
        seq: event.seq,
        hash: event.hash.clone(),
        at,
        signature: app.sign_checkpoint(event.seq, &event.hash, at)?,
    };
    app.store.add_checkpoint(&checkpoint).await.map_err(|e| e.to_string())?;
    Ok(Some(checkpoint))
}
