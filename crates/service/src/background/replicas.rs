//! Several replicas on one PostgreSQL database behave as one system: each keeps its memory
//! (the check index, callers waiting for decisions, API tokens) in step with what the others
//! commit, by following the store's change feed (LISTEN/NOTIFY). The database stays the
//! source of truth.
//!
//! A revocation must reach every replica within a second of its answer, failover or not, so
//! a lost feed is listened to again at once, and what committed while nobody listened is
//! caught up from the audit log: every event after the last sequence number heard names the
//! request, grant, tokens or keys it changed, and only those are read again. The whole index
//! is loaded again only when that gap is large or unknown. Work that cannot be done now (the
//! database away) is kept and retried, never dropped.
//!
//! While the store refuses the database's history (a failover lost what this replica had
//! seen, or another primary forked it), nothing is read back into the index: the lost history
//! may have revoked or consumed grants the database now says are active. Checks are answered
//! from memory until an operator accepts the history (`App::accept_database_history`).

use crate::app::App;
use crate::outage::Outage;
use jitgate_store::{AuditFilter, Change, ChangeFeed, Heard};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// How long to wait before listening again after the feed broke: a revocation made right
/// after the database came back must be heard within a second.
const FEED_RETRY: Duration = Duration::from_millis(100);
/// The first wait before work that failed (the database away) is tried again; it doubles up
/// to `MAX_BACKOFF`, short enough that a database back is caught up on within a second.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_millis(250);
/// How often the follower looks whether the database's history was accepted.
const FENCED_RETRY: Duration = Duration::from_secs(1);
/// Past this many events since the last one heard, loading the whole index is cheaper than
/// catching up event by event.
pub const CATCH_UP_LIMIT: i64 = 10_000;
/// Events read per page while catching up.
const PAGE: u32 = 1000;
/// Past this many requests waiting to be read again, one full load replaces them.
const MAX_PENDING: usize = 10_000;
/// Changes heard but not yet applied, between the task that listens and the one that applies.
const QUEUE: usize = 10_000;

/// Follow other replicas' changes until the server stops. Returns at once on a store that
/// belongs to one process (SQLite).
pub async fn follow(app: Arc<App>) {
    // Its reads go on connections of their own (jitgate_store::following).
    jitgate_store::following(follow_changes(app)).await
}

async fn follow_changes(app: Arc<App>) {
    let mut warned = Outage::default();
    let feed = loop {
        match app.store.change_feed().await {
            Ok(Some(feed)) => break feed,
            Ok(None) => return,
            Err(e) => {
                warned.failed(&e, "cannot listen for other replicas' changes; retrying");
                tokio::time::sleep(FEED_RETRY).await;
            }
        }
    };
    warned.ended("listening for other replicas' changes again");
    // Listening first, then where the log stands, then the load: whatever commits after the
    // head read here is heard.
    let mut follower = Follower::new(app.clone());
    follower.start().await;
    let (sender, mut heard) = tokio::sync::mpsc::channel(QUEUE);
    let _listener = AbortOnDrop(tokio::spawn(listen(app.clone(), feed, sender)));
    loop {
        // Owing nothing, the follower still looks every `FENCED_RETRY` whether an operator
        // accepted the database's history (the index is then loaded again).
        let wait = if follower.pending.is_empty() {
            FENCED_RETRY
        } else {
            follower.backoff
        };
        let next = tokio::select! {
            next = heard.recv() => next,
            () = tokio::time::sleep(wait) => {
                follower.notice_acceptance();
                if !follower.pending.is_empty() {
                    follower.retry().await;
                }
                continue;
            }
        };
        let Some(next) = next else { break };
        follower.apply(next).await;
    }
}

/// The listening task ends with the follower (the server stopping aborts the follower).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Read the feed and hand each change on. A broken feed is replaced at once by a new one (on
/// a connection of its own), and the gap is caught up on: `Resync` is handed on once the new
/// feed listens, so everything committed after is heard and everything before is in the log.
/// (A feed that failed is not asked again: one whose connection broke the wrong way may keep
/// failing.)
async fn listen(app: Arc<App>, mut feed: Box<dyn ChangeFeed>, sender: tokio::sync::mpsc::Sender<Heard>) {
    let mut warned = Outage::default();
    loop {
        match feed.next().await {
            Ok(heard) => {
                if sender.send(heard).await.is_err() {
                    return;
                }
                continue;
            }
            Err(e) => warned.failed(&e, "lost the change feed; listening again"),
        }
        feed = loop {
            tokio::time::sleep(FEED_RETRY).await;
            match app.store.change_feed().await {
                Ok(Some(feed)) => break feed,
                Ok(None) => return,
                Err(e) => warned.failed(&e, "lost the change feed; listening again"),
            }
        };
        warned.ended("listening for other replicas' changes again");
        let gap = Heard {
            change: Change::Resync,
            seq: None,
        };
        if sender.send(gap).await.is_err() {
            return;
        }
    }
}

/// What the follower owes the index: reads that failed and must be done again.
#[derive(Debug, Default, PartialEq, Eq)]
struct Pending {
    /// Load everything again (a gap too large or unknown, or changes skipped while the
    /// history was refused).
    everything: bool,
    /// Catch up on the log after the last sequence number heard.
    catch_up: bool,
    requests: BTreeSet<String>,
    grants: BTreeSet<String>,
    tokens: bool,
    keys: bool,
    /// Provisioned users and groups (SCIM ids) to read again.
    scim_users: BTreeSet<String>,
    scim_groups: BTreeSet<String>,
    /// The whole provisioned directory to read again (a `scim.*` event caught up on).
    directory: bool,
}

impl Pending {
    fn is_empty(&self) -> bool {
        *self == Pending::default()
    }

    /// Owe what `heard` says, given the sequence number up to which everything is in the
    /// index (`seen`); returns where that stands now.
    fn hear(&mut self, heard: Heard, seen: Option<i64>) -> Option<i64> {
        match heard.change {
            Change::Request(id) => {
                self.requests.insert(id);
            }
            Change::Grant(id) => {
                self.grants.insert(id);
            }
            Change::Tokens => self.tokens = true,
            Change::Keys => self.keys = true,
            Change::ScimUser(id) => {
                self.scim_users.insert(id);
            }
            Change::ScimGroup(id) => {
                self.scim_groups.insert(id);
            }
            Change::Resync if seen.is_some() => self.catch_up = true,
            Change::Resync => self.everything = true,
        }
        self.bound();
        match heard.seq {
            // Every change up to `seq` was heard, unless a gap before it is still to be
            // caught up on (which moves `seen` itself).
            Some(seq) if !self.catch_up && !self.everything => Some(seen.map_or(seq, |seen| seen.max(seq))),
            _ => seen,
        }
    }

    /// Owe reading again what an event of the log names: its request (and so its grants), a
    /// grant of its own, the API tokens, the signing keys.
    fn owe(&mut self, event: &jitgate_core::AuditEvent) {
        let e = &event.event;
        if let Some(request) = &e.request_id {
            self.requests.insert(request.clone());
        } else if let Some(grant) = &e.grant_id {
            self.grants.insert(grant.clone());
        }
        match e.kind {
            jitgate_core::EventKind::TokenCreated | jitgate_core::EventKind::TokenRevoked => self.tokens = true,
            jitgate_core::EventKind::KeyRotated => self.keys = true,
            // The event names the principal or group, not the SCIM id: the whole directory
            // is read again (a few queries, in memory at once).
            jitgate_core::EventKind::ScimUserCreated
            | jitgate_core::EventKind::ScimUserUpdated
            | jitgate_core::EventKind::ScimUserDeactivated
            | jitgate_core::EventKind::ScimUserReactivated
            | jitgate_core::EventKind::ScimUserDeleted
            | jitgate_core::EventKind::ScimGroupCreated
            | jitgate_core::EventKind::ScimGroupUpdated
            | jitgate_core::EventKind::ScimGroupDeleted => self.directory = true,
            _ => {}
        }
    }

    /// Too much to do one by one: one full load instead.
    fn bound(&mut self) {
        if self.requests.len() + self.grants.len() > MAX_PENDING {
            *self = Pending {
                everything: true,
                ..Pending::default()
            };
        }
        if self.scim_users.len() + self.scim_groups.len() > MAX_PENDING {
            // One read of the whole directory instead; the rest still owed.
            self.scim_users.clear();
            self.scim_groups.clear();
            self.directory = true;
        }
    }
}

/// The applying side: where the log stood at the last change heard, and what is owed.
struct Follower {
    app: Arc<App>,
    /// The highest audit sequence number up to which every change is in the index (`None`:
    /// unknown, so a gap means a full load).
    seen: Option<i64>,
    /// `App::history_acceptances` when `seen` was set: an accepted history may be shorter.
    acceptances: u64,
    pending: Pending,
    backoff: Duration,
    warned: Outage,
}

impl Follower {
    fn new(app: Arc<App>) -> Self {
        let acceptances = app.history_acceptances();
        Follower {
            app,
            seen: None,
            acceptances,
            pending: Pending::default(),
            backoff: FIRST_BACKOFF,
            warned: Outage::default(),
        }
    }

    /// Where the log stands, then everything loaded: what changed while nobody listened.
    async fn start(&mut self) {
        self.pending.everything = true;
        self.retry().await;
    }

    async fn apply(&mut self, heard: Heard) {
        self.notice_acceptance();
        self.seen = self.pending.hear(heard, self.seen);
        self.retry().await;
    }

    /// After an operator accepted the database's history, numbers heard before may be past
    /// the accepted log's end, and the index may hold what it never had: load everything (the
    /// acceptance did too, but it may have failed half-way).
    fn notice_acceptance(&mut self) {
        let acceptances = self.app.history_acceptances();
        if acceptances != self.acceptances {
            self.acceptances = acceptances;
            self.seen = None;
            self.pending.everything = true;
        }
    }

    /// Do what is owed; what fails stays owed and is tried again after the backoff.
    async fn retry(&mut self) {
        if let Some(why) = self.app.store.divergence() {
            // Keep the index as it is: the database's history is not the one it was built
            // from; only what takes access away is applied (a revocation by a replica that
            // accepted the database). Whatever was heard meanwhile is read again once the
            // history is accepted.
            for id in &self.pending.requests {
                let _ = self.app.narrow_request(id).await;
            }
            for id in &self.pending.grants {
                let _ = self.app.narrow_grant(id).await;
            }
            if !self.pending.is_empty() {
                self.pending = Pending {
                    everything: true,
                    ..Pending::default()
                };
            }
            self.warned.failed(
                &why,
                "not reading other replicas' changes: the database's history diverged",
            );
            self.backoff = FENCED_RETRY;
            return;
        }
        match self.work().await {
            Ok(()) => {
                self.backoff = FIRST_BACKOFF;
                self.warned.ended("other replicas' changes applied again");
            }
            Err(e) => {
                self.warned
                    .failed(&e, "cannot apply other replicas' changes yet; retrying");
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    async fn work(&mut self) -> Result<(), crate::ServiceError> {
        if self.pending.everything {
            self.load_everything().await?;
        }
        if self.pending.catch_up {
            self.catch_up().await?;
        }
        let mut failed = None;
        // The directory before the requests: a sweep after a leaver reads requests itself,
        // and what it changes is heard again.
        if self.pending.directory {
            match self.app.reload_directory().await {
                Ok(()) => {
                    self.pending.directory = false;
                    // A full read says nothing of each user: what it covered is not owed
                    // (the leavers it found newly blocked were swept by it).
                    self.pending.scim_users.clear();
                    self.pending.scim_groups.clear();
                }
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        for id in std::mem::take(&mut self.pending.scim_users) {
            if let Err(e) = crate::directory::refresh_user(&self.app, &id).await {
                self.pending.scim_users.insert(id);
                failed = failed.or(Some(e));
            }
        }
        for id in std::mem::take(&mut self.pending.scim_groups) {
            if let Err(e) = crate::directory::refresh_group(&self.app, &id).await {
                self.pending.scim_groups.insert(id);
                failed = failed.or(Some(e));
            }
        }
        for id in std::mem::take(&mut self.pending.requests) {
            if let Err(e) = self.app.refresh_request(&id).await {
                self.pending.requests.insert(id);
                failed = failed.or(Some(e));
            }
        }
        for id in std::mem::take(&mut self.pending.grants) {
            if let Err(e) = self.app.refresh_grant(&id).await {
                self.pending.grants.insert(id);
                failed = failed.or(Some(e));
            }
        }
        if self.pending.tokens {
            match self.app.reload_tokens().await {
                Ok(()) => self.pending.tokens = false,
                Err(e) => failed = failed.or(Some(e.into())),
            }
        }
        if self.pending.keys {
            match self.app.reload_keys().await {
                Ok(()) => self.pending.keys = false,
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// The head first, then the load: what commits in between is caught up after the head.
    async fn load_everything(&mut self) -> Result<(), crate::ServiceError> {
        let head = self.app.store.audit_head().await?;
        self.acceptances = self.app.history_acceptances();
        self.app.resync().await?;
        self.seen = Some(head);
        // The load covered whatever was owed before it.
        self.pending = Pending::default();
        self.app.metrics.count_replica_resync("full");
        Ok(())
    }

    /// Read again what the events after `seen` name. Requests and grants named are queued
    /// (read by the caller right after); `seen` moves only past events whose work is queued.
    async fn catch_up(&mut self) -> Result<(), crate::ServiceError> {
        let Some(mut after) = self.seen else {
            self.pending.catch_up = false;
            self.pending.everything = true;
            return self.load_everything().await;
        };
        let head = self.app.store.audit_head().await?;
        if head < after || head - after > CATCH_UP_LIMIT {
            // A log shorter than what was heard (another history) or a gap too long.
            self.pending.catch_up = false;
            self.pending.everything = true;
            return self.load_everything().await;
        }
        let mut events = 0usize;
        loop {
            let page = self
                .app
                .store
                .audit_events(&AuditFilter {
                    after_seq: Some(after),
                    limit: PAGE,
                    ..Default::default()
                })
                .await?;
            for event in &page {
                self.pending.owe(event);
                after = after.max(event.seq);
            }
            events += page.len();
            if page.len() < PAGE as usize {
                break;
            }
        }
        self.seen = Some(after);
        self.pending.catch_up = false;
        self.pending.bound();
        self.app.metrics.count_replica_resync("catch_up");
        tracing::info!(
            events,
            through = after,
            "caught up on other replicas' changes after the feed's gap"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heard(change: Change, seq: Option<i64>) -> Heard {
        Heard { change, seq }
    }

    #[test]
    fn the_last_sequence_number_heard_moves_only_while_nothing_was_missed() {
        let mut owed = Pending::default();
        let seen = owed.hear(heard(Change::Request("req_1".into()), Some(7)), Some(5));
        assert_eq!(seen, Some(7));
        assert!(owed.requests.contains("req_1"));
        // An older replica's notification (no seq) or one out of order moves nothing back.
        assert_eq!(owed.hear(heard(Change::Grant("grt_1".into()), None), seen), Some(7));
        assert_eq!(owed.hear(heard(Change::Tokens, Some(6)), seen), Some(7));
        assert!(owed.grants.contains("grt_1") && owed.tokens);
        // A gap: caught up on from 7; what is heard after does not jump over the gap.
        let seen = owed.hear(heard(Change::Resync, None), Some(7));
        assert!(owed.catch_up && !owed.everything);
        assert_eq!(
            owed.hear(heard(Change::Request("req_2".into()), Some(40)), seen),
            Some(7)
        );
        // A gap from an unknown place: everything.
        let mut owed = Pending::default();
        assert_eq!(owed.hear(heard(Change::Resync, None), None), None);
        assert!(owed.everything && !owed.catch_up);
        assert_eq!(owed.hear(heard(Change::Keys, Some(3)), None), None);
    }

    #[test]
    fn provisioned_users_and_groups_heard_are_read_again_and_a_scim_event_reads_the_directory() {
        let mut owed = Pending::default();
        let seen = owed.hear(heard(Change::ScimUser("u1".into()), Some(3)), Some(2));
        let seen = owed.hear(heard(Change::ScimGroup("g1".into()), Some(4)), seen);
        assert_eq!(seen, Some(4));
        assert_eq!(owed.scim_users.iter().collect::<Vec<_>>(), ["u1"]);
        assert_eq!(owed.scim_groups.iter().collect::<Vec<_>>(), ["g1"]);
        assert!(!owed.directory && !owed.is_empty());
        let mut owed = Pending::default();
        for n in 0..=MAX_PENDING {
            owed.hear(heard(Change::ScimUser(format!("u{n}")), None), None);
        }
        assert!(owed.directory && owed.scim_users.is_empty());
        let mut owed = Pending::default();
        owed.owe(&jitgate_core::AuditEvent {
            seq: 1,
            event: jitgate_core::NewEvent {
                kind: jitgate_core::EventKind::ScimUserDeactivated,
                at: crate::clock::now(),
                actor: "scim-okta".into(),
                subject: "alice".into(),
                request_id: None,
                grant_id: None,
                resource: String::new(),
                action: String::new(),
                comment: None,
            },
            prev_hash: String::new(),
            hash: String::new(),
        });
        assert!(owed.directory);
    }

    #[test]
    fn too_much_owed_one_by_one_becomes_one_full_load() {
        let mut owed = Pending::default();
        let mut seen = Some(0);
        for n in 0..=MAX_PENDING {
            seen = owed.hear(heard(Change::Request(format!("req_{n}")), Some(n as i64 + 1)), seen);
        }
        assert!(owed.everything, "{} requests owed", owed.requests.len());
        assert!(owed.requests.is_empty() && owed.grants.is_empty());
        assert!(!Pending::default().everything && Pending::default().is_empty());
    }

    #[test]
    fn events_of_the_log_name_what_to_read_again() {
        let event =
            |kind: jitgate_core::EventKind, request: Option<&str>, grant: Option<&str>| jitgate_core::AuditEvent {
                seq: 1,
                event: jitgate_core::NewEvent {
                    kind,
                    at: crate::clock::now(),
                    actor: "bob".into(),
                    subject: "alice".into(),
                    request_id: request.map(str::to_string),
                    grant_id: grant.map(str::to_string),
                    resource: "prod-db".into(),
                    action: "read".into(),
                    comment: None,
                },
                prev_hash: String::new(),
                hash: String::new(),
            };
        use jitgate_core::EventKind::*;
        let mut owed = Pending::default();
        owed.owe(&event(GrantRevoked, Some("req_1"), Some("grt_1")));
        owed.owe(&event(GrantUsed, None, Some("grt_2")));
        owed.owe(&event(CheckDenied, None, None));
        assert_eq!(owed.requests.iter().collect::<Vec<_>>(), ["req_1"]);
        assert_eq!(owed.grants.iter().collect::<Vec<_>>(), ["grt_2"]);
        assert!(!owed.tokens && !owed.keys);
        owed.owe(&event(TokenRevoked, None, None));
        owed.owe(&event(KeyRotated, None, None));
        assert!(owed.tokens && owed.keys);
    }
}
