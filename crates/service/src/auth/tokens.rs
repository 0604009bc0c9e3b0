//! The table bearer tokens are looked up in: the directory's static tokens and the API tokens
//! admins issue, keyed by SHA-256. Looking up by the hash of the whole token means an unknown
//! token and a wrong one take the same path: there is no id to find first and no secret to
//! compare after, so timing tells a guesser nothing.

use jitgate_core::token::{token_hash, TOKEN_PREFIX};
use jitgate_core::{ApiToken, Identity, PrincipalKind, Timestamp};
use jitgate_policy::Policy;
use std::collections::HashMap;

#[derive(Debug, Clone)]
struct Entry {
    identity: Identity,
    expires_at: Option<Timestamp>,
    /// The API token's id; `None` for the directory's static tokens.
    token_id: Option<String>,
}

/// Why a bearer token was refused, for the log only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    Unknown,
    Expired,
}

/// Identities by token hash.
#[derive(Debug, Default)]
pub struct TokenTable {
    by_hash: HashMap<[u8; 32], Entry>,
}

fn parse_hash(hex_text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(hex_text).ok()?;
    bytes.try_into().ok()
}

/// The identity a token's principal has: the groups the token names plus those the directory
/// gives the principal now, so a change to the directory reaches existing tokens.
pub fn resolve(policy: &Policy, mut identity: Identity) -> Identity {
    if let Some(entry) = policy.rules().principal(&identity.principal) {
        for group in &entry.identity.groups {
            if !identity.in_group(group) {
                identity.groups.push(group.clone());
            }
        }
        if entry.identity.kind == PrincipalKind::Service {
            identity.kind = PrincipalKind::Service;
        }
    }
    identity
}

/// The groups of a person that an agent acting for them never inherits: the roles that run
/// jitgate (admins) or read everything (auditors). The agent may request what its person may,
/// nothing more.
const NOT_INHERITED: [&str; 2] = [jitgate_core::identity::ADMIN_GROUP, jitgate_core::authz::AUDITOR_GROUP];

/// An agent's identity: its own (token groups and the directory's groups of the agent's
/// principal, as [`resolve`] gives), plus the directory's groups of its person, plus the group
/// `agents`, never any of [`NOT_INHERITED`] from any source (a later directory edit naming the
/// agent's principal in `admins` does not make it an admin). Always a user, never a service,
/// whatever its person is: it files requests, it does not enforce them.
pub fn resolve_agent(policy: &Policy, identity: Identity, person: &str) -> Identity {
    let mut agent = resolve(policy, identity);
    agent.groups.retain(|g| !NOT_INHERITED.contains(&g.as_str()));
    agent.kind = PrincipalKind::User;
    agent.on_behalf_of = Some(person.to_string());
    if let Some(entry) = policy.rules().principal(person) {
        for group in &entry.identity.groups {
            if !NOT_INHERITED.contains(&group.as_str()) && !agent.in_group(group) {
                agent.groups.push(group.clone());
            }
        }
    }
    if !agent.in_group(jitgate_core::identity::AGENT_GROUP) {
        agent.groups.push(jitgate_core::identity::AGENT_GROUP.to_string());
    }
    agent
}

impl TokenTable {
    /// The directory's static tokens and every API token that is not revoked.
    pub fn build(policy: &Policy, api_tokens: &[ApiToken]) -> Self {
        let mut by_hash: HashMap<[u8; 32], Entry> = policy
            .principals()
            .filter_map(|e| {
                e.token_hash.map(|hash| {
                    (
                        hash,
                        Entry {
                            identity: e.identity.clone(),
                            expires_at: None,
                            token_id: None,
                        },
                    )
                })
            })
            .collect();
        // Provisioning tokens are never API identities: they have a table of their own.
        for token in api_tokens.iter().filter(|t| t.revoked_at.is_none() && !t.scim) {
            let Some(hash) = parse_hash(&token.hash) else {
                tracing::error!(token = %token.id, "stored token hash is not 32 bytes of hex; token ignored");
                continue;
            };
            let identity = Identity {
                principal: token.principal.clone(),
                groups: token.groups.clone(),
                kind: if token.service {
                    PrincipalKind::Service
                } else {
                    PrincipalKind::User
                },
                on_behalf_of: None,
                ci: None,
            };
            let identity = match &token.on_behalf_of {
                Some(person) => resolve_agent(policy, identity, person),
                None => resolve(policy, identity),
            };
            by_hash.insert(
                hash,
                Entry {
                    identity,
                    expires_at: token.expires_at,
                    token_id: Some(token.id.clone()),
                },
            );
        }
        TokenTable { by_hash }
    }

    /// The identity a token stands for at `now`.
    pub fn lookup(&self, token: &str, now: Timestamp) -> Result<&Identity, TokenRefusal> {
        let entry = self.by_hash.get(&token_hash(token)).ok_or(TokenRefusal::Unknown)?;
        match entry.expires_at {
            Some(end) if end <= now => Err(TokenRefusal::Expired),
            _ => Ok(&entry.identity),
        }
    }

    /// The API token id behind a token, for the log.
    pub fn token_id(&self, token: &str) -> Option<&str> {
        self.by_hash.get(&token_hash(token))?.token_id.as_deref()
    }
}

/// A new token: `jgt_` and 256 random bits in hex.
pub fn generate() -> Result<String, getrandom::Error> {
    let mut secret = [0u8; 32];
    getrandom::getrandom(&mut secret)?;
    Ok(format!("{TOKEN_PREFIX}{}", hex::encode(secret)))
}

/// The stored form of a token's hash.
pub fn hash_hex(token: &str) -> String {
    hex::encode(token_hash(token))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A directory edit that puts an agent's own principal in `admins` or `auditors` (the name
    /// was free when the token was made) gives the agent neither role.
    #[test]
    fn an_agent_never_holds_an_administrative_role_from_any_source() {
        let directory = r#"
[[principal]]
name = "alice"
groups = ["dev", "admins"]
[[principal]]
name = "claude-alice"
groups = ["admins", "auditors", "ops"]
"#;
        let workflows =
            "[[workflow]]\nresource = \"x\"\naction = \"read\"\nrequesters = [\"dev\"]\nauto_approve = true\n";
        let policy = Policy::from_texts(directory, workflows, None, &[]).unwrap();
        let mut token = Identity::user("claude-alice", &["auditors", "tools"]);
        token.kind = PrincipalKind::Service;
        let agent = resolve_agent(&policy, token, "alice");
        let mut groups = agent.groups.clone();
        groups.sort();
        assert_eq!(groups, ["agents", "dev", "ops", "tools"]);
        assert_eq!(agent.kind, PrincipalKind::User);
        assert_eq!(agent.on_behalf_of.as_deref(), Some("alice"));
    }
}
