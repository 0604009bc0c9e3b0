//! Checks on what a caller puts in a URL, before any handler or store sees it.
//!
//! Ids in paths and filters in query strings reach the stores. A NUL byte there is stored by
//! SQLite but refused by PostgreSQL with an encoding error, and other control characters end
//! up in logs and terminals. Both stores must answer the same way, so the one answer is given
//! here, for every route: 422 naming the parameter.

use crate::ApiError;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jitgate_core::text::{check_reviewed, Lines};

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The parameter a path segment stands for: `/v1/requests/{id}/approve` and
/// `/ui/requests/{id}` put an id after the collection's name; below `/v1/forward-auth/` every
/// segment is the proxied request's path (Envoy's `path_prefix`).
fn path_segment_name(path: &str, index: usize) -> &'static str {
    if index == 2 && !path.starts_with("/v1/forward-auth/") {
        "id"
    } else {
        "path"
    }
}

pub(crate) fn check_uri(uri: &axum::http::Uri) -> Result<(), ApiError> {
    check_path(uri)?;
    check_query(uri)
}

/// The request line itself cannot carry a control byte (the HTTP parser refuses one), so
/// text of plain ASCII without a percent escape needs no decoding: the rule for every check
/// and most other calls.
fn needs_decoding(raw: &str) -> bool {
    !raw.is_ascii() || raw.contains('%')
}

/// The path's segments (ids, mostly).
fn check_path(uri: &axum::http::Uri) -> Result<(), ApiError> {
    if !needs_decoding(uri.path()) {
        return Ok(());
    }
    for (index, segment) in uri.path().split('/').skip(1).enumerate() {
        let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
        check_reviewed(path_segment_name(uri.path(), index), &decoded, Lines::One)?;
    }
    Ok(())
}

/// The query's names and values (filters, mostly).
fn check_query(uri: &axum::http::Uri) -> Result<(), ApiError> {
    if let Some(query) = uri.query().filter(|q| needs_decoding(q)) {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|e| ApiError::BadRequest(format!("query string: cannot be decoded: {e}")))?;
        for (name, value) in &pairs {
            let field = if name.chars().any(char::is_control) {
                "query parameter name"
            } else {
                name.as_str()
            };
            check_reviewed(field, name, Lines::One)?;
            check_reviewed(field, value, Lines::One)?;
        }
    }
    Ok(())
}

/// Refuse a request whose path or query holds a control character or a bidirectional
/// override, with 422 naming the parameter; otherwise run it.
pub async fn refuse_control_characters(mut request: Request, next: Next) -> Response {
    match check_uri(request.uri()) {
        Ok(()) => next.run(request).await,
        // A browser is answered with a page, by the UI's own guard (its headers, its
        // navigation); the guard runs no handler for it, so no store sees the address.
        Err(e) if request.uri().path().starts_with("/ui/") => {
            let in_path = check_path(request.uri()).is_err();
            request.extensions_mut().insert(RefusedAddress {
                why: e.to_string(),
                in_path,
            });
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}

/// Why a UI address was refused (a control or invisible character in it), and where: the UI's
/// guard answers a page, "not found" when the path is to blame (no page of ours has such an
/// address: an id with a NUL names nothing, like any id that is not ours), 422 when only the
/// query is (the page exists; a parameter given to it is refused, named, as the API does).
#[derive(Debug, Clone)]
pub struct RefusedAddress {
    pub why: String,
    pub in_path: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(uri: &str) -> String {
        let uri: axum::http::Uri = uri.parse().unwrap();
        check_uri(&uri).unwrap_err().to_string()
    }

    #[test]
    fn nul_bytes_and_controls_in_ids_and_filters_are_named() {
        assert!(refused("/v1/requests/req_1%00x").starts_with("id: contains a NUL byte"));
        assert!(refused("/v1/grants/grt%0D/revoke").starts_with("id: contains a carriage return"));
        // Below forward auth's prefix the segments are the proxied request's path, not an id.
        assert!(refused("/v1/forward-auth/a%00b").starts_with("path: contains a NUL byte"));
        assert!(refused("/v1/forward-auth/x/a%01").starts_with("path: contains"));
        assert!(refused("/v1/audit?principal=al%00ice").starts_with("principal: contains a NUL byte"));
        assert!(refused("/v1/requests?before=%00").starts_with("before: "));
        assert!(refused("/v1/audit?request_id=%E2%80%AEx").starts_with("request_id: contains U+202E"));
        assert!(refused("/v1/audit?a%00b=1").starts_with("query parameter name: "));
        // Where the character is: the path's check alone tells the two apart.
        let in_path: axum::http::Uri = "/ui/requests/req_1%00?q=x".parse().unwrap();
        let in_query: axum::http::Uri = "/ui/new?again=req_1%00".parse().unwrap();
        assert!(check_path(&in_path).is_err() && check_path(&in_query).is_ok());
        assert!(check_query(&in_query).is_err() && check_query(&in_path).is_ok());
    }

    #[test]
    fn ordinary_urls_pass() {
        for uri in [
            "/v1/requests/req_0193abc/approve",
            "/v1/audit?principal=alice&since=2026-01-01T00:00:00Z",
            "/ui/audit?principal=al%20ice&kind=request.filed",
            "/v1/resources?q=caf%C3%A9",
        ] {
            let parsed: axum::http::Uri = uri.parse().unwrap();
            assert!(check_uri(&parsed).is_ok(), "{uri}");
        }
    }
}
