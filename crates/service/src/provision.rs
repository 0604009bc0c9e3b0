//! Providers make grants real in target systems, and end them there. The store writes what each
//! provider must be told into the outbox in the same transaction as the grant change; this
//! worker carries it out, retrying with backoff until the provider acknowledges, and alarms
//! (metric and audit event) while a deprovisioning keeps failing.
//!
//! The providers themselves (webhook, exec, PostgreSQL roles) implement
//! [`crate::connectors::Provider`] in the `jitgate-connectors` crate.

use crate::app::{now, App};
use crate::connectors::{Delivery, Provider};
use jitgate_core::audit::{EventKind, NewEvent, SYSTEM_ACTOR};
use jitgate_core::outbox::{retry_delay, OutboxItem, OutboxOperation};
use jitgate_core::{Grant, Timestamp};
use jitgate_store::StoreError;
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

/// The configured providers, by name, as the registry of `jitgate-connectors` built them.
#[derive(Default)]
pub struct Providers {
    by_name: HashMap<String, Box<dyn Provider>>,
}

impl Providers {
    /// Providers by the names workflows use (the registry has refused names given twice).
    pub fn new(providers: impl IntoIterator<Item = (String, Box<dyn Provider>)>) -> Providers {
        Providers {
            by_name: providers.into_iter().collect(),
        }
    }

    /// The provider named `name` in the server's config.
    pub fn get(&self, name: &str) -> Option<&dyn Provider> {
        self.by_name.get(name).map(|p| &**p)
    }

    /// Every provider a policy names must be configured here, and each must accept the
    /// workflows that name it. Database logins go with providers that make them: a workflow
    /// with a `postgres` section (which says which database roles its grants get) names one.
    pub fn check_policy(&self, policy: &jitgate_policy::Policy) -> Result<(), String> {
        for workflow in policy.workflows() {
            let name = format!("workflow {} {}", workflow.resource, workflow.action);
            let mut named = Vec::new();
            for provider in &workflow.providers {
                match self.get(provider) {
                    Some(p) => named.push(p),
                    None => {
                        return Err(format!(
                            "{name} names provider '{provider}', which the server's config does not declare"
                        ))
                    }
                }
            }
            for p in &named {
                p.check_workflow(workflow)?;
            }
            let makes_logins = named.iter().any(|p| p.logins().is_some());
            if workflow.postgres.is_some() && !makes_logins {
                return Err(format!(
                    "{name} has a postgres section but names no provider of kind postgres in providers"
                ));
            }
        }
        Ok(())
    }

    /// The longest a delivery to `name` may take (zero for an unknown provider, whose
    /// delivery fails at once).
    fn timeout(&self, name: &str) -> Duration {
        self.get(name).map_or(Duration::ZERO, Provider::timeout)
    }

    async fn deliver(&self, delivery: &Delivery<'_>) -> Result<(), String> {
        let provider = self
            .get(&delivery.item.provider)
            .ok_or_else(|| format!("provider '{}' is not configured", delivery.item.provider))?;
        provider.deliver(delivery).await
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
    let workflow = policy.rules().workflow(&grant.resource, &grant.action).ok();
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
        providers
            .deliver(&Delivery {
                item,
                grant,
                workflow,
                at,
            })
            .await
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
    let mut outage = crate::outage::Outage::default();
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
                Ok(due) => {
                    outage.ended("reading the outbox again");
                    due
                }
                Err(e) => {
                    outage.failed(&e, "cannot read the outbox; retrying");
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
