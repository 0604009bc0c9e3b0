//! Single sign-on for the CLI (#28, part 2), with the `openidconnect` crate: discovery (the
//! provider must name itself exactly as the jitgate server names it), the authorization code
//! flow with PKCE and a loopback redirect (RFC 8252), the device authorization grant (RFC
//! 8628), the ID token's verification, its refresh, and the refresh token's revocation (RFC
//! 7009). Pure of the profile files except [`refreshed_credential`], which takes the lock.
//!
//! Every HTTP call goes through a client that follows no redirect (as openidconnect's docs
//! advise: a redirect could carry a code or a token to another host) and gives up after
//! [`HTTP_TIMEOUT`]. Nothing here prints a token or logs one.

use crate::profiles::{Credential, ProfileError, Store};
use chrono::{DateTime, Utc};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient,
    CoreClientAuthMethod, CoreDeviceAuthorizationResponse, CoreGrantType, CoreIdToken, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreResponseMode, CoreResponseType,
    CoreSubjectIdentifierType, CoreTokenResponse,
};
use openidconnect::{
    AdditionalProviderMetadata, AuthorizationCode, ClientId, CsrfToken, DeviceAuthorizationUrl, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, JsonWebKeySet, Nonce, OAuth2TokenResponse, PkceCodeChallenge, ProviderMetadata,
    RedirectUrl, RefreshToken, RequestTokenError, RevocationUrl, Scope, TokenResponse,
};
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A stored ID token this close to its expiry is refreshed before it is sent: it must not
/// expire on its way to the server.
pub const REFRESH_MARGIN: chrono::TimeDelta = chrono::TimeDelta::seconds(10);
/// How long `jitgate login` waits for the browser or the device sign-in, unless
/// `JITGATE_LOGIN_TIMEOUT` (seconds) says otherwise.
const DEFAULT_LOGIN_TIMEOUT: Duration = Duration::from_secs(300);
/// Any one call to the provider.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// The request line and headers of one request to the loopback listener.
const MAX_REQUEST_HEAD_BYTES: usize = 8 * 1024;
/// The longest one connection to the loopback listener may take to send its request: a local
/// process that opens a connection and sends nothing must not stall the login.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(5);
/// The discovery document and the JWKS: anything bigger is not a provider's.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Connections to the loopback listener answered at once.
const MAX_CONNECTIONS: usize = 16;
/// How much of a provider's `error`/`error_description` is quoted.
const MAX_QUOTED_CHARS: usize = 300;

/// The page the browser shows once the code has come back.
pub const SUCCESS_PAGE: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>jitgate</title></head><body><h1>Signed in to jitgate</h1><p>You can close this tab and go back to the terminal.</p></body></html>";
const REFUSED_PAGE: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>jitgate</title></head><body><h1>Sign-in refused</h1><p>The identity provider refused the sign-in; the terminal says why.</p></body></html>";
const BAD_REQUEST_PAGE: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>jitgate</title></head><body><h1>Not this sign-in</h1><p>This answer does not belong to the sign-in jitgate is waiting for. Go back to the terminal.</p></body></html>";
const NOT_FOUND_PAGE: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>jitgate</title></head><body><h1>Not found</h1></body></html>";
const TOO_LARGE_PAGE: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>jitgate</title></head><body><h1>Request too large</h1></body></html>";

#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    #[error("the identity provider at {issuer} names itself {named}: refusing to sign in (ask the jitgate admin to fix [cli] sso_issuer); nothing was stored")]
    IssuerMismatch { issuer: String, named: String },
    #[error("single sign-on through {issuer} is not possible: cannot reach it ({reason}); nothing was stored")]
    Unreachable { issuer: String, reason: String },
    #[error("single sign-on through {issuer} is not possible: {reason}; nothing was stored")]
    Discovery { issuer: String, reason: String },
    #[error("the identity provider refused the sign-in: {error} ({description})")]
    Refused { error: String, description: String },
    #[error("gave up waiting for the browser after {0} s: run jitgate login again (or --device)")]
    BrowserTimeout(u64),
    #[error("gave up waiting for the device sign-in after {0} s: run jitgate login --device again")]
    DeviceTimeout(u64),
    #[error("the device code expired before the sign-in was done at {issuer}: run jitgate login --device again")]
    DeviceExpired { issuer: String },
    #[error("the sign-in was denied at {issuer}: run jitgate login --device again if that was a mistake")]
    DeviceDenied { issuer: String },
    #[error("{issuer} does not offer the device flow to jitgate ({why}): run jitgate login without --device")]
    NoDeviceFlow { issuer: String, why: &'static str },
    #[error("{issuer} answered no ID token (is `openid` among [cli] sso_scopes?); nothing was stored")]
    NoIdToken { issuer: String },
    #[error("the ID token from {issuer} does not verify ({reason}); nothing was stored")]
    BadIdToken { issuer: String, reason: String },
    /// The provider refused the refresh token (`invalid_grant`: expired, revoked, rotated away).
    #[error("{issuer} refused the refresh token")]
    RefreshRefused { issuer: String },
    #[error("{issuer} refused the request: {reason}; nothing was stored")]
    Provider { issuer: String, reason: String },
    #[error("cannot listen on 127.0.0.1 for the browser's answer: {0}")]
    Listen(std::io::Error),
}

/// An error and every cause under it, in one line: reqwest's own message hides the reason
/// (DNS, refused, TLS) in its source.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let more = inner.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = inner.source();
    }
    text
}

/// What the jitgate server offers (`GET /v1/login/options`, its `oidc` object).
#[derive(Debug, Clone)]
pub struct Offer {
    pub issuer: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub device: bool,
}

/// What a sign-in or a refresh gives: the verified ID token and when it expires.
pub struct SignedIn {
    pub id_token: String,
    pub refresh_token: Option<String>,
    pub expires_at: DateTime<Utc>,
}

/// The discovery fields openidconnect's core metadata does not carry.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct MoreEndpoints {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    device_authorization_endpoint: Option<DeviceAuthorizationUrl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revocation_endpoint: Option<RevocationUrl>,
}
impl AdditionalProviderMetadata for MoreEndpoints {}

type Metadata = ProviderMetadata<
    MoreEndpoints,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

type DiscoveredClient =
    CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;

/// The HTTP client for the provider: no redirects, bounded in time.
fn http_client() -> Result<reqwest::blocking::Client, SsoError> {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .timeout(HTTP_TIMEOUT)
        .build()
        .map_err(|e| SsoError::Discovery {
            issuer: "-".into(),
            reason: format!("cannot make an HTTP client: {}", with_causes(&e)),
        })
}

/// An identity provider, discovered.
pub struct Provider {
    issuer: String,
    client_id: String,
    metadata: Metadata,
    http: reqwest::blocking::Client,
}

impl Provider {
    /// Read `ISSUER/.well-known/openid-configuration` and the JWKS it names. The document's
    /// `issuer` must be exactly `issuer` (OpenID Connect Discovery 4.3): else a provider could
    /// speak for another, and its ID tokens would not be accepted by the server anyway.
    pub fn discover(issuer: &str, client_id: &str) -> Result<Provider, SsoError> {
        let http = http_client()?;
        let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
        let unreachable = |e: &dyn std::error::Error| SsoError::Unreachable {
            issuer: issuer.to_string(),
            reason: with_causes(e),
        };
        let response = http
            .get(&url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .map_err(|e| unreachable(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(SsoError::Discovery {
                issuer: issuer.to_string(),
                reason: format!("its discovery document {url} answered {status}"),
            });
        }
        let body = read_limited(response).map_err(|e| unreachable(&e))?;
        let document: serde_json::Value = serde_json::from_slice(&body).map_err(|_| SsoError::Discovery {
            issuer: issuer.to_string(),
            reason: format!("its discovery document {url} is not JSON"),
        })?;
        let named = document.get("issuer").and_then(serde_json::Value::as_str);
        if named != Some(issuer) {
            return Err(SsoError::IssuerMismatch {
                issuer: issuer.to_string(),
                named: named.map_or_else(|| "nothing (no issuer in its discovery document)".into(), quoted),
            });
        }
        let mut metadata: Metadata = serde_json::from_value(document).map_err(|e| SsoError::Discovery {
            issuer: issuer.to_string(),
            reason: format!("its discovery document {url} is not one: {}", quoted(&e.to_string())),
        })?;
        let jwks = JsonWebKeySet::fetch(metadata.jwks_uri(), &http).map_err(|e| SsoError::Discovery {
            issuer: issuer.to_string(),
            reason: format!("cannot read its signing keys: {}", with_causes(&e)),
        })?;
        metadata = metadata.set_jwks(jwks);
        Ok(Provider {
            issuer: issuer.to_string(),
            client_id: client_id.to_string(),
            metadata,
            http,
        })
    }

    fn client(&self) -> DiscoveredClient {
        CoreClient::from_provider_metadata(self.metadata.clone(), ClientId::new(self.client_id.clone()), None)
    }

    fn device_url(&self) -> Option<DeviceAuthorizationUrl> {
        self.metadata
            .additional_metadata()
            .device_authorization_endpoint
            .clone()
    }

    fn revocation_url(&self) -> Option<RevocationUrl> {
        self.metadata.additional_metadata().revocation_endpoint.clone()
    }

    /// A token endpoint's refusal or failure, said in one line.
    fn token_error<RE, T>(&self, error: RequestTokenError<RE, T>) -> SsoError
    where
        RE: std::error::Error + 'static,
        T: openidconnect::ErrorResponse + std::fmt::Display + 'static,
    {
        match error {
            RequestTokenError::Request(e) => SsoError::Unreachable {
                issuer: self.issuer.clone(),
                reason: with_causes(&e),
            },
            RequestTokenError::ServerResponse(answer) => SsoError::Provider {
                issuer: self.issuer.clone(),
                reason: quoted(&answer.to_string()),
            },
            other => SsoError::Provider {
                issuer: self.issuer.clone(),
                reason: quoted(&with_causes(&other)),
            },
        }
    }

    /// Verify a token response's ID token (signature by the provider's keys, `iss`, `aud` =
    /// our client id, `exp`, and the nonce when one was sent) and keep what is stored.
    fn verified(&self, response: &CoreTokenResponse, nonce: Option<&Nonce>) -> Result<SignedIn, SsoError> {
        let id_token: &CoreIdToken = response.id_token().ok_or_else(|| SsoError::NoIdToken {
            issuer: self.issuer.clone(),
        })?;
        let client = self.client();
        let verifier = client.id_token_verifier();
        let bad = |e: &dyn std::error::Error| SsoError::BadIdToken {
            issuer: self.issuer.clone(),
            reason: quoted(&with_causes(e)),
        };
        let claims = match nonce {
            Some(nonce) => id_token.claims(&verifier, nonce).map_err(|e| bad(&e))?,
            // A refreshed or device-flow ID token answers no request of ours that had a nonce.
            None => id_token
                .claims(&verifier, |_: Option<&Nonce>| Ok(()))
                .map_err(|e| bad(&e))?,
        };
        let id_token_text = id_token.to_string();
        if let Some(problem) = crate::profiles::token_problem(&id_token_text) {
            return Err(SsoError::BadIdToken {
                issuer: self.issuer.clone(),
                reason: problem.to_string(),
            });
        }
        Ok(SignedIn {
            id_token: id_token_text,
            refresh_token: response.refresh_token().map(|t| t.secret().clone()),
            expires_at: claims.expiration(),
        })
    }
}

/// A provider's text (an error, a description, an issuer it claims) cut to a sane length;
/// escaped where it is shown (main prints every error through `render::shown`).
fn quoted(text: &str) -> String {
    let mut cut: String = text.chars().take(MAX_QUOTED_CHARS).collect();
    if cut.len() < text.len() {
        cut.push_str("...");
    }
    cut
}

fn read_limited(response: reqwest::blocking::Response) -> Result<Vec<u8>, std::io::Error> {
    let mut body = Vec::new();
    response.take(MAX_DOCUMENT_BYTES as u64 + 1).read_to_end(&mut body)?;
    if body.len() > MAX_DOCUMENT_BYTES {
        return Err(std::io::Error::other(format!(
            "the document is larger than {MAX_DOCUMENT_BYTES} bytes"
        )));
    }
    Ok(body)
}

/// `JITGATE_LOGIN_TIMEOUT` seconds (a positive whole number), else 300 s.
fn login_timeout() -> Duration {
    std::env::var("JITGATE_LOGIN_TIMEOUT")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map_or(DEFAULT_LOGIN_TIMEOUT, Duration::from_secs)
}

/// Sign in through the provider the server offers: the browser flow, or the device flow
/// with `--device` or when no browser can be opened.
pub fn sign_in(offer: &Offer, want_device: bool) -> Result<SignedIn, SsoError> {
    let provider = Provider::discover(&offer.issuer, &offer.client_id)?;
    if want_device {
        return device_flow(&provider, offer);
    }
    browser_flow(&provider, offer)
}

/// Scopes besides `openid` (openidconnect adds that one itself).
fn extra_scopes(offer: &Offer) -> impl Iterator<Item = Scope> + '_ {
    offer
        .scopes
        .iter()
        .filter(|s| s.as_str() != "openid")
        .map(|s| Scope::new(s.clone()))
}

fn browser_flow(provider: &Provider, offer: &Offer) -> Result<SignedIn, SsoError> {
    let callback = Callback::bind()?;
    let redirect = RedirectUrl::new(format!("http://127.0.0.1:{}/callback", callback.port()?))
        .map_err(|e| SsoError::Listen(std::io::Error::other(e.to_string())))?;
    let client = provider.client().set_redirect_uri(redirect);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge)
        .add_scopes(extra_scopes(offer));
    // OpenID Connect Core 11: offline_access is granted only with prompt=consent (panva's
    // provider drops the scope otherwise, and then issues no refresh token).
    if offer.scopes.iter().any(|s| s == "offline_access") {
        request = request.add_prompt(CoreAuthPrompt::Consent);
    }
    let (url, state, nonce) = request.url();
    let device_possible = offer.device && provider.device_url().is_some();
    let say_where = || {
        eprintln!(
            "Sign in to {} in your browser; if it did not open, go to:\n  {}",
            crate::render::shown(&provider.issuer),
            crate::render::shown(url.as_str())
        );
    };
    let fall_back = || {
        eprintln!("No browser could be opened: using the device flow instead.");
        device_flow(provider, offer)
    };
    match choose_opener(|name| std::env::var_os(name), cfg!(target_os = "macos")) {
        None if device_possible => return fall_back(),
        None => say_where(),
        Some(program) => {
            say_where();
            if !open_browser(&program, url.as_str()) && device_possible {
                drop(callback);
                return fall_back();
            }
        }
    }
    let code = callback.wait(state.secret(), login_timeout())?;
    let response = client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| SsoError::Discovery {
            issuer: provider.issuer.clone(),
            reason: format!("its discovery document names no token endpoint ({e})"),
        })?
        .set_pkce_verifier(verifier)
        .request(&provider.http)
        .map_err(|e| provider.token_error(e))?;
    provider.verified(&response, Some(&nonce))
}

fn device_flow(provider: &Provider, offer: &Offer) -> Result<SignedIn, SsoError> {
    if !offer.device {
        return Err(SsoError::NoDeviceFlow {
            issuer: provider.issuer.clone(),
            why: "the jitgate server's [cli] sso_device is false",
        });
    }
    let Some(device_url) = provider.device_url() else {
        return Err(SsoError::NoDeviceFlow {
            issuer: provider.issuer.clone(),
            why: "its discovery document names no device_authorization_endpoint",
        });
    };
    let client = provider.client().set_device_authorization_url(device_url);
    let details: CoreDeviceAuthorizationResponse = client
        .exchange_device_code()
        .add_scopes(extra_scopes(offer))
        .request(&provider.http)
        .map_err(|e| provider.token_error(e))?;
    eprint!(
        "{}",
        device_instructions(
            details.verification_uri().as_str(),
            details.user_code().secret(),
            details.verification_uri_complete().map(|c| c.secret().as_str()),
        )
    );
    let timeout = login_timeout();
    let started = Instant::now();
    let polled = client
        .exchange_device_access_token(&details)
        .map_err(|e| SsoError::Discovery {
            issuer: provider.issuer.clone(),
            reason: format!("its discovery document names no token endpoint ({e})"),
        })?
        // openidconnect polls at the provider's interval, 5 s slower at each slow_down.
        .request(
            &provider.http,
            std::thread::sleep,
            Some(timeout.min(details.expires_in())),
        );
    let response = match polled {
        Ok(response) => response,
        Err(RequestTokenError::ServerResponse(answer)) => {
            use openidconnect::DeviceCodeErrorResponseType as Answer;
            return Err(match answer.error() {
                Answer::ExpiredToken if started.elapsed() >= timeout => SsoError::DeviceTimeout(timeout.as_secs()),
                Answer::ExpiredToken => SsoError::DeviceExpired {
                    issuer: provider.issuer.clone(),
                },
                Answer::AccessDenied => SsoError::DeviceDenied {
                    issuer: provider.issuer.clone(),
                },
                _ => SsoError::Provider {
                    issuer: provider.issuer.clone(),
                    reason: quoted(&answer.to_string()),
                },
            });
        }
        Err(other) => return Err(provider.token_error(other)),
    };
    provider.verified(&response, None)
}

/// What the device flow tells the person, the provider's strings escaped (a user code or URL
/// with a line break or a terminal escape must not forge other lines).
fn device_instructions(uri: &str, user_code: &str, complete: Option<&str>) -> String {
    let mut text = format!(
        "To sign in, open {} and enter the code {}\n",
        crate::render::shown(uri),
        crate::render::shown(user_code)
    );
    if let Some(complete) = complete {
        text.push_str(&format!("  or open {}\n", crate::render::shown(complete)));
    }
    text
}

/// Refresh a single sign-on credential: a new ID token (verified, no nonce), and the rotated
/// refresh token when the provider rotates them.
pub fn refresh(issuer: &str, client_id: &str, refresh_token: &str) -> Result<SignedIn, SsoError> {
    let provider = Provider::discover(issuer, client_id)?;
    let client = provider.client();
    let token = RefreshToken::new(refresh_token.to_string());
    let response = client
        .exchange_refresh_token(&token)
        .map_err(|e| SsoError::Discovery {
            issuer: issuer.to_string(),
            reason: format!("its discovery document names no token endpoint ({e})"),
        })?
        .request(&provider.http)
        .map_err(|e| match e {
            RequestTokenError::ServerResponse(answer)
                if *answer.error() == openidconnect::core::CoreErrorResponseType::InvalidGrant =>
            {
                SsoError::RefreshRefused {
                    issuer: issuer.to_string(),
                }
            }
            other => provider.token_error(other),
        })?;
    let mut fresh = provider.verified(&response, None)?;
    // A provider that does not rotate sends no new one: the old one goes on.
    if fresh.refresh_token.is_none() {
        fresh.refresh_token = Some(refresh_token.to_string());
    }
    Ok(fresh)
}

/// What became of the refresh token at logout.
#[derive(Debug, PartialEq, Eq)]
pub enum Revocation {
    Revoked,
    /// The provider names no revocation endpoint.
    NotOffered,
    /// The reason it failed.
    Failed(String),
}

/// Revoke a refresh token (RFC 7009: `token`, `token_type_hint=refresh_token`, and, as a
/// public client, `client_id` in the form).
///
/// Sent with the HTTP client itself rather than openidconnect's `revoke_token`, which refuses
/// any `http://` endpoint: an `http://` issuer was accepted at login (loopback, or
/// `--insecure-http`) and its refresh tokens already travel that way; only an `http://`
/// endpoint of an `https://` issuer (a downgrade) is refused.
pub fn revoke(issuer: &str, client_id: &str, refresh_token: &str) -> Revocation {
    let provider = match Provider::discover(issuer, client_id) {
        Ok(provider) => provider,
        Err(e) => return Revocation::Failed(e.to_string().replace("; nothing was stored", "")),
    };
    let Some(endpoint) = provider.revocation_url() else {
        return Revocation::NotOffered;
    };
    let url = endpoint.url().clone();
    let secure = url.scheme() == "https" || (url.scheme() == "http" && issuer.starts_with("http://"));
    if !secure {
        return Revocation::Failed(format!(
            "its revocation endpoint {} is not https://",
            quoted(url.as_str())
        ));
    }
    let sent = provider
        .http
        .post(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .form(&[
            ("token", refresh_token),
            ("token_type_hint", "refresh_token"),
            ("client_id", client_id),
        ])
        .send();
    match sent {
        // RFC 7009 2.2: 200 whether or not the token was still valid.
        Ok(response) if response.status().is_success() => Revocation::Revoked,
        Ok(response) => {
            let status = response.status();
            let error = response
                .json::<serde_json::Value>()
                .ok()
                .and_then(|body| body.get("error").and_then(serde_json::Value::as_str).map(quoted));
            Revocation::Failed(match error {
                Some(error) => format!("it answered {status}: {error}"),
                None => format!("it answered {status}"),
            })
        }
        Err(e) => Revocation::Failed(format!("cannot reach it: {}", with_causes(&e))),
    }
}

/// Whether an ID token expiring at `expires_at` must be refreshed before it is sent at `now`.
pub fn needs_refresh(expires_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    expires_at <= now + REFRESH_MARGIN
}

/// Why [`refreshed_credential`] could not give a fresh credential.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Files(#[from] ProfileError),
    /// The credential went away while we waited for the lock (a `jitgate logout`).
    #[error("the credential was removed")]
    Gone,
    #[error(transparent)]
    Sso(#[from] SsoError),
}

/// The credential of `profile`, refreshed if it expires within [`REFRESH_MARGIN`]: under the
/// profile's lock, re-read first (another jitgate may have refreshed it while we waited: then
/// it is used as it is), else refreshed with `refresh` and stored. A credential that needs
/// no refresh, or that cannot be refreshed (no refresh token), is given back as read;
/// `refresh` gets the issuer, client id and refresh token.
pub fn refreshed_credential(
    store: &Store,
    profile: &str,
    held: Credential,
    now: DateTime<Utc>,
    refresh: impl FnOnce(&str, &str, &str) -> Result<SignedIn, SsoError>,
) -> Result<Credential, RefreshError> {
    let stale = |c: &Credential| match c {
        Credential::Oidc {
            expires_at,
            refresh_token: Some(_),
            ..
        } => needs_refresh(*expires_at, now),
        _ => false,
    };
    if !stale(&held) {
        return Ok(held);
    }
    let _lock = store.lock_credential(profile)?;
    let current = store.load_credential(profile)?.ok_or(RefreshError::Gone)?;
    if !stale(&current) {
        return Ok(current);
    }
    let Credential::Oidc {
        url,
        issuer,
        client_id,
        refresh_token: Some(refresh_token),
        ..
    } = current
    else {
        return Ok(current);
    };
    let fresh = refresh(&issuer, &client_id, &refresh_token)?;
    let credential = Credential::Oidc {
        url,
        issuer,
        client_id,
        id_token: fresh.id_token,
        refresh_token: fresh.refresh_token.or(Some(refresh_token)),
        expires_at: fresh.expires_at,
    };
    store.save_credential(profile, &credential)?;
    Ok(credential)
}

/// The program that opens a URL in the user's browser: `$BROWSER` (one program, run with the
/// URL as its only argument, never through a shell), else `open` on macOS, else `xdg-open`
/// where there is a display (`DISPLAY` or `WAYLAND_DISPLAY`). `None`: no way to open one.
pub fn choose_opener(var: impl Fn(&str) -> Option<OsString>, macos: bool) -> Option<OsString> {
    let set = |name: &str| var(name).filter(|v| !v.is_empty());
    if let Some(browser) = set("BROWSER") {
        return Some(browser);
    }
    if macos {
        return Some("open".into());
    }
    if set("DISPLAY").is_some() || set("WAYLAND_DISPLAY").is_some() {
        return Some("xdg-open".into());
    }
    None
}

/// How long an opener may take to say it failed; one still running then is a browser that
/// opened (a `$BROWSER` that is the browser itself runs until it is closed).
const OPENER_GRACE: Duration = Duration::from_secs(5);

/// Run `program URL`: `false` when it cannot start or exits non-zero.
fn open_browser(program: &OsString, url: &str) -> bool {
    let spawned = std::process::Command::new(program)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(mut child) = spawned else {
        return false;
    };
    let until = Instant::now() + OPENER_GRACE;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                // Still running: a browser. Reap it whenever it ends.
                std::thread::spawn(move || child.wait());
                return true;
            }
            Err(_) => return false,
        }
    }
}

/// The loopback listener of the browser flow (RFC 8252 7.3): 127.0.0.1 only, a port the
/// system picks, one path.
pub struct Callback {
    listener: TcpListener,
}

/// What one request to the listener came to.
#[derive(Debug, PartialEq, Eq)]
enum Answered {
    /// Not the answer we wait for (wrong state, another path, too large, too slow).
    KeepWaiting,
    Code(String),
    Refused {
        error: String,
        description: String,
    },
}

impl Callback {
    pub fn bind() -> Result<Callback, SsoError> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(SsoError::Listen)?;
        listener.set_nonblocking(true).map_err(SsoError::Listen)?;
        Ok(Callback { listener })
    }

    pub fn port(&self) -> Result<u16, SsoError> {
        Ok(self.listener.local_addr().map_err(SsoError::Listen)?.port())
    }

    /// Wait for `GET /callback?state=STATE&code=...` and give the code. A request with another
    /// or no state is answered 400 and the wait goes on: a local process must not be able to
    /// end or hijack the sign-in. With the right state, `error=` ends it.
    ///
    /// Each connection is answered on a thread of its own, so that one that sends its request
    /// slowly, or never, does not hold up the browser's. At most [`MAX_CONNECTIONS`] at once:
    /// beyond that, new ones wait in the system's queue until one ends (within
    /// [`CONNECTION_DEADLINE`]), never closed unanswered.
    pub fn wait(&self, state: &str, timeout: Duration) -> Result<String, SsoError> {
        let deadline = Instant::now() + timeout;
        let state: std::sync::Arc<str> = state.into();
        let busy = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (answers, answered) = std::sync::mpsc::channel::<Answered>();
        loop {
            if Instant::now() >= deadline {
                return Err(SsoError::BrowserTimeout(timeout.as_secs()));
            }
            while let Ok(answer) = answered.try_recv() {
                match answer {
                    Answered::KeepWaiting => {}
                    Answered::Code(code) => return Ok(code),
                    Answered::Refused { error, description } => return Err(SsoError::Refused { error, description }),
                }
            }
            if busy.load(std::sync::atomic::Ordering::SeqCst) >= MAX_CONNECTIONS {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            match self.listener.accept() {
                Ok((stream, _)) => {
                    use std::sync::atomic::Ordering;
                    busy.fetch_add(1, Ordering::SeqCst);
                    let (state, busy, answers) = (state.clone(), busy.clone(), answers.clone());
                    std::thread::spawn(move || {
                        let answer = answer(stream, &state);
                        busy.fetch_sub(1, Ordering::SeqCst);
                        let _ = answers.send(answer);
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                // A connection that went away before we took it, a signal: go on waiting.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::Interrupted | std::io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => return Err(SsoError::Listen(e)),
            }
        }
    }
}

/// Read one request head (request line and headers), at most [`MAX_REQUEST_HEAD_BYTES`] and
/// [`CONNECTION_DEADLINE`]: `None` when it is larger, `Some(partial)` when it ends early.
fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let started = Instant::now();
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        let left = CONNECTION_DEADLINE.saturating_sub(started.elapsed());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Some(head);
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return Some(head),
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > MAX_REQUEST_HEAD_BYTES {
            return None;
        }
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            return Some(head);
        }
    }
}

fn respond(stream: &mut TcpStream, status: &str, body: &str) {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nReferrer-Policy: no-referrer\r\nContent-Security-Policy: default-src 'none'\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.set_write_timeout(Some(CONNECTION_DEADLINE));
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.flush();
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Answer one connection to the listener.
fn answer(mut stream: TcpStream, state: &str) -> Answered {
    // Accepted sockets must block (with timeouts), whatever the listener is.
    if stream.set_nonblocking(false).is_err() {
        return Answered::KeepWaiting;
    }
    let Some(head) = read_head(&mut stream) else {
        respond(&mut stream, "431 Request Header Fields Too Large", TOO_LARGE_PAGE);
        return Answered::KeepWaiting;
    };
    let line_end = head.iter().position(|b| *b == b'\n').unwrap_or(head.len());
    let line = String::from_utf8_lossy(&head[..line_end]);
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if method != "GET" || path != "/callback" {
        respond(&mut stream, "404 Not Found", NOT_FOUND_PAGE);
        return Answered::KeepWaiting;
    }
    let mut params: Vec<(String, String)> = Vec::new();
    for (name, value) in reqwest::Url::parse(&format!("http://127.0.0.1/?{query}"))
        .map(|u| u.query_pairs().into_owned().collect::<Vec<_>>())
        .unwrap_or_default()
    {
        params.push((name, value));
    }
    let one = |name: &str| {
        let mut found = params.iter().filter(|(n, _)| n == name);
        match (found.next(), found.next()) {
            (Some((_, value)), None) => Some(value.clone()),
            // Missing, or repeated (which of two would be meant?).
            _ => None,
        }
    };
    if !one("state").is_some_and(|given| same_secret(&given, state)) {
        respond(&mut stream, "400 Bad Request", BAD_REQUEST_PAGE);
        return Answered::KeepWaiting;
    }
    if let Some(error) = one("error") {
        respond(&mut stream, "200 OK", REFUSED_PAGE);
        return Answered::Refused {
            error: quoted(&error),
            description: one("error_description").map_or_else(|| "no description".into(), |d| quoted(&d)),
        };
    }
    match one("code").filter(|c| !c.is_empty()) {
        Some(code) => {
            respond(&mut stream, "200 OK", SUCCESS_PAGE);
            Answered::Code(code)
        }
        None => {
            respond(&mut stream, "400 Bad Request", BAD_REQUEST_PAGE);
            Answered::KeepWaiting
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// Send `request` raw to the listener at `port`; the status line and body of the answer.
    fn send(port: u16, request: &[u8]) -> String {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = stream.write_all(request);
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    }

    fn get(port: u16, target: &str) -> String {
        send(
            port,
            format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes(),
        )
    }

    fn waiting(state: &'static str, timeout: Duration) -> (u16, std::thread::JoinHandle<Result<String, SsoError>>) {
        let callback = Callback::bind().unwrap();
        let port = callback.port().unwrap();
        (port, std::thread::spawn(move || callback.wait(state, timeout)))
    }

    #[test]
    fn the_listener_binds_loopback_only() {
        let callback = Callback::bind().unwrap();
        let addr = callback.listener.local_addr().unwrap();
        assert!(addr.ip().is_loopback(), "{addr}");
        assert_ne!(addr.port(), 0);
    }

    #[test]
    fn a_wrong_state_is_refused_and_the_right_one_then_accepted() {
        let (port, waiter) = waiting("s3cret-state", Duration::from_secs(30));
        let answer = get(port, "/callback?state=guess&code=evil");
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        let answer = get(port, "/callback?code=evil");
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        // A repeated state is not the state.
        let answer = get(port, "/callback?state=s3cret-state&state=x&code=evil");
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        // Another path, another method: 404, and the wait goes on.
        for target in ["/", "/callback/x?state=s3cret-state&code=evil", "/favicon.ico"] {
            let answer = get(port, target);
            assert!(answer.starts_with("HTTP/1.1 404"), "{target}: {answer}");
        }
        let answer = send(
            port,
            format!("POST /callback?state=s3cret-state&code=evil HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")
                .as_bytes(),
        );
        assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
        // A request line larger than the limit is refused unread.
        let huge = format!(
            "GET /callback?state={} HTTP/1.1\r\n\r\n",
            "x".repeat(MAX_REQUEST_HEAD_BYTES)
        );
        let answer = send(port, huge.as_bytes());
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
        // A connection that says nothing does not stop the wait.
        let silent = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
        drop(silent);
        let answer = get(port, "/callback?state=s3cret-state&code=the-code");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("text/html"), "{answer}");
        assert!(answer.contains(SUCCESS_PAGE), "{answer}");
        assert!(!answer.contains("<script"), "{answer}");
        assert_eq!(waiter.join().unwrap().unwrap(), "the-code");
    }

    #[test]
    fn slow_silent_and_hostile_connections_do_not_hold_up_the_browsers_answer() {
        let (port, waiter) = waiting("st", Duration::from_secs(30));
        // More connections than are answered at once, each sending half a request line and
        // then nothing: a sequential listener would spend its whole deadline on each in turn.
        let mut slow = Vec::new();
        for _ in 0..MAX_CONNECTIONS + 4 {
            let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
            stream.write_all(b"GET /callback?sta").unwrap();
            slow.push(stream);
        }
        // The browser's answer behind them waits in the queue, is not dropped, and is taken
        // once the first of them end (one deadline), not after all of them.
        let started = Instant::now();
        let answer = get(port, "/callback?state=wrong&code=x");
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(started.elapsed() < CONNECTION_DEADLINE * 2, "{:?}", started.elapsed());
        // A NUL byte, a look-alike (Cyrillic 's') or an invisible character in the state is
        // not the state.
        for target in [
            "/callback?state=st%00&code=evil",
            "/callback?state=%D1%95t&code=evil",
            "/callback?state=s%E2%80%8Bt&code=evil",
            "/callback?state=ST&code=evil",
            "/call%00back?state=st&code=evil",
        ] {
            let answer = get(port, target);
            assert!(
                answer.starts_with("HTTP/1.1 400") || answer.starts_with("HTTP/1.1 404"),
                "{target}: {answer}"
            );
        }
        let started = Instant::now();
        let answer = get(port, "/callback?state=st&code=the-code");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(waiter.join().unwrap().unwrap(), "the-code");
        drop(slow);
    }

    #[test]
    fn a_slow_connection_does_not_delay_another() {
        let (port, waiter) = waiting("st", Duration::from_secs(30));
        let mut slow = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
        slow.write_all(b"GET /callback?state=st&co").unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let started = Instant::now();
        let answer = get(port, "/callback?state=st&code=the-code");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        assert_eq!(waiter.join().unwrap().unwrap(), "the-code");
    }

    #[test]
    fn an_error_with_the_right_state_ends_the_wait_in_one_escaped_line() {
        let (port, waiter) = waiting("st", Duration::from_secs(30));
        // The wrong state with an error does not end it.
        let answer = get(port, "/callback?state=no&error=access_denied");
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        let answer = get(
            port,
            "/callback?state=st&error=access_denied&error_description=no%0Aerror%3A%20fake%1b%5B31m%E2%80%AEred",
        );
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let e = waiter.join().unwrap().unwrap_err();
        let line = crate::render::shown(&e.to_string()).into_owned();
        assert!(
            line.starts_with(
                "the identity provider refused the sign-in: access_denied (no\\nerror: fake\\x1b[31m\\u{202e}red)"
            ),
            "{line}"
        );
        assert!(!line.chars().any(|c| c.is_control()), "{line}");
    }

    #[test]
    fn the_wait_ends_after_the_timeout() {
        let callback = Callback::bind().unwrap();
        let started = Instant::now();
        let e = callback.wait("st", Duration::from_secs(1)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(
            e.to_string(),
            "gave up waiting for the browser after 1 s: run jitgate login again (or --device)"
        );
    }

    #[test]
    fn the_opener_is_browser_then_open_on_macos_then_xdg_open_with_a_display() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| OsString::from(v))
        };
        assert_eq!(
            choose_opener(env(&[("BROWSER", "/usr/bin/firefox"), ("DISPLAY", ":0")]), false),
            Some("/usr/bin/firefox".into())
        );
        assert_eq!(
            choose_opener(env(&[("BROWSER", "my browser; rm -rf ~")]), true),
            Some("my browser; rm -rf ~".into())
        );
        assert_eq!(choose_opener(env(&[]), true), Some("open".into()));
        assert_eq!(choose_opener(env(&[("DISPLAY", ":0")]), false), Some("xdg-open".into()));
        assert_eq!(
            choose_opener(env(&[("WAYLAND_DISPLAY", "wayland-0")]), false),
            Some("xdg-open".into())
        );
        assert_eq!(choose_opener(env(&[]), false), None);
        assert_eq!(choose_opener(env(&[("BROWSER", ""), ("DISPLAY", "")]), false), None);
    }

    #[test]
    fn an_opener_that_cannot_start_or_fails_is_a_failure() {
        let url = "http://127.0.0.1:1/x?a=1&b=$(touch /tmp/never)";
        assert!(!open_browser(&"/nonexistent/browser".into(), url));
        assert!(!open_browser(&"false".into(), url));
        assert!(open_browser(&"true".into(), url));
    }

    #[test]
    fn the_device_instructions_are_two_lines_with_the_providers_strings_escaped() {
        assert_eq!(
            device_instructions("https://idp/device", "WDJB-MJHT", Some("https://idp/device?user_code=WDJB-MJHT")),
            "To sign in, open https://idp/device and enter the code WDJB-MJHT\n  or open https://idp/device?user_code=WDJB-MJHT\n"
        );
        assert_eq!(
            device_instructions("https://idp/device", "AB\nSigned in to x\u{1b}[2K\u{202e}", None),
            "To sign in, open https://idp/device and enter the code AB\\nSigned in to x\\x1b[2K\\u{202e}\n"
        );
    }

    #[test]
    fn the_refresh_margin_is_ten_seconds() {
        let now = Utc::now();
        assert!(needs_refresh(now, now));
        assert!(needs_refresh(now + chrono::TimeDelta::seconds(10), now));
        assert!(!needs_refresh(now + chrono::TimeDelta::seconds(11), now));
        assert!(needs_refresh(now - chrono::TimeDelta::days(1), now));
    }

    fn oidc(id_token: &str, refresh: Option<&str>, expires_at: DateTime<Utc>) -> Credential {
        Credential::Oidc {
            url: Some("https://jit.example".into()),
            issuer: "https://idp.example".into(),
            client_id: "jitgate-cli".into(),
            id_token: id_token.into(),
            refresh_token: refresh.map(str::to_string),
            expires_at,
        }
    }

    #[test]
    fn the_credential_is_re_read_under_the_lock_and_refreshed_once() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path().join("jitgate"));
        let now = Utc::now();
        let stale = oidc("old-id", Some("r1"), now + chrono::TimeDelta::seconds(5));
        store.save_credential("p", &stale).unwrap();
        // Another jitgate refreshed it while we read the old one: used as it is, no refresh.
        let fresh = oidc("new-id", Some("r2"), now + chrono::TimeDelta::minutes(5));
        store.save_credential("p", &fresh).unwrap();
        let got = refreshed_credential(&store, "p", stale.clone(), now, |_, _, _| {
            panic!("refreshed although another jitgate had")
        })
        .unwrap();
        assert_eq!(got, fresh);
        let lock = store.dir().join("credentials").join("p.lock");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::symlink_metadata(&lock).unwrap().mode() & 0o777, 0o600);

        // Two at once with the stale one in hand: one refreshes, the other waits and re-reads.
        store.save_credential("p", &stale).unwrap();
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let dir = tmp.path().join("jitgate");
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (calls, dir, stale) = (calls.clone(), dir.clone(), stale.clone());
                std::thread::spawn(move || {
                    let store = Store::new(dir);
                    refreshed_credential(&store, "p", stale, now, |issuer, client, refresh| {
                        assert_eq!((issuer, client, refresh), ("https://idp.example", "jitgate-cli", "r1"));
                        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(300));
                        Ok(SignedIn {
                            id_token: "rotated-id".into(),
                            refresh_token: Some("r2".into()),
                            expires_at: now + chrono::TimeDelta::minutes(5),
                        })
                    })
                    .unwrap()
                })
            })
            .collect();
        for thread in threads {
            assert_eq!(thread.join().unwrap().bearer(), "rotated-id");
        }
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        match store.load_credential("p").unwrap().unwrap() {
            Credential::Oidc { refresh_token, .. } => assert_eq!(refresh_token.as_deref(), Some("r2")),
            other => panic!("{other:?}"),
        }

        // Nothing to do: fresh, or no refresh token to refresh with.
        let far = oidc("id", Some("r"), now + chrono::TimeDelta::minutes(1));
        assert_eq!(
            refreshed_credential(&store, "p", far.clone(), now, |_, _, _| panic!()).unwrap(),
            far
        );
        let none = oidc("id", None, now - chrono::TimeDelta::minutes(1));
        assert_eq!(
            refreshed_credential(&store, "p", none.clone(), now, |_, _, _| panic!()).unwrap(),
            none
        );
        // A refusal leaves the stored credential as it was.
        store.save_credential("p", &stale).unwrap();
        let e = refreshed_credential(&store, "p", stale.clone(), now, |issuer, _, _| {
            Err(SsoError::RefreshRefused { issuer: issuer.into() })
        })
        .unwrap_err();
        assert!(matches!(e, RefreshError::Sso(SsoError::RefreshRefused { .. })), "{e:?}");
        assert_eq!(store.load_credential("p").unwrap(), Some(stale));
    }

    #[test]
    fn a_lock_file_that_is_a_symbolic_link_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path().join("jitgate"));
        store.save_credential("p", &oidc("id", Some("r"), Utc::now())).unwrap();
        let target = tmp.path().join("elsewhere");
        std::fs::write(&target, "").unwrap();
        std::os::unix::fs::symlink(&target, store.dir().join("credentials").join("p.lock")).unwrap();
        assert!(matches!(store.lock_credential("p"), Err(ProfileError::NotAFile { .. })));
    }

    #[test]
    fn the_issuer_mismatch_says_both_and_that_nothing_was_stored() {
        let e = SsoError::IssuerMismatch {
            issuer: "http://127.0.0.1:1".into(),
            named: "http://evil\u{1b}[0m".into(),
        };
        let line = crate::render::shown(&e.to_string()).into_owned();
        assert_eq!(
            line,
            "the identity provider at http://127.0.0.1:1 names itself http://evil\\x1b[0m: refusing to sign in (ask the jitgate admin to fix [cli] sso_issuer); nothing was stored"
        );
    }
}
