//! GitHub's REST API as the jitgate App's installations (issue #26, docs/github.md): the
//! [`GithubApi`] the service's GitHub worker makes its queued calls through.
//!
//! Authentication is GitHub's App flow: an App JWT (RS256, signed with the App's private key,
//! `iss` the App id, `iat` a minute in the past against clock drift, `exp` nine minutes after
//! now, inside GitHub's ten-minute limit) buys an installation access token
//! (`POST /app/installations/{id}/access_tokens`), which every call then carries. Tokens are
//! cached per installation until five minutes before their `expires_at`; a call answered 401
//! drops its token (revoked, or the clock was wrong) and is made once more with a new one.
//!
//! Every path is joined to the configured `api_url` (`https://api.github.com`, or
//! `https://HOST/api/v3` for GitHub Enterprise Server): the client never follows a URL GitHub
//! or a webhook gave it. Neither tokens nor the key are ever logged or put in an error.

use async_trait::async_trait;
use chrono::{DateTime, Duration as TimeDelta, Utc};
use jitgate_core::github::NewGithubCall;
use jitgate_core::Timestamp;
use jitgate_service::connectors::{Failure, GithubApi};
use parking_lot::Mutex;
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How long one call to GitHub may take before it counts as failed (and is retried).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The App JWT's `iat`: this far in the past, as GitHub advises against clock drift.
pub const JWT_BACKDATE_SECS: i64 = 60;
/// The App JWT's `exp`: this far after now (nine minutes after `iat`... plus the backdate, ten
/// at most, GitHub's limit).
pub const JWT_LIFETIME_SECS: i64 = 540;
/// A cached installation token is used until this long before its `expires_at`, so that no
/// call starts with a token about to lapse.
pub const TOKEN_MARGIN_SECS: i64 = 300;
/// The most of a GitHub answer read: GitHub's answers to these calls are a few KiB; an
/// `api_url` pointing somewhere else must not make jitgate read without end.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// After a failed attempt to buy an installation's token, the calls for that installation that
/// were waiting on it fail at once with the same error for this long instead of each trying
/// again: against a GitHub that hangs, twenty queued calls would otherwise wait ten seconds
/// each, one after the other, and outlive their lease.
pub const FAILED_MINT_MEMO_SECS: i64 = 5;
/// GitHub's REST API version jitgate was written against.
pub const API_VERSION: &str = "2022-11-28";

/// The clock the client reads (a test sets its own).
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// An installation access token: never shown (its `Debug` hides it).
#[derive(Clone)]
struct InstallationToken {
    token: String,
    /// Use until then; GitHub's `expires_at` less [`TOKEN_MARGIN_SECS`].
    use_until: Timestamp,
}

impl std::fmt::Debug for InstallationToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstallationToken")
            .field("token", &"<hidden>")
            .field("use_until", &self.use_until)
            .finish()
    }
}

/// The App JWT's claims (GitHub reads these three).
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AppClaims {
    pub iat: i64,
    pub exp: i64,
    /// The App id, as a string.
    pub iss: String,
}

/// The client: the App's identity and the installation tokens it holds.
pub struct GithubClient {
    app_id: u64,
    key: jsonwebtoken::EncodingKey,
    api_url: String,
    http: reqwest::Client,
    clock: Clock,
    tokens: Mutex<HashMap<i64, InstallationToken>>,
    /// Per installation, one token bought at a time: calls starting together share the
    /// token the first buys, or its failure (see [`FAILED_MINT_MEMO_SECS`]).
    minting: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<LastMint>>>>,
}

/// How the last attempt to buy an installation's token failed, when it did.
#[derive(Default)]
struct LastMint {
    failed: Option<(Timestamp, String)>,
}

impl LastMint {
    /// The failure of an attempt made less than [`FAILED_MINT_MEMO_SECS`] ago, again.
    fn recent_failure(&self, now: Timestamp) -> Option<Failure> {
        let (at, message) = self.failed.as_ref()?;
        (now - *at < TimeDelta::seconds(FAILED_MINT_MEMO_SECS)).then(|| {
            // Only a fresh attempt may refuse a call for good: a failure shared from another
            // call's attempt is always tried again.
            Failure::Retry(format!("{message} (a moment ago, for another call)"))
        })
    }
}

impl std::fmt::Debug for GithubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubClient")
            .field("app_id", &self.app_id)
            .field("api_url", &self.api_url)
            .field("key", &"<hidden>")
            .finish_non_exhaustive()
    }
}

impl GithubClient {
    /// A client for App `app_id` with its private key (PEM: PKCS#1 `RSA PRIVATE KEY`, as
    /// GitHub gives it, or PKCS#8) against `api_url` (checked by `GithubConfig::settings`; a
    /// trailing slash is dropped). `http` should not follow redirects.
    pub fn new(app_id: u64, private_key_pem: &[u8], api_url: &str, http: reqwest::Client) -> Result<Self, String> {
        if app_id == 0 {
            return Err("github.app_id: 0 is no App's id; it is on the App's settings page (About: App ID)".into());
        }
        let key = rsa_signing_key(private_key_pem).map_err(|why| {
            format!("github.private_key_file: {why}; download the App's key from its settings (Private keys: Generate a private key)")
        })?;
        let client = GithubClient {
            app_id,
            key,
            api_url: api_url.trim_end_matches('/').to_string(),
            http,
            clock: Arc::new(jitgate_service::now),
            tokens: Mutex::new(HashMap::new()),
            minting: Mutex::new(HashMap::new()),
        };
        // A key that cannot sign (a truncated file, an EC key in an RSA frame) is found now,
        // at start, not at the first deployment.
        client.app_jwt()?;
        Ok(client)
    }

    /// The same client reading `clock` (tests).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// A new App JWT: RS256, `iss` the App id, valid from a minute ago for ten minutes.
    pub fn app_jwt(&self) -> Result<String, String> {
        let now = (self.clock)().timestamp();
        let claims = AppClaims {
            iat: now - JWT_BACKDATE_SECS,
            exp: now + JWT_LIFETIME_SECS,
            iss: self.app_id.to_string(),
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &self.key,
        )
        .map_err(|e| format!("cannot sign the App's JWT with github.private_key_file: {e}"))
    }

    /// `api_url` + `path`; `path` must be an absolute path below it, as the worker queues
    /// them: no scheme or host, no `..`, no query, no control or non-ASCII character. Anything
    /// else is refused, never sent.
    pub fn url(&self, path: &str) -> Result<String, Failure> {
        let refuse =
            |why: &str| Failure::Refused(format!("path {:?} {why}; not sent", path.escape_debug().to_string()));
        if !path.starts_with('/') || path.starts_with("//") {
            return Err(refuse("does not start with a single /"));
        }
        if !path.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(refuse("holds a space, a control or a non-ASCII character"));
        }
        if path.contains(['?', '#', '\\', '@']) || path.contains("//") {
            return Err(refuse("holds a query, fragment, backslash, @ or an empty segment"));
        }
        if path.split('/').any(|segment| segment == ".." || segment == ".") {
            return Err(refuse("holds a . or .. segment"));
        }
        // Encoded dots and slashes would be decoded to the same by some servers.
        if path.to_ascii_lowercase().contains("%2e") || path.to_ascii_lowercase().contains("%2f") {
            return Err(refuse("holds an encoded dot or slash"));
        }
        Ok(format!("{}{path}", self.api_url))
    }

    /// The installation's token: the cached one while it has more than five minutes left,
    /// else a new one. `Retry` when GitHub cannot sell one now, or does not take the App's
    /// JWT (a clock gone wrong, a key replaced in the App's settings: an operator fixes it and
    /// the queued calls go through); `Refused` when the installation is gone.
    async fn token(&self, installation_id: i64) -> Result<InstallationToken, Failure> {
        if let Some(token) = self.cached(installation_id) {
            return Ok(token);
        }
        let slot = self.minting.lock().entry(installation_id).or_default().clone();
        let mut last = slot.lock().await;
        if let Some(token) = self.cached(installation_id) {
            return Ok(token);
        }
        if let Some(failure) = last.recent_failure((self.clock)()) {
            return Err(failure);
        }
        let minted = self.mint(installation_id).await;
        last.failed = match &minted {
            Ok(_) => None,
            Err(failure) => Some(((self.clock)(), failure.message().to_string())),
        };
        minted
    }

    /// Buy a token for the installation with a new App JWT, and cache it.
    async fn mint(&self, installation_id: i64) -> Result<InstallationToken, Failure> {
        let jwt = self.app_jwt().map_err(Failure::Retry)?;
        let url = self.url(&format!("/app/installations/{installation_id}/access_tokens"))?;
        let body = match self.send(Method::POST, &url, &jwt, None).await {
            Ok(body) => body,
            Err((Some(StatusCode::UNAUTHORIZED), failure)) => {
                let why = failure.message();
                tracing::error!(app_id = self.app_id, why = %why, "GitHub does not take the App's JWT: check github.app_id, github.private_key_file and this host's clock");
                return Err(Failure::Retry(format!("the App could not authenticate: {why}")));
            }
            Err((_, failure)) => return Err(failure),
        };
        #[derive(Deserialize)]
        struct Minted {
            token: String,
            expires_at: Option<String>,
        }
        let minted: Minted = body
            .and_then(|value| serde_json::from_value(value).ok())
            .ok_or_else(|| Failure::Retry(format!("{url}: the answer holds no token")))?;
        let now = (self.clock)();
        let expires_at = minted
            .expires_at
            .as_deref()
            .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
            .map(|at| at.with_timezone(&Utc));
        let token = InstallationToken {
            token: minted.token,
            // Without a readable expiry the token serves this call only.
            use_until: expires_at.map_or(now, |at| at - TimeDelta::seconds(TOKEN_MARGIN_SECS)),
        };
        if token.use_until > now {
            self.tokens.lock().insert(installation_id, token.clone());
        }
        Ok(token)
    }

    fn cached(&self, installation_id: i64) -> Option<InstallationToken> {
        let now = (self.clock)();
        let mut tokens = self.tokens.lock();
        match tokens.get(&installation_id) {
            Some(token) if token.use_until > now => Some(token.clone()),
            Some(_) => {
                tokens.remove(&installation_id);
                None
            }
            None => None,
        }
    }

    /// Forget `token` for the installation (GitHub answered 401 to it), unless another call
    /// already replaced it.
    fn drop_token(&self, installation_id: i64, token: &InstallationToken) {
        let mut tokens = self.tokens.lock();
        if tokens
            .get(&installation_id)
            .is_some_and(|held| held.token == token.token)
        {
            tokens.remove(&installation_id);
        }
    }

    /// One HTTP exchange with GitHub's headers and `bearer`; the JSON answer of a 2xx (`None`
    /// when empty), else the failure as [`classify`] says, with the status GitHub answered.
    async fn send(
        &self,
        method: Method,
        url: &str,
        bearer: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>, (Option<StatusCode>, Failure)> {
        let unanswered = |failure: Failure| (None, failure);
        let mut request = self
            .http
            .request(method.clone(), url)
            .timeout(CALL_TIMEOUT)
            .header(ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", API_VERSION)
            .header(USER_AGENT, concat!("jitgate/", env!("CARGO_PKG_VERSION")))
            .header(AUTHORIZATION, format!("Bearer {bearer}"));
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body.to_string());
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| unanswered(Failure::Retry(format!("{method} {url}: {}", without_url(&e)))))?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut bytes = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                        if status.is_success() {
                            // GitHub has acted: its answer is not needed, and making the call
                            // again would act twice (a second comment).
                            tracing::warn!(%method, %url, %status, "GitHub's answer is larger than expected; taken as done");
                            return Ok(None);
                        }
                        return Err(unanswered(Failure::Retry(format!(
                            "{method} {url}: the answer is larger than {MAX_ANSWER_BYTES} bytes; is github.api_url GitHub's API?"
                        ))));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) if status.is_success() => {
                    tracing::warn!(%method, %url, %status, error = %without_url(&e), "GitHub's answer broke off after it succeeded; taken as done");
                    return Ok(None);
                }
                Err(e) => {
                    return Err(unanswered(Failure::Retry(format!(
                        "{method} {url}: the answer stopped: {}",
                        without_url(&e)
                    ))))
                }
            }
        }
        if status.is_success() {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(None);
            }
            // A success is a success even when its body is not JSON: making the call again
            // would act twice.
            return Ok(serde_json::from_slice(&bytes).map(Some).unwrap_or_else(|e| {
                tracing::warn!(%method, %url, %status, error = %e, "GitHub answered a success with a body that is not JSON; taken as done");
                None
            }));
        }
        Err((
            Some(status),
            classify(status, &headers, &format!("{method} {url}"), &bytes),
        ))
    }
}

/// The App's key for `jsonwebtoken`: PEM holding an RSA private key, PKCS#1
/// (`BEGIN RSA PRIVATE KEY`, the file GitHub gives) or PKCS#8 (`BEGIN PRIVATE KEY`, what
/// `openssl pkcs8 -topk8` makes of it), parsed here so that a wrong file fails at start.
fn rsa_signing_key(pem: &[u8]) -> Result<jsonwebtoken::EncodingKey, String> {
    use base64::Engine;
    use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
    use rsa::pkcs8::DecodePrivateKey;
    let text = std::str::from_utf8(pem).map_err(|_| "is not PEM text".to_string())?;
    let mut label = None;
    let mut body = String::new();
    for line in text.lines().map(str::trim) {
        if let Some(begin) = line.strip_prefix("-----BEGIN ").and_then(|l| l.strip_suffix("-----")) {
            if label.is_some() {
                return Err("holds more than one PEM block".into());
            }
            label = Some(begin.to_string());
        } else if line.starts_with("-----END ") {
            break;
        } else if label.is_some() {
            body.push_str(line);
        }
    }
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.as_bytes())
        .map_err(|_| "is not PEM: its body is not base64".to_string())?;
    let key = match label.as_deref() {
        Some("RSA PRIVATE KEY") => {
            rsa::RsaPrivateKey::from_pkcs1_der(&der).map_err(|e| format!("is not an RSA private key: {e}"))?
        }
        Some("PRIVATE KEY") => {
            rsa::RsaPrivateKey::from_pkcs8_der(&der).map_err(|e| format!("is not an RSA private key: {e}"))?
        }
        Some(other) => return Err(format!("holds a {other}, not an RSA private key")),
        None => return Err("is not PEM (no -----BEGIN line)".into()),
    };
    let pkcs1 = key
        .to_pkcs1_der()
        .map_err(|e| format!("cannot be encoded again: {e}"))?;
    Ok(jsonwebtoken::EncodingKey::from_rsa_der(pkcs1.as_bytes()))
}

/// A reqwest error without the URL it carries (the URL is in the message already).
fn without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "failed"
    };
    let detail = std::error::Error::source(error)
        .map(ToString::to_string)
        .unwrap_or_default();
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}

/// What a failed answer means for the call: `Retry` when trying later may work (5xx, 408,
/// 429, and a 403 that is GitHub's rate limit: `x-ratelimit-remaining: 0` or a
/// `retry-after`), `Refused` for any other answer (GitHub will not take this call however often
/// it is made: a run already decided, a permission the App lacks, a redirect). The message
/// says what was called, the status and GitHub's own `message`, shortened and escaped.
pub fn classify(status: StatusCode, headers: &HeaderMap, what: &str, body: &[u8]) -> Failure {
    let github_says = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
        .map(|m| {
            let shown: String = m.chars().take(300).collect();
            format!(": {}", shown.escape_debug())
        })
        .unwrap_or_default();
    let message = format!("{what} answered {}{github_says}", status.as_u16());
    // GitHub's secondary rate limits may come as a 403 (or 429) with neither header, only
    // the message ("You have exceeded a secondary rate limit"): a wait, not a refusal.
    let rate_limited = status == StatusCode::FORBIDDEN
        && (headers
            .get("x-ratelimit-remaining")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() == "0")
            || headers.contains_key("retry-after")
            || github_says.to_ascii_lowercase().contains("rate limit"));
    if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || rate_limited
    {
        Failure::Retry(message)
    } else {
        Failure::Refused(message)
    }
}

#[async_trait]
impl GithubApi for GithubClient {
    async fn call(&self, call: &NewGithubCall) -> Result<Option<Value>, Failure> {
        let method = Method::from_bytes(call.method.as_bytes())
            .ok()
            .filter(|m| [Method::GET, Method::POST, Method::PATCH, Method::PUT, Method::DELETE].contains(m))
            .ok_or_else(|| {
                Failure::Refused(format!(
                    "method {:?} is not one jitgate makes; not sent",
                    call.method.escape_debug().to_string()
                ))
            })?;
        let url = self.url(&call.path)?;
        let body = (method != Method::GET && method != Method::DELETE).then_some(&call.body);
        let token = self.token(call.installation_id).await?;
        match self.send(method.clone(), &url, &token.token, body).await {
            Err((Some(StatusCode::UNAUTHORIZED), _)) => {
                // Revoked or expired before its time: once more with a new token.
                self.drop_token(call.installation_id, &token);
                let token = self.token(call.installation_id).await?;
                match self.send(method, &url, &token.token, body).await {
                    // GitHub may not take a token for a few seconds after selling it.
                    Err((Some(StatusCode::UNAUTHORIZED), failure)) => {
                        Err(Failure::Retry(failure.message().to_string()))
                    }
                    answer => answer.map_err(|(_, failure)| failure),
                }
            }
            answer => answer.map_err(|(_, failure)| failure),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use jitgate_core::github::CallPurpose;
    use reqwest::header::HeaderValue;
    use serde_json::json;
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::OnceLock;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One RSA key pair for every test (2048 bits, as GitHub's): private PEM (PKCS#1, as
    /// GitHub gives it), private PKCS#8 PEM, public DER (PKCS#1).
    fn keys() -> &'static (String, String, Vec<u8>) {
        static KEYS: OnceLock<(String, String, Vec<u8>)> = OnceLock::new();
        KEYS.get_or_init(|| {
            use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
            use rsa::pkcs8::EncodePrivateKey;
            let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
            let pkcs1 = pem("RSA PRIVATE KEY", private.to_pkcs1_der().unwrap().as_bytes());
            let pkcs8 = pem("PRIVATE KEY", private.to_pkcs8_der().unwrap().as_bytes());
            let public = private.to_public_key().to_pkcs1_der().unwrap().as_bytes().to_vec();
            (pkcs1, pkcs8, public)
        })
    }

    fn pem(label: &str, der: &[u8]) -> String {
        use base64::Engine;
        let text = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = text
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
    }

    fn client(api_url: &str) -> GithubClient {
        GithubClient::new(12345, keys().0.as_bytes(), api_url, reqwest::Client::new()).unwrap()
    }

    fn decode(jwt: &str) -> AppClaims {
        let key = jsonwebtoken::DecodingKey::from_rsa_der(&keys().2);
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_required_spec_claims(&["exp", "iat", "iss"]);
        validation.set_issuer(&["12345"]);
        jsonwebtoken::decode::<AppClaims>(jwt, &key, &validation)
            .unwrap()
            .claims
    }

    #[test]
    fn the_app_jwt_is_rs256_signed_by_the_key_with_githubs_claims() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-12-04T16:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        for pem in [&keys().0, &keys().1] {
            let client = GithubClient::new(12345, pem.as_bytes(), "https://api.github.com", reqwest::Client::new())
                .unwrap()
                .with_clock(Arc::new(move || at));
            let jwt = client.app_jwt().unwrap();
            let header = jsonwebtoken::decode_header(&jwt).unwrap();
            assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
            // Decoded with the public key; the clock of the decoder is now, so check the
            // numbers the client put in, relative to its own clock.
            let key = jsonwebtoken::DecodingKey::from_rsa_der(&keys().2);
            let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
            validation.validate_exp = false;
            validation.set_required_spec_claims(&["exp", "iat", "iss"]);
            let claims = jsonwebtoken::decode::<AppClaims>(&jwt, &key, &validation)
                .unwrap()
                .claims;
            assert_eq!(claims.iss, "12345");
            assert_eq!(claims.iat, at.timestamp() - 60);
            assert_eq!(claims.exp, at.timestamp() + 540);
            assert!(
                claims.exp - claims.iat <= 600,
                "GitHub refuses a JWT valid over ten minutes"
            );
        }
        // With the real clock, a validator accepts it now.
        let claims = decode(&client("https://api.github.com").app_jwt().unwrap());
        assert_eq!(claims.iss, "12345");
    }

    #[test]
    fn a_key_that_is_not_an_rsa_pem_is_refused_at_start_naming_the_key() {
        for bad in [
            &b"not a key"[..],
            b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
            b"",
        ] {
            let error = GithubClient::new(1, bad, "https://api.github.com", reqwest::Client::new()).unwrap_err();
            assert!(error.contains("github.private_key_file"), "{error}");
        }
        let error =
            GithubClient::new(0, keys().0.as_bytes(), "https://api.github.com", reqwest::Client::new()).unwrap_err();
        assert!(error.contains("github.app_id"), "{error}");
        let shown = format!("{:?}", client("https://api.github.com"));
        assert!(!shown.contains("PRIVATE") && shown.contains("<hidden>"), "{shown}");
    }

    #[test]
    fn paths_join_the_api_url_and_nothing_else_is_sent() {
        let ghes = client("https://ghe.example.com/api/v3/");
        assert_eq!(
            ghes.url("/repos/o/r/issues/7/comments").unwrap(),
            "https://ghe.example.com/api/v3/repos/o/r/issues/7/comments"
        );
        let github = client("https://api.github.com");
        assert_eq!(
            github
                .url("/repos/example/app/actions/runs/42/deployment_protection_rule")
                .unwrap(),
            "https://api.github.com/repos/example/app/actions/runs/42/deployment_protection_rule"
        );
        for bad in [
            "repos/o/r",
            "//evil.example/x",
            "https://evil.example/x",
            "/repos/o/r/../../app",
            "/repos/o/./r",
            "/repos/o/r?x=1",
            "/repos/o/r#x",
            "/repos/o//r",
            "/repos/o/r\u{0}",
            "/repos/o/r\n",
            "/repos/о/r", // Cyrillic о
            "/repos/o/r\u{200b}",
            "/repos/o/%2e%2e/x",
            "/repos/o%2Fr",
            "/repos/o\\r",
            "/@evil.example",
            "",
        ] {
            match github.url(bad) {
                Err(Failure::Refused(why)) => assert!(why.contains("not sent"), "{bad:?}: {why}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn failures_are_classified_as_github_documents_them() {
        let retry = |status: u16, pairs: &[(&'static str, &'static str)]| {
            matches!(
                classify(StatusCode::from_u16(status).unwrap(), &headers(pairs), "POST x", b""),
                Failure::Retry(_)
            )
        };
        for status in [500, 502, 503, 504, 408, 429] {
            assert!(retry(status, &[]), "{status}");
        }
        assert!(retry(403, &[("x-ratelimit-remaining", "0")]));
        assert!(retry(403, &[("retry-after", "60")]));
        for status in [400, 401, 403, 404, 409, 410, 422, 301, 302] {
            assert!(!retry(status, &[]), "{status}");
        }
        assert!(!retry(403, &[("x-ratelimit-remaining", "4999")]));
        // A secondary rate limit may carry neither header, only GitHub's message.
        let secondary = br#"{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}"#;
        assert!(matches!(
            classify(StatusCode::FORBIDDEN, &HeaderMap::new(), "POST x", secondary),
            Failure::Retry(_)
        ));
        let body = br#"{"message":"Resource not accessible by integration\u0000\n","documentation_url":"x"}"#;
        let failure = classify(
            StatusCode::FORBIDDEN,
            &HeaderMap::new(),
            "POST https://api.github.com/x",
            body,
        );
        assert_eq!(
            failure.message(),
            "POST https://api.github.com/x answered 403: Resource not accessible by integration\\0\\n"
        );
        let long = format!("{{\"message\":\"{}\"}}", "x".repeat(5000));
        assert!(
            classify(StatusCode::NOT_FOUND, &HeaderMap::new(), "x", long.as_bytes())
                .message()
                .len()
                < 400
        );
    }

    /// A stand-in answering each connection with the next canned answer, recording what it
    /// was asked (request line, headers, body). Raw HTTP/1.1 over TCP: no framework in the
    /// way of what jitgate actually sends.
    struct Stub {
        url: String,
        seen: Arc<Mutex<Vec<String>>>,
    }

    async fn stub(answers: Vec<(u16, &'static str, String)>) -> Stub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            for (status, extra_headers, body) in answers {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                loop {
                    let n = socket.read(&mut buffer).await.unwrap();
                    request.extend_from_slice(&buffer[..n]);
                    let text = String::from_utf8_lossy(&request).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length || n == 0 {
                            break;
                        }
                    }
                    if n == 0 {
                        break;
                    }
                }
                log.lock().push(String::from_utf8_lossy(&request).to_string());
                let reason = if status < 300 { "OK" } else { "No" };
                let answer = format!(
                    "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n{extra_headers}\r\n{body}",
                    body.len()
                );
                socket.write_all(answer.as_bytes()).await.unwrap();
                socket.shutdown().await.unwrap();
            }
        });
        Stub { url, seen }
    }

    fn minted(token: &str, expires_at: &str) -> (u16, &'static str, String) {
        (201, "", json!({"token": token, "expires_at": expires_at}).to_string())
    }

    fn callback(installation_id: i64) -> NewGithubCall {
        NewGithubCall {
            key: "callback:req_1".into(),
            installation_id,
            method: "POST".into(),
            path: "/repos/example/app/actions/runs/42/deployment_protection_rule".into(),
            body: json!({"environment_name": "production", "state": "approved", "comment": "ok"}),
            purpose: CallPurpose::Callback,
            request_id: Some("req_1".into()),
            due_at: Utc::now(),
        }
    }

    fn header<'a>(request: &'a str, name: &str) -> Option<&'a str> {
        request.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    #[tokio::test]
    async fn a_call_buys_a_token_with_the_app_jwt_then_reuses_it_until_near_expiry() {
        let clock = Arc::new(AtomicI64::new(Utc::now().timestamp()));
        let now = clock.load(Ordering::SeqCst);
        let expires = DateTime::from_timestamp(now + 3600, 0).unwrap().to_rfc3339();
        let stub = stub(vec![
            minted("ghs_first", &expires),
            (204, "", String::new()),
            (201, "", json!({"id": 1, "body": "hi"}).to_string()),
            minted("ghs_second", &expires),
            (204, "", String::new()),
        ])
        .await;
        let read = clock.clone();
        let github = client(&stub.url).with_clock(Arc::new(move || {
            DateTime::from_timestamp(read.load(Ordering::SeqCst), 0).unwrap()
        }));
        assert_eq!(github.call(&callback(7)).await.unwrap(), None, "204 is no body");
        let mut comment = callback(7);
        comment.path = "/repos/example/app/issues/3/comments".into();
        comment.body = json!({"body": "hi"});
        comment.purpose = CallPurpose::Comment;
        assert_eq!(
            github.call(&comment).await.unwrap(),
            Some(json!({"id": 1, "body": "hi"}))
        );
        // 56 minutes later the token has under five minutes left: a new one is bought.
        clock.store(now + 56 * 60, Ordering::SeqCst);
        assert_eq!(github.call(&callback(7)).await.unwrap(), None);

        let seen = stub.seen.lock().clone();
        assert_eq!(seen.len(), 5, "{seen:#?}");
        assert!(
            seen[0].starts_with("POST /app/installations/7/access_tokens HTTP/1.1"),
            "{}",
            seen[0]
        );
        let jwt = header(&seen[0], "authorization")
            .unwrap()
            .strip_prefix("Bearer ")
            .unwrap();
        let key = jsonwebtoken::DecodingKey::from_rsa_der(&keys().2);
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_issuer(&["12345"]);
        let claims = jsonwebtoken::decode::<AppClaims>(jwt, &key, &validation)
            .unwrap()
            .claims;
        assert_eq!(claims.iat, now - 60);
        assert!(seen[1].starts_with("POST /repos/example/app/actions/runs/42/deployment_protection_rule HTTP/1.1"));
        assert_eq!(header(&seen[1], "authorization"), Some("Bearer ghs_first"));
        assert_eq!(header(&seen[2], "authorization"), Some("Bearer ghs_first"), "cached");
        assert!(seen[3].starts_with("POST /app/installations/7/access_tokens"));
        assert_eq!(header(&seen[4], "authorization"), Some("Bearer ghs_second"));
        for request in &seen {
            assert_eq!(header(request, "accept"), Some("application/vnd.github+json"));
            assert_eq!(header(request, "x-github-api-version"), Some("2022-11-28"));
            assert!(header(request, "user-agent").unwrap().starts_with("jitgate/"));
        }
        assert_eq!(header(&seen[1], "content-type"), Some("application/json"));
        let body = seen[1].split("\r\n\r\n").nth(1).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(body).unwrap(),
            json!({"environment_name": "production", "state": "approved", "comment": "ok"})
        );
    }

    #[tokio::test]
    async fn a_success_whose_body_is_not_json_is_done_not_made_again() {
        let expires = (Utc::now() + TimeDelta::hours(1)).to_rfc3339();
        // GitHub has acted once it answers 2xx: making the call again would comment twice.
        let stub = stub(vec![
            minted("ghs_one", &expires),
            (201, "", "{\"id\": 1, broken".to_string()),
        ])
        .await;
        let github = client(&stub.url);
        assert_eq!(github.call(&callback(9)).await.unwrap(), None);
        assert_eq!(stub.seen.lock().len(), 2);
    }

    #[tokio::test]
    async fn a_401_drops_the_token_and_the_call_is_made_once_more_with_a_new_one() {
        let expires = (Utc::now() + TimeDelta::hours(1)).to_rfc3339();
        let stub = stub(vec![
            minted("ghs_revoked", &expires),
            (401, "", json!({"message": "Bad credentials"}).to_string()),
            minted("ghs_fresh", &expires),
            (204, "", String::new()),
            // A second 401 on a token just sold: GitHub may not take a new token for a few
            // seconds, so the call is kept and tried again later (not dropped as refused).
            (401, "", json!({"message": "Bad credentials"}).to_string()),
            minted("ghs_third", &expires),
            (401, "", json!({"message": "Bad credentials"}).to_string()),
        ])
        .await;
        let github = client(&stub.url);
        assert_eq!(github.call(&callback(9)).await.unwrap(), None);
        match github.call(&callback(9)).await {
            Err(Failure::Retry(why)) => assert!(why.contains("401") && why.contains("Bad credentials"), "{why}"),
            other => panic!("{other:?}"),
        }
        let seen = stub.seen.lock().clone();
        assert_eq!(header(&seen[1], "authorization"), Some("Bearer ghs_revoked"));
        assert_eq!(header(&seen[3], "authorization"), Some("Bearer ghs_fresh"));
        assert_eq!(header(&seen[4], "authorization"), Some("Bearer ghs_fresh"));
        assert_eq!(header(&seen[6], "authorization"), Some("Bearer ghs_third"));
        assert_eq!(seen.len(), 7);
    }

    #[tokio::test]
    async fn outages_and_rate_limits_are_retried_and_refusals_are_not() {
        let expires = (Utc::now() + TimeDelta::hours(1)).to_rfc3339();
        let stub = stub(vec![
            (503, "", String::new()),
            minted("ghs_a", &expires),
            (
                403,
                "x-ratelimit-remaining: 0\r\n",
                json!({"message": "API rate limit exceeded"}).to_string(),
            ),
            (422, "", json!({"message": "Validation Failed"}).to_string()),
            (404, "", json!({"message": "Not Found"}).to_string()),
        ])
        .await;
        let github = client(&stub.url);
        assert!(
            matches!(github.call(&callback(1)).await, Err(Failure::Retry(_))),
            "token endpoint down"
        );
        // Another installation (installation 1's failure is remembered for a few seconds).
        assert!(
            matches!(github.call(&callback(11)).await, Err(Failure::Retry(_))),
            "rate limited"
        );
        match github.call(&callback(11)).await {
            Err(Failure::Refused(why)) => assert!(why.contains("422") && !why.contains("ghs_a"), "{why}"),
            other => panic!("{other:?}"),
        }
        // A token GitHub will not sell because the installation is gone: refused.
        assert!(matches!(github.call(&callback(2)).await, Err(Failure::Refused(_))));
        // Nobody listening: retried.
        let closed = client("http://127.0.0.1:9");
        match closed.call(&callback(1)).await {
            Err(Failure::Retry(why)) => assert!(why.contains("127.0.0.1:9"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn calls_waiting_on_a_failed_token_fail_with_it_and_later_ones_try_again() {
        let expires = (Utc::now() + TimeDelta::hours(1)).to_rfc3339();
        let stub = stub(vec![
            (503, "", String::new()),
            minted("ghs_later", &expires),
            (204, "", String::new()),
        ])
        .await;
        let clock = Arc::new(AtomicI64::new(Utc::now().timestamp()));
        let read = clock.clone();
        let github = client(&stub.url).with_clock(Arc::new(move || {
            DateTime::from_timestamp(read.load(Ordering::SeqCst), 0).unwrap()
        }));
        // Ten calls at once for one installation: one attempt to buy a token, ten failures.
        let calls: Vec<NewGithubCall> = (0..10).map(|_| callback(3)).collect();
        let answers = futures_util::future::join_all(calls.iter().map(|c| github.call(c))).await;
        assert!(
            answers.iter().all(|a| matches!(a, Err(Failure::Retry(_)))),
            "{answers:?}"
        );
        assert_eq!(stub.seen.lock().len(), 1, "one attempt for all ten");
        // Later, the next call tries again.
        clock.fetch_add(FAILED_MINT_MEMO_SECS, Ordering::SeqCst);
        assert_eq!(github.call(&callback(3)).await.unwrap(), None);
        assert_eq!(stub.seen.lock().len(), 3);
    }

    #[tokio::test]
    async fn the_apps_own_credentials_refused_is_retried_until_an_operator_fixes_them() {
        let stub = stub(vec![(
            401,
            "",
            json!({"message": "A JSON web token could not be decoded"}).to_string(),
        )])
        .await;
        match client(&stub.url).call(&callback(5)).await {
            Err(Failure::Retry(why)) => assert!(why.contains("could not authenticate"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_method_or_path_jitgate_never_makes_is_not_sent() {
        let github = client("http://127.0.0.1:9");
        let mut call = callback(1);
        call.method = "CONNECT".into();
        assert!(matches!(github.call(&call).await, Err(Failure::Refused(_))));
        let mut call = callback(1);
        call.path = "https://evil.example/steal".into();
        assert!(matches!(github.call(&call).await, Err(Failure::Refused(_))));
    }
}
