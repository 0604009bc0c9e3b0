//! Slowing down guessers. A failed authentication is counted against its source address, and
//! once a source has more than a few failures within the window, each further *failing*
//! attempt from it is answered only after a delay that doubles with every failure, up to a cap.
//!
//! The delay is applied after the credential has been judged, and only to a refusal: a valid
//! credential is never held back, whoever else shares its address. So an attacker behind the
//! same NAT or load balancer as the services slows nothing but failing attempts, never a
//! `/v1/check` that authenticates. The count is per address rather than per presented
//! credential because a guesser presents a new credential on every try: a count keyed by the
//! credential would never see the same guesser twice.
//!
//! Held refusals are bounded twice: the table of sources is bounded (the oldest windows are
//! forgotten first), and at most `max_delayed` refusals are held at once across all sources;
//! past that a refusal is answered at once, so guessers cannot make the server hold unbounded
//! tasks and connections.

use super::config::{duration, ConfigError, ThrottleConfig};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The most sources remembered; beyond it the oldest windows are forgotten first.
const MAX_SOURCES: usize = 100_000;
/// The delay of the first failure past the free ones; it doubles from there.
const BASE_DELAY: Duration = Duration::from_millis(100);

struct Failures {
    count: u32,
    since: Instant,
}

pub struct Throttle {
    free: u32,
    window: Duration,
    max_delay: Duration,
    sources: Mutex<HashMap<IpAddr, Failures>>,
    /// One permit per refusal that may be held at once.
    holding: Arc<Semaphore>,
}

/// What to do with a refusal before answering it.
#[derive(Debug)]
pub enum Hold {
    /// Answer at once: the source is within its free failures (or unknown).
    None,
    /// Hold the answer this long, keeping the permit until it is sent.
    For(Duration, OwnedSemaphorePermit),
    /// The source should be slowed, but `max_delayed` refusals are held already: answer at once.
    Full,
}

impl Throttle {
    pub fn new(config: &ThrottleConfig) -> Result<Throttle, ConfigError> {
        Ok(Throttle {
            free: config.free_failures,
            window: duration("throttle.window", &config.window)?,
            max_delay: duration("throttle.max_delay", &config.max_delay)?,
            sources: Mutex::new(HashMap::new()),
            holding: Arc::new(Semaphore::new(config.max_delayed.min(Semaphore::MAX_PERMITS))),
        })
    }

    fn delay_for(&self, count: u32) -> Duration {
        let over = count.saturating_sub(self.free);
        if over == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(over - 1).unwrap_or(u32::MAX);
        BASE_DELAY.saturating_mul(factor).min(self.max_delay)
    }

    /// Count a failed authentication from `source` and say how long its refusal is held: the
    /// failures the source already had in the window decide, so a source's refusals are held
    /// once it has more than `free_failures` behind it.
    pub fn failure(&self, source: Option<IpAddr>) -> Hold {
        let Some(ip) = source else {
            return Hold::None;
        };
        let before = self.record_failure(ip);
        let delay = self.delay_for(before);
        if delay.is_zero() {
            return Hold::None;
        }
        match self.holding.clone().try_acquire_owned() {
            Ok(permit) => Hold::For(delay, permit),
            Err(_) => Hold::Full,
        }
    }

    /// Count a failure from `ip`; the count it had before.
    fn record_failure(&self, ip: IpAddr) -> u32 {
        let mut sources = self.sources.lock();
        if sources.len() >= MAX_SOURCES && !sources.contains_key(&ip) {
            let window = self.window;
            sources.retain(|_, f| f.since.elapsed() < window);
            if sources.len() >= MAX_SOURCES {
                if let Some(oldest) = sources.iter().min_by_key(|(_, f)| f.since).map(|(ip, _)| *ip) {
                    sources.remove(&oldest);
                }
            }
        }
        let entry = sources.entry(ip).or_insert(Failures {
            count: 0,
            since: Instant::now(),
        });
        if entry.since.elapsed() >= self.window {
            *entry = Failures {
                count: 0,
                since: Instant::now(),
            };
        }
        let before = entry.count;
        entry.count = entry.count.saturating_add(1);
        before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(free: u32, max_delayed: usize) -> Throttle {
        Throttle::new(&ThrottleConfig {
            free_failures: free,
            window: "5m".into(),
            max_delay: "2s".into(),
            max_delayed,
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn delay(hold: Hold) -> Duration {
        match hold {
            Hold::For(d, _) => d,
            Hold::None => Duration::ZERO,
            Hold::Full => panic!("the throttle is full"),
        }
    }

    #[test]
    fn refusals_past_the_free_failures_are_held_doubling_up_to_the_cap() {
        let t = throttle(3, 100);
        let ip: IpAddr = [10, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 2].into();
        // The free failures, and the one that uses the last of them, are answered at once.
        for _ in 0..4 {
            assert_eq!(delay(t.failure(Some(ip))), Duration::ZERO);
        }
        assert_eq!(delay(t.failure(Some(ip))), Duration::from_millis(100));
        assert_eq!(delay(t.failure(Some(ip))), Duration::from_millis(200));
        for _ in 0..40 {
            t.failure(Some(ip));
        }
        assert_eq!(delay(t.failure(Some(ip))), Duration::from_secs(2));
        // Another source's first failures are not slowed by this one's.
        assert_eq!(delay(t.failure(Some(other))), Duration::ZERO);
        // A caller whose address is unknown cannot be counted.
        assert!(matches!(t.failure(None), Hold::None));
    }

    #[test]
    fn at_most_max_delayed_refusals_are_held_at_once() {
        let t = throttle(0, 2);
        let ip: IpAddr = [10, 0, 0, 1].into();
        assert!(matches!(t.failure(Some(ip)), Hold::None));
        let first = t.failure(Some(ip));
        let second = t.failure(Some(ip));
        assert!(matches!(first, Hold::For(..)), "{first:?}");
        assert!(matches!(second, Hold::For(..)), "{second:?}");
        assert!(matches!(t.failure(Some(ip)), Hold::Full));
        // A held refusal that is answered frees its place.
        drop(first);
        assert!(matches!(t.failure(Some(ip)), Hold::For(..)));
    }
}
