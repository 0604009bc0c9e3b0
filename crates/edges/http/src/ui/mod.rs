//! The web UI: pages rendered on the server (askama) with htmx for the parts that update
//! themselves, served by the same binary under `/ui`. No front-end build: the templates are
//! compiled into the binary, and the stylesheet and htmx are embedded.
//!
//! The UI holds no authority of its own. Signing in with a token keeps that token in an
//! HttpOnly cookie scoped to `/ui`; on each request it becomes the `Authorization` header, so
//! the same authenticator and the same authorization table as the API decide everything (a
//! revoked token signs the browser out at once). Behind a trusted proxy the proxy's headers
//! authenticate as they do for the API.
//!
//! Safe by default: every POST must carry the CSRF token of its form (double submit: a random
//! cookie and the same value in the form), and is refused when the browser says it comes from
//! another site (`Origin`, `Sec-Fetch-Site`); every page is sent with a strict
//! Content-Security-Policy (scripts and styles from this origin only, no inline code), no
//! framing, no caching, and no referrer; every value is escaped by the templates.

mod pages;
mod sso;

pub use sso::{Sso, SsoConfig, UiConfig};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

/// The cookie that holds the signed-in token.
pub const SESSION_COOKIE: &str = "jitgate_session";
/// The cookie that holds the CSRF token forms must repeat.
pub const CSRF_COOKIE: &str = "jitgate_csrf";
/// The cookie that carries a confirmation ("Approved") from a form's redirect to the one page
/// it names, once: a cookie rather than the address, so a link cannot make a page claim what
/// did not happen.
pub const FLASH_COOKIE: &str = "jitgate_flash";
/// Forms are small; a bigger body is not a form of ours.
const MAX_FORM_BYTES: usize = 128 * 1024;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Single sign-on, when configured: the UI's own, so the rest of the server need not know it.
#[derive(Clone)]
pub struct SsoSlot(pub Option<Arc<Sso>>);

impl SsoSlot {
    pub fn get(&self) -> Option<&Sso> {
        self.0.as_deref()
    }
}

pub fn router(single_sign_on: Option<Sso>, edge: crate::state::Edge) -> Router<crate::state::Edge> {
    Router::new()
        .route("/", get(pages::home))
        .route("/login", get(pages::login_page).post(pages::login))
        .route("/login/sso", get(sso::start))
        .route("/login/callback", get(sso::callback))
        .route("/logout", post(pages::logout))
        .route("/inbox", get(pages::inbox))
        .route("/inbox/rows", get(pages::inbox_rows))
        .route("/requests", get(pages::mine).post(pages::file))
        .route("/requests/{id}", get(pages::request))
        .route("/requests/{id}/{decision}", post(pages::decide))
        .route("/new", get(pages::new_request))
        .route("/new/fields", get(pages::new_fields))
        .route("/grants", get(pages::grants))
        .route("/grants/rows", get(pages::grant_rows))
        .route("/grants/{id}/revoke", get(pages::revoke_page).post(pages::revoke))
        .route("/grants/{id}/extend", post(pages::extend))
        .route("/grants/{id}/done", post(pages::done))
        .route("/grants/{id}/credentials", post(pages::credentials))
        .route("/audit", get(pages::audit))
        .route("/explain", get(pages::explain))
        .route("/static/{file}", get(pages::asset))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(edge, guard))
        .layer(axum::Extension(SsoSlot(single_sign_on.map(Arc::new))))
}

/// `/`: the web UI.
pub fn pages_home() -> Response {
    pages::see_other("/ui/inbox")
}

/// The CSRF token of this browser, for the forms a page renders.
#[derive(Clone)]
pub struct CsrfToken(pub String);

/// Everything every UI request goes through: the session cookie as credentials, the CSRF
/// check of posts, the security headers of answers, and errors as pages.
async fn guard(State(edge): State<crate::state::Edge>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let cookies = cookies(&parts.headers);
    let existing_csrf = cookies
        .iter()
        .find(|(k, _)| k == CSRF_COOKIE)
        .map(|(_, v)| v.clone())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()));
    let Some(csrf) = existing_csrf.clone().or_else(new_csrf_token) else {
        // Forms without an unguessable token would be forgeable: refuse to serve them.
        return (StatusCode::INTERNAL_SERVER_ERROR, "no randomness available").into_response();
    };
    if !parts.headers.contains_key(header::AUTHORIZATION) {
        if let Some((_, token)) = cookies.iter().find(|(k, _)| k == SESSION_COOKIE) {
            if let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) {
                parts.headers.insert(header::AUTHORIZATION, value);
            }
        }
    }
    if let Some(crate::input::RefusedAddress { why, in_path }) = parts.extensions.get() {
        // No id of ours holds such a character: nothing to find, and no handler (nor store)
        // gets to see it. In the query it is a parameter of a page that exists: refused, named.
        let page = if *in_path {
            pages::error_page(
                &csrf,
                StatusCode::NOT_FOUND,
                &format!("There is no such page: its address is not one of ours ({why})"),
            )
        } else {
            pages::error_page(
                &csrf,
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("This page cannot take what its address asks: {why}"),
            )
        };
        return finish(page, &csrf, existing_csrf.is_none(), false);
    }
    let is_get = parts.method == Method::GET || parts.method == Method::HEAD;
    // Inside the `/ui` nest the prefix is stripped: put it back for links to this page.
    let path = format!("/ui{}", parts.uri.path());
    let path_and_query = match parts.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.clone(),
    };
    let htmx = parts.headers.contains_key("hx-request");
    let body = if is_get {
        body
    } else {
        // A post must come from our own pages: same site, and the form's CSRF token.
        if let Err(why) = same_site(&parts.headers) {
            return finish(refused(&csrf, &why), &csrf, existing_csrf.is_none(), false);
        }
        let bytes = match axum::body::to_bytes(body, MAX_FORM_BYTES).await {
            Ok(b) => b,
            Err(_) => {
                return finish(
                    pages::error_page(&csrf, StatusCode::PAYLOAD_TOO_LARGE, "The form is too large."),
                    &csrf,
                    existing_csrf.is_none(),
                    false,
                )
            }
        };
        let sent = form_field(&bytes, "csrf");
        let expected = existing_csrf.as_deref();
        if !matches!((sent.as_deref(), expected), (Some(a), Some(b)) if constant_time_eq(a.as_bytes(), b.as_bytes())) {
            return finish(
                refused(
                    &csrf,
                    "The form's security token is missing or stale. Reload the page and try again.",
                ),
                &csrf,
                existing_csrf.is_none(),
                false,
            );
        }
        Body::from(bytes)
    };
    parts.extensions.insert(CsrfToken(csrf.clone()));
    // A confirmation is shown by the whole page it was meant for (not a live part of it), once.
    let flash = if is_get && !htmx {
        cookies
            .iter()
            .find(|(k, _)| k == FLASH_COOKIE)
            .map(|(_, v)| pages::Flash::for_page(v, &path))
    } else {
        None
    };
    parts.extensions.insert(pages::FlashSlot(flash.flatten()));
    // Kept to say on an error page who is signed in, so the page keeps the navigation.
    let asker = Asker {
        edge,
        headers: parts.headers.clone(),
        peer: parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|axum::extract::ConnectInfo(addr)| addr.ip()),
    };
    let response = next.run(Request::from_parts(parts, body)).await;
    let mut response = as_page(response, &csrf, is_get, htmx, &path_and_query, &asker).await;
    let sets_flash = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .any(|v| v.as_bytes().starts_with(FLASH_COOKIE.as_bytes()));
    if flash.is_some() && !sets_flash {
        if let Ok(v) = HeaderValue::from_str(&cookie(FLASH_COOKIE, "", Some(0))) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    finish(
        response,
        &csrf,
        existing_csrf.is_none(),
        path.starts_with("/ui/static/"),
    )
}

/// Refuse a post another site's page made the browser send.
fn same_site(headers: &HeaderMap) -> Result<(), String> {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if site == "cross-site" || site == "same-site" {
            return Err(format!("A form from another site was refused ({site})."));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
        let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
        if origin == "null" || origin_host != host {
            return Err(format!("A form from {origin} was refused: it is not this site."));
        }
    }
    Ok(())
}

fn refused(csrf: &str, why: &str) -> Response {
    pages::error_page(csrf, StatusCode::FORBIDDEN, why)
}

/// Errors from the API's extractors and handlers (JSON) and axum's own rejections (plain
/// text: a form without its content type, an id that is not UTF-8) become pages; an
/// unauthenticated page view goes to the sign-in page and comes back after.
/// Who asked for a page: enough to authenticate them again when the page is an error.
struct Asker {
    edge: crate::state::Edge,
    headers: HeaderMap,
    peer: Option<std::net::IpAddr>,
}

impl Asker {
    /// Whoever is signed in, for the navigation of an error page. Not after a 401 (they are
    /// not) nor a 429 (asking again would spend the limit they hit).
    async fn signed_in(&self, status: StatusCode) -> Option<jitgate_core::Identity> {
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::TOO_MANY_REQUESTS {
            return None;
        }
        crate::auth::authenticate_headers(&self.edge.app, &self.headers, self.peer)
            .await
            .ok()
    }
}

async fn as_page(response: Response, csrf: &str, is_get: bool, htmx: bool, path: &str, asker: &Asker) -> Response {
    let status = response.status();
    let is_page = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if !status.is_client_error() && !status.is_server_error() || is_page {
        return response;
    }
    if status == StatusCode::UNAUTHORIZED && is_get && !path.starts_with("/ui/login") {
        // A live part of a page whose session ended: send the whole page to sign in, rather
        // than swap the sign-in page into a table.
        if htmx {
            let mut r = StatusCode::NO_CONTENT.into_response();
            r.headers_mut()
                .insert("hx-redirect", HeaderValue::from_static("/ui/login"));
            return r;
        }
        let next = pages::encode(path);
        return pages::see_other(&format!("/ui/login?next={next}"));
    }
    // What the page keeps of the error: a limit's count in the metrics, and when to come back.
    let limit_hit = response.extensions().get::<crate::error::LimitHit>().copied();
    let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
    let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .or_else(|| {
            let text = String::from_utf8_lossy(&bytes).trim().to_string();
            (!text.is_empty()).then_some(text)
        })
        .unwrap_or_else(|| "Something went wrong.".into());
    let signed_in = asker.signed_in(status).await;
    let mut page = pages::error_page_for(signed_in.as_ref(), csrf, status, &message);
    if let Some(limit_hit) = limit_hit {
        page.extensions_mut().insert(limit_hit);
    }
    if let Some(retry_after) = retry_after {
        page.headers_mut().insert(header::RETRY_AFTER, retry_after);
    }
    page
}

/// The security headers, and the CSRF cookie for a browser that has none yet.
fn finish(mut response: Response, csrf: &str, set_csrf: bool, asset: bool) -> Response {
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // `same-origin`: our own forms send their true `Origin` (under `no-referrer` browsers send
    // `Origin: null`), and no other site learns our URLs.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !asset {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if set_csrf {
        if let Ok(v) = HeaderValue::from_str(&cookie(CSRF_COOKIE, csrf, None)) {
            h.append(header::SET_COOKIE, v);
        }
    }
    response.into_response()
}

/// A cookie for the UI: HttpOnly, SameSite=Lax (a link from Slack or an email still finds the
/// browser signed in; another site's form does not carry it), `Secure` when the server is
/// reached over HTTPS (`[notify] public_url`), scoped to `/ui`. `max_age` 0 deletes it.
pub fn cookie(name: &str, value: &str, max_age: Option<u64>) -> String {
    let mut c = format!("{name}={value}; Path=/ui; HttpOnly; SameSite=Lax");
    if SECURE_COOKIES.load(std::sync::atomic::Ordering::Relaxed) {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    c
}

/// Where the session cookie goes: jitgate's own host under `/ui` (the default), or a whole
/// domain (`[ui] cookie_domain`), so that apps on it behind forward authentication send it
/// through their proxy to `/v1/forward-auth`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionScope {
    domain: Option<Arc<str>>,
}

impl SessionScope {
    /// A checked domain (`cookie_domain_problem` found nothing wrong with it).
    pub(crate) fn on_domain(domain: &str) -> SessionScope {
        SessionScope {
            domain: Some(domain.into()),
        }
    }

    /// The domain, for the edge's state to keep.
    pub fn domain(&self) -> Option<Arc<str>> {
        self.domain.clone()
    }

    /// The `Set-Cookie` values that set the session to `value` (or, with `max_age` 0, end
    /// it). A session on the domain also ends any session cookie left on `/ui` alone by an
    /// earlier configuration: the browser would send that one first.
    pub fn cookies(&self, value: &str, max_age: Option<u64>) -> Vec<String> {
        let host_only = cookie(SESSION_COOKIE, value, max_age);
        let Some(domain) = &self.domain else {
            return vec![host_only];
        };
        let on_domain = host_only.replacen("; Path=/ui;", &format!("; Domain={domain}; Path=/;"), 1);
        let ended = cookie(SESSION_COOKIE, "", Some(0));
        vec![ended, on_domain]
    }
}

impl axum::extract::FromRef<crate::state::Edge> for SessionScope {
    fn from_ref(edge: &crate::state::Edge) -> SessionScope {
        SessionScope {
            domain: edge.cookie_domain.clone(),
        }
    }
}

/// Why `domain` cannot be `[ui] cookie_domain`, or `None`: a plain lower-case DNS name of two
/// labels or more (letters, digits, hyphens), not an IP address, without a leading dot.
pub fn cookie_domain_problem(domain: &str) -> Option<String> {
    if domain.is_empty() {
        return Some("is empty; remove it to keep the session on jitgate's own host".into());
    }
    if domain.len() > 253 {
        return Some("is longer than 253 bytes".into());
    }
    if let Some(c) = domain
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.'))
    {
        return Some(if c.is_ascii_uppercase() {
            format!("holds upper case ('{c}'); write it in lower case")
        } else {
            format!(
                "holds '{}' (U+{:04X}); write a plain domain of lower-case letters, digits, hyphens and dots (an IDN in its xn-- form)",
                c.escape_debug(),
                u32::from(c)
            )
        });
    }
    if domain.starts_with('.') {
        return Some(format!(
            "starts with a dot; write {} (the cookie covers its subdomains anyway)",
            domain.trim_start_matches('.')
        ));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Some(
            "is a single label; browsers refuse such a domain for cookies: write a domain like example.com".into(),
        );
    }
    if let Some(bad) = labels
        .iter()
        .find(|l| l.is_empty() || l.len() > 63 || l.starts_with('-') || l.ends_with('-'))
    {
        return Some(format!(
            "has the label '{bad}': labels are 1 to 63 characters and neither start nor end with a hyphen"
        ));
    }
    if labels.last().is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit())) {
        return Some("is an IP address; a cookie for several hosts needs a domain name".into());
    }
    None
}

/// Whether cookies are marked `Secure` (the server's public URL is HTTPS).
pub static SECURE_COOKIES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub(crate) fn cookies(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

fn new_csrf_token() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).ok()?;
    Some(hex::encode(bytes))
}

fn form_field(body: &[u8], name: &str) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap_or(header::HOST),
                HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("")),
            );
        }
        h
    }

    #[test]
    fn only_our_own_pages_may_post() {
        assert!(same_site(&headers(&[("host", "jit.example:7400")])).is_ok());
        assert!(same_site(&headers(&[
            ("host", "jit.example:7400"),
            ("origin", "http://jit.example:7400")
        ]))
        .is_ok());
        assert!(same_site(&headers(&[
            ("host", "jit.example:7400"),
            ("origin", "http://evil.example")
        ]))
        .is_err());
        assert!(same_site(&headers(&[("host", "jit.example:7400"), ("origin", "null")])).is_err());
        assert!(same_site(&headers(&[
            ("host", "jit.example:7400"),
            ("sec-fetch-site", "cross-site")
        ]))
        .is_err());
        assert!(same_site(&headers(&[
            ("host", "jit.example:7400"),
            ("sec-fetch-site", "same-origin")
        ]))
        .is_ok());
    }

    #[test]
    fn the_session_cookie_goes_to_the_configured_domain_only() {
        let own = SessionScope::default().cookies("tok", None);
        assert_eq!(own.len(), 1);
        assert!(
            own[0].starts_with("jitgate_session=tok; Path=/ui; HttpOnly; SameSite=Lax"),
            "{own:?}"
        );
        assert!(!own[0].contains("Domain="), "{own:?}");
        let shared = SessionScope::on_domain("example.test").cookies("tok", Some(60));
        assert_eq!(shared.len(), 2, "{shared:?}");
        assert!(
            shared[0].starts_with("jitgate_session=; Path=/ui;") && shared[0].contains("Max-Age=0"),
            "{shared:?}"
        );
        assert!(
            shared[1].starts_with("jitgate_session=tok; Domain=example.test; Path=/; HttpOnly; SameSite=Lax"),
            "{shared:?}"
        );
        assert!(shared[1].ends_with("; Max-Age=60"), "{shared:?}");
        // Ending the session ends both.
        let ended = SessionScope::on_domain("example.test").cookies("", Some(0));
        assert!(ended.iter().all(|c| c.contains("Max-Age=0")), "{ended:?}");
    }

    #[test]
    fn a_cookie_domain_is_a_plain_lower_case_domain() {
        for good in ["example.test", "corp.example.com", "xn--bcher-kva.example", "a-b.c1.io"] {
            assert_eq!(cookie_domain_problem(good), None, "{good}");
        }
        for (bad, why) in [
            ("", "is empty"),
            ("Example.test", "holds upper case"),
            (".example.test", "starts with a dot; write example.test"),
            ("localhost", "single label"),
            ("example..test", "has the label ''"),
            ("-a.test", "has the label '-a'"),
            ("10.0.0.1", "is an IP address"),
            ("exa mple.test", "holds ' ' (U+0020)"),
            ("example.test\0", "holds '\\0' (U+0000)"),
            ("example.test;Path=/", "holds ';'"),
            ("exаmple.test", "(U+0430)"),
            ("example.test\u{200b}", "(U+200B)"),
            ("[::1]", "holds '['"),
        ] {
            let problem = cookie_domain_problem(bad).unwrap_or_default();
            assert!(problem.contains(why), "{bad:?}: {problem}");
        }
        assert!(cookie_domain_problem(&format!("{}.test", "a".repeat(64))).is_some());
    }

    #[test]
    fn the_cookie_domain_must_hold_jitgates_public_host() {
        let config = |d: &str| UiConfig {
            sso: None,
            cookie_domain: Some(d.into()),
        };
        assert_eq!(
            config("example.test").session_scope("https://jit.example.test"),
            Ok(SessionScope::on_domain("example.test"))
        );
        assert_eq!(
            config("example.test").session_scope("https://example.test:8443/"),
            Ok(SessionScope::on_domain("example.test"))
        );
        let e = config("example.test")
            .session_scope("https://jit.other.test")
            .unwrap_err();
        assert!(
            e.starts_with("ui.cookie_domain: jitgate's public URL https://jit.other.test is not on example.test"),
            "{e}"
        );
        // A suffix that is not a label boundary is not the domain.
        assert!(config("example.test").session_scope("https://badexample.test").is_err());
        let e = config("Example.test")
            .session_scope("https://jit.example.test")
            .unwrap_err();
        assert!(
            e.starts_with("ui.cookie_domain: 'Example.test' holds upper case"),
            "{e}"
        );
        assert_eq!(
            UiConfig::default().session_scope("http://127.0.0.1:7400"),
            Ok(SessionScope::default())
        );
    }

    #[test]
    fn csrf_tokens_are_fresh_and_compared_whole() {
        let (a, b) = (
            new_csrf_token().unwrap_or_default(),
            new_csrf_token().unwrap_or_default(),
        );
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(constant_time_eq(a.as_bytes(), a.as_bytes()));
        assert!(!constant_time_eq(a.as_bytes(), b.as_bytes()));
        assert!(!constant_time_eq(a.as_bytes(), &a.as_bytes()[..63]));
        assert_eq!(form_field(b"comment=ok&csrf=abc%20d", "csrf").as_deref(), Some("abc d"));
    }
}
