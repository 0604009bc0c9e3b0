//! Forward authentication at the HTTP edge: what a reverse proxy's auth request says about the
//! original request (nginx `auth_request`, Caddy `forward_auth`, Traefik `ForwardAuth`, Envoy
//! `ext_authz` with a `path_prefix`), and the answers proxies understand. The decision itself is
//! the service's (`App::forward_auth`); everything here is pure, so the handler stays thin.

// The service's side, where the server's configuration has always found its sections.
pub use jitgate_service::forward_auth::{
    ConfigError, ForwardAuthAnswer, ForwardAuthConfig, Original, DEFAULT_PROXY_CREDENTIAL_HEADER,
};

use crate::error::{ErrorBody, ErrorDetail};
use askama::Template;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Where proxies send their auth requests; Envoy appends the original path below it.
pub const PREFIX: &str = "/v1/forward-auth";

/// The longest `return_to` kept: a link back to the app, never a place to smuggle data.
pub const MAX_RETURN_TO: usize = 2048;

/// The headers a proxy describes the original request with, as their conventions spell them
/// (these spellings name them in error messages).
pub mod headers {
    pub const FORWARDED_METHOD: &str = "X-Forwarded-Method";
    pub const ORIGINAL_METHOD: &str = "X-Original-Method";
    pub const FORWARDED_URI: &str = "X-Forwarded-Uri";
    pub const ORIGINAL_URI: &str = "X-Original-URI";
    pub const FORWARDED_HOST: &str = "X-Forwarded-Host";
    pub const HOST: &str = "Host";
    pub const FORWARDED_PROTO: &str = "X-Forwarded-Proto";
    /// Every header read, for the check that none is sent twice.
    pub const ALL: [&str; 7] = [
        FORWARDED_METHOD,
        ORIGINAL_METHOD,
        FORWARDED_URI,
        ORIGINAL_URI,
        FORWARDED_HOST,
        HOST,
        FORWARDED_PROTO,
    ];

    use axum::http::HeaderName;
    pub const PRINCIPAL: HeaderName = HeaderName::from_static("x-jitgate-principal");
    pub const GRANT: HeaderName = HeaderName::from_static("x-jitgate-grant");
    pub const EXPIRES_AT: HeaderName = HeaderName::from_static("x-jitgate-expires-at");
    pub const RESOURCE: HeaderName = HeaderName::from_static("x-jitgate-resource");
    pub const ACTION: HeaderName = HeaderName::from_static("x-jitgate-action");
    pub const TOKEN: HeaderName = HeaderName::from_static("x-jitgate-token");
    pub const REASON: HeaderName = HeaderName::from_static("x-jitgate-reason");
    pub const REQUEST_URL: HeaderName = HeaderName::from_static("x-jitgate-request-url");
    pub const LOGIN_URL: HeaderName = HeaderName::from_static("x-jitgate-login-url");
}

/// The request the proxy asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalRequest {
    pub method: String,
    /// As sent: `grafana.example.test` or `grafana.example.test:8443`.
    pub host: String,
    /// Origin-form, as sent (`/d/abc?orgId=1`); the service normalizes it.
    pub uri: String,
    /// `http` or `https`, for links back to the app only: never for the decision.
    pub scheme: &'static str,
}

impl OriginalRequest {
    /// The URL the browser asked for, for the link back to the app after approval.
    pub fn url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.host, self.uri)
    }
}

/// Why the auth request does not say what the original request was: 400, naming the header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardedError {
    #[error("{0}: sent more than once; the proxy must set it once, replacing any copy the client sent")]
    Repeated(&'static str),
    #[error("{0}: is empty; the proxy must set it to the original request's value")]
    Empty(&'static str),
    #[error("{header}: holds {what} at byte {at}; only visible ASCII is accepted (percent-encode the rest)")]
    NotVisible {
        header: &'static str,
        what: String,
        at: usize,
    },
    #[error("{0}: holds a comma (a list of hosts, as a chain of proxies writes it); the proxy must send the one host the client asked for")]
    CommaInHost(&'static str),
    #[error("X-Forwarded-Uri and X-Original-URI differ: one of them may come from the client; configure the proxy to send one")]
    ConflictingUri,
    #[error("X-Forwarded-Method and X-Original-Method differ: one of them may come from the client; configure the proxy to send one")]
    ConflictingMethod,
    #[error("no original URI: the proxy must send X-Forwarded-Uri (Traefik, Caddy) or X-Original-URI (nginx), or call below /v1/forward-auth/ (Envoy's path_prefix)")]
    MissingUri,
    #[error("no original host: the proxy must send X-Forwarded-Host or Host")]
    MissingHost,
    #[error("X-Forwarded-Proto: '{0}' is neither http nor https")]
    BadProto(String),
}

/// A byte that has no place in these headers, named for a person.
fn describe(byte: u8) -> String {
    match byte {
        0 => "a NUL byte".into(),
        b'\t' => "a tab".into(),
        b' ' => "a space".into(),
        b'\r' => "a carriage return".into(),
        b'\n' => "a line feed".into(),
        0x80.. => format!("byte 0x{byte:02X} (not ASCII)"),
        _ => format!("control character 0x{byte:02X}"),
    }
}

/// The one value of header `name`, if sent: refused when repeated, empty, or holding anything
/// but visible ASCII (hyper lets tabs, spaces inside and bytes >= 0x80 through).
fn one<'h>(map: &'h HeaderMap, name: &'static str) -> Result<Option<&'h str>, ForwardedError> {
    let mut values = map.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ForwardedError::Repeated(name));
    }
    let bytes = value.as_bytes();
    if bytes.is_empty() {
        return Err(ForwardedError::Empty(name));
    }
    // `a.test, b.test` is a list (a chain of proxies): said as such, before its space is.
    if (name == headers::FORWARDED_HOST || name == headers::HOST) && bytes.contains(&b',') {
        return Err(ForwardedError::CommaInHost(name));
    }
    if let Some(at) = bytes.iter().position(|b| !b.is_ascii_graphic()) {
        return Err(ForwardedError::NotVisible {
            header: name,
            what: describe(bytes[at]),
            at,
        });
    }
    // Visible ASCII only, so always text.
    Ok(value.to_str().ok())
}

/// The original request an auth request describes, by the proxies' conventions:
/// - method: `X-Forwarded-Method`, else `X-Original-Method`, else the auth request's own
///   method (Envoy forwards the original method);
/// - URI: `X-Forwarded-Uri`, else `X-Original-URI`, else what follows `/v1/forward-auth` in
///   the auth request's own path, with its query (Envoy's `path_prefix`); none is a 400;
/// - host: `X-Forwarded-Host`, else `Host` (else the authority of an HTTP/2 request);
/// - scheme: `X-Forwarded-Proto` (`http` or `https`), else `https`.
///
/// Each of those headers may be sent once. Two that say the same thing differently (the two
/// URI headers, the two method headers) are refused: a proxy sets one, so the other came from
/// the client (nginx passes the client's own headers to its auth request).
///
/// `own_path` is the auth request's path as sent (still percent-encoded).
pub fn original_request(
    map: &HeaderMap,
    own_method: &str,
    own_path: &str,
    own_query: Option<&str>,
    own_authority: Option<&str>,
) -> Result<OriginalRequest, ForwardedError> {
    use headers::*;
    for name in ALL {
        one(map, name)?;
    }
    let method = match (one(map, FORWARDED_METHOD)?, one(map, ORIGINAL_METHOD)?) {
        (Some(a), Some(b)) if a != b => return Err(ForwardedError::ConflictingMethod),
        (Some(m), _) | (None, Some(m)) => m.to_string(),
        (None, None) => own_method.to_string(),
    };
    let uri = match (one(map, FORWARDED_URI)?, one(map, ORIGINAL_URI)?) {
        (Some(a), Some(b)) if a != b => return Err(ForwardedError::ConflictingUri),
        (Some(u), _) | (None, Some(u)) => u.to_string(),
        (None, None) => envoy_uri(own_path, own_query)?,
    };
    let (host, header) = match (one(map, FORWARDED_HOST)?, one(map, HOST)?) {
        (Some(h), _) => (h.to_string(), FORWARDED_HOST),
        (None, Some(h)) => (h.to_string(), HOST),
        (None, None) => match own_authority.filter(|a| !a.is_empty()) {
            Some(a) if a.bytes().all(|b| b.is_ascii_graphic()) => (a.to_string(), HOST),
            _ => return Err(ForwardedError::MissingHost),
        },
    };
    if host.contains(',') {
        return Err(ForwardedError::CommaInHost(header));
    }
    let scheme = match one(map, FORWARDED_PROTO)? {
        None => "https",
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        Some(p) if p.eq_ignore_ascii_case("http") => "http",
        Some(other) => return Err(ForwardedError::BadProto(other.to_string())),
    };
    Ok(OriginalRequest {
        method,
        host,
        uri,
        scheme,
    })
}

/// The original URI Envoy puts below the prefix: `/v1/forward-auth/admin?x=1` is `/admin?x=1`.
fn envoy_uri(own_path: &str, own_query: Option<&str>) -> Result<String, ForwardedError> {
    let rest = own_path
        .strip_prefix(PREFIX)
        .filter(|rest| rest.starts_with('/'))
        .ok_or(ForwardedError::MissingUri)?;
    Ok(match own_query {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_string(),
    })
}

/// Whether the caller reads HTML (a browser whose proxy passes the answer through).
pub fn wants_html(map: &HeaderMap) -> bool {
    map.get_all(header::ACCEPT)
        .iter()
        .any(|v| v.as_bytes().windows(9).any(|w| w.eq_ignore_ascii_case(b"text/html")))
}

// ---- links ----

/// Why `url` cannot be a link back to an app, or `None` when its shape is fine: an absolute
/// `http(s)` URL of at most [`MAX_RETURN_TO`] bytes of visible ASCII, with a host and no user
/// information. (Whether jitgate protects that host is the catalog's to say:
/// `HttpRoutes::serves_url`.)
pub fn return_to_problem(url: &str) -> Option<String> {
    if url.len() > MAX_RETURN_TO {
        return Some(format!("is longer than {MAX_RETURN_TO} bytes"));
    }
    if let Some(b) = url.bytes().find(|b| !b.is_ascii_graphic()) {
        return Some(format!("holds {}", describe(b)));
    }
    // Browsers read `\` as `/` in http(s) URLs: a parser that does not could be fooled.
    if url.contains('\\') {
        return Some("holds a backslash".into());
    }
    let parsed = match url::Url::parse(url) {
        Ok(parsed) => parsed,
        Err(e) => return Some(format!("is not an absolute URL ({e})")),
    };
    if !matches!(parsed.scheme(), "http" | "https") {
        return Some(format!("is a {} URL, not http or https", parsed.scheme()));
    }
    // The scheme as written must be the one parsed (no `HTTPS:` spellings, no `https:/x`).
    let written = url.get(..parsed.scheme().len() + 3).unwrap_or_default();
    if !written.eq_ignore_ascii_case(&format!("{}://", parsed.scheme())) {
        return Some("does not start with http:// or https://".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Some("holds user information (user@host)".into());
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Some("has no host".into());
    }
    None
}

/// The host and port a browser would go to for `url` (which passed [`return_to_problem`]), as
/// the WHATWG parser browsers use reads it: `https://grafana.example.test:8443/`. The catalog is
/// asked about this form too, so no difference between two URL parsers can make a foreign
/// host look like one of ours.
pub fn browser_origin(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let host = parsed.host_str()?;
    Some(match parsed.port() {
        Some(port) => format!("{}://{host}:{port}/", parsed.scheme()),
        None => format!("{}://{host}/", parsed.scheme()),
    })
}

/// A query string, percent-encoded (`application/x-www-form-urlencoded`).
fn query(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

/// The web UI's new-request page pre-filled with `resource` and `action`, relative to the
/// server (`/ui/new?...`), with the way back to the app when it may be one.
pub fn new_request_path(resource: &str, action: &str, return_to: Option<&str>) -> String {
    let mut pairs = vec![("resource", resource), ("action", action)];
    if let Some(url) = return_to.filter(|u| return_to_problem(u).is_none()) {
        pairs.push(("return_to", url));
    }
    format!("/ui/new?{}", query(&pairs))
}

/// `{public}/ui/login`, coming back to `next` (a page of the UI) after signing in.
pub fn login_url(public_url: &str, next: Option<&str>) -> String {
    let public = public_url.trim_end_matches('/');
    match next {
        Some(next) => format!("{public}/ui/login?{}", query(&[("next", next)])),
        None => format!("{public}/ui/login"),
    }
}

/// Text for a header: visible ASCII and spaces as they are, anything else percent-encoded (a
/// header cannot carry it, and a reason must stay one line), at most `max` bytes.
pub fn header_text(text: &str, max: usize) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%');
    let mut out = String::with_capacity(text.len().min(max));
    for piece in percent_encoding::utf8_percent_encode(text, KEEP) {
        if out.len() + piece.len() > max {
            // Never cut an escape in half.
            for c in piece.chars() {
                if out.len() + c.len_utf8() > max || c == '%' {
                    break;
                }
                out.push(c);
            }
            break;
        }
        out.push_str(piece);
    }
    out
}

/// Free text (a reason, a name) as a header value.
fn header_value(text: &str, max: usize) -> HeaderValue {
    HeaderValue::from_str(&header_text(text, max)).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A URL or a token, already visible ASCII, as it is (text that is not is encoded).
fn url_value(url: &str) -> HeaderValue {
    match HeaderValue::from_str(url) {
        Ok(v) if url.len() <= MAX_HEADER => v,
        _ => header_value(url, MAX_HEADER),
    }
}

/// The longest header value written (a token, a URL).
const MAX_HEADER: usize = 8192;

// ---- answers ----

/// The session cookie's value, as the browser sent it to the app and its proxy passed it on.
pub fn session_cookie(map: &HeaderMap) -> Option<&str> {
    map.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == crate::ui::SESSION_COOKIE)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

/// The service's answer as the proxy gets it. `route_for_sign_in` finds what the request would
/// need, for the sign-in link of a 401 (the service says nothing of the route without an
/// identity): signing in then leads to the request page for it.
pub fn respond(
    public_url: &str,
    original: &OriginalRequest,
    answer: ForwardAuthAnswer,
    html: bool,
    route_for_sign_in: impl FnOnce() -> Option<jitgate_policy::Route>,
) -> Response {
    let public = public_url.trim_end_matches('/');
    match answer {
        ForwardAuthAnswer::Allow {
            principal,
            resource,
            action,
            grant_id,
            expires_at,
            token,
        } => allow(&Allowed {
            principal: &principal,
            grant_id: &grant_id,
            expires_at: expires_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            resource: &resource,
            action: &action,
            token: token.as_deref(),
        }),
        ForwardAuthAnswer::Unauthenticated { .. } => {
            let next = route_for_sign_in().map(|r| new_request_path(&r.resource, &r.action, Some(&original.url())));
            unauthenticated(public, &login_url(public, next.as_deref()), html)
        }
        ForwardAuthAnswer::Deny { route, reason, .. } => {
            let request_url = route.as_ref().map(|r| {
                format!(
                    "{public}{}",
                    new_request_path(&r.resource, &r.action, Some(&original.url()))
                )
            });
            deny(
                public,
                &Denied {
                    reason: &reason,
                    needs: route.as_ref().map(|r| (r.resource.as_str(), r.action.as_str())),
                    request_url,
                },
                html,
            )
        }
        ForwardAuthAnswer::BadRequest(message) => bad_request(message),
    }
}

/// What a 200 tells the proxy (and, through it, the upstream) about the access.
#[derive(Debug, Clone)]
pub struct Allowed<'a> {
    pub principal: &'a str,
    pub grant_id: &'a str,
    /// RFC 3339 UTC.
    pub expires_at: String,
    pub resource: &'a str,
    pub action: &'a str,
    /// The grant's signed token, when `[forward_auth] grant_token` is on.
    pub token: Option<&'a str>,
}

/// Every answer: never kept by a cache, or a revocation would wait for it.
fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// 200, empty, with the identity and the grant for the upstream.
pub fn allow(a: &Allowed<'_>) -> Response {
    let mut response = StatusCode::OK.into_response();
    let h = response.headers_mut();
    let mut set = |name: HeaderName, value: &str| {
        h.insert(name, header_value(value, MAX_HEADER));
    };
    set(headers::PRINCIPAL, a.principal);
    set(headers::GRANT, a.grant_id);
    set(headers::EXPIRES_AT, &a.expires_at);
    set(headers::RESOURCE, a.resource);
    set(headers::ACTION, a.action);
    if let Some(token) = a.token {
        h.insert(headers::TOKEN, url_value(token));
    }
    no_store(response)
}

/// The page a browser sees when the proxy passes the answer through (Caddy, Traefik).
#[derive(Template)]
#[template(path = "forward_auth.html")]
struct Page<'a> {
    stylesheet: String,
    title: &'a str,
    message: &'a str,
    link: Option<(&'a str, &'a str)>,
}

/// The page is shown on the app's host, not jitgate's: its stylesheet comes from jitgate's
/// public URL, and its policy allows only that (no script, no form, no framing).
fn page(public_url: &str, status: StatusCode, title: &str, message: &str, link: Option<(&str, &str)>) -> Response {
    let public = public_url.trim_end_matches('/');
    let origin = url::Url::parse(public)
        .ok()
        .map(|u| u.origin().ascii_serialization())
        .filter(|o| o != "null");
    let html = Page {
        stylesheet: format!("{public}/ui/static/app.css"),
        title,
        message,
        link,
    }
    .render();
    let mut response = match html {
        Ok(html) => (status, axum::response::Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot render the forward-auth page");
            return shaped(status, "internal", "cannot render the page".into(), None);
        }
    };
    let sources = origin.unwrap_or_else(|| "'none'".into());
    let csp = format!(
        "default-src 'none'; style-src {sources}; img-src {sources}; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    );
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// A forward-auth 403: the API's error body, and the web UI's request page for what the
/// request needs beside it (absent when no catalog resource serves the URL).
#[derive(Serialize, utoipa::ToSchema)]
pub struct ForwardAuthDenial {
    pub error: ErrorDetail,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_url: Option<String>,
}

fn shaped(status: StatusCode, code: &str, message: String, request_url: Option<String>) -> Response {
    let error = ErrorDetail {
        code: code.to_string(),
        message,
    };
    match request_url {
        None => (status, axum::Json(ErrorBody { error })).into_response(),
        Some(url) => (
            status,
            axum::Json(ForwardAuthDenial {
                error,
                request_url: Some(url),
            }),
        )
            .into_response(),
    }
}

/// 401: no identity jitgate accepts came with the request. `login_url` brings the browser back
/// to the request page after signing in.
pub fn unauthenticated(public_url: &str, login_url: &str, html: bool) -> Response {
    const MESSAGE: &str =
        "sign in to jitgate: this request carries no credential jitgate accepts (a web UI session, a bearer token, or a user asserted by a trusted proxy)";
    let mut response = if html {
        page(
            public_url,
            StatusCode::UNAUTHORIZED,
            "Please sign in",
            "This application is protected by jitgate. Sign in to see whether you have access, or to ask for it.",
            Some((login_url, "Sign in")),
        )
    } else {
        shaped(StatusCode::UNAUTHORIZED, "unauthenticated", MESSAGE.into(), None)
    };
    let h = response.headers_mut();
    h.insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"jitgate\""),
    );
    h.insert(headers::LOGIN_URL, url_value(login_url));
    no_store(response)
}

/// What a 403 says.
#[derive(Debug, Clone)]
pub struct Denied<'a> {
    /// One line, for the proxy's log and the JSON body.
    pub reason: &'a str,
    /// `(resource, action)` the request needs, when a catalog resource serves the URL.
    pub needs: Option<(&'a str, &'a str)>,
    /// `{public}/ui/new?...`, when there is something to ask for.
    pub request_url: Option<String>,
}

/// 403: no active grant covers the request (or no catalog resource serves it).
pub fn deny(public_url: &str, d: &Denied<'_>, html: bool) -> Response {
    let mut response = if html {
        let message = match d.needs {
            Some((resource, action)) => format!("You need approval for {action} on {resource}."),
            None => format!("jitgate does not let this request through: {}", d.reason),
        };
        page(
            public_url,
            StatusCode::FORBIDDEN,
            "Access needs approval",
            &message,
            d.request_url.as_deref().map(|url| (url, "Request access")),
        )
    } else {
        shaped(
            StatusCode::FORBIDDEN,
            "forbidden",
            d.reason.to_string(),
            d.request_url.clone(),
        )
    };
    let h = response.headers_mut();
    h.insert(headers::REASON, header_value(d.reason, 1024));
    if let Some(url) = &d.request_url {
        h.insert(headers::REQUEST_URL, url_value(url));
    }
    no_store(response)
}

/// 400: the auth request does not say what the original request was, or says it wrongly.
pub fn bad_request(message: String) -> Response {
    no_store(shaped(StatusCode::BAD_REQUEST, "bad_request", message, None))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn map(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v).unwrap(),
            );
        }
        h
    }

    fn read(pairs: &[(&str, &[u8])]) -> Result<OriginalRequest, ForwardedError> {
        original_request(&map(pairs), "GET", PREFIX, None, None)
    }

    #[test]
    fn each_proxys_convention_is_read() {
        // Traefik and Caddy.
        let r = read(&[
            ("x-forwarded-method", b"POST"),
            ("x-forwarded-host", b"grafana.example.test"),
            ("x-forwarded-uri", b"/d/abc?orgId=1"),
            ("x-forwarded-proto", b"http"),
            ("host", b"jitgate:7400"),
        ])
        .unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.host, "grafana.example.test");
        assert_eq!(r.uri, "/d/abc?orgId=1");
        assert_eq!(r.url(), "http://grafana.example.test/d/abc?orgId=1");
        // nginx: X-Original-URI and X-Original-Method with Host; https by default.
        let r = read(&[
            ("x-original-method", b"DELETE"),
            ("x-original-uri", b"/admin"),
            ("host", b"app.example.test:8443"),
        ])
        .unwrap();
        assert_eq!((r.method.as_str(), r.uri.as_str()), ("DELETE", "/admin"));
        assert_eq!(r.url(), "https://app.example.test:8443/admin");
        // Both URI headers saying the same thing are fine.
        let r = read(&[
            ("x-forwarded-uri", b"/x"),
            ("x-original-uri", b"/x"),
            ("host", b"a.test"),
        ])
        .unwrap();
        assert_eq!(r.uri, "/x");
    }

    #[test]
    fn envoy_puts_the_original_path_below_the_prefix_and_sends_its_own_method() {
        let h = map(&[("host", b"grafana.example.test")]);
        let r = original_request(&h, "PUT", "/v1/forward-auth/api/dash%2Fx", Some("a=1&b=2"), None).unwrap();
        assert_eq!(r.method, "PUT");
        assert_eq!(r.uri, "/api/dash%2Fx?a=1&b=2");
        let r = original_request(&h, "GET", "/v1/forward-auth/", None, None).unwrap();
        assert_eq!(r.uri, "/");
        // A header still wins over the path.
        let h = map(&[("host", b"g.test"), ("x-forwarded-uri", b"/from-header")]);
        let r = original_request(&h, "GET", "/v1/forward-auth/from-path", None, None).unwrap();
        assert_eq!(r.uri, "/from-header");
        // HTTP/2: the authority stands for Host.
        let r = original_request(&HeaderMap::new(), "GET", "/v1/forward-auth/x", None, Some("g.test")).unwrap();
        assert_eq!(r.host, "g.test");
    }

    #[test]
    fn what_cannot_be_read_is_refused_naming_the_header() {
        assert_eq!(read(&[("host", b"a.test")]), Err(ForwardedError::MissingUri));
        // `/v1/forward-authx` is not below the prefix.
        let h = map(&[("host", b"a.test")]);
        assert_eq!(
            original_request(&h, "GET", "/v1/forward-authx", None, None),
            Err(ForwardedError::MissingUri)
        );
        assert_eq!(read(&[("x-forwarded-uri", b"/")]), Err(ForwardedError::MissingHost));
        assert_eq!(
            read(&[
                ("x-forwarded-uri", b"/public"),
                ("x-original-uri", b"/admin"),
                ("host", b"a.test")
            ]),
            Err(ForwardedError::ConflictingUri)
        );
        assert_eq!(
            read(&[
                ("x-forwarded-method", b"GET"),
                ("x-original-method", b"POST"),
                ("x-forwarded-uri", b"/"),
                ("host", b"a.test")
            ]),
            Err(ForwardedError::ConflictingMethod)
        );
        for name in [
            "x-forwarded-uri",
            "x-original-uri",
            "x-forwarded-host",
            "x-forwarded-method",
            "host",
        ] {
            let e = read(&[
                (name, b"/a"),
                (name, b"/b"),
                ("x-forwarded-uri", b"/"),
                ("host", b"h.test"),
            ])
            .unwrap_err();
            assert!(
                matches!(e, ForwardedError::Repeated(n) if n.eq_ignore_ascii_case(name)),
                "{name}: {e}"
            );
        }
        let e = read(&[("x-forwarded-host", b"a.test, evil.test"), ("x-forwarded-uri", b"/")]).unwrap_err();
        assert_eq!(e, ForwardedError::CommaInHost("X-Forwarded-Host"));
        assert!(e.to_string().starts_with("X-Forwarded-Host: holds a comma"), "{e}");
        let e = read(&[("host", b"a.test,b.test"), ("x-forwarded-uri", b"/")]).unwrap_err();
        assert_eq!(e, ForwardedError::CommaInHost("Host"));
        assert_eq!(
            read(&[
                ("x-forwarded-proto", b"ftp"),
                ("x-forwarded-uri", b"/"),
                ("host", b"a.test")
            ]),
            Err(ForwardedError::BadProto("ftp".into()))
        );
        assert_eq!(
            read(&[
                ("x-forwarded-method", b""),
                ("x-forwarded-uri", b"/"),
                ("host", b"a.test")
            ]),
            Err(ForwardedError::Empty("X-Forwarded-Method"))
        );
    }

    #[test]
    fn hostile_bytes_in_any_header_read_are_refused() {
        // HTTP refuses NUL, CR, LF and the other controls in a header (hyper never hands
        // them on, and `HeaderValue` cannot hold them) ...
        for byte in [0u8, b'\r', b'\n', 0x1b, 0x7f] {
            assert!(HeaderValue::from_bytes(&[b'/', byte]).is_err(), "{byte}");
        }
        // ... but tabs, spaces and bytes >= 0x80 get through to us.
        let cases: [(&[u8], &str); 5] = [
            (b"/a\tb", "a tab at byte 2"),
            (b"/a b", "a space at byte 2"),
            (b"/caf\xc3\xa9", "byte 0xC3 (not ASCII) at byte 4"),
            (b"/\xe2\x80\xae", "byte 0xE2 (not ASCII) at byte 1"),
            (b"/\xff", "byte 0xFF (not ASCII) at byte 1"),
        ];
        for (value, what) in cases {
            for name in ["x-forwarded-uri", "x-original-uri"] {
                let e = read(&[(name, value), ("host", b"a.test")]).unwrap_err();
                assert!(
                    e.to_string().contains(what) && matches!(e, ForwardedError::NotVisible { .. }),
                    "{name} {value:?}: {e}"
                );
            }
            let e = read(&[("x-forwarded-host", value), ("x-forwarded-uri", b"/")]).unwrap_err();
            assert!(e.to_string().starts_with("X-Forwarded-Host: holds"), "{e}");
            let e = read(&[
                ("x-forwarded-method", value),
                ("x-forwarded-uri", b"/"),
                ("host", b"a.test"),
            ])
            .unwrap_err();
            assert!(e.to_string().starts_with("X-Forwarded-Method: holds"), "{e}");
        }
        // A look-alike host (Cyrillic а) is not ASCII.
        let e = read(&[("host", "grаfana.test".as_bytes()), ("x-forwarded-uri", b"/")]).unwrap_err();
        assert!(e.to_string().starts_with("Host: holds byte 0xD0"), "{e}");
        // A header that is not read may hold anything.
        assert!(read(&[("x-other", b"\xff\t"), ("x-forwarded-uri", b"/"), ("host", b"a.test")]).is_ok());
    }

    #[test]
    fn only_absolute_http_urls_may_lead_back() {
        for good in [
            "https://grafana.example.test/d/abc?orgId=1",
            "http://app.example.test:8080/",
            "https://grafana.example.test",
        ] {
            assert_eq!(return_to_problem(good), None, "{good}");
        }
        for (bad, why) in [
            ("/ui/inbox", "is not an absolute URL"),
            ("//evil.example/", "is not an absolute URL"),
            ("javascript:alert(1)", "is a javascript URL"),
            ("data:text/html,x", "is a data URL"),
            ("https://grafana.example.test@evil.example/", "holds user information"),
            ("https://evil.example\\@grafana.example.test/", "holds a backslash"),
            ("https:evil.example", "does not start with"),
            ("https:/evil.example", "does not start with"),
            ("https://a.test/\x00", "holds a NUL byte"),
            ("https://a.test/\r\nSet-Cookie:x", "holds a carriage return"),
            ("https://a.test/\u{202e}", "holds byte 0xE2"),
            ("https://a.test/ x", "holds a space"),
        ] {
            let problem = return_to_problem(bad).unwrap_or_default();
            assert!(problem.contains(why), "{bad}: {problem}");
        }
        let long = format!("https://a.test/{}", "x".repeat(MAX_RETURN_TO));
        assert!(return_to_problem(&long).unwrap().contains("longer than 2048"));
        assert_eq!(
            browser_origin("HTTPS://Grafana.Example.Test:443/x").as_deref(),
            Some("https://grafana.example.test/")
        );
        assert_eq!(
            browser_origin("http://a.test:8080/x?y").as_deref(),
            Some("http://a.test:8080/")
        );
    }

    #[test]
    fn links_are_percent_encoded() {
        let path = new_request_path(
            "grafana",
            "read",
            Some("https://grafana.example.test/d/a b?x=1&y=2#frag"),
        );
        // A space makes the URL unfit to lead back: it is left out.
        assert_eq!(path, "/ui/new?resource=grafana&action=read");
        let path = new_request_path("grafana", "read", Some("https://grafana.example.test/d/abc?x=1&y=%2F"));
        assert_eq!(
            path,
            "/ui/new?resource=grafana&action=read&return_to=https%3A%2F%2Fgrafana.example.test%2Fd%2Fabc%3Fx%3D1%26y%3D%252F"
        );
        let parsed: Vec<(String, String)> = serde_urlencoded::from_str(path.split_once('?').unwrap().1).unwrap();
        assert_eq!(parsed[2].1, "https://grafana.example.test/d/abc?x=1&y=%2F");
        assert_eq!(
            new_request_path("a&b=c", "r#w", None),
            "/ui/new?resource=a%26b%3Dc&action=r%23w"
        );
        assert_eq!(
            login_url("https://jit.example/", Some(&path)),
            format!(
                "https://jit.example/ui/login?next={}",
                query(&[("", path.as_str())]).trim_start_matches('=')
            )
        );
        assert_eq!(login_url("https://jit.example", None), "https://jit.example/ui/login");
    }

    #[test]
    fn header_text_stays_one_line_of_ascii() {
        assert_eq!(header_text("no active grant", 100), "no active grant");
        assert_eq!(header_text("a\r\nSet-Cookie: x", 100), "a%0D%0ASet-Cookie: x");
        assert_eq!(header_text("café", 100), "caf%C3%A9");
        assert_eq!(header_text("100% sure", 100), "100%25 sure");
        assert_eq!(header_text("abcdef", 3), "abc");
        // An escape is never cut in half.
        assert_eq!(header_text("abé", 4), "ab");
        assert!(HeaderValue::from_str(&header_text("\u{0}\u{7f}\u{202e}", 100)).is_ok());
    }

    fn body(response: Response) -> String {
        let bytes = futures_body(response.into_body());
        String::from_utf8(bytes).unwrap()
    }

    fn futures_body(body: axum::body::Body) -> Vec<u8> {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(axum::body::to_bytes(body, 1 << 20)).unwrap().to_vec()
    }

    fn get<'r>(response: &'r Response, name: &str) -> Option<&'r str> {
        response.headers().get(name).map(|v| v.to_str().unwrap())
    }

    #[test]
    fn a_200_carries_who_and_which_grant_and_is_never_cached() {
        let r = allow(&Allowed {
            principal: "alice",
            grant_id: "grt_1",
            expires_at: "2026-12-04T05:00:00Z".into(),
            resource: "grafana",
            action: "read",
            token: Some("eyJ.x.y"),
        });
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(get(&r, "x-jitgate-principal"), Some("alice"));
        assert_eq!(get(&r, "x-jitgate-grant"), Some("grt_1"));
        assert_eq!(get(&r, "x-jitgate-expires-at"), Some("2026-12-04T05:00:00Z"));
        assert_eq!(get(&r, "x-jitgate-resource"), Some("grafana"));
        assert_eq!(get(&r, "x-jitgate-action"), Some("read"));
        assert_eq!(get(&r, "x-jitgate-token"), Some("eyJ.x.y"));
        assert_eq!(get(&r, "cache-control"), Some("no-store"));
        assert_eq!(body(r), "");
        let r = allow(&Allowed {
            principal: "alice",
            grant_id: "grt_1",
            expires_at: "2026-12-04T05:00:00Z".into(),
            resource: "grafana",
            action: "read",
            token: None,
        });
        assert_eq!(get(&r, "x-jitgate-token"), None);
    }

    #[test]
    fn a_401_says_where_to_sign_in_as_json_or_as_a_page() {
        let login = "https://jit.example/ui/login?next=%2Fui%2Fnew%3Fresource%3Dgrafana";
        let r = unauthenticated("https://jit.example", login, false);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(get(&r, "www-authenticate"), Some("Bearer realm=\"jitgate\""));
        assert_eq!(get(&r, "x-jitgate-login-url"), Some(login));
        assert_eq!(get(&r, "cache-control"), Some("no-store"));
        let json: serde_json::Value = serde_json::from_str(&body(r)).unwrap();
        assert_eq!(json["error"]["code"], "unauthenticated");
        assert!(json["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("sign in to jitgate"));

        let r = unauthenticated("https://jit.example", login, true);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(get(&r, "content-type").unwrap().starts_with("text/html"));
        let csp = get(&r, "content-security-policy").unwrap().to_string();
        assert!(csp.contains("style-src https://jit.example;"), "{csp}");
        assert!(!csp.contains("script-src"), "{csp}");
        let html = body(r);
        assert!(
            html.contains("href=\"https://jit.example/ui/login?next=%2Fui%2Fnew%3Fresource%3Dgrafana\""),
            "{html}"
        );
        assert!(html.contains(">Sign in</a>"), "{html}");
        assert!(
            html.contains("href=\"https://jit.example/ui/static/app.css\""),
            "{html}"
        );
    }

    #[test]
    fn a_403_links_to_the_request_page_and_escapes_everything() {
        let url = format!(
            "https://jit.example{}",
            new_request_path("<b>grafana</b>", "read\"", Some("https://g.test/x?a=1&b=2"))
        );
        let d = Denied {
            reason: "no active grant covers alice\r\n<script>",
            needs: Some(("<b>grafana</b>", "read\"")),
            request_url: Some(url.clone()),
        };
        let r = deny("https://jit.example", &d, false);
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            get(&r, "x-jitgate-reason"),
            Some("no active grant covers alice%0D%0A<script>")
        );
        assert_eq!(get(&r, "x-jitgate-request-url"), Some(url.as_str()));
        assert_eq!(get(&r, "cache-control"), Some("no-store"));
        let json: serde_json::Value = serde_json::from_str(&body(r)).unwrap();
        assert_eq!(json["error"]["code"], "forbidden");
        assert_eq!(json["error"]["message"], "no active grant covers alice\r\n<script>");
        assert_eq!(json["request_url"], url.as_str());

        let r = deny("https://jit.example", &d, true);
        let html = body(r);
        assert!(
            html.contains("You need approval for read&#34; on &#60;b&#62;grafana&#60;/b&#62;."),
            "{html}"
        );
        assert!(!html.contains("<b>grafana"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains(">Request access</a>"), "{html}");
        // The link's `&` are escaped in the attribute, as HTML wants.
        assert!(
            html.contains("resource=%3Cb%3Egrafana%3C%2Fb%3E&#38;action=read%22&#38;return_to="),
            "{html}"
        );

        // Nothing serves the URL: nothing to ask for, no link.
        let d = Denied {
            reason: "no catalog resource of kind http serves a.test /x; add one to resources.toml",
            needs: None,
            request_url: None,
        };
        let r = deny("https://jit.example", &d, false);
        assert_eq!(get(&r, "x-jitgate-request-url"), None);
        let json: serde_json::Value = serde_json::from_str(&body(r)).unwrap();
        assert!(json.get("request_url").is_none(), "{json}");
        let html = body(deny("https://jit.example", &d, true));
        assert!(!html.contains("Request access"), "{html}");
        assert!(
            html.contains("no catalog resource of kind http serves a.test /x"),
            "{html}"
        );
    }

    #[test]
    fn a_400_is_the_apis_error_naming_the_header() {
        let r = bad_request(ForwardedError::Repeated("X-Forwarded-Uri").to_string());
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(get(&r, "cache-control"), Some("no-store"));
        let json: serde_json::Value = serde_json::from_str(&body(r)).unwrap();
        assert_eq!(json["error"]["code"], "bad_request");
        assert!(json["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("X-Forwarded-Uri: sent more than once"));
    }

    #[test]
    fn the_session_cookie_is_found_among_the_apps_cookies() {
        let h = map(&[
            ("cookie", b"grafana_session=x; jitgate_session=tok.en"),
            ("cookie", b"b=2"),
        ]);
        assert_eq!(session_cookie(&h), Some("tok.en"));
        assert_eq!(session_cookie(&map(&[("cookie", b"jitgate_session=")])), None);
        assert_eq!(session_cookie(&map(&[("cookie", b"xjitgate_session=a")])), None);
        assert_eq!(session_cookie(&HeaderMap::new()), None);
    }

    #[test]
    fn each_answer_of_the_service_becomes_its_status() {
        let original = OriginalRequest {
            method: "GET".into(),
            host: "g.test".into(),
            uri: "/d/x?a=1".into(),
            scheme: "https",
        };
        let route = || {
            Some(jitgate_policy::Route {
                resource: "grafana".into(),
                action: "read".into(),
            })
        };
        let allow = ForwardAuthAnswer::Allow {
            principal: "alice".into(),
            resource: "grafana".into(),
            action: "read".into(),
            grant_id: "grt_1".into(),
            expires_at: chrono::DateTime::from_timestamp_millis(1_800_000_000_123).unwrap(),
            token: None,
        };
        let r = respond("https://jit.test/", &original, allow, false, || None);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(get(&r, "x-jitgate-expires-at"), Some("2027-01-15T08:00:00.123Z"));

        let r = respond(
            "https://jit.test/",
            &original,
            ForwardAuthAnswer::Unauthenticated {
                reason: "no credential".into(),
            },
            false,
            route,
        );
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            get(&r, "x-jitgate-login-url"),
            Some("https://jit.test/ui/login?next=%2Fui%2Fnew%3Fresource%3Dgrafana%26action%3Dread%26return_to%3Dhttps%253A%252F%252Fg.test%252Fd%252Fx%253Fa%253D1")
        );
        let r = respond(
            "https://jit.test",
            &original,
            ForwardAuthAnswer::Unauthenticated {
                reason: "no credential".into(),
            },
            false,
            || None,
        );
        assert_eq!(get(&r, "x-jitgate-login-url"), Some("https://jit.test/ui/login"));
        // The reason is for the log only.
        assert!(!body(r).contains("no credential\""));

        let r = respond(
            "https://jit.test",
            &original,
            ForwardAuthAnswer::Deny {
                principal: "alice".into(),
                route: route(),
                reason: "no active grant".into(),
            },
            false,
            || None,
        );
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            get(&r, "x-jitgate-request-url"),
            Some("https://jit.test/ui/new?resource=grafana&action=read&return_to=https%3A%2F%2Fg.test%2Fd%2Fx%3Fa%3D1")
        );
        let r = respond(
            "https://jit.test",
            &original,
            ForwardAuthAnswer::BadRequest("uri: holds an encoded /".into()),
            true,
            || None,
        );
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(get(&r, "content-type").unwrap().starts_with("application/json"));
    }

    #[test]
    fn html_is_for_browsers() {
        assert!(wants_html(&map(&[(
            "accept",
            b"text/html,application/xhtml+xml;q=0.9"
        )])));
        assert!(wants_html(&map(&[
            ("accept", b"application/json"),
            ("accept", b"TEXT/HTML")
        ])));
        assert!(!wants_html(&map(&[("accept", b"application/json")])));
        assert!(!wants_html(&map(&[("accept", b"*/*")])));
        assert!(!wants_html(&HeaderMap::new()));
    }
}
