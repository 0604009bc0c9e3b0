//! The one place the service reads the clock. The core never does (time is passed in), so
//! every transition it computes can be tested at any moment.

use jitgate_core::{millis, Timestamp};

/// The current time, to the millisecond the stores keep.
pub fn now() -> Timestamp {
    millis(chrono::Utc::now())
}
