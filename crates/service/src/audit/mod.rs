//! The audit trail beyond the store's hash chain: signed checkpoints of its head, live sinks
//! that ship every event to a file, stdout or a SIEM, retention that moves old events into
//! archived segments without breaking verification, and denied checks counted per window.
//! See docs/audit.md.

pub mod checkpoint;
pub mod denied;
pub mod format;
pub mod retention;
pub mod sinks;

use std::time::Duration;

/// `[audit]`, checked.
pub struct AuditSettings {
    pub checkpoint_every: Duration,
    pub denied_checks_every: Duration,
    pub retention: Option<retention::Retention>,
    pub sinks: Vec<sinks::Sink>,
}

/// The keys of `[audit]` the service reads itself, as the config file gives them.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuditKeys<'a> {
    pub checkpoint_every: Option<&'a str>,
    pub denied_checks_every: Option<&'a str>,
    pub retain: Option<&'a str>,
    pub archive_dir: Option<&'a std::path::Path>,
    pub archive_every: Option<&'a str>,
}

impl AuditSettings {
    /// `[audit]` checked, with `sinks` as the registry built them from `[[audit.sinks]]`.
    pub fn new(keys: AuditKeys<'_>, sinks: Vec<sinks::Sink>) -> Result<AuditSettings, String> {
        let checkpoint_every = interval("audit.checkpoint_every", keys.checkpoint_every, 60)?;
        let denied_checks_every = interval("audit.denied_checks_every", keys.denied_checks_every, 60)?;
        let retention = match (keys.retain, keys.archive_dir) {
            (None, None) => None,
            (Some(_), None) => {
                return Err("audit.archive_dir: retention moves old events into archived segments; say where".into())
            }
            (None, Some(_)) => return Err("audit.retain: say how long events stay in the database".into()),
            (Some(retain), Some(dir)) => Some(retention::Retention {
                retain: jitgate_core::parse_duration(retain)
                    .map(|d| d.as_delta())
                    .map_err(|m| format!("audit.retain: {m}"))?,
                dir: dir.to_path_buf(),
                every: interval("audit.archive_every", keys.archive_every, 3600)?,
                sinks: sinks.iter().map(sinks::Sink::key).collect(),
            }),
        };
        Ok(AuditSettings {
            checkpoint_every,
            denied_checks_every,
            retention,
            sinks,
        })
    }
}

fn interval(key: &str, text: Option<&str>, default_secs: u64) -> Result<Duration, String> {
    match text {
        None => Ok(Duration::from_secs(default_secs)),
        Some(text) => jitgate_core::parse_duration(text)
            .map(|d| Duration::from_secs(d.0.max(1)))
            .map_err(|m| format!("{key}: {m}")),
    }
}

/// An event the system records of itself (no request, grant or resource), with `comment`.
pub(crate) fn system_event(kind: jitgate_core::EventKind, comment: String) -> jitgate_core::NewEvent {
    jitgate_core::NewEvent {
        kind,
        at: crate::app::now(),
        actor: jitgate_core::audit::SYSTEM_ACTOR.to_string(),
        subject: String::new(),
        request_id: None,
        grant_id: None,
        resource: String::new(),
        action: String::new(),
        comment: Some(comment),
    }
}
