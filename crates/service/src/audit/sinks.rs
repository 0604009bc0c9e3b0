//! Live audit sinks: every event, as it is committed, shipped to a file (rotated by size), to
//! stdout (for a log collector), or to an HTTP endpoint (a SIEM's collector: Splunk HEC, Elastic,
//! Datadog, Vector, ...) as JSON lines, in jitgate's own shape or in ECS. The kinds implement
//! [`crate::connectors::AuditSink`] in the `jitgate-connectors` crate; this module runs them.
//!
//! Each sink reads the log from its own cursor in the store, like notification sinks: nothing
//! committed is skipped, a failing sink is retried with backoff (audit events are never dropped;
//! the sink waits until its receiver takes them), and with replicas one of them holds each sink
//! at a time. Delivery is at least once: an event may be sent again after a crash or a takeover,
//! and carries `seq` to tell. A file sink reads its last line at start and goes on after it.
//!
//! Every sink remembers the seq and hash of the last event it shipped (in memory, in its cursor,
//! and for a file in the file itself) and, before it ships more, makes sure the log still has
//! that event with that hash. A log that lost it (a failover to a standby that lacked it) or has
//! another event there (a second primary) is refused: the sink ships nothing of that history,
//! raises an alarm (an `audit.fork_detected` event, a metric, an error line) and holds until an
//! operator lets it go on with `resume_after` (docs/audit.md, "A rewound or forked log").

use crate::app::{now, App};
use crate::audit::format::{ecs_line, event_line};
use crate::connectors::{AuditLine, AuditMark, AuditSink};
use crate::metrics::Metrics;
use jitgate_core::audit::EventKind;
use jitgate_core::AuditEvent;
use jitgate_store::{AuditFilter, SinkCursor, Store};
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// `resume_after`: the operator's word that, once the sink finds a fork, it goes on after
    /// this event of the log as it is now. Used at most once per start, and only on a fork.
    resume_after: Option<i64>,
    resumed: AtomicBool,
    /// The last event this process shipped, or found in the target when it started.
    mark: parking_lot::Mutex<Option<AuditMark>>,
    /// Whether the target was asked what it holds (once per start).
    seeded: AtomicBool,
    /// The fork the sink holds on, once alarmed: alarmed once, not at every look.
    held: parking_lot::Mutex<Option<Held>>,
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
            resume_after: None,
            resumed: AtomicBool::new(false),
            mark: parking_lot::Mutex::new(None),
            seeded: AtomicBool::new(false),
            held: parking_lot::Mutex::new(None),
        }
    }

    /// Let the sink go on after event `seq` of the log as it is, should it find the log
    /// rewound or forked under what it shipped (`resume_after`).
    pub fn resume_after(mut self, seq: Option<i64>) -> Sink {
        self.resume_after = seq;
        self
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

#[derive(Debug, PartialEq, Eq)]
enum Shipped {
    /// A whole batch went: there may be more.
    Full,
    /// Caught up, another replica holds the sink, or it holds on a fork.
    Rest,
}

/// A log that is not the one a sink shipped from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fork {
    /// The last event the sink shipped (or its target holds).
    pub seq: i64,
    /// Its hash, as shipped.
    pub shipped: Option<String>,
    /// The hash the log has for that event now; `None` when the log ends before it.
    pub found: Option<String>,
    /// The log's last event now.
    pub head: i64,
}

impl Fork {
    fn describe(&self, sink: &str) -> String {
        let shipped = self.shipped.as_deref().unwrap_or("unknown");
        let now = match &self.found {
            Some(found) => format!("the log now has event {} with hash {found}", self.seq),
            None => format!("the log now ends at event {}", self.head),
        };
        format!(
            "audit sink '{sink}' shipped event {} with hash {shipped}, but {now}: the log was rewound or \
             forked (a failover to a standby that lacked it, or a second primary); the sink ships nothing \
             of this history until an operator sets its resume_after (docs/audit.md, \"A rewound or forked log\")",
            self.seq
        )
    }
}

/// A fork a sink holds on, and whether its alarm event is in the log yet (the database may
/// refuse it for a while: it is tried again at every look).
struct Held {
    fork: Fork,
    recorded: bool,
    /// Looks at which the database refused the cursor or the alarm (logged at the first).
    failures: u32,
}

async fn ship_batch(app: &App, sink: &Sink) -> Result<Shipped, String> {
    ship_once(&*app.store, &app.metrics, app.notifier().holder(), sink).await
}

/// The later of two marks; at the same event, the first one's hash (this process's memory)
/// if it has one.
fn furthest(a: Option<AuditMark>, b: Option<AuditMark>) -> Option<AuditMark> {
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some(a), Some(b)) if a.seq > b.seq => Some(a),
        (Some(a), Some(b)) if b.seq > a.seq => Some(b),
        (Some(a), Some(b)) => Some(AuditMark {
            seq: a.seq,
            hash: a.hash.or(b.hash),
        }),
    }
}

/// Where to ship from in `events` (read from the event `mark` names on), or, when the log no
/// longer has that event as shipped, the hash it has there now (`None`: it ends before).
fn continuity(mark: Option<&AuditMark>, events: &[AuditEvent]) -> Result<usize, Option<String>> {
    let Some(mark) = mark.filter(|m| m.seq > 0) else {
        return Ok(0);
    };
    let Some(first) = events.first() else {
        return Err(None);
    };
    let differs = |found: &str| mark.hash.as_deref().is_some_and(|shipped| shipped != found);
    if first.seq == mark.seq {
        if differs(&first.hash) {
            return Err(Some(first.hash.clone()));
        }
        return Ok(1);
    }
    // The shipped event itself is gone from the database (archived by retention, or deleted:
    // the gap is reported when shipping); the next one must still chain onto it.
    if first.seq == mark.seq + 1 && differs(&first.prev_hash) {
        return Err(Some(first.prev_hash.clone()));
    }
    Ok(0)
}

/// One look at the log for `sink`: ship the next batch, or hold on a fork.
async fn ship_once(store: &dyn Store, metrics: &Metrics, holder: &str, sink: &Sink) -> Result<Shipped, String> {
    let text = |e: jitgate_store::StoreError| e.to_string();
    let at = now();
    let key = sink.key();
    if !store.lease_sink(&key, holder, at, at + LEASE).await.map_err(text)? {
        return Ok(Shipped::Rest);
    }
    let stored = store.sink_cursor(&key).await.map_err(text)?;
    if !sink.seeded.load(Ordering::SeqCst) {
        // What the target itself holds (a file's last line) counts as shipped: after a restart
        // the sink goes on after it, and only if the log still has it.
        let holds = sink.target.holds().await?;
        let mut mark = sink.mark.lock();
        *mark = furthest(mark.take(), holds);
        sink.seeded.store(true, Ordering::SeqCst);
    }
    let mark = furthest(
        sink.mark.lock().clone(),
        stored.as_ref().map(|c| AuditMark {
            seq: c.after_seq,
            hash: c.after_hash.clone(),
        }),
    );
    let batch = sink.target.batch();
    let events = store
        .audit_events(&AuditFilter {
            // From the event the sink stands on, to see that the log still has it.
            after_seq: Some(mark.as_ref().map_or(0, |m| (m.seq - 1).max(0))),
            limit: batch.saturating_add(1),
            ..Default::default()
        })
        .await
        .map_err(text)?;
    let start = match continuity(mark.as_ref(), &events) {
        Ok(start) => start,
        Err(found) => {
            let mark = mark.unwrap_or(AuditMark { seq: 0, hash: None });
            let fork = Fork {
                seq: mark.seq,
                shipped: mark.hash,
                found,
                head: store.audit_head().await.map_err(text)?,
            };
            return hold(store, metrics, sink, fork, stored).await;
        }
    };
    if let Some(held) = sink.held.lock().take() {
        tracing::warn!(sink = %sink.name, seq = held.fork.seq, "the audit log agrees again with what the sink shipped; it goes on");
    }
    let after = mark.as_ref().map_or(0, |m| m.seq);
    let events: Vec<&AuditEvent> = events.iter().skip(start).take(batch as usize).collect();
    let (Some(first), Some(last)) = (events.first(), events.last()) else {
        return Ok(Shipped::Rest);
    };
    if first.seq != after + 1 {
        // Retention waits for every sink, so this means the events were gone before the sink
        // was configured (or were deleted by hand): say so, loudly.
        tracing::error!(sink = %sink.name, from = after + 1, to = first.seq - 1, "audit events missing from the log were not shipped");
        metrics.count_audit_sink(&sink.name, "missing", u64::try_from(first.seq - after - 1).unwrap_or(0));
    }
    let count = events.len() as u64;
    let lines: Vec<AuditLine> = events
        .iter()
        .map(|e| AuditLine {
            seq: e.seq,
            hash: e.hash.clone(),
            text: sink.line(e),
        })
        .collect();
    if let Err(error) = sink.target.ship(&sink.name, &lines).await {
        metrics.count_audit_sink(&sink.name, "failed", count);
        return Err(error);
    }
    metrics.count_audit_sink(&sink.name, "sent", count);
    let shipped = SinkCursor {
        after_seq: last.seq,
        after_hash: Some(last.hash.clone()),
    };
    *sink.mark.lock() = Some(AuditMark {
        seq: last.seq,
        hash: Some(last.hash.clone()),
    });
    store.set_sink_cursor(&key, &shipped).await.map_err(text)?;
    Ok(if count == u64::from(batch) {
        Shipped::Full
    } else {
        Shipped::Rest
    })
}

/// The log is not the one `sink` shipped from: go on after `resume_after` if the operator
/// said so, else alarm once and ship nothing.
async fn hold(
    store: &dyn Store,
    metrics: &Metrics,
    sink: &Sink,
    fork: Fork,
    stored: Option<SinkCursor>,
) -> Result<Shipped, String> {
    let text = |e: jitgate_store::StoreError| e.to_string();
    let key = sink.key();
    if let Some(after) = sink.resume_after {
        if !sink.resumed.swap(true, Ordering::SeqCst) {
            if let Some(anchor) = anchor(store, after).await? {
                store.set_sink_cursor(&key, &anchor).await.map_err(text)?;
                *sink.mark.lock() = Some(AuditMark {
                    seq: anchor.after_seq,
                    hash: anchor.after_hash.clone(),
                });
                sink.held.lock().take();
                let comment = format!(
                    "audit sink '{}' goes on after event {after} of the log as it is now, as its resume_after says; \
                     it had shipped event {} with hash {}",
                    sink.name,
                    fork.seq,
                    fork.shipped.as_deref().unwrap_or("unknown")
                );
                tracing::warn!(sink = %sink.name, resume_after = after, "{comment}");
                if let Err(e) = store
                    .append_events(&[crate::audit::system_event(EventKind::AuditSinkResumed, comment)])
                    .await
                {
                    tracing::error!(sink = %sink.name, error = %e, "cannot record the sink's resumption in the audit log");
                }
                return Ok(Shipped::Full);
            }
            tracing::error!(sink = %sink.name, resume_after = after, head = fork.head, "resume_after names no event of the log as it is now; the sink keeps holding");
        }
    }
    // One alarm per shipped event refused: the log's head moving on (or the event coming
    // back with another hash after a rewind) is the same fork.
    let first_time = sink
        .held
        .lock()
        .as_ref()
        .is_none_or(|h| (h.fork.seq, &h.fork.shipped) != (fork.seq, &fork.shipped));
    let describe = fork.describe(&sink.name);
    if first_time {
        tracing::error!(
            sink = %sink.name,
            seq = fork.seq,
            shipped = fork.shipped.as_deref().unwrap_or("unknown"),
            found = fork.found.as_deref().unwrap_or("none"),
            head = fork.head,
            "{describe}"
        );
        metrics.count_audit_fork(&sink.name);
        *sink.held.lock() = Some(Held {
            fork: fork.clone(),
            recorded: false,
            failures: 0,
        });
    }
    // Keep what was shipped in the sink's cursor, so that a restart (which forgets this
    // process's memory) finds the fork again rather than shipping the other history; and the
    // alarm in the log. A database that takes no write now (one that diverged refuses them)
    // is asked again at every look.
    let mut failed = Vec::new();
    let shipped = SinkCursor {
        after_seq: fork.seq,
        after_hash: fork.shipped.clone(),
    };
    if stored.as_ref() != Some(&shipped) {
        if let Err(e) = store.set_sink_cursor(&key, &shipped).await {
            failed.push(format!("its cursor: {e}"));
        }
    }
    if sink.held.lock().as_ref().is_some_and(|h| !h.recorded) {
        match store
            .append_events(&[crate::audit::system_event(EventKind::AuditForkDetected, describe)])
            .await
        {
            Ok(()) => {
                if let Some(held) = sink.held.lock().as_mut() {
                    held.recorded = true;
                }
            }
            Err(e) => failed.push(format!("the alarm event: {e}")),
        }
    }
    if !failed.is_empty() {
        let first = sink.held.lock().as_mut().is_some_and(|held| {
            held.failures += 1;
            held.failures == 1
        });
        if first {
            tracing::error!(sink = %sink.name, problems = %failed.join("; "), "cannot record the fork in the database yet; trying again at every look");
        }
    }
    Ok(Shipped::Rest)
}

/// How far the sink keyed `key` has shipped the log as it is now: its cursor, or 0 while its
/// cursor stands on an event this log does not have (a sink holding on a fork has shipped
/// none of this history, so retention must keep all of it).
pub async fn shipped_through(store: &dyn Store, key: &str) -> Result<i64, String> {
    let Some(cursor) = store.sink_cursor(key).await.map_err(|e| e.to_string())? else {
        return Ok(0);
    };
    let mark = AuditMark {
        seq: cursor.after_seq,
        hash: cursor.after_hash,
    };
    let events = store
        .audit_events(&AuditFilter {
            after_seq: Some((mark.seq - 1).max(0)),
            limit: 1,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(match continuity(Some(&mark), &events) {
        Ok(_) => mark.seq,
        Err(_) => 0,
    })
}

/// The cursor that stands on event `seq` of the log as it is now (`None`: it has no such
/// event).
async fn anchor(store: &dyn Store, seq: i64) -> Result<Option<SinkCursor>, String> {
    if seq == 0 {
        return Ok(Some(SinkCursor {
            after_seq: 0,
            after_hash: None,
        }));
    }
    let events = store
        .audit_events(&AuditFilter {
            after_seq: Some(seq - 1),
            limit: 1,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(events.first().filter(|e| e.seq == seq).map(|e| SinkCursor {
        after_seq: seq,
        after_hash: Some(e.hash.clone()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use jitgate_core::NewEvent;
    use jitgate_store::SqliteStore;

    /// A target that keeps what it was sent, and says it holds what it is told to.
    struct Fake {
        got: Arc<parking_lot::Mutex<Vec<(i64, String)>>>,
        holds: Option<AuditMark>,
    }

    #[async_trait]
    impl AuditSink for Fake {
        fn batch(&self) -> u32 {
            4
        }

        async fn ship(&self, _name: &str, lines: &[AuditLine]) -> Result<(), String> {
            self.got.lock().extend(lines.iter().map(|l| (l.seq, l.hash.clone())));
            Ok(())
        }

        async fn holds(&self) -> Result<Option<AuditMark>, String> {
            Ok(self.holds.clone())
        }
    }

    type Got = Arc<parking_lot::Mutex<Vec<(i64, String)>>>;

    fn sink(holds: Option<AuditMark>, resume_after: Option<i64>) -> (Sink, Got) {
        let got = Got::default();
        let target = Fake {
            got: got.clone(),
            holds,
        };
        let sink = Sink::new("archive".into(), Format::Json, false, Box::new(target)).resume_after(resume_after);
        (sink, got)
    }

    /// The `n`th event of a history: the same `n` and `history` give the same event, hence
    /// the same hash at the same place in the chain.
    fn event(n: i64, history: &str) -> NewEvent {
        NewEvent {
            at: chrono::DateTime::from_timestamp_millis(1_790_000_000_000 + n).unwrap_or_default(),
            ..crate::audit::system_event(EventKind::PolicyLoaded, format!("{history} {n}"))
        }
    }

    async fn store(dir: &tempfile::TempDir, name: &str, events: &[NewEvent]) -> Arc<dyn Store> {
        let path = dir.path().join(name);
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(&path.display().to_string())
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
        store.append_events(events).await.unwrap_or_else(|e| panic!("{e}"));
        store
            .set_notification_cursor("audit:archive", 0)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        store
    }

    async fn drain(store: &dyn Store, metrics: &Metrics, sink: &Sink) {
        for _ in 0..20 {
            match ship_once(store, metrics, "me", sink).await {
                Ok(Shipped::Full) => continue,
                Ok(Shipped::Rest) => return,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("never caught up");
    }

    async fn hashes(store: &dyn Store) -> Vec<(i64, String)> {
        store
            .audit_events(&AuditFilter {
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|e| (e.seq, e.hash))
            .collect()
    }

    async fn kinds(store: &dyn Store, kind: EventKind) -> Vec<String> {
        store
            .audit_events(&AuditFilter {
                kind: Some(kind.as_str().into()),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .filter_map(|e| e.event.comment)
            .collect()
    }

    fn forks(metrics: &Metrics) -> u64 {
        metrics
            .audit_forks_detected
            .get_or_create(&crate::metrics::SinkNameLabel { sink: "archive".into() })
            .get()
    }

    /// The old primary's log (events 1 to 10) and the new one's: the first 7 are the same,
    /// then it went its own way (8' and 9': a failover to a standby that lacked 8 to 10).
    async fn failover(dir: &tempfile::TempDir) -> (Arc<dyn Store>, Arc<dyn Store>) {
        let old: Vec<NewEvent> = (1..=10).map(|n| event(n, "old")).collect();
        let mut new: Vec<NewEvent> = old[..7].to_vec();
        new.extend((8..=9).map(|n| event(n, "new")));
        (store(dir, "old.db", &old).await, store(dir, "new.db", &new).await)
    }

    #[test]
    fn continuity_is_judged_on_the_shipped_event() {
        let e = |seq: i64, prev: &str, hash: &str| AuditEvent {
            seq,
            event: event(seq, "x"),
            prev_hash: prev.into(),
            hash: hash.into(),
        };
        let mark = |seq: i64, hash: Option<&str>| AuditMark {
            seq,
            hash: hash.map(str::to_string),
        };
        assert_eq!(continuity(None, &[e(1, "0", "a")]), Ok(0));
        assert_eq!(continuity(Some(&mark(0, None)), &[e(1, "0", "a")]), Ok(0));
        assert_eq!(
            continuity(Some(&mark(1, Some("a"))), &[e(1, "0", "a"), e(2, "a", "b")]),
            Ok(1)
        );
        assert_eq!(continuity(Some(&mark(1, Some("a"))), &[e(1, "0", "a")]), Ok(1));
        // The same seq with another hash; a log that ends before the shipped event.
        assert_eq!(
            continuity(Some(&mark(1, Some("a"))), &[e(1, "0", "z")]),
            Err(Some("z".into()))
        );
        assert_eq!(continuity(Some(&mark(5, Some("e"))), &[]), Err(None));
        assert_eq!(continuity(Some(&mark(5, None)), &[]), Err(None));
        // Without a hash to compare, an event at the seq is taken on trust.
        assert_eq!(continuity(Some(&mark(1, None)), &[e(1, "0", "z")]), Ok(1));
        // The shipped event archived: the next must chain onto it.
        assert_eq!(continuity(Some(&mark(1, Some("a"))), &[e(2, "a", "b")]), Ok(0));
        assert_eq!(
            continuity(Some(&mark(1, Some("a"))), &[e(2, "q", "b")]),
            Err(Some("q".into()))
        );
        assert_eq!(
            furthest(Some(mark(3, None)), Some(mark(3, Some("c")))),
            Some(mark(3, Some("c")))
        );
        assert_eq!(
            furthest(Some(mark(4, None)), Some(mark(3, Some("c")))),
            Some(mark(4, None))
        );
    }

    #[tokio::test]
    async fn a_sink_ships_every_event_once_and_keeps_the_hash_it_stands_on() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (old, _) = failover(&dir).await;
        let metrics = Metrics::new();
        let (sink, got) = sink(None, None);
        drain(&*old, &metrics, &sink).await;
        let all = hashes(&*old).await;
        assert_eq!(*got.lock(), all);
        old.append_events(&[event(11, "old")])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        drain(&*old, &metrics, &sink).await;
        let all = hashes(&*old).await;
        assert_eq!(*got.lock(), all, "each once, in order");
        let cursor = old.sink_cursor("audit:archive").await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            cursor.map(|c| (c.after_seq, c.after_hash)),
            hashes(&*old).await.last().map(|(s, h)| (*s, Some(h.clone())))
        );
        assert_eq!(forks(&metrics), 0);
        assert!(kinds(&*old, EventKind::AuditForkDetected).await.is_empty());
    }

    /// After a failover to a standby that lacked the last events, the sink remembers what it
    /// shipped: a log whose head is behind it is refused, and so is the same seq coming back
    /// with another hash; one alarm, nothing of the other history shipped.
    #[tokio::test]
    async fn a_rewound_log_is_refused_with_one_alarm_and_nothing_shipped() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (old, new) = failover(&dir).await;
        let metrics = Metrics::new();
        let (sink, got) = sink(None, None);
        drain(&*old, &metrics, &sink).await;
        let shipped = got.lock().clone();
        let (ten, h10) = shipped.last().cloned().unwrap_or_default();
        assert_eq!(ten, 10);

        // The new primary's log ends at 9, and the cursor went back with it.
        new.set_sink_cursor(
            "audit:archive",
            &SinkCursor {
                after_seq: 7,
                after_hash: Some(hashes(&*new).await[6].1.clone()),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        for _ in 0..3 {
            assert_eq!(ship_once(&*new, &metrics, "me", &sink).await, Ok(Shipped::Rest));
        }
        assert_eq!(*got.lock(), shipped, "nothing of the new history shipped");
        assert_eq!(forks(&metrics), 1, "one alarm");
        let alarms = kinds(&*new, EventKind::AuditForkDetected).await;
        assert_eq!(alarms.len(), 1, "{alarms:?}");
        assert!(
            alarms[0].contains(&format!("audit sink 'archive' shipped event 10 with hash {h10}"))
                && alarms[0].contains("the log now ends at event 9")
                && alarms[0].contains("resume_after"),
            "{}",
            alarms[0]
        );
        // The cursor keeps what was shipped, so that a restart finds the fork again.
        let cursor = new.sink_cursor("audit:archive").await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            cursor.map(|c| (c.after_seq, c.after_hash)),
            Some((10, Some(h10.clone())))
        );

        // The new primary writes on: event 10 comes back with another hash. Still refused,
        // still one alarm.
        new.append_events(&[event(10, "new"), event(11, "new")])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for _ in 0..3 {
            assert_eq!(ship_once(&*new, &metrics, "me", &sink).await, Ok(Shipped::Rest));
        }
        assert_eq!(*got.lock(), shipped);
        assert_eq!(forks(&metrics), 1);
        assert_eq!(kinds(&*new, EventKind::AuditForkDetected).await.len(), 1);
    }

    /// A restarted sink knows nothing in memory: what its target holds (a file's last line)
    /// and its cursor tell it. Then the operator's resume_after lets it go on, recorded.
    #[tokio::test]
    async fn a_restarted_sink_finds_the_fork_from_its_target_and_resumes_only_when_told() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (old, new) = failover(&dir).await;
        new.append_events(&[event(10, "new"), event(11, "new")])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let h10 = hashes(&*old).await[9].1.clone();
        let holds = Some(AuditMark {
            seq: 10,
            hash: Some(h10.clone()),
        });
        // The cursor went back with the database: only the target knows better.
        new.set_notification_cursor("audit:archive", 7)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let metrics = Metrics::new();
        let (restarted, got) = sink(holds.clone(), None);
        assert_eq!(ship_once(&*new, &metrics, "me", &restarted).await, Ok(Shipped::Rest));
        assert!(got.lock().is_empty());
        assert_eq!(forks(&metrics), 1);
        let alarm = kinds(&*new, EventKind::AuditForkDetected).await.join("\n");
        let h10_new = hashes(&*new).await[9].1.clone();
        assert!(
            alarm.contains(&format!(
                "shipped event 10 with hash {h10}, but the log now has event 10 with hash {h10_new}"
            )),
            "{alarm}"
        );

        // A resume_after that names no event keeps it holding.
        let (lost, got) = sink(holds.clone(), Some(9_999));
        assert_eq!(ship_once(&*new, &metrics, "me", &lost).await, Ok(Shipped::Rest));
        assert!(got.lock().is_empty());

        // The operator looked, and lets it go on after event 7, the last both logs share.
        let (resumed, got) = sink(holds, Some(7));
        drain(&*new, &metrics, &resumed).await;
        let after_7: Vec<(i64, String)> = hashes(&*new).await.into_iter().filter(|(s, _)| *s > 7).collect();
        assert_eq!(got.lock().first().map(|g| g.0), Some(8));
        assert_eq!(*got.lock(), after_7, "the new history from 8 on, alarms and all");
        let record = kinds(&*new, EventKind::AuditSinkResumed).await;
        assert_eq!(record.len(), 1);
        assert!(
            record[0].contains("goes on after event 7") && record[0].contains(&h10),
            "{}",
            record[0]
        );
        // Once on the new history, resume_after does nothing more: no second jump back.
        new.append_events(&[event(20, "new")])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        drain(&*new, &metrics, &resumed).await;
        let all_after_7: Vec<(i64, String)> = hashes(&*new).await.into_iter().filter(|(s, _)| *s > 7).collect();
        assert_eq!(*got.lock(), all_after_7);
        assert_eq!(kinds(&*new, EventKind::AuditSinkResumed).await.len(), 1);
    }

    /// Retention keeps what a sink has not shipped: all of a log the sink holds a fork on.
    #[tokio::test]
    async fn a_sink_holding_on_a_fork_has_shipped_none_of_that_log() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (old, new) = failover(&dir).await;
        let metrics = Metrics::new();
        let (sink, _) = sink(None, None);
        drain(&*old, &metrics, &sink).await;
        assert_eq!(shipped_through(&*old, "audit:archive").await, Ok(10));
        assert_eq!(
            shipped_through(&*new, "audit:archive").await,
            Ok(0),
            "the cursor of a fresh sink"
        );
        ship_once(&*new, &metrics, "me", &sink)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // The cursor now says 10, which the new log does not have (it ends at 9, then has
        // another 10): nothing of it counts as shipped.
        assert_eq!(shipped_through(&*new, "audit:archive").await, Ok(0));
        new.append_events(&[event(10, "new"), event(11, "new")])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(shipped_through(&*new, "audit:archive").await, Ok(0));
        assert_eq!(shipped_through(&*new, "audit:nobody").await, Ok(0));
    }
}
