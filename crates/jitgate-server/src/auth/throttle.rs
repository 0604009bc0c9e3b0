//! Slowing down guessers: failed authentications are counted per source address, and once a
//! source has more than a few within the window, each of its requests is held back for a delay
//! that doubles with every further failure, up to a cap. A request that authenticates does not
//! clear the count (a guesser holding one valid token must not be able to reset it).

use super::config::{duration, ConfigError, ThrottleConfig};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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
    /// Whether any source is being slowed, so the hot path pays one atomic load otherwise.
    any_slowed: AtomicBool,
}

impl Throttle {
    pub fn new(config: &ThrottleConfig) -> Result<Throttle, ConfigError> {
        Ok(Throttle {
            free: config.free_failures,
            window: duration("throttle.window", &config.window)?,
            max_delay: duration("throttle.max_delay", &config.max_delay)?,
            sources: Mutex::new(HashMap::new()),
            any_slowed: AtomicBool::new(false),
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

    /// How long a request from `source` must wait before it is looked at.
    pub fn delay(&self, source: Option<IpAddr>) -> Duration {
        if !self.any_slowed.load(Ordering::Relaxed) {
            return Duration::ZERO;
        }
        let Some(ip) = source else {
            return Duration::ZERO;
        };
        let sources = self.sources.lock();
        match sources.get(&ip) {
            Some(f) if f.since.elapsed() < self.window => self.delay_for(f.count),
            _ => Duration::ZERO,
        }
    }

    /// Count a failure from `source`.
    pub fn record_failure(&self, source: Option<IpAddr>) {
        let Some(ip) = source else {
            return;
        };
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
        entry.count = entry.count.saturating_add(1);
        if entry.count > self.free {
            self.any_slowed.store(true, Ordering::Relaxed);
        }
    }

    /// How many sources are being slowed now (for the metric).
    pub fn slowed_sources(&self) -> usize {
        let sources = self.sources.lock();
        sources
            .values()
            .filter(|f| f.count > self.free && f.since.elapsed() < self.window)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(free: u32) -> Throttle {
        Throttle::new(&ThrottleConfig {
            free_failures: free,
            window: "5m".into(),
            max_delay: "2s".into(),
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn delays_double_past_the_free_failures_up_to_the_cap() {
        let t = throttle(3);
        let ip: IpAddr = [10, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 2].into();
        for _ in 0..3 {
            t.record_failure(Some(ip));
        }
        assert_eq!(t.delay(Some(ip)), Duration::ZERO);
        t.record_failure(Some(ip));
        assert_eq!(t.delay(Some(ip)), Duration::from_millis(100));
        t.record_failure(Some(ip));
        assert_eq!(t.delay(Some(ip)), Duration::from_millis(200));
        for _ in 0..40 {
            t.record_failure(Some(ip));
        }
        assert_eq!(t.delay(Some(ip)), Duration::from_secs(2));
        // Another source is not slowed by this one's failures.
        assert_eq!(t.delay(Some(other)), Duration::ZERO);
        assert_eq!(t.slowed_sources(), 1);
    }
}
