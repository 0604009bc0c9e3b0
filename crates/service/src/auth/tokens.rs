//! The table bearer tokens are looked up in: the directory's static tokens and the API tokens
//! admins issue, keyed by SHA-256. Looking up by the hash of the whole token means an unknown
//! token and a wrong one take the same path: there is no id to find first and no secret to
//! compare after, so timing tells a guesser nothing.

use crate::directory::Directory;
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
    /// Why the token's principal (or an agent's person) may not authenticate: deactivated or
    /// deleted in the provisioned directory. Kept in the table to say so.
    blocked: Option<String>,
}

/// Why a bearer token was refused, for the log only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    Unknown,
    Expired,
    /// The principal is blocked in the provisioned directory (`TokenTable::blocked_reason`).
    Blocked,
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

/// [`resolve`], and the provisioned directory: a principal `directory.toml` does not name gets
/// the groups the identity provider gives them (active users only), and a deactivated or
/// deleted one is refused (`Err` says so). `directory.toml` wins: a principal it names is
/// neither blocked nor given groups by the identity provider; nor is a service
/// (`PrincipalKind::Service`: a service token, a service of the file).
pub fn resolve_with(policy: &Policy, directory: &Directory, identity: Identity) -> Result<Identity, String> {
    let mut identity = resolve(policy, identity);
    if identity.kind != PrincipalKind::Service && policy.rules().principal(&identity.principal).is_none() {
        if let Some(blocked) = directory.blocked(&identity.principal) {
            return Err(blocked.told(&identity.principal));
        }
        let groups = directory.groups_of(&identity.principal);
        add_groups(&mut identity, groups, &[]);
    }
    Ok(identity)
}

/// [`resolve_agent`], and the provisioned directory: the agent inherits its person's
/// provisioned groups (never [`NOT_INHERITED`]), and is refused when its person (or its own
/// principal) is blocked.
pub fn resolve_agent_with(
    policy: &Policy,
    directory: &Directory,
    identity: Identity,
    person: &str,
) -> Result<Identity, String> {
    let mut agent = resolve_agent(policy, identity, person);
    if policy.rules().principal(&agent.principal).is_none() {
        if let Some(blocked) = directory.blocked(&agent.principal) {
            return Err(blocked.told(&agent.principal));
        }
    }
    if policy.rules().principal(person).is_none() {
        if let Some(blocked) = directory.blocked(person) {
            return Err(blocked.told_agent(&agent.principal, person));
        }
        add_groups(&mut agent, directory.groups_of(person), &NOT_INHERITED);
    }
    Ok(agent)
}

fn add_groups(identity: &mut Identity, groups: Vec<String>, except: &[&str]) {
    for group in groups {
        // Reserved names never come from an identity provider (refused at provisioning);
        // checked again here, case-insensitively, whatever the store holds.
        if jitgate_policy::is_reserved_group(&group) || except.contains(&group.as_str()) {
            continue;
        }
        if !identity.in_group(&group) {
            identity.groups.push(group);
        }
    }
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
        Self::build_with(policy, &Directory::default(), api_tokens)
    }

    /// [`TokenTable::build`], with the provisioned directory's groups, and its blocked
    /// principals' tokens (revoked or not) kept to be refused with the reason. Provisioning
    /// tokens (`scim`) are never API credentials.
    pub fn build_with(policy: &Policy, directory: &Directory, api_tokens: &[ApiToken]) -> Self {
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
                            blocked: None,
                        },
                    )
                })
            })
            .collect();
        // Provisioning tokens are never API identities: they have a table of their own.
        for token in api_tokens.iter().filter(|t| !t.scim) {
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
            let resolved = match &token.on_behalf_of {
                Some(person) => resolve_agent_with(policy, directory, identity.clone(), person),
                None => resolve_with(policy, directory, identity.clone()),
            };
            let (identity, blocked) = match resolved {
                _ if token.revoked_at.is_some() && by_hash.contains_key(&hash) => continue,
                Ok(_) if token.revoked_at.is_some() => continue,
                Ok(identity) => (identity, None),
                Err(why) => (identity, Some(why)),
            };
            by_hash.insert(
                hash,
                Entry {
                    identity,
                    expires_at: token.expires_at,
                    token_id: Some(token.id.clone()),
                    blocked,
                },
            );
        }
        TokenTable { by_hash }
    }

    /// The identity a token stands for at `now`.
    pub fn lookup(&self, token: &str, now: Timestamp) -> Result<&Identity, TokenRefusal> {
        let entry = self.by_hash.get(&token_hash(token)).ok_or(TokenRefusal::Unknown)?;
        if entry.blocked.is_some() {
            return Err(TokenRefusal::Blocked);
        }
        match entry.expires_at {
            Some(end) if end <= now => Err(TokenRefusal::Expired),
            _ => Ok(&entry.identity),
        }
    }

    /// Why a token's principal is blocked, to tell the caller.
    pub fn blocked_reason(&self, token: &str) -> Option<&str> {
        self.by_hash.get(&token_hash(token))?.blocked.as_deref()
    }

    /// The API token id (`None` for a static token of the directory) and expiry behind a token
    /// the table holds, for `GET /v1/whoami`.
    pub fn describe(&self, token: &str) -> Option<(Option<&str>, Option<Timestamp>)> {
        self.by_hash
            .get(&token_hash(token))
            .map(|entry| (entry.token_id.as_deref(), entry.expires_at))
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
