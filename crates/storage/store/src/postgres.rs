//! PostgreSQL: for several jitgate replicas on one database. The queries are the SQLite
//! store's (times as milliseconds in BIGINT, the request as a JSON document), shared in
//! `shared.rs` and `sql.rs`; what is PostgreSQL's own is here: every write transaction first
//! takes one advisory lock, so the audit chain is appended by one writer at a time as on
//! SQLite (no forks, no gaps); changes are announced to the other replicas (NOTIFY) with the
//! audit log's head, so a replica that lost the feed catches up on exactly what it missed;
//! each write commits at once, durable by PostgreSQL's own settings (`synchronous_commit`,
//! on by default); and leasing skips rows another replica has locked.
//!
//! Failover (see `failover.rs`): a URL may name several hosts, libpq-style, and
//! `target_session_attrs=read-write|primary` picks the one that can write; a watcher moves
//! every connection to another host when that one goes. Every connection and every commit
//! is held against what this process has seen of the log (the witness): a node that lost
//! acknowledged work or forked the log is refused for writing, loudly, until an operator
//! accepts its history.

use crate::failover::{timeline_of_wal_file, AtWitness, Head, NodeState, Target, Witness};
use crate::sql::{Attempt, Backend, Notice, Placeholders, Sql};
use crate::{Result, StoreError, StoreSettings};
use async_trait::async_trait;
use jitgate_core::index::LiveGrant;
use jitgate_core::{NewEvent, Request};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool, Postgres, Row, Transaction};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The advisory lock every write transaction holds until it commits (any number; this one
/// spells "jitgate").
const WRITE_LOCK: i64 = 0x006a_6974_6761_7465;

/// The channel every change is announced on, delivered to listeners when it commits.
const CHANGES: &str = "jitgate_changes";

/// How often the watcher of a host list makes sure the host in use still suits.
const HEARTBEAT: Duration = Duration::from_millis(500);

/// How long the follower's connections (listening, catching up) try to connect before the
/// caller tries again: short, so that a database back after a failover is reached within a
/// few tries of it, not after one long wait that began while it was away.
const FOLLOWER_ACQUIRE: Duration = Duration::from_millis(250);

/// How long `ready` waits for its probe write to commit.
const PROBE_BOUND: Duration = Duration::from_secs(2);

/// Announce a change from inside its transaction, after its audit events: listeners hear of
/// it once it commits (never of one that rolls back), with the log's head as this
/// transaction leaves it. The payload is `TAG:ID:SEQ:HASH` (an upper-case tag, so replicas
/// of an older version, which read `r:ID`, reload everything instead of misreading it).
async fn announce(conn: &mut PgConnection, change: Notice<'_>) -> Result<()> {
    let prefix = match change {
        Notice::Request(id) => format!("R:{id}"),
        Notice::Grant(id) => format!("G:{id}"),
        Notice::Tokens => "T:".to_string(),
        Notice::Keys => "K:".to_string(),
        // SCIM ids are hex-encoded: whatever they hold, no `:` splits the payload.
        Notice::ScimUser(id) => format!("SU:{}", hex::encode(id)),
        Notice::ScimGroup(id) => format!("SG:{}", hex::encode(id)),
    };
    sqlx::query(
        "SELECT pg_notify($1, $2 || ':' || COALESCE((SELECT seq || ':' || hash FROM audit_events ORDER BY seq DESC LIMIT 1), '0:'))",
    )
    .bind(CHANGES)
    .bind(prefix)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A notification's change and the log's head it carries.
fn parse_notice(payload: &str) -> (crate::Change, Option<Head>) {
    let mut parts = payload.splitn(4, ':');
    let (tag, id, seq, hash) = (parts.next(), parts.next(), parts.next(), parts.next());
    let head = match (seq.and_then(|s| s.parse::<i64>().ok()), hash) {
        (Some(seq), Some(hash)) if seq > 0 => Some(Head {
            seq,
            hash: hash.to_string(),
        }),
        _ => None,
    };
    let change = match (tag, id) {
        (Some("R"), Some(id)) if !id.is_empty() => crate::Change::Request(id.to_string()),
        (Some("G"), Some(id)) if !id.is_empty() => crate::Change::Grant(id.to_string()),
        (Some("T"), _) => crate::Change::Tokens,
        (Some("K"), _) => crate::Change::Keys,
        (Some("SU"), Some(id)) => scim_id(id).map_or(crate::Change::Resync, crate::Change::ScimUser),
        (Some("SG"), Some(id)) => scim_id(id).map_or(crate::Change::Resync, crate::Change::ScimGroup),
        // An older replica's notice: `r:ID`, `g:ID`, `tokens`, `keys`.
        (Some("r"), Some(id)) => crate::Change::Request(id.to_string()),
        (Some("g"), Some(id)) => crate::Change::Grant(id.to_string()),
        (Some("tokens"), None) => crate::Change::Tokens,
        (Some("keys"), None) => crate::Change::Keys,
        _ => crate::Change::Resync,
    };
    (change, head)
}

/// A SCIM id as a notice carries it (hex), or `None` if it is not one (then the listener
/// reloads everything rather than guess).
fn scim_id(hex_id: &str) -> Option<String> {
    let bytes = hex::decode(hex_id).ok()?;
    String::from_utf8(bytes).ok().filter(|id| !id.is_empty())
}

/// What the connect hooks, the host watcher, the change feed and the store share.
struct Nodes {
    target: Target,
    /// The options read from the URL (user, password, database, TLS), before the host.
    base: PgConnectOptions,
    /// Which of the target's hosts connections go to now.
    current: Mutex<usize>,
    witness: Mutex<Witness>,
    /// Why this process refuses the database's history, once it does.
    diverged: Mutex<Option<String>>,
    /// Pools whose new connections follow the host in use.
    pools: Mutex<Vec<PgPool>>,
    /// A connection found the host in use unfit: the watcher looks for another at once.
    unfit: tokio::sync::Notify,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A refusal sqlx carries out of a connect hook (it logs it and tries again until the pool's
/// acquire timeout).
fn refused(why: String) -> sqlx::Error {
    sqlx::Error::Configuration(why.into())
}

impl Nodes {
    fn options_for(&self, index: usize) -> PgConnectOptions {
        let (host, port) = &self.target.hosts[index];
        self.base.clone().host(host).port(*port)
    }

    fn host_name(&self, index: usize) -> String {
        let (host, port) = &self.target.hosts[index];
        format!("{host}:{port}")
    }

    fn divergence(&self) -> Option<String> {
        lock(&self.diverged).clone()
    }

    /// Refuse the database's history from now on, saying so loudly once.
    fn diverge(&self, why: String) {
        let mut diverged = lock(&self.diverged);
        if diverged.is_none() {
            tracing::error!(
                reason = %why,
                "refusing to write: the database's history is not the one this replica saw; \
                 see docs/deploy.md (Failover) before accepting it"
            );
            *diverged = Some(why);
        }
    }

    /// What a node says of itself.
    async fn state(conn: &mut PgConnection) -> std::result::Result<NodeState, sqlx::Error> {
        let row = sqlx::query(
            "SELECT pg_is_in_recovery() AS in_recovery, current_setting('transaction_read_only') = 'on' AS read_only, \
             CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_insert_lsn()) END AS wal_file",
        )
        .fetch_one(&mut *conn)
        .await?;
        let wal_file: Option<String> = row.try_get("wal_file")?;
        Ok(NodeState {
            in_recovery: row.try_get("in_recovery")?,
            read_only: row.try_get("read_only")?,
            timeline: wal_file.as_deref().and_then(timeline_of_wal_file),
        })
    }

    /// Why a node cannot be used at all: not the kind of session asked for, or an old
    /// primary (`None`: it can).
    fn unfit(&self, node: &NodeState) -> Option<String> {
        if let Some(why) = self.target.attrs.refusal(node) {
            return Some(format!(
                "the node is {why}, and target_session_attrs={} asks for another",
                self.target.attrs.as_str()
            ));
        }
        lock(&self.witness).timeline_refusal(node.timeline)
    }

    /// Every new connection: a node of the wrong kind is refused (and another host looked
    /// for); an old primary is refused and alarmed; a log that does not continue what this
    /// process saw is alarmed (reads go on, writes stop).
    async fn vet(&self, conn: &mut PgConnection) -> std::result::Result<(), sqlx::Error> {
        let node = Self::state(conn).await?;
        if let Some(why) = self.unfit(&node) {
            let host = self.host_name(*lock(&self.current));
            if lock(&self.witness).timeline_refusal(node.timeline).is_some() {
                self.diverge(format!("{host}: {why}"));
            }
            self.unfit.notify_one();
            return Err(refused(format!("{host}: {why}")));
        }
        if !node.in_recovery {
            // A refusal is kept (writes stop); reads of the node go on.
            self.hold_to_history(conn).await?;
        }
        lock(&self.witness).adopt_timeline(node.timeline);
        Ok(())
    }

    /// Compare the node's log with the witness: adopt its head when it goes on from it, and
    /// otherwise refuse the history from now on (the refusal is returned).
    async fn hold_to_history(&self, conn: &mut PgConnection) -> std::result::Result<Option<String>, sqlx::Error> {
        let seen = lock(&self.witness).head.clone();
        let Some(seen) = seen else {
            return Ok(None);
        };
        let head = read_head(conn).await?;
        let at_witness = match &head {
            Some(head) if head.seq > seen.seq => {
                match sqlx::query_scalar::<_, String>("SELECT hash FROM audit_events WHERE seq = $1")
                    .bind(seen.seq)
                    .fetch_optional(&mut *conn)
                    .await?
                {
                    Some(hash) => AtWitness::Hash(hash),
                    None => AtWitness::Archived,
                }
            }
            _ => AtWitness::NotRead,
        };
        let refusal = Witness::history_refusal(&seen, head.as_ref(), &at_witness);
        match (&refusal, head) {
            (Some(why), _) => self.diverge(why.clone()),
            (None, Some(head)) => lock(&self.witness).adopt(head),
            (None, None) => {}
        }
        Ok(refusal)
    }

    /// Find the host to use: every host is asked at once (one that does not answer costs
    /// `connect_timeout`, not one per host); of those that suit, the one on the newest
    /// timeline, then the first in the URL's order. Two that both take writes are two
    /// primaries (an old one running beside the promoted one): said loudly, and the old one
    /// is never chosen.
    async fn find(self: &Arc<Self>) -> std::result::Result<(usize, PgConnection), String> {
        let mut asked = tokio::task::JoinSet::new();
        for index in 0..self.target.hosts.len() {
            let nodes = self.clone();
            asked.spawn(async move {
                let attempt = async {
                    let mut conn = PgConnection::connect_with(&nodes.options_for(index))
                        .await
                        .map_err(|e| e.to_string())?;
                    let node = Self::state(&mut conn).await.map_err(|e| e.to_string())?;
                    Ok::<_, String>((node, conn))
                };
                let answer = match tokio::time::timeout(nodes.target.connect_timeout, attempt).await {
                    Ok(answer) => answer,
                    Err(_) => Err(format!(
                        "no answer within {}s (connect_timeout)",
                        nodes.target.connect_timeout.as_secs()
                    )),
                };
                (index, answer)
            });
        }
        let mut answers = Vec::new();
        while let Some(joined) = asked.join_next().await {
            if let Ok(answer) = joined {
                answers.push(answer);
            }
        }
        answers.sort_by_key(|(index, _)| *index);
        let writable: Vec<(usize, u32)> = answers
            .iter()
            .filter_map(|(index, answer)| match answer {
                Ok((node, _)) if !node.in_recovery && !node.read_only => Some((*index, node.timeline.unwrap_or(0))),
                _ => None,
            })
            .collect();
        if writable.len() > 1 {
            let listed: Vec<String> = writable
                .iter()
                .map(|(index, timeline)| format!("{} (timeline {timeline})", self.host_name(*index)))
                .collect();
            tracing::error!(
                primaries = %listed.join(", "),
                "more than one database host takes writes (split brain): using the newest timeline; fence the others"
            );
        }
        let newest = writable.iter().map(|(_, timeline)| *timeline).max().unwrap_or(0);
        let mut reasons = Vec::new();
        let mut chosen = None;
        for (index, answer) in answers {
            match answer {
                Ok((node, conn)) => {
                    let older = node.timeline.is_some_and(|t| t < newest) && !node.in_recovery;
                    match self.unfit(&node) {
                        Some(why) => reasons.push(format!("{}: {why}", self.host_name(index))),
                        None if older => reasons.push(format!(
                            "{}: a primary on timeline {} beside one on timeline {newest}",
                            self.host_name(index),
                            node.timeline.unwrap_or(0)
                        )),
                        None if chosen.is_none() => chosen = Some((index, conn)),
                        None => {}
                    }
                }
                Err(why) => reasons.push(format!("{}: {why}", self.host_name(index))),
            }
        }
        chosen.ok_or_else(|| reasons.join("; "))
    }

    /// Send new connections to host `index`.
    fn switch_to(&self, index: usize) {
        let previous = std::mem::replace(&mut *lock(&self.current), index);
        if previous != index {
            tracing::warn!(
                from = %self.host_name(previous),
                to = %self.host_name(index),
                "the database host changed (failover): new connections go to the new one"
            );
        }
        let options = self.options_for(index);
        for pool in lock(&self.pools).iter() {
            pool.set_connect_options(options.clone());
        }
    }
}

/// Bring the schema up to date. A read-only node (a standby behind the front while a
/// failover goes on) cannot migrate; if its schema is current already, the replica starts
/// anyway and answers 503 to writes until the node takes writes, instead of exiting.
async fn migrate(pool: &PgPool) -> Result<()> {
    let migrator = sqlx::migrate!("./migrations/postgres");
    let error = match migrator.run(pool).await {
        Ok(()) => return Ok(()),
        Err(error) => error,
    };
    let read_only = matches!(
        &error,
        sqlx::migrate::MigrateError::Execute(sqlx::Error::Database(db)) if db.code().as_deref() == Some("25006")
    );
    if !read_only {
        return Err(error.into());
    }
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
        .fetch_all(pool)
        .await
        .unwrap_or_default();
    let current = migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .all(|m| applied.contains(&m.version));
    if !current {
        return Err(error.into());
    }
    tracing::warn!(
        "the database is read-only now (a standby?) and its schema is current: serving; writes answer 503 until it takes writes"
    );
    Ok(())
}

/// Pool options whose every new connection is vetted (`Nodes::vet`).
fn vetted(nodes: &Arc<Nodes>) -> PgPoolOptions {
    let nodes = nodes.clone();
    PgPoolOptions::new().after_connect(move |conn, _| {
        let nodes = nodes.clone();
        Box::pin(async move { nodes.vet(conn).await })
    })
}

/// The newest event of the log, if any.
async fn read_head(conn: &mut PgConnection) -> std::result::Result<Option<Head>, sqlx::Error> {
    let row = sqlx::query("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|row| {
        Ok(Head {
            seq: row.try_get("seq")?,
            hash: row.try_get("hash")?,
        })
    })
    .transpose()
}

/// Keeps connections on a host that suits, for a URL naming several: holds one connection to
/// the host in use and, when it breaks or stops suiting (or a pool's connection found it
/// unfit), finds another and moves every pool there.
async fn watch_hosts(nodes: Arc<Nodes>) {
    loop {
        let (index, mut conn) = match nodes.find().await {
            Ok(found) => found,
            Err(reasons) => {
                tracing::warn!(%reasons, "no database host suits now; looking again");
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
        };
        nodes.switch_to(index);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(HEARTBEAT) => {}
                _ = nodes.unfit.notified() => break,
            }
            let still = tokio::time::timeout(nodes.target.connect_timeout, Nodes::state(&mut conn)).await;
            match still {
                Ok(Ok(node)) if nodes.unfit(&node).is_none() => {}
                _ => break,
            }
        }
    }
}

/// Other replicas' changes, from LISTEN on a connection of its own: a pool lent out to
/// every write and waiting on a stalled database cannot hold it up.
struct Listener {
    pool: PgPool,
    live: Option<sqlx::postgres::PgListener>,
    nodes: Arc<Nodes>,
}

impl Listener {
    async fn connect(pool: &PgPool) -> Result<sqlx::postgres::PgListener> {
        let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
        listener.listen(CHANGES).await?;
        Ok(listener)
    }
}

#[async_trait]
impl crate::ChangeFeed for Listener {
    async fn next(&mut self) -> Result<crate::Heard> {
        let resync = crate::Heard {
            change: crate::Change::Resync,
            seq: None,
        };
        let Some(listener) = self.live.as_mut() else {
            // Listening again after a loss: what committed meanwhile is for the caller to
            // catch up on, from the last seq it heard.
            self.live = Some(Self::connect(&self.pool).await?);
            return Ok(resync);
        };
        match listener.try_recv().await {
            // The connection broke and sqlx listens again already.
            Ok(None) => Ok(resync),
            Ok(Some(notice)) => {
                let (change, head) = parse_notice(notice.payload());
                let seq = head.as_ref().map(|h| h.seq);
                if let Some(head) = head {
                    lock(&self.nodes.witness).adopt(head);
                }
                Ok(crate::Heard { change, seq })
            }
            Err(e) => {
                self.live = None;
                Err(e.into())
            }
        }
    }
}

/// The write probe of `ready`, shared by callers that ask at the same time: one probe at a
/// time, and one that does not commit is not followed by more (each would hold a
/// connection while it waits).
struct Probe {
    started: Instant,
    done: tokio::sync::watch::Receiver<Option<std::result::Result<(), String>>>,
}

pub struct PostgresStore {
    pool: PgPool,
    nodes: Arc<Nodes>,
    write_timeout: Duration,
    probe: Mutex<Option<Probe>>,
    watcher: Option<tokio::task::JoinHandle<()>>,
    listener_pool: std::sync::OnceLock<PgPool>,
    /// Reads of the task that follows the other replicas (see `reader`).
    follower_pool: PgPool,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        if let Some(watcher) = &self.watcher {
            watcher.abort();
        }
        // Each pool's connect hook holds the nodes, and the nodes hold the pools (to move them
        // to another host at a failover): a cycle that kept every pool, and its connections,
        // open after the store was gone. Nothing moves them once the watcher is stopped, so
        // the nodes let go of them here; a change feed still open keeps its own pool.
        lock(&self.nodes.pools).clear();
    }
}

impl PostgresStore {
    /// Connect to `url` (`postgres://USER:PASSWORD@HOST:PORT/DATABASE`, or several
    /// `HOST:PORT` separated by commas with `target_session_attrs`) and bring the schema up
    /// to date (replicas starting together migrate once: sqlx holds a lock while it does).
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_with(url, None).await
    }

    /// `open`, with the password given apart from the URL (read from a file).
    pub async fn open_with(url: &str, password: Option<&str>) -> Result<Self> {
        Self::open_with_settings(url, password, &StoreSettings::default()).await
    }

    /// `open_with`, with `settings`.
    pub async fn open_with_settings(url: &str, password: Option<&str>, settings: &StoreSettings) -> Result<Self> {
        let target = Target::parse(url)?;
        let mut base = PgConnectOptions::from_str(&target.url)
            .map_err(|e| StoreError::Url(e.to_string()))?
            .application_name("jitgate");
        if let Some(password) = password {
            base = base.password(password);
        }
        let several = target.hosts.len() > 1;
        // A host list, or one host that must be of a kind: choose (or refuse) now, saying why.
        let choose = several || target.attrs != crate::failover::SessionAttrs::Any;
        let nodes = Arc::new(Nodes {
            target,
            base,
            current: Mutex::new(0),
            witness: Mutex::new(Witness::default()),
            diverged: Mutex::new(None),
            pools: Mutex::new(Vec::new()),
            unfit: tokio::sync::Notify::new(),
        });
        let first = if choose {
            // The first host that suits, as libpq would; none is an error that says why
            // each did not.
            let (index, conn) = nodes.find().await.map_err(|reasons| {
                StoreError::Unavailable(format!(
                    "no host suits target_session_attrs={}: {reasons}",
                    nodes.target.attrs.as_str()
                ))
            })?;
            let _ = conn.close().await;
            *lock(&nodes.current) = index;
            index
        } else {
            0
        };
        // While the database is away, callers hear 503 within seconds, never past the bound.
        let acquire = settings.write_timeout.min(Duration::from_secs(3));
        let pool = vetted(&nodes)
            .max_connections(16)
            .acquire_timeout(acquire)
            .connect_with(nodes.options_for(first))
            .await?;
        migrate(&pool).await?;
        // What this process sees first of the history: the head at start.
        let mut conn = pool.acquire().await?;
        if let Some(head) = read_head(&mut conn).await? {
            lock(&nodes.witness).adopt(head);
        }
        drop(conn);
        let follower_pool = vetted(&nodes)
            .max_connections(2)
            .min_connections(0)
            .acquire_timeout(FOLLOWER_ACQUIRE)
            .connect_lazy_with(nodes.options_for(first));
        lock(&nodes.pools).push(pool.clone());
        lock(&nodes.pools).push(follower_pool.clone());
        let watcher = several.then(|| tokio::spawn(watch_hosts(nodes.clone())));
        Ok(PostgresStore {
            pool,
            nodes,
            write_timeout: settings.write_timeout,
            probe: Mutex::new(None),
            watcher,
            listener_pool: std::sync::OnceLock::new(),
            follower_pool,
        })
    }

    /// The listeners' pool, made once: one connection, tried briefly at a time (the
    /// caller tries again at once), following the host in use like the main pool.
    fn listener_pool(&self) -> PgPool {
        self.listener_pool
            .get_or_init(|| {
                let pool = vetted(&self.nodes)
                    .max_connections(1)
                    .min_connections(0)
                    .acquire_timeout(FOLLOWER_ACQUIRE)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .connect_lazy_with(self.nodes.options_for(*lock(&self.nodes.current)));
                lock(&self.nodes.pools).push(pool.clone());
                pool
            })
            .clone()
    }

    /// Probe that a write commits now, without the write lock: a row of its own rewritten
    /// (a stalled synchronous standby stalls this commit as every other; a read-only node
    /// refuses it). A transaction that only took an id would commit without waiting for the
    /// standby, and one in a read-only node would be let through.
    async fn probe_write(pool: PgPool) -> std::result::Result<(), String> {
        let attempt = async {
            let at = chrono::Utc::now().timestamp_millis();
            sqlx::query(
                "INSERT INTO readiness_probe (id, probed_at) VALUES (1, $1) \
                 ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at",
            )
            .bind(at)
            .execute(&pool)
            .await
        };
        match attempt.await {
            Ok(_) => Ok(()),
            Err(e) => {
                let error = StoreError::from(e);
                Err(match &error {
                    StoreError::Database(sqlx::Error::Database(db)) if db.code().as_deref() == Some("25006") => {
                        "the database node is read-only (a standby behind the front, or default_transaction_read_only): writes cannot commit".to_string()
                    }
                    _ => error.to_string(),
                })
            }
        }
    }
}

impl Backend for PostgresStore {
    type Db = Postgres;

    const SKIP_LOCKED: &'static str = " FOR UPDATE SKIP LOCKED";

    const JSON_TEXTS: &'static str = "SELECT jsonb_array_elements_text($1::jsonb)";

    const PLACEHOLDERS: Placeholders = Placeholders::Numbered;

    /// Read committed (the default) would let each query of a read see a different commit.
    const READ_SNAPSHOT: &'static str = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY";

    /// The follower's reads (catching up after a loss, refreshing what another replica
    /// changed) have connections of their own: under load at a failover every connection of
    /// the main pool may be waiting on a write, and a revocation must not wait behind them.
    fn reader(&self) -> &PgPool {
        if crate::is_following() {
            &self.follower_pool
        } else {
            &self.pool
        }
    }

    fn writer(&self) -> &PgPool {
        &self.pool
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>> {
        if let Some(why) = self.nodes.divergence() {
            return Err(StoreError::Diverged(why));
        }
        let mut tx = self.pool.begin().await?;
        // Waiting for the lock counts against the bound: a writer stuck in its commit (a
        // synchronous standby gone) must not queue every other one behind it for longer.
        // (The subquery runs first: set_config is volatile, so it is never folded into the
        // outer query.)
        let wait = format!("{}ms", self.write_timeout.as_millis().max(1));
        sqlx::query("SELECT pg_advisory_xact_lock($2) FROM (SELECT set_config('lock_timeout', $1, true)) AS bound")
            .bind(wait)
            .bind(WRITE_LOCK)
            .execute(&mut *tx)
            .await?;
        // Under the lock nobody else appends: the log as it is now is what this write
        // continues, and it must continue what this process saw.
        if let Some(why) = self.nodes.hold_to_history(&mut tx).await? {
            tx.rollback().await?;
            return Err(StoreError::Diverged(why));
        }
        Ok(tx)
    }

    /// Commit, then count what this transaction wrote as seen.
    async fn commit(&self, mut tx: Transaction<'static, Postgres>) -> Result<()> {
        let head = read_head(&mut tx).await?;
        tx.commit().await?;
        if let Some(head) = head {
            lock(&self.nodes.witness).adopt(head);
        }
        Ok(())
    }

    async fn announce(conn: &mut PgConnection, change: Notice<'_>) -> Result<()> {
        announce(conn, change).await
    }

    async fn file(&self, request: &Request, events: &[NewEvent]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        Sql::<Self>::insert_requests(&mut tx, &[(request, events)]).await?;
        announce(&mut tx, Notice::Request(&request.id)).await?;
        self.commit(tx).await
    }

    async fn transition(&self, previous: &Request, next: &Request, events: &[NewEvent]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        Sql::<Self>::write_transitions(&mut tx, &[(previous, next, events)]).await?;
        announce(&mut tx, Notice::Request(&next.id)).await?;
        self.commit(tx).await
    }

    async fn attempt(&self, attempt: Attempt) -> Result<()> {
        let mut tx = self.begin_write().await?;
        Sql::<Self>::write_attempts(&mut tx, &[&attempt]).await?;
        self.commit(tx).await
    }

    async fn read_live_grants(&self, after_id: Option<&str>, limit: u32) -> Result<Vec<LiveGrant>> {
        Sql::<Self>::live_grants(self.reader(), after_id, limit).await
    }

    async fn listen(&self) -> Result<Option<Box<dyn crate::ChangeFeed>>> {
        let pool = self.listener_pool();
        let live = Listener::connect(&pool).await?;
        Ok(Some(Box::new(Listener {
            pool,
            live: Some(live),
            nodes: self.nodes.clone(),
        })))
    }

    async fn ready(&self) -> Result<()> {
        if let Some(why) = self.nodes.divergence() {
            return Err(StoreError::Diverged(why));
        }
        let (started, mut done) = {
            let mut probe = lock(&self.probe);
            match probe.as_ref().filter(|p| p.done.borrow().is_none()) {
                Some(running) => (running.started, running.done.clone()),
                None => {
                    let (report, done) = tokio::sync::watch::channel(None);
                    let pool = self.pool.clone();
                    tokio::spawn(async move {
                        let _ = report.send(Some(Self::probe_write(pool).await));
                    });
                    let started = Instant::now();
                    *probe = Some(Probe {
                        started,
                        done: done.clone(),
                    });
                    (started, done)
                }
            }
        };
        let left = PROBE_BOUND.saturating_sub(started.elapsed());
        let outcome = match tokio::time::timeout(left, done.wait_for(Option::is_some)).await {
            Ok(Ok(result)) => result.clone(),
            Ok(Err(_)) => Some(Err("the write probe stopped".to_string())),
            Err(_) => Some(Err(format!(
                "a write has not committed for {:.1}s (a synchronous standby away, or the write lock held)",
                started.elapsed().as_secs_f64()
            ))),
        };
        match outcome {
            Some(Err(why)) => Err(StoreError::Unavailable(why)),
            _ => Ok(()),
        }
    }

    fn divergence(&self) -> Option<String> {
        self.nodes.divergence()
    }

    async fn accept_history(&self) -> Result<Option<String>> {
        // Under the write lock, so no write checks against a witness half reset: the head read
        // here is the log every later write continues.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITE_LOCK)
            .execute(&mut *tx)
            .await?;
        let head = read_head(&mut tx).await?;
        let node = Nodes::state(&mut tx).await.ok();
        let why = {
            let mut witness = lock(&self.nodes.witness);
            let mut diverged = lock(&self.nodes.diverged);
            *witness = Witness::default();
            if let Some(head) = head {
                witness.adopt(head);
            }
            witness.adopt_timeline(node.and_then(|n| n.timeline));
            diverged.take()
        };
        tx.commit().await?;
        if let Some(why) = &why {
            tracing::warn!(reason = %why, "an operator accepted the database's history as it is");
        }
        Ok(why)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_notice;
    use crate::Change;

    #[test]
    fn notices_carry_the_head_and_older_ones_still_read() {
        let (change, head) = parse_notice("R:req_1:42:abcd");
        assert_eq!(change, Change::Request("req_1".into()));
        let head = head.unwrap();
        assert_eq!((head.seq, head.hash.as_str()), (42, "abcd"));
        assert_eq!(parse_notice("G:grt_1:7:ff").0, Change::Grant("grt_1".into()));
        assert_eq!(parse_notice("T::9:aa").0, Change::Tokens);
        assert_eq!(parse_notice("K::9:aa").0, Change::Keys);
        // No event yet: no head.
        assert_eq!(parse_notice("T::0:").1, None);
        assert_eq!(parse_notice("r:req_2").0, Change::Request("req_2".into()));
        assert_eq!(parse_notice("tokens").0, Change::Tokens);
        assert_eq!(parse_notice("something else").0, Change::Resync);
        assert_eq!(parse_notice("R::1:aa").0, Change::Resync);
        // SCIM ids travel hex-encoded, so one holding `:` still reads back whole.
        assert_eq!(parse_notice("SU:753a31:3:bb").0, Change::ScimUser("u:1".into()));
        assert_eq!(parse_notice("SG:6772702d31:3:bb").0, Change::ScimGroup("grp-1".into()));
        assert_eq!(parse_notice("SU:zz:3:bb").0, Change::Resync);
        assert_eq!(parse_notice("SG::3:bb").0, Change::Resync);
    }
}
