//! The one place where errors become HTTP answers: `{"error": {"code", "message"}}`.

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jitgate_core::DomainError;
use jitgate_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Input that parsed but is not acceptable; names the field.
    #[error("{0}")]
    Invalid(String),
    /// Input that did not parse at all.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The payload hash a reviewer confirmed is not the request's: 409 `payload_mismatch`.
    #[error("{0}")]
    PayloadMismatch(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The client stopped sending its request body (`[connections] body_timeout`).
    #[error("{0}")]
    Timeout(String),
    /// 503 with `Retry-After` ([`UNAVAILABLE_RETRY_AFTER`]): a dependency cannot answer now.
    #[error("{0}")]
    Unavailable(String),
    /// A limit on what a caller controls (body size, field length, list size, rate, waiters)
    /// was exceeded. Counted in `jitgate_limits_exceeded_total{outcome=LIMIT}`.
    #[error("{1}")]
    OverLimit(Limit, String),
    /// A limit that lifts by itself with time (a principal's rate, the places among waiting
    /// callers): 429 with `Retry-After`, the whole seconds until a call may succeed (at least 1).
    #[error("{message}")]
    RetryLater {
        limit: Limit,
        message: String,
        after: std::time::Duration,
    },
    #[error("internal error")]
    Internal(String),
}

/// The error body every endpoint answers with.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `invalid_argument`, `bad_request`, `unauthenticated`,
    /// `forbidden`, `not_found`, `method_not_allowed`, `request_timeout`, `conflict`, `payload_mismatch`, `payload_too_large`,
    /// `unsupported_media_type`, `too_many_requests`, `unavailable`, `internal`.
    pub code: String,
    /// What went wrong and how to fix it.
    pub message: String,
}

pub use jitgate_service::error::{retry_after_seconds, Limit};

/// What `Retry-After` says on a 503 `unavailable`: a database failing over or a provider
/// restarting is back within seconds.
pub const UNAVAILABLE_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// Put on a response that refused a call over a limit, so that one layer counts them all.
#[derive(Debug, Clone, Copy)]
pub struct LimitHit(pub Limit);

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_argument"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::PayloadMismatch(_) => (StatusCode::CONFLICT, "payload_mismatch"),
            ApiError::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Timeout(_) => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::OverLimit(Limit::BodySize, _) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::OverLimit(Limit::FieldLength | Limit::ListSize, _) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_argument")
            }
            ApiError::OverLimit(Limit::Rate | Limit::Waiters | Limit::Pending, _) | ApiError::RetryLater { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "too_many_requests")
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match &self {
            ApiError::Internal(detail) => {
                // The detail goes to the log, never to the caller.
                tracing::error!(%detail, "internal error");
                "internal error; the server log has the details".to_string()
            }
            other => other.to_string(),
        };
        let mut response = shaped(status, code, message);
        match self {
            ApiError::OverLimit(limit, _) => {
                response.extensions_mut().insert(LimitHit(limit));
            }
            // The database or a provider away, a failover under way: short-lived, so the
            // caller is told when to look again (a write may have committed: read first).
            ApiError::Unavailable(_) => {
                response.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    retry_after_seconds(UNAVAILABLE_RETRY_AFTER).into(),
                );
            }
            ApiError::RetryLater { limit, after, .. } => {
                response.extensions_mut().insert(LimitHit(limit));
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, retry_after_seconds(after).into());
            }
            _ => {}
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<jitgate_service::ServiceError> for ApiError {
    fn from(e: jitgate_service::ServiceError) -> Self {
        use jitgate_service::ServiceError as S;
        match e {
            S::Invalid(m) => ApiError::Invalid(m.to_string()),
            S::TooLong(m) => ApiError::OverLimit(Limit::FieldLength, m.to_string()),
            S::Unauthenticated(m) => ApiError::Unauthenticated(m),
            S::Forbidden(m) => ApiError::Forbidden(m),
            S::NotFound(m) => ApiError::NotFound(m),
            S::Conflict(m) => ApiError::Conflict(m),
            S::PayloadMismatch(m) => ApiError::PayloadMismatch(m),
            S::Unavailable(m) => ApiError::Unavailable(m),
            S::OverLimit(limit, m) => ApiError::OverLimit(limit, m),
            S::RetryLater { limit, message, after } => ApiError::RetryLater { limit, message, after },
            S::Internal(m) => ApiError::Internal(m),
        }
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        jitgate_service::ServiceError::from(e).into()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        jitgate_service::ServiceError::from(e).into()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(e) => ApiError::Invalid(format!(
                "request body: {}",
                e.body_text()
                    .trim_start_matches("Failed to deserialize the JSON body into the target type: ")
            )),
            JsonRejection::JsonSyntaxError(e) => ApiError::BadRequest(format!(
                "request body is not valid JSON: {}",
                e.body_text()
                    .trim_start_matches("Failed to parse the request body as JSON: ")
            )),
            JsonRejection::MissingJsonContentType(_) => {
                ApiError::UnsupportedMediaType("send the body as JSON with Content-Type: application/json".into())
            }
            JsonRejection::BytesRejection(e) => e.into(),
            other => ApiError::BadRequest(other.body_text()),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            body_too_large()
        } else if caused_by::<crate::connections::BodyStalled>(&rejection) {
            ApiError::Timeout("the request body stopped arriving; send it whole, without pauses".into())
        } else {
            ApiError::BadRequest(format!("request body could not be read: {}", rejection.body_text()))
        }
    }
}

/// Whether `E` is somewhere in the chain of causes of `error`.
fn caused_by<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<E>() {
            return true;
        }
        cause = e.source();
    }
    false
}

fn body_too_large() -> ApiError {
    ApiError::OverLimit(
        Limit::BodySize,
        format!(
            "request body is larger than {} bytes; send less",
            crate::input::MAX_BODY_BYTES
        ),
    )
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        match rejection {
            PathRejection::FailedToDeserializePathParams(e) => ApiError::BadRequest(format!(
                "path: {}; ids are printable text",
                e.body_text().trim_start_matches("Invalid URL: ")
            )),
            other => ApiError::Internal(other.body_text()),
        }
    }
}

/// The last resort for answers no handler made: an error that is neither JSON nor a page
/// (axum's 405 for a method a route lacks, a body refused by a layer, a rejection some
/// extractor answered in plain text) is rewritten into the error shape, keeping its status
/// and headers (`Allow`, `WWW-Authenticate`). Success answers pass untouched.
pub async fn errors_in_api_shape(response: Response) -> Response {
    let status = response.status();
    if !status.is_client_error() && !status.is_server_error() {
        return response;
    }
    let already_shaped = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| {
            let v = v.as_bytes();
            // SCIM answers in its own error shape (`/scim/v2`).
            v.starts_with(b"application/json") || v.starts_with(b"text/html") || v.starts_with(b"application/scim+json")
        });
    if already_shaped {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let reshaped = match status {
        StatusCode::PAYLOAD_TOO_LARGE => body_too_large().into_response(),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed(
            "this method is not allowed here; the Allow header lists those that are (see /openapi.json)".into(),
        )
        .into_response(),
        _ => {
            let code = status
                .canonical_reason()
                .unwrap_or("error")
                .to_ascii_lowercase()
                .replace([' ', '-'], "_");
            let message = if text.is_empty() { code.replace('_', " ") } else { text };
            shaped(status, &code, message)
        }
    };
    let (new_parts, new_body) = reshaped.into_parts();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.extend(new_parts.headers);
    parts.extensions.extend(new_parts.extensions);
    Response::from_parts(parts, new_body)
}

fn shaped(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        axum::Json(ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message,
            },
        }),
    )
        .into_response()
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::Invalid(format!(
            "query string: {}",
            rejection
                .body_text()
                .trim_start_matches("Failed to deserialize query string: ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unavailable_answer_says_when_to_come_back() {
        for error in [
            ApiError::Unavailable("the database is unavailable; try again shortly".into()),
            ApiError::from(StoreError::Diverged("event 7 differs".into())),
            ApiError::from(StoreError::Unavailable("the write did not commit within 5 s".into())),
        ] {
            let response = error.into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(
                response
                    .headers()
                    .get(axum::http::header::RETRY_AFTER)
                    .map(|v| v.as_bytes()),
                Some(b"2".as_slice())
            );
        }
        let internal = ApiError::Internal("a bug".into()).into_response();
        assert!(internal.headers().get(axum::http::header::RETRY_AFTER).is_none());
    }
}
