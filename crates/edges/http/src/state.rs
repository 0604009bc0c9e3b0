//! What the HTTP edge holds: the application service, and what only this edge needs (Slack's
//! signing secret for its buttons). Handlers take the part they use: `State<Arc<App>>` or
//! `State<Edge>`. (The web UI keeps its single sign-on itself: `ui::SsoSlot`.)

use axum::extract::FromRef;
use jitgate_service::App;
use std::sync::Arc;

#[derive(Clone)]
pub struct Edge {
    pub app: Arc<App>,
    /// Slack interactivity, when configured.
    pub slack: Option<Arc<crate::slack::Slack>>,
}

impl Edge {
    pub fn new(app: Arc<App>, slack: Option<crate::slack::Slack>) -> Self {
        Edge {
            app,
            slack: slack.map(Arc::new),
        }
    }
}

impl FromRef<Edge> for Arc<App> {
    fn from_ref(edge: &Edge) -> Arc<App> {
        edge.app.clone()
    }
}
