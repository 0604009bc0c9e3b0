//! Providers make grants real in target systems, and end them there. The store writes what each
//! provider must be told into the outbox in the same transaction as the grant change; this
//! worker carries it out, retrying with backoff until the provider acknowledges, and alarms
//! (metric and audit event) while a deprovisioning keeps failing.
//!
//! The webhook provider POSTs a JSON body signed with HMAC-SHA256:
//! `X-Jitgate-Signature: t=UNIX_SECONDS,v1=HEX(HMAC(secret, "UNIX_SECONDS." + body))`, with an
//! `Idempotency-Key` that is the same on every attempt of one delivery. The exec provider runs
//! a command with the same body on its standard input and the essentials in its environment;
//! exit status 0 acknowledges.

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
    /// `webhook` or `exec`.
    pub kind: String,
    /// For `webhook`: where to POST.
    pub url: Option<String>,
    /// For `exec`: the program and its arguments (`["/usr/local/bin/grant-hook", "--db", "app"]`).
    pub command: Option<Vec<String>>,
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

enum Provider {
    Webhook {
        url: String,
        secret: Vec<u8>,
        timeout: Duration,
    },
    Exec {
        command: Vec<String>,
        timeout: Duration,
    },
}

/// The configured providers.
#[derive(Default)]
pub struct Providers {
    by_name: HashMap<String, Provider>,
    http: reqwest::Client,
}

fn webhook_secret(c: &ProviderConfig, at: &dyn Fn(&str) -> String) -> Result<Vec<u8>, String> {
    let secret = match (&c.secret, &c.secret_env) {
        (Some(s), None) => s.clone(),
        (None, Some(var)) => std::env::var(var)
            .map_err(|_| format!("{}: the environment variable {var} is not set", at("secret_env")))?,
        _ => return Err(format!("{}: set exactly one of secret and secret_env", at("secret"))),
    };
    if secret.len() < 16 {
        return Err(format!("{}: use at least 16 characters", at("secret")));
    }
    Ok(secret.into_bytes())
}

impl Providers {
    pub fn new(configs: &[ProviderConfig]) -> Result<Providers, String> {
        let mut by_name = HashMap::new();
        for (n, c) in configs.iter().enumerate() {
            let at = |key: &str| format!("providers[{n}].{key}");
            let timeout = crate::auth::config::duration(&at("timeout"), &c.timeout).map_err(|e| e.0)?;
            let provider = match (c.kind.as_str(), &c.url, &c.command) {
                ("webhook", Some(url), None) => {
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        return Err(format!("{}: '{url}' is not an http(s) URL", at("url")));
                    }
                    Provider::Webhook {
                        url: url.clone(),
                        secret: webhook_secret(c, &at)?,
                        timeout,
                    }
                }
                ("exec", None, Some(command)) => {
                    if command.first().is_none_or(|program| !program.starts_with('/')) {
                        return Err(format!(
                            "{}: name the program by its absolute path, like [\"/usr/local/bin/grant-hook\"]",
                            at("command")
                        ));
                    }
                    Provider::Exec {
                        command: command.clone(),
                        timeout,
                    }
                }
                ("webhook", _, _) => return Err(format!("{}: a webhook needs url (and no command)", at("url"))),
                ("exec", _, _) => {
                    return Err(format!(
                        "{}: an exec provider needs command (and no url)",
                        at("command")
                    ))
                }
                (other, _, _) => {
                    return Err(format!(
                        "{}: '{other}' is not a provider kind; use webhook or exec",
                        at("kind")
                    ))
                }
            };
            if by_name.contains_key(&c.name) {
                return Err(format!("{}: '{}' is declared twice", at("name"), c.name));
            }
            by_name.insert(c.name.clone(), provider);
        }
        Ok(Providers {
            by_name,
            http: reqwest::Client::new(),
        })
    }

    /// Every provider a policy names must be configured here.
    pub fn check_policy(&self, policy: &jitgate_policy::Policy) -> Result<(), String> {
        for workflow in policy.workflows() {
            for name in &workflow.providers {
                if !self.by_name.contains_key(name) {
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
        let provider = self
            .by_name
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
        match provider {
            Provider::Webhook { url, secret, timeout } => {
                self.post(url, secret, *timeout, &item.idempotency_key(), body, at)
                    .await
            }
            Provider::Exec { command, timeout } => run_command(command, *timeout, item, grant, body).await,
        }
    }

    async fn post(
        &self,
        url: &str,
        secret: &[u8],
        timeout: Duration,
        key: &str,
        body: String,
        at: Timestamp,
    ) -> Result<(), String> {
        let stamp = at.timestamp();
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|e| e.to_string())?;
        mac.update(format!("{stamp}.").as_bytes());
        mac.update(body.as_bytes());
        let signature = hex::encode(mac.finalize().into_bytes());
        let response = self
            .http
            .post(url)
            .timeout(timeout)
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", key)
            .header("X-Jitgate-Signature", format!("t={stamp},v1={signature}"))
            .body(body)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("{url} answered {}", response.status()))
        }
    }
}

/// Run an exec provider: the body on standard input, the essentials in the environment.
async fn run_command(
    command: &[String],
    timeout: Duration,
    item: &OutboxItem,
    grant: &Grant,
    body: String,
) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let (program, args) = command.split_first().ok_or("the command is empty")?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env("JITGATE_OPERATION", item.operation.as_str())
        .env("JITGATE_DELIVERY", item.idempotency_key())
        .env("JITGATE_GRANT_ID", &grant.id)
        .env("JITGATE_PRINCIPAL", &grant.principal)
        .env("JITGATE_RESOURCE", &grant.resource)
        .env("JITGATE_ACTION", &grant.action)
        .env("JITGATE_EXPIRES_AT", grant.expires_at.to_rfc3339())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A program that does not read its input is not an error.
        let _ = stdin.write_all(body.as_bytes()).await;
    }
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| format!("{program} took longer than {timeout:?}"))?
        .map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: String = stderr
        .trim()
        .chars()
        .rev()
        .take(300)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Err(format!("{program} exited with {}: {tail}", output.status))
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
