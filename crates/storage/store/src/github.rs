//! GitHub's tables on both SQL stores (issue #26, docs/github.md): the webhook deliveries
//! already acted on, the deployments waiting on a protection rule, and the calls owed to
//! GitHub's REST API, written once as the rest of the store is (`sql.rs`, `shared.rs`).
//!
//! Everything in here comes from GitHub's payloads, which anyone who can open a pull request
//! shapes (a ref, an environment name, a comment). Text is checked before anything is
//! written, the same on both stores (`check_*`): a NUL byte is refused (PostgreSQL cannot keep
//! one in text at all), and so is a value longer than the store keeps, with the same message
//! whichever store it is.
//!
//! Calls are leased as the provider outbox is (`lease_outbox`): a call leased to a worker is
//! nobody else's, nor its own again, until the lease runs out or the attempt is recorded.

use crate::rows::{from_ms, ms};
use crate::scim::MAX_VALUE_BYTES;
use crate::sql::{values, Backend, RowsAffected, Sql, ROWS_PER_INSERT};
use crate::{Result, StoreError};
use jitgate_core::github::{
    CallPurpose, DeploymentAnswer, DeploymentState, GithubCall, GithubDeployment, NewGithubCall,
};
use jitgate_core::{NewEvent, Timestamp};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

/// The longest comment kept with an answer, in bytes: GitHub takes at most 65,536 characters
/// in a comment, and what jitgate writes is far shorter (the service keeps it under 1,000).
pub(crate) const MAX_COMMENT_BYTES: usize = 65_536;

/// The longest JSON body of a queued call, in bytes: a comment of GitHub's largest size, each
/// character escaped, fits.
pub(crate) const MAX_BODY_BYTES: usize = 8 * MAX_COMMENT_BYTES;

/// The most pull requests kept with a deployment. Only the first few are announced on; a
/// push belonging to more is no reason to refuse the deployment, so the service takes the
/// first ones, and more than this is refused here as input nobody sends.
pub(crate) const MAX_PULL_REQUESTS: usize = 1000;

/// The longest error text kept with a failed attempt, in bytes (longer ones are cut).
pub(crate) const MAX_ERROR_BYTES: usize = 2048;

/// `Refused` when `value` holds a NUL byte or is longer than `limit` bytes.
fn refuse_unkeepable(what: &str, value: &str, limit: usize) -> Result<()> {
    if value.contains('\0') {
        return Err(StoreError::Refused(format!(
            "{what} contains a NUL byte (\\u0000), which the store does not keep"
        )));
    }
    if value.len() > limit {
        return Err(StoreError::Refused(format!(
            "{what} is {} bytes long, longer than the {limit} the store keeps",
            value.len()
        )));
    }
    Ok(())
}

/// As `refuse_unkeepable` at `MAX_VALUE_BYTES`, and not empty: an id, a name.
fn refuse_bad_name(what: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(StoreError::Refused(format!("{what} is empty")));
    }
    refuse_unkeepable(what, value, MAX_VALUE_BYTES)
}

/// A delivery to claim: its id and its event's name.
pub(crate) fn check_delivery(delivery_id: &str, event: &str) -> Result<()> {
    refuse_bad_name("the delivery id", delivery_id)?;
    refuse_bad_name("the delivery's event", event)
}

/// A deployment to track: every text kept, its pull requests bounded.
pub(crate) fn check_deployment(d: &GithubDeployment) -> Result<()> {
    check_delivery(&d.delivery_id, "deployment_protection_rule")?;
    refuse_bad_name("the request id", &d.request_id)?;
    refuse_bad_name("the owner", &d.owner)?;
    refuse_bad_name("the repository", &d.repo)?;
    refuse_bad_name("the environment", &d.environment)?;
    for (what, value) in [
        ("the commit SHA", &d.sha),
        ("the ref", &d.git_ref),
        ("the event", &d.event),
        ("the actor", &d.actor),
    ] {
        refuse_unkeepable(what, value, MAX_VALUE_BYTES)?;
    }
    if let Some(comment) = &d.comment {
        refuse_unkeepable("the comment", comment, MAX_COMMENT_BYTES)?;
    }
    if d.pull_requests.len() > MAX_PULL_REQUESTS {
        return Err(StoreError::Refused(format!(
            "the deployment names {} pull requests, more than the {MAX_PULL_REQUESTS} the store keeps",
            d.pull_requests.len()
        )));
    }
    Ok(())
}

/// An answer to record: the request's id and the comment GitHub is told.
pub(crate) fn check_answer(request_id: &str, comment: &str) -> Result<()> {
    refuse_bad_name("the request id", request_id)?;
    refuse_unkeepable("the comment", comment, MAX_COMMENT_BYTES)
}

/// Calls to queue, with their bodies as the JSON text to keep.
pub(crate) fn check_calls(calls: &[NewGithubCall]) -> Result<Vec<String>> {
    calls
        .iter()
        .map(|call| {
            refuse_bad_name("the call's key", &call.key)?;
            refuse_bad_name("the call's method", &call.method)?;
            refuse_bad_name("the call's path", &call.path)?;
            if let Some(request_id) = &call.request_id {
                refuse_bad_name("the call's request id", request_id)?;
            }
            // JSON spells a NUL in a string as `\u0000`: the text holds none.
            let body = serde_json::to_string(&call.body)
                .map_err(|e| StoreError::Refused(format!("the call's body is not JSON: {e}")))?;
            refuse_unkeepable("the call's body", &body, MAX_BODY_BYTES)?;
            Ok(body)
        })
        .collect()
}

/// An event to append with a GitHub write (the audit log indexes actors and subjects).
pub(crate) fn check_event(event: &NewEvent) -> Result<()> {
    refuse_unkeepable("the event's actor", &event.actor, MAX_VALUE_BYTES)?;
    refuse_unkeepable("the event's subject", &event.subject, MAX_VALUE_BYTES)?;
    for (what, value) in [
        ("the event's request id", event.request_id.as_deref()),
        ("the event's grant id", event.grant_id.as_deref()),
    ] {
        if let Some(value) = value {
            refuse_unkeepable(what, value, MAX_VALUE_BYTES)?;
        }
    }
    refuse_unkeepable("the event's resource", &event.resource, MAX_BODY_BYTES)?;
    refuse_unkeepable("the event's action", &event.action, MAX_BODY_BYTES)?;
    if let Some(comment) = &event.comment {
        refuse_unkeepable("the event's comment", comment, MAX_BODY_BYTES)?;
    }
    Ok(())
}

/// The error of a failed attempt as kept: what went wrong must be recorded whatever GitHub or
/// the network said, so a NUL becomes U+FFFD and the text is cut at `MAX_ERROR_BYTES` (on a
/// character boundary) rather than the attempt being refused.
pub(crate) fn kept_error(error: &str) -> String {
    let mut kept = error.replace('\0', "\u{fffd}");
    if kept.len() > MAX_ERROR_BYTES {
        let mut end = MAX_ERROR_BYTES;
        while !kept.is_char_boundary(end) {
            end -= 1;
        }
        kept.truncate(end);
    }
    kept
}

/// The columns of `github_calls` a `GithubCall` is read from.
const CALL_COLUMNS: &str = "id, call_key, installation_id, method, path, body, purpose, request_id, due_at, \
    attempts, last_error, done_at";

fn pull_requests_text(numbers: &[i64]) -> Result<String> {
    serde_json::to_string(numbers).map_err(|e| StoreError::Corrupt(format!("pull requests: {e}")))
}

/// A row of `github_deployments`.
fn deployment<R>(row: &R) -> Result<GithubDeployment>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    let state: String = row.try_get("state")?;
    let answer: Option<String> = row.try_get("answer")?;
    let pull_requests: String = row.try_get("pull_requests")?;
    Ok(GithubDeployment {
        delivery_id: row.try_get("delivery_id")?,
        request_id: row.try_get("request_id")?,
        installation_id: row.try_get("installation_id")?,
        owner: row.try_get("owner")?,
        repo: row.try_get("repo")?,
        environment: row.try_get("environment")?,
        run_id: row.try_get("run_id")?,
        sha: row.try_get("sha")?,
        git_ref: row.try_get("git_ref")?,
        event: row.try_get("event")?,
        actor: row.try_get("actor")?,
        pull_requests: serde_json::from_str(&pull_requests)
            .map_err(|e| StoreError::Corrupt(format!("deployment pull requests: {e}")))?,
        state: DeploymentState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("deployment state {state}")))?,
        answer: answer
            .map(|a| DeploymentAnswer::parse(&a).ok_or_else(|| StoreError::Corrupt(format!("deployment answer {a}"))))
            .transpose()?,
        comment: row.try_get("comment")?,
        received_at: from_ms(row.try_get("received_at")?)?,
        answered_at: row.try_get::<Option<i64>, _>("answered_at")?.map(from_ms).transpose()?,
    })
}

/// A row of `github_calls` (`CALL_COLUMNS`).
fn call<R>(row: &R) -> Result<GithubCall>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    let purpose: String = row.try_get("purpose")?;
    let body: String = row.try_get("body")?;
    Ok(GithubCall {
        id: row.try_get("id")?,
        call: NewGithubCall {
            key: row.try_get("call_key")?,
            installation_id: row.try_get("installation_id")?,
            method: row.try_get("method")?,
            path: row.try_get("path")?,
            body: serde_json::from_str(&body).map_err(|e| StoreError::Corrupt(format!("GitHub call body: {e}")))?,
            purpose: CallPurpose::parse(&purpose)
                .ok_or_else(|| StoreError::Corrupt(format!("GitHub call purpose {purpose}")))?,
            request_id: row.try_get("request_id")?,
            due_at: from_ms(row.try_get("due_at")?)?,
        },
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
        last_error: row.try_get("last_error")?,
        done_at: row.try_get::<Option<i64>, _>("done_at")?.map(from_ms).transpose()?,
    })
}

// The same bounds as `Sql`'s (sql.rs).
impl<B, DB> Sql<B>
where
    B: Backend<Db = DB>,
    DB: Database,
    DB::QueryResult: RowsAffected,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
{
    /// Claim a delivery: `true` when it is new (checked by the caller).
    pub(crate) async fn github_claim(
        conn: &mut DB::Connection,
        delivery_id: &str,
        event: &str,
        at: Timestamp,
    ) -> Result<bool> {
        let inserted = sqlx::query(
            "INSERT INTO github_deliveries (delivery_id, event, received_at) VALUES ($1, $2, $3) \
             ON CONFLICT (delivery_id) DO NOTHING",
        )
        .bind(delivery_id)
        .bind(event)
        .bind(ms(at))
        .execute(&mut *conn)
        .await?;
        Ok(inserted.rows_affected() == 1)
    }

    /// Insert a tracked deployment (its delivery claimed by the caller, in the same
    /// transaction). A request id already tracked is `Conflict`: ids are fresh, so it is a bug
    /// or a forgery, and the other deployment stays as it was.
    pub(crate) async fn github_insert_deployment(conn: &mut DB::Connection, d: &GithubDeployment) -> Result<()> {
        sqlx::query(
            "INSERT INTO github_deployments (request_id, delivery_id, installation_id, owner, repo, environment, run_id, \
             sha, git_ref, event, actor, pull_requests, state, answer, comment, received_at, answered_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        )
        .bind(d.request_id.as_str())
        .bind(d.delivery_id.as_str())
        .bind(d.installation_id)
        .bind(d.owner.as_str())
        .bind(d.repo.as_str())
        .bind(d.environment.as_str())
        .bind(d.run_id)
        .bind(d.sha.as_str())
        .bind(d.git_ref.as_str())
        .bind(d.event.as_str())
        .bind(d.actor.as_str())
        .bind(pull_requests_text(&d.pull_requests)?)
        .bind(d.state.as_str())
        .bind(d.answer.map(|a| a.as_str().to_string()))
        .bind(d.comment.clone())
        .bind(ms(d.received_at))
        .bind(d.answered_at.map(ms))
        .execute(&mut *conn)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
            _ => StoreError::Database(e),
        })?;
        Ok(())
    }

    pub(crate) async fn github_deployment(reader: &Pool<DB>, request_id: &str) -> Result<Option<GithubDeployment>> {
        let row = sqlx::query("SELECT * FROM github_deployments WHERE request_id = $1")
            .bind(request_id)
            .fetch_optional(reader)
            .await?;
        row.as_ref().map(deployment).transpose()
    }

    pub(crate) async fn github_waiting(reader: &Pool<DB>, limit: u32) -> Result<Vec<GithubDeployment>> {
        let rows = sqlx::query(
            "SELECT * FROM github_deployments WHERE state = 'waiting' ORDER BY received_at, request_id LIMIT $1",
        )
        .bind(i64::from(limit.max(1)))
        .fetch_all(reader)
        .await?;
        rows.iter().map(deployment).collect()
    }

    /// A waiting deployment becomes answered: `false` (nothing changed) when it was not
    /// waiting.
    pub(crate) async fn github_mark_answered(
        conn: &mut DB::Connection,
        request_id: &str,
        answer: DeploymentAnswer,
        comment: &str,
        at: Timestamp,
    ) -> Result<bool> {
        let updated = sqlx::query(
            "UPDATE github_deployments SET state = 'answered', answer = $1, comment = $2, answered_at = $3 \
             WHERE request_id = $4 AND state = 'waiting'",
        )
        .bind(answer.as_str())
        .bind(comment)
        .bind(ms(at))
        .bind(request_id)
        .execute(&mut *conn)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    /// Queue calls (checked by the caller, `bodies` their JSON text), a key already queued
    /// skipped, in a few multi-row inserts.
    pub(crate) async fn github_insert_calls(
        conn: &mut DB::Connection,
        calls: &[NewGithubCall],
        bodies: &[String],
    ) -> Result<()> {
        let rows: Vec<(&NewGithubCall, &String)> = calls.iter().zip(bodies).collect();
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let sql = format!(
                "INSERT INTO github_calls (call_key, installation_id, method, path, body, purpose, request_id, due_at) {} \
                 ON CONFLICT (call_key) DO NOTHING",
                values(chunk.len(), 8, B::PLACEHOLDERS)
            );
            let mut query = sqlx::query(&sql);
            for (call, body) in chunk {
                query = query
                    .bind(call.key.as_str())
                    .bind(call.installation_id)
                    .bind(call.method.as_str())
                    .bind(call.path.as_str())
                    .bind(body.as_str())
                    .bind(call.purpose.as_str())
                    .bind(call.request_id.clone())
                    .bind(ms(call.due_at));
            }
            query.execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// Lease the calls due at `now` to `holder`: callbacks first (a deployment's answer never
    /// waits behind comments anyone can cause), then oldest first.
    pub(crate) async fn github_lease(
        writer: &Pool<DB>,
        now: Timestamp,
        holder: &str,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<GithubCall>> {
        let sql = format!(
            "UPDATE github_calls SET leased_until = $1, leased_by = $4 WHERE id IN (SELECT id FROM github_calls \
             WHERE done_at IS NULL AND due_at <= $2 AND (leased_until IS NULL OR leased_until <= $2) \
             ORDER BY CASE purpose WHEN 'callback' THEN 0 ELSE 1 END, due_at, id LIMIT $3{}) RETURNING {CALL_COLUMNS}",
            B::SKIP_LOCKED
        );
        let rows = sqlx::query(&sql)
            .bind(ms(lease_until))
            .bind(ms(now))
            .bind(i64::from(limit))
            .bind(holder)
            .fetch_all(writer)
            .await?;
        let mut calls = rows.iter().map(call).collect::<Result<Vec<_>>>()?;
        // RETURNING keeps no order.
        calls.sort_by_key(|c| (c.call.due_at, c.id));
        Ok(calls)
    }

    /// Record an attempt at a call not done yet: done at `done_at`, or due again at
    /// `next_due` with `error`. The lease is given up either way. `false` when the call is
    /// unknown or already done (another worker's lease ran out and it finished the call).
    pub(crate) async fn github_attempt(
        conn: &mut DB::Connection,
        id: i64,
        done_at: Option<Timestamp>,
        next_due: Option<Timestamp>,
        error: Option<&str>,
    ) -> Result<bool> {
        let updated = sqlx::query(
            "UPDATE github_calls SET attempts = attempts + 1, leased_until = NULL, leased_by = NULL, done_at = $1, \
             due_at = COALESCE($2, due_at), last_error = $3 WHERE id = $4 AND done_at IS NULL",
        )
        .bind(done_at.map(ms))
        .bind(next_due.map(ms))
        .bind(error.map(str::to_string))
        .bind(id)
        .execute(&mut *conn)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    /// A failed attempt by `holder`: due again at `next_due` with `error`, the lease given up;
    /// nothing when the call is done or now leased to someone else.
    pub(crate) async fn github_retry(
        conn: &mut DB::Connection,
        id: i64,
        holder: &str,
        next_due: Timestamp,
        error: &str,
    ) -> Result<bool> {
        let updated = sqlx::query(
            "UPDATE github_calls SET attempts = attempts + 1, leased_until = NULL, leased_by = NULL, \
             due_at = $1, last_error = $2 WHERE id = $3 AND done_at IS NULL AND leased_by = $4",
        )
        .bind(ms(next_due))
        .bind(error.to_string())
        .bind(id)
        .bind(holder)
        .execute(&mut *conn)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    pub(crate) async fn github_calls(reader: &Pool<DB>, request_id: &str) -> Result<Vec<GithubCall>> {
        let sql = format!("SELECT {CALL_COLUMNS} FROM github_calls WHERE request_id = $1 ORDER BY id");
        let rows = sqlx::query(&sql).bind(request_id).fetch_all(reader).await?;
        rows.iter().map(call).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{kept_error, MAX_ERROR_BYTES};

    #[test]
    fn errors_are_kept_without_nul_and_cut_on_a_character_boundary() {
        assert_eq!(kept_error("a\0b"), "a\u{fffd}b");
        let long = "é".repeat(MAX_ERROR_BYTES);
        let kept = kept_error(&long);
        assert!(kept.len() <= MAX_ERROR_BYTES && kept.len() >= MAX_ERROR_BYTES - 1);
        assert!(kept.chars().all(|c| c == 'é'));
    }
}
