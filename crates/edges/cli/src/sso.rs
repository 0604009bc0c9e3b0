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
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm, CoreResponseMode,
    CoreResponseType, CoreSubjectIdentifierType, CoreTokenResponse,
};
use openidconnect::{
    AdditionalProviderMetadata, AuthorizationCode, ClientId, CsrfToken, DeviceAuthorizationUrl, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, HttpClientError, HttpRequest, HttpResponse, JsonWebKeySet, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, ProviderMetadata, RedirectUrl, RefreshToken, RequestTokenError, RevocationUrl, Scope,
    SyncHttpClient, TokenResponse,
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
/// process that opens a connection and sends nothing must not stall the login. A browser
/// sends its request at once.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(1);
/// Any answer of the provider (the discovery document, the JWKS, the token and device
/// answers): anything bigger is not a provider's, and is not read further.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// The longest polling interval of the device flow the CLI accepts: a provider asking for a
/// longer one would keep the terminal waiting past any sensible sign-in.
const MAX_DEVICE_INTERVAL: Duration = Duration::from_secs(60);
/// The longest `JITGATE_LOGIN_TIMEOUT` taken: a day. Beyond that the deadline could overflow.
const MAX_LOGIN_TIMEOUT: Duration = Duration::from_secs(86_400);
/// The signing algorithms an ID token may use: the asymmetric ones the jitgate server can be
/// set to accept (its `ASYMMETRIC_ALGORITHMS`; by default RS256, ES256 and EdDSA), as far as
/// the provider's discovery document offers them. Never HS* (the client has no secret) or
/// `none`.
const ACCEPTED_ALGORITHMS: [CoreJwsSigningAlgorithm; 9] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];
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
    /// The ID token's `sub`: a refresh must give an ID token for the same one.
    pub subject: String,
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

/// The HTTP client for the provider: no redirects, bounded in time, and (as openidconnect's
/// HTTP client) bounded in size: oauth2's own client for reqwest reads a whole answer however
/// large, so a token endpoint or JWKS that streams would fill memory for [`HTTP_TIMEOUT`].
pub struct ProviderHttp(reqwest::blocking::Client);

fn http_client() -> Result<ProviderHttp, SsoError> {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .timeout(HTTP_TIMEOUT)
        .build()
        .map(ProviderHttp)
        .map_err(|e| SsoError::Discovery {
            issuer: "-".into(),
            reason: format!("cannot make an HTTP client: {}", with_causes(&e)),
        })
}

impl SyncHttpClient for ProviderHttp {
    type Error = HttpClientError<reqwest::Error>;

    fn call(&self, request: HttpRequest) -> Result<HttpResponse, Self::Error> {
        let request: reqwest::blocking::Request = request.try_into().map_err(Box::new)?;
        let response = self.0.execute(request).map_err(Box::new)?;
        let mut builder = openidconnect::http::Response::builder()
            .status(response.status())
            .version(response.version());
        for (name, value) in response.headers() {
            builder = builder.header(name, value);
        }
        let body = read_limited(response)?;
        builder.body(body).map_err(HttpClientError::Http)
    }
}

/// The provider metadata of a discovery document fetched from `url` for `issuer`. The
/// document's `issuer` must be exactly `issuer` (OpenID Connect Discovery 4.3): else a
/// provider could speak for another, and its ID tokens would not be accepted by the server
/// anyway. Under an `https://` issuer every endpoint used must be `https://` too: an `http://`
/// token endpoint (a proxy that builds its links from the request's scheme) would carry the
/// code, the PKCE verifier and every refresh token in clear text, and an `http://` JWKS would
/// let anyone on the way swap the keys ID tokens are checked with. `http://` endpoints go
/// only with an `http://` issuer (loopback, or `--insecure-http`), as in [`revoke`].
fn metadata_of(issuer: &str, url: &str, document: serde_json::Value) -> Result<Metadata, SsoError> {
    let named = document.get("issuer").and_then(serde_json::Value::as_str);
    if named != Some(issuer) {
        return Err(SsoError::IssuerMismatch {
            issuer: issuer.to_string(),
            named: named.map_or_else(|| "nothing (no issuer in its discovery document)".into(), quoted),
        });
    }
    let metadata: Metadata = serde_json::from_value(document).map_err(|e| SsoError::Discovery {
        issuer: issuer.to_string(),
        reason: format!("its discovery document {url} is not one: {}", quoted(&e.to_string())),
    })?;
    let more = metadata.additional_metadata();
    let endpoints = [
        ("authorization_endpoint", Some(metadata.authorization_endpoint().url())),
        ("token_endpoint", metadata.token_endpoint().map(|e| e.url())),
        ("jwks_uri", Some(metadata.jwks_uri().url())),
        (
            "device_authorization_endpoint",
            more.device_authorization_endpoint.as_ref().map(|e| e.url()),
        ),
    ];
    for (name, endpoint) in endpoints {
        let Some(endpoint) = endpoint else { continue };
        if !endpoint_secure(issuer, endpoint) {
            return Err(SsoError::Discovery {
                issuer: issuer.to_string(),
                reason: format!(
                    "its {name} {} is not https:// although the issuer is",
                    quoted(endpoint.as_str())
                ),
            });
        }
    }
    Ok(metadata)
}

/// Whether an endpoint of `issuer` may be used: `https://`, or `http://` when the issuer
/// itself is `http://` (its tokens travel in clear text anyway; allowed only for loopback or
/// with `--insecure-http`).
fn endpoint_secure(issuer: &str, endpoint: &reqwest::Url) -> bool {
    endpoint.scheme() == "https" || (endpoint.scheme() == "http" && issuer.starts_with("http://"))
}

/// An identity provider, discovered.
pub struct Provider {
    issuer: String,
    client_id: String,
    metadata: Metadata,
    http: ProviderHttp,
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
            .0
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
        let metadata = metadata_of(issuer, &url, document)?;
        let jwks = JsonWebKeySet::fetch(metadata.jwks_uri(), &http).map_err(|e| SsoError::Discovery {
            issuer: issuer.to_string(),
            reason: format!("cannot read its signing keys: {}", with_causes(&e)),
        })?;
        let metadata = metadata.set_jwks(jwks);
        Ok(Provider {
            issuer: issuer.to_string(),
            client_id: client_id.to_string(),
            metadata,
            http,
        })
    }

    /// The signing algorithms accepted for this provider's ID tokens: those of
    /// [`ACCEPTED_ALGORITHMS`] its discovery document lists.
    fn accepted_algorithms(&self) -> Vec<CoreJwsSigningAlgorithm> {
        let offered = self.metadata.id_token_signing_alg_values_supported();
        ACCEPTED_ALGORITHMS
            .iter()
            .filter(|alg| offered.contains(alg))
            .cloned()
            .collect()
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

    /// Verify a token response's ID token (signature by the provider's keys with one of the
    /// [`accepted_algorithms`](Self::accepted_algorithms), `iss`, `aud` = our client id, `exp`,
    /// the nonce when one was sent, and, for a refresh, the `sub` of the session it refreshes,
    /// as OpenID Connect Core 12.2 requires) and keep what is stored.
    fn verified(
        &self,
        response: &CoreTokenResponse,
        nonce: Option<&Nonce>,
        subject: Option<&str>,
    ) -> Result<SignedIn, SsoError> {
        let id_token: &CoreIdToken = response.id_token().ok_or_else(|| SsoError::NoIdToken {
            issuer: self.issuer.clone(),
        })?;
        let client = self.client();
        let verifier = client.id_token_verifier().set_allowed_algs(self.accepted_algorithms());
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
        let got_subject = claims.subject().as_str();
        if let Some(subject) = subject {
            if got_subject != subject {
                return Err(SsoError::BadIdToken {
                    issuer: self.issuer.clone(),
                    reason: format!(
                        "it names the subject {}, not {} of the session it refreshes",
                        quoted(got_subject),
                        quoted(subject)
                    ),
                });
            }
        }
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
            subject: got_subject.to_string(),
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
    // A Content-Length that says too much is refused before anything is read.
    if response.content_length().is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64) {
        return Err(std::io::Error::other(format!(
            "the answer is larger than {MAX_DOCUMENT_BYTES} bytes"
        )));
    }
    let mut body = Vec::new();
    response.take(MAX_DOCUMENT_BYTES as u64 + 1).read_to_end(&mut body)?;
    if body.len() > MAX_DOCUMENT_BYTES {
        return Err(std::io::Error::other(format!(
            "the answer is larger than {MAX_DOCUMENT_BYTES} bytes"
        )));
    }
    Ok(body)
}

/// `JITGATE_LOGIN_TIMEOUT` seconds (a positive whole number, at most a day), else 300 s.
fn login_timeout() -> Duration {
    parse_login_timeout(std::env::var("JITGATE_LOGIN_TIMEOUT").ok().as_deref())
}

/// A timeout in seconds as `JITGATE_LOGIN_TIMEOUT` gives it: a longer one than
/// [`MAX_LOGIN_TIMEOUT`] is cut to that (a deadline far in the future would overflow
/// `Instant`), anything but a positive whole number is the default.
fn parse_login_timeout(value: Option<&str>) -> Duration {
    value
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map_or(DEFAULT_LOGIN_TIMEOUT, |s| Duration::from_secs(s).min(MAX_LOGIN_TIMEOUT))
}

/// Sign in through the provider the server offers: the browser flow, or the device flow
/// with `--device` or when no browser can be opened.
pub fn sign_in(offer: &Offer, want_device: bool) -> Result<SignedIn, SsoError> {
    let provider = Provider::discover(&offer.issuer, &offer.client_id)?;
    let timeout = login_timeout();
    if want_device {
        return device_flow(&provider, offer, timeout);
    }
    browser_flow(&provider, offer, timeout)
}

/// Scopes besides `openid` (openidconnect adds that one itself).
fn extra_scopes(offer: &Offer) -> impl Iterator<Item = Scope> + '_ {
    offer
        .scopes
        .iter()
        .filter(|s| s.as_str() != "openid")
        .map(|s| Scope::new(s.clone()))
}

fn browser_flow(provider: &Provider, offer: &Offer, timeout: Duration) -> Result<SignedIn, SsoError> {
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
        device_flow(provider, offer, timeout)
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
    let code = callback.wait(state.secret(), timeout)?;
    let response = client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| SsoError::Discovery {
            issuer: provider.issuer.clone(),
            reason: format!("its discovery document names no token endpoint ({e})"),
        })?
        .set_pkce_verifier(verifier)
        .request(&provider.http)
        .map_err(|e| provider.token_error(e))?;
    provider.verified(&response, Some(&nonce), None)
}

fn device_flow(provider: &Provider, offer: &Offer, timeout: Duration) -> Result<SignedIn, SsoError> {
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
    // oauth2 sleeps the provider's interval between polls whatever the timeout, and adds 5 s
    // at each slow_down (which overflows, a panic, for an absurd interval).
    if details.interval() > MAX_DEVICE_INTERVAL {
        return Err(SsoError::Provider {
            issuer: provider.issuer.clone(),
            reason: format!(
                "it asks to be polled every {} s, more than the {} s jitgate waits between polls",
                details.interval().as_secs(),
                MAX_DEVICE_INTERVAL.as_secs()
            ),
        });
    }
    eprint!(
        "{}",
        device_instructions(
            details.verification_uri().as_str(),
            details.user_code().secret(),
            details.verification_uri_complete().map(|c| c.secret().as_str()),
        )
    );
    let started = Instant::now();
    let deadline = started + timeout;
    // Never sleep past the deadline: the poll after it is refused as expired.
    let sleep =
        |interval: Duration| std::thread::sleep(interval.min(deadline.saturating_duration_since(Instant::now())));
    let polled = client
        .exchange_device_access_token(&details)
        .map_err(|e| SsoError::Discovery {
            issuer: provider.issuer.clone(),
            reason: format!("its discovery document names no token endpoint ({e})"),
        })?
        // openidconnect polls at the provider's interval, 5 s slower at each slow_down.
        .request(&provider.http, sleep, Some(timeout.min(details.expires_in())));
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
    provider.verified(&response, None, None)
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

/// A refresh that failed, with the refresh token the provider rotated to if it answered
/// before the failure (an ID token that does not verify, or none): the provider has spent the
/// old one, so the new one must be kept, or the next refresh would present a spent token and a
/// provider that detects reuse would end the whole session. `Debug` never shows the token.
pub struct RefreshFailed {
    pub error: SsoError,
    pub rotated_refresh_token: Option<String>,
}

impl From<SsoError> for RefreshFailed {
    fn from(error: SsoError) -> Self {
        RefreshFailed {
            error,
            rotated_refresh_token: None,
        }
    }
}

impl std::fmt::Debug for RefreshFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshFailed")
            .field("error", &self.error)
            .field("rotated", &self.rotated_refresh_token.is_some())
            .finish()
    }
}

/// The session a refresh continues: what the stored credential says of it.
pub struct OidcSession<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub refresh_token: &'a str,
    /// The `sub` of its ID tokens (`None` in a credential an older jitgate stored).
    pub subject: Option<&'a str>,
}

/// Refresh a single sign-on credential: a new ID token (verified, no nonce, the same `sub`),
/// and the rotated refresh token when the provider rotates them.
pub fn refresh(session: &OidcSession<'_>) -> Result<SignedIn, RefreshFailed> {
    let OidcSession {
        issuer,
        client_id,
        refresh_token,
        subject,
    } = *session;
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
    let mut fresh = provider
        .verified(&response, None, subject)
        .map_err(|error| RefreshFailed {
            error,
            rotated_refresh_token: response.refresh_token().map(|t| t.secret().clone()),
        })?;
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
    if !endpoint_secure(issuer, &url) {
        return Revocation::Failed(format!(
            "its revocation endpoint {} is not https://",
            quoted(url.as_str())
        ));
    }
    let sent = provider
        .http
        .0
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
    /// Another credential (another `jitgate login`) took its place while we waited for the
    /// lock: the server this command chose was the old credential's, so the new one is not
    /// sent there.
    #[error("the credential changed")]
    Changed,
    #[error(transparent)]
    Sso(#[from] SsoError),
}

/// Whether two credentials are for the same server and session: same kind, same jitgate
/// server, and for single sign-on the same issuer and client (the tokens may differ: one may
/// be the other refreshed).
fn same_binding(a: &Credential, b: &Credential) -> bool {
    match (a, b) {
        (
            Credential::Oidc {
                url: url_a,
                issuer: issuer_a,
                client_id: client_a,
                ..
            },
            Credential::Oidc {
                url: url_b,
                issuer: issuer_b,
                client_id: client_b,
                ..
            },
        ) => url_a == url_b && issuer_a == issuer_b && client_a == client_b,
        (Credential::Token { url: url_a, .. }, Credential::Token { url: url_b, .. }) => url_a == url_b,
        _ => false,
    }
}

/// The credential of `profile`, refreshed if it expires within [`REFRESH_MARGIN`]: under the
/// profile's lock, re-read first (another jitgate may have refreshed it while we waited: then
/// it is used as it is), else refreshed with `refresh` and stored. A credential that needs
/// no refresh, or that cannot be refreshed (no refresh token), is given back as read.
///
/// The re-read one must be for the server and session of `held` (the caller chose the server
/// from `held`), else [`RefreshError::Changed`]. A refresh that failed after the provider
/// rotated the refresh token stores the new refresh token (with the old ID token) before the
/// error is given.
pub fn refreshed_credential(
    store: &Store,
    profile: &str,
    held: Credential,
    now: DateTime<Utc>,
    refresh: impl FnOnce(&OidcSession<'_>) -> Result<SignedIn, RefreshFailed>,
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
    if !same_binding(&held, &current) {
        return Err(RefreshError::Changed);
    }
    if !stale(&current) {
        return Ok(current);
    }
    let Credential::Oidc {
        url,
        issuer,
        client_id,
        id_token,
        refresh_token: Some(refresh_token),
        expires_at,
        subject,
    } = current
    else {
        return Ok(current);
    };
    let session = OidcSession {
        issuer: &issuer,
        client_id: &client_id,
        refresh_token: &refresh_token,
        subject: subject.as_deref(),
    };
    let fresh = match refresh(&session) {
        Ok(fresh) => fresh,
        Err(RefreshFailed {
            error,
            rotated_refresh_token: Some(rotated),
        }) => {
            let kept = Credential::Oidc {
                url,
                issuer,
                client_id,
                id_token,
                refresh_token: Some(rotated),
                expires_at,
                subject,
            };
            store.save_credential(profile, &kept)?;
            return Err(RefreshError::Sso(error));
        }
        Err(RefreshFailed { error, .. }) => return Err(RefreshError::Sso(error)),
    };
    let credential = Credential::Oidc {
        url,
        issuer,
        client_id,
        id_token: fresh.id_token,
        refresh_token: fresh.refresh_token.or(Some(refresh_token)),
        expires_at: fresh.expires_at,
        // An older jitgate's credential learns its subject at its first refresh.
        subject: subject.or(Some(fresh.subject)),
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
    /// slowly, or never, does not hold up the browser's. At most [`MAX_CONNECTIONS`] are read
    /// at once; a new one beyond that is still taken at once, and the oldest one still being
    /// read is closed unanswered: a local process that keeps many connections open and silent
    /// must not keep the browser's waiting in the system's queue (each of its connections
    /// would hold a slot for [`CONNECTION_DEADLINE`]), and the browser sends its request as
    /// soon as it connects.
    pub fn wait(&self, state: &str, timeout: Duration) -> Result<String, SsoError> {
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::{Arc, Mutex};
        let deadline = Instant::now()
            .checked_add(timeout)
            .unwrap_or_else(|| Instant::now() + MAX_LOGIN_TIMEOUT);
        let state: Arc<str> = state.into();
        // The connections being read, oldest first: (number, a handle to close it with).
        let reading: Arc<Mutex<std::collections::VecDeque<(u64, TcpStream)>>> = Arc::default();
        let numbers = AtomicU64::new(0);
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
            match self.listener.accept() {
                Ok((stream, _)) => {
                    let number = numbers.fetch_add(1, Ordering::SeqCst);
                    let Ok(handle) = stream.try_clone() else {
                        continue;
                    };
                    if let Ok(mut reading) = reading.lock() {
                        while reading.len() >= MAX_CONNECTIONS {
                            if let Some((_, oldest)) = reading.pop_front() {
                                let _ = oldest.shutdown(std::net::Shutdown::Both);
                            }
                        }
                        reading.push_back((number, handle));
                    }
                    let (state, reading, answers) = (state.clone(), reading.clone(), answers.clone());
                    std::thread::spawn(move || {
                        let answer = answer(stream, &state);
                        if let Ok(mut reading) = reading.lock() {
                            reading.retain(|(n, _)| *n != number);
                        }
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
        // The browser's answer after them is not dropped: taking it closes the oldest of
        // them (at most MAX_CONNECTIONS are read at once), so it is read at once, well within
        // two deadlines, not after all of them.
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
            subject: Some("carol".into()),
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
        let got = refreshed_credential(&store, "p", stale.clone(), now, |_| {
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
                    refreshed_credential(&store, "p", stale, now, |session| {
                        assert_eq!(
                            (
                                session.issuer,
                                session.client_id,
                                session.refresh_token,
                                session.subject
                            ),
                            ("https://idp.example", "jitgate-cli", "r1", Some("carol"))
                        );
                        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(300));
                        Ok(SignedIn {
                            id_token: "rotated-id".into(),
                            refresh_token: Some("r2".into()),
                            expires_at: now + chrono::TimeDelta::minutes(5),
                            subject: "carol".into(),
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
            refreshed_credential(&store, "p", far.clone(), now, |_| panic!()).unwrap(),
            far
        );
        let none = oidc("id", None, now - chrono::TimeDelta::minutes(1));
        assert_eq!(
            refreshed_credential(&store, "p", none.clone(), now, |_| panic!()).unwrap(),
            none
        );
        // A refusal leaves the stored credential as it was.
        store.save_credential("p", &stale).unwrap();
        let e = refreshed_credential(&store, "p", stale.clone(), now, |session| {
            Err(SsoError::RefreshRefused {
                issuer: session.issuer.into(),
            }
            .into())
        })
        .unwrap_err();
        assert!(matches!(e, RefreshError::Sso(SsoError::RefreshRefused { .. })), "{e:?}");
        assert_eq!(store.load_credential("p").unwrap(), Some(stale));
    }

    /// A fresh single sign-on credential like [`oidc`]'s, with `change` applied to its server,
    /// issuer and client id.
    fn changed(change: impl FnOnce(&mut Option<String>, &mut String, &mut String)) -> Credential {
        let mut credential = oidc("other-id", Some("o1"), Utc::now() + chrono::TimeDelta::minutes(5));
        if let Credential::Oidc {
            url, issuer, client_id, ..
        } = &mut credential
        {
            change(url, issuer, client_id);
        }
        credential
    }

    #[test]
    fn a_credential_that_changed_while_waiting_for_the_lock_is_not_given_back() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path().join("jitgate"));
        let now = Utc::now();
        let stale = oidc("old-id", Some("r1"), now + chrono::TimeDelta::seconds(5));
        // Meanwhile `jitgate login` stored a token for another server, or single sign-on
        // with another server, issuer or client: none of them is sent where `stale` was bound.
        let fresh = now + chrono::TimeDelta::minutes(5);
        let others = [
            Credential::Token {
                url: Some("https://jit-prod.example".into()),
                token: "prod-token".into(),
            },
            Credential::Token {
                url: Some("https://jit.example".into()),
                token: "api-token".into(),
            },
            changed(|url, _, _| *url = Some("https://jit-prod.example".into())),
            changed(|_, issuer, _| *issuer = "https://other-idp.example".into()),
            changed(|_, _, client| *client = "another-client".into()),
        ];
        for other in others {
            store.save_credential("p", &other).unwrap();
            let got = refreshed_credential(&store, "p", stale.clone(), now, |_| panic!("refreshed"));
            assert!(matches!(got, Err(RefreshError::Changed)), "{other:?}: {got:?}");
            assert_eq!(store.load_credential("p").unwrap(), Some(other));
        }
        // The same session refreshed by another jitgate is used as it is.
        let refreshed = oidc("new-id", Some("r2"), fresh);
        store.save_credential("p", &refreshed).unwrap();
        assert_eq!(
            refreshed_credential(&store, "p", stale, now, |_| panic!("refreshed")).unwrap(),
            refreshed
        );
    }

    #[test]
    fn a_refresh_that_fails_after_the_provider_rotated_stores_the_new_refresh_token() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path().join("jitgate"));
        let now = Utc::now();
        let stale = oidc("old-id", Some("r1"), now + chrono::TimeDelta::seconds(5));
        store.save_credential("p", &stale).unwrap();
        let e = refreshed_credential(&store, "p", stale.clone(), now, |session| {
            Err(RefreshFailed {
                error: SsoError::NoIdToken {
                    issuer: session.issuer.into(),
                },
                rotated_refresh_token: Some("r2".into()),
            })
        })
        .unwrap_err();
        assert!(matches!(e, RefreshError::Sso(SsoError::NoIdToken { .. })), "{e:?}");
        // The old ID token and its expiry, the new refresh token.
        assert_eq!(
            store.load_credential("p").unwrap(),
            Some(oidc("old-id", Some("r2"), stale_expiry(&stale)))
        );
        // The next refresh presents r2, not the spent r1.
        let got = refreshed_credential(&store, "p", stale, now, |session| {
            assert_eq!(session.refresh_token, "r2");
            Ok(SignedIn {
                id_token: "new-id".into(),
                refresh_token: Some("r3".into()),
                expires_at: now + chrono::TimeDelta::minutes(5),
                subject: "carol".into(),
            })
        })
        .unwrap();
        assert_eq!(got.bearer(), "new-id");
    }

    fn stale_expiry(credential: &Credential) -> DateTime<Utc> {
        match credential {
            Credential::Oidc { expires_at, .. } => *expires_at,
            Credential::Token { .. } => panic!("not oidc"),
        }
    }

    #[test]
    fn many_silent_connections_do_not_keep_the_browser_waiting() {
        let (port, waiter) = waiting("st", Duration::from_secs(30));
        // Far more connections than are read at once, each silent after half a request line,
        // still open: the browser's answer behind them is read at once, not after the first
        // of them time out.
        let mut silent = Vec::new();
        for _ in 0..MAX_CONNECTIONS * 4 {
            let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
            stream.write_all(b"GET /callback?sta").unwrap();
            silent.push(stream);
        }
        // The defect this guards against (the browser's answer read only after the silent
        // connections ahead of it run out their deadlines) costs at least one deadline per
        // MAX_CONNECTIONS of them: 4 s here, and more on a slower machine. The right behaviour
        // takes milliseconds; the bound leaves a loaded 2-core CI ample room below the defect's
        // cost, so that machine speed decides nothing.
        let defect_costs = CONNECTION_DEADLINE * u32::try_from(silent.len() / MAX_CONNECTIONS).unwrap();
        let bound = Duration::from_secs(3);
        assert!(
            bound < defect_costs,
            "{bound:?} would not tell the defect: {defect_costs:?}"
        );
        let started = Instant::now();
        let answer = get(port, "/callback?state=st&code=the-code");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(started.elapsed() < bound, "{:?}", started.elapsed());
        assert_eq!(waiter.join().unwrap().unwrap(), "the-code");
        drop(silent);
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

/// A small HTTP server on 127.0.0.1 for tests: what a hostile or broken provider (or jitgate
/// server) answers, which the honest test provider never does.
#[cfg(test)]
pub(crate) mod stub {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, TcpListener};

    /// An answer: status, extra headers, body.
    pub struct Reply {
        pub status: u16,
        pub headers: Vec<(&'static str, String)>,
        pub body: Vec<u8>,
    }

    impl Reply {
        pub fn json(status: u16, body: &serde_json::Value) -> Reply {
            Reply {
                status,
                headers: vec![("Content-Type", "application/json".into())],
                body: body.to_string().into_bytes(),
            }
        }
    }

    /// Serve `handler(method, target, body, port)` until the test process ends; the port.
    pub fn serve(handler: impl Fn(&str, &str, &str, u16) -> Reply + Send + Sync + 'static) -> u16 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let handler = std::sync::Arc::new(handler);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let handler = handler.clone();
                std::thread::spawn(move || {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match stream.read(&mut byte) {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let length = head
                        .lines()
                        .find_map(|l| {
                            let (name, value) = l.split_once(':')?;
                            name.eq_ignore_ascii_case("content-length")
                                .then(|| value.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    let mut body = vec![0u8; length];
                    if stream.read_exact(&mut body).is_err() {
                        return;
                    }
                    let mut line = head.lines().next().unwrap_or("").split(' ');
                    let (method, target) = (line.next().unwrap_or(""), line.next().unwrap_or(""));
                    let reply = handler(method, target, &String::from_utf8_lossy(&body), port);
                    let mut out = format!(
                        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                        reply.status,
                        reply.body.len()
                    );
                    for (name, value) in &reply.headers {
                        out.push_str(&format!("{name}: {value}\r\n"));
                    }
                    out.push_str("\r\n");
                    let _ = stream.write_all(out.as_bytes());
                    let _ = stream.write_all(&reply.body);
                });
            }
        });
        port
    }
}

/// The CLI's own checks of what the provider answers, against a provider that gets them
/// wrong: ID tokens signed here with local keys, and a stub provider where HTTP is needed.
#[cfg(test)]
mod provider_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::stub::{serve, Reply};
    use super::*;
    use serde_json::json;

    const CLIENT: &str = "jitgate-cli";

    const RSA_A_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDpWU4Ep78sdk7x
lTrq3tfx/TJYNp6QjL0dTHpXnOxOOUn7RYwzLS6PikXcmngl79Q5LjXZDxtoeNLv
EeetBDxZ+13b441LXUuYhEuSkqeF+3/JPaJPAhNQu/R03ciKpwOhv6lGnYBqH1+2
HXmdQsBV4cKtGeWHKsIMFbWdLcXpMSpKGkxxH+gB43yWlgUqm7ZbB4U+d4yw/wWQ
ZxwzdggobSEn5cX2lTUxOi+iaJmYRhF971wrJCD2aqWhzZmOJ66ewqwRjBphttuP
9WGFMoH7yzsESvoBg+ZykamJCSPfS/MsbZhyQGwGKdxRZH5SXPModuFvpPKW2adP
cKYgegGvAgMBAAECggEAQdKJoeGJmSqkORwtuuvyQRX5eg2qK78vZ1DX39fphmU9
m63yDsuLaz0HWOOPya+9jwWcdeZ/hjgy0/IahmD//yfbQXgONriR5utGgAlzTOV1
FdiXbK76sNbb7Y1UENxst1cfkkZCX20LLA1jbTtTksY0imyYJMkoZI1JJhWv0oec
bUMUS5ygv7VkPY9gggY46rocIz+7/XekpFBn2UDijGnSnyyye2HyY9cu6D8zPNgv
oYKctEL4gyqYQTJrXfQIpiMFDwoN6TI4CbQLT2cNZlRxtGgdA1AlLfRxejIm6Fst
diCurcWn6mg1/vLc1bmjQrJCRk2FtT3kDarq/b3PpQKBgQD4JQALiNrwfNlQE3/S
tUiJOhyM3XAl5zZErLjC53p+wdwsYshhDxheE1rvE2wnNcnRXZFv8hcM6W+osa7e
srb4wXT0HQc/+0QirkuR1bNJrh7Hk1xUXYMMM60/ilRVsWZfy5awZMGL7bkKwjEu
YPnQfKTomRHnjpZFO6U9FMBf8wKBgQDwvGXuh7j8o4YnvDU1aMaGBrJHU/4rJjXf
rk2x4UDT4K+khzI9dRAmpDW/+zoh+BXy+9buFk+kP1gKVreP1Vk61H50JduMgktn
lpXnmEFNNWEsTKVtWYpuk5droIgTOZqiFmXawmL7punbniFnKGRDpTpyv2ja7YO5
NvY52YzCVQKBgQDn0GkCXY9rKrc4/35iMcjZqdgSIKwsPJuN/G1+ZxEgaapuLLpV
Mezptds1jUd0OeOYG3lKwzaVcV5GkfdzRDF6of/ILXYgZ3N3kqw2SRV8t5U5jIis
p89NDtnCik/O3jNtOpxDnVzSg/ph+phHY4D9K/RC9vyq/aGUe+wZ69Dr0QKBgGfc
sJGX5tzA5FlyXvZ7DOO4MeSKPWd6ZdXqisTK7UA8eSsf1TIktmIliLcaebs8IKQj
uVghMh0n4yEaxrl8j7HNCf2sc6uMb2Hy2xv/WXUpKZKGQv0Jm6sXbEXYDb1Vpfx2
c11Nbo0qN000TS8HgzKYL75gDKofvSwEpXjR/mO9AoGBANcDwXkglVgrr76RfSeu
rOv5FOZFtSRbvELHHRsIGrbYycppEn0BXU6QF1WKiEZDMJrI0IXi3EBc5lOkjY5j
He08qrDk5yl/HHH8lrio4CBKLpdhQWFeiYVn9EsVBIQLlQzZsSQz2J+J2q1jTnCE
VhoVSzufXLWPceVyfI2Qy3z8
-----END PRIVATE KEY-----";
    const RSA_A_JWK: &str = r#"{"kty": "RSA", "n": "6VlOBKe_LHZO8ZU66t7X8f0yWDaekIy9HUx6V5zsTjlJ-0WMMy0uj4pF3Jp4Je_UOS412Q8baHjS7xHnrQQ8Wftd2-ONS11LmIRLkpKnhft_yT2iTwITULv0dN3IiqcDob-pRp2Aah9fth15nULAVeHCrRnlhyrCDBW1nS3F6TEqShpMcR_oAeN8lpYFKpu2WweFPneMsP8FkGccM3YIKG0hJ-XF9pU1MTovomiZmEYRfe9cKyQg9mqloc2ZjieunsKsEYwaYbbbj_VhhTKB-8s7BEr6AYPmcpGpiQkj30vzLG2YckBsBincUWR-UlzzKHbhb6TyltmnT3CmIHoBrw", "e": "AQAB"}"#;
    const RSA_B_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQC46dZvCPFaD3NO
9QhU3qURtZ9ZUkji/czKK48H+rUSlZ5/FrdlCsgWKJDVokok8DVTt0pGy3/m45dW
C4lVl9kznRCP3XsoPSYod8aXlDDJwL0e1PK5BfGsX35QMrDRZ01ihFd+Jt6VLKJ+
UQ1FKheMo2qknakHo944V+zJE8AkR0/yl1UQP6Gqa26IXhKHU/0GrDYhSykQaN6U
HBhzw8EINAlsHeIMWb9aePEL8I/C8M/q/WDjyNQDTEtEgluTI4gRLWoQA9HKIGQT
bJ2Nwljo956ehPlJVeNVIbgZb2KUCjCfnYwntPZ2FwXiy51ieG0EUmZyszFW3SGP
+ljAGp7DAgMBAAECggEAD8Fc0/kfF11ZpdCa9SBDUE75VNL+Atk9KbysYzGpW/wD
lTCKT8GrarfqH0nEp4EQCiID4iRUsYeSzXIOMYzOpOctEhT8+WC8b5ZFBYVK4uXZ
N1dNlxY6kUVRreOjzTPQFCTSj50gOfWjor+lMc90UjdaTsxgKpZ7yLE1K6zTIkQM
I3+ACcti+OcJCSlk32XQaw9QTntIEXjNA4l69z+Qzm21bFpRSX40ti2/zhhwJL/v
WNd24kNq3jOunKCgiR5tuC6SvmXZ3YFb7MchWEdXs9Ko8Uqfl6VIJUvYp+HBEURI
XbixJMZUGtZiFlGYcQUlv3kL3CsJrXsaEIdAzksIAQKBgQDgiJjDZxHTbY3jVDTJ
wIko0GkbQRF9kySQGcLA2JvdvedWyaqc1uhD6domM2WCMV/fpLZxmqDuKY2Juymb
JDicugeAA1V8guKCJ+KofXFU7Ds7ELCpnx1Fx6UTkJ5K60SJeS3cafBSgLHZnAqx
Ty2BET3u0ri5PHlV8idvzoI9QQKBgQDS09JlOSjRtXAo5weh3QqnbUnrTEFwOQJb
2WjQmqxJV5I0vZpBXc90ox7iglfJetLEmB6afAfBGaDT3EUTm7XKwyVp0laqNpbw
rQycVZpebrDNABh9ChbiBN5Lm2lBVOev3E1DS7qyk1sLa0LQFN7Ih06hMl314PSv
8WKemn8nAwKBgQDEN5sIaDIzyjGM0DGxfghfGoI/xwU58DSrmVeQn7rWdPaN6X6n
wUcI0nxJlfDHbc6S6qZlcPPiLX37NwyM/4JZtFiJjmBOhzLa+3AgPj+kLy0z2MoJ
8XrrWCTyjBdI8YDbgoKJdCsIbl7+BFdzy/XALQkqhAvaFPcUHKJKGvXGAQKBgHvs
Gk15ba7mkUjZk7jm7q4/JSXzqrtGJ0bJ4jxLzl1F5iCuGg+2Do0mnK7TorpBQcZh
DAwOP5iXcdtWLBw8eHz4e/NZuatPbyWE8laqUpSTR8UX+0z0M0MjTW7vqMzIFW9f
dOLLjrAMwYVSxPD+c303W1aQ/n3afrk0j51efsL1AoGBALA2u+HYXaftMTqL9tTw
+sEdJpDIKL3sQuzawXQlF8qEAEx13cU/+PniGF4kZCa4eSlOruh6ipJ3zf6AetFz
Vn8JWtMgFBEkFhrXPuvSsgA4JuYUFVRtTm/wsQg0ozHwRiNTL31fp04+XYphaJS6
8vhHEYprrkabgEBcvBFMtbx1
-----END PRIVATE KEY-----";
    const EC_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgN3Ja7q4ofwVPFpsw
06+gi33R1VLPvn0I1h0FCZQ7IYahRANCAARtXBSl1GTDSdzuPik4vicKAMrmS1Vn
5VeD2V9+hfYMwuRHUSxPeQwpKyCFp1Ovk6E+mDtGMfx9YVntHBYXvoVw
-----END PRIVATE KEY-----";
    const EC_JWK: &str = r#"{"kty": "EC", "crv": "P-256", "x": "bVwUpdRkw0nc7j4pOL4nCgDK5ktVZ-VXg9lffoX2DMI", "y": "5EdRLE95DCkrIIWnU6-ToT6YO0Yx_H1hWe0cFhe-hXA"}"#;
    const ED_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIAYTdXvmRI/lc0X8jNmATTBYmrX5bDfhxGcvMXYejNrK
-----END PRIVATE KEY-----";
    const ED_JWK: &str = r#"{"kty": "OKP", "crv": "Ed25519", "x": "-FQ6ijNfw24Myot-8D4TXTzsAt0gSdVfSimc3EkXyGA"}"#;

    /// A JWK of `public` (one of the `*_JWK`) with its `kid` and `alg`.
    fn jwk(public: &str, kid: &str, alg: &str) -> serde_json::Value {
        let mut key: serde_json::Value = serde_json::from_str(public).unwrap();
        key["kid"] = json!(kid);
        key["alg"] = json!(alg);
        key["use"] = json!("sig");
        key
    }

    /// The keys the tests' providers publish: RSA_A as "rsa", EC as "ec", ED as "ed".
    fn jwks() -> serde_json::Value {
        json!({"keys": [jwk(RSA_A_JWK, "rsa", "RS256"), jwk(EC_JWK, "ec", "ES256"), jwk(ED_JWK, "ed", "EdDSA")]})
    }

    /// A discovery document for `issuer` (endpoints under it).
    fn document(issuer: &str) -> serde_json::Value {
        json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/auth"),
            "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": format!("{issuer}/jwks"),
            "device_authorization_endpoint": format!("{issuer}/device"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA", "HS256", "none"],
        })
    }

    /// A provider as discovered, without HTTP: `document(issuer)` and [`jwks`].
    fn provider(issuer: &str) -> Provider {
        let url = format!("{issuer}/.well-known/openid-configuration");
        let metadata = metadata_of(issuer, &url, document(issuer))
            .unwrap()
            .set_jwks(serde_json::from_value(jwks()).unwrap());
        Provider {
            issuer: issuer.into(),
            client_id: CLIENT.into(),
            metadata,
            http: http_client().unwrap(),
        }
    }

    /// The claims of a good ID token of `issuer` for carol, `nonce` included when given.
    fn claims(issuer: &str, nonce: Option<&str>) -> serde_json::Value {
        let now = Utc::now().timestamp();
        let mut claims = json!({"iss": issuer, "aud": CLIENT, "sub": "carol", "iat": now, "exp": now + 300});
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        claims
    }

    /// `claims` signed with `pem` (a `*_PEM`) as `alg`, the header naming `kid`.
    fn signed(claims: &serde_json::Value, pem: &str, alg: jsonwebtoken::Algorithm, kid: &str) -> String {
        use jsonwebtoken::{Algorithm, EncodingKey};
        // jsonwebtoken reads DER here: PKCS#8 for EC and Ed25519, PKCS#1 for RSA.
        let pkcs8 = || {
            let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, body).unwrap()
        };
        let key = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_der(&pkcs8()),
            Algorithm::EdDSA => EncodingKey::from_ed_der(&pkcs8()),
            Algorithm::HS256 => EncodingKey::from_secret(pem.as_bytes()),
            _ => {
                use rsa::pkcs1::EncodeRsaPrivateKey;
                use rsa::pkcs8::DecodePrivateKey;
                let key = rsa::RsaPrivateKey::from_pkcs8_pem(pem).unwrap();
                EncodingKey::from_rsa_der(key.to_pkcs1_der().unwrap().as_bytes())
            }
        };
        let mut header = jsonwebtoken::Header::new(alg);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }

    fn answer(id_token: &str) -> CoreTokenResponse {
        serde_json::from_value(json!({"access_token": "at", "token_type": "Bearer", "id_token": id_token})).unwrap()
    }

    fn failed(result: Result<SignedIn, RefreshFailed>) -> RefreshFailed {
        match result {
            Err(e) => e,
            Ok(_) => panic!("refreshed"),
        }
    }

    fn refused(result: Result<SignedIn, SsoError>) -> String {
        match result {
            Err(e @ SsoError::BadIdToken { .. }) => e.to_string(),
            Err(other) => panic!("refused, but not as a bad ID token: {other}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn id_tokens_signed_with_rs256_es256_and_eddsa_are_accepted() {
        use jsonwebtoken::Algorithm;
        let issuer = "https://idp.example";
        let provider = provider(issuer);
        let nonce = Nonce::new("n-0".into());
        for (pem, alg, kid) in [
            (RSA_A_PEM, Algorithm::RS256, "rsa"),
            (EC_PEM, Algorithm::ES256, "ec"),
            (ED_PEM, Algorithm::EdDSA, "ed"),
        ] {
            let token = signed(&claims(issuer, Some("n-0")), pem, alg, kid);
            let got = provider
                .verified(&answer(&token), Some(&nonce), None)
                .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
            assert_eq!(got.id_token, token);
            assert_eq!(got.subject, "carol");
            // A refresh of carol's session: no nonce, the same subject.
            let token = signed(&claims(issuer, None), pem, alg, kid);
            assert!(
                provider.verified(&answer(&token), None, Some("carol")).is_ok(),
                "{alg:?}"
            );
        }
    }

    #[test]
    fn an_id_token_with_a_bad_signature_audience_issuer_nonce_or_algorithm_is_refused() {
        use jsonwebtoken::Algorithm;
        let issuer = "https://idp.example";
        let provider = provider(issuer);
        let nonce = Nonce::new("n-1".into());
        let good = claims(issuer, Some("n-1"));
        assert!(provider
            .verified(
                &answer(&signed(&good, RSA_A_PEM, Algorithm::RS256, "rsa")),
                Some(&nonce),
                None
            )
            .is_ok());
        let check = |token: String, nonce: Option<&Nonce>| refused(provider.verified(&answer(&token), nonce, None));

        // Signed by another key under the provider's key id.
        check(signed(&good, RSA_B_PEM, Algorithm::RS256, "rsa"), Some(&nonce));
        // A signature with one byte changed (in its middle: the last character of base64
        // also holds bits a lenient decoder ignores).
        let token = signed(&good, RSA_A_PEM, Algorithm::RS256, "rsa");
        let at = token.rfind('.').unwrap() + 20;
        let flipped = if &token[at..=at] == "A" { "B" } else { "A" };
        check(format!("{}{flipped}{}", &token[..at], &token[at + 1..]), Some(&nonce));
        // Claims swapped under a good signature.
        let other = signed(&claims(issuer, Some("other")), RSA_A_PEM, Algorithm::RS256, "rsa");
        let good_token = signed(&good, RSA_A_PEM, Algorithm::RS256, "rsa");
        let mut parts: Vec<&str> = good_token.split('.').collect();
        parts[1] = other.split('.').nth(1).unwrap();
        check(parts.join("."), Some(&nonce));

        // Another audience, or ours only among untrusted others.
        let mut c = good.clone();
        c["aud"] = json!("another-client");
        check(signed(&c, RSA_A_PEM, Algorithm::RS256, "rsa"), Some(&nonce));
        c["aud"] = json!([CLIENT, "another-client"]);
        check(signed(&c, RSA_A_PEM, Algorithm::RS256, "rsa"), Some(&nonce));
        // Another issuer, or a look-alike of ours.
        for iss in [
            "https://evil.example",
            "https://idp.example/",
            "https://idp.examp\u{13b}e",
            "https://idp.example\u{0}",
        ] {
            let mut c = good.clone();
            c["iss"] = json!(iss);
            check(signed(&c, RSA_A_PEM, Algorithm::RS256, "rsa"), Some(&nonce));
        }
        // Another nonce, or none, when one was sent.
        check(
            signed(&claims(issuer, Some("n-2")), RSA_A_PEM, Algorithm::RS256, "rsa"),
            Some(&nonce),
        );
        check(
            signed(&claims(issuer, None), RSA_A_PEM, Algorithm::RS256, "rsa"),
            Some(&nonce),
        );
        // Expired.
        let mut c = good.clone();
        c["exp"] = json!(Utc::now().timestamp() - 600);
        check(signed(&c, RSA_A_PEM, Algorithm::RS256, "rsa"), Some(&nonce));
        // A MAC with the public key as its secret (the old RS/HS confusion), even though the
        // document lists HS256; and an unsigned token.
        check(signed(&good, RSA_A_JWK, Algorithm::HS256, "rsa"), Some(&nonce));
        let unsigned = format!(
            "{}.{}.",
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, br#"{"alg":"none"}"#),
            signed(&good, RSA_A_PEM, Algorithm::RS256, "rsa")
                .split('.')
                .nth(1)
                .unwrap()
        );
        check(unsigned, Some(&nonce));
        // A refresh that names another subject than the session's.
        let e = refused(provider.verified(
            &answer(&signed(&claims(issuer, None), RSA_A_PEM, Algorithm::RS256, "rsa")),
            None,
            Some("mallory"),
        ));
        assert!(e.contains("names the subject carol, not mallory"), "{e}");
        // No ID token at all.
        let none: CoreTokenResponse =
            serde_json::from_value(json!({"access_token": "at", "token_type": "Bearer"})).unwrap();
        assert!(matches!(
            provider.verified(&none, None, None),
            Err(SsoError::NoIdToken { .. })
        ));
    }

    #[test]
    fn an_algorithm_the_provider_does_not_list_is_refused() {
        use jsonwebtoken::Algorithm;
        let issuer = "https://idp.example";
        let mut only_rs256 = document(issuer);
        only_rs256["id_token_signing_alg_values_supported"] = json!(["RS256"]);
        let metadata = metadata_of(issuer, "-", only_rs256)
            .unwrap()
            .set_jwks(serde_json::from_value(jwks()).unwrap());
        let provider = Provider {
            issuer: issuer.into(),
            client_id: CLIENT.into(),
            metadata,
            http: http_client().unwrap(),
        };
        refused(provider.verified(
            &answer(&signed(&claims(issuer, None), EC_PEM, Algorithm::ES256, "ec")),
            None,
            None,
        ));
        assert!(provider
            .verified(
                &answer(&signed(&claims(issuer, None), RSA_A_PEM, Algorithm::RS256, "rsa")),
                None,
                None
            )
            .is_ok());
        // Of what a document lists, only what the jitgate server can be set to accept: never
        // a MAC (no client secret), `none`, or an algorithm the server would refuse.
        let mut listed = document(issuer);
        listed["id_token_signing_alg_values_supported"] = json!(["HS256", "none", "ES512", "PS256", "RS256"]);
        let provider = Provider {
            metadata: metadata_of(issuer, "-", listed).unwrap(),
            ..provider
        };
        assert_eq!(
            provider.accepted_algorithms(),
            [
                CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
                CoreJwsSigningAlgorithm::RsaSsaPssSha256
            ]
        );
    }

    #[test]
    fn http_endpoints_under_an_https_issuer_are_refused() {
        let issuer = "https://idp.example";
        for field in [
            "authorization_endpoint",
            "token_endpoint",
            "jwks_uri",
            "device_authorization_endpoint",
        ] {
            let mut doc = document(issuer);
            doc[field] = json!(format!("http://idp.example/{field}"));
            let e = match metadata_of(issuer, "-", doc) {
                Err(e) => e.to_string(),
                Ok(_) => panic!("{field}: accepted"),
            };
            assert_eq!(
                e,
                format!("single sign-on through https://idp.example is not possible: its {field} http://idp.example/{field} is not https:// although the issuer is; nothing was stored")
            );
        }
        // An http:// issuer (loopback, or --insecure-http) may have http:// endpoints.
        let issuer = "http://127.0.0.1:9";
        assert!(metadata_of(issuer, "-", document(issuer)).is_ok());
        let mut doc = document(issuer);
        doc["token_endpoint"] = json!("ftp://127.0.0.1:9/token");
        assert!(metadata_of(issuer, "-", doc).is_err());
    }

    #[test]
    fn a_huge_login_timeout_is_cut_to_a_day_and_no_deadline_overflows() {
        for huge in ["18446744073709551615", "99999999999999999", " 86401 "] {
            let timeout = parse_login_timeout(Some(huge));
            assert_eq!(timeout, MAX_LOGIN_TIMEOUT, "{huge}");
            let _ = Instant::now() + timeout;
        }
        assert_eq!(parse_login_timeout(Some("7")), Duration::from_secs(7));
        for default in [
            None,
            Some("0"),
            Some("-5"),
            Some("1e3"),
            Some("99999999999999999999"),
            Some("5\u{0}"),
        ] {
            assert_eq!(parse_login_timeout(default), DEFAULT_LOGIN_TIMEOUT, "{default:?}");
        }
        // And the listener's own deadline holds even for a timeout it was never given.
        let callback = Callback::bind().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(std::panic::catch_unwind(|| {
                let _ = callback.wait("st", Duration::MAX);
            }));
        });
        // It waits (no panic) until the test process ends.
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
    }

    /// A stub provider at http://127.0.0.1:PORT: its discovery document and keys, and
    /// `endpoint(path, body, issuer)` for everything else.
    fn stub_provider(endpoint: impl Fn(&str, &str, &str) -> Reply + Send + Sync + 'static) -> String {
        let port = serve(move |_, target, body, port| {
            let issuer = format!("http://127.0.0.1:{port}");
            match target {
                "/.well-known/openid-configuration" => Reply::json(200, &document(&issuer)),
                "/jwks" => Reply::json(200, &jwks()),
                other => endpoint(other, body, &issuer),
            }
        });
        format!("http://127.0.0.1:{port}")
    }

    fn offer(issuer: &str) -> Offer {
        Offer {
            issuer: issuer.into(),
            client_id: CLIENT.into(),
            scopes: vec!["openid".into()],
            device: true,
        }
    }

    fn device_answer(issuer: &str, interval: u64) -> Reply {
        Reply::json(
            200,
            &json!({"device_code": "dc", "user_code": "ABCD-EFGH", "verification_uri": format!("{issuer}/activate"), "expires_in": 600, "interval": interval}),
        )
    }

    #[test]
    fn a_device_flow_interval_beyond_a_minute_is_refused_before_polling() {
        let polled = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = polled.clone();
        let issuer = stub_provider(move |path, _, issuer| match path {
            "/device" => device_answer(issuer, 86_400),
            _ => {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Reply::json(400, &json!({"error": "slow_down"}))
            }
        });
        let provider = Provider::discover(&issuer, CLIENT).unwrap();
        let started = Instant::now();
        let e = match device_flow(&provider, &offer(&issuer), Duration::from_secs(5)) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("signed in"),
        };
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        assert_eq!(
            e,
            format!("{issuer} refused the request: it asks to be polled every 86400 s, more than the 60 s jitgate waits between polls; nothing was stored")
        );
        assert_eq!(polled.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[test]
    fn device_polling_ends_at_the_login_timeout_whatever_the_interval() {
        let issuer = stub_provider(|path, _, issuer| match path {
            "/device" => device_answer(issuer, 30),
            _ => Reply::json(400, &json!({"error": "authorization_pending"})),
        });
        let provider = Provider::discover(&issuer, CLIENT).unwrap();
        let started = Instant::now();
        let e = match device_flow(&provider, &offer(&issuer), Duration::from_secs(1)) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("signed in"),
        };
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        assert_eq!(
            e,
            "gave up waiting for the device sign-in after 1 s: run jitgate login --device again"
        );
    }

    #[test]
    fn oversize_answers_from_the_provider_are_refused() {
        // A JWKS of more than the limit (valid JSON, so only its size is wrong).
        let padding = "x".repeat(MAX_DOCUMENT_BYTES + 10);
        let port = serve(move |_, target, _, port| {
            let issuer = format!("http://127.0.0.1:{port}");
            match target {
                "/.well-known/openid-configuration" => Reply::json(200, &document(&issuer)),
                _ => {
                    let mut keys = jwks();
                    keys["padding"] = json!(padding);
                    Reply::json(200, &keys)
                }
            }
        });
        let e = match Provider::discover(&format!("http://127.0.0.1:{port}"), CLIENT) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted"),
        };
        assert!(
            e.contains("cannot read its signing keys") && e.contains("larger than"),
            "{e}"
        );

        // A token answer of more than the limit, with a good ID token in it.
        let issuer = stub_provider(|_, _, issuer| {
            let token = signed(&claims(issuer, None), RSA_A_PEM, jsonwebtoken::Algorithm::RS256, "rsa");
            Reply::json(
                200,
                &json!({"access_token": "at", "token_type": "Bearer", "id_token": token, "refresh_token": "r2", "padding": "x".repeat(MAX_DOCUMENT_BYTES + 10)}),
            )
        });
        let session = OidcSession {
            issuer: &issuer,
            client_id: CLIENT,
            refresh_token: "r1",
            subject: Some("carol"),
        };
        let e = failed(refresh(&session));
        assert!(e.rotated_refresh_token.is_none());
        assert!(e.error.to_string().contains("larger than"), "{}", e.error);
    }

    #[test]
    fn a_refresh_whose_id_token_fails_keeps_the_rotated_refresh_token() {
        // The provider rotates r1 to r2, and answers an ID token for someone else, or none.
        for (sub, with_token) in [("mallory", true), ("carol", false)] {
            let issuer = stub_provider(move |_, body, issuer| {
                assert!(body.contains("refresh_token=r1"), "{body}");
                let mut answer = json!({"access_token": "at", "token_type": "Bearer", "refresh_token": "r2"});
                if with_token {
                    let mut c = claims(issuer, None);
                    c["sub"] = json!(sub);
                    answer["id_token"] = json!(signed(&c, RSA_A_PEM, jsonwebtoken::Algorithm::RS256, "rsa"));
                }
                Reply::json(200, &answer)
            });
            let session = OidcSession {
                issuer: &issuer,
                client_id: CLIENT,
                refresh_token: "r1",
                subject: Some("carol"),
            };
            let e = failed(refresh(&session));
            assert_eq!(e.rotated_refresh_token.as_deref(), Some("r2"), "{}", e.error);
            assert!(!format!("{e:?}").contains("r2"), "{e:?}");
        }
    }
}
