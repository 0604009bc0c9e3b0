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
    /// The domain the web UI's session cookie is sent to (`[ui] cookie_domain`, checked);
    /// `None`: jitgate's own host.
    pub cookie_domain: Option<Arc<str>>,
    /// How people sign in from the CLI (`[cli]`, checked at start): `GET /v1/login/options`.
    pub login_options: Arc<crate::cli_login::LoginOptions>,
}

impl Edge {
    pub fn new(app: Arc<App>, slack: Option<crate::slack::Slack>) -> Self {
        Edge {
            app,
            slack: slack.map(Arc::new),
            cookie_domain: None,
            login_options: Arc::new(crate::cli_login::LoginOptions::default()),
        }
    }

    /// Answer `GET /v1/login/options` with `options` (from `CliConfig::login_options`).
    pub fn with_login_options(mut self, options: crate::cli_login::LoginOptions) -> Self {
        self.login_options = Arc::new(options);
        self
    }

    /// Send the session cookie to `domain` (checked by `UiConfig::session_scope`).
    pub fn with_cookie_domain(mut self, domain: Option<Arc<str>>) -> Self {
        self.cookie_domain = domain;
        self
    }
}

impl FromRef<Edge> for Arc<App> {
    fn from_ref(edge: &Edge) -> Arc<App> {
        edge.app.clone()
    }
}
