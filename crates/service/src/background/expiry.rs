//! The background worker: records expiry of pending requests and grants in the store (with
//! their audit events) and drops ended grants from the check index. Checks never depend on
//! it: they judge expiry against the clock themselves.

use crate::app::App;
use crate::clock::now;
use std::sync::Arc;
use std::time::Duration;

/// How often the worker looks for due work.
pub const TICK: Duration = Duration::from_millis(250);
const BATCH: u32 = 500;

pub async fn run(app: Arc<App>) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut outage = crate::outage::Outage::default();
    loop {
        interval.tick().await;
        // Drain everything due before sleeping again.
        loop {
            match app.settle_due(now(), BATCH).await {
                Ok(n) if n as u32 >= BATCH => continue,
                Ok(_) => {
                    outage.ended("expiry worker settles due requests again");
                    break;
                }
                Err(e) => {
                    outage.failed(&e, "expiry worker could not settle due requests; retrying");
                    break;
                }
            }
        }
    }
}
