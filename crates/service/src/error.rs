//! What a use case can refuse, in the service's own terms. Each edge says it in its own way:
//! the HTTP layer maps each variant to a status in one place (`jitgate_server::error`).

use jitgate_core::DomainError;
use jitgate_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Input that parsed but is not acceptable; names the field.
    #[error("{0}")]
    Invalid(String),
    /// No credentials, or credentials that are not valid.
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    /// Missing, or not visible to the caller (the two look the same, so ids cannot be probed).
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A dependency (the database, a provider) cannot answer now; trying again may work.
    #[error("{0}")]
    Unavailable(String),
    /// A limit on what a caller controls (field length, list size, pending requests) was
    /// exceeded.
    #[error("{1}")]
    OverLimit(Limit, String),
    /// A limit that lifts by itself with time (a principal's rate, the places among waiting
    /// callers): `after` is how long until a call may succeed.
    #[error("{message}")]
    RetryLater {
        limit: Limit,
        message: String,
        after: std::time::Duration,
    },
    /// A fault of the server: the detail is for the log, never for the caller.
    #[error("internal error")]
    Internal(String),
}

/// The limits a caller can run into, each counted by name
/// (`jitgate_limits_exceeded_total{limit=...}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// A request body over the largest accepted.
    BodySize,
    /// A field longer than its maximum.
    FieldLength,
    /// More items in a list than one call may carry.
    ListSize,
    /// More calls from one principal than its rate allows.
    Rate,
    /// More callers waiting for decisions than the server holds, or one principal holds.
    Waiters,
    /// More pending requests from one requester than `[limits] max_pending_per_requester`.
    Pending,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::BodySize => "body_size",
            Limit::FieldLength => "field_length",
            Limit::ListSize => "list_size",
            Limit::Rate => "rate",
            Limit::Waiters => "waiters",
            Limit::Pending => "pending",
        }
    }
}

/// A wait in whole seconds, rounded up (at least 1): a client that waits that long is let in.
pub fn retry_after_seconds(after: std::time::Duration) -> u64 {
    (after.as_secs() + u64::from(after.subsec_nanos() > 0)).max(1)
}

impl From<DomainError> for ServiceError {
    fn from(e: DomainError) -> Self {
        match e {
            e @ DomainError::Invalid { .. } => ServiceError::Invalid(e.to_string()),
            DomainError::Forbidden(m) => ServiceError::Forbidden(m),
            DomainError::NotFound(m) => ServiceError::NotFound(m),
            DomainError::Conflict(m) => ServiceError::Conflict(m),
            e @ DomainError::TooLong { .. } => ServiceError::OverLimit(Limit::FieldLength, e.to_string()),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict => ServiceError::Conflict("the request changed concurrently; try again".into()),
            // Not a fault of this server nor of the caller: the database lost or forked what
            // was acknowledged, and an operator must decide (docs/deploy.md, "Failover").
            e @ StoreError::Diverged(_) => ServiceError::Unavailable(e.to_string()),
            e if e.is_unavailable() => {
                ServiceError::Unavailable("the database is unavailable; try again shortly".into())
            }
            other => ServiceError::Internal(other.to_string()),
        }
    }
}
