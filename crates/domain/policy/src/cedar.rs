//! The Cedar half of the policy: who may request, have it approved automatically, break
//! glass, and approve. Workflow shorthands (`requesters`, `auto_approve`, `break_glass.groups`,
//! approval step groups) become a few generated policies; the directory's `*.cedar` files add
//! conditions on the request context. Everything is parsed and validated once, at load.

use crate::workflow::{PolicyError, Rules, Workflow};
use cedar_policy::{
    ActionConstraint, Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid, Policy,
    PolicyId, PolicySet, PrincipalConstraint, Request, ResourceConstraint, RestrictedExpression, Schema,
    ValidationMode, Validator,
};
use jitgate_core::{CiClaims, Identity, Step, Timestamp};
use miette::Diagnostic;
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::str::FromStr;

/// The schema every policy directory is validated against.
pub const SCHEMA: &str = include_str!("schema.cedarschema");

/// The Cedar actions jitgate asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ability {
    Request,
    AutoApprove,
    BreakGlass,
    Approve,
    Extend,
}

impl Ability {
    pub const ALL: [Ability; 5] = [
        Ability::Request,
        Ability::AutoApprove,
        Ability::BreakGlass,
        Ability::Approve,
        Ability::Extend,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Ability::Request => "request",
            Ability::AutoApprove => "auto_approve",
            Ability::BreakGlass => "break_glass",
            Ability::Approve => "approve",
            Ability::Extend => "extend",
        }
    }
}

/// What the request context holds, before it becomes a Cedar record.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub access: &'a str,
    pub duration_seconds: u64,
    pub reason: &'a str,
    pub ticket: &'a str,
    pub now: Timestamp,
    pub on_call: Vec<String>,
    pub ci: Option<&'a CiClaims>,
    pub requester: &'a str,
    pub reviewer_is_manager: bool,
    /// For `approve`: nobody decided the request in time and backup reviewers were called in.
    pub escalated: bool,
}

/// Cedar's answer, with the policies that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CedarDecision {
    pub allowed: bool,
    /// When refused by a `forbid`: its id (the `@id` annotation, or `FILE#N`).
    pub forbidden_by: Vec<String>,
    /// When allowed: the ids of the `permit` policies that allowed it, sorted.
    pub permitted_by: Vec<String>,
}

/// A policy of a `.cedar` file, as `policy diff` compares and searches it.
#[derive(Debug, Clone)]
pub struct AuthoredPolicy {
    /// The `@id` annotation, or `FILE#N`.
    pub id: String,
    pub file: String,
    pub line: usize,
    /// `permit` or `forbid`.
    pub effect: &'static str,
    /// The head: `permit(principal in Group::"dev", action == Action::"request", resource)`.
    pub scope: String,
    /// The policy's text on one line.
    pub text: String,
    /// What it says, independent of layout, comments and annotations: equal for the same policy.
    pub meaning: String,
    /// The abilities it can decide; `None` for any.
    pub abilities: Option<Vec<Ability>>,
    /// The one resource it is limited to, if any.
    pub resource: Option<String>,
    /// Literals it holds: strings (a `like` pattern with its wildcards taken out) and numbers.
    pub strings: Vec<String>,
    pub numbers: Vec<i64>,
    /// The users it names (`User::"alice"`), who may be in no directory (OIDC principals).
    pub users: Vec<String>,
}

pub struct CedarRules {
    /// Per resource and ability, the policies that can apply: those naming that resource (or
    /// none) and that action (or none). Cedar evaluates every policy of the set it is given,
    /// so asking with these small sets keeps a decision's cost independent of the policy's
    /// size, and a question no `permit` can answer is denied without evaluation (Cedar denies
    /// by default, so the answer is the same).
    by_scope: HashMap<(String, Ability), Scoped>,
    /// Per ability, the policies tied to no single resource, for resources no workflow names.
    unscoped: HashMap<Ability, Scoped>,
    authorizer: Authorizer,
    /// The Cedar entities of each directory principal, built once: used when a caller's
    /// groups are exactly the directory's (a token with other groups gets its own).
    directory_entities: HashMap<String, (Vec<String>, Entities)>,
    actions: HashMap<Ability, EntityUid>,
    user_type: EntityTypeName,
    group_type: EntityTypeName,
    resource_type: EntityTypeName,
    /// Ids of the policies the directory's `.cedar` files wrote (not the generated ones).
    pub authored: Vec<String>,
    /// Those policies in full, in file order.
    pub sources: Vec<AuthoredPolicy>,
    /// Every policy's id to where it comes from, for people: `cedar policy ID at FILE:LINE`
    /// or `workflow RESOURCE ACTION (workflows.toml: ...)`.
    origins: HashMap<String, String>,
}

fn uid(type_name: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(type_name.clone(), EntityId::new(id))
}

fn cedar_string(value: &str) -> String {
    // Cedar string literals use the same escapes as Rust's debug form for ASCII.
    value.escape_default().to_string()
}

fn any_member(groups: &[String]) -> String {
    if groups.is_empty() {
        return "false".into();
    }
    groups
        .iter()
        .map(|g| format!("principal in Group::\"{}\"", cedar_string(g)))
        .collect::<Vec<_>>()
        .join(" || ")
}

/// How the ids of generated policies start: `workflows.toml: auto_approve prod-db write`.
const GENERATED_PREFIX: &str = "workflows.toml: ";

/// The workflow shorthand a generated policy for this Cedar action stands for.
fn shorthand_of(ability: &str) -> &'static str {
    match ability {
        "request" => "requesters",
        "auto_approve" => "auto_approve = true",
        "break_glass" => "break_glass.groups",
        "extend" => "extension",
        "approve" => "steps",
        _ => "workflows.toml",
    }
}

/// The policy as `policy diff` needs it: where it is, what it says, and its literals.
fn authored_policy(policy: &Policy, id: &str, file: &str, line: usize) -> AuthoredPolicy {
    let effect = match policy.effect() {
        cedar_policy::Effect::Permit => "permit",
        cedar_policy::Effect::Forbid => "forbid",
    };
    let principal = match policy.principal_constraint() {
        PrincipalConstraint::Any => "principal".to_string(),
        PrincipalConstraint::In(e) => format!("principal in {e}"),
        PrincipalConstraint::Eq(e) => format!("principal == {e}"),
        PrincipalConstraint::Is(t) => format!("principal is {t}"),
        PrincipalConstraint::IsIn(t, e) => format!("principal is {t} in {e}"),
    };
    let (action, abilities) = match policy.action_constraint() {
        ActionConstraint::Any => ("action".to_string(), None),
        ActionConstraint::Eq(a) => (
            format!("action == {a}"),
            Some(
                Ability::ALL
                    .into_iter()
                    .filter(|x| a.id().unescaped() == x.as_str())
                    .collect(),
            ),
        ),
        ActionConstraint::In(list) => (
            format!(
                "action in [{}]",
                list.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            ),
            Some(
                Ability::ALL
                    .into_iter()
                    .filter(|x| list.iter().any(|a| a.id().unescaped() == x.as_str()))
                    .collect(),
            ),
        ),
    };
    let (resource, only) = match policy.resource_constraint() {
        ResourceConstraint::Any => ("resource".to_string(), None),
        ResourceConstraint::In(e) => (format!("resource in {e}"), None),
        ResourceConstraint::Eq(e) => (format!("resource == {e}"), Some(e.id().unescaped().to_string())),
        ResourceConstraint::Is(t) => (format!("resource is {t}"), None),
        ResourceConstraint::IsIn(t, e) => (format!("resource is {t} in {e}"), None),
    };
    let mut meaning = policy
        .to_json()
        .unwrap_or_else(|_| serde_json::Value::String(policy.to_string()));
    if let Some(fields) = meaning.as_object_mut() {
        fields.remove("annotations");
    }
    let mut found = Literals::default();
    found.collect(&meaning);
    let Literals {
        mut strings,
        mut numbers,
        mut users,
    } = found;
    let mut seen = HashSet::new();
    strings.retain(|s| seen.insert(s.clone()));
    let mut seen = HashSet::new();
    numbers.retain(|n| seen.insert(*n));
    let mut seen = HashSet::new();
    users.retain(|u| seen.insert(u.clone()));
    AuthoredPolicy {
        id: id.to_string(),
        file: file.to_string(),
        line,
        effect,
        scope: format!("{effect}({principal}, {action}, {resource})"),
        text: policy.to_string().split_whitespace().collect::<Vec<_>>().join(" "),
        meaning: meaning.to_string(),
        abilities,
        resource: only,
        strings,
        numbers,
        users,
    }
}

/// The literals of a policy's JSON form.
#[derive(Default)]
struct Literals {
    strings: Vec<String>,
    numbers: Vec<i64>,
    users: Vec<String>,
}

impl Literals {
    /// Strings and numbers (`{"Value": ...}`), users, and `like` patterns as the text they
    /// match with every `*` matching nothing.
    fn collect(&mut self, v: &serde_json::Value) {
        use serde_json::Value;
        match v {
            Value::Object(fields) => {
                for (key, value) in fields {
                    match (key.as_str(), value) {
                        ("Value", Value::String(s)) => self.strings.push(s.clone()),
                        ("Value", Value::Number(n)) => self.numbers.extend(n.as_i64()),
                        ("pattern", Value::Array(parts)) => self.strings.push(
                            parts
                                .iter()
                                .filter_map(|p| p.get("Literal").and_then(Value::as_str))
                                .collect::<String>(),
                        ),
                        // An entity: a user it names may be in no directory (an OIDC
                        // principal); groups, resources and actions are in the scope already.
                        ("id", Value::String(s)) => {
                            if fields.get("type").and_then(Value::as_str) == Some("User") {
                                self.users.push(s.clone());
                            }
                        }
                        _ => self.collect(value),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| self.collect(i)),
            _ => {}
        }
    }
}

/// The policies a workflow's shorthands stand for.
fn generated(w: &Workflow) -> Vec<(String, String)> {
    let scope = |ability: Ability| {
        format!(
            "permit(principal, action == Action::\"{}\", resource == Resource::\"{}\") when {{ context.access == \"{}\"",
            ability.as_str(),
            cedar_string(&w.resource),
            cedar_string(&w.action)
        )
    };
    let id = |ability: Ability| format!("{GENERATED_PREFIX}{} {} {}", ability.as_str(), w.resource, w.action);
    let mut out = Vec::new();
    if !w.requesters.is_empty() {
        out.push((
            id(Ability::Request),
            format!("{} && ({}) }};", scope(Ability::Request), any_member(&w.requesters)),
        ));
    }
    if w.auto_approve {
        out.push((id(Ability::AutoApprove), format!("{} }};", scope(Ability::AutoApprove))));
    }
    if let Some(bg) = &w.break_glass {
        out.push((
            id(Ability::BreakGlass),
            format!("{} && ({}) }};", scope(Ability::BreakGlass), any_member(&bg.groups)),
        ));
    }
    if w.extension.is_some() && !w.requesters.is_empty() {
        out.push((
            id(Ability::Extend),
            format!("{} && ({}) }};", scope(Ability::Extend), any_member(&w.requesters)),
        ));
    }
    let approvers: Vec<String> = w
        .steps
        .iter()
        .filter(|s| s.group != Step::MANAGER)
        .map(|s| s.group.clone())
        .collect();
    let manager_step = w.steps.iter().any(|s| s.group == Step::MANAGER);
    if !approvers.is_empty() || manager_step {
        let mut who = any_member(&approvers);
        if manager_step {
            who = format!("{who} || context.reviewer_is_manager");
        }
        if let Some(escalation) = &w.escalation {
            who = format!("{who} || (context.escalated && ({}))", any_member(&escalation.groups));
        }
        out.push((
            id(Ability::Approve),
            format!("{} && ({who}) }};", scope(Ability::Approve)),
        ));
    }
    out
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

fn diagnostic_line(diag: &dyn Diagnostic, text: &str) -> usize {
    diag.labels()
        .and_then(|mut labels| labels.next())
        .map(|l| line_of(text, l.offset()))
        .unwrap_or(1)
}

fn type_name(name: &str) -> Result<EntityTypeName, Vec<PolicyError>> {
    EntityTypeName::from_str(name).map_err(|e| {
        vec![PolicyError {
            file: "schema".into(),
            line: 0,
            message: format!("entity type {name}: {e}"),
        }]
    })
}

impl CedarRules {
    /// Build and validate the policy set from the workflows and the `.cedar` files, given as
    /// (file name, text) pairs.
    pub fn build(rules: &Rules, files: &[(String, String)]) -> Result<CedarRules, Vec<PolicyError>> {
        let mut errors = Vec::new();
        let (schema, _warnings) = Schema::from_cedarschema_str(SCHEMA).map_err(|e| {
            vec![PolicyError {
                file: "schema.cedarschema".into(),
                line: 0,
                message: format!("built-in schema: {e}"),
            }]
        })?;
        let mut policies = PolicySet::new();
        // Where each policy came from, to place validation errors.
        let mut origin: HashMap<String, (String, String)> = HashMap::new();

        let mut origins: HashMap<String, String> = HashMap::new();
        for w in rules.workflows() {
            for (id, text) in generated(w) {
                let shorthand = id
                    .strip_prefix(GENERATED_PREFIX)
                    .and_then(|rest| rest.split(' ').next())
                    .map(shorthand_of)
                    .unwrap_or("workflows.toml");
                origins.insert(
                    id.clone(),
                    format!("workflow {} {} ({shorthand} in workflows.toml)", w.resource, w.action),
                );
                match Policy::parse(Some(PolicyId::new(&id)), &text) {
                    Ok(p) => {
                        if let Err(e) = policies.add(p) {
                            errors.push(PolicyError {
                                file: "workflows.toml".into(),
                                line: 0,
                                message: e.to_string(),
                            });
                        }
                    }
                    Err(e) => errors.push(PolicyError {
                        file: "workflows.toml".into(),
                        line: 0,
                        message: format!("{}: generated policy is invalid: {e}", w.resource),
                    }),
                }
            }
        }

        let known_groups: BTreeSet<&str> = rules
            .principals()
            .flat_map(|p| p.identity.groups.iter().map(String::as_str))
            .collect();
        let known_resources: BTreeSet<&str> = rules.workflows().map(|w| w.resource.as_str()).collect();
        let group_type = type_name("Group")?;
        let resource_type = type_name("Resource")?;
        let mut authored = Vec::new();
        let mut sources = Vec::new();
        for (file, text) in files {
            let set = match PolicySet::from_str(text) {
                Ok(set) => set,
                Err(e) => {
                    for diag in e.iter() {
                        errors.push(PolicyError {
                            file: file.clone(),
                            line: diagnostic_line(diag, text),
                            message: diag.to_string(),
                        });
                    }
                    continue;
                }
            };
            for (n, policy) in set.policies().enumerate() {
                let id = policy
                    .annotation("id")
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{file}#{}", n + 1));
                let line = policy
                    .to_string()
                    .lines()
                    .next()
                    .and_then(|first| text.find(first.trim()))
                    .map(|offset| line_of(text, offset))
                    .unwrap_or(1);
                let mut unknown = |kind: &str, name: &str| {
                    errors.push(PolicyError {
                        file: file.clone(),
                        line,
                        message: format!("unknown {kind} '{name}'"),
                    })
                };
                if let PrincipalConstraint::In(g) | PrincipalConstraint::Eq(g) = policy.principal_constraint() {
                    if g.type_name() == &group_type && !known_groups.contains(g.id().unescaped()) {
                        unknown("group", g.id().unescaped());
                    }
                }
                if let ResourceConstraint::Eq(r) = policy.resource_constraint() {
                    if r.type_name() == &resource_type && !known_resources.contains(r.id().unescaped()) {
                        unknown("resource", r.id().unescaped());
                    }
                }
                origin.insert(id.clone(), (file.clone(), text.clone()));
                origins.insert(id.clone(), format!("cedar policy {id} at {file}:{line}"));
                sources.push(authored_policy(policy, &id, file, line));
                if let Err(e) = policies.add(policy.new_id(PolicyId::new(&id))) {
                    errors.push(PolicyError {
                        file: file.clone(),
                        line,
                        message: format!("{e}; give each policy a distinct @id"),
                    });
                }
                authored.push(id);
            }
        }

        let validation = Validator::new(schema).validate(&policies, ValidationMode::Strict);
        for e in validation.validation_errors() {
            let (file, line) = match origin.get(e.policy_id().to_string().as_str()) {
                Some((file, text)) => (file.clone(), diagnostic_line(e, text)),
                None => ("workflows.toml".to_string(), 0),
            };
            errors.push(PolicyError {
                file,
                line,
                message: e.to_string(),
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut actions = HashMap::new();
        let action_type = type_name("Action")?;
        for ability in Ability::ALL {
            actions.insert(ability, uid(&action_type, ability.as_str()));
        }
        let mut by_scope: HashMap<(String, Ability), Scoped> = HashMap::new();
        let mut unscoped: HashMap<Ability, Scoped> = HashMap::new();
        let mut add = |scoped: &mut Scoped, p: &Policy| {
            scoped.has_permit |= p.effect() == cedar_policy::Effect::Permit;
            if let Err(e) = scoped.policies.add(p.clone()) {
                errors.push(PolicyError {
                    file: "workflows.toml".into(),
                    line: 0,
                    message: e.to_string(),
                });
            }
        };
        for p in policies.policies() {
            let abilities: Vec<Ability> = match p.action_constraint() {
                ActionConstraint::Eq(a) => Ability::ALL
                    .into_iter()
                    .filter(|x| a.id().unescaped() == x.as_str())
                    .collect(),
                ActionConstraint::In(list) => Ability::ALL
                    .into_iter()
                    .filter(|x| list.iter().any(|a| a.id().unescaped() == x.as_str()))
                    .collect(),
                _ => Ability::ALL.to_vec(),
            };
            let resources: Vec<String> = match p.resource_constraint() {
                ResourceConstraint::Eq(r) if r.type_name() == &resource_type => vec![r.id().unescaped().to_string()],
                _ => known_resources.iter().map(|r| r.to_string()).collect(),
            };
            let for_any_resource = !matches!(p.resource_constraint(), ResourceConstraint::Eq(_));
            for ability in abilities {
                for resource in &resources {
                    add(by_scope.entry((resource.clone(), ability)).or_default(), p);
                }
                if for_any_resource {
                    add(unscoped.entry(ability).or_default(), p);
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let user_type = type_name("User")?;
        let directory_entities = rules
            .principals()
            .filter_map(|e| {
                let id = &e.identity;
                principal_entities(&user_type, &group_type, &id.principal, &id.groups)
                    .ok()
                    .map(|entities| (id.principal.clone(), (id.groups.clone(), entities)))
            })
            .collect();
        Ok(CedarRules {
            by_scope,
            unscoped,
            authorizer: Authorizer::new(),
            directory_entities,
            actions,
            user_type,
            group_type,
            resource_type,
            authored,
            sources,
            origins,
        })
    }

    /// Where the policies with these ids come from, for people and the audit log:
    /// `cedar policy ID at FILE:LINE` or `workflow RESOURCE ACTION (SHORTHAND in workflows.toml)`.
    pub fn describe(&self, ids: &[String]) -> String {
        ids.iter()
            .map(|id| self.origins.get(id).cloned().unwrap_or_else(|| format!("policy {id}")))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Prepare questions about `who` and `resource` under `facts`: the entities and the
    /// context are built once, however many abilities are then asked about.
    pub fn ask<'r>(&'r self, who: &Identity, resource: &str, facts: &Facts<'_>) -> Question<'r> {
        let principal = uid(&self.user_type, &who.principal);
        let entities = match self.directory_entities.get(&who.principal) {
            Some((groups, entities)) if groups == &who.groups => Ok(Cow::Borrowed(entities)),
            _ => principal_entities(&self.user_type, &self.group_type, &who.principal, &who.groups).map(Cow::Owned),
        };
        let prepared = entities.and_then(|entities| context(facts).map(|context| (entities, context)));
        Question {
            rules: self,
            principal,
            resource_name: resource.to_string(),
            resource: uid(&self.resource_type, resource),
            prepared,
        }
    }

    /// Ask Cedar whether `who` has `ability` on `resource` given the facts.
    pub fn decide(&self, who: &Identity, ability: Ability, resource: &str, facts: &Facts<'_>) -> CedarDecision {
        self.ask(who, resource, facts).decide(ability)
    }
}

/// The entities Cedar needs about a principal: itself, with its groups as parents.
fn principal_entities(
    user_type: &EntityTypeName,
    group_type: &EntityTypeName,
    principal: &str,
    groups: &[String],
) -> Result<Entities, String> {
    let parents: HashSet<EntityUid> = groups.iter().map(|g| uid(group_type, g)).collect();
    Entities::from_entities([Entity::new_no_attrs(uid(user_type, principal), parents)], None).map_err(|e| e.to_string())
}

/// The policies that can apply to one resource and ability.
#[derive(Default)]
struct Scoped {
    policies: PolicySet,
    has_permit: bool,
}

/// Questions about one principal and resource, with entities and context built once.
pub struct Question<'r> {
    rules: &'r CedarRules,
    principal: EntityUid,
    resource_name: String,
    resource: EntityUid,
    prepared: Result<(Cow<'r, Entities>, Context), String>,
}

impl Question<'_> {
    pub fn decide(&self, ability: Ability) -> CedarDecision {
        let refused = |why: &str| {
            tracing::warn!(why, "Cedar evaluation failed; refusing");
            CedarDecision {
                allowed: false,
                forbidden_by: Vec::new(),
                permitted_by: Vec::new(),
            }
        };
        let denied = CedarDecision {
            allowed: false,
            forbidden_by: Vec::new(),
            permitted_by: Vec::new(),
        };
        let scoped = match self.rules.by_scope.get(&(self.resource_name.clone(), ability)) {
            Some(s) => s,
            None => match self.rules.unscoped.get(&ability) {
                Some(s) => s,
                None => return denied,
            },
        };
        if !scoped.has_permit {
            return denied;
        }
        let (entities, context) = match &self.prepared {
            Ok(p) => p,
            Err(e) => return refused(e),
        };
        let Some(action) = self.rules.actions.get(&ability) else {
            return refused("unknown ability");
        };
        let request = match Request::new(
            self.principal.clone(),
            action.clone(),
            self.resource.clone(),
            context.clone(),
            None,
        ) {
            Ok(r) => r,
            Err(e) => return refused(&e.to_string()),
        };
        let response = self
            .rules
            .authorizer
            .is_authorized(&request, &scoped.policies, entities);
        let allowed = response.decision() == Decision::Allow;
        // Cedar names the policies that decided: the satisfied permits when allowed, the
        // satisfied forbids when refused by one.
        let mut decided_by: Vec<String> = response.diagnostics().reason().map(ToString::to_string).collect();
        decided_by.sort();
        let (permitted_by, forbidden_by) = if allowed {
            (decided_by, Vec::new())
        } else {
            (Vec::new(), decided_by)
        };
        CedarDecision {
            allowed,
            forbidden_by,
            permitted_by,
        }
    }
}

// Cedar evaluation problems fail closed: the answer is "no".
fn context(f: &Facts<'_>) -> Result<Context, String> {
    use chrono::{Datelike, Timelike};
    let long = |v: i64| RestrictedExpression::new_long(v);
    let string = |v: &str| RestrictedExpression::new_string(v.to_string());
    let mut pairs = vec![
        ("access".to_string(), string(f.access)),
        (
            "duration_seconds".to_string(),
            long(i64::try_from(f.duration_seconds).unwrap_or(i64::MAX)),
        ),
        ("reason".to_string(), string(f.reason)),
        ("ticket".to_string(), string(f.ticket)),
        ("hour".to_string(), long(i64::from(f.now.hour()))),
        (
            "weekday".to_string(),
            long(i64::from(f.now.weekday().number_from_monday())),
        ),
        (
            "on_call".to_string(),
            RestrictedExpression::new_set(f.on_call.iter().map(|g| string(g))),
        ),
        ("requester".to_string(), string(f.requester)),
        (
            "reviewer_is_manager".to_string(),
            RestrictedExpression::new_bool(f.reviewer_is_manager),
        ),
        ("escalated".to_string(), RestrictedExpression::new_bool(f.escalated)),
    ];
    if let Some(ci) = f.ci {
        let record = RestrictedExpression::new_record([
            ("repository".to_string(), string(&ci.repository)),
            ("ref".to_string(), string(&ci.git_ref)),
            ("environment".to_string(), string(&ci.environment)),
            ("workflow".to_string(), string(&ci.workflow)),
            ("actor".to_string(), string(&ci.actor)),
        ])
        .map_err(|e| e.to_string())?;
        pairs.push(("ci".to_string(), record));
    }
    Context::from_pairs(pairs).map_err(|e| e.to_string())
}
