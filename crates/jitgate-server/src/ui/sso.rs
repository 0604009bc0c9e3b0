//! Single sign-on for the web UI: the OpenID Connect authorization code flow with PKCE (S256),
//! a `state` and a `nonce`. The ID token the issuer hands back is checked by the same
//! authenticator as any bearer token (the issuer must be one of `[[auth.oidc]]`, with the client
//! id among its audiences), its nonce must be the one this browser sent, and it then serves as
//! the session until it expires.

use super::{cookie, CsrfToken, SESSION_COOKIE};
use crate::app::App;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use axum::Extension;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// The cookie that carries one sign-in's state, PKCE verifier, nonce and destination.
const FLOW_COOKIE: &str = "jitgate_sso";

/// `[ui.sso]` in the server's config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsoConfig {
    /// One of the `[[auth.oidc]]` issuers: its ID tokens are verified there.
    pub issuer: String,
    pub client_id: String,
    /// The environment variable holding the client secret (confidential clients).
    pub client_secret_env: Option<String>,
    /// Default: from the issuer's `/.well-known/openid-configuration`.
    pub authorization_url: Option<String>,
    pub token_url: Option<String>,
    /// Default `["openid", "profile", "email"]`.
    pub scopes: Option<Vec<String>>,
}

/// `[ui]` in the server's config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UiConfig {
    pub sso: Option<SsoConfig>,
}

/// A checked SSO configuration with its endpoints.
pub struct Sso {
    client_id: String,
    client_secret: Option<String>,
    authorization_url: String,
    token_url: String,
    scopes: String,
    redirect_uri: String,
    http: reqwest::Client,
}

impl Sso {
    /// Check the config against the issuers the server trusts and find the endpoints.
    pub async fn new(
        config: &SsoConfig,
        oidc: &[crate::auth::config::OidcIssuerConfig],
        public_url: &str,
    ) -> Result<Sso, String> {
        let trusted = oidc.iter().find(|i| i.issuer == config.issuer).ok_or_else(|| {
            format!(
                "ui.sso.issuer: '{}' is not one of [[auth.oidc]]: add it there so its ID tokens are verified",
                config.issuer
            )
        })?;
        if !trusted.audience.contains(&config.client_id) {
            return Err(format!(
                "ui.sso.client_id: '{}' is not among the audiences of [[auth.oidc]] issuer {}: ID tokens carry the client id as their audience",
                config.client_id, config.issuer
            ));
        }
        let client_secret = match &config.client_secret_env {
            None => None,
            Some(var) => Some(
                std::env::var(var)
                    .map_err(|_| format!("ui.sso.client_secret_env: the environment variable {var} is not set"))?,
            ),
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        let (authorization_url, token_url) = match (&config.authorization_url, &config.token_url) {
            (Some(a), Some(t)) => (a.clone(), t.clone()),
            _ => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    config.issuer.trim_end_matches('/')
                );
                let doc: serde_json::Value = http
                    .get(&url)
                    .send()
                    .await
                    .and_then(|r| r.error_for_status())
                    .map_err(|e| format!("ui.sso: cannot read {url}: {e}; or set authorization_url and token_url"))?
                    .json()
                    .await
                    .map_err(|e| format!("ui.sso: {url}: {e}"))?;
                let field = |name: &str| {
                    doc[name]
                        .as_str()
                        .map(str::to_string)
                        .ok_or_else(|| format!("ui.sso: {url} has no {name}"))
                };
                (
                    config
                        .authorization_url
                        .clone()
                        .map_or_else(|| field("authorization_endpoint"), Ok)?,
                    config.token_url.clone().map_or_else(|| field("token_endpoint"), Ok)?,
                )
            }
        };
        Ok(Sso {
            client_id: config.client_id.clone(),
            client_secret,
            authorization_url,
            token_url,
            scopes: config
                .scopes
                .clone()
                .unwrap_or_else(|| vec!["openid".into(), "profile".into(), "email".into()])
                .join(" "),
            redirect_uri: format!("{}/ui/login/callback", public_url.trim_end_matches('/')),
            http,
        })
    }
}

fn random() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).ok()?;
    Some(URL_SAFE_NO_PAD.encode(bytes))
}

#[derive(Deserialize)]
pub struct StartQuery {
    next: Option<String>,
}

/// Send the browser to the issuer, keeping state, verifier, nonce and destination in a
/// short-lived cookie.
pub async fn start(
    State(app): State<Arc<App>>,
    Extension(csrf): Extension<CsrfToken>,
    Query(query): Query<StartQuery>,
) -> Response {
    let Some(sso) = app.sso() else {
        return super::pages::error_page(
            &csrf.0,
            axum::http::StatusCode::NOT_FOUND,
            "Single sign-on is not configured.",
        );
    };
    let (Some(state), Some(verifier), Some(nonce)) = (random(), random(), random()) else {
        return super::pages::error_page(
            &csrf.0,
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "No randomness is available to start a sign-in safely.",
        );
    };
    let next = super::pages::safe_next(query.next.as_deref());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let query = serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", sso.client_id.as_str()),
        ("redirect_uri", sso.redirect_uri.as_str()),
        ("scope", sso.scopes.as_str()),
        ("state", state.as_str()),
        ("nonce", nonce.as_str()),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ])
    .unwrap_or_default();
    let separator = if sso.authorization_url.contains('?') { '&' } else { '?' };
    let mut response = super::pages::see_other(&format!("{}{separator}{query}", sso.authorization_url));
    let flow = format!("{state}.{verifier}.{nonce}.{}", URL_SAFE_NO_PAD.encode(next));
    if let Ok(v) = HeaderValue::from_str(&cookie(FLOW_COOKIE, &flow, Some(600))) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The issuer sent the browser back: check the state, trade the code (with the verifier) for
/// an ID token, check it and its nonce, and sign in.
pub async fn callback(
    State(app): State<Arc<App>>,
    Extension(csrf): Extension<CsrfToken>,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Response {
    let refuse = |why: &str| {
        let mut r = super::pages::error_page(&csrf.0, axum::http::StatusCode::UNAUTHORIZED, why);
        if let Ok(v) = HeaderValue::from_str(&cookie(FLOW_COOKIE, "", Some(0))) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
        r
    };
    let Some(sso) = app.sso() else {
        return refuse("Single sign-on is not configured.");
    };
    if let Some(error) = &query.error {
        return refuse(&format!(
            "The identity provider refused the sign-in: {error} {}",
            query.error_description.as_deref().unwrap_or("")
        ));
    }
    let flow = super::cookies(&headers)
        .into_iter()
        .find(|(k, _)| k == FLOW_COOKIE)
        .map(|(_, v)| v)
        .unwrap_or_default();
    let parts: Vec<&str> = flow.split('.').collect();
    let [state, verifier, nonce, next] = parts.as_slice() else {
        return refuse("This sign-in was not started here, or took too long. Start again.");
    };
    let (Some(code), Some(sent_state)) = (&query.code, &query.state) else {
        return refuse("The identity provider sent no code.");
    };
    if !super::constant_time_eq(sent_state.as_bytes(), state.as_bytes()) {
        return refuse("The sign-in's state does not match: it was not started by this browser. Start again.");
    }
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", sso.redirect_uri.as_str()),
        ("client_id", sso.client_id.as_str()),
        ("code_verifier", verifier),
    ];
    if let Some(secret) = &sso.client_secret {
        form.push(("client_secret", secret.as_str()));
    }
    let body = serde_urlencoded::to_string(&form).unwrap_or_default();
    let answer = sso
        .http
        .post(&sso.token_url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Accept", "application/json")
        .body(body)
        .send()
        .await;
    let tokens: serde_json::Value = match answer {
        Ok(r) if r.status().is_success() => r.json().await.unwrap_or_default(),
        Ok(r) => {
            tracing::warn!(status = %r.status(), "the identity provider refused the code");
            return refuse("The identity provider did not accept the sign-in. Start again.");
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot reach the identity provider's token endpoint");
            return refuse("The identity provider cannot be reached. Try again shortly.");
        }
    };
    let Some(id_token) = tokens["id_token"].as_str() else {
        return refuse("The identity provider sent no ID token (is the scope 'openid' granted?).");
    };
    let mut bearer = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {id_token}")) {
        bearer.insert(header::AUTHORIZATION, v);
    }
    let who = match crate::auth::authenticate_headers(&app, &bearer, None).await {
        Ok(who) => who,
        Err(_) => return refuse("The ID token is not valid for jitgate."),
    };
    // The signature was checked above; the nonce ties the token to this browser's sign-in.
    let claims = id_token
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .unwrap_or_default();
    if claims["nonce"].as_str().map(str::as_bytes) != Some(nonce.as_bytes()) {
        return refuse("The ID token was not issued for this sign-in (nonce). Start again.");
    }
    // Browsers drop cookies over about 4 KB without a word: say so instead.
    if id_token.len() > 3800 {
        return refuse(
            "The identity provider's ID token is too large to keep as a browser session (over 3,800 bytes): \
             ask it for fewer claims (groups) in the ID token, or sign in with an API token.",
        );
    }
    tracing::info!(principal = %who.principal, "signed in to the web UI with single sign-on");
    let next = URL_SAFE_NO_PAD
        .decode(next)
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    let mut response = super::pages::see_other(&super::pages::safe_next(next.as_deref()));
    for c in [cookie(SESSION_COOKIE, id_token, None), cookie(FLOW_COOKIE, "", Some(0))] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}
