//! The review tools on a catalog (issue #21): `explain` names the workflow and selector that
//! govern a resource, `policy test` cases select resources by label, and `policy diff` reports
//! per resource set, catalog edits included, fast on large catalogs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jitgate_core::Identity;
use jitgate_policy::diff::{self, ChangeKind};
use jitgate_policy::{explanation_json, Policy, PolicyError, Specificity};
use std::fmt::Write as _;
use std::path::Path;

const DIRECTORY: &str = r#"
[[principal]]
name = "alice"
groups = ["dev"]
[[principal]]
name = "bob"
groups = ["sre"]
[[principal]]
name = "pat"
groups = ["payments"]
"#;

const WORKFLOWS: &str = r#"[[workflow]]
resources = { labels = { env = "staging" } }
actions = ["read", "write"]
requesters = ["dev"]
auto_approve = true

[[workflow]]
resources = { names = ["orders-*"], kind = "postgres" }
action = "read"
requesters = ["dev"]
steps = [{ group = "sre", approvals = 1 }]

[[workflow]]
resource = "orders-db"
action = "write"
requesters = ["dev"]
steps = [{ owners = true }]

[[workflow]]
resources = { labels = { env = "prod" } }
action = "read"
requesters = ["dev"]
steps = [{ group = "sre", approvals = 1 }]
"#;

/// A catalog of `staging` staging databases, `prod` production ones, and orders-db.
fn catalog(staging: usize, prod: usize) -> String {
    let mut text = String::from(
        "[[resource]]\nname = \"orders-db\"\nkind = \"postgres\"\nlabels = { env = \"prod\", team = \"payments\" }\nowners = [\"payments\"]\n\n",
    );
    for i in 0..staging {
        writeln!(
            text,
            "[[resource]]\nname = \"stage-{i:03}\"\nkind = \"postgres\"\nlabels = {{ env = \"staging\", team = \"t{}\" }}\n",
            i % 3
        )
        .unwrap();
    }
    for i in 0..prod {
        writeln!(
            text,
            "[[resource]]\nname = \"prod-{i:03}\"\nkind = \"postgres\"\nlabels = {{ env = \"prod\", team = \"t{}\" }}\n",
            i % 3
        )
        .unwrap();
    }
    text
}

fn load(workflows: &str, resources: &str, cedar: &[(&str, &str)]) -> Policy {
    let cedar: Vec<(String, String)> = cedar.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect();
    Policy::from_texts_with_catalog(
        DIRECTORY,
        workflows,
        None,
        &cedar,
        &[("resources.toml".to_string(), resources.to_string())],
    )
    .unwrap_or_else(|e| panic!("invalid: {:?}", &e[..e.len().min(3)]))
}

fn now() -> jitgate_core::Timestamp {
    chrono::DateTime::from_timestamp(1_767_780_000, 0).unwrap()
}

// ---- explain ----

#[test]
fn explain_names_the_workflow_and_selector_that_govern() {
    let p = load(WORKFLOWS, &catalog(2, 2), &[]);
    let alice = Identity::user("alice", &["dev"]);
    let cases = [
        (
            "stage-001",
            "read",
            1,
            "resources = { labels = { env = \"staging\" } }",
            Specificity::Labels,
            "labels",
        ),
        (
            "orders-db",
            "read",
            7,
            "resources = { names = [\"orders-*\"], kind = \"postgres\" }",
            Specificity::Glob,
            "glob",
        ),
        (
            "orders-db",
            "write",
            13,
            "resource = \"orders-db\"",
            Specificity::Exact,
            "exact",
        ),
    ];
    for (resource, action, line, selector, specificity, word) in cases {
        let e = p.explain(&alice, resource, action, None, now());
        let m = e
            .matched
            .clone()
            .unwrap_or_else(|| panic!("{resource} {action}: nothing matched"));
        assert_eq!(
            (m.file.as_str(), m.line, m.selector.as_str(), m.specificity),
            ("workflows.toml", line, selector, specificity)
        );
        let json = explanation_json("alice", resource, action, &e);
        assert_eq!(json["workflow"]["file"], "workflows.toml", "{json}");
        assert_eq!(json["workflow"]["line"], line, "{json}");
        assert_eq!(json["workflow"]["selector"], selector, "{json}");
        assert_eq!(json["workflow"]["specificity"], word, "{json}");
        let by = json["governed_by"].as_str().unwrap();
        assert!(
            by.starts_with(&format!("the workflow at workflows.toml:{line}, {selector} (by ")),
            "{by}"
        );
        // Every field there was is still there.
        for field in ["principal", "verdict", "needs", "max_duration", "summary", "single_use"] {
            assert!(json.get(field).is_some(), "{field} missing from {json}");
        }
    }
    // Nothing governs an undeclared pair: no workflow, and the JSON says so.
    let e = p.explain(&alice, "stage-001", "drop", None, now());
    assert_eq!(e.matched, None);
    let json = explanation_json("alice", "stage-001", "drop", &e);
    assert!(json["workflow"].is_null() && json["governed_by"].is_null(), "{json}");
}

// ---- policy test ----

/// A policy directory on disk with one test file.
fn dir_with_cases(resources: &str, cases: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("directory.toml"), DIRECTORY).unwrap();
    std::fs::write(dir.path().join("workflows.toml"), WORKFLOWS).unwrap();
    std::fs::write(dir.path().join("resources.toml"), resources).unwrap();
    std::fs::create_dir(dir.path().join("tests")).unwrap();
    std::fs::write(dir.path().join("tests/cases.toml"), cases).unwrap();
    dir
}

fn run_cases(dir: &Path) -> Result<Vec<jitgate_policy::testing::CaseResult>, Vec<PolicyError>> {
    let p = Policy::load(dir).unwrap_or_else(|e| panic!("{e:?}"));
    jitgate_policy::testing::run(&p, dir)
}

#[test]
fn a_case_selecting_by_label_holds_for_every_resource_it_selects() {
    let cases = r#"[[case]]
name = "staging is automatic for developers"
principal = "alice"
resources = { labels = { env = "staging" }, kind = "postgres" }
action = "read"
expect = "automatic"

[[case]]
name = "production reads need an sre"
principal = "alice"
resources = { labels = { env = "prod" } }
action = "read"
expect = "approval"
approvals = [{ group = "sre", approvals = 1 }]

[[case]]
name = "the old syntax still works"
principal = "alice"
resource = "orders-db"
action = "write"
expect = "approval"
approvals = [{ group = "payments", approvals = 1 }]
"#;
    let dir = dir_with_cases(&catalog(5, 4), cases);
    let results = run_cases(dir.path()).unwrap();
    let seen: Vec<(&str, bool, usize)> = results
        .iter()
        .map(|r| (r.name.as_str(), r.failure.is_none(), r.resources))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("staging is automatic for developers", true, 5),
            ("production reads need an sre", true, 5),
            ("the old syntax still works", true, 1),
        ],
        "{results:?}"
    );
}

#[test]
fn a_selecting_case_that_fails_names_the_resource_it_failed_on() {
    // One staging database lost its label: its reads now need an sre.
    let resources = catalog(6, 1).replace(
        "name = \"stage-001\"\nkind = \"postgres\"\nlabels = { env = \"staging\", team = \"t1\" }",
        "name = \"stage-001\"\nkind = \"postgres\"\nlabels = { env = \"prod\", team = \"t1\" }",
    );
    let cases = "[[case]]\nname = \"every t1 database is automatic\"\nprincipal = \"alice\"\nresources = { labels = { team = \"t1\" } }\naction = \"read\"\nexpect = \"automatic\"\n";
    let dir = dir_with_cases(&resources, cases);
    let results = run_cases(dir.path()).unwrap();
    assert_eq!(results.len(), 1);
    let r = &results[0];
    assert_eq!(r.failed_on.as_deref(), Some("stage-001"), "{r:?}");
    let (expected, got) = r.failure.clone().unwrap();
    assert_eq!(expected, "automatic on each of the 2 selected resources");
    assert!(got.starts_with("on stage-001: approval: 1 from sre"), "{got}");
}

#[test]
fn a_case_selector_that_selects_nothing_is_an_error_with_its_line() {
    let cases = "[[case]]\nname = \"a\"\nprincipal = \"alice\"\nresource = \"orders-db\"\naction = \"write\"\nexpect = \"refused\"\n\n[[case]]\nname = \"typo\"\nprincipal = \"alice\"\nresources = { labels = { env = \"prdo\" } }\naction = \"read\"\nexpect = \"automatic\"\n\n[[case]]\nname = \"no such key\"\nprincipal = \"alice\"\nresources = { labels = { tier = \"1\" } }\naction = \"read\"\nexpect = \"automatic\"\n\n[[case]]\nname = \"both\"\nprincipal = \"alice\"\nresource = \"orders-db\"\nresources = { kind = \"postgres\" }\naction = \"read\"\nexpect = \"automatic\"\n";
    let dir = dir_with_cases(&catalog(1, 1), cases);
    let errors: Vec<String> = run_cases(dir.path())
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    let file = dir.path().join("tests/cases.toml").display().to_string();
    assert!(
        errors.iter().any(|e| e.starts_with(&format!("{file}:8: "))
            && e.contains("resources = { labels = { env = \"prdo\" } } selects no declared resource")),
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with(&format!("{file}:15: "))
                && e.contains("no declared resource has the label key 'tier'")),
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with(&format!("{file}:22: ")) && e.contains("not both")),
        "{errors:#?}"
    );
}

#[test]
fn hidden_characters_in_a_case_selector_are_refused_with_their_line() {
    for (hidden, code) in [
        ("\\u200B", "U+200B"),
        ("\\u0000", "U+0000"),
        ("\\u202E", "U+202E"),
        ("\\u0007", "U+0007"),
        ("\\u2060", "U+2060"),
    ] {
        let cases = format!(
            "[[case]]\nname = \"x\"\nprincipal = \"alice\"\nresources = {{ labels = {{ env = \"staging{hidden}\" }} }}\naction = \"read\"\nexpect = \"automatic\"\n"
        );
        let dir = dir_with_cases(&catalog(1, 1), &cases);
        let errors = run_cases(dir.path()).unwrap_err();
        let text = errors[0].to_string();
        assert_eq!(errors[0].line, 4, "{hidden}: {text}");
        assert!(
            text.contains("resources.labels.\"env\"") && text.contains(code) && text.contains("control or invisible"),
            "{hidden}: {text}"
        );
    }
    // In a glob too.
    let cases = "[[case]]\nname = \"x\"\nprincipal = \"alice\"\nresources = { names = [\"stage-\\u200B*\"] }\naction = \"read\"\nexpect = \"automatic\"\n";
    let dir = dir_with_cases(&catalog(1, 1), cases);
    let errors = run_cases(dir.path()).unwrap_err();
    assert!(
        errors[0].message.contains("U+200B") && errors[0].line == 4,
        "{errors:?}"
    );
}

// ---- diff ----

#[test]
fn diff_groups_changes_per_resource_set_with_their_common_labels() {
    let old = load(WORKFLOWS, &catalog(1, 2), &[]);
    let new = load(WORKFLOWS, &catalog(38, 2), &[]);
    let report = diff::review(&old, &new);
    let g = report
        .groups
        .iter()
        .find(|g| g.subject == "group:dev" && g.action == "read" && g.after == "automatic")
        .unwrap_or_else(|| panic!("{:#?}", report.groups));
    assert_eq!(
        (g.kind, g.count, g.ability.as_str()),
        (ChangeKind::Gained, 37, "request")
    );
    assert_eq!(g.resource_kind.as_deref(), Some("postgres"));
    assert_eq!(
        g.labels,
        [("env".to_string(), "staging".to_string())].into_iter().collect()
    );
    assert_eq!(
        g.summary,
        "group:dev gains read on 37 postgres resources with env=staging (refused -> automatic)"
    );
    assert_eq!(g.resources.len(), 37);
    assert_eq!(g.resources[0], "stage-001");
    let text = report.to_string();
    assert!(
        text.contains("+ group:dev: request read on 37 postgres resources with env=staging: gained: refused -> automatic\n    stage-001, stage-002,"),
        "{text}"
    );
    assert!(
        text.contains("stage-010, ... and 27 more (--output json lists them all)"),
        "{text}"
    );
    // The full list is in the data.
    let json = serde_json::to_value(&report).unwrap();
    assert!(json["groups"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["resources"].as_array().unwrap().len() == 37));
    assert!(json["changes"].as_array().unwrap().len() >= 37 * 3);
}

#[test]
fn a_catalog_label_change_alone_shows_as_an_access_change() {
    let old_text = catalog(3, 3);
    let new_text = old_text.replace(
        "name = \"stage-002\"\nkind = \"postgres\"\nlabels = { env = \"staging\"",
        "name = \"stage-002\"\nkind = \"postgres\"\nlabels = { env = \"prod\"",
    );
    assert_ne!(old_text, new_text);
    let (old, new) = (load(WORKFLOWS, &old_text, &[]), load(WORKFLOWS, &new_text, &[]));
    let report = diff::review(&old, &new);
    let text = report.to_string();
    assert!(
        text.contains("~ alice: request read on stage-002: stronger: automatic -> needs 1 from sre"),
        "{text}"
    );
    assert!(
        text.contains("- alice: request write on stage-002: lost: automatic -> refused"),
        "{text}"
    );
    // Only stage-002 changed.
    assert!(report.changes.iter().all(|c| c.resource == "stage-002"), "{text}");
    assert_eq!(report.changes, diff::diff_exhaustive(&old, &new));
    // The edit itself is listed too.
    assert!(
        text.contains(
            "Catalog edits (1):\n~ stage-002: postgres; env=staging, team=t2 -> postgres; env=prod, team=t2\n"
        ),
        "{text}"
    );
}

#[test]
fn a_catalog_edit_that_changes_no_access_is_listed_but_is_no_effective_change() {
    let old_text = catalog(3, 1);
    // No selector reads `team`, and no Cedar policy does.
    let new_text = old_text.replace(
        "name = \"stage-001\"\nkind = \"postgres\"\nlabels = { env = \"staging\", team = \"t1\" }",
        "name = \"stage-001\"\nkind = \"postgres\"\nlabels = { env = \"staging\", team = \"t9\" }",
    );
    let (old, new) = (load(WORKFLOWS, &old_text, &[]), load(WORKFLOWS, &new_text, &[]));
    let report = diff::review(&old, &new);
    assert!(report.is_unchanged(), "{report}");
    assert_eq!(
        report.to_string(),
        "no effective change in access\nCatalog edits that change no access (1):\n~ stage-001: postgres; env=staging, team=t1 -> postgres; env=staging, team=t9\n"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["catalog"][0]["edit"], "edited", "{json}");
    assert_eq!(json["catalog"][0]["resource"], "stage-001", "{json}");
}

#[test]
fn owner_and_removal_edits_of_the_catalog_show_as_access_changes() {
    let old_text = catalog(2, 1);
    let new_text = old_text
        .replace("owners = [\"payments\"]", "owners = [\"sre\"]")
        .replace(
            "[[resource]]\nname = \"stage-001\"",
            "[[resource]]\nname = \"stage-101\"",
        );
    let (old, new) = (load(WORKFLOWS, &old_text, &[]), load(WORKFLOWS, &new_text, &[]));
    let changes = diff::diff(&old, &new);
    let has = |line: &str| changes.iter().any(|c| c.to_string() == line);
    assert!(
        has("~ alice: request write on orders-db: changed: needs 1 from payments -> needs 1 from sre"),
        "{changes:#?}"
    );
    assert!(
        has("- alice: request read on stage-001: lost: automatic -> refused"),
        "{changes:#?}"
    );
    assert!(
        has("+ alice: request read on stage-101: gained: refused -> automatic"),
        "{changes:#?}"
    );
    assert_eq!(changes, diff::diff_exhaustive(&old, &new));
}

/// The classes `diff` asks about must give what asking everything gives, also when Cedar
/// files read labels, ancestors or names.
#[test]
fn diff_by_class_equals_the_exhaustive_diff() {
    let old_text = catalog(6, 6);
    let new_text = old_text
        .replace("team = \"t1\" }", "team = \"t2\" }")
        .replace("[[resource]]\nname = \"prod-005\"", "[[resource]]\nname = \"prod-105\"");
    let workflows_edited = WORKFLOWS.replace(
        "resources = { labels = { env = \"prod\" } }\naction = \"read\"\nrequesters = [\"dev\"]\nsteps = [{ group = \"sre\", approvals = 1 }]",
        "resources = { labels = { env = \"prod\" } }\naction = \"read\"\nrequesters = [\"dev\", \"payments\"]\nsteps = [{ group = \"sre\", approvals = 1 }, { group = \"payments\", approvals = 1 }]",
    );
    let cedar_sets: [&[(&str, &str)]; 4] = [
        &[],
        // Names one resource.
        &[(
            "a.cedar",
            "permit(principal, action == Action::\"auto_approve\", resource == Resource::\"prod-003\") when { context.access == \"read\" };",
        )],
        // Any resource, a pattern on the reason.
        &[(
            "b.cedar",
            "forbid(principal, action == Action::\"request\", resource) when { context.reason like \"*explain*\" && context.access == \"write\" };",
        )],
        // Refers to the resource in a condition.
        &[(
            "c.cedar",
            "forbid(principal in Group::\"dev\", action == Action::\"request\", resource) when { resource == Resource::\"stage-004\" };",
        )],
    ];
    for old_cedar in cedar_sets {
        for new_cedar in cedar_sets {
            for (ow, nw) in [(WORKFLOWS, WORKFLOWS), (WORKFLOWS, workflows_edited.as_str())] {
                let old = load(ow, &old_text, old_cedar);
                let new = load(nw, &new_text, new_cedar);
                assert_eq!(
                    diff::diff(&old, &new),
                    diff::diff_exhaustive(&old, &new),
                    "{old_cedar:?} -> {new_cedar:?}"
                );
            }
        }
    }
}

#[test]
fn an_unchanged_large_catalog_is_diffed_without_asking_cedar_everywhere() {
    let text = catalog(150, 150);
    let (old, new) = (load(WORKFLOWS, &text, &[]), load(WORKFLOWS, &text, &[]));
    let started = std::time::Instant::now();
    let report = diff::review(&old, &new);
    assert!(report.is_unchanged(), "{report}");
    let by_class = started.elapsed();
    let started = std::time::Instant::now();
    assert!(diff::diff_exhaustive(&old, &new).is_empty());
    let exhaustive = started.elapsed();
    // Nothing differs: no class is asked at all, so it costs a fraction of asking everything.
    assert!(by_class * 10 < exhaustive, "{by_class:?} vs {exhaustive:?}");
}
