//! Single sign-on for the web UI: the OpenID Connect authorization code flow with PKCE (S256),
//! a `state` and a `nonce`. The ID token the issuer hands back is checked by the same
//! authenticator as any bearer token (the issuer must be one of `[[auth.oidc]]`, with the client
//! id among its audiences), its nonce must be the one this browser sent, and it then serves as
//! the session until it expires.
//!
//! The flow is written here rather than with the `openidconnect` crate: the ID token must be
//! judged by the `[[auth.oidc]]` rules anyway (the same algorithms, keys, principal mapping and
//! refusals as every bearer token, and again on every request while it serves as the session),
//! so the crate would bring a second verifier with its own crypto stack (RSA, P-256, P-384 and
//! Ed25519 crates beside `jsonwebtoken`) and rules to keep in step, for the part that is left:
//! building one URL and one token request.
//!
//! The provider is not needed to start: its endpoints are discovered on the first sign-in (and
//! again after a failure, at most every `DISCOVERY_RETRY`), so a provider that is down at start
//! delays single sign-on only, never the server or its checks.

use super::{cookie, CsrfToken};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Extension;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jitgate_service::App;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The cookie that carries one sign-in's state, PKCE verifier, nonce and destination.
const FLOW_COOKIE: &str = "jitgate_sso";
/// The shortest time between two attempts to read the provider's discovery document.
const DISCOVERY_RETRY: Duration = Duration::from_secs(2);

/// How jitgate proves itself to the token endpoint (a confidential client, with a secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic authentication with the client id and secret (OpenID Connect's default).
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

/// `[ui.sso]` in the server's config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsoConfig {
    /// One of the `[[auth.oidc]]` issuers: its ID tokens are verified there.
    pub issuer: String,
    pub client_id: String,
    /// The environment variable holding the client secret (confidential clients).
    pub client_secret_env: Option<String>,
    /// How the secret is sent. Default: `client_secret_basic`, or `client_secret_post` when
    /// the discovery document lists only that.
    pub client_auth: Option<ClientAuth>,
    /// Default: from the issuer's `/.well-known/openid-configuration`.
    pub authorization_url: Option<String>,
    pub token_url: Option<String>,
    /// Default `["openid", "profile", "email"]`, and `groups` when the issuer has a
    /// `groups_claim` (unless discovery says the provider does not offer that scope).
    pub scopes: Option<Vec<String>>,
}

/// `[ui]` in the server's config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UiConfig {
    pub sso: Option<SsoConfig>,
    /// Send the session cookie to this domain and every host below it (`Domain=`, `Path=/`),
    /// so that apps behind forward authentication on that domain pass it to jitgate through
    /// their proxy. Those apps receive it too: see docs/ui.md.
    pub cookie_domain: Option<String>,
}

impl UiConfig {
    /// Where the session cookie goes, checked against the server's public URL (a browser
    /// silently drops a cookie for a domain the page is not in).
    pub fn session_scope(&self, public_url: &str) -> Result<super::SessionScope, String> {
        let Some(domain) = &self.cookie_domain else {
            return Ok(super::SessionScope::default());
        };
        if let Some(problem) = super::cookie_domain_problem(domain) {
            return Err(format!("ui.cookie_domain: '{}' {problem}", domain.escape_debug()));
        }
        let host = url::Url::parse(public_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default();
        if host != *domain && !host.ends_with(&format!(".{domain}")) {
            return Err(format!(
                "ui.cookie_domain: jitgate's public URL {public_url} is not on {domain}, so browsers would refuse the cookie; \
                 serve jitgate on a host of {domain} ([notify] public_url) or choose the domain jitgate and the apps share"
            ));
        }
        Ok(super::SessionScope::on_domain(domain))
    }
}

/// Where and how to talk to the provider, once known.
struct Endpoints {
    authorization_url: String,
    token_url: String,
    client_auth: ClientAuth,
    scopes: String,
}

/// A checked SSO configuration; its endpoints are found on first use.
pub struct Sso {
    config: SsoConfig,
    client_secret: Option<String>,
    /// The issuer has a `groups_claim`, so the `groups` scope is asked for by default.
    wants_groups: bool,
    redirect_uri: String,
    http: reqwest::Client,
    endpoints: tokio::sync::Mutex<Discovered>,
}

#[derive(Default)]
struct Discovered {
    endpoints: Option<Arc<Endpoints>>,
    last_attempt: Option<Instant>,
    last_error: String,
}

impl Sso {
    /// Check the config against the issuers the server trusts. Nothing is fetched: the
    /// provider may be down while jitgate starts.
    pub async fn new(
        config: &SsoConfig,
        oidc: &[crate::auth::config::OidcIssuerConfig],
        public_url: &str,
    ) -> Result<Sso, String> {
        let trusted = oidc.iter().find(|i| i.issuer == config.issuer).ok_or_else(|| {
            format!(
                "ui.sso.issuer: '{}' is not one of [[auth.oidc]]: add it there so its ID tokens are verified \
                 (the issuer is compared exactly, trailing slash included)",
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
        if config.client_auth.is_some() && client_secret.is_none() {
            return Err(
                "ui.sso.client_auth: a public client sends no secret; set client_secret_env or remove client_auth"
                    .into(),
            );
        }
        if let Some(scopes) = &config.scopes {
            if !scopes.iter().any(|s| s == "openid") {
                return Err("ui.sso.scopes: include \"openid\", or the provider sends no ID token".into());
            }
        }
        if config.authorization_url.is_none() || config.token_url.is_none() {
            let issuer = &config.issuer;
            if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
                return Err(format!(
                    "ui.sso.issuer: '{issuer}' is not an http(s) URL to discover endpoints from: set authorization_url and token_url"
                ));
            }
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Sso {
            config: config.clone(),
            client_secret,
            wants_groups: trusted.groups_claim.is_some(),
            redirect_uri: format!("{}/ui/login/callback", public_url.trim_end_matches('/')),
            http,
            endpoints: tokio::sync::Mutex::new(Discovered::default()),
        })
    }

    /// The endpoints: as configured, or from the discovery document, read now if it has not
    /// been read yet (and not tried in the last `DISCOVERY_RETRY`).
    async fn endpoints(&self) -> Result<Arc<Endpoints>, String> {
        let mut held = self.endpoints.lock().await;
        if let Some(known) = &held.endpoints {
            return Ok(known.clone());
        }
        if held.last_attempt.is_some_and(|t| t.elapsed() < DISCOVERY_RETRY) {
            return Err(held.last_error.clone());
        }
        held.last_attempt = Some(Instant::now());
        match self.resolve().await {
            Ok(endpoints) => {
                let endpoints = Arc::new(endpoints);
                held.endpoints = Some(endpoints.clone());
                Ok(endpoints)
            }
            Err(e) => {
                tracing::warn!(issuer = %self.config.issuer, error = %e, "single sign-on: cannot discover the provider; will try again on the next sign-in");
                held.last_error = e.clone();
                Err(e)
            }
        }
    }

    async fn resolve(&self) -> Result<Endpoints, String> {
        let c = &self.config;
        let doc = match (&c.authorization_url, &c.token_url) {
            (Some(_), Some(_)) => None,
            _ => Some(
                crate::auth::oidc::discover(&jitgate_connectors::fetch::HttpFetch(self.http.clone()), &c.issuer)
                    .await?,
            ),
        };
        let field = |name: &str| -> Result<String, String> {
            doc.as_ref()
                .and_then(|d| d[name].as_str())
                .map(str::to_string)
                .ok_or_else(|| format!("the discovery document of {} has no {name}", c.issuer))
        };
        let listed = |name: &str, value: &str| -> Option<bool> {
            let list = doc.as_ref()?[name].as_array()?;
            Some(list.iter().any(|v| v.as_str() == Some(value)))
        };
        let client_auth = c.client_auth.unwrap_or(
            // OpenID Connect's default is Basic; a provider that lists only `post` gets that.
            if listed("token_endpoint_auth_methods_supported", "client_secret_basic") == Some(false)
                && listed("token_endpoint_auth_methods_supported", "client_secret_post") == Some(true)
            {
                ClientAuth::ClientSecretPost
            } else {
                ClientAuth::ClientSecretBasic
            },
        );
        let scopes = match &c.scopes {
            Some(scopes) => scopes.clone(),
            None => {
                let mut scopes: Vec<String> = vec!["openid".into(), "profile".into(), "email".into()];
                if self.wants_groups && listed("scopes_supported", "groups") != Some(false) {
                    scopes.push("groups".into());
                }
                scopes
            }
        };
        Ok(Endpoints {
            authorization_url: c
                .authorization_url
                .clone()
                .map_or_else(|| field("authorization_endpoint"), Ok)?,
            token_url: c.token_url.clone().map_or_else(|| field("token_endpoint"), Ok)?,
            client_auth,
            scopes: scopes.join(" "),
        })
    }
}

/// One value as `application/x-www-form-urlencoded` writes it (RFC 6749, section 2.3.1: the
/// client id and secret are encoded so before they go into the Basic header).
fn form_encoded(value: &str) -> String {
    serde_urlencoded::to_string([("v", value)])
        .unwrap_or_default()
        .split_off(2)
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
    Extension(slot): Extension<super::SsoSlot>,
    Extension(csrf): Extension<CsrfToken>,
    Query(query): Query<StartQuery>,
) -> Response {
    let Some(sso) = slot.get() else {
        return super::pages::error_page(&csrf.0, StatusCode::NOT_FOUND, "Single sign-on is not configured.");
    };
    let endpoints = match sso.endpoints().await {
        Ok(endpoints) => endpoints,
        Err(_) => {
            return super::pages::error_page(
                &csrf.0,
                StatusCode::SERVICE_UNAVAILABLE,
                "The identity provider cannot be reached. Try again shortly, or sign in with an API token.",
            )
        }
    };
    let (Some(state), Some(verifier), Some(nonce)) = (random(), random(), random()) else {
        return super::pages::error_page(
            &csrf.0,
            StatusCode::INTERNAL_SERVER_ERROR,
            "No randomness is available to start a sign-in safely.",
        );
    };
    let next = super::pages::safe_next(query.next.as_deref());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let query = serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", sso.config.client_id.as_str()),
        ("redirect_uri", sso.redirect_uri.as_str()),
        ("scope", endpoints.scopes.as_str()),
        ("state", state.as_str()),
        ("nonce", nonce.as_str()),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ])
    .unwrap_or_default();
    let separator = if endpoints.authorization_url.contains('?') {
        '&'
    } else {
        '?'
    };
    let mut response = super::pages::see_other(&format!("{}{separator}{query}", endpoints.authorization_url));
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
    State(session): State<super::SessionScope>,
    Extension(slot): Extension<super::SsoSlot>,
    Extension(csrf): Extension<CsrfToken>,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Response {
    let refuse = |why: &str| {
        let mut r = super::pages::error_page(&csrf.0, StatusCode::UNAUTHORIZED, why);
        if let Ok(v) = HeaderValue::from_str(&cookie(FLOW_COOKIE, "", Some(0))) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
        r
    };
    let Some(sso) = slot.get() else {
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
    let Ok(endpoints) = sso.endpoints().await else {
        return refuse("The identity provider cannot be reached. Try again shortly.");
    };
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", sso.redirect_uri.as_str()),
        ("code_verifier", verifier),
    ];
    let mut request = sso.http.post(&endpoints.token_url);
    match (&sso.client_secret, endpoints.client_auth) {
        (None, _) => form.push(("client_id", sso.config.client_id.as_str())),
        (Some(secret), ClientAuth::ClientSecretPost) => {
            form.push(("client_id", sso.config.client_id.as_str()));
            form.push(("client_secret", secret.as_str()));
        }
        (Some(secret), ClientAuth::ClientSecretBasic) => {
            request = request.basic_auth(form_encoded(&sso.config.client_id), Some(form_encoded(secret)));
        }
    }
    let body = serde_urlencoded::to_string(&form).unwrap_or_default();
    let answer = request
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
        Err(e) => return refuse(&format!("The ID token is not valid for jitgate ({e}).")),
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
    // The session lasts as long as the ID token: the cookie goes when the token expires (or
    // when the browser closes), and every request checks the token's `exp` again anyway.
    let lifetime = claims["exp"]
        .as_i64()
        .map(|exp| u64::try_from(exp - chrono::Utc::now().timestamp()).unwrap_or(0));
    super::pages::set_session(&mut response, &session, id_token, lifetime);
    if let Ok(v) = HeaderValue::from_str(&cookie(FLOW_COOKIE, "", Some(0))) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}
