//! What both SQL stores share: times as milliseconds, the grant columns every request query
//! selects, and decoding rows into the core's types. The decoders are written once and made
//! for each backend's row type by `row_decoders!`.

use crate::{Result, StoreError};
use jitgate_core::{Request, Timestamp};

pub(crate) fn ms(t: Timestamp) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_ms(v: i64) -> Result<Timestamp> {
    chrono::DateTime::from_timestamp_millis(v).ok_or_else(|| StoreError::Corrupt(format!("timestamp {v}")))
}

pub(crate) const GRANT_COLUMNS: &str = "g.id AS g_id, g.request_id AS g_request_id, g.principal AS g_principal, \
    g.resource AS g_resource, g.action AS g_action, g.payload_sha256 AS g_payload_sha256, \
    g.single_use AS g_single_use, g.break_glass AS g_break_glass, g.status AS g_status, \
    g.starts_at AS g_starts_at, g.expires_at AS g_expires_at, g.ended_at AS g_ended_at, \
    g.ended_by AS g_ended_by, g.end_comment AS g_end_comment, g.extensions AS g_extensions, g.token AS g_token, g.providers AS g_providers";

/// A value bound to a list query's placeholder.
pub(crate) enum ListBind {
    Int(i64),
    Text(String),
}

/// The query listing grants for `filter`, newest first, with `?` placeholders and their values
/// in order. Grant ids are UUIDv7, so id order is creation order: the primary key, the
/// `grants_live (status, id)` and `grants_by_principal (principal, id)` indexes give every page
/// in order without sorting, and a page resumes after the last id handed out.
pub(crate) fn grant_list_query(filter: &crate::GrantFilter, now: Timestamp) -> (String, Vec<ListBind>) {
    use jitgate_core::GrantStatus;
    let mut clauses: Vec<&str> = Vec::new();
    let mut binds = Vec::new();
    match filter.status {
        Some(GrantStatus::Active) => {
            clauses.push("g.status = 'active' AND g.expires_at > ?");
            binds.push(ListBind::Int(ms(now)));
        }
        Some(GrantStatus::Expired) => {
            clauses.push("(g.status = 'expired' OR (g.status = 'active' AND g.expires_at <= ?))");
            binds.push(ListBind::Int(ms(now)));
        }
        Some(status) => {
            clauses.push("g.status = ?");
            binds.push(ListBind::Text(status.as_str().to_string()));
        }
        None => {}
    }
    if let Some(principal) = &filter.principal {
        clauses.push("g.principal = ?");
        binds.push(ListBind::Text(principal.clone()));
    }
    if let Some(before) = &filter.before {
        clauses.push("g.id < ?");
        binds.push(ListBind::Text(before.clone()));
    }
    let where_clause = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    binds.push(ListBind::Int(i64::from(filter.limit.max(1))));
    (
        format!("SELECT {GRANT_COLUMNS} FROM grants g {where_clause} ORDER BY g.id DESC LIMIT ?"),
        binds,
    )
}

pub(crate) fn request_doc(request: &Request) -> Result<String> {
    let mut copy = request.clone();
    copy.grant = None;
    serde_json::to_string(&copy).map_err(|e| StoreError::Corrupt(format!("request document: {e}")))
}

/// The decoders of rows into the core's types, for one backend's row type.
macro_rules! row_decoders {
    ($row:ty) => {
        pub(crate) fn grant_from_row(row: &$row) -> Result<Option<Grant>> {
            let Some(id) = row.try_get::<Option<String>, _>("g_id")? else {
                return Ok(None);
            };
            let status: String = row.try_get("g_status")?;
            Ok(Some(Grant {
                id,
                request_id: row.try_get("g_request_id")?,
                principal: row.try_get("g_principal")?,
                resource: row.try_get("g_resource")?,
                action: row.try_get("g_action")?,
                payload_sha256: row.try_get("g_payload_sha256")?,
                single_use: row.try_get("g_single_use")?,
                break_glass: row.try_get("g_break_glass")?,
                status: GrantStatus::parse(&status)
                    .ok_or_else(|| StoreError::Corrupt(format!("grant status {status}")))?,
                starts_at: from_ms(row.try_get("g_starts_at")?)?,
                expires_at: from_ms(row.try_get("g_expires_at")?)?,
                ended_at: row
                    .try_get::<Option<i64>, _>("g_ended_at")?
                    .map(from_ms)
                    .transpose()?,
                ended_by: row.try_get("g_ended_by")?,
                end_comment: row.try_get("g_end_comment")?,
                extensions: row
                    .try_get::<i64, _>("g_extensions")?
                    .try_into()
                    .unwrap_or(u32::MAX),
                token: row.try_get("g_token")?,
                providers: serde_json::from_str(&row.try_get::<String, _>("g_providers")?)
                    .map_err(|e| StoreError::Corrupt(format!("grant providers: {e}")))?,
            }))
        }

        /// A row of `live_grants`: only what the check index needs.
        pub(crate) fn live_grant_from_row(row: &$row) -> Result<jitgate_core::index::LiveGrant> {
            Ok(jitgate_core::index::LiveGrant {
                id: row.try_get("id")?,
                principal: row.try_get("principal")?,
                resource: row.try_get("resource")?,
                action: row.try_get("action")?,
                payload_sha256: row.try_get("payload_sha256")?,
                single_use: row.try_get("single_use")?,
                starts_at_ms: row.try_get("starts_at")?,
                expires_at_ms: row.try_get("expires_at")?,
            })
        }

        pub(crate) fn request_from_row(row: &$row) -> Result<Request> {
            let doc: String = row.try_get("doc")?;
            let mut request: Request =
                serde_json::from_str(&doc).map_err(|e| StoreError::Corrupt(format!("request document: {e}")))?;
            request.version = row.try_get("version")?;
            request.grant = grant_from_row(row)?;
            Ok(request)
        }

        pub(crate) fn token_from_row(row: &$row) -> Result<ApiToken> {
            let groups: String = row.try_get("groups")?;
            Ok(ApiToken {
                id: row.try_get("id")?,
                hash: row.try_get("token_hash")?,
                principal: row.try_get("principal")?,
                groups: serde_json::from_str(&groups).map_err(|e| StoreError::Corrupt(format!("token groups: {e}")))?,
                service: row.try_get("service")?,
                label: row.try_get("label")?,
                created_by: row.try_get("created_by")?,
                created_at: from_ms(row.try_get("created_at")?)?,
                expires_at: row
                    .try_get::<Option<i64>, _>("expires_at")?
                    .map(from_ms)
                    .transpose()?,
                revoked_at: row
                    .try_get::<Option<i64>, _>("revoked_at")?
                    .map(from_ms)
                    .transpose()?,
                revoked_by: row.try_get("revoked_by")?,
            })
        }

        pub(crate) fn event_from_row(row: &$row) -> Result<AuditEvent> {
            let kind: String = row.try_get("kind")?;
            let kind: EventKind = serde_json::from_value(serde_json::Value::String(kind.clone()))
                .map_err(|_| StoreError::Corrupt(format!("event kind {kind}")))?;
            Ok(AuditEvent {
                seq: row.try_get("seq")?,
                event: NewEvent {
                    kind,
                    at: from_ms(row.try_get("at")?)?,
                    actor: row.try_get("actor")?,
                    subject: row.try_get("subject")?,
                    request_id: row.try_get("request_id")?,
                    grant_id: row.try_get("grant_id")?,
                    resource: row.try_get("resource")?,
                    action: row.try_get("action")?,
                    comment: row.try_get("comment")?,
                },
                prev_hash: row.try_get("prev_hash")?,
                hash: row.try_get("hash")?,
            })
        }

        pub(crate) fn outbox_item_from_row(row: &$row) -> Result<OutboxItem> {
            let operation: String = row.try_get("operation")?;
            Ok(OutboxItem {
                id: row.try_get("id")?,
                grant_id: row.try_get("grant_id")?,
                provider: row.try_get("provider")?,
                operation: OutboxOperation::parse(&operation)
                    .ok_or_else(|| StoreError::Corrupt(format!("outbox operation {operation}")))?,
                due_at: from_ms(row.try_get("due_at")?)?,
                attempts: row.try_get::<i64, _>("attempts")?.try_into().unwrap_or(u32::MAX),
                last_error: row.try_get("last_error")?,
            })
        }
    };
}

pub(crate) use row_decoders;

/// May the log be archived through `through`? Only at a signed checkpoint (what is left
/// continues from its hash), and never the newest event (the chain goes on from it).
pub(crate) fn check_archive_point(through: i64, anchored: bool, head: i64) -> crate::Result<()> {
    if !anchored {
        return Err(crate::StoreError::Refused(format!(
            "event {through} has no signed checkpoint: archive only through a checkpoint"
        )));
    }
    if through >= head {
        return Err(crate::StoreError::Refused(format!(
            "event {through} is the newest event (head {head}): keep at least one event after the archive"
        )));
    }
    Ok(())
}
