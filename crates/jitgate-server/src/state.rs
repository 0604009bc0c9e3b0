//! What the HTTP edge holds: the application service, and what only this edge needs (Slack's
//! signing secret for its buttons, single sign-on for the web UI). Handlers take the part they
//! use: `State<Arc<App>>` or `State<Edge>`.

use axum::extract::FromRef;
use jitgate_service::App;
use std::sync::{Arc, OnceLock};

#[derive(Clone)]
pub struct Edge {
    pub app: Arc<App>,
    /// Slack interactivity, when configured.
    pub slack: Option<Arc<crate::slack::Slack>>,
    /// Single sign-on for the web UI, when configured (set once, at start).
    pub sso: Arc<OnceLock<crate::ui::Sso>>,
}

impl Edge {
    pub fn new(app: Arc<App>, slack: Option<crate::slack::Slack>) -> Self {
        Edge {
            app,
            slack: slack.map(Arc::new),
            sso: Arc::new(OnceLock::new()),
        }
    }

    /// Single sign-on for the web UI, if configured.
    pub fn sso(&self) -> Option<&crate::ui::Sso> {
        self.sso.get()
    }
}

impl FromRef<Edge> for Arc<App> {
    fn from_ref(edge: &Edge) -> Arc<App> {
        edge.app.clone()
    }
}
