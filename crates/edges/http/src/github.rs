//! GitHub's webhook deliveries (issue #26, docs/github.md): `POST /v1/github/webhook`.
//!
//! Thin: the route reads the three headers GitHub signs and routes by, and the raw body (the
//! signature covers these exact bytes, so nothing parses them first), and hands them to
//! `App::github_webhook`, which verifies the signature before reading anything. There is no
//! bearer token: GitHub's `X-Hub-Signature-256` is the authentication.

use crate::error::Limit;
use crate::ApiError;
use axum::extract::FromRequest;
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

pub use jitgate_service::github::{GithubConfig, GithubSettings};

/// `[github]` made ready at start: the settings checked (the webhook secret read from the
/// environment through `env`), the App's key file read and the REST client built. `None`
/// without the section. Every error names the key to fix.
pub fn app(
    config: Option<&GithubConfig>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<(GithubSettings, jitgate_connectors::github::GithubClient)>, String> {
    let Some(config) = config else {
        return Ok(None);
    };
    let settings = config.settings(env).map_err(|e| e.to_string())?;
    let app_id = config.app_id.ok_or_else(|| {
        "github config: github.app_id is required: the App's id, on its settings page (About: App ID)".to_string()
    })?;
    let key_file = config.private_key_file.as_ref().ok_or_else(|| {
        "github config: github.private_key_file is required: the PEM file of a private key generated in the App's settings".to_string()
    })?;
    let pem = std::fs::read(key_file)
        .map_err(|e| format!("github config: github.private_key_file {}: {e}", key_file.display()))?;
    // GitHub's API never needs a redirect followed; one would carry the token elsewhere.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("github config: cannot build the HTTP client: {e}"))?;
    let client = jitgate_connectors::github::GithubClient::new(app_id, &pem, &settings.api_url, http)
        .map_err(|e| format!("github config: {e} ({})", key_file.display()))?;
    Ok(Some((settings, client)))
}

/// The largest delivery accepted. GitHub's `deployment_protection_rule` and `issue_comment`
/// payloads are tens of KiB (a comment body is at most 65536 characters); the API's 256 KiB
/// would refuse a long comment's delivery, and more than this is no event jitgate reads.
pub const MAX_WEBHOOK_BODY_BYTES: usize = 1024 * 1024;

/// `X-GitHub-Event`: which event the payload is.
pub const EVENT_HEADER: &str = "x-github-event";
/// `X-GitHub-Delivery`: the delivery's GUID (the same on a redelivery).
pub const DELIVERY_HEADER: &str = "x-github-delivery";
/// `X-Hub-Signature-256`: `sha256=` + hex HMAC-SHA256(webhook secret, body).
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// A delivery's raw body, at most [`MAX_WEBHOOK_BODY_BYTES`] (413 otherwise).
pub struct WebhookBody(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for WebhookBody {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        axum::body::Bytes::from_request(request, state)
            .await
            .map(WebhookBody)
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::OverLimit(
                        Limit::BodySize,
                        format!(
                            "the delivery is larger than {MAX_WEBHOOK_BODY_BYTES} bytes; no event jitgate reads is"
                        ),
                    )
                } else {
                    rejection.into()
                }
            })
    }
}

/// The headers a delivery carries, as text: `None` when absent; a value that is not text is
/// kept (its bytes replaced where they are not UTF-8) so that the service refuses it naming
/// the header, rather than calling it missing. A header sent twice is refused here: which one
/// GitHub meant cannot be told.
#[derive(Debug, Default)]
pub struct DeliveryHeaders {
    pub event: Option<String>,
    pub delivery: Option<String>,
    pub signature: Option<String>,
}

impl DeliveryHeaders {
    pub fn read(headers: &HeaderMap) -> Result<Self, ApiError> {
        let one = |name: &'static str, shown: &str| -> Result<Option<String>, ApiError> {
            let mut values = headers.get_all(name).iter();
            let first = values.next();
            if values.next().is_some() {
                return Err(ApiError::BadRequest(format!(
                    "{shown} is sent more than once; GitHub sends it once"
                )));
            }
            Ok(first.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()))
        };
        Ok(DeliveryHeaders {
            event: one(EVENT_HEADER, "X-GitHub-Event")?,
            delivery: one(DELIVERY_HEADER, "X-GitHub-Delivery")?,
            signature: one(SIGNATURE_HEADER, "X-Hub-Signature-256")?,
        })
    }
}

/// What GitHub posts: an event's JSON payload (`deployment_protection_rule` with action
/// `requested`, `issue_comment` with action `created`, `ping`; any other is answered
/// `ignored`), exactly as signed. See GitHub's "Webhook events and payloads".
#[derive(ToSchema)]
#[allow(dead_code)] // A schema only: the body is read raw, as signed.
pub struct GithubWebhookPayload {
    /// `requested` (`deployment_protection_rule`), `created` (`issue_comment`)...
    pub action: Option<String>,
}

/// What jitgate did with a delivery (the body of the 200): `outcome` says which, and the
/// fields that outcome has are set.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // A schema only: the service's `WebhookOutcome` is what is sent.
pub struct GithubWebhookAnswer {
    /// `filed`: a deployment's request was filed; `rejected`: a deployment jitgate cannot
    /// file for was answered `rejected` at once; `command`: a `/jitgate` comment was carried
    /// out or refused (the reply is queued); `duplicate`: this `X-GitHub-Delivery` was
    /// handled before, nothing was done again; `ignored`: signed, but nothing for jitgate.
    #[schema(pattern = "^(filed|rejected|command|duplicate|ignored)$")]
    pub outcome: String,
    /// The deployment's request (`filed`, `rejected`, `command`).
    pub request_id: Option<String>,
    /// The request's status as filed: `pending`, `approved`, `denied` (`filed`).
    pub status: Option<String>,
    /// Why the deployment was rejected (`rejected`).
    pub reason: Option<String>,
    /// Whether the command was carried out (`command`).
    pub done: Option<bool>,
    /// The reply posted on the issue or pull request (`command`).
    pub reply: Option<String>,
    /// Why nothing was done (`ignored`).
    pub why: Option<String>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn headers_are_read_as_sent_and_a_repeated_one_is_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(EVENT_HEADER, HeaderValue::from_static("ping"));
        headers.insert(DELIVERY_HEADER, HeaderValue::from_bytes(b"72d3162e-\xff").unwrap());
        let read = DeliveryHeaders::read(&headers).unwrap();
        assert_eq!(read.event.as_deref(), Some("ping"));
        assert_eq!(
            read.delivery.as_deref(),
            Some("72d3162e-\u{fffd}"),
            "kept, for the service to refuse by name"
        );
        assert_eq!(read.signature, None);
        headers.append(EVENT_HEADER, HeaderValue::from_static("issue_comment"));
        match DeliveryHeaders::read(&headers) {
            Err(ApiError::BadRequest(why)) => assert!(why.contains("X-GitHub-Event"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
