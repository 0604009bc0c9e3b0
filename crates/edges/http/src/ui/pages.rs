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
        StatusCode::CONFLICT => "Already decided".to_string(),
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

pub async fn login_page(
    State(app): State<Arc<App>>,
    State(session): State<super::SessionScope>,
    Extension(sso): Extension<super::SsoSlot>,
    Extension(csrf): Extension<CsrfToken>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Query(query): Query<NextQuery>,
) -> Response {
    let next = safe_next(query.next.as_deref());
    // Already signed in (a valid cookie, or a trusted proxy's headers): straight on.
    if crate::auth::authenticate_headers(&app, &headers, connect.map(|c| c.0 .0.ip()))
        .await
        .is_ok()
    {
        return see_other(&next);
    }
    let sso = sso.get().map(|_| format!("/ui/login/sso?next={}", encode(&next)));
    let page = LoginPage {
        chrome: Chrome::anonymous(&csrf.0),
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
    let mut response = see_other("/ui/login");
    set_session(&mut response, &session, "", Some(0));
    response
}

// ---- requests ----

/// Text a person entered, as a reviewer must see it: control characters, bidirectional
/// overrides and invisible characters written as visible escapes (askama then escapes HTML),
/// so the page can never show something other than what is stored and enforced.
fn shown(text: &str) -> String {
    jitgate_core::text::escape_for_display(text).into_owned()
}

/// A payload on a request's page: shown escaped, a long one cut with its size and hash, and
/// the whole of it (escaped) one click away in a `<details>`.
pub struct PayloadBox {
    shown: PayloadShown,
    full: Option<String>,
}

impl PayloadBox {
    fn new(payload: &str) -> PayloadBox {
        let head = PayloadShown::new(payload);
        let full = (!head.complete).then(|| shown(payload));
        PayloadBox { shown: head, full }
    }
}

/// One request in a list.
pub struct RequestRow {
    id: String,
    resource: String,
    action: String,
    requester: String,
    reason: String,
    duration: String,
    status: String,
    needs: String,
    break_glass: bool,
    created_at: String,
    age: String,
    /// How many more items a request for several things holds beyond the one shown.
    more_items: usize,
    /// The viewer approved every item they may approve; it waits for others.
    you_approved: bool,
    /// A break-glass access whose after-the-fact review the viewer may give, still owed.
    review_owed: bool,
    /// A pending request's deadline: it expires then unless decided.
    expires: Option<Deadline>,
}

/// A moment ahead, as a list shows it: the time left ("42m 10s"), with the exact moment in
/// UTC machine-readable and on hover (the pages render times on the server, in UTC).
pub struct Deadline {
    at: String,
    at_text: String,
    left: String,
}

impl Deadline {
    fn new(until: Timestamp, at: Timestamp) -> Deadline {
        Deadline {
            at: until.to_rfc3339(),
            at_text: when(until),
            left: left(until, at),
        }
    }
}

/// The requester as people see it: `claude-alice (agent for alice)` for an agent.
fn requester_shown(v: &RequestView) -> String {
    jitgate_core::model::requester_text(&v.requester, v.on_behalf_of.as_deref())
}

impl RequestRow {
    fn new(v: &RequestView, at: Timestamp) -> RequestRow {
        RequestRow {
            id: v.id.clone(),
            resource: v.resource.clone(),
            action: v.action.clone(),
            requester: requester_shown(v),
            reason: shown(&v.reason),
            duration: v.duration.clone(),
            status: v.status.clone(),
            needs: needs_text(v),
            break_glass: v.break_glass,
            created_at: v.created_at.to_rfc3339(),
            age: ago(v.created_at, at),
            more_items: v.items.len().saturating_sub(1),
            you_approved: false,
            review_owed: false,
            expires: (v.status == "pending").then(|| Deadline::new(v.pending_expires_at, at)),
        }
    }
}

/// What a reviewer has left to do on a pending request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReviewerPart {
    /// None of its items is theirs to approve.
    None,
    /// They may approve an item they have not approved yet.
    Owed,
    /// They approved every item they may approve (a multi-step request waits for others):
    /// approving again would be refused, so no Approve button is offered.
    Given,
}

/// The caller's part in deciding `request`: never their own, nor their agent's, nor an
/// agent's; of a multi-item request, a reviewer of any item is waited for until they have
/// approved each item they may approve.
fn reviewer_part(
    policy: &jitgate_policy::Policy,
    who: &jitgate_core::Identity,
    request: &jitgate_core::Request,
    at: Timestamp,
) -> ReviewerPart {
    let own = request.requester == who.principal || request.on_behalf_of.as_deref() == Some(who.principal.as_str());
    if own || who.is_agent() {
        return ReviewerPart::None;
    }
    let mut reviews_any = false;
    for item in (0..request.item_count()).filter_map(|i| request.item_request(i)) {
        if policy.may_review(who, &item, at).is_ok() {
            reviews_any = true;
            if !item.approvals.iter().any(|a| a.reviewer == who.principal) {
                return ReviewerPart::Owed;
            }
        }
    }
    if reviews_any {
        ReviewerPart::Given
    } else {
        ReviewerPart::None
    }
}

fn needs_text(v: &RequestView) -> String {
    needs_list(&v.needs)
}

/// "1 approval", "2 approvals": how many a step still needs, as a person says it.
fn approvals(n: u32) -> String {
    jitgate_core::text::counted(n, "approval", "approvals")
}

fn needs_list(needs: &[crate::api::NeedView]) -> String {
    needs
        .iter()
        .map(|n| match n.group.strip_prefix(jitgate_core::Step::PRINCIPAL_PREFIX) {
            Some(person) => format!("{} from {person}", approvals(n.approvals)),
            None => format!("{} from {}", approvals(n.approvals), n.group),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// "3 min ago", "2 h ago".
fn ago(then: Timestamp, at: Timestamp) -> String {
    let secs = (at - then).num_seconds().max(0);
    match secs {
        0..=59 => "just now".into(),
        60..=3599 => format!("{} min ago", secs / 60),
        3600..=86_399 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86_400),
    }
}

/// "1h 5m", "42s": what is left until `until`.
fn left(until: Timestamp, at: Timestamp) -> String {
    let secs = (until - at).num_seconds();
    if secs <= 0 {
        return "ended".into();
    }
    let secs = u64::try_from(secs).unwrap_or(0);
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s}s"),
        _ => format!("{h}h {m}m"),
    }
}

fn when(t: Timestamp) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

#[derive(Template)]
#[template(path = "requests.html")]
struct RequestsPage {
    chrome: Chrome,
    heading: &'static str,
    blurb: &'static str,
    live: Option<String>,
    rows: Vec<RequestRow>,
    empty: &'static str,
    /// The next page (older requests), when there is one.
    older: Option<String>,
    /// The first page, when this is a later one.
    newest: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "request_rows.html")]
struct RequestRows {
    rows: Vec<RequestRow>,
    empty: &'static str,
}

const INBOX_EMPTY: &str = "Nothing waits for you.";
/// Requests on one page of the inbox; older ones are a link away.
pub const INBOX_PAGE: usize = 50;

/// Where a page of the inbox starts: after the request `before` (the API's cursor), or at the
/// newest.
#[derive(Deserialize, Default)]
pub struct InboxQuery {
    before: Option<String>,
}

/// A page of the pending requests the caller may approve (never their own), newest first,
/// from just before `before`, and the cursor of the next page when there may be more.
async fn waiting_for(
    app: &App,
    caller: &Caller,
    before: Option<String>,
) -> Result<(Vec<RequestRow>, Option<String>), ApiError> {
    // The store pages by what the caller may see; whom they may review is judged here, so a
    // page may take a few store pages to fill (bounded, and the cursor resumes the scan).
    const MAX_SCANS: usize = 10;
    let at = now();
    let who = caller.who();
    let policy = app.policy();
    let mut rows = Vec::with_capacity(INBOX_PAGE);
    let mut cursor = before;
    for _ in 0..MAX_SCANS {
        let filter = RequestFilter {
            status: Some(RequestStatus::Pending),
            requester: None,
            limit: INBOX_PAGE as u32,
            before: cursor.clone(),
        };
        let (requests, next) = app.visible_requests(caller, filter, at).await?;
        for r in &requests {
            // Never one's own, nor one's agent's: neither is theirs to decide. One already
            // approved stays, marked, until the others decide.
            let part = reviewer_part(&policy, who, r, at);
            if part != ReviewerPart::None {
                let mut row = RequestRow::new(&RequestView::new(r, at, &who.principal), at);
                row.you_approved = part == ReviewerPart::Given;
                rows.push(row);
                if rows.len() == INBOX_PAGE {
                    return Ok((rows, Some(r.id.clone())));
                }
            }
        }
        match next {
            Some(next) => cursor = Some(next),
            None => return Ok((rows, None)),
        }
    }
    Ok((rows, cursor))
}

/// Of the newest requests, how many are looked through for break-glass reviews owed: the
/// store has no filter for them, and such a review is owed soon after the access (its grant
/// lasts minutes), so the newest suffice.
const REVIEW_SCAN_PAGES: usize = 4;
const REVIEW_SCAN_PAGE: u32 = 100;

/// Whether `who` may give the after-the-fact review `request` still owes, as the state machine
/// judges it: not the one who broke the glass nor their person, not an agent, and an admin or
/// a member of one of its review groups.
fn owes_post_review(who: &jitgate_core::Identity, request: &jitgate_core::Request) -> bool {
    if !request.review_due()
        || who.is_agent()
        || request.requester == who.principal
        || request.on_behalf_of.as_deref() == Some(who.principal.as_str())
        || authz::reach(who, Operation::ReviewBreakGlass) == Reach::Nothing
    {
        return false;
    }
    who.is_admin()
        || std::iter::once(&request.requirement)
            .chain(request.items.iter().map(|i| &i.requirement))
            .flat_map(|r| r.review_groups.iter())
            .any(|g| who.in_group(g))
}

/// The break-glass accesses among the newest requests whose review the caller owes, newest
/// first: they head the inbox's first page, whatever their status.
async fn reviews_owed(app: &App, caller: &Caller) -> Result<Vec<RequestRow>, ApiError> {
    let at = now();
    let who = caller.who();
    if who.is_agent() || authz::reach(who, Operation::ReviewBreakGlass) == Reach::Nothing {
        return Ok(Vec::new());
    }
    let mut rows = Vec::new();
    let mut cursor = None;
    for _ in 0..REVIEW_SCAN_PAGES {
        let filter = RequestFilter {
            status: None,
            requester: None,
            limit: REVIEW_SCAN_PAGE,
            before: cursor,
        };
        let (requests, next) = app.visible_requests(caller, filter, at).await?;
        for r in requests.iter().filter(|r| owes_post_review(who, r)) {
            let mut row = RequestRow::new(&RequestView::new(r, at, &who.principal), at);
            row.review_owed = true;
            rows.push(row);
        }
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(rows)
}

/// The inbox's rows: on the first page the break-glass reviews owed, then the pending
/// requests the caller may decide; and the cursor of the next page.
async fn inbox_page(
    app: &App,
    caller: &Caller,
    before: Option<String>,
) -> Result<(Vec<RequestRow>, Option<String>), ApiError> {
    let mut rows = match before {
        None => reviews_owed(app, caller).await?,
        Some(_) => Vec::new(),
    };
    let (pending, next) = waiting_for(app, caller, before).await?;
    rows.extend(pending);
    Ok((rows, next))
}

/// `/ui/inbox` with this query.
fn inbox_link(path: &str, before: Option<&str>) -> String {
    match before {
        Some(before) => format!("{path}?before={}", encode(before)),
        None => path.to_string(),
    }
}

pub async fn inbox(
    State(app): State<Arc<App>>,
    Extension(csrf): Extension<CsrfToken>,
    caller: Allowed<op::ReadRequests>,
    Query(query): Query<InboxQuery>,
) -> Result<Response, ApiError> {
    let before = query.before.filter(|b| !b.is_empty());
    let (rows, next) = inbox_page(&app, &caller, before.clone()).await?;
    Ok(render(&RequestsPage {
        chrome: Chrome::for_caller(&caller, "inbox", &csrf),
        heading: "Waiting for you",
        blurb: "Break-glass accesses you owe a review, then requests you may approve, newest first. This list updates by itself.",
        live: Some(inbox_link("/ui/inbox/rows", before.as_deref())),
        rows,
        empty: INBOX_EMPTY,
        older: next.map(|next| inbox_link("/ui/inbox", Some(&next))),
        newest: before.is_some().then_some("/ui/inbox"),
    }))
}

pub async fn inbox_rows(
    State(app): State<Arc<App>>,
    caller: Allowed<op::ReadRequests>,
    Query(query): Query<InboxQuery>,
) -> Result<Response, ApiError> {
    let before = query.before.filter(|b| !b.is_empty());
    let (rows, _) = inbox_page(&app, &caller, before).await?;
    Ok(render(&RequestRows {
        rows,
        empty: INBOX_EMPTY,
    }))
}

pub async fn mine(
    State(app): State<Arc<App>>,
    Extension(csrf): Extension<CsrfToken>,
    caller: Allowed<op::ReadRequests>,
) -> Result<Response, ApiError> {
    let at = now();
    let filter = RequestFilter {
        status: None,
        requester: Some(caller.who().principal.clone()),
        limit: 100,
        before: None,
    };
    let (requests, _) = app.visible_requests(&caller, filter, at).await?;
    let rows = requests
        .iter()
        .map(|r| RequestRow::new(&RequestView::new(r, at, &caller.who().principal), at))
        .collect();
    Ok(render(&RequestsPage {
        chrome: Chrome::for_caller(&caller, "mine", &csrf),
        heading: "My requests",
        blurb: "What you asked for, newest first.",
        live: None,
        rows,
        empty: "You have not asked for anything yet.",
        older: None,
        newest: None,
    }))
}

pub struct ApprovalRow {
    reviewer: String,
    comment: Option<String>,
    at: String,
}

pub struct GrantRow {
    id: String,
    request_id: String,
    resource: String,
    action: String,
    principal: String,
    status: String,
    window: String,
    left: String,
    expires_at: String,
    expires_at_text: String,
    single_use: bool,
    break_glass: bool,
    can_revoke: bool,
}

impl GrantRow {
    fn new(g: &GrantView, at: Timestamp, can_revoke: bool) -> GrantRow {
        GrantRow {
            id: g.id.clone(),
            request_id: g.request_id.clone(),
            resource: g.resource.clone(),
            action: g.action.clone(),
            principal: g.principal.clone(),
            status: g.status.clone(),
            window: format!("{} to {}", when(g.starts_at), when(g.expires_at)),
            left: left(g.expires_at, at),
            expires_at: g.expires_at.to_rfc3339(),
            expires_at_text: when(g.expires_at),
            single_use: g.single_use,
            break_glass: g.break_glass,
            can_revoke: can_revoke && g.status == "active",
        }
    }
}

pub struct RequestDetail {
    id: String,
    resource: String,
    action: String,
    requester: String,
    reason: String,
    payload: Option<PayloadBox>,
    /// The payload's SHA-256, sent with an approval so it approves what this page showed.
    payload_sha256: Option<String>,
    /// Only an action-bound request's payload is enforced, and shown as its exact action.
    action_bound: bool,
    single_use: bool,
    duration: String,
    status: String,
    break_glass: bool,
    created_at: String,
    created_at_text: String,
    pending_left: String,
    approvals: Vec<ApprovalRow>,
    needs: String,
    closed: Option<String>,
    grant: Option<GrantRow>,
    can_review: bool,
    /// The viewer approved already; the request waits for other reviewers.
    you_approved: bool,
    can_cancel: bool,
    /// A break-glass request whose after-the-fact review this viewer may give.
    can_post_review: bool,
    live: bool,
    /// A multi-item request's items, each as the reviewer must see it before approving.
    items: Vec<ItemRow>,
    /// This page's own address, for the live part to refresh from (keeps `return_to`).
    link: String,
    /// The app to go back to, once access is granted (a forward-auth 403 led here).
    continue_to: Option<String>,
}

/// One item of a multi-item request on its page.
pub struct ItemRow {
    resource: String,
    action: String,
    payload: Option<PayloadBox>,
    action_bound: bool,
    approvals: String,
    needs: String,
    grant: String,
}

#[derive(Template)]
#[template(path = "request.html")]
struct RequestPage {
    chrome: Chrome,
    r: RequestDetail,
}

#[derive(Debug, Default, Deserialize)]
pub struct ReturnQuery {
    return_to: Option<String>,
}

/// `/ui/requests/{id}`, with the app to go back to once granted.
fn request_link(id: &str, return_to: Option<&str>) -> String {
    match return_to {
        Some(url) => format!("/ui/requests/{}?return_to={}", encode(id), encode(url)),
        None => format!("/ui/requests/{}", encode(id)),
    }
}

pub async fn request(
    State(app): State<Arc<App>>,
    Extension(csrf): Extension<CsrfToken>,
    caller: Allowed<op::ReadRequests>,
    Path(id): Path<String>,
    Query(back): Query<ReturnQuery>,
) -> Result<Response, ApiError> {
    let request = app.visible_request(&caller, &id).await?;
    let at = now();
    let who = caller.who();
    let v = RequestView::new(&request, at, &who.principal);
    let pending = request.status_at(at) == RequestStatus::Pending;
    // Of a multi-item request, a reviewer of any item may approve (their items) or deny,
    // until they have approved each item they may.
    let policy = app.policy();
    let own = request.requester == who.principal || request.on_behalf_of.as_deref() == Some(who.principal.as_str());
    let part = if pending {
        reviewer_part(&policy, who, &request, at)
    } else {
        ReviewerPart::None
    };
    let can_review = part == ReviewerPart::Owed;
    let can_revoke = authz::reach(who, Operation::RevokeGrant).covers(who, &request);
    // Access is live: the grant, or of a multi-item request every item's grant, is active.
    let granted = v.grant.as_ref().is_some_and(|g| g.status == "active")
        || (!v.items.is_empty()
            && v.items
                .iter()
                .all(|i| i.grant.as_ref().is_some_and(|g| g.status == "active")));
    let return_to = kept_return_to(&app, back.return_to.as_deref()).ok().flatten();
    let closed = v.closed_by.as_ref().map(|c| {
        let mut text = format!("{} by {} at {}", v.status, c.by, when(c.at));
        if let Some(comment) = &c.comment {
            text.push_str(&format!(": “{}”", shown(comment)));
        }
        text
    });
    let r = RequestDetail {
        id: v.id.clone(),
        resource: v.resource.clone(),
        action: v.action.clone(),
        requester: requester_shown(&v),
        reason: shown(&v.reason),
        payload: v.payload.as_deref().map(PayloadBox::new),
        payload_sha256: v.payload_sha256.clone(),
        action_bound: v.action_bound,
        single_use: v.single_use,
        duration: v.duration.clone(),
        status: v.status.clone(),
        break_glass: v.break_glass,
        created_at: v.created_at.to_rfc3339(),
        created_at_text: when(v.created_at),
        pending_left: left(v.pending_expires_at, at),
        approvals: v
            .approvals
            .iter()
            .map(|a| ApprovalRow {
                reviewer: a.reviewer.clone(),
                comment: a.comment.as_deref().map(shown),
                at: when(a.at),
            })
            .collect(),
        needs: needs_text(&v),
        closed,
        grant: v.grant.as_ref().map(|g| GrantRow::new(g, at, can_revoke)),
        can_review,
        you_approved: part == ReviewerPart::Given,
        can_cancel: pending && own,
        can_post_review: v.review_due
            && !own
            && !who.is_agent()
            && authz::reach(who, Operation::ReviewBreakGlass) != Reach::Nothing,
        live: pending || v.grant.as_ref().is_some_and(|g| g.status == "active"),
        link: request_link(&v.id, return_to.as_deref()),
        continue_to: return_to.filter(|_| granted),
        items: v
            .items
            .iter()
            .map(|i| ItemRow {
                resource: i.resource.clone(),
                action: i.action.clone(),
                payload: i.payload.as_deref().map(PayloadBox::new),
                action_bound: i.action_bound,
                approvals: i
                    .approvals
                    .iter()
                    .map(|a| a.reviewer.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
                needs: needs_list(&i.needs),
                grant: i
                    .grant
                    .as_ref()
                    .map(|g| {
                        format!(
                            "{} {} ({} to {})",
                            g.status,
                            g.id,
                            when(g.starts_at),
                            when(g.expires_at)
                        )
                    })
                    .unwrap_or_default(),
            })
            .collect(),
    };
    Ok(render(&RequestPage {
        chrome: Chrome::for_caller(&caller, "inbox", &csrf),
        r,
    }))
}

#[derive(Deserialize)]
pub struct DecisionForm {
    comment: Option<String>,
    /// The payload hash the page showed: the approval is refused if the request's differs.
    payload_sha256: Option<String>,
}

/// Approve, deny or cancel a request, or review a break-glass one; back to its page.
pub async fn decide(
    State(app): State<Arc<App>>,
    caller: Allowed<op::ReadRequests>,
    Path((id, decision)): Path<(String, String)>,
    Form(form): Form<DecisionForm>,
) -> Result<Response, ApiError> {
    let comment = form.comment.map(|c| c.trim().to_string()).filter(|c| !c.is_empty());
    let who = caller.who().clone();
    // The same operations, and the same table, as the API's endpoints.
    match decision.as_str() {
        "approve" => {
            let caller = crate::auth::caller_for::<op::ApproveRequest>(who)?;
            let shown = form.payload_sha256.as_deref().filter(|h| !h.is_empty());
            app.approve_confirmed(&caller, &id, comment, shown).await?;
        }
        "deny" => {
            let caller = crate::auth::caller_for::<op::DenyRequest>(who)?;
            app.deny(&caller, &id, comment).await?;
        }
        "cancel" => {
            let caller = crate::auth::caller_for::<op::CancelRequest>(who)?;
            app.cancel(&caller, &id).await?;
        }
        "review" => {
            let caller = crate::auth::caller_for::<op::ReviewBreakGlass>(who)?;
            app.review_break_glass(&caller, &id, comment).await?;
        }
        other => return Err(ApiError::NotFound(format!("no decision '{other}'"))),
    }
    Ok(see_other(&format!("/ui/requests/{}", encode(&id))))
}

// ---- filing ----

pub struct Target {
    value: String,
    label: String,
    /// Chosen on the form that is shown again (a refusal keeps what was typed).
    selected: bool,
}

#[derive(Template)]
#[template(path = "new.html")]
struct NewPage {
    chrome: Chrome,
    error: Option<String>,
    finder: Finder,
    duration: String,
    reason: String,
    payload: String,
    /// Where to go once granted (a forward-auth 403's app), carried through filing.
    return_to: Option<String>,
    /// Why a `return_to` given was not kept.
    return_to_problem: Option<String>,
}

/// How many choices the new-request page offers at once: a catalog may hold thousands, so
/// the page searches it rather than listing it.
const CHOICES_PER_PAGE: u32 = 100;

/// The catalog search on the new-request page, as typed, and what it found.
#[derive(Debug, Default, Deserialize)]
pub struct CatalogSearch {
    q: Option<String>,
    kind: Option<String>,
    label: Option<String>,
}

struct Finder {
    q: String,
    kind: String,
    label: String,
    targets: Vec<Target>,
    /// More match than the page shows: the requester should narrow the search.
    more: bool,
    /// The search itself was refused (a malformed label); said next to it.
    problem: Option<String>,
}

/// What the caller may ask for that matches `search`, as the service lists it for every edge
/// (`GET /v1/resources`): each action with who approves it and its longest duration.
fn finder(app: &App, caller: &Caller, search: CatalogSearch) -> Finder {
    let query = crate::api::ResourceListQuery {
        q: search.q.clone().filter(|q| !q.trim().is_empty()),
        kind: search.kind.clone().filter(|k| !k.trim().is_empty()),
        label: search.label.clone().filter(|l| !l.trim().is_empty()),
        limit: Some(CHOICES_PER_PAGE),
        before: None,
    };
    let found = query
        .into_query()
        .map_err(|e| e.to_string())
        .and_then(|query| app.requestable(caller, &query).map_err(|e| e.to_string()));
    let (resources, next, problem) = match found {
        Ok((resources, next)) => (resources, next, None),
        Err(problem) => (Vec::new(), None, Some(problem)),
    };
    Finder {
        q: search.q.unwrap_or_default(),
        kind: search.kind.unwrap_or_default(),
        label: search.label.unwrap_or_default(),
        targets: targets_of(&resources),
        more: next.is_some(),
        problem,
    }
}

/// One choice on the form for each action of each resource.
fn targets_of(resources: &[jitgate_service::resources::RequestableResource]) -> Vec<Target> {
    resources
        .iter()
        .flat_map(|r| r.actions.iter().map(move |a| (r, a)))
        .map(|(r, a)| {
            let approval = if a.automatic {
                "automatic".to_string()
            } else {
                a.needs
                    .iter()
                    .map(|s| format!("{} from {}", approvals(s.approvals), s.group))
                    .collect::<Vec<_>>()
                    .join(" + ")
            };
            let mut label = format!("{} {} · {approval} · up to {}", a.action, r.name, a.max_duration);
            if a.action_bound {
                label.push_str(" · exact action");
            }
            if !r.labels.is_empty() {
                let labels: Vec<String> = r.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                label.push_str(&format!(" · {}", labels.join(", ")));
            }
            Target {
                value: format!("{}|{}", r.name, a.action),
                label,
                selected: false,
            }
        })
        .collect()
}

/// `/ui/new?resource=R&action=A&return_to=URL`: the target a forward-auth 403 links to, and
/// the app to go back to once it is granted.
#[derive(Debug, Default, Deserialize)]
pub struct Preselect {
    resource: Option<String>,
    action: Option<String>,
    return_to: Option<String>,
}

/// Choose `resource|action` on the form, finding it in the catalog when the search did not
/// (a search for a name lists, in name order, every resource whose name holds it). `Err` says
/// why it cannot be asked for.
fn preselect(app: &App, caller: &Caller, finder: &mut Finder, resource: &str, action: &str) -> Result<(), String> {
    let value = format!("{resource}|{action}");
    if let Some(target) = finder.targets.iter_mut().find(|t| t.value == value) {
        target.selected = true;
        return Ok(());
    }
    let mut query = jitgate_service::resources::ResourceQuery {
        search: Some(resource.to_string()),
        limit: jitgate_service::resources::MAX_PAGE,
        ..Default::default()
    };
    // Bounded: a name held by more than a few thousand others is not worth the walk.
    for _ in 0..8 {
        let (page, next) = app.requestable(caller, &query).map_err(|e| e.to_string())?;
        if let Some(found) = page.iter().find(|r| r.name == resource) {
            let mut target = targets_of(std::slice::from_ref(found))
                .into_iter()
                .find(|t| t.value == value)
                .ok_or_else(|| cannot_ask(resource, action))?;
            target.selected = true;
            finder.targets.insert(0, target);
            return Ok(());
        }
        match next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    Err(cannot_ask(resource, action))
}

fn cannot_ask(resource: &str, action: &str) -> String {
    format!(
        "You may not ask for {action} on {resource}: no workflow lets you request it. Ask the people who run jitgate, or choose something else."
    )
}

/// `return_to` as kept: `Ok(None)` when there is none, `Err` with why when it may not lead
/// back. Only an absolute http(s) URL of at most 2,048 bytes of visible ASCII whose host a
/// catalog resource of kind `http` serves, as the catalog and as a browser read it: never a
/// way to send people elsewhere.
pub(crate) fn kept_return_to(app: &App, return_to: Option<&str>) -> Result<Option<String>, String> {
    let Some(url) = return_to.filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    if let Some(problem) = crate::forward_auth::return_to_problem(url) {
        return Err(format!("The link back to the application was left out: it {problem}."));
    }
    let origin = crate::forward_auth::browser_origin(url).unwrap_or_default();
    if !(serves_url(app, url) && serves_url(app, &origin)) {
        return Err(
            "The link back to the application was left out: no catalog resource of kind http serves its host.".into(),
        );
    }
    Ok(Some(url.to_string()))
}

/// Whether some catalog resource of kind `http` serves the host of `url`.
fn serves_url(app: &App, url: &str) -> bool {
    app.policy().http_routes().serves_url(url)
}

pub async fn new_request(
    State(app): State<Arc<App>>,
    Extension(csrf): Extension<CsrfToken>,
    caller: Allowed<op::FileRequest>,
    Query(mut search): Query<CatalogSearch>,
    Query(pick): Query<Preselect>,
) -> Result<Response, ApiError> {
    let some = |v: Option<String>| v.map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let target = some(pick.resource).zip(some(pick.action));
    if let Some((resource, _)) = &target {
        if search.q.as_deref().is_none_or(|q| q.trim().is_empty()) {
            search.q = Some(resource.clone());
        }
    }
    let mut finder = finder(&app, &caller, search);
    let error = target.and_then(|(resource, action)| preselect(&app, &caller, &mut finder, &resource, &action).err());
    let (return_to, return_to_problem) = match kept_return_to(&app, pick.return_to.as_deref()) {
        Ok(kept) => (kept, None),
        Err(problem) => (None, Some(problem)),
    };
    Ok(render(&NewPage {
        chrome: Chrome::for_caller(&caller, "new", &csrf),
        error,
        finder,
        duration: String::new(),
        reason: String::new(),
        payload: String::new(),
        return_to,
        return_to_problem,
    }))
}

/// The new-request form: one or several targets (`RESOURCE|ACTION`), for one window.
#[derive(Default)]
pub struct FileForm {
    targets: Vec<String>,
    duration: Option<String>,
    reason: Option<String>,
    payload: Option<String>,
    break_glass: Option<String>,
    return_to: Option<String>,
}

impl FileForm {
    /// Read the posted fields; `target` repeats when several things are chosen.
    fn from_fields(fields: Vec<(String, String)>) -> FileForm {
        let mut form = FileForm::default();
        for (name, value) in fields {
            match name.as_str() {
                "target" => form.targets.push(value),
                "duration" => form.duration = Some(value),
                "reason" => form.reason = Some(value),
                "payload" => form.payload = Some(value),
                "break_glass" => form.break_glass = Some(value),
                "return_to" => form.return_to = Some(value),
                _ => {}
            }
        }
        form
    }
}

pub async fn file(
    State(app): State<Arc<App>>,
    Extension(csrf): Extension<CsrfToken>,
    caller: Allowed<op::FileRequest>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let form = FileForm::from_fields(fields);
    let chosen: Vec<(&str, &str)> = form
        .targets
        .iter()
        .map(|t| {
            t.rsplit_once('|')
                .ok_or_else(|| ApiError::Invalid("target: choose what to ask for".into()))
        })
        .collect::<Result<_, _>>()?;
    let duration = form.duration.as_deref().map(str::trim).filter(|d| !d.is_empty());
    let payload = form.payload.as_deref().filter(|p| !p.trim().is_empty());
    // One choice files as it always has; several become the items of one request, each
    // judged by its own workflow (a payload goes with each, for action-bound workflows).
    let (resource, action, items) = match chosen.as_slice() {
        [] => return Err(ApiError::Invalid("target: choose what to ask for".into())),
        [(resource, action)] => (Some(resource.to_string()), Some(action.to_string()), None),
        several => (
            None,
            None,
            Some(
                several
                    .iter()
                    .map(|(resource, action)| ItemBody {
                        resource: resource.to_string(),
                        action: action.to_string(),
                        payload: payload.map(str::to_string),
                    })
                    .collect(),
            ),
        ),
    };
    let body = CreateRequestBody {
        payload: payload.filter(|_| items.is_none()).map(str::to_string),
        resource,
        action,
        items,
        duration: duration.map(DurationInput::text),
        reason: form.reason.clone().unwrap_or_default(),
        break_glass: form.break_glass.is_some(),
    };
    // Checked again: the form is the browser's to change.
    let return_to = kept_return_to(&app, form.return_to.as_deref()).ok().flatten();
    match app.file(caller.who(), &body.try_into()?).await {
        Ok(request) => Ok(see_other(&request_link(&request.id, return_to.as_deref()))),
        // A refusal the requester can fix is shown on the form, with what they typed.
        Err(
            e @ (ServiceError::Invalid(_)
            | ServiceError::Forbidden(_)
            | ServiceError::RetryLater { .. }
            | ServiceError::OverLimit(Limit::FieldLength | Limit::Pending, _)),
        ) => {
            let (status, limit) = match &e {
                ServiceError::RetryLater { limit, .. } => (StatusCode::TOO_MANY_REQUESTS, Some(*limit)),
                ServiceError::OverLimit(limit, _) if *limit == Limit::Pending => {
                    (StatusCode::TOO_MANY_REQUESTS, Some(*limit))
                }
                ServiceError::OverLimit(limit, _) => (StatusCode::UNPROCESSABLE_ENTITY, Some(*limit)),
                _ => (StatusCode::UNPROCESSABLE_ENTITY, None),
            };
            let page = NewPage {
                chrome: Chrome::for_caller(&caller, "new", &csrf),
                error: Some(e.to_string()),
                // What was chosen stays on offer and chosen, whatever else matches.
                finder: {
                    let mut found = finder(
                        &app,
                        &caller,
                        CatalogSearch {
                            q: match chosen.as_slice() {
                                [(resource, _)] => Some(resource.to_string()),
                                _ => None,
                            },
                            ..CatalogSearch::default()
                        },
                    );
                    for target in &mut found.targets {
                        target.selected = form.targets.contains(&target.value);
                    }
                    found
                },
                duration: duration.unwrap_or_default().to_string(),
                reason: form.reason.unwrap_or_default(),
                payload: form.payload.unwrap_or_default(),
                return_to,
                return_to_problem: None,
            };
            let mut response = (status, render(&page)).into_response();
            if let Some(limit) = limit {
                // Counted like any other call over a limit.
                response.extensions_mut().insert(crate::error::LimitHit(limit));
            }
            if let ServiceError::RetryLater { after, .. } = &e {
                response.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    crate::error::retry_after_seconds(*after).into(),
                );
            }
            Ok(response)
        }
        Err(e) => Err(e.into()),
    }
}

// ---- grants ----

#[derive(Template)]
#[template(path = "grants.html")]
struct GrantsPage {
    chrome: Chrome,
    blurb: &'static str,
    grants: Vec<GrantRow>,
    csrf: String,
}

#[derive(Template)]
#[template(path = "grant_rows.html")]
struct GrantRows {
    grants: Vec<GrantRow>,
    csrf: String,
}

async fn active_grants(app: &App, caller: &Caller) -> Result<Vec<GrantRow>, ApiError> {
    let at = now();
    let who = caller.who();
    let principal = (caller.reach() != Reach::All).then(|| who.principal.clone());
    let grants = app
        .store
        .list_grants(
            &GrantFilter {
                principal,
                status: Some(GrantStatus::Active),
                limit: 500,
                before: None,
            },
            at,
        )
        .await?;
    let revoke_reach = authz::reach(who, Operation::RevokeGrant);
    let mut rows = Vec::with_capacity(grants.len());
    for g in &grants {
        // Revoking is judged on the request, as the API does (its requester, reviewers, ...).
        let can_revoke = match revoke_reach {
            Reach::All => true,
            Reach::Nothing => false,
            reach => {
                g.principal == who.principal || {
                    let request = app.store.get_request(&g.request_id).await?;
                    request.is_some_and(|r| reach.covers(who, &r))
                }
            }
        };
        rows.push(GrantRow::new(&GrantView::new(g, at, &who.principal), at, can_revoke));
    }
    Ok(rows)
}

pub async fn grants(
    State(app): State<Arc<App>>,
    Extension(csrf): Extension<CsrfToken>,
    caller: Allowed<op::ReadGrants>,
) -> Result<Response, ApiError> {
    let grants = active_grants(&app, &caller).await?;
    let blurb = if caller.reach() == Reach::All {
        "Everyone's access that is live now. The time left updates by itself."
    } else {
        "Your access that is live now. The time left updates by itself."
    };
    Ok(render(&GrantsPage {
        chrome: Chrome::for_caller(&caller, "grants", &csrf),
        blurb,
        grants,
        csrf: csrf.0.clone(),
    }))
}

pub async fn grant_rows(
    State(app): State<Arc<App>>,
    Extension(csrf): Extension<CsrfToken>,
    caller: Allowed<op::ReadGrants>,
) -> Result<Response, ApiError> {
    let grants = active_grants(&app, &caller).await?;
    Ok(render(&GrantRows {
        grants,
        csrf: csrf.0.clone(),
    }))
}

#[derive(Deserialize)]
pub struct RevokeForm {
    back: Option<String>,
    comment: Option<String>,
}

pub async fn revoke(
    State(app): State<Arc<App>>,
    caller: Allowed<op::RevokeGrant>,
    Path(id): Path<String>,
    Form(form): Form<RevokeForm>,
) -> Result<Response, ApiError> {
    let comment = form
        .comment
        .filter(|c| !c.trim().is_empty())
        .or(Some("revoked in the web UI".into()));
    app.revoke(&caller, &id, comment).await?;
    Ok(see_other(&safe_next(form.back.as_deref())))
}

// ---- audit ----

#[derive(Deserialize, Default)]
pub struct AuditForm {
    #[serde(default)]
    principal: String,
    #[serde(default)]
    resource: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    request_id: String,
    before: Option<i64>,
}

pub struct EventRow {
    seq: i64,
    at: String,
    at_text: String,
    kind: &'static str,
    actor: String,
    subject: String,
    request_id: Option<String>,
    resource: String,
    action: String,
    comment: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Chrome,
    f: AuditForm,
    kinds: Vec<String>,
    events: Vec<EventRow>,
    next: Option<String>,
    verified: String,
}

const AUDIT_PAGE: u32 = 100;

/// The newest events first, a page at a time, with the API's filters.
pub async fn audit(
    State(app): State<Arc<App>>,
    Extension(csrf): Extension<CsrfToken>,
    caller: Allowed<op::ReadAudit>,
    Query(f): Query<AuditForm>,
) -> Result<Response, ApiError> {
    let some = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
    if let Some(kind) = some(&f.kind) {
        if !jitgate_core::audit::EventKind::ALL.iter().any(|k| k.as_str() == kind) {
            return Err(ApiError::Invalid(format!("kind: '{kind}' is not an event kind")));
        }
    }
    // The store reads oldest first after a sequence number: find the window that ends just
    // before `before` (or at the head) and show it newest first.
    let head = app.store.audit_head().await?;
    let end = f.before.map_or(head, |b| (b - 1).min(head));
    let filter = |after: i64| AuditFilter {
        request_id: some(&f.request_id),
        principal: some(&f.principal),
        resource: some(&f.resource),
        action: some(&f.action),
        kind: some(&f.kind),
        since: None,
        after_seq: Some(after),
        limit: 5000,
    };
    // Walk back in steps until a page's worth matches (bounded: filters may match rarely).
    let mut matched = Vec::new();
    let mut window_end = end;
    for _ in 0..20 {
        if window_end <= 0 || matched.len() >= AUDIT_PAGE as usize {
            break;
        }
        let start = (window_end - 5000).max(0);
        let mut events: Vec<_> = app
            .store
            .audit_events(&filter(start))
            .await?
            .into_iter()
            .filter(|e| e.seq <= window_end)
            .collect();
        events.reverse();
        matched.extend(events);
        window_end = start;
    }
    matched.truncate(AUDIT_PAGE as usize);
    let next = (matched.len() == AUDIT_PAGE as usize)
        .then(|| matched.last().map(|e| e.seq))
        .flatten()
        .map(|before| {
            let query = serde_urlencoded::to_string([
                ("principal", f.principal.as_str()),
                ("resource", f.resource.as_str()),
                ("action", f.action.as_str()),
                ("kind", f.kind.as_str()),
                ("request_id", f.request_id.as_str()),
                ("before", &before.to_string()),
            ])
            .unwrap_or_default();
            format!("/ui/audit?{query}")
        });
    let events = matched
        .into_iter()
        .map(|e| EventRow {
            seq: e.seq,
            at: e.event.at.to_rfc3339(),
            at_text: when(e.event.at),
            kind: e.event.kind.as_str(),
            actor: shown(&e.event.actor),
            subject: shown(&e.event.subject),
            request_id: e.event.request_id,
            resource: e.event.resource,
            action: e.event.action,
            comment: e.event.comment.as_deref().map(shown).unwrap_or_default(),
        })
        .collect();
    // Only the count: the template says once, around a real <code>, how to verify the log.
    let verified = format!("{} in the log.", jitgate_core::text::counted(head, "event", "events"));
    Ok(render(&AuditPage {
        chrome: Chrome::for_caller(&caller, "audit", &csrf),
        f,
        kinds: jitgate_core::audit::EventKind::ALL
            .iter()
            .map(|k| k.as_str().to_string())
            .collect(),
        events,
        next,
        verified,
    }))
}

// ---- explain ----

#[derive(Deserialize, Default)]
pub struct ExplainForm {
    #[serde(default)]
    resource: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    principal: String,
}

pub struct Answer {
    summary: String,
    facts: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "explain.html")]
struct ExplainPage {
    chrome: Chrome,
    resource: String,
    action: String,
    principal: String,
    answer: Option<Answer>,
}

pub async fn explain(
    State(app): State<Arc<App>>,
    Extension(csrf): Extension<CsrfToken>,
    caller: Allowed<op::ExplainPolicy>,
    Query(form): Query<ExplainForm>,
) -> Result<Response, ApiError> {
    let answer = if form.resource.trim().is_empty() || form.action.trim().is_empty() {
        None
    } else {
        let policy = app.policy();
        let principal = Some(form.principal.trim()).filter(|p| !p.is_empty());
        let subject = app.explain_subject(&caller, principal)?;
        let (resource, action) = (form.resource.trim(), form.action.trim());
        let explanation = policy.explain(&subject, resource, action, None, now());
        let json = jitgate_policy::explanation_json(&subject.principal, resource, action, &explanation);
        let facts = json
            .as_object()
            .map(|o| {
                o.iter()
                    // `workflow` is `governed by` as data; the page shows the sentence.
                    .filter(|(k, v)| !matches!(k.as_str(), "summary" | "workflow") && !v.is_null())
                    .map(|(k, v)| (k.replace('_', " "), fact_text(v)))
                    .collect()
            })
            .unwrap_or_default();
        Some(Answer {
            summary: json["summary"].as_str().unwrap_or_default().to_string(),
            facts,
        })
    };
    Ok(render(&ExplainPage {
        chrome: Chrome::for_caller(&caller, "explain", &csrf),
        resource: form.resource,
        action: form.action,
        principal: form.principal,
        answer,
    }))
}

/// One value of the policy's explanation, as a person reads it.
fn fact_text(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "yes".into(),
        Value::Bool(false) => "no".into(),
        Value::Array(items) if items.is_empty() => "nothing".into(),
        Value::Array(items) => items
            .iter()
            .map(|item| match (item["approvals"].as_u64(), item["group"].as_str()) {
                (Some(n), Some(group)) => format!(
                    "{} from {group}",
                    jitgate_core::text::counted(n, "approval", "approvals")
                ),
                _ => fact_text(item),
            })
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

// ---- assets ----

const APP_CSS: &str = include_str!("../../static/app.css");
const HTMX_JS: &str = include_str!("../../static/htmx.min.js");
const ICON_SVG: &str = include_str!("../../static/icon.svg");

/// The static files: name, content type, bytes.
const ASSETS: [(&str, &str, &str); 3] = [
    ("app.css", "text/css; charset=utf-8", APP_CSS),
    ("htmx.min.js", "text/javascript; charset=utf-8", HTMX_JS),
    ("icon.svg", "image/svg+xml", ICON_SVG),
];

/// Each static file gzip-compressed, made once on first use (htmx is 52 KB, 15 KB
/// compressed): cheaper than compressing each answer, and no compression layer to build.
/// `None` when compressing failed: that file is then sent as it is.
static GZIPPED: std::sync::LazyLock<[Option<Vec<u8>>; 3]> =
    std::sync::LazyLock::new(|| ASSETS.map(|(_, _, body)| gzip(body.as_bytes()).ok()));

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes)?;
    encoder.finish()
}

/// Whether `Accept-Encoding` takes gzip: listed (or `*`) without `q=0`.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut params = coding.split(';').map(str::trim);
            let name = params.next().unwrap_or("");
            let refused = params.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

pub async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    let Some(index) = ASSETS.iter().position(|(name, _, _)| *name == file) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let (_, kind, body) = ASSETS[index];
    // The answer depends on Accept-Encoding: caches must keep the two apart.
    let fixed = [
        (header::CONTENT_TYPE, kind),
        (header::CACHE_CONTROL, "public, max-age=3600"),
        (header::VARY, "accept-encoding"),
    ];
    match &GZIPPED[index] {
        Some(gzipped) if accepts_gzip(&headers) => {
            (fixed, [(header::CONTENT_ENCODING, "gzip")], gzipped.clone()).into_response()
        }
        _ => (fixed, body).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
