//! jitgate's domain, free of I/O and of the clock.
//!
//! Everything that decides (who may file what, who must approve, when a grant allows) lives
//! here as plain data and pure functions. The current time is always an argument, so tests can
//! walk the clock and replicas agree on what "now" means for a decision.

pub mod admission;
pub mod audit;
pub mod authz;
pub mod canonical;
pub mod duration;
pub mod error;
pub mod github;
pub mod identity;
pub mod index;
pub mod keys;
pub mod machine;
pub mod model;
pub mod outbox;
pub mod scim;
pub mod text;
pub mod token;

pub use admission::{Admission, Ask};
pub use audit::{chain_hash, AuditEvent, EventKind, NewEvent};
pub use duration::{format_duration, parse_duration, DurationSecs};
pub use error::{DomainError, Problem};
pub use identity::{principal_name_problem, CiClaims, Identity, PrincipalKind};
pub use index::{CheckOutcome, GrantIndex};
pub use model::{
    payload_digest, Approval, Escalation, Grant, GrantStatus, Item, Request, RequestStatus, Requirement, Review, Step,
};
pub use token::{ApiToken, TokenStatus};

/// Timestamps are UTC with millisecond precision everywhere: the stores keep milliseconds,
/// so truncating on the way in makes a value read back equal to the value written.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// Truncate a timestamp to whole milliseconds.
pub fn millis(t: Timestamp) -> Timestamp {
    chrono::DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}
