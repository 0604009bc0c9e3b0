//! What callers give the use cases, as every edge hands it over: still unparsed where parsing
//! can fail, so that a refused input is refused by the service (and counted against the
//! caller's limits) the same way whichever edge it came through.

use crate::error::{Limit, ServiceError};
use jitgate_core::{parse_duration, Ask, DurationSecs};
use serde::Deserialize;

/// A duration as a string (`90s`, `30m`, `2h`, `1h30m`) or a whole number of seconds.
#[derive(Debug, Clone)]
pub enum DurationInput {
    Seconds(u64),
    Text(String),
}

impl DurationInput {
    /// The duration, or an error naming `field`.
    pub fn parse(&self, field: &str) -> Result<DurationSecs, ServiceError> {
        let parsed = match self {
            DurationInput::Seconds(s) => parse_duration(&s.to_string()),
            DurationInput::Text(t) => parse_duration(t),
        };
        parsed.map_err(|m| ServiceError::invalid_field(field, m))
    }
}

impl<'de> Deserialize<'de> for DurationInput {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::String(text) => Ok(DurationInput::Text(text)),
            serde_json::Value::Number(n) => whole_number(&n)
                .map(DurationInput::Seconds)
                .ok_or_else(|| serde::de::Error::custom(format!("{n} is not a whole number of seconds"))),
            other => Err(serde::de::Error::custom(format!(
                "{other} is not a duration; write a string like \"30m\" or a whole number of seconds"
            ))),
        }
    }
}

/// A JSON number that is a whole number (`30` or `30.0`: JSON Schema's `integer` is both).
pub fn whole_number<T: TryFrom<i64> + TryFrom<u64>>(n: &serde_json::Number) -> Option<T> {
    if let Some(u) = n.as_u64() {
        return T::try_from(u).ok();
    }
    if let Some(i) = n.as_i64() {
        return T::try_from(i).ok();
    }
    let f = n.as_f64()?;
    // Exactly representable whole numbers only; the casts below cannot lose anything then.
    if f.fract() != 0.0 || f.abs() > 9_007_199_254_740_992.0 {
        return None;
    }
    if f >= 0.0 {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        T::try_from(f as u64).ok()
    } else {
        #[allow(clippy::cast_possible_truncation)]
        T::try_from(f as i64).ok()
    }
}

/// A request to file.
#[derive(Debug, Clone)]
pub struct NewRequest {
    pub resource: String,
    pub action: String,
    /// Without it, the policy's default.
    pub duration: Option<DurationInput>,
    pub reason: String,
    /// For action-bound workflows: the exact command, statement or artifact digest.
    pub payload: Option<String>,
    pub break_glass: bool,
    /// Several things at once (1 to 20), instead of `resource`, `action` and `payload`.
    pub items: Option<Vec<NewItem>>,
}

/// One thing a multi-item request asks for.
#[derive(Debug, Clone)]
pub struct NewItem {
    pub resource: String,
    pub action: String,
    pub payload: Option<String>,
}

impl NewRequest {
    /// What the policy judges: the request with its duration parsed.
    pub fn ask(&self) -> Result<Ask<'_>, ServiceError> {
        Ok(Ask {
            resource: &self.resource,
            action: &self.action,
            duration: self.duration.as_ref().map(|d| d.parse("duration")).transpose()?,
            reason: &self.reason,
            payload: self.payload.as_deref(),
            break_glass: self.break_glass,
        })
    }
}

/// More time for a grant, counted from its current end.
#[derive(Debug, Clone)]
pub struct Extension {
    pub duration: DurationInput,
    pub reason: String,
}

/// The longest principal, group or label in a token.
pub const MAX_TOKEN_FIELD: usize = 256;
/// The most groups one token may carry.
pub const MAX_TOKEN_GROUPS: usize = 64;

/// An API token to issue.
#[derive(Debug, Clone, Default)]
pub struct NewToken {
    pub principal: String,
    pub groups: Vec<String>,
    /// How long it is valid; without it, until revoked.
    pub ttl: Option<DurationInput>,
    pub label: Option<String>,
    /// A service token may call `/v1/check`.
    pub service: bool,
    /// An agent token: the person (a principal name) the agent acts for.
    pub agent_for: Option<String>,
    /// A provisioning token: it may call `/scim/v2` and nothing else.
    pub scim: bool,
}

fn name_ok(text: &str) -> bool {
    let t = text.trim();
    !t.is_empty() && t.len() <= MAX_TOKEN_FIELD && !t.chars().any(char::is_control)
}

impl NewToken {
    /// An agent token names a person by a valid principal name (no look-alikes), other than
    /// the agent itself; it is no service token, and its own groups give no administrative
    /// role: an agent gets what its person may request, never the power to run jitgate.
    fn validate_agent(&self, person: &str) -> Result<(), ServiceError> {
        if let Some(problem) = jitgate_core::principal_name_problem(person) {
            return Err(ServiceError::invalid(format!(
                "agent_for: '{}' {problem}",
                person.escape_debug()
            )));
        }
        if let Some(problem) = jitgate_core::principal_name_problem(self.principal.trim()) {
            return Err(ServiceError::invalid(format!(
                "principal: an agent's name must be a valid principal name: it {problem}"
            )));
        }
        if person == self.principal.trim() {
            return Err(ServiceError::invalid(format!(
                "agent_for: the agent must be a principal of its own, not {person} itself; \
                 name the agent (for example claude-{person})"
            )));
        }
        if self.service {
            return Err(ServiceError::invalid(
                "agent_for: a service token cannot act for a person; drop --service (or --agent-for)",
            ));
        }
        let roles = [jitgate_core::identity::ADMIN_GROUP, jitgate_core::authz::AUDITOR_GROUP];
        if let Some(group) = self.groups.iter().find(|g| roles.contains(&g.trim())) {
            return Err(ServiceError::invalid(format!(
                "groups: an agent token may not carry the group {group}: agents never get administrative roles"
            )));
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ServiceError> {
        if !name_ok(&self.principal) {
            return Err(ServiceError::invalid(format!(
                "principal: must be 1 to {MAX_TOKEN_FIELD} printable characters"
            )));
        }
        if self.groups.len() > MAX_TOKEN_GROUPS {
            return Err(ServiceError::OverLimit(
                Limit::ListSize,
                format!("groups: {} groups; give at most {MAX_TOKEN_GROUPS}", self.groups.len()),
            ));
        }
        if let Some(bad) = self.groups.iter().find(|g| !name_ok(g) || g.contains(',')) {
            return Err(ServiceError::invalid(format!(
                "groups: '{bad}' is not a group name; use 1 to {MAX_TOKEN_FIELD} printable characters, no commas"
            )));
        }
        if let Some(person) = &self.agent_for {
            self.validate_agent(person)?;
        }
        if self.scim {
            // A provisioning client is no person, service or agent: it gets no groups and
            // never calls the API, so nothing it could carry would mean anything.
            let other = [
                (!self.groups.is_empty(), "--groups"),
                (self.service, "--service"),
                (self.agent_for.is_some(), "--agent-for"),
            ];
            if let Some((_, flag)) = other.iter().find(|(given, _)| *given) {
                return Err(ServiceError::invalid(format!(
                    "scim: a SCIM provisioning token takes no {flag}: it may call /scim/v2 and nothing else"
                )));
            }
            if let Some(problem) = jitgate_core::principal_name_problem(self.principal.trim()) {
                return Err(ServiceError::invalid(format!(
                    "principal: a provisioning client's name {problem}"
                )));
            }
        }
        if self
            .label
            .as_ref()
            .is_some_and(|l| l.len() > MAX_TOKEN_FIELD || l.chars().any(char::is_control))
        {
            return Err(ServiceError::invalid(format!(
                "label: must be at most {MAX_TOKEN_FIELD} printable characters"
            )));
        }
        Ok(())
    }
}
