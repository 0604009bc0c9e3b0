//! `jitgate policy test`: the policy's own test cases, kept in `tests/*.toml` in the policy
//! directory, each a request and the outcome the policy must give it. A case names one
//! resource (`resource = "prod-db"`), or selects from the catalog as workflows do
//! (`resources = { labels = { env = "prod" }, kind = "postgres" }`): its expectation must then
//! hold for every declared resource the selector matches.

use crate::{catalog, Policy, PolicyError, Selector, Verdict};
use jitgate_core::{parse_duration, text, Ask, CiClaims, DurationSecs, Identity, PrincipalKind, Step, Timestamp};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    #[serde(default)]
    case: Vec<toml::Spanned<CaseSpec>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseSpec {
    name: String,
    /// A principal of the directory, or any name together with `groups`.
    principal: String,
    groups: Option<Vec<String>>,
    /// The principal is an AI agent acting for this person: it is in the group `agents` and
    /// in the person's groups (but `admins` and `auditors`), as the server makes an agent's
    /// identity, and Cedar sees `context.on_behalf_of`.
    on_behalf_of: Option<String>,
    /// One resource by name, or
    resource: Option<String>,
    /// every declared resource a selector matches (the syntax of workflows).
    resources: Option<SelectorSpec>,
    action: String,
    #[serde(default)]
    reason: String,
    duration: Option<String>,
    payload: Option<String>,
    #[serde(default)]
    break_glass: bool,
    /// When the request is made (RFC 3339); default 2026-01-07T10:00:00Z, a Wednesday morning.
    at: Option<String>,
    ci: Option<CiSpec>,
    /// `automatic`, `approval` or `refused`.
    expect: String,
    /// For `approval`: the steps, like `[{ group = "sre", approvals = 1 }]`.
    #[serde(default)]
    approvals: Vec<StepSpec>,
    /// The grant's duration the policy gives (the asked one, or the default).
    duration_is: Option<String>,
    /// For `refused`: a part of the refusal's message.
    message: Option<String>,
}

/// `resources = { names = [...], kind = "...", labels = { ... } }`, spans kept to place errors.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SelectorSpec {
    #[serde(default)]
    names: Vec<toml::Spanned<String>>,
    kind: Option<toml::Spanned<String>>,
    #[serde(default)]
    labels: BTreeMap<String, toml::Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CiSpec {
    repository: String,
    #[serde(rename = "ref")]
    git_ref: String,
    #[serde(default)]
    environment: String,
    #[serde(default)]
    workflow: String,
    #[serde(default)]
    actor: String,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct StepSpec {
    group: String,
    approvals: u32,
}

/// The outcome of one case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub file: String,
    pub line: usize,
    pub name: String,
    /// `None` when it passed; otherwise expected and got, for people.
    pub failure: Option<(String, String)>,
    /// For a case with a selector: the resource it failed on first (its `got` says so too).
    pub failed_on: Option<String>,
    /// How many resources the case was asked about: 1, or those its selector matched.
    pub resources: usize,
}

fn describe_steps(steps: &[Step]) -> String {
    steps
        .iter()
        .map(|s| format!("{} from {}", s.approvals, s.group))
        .collect::<Vec<_>>()
        .join(" and ")
}

fn default_time() -> Timestamp {
    chrono::DateTime::from_timestamp(1_767_780_000, 0).unwrap_or_default()
}

/// Run every case of `dir/tests/*.toml` against `policy`.
pub fn run(policy: &Policy, dir: &Path) -> Result<Vec<CaseResult>, Vec<PolicyError>> {
    let tests_dir = dir.join("tests");
    let mut files: Vec<_> = match std::fs::read_dir(&tests_dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(vec![PolicyError {
                file: tests_dir.display().to_string(),
                line: 0,
                message: e.to_string(),
            }])
        }
    };
    files.sort();
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for path in files {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|e| {
            vec![PolicyError {
                file: file.clone(),
                line: 0,
                message: format!("cannot read: {e}"),
            }]
        })?;
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let located = |line: usize, message: String| PolicyError {
            file: file.clone(),
            line,
            message,
        };
        let parsed: CaseFile = match toml::from_str(&text) {
            Ok(p) => p,
            Err(e) => {
                let line = e.span().map(|s| line_of(s.start)).unwrap_or(1);
                errors.push(PolicyError {
                    file,
                    line,
                    message: e.message().to_string(),
                });
                continue;
            }
        };
        for spanned in parsed.case {
            let line = line_of(spanned.span().start);
            let case = spanned.into_inner();
            let targets = match (&case.resource, &case.resources) {
                (Some(name), None) => vec![name.clone()],
                (None, Some(spec)) => match selected(policy, spec) {
                    Ok(names) => names,
                    Err((offset, message)) => {
                        errors.push(located(offset.map_or(line, line_of), message));
                        continue;
                    }
                },
                _ => {
                    errors.push(located(
                        line,
                        "name the resource: resource = \"NAME\", or resources = { labels = { KEY = \"VALUE\" } } for every declared resource a selector matches (not both)".into(),
                    ));
                    continue;
                }
            };
            let mut failed: Vec<(String, (String, String))> = Vec::new();
            let mut invalid = None;
            for resource in &targets {
                match run_case(policy, &case, resource) {
                    Ok(None) => {}
                    Ok(Some(failure)) => failed.push((resource.clone(), failure)),
                    Err(message) => {
                        invalid = Some(message);
                        break;
                    }
                }
            }
            if let Some(message) = invalid {
                errors.push(located(line, message));
                continue;
            }
            let selecting = case.resources.is_some();
            let (failed_on, failure) = match failed.first() {
                None => (None, None),
                Some((resource, (expected, got))) if selecting => {
                    let others: Vec<&str> = failed[1..].iter().map(|(r, _)| r.as_str()).collect();
                    let more = match others.len() {
                        0 => String::new(),
                        n => format!(
                            "; also fails on {n} more: {}{}",
                            others[..n.min(10)].join(", "),
                            if n > 10 { ", ..." } else { "" }
                        ),
                    };
                    (
                        Some(resource.clone()),
                        Some((
                            match targets.len() {
                                1 => format!("{expected} on the one selected resource"),
                                n => format!("{expected} on each of the {n} selected resources"),
                            },
                            format!("on {resource}: {got}{more}"),
                        )),
                    )
                }
                Some((_, failure)) => (None, Some(failure.clone())),
            };
            results.push(CaseResult {
                file: file.clone(),
                line,
                name: case.name,
                failure,
                failed_on,
                resources: targets.len(),
            });
        }
    }
    if errors.is_empty() {
        Ok(results)
    } else {
        Err(errors)
    }
}

/// The declared resources a case's selector matches, by name; or where (a byte offset, when
/// known) and why the selector is refused.
fn selected(policy: &Policy, spec: &SelectorSpec) -> Result<Vec<String>, (Option<usize>, String)> {
    // What a reviewer reads must be what is matched: a hidden character would make a
    // selector that looks right select nothing, or something else.
    let hidden = |value: &str| {
        value
            .chars()
            .find(|c| c.is_control() || (text::is_invisible(*c) && *c != ' '))
            .map(u32::from)
    };
    let refuse = |at: usize, what: String, c: u32| {
        Err((
            Some(at),
            format!("resources.{what} holds a control or invisible character (U+{c:04X}); write it as the catalog declares it"),
        ))
    };
    for glob in &spec.names {
        if let Some(c) = hidden(glob.get_ref()) {
            return refuse(glob.span().start, format!("names: {:?}", glob.get_ref()), c);
        }
    }
    if let Some(kind) = &spec.kind {
        if let Some(c) = hidden(kind.get_ref()) {
            return refuse(kind.span().start, format!("kind {:?}", kind.get_ref()), c);
        }
    }
    for (key, value) in &spec.labels {
        if let Some(c) = hidden(key).or_else(|| hidden(value.get_ref())) {
            return refuse(value.span().start, format!("labels.{key:?} = {:?}", value.get_ref()), c);
        }
    }
    let selector = Selector {
        names: spec.names.iter().map(|n| n.get_ref().clone()).collect(),
        kind: spec.kind.as_ref().map(|k| k.get_ref().clone()),
        labels: spec
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.get_ref().clone()))
            .collect(),
    };
    let catalog = policy.rules().catalog();
    let names: Vec<String> = selector.select(catalog).into_iter().map(|r| r.name.clone()).collect();
    if names.is_empty() {
        let hint = match (
            spec.labels.keys().find(|k| !catalog.has_label_key(k)),
            selector.kind.as_deref().filter(|k| !catalog.has_kind(k)),
            spec.names
                .iter()
                .find(|g| !catalog.resources().any(|r| catalog::glob_matches(g.get_ref(), &r.name))),
        ) {
            (Some(key), _, _) => format!("no declared resource has the label key '{key}'"),
            (_, Some(kind), _) => format!("no declared resource is of kind '{kind}'"),
            (_, _, Some(glob)) => format!("the glob {:?} matches no declared resource", glob.get_ref()),
            _ => "no declared resource has all of it".into(),
        };
        return Err((
            None,
            format!("{selector} selects no declared resource ({hint}); a case must test something: fix the selector or the catalog"),
        ));
    }
    Ok(names)
}

fn run_case(policy: &Policy, case: &CaseSpec, resource: &str) -> Result<Option<(String, String)>, String> {
    let mut groups = match (&case.groups, policy.rules().principal(&case.principal)) {
        (Some(groups), _) => groups.clone(),
        (None, Some(entry)) => entry.identity.groups.clone(),
        // An agent's own principal is rarely in the directory: its groups come from its person.
        (None, None) if case.on_behalf_of.is_some() => Vec::new(),
        (None, None) => {
            return Err(format!(
                "'{}' is not in the directory; give groups = [...] for a hypothetical principal",
                case.principal
            ))
        }
    };
    if let Some(person) = &case.on_behalf_of {
        if let Some(problem) = jitgate_core::principal_name_problem(person) {
            return Err(format!("on_behalf_of: {person:?} {problem}"));
        }
        if *person == case.principal {
            return Err(format!(
                "on_behalf_of: '{person}' is the principal itself; an agent acts for another principal (its person)"
            ));
        }
        // As the server builds an agent's identity: its person's groups, never their
        // administrative roles, and the group of agents.
        let inherited = policy
            .rules()
            .principal(person)
            .map(|entry| entry.identity.groups.clone())
            .unwrap_or_default();
        for group in inherited
            .into_iter()
            .filter(|g| g != jitgate_core::identity::ADMIN_GROUP && g != jitgate_core::authz::AUDITOR_GROUP)
            .chain([crate::workflow::AGENTS_GROUP.to_string()])
        {
            if !groups.contains(&group) {
                groups.push(group);
            }
        }
    }
    let identity = Identity {
        principal: case.principal.clone(),
        groups,
        kind: PrincipalKind::User,
        on_behalf_of: case.on_behalf_of.clone(),
        ci: case.ci.as_ref().map(|c| CiClaims {
            repository: c.repository.clone(),
            git_ref: c.git_ref.clone(),
            environment: c.environment.clone(),
            workflow: c.workflow.clone(),
            actor: c.actor.clone(),
        }),
    };
    let at = match &case.at {
        None => default_time(),
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|_| format!("at: '{t}' is not an RFC 3339 time"))?,
    };
    let duration = case
        .duration
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(|m| format!("duration: {m}"))?;
    let ask = Ask {
        resource,
        action: &case.action,
        duration,
        reason: &case.reason,
        payload: case.payload.as_deref(),
        break_glass: case.break_glass,
    };
    let got = policy.admit(&identity, &ask, at);
    let got_text = match &got {
        Ok(a) if a.requirement.steps.is_empty() => format!("automatic for {}", a.duration),
        Ok(a) => format!("approval: {} for {}", describe_steps(&a.requirement.steps), a.duration),
        Err(e) => format!("refused: {e}"),
    };
    let expected_steps: Vec<Step> = case
        .approvals
        .iter()
        .map(|s| Step {
            group: s.group.clone(),
            approvals: s.approvals,
        })
        .collect();
    let expected_duration: Option<DurationSecs> = case
        .duration_is
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(|m| format!("duration_is: {m}"))?;
    let verdict = match &got {
        Ok(a) if a.requirement.steps.is_empty() => Verdict::Automatic,
        Ok(a) => Verdict::NeedsApproval(a.requirement.steps.clone()),
        Err(e) => Verdict::Refused(e.to_string()),
    };
    let (matches, expected_text) = match case.expect.as_str() {
        "automatic" => (verdict == Verdict::Automatic, "automatic".to_string()),
        "approval" => (
            verdict == Verdict::NeedsApproval(expected_steps.clone()),
            format!("approval: {}", describe_steps(&expected_steps)),
        ),
        "refused" => {
            let ok = match (&got, &case.message) {
                (Err(e), Some(part)) => e.to_string().contains(part.as_str()),
                (Err(_), None) => true,
                _ => false,
            };
            let text = match &case.message {
                Some(part) => format!("refused, with a message containing \"{part}\""),
                None => "refused".into(),
            };
            (ok, text)
        }
        other => return Err(format!("expect: '{other}' is not one of automatic, approval, refused")),
    };
    let duration_ok = match (expected_duration, &got) {
        (Some(want), Ok(a)) => a.duration == want,
        (Some(_), Err(_)) => false,
        (None, _) => true,
    };
    let expected_text = match expected_duration {
        Some(d) => format!("{expected_text} for {d}"),
        None => expected_text,
    };
    if matches && duration_ok {
        Ok(None)
    } else {
        Ok(Some((expected_text, got_text)))
    }
}
