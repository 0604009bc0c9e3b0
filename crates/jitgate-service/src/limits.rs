//! Limits the server's config sets (`[limits]`): how fast one principal may file requests and
//! make any other write it can repeat (a token bucket per principal for each, so a runaway CI
//! loop or a compromised token cannot flood reviewers, the store and the audit log), how many
//! requests one principal may keep pending (so nobody can bury the reviewers' inbox), and how
//! many callers, and callers per principal, may wait for decisions at once (so one principal
//! cannot take every place). A call over any gets a 429, counted in
//! `jitgate_limits_exceeded_total{outcome="rate"|"pending"|"waiters"}`; one that lifts with
//! time says when in `Retry-After`.

use parking_lot::Mutex;
use serde::Deserialize;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The most principals remembered; past it, buckets that have refilled are forgotten (a full
/// bucket is what a new principal starts with anyway).
const MAX_PRINCIPALS: usize = 100_000;

/// What a caller refused a place among the waiters is told to wait before asking again (or to
/// ask without `wait`, as `jitgate gate` then does at this interval).
pub const WAITERS_RETRY_AFTER: Duration = Duration::from_secs(3);

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
    /// Other writes one principal may make per minute, on average (approve, deny, cancel,
    /// review, revoke, extend, done, SSH certificates, database credentials, tokens, key
    /// rotation, checkpoints; from the API, the web UI and Slack alike); 0 turns it off.
    #[serde(default = "default_writes_per_minute")]
    pub writes_per_minute: u32,
    /// How many such writes one principal may make at once before the rate applies.
    #[serde(default = "default_writes_burst")]
    pub writes_burst: u32,
    /// Requests one principal may have pending (waiting for reviewers) at once; 0 turns the
    /// limit off. Requests approved at once (automatic, break-glass) never count.
    #[serde(default = "default_max_pending")]
    pub max_pending_per_requester: u32,
    /// Callers waiting for decisions at once (`GET /v1/requests/{id}?wait=...`).
    #[serde(default = "default_max_waiters")]
    pub max_waiters: usize,
    /// Of those, how many one principal may hold.
    #[serde(default = "default_max_waiters_per_principal")]
    pub max_waiters_per_principal: usize,
}

fn default_max_waiters() -> usize {
    10_000
}

fn default_max_waiters_per_principal() -> usize {
    10
}

fn default_per_minute() -> u32 {
    300
}

fn default_burst() -> u32 {
    100
}

fn default_writes_per_minute() -> u32 {
    300
}

fn default_writes_burst() -> u32 {
    100
}

fn default_max_pending() -> u32 {
    20
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            requests_per_minute: default_per_minute(),
            requests_burst: default_burst(),
            writes_per_minute: default_writes_per_minute(),
            writes_burst: default_writes_burst(),
            max_pending_per_requester: default_max_pending(),
            max_waiters: default_max_waiters(),
            max_waiters_per_principal: default_max_waiters_per_principal(),
        }
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A token bucket per principal: `burst` at once, then `per_minute` on average.
#[derive(Default)]
struct Buckets(Mutex<HashMap<String, Bucket>>);

impl Buckets {
    /// Take one for `principal` at `now`, or say how long until one is there.
    fn take(&self, principal: &str, per_minute: u32, burst: u32, now: Instant) -> Result<(), Duration> {
        if per_minute == 0 {
            return Ok(());
        }
        let per_second = f64::from(per_minute) / 60.0;
        let burst = f64::from(burst.max(1));
        let mut buckets = self.0.lock();
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

    fn clear(&self) {
        self.0.lock().clear();
    }
}

/// Why a caller may not wait for a decision now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitRefused {
    /// `max_waiters` callers wait already.
    Full(usize),
    /// The principal holds `max_waiters_per_principal` places already.
    PrincipalFull(usize),
}

/// Who waits for decisions now: in all, and per principal.
#[derive(Default)]
struct WaitingRoom {
    total: usize,
    by_principal: HashMap<String, usize>,
}

/// The `[limits]` in force: filings and writes per principal, pending requests, and waiters.
pub struct CallerLimits {
    config: Mutex<LimitsConfig>,
    filings: Buckets,
    writes: Buckets,
    waiting: Mutex<WaitingRoom>,
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
            filings: Buckets::default(),
            writes: Buckets::default(),
            waiting: Mutex::new(WaitingRoom::default()),
        }
    }

    /// Requests one principal may have pending at once; `None` when unlimited.
    pub fn max_pending_per_requester(&self) -> Option<u32> {
        Some(self.config.lock().max_pending_per_requester).filter(|&n| n > 0)
    }

    pub fn configure(&self, config: LimitsConfig) {
        *self.config.lock() = config;
        self.filings.clear();
        self.writes.clear();
    }

    /// Take one filing for `principal` at `now`, or say how long until it may file again.
    pub fn take(&self, principal: &str, now: Instant) -> Result<(), Duration> {
        let (per_minute, burst) = {
            let config = self.config.lock();
            (config.requests_per_minute, config.requests_burst)
        };
        self.filings.take(principal, per_minute, burst, now)
    }

    /// Take one write (anything but a filing) for `principal` at `now`, or say how long until
    /// it may write again.
    pub fn take_write(&self, principal: &str, now: Instant) -> Result<(), Duration> {
        let (per_minute, burst) = {
            let config = self.config.lock();
            (config.writes_per_minute, config.writes_burst)
        };
        self.writes.take(principal, per_minute, burst, now)
    }

    /// Take a place among the callers waiting for decisions; give it back with
    /// [`CallerLimits::leave_waiting`].
    pub fn enter_waiting(&self, principal: &str) -> Result<(), WaitRefused> {
        let (max_waiters, per_principal) = {
            let config = self.config.lock();
            (config.max_waiters, config.max_waiters_per_principal)
        };
        let mut room = self.waiting.lock();
        if room.total >= max_waiters {
            return Err(WaitRefused::Full(max_waiters));
        }
        let held = room.by_principal.get(principal).copied().unwrap_or(0);
        if held >= per_principal {
            return Err(WaitRefused::PrincipalFull(per_principal));
        }
        room.total += 1;
        room.by_principal.insert(principal.to_string(), held + 1);
        Ok(())
    }

    pub fn leave_waiting(&self, principal: &str) {
        let mut room = self.waiting.lock();
        room.total = room.total.saturating_sub(1);
        if let Some(held) = room.by_principal.get_mut(principal) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                room.by_principal.remove(principal);
            }
        }
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

    #[test]
    fn writes_have_their_own_bucket_per_principal() {
        let limit = CallerLimits::new(LimitsConfig {
            requests_per_minute: 60,
            requests_burst: 1,
            writes_per_minute: 60,
            writes_burst: 2,
            ..LimitsConfig::default()
        });
        let t0 = Instant::now();
        assert!(limit.take_write("ann", t0).is_ok());
        assert!(limit.take_write("ann", t0).is_ok());
        assert!(limit.take_write("ann", t0).is_err());
        // Writing did not spend ann's filings, and ann's writes did not spend bob's.
        assert!(limit.take("ann", t0).is_ok());
        assert!(limit.take_write("bob", t0).is_ok());
        assert!(limit.take_write("ann", t0 + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn one_principal_cannot_take_every_place_among_the_waiters() {
        let limit = CallerLimits::new(LimitsConfig {
            max_waiters: 3,
            max_waiters_per_principal: 2,
            ..LimitsConfig::default()
        });
        assert_eq!(limit.enter_waiting("ann"), Ok(()));
        assert_eq!(limit.enter_waiting("ann"), Ok(()));
        assert_eq!(limit.enter_waiting("ann"), Err(WaitRefused::PrincipalFull(2)));
        assert_eq!(limit.enter_waiting("bob"), Ok(()));
        assert_eq!(limit.enter_waiting("carl"), Err(WaitRefused::Full(3)));
        limit.leave_waiting("ann");
        assert_eq!(limit.enter_waiting("carl"), Ok(()));
        assert_eq!(limit.enter_waiting("ann"), Err(WaitRefused::Full(3)));
        for who in ["ann", "bob", "carl"] {
            limit.leave_waiting(who);
        }
        assert_eq!(limit.enter_waiting("ann"), Ok(()));
        assert_eq!(limit.enter_waiting("ann"), Ok(()));
    }
}
