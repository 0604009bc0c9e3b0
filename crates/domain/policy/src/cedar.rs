//! The Cedar half of the policy: who may request, have it approved automatically, break
//! glass, and approve. Workflow shorthands (`requesters`, `auto_approve`, `break_glass.groups`,
//! approval step groups) become a few generated policies per `[[workflow]]` block; the
//! directory's `*.cedar` files add conditions on the request context and on the catalog (a
//! resource's kind, its labels as tags, its ancestors through `in`). Everything is parsed and
//! validated once, at load, and the catalog's entities are built then too.

use crate::workflow::{PolicyError, Rules, Workflow, WORKFLOWS_FILE};
use cedar_policy::{
    ActionConstraint, AuthorizationError, Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName,
    EntityUid, Policy, PolicyId, PolicySet, PrincipalConstraint, Request, ResourceConstraint, RestrictedExpression,
    Schema, ValidationMode, Validator,
};
use jitgate_core::{CiClaims, Identity, Step, Timestamp};
use miette::Diagnostic;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
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

    /// Its place in a `Bundle`.
    fn slot(self) -> usize {
        match self {
            Ability::Request => 0,
            Ability::AutoApprove => 1,
            Ability::BreakGlass => 2,
            Ability::Approve => 3,
            Ability::Extend => 4,
        }
    }

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
    /// The person an agent acts for, or "" for people: the principal's for `request`,
    /// `auto_approve`, `break_glass` and `extend`; the request's for `approve`.
    pub on_behalf_of: &'a str,
    /// The labels the catalog declares for the asked action, as `context.action_labels`
    /// (`"effect=read"`).
    pub action_labels: &'a BTreeMap<String, String>,
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
    /// Per resource and action with a workflow, the bundle of policies that can decide about
    /// it: its workflow's generated policies, the authored ones naming that resource, and the
    /// authored ones naming none. A decision is two map lookups and an evaluation of this small
    /// set, whatever the size of the catalog or the number of workflows. Bundles are shared:
    /// every resource a selector picks has the same one (unless an authored policy names it).
    by_pair: HashMap<String, HashMap<String, usize>>,
    /// Per resource named by an authored `resource == Resource::"NAME"`, the bundle for its
    /// actions without a workflow; every other such question gets `unscoped`.
    by_resource: HashMap<String, usize>,
    unscoped: usize,
    bundles: Vec<Bundle>,
    authorizer: Authorizer,
    /// The Cedar entity of each directory principal, built once: used when a caller's
    /// groups are exactly the directory's (a token with other groups gets its own).
    directory_entities: HashMap<String, DirectoryEntities>,
    /// The Cedar entity of each catalog resource (kind, labels as tags, every ancestor as a
    /// parent) and of each bare resource name workflows use, built once at load.
    resource_entities: HashMap<String, Entity>,
    actions: HashMap<Ability, EntityUid>,
    user_type: EntityTypeName,
    group_type: EntityTypeName,
    resource_type: EntityTypeName,
    /// Ids of the policies the directory's `.cedar` files wrote (not the generated ones).
    pub authored: Vec<String>,
    /// Those policies in full, in file order.
    pub sources: Vec<AuthoredPolicy>,
    /// An authored policy's id to where it is, for people: `cedar policy ID at FILE:LINE`.
    origins: HashMap<String, String>,
    /// A generated policy's id to the workflow shorthand it stands for (`auto_approve = true`).
    shorthands: HashMap<String, &'static str>,
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

/// The workflow shorthand a generated policy for this Cedar action stands for.
fn shorthand_of(ability: Ability) -> &'static str {
    match ability {
        Ability::Request => "requesters",
        Ability::AutoApprove => "auto_approve = true",
        Ability::BreakGlass => "break_glass.groups",
        Ability::Extend => "extension",
        Ability::Approve => "steps",
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

/// The policies a workflow's shorthands stand for, by the ability each decides. They name no
/// resource and no action: a decision about a (resource, action) evaluates only the generated
/// policies of the one workflow that governs that pair (found by a map lookup at decision
/// time, see `CedarRules::bundle_of`), so the same text serves every resource a selector
/// picks, and a catalog of thousands of resources adds no policies.
fn generated(w: &Workflow) -> Vec<(Ability, String)> {
    let head = |ability: Ability| {
        format!(
            "permit(principal, action == Action::\"{}\", resource)",
            ability.as_str()
        )
    };
    let mut out = Vec::new();
    if !w.requesters.is_empty() {
        out.push((
            Ability::Request,
            format!("{} when {{ {} }};", head(Ability::Request), any_member(&w.requesters)),
        ));
    }
    if w.auto_approve {
        out.push((Ability::AutoApprove, format!("{};", head(Ability::AutoApprove))));
    }
    if let Some(bg) = &w.break_glass {
        out.push((
            Ability::BreakGlass,
            format!("{} when {{ {} }};", head(Ability::BreakGlass), any_member(&bg.groups)),
        ));
    }
    if w.extension.is_some() && !w.requesters.is_empty() {
        out.push((
            Ability::Extend,
            format!("{} when {{ {} }};", head(Ability::Extend), any_member(&w.requesters)),
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
            Ability::Approve,
            format!("{} when {{ {who} }};", head(Ability::Approve)),
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
        let user_type = type_name("User")?;
        let group_type = type_name("Group")?;
        let resource_type = type_name("Resource")?;
        let collection_type = type_name("Collection")?;
        let action_type = type_name("Action")?;
        let catalog = rules.catalog();
        // Every policy, generated and authored, for validation; `all[i]` is policy i.
        let mut policies = PolicySet::new();
        let mut all: Vec<(Policy, Vec<Ability>)> = Vec::new();
        // Where each authored policy came from, to place validation errors.
        let mut origin: HashMap<String, (String, String)> = HashMap::new();
        let mut origins: HashMap<String, String> = HashMap::new();
        let mut shorthands: HashMap<String, &'static str> = HashMap::new();

        // Generated policies, one per workflow block and text: `{ owners = true }` resolves
        // to each resource's owners, so one block may stand for a few approve policies.
        let mut generated_ids: HashMap<(usize, String), usize> = HashMap::new();
        let mut taken: HashMap<String, usize> = HashMap::new();
        let mut pairs: Vec<(&str, &str, Vec<usize>)> = Vec::new();
        for w in rules.workflows() {
            let line = rules.matched(&w.resource, &w.action).map_or(0, |m| m.line);
            let mut mine = Vec::new();
            for (ability, text) in generated(w) {
                let key = (line, text);
                if let Some(&i) = generated_ids.get(&key) {
                    mine.push(i);
                    continue;
                }
                let base = format!("{WORKFLOWS_FILE}:{line} {}", ability.as_str());
                let n = taken.entry(base.clone()).or_insert(0);
                *n += 1;
                let id = if *n == 1 { base } else { format!("{base} #{n}") };
                match Policy::parse(Some(PolicyId::new(&id)), &key.1) {
                    Ok(p) => {
                        if let Err(e) = policies.add(p.clone()) {
                            errors.push(PolicyError {
                                file: WORKFLOWS_FILE.into(),
                                line,
                                message: e.to_string(),
                            });
                        }
                        shorthands.insert(id, shorthand_of(ability));
                        generated_ids.insert(key, all.len());
                        mine.push(all.len());
                        all.push((p, vec![ability]));
                    }
                    Err(e) => errors.push(PolicyError {
                        file: WORKFLOWS_FILE.into(),
                        line,
                        message: format!("{}: generated policy is invalid: {e}", w.resource),
                    }),
                }
            }
            mine.sort_unstable();
            pairs.push((&w.resource, &w.action, mine));
        }

        let known_groups: BTreeSet<&str> = rules
            .principals()
            .flat_map(|p| p.identity.groups.iter().map(String::as_str))
            // Built in: agents are in it by their credential, never by the directory.
            .chain([crate::workflow::AGENTS_GROUP])
            // Filled by the identity provider.
            .chain(rules.provisioned_groups())
            .collect();
        let workflow_resources: HashSet<&str> = pairs.iter().map(|(r, _, _)| *r).collect();
        let is_resource = |name: &str| workflow_resources.contains(name) || catalog.resource(name).is_some();
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
                let mut unknown = |kind: &str, name: &str, fix: &str| {
                    errors.push(PolicyError {
                        file: file.clone(),
                        line,
                        // Escaped: an invisible or control character must show.
                        message: format!("unknown {kind} '{}'{fix}", name.escape_debug()),
                    })
                };
                if let PrincipalConstraint::In(g) | PrincipalConstraint::Eq(g) = policy.principal_constraint() {
                    if g.type_name() == &group_type && !known_groups.contains(g.id().unescaped()) {
                        unknown("group", g.id().unescaped(), "");
                    }
                }
                // A resource or collection the policy is limited to must exist: a typo would
                // otherwise make a forbid silently apply to nothing.
                if let ResourceConstraint::Eq(r) | ResourceConstraint::In(r) | ResourceConstraint::IsIn(_, r) =
                    policy.resource_constraint()
                {
                    let name = r.id().unescaped();
                    if r.type_name() == &resource_type && !is_resource(name) {
                        unknown("resource", name, "");
                    }
                    if r.type_name() == &collection_type && catalog.collection(name).is_none() {
                        unknown(
                            "collection",
                            name,
                            &format!("; declare it as a [[collection]] in {}", crate::catalog::RESOURCES_FILE),
                        );
                    }
                }
                origin.insert(id.clone(), (file.clone(), text.clone()));
                origins.insert(id.clone(), format!("cedar policy {id} at {file}:{line}"));
                sources.push(authored_policy(policy, &id, file, line));
                let policy = policy.new_id(PolicyId::new(&id));
                if let Err(e) = policies.add(policy.clone()) {
                    errors.push(PolicyError {
                        file: file.clone(),
                        line,
                        message: format!("{e}; give each policy a distinct @id"),
                    });
                }
                let abilities = abilities_of(&policy);
                all.push((policy, abilities));
                authored.push(id);
            }
        }

        let validation = Validator::new(schema).validate(&policies, ValidationMode::Strict);
        for e in validation.validation_errors() {
            let (file, line) = match origin.get(e.policy_id().to_string().as_str()) {
                Some((file, text)) => (file.clone(), diagnostic_line(e, text)),
                None => (WORKFLOWS_FILE.to_string(), 0),
            };
            errors.push(PolicyError {
                file,
                line,
                message: with_hint(e.to_string()),
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut actions = HashMap::new();
        for ability in Ability::ALL {
            actions.insert(ability, uid(&action_type, ability.as_str()));
        }

        // Authored policies: those limited to one resource, and those for any resource.
        let generated_count = generated_ids.len();
        let mut for_resource: HashMap<String, Vec<usize>> = HashMap::new();
        let mut for_any: Vec<usize> = Vec::new();
        for (i, (p, _)) in all.iter().enumerate().skip(generated_count) {
            match p.resource_constraint() {
                ResourceConstraint::Eq(r) if r.type_name() == &resource_type => {
                    for_resource.entry(r.id().unescaped().to_string()).or_default().push(i);
                }
                _ => for_any.push(i),
            }
        }
        let mut bundles: Vec<Bundle> = Vec::new();
        let mut bundle = |members: &mut dyn Iterator<Item = usize>| -> usize {
            let mut b = Bundle::default();
            for i in members {
                let (p, abilities) = &all[i];
                b.reads_resource |= reads_resource(p);
                for ability in abilities {
                    let scoped = &mut b.slots[ability.slot()];
                    scoped.has_permit |= p.effect() == cedar_policy::Effect::Permit;
                    // Ids are unique across `all` (checked above), so this cannot fail.
                    let _ = scoped.policies.add(p.clone());
                }
            }
            bundles.push(b);
            bundles.len() - 1
        };
        let unscoped = bundle(&mut for_any.iter().copied());
        let mut by_resource = HashMap::new();
        for (resource, mine) in &for_resource {
            by_resource.insert(resource.clone(), bundle(&mut for_any.iter().chain(mine).copied()));
        }
        let mut shared: HashMap<(&[usize], Option<&str>), usize> = HashMap::new();
        let mut by_pair: HashMap<String, HashMap<String, usize>> = HashMap::new();
        for (resource, action, mine) in &pairs {
            let named = for_resource.get(*resource);
            let key = (mine.as_slice(), named.map(|_| *resource));
            let at = match shared.get(&key) {
                Some(&at) => at,
                None => {
                    let at = bundle(&mut mine.iter().chain(&for_any).chain(named.into_iter().flatten()).copied());
                    shared.insert(key, at);
                    at
                }
            };
            by_pair
                .entry(resource.to_string())
                .or_default()
                .insert(action.to_string(), at);
        }

        let directory_entities = rules
            .principals()
            .map(|e| {
                let id = &e.identity;
                let entity = principal_entity(&user_type, &group_type, &id.principal, &id.groups);
                let alone = Entities::from_entities([entity.clone()], None).unwrap_or_else(|_| Entities::empty());
                (
                    id.principal.clone(),
                    DirectoryEntities {
                        groups: id.groups.clone(),
                        entity,
                        alone,
                    },
                )
            })
            .collect();
        let mut resource_entities = HashMap::new();
        for r in catalog.resources() {
            let parents = catalog.ancestors(&r.name).into_iter().map(|name| {
                if catalog.collection(name).is_some() {
                    uid(&collection_type, name)
                } else {
                    uid(&resource_type, name)
                }
            });
            let tags = r
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), RestrictedExpression::new_string(v.clone())));
            match Entity::new_with_tags(
                uid(&resource_type, &r.name),
                [("kind".to_string(), RestrictedExpression::new_string(r.kind.clone()))],
                parents,
                tags,
            ) {
                Ok(entity) => {
                    resource_entities.insert(r.name.clone(), entity);
                }
                Err(e) => errors.push(PolicyError {
                    file: r.file.clone(),
                    line: r.line,
                    message: format!("resource '{}': {e}", r.name),
                }),
            }
        }
        for (resource, _, _) in &pairs {
            if !resource_entities.contains_key(*resource) {
                resource_entities.insert(resource.to_string(), bare_resource(&resource_type, resource));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(CedarRules {
            by_pair,
            by_resource,
            unscoped,
            bundles,
            authorizer: Authorizer::new(),
            directory_entities,
            resource_entities,
            actions,
            user_type,
            group_type,
            resource_type,
            authored,
            sources,
            origins,
            shorthands,
        })
    }

    /// Where the policies with these ids come from, for people and the audit log:
    /// `cedar policy ID at FILE:LINE` or `workflow RESOURCE ACTION (SHORTHAND in workflows.toml)`
    /// for a generated policy, which stands for the workflow of the `resource` and `action` asked about.
    pub fn describe(&self, ids: &[String], resource: &str, action: &str) -> String {
        ids.iter()
            .map(|id| match (self.origins.get(id), self.shorthands.get(id)) {
                (Some(origin), _) => origin.clone(),
                (None, Some(shorthand)) => format!("workflow {resource} {action} ({shorthand} in {WORKFLOWS_FILE})"),
                (None, None) => format!("policy {id}"),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Prepare questions about `who` and `resource` under `facts` (whose `access` is the
    /// action): the entities and the context are built once, however many abilities are then
    /// asked about.
    pub fn ask<'r>(&'r self, who: &Identity, resource: &str, facts: &Facts<'_>) -> Question<'r> {
        let at = self
            .by_pair
            .get(resource)
            .and_then(|actions| actions.get(facts.access))
            .or_else(|| self.by_resource.get(resource))
            .copied()
            .unwrap_or(self.unscoped);
        let bundle = self.bundles.get(at);
        let cached = self
            .directory_entities
            .get(&who.principal)
            .filter(|d| d.groups == who.groups);
        let principal_uid = uid(&self.user_type, &who.principal);
        let resource_uid = uid(&self.resource_type, resource);
        // The resource's entity (kind, tags, ancestors) only when a policy that may decide
        // reads it; otherwise a directory principal's entities built at load serve as they are.
        let entities = if bundle.is_some_and(|b| b.reads_resource) {
            let principal = match cached {
                Some(d) => d.entity.clone(),
                None => principal_entity(&self.user_type, &self.group_type, &who.principal, &who.groups),
            };
            let resource_entity = match self.resource_entities.get(resource) {
                Some(entity) => entity.clone(),
                None => bare_resource(&self.resource_type, resource),
            };
            Entities::from_entities([principal, resource_entity], None).map(Cow::Owned)
        } else {
            match cached {
                Some(d) => Ok(Cow::Borrowed(&d.alone)),
                None => Entities::from_entities(
                    [principal_entity(
                        &self.user_type,
                        &self.group_type,
                        &who.principal,
                        &who.groups,
                    )],
                    None,
                )
                .map(Cow::Owned),
            }
        };
        let prepared = entities
            .map_err(|e| e.to_string())
            .and_then(|entities| context(facts).map(|context| (entities, context)));
        Question {
            rules: self,
            bundle,
            principal: principal_uid,
            resource: resource_uid,
            prepared,
        }
    }

    /// Ask Cedar whether `who` has `ability` on `resource` given the facts.
    pub fn decide(&self, who: &Identity, ability: Ability, resource: &str, facts: &Facts<'_>) -> CedarDecision {
        self.ask(who, resource, facts).decide(ability)
    }
}

/// A validation error, with the fix when it is a label read as an attribute of a resource
/// (`resource.env`): labels are tags.
fn with_hint(message: String) -> String {
    let label = message
        .split_once("attribute `")
        .and_then(|(_, rest)| rest.split_once("` on entity type `Resource` not found"))
        .map(|(name, _)| name.to_string());
    match label {
        Some(key) => {
            format!("{message}; labels are tags: resource.hasTag(\"{key}\") && resource.getTag(\"{key}\") == \"...\"")
        }
        None => message,
    }
}

/// The Cedar entities of a directory principal, built at load.
struct DirectoryEntities {
    groups: Vec<String>,
    entity: Entity,
    /// A store of that entity alone, for questions no policy of which reads the resource.
    alone: Entities,
}

/// Whether a policy may read the resource's entity: its scope is `in` something, or its
/// conditions mention `resource` at all. Erring towards yes only costs time: a policy that
/// reads an entity missing from the store fails to evaluate, and Cedar ignores it, which
/// would let a `forbid` through.
fn reads_resource(p: &Policy) -> bool {
    if matches!(
        p.resource_constraint(),
        ResourceConstraint::In(_) | ResourceConstraint::IsIn(_, _)
    ) {
        return true;
    }
    match p.to_json() {
        Ok(json) => json
            .get("conditions")
            .is_none_or(|c| c.to_string().contains("\"resource\"")),
        Err(_) => true,
    }
}

/// The abilities (Cedar actions of jitgate) a policy can decide.
fn abilities_of(p: &Policy) -> Vec<Ability> {
    match p.action_constraint() {
        ActionConstraint::Eq(a) => Ability::ALL
            .into_iter()
            .filter(|x| a.id().unescaped() == x.as_str())
            .collect(),
        ActionConstraint::In(list) => Ability::ALL
            .into_iter()
            .filter(|x| list.iter().any(|a| a.id().unescaped() == x.as_str()))
            .collect(),
        ActionConstraint::Any => Ability::ALL.to_vec(),
    }
}

/// The Cedar entity of a principal: itself, with its groups as parents.
fn principal_entity(
    user_type: &EntityTypeName,
    group_type: &EntityTypeName,
    principal: &str,
    groups: &[String],
) -> Entity {
    let parents: HashSet<EntityUid> = groups.iter().map(|g| uid(group_type, g)).collect();
    Entity::new_no_attrs(uid(user_type, principal), parents)
}

/// A resource the catalog does not declare (a bare name in workflows.toml): kind "", no labels,
/// no parents, so policies on kinds, labels and collections never match it.
fn bare_resource(resource_type: &EntityTypeName, name: &str) -> Entity {
    Entity::new_with_tags(
        uid(resource_type, name),
        [("kind".to_string(), RestrictedExpression::new_string(String::new()))],
        [],
        [],
    )
    .unwrap_or_else(|_| Entity::new_no_attrs(uid(resource_type, name), HashSet::new()))
}

/// The policies that can apply to one resource and ability.
#[derive(Default)]
struct Scoped {
    policies: PolicySet,
    has_permit: bool,
}

/// The policies that can decide about one (resource, action), by ability.
#[derive(Default)]
struct Bundle {
    slots: [Scoped; 5],
    /// Whether one of its policies reads the resource's entity (kind, tags, `in`).
    reads_resource: bool,
}

/// Questions about one principal and resource, with entities and context built once.
pub struct Question<'r> {
    rules: &'r CedarRules,
    bundle: Option<&'r Bundle>,
    principal: EntityUid,
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
        let Some(scoped) = self.bundle.map(|b| &b.slots[ability.slot()]) else {
            return refused("no policy bundle");
        };
        // Cedar denies when no permit applies: no need to evaluate.
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
        // Cedar skips a policy that fails to evaluate (an overflow, say): for a `forbid` that
        // would let the request through, so a forbid that failed refuses, naming itself.
        let mut failed_forbids: Vec<String> = response
            .diagnostics()
            .errors()
            .filter_map(|e| {
                let AuthorizationError::PolicyEvaluationError(e) = e;
                scoped
                    .policies
                    .policy(e.policy_id())
                    .filter(|p| p.effect() == cedar_policy::Effect::Forbid)
                    .map(|_| e.policy_id().to_string())
            })
            .collect();
        if !failed_forbids.is_empty() {
            tracing::warn!(policies = ?failed_forbids, "a forbid failed to evaluate; refusing");
            failed_forbids.sort();
            return CedarDecision {
                allowed: false,
                forbidden_by: failed_forbids,
                permitted_by: Vec::new(),
            };
        }
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
        ("on_behalf_of".to_string(), string(f.on_behalf_of)),
        (
            "action_labels".to_string(),
            // Label keys hold no `=`, so "key=value" splits back at its first `=`.
            RestrictedExpression::new_set(f.action_labels.iter().map(|(k, v)| string(&format!("{k}={v}")))),
        ),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The entities built at load are what the schema the policies are validated against
    /// says: a policy that validates cannot meet an entity of another shape at decision time.
    #[test]
    fn catalog_entities_conform_to_the_schema() {
        let directory = "[[principal]]\nname = \"alice\"\ngroups = [\"dev\"]\n";
        let resources = r#"
[[collection]]
name = "env:prod"
[[collection]]
name = "pci"
parent = "env:prod"
[[resource]]
name = "api"
kind = "http"
labels = { env = "prod" }
parent = "pci"
[[resource]]
name = "vault"
kind = "postgres"
labels = { env = "prod", "data.class" = "card" }
parent = "api"
[[resource]]
name = "ledger"
kind = "postgres"
labels = { env = "staging" }
"#;
        let workflows = "[[workflow]]\nresources = { kind = \"postgres\" }\naction = \"read\"\nrequesters = [\"dev\"]\nauto_approve = true\n\n[[workflow]]\nresource = \"bare\"\naction = \"read\"\nrequesters = [\"dev\"]\nauto_approve = true\n";
        let rules = Rules::parse_with_catalog(
            directory,
            workflows,
            &[("resources.toml".to_string(), resources.to_string())],
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let cedar = CedarRules::build(&rules, &[]).unwrap_or_else(|e| panic!("{e:?}"));
        let (schema, _) = Schema::from_cedarschema_str(SCHEMA).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cedar.resource_entities.len(), 4);
        let entities = Entities::from_entities(
            cedar
                .resource_entities
                .values()
                .cloned()
                .chain(cedar.directory_entities.values().map(|d| d.entity.clone())),
            Some(&schema),
        );
        assert!(entities.is_ok(), "{entities:?}");
        // Every ancestor is a parent, so `in` needs no other entity; labels are tags.
        let vault = cedar.resource_entities["vault"]
            .to_json_value()
            .unwrap_or_else(|e| panic!("{e}"));
        let parents: BTreeSet<String> = vault["parents"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                format!(
                    "{}::{}",
                    p["type"].as_str().unwrap_or(""),
                    p["id"].as_str().unwrap_or("")
                )
            })
            .collect();
        let expected: BTreeSet<String> = ["Resource::api", "Collection::pci", "Collection::env:prod"]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(parents, expected);
        assert_eq!(vault["attrs"]["kind"], "postgres");
        assert_eq!(vault["tags"]["data.class"], "card");
        assert_eq!(vault["tags"]["env"], "prod");
        let bare = cedar.resource_entities["bare"]
            .to_json_value()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bare["attrs"]["kind"], "");
        assert!(bare["parents"].as_array().is_none_or(Vec::is_empty), "{bare}");
        // Sharing: one bundle for every resource the selector picks, another for the bare name.
        assert_eq!(cedar.by_pair["vault"]["read"], cedar.by_pair["ledger"]["read"]);
        assert_ne!(cedar.by_pair["vault"]["read"], cedar.by_pair["bare"]["read"]);
    }

    #[test]
    fn policies_that_read_the_resource_are_told_apart_erring_towards_yes() {
        let reads = |text: &str| reads_resource(&Policy::parse(None, text).unwrap_or_else(|e| panic!("{e}")));
        assert!(reads(
            "forbid(principal, action, resource) when { resource.kind == \"ssh\" };"
        ));
        assert!(reads(
            "forbid(principal, action, resource) when { resource.hasTag(\"env\") && context.hour > 1 };"
        ));
        assert!(reads("forbid(principal, action, resource in Collection::\"pci\");"));
        assert!(reads(
            "forbid(principal, action, resource is Resource in Collection::\"pci\");"
        ));
        assert!(reads(
            "forbid(principal, action, resource) unless { resource in Collection::\"pci\" };"
        ));
        // A string that happens to say "resource" only costs time.
        assert!(reads(
            "forbid(principal, action, resource) when { context.reason == \"resource\" };"
        ));
        assert!(!reads(
            "permit(principal in Group::\"ci\", action, resource == Resource::\"prod-api\") when { context.access == \"deploy\" };"
        ));
        assert!(!reads("permit(principal, action, resource);"));
    }
}
