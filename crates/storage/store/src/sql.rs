//! What the two SQL stores share: the `Backend` trait says what differs between SQLite and
//! PostgreSQL (how a write transaction starts, whether other replicas hear of a change, when
//! a write commits, and a few spellings of SQL); everything else, every table's queries and
//! the batched writes, is written once, generic over the sqlx database, here and in
//! `shared.rs` (the `Store` implementation of every backend).
//!
//! Fixed query text uses `$1`-style placeholders, which both backends read (sqlx binds
//! SQLite's `$N` by number). Text assembled at run time (`values`, `Where`) spells its
//! placeholders as the backend reads fastest ([`Placeholders`]): a multi-row insert has
//! thousands, and SQLite finds a named one (`$17`) by walking the statement's list of names,
//! which makes binding such a statement quadratic. (sqlx's own `QueryBuilder` cannot run
//! generically: its arguments would have to borrow the builder.)

use crate::rows::{item_grants_query, ms, numbered_grants, request_doc, RowDecode};
use crate::{ChangeFeed, Result, StoreError};
use jitgate_core::audit::GENESIS_HASH;
use jitgate_core::index::LiveGrant;
use jitgate_core::{chain_hash, Grant, GrantStatus, NewEvent, Request, Timestamp};
use sqlx::query::Query;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Transaction, Type};
use std::future::Future;
use std::marker::PhantomData;

/// Rows per multi-row statement: well under SQLite's 32,766 bound values (and PostgreSQL's
/// 65,535) for the widest table (17 columns), and few statements per batch: on SQLite each
/// one is a round trip to sqlx's SQLite thread, which costs more than the row.
pub(crate) const ROWS_PER_INSERT: usize = 1000;

/// How a backend's placeholders are spelled in text assembled at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placeholders {
    /// `$1`, `$2`, ...: PostgreSQL's only kind.
    Numbered,
    /// `?`, bound in order: SQLite binds these without looking a name up.
    Anonymous,
}

impl Placeholders {
    /// The `n`th placeholder (from 1).
    fn push(self, sql: &mut String, n: usize) {
        use std::fmt::Write;
        match self {
            // Writing to a String cannot fail.
            Placeholders::Numbered => {
                let _ = write!(sql, "${n}");
            }
            Placeholders::Anonymous => sql.push('?'),
        }
    }
}

/// `VALUES ($1, $2), ($3, $4), ...` (or `(?, ?), ...`): `rows` tuples of `columns`
/// placeholders, to be bound row by row.
pub(crate) fn values(rows: usize, columns: usize, spelled: Placeholders) -> String {
    let mut sql = String::with_capacity(8 + rows * columns * 8);
    sql.push_str("VALUES ");
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 1..=columns {
            if column > 1 {
                sql.push_str(", ");
            }
            spelled.push(&mut sql, row * columns + column);
        }
        sql.push(')');
    }
    sql
}

/// A value bound to a placeholder of text assembled at run time.
pub(crate) enum Value<'a> {
    Int(i64),
    Text(&'a str),
}

/// The conditions of a WHERE assembled at run time, with the values of their placeholders.
#[derive(Default)]
pub(crate) struct Where<'a> {
    conditions: Vec<&'static str>,
    values: Vec<Value<'a>>,
}

impl<'a> Where<'a> {
    /// Add a condition; its `?` placeholders stand for `values`, in order.
    pub(crate) fn and<const N: usize>(&mut self, condition: &'static str, values: [Value<'a>; N]) {
        self.conditions.push(condition);
        self.values.extend(values);
    }

    /// `query`, with `{where}` replaced by the conditions (or nothing) and every `?` by a
    /// placeholder as the backend spells it; then the values, to which `tail` (the LIMIT,
    /// say) is added.
    pub(crate) fn into_query(
        self,
        query: &str,
        tail: impl IntoIterator<Item = Value<'a>>,
        spelled: Placeholders,
    ) -> (String, Vec<Value<'a>>) {
        let clause = if self.conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.conditions.join(" AND "))
        };
        let mut sql = String::with_capacity(query.len() + clause.len() + 16);
        let mut n = 0;
        for c in query.replace("{where}", &clause).chars() {
            if c == '?' {
                n += 1;
                spelled.push(&mut sql, n);
            } else {
                sql.push(c);
            }
        }
        let mut values = self.values;
        values.extend(tail);
        (sql, values)
    }
}

/// How many rows a statement changed (sqlx has it per backend, not in a trait).
pub(crate) trait RowsAffected {
    fn rows_affected(&self) -> u64;
}

impl RowsAffected for sqlx::postgres::PgQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

impl RowsAffected for sqlx::sqlite::SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

/// A connection of backend `B`.
pub(crate) type Conn<B> = <<B as Backend>::Db as Database>::Connection;

/// A change other replicas hear of when it commits.
pub(crate) enum Notice<'a> {
    Request(&'a str),
    Grant(&'a str),
    Tokens,
    Keys,
    /// A provisioned user (its SCIM id).
    ScimUser(&'a str),
    /// A provisioned group (its SCIM id).
    ScimGroup(&'a str),
}

/// A provider delivery attempt to record: done, or failed with the next try's time.
pub(crate) struct Attempt {
    pub id: i64,
    pub done_at: Option<Timestamp>,
    pub next_due: Option<Timestamp>,
    pub error: Option<String>,
    pub event: Option<NewEvent>,
}

/// What differs between the SQL backends. Everything else is shared.
pub(crate) trait Backend: Send + Sync + 'static {
    type Db: Database;

    /// Appended to the subquery that picks the outbox items to lease: PostgreSQL replicas
    /// skip the rows another one is leasing at the same moment; SQLite has one writer.
    const SKIP_LOCKED: &'static str;

    /// A subquery of the text elements of the JSON array bound to `$1`.
    const JSON_TEXTS: &'static str;

    /// How placeholders in text assembled at run time are spelled.
    const PLACEHOLDERS: Placeholders;

    /// The first statement of a read transaction whose every query must see one snapshot
    /// (a group's version with its members, the whole directory at once); empty when the
    /// backend's transactions read one snapshot already (SQLite's, in WAL mode).
    const READ_SNAPSHOT: &'static str;

    /// Reads, beside the writes.
    fn reader(&self) -> &Pool<Self::Db>;

    /// Writes, and reads that must see the latest commit.
    fn writer(&self) -> &Pool<Self::Db>;

    /// A write transaction. On PostgreSQL it holds a lock until it commits, so the audit
    /// chain is appended by one writer at a time (no forks, no gaps), as on SQLite.
    fn begin_write(&self) -> impl Future<Output = Result<Transaction<'static, Self::Db>>> + Send;

    /// Tell other replicas of a change from inside its transaction: they hear of it once it
    /// commits, and never of one that rolls back. SQLite belongs to one process: nothing.
    fn announce(conn: &mut Conn<Self>, change: Notice<'_>) -> impl Future<Output = Result<()>> + Send;

    /// Insert a new request, its grant and its events (`Sql::insert_requests`), durably.
    fn file(&self, request: &Request, events: &[NewEvent]) -> impl Future<Output = Result<()>> + Send;

    /// Save a transition with its events (`Sql::write_transitions`), durably.
    fn transition(
        &self,
        previous: &Request,
        next: &Request,
        events: &[NewEvent],
    ) -> impl Future<Output = Result<()>> + Send;

    /// Record a delivery attempt with its event (`Sql::write_attempts`), durably.
    fn attempt(&self, attempt: Attempt) -> impl Future<Output = Result<()>> + Send;

    /// A page of `Store::live_grants` (`Sql::live_grants` reads it column by column).
    fn read_live_grants(
        &self,
        after_id: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<LiveGrant>>> + Send;

    /// `Store::change_feed`.
    fn listen(&self) -> impl Future<Output = Result<Option<Box<dyn ChangeFeed>>>> + Send;

    /// Commit a write transaction begun by `begin_write`. PostgreSQL first holds the log it
    /// is about to commit against what this process has seen (failover.rs).
    fn commit(&self, tx: Transaction<'static, Self::Db>) -> impl Future<Output = Result<()>> + Send;

    /// `Store::ready`.
    fn ready(&self) -> impl Future<Output = Result<()>> + Send;

    /// `Store::divergence`.
    fn divergence(&self) -> Option<String> {
        None
    }

    /// `Store::accept_history`.
    fn accept_history(&self) -> impl Future<Output = Result<Option<String>>> + Send;
}

/// The writes and reads both backends share, for backend `B` (`Sql::<B>::append_events`).
pub(crate) struct Sql<B>(PhantomData<B>);

// The bounds say what sqlx must do for a backend's database: run queries on a connection,
// bind and read integers, booleans and text, and decode rows. `shared.rs` states the same.
impl<B, DB> Sql<B>
where
    B: Backend<Db = DB>,
    DB: Database,
    DB::Row: RowDecode,
    DB::QueryResult: RowsAffected,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB>,
    for<'q> bool: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
{
    /// The query `sql` with `values` bound in order.
    pub(crate) fn query<'q>(sql: &'q str, values: Vec<Value<'q>>) -> Query<'q, DB, DB::Arguments<'q>> {
        values.into_iter().fold(sqlx::query(sql), |query, value| match value {
            Value::Int(v) => query.bind(v),
            Value::Text(v) => query.bind(v),
        })
    }

    /// Append events to the chain in order: the head is read once, each event's hash chains
    /// onto the one before, and the rows go in with a few multi-row inserts.
    pub(crate) async fn append_events<'e>(
        conn: &mut DB::Connection,
        events: impl IntoIterator<Item = &'e NewEvent> + Send,
    ) -> Result<()> {
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
            let sql = format!("INSERT INTO audit_events (seq, at, kind, actor, subject, request_id, grant_id, resource, action, comment, prev_hash, hash) {}", values(rows.len(), 12, B::PLACEHOLDERS));
            let mut query = sqlx::query(&sql);
            for (seq, event, prev, hash) in rows {
                query = query
                    .bind(*seq)
                    .bind(ms(event.at))
                    .bind(event.kind.as_str())
                    .bind(&event.actor)
                    .bind(&event.subject)
                    .bind(&event.request_id)
                    .bind(&event.grant_id)
                    .bind(&event.resource)
                    .bind(&event.action)
                    .bind(&event.comment)
                    .bind(prev)
                    .bind(hash);
            }
            query.execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// Put the grants of multi-item requests' further items in their places (a read per such
    /// request; single-item requests, the most, cost nothing more).
    pub(crate) async fn fill_item_grants(reader: &Pool<DB>, requests: &mut [Request]) -> Result<()> {
        let sql = item_grants_query();
        for request in requests.iter_mut().filter(|r| !r.items.is_empty()) {
            let rows = sqlx::query(&sql).bind(request.id.as_str()).fetch_all(reader).await?;
            for row in rows {
                let item: i64 = row.try_get("g_item")?;
                let slot = usize::try_from(item)
                    .ok()
                    .and_then(|i| i.checked_sub(1))
                    .and_then(|k| request.items.get_mut(k))
                    .ok_or_else(|| StoreError::Corrupt(format!("request {} has no item {item}", request.id)))?;
                slot.grant = row.grant()?;
            }
        }
        Ok(())
    }

    /// New requests with their grants and events, in a few multi-row inserts.
    pub(crate) async fn insert_requests(conn: &mut DB::Connection, filings: &[(&Request, &[NewEvent])]) -> Result<()> {
        for chunk in filings.chunks(ROWS_PER_INSERT) {
            let docs = chunk
                .iter()
                .map(|(request, _)| request_doc(request))
                .collect::<Result<Vec<_>>>()?;
            let sql = format!("INSERT INTO requests (id, requester, resource, action, status, created_at, pending_expires_at, escalate_at, version, doc) {}", values(chunk.len(), 10, B::PLACEHOLDERS));
            let mut query = sqlx::query(&sql);
            for ((request, _), doc) in chunk.iter().zip(docs) {
                query = query
                    .bind(&request.id)
                    .bind(&request.requester)
                    .bind(&request.resource)
                    .bind(&request.action)
                    .bind(request.status.as_str())
                    .bind(ms(request.created_at))
                    .bind(ms(request.pending_expires_at))
                    .bind(request.escalates_at().map(ms))
                    .bind(1_i64)
                    .bind(doc);
            }
            query.execute(&mut *conn).await?;
        }
        let grants: Vec<(&Grant, i64)> = filings.iter().flat_map(|(r, _)| numbered_grants(r)).collect();
        Self::insert_grants(conn, &grants).await?;
        Self::append_events(conn, filings.iter().flat_map(|(_, events)| events.iter())).await
    }

    /// New grants, and for each active one its providers' provisioning (due at its start) and
    /// deprovisioning (due at its end).
    async fn insert_grants(conn: &mut DB::Connection, grants: &[(&Grant, i64)]) -> Result<()> {
        for chunk in grants.chunks(ROWS_PER_INSERT) {
            let providers = chunk
                .iter()
                .map(|(g, _)| serde_json::to_string(&g.providers).map_err(|e| StoreError::Corrupt(e.to_string())))
                .collect::<Result<Vec<_>>>()?;
            let sql = format!("INSERT INTO grants (id, request_id, principal, resource, action, payload_sha256, single_use, break_glass, \
                 status, starts_at, expires_at, ended_at, ended_by, end_comment, extensions, token, providers, item) {}", values(chunk.len(), 18, B::PLACEHOLDERS));
            let mut query = sqlx::query(&sql);
            for ((g, item), providers) in chunk.iter().zip(providers) {
                query = query
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
                    .bind(providers)
                    .bind(*item);
            }
            query.execute(&mut *conn).await?;
        }
        let deliveries: Vec<(&str, &str, &str, i64)> = grants
            .iter()
            .map(|(g, _)| *g)
            .filter(|g| g.status == GrantStatus::Active)
            .flat_map(|g| {
                g.providers.iter().flat_map(move |provider| {
                    [("provision", g.starts_at), ("deprovision", g.expires_at)]
                        .map(|(operation, due)| (g.id.as_str(), provider.as_str(), operation, ms(due)))
                })
            })
            .collect();
        for rows in deliveries.chunks(ROWS_PER_INSERT) {
            let sql = format!(
                "INSERT INTO outbox (grant_id, provider, operation, due_at) {}",
                values(rows.len(), 4, B::PLACEHOLDERS)
            );
            let mut query = sqlx::query(&sql);
            for (grant_id, provider, operation, due) in rows {
                query = query.bind(*grant_id).bind(*provider).bind(*operation).bind(*due);
            }
            query.execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// Requests' transitions with their grants' and providers' changes and their events, a
    /// statement per kind of change for the lot. Each applies only if nobody changed its
    /// request (or grant) first; else the lot fails with `Conflict` (and SQLite's group
    /// commit writes them one by one, so only the stale one fails).
    pub(crate) async fn write_transitions(
        conn: &mut DB::Connection,
        items: &[(&Request, &Request, &[NewEvent])],
    ) -> Result<()> {
        for chunk in items.chunks(ROWS_PER_INSERT) {
            let docs = chunk
                .iter()
                .map(|(_, next, _)| request_doc(next))
                .collect::<Result<Vec<_>>>()?;
            let sql = format!("UPDATE requests SET status = v.column3, escalate_at = v.column4, doc = v.column5, version = version + 1 FROM ({}) AS v WHERE requests.id = v.column1 AND requests.version = v.column2", values(chunk.len(), 5, B::PLACEHOLDERS));
            let mut query = sqlx::query(&sql);
            for ((previous, next, _), doc) in chunk.iter().zip(docs) {
                query = query
                    .bind(&next.id)
                    .bind(previous.version)
                    .bind(next.status.as_str())
                    .bind(next.escalates_at().map(ms))
                    .bind(doc);
            }
            if query.execute(&mut *conn).await?.rows_affected() != chunk.len() as u64 {
                return Err(StoreError::Conflict);
            }
        }
        // Grants by item number: a multi-item request's are issued, and change, together.
        let mut issued: Vec<(&Grant, i64)> = Vec::new();
        let mut changed: Vec<(&Grant, &Grant)> = Vec::new();
        for (previous, next, _) in items {
            let before = numbered_grants(previous);
            for (grant, item) in numbered_grants(next) {
                match before.iter().find(|(_, i)| *i == item) {
                    None => issued.push((grant, item)),
                    Some((old, _)) if *old != grant => changed.push((old, grant)),
                    Some(_) => {}
                }
            }
        }
        Self::insert_grants(conn, &issued).await?;
        for chunk in changed.chunks(ROWS_PER_INSERT) {
            // A new end deserves its own reminder (SET reads the row as it was).
            let sql = format!("UPDATE grants SET status = v.column4, expires_at = v.column5, ended_at = v.column6, ended_by = v.column7, \
                 end_comment = v.column8, extensions = v.column9, token = v.column10, \
                 reminded_at = CASE WHEN grants.expires_at = v.column5 THEN grants.reminded_at END FROM ({}) AS v WHERE grants.id = v.column1 AND grants.status = v.column2 AND grants.extensions = v.column3", values(chunk.len(), 10, B::PLACEHOLDERS));
            let mut query = sqlx::query(&sql);
            for (old, new) in chunk {
                query = query
                    .bind(&new.id)
                    .bind(old.status.as_str())
                    .bind(i64::from(old.extensions))
                    .bind(new.status.as_str())
                    .bind(ms(new.expires_at))
                    .bind(new.ended_at.map(ms))
                    .bind(&new.ended_by)
                    .bind(&new.end_comment)
                    .bind(i64::from(new.extensions))
                    .bind(&new.token);
            }
            if query.execute(&mut *conn).await?.rows_affected() != chunk.len() as u64 {
                return Err(StoreError::Conflict);
            }
        }
        Self::reschedule_providers(conn, &changed).await?;
        Self::append_events(conn, items.iter().flat_map(|(_, _, events)| events.iter())).await
    }

    /// Keep changed grants' providers in step with their ends: a pending deprovisioning falls
    /// due later when its grant is extended, now when it ends early; and an extension
    /// provisions again (due at once), so targets that hold the end themselves, like a
    /// PostgreSQL role's `VALID UNTIL`, hear of the new one.
    async fn reschedule_providers(conn: &mut DB::Connection, changed: &[(&Grant, &Grant)]) -> Result<()> {
        let moved: Vec<(&Grant, &Grant)> = changed
            .iter()
            .copied()
            .filter(|(old, new)| {
                !new.providers.is_empty() && (old.expires_at != new.expires_at || old.status != new.status)
            })
            .collect();
        for chunk in moved.chunks(ROWS_PER_INSERT) {
            let sql = format!("UPDATE outbox SET due_at = v.column2 FROM ({}) AS v WHERE outbox.grant_id = v.column1 AND outbox.operation = 'deprovision' AND outbox.done_at IS NULL", values(chunk.len(), 2, B::PLACEHOLDERS));
            let mut query = sqlx::query(&sql);
            for (_, g) in chunk {
                let due = if g.status == GrantStatus::Active {
                    g.expires_at
                } else {
                    g.ended_at.unwrap_or(g.expires_at).min(g.expires_at)
                };
                query = query.bind(&g.id).bind(ms(due));
            }
            query.execute(&mut *conn).await?;
        }
        for (old, g) in moved {
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
        }
        Ok(())
    }

    /// The outbox rows of delivery attempts, in one statement per thousand, and their events.
    pub(crate) async fn write_attempts(conn: &mut DB::Connection, attempts: &[&Attempt]) -> Result<()> {
        for chunk in attempts.chunks(ROWS_PER_INSERT) {
            let sql = format!("UPDATE outbox SET leased_until = NULL, attempts = attempts + 1, done_at = v.column2, \
                 due_at = COALESCE(v.column3, due_at), last_error = v.column4 FROM ({}) AS v WHERE outbox.id = v.column1 AND outbox.done_at IS NULL", values(chunk.len(), 4, B::PLACEHOLDERS));
            let mut query = sqlx::query(&sql);
            for a in chunk {
                query = query
                    .bind(a.id)
                    .bind(a.done_at.map(ms))
                    .bind(a.next_due.map(ms))
                    .bind(&a.error);
            }
            query.execute(&mut *conn).await?;
        }
        Self::append_events(conn, attempts.iter().filter_map(|a| a.event.as_ref())).await
    }

    /// A page of active grants with only what the check index needs, read column by column.
    pub(crate) async fn live_grants(reader: &Pool<DB>, after_id: Option<&str>, limit: u32) -> Result<Vec<LiveGrant>> {
        let rows = sqlx::query(
            "SELECT id, principal, resource, action, payload_sha256, single_use, starts_at, expires_at FROM grants \
             WHERE status = 'active' AND id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after_id.unwrap_or(""))
        .bind(i64::from(limit.max(1)))
        .fetch_all(reader)
        .await?;
        rows.iter().map(RowDecode::live_grant).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{values, Placeholders, Value, Where};

    #[test]
    fn placeholders_are_numbered_across_the_whole_query() {
        assert_eq!(
            values(2, 3, Placeholders::Numbered),
            "VALUES ($1, $2, $3), ($4, $5, $6)"
        );
        let mut conditions = Where::default();
        conditions.and("a = ?", [Value::Int(1)]);
        conditions.and("(b = ? OR c = ?)", [Value::Text("x"), Value::Text("x")]);
        let (sql, values) = conditions.into_query(
            "SELECT * FROM t {where} LIMIT ?",
            [Value::Int(5)],
            Placeholders::Numbered,
        );
        assert_eq!(sql, "SELECT * FROM t WHERE a = $1 AND (b = $2 OR c = $3) LIMIT $4");
        assert_eq!(values.len(), 4);
        let (sql, _) = Where::default().into_query("SELECT * FROM t {where} LIMIT ?", [], Placeholders::Numbered);
        assert_eq!(sql, "SELECT * FROM t  LIMIT $1");
    }

    #[test]
    fn anonymous_placeholders_are_bound_in_order() {
        assert_eq!(values(2, 2, Placeholders::Anonymous), "VALUES (?, ?), (?, ?)");
        let mut conditions = Where::default();
        conditions.and("a = ?", [Value::Int(1)]);
        let (sql, values) = conditions.into_query(
            "SELECT * FROM t {where} LIMIT ?",
            [Value::Int(5)],
            Placeholders::Anonymous,
        );
        assert_eq!(sql, "SELECT * FROM t WHERE a = ? LIMIT ?");
        assert_eq!(values.len(), 2);
    }
}
