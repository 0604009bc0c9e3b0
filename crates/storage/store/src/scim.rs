//! The provisioned directory (SCIM users, groups and their members) on both SQL stores,
//! written once as the rest of the store is (`sql.rs`, `shared.rs`).
//!
//! Case-insensitive values (`userName`, `displayName`, the principal) are compared through
//! `*_key` columns that jitgate folds itself (`fold`): SQLite's `lower()` folds ASCII only
//! and PostgreSQL's follows the database's collation, and both stores must agree on what is
//! taken. (The folding is fixed by the stored keys: changing `fold` needs a migration that
//! folds them again.) Members are rows (`scim_members`): a member added to or removed from a group of
//! 10,000 writes one row. Lists of ids travel as one bound JSON array, never a placeholder
//! per id.

use crate::rows::{ms, RowDecode};
use crate::sql::{Backend, RowsAffected, Sql, Value, Where};
use crate::{Result, StoreError};
use jitgate_core::scim::{DirectoryWrite, MemberChange, ScimChange, ScimGroup, ScimQuery, ScimUser};
use jitgate_core::{ApiToken, Timestamp};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Transaction, Type};

/// A value as uniqueness and the case-insensitive filters compare it: NFKC (a full-width
/// `ａｌｉｃｅ`, a ligature, a Kelvin sign fold to their plain letters: the same name to a
/// reader), then lower case, as `jitgate_policy::catalog::lookalike_key` begins. Nothing
/// further: `user1` and `userl` are two names.
pub(crate) fn fold(value: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    value.nfkc().collect::<String>().to_lowercase()
}

/// What a directory write touched, for the other replicas to re-read.
#[derive(Debug, Default)]
pub(crate) struct Touched {
    pub users: Vec<String>,
    pub groups: Vec<String>,
}

/// PostgreSQL cannot keep a NUL in text at all, and SQLite would keep one that every other
/// tool then cuts short: a value holding one is refused before anything is written, the
/// same on both stores. (Documents are JSON text, where a NUL is the escape `\u0000`.)
fn refuse_nul(what: &str, value: &str) -> Result<()> {
    if value.contains('\0') {
        return Err(StoreError::Refused(format!(
            "{what} contains a NUL byte (\\u0000), which the directory does not keep"
        )));
    }
    Ok(())
}

fn refuse_nul_in(what: &str, value: Option<&str>) -> Result<()> {
    value.map_or(Ok(()), |v| refuse_nul(what, v))
}

/// The longest value kept in an indexed column, in bytes. PostgreSQL cannot index a value
/// longer than about 2,700 bytes (a B-tree entry must fit a third of a page) and would fail
/// the write with an error nobody can act on; SQLite has no such bound. One bound for both,
/// far above any real name, e-mail or id.
pub(crate) const MAX_VALUE_BYTES: usize = 1024;

/// Folding can lengthen a value (NFKC spells `ﷺ`, three bytes, in 33): the folded key's bound.
const MAX_KEY_BYTES: usize = 2 * MAX_VALUE_BYTES;

/// A value to be kept: no NUL byte, not longer than `MAX_VALUE_BYTES`, and (when it is
/// compared case-insensitively) a folded key no longer than `MAX_KEY_BYTES`.
fn refuse_unkeepable(what: &str, value: &str, keyed: bool) -> Result<()> {
    refuse_nul(what, value)?;
    if value.len() > MAX_VALUE_BYTES {
        return Err(StoreError::Refused(format!(
            "{what} is {} bytes long, longer than the {MAX_VALUE_BYTES} the directory keeps",
            value.len()
        )));
    }
    if keyed && fold(value).len() > MAX_KEY_BYTES {
        return Err(StoreError::Refused(format!(
            "{what} grows past {MAX_KEY_BYTES} bytes when its compatibility characters are spelled out (NFKC)"
        )));
    }
    Ok(())
}

/// A value the record cannot be without (an id, a name): not empty either.
fn refuse_missing(what: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(StoreError::Refused(format!("{what} is empty")));
    }
    Ok(())
}

fn refuse_unkeepable_in(what: &str, value: Option<&str>) -> Result<()> {
    value.map_or(Ok(()), |v| refuse_unkeepable(what, v, false))
}

fn refuse_unkeepable_ids(ids: &[String]) -> Result<()> {
    ids.iter()
        .try_for_each(|id| refuse_unkeepable("a member id", id, false))
}

/// Refuse a write any of whose stored text holds a NUL byte, or is too long to keep (see
/// `MAX_VALUE_BYTES`), before anything is written.
pub(crate) fn check_write(write: &DirectoryWrite) -> Result<()> {
    match &write.change {
        ScimChange::PutUser { user, .. } => {
            refuse_missing("the user's id", &user.id)?;
            refuse_missing("userName", &user.user_name)?;
            refuse_missing("the principal", &user.principal)?;
            refuse_unkeepable("the user's id", &user.id, false)?;
            refuse_unkeepable("userName", &user.user_name, true)?;
            refuse_unkeepable("the principal", &user.principal, true)?;
            refuse_unkeepable_in("externalId", user.external_id.as_deref())?;
            if let Some(display_name) = user.display_name.as_deref() {
                refuse_unkeepable("displayName", display_name, true)?;
            }
            refuse_unkeepable_in("manager", user.manager_id.as_deref())?;
        }
        ScimChange::PutGroup { group, members, .. } => {
            refuse_missing("the group's id", &group.id)?;
            refuse_missing("displayName", &group.display_name)?;
            refuse_unkeepable("the group's id", &group.id, false)?;
            refuse_unkeepable("displayName", &group.display_name, true)?;
            refuse_unkeepable_in("externalId", group.external_id.as_deref())?;
            match members {
                MemberChange::Keep => {}
                MemberChange::Set(ids) => refuse_unkeepable_ids(ids)?,
                MemberChange::Edit { add, remove } => {
                    refuse_unkeepable_ids(add)?;
                    refuse_unkeepable_ids(remove)?;
                }
            }
        }
        ScimChange::DeleteUser { id, .. } => refuse_unkeepable("the user's id", id, false)?,
        ScimChange::DeleteGroup { id, .. } => refuse_unkeepable("the group's id", id, false)?,
    }
    // The audit log indexes actors and subjects; the other texts are not indexed.
    for event in &write.events {
        refuse_unkeepable("an event's actor", &event.actor, false)?;
        refuse_unkeepable("an event's subject", &event.subject, false)?;
        refuse_nul("an event's resource", &event.resource)?;
        refuse_nul("an event's action", &event.action)?;
        refuse_nul_in("an event's comment", event.comment.as_deref())?;
    }
    Ok(())
}

/// When the write happens, for the rows that keep a time of their own (a tombstone, a group
/// whose member left): the time of its events, as the rest of the store records it.
pub(crate) fn write_time(write: &DirectoryWrite) -> Timestamp {
    write.events.first().map_or_else(chrono::Utc::now, |e| e.at)
}

fn doc_text(doc: &serde_json::Value) -> Result<String> {
    serde_json::to_string(doc).map_err(|e| StoreError::Corrupt(format!("SCIM document: {e}")))
}

fn id_list(ids: &[String]) -> Result<String> {
    serde_json::to_string(ids).map_err(|e| StoreError::Corrupt(format!("member ids: {e}")))
}

/// The unique index is the backstop of the explicit checks: a violation it catches reads as
/// `Taken` too, with the same message.
fn taken_or(error: sqlx::Error, message: impl FnOnce() -> String) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Taken(message()),
        _ => StoreError::Database(error),
    }
}

/// `0` and `1` both mean the first item (SCIM counts from 1); the rows to skip.
fn offset(query: &ScimQuery) -> i64 {
    i64::try_from(query.start_index.saturating_sub(1)).unwrap_or(i64::MAX)
}

fn page_size(query: &ScimQuery) -> i64 {
    i64::try_from(query.count).unwrap_or(i64::MAX)
}

// The same bounds as `Sql`'s (sql.rs).
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
    /// Apply a directory change inside a write transaction (see `ScimChange`).
    pub(crate) async fn scim_change(conn: &mut DB::Connection, change: &ScimChange, now: Timestamp) -> Result<Touched> {
        let mut touched = Touched::default();
        match change {
            ScimChange::PutUser { user, expected_version } => {
                Self::put_user(conn, user, *expected_version).await?;
                touched.users.push(user.id.clone());
            }
            ScimChange::DeleteUser { id, expected_version } => {
                touched.groups = Self::delete_user(conn, id, *expected_version, now).await?;
                touched.users.push(id.clone());
            }
            ScimChange::PutGroup {
                group,
                expected_version,
                members,
            } => {
                Self::put_group(conn, group, *expected_version, members).await?;
                touched.groups.push(group.id.clone());
            }
            ScimChange::DeleteGroup { id, expected_version } => {
                Self::delete_group(conn, id, *expected_version).await?;
                touched.groups.push(id.clone());
            }
        }
        Ok(touched)
    }

    /// `Conflict` unless the record is at `expected` (a create: unless the id is new; a user's
    /// id stays taken by its tombstone, so it is never reused).
    async fn hold_version(conn: &mut DB::Connection, table: Table, id: &str, expected: Option<i64>) -> Result<()> {
        let sql = match table {
            Table::Users if expected.is_some() => "SELECT version FROM scim_users WHERE id = $1 AND deleted_at IS NULL",
            Table::Users => "SELECT version FROM scim_users WHERE id = $1",
            Table::Groups => "SELECT version FROM scim_groups WHERE id = $1",
        };
        let stored: Option<i64> = sqlx::query_scalar(sql).bind(id).fetch_optional(&mut *conn).await?;
        if stored != expected {
            return Err(StoreError::Conflict);
        }
        Ok(())
    }

    async fn put_user(conn: &mut DB::Connection, user: &ScimUser, expected: Option<i64>) -> Result<()> {
        Self::hold_version(conn, Table::Users, &user.id, expected).await?;
        let user_name_key = fold(&user.user_name);
        let principal_key = fold(&user.principal);
        let display_name_key = user.display_name.as_deref().map(fold);
        let name_taken = || format!("userName '{}' is already taken", user.user_name);
        let principal_taken = || {
            format!(
                "principal '{}' is already another user's (principals are compared case-insensitively)",
                user.principal
            )
        };
        let clash: Option<String> = sqlx::query_scalar(
            "SELECT id FROM scim_users WHERE user_name_key = $1 AND deleted_at IS NULL AND id <> $2 LIMIT 1",
        )
        .bind(user_name_key.as_str())
        .bind(user.id.as_str())
        .fetch_optional(&mut *conn)
        .await?;
        if clash.is_some() {
            return Err(StoreError::Taken(name_taken()));
        }
        let clash: Option<String> = sqlx::query_scalar(
            "SELECT id FROM scim_users WHERE principal_key = $1 AND deleted_at IS NULL AND id <> $2 LIMIT 1",
        )
        .bind(principal_key.as_str())
        .bind(user.id.as_str())
        .fetch_optional(&mut *conn)
        .await?;
        if clash.is_some() {
            return Err(StoreError::Taken(principal_taken()));
        }
        let doc = doc_text(&user.doc)?;
        let sql = if expected.is_none() {
            "INSERT INTO scim_users (id, user_name, user_name_key, principal, principal_key, external_id, display_name, \
             display_name_key, active, manager_id, doc, modified_at, version, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 1, $13)"
        } else {
            // The creation time stays the stored one: lists page in creation order.
            "UPDATE scim_users SET user_name = $2, user_name_key = $3, principal = $4, principal_key = $5, \
             external_id = $6, display_name = $7, display_name_key = $8, active = $9, manager_id = $10, doc = $11, \
             modified_at = $12, version = version + 1 WHERE id = $1 AND version = $13 AND deleted_at IS NULL"
        };
        // $13: the creation time of a new user, the version an update replaces.
        let thirteenth = match expected {
            None => ms(user.created_at),
            Some(version) => version,
        };
        let written = sqlx::query(sql)
            .bind(user.id.as_str())
            .bind(user.user_name.as_str())
            .bind(user_name_key.as_str())
            .bind(user.principal.as_str())
            .bind(principal_key.as_str())
            .bind(user.external_id.clone())
            .bind(user.display_name.clone())
            .bind(display_name_key)
            .bind(user.active)
            .bind(user.manager_id.clone())
            .bind(doc)
            .bind(ms(user.modified_at))
            .bind(thirteenth)
            .execute(&mut *conn)
            .await
            .map_err(|e| taken_or(e, || format!("{}, or {}", name_taken(), principal_taken())))?;
        if written.rows_affected() != 1 {
            return Err(StoreError::Conflict);
        }
        Ok(())
    }

    /// Tombstone a user and end its memberships; the groups it was in (their versions moved
    /// on: their members changed).
    async fn delete_user(conn: &mut DB::Connection, id: &str, expected: i64, now: Timestamp) -> Result<Vec<String>> {
        let deleted = sqlx::query(
            "UPDATE scim_users SET deleted_at = $1, modified_at = $1, version = version + 1 \
             WHERE id = $2 AND version = $3 AND deleted_at IS NULL",
        )
        .bind(ms(now))
        .bind(id)
        .bind(expected)
        .execute(&mut *conn)
        .await?;
        if deleted.rows_affected() != 1 {
            return Err(StoreError::Conflict);
        }
        let groups: Vec<String> = sqlx::query_scalar(
            "UPDATE scim_groups SET version = version + 1, modified_at = $1 \
             WHERE id IN (SELECT group_id FROM scim_members WHERE user_id = $2) RETURNING id",
        )
        .bind(ms(now))
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
        sqlx::query("DELETE FROM scim_members WHERE user_id = $1")
            .bind(id)
            .execute(&mut *conn)
            .await?;
        Ok(groups)
    }

    async fn put_group(
        conn: &mut DB::Connection,
        group: &ScimGroup,
        expected: Option<i64>,
        members: &MemberChange,
    ) -> Result<()> {
        Self::hold_version(conn, Table::Groups, &group.id, expected).await?;
        let key = fold(&group.display_name);
        let taken = || format!("group '{}' already exists", group.display_name);
        let clash: Option<String> =
            sqlx::query_scalar("SELECT id FROM scim_groups WHERE display_name_key = $1 AND id <> $2 LIMIT 1")
                .bind(key.as_str())
                .bind(group.id.as_str())
                .fetch_optional(&mut *conn)
                .await?;
        if clash.is_some() {
            return Err(StoreError::Taken(taken()));
        }
        // Only live users join; who leaves need not be one any more.
        match members {
            MemberChange::Keep => {}
            MemberChange::Set(ids) | MemberChange::Edit { add: ids, .. } => Self::refuse_non_users(conn, ids).await?,
        }
        let doc = doc_text(&group.doc)?;
        let sql = if expected.is_none() {
            "INSERT INTO scim_groups (id, display_name, display_name_key, external_id, doc, modified_at, version, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 1, $7)"
        } else {
            "UPDATE scim_groups SET display_name = $2, display_name_key = $3, external_id = $4, doc = $5, \
             modified_at = $6, version = version + 1 WHERE id = $1 AND version = $7"
        };
        let written = sqlx::query(sql)
            .bind(group.id.as_str())
            .bind(group.display_name.as_str())
            .bind(key.as_str())
            .bind(group.external_id.clone())
            .bind(doc)
            .bind(ms(group.modified_at))
            .bind(expected.unwrap_or_else(|| ms(group.created_at)))
            .execute(&mut *conn)
            .await
            .map_err(|e| taken_or(e, taken))?;
        if written.rows_affected() != 1 {
            return Err(StoreError::Conflict);
        }
        match members {
            MemberChange::Keep => {}
            MemberChange::Set(ids) => {
                // Only the difference is written: who stays keeps their row.
                Self::members(conn, MemberSql::KeepOnly, &group.id, ids).await?;
                Self::members(conn, MemberSql::Add, &group.id, ids).await?;
            }
            MemberChange::Edit { add, remove } => {
                // Removals first: an id in both lists ends up a member.
                Self::members(conn, MemberSql::Remove, &group.id, remove).await?;
                Self::members(conn, MemberSql::Add, &group.id, add).await?;
            }
        }
        Ok(())
    }

    /// `Refused` naming the first id that is no live user.
    async fn refuse_non_users(conn: &mut DB::Connection, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "WITH ids(v) AS ({}) SELECT v FROM ids WHERE NOT EXISTS \
             (SELECT 1 FROM scim_users u WHERE u.id = ids.v AND u.deleted_at IS NULL) LIMIT 1",
            B::JSON_TEXTS
        );
        let stranger: Option<String> = sqlx::query_scalar(&sql)
            .bind(id_list(ids)?)
            .fetch_optional(&mut *conn)
            .await?;
        match stranger {
            Some(id) => Err(StoreError::Refused(format!("member '{id}' is not a user"))),
            None => Ok(()),
        }
    }

    /// One statement over a group's member rows for a list of user ids (one bound JSON array).
    async fn members(conn: &mut DB::Connection, what: MemberSql, group_id: &str, ids: &[String]) -> Result<()> {
        let statement = match what {
            MemberSql::Add if ids.is_empty() => return Ok(()),
            MemberSql::Remove if ids.is_empty() => return Ok(()),
            // `WHERE true` tells SQLite's parser that ON CONFLICT is the upsert's.
            MemberSql::Add => {
                "INSERT INTO scim_members (group_id, user_id) SELECT DISTINCT $2, v FROM ids WHERE true \
                               ON CONFLICT (group_id, user_id) DO NOTHING"
            }
            MemberSql::Remove => "DELETE FROM scim_members WHERE group_id = $2 AND user_id IN (SELECT v FROM ids)",
            MemberSql::KeepOnly => {
                "DELETE FROM scim_members WHERE group_id = $2 AND user_id NOT IN (SELECT v FROM ids)"
            }
        };
        let sql = format!("WITH ids(v) AS ({}) {statement}", B::JSON_TEXTS);
        sqlx::query(&sql)
            .bind(id_list(ids)?)
            .bind(group_id)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    async fn delete_group(conn: &mut DB::Connection, id: &str, expected: i64) -> Result<()> {
        Self::hold_version(conn, Table::Groups, id, Some(expected)).await?;
        sqlx::query("DELETE FROM scim_members WHERE group_id = $1")
            .bind(id)
            .execute(&mut *conn)
            .await?;
        let deleted = sqlx::query("DELETE FROM scim_groups WHERE id = $1 AND version = $2")
            .bind(id)
            .bind(expected)
            .execute(&mut *conn)
            .await?;
        if deleted.rows_affected() != 1 {
            return Err(StoreError::Conflict);
        }
        Ok(())
    }

    /// Mark tokens revoked as `revoke_token` does: `Conflict` if one already is.
    pub(crate) async fn revoke_tokens(conn: &mut DB::Connection, tokens: &[ApiToken]) -> Result<()> {
        for token in tokens {
            let Some(at) = token.revoked_at else {
                return Err(StoreError::Corrupt(format!("token {} is not marked revoked", token.id)));
            };
            let updated = sqlx::query(
                "UPDATE api_tokens SET revoked_at = $1, revoked_by = $2 WHERE id = $3 AND revoked_at IS NULL",
            )
            .bind(ms(at))
            .bind(token.revoked_by.clone())
            .bind(token.id.as_str())
            .execute(&mut *conn)
            .await?;
            if updated.rows_affected() != 1 {
                return Err(StoreError::Conflict);
            }
        }
        Ok(())
    }

    /// A read transaction whose queries all see one snapshot.
    pub(crate) async fn snapshot(reader: &Pool<DB>) -> Result<Transaction<'static, DB>> {
        let mut tx = reader.begin().await?;
        if !B::READ_SNAPSHOT.is_empty() {
            sqlx::query(B::READ_SNAPSHOT).execute(&mut *tx).await?;
        }
        Ok(tx)
    }

    pub(crate) async fn scim_user(conn: &mut DB::Connection, id: &str) -> Result<Option<ScimUser>> {
        let row = sqlx::query("SELECT * FROM scim_users WHERE id = $1 AND deleted_at IS NULL")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        row.as_ref().map(RowDecode::scim_user).transpose()
    }

    /// A page of live users and how many match in all.
    pub(crate) async fn scim_users(conn: &mut DB::Connection, query: &ScimQuery) -> Result<(u64, Vec<ScimUser>)> {
        let user_name = query.user_name.as_deref().map(fold);
        let display_name = query.display_name.as_deref().map(fold);
        let conditions = || {
            let mut conditions = Where::default();
            conditions.and("deleted_at IS NULL", []);
            if let Some(key) = &user_name {
                conditions.and("user_name_key = ?", [Value::Text(key)]);
            }
            if let Some(key) = &display_name {
                conditions.and("display_name_key = ?", [Value::Text(key)]);
            }
            if let Some(external_id) = &query.external_id {
                conditions.and("external_id = ?", [Value::Text(external_id)]);
            }
            if let Some(id) = &query.id {
                conditions.and("id = ?", [Value::Text(id)]);
            }
            conditions
        };
        let (sql, values) = conditions().into_query("SELECT COUNT(*) FROM scim_users {where}", [], B::PLACEHOLDERS);
        let total: i64 = Self::count(conn, &sql, values).await?;
        if query.count == 0 || total <= offset(query) {
            return Ok((u64::try_from(total).unwrap_or(0), Vec::new()));
        }
        // The page's ids come from the index alone; only they are read whole.
        let (sql, values) = conditions().into_query(
            "SELECT * FROM scim_users WHERE id IN (SELECT id FROM scim_users {where} ORDER BY created_at, id LIMIT ? OFFSET ?) \
             ORDER BY created_at, id",
            [Value::Int(page_size(query)), Value::Int(offset(query))],
            B::PLACEHOLDERS,
        );
        let rows = Self::query(&sql, values).fetch_all(&mut *conn).await?;
        let users = rows.iter().map(RowDecode::scim_user).collect::<Result<Vec<_>>>()?;
        Ok((u64::try_from(total).unwrap_or(0), users))
    }

    async fn count<'q>(conn: &mut DB::Connection, sql: &'q str, values: Vec<Value<'q>>) -> Result<i64> {
        let row = Self::query(sql, values).fetch_one(&mut *conn).await?;
        Ok(row.try_get::<i64, _>(0_usize)?)
    }

    pub(crate) async fn scim_group(conn: &mut DB::Connection, id: &str) -> Result<Option<ScimGroup>> {
        let row = sqlx::query("SELECT * FROM scim_groups WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        let Some(mut group) = row.as_ref().map(RowDecode::scim_group).transpose()? else {
            return Ok(None);
        };
        let mut members: Vec<String> = sqlx::query_scalar("SELECT user_id FROM scim_members WHERE group_id = $1")
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
        // Sorted here, by bytes: PostgreSQL would sort by the database's collation.
        members.sort_unstable();
        group.members = members;
        Ok(Some(group))
    }

    /// A page of groups and how many match in all; with their members, or none.
    pub(crate) async fn scim_groups(
        conn: &mut DB::Connection,
        query: &ScimQuery,
        with_members: bool,
    ) -> Result<(u64, Vec<ScimGroup>)> {
        let display_name = query.display_name.as_deref().map(fold);
        let conditions = || {
            let mut conditions = Where::default();
            if let Some(key) = &display_name {
                conditions.and("display_name_key = ?", [Value::Text(key)]);
            }
            if let Some(external_id) = &query.external_id {
                conditions.and("external_id = ?", [Value::Text(external_id)]);
            }
            if let Some(id) = &query.id {
                conditions.and("id = ?", [Value::Text(id)]);
            }
            if let Some(member) = &query.member {
                conditions.and(
                    "id IN (SELECT group_id FROM scim_members WHERE user_id = ?)",
                    [Value::Text(member)],
                );
            }
            conditions
        };
        let (sql, values) = conditions().into_query("SELECT COUNT(*) FROM scim_groups {where}", [], B::PLACEHOLDERS);
        let total = Self::count(conn, &sql, values).await?;
        if query.count == 0 || total <= offset(query) {
            return Ok((u64::try_from(total).unwrap_or(0), Vec::new()));
        }
        let (sql, values) = conditions().into_query(
            "SELECT * FROM scim_groups {where} ORDER BY created_at, id LIMIT ? OFFSET ?",
            [Value::Int(page_size(query)), Value::Int(offset(query))],
            B::PLACEHOLDERS,
        );
        let rows = Self::query(&sql, values).fetch_all(&mut *conn).await?;
        let mut groups = rows.iter().map(RowDecode::scim_group).collect::<Result<Vec<_>>>()?;
        if with_members && !groups.is_empty() {
            let ids: Vec<String> = groups.iter().map(|g| g.id.clone()).collect();
            let sql = format!(
                "SELECT group_id, user_id FROM scim_members WHERE group_id IN ({})",
                B::JSON_TEXTS
            );
            let rows = sqlx::query(&sql).bind(id_list(&ids)?).fetch_all(&mut *conn).await?;
            Self::fill_members(&mut groups, &rows)?;
        }
        Ok((u64::try_from(total).unwrap_or(0), groups))
    }

    /// Put `(group_id, user_id)` rows in their groups, each list sorted.
    fn fill_members(groups: &mut [ScimGroup], rows: &[DB::Row]) -> Result<()> {
        let mut by_group: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
        for row in rows {
            by_group
                .entry(row.try_get("group_id")?)
                .or_default()
                .push(row.try_get("user_id")?);
        }
        for group in groups {
            let mut members = by_group.remove(&group.id).unwrap_or_default();
            members.sort_unstable();
            group.members = members;
        }
        Ok(())
    }

    /// The groups a user is in, as (id, displayName), by name.
    pub(crate) async fn scim_groups_of(reader: &Pool<DB>, user_id: &str) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT g.id, g.display_name FROM scim_members m JOIN scim_groups g ON g.id = m.group_id WHERE m.user_id = $1",
        )
        .bind(user_id)
        .fetch_all(reader)
        .await?;
        let mut groups = rows
            .iter()
            .map(|row| {
                Ok((
                    row.try_get::<String, _>("id")?,
                    row.try_get::<String, _>("display_name")?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        groups.sort_unstable_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        Ok(groups)
    }

    /// Everything provisioned, in four queries, from one snapshot.
    pub(crate) async fn scim_directory(conn: &mut DB::Connection) -> Result<jitgate_core::scim::ScimSnapshot> {
        let rows = sqlx::query("SELECT * FROM scim_users WHERE deleted_at IS NULL ORDER BY created_at, id")
            .fetch_all(&mut *conn)
            .await?;
        let users = rows.iter().map(RowDecode::scim_user).collect::<Result<Vec<_>>>()?;
        let mut departed: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT d.principal FROM scim_users d WHERE d.deleted_at IS NOT NULL AND NOT EXISTS \
             (SELECT 1 FROM scim_users l WHERE l.principal_key = d.principal_key AND l.deleted_at IS NULL)",
        )
        .fetch_all(&mut *conn)
        .await?;
        departed.sort_unstable();
        departed.dedup();
        let rows = sqlx::query("SELECT * FROM scim_groups ORDER BY created_at, id")
            .fetch_all(&mut *conn)
            .await?;
        let mut groups = rows.iter().map(RowDecode::scim_group).collect::<Result<Vec<_>>>()?;
        let rows = sqlx::query("SELECT group_id, user_id FROM scim_members")
            .fetch_all(&mut *conn)
            .await?;
        Self::fill_members(&mut groups, &rows)?;
        Ok(jitgate_core::scim::ScimSnapshot {
            users,
            departed,
            groups,
        })
    }
}

/// Which directory table a version is held in.
#[derive(Clone, Copy)]
enum Table {
    Users,
    Groups,
}

/// What `members` does with the ids.
#[derive(Clone, Copy)]
enum MemberSql {
    /// They join (those already in stay as they are).
    Add,
    /// They leave.
    Remove,
    /// Everyone else leaves.
    KeepOnly,
}
