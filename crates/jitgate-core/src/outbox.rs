//! The outbox: what target systems must be told about grants. Items are written in the same
//! transaction as the grant change that owes them, and carried out by a worker afterwards, so a
//! crash at any point leaves them to be finished after the restart.
//!
//! Each grant with providers owes every provider a `provision` when it is issued and a
//! `deprovision` that falls due at its end: scheduled at `expires_at` when issued, moved with
//! an extension, brought forward to the moment of a revocation or single use.

use crate::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxOperation {
    Provision,
    Deprovision,
}

impl OutboxOperation {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxOperation::Provision => "provision",
            OutboxOperation::Deprovision => "deprovision",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "provision" => Some(OutboxOperation::Provision),
            "deprovision" => Some(OutboxOperation::Deprovision),
            _ => None,
        }
    }
}

/// One thing a provider must be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub id: i64,
    pub grant_id: String,
    pub provider: String,
    pub operation: OutboxOperation,
    pub due_at: Timestamp,
    pub attempts: u32,
    pub last_error: Option<String>,
}

impl OutboxItem {
    /// The key a provider can deduplicate deliveries by: the same for every attempt.
    pub fn idempotency_key(&self) -> String {
        format!("{}:{}:{}", self.grant_id, self.provider, self.operation.as_str())
    }
}

/// How long to wait before attempt `attempts + 1`: 200 ms doubling, at most 30 s.
pub fn retry_delay(attempts: u32) -> chrono::TimeDelta {
    let ms = 200u64.saturating_mul(1u64 << attempts.min(20)).min(30_000);
    chrono::TimeDelta::milliseconds(i64::try_from(ms).unwrap_or(30_000))
}
