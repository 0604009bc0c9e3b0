//! The stdout sink: one line per event on standard output, for a log collector.

use crate::entry::AuditSinkEntry;
use async_trait::async_trait;
use jitgate_service::connectors::{AuditLine, AuditSink};
use std::io::Write;

struct Stdout;

/// `kind = "stdout"`: no keys of its own.
pub fn build(entry: &AuditSinkEntry<'_>) -> Result<Box<dyn AuditSink>, String> {
    super::refuse(entry.config, entry.at, &super::file_keys(entry.config))?;
    super::refuse(entry.config, entry.at, &super::http_keys(entry.config))?;
    Ok(Box::new(Stdout))
}

#[async_trait]
impl AuditSink for Stdout {
    async fn ship(&self, _name: &str, lines: &[AuditLine]) -> Result<(), String> {
        let mut out = std::io::stdout().lock();
        lines
            .iter()
            .try_for_each(|line| writeln!(out, "{}", line.text))
            .and_then(|()| out.flush())
            .map_err(|e| format!("stdout: {e}"))
    }
}
