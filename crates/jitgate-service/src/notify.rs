//! Notifications that close the loop: reviewers hear of a request that waits for them, the
//! requester of its decision, the holder that a grant ends soon or was revoked, reviewers of a
//! break-glass use. Sinks are Slack incoming webhooks (with Approve and Deny buttons) and a
//! generic JSON webhook signed with HMAC.
//!
//! Each sink reads the audit log from its own cursor, kept in the store: the log already holds
//! every state change, committed with it, so nothing is lost and nothing needs writing twice. A
//! sink that fails is retried with backoff and does not hold the others up; a receiver that
//! refuses a message (4xx) gets the next one. Reminders are due at a time rather than caused by
//! a change, so the worker writes them into the log itself (`grant.expiring`).

use crate::app::{now, App};
use crate::delivery::{post_json, signature, Failure};
use jitgate_core::audit::{EventKind, NewEvent, SYSTEM_ACTOR};
use jitgate_core::{AuditEvent, Request, RequestStatus, Step};
use jitgate_store::AuditFilter;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the worker looks for new events and due reminders.
pub const TICK: Duration = Duration::from_millis(250);
const BATCH: u32 = 100;
/// How long a replica holds a sink (renewed every tick): if it dies, another replica takes the
/// sink over after at most this long.
const SINK_LEASE: chrono::TimeDelta = chrono::TimeDelta::seconds(15);

/// The `[notify]` section of the server's config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Where people reach jitgate, for links in messages (default: the listen address).
    pub public_url: Option<String>,
    /// How long before a grant ends its holder is reminded (default 5m; grants shorter than
    /// twice this are not reminded).
    pub remind_before: Option<String>,
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    pub name: String,
    /// `slack` (an incoming webhook URL) or `webhook` (JSON, signed with HMAC).
    pub kind: String,
    pub url: Option<String>,
    pub url_env: Option<String>,
    /// For `webhook`: the HMAC secret, or the environment variable holding it.
    pub secret: Option<String>,
    pub secret_env: Option<String>,
    #[serde(default = "crate::provision::default_timeout")]
    pub timeout: String,
}

enum SinkKind {
    Slack,
    Webhook { secret: Vec<u8> },
}

struct Sink {
    name: String,
    kind: SinkKind,
    url: String,
    timeout: Duration,
}

/// The configured sinks and how messages are worded.
pub struct Notifier {
    /// This replica, as it holds sink leases.
    holder: String,
    sinks: Vec<Sink>,
    public_url: String,
    remind_before: chrono::TimeDelta,
    http: reqwest::Client,
}

impl Notifier {
    pub fn new(config: &NotifyConfig, listen: std::net::SocketAddr) -> Result<Notifier, String> {
        let mut sinks = Vec::new();
        for (n, c) in config.sinks.iter().enumerate() {
            let at = |key: &str| format!("notify.sinks[{n}].{key}");
            let url = crate::provision::value_or_env(c.url.as_deref(), c.url_env.as_deref(), "url", &at)?;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!("{}: '{url}' is not an http(s) URL", at("url")));
            }
            let kind = match c.kind.as_str() {
                "slack" => {
                    if c.secret.is_some() || c.secret_env.is_some() {
                        return Err(format!(
                            "{}: Slack webhooks are not signed by the sender; remove it",
                            at("secret")
                        ));
                    }
                    SinkKind::Slack
                }
                "webhook" => SinkKind::Webhook {
                    secret: crate::provision::hmac_secret(c.secret.as_deref(), c.secret_env.as_deref(), &at)?,
                },
                other => {
                    return Err(format!(
                        "{}: '{other}' is not a sink kind; use slack or webhook",
                        at("kind")
                    ))
                }
            };
            if sinks.iter().any(|s: &Sink| s.name == c.name) {
                return Err(format!("{}: '{}' is declared twice", at("name"), c.name));
            }
            sinks.push(Sink {
                name: c.name.clone(),
                kind,
                url,
                timeout: crate::auth::config::duration(&at("timeout"), &c.timeout).map_err(|e| e.0)?,
            });
        }
        let remind_before = match &config.remind_before {
            None => chrono::TimeDelta::minutes(5),
            Some(text) => jitgate_core::parse_duration(text)
                .map(|d| d.as_delta())
                .map_err(|m| format!("notify.remind_before: {m}"))?,
        };
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{listen}"))
            .trim_end_matches('/')
            .to_string();
        Ok(Notifier {
            holder: crate::replica::name(listen),
            sinks,
            public_url,
            remind_before,
            http: reqwest::Client::new(),
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

/// One message: what happened, to whom it matters, and the request it is about.
struct Message {
    event: AuditEvent,
    headline: String,
    recipients: Vec<String>,
    request: Request,
    /// Offer Approve and Deny.
    review: bool,
}

/// Run forever: remind holders of grants that end soon, and deliver new events to each sink.
pub async fn run(app: Arc<App>) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Per sink: failed attempts in a row, and when to try again.
    let mut backoff: HashMap<String, (u32, Instant)> = HashMap::new();
    loop {
        interval.tick().await;
        if let Err(e) = remind(&app).await {
            tracing::warn!(error = %e, "cannot record reminders; retrying");
        }
        for sink in &app.notifier().sinks {
            if backoff.get(&sink.name).is_some_and(|(_, next)| Instant::now() < *next) {
                continue;
            }
            // One replica delivers each sink; the others wait for its lease to run out.
            let at = now();
            match app
                .store
                .lease_sink(&sink.name, &app.notifier().holder, at, at + SINK_LEASE)
                .await
            {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(sink = %sink.name, error = %e, "cannot lease the sink; retrying");
                    continue;
                }
            }
            match deliver_new(&app, sink).await {
                Ok(()) => {
                    backoff.remove(&sink.name);
                }
                Err(error) => {
                    let attempts = backoff.get(&sink.name).map_or(0, |(n, _)| *n) + 1;
                    let delay = jitgate_core::outbox::retry_delay(attempts)
                        .to_std()
                        .unwrap_or(Duration::from_secs(30));
                    backoff.insert(sink.name.clone(), (attempts, Instant::now() + delay));
                    app.metrics.count_notification("failed");
                    tracing::warn!(sink = %sink.name, attempt = attempts, %error, "notification delivery failed; will retry");
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
        if app.store.notification_cursor(&sink.name).await?.is_none() {
            let head = app.store.audit_head().await?;
            app.store.set_notification_cursor(&sink.name, head).await?;
        }
    }
    Ok(())
}

/// Deliver the events after the sink's cursor, moving it past each one delivered (or
/// refused for good).
async fn deliver_new(app: &App, sink: &Sink) -> Result<(), String> {
    let cursor = app
        .store
        .notification_cursor(&sink.name)
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
            match send(app, sink, &message).await {
                Ok(()) => app.metrics.count_notification("sent"),
                Err(Failure::Refused(error)) => {
                    app.metrics.count_notification("refused");
                    tracing::warn!(sink = %sink.name, seq, %error, "the receiver refused a notification; skipping it");
                }
                Err(Failure::Retry(error)) => return Err(error),
            }
        }
        app.store
            .set_notification_cursor(&sink.name, seq)
            .await
            .map_err(|e| e.to_string())?;
        // A slow batch must not outlive the lease: renew it, or stop if another replica has
        // the sink now.
        let at = now();
        let held = app
            .store
            .lease_sink(&sink.name, &app.notifier().holder, at, at + SINK_LEASE)
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
    for step in request.missing_approvals() {
        match step.group.strip_prefix(Step::PRINCIPAL_PREFIX) {
            Some(name) => people.push(name.to_string()),
            None => people.extend(policy.rules().members_of(&step.group).map(str::to_string)),
        }
    }
    people.retain(|p| p != &request.requester);
    people.sort();
    people.dedup();
    people
}

/// The directory's members of `groups`, without `requester`, sorted.
fn members_except(app: &App, groups: &[String], requester: &str) -> Vec<String> {
    let policy = app.policy();
    let mut people: Vec<String> = groups
        .iter()
        .flat_map(|g| policy.rules().members_of(g).map(str::to_string).collect::<Vec<_>>())
        .filter(|p| p != requester)
        .collect();
    people.sort();
    people.dedup();
    people
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
    let what = format!("{} {}", e.action, e.resource);
    let by = |verb: &str| match &e.comment {
        Some(c) => format!("{verb} by {}: {c}", e.actor),
        None => format!("{verb} by {}", e.actor),
    };
    let (headline, recipients, review) = match e.kind {
        // Only while it still waits: a request decided before the message went out needs no one.
        EventKind::RequestFiled if request.status_at(now()) == RequestStatus::Pending => (
            format!(
                "{} asks to {what} for {}: {}",
                request.requester, request.duration, request.reason
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
            let headline = if e.kind == EventKind::RequestExpired {
                format!("Your request to {what} expired: nobody decided in time")
            } else {
                format!("Your request to {what} was {}", by(verb))
            };
            (headline, vec![request.requester.clone()], false)
        }
        EventKind::RequestEscalated if request.status_at(now()) == RequestStatus::Pending => {
            let groups = request
                .requirement
                .escalation
                .as_ref()
                .map(|e| e.groups.clone())
                .unwrap_or_default();
            let people = members_except(app, &groups, &request.requester);
            (
                format!(
                    "Nobody has decided {}'s request to {what} ({}): as a backup reviewer you may approve it",
                    request.requester, request.reason
                ),
                people,
                true,
            )
        }
        EventKind::BreakGlassRaised => {
            let people = members_except(app, &request.requirement.review_groups, &request.requester);
            (
                format!(
                    "BREAK-GLASS: {} took {what} at once: {}. A review is due.",
                    request.requester, request.reason
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
            vec![request.requester.clone()],
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

async fn send(app: &App, sink: &Sink, message: &Message) -> Result<(), Failure> {
    let notifier = app.notifier();
    let link = notifier.link(&message.request.id);
    let body = match &sink.kind {
        SinkKind::Slack => slack_body(app, message, &link),
        SinkKind::Webhook { .. } => webhook_body(message, &link),
    }
    .to_string();
    let mut headers = vec![("Idempotency-Key", format!("{}:{}", sink.name, message.event.seq))];
    if let SinkKind::Webhook { secret } = &sink.kind {
        headers.push((
            "X-Jitgate-Signature",
            signature(secret, now(), &body).map_err(Failure::Retry)?,
        ));
    }
    post_json(&notifier.http, &sink.url, sink.timeout, &headers, body).await
}

fn slack_body(app: &App, message: &Message, link: &str) -> Value {
    let policy = app.policy();
    let mentions: Vec<String> = message
        .recipients
        .iter()
        .map(
            |p| match policy.rules().principal(p).and_then(|e| e.slack_user.as_deref()) {
                Some(slack) => format!("<@{slack}>"),
                None => slack_escape(p),
            },
        )
        .collect();
    let request = &message.request;
    let mut text = format!("*{}*", slack_escape(&message.headline));
    if let Some(payload) = &request.payload {
        text.push_str(&format!("\n```{}```", slack_escape(payload).replace("```", "'''")));
    }
    if message.review {
        let needs: Vec<String> = request
            .missing_approvals()
            .iter()
            .map(|s| format!("{} from {}", s.approvals, s.group))
            .collect();
        text.push_str(&format!("\nneeds {}", slack_escape(&needs.join(" and "))));
    }
    if !mentions.is_empty() {
        text.push_str(&format!("\nfor {}", mentions.join(" ")));
    }
    let mut elements = Vec::new();
    if message.review {
        elements.push(
            json!({"type": "button", "action_id": "jitgate_approve", "style": "primary",
            "text": {"type": "plain_text", "text": "Approve"}, "value": request.id}),
        );
        elements.push(json!({"type": "button", "action_id": "jitgate_deny", "style": "danger",
            "text": {"type": "plain_text", "text": "Deny"}, "value": request.id}));
    }
    elements.push(json!({"type": "button", "action_id": "jitgate_open",
        "text": {"type": "plain_text", "text": "Open"}, "url": link}));
    json!({
        // The fallback (notifications, screen readers) is mrkdwn too: escaped like the blocks,
        // so a reason cannot ping `<!channel>` or dress a link up as something else.
        "text": slack_escape(&message.headline),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "actions", "block_id": format!("jitgate:{}", request.id), "elements": elements},
        ],
    })
}

fn webhook_body(message: &Message, link: &str) -> Value {
    let request = &message.request;
    let e = &message.event;
    json!({
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
            "resource": request.resource,
            "action": request.action,
            "reason": request.reason,
            "payload": request.payload,
            "status": request.status_at(now()).as_str(),
            "needs": request.missing_approvals(),
        },
        "grant_id": e.event.grant_id,
    })
}

/// Text for Slack's mrkdwn, where `<...>` is a mention, a channel ping (`<!channel>`) or a link
/// (`<https://...|label>`): Slack's three control characters escaped, as Slack documents
/// (`&` first, so nothing is escaped twice). Every text jitgate sends Slack goes through it.
pub fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
