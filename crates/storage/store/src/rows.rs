//! What both SQL stores share in their rows: times as milliseconds, the grant columns every
//! request query selects, and decoding rows into the core's types, written once for any sqlx
//! row type that can hand over the columns' integers, booleans and text.

use crate::{Result, StoreError};
use jitgate_core::audit::Checkpoint;
use jitgate_core::index::LiveGrant;
use jitgate_core::keys::SigningKeyRecord;
use jitgate_core::outbox::{OutboxItem, OutboxOperation, OutboxState};
use jitgate_core::scim::{ScimGroup, ScimUser};
use jitgate_core::{ApiToken, AuditEvent, EventKind, Grant, GrantStatus, NewEvent, Request, Timestamp};
use sqlx::{ColumnIndex, Decode, Row, Type};

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

/// A request with its grant: the query, to be followed by its WHERE (and ORDER, LIMIT).
pub(crate) fn request_query(where_clause: &str) -> String {
    // The first item's grant; a multi-item request's further grants are read by `item_grants`.
    format!("SELECT r.doc, r.version, {GRANT_COLUMNS} FROM requests r LEFT JOIN grants g ON g.request_id = r.id AND g.item = 0 {where_clause}")
}

/// The grants of a request's further items (`item` 1 and up), in item order.
pub(crate) fn item_grants_query() -> String {
    format!(
        "SELECT {GRANT_COLUMNS}, g.item AS g_item FROM grants g WHERE g.request_id = $1 AND g.item > 0 ORDER BY g.item"
    )
}

/// Every grant of a request with its item number (0: the request's own), as the grants
/// table keeps them.
pub(crate) fn numbered_grants(request: &Request) -> Vec<(&Grant, i64)> {
    let first = request.grant.iter().map(|g| (g, 0));
    let further = request.items.iter().enumerate().filter_map(|(k, item)| {
        item.grant
            .as_ref()
            .map(|g| (g, i64::try_from(k + 1).unwrap_or(i64::MAX)))
    });
    first.chain(further).collect()
}

pub(crate) fn request_doc(request: &Request) -> Result<String> {
    let mut copy = request.clone();
    copy.grant = None;
    // Grants live in the grants table, items' ones too.
    for item in &mut copy.items {
        item.grant = None;
    }
    serde_json::to_string(&copy).map_err(|e| StoreError::Corrupt(format!("request document: {e}")))
}

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

fn optional_time(v: Option<i64>) -> Result<Option<Timestamp>> {
    v.map(from_ms).transpose()
}

fn operation(name: &str) -> Result<OutboxOperation> {
    OutboxOperation::parse(name).ok_or_else(|| StoreError::Corrupt(format!("outbox operation {name}")))
}

/// A row decoded into the core's types: one implementation for both backends' rows.
pub(crate) trait RowDecode {
    /// The grant columns (`GRANT_COLUMNS`) of a row; `None` for a request without a grant.
    fn grant(&self) -> Result<Option<Grant>>;
    /// A row of `live_grants`: only what the check index needs.
    fn live_grant(&self) -> Result<LiveGrant>;
    fn request(&self) -> Result<Request>;
    fn token(&self) -> Result<ApiToken>;
    fn event(&self) -> Result<AuditEvent>;
    fn outbox_item(&self) -> Result<OutboxItem>;
    fn outbox_state(&self) -> Result<OutboxState>;
    fn checkpoint(&self) -> Result<Checkpoint>;
    fn signing_key(&self) -> Result<SigningKeyRecord>;
    /// A row of `scim_users`.
    fn scim_user(&self) -> Result<ScimUser>;
    /// A row of `scim_groups`, without its members (rows of their own).
    fn scim_group(&self) -> Result<ScimGroup>;
}

/// A stored SCIM document.
fn scim_doc(text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("SCIM document: {e}")))
}

impl<R> RowDecode for R
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    fn grant(&self) -> Result<Option<Grant>> {
        let Some(id) = self.try_get::<Option<String>, _>("g_id")? else {
            return Ok(None);
        };
        let status: String = self.try_get("g_status")?;
        Ok(Some(Grant {
            id,
            request_id: self.try_get("g_request_id")?,
            principal: self.try_get("g_principal")?,
            resource: self.try_get("g_resource")?,
            action: self.try_get("g_action")?,
            payload_sha256: self.try_get("g_payload_sha256")?,
            single_use: self.try_get("g_single_use")?,
            break_glass: self.try_get("g_break_glass")?,
            status: GrantStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("grant status {status}")))?,
            starts_at: from_ms(self.try_get("g_starts_at")?)?,
            expires_at: from_ms(self.try_get("g_expires_at")?)?,
            ended_at: optional_time(self.try_get("g_ended_at")?)?,
            ended_by: self.try_get("g_ended_by")?,
            end_comment: self.try_get("g_end_comment")?,
            extensions: self.try_get::<i64, _>("g_extensions")?.try_into().unwrap_or(u32::MAX),
            token: self.try_get("g_token")?,
            providers: serde_json::from_str(&self.try_get::<String, _>("g_providers")?)
                .map_err(|e| StoreError::Corrupt(format!("grant providers: {e}")))?,
        }))
    }

    fn live_grant(&self) -> Result<LiveGrant> {
        Ok(LiveGrant {
            id: self.try_get("id")?,
            principal: self.try_get("principal")?,
            resource: self.try_get("resource")?,
            action: self.try_get("action")?,
            payload_sha256: self.try_get("payload_sha256")?,
            single_use: self.try_get("single_use")?,
            starts_at_ms: self.try_get("starts_at")?,
            expires_at_ms: self.try_get("expires_at")?,
        })
    }

    fn request(&self) -> Result<Request> {
        let doc: String = self.try_get("doc")?;
        let mut request: Request =
            serde_json::from_str(&doc).map_err(|e| StoreError::Corrupt(format!("request document: {e}")))?;
        request.version = self.try_get("version")?;
        request.grant = self.grant()?;
        Ok(request)
    }

    fn token(&self) -> Result<ApiToken> {
        let groups: String = self.try_get("groups")?;
        Ok(ApiToken {
            id: self.try_get("id")?,
            hash: self.try_get("token_hash")?,
            principal: self.try_get("principal")?,
            groups: serde_json::from_str(&groups).map_err(|e| StoreError::Corrupt(format!("token groups: {e}")))?,
            service: self.try_get("service")?,
            on_behalf_of: self.try_get("on_behalf_of")?,
            scim: self.try_get("scim")?,
            label: self.try_get("label")?,
            created_by: self.try_get("created_by")?,
            created_at: from_ms(self.try_get("created_at")?)?,
            expires_at: optional_time(self.try_get("expires_at")?)?,
            revoked_at: optional_time(self.try_get("revoked_at")?)?,
            revoked_by: self.try_get("revoked_by")?,
        })
    }

    fn event(&self) -> Result<AuditEvent> {
        let kind: String = self.try_get("kind")?;
        let kind: EventKind = serde_json::from_value(serde_json::Value::String(kind.clone()))
            .map_err(|_| StoreError::Corrupt(format!("event kind {kind}")))?;
        Ok(AuditEvent {
            seq: self.try_get("seq")?,
            event: NewEvent {
                kind,
                at: from_ms(self.try_get("at")?)?,
                actor: self.try_get("actor")?,
                subject: self.try_get("subject")?,
                request_id: self.try_get("request_id")?,
                grant_id: self.try_get("grant_id")?,
                resource: self.try_get("resource")?,
                action: self.try_get("action")?,
                comment: self.try_get("comment")?,
            },
            prev_hash: self.try_get("prev_hash")?,
            hash: self.try_get("hash")?,
        })
    }

    fn outbox_item(&self) -> Result<OutboxItem> {
        Ok(OutboxItem {
            id: self.try_get("id")?,
            grant_id: self.try_get("grant_id")?,
            provider: self.try_get("provider")?,
            operation: operation(&self.try_get::<String, _>("operation")?)?,
            due_at: from_ms(self.try_get("due_at")?)?,
            attempts: self.try_get::<i64, _>("attempts")?.try_into().unwrap_or(u32::MAX),
            last_error: self.try_get("last_error")?,
        })
    }

    fn outbox_state(&self) -> Result<OutboxState> {
        Ok(OutboxState {
            grant_id: self.try_get("grant_id")?,
            provider: self.try_get("provider")?,
            operation: operation(&self.try_get::<String, _>("operation")?)?,
            done: self.try_get("done")?,
            attempts: self.try_get::<i64, _>("attempts")?.try_into().unwrap_or(u32::MAX),
            last_error: self.try_get("last_error")?,
        })
    }

    fn checkpoint(&self) -> Result<Checkpoint> {
        Ok(Checkpoint {
            seq: self.try_get("seq")?,
            hash: self.try_get("hash")?,
            at: from_ms(self.try_get("at")?)?,
            signature: self.try_get("signature")?,
        })
    }

    fn signing_key(&self) -> Result<SigningKeyRecord> {
        Ok(SigningKeyRecord {
            kid: self.try_get("kid")?,
            algorithm: self.try_get("algorithm")?,
            private_der_hex: self.try_get("private_der_hex")?,
            public_jwk: self.try_get("public_jwk")?,
            created_at: from_ms(self.try_get("created_at")?)?,
            retired_at: optional_time(self.try_get("retired_at")?)?,
            publish_until: optional_time(self.try_get("publish_until")?)?,
        })
    }

    fn scim_user(&self) -> Result<ScimUser> {
        Ok(ScimUser {
            id: self.try_get("id")?,
            user_name: self.try_get("user_name")?,
            principal: self.try_get("principal")?,
            external_id: self.try_get("external_id")?,
            display_name: self.try_get("display_name")?,
            active: self.try_get("active")?,
            manager_id: self.try_get("manager_id")?,
            doc: scim_doc(&self.try_get::<String, _>("doc")?)?,
            version: self.try_get("version")?,
            created_at: from_ms(self.try_get("created_at")?)?,
            modified_at: from_ms(self.try_get("modified_at")?)?,
        })
    }

    fn scim_group(&self) -> Result<ScimGroup> {
        Ok(ScimGroup {
            id: self.try_get("id")?,
            display_name: self.try_get("display_name")?,
            external_id: self.try_get("external_id")?,
            doc: scim_doc(&self.try_get::<String, _>("doc")?)?,
            members: Vec::new(),
            version: self.try_get("version")?,
            created_at: from_ms(self.try_get("created_at")?)?,
            modified_at: from_ms(self.try_get("modified_at")?)?,
        })
    }
}
