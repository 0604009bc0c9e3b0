//! HTTP routes. Each handler authenticates by its extractor, parses, calls the service, renders.

use crate::api::*;
use crate::app::{now, App};
use crate::auth::{op, Allowed};
use crate::error::{ErrorBody, Limit, LimitHit};
use crate::forward_auth::ForwardAuthDenial;
use crate::ApiError;
use axum::extract::{FromRequest, FromRequestParts, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use jitgate_core::authz::Reach;
use jitgate_core::{GrantStatus, RequestStatus};
use jitgate_store::{AuditFilter, GrantFilter, RequestFilter};
use std::sync::Arc;

pub use crate::input::MAX_BODY_BYTES;
/// The most checks in one batch.
pub const MAX_BATCH: usize = 1000;
/// Longest principal, resource or action a check may name.
pub const MAX_CHECK_FIELD: usize = 256;

/// JSON in and out, with rejections in the API's error shape.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// A query string, with rejections in the API's error shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Q<T>(pub T);

/// Path parameters, with rejections (an id that is not UTF-8) in the API's error shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// A JSON body that may be left out: an empty body is `T::default()`. A body that is sent
/// must be JSON (415 otherwise), like [`Json`]'s.
pub struct OptionalJson<T>(pub T);

impl<T, S> FromRequest<S> for OptionalJson<T>
where
    T: serde::de::DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let declared_json = is_json_content_type(request.headers());
        let body = axum::body::Bytes::from_request(request, state).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        if !declared_json {
            return Err(ApiError::UnsupportedMediaType(
                "send the body as JSON with Content-Type: application/json".into(),
            ));
        }
        serde_json::from_slice(&body)
            .map(OptionalJson)
            .map_err(|e| match e.classify() {
                serde_json::error::Category::Data => ApiError::Invalid(format!("request body: {e}")),
                _ => ApiError::BadRequest(format!("request body is not valid JSON: {e}")),
            })
    }
}

/// `application/json` or `application/*+json`, as axum's `Json` accepts.
fn is_json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || essence.starts_with("application/") && essence.ends_with("+json")
}

/// A raw body, with a refused one (over [`MAX_BODY_BYTES`]) in the API's error shape.
pub struct RawBody(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        Ok(RawBody(axum::body::Bytes::from_request(request, state).await?))
    }
}

pub fn router(state: crate::state::Edge, sso: Option<crate::ui::Sso>) -> Router {
    Router::new()
        .route("/v1/requests", post(create_request).get(list_requests))
        .route("/v1/requests/{id}", get(get_request))
        .route("/v1/requests/{id}/approve", post(approve_request))
        .route("/v1/requests/{id}/deny", post(deny_request))
        .route("/v1/requests/{id}/cancel", post(cancel_request))
        .route("/v1/requests/{id}/review", post(review_request))
        .route("/v1/grants", get(list_grants))
        .route("/v1/grants/{id}/revoke", post(revoke_grant))
        .route("/v1/grants/{id}/extend", post(extend_grant))
        .route("/v1/grants/{id}/done", post(done_grant))
        .route("/v1/grants/use", post(use_grant))
        .route("/v1/check", post(check))
        .route("/v1/check/batch", post(check_batch))
        .route("/v1/forward-auth", any(forward_auth))
        .route("/v1/forward-auth/", any(forward_auth_below))
        .route("/v1/forward-auth/{*path}", any(forward_auth_below))
        .route("/v1/policy/explain", get(explain_policy))
        .route("/v1/resources", get(list_resources))
        .route("/v1/audit", get(list_audit))
        .route("/v1/audit/verify", get(verify_audit))
        .route("/v1/audit/checkpoints", get(list_checkpoints).post(sign_checkpoint))
        .route("/v1/audit/keys", get(audit_keys))
        .route("/v1/tokens", post(create_token).get(list_tokens))
        .route("/v1/tokens/{id}/revoke", post(revoke_token))
        .route("/v1/keys/rotate", post(rotate_keys))
        .route("/v1/admin/database/accept-history", post(accept_database_history))
        .route("/v1/grants/{id}/ssh-cert", post(ssh_certificate))
        .route("/v1/grants/{id}/credentials", post(database_credentials))
        .route("/v1/ssh/ca.pub", get(ssh_ca_public))
        .route("/v1/slack/interactions", post(slack_interaction))
        .route(
            "/v1/github/webhook",
            post(github_webhook).layer(axum::extract::DefaultBodyLimit::max(
                crate::github::MAX_WEBHOOK_BODY_BYTES,
            )),
        )
        .route("/v1/whoami", get(crate::cli_login::whoami))
        .route("/v1/login/options", get(crate::cli_login::login_options))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .method_not_allowed_fallback(method_not_allowed)
        .route("/", get(|| async { crate::ui::pages_home() }))
        .nest("/ui", crate::ui::router(sso, state.clone()))
        .nest("/scim/v2", crate::scim::router())
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        // One layer for what every call goes through: each layer of its own costs every
        // check a boxed future.
        .layer(axum::middleware::from_fn_with_state(state.app.clone(), edge))
        .with_state(state)
}

/// Every call, in one layer: control characters in the URL refused (`input.rs`), any error
/// left in another shape put in the API's (`errors_in_api_shape`), and every call refused
/// over a limit counted by limit: the error marks its response, and a body refused before
/// any handler ran (axum's or the UI's 413) counts as over the body size.
async fn edge(State(app): State<Arc<App>>, request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let response = crate::input::refuse_control_characters(request, next).await;
    let response = crate::error::errors_in_api_shape(response).await;
    if let Some(LimitHit(limit)) = response.extensions().get::<LimitHit>() {
        app.metrics.count_limit(limit.as_str());
    } else if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        app.metrics.count_limit(Limit::BodySize.as_str());
    }
    response
}

/// Forward authentication: may the request a reverse proxy holds pass? Any method; below the
/// prefix, the original path (Envoy's `path_prefix`). The original request comes from the
/// proxy's headers (`X-Forwarded-Method`/`-Host`/`-Uri`/`-Proto`, or `X-Original-Method`/
/// `X-Original-URI` with `Host`); who asks from the session cookie, a bearer token, or a user
/// header a configured proxy asserts. See docs/api.md#forward-authentication.
#[utoipa::path(method(get, post, put, delete, patch, head, options, trace), path = "/v1/forward-auth",
    responses(
        (status = 200, description = "an active grant covers the request: empty, with who asks and which grant",
            headers(("X-Jitgate-Principal" = String, description = "who asks"), ("X-Jitgate-Grant" = String, description = "the grant's id"),
                ("X-Jitgate-Expires-At" = String, description = "when the grant ends, RFC 3339 UTC"),
                ("X-Jitgate-Resource" = String, description = "the catalog resource of kind http the request is for"),
                ("X-Jitgate-Action" = String, description = "the action its method and path are"),
                ("X-Jitgate-Token" = String, description = "the grant's signed token, with [forward_auth] grant_token = true"))),
        (status = 400, body = ErrorBody, description = "the auth request does not say what the original request was, or says it wrongly (a header sent twice, two that disagree, a host list, bytes that are not visible ASCII, no URI), or the original method or path cannot be judged; the message names the header or part"),
        (status = 401, description = "no identity jitgate accepts came with the request: the API's error, or with Accept: text/html a page with a Sign in link",
            content((ErrorBody = "application/json"), (String = "text/html")),
            headers(("WWW-Authenticate" = String, description = "Bearer realm=\"jitgate\""), ("X-Jitgate-Login-Url" = String, description = "the web UI's sign-in page, coming back to the request page"))),
        (status = 403, description = "no active grant covers the request, or no catalog resource of kind http serves it: the API's error with request_url beside it, or with Accept: text/html a page with a Request access button",
            content((ForwardAuthDenial = "application/json"), (String = "text/html")),
            headers(("X-Jitgate-Reason" = String, description = "why, on one line"), ("X-Jitgate-Request-Url" = String, description = "the web UI's new-request page for that resource and action, when a resource serves the URL")))),
    tag = "forward-auth")]
pub async fn forward_auth(State(app): State<Arc<App>>, request: axum::extract::Request) -> Response {
    use crate::forward_auth as fa;
    // The parts as they came (no copy of the headers: this is every proxied request's path);
    // the body is never read.
    let (parts, _) = request.into_parts();
    let headers = &parts.headers;
    let original = match fa::original_request(
        headers,
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query(),
        parts.uri.authority().map(|a| a.as_str()),
    ) {
        Ok(original) => original,
        Err(e) => {
            app.metrics.forward_auth.bad_request.inc();
            return fa::bad_request(e.to_string());
        }
    };
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|axum::extract::ConnectInfo(addr)| addr.ip());
    let ask = |method| forward_auth_as(&app, headers, &original, method, peer);
    let mut answer = ask(&original.method).await;
    // The application may act as the method an override header names: it needs a grant too.
    if let (Some(overriding), fa::ForwardAuthAnswer::Allow { .. }) = (&original.overriding, &answer) {
        let second = ask(overriding).await;
        if !matches!(second, fa::ForwardAuthAnswer::Allow { .. }) {
            answer = second;
        }
    }
    fa::respond(
        app.notifier().public_url(),
        &original,
        answer,
        fa::wants_html(headers),
        || {
            app.policy()
                .http_routes()
                .route(&original.host, &original.uri, &original.method)
                .ok()
        },
    )
}

/// One forward-auth question about the original request, as if made with `method`.
async fn forward_auth_as(
    app: &App,
    headers: &axum::http::HeaderMap,
    original: &crate::forward_auth::OriginalRequest,
    method: &str,
    peer: Option<std::net::IpAddr>,
) -> crate::forward_auth::ForwardAuthAnswer {
    use crate::forward_auth as fa;
    app.forward_auth(
        &crate::auth::Headers(headers),
        fa::session_cookie(headers),
        fa::Original {
            method,
            host: &original.host,
            uri: &original.uri,
        },
        peer,
    )
    .await
}

/// Forward authentication with the original path below the prefix (Envoy's `path_prefix`):
/// `/v1/forward-auth/admin?x=1` asks about `/admin?x=1`, with the auth request's own method
/// and `Host`; a header describing the request (`X-Forwarded-*`, `X-Original-*`) is a 400 here.
#[utoipa::path(method(get, post, put, delete, patch, head, options, trace), path = "/v1/forward-auth/{path}",
    params(("path" = String, Path, description = "the original request's path without its leading slash (it may hold more slashes)")),
    responses(
        (status = 200, description = "as /v1/forward-auth"),
        (status = 400, body = ErrorBody, description = "as /v1/forward-auth"),
        (status = 401, description = "as /v1/forward-auth", content((ErrorBody = "application/json"), (String = "text/html")),
            headers(("WWW-Authenticate" = String), ("X-Jitgate-Login-Url" = String))),
        (status = 403, description = "as /v1/forward-auth", content((ForwardAuthDenial = "application/json"), (String = "text/html")),
            headers(("X-Jitgate-Reason" = String), ("X-Jitgate-Request-Url" = String))),
        (status = 422, body = ErrorBody, description = "the path holds a control character (a NUL byte, say); the message names it")),
    tag = "forward-auth")]
pub async fn forward_auth_below(state: State<Arc<App>>, request: axum::extract::Request) -> Response {
    forward_auth(state, request).await
}

/// Fill in each grant view's provider status from the outbox.
pub async fn add_provider_status(app: &App, views: &mut [&mut GrantView]) -> Result<(), ApiError> {
    let ids: Vec<String> = views.iter().map(|v| v.id.clone()).collect();
    let statuses = app.provider_statuses(&ids).await?;
    for (view, providers) in views.iter_mut().zip(statuses) {
        view.providers = providers
            .into_iter()
            .map(|p| ProviderStatusView {
                provider: p.provider,
                status: p.status.to_string(),
                last_error: p.last_error,
            })
            .collect();
    }
    Ok(())
}

fn parse_request_status(text: &str) -> Result<RequestStatus, ApiError> {
    RequestStatus::parse(text).ok_or_else(|| {
        ApiError::Invalid(format!(
            "status: '{text}' is not a request status; use pending, approved, denied, cancelled or expired"
        ))
    })
}

fn page_size(limit: Option<u32>, default: u32, max: u32, field: &str) -> Result<u32, ApiError> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::Invalid(format!(
            "{field}: {n} is out of range; use 1 to {max}"
        ))),
    }
}

#[utoipa::path(post, path = "/v1/requests", request_body = CreateRequestBody,
    responses((status = 201, body = RequestView), (status = 422, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "the caller is filing faster than [limits] requests_per_minute allows (with Retry-After), or already has [limits] max_pending_per_requester requests pending (cancel some or wait for decisions)", headers(("Retry-After" = u64, description = "seconds until the caller may file again; only when the filing rate refused it")))),
    security(("bearer" = [])), tag = "requests")]
pub async fn create_request(
    State(app): State<Arc<App>>,
    caller: Allowed<op::FileRequest>,
    Json(body): Json<CreateRequestBody>,
) -> Result<(StatusCode, Json<RequestView>), ApiError> {
    let request = app.file(caller.who(), &body.try_into()?).await?;
    Ok((
        StatusCode::CREATED,
        Json(RequestView::new(&request, now(), &caller.who().principal)),
    ))
}

#[utoipa::path(get, path = "/v1/requests", params(RequestQuery),
    responses((status = 200, body = RequestList)), security(("bearer" = [])), tag = "requests")]
pub async fn list_requests(
    State(app): State<Arc<App>>,
    caller: Allowed<op::ReadRequests>,
    Q(query): Q<RequestQuery>,
) -> Result<Json<RequestList>, ApiError> {
    let limit = page_size(query.limit, 100, 500, "limit")?;
    let status = query.status.as_deref().map(parse_request_status).transpose()?;
    let at = now();
    let filter = RequestFilter {
        status,
        requester: query.requester,
        limit,
        before: query.before,
    };
    let (page, next) = app.visible_requests(&caller, filter, at).await?;
    let items = page
        .iter()
        .map(|r| RequestView::new(r, at, &caller.who().principal))
        .collect();
    Ok(Json(RequestList { items, next }))
}

/// One request. With `wait` (a duration, at most 60s), a pending request is answered the
/// moment it is decided (or expires), or as it stands when the wait is over: a long poll.
#[utoipa::path(get, path = "/v1/requests/{id}", params(("id" = String, Path), WaitQuery),
    responses((status = 200, body = RequestView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "with wait: no place for another waiting caller ([limits] max_waiters, or the caller's max_waiters_per_principal); ask without wait", headers(("Retry-After" = u64, description = "seconds to wait before asking again")))),
    security(("bearer" = [])), tag = "requests")]
pub async fn get_request(
    State(app): State<Arc<App>>,
    caller: Allowed<op::ReadRequests>,
    Path(id): Path<String>,
    Q(query): Q<WaitQuery>,
) -> Result<Json<RequestView>, ApiError> {
    let request = match query.wait.as_deref() {
        None => app.visible_request(&caller, &id).await?,
        Some(text) => {
            let wait = jitgate_core::parse_duration(text).map_err(|m| ApiError::Invalid(format!("wait: {m}")))?;
            let max = crate::app::MAX_WAIT.as_secs();
            if wait.0 > max {
                return Err(ApiError::Invalid(format!(
                    "wait: {text} is longer than {max}s; wait {max}s and ask again"
                )));
            }
            app.wait_for_decision(&caller, &id, std::time::Duration::from_secs(wait.0))
                .await?
        }
    };
    let mut view = RequestView::new(&request, now(), &caller.who().principal);
    let mut grants: Vec<&mut GrantView> = view.grant.iter_mut().collect();
    grants.extend(view.items.iter_mut().filter_map(|i| i.grant.as_mut()));
    if !grants.is_empty() {
        add_provider_status(&app, &mut grants).await?;
    }
    Ok(Json(view))
}

#[utoipa::path(post, path = "/v1/requests/{id}/approve", params(("id" = String, Path)), request_body = ApproveBody,
    responses((status = 200, body = RequestView), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "already decided (`conflict`), or `payload_sha256` is not the request's payload's (`payload_mismatch`)"),
        (status = 429, body = ErrorBody, description = "the caller is making changes faster than [limits] writes_per_minute allows", headers(("Retry-After" = u64, description = "seconds until the caller may write again")))),
    security(("bearer" = [])), tag = "requests")]
pub async fn approve_request(
    State(app): State<Arc<App>>,
    caller: Allowed<op::ApproveRequest>,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<ApproveBody>,
) -> Result<Json<RequestView>, ApiError> {
    let request = app
        .approve_confirmed(&caller, &id, body.comment, body.payload_sha256.as_deref())
        .await?;
    Ok(Json(RequestView::new(&request, now(), &caller.who().principal)))
}

#[utoipa::path(post, path = "/v1/requests/{id}/deny", params(("id" = String, Path)), request_body = CommentBody,
    responses((status = 200, body = RequestView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "the caller is making changes faster than [limits] writes_per_minute allows", headers(("Retry-After" = u64, description = "seconds until the caller may write again")))),
    security(("bearer" = [])), tag = "requests")]
pub async fn deny_request(
    State(app): State<Arc<App>>,
    caller: Allowed<op::DenyRequest>,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<CommentBody>,
) -> Result<Json<RequestView>, ApiError> {
    let request = app.deny(&caller, &id, body.comment).await?;
    Ok(Json(RequestView::new(&request, now(), &caller.who().principal)))
}

#[utoipa::path(post, path = "/v1/requests/{id}/cancel", params(("id" = String, Path)),
    responses((status = 200, body = RequestView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "the caller is making changes faster than [limits] writes_per_minute allows", headers(("Retry-After" = u64, description = "seconds until the caller may write again")))),
    security(("bearer" = [])), tag = "requests")]
pub async fn cancel_request(
    State(app): State<Arc<App>>,
    caller: Allowed<op::CancelRequest>,
    Path(id): Path<String>,
) -> Result<Json<RequestView>, ApiError> {
    let request = app.cancel(&caller, &id).await?;
    Ok(Json(RequestView::new(&request, now(), &caller.who().principal)))
}

/// The review a break-glass request demands afterwards.
#[utoipa::path(post, path = "/v1/requests/{id}/review", params(("id" = String, Path)), request_body = CommentBody,
    responses((status = 200, body = RequestView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "the caller is making changes faster than [limits] writes_per_minute allows", headers(("Retry-After" = u64, description = "seconds until the caller may write again")))),
    security(("bearer" = [])), tag = "requests")]
pub async fn review_request(
    State(app): State<Arc<App>>,
    caller: Allowed<op::ReviewBreakGlass>,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<CommentBody>,
) -> Result<Json<RequestView>, ApiError> {
    let request = app.review_break_glass(&caller, &id, body.comment).await?;
    Ok(Json(RequestView::new(&request, now(), &caller.who().principal)))
}

#[utoipa::path(get, path = "/v1/grants", params(GrantQuery),
    responses((status = 200, body = GrantList)), security(("bearer" = [])), tag = "grants")]
pub async fn list_grants(
    State(app): State<Arc<App>>,
    caller: Allowed<op::ReadGrants>,
    Q(query): Q<GrantQuery>,
) -> Result<Json<GrantList>, ApiError> {
    let limit = page_size(query.limit, 100, 500, "limit")?;
    let status = match query.status.as_deref() {
        None => None,
        Some(s) => Some(GrantStatus::parse(s).ok_or_else(|| {
            ApiError::Invalid(format!(
                "status: '{s}' is not a grant status; use active, expired, revoked, used or done"
            ))
        })?),
    };
    let principal = if caller.reach() == Reach::All {
        query.principal
    } else {
        Some(caller.who().principal.clone())
    };
    let at = now();
    let grants = app
        .store
        .list_grants(
            &GrantFilter {
                principal,
                status,
                limit,
                before: query.before,
            },
            at,
        )
        .await?;
    // A full page may have more after it; the next one starts after its last grant.
    let next = (grants.len() == limit as usize)
        .then(|| grants.last().map(|g| g.id.clone()))
        .flatten();
    let mut items: Vec<GrantView> = grants
        .iter()
        .map(|g| GrantView::new(g, at, &caller.who().principal))
        .collect();
    add_provider_status(&app, &mut items.iter_mut().collect::<Vec<_>>()).await?;
    Ok(Json(GrantList { items, next }))
}

#[utoipa::path(post, path = "/v1/grants/{id}/revoke", params(("id" = String, Path)), request_body = CommentBody,
    responses((status = 200, body = GrantView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "the caller is making changes faster than [limits] writes_per_minute allows", headers(("Retry-After" = u64, description = "seconds until the caller may write again")))),
    security(("bearer" = [])), tag = "grants")]
pub async fn revoke_grant(
    State(app): State<Arc<App>>,
    caller: Allowed<op::RevokeGrant>,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<CommentBody>,
) -> Result<Json<GrantView>, ApiError> {
    let grant = app.revoke(&caller, &id, body.comment).await?;
    Ok(Json(GrantView::new(&grant, now(), &caller.who().principal)))
}

#[utoipa::path(post, path = "/v1/grants/{id}/extend", params(("id" = String, Path)), request_body = ExtendBody,
    responses((status = 200, body = GrantView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "the caller is making changes faster than [limits] writes_per_minute allows", headers(("Retry-After" = u64, description = "seconds until the caller may write again")))),
    security(("bearer" = [])), tag = "grants")]
pub async fn extend_grant(
    State(app): State<Arc<App>>,
    caller: Allowed<op::ExtendGrant>,
    Path(id): Path<String>,
    Json(body): Json<ExtendBody>,
) -> Result<Json<GrantView>, ApiError> {
    let grant = app.extend(&caller, &id, &body.into()).await?;
    Ok(Json(GrantView::new(&grant, now(), &caller.who().principal)))
}

/// The holder's task is finished: an active grant ends now, and the outcome (a run's exit code
/// and duration) is recorded in the audit log as `grant.done`.
#[utoipa::path(post, path = "/v1/grants/{id}/done", params(("id" = String, Path)), request_body = DoneBody,
    responses((status = 200, body = GrantView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "the caller is making changes faster than [limits] writes_per_minute allows", headers(("Retry-After" = u64, description = "seconds until the caller may write again")))),
    security(("bearer" = [])), tag = "grants")]
pub async fn done_grant(
    State(app): State<Arc<App>>,
    caller: Allowed<op::FinishGrant>,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<DoneBody>,
) -> Result<Json<GrantView>, ApiError> {
    let grant = app.done(&caller, &id, body.outcome()).await?;
    Ok(Json(GrantView::new(&grant, now(), &caller.who().principal)))
}

pub(crate) fn validate_check(body: &CheckBody) -> Result<(), ApiError> {
    validate_check_fields(&[
        ("principal", &body.principal),
        ("resource", &body.resource),
        ("action", &body.action),
    ])
}

fn validate_check_fields(fields: &[(&str, &String)]) -> Result<(), ApiError> {
    for &(field, value) in fields {
        if value.is_empty() {
            return Err(ApiError::Invalid(format!("{field}: must not be empty")));
        }
        if value.len() > MAX_CHECK_FIELD {
            return Err(ApiError::OverLimit(
                Limit::FieldLength,
                format!("{field}: is {} bytes; keep it under {MAX_CHECK_FIELD}", value.len()),
            ));
        }
        // Denied checks are recorded in the log: a NUL byte would fail there on PostgreSQL.
        jitgate_core::text::check_reviewed(field, value, jitgate_core::text::Lines::One)?;
    }
    Ok(())
}

/// What the caller may request: each resource (by name, a page at a time) with the actions
/// they may ask for on it and what each would take.
#[utoipa::path(get, path = "/v1/resources", params(ResourceListQuery),
    responses((status = 200, body = ResourceList), (status = 422, body = ErrorBody)), security(("bearer" = [])), tag = "requests")]
pub async fn list_resources(
    State(app): State<Arc<App>>,
    caller: Allowed<op::FileRequest>,
    Q(query): Q<ResourceListQuery>,
) -> Result<Json<ResourceList>, ApiError> {
    let (page, next) = app.requestable(&caller, &query.into_query()?)?;
    Ok(Json(ResourceList {
        items: page.into_iter().map(ResourceView::from).collect(),
        next,
    }))
}

#[utoipa::path(post, path = "/v1/check", request_body = CheckBody,
    responses((status = 200, body = CheckAnswer), (status = 403, body = ErrorBody)), security(("bearer" = [])), tag = "check")]
pub async fn check(
    State(app): State<Arc<App>>,
    caller: Allowed<op::Check>,
    Json(body): Json<CheckBody>,
) -> Result<Json<CheckAnswer>, ApiError> {
    validate_check(&body)?;
    Ok(Json(
        app.check(
            caller.who(),
            &body.principal,
            &body.resource,
            &body.action,
            body.payload.as_deref(),
        )
        .await
        .into(),
    ))
}

/// Does one of the caller's own grants cover this action now? The answer of `/v1/check` for
/// the caller as principal (never another), consuming a single-use grant as that does: of
/// concurrent uses exactly one is allowed. How an agent's MCP proxy spends the grant approved
/// for one exact tool call.
#[utoipa::path(post, path = "/v1/grants/use", request_body = UseGrantBody,
    responses((status = 200, body = CheckAnswer), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])), tag = "check")]
pub async fn use_grant(
    State(app): State<Arc<App>>,
    caller: Allowed<op::UseGrant>,
    Json(body): Json<UseGrantBody>,
) -> Result<Json<CheckAnswer>, ApiError> {
    validate_check_fields(&[("resource", &body.resource), ("action", &body.action)])?;
    Ok(Json(
        app.use_grant(&caller, &body.resource, &body.action, body.payload.as_deref())
            .await
            .into(),
    ))
}

#[utoipa::path(post, path = "/v1/check/batch", request_body = CheckBatchBody,
    responses((status = 200, body = CheckBatchAnswer), (status = 403, body = ErrorBody)), security(("bearer" = [])), tag = "check")]
pub async fn check_batch(
    State(app): State<Arc<App>>,
    caller: Allowed<op::Check>,
    Json(body): Json<CheckBatchBody>,
) -> Result<Json<CheckBatchAnswer>, ApiError> {
    if body.checks.len() > MAX_BATCH {
        return Err(ApiError::OverLimit(
            Limit::ListSize,
            format!(
                "checks: {} checks in one batch; send at most {MAX_BATCH}",
                body.checks.len()
            ),
        ));
    }
    for c in &body.checks {
        validate_check(c)?;
    }
    let mut results = Vec::with_capacity(body.checks.len());
    for c in &body.checks {
        results.push(
            app.check(caller.who(), &c.principal, &c.resource, &c.action, c.payload.as_deref())
                .await
                .into(),
        );
    }
    Ok(Json(CheckBatchAnswer { results }))
}

#[utoipa::path(get, path = "/v1/audit", params(AuditQuery),
    responses((status = 200, body = EventList), (status = 403, body = ErrorBody)), security(("bearer" = [])), tag = "audit")]
pub async fn list_audit(
    State(app): State<Arc<App>>,
    _caller: Allowed<op::ReadAudit>,
    Q(query): Q<AuditQuery>,
) -> Result<Json<EventList>, ApiError> {
    let limit = page_size(query.limit, 1000, 5000, "limit")?;
    let since = query
        .since
        .as_deref()
        .map(|s| {
            chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|_| {
                    ApiError::Invalid(format!(
                        "since: '{s}' is not an RFC 3339 time like 2026-01-31T12:00:00Z"
                    ))
                })
        })
        .transpose()?;
    if let Some(kind) = &query.kind {
        if serde_json::from_value::<jitgate_core::EventKind>(serde_json::Value::String(kind.clone())).is_err() {
            return Err(ApiError::Invalid(format!(
                "kind: '{kind}' is not an event kind; see docs/audit.md (request.filed, grant.issued, ...)"
            )));
        }
    }
    let filter = AuditFilter {
        request_id: query.request_id,
        principal: query.principal,
        resource: query.resource,
        action: query.action,
        kind: query.kind,
        since,
        after_seq: query.after,
        limit,
    };
    let events = app.store.audit_events(&filter).await?;
    let next = (events.len() == limit as usize)
        .then(|| events.last().map(|e| e.seq))
        .flatten();
    Ok(Json(EventList {
        items: events.into_iter().map(EventView::from).collect(),
        next,
    }))
}

#[utoipa::path(get, path = "/v1/audit/verify",
    responses((status = 200, body = VerifyAnswer), (status = 403, body = ErrorBody)), security(("bearer" = [])), tag = "audit")]
pub async fn verify_audit(
    State(app): State<Arc<App>>,
    _caller: Allowed<op::ReadAudit>,
) -> Result<Json<VerifyAnswer>, ApiError> {
    let r = app.verify_audit().await?;
    Ok(Json(VerifyAnswer {
        ok: r.ok,
        events: r.events,
        checkpoints: r.checkpoints,
        first_bad_seq: r.first_bad_seq,
        problem: r.problem,
        archived_through: r.archived_through,
        signed_through: r.signed_through,
    }))
}

/// The audit log's signed checkpoints, oldest first: with an export of the events, what lets
/// `jitgate audit verify --file` catch a cut-off end or a consistent rewrite offline.
#[utoipa::path(get, path = "/v1/audit/checkpoints", params(CheckpointQuery),
    responses((status = 200, body = CheckpointList), (status = 403, body = ErrorBody)), security(("bearer" = [])), tag = "audit")]
pub async fn list_checkpoints(
    State(app): State<Arc<App>>,
    _caller: Allowed<op::ReadAudit>,
    Q(query): Q<CheckpointQuery>,
) -> Result<Json<CheckpointList>, ApiError> {
    let after = query.after.unwrap_or(i64::MIN);
    let through = query.through.unwrap_or(i64::MAX);
    let items = app
        .store
        .checkpoints()
        .await?
        .into_iter()
        .filter(|c| c.seq > after && c.seq <= through)
        .map(CheckpointView::from)
        .collect();
    Ok(Json(CheckpointList { items }))
}

/// Sign the log's head now (an export ends with one, so that its end is vouched for).
#[utoipa::path(post, path = "/v1/audit/checkpoints",
    responses((status = 201, body = CheckpointView), (status = 409, body = ErrorBody, description = "the log is empty"), (status = 403, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "the caller is making changes faster than [limits] writes_per_minute allows", headers(("Retry-After" = u64, description = "seconds until the caller may write again")))),
    security(("bearer" = [])), tag = "audit")]
pub async fn sign_checkpoint(
    State(app): State<Arc<App>>,
    caller: Allowed<op::ReadAudit>,
) -> Result<(StatusCode, Json<CheckpointView>), ApiError> {
    match app.checkpoint_now(&caller).await? {
        Some(checkpoint) => Ok((StatusCode::CREATED, Json(checkpoint.into()))),
        None => Err(ApiError::Conflict("the audit log is empty: nothing to sign".into())),
    }
}

/// Every public key that ever signed a checkpoint (retired ones too), as a JWKS: save it, and
/// `jitgate audit verify --file EXPORT --keys FILE` checks the signatures offline.
#[utoipa::path(get, path = "/v1/audit/keys",
    responses((status = 200, description = "a JWKS"), (status = 403, body = ErrorBody)), security(("bearer" = [])), tag = "audit")]
pub async fn audit_keys(State(app): State<Arc<App>>, _caller: Allowed<op::ReadAudit>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "keys": app.checkpoint_keys() }))
}

/// Why a request would be refused, automatic, or need which approvals.
#[utoipa::path(get, path = "/v1/policy/explain", params(ExplainQuery),
    responses((status = 200, description = "the policy's verdict, limits, the workflow and selector that govern it (`workflow`, `governed_by`) and a one-line summary"), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "no such principal in the directory")),
    security(("bearer" = [])), tag = "policy")]
pub async fn explain_policy(
    State(app): State<Arc<App>>,
    caller: Allowed<op::ExplainPolicy>,
    Q(query): Q<ExplainQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let policy = app.policy();
    let subject = app.explain_subject(&caller, query.principal.as_deref())?;
    let explanation = policy.explain(&subject, &query.resource, &query.action, None, now());
    Ok(Json(jitgate_policy::explanation_json(
        &subject.principal,
        &query.resource,
        &query.action,
        &explanation,
    )))
}

/// Issue an API token; the answer holds the token itself, shown this once.
#[utoipa::path(post, path = "/v1/tokens", request_body = CreateTokenBody,
    responses((status = 201, body = CreatedToken), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "the caller is making changes faster than [limits] writes_per_minute allows", headers(("Retry-After" = u64, description = "seconds until the caller may write again")))),
    security(("bearer" = [])), tag = "tokens")]
pub async fn create_token(
    State(app): State<Arc<App>>,
    caller: Allowed<op::ManageTokens>,
    Json(body): Json<CreateTokenBody>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let (token, secret) = app.create_token(&caller, &body.into()).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: secret,
            details: TokenView::new(&token, now()),
        }),
    ))
}

#[utoipa::path(get, path = "/v1/tokens",
    responses((status = 200, body = TokenList), (status = 403, body = ErrorBody)), security(("bearer" = [])), tag = "tokens")]
pub async fn list_tokens(
    State(app): State<Arc<App>>,
    _caller: Allowed<op::ManageTokens>,
) -> Result<Json<TokenList>, ApiError> {
    let at = now();
    let items = app.list_tokens().await?.iter().map(|t| TokenView::new(t, at)).collect();
    Ok(Json(TokenList { items }))
}

/// Revoke an API token: it is refused from the moment this answers.
#[utoipa::path(post, path = "/v1/tokens/{id}/revoke", params(("id" = String, Path)),
    responses((status = 200, body = TokenView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "the caller is making changes faster than [limits] writes_per_minute allows", headers(("Retry-After" = u64, description = "seconds until the caller may write again")))),
    security(("bearer" = [])), tag = "tokens")]
pub async fn revoke_token(
    State(app): State<Arc<App>>,
    caller: Allowed<op::ManageTokens>,
    Path(id): Path<String>,
) -> Result<Json<TokenView>, ApiError> {
    let token = app.revoke_token(&caller, &id).await?;
    Ok(Json(TokenView::new(&token, now())))
}

/// Start signing grant tokens with a new key. The previous key stays published until the
/// last grant it signed has ended.
#[utoipa::path(post, path = "/v1/keys/rotate",
    responses((status = 200, body = RotatedKey), (status = 403, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "the caller is making changes faster than [limits] writes_per_minute allows", headers(("Retry-After" = u64, description = "seconds until the caller may write again")))), security(("bearer" = [])), tag = "grants")]
pub async fn rotate_keys(
    State(app): State<Arc<App>>,
    caller: Allowed<op::ManageKeys>,
) -> Result<Json<RotatedKey>, ApiError> {
    let kid = app.rotate_keys(&caller).await?;
    Ok(Json(RotatedKey { kid }))
}

/// Accept the database's history as it is, after this replica refused it because it diverged
/// from what the replica had seen (a failover lost acknowledged work, or a second primary
/// forked the log): the replica writes again, records the acceptance in the audit log and
/// loads its check index from the database. Ask every replica that refuses it (each says so
/// on `/readyz`). Nothing diverged: 200 and nothing changes.
#[utoipa::path(post, path = "/v1/admin/database/accept-history",
    responses((status = 200, body = HistoryAccepted), (status = 403, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "the caller is making changes faster than [limits] writes_per_minute allows", headers(("Retry-After" = u64, description = "seconds until the caller may write again")))),
    security(("bearer" = [])), tag = "operations")]
pub async fn accept_database_history(
    State(app): State<Arc<App>>,
    caller: Allowed<op::ManageDatabase>,
) -> Result<Json<HistoryAccepted>, ApiError> {
    Ok(Json(match app.accept_database_history(&caller).await? {
        Some(given_up) => HistoryAccepted {
            diverged: true,
            message: format!(
                "the database's history is accepted; this replica writes again, having given up: {given_up}"
            ),
            given_up: Some(given_up),
        },
        None => HistoryAccepted {
            diverged: false,
            given_up: None,
            message: "nothing diverged: this replica already accepts the database's history".into(),
        },
    }))
}

/// An OpenSSH user certificate for an active grant on an SSH workflow, valid for the grant's
/// window only.
#[utoipa::path(post, path = "/v1/grants/{id}/ssh-cert", params(("id" = String, Path)), request_body = SshCertBody,
    responses((status = 200, body = SshCertAnswer), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "the caller is making changes faster than [limits] writes_per_minute allows", headers(("Retry-After" = u64, description = "seconds until the caller may write again")))),
    security(("bearer" = [])), tag = "grants")]
pub async fn ssh_certificate(
    State(app): State<Arc<App>>,
    caller: Allowed<op::IssueSshCertificate>,
    Path(id): Path<String>,
    Json(body): Json<SshCertBody>,
) -> Result<Json<SshCertAnswer>, ApiError> {
    let certificate = app.ssh_certificate(&caller, &id, &body.public_key).await?;
    Ok(Json(SshCertAnswer { certificate }))
}

/// The database logins a grant's providers made for its holder, handed out once: a second
/// call answers 409. 503 while the login role is still being created (retry shortly).
#[utoipa::path(post, path = "/v1/grants/{id}/credentials", params(("id" = String, Path)),
    responses((status = 200, body = CredentialsAnswer), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "the login role is still being created, or the database cannot answer now; retry shortly", headers(("Retry-After" = u64, description = "seconds until trying again is worth it"))),
        (status = 429, body = ErrorBody, description = "the caller is making changes faster than [limits] writes_per_minute allows", headers(("Retry-After" = u64, description = "seconds until the caller may write again")))),
    security(("bearer" = [])), tag = "grants")]
pub async fn database_credentials(
    State(app): State<Arc<App>>,
    caller: Allowed<op::IssueCredentials>,
    Path(id): Path<String>,
) -> Result<Json<CredentialsAnswer>, ApiError> {
    let credentials = app.database_credentials(&caller, &id).await?;
    Ok(Json(CredentialsAnswer {
        credentials: credentials.into_iter().map(Into::into).collect(),
    }))
}

/// Slack's interactivity endpoint: Approve and Deny buttons. Authenticated by Slack's request
/// signature (not a bearer token); the Slack user acts as the principal `directory.toml` links
/// to them, under the same rules as the API. The outcome is shown through the response URL.
#[utoipa::path(post, path = "/v1/slack/interactions", request_body(content = SlackInteractionForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "Slack is not configured"), (status = 413, body = ErrorBody)),
    tag = "chat")]
pub async fn slack_interaction(
    State(edge): State<crate::state::Edge>,
    headers: axum::http::HeaderMap,
    RawBody(body): RawBody,
) -> Result<StatusCode, ApiError> {
    let app = &edge.app;
    let slack = edge
        .slack
        .as_deref()
        .ok_or_else(|| ApiError::NotFound("Slack is not configured: see docs/notifications.md".into()))?;
    if let Err(e) = slack.verify(&headers, &body, crate::slack::now_secs()) {
        app.metrics.count_slack("forged");
        return Err(e);
    }
    let interaction = crate::slack::parse(&body)?;
    if let Some(message) = crate::slack::act(app, &interaction).await {
        crate::slack::respond(slack, interaction.response_url, message);
    }
    Ok(StatusCode::OK)
}

/// GitHub's webhook deliveries (the jitgate GitHub App, docs/github.md): a deployment waiting
/// on a custom deployment protection rule, a `/jitgate approve|deny` comment. Authenticated by
/// `X-Hub-Signature-256` (HMAC-SHA256 of the body with the App's webhook secret), not a bearer
/// token; a redelivery (`X-GitHub-Delivery` seen before) changes nothing. Slow work (calls to
/// GitHub) is queued, so GitHub hears back within its timeout.
#[utoipa::path(post, path = "/v1/github/webhook",
    params(
        ("X-GitHub-Event" = String, Header, description = "the event: deployment_protection_rule, issue_comment, ping (others are ignored)"),
        ("X-GitHub-Delivery" = String, Header, description = "the delivery's GUID; a redelivery carries the same and changes nothing"),
        ("X-Hub-Signature-256" = String, Header, description = "sha256= and the hex HMAC-SHA256 of the body with the App's webhook secret")),
    request_body(content = crate::github::GithubWebhookPayload, content_type = "application/json",
        description = "the event's payload, exactly as GitHub signed it"),
    responses(
        (status = 200, body = crate::github::GithubWebhookAnswer, description = "what jitgate did with the delivery: filed, rejected, command, duplicate or ignored"),
        (status = 400, body = ErrorBody, description = "X-GitHub-Event or X-GitHub-Delivery missing, sent twice or not 1 to 100 printable ASCII characters, or a payload jitgate cannot answer (no deployment_callback_url or installation); the message names it"),
        (status = 401, body = ErrorBody, description = "the delivery is not signed with the App's webhook secret: nothing was read or written"),
        (status = 404, body = ErrorBody, description = "GitHub is not configured ([github] in the config file)"),
        (status = 413, body = ErrorBody, description = "the delivery is larger than 1 MiB"),
        (status = 429, body = ErrorBody, description = "a limit that lifts with time; GitHub's redelivery (or the worker) files it later", headers(("Retry-After" = u64, description = "seconds until trying again is worth it"))),
        (status = 503, body = ErrorBody, description = "the database cannot answer now; redeliver the event later", headers(("Retry-After" = u64, description = "seconds until trying again is worth it")))),
    tag = "github")]
pub async fn github_webhook(
    State(app): State<Arc<App>>,
    headers: axum::http::HeaderMap,
    crate::github::WebhookBody(body): crate::github::WebhookBody,
) -> Result<Json<jitgate_service::github::WebhookOutcome>, ApiError> {
    let read = crate::github::DeliveryHeaders::read(&headers)?;
    let delivery = jitgate_service::github::WebhookDelivery {
        event: read.event.as_deref(),
        delivery: read.delivery.as_deref(),
        signature: read.signature.as_deref(),
        body: &body,
    };
    match app.github_webhook(&delivery).await {
        Ok(outcome) => Ok(Json(outcome)),
        // The service's `Invalid` here is a delivery it cannot read (a header, a payload that
        // is not the event it says): to GitHub, a bad request (400), not a form field (422).
        Err(jitgate_service::ServiceError::Invalid(message)) => Err(ApiError::BadRequest(message.to_string())),
        Err(other) => Err(other.into()),
    }
}

/// The SSH user CA's public key, one OpenSSH line, for sshd's `TrustedUserCAKeys`.
#[utoipa::path(get, path = "/v1/ssh/ca.pub", responses((status = 200, content_type = "text/plain")), tag = "grants")]
pub async fn ssh_ca_public(State(app): State<Arc<App>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{}\n", app.ssh_ca_public()),
    )
}

/// The public keys that verify grant tokens (a JWKS document).
#[utoipa::path(get, path = "/.well-known/jwks.json",
    responses((status = 200, description = "JWKS: the active key and retired keys whose tokens may still be valid")), tag = "grants")]
pub async fn jwks(State(app): State<Arc<App>>) -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "max-age=60")], axum::Json(app.jwks()))
}

#[utoipa::path(get, path = "/healthz", responses((status = 200)), tag = "operations")]
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// The longest `/readyz` waits for the database's answer: a load balancer asking must hear
/// "not ready" from a database that hangs, not wait with it.
pub const READY_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Ready while writes can commit: the database reachable, writable (not a standby), committing
/// within the write bound, and its history the one this replica saw. 503 says why not.
#[utoipa::path(get, path = "/readyz",
    responses((status = 200, description = "writes can commit"),
        (status = 503, body = ErrorBody, description = "writes cannot commit now, and why: the database unreachable, read-only, not committing within the bound (a synchronous standby gone), or its history diverged from what this replica saw (an operator must accept it: POST /v1/admin/database/accept-history); answered within 2 s", headers(("Retry-After" = u64, description = "seconds until asking again is worth it")))),
    tag = "operations")]
pub async fn readyz(State(app): State<Arc<App>>) -> Result<&'static str, ApiError> {
    if let Some(why) = app.store.divergence() {
        return Err(ApiError::Unavailable(format!(
            "the database's history diverged from what this replica saw: {why}; an admin must accept it (jitgate database accept-history)"
        )));
    }
    match tokio::time::timeout(READY_WITHIN, app.store.ready()).await {
        Ok(Ok(())) => Ok("ready\n"),
        Ok(Err(e @ jitgate_store::StoreError::Diverged(_))) => Err(ApiError::Unavailable(e.to_string())),
        Ok(Err(e)) => {
            let cause = jitgate_service::error::unavailable_cause(&e);
            Err(ApiError::Unavailable(format!("database: {}", cause.text)))
        }
        Err(_) => Err(ApiError::Unavailable(format!(
            "database: no answer within {} s",
            READY_WITHIN.as_secs()
        ))),
    }
}

/// Prometheus text 0.0.4, or OpenMetrics 1.0 when `Accept` prefers `application/openmetrics-text`.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "the metrics", content((String = "text/plain; version=0.0.4"), (String = "application/openmetrics-text")))), tag = "operations")]
pub async fn metrics(State(app): State<Arc<App>>, headers: axum::http::HeaderMap) -> impl IntoResponse {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = crate::metrics::Format::negotiate(accept);
    // As the store says it now, not as the watcher last looked (an alarm must not lag).
    app.metrics
        .database_history_diverged
        .set(i64::from(app.store.divergence().is_some()));
    (
        [(header::CONTENT_TYPE, format.content_type()), (header::VARY, "Accept")],
        app.metrics.encode_as(format),
    )
}

pub async fn openapi() -> impl IntoResponse {
    axum::Json(crate::openapi::document())
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no endpoint {}; see /openapi.json", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{method} is not allowed on {}; the Allow header lists the methods that are (see /openapi.json)",
        uri.path()
    ))
}
