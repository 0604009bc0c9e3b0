//! SQLite: one file, WAL mode, `synchronous = FULL` so an acknowledged commit survives a
//! crash or power loss. Writes go through a single connection (SQLite has one writer anyway,
//! and this avoids busy retries); reads use a pool that runs beside it.

use crate::group_commit::{GroupCommit, Job};
use crate::rows::{from_ms, ms, request_doc, GRANT_COLUMNS};
use crate::{AuditFilter, GrantFilter, RequestFilter, Result, Store, StoreError};
use async_trait::async_trait;
use jitgate_core::audit::{ChainReport, ChainVerifier, Checkpoint, GENESIS_HASH};
use jitgate_core::keys::SigningKeyRecord;
use jitgate_core::outbox::{OutboxItem, OutboxOperation, OutboxState};
use jitgate_core::{
    chain_hash, ApiToken, AuditEvent, EventKind, Grant, GrantStatus, NewEvent, Request, RequestStatus, Timestamp,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Row, SqliteConnection, SqlitePool};
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

/// A provider delivery attempt to record.
struct Attempt {
    id: i64,
    done_at: Option<Timestamp>,
    next_due: Option<Timestamp>,
    error: Option<String>,
    event: Option<NewEvent>,
}

/// The outbox rows of delivery attempts, in one statement per thousand; their events are
/// appended with the batch's.
async fn write_attempts(conn: &mut SqliteConnection, attempts: &[&Attempt]) -> Result<()> {
    for chunk in attempts.chunks(ROWS_PER_INSERT) {
        let mut update = sqlx::QueryBuilder::new(
            "UPDATE outbox SET leased_until = NULL, attempts = attempts + 1, done_at = v.column2, \
             due_at = COALESCE(v.column3, due_at), last_error = v.column4 FROM (",
        );
        update.push_values(chunk, |mut row, a| {
            row.push_bind(a.id)
                .push_bind(a.done_at.map(ms))
                .push_bind(a.next_due.map(ms))
                .push_bind(&a.error);
        });
        update.push(") AS v WHERE outbox.id = v.column1 AND outbox.done_at IS NULL");
        update.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Requests' transitions with their grants' and providers' changes, a statement per kind of
/// change for the lot; their events are appended with the batch's. Each applies only if
/// nobody changed its request (or grant) first; else the lot fails with `Conflict`, and the
/// group commit writes them one by one, so only the stale one fails.
async fn write_transitions(tx: &mut SqliteConnection, items: &[(&Request, &Request)]) -> Result<()> {
    for chunk in items.chunks(ROWS_PER_INSERT) {
        let docs = chunk
            .iter()
            .map(|(_, next)| request_doc(next))
            .collect::<Result<Vec<_>>>()?;
        let mut update = sqlx::QueryBuilder::new(
            "UPDATE requests SET status = v.column3, escalate_at = v.column4, doc = v.column5, version = version + 1 FROM (",
        );
        update.push_values(chunk.iter().zip(docs), |mut row, ((previous, next), doc)| {
            row.push_bind(&next.id)
                .push_bind(previous.version)
                .push_bind(next.status.as_str())
                .push_bind(next.escalates_at().map(ms))
                .push_bind(doc);
        });
        update.push(") AS v WHERE requests.id = v.column1 AND requests.version = v.column2");
        if update.build().execute(&mut *tx).await?.rows_affected() != chunk.len() as u64 {
            return Err(StoreError::Conflict);
        }
    }
    let issued: Vec<&Grant> = items
        .iter()
        .filter_map(|(previous, next)| match (&previous.grant, &next.grant) {
            (None, Some(grant)) => Some(grant),
            _ => None,
        })
        .collect();
    insert_grants(&mut *tx, &issued).await?;
    let changed: Vec<(&Grant, &Grant)> = items
        .iter()
        .filter_map(|(previous, next)| match (&previous.grant, &next.grant) {
            (Some(old), Some(new)) if old != new => Some((old, new)),
            _ => None,
        })
        .collect();
    for chunk in changed.chunks(ROWS_PER_INSERT) {
        // A new end deserves its own reminder (SET reads the row as it was).
        let mut update = sqlx::QueryBuilder::new(
            "UPDATE grants SET status = v.column4, expires_at = v.column5, ended_at = v.column6, ended_by = v.column7, \
             end_comment = v.column8, extensions = v.column9, token = v.column10, \
             reminded_at = CASE WHEN grants.expires_at = v.column5 THEN grants.reminded_at END FROM (",
        );
        update.push_values(chunk, |mut row, (old, new)| {
            row.push_bind(&new.id)
                .push_bind(old.status.as_str())
                .push_bind(i64::from(old.extensions))
                .push_bind(new.status.as_str())
                .push_bind(ms(new.expires_at))
                .push_bind(new.ended_at.map(ms))
                .push_bind(&new.ended_by)
                .push_bind(&new.end_comment)
                .push_bind(i64::from(new.extensions))
                .push_bind(&new.token);
        });
        update
            .push(") AS v WHERE grants.id = v.column1 AND grants.status = v.column2 AND grants.extensions = v.column3");
        if update.build().execute(&mut *tx).await?.rows_affected() != chunk.len() as u64 {
            return Err(StoreError::Conflict);
        }
    }
    reschedule_providers(tx, &changed).await
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

/// Rows per multi-row INSERT: well under SQLite's 32,766 bound values for the widest table
/// (17 columns), and few statements per batch: each one is a round trip to sqlx's SQLite
/// thread, which costs more than the row.
const ROWS_PER_INSERT: usize = 1000;

crate::rows::row_decoders!(SqliteRow);

/// Append events to the chain in order: the head is read once, each event's hash chains onto
/// the one before, and the rows go in with a few multi-row inserts.
async fn append_events<'e>(conn: &mut SqliteConnection, events: impl IntoIterator<Item = &'e NewEvent>) -> Result<()> {
    let events: Vec<&NewEvent> = events.into_iter().collect();
    if events.is_empty() {
        return Ok(());
    }
    let last = sqlx::query("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    let (mut seq, mut prev) = match last {
        Some(row) => (row.try_get::<i64, _>("seq")?, row.try_get::<String, _>("hash")?),
        None => (0, GENESIS_HASH.to_string()),
    };
    let mut chained = Vec::with_capacity(events.len());
    for event in events {
        seq += 1;
        let hash = chain_hash(&prev, seq, event);
        chained.push((seq, event, std::mem::replace(&mut prev, hash.clone()), hash));
    }
    for rows in chained.chunks(ROWS_PER_INSERT) {
        let mut insert = sqlx::QueryBuilder::new(
            "INSERT INTO audit_events (seq, at, kind, actor, subject, request_id, grant_id, resource, action, comment, prev_hash, hash) ",
        );
        insert.push_values(rows, |mut row, (seq, event, prev, hash)| {
            row.push_bind(*seq)
                .push_bind(ms(event.at))
                .push_bind(event.kind.as_str())
                .push_bind(&event.actor)
                .push_bind(&event.subject)
                .push_bind(&event.request_id)
                .push_bind(&event.grant_id)
                .push_bind(&event.resource)
                .push_bind(&event.action)
                .push_bind(&event.comment)
                .push_bind(prev)
                .push_bind(hash);
        });
        insert.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// New grants, and for each active one its providers' provisioning (due at its start) and
/// deprovisioning (due at its end).
async fn insert_grants(conn: &mut SqliteConnection, grants: &[&Grant]) -> Result<()> {
    for chunk in grants.chunks(ROWS_PER_INSERT) {
        let providers = chunk
            .iter()
            .map(|g| serde_json::to_string(&g.providers).map_err(|e| StoreError::Corrupt(e.to_string())))
            .collect::<Result<Vec<_>>>()?;
        let mut insert = sqlx::QueryBuilder::new(
            "INSERT INTO grants (id, request_id, principal, resource, action, payload_sha256, single_use, break_glass, \
             status, starts_at, expires_at, ended_at, ended_by, end_comment, extensions, token, providers) ",
        );
        insert.push_values(chunk.iter().zip(providers), |mut row, (g, providers)| {
            row.push_bind(&g.id)
                .push_bind(&g.request_id)
                .push_bind(&g.principal)
                .push_bind(&g.resource)
                .push_bind(&g.action)
                .push_bind(&g.payload_sha256)
                .push_bind(g.single_use)
                .push_bind(g.break_glass)
                .push_bind(g.status.as_str())
                .push_bind(ms(g.starts_at))
                .push_bind(ms(g.expires_at))
                .push_bind(g.ended_at.map(ms))
                .push_bind(&g.ended_by)
                .push_bind(&g.end_comment)
                .push_bind(i64::from(g.extensions))
                .push_bind(&g.token)
                .push_bind(providers);
        });
        insert.build().execute(&mut *conn).await?;
    }
    let deliveries: Vec<(&str, &str, &str, i64)> = grants
        .iter()
        .filter(|g| g.status == GrantStatus::Active)
        .flat_map(|g| {
            g.providers.iter().flat_map(move |provider| {
                [("provision", g.starts_at), ("deprovision", g.expires_at)]
                    .map(|(operation, due)| (g.id.as_str(), provider.as_str(), operation, ms(due)))
            })
        })
        .collect();
    for rows in deliveries.chunks(ROWS_PER_INSERT) {
        let mut insert = sqlx::QueryBuilder::new("INSERT INTO outbox (grant_id, provider, operation, due_at) ");
        insert.push_values(rows, |mut row, (grant_id, provider, operation, due)| {
            row.push_bind(*grant_id)
                .push_bind(*provider)
                .push_bind(*operation)
                .push_bind(*due);
        });
        insert.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Keep changed grants' providers in step with their ends: a pending deprovisioning falls
/// due later when its grant is extended, now when it ends early; and an extension provisions
/// again (due at once), so targets that hold the end themselves, like a PostgreSQL role's
/// `VALID UNTIL`, hear of the new one.
async fn reschedule_providers(conn: &mut SqliteConnection, changed: &[(&Grant, &Grant)]) -> Result<()> {
    let moved: Vec<(&Grant, &Grant)> = changed
        .iter()
        .copied()
        .filter(|(old, new)| {
            !new.providers.is_empty() && (old.expires_at != new.expires_at || old.status != new.status)
        })
        .collect();
    for chunk in moved.chunks(ROWS_PER_INSERT) {
        let mut update = sqlx::QueryBuilder::new("UPDATE outbox SET due_at = v.column2 FROM (");
        update.push_values(chunk, |mut row, (_, g)| {
            let due = if g.status == GrantStatus::Active {
                g.expires_at
            } else {
                g.ended_at.unwrap_or(g.expires_at).min(g.expires_at)
            };
            row.push_bind(&g.id).push_bind(ms(due));
        });
        update.push(
            ") AS v WHERE outbox.grant_id = v.column1 AND outbox.operation = 'deprovision' AND outbox.done_at IS NULL",
        );
        update.build().execute(&mut *conn).await?;
    }
    for (old, g) in moved {
        if g.status == GrantStatus::Active && old.expires_at != g.expires_at {
            sqlx::query(
                "UPDATE outbox SET due_at = ?, done_at = NULL, attempts = 0, last_error = NULL \
                 WHERE grant_id = ? AND operation = 'provision'",
            )
            .bind(ms(g.starts_at))
            .bind(&g.id)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// New requests with their grants and events, in a few multi-row inserts.
async fn insert_requests(conn: &mut SqliteConnection, filings: &[(&Request, &[NewEvent])]) -> Result<()> {
    for chunk in filings.chunks(ROWS_PER_INSERT) {
        let docs = chunk
            .iter()
            .map(|(request, _)| request_doc(request))
            .collect::<Result<Vec<_>>>()?;
        let mut insert = sqlx::QueryBuilder::new(
            "INSERT INTO requests (id, requester, resource, action, status, created_at, pending_expires_at, escalate_at, version, doc) ",
        );
        insert.push_values(chunk.iter().zip(docs), |mut row, ((request, _), doc)| {
            row.push_bind(&request.id)
                .push_bind(&request.requester)
                .push_bind(&request.resource)
                .push_bind(&request.action)
                .push_bind(request.status.as_str())
                .push_bind(ms(request.created_at))
                .push_bind(ms(request.pending_expires_at))
                .push_bind(request.escalates_at().map(ms))
                .push_bind(1_i64)
                .push_bind(doc);
        });
        insert.build().execute(&mut *conn).await?;
    }
    let grants: Vec<&Grant> = filings.iter().filter_map(|(r, _)| r.grant.as_ref()).collect();
    insert_grants(conn, &grants).await?;
    append_events(conn, filings.iter().flat_map(|(_, events)| events.iter())).await
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
                insert_requests(conn, &filings).await
            })
        });
        let attempts = group_commit(&writer, |conn, jobs: &[Job<Attempt>]| {
            Box::pin(async move {
                let attempts: Vec<&Attempt> = jobs.iter().map(|job| &job.item).collect();
                write_attempts(&mut *conn, &attempts).await?;
                append_events(conn, attempts.iter().filter_map(|a| a.event.as_ref())).await
            })
        });
        let transitions = group_commit(&writer, |conn, jobs: &[Job<(Request, Request, Vec<NewEvent>)>]| {
            Box::pin(async move {
                let changes: Vec<(&Request, &Request)> = jobs.iter().map(|job| (&job.item.0, &job.item.1)).collect();
                write_transitions(&mut *conn, &changes).await?;
                append_events(conn, jobs.iter().flat_map(|job| job.item.2.iter())).await
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

    /// One delivery attempt of an outbox item: done, or failed with the next try's time.
    /// Attempts recorded at the same moment share one commit (many grants ending together).
    async fn record_attempt(
        &self,
        id: i64,
        done_at: Option<Timestamp>,
        next_due: Option<Timestamp>,
        error: Option<&str>,
        event: Option<&NewEvent>,
    ) -> Result<()> {
        self.attempts
            .submit(Attempt {
                id,
                done_at,
                next_due,
                error: error.map(str::to_string),
                event: event.cloned(),
            })
            .await
    }

    fn request_query(where_clause: &str) -> String {
        format!(
            "SELECT r.doc, r.version, {GRANT_COLUMNS} FROM requests r LEFT JOIN grants g ON g.request_id = r.id {where_clause}"
        )
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_request(&self, request: &Request, events: &[NewEvent]) -> Result<Request> {
        self.filings.submit((request.clone(), events.to_vec())).await?;
        let mut stored = request.clone();
        stored.version = 1;
        Ok(stored)
    }

    async fn create_requests(&self, batch: &[(Request, Vec<NewEvent>)]) -> Result<()> {
        let filings: Vec<(&Request, &[NewEvent])> = batch.iter().map(|(r, e)| (r, e.as_slice())).collect();
        let mut tx = self.writer.begin().await?;
        insert_requests(&mut tx, &filings).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn save_transition(&self, previous: &Request, next: &Request, events: &[NewEvent]) -> Result<Request> {
        // Transitions saved at the same moment (many grants expiring together) share a commit.
        self.transitions
            .submit((previous.clone(), next.clone(), events.to_vec()))
            .await?;
        let mut stored = next.clone();
        stored.version = previous.version + 1;
        Ok(stored)
    }

    async fn append_events(&self, events: &[NewEvent]) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        append_events(&mut tx, events).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn consume_grant(&self, grant_id: &str, used: &NewEvent, now: Timestamp) -> Result<bool> {
        let mut tx = self.writer.begin().await?;
        let updated = sqlx::query(
            "UPDATE grants SET status = 'used', ended_at = ?, ended_by = ? \
             WHERE id = ? AND status = 'active' AND single_use = 1 AND starts_at <= ? AND expires_at > ?",
        )
        .bind(ms(now))
        .bind(&used.actor)
        .bind(grant_id)
        .bind(ms(now))
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE outbox SET due_at = ? WHERE grant_id = ? AND operation = 'deprovision' AND done_at IS NULL",
        )
        .bind(ms(now))
        .bind(grant_id)
        .execute(&mut *tx)
        .await?;
        append_events(&mut tx, std::slice::from_ref(used)).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn get_request(&self, id: &str) -> Result<Option<Request>> {
        let row = sqlx::query(&Self::request_query("WHERE r.id = ?"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(request_from_row).transpose()
    }

    async fn get_request_by_grant(&self, grant_id: &str) -> Result<Option<Request>> {
        let row = sqlx::query(&Self::request_query("WHERE g.id = ?"))
            .bind(grant_id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(request_from_row).transpose()
    }

    async fn get_grants(&self, ids: &[String]) -> Result<Vec<Grant>> {
        let mut grants = Vec::with_capacity(ids.len());
        // One bound JSON array per thousand ids, not a placeholder per id.
        for chunk in ids.chunks(ROWS_PER_INSERT) {
            let ids = serde_json::to_string(chunk).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let rows = sqlx::query(&format!(
                "SELECT {GRANT_COLUMNS} FROM grants g WHERE g.id IN (SELECT value FROM json_each(?))"
            ))
            .bind(ids)
            .fetch_all(&self.reader)
            .await?;
            for row in &rows {
                grants.extend(grant_from_row(row)?);
            }
        }
        Ok(grants)
    }

    async fn list_requests(&self, filter: &RequestFilter, now: Timestamp) -> Result<Vec<Request>> {
        let mut clauses: Vec<&str> = Vec::new();
        let mut binds: Vec<String> = Vec::new();
        let mut now_bind = false;
        match filter.status {
            Some(RequestStatus::Pending) => {
                clauses.push("r.status = 'pending' AND r.pending_expires_at > ?");
                now_bind = true;
            }
            Some(RequestStatus::Expired) => {
                clauses.push("(r.status = 'expired' OR (r.status = 'pending' AND r.pending_expires_at <= ?))");
                now_bind = true;
            }
            Some(status) => {
                clauses.push("r.status = ?");
                binds.push(status.as_str().to_string());
            }
            None => {}
        }
        if let Some(requester) = &filter.requester {
            clauses.push("r.requester = ?");
            binds.push(requester.clone());
        }
        if let Some(before) = &filter.before {
            clauses.push("(r.created_at, r.id) < (SELECT created_at, id FROM requests WHERE id = ?)");
            binds.push(before.clone());
        }
        let where_clause = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let sql = Self::request_query(&format!("{where_clause} ORDER BY r.created_at DESC, r.id DESC LIMIT ?"));
        let mut query = sqlx::query(&sql);
        if now_bind {
            query = query.bind(ms(now));
        }
        for b in &binds {
            query = query.bind(b);
        }
        let rows = query
            .bind(i64::from(filter.limit.max(1)))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(request_from_row).collect()
    }

    async fn count_pending(&self, requester: &str, now: Timestamp) -> Result<u64> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM requests WHERE requester = ? AND status = 'pending' AND pending_expires_at > ?",
        )
        .bind(requester)
        .bind(ms(now))
        .fetch_one(&self.reader)
        .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn list_grants(&self, filter: &GrantFilter, now: Timestamp) -> Result<Vec<Grant>> {
        let (sql, binds) = crate::rows::grant_list_query(filter, now);
        let mut query = sqlx::query(&sql);
        for bind in binds {
            query = match bind {
                crate::rows::ListBind::Int(v) => query.bind(v),
                crate::rows::ListBind::Text(v) => query.bind(v),
            };
        }
        let rows = query.fetch_all(&self.reader).await?;
        rows.iter().filter_map(|r| grant_from_row(r).transpose()).collect()
    }

    async fn live_grants(&self, after_id: Option<&str>, limit: u32) -> Result<Vec<jitgate_core::index::LiveGrant>> {
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
        let rows = sqlx::query(
            "SELECT id, principal, resource, action, payload_sha256, single_use, starts_at, expires_at FROM grants \
             WHERE status = 'active' AND id > ? ORDER BY id LIMIT ?",
        )
        .bind(after_id.unwrap_or(""))
        .bind(i64::from(limit.max(1)))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(live_grant_from_row).collect()
    }

    async fn active_grants(&self) -> Result<Vec<Grant>> {
        let sql = format!("SELECT {GRANT_COLUMNS} FROM grants g WHERE g.status = 'active'");
        let rows = sqlx::query(&sql).fetch_all(&self.reader).await?;
        rows.iter().filter_map(|r| grant_from_row(r).transpose()).collect()
    }

    async fn due_requests(&self, now: Timestamp, limit: u32) -> Result<Vec<Request>> {
        let sql = format!(
            "SELECT r.doc, r.version, {GRANT_COLUMNS} FROM requests r LEFT JOIN grants g ON g.request_id = r.id \
             WHERE r.id IN (SELECT id FROM requests WHERE status = 'pending' AND pending_expires_at <= ?1 \
                            UNION SELECT id FROM requests WHERE escalate_at <= ?1 \
                            UNION SELECT request_id FROM grants WHERE status = 'active' AND expires_at <= ?1) \
             LIMIT ?2"
        );
        let rows = sqlx::query(&sql)
            .bind(ms(now))
            .bind(i64::from(limit.max(1)))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(request_from_row).collect()
    }

    async fn audit_events(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>> {
        let mut clauses: Vec<&str> = Vec::new();
        if filter.request_id.is_some() {
            clauses.push("request_id = ?");
        }
        if filter.principal.is_some() {
            clauses.push("(actor = ? OR subject = ?)");
        }
        for (value, clause) in [
            (&filter.resource, "resource = ?"),
            (&filter.action, "action = ?"),
            (&filter.kind, "kind = ?"),
        ] {
            if value.is_some() {
                clauses.push(clause);
            }
        }
        if filter.since.is_some() {
            clauses.push("at >= ?");
        }
        if filter.after_seq.is_some() {
            clauses.push("seq > ?");
        }
        let where_clause = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let sql = format!("SELECT * FROM audit_events {where_clause} ORDER BY seq LIMIT ?");
        let mut query = sqlx::query(&sql);
        if let Some(r) = &filter.request_id {
            query = query.bind(r);
        }
        if let Some(p) = &filter.principal {
            query = query.bind(p).bind(p);
        }
        for value in [&filter.resource, &filter.action, &filter.kind].into_iter().flatten() {
            query = query.bind(value);
        }
        if let Some(s) = filter.since {
            query = query.bind(ms(s));
        }
        if let Some(a) = filter.after_seq {
            query = query.bind(a);
        }
        let rows = query
            .bind(i64::from(filter.limit.max(1)))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn verify_audit(&self) -> Result<ChainReport> {
        // Read in pages so memory stays flat however long the log is.
        let mut verifier = ChainVerifier::new(self.checkpoints().await?);
        let mut after = 0i64;
        loop {
            let rows = sqlx::query("SELECT * FROM audit_events WHERE seq > ? ORDER BY seq LIMIT 5000")
                .bind(after)
                .fetch_all(&self.reader)
                .await?;
            let page: Vec<AuditEvent> = rows.iter().map(event_from_row).collect::<Result<_>>()?;
            let Some(last) = page.last() else {
                break;
            };
            after = last.seq;
            if !verifier.feed(&page) {
                break;
            }
        }
        Ok(verifier.finish())
    }

    async fn add_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_checkpoints (seq, hash, at, signature) VALUES (?, ?, ?, ?) ON CONFLICT (seq) DO NOTHING",
        )
        .bind(checkpoint.seq)
        .bind(&checkpoint.hash)
        .bind(ms(checkpoint.at))
        .bind(&checkpoint.signature)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        let rows = sqlx::query("SELECT seq, hash, at, signature FROM audit_checkpoints ORDER BY seq")
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Checkpoint {
                    seq: row.try_get("seq")?,
                    hash: row.try_get("hash")?,
                    at: from_ms(row.try_get("at")?)?,
                    signature: row.try_get("signature")?,
                })
            })
            .collect()
    }

    async fn archive_audit_through(&self, through: i64, event: &NewEvent) -> Result<u64> {
        let mut tx = self.writer.begin().await?;
        let anchored: Option<i64> = sqlx::query_scalar("SELECT seq FROM audit_checkpoints WHERE seq = ?")
            .bind(through)
            .fetch_optional(&mut *tx)
            .await?;
        let head: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM audit_events")
            .fetch_one(&mut *tx)
            .await?;
        crate::rows::check_archive_point(through, anchored.is_some(), head.unwrap_or(0))?;
        let deleted = sqlx::query("DELETE FROM audit_events WHERE seq <= ?")
            .bind(through)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM audit_checkpoints WHERE seq < ?")
            .bind(through)
            .execute(&mut *tx)
            .await?;
        append_events(&mut tx, std::slice::from_ref(event)).await?;
        tx.commit().await?;
        Ok(deleted)
    }

    async fn create_token(&self, token: &ApiToken, event: &NewEvent) -> Result<()> {
        let groups = serde_json::to_string(&token.groups).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO api_tokens (id, token_hash, principal, groups, service, label, created_by, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&token.id)
        .bind(&token.hash)
        .bind(&token.principal)
        .bind(groups)
        .bind(token.service)
        .bind(&token.label)
        .bind(&token.created_by)
        .bind(ms(token.created_at))
        .bind(token.expires_at.map(ms))
        .execute(&mut *tx)
        .await?;
        append_events(&mut tx, std::slice::from_ref(event)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn revoke_token(&self, revoked: &ApiToken, event: &NewEvent) -> Result<()> {
        let Some(at) = revoked.revoked_at else {
            return Err(StoreError::Corrupt(format!(
                "token {} is not marked revoked",
                revoked.id
            )));
        };
        let mut tx = self.writer.begin().await?;
        let updated =
            sqlx::query("UPDATE api_tokens SET revoked_at = ?, revoked_by = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(ms(at))
                .bind(&revoked.revoked_by)
                .bind(&revoked.id)
                .execute(&mut *tx)
                .await?;
        if updated.rows_affected() != 1 {
            return Err(StoreError::Conflict);
        }
        append_events(&mut tx, std::slice::from_ref(event)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_tokens(&self) -> Result<Vec<ApiToken>> {
        let rows = sqlx::query("SELECT * FROM api_tokens ORDER BY created_at DESC, id DESC")
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        let rows = sqlx::query("SELECT * FROM signing_keys ORDER BY created_at, kid")
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(SigningKeyRecord {
                    kid: row.try_get("kid")?,
                    algorithm: row.try_get("algorithm")?,
                    private_der_hex: row.try_get("private_der_hex")?,
                    public_jwk: row.try_get("public_jwk")?,
                    created_at: from_ms(row.try_get("created_at")?)?,
                    retired_at: row.try_get::<Option<i64>, _>("retired_at")?.map(from_ms).transpose()?,
                    publish_until: row
                        .try_get::<Option<i64>, _>("publish_until")?
                        .map(from_ms)
                        .transpose()?,
                })
            })
            .collect()
    }

    async fn rotate_signing_key(&self, new: &SigningKeyRecord, event: &NewEvent) -> Result<()> {
        let at = ms(new.created_at);
        let mut tx = self.writer.begin().await?;
        // The retiring key signed every token of every active grant at most: it stays
        // published until the last of those ends.
        let last_end: Option<i64> = sqlx::query_scalar("SELECT MAX(expires_at) FROM grants WHERE status = 'active'")
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query("UPDATE signing_keys SET retired_at = ?, publish_until = ? WHERE retired_at IS NULL")
            .bind(at)
            .bind(last_end.unwrap_or(at).max(at))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, algorithm, private_der_hex, public_jwk, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&new.kid)
        .bind(&new.algorithm)
        .bind(&new.private_der_hex)
        .bind(&new.public_jwk)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        append_events(&mut tx, std::slice::from_ref(event)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn ssh_ca(&self) -> Result<Option<(String, String)>> {
        let row = sqlx::query("SELECT private_openssh, public_openssh FROM ssh_ca WHERE id = 1")
            .fetch_optional(&self.reader)
            .await?;
        row.map(|r| Ok((r.try_get("private_openssh")?, r.try_get("public_openssh")?)))
            .transpose()
    }

    async fn init_ssh_ca(&self, private: &str, public: &str, event: &NewEvent) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO ssh_ca (id, private_openssh, public_openssh, created_at) VALUES (1, ?, ?, ?) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(private)
        .bind(public)
        .bind(ms(event.at))
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 1 {
            append_events(&mut tx, std::slice::from_ref(event)).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn due_outbox(&self, now: Timestamp, limit: u32) -> Result<Vec<OutboxItem>> {
        let rows = sqlx::query(
            "SELECT id, grant_id, provider, operation, due_at, attempts, last_error FROM outbox \
             WHERE done_at IS NULL AND due_at <= ? ORDER BY due_at, id LIMIT ?",
        )
        .bind(ms(now))
        .bind(i64::from(limit))
        .fetch_all(&self.writer)
        .await?;
        rows.iter().map(outbox_item_from_row).collect()
    }

    async fn lease_outbox(
        &self,
        now: Timestamp,
        holder: &str,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<OutboxItem>> {
        let rows = sqlx::query(
            "UPDATE outbox SET leased_until = ?1, leased_by = ?4 WHERE id IN (SELECT id FROM outbox \
             WHERE done_at IS NULL AND due_at <= ?2 AND (leased_until IS NULL OR leased_until <= ?2) \
             AND NOT EXISTS (SELECT 1 FROM outbox earlier WHERE earlier.grant_id = outbox.grant_id \
               AND earlier.id < outbox.id AND earlier.done_at IS NULL AND earlier.leased_until > ?2) \
             ORDER BY due_at, id LIMIT ?3) \
             RETURNING id, grant_id, provider, operation, due_at, attempts, last_error",
        )
        .bind(ms(lease_until))
        .bind(ms(now))
        .bind(i64::from(limit))
        .bind(holder)
        .fetch_all(&self.writer)
        .await?;
        let mut items = rows.iter().map(outbox_item_from_row).collect::<Result<Vec<_>>>()?;
        // RETURNING keeps no order.
        items.sort_by_key(|i| (i.due_at, i.id));
        Ok(items)
    }

    async fn release_outbox_leases(&self, holder: &str) -> Result<u64> {
        let released = sqlx::query("UPDATE outbox SET leased_until = NULL WHERE leased_by = ? AND leased_until IS NOT NULL AND done_at IS NULL")
            .bind(holder)
            .execute(&self.writer)
            .await?;
        Ok(released.rows_affected())
    }

    async fn complete_outbox(&self, id: i64, at: Timestamp, event: Option<&NewEvent>) -> Result<()> {
        self.record_attempt(id, Some(at), None, None, event).await
    }

    async fn retry_outbox(&self, id: i64, next_due: Timestamp, error: &str, event: Option<&NewEvent>) -> Result<()> {
        self.record_attempt(id, None, Some(next_due), Some(error), event).await
    }

    async fn outbox_states(&self, grant_ids: &[String]) -> Result<Vec<OutboxState>> {
        let mut states = Vec::new();
        // SQLite caps bound parameters; ask in slices.
        for slice in grant_ids.chunks(500) {
            let placeholders = vec!["?"; slice.len()].join(", ");
            let sql = format!(
                "SELECT grant_id, provider, operation, done_at IS NOT NULL AS done, attempts, last_error FROM outbox \
                 WHERE grant_id IN ({placeholders}) ORDER BY id"
            );
            let mut query = sqlx::query(&sql);
            for id in slice {
                query = query.bind(id);
            }
            for row in query.fetch_all(&self.reader).await? {
                let operation: String = row.try_get("operation")?;
                states.push(OutboxState {
                    grant_id: row.try_get("grant_id")?,
                    provider: row.try_get("provider")?,
                    operation: OutboxOperation::parse(&operation)
                        .ok_or_else(|| StoreError::Corrupt(format!("outbox operation {operation}")))?,
                    done: row.try_get("done")?,
                    attempts: row.try_get::<i64, _>("attempts")?.try_into().unwrap_or(u32::MAX),
                    last_error: row.try_get("last_error")?,
                });
            }
        }
        Ok(states)
    }

    async fn claim_handout(&self, grant_id: &str, provider: &str, at: Timestamp) -> Result<bool> {
        let inserted = sqlx::query(
            "INSERT INTO credential_handouts (grant_id, provider, claimed_at) VALUES (?, ?, ?) \
             ON CONFLICT (grant_id, provider) DO NOTHING",
        )
        .bind(grant_id)
        .bind(provider)
        .bind(ms(at))
        .execute(&self.writer)
        .await?;
        Ok(inserted.rows_affected() == 1)
    }

    async fn release_handout(&self, grant_id: &str, provider: &str) -> Result<()> {
        sqlx::query("DELETE FROM credential_handouts WHERE grant_id = ? AND provider = ?")
            .bind(grant_id)
            .bind(provider)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn grants_to_remind(&self, now: Timestamp, lead: chrono::TimeDelta, limit: u32) -> Result<Vec<Grant>> {
        let sql = format!(
            "SELECT {GRANT_COLUMNS} FROM grants g WHERE g.status = 'active' AND g.expires_at > ?1 AND g.expires_at <= ?2 \
             AND g.reminded_at IS NULL AND g.expires_at - g.starts_at > ?3 ORDER BY g.expires_at LIMIT ?4"
        );
        let rows = sqlx::query(&sql)
            .bind(ms(now))
            .bind(ms(now + lead))
            .bind(lead.num_milliseconds().saturating_mul(2))
            .bind(i64::from(limit.max(1)))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().filter_map(|row| grant_from_row(row).transpose()).collect()
    }

    async fn mark_reminded(&self, grant_id: &str, event: &NewEvent) -> Result<bool> {
        let mut tx = self.writer.begin().await?;
        let updated = sqlx::query("UPDATE grants SET reminded_at = ? WHERE id = ? AND reminded_at IS NULL")
            .bind(ms(event.at))
            .bind(grant_id)
            .execute(&mut *tx)
            .await?;
        if updated.rows_affected() != 1 {
            return Ok(false);
        }
        append_events(&mut tx, std::slice::from_ref(event)).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn audit_head(&self) -> Result<i64> {
        let head: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM audit_events")
            .fetch_one(&self.writer)
            .await?;
        Ok(head.unwrap_or(0))
    }

    async fn notification_cursor(&self, sink: &str) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT after_seq FROM notification_cursors WHERE sink = ?")
                .bind(sink)
                .fetch_optional(&self.writer)
                .await?,
        )
    }

    async fn lease_sink(&self, sink: &str, holder: &str, now: Timestamp, until: Timestamp) -> Result<bool> {
        let leased = sqlx::query(
            "UPDATE notification_cursors SET leased_by = ?1, leased_until = ?2 \
             WHERE sink = ?3 AND (leased_until IS NULL OR leased_until <= ?4 OR leased_by = ?1)",
        )
        .bind(holder)
        .bind(ms(until))
        .bind(sink)
        .bind(ms(now))
        .execute(&self.writer)
        .await?;
        Ok(leased.rows_affected() == 1)
    }

    async fn set_notification_cursor(&self, sink: &str, after_seq: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO notification_cursors (sink, after_seq) VALUES (?, ?) \
             ON CONFLICT (sink) DO UPDATE SET after_seq = excluded.after_seq",
        )
        .bind(sink)
        .bind(after_seq)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn change_feed(&self) -> Result<Option<Box<dyn crate::ChangeFeed>>> {
        Ok(None)
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
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
