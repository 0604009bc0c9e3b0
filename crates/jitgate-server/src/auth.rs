//! Bearer-token authentication. Tokens are looked up by their SHA-256, so the table never
//! holds a token in clear and lookup time does not depend on how much of a guess matched.

use crate::app::App;
use crate::ApiError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use jitgate_core::Identity;
use jitgate_policy::Policy;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

/// Identities by token hash.
#[derive(Debug, Default)]
pub struct TokenTable {
    by_hash: HashMap<[u8; 32], Identity>,
}

pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl TokenTable {
    /// The static tokens of the policy's directory file.
    pub fn from_policy(policy: &Policy) -> Self {
        let by_hash = policy
            .principals()
            .filter_map(|e| e.token.as_deref().map(|t| (token_hash(t), e.identity.clone())))
            .collect();
        TokenTable { by_hash }
    }

    pub fn lookup(&self, token: &str) -> Option<&Identity> {
        self.by_hash.get(&token_hash(token))
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller(pub Identity);

/// A caller allowed to ask for access decisions (a service or an admin). Obtainable only
/// through this extractor, so a handler that takes one cannot forget the check.
#[derive(Debug, Clone)]
pub struct Checker(pub Identity);

/// A caller allowed to read the audit log (admins and auditors).
#[derive(Debug, Clone)]
pub struct AuditReader(pub Identity);

pub const AUDITOR_GROUP: &str = "auditors";

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::Unauthenticated("send a bearer token: Authorization: Bearer TOKEN".into()))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 4096)
            .ok_or_else(|| ApiError::Unauthenticated("the Authorization header must be 'Bearer TOKEN'".into()))?;
        app.authenticate(token)
            .map(Caller)
            .ok_or_else(|| ApiError::Unauthenticated("the bearer token is not valid".into()))
    }
}

impl FromRequestParts<Arc<App>> for Checker {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let Caller(identity) = Caller::from_request_parts(parts, app).await?;
        if identity.may_check() {
            Ok(Checker(identity))
        } else {
            Err(ApiError::Forbidden(format!(
                "{} may not ask for access decisions: only service identities and admins may",
                identity.principal
            )))
        }
    }
}

impl FromRequestParts<Arc<App>> for AuditReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let Caller(identity) = Caller::from_request_parts(parts, app).await?;
        if identity.is_admin() || identity.in_group(AUDITOR_GROUP) {
            Ok(AuditReader(identity))
        } else {
            Err(ApiError::Forbidden(format!(
                "{} may not read the audit log: only admins and auditors may",
                identity.principal
            )))
        }
    }
}
