//! The HTTP sink: batches of JSON lines POSTed to a SIEM's collector (Splunk HEC, Elastic,
//! Datadog, Vector, ...), optionally signed and with an `Authorization` header.

use crate::config::{duration, hmac_secret, http_url, value_or_env};
use crate::delivery::{post, signature};
use crate::entry::AuditSinkEntry;
use async_trait::async_trait;
use jitgate_service::connectors::{AuditLine, AuditSink};
use jitgate_service::now;
use std::time::Duration;

struct Http {
    url: String,
    secret: Option<Vec<u8>>,
    authorization: Option<String>,
    timeout: Duration,
    batch: u32,
    http: reqwest::Client,
}

/// `kind = "http"`: `url` (or `url_env`), optionally `secret` (or `secret_env`),
/// `authorization_env`, `batch` (1 to 1000, default 100) and `timeout` (default 10s).
pub fn build(entry: &AuditSinkEntry<'_>) -> Result<Box<dyn AuditSink>, String> {
    let (c, at) = (entry.config, entry.at);
    super::refuse(c, at, &super::file_keys(c))?;
    let url = http_url(value_or_env(c.url.as_deref(), c.url_env.as_deref(), "url", at)?, at)?;
    let secret = if c.secret.is_some() || c.secret_env.is_some() {
        Some(hmac_secret(c.secret.as_deref(), c.secret_env.as_deref(), at)?)
    } else {
        None
    };
    let authorization = match &c.authorization_env {
        None => None,
        Some(var) => Some(
            std::env::var(var)
                .map_err(|_| format!("{}: the environment variable {var} is not set", at("authorization_env")))?,
        ),
    };
    let timeout = duration(&at("timeout"), c.timeout.as_deref().unwrap_or("10s"))?;
    let batch = c.batch.unwrap_or(100);
    if !(1..=1000).contains(&batch) {
        return Err(format!("{}: use 1 to 1000", at("batch")));
    }
    Ok(Box::new(Http {
        url,
        secret,
        authorization,
        timeout,
        batch,
        http: reqwest::Client::new(),
    }))
}

#[async_trait]
impl AuditSink for Http {
    fn batch(&self) -> u32 {
        self.batch
    }

    async fn ship(&self, name: &str, lines: &[AuditLine]) -> Result<(), String> {
        let mut body = String::new();
        for line in lines {
            body.push_str(&line.text);
            body.push('\n');
        }
        let first = lines.first().map_or(0, |l| l.seq);
        let last = lines.last().map_or(first, |l| l.seq);
        let mut headers = vec![("Idempotency-Key", format!("jitgate-audit-{name}-{first}-{last}"))];
        if let Some(secret) = &self.secret {
            headers.push(("X-Jitgate-Signature", signature(secret, now(), &body)?));
        }
        if let Some(value) = &self.authorization {
            headers.push(("Authorization", value.clone()));
        }
        post(
            &self.http,
            &self.url,
            self.timeout,
            "application/x-ndjson",
            &headers,
            body,
        )
        .await
        .map_err(|f| f.message().to_string())
    }
}
