//! Notifications that close the loop: reviewers hear of a request that waits for them, the
//! requester of its decision, the holder that a grant ends soon or was revoked, reviewers of a
//! break-glass use. Sinks (Slack incoming webhooks with Approve and Deny buttons, a generic JSON
//! webhook signed with HMAC) implement [`crate::connectors::NotificationSink`] in the
//! `jitgate-connectors` crate; this module decides what is said to whom, and when.
//!
//! Each sink reads the audit log from its own cursor, kept in the store: the log already holds
//! every state change, committed with it, so nothing is lost and nothing needs writing twice. A
//! sink that fails is retried with backoff and does not hold the others up; a receiver that
//! refuses a message (4xx) gets the next one. Reminders are due at a time rather than caused by
//! a change, so the worker writes them into the log itself (`grant.expiring`).

use crate::app::{now, App};
use crate::connectors::{Failure, Message, NotificationSink};
use jitgate_core::audit::{EventKind, NewEvent, SYSTEM_ACTOR};
use jitgate_core::{AuditEvent, Request, RequestStatus, Step};
use jitgate_store::AuditFilter;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the worker looks for new events and due reminders.
pub const TICK: Duration = Duration::from_millis(250);
const BATCH: u32 = 100;
/// How long a replica holds a sink (renewed every tick): if it dies, another replica takes the
/// sink over after at most this long.
const SINK_LEASE: chrono::TimeDelta = chrono::TimeDelta::seconds(15);

/// The configured sinks and how messages are worded.
pub struct Notifier {
    /// This replica, as it holds sink leases.
    holder: String,
    sinks: Vec<Box<dyn NotificationSink>>,
    public_url: String,
    remind_before: chrono::TimeDelta,
}

impl Notifier {
    /// `public_url` and `remind_before` as `[notify]` gives them; `sinks` as the registry of
    /// `jitgate-connectors` built them from `[[notify.sinks]]`.
    pub fn new(
        public_url: Option<&str>,
        remind_before: Option<&str>,
        listen: std::net::SocketAddr,
        sinks: Vec<Box<dyn NotificationSink>>,
    ) -> Result<Notifier, String> {
        let remind_before = match remind_before {
            None => chrono::TimeDelta::minutes(5),
            Some(text) => jitgate_core::parse_duration(text)
                .map(|d| d.as_delta())
                .map_err(|m| format!("notify.remind_before: {m}"))?,
        };
        let public_url = public_url
            .map_or_else(|| format!("http://{listen}"), str::to_string)
            .trim_end_matches('/')
            .to_string();
        Ok(Notifier {
            holder: crate::replica::name(listen),
            sinks,
            public_url,
            remind_before,
        })
    }

    /// This replica's name, as it holds leases on background work.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Where people reach jitgate (no trailing slash).
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// Where a person opens a request.
    pub fn link(&self, request_id: &str) -> String {
        format!("{}/ui/requests/{request_id}", self.public_url)
    }
}

/// Run forever: remind holders of grants that end soon, and deliver new events to each sink.
pub async fn run(app: Arc<App>) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Per sink: failed attempts in a row, and when to try again.
    let mut backoff: HashMap<String, (u32, Instant)> = HashMap::new();
    let mut outage = crate::outage::Outage::default();
    let mut leasing = crate::outage::Outage::default();
    loop {
        interval.tick().await;
        match remind(&app).await {
            Ok(()) => outage.ended("recording reminders again"),
            Err(e) => outage.failed(&e, "cannot record reminders; retrying"),
        }
        for sink in &app.notifier().sinks {
            if backoff.get(sink.name()).is_some_and(|(_, next)| Instant::now() < *next) {
                continue;
            }
            // One replica delivers each sink; the others wait for its lease to run out.
            let at = now();
            match app
                .store
                .lease_sink(sink.name(), &app.notifier().holder, at, at + SINK_LEASE)
                .await
            {
                Ok(true) => leasing.ended("leasing notification sinks again"),
                Ok(false) => {
                    leasing.ended("leasing notification sinks again");
                    continue;
                }
                Err(e) => {
                    leasing.failed(
                        &format!("{}: {e}", sink.name()),
                        "cannot lease a notification sink; retrying",
                    );
                    continue;
                }
            }
            match deliver_new(&app, &**sink).await {
                Ok(()) => {
                    backoff.remove(sink.name());
                }
                Err(error) => {
                    let attempts = backoff.get(sink.name()).map_or(0, |(n, _)| *n) + 1;
                    let delay = jitgate_core::outbox::retry_delay(attempts)
                        .to_std()
                        .unwrap_or(Duration::from_secs(30));
                    backoff.insert(sink.name().to_string(), (attempts, Instant::now() + delay));
                    app.metrics.count_notification("failed");
                    tracing::warn!(sink = %sink.name(), attempt = attempts, %error, "notification delivery failed; will retry");
                }
            }
        }
    }
}

/// Record a `grant.expiring` event for each grant that ends within `remind_before`.
async fn remind(app: &App) -> Result<(), jitgate_store::StoreError> {
    let at = now();
    let lead = app.notifier().remind_before;
    for grant in app.store.grants_to_remind(at, lead, BATCH).await? {
        let event = NewEvent {
            kind: EventKind::GrantExpiring,
            at,
            actor: SYSTEM_ACTOR.into(),
            subject: grant.principal.clone(),
            request_id: Some(grant.request_id.clone()),
            grant_id: Some(grant.id.clone()),
            resource: grant.resource.clone(),
            action: grant.action.clone(),
            comment: Some(format!("ends at {}", grant.expires_at.to_rfc3339())),
        };
        app.store.mark_reminded(&grant.id, &event).await?;
    }
    Ok(())
}

/// Give every sink that has never run a cursor at the log's head, before the server serves:
/// a new sink tells of what happens from now on, not of the whole history, and nothing that
/// happens after the server is ready can fall before its cursor.
pub async fn start_cursors(app: &App) -> Result<(), jitgate_store::StoreError> {
    for sink in &app.notifier().sinks {
        if app.store.notification_cursor(sink.name()).await?.is_none() {
            let head = app.store.audit_head().await?;
            app.store.set_notification_cursor(sink.name(), head).await?;
        }
    }
    Ok(())
}

/// Deliver the events after the sink's cursor, moving it past each one delivered (or
/// refused for good).
async fn deliver_new(app: &App, sink: &dyn NotificationSink) -> Result<(), String> {
    let cursor = app
        .store
        .notification_cursor(sink.name())
        .await
        .map_err(|e| e.to_string())?
        .unwrap_or(0);
    let events = app
        .store
        .audit_events(&AuditFilter {
            after_seq: Some(cursor),
            limit: BATCH,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    for event in events {
        let seq = event.seq;
        if let Some(message) = message_for(app, event).await.map_err(|e| e.to_string())? {
            let link = app.notifier().link(&message.request.id);
            match sink.send(&message, &link, &app.policy()).await {
                Ok(()) => app.metrics.count_notification("sent"),
                Err(Failure::Refused(error)) => {
                    app.metrics.count_notification("refused");
                    tracing::warn!(sink = %sink.name(), seq, %error, "the receiver refused a notification; skipping it");
                }
                Err(Failure::Retry(error)) => return Err(error),
            }
        }
        app.store
            .set_notification_cursor(sink.name(), seq)
            .await
            .map_err(|e| e.to_string())?;
        // A slow batch must not outlive the lease: renew it, or stop if another replica has
        // the sink now.
        let at = now();
        let held = app
            .store
            .lease_sink(sink.name(), &app.notifier().holder, at, at + SINK_LEASE)
            .await
            .map_err(|e| e.to_string())?;
        if !held {
            return Ok(());
        }
    }
    Ok(())
}

/// Who must review a pending request now: members of the groups of its missing steps (and
/// named principals of manager steps), never the requester.
fn reviewers(app: &App, request: &Request) -> Vec<String> {
    let policy = app.policy();
    let mut people: Vec<String> = Vec::new();
    let missing = (0..request.item_count()).flat_map(|i| request.item_missing_approvals(i));
    for step in missing {
        match step.group.strip_prefix(Step::PRINCIPAL_PREFIX) {
            Some(name) => people.push(name.to_string()),
            // directory.toml's members and the identity provider's (active) members.
            None => people.extend(policy.members_of(&step.group)),
        }
    }
    // Nor the person an agent acts for: they never count as its reviewer.
    people.retain(|p| p != &request.requester && Some(p.as_str()) != request.on_behalf_of.as_deref());
    people.sort();
    people.dedup();
    people
}

/// The directory's members of `groups` (`directory.toml`'s and the provisioned ones), without
/// `requester`, sorted.
fn members_except(app: &App, groups: &[String], requester: &str) -> Vec<String> {
    let policy = app.policy();
    let mut people: Vec<String> = groups
        .iter()
        .flat_map(|g| policy.members_of(g))
        .filter(|p| p != requester)
        .collect();
    people.sort();
    people.dedup();
    people
}

/// Every item of a multi-item request, as a reviewer must see it: `read prod-db, deploy
/// prod-api (payload "..."), ...`, payloads escaped for display.
pub fn items_text(request: &Request) -> String {
    (0..request.item_count())
        .filter_map(|i| request.item_request(i))
        .map(|item| match &item.payload {
            Some(p) => format!(
                "{} {} (payload \"{}\")",
                item.action,
                item.resource,
                jitgate_core::text::escape_for_display(p)
            ),
            None => format!("{} {}", item.action, item.resource),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What, if anything, an event tells whom.
async fn message_for(app: &App, event: AuditEvent) -> Result<Option<Message>, jitgate_store::StoreError> {
    let Some(request_id) = event.event.request_id.clone() else {
        return Ok(None);
    };
    let Some(request) = app.store.get_request(&request_id).await? else {
        return Ok(None);
    };
    let e = &event.event;
    // A multi-item request is decided as a whole: a reviewer is shown every item it grants,
    // payloads included, and its further items' own filing events tell nobody anything more.
    if !request.items.is_empty()
        && matches!(e.kind, EventKind::RequestFiled | EventKind::BreakGlassRaised)
        && (e.resource != request.resource || e.action != request.action)
    {
        return Ok(None);
    }
    let what = if request.items.is_empty()
        || !matches!(
            e.kind,
            EventKind::RequestFiled
                | EventKind::RequestApproved
                | EventKind::RequestDenied
                | EventKind::RequestCancelled
                | EventKind::RequestExpired
                | EventKind::RequestEscalated
                | EventKind::BreakGlassRaised
        ) {
        format!("{} {}", e.action, e.resource)
    } else {
        items_text(&request)
    };
    // An agent's request names its person too: `claude-alice (agent for alice)`.
    let requester = jitgate_core::model::requester_text(&request.requester, request.on_behalf_of.as_deref());
    // Who hears of what happened to a request: its requester, and an agent's person (unless
    // they did it themselves).
    let owners = |actor: &str| -> Vec<String> {
        let mut to = vec![request.requester.clone()];
        if let Some(person) = request.on_behalf_of.as_ref().filter(|p| p.as_str() != actor) {
            to.push(person.clone());
        }
        to
    };
    let by = |verb: &str| match &e.comment {
        Some(c) => format!("{verb} by {}: {c}", e.actor),
        None => format!("{verb} by {}", e.actor),
    };
    let (headline, recipients, review) = match e.kind {
        // Only while it still waits: a request decided before the message went out needs no one.
        EventKind::RequestFiled if request.status_at(now()) == RequestStatus::Pending => (
            format!(
                "{requester} asks to {what} for {}: {}",
                request.duration, request.reason
            ),
            reviewers(app, &request),
            true,
        ),
        // The requester learns of decisions others made. Automatic ones (by `system`) were the
        // answer to their own filing, except expiry, which nobody answered.
        EventKind::RequestApproved
        | EventKind::RequestDenied
        | EventKind::RequestCancelled
        | EventKind::RequestExpired
            if e.actor != request.requester && (e.actor != SYSTEM_ACTOR || e.kind == EventKind::RequestExpired) =>
        {
            let verb = match e.kind {
                EventKind::RequestApproved => "approved",
                EventKind::RequestDenied => "denied",
                EventKind::RequestCancelled => "cancelled",
                _ => "expired",
            };
            // One message goes to the agent and its person alike: it names whose request it was.
            let whose = match &request.on_behalf_of {
                Some(_) => format!("The request of {requester}"),
                None => "Your request".to_string(),
            };
            let headline = if e.kind == EventKind::RequestExpired {
                format!("{whose} to {what} expired: nobody decided in time")
            } else {
                format!("{whose} to {what} was {}", by(verb))
            };
            (headline, owners(&e.actor), false)
        }
        EventKind::RequestEscalated if request.status_at(now()) == RequestStatus::Pending => {
            let groups = request
                .requirement
                .escalation
                .as_ref()
                .map(|e| e.groups.clone())
                .unwrap_or_default();
            let mut people = members_except(app, &groups, &request.requester);
            people.retain(|p| Some(p.as_str()) != request.on_behalf_of.as_deref());
            (
                format!(
                    "Nobody has decided {requester}'s request to {what} ({}): as a backup reviewer you may approve it",
                    request.reason
                ),
                people,
                true,
            )
        }
        EventKind::BreakGlassRaised => {
            // Every item's break-glass reviewers: each item was taken at once, and whoever
            // reviews any of them must hear of it.
            let mut groups: Vec<String> = Vec::new();
            for i in 0..request.item_count() {
                let Some(item) = request.item_request(i) else { continue };
                for group in item.requirement.review_groups {
                    if !groups.contains(&group) {
                        groups.push(group);
                    }
                }
            }
            let mut people = members_except(app, &groups, &request.requester);
            people.retain(|p| Some(p.as_str()) != request.on_behalf_of.as_deref());
            (
                format!(
                    "BREAK-GLASS: {requester} took {what} at once: {}. A review is due.",
                    request.reason
                ),
                people,
                false,
            )
        }
        EventKind::GrantExpiring => (
            format!(
                "Your access to {what} {}; extend it with `jitgate extend {}` if the policy allows",
                e.comment.as_deref().unwrap_or("ends soon"),
                e.grant_id.as_deref().unwrap_or("")
            ),
            vec![request.requester.clone()],
            false,
        ),
        EventKind::GrantRevoked if e.actor != request.requester => (
            format!("Your access to {what} was {}", by("revoked")),
            owners(&e.actor),
            false,
        ),
        _ => return Ok(None),
    };
    Ok(Some(Message {
        event,
        headline,
        recipients,
        request,
        review,
    }))
}
