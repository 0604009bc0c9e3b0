//! Providers make grants real in target systems, and end them there. The store writes what each
//! provider must be told into the outbox in the same transaction as the grant change; this
//! worker carries it out, retrying with backoff until the provider acknowledges, and alarms
//! (metric and audit event) while a deprovisioning keeps failing.
//!
//! The webhook provider POSTs a JSON body signed with HMAC-SHA256:
//! `X-Jitgate-Signature: t=UNIX_SECONDS,v1=HEX(HMAC(secret, "UNIX_SECONDS." + body))`, with an
//! `Idempotency-Key` that is the same on every attempt of one delivery. The exec provider runs
//! a command with the same body on its standard input and the essentials in its environment;
//! exit status 0 acknowledges. The postgres provider makes each grant a temporary login role
//! in a PostgreSQL server (`pgrole.rs`).

use crate::app::{now, App};
use jitgate_core::audit::{EventKind, NewEvent, SYSTEM_ACTOR};
use jitgate_core::outbox::{retry_delay, OutboxItem, OutboxOperation};
use jitgate_core::{Grant, Timestamp};
use jitgate_store::StoreError;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How often the worker looks for due deliveries: well inside the 1 s deprovisioning budget.
pub const TICK: Duration = Duration::from_millis(100);
const BATCH: u32 = 1000;
/// How long a worker holds the items it took: other replicas leave them alone until then, and
/// take them over if this one dies.
const LEASE: chrono::TimeDelta = chrono::TimeDelta::seconds(60);
/// Room kept between a delivery's timeout and its lease's end (clock steps, recording).
const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// A failing deprovisioning is written to the audit log on its first failure and then every
/// this many attempts, so an outage alarms without flooding the log.
const ALARM_EVERY: u32 = 10;

/// A provider, as the server's config file declares it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The name workflows use in `providers = [...]`.
    pub name: String,
    /// `webhook`, `exec` or `postgres`.
    pub kind: String,
    /// For `webhook`: where to POST. For `postgres`: the admin connection URL
    /// (`postgres://USER:PASSWORD@HOST:PORT/DATABASE`), or better `url_env`.
    pub url: Option<String>,
    /// For `postgres`: the environment variable holding the admin connection URL.
    pub url_env: Option<String>,
    /// For `postgres`: the host and port grant holders connect to, when not the admin URL's.
    pub login_host: Option<String>,
    pub login_port: Option<u16>,
    /// For `exec`: the program and its arguments (`["/usr/local/bin/grant-hook", "--db", "app"]`).
    pub command: Option<Vec<String>>,
    /// The HMAC secret, or better `secret_env`: the environment variable holding it.
    pub secret: Option<String>,
    pub secret_env: Option<String>,
    /// How long one delivery may take.
    #[serde(default = "default_timeout")]
    pub timeout: String,
}

pub fn default_timeout() -> String {
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
    Postgres(crate::pgrole::PostgresTarget),
}

/// The configured providers.
#[derive(Default)]
pub struct Providers {
    by_name: HashMap<String, Provider>,
    http: reqwest::Client,
}

/// A setting given either in the config file (`KEY`) or by an environment variable it names
/// (`KEY_env`): exactly one of the two.
pub fn value_or_env(
    value: Option<&str>,
    var: Option<&str>,
    key: &str,
    at: &dyn Fn(&str) -> String,
) -> Result<String, String> {
    match (value, var) {
        (Some(v), None) => Ok(v.to_string()),
        (None, Some(var)) => std::env::var(var).map_err(|_| {
            format!(
                "{}: the environment variable {var} is not set",
                at(&format!("{key}_env"))
            )
        }),
        _ => Err(format!("{}: set exactly one of {key} and {key}_env", at(key))),
    }
}

/// An HMAC secret from `secret` or `secret_env`, long enough to mean something.
pub fn hmac_secret(
    secret: Option<&str>,
    secret_env: Option<&str>,
    at: &dyn Fn(&str) -> String,
) -> Result<Vec<u8>, String> {
    let secret = value_or_env(secret, secret_env, "secret", at)?;
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
                ("postgres", _, None) => Provider::Postgres(postgres_target(c, timeout, &at)?),
                ("webhook", Some(url), None) => {
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        return Err(format!("{}: '{url}' is not an http(s) URL", at("url")));
                    }
                    Provider::Webhook {
                        url: url.clone(),
                        secret: hmac_secret(c.secret.as_deref(), c.secret_env.as_deref(), &at)?,
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
                ("postgres", _, _) => {
                    return Err(format!(
                        "{}: a postgres provider takes url or url_env (and no command)",
                        at("command")
                    ))
                }
                (other, _, _) => {
                    return Err(format!(
                        "{}: '{other}' is not a provider kind; use webhook, exec or postgres",
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

    /// Every provider a policy names must be configured here, and PostgreSQL roles go with
    /// postgres providers: a workflow with a `postgres` section names one, and a workflow that
    /// names one has the section (which says which database roles its grants get).
    pub fn check_policy(&self, policy: &jitgate_policy::Policy) -> Result<(), String> {
        for workflow in policy.workflows() {
            let name = format!("workflow {} {}", workflow.resource, workflow.action);
            let mut names_postgres = false;
            for provider in &workflow.providers {
                match self.by_name.get(provider) {
                    None => {
                        return Err(format!(
                            "{name} names provider '{provider}', which the server's config does not declare"
                        ))
                    }
                    Some(Provider::Postgres(_)) => names_postgres = true,
                    Some(_) => {}
                }
            }
            match (names_postgres, workflow.postgres.is_some()) {
                (true, false) => {
                    return Err(format!(
                        "{name} names a postgres provider but has no postgres section: add postgres = {{ roles = [\"...\"] }}"
                    ))
                }
                (false, true) => {
                    return Err(format!(
                        "{name} has a postgres section but names no provider of kind postgres in providers"
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The PostgreSQL target of a provider, if it is one.
    pub fn postgres(&self, name: &str) -> Option<&crate::pgrole::PostgresTarget> {
        match self.by_name.get(name) {
            Some(Provider::Postgres(target)) => Some(target),
            _ => None,
        }
    }

    /// The longest a delivery to `name` may take (zero for an unknown provider, whose
    /// delivery fails at once).
    fn timeout(&self, name: &str) -> Duration {
        match self.by_name.get(name) {
            Some(Provider::Webhook { timeout, .. } | Provider::Exec { timeout, .. }) => *timeout,
            Some(Provider::Postgres(target)) => target.timeout(),
            None => Duration::ZERO,
        }
    }

    async fn deliver(
        &self,
        item: &OutboxItem,
        grant: &Grant,
        postgres: Option<&jitgate_policy::PostgresAccess>,
        at: Timestamp,
    ) -> Result<(), String> {
        let provider = self
            .by_name
            .get(&item.provider)
            .ok_or_else(|| format!("provider '{}' is not configured", item.provider))?;
        match provider {
            Provider::Webhook { url, secret, timeout } => {
                let body = delivery_body(item, grant, at);
                let headers = [
                    ("Idempotency-Key", item.idempotency_key(grant.extensions)),
                    ("X-Jitgate-Signature", crate::delivery::signature(secret, at, &body)?),
                ];
                // A provider's refusal is retried too: ending access must not be given up.
                crate::delivery::post_json(&self.http, url, *timeout, &headers, body)
                    .await
                    .map_err(|f| f.message().to_string())
            }
            Provider::Exec { command, timeout } => {
                run_command(command, *timeout, item, grant, delivery_body(item, grant, at)).await
            }
            Provider::Postgres(target) => match item.operation {
                OutboxOperation::Provision => {
                    let access = postgres.ok_or_else(|| {
                        format!(
                            "workflow {} {} has no postgres section naming the database roles",
                            grant.resource, grant.action
                        )
                    })?;
                    target.provision(grant, &access.roles).await
                }
                OutboxOperation::Deprovision => target.deprovision(grant).await,
            },
        }
    }
}

/// The JSON body webhook and exec providers get.
fn delivery_body(item: &OutboxItem, grant: &Grant, at: Timestamp) -> String {
    serde_json::json!({
        "delivery": item.idempotency_key(grant.extensions),
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
    .to_string()
}

/// A postgres provider's target from its config: the admin URL from `url` or `url_env`.
fn postgres_target(
    c: &ProviderConfig,
    timeout: Duration,
    at: &dyn Fn(&str) -> String,
) -> Result<crate::pgrole::PostgresTarget, String> {
    let url = value_or_env(c.url.as_deref(), c.url_env.as_deref(), "url", at)?;
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(format!(
            "{}: a postgres provider's URL starts with postgres://",
            at("url")
        ));
    }
    if c.secret.is_some() || c.secret_env.is_some() {
        return Err(format!(
            "{}: a postgres provider signs nothing; remove it",
            at("secret")
        ));
    }
    crate::pgrole::PostgresTarget::new(&url, c.login_host.as_deref(), c.login_port, timeout)
        .map_err(|e| format!("{}: {e}", at("url")))
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
        .env("JITGATE_DELIVERY", item.idempotency_key(grant.extensions))
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

/// Carry out one due item for its grant (`None`: the grant is gone). A provisioning that
/// falls due after its grant has ended is dropped: the grant's deprovisioning has been, or
/// will be, delivered instead. The delivery holds one of `slots` while it talks to the target;
/// recording its outcome does not, so deliveries never wait for the disk.
///
/// An item is delivered only if its delivery ends, timeout and all, before its lease does
/// (`lease_ends`): past that, another worker may lease it and deliver it too, or deliver the
/// grant's next item (a deprovisioning) first. One that waited too long for a slot is left to
/// fall due again when its lease runs out.
async fn carry_out(
    app: &App,
    slots: &tokio::sync::Semaphore,
    item: &OutboxItem,
    grant: Option<&Grant>,
    lease_ends: Timestamp,
) -> Result<(), StoreError> {
    let Some(grant) = grant else {
        return app.store.complete_outbox(item.id, now(), None).await;
    };
    let at = now();
    if item.operation == OutboxOperation::Provision && !grant.is_live(at) {
        return app.store.complete_outbox(item.id, at, None).await;
    }
    let policy = app.policy();
    let postgres = policy
        .rules()
        .workflow(&grant.resource, &grant.action)
        .ok()
        .and_then(|w| w.postgres.as_ref());
    let delivered = {
        let Ok(_slot) = slots.acquire().await else {
            return Ok(());
        };
        let providers = app.providers();
        let bound = chrono::TimeDelta::from_std(providers.timeout(&item.provider) + LEASE_MARGIN)
            .unwrap_or(chrono::TimeDelta::MAX);
        if now() + bound >= lease_ends {
            tracing::warn!(item = item.id, provider = %item.provider,
                "a delivery waited too long for its turn; it falls due again when its lease runs out");
            return Ok(());
        }
        providers.deliver(item, grant, postgres, at).await
    };
    match delivered {
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
                .complete_outbox(item.id, done, Some(&event(kind, item, grant, done, note)))
                .await
        }
        Err(error) => {
            app.metrics.count_outbox_failure(item.operation.as_str());
            tracing::warn!(grant = %grant.id, provider = %item.provider, operation = item.operation.as_str(),
                attempt = item.attempts + 1, %error, "provider delivery failed; will retry");
            let alarm = (item.operation == OutboxOperation::Deprovision && item.attempts.is_multiple_of(ALARM_EVERY))
                .then(|| event(EventKind::GrantDeprovisionFailed, item, grant, at, error.clone()));
            app.store
                .retry_outbox(item.id, at + retry_delay(item.attempts), &error, alarm.as_ref())
                .await
        }
    }
}

/// Leased batches being delivered at once: the next batch is leased while the last one is
/// delivered, so a burst of ends is not paced by one batch's slowest delivery.
const BATCHES_IN_FLIGHT: usize = 2;

/// Run forever: deliver what is due, every tick, and at once again while full batches come.
pub async fn run(app: Arc<App>) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut batches = tokio::task::JoinSet::new();
    // What this replica's earlier self leased and never finished is due again now, not when
    // its lease runs out.
    match app.store.release_outbox_leases(app.notifier().holder()).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(items = n, "took up deliveries an earlier run left unfinished"),
        Err(e) => tracing::warn!(error = %e, "cannot release earlier leases; they fall due when they run out"),
    }
    loop {
        interval.tick().await;
        loop {
            while batches.try_join_next().is_some() {}
            if batches.len() >= BATCHES_IN_FLIGHT {
                batches.join_next().await;
            }
            let at = now();
            let holder = app.notifier().holder();
            let due = match app.store.lease_outbox(at, holder, at + LEASE, BATCH).await {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the outbox; retrying");
                    break;
                }
            };
            let full = due.len() >= BATCH as usize;
            batches.spawn(carry_out_all(app.clone(), slots.clone(), due, at + LEASE));
            if !full {
                break;
            }
        }
    }
}

/// Deliveries in flight at once: when ten thousand grants end in the same second, their
/// deprovisioning must not wait for each other's round trips.
const CONCURRENCY: usize = 64;

/// Carry out a batch: each grant's items in order (provision before deprovision), different
/// grants concurrently, at most `CONCURRENCY` at a time. The batch's grants are read at once,
/// not one query per item.
async fn carry_out_all(app: Arc<App>, slots: Arc<tokio::sync::Semaphore>, due: Vec<OutboxItem>, lease_ends: Timestamp) {
    if due.is_empty() {
        return;
    }
    let mut ids: Vec<String> = due.iter().map(|item| item.grant_id.clone()).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut grants: HashMap<String, Grant> = match app.store.get_grants(&ids).await {
        Ok(grants) => grants.into_iter().map(|g| (g.id.clone(), g)).collect(),
        Err(e) => {
            // The items stay leased to this worker until the lease runs out, then fall due again.
            tracing::warn!(error = %e, "cannot read the grants of due deliveries; retrying");
            return;
        }
    };
    let mut by_grant: Vec<Vec<OutboxItem>> = Vec::new();
    let mut slot_of: HashMap<String, usize> = HashMap::new();
    for item in due {
        match slot_of.get(&item.grant_id) {
            Some(&n) => by_grant[n].push(item),
            None => {
                slot_of.insert(item.grant_id.clone(), by_grant.len());
                by_grant.push(vec![item]);
            }
        }
    }
    let mut running = tokio::task::JoinSet::new();
    for items in by_grant {
        let (app, slots) = (app.clone(), slots.clone());
        let grant = items.first().and_then(|item| grants.remove(&item.grant_id));
        running.spawn(async move {
            for item in &items {
                if let Err(e) = carry_out(&app, &slots, item, grant.as_ref(), lease_ends).await {
                    tracing::warn!(error = %e, item = item.id, "cannot record a provider delivery; retrying");
                }
            }
        });
    }
    while running.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Vec<ProviderConfig> {
        #[derive(Deserialize)]
        struct File {
            providers: Vec<ProviderConfig>,
        }
        toml::from_str::<File>(text)
            .map(|f| f.providers)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn refusal(text: &str) -> String {
        match Providers::new(&config(text)) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e,
        }
    }

    #[tokio::test]
    async fn postgres_providers_are_checked_and_named_by_key() {
        let ok =
            "[[providers]]\nname = \"pg\"\nkind = \"postgres\"\nurl = \"postgres://admin:pw@127.0.0.1:5432/app\"\n";
        let providers = Providers::new(&config(ok)).unwrap();
        let target = providers.postgres("pg").unwrap();
        assert_eq!(
            (target.host.as_str(), target.port, target.database.as_str()),
            ("127.0.0.1", 5432, "app")
        );
        let login = format!("{ok}login_host = \"db.example.com\"\nlogin_port = 6432\n");
        let providers = Providers::new(&config(&login)).unwrap();
        let target = providers.postgres("pg").unwrap();
        assert_eq!((target.host.as_str(), target.port), ("db.example.com", 6432));

        let cases = [
            (
                "url = \"mysql://x@h/db\"",
                "providers[0].url: a postgres provider's URL starts with postgres://",
            ),
            (
                "url = \"postgres://a@h/db\"\nurl_env = \"X\"",
                "providers[0].url: set exactly one of url and url_env",
            ),
            (
                "url_env = \"JITGATE_TEST_UNSET_VARIABLE\"",
                "providers[0].url_env: the environment variable JITGATE_TEST_UNSET_VARIABLE is not set",
            ),
            (
                "url = \"postgres://a@h/db\"\ncommand = [\"/bin/true\"]",
                "providers[0].command: a postgres provider takes url or url_env",
            ),
            (
                "url = \"postgres://a@h/db\"\nsecret = \"0123456789abcdef0\"",
                "providers[0].secret: a postgres provider signs nothing",
            ),
        ];
        for (keys, expected) in cases {
            let text = format!("[[providers]]\nname = \"pg\"\nkind = \"postgres\"\n{keys}\n");
            let error = refusal(&text);
            assert!(error.starts_with(expected), "{keys}: {error}");
        }
        let error = refusal("[[providers]]\nname = \"x\"\nkind = \"ldap\"\n");
        assert!(error.contains("use webhook, exec or postgres"), "{error}");
    }

    #[tokio::test]
    async fn postgres_sections_and_postgres_providers_go_together() {
        let providers = Providers::new(&config(
            "[[providers]]\nname = \"pg\"\nkind = \"postgres\"\nurl = \"postgres://a@h/db\"\n\
             [[providers]]\nname = \"hook\"\nkind = \"exec\"\ncommand = [\"/bin/true\"]\n",
        ))
        .unwrap();
        let directory = "[[principal]]\nname = \"alice\"\ngroups = [\"dev\"]\n";
        let policy = |extra: &str| {
            let workflows = format!(
                "[[workflow]]\nresource = \"app-db\"\naction = \"read\"\nrequesters = [\"dev\"]\nauto_approve = true\n{extra}\n"
            );
            jitgate_policy::Policy::from_texts(directory, &workflows, None, &[]).unwrap()
        };
        let with_roles = "postgres = { roles = [\"app_read\"] }";
        assert!(providers
            .check_policy(&policy(&format!("providers = [\"pg\"]\n{with_roles}")))
            .is_ok());
        let error = providers.check_policy(&policy("providers = [\"pg\"]")).unwrap_err();
        assert!(error.contains("has no postgres section"), "{error}");
        let error = providers
            .check_policy(&policy(&format!("providers = [\"hook\"]\n{with_roles}")))
            .unwrap_err();
        assert!(error.contains("names no provider of kind postgres"), "{error}");
        let error = providers.check_policy(&policy("providers = [\"nope\"]")).unwrap_err();
        assert!(error.contains("does not declare"), "{error}");
    }
}
