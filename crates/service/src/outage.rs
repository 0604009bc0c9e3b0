//! Saying that work keeps failing without saying it at every retry: the background loops
//! retry every fraction of a second, and a database away for a minute (a failover) must be a
//! few warnings in the log, not hundreds of lines, and a line when it ends.

use std::time::{Duration, Instant};

/// A warning about the same failure is repeated at most this often while it lasts.
pub const REPEAT: Duration = Duration::from_secs(30);

/// One kind of work's failures in a row.
#[derive(Debug, Default)]
pub struct Outage {
    since: Option<Instant>,
    said: Option<Instant>,
    failures: u64,
}

impl Outage {
    /// The work failed again: warn on the first failure and every `REPEAT` after.
    pub fn failed(&mut self, error: &dyn std::fmt::Display, what: &str) {
        let now = Instant::now();
        self.failures += 1;
        self.since.get_or_insert(now);
        if self.said.is_none_or(|said| now.duration_since(said) >= REPEAT) {
            self.said = Some(now);
            tracing::warn!(error = %error, failures = self.failures, "{what}");
        }
    }

    /// The work succeeded: if it had been failing, say so once.
    pub fn ended(&mut self, what: &str) {
        if let Some(since) = self.since.take() {
            let after_ms = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX);
            tracing::info!(after_ms, failures = self.failures, "{what}");
        }
        self.said = None;
        self.failures = 0;
    }

    /// Whether the work is failing now.
    pub fn is_on(&self) -> bool {
        self.since.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_failures_is_said_once_until_it_ends() {
        let mut outage = Outage::default();
        assert!(!outage.is_on());
        for _ in 0..100 {
            outage.failed(&"connection refused", "cannot read the outbox; retrying");
        }
        assert!(outage.is_on());
        assert_eq!(outage.failures, 100);
        let said = outage.said;
        outage.failed(&"connection refused", "cannot read the outbox; retrying");
        assert_eq!(outage.said, said, "not said again within REPEAT");
        outage.ended("reading the outbox again");
        assert!(!outage.is_on());
        assert_eq!(outage.failures, 0);
        assert_eq!(outage.said, None);
    }
}
