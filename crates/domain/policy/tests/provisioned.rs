//! Groups an identity provider provisions (issue #25): `[groups] provisioned` in
//! directory.toml lets `policy check` accept groups it cannot see, their size is judged when
//! a request is filed, and the provisioned directory's managers and members count where the
//! file names nobody.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jitgate_core::admission::Ask;
use jitgate_core::{DomainError, Identity, Step};
use jitgate_policy::{Policy, ProvisionedDirectory};
use std::collections::BTreeMap;
use std::sync::Arc;

const DIRECTORY: &str = r#"
[groups]
provisioned = ["sre", "dev", "leads"]

[[principal]]
name = "root"
groups = ["admins", "sre"]
[[principal]]
name = "alice"
groups = ["dev"]
manager = "root"
"#;

const WORKFLOWS: &str = r#"[[workflow]]
resource = "prod-db"
action = "write"
requesters = ["dev"]
steps = [{ group = "sre", approvals = 2 }]

[[workflow]]
resource = "payroll"
action = "read"
requesters = ["dev"]
steps = [{ manager = true }]

[[workflow]]
resource = "prod-api"
action = "deploy"
requesters = ["dev"]
steps = [{ group = "sre", approvals = 1 }]
break_glass = { groups = ["sre"], max_duration = "30m" }
"#;

const CEDAR: &str = r#"
@id("sre-never-deploys")
forbid(principal in Group::"sre", action == Action::"request", resource == Resource::"prod-api");
"#;

/// A provisioned directory held in memory, as the server's is.
#[derive(Default)]
struct Provisioned {
    managers: BTreeMap<String, String>,
    groups: BTreeMap<String, Vec<String>>,
}

impl ProvisionedDirectory for Provisioned {
    fn manager_of(&self, principal: &str) -> Option<String> {
        self.managers.get(principal).cloned()
    }
    fn members_of(&self, group: &str) -> Vec<String> {
        self.groups.get(group).cloned().unwrap_or_default()
    }
}

fn ask<'a>(resource: &'a str, action: &'a str) -> Ask<'a> {
    Ask {
        resource,
        action,
        duration: None,
        reason: "OPS-1",
        payload: None,
        break_glass: false,
    }
}

fn policy_with(directory: Provisioned) -> Policy {
    Policy::from_texts(DIRECTORY, WORKFLOWS, None, &[("rules.cedar".into(), CEDAR.into())])
        .unwrap()
        .with_provisioned(Arc::new(directory))
}

#[test]
fn policy_check_accepts_provisioned_groups_it_cannot_see_and_refuses_the_others() {
    // sre has one member in the file, two approvals needed: fine, because provisioned.
    Policy::from_texts(DIRECTORY, WORKFLOWS, None, &[("rules.cedar".into(), CEDAR.into())]).unwrap();
    // Without [groups], the same workflows are refused as before.
    let plain = DIRECTORY.replace("[groups]\nprovisioned = [\"sre\", \"dev\", \"leads\"]\n", "");
    let errors = Policy::from_texts(&plain, WORKFLOWS, None, &[]).unwrap_err();
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        text.iter()
            .any(|e| e.contains("2 approvals from 'sre' can never be given")),
        "{text:?}"
    );
}

#[test]
fn jitgates_own_roles_and_bad_names_cannot_be_provisioned() {
    // As written in TOML: escapes are TOML's.
    for (group, says) in [
        ("\"admins\"", "one of jitgate's own roles"),
        ("\"Admins\"", "one of jitgate's own roles"),
        ("\"AUDITORS\"", "one of jitgate's own roles"),
        ("\"agents\"", "one of jitgate's own roles"),
        ("\"s\\u200Bre\"", "group name"),
        ("\"sre\\u0000\"", "group name"),
        ("\"s\\u0007re\"", "group name"),
        ("\"sre\\u202E\"", "group name"),
        ("\"s re\"", "group name"),
        ("\"\"", "group name"),
        ("\"user:bob\"", "reserved"),
        // A Cyrillic a: looks like `admins`, is not ASCII.
        ("\"\\u0430dmins\"", "group name"),
        ("\"ｓｒｅ\"", "group name"),
    ] {
        let directory =
            format!("[groups]\nprovisioned = [{group}]\n[[principal]]\nname = \"alice\"\ngroups = [\"dev\"]\n");
        let workflows =
            "[[workflow]]\nresource = \"x\"\naction = \"read\"\nrequesters = [\"dev\"]\nauto_approve = true\n";
        let errors = Policy::from_texts(&directory, workflows, None, &[]).unwrap_err();
        assert!(
            errors
                .iter()
                .any(|e| e.message.contains(says) && e.file == "directory.toml"),
            "{group:?}: {errors:?}"
        );
    }
    // Oversize: longer than any principal name may be.
    let long = "g".repeat(300);
    let directory = format!("[groups]\nprovisioned = [\"{long}\"]\n");
    let errors = Policy::from_texts(&directory, "", None, &[]).unwrap_err();
    assert!(errors.iter().any(|e| e.message.contains("longer than")), "{errors:?}");
    // An unknown key in [groups] is a typo, not ignored.
    let errors = Policy::from_texts("[groups]\nprovisoned = [\"sre\"]\n", "", None, &[]).unwrap_err();
    assert!(errors.iter().any(|e| e.message.contains("provisoned")), "{errors:?}");
}

#[test]
fn a_provisioned_group_too_small_at_filing_is_a_clear_refusal() {
    let alice = Identity::user("alice", &["dev"]);
    let mut directory = Provisioned::default();
    // root (from the file) and alice herself: one member besides alice.
    directory.groups.insert("sre".into(), vec!["alice".into()]);
    let policy = policy_with(directory);
    let err = policy
        .admit(&alice, &ask("prod-db", "write"), chrono::Utc::now())
        .unwrap_err();
    match err {
        DomainError::Forbidden(m) => assert_eq!(
            m,
            "prod-db write needs 2 approvals from sre, but sre has 1 member besides alice who may approve: \
             add reviewers to sre in the identity provider"
        ),
        other => panic!("{other:?}"),
    }
    // One more reviewer in the identity provider: filed.
    let mut directory = Provisioned::default();
    directory
        .groups
        .insert("sre".into(), vec!["alice".into(), "bob".into()]);
    let policy = policy_with(directory);
    let admitted = policy
        .admit(&alice, &ask("prod-db", "write"), chrono::Utc::now())
        .unwrap();
    assert_eq!(
        admitted.requirement.steps,
        vec![Step {
            group: "sre".into(),
            approvals: 2
        }]
    );
    // An agent acting for bob: neither the agent nor bob count.
    let mut agent = Identity::user("claude-bob", &["dev", "agents"]);
    agent.on_behalf_of = Some("bob".into());
    let err = policy
        .admit(&agent, &ask("prod-db", "write"), chrono::Utc::now())
        .unwrap_err();
    assert!(
        matches!(&err, DomainError::Forbidden(m) if m.contains("has 1 member besides claude-bob and bob")),
        "{err:?}"
    );
    // policy check / test / diff (no provisioned directory): never judged there.
    let files_only = Policy::from_texts(DIRECTORY, WORKFLOWS, None, &[]).unwrap();
    assert!(files_only
        .admit(&alice, &ask("prod-db", "write"), chrono::Utc::now())
        .is_ok());
}

#[test]
fn the_identity_providers_manager_drives_a_manager_step_unless_the_file_names_one() {
    let mut directory = Provisioned::default();
    directory.managers.insert("dana".into(), "mia".into());
    // The file names alice's manager: the identity provider's word on alice is not asked.
    directory.managers.insert("alice".into(), "mallory".into());
    let policy = policy_with(directory);
    let dana = Identity::user("dana", &["dev"]);
    let admitted = policy
        .admit(&dana, &ask("payroll", "read"), chrono::Utc::now())
        .unwrap();
    assert_eq!(admitted.requirement.steps, vec![Step::principal("mia")]);
    let alice = Identity::user("alice", &["dev"]);
    let admitted = policy
        .admit(&alice, &ask("payroll", "read"), chrono::Utc::now())
        .unwrap();
    assert_eq!(admitted.requirement.steps, vec![Step::principal("root")]);
    assert_eq!(policy.manager_of("dana").as_deref(), Some("mia"));
    assert_eq!(policy.manager_of("alice").as_deref(), Some("root"));
    // Nobody names erin's manager: refused with the reason.
    let erin = Identity::user("erin", &["dev"]);
    let err = policy
        .admit(&erin, &ask("payroll", "read"), chrono::Utc::now())
        .unwrap_err();
    assert!(
        matches!(&err, DomainError::Forbidden(m) if m.contains("erin has no manager")),
        "{err:?}"
    );
}

#[test]
fn members_are_the_union_and_the_file_wins_for_principals_it_names() {
    let mut directory = Provisioned::default();
    directory
        .groups
        .insert("sre".into(), vec!["bob".into(), "carol".into()]);
    // The identity provider claims alice is in admins-like group `sre`; the file names alice
    // (in dev only): its entry wins.
    directory.groups.get_mut("sre").unwrap().push("alice".into());
    let policy = policy_with(directory);
    assert_eq!(policy.members_of("sre"), ["bob", "carol", "root"]);
    assert_eq!(policy.members_of("nobody"), Vec::<String>::new());
}

#[test]
fn still_admits_judges_cedar_again_and_nothing_else() {
    let policy = policy_with(Provisioned::default());
    let now = chrono::Utc::now();
    let alice = Identity::user("alice", &["dev"]);
    let filed = jitgate_core::machine::file(
        &alice,
        &ask("prod-api", "deploy"),
        policy.admit(&alice, &ask("prod-api", "deploy"), now).unwrap(),
        jitgate_core::machine::NewIds {
            request_id: "r1".into(),
            grant_id: "g1".into(),
        },
        now,
    )
    .request;
    assert!(policy.still_admits(&alice, &filed, now).is_ok());
    // Left dev: no longer a requester.
    let moved = Identity::user("alice", &["ops"]);
    let err = policy.still_admits(&moved, &filed, now).unwrap_err();
    assert!(matches!(&err, DomainError::Forbidden(m) if m.contains("may no longer request deploy on prod-api")));
    // Joined sre as well: an authored forbid now applies.
    let joined = Identity::user("alice", &["dev", "sre"]);
    let err = policy.still_admits(&joined, &filed, now).unwrap_err();
    assert!(
        matches!(&err, DomainError::Forbidden(m) if m.contains("sre-never-deploys")),
        "{err:?}"
    );
}

#[test]
fn policy_diff_shows_what_changes_for_a_provisioned_group_without_members_here() {
    let old = Policy::from_texts(DIRECTORY, WORKFLOWS, None, &[]).unwrap();
    // `leads` may now request prod-db write: nobody in the file is in leads.
    let widened = WORKFLOWS.replacen(
        "requesters = [\"dev\"]\nsteps = [{ group = \"sre\", approvals = 2 }]",
        "requesters = [\"dev\", \"leads\"]\nsteps = [{ group = \"sre\", approvals = 2 }]",
        1,
    );
    assert_ne!(widened, WORKFLOWS);
    let new = Policy::from_texts(DIRECTORY, &widened, None, &[]).unwrap();
    for changes in [
        jitgate_policy::diff::diff(&old, &new),
        jitgate_policy::diff::diff_exhaustive(&old, &new),
    ] {
        assert!(
            changes
                .iter()
                .any(|c| c.subject == "group:leads" && c.resource == "prod-db" && c.action == "write"),
            "{changes:?}"
        );
    }
}
