use serde::{Deserialize, Serialize};

/// What kind of caller a principal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalKind {
    /// A person.
    User,
    /// A machine that enforces grants: it may call `/v1/check`.
    Service,
}

/// Claims of a CI job's identity token (GitHub Actions names), for policy conditions such as
/// "deploys from main of org/app are automatic".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CiClaims {
    pub repository: String,
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub environment: String,
    pub workflow: String,
    pub actor: String,
}

/// An authenticated caller: who they are and which groups they belong to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub principal: String,
    pub groups: Vec<String>,
    pub kind: PrincipalKind,
    /// Present when the caller authenticated with a CI job's identity token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci: Option<CiClaims>,
}

/// The group whose members administer jitgate.
pub const ADMIN_GROUP: &str = "admins";

impl Identity {
    pub fn user(principal: &str, groups: &[&str]) -> Self {
        Identity {
            principal: principal.to_string(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            kind: PrincipalKind::User,
            ci: None,
        }
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    pub fn is_admin(&self) -> bool {
        self.in_group(ADMIN_GROUP)
    }

    /// Services and admins may ask for access decisions.
    pub fn may_check(&self) -> bool {
        self.kind == PrincipalKind::Service || self.is_admin()
    }
}
