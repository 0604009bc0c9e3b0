//! The GitHub use cases on [`App`].

use crate::{App, ServiceError};
use serde::Serialize;

/// One webhook delivery as it arrived: the headers jitgate reads and the raw body (the
/// signature covers these exact bytes).
#[derive(Debug, Clone, Copy)]
pub struct WebhookDelivery<'a> {
    /// `X-GitHub-Event`.
    pub event: Option<&'a str>,
    /// `X-GitHub-Delivery`.
    pub delivery: Option<&'a str>,
    /// `X-Hub-Signature-256`.
    pub signature: Option<&'a str>,
    pub body: &'a [u8],
}

/// What jitgate did with a delivery, as the webhook's 200/202 answer says it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum WebhookOutcome {
    /// A deployment's request was filed (`status` as filed: pending, approved, denied).
    Filed { request_id: String, status: String },
    /// A deployment jitgate cannot file for was answered `rejected` at once.
    Rejected { request_id: String, reason: String },
    /// A `/jitgate` command was carried out or refused; the reply is queued.
    Command {
        request_id: String,
        done: bool,
        reply: String,
    },
    /// This `X-GitHub-Delivery` was handled before: nothing done again.
    Duplicate,
    /// Signed, but nothing for jitgate (another event, another action, no command).
    Ignored { why: String },
}

impl App {
    /// Handle one delivery: 401 (`Unauthenticated`) unless signed with the webhook secret,
    /// 404 (`NotFound`) when `[github]` is not configured.
    pub async fn github_webhook(&self, delivery: &WebhookDelivery<'_>) -> Result<WebhookOutcome, ServiceError> {
        let _ = delivery;
        Err(ServiceError::NotFound("GitHub is not configured ([github])".into()))
    }
}
