//! Denied checks, counted instead of logged one by one: a service that keeps checking access
//! nobody holds (or an attacker probing) would otherwise swamp the log. Each window, every
//! distinct (checker, principal, resource, action) that was denied becomes one `check.denied`
//! event with the count, the first and last time, and the last reason. At most `MAX_KEYS`
//! distinct ones are kept per window; the rest are summed into one overflow event, so memory and
//! log volume stay bounded whatever the callers do.

use crate::clock::now;
use jitgate_core::audit::{EventKind, NewEvent, SYSTEM_ACTOR};
use jitgate_core::Timestamp;
use parking_lot::Mutex;
use std::collections::HashMap;

/// Distinct denied (checker, principal, resource, action) kept per window.
pub const MAX_KEYS: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    checker: String,
    principal: String,
    resource: String,
    action: String,
}

#[derive(Debug)]
struct Tally {
    count: u64,
    first: Timestamp,
    last: Timestamp,
    reason: String,
}

#[derive(Default)]
struct Window {
    tallies: HashMap<Key, Tally>,
    overflow: u64,
    overflow_keys: std::collections::HashSet<u64>,
}

/// The current window's denied checks.
#[derive(Default)]
pub struct DeniedChecks {
    window: Mutex<Window>,
    /// Events of earlier windows the store could not take (it was down): written first, next
    /// time. Bounded by `MAX_UNSAVED`.
    unsaved: Mutex<Vec<NewEvent>>,
}

/// Events of failed windows kept for the next try: beyond this, the oldest are dropped (and
/// said so in the log) rather than let memory grow while the database is away.
const MAX_UNSAVED: usize = 10 * (MAX_KEYS + 1);

impl DeniedChecks {
    /// Count one denied check. Cheap: one short lock, no I/O.
    pub fn record(&self, checker: &str, principal: &str, resource: &str, action: &str, reason: &str, at: Timestamp) {
        let key = Key {
            checker: checker.to_string(),
            principal: principal.to_string(),
            resource: resource.to_string(),
            action: action.to_string(),
        };
        let mut window = self.window.lock();
        let full = window.tallies.len() >= MAX_KEYS;
        match window.tallies.get_mut(&key) {
            Some(tally) => {
                tally.count += 1;
                tally.last = at;
                if tally.reason != reason {
                    tally.reason = reason.to_string();
                }
            }
            None if full => {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                key.hash(&mut h);
                window.overflow += 1;
                // Distinct keys in the overflow, approximately (a hash each; bounded too).
                if window.overflow_keys.len() < MAX_KEYS {
                    window.overflow_keys.insert(h.finish());
                }
            }
            None => {
                window.tallies.insert(
                    key,
                    Tally {
                        count: 1,
                        first: at,
                        last: at,
                        reason: reason.to_string(),
                    },
                );
            }
        }
    }

    /// The window's events, and a fresh window.
    fn take(&self, at: Timestamp) -> (Vec<NewEvent>, u64) {
        let window = std::mem::take(&mut *self.window.lock());
        let mut events: Vec<NewEvent> = window
            .tallies
            .into_iter()
            .map(|(key, tally)| NewEvent {
                kind: EventKind::CheckDenied,
                at,
                actor: key.checker,
                subject: key.principal,
                request_id: None,
                grant_id: None,
                resource: key.resource,
                action: key.action,
                comment: Some(format!(
                    "{} denied from {} to {}: {}",
                    tally.count,
                    tally.first.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    tally.last.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    tally.reason
                )),
            })
            .collect();
        // A stable order in the log: by principal, resource, action, checker.
        events.sort_by(|a, b| {
            (&a.subject, &a.resource, &a.action, &a.actor).cmp(&(&b.subject, &b.resource, &b.action, &b.actor))
        });
        if window.overflow > 0 {
            events.push(summary_event(
                at,
                format!(
                    "{} more denied checks for about {} other checker/principal/resource/action combinations (over {MAX_KEYS} in one window)",
                    window.overflow,
                    window.overflow_keys.len()
                ),
            ));
        }
        (events, window.overflow)
    }
}

/// A `check.denied` event about many combinations at once (the system's, for `*`).
fn summary_event(at: Timestamp, comment: String) -> NewEvent {
    NewEvent {
        kind: EventKind::CheckDenied,
        at,
        actor: SYSTEM_ACTOR.into(),
        subject: "*".into(),
        request_id: None,
        grant_id: None,
        resource: "*".into(),
        action: "*".into(),
        comment: Some(comment),
    }
}

/// Write what was counted, after what earlier windows could not write.
pub async fn flush(denied: &DeniedChecks, store: &dyn jitgate_store::Store, metrics: &crate::metrics::Metrics) {
    let (fresh, overflow) = denied.take(now());
    metrics.denied_checks_overflow.inc_by(overflow);
    let mut events = std::mem::take(&mut *denied.unsaved.lock());
    events.extend(fresh);
    if events.is_empty() {
        return;
    }
    if let Err(error) = store.append_events(&events).await {
        tracing::warn!(%error, events = events.len(), "cannot record denied checks; keeping them for the next window");
        if events.len() > MAX_UNSAVED {
            let dropped = events.len() - MAX_UNSAVED;
            events.drain(..dropped);
            events.push(summary_event(
                now(),
                format!("{dropped} denied-check events of earlier windows were dropped: the database was unavailable"),
            ));
        }
        let mut unsaved = denied.unsaved.lock();
        events.append(&mut unsaved);
        *unsaved = events;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_counted_and_bounded() {
        let denied = DeniedChecks::default();
        let at = now();
        for _ in 0..1000 {
            denied.record("svc", "mallory", "prod-db", "read", "no active grant", at);
        }
        for n in 0..(MAX_KEYS + 500) {
            denied.record("svc", &format!("p{n}"), "prod-db", "read", "no active grant", at);
        }
        let (events, overflow) = denied.take(at);
        assert_eq!(
            events.len(),
            MAX_KEYS + 1,
            "the distinct ones kept, and one overflow event"
        );
        assert_eq!(overflow, 501);
        let mallory = events
            .iter()
            .find(|e| e.subject == "mallory")
            .map(|e| e.comment.clone());
        assert!(
            mallory.flatten().is_some_and(|c| c.starts_with("1000 denied from ")),
            "one event for a thousand denials"
        );
        let last = events.last().and_then(|e| e.comment.clone()).unwrap_or_default();
        assert!(last.starts_with("501 more denied checks"), "{last}");
        assert!(denied.take(at).0.is_empty(), "a fresh window");
    }
}
