//! Signed checkpoints of the audit log's head, taken every so often (`[audit]
//! checkpoint_every`); what a checkpoint is and how it is signed is `audit::checkpoint`.

use crate::app::App;
use std::sync::Arc;
use std::time::Duration;

/// Sign the log's head every `every`, when it moved.
pub async fn run(app: Arc<App>, every: Duration) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut signed = 0i64;
    loop {
        interval.tick().await;
        match app.sign_audit_head(signed).await {
            Ok(Some(checkpoint)) => signed = checkpoint.seq,
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "cannot sign an audit checkpoint; retrying"),
        }
    }
}
