//! The in-memory index of live grants that answers `/v1/check`.
//!
//! A check is one hash lookup of (principal, resource, action) and a scan of the few grants
//! under that key, with expiry judged against the `now` passed in. The database stays the
//! source of truth; the server keeps this index in step with it.

use crate::model::{payload_digest, Grant, GrantStatus};
use crate::Timestamp;
// foldhash: several times faster than SipHash on short keys (a check hashes its key, loading
// a million grants hashes two million), seeded at random per index.
use foldhash::fast::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};

#[derive(Debug, Clone)]
struct Entry {
    grant_id: Box<str>,
    principal: Box<str>,
    resource: Box<str>,
    action: Box<str>,
    payload_sha256: Option<Box<str>>,
    single_use: bool,
    starts_at_ms: i64,
    expires_at_ms: i64,
}

/// What the index needs of an active grant, and all a store reads to load it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveGrant {
    pub id: String,
    pub principal: String,
    pub resource: String,
    pub action: String,
    pub payload_sha256: Option<String>,
    pub single_use: bool,
    pub starts_at_ms: i64,
    pub expires_at_ms: i64,
}

/// The answer to a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    /// A live grant covers it.
    Allow { grant_id: String, expires_at_ms: i64 },
    /// A live single-use grant covers it; it allows only if the caller consumes it first.
    AllowIfConsumed { grant_id: String, expires_at_ms: i64 },
    /// Nothing covers it; the text says why.
    Deny { reason: String },
}

/// How many recently ended grants are remembered to explain denials ("expired at T",
/// "revoked by bob"); the oldest is forgotten first. About 100 bytes each.
const RECENT_ENDINGS: usize = 100_000;

/// A grant that stopped allowing, kept under its key so that a denial can say why.
#[derive(Debug, Clone)]
struct Ending {
    grant_id: Box<str>,
    principal: Box<str>,
    resource: Box<str>,
    action: Box<str>,
    how: GrantStatus,
    by: Option<Box<str>>,
    at_ms: i64,
}

/// Live grants keyed by (principal, resource, action).
#[derive(Debug, Default)]
pub struct GrantIndex {
    hasher: RandomState,
    by_key: HashMap<u64, Vec<Entry>, RandomState>,
    key_of: HashMap<Box<str>, u64, RandomState>,
    /// The last grant that ended under each key, consulted only when a check is denied.
    endings: HashMap<u64, Ending, RandomState>,
    /// Keys of `endings` in the order they were written, to forget the oldest.
    ending_order: VecDeque<(u64, Box<str>)>,
}

impl GrantIndex {
    pub fn new() -> Self {
        Self::default()
    }

    fn key(&self, principal: &str, resource: &str, action: &str) -> u64 {
        let mut h = self.hasher.build_hasher();
        principal.hash(&mut h);
        resource.hash(&mut h);
        action.hash(&mut h);
        h.finish()
    }

    /// Number of grants held.
    pub fn len(&self) -> usize {
        self.key_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.key_of.is_empty()
    }

    /// Hold `grant` if it is active; drop it otherwise, remembering how it ended so that a
    /// denial can say why. Idempotent.
    pub fn upsert(&mut self, grant: &Grant) {
        self.remove(&grant.id);
        if grant.status != GrantStatus::Active {
            self.remember_ending(grant);
            return;
        }
        self.hold(Entry {
            grant_id: grant.id.as_str().into(),
            principal: grant.principal.as_str().into(),
            resource: grant.resource.as_str().into(),
            action: grant.action.as_str().into(),
            payload_sha256: grant.payload_sha256.as_deref().map(Into::into),
            single_use: grant.single_use,
            starts_at_ms: grant.starts_at.timestamp_millis(),
            expires_at_ms: grant.expires_at.timestamp_millis(),
        });
    }

    /// Hold an active grant read for the index alone (loading at start). Idempotent.
    pub fn insert_live(&mut self, grant: LiveGrant) {
        self.remove(&grant.id);
        self.hold(Entry {
            grant_id: grant.id.into_boxed_str(),
            principal: grant.principal.into_boxed_str(),
            resource: grant.resource.into_boxed_str(),
            action: grant.action.into_boxed_str(),
            payload_sha256: grant.payload_sha256.map(String::into_boxed_str),
            single_use: grant.single_use,
            starts_at_ms: grant.starts_at_ms,
            expires_at_ms: grant.expires_at_ms,
        });
    }

    fn hold(&mut self, entry: Entry) {
        let key = self.key(&entry.principal, &entry.resource, &entry.action);
        self.key_of.insert(entry.grant_id.clone(), key);
        // Most keys hold one grant: room for exactly one, not the four a first push reserves
        // (a third of the index's memory with a million grants).
        self.by_key
            .entry(key)
            .or_insert_with(|| Vec::with_capacity(1))
            .push(entry);
    }

    fn remember_ending(&mut self, grant: &Grant) {
        let key = self.key(&grant.principal, &grant.resource, &grant.action);
        let at_ms = match grant.status {
            GrantStatus::Expired => grant.expires_at.timestamp_millis(),
            _ => grant.ended_at.unwrap_or(grant.expires_at).timestamp_millis(),
        };
        if self.endings.get(&key).is_some_and(|e| e.at_ms > at_ms) {
            return;
        }
        let grant_id: Box<str> = grant.id.as_str().into();
        self.endings.insert(
            key,
            Ending {
                grant_id: grant_id.clone(),
                principal: grant.principal.as_str().into(),
                resource: grant.resource.as_str().into(),
                action: grant.action.as_str().into(),
                how: grant.status,
                by: grant.ended_by.as_deref().map(Into::into),
                at_ms,
            },
        );
        self.ending_order.push_back((key, grant_id));
        while self.ending_order.len() > RECENT_ENDINGS {
            if let Some((old_key, old_id)) = self.ending_order.pop_front() {
                if self.endings.get(&old_key).is_some_and(|e| e.grant_id == old_id) {
                    self.endings.remove(&old_key);
                }
            }
        }
    }

    /// Why nothing allows at this key, when a grant that ended recently explains it.
    fn explain_ending(&self, key: u64, principal: &str, resource: &str, action: &str) -> Option<String> {
        let e = self.endings.get(&key)?;
        if &*e.principal != principal || &*e.resource != resource || &*e.action != action {
            return None;
        }
        let at = chrono::DateTime::from_timestamp_millis(e.at_ms)?.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let how = match (e.how, e.by.as_deref()) {
            (GrantStatus::Expired, _) => format!("expired at {at}"),
            (GrantStatus::Revoked, Some(by)) => format!("was revoked by {by} at {at}"),
            (GrantStatus::Revoked, None) => format!("was revoked at {at}"),
            (GrantStatus::Used, _) => format!("was used by its single check at {at}"),
            (GrantStatus::Done, _) => format!("was ended by its holder (done) at {at}"),
            (GrantStatus::Active, _) => return None,
        };
        Some(format!(
            "{principal}'s grant {} for {action} on {resource} {how}; no active grant allows it now",
            e.grant_id
        ))
    }

    /// What the index holds of a live grant, by id: enough to sign its token without reading
    /// the store.
    pub fn live(&self, grant_id: &str) -> Option<LiveGrant> {
        let key = self.key_of.get(grant_id)?;
        let e = self.by_key.get(key)?.iter().find(|e| &*e.grant_id == grant_id)?;
        Some(LiveGrant {
            id: e.grant_id.to_string(),
            principal: e.principal.to_string(),
            resource: e.resource.to_string(),
            action: e.action.to_string(),
            payload_sha256: e.payload_sha256.as_deref().map(str::to_string),
            single_use: e.single_use,
            starts_at_ms: e.starts_at_ms,
            expires_at_ms: e.expires_at_ms,
        })
    }

    /// The principals holding grants here that equal `principal` when ASCII case is ignored
    /// (each once, `principal` itself included if it holds any): what a directory leaver holds
    /// under another spelling. A scan of every grant held: for the rare leaver, never a check.
    pub fn principals_like(&self, principal: &str) -> Vec<String> {
        let mut found: Vec<String> = Vec::new();
        for e in self.by_key.values().flatten() {
            if e.principal.eq_ignore_ascii_case(principal) && !found.iter().any(|f| **f == *e.principal) {
                found.push(String::from(&*e.principal));
            }
        }
        found
    }

    /// Forget a grant (revoked, used, expired). Idempotent.
    pub fn remove(&mut self, grant_id: &str) {
        let Some(key) = self.key_of.remove(grant_id) else {
            return;
        };
        if let Some(entries) = self.by_key.get_mut(&key) {
            entries.retain(|e| &*e.grant_id != grant_id);
            if entries.is_empty() {
                self.by_key.remove(&key);
            }
        }
    }

    /// Does a live grant cover exactly this principal, resource and action (and payload, for
    /// action-bound grants) at `now`? A reusable grant is preferred to a single-use one, and
    /// among equals the one that lasts longest.
    pub fn check(
        &self,
        principal: &str,
        resource: &str,
        action: &str,
        payload: Option<&str>,
        now: Timestamp,
    ) -> CheckOutcome {
        let now_ms = now.timestamp_millis();
        let key = self.key(principal, resource, action);
        let Some(entries) = self.by_key.get(&key) else {
            return match self.explain_ending(key, principal, resource, action) {
                Some(reason) => CheckOutcome::Deny { reason },
                None => deny_none(principal, resource, action),
            };
        };
        let mut digest: Option<String> = None;
        let mut best: Option<&Entry> = None;
        let mut saw_expired: Option<&Entry> = None;
        let mut saw_other_payload = false;
        for e in entries {
            if &*e.principal != principal || &*e.resource != resource || &*e.action != action {
                continue;
            }
            if now_ms < e.starts_at_ms {
                continue;
            }
            if now_ms >= e.expires_at_ms {
                if saw_expired.is_none_or(|x| x.expires_at_ms < e.expires_at_ms) {
                    saw_expired = Some(e);
                }
                continue;
            }
            if let Some(bound) = &e.payload_sha256 {
                let Some(payload) = payload else {
                    saw_other_payload = true;
                    continue;
                };
                let d = digest.get_or_insert_with(|| payload_digest(payload));
                if d.as_str() != &**bound {
                    saw_other_payload = true;
                    continue;
                }
            }
            let better = match best {
                None => true,
                Some(b) => (b.single_use, -b.expires_at_ms) > (e.single_use, -e.expires_at_ms),
            };
            if better {
                best = Some(e);
            }
        }
        // `String::from(&str)`, not `Box<str>::to_string()`, which goes through `Display` and
        // the formatter (a fifth of an allowed check's instructions).
        match best {
            Some(e) if e.single_use => CheckOutcome::AllowIfConsumed {
                grant_id: String::from(&*e.grant_id),
                expires_at_ms: e.expires_at_ms,
            },
            Some(e) => CheckOutcome::Allow {
                grant_id: String::from(&*e.grant_id),
                expires_at_ms: e.expires_at_ms,
            },
            None if saw_other_payload => CheckOutcome::Deny {
                reason: [
                    principal,
                    "'s grant for ",
                    action,
                    " on ",
                    resource,
                    " is bound to another payload",
                ]
                .concat(),
            },
            None => match saw_expired {
                // A grant that ended later (revoked, used, done) explains it better.
                Some(e) if self.endings.get(&key).is_none_or(|x| x.at_ms <= e.expires_at_ms) => CheckOutcome::Deny {
                    reason: format!(
                        "{principal}'s grant {} for {action} on {resource} expired at {}",
                        e.grant_id,
                        chrono::DateTime::from_timestamp_millis(e.expires_at_ms)
                            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                            .unwrap_or_default()
                    ),
                },
                _ => match self.explain_ending(key, principal, resource, action) {
                    Some(reason) => CheckOutcome::Deny { reason },
                    None => deny_none(principal, resource, action),
                },
            },
        }
    }
}

/// Reasons are joined with `concat` (one exact allocation), not `format!`: the formatting
/// machinery was half of a denied check's instructions (`scripts/profile-check.sh`).
fn deny_none(principal: &str, resource: &str, action: &str) -> CheckOutcome {
    CheckOutcome::Deny {
        reason: ["no active grant for ", principal, " to ", action, " on ", resource].concat(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn t0() -> Timestamp {
        chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    fn grant(id: &str, principal: &str, payload: Option<&str>, single_use: bool, secs: i64) -> Grant {
        Grant {
            id: id.into(),
            request_id: format!("r-{id}"),
            principal: principal.into(),
            resource: "prod-db".into(),
            action: "read".into(),
            payload_sha256: payload.map(payload_digest),
            single_use,
            break_glass: false,
            status: GrantStatus::Active,
            starts_at: t0(),
            expires_at: t0() + TimeDelta::seconds(secs),
            ended_at: None,
            ended_by: None,
            end_comment: None,
            extensions: 0,
            token: None,
            providers: Vec::new(),
        }
    }

    fn deny_reason(index: &GrantIndex, principal: &str, now: Timestamp) -> String {
        match index.check(principal, "prod-db", "read", None, now) {
            CheckOutcome::Deny { reason } => reason,
            other => panic!("expected a denial, got {other:?}"),
        }
    }

    #[test]
    fn the_spellings_of_a_principal_holding_grants_are_found_ignoring_ascii_case() {
        let mut index = GrantIndex::new();
        index.upsert(&grant("g1", "Alice@corp.com", None, false, 10));
        index.upsert(&grant("g2", "alice@corp.com", None, false, 10));
        index.upsert(&grant("g3", "alice@corp.com", None, true, 10));
        index.upsert(&grant("g4", "bob", None, false, 10));
        // A look-alike is not a spelling: Cyrillic a.
        index.upsert(&grant("g5", "\u{430}lice@corp.com", None, false, 10));
        let mut found = index.principals_like("ALICE@corp.com");
        found.sort();
        assert_eq!(found, ["Alice@corp.com", "alice@corp.com"]);
        assert!(index.principals_like("carol").is_empty());
    }

    #[test]
    fn a_denial_says_why_when_a_recent_grant_explains_it() {
        let mut index = GrantIndex::new();
        let mut g = grant("g1", "alice", None, false, 10);
        index.upsert(&g);
        // Still held, past its end.
        assert_eq!(
            deny_reason(&index, "alice", t0() + TimeDelta::seconds(11)),
            "alice's grant g1 for read on prod-db expired at 2027-01-15T08:00:10.000Z"
        );
        // Settled by the worker: dropped from the index, the reason stays.
        g.status = GrantStatus::Expired;
        index.upsert(&g);
        assert!(index.is_empty());
        assert!(deny_reason(&index, "alice", t0() + TimeDelta::seconds(30))
            .contains("g1 for read on prod-db expired at 2027-01-15T08:00:10.000Z"),);
        let mut r = grant("g2", "alice", None, false, 60);
        index.upsert(&r);
        r.status = GrantStatus::Revoked;
        r.ended_by = Some("bob".into());
        r.ended_at = Some(t0() + TimeDelta::seconds(20));
        index.upsert(&r);
        assert!(deny_reason(&index, "alice", t0() + TimeDelta::seconds(30))
            .contains("g2 for read on prod-db was revoked by bob at 2027-01-15T08:00:20.000Z"));
        let mut u = grant("g3", "alice", None, true, 60);
        u.status = GrantStatus::Used;
        u.ended_at = Some(t0() + TimeDelta::seconds(25));
        index.upsert(&u);
        assert!(deny_reason(&index, "alice", t0() + TimeDelta::seconds(30)).contains("g3 for read on prod-db was used"));
        let mut d = grant("g4", "alice", None, false, 60);
        d.status = GrantStatus::Done;
        d.ended_at = Some(t0() + TimeDelta::seconds(26));
        index.upsert(&d);
        assert!(deny_reason(&index, "alice", t0() + TimeDelta::seconds(30)).contains("(done)"));
        // Someone else's ending never explains another principal's denial.
        assert_eq!(
            deny_reason(&index, "mallory", t0() + TimeDelta::seconds(30)),
            "no active grant for mallory to read on prod-db"
        );
    }

    #[test]
    fn remembered_endings_are_bounded() {
        let mut index = GrantIndex::new();
        for n in 0..(RECENT_ENDINGS + 10) {
            let mut g = grant(&format!("g{n}"), &format!("p{n}"), None, false, 10);
            g.status = GrantStatus::Expired;
            index.upsert(&g);
        }
        assert_eq!(index.endings.len(), RECENT_ENDINGS);
        assert_eq!(index.ending_order.len(), RECENT_ENDINGS);
        assert_eq!(
            deny_reason(&index, "p0", t0() + TimeDelta::seconds(30)),
            "no active grant for p0 to read on prod-db"
        );
        assert!(deny_reason(&index, &format!("p{}", RECENT_ENDINGS + 9), t0()).contains("expired at"));
    }

    #[test]
    fn allows_only_inside_the_window_and_only_the_exact_triple() {
        let mut index = GrantIndex::new();
        index.upsert(&grant("g1", "alice", None, false, 10));
        let inside = t0() + TimeDelta::seconds(9);
        assert!(matches!(
            index.check("alice", "prod-db", "read", None, inside),
            CheckOutcome::Allow { .. }
        ));
        assert!(matches!(
            index.check("alice", "prod-db", "write", None, inside),
            CheckOutcome::Deny { .. }
        ));
        assert!(matches!(
            index.check("bob", "prod-db", "read", None, inside),
            CheckOutcome::Deny { .. }
        ));
        assert!(matches!(
            index.check("alice", "prod-db", "read", None, t0() - TimeDelta::milliseconds(1)),
            CheckOutcome::Deny { .. }
        ));
        let at_end = t0() + TimeDelta::seconds(10);
        match index.check("alice", "prod-db", "read", None, at_end) {
            CheckOutcome::Deny { reason } => assert!(reason.contains("expired"), "{reason}"),
            other => panic!("allowed at expires_at: {other:?}"),
        }
    }

    #[test]
    fn action_bound_grants_need_their_payload() {
        let mut index = GrantIndex::new();
        index.upsert(&grant("g1", "alice", Some("deploy v1"), true, 10));
        assert!(matches!(
            index.check("alice", "prod-db", "read", Some("deploy v1"), t0()),
            CheckOutcome::AllowIfConsumed { .. }
        ));
        assert!(matches!(
            index.check("alice", "prod-db", "read", Some("deploy v2"), t0()),
            CheckOutcome::Deny { .. }
        ));
        assert!(matches!(
            index.check("alice", "prod-db", "read", None, t0()),
            CheckOutcome::Deny { .. }
        ));
    }

    #[test]
    fn removed_or_inactive_grants_do_not_allow() {
        let mut index = GrantIndex::new();
        let mut g = grant("g1", "alice", None, false, 10);
        index.upsert(&g);
        index.remove("g1");
        assert!(index.is_empty());
        assert!(matches!(
            index.check("alice", "prod-db", "read", None, t0()),
            CheckOutcome::Deny { .. }
        ));
        index.upsert(&g);
        g.status = GrantStatus::Revoked;
        index.upsert(&g);
        assert!(matches!(
            index.check("alice", "prod-db", "read", None, t0()),
            CheckOutcome::Deny { .. }
        ));
    }

    #[test]
    fn reusable_grant_preferred_over_single_use() {
        let mut index = GrantIndex::new();
        index.upsert(&grant("once", "alice", None, true, 100));
        index.upsert(&grant("many", "alice", None, false, 10));
        assert_eq!(
            index.check("alice", "prod-db", "read", None, t0()),
            CheckOutcome::Allow {
                grant_id: "many".into(),
                expires_at_ms: (t0() + TimeDelta::seconds(10)).timestamp_millis()
            }
        );
    }
}
