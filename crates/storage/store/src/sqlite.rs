//! SQLite: one file, WAL mode, `synchronous = FULL` so an acknowledged commit survives a
//! crash or power loss. Writes go through a single connection (SQLite has one writer anyway,
//! and this avoids busy retries); reads use a pool that runs beside it. The queries are
//! shared with PostgreSQL (`shared.rs`, `sql.rs`); what is SQLite's own is here: writes
//! arriving together share one durable commit (group commit), and the check index loads its
//! grants packed into one text value.

use crate::group_commit::{GroupCommit, Job};
use crate::sql::{Attempt, Backend, Conn, Notice, Placeholders, Sql};
use crate::{Result, StoreError};
use jitgate_core::index::LiveGrant;
use jitgate_core::{NewEvent, Request};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqliteConnection, SqlitePool, Transaction};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// New requests filed together share one durable commit.
    filings: GroupCommit<(Request, Vec<NewEvent>)>,
    /// Provider delivery attempts recorded together share one durable commit.
    attempts: GroupCommit<Attempt>,
    /// Request transitions saved together (expiries) share one durable commit.
    transitions: GroupCommit<(Request, Request, Vec<NewEvent>)>,
}

/// A row of the packed `live_grants` query, or `None` if it does not split as it should.
fn unpack_live_grant(row: &str) -> Option<jitgate_core::index::LiveGrant> {
    let f: Vec<&str> = row.split('\u{1f}').collect();
    let [id, principal, resource, action, payload, has_payload, single_use, starts_at, expires_at] = f.as_slice()
    else {
        return None;
    };
    Some(jitgate_core::index::LiveGrant {
        id: id.to_string(),
        principal: principal.to_string(),
        resource: resource.to_string(),
        action: action.to_string(),
        payload_sha256: (*has_payload == "1").then(|| payload.to_string()),
        single_use: *single_use == "1",
        starts_at_ms: starts_at.parse().ok()?,
        expires_at_ms: expires_at.parse().ok()?,
    })
}

/// A group commit whose batches are written by `write_all` in one transaction.
/// The writes of a batch, run inside its transaction.
type BatchWrite<'c> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send + 'c>>;

fn group_commit<T, F>(writer: &SqlitePool, write_all: F) -> GroupCommit<T>
where
    T: Send + Sync + 'static,
    F: for<'c> Fn(&'c mut SqliteConnection, &'c [Job<T>]) -> BatchWrite<'c> + Send + Sync + Copy + 'static,
{
    let writer = writer.clone();
    GroupCommit::new(std::sync::Arc::new(move |batch: Vec<Job<T>>| {
        let writer = writer.clone();
        Box::pin(async move {
            let result = async {
                let mut tx = writer.begin().await?;
                write_all(&mut tx, &batch).await?;
                tx.commit().await?;
                Ok(())
            }
            .await;
            (batch, result)
        })
    }))
}

impl SqliteStore {
    /// Open (creating if needed) the database file at `path` and bring its schema up to date.
    pub async fn open(path: &str) -> Result<Self> {
        if let Some(dir) = Path::new(path).parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StoreError::Url(format!("cannot create directory {}: {e}", dir.display())))?;
            }
        }
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
            .map_err(|e| StoreError::Url(e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.read_only(true))
            .await?;
        let filings = group_commit(&writer, |conn, jobs: &[Job<(Request, Vec<NewEvent>)>]| {
            Box::pin(async move {
                let filings: Vec<(&Request, &[NewEvent])> =
                    jobs.iter().map(|job| (&job.item.0, job.item.1.as_slice())).collect();
                Sql::<SqliteStore>::insert_requests(conn, &filings).await
            })
        });
        let attempts = group_commit(&writer, |conn, jobs: &[Job<Attempt>]| {
            Box::pin(async move {
                let attempts: Vec<&Attempt> = jobs.iter().map(|job| &job.item).collect();
                Sql::<SqliteStore>::write_attempts(conn, &attempts).await
            })
        });
        let transitions = group_commit(&writer, |conn, jobs: &[Job<(Request, Request, Vec<NewEvent>)>]| {
            Box::pin(async move {
                let changes: Vec<(&Request, &Request, &[NewEvent])> = jobs
                    .iter()
                    .map(|job| (&job.item.0, &job.item.1, job.item.2.as_slice()))
                    .collect();
                Sql::<SqliteStore>::write_transitions(conn, &changes).await
            })
        });
        Ok(SqliteStore {
            writer,
            reader,
            filings,
            attempts,
            transitions,
        })
    }
}

impl Backend for SqliteStore {
    type Db = Sqlite;

    const SKIP_LOCKED: &'static str = "";

    const JSON_TEXTS: &'static str = "SELECT value FROM json_each($1)";

    const PLACEHOLDERS: Placeholders = Placeholders::Anonymous;

    const READ_SNAPSHOT: &'static str = "";

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// The writer pool has one connection: a transaction holds it, and with it SQLite's one
    /// write lock, until it commits.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin().await?)
    }

    async fn announce(_conn: &mut Conn<Self>, _change: Notice<'_>) -> Result<()> {
        Ok(())
    }

    async fn file(&self, request: &Request, events: &[NewEvent]) -> Result<()> {
        self.filings.submit((request.clone(), events.to_vec())).await
    }

    /// Transitions saved at the same moment (many grants expiring together) share a commit.
    async fn transition(&self, previous: &Request, next: &Request, events: &[NewEvent]) -> Result<()> {
        self.transitions
            .submit((previous.clone(), next.clone(), events.to_vec()))
            .await
    }

    /// Attempts recorded at the same moment (many grants ending together) share a commit.
    async fn attempt(&self, attempt: Attempt) -> Result<()> {
        self.attempts.submit(attempt).await
    }

    async fn read_live_grants(&self, after_id: Option<&str>, limit: u32) -> Result<Vec<LiveGrant>> {
        // The whole page as one text value: grants separated by char(30), fields by char(31).
        // Decoding a million rows one by one (each a message from sqlx's SQLite thread) costs
        // most of a cold start; this reads them about ten times faster.
        let (rows, packed): (i64, Option<String>) = sqlx::query_as(
            "SELECT count(*), group_concat(packed, char(30) ORDER BY id) FROM (\
             SELECT id, id || char(31) || principal || char(31) || resource || char(31) || action || char(31) || \
             COALESCE(payload_sha256, '') || char(31) || (payload_sha256 IS NOT NULL) || char(31) || single_use || char(31) || \
             starts_at || char(31) || expires_at AS packed FROM grants WHERE status = 'active' AND id > ? ORDER BY id LIMIT ?)",
        )
        .bind(after_id.unwrap_or(""))
        .bind(i64::from(limit.max(1)))
        .fetch_one(&self.reader)
        .await?;
        let packed = packed.unwrap_or_default();
        let grants: Option<Vec<_>> = if rows == 0 {
            Some(Vec::new())
        } else {
            packed.split('\u{1e}').map(unpack_live_grant).collect()
        };
        // As many grants as rows, each of exactly nine fields: no name held a separator (one
        // that did would split into more pieces, never fewer), so nothing was misread.
        if let Some(grants) = grants.filter(|g| g.len() as i64 == rows) {
            return Ok(grants);
        }
        // A name holding the separator: read this page column by column.
        Sql::<Self>::live_grants(&self.reader, after_id, limit).await
    }

    /// SQLite belongs to one process: there are no other replicas to hear from.
    async fn listen(&self) -> Result<Option<Box<dyn crate::ChangeFeed>>> {
        Ok(None)
    }

    async fn commit(&self, tx: Transaction<'static, Sqlite>) -> Result<()> {
        Ok(tx.commit().await?)
    }

    async fn ready(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.writer).await?;
        Ok(())
    }

    /// One process, one file: no other history to diverge from.
    async fn accept_history(&self) -> Result<Option<String>> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::unpack_live_grant;

    #[test]
    fn packed_live_grants_unpack_or_say_they_cannot() {
        let row = "grt_1\u{1f}alice\u{1f}prod-db\u{1f}read\u{1f}\u{1f}0\u{1f}1\u{1f}1000\u{1f}2000";
        let g = unpack_live_grant(row).unwrap();
        assert_eq!(
            (
                g.id.as_str(),
                g.principal.as_str(),
                g.resource.as_str(),
                g.action.as_str()
            ),
            ("grt_1", "alice", "prod-db", "read")
        );
        assert_eq!(
            (g.payload_sha256, g.single_use, g.starts_at_ms, g.expires_at_ms),
            (None, true, 1000, 2000)
        );
        let bound = "grt_2\u{1f}ci\u{1f}api\u{1f}deploy\u{1f}abc\u{1f}1\u{1f}0\u{1f}1\u{1f}2";
        assert_eq!(unpack_live_grant(bound).unwrap().payload_sha256.as_deref(), Some("abc"));
        // A name holding the separator cannot be split safely: the caller reads columns instead.
        let odd = "grt_3\u{1f}al\u{1f}ice\u{1f}prod-db\u{1f}read\u{1f}\u{1f}0\u{1f}0\u{1f}1\u{1f}2";
        assert!(unpack_live_grant(odd).is_none());
    }
}
