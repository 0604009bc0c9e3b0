//! Saying loudly that the database's history diverged from what this replica saw (a failover
//! to a standby that lacked acknowledged work, or a second writable primary): the store then
//! refuses every write (503) and the replica follower stops reading changes back, until an
//! operator accepts the history (`POST /v1/admin/database/accept-history`). Here: the gauge
//! `jitgate_database_history_diverged` and an error line every `REPEAT` while it lasts.

use crate::app::App;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the store is asked.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// How often the error is said again while the divergence lasts.
pub const REPEAT: Duration = Duration::from_secs(30);

pub async fn watch(app: Arc<App>) {
    let mut interval = tokio::time::interval(LOOK_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut said: Option<Instant> = None;
    loop {
        interval.tick().await;
        match app.store.divergence() {
            Some(why) => {
                app.metrics.database_history_diverged.set(1);
                if said.is_none_or(|at| at.elapsed() >= REPEAT) {
                    said = Some(Instant::now());
                    tracing::error!(
                        divergence = %why,
                        "the database's history diverged from what this replica saw: writes are refused and checks answered from memory until an operator accepts the history (jitgate database accept-history; docs/deploy.md, \"Failover\")"
                    );
                }
            }
            None => {
                app.metrics.database_history_diverged.set(0);
                if said.take().is_some() {
                    tracing::info!("the database's history was accepted; writing again");
                }
            }
        }
    }
}
