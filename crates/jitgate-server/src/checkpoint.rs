//! Signed checkpoints of the audit log: every so often the head of the log (its last event's
//! sequence number and hash) is signed with the grant-signing key and kept. A log cut short,
//! or rewritten and re-hashed, no longer matches its checkpoints, and a checkpoint nobody could
//! sign without the key cannot be forged. `GET /v1/audit/verify` checks both.

use crate::app::{now, App};
use jitgate_core::audit::Checkpoint;
use jitgate_store::AuditFilter;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// The `[audit]` section of the server's config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// How often the log's head is signed (default 60s): events newer than the last
    /// checkpoint are protected by the hash chain only.
    pub checkpoint_every: Option<String>,
}

impl AuditConfig {
    pub fn checkpoint_interval(&self) -> Result<Duration, String> {
        match &self.checkpoint_every {
            None => Ok(Duration::from_secs(60)),
            Some(text) => jitgate_core::parse_duration(text)
                .map(|d| Duration::from_secs(d.0.max(1)))
                .map_err(|m| format!("audit.checkpoint_every: {m}")),
        }
    }
}

/// Sign the log's head every `every`, when it moved.
pub async fn run(app: Arc<App>, every: Duration) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut signed = 0i64;
    loop {
        interval.tick().await;
        match sign_head(&app, signed).await {
            Ok(seq) => signed = seq,
            Err(error) => tracing::warn!(%error, "cannot sign an audit checkpoint; retrying"),
        }
    }
}

/// Sign the head if it is past `signed`; the sequence number signed.
async fn sign_head(app: &App, signed: i64) -> Result<i64, String> {
    let head = app.store.audit_head().await.map_err(|e| e.to_string())?;
    if head <= signed {
        return Ok(signed);
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
        return Ok(signed);
    };
    let at = now();
    let signature = app.sign_checkpoint(event.seq, &event.hash, at)?;
    app.store
        .add_checkpoint(&Checkpoint {
            seq: event.seq,
            hash: event.hash.clone(),
            at,
            signature,
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(event.seq)
}
