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
            "attributes" => projection.attributes = attribute_list(value),
            "excludedattributes" => projection.excluded = attribute_list(value),
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
            attributes: text_list("attributes")?,
            excluded: text_list("excludedAttributes")?,
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

async fn service_provider_config(State(edge): State<Edge>, _client: Provisioner) -> ScimReply {
    ScimReply::ok(schema::service_provider_config(&base(&edge), DOCUMENTATION))
}

async fn resource_types(State(edge): State<Edge>, _client: Provisioner) -> ScimReply {
    let all = schema::resource_types(&base(&edge));
    ScimReply::ok(list_response(all.len() as u64, 1, all))
}

async fn resource_type(
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

async fn schemas(State(edge): State<Edge>, _client: Provisioner) -> ScimReply {
    let all = schema::schemas(&base(&edge));
    ScimReply::ok(list_response(all.len() as u64, 1, all))
}

async fn one_schema(
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
    let mut view = rep::user_json(user, &groups, &base(edge));
    projection.apply(&mut view);
    Ok(view)
}

fn group_view(edge: &Edge, group: &ScimGroup, projection: &Projection) -> Value {
    let mut view = rep::group_json(group, &base(edge), projection.wants("members"));
    projection.apply(&mut view);
    view
}

async fn list_users_with(edge: &Edge, list: ListRequest, projection: Projection) -> Answer {
    let (page, start) = service::list_users(&edge.app, &list).await?;
    let mut resources = Vec::with_capacity(page.items.len());
    for user in &page.items {
        resources.push(user_view(edge, user, &projection).await?);
    }
    Ok(ScimReply::ok(list_response(page.total, start, resources)))
}

/// POST /.search at the root (RFC 7644 3.4.3): users, then groups, as one list. A filter
/// only one of them can answer (`userName eq`) searches that one.
async fn search_all(State(edge): State<Edge>, _client: Provisioner, ScimBody(body): ScimBody) -> Answer {
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
    let mut resources = Vec::new();
    if let Ok((page, _)) = &users {
        for user in &page.items {
            resources.push(user_view(&edge, user, &projection).await?);
        }
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
    if let (Err(e), Err(_)) = (&users, &groups) {
        return Err(ScimRefusal(e.error()));
    }
    Ok(ScimReply::ok(list_response(
        user_total as u64 + group_total,
        start as u64,
        resources,
    )))
}

async fn list_users(State(edge): State<Edge>, _client: Provisioner, RawQuery(raw): RawQuery) -> Answer {
    let (list, projection) = query_params(raw.as_deref())?;
    list_users_with(&edge, list, projection).await
}

async fn search_users(State(edge): State<Edge>, _client: Provisioner, ScimBody(body): ScimBody) -> Answer {
    let (list, projection) = search_params(&body)?;
    list_users_with(&edge, list, projection).await
}

async fn get_user(
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

async fn create_user(
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

async fn replace_user(
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

async fn patch_user(
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

async fn delete_user(
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

async fn list_groups(State(edge): State<Edge>, _client: Provisioner, RawQuery(raw): RawQuery) -> Answer {
    let (list, projection) = query_params(raw.as_deref())?;
    list_groups_with(&edge, list, projection).await
}

async fn search_groups(State(edge): State<Edge>, _client: Provisioner, ScimBody(body): ScimBody) -> Answer {
    let (list, projection) = search_params(&body)?;
    list_groups_with(&edge, list, projection).await
}

async fn get_group(
    State(edge): State<Edge>,
    _client: Provisioner,
    axum::extract::Path(id): axum::extract::Path<String>,
    RawQuery(raw): RawQuery,
) -> Answer {
    let (_, projection) = query_params(raw.as_deref())?;
    let group = service::group(&edge.app, &id).await?;
    Ok(ScimReply::resource(
        StatusCode::OK,
        group_view(&edge, &group, &projection),
    ))
}

async fn create_group(
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

async fn replace_group(
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

async fn patch_group(
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

async fn delete_group(
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
