//! The wire format: what clients send and receive. Converted from the core's types here so
//! the core stays free of HTTP concerns.

use chrono::{DateTime, Utc};
use jitgate_core::{format_duration, Grant, Request, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A duration as a string (`90s`, `30m`, `2h`, `1h30m`) or a whole number of seconds: the
/// service's input, with the schema the OpenAPI document gives it.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct DurationInput(pub jitgate_service::inputs::DurationInput);

/// Whitespace as Rust's `str::trim` sees it, which `parse_duration` strips.
const TRIMMED: &str = r"[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*";

/// What `jitgate_core::parse_duration` reads: whole seconds, or numbers each with a unit.
pub fn duration_pattern() -> String {
    format!("^{TRIMMED}([0-9]+|([0-9]+[smhd])+){TRIMMED}$")
}

use jitgate_service::inputs::whole_number;

/// `deserialize_with` for an optional integer field that also takes `30.0`.
fn optional_whole<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i64> + TryFrom<u64>,
{
    match Option::<serde_json::Number>::deserialize(deserializer)? {
        None => Ok(None),
        Some(n) => whole_number(&n)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("{n} is not a whole number in range"))),
    }
}

impl utoipa::PartialSchema for DurationInput {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, SchemaType, Type};
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::Integer))
                    .minimum(Some(1))
                    .maximum(Some(jitgate_core::duration::MAX_DURATION.0))
                    .description(Some("whole seconds, at least 1, at most 366 days")),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::String))
                    .pattern(Some(duration_pattern()))
                    .description(Some(
                        "numbers each with a unit (s, m, h, d), like 90s, 30m, 2h or 1h30m, or whole seconds; \
                         more than zero and at most 366 days",
                    )),
            )
            .description(Some(
                "A duration as a string (`90s`, `30m`, `2h`, `1h30m`) or a whole number of seconds.",
            ))
            .into()
    }
}

impl utoipa::ToSchema for DurationInput {}

impl DurationInput {
    pub fn text(text: impl Into<String>) -> Self {
        DurationInput(jitgate_service::inputs::DurationInput::Text(text.into()))
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequestBody {
    /// The resource, as the policy names it (`prod-db`). Required unless `items` is given.
    pub resource: Option<String>,
    /// The action on it (`read`). Required unless `items` is given.
    pub action: Option<String>,
    /// Several things at once, instead of `resource`, `action` and `payload`: 1 to 20 items,
    /// each judged by its own workflow; the request is approved when every item is, and then
    /// grants every item for one window. Errors name the item: `items[3].resource: ...`.
    #[schema(min_items = 1, max_items = 20)]
    pub items: Option<Vec<ItemBody>>,
    /// How long the access should last once approved; defaults to the policy's default.
    pub duration: Option<DurationInput>,
    /// Why. Some workflows require it, some require a ticket reference in it.
    #[serde(default)]
    pub reason: String,
    /// For action-bound workflows: the exact command, statement or artifact digest.
    pub payload: Option<String>,
    /// Take access at once under the workflow's break-glass procedure.
    #[serde(default)]
    pub break_glass: bool,
}

/// One thing a multi-item request asks for.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemBody {
    pub resource: String,
    pub action: String,
    /// For an action-bound workflow: the exact command, statement or artifact digest.
    pub payload: Option<String>,
}

impl TryFrom<CreateRequestBody> for jitgate_service::inputs::NewRequest {
    type Error = crate::ApiError;

    fn try_from(body: CreateRequestBody) -> Result<Self, Self::Error> {
        let (resource, action) = match (body.resource, body.action, &body.items) {
            (Some(resource), Some(action), _) => (resource, action),
            (resource, action, Some(_)) => (resource.unwrap_or_default(), action.unwrap_or_default()),
            (None, _, None) => {
                return Err(crate::ApiError::Invalid(
                    "resource: missing; give resource and action, or items: [{resource, action, payload?}, ...]".into(),
                ))
            }
            (Some(_), None, None) => {
                return Err(crate::ApiError::Invalid(
                    "action: missing; give the action on the resource (`jitgate resources` lists them)".into(),
                ))
            }
        };
        Ok(jitgate_service::inputs::NewRequest {
            resource,
            action,
            duration: body.duration.map(|d| d.0),
            reason: body.reason,
            payload: body.payload,
            break_glass: body.break_glass,
            items: body.items.map(|items| {
                items
                    .into_iter()
                    .map(|i| jitgate_service::inputs::NewItem {
                        resource: i.resource,
                        action: i.action,
                        payload: i.payload,
                    })
                    .collect()
            }),
        })
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommentBody {
    pub comment: Option<String>,
}

/// An approval: a comment, and the payload hash the reviewer was shown.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {
    pub comment: Option<String>,
    /// The SHA-256 (hex) of the payload the reviewer saw. If given and not the request's
    /// `payload_sha256`, nothing is approved: 409 `payload_mismatch`, naming both hashes.
    #[schema(pattern = r"^[0-9a-fA-F]{64}$")]
    pub payload_sha256: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendBody {
    /// How much longer, counted from the grant's current end.
    pub duration: DurationInput,
    #[serde(default)]
    pub reason: String,
}

impl From<ExtendBody> for jitgate_service::inputs::Extension {
    fn from(body: ExtendBody) -> Self {
        jitgate_service::inputs::Extension {
            duration: body.duration.0,
            reason: body.reason,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    /// Answer once the request is decided, waiting at most this long (`30s`; at most 60s).
    #[param(schema_with = duration_text_schema)]
    pub wait: Option<String>,
}

/// What came of the task a grant was for; every field optional.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DoneBody {
    /// The exit status of the command the grant was for (`jitgate run` sends it).
    #[serde(default, deserialize_with = "optional_whole")]
    pub exit_code: Option<i32>,
    /// How long the task took, in milliseconds.
    #[serde(default, deserialize_with = "optional_whole")]
    pub duration_ms: Option<u64>,
    pub comment: Option<String>,
}

impl DoneBody {
    /// The outcome as the audit log records it: `exit 0 after 1.234 s: comment`.
    pub fn outcome(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(code) = self.exit_code {
            parts.push(format!("exit {code}"));
        }
        if let Some(ms) = self.duration_ms {
            parts.push(format!("after {}.{:03} s", ms / 1000, ms % 1000));
        }
        let run = parts.join(" ");
        match (
            run.is_empty(),
            self.comment.as_deref().map(str::trim).filter(|c| !c.is_empty()),
        ) {
            (true, None) => None,
            (true, Some(c)) => Some(c.to_string()),
            (false, None) => Some(run),
            (false, Some(c)) => Some(format!("{run}: {c}")),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckBody {
    #[schema(min_length = 1, max_length = 256)]
    pub principal: String,
    #[schema(min_length = 1, max_length = 256)]
    pub resource: String,
    #[schema(min_length = 1, max_length = 256)]
    pub action: String,
    pub payload: Option<String>,
}

/// `POST /v1/grants/use`: does one of the caller's own grants cover this action now? Asked for
/// the caller alone; a single-use grant is consumed by the answer that allows.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UseGrantBody {
    #[schema(min_length = 1, max_length = 256)]
    pub resource: String,
    #[schema(min_length = 1, max_length = 256)]
    pub action: String,
    /// For an action-bound grant: the exact payload it was approved for (for an MCP tool call,
    /// the canonical JSON `{"arguments":{...},"tool":"T"}`).
    pub payload: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CheckAnswer {
    pub allow: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    pub reason: String,
    /// Present (and `true`) only when the check could not be decided durably (the database
    /// failed while consuming a single-use grant): `allow` is `false`, and a retry may
    /// succeed. A real denial has no `error` field.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub error: bool,
}

impl From<jitgate_service::Decision> for CheckAnswer {
    fn from(d: jitgate_service::Decision) -> Self {
        CheckAnswer {
            allow: d.allow,
            grant_id: d.grant_id,
            expires_at: d.expires_at,
            reason: d.reason,
            error: d.error,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckBatchBody {
    pub checks: Vec<CheckBody>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckBatchAnswer {
    pub results: Vec<CheckAnswer>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApprovalView {
    pub reviewer: String,
    pub comment: Option<String>,
    pub at: DateTime<Utc>,
    /// The payload hash the reviewer confirmed when approving, if they sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_sha256: Option<String>,
}

/// Approvals still needed from a group.
#[derive(Debug, Serialize, ToSchema)]
pub struct NeedView {
    pub group: String,
    pub approvals: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClosedByView {
    pub by: String,
    pub comment: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GrantView {
    pub id: String,
    pub request_id: String,
    pub principal: String,
    pub resource: String,
    pub action: String,
    /// `active`, `expired`, `revoked` or `used`, as of the moment of the answer.
    pub status: String,
    pub starts_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub single_use: bool,
    pub break_glass: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_by: Option<String>,
    /// How many times it has been extended.
    pub extensions: u32,
    /// The signed grant token (EdDSA JWT) for offline verification against
    /// `/.well-known/jwks.json`; shown to the grant's holder only, while it is active.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Where the grant stands with each of its providers (see docs/providers.md).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<ProviderStatusView>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProviderStatusView {
    pub provider: String,
    /// `pending`, `provisioned`, `failed` (being retried; see `last_error`) or `deprovisioned`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl GrantView {
    /// The grant as `viewer` sees it: the token is the holder's credential, nobody else's.
    pub fn new(g: &Grant, now: Timestamp, viewer: &str) -> Self {
        let live = g.status_at(now) == jitgate_core::GrantStatus::Active;
        GrantView {
            id: g.id.clone(),
            request_id: g.request_id.clone(),
            principal: g.principal.clone(),
            resource: g.resource.clone(),
            action: g.action.clone(),
            status: g.status_at(now).as_str().to_string(),
            starts_at: g.starts_at,
            expires_at: g.expires_at,
            single_use: g.single_use,
            break_glass: g.break_glass,
            payload_sha256: g.payload_sha256.clone(),
            ended_at: g.ended_at.or((g.status_at(now) != g.status).then_some(g.expires_at)),
            ended_by: g.ended_by.clone(),
            extensions: g.extensions,
            token: g.token.clone().filter(|_| live && viewer == g.principal),
            providers: Vec::new(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RequestView {
    pub id: String,
    /// Who filed it: a person, a CI job, or an agent.
    pub requester: String,
    /// When the requester is an agent: the person it acts for. That person may read and cancel
    /// the request, and never counts as its reviewer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
    pub resource: String,
    pub action: String,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_sha256: Option<String>,
    /// The grant's length once approved, like `30m`.
    pub duration: String,
    pub duration_seconds: u64,
    pub break_glass: bool,
    /// `pending`, `approved`, `denied`, `cancelled` or `expired`, as of the moment of the answer.
    pub status: String,
    pub approvals: Vec<ApprovalView>,
    /// What is still needed before the request is approved (empty once decided).
    pub needs: Vec<NeedView>,
    pub single_use: bool,
    pub action_bound: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_by: Option<ClosedByView>,
    pub created_at: DateTime<Utc>,
    pub pending_expires_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant: Option<GrantView>,
    /// A break-glass request whose after-the-fact review is still owed.
    pub review_due: bool,
    /// The after-the-fact review of a break-glass request, once given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_review: Option<ClosedByView>,
    /// The holder's word that the task is done (`jitgate done`), with its outcome; given once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done: Option<ClosedByView>,
    /// When nobody had decided it in time and the workflow's backup reviewers were called in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escalated_at: Option<DateTime<Utc>>,
    /// The groups whose members may approve it once escalated.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backup_reviewers: Vec<String>,
    /// A request for several things at once: every item, the first being the request's own
    /// `resource`, `action` and `payload` (whose `approvals` and `grant` above are that item's;
    /// `needs` above is what the whole request still needs). Absent for a single-item request.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<ItemView>,
}

/// One item of a multi-item request: what it asks for, what it still needs, who approved it,
/// and once the request is approved its own grant (every item's with the same window).
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemView {
    pub resource: String,
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_sha256: Option<String>,
    /// Every approval this item has.
    pub approvals: Vec<ApprovalView>,
    /// What this item still needs (empty once it has every approval, or the request is decided).
    pub needs: Vec<NeedView>,
    pub single_use: bool,
    pub action_bound: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant: Option<GrantView>,
}

fn approval_views(approvals: &[jitgate_core::Approval]) -> Vec<ApprovalView> {
    approvals
        .iter()
        .map(|a| ApprovalView {
            reviewer: a.reviewer.clone(),
            comment: a.comment.clone(),
            at: a.at,
            payload_sha256: a.payload_sha256.clone(),
        })
        .collect()
}

fn need_views(steps: Vec<jitgate_core::Step>) -> Vec<NeedView> {
    steps
        .into_iter()
        .map(|s| NeedView {
            group: s.group,
            approvals: s.approvals,
        })
        .collect()
}

impl RequestView {
    /// The request as `viewer` (a principal) sees it.
    pub fn new(r: &Request, now: Timestamp, viewer: &str) -> Self {
        let status = r.status_at(now);
        let pending = status == jitgate_core::RequestStatus::Pending;
        let needs = if pending {
            // Of a multi-item request, what every item still needs.
            need_views((0..r.item_count()).flat_map(|i| r.item_missing_approvals(i)).collect())
        } else {
            Vec::new()
        };
        let items = if r.items.is_empty() {
            Vec::new()
        } else {
            (0..r.item_count())
                .filter_map(|i| r.item_request(i))
                .map(|item| ItemView {
                    needs: if pending {
                        need_views(item.missing_approvals())
                    } else {
                        Vec::new()
                    },
                    approvals: approval_views(&item.approvals),
                    single_use: item.requirement.single_use,
                    action_bound: item.requirement.action_bound,
                    grant: item.grant.as_ref().map(|g| GrantView::new(g, now, viewer)),
                    resource: item.resource,
                    action: item.action,
                    payload: item.payload,
                    payload_sha256: item.payload_sha256,
                })
                .collect()
        };
        RequestView {
            id: r.id.clone(),
            requester: r.requester.clone(),
            on_behalf_of: r.on_behalf_of.clone(),
            resource: r.resource.clone(),
            action: r.action.clone(),
            reason: r.reason.clone(),
            payload: r.payload.clone(),
            payload_sha256: r.payload_sha256.clone(),
            duration: format_duration(r.duration),
            duration_seconds: r.duration.0,
            break_glass: r.break_glass,
            status: status.as_str().to_string(),
            approvals: approval_views(&r.approvals),
            needs,
            single_use: r.requirement.single_use,
            action_bound: r.requirement.action_bound,
            closed_by: r.closed_by.as_ref().map(|c| ClosedByView {
                by: c.by.clone(),
                comment: c.comment.clone(),
                at: c.at,
            }),
            created_at: r.created_at,
            pending_expires_at: r.pending_expires_at,
            decided_at: r.decided_at.or((status != r.status).then_some(r.pending_expires_at)),
            grant: r.grant.as_ref().map(|g| GrantView::new(g, now, viewer)),
            review_due: r.review_due(),
            post_review: r.post_review.as_ref().map(|c| ClosedByView {
                by: c.by.clone(),
                comment: c.comment.clone(),
                at: c.at,
            }),
            done: r.done.as_ref().map(|c| ClosedByView {
                by: c.by.clone(),
                comment: c.comment.clone(),
                at: c.at,
            }),
            escalated_at: r.escalated_at,
            backup_reviewers: r
                .requirement
                .escalation
                .as_ref()
                .map(|e| e.groups.clone())
                .unwrap_or_default(),
            items,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RequestList {
    pub items: Vec<RequestView>,
    /// Pass as `before` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GrantList {
    pub items: Vec<GrantView>,
    /// Pass as `before` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    pub seq: i64,
    pub kind: String,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    pub resource: String,
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

impl From<jitgate_core::AuditEvent> for EventView {
    fn from(e: jitgate_core::AuditEvent) -> Self {
        EventView {
            seq: e.seq,
            kind: e.event.kind.as_str().to_string(),
            at: e.event.at,
            actor: e.event.actor,
            subject: e.event.subject,
            request_id: e.event.request_id,
            grant_id: e.event.grant_id,
            resource: e.event.resource,
            action: e.event.action,
            comment: e.event.comment,
            prev_hash: e.prev_hash,
            hash: e.hash,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    pub items: Vec<EventView>,
    /// Pass as `after` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyAnswer {
    pub ok: bool,
    pub events: u64,
    /// Signed checkpoints the log was compared with.
    pub checkpoints: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_bad_seq: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Events up to this one were archived by retention; the log continues from its signed
    /// checkpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archived_through: Option<i64>,
    /// The newest event a signed checkpoint vouches for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_through: Option<i64>,
}

/// A signed checkpoint of the audit log: the log had event `seq` with hash `hash` at `at`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointView {
    pub seq: i64,
    pub hash: String,
    pub at: DateTime<Utc>,
    /// A JWT (EdDSA) by a key of `GET /v1/audit/keys`, claiming `seq` and `hash`.
    pub signature: String,
}

impl From<jitgate_core::audit::Checkpoint> for CheckpointView {
    fn from(c: jitgate_core::audit::Checkpoint) -> Self {
        CheckpointView {
            seq: c.seq,
            hash: c.hash,
            at: c.at,
            signature: c.signature,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointList {
    pub items: Vec<CheckpointView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CheckpointQuery {
    /// Only checkpoints of events after this sequence number.
    pub after: Option<i64>,
    /// Only checkpoints of events up to this sequence number.
    pub through: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RequestQuery {
    /// Only requests in this status (as of now).
    #[param(schema_with = request_status_schema)]
    pub status: Option<String>,
    /// Only requests filed by this principal.
    pub requester: Option<String>,
    /// Page size, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// The `next` value of the previous page.
    pub before: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct GrantQuery {
    /// Only grants in this status (as of now).
    #[param(schema_with = grant_status_schema)]
    pub status: Option<String>,
    /// Only grants held by this principal.
    pub principal: Option<String>,
    /// Page size, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// The `next` value of the previous page.
    pub before: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub request_id: Option<String>,
    /// Events where this principal is the actor or the subject.
    pub principal: Option<String>,
    pub resource: Option<String>,
    pub action: Option<String>,
    /// Events of this kind, like `request.approved` (docs/audit.md lists them).
    #[param(schema_with = event_kind_schema)]
    pub kind: Option<String>,
    /// RFC 3339 time; only events at or after it.
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<String>,
    /// The `next` value of the previous page.
    pub after: Option<i64>,
    /// Page size, 1 to 5000 (default 1000).
    #[param(minimum = 1, maximum = 5000)]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExplainQuery {
    /// Whose request to explain; yours by default. Others' only for admins and auditors.
    pub principal: Option<String>,
    pub resource: String,
    pub action: String,
}

/// The request statuses a list may be filtered by, as `RequestStatus::parse` reads them.
pub const REQUEST_STATUSES: [&str; 5] = ["pending", "approved", "denied", "cancelled", "expired"];
/// The grant statuses a list may be filtered by, as `GrantStatus::parse` reads them.
pub const GRANT_STATUSES: [&str; 5] = ["active", "expired", "revoked", "used", "done"];

fn string_enum(values: impl IntoIterator<Item = &'static str>) -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::Type(
            utoipa::openapi::schema::Type::String,
        ))
        .enum_values(Some(values))
        .build()
}

fn request_status_schema() -> utoipa::openapi::schema::Object {
    string_enum(REQUEST_STATUSES)
}

fn grant_status_schema() -> utoipa::openapi::schema::Object {
    string_enum(GRANT_STATUSES)
}

fn event_kind_schema() -> utoipa::openapi::schema::Object {
    string_enum(jitgate_core::EventKind::ALL.iter().map(|k| k.as_str()))
}

fn duration_text_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::Type(
            utoipa::openapi::schema::Type::String,
        ))
        .pattern(Some(duration_pattern()))
        .build()
}

use jitgate_service::inputs::{MAX_TOKEN_FIELD, MAX_TOKEN_GROUPS};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenBody {
    /// Whom the token authenticates as. Printable (no C0 or C1 control character) with something
    /// besides whitespace in it, as `name_ok` accepts.
    #[schema(
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x1f\x7f-\x9f]*$",
        max_length = 256
    )]
    pub principal: String,
    /// Groups the token's holder belongs to, besides those the directory gives the principal.
    #[serde(default)]
    #[schema(schema_with = token_groups_schema)]
    pub groups: Vec<String>,
    /// How long the token is valid; without it, until revoked.
    pub ttl: Option<DurationInput>,
    /// What the token is for, to recognise it in `jitgate token list`.
    #[schema(pattern = r"^[^\x00-\x1f\x7f-\x9f]*$", max_length = 256)]
    pub label: Option<String>,
    /// A service token may call `/v1/check`.
    #[serde(default)]
    pub service: bool,
    /// Makes an agent token: the person (a principal name: ASCII letters, digits and
    /// `._-@+:/|`) the agent acts for. The agent is in the group `agents` and gets its person's
    /// groups except `admins` and `auditors`; it never reviews, and its person never counts as
    /// a reviewer of its requests. Refused with `service`, or equal to `principal`.
    #[schema(pattern = r"^[A-Za-z0-9._\-@+:/|]{1,256}$", max_length = 256)]
    pub agent_for: Option<String>,
    /// Makes a SCIM provisioning token (issue #25): it may call `/scim/v2` and nothing else
    /// (403 anywhere else), and nothing else is accepted on `/scim/v2`. Refused with
    /// `groups`, `service` or `agent_for`.
    #[serde(default)]
    pub scim: bool,
}

/// A token's groups: names without commas, at most [`MAX_TOKEN_GROUPS`].
fn token_groups_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
    let group = ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .pattern(Some(
            r"^[^\x00-\x1f\x7f-\x9f,]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000,][^\x00-\x1f\x7f-\x9f,]*$",
        ))
        .max_length(Some(MAX_TOKEN_FIELD));
    ArrayBuilder::new()
        .items(group)
        .max_items(Some(MAX_TOKEN_GROUPS))
        .build()
}

impl From<CreateTokenBody> for jitgate_service::inputs::NewToken {
    fn from(body: CreateTokenBody) -> Self {
        jitgate_service::inputs::NewToken {
            principal: body.principal,
            groups: body.groups,
            ttl: body.ttl.map(|d| d.0),
            label: body.label,
            service: body.service,
            agent_for: body.agent_for,
            scim: body.scim,
        }
    }
}

/// An API token as listed: never the token itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    pub id: String,
    pub principal: String,
    pub groups: Vec<String>,
    pub service: bool,
    /// For an agent token: the person the agent acts for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_for: Option<String>,
    /// A SCIM provisioning token: valid on `/scim/v2` only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub scim: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// `active`, `expired` or `revoked`.
    pub status: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
}

impl TokenView {
    pub fn new(t: &jitgate_core::ApiToken, now: Timestamp) -> Self {
        TokenView {
            id: t.id.clone(),
            principal: t.principal.clone(),
            groups: t.groups.clone(),
            service: t.service,
            agent_for: t.on_behalf_of.clone(),
            scim: t.scim,
            label: t.label.clone(),
            status: t.status(now).as_str().to_string(),
            created_by: t.created_by.clone(),
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
            revoked_by: t.revoked_by.clone(),
        }
    }
}

/// A token just created: the only time the token itself is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    /// The bearer token. Store it now: jitgate keeps only its hash.
    pub token: String,
    #[serde(flatten)]
    pub details: TokenView,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    pub items: Vec<TokenView>,
}

/// What accepting the database's history did.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryAccepted {
    /// Whether the database's history had diverged from what this replica saw; `false`:
    /// nothing to accept, nothing changed.
    pub diverged: bool,
    /// What this replica had seen that the accepted history lacks (also the comment of the
    /// `database.history_accepted` audit event).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub given_up: Option<String>,
    /// One line for a person.
    pub message: String,
}

/// The key that signs grant tokens from now on.
#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedKey {
    pub kid: String,
}

/// What Slack posts to the interactivity endpoint: its JSON payload as one form field,
/// signed in `X-Slack-Signature` (see docs/notifications.md).
#[derive(ToSchema)]
pub struct SlackInteractionForm {
    pub payload: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SshCertBody {
    /// The OpenSSH public key to certify, one line (`ssh-ed25519 AAAA... comment`).
    pub public_key: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SshCertAnswer {
    /// One OpenSSH certificate line; save it beside the key as `KEY-cert.pub`.
    pub certificate: String,
}

/// A database login made for a grant's holder. The password is shown this once: jitgate keeps
/// no copy. It works until the grant ends, when the role is dropped and its sessions are cut.
#[derive(Debug, Serialize, ToSchema)]
pub struct DatabaseCredentials {
    /// The provider (from the server's config) that made the login.
    pub provider: String,
    pub user: String,
    pub password: String,
    pub host: String,
    pub port: u16,
    pub database: String,
    /// A connection URL with all of the above, for `psql` and drivers.
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

impl From<jitgate_service::DatabaseLogin> for DatabaseCredentials {
    fn from(l: jitgate_service::DatabaseLogin) -> Self {
        DatabaseCredentials {
            provider: l.provider,
            user: l.user,
            password: l.password,
            host: l.host,
            port: l.port,
            database: l.database,
            url: l.url,
            expires_at: l.expires_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialsAnswer {
    pub credentials: Vec<DatabaseCredentials>,
}

/// `GET /v1/resources`: which resources to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ResourceListQuery {
    /// Text the resource's name or description contains (any case).
    #[param(max_length = 256)]
    pub q: Option<String>,
    /// Only resources of this kind (`postgres`, `ssh`, `http`, ...).
    #[param(max_length = 256)]
    pub kind: Option<String>,
    /// Only resources with these labels: `key=value`, several separated by commas
    /// (`env=prod,team=payments`).
    #[param(max_length = 1024)]
    pub label: Option<String>,
    /// Page size, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// The `next` value of the previous page.
    pub before: Option<String>,
}

impl ResourceListQuery {
    /// The service's query; a malformed `label` is refused naming it.
    pub fn into_query(self) -> Result<jitgate_service::resources::ResourceQuery, crate::ApiError> {
        for (field, value, max) in [
            ("q", &self.q, 256),
            ("kind", &self.kind, 256),
            ("label", &self.label, 1024),
        ] {
            if let Some(value) = value.as_ref().filter(|v| v.chars().count() > max) {
                return Err(crate::ApiError::OverLimit(
                    crate::error::Limit::FieldLength,
                    format!("{field}: is {} characters; keep it to {max}", value.chars().count()),
                ));
            }
        }
        let mut labels = std::collections::BTreeMap::new();
        for pair in self
            .label
            .iter()
            .flat_map(|l| l.split(','))
            .filter(|p| !p.trim().is_empty())
        {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(crate::ApiError::Invalid(format!(
                    "label: '{pair}' is not key=value; write label=env=prod (several: env=prod,team=payments)"
                )));
            };
            labels.insert(key.trim().to_string(), value.trim().to_string());
        }
        Ok(jitgate_service::resources::ResourceQuery {
            search: self.q.filter(|q| !q.trim().is_empty()),
            kind: self.kind.filter(|k| !k.trim().is_empty()),
            labels,
            limit: self.limit.unwrap_or(100),
            after: self.before,
        })
    }
}

/// An action the caller may request on a resource, and what it would take.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestableActionView {
    pub action: String,
    /// Granted at once, without a reviewer.
    pub automatic: bool,
    /// The approvals it would wait for (empty when automatic).
    pub needs: Vec<NeedView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The request must carry the exact call, command or artifact as its `payload`, and the
    /// grant allows that payload only.
    pub action_bound: bool,
    /// The grant allows exactly one check (or one `POST /v1/grants/use`).
    pub single_use: bool,
    /// The labels the catalog declares for the action (`{"effect": "read"}`); `{}` when none.
    pub labels: std::collections::BTreeMap<String, String>,
}

/// A resource the caller may request, with each action they may ask for.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResourceView {
    pub name: String,
    /// The catalog's kind of the resource, when the catalog declares it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub labels: std::collections::BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub actions: Vec<RequestableActionView>,
}

impl From<jitgate_service::resources::RequestableResource> for ResourceView {
    fn from(r: jitgate_service::resources::RequestableResource) -> Self {
        ResourceView {
            name: r.name,
            kind: r.kind,
            labels: r.labels,
            description: r.description,
            actions: r
                .actions
                .into_iter()
                .map(|a| RequestableActionView {
                    action: a.action,
                    automatic: a.automatic,
                    needs: a
                        .needs
                        .into_iter()
                        .map(|s| NeedView {
                            group: s.group,
                            approvals: s.approvals,
                        })
                        .collect(),
                    description: a.description,
                    action_bound: a.action_bound,
                    single_use: a.single_use,
                    labels: a.labels,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResourceList {
    pub items: Vec<ResourceView>,
    /// Pass as `before` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// `GET /v1/audit` and every exported, archived or shipped line must be one shape: an
    /// auditor verifies either with the same tool.
    #[test]
    fn an_event_is_listed_exactly_as_it_is_exported() {
        let at = chrono::DateTime::from_timestamp_millis(1_700_000_000_123).unwrap();
        for (request_id, comment) in [(None, None), (Some("req_1".to_string()), Some("why\n".to_string()))] {
            let event = jitgate_core::AuditEvent {
                seq: 7,
                event: jitgate_core::NewEvent {
                    kind: jitgate_core::EventKind::RequestFiled,
                    at,
                    actor: "alice".into(),
                    subject: "alice".into(),
                    request_id,
                    grant_id: None,
                    resource: "prod-db".into(),
                    action: "read".into(),
                    comment,
                },
                prev_hash: "00".into(),
                hash: "ab".into(),
            };
            let listed = serde_json::to_value(EventView::from(event.clone())).unwrap();
            let exported: serde_json::Value =
                serde_json::from_str(&jitgate_service::audit::format::event_line(&event)).unwrap();
            assert_eq!(listed, exported);
        }
    }
}
