//! What a filer asks for, and the policy's verdict on it. The policy engine (in
//! `jitgate-policy`) produces an `Admission`; the state machine applies it.

use crate::duration::DurationSecs;
use crate::model::Requirement;

/// A request as filed, before the policy has judged it.
#[derive(Debug, Clone)]
pub struct Ask<'a> {
    pub resource: &'a str,
    pub action: &'a str,
    pub duration: Option<DurationSecs>,
    pub reason: &'a str,
    pub payload: Option<&'a str>,
    pub break_glass: bool,
}

/// The policy's verdict on a request that may be filed: what it needs, for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub requirement: Requirement,
    pub duration: DurationSecs,
    /// For a request granted without review (automatic or break-glass): what in the policy
    /// decided so, like `workflow staging-db read (auto_approve = true in workflows.toml)` or
    /// `cedar policy ID at FILE:LINE`. The audit log's `request.approved` event names it.
    pub decided_by: Option<String>,
}

/// Longest reason or payload accepted, so one request cannot bloat the store and the log.
pub const MAX_REASON_LEN: usize = 2000;
pub const MAX_PAYLOAD_LEN: usize = 64 * 1024;
