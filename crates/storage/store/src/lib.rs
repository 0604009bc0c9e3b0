//! Storage for jitgate behind one trait. The SQLite implementation is the default; every
//! implementation must pass the conformance suite in `tests/`.

mod bounded;
mod database_url;
mod failover;
mod github;
mod group_commit;
mod postgres;
mod rows;
mod scim;
mod shared;
mod sql;
mod sqlite;

use async_trait::async_trait;
use jitgate_core::audit::{ChainReport, Checkpoint};
use jitgate_core::github::{DeploymentAnswer, GithubCall, GithubDeployment, NewGithubCall};
use jitgate_core::keys::SigningKeyRecord;
use jitgate_core::outbox::{OutboxItem, OutboxState};
use jitgate_core::scim::{DirectoryWrite, ScimGroup, ScimPage, ScimQuery, ScimSnapshot, ScimUser};
use jitgate_core::{ApiToken, AuditEvent, Grant, GrantStatus, NewEvent, Request, RequestStatus, Timestamp};
use thiserror::Error;

pub use database_url::{redact, DatabaseUrl};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

#[derive(Debug, Error)]
pub enum StoreError {
    /// The copy being saved is stale: someone else changed the request first. Re-read and
    /// apply the transition again.
    #[error("the request changed concurrently")]
    Conflict,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("bad database URL: {0}")]
    Url(String),
    /// The operation's precondition does not hold; nothing was changed.
    #[error("{0}")]
    Refused(String),
    /// A unique value is already someone else's (a `userName`, a group's `displayName`);
    /// nothing was changed. The text names the value.
    #[error("{0}")]
    Taken(String),
    /// The database could not be reached, could not take the write (a read-only node), or
    /// did not commit it within the bound (then it may still commit: read before retrying).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database's history is not the one this process has seen: committed work it
    /// acknowledged is gone (a failover to a standby that lacked it) or another writable
    /// primary forked the log. Nothing is written until an operator accepts the history
    /// as it is (see docs/deploy.md, "Failover").
    #[error("the database's history diverged from what this replica saw: {0}")]
    Diverged(String),
}

impl StoreError {
    /// The database could not be reached (as opposed to refusing the operation).
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Unavailable(_) => true,
            StoreError::Database(sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)) => true,
            // PostgreSQL going away: connection exceptions (08...) and operator intervention
            // (57...: shutting down, terminated by an administrator); a node that cannot
            // write (25006: a standby behind the front); a write lock not had within the
            // bound (55P03); a node out of resources (53...: too many connections, as every
            // replica reconnects to a promoted standby at once).
            StoreError::Database(sqlx::Error::Database(e)) => e.code().is_some_and(|code| {
                code.starts_with("08")
                    || code.starts_with("57")
                    || code.starts_with("53")
                    || code == "25006"
                    || code == "55P03"
            }),
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A change another process committed to the shared database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A request (and its grant) changed.
    Request(String),
    /// A grant changed (consumed by a check).
    Grant(String),
    /// API tokens were created or revoked.
    Tokens,
    /// The grant-signing keys were rotated.
    Keys,
    /// A provisioned user changed (created, replaced, patched, deleted): its SCIM id.
    ScimUser(String),
    /// A provisioned group changed: its SCIM id.
    ScimGroup(String),
    /// Some changes may have been missed (the feed was lost and is listening again): catch
    /// up on what committed after the last `seq` heard.
    Resync,
}

/// A change heard, with where the audit log stood when it committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heard {
    pub change: Change,
    /// The sequence number of the last audit event of the transaction that made the change
    /// (`None` when the sender did not say: an older replica, or `Resync`).
    pub seq: Option<i64>,
}

/// What other replicas commit, as it happens.
#[async_trait]
pub trait ChangeFeed: Send {
    /// The next change. An error means the feed is lost for now; calling again listens again
    /// (on a connection of its own) and, once listening, answers `Change::Resync`.
    async fn next(&mut self) -> Result<Heard>;
}

/// Which requests to list.
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    /// Effective status at `now`: a pending request past its deadline counts as expired.
    pub status: Option<RequestStatus>,
    pub requester: Option<String>,
    pub limit: u32,
    /// Only requests created before this one (by creation order): the next page.
    pub before: Option<String>,
}

/// Which grants to list.
#[derive(Debug, Clone, Default)]
pub struct GrantFilter {
    pub principal: Option<String>,
    /// Effective status at `now`: an active grant past its end counts as expired.
    pub status: Option<GrantStatus>,
    pub limit: u32,
    /// Only grants created before this one (ids are in creation order): the next page.
    pub before: Option<String>,
}

/// Which audit events to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub request_id: Option<String>,
    /// Events where this principal is the actor or the subject.
    pub principal: Option<String>,
    pub resource: Option<String>,
    pub action: Option<String>,
    /// Events of this kind (`request.approved`).
    pub kind: Option<String>,
    pub since: Option<Timestamp>,
    /// Only events after this sequence number: the next page.
    pub after_seq: Option<i64>,
    pub limit: u32,
}

/// The store. Every method that changes state also appends its audit events, in the same
/// transaction, and returns only after the commit is durable.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Insert a new request, its grant if one was issued, and its events.
    async fn create_request(&self, request: &Request, events: &[NewEvent]) -> Result<Request>;

    /// Insert many new requests in one transaction: one durable commit for the whole batch.
    async fn create_requests(&self, batch: &[(Request, Vec<NewEvent>)]) -> Result<()>;

    /// Replace `previous` by `next` with their events. Fails with `Conflict` if the stored
    /// request is no longer `previous` (another transition won the race).
    async fn save_transition(&self, previous: &Request, next: &Request, events: &[NewEvent]) -> Result<Request>;

    /// Append events that go with no request (policy loads, for example).
    async fn append_events(&self, events: &[NewEvent]) -> Result<()>;

    /// Consume a live single-use grant. `true` for the one caller that consumed it; every
    /// other caller, concurrent or later, gets `false`.
    async fn consume_grant(&self, grant_id: &str, used: &NewEvent, now: Timestamp) -> Result<bool>;

    async fn get_request(&self, id: &str) -> Result<Option<Request>>;
    async fn get_request_by_grant(&self, grant_id: &str) -> Result<Option<Request>>;
    /// The grants with these ids (those that exist), in one read: the outbox worker looks up
    /// a whole lease's grants at once.
    async fn get_grants(&self, ids: &[String]) -> Result<Vec<Grant>>;
    async fn list_requests(&self, filter: &RequestFilter, now: Timestamp) -> Result<Vec<Request>>;
    async fn list_grants(&self, filter: &GrantFilter, now: Timestamp) -> Result<Vec<Grant>>;

    /// How many of `requester`'s requests are pending at `now` (a pending request past its
    /// deadline counts as expired), read from an index of pending requests alone: its cost
    /// follows what is pending, not how many requests the requester ever filed.
    async fn count_pending(&self, requester: &str, now: Timestamp) -> Result<u64>;

    /// Grants whose status is active, for loading the in-memory check index.
    async fn active_grants(&self) -> Result<Vec<Grant>>;

    /// Active grants with only what the check index needs, in id order after `after_id`, at
    /// most `limit`: loading a million at start-up stays fast and small.
    async fn live_grants(&self, after_id: Option<&str>, limit: u32) -> Result<Vec<jitgate_core::index::LiveGrant>>;

    /// Requests with a time-based transition due at `now`: pending past their deadline, or
    /// holding an active grant past its end. Cost follows what is due, not what exists.
    async fn due_requests(&self, now: Timestamp, limit: u32) -> Result<Vec<Request>>;

    async fn audit_events(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>>;

    /// Walk the whole audit chain, compare it with the stored checkpoints, and report the first
    /// break (an edit, deletion, insertion, reordering, or events cut off the end).
    async fn verify_audit(&self) -> Result<ChainReport>;

    /// Keep a signed checkpoint of the log's head (one per sequence number; a second for the
    /// same event is ignored).
    async fn add_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()>;

    /// Every checkpoint, oldest first.
    async fn checkpoints(&self) -> Result<Vec<Checkpoint>>;

    /// Retention: delete the events up to and including `through`, and the checkpoints before
    /// it, recording `event` (`audit.archived`), in one transaction. `through` must have a
    /// signed checkpoint (the log that is left continues from its hash) and must not be the
    /// newest event (the chain goes on from the newest one); otherwise `Refused`, and nothing
    /// changes. Returns how many events were deleted.
    async fn archive_audit_through(&self, through: i64, event: &NewEvent) -> Result<u64>;

    /// Insert a new API token with its `token.created` event.
    async fn create_token(&self, token: &ApiToken, event: &NewEvent) -> Result<()>;

    /// Mark a token revoked with its `token.revoked` event. Fails with `Conflict` if it is
    /// already revoked (`revoked` must be `previous` with `revoked_at` set).
    async fn revoke_token(&self, revoked: &ApiToken, event: &NewEvent) -> Result<()>;

    /// Every token ever issued, revoked and expired ones included, newest first.
    async fn list_tokens(&self) -> Result<Vec<ApiToken>>;

    /// Every grant-signing key, retired ones included, oldest first.
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>>;

    /// Make `new` the active signing key. The key it replaces is retired and stays published
    /// until the latest end of any active grant, in the same transaction.
    async fn rotate_signing_key(&self, new: &SigningKeyRecord, event: &NewEvent) -> Result<()>;

    /// The SSH user CA's key pair (OpenSSH private key, public key line), if made yet.
    async fn ssh_ca(&self) -> Result<Option<(String, String)>>;

    /// Store the SSH CA key pair unless one exists (the first of two racing replicas wins;
    /// both then read the same one back), with its event.
    async fn init_ssh_ca(&self, private: &str, public: &str, event: &NewEvent) -> Result<()>;

    /// Outbox items due at `now`, oldest first. Items are written with the grant changes
    /// that owe them (issue, extension, end), in the same transaction.
    async fn due_outbox(&self, now: Timestamp, limit: u32) -> Result<Vec<OutboxItem>>;

    /// Outbox items due at `now`, oldest first, leased to `holder` until `lease_until`: until
    /// then (or until completed or retried) no other holder gets them, so one worker of many
    /// carries each out, and another takes it over when the lease runs out. Nor does the
    /// holder itself get them again: they are being delivered (a worker keeps leasing while
    /// it delivers). An item waits while an earlier item of its grant is leased, so a
    /// deprovisioning never overtakes the provisioning being delivered.
    async fn lease_outbox(
        &self,
        now: Timestamp,
        holder: &str,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<OutboxItem>>;

    /// Give up `holder`'s leases: a worker starting again in its own place takes up at once
    /// what its earlier self had leased and never finished.
    async fn release_outbox_leases(&self, holder: &str) -> Result<u64>;

    /// Mark an item carried out, with its event.
    async fn complete_outbox(&self, id: i64, at: Timestamp, event: Option<&NewEvent>) -> Result<()>;

    /// Record a failed attempt and when to try again, with an alarm event when one is owed.
    async fn retry_outbox(&self, id: i64, next_due: Timestamp, error: &str, event: Option<&NewEvent>) -> Result<()>;

    /// What the outbox holds for these grants, done items included.
    async fn outbox_states(&self, grant_ids: &[String]) -> Result<Vec<OutboxState>>;

    /// Claim the one handout of the credentials `provider` makes for a grant's holder. `true`
    /// for the one caller that claimed it; every other caller, concurrent or later, gets `false`.
    async fn claim_handout(&self, grant_id: &str, provider: &str, at: Timestamp) -> Result<bool>;

    /// Give a claim back when its credentials could not be made, so the holder may ask again.
    async fn release_handout(&self, grant_id: &str, provider: &str) -> Result<()>;

    /// Active grants that end within `lead` of `now` (and not before `now`), whose holder has
    /// not been reminded yet, and that last longer than twice `lead` (a short grant needs no
    /// reminder). Soonest first.
    async fn grants_to_remind(&self, now: Timestamp, lead: chrono::TimeDelta, limit: u32) -> Result<Vec<Grant>>;

    /// Record that a grant's holder was reminded, with its event; `false` if someone else did
    /// it first. An extension clears the mark, so the new end is reminded of too.
    async fn mark_reminded(&self, grant_id: &str, event: &NewEvent) -> Result<bool>;

    /// The sequence number of the newest audit event (0 when there is none).
    async fn audit_head(&self) -> Result<i64>;

    /// How far a notification sink has read the audit log, if it has started.
    async fn notification_cursor(&self, sink: &str) -> Result<Option<i64>>;

    /// Take or renew the lease on a notification sink for `holder` until `until`: `true` when
    /// `holder` may deliver it now (nobody else holds an unexpired lease).
    async fn lease_sink(&self, sink: &str, holder: &str, now: Timestamp, until: Timestamp) -> Result<bool>;

    /// Move a notification sink's place in the audit log (forgetting any hash kept with it).
    async fn set_notification_cursor(&self, sink: &str, after_seq: i64) -> Result<()>;

    /// Where an audit sink stands: the last event it shipped and, when known, that event's
    /// hash, so that it can tell a log that was rewound or forked under it.
    async fn sink_cursor(&self, sink: &str) -> Result<Option<SinkCursor>>;

    /// Move an audit sink's place in the audit log, with the hash of the event it stands on.
    async fn set_sink_cursor(&self, sink: &str, cursor: &SinkCursor) -> Result<()>;

    /// The changes other processes sharing this database commit, if it can be shared (SQLite
    /// belongs to one process: `None`).
    async fn change_feed(&self) -> Result<Option<Box<dyn ChangeFeed>>>;

    /// Is the database reachable?
    async fn ping(&self) -> Result<()>;

    /// Commit a provisioning write (see `DirectoryWrite`) in one transaction: the change (a
    /// duplicate `userName` or group name: `Taken`; a stale `expected_version`, or a stale
    /// request in `transitions`: `Conflict`; a member id that is no live user: `Refused`), the
    /// transitions, the token revocations and the events; other replicas hear of each user,
    /// group, request and the tokens.
    ///
    /// What the store decides itself: the version (1 at creation, one more on every write,
    /// whatever the record says), the creation time of a replaced record (the stored one), and
    /// the time of a deletion (its first event's). Names are unique as `fold`ed (NFKC, then
    /// lower case; `Taken` says "userName 'X' is already taken", "principal 'X' is already
    /// another user's ...", "group 'X' already exists"). A create whose id exists, even as a
    /// deleted user's, is a `Conflict`. `MemberChange::Edit` removes, then adds (an id in both
    /// ends up a member); removing a non-member is no change. Deleting a user ends its
    /// memberships and moves those groups' versions on. Any stored text holding a NUL byte (an
    /// id, `userName`, the principal, `externalId`, `displayName`, the manager, a member id,
    /// an event's text) is `Refused` before anything is written; the document keeps one as the
    /// JSON escape. So is one longer than 1,024 bytes (2,048 once folded) where it is indexed
    /// (PostgreSQL cannot index much longer values; the document has no such bound). Each request may appear once in `transitions` (its `previous` is the
    /// stored version).
    async fn scim_write(&self, write: &DirectoryWrite) -> Result<()>;

    /// A live user by SCIM id.
    async fn scim_user(&self, id: &str) -> Result<Option<ScimUser>>;

    /// A group by SCIM id, with its members.
    async fn scim_group(&self, id: &str) -> Result<Option<ScimGroup>>;

    /// A page of live users matching `query`, in creation order (`query.member` is for
    /// groups: not read here). `total` counts every match; `count` 0 asks for it alone.
    async fn scim_users(&self, query: &ScimQuery) -> Result<ScimPage<ScimUser>>;

    /// A page of groups matching `query`, in creation order; with their members or not
    /// (`query.user_name` is for users: not read here).
    async fn scim_groups(&self, query: &ScimQuery, members: bool) -> Result<ScimPage<ScimGroup>>;

    /// The groups a live user is a member of, as (id, displayName), by name.
    async fn scim_groups_of(&self, user_id: &str) -> Result<Vec<(String, String)>>;

    /// Everything provisioned, to build the in-memory directory from.
    async fn scim_directory(&self) -> Result<ScimSnapshot>;

    // GitHub (issue #26, docs/github.md): deployments waiting on a protection rule, the
    // deliveries already seen, and the calls owed to GitHub's REST API.

    /// Remember the delivery `delivery_id` (`X-GitHub-Delivery`) of `event`: `true` the first
    /// time, `false` when it was seen before (nothing written). Deliveries of any event share
    /// one table with `github_track_deployment`'s.
    async fn github_claim_delivery(&self, delivery_id: &str, event: &str, at: Timestamp) -> Result<bool>;

    /// Forget a claimed delivery whose work failed before anything was done (the store was
    /// down), so GitHub's redelivery is carried out.
    async fn github_release_delivery(&self, delivery_id: &str) -> Result<()>;

    /// Record a deployment (state `waiting`) and claim its delivery, in one transaction,
    /// before its request is filed: `false` (nothing written) when the delivery was seen
    /// before. Any NUL byte in its text is `Refused`.
    async fn github_track_deployment(&self, deployment: &GithubDeployment) -> Result<bool>;

    /// The deployment a request was filed for.
    async fn github_deployment(&self, request_id: &str) -> Result<Option<GithubDeployment>>;

    /// Deployments still `waiting`, oldest first.
    async fn github_waiting(&self, limit: u32) -> Result<Vec<GithubDeployment>>;

    /// In one transaction: the deployment of `request_id` goes from `waiting` to `answered`
    /// (with `answer`, `comment`, `at`), `calls` are queued (keys already queued skipped) and
    /// `event` is appended. `false`, with nothing written, when it was not waiting (another
    /// replica answered first) or is unknown.
    async fn github_answer(
        &self,
        request_id: &str,
        answer: DeploymentAnswer,
        comment: &str,
        at: Timestamp,
        calls: &[NewGithubCall],
        event: &NewEvent,
    ) -> Result<bool>;

    /// Queue calls; a call whose key is already queued (done or not) is skipped.
    async fn github_enqueue(&self, calls: &[NewGithubCall]) -> Result<()>;

    /// Calls not done and due at `now`, oldest first, leased to `holder` until `lease_until`
    /// (as `lease_outbox`: nobody else, nor the holder itself, gets them again until the
    /// lease runs out or the call is done or retried).
    async fn github_lease_calls(
        &self,
        now: Timestamp,
        holder: &str,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<GithubCall>>;

    /// Mark a call done (attempts counted), with its event when one is owed, in one
    /// transaction.
    async fn github_call_done(&self, id: i64, at: Timestamp, event: Option<&NewEvent>) -> Result<()>;

    /// Record `holder`'s failed attempt and when to try again (the lease is given up). Nothing
    /// happens when the call is now leased to another holder (`holder`'s lease ran out while
    /// it waited for GitHub): the other's lease stands, so the call is not made a third time
    /// while the second attempt is under way.
    async fn github_call_retry(&self, id: i64, holder: &str, next_due: Timestamp, error: &str) -> Result<()>;

    /// Forget the deliveries received before `before` that tracked no deployment (comments,
    /// pings): how many. A deployment's delivery is kept with its deployment, so it is never
    /// filed twice; a comment replayed after `before` is read again (and meets a request long
    /// decided).
    async fn github_forget_deliveries(&self, before: Timestamp) -> Result<u64>;

    /// Give up `holder`'s leases on calls not done (as `release_outbox_leases`): a worker
    /// starting again in its own place makes at once the calls its earlier self had leased.
    async fn github_release_call_leases(&self, holder: &str) -> Result<u64>;

    /// Every call queued for a request (done or not), oldest first.
    async fn github_calls(&self, request_id: &str) -> Result<Vec<GithubCall>>;

    /// Can writes commit now: reachable, writable, committing within the write bound, and
    /// the history the one this process has seen? `Err` says why not.
    async fn ready(&self) -> Result<()> {
        self.ping().await
    }

    /// Why this process refuses the database's history, once it has (a rewind or a fork).
    fn divergence(&self) -> Option<String> {
        None
    }

    /// An operator accepts the database's history as it is now: forget what this process had
    /// seen of it and write again. Returns what it had seen that the database lacks, for the
    /// record (`None` when nothing diverged).
    async fn accept_history(&self) -> Result<Option<String>> {
        Ok(None)
    }
}

/// An audit sink's place in the log: it shipped every event through `after_seq`, the last
/// with the hash `after_hash` (`None` when unknown: a cursor from before hashes were kept, or
/// one moved by hand).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkCursor {
    pub after_seq: i64,
    pub after_hash: Option<String>,
}

tokio::task_local! {
    /// Set while the task that follows other replicas runs (`following`).
    static FOLLOWING: ();
}

/// Run `work` (the task that follows other replicas' changes) with its reads on connections
/// kept for it, where the store has such: the main pool may be full of writes waiting on a
/// database that fails over, and what another replica revoked must be read at once.
pub async fn following<F: std::future::Future>(work: F) -> F::Output {
    FOLLOWING.scope((), work).await
}

/// Is the running task the follower? (A task it spawns is not, unless it says so again.)
pub fn is_following() -> bool {
    FOLLOWING.try_with(|_| ()).is_ok()
}

/// How the store treats the database, beyond where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    /// The longest a write may take from its start to its commit. Past it the caller hears
    /// `Unavailable` (the write may still commit: read before retrying) instead of waiting
    /// on a database that cannot commit (a synchronous standby gone, a lock held).
    pub write_timeout: std::time::Duration,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            write_timeout: std::time::Duration::from_secs(5),
        }
    }
}

/// Open the store a URL names: `sqlite://PATH` (created if missing) or `postgres://...`.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>> {
    open_url(&DatabaseUrl::new(url)).await
}

/// Open the store `url` names, with its password if it came apart. No error names the
/// password.
pub async fn open_url(url: &DatabaseUrl) -> Result<std::sync::Arc<dyn Store>> {
    open_url_with(url, &StoreSettings::default()).await
}

/// `open_url` with `settings`.
pub async fn open_url_with(url: &DatabaseUrl, settings: &StoreSettings) -> Result<std::sync::Arc<dyn Store>> {
    let bound = settings.write_timeout;
    if let Some(path) = url.expose().strip_prefix("sqlite://") {
        return Ok(std::sync::Arc::new(bounded::Bounded::new(
            SqliteStore::open(path).await?,
            bound,
        )));
    }
    if url.is_postgres() {
        return match PostgresStore::open_with_settings(url.expose(), url.password(), settings).await {
            Ok(store) => Ok(std::sync::Arc::new(bounded::Bounded::new(store, bound))),
            Err(e) => Err(url.scrub_error(e)),
        };
    }
    Err(StoreError::Url(format!(
        "'{url}' is not a database URL; use sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE"
    )))
}
