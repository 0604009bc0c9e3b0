//! jitgate's HTTP server. Handlers are thin: they authenticate, parse, call the application
//! service (which runs the pure core against the store) and render.

pub mod api;
pub mod auth;
pub mod cli_login;
pub mod connections;
pub mod error;
pub mod forward_auth;
#[doc(hidden)]
pub mod fuzzing;
pub mod github;
pub mod input;
pub mod openapi;
pub mod routes;
pub mod scim;
pub mod slack;
pub mod state;
pub mod ui;

// The service's modules and the connectors' config entries, where the server's configuration
// and the CLI have always found them.
pub use jitgate_connectors::delivery;
pub use jitgate_service::{limits, metrics, signing};

/// The service's provisioning, with the `[[providers]]` entry of the config file.
pub mod provision {
    pub use jitgate_connectors::config::{hmac_secret, value_or_env, ProviderConfig};
    pub use jitgate_service::provision::*;
}

/// The service's notifications, with the `[notify]` section of the config file.
pub mod notify {
    pub use jitgate_connectors::config::{NotifyConfig, NotifySinkConfig};
    pub use jitgate_service::notify::*;
}

/// The service's audit trail, with the `[audit]` section of the config file.
pub mod audit {
    pub use jitgate_connectors::config::{AuditConfig, AuditSinkConfig};
    pub use jitgate_service::audit::*;
}

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use jitgate_service::app::{self, App};
use jitgate_service::background;

pub use error::ApiError;

/// Everything `jitgate serve` needs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub policy_dir: PathBuf,
    /// Shown with its password hidden; never log it any other way.
    pub database_url: jitgate_store::DatabaseUrl,
    /// How the store treats the database: the write bound (`--database-write-timeout`).
    pub store: jitgate_store::StoreSettings,
    pub auth: auth::config::AuthConfig,
    pub providers: Vec<provision::ProviderConfig>,
    pub notify: notify::NotifyConfig,
    pub slack: slack::SlackConfig,
    pub audit: audit::AuditConfig,
    pub ui: ui::UiConfig,
    pub limits: limits::LimitsConfig,
    pub connections: connections::ConnectionsConfig,
    /// `[forward_auth]`: who may assert users to `/v1/forward-auth` (see docs/identity.md).
    pub forward_auth: forward_auth::ForwardAuthConfig,
    /// `[scim]`: how provisioned users become principals (see docs/scim.md); `None` when the
    /// file has no such section.
    pub scim: Option<jitgate_service::scim::ScimConfig>,
    /// `[github]`: jitgate as a GitHub App (see docs/github.md); `None` when the file has no
    /// such section (`/v1/github/webhook` then answers 404).
    pub github: Option<github::GithubConfig>,
    /// `[cli]`: the single sign-on the CLI for people uses (see docs/cli.md); checked against
    /// `[[auth.oidc]]` at start.
    pub cli: cli_login::CliConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("policy {0}")]
    Policy(String),
    #[error("{0}")]
    Auth(#[from] auth::config::ConfigError),
    #[error("providers: {0}")]
    Providers(String),
    #[error("notifications: {0}")]
    Notify(String),
    #[error("{0}")]
    Audit(String),
    #[error("{0}")]
    Config(String),
    #[error("store: {0}")]
    Store(#[from] jitgate_store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

/// Run the server until SIGTERM or Ctrl-C.
pub async fn serve(config: ServerConfig) -> Result<(), ServeError> {
    let policy = jitgate_policy::Policy::load(&config.policy_dir).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        ServeError::Policy(format!(
            "{} is invalid:\n{}",
            config.policy_dir.display(),
            lines.join("\n")
        ))
    })?;
    // OpenID key sets and discovery documents: each fetch gives up after 10 s.
    let fetch = jitgate_connectors::fetch::HttpFetch::with_timeout(std::time::Duration::from_secs(10))
        .map_err(ServeError::Config)?;
    let login_options = config.cli.login_options(&config.auth).map_err(ServeError::Config)?;
    let authenticator = auth::Authenticator::new(&config.auth, Arc::new(fetch)).await?;
    // Every connector (providers, notification and audit sinks) is built from its config in
    // the one registry of kinds.
    let registry = jitgate_connectors::Registry::standard();
    let providers = registry.providers(&config.providers).map_err(ServeError::Providers)?;
    providers.check_policy(&policy).map_err(ServeError::Providers)?;
    let notifier = registry
        .notifier(&config.notify, config.listen)
        .map_err(ServeError::Notify)?;
    let slack = slack::Slack::new(&config.slack).map_err(ServeError::Notify)?;
    let audit = registry.audit(&config.audit).map_err(ServeError::Audit)?;
    let connections = config.connections.settings().map_err(ServeError::Config)?;
    let github = github::app(config.github.as_ref(), &|name| std::env::var(name).ok()).map_err(ServeError::Config)?;
    let store = jitgate_store::open_url_with(&config.database_url, &config.store).await?;
    let app = Arc::new(App::new(store, policy, authenticator, providers, notifier).await?);
    let edge = state::Edge::new(app.clone(), slack).with_login_options(login_options);
    app.caller_limits().configure(config.limits.clone());
    app.configure_forward_auth(config.forward_auth.clone())
        .map_err(|e| ServeError::Config(e.to_string()))?;
    app.set_scim_settings(scim_settings(config.scim.as_ref(), &config.auth)?);
    let github_worker = github.map(|(settings, client)| {
        tracing::info!(api_url = %settings.api_url, "GitHub App configured: /v1/github/webhook takes deliveries");
        app.configure_github(settings, Arc::new(client));
        tokio::spawn(jitgate_service::github::run(app.clone()))
    });
    background::policy::record_loaded(&app, &config.policy_dir).await;
    let public_url = app.notifier().public_url().to_string();
    ui::SECURE_COOKIES.store(public_url.starts_with("https://"), std::sync::atomic::Ordering::Relaxed);
    let edge = edge.with_cookie_domain(
        config
            .ui
            .session_scope(&public_url)
            .map_err(ServeError::Config)?
            .domain(),
    );
    let sso = match &config.ui.sso {
        Some(sso) => Some(
            ui::Sso::new(sso, &config.auth.oidc, &public_url)
                .await
                .map_err(ServeError::Audit)?,
        ),
        None => None,
    };
    let worker = tokio::spawn(background::expiry::run(app.clone()));
    let provisioner = tokio::spawn(provision::run(app.clone()));
    notify::start_cursors(&app).await?;
    let notifications = tokio::spawn(notify::run(app.clone()));
    let watcher = tokio::spawn(background::policy::watch(app.clone(), config.policy_dir.clone()));
    let follower = tokio::spawn(background::replicas::follow(app.clone()));
    let divergence = tokio::spawn(background::divergence::watch(app.clone()));
    let sinks: Vec<Arc<audit::sinks::Sink>> = audit.sinks.into_iter().map(Arc::new).collect();
    audit::sinks::start_cursors(&app, &sinks).await?;
    let mut audit_tasks = vec![
        tokio::spawn(background::checkpoints::run(app.clone(), audit.checkpoint_every)),
        tokio::spawn(background::denied_checks::run(app.clone(), audit.denied_checks_every)),
    ];
    audit_tasks.extend(
        sinks
            .into_iter()
            .map(|sink| tokio::spawn(audit::sinks::run(app.clone(), sink))),
    );
    if let Some(retention) = audit.retention {
        audit_tasks.push(tokio::spawn(audit::retention::run(app.clone(), retention)));
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.listen,
            source,
        })?;
    tracing::info!(listen = %config.listen, policy = %config.policy_dir.display(), database = %config.database_url, "jitgate serving");
    connections::warn_if_too_few_files(&connections);
    connections::serve(listener, routes::router(edge, sso), connections, shutdown_signal()).await;
    worker.abort();
    provisioner.abort();
    notifications.abort();
    watcher.abort();
    follower.abort();
    divergence.abort();
    if let Some(task) = github_worker {
        task.abort();
    }
    for task in audit_tasks {
        task.abort();
    }
    // Denied checks counted since the last window are not lost at a clean stop.
    app.flush_denied_checks().await;
    Ok(())
}

/// `[scim]` checked against the OIDC issuers. Without the section the defaults apply; an
/// issuer without a principal prefix is then only a warning, and every provisioned user's
/// principal is refused when it could be that issuer's (see docs/scim.md).
fn scim_settings(
    config: Option<&jitgate_service::scim::ScimConfig>,
    auth: &auth::config::AuthConfig,
) -> Result<jitgate_service::scim::ScimSettings, ServeError> {
    match config {
        Some(config) => config.settings(auth).map_err(|e| ServeError::Config(e.to_string())),
        None => {
            let defaults = jitgate_service::scim::ScimConfig::default();
            match defaults.settings(auth) {
                Ok(settings) => Ok(settings),
                Err(e) => {
                    tracing::warn!(error = %e, "SCIM provisioning is unusable until [scim] says how provisioned users relate to the OIDC issuers");
                    Ok(jitgate_service::scim::ScimSettings {
                        principal_attribute: defaults.principal_attribute,
                        principal_prefix: String::new(),
                        // An issuer without a prefix may name anyone: every name is foreign.
                        foreign_prefixes: vec![String::new()],
                    })
                }
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
