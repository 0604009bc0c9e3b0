//! Providers make grants real in target systems, and end them there. The store writes what each
//! provider must be told into the outbox in the same transaction as the grant change; this
//! worker carries it out, retrying with backoff until the provider acknowledges, and alarms
//! (metric and audit event) while a deprovisioning keeps failing.
//!
//! The webhook provider POSTs a JSON body signed with HMAC-SHA256:
//! `X-Jitgate-Signature: t=UNIX_SECONDS,v1=HEX(HMAC(secret, "UNIX_SECONDS." + body))`, with an
//! `Idempotency-Key` that is the same on every attempt of one delivery.

use crate::app::{now, App};
use hmac::{Hmac, Mac};
use jitgate_core::audit::{EventKind, NewEvent, SYSTEM_ACTOR};
use jitgate_core::outbox::{retry_delay, OutboxItem, OutboxOperation};
use jitgate_core::{Grant, Timestamp};
use jitgate_store::StoreError;
use serde::Deserialize;
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How often the worker looks for due deliveries: well inside the 1 s deprovisioning budget.
pub const TICK: Duration = Duration::from_millis(100);
const BATCH: u32 = 100;
/// A failing deprovisioning is written to the audit log on its first failure and then every
/// this many attempts, so an outage alarms without flooding the log.
const ALARM_EVERY: u32 = 10;

/// A provider, as the server's config file declares it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The name workflows use in `providers = [...]`.
    pub name: String,
    /// `webhook`.
    pub kind: String,
    pub url: String,
    /// The HMAC secret, or better `secret_env`: the environment variable holding it.
    pub secret: Option<String>,
    pub secret_env: Option<String>,
    /// How long one delivery may take.
    #[serde(default = "default_timeout")]
    pub timeout: String,
}

fn default_timeout() -> String {
    "5s".into()
}

struct Webhook {
    url: String,
    secret: Vec<u8>,
    timeout: Duration,
}

/// The configured providers.
#[derive(Default)]
pub struct Providers {
    webhooks: HashMap<String, Webhook>,
    http: reqwest::Client,
}

impl Providers {
    pub fn new(configs: &[ProviderConfig]) -> Result<Providers, String> {
        let mut webhooks = HashMap::new();
        for (n, c) in configs.iter().enumerate() {
            let at = |key: &str| format!("providers[{n}].{key}");
            if c.kind != "webhook" {
                return Err(format!(
                    "{}: '{}' is not a provider kind; use webhook",
                    at("kind"),
                    c.kind
                ));
            }
            if !(c.url.starts_with("http://") || c.url.starts_with("https://")) {
                return Err(format!("{}: '{}' is not an http(s) URL", at("url"), c.url));
            }
            let secret = match (&c.secret, &c.secret_env) {
                (Some(s), None) => s.clone(),
                (None, Some(var)) => std::env::var(var)
                    .map_err(|_| format!("{}: the environment variable {var} is not set", at("secret_env")))?,
                _ => return Err(format!("{}: set exactly one of secret and secret_env", at("secret"))),
            };
            if secret.len() < 16 {
                return Err(format!("{}: use at least 16 characters", at("secret")));
            }
            let timeout = crate::auth::config::duration(&at("timeout"), &c.timeout).map_err(|e| e.0)?;
            if webhooks.contains_key(&c.name) {
                return Err(format!("{}: '{}' is declared twice", at("name"), c.name));
            }
            webhooks.insert(
                c.name.clone(),
                Webhook {
                    url: c.url.clone(),
                    secret: secret.into_bytes(),
                    timeout,
                },
            );
        }
        Ok(Providers {
            webhooks,
            http: reqwest::Client::new(),
        })
    }

    /// Every provider a policy names must be configured here.
    pub fn check_policy(&self, policy: &jitgate_policy::Policy) -> Result<(), String> {
        for workflow in policy.workflows() {
            for name in &workflow.providers {
                if !self.webhooks.contains_key(name) {
                    return Err(format!(
                        "workflow {} {} names provider '{name}', which the server's config does not declare",
                        workflow.resource, workflow.action
                    ));
                }
            }
        }
        Ok(())
    }

    async fn deliver(&self, item: &OutboxItem, grant: &Grant, at: Timestamp) -> Result<(), String> {
        let hook = self
            .webhooks
            .get(&item.provider)
            .ok_or_else(|| format!("provider '{}' is not configured", item.provider))?;
        let body = serde_json::json!({
            "delivery": item.idempotency_key(),
            "operation": item.operation.as_str(),
            "provider": item.provider,
            "attempt": item.attempts + 1,
            "grant": {
                "id": grant.id,
                "request_id": grant.request_id,
                "principal": grant.principal,
                "resource": grant.resource,
                "action": grant.action,
                "payload_sha256": grant.payload_sha256,
                "starts_at": grant.starts_at,
                "expires_at": grant.expires_at,
                "status": grant.status_at(at).as_str(),
            },
        })
        .to_string();
        let stamp = at.timestamp();
        let mut mac = Hmac::<Sha256>::new_from_slice(&hook.secret).map_err(|e| e.to_string())?;
        mac.update(format!("{stamp}.").as_bytes());
        mac.update(body.as_bytes());
        let signature = hex::encode(mac.finalize().into_bytes());
        let response = self
            .http
            .post(&hook.url)
            .timeout(hook.timeout)
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", item.idempotency_key())
            .header("X-Jitgate-Signature", format!("t={stamp},v1={signature}"))
            .body(body)
            .send()
            .await
            .map_err(|e| format!("{}: {e}", hook.url))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("{} answered {}", hook.url, response.status()))
        }
    }
}

fn event(kind: EventKind, item: &OutboxItem, grant: &Grant, at: Timestamp, comment: String) -> NewEvent {
    NewEvent {
        kind,
        at,
        actor: SYSTEM_ACTOR.into(),
        subject: grant.principal.clone(),
        request_id: Some(grant.request_id.clone()),
        grant_id: Some(grant.id.clone()),
        resource: grant.resource.clone(),
        action: grant.action.clone(),
        comment: Some(format!("provider {}: {comment}", item.provider)),
    }
}

/// Carry out one due item. A provisioning that falls due after its grant has ended is
/// dropped: the grant's deprovisioning has been, or will be, delivered instead.
async fn carry_out(app: &App, item: &OutboxItem) -> Result<(), StoreError> {
    let Some(grant) = app
        .store
        .get_request_by_grant(&item.grant_id)
        .await?
        .and_then(|r| r.grant)
    else {
        return app.store.complete_outbox(item.id, now(), None).await;
    };
    let at = now();
    if item.operation == OutboxOperation::Provision && !grant.is_live(at) {
        return app.store.complete_outbox(item.id, at, None).await;
    }
    match app.providers().deliver(item, &grant, at).await {
        Ok(()) => {
            let done = now();
            let kind = match item.operation {
                OutboxOperation::Provision => EventKind::GrantProvisioned,
                OutboxOperation::Deprovision => {
                    let lag = (done - item.due_at).num_milliseconds().max(0) as f64 / 1000.0;
                    app.metrics.deprovision_lag_seconds.observe(lag);
                    EventKind::GrantDeprovisioned
                }
            };
            let attempts = item.attempts + 1;
            let note = format!("delivered after {attempts} attempt(s)");
            app.store
                .complete_outbox(item.id, done, Some(&event(kind, item, &grant, done, note)))
                .await
        }
        Err(error) => {
            app.metrics.count_outbox_failure(item.operation.as_str());
            tracing::warn!(grant = %grant.id, provider = %item.provider, operation = item.operation.as_str(),
                attempt = item.attempts + 1, %error, "provider delivery failed; will retry");
            let alarm = (item.operation == OutboxOperation::Deprovision && item.attempts.is_multiple_of(ALARM_EVERY))
                .then(|| event(EventKind::GrantDeprovisionFailed, item, &grant, at, error.clone()));
            app.store
                .retry_outbox(item.id, at + retry_delay(item.attempts), &error, alarm.as_ref())
                .await
        }
    }
}

/// Run forever: deliver what is due, every tick.
pub async fn run(app: Arc<App>) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let due = match app.store.due_outbox(now(), BATCH).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the outbox; retrying");
                continue;
            }
        };
        for item in &due {
            if let Err(e) = carry_out(&app, item).await {
                tracing::warn!(error = %e, item = item.id, "cannot record a provider delivery; retrying");
            }
        }
    }
}
