//! Signed grant tokens: every active grant carries a JWT (EdDSA) that a service can verify
//! offline against `/.well-known/jwks.json`. Keys live in the store, so every replica signs
//! with the same key and publishes the same set.

use jitgate_core::keys::SigningKeyRecord;
use jitgate_core::{Grant, Timestamp};
use jitgate_store::{Store, StoreError};
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The `iss` of every grant token.
pub const GRANT_TOKEN_ISSUER: &str = "jitgate";
/// PKCS#8 v1 wrapping of an Ed25519 seed: this fixed prefix, then the 32-byte seed.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("signing key: {0}")]
    Key(String),
}

/// The claims of a grant token.
#[derive(Debug, Serialize)]
struct GrantClaims<'a> {
    iss: &'static str,
    /// The grant's holder.
    sub: &'a str,
    /// The resource: a service accepts only tokens for itself.
    aud: &'a str,
    /// The grant id.
    jti: &'a str,
    resource: &'a str,
    action: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_sha256: Option<&'a str>,
    single_use: bool,
    iat: i64,
    nbf: i64,
    exp: i64,
}

/// The claims of an audit checkpoint: "the log had event `seq` with hash `hash`".
#[derive(Debug, Serialize, Deserialize)]
struct CheckpointClaims {
    iss: String,
    typ: String,
    seq: i64,
    hash: String,
    iat: i64,
}

const CHECKPOINT_TYPE: &str = "jitgate-audit-checkpoint";

struct ActiveKey {
    kid: String,
    key: EncodingKey,
}

/// The active key and every record, as last read from the store.
struct KeyRing {
    active: ActiveKey,
    records: Vec<SigningKeyRecord>,
}

pub struct GrantSigner {
    ring: RwLock<Arc<KeyRing>>,
}

/// A new Ed25519 key as a record to store.
fn generate(now: Timestamp) -> Result<SigningKeyRecord, SigningError> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| SigningError::Key(format!("no randomness: {e}")))?;
    let mut der = ED25519_PKCS8_PREFIX.to_vec();
    der.extend_from_slice(&seed);
    let kid = format!("key_{}", uuid::Uuid::now_v7().simple());
    let key = EncodingKey::from_ed_der(&der);
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::EdDSA).map_err(|e| SigningError::Key(e.to_string()))?;
    jwk.common.key_id = Some(kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    let public_jwk = serde_json::to_string(&jwk).map_err(|e| SigningError::Key(e.to_string()))?;
    Ok(SigningKeyRecord {
        kid,
        algorithm: "EdDSA".into(),
        private_der_hex: hex::encode(der),
        public_jwk,
        created_at: now,
        retired_at: None,
        publish_until: None,
    })
}

fn ring_from(records: Vec<SigningKeyRecord>) -> Result<Option<KeyRing>, SigningError> {
    let Some(active) = records.iter().rev().find(|r| r.is_active()) else {
        return Ok(None);
    };
    let der = hex::decode(&active.private_der_hex)
        .map_err(|e| SigningError::Key(format!("stored key {} is not hex: {e}", active.kid)))?;
    let active = ActiveKey {
        kid: active.kid.clone(),
        key: EncodingKey::from_ed_der(&der),
    };
    Ok(Some(KeyRing { active, records }))
}

impl GrantSigner {
    /// Load the keys, creating the first one if the store has none.
    pub async fn load(store: &dyn Store, now: Timestamp) -> Result<GrantSigner, SigningError> {
        if let Some(ring) = ring_from(store.signing_keys().await?)? {
            return Ok(GrantSigner {
                ring: RwLock::new(Arc::new(ring)),
            });
        }
        let first = generate(now)?;
        store
            .rotate_signing_key(&first, &first.created_event(jitgate_core::audit::SYSTEM_ACTOR))
            .await?;
        let ring = ring_from(store.signing_keys().await?)?
            .ok_or_else(|| SigningError::Key("the first signing key was not stored".into()))?;
        Ok(GrantSigner {
            ring: RwLock::new(Arc::new(ring)),
        })
    }

    /// Make a new key the signer; the old one stays published until its tokens expire.
    pub async fn rotate(&self, store: &dyn Store, actor: &str, now: Timestamp) -> Result<String, SigningError> {
        let next = generate(now)?;
        store.rotate_signing_key(&next, &next.created_event(actor)).await?;
        self.reload(store).await?;
        Ok(next.kid)
    }

    /// Read the keys again (after a rotation here or on another replica).
    pub async fn reload(&self, store: &dyn Store) -> Result<(), SigningError> {
        if let Some(ring) = ring_from(store.signing_keys().await?)? {
            *self.ring.write() = Arc::new(ring);
        }
        Ok(())
    }

    /// The token of a grant for its current window.
    pub fn sign(&self, grant: &Grant) -> Result<String, SigningError> {
        self.sign_claims(GrantClaims {
            iss: GRANT_TOKEN_ISSUER,
            sub: &grant.principal,
            aud: &grant.resource,
            jti: &grant.id,
            resource: &grant.resource,
            action: &grant.action,
            payload_sha256: grant.payload_sha256.as_deref(),
            single_use: grant.single_use,
            iat: grant.starts_at.timestamp(),
            nbf: grant.starts_at.timestamp(),
            exp: grant.expires_at.timestamp(),
        })
    }

    /// The same token from what the check index holds of a live grant: for answers that must
    /// not read the store (forward authentication).
    pub fn sign_live(&self, grant: &jitgate_core::index::LiveGrant) -> Result<String, SigningError> {
        self.sign_claims(GrantClaims {
            iss: GRANT_TOKEN_ISSUER,
            sub: &grant.principal,
            aud: &grant.resource,
            jti: &grant.id,
            resource: &grant.resource,
            action: &grant.action,
            payload_sha256: grant.payload_sha256.as_deref(),
            single_use: grant.single_use,
            iat: grant.starts_at_ms.div_euclid(1000),
            nbf: grant.starts_at_ms.div_euclid(1000),
            exp: grant.expires_at_ms.div_euclid(1000),
        })
    }

    fn sign_claims(&self, claims: GrantClaims<'_>) -> Result<String, SigningError> {
        let ring = self.ring.read().clone();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(ring.active.kid.clone());
        jsonwebtoken::encode(&header, &claims, &ring.active.key).map_err(|e| SigningError::Key(e.to_string()))
    }

    /// Sign a checkpoint of the audit log's head with the active key.
    pub fn sign_checkpoint(&self, seq: i64, hash: &str, at: Timestamp) -> Result<String, SigningError> {
        let ring = self.ring.read().clone();
        let claims = CheckpointClaims {
            iss: GRANT_TOKEN_ISSUER.into(),
            typ: CHECKPOINT_TYPE.into(),
            seq,
            hash: hash.into(),
            iat: at.timestamp(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(ring.active.kid.clone());
        jsonwebtoken::encode(&header, &claims, &ring.active.key).map_err(|e| SigningError::Key(e.to_string()))
    }

    /// Does the checkpoint's signature, by any key jitgate has had (retired ones included),
    /// state exactly its sequence number and hash?
    pub fn verify_checkpoint(&self, checkpoint: &jitgate_core::audit::Checkpoint) -> Result<(), String> {
        verify_checkpoint_with(&self.all_public_keys(), checkpoint)
    }

    /// Every public key jitgate has had, retired ones included: what checks old checkpoints.
    pub fn all_public_keys(&self) -> Vec<Jwk> {
        let ring = self.ring.read().clone();
        ring.records
            .iter()
            .filter_map(|r| serde_json::from_str(&r.public_jwk).ok())
            .collect()
    }

    /// The published keys at `now`: the active one, and retired ones whose tokens may still be
    /// valid.
    pub fn jwks(&self, now: Timestamp) -> serde_json::Value {
        let ring = self.ring.read().clone();
        let keys: Vec<serde_json::Value> = ring
            .records
            .iter()
            .filter(|r| r.is_published(now))
            .filter_map(|r| serde_json::from_str(&r.public_jwk).ok())
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

/// Does the checkpoint's signature, by one of `keys` (found by its key id), hold, and state
/// exactly what the checkpoint shows (see [`checkpoint_agrees_with_its_claims`])? Used by the
/// server and, with keys saved from `GET /v1/audit/keys`, by `jitgate audit verify --file`
/// offline.
pub fn verify_checkpoint_with(keys: &[Jwk], checkpoint: &jitgate_core::audit::Checkpoint) -> Result<(), String> {
    let header = jsonwebtoken::decode_header(&checkpoint.signature).map_err(|e| format!("not a signature: {e}"))?;
    let kid = header.kid.ok_or("the signature names no key")?;
    let jwk = keys
        .iter()
        .find(|k| k.common.key_id.as_deref() == Some(kid.as_str()))
        .ok_or_else(|| format!("signed by key {kid}, which is not among the keys given"))?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| format!("key {kid}: {e}"))?;
    let mut validation = jsonwebtoken::Validation::new(Algorithm::EdDSA);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.set_issuer(&[GRANT_TOKEN_ISSUER]);
    let claims = jsonwebtoken::decode::<CheckpointClaims>(&checkpoint.signature, &key, &validation)
        .map_err(|e| format!("the signature does not verify: {e}"))?
        .claims;
    agrees(&claims, checkpoint)
}

/// Does what the checkpoint's signature states (read without checking the signature, which
/// needs the keys) match what the checkpoint shows: its `seq`, its `hash`, and its `at` to the
/// second (`iat`)? Someone who edits a checkpoint line but not its signature is caught even
/// without the keys; one who re-encodes the signature too is caught with them.
pub fn checkpoint_agrees_with_its_claims(checkpoint: &jitgate_core::audit::Checkpoint) -> Result<(), String> {
    let claims = jsonwebtoken::dangerous::insecure_decode_claims::<CheckpointClaims>(&checkpoint.signature)
        .map_err(|e| format!("the signature is not a checkpoint's: {e}"))?;
    agrees(&claims, checkpoint)
}

/// Every field of the checkpoint that its claims state too must equal them. `at` is shown in
/// milliseconds and signed as `iat` in whole seconds: its second (rounded down) must be `iat`.
fn agrees(claims: &CheckpointClaims, checkpoint: &jitgate_core::audit::Checkpoint) -> Result<(), String> {
    if claims.typ != CHECKPOINT_TYPE {
        return Err(format!(
            "the signature is a {:?}, not a {CHECKPOINT_TYPE:?}",
            claims.typ
        ));
    }
    if claims.seq != checkpoint.seq || claims.hash != checkpoint.hash {
        return Err(format!(
            "the signature is for event {} with another hash, not for this checkpoint",
            claims.seq
        ));
    }
    if claims.iat != checkpoint.at.timestamp() {
        let signed =
            chrono::DateTime::from_timestamp(claims.iat, 0).map_or_else(|| claims.iat.to_string(), |t| t.to_rfc3339());
        return Err(format!(
            "its at ({}) is not the time it was signed at (iat {} = {signed}): the checkpoint was edited",
            checkpoint.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            claims.iat
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jitgate_core::audit::Checkpoint;

    fn signer() -> (GrantSigner, Vec<Jwk>) {
        let now = chrono::Utc::now();
        let record = generate(now).unwrap_or_else(|e| panic!("{e}"));
        let ring = ring_from(vec![record])
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no ring"));
        let signer = GrantSigner {
            ring: RwLock::new(Arc::new(ring)),
        };
        let keys = signer.all_public_keys();
        (signer, keys)
    }

    #[test]
    fn a_checkpoint_must_show_what_its_signature_states() {
        let (signer, keys) = signer();
        let at = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let hash = "ab".repeat(32);
        let signature = signer.sign_checkpoint(7, &hash, at).unwrap_or_else(|e| panic!("{e}"));
        let good = Checkpoint {
            seq: 7,
            hash: hash.clone(),
            at,
            signature,
        };
        assert_eq!(verify_checkpoint_with(&keys, &good), Ok(()));
        assert_eq!(checkpoint_agrees_with_its_claims(&good), Ok(()));

        // `at` moved a day back (or by one second): the signature says otherwise.
        for shift in [chrono::Duration::days(-1), chrono::Duration::seconds(1)] {
            let edited = Checkpoint {
                at: at + shift,
                ..good.clone()
            };
            for result in [
                verify_checkpoint_with(&keys, &edited),
                checkpoint_agrees_with_its_claims(&edited),
            ] {
                let why = result.err().unwrap_or_default();
                assert!(why.contains("is not the time it was signed at"), "{why}");
            }
        }
        // Milliseconds that the whole-second `iat` cannot state are not a disagreement.
        let with_millis = Checkpoint {
            at: at + chrono::Duration::milliseconds(999),
            ..good.clone()
        };
        assert_eq!(verify_checkpoint_with(&keys, &with_millis), Ok(()));

        let other_event = Checkpoint { seq: 8, ..good.clone() };
        assert!(checkpoint_agrees_with_its_claims(&other_event).is_err());
        let other_hash = Checkpoint {
            hash: "cd".repeat(32),
            ..good
        };
        assert!(verify_checkpoint_with(&keys, &other_hash).is_err());
    }
}
