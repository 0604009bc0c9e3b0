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
    /// The key a provider can deduplicate deliveries by: the same for every attempt of one
    /// delivery. An extended grant (`extensions` > 0) is provisioned again with its new end,
    /// under a new key.
    pub fn idempotency_key(&self, extensions: u32) -> String {
        let key = format!("{}:{}:{}", self.grant_id, self.provider, self.operation.as_str());
        if self.operation == OutboxOperation::Provision && extensions > 0 {
            format!("{key}:ext{extensions}")
        } else {
            key
        }
    }
}

/// How long to wait before attempt `attempts + 1`: 200 ms doubling, at most 30 s.
pub fn retry_delay(attempts: u32) -> chrono::TimeDelta {
    let ms = 200u64.saturating_mul(1u64 << attempts.min(20)).min(30_000);
    chrono::TimeDelta::milliseconds(i64::try_from(ms).unwrap_or(30_000))
}

/// What the outbox holds about one provider of one grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxState {
    pub grant_id: String,
    pub provider: String,
    pub operation: OutboxOperation,
    pub done: bool,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// Where a grant stands with one provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderStatus {
    pub provider: String,
    /// `pending`, `provisioned`, `failed` (retrying; see `last_error`) or `deprovisioned`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The status of each provider from its provisioning and deprovisioning items.
pub fn provider_status(states: &[OutboxState]) -> Vec<ProviderStatus> {
    let mut providers: Vec<&str> = states.iter().map(|s| s.provider.as_str()).collect();
    providers.sort_unstable();
    providers.dedup();
    providers
        .into_iter()
        .map(|provider| {
            let find = |op| states.iter().find(|s| s.provider == provider && s.operation == op);
            let provision = find(OutboxOperation::Provision);
            let deprovision = find(OutboxOperation::Deprovision);
            let failing = [provision, deprovision]
                .into_iter()
                .flatten()
                .find(|s| !s.done && s.attempts > 0);
            let status = match (provision, deprovision, failing) {
                (_, Some(d), _) if d.done => "deprovisioned",
                (_, _, Some(_)) => "failed",
                (Some(p), _, _) if p.done => "provisioned",
                _ => "pending",
            };
            ProviderStatus {
                provider: provider.to_string(),
                status,
                last_error: failing.and_then(|s| s.last_error.clone()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(operation: OutboxOperation, done: bool, attempts: u32) -> OutboxState {
        OutboxState {
            grant_id: "g".into(),
            provider: "hook".into(),
            operation,
            done,
            attempts,
            last_error: (attempts > 0 && !done).then(|| "down".to_string()),
        }
    }

    #[test]
    fn status_follows_the_items() {
        use OutboxOperation::{Deprovision, Provision};
        let status = |items: &[OutboxState]| provider_status(items)[0].status;
        assert_eq!(
            status(&[state(Provision, false, 0), state(Deprovision, false, 0)]),
            "pending"
        );
        assert_eq!(
            status(&[state(Provision, false, 2), state(Deprovision, false, 0)]),
            "failed"
        );
        assert_eq!(
            status(&[state(Provision, true, 1), state(Deprovision, false, 0)]),
            "provisioned"
        );
        assert_eq!(
            status(&[state(Provision, true, 1), state(Deprovision, false, 3)]),
            "failed"
        );
        assert_eq!(
            status(&[state(Provision, true, 1), state(Deprovision, true, 1)]),
            "deprovisioned"
        );
        assert_eq!(
            provider_status(&[state(Provision, false, 2), state(Deprovision, false, 0)])[0].last_error,
            Some("down".into())
        );
        let item = OutboxItem {
            id: 1,
            grant_id: "g".into(),
            provider: "hook".into(),
            operation: Provision,
            due_at: chrono::DateTime::UNIX_EPOCH,
            attempts: 0,
            last_error: None,
        };
        assert_eq!(item.idempotency_key(0), "g:hook:provision");
        assert_eq!(item.idempotency_key(2), "g:hook:provision:ext2");
        let item = OutboxItem {
            operation: Deprovision,
            ..item
        };
        assert_eq!(item.idempotency_key(2), "g:hook:deprovision");
        assert!(retry_delay(0) < retry_delay(1) && retry_delay(40) == chrono::TimeDelta::seconds(30));
    }
}
