//! The audit trail beyond the store's hash chain: signed checkpoints of its head, live sinks
//! that ship every event to a file, stdout or a SIEM, retention that moves old events into
//! archived segments without breaking verification, and denied checks counted per window.
//! See docs/audit.md.

pub mod checkpoint;
pub mod denied;
pub mod format;
pub mod retention;
pub mod sinks;

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// The `[audit]` section of the server's config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// How often the log's head is signed (default 60s): events newer than the last
    /// checkpoint are protected by the hash chain only.
    pub checkpoint_every: Option<String>,
    /// Denied checks are counted per checker, principal, resource and action, and recorded
    /// as one `check.denied` event per window of this length (default 60s).
    pub denied_checks_every: Option<String>,
    /// Keep events in the database this long (default: forever); older ones are moved into
    /// archived segments under `archive_dir`.
    pub retain: Option<String>,
    pub archive_dir: Option<PathBuf>,
    /// How often retention runs (default 1h).
    pub archive_every: Option<String>,
    #[serde(default)]
    pub sinks: Vec<sinks::SinkConfig>,
}

/// `[audit]`, checked.
pub struct AuditSettings {
    pub checkpoint_every: Duration,
    pub denied_checks_every: Duration,
    pub retention: Option<retention::Retention>,
    pub sinks: Vec<sinks::Sink>,
}

impl AuditConfig {
    pub fn settings(&self) -> Result<AuditSettings, String> {
        let checkpoint_every = interval("audit.checkpoint_every", self.checkpoint_every.as_deref(), 60)?;
        let denied_checks_every = interval("audit.denied_checks_every", self.denied_checks_every.as_deref(), 60)?;
        let retention = match (&self.retain, &self.archive_dir) {
            (None, None) => None,
            (Some(_), None) => {
                return Err("audit.archive_dir: retention moves old events into archived segments; say where".into())
            }
            (None, Some(_)) => return Err("audit.retain: say how long events stay in the database".into()),
            (Some(retain), Some(dir)) => Some(retention::Retention {
                retain: jitgate_core::parse_duration(retain)
                    .map(|d| d.as_delta())
                    .map_err(|m| format!("audit.retain: {m}"))?,
                dir: dir.clone(),
                every: interval("audit.archive_every", self.archive_every.as_deref(), 3600)?,
                sinks: Vec::new(),
            }),
        };
        let mut built: Vec<sinks::Sink> = Vec::new();
        for (n, config) in self.sinks.iter().enumerate() {
            let sink = sinks::Sink::new(config, &|key| format!("audit.sinks[{n}].{key}"))?;
            if built.iter().any(|s| s.name == sink.name) {
                return Err(format!("audit.sinks[{n}].name: '{}' is declared twice", sink.name));
            }
            built.push(sink);
        }
        let retention = retention.map(|r| retention::Retention {
            sinks: built.iter().map(sinks::Sink::key).collect(),
            ..r
        });
        Ok(AuditSettings {
            checkpoint_every,
            denied_checks_every,
            retention,
            sinks: built,
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
