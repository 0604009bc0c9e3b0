//! PostgreSQL: for several jitgate replicas on one database. The same queries as the SQLite
//! store (times as milliseconds in BIGINT, the request as a JSON document), with two
//! differences that matter: every write transaction first takes one advisory lock, so the
//! audit chain is appended by one writer at a time as on SQLite (no forks, no gaps); and
//! commits are durable by PostgreSQL's own settings (`synchronous_commit`, on by default).

use crate::rows::{from_ms, ms, request_doc, GRANT_COLUMNS};
use crate::{AuditFilter, GrantFilter, RequestFilter, Result, Store, StoreError};
use async_trait::async_trait;
use jitgate_core::audit::{ChainReport, ChainVerifier, Checkpoint, GENESIS_HASH};
use jitgate_core::keys::SigningKeyRecord;
use jitgate_core::outbox::{OutboxItem, OutboxOperation, OutboxState};
use jitgate_core::{
    chain_hash, ApiToken, AuditEvent, EventKind, Grant, GrantStatus, NewEvent, Request, RequestStatus, Timestamp,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgConnection, PgPool, Postgres, Row, Transaction};
use std::str::FromStr;
use std::time::Duration;

/// The advisory lock every write transaction holds until it commits (any number; this one
/// spells "jitgate").
const WRITE_LOCK: i64 = 0x006a_6974_6761_7465;

/// The channel every change is announced on, delivered to listeners when it commits.
const CHANGES: &str = "jitgate_changes";

/// Announce a change from inside its transaction: listeners hear of it once it commits, and
/// never of one that rolls back.
async fn announce(conn: &mut PgConnection, what: &str) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANGES)
        .bind(what)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Other replicas' changes, from LISTEN.
struct Listener(sqlx::postgres::PgListener);

#[async_trait]
impl crate::ChangeFeed for Listener {
    async fn next(&mut self) -> Result<crate::Change> {
        // `None`: the connection was lost and is back; what happened meanwhile is unknown.
        let Some(notice) = self.0.try_recv().await? else {
            return Ok(crate::Change::Resync);
        };
        let payload = notice.payload();
        Ok(match payload.split_once(':') {
            Some(("r", id)) => crate::Change::Request(id.to_string()),
            Some(("g", id)) => crate::Change::Grant(id.to_string()),
            _ if payload == "tokens" => crate::Change::Tokens,
            _ if payload == "keys" => crate::Change::Keys,
            _ => crate::Change::Resync,
        })
    }
}

/// Number the `?` placeholders of SQL assembled at run time as PostgreSQL wants them.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

pub struct PostgresStore {
    writer: PgPool,
    reader: PgPool,
}

crate::rows::row_decoders!(PgRow);

async fn append_events(conn: &mut PgConnection, events: &[NewEvent]) -> Result<()> {
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
    for event in events {
        seq += 1;
        let hash = chain_hash(&prev, seq, event);
        sqlx::query(
            "INSERT INTO audit_events (seq, at, kind, actor, subject, request_id, grant_id, resource, action, comment, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(seq)
        .bind(ms(event.at))
        .bind(event.kind.as_str())
        .bind(&event.actor)
        .bind(&event.subject)
        .bind(&event.request_id)
        .bind(&event.grant_id)
        .bind(&event.resource)
        .bind(&event.action)
        .bind(&event.comment)
        .bind(&prev)
        .bind(&hash)
        .execute(&mut *conn)
        .await?;
        prev = hash;
    }
    Ok(())
}

async fn insert_grant(conn: &mut PgConnection, g: &Grant) -> Result<()> {
    sqlx::query(
        "INSERT INTO grants (id, request_id, principal, resource, action, payload_sha256, single_use, break_glass, \
         status, starts_at, expires_at, ended_at, ended_by, end_comment, extensions, token, providers) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
    )
    .bind(&g.id)
    .bind(&g.request_id)
    .bind(&g.principal)
    .bind(&g.resource)
    .bind(&g.action)
    .bind(&g.payload_sha256)
    .bind(g.single_use)
    .bind(g.break_glass)
    .bind(g.status.as_str())
    .bind(ms(g.starts_at))
    .bind(ms(g.expires_at))
    .bind(g.ended_at.map(ms))
    .bind(&g.ended_by)
    .bind(&g.end_comment)
    .bind(i64::from(g.extensions))
    .bind(&g.token)
    .bind(serde_json::to_string(&g.providers).map_err(|e| StoreError::Corrupt(e.to_string()))?)
    .execute(&mut *conn)
    .await?;
    if g.status == GrantStatus::Active {
        for provider in &g.providers {
            for (operation, due) in [("provision", g.starts_at), ("deprovision", g.expires_at)] {
                sqlx::query("INSERT INTO outbox (grant_id, provider, operation, due_at) VALUES ($1, $2, $3, $4)")
                    .bind(&g.id)
                    .bind(provider)
                    .bind(operation)
                    .bind(ms(due))
                    .execute(&mut *conn)
                    .await?;
            }
        }
    }
    Ok(())
}

/// Keep a grant's providers in step with its end: its pending deprovisioning falls due later
/// when it is extended, now when it ends early; and an extension provisions again (due at
/// once), so targets that hold the end themselves, like a PostgreSQL role's `VALID UNTIL`,
/// hear of the new one.
async fn reschedule_providers(conn: &mut PgConnection, old: &Grant, g: &Grant) -> Result<()> {
    if g.providers.is_empty() {
        return Ok(());
    }
    let due = if g.status == GrantStatus::Active {
        g.expires_at
    } else {
        g.ended_at.unwrap_or(g.expires_at).min(g.expires_at)
    };
    sqlx::query("UPDATE outbox SET due_at = $1 WHERE grant_id = $2 AND operation = 'deprovision' AND done_at IS NULL")
        .bind(ms(due))
        .bind(&g.id)
        .execute(&mut *conn)
        .await?;
    if g.status == GrantStatus::Active && old.expires_at != g.expires_at {
        sqlx::query(
            "UPDATE outbox SET due_at = $1, done_at = NULL, attempts = 0, last_error = NULL \
             WHERE grant_id = $2 AND operation = 'provision'",
        )
        .bind(ms(g.starts_at))
        .bind(&g.id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn insert_request(conn: &mut PgConnection, request: &Request, events: &[NewEvent]) -> Result<()> {
    sqlx::query(
        "INSERT INTO requests (id, requester, resource, action, status, created_at, pending_expires_at, escalate_at, version, doc) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9)",
    )
    .bind(&request.id)
    .bind(&request.requester)
    .bind(&request.resource)
    .bind(&request.action)
    .bind(request.status.as_str())
    .bind(ms(request.created_at))
    .bind(ms(request.pending_expires_at))
    .bind(request.escalates_at().map(ms))
    .bind(request_doc(request)?)
    .execute(&mut *conn)
    .await?;
    if let Some(grant) = &request.grant {
        insert_grant(conn, grant).await?;
    }
    announce(conn, &format!("r:{}", request.id)).await?;
    append_events(conn, events).await
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
        Ok(PostgresStore {
            writer: pool.clone(),
            reader: pool,
        })
    }

    /// A write transaction: it holds the write lock from here to its commit.
    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITE_LOCK)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    /// One delivery attempt of an outbox item: done, or failed with the next try's time.
    async fn record_attempt(
        &self,
        id: i64,
        done_at: Option<Timestamp>,
        next_due: Option<Timestamp>,
        error: Option<&str>,
        event: Option<&NewEvent>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE outbox SET leased_until = NULL, attempts = attempts + 1, done_at = $1, due_at = COALESCE($2, due_at), last_error = $3 \
             WHERE id = $4 AND done_at IS NULL",
        )
        .bind(done_at.map(ms))
        .bind(next_due.map(ms))
        .bind(error)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if let Some(event) = event {
            append_events(&mut tx, std::slice::from_ref(event)).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    fn request_query(where_clause: &str) -> String {
        format!(
            "SELECT r.doc, r.version, {GRANT_COLUMNS} FROM requests r LEFT JOIN grants g ON g.request_id = r.id {where_clause}"
        )
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn create_request(&self, request: &Request, events: &[NewEvent]) -> Result<Request> {
        let mut tx = self.begin_write().await?;
        insert_request(&mut tx, request, events).await?;
        tx.commit().await?;
        let mut stored = request.clone();
        stored.version = 1;
        Ok(stored)
    }

    async fn create_requests(&self, batch: &[(Request, Vec<NewEvent>)]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for (request, events) in batch {
            insert_request(&mut tx, request, events).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn save_transition(&self, previous: &Request, next: &Request, events: &[NewEvent]) -> Result<Request> {
        let mut tx = self.begin_write().await?;
        let updated =
            sqlx::query(
                "UPDATE requests SET status = $1, escalate_at = $2, doc = $3, version = version + 1 WHERE id = $4 AND version = $5",
            )
            .bind(next.status.as_str())
            .bind(next.escalates_at().map(ms))
            .bind(request_doc(next)?)
                .bind(&next.id)
                .bind(previous.version)
                .execute(&mut *tx)
                .await?;
        if updated.rows_affected() != 1 {
            return Err(StoreError::Conflict);
        }
        match (&previous.grant, &next.grant) {
            (None, Some(grant)) => insert_grant(&mut tx, grant).await?,
            (Some(old), Some(new)) if old != new => {
                let updated = sqlx::query(
                    "UPDATE grants SET status = $1, expires_at = $2, ended_at = $3, ended_by = $4, end_comment = $5, extensions = $6, token = $7 \
                     WHERE id = $8 AND status = $9 AND extensions = $10",
                )
                .bind(new.status.as_str())
                .bind(ms(new.expires_at))
                .bind(new.ended_at.map(ms))
                .bind(&new.ended_by)
                .bind(&new.end_comment)
                .bind(i64::from(new.extensions))
                .bind(&new.token)
                .bind(&new.id)
                .bind(old.status.as_str())
                .bind(i64::from(old.extensions))
                .execute(&mut *tx)
                .await?;
                if updated.rows_affected() != 1 {
                    return Err(StoreError::Conflict);
                }
                if old.expires_at != new.expires_at || old.status != new.status {
                    reschedule_providers(&mut tx, old, new).await?;
                }
                if old.expires_at != new.expires_at {
                    // A new end deserves its own reminder.
                    sqlx::query("UPDATE grants SET reminded_at = NULL WHERE id = $1")
                        .bind(&new.id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            _ => {}
        }
        announce(&mut tx, &format!("r:{}", next.id)).await?;
        append_events(&mut tx, events).await?;
        tx.commit().await?;
        let mut stored = next.clone();
        stored.version = previous.version + 1;
        Ok(stored)
    }

    async fn append_events(&self, events: &[NewEvent]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        append_events(&mut tx, events).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn consume_grant(&self, grant_id: &str, used: &NewEvent, now: Timestamp) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE grants SET status = 'used', ended_at = $1, ended_by = $2 \
             WHERE id = $3 AND status = 'active' AND single_use AND starts_at <= $4 AND expires_at > $5",
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
            "UPDATE outbox SET due_at = $1 WHERE grant_id = $2 AND operation = 'deprovision' AND done_at IS NULL",
        )
        .bind(ms(now))
        .bind(grant_id)
        .execute(&mut *tx)
        .await?;
        announce(&mut tx, &format!("g:{grant_id}")).await?;
        append_events(&mut tx, std::slice::from_ref(used)).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn get_request(&self, id: &str) -> Result<Option<Request>> {
        let row = sqlx::query(&Self::request_query("WHERE r.id = $1"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(request_from_row).transpose()
    }

    async fn get_request_by_grant(&self, grant_id: &str) -> Result<Option<Request>> {
        let row = sqlx::query(&Self::request_query("WHERE g.id = $1"))
            .bind(grant_id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(request_from_row).transpose()
    }

    async fn get_grants(&self, ids: &[String]) -> Result<Vec<Grant>> {
        let rows = sqlx::query(&format!("SELECT {GRANT_COLUMNS} FROM grants g WHERE g.id = ANY($1)"))
            .bind(ids)
            .fetch_all(&self.reader)
            .await?;
        let mut grants = Vec::with_capacity(rows.len());
        for row in &rows {
            grants.extend(grant_from_row(row)?);
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
        let sql = numbered(&Self::request_query(&format!(
            "{where_clause} ORDER BY r.created_at DESC, r.id DESC LIMIT ?"
        )));
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
            "SELECT COUNT(*) FROM requests WHERE requester = $1 AND status = 'pending' AND pending_expires_at > $2",
        )
        .bind(requester)
        .bind(ms(now))
        .fetch_one(&self.reader)
        .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn list_grants(&self, filter: &GrantFilter, now: Timestamp) -> Result<Vec<Grant>> {
        let (sql, binds) = crate::rows::grant_list_query(filter, now);
        let sql = numbered(&sql);
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
        let rows = sqlx::query(
            "SELECT id, principal, resource, action, payload_sha256, single_use, starts_at, expires_at FROM grants \
             WHERE status = 'active' AND id > $1 ORDER BY id LIMIT $2",
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
             WHERE r.id IN (SELECT id FROM requests WHERE status = 'pending' AND pending_expires_at <= $1 \
                            UNION SELECT id FROM requests WHERE escalate_at <= $1 \
                            UNION SELECT request_id FROM grants WHERE status = 'active' AND expires_at <= $1) \
             LIMIT $2"
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
        let sql = numbered(&format!(
            "SELECT * FROM audit_events {where_clause} ORDER BY seq LIMIT ?"
        ));
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
            let rows = sqlx::query("SELECT * FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT 5000")
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
        sqlx::query("INSERT INTO audit_checkpoints (seq, hash, at, signature) VALUES ($1, $2, $3, $4) ON CONFLICT (seq) DO NOTHING")
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
        let mut tx = self.begin_write().await?;
        let anchored: Option<i64> = sqlx::query_scalar("SELECT seq FROM audit_checkpoints WHERE seq = $1")
            .bind(through)
            .fetch_optional(&mut *tx)
            .await?;
        let head: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM audit_events")
            .fetch_one(&mut *tx)
            .await?;
        crate::rows::check_archive_point(through, anchored.is_some(), head.unwrap_or(0))?;
        let deleted = sqlx::query("DELETE FROM audit_events WHERE seq <= $1")
            .bind(through)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM audit_checkpoints WHERE seq < $1")
            .bind(through)
            .execute(&mut *tx)
            .await?;
        append_events(&mut tx, std::slice::from_ref(event)).await?;
        tx.commit().await?;
        Ok(deleted)
    }

    async fn create_token(&self, token: &ApiToken, event: &NewEvent) -> Result<()> {
        let groups = serde_json::to_string(&token.groups).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO api_tokens (id, token_hash, principal, groups, service, label, created_by, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
        announce(&mut tx, "tokens").await?;
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
        let mut tx = self.begin_write().await?;
        let updated =
            sqlx::query("UPDATE api_tokens SET revoked_at = $1, revoked_by = $2 WHERE id = $3 AND revoked_at IS NULL")
                .bind(ms(at))
                .bind(&revoked.revoked_by)
                .bind(&revoked.id)
                .execute(&mut *tx)
                .await?;
        if updated.rows_affected() != 1 {
            return Err(StoreError::Conflict);
        }
        announce(&mut tx, "tokens").await?;
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
        let mut tx = self.begin_write().await?;
        // The retiring key signed every token of every active grant at most: it stays
        // published until the last of those ends.
        let last_end: Option<i64> = sqlx::query_scalar("SELECT MAX(expires_at) FROM grants WHERE status = 'active'")
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query("UPDATE signing_keys SET retired_at = $1, publish_until = $2 WHERE retired_at IS NULL")
            .bind(at)
            .bind(last_end.unwrap_or(at).max(at))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, algorithm, private_der_hex, public_jwk, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&new.kid)
        .bind(&new.algorithm)
        .bind(&new.private_der_hex)
        .bind(&new.public_jwk)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        announce(&mut tx, "keys").await?;
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
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO ssh_ca (id, private_openssh, public_openssh, created_at) VALUES (1, $1, $2, $3) \
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
             WHERE done_at IS NULL AND due_at <= $1 ORDER BY due_at, id LIMIT $2",
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
            "UPDATE outbox SET leased_until = $1, leased_by = $4 WHERE id IN (SELECT id FROM outbox \
             WHERE done_at IS NULL AND due_at <= $2 AND (leased_until IS NULL OR leased_until <= $2) \
             AND NOT EXISTS (SELECT 1 FROM outbox earlier WHERE earlier.grant_id = outbox.grant_id \
               AND earlier.id < outbox.id AND earlier.done_at IS NULL AND earlier.leased_until > $2) \
             ORDER BY due_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) \
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
        let released = sqlx::query("UPDATE outbox SET leased_until = NULL WHERE leased_by = $1 AND leased_until IS NOT NULL AND done_at IS NULL")
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
        // Ask in slices, as on SQLite.
        for slice in grant_ids.chunks(500) {
            let placeholders = vec!["?"; slice.len()].join(", ");
            let sql = numbered(&format!(
                "SELECT grant_id, provider, operation, done_at IS NOT NULL AS done, attempts, last_error FROM outbox \
                 WHERE grant_id IN ({placeholders}) ORDER BY id"
            ));
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
            "INSERT INTO credential_handouts (grant_id, provider, claimed_at) VALUES ($1, $2, $3) \
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
        sqlx::query("DELETE FROM credential_handouts WHERE grant_id = $1 AND provider = $2")
            .bind(grant_id)
            .bind(provider)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn grants_to_remind(&self, now: Timestamp, lead: chrono::TimeDelta, limit: u32) -> Result<Vec<Grant>> {
        let sql = format!(
            "SELECT {GRANT_COLUMNS} FROM grants g WHERE g.status = 'active' AND g.expires_at > $1 AND g.expires_at <= $2 \
             AND g.reminded_at IS NULL AND g.expires_at - g.starts_at > $3 ORDER BY g.expires_at LIMIT $4"
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
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query("UPDATE grants SET reminded_at = $1 WHERE id = $2 AND reminded_at IS NULL")
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
            sqlx::query_scalar("SELECT after_seq FROM notification_cursors WHERE sink = $1")
                .bind(sink)
                .fetch_optional(&self.writer)
                .await?,
        )
    }

    async fn lease_sink(&self, sink: &str, holder: &str, now: Timestamp, until: Timestamp) -> Result<bool> {
        let leased = sqlx::query(
            "UPDATE notification_cursors SET leased_by = $1, leased_until = $2 \
             WHERE sink = $3 AND (leased_until IS NULL OR leased_until <= $4 OR leased_by = $1)",
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
            "INSERT INTO notification_cursors (sink, after_seq) VALUES ($1, $2) \
             ON CONFLICT (sink) DO UPDATE SET after_seq = excluded.after_seq",
        )
        .bind(sink)
        .bind(after_seq)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn change_feed(&self) -> Result<Option<Box<dyn crate::ChangeFeed>>> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.reader).await?;
        listener.listen(CHANGES).await?;
        Ok(Some(Box::new(Listener(listener))))
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }
}
