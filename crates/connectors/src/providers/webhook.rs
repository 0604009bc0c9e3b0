//! The webhook provider: each provisioning and deprovisioning is a signed JSON POST.

use crate::config::{hmac_secret, http_url};
use crate::delivery::{post_json, signature};
use crate::entry::ProviderEntry;
use async_trait::async_trait;
use jitgate_service::connectors::{Delivery, Provider};
use std::time::Duration;

struct Webhook {
    url: String,
    secret: Vec<u8>,
    timeout: Duration,
    http: reqwest::Client,
}

/// `kind = "webhook"`: `url` and `secret` (or `secret_env`), no `command`.
pub fn build(entry: &ProviderEntry<'_>) -> Result<Box<dyn Provider>, String> {
    let (c, at) = (entry.config, entry.at);
    let (Some(url), None) = (&c.url, &c.command) else {
        return Err(format!("{}: a webhook needs url (and no command)", at("url")));
    };
    Ok(Box::new(Webhook {
        url: http_url(url.clone(), at)?,
        secret: hmac_secret(c.secret.as_deref(), c.secret_env.as_deref(), at)?,
        timeout: entry.timeout,
        http: entry.http.clone(),
    }))
}

#[async_trait]
impl Provider for Webhook {
    fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn deliver(&self, d: &Delivery<'_>) -> Result<(), String> {
        let body = super::delivery_body(d);
        let headers = [
            ("Idempotency-Key", d.item.idempotency_key(d.grant.extensions)),
            ("X-Jitgate-Signature", signature(&self.secret, d.at, &body)?),
        ];
        // A provider's refusal is retried too: ending access must not be given up.
        post_json(&self.http, &self.url, self.timeout, &headers, body)
            .await
            .map_err(|f| f.message().to_string())
    }
}
