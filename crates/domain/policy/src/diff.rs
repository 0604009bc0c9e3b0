//! `jitgate policy diff`: the effective change in access between two policy versions, for
//! review in pull requests. Every known principal, and a stand-in member of every known
//! group, is asked about every resource and action under both versions; differences are
//! reported as gained, lost, weaker or stronger.
//!
//! Conditions on the request context are judged for one representative request: a Wednesday
//! at 10:00 UTC, the workflow's default duration, a reason that names a ticket, no CI claims.
//!
//! A condition in a `.cedar` file can hide from that one request (a backdoor that approves
//! whatever names a magic word), so every added, removed or edited Cedar policy is a change in
//! itself, listed with its place, and its consequences are searched for: requests built from
//! the literals the policies hold (their strings, ticket-like words, numbers as hours,
//! weekdays and durations, the users they name), asked of both versions, within a fixed bound.

mod markdown;

pub use markdown::{escape as markdown_escape, MARKDOWN_MARKER, MARKDOWN_MAX_CHARS};

use crate::cedar::{Ability, AuthoredPolicy};
use crate::workflow::AGENTS_GROUP;
use crate::{Explanation, Policy, Situation, Verdict};
use jitgate_core::{Ask, DurationSecs, Identity, PrincipalKind, Step, Timestamp};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// A new ability.
    Gained,
    /// An ability gone.
    Lost,
    /// Fewer approvals, automatic where review was needed, or longer access.
    Weaker,
    /// More approvals, review where it was automatic, or shorter access.
    Stronger,
    /// Different but not simply weaker or stronger (other approver groups).
    Changed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// A principal, or `group:NAME` for any member of a group.
    pub subject: String,
    pub resource: String,
    pub action: String,
    /// `request`, `break_glass` or `max_duration`.
    pub ability: String,
    pub kind: ChangeKind,
    pub before: String,
    pub after: String,
    /// For a change found by the search: the request that shows it (its reason, time and
    /// duration; for `approve`, whose request). Absent for the representative request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = match self.kind {
            ChangeKind::Gained => '+',
            ChangeKind::Lost => '-',
            ChangeKind::Weaker | ChangeKind::Stronger | ChangeKind::Changed => '~',
        };
        let kind = format!("{:?}", self.kind).to_lowercase();
        write!(
            f,
            "{sign} {}: {} {} on {}: {kind}: {} -> {}",
            self.subject, self.ability, self.action, self.resource, self.before, self.after
        )?;
        match &self.when {
            Some(when) => write!(f, ", when {when}"),
            None => Ok(()),
        }
    }
}

fn representative_time() -> Timestamp {
    chrono::DateTime::from_timestamp(1_767_780_000, 0).unwrap_or_default()
}

fn describe(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Refused(_) => "refused".into(),
        Verdict::Automatic => "automatic".into(),
        Verdict::NeedsApproval(steps) => format!(
            "needs {}",
            steps
                .iter()
                .map(|s| format!("{} from {}", s.approvals, s.group))
                .collect::<Vec<_>>()
                .join(" and ")
        ),
    }
}

fn total(steps: &[Step]) -> u32 {
    steps.iter().map(|s| s.approvals).sum()
}

fn duration_text(d: Option<DurationSecs>) -> String {
    d.map(|d| d.to_string()).unwrap_or_else(|| "none".into())
}

/// The prefix of a stand-in agent's subject: `agent-of:alice`, `agent-of:group:dev`.
const AGENT_OF: &str = "agent-of:";

fn identity_in(policy: &Policy, subject: &str) -> Identity {
    // An agent acting for the subject, as an agent token gives it: the person's groups but the
    // administrative ones, the group of agents, never a service.
    if let Some(person) = subject.strip_prefix(AGENT_OF) {
        let person = identity_in(policy, person);
        let mut groups: Vec<String> = person
            .groups
            .into_iter()
            .filter(|g| g != jitgate_core::identity::ADMIN_GROUP && g != jitgate_core::authz::AUDITOR_GROUP)
            .collect();
        if !groups.iter().any(|g| g == AGENTS_GROUP) {
            groups.push(AGENTS_GROUP.to_string());
        }
        return Identity {
            principal: format!("agent-of-{}", person.principal),
            groups,
            kind: PrincipalKind::User,
            on_behalf_of: Some(person.principal),
            ci: None,
        };
    }
    if let Some(group) = subject.strip_prefix("group:") {
        return Identity {
            principal: format!("member-of-{group}"),
            groups: vec![group.to_string()],
            kind: PrincipalKind::User,
            // A stand-in agent acts for someone, as every agent does.
            on_behalf_of: (group == AGENTS_GROUP).then(|| "person-of-member-of-agents".to_string()),
            ci: None,
        };
    }
    match policy.rules().principal(subject) {
        Some(entry) => entry.identity.clone(),
        None => Identity {
            principal: subject.to_string(),
            groups: Vec::new(),
            kind: PrincipalKind::User,
            on_behalf_of: None,
            ci: None,
        },
    }
}

/// Every effective difference between `old` and `new`, in a stable order: by subject, then
/// resource and action.
///
/// Asking Cedar about every subject, resource and action would take minutes on a catalog of
/// ten thousand resources. So the (resource, action) pairs are sorted into classes whose
/// answers cannot differ: the same workflow (as resolved for the pair, owner steps and all,
/// with only its resource name left out) and, when an authored Cedar policy could tell
/// resources apart, the same kind, labels, ancestors and owners, the same answers to its
/// `like` patterns, and the name itself when a policy spells it. Each version's classes are
/// asked once per subject; a pair whose class is the same in both versions cannot change
/// unless the directory, the on-call schedule or the Cedar files did, and is not asked at all.
/// So a catalog edit costs what it touches.
pub fn diff(old: &Policy, new: &Policy) -> Vec<Change> {
    let at = representative_time();
    let subjects = subjects_of(old, new);
    let view = CedarView::of(old, new);
    let (old_keys, new_keys) = (class_keys(old, &view), class_keys(new, &view));
    let same_setting = setting(old) == setting(new);
    let targets: BTreeSet<&(String, String)> = old_keys.keys().chain(new_keys.keys()).collect();
    // Pairs by their class in each version (none where the version has no such workflow).
    type Pair<'a> = (Option<&'a String>, Option<&'a String>);
    let mut pairs: HashMap<Pair<'_>, Vec<&(String, String)>> = HashMap::new();
    for target in targets {
        let pair = (old_keys.get(target), new_keys.get(target));
        if same_setting && pair.0 == pair.1 {
            continue;
        }
        pairs.entry(pair).or_default().push(target);
    }
    let mut old_answers: HashMap<(Option<&String>, &str), Explanation> = HashMap::new();
    let mut new_answers: HashMap<(Option<&String>, &str), Explanation> = HashMap::new();
    let mut found: BTreeMap<(&str, &str, &str), Vec<Change>> = BTreeMap::new();
    for ((old_key, new_key), members) in pairs {
        let Some((resource, action)) = members.first().copied() else {
            continue;
        };
        for subject in &subjects {
            let before = old_answers
                .entry((old_key, subject))
                .or_insert_with(|| old.explain(&identity_in(old, subject), resource, action, None, at));
            let after = new_answers
                .entry((new_key, subject))
                .or_insert_with(|| new.explain(&identity_in(new, subject), resource, action, None, at));
            let mut out = Vec::new();
            compare(subject, resource, action, before, after, &mut out);
            if out.is_empty() {
                continue;
            }
            for (r, a) in &members {
                let changes = out.iter().map(|c| Change {
                    resource: r.clone(),
                    action: a.clone(),
                    ..c.clone()
                });
                found
                    .entry((subject.as_str(), r.as_str(), a.as_str()))
                    .or_default()
                    .extend(changes);
            }
        }
    }
    found.into_values().flatten().collect()
}

/// `diff` the slow way: every subject asked about every resource and action in both
/// versions. What `diff` must equal; kept for tests and for measuring.
pub fn diff_exhaustive(old: &Policy, new: &Policy) -> Vec<Change> {
    let at = representative_time();
    let mut targets: BTreeSet<(String, String)> = BTreeSet::new();
    for p in [old, new] {
        for w in p.workflows() {
            targets.insert((w.resource.clone(), w.action.clone()));
        }
    }
    let mut changes = Vec::new();
    for subject in &subjects_of(old, new) {
        for (resource, action) in &targets {
            let before = old.explain(&identity_in(old, subject), resource, action, None, at);
            let after = new.explain(&identity_in(new, subject), resource, action, None, at);
            compare(subject, resource, action, &before, &after, &mut changes);
        }
    }
    changes
}

/// Every known principal of either version, and `group:NAME` for a stand-in member of each
/// of their groups, in order.
fn subjects_of(old: &Policy, new: &Policy) -> BTreeSet<String> {
    let mut subjects: BTreeSet<String> = BTreeSet::new();
    for p in [old, new] {
        for entry in p.principals() {
            subjects.insert(entry.identity.principal.clone());
            for g in &entry.identity.groups {
                subjects.insert(format!("group:{g}"));
            }
        }
        // Groups an identity provider fills have no members here, but a stand-in member.
        for g in p.rules().provisioned_groups() {
            subjects.insert(format!("group:{g}"));
        }
    }
    // Agents are in a built-in group that no directory lists: when either version names the
    // group (or reads `context.on_behalf_of`), a stand-in agent is asked too, and an agent
    // acting for each subject, which holds that subject's groups: a rule that stops "dev's
    // agents" from writing changes nothing for an agent in no other group.
    if [old, new].into_iter().any(names_agents) {
        let people: Vec<String> = subjects.iter().map(|s| format!("{AGENT_OF}{s}")).collect();
        subjects.extend(people);
        subjects.insert(format!("group:{AGENTS_GROUP}"));
    }
    subjects
}

/// Whether a policy names the group of agents: in a workflow's requesters or break-glass
/// groups, or in a `.cedar` policy, or reads `context.on_behalf_of` (a rule about agents that
/// names no group).
fn names_agents(p: &Policy) -> bool {
    let quoted = format!("\"{AGENTS_GROUP}\"");
    p.workflows().any(|w| {
        w.requesters.iter().any(|g| g == AGENTS_GROUP)
            || w.break_glass
                .as_ref()
                .is_some_and(|bg| bg.groups.iter().any(|g| g == AGENTS_GROUP))
    }) || p
        .cedar_sources()
        .iter()
        .any(|s| s.meaning.contains(&quoted) || s.meaning.contains("on_behalf_of"))
}

/// Everything but the workflows that a version's answers depend on: the directory, the
/// on-call schedule and the authored Cedar policies (by meaning, not layout).
fn setting(p: &Policy) -> String {
    let principals: Vec<&crate::DirectoryEntry> = p.principals().collect();
    let cedar: Vec<&str> = p.cedar_sources().iter().map(|s| s.meaning.as_str()).collect();
    format!("{principals:?}\0{:?}\0{cedar:?}", p.schedule)
}

/// What the authored Cedar policies of both versions can tell apart about a resource.
#[derive(Default)]
struct CedarView {
    /// Some policy reads the resource beyond its name: its attributes or tags in a condition,
    /// or its ancestors (`resource in ...`, `resource is ...`).
    reads_resource: bool,
    /// Every string the policies spell, entity ids included: a resource named there may be
    /// singled out.
    strings: HashSet<String>,
    /// The policies' `like` patterns, as (literal, is wildcard) parts.
    patterns: Vec<Vec<(String, bool)>>,
}

impl CedarView {
    fn of(old: &Policy, new: &Policy) -> CedarView {
        let mut view = CedarView::default();
        for p in old.cedar_sources().iter().chain(new.cedar_sources()) {
            let Ok(json) = serde_json::from_str::<serde_json::Value>(&p.meaning) else {
                // Unreadable: assume the policy can tell every resource apart.
                view.reads_resource = true;
                view.patterns.push(vec![(String::new(), true)]);
                continue;
            };
            let scope = json["resource"]["op"].as_str().unwrap_or("");
            if matches!(scope, "in" | "is") || mentions_var(&json["conditions"], "resource") {
                view.reads_resource = true;
            }
            view.collect(&json);
        }
        view
    }

    fn collect(&mut self, v: &serde_json::Value) {
        use serde_json::Value;
        match v {
            Value::String(s) => {
                self.strings.insert(s.clone());
            }
            Value::Array(items) => items.iter().for_each(|i| self.collect(i)),
            Value::Object(fields) => {
                for (key, value) in fields {
                    if let ("pattern", Value::Array(parts)) = (key.as_str(), value) {
                        self.patterns.push(
                            parts
                                .iter()
                                .map(|p| match p.get("Literal").and_then(Value::as_str) {
                                    Some(text) => (text.to_string(), false),
                                    None => (String::new(), true),
                                })
                                .collect(),
                        );
                    }
                    self.collect(value);
                }
            }
            _ => {}
        }
    }
}

fn mentions_var(v: &serde_json::Value, name: &str) -> bool {
    use serde_json::Value;
    match v {
        Value::Object(fields) => fields
            .iter()
            .any(|(k, v)| (k == "Var" && v.as_str() == Some(name)) || mentions_var(v, name)),
        Value::Array(items) => items.iter().any(|i| mentions_var(i, name)),
        _ => false,
    }
}

/// Whether `text` matches a Cedar `like` pattern (`*` any run of characters).
fn like_matches(parts: &[(String, bool)], text: &str) -> bool {
    match parts.split_first() {
        None => text.is_empty(),
        Some(((literal, false), rest)) => text
            .strip_prefix(literal.as_str())
            .is_some_and(|tail| like_matches(rest, tail)),
        Some(((_, true), rest)) => text
            .char_indices()
            .map(|(i, _)| i)
            .chain(std::iter::once(text.len()))
            .any(|i| like_matches(rest, &text[i..])),
    }
}

/// Each (resource, action) of a version to its class: equal classes have equal answers for
/// every subject (see `diff`).
fn class_keys(p: &Policy, view: &CedarView) -> HashMap<(String, String), String> {
    let catalog = p.rules().catalog();
    p.workflows()
        .map(|w| {
            let mut anonymous = w.clone();
            anonymous.resource.clear();
            let mut key = format!("{anonymous:?}");
            if view.strings.contains(&w.resource) {
                key.push_str(&format!("\0named {:?}", w.resource));
            }
            if view.reads_resource {
                if let Some(r) = catalog.resource(&w.resource) {
                    key.push_str(&format!(
                        "\0{:?} {:?} {:?} {:?}",
                        r.kind,
                        r.labels,
                        catalog.ancestors(&w.resource),
                        r.owners
                    ));
                }
                key.push('\0');
                key.extend(
                    view.patterns
                        .iter()
                        .map(|parts| if like_matches(parts, &w.resource) { '1' } else { '0' }),
                );
            }
            ((w.resource.clone(), w.action.clone()), key)
        })
        .collect()
}

fn compare(
    subject: &str,
    resource: &str,
    action: &str,
    before: &Explanation,
    after: &Explanation,
    out: &mut Vec<Change>,
) {
    let mut push = |ability: &str, kind: ChangeKind, b: String, a: String| {
        out.push(Change {
            subject: subject.to_string(),
            resource: resource.to_string(),
            action: action.to_string(),
            ability: ability.to_string(),
            kind,
            before: b,
            after: a,
            when: None,
        })
    };
    let (b, a) = (&before.verdict, &after.verdict);
    let kind = match (b, a) {
        (Verdict::Refused(_), Verdict::Refused(_)) => None,
        (Verdict::Refused(_), _) => Some(ChangeKind::Gained),
        (_, Verdict::Refused(_)) => Some(ChangeKind::Lost),
        (Verdict::Automatic, Verdict::Automatic) => None,
        (Verdict::NeedsApproval(_), Verdict::Automatic) => Some(ChangeKind::Weaker),
        (Verdict::Automatic, Verdict::NeedsApproval(_)) => Some(ChangeKind::Stronger),
        (Verdict::NeedsApproval(x), Verdict::NeedsApproval(y)) if x == y => None,
        (Verdict::NeedsApproval(x), Verdict::NeedsApproval(y)) => Some(match total(x).cmp(&total(y)) {
            std::cmp::Ordering::Greater => ChangeKind::Weaker,
            std::cmp::Ordering::Less => ChangeKind::Stronger,
            std::cmp::Ordering::Equal => ChangeKind::Changed,
        }),
    };
    if let Some(kind) = kind {
        push("request", kind, describe(b), describe(a));
    }
    let both_requestable = !matches!(b, Verdict::Refused(_)) && !matches!(a, Verdict::Refused(_));
    if both_requestable && before.max_duration != after.max_duration {
        let kind = if after.max_duration > before.max_duration {
            ChangeKind::Weaker
        } else {
            ChangeKind::Stronger
        };
        push(
            "max_duration",
            kind,
            duration_text(before.max_duration),
            duration_text(after.max_duration),
        );
    }
    let kind = match (before.break_glass, after.break_glass) {
        (None, Some(_)) => Some(ChangeKind::Gained),
        (Some(_), None) => Some(ChangeKind::Lost),
        (Some(x), Some(y)) if y > x => Some(ChangeKind::Weaker),
        (Some(x), Some(y)) if y < x => Some(ChangeKind::Stronger),
        _ => None,
    };
    if let Some(kind) = kind {
        push(
            "break_glass",
            kind,
            duration_text(before.break_glass),
            duration_text(after.break_glass),
        );
    }
}

/// How a `.cedar` policy changed between the two versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Edit {
    Added,
    Removed,
    Edited,
}

/// One added, removed or edited policy of the `.cedar` files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CedarChange {
    pub edit: Edit,
    /// The policy's id: its `@id`, or `FILE#N`.
    pub id: String,
    /// `permit` or `forbid`.
    pub effect: String,
    /// Its head: who, which Cedar action, which resource.
    pub scope: String,
    /// Where it is: in the new version, or for a removed one in the old.
    pub file: String,
    pub line: usize,
    pub text: String,
    /// For an edited policy: where it was and what it said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub was: Option<Box<CedarChange>>,
}

impl CedarChange {
    fn of(edit: Edit, p: &AuthoredPolicy) -> CedarChange {
        CedarChange {
            edit,
            id: p.id.clone(),
            effect: p.effect.to_string(),
            scope: p.scope.clone(),
            file: p.file.clone(),
            line: p.line,
            text: p.text.clone(),
            was: None,
        }
    }
}

impl std::fmt::Display for CedarChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (sign, edit) = match self.edit {
            Edit::Added => ('+', "added"),
            Edit::Removed => ('-', "removed"),
            Edit::Edited => ('~', "edited"),
        };
        write!(
            f,
            "{sign} {edit} {} at {}:{} ({}): {}\n    {}",
            self.effect, self.file, self.line, self.id, self.scope, self.text
        )?;
        if let Some(was) = &self.was {
            write!(f, "\n    was, at {}:{}: {}", was.file, was.line, was.text)?;
        }
        Ok(())
    }
}

/// At most this many probe requests are asked of each version, whatever the policy's size,
/// so `policy diff` stays fast (about 0.1 ms per probe: a second or two at most).
pub const MAX_PROBES: usize = 10_000;
/// At most this many string and number literals are used to build probes.
const MAX_STRINGS: usize = 24;
const MAX_NUMBERS: usize = 12;
/// Context the search does not vary; said in its report.
const NOT_VARIED: &str = "CI claims, on-call shifts and escalation are not varied";

/// What the search for the consequences of changed Cedar policies covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Search {
    /// Probe requests asked of both versions.
    pub probes: usize,
    /// How many there were to ask; more than `probes` when the bound cut the search short.
    pub combinations: usize,
    pub bound: usize,
    /// Principals, users the policies name, and stand-in members of groups.
    pub subjects: usize,
    /// `action on resource`, limited to the resources the changed policies are about.
    pub targets: Vec<String>,
    /// The Cedar actions asked about.
    pub abilities: Vec<String>,
    pub reasons: Vec<String>,
    pub hours: Vec<u32>,
    pub weekdays: Vec<u32>,
    /// In seconds; absent means the workflow's default.
    pub durations: Vec<Option<u64>>,
    pub not_varied: String,
}

impl std::fmt::Display for Search {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cut = if self.probes < self.combinations {
            format!(" of {} combinations (bounded at {})", self.combinations, self.bound)
        } else {
            format!(" (all combinations; bound {})", self.bound)
        };
        let durations: Vec<String> = self
            .durations
            .iter()
            .map(|d| d.map_or("default".to_string(), |s| format!("{s}s")))
            .collect();
        let list = |v: &[u32]| v.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        // A selector over a large catalog makes thousands of targets: name a few, count the rest.
        let mut targets = self.targets[..self.targets.len().min(20)].join(", ");
        if self.targets.len() > 20 {
            targets.push_str(&format!(", ... and {} more", self.targets.len() - 20));
        }
        write!(
            f,
            "searched {} probe requests{cut}, built from the policies' literals: {} subjects x [{}] x Cedar actions [{}]; \
             reasons {:?}; hours (UTC) [{}]; weekdays [{}]; durations [{}]. {}.",
            self.probes,
            self.subjects,
            targets,
            self.abilities.join(", "),
            self.reasons,
            list(&self.hours),
            list(&self.weekdays),
            durations.join(", "),
            NOT_VARIED,
        )
    }
}

/// The representative request's changes of one subject, action, ability and kind, from one
/// answer to another, over the set of resources they happen on: "group:dev gains read on 37
/// resources with env=staging".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeGroup {
    pub subject: String,
    pub action: String,
    pub ability: String,
    pub kind: ChangeKind,
    pub before: String,
    pub after: String,
    /// How many resources.
    pub count: usize,
    /// The kind every one of them is, if they share one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_kind: Option<String>,
    /// The labels every one of them has (in the new version, or the old for a resource gone).
    pub labels: BTreeMap<String, String>,
    /// All of them, in name order.
    pub resources: Vec<String>,
    /// The change in words.
    pub summary: String,
}

/// How many names of a group the text output shows; `--output json` has them all.
pub const NAMES_SHOWN: usize = 10;

impl ChangeGroup {
    /// The resource set in words: `orders-db`, or `37 postgres resources with env=staging`.
    fn set(&self) -> String {
        if let ([only], 1) = (self.resources.as_slice(), self.count) {
            return only.clone();
        }
        let mut text = match &self.resource_kind {
            Some(kind) => format!("{} {kind} resources", self.count),
            None => format!("{} resources", self.count),
        };
        if !self.labels.is_empty() {
            let labels: Vec<String> = self.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            text.push_str(&format!(" with {}", labels.join(", ")));
        }
        text
    }

    fn describe(&self) -> String {
        let (subject, action, set) = (&self.subject, &self.action, self.set());
        let verb = match (self.ability.as_str(), self.kind) {
            ("request", ChangeKind::Gained) => "gains",
            ("request", ChangeKind::Lost) => "loses",
            ("request", ChangeKind::Weaker) => "needs less for",
            ("request", ChangeKind::Stronger) => "needs more for",
            ("break_glass", ChangeKind::Gained) => "may now break glass for",
            ("break_glass", ChangeKind::Lost) => "may no longer break glass for",
            ("break_glass", ChangeKind::Weaker) => "may break glass longer for",
            ("break_glass", ChangeKind::Stronger) => "may break glass less long for",
            ("max_duration", ChangeKind::Weaker) => "may hold longer",
            ("max_duration", ChangeKind::Stronger) => "may hold less long",
            _ => "has a changed",
        };
        let what = if verb == "has a changed" {
            format!("{} for {action}", self.ability)
        } else {
            action.clone()
        };
        format!("{subject} {verb} {what} on {set} ({} -> {})", self.before, self.after)
    }
}

impl std::fmt::Display for ChangeGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = match self.kind {
            ChangeKind::Gained => '+',
            ChangeKind::Lost => '-',
            ChangeKind::Weaker | ChangeKind::Stronger | ChangeKind::Changed => '~',
        };
        let kind = format!("{:?}", self.kind).to_lowercase();
        write!(
            f,
            "{sign} {}: {} {} on {}: {kind}: {} -> {}",
            self.subject,
            self.ability,
            self.action,
            self.set(),
            self.before,
            self.after
        )?;
        if self.count > 1 {
            let shown = &self.resources[..self.resources.len().min(NAMES_SHOWN)];
            write!(f, "\n    {}", shown.join(", "))?;
            if self.resources.len() > shown.len() {
                write!(
                    f,
                    ", ... and {} more (--output json lists them all)",
                    self.resources.len() - shown.len()
                )?;
            }
        }
        Ok(())
    }
}

/// Group the representative request's changes by subject, action, ability, kind and answers,
/// and name what their resources have in common.
pub fn group(changes: &[Change], old: &Policy, new: &Policy) -> Vec<ChangeGroup> {
    type GroupKey<'a> = (&'a str, &'a str, &'a str, u8, &'a str, &'a str);
    let mut sets: BTreeMap<GroupKey<'_>, (ChangeKind, BTreeSet<&str>)> = BTreeMap::new();
    for c in changes.iter().filter(|c| c.when.is_none()) {
        let key = (
            c.subject.as_str(),
            c.action.as_str(),
            c.ability.as_str(),
            c.kind as u8,
            c.before.as_str(),
            c.after.as_str(),
        );
        sets.entry(key)
            .or_insert_with(|| (c.kind, BTreeSet::new()))
            .1
            .insert(c.resource.as_str());
    }
    let declared = |name: &str| {
        new.rules()
            .catalog()
            .resource(name)
            .or_else(|| old.rules().catalog().resource(name))
    };
    sets.into_iter()
        .map(|((subject, action, ability, _, before, after), (kind, resources))| {
            let mut labels: Option<BTreeMap<String, String>> = None;
            let mut resource_kind: Option<Option<&str>> = None;
            for name in &resources {
                let r = declared(name);
                let mine = r.map(|r| r.labels.clone()).unwrap_or_default();
                labels = Some(match labels {
                    None => mine,
                    Some(mut common) => {
                        common.retain(|k, v| mine.get(k) == Some(v));
                        common
                    }
                });
                let k = r.map(|r| r.kind.as_str());
                resource_kind = match resource_kind {
                    None => Some(k),
                    Some(same) if same == k => Some(same),
                    Some(_) => Some(None),
                };
            }
            let mut g = ChangeGroup {
                subject: subject.to_string(),
                action: action.to_string(),
                ability: ability.to_string(),
                kind,
                before: before.to_string(),
                after: after.to_string(),
                count: resources.len(),
                resource_kind: resource_kind.flatten().map(str::to_string),
                labels: labels.unwrap_or_default(),
                resources: resources.into_iter().map(str::to_string).collect(),
                summary: String::new(),
            };
            g.summary = g.describe();
            g
        })
        .collect()
}

/// A resource added to, removed from or edited in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogEdit {
    pub edit: Edit,
    pub resource: String,
    /// What it was and is: kind, labels, parent, owners and provider settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// How many catalog edits the text output shows; `--output json` has them all.
pub const EDITS_SHOWN: usize = 20;

impl std::fmt::Display for CatalogEdit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.before, &self.after) {
            (Some(b), Some(a)) => write!(f, "~ {}: {b} -> {a}", self.resource),
            (None, Some(a)) => write!(f, "+ {}: {a}", self.resource),
            (Some(b), None) => write!(f, "- {}: {b}", self.resource),
            (None, None) => write!(f, "~ {}", self.resource),
        }
    }
}

/// A declared resource as a catalog edit shows it.
fn resource_text(r: &crate::Resource) -> String {
    let mut text = r.kind.clone();
    if !r.labels.is_empty() {
        let labels: Vec<String> = r.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        text.push_str(&format!("; {}", labels.join(", ")));
    }
    if let Some(parent) = &r.parent {
        text.push_str(&format!("; in {parent}"));
    }
    if !r.owners.is_empty() {
        text.push_str(&format!("; owners {}", r.owners.join(", ")));
    }
    if !r.actions.is_empty() {
        let actions: Vec<String> = r
            .actions
            .iter()
            .map(|(name, labels)| {
                let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{name}({})", labels.join(", "))
            })
            .collect();
        text.push_str(&format!("; actions {}", actions.join(", ")));
    }
    for (key, value) in &r.settings {
        text.push_str(&format!("; {key} = {value}"));
    }
    text
}

/// The resources added, removed or edited between two catalogs, by name. Reported beside the
/// access changes they cause: a relabelled resource that no selector or Cedar policy reads
/// changes no access, but a reviewer should still see it.
pub fn catalog_edits(old: &Policy, new: &Policy) -> Vec<CatalogEdit> {
    let (before, after) = (old.rules().catalog(), new.rules().catalog());
    let names: BTreeSet<&str> = before
        .resources()
        .chain(after.resources())
        .map(|r| r.name.as_str())
        .collect();
    names
        .into_iter()
        .filter_map(|name| {
            let (b, a) = (before.resource(name), after.resource(name));
            let edit = match (b, a) {
                (None, Some(_)) => Edit::Added,
                (Some(_), None) => Edit::Removed,
                (Some(b), Some(a)) => {
                    let same = b.kind == a.kind
                        && b.labels == a.labels
                        && b.parent == a.parent
                        && b.owners == a.owners
                        && b.actions == a.actions
                        && b.settings == a.settings;
                    if same {
                        return None;
                    }
                    Edit::Edited
                }
                (None, None) => return None,
            };
            Some(CatalogEdit {
                edit,
                resource: name.to_string(),
                before: b.map(resource_text),
                after: a.map(resource_text),
            })
        })
        .collect()
}

/// Which account of another system acts as a principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Link {
    /// `github_user`: `/jitgate approve` comments by that GitHub login.
    GithubUser,
    /// `slack_user`: Approve and Deny buttons pressed by that Slack user.
    SlackUser,
}

impl Link {
    pub fn as_str(self) -> &'static str {
        match self {
            Link::GithubUser => "github_user",
            Link::SlackUser => "slack_user",
        }
    }

    /// Where the linked account decides from.
    fn place(self) -> &'static str {
        match self {
            Link::GithubUser => "GitHub",
            Link::SlackUser => "Slack",
        }
    }
}

/// A principal's linked account added, removed or replaced: whoever holds the new account
/// may now approve and deny as that principal, so a reviewer must see it even though no
/// verdict changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkChange {
    pub principal: String,
    pub link: Link,
    /// `Gained` (linked), `Lost` (unlinked, or the principal is gone) or `Changed`.
    pub kind: ChangeKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// The principal's groups in the new version (the old for one gone): what the account
    /// may decide.
    pub groups: Vec<String>,
    /// The change in words.
    pub summary: String,
}

impl LinkChange {
    fn describe(&self) -> String {
        let (who, place) = (&self.principal, self.link.place());
        let account = |a: &str| format!("{place} user {}", jitgate_core::text::escape_for_display(a));
        match (&self.before, &self.after) {
            (Some(b), Some(a)) => format!(
                "{} now acts as {who} from {place}, instead of {}",
                account(a),
                account(b)
            ),
            (None, Some(a)) => format!("{} now acts as {who} from {place}", account(a)),
            (Some(b), None) => format!("{} no longer acts as {who} from {place}", account(b)),
            (None, None) => format!("{who}'s {} is unchanged", self.link.as_str()),
        }
    }
}

impl std::fmt::Display for LinkChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = match self.kind {
            ChangeKind::Gained => '+',
            ChangeKind::Lost => '-',
            ChangeKind::Weaker | ChangeKind::Stronger | ChangeKind::Changed => '~',
        };
        write!(f, "{sign} {}: {}", self.principal, self.summary)?;
        if !self.groups.is_empty() {
            write!(f, " (groups {})", self.groups.join(", "))?;
        }
        Ok(())
    }
}

/// Every principal's `github_user` and `slack_user` compared between two versions, by
/// principal. GitHub logins are compared ignoring ASCII case, as GitHub does: `Octo-Cat` for
/// `octo-cat` is the same account, not a change. Slack ids are compared exactly.
pub fn link_changes(old: &Policy, new: &Policy) -> Vec<LinkChange> {
    let names: BTreeSet<&str> = old
        .principals()
        .chain(new.principals())
        .map(|e| e.identity.principal.as_str())
        .collect();
    let mut out = Vec::new();
    for name in names {
        let (b, a) = (old.rules().principal(name), new.rules().principal(name));
        for link in [Link::GithubUser, Link::SlackUser] {
            let account = |e: Option<&crate::DirectoryEntry>| {
                e.and_then(|e| match link {
                    Link::GithubUser => e.github_user.clone(),
                    Link::SlackUser => e.slack_user.clone(),
                })
            };
            let (before, after) = (account(b), account(a));
            let kind = match (&before, &after) {
                (None, None) => continue,
                (Some(x), Some(y)) if link == Link::GithubUser && x.eq_ignore_ascii_case(y) => continue,
                (Some(x), Some(y)) if x == y => continue,
                (None, Some(_)) => ChangeKind::Gained,
                (Some(_), None) => ChangeKind::Lost,
                (Some(_), Some(_)) => ChangeKind::Changed,
            };
            let groups = a.or(b).map(|e| e.identity.groups.clone()).unwrap_or_default();
            let mut change = LinkChange {
                principal: name.to_string(),
                link,
                kind,
                before,
                after,
                groups,
                summary: String::new(),
            };
            change.summary = change.describe();
            out.push(change);
        }
    }
    out
}

/// Everything `policy diff` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Differences for the representative request, then those the search found.
    pub changes: Vec<Change>,
    /// The representative request's changes per resource set (`changes` grouped).
    pub groups: Vec<ChangeGroup>,
    /// Resources added to, removed from or edited in the catalog, whether or not they change
    /// anyone's access.
    pub catalog: Vec<CatalogEdit>,
    /// Added, removed and edited policies of the `.cedar` files.
    pub cedar_policies: Vec<CedarChange>,
    /// Principals whose GitHub login or Slack user changed: who may decide as them from a
    /// pull-request comment or a Slack button.
    pub links: Vec<LinkChange>,
    /// Present when Cedar policies changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search: Option<Search>,
}

impl Report {
    /// No effective change: no difference found and no Cedar policy added, removed or edited
    /// (a changed policy is a change even when no probe shows its effect).
    pub fn is_unchanged(&self) -> bool {
        self.changes.is_empty() && self.cedar_policies.is_empty() && self.links.is_empty()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let edits = |f: &mut std::fmt::Formatter<'_>, title: &str| -> std::fmt::Result {
            if self.catalog.is_empty() {
                return Ok(());
            }
            writeln!(f, "{title} ({}):", self.catalog.len())?;
            for e in self.catalog.iter().take(EDITS_SHOWN) {
                writeln!(f, "{e}")?;
            }
            if self.catalog.len() > EDITS_SHOWN {
                writeln!(
                    f,
                    "... and {} more (--output json lists them all)",
                    self.catalog.len() - EDITS_SHOWN
                )?;
            }
            Ok(())
        };
        if self.is_unchanged() {
            writeln!(f, "no effective change in access")?;
            return edits(f, "Catalog edits that change no access");
        }
        let searched: Vec<&Change> = self.changes.iter().filter(|c| c.when.is_some()).collect();
        for g in &self.groups {
            writeln!(f, "{g}")?;
        }
        if !self.links.is_empty() {
            writeln!(f, "Linked accounts changed ({}):", self.links.len())?;
            for l in &self.links {
                writeln!(f, "{l}")?;
            }
        }
        edits(f, "Catalog edits")?;
        if self.cedar_policies.is_empty() {
            return Ok(());
        }
        writeln!(f, "Cedar policies changed ({}):", self.cedar_policies.len())?;
        for c in &self.cedar_policies {
            writeln!(f, "{c}")?;
        }
        if let Some(search) = &self.search {
            writeln!(f, "Consequences: {search}")?;
        }
        if searched.is_empty() {
            writeln!(
                f,
                "No probe request is decided differently; the change may still matter for requests not searched: review the policies above."
            )?;
        } else {
            writeln!(f, "Requests decided differently ({}):", searched.len())?;
            for c in searched {
                writeln!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// Whether two policies of the two versions are one policy, edited.
type SamePolicy = dyn Fn(&AuthoredPolicy, &AuthoredPolicy) -> bool;

/// Who, what, which ability, from what to what: one change, whatever request showed it.
type ChangeKey = (String, String, String, String, String, String);

fn key_of(c: &Change) -> ChangeKey {
    (
        c.subject.clone(),
        c.resource.clone(),
        c.action.clone(),
        c.ability.clone(),
        c.before.clone(),
        c.after.clone(),
    )
}

/// Match the `.cedar` policies of two versions: the same text (whatever its place, layout or
/// annotations) is unchanged; the rest pair up as edited by id, then by file and scope; what
/// is left was added or removed.
pub fn cedar_changes(old: &[AuthoredPolicy], new: &[AuthoredPolicy]) -> Vec<CedarChange> {
    let mut old_left: Vec<Option<&AuthoredPolicy>> = old.iter().map(Some).collect();
    let mut new_left: Vec<Option<&AuthoredPolicy>> = new.iter().map(Some).collect();
    for n in new_left.iter_mut() {
        let Some(p) = *n else { continue };
        if let Some(o) = old_left.iter_mut().find(|o| o.is_some_and(|o| o.meaning == p.meaning)) {
            *o = None;
            *n = None;
        }
    }
    let mut out = Vec::new();
    let pairings: [&SamePolicy; 2] = [&|o, n| o.id == n.id, &|o, n| o.file == n.file && o.scope == n.scope];
    for same in pairings {
        for n in new_left.iter_mut() {
            let Some(p) = *n else { continue };
            if let Some(o) = old_left.iter_mut().find(|o| o.is_some_and(|o| same(o, p))) {
                let mut change = CedarChange::of(Edit::Edited, p);
                change.was = o.map(|o| Box::new(CedarChange::of(Edit::Removed, o)));
                out.push(change);
                *o = None;
                *n = None;
            }
        }
    }
    out.extend(new_left.into_iter().flatten().map(|p| CedarChange::of(Edit::Added, p)));
    out.extend(
        old_left
            .into_iter()
            .flatten()
            .map(|p| CedarChange::of(Edit::Removed, p)),
    );
    out.sort_by(|a, b| (a.edit == Edit::Removed, &a.file, a.line).cmp(&(b.edit == Edit::Removed, &b.file, b.line)));
    out
}

/// `policy diff`: the representative comparison, the changed Cedar policies, and the search
/// for what those change.
pub fn review(old: &Policy, new: &Policy) -> Report {
    let mut changes = diff(old, new);
    let groups = group(&changes, old, new);
    let catalog = catalog_edits(old, new);
    let cedar_policies = cedar_changes(old.cedar_sources(), new.cedar_sources());
    let links = link_changes(old, new);
    if cedar_policies.is_empty() {
        return Report {
            changes,
            groups,
            catalog,
            cedar_policies,
            links,
            search: None,
        };
    }
    let (found, search) = probe(old, new);
    let known: HashSet<ChangeKey> = changes.iter().map(key_of).collect();
    changes.extend(found.into_iter().filter(|c| !known.contains(&key_of(c))));
    Report {
        changes,
        groups,
        catalog,
        cedar_policies,
        links,
        search: Some(search),
    }
}

/// One probe request's context.
#[derive(Debug, Clone)]
struct Probe {
    reason: usize,
    hour: usize,
    weekday: usize,
    duration: usize,
}

impl Probe {
    /// How far it is from the representative request: probes that vary one thing come first.
    fn distance(&self) -> usize {
        [self.reason, self.hour, self.weekday, self.duration]
            .iter()
            .filter(|i| **i != 0)
            .count()
    }
}

const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// A moment of the representative week (that of the representative request).
fn time_at(weekday: u32, hour: u32) -> Timestamp {
    // Monday 2026-01-05 00:00 UTC; the representative request is two days and ten hours later.
    let monday = 1_767_571_200_i64;
    chrono::DateTime::from_timestamp(monday + i64::from(weekday - 1) * 86_400 + i64::from(hour) * 3600, 0)
        .unwrap_or_default()
}

fn looks_like_ticket(s: &str) -> bool {
    let mut parts = s.splitn(2, '-');
    let (Some(key), Some(number)) = (parts.next(), parts.next()) else {
        return false;
    };
    key.len() >= 2
        && key.starts_with(|c: char| c.is_ascii_uppercase())
        && key.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        && !number.is_empty()
        && number.chars().all(|c| c.is_ascii_digit())
}

fn push_unique<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}

/// Search both versions for requests the changed Cedar policies decide differently.
fn probe(old: &Policy, new: &Policy) -> (Vec<Change>, Search) {
    let changed: Vec<&AuthoredPolicy> = {
        let ids: Vec<(String, String, usize)> = cedar_changes(old.cedar_sources(), new.cedar_sources())
            .into_iter()
            .flat_map(|c| {
                let was = c.was.as_ref().map(|w| (w.id.clone(), w.file.clone(), w.line));
                std::iter::once((c.id.clone(), c.file.clone(), c.line)).chain(was)
            })
            .collect();
        old.cedar_sources()
            .iter()
            .chain(new.cedar_sources())
            .filter(|p| ids.contains(&(p.id.clone(), p.file.clone(), p.line)))
            .collect()
    };
    // Where to look: the resources and Cedar actions the changed policies are about.
    let resources: Option<BTreeSet<String>> = changed.iter().map(|p| p.resource.clone()).collect();
    let abilities: Vec<Ability> = match changed
        .iter()
        .map(|p| p.abilities.clone())
        .collect::<Option<Vec<Vec<Ability>>>>()
    {
        Some(lists) => Ability::ALL
            .into_iter()
            .filter(|a| lists.iter().any(|l| l.contains(a)))
            .collect(),
        None => Ability::ALL.to_vec(),
    };
    let mut targets: BTreeSet<(String, String)> = BTreeSet::new();
    for p in [old, new] {
        for w in p.workflows() {
            if resources.as_ref().is_none_or(|r| r.contains(&w.resource)) {
                targets.insert((w.resource.clone(), w.action.clone()));
            }
        }
    }
    // What to vary: the literals of the changed policies first, then of the others.
    let others = old.cedar_sources().iter().chain(new.cedar_sources());
    let mut strings: Vec<String> = Vec::new();
    let mut numbers: Vec<i64> = Vec::new();
    let mut users: Vec<String> = Vec::new();
    for p in changed.iter().copied().chain(others) {
        for s in &p.strings {
            if !s.is_empty() && strings.len() < MAX_STRINGS {
                push_unique(&mut strings, s.clone());
            }
        }
        for n in &p.numbers {
            if numbers.len() < MAX_NUMBERS {
                push_unique(&mut numbers, *n);
            }
        }
        for u in &p.users {
            push_unique(&mut users, u.clone());
        }
    }
    let ticket = strings
        .iter()
        .find(|s| looks_like_ticket(s))
        .cloned()
        .unwrap_or_else(|| "OPS-1".to_string());
    let mut reasons = vec![format!("probe {ticket}")];
    for s in &strings {
        // Equal to it, starting with it, ending with it; each with a ticket for workflows
        // that want one, unless it is the ticket.
        push_unique(&mut reasons, s.clone());
        push_unique(&mut reasons, format!("{s} {ticket}"));
        push_unique(&mut reasons, format!("{ticket} {s}"));
    }
    let mut hours: Vec<u32> = vec![10, 3];
    let mut weekdays: Vec<u32> = vec![3, 7];
    let mut durations: Vec<Option<u64>> = vec![None];
    for n in &numbers {
        for m in [n - 1, *n, n + 1] {
            if let Ok(h) = u32::try_from(m) {
                if h < 24 {
                    push_unique(&mut hours, h);
                }
                if (1..=7).contains(&h) {
                    push_unique(&mut weekdays, h);
                }
            }
            // Below a minute a number is an hour or a weekday more likely than a duration.
            if let Ok(secs) = u64::try_from(m) {
                if secs >= 60 {
                    push_unique(&mut durations, Some(secs));
                }
            }
        }
    }
    // Who asks: the users the policies name, the directories' principals, and a stand-in
    // member of each group.
    let mut subjects: Vec<String> = users;
    let mut groups: BTreeSet<String> = BTreeSet::new();
    for p in [new, old] {
        for entry in p.principals() {
            push_unique(&mut subjects, entry.identity.principal.clone());
            groups.extend(entry.identity.groups.iter().cloned());
        }
        groups.extend(p.rules().provisioned_groups().map(str::to_string));
    }
    subjects.extend(groups.into_iter().map(|g| format!("group:{g}")));
    let triples: Vec<(&String, &(String, String))> = subjects
        .iter()
        .flat_map(|s| targets.iter().map(move |t| (s, t)))
        .collect();
    let mut contexts: Vec<Probe> = Vec::new();
    for reason in 0..reasons.len() {
        for hour in 0..hours.len() {
            for weekday in 0..weekdays.len() {
                for duration in 0..durations.len() {
                    contexts.push(Probe {
                        reason,
                        hour,
                        weekday,
                        duration,
                    });
                }
            }
        }
    }
    contexts.sort_by_key(Probe::distance);
    // Ask only what the changed policies can decide.
    let filing = abilities
        .iter()
        .any(|a| matches!(a, Ability::Request | Ability::AutoApprove));
    let break_glass = abilities.contains(&Ability::BreakGlass);
    let per_triple = abilities
        .iter()
        .filter(|a| matches!(a, Ability::Approve | Ability::Extend))
        .count()
        + usize::from(filing || break_glass);
    let combinations = triples.len() * contexts.len() * per_triple;

    let mut found: Vec<Change> = Vec::new();
    let mut seen: HashSet<ChangeKey> = HashSet::new();
    let mut probes = 0usize;
    let mut budget = MAX_PROBES.checked_div(per_triple).unwrap_or(0);
    // Spread what the bound allows over each distance in turn: every probe that varies one
    // thing is asked before any that varies two, and each context gets its share of subjects
    // and targets (rotating, so that together they cover all).
    let mut start = 0;
    while start < contexts.len() && budget > 0 {
        let distance = contexts[start].distance();
        let end = contexts[start..]
            .iter()
            .position(|c| c.distance() != distance)
            .map_or(contexts.len(), |n| start + n);
        let tier = &contexts[start..end];
        let share = (budget / tier.len()).clamp(1, triples.len().max(1));
        for (i, ctx) in tier.iter().enumerate() {
            if budget == 0 || triples.is_empty() {
                break;
            }
            let take = share.min(budget);
            for k in 0..take {
                let (subject, (resource, action)) = triples[(i * take + k) % triples.len()];
                let reason = &reasons[ctx.reason];
                let (hour, weekday) = (hours[ctx.hour], weekdays[ctx.weekday]);
                let duration = durations[ctx.duration].map(DurationSecs);
                let at = time_at(weekday, hour);
                let when = format!(
                    "filed with reason {reason:?} on a {} at {hour:02}:00 UTC for {}",
                    WEEKDAYS[(weekday - 1) as usize],
                    duration.map_or("the default duration".to_string(), |d| d.to_string())
                );
                let mut record = |mut c: Change, when: String| {
                    if seen.insert(key_of(&c)) {
                        c.when = Some(when);
                        found.push(c);
                    }
                };
                probes += per_triple;
                if filing || break_glass {
                    let situation = Situation {
                        reason: Some(reason),
                        duration,
                        now: at,
                        filing,
                        break_glass,
                    };
                    let ask = |p: &Policy| p.explain_for(&identity_in(p, subject), resource, action, &situation);
                    let mut out = Vec::new();
                    compare(subject, resource, action, &ask(old), &ask(new), &mut out);
                    // A longer maximum is the workflow's, already in the representative diff.
                    for c in out.into_iter().filter(|c| c.ability != "max_duration") {
                        record(c, when.clone());
                    }
                }
                for ability in abilities
                    .iter()
                    .filter(|a| matches!(a, Ability::Approve | Ability::Extend))
                {
                    let requester = match ability {
                        Ability::Approve => requester_of(new, resource, action, subject)
                            .or_else(|| requester_of(old, resource, action, subject))
                            .unwrap_or_else(|| "someone".to_string()),
                        _ => subject.clone(),
                    };
                    let ask = Ask {
                        resource,
                        action,
                        duration,
                        reason,
                        payload: None,
                        break_glass: false,
                    };
                    let before = old.cedar_allows(&identity_in(old, subject), *ability, &ask, &requester, at);
                    let after = new.cedar_allows(&identity_in(new, subject), *ability, &ask, &requester, at);
                    let (before, after) = (before.unwrap_or(false), after.unwrap_or(false));
                    if before != after {
                        let word = |yes: bool| if yes { "allowed" } else { "refused" };
                        let when = match ability {
                            Ability::Approve => format!("reviewing a request by {requester} {when}"),
                            _ => when.replacen("filed", "extending a grant", 1),
                        };
                        record(
                            Change {
                                subject: subject.clone(),
                                resource: resource.clone(),
                                action: action.clone(),
                                ability: ability.as_str().to_string(),
                                kind: if after { ChangeKind::Gained } else { ChangeKind::Lost },
                                before: word(before).into(),
                                after: word(after).into(),
                                when: None,
                            },
                            when,
                        );
                    }
                }
            }
            budget -= take;
        }
        start = end;
    }
    let search = Search {
        probes,
        combinations,
        bound: MAX_PROBES,
        subjects: subjects.len(),
        targets: targets.iter().map(|(r, a)| format!("{a} on {r}")).collect(),
        abilities: abilities.iter().map(|a| a.as_str().to_string()).collect(),
        reasons,
        hours,
        weekdays,
        durations,
        not_varied: NOT_VARIED.to_string(),
    };
    (found, search)
}

/// Someone other than `subject` who may file requests for `action` on `resource`.
fn requester_of(policy: &Policy, resource: &str, action: &str, subject: &str) -> Option<String> {
    let workflow = policy.rules().workflow(resource, action).ok()?;
    policy
        .principals()
        .find(|e| e.identity.principal != subject && e.identity.groups.iter().any(|g| workflow.requesters.contains(g)))
        .map(|e| e.identity.principal.clone())
}
