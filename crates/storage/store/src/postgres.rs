//! PostgreSQL: for several jitgate replicas on one database. The queries are the SQLite
//! store's (times as milliseconds in BIGINT, the request as a JSON document), shared in
//! `shared.rs` and `sql.rs`; what is PostgreSQL's own is here: every write transaction first
//! takes one advisory lock, so the audit chain is appended by one writer at a time as on
//! SQLite (no forks, no gaps); changes are announced to the other replicas (NOTIFY); each
//! write commits at once, durable by PostgreSQL's own settings (`synchronous_commit`, on by
//! default); and leasing skips rows another replica has locked.

use crate::sql::{Attempt, Backend, Notice, Placeholders, Sql};
use crate::{Result, StoreError};
use async_trait::async_trait;
use jitgate_core::index::LiveGrant;
use jitgate_core::{NewEvent, Request};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use std::str::FromStr;
use std::time::Duration;

/// The advisory lock every write transaction holds until it commits (any number; this one
/// spells "jitgate").
const WRITE_LOCK: i64 = 0x006a_6974_6761_7465;

/// The channel every change is announced on, delivered to listeners when it commits.
const CHANGES: &str = "jitgate_changes";

/// Announce a change from inside its transaction: listeners hear of it once it commits, and
/// never of one that rolls back.
async fn announce(conn: &mut PgConnection, change: Notice<'_>) -> Result<()> {
    let payload = match change {
        Notice::Request(id) => format!("r:{id}"),
        Notice::Grant(id) => format!("g:{id}"),
        Notice::Tokens => "tokens".to_string(),
        Notice::Keys => "keys".to_string(),
    };
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANGES)
        .bind(payload)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Other replicas' changes, from LISTEN.
struct Listener(sqlx::postgres::PgListener);

#[async_trait]
impl crate::ChangeFeed for Listener {
    async fn next(&mut self) -> Result<crate::Heard> {
        // `None`: the connection was lost and is back; what happened meanwhile is unknown.
        let Some(notice) = self.0.try_recv().await? else {
            return Ok(crate::Heard {
                change: crate::Change::Resync,
                seq: None,
            });
        };
        let payload = notice.payload();
        let change = match payload.split_once(':') {
            Some(("r", id)) => crate::Change::Request(id.to_string()),
            Some(("g", id)) => crate::Change::Grant(id.to_string()),
            _ if payload == "tokens" => crate::Change::Tokens,
            _ if payload == "keys" => crate::Change::Keys,
            _ => crate::Change::Resync,
        };
        Ok(crate::Heard { change, seq: None })
    }
}

pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connect to `url` (`postgres://USER:PASSWORD@HOST:PORT/DATABASE`) and bring the schema
    /// up to date (replicas starting together migrate once: sqlx holds a lock while it does).
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_with(url, None).await
    }

    /// `open`, with the password given apart from the URL (read from a file).
    pub async fn open_with(url: &str, password: Option<&str>) -> Result<Self> {
        let mut options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Url(e.to_string()))?
            .application_name("jitgate");
        if let Some(password) = password {
            options = options.password(password);
        }
        let pool = PgPoolOptions::new()
            .max_connections(16)
            // While the database is away, callers hear 503 within seconds, not minutes.
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PostgresStore { pool })
    }
}

impl Backend for PostgresStore {
    type Db = Postgres;

    const SKIP_LOCKED: &'static str = " FOR UPDATE SKIP LOCKED";

    const JSON_TEXTS: &'static str = "SELECT jsonb_array_elements_text($1::jsonb)";

    const PLACEHOLDERS: Placeholders = Placeholders::Numbered;

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    fn writer(&self) -> &PgPool {
        &self.pool
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITE_LOCK)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    async fn announce(conn: &mut PgConnection, change: Notice<'_>) -> Result<()> {
        announce(conn, change).await
    }

    async fn file(&self, request: &Request, events: &[NewEvent]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        Sql::<Self>::insert_requests(&mut tx, &[(request, events)]).await?;
        announce(&mut tx, Notice::Request(&request.id)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn transition(&self, previous: &Request, next: &Request, events: &[NewEvent]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        Sql::<Self>::write_transitions(&mut tx, &[(previous, next, events)]).await?;
        announce(&mut tx, Notice::Request(&next.id)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn attempt(&self, attempt: Attempt) -> Result<()> {
        let mut tx = self.begin_write().await?;
        Sql::<Self>::write_attempts(&mut tx, &[&attempt]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn read_live_grants(&self, after_id: Option<&str>, limit: u32) -> Result<Vec<LiveGrant>> {
        Sql::<Self>::live_grants(&self.pool, after_id, limit).await
    }

    async fn listen(&self) -> Result<Option<Box<dyn crate::ChangeFeed>>> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen(CHANGES).await?;
        Ok(Some(Box::new(Listener(listener))))
    }
}
