//! Issue #24: tools as labelled actions, agents in Cedar. A resource declares its actions with
//! labels (an MCP server's tools), workflows select actions by label, a reviewed tool call must
//! be action-bound, and Cedar sees `context.on_behalf_of` and `context.action_labels`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jitgate_core::{Ask, DomainError, Identity, Timestamp};
use jitgate_policy::{Policy, PolicyError, Specificity, Verdict};

const DIRECTORY: &str = r#"
[[principal]]
name = "alice"
groups = ["dev"]
[[principal]]
name = "bob"
groups = ["sre"]
[[principal]]
name = "carol"
groups = ["sre"]
[[principal]]
name = "root"
groups = ["admins", "dev"]
"#;

const FILES: &str = r#"
[[resource]]
name = "files"
kind = "mcp"
description = "an agent's filesystem tools"

[resource.actions]
read_file = { effect = "read" }
list_directory = { effect = "read", scope = "tree" }
write_file = { effect = "write" }
delete_file = { effect = "destructive" }

[[resource]]
name = "tickets"
kind = "mcp"
actions = { get_issue = { effect = "read" }, close_issue = { effect = "write" } }

[[resource]]
name = "orders-db"
kind = "postgres"
"#;

/// Reads at once for dev, writes and deletes reviewed by sre and bound to the exact call.
const WORKFLOWS: &str = r#"
[[workflow]]
resource = "files"
actions = { labels = { effect = "read" } }
requesters = ["dev"]
auto_approve = true

[[workflow]]
resource = "files"
actions = ["write_file", "delete_file"]
requesters = ["dev"]
steps = [{ group = "sre", approvals = 1 }]
action_bound = true
"#;

fn policy(workflows: &str, resources: &str, cedar: &[(&str, &str)]) -> Result<Policy, Vec<PolicyError>> {
    let cedar: Vec<(String, String)> = cedar.iter().map(|(f, t)| (f.to_string(), t.to_string())).collect();
    Policy::from_texts_with_catalog(
        DIRECTORY,
        workflows,
        None,
        &cedar,
        &[("resources.toml".to_string(), resources.to_string())],
    )
}

fn valid(workflows: &str, cedar: &[(&str, &str)]) -> Policy {
    policy(workflows, FILES, cedar).unwrap_or_else(|e| panic!("{e:?}"))
}

fn refused(workflows: &str, resources: &str) -> Vec<String> {
    match policy(workflows, resources, &[]) {
        Ok(_) => panic!("accepted:\n{resources}\n{workflows}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn has(errors: &[String], part: &str) {
    assert!(
        errors.iter().any(|e| e.contains(part)),
        "no error containing {part:?} in {errors:#?}"
    );
}

fn now() -> Timestamp {
    chrono::DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc)
}

fn agent_of(person: &str, principal: &str, groups: &[&str]) -> Identity {
    let mut who = Identity::user(principal, groups);
    who.groups.push("agents".into());
    who.on_behalf_of = Some(person.into());
    who
}

fn ask<'a>(resource: &'a str, action: &'a str, payload: Option<&'a str>) -> Ask<'a> {
    Ask {
        resource,
        action,
        duration: None,
        reason: "agent task",
        payload,
        break_glass: false,
    }
}

const CALL: &str = r#"{"arguments":{"path":"notes.txt"},"tool":"delete_file"}"#;

#[test]
fn resources_declare_actions_with_labels_in_either_form() {
    let p = valid(WORKFLOWS, &[]);
    let files = p.rules().catalog().resource("files").unwrap();
    let names: Vec<&str> = files.actions.keys().map(String::as_str).collect();
    assert_eq!(names, ["delete_file", "list_directory", "read_file", "write_file"]);
    assert_eq!(files.actions["list_directory"]["scope"], "tree");
    // The `actions` table is not a provider setting.
    assert!(!files.settings.contains_key("actions"));
    let tickets = p.rules().catalog().resource("tickets").unwrap();
    assert_eq!(tickets.actions["close_issue"]["effect"], "write");
    // A resource without them has none.
    assert!(p.rules().catalog().resource("orders-db").unwrap().actions.is_empty());
}

#[test]
fn a_label_selector_expands_to_the_declared_actions_with_every_label() {
    let p = valid(WORKFLOWS, &[]);
    let alice = Identity::user("alice", &["dev"]);
    for tool in ["read_file", "list_directory"] {
        assert_eq!(
            p.explain(&alice, "files", tool, None, now()).verdict,
            Verdict::Automatic,
            "{tool}"
        );
        let matched = p.rules().matched("files", tool).unwrap();
        assert!(matched.by_action_labels);
        assert_eq!(matched.specificity, Specificity::Exact);
        assert_eq!(
            matched.selector,
            r#"resource = "files", actions = { labels = { effect = "read" } }"#
        );
        // Cedar and listings see the tool's labels.
        assert_eq!(
            p.rules().workflow("files", tool).unwrap().action_labels["effect"],
            "read"
        );
        assert!(
            jitgate_policy::governed_by(matched).ends_with("(by exact name, the action by its labels)"),
            "{}",
            jitgate_policy::governed_by(matched)
        );
    }
    let delete = p.rules().workflow("files", "delete_file").unwrap();
    assert!(delete.action_bound && delete.single_use);
    assert!(!p.rules().matched("files", "delete_file").unwrap().by_action_labels);
    // Every label given must match: { effect = "read", scope = "tree" } is list_directory only.
    let narrow = format!(
        "{WORKFLOWS}\n[[workflow]]\nresource = \"files\"\nactions = {{ labels = {{ effect = \"read\", scope = \"tree\" }} }}\nrequesters = [\"sre\"]\nauto_approve = true\n"
    )
    .replace("actions = { labels = { effect = \"read\" } }", "action = \"read_file\"");
    let p = valid(&narrow, &[]);
    let bob = Identity::user("bob", &["sre"]);
    assert_eq!(
        p.explain(&bob, "files", "list_directory", None, now()).verdict,
        Verdict::Automatic
    );
    assert!(matches!(
        p.explain(&bob, "files", "read_file", None, now()).verdict,
        Verdict::Refused(_)
    ));
    // A tool no workflow selects is no action of the resource.
    let p = valid(
        WORKFLOWS
            .split("[[workflow]]\nresource = \"files\"\nactions = [")
            .next()
            .unwrap(),
        &[],
    );
    match p.admit(&alice, &ask("files", "write_file", None), now()) {
        Err(DomainError::Invalid { field, message, .. }) => {
            assert_eq!(field, "action");
            assert!(
                message.contains("its actions are: list_directory, read_file"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn selectors_over_many_resources_select_actions_by_label_on_each() {
    let workflows = r#"
[[workflow]]
resources = { kind = "mcp" }
actions = { labels = { effect = "read" } }
requesters = ["dev"]
auto_approve = true

[[workflow]]
resources = { kind = "mcp" }
actions = { labels = { effect = "write" } }
requesters = ["dev"]
steps = [{ group = "sre", approvals = 1 }]
action_bound = true
"#;
    let p = valid(workflows, &[]);
    let mut governed: Vec<(String, String)> = p.workflows().map(|w| (w.resource.clone(), w.action.clone())).collect();
    governed.sort();
    let expected: Vec<(String, String)> = [
        ("files", "list_directory"),
        ("files", "read_file"),
        ("files", "write_file"),
        ("tickets", "close_issue"),
        ("tickets", "get_issue"),
    ]
    .iter()
    .map(|(r, a)| (r.to_string(), a.to_string()))
    .collect();
    assert_eq!(
        governed, expected,
        "delete_file has no workflow; orders-db declares no actions"
    );
}

#[test]
fn a_named_action_beats_a_label_selector_and_equals_conflict() {
    // read_file by name: reviewed; list_directory still by its label: automatic.
    let workflows = format!(
        "{WORKFLOWS}\n[[workflow]]\nresource = \"files\"\naction = \"read_file\"\nrequesters = [\"dev\"]\nsteps = [{{ group = \"sre\", approvals = 1 }}]\naction_bound = true\n"
    );
    let p = valid(&workflows, &[]);
    let alice = Identity::user("alice", &["dev"]);
    assert!(matches!(
        p.explain(&alice, "files", "read_file", None, now()).verdict,
        Verdict::NeedsApproval(_)
    ));
    assert_eq!(
        p.explain(&alice, "files", "list_directory", None, now()).verdict,
        Verdict::Automatic
    );
    // But a more specific resource beats a named action on a less specific one.
    let workflows = format!(
        "{WORKFLOWS}\n[[workflow]]\nresources = {{ kind = \"mcp\" }}\naction = \"read_file\"\nrequesters = [\"sre\"]\nauto_approve = true\n"
    );
    let p = valid(&workflows, &[]);
    assert!(p.rules().matched("files", "read_file").unwrap().by_action_labels);
    // Two label selectors of equal specificity on one tool are refused, naming both.
    let workflows = format!(
        "{WORKFLOWS}\n[[workflow]]\nresource = \"files\"\nactions = {{ labels = {{ scope = \"tree\" }} }}\nrequesters = [\"sre\"]\nauto_approve = true\n"
    );
    let errors = refused(&workflows, FILES);
    has(&errors, "workflows.toml:15: this workflow (resource = \"files\", actions = { labels = { scope = \"tree\" } }) and the one at workflows.toml:2");
    has(
        &errors,
        "both select list_directory on 'files' with equal specificity (exact name, actions by labels)",
    );
}

#[test]
fn a_label_selector_that_selects_nothing_or_hides_characters_is_refused() {
    let one = |actions: &str| {
        format!(
            "[[workflow]]\nresource = \"files\"\nactions = {actions}\nrequesters = [\"dev\"]\nauto_approve = true\n"
        )
    };
    let errors = refused(&one(r#"{ labels = { effect = "exfiltrate" } }"#), FILES);
    has(
        &errors,
        "workflows.toml:1: actions = { labels = { effect = \"exfiltrate\" } } selects nothing",
    );
    let errors = refused(&one(r#"{ labels = { efect = "read" } }"#), FILES);
    has(&errors, "no action the catalog declares has the label key 'efect'");
    // On a resource that declares no actions, a label selector selects nothing either.
    let errors = refused(
        "[[workflow]]\nresource = \"orders-db\"\nactions = { labels = { effect = \"read\" } }\nrequesters = [\"dev\"]\nauto_approve = true\n",
        FILES,
    );
    has(&errors, "selects nothing");
    for hidden in ["re\\u200Bad", "read\\u0000", "read\\u202E", "re\\u00ADad"] {
        let errors = refused(&one(&format!("{{ labels = {{ effect = \"{hidden}\" }} }}")), FILES);
        has(&errors, "workflows.toml:1: actions.labels: label effect: value");
        has(&errors, "control or invisible character");
    }
    let errors = refused(&one(r#"{ labels = { "eff ect" = "read" } }"#), FILES);
    has(&errors, "actions.labels: label key \"eff ect\" may hold only");
    let errors = refused(&one("{ labels = {} }"), FILES);
    has(&errors, "actions.labels: name at least one label");
    let errors = refused(&one(r#"{ label = { effect = "read" } }"#), FILES);
    has(&errors, "actions: unknown key \"label\"");
    let errors = refused(&one(r#"{ labels = { effect = 1 } }"#), FILES);
    has(&errors, "actions.labels.effect: label values are strings");
    let errors = refused(&one("7"), FILES);
    has(&errors, "actions: give a list of actions");
    let errors = refused(&one("[1]"), FILES);
    has(&errors, "actions: give a list of actions");
}

#[test]
fn declared_action_names_are_checked_like_resource_names() {
    let with = |actions: &str| format!("[[resource]]\nname = \"files\"\nkind = \"mcp\"\nactions = {actions}\n");
    let workflows =
        "[[workflow]]\nresource = \"other\"\naction = \"read\"\nrequesters = [\"dev\"]\nauto_approve = true\n";
    for (actions, part) in [
        (r#"{ "" = {} }"#, "actions: action name \"\" is empty"),
        (
            r#"{ "read\u200Bfile" = {} }"#,
            "holds a control, space or invisible character (U+200B)",
        ),
        (r#"{ "read\u0000file" = {} }"#, "(U+0000)"),
        (r#"{ "read\u202Efile" = {} }"#, "(U+202E)"),
        (r#"{ "read file" = {} }"#, "(U+0020)"),
        // Cyrillic і for Latin i, and a case difference: a reviewer could not tell them apart.
        (r#"{ read_file = {}, "read_f\u0456le" = {} }"#, "looks like 'read_file'"),
        (r#"{ read_file = {}, Read_File = {} }"#, "looks like"),
        (
            r#"{ read_file = { effect = "re\u200Bad" } }"#,
            "actions.read_file: label effect: value",
        ),
        (
            r#"{ read_file = { "ef fect" = "read" } }"#,
            "label key \"ef fect\" may hold only",
        ),
        (
            r#"{ read_file = { effect = 1 } }"#,
            "actions.read_file.effect: label values are strings",
        ),
        (
            r#"{ read_file = "read" }"#,
            "actions.read_file: give its labels as a table",
        ),
        (
            r#"["read_file"]"#,
            "actions: write actions = { NAME = { LABEL = \"VALUE\" }",
        ),
    ] {
        let errors = refused(workflows, &with(actions));
        has(&errors, "resources.toml:1: resource 'files': ");
        has(&errors, part);
    }
    // Undeclared: a tool named for a resource that declares its tools must be one of them.
    let errors = refused(
        "[[workflow]]\nresource = \"files\"\naction = \"raed_file\"\nrequesters = [\"dev\"]\nauto_approve = true\n",
        FILES,
    );
    has(&errors, "workflows.toml:1: 'raed_file' is not an action resource 'files' declares (at resources.toml:2); its actions are: delete_file, list_directory, read_file, write_file");
    // A look-alike of a declared tool (Cyrillic е) is no declared tool either.
    let errors = refused(
        "[[workflow]]\nresource = \"files\"\naction = \"r\u{0435}ad_file\"\nrequesters = [\"dev\"]\nauto_approve = true\n",
        FILES,
    );
    has(&errors, "'r\u{0435}ad_file' is not an action resource 'files' declares");
}

#[test]
fn a_reviewed_tool_call_must_be_action_bound() {
    let unbound = WORKFLOWS.replace("action_bound = true\n", "");
    let errors = refused(&unbound, FILES);
    has(&errors, "workflows.toml:8: delete_file on files, write_file on files (kind mcp): a reviewed tool call must be action_bound and single_use, so reviewers approve the exact call, once");
    // Bound to the call but reusable: one approval would let the agent repeat the call.
    let reusable = WORKFLOWS.replace("action_bound = true\n", "action_bound = true\nsingle_use = false\n");
    let errors = refused(&reusable, FILES);
    has(&errors, "workflows.toml:8: delete_file on files, write_file on files (kind mcp): a reviewed tool call must be action_bound and single_use");
    // Owners steps count as review too.
    let owners = FILES.replace(
        "kind = \"mcp\"\ndescription",
        "kind = \"mcp\"\nowners = [\"sre\"]\ndescription",
    );
    let errors = refused(
        &unbound.replace(
            "steps = [{ group = \"sre\", approvals = 1 }]",
            "steps = [{ owners = true }]",
        ),
        &owners,
    );
    has(&errors, "a reviewed tool call must be action_bound");
    // Automatic, or another kind of resource, needs no binding.
    valid(
        &unbound.replace("steps = [{ group = \"sre\", approvals = 1 }]", "auto_approve = true"),
        &[],
    );
    valid(
        "[[workflow]]\nresource = \"orders-db\"\naction = \"write\"\nrequesters = [\"dev\"]\nsteps = [{ group = \"sre\", approvals = 1 }]\n",
        &[],
    );
    // Break glass beside review does not excuse it.
    let errors = refused(
        &unbound.replace("action_bound = true", "").replace(
            "steps = [{ group = \"sre\", approvals = 1 }]",
            "steps = [{ group = \"sre\", approvals = 1 }]\nbreak_glass = { groups = [\"sre\"], max_duration = \"15m\" }",
        ),
        FILES,
    );
    has(&errors, "must be action_bound");
}

#[test]
fn the_group_of_agents_is_built_in_and_never_reviews() {
    // Named by workflows and Cedar although no principal of the directory is in it.
    let workflows = WORKFLOWS.replace(
        "requesters = [\"dev\"]\nauto_approve",
        "requesters = [\"dev\", \"agents\"]\nauto_approve",
    );
    let cedar = "@id(\"agents-never-write\")\nforbid(principal in Group::\"agents\", action == Action::\"request\", resource)\nwhen { context.action_labels.contains(\"effect=write\") };\n";
    let p = valid(&workflows, &[("agents.cedar", cedar)]);
    let bare_agent = agent_of("alice", "claude-alice", &[]);
    assert_eq!(
        p.explain(&bare_agent, "files", "read_file", None, now()).verdict,
        Verdict::Automatic
    );
    match p.admit(
        &agent_of("alice", "claude-alice", &["dev"]),
        &ask("files", "write_file", Some(CALL)),
        now(),
    ) {
        Err(DomainError::Forbidden(m)) => assert!(m.contains("forbidden by policy agents-never-write"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Agents never review: not in steps, owners, escalation or break-glass reviewers.
    for (workflows, resources) in [
        (WORKFLOWS.replace("group = \"sre\"", "group = \"agents\""), FILES.to_string()),
        (
            WORKFLOWS.replace("action_bound = true", "action_bound = true\nescalation = { after = \"10m\", groups = [\"agents\"] }"),
            FILES.to_string(),
        ),
        (
            WORKFLOWS.replace(
                "action_bound = true",
                "action_bound = true\nbreak_glass = { groups = [\"sre\"], max_duration = \"15m\", reviewers = [\"agents\"] }",
            ),
            FILES.to_string(),
        ),
        (WORKFLOWS.to_string(), FILES.replace("kind = \"postgres\"", "kind = \"postgres\"\nowners = [\"agents\"]")),
    ] {
        let errors = refused(&workflows, &resources);
        has(&errors, "the group 'agents' cannot review: agents never approve, deny or review requests");
    }
}

#[test]
fn cedar_reads_who_an_agent_acts_for_and_the_tool_labels() {
    let cedar = r#"
// Reads need an sre, except for alice's agents.
@id("alices-agents-read-at-once")
permit(principal in Group::"agents", action == Action::"auto_approve", resource)
when { context.action_labels.contains("effect=read") && context.on_behalf_of == "alice" };

// Destructive tools only by breaking glass.
@id("destructive-only-by-break-glass")
forbid(principal, action == Action::"request", resource)
when { context.action_labels.contains("effect=destructive") };

// bob never reviews what dave's agents ask for.
@id("bob-skips-daves-agents")
forbid(principal == User::"bob", action == Action::"approve", resource)
when { context.on_behalf_of == "dave" };
"#;
    let workflows = r#"
[[workflow]]
resource = "files"
actions = { labels = { effect = "read" } }
requesters = ["dev"]
steps = [{ group = "sre", approvals = 1 }]
action_bound = true

[[workflow]]
resource = "files"
actions = ["write_file", "delete_file"]
requesters = ["dev"]
steps = [{ group = "sre", approvals = 1 }]
action_bound = true
break_glass = { groups = ["sre"], max_duration = "15m" }
"#;
    let p = valid(workflows, &[("agents.cedar", cedar)]);
    let alice = Identity::user("alice", &["dev"]);
    let alices_agent = agent_of("alice", "claude-alice", &["dev"]);
    let daves_agent = agent_of("dave", "claude-dave", &["dev"]);
    let read = ask(
        "files",
        "read_file",
        Some(r#"{"arguments":{"path":"a"},"tool":"read_file"}"#),
    );
    let steps = |who: &Identity, a: &Ask<'_>| p.admit(who, a, now()).unwrap().requirement.steps.len();
    assert_eq!(steps(&alices_agent, &read), 0, "alice's agent reads at once");
    assert_eq!(steps(&alice, &read), 1, "alice herself is no agent");
    assert_eq!(steps(&daves_agent, &read), 1, "dave's agent waits");
    // The write tool is no read: alice's agent waits for it.
    let write = ask(
        "files",
        "write_file",
        Some(r#"{"arguments":{"path":"a"},"tool":"write_file"}"#),
    );
    assert_eq!(steps(&alices_agent, &write), 1);
    // Destructive: never by request, still by breaking glass.
    let delete = ask("files", "delete_file", Some(CALL));
    match p.admit(&alice, &delete, now()) {
        Err(DomainError::Forbidden(m)) => assert!(m.contains("destructive-only-by-break-glass"), "{m}"),
        other => panic!("{other:?}"),
    }
    let bob = Identity::user("bob", &["sre"]);
    let glass = Ask {
        break_glass: true,
        ..delete
    };
    assert!(p.admit(&bob, &glass, now()).is_ok());
    // An agent of bob's holds bob's groups (sre) but never breaks glass: with nobody asked
    // first, the destructive call would rest on the agent's judgement alone.
    let bobs_agent = agent_of("bob", "claude-bob", &["sre"]);
    match p.admit(&bobs_agent, &glass, now()) {
        Err(DomainError::Forbidden(m)) => assert!(
            m.contains("claude-bob may not break glass") && m.contains("agents never break glass"),
            "{m}"
        ),
        other => panic!("an agent broke glass: {other:?}"),
    }
    // Approve: the request's person, not the reviewer's, is context.on_behalf_of.
    let file = |who: &Identity, id: &str| {
        let admission = p.admit(who, &write, now()).unwrap();
        let ids = jitgate_core::machine::NewIds {
            request_id: id.into(),
            grant_id: format!("g-{id}"),
        };
        jitgate_core::machine::file(who, &write, admission, ids, now()).request
    };
    let by_daves_agent = file(&daves_agent, "r1");
    assert_eq!(by_daves_agent.on_behalf_of.as_deref(), Some("dave"));
    let by_alices_agent = file(&alices_agent, "r2");
    let carol = Identity::user("carol", &["sre"]);
    let err = p.may_review(&bob, &by_daves_agent, now()).unwrap_err().to_string();
    assert!(err.contains("bob-skips-daves-agents"), "{err}");
    assert!(p.may_review(&carol, &by_daves_agent, now()).is_ok());
    assert!(p.may_review(&bob, &by_alices_agent, now()).is_ok());
}

#[test]
fn a_resource_without_declared_actions_gives_no_labels() {
    let cedar = "@id(\"labelled-only\")\nforbid(principal, action == Action::\"request\", resource)\nwhen { context.action_labels.isEmpty() };\n";
    let workflows = format!(
        "{WORKFLOWS}\n[[workflow]]\nresource = \"orders-db\"\naction = \"read\"\nrequesters = [\"dev\"]\nauto_approve = true\n"
    );
    let p = valid(&workflows, &[("labels.cedar", cedar)]);
    let alice = Identity::user("alice", &["dev"]);
    assert!(p.admit(&alice, &ask("files", "read_file", None), now()).is_ok());
    assert!(matches!(
        p.admit(&alice, &ask("orders-db", "read", None), now()),
        Err(DomainError::Forbidden(_))
    ));
    // A Cedar type error on the new attributes is caught by policy check.
    let bad = "forbid(principal, action, resource) when { context.on_behalf_of == 1 };\n";
    let errors: Vec<String> = policy(WORKFLOWS, FILES, &[("bad.cedar", bad)])
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    has(&errors, "bad.cedar:1:");
}

#[test]
fn policy_tests_may_ask_as_an_agent() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("directory.toml"), DIRECTORY).unwrap();
    let workflows = format!(
        "{WORKFLOWS}\n[[workflow]]\nresource = \"tickets\"\naction = \"get_issue\"\nrequesters = [\"admins\"]\nauto_approve = true\n"
    );
    std::fs::write(dir.path().join("workflows.toml"), workflows).unwrap();
    std::fs::write(dir.path().join("resources.toml"), FILES).unwrap();
    std::fs::write(
        dir.path().join("agents.cedar"),
        "@id(\"no-agents-for-root\")\nforbid(principal, action == Action::\"request\", resource == Resource::\"files\")\nwhen { context.on_behalf_of == \"root\" };\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("tests")).unwrap();
    let cases = r#"
[[case]]
name = "alice's agent reads at once, as alice's groups allow"
principal = "claude-alice"
on_behalf_of = "alice"
resource = "files"
action = "read_file"
expect = "automatic"

[[case]]
name = "Cedar sees whom the agent acts for"
principal = "claude-root"
on_behalf_of = "root"
resource = "files"
action = "read_file"
expect = "refused"
message = "forbidden by policy no-agents-for-root"

[[case]]
name = "root may, as a member of admins"
principal = "root"
resource = "tickets"
action = "get_issue"
expect = "automatic"

[[case]]
name = "root's agent never inherits admins"
principal = "claude-root"
on_behalf_of = "root"
resource = "tickets"
action = "get_issue"
expect = "refused"
message = "only members of admins may"

[[case]]
name = "an agent of someone outside the directory is only in agents"
principal = "claude-x"
on_behalf_of = "x@example.com"
resource = "files"
action = "read_file"
expect = "refused"
message = "only members of dev may"
"#;
    std::fs::write(dir.path().join("tests/agents.toml"), cases).unwrap();
    let p = Policy::load(dir.path()).unwrap();
    let results = jitgate_policy::testing::run(&p, dir.path()).unwrap();
    assert_eq!(results.len(), 5);
    assert!(results.iter().all(|r| r.failure.is_none()), "{results:#?}");

    // Bad values name the file and line.
    for (value, part) in [
        ("\"ali\\u200Bce\"", "on_behalf_of: \"ali\\u{200b}ce\""),
        ("\"alice\\u0000\"", "on_behalf_of: \"alice\\0\""),
        ("\"\"", "on_behalf_of: \"\""),
        ("\"claude-alice\"", "is the principal itself"),
    ] {
        let case = format!(
            "[[case]]\nname = \"bad\"\nprincipal = \"claude-alice\"\non_behalf_of = {value}\nresource = \"files\"\naction = \"read_file\"\nexpect = \"automatic\"\n"
        );
        std::fs::write(dir.path().join("tests/agents.toml"), case).unwrap();
        let errors: Vec<String> = jitgate_policy::testing::run(&p, dir.path())
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        has(&errors, "tests/agents.toml:1: on_behalf_of:");
        has(&errors, part);
    }
}

/// Whether the diff lists a change for `subject` on `action` of `files`.
fn changed(changes: &[jitgate_policy::diff::Change], subject: &str, action: &str) -> bool {
    changes
        .iter()
        .any(|c| c.subject == subject && c.resource == "files" && c.action == action)
}

#[test]
fn diff_asks_a_stand_in_agent_and_shows_tool_edits() {
    let before = valid(WORKFLOWS, &[]);
    let after = valid(
        &WORKFLOWS.replace(
            "requesters = [\"dev\"]\nauto_approve",
            "requesters = [\"dev\", \"agents\"]\nauto_approve",
        ),
        &[],
    );
    let changes = jitgate_policy::diff::diff(&before, &after);
    assert!(changed(&changes, "group:agents", "read_file"), "{changes:#?}");
    // A rule about agents that names no group, only context.on_behalf_of, is asked of the
    // stand-in agent too: adding it is a change the diff shows.
    let let_agents_read = "@id(\"agents-read\")\npermit(principal, action == Action::\"request\", resource)\nwhen { context.on_behalf_of != \"\" && context.access == \"read_file\" };\n";
    let closed = valid(WORKFLOWS, &[]);
    let opened = valid(WORKFLOWS, &[("agents.cedar", let_agents_read)]);
    let changes = jitgate_policy::diff::diff(&closed, &opened);
    assert!(changed(&changes, "group:agents", "read_file"), "{changes:#?}");
    // A rule that stops agents from what their person may request (writes) changes nothing
    // for a stand-in in the group of agents alone, who could never request a write; it shows
    // for the agent acting for a member of dev, and for alice's agent, and the diff_exhaustive
    // walk agrees.
    let no_agent_writes = "@id(\"no-agent-writes\")\nforbid(principal in Group::\"agents\", action == Action::\"request\", resource)\nwhen { context.action_labels.contains(\"effect=write\") };\n";
    let open = valid(WORKFLOWS, &[]);
    let closed = valid(WORKFLOWS, &[("agents.cedar", no_agent_writes)]);
    let changes = jitgate_policy::diff::diff(&open, &closed);
    for subject in ["agent-of:group:dev", "agent-of:alice"] {
        assert!(changed(&changes, subject, "write_file"), "{subject}: {changes:#?}");
    }
    assert!(
        !changes.iter().any(|c| c.subject == "alice" || c.subject == "group:dev"),
        "people are not touched: {changes:#?}"
    );
    assert_eq!(changes, jitgate_policy::diff::diff_exhaustive(&open, &closed));
    // Relabelling a tool moves it to another workflow, and the edit is listed.
    let relabelled = policy(
        WORKFLOWS,
        &FILES.replace(
            "write_file = { effect = \"write\" }",
            "write_file = { effect = \"read\" }",
        ),
        &[],
    );
    // write_file is then both named (reviewed) and selected by label (automatic): the name wins.
    let relabelled = relabelled.unwrap_or_else(|e| panic!("{e:?}"));
    let edits = jitgate_policy::diff::catalog_edits(&before, &relabelled);
    assert_eq!(edits.len(), 1, "{edits:?}");
    let after_text = edits[0].after.as_deref().unwrap();
    assert!(after_text.contains("write_file(effect=read)"), "{after_text}");
}

/// A `forbid` on `auto_approve` over an automatic workflow (no steps) used to leave the request
/// automatic: there was nobody to ask, so nothing was. It is refused instead, naming the forbid,
/// so "agents never read at once" holds even where people do.
#[test]
fn a_forbidden_automatic_approval_without_reviewers_is_refused_not_granted() {
    let cedar = "@id(\"agents-never-automatic\")\nforbid(principal in Group::\"agents\", action == Action::\"auto_approve\", resource);\n";
    let p = valid(WORKFLOWS, &[("agents.cedar", cedar)]);
    let read = ask("files", "read_file", None);
    let alice = Identity::user("alice", &["dev"]);
    assert!(p.admit(&alice, &read, now()).unwrap().requirement.steps.is_empty());
    let agent = agent_of("alice", "claude-alice", &["dev"]);
    match p.admit(&agent, &read, now()) {
        Err(DomainError::Forbidden(m)) => assert!(
            m.contains("claude-alice may not request read_file on files without review")
                && m.contains("agents-never-automatic"),
            "{m}"
        ),
        other => panic!("a forbidden automatic approval was granted: {other:?}"),
    }
    // Where the workflow has reviewers, the forbid sends the agent to them, as before.
    let write = ask(
        "files",
        "write_file",
        Some(r#"{"arguments":{"path":"a"},"tool":"write_file"}"#),
    );
    assert_eq!(p.admit(&agent, &write, now()).unwrap().requirement.steps.len(), 1);
}
