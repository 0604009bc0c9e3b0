//! Several replicas on one PostgreSQL database behave as one system: each keeps its memory
//! (the check index, callers waiting for decisions, API tokens) in step with what the others
//! commit, by following the store's change feed (LISTEN/NOTIFY). The database stays the
//! source of truth: after any gap in listening the whole index is loaded again.

use crate::app::App;
use jitgate_store::Change;
use std::sync::Arc;
use std::time::Duration;

/// How long to wait before listening again after the feed broke.
const RETRY: Duration = Duration::from_secs(1);

/// Follow other replicas' changes until the server stops. Returns at once on a store that
/// belongs to one process (SQLite).
pub async fn follow(app: Arc<App>) {
    loop {
        let mut feed = match app.store.change_feed().await {
            Ok(Some(feed)) => feed,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for other replicas' changes; retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        // Whatever changed while nobody listened is read from the database itself.
        app.resync().await;
        loop {
            let applied = match feed.next().await.map(|heard| heard.change) {
                Ok(Change::Request(id)) => app.refresh_request(&id).await,
                Ok(Change::Grant(id)) => app.refresh_grant(&id).await,
                Ok(Change::Tokens) => app.reload_tokens().await.map_err(Into::into),
                Ok(Change::Keys) => app.reload_keys().await,
                Ok(Change::Resync) => {
                    app.resync().await;
                    Ok(())
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lost the change feed; listening again");
                    break;
                }
            };
            if let Err(e) = applied {
                tracing::warn!(error = %e, "cannot apply another replica's change; reloading everything");
                app.resync().await;
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}
