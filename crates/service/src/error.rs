//! What a use case can refuse, in the service's own terms. Each edge says it in its own way:
//! the HTTP layer maps each variant to a status in one place (`jitgate_server::error`).

use jitgate_core::{DomainError, Problem};
use jitgate_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Input that parsed but is not acceptable; names the field.
    #[error("{0}")]
    Invalid(Invalid),
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
    /// The payload hash a reviewer confirmed is not the request's (409 `payload_mismatch`).
    #[error("{0}")]
    PayloadMismatch(String),
    /// A dependency (the database, a provider) cannot answer now; trying again may work
    /// (503 with `Retry-After`). A write that answered this may still have committed: read
    /// before trying it again.
    #[error("{0}")]
    Unavailable(String),
    /// A limit on what a caller controls (field length, list size, pending requests) was
    /// exceeded.
    #[error("{1}")]
    OverLimit(Limit, String),
    /// A field longer than its maximum: an [`Limit::FieldLength`] over-limit that keeps the
    /// field it is about (the API answers it as it answers `OverLimit(FieldLength, ..)`).
    #[error("{0}")]
    TooLong(Invalid),
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

/// Input refused, with the field it is about when one is to blame, so that an edge can put
/// the refusal beside that field without reading the message. Displayed as the API words it:
/// `reason: is required ...`, `items[1].payload: ...`, or the message alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The input to blame (`reason`, `duration`, `payload`), if one is.
    pub field: Option<String>,
    /// Which item of a request for several things, counted from 0, when it is one item's.
    pub item: Option<usize>,
    /// What is wrong and what would be accepted, without the field's name.
    pub message: String,
    /// What is wrong by type, for the refusals an edge words for its own readers.
    pub problem: Option<Problem>,
}

impl Invalid {
    /// A refusal that belongs to no one field.
    pub fn new(message: impl Into<String>) -> Self {
        Invalid {
            field: None,
            item: None,
            message: message.into(),
            problem: None,
        }
    }

    /// A refusal of `field`.
    pub fn of(field: impl Into<String>, message: impl Into<String>) -> Self {
        Invalid {
            field: Some(field.into()),
            ..Invalid::new(message)
        }
    }

    /// The same refusal, about item `i` of a request for several things.
    pub fn in_item(self, i: usize) -> Self {
        Invalid { item: Some(i), ..self }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.item, &self.field) {
            (Some(i), Some(field)) => write!(f, "items[{i}].{field}: {}", self.message),
            (None, Some(field)) => write!(f, "{field}: {}", self.message),
            (_, None) => f.write_str(&self.message),
        }
    }
}

impl ServiceError {
    /// Input refused as a whole ([`Invalid::new`]).
    pub fn invalid(message: impl Into<String>) -> Self {
        ServiceError::Invalid(Invalid::new(message))
    }

    /// The limit this refusal counts against, if it is one (`jitgate_limits_exceeded_total`).
    pub fn limit(&self) -> Option<Limit> {
        match self {
            ServiceError::OverLimit(limit, _) | ServiceError::RetryLater { limit, .. } => Some(*limit),
            ServiceError::TooLong(_) => Some(Limit::FieldLength),
            _ => None,
        }
    }

    /// `field` refused ([`Invalid::of`]).
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ServiceError::Invalid(Invalid::of(field, message))
    }
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
            DomainError::Invalid {
                field,
                message,
                problem,
            } => ServiceError::Invalid(Invalid {
                problem,
                ..Invalid::of(field, message)
            }),
            DomainError::Forbidden(m) => ServiceError::Forbidden(m),
            DomainError::NotFound(m) => ServiceError::NotFound(m),
            DomainError::Conflict(m) => ServiceError::Conflict(m),
            DomainError::PayloadMismatch(m) => ServiceError::PayloadMismatch(m),
            DomainError::TooLong { field, len, max } => {
                ServiceError::TooLong(Invalid::of(field, format!("is {len} bytes; keep it under {max}")))
            }
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict => ServiceError::Conflict("the request changed concurrently; try again".into()),
            StoreError::Taken(m) => ServiceError::Conflict(m),
            // Not a fault of this server nor of the caller: the database lost or forked what
            // was acknowledged, and an operator must decide (docs/deploy.md, "Failover").
            e @ StoreError::Diverged(_) => ServiceError::Unavailable(e.to_string()),
            e if e.is_unavailable() => {
                let cause = unavailable_cause(&e);
                say_unavailable(&cause);
                if cause.told {
                    ServiceError::Unavailable(format!("{}; try again shortly", cause.text))
                } else {
                    ServiceError::Unavailable("the database is unavailable; try again shortly".into())
                }
            }
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

/// Why the database is unavailable, in words an operator acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnavailableCause {
    pub text: String,
    /// Fixed words, fit for the caller too (the others stay in the log).
    pub told: bool,
}

/// Why `e` (an unavailable-class store error) happened: a read-only node behind the front, a
/// write lock not had within the bound, a connection lost, the server shutting down.
pub fn unavailable_cause(e: &StoreError) -> UnavailableCause {
    let code = match e {
        StoreError::Database(inner) => inner.as_database_error().and_then(|d| d.code()).map(|c| c.into_owned()),
        _ => None,
    };
    let told = |text: &str| UnavailableCause {
        text: text.to_string(),
        told: true,
    };
    match code.as_deref() {
        Some("25006") => told("the database refused the write: the node is read-only (a standby?)"),
        Some("55P03") => told("the database did not let the write take its lock within the bound"),
        Some(c) if c.starts_with("08") => told("the connection to the database failed"),
        Some(c) if c.starts_with("57") => told("the database is shutting down or ended the connection"),
        _ => UnavailableCause {
            text: e.to_string(),
            told: false,
        },
    }
}

/// Says why the database is unavailable, without flooding the log: while the database is
/// away every call fails the same way, so each cause is said at most every few seconds, with
/// how many of it were held back. Causes are throttled each on its own: the log must show a
/// cut connection becoming a read-only node (or a lock timeout) when it happens, not five
/// seconds later or never, and two causes taking turns during a failover still make only a
/// line each every few seconds.
#[derive(Debug, Default)]
struct UnavailableLog {
    /// Each cause said lately: its words, when it was last said, how many held back since.
    said: Vec<(String, i64, u64)>,
}

const UNAVAILABLE_SAY_EVERY_MS: i64 = 5_000;
/// Causes remembered at once; a store's own words can vary (addresses, os errors), so the
/// one said longest ago makes room.
const UNAVAILABLE_CAUSES_KEPT: usize = 16;

impl UnavailableLog {
    /// Whether `cause` is to be logged at `now_ms`; if so, with how many of it were held back
    /// since its last line.
    fn admit(&mut self, cause: &str, now_ms: i64) -> Option<u64> {
        if let Some((_, at, held)) = self.said.iter_mut().find(|(said, _, _)| said == cause) {
            if now_ms - *at < UNAVAILABLE_SAY_EVERY_MS {
                *held += 1;
                return None;
            }
            *at = now_ms;
            return Some(std::mem::take(held));
        }
        if self.said.len() >= UNAVAILABLE_CAUSES_KEPT {
            if let Some(oldest) = (0..self.said.len()).min_by_key(|&i| self.said[i].1) {
                self.said.swap_remove(oldest);
            }
        }
        self.said.push((cause.to_string(), now_ms, 0));
        Some(0)
    }
}

static UNAVAILABLE_LOG: std::sync::Mutex<UnavailableLog> = std::sync::Mutex::new(UnavailableLog { said: Vec::new() });

fn say_unavailable(cause: &UnavailableCause) {
    let now = crate::clock::now().timestamp_millis();
    // A panic elsewhere while holding the lock leaves the counters usable.
    let admitted = UNAVAILABLE_LOG
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .admit(&cause.text, now);
    if let Some(held) = admitted {
        tracing::warn!(cause = %cause.text, held_back = held, "the database is unavailable");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_field_is_kept_by_type_and_worded_as_before() {
        let e = ServiceError::from(DomainError::invalid("reason", "is required for prod-db read"));
        let ServiceError::Invalid(invalid) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(invalid.field.as_deref(), Some("reason"));
        assert_eq!(invalid.message, "is required for prod-db read");
        assert_eq!(e.to_string(), "reason: is required for prod-db read");
        assert_eq!(
            invalid.clone().in_item(1).to_string(),
            "items[1].reason: is required for prod-db read"
        );
        let no_ticket = ServiceError::from(DomainError::invalid_because(
            "reason",
            "must mention a ticket",
            Problem::NoTicket { example: None },
        ));
        assert!(
            matches!(&no_ticket, ServiceError::Invalid(i) if i.problem == Some(Problem::NoTicket { example: None })),
            "{no_ticket:?}"
        );
        assert_eq!(
            ServiceError::invalid("give at least one item").to_string(),
            "give at least one item"
        );

        let long = ServiceError::from(DomainError::TooLong {
            field: "reason",
            len: 9000,
            max: 2000,
        });
        assert_eq!(long.to_string(), "reason: is 9000 bytes; keep it under 2000");
        assert_eq!(long.limit(), Some(Limit::FieldLength));
        assert!(matches!(&long, ServiceError::TooLong(i) if i.field.as_deref() == Some("reason")));
    }

    #[test]
    fn an_unavailable_database_is_unavailable_never_internal() {
        let e = ServiceError::from(StoreError::Unavailable("the write did not commit within 5 s".into()));
        assert!(
            matches!(&e, ServiceError::Unavailable(m) if m == "the database is unavailable; try again shortly"),
            "{e:?}"
        );
        let diverged = ServiceError::from(StoreError::Diverged("event 7 is gone".into()));
        assert!(
            matches!(&diverged, ServiceError::Unavailable(m) if m.contains("event 7 is gone")),
            "{diverged:?}"
        );
        let cause = unavailable_cause(&StoreError::Unavailable("no connection".into()));
        assert!(!cause.told, "a store's own words stay in the log: {cause:?}");
    }

    /// CI failed on this: a cut connection was said, and the read-only node met right after
    /// was held back for five seconds, so the operator's log never named it.
    #[test]
    fn each_cause_is_said_at_once_and_then_at_most_every_five_seconds() {
        let cut = "the database is shutting down or ended the connection";
        let read_only = "the database refused the write: the node is read-only (a standby?)";
        let mut log = UnavailableLog::default();
        assert_eq!(log.admit(cut, 1_000), Some(0));
        assert_eq!(log.admit(cut, 1_100), None, "the same cause within 5 s is held back");
        assert_eq!(log.admit(read_only, 1_200), Some(0), "a new cause is said at once");
        assert_eq!(log.admit(cut, 1_300), None, "causes taking turns do not flood the log");
        assert_eq!(log.admit(read_only, 1_400), None);
        assert_eq!(log.admit(read_only, 6_199), None);
        assert_eq!(
            log.admit(read_only, 6_200),
            Some(2),
            "said again after 5 s, with the count"
        );
        assert_eq!(log.admit(cut, 6_300), Some(2));
    }

    #[test]
    fn causes_that_keep_changing_are_remembered_within_a_bound() {
        let mut log = UnavailableLog::default();
        for i in 0..1_000 {
            assert_eq!(log.admit(&format!("connection reset by 10.0.0.{i}"), i), Some(0));
        }
        assert_eq!(log.said.len(), UNAVAILABLE_CAUSES_KEPT);
        assert_eq!(
            log.admit("connection reset by 10.0.0.999", 1_000),
            None,
            "the newest is kept"
        );
    }
}
