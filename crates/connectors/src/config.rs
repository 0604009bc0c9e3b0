//! The server's config file entries that declare connectors (`[[providers]]`,
//! `[[notify.sinks]]`, `[[audit.sinks]]`), exactly as users write them, and the helpers every
//! kind reads its settings with. The registry (`registry.rs`) turns them into connectors.

use serde::Deserialize;
use std::path::PathBuf;

/// A provider, as the server's config file declares it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The name workflows use in `providers = [...]`.
    pub name: String,
    /// `webhook`, `exec` or `postgres` (any kind the registry knows).
    pub kind: String,
    /// For `webhook`: where to POST. For `postgres`: the admin connection URL
    /// (`postgres://USER:PASSWORD@HOST:PORT/DATABASE`), or better `url_env`.
    pub url: Option<String>,
    /// For `postgres`: the environment variable holding the admin connection URL.
    pub url_env: Option<String>,
    /// For `postgres`: the host and port grant holders connect to, when not the admin URL's.
    pub login_host: Option<String>,
    pub login_port: Option<u16>,
    /// For `exec`: the program and its arguments (`["/usr/local/bin/grant-hook", "--db", "app"]`).
    pub command: Option<Vec<String>>,
    /// The HMAC secret, or better `secret_env`: the environment variable holding it.
    pub secret: Option<String>,
    pub secret_env: Option<String>,
    /// How long one delivery may take.
    #[serde(default = "default_timeout")]
    pub timeout: String,
}

pub fn default_timeout() -> String {
    "5s".into()
}

/// The `[notify]` section of the server's config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Where people reach jitgate, for links in messages (default: the listen address).
    pub public_url: Option<String>,
    /// How long before a grant ends its holder is reminded (default 5m; grants shorter than
    /// twice this are not reminded).
    pub remind_before: Option<String>,
    #[serde(default)]
    pub sinks: Vec<NotifySinkConfig>,
}

/// One `[[notify.sinks]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySinkConfig {
    pub name: String,
    /// `slack` (an incoming webhook URL) or `webhook` (JSON, signed with HMAC).
    pub kind: String,
    pub url: Option<String>,
    pub url_env: Option<String>,
    /// For `webhook`: the HMAC secret, or the environment variable holding it.
    pub secret: Option<String>,
    pub secret_env: Option<String>,
    #[serde(default = "default_timeout")]
    pub timeout: String,
}

/// The `[audit]` section of the server's config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// How often the log's head is signed (default 60s): events newer than the last
    /// checkpoint are protected by the hash chain only.
    pub checkpoint_every: Option<String>,
    /// Denied checks are counted per checker, principal, resource and action, and recorded
    /// as one `check.denied` event per window of this length (default 60s).
    pub denied_checks_every: Option<String>,
    /// Keep events in the database this long (default: forever); older ones are moved into
    /// archived segments under `archive_dir`.
    pub retain: Option<String>,
    pub archive_dir: Option<PathBuf>,
    /// How often retention runs (default 1h).
    pub archive_every: Option<String>,
    #[serde(default)]
    pub sinks: Vec<AuditSinkConfig>,
}

/// One `[[audit.sinks]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSinkConfig {
    pub name: String,
    /// `file`, `stdout` or `http`.
    pub kind: String,
    /// `json` (default: the event as `GET /v1/audit` gives it, verifiable offline) or `ecs`.
    pub format: Option<String>,
    /// `file`: where; rotated to `PATH.1`, `PATH.2`, ... once it reaches `rotate_bytes`.
    pub path: Option<PathBuf>,
    pub rotate_bytes: Option<u64>,
    /// `file`: how many rotated files to keep (default 10).
    pub keep: Option<usize>,
    /// `http`: where to POST (or the environment variable holding it).
    pub url: Option<String>,
    pub url_env: Option<String>,
    /// `http`: sign each body with HMAC (`X-Jitgate-Signature`, as webhooks).
    pub secret: Option<String>,
    pub secret_env: Option<String>,
    /// `http`: the environment variable holding an `Authorization` header value
    /// (`Splunk <token>`, `Bearer <token>`).
    pub authorization_env: Option<String>,
    /// `http`: events per POST (default 100, at most 1000).
    pub batch: Option<u32>,
    pub timeout: Option<String>,
    /// `beginning` (default: the whole log, then what follows) or `now`.
    pub start: Option<String>,
    /// After the sink found the log rewound or forked under what it shipped (and holds): go on
    /// after this event of the log as it is now. The operator's step (docs/audit.md).
    pub resume_after: Option<i64>,
}

/// Names a setting in an error: `providers[2].url`, `notify.sinks[0].secret`, ...
pub type At<'a> = &'a dyn Fn(&str) -> String;

/// A setting given either in the config file (`KEY`) or by an environment variable it names
/// (`KEY_env`): exactly one of the two.
pub fn value_or_env(value: Option<&str>, var: Option<&str>, key: &str, at: At<'_>) -> Result<String, String> {
    match (value, var) {
        (Some(v), None) => Ok(v.to_string()),
        (None, Some(var)) => std::env::var(var).map_err(|_| {
            format!(
                "{}: the environment variable {var} is not set",
                at(&format!("{key}_env"))
            )
        }),
        _ => Err(format!("{}: set exactly one of {key} and {key}_env", at(key))),
    }
}

/// An HMAC secret from `secret` or `secret_env`, long enough to mean something.
pub fn hmac_secret(secret: Option<&str>, secret_env: Option<&str>, at: At<'_>) -> Result<Vec<u8>, String> {
    let secret = value_or_env(secret, secret_env, "secret", at)?;
    if secret.len() < 16 {
        return Err(format!("{}: use at least 16 characters", at("secret")));
    }
    Ok(secret.into_bytes())
}

/// An http(s) URL, or an error naming its key.
pub fn http_url(url: String, at: At<'_>) -> Result<String, String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(url)
    } else {
        Err(format!("{}: '{url}' is not an http(s) URL", at("url")))
    }
}

/// A duration setting (`30s`, `5m`), or an error naming its key.
pub fn duration(key: &str, text: &str) -> Result<std::time::Duration, String> {
    jitgate_service::auth::config::duration(key, text).map_err(|e| e.0)
}
