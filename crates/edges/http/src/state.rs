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
    /// Where the web UI's session cookie is sent (`[ui] cookie_domain`).
    pub session: crate::ui::SessionScope,
}

impl Edge {
    pub fn new(app: Arc<App>, slack: Option<crate::slack::Slack>) -> Self {
        Edge {
            app,
            slack: slack.map(Arc::new),
            session: crate::ui::SessionScope::default(),
        }
    }

    /// Send the session cookie as `session` says.
    pub fn with_session(mut self, session: crate::ui::SessionScope) -> Self {
        self.session = session;
        self
    }
}

impl FromRef<Edge> for crate::ui::SessionScope {
    fn from_ref(edge: &Edge) -> crate::ui::SessionScope {
        edge.session.clone()
    }
}

impl FromRef<Edge> for Arc<App> {
    fn from_ref(edge: &Edge) -> Arc<App> {
        edge.app.clone()
    }
}
