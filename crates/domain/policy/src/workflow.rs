//! The TOML half of the policy directory: who exists and in which groups (`directory.toml`),
//! and the workflow of each resource and action (`workflows.toml`): approval steps and limits.
//! Parsing is pure; the Cedar half lives in `cedar.rs`.

use jitgate_core::admission::{Ask, MAX_PAYLOAD_LEN, MAX_REASON_LEN};
use jitgate_core::text::{self, Lines};
use jitgate_core::{parse_duration, DomainError, DurationSecs, Identity, PrincipalKind, Step};
use regex::Regex;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

pub const DIRECTORY_FILE: &str = "directory.toml";
pub const WORKFLOWS_FILE: &str = "workflows.toml";

/// Fallbacks when a workflow names no limits of its own.
pub const DEFAULT_PENDING_TTL: DurationSecs = DurationSecs(3600);
pub const DEFAULT_MAX_DURATION: DurationSecs = DurationSecs(3600);

/// A problem in a policy file, located so an editor can jump to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

/// A known principal from the directory file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryEntry {
    pub identity: Identity,
    /// The SHA-256 of the principal's static bearer token, from `token` (demos) or
    /// `token_sha256` (the token itself kept out of the policy repository).
    pub token_hash: Option<[u8; 32]>,
    /// Who approves this principal's requests in workflows with a manager step.
    pub manager: Option<String>,
    /// The principal's Slack user id (`U0123ABCD`): approving from Slack acts as this
    /// principal, and notifications mention them.
    pub slack_user: Option<String>,
}

/// Break-glass: who may take access at once, for how long at most.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakGlass {
    pub groups: Vec<String>,
    pub max_duration: DurationSecs,
    pub alert: Option<String>,
    /// Groups one of whose members must review each use afterwards.
    pub reviewers: Vec<String>,
}

/// The rules for one resource and action.
#[derive(Debug, Clone)]
pub struct Workflow {
    pub resource: String,
    pub action: String,
    pub description: Option<String>,
    /// Groups whose members may file requests.
    pub requesters: Vec<String>,
    /// Approval steps; all must pass. Empty together with `auto_approve` means automatic.
    pub steps: Vec<Step>,
    pub auto_approve: bool,
    pub reason_required: bool,
    pub ticket_pattern: Option<Regex>,
    pub default_duration: DurationSecs,
    pub max_duration: DurationSecs,
    pub pending_ttl: DurationSecs,
    pub action_bound: bool,
    pub single_use: bool,
    pub break_glass: Option<BreakGlass>,
    /// Whether, and how often, an active grant may be extended.
    pub extension: Option<Extension>,
    /// Grants of this workflow may be turned into short-lived OpenSSH user certificates.
    pub ssh: Option<SshAccess>,
    /// Backup reviewers for requests nobody decides in time.
    pub escalation: Option<jitgate_core::Escalation>,
    /// Grants of this workflow become temporary PostgreSQL login roles (by a `postgres`
    /// provider) that are members of these database roles.
    pub postgres: Option<PostgresAccess>,
    /// Providers (configured in the server's config file) that provision each grant in a
    /// target system and deprovision it at its end.
    pub providers: Vec<String>,
}

/// How a grant becomes an OpenSSH user certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshAccess {
    /// Addresses (CIDR) the certificate may be used from; empty means anywhere.
    pub source_address: Vec<String>,
}

/// How a grant becomes a temporary PostgreSQL login role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresAccess {
    /// Existing database roles the login role is made a member of (its privileges).
    pub roles: Vec<String>,
}

/// The longest role name PostgreSQL keeps (NAMEDATALEN - 1 bytes).
const MAX_PG_ROLE_LEN: usize = 63;

/// Extension of an active grant by its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// How many times one grant may be extended.
    pub max_times: u32,
    /// If true, extending is not self-service: the holder files a new request, which goes
    /// through the approvals again (its grant overlaps the current one, so access never breaks).
    pub requires_approval: bool,
}

/// The parsed, validated TOML rules.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    principals: BTreeMap<String, DirectoryEntry>,
    workflows: HashMap<(String, String), Workflow>,
    /// Resource name to its actions, for error messages and listings.
    resources: BTreeMap<String, BTreeSet<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectoryFile {
    #[serde(default)]
    principal: Vec<toml::Spanned<PrincipalSpec>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalSpec {
    name: String,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    service: bool,
    token: Option<String>,
    token_sha256: Option<String>,
    manager: Option<String>,
    slack_user: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkflowsFile {
    #[serde(default)]
    defaults: DefaultsSpec,
    #[serde(default)]
    workflow: Vec<toml::Spanned<WorkflowSpec>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DefaultsSpec {
    pending_ttl: Option<String>,
    max_duration: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkflowSpec {
    resource: String,
    action: String,
    description: Option<String>,
    #[serde(default)]
    requesters: Vec<String>,
    #[serde(default)]
    steps: Vec<StepSpec>,
    #[serde(default)]
    auto_approve: bool,
    #[serde(default)]
    reason_required: bool,
    ticket_pattern: Option<String>,
    default_duration: Option<String>,
    max_duration: Option<String>,
    pending_ttl: Option<String>,
    #[serde(default)]
    action_bound: bool,
    single_use: Option<bool>,
    break_glass: Option<BreakGlassSpec>,
    extension: Option<ExtensionSpec>,
    ssh: Option<SshSpec>,
    postgres: Option<PostgresSpec>,
    escalation: Option<EscalationSpec>,
    #[serde(default)]
    providers: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EscalationSpec {
    after: String,
    groups: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostgresSpec {
    roles: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SshSpec {
    #[serde(default)]
    source_address: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtensionSpec {
    max_times: u32,
    #[serde(default)]
    requires_approval: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepSpec {
    group: Option<String>,
    /// The requester's manager, as the directory names them, must approve.
    #[serde(default)]
    manager: bool,
    approvals: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BreakGlassSpec {
    groups: Vec<String>,
    max_duration: String,
    /// Text recorded with the `breakglass.raised` alert.
    alert: Option<String>,
    /// Who must review it afterwards; default: the workflow's approver groups.
    reviewers: Option<Vec<String>>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

fn toml_error(file: &str, text: &str, err: &toml::de::Error) -> PolicyError {
    let line = err.span().map(|s| line_of(text, s.start)).unwrap_or(1);
    PolicyError {
        file: file.to_string(),
        line,
        message: err.message().to_string(),
    }
}

impl Rules {
    /// Parse and validate the rules from the text of their two files. Every problem found is
    /// returned, not just the first, so one `policy check` run shows them all.
    pub fn parse(directory_text: &str, workflows_text: &str) -> Result<Rules, Vec<PolicyError>> {
        let mut errors = Vec::new();
        let mut policy = Rules::default();

        let directory: DirectoryFile =
            toml::from_str(directory_text).map_err(|e| vec![toml_error(DIRECTORY_FILE, directory_text, &e)])?;
        let workflows: WorkflowsFile =
            toml::from_str(workflows_text).map_err(|e| vec![toml_error(WORKFLOWS_FILE, workflows_text, &e)])?;

        let mut tokens_seen = BTreeSet::new();
        for spanned in &directory.principal {
            let line = line_of(directory_text, spanned.span().start);
            let spec = spanned.get_ref();
            let mut err = |message: String| {
                errors.push(PolicyError {
                    file: DIRECTORY_FILE.into(),
                    line,
                    message,
                })
            };
            if let Some(problem) = jitgate_core::principal_name_problem(&spec.name) {
                err(format!("principal name {:?} {problem}", spec.name));
                continue;
            }
            if policy.principals.contains_key(&spec.name) {
                err(format!("principal '{}' is listed twice", spec.name));
                continue;
            }
            if let Some(token) = &spec.token {
                if token.len() < 8 {
                    err(format!("token of '{}' is shorter than 8 characters", spec.name));
                }
            }
            let token_hash = match (&spec.token, &spec.token_sha256) {
                (Some(_), Some(_)) => {
                    err(format!(
                        "principal '{}' has both token and token_sha256; keep token_sha256 only",
                        spec.name
                    ));
                    None
                }
                (Some(token), None) => Some(jitgate_core::token::token_hash(token)),
                (None, Some(hex_text)) => {
                    let parsed = hex::decode(hex_text.trim())
                        .ok()
                        .and_then(|b| <[u8; 32]>::try_from(b).ok());
                    if parsed.is_none() {
                        err(format!(
                            "token_sha256 of '{}' is not 64 hex digits; write the output of `printf %s TOKEN | sha256sum`",
                            spec.name
                        ));
                    }
                    parsed
                }
                (None, None) => None,
            };
            if let Some(hash) = token_hash {
                if !tokens_seen.insert(hash) {
                    err(format!("token of '{}' is already used by another principal", spec.name));
                }
            }
            let kind = if spec.service {
                PrincipalKind::Service
            } else {
                PrincipalKind::User
            };
            let identity = Identity {
                ci: None,
                principal: spec.name.clone(),
                groups: spec.groups.clone(),
                kind,
            };
            policy.principals.insert(
                spec.name.clone(),
                DirectoryEntry {
                    identity,
                    token_hash,
                    manager: spec.manager.clone(),
                    slack_user: spec.slack_user.clone(),
                },
            );
        }
        let mut slack_users = BTreeMap::new();
        for spanned in &directory.principal {
            let spec = spanned.get_ref();
            let line = line_of(directory_text, spanned.span().start);
            let mut err = |message: String| {
                errors.push(PolicyError {
                    file: DIRECTORY_FILE.into(),
                    line,
                    message,
                })
            };
            if let Some(slack) = &spec.slack_user {
                if slack.is_empty() || !slack.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) {
                    err(format!(
                        "slack_user of '{}': '{slack}' is not a Slack user id like U0123ABCD",
                        spec.name
                    ));
                } else if let Some(other) = slack_users.insert(slack.clone(), spec.name.clone()) {
                    err(format!(
                        "slack_user {slack} is given to both '{other}' and '{}'",
                        spec.name
                    ));
                }
            }
            if let Some(manager) = &spec.manager {
                if manager == &spec.name {
                    err(format!("'{}' cannot be their own manager", spec.name));
                } else if !policy.principals.contains_key(manager) {
                    err(format!("manager of '{}': unknown principal '{manager}'", spec.name));
                }
            }
            for group in &spec.groups {
                if group.starts_with(Step::PRINCIPAL_PREFIX) {
                    err(format!(
                        "group '{group}': names starting with '{}' are reserved",
                        Step::PRINCIPAL_PREFIX
                    ));
                }
            }
        }
        let known_groups: BTreeSet<String> = policy
            .principals
            .values()
            .flat_map(|e| e.identity.groups.iter().cloned())
            .collect();

        let duration = |text: &Option<String>, field: &str, fallback: DurationSecs| match text {
            None => Ok(fallback),
            Some(t) => parse_duration(t).map_err(|m| format!("{field}: {m}")),
        };
        let default_pending = duration(
            &workflows.defaults.pending_ttl,
            "defaults.pending_ttl",
            DEFAULT_PENDING_TTL,
        )
        .unwrap_or_else(|m| {
            errors.push(PolicyError {
                file: WORKFLOWS_FILE.into(),
                line: 1,
                message: m,
            });
            DEFAULT_PENDING_TTL
        });
        let default_max = duration(
            &workflows.defaults.max_duration,
            "defaults.max_duration",
            DEFAULT_MAX_DURATION,
        )
        .unwrap_or_else(|m| {
            errors.push(PolicyError {
                file: WORKFLOWS_FILE.into(),
                line: 1,
                message: m,
            });
            DEFAULT_MAX_DURATION
        });

        for spanned in &workflows.workflow {
            let line = line_of(workflows_text, spanned.span().start);
            let spec = spanned.get_ref();
            let mut problems: Vec<String> = Vec::new();
            let name = format!("{} {}", spec.resource, spec.action);

            let max_duration = duration(&spec.max_duration, "max_duration", default_max).unwrap_or_else(|m| {
                problems.push(m);
                default_max
            });
            let default_duration =
                duration(&spec.default_duration, "default_duration", max_duration).unwrap_or_else(|m| {
                    problems.push(m);
                    max_duration
                });
            if default_duration > max_duration {
                problems.push(format!(
                    "default_duration {default_duration} is longer than max_duration {max_duration}"
                ));
            }
            let pending_ttl = duration(&spec.pending_ttl, "pending_ttl", default_pending).unwrap_or_else(|m| {
                problems.push(m);
                default_pending
            });
            if spec.resource.trim().is_empty() || spec.action.trim().is_empty() {
                problems.push("resource and action must not be empty".into());
            }
            for group in &spec.requesters {
                if !known_groups.contains(group) {
                    problems.push(format!("requesters: unknown group '{group}'"));
                }
            }
            if spec.auto_approve && !spec.steps.is_empty() {
                problems.push("auto_approve = true conflicts with approval steps; keep one".into());
            }
            if !spec.auto_approve && spec.steps.is_empty() {
                problems.push(
                    "no approval steps: add steps = [{ group = \"...\", approvals = 1 }] or set auto_approve = true"
                        .into(),
                );
            }
            let mut steps = Vec::new();
            for step in &spec.steps {
                let approvals = step.approvals.unwrap_or(1);
                match (&step.group, step.manager) {
                    (None, true) => {
                        if approvals != 1 {
                            problems.push("steps: a manager step takes exactly 1 approval".into());
                        }
                        steps.push(Step {
                            group: Step::MANAGER.into(),
                            approvals: 1,
                        });
                    }
                    (Some(group), false) => {
                        let members = policy.members_of(group).count();
                        if approvals == 0 {
                            problems.push(format!("steps: group '{group}' needs at least 1 approval"));
                        } else if !known_groups.contains(group) {
                            problems.push(format!("steps: unknown group '{group}'"));
                        } else if members < approvals as usize {
                            problems.push(format!(
                                "steps: {approvals} approvals from '{group}' can never be given: the group has {members} member(s)"
                            ));
                        }
                        if step.approvals.is_none() {
                            problems.push(format!("steps: say how many approvals from '{group}': approvals = 1"));
                        }
                        steps.push(Step {
                            group: group.clone(),
                            approvals,
                        });
                    }
                    _ => problems.push("steps: each step names either group = \"...\" or manager = true".into()),
                }
            }
            let ticket_pattern = match &spec.ticket_pattern {
                None => None,
                Some(p) => match Regex::new(p) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        problems.push(format!("ticket_pattern: not a valid regex: {e}"));
                        None
                    }
                },
            };
            let break_glass = match &spec.break_glass {
                None => None,
                Some(bg) => {
                    let max = parse_duration(&bg.max_duration).unwrap_or_else(|m| {
                        problems.push(format!("break_glass.max_duration: {m}"));
                        DurationSecs(900)
                    });
                    if bg.groups.is_empty() {
                        problems.push("break_glass.groups is empty".into());
                    }
                    for group in &bg.groups {
                        if !known_groups.contains(group) {
                            problems.push(format!("break_glass.groups: unknown group '{group}'"));
                        }
                    }
                    let reviewers = bg
                        .reviewers
                        .clone()
                        .unwrap_or_else(|| spec.steps.iter().filter_map(|s| s.group.clone()).collect());
                    if reviewers.is_empty() {
                        problems.push("break_glass.reviewers: name who reviews break-glass use afterwards".into());
                    }
                    for group in &reviewers {
                        if !known_groups.contains(group) {
                            problems.push(format!("break_glass.reviewers: unknown group '{group}'"));
                        }
                    }
                    Some(BreakGlass {
                        groups: bg.groups.clone(),
                        max_duration: max,
                        alert: bg.alert.clone(),
                        reviewers,
                    })
                }
            };
            let single_use = spec.single_use.unwrap_or(spec.action_bound);
            let extension = spec.extension.as_ref().map(|e| Extension {
                max_times: e.max_times,
                requires_approval: e.requires_approval,
            });
            if extension.is_some() && single_use {
                problems.push("extension: a single-use grant cannot be extended; remove one of them".into());
            }
            let ssh = spec.ssh.as_ref().map(|ssh| {
                for cidr in &ssh.source_address {
                    if cidr.parse::<ipnet::IpNet>().is_err() && cidr.parse::<std::net::IpAddr>().is_err() {
                        problems.push(format!(
                            "ssh.source_address: '{cidr}' is not an address or CIDR block like 10.0.0.0/8"
                        ));
                    }
                }
                SshAccess {
                    source_address: ssh.source_address.clone(),
                }
            });
            let postgres = spec.postgres.as_ref().map(|pg| {
                problems.extend(postgres_problems(&pg.roles, single_use, spec.providers.is_empty()));
                PostgresAccess {
                    roles: pg.roles.clone(),
                }
            });
            let escalation = spec.escalation.as_ref().and_then(|e| {
                let after = parse_duration(&e.after)
                    .map_err(|m| problems.push(format!("escalation.after: {m}")))
                    .ok()?;
                if after >= pending_ttl {
                    problems.push(format!(
                        "escalation.after {after} is not shorter than pending_ttl {pending_ttl}: the request would expire first"
                    ));
                }
                if spec.steps.is_empty() {
                    problems.push("escalation: a workflow without approval steps has nothing to escalate".into());
                }
                if e.groups.is_empty() {
                    problems.push("escalation.groups: name the backup reviewers' groups".into());
                }
                for group in &e.groups {
                    if !known_groups.contains(group) {
                        problems.push(format!("escalation.groups: unknown group '{group}'"));
                    }
                }
                Some(jitgate_core::Escalation {
                    after,
                    groups: e.groups.clone(),
                })
            });
            let key = (spec.resource.clone(), spec.action.clone());
            if policy.workflows.contains_key(&key) {
                problems.push(format!("a workflow for {name} is already defined; merge the two"));
            }
            if !problems.is_empty() {
                errors.extend(problems.into_iter().map(|message| PolicyError {
                    file: WORKFLOWS_FILE.into(),
                    line,
                    message,
                }));
                continue;
            }
            policy
                .resources
                .entry(spec.resource.clone())
                .or_default()
                .insert(spec.action.clone());
            policy.workflows.insert(
                key,
                Workflow {
                    resource: spec.resource.clone(),
                    action: spec.action.clone(),
                    description: spec.description.clone(),
                    requesters: spec.requesters.clone(),
                    steps,
                    auto_approve: spec.auto_approve,
                    reason_required: spec.reason_required || spec.ticket_pattern.is_some(),
                    ticket_pattern,
                    default_duration,
                    max_duration,
                    pending_ttl,
                    action_bound: spec.action_bound,
                    single_use,
                    break_glass,
                    extension,
                    ssh,
                    escalation,
                    postgres,
                    providers: spec.providers.clone(),
                },
            );
        }
        if errors.is_empty() {
            Ok(policy)
        } else {
            Err(errors)
        }
    }

    pub fn principals(&self) -> impl Iterator<Item = &DirectoryEntry> {
        self.principals.values()
    }

    /// The directory principal a Slack user id belongs to.
    pub fn principal_by_slack_user(&self, slack_user: &str) -> Option<&DirectoryEntry> {
        self.principals
            .values()
            .find(|p| p.slack_user.as_deref() == Some(slack_user))
    }

    pub fn principal(&self, name: &str) -> Option<&DirectoryEntry> {
        self.principals.get(name)
    }

    pub fn members_of<'a>(&'a self, group: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.principals
            .values()
            .filter(move |e| e.identity.in_group(group))
            .map(|e| e.identity.principal.as_str())
    }

    pub fn workflows(&self) -> impl Iterator<Item = &Workflow> {
        self.workflows.values()
    }

    /// The workflow for a resource and action, or an error naming what exists.
    pub fn workflow(&self, resource: &str, action: &str) -> Result<&Workflow, DomainError> {
        let Some(actions) = self.resources.get(resource) else {
            let known: Vec<&str> = self.resources.keys().map(String::as_str).collect();
            return Err(DomainError::invalid(
                "resource",
                format!("unknown resource '{resource}'; known resources: {}", known.join(", ")),
            ));
        };
        self.workflows
            .get(&(resource.to_string(), action.to_string()))
            .ok_or_else(|| {
                let known: Vec<&str> = actions.iter().map(String::as_str).collect();
                DomainError::invalid(
                    "action",
                    format!(
                        "'{action}' is not an action of {resource}; its actions are: {}",
                        known.join(", ")
                    ),
                )
            })
    }
}

impl Workflow {
    /// Check the parts of a request the workflow limits (reason, ticket, payload, duration)
    /// and return the duration the grant will have. Who may file it is Cedar's to decide.
    pub fn limits(&self, ask: &Ask<'_>) -> Result<DurationSecs, DomainError> {
        let name = format!("{} {}", self.resource, self.action);
        DomainError::check_len("reason", ask.reason, MAX_REASON_LEN)?;
        text::check_reviewed("reason", ask.reason, Lines::Many)?;
        // A reason of spaces or zero-width characters only is no reason.
        let reason = text::trim_invisible(ask.reason);
        if self.reason_required && reason.is_empty() {
            return Err(DomainError::invalid(
                "reason",
                format!("is required for {name}; say why you need access"),
            ));
        }
        if let Some(pattern) = &self.ticket_pattern {
            if !pattern.is_match(reason) {
                return Err(DomainError::invalid(
                    "reason",
                    format!(
                        "must mention a ticket matching /{}/ for {name} (for example OPS-123)",
                        pattern.as_str()
                    ),
                ));
            }
        }
        if let Some(payload) = ask.payload {
            DomainError::check_len("payload", payload, MAX_PAYLOAD_LEN)?;
            text::check_reviewed("payload", payload, Lines::One)?;
        }
        if self.action_bound && ask.payload.is_none_or(|p| p.is_empty()) {
            return Err(DomainError::invalid(
                "payload",
                format!("is required: {name} is approved for one exact command or artifact; pass it as payload"),
            ));
        }
        // A reviewer who sees a payload believes the grant is limited to it; only an
        // action-bound grant is, so anywhere else a payload would mislead them.
        if !self.action_bound && ask.payload.is_some() {
            return Err(DomainError::invalid(
                "payload",
                format!(
                    "must be left out: {name} is not action-bound, so the payload would not be enforced \
                     (the grant would allow any {}); file without a payload, or make the workflow action_bound",
                    self.action
                ),
            ));
        }
        if ask.break_glass {
            let Some(bg) = &self.break_glass else {
                return Err(DomainError::Forbidden(format!("{name} has no break-glass procedure")));
            };
            return check_duration(ask.duration, bg.max_duration, bg.max_duration, &name);
        }
        check_duration(ask.duration, self.default_duration, self.max_duration, &name)
    }

    /// The ticket reference in a reason, if the workflow has a pattern and it matches.
    pub fn ticket<'r>(&self, reason: &'r str) -> Option<&'r str> {
        self.ticket_pattern
            .as_ref()
            .and_then(|p| p.find(reason))
            .map(|m| m.as_str())
    }
}

fn check_duration(
    asked: Option<DurationSecs>,
    default: DurationSecs,
    max: DurationSecs,
    name: &str,
) -> Result<DurationSecs, DomainError> {
    match asked {
        None => Ok(default.min(max)),
        Some(d) if d > max => Err(DomainError::invalid(
            "duration",
            format!("{d} is longer than the {max} allowed for {name}; ask for {max} or less"),
        )),
        Some(d) => Ok(d),
    }
}

/// What is wrong with a workflow's `postgres` section.
fn postgres_problems(roles: &[String], single_use: bool, no_providers: bool) -> Vec<String> {
    let mut problems = Vec::new();
    if roles.is_empty() {
        problems
            .push("postgres.roles: name the database roles a grant's login role joins, like [\"app_readonly\"]".into());
    }
    for role in roles {
        let plain = role
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
        if role.is_empty() || role.len() > MAX_PG_ROLE_LEN || !plain {
            problems.push(format!(
                "postgres.roles: '{role}' is not a role name: use 1 to {MAX_PG_ROLE_LEN} letters, digits, '_', '-' or '.'"
            ));
        }
        if role.starts_with("pg_") {
            problems.push(format!(
                "postgres.roles: '{role}' is a PostgreSQL system role; grant access through a role of your own"
            ));
        }
    }
    if single_use {
        problems.push(
            "postgres: a single-use grant ends at its first use, which would drop the login role at once; \
             remove single_use (or action_bound) or the postgres section"
                .into(),
        );
    }
    if no_providers {
        problems.push("postgres: name the postgres provider that creates the role: providers = [\"...\"]".into());
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIRECTORY: &str = r#"
[[principal]]
name = "alice"
groups = ["dev"]
[[principal]]
name = "bob"
groups = ["sre"]
"#;

    #[test]
    fn errors_name_file_and_line() {
        let workflows = "[[workflow]]\nresource = \"db\"\naction = \"read\"\nrequesters = [\"nobody\"]\nsteps = [{ group = \"sre\", approvals = 2 }]\n";
        let errors = Rules::parse(DIRECTORY, workflows).expect_err("invalid policy");
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            text.iter()
                .any(|e| e == "workflows.toml:1: requesters: unknown group 'nobody'"),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|e| e.contains("2 approvals from 'sre' can never be given")),
            "{text:?}"
        );
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let errors = Rules::parse(DIRECTORY, "[[workflow]]\nresource = \n").expect_err("bad toml");
        assert_eq!(errors[0].file, "workflows.toml");
        assert_eq!(errors[0].line, 2);
    }

    #[test]
    fn max_below_default_is_refused() {
        let workflows = "[[workflow]]\nresource = \"db\"\naction = \"read\"\nrequesters = [\"dev\"]\nauto_approve = true\nmax_duration = \"1h\"\ndefault_duration = \"2h\"\n";
        let errors = Rules::parse(DIRECTORY, workflows).expect_err("invalid");
        assert!(errors[0].message.contains("longer than max_duration"), "{errors:?}");
    }

    #[test]
    fn directory_names_that_look_like_another_name_are_refused() {
        let workflows =
            "[[workflow]]\nresource = \"db\"\naction = \"read\"\nrequesters = [\"dev\"]\nauto_approve = true\n";
        for name in ["alice\u{200b}", "\u{0430}lice", " alice", "al ice"] {
            let directory = format!("{DIRECTORY}[[principal]]\nname = \"{name}\"\ngroups = [\"dev\"]\n");
            let errors = Rules::parse(&directory, workflows).expect_err("look-alike name");
            assert!(
                errors[0].to_string().starts_with("directory.toml:8: principal name"),
                "{errors:?}"
            );
        }
    }
}
