//! A small blocking HTTP client for the jitgate API.

use crate::Output;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{message} ({code}, HTTP {status})")]
    Api { status: u16, code: String, message: String },
    #[error("cannot reach {url}: {source}")]
    Transport { url: String, source: reqwest::Error },
    #[error("no token: set JITGATE_TOKEN (or JITGATE_TOKEN_COMMAND), or pass --token")]
    NoToken,
    #[error("{0}")]
    Other(String),
}

/// Keeps a stored single sign-on credential fresh while one command runs: a wait for approval
/// can last far longer than an ID token (Keycloak's are 5 minutes), and every request of it,
/// the cancel and the end of a grant included, must still be accepted.
pub trait CredentialRefresh: Send + Sync {
    /// The bearer to send from now on, if it changed: refreshed first when the credential
    /// expires within the refresh margin, or when `refused` (the server just refused it, so
    /// the clocks disagree or it was revoked) whatever its expiry says. `None`: keep sending the
    /// current one (nothing was due, or there is nothing to refresh with).
    fn fresh_bearer(&self, refused: bool) -> Result<Option<String>, ClientError>;
}

#[derive(Clone)]
pub struct Client {
    base: String,
    /// The bearer token; replaced when `token_command` gives a fresh one.
    token: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    /// A shell command that prints a fresh token, run when the server refuses the current one
    /// (a CI job's OIDC token that expired while a gate waited for hours).
    token_command: Option<String>,
    http: reqwest::blocking::Client,
    pub output: Output,
    /// What to tell a caller who has no credential at all: which profile to sign in to.
    not_signed_in: Option<String>,
    /// Refreshes the profile's single sign-on credential before it expires and once on a
    /// 401. Never set for shell completion (see `people::connect_for_completion`).
    sso: Option<std::sync::Arc<dyn CredentialRefresh>>,
}

impl Client {
    pub fn new(base: &str, token: Option<String>, token_command: Option<String>, output: Output) -> Self {
        let http = reqwest::blocking::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .unwrap_or_else(|_| reqwest::blocking::Client::new());
        Client {
            base: base.trim_end_matches('/').to_string(),
            token: std::sync::Arc::new(std::sync::Mutex::new(token)),
            token_command: token_command.filter(|c| !c.trim().is_empty()),
            http,
            output,
            not_signed_in: None,
            sso: None,
        }
    }

    /// Refresh the bearer through `refresh` (a stored single sign-on credential).
    pub fn set_credential_refresh(&mut self, refresh: std::sync::Arc<dyn CredentialRefresh>) {
        self.sso = Some(refresh);
    }

    /// Give up on any call after `timeout` (shell completion must not hang).
    pub fn set_timeout(&mut self, timeout: std::time::Duration) {
        if let Ok(http) = reqwest::blocking::Client::builder().timeout(timeout).build() {
            self.http = http;
        }
    }

    /// No credential was found for `profile`: say how to sign in rather than only "no token".
    pub fn set_not_signed_in(&mut self, profile: &str, url: &str) {
        let login = if profile == crate::profiles::DEFAULT_PROFILE {
            format!("jitgate login --url {url} --token -")
        } else {
            format!("jitgate login --profile {profile} --url {url} --token -")
        };
        self.not_signed_in = Some(format!(
            "profile {profile}: not signed in: run {login} (or set JITGATE_TOKEN)"
        ));
    }

    fn current_token(&self) -> Option<String> {
        self.token.lock().ok().and_then(|t| t.clone())
    }

    /// Run the token command and keep what it prints as the token.
    fn refresh_token(&self) -> Result<String, ClientError> {
        let command = match (self.token_command.as_deref(), &self.not_signed_in) {
            (Some(command), _) => command,
            (None, Some(message)) => return Err(ClientError::Other(message.clone())),
            (None, None) => return Err(ClientError::NoToken),
        };
        let out = std::process::Command::new("sh")
            .args(["-c", command])
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| ClientError::Other(format!("--token-command: cannot run it: {e}")))?;
        let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || token.is_empty() {
            return Err(ClientError::Other(format!(
                "--token-command: it exited with {} and printed {} bytes; it must print a token",
                out.status,
                token.len()
            )));
        }
        if let Ok(mut held) = self.token.lock() {
            *held = Some(token.clone());
        }
        Ok(token)
    }

    fn keep_token(&self, token: &str) {
        if let Ok(mut held) = self.token.lock() {
            *held = Some(token.to_string());
        }
    }

    /// Send a request built by `build`; if the server refuses the token and a token command is
    /// set, get a fresh token and try once more. A single sign-on credential is refreshed
    /// before it expires, and once when the server refuses it, then the request tried once more.
    fn send(&self, build: impl Fn() -> reqwest::blocking::RequestBuilder, url: &str) -> Result<Value, ClientError> {
        if let Some(sso) = &self.sso {
            if let Some(fresh) = sso.fresh_bearer(false)? {
                self.keep_token(&fresh);
            }
        }
        let token = match self.current_token() {
            Some(token) => token,
            None => self.refresh_token()?,
        };
        match self.send_once(build().bearer_auth(&token), url) {
            Err(ClientError::Api { status: 401, .. }) if self.token_command.is_some() => {
                let fresh = self.refresh_token()?;
                self.send_once(build().bearer_auth(fresh), url)
            }
            Err(refused @ ClientError::Api { status: 401, .. }) => match &self.sso {
                Some(sso) => match sso.fresh_bearer(true)? {
                    Some(fresh) if fresh != token => {
                        self.keep_token(&fresh);
                        self.send_once(build().bearer_auth(fresh), url)
                    }
                    // Nothing new to send: the server's refusal stands.
                    _ => Err(refused),
                },
                None => Err(refused),
            },
            other => other,
        }
    }

    fn send_once(&self, builder: reqwest::blocking::RequestBuilder, url: &str) -> Result<Value, ClientError> {
        let response = builder.send().map_err(|source| ClientError::Transport {
            url: url.to_string(),
            source,
        })?;
        let status = response.status();
        let text = response.text().map_err(|source| ClientError::Transport {
            url: url.to_string(),
            source,
        })?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok(body);
        }
        let code = body["error"]["code"].as_str().unwrap_or("unknown").to_string();
        let message = body["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| body.to_string());
        Err(ClientError::Api {
            status: status.as_u16(),
            code,
            message,
        })
    }

    /// The server's base URL, for links people can follow.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        self.send(|| self.http.get(&url).query(query), &url)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        self.send(|| self.http.post(&url).json(body), &url)
    }
}
