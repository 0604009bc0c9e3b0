//! The UI's pages: thin handlers over the same `App` operations and authorization as the API,
//! and the view models the templates render.

use super::CsrfToken;
use crate::api::{CreateRequestBody, DurationInput, GrantView, ItemBody, RequestView};
use crate::app::{now, App};
use crate::auth::{op, Allowed, Caller};
use crate::ApiError;
use askama::Template;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Extension;
use jitgate_core::authz::{self, Operation, Reach};
use jitgate_core::text::PayloadShown;
use jitgate_core::{GrantStatus, RequestStatus, Timestamp};
use jitgate_service::{Limit, ServiceError};
use jitgate_store::{AuditFilter, GrantFilter, RequestFilter};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;

mod assets;
mod audit;
mod filing;
mod grants;
mod inbox;
mod requests;

pub use assets::*;
pub use audit::*;
pub use filing::*;
pub use grants::*;
pub use inbox::*;
pub use requests::*;

/// The input a refusal is about, read from the error's type (never from its words): a value
/// refused (`Invalid`) or over its length (`TooLong`) that names its field. `None` for a
/// refusal of the whole (a state, a permission, a limit), which a form shows where it fits.
/// Every form that puts errors beside fields asks this, so they all place them alike.
pub(super) fn refused_input(e: &ServiceError) -> Option<(&str, &jitgate_service::Invalid)> {
    match e {
        ServiceError::Invalid(invalid) | ServiceError::TooLong(invalid) => {
            invalid.field.as_deref().map(|field| (field, invalid))
        }
        _ => None,
    }
}

/// The words a refusal's type has for a person, better than the service's message written for
/// the API (a ticket pattern is not shown as its regular expression). `None`: the message is
/// the best words there are.
pub(super) fn problem_in_words(invalid: &jitgate_service::Invalid) -> Option<String> {
    match &invalid.problem {
        Some(jitgate_core::Problem::NoTicket { example }) => Some(match example {
            Some(example) => format!("Mention a ticket such as {example} in the reason."),
            None => "Mention the ticket this is for in the reason: this workflow asks for one.".into(),
        }),
        _ => None,
    }
}

/// What every page shows around its content.
pub struct Chrome {
    pub me: Option<String>,
    pub auditor: bool,
    pub nav: &'static str,
    pub csrf: String,
    pub flash: Option<String>,
}

impl Chrome {
    fn for_caller(caller: &Caller, nav: &'static str, csrf: &CsrfToken) -> Chrome {
        Self::for_identity(caller.who(), nav, &csrf.0)
    }

    fn for_identity(who: &jitgate_core::Identity, nav: &'static str, csrf: &str) -> Chrome {
        Chrome {
            me: Some(who.principal.clone()),
            auditor: authz::reach(who, Operation::ReadAudit) != Reach::Nothing,
            nav,
            csrf: csrf.to_string(),
            flash: None,
        }
    }

    /// The confirmation the page shows on top, if any.
    pub(super) fn with_flash(mut self, flash: &FlashSlot) -> Chrome {
        self.flash = flash.0.map(|f| f.text().to_string());
        self
    }

    fn anonymous(csrf: &str) -> Chrome {
        Chrome {
            me: None,
            auditor: false,
            nav: "",
            csrf: csrf.to_string(),
            flash: None,
        }
    }
}

/// A confirmation shown once at the top of the page a form leads back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flash {
    /// A request was filed (the request page names whom it was sent to).
    Sent,
    Approved,
    Denied,
    Cancelled,
    /// A break-glass access's after-the-fact review was recorded.
    Reviewed,
    Revoked,
    Extended,
    /// The holder ended their grant ("End now").
    Ended,
    SignedOut,
}

impl Flash {
    const ALL: [Flash; 9] = [
        Flash::Sent,
        Flash::Approved,
        Flash::Denied,
        Flash::Cancelled,
        Flash::Reviewed,
        Flash::Revoked,
        Flash::Extended,
        Flash::Ended,
        Flash::SignedOut,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Flash::Sent => "sent",
            Flash::Approved => "approved",
            Flash::Denied => "denied",
            Flash::Cancelled => "cancelled",
            Flash::Reviewed => "reviewed",
            Flash::Revoked => "revoked",
            Flash::Extended => "extended",
            Flash::Ended => "ended",
            Flash::SignedOut => "signed-out",
        }
    }

    /// The banner as people read it.
    pub fn text(self) -> &'static str {
        match self {
            Flash::Sent => "Request sent.",
            Flash::Approved => "Approved.",
            Flash::Denied => "Denied.",
            Flash::Cancelled => "Request cancelled.",
            Flash::Reviewed => "Review recorded.",
            Flash::Revoked => "Grant revoked: the access has ended.",
            Flash::Extended => "Grant extended.",
            Flash::Ended => "Grant ended: the access is gone.",
            Flash::SignedOut => "Signed out.",
        }
    }

    /// The cookie's value read on the page at `path`: the confirmation, if this server set it
    /// (its MAC holds), for this page, and it has not expired. `None` otherwise: a value
    /// another app on the cookie's domain wrote, or one meant for another page.
    pub fn for_page(value: &str, path: &str) -> Option<Flash> {
        Flash::for_page_at(value, path, chrono::Utc::now().timestamp(), flash_key()?)
    }

    /// [`Flash::for_page`] at `now` (Unix seconds) with `key`.
    fn for_page_at(value: &str, path: &str, now: i64, key: &[u8]) -> Option<Flash> {
        let (code, rest) = value.split_once('~')?;
        let (rest, mac) = rest.rsplit_once('~')?;
        let (meant_for, expires) = rest.rsplit_once('~')?;
        let expires: i64 = expires.parse().ok()?;
        let mac = hex::decode(mac).ok()?;
        // Checked before anything is read from the value: only what this server wrote counts.
        hmac::Mac::verify_slice(flash_mac(key, code, meant_for, expires)?, &mac).ok()?;
        if now >= expires || percent_decoded(meant_for)? != path {
            return None;
        }
        Flash::ALL.into_iter().find(|f| f.code() == code)
    }

    /// The cookie's value that shows `self` on the page at `path` until `expires` (Unix
    /// seconds): `CODE~PATH~EXPIRES~MAC`, the path percent-encoded, the MAC (HMAC-SHA256 with
    /// the server's key, hex) over the three.
    fn cookie_value(self, path: &str, expires: i64, key: &[u8]) -> Option<String> {
        let meant_for = encode(path);
        let mac = hmac::Mac::finalize(flash_mac(key, self.code(), &meant_for, expires)?).into_bytes();
        Some(format!("{}~{meant_for}~{expires}~{}", self.code(), hex::encode(mac)))
    }
}

/// How long a confirmation waits for its page (the redirect is followed at once).
const FLASH_SECONDS: i64 = 60;

/// The MAC of a confirmation's parts, ready to finish or verify (constant time).
fn flash_mac(key: &[u8], code: &str, meant_for: &str, expires: i64) -> Option<hmac::Hmac<sha2::Sha256>> {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).ok()?;
    mac.update(format!("jitgate flash\n{code}\n{meant_for}\n{expires}").as_bytes());
    Some(mac)
}

/// The key confirmations are signed with: random, made once per process. A restart drops a
/// banner still on its way (it is shown only once anyway), and with several replicas a banner
/// is shown only if the page after the redirect is served by the replica that set it; nothing
/// shared between replicas is needed, and nothing outside the process can make one. `None`
/// when the system has no randomness: no banner is set nor believed then.
fn flash_key() -> Option<&'static [u8]> {
    static KEY: std::sync::OnceLock<Option<[u8; 32]>> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let mut key = [0u8; 32];
        getrandom::getrandom(&mut key).ok().map(|()| key)
    })
    .as_ref()
    .map(|k| k.as_slice())
}

fn percent_decoded(text: &str) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("p={text}"))
        .ok()?
        .into_iter()
        .next()
        .map(|(_, v)| v)
}

/// The confirmation the guard found for this page (none on most).
#[derive(Debug, Clone, Copy, Default)]
pub struct FlashSlot(pub Option<Flash>);

/// Redirect to `location` (a page of ours, with no query) and show `flash` there once.
pub fn see_other_with(location: &str, flash: Flash) -> Response {
    let mut response = see_other(location);
    let path = location.split('?').next().unwrap_or(location);
    let expires = chrono::Utc::now().timestamp() + FLASH_SECONDS;
    let Some(value) = flash_key().and_then(|key| flash.cookie_value(path, expires, key)) else {
        // No key, no banner: the redirect still goes where it should.
        return response;
    };
    let max_age = FLASH_SECONDS.unsigned_abs();
    if let Ok(v) = HeaderValue::from_str(&super::cookie(super::FLASH_COOKIE, &value, Some(max_age))) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

fn render(page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot render a page");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot render the page").into_response()
        }
    }
}

pub fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

/// Percent-encode a path for a query string.
pub fn encode(text: &str) -> String {
    serde_urlencoded::to_string([("", text)])
        .unwrap_or_default()
        .trim_start_matches('=')
        .to_string()
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: Chrome,
    title: String,
    message: String,
}

/// An error as a page, with its status.
pub fn error_page(csrf: &str, status: StatusCode, message: &str) -> Response {
    error_page_for(None, csrf, status, message)
}

/// An error as a page, with the navigation of whoever is signed in (so they can go on from
/// it), and its message ending as a sentence does.
pub fn error_page_for(
    signed_in: Option<&jitgate_core::Identity>,
    csrf: &str,
    status: StatusCode,
    message: &str,
) -> Response {
    let title = match status {
        StatusCode::FORBIDDEN => "Not allowed".to_string(),
        StatusCode::NOT_FOUND => "Not found".to_string(),
        // A conflict is more than "already decided": the request changed since it was read, a
        // grant was extended as often as allowed, ... The message says which.
        StatusCode::CONFLICT => "Nothing was changed".to_string(),
        StatusCode::UNAUTHORIZED => "Please sign in".to_string(),
        s if s.is_client_error() => "That did not work".to_string(),
        _ => "Something went wrong".to_string(),
    };
    let message = message.trim_end();
    let message = if message.ends_with(['.', '!', '?']) {
        message.to_string()
    } else {
        format!("{message}.")
    };
    let page = ErrorPage {
        chrome: match signed_in {
            Some(who) => Chrome::for_identity(who, "", csrf),
            None => Chrome::anonymous(csrf),
        },
        title,
        message,
    };
    (status, render(&page)).into_response()
}

/// Plain text on purpose: the guard makes it a page with the navigation of whoever asked.
pub async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "There is no such page.").into_response()
}

pub async fn home() -> Response {
    see_other("/ui/inbox")
}

// ---- signing in and out ----

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    chrome: Chrome,
    error: Option<String>,
    next: String,
    sso: Option<String>,
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// Only a page of ours: never another site (`//evil`, `https://...`).
pub(super) fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/ui/") && !n.starts_with("/ui//") && !n.contains('\\') => n.to_string(),
        _ => "/ui/inbox".to_string(),
    }
}

#[allow(clippy::too_many_arguments)] // axum extractors, one per thing the page reads
pub async fn login_page(
    State(app): State<Arc<App>>,
    State(session): State<super::SessionScope>,
    Extension(sso): Extension<super::SsoSlot>,
    Extension(csrf): Extension<CsrfToken>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Query(query): Query<NextQuery>,
    Extension(flash): Extension<FlashSlot>,
) -> Response {
    let next = safe_next(query.next.as_deref());
    // Here with a session cookie that no longer signs in: it expired or was revoked.
    let session_ended = super::cookies(&headers)
        .iter()
        .any(|(k, v)| k == super::SESSION_COOKIE && !v.is_empty());
    // Already signed in (a valid cookie, or a trusted proxy's headers): straight on.
    if crate::auth::authenticate_headers(&app, &headers, connect.map(|c| c.0 .0.ip()))
        .await
        .is_ok()
    {
        return see_other(&next);
    }
    let sso = sso.get().map(|_| format!("/ui/login/sso?next={}", encode(&next)));
    let mut chrome = Chrome::anonymous(&csrf.0).with_flash(&flash);
    if session_ended && chrome.flash.is_none() {
        chrome.flash = Some("Your session ended. Sign in again to go on.".into());
    }
    let page = LoginPage {
        chrome,
        error: None,
        next,
        sso,
    };
    let mut response = render(&page);
    // A cookie that no longer signs in (a revoked or expired token) goes.
    set_session(&mut response, &session, "", Some(0));
    response
}

/// Set (or, with `max_age` 0, end) the session cookie where `[ui] cookie_domain` says.
pub(super) fn set_session(response: &mut Response, session: &super::SessionScope, token: &str, max_age: Option<u64>) {
    for c in session.cookies(token, max_age) {
        if let Ok(v) = HeaderValue::from_str(&c) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

pub async fn login(
    State(app): State<Arc<App>>,
    State(session): State<super::SessionScope>,
    Extension(sso): Extension<super::SsoSlot>,
    Extension(csrf): Extension<CsrfToken>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    let token = form.token.trim();
    let mut headers = HeaderMap::new();
    let valid_shape = !token.is_empty() && token.len() <= 8192 && token.bytes().all(|b| b.is_ascii_graphic());
    if valid_shape {
        if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
            headers.insert(header::AUTHORIZATION, v);
        }
    }
    match crate::auth::authenticate_headers(&app, &headers, connect.map(|c| c.0 .0.ip())).await {
        Ok(who) if valid_shape => {
            tracing::info!(principal = %who.principal, "signed in to the web UI");
            let mut response = see_other(&next);
            set_session(&mut response, &session, token, None);
            response
        }
        _ => {
            let sso = sso.get().map(|_| format!("/ui/login/sso?next={}", encode(&next)));
            let page = LoginPage {
                chrome: Chrome::anonymous(&csrf.0),
                error: Some("That token does not sign in: it is unknown, expired or revoked.".into()),
                next,
                sso,
            };
            (StatusCode::UNAUTHORIZED, render(&page)).into_response()
        }
    }
}

pub async fn logout(State(session): State<super::SessionScope>) -> Response {
    let mut response = see_other_with("/ui/login", Flash::SignedOut);
    set_session(&mut response, &session, "", Some(0));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_confirmation_is_believed_only_as_this_server_wrote_it_for_its_page_and_time() {
        let key = [7u8; 32];
        let value = Flash::Approved.cookie_value("/ui/requests/req_1", 1_000, &key).unwrap();
        let shown = |value: &str, path: &str, now: i64, key: &[u8]| Flash::for_page_at(value, path, now, key);
        assert_eq!(shown(&value, "/ui/requests/req_1", 999, &key), Some(Flash::Approved));
        // Another page, too late, another server's key: nothing.
        assert_eq!(shown(&value, "/ui/requests/req_2", 999, &key), None);
        assert_eq!(shown(&value, "/ui/requests/req_1", 1_000, &key), None);
        assert_eq!(shown(&value, "/ui/requests/req_1", 999, &[8u8; 32]), None);
        // What a sibling app on the cookie's domain could write: the old unsigned form, or a
        // signed value with its code, page or expiry changed.
        for forged in [
            "approved~%2Fui%2Frequests%2Freq_1".to_string(),
            value.replacen("approved", "denied", 1),
            value.replacen("req_1", "req_2", 1),
            value.replacen("~1000~", "~9999~", 1),
            format!("{value}0"),
            value.replace('~', "~~"),
        ] {
            assert_eq!(shown(&forged, "/ui/requests/req_1", 999, &key), None, "{forged}");
            assert_eq!(shown(&forged, "/ui/requests/req_2", 999, &key), None, "{forged}");
        }
    }

    /// WCAG's contrast ratio of two `#rrggbb` colours.
    fn contrast(a: &str, b: &str) -> f64 {
        let luminance = |hex: &str| {
            let channel = |i: usize| {
                let c = f64::from(u8::from_str_radix(&hex[1 + 2 * i..3 + 2 * i], 16).unwrap()) / 255.0;
                if c <= 0.03928 {
                    c / 12.92
                } else {
                    ((c + 0.055) / 1.055).powf(2.4)
                }
            };
            0.2126 * channel(0) + 0.7152 * channel(1) + 0.0722 * channel(2)
        };
        let (x, y) = (luminance(a), luminance(b));
        (x.max(y) + 0.05) / (x.min(y) + 0.05)
    }

    /// The colour `--name:` holds in a block of the stylesheet, as `#rrggbb`.
    fn var(block: &str, name: &str) -> String {
        let at = block
            .find(&format!("{name}:"))
            .unwrap_or_else(|| panic!("no {name} in {block}"));
        let value = block[at + name.len() + 1..].split(';').next().unwrap().trim();
        match value.len() {
            4 => value
                .chars()
                .flat_map(|c| if c == '#' { vec![c] } else { vec![c, c] })
                .collect(),
            _ => value.to_string(),
        }
    }

    #[test]
    fn links_and_the_breadcrumb_read_at_4_5_to_1_in_light_and_dark() {
        assert!(APP_CSS.contains("a { color: var(--link); }"), "links use --link");
        let (light, dark) = APP_CSS.split_once("prefers-color-scheme: dark").unwrap();
        for (scheme, block) in [("light", light), ("dark", dark)] {
            let (link, bg, card) = (var(block, "--link"), var(block, "--bg"), var(block, "--card"));
            for back in [&bg, &card] {
                let ratio = contrast(&link, back);
                assert!(ratio >= 4.5, "{scheme}: {link} on {back} is {ratio:.2}:1");
            }
        }
    }

    #[test]
    fn gzip_is_sent_only_to_those_who_accept_it() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            h
        };
        assert!(accepts_gzip(&with("gzip, deflate, br")));
        assert!(accepts_gzip(&with("br;q=1.0, GZIP;q=0.5")));
        assert!(accepts_gzip(&with("*")));
        assert!(!accepts_gzip(&with("gzip;q=0")));
        assert!(!accepts_gzip(&with("br, deflate")));
        assert!(!accepts_gzip(&with("gzipx")));
        assert!(!accepts_gzip(&HeaderMap::new()));
        assert!(GZIPPED.iter().all(Option::is_some));
    }

    #[test]
    fn sign_in_goes_back_only_to_our_own_pages() {
        assert_eq!(safe_next(Some("/ui/requests/req_1")), "/ui/requests/req_1");
        for bad in [
            "//evil.example/ui/",
            "https://evil.example",
            "/ui//evil.example",
            "/v1/requests",
            "/ui/\\evil",
        ] {
            assert_eq!(safe_next(Some(bad)), "/ui/inbox", "{bad}");
        }
        assert_eq!(safe_next(None), "/ui/inbox");
    }

    #[test]
    fn sign_in_keeps_the_whole_new_request_link() {
        // What a forward-auth 401 sends the browser to sign in for, query and all.
        let next = crate::forward_auth::new_request_path("grafana", "read", Some("https://g.test/d/x?a=1&b=%2F"));
        assert_eq!(safe_next(Some(&next)), next);
        // Through the sign-in page's own link (as a 401 on a page builds it) and back.
        let login = format!("/ui/login?next={}", encode(&next));
        let (_, query) = login.split_once('?').unwrap();
        let parsed: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
        assert_eq!(safe_next(Some(&parsed[0].1)), next);
    }

    #[test]
    fn the_request_page_link_keeps_the_way_back() {
        assert_eq!(request_link("req_1", None), "/ui/requests/req_1");
        assert_eq!(
            request_link("req_1", Some("https://g.test/x?a=1&b=2")),
            "/ui/requests/req_1?return_to=https%3A%2F%2Fg.test%2Fx%3Fa%3D1%26b%3D2"
        );
    }

    #[test]
    fn time_left_reads_well() {
        let at = now();
        assert_eq!(left(at + chrono::TimeDelta::seconds(42), at), "42s");
        assert_eq!(left(at + chrono::TimeDelta::seconds(3725), at), "1h 2m");
        assert_eq!(left(at - chrono::TimeDelta::seconds(1), at), "ended");
        assert_eq!(ago(at - chrono::TimeDelta::minutes(3), at), "3 min ago");
    }
}
