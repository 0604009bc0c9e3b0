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
    /// For an agent (an API token created with `--agent-for PERSON`): the person it acts for.
    /// The agent is its own principal; the person never counts as a reviewer of its requests.
    /// For a CI job (`ci` present, as a GitHub deployment is filed): the person who triggered
    /// it, who likewise never reviews its request; a CI job is no agent (see [`Identity::is_agent`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
}

/// The group whose members administer jitgate.
pub const ADMIN_GROUP: &str = "admins";

/// The group every agent (a caller authenticated by an agent token) is in, so the policy can
/// tell agents from people. People may be put in it too; only agent tokens set `on_behalf_of`.
pub const AGENT_GROUP: &str = "agents";

impl Identity {
    pub fn user(principal: &str, groups: &[&str]) -> Self {
        Identity {
            principal: principal.to_string(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            kind: PrincipalKind::User,
            on_behalf_of: None,
            ci: None,
        }
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    pub fn is_admin(&self) -> bool {
        self.in_group(ADMIN_GROUP)
    }

    /// An agent: it acts for a person (`on_behalf_of`), and never reviews requests. A CI job
    /// whose `on_behalf_of` names who triggered it is not one: the policy's rules for agents
    /// (Cedar's `context.on_behalf_of`, no break-glass) are not for it.
    pub fn is_agent(&self) -> bool {
        self.agent_person().is_some()
    }

    /// The person an agent acts for; `None` for people and CI jobs.
    pub fn agent_person(&self) -> Option<&str> {
        match self.ci {
            Some(_) => None,
            None => self.on_behalf_of.as_deref(),
        }
    }

    /// The refusal an agent gets when it tries to approve, deny or review: it names the
    /// person, who may review with their own credentials (except their agent's requests).
    pub fn agent_may_not_review(&self) -> Option<String> {
        self.agent_person().map(|person| {
            format!(
                "{} is an agent acting for {person}: an agent may not approve, deny or review requests; \
                 a reviewer must decide with their own credentials",
                self.principal
            )
        })
    }

    /// Services and admins may ask for access decisions.
    pub fn may_check(&self) -> bool {
        self.kind == PrincipalKind::Service || self.is_admin()
    }
}

/// What a CI job's principal starts with (`ci:OWNER/REPO`, GitHub Actions and GitHub
/// deployments alike). A request whose requester is one and that has `on_behalf_of` was
/// triggered by that person: it is no agent's request.
pub const CI_PRINCIPAL_PREFIX: &str = "ci:";

/// The longest principal name.
pub const MAX_PRINCIPAL_LEN: usize = 256;

/// The punctuation a principal name may hold besides ASCII letters and digits: enough for
/// user names, email addresses (`first.last+tag@example.com`), issuer prefixes and CI names
/// (`ci:example/app`) and issuers' opaque subjects (`auth0|5f3a...`).
pub const PRINCIPAL_PUNCTUATION: &str = "._-@+:/|";

/// Why `name` cannot be a principal's name, or `None` if it can. Names are ASCII letters,
/// digits and `PRINCIPAL_PUNCTUATION` only: no spaces (so none at the edges), no control,
/// invisible (zero-width, bidirectional) or non-ASCII characters, so two names that look the
/// same on a screen (`admin` and `аdmin` with a Cyrillic `а`, or `admin` and `admin` followed by a
/// zero-width space) are always the same name.
pub fn principal_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("is empty".into());
    }
    if name.len() > MAX_PRINCIPAL_LEN {
        return Some(format!("is longer than {MAX_PRINCIPAL_LEN} bytes"));
    }
    let bad = name
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && !PRINCIPAL_PUNCTUATION.contains(*c))?;
    Some(format!(
        "holds {} (U+{:04X}); principal names are ASCII letters, digits and {PRINCIPAL_PUNCTUATION}",
        if bad.is_whitespace() {
            "a space"
        } else if bad.is_ascii() && !bad.is_control() {
            "a character that is not allowed"
        } else {
            "a control, invisible or non-ASCII character"
        },
        u32::from(bad)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principal_names_are_plain_ascii() {
        for good in [
            "alice",
            "svc-api",
            "okta:first.last+x@example.com",
            "ci:example/app",
            "auth0|5f3a_9",
        ] {
            assert_eq!(principal_name_problem(good), None, "{good}");
        }
        let long = "a".repeat(MAX_PRINCIPAL_LEN + 1);
        for bad in [
            "",
            " admin",
            "admin ",
            "ad min",
            "admin\u{200b}",
            "\u{0430}dmin",
            "admin\u{202e}",
            "admin\t",
            "admin\u{1b}[2K",
            "ad\"min",
            long.as_str(),
        ] {
            assert!(principal_name_problem(bad).is_some(), "{bad:?} accepted");
        }
        let why = principal_name_problem("\u{0430}dmin").unwrap_or_default();
        assert!(why.contains("U+0430"), "{why}");
    }
}
