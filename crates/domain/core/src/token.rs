//! API tokens: bearer credentials an admin issues to a principal. Only a hash is ever kept;
//! the token itself is shown once, when it is created.

use crate::audit::{EventKind, NewEvent};
use crate::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The prefix of every token jitgate issues, so that secret scanners can recognise one.
pub const TOKEN_PREFIX: &str = "jgt_";

/// What the audit log names as the resource of token events.
pub const TOKENS_RESOURCE: &str = "jitgate:tokens";

/// An issued token, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    pub id: String,
    /// SHA-256 of the token, hex. Tokens are 256 random bits, so a plain hash cannot be
    /// reversed or guessed; a slow hash would buy nothing and cost every request.
    pub hash: String,
    pub principal: String,
    pub groups: Vec<String>,
    /// A service token may call `/v1/check`.
    pub service: bool,
    /// An agent token (`--agent-for PERSON`): the person the agent acts for. The agent gets
    /// what its person may request, never their administrative roles, and never reviews.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
    /// A provisioning token (`--scim`): it may call `/scim/v2` and nothing else, and it is
    /// never looked up by the API's authentication.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub scim: bool,
    pub label: Option<String>,
    pub created_by: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub revoked_by: Option<String>,
}

/// Where a token stands at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenStatus {
    Active,
    Expired,
    Revoked,
}

impl TokenStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenStatus::Active => "active",
            TokenStatus::Expired => "expired",
            TokenStatus::Revoked => "revoked",
        }
    }
}

/// The hash a token is stored and looked up by.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl ApiToken {
    pub fn status(&self, now: Timestamp) -> TokenStatus {
        if self.revoked_at.is_some() {
            TokenStatus::Revoked
        } else if self.expires_at.is_some_and(|e| e <= now) {
            TokenStatus::Expired
        } else {
            TokenStatus::Active
        }
    }

    fn event(&self, kind: EventKind, actor: &str, at: Timestamp) -> NewEvent {
        let mut detail = format!("token {}", self.id);
        if let Some(person) = &self.on_behalf_of {
            detail.push_str(&format!(" for an agent acting for {person}"));
        }
        if let Some(label) = &self.label {
            detail.push_str(&format!(" ({label})"));
        }
        NewEvent {
            kind,
            at,
            actor: actor.to_string(),
            subject: self.principal.clone(),
            request_id: None,
            grant_id: None,
            resource: TOKENS_RESOURCE.to_string(),
            action: match kind {
                EventKind::TokenRevoked => "revoke".to_string(),
                _ => "create".to_string(),
            },
            comment: Some(detail),
        }
    }

    /// The audit event of its creation.
    pub fn created_event(&self) -> NewEvent {
        self.event(EventKind::TokenCreated, &self.created_by, self.created_at)
    }

    /// Revoke it: the token as revoked, and the audit event.
    pub fn revoke(&self, by: &str, at: Timestamp) -> (ApiToken, NewEvent) {
        let revoked = ApiToken {
            revoked_at: Some(at),
            revoked_by: Some(by.to_string()),
            ..self.clone()
        };
        let event = revoked.event(EventKind::TokenRevoked, by, at);
        (revoked, event)
    }
}
