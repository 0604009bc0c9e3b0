//! `/scim/v2`: the SCIM 2.0 service provider's HTTP edge (RFC 7644). Authenticates the
//! provisioning token, parses, calls `jitgate_service::scim`, and answers in SCIM's shapes:
//! `application/scim+json` always, SCIM error bodies, `ETag` / `If-Match`, `Location`.

use crate::state::Edge;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use jitgate_core::scim::resource::{self as rep, attribute_list};
use jitgate_core::scim::schema::{self, LIST_RESPONSE};
use jitgate_core::scim::{ScimError, ScimGroup, ScimType, ScimUser};
use jitgate_service::scim::{self as service, ListRequest, ScimClient, ScimFailure};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;

pub use jitgate_service::scim::ScimConfig;

/// SCIM's media type.
pub const SCIM_JSON: &str = "application/scim+json";
/// The largest SCIM body read: a group of 10,000 members replaced in one PUT fits.
pub const MAX_SCIM_BODY_BYTES: usize = 2 * 1024 * 1024;
/// Where docs/scim.md is published, for `documentationUri`.
const DOCUMENTATION: &str = "https://github.com/jitgate/jitgate/blob/main/docs/scim.md";

/// Any SCIM resource or message (RFC 7643, RFC 7644): a User, a Group, a ListResponse, a
/// schema, a resource type, the ServiceProviderConfig. See docs/scim.md for what jitgate keeps.
pub struct ScimDocument(pub Value);

impl utoipa::PartialSchema for ScimDocument {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some("a SCIM resource or message (RFC 7643, RFC 7644)"))
            .into()
    }
}

impl utoipa::ToSchema for ScimDocument {}

/// SCIM's error body (RFC 7644 3.12).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ScimErrorBody {
    /// `["urn:ietf:params:scim:api:messages:2.0:Error"]`.
    pub schemas: Vec<String>,
    /// The HTTP status, as a string.
    pub status: String,
    /// `invalidFilter`, `invalidValue`, `invalidSyntax`, `invalidPath`, `noTarget`,
    /// `mutability`, `uniqueness`, `tooMany` or `tooLarge`, where RFC 7644 names one.
    #[serde(rename = "scimType", skip_serializing_if = "Option::is_none")]
    pub scim_type: Option<String>,
    /// What was wrong and how to fix it.
    pub detail: String,
}

/// The query of a list (RFC 7644 3.4.2); `attributes` and `excludedAttributes` also apply to
/// single resources.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // read by `query_params`; this type only describes it.
pub struct ScimListQuery {
    /// `ATTR eq "VALUE"` joined with `and`: userName, externalId, id (users); displayName,
    /// externalId, id, members (groups). Anything else is 400 invalidFilter.
    filter: Option<String>,
    /// 1-based; below 1 is 1.
    #[serde(rename = "startIndex")]
    start_index: Option<i64>,
    /// Items per page: default 100, at most 200.
    count: Option<i64>,
    /// Comma-separated attributes to answer (besides id, schemas, meta).
    attributes: Option<String>,
    /// Comma-separated attributes to leave out (`members`).
    #[serde(rename = "excludedAttributes")]
    excluded_attributes: Option<String>,
}

/// The SCIM routes, to nest under `/scim/v2`.
pub fn router() -> Router<Edge> {
    Router::new()
        .route("/ServiceProviderConfig", get(service_provider_config))
        .route("/ResourceTypes", get(resource_types))
        .route("/ResourceTypes/{id}", get(resource_type))
        .route("/Schemas", get(schemas))
        .route("/Schemas/{id}", get(one_schema))
        .route("/.search", post(search_all))
        .route("/Users", get(list_users).post(create_user))
        .route("/Users/.search", post(search_users))
        .route(
            "/Users/{id}",
            get(get_user).put(replace_user).patch(patch_user).delete(delete_user),
        )
        .route("/Groups", get(list_groups).post(create_group))
        .route("/Groups/.search", post(search_groups))
        .route(
            "/Groups/{id}",
            get(get_group)
                .put(replace_group)
                .patch(patch_group)
                .delete(delete_group),
        )
        .method_not_allowed_fallback(|| async {
            ScimReply::error(ScimError::new(
                405,
                None,
                "this method is not allowed here; see RFC 7644 3.2",
            ))
        })
        .fallback(|| async {
            ScimReply::error(ScimError::not_found(
                "no such SCIM endpoint; jitgate serves ServiceProviderConfig, ResourceTypes, Schemas, Users and Groups",
            ))
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_SCIM_BODY_BYTES))
}

/// A SCIM answer: a status, a JSON body (none for 204) and the headers SCIM uses.
pub struct ScimReply {
    status: StatusCode,
    body: Option<Value>,
    etag: Option<String>,
    location: Option<String>,
    retry_after: bool,
}

impl ScimReply {
    fn ok(body: Value) -> Self {
        ScimReply {
            status: StatusCode::OK,
            body: Some(body),
            etag: None,
            location: None,
            retry_after: false,
        }
    }

    /// A resource, with its version as `ETag`.
    fn resource(status: StatusCode, body: Value) -> Self {
        let etag = body["meta"]["version"].as_str().map(String::from);
        let location = (status == StatusCode::CREATED)
            .then(|| body["meta"]["location"].as_str().map(String::from))
            .flatten();
        ScimReply {
            status,
            body: Some(body),
            etag,
            location,
            retry_after: false,
        }
    }

    fn no_content() -> Self {
        ScimReply {
            status: StatusCode::NO_CONTENT,
            body: None,
            etag: None,
            location: None,
            retry_after: false,
        }
    }

    pub fn error(error: ScimError) -> Self {
        ScimReply {
            status: StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            retry_after: error.status == 503,
            body: Some(error.body()),
            etag: None,
            location: None,
        }
    }
}

impl IntoResponse for ScimReply {
    fn into_response(self) -> Response {
        let mut response = match self.body {
            Some(body) => (self.status, axum::Json(body)).into_response(),
            None => self.status.into_response(),
        };
        let headers = response.headers_mut();
        if self.status != StatusCode::NO_CONTENT {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
        }
        if let Some(tag) = self.etag.and_then(|t| HeaderValue::from_str(&t).ok()) {
            headers.insert(header::ETAG, tag);
        }
        if let Some(location) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            headers.insert(header::LOCATION, location);
        }
        if self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"jitgate-scim\""),
            );
        }
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            response
                .extensions_mut()
                .insert(crate::error::LimitHit(crate::error::Limit::BodySize));
        }
        response
    }
}

/// A refused SCIM call, answered in SCIM's error shape.
pub struct ScimRefusal(ScimError);

impl From<ScimError> for ScimRefusal {
    fn from(e: ScimError) -> Self {
        ScimRefusal(e)
    }
}

impl From<ScimFailure> for ScimRefusal {
    fn from(e: ScimFailure) -> Self {
        ScimRefusal(e.error())
    }
}

impl From<jitgate_service::ServiceError> for ScimRefusal {
    fn from(e: jitgate_service::ServiceError) -> Self {
        ScimFailure::Service(e).into()
    }
}

impl IntoResponse for ScimRefusal {
    fn into_response(self) -> Response {
        ScimReply::error(self.0).into_response()
    }
}

type Answer = Result<ScimReply, ScimRefusal>;

/// The provisioning client calling: a SCIM token, nothing else (401 otherwise).
pub struct Provisioner(ScimClient);

impl FromRequestParts<Edge> for Provisioner {
    type Rejection = ScimRefusal;

    async fn from_request_parts(parts: &mut Parts, state: &Edge) -> Result<Self, ScimRefusal> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        let client = state
            .app
            .authenticate_scim(&crate::auth::Headers(&parts.headers), peer)
            .await?;
        Ok(Provisioner(client))
    }
}

/// A SCIM request body: `application/scim+json` or `application/json`, at most
/// [`MAX_SCIM_BODY_BYTES`] (413 `tooLarge`), a JSON value (400 `invalidSyntax`).
pub struct ScimBody(Value);

impl<S: Send + Sync> FromRequest<S> for ScimBody {
    type Rejection = ScimRefusal;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ScimRefusal> {
        let essence = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
        match essence.as_deref() {
            Some("application/scim+json" | "application/json") => {}
            _ => {
                return Err(ScimError::new(
                    415,
                    None,
                    "send the body with Content-Type: application/scim+json (or application/json)",
                )
                .into())
            }
        }
        let bytes = axum::body::Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ScimError::new(
                    413,
                    Some(ScimType::TooLarge),
                    format!("the body is larger than {MAX_SCIM_BODY_BYTES} bytes; send less (split member changes into several PATCH calls)"),
                )
            } else {
                ScimError::invalid_syntax(format!("the body could not be read: {}", rejection.body_text()))
            }
        })?;
        let value = serde_json::from_slice(&bytes)
            .map_err(|e| ScimError::invalid_syntax(format!("the body is not JSON: {e}")))?;
        Ok(ScimBody(value))
    }
}

/// The URL of `/scim/v2` as clients reach it.
fn base(edge: &Edge) -> String {
    format!("{}/scim/v2", edge.app.notifier().public_url().trim_end_matches('/'))
}

fn if_match(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(String::from)
}

/// `attributes` and `excludedAttributes`, lowercase.
#[derive(Debug, Default)]
struct Projection {
    attributes: Vec<String>,
    excluded: Vec<String>,
}

impl Projection {
    fn apply(&self, value: &mut Value) {
        rep::project(value, &self.attributes, &self.excluded);
    }

    /// Is the top-level attribute `name` (lowercase) answered?
    fn wants(&self, name: &str) -> bool {
        let excluded = self.excluded.iter().any(|e| e == name);
        let chosen = self.attributes.is_empty()
            || self
                .attributes
                .iter()
                .any(|a| a == name || a.starts_with(&format!("{name}.")));
        chosen && !excluded
    }
}

/// The most attribute names `attributes` or `excludedAttributes` may list: more than every
/// published attribute and sub-attribute, and a bound on the work of answering.
const MAX_ATTRIBUTE_NAMES: usize = 64;

fn bounded(names: Vec<String>, key: &str) -> Result<Vec<String>, ScimError> {
    if names.len() > MAX_ATTRIBUTE_NAMES {
        return Err(ScimError::new(
            400,
            Some(ScimType::TooMany),
            format!("{key}: {} names; at most {MAX_ATTRIBUTE_NAMES}", names.len()),
        ));
    }
    Ok(names)
}

/// The query string's parameters (RFC 7644 3.4.2).
fn query_params(raw: Option<&str>) -> Result<(ListRequest, Projection), ScimError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or_default())
        .map_err(|e| ScimError::invalid_syntax(format!("the query string cannot be read: {e}")))?;
    let mut list = ListRequest::default();
    let mut projection = Projection::default();
    let number = |name: &str, text: &str| {
        text.trim()
            .parse::<i64>()
            .map_err(|_| ScimError::invalid_value(format!("{name}: '{text}' is not an integer")))
    };
    let params: HashMap<String, String> = pairs.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
    for (key, value) in &params {
        match key.as_str() {
            "filter" => list.filter = Some(value.clone()),
            "startindex" => list.start_index = Some(number("startIndex", value)?),
            "count" => list.count = Some(number("count", value)?),
            "attributes" => projection.attributes = bounded(attribute_list(value), "attributes")?,
            "excludedattributes" => projection.excluded = bounded(attribute_list(value), "excludedAttributes")?,
            "sortby" | "sortorder" => {}
            _ => {}
        }
    }
    Ok((list, projection))
}

/// A `.search` body (RFC 7644 3.4.3).
fn search_params(body: &Value) -> Result<(ListRequest, Projection), ScimError> {
    let object = body
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("a SearchRequest is a JSON object"))?;
    let get = |key: &str| object.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v);
    let text_list = |key: &str| -> Result<Vec<String>, ScimError> {
        match get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(String::from)
                        .ok_or_else(|| ScimError::invalid_value(format!("{key}: a list of attribute names")))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|names| attribute_list(&names.join(","))),
            Some(Value::String(s)) => Ok(attribute_list(s)),
            Some(_) => Err(ScimError::invalid_value(format!("{key}: a list of attribute names"))),
        }
    };
    let number = |key: &str| -> Result<Option<i64>, ScimError> {
        match get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| ScimError::invalid_value(format!("{key}: an integer"))),
        }
    };
    let filter = match get("filter") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ScimError::invalid_filter("filter: a string")),
    };
    Ok((
        ListRequest {
            filter,
            start_index: number("startIndex")?,
            count: number("count")?,
        },
        Projection {
            attributes: bounded(text_list("attributes")?, "attributes")?,
            excluded: bounded(text_list("excludedAttributes")?, "excludedAttributes")?,
        },
    ))
}

fn list_response(total: u64, start: u64, resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_RESPONSE],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

#[utoipa::path(get, path = "/scim/v2/ServiceProviderConfig", responses((status = 200, description = "what this provider supports: patch, filter (maxResults 200), ETags; not bulk, sort or changePassword", content_type = "application/scim+json", body = ScimDocument), (status = 401, description = "no SCIM provisioning token (API tokens, OpenID tokens and sessions are refused here)", content_type = "application/scim+json", body = ScimErrorBody)), security(("scim" = [])), tag = "scim")]
pub async fn service_provider_config(State(edge): State<Edge>, _client: Provisioner) -> ScimReply {
    ScimReply::ok(schema::service_provider_config(&base(&edge), DOCUMENTATION))
}

#[utoipa::path(get, path = "/scim/v2/ResourceTypes", responses((status = 200, description = "a ListResponse of the User and Group resource types", content_type = "application/scim+json", body = ScimDocument), (status = 401, description = "no SCIM provisioning token (API tokens, OpenID tokens and sessions are refused here)", content_type = "application/scim+json", body = ScimErrorBody)), security(("scim" = [])), tag = "scim")]
pub async fn resource_types(State(edge): State<Edge>, _client: Provisioner) -> ScimReply {
    let all = schema::resource_types(&base(&edge));
    ScimReply::ok(list_response(all.len() as u64, 1, all))
}

#[utoipa::path(get, path = "/scim/v2/ResourceTypes/{id}", params(("id" = String, Path)), responses((status = 200, description = "the resource type", content_type = "application/scim+json", body = ScimDocument), (status = 404, description = "neither User nor Group", content_type = "application/scim+json", body = ScimErrorBody), (status = 401, description = "no SCIM provisioning token (API tokens, OpenID tokens and sessions are refused here)", content_type = "application/scim+json", body = ScimErrorBody)), security(("scim" = [])), tag = "scim")]
pub async fn resource_type(
    State(edge): State<Edge>,
    _client: Provisioner,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Answer {
    schema::resource_types(&base(&edge))
        .into_iter()
        .find(|t| t["id"].as_str().is_some_and(|t| t.eq_ignore_ascii_case(&id)))
        .map(ScimReply::ok)
        .ok_or_else(|| ScimError::not_found(format!("no resource type {id}; there are User and Group")).into())
}

#[utoipa::path(get, path = "/scim/v2/Schemas", responses((status = 200, description = "a ListResponse of the User, EnterpriseUser and Group schemas", content_type = "application/scim+json", body = ScimDocument), (status = 401, description = "no SCIM provisioning token (API tokens, OpenID tokens and sessions are refused here)", content_type = "application/scim+json", body = ScimErrorBody)), security(("scim" = [])), tag = "scim")]
pub async fn schemas(State(edge): State<Edge>, _client: Provisioner) -> ScimReply {
    let all = schema::schemas(&base(&edge));
    ScimReply::ok(list_response(all.len() as u64, 1, all))
}

#[utoipa::path(get, path = "/scim/v2/Schemas/{id}", params(("id" = String, Path)), responses((status = 200, description = "the schema", content_type = "application/scim+json", body = ScimDocument), (status = 404, description = "no such schema", content_type = "application/scim+json", body = ScimErrorBody), (status = 401, description = "no SCIM provisioning token (API tokens, OpenID tokens and sessions are refused here)", content_type = "application/scim+json", body = ScimErrorBody)), security(("scim" = [])), tag = "scim")]
pub async fn one_schema(
    State(edge): State<Edge>,
    _client: Provisioner,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Answer {
    schema::schema(&base(&edge), &id)
        .map(ScimReply::ok)
        .ok_or_else(|| ScimError::not_found(format!("no schema {id}")).into())
}

/// A user as answered: with their groups when those are asked for.
async fn user_view(edge: &Edge, user: &ScimUser, projection: &Projection) -> Result<Value, ScimRefusal> {
    let groups = if projection.wants("groups") {
        service::groups_of(&edge.app, &user.id).await?
    } else {
        Vec::new()
    };
    Ok(user_with(edge, user, &groups, projection))
}

fn user_with(edge: &Edge, user: &ScimUser, groups: &[(String, String)], projection: &Projection) -> Value {
    let mut view = rep::user_json(user, groups, &base(edge));
    projection.apply(&mut view);
    view
}

/// Users as answered in a list, their groups read together.
async fn user_views(edge: &Edge, users: &[ScimUser], projection: &Projection) -> Result<Vec<Value>, ScimRefusal> {
    let groups = if projection.wants("groups") {
        let ids: Vec<&str> = users.iter().map(|u| u.id.as_str()).collect();
        service::groups_of_each(&edge.app, &ids).await?
    } else {
        vec![Vec::new(); users.len()]
    };
    Ok(users
        .iter()
        .zip(&groups)
        .map(|(user, groups)| user_with(edge, user, groups, projection))
        .collect())
}

fn group_view(edge: &Edge, group: &ScimGroup, projection: &Projection) -> Value {
    let mut view = rep::group_json(group, &base(edge), projection.wants("members"));
    projection.apply(&mut view);
    view
}

async fn list_users_with(edge: &Edge, list: ListRequest, projection: Projection) -> Answer {
    let (page, start) = service::list_users(&edge.app, &list).await?;
    let resources = user_views(edge, &page.items, &projection).await?;
    Ok(ScimReply::ok(list_response(page.total, start, resources)))
}

/// POST /.search at the root (RFC 7644 3.4.3): users, then groups, as one list. A filter
/// only one of them can answer (`userName eq`) searches that one.
#[utoipa::path(post, path = "/scim/v2/.search", request_body(content = ScimDocument, content_type = "application/scim+json"), responses((status = 200, description = "a ListResponse of users then groups", content_type = "application/scim+json", body = ScimDocument), (status = 400, description = "a filter neither supports, or a SearchRequest that is not one", content_type = "application/scim+json", body = ScimErrorBody), (status = 401, description = "no SCIM provisioning token (API tokens, OpenID tokens and sessions are refused here)", content_type = "application/scim+json", body = ScimErrorBody), (status = 413, description = "the body is larger than 2 MiB (tooLarge)", content_type = "application/scim+json", body = ScimErrorBody), (status = 415, description = "a body sent as anything but application/scim+json or application/json", content_type = "application/scim+json", body = ScimErrorBody)), security(("scim" = [])), tag = "scim")]
pub async fn search_all(State(edge): State<Edge>, _client: Provisioner, ScimBody(body): ScimBody) -> Answer {
    let (list, projection) = search_params(&body)?;
    let start = list.start_index.unwrap_or(1).max(1);
    let count = list
        .count
        .unwrap_or(schema::DEFAULT_COUNT as i64)
        .clamp(0, schema::MAX_RESULTS as i64);
    let users = service::list_users(
        &edge.app,
        &ListRequest {
            start_index: Some(start),
            count: Some(count),
            ..list.clone()
        },
    )
    .await;
    let user_total = users.as_ref().map_or(0, |(page, _)| page.total as i64);
    let mut resources: Vec<Value> = Vec::new();
    if let Ok((page, _)) = &users {
        resources = user_views(&edge, &page.items, &projection).await?;
    }
    let remaining = count - resources.len() as i64;
    let groups = service::list_groups(
        &edge.app,
        &ListRequest {
            start_index: Some((start - user_total).max(1)),
            count: Some(if start + resources.len() as i64 > user_total {
                remaining
            } else {
                0
            }),
            ..list.clone()
        },
        projection.wants("members"),
    )
    .await;
    let group_total = groups.as_ref().map_or(0, |(page, _)| page.total);
    if let Ok((page, _)) = &groups {
        resources.extend(page.items.iter().map(|g| group_view(&edge, g, &projection)));
    }
    // A filter only one type can answer skips the other; any other failure is the answer.
    let only_filter = |e: &ScimFailure| e.error().scim_type == Some(ScimType::InvalidFilter);
    match (&users, &groups) {
        (Err(e), Err(_)) => return Err(ScimRefusal(e.error())),
        (Err(e), _) | (_, Err(e)) if !only_filter(e) => return Err(ScimRefusal(e.error())),
        _ => {}
    }
    Ok(ScimReply::ok(list_response(
        user_total as u64 + group_total,
        start as u64,
        resources,
    )))
}

#[utoipa::path(get, path = "/scim/v2/Users", params(ScimListQuery), responses((status = 200, description = "a ListResponse of users", content_type = "application/scim+json", body = ScimDocument), (status = 400, description = "invalidFilter, or a parameter that is not a number", content_type = "application/scim+json", body = ScimErrorBody), (status = 401, description = "no SCIM provisioning token (API tokens, OpenID tokens and sessions are refused here)", content_type = "application/scim+json", body = ScimErrorBody)), security(("scim" = [])), tag = "scim")]
pub async fn list_users(State(edge): State<Edge>, _client: Provisioner, RawQuery(raw): RawQuery) -> Answer {
    let (list, projection) = query_params(raw.as_deref())?;
    list_users_with(&edge, list, projection).await
}

#[utoipa::path(post, path = "/scim/v2/Users/.search", request_body(content = ScimDocument, content_type = "application/scim+json"), responses((status = 200, description = "a ListResponse of users", content_type = "application/scim+json", body = ScimDocument), (status = 400, description = "invalidFilter or invalidSyntax", content_type = "application/scim+json", body = ScimErrorBody), (status = 401, description = "no SCIM provisioning token (API tokens, OpenID tokens and sessions are refused here)", content_type = "application/scim+json", body = ScimErrorBody), (status = 413, description = "the body is larger than 2 MiB (tooLarge)", content_type = "application/scim+json", body = ScimErrorBody), (status = 415, description = "a body sent as anything but application/scim+json or application/json", content_type = "application/scim+json", body = ScimErrorBody)), security(("scim" = [])), tag = "scim")]
pub async fn search_users(State(edge): State<Edge>, _client: Provisioner, ScimBody(body): ScimBody) -> Answer {
    let (list, projection) = search_params(&body)?;
    list_users_with(&edge, list, projection).await
}

#[utoipa::path(get, path = "/scim/v2/Users/{id}", params(("id" = String, Path), ScimListQuery), responses((status = 200, description = "the user, with ETag", content_type = "application/scim+json", body = ScimDocument), (status = 404, description = "no such user", content_type = "application/scim+json", body = ScimErrorBody), (status = 401, description = "no SCIM provisioning token (API tokens, OpenID tokens and sessions are refused here)", content_type = "application/scim+json", body = ScimErrorBody)), security(("scim" = [])), tag = "scim")]
pub async fn get_user(
    State(edge): State<Edge>,
    _client: Provisioner,
    axum::extract::Path(id): axum::extract::Path<String>,
    RawQuery(raw): RawQuery,
) -> Answer {
    let (_, projection) = query_params(raw.as_deref())?;
    let user = service::user(&edge.app, &id).await?;
    Ok(ScimReply::resource(
        StatusCode::OK,
        user_view(&edge, &user, &projection).await?,
    ))
}

#[utoipa::path(post, path = "/scim/v2/Users", params(ScimListQuery), request_body(content = ScimDocument, content_type = "application/scim+json"), responses((status = 201, description = "the user as created, with Location and ETag", content_type = "application/scim+json", body = ScimDocument), (status = 400, description = "invalidValue (a userName that cannot name a principal, say) or invalidSyntax", content_type = "application/scim+json", body = ScimErrorBody), (status = 409, description = "uniqueness: the userName, or the principal, is taken", content_type = "application/scim+json", body = ScimErrorBody), (status = 401, description = "no SCIM provisioning token (API tokens, OpenID tokens and sessions are refused here)", content_type = "application/scim+json", body = ScimErrorBody), (status = 413, description = "the body is larger than 2 MiB (tooLarge)", content_type = "application/scim+json", body = ScimErrorBody), (status = 415, description = "a body sent as anything but application/scim+json or application/json", content_type = "application/scim+json", body = ScimErrorBody)), security(("scim" = [])), tag = "scim")]
pub async fn create_user(
    State(edge): State<Edge>,
    Provisioner(client): Provisioner,
    RawQuery(raw): RawQuery,
    ScimBody(body): ScimBody,
) -> Answer {
    let (_, projection) = query_params(raw.as_deref())?;
    let user = service::create_user(&edge.app, &client, &body).await?;
    Ok(ScimReply::resource(
        StatusCode::CREATED,
        user_view(&edge, &user, &projection).await?,
    ))
}

#[utoipa::path(put, path = "/scim/v2/Users/{id}", params(("id" = String, Path), ScimListQuery, ("If-Match" = Option<String>, Header, description = "the ETag the client last saw; another version is 412")), request_body(content = ScimDocument, content_type = "application/scim+json"), responses((status = 200, description = "the user as replaced, with ETag", content_type = "application/scim+json", body = ScimDocument), (status = 400, description = "invalidValue or invalidSyntax", content_type = "application/scim+json", body = ScimErrorBody), (status = 404, description = "no such user", content_type = "application/scim+json", body = ScimErrorBody), (status = 409, description = "uniqueness", content_type = "application/scim+json", body = ScimErrorBody), (status = 412, description = "If-Match names another version", content_type = "application/scim+json", body = ScimErrorBody), (status = 401, description = "no SCIM provisioning token (API tokens, OpenID tokens and sessions are refused here)", content_type = "application/scim+json", body = ScimErrorBody), (status = 413, description = "the body is larger than 2 MiB (tooLarge)", content_type = "application/scim+json", body = ScimErrorBody), (status = 415, description = "a body sent as anything but application/scim+json or application/json", content_type = "application/scim+json", body = ScimErrorBody)), security(("scim" = [])), tag = "scim")]
pub async fn replace_user(
    State(edge): State<Edge>,
    Provisioner(client): Provisioner,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    ScimBody(body): ScimBody,
) -> Answer {
    let (_, projection) = query_params(raw.as_deref())?;
    let user = service::replace_user(&edge.app, &client, &id, &body, if_match(&headers).as_deref()).await?;
    Ok(ScimReply::resource(
        StatusCode::OK,
        user_view(&edge, &user, &projection).await?,
    ))
}

#[utoipa::path(patch, path = "/scim/v2/Users/{id}", params(("id" = String, Path), ScimListQuery, ("If-Match" = Option<String>, Header, description = "the ETag the client last saw; another version is 412")), request_body(content = ScimDocument, content_type = "application/scim+json"), responses((status = 200, description = "the user as patched, with ETag", content_type = "application/scim+json", body = ScimDocument), (status = 400, description = "invalidValue, invalidPath, invalidFilter, noTarget, mutability, invalidSyntax or tooMany", content_type = "application/scim+json", body = ScimErrorBody), (status = 404, description = "no such user", content_type = "application/scim+json", body = ScimErrorBody), (status = 409, description = "uniqueness", content_type = "application/scim+json", body = ScimErrorBody), (status = 412, description = "If-Match names another version", content_type = "application/scim+json", body = ScimErrorBody), (status = 401, description = "no SCIM provisioning token (API tokens, OpenID tokens and sessions are refused here)", content_type = "application/scim+json", body = ScimErrorBody), (status = 413, description = "the body is larger than 2 MiB (tooLarge)", content_type = "application/scim+json", body = ScimErrorBody), (status = 415, description = "a body sent as anything but application/scim+json or application/json", content_type = "application/scim+json", body = ScimErrorBody)), security(("scim" = [])), tag = "scim")]
pub async fn patch_user(
    State(edge): State<Edge>,
    Provisioner(client): Provisioner,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    ScimBody(body): ScimBody,
) -> Answer {
    let (_, projection) = query_params(raw.as_deref())?;
    let user = service::patch_user(&edge.app, &client, &id, &body, if_match(&headers).as_deref()).await?;
    Ok(ScimReply::resource(
        StatusCode::OK,
        user_view(&edge, &user, &projection).await?,
    ))
}

#[utoipa::path(delete, path = "/scim/v2/Users/{id}", params(("id" = String, Path), ("If-Match" = Option<String>, Header, description = "the ETag the client last saw; another version is 412")), responses((status = 204, description = "deleted: every grant, pending request, approval and token of the user ended with it"), (status = 404, description = "no such user", content_type = "application/scim+json", body = ScimErrorBody), (status = 412, description = "If-Match names another version", content_type = "application/scim+json", body = ScimErrorBody), (status = 401, description = "no SCIM provisioning token (API tokens, OpenID tokens and sessions are refused here)", content_type = "application/scim+json", body = ScimErrorBody)), security(("scim" = [])), tag = "scim")]
pub async fn delete_user(
    State(edge): State<Edge>,
    Provisioner(client): Provisioner,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Answer {
    service::delete_user(&edge.app, &client, &id, if_match(&headers).as_deref()).await?;
    Ok(ScimReply::no_content())
}

async fn list_groups_with(edge: &Edge, list: ListRequest, projection: Projection) -> Answer {
    let (page, start) = service::list_groups(&edge.app, &list, projection.wants("members")).await?;
    let resources = page.items.iter().map(|g| group_view(edge, g, &projection)).collect();
    Ok(ScimReply::ok(list_response(page.total, start, resources)))
}

#[utoipa::path(get, path = "/scim/v2/Groups", params(ScimListQuery), responses((status = 200, description = "a ListResponse of groups", content_type = "application/scim+json", body = ScimDocument), (status = 400, description = "invalidFilter, or a parameter that is not a number", content_type = "application/scim+json", body = ScimErrorBody), (status = 401, description = "no SCIM provisioning token (API tokens, OpenID tokens and sessions are refused here)", content_type = "application/scim+json", body = ScimErrorBody)), security(("scim" = [])), tag = "scim")]
pub async fn list_groups(State(edge): State<Edge>, _client: Provisioner, RawQuery(raw): RawQuery) -> Answer {
    let (list, projection) = query_params(raw.as_deref())?;
    list_groups_with(&edge, list, projection).await
}

#[utoipa::path(post, path = "/scim/v2/Groups/.search", request_body(content = ScimDocument, content_type = "application/scim+json"), responses((status = 200, description = "a ListResponse of groups", content_type = "application/scim+json", body = ScimDocument), (status = 400, description = "invalidFilter or invalidSyntax", content_type = "application/scim+json", body = ScimErrorBody), (status = 401, description = "no SCIM provisioning token (API tokens, OpenID tokens and sessions are refused here)", content_type = "application/scim+json", body = ScimErrorBody), (status = 413, description = "the body is larger than 2 MiB (tooLarge)", content_type = "application/scim+json", body = ScimErrorBody), (status = 415, description = "a body sent as anything but application/scim+json or application/json", content_type = "application/scim+json", body = ScimErrorBody)), security(("scim" = [])), tag = "scim")]
pub async fn search_groups(State(edge): State<Edge>, _client: Provisioner, ScimBody(body): ScimBody) -> Answer {
    let (list, projection) = search_params(&body)?;
    list_groups_with(&edge, list, projection).await
}

#[utoipa::path(get, path = "/scim/v2/Groups/{id}", params(("id" = String, Path), ScimListQuery), responses((status = 200, description = "the group, with ETag", content_type = "application/scim+json", body = ScimDocument), (status = 404, description = "no such group", content_type = "application/scim+json", body = ScimErrorBody), (status = 401, description = "no SCIM provisioning token (API tokens, OpenID tokens and sessions are refused here)", content_type = "application/scim+json", body = ScimErrorBody)), security(("scim" = [])), tag = "scim")]
pub async fn get_group(
    State(edge): State<Edge>,
    _client: Provisioner,
    axum::extract::Path(id): axum::extract::Path<String>,
    RawQuery(raw): RawQuery,
) -> Answer {
    let (_, projection) = query_params(raw.as_deref())?;
    let group = service::group_with(&edge.app, &id, projection.wants("members")).await?;
    Ok(ScimReply::resource(
        StatusCode::OK,
        group_view(&edge, &group, &projection),
    ))
}

#[utoipa::path(post, path = "/scim/v2/Groups", params(ScimListQuery), request_body(content = ScimDocument, content_type = "application/scim+json"), responses((status = 201, description = "the group as created, with Location and ETag", content_type = "application/scim+json", body = ScimDocument), (status = 400, description = "invalidValue (a reserved name, a member that is no user) or invalidSyntax", content_type = "application/scim+json", body = ScimErrorBody), (status = 409, description = "uniqueness: the name is taken", content_type = "application/scim+json", body = ScimErrorBody), (status = 401, description = "no SCIM provisioning token (API tokens, OpenID tokens and sessions are refused here)", content_type = "application/scim+json", body = ScimErrorBody), (status = 413, description = "the body is larger than 2 MiB (tooLarge)", content_type = "application/scim+json", body = ScimErrorBody), (status = 415, description = "a body sent as anything but application/scim+json or application/json", content_type = "application/scim+json", body = ScimErrorBody)), security(("scim" = [])), tag = "scim")]
pub async fn create_group(
    State(edge): State<Edge>,
    Provisioner(client): Provisioner,
    RawQuery(raw): RawQuery,
    ScimBody(body): ScimBody,
) -> Answer {
    let (_, projection) = query_params(raw.as_deref())?;
    let group = service::create_group(&edge.app, &client, &body).await?;
    Ok(ScimReply::resource(
        StatusCode::CREATED,
        group_view(&edge, &group, &projection),
    ))
}

#[utoipa::path(put, path = "/scim/v2/Groups/{id}", params(("id" = String, Path), ScimListQuery, ("If-Match" = Option<String>, Header, description = "the ETag the client last saw; another version is 412")), request_body(content = ScimDocument, content_type = "application/scim+json"), responses((status = 200, description = "the group as replaced", content_type = "application/scim+json", body = ScimDocument), (status = 400, description = "invalidValue or invalidSyntax", content_type = "application/scim+json", body = ScimErrorBody), (status = 404, description = "no such group", content_type = "application/scim+json", body = ScimErrorBody), (status = 409, description = "uniqueness", content_type = "application/scim+json", body = ScimErrorBody), (status = 412, description = "If-Match names another version", content_type = "application/scim+json", body = ScimErrorBody), (status = 401, description = "no SCIM provisioning token (API tokens, OpenID tokens and sessions are refused here)", content_type = "application/scim+json", body = ScimErrorBody), (status = 413, description = "the body is larger than 2 MiB (tooLarge)", content_type = "application/scim+json", body = ScimErrorBody), (status = 415, description = "a body sent as anything but application/scim+json or application/json", content_type = "application/scim+json", body = ScimErrorBody)), security(("scim" = [])), tag = "scim")]
pub async fn replace_group(
    State(edge): State<Edge>,
    Provisioner(client): Provisioner,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    ScimBody(body): ScimBody,
) -> Answer {
    let (_, projection) = query_params(raw.as_deref())?;
    let group = service::replace_group(&edge.app, &client, &id, &body, if_match(&headers).as_deref()).await?;
    Ok(ScimReply::resource(
        StatusCode::OK,
        group_view(&edge, &group, &projection),
    ))
}

#[utoipa::path(patch, path = "/scim/v2/Groups/{id}", params(("id" = String, Path), ScimListQuery, ("If-Match" = Option<String>, Header, description = "the ETag the client last saw; another version is 412")), request_body(content = ScimDocument, content_type = "application/scim+json"), responses((status = 200, description = "the group as patched", content_type = "application/scim+json", body = ScimDocument), (status = 400, description = "invalidValue, invalidPath, invalidFilter, noTarget, mutability, invalidSyntax or tooMany", content_type = "application/scim+json", body = ScimErrorBody), (status = 404, description = "no such group", content_type = "application/scim+json", body = ScimErrorBody), (status = 409, description = "uniqueness", content_type = "application/scim+json", body = ScimErrorBody), (status = 412, description = "If-Match names another version", content_type = "application/scim+json", body = ScimErrorBody), (status = 401, description = "no SCIM provisioning token (API tokens, OpenID tokens and sessions are refused here)", content_type = "application/scim+json", body = ScimErrorBody), (status = 413, description = "the body is larger than 2 MiB (tooLarge)", content_type = "application/scim+json", body = ScimErrorBody), (status = 415, description = "a body sent as anything but application/scim+json or application/json", content_type = "application/scim+json", body = ScimErrorBody)), security(("scim" = [])), tag = "scim")]
pub async fn patch_group(
    State(edge): State<Edge>,
    Provisioner(client): Provisioner,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    ScimBody(body): ScimBody,
) -> Answer {
    let (_, projection) = query_params(raw.as_deref())?;
    let group = service::patch_group(&edge.app, &client, &id, &body, if_match(&headers).as_deref()).await?;
    Ok(ScimReply::resource(
        StatusCode::OK,
        group_view(&edge, &group, &projection),
    ))
}

#[utoipa::path(delete, path = "/scim/v2/Groups/{id}", params(("id" = String, Path), ("If-Match" = Option<String>, Header, description = "the ETag the client last saw; another version is 412")), responses((status = 204, description = "deleted"), (status = 404, description = "no such group", content_type = "application/scim+json", body = ScimErrorBody), (status = 412, description = "If-Match names another version", content_type = "application/scim+json", body = ScimErrorBody), (status = 401, description = "no SCIM provisioning token (API tokens, OpenID tokens and sessions are refused here)", content_type = "application/scim+json", body = ScimErrorBody)), security(("scim" = [])), tag = "scim")]
pub async fn delete_group(
    State(edge): State<Edge>,
    Provisioner(client): Provisioner,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Answer {
    service::delete_group(&edge.app, &client, &id, if_match(&headers).as_deref()).await?;
    Ok(ScimReply::no_content())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_read_case_insensitively() {
        let (list, projection) = query_params(Some(
            "filter=userName%20eq%20%22a%22&startIndex=3&COUNT=7&excludedAttributes=members",
        ))
        .unwrap();
        assert_eq!(list.filter.as_deref(), Some("userName eq \"a\""));
        assert_eq!((list.start_index, list.count), (Some(3), Some(7)));
        assert!(!projection.wants("members"));
        assert!(projection.wants("displayname"));
        assert_eq!(
            query_params(Some("count=x")).unwrap_err().scim_type,
            Some(ScimType::InvalidValue)
        );
        let many = vec!["userName"; MAX_ATTRIBUTE_NAMES + 1].join(",");
        assert_eq!(
            query_params(Some(&format!("attributes={many}"))).unwrap_err().scim_type,
            Some(ScimType::TooMany)
        );
    }

    #[test]
    fn a_search_body_is_read() {
        let (list, projection) = search_params(&json!({
            "schemas": [schema::SEARCH_REQUEST], "filter": "displayName eq \"sre\"", "startIndex": 1, "count": 10,
            "attributes": ["displayName"],
        }))
        .unwrap();
        assert_eq!(list.filter.as_deref(), Some("displayName eq \"sre\""));
        assert!(projection.wants("displayname"));
        assert!(!projection.wants("members"));
        assert!(search_params(&json!({"filter": 1})).is_err());
        assert!(search_params(&json!([])).is_err());
    }
}
