//! The table provisioning tokens (`jitgate token create --scim`) are looked up in: a table of
//! its own, so a SCIM token is never an identity anywhere else, and nothing but a SCIM token
//! is one on `/scim/v2`. Keyed by SHA-256 of the whole token, as the API's table.

use super::tokens::TokenRefusal;
use jitgate_core::token::token_hash;
use jitgate_core::{ApiToken, Timestamp};
use std::collections::HashMap;

#[derive(Debug, Clone)]
struct Entry {
    principal: String,
    expires_at: Option<Timestamp>,
}

/// Provisioning clients by token hash.
#[derive(Debug, Default)]
pub struct ScimTokenTable {
    by_hash: HashMap<[u8; 32], Entry>,
}

impl ScimTokenTable {
    /// Every SCIM token that is not revoked.
    pub fn build(tokens: &[ApiToken]) -> Self {
        let by_hash = tokens
            .iter()
            .filter(|t| t.scim && t.revoked_at.is_none())
            .filter_map(|t| {
                let hash: [u8; 32] = hex::decode(&t.hash).ok()?.try_into().ok()?;
                Some((
                    hash,
                    Entry {
                        principal: t.principal.clone(),
                        expires_at: t.expires_at,
                    },
                ))
            })
            .collect();
        ScimTokenTable { by_hash }
    }

    /// The provisioning client's principal a token stands for at `now`.
    pub fn lookup(&self, token: &str, now: Timestamp) -> Result<&str, TokenRefusal> {
        let entry = self.by_hash.get(&token_hash(token)).ok_or(TokenRefusal::Unknown)?;
        match entry.expires_at {
            Some(end) if end <= now => Err(TokenRefusal::Expired),
            _ => Ok(&entry.principal),
        }
    }

    /// Is this a provisioning token (to tell its holder where it may be used)?
    pub fn holds(&self, token: &str) -> bool {
        self.by_hash.contains_key(&token_hash(token))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::auth::tokens::{hash_hex, TokenTable};

    fn token(secret: &str, scim: bool, revoked: bool) -> ApiToken {
        ApiToken {
            id: format!("tok_{secret}"),
            hash: hash_hex(secret),
            principal: "scim-okta".into(),
            groups: vec![],
            service: false,
            on_behalf_of: None,
            scim,
            label: None,
            created_by: "admin".into(),
            created_at: Timestamp::UNIX_EPOCH,
            expires_at: None,
            revoked_at: revoked.then_some(Timestamp::UNIX_EPOCH),
            revoked_by: None,
        }
    }

    #[test]
    fn a_scim_token_is_in_this_table_only_and_an_api_token_never() {
        let tokens = [
            token("jgt_scim", true, false),
            token("jgt_api", false, false),
            token("jgt_old", true, true),
        ];
        let scim = ScimTokenTable::build(&tokens);
        let now = Timestamp::UNIX_EPOCH;
        assert_eq!(scim.lookup("jgt_scim", now), Ok("scim-okta"));
        assert_eq!(scim.lookup("jgt_api", now), Err(TokenRefusal::Unknown));
        assert_eq!(scim.lookup("jgt_old", now), Err(TokenRefusal::Unknown));
        let policy = jitgate_policy::Policy::from_texts("", "", None, &[]).unwrap();
        let api = TokenTable::build(&policy, &tokens);
        assert_eq!(api.lookup("jgt_scim", now).err(), Some(TokenRefusal::Unknown));
        assert!(api.lookup("jgt_api", now).is_ok());
    }
}
