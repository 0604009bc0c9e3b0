//! The webhook sink: each message as JSON, signed with HMAC like provider webhooks.

use crate::config::{hmac_secret, http_url, value_or_env};
use crate::delivery::{post_json, signature};
use crate::entry::NotifySinkEntry;
use async_trait::async_trait;
use jitgate_policy::Policy;
use jitgate_service::connectors::{Failure, Message, NotificationSink};
use jitgate_service::now;
use serde_json::{json, Value};
use std::time::Duration;

struct Webhook {
    name: String,
    url: String,
    secret: Vec<u8>,
    timeout: Duration,
    http: reqwest::Client,
}

/// `kind = "webhook"`: `url` (or `url_env`) and `secret` (or `secret_env`).
pub fn build(entry: &NotifySinkEntry<'_>) -> Result<Box<dyn NotificationSink>, String> {
    let (c, at) = (entry.config, entry.at);
    let url = http_url(value_or_env(c.url.as_deref(), c.url_env.as_deref(), "url", at)?, at)?;
    Ok(Box::new(Webhook {
        name: c.name.clone(),
        url,
        secret: hmac_secret(c.secret.as_deref(), c.secret_env.as_deref(), at)?,
        timeout: entry.timeout,
        http: entry.http.clone(),
    }))
}

#[async_trait]
impl NotificationSink for Webhook {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, message: &Message, link: &str, _policy: &Policy) -> Result<(), Failure> {
        let body = body(message, link).to_string();
        let headers = [
            ("Idempotency-Key", format!("{}:{}", self.name, message.event.seq)),
            (
                "X-Jitgate-Signature",
                signature(&self.secret, now(), &body).map_err(Failure::Retry)?,
            ),
        ];
        post_json(&self.http, &self.url, self.timeout, &headers, body).await
    }
}

fn body(message: &Message, link: &str) -> Value {
    let request = &message.request;
    let e = &message.event;
    let mut body = json!({
        "id": format!("ntf_{}", e.seq),
        "event": e.event.kind.as_str(),
        "at": e.event.at,
        "actor": e.event.actor,
        "headline": message.headline,
        "recipients": message.recipients,
        "review": message.review,
        "link": link,
        "request": {
            "id": request.id,
            "requester": request.requester,
            // The person an agent acts for (issue #24); null for people's own requests.
            "on_behalf_of": request.on_behalf_of,
            "resource": request.resource,
            "action": request.action,
            "reason": request.reason,
            "payload": request.payload,
            "payload_sha256": request.payload_sha256,
            "status": request.status_at(now()).as_str(),
            "needs": request.missing_approvals(),
        },
        "grant_id": e.event.grant_id,
    });
    // A request for several things: every item, in the fields a bot or a display reads, so
    // that what a reviewer is shown is everything that will be granted (the top-level
    // resource, action, payload and needs are the first item's, as for one item).
    if request.item_count() > 1 {
        let items: Vec<Value> = (0..request.item_count())
            .filter_map(|i| request.item_request(i).map(|item| (i, item)))
            .map(|(i, item)| {
                json!({
                    "resource": item.resource,
                    "action": item.action,
                    "payload": item.payload,
                    "action_bound": item.requirement.action_bound,
                    "needs": request.item_missing_approvals(i),
                })
            })
            .collect();
        body["request"]["items"] = Value::from(items);
    }
    body
}
