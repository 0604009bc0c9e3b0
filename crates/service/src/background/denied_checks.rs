//! Denied checks are counted in memory per window and recorded as `check.denied` events at
//! the end of each (`[audit] denied_checks_every`); see `audit::denied`.

use crate::app::App;
use std::sync::Arc;
use std::time::Duration;

/// Record the window's denied checks every `every`.
pub async fn run(app: Arc<App>, every: Duration) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        interval.tick().await;
        app.flush_denied_checks().await;
    }
}
