//! The directory an identity provider provisions over SCIM 2.0 (RFC 7643, RFC 7644): users
//! and groups as jitgate keeps them, and the one write that changes them together with what
//! the change ends (grants, pending requests, approvals, tokens). The protocol (filters,
//! patches, schemas) is in the submodules; nothing here knows of HTTP or SQL.

use crate::{ApiToken, NewEvent, Request, Timestamp};
use serde::{Deserialize, Serialize};

/// A provisioned user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScimUser {
    /// Assigned by jitgate at creation, never reused.
    pub id: String,
    /// Unique among live users, compared case-insensitively (RFC 7643 `caseExact: false`).
    pub user_name: String,
    /// The principal the user is in jitgate: a documented function of `userName` (or of the
    /// configured attribute), fixed when the user is written.
    pub principal: String,
    pub external_id: Option<String>,
    pub display_name: Option<String>,
    pub active: bool,
    /// The enterprise extension's `manager.value`: the SCIM id of the user's manager.
    pub manager_id: Option<String>,
    /// The representation as the client last wrote it, without what the server owns (`id`,
    /// `meta`, `groups`): read back as written.
    pub doc: serde_json::Value,
    /// 1 at creation, one more on each write; the ETag is `W/"VERSION"`.
    pub version: i64,
    pub created_at: Timestamp,
    pub modified_at: Timestamp,
}

/// A provisioned group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScimGroup {
    pub id: String,
    /// The group's name in jitgate: unique among groups, compared case-insensitively.
    pub display_name: String,
    pub external_id: Option<String>,
    /// As [`ScimUser::doc`], without `members` (kept as rows, not in the document).
    pub doc: serde_json::Value,
    /// The SCIM ids of the member users, sorted. Empty when read without members.
    pub members: Vec<String>,
    pub version: i64,
    pub created_at: Timestamp,
    pub modified_at: Timestamp,
}

/// What a list asks for: the equality filters the providers send (each given part must
/// match, `and`), and a page. Text compares as RFC 7643 says for the attribute: `userName`
/// and `displayName` case-insensitively, `externalId` and `id` exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScimQuery {
    pub user_name: Option<String>,
    pub external_id: Option<String>,
    pub display_name: Option<String>,
    pub id: Option<String>,
    /// Groups only: those that have this user id as a member.
    pub member: Option<String>,
    /// 1-based, as SCIM counts.
    pub start_index: u64,
    pub count: u64,
}

/// One page of a list, with how many match in all.
#[derive(Debug, Clone, PartialEq)]
pub struct ScimPage<T> {
    pub total: u64,
    pub items: Vec<T>,
}

/// How a group's members change with a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    /// Members stay as they are.
    Keep,
    /// Members become exactly these user ids.
    Set(Vec<String>),
    /// These user ids join, those leave (either may be empty).
    Edit { add: Vec<String>, remove: Vec<String> },
}

/// The change a provisioning call makes to the directory. `expected_version` is the version
/// the change was computed from: the write applies only if the record is still at it (else
/// `Conflict`); `None` on a create means the id must be new.
#[derive(Debug, Clone, PartialEq)]
pub enum ScimChange {
    /// Create (`expected_version: None`) or replace a user.
    PutUser {
        user: ScimUser,
        expected_version: Option<i64>,
    },
    /// Delete a user: gone from reads and lists, its `userName` free again, its memberships
    /// ended; its principal stays known as departed.
    DeleteUser {
        id: String,
        expected_version: i64,
    },
    /// Create or replace a group (its `members` field is ignored: `members` says).
    PutGroup {
        group: ScimGroup,
        expected_version: Option<i64>,
        members: MemberChange,
    },
    DeleteGroup {
        id: String,
        expected_version: i64,
    },
}

/// One provisioning write, committed in one transaction: the directory change, the
/// transitions it causes (grants revoked, pending requests cancelled, approvals withdrawn),
/// the tokens it revokes, and every event of all of it.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectoryWrite {
    pub change: ScimChange,
    /// (as read, as it becomes): saved only if nobody changed the request meanwhile.
    pub transitions: Vec<(Request, Request)>,
    /// Tokens to mark revoked (`revoked_at`, `revoked_by` set).
    pub revoked_tokens: Vec<ApiToken>,
    pub events: Vec<NewEvent>,
}

/// Everything provisioned, to build the in-memory directory from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScimSnapshot {
    /// Every live (not deleted) user.
    pub users: Vec<ScimUser>,
    /// The principals of deleted users (none of whom is live again under the same name).
    pub departed: Vec<String>,
    /// Every group, with its members.
    pub groups: Vec<ScimGroup>,
}

pub mod error;
pub mod filter;
pub mod patch;
pub mod resource;
pub mod schema;

pub use error::{ScimError, ScimType};
