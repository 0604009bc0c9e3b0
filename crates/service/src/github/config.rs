//! `[github]` in the server's config file (docs/github.md), checked before start.

use serde::Deserialize;
use std::path::PathBuf;

/// `[github]`: the GitHub App jitgate is.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GithubConfig {
    /// The environment variable holding the App's webhook secret (required).
    pub webhook_secret_env: Option<String>,
    /// The App's id (required to call GitHub).
    pub app_id: Option<u64>,
    /// The App's private key (PEM, RSA), to sign the App's JWTs (required to call GitHub).
    pub private_key_file: Option<PathBuf>,
    /// GitHub's REST API: `https://api.github.com`, or `https://HOST/api/v3` for GitHub
    /// Enterprise Server.
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// The groups a deployment's requester (`ci:OWNER/REPO`) is in, for `requesters` and Cedar.
    #[serde(default = "default_requester_groups")]
    pub requester_groups: Vec<String>,
    /// Owners (organisations or users) whose repositories may file requests; unset: any
    /// installation of the App.
    pub allowed_owners: Option<Vec<String>>,
    /// Comment on a deployment's pull requests with the approve command and a link.
    #[serde(default = "default_true")]
    pub announce: bool,
    /// A SCIM user attribute holding the user's GitHub login (for example
    /// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber` or a custom
    /// extension's); unset: only `github_user` in directory.toml maps logins to principals.
    pub scim_login_attribute: Option<String>,
}

fn default_api_url() -> String {
    "https://api.github.com".into()
}

fn default_requester_groups() -> Vec<String> {
    vec!["ci".into()]
}

fn default_true() -> bool {
    true
}

/// A `[github]` value that cannot be used, naming the key and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("github config: {0}")]
pub struct GithubConfigError(pub String);

/// `[github]`, checked: what the service needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubSettings {
    /// The webhook secret's bytes.
    pub webhook_secret: Vec<u8>,
    /// `api_url` without a trailing slash.
    pub api_url: String,
    pub requester_groups: Vec<String>,
    /// Lower-cased.
    pub allowed_owners: Option<Vec<String>>,
    pub announce: bool,
    pub scim_login_attribute: Option<String>,
}

impl GithubConfig {
    /// The settings, reading the secret from the environment through `env`.
    pub fn settings(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<GithubSettings, GithubConfigError> {
        let _ = env;
        Err(GithubConfigError("not yet built (issue #26)".into()))
    }
}
