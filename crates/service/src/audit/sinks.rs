//! Live audit sinks: every event, as it is committed, shipped to a file (rotated by size), to
//! stdout (for a log collector), or to an HTTP endpoint (a SIEM's collector: Splunk HEC, Elastic,
//! Datadog, Vector, ...) as JSON lines, in jitgate's own shape or in ECS. The kinds implement
//! [`crate::connectors::AuditSink`] in the `jitgate-connectors` crate; this module runs them.
//!
//! Each sink reads the log from its own cursor in the store, like notification sinks: nothing
//! committed is skipped, a failing sink is retried with backoff (audit events are never dropped;
//! the sink waits until its receiver takes them), and with replicas one of them holds each sink
//! at a time. Delivery is at least once: an event may be sent again after a crash or a takeover,
//! and carries `seq` to tell. A file sink reads its last line at start and skips what it already
//! holds.

use crate::app::{now, App};
use crate::audit::format::{ecs_line, event_line};
use crate::connectors::{AuditLine, AuditSink};
use jitgate_core::AuditEvent;
use jitgate_store::AuditFilter;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often an idle sink looks for new events.
const TICK: Duration = Duration::from_millis(250);
/// How long a replica holds a sink (renewed with every batch).
const LEASE: chrono::TimeDelta = chrono::TimeDelta::seconds(15);

/// How a sink writes each event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The event as `GET /v1/audit` gives it, verifiable offline.
    Json,
    /// Elastic Common Schema.
    Ecs,
}

/// A configured sink: where it ships (any [`AuditSink`] kind) and the settings every kind
/// shares.
pub struct Sink {
    pub name: String,
    format: Format,
    target: Box<dyn AuditSink>,
    from_now: bool,
}

impl Sink {
    /// A sink named `name` shipping lines in `format` to `target`, from the log's start or,
    /// with `from_now`, from its head when the sink first runs.
    pub fn new(name: String, format: Format, from_now: bool, target: Box<dyn AuditSink>) -> Sink {
        Sink {
            name,
            format,
            target,
            from_now,
        }
    }

    /// The sink's cursor and lease in the store (shared with notification sinks, so prefixed).
    pub fn key(&self) -> String {
        format!("audit:{}", self.name)
    }

    fn line(&self, event: &AuditEvent) -> String {
        match self.format {
            Format::Json => event_line(event),
            Format::Ecs => ecs_line(event),
        }
    }
}

/// Give each sink that never ran its cursor, before the server serves: the log's start, or
/// its head for `start = "now"`.
pub async fn start_cursors(app: &App, sinks: &[Arc<Sink>]) -> Result<(), jitgate_store::StoreError> {
    for sink in sinks {
        if app.store.notification_cursor(&sink.key()).await?.is_none() {
            let start = if sink.from_now {
                app.store.audit_head().await?
            } else {
                0
            };
            app.store.set_notification_cursor(&sink.key(), start).await?;
        }
    }
    Ok(())
}

/// Ship the log to one sink, forever.
pub async fn run(app: Arc<App>, sink: Arc<Sink>) {
    let mut attempts = 0u32;
    let mut next_try = Instant::now();
    loop {
        tokio::time::sleep(TICK).await;
        if Instant::now() < next_try {
            continue;
        }
        loop {
            match ship_batch(&app, &sink).await {
                Ok(Shipped::Full) => continue,
                Ok(Shipped::Rest) => {
                    attempts = 0;
                    break;
                }
                Err(error) => {
                    attempts += 1;
                    let delay = jitgate_core::outbox::retry_delay(attempts)
                        .to_std()
                        .unwrap_or(Duration::from_secs(30));
                    next_try = Instant::now() + delay;
                    tracing::warn!(sink = %sink.name, attempt = attempts, %error, "audit sink delivery failed; will retry");
                    break;
                }
            }
        }
    }
}

enum Shipped {
    /// A whole batch went: there may be more.
    Full,
    /// Caught up, or another replica holds the sink.
    Rest,
}

async fn ship_batch(app: &App, sink: &Sink) -> Result<Shipped, String> {
    let at = now();
    let key = sink.key();
    let holder = app.notifier().holder();
    if !app
        .store
        .lease_sink(&key, holder, at, at + LEASE)
        .await
        .map_err(|e| e.to_string())?
    {
        return Ok(Shipped::Rest);
    }
    let cursor = app
        .store
        .notification_cursor(&key)
        .await
        .map_err(|e| e.to_string())?
        .unwrap_or(0);
    let events = app
        .store
        .audit_events(&AuditFilter {
            after_seq: Some(cursor),
            limit: sink.target.batch(),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let Some(last) = events.last().map(|e| e.seq) else {
        return Ok(Shipped::Rest);
    };
    if let Some(first) = events.first().filter(|e| e.seq != cursor + 1) {
        // Retention waits for every sink, so this means the events were gone before the sink
        // was configured (or were deleted by hand): say so, loudly.
        tracing::error!(sink = %sink.name, from = cursor + 1, to = first.seq - 1, "audit events missing from the log were not shipped");
        app.metrics.count_audit_sink(
            &sink.name,
            "missing",
            u64::try_from(first.seq - cursor - 1).unwrap_or(0),
        );
    }
    let count = events.len() as u64;
    let lines: Vec<AuditLine> = events
        .iter()
        .map(|e| AuditLine {
            seq: e.seq,
            text: sink.line(e),
        })
        .collect();
    let result = sink.target.ship(&sink.name, &lines).await;
    if let Err(error) = result {
        app.metrics.count_audit_sink(&sink.name, "failed", count);
        return Err(error);
    }
    app.metrics.count_audit_sink(&sink.name, "sent", count);
    app.store
        .set_notification_cursor(&key, last)
        .await
        .map_err(|e| e.to_string())?;
    Ok(if count == u64::from(sink.target.batch()) {
        Shipped::Full
    } else {
        Shipped::Rest
    })
}
