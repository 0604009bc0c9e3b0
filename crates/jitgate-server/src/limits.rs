//! Limits the server's config sets (`[limits]`): how fast one principal may file requests (a
//! token bucket per principal, so a runaway CI loop or a compromised token cannot flood
//! reviewers, the store and the audit log) and how many callers may wait for decisions at
//! once. A call over either gets a 429 (a filing's says when to try again), counted in
//! `jitgate_limits_exceeded_total{outcome="rate"|"waiters"}`.

use parking_lot::Mutex;
use serde::Deserialize;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The most principals remembered; past it, buckets that have refilled are forgotten (a full
/// bucket is what a new principal starts with anyway).
const MAX_PRINCIPALS: usize = 100_000;

/// The `[limits]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Requests one principal may file per minute, on average; 0 turns the limit off.
    #[serde(default = "default_per_minute")]
    pub requests_per_minute: u32,
    /// How many one principal may file at once before the rate applies.
    #[serde(default = "default_burst")]
    pub requests_burst: u32,
    /// Callers waiting for decisions at once (`GET /v1/requests/{id}?wait=...`).
    #[serde(default = "default_max_waiters")]
    pub max_waiters: usize,
}

fn default_max_waiters() -> usize {
    10_000
}

fn default_per_minute() -> u32 {
    300
}

fn default_burst() -> u32 {
    100
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            requests_per_minute: default_per_minute(),
            requests_burst: default_burst(),
            max_waiters: default_max_waiters(),
        }
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The `[limits]` in force: filings per principal, and waiters.
pub struct CallerLimits {
    config: Mutex<LimitsConfig>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Default for CallerLimits {
    fn default() -> Self {
        CallerLimits::new(LimitsConfig::default())
    }
}

impl CallerLimits {
    pub fn new(config: LimitsConfig) -> CallerLimits {
        CallerLimits {
            config: Mutex::new(config),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Callers that may wait for decisions at once.
    pub fn max_waiters(&self) -> usize {
        self.config.lock().max_waiters
    }

    pub fn configure(&self, config: LimitsConfig) {
        *self.config.lock() = config;
        self.buckets.lock().clear();
    }

    /// Take one filing for `principal` at `now`, or say how long until it may file again.
    pub fn take(&self, principal: &str, now: Instant) -> Result<(), Duration> {
        let (requests_per_minute, requests_burst) = {
            let config = self.config.lock();
            (config.requests_per_minute, config.requests_burst)
        };
        if requests_per_minute == 0 {
            return Ok(());
        }
        let per_second = f64::from(requests_per_minute) / 60.0;
        let burst = f64::from(requests_burst.max(1));
        let mut buckets = self.buckets.lock();
        if buckets.len() >= MAX_PRINCIPALS && !buckets.contains_key(principal) {
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * per_second < burst);
        }
        let bucket = buckets
            .entry(principal.to_string())
            .or_insert(Bucket { tokens: burst, at: now });
        let refilled = bucket.tokens + now.saturating_duration_since(bucket.at).as_secs_f64() * per_second;
        bucket.tokens = refilled.min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_second))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_minute: u32, burst: u32) -> CallerLimits {
        CallerLimits::new(LimitsConfig {
            requests_per_minute: per_minute,
            requests_burst: burst,
            ..LimitsConfig::default()
        })
    }

    #[test]
    fn a_burst_then_the_rate_per_principal() {
        let limit = rate(60, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limit.take("ann", t0).is_ok());
        }
        let wait = limit.take("ann", t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // Someone else is not held back by ann.
        assert!(limit.take("bob", t0).is_ok());
        // One a second comes back, and no more than the burst accumulates.
        assert!(limit.take("ann", t0 + Duration::from_secs(1)).is_ok());
        assert!(limit.take("ann", t0 + Duration::from_secs(1)).is_err());
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert!(limit.take("ann", later).is_ok());
        }
        assert!(limit.take("ann", later).is_err());
    }

    #[test]
    fn zero_turns_it_off() {
        let limit = rate(0, 1);
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert!(limit.take("ci", t0).is_ok());
        }
    }
}
