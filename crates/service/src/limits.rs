//! Limits the server's config sets (`[limits]`): how fast one principal may file requests and
//! make any other write it can repeat (a token bucket per principal for each, so a runaway CI
//! loop or a compromised token cannot flood reviewers, the store and the audit log), how many
//! requests one principal may keep pending (so nobody can bury the reviewers' inbox), and how
//! many callers, and callers per principal, may wait for decisions at once (so one principal
//! cannot take every place). A call over any gets a 429, counted in
//! `jitgate_limits_exceeded_total{outcome="rate"|"pending"|"waiters"}`; one that lifts with
//! time says when in `Retry-After`.

use governor::clock::Clock;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use parking_lot::{Mutex, RwLock};
use serde::Deserialize;
use std::cell::Cell;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

/// The most principals remembered; past it, those whose bucket has refilled are forgotten (a
/// full bucket is what a new principal starts with anyway).
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

thread_local! {
    /// The instant the call on this thread is decided at (see [`CallClock`]).
    static CALL_AT: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// governor's clock, reading the instant the caller passed for the call being decided on this
/// thread (governor asks its clock rather than taking an instant), so a limit is decided at
/// the time its caller says, and tests can move time. Outside a call it is the real time.
#[derive(Clone, Copy, Debug, Default)]
struct CallClock;

impl Clock for CallClock {
    type Instant = Instant;

    fn now(&self) -> Instant {
        CALL_AT.with(Cell::get).unwrap_or_else(Instant::now)
    }
}

/// Run `f` with [`CallClock`] reading `now` on this thread.
fn at<T>(now: Instant, f: impl FnOnce() -> T) -> T {
    let before = CALL_AT.with(|at| at.replace(Some(now)));
    let result = f();
    CALL_AT.with(|at| at.set(before));
    result
}

type Limiter = RateLimiter<String, DefaultKeyedStateStore<String>, CallClock>;

/// A token bucket per principal (governor's keyed GCRA): `burst` at once, then `per_minute`
/// on average; `None` when the limit is off.
#[derive(Default)]
struct Buckets(RwLock<Option<Limiter>>);

impl Buckets {
    /// Forget every principal and count at `per_minute` with `burst` from now on.
    fn configure(&self, per_minute: u32, burst: u32) {
        let limiter = NonZeroU32::new(per_minute).map(|per_minute| {
            let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
            let quota = Quota::per_minute(per_minute).allow_burst(burst);
            RateLimiter::new(quota, DefaultKeyedStateStore::default(), CallClock)
        });
        *self.0.write() = limiter;
    }

    /// Take one for `principal` at `now`, or say how long until one is there.
    fn take(&self, principal: &str, now: Instant) -> Result<(), Duration> {
        let limiter = self.0.read();
        let Some(limiter) = limiter.as_ref() else {
            return Ok(());
        };
        at(now, || {
            let taken = limiter
                .check_key(&principal.to_string())
                .map_err(|not_until| not_until.wait_time_from(now));
            if limiter.len() > MAX_PRINCIPALS {
                let before = limiter.len();
                limiter.retain_recent();
                if limiter.len() < before {
                    limiter.shrink_to_fit();
                }
            }
            taken
        })
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
        let limits = CallerLimits {
            config: Mutex::new(LimitsConfig::default()),
            filings: Buckets::default(),
            writes: Buckets::default(),
            waiting: Mutex::new(WaitingRoom::default()),
        };
        limits.configure(config);
        limits
    }

    /// Requests one principal may have pending at once; `None` when unlimited.
    pub fn max_pending_per_requester(&self) -> Option<u32> {
        Some(self.config.lock().max_pending_per_requester).filter(|&n| n > 0)
    }

    pub fn configure(&self, config: LimitsConfig) {
        self.filings
            .configure(config.requests_per_minute, config.requests_burst);
        self.writes.configure(config.writes_per_minute, config.writes_burst);
        *self.config.lock() = config;
    }

    /// Take one filing for `principal` at `now`, or say how long until it may file again.
    pub fn take(&self, principal: &str, now: Instant) -> Result<(), Duration> {
        self.filings.take(principal, now)
    }

    /// Take one write (anything but a filing) for `principal` at `now`, or say how long until
    /// it may write again.
    pub fn take_write(&self, principal: &str, now: Instant) -> Result<(), Duration> {
        self.writes.take(principal, now)
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
    fn principals_whose_bucket_refilled_are_forgotten_past_the_bound() {
        let limit = rate(60, 1);
        let t0 = Instant::now();
        for n in 0..=MAX_PRINCIPALS {
            assert!(limit.take(&format!("p{n}"), t0).is_ok());
        }
        let remembered = || limit.filings.0.read().as_ref().map_or(0, |l| l.len());
        // Past the bound, nobody's bucket has refilled yet: all are remembered still.
        assert_eq!(remembered(), MAX_PRINCIPALS + 1);
        assert!(limit.take("p0", t0).is_err());
        // A minute later every bucket is full again, so the next newcomer sweeps them away.
        assert!(limit.take("newcomer", t0 + Duration::from_secs(60)).is_ok());
        assert!(remembered() <= 1, "{}", remembered());
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
