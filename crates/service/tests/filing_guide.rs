//! What the new-request form is told about a workflow (#27): `App::filing_guide`,
//! `App::break_glass_choices` and `App::requesting_groups` judge as filing does, so a form
//! never offers what filing refuses nor hides what it would take.

// Test code: a failed expectation should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/offline.rs"]
mod offline;

use jitgate_core::authz::op;
use jitgate_core::{DurationSecs, Identity, Problem, Step};
use jitgate_service::auth::{caller_for, config::AuthConfig, Authenticator};
use jitgate_service::inputs::NewRequest;
use jitgate_service::{App, ServiceError};
use offline::NoFetch;

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
name = "ci-deployer"
groups = ["ci"]
"#;

const WORKFLOWS: &str = r##"
[[workflow]]
resource = "db"
action = "read"
description = "Read the database"
requesters = ["dev", "sre"]
steps = [{ group = "sre", approvals = 1 }]
default_duration = "20m"
max_duration = "1h"

[[workflow]]
resource = "db"
action = "write"
requesters = ["dev"]
steps = [{ group = "sre", approvals = 2 }]
ticket_pattern = "\\b[A-Z][A-Z0-9]+-[0-9]+\\b"
max_duration = "30m"
break_glass = { groups = ["sre"], max_duration = "15m" }

[[workflow]]
resource = "api"
action = "deploy"
requesters = ["dev", "ci"]
steps = [{ group = "sre", approvals = 1 }]
action_bound = true
single_use = true

[[workflow]]
resource = "tickets"
action = "close"
requesters = ["dev"]
auto_approve = true
ticket_pattern = "#[0-9]+"
"##;

async fn app() -> (App, tempfile::TempDir) {
    app_with(WORKFLOWS).await
}

async fn app_with(workflows: &str) -> (App, tempfile::TempDir) {
    let policy = jitgate_policy::Policy::from_texts_with_catalog(DIRECTORY, workflows, None, &[], &[])
        .unwrap_or_else(|e| panic!("{e:?}"));
    let dir = tempfile::tempdir().unwrap();
    let store = jitgate_store::open(&format!("sqlite://{}", dir.path().join("jitgate.db").display()))
        .await
        .unwrap();
    let auth: AuthConfig = toml::from_str("").unwrap();
    let authenticator = Authenticator::new(&auth, std::sync::Arc::new(NoFetch)).await.unwrap();
    let notifier =
        jitgate_service::notify::Notifier::new(None, None, "127.0.0.1:0".parse().unwrap(), Vec::new()).unwrap();
    let app = App::new(
        store,
        policy,
        authenticator,
        jitgate_service::provision::Providers::new(Vec::new()),
        notifier,
    )
    .await
    .unwrap();
    (app, dir)
}

fn filer(name: &str, groups: &[&str]) -> jitgate_service::auth::Caller {
    caller_for::<op::FileRequest>(Identity::user(name, groups)).unwrap()
}

#[tokio::test]
async fn the_guide_describes_what_filing_would_ask_and_offers_break_glass_only_to_whom_may() {
    let (app, _dir) = app().await;
    let alice = filer("alice", &["dev"]);
    let bob = filer("bob", &["sre"]);

    let read = app.filing_guide(&alice, "db", "read").unwrap();
    assert_eq!(read.description.as_deref(), Some("Read the database"));
    assert!(read.may_request && !read.automatic);
    assert_eq!(
        read.needs,
        vec![Step {
            group: "sre".into(),
            approvals: 1
        }]
    );
    assert_eq!(
        (read.default_duration, read.max_duration),
        (DurationSecs(20 * 60), DurationSecs(3600))
    );
    assert!(!read.asks_for_ticket && !read.action_bound && read.break_glass.is_none());

    let write = app.filing_guide(&alice, "db", "write").unwrap();
    assert!(write.asks_for_ticket && write.reason_required);
    assert_eq!(write.ticket_example, Some("OPS-123"));
    assert_eq!(write.break_glass, None, "dev may not break glass");
    // bob may not request db write, only break glass on it, for its own maximum.
    let bob_write = app.filing_guide(&bob, "db", "write").unwrap();
    assert!(!bob_write.may_request);
    assert_eq!(bob_write.break_glass, Some(DurationSecs(15 * 60)));
    let choices = app.break_glass_choices(&bob);
    assert_eq!(
        choices
            .iter()
            .map(|g| (g.resource.as_str(), g.action.as_str()))
            .collect::<Vec<_>>(),
        vec![("db", "write")]
    );
    assert!(app.break_glass_choices(&alice).is_empty());

    let deploy = app.filing_guide(&alice, "api", "deploy").unwrap();
    assert!(deploy.action_bound && deploy.single_use);
    // A pattern none of the common shapes fits but "#123": that one is the example.
    assert_eq!(
        app.filing_guide(&alice, "tickets", "close").unwrap().ticket_example,
        Some("#123")
    );

    // Nothing for what the caller may neither request nor break glass on, nor for what no
    // workflow governs (whatever characters the name holds).
    assert!(app.filing_guide(&bob, "api", "deploy").is_none());
    assert!(app.filing_guide(&alice, "db", "drop").is_none());
    assert!(app.filing_guide(&alice, "db\u{0}", "read").is_none());
    assert!(
        app.filing_guide(&alice, "d\u{0431}", "read").is_none(),
        "a look-alike name is another name"
    );

    assert_eq!(app.requesting_groups(), vec!["ci", "dev", "sre"]);
}

#[tokio::test]
async fn a_missing_ticket_is_refused_by_type_with_its_field_and_the_api_words_unchanged() {
    let (app, _dir) = app().await;
    let alice = Identity::user("alice", &["dev"]);
    let ask = NewRequest {
        resource: "db".into(),
        action: "write".into(),
        duration: None,
        reason: "clean up".into(),
        payload: None,
        break_glass: false,
        items: None,
    };
    match app.file(&alice, &ask).await {
        Err(ServiceError::Invalid(invalid)) => {
            assert_eq!(invalid.field.as_deref(), Some("reason"));
            assert_eq!(invalid.item, None);
            assert_eq!(
                invalid.problem,
                Some(Problem::NoTicket {
                    example: Some("OPS-123".into())
                })
            );
            assert_eq!(
                invalid.to_string(),
                r"reason: must mention a ticket matching /\b[A-Z][A-Z0-9]+-[0-9]+\b/ for db write (for example OPS-123)"
            );
        }
        other => panic!("{other:?}"),
    }
    let long = NewRequest {
        reason: "OPS-1 ".to_string() + &"x".repeat(100 * 1024),
        ..ask
    };
    match app.file(&alice, &long).await {
        Err(ServiceError::TooLong(invalid)) => {
            assert_eq!(invalid.field.as_deref(), Some("reason"));
            let said = invalid.to_string();
            assert!(said.starts_with("reason: is 102406 bytes; keep it under "), "{said}");
        }
        other => panic!("{other:?}"),
    }
}

/// Procedures whose ticket pattern the sample reason `explain` uses ("explain OPS-1") does not
/// match: break glass stays on offer to whom may take it (the form asks for the ticket).
const TICKETS_OF_OTHER_SHAPES: &str = r##"
[[workflow]]
resource = "queue"
action = "purge"
requesters = ["dev"]
steps = [{ group = "sre", approvals = 1 }]
ticket_pattern = "#[0-9]+"
break_glass = { groups = ["sre"], max_duration = "10m" }

[[workflow]]
resource = "pager"
action = "silence"
requesters = ["dev"]
steps = [{ group = "sre", approvals = 1 }]
ticket_pattern = "INC[0-9]+"
ticket_hint = "Mention the incident, such as INC0012345."
break_glass = { groups = ["sre"], max_duration = "20m" }

[[workflow]]
resource = "router"
action = "reload"
requesters = ["dev"]
steps = [{ group = "sre", approvals = 1 }]
ticket_pattern = "CHG[0-9]{7}"
break_glass = { groups = ["sre"], max_duration = "5m" }
"##;

#[tokio::test]
async fn break_glass_is_offered_whatever_shape_of_ticket_the_workflow_asks_for() {
    let (app, _dir) = app_with(TICKETS_OF_OTHER_SHAPES).await;
    let bob = filer("bob", &["sre"]);
    let alice = filer("alice", &["dev"]);
    for (resource, action, most) in [
        ("queue", "purge", 10 * 60),
        ("pager", "silence", 20 * 60),
        ("router", "reload", 5 * 60),
    ] {
        let guide = app
            .filing_guide(&bob, resource, action)
            .unwrap_or_else(|| panic!("bob may break glass on {action} on {resource}: the guide must say so"));
        assert!(!guide.may_request);
        assert_eq!(guide.break_glass, Some(DurationSecs(most)), "{resource} {action}");
        assert_eq!(app.filing_guide(&alice, resource, action).unwrap().break_glass, None);
    }
    // What the form says about each ticket: the policy's hint, else no example at all (no
    // common shape fits these patterns inside a sentence).
    let pager = app.filing_guide(&alice, "pager", "silence").unwrap();
    assert_eq!(
        pager.ticket_hint.as_deref(),
        Some("Mention the incident, such as INC0012345.")
    );
    assert_eq!(pager.ticket_example, None);
    let router = app.filing_guide(&alice, "router", "reload").unwrap();
    assert_eq!((router.ticket_example, router.ticket_hint), (None, None));
    let choices: Vec<(String, String)> = app
        .break_glass_choices(&bob)
        .into_iter()
        .map(|g| (g.resource, g.action))
        .collect();
    assert_eq!(
        choices,
        [("pager", "silence"), ("queue", "purge"), ("router", "reload")]
            .map(|(r, a)| (r.to_string(), a.to_string()))
            .to_vec()
    );
    // An agent never breaks glass, whatever its groups.
    let agent = Identity {
        on_behalf_of: Some("bob".into()),
        ..Identity::user("bob-bot", &["sre", "agents"])
    };
    let agent = caller_for::<op::FileRequest>(agent).unwrap();
    assert!(app.filing_guide(&agent, "queue", "purge").is_none());
}

/// What is offered for break-glass does not depend on the order the policy holds its
/// workflows in: procedures are walked in name order and those the caller may request are
/// left out before the first [`jitgate_service::resources::MAX_BREAK_GLASS_CHOICES`] are taken.
#[tokio::test]
async fn break_glass_choices_are_the_first_by_name_of_those_offered() {
    let mut workflows = String::new();
    // 40 bob may request (named first), then 130 he may only break glass on.
    for i in 0..170 {
        let requesters = if i < 40 { r#"["dev", "sre"]"# } else { r#"["dev"]"# };
        workflows.push_str(&format!(
            "[[workflow]]\nresource = \"r{i:03}\"\naction = \"purge\"\nrequesters = {requesters}\n\
             steps = [{{ group = \"sre\", approvals = 1 }}]\nbreak_glass = {{ groups = [\"sre\"], max_duration = \"10m\" }}\n\n"
        ));
    }
    let (app, _dir) = app_with(&workflows).await;
    let bob = filer("bob", &["sre"]);
    let max = jitgate_service::resources::MAX_BREAK_GLASS_CHOICES;
    let expected: Vec<String> = (40..40 + max).map(|i| format!("r{i:03}")).collect();
    for _ in 0..3 {
        let offered: Vec<String> = app.break_glass_choices(&bob).into_iter().map(|g| g.resource).collect();
        assert_eq!(offered, expected);
    }
    let reach: Vec<String> = app.break_glass_reach(&bob).into_iter().map(|g| g.resource).collect();
    assert_eq!(reach, (0..max).map(|i| format!("r{i:03}")).collect::<Vec<_>>());
}
