//! Retention: events older than `[audit] retain` move out of the database into archived
//! segments, files of JSON lines under `archive_dir` (`audit-<first>-<last>.jsonl`). A segment
//! always ends at a signed checkpoint, and holds every checkpoint of its events; that last
//! checkpoint stays in the database, so the log that is left still verifies from it, and the
//! segments verify offline, alone or in a row (`jitgate audit verify --file ... --file ...`).
//!
//! The segment is written and synced to disk before the events are deleted, in one transaction
//! with the `audit.archived` event that says so. A crash in between leaves the events in place,
//! and the next run writes the same segment again.

use crate::app::App;
use crate::audit::format::{checkpoint_line, event_line};
use crate::clock::now;
use jitgate_core::audit::{Checkpoint, EventKind, NewEvent, SYSTEM_ACTOR};
use jitgate_store::AuditFilter;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// `[audit] retain`, `archive_dir`, `archive_every`, checked.
#[derive(Debug, Clone)]
pub struct Retention {
    pub retain: chrono::TimeDelta,
    pub dir: PathBuf,
    pub every: Duration,
    /// The live sinks' cursors (their keys): nothing they have not shipped is archived.
    pub sinks: Vec<String>,
}

const PAGE: u32 = 5000;
/// The lease one replica holds to run retention.
const LEASE: &str = "audit:retention";

/// Archive what is due every `every`; one replica at a time.
pub async fn run(app: Arc<App>, retention: Retention) {
    // The lease lives in the sinks' table: its row must exist.
    while let Err(error) = ensure_lease_row(&app).await {
        tracing::warn!(%error, "cannot prepare audit retention; retrying");
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let mut interval = tokio::time::interval(retention.every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let at = now();
        // Longer than any run: two replicas must never archive at once.
        let lease = chrono::TimeDelta::from_std(retention.every)
            .unwrap_or(chrono::TimeDelta::hours(1))
            .max(chrono::TimeDelta::minutes(30));
        match app
            .store
            .lease_sink(LEASE, app.notifier().holder(), at, at + lease)
            .await
        {
            Ok(true) => {}
            Ok(false) => continue,
            Err(error) => {
                tracing::warn!(%error, "cannot lease audit retention; retrying");
                continue;
            }
        }
        match archive_due(&app, &retention).await {
            Ok(Some(segment)) => tracing::info!(segment = %segment.display(), "old audit events archived"),
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "audit retention failed; retrying at the next run"),
        }
    }
}

async fn ensure_lease_row(app: &App) -> Result<(), jitgate_store::StoreError> {
    if app.store.notification_cursor(LEASE).await?.is_none() {
        app.store.set_notification_cursor(LEASE, 0).await?;
    }
    Ok(())
}

/// Archive the events older than the retention, up to the newest checkpoint signed before the
/// cut-off (every event it covers is older still). The segment written, if any.
pub async fn archive_due(app: &App, retention: &Retention) -> Result<Option<PathBuf>, String> {
    let cutoff = now() - retention.retain;
    let head = app.store.audit_head().await.map_err(|e| e.to_string())?;
    let checkpoints = app.store.checkpoints().await.map_err(|e| e.to_string())?;
    // Every live sink must have shipped what is archived: a sink that is down keeps it here.
    let mut shipped = head;
    for key in &retention.sinks {
        shipped = shipped.min(crate::audit::sinks::shipped_through(&*app.store, key).await?);
    }
    let Some(through) = checkpoints
        .iter()
        .filter(|c| c.at <= cutoff && c.seq < head && c.seq <= shipped)
        .map(|c| c.seq)
        .max()
    else {
        return Ok(None);
    };
    let first = app
        .store
        .audit_events(&AuditFilter {
            limit: 1,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?
        .first()
        .map(|e| e.seq);
    let Some(first) = first.filter(|first| *first <= through) else {
        return Ok(None);
    };
    // Archiving from a first event that follows a deletion would write a segment anchored past
    // the gap and delete the earlier checkpoint that shows it: the deletion laundered into an
    // archive. Nothing is archived until an operator has looked.
    if let Some((_, problem)) = jitgate_core::audit::archive_gap(first, checkpoints.iter().map(|c| c.seq)) {
        return Err(format!(
            "{problem}; nothing is archived until the log verifies (jitgate audit verify)"
        ));
    }
    let name = format!("audit-{first:012}-{through:012}.jsonl");
    let segment = retention.dir.join(&name);
    let kept: Vec<&Checkpoint> = checkpoints
        .iter()
        .filter(|c| c.seq >= first - 1 && c.seq <= through)
        .collect();
    write_segment(app, &segment, first, through, &kept).await?;
    let event = NewEvent {
        kind: EventKind::AuditArchived,
        at: now(),
        actor: SYSTEM_ACTOR.into(),
        subject: SYSTEM_ACTOR.into(),
        request_id: None,
        grant_id: None,
        resource: String::new(),
        action: String::new(),
        comment: Some(format!(
            "events {first} to {through} archived to {name} (retention {})",
            jitgate_core::DurationSecs(u64::try_from(retention.retain.num_seconds()).unwrap_or(0))
        )),
    };
    app.store
        .archive_audit_through(through, &event)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some(segment))
}

/// Write events `first..=through` with their checkpoints (the one just before `first`
/// included, as the segment's anchor) to `segment`, synced, atomically by rename.
async fn write_segment(
    app: &App,
    segment: &Path,
    first: i64,
    through: i64,
    checkpoints: &[&Checkpoint],
) -> Result<(), String> {
    let shown = |e: std::io::Error| format!("{}: {e}", segment.display());
    std::fs::create_dir_all(segment.parent().unwrap_or(Path::new("."))).map_err(shown)?;
    let partial = segment.with_extension(format!("jsonl.{}.partial", std::process::id()));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&partial).map_err(shown)?);
    let mut pending = checkpoints.iter().peekable();
    while let Some(c) = pending.next_if(|c| c.seq < first) {
        writeln!(out, "{}", checkpoint_line(c)).map_err(shown)?;
    }
    let mut after = first - 1;
    while after < through {
        let page = app
            .store
            .audit_events(&AuditFilter {
                after_seq: Some(after),
                limit: PAGE,
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        if page.is_empty() {
            return Err(format!("events after {after} vanished while archiving"));
        }
        for event in page.iter().take_while(|e| e.seq <= through) {
            writeln!(out, "{}", event_line(event)).map_err(shown)?;
            while let Some(c) = pending.next_if(|c| c.seq <= event.seq) {
                writeln!(out, "{}", checkpoint_line(c)).map_err(shown)?;
            }
            after = event.seq;
        }
        if page.last().is_some_and(|e| e.seq > through) {
            break;
        }
    }
    let file = out.into_inner().map_err(|e| shown(e.into_error()))?;
    file.sync_all().map_err(shown)?;
    std::fs::rename(&partial, segment).map_err(shown)?;
    if let Some(dir) = segment.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(shown)?;
    }
    Ok(())
}
