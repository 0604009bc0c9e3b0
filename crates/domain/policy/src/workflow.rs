//! The TOML half of the policy directory: who exists and in which groups (`directory.toml`),
//! and the workflow of each resource and action (`workflows.toml`): approval steps and limits.
//! Parsing is pure; the Cedar half lives in `cedar.rs`.

use jitgate_core::admission::{Ask, MAX_PAYLOAD_LEN, MAX_REASON_LEN};
use jitgate_core::text::{self, Lines};
use jitgate_core::{parse_duration, DomainError, DurationSecs, Identity, PrincipalKind, Problem, Step};
use regex::Regex;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use crate::catalog::{self, Catalog, Resource};

pub const DIRECTORY_FILE: &str = "directory.toml";
pub const WORKFLOWS_FILE: &str = "workflows.toml";

/// The built-in group of AI agents (API tokens created with `--agent-for PERSON`): workflows
/// and Cedar policies may name it although no principal of `directory.toml` is in it.
pub const AGENTS_GROUP: &str = jitgate_core::identity::AGENT_GROUP;

/// Why the group `agents` may not be where reviewers are named (FIELD is the key).
pub(crate) const AGENTS_NEVER_REVIEW: &str =
    "FIELD: the group 'agents' cannot review: agents never approve, deny or review requests; name a group of people";

/// The kind of catalog resources that are MCP servers, whose actions are their tools.
pub const MCP_KIND: &str = "mcp";

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
    /// The principal's GitHub login (`octo-cat`): `/jitgate approve` and `/jitgate deny`
    /// comments by that login act as this principal. GitHub logins are case-insensitive, so
    /// it is matched ignoring ASCII case (`principal_by_github_user`).
    pub github_user: Option<String>,
}

/// The longest GitHub login GitHub allows.
pub const GITHUB_LOGIN_MAX: usize = 39;

/// The longest short code of an enterprise (the `_acme` of a managed user's `alice_acme`).
pub const GITHUB_SHORTCODE_MAX: usize = 20;

/// What is wrong with `login` as a GitHub login, if anything: GitHub's own shape, 1 to 39
/// ASCII letters, digits and single hyphens, neither first nor last; for a user of GitHub
/// Enterprise Managed Users, that and `_` and the enterprise's short code (1 to 20 ASCII
/// letters and digits: `alice_acme`). Anything else (a Cyrillic look-alike letter, an
/// invisible or control character, a NUL, a space) is no login GitHub would send, and a
/// directory entry holding one could only be a mistake or an attempt to make one account
/// read as another.
pub fn github_login_problem(login: &str) -> Option<String> {
    let (name, shortcode) = match login.split_once('_') {
        Some((name, shortcode)) => (name, Some(shortcode)),
        None => (login, None),
    };
    if let Some(shortcode) = shortcode {
        if let Some(c) = shortcode.chars().find(|c| !c.is_ascii_alphanumeric()) {
            return Some(format!(
                "holds {:?} (U+{:04X}) after its '_': a managed user's login ends in '_' and the enterprise's short code, ASCII letters and digits only",
                c, c as u32
            ));
        }
        if shortcode.is_empty() || shortcode.len() > GITHUB_SHORTCODE_MAX {
            return Some(format!(
                "ends in '_' and {} characters: a managed user's login ends in '_' and a short code of 1 to {GITHUB_SHORTCODE_MAX} ASCII letters and digits",
                shortcode.len()
            ));
        }
    }
    if name.is_empty() {
        return Some("is empty".into());
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-')) {
        return Some(format!(
            "holds {:?} (U+{:04X}): a GitHub login has only ASCII letters, digits and hyphens (and a managed user's, '_' and a short code)",
            c, c as u32
        ));
    }
    if name.len() > GITHUB_LOGIN_MAX {
        return Some(format!(
            "is {} characters long: a GitHub login has at most {GITHUB_LOGIN_MAX} (before a managed user's '_')",
            name.len()
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Some("begins or ends with a hyphen, which a GitHub login never does".into());
    }
    if name.contains("--") {
        return Some("has two hyphens in a row, which a GitHub login never has".into());
    }
    None
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

/// The longest `ticket_hint` a workflow may give, in characters.
pub const MAX_TICKET_HINT: usize = 200;

/// Where in a reason a workflow's ticket pattern finds a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketPlace {
    /// Anywhere in the sentence.
    Anywhere,
    /// Only at the start of the reason.
    Start,
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
    /// What to tell people about the ticket the reason must mention, in the policy's words
    /// (`ticket_hint`): for patterns no common example fits. One line, checked at load.
    pub ticket_hint: Option<String>,
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
    /// The labels the catalog declares for this action of this resource (`effect = "read"`),
    /// filled in at load; empty when it declares none. Cedar reads them as
    /// `context.action_labels`.
    pub action_labels: BTreeMap<String, String>,
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

/// How precisely a workflow names its resources; the most specific one that matches a
/// (resource, action) governs it. Ordered least specific first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Specificity {
    /// `resources = { kind = ..., labels = { ... } }`: no names.
    Labels,
    /// `resources = { names = ["glob*", ...], ... }`.
    Glob,
    /// `resource = "NAME"`.
    Exact,
}

impl Specificity {
    pub fn as_str(self) -> &'static str {
        match self {
            Specificity::Labels => "labels/kind",
            Specificity::Glob => "glob",
            Specificity::Exact => "exact name",
        }
    }
}

/// `resources = { names = [...], kind = "...", labels = { ... } }`: every part given must
/// match; `names` matches when any of its globs does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    pub names: Vec<String>,
    pub kind: Option<String>,
    pub labels: BTreeMap<String, String>,
}

impl Selector {
    /// The declared resources the selector selects, in name order.
    pub fn select<'a>(&'a self, catalog: &'a Catalog) -> Vec<&'a Resource> {
        let mut out: Vec<&Resource> = match catalog.narrowed(self.kind.as_deref(), &self.labels) {
            Some(candidates) => candidates.filter(|r| self.matches(r)).collect(),
            None => catalog.resources().filter(|r| self.matches(r)).collect(),
        };
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    pub fn matches(&self, r: &Resource) -> bool {
        (self.names.is_empty() || self.names.iter().any(|g| catalog::glob_matches(g, &r.name)))
            && self.kind.as_ref().is_none_or(|k| *k == r.kind)
            && self.labels.iter().all(|(k, v)| r.labels.get(k) == Some(v))
    }

    pub fn specificity(&self) -> Specificity {
        if self.names.is_empty() {
            Specificity::Labels
        } else {
            Specificity::Glob
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.names.is_empty() {
            let names: Vec<String> = self.names.iter().map(|n| format!("{n:?}")).collect();
            parts.push(format!("names = [{}]", names.join(", ")));
        }
        if let Some(kind) = &self.kind {
            parts.push(format!("kind = {kind:?}"));
        }
        if !self.labels.is_empty() {
            let labels: Vec<String> = self.labels.iter().map(|(k, v)| format!("{k} = {v:?}")).collect();
            parts.push(format!("labels = {{ {} }}", labels.join(", ")));
        }
        write!(f, "resources = {{ {} }}", parts.join(", "))
    }
}

/// `actions = { labels = { effect = "read" } }`: every action a selected resource declares
/// with all these labels.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ActionSelector {
    pub labels: BTreeMap<String, String>,
}

impl ActionSelector {
    /// The actions `resource` declares that carry every label of the selector, in name order.
    pub fn select<'a>(&'a self, resource: &'a Resource) -> impl Iterator<Item = &'a str> + 'a {
        resource
            .actions
            .iter()
            .filter(|(_, labels)| self.labels.iter().all(|(k, v)| labels.get(k) == Some(v)))
            .map(|(name, _)| name.as_str())
    }
}

impl fmt::Display for ActionSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let labels: Vec<String> = self.labels.iter().map(|(k, v)| format!("{k} = {v:?}")).collect();
        write!(f, "actions = {{ labels = {{ {} }} }}", labels.join(", "))
    }
}

/// Which workflow governs a (resource, action) and by which selector, for `policy explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    /// Where the workflow is: `workflows.toml`, line.
    pub file: String,
    pub line: usize,
    pub specificity: Specificity,
    /// The selector as written: `resource = "prod-db"` or `resources = { ... }`, followed by
    /// `, actions = { labels = { ... } }` when the action was selected by its labels.
    pub selector: String,
    /// Whether the action was selected by its labels rather than named: a named action is
    /// more specific than a label selector on the same resources.
    pub by_action_labels: bool,
}

/// One (resource, action)'s workflow. The workflow is behind an `Arc` so the service can
/// hold it cheaply; each pair has its own, with `resource` and `action` filled in (every
/// consumer reads them) and `{ owners = true }` resolved to the resource's owner groups.
#[derive(Debug, Clone)]
struct Binding {
    workflow: Arc<Workflow>,
    matched: Matched,
}

/// The parsed, validated TOML rules.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    principals: BTreeMap<String, DirectoryEntry>,
    /// `[groups] provisioned`: groups an identity provider fills.
    provisioned: BTreeSet<String>,
    /// Every (resource, action) with a workflow, selectors expanded at load: an O(1) lookup.
    workflows: HashMap<(String, String), Binding>,
    /// Resource name to its actions' workflows (the same `Arc`s as `workflows`), in name
    /// order: listings walk it a page at a time, error messages name the actions.
    resources: BTreeMap<String, BTreeMap<String, Arc<Workflow>>>,
    catalog: Catalog,
}

/// What a workflow names, before expansion against the catalog.
enum Target {
    Exact(String),
    Select(Selector),
}

/// Which actions a workflow governs, before expansion against the catalog.
enum Actions {
    /// `action = "A"` or `actions = ["A", ...]`.
    Named(Vec<String>),
    /// `actions = { labels = { ... } }`.
    Labelled(ActionSelector),
}

/// A validated workflow before it is bound to its (resource, action) pairs.
struct Candidate {
    template: Workflow,
    target: Target,
    actions: Actions,
    line: usize,
    /// `{ owners = true, approvals = N }`: its place among the steps, and N.
    owners_step: Option<(usize, u32)>,
}

impl Candidate {
    fn specificity(&self) -> Specificity {
        match &self.target {
            Target::Exact(_) => Specificity::Exact,
            Target::Select(s) => s.specificity(),
        }
    }

    /// How it ranks against another workflow on the same (resource, action): first by how
    /// precisely it names the resource, then a named action beats a label selector.
    fn rank(&self) -> (Specificity, bool) {
        (self.specificity(), matches!(self.actions, Actions::Named(_)))
    }

    fn selector_text(&self) -> String {
        let resources = match &self.target {
            Target::Exact(name) => format!("resource = {name:?}"),
            Target::Select(s) => s.to_string(),
        };
        match &self.actions {
            Actions::Named(_) => resources,
            Actions::Labelled(a) => format!("{resources}, {a}"),
        }
    }

    /// The actions it governs on one resource (declared or not).
    fn actions_on<'a>(&'a self, resource: Option<&'a Resource>) -> Vec<&'a str> {
        match (&self.actions, resource) {
            (Actions::Named(list), _) => list.iter().map(String::as_str).collect(),
            (Actions::Labelled(sel), Some(r)) => sel.select(r).collect(),
            (Actions::Labelled(_), None) => Vec::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectoryFile {
    #[serde(default)]
    principal: Vec<toml::Spanned<PrincipalSpec>>,
    /// `[groups]`: what the file says of groups as a whole.
    #[serde(default)]
    groups: Option<toml::Spanned<GroupsSpec>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct GroupsSpec {
    /// Groups whose members an identity provider provisions (SCIM): named in workflows
    /// without members here, their size is checked when a request is filed.
    #[serde(default)]
    provisioned: Vec<String>,
}

/// The groups that are jitgate's own roles, never provisioned by an identity provider: who
/// runs jitgate, who reads everything, and the agents (in it by their credential alone).
pub const RESERVED_GROUPS: [&str; 3] = [
    jitgate_core::identity::ADMIN_GROUP,
    jitgate_core::authz::AUDITOR_GROUP,
    AGENTS_GROUP,
];

/// Whether `name` is one of [`RESERVED_GROUPS`], compared ASCII case-insensitively (`Admins`
/// is `admins` to a reader).
pub fn is_reserved_group(name: &str) -> bool {
    RESERVED_GROUPS.iter().any(|r| r.eq_ignore_ascii_case(name))
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
    github_user: Option<String>,
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
    /// One resource by its exact name.
    resource: Option<String>,
    /// Or the catalog's resources a selector picks.
    resources: Option<SelectorSpec>,
    action: Option<String>,
    /// Or several actions with the same rules, `["read", "write"]`, or the actions the
    /// catalog declares with some labels, `{ labels = { effect = "read" } }`; read by hand
    /// (`parse_actions`) so a wrong shape is named precisely.
    actions: Option<toml::Value>,
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
    ticket_hint: Option<String>,
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
struct SelectorSpec {
    #[serde(default)]
    names: Vec<String>,
    kind: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
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
    /// The resource's `owners` groups (from the catalog) must approve.
    #[serde(default)]
    owners: bool,
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
        Rules::parse_with_catalog(directory_text, workflows_text, &[])
    }

    /// `parse`, with the catalog's files (`resources.toml`, `resources/NAME.toml`) given as
    /// (file name, text) pairs in reading order. Selectors are expanded here, once per load.
    pub fn parse_with_catalog(
        directory_text: &str,
        workflows_text: &str,
        resource_files: &[(String, String)],
    ) -> Result<Rules, Vec<PolicyError>> {
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
                on_behalf_of: None,
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
                    github_user: spec.github_user.clone(),
                },
            );
        }
        let mut slack_users = BTreeMap::new();
        // By login folded to lower case: GitHub logins are case-insensitive.
        let mut github_users: BTreeMap<String, String> = BTreeMap::new();
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
            if let Some(login) = &spec.github_user {
                if let Some(problem) = github_login_problem(login) {
                    err(format!("github_user of '{}': {login:?} {problem}", spec.name));
                } else if let Some(other) = github_users.insert(login.to_ascii_lowercase(), spec.name.clone()) {
                    err(format!(
                        "github_user {login} is given to both '{other}' and '{}' (GitHub logins are compared ignoring case)",
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
        let mut known_groups: BTreeSet<String> = policy
            .principals
            .values()
            .flat_map(|e| e.identity.groups.iter().cloned())
            .collect();
        // Built in: agents are in it by their credential, never by the directory.
        known_groups.insert(AGENTS_GROUP.to_string());
        if let Some(groups) = &directory.groups {
            let line = line_of(directory_text, groups.span().start);
            for group in &groups.get_ref().provisioned {
                let mut err = |message: String| {
                    errors.push(PolicyError {
                        file: DIRECTORY_FILE.into(),
                        line,
                        message,
                    })
                };
                if let Some(problem) = jitgate_core::principal_name_problem(group) {
                    err(format!("groups.provisioned: group name {:?} {problem}", group));
                } else if is_reserved_group(group) {
                    err(format!(
                        "groups.provisioned: '{group}' is one of jitgate's own roles ({}); its members come from directory.toml only",
                        RESERVED_GROUPS.join(", ")
                    ));
                } else if group.starts_with(Step::PRINCIPAL_PREFIX) {
                    err(format!(
                        "groups.provisioned: names starting with '{}' are reserved",
                        Step::PRINCIPAL_PREFIX
                    ));
                } else {
                    policy.provisioned.insert(group.clone());
                    known_groups.insert(group.clone());
                }
            }
        }
        match Catalog::parse(resource_files, &known_groups) {
            Ok(catalog) => policy.catalog = catalog,
            Err(mut e) => {
                // Selectors would only repeat the catalog's problems: show those first.
                errors.append(&mut e);
                return Err(errors);
            }
        }

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

        let mut candidates: Vec<Candidate> = Vec::new();
        for spanned in &workflows.workflow {
            let line = line_of(workflows_text, spanned.span().start);
            let spec = spanned.get_ref();
            let mut problems: Vec<String> = Vec::new();
            let target = policy.target(spec, &mut problems);
            let actions = match (&spec.action, &spec.actions) {
                (Some(a), None) => Actions::Named(vec![a.clone()]),
                (None, Some(value)) => parse_actions(value, &policy.catalog, &mut problems),
                (Some(_), Some(_)) => {
                    problems.push("give either action or actions, not both".into());
                    Actions::Named(Vec::new())
                }
                (None, None) => {
                    problems.push(
                        "missing action: action = \"read\" (or actions = [\"read\", ...], or actions = { labels = { effect = \"read\" } })"
                            .into(),
                    );
                    Actions::Named(Vec::new())
                }
            };

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
            if matches!(&actions, Actions::Named(list) if list.iter().any(|a| a.trim().is_empty()))
                || matches!(&target, Some(Target::Exact(r)) if r.trim().is_empty())
            {
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
            let mut owners_step = None;
            for step in &spec.steps {
                let approvals = step.approvals.unwrap_or(1);
                if step.owners {
                    if step.group.is_some() || step.manager {
                        problems.push(
                            "steps: each step names either group = \"...\", manager = true or owners = true".into(),
                        );
                    } else if approvals == 0 {
                        problems.push("steps: an owners step needs at least 1 approval".into());
                    } else if owners_step.is_some() {
                        problems.push("steps: owners = true is given twice".into());
                    } else {
                        owners_step = Some((steps.len(), approvals));
                    }
                    continue;
                }
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
                        } else if group == AGENTS_GROUP {
                            problems.push(AGENTS_NEVER_REVIEW.replace("FIELD", "steps"));
                        } else if members < approvals as usize && !policy.provisioned.contains(group) {
                            // A provisioned group's size is the identity provider's: checked
                            // when a request is filed.
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
            if let Some(hint) = &spec.ticket_hint {
                if spec.ticket_pattern.is_none() {
                    problems.push(
                        "ticket_hint: only for a workflow with a ticket_pattern; add one or remove the hint".into(),
                    );
                }
                if let Err(e) = text::check_reviewed("ticket_hint", hint, Lines::One) {
                    problems.push(e.to_string());
                } else if let Some(c) = hint.chars().find(|&c| c != ' ' && text::is_invisible(c)) {
                    // Shown to people as the policy wrote it: nothing in it may be unseen.
                    problems.push(format!(
                        "ticket_hint: holds the invisible character U+{:04X}; write it in visible characters and plain spaces",
                        u32::from(c)
                    ));
                }
                if hint.trim().is_empty() || hint.chars().count() > MAX_TICKET_HINT {
                    problems.push(format!(
                        "ticket_hint: say in 1 to {MAX_TICKET_HINT} characters what ticket the reason must mention"
                    ));
                }
            }
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
                        } else if group == AGENTS_GROUP {
                            problems.push(AGENTS_NEVER_REVIEW.replace("FIELD", "break_glass.reviewers"));
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
                    } else if group == AGENTS_GROUP {
                        problems.push(AGENTS_NEVER_REVIEW.replace("FIELD", "escalation.groups"));
                    }
                }
                Some(jitgate_core::Escalation {
                    after,
                    groups: e.groups.clone(),
                })
            });
            if !problems.is_empty() {
                errors.extend(problems.into_iter().map(|message| PolicyError {
                    file: WORKFLOWS_FILE.into(),
                    line,
                    message,
                }));
                continue;
            }
            let Some(target) = target else { continue };
            candidates.push(Candidate {
                template: Workflow {
                    resource: match &target {
                        Target::Exact(name) => name.clone(),
                        Target::Select(s) => s.to_string(),
                    },
                    action: match &actions {
                        Actions::Named(list) => list.first().cloned().unwrap_or_default(),
                        Actions::Labelled(sel) => sel.to_string(),
                    },
                    description: spec.description.clone(),
                    requesters: spec.requesters.clone(),
                    steps,
                    auto_approve: spec.auto_approve,
                    reason_required: spec.reason_required || spec.ticket_pattern.is_some(),
                    ticket_pattern,
                    ticket_hint: spec.ticket_hint.clone(),
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
                    action_labels: BTreeMap::new(),
                },
                target,
                actions,
                line,
                owners_step,
            });
        }
        policy.bind(candidates, &mut errors);
        if errors.is_empty() {
            Ok(policy)
        } else {
            Err(errors)
        }
    }

    /// What a workflow names: `resource = "NAME"` or `resources = { ... }`, checked against
    /// the catalog. `None` (with problems) when neither or both are given.
    fn target(&self, spec: &WorkflowSpec, problems: &mut Vec<String>) -> Option<Target> {
        let catalog = &self.catalog;
        match (&spec.resource, &spec.resources) {
            (Some(name), None) => {
                // A name the catalog does not declare stays valid (as before the catalog),
                // unless it only looks like a declared one: that is a typo or a disguise.
                if catalog.collection(name).is_some() {
                    problems.push(format!(
                        "resource '{name}' is a collection, which cannot be requested; select its resources with resources = {{ ... }}"
                    ));
                } else if catalog.resource(name).is_none() {
                    if let Some(other) = catalog.lookalike_of(name) {
                        problems.push(format!(
                            "resource '{name}' is not declared but looks like '{other}' (case, width or look-alike characters); write '{other}'"
                        ));
                    }
                }
                Some(Target::Exact(name.clone()))
            }
            (None, Some(sel)) => {
                let selector = Selector {
                    names: sel.names.clone(),
                    kind: sel.kind.clone(),
                    labels: sel.labels.clone(),
                };
                if selector.names.is_empty() && selector.kind.is_none() && selector.labels.is_empty() {
                    problems.push("resources: give names, kind or labels to select by".into());
                    return None;
                }
                if catalog.is_empty() {
                    problems.push(format!(
                        "resources: a selector needs the catalog: declare resources in {}",
                        catalog::RESOURCES_FILE
                    ));
                    return None;
                }
                for pattern in &selector.names {
                    if let Some(problem) = catalog::name_problem(pattern) {
                        problems.push(format!("resources.names: {pattern:?} {problem}"));
                    } else if !catalog.resources().any(|r| catalog::glob_matches(pattern, &r.name)) {
                        problems.push(format!(
                            "resources.names: '{pattern}' matches no declared resource; check the name against {}",
                            catalog::RESOURCES_FILE
                        ));
                    }
                }
                if let Some(kind) = &selector.kind {
                    if !catalog.has_kind(kind) {
                        problems.push(format!("resources.kind: no declared resource has kind '{kind}'"));
                    }
                }
                for key in selector.labels.keys() {
                    if !catalog.has_label_key(key) {
                        problems.push(format!(
                            "resources.labels: no declared resource has the label key '{key}'"
                        ));
                    }
                }
                if problems.is_empty() && selector.select(catalog).is_empty() {
                    problems.push(format!(
                        "{selector} selects no declared resource: every part given must match one resource"
                    ));
                }
                Some(Target::Select(selector))
            }
            (Some(_), Some(_)) => {
                problems.push("give either resource or resources, not both".into());
                None
            }
            (None, None) => {
                problems.push(
                    "missing resource: resource = \"NAME\" or resources = { names = [...], kind = \"...\", labels = { ... } }"
                        .into(),
                );
                None
            }
        }
    }

    /// Expand the workflows into their (resource, action) pairs: the most specific wins, and
    /// two of equal specificity on one pair are refused. Owner steps are resolved per resource.
    fn bind(&mut self, candidates: Vec<Candidate>, errors: &mut Vec<PolicyError>) {
        let mut chosen: HashMap<(String, String), usize> = HashMap::new();
        let mut collided: BTreeSet<(usize, usize)> = BTreeSet::new();
        for (i, c) in candidates.iter().enumerate() {
            let resources: Vec<(&str, Option<&Resource>)> = match &c.target {
                Target::Exact(name) => vec![(name.as_str(), self.catalog.resource(name))],
                Target::Select(s) => s
                    .select(&self.catalog)
                    .into_iter()
                    .map(|r| (r.name.as_str(), Some(r)))
                    .collect(),
            };
            let mut selected_any = false;
            for (name, declared) in resources {
                // A resource that declares its actions has exactly those: an undeclared one
                // named for it is a typo (or a tool the catalog does not know yet).
                if let (Target::Exact(_), Actions::Named(list), Some(r)) = (&c.target, &c.actions, declared) {
                    for action in list
                        .iter()
                        .filter(|a| !r.actions.is_empty() && !r.actions.contains_key(*a))
                    {
                        let known: Vec<&str> = r.actions.keys().map(String::as_str).collect();
                        errors.push(PolicyError {
                            file: WORKFLOWS_FILE.into(),
                            line: c.line,
                            message: format!(
                                "'{action}' is not an action resource '{name}' declares (at {}:{}); its actions are: {}; declare it under the resource's actions",
                                r.file,
                                r.line,
                                known.join(", ")
                            ),
                        });
                    }
                }
                for action in c.actions_on(declared) {
                    selected_any = true;
                    let key = (name.to_string(), action.to_string());
                    let Some(&j) = chosen.get(&key) else {
                        chosen.insert(key, i);
                        continue;
                    };
                    let (mine, theirs) = (c.rank(), candidates[j].rank());
                    if mine > theirs {
                        chosen.insert(key, i);
                    } else if mine == theirs && collided.insert((j, i)) {
                        let message = if mine == (Specificity::Exact, true) {
                            format!("a workflow for {name} {action} is already defined; merge the two")
                        } else {
                            format!(
                                "this workflow ({}) and the one at {WORKFLOWS_FILE}:{} ({}) both select {action} on '{name}' with equal specificity ({}{}); make one more specific or narrow the other",
                                c.selector_text(),
                                candidates[j].line,
                                candidates[j].selector_text(),
                                mine.0.as_str(),
                                if mine.1 { "" } else { ", actions by labels" }
                            )
                        };
                        errors.push(PolicyError {
                            file: WORKFLOWS_FILE.into(),
                            line: c.line,
                            message,
                        });
                    }
                }
            }
            if let (Actions::Labelled(sel), false) = (&c.actions, selected_any) {
                errors.push(PolicyError {
                    file: WORKFLOWS_FILE.into(),
                    line: c.line,
                    message: format!(
                        "{sel} selects nothing: no action that the selected resources declare has all these labels; check them against the resources' actions in {}",
                        catalog::RESOURCES_FILE
                    ),
                });
            }
        }
        // Reviewed tool calls that are not bound to the exact call, by workflow line.
        let mut unbound_tools: BTreeMap<usize, BTreeSet<(String, String)>> = BTreeMap::new();
        let mut owner_problems: BTreeSet<(usize, String)> = BTreeSet::new();
        for ((resource, action), i) in chosen {
            let c = &candidates[i];
            let mut workflow = c.template.clone();
            workflow.resource.clone_from(&resource);
            workflow.action.clone_from(&action);
            if let Some((at, approvals)) = c.owners_step {
                let Some(owners) = self
                    .catalog
                    .resource(&resource)
                    .map(|r| &r.owners)
                    .filter(|o| !o.is_empty())
                else {
                    owner_problems.insert((
                        c.line,
                        format!(
                            "steps: owners = true, but resource '{resource}' declares no owners; add owners = [\"GROUP\"] to it in the catalog"
                        ),
                    ));
                    continue;
                };
                let mut owner_steps = Vec::new();
                for group in owners {
                    let members = self.members_of(group).count();
                    if members < approvals as usize && !self.provisioned.contains(group) {
                        owner_problems.insert((
                            c.line,
                            format!(
                                "steps: {approvals} approvals from '{group}', an owner of '{resource}', can never be given: the group has {members} member(s)"
                            ),
                        ));
                    }
                    owner_steps.push(Step {
                        group: group.clone(),
                        approvals,
                    });
                }
                workflow.steps.splice(at..at, owner_steps);
            }
            if let Some(declared) = self.catalog.resource(&resource) {
                workflow.action_labels = declared.actions.get(&action).cloned().unwrap_or_default();
                // A reviewer of an agent's tool call must approve that exact call (its
                // arguments), not the tool for a while; automatic or break-glass-only use
                // involves no reviewer, so nothing could mislead one.
                // Single use too: an approved call is approved once, never as a licence to repeat it.
                if declared.kind == MCP_KIND
                    && !workflow.steps.is_empty()
                    && !(workflow.action_bound && workflow.single_use)
                {
                    unbound_tools
                        .entry(c.line)
                        .or_default()
                        .insert((resource.clone(), action.clone()));
                }
            }
            let workflow = Arc::new(workflow);
            self.resources
                .entry(resource.clone())
                .or_default()
                .insert(action.clone(), Arc::clone(&workflow));
            self.workflows.insert(
                (resource, action),
                Binding {
                    workflow,
                    matched: Matched {
                        file: WORKFLOWS_FILE.into(),
                        line: c.line,
                        specificity: c.specificity(),
                        selector: c.selector_text(),
                        by_action_labels: matches!(c.actions, Actions::Labelled(_)),
                    },
                },
            );
        }
        errors.extend(owner_problems.into_iter().map(|(line, message)| PolicyError {
            file: WORKFLOWS_FILE.into(),
            line,
            message,
        }));
        errors.extend(unbound_tools.into_iter().map(|(line, pairs)| {
            let named: Vec<String> = pairs.iter().take(3).map(|(r, a)| format!("{a} on {r}")).collect();
            let more = match pairs.len().saturating_sub(3) {
                0 => String::new(),
                n => format!(" and {n} more"),
            };
            PolicyError {
                file: WORKFLOWS_FILE.into(),
                line,
                message: format!(
                    "{}{more} (kind {MCP_KIND}): a reviewed tool call must be action_bound and single_use, so reviewers approve the exact call, once; add action_bound = true and drop single_use = false (or make it automatic)",
                    named.join(", ")
                ),
            }
        }));
    }

    /// The resource catalog (empty when the directory declares none).
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Which workflow, by which selector, governs `action` on `resource`.
    pub fn matched(&self, resource: &str, action: &str) -> Option<&Matched> {
        self.workflows
            .get(&(resource.to_string(), action.to_string()))
            .map(|b| &b.matched)
    }

    /// The shared workflow of a (resource, action), for holding beyond a borrow.
    pub fn workflow_arc(&self, resource: &str, action: &str) -> Option<Arc<Workflow>> {
        self.workflows
            .get(&(resource.to_string(), action.to_string()))
            .map(|b| Arc::clone(&b.workflow))
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

    /// The directory principal a GitHub login belongs to, ignoring ASCII case as GitHub does
    /// (`Octo-Cat` is `octo-cat`). Only ASCII case: a login spelled with a look-alike letter
    /// is another login, and never matches.
    pub fn principal_by_github_user(&self, login: &str) -> Option<&DirectoryEntry> {
        self.principals.values().find(|p| {
            p.github_user
                .as_deref()
                .is_some_and(|mine| mine.eq_ignore_ascii_case(login))
        })
    }

    pub fn principal(&self, name: &str) -> Option<&DirectoryEntry> {
        self.principals.get(name)
    }

    /// Whether `group` is listed in `[groups] provisioned`.
    pub fn is_provisioned(&self, group: &str) -> bool {
        self.provisioned.contains(group)
    }

    /// `[groups] provisioned`, by name.
    pub fn provisioned_groups(&self) -> impl Iterator<Item = &str> {
        self.provisioned.iter().map(String::as_str)
    }

    pub fn members_of<'a>(&'a self, group: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.principals
            .values()
            .filter(move |e| e.identity.in_group(group))
            .map(|e| e.identity.principal.as_str())
    }

    /// Every (resource, action)'s workflow, selectors expanded.
    pub fn workflows(&self) -> impl Iterator<Item = &Workflow> {
        self.workflows.values().map(|b| &*b.workflow)
    }

    /// Every resource with a workflow, by name, starting after `after`, each with its
    /// workflows by action: a listing walks this in order and stops when its page is full,
    /// so a page costs what it shows, not the size of the catalog.
    pub fn resources_after<'a>(
        &'a self,
        after: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a str, impl Iterator<Item = &'a Workflow> + 'a)> + 'a {
        use std::ops::Bound;
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.resources
            .range::<str, _>((start, Bound::Unbounded))
            .map(|(resource, actions)| (resource.as_str(), actions.values().map(|w| &**w)))
    }

    /// The workflow for a resource and action, or an error naming what exists.
    pub fn workflow(&self, resource: &str, action: &str) -> Result<&Workflow, DomainError> {
        let Some(actions) = self.resources.get(resource) else {
            // Not every name there is: a catalog may hold thousands, and a caller may not be
            // able to request most of them. Where to look instead, and a look-alike if any.
            let near = self
                .catalog
                .lookalike_of(resource)
                .map(|name| format!("did you mean '{name}'? "))
                .unwrap_or_default();
            return Err(DomainError::invalid(
                "resource",
                format!(
                    "unknown resource '{resource}'; {near}`jitgate resources` (GET /v1/resources) lists what you may request"
                ),
            ));
        };
        actions.get(action).map(|w| &**w).ok_or_else(|| {
            let known: Vec<&str> = actions.keys().map(String::as_str).collect();
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
                return Err(DomainError::invalid_because(
                    "reason",
                    format!(
                        "must mention a ticket matching /{}/ for {name} (for example OPS-123)",
                        pattern.as_str()
                    ),
                    Problem::NoTicket {
                        example: self.ticket_example().map(str::to_string),
                    },
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

    /// A ticket reference the workflow's pattern accepts, to show people what to write:
    /// the first of a few common shapes it matches, `None` when it matches none of them (or
    /// the workflow asks for no ticket). See [`Workflow::ticket_shape`] for where it goes.
    pub fn ticket_example(&self) -> Option<&'static str> {
        self.ticket_shape().map(|(shape, _)| shape)
    }

    /// A ticket reference the pattern accepts and where in a reason: each common shape is
    /// tried inside a sentence ("x OPS-123 y"), as people write reasons, then at its start
    /// (a pattern anchored with `^`); a shape the pattern accepts only alone is no example.
    pub fn ticket_shape(&self) -> Option<(&'static str, TicketPlace)> {
        const SHAPES: [&str; 5] = ["OPS-123", "INC-42", "PROJ-7", "#123", "123"];
        let pattern = self.ticket_pattern.as_ref()?;
        let found = |place: TicketPlace| {
            SHAPES
                .into_iter()
                .find(|shape| {
                    let sentence = match place {
                        TicketPlace::Anywhere => format!("fix {shape} now"),
                        TicketPlace::Start => format!("{shape} fix now"),
                    };
                    pattern.is_match(&sentence)
                })
                .map(|shape| (shape, place))
        };
        found(TicketPlace::Anywhere).or_else(|| found(TicketPlace::Start))
    }

    /// The ticket reference in a reason, if the workflow has a pattern and it matches.
    pub fn ticket<'r>(&self, reason: &'r str) -> Option<&'r str> {
        self.ticket_pattern
            .as_ref()
            .and_then(|p| p.find(reason))
            .map(|m| m.as_str())
    }
}

/// A workflow's `actions`: a list of names, or a label selector over the actions the catalog
/// declares.
fn parse_actions(value: &toml::Value, catalog: &Catalog, problems: &mut Vec<String>) -> Actions {
    let shape = "actions: give a list of actions, [\"read\", \"write\"], or a label selector over the actions the catalog declares, { labels = { effect = \"read\" } }";
    match value {
        toml::Value::Array(items) => {
            if items.is_empty() {
                problems.push("actions is empty: name at least one action".into());
            }
            let mut list = Vec::new();
            let mut seen = BTreeSet::new();
            for item in items {
                let Some(a) = item.as_str() else {
                    problems.push(shape.into());
                    return Actions::Named(Vec::new());
                };
                if !seen.insert(a) {
                    problems.push(format!("actions: '{a}' is listed twice"));
                }
                list.push(a.to_string());
            }
            Actions::Named(list)
        }
        toml::Value::Table(table) => {
            let before = problems.len();
            let mut labels = BTreeMap::new();
            for (key, value) in table {
                if key != "labels" {
                    problems.push(format!("actions: unknown key {key:?}; {shape}"));
                    continue;
                }
                let Some(given) = value.as_table() else {
                    problems.push(format!("actions.labels: {shape}"));
                    continue;
                };
                for (k, v) in given {
                    let Some(v) = v.as_str() else {
                        problems.push(format!(
                            "actions.labels.{k}: label values are strings, like {k} = \"read\""
                        ));
                        continue;
                    };
                    if let Some(p) = catalog::label_problem(k, v) {
                        problems.push(format!("actions.labels: {p}"));
                        continue;
                    }
                    if !catalog.has_action_label_key(k) {
                        problems.push(format!(
                            "actions.labels: no action the catalog declares has the label key '{k}'; declare actions with labels under a resource's actions in {}",
                            catalog::RESOURCES_FILE
                        ));
                    }
                    labels.insert(k.clone(), v.to_string());
                }
            }
            if labels.is_empty() && problems.len() == before {
                problems.push(
                    "actions.labels: name at least one label, like actions = { labels = { effect = \"read\" } }".into(),
                );
            }
            Actions::Labelled(ActionSelector { labels })
        }
        _ => {
            problems.push(shape.into());
            Actions::Named(Vec::new())
        }
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
