//! The `Store` of every SQL backend, written once: each query below runs on SQLite and on
//! PostgreSQL alike (see `sql.rs` for what the backends supply, and the conformance suite in
//! `tests/store.rs`, which runs every case on both).

use crate::rows::{ms, request_query, RowDecode, GRANT_COLUMNS};
use crate::sql::{Attempt, Backend, Notice, RowsAffected, Sql, Value, Where, ROWS_PER_INSERT};
use crate::{AuditFilter, ChangeFeed, GrantFilter, RequestFilter, Result, Store, StoreError};
use async_trait::async_trait;
use jitgate_core::audit::{ChainReport, ChainVerifier, Checkpoint};
use jitgate_core::github::{DeploymentAnswer, GithubCall, GithubDeployment, NewGithubCall};
use jitgate_core::index::LiveGrant;
use jitgate_core::keys::SigningKeyRecord;
use jitgate_core::outbox::{OutboxItem, OutboxState};
use jitgate_core::scim::{DirectoryWrite, ScimGroup, ScimPage, ScimQuery, ScimSnapshot, ScimUser};
use jitgate_core::{ApiToken, AuditEvent, Grant, GrantStatus, NewEvent, Request, RequestStatus, Timestamp};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};

// The same bounds as `Sql`'s (sql.rs): what sqlx must do for the backend's database.
#[async_trait]
impl<B, DB> Store for B
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
    async fn create_request(&self, request: &Request, events: &[NewEvent]) -> Result<Request> {
        self.file(request, events).await?;
        let mut stored = request.clone();
        stored.version = 1;
        Ok(stored)
    }

    async fn create_requests(&self, batch: &[(Request, Vec<NewEvent>)]) -> Result<()> {
        let filings: Vec<(&Request, &[NewEvent])> = batch.iter().map(|(r, e)| (r, e.as_slice())).collect();
        let mut tx = self.begin_write().await?;
        Sql::<B>::insert_requests(&mut tx, &filings).await?;
        for (request, _) in batch {
            B::announce(&mut tx, Notice::Request(&request.id)).await?;
        }
        self.commit(tx).await?;
        Ok(())
    }

    async fn save_transition(&self, previous: &Request, next: &Request, events: &[NewEvent]) -> Result<Request> {
        self.transition(previous, next, events).await?;
        let mut stored = next.clone();
        stored.version = previous.version + 1;
        Ok(stored)
    }

    async fn append_events(&self, events: &[NewEvent]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        Sql::<B>::append_events(&mut tx, events).await?;
        self.commit(tx).await?;
        Ok(())
    }

    async fn consume_grant(&self, grant_id: &str, used: &NewEvent, now: Timestamp) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE grants SET status = 'used', ended_at = $1, ended_by = $2 \
             WHERE id = $3 AND status = 'active' AND single_use AND starts_at <= $1 AND expires_at > $1",
        )
        .bind(ms(now))
        .bind(&used.actor)
        .bind(grant_id)
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
        Sql::<B>::append_events(&mut tx, std::slice::from_ref(used)).await?;
        B::announce(&mut tx, Notice::Grant(grant_id)).await?;
        self.commit(tx).await?;
        Ok(true)
    }

    async fn get_request(&self, id: &str) -> Result<Option<Request>> {
        let row = sqlx::query(&request_query("WHERE r.id = $1"))
            .bind(id)
            .fetch_optional(self.reader())
            .await?;
        let mut requests: Vec<Request> = row.as_ref().map(RowDecode::request).transpose()?.into_iter().collect();
        Sql::<B>::fill_item_grants(self.reader(), &mut requests).await?;
        Ok(requests.pop())
    }

    async fn get_request_by_grant(&self, grant_id: &str) -> Result<Option<Request>> {
        // Any item's grant leads to its request.
        let row = sqlx::query(&request_query(
            "WHERE r.id = (SELECT request_id FROM grants WHERE id = $1)",
        ))
        .bind(grant_id)
        .fetch_optional(self.reader())
        .await?;
        let mut requests: Vec<Request> = row.as_ref().map(RowDecode::request).transpose()?.into_iter().collect();
        Sql::<B>::fill_item_grants(self.reader(), &mut requests).await?;
        Ok(requests.pop())
    }

    async fn get_grants(&self, ids: &[String]) -> Result<Vec<Grant>> {
        let mut grants = Vec::with_capacity(ids.len());
        let sql = format!("SELECT {GRANT_COLUMNS} FROM grants g WHERE g.id IN ({})", B::JSON_TEXTS);
        // One bound JSON array per thousand ids, not a placeholder per id.
        for chunk in ids.chunks(ROWS_PER_INSERT) {
            let ids = serde_json::to_string(chunk).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            for row in sqlx::query(&sql).bind(ids).fetch_all(self.reader()).await? {
                grants.extend(row.grant()?);
            }
        }
        Ok(grants)
    }

    async fn list_requests(&self, filter: &RequestFilter, now: Timestamp) -> Result<Vec<Request>> {
        let mut conditions = Where::default();
        match filter.status {
            Some(RequestStatus::Pending) => {
                conditions.and(
                    "r.status = 'pending' AND r.pending_expires_at > ?",
                    [Value::Int(ms(now))],
                );
            }
            Some(RequestStatus::Expired) => conditions.and(
                "(r.status = 'expired' OR (r.status = 'pending' AND r.pending_expires_at <= ?))",
                [Value::Int(ms(now))],
            ),
            Some(status) => conditions.and("r.status = ?", [Value::Text(status.as_str())]),
            None => {}
        }
        if let Some(requester) = &filter.requester {
            conditions.and("r.requester = ?", [Value::Text(requester)]);
        }
        if let Some(before) = &filter.before {
            conditions.and(
                "(r.created_at, r.id) < (SELECT created_at, id FROM requests WHERE id = ?)",
                [Value::Text(before)],
            );
        }
        let (sql, values) = conditions.into_query(
            &request_query("{where} ORDER BY r.created_at DESC, r.id DESC LIMIT ?"),
            [Value::Int(i64::from(filter.limit.max(1)))],
            B::PLACEHOLDERS,
        );
        let rows = Sql::<B>::query(&sql, values).fetch_all(self.reader()).await?;
        let mut requests = rows.iter().map(RowDecode::request).collect::<Result<Vec<_>>>()?;
        Sql::<B>::fill_item_grants(self.reader(), &mut requests).await?;
        Ok(requests)
    }

    async fn count_pending(&self, requester: &str, now: Timestamp) -> Result<u64> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM requests WHERE requester = $1 AND status = 'pending' AND pending_expires_at > $2",
        )
        .bind(requester)
        .bind(ms(now))
        .fetch_one(self.reader())
        .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Newest first. Grant ids are UUIDv7, so id order is creation order: the primary key, the
    /// `grants_live (status, id)` and `grants_by_principal (principal, id)` indexes give every
    /// page in order without sorting, and a page resumes after the last id handed out.
    async fn list_grants(&self, filter: &GrantFilter, now: Timestamp) -> Result<Vec<Grant>> {
        let mut conditions = Where::default();
        match filter.status {
            Some(GrantStatus::Active) => {
                conditions.and("g.status = 'active' AND g.expires_at > ?", [Value::Int(ms(now))]);
            }
            Some(GrantStatus::Expired) => conditions.and(
                "(g.status = 'expired' OR (g.status = 'active' AND g.expires_at <= ?))",
                [Value::Int(ms(now))],
            ),
            Some(status) => conditions.and("g.status = ?", [Value::Text(status.as_str())]),
            None => {}
        }
        if let Some(principal) = &filter.principal {
            conditions.and("g.principal = ?", [Value::Text(principal)]);
        }
        if let Some(before) = &filter.before {
            conditions.and("g.id < ?", [Value::Text(before)]);
        }
        let (sql, values) = conditions.into_query(
            &format!("SELECT {GRANT_COLUMNS} FROM grants g {{where}} ORDER BY g.id DESC LIMIT ?"),
            [Value::Int(i64::from(filter.limit.max(1)))],
            B::PLACEHOLDERS,
        );
        let rows = Sql::<B>::query(&sql, values).fetch_all(self.reader()).await?;
        rows.iter().filter_map(|row| row.grant().transpose()).collect()
    }

    async fn live_grants(&self, after_id: Option<&str>, limit: u32) -> Result<Vec<LiveGrant>> {
        self.read_live_grants(after_id, limit).await
    }

    async fn active_grants(&self) -> Result<Vec<Grant>> {
        let sql = format!("SELECT {GRANT_COLUMNS} FROM grants g WHERE g.status = 'active'");
        let rows = sqlx::query(&sql).fetch_all(self.reader()).await?;
        rows.iter().filter_map(|row| row.grant().transpose()).collect()
    }

    async fn due_requests(&self, now: Timestamp, limit: u32) -> Result<Vec<Request>> {
        let sql = request_query(
            "WHERE r.id IN (SELECT id FROM requests WHERE status = 'pending' AND pending_expires_at <= $1 \
                            UNION SELECT id FROM requests WHERE escalate_at <= $1 \
                            UNION SELECT request_id FROM grants WHERE status = 'active' AND expires_at <= $1) \
             LIMIT $2",
        );
        let rows = sqlx::query(&sql)
            .bind(ms(now))
            .bind(i64::from(limit.max(1)))
            .fetch_all(self.reader())
            .await?;
        let mut requests = rows.iter().map(RowDecode::request).collect::<Result<Vec<_>>>()?;
        Sql::<B>::fill_item_grants(self.reader(), &mut requests).await?;
        Ok(requests)
    }

    async fn audit_events(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>> {
        let mut conditions = Where::default();
        if let Some(request_id) = &filter.request_id {
            conditions.and("request_id = ?", [Value::Text(request_id)]);
        }
        if let Some(principal) = &filter.principal {
            conditions.and(
                "(actor = ? OR subject = ?)",
                [Value::Text(principal), Value::Text(principal)],
            );
        }
        for (value, condition) in [
            (&filter.resource, "resource = ?"),
            (&filter.action, "action = ?"),
            (&filter.kind, "kind = ?"),
        ] {
            if let Some(value) = value {
                conditions.and(condition, [Value::Text(value)]);
            }
        }
        if let Some(since) = filter.since {
            conditions.and("at >= ?", [Value::Int(ms(since))]);
        }
        if let Some(after_seq) = filter.after_seq {
            conditions.and("seq > ?", [Value::Int(after_seq)]);
        }
        let (sql, values) = conditions.into_query(
            "SELECT * FROM audit_events {where} ORDER BY seq LIMIT ?",
            [Value::Int(i64::from(filter.limit.max(1)))],
            B::PLACEHOLDERS,
        );
        let rows = Sql::<B>::query(&sql, values).fetch_all(self.reader()).await?;
        rows.iter().map(RowDecode::event).collect()
    }

    async fn verify_audit(&self) -> Result<ChainReport> {
        // One snapshot for the checkpoints and every page: an archive committing in between
        // would otherwise leave its old anchor beside the new first event (read as events
        // deleted after the archive), or move the log's start past the page being read.
        let mut tx = Sql::<B>::snapshot(self.reader()).await?;
        let checkpoints = sqlx::query("SELECT seq, hash, at, signature FROM audit_checkpoints ORDER BY seq")
            .fetch_all(&mut *tx)
            .await?;
        let checkpoints = checkpoints.iter().map(RowDecode::checkpoint).collect::<Result<_>>()?;
        // Read in pages so memory stays flat however long the log is.
        let mut verifier = ChainVerifier::new(checkpoints);
        let mut after = 0i64;
        loop {
            let rows = sqlx::query("SELECT * FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT 5000")
                .bind(after)
                .fetch_all(&mut *tx)
                .await?;
            let page: Vec<AuditEvent> = rows.iter().map(RowDecode::event).collect::<Result<_>>()?;
            let Some(last) = page.last() else {
                break;
            };
            after = last.seq;
            if !verifier.feed(&page) {
                break;
            }
        }
        tx.commit().await?;
        Ok(verifier.finish())
    }

    async fn add_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()> {
        // Only for an event still in the log, under the write lock: a checkpoint of an event an
        // archive removed meanwhile would sit before the archive's anchor, where it reads as
        // events deleted after the archive (and retention would stop for good).
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO audit_checkpoints (seq, hash, at, signature) \
             SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM audit_events WHERE seq = $1) \
             ON CONFLICT (seq) DO NOTHING",
        )
        .bind(checkpoint.seq)
        .bind(&checkpoint.hash)
        .bind(ms(checkpoint.at))
        .bind(&checkpoint.signature)
        .execute(&mut *tx)
        .await?;
        self.commit(tx).await
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        let rows = sqlx::query("SELECT seq, hash, at, signature FROM audit_checkpoints ORDER BY seq")
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(RowDecode::checkpoint).collect()
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
        Sql::<B>::append_events(&mut tx, std::slice::from_ref(event)).await?;
        self.commit(tx).await?;
        Ok(deleted)
    }

    async fn create_token(&self, token: &ApiToken, event: &NewEvent) -> Result<()> {
        let groups = serde_json::to_string(&token.groups).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO api_tokens (id, token_hash, principal, groups, service, label, created_by, created_at, expires_at, \
             on_behalf_of, scim) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
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
        .bind(&token.on_behalf_of)
        .bind(token.scim)
        .execute(&mut *tx)
        .await?;
        Sql::<B>::append_events(&mut tx, std::slice::from_ref(event)).await?;
        B::announce(&mut tx, Notice::Tokens).await?;
        self.commit(tx).await?;
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
        Sql::<B>::append_events(&mut tx, std::slice::from_ref(event)).await?;
        B::announce(&mut tx, Notice::Tokens).await?;
        self.commit(tx).await?;
        Ok(())
    }

    async fn list_tokens(&self) -> Result<Vec<ApiToken>> {
        let rows = sqlx::query("SELECT * FROM api_tokens ORDER BY created_at DESC, id DESC")
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(RowDecode::token).collect()
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        let rows = sqlx::query("SELECT * FROM signing_keys ORDER BY created_at, kid")
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(RowDecode::signing_key).collect()
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
        Sql::<B>::append_events(&mut tx, std::slice::from_ref(event)).await?;
        B::announce(&mut tx, Notice::Keys).await?;
        self.commit(tx).await?;
        Ok(())
    }

    async fn ssh_ca(&self) -> Result<Option<(String, String)>> {
        let row = sqlx::query("SELECT private_openssh, public_openssh FROM ssh_ca WHERE id = 1")
            .fetch_optional(self.reader())
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
            Sql::<B>::append_events(&mut tx, std::slice::from_ref(event)).await?;
        }
        self.commit(tx).await?;
        Ok(())
    }

    async fn due_outbox(&self, now: Timestamp, limit: u32) -> Result<Vec<OutboxItem>> {
        let rows = sqlx::query(
            "SELECT id, grant_id, provider, operation, due_at, attempts, last_error FROM outbox \
             WHERE done_at IS NULL AND due_at <= $1 ORDER BY due_at, id LIMIT $2",
        )
        .bind(ms(now))
        .bind(i64::from(limit))
        .fetch_all(self.writer())
        .await?;
        rows.iter().map(RowDecode::outbox_item).collect()
    }

    async fn lease_outbox(
        &self,
        now: Timestamp,
        holder: &str,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<OutboxItem>> {
        let sql = format!(
            "UPDATE outbox SET leased_until = $1, leased_by = $4 WHERE id IN (SELECT id FROM outbox \
             WHERE done_at IS NULL AND due_at <= $2 AND (leased_until IS NULL OR leased_until <= $2) \
             AND NOT EXISTS (SELECT 1 FROM outbox earlier WHERE earlier.grant_id = outbox.grant_id \
               AND earlier.id < outbox.id AND earlier.done_at IS NULL AND earlier.leased_until > $2) \
             ORDER BY due_at, id LIMIT $3{}) \
             RETURNING id, grant_id, provider, operation, due_at, attempts, last_error",
            B::SKIP_LOCKED
        );
        let rows = sqlx::query(&sql)
            .bind(ms(lease_until))
            .bind(ms(now))
            .bind(i64::from(limit))
            .bind(holder)
            .fetch_all(self.writer())
            .await?;
        let mut items = rows.iter().map(RowDecode::outbox_item).collect::<Result<Vec<_>>>()?;
        // RETURNING keeps no order.
        items.sort_by_key(|i| (i.due_at, i.id));
        Ok(items)
    }

    async fn release_outbox_leases(&self, holder: &str) -> Result<u64> {
        let released = sqlx::query(
            "UPDATE outbox SET leased_until = NULL WHERE leased_by = $1 AND leased_until IS NOT NULL AND done_at IS NULL",
        )
        .bind(holder)
        .execute(self.writer())
        .await?;
        Ok(released.rows_affected())
    }

    async fn complete_outbox(&self, id: i64, at: Timestamp, event: Option<&NewEvent>) -> Result<()> {
        self.attempt(Attempt {
            id,
            done_at: Some(at),
            next_due: None,
            error: None,
            event: event.cloned(),
        })
        .await
    }

    async fn retry_outbox(&self, id: i64, next_due: Timestamp, error: &str, event: Option<&NewEvent>) -> Result<()> {
        self.attempt(Attempt {
            id,
            done_at: None,
            next_due: Some(next_due),
            error: Some(error.to_string()),
            event: event.cloned(),
        })
        .await
    }

    async fn outbox_states(&self, grant_ids: &[String]) -> Result<Vec<OutboxState>> {
        let mut states = Vec::new();
        // SQLite caps bound parameters; ask in slices.
        for slice in grant_ids.chunks(500) {
            let placeholders: Vec<String> = (1..=slice.len()).map(|n| format!("${n}")).collect();
            let sql = format!(
                "SELECT grant_id, provider, operation, done_at IS NOT NULL AS done, attempts, last_error FROM outbox \
                 WHERE grant_id IN ({}) ORDER BY id",
                placeholders.join(", ")
            );
            let values = slice.iter().map(|id| Value::Text(id)).collect();
            for row in Sql::<B>::query(&sql, values).fetch_all(self.reader()).await? {
                states.push(row.outbox_state()?);
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
        .execute(self.writer())
        .await?;
        Ok(inserted.rows_affected() == 1)
    }

    async fn release_handout(&self, grant_id: &str, provider: &str) -> Result<()> {
        sqlx::query("DELETE FROM credential_handouts WHERE grant_id = $1 AND provider = $2")
            .bind(grant_id)
            .bind(provider)
            .execute(self.writer())
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
            .fetch_all(self.reader())
            .await?;
        rows.iter().filter_map(|row| row.grant().transpose()).collect()
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
        Sql::<B>::append_events(&mut tx, std::slice::from_ref(event)).await?;
        self.commit(tx).await?;
        Ok(true)
    }

    async fn audit_head(&self) -> Result<i64> {
        let head: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM audit_events")
            .fetch_one(self.writer())
            .await?;
        Ok(head.unwrap_or(0))
    }

    async fn notification_cursor(&self, sink: &str) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT after_seq FROM notification_cursors WHERE sink = $1")
                .bind(sink)
                .fetch_optional(self.writer())
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
        .execute(self.writer())
        .await?;
        Ok(leased.rows_affected() == 1)
    }

    async fn set_notification_cursor(&self, sink: &str, after_seq: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO notification_cursors (sink, after_seq) VALUES ($1, $2) \
             ON CONFLICT (sink) DO UPDATE SET after_seq = excluded.after_seq, after_hash = NULL",
        )
        .bind(sink)
        .bind(after_seq)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn sink_cursor(&self, sink: &str) -> Result<Option<crate::SinkCursor>> {
        let row = sqlx::query("SELECT after_seq, after_hash FROM notification_cursors WHERE sink = $1")
            .bind(sink)
            .fetch_optional(self.writer())
            .await?;
        row.map(|r| {
            Ok(crate::SinkCursor {
                after_seq: r.try_get("after_seq")?,
                after_hash: r.try_get("after_hash")?,
            })
        })
        .transpose()
    }

    async fn set_sink_cursor(&self, sink: &str, cursor: &crate::SinkCursor) -> Result<()> {
        sqlx::query(
            "INSERT INTO notification_cursors (sink, after_seq, after_hash) VALUES ($1, $2, $3) \
             ON CONFLICT (sink) DO UPDATE SET after_seq = excluded.after_seq, after_hash = excluded.after_hash",
        )
        .bind(sink)
        .bind(cursor.after_seq)
        .bind(cursor.after_hash.clone())
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn change_feed(&self) -> Result<Option<Box<dyn ChangeFeed>>> {
        self.listen().await
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(self.reader()).await?;
        Ok(())
    }

    /// One transaction: the change (its version held, uniqueness checked explicitly so the
    /// message names the value), then the transitions, the token revocations and every event;
    /// any part failing leaves nothing written.
    async fn scim_write(&self, write: &DirectoryWrite) -> Result<()> {
        crate::scim::check_write(write)?;
        let now = crate::scim::write_time(write);
        let transitions: Vec<(&Request, &Request, &[NewEvent])> = write
            .transitions
            .iter()
            .map(|(previous, next)| (previous, next, &[][..]))
            .collect();
        let mut tx = self.begin_write().await?;
        let touched = Sql::<B>::scim_change(&mut tx, &write.change, now).await?;
        Sql::<B>::write_transitions(&mut tx, &transitions).await?;
        Sql::<B>::revoke_tokens(&mut tx, &write.revoked_tokens).await?;
        Sql::<B>::append_events(&mut tx, &write.events).await?;
        for id in &touched.users {
            B::announce(&mut tx, Notice::ScimUser(id)).await?;
        }
        for id in &touched.groups {
            B::announce(&mut tx, Notice::ScimGroup(id)).await?;
        }
        for (_, next) in &write.transitions {
            B::announce(&mut tx, Notice::Request(&next.id)).await?;
        }
        if !write.revoked_tokens.is_empty() {
            B::announce(&mut tx, Notice::Tokens).await?;
        }
        self.commit(tx).await
    }

    async fn scim_user(&self, id: &str) -> Result<Option<ScimUser>> {
        let mut conn = self.reader().acquire().await?;
        Sql::<B>::scim_user(&mut conn, id).await
    }

    async fn scim_group(&self, id: &str) -> Result<Option<ScimGroup>> {
        let mut tx = Sql::<B>::snapshot(self.reader()).await?;
        let group = Sql::<B>::scim_group(&mut tx, id).await?;
        tx.commit().await?;
        Ok(group)
    }

    async fn scim_users(&self, query: &ScimQuery) -> Result<ScimPage<ScimUser>> {
        let mut tx = Sql::<B>::snapshot(self.reader()).await?;
        let (total, items) = Sql::<B>::scim_users(&mut tx, query).await?;
        tx.commit().await?;
        Ok(ScimPage { total, items })
    }

    async fn scim_groups(&self, query: &ScimQuery, members: bool) -> Result<ScimPage<ScimGroup>> {
        let mut tx = Sql::<B>::snapshot(self.reader()).await?;
        let (total, items) = Sql::<B>::scim_groups(&mut tx, query, members).await?;
        tx.commit().await?;
        Ok(ScimPage { total, items })
    }

    async fn scim_groups_of(&self, user_id: &str) -> Result<Vec<(String, String)>> {
        Sql::<B>::scim_groups_of(self.reader(), user_id).await
    }

    async fn scim_directory(&self) -> Result<ScimSnapshot> {
        let mut tx = Sql::<B>::snapshot(self.reader()).await?;
        let snapshot = Sql::<B>::scim_directory(&mut tx).await?;
        tx.commit().await?;
        Ok(snapshot)
    }

    async fn github_claim_delivery(&self, delivery_id: &str, event: &str, at: Timestamp) -> Result<bool> {
        crate::github::check_delivery(delivery_id, event)?;
        let mut conn = self.writer().acquire().await?;
        Sql::<B>::github_claim(&mut conn, delivery_id, event, at).await
    }

    async fn github_release_delivery(&self, delivery_id: &str) -> Result<()> {
        // A tracked deployment keeps its delivery: forgetting it would track the deployment
        // twice on GitHub's redelivery.
        sqlx::query(
            "DELETE FROM github_deliveries WHERE delivery_id = $1 \
             AND NOT EXISTS (SELECT 1 FROM github_deployments WHERE delivery_id = $1)",
        )
        .bind(delivery_id)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn github_track_deployment(&self, deployment: &GithubDeployment) -> Result<bool> {
        crate::github::check_deployment(deployment)?;
        let mut tx = self.begin_write().await?;
        let event = "deployment_protection_rule";
        if !Sql::<B>::github_claim(&mut tx, &deployment.delivery_id, event, deployment.received_at).await? {
            return Ok(false);
        }
        Sql::<B>::github_insert_deployment(&mut tx, deployment).await?;
        self.commit(tx).await?;
        Ok(true)
    }

    async fn github_deployment(&self, request_id: &str) -> Result<Option<GithubDeployment>> {
        Sql::<B>::github_deployment(self.reader(), request_id).await
    }

    async fn github_waiting(&self, limit: u32) -> Result<Vec<GithubDeployment>> {
        Sql::<B>::github_waiting(self.reader(), limit).await
    }

    async fn github_answer(
        &self,
        request_id: &str,
        answer: DeploymentAnswer,
        comment: &str,
        at: Timestamp,
        calls: &[NewGithubCall],
        event: &NewEvent,
    ) -> Result<bool> {
        crate::github::check_answer(request_id, comment)?;
        let bodies = crate::github::check_calls(calls)?;
        crate::github::check_event(event)?;
        let mut tx = self.begin_write().await?;
        if !Sql::<B>::github_mark_answered(&mut tx, request_id, answer, comment, at).await? {
            return Ok(false);
        }
        Sql::<B>::github_insert_calls(&mut tx, calls, &bodies).await?;
        Sql::<B>::append_events(&mut tx, std::slice::from_ref(event)).await?;
        self.commit(tx).await?;
        Ok(true)
    }

    async fn github_enqueue(&self, calls: &[NewGithubCall]) -> Result<()> {
        let bodies = crate::github::check_calls(calls)?;
        if calls.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        Sql::<B>::github_insert_calls(&mut tx, calls, &bodies).await?;
        self.commit(tx).await
    }

    async fn github_lease_calls(
        &self,
        now: Timestamp,
        holder: &str,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<GithubCall>> {
        Sql::<B>::github_lease(self.writer(), now, holder, lease_until, limit).await
    }

    /// The event is appended only when this attempt is the one that finished the call: a
    /// worker whose lease ran out while GitHub answered it does not report it twice.
    async fn github_call_done(&self, id: i64, at: Timestamp, event: Option<&NewEvent>) -> Result<()> {
        if let Some(event) = event {
            crate::github::check_event(event)?;
        }
        let mut tx = self.begin_write().await?;
        if !Sql::<B>::github_attempt(&mut tx, id, Some(at), None, None).await? {
            return Ok(());
        }
        Sql::<B>::append_events(&mut tx, event).await?;
        self.commit(tx).await
    }

    async fn github_call_retry(&self, id: i64, holder: &str, next_due: Timestamp, error: &str) -> Result<()> {
        let error = crate::github::kept_error(error);
        let mut conn = self.writer().acquire().await?;
        Sql::<B>::github_retry(&mut conn, id, holder, next_due, &error).await?;
        Ok(())
    }

    async fn github_forget_deliveries(&self, before: Timestamp) -> Result<u64> {
        let forgotten = sqlx::query(
            "DELETE FROM github_deliveries WHERE received_at < $1 \
             AND delivery_id NOT IN (SELECT delivery_id FROM github_deployments)",
        )
        .bind(crate::rows::ms(before))
        .execute(self.writer())
        .await?;
        Ok(forgotten.rows_affected())
    }

    async fn github_release_call_leases(&self, holder: &str) -> Result<u64> {
        let released = sqlx::query(
            "UPDATE github_calls SET leased_until = NULL WHERE leased_by = $1 AND leased_until IS NOT NULL AND done_at IS NULL",
        )
        .bind(holder)
        .execute(self.writer())
        .await?;
        Ok(released.rows_affected())
    }

    async fn github_calls(&self, request_id: &str) -> Result<Vec<GithubCall>> {
        Sql::<B>::github_calls(self.reader(), request_id).await
    }

    async fn ready(&self) -> Result<()> {
        Backend::ready(self).await
    }

    fn divergence(&self) -> Option<String> {
        Backend::divergence(self)
    }

    async fn accept_history(&self) -> Result<Option<String>> {
        Backend::accept_history(self).await
    }
}
