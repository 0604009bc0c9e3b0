//! The policy directory: the single source of truth for who may request what, who must
//! approve, what is automatic, and the limits. Loaded and validated once, shared immutably
//! (`Arc`), swapped whole on reload.
//!
//! A directory holds `directory.toml` (principals and groups), `workflows.toml` (approval
//! steps and limits per resource and action), any number of `*.cedar` files (conditions, in
//! Cedar, validated against the shipped schema), optionally `oncall.toml` (the on-call
//! schedule), `resources.toml` and `resources/*.toml` (the resource catalog that workflows
//! select from) and `tests/*.toml` (the policy's own test cases). See docs/policy.md.

pub mod catalog;
pub mod cedar;
pub mod diff;
pub mod http;
pub mod oncall;
pub mod testing;
pub mod workflow;

pub use catalog::{Catalog, Collection, Resource, RESOURCES_DIR, RESOURCES_FILE};
use cedar::{Ability, CedarRules, Facts};
pub use http::{normalize_path, HttpRoutes, Route, Unroutable};
use jitgate_core::admission::{Admission, Ask};
use jitgate_core::text::{self, Lines};
use jitgate_core::{DomainError, DurationSecs, Identity, Request, Requirement, Step, Timestamp};
use oncall::Schedule;
use std::path::Path;
pub use workflow::{
    github_login_problem, is_reserved_group, ActionSelector, DirectoryEntry, Extension, Matched, PolicyError,
    PostgresAccess, Rules, Selector, Specificity, TicketPlace, Workflow, AGENTS_GROUP, DIRECTORY_FILE,
    GITHUB_LOGIN_MAX, MAX_TICKET_HINT, MCP_KIND, RESERVED_GROUPS, WORKFLOWS_FILE,
};

/// A loaded, validated policy.
pub struct Policy {
    rules: Rules,
    cedar: CedarRules,
    schedule: Schedule,
    /// What an identity provider provisioned (SCIM), when the server keeps such a directory:
    /// managers and members beyond `directory.toml`. `None` for `policy check`, `test` and
    /// `diff`, which judge the files alone.
    provisioned: Option<std::sync::Arc<dyn ProvisionedDirectory>>,
}

/// The directory an identity provider provisions, as the policy reads it: answered from
/// memory, never waiting on anything. `directory.toml` wins: the policy asks here only about
/// principals the file does not name.
pub trait ProvisionedDirectory: Send + Sync {
    /// The principal of `principal`'s manager, when the identity provider names an active one.
    fn manager_of(&self, principal: &str) -> Option<String>;
    /// The principals of the active members of `group`.
    fn members_of(&self, group: &str) -> Vec<String>;
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("principals", &self.rules.principals().count())
            .field("workflows", &self.rules.workflows().count())
            .field("cedar_policies", &self.cedar.authored)
            .finish()
    }
}

/// The request `explain_for` imagines, and what it asks about it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Situation<'a> {
    /// A reason that satisfies the workflow when `None`.
    pub reason: Option<&'a str>,
    /// The workflow's default when `None`.
    pub duration: Option<DurationSecs>,
    pub now: Timestamp,
    /// Ask whether it may be filed and what it needs (else the verdict is `Refused`).
    pub filing: bool,
    /// Ask whether the principal may break glass instead.
    pub break_glass: bool,
}

/// What the policy would do with a request, for `explain`, `test` and `diff`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It may not be filed; the text says why.
    Refused(String),
    /// Granted at once without review.
    Automatic,
    /// Granted once every step has its approvals.
    NeedsApproval(Vec<Step>),
}

/// The policy's full answer on one principal, resource and action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub verdict: Verdict,
    /// Whether the principal could break glass instead, and for how long at most.
    pub break_glass: Option<DurationSecs>,
    pub max_duration: Option<DurationSecs>,
    pub reason_required: bool,
    pub ticket_pattern: Option<String>,
    pub action_bound: bool,
    pub single_use: bool,
    /// Which workflow governs the resource and action, and by which selector; `None` when
    /// none does.
    pub matched: Option<Matched>,
}

impl Policy {
    /// Read and validate the policy directory `dir`.
    pub fn load(dir: &Path) -> Result<Policy, Vec<PolicyError>> {
        let read_error = |name: &Path, e: std::io::Error| PolicyError {
            file: name.display().to_string(),
            line: 0,
            message: format!("cannot read: {e}"),
        };
        let read =
            |name: &str| std::fs::read_to_string(dir.join(name)).map_err(|e| vec![read_error(&dir.join(name), e)]);
        let directory = read(DIRECTORY_FILE)?;
        let workflows = read(WORKFLOWS_FILE)?;
        let oncall = match std::fs::read_to_string(dir.join(oncall::ONCALL_FILE)) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(vec![read_error(&dir.join(oncall::ONCALL_FILE), e)]),
        };
        let mut cedar_files = Vec::new();
        let entries = std::fs::read_dir(dir).map_err(|e| vec![read_error(dir, e)])?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|x| x == "cedar") {
                let name = entry.file_name().to_string_lossy().into_owned();
                let text = std::fs::read_to_string(&path).map_err(|e| vec![read_error(&path, e)])?;
                cedar_files.push((name, text));
            }
        }
        cedar_files.sort();
        let mut resource_files = Vec::new();
        match std::fs::read_to_string(dir.join(RESOURCES_FILE)) {
            Ok(text) => resource_files.push((RESOURCES_FILE.to_string(), text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(vec![read_error(&dir.join(RESOURCES_FILE), e)]),
        }
        match std::fs::read_dir(dir.join(RESOURCES_DIR)) {
            Ok(entries) => {
                let mut more = Vec::new();
                for entry in entries.flatten() {
                    let path = entry.path();
                    if path.extension().is_some_and(|x| x == "toml") {
                        let name = format!("{RESOURCES_DIR}/{}", entry.file_name().to_string_lossy());
                        let text = std::fs::read_to_string(&path).map_err(|e| vec![read_error(&path, e)])?;
                        more.push((name, text));
                    }
                }
                more.sort();
                resource_files.extend(more);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(vec![read_error(&dir.join(RESOURCES_DIR), e)]),
        }
        // Name files by their path so `file:line` jumps straight to them from anywhere.
        Policy::from_texts_with_catalog(&directory, &workflows, oncall.as_deref(), &cedar_files, &resource_files)
            .map_err(|errors| {
                errors
                    .into_iter()
                    .map(|e| PolicyError {
                        file: dir.join(&e.file).display().to_string(),
                        ..e
                    })
                    .collect()
            })
    }

    /// Build a policy from file contents (no I/O).
    pub fn from_texts(
        directory: &str,
        workflows: &str,
        oncall: Option<&str>,
        cedar_files: &[(String, String)],
    ) -> Result<Policy, Vec<PolicyError>> {
        Policy::from_texts_with_catalog(directory, workflows, oncall, cedar_files, &[])
    }

    /// `from_texts` with the resource catalog's files, as (file name, text) pairs in reading
    /// order: `resources.toml`, then `resources/NAME.toml` by name.
    pub fn from_texts_with_catalog(
        directory: &str,
        workflows: &str,
        oncall: Option<&str>,
        cedar_files: &[(String, String)],
        resource_files: &[(String, String)],
    ) -> Result<Policy, Vec<PolicyError>> {
        let rules = Rules::parse_with_catalog(directory, workflows, resource_files)?;
        let schedule = match oncall {
            Some(text) => Schedule::parse(text)?,
            None => Schedule::default(),
        };
        let mut errors = Vec::new();
        for (group, principal) in schedule.shifts() {
            if rules.principal(principal).is_none() {
                errors.push(PolicyError {
                    file: oncall::ONCALL_FILE.into(),
                    line: 0,
                    message: format!("shift for '{group}': unknown principal '{principal}'"),
                });
            }
        }
        let cedar = CedarRules::build(&rules, cedar_files);
        match cedar {
            Ok(cedar) if errors.is_empty() => Ok(Policy {
                rules,
                cedar,
                schedule,
                provisioned: None,
            }),
            Ok(_) => Err(errors),
            Err(mut e) => {
                errors.append(&mut e);
                Err(errors)
            }
        }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Read managers and members from `directory` too (what an identity provider provisions).
    pub fn with_provisioned(mut self, directory: std::sync::Arc<dyn ProvisionedDirectory>) -> Self {
        self.provisioned = Some(directory);
        self
    }

    /// The manager of `principal`: as `directory.toml` says when it names the principal (the
    /// file is reviewed in git and wins), else as the identity provider says.
    pub fn manager_of(&self, principal: &str) -> Option<String> {
        match self.rules.principal(principal) {
            Some(entry) => entry.manager.clone(),
            None => self.provisioned.as_ref().and_then(|d| d.manager_of(principal)),
        }
    }

    /// Every member of `group`: those `directory.toml` names and the identity provider's
    /// active members whom the file does not name (the file's entry wins), sorted.
    pub fn members_of(&self, group: &str) -> Vec<String> {
        let mut members: Vec<String> = self.rules.members_of(group).map(str::to_string).collect();
        if let Some(directory) = &self.provisioned {
            members.extend(
                directory
                    .members_of(group)
                    .into_iter()
                    .filter(|p| self.rules.principal(p).is_none()),
            );
        }
        members.sort();
        members.dedup();
        members
    }

    /// Refuse a request whose step on a provisioned group cannot get its approvals: fewer
    /// eligible members (active, not the requester, not the person an agent acts for) than it
    /// needs. Judged only where a provisioned directory is kept (on the server).
    fn check_provisioned_steps(&self, steps: &[Step], who: &Identity, name: &str) -> Result<(), DomainError> {
        if self.provisioned.is_none() {
            return Ok(());
        }
        for step in steps {
            if !self.rules.is_provisioned(&step.group) {
                continue;
            }
            let eligible = self
                .members_of(&step.group)
                .into_iter()
                .filter(|p| p != &who.principal && Some(p.as_str()) != who.on_behalf_of.as_deref())
                .count();
            if eligible < step.approvals as usize {
                let besides = match &who.on_behalf_of {
                    Some(person) => format!("{} and {person}", who.principal),
                    None => who.principal.clone(),
                };
                return Err(DomainError::Forbidden(format!(
                    "{name} needs {} approval{} from {group}, but {group} has {eligible} member{} besides {besides} who may approve: add reviewers to {group} in the identity provider",
                    step.approvals,
                    if step.approvals == 1 { "" } else { "s" },
                    if eligible == 1 { "" } else { "s" },
                    group = step.group,
                )));
            }
        }
        Ok(())
    }

    /// Would `who` (their directory identity now) still be let file `request` (or the item of
    /// it a grant view shows)? Cedar's `request` ability (`break_glass` for a break-glass
    /// grant) alone is judged: duration, reason and ticket limits held when it was filed and
    /// are not judged again. A workflow gone from the policy keeps what was filed.
    pub fn still_admits(&self, who: &Identity, request: &Request, now: Timestamp) -> Result<(), DomainError> {
        let Ok(workflow) = self.rules.workflow(&request.resource, &request.action) else {
            return Ok(());
        };
        let ask = Ask {
            resource: &request.resource,
            action: &request.action,
            duration: Some(request.duration),
            reason: &request.reason,
            payload: request.payload.as_deref(),
            break_glass: request.break_glass,
        };
        let facts = self.facts(who, workflow, &ask, request.duration, now, &who.principal);
        let ability = if request.break_glass {
            Ability::BreakGlass
        } else {
            Ability::Request
        };
        let d = self.cedar.decide(who, ability, &request.resource, &facts);
        if d.allowed {
            return Ok(());
        }
        let why = if d.forbidden_by.is_empty() {
            "no policy permits it".to_string()
        } else {
            format!("forbidden by policy {}", d.forbidden_by.join(", "))
        };
        Err(DomainError::Forbidden(format!(
            "{} may no longer {} {} on {}: {why}",
            who.principal,
            if request.break_glass {
                "break glass for"
            } else {
                "request"
            },
            request.action,
            request.resource
        )))
    }

    /// How requests to web applications (catalog resources of kind http) resolve to a
    /// resource and action: built once at load, answered from memory.
    pub fn http_routes(&self) -> &HttpRoutes {
        self.rules.catalog().http_routes()
    }

    pub fn principals(&self) -> impl Iterator<Item = &DirectoryEntry> {
        self.rules.principals()
    }

    pub fn workflows(&self) -> impl Iterator<Item = &Workflow> {
        self.rules.workflows()
    }

    /// Ids of the policies the `.cedar` files define.
    pub fn cedar_policy_ids(&self) -> &[String] {
        &self.cedar.authored
    }

    fn facts<'a>(
        &self,
        who: &'a Identity,
        workflow: &'a Workflow,
        ask: &Ask<'a>,
        duration: DurationSecs,
        now: Timestamp,
        requester: &'a str,
    ) -> Facts<'a> {
        Facts {
            access: &workflow.action,
            duration_seconds: duration.0,
            reason: ask.reason,
            ticket: workflow.ticket(ask.reason).unwrap_or(""),
            now,
            on_call: self.schedule.on_call(&who.principal, now),
            ci: who.ci.as_ref(),
            requester,
            reviewer_is_manager: requester != who.principal
                && self.manager_of(requester).as_deref() == Some(who.principal.as_str()),
            escalated: false,
            // The principal's person; `may_review` puts the request's in its place.
            // A CI job's `on_behalf_of` (who triggered it) makes it no agent.
            on_behalf_of: who.agent_person().unwrap_or(""),
            action_labels: &workflow.action_labels,
        }
    }

    /// Judge a request: may `who` file it, and what will it need? The same evaluation serves
    /// filing, `explain`, `test` and `diff`.
    pub fn admit(&self, who: &Identity, ask: &Ask<'_>, now: Timestamp) -> Result<Admission, DomainError> {
        let workflow = self.rules.workflow(ask.resource, ask.action)?;
        let duration = workflow.limits(ask)?;
        let facts = self.facts(who, workflow, ask, duration, now, &who.principal);
        let name = format!("{} on {}", ask.action, ask.resource);
        let question = self.cedar.ask(who, ask.resource, &facts);
        let refusal = |ability: Ability, verb: &str, groups: &[String]| {
            let d = question.decide(ability);
            if d.allowed {
                return Ok(d.permitted_by);
            }
            let why = if !d.forbidden_by.is_empty() {
                format!("forbidden by policy {}", d.forbidden_by.join(", "))
            } else if groups.is_empty() {
                "no policy permits it".to_string()
            } else {
                format!("only members of {} may", groups.join(", "))
            };
            Err(DomainError::Forbidden(format!(
                "{} may not {verb} {name}: {why}",
                who.principal
            )))
        };
        // Who decided that no review is needed: the permits Cedar names, for the audit log.
        let mut decided_by = None;
        let steps = if ask.break_glass {
            // Break-glass trusts a person's judgement in an emergency, with nobody asked first;
            // an agent's judgement is what review exists for.
            if let Some(person) = who.agent_person() {
                return Err(DomainError::Forbidden(format!(
                    "{} may not break glass for {name}: it is an agent acting for {person}, and agents never break glass; {person} may, in person",
                    who.principal
                )));
            }
            let groups = workflow
                .break_glass
                .as_ref()
                .map(|b| b.groups.clone())
                .unwrap_or_default();
            let permits = refusal(Ability::BreakGlass, "break glass for", &groups)?;
            decided_by = Some(self.cedar.describe(&permits, ask.resource, ask.action));
            Vec::new()
        } else {
            refusal(Ability::Request, "request", &workflow.requesters)?;
            let automatic = question.decide(Ability::AutoApprove);
            if automatic.allowed {
                decided_by = Some(self.cedar.describe(&automatic.permitted_by, ask.resource, ask.action));
                Vec::new()
            } else if workflow.steps.is_empty() {
                // An automatic workflow whose automatic approval a `forbid` took away has no
                // reviewers to fall back on: refused, never granted as if nothing forbade it
                // (a forbid on `auto_approve` for agents must not leave them automatic).
                return Err(DomainError::Forbidden(format!(
                    "{} may not request {name} without review ({}), and its workflow names no reviewers to ask instead; add steps to the workflow for those it forbids",
                    who.principal,
                    if automatic.forbidden_by.is_empty() {
                        "no policy approves it automatically".to_string()
                    } else {
                        format!("forbidden by policy {}", automatic.forbidden_by.join(", "))
                    }
                )));
            } else {
                let steps = self.resolve_steps(&workflow.steps, &who.principal)?;
                self.check_provisioned_steps(&steps, who, &format!("{} {}", ask.resource, ask.action))?;
                steps
            }
        };
        // Only a request that waits for review can escalate.
        let escalation = workflow.escalation.clone().filter(|_| !steps.is_empty());
        Ok(Admission {
            requirement: Requirement {
                steps,
                single_use: workflow.single_use,
                action_bound: workflow.action_bound,
                pending_ttl: workflow.pending_ttl,
                review_groups: match (&workflow.break_glass, ask.break_glass) {
                    (Some(bg), true) => bg.reviewers.clone(),
                    _ => Vec::new(),
                },
                alert: workflow
                    .break_glass
                    .as_ref()
                    .filter(|_| ask.break_glass)
                    .and_then(|bg| bg.alert.clone()),
                providers: workflow.providers.clone(),
                escalation,
            },
            duration,
            decided_by,
        })
    }

    /// What `who` would face asking for `workflow`'s action on its resource now, for listings
    /// of what one may request: `None` when Cedar would refuse the request outright. Judged as
    /// [`Policy::admit`] judges a request for the workflow's default duration with no reason
    /// yet, so authored forbids and automatic approvals (on call, CI) show as they would apply.
    pub fn prospect(&self, who: &Identity, workflow: &Workflow, now: Timestamp) -> Option<Verdict> {
        let ask = Ask {
            resource: &workflow.resource,
            action: &workflow.action,
            duration: None,
            reason: "",
            payload: None,
            break_glass: false,
        };
        let facts = self.facts(who, workflow, &ask, workflow.default_duration, now, &who.principal);
        let question = self.cedar.ask(who, &workflow.resource, &facts);
        if !question.decide(Ability::Request).allowed {
            return None;
        }
        if question.decide(Ability::AutoApprove).allowed {
            return Some(Verdict::Automatic);
        }
        // The manager step stays "the requester's manager" when the directory names none:
        // filing would then say so; the listing still shows what the workflow asks.
        let steps = self
            .resolve_steps(&workflow.steps, &who.principal)
            .unwrap_or_else(|_| workflow.steps.clone());
        Some(if steps.is_empty() {
            Verdict::Automatic
        } else {
            Verdict::NeedsApproval(steps)
        })
    }

    /// The longest `who` may break glass on `workflow` for now, for listings and forms:
    /// `None` when the workflow has no break-glass procedure, `who` is an agent (agents never
    /// break glass), or Cedar's `break_glass` refuses. Judged as [`Policy::admit`] judges a
    /// break-glass ask, without the limits a request's text must meet (a ticket, a payload):
    /// those are the form's to ask for, not a reason to hide the procedure.
    pub fn break_glass_prospect(&self, who: &Identity, workflow: &Workflow, now: Timestamp) -> Option<DurationSecs> {
        let procedure = workflow.break_glass.as_ref()?;
        if who.agent_person().is_some() {
            return None;
        }
        let ask = Ask {
            resource: &workflow.resource,
            action: &workflow.action,
            duration: None,
            reason: "",
            payload: None,
            break_glass: true,
        };
        let facts = self.facts(who, workflow, &ask, procedure.max_duration, now, &who.principal);
        self.cedar
            .decide(who, Ability::BreakGlass, &workflow.resource, &facts)
            .allowed
            .then_some(procedure.max_duration)
    }

    /// Turn a workflow's steps into a request's: "the requester's manager" becomes that one
    /// principal, as the directory names them.
    fn resolve_steps(&self, steps: &[Step], requester: &str) -> Result<Vec<Step>, DomainError> {
        steps
            .iter()
            .map(|s| {
                if s.group != Step::MANAGER {
                    return Ok(s.clone());
                }
                match self.manager_of(requester) {
                    Some(manager) => Ok(Step::principal(&manager)),
                    None => Err(DomainError::Forbidden(format!(
                        "{requester} has no manager in the directory, and this workflow needs their approval"
                    ))),
                }
            })
            .collect()
    }

    /// May `reviewer` review `request`? Cedar's `approve` decides, per the request's resource
    /// and context; the state machine still refuses self-approval and double counting.
    pub fn may_review(&self, reviewer: &Identity, request: &Request, now: Timestamp) -> Result<(), DomainError> {
        let Ok(workflow) = self.rules.workflow(&request.resource, &request.action) else {
            // The workflow is gone from the policy: the request keeps the requirement it was
            // filed under, which the state machine enforces on its own.
            return Ok(());
        };
        let ask = Ask {
            resource: &request.resource,
            action: &request.action,
            duration: Some(request.duration),
            reason: &request.reason,
            payload: request.payload.as_deref(),
            break_glass: request.break_glass,
        };
        // The person the request's agent acts for, not the reviewer's: a policy may say who
        // reviews agents' requests.
        let mut facts = self.facts(reviewer, workflow, &ask, request.duration, now, &request.requester);
        facts.on_behalf_of = request.agent_person().unwrap_or("");
        facts.escalated = request.escalated_at.is_some();
        let d = self.cedar.decide(reviewer, Ability::Approve, &request.resource, &facts);
        if d.allowed {
            return Ok(());
        }
        let why = if d.forbidden_by.is_empty() {
            "not an approver of it".to_string()
        } else {
            format!("forbidden by policy {}", d.forbidden_by.join(", "))
        };
        Err(DomainError::Forbidden(format!(
            "{} may not review request {}: {why}",
            reviewer.principal, request.id
        )))
    }

    /// May `who` extend the grant of `request` by `duration` now? Returns the limits the state
    /// machine applies: how many extensions a grant may have and the longest it may then last.
    pub fn admit_extension(
        &self,
        who: &Identity,
        request: &Request,
        duration: DurationSecs,
        reason: &str,
        now: Timestamp,
    ) -> Result<jitgate_core::machine::ExtensionLimits, DomainError> {
        let workflow = self.rules.workflow(&request.resource, &request.action)?;
        let name = format!("{} on {}", request.action, request.resource);
        let Some(extension) = &workflow.extension else {
            return Err(DomainError::Forbidden(format!(
                "grants for {name} cannot be extended; file a new request"
            )));
        };
        if extension.requires_approval {
            return Err(DomainError::Forbidden(format!(
                "extending {name} needs approval again: file a new request; its grant will overlap this one"
            )));
        }
        DomainError::check_len("reason", reason, jitgate_core::admission::MAX_REASON_LEN)?;
        text::check_reviewed("reason", reason, Lines::Many)?;
        if workflow.reason_required && text::trim_invisible(reason).is_empty() {
            return Err(DomainError::invalid(
                "reason",
                format!("say why {name} must last longer (under 2000 bytes)"),
            ));
        }
        let ask = Ask {
            resource: &request.resource,
            action: &request.action,
            duration: Some(duration),
            reason,
            payload: None,
            break_glass: false,
        };
        let facts = self.facts(who, workflow, &ask, duration, now, &request.requester);
        let d = self.cedar.decide(who, Ability::Extend, &request.resource, &facts);
        if !d.allowed {
            let why = if d.forbidden_by.is_empty() {
                "no policy permits it".to_string()
            } else {
                format!("forbidden by policy {}", d.forbidden_by.join(", "))
            };
            return Err(DomainError::Forbidden(format!(
                "{} may not extend {name}: {why}",
                who.principal
            )));
        }
        let max_duration = if request.break_glass {
            workflow
                .break_glass
                .as_ref()
                .map_or(workflow.max_duration, |b| b.max_duration)
        } else {
            workflow.max_duration
        };
        Ok(jitgate_core::machine::ExtensionLimits {
            max_times: extension.max_times,
            max_duration,
        })
    }

    /// What would happen if `who` asked for `action` on `resource` now, with the workflow's
    /// default duration and a reason that satisfies its rules.
    pub fn explain(
        &self,
        who: &Identity,
        resource: &str,
        action: &str,
        reason: Option<&str>,
        now: Timestamp,
    ) -> Explanation {
        let situation = Situation {
            reason,
            duration: None,
            now,
            filing: true,
            break_glass: true,
        };
        self.explain_for(who, resource, action, &situation)
    }

    /// `explain` in a given situation.
    pub(crate) fn explain_for(
        &self,
        who: &Identity,
        resource: &str,
        action: &str,
        situation: &Situation<'_>,
    ) -> Explanation {
        let Situation {
            reason,
            duration,
            now,
            filing,
            break_glass,
        } = *situation;
        let workflow = match self.rules.workflow(resource, action) {
            Ok(w) => w,
            Err(e) => {
                return Explanation {
                    verdict: Verdict::Refused(e.to_string()),
                    break_glass: None,
                    max_duration: None,
                    reason_required: false,
                    ticket_pattern: None,
                    action_bound: false,
                    single_use: false,
                    matched: None,
                }
            }
        };
        let sample_reason = reason.unwrap_or(if workflow.ticket_pattern.is_some() {
            "explain OPS-1"
        } else {
            "explain"
        });
        let payload = workflow.action_bound.then_some("explain");
        let mut ask = Ask {
            resource,
            action,
            duration,
            reason: sample_reason,
            payload,
            break_glass: false,
        };
        let verdict = if !filing {
            Verdict::Refused("not asked".into())
        } else {
            match self.admit(who, &ask, now) {
                Ok(a) if a.requirement.steps.is_empty() => Verdict::Automatic,
                Ok(a) => Verdict::NeedsApproval(a.requirement.steps),
                Err(e) => Verdict::Refused(e.to_string()),
            }
        };
        ask.break_glass = true;
        let break_glass = if break_glass {
            self.admit(who, &ask, now).ok().map(|a| a.duration)
        } else {
            None
        };
        Explanation {
            verdict,
            break_glass,
            max_duration: Some(workflow.max_duration),
            reason_required: workflow.reason_required,
            ticket_pattern: workflow.ticket_pattern.as_ref().map(|p| p.as_str().to_string()),
            action_bound: workflow.action_bound,
            single_use: workflow.single_use,
            matched: self.rules.matched(resource, action).cloned(),
        }
    }

    /// Would Cedar let `who` approve (`Ability::Approve`, a request by `requester`) or extend
    /// (`Ability::Extend`, their own grant) `action` on `resource` under these facts? `None`
    /// when the policy has no such workflow. For `policy diff`'s search.
    pub(crate) fn cedar_allows(
        &self,
        who: &Identity,
        ability: Ability,
        ask: &Ask<'_>,
        requester: &str,
        now: Timestamp,
    ) -> Option<bool> {
        let workflow = self.rules.workflow(ask.resource, ask.action).ok()?;
        if ability == Ability::Extend && workflow.extension.as_ref().is_none_or(|e| e.requires_approval) {
            return Some(false);
        }
        let duration = ask.duration.unwrap_or(workflow.default_duration);
        let mut facts = self.facts(who, workflow, ask, duration, now, requester);
        if ability == Ability::Approve {
            // The requester diff imagines is a person, whoever reviews.
            facts.on_behalf_of = "";
        }
        Some(self.cedar.decide(who, ability, ask.resource, &facts).allowed)
    }

    /// The policies of the directory's `.cedar` files, in file order.
    pub fn cedar_sources(&self) -> &[cedar::AuthoredPolicy] {
        &self.cedar.sources
    }
}

/// An explanation as JSON, with a one-line summary for people.
pub fn explanation_json(principal: &str, resource: &str, action: &str, e: &Explanation) -> serde_json::Value {
    let (verdict, needs, why) = match &e.verdict {
        Verdict::Refused(why) => ("refused", Vec::new(), Some(why.clone())),
        Verdict::Automatic => ("automatic", Vec::new(), None),
        Verdict::NeedsApproval(steps) => ("approval", steps.clone(), None),
    };
    let mut summary = match &e.verdict {
        Verdict::Refused(why) => format!("refused: {why}"),
        Verdict::Automatic => format!("{principal} gets {action} on {resource} automatically"),
        Verdict::NeedsApproval(steps) => format!(
            "{principal} needs {} for {action} on {resource}",
            steps
                .iter()
                .map(|s| format!(
                    "{} from {}",
                    jitgate_core::text::counted(s.approvals, "approval", "approvals"),
                    s.group
                ))
                .collect::<Vec<_>>()
                .join(" and ")
        ),
    };
    if let (false, Some(max)) = (matches!(e.verdict, Verdict::Refused(_)), e.max_duration) {
        summary.push_str(&format!("; at most {max}"));
        if e.reason_required {
            summary.push_str("; a reason is required");
        }
        if let Some(p) = &e.ticket_pattern {
            summary.push_str(&format!(" naming a ticket (/{p}/)"));
        }
        if e.action_bound {
            summary.push_str("; bound to one exact payload");
        }
        if e.single_use {
            summary.push_str(", single use");
        }
    }
    if let Some(bg) = e.break_glass {
        summary.push_str(&format!("; may break glass for up to {bg}"));
    }
    serde_json::json!({
        "principal": principal,
        "resource": resource,
        "action": action,
        "verdict": verdict,
        "needs": needs.iter().map(|s| serde_json::json!({"group": s.group, "approvals": s.approvals})).collect::<Vec<_>>(),
        "refused_because": why,
        "max_duration": e.max_duration.map(|d| d.to_string()),
        "break_glass_max": e.break_glass.map(|d| d.to_string()),
        "reason_required": e.reason_required,
        "ticket_pattern": e.ticket_pattern,
        "action_bound": e.action_bound,
        "single_use": e.single_use,
        "summary": summary,
        "workflow": e.matched.as_ref().map(|m| serde_json::json!({
            "file": m.file,
            "line": m.line,
            "selector": m.selector,
            "specificity": specificity_word(m.specificity),
        })),
        "governed_by": e.matched.as_ref().map(governed_by),
    })
}

/// How a specificity is named in JSON: `exact`, `glob` or `labels`.
pub fn specificity_word(s: Specificity) -> &'static str {
    match s {
        Specificity::Exact => "exact",
        Specificity::Glob => "glob",
        Specificity::Labels => "labels",
    }
}

/// Which workflow governs a (resource, action), for people:
/// `the workflow at workflows.toml:12, resources = { labels = { env = "staging" } } (by labels)`.
pub fn governed_by(m: &Matched) -> String {
    let by = match m.specificity {
        Specificity::Exact => "by exact name",
        Specificity::Glob => "by name glob",
        Specificity::Labels => "by kind/labels",
    };
    let action = if m.by_action_labels {
        ", the action by its labels"
    } else {
        ""
    };
    format!("the workflow at {}:{}, {} ({by}{action})", m.file, m.line, m.selector)
}
