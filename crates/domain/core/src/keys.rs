//! The keys that sign grant tokens. One is active and signs; after a rotation the previous
//! one stays published until the last token it signed has expired, so verifiers never see a
//! valid token whose key they cannot fetch, and a retired key stops verifying anything once
//! its tokens are gone.

use crate::audit::{EventKind, NewEvent};
use crate::Timestamp;
use serde::{Deserialize, Serialize};

/// What the audit log names as the resource of key events.
pub const KEYS_RESOURCE: &str = "jitgate:signing-keys";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeyRecord {
    /// The key id JWTs name in their header.
    pub kid: String,
    /// `EdDSA`.
    pub algorithm: String,
    /// The private key, PKCS#8 DER in hex.
    pub private_der_hex: String,
    /// The public key as a JWK (JSON text), as `/.well-known/jwks.json` serves it.
    pub public_jwk: String,
    pub created_at: Timestamp,
    /// When a newer key took over signing.
    pub retired_at: Option<Timestamp>,
    /// A retired key is published until then: the end of the last grant it signed.
    pub publish_until: Option<Timestamp>,
}

impl SigningKeyRecord {
    pub fn is_active(&self) -> bool {
        self.retired_at.is_none()
    }

    /// Is the key in the published key set at `now`?
    pub fn is_published(&self, now: Timestamp) -> bool {
        self.retired_at.is_none() || self.publish_until.is_some_and(|until| now < until)
    }

    /// The audit event of its creation by `actor` (`system` for the first key).
    pub fn created_event(&self, actor: &str) -> NewEvent {
        NewEvent {
            kind: EventKind::KeyRotated,
            at: self.created_at,
            actor: actor.to_string(),
            subject: actor.to_string(),
            request_id: None,
            grant_id: None,
            resource: KEYS_RESOURCE.to_string(),
            action: "rotate".to_string(),
            comment: Some(format!("new signing key {} ({})", self.kid, self.algorithm)),
        }
    }
}
