//! The policy engine against the quickstart (the contract's table, row by row) and against
//! Cedar conditions written for these tests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jitgate_core::{Ask, CiClaims, DomainError, DurationSecs, Identity, PrincipalKind, Step, Timestamp};
use jitgate_policy::{Policy, Verdict};
use std::path::{Path, PathBuf};

fn quickstart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../examples/quickstart")
}

fn quickstart() -> Policy {
    Policy::load(&quickstart_dir()).unwrap_or_else(|e| panic!("quickstart is invalid: {e:?}"))
}

/// A Wednesday, 10:00 UTC.
fn weekday_morning() -> Timestamp {
    chrono::DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc)
}

fn user(name: &str, groups: &[&str]) -> Identity {
    Identity::user(name, groups)
}

fn sre(n: u32) -> Verdict {
    Verdict::NeedsApproval(vec![Step {
        group: "sre".into(),
        approvals: n,
    }])
}

fn ask<'a>(resource: &'a str, action: &'a str, reason: &'a str) -> Ask<'a> {
    Ask {
        resource,
        action,
        duration: None,
        reason,
        payload: None,
        break_glass: false,
    }
}

#[test]
fn quickstart_table_holds_row_by_row() {
    let p = quickstart();
    let now = weekday_morning();
    let alice = user("alice", &["dev"]);
    let bob = user("bob", &["sre"]);
    let ci = Identity {
        principal: "ci:example/app".into(),
        groups: vec!["ci".into()],
        kind: PrincipalKind::User,
        on_behalf_of: None,
        ci: None,
    };

    // staging-db read: dev, automatic, max 8h.
    let e = p.explain(&alice, "staging-db", "read", None, now);
    assert_eq!(e.verdict, Verdict::Automatic);
    assert_eq!(e.max_duration, Some(DurationSecs(8 * 3600)));
    assert!(matches!(
        p.explain(&bob, "staging-db", "read", None, now).verdict,
        Verdict::Refused(_)
    ));

    // prod-db read: dev and sre; 1 sre; reason required; max 1h.
    assert_eq!(p.explain(&alice, "prod-db", "read", None, now).verdict, sre(1));
    assert_eq!(p.explain(&bob, "prod-db", "read", None, now).verdict, sre(1));
    let e = p.explain(&alice, "prod-db", "read", None, now);
    assert!(e.reason_required);
    assert_eq!(e.max_duration, Some(DurationSecs(3600)));
    let no_reason = p.admit(&alice, &ask("prod-db", "read", ""), now).unwrap_err();
    assert!(matches!(no_reason, DomainError::Invalid { ref field, .. } if field == "reason"));

    // prod-db write: dev; 2 distinct sre; ticket in the reason; max 30m; sre may break glass for 15m.
    assert_eq!(p.explain(&alice, "prod-db", "write", None, now).verdict, sre(2));
    assert!(matches!(
        p.explain(&bob, "prod-db", "write", None, now).verdict,
        Verdict::Refused(_)
    ));
    let e = p.explain(&alice, "prod-db", "write", None, now);
    assert_eq!(e.max_duration, Some(DurationSecs(1800)));
    assert_eq!(e.break_glass, None, "devs cannot break glass");
    assert_eq!(
        p.explain(&bob, "prod-db", "write", None, now).break_glass,
        Some(DurationSecs(900))
    );
    // The missing ticket is refused by type too, with a reference the pattern accepts, so
    // that a form can say it in plain words while the API keeps its message.
    match p.admit(&alice, &ask("prod-db", "write", "cleanup"), now) {
        Err(DomainError::Invalid {
            field,
            message,
            problem,
        }) => {
            assert_eq!(field, "reason");
            assert!(message.contains("must mention a ticket matching"), "{message}");
            assert_eq!(
                problem,
                Some(jitgate_core::Problem::NoTicket {
                    example: Some("OPS-123".into())
                })
            );
        }
        other => panic!("a reason without a ticket must be refused: {other:?}"),
    }
    // Any other refusal of the reason carries no ticket problem.
    match p.admit(&alice, &ask("prod-db", "write", "OPS-1 \u{202e}cleanup"), now) {
        Err(DomainError::Invalid { field, problem, .. }) => {
            assert_eq!(field, "reason");
            assert_eq!(problem, None);
        }
        other => panic!("a bidi override must be refused: {other:?}"),
    }
    assert!(p
        .admit(&alice, &ask("prod-db", "write", "cleanup OPS-123"), now)
        .is_ok());

    // prod-api deploy: dev and CI; 1 sre; action-bound and single-use.
    assert_eq!(p.explain(&alice, "prod-api", "deploy", None, now).verdict, sre(1));
    assert_eq!(p.explain(&ci, "prod-api", "deploy", None, now).verdict, sre(1));
    let e = p.explain(&alice, "prod-api", "deploy", None, now);
    assert!(e.action_bound && e.single_use);
    assert!(
        p.admit(&alice, &ask("prod-api", "deploy", "release"), now).is_err(),
        "payload required"
    );

    // A payload only where it is enforced (issue #19): prod-db read is not action-bound.
    let with_payload = Ask {
        payload: Some("SELECT count(*) FROM orders"),
        ..ask("prod-db", "read", "count orders")
    };
    match p.admit(&alice, &with_payload, now) {
        Err(DomainError::Invalid { field, message, .. }) => {
            assert_eq!(field, "payload");
            assert!(message.contains("not action-bound"), "{message}");
        }
        other => panic!("a payload on a workflow that is not action-bound must be refused: {other:?}"),
    }
    let deploy = Ask {
        payload: Some("sha256:4f2c"),
        ..ask("prod-api", "deploy", "release")
    };
    assert!(p.admit(&alice, &deploy, now).is_ok());

    // bastion login: dev; 1 sre; max 1h.
    assert_eq!(p.explain(&alice, "bastion", "login", None, now).verdict, sre(1));
    assert_eq!(
        p.explain(&alice, "bastion", "login", None, now).max_duration,
        Some(DurationSecs(3600))
    );
    assert!(matches!(
        p.explain(&bob, "bastion", "login", None, now).verdict,
        Verdict::Refused(_)
    ));
}

#[test]
fn reviewers_are_decided_by_the_policy() {
    let p = quickstart();
    let now = weekday_morning();
    let alice = user("alice", &["dev"]);
    let admission = p.admit(&alice, &ask("prod-db", "read", "INC-1"), now).unwrap();
    let t = jitgate_core::machine::file(
        &alice,
        &ask("prod-db", "read", "INC-1"),
        admission,
        jitgate_core::machine::NewIds {
            request_id: "r1".into(),
            grant_id: "g1".into(),
        },
        now,
    );
    assert!(p.may_review(&user("bob", &["sre"]), &t.request, now).is_ok());
    assert!(p.may_review(&user("dave", &["dev"]), &t.request, now).is_err());
}

struct Dir(tempfile::TempDir);

impl Dir {
    /// The quickstart plus extra files.
    fn with(files: &[(&str, &str)]) -> Dir {
        let dir = tempfile::tempdir().unwrap();
        for name in ["directory.toml", "workflows.toml", "resources.toml"] {
            std::fs::copy(quickstart_dir().join(name), dir.path().join(name)).unwrap();
        }
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        Dir(dir)
    }

    fn load(&self) -> Result<Policy, Vec<jitgate_policy::PolicyError>> {
        Policy::load(self.0.path())
    }
}

const CI_MAIN_IS_AUTOMATIC: &str = r#"
// Deploys from main of example/app need no review.
@id("ci-main-deploys")
permit(principal in Group::"ci", action == Action::"auto_approve", resource == Resource::"prod-api")
when {
  context.access == "deploy" &&
  context has ci && context.ci.repository == "example/app" && context.ci.ref == "refs/heads/main"
};
"#;

#[test]
fn ci_claims_drive_automatic_approval() {
    let p = Dir::with(&[("ci.cedar", CI_MAIN_IS_AUTOMATIC)]).load().unwrap();
    let now = weekday_morning();
    let claims = |git_ref: &str| CiClaims {
        repository: "example/app".into(),
        git_ref: git_ref.into(),
        environment: "production".into(),
        workflow: "deploy".into(),
        actor: "alice".into(),
    };
    let job = |git_ref: &str| Identity {
        principal: "ci:example/app".into(),
        groups: vec!["ci".into()],
        kind: PrincipalKind::User,
        on_behalf_of: None,
        ci: Some(claims(git_ref)),
    };
    assert_eq!(
        p.explain(&job("refs/heads/main"), "prod-api", "deploy", None, now)
            .verdict,
        Verdict::Automatic
    );
    assert_eq!(
        p.explain(&job("refs/heads/feature"), "prod-api", "deploy", None, now)
            .verdict,
        sre(1)
    );
    // A person is not a CI job, whatever their groups.
    assert_eq!(
        p.explain(&user("alice", &["dev"]), "prod-api", "deploy", None, now)
            .verdict,
        sre(1)
    );
}

#[test]
fn forbid_policies_refuse_and_are_named() {
    let cedar = r#"
@id("no-prod-writes-at-weekends")
forbid(principal, action == Action::"request", resource == Resource::"prod-db")
when { context.access == "write" && context.weekday >= 6 };
"#;
    let p = Dir::with(&[("freeze.cedar", cedar)]).load().unwrap();
    let alice = user("alice", &["dev"]);
    let saturday = chrono::DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    match p.admit(&alice, &ask("prod-db", "write", "OPS-1"), saturday) {
        Err(DomainError::Forbidden(m)) => assert!(m.contains("no-prod-writes-at-weekends"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(p
        .admit(&alice, &ask("prod-db", "write", "OPS-1"), weekday_morning())
        .is_ok());
}

#[test]
fn on_call_members_get_automatic_reads() {
    let oncall = r#"
[[shift]]
group = "sre"
principal = "bob"
start = "2026-11-25T08:00:00Z"
end = "2026-11-25T20:00:00Z"
"#;
    let cedar = r#"
permit(principal, action == Action::"auto_approve", resource == Resource::"prod-db")
when { context.access == "read" && context.on_call.contains("sre") };
"#;
    let p = Dir::with(&[("oncall.toml", oncall), ("oncall.cedar", cedar)])
        .load()
        .unwrap();
    let bob = user("bob", &["sre"]);
    assert_eq!(
        p.explain(&bob, "prod-db", "read", None, weekday_morning()).verdict,
        Verdict::Automatic
    );
    let night = weekday_morning() + chrono::TimeDelta::hours(12);
    assert_eq!(p.explain(&bob, "prod-db", "read", None, night).verdict, sre(1));
    assert_eq!(
        p.explain(&user("carol", &["sre"]), "prod-db", "read", None, weekday_morning())
            .verdict,
        sre(1)
    );
}

#[test]
fn broken_cedar_is_reported_with_file_and_line() {
    let syntax = "permit(principal, action == Action::\"request\", resource)\nwhen { context.access == };\n";
    let errors = Dir::with(&[("bad.cedar", syntax)]).load().unwrap_err();
    assert!(
        errors.iter().any(|e| e.file.ends_with("bad.cedar") && e.line == 2),
        "{errors:?}"
    );

    let unknown_attr =
        "\n\npermit(principal, action == Action::\"request\", resource)\nwhen { context.no_such_thing == 1 };\n";
    let errors = Dir::with(&[("typo.cedar", unknown_attr)]).load().unwrap_err();
    assert!(
        errors.iter().any(|e| e.file.ends_with("typo.cedar") && e.line == 4),
        "{errors:?}"
    );

    let unknown_group = "permit(principal in Group::\"nobody\", action == Action::\"request\", resource);\n";
    let errors = Dir::with(&[("group.cedar", unknown_group)]).load().unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.to_string().contains("group.cedar:1: unknown group 'nobody'")),
        "{errors:?}"
    );
}

#[test]
fn oncall_schedule_errors_are_located() {
    let oncall =
        "[[shift]]\ngroup = \"sre\"\nprincipal = \"bob\"\nstart = \"yesterday\"\nend = \"2026-11-25T20:00:00Z\"\n";
    let errors = Dir::with(&[("oncall.toml", oncall)]).load().unwrap_err();
    assert!(
        errors.iter().any(|e| e.to_string().contains("oncall.toml:1: start:")),
        "{errors:?}"
    );
}

/// Regression: the `extend` ability once had no Cedar action registered, so every extension
/// was refused ("no policy permits it") even where the workflow allowed it.
#[test]
fn extension_is_judged_by_cedar_extend() {
    let p = quickstart();
    let now = weekday_morning();
    let alice = user("alice", &["dev"]);
    let staging = ask("staging-db", "read", "");
    let admission = p.admit(&alice, &staging, now).unwrap();
    let ids = jitgate_core::machine::NewIds {
        request_id: "r1".into(),
        grant_id: "g1".into(),
    };
    let granted = jitgate_core::machine::file(&alice, &staging, admission, ids, now).request;
    let limits = p
        .admit_extension(&alice, &granted, DurationSecs(600), "longer", now)
        .expect("the workflow allows it");
    assert_eq!(limits.max_times, 2);
    assert_eq!(limits.max_duration, DurationSecs(8 * 3600));
    // Someone outside the workflow's requesters is refused by Cedar.
    let outsider = user("mallory", &["contractors"]);
    assert!(matches!(
        p.admit_extension(&outsider, &granted, DurationSecs(600), "x", now),
        Err(DomainError::Forbidden(_))
    ));
    // Workflows without an extension rule refuse with a pointer to filing a new request.
    let bastion = ask("bastion", "login", "");
    let admission = p.admit(&alice, &bastion, now).unwrap();
    let ids = jitgate_core::machine::NewIds {
        request_id: "r2".into(),
        grant_id: "g2".into(),
    };
    let pending = jitgate_core::machine::file(&alice, &bastion, admission, ids, now).request;
    match p.admit_extension(&alice, &pending, DurationSecs(600), "x", now) {
        Err(DomainError::Forbidden(m)) => assert!(m.contains("file a new request"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn manager_steps_need_the_requesters_manager() {
    let directory = r#"
[[principal]]
name = "alice"
groups = ["dev"]
manager = "mona"
[[principal]]
name = "dave"
groups = ["dev"]
[[principal]]
name = "mona"
groups = ["managers"]
[[principal]]
name = "bob"
groups = ["sre"]
"#;
    let workflows = r#"
[[workflow]]
resource = "payroll"
action = "read"
requesters = ["dev"]
steps = [{ manager = true }, { group = "sre", approvals = 1 }]
"#;
    let p = Policy::from_texts(directory, workflows, None, &[]).unwrap();
    let now = weekday_morning();
    let alice = user("alice", &["dev"]);
    let payroll = ask("payroll", "read", "audit");
    let admission = p.admit(&alice, &payroll, now).unwrap();
    assert_eq!(
        admission.requirement.steps,
        vec![
            Step::principal("mona"),
            Step {
                group: "sre".into(),
                approvals: 1
            }
        ]
    );
    // dave has no manager: he cannot file it.
    assert!(matches!(
        p.admit(&user("dave", &["dev"]), &payroll, now),
        Err(DomainError::Forbidden(_))
    ));

    let ids = jitgate_core::machine::NewIds {
        request_id: "r1".into(),
        grant_id: "g1".into(),
    };
    let pending = jitgate_core::machine::file(&alice, &payroll, admission, ids, now).request;
    let mona = user("mona", &["managers"]);
    let bob = user("bob", &["sre"]);
    let other_manager = user("otto", &["managers"]);
    assert!(p.may_review(&mona, &pending, now).is_ok(), "alice's manager reviews");
    assert!(
        p.may_review(&other_manager, &pending, now).is_err(),
        "another manager does not"
    );
    assert!(p.may_review(&bob, &pending, now).is_ok());
    let by_bob = jitgate_core::machine::approve(&pending, &bob, None, "g".into(), now)
        .unwrap()
        .request;
    assert_eq!(
        by_bob.status,
        jitgate_core::RequestStatus::Pending,
        "the manager step is still open"
    );
    let done = jitgate_core::machine::approve(&by_bob, &mona, None, "g".into(), now)
        .unwrap()
        .request;
    assert_eq!(done.status, jitgate_core::RequestStatus::Approved);

    // The directory's own rules.
    let own = "[[principal]]\nname = \"alice\"\nmanager = \"alice\"\n";
    let errors = Policy::from_texts(own, "", None, &[]).unwrap_err();
    assert!(errors.iter().any(|e| e.message.contains("own manager")), "{errors:?}");
    let bad_step = "[[workflow]]\nresource = \"x\"\naction = \"y\"\nrequesters = [\"dev\"]\nsteps = [{ manager = true, group = \"sre\" }]\n";
    let errors = Policy::from_texts(directory, bad_step, None, &[]).unwrap_err();
    assert!(errors.iter().any(|e| e.message.contains("either group")), "{errors:?}");
}

/// The cached Cedar entities of directory principals are used only when the caller's groups
/// are exactly the directory's: a caller named alice whose token says otherwise is judged by
/// the token's groups, in both directions.
#[test]
fn callers_are_judged_by_their_own_groups_not_the_cached_ones() {
    let p = quickstart();
    let now = weekday_morning();
    let write = ask("prod-db", "write", "OPS-1");
    assert!(p.admit(&user("alice", &["dev"]), &write, now).is_ok());
    assert!(matches!(
        p.admit(&user("alice", &["sre"]), &write, now),
        Err(DomainError::Forbidden(_))
    ));
    assert!(matches!(
        p.admit(&user("alice", &[]), &write, now),
        Err(DomainError::Forbidden(_))
    ));
    let mut glass = write.clone();
    glass.break_glass = true;
    assert!(matches!(
        p.admit(&user("alice", &["dev"]), &glass, now),
        Err(DomainError::Forbidden(_))
    ));
    assert!(p.admit(&user("alice", &["sre"]), &glass, now).is_ok());
}

#[test]
fn directory_tokens_can_be_kept_as_hashes_only() {
    let hash = "6c0f4d1a0e1f2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4";
    let directory = format!(
        "[[principal]]\nname = \"svc\"\nservice = true\ntoken_sha256 = \"{hash}\"\n\n[[principal]]\nname = \"demo\"\ntoken = \"demo-token\"\n"
    );
    let p = Policy::from_texts(&directory, "", None, &[]).unwrap();
    let svc = p.rules().principal("svc").unwrap();
    assert_eq!(svc.token_hash.map(hex::encode).as_deref(), Some(hash));
    let demo = p.rules().principal("demo").unwrap();
    assert_eq!(demo.token_hash, Some(jitgate_core::token::token_hash("demo-token")));

    let both = "[[principal]]\nname = \"x\"\ntoken = \"demo-token\"\ntoken_sha256 = \"00\"\n";
    let errors = Policy::from_texts(both, "", None, &[]).unwrap_err();
    assert!(
        errors[0].to_string().contains("both token and token_sha256"),
        "{errors:?}"
    );
    let short = "[[principal]]\nname = \"x\"\ntoken_sha256 = \"abc\"\n";
    let errors = Policy::from_texts(short, "", None, &[]).unwrap_err();
    assert!(errors[0].to_string().contains("directory.toml:1"), "{errors:?}");
    assert!(errors[0].to_string().contains("not 64 hex digits"), "{errors:?}");
    let twice = format!(
        "[[principal]]\nname = \"a\"\ntoken = \"demo-token\"\n\n[[principal]]\nname = \"b\"\ntoken_sha256 = \"{}\"\n",
        hex::encode(jitgate_core::token::token_hash("demo-token"))
    );
    let errors = Policy::from_texts(&twice, "", None, &[]).unwrap_err();
    assert!(errors[0].to_string().contains("already used"), "{errors:?}");
}

#[test]
fn postgres_sections_are_checked() {
    let directory = "[[principal]]\nname = \"alice\"\ngroups = [\"dev\"]\n";
    let workflow = |extra: &str| {
        format!("[[workflow]]\nresource = \"app-db\"\naction = \"read\"\nrequesters = [\"dev\"]\nauto_approve = true\n{extra}\n")
    };
    let good = workflow("providers = [\"pg\"]\npostgres = { roles = [\"app_read\", \"reporting-ro\"] }");
    let policy = Policy::from_texts(directory, &good, None, &[]).unwrap();
    let access = policy.rules().workflow("app-db", "read").unwrap().postgres.clone();
    assert_eq!(access.unwrap().roles, vec!["app_read", "reporting-ro"]);

    let refused = [
        (
            "providers = [\"pg\"]\npostgres = { roles = [] }",
            "name the database roles",
        ),
        (
            "providers = [\"pg\"]\npostgres = { roles = [\"x\\\"; DROP TABLE t; --\"] }",
            "is not a role name",
        ),
        (
            "providers = [\"pg\"]\npostgres = { roles = [\"pg_read_all_data\"] }",
            "system role",
        ),
        ("postgres = { roles = [\"app_read\"] }", "name the postgres provider"),
        (
            "providers = [\"pg\"]\naction_bound = true\npostgres = { roles = [\"app_read\"] }",
            "single-use grant ends at its first use",
        ),
        (
            "providers = [\"pg\"]\npostgres = { roles = [\"app_read\"], superuser = true }",
            "unknown field",
        ),
    ];
    for (extra, expected) in refused {
        let errors = Policy::from_texts(directory, &workflow(extra), None, &[]).unwrap_err();
        assert!(
            errors
                .iter()
                .any(|e| e.to_string().contains(expected) && e.file == "workflows.toml"),
            "{extra}: expected '{expected}' in {errors:?}"
        );
    }
}

#[test]
fn slack_users_are_checked_and_found() {
    let workflows = "";
    let good = "[[principal]]\nname = \"bob\"\ngroups = [\"sre\"]\nslack_user = \"U0BOB42\"\n";
    let policy = Policy::from_texts(good, workflows, None, &[]).unwrap();
    let bob = policy.rules().principal_by_slack_user("U0BOB42").unwrap();
    assert_eq!(bob.identity.principal, "bob");
    assert!(policy.rules().principal_by_slack_user("UOTHER").is_none());

    let lowercase = "[[principal]]\nname = \"bob\"\nslack_user = \"u0bob\"\n";
    let errors = Policy::from_texts(lowercase, workflows, None, &[]).unwrap_err();
    assert!(
        errors[0].to_string().contains("directory.toml:1: slack_user of 'bob'"),
        "{errors:?}"
    );
    let twice =
        "[[principal]]\nname = \"bob\"\nslack_user = \"U1\"\n\n[[principal]]\nname = \"eve\"\nslack_user = \"U1\"\n";
    let errors = Policy::from_texts(twice, workflows, None, &[]).unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.line == 5 && e.message.contains("given to both 'bob' and 'eve'")),
        "{errors:?}"
    );
}

#[test]
fn escalation_is_checked_and_only_waiting_requests_carry_it() {
    let directory = "[[principal]]\nname = \"alice\"\ngroups = [\"dev\"]\n\n[[principal]]\nname = \"bob\"\ngroups = [\"sre\"]\n\n[[principal]]\nname = \"lena\"\ngroups = [\"leads\"]\n";
    let workflow = |extra: &str| {
        format!("[[workflow]]\nresource = \"db\"\naction = \"migrate\"\nrequesters = [\"dev\"]\npending_ttl = \"1h\"\n{extra}\n")
    };
    let good = workflow(
        "steps = [{ group = \"sre\", approvals = 1 }]\nescalation = { after = \"15m\", groups = [\"leads\"] }",
    );
    let policy = Policy::from_texts(directory, &good, None, &[]).unwrap();
    let admitted = policy
        .admit(&user("alice", &["dev"]), &ask("db", "migrate", ""), weekday_morning())
        .unwrap();
    let escalation = admitted.requirement.escalation.unwrap();
    assert_eq!(
        (escalation.after, escalation.groups),
        (DurationSecs(900), vec!["leads".to_string()])
    );

    let refused = [
        (
            "steps = [{ group = \"sre\", approvals = 1 }]\nescalation = { after = \"2h\", groups = [\"leads\"] }",
            "not shorter than pending_ttl",
        ),
        (
            "steps = [{ group = \"sre\", approvals = 1 }]\nescalation = { after = \"15m\", groups = [\"nobody\"] }",
            "unknown group 'nobody'",
        ),
        (
            "steps = [{ group = \"sre\", approvals = 1 }]\nescalation = { after = \"15m\", groups = [] }",
            "name the backup reviewers",
        ),
        (
            "steps = [{ group = \"sre\", approvals = 1 }]\nescalation = { after = \"soon\", groups = [\"leads\"] }",
            "escalation.after:",
        ),
        (
            "auto_approve = true\nescalation = { after = \"15m\", groups = [\"leads\"] }",
            "nothing to escalate",
        ),
    ];
    for (extra, expected) in refused {
        let errors = Policy::from_texts(directory, &workflow(extra), None, &[]).unwrap_err();
        assert!(
            errors.iter().any(|e| e.message.contains(expected)),
            "{extra}: {errors:?}"
        );
    }
}

/// Issue #19's backdoor: automatic approval of anything on prod-db whose reason holds a word.
const BACKDOOR: &str = r#"permit(principal, action == Action::"auto_approve", resource == Resource::"prod-db") when { context.reason like "*perf-tune-42*" };
"#;

/// The Cedar file both versions share before the backdoor is appended to it.
const WEEKEND_FREEZE: &str = r#"// Nobody writes to production at weekends.
@id("no-prod-writes-at-weekends")
forbid(principal, action == Action::"request", resource == Resource::"prod-db")
when { context.access == "write" && context.weekday >= 6 };
"#;

/// Issue #19: the backdoor passed `policy diff` as "no effective change". It is listed with its
/// place, and the search finds the request it newly makes automatic.
#[test]
fn diff_lists_a_cedar_backdoor_and_finds_the_request_it_opens() {
    let old = Dir::with(&[("policy.cedar", WEEKEND_FREEZE)]);
    let new = Dir::with(&[("policy.cedar", &format!("{WEEKEND_FREEZE}{BACKDOOR}"))]);
    let (old, new) = (old.load().unwrap(), new.load().unwrap());
    // The representative request names no magic word: it alone sees nothing.
    assert!(jitgate_policy::diff::diff(&old, &new).is_empty());

    let report = jitgate_policy::diff::review(&old, &new);
    assert!(!report.is_unchanged(), "{report}");
    assert_eq!(report.cedar_policies.len(), 1, "{report}");
    let added = &report.cedar_policies[0];
    assert_eq!(added.edit, jitgate_policy::diff::Edit::Added);
    assert_eq!(
        (added.file.as_str(), added.line, added.effect.as_str()),
        ("policy.cedar", 5, "permit")
    );
    assert_eq!(
        added.scope,
        r#"permit(principal, action == Action::"auto_approve", resource == Resource::"prod-db")"#
    );
    let opened = report
        .changes
        .iter()
        .find(|c| c.subject == "alice" && c.resource == "prod-db" && c.action == "write")
        .unwrap_or_else(|| panic!("no change for alice's prod-db write in {report}"));
    assert_eq!(
        (opened.ability.as_str(), opened.before.as_str(), opened.after.as_str()),
        ("request", "needs 2 from sre", "automatic")
    );
    let when = opened.when.as_deref().unwrap();
    assert!(when.contains("perf-tune-42"), "{when}");
    let text = report.to_string();
    assert!(
        text.contains("+ added permit at policy.cedar:5 (policy.cedar#2)"),
        "{text}"
    );
    assert!(
        text.contains("~ alice: request write on prod-db: weaker: needs 2 from sre -> automatic, when filed with reason \"perf-tune-42"),
        "{text}"
    );
    let search = report.search.as_ref().unwrap();
    assert!(
        search.probes > 0 && search.probes <= jitgate_policy::diff::MAX_PROBES,
        "{search:?}"
    );
    assert!(search.reasons.iter().any(|r| r.contains("perf-tune-42")), "{search:?}");
    assert!(text.contains("searched ") && text.contains("probe requests"), "{text}");

    // What the search found is what a live filing gets: automatic, and the admission names
    // the policy that decided it.
    let alice = user("alice", &["dev"]);
    let now = weekday_morning();
    let admission = new
        .admit(&alice, &ask("prod-db", "write", "perf-tune-42 OPS-7"), now)
        .unwrap();
    assert!(admission.requirement.steps.is_empty());
    assert_eq!(
        admission.decided_by.as_deref(),
        Some("cedar policy policy.cedar#2 at policy.cedar:5")
    );
}

#[test]
fn diff_lists_edited_and_removed_cedar_policies_and_ignores_layout() {
    let old = Dir::with(&[("policy.cedar", WEEKEND_FREEZE)]).load().unwrap();
    // The same policy laid out otherwise, with another comment: no change.
    let relaid = WEEKEND_FREEZE
        .replace("// Nobody", "// No one")
        .replace(" when {", "\n  when {");
    let same = Dir::with(&[("policy.cedar", &relaid)]).load().unwrap();
    let report = jitgate_policy::diff::review(&old, &same);
    assert!(report.is_unchanged(), "{report}");
    assert_eq!(report.to_string(), "no effective change in access\n");

    // Edited: the freeze now starts on Sunday only. The search shows Saturday writes.
    let edited = Dir::with(&[("policy.cedar", &WEEKEND_FREEZE.replace(">= 6", ">= 7"))])
        .load()
        .unwrap();
    let report = jitgate_policy::diff::review(&old, &edited);
    assert_eq!(report.cedar_policies.len(), 1, "{report}");
    let change = &report.cedar_policies[0];
    assert_eq!(change.edit, jitgate_policy::diff::Edit::Edited);
    assert_eq!(
        (change.id.as_str(), change.effect.as_str(), change.line),
        ("no-prod-writes-at-weekends", "forbid", 2)
    );
    assert!(change.was.as_ref().unwrap().text.contains(">= 6"), "{report}");
    assert!(
        report.changes.iter().any(|c| c.subject == "alice"
            && c.action == "write"
            && c.kind == jitgate_policy::diff::ChangeKind::Gained
            && c.when.as_deref().is_some_and(|w| w.contains("Saturday"))),
        "{report}"
    );

    // Removed: listed as such, from the old version's file and line.
    let removed = Dir::with(&[]).load().unwrap();
    let report = jitgate_policy::diff::review(&old, &removed);
    assert_eq!(report.cedar_policies.len(), 1, "{report}");
    assert_eq!(report.cedar_policies[0].edit, jitgate_policy::diff::Edit::Removed);
    assert!(
        report
            .to_string()
            .contains("- removed forbid at policy.cedar:2 (no-prod-writes-at-weekends)"),
        "{report}"
    );
}

/// Issue #19: an automatic approval's admission names what decided it, for the audit log.
#[test]
fn automatic_admissions_name_the_deciding_policy() {
    let p = quickstart();
    let now = weekday_morning();
    let alice = user("alice", &["dev"]);
    let staging = p.admit(&alice, &ask("staging-db", "read", ""), now).unwrap();
    assert_eq!(
        staging.decided_by.as_deref(),
        Some("workflow staging-db read (auto_approve = true in workflows.toml)")
    );
    let write = p.admit(&alice, &ask("prod-db", "write", "OPS-1"), now).unwrap();
    assert_eq!(
        write.decided_by, None,
        "a request that waits for review names no decider"
    );
    let glass = Ask {
        break_glass: true,
        ..ask("prod-db", "write", "OPS-1 outage")
    };
    let bg = p.admit(&user("bob", &["sre"]), &glass, now).unwrap();
    assert_eq!(
        bg.decided_by.as_deref(),
        Some("workflow prod-db write (break_glass.groups in workflows.toml)")
    );
}

/// The resource catalog (`resources.toml`) and workflows that select from it.
mod catalog {
    use super::*;
    use jitgate_policy::{PolicyError, Specificity};

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

    const RESOURCES: &str = r#"[[collection]]
name = "env:prod"
description = "everything in production"

[[resource]]
name = "orders-db"
kind = "postgres"
labels = { env = "prod", team = "payments" }
parent = "env:prod"
owners = ["payments"]
postgres = { roles = ["app_readonly"] }

[[resource]]
name = "billing-db"
kind = "postgres"
labels = { env = "prod", team = "billing" }
parent = "env:prod"

[[resource]]
name = "metrics-db"
kind = "postgres"
labels = { env = "staging", team = "payments" }

[[resource]]
name = "wiki"
kind = "http"
labels = { env = "prod" }
"#;

    const WORKFLOWS: &str = r#"[[workflow]]
resources = { labels = { env = "staging" } }
actions = ["read", "write"]
requesters = ["dev"]
auto_approve = true

[[workflow]]
resources = { names = ["orders-*", "billing-*"], kind = "postgres" }
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

    fn load(workflows: &str, resources: &str) -> Result<Policy, Vec<PolicyError>> {
        Policy::from_texts_with_catalog(
            DIRECTORY,
            workflows,
            None,
            &[],
            &[("resources.toml".to_string(), resources.to_string())],
        )
    }

    fn policy() -> Policy {
        load(WORKFLOWS, RESOURCES).unwrap_or_else(|e| panic!("catalog policy is invalid: {e:?}"))
    }

    /// The errors as `file:line: message`, asserting that loading fails.
    fn refused(workflows: &str, resources: &str) -> Vec<String> {
        match load(workflows, resources) {
            Ok(_) => panic!("accepted:\n{resources}\n{workflows}"),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    fn has(errors: &[String], prefix: &str, part: &str) {
        assert!(
            errors.iter().any(|e| e.starts_with(prefix) && e.contains(part)),
            "no error starting {prefix:?} containing {part:?} in {errors:#?}"
        );
    }

    fn step(group: &str, approvals: u32) -> Step {
        Step {
            group: group.into(),
            approvals,
        }
    }

    #[test]
    fn the_catalog_is_read_with_kind_labels_parent_owners_and_settings() {
        let p = policy();
        let catalog = p.rules().catalog();
        let orders = catalog.resource("orders-db").expect("declared");
        assert_eq!(orders.kind, "postgres");
        assert_eq!(orders.labels.get("team").map(String::as_str), Some("payments"));
        assert_eq!(orders.parent.as_deref(), Some("env:prod"));
        assert_eq!(orders.owners, vec!["payments".to_string()]);
        assert_eq!((orders.file.as_str(), orders.line), ("resources.toml", 5));
        let roles = orders.settings["postgres"]
            .get("roles")
            .and_then(|r| r.as_array())
            .expect("kept");
        assert_eq!(roles[0].as_str(), Some("app_readonly"));
        assert!(catalog.collection("env:prod").is_some());
        assert_eq!(catalog.ancestors("orders-db"), vec!["env:prod"]);
    }

    #[test]
    fn a_label_selected_workflow_approves_automatically() {
        let p = policy();
        let alice = user("alice", &["dev"]);
        for action in ["read", "write"] {
            assert_eq!(
                p.explain(&alice, "metrics-db", action, None, weekday_morning()).verdict,
                Verdict::Automatic
            );
            let m = p.rules().matched("metrics-db", action).expect("matched");
            assert_eq!(m.specificity, Specificity::Labels);
            assert_eq!((m.file.as_str(), m.line), ("workflows.toml", 1));
            assert_eq!(m.selector, r#"resources = { labels = { env = "staging" } }"#);
        }
        let w = p.rules().workflow("metrics-db", "write").unwrap();
        assert_eq!((w.resource.as_str(), w.action.as_str()), ("metrics-db", "write"));
    }

    #[test]
    fn a_glob_selected_workflow_waits_for_its_group_and_beats_labels() {
        let p = policy();
        let alice = user("alice", &["dev"]);
        // billing-db read: the glob (line 7) and the env=prod labels (line 19) both match; the glob wins.
        assert_eq!(
            p.explain(&alice, "billing-db", "read", None, weekday_morning()).verdict,
            sre(1)
        );
        let m = p.rules().matched("billing-db", "read").unwrap();
        assert_eq!((m.specificity, m.line), (Specificity::Glob, 7));
        // wiki is no postgres database: only the labels select it.
        assert_eq!(p.rules().matched("wiki", "read").unwrap().line, 19);
        // The glob does not reach write, and nothing selects it on billing-db.
        assert!(
            p.explain(&alice, "billing-db", "write", None, weekday_morning())
                .verdict
                != Verdict::Automatic
        );
        assert!(p.rules().workflow("billing-db", "write").is_err());
    }

    #[test]
    fn an_owners_step_asks_the_owner_group() {
        let p = policy();
        let alice = user("alice", &["dev"]);
        assert_eq!(
            p.explain(&alice, "orders-db", "write", None, weekday_morning()).verdict,
            Verdict::NeedsApproval(vec![step("payments", 1)])
        );
        let m = p.rules().matched("orders-db", "write").unwrap();
        assert_eq!(
            (m.specificity, m.selector.as_str()),
            (Specificity::Exact, r#"resource = "orders-db""#)
        );
        // Filing it records the owner group as the request's step.
        let request = p
            .admit(&alice, &ask("orders-db", "write", "fix orders"), weekday_morning())
            .unwrap();
        assert_eq!(request.requirement.steps, vec![step("payments", 1)]);
        // An owner may approve it (the generated Cedar permit names the owner group); an sre
        // may not; the owner's approval approves it.
        let now = weekday_morning();
        let filed = ask("orders-db", "write", "fix orders");
        let ids = jitgate_core::machine::NewIds {
            request_id: "r1".into(),
            grant_id: "g1".into(),
        };
        let pending = jitgate_core::machine::file(&alice, &filed, request, ids, now).request;
        let pat = user("pat", &["payments"]);
        assert!(p.may_review(&pat, &pending, now).is_ok());
        assert!(p.may_review(&user("bob", &["sre"]), &pending, now).is_err());
        let done = jitgate_core::machine::approve(&pending, &pat, None, "ok".into(), now)
            .unwrap()
            .request;
        assert_eq!(done.status, jitgate_core::RequestStatus::Approved);
    }

    #[test]
    fn an_owners_step_on_a_resource_without_owners_is_refused() {
        // env=prod selects orders-db (owned by payments), billing-db and wiki (no owners).
        let workflows = format!(
            "{WORKFLOWS}\n[[workflow]]\nresources = {{ labels = {{ env = \"prod\" }} }}\naction = \"audit\"\nrequesters = [\"dev\"]\nsteps = [{{ owners = true }}]\n"
        );
        let errors = refused(&workflows, RESOURCES);
        has(
            &errors,
            "workflows.toml:25:",
            "resource 'billing-db' declares no owners",
        );
        has(&errors, "workflows.toml:25:", "resource 'wiki' declares no owners");
        assert!(!errors.iter().any(|e| e.contains("orders-db")), "{errors:?}");
    }

    #[test]
    fn the_exact_name_beats_a_glob() {
        let workflows = format!(
            "{WORKFLOWS}\n[[workflow]]\nresource = \"billing-db\"\naction = \"read\"\nrequesters = [\"dev\"]\nauto_approve = true\n"
        );
        let p = load(&workflows, RESOURCES).unwrap();
        let alice = user("alice", &["dev"]);
        assert_eq!(
            p.explain(&alice, "billing-db", "read", None, weekday_morning()).verdict,
            Verdict::Automatic
        );
        assert_eq!(
            p.rules().matched("billing-db", "read").unwrap().specificity,
            Specificity::Exact
        );
    }

    #[test]
    fn equally_specific_selectors_on_one_resource_are_refused_naming_both() {
        let workflows = format!(
            "{WORKFLOWS}\n[[workflow]]\nresources = {{ labels = {{ team = \"payments\" }} }}\naction = \"deploy\"\nrequesters = [\"dev\"]\nauto_approve = true\n\n[[workflow]]\nresources = {{ kind = \"postgres\", labels = {{ env = \"prod\" }} }}\naction = \"deploy\"\nrequesters = [\"dev\"]\nauto_approve = true\n"
        );
        let errors = refused(&workflows, RESOURCES);
        has(&errors, "workflows.toml:31:", "workflows.toml:25");
        has(&errors, "workflows.toml:31:", "'orders-db'");
        has(&errors, "workflows.toml:31:", r#"labels = { team = "payments" }"#);
        has(&errors, "workflows.toml:31:", "equal specificity (labels/kind)");
        // Two globs are equal too.
        let workflows = format!(
            "{WORKFLOWS}\n[[workflow]]\nresources = {{ names = [\"orders-db\"] }}\naction = \"read\"\nrequesters = [\"dev\"]\nauto_approve = true\n"
        );
        has(
            &refused(&workflows, RESOURCES),
            "workflows.toml:25:",
            "workflows.toml:7",
        );
    }

    #[test]
    fn bad_selectors_are_refused_with_file_and_line() {
        let one = |selector: &str| {
            format!("[[workflow]]\nresources = {selector}\naction = \"read\"\nrequesters = [\"dev\"]\nauto_approve = true\n")
        };
        let errors = refused(&one(r#"{ names = ["payments-*"] }"#), RESOURCES);
        has(
            &errors,
            "workflows.toml:1:",
            "'payments-*' matches no declared resource",
        );
        let errors = refused(&one(r#"{ labels = { region = "eu" } }"#), RESOURCES);
        has(
            &errors,
            "workflows.toml:1:",
            "no declared resource has the label key 'region'",
        );
        let errors = refused(&one(r#"{ kind = "ssh" }"#), RESOURCES);
        has(&errors, "workflows.toml:1:", "no declared resource has kind 'ssh'");
        let errors = refused(&one(r#"{ kind = "http", labels = { team = "payments" } }"#), RESOURCES);
        has(&errors, "workflows.toml:1:", "selects no declared resource");
        let errors = refused(&one("{}"), RESOURCES);
        has(&errors, "workflows.toml:1:", "give names, kind or labels");
        let errors = refused(&one(r#"{ names = ["orders-\u0000*"] }"#), RESOURCES);
        has(
            &errors,
            "workflows.toml:1:",
            "control, space or invisible character (U+0000)",
        );
        // A selector without a catalog.
        let errors = refused(&one(r#"{ names = ["*"] }"#), "");
        has(&errors, "workflows.toml:1:", "declare resources in resources.toml");
        // resource and resources together; action and actions together.
        let errors = refused(
            "[[workflow]]\nresource = \"wiki\"\nresources = { kind = \"http\" }\nactions = []\nrequesters = [\"dev\"]\nauto_approve = true\n",
            RESOURCES,
        );
        has(&errors, "workflows.toml:1:", "either resource or resources");
        has(&errors, "workflows.toml:1:", "actions is empty");
        // A collection is no resource.
        let errors = refused(
            "[[workflow]]\nresource = \"env:prod\"\naction = \"read\"\nrequesters = [\"dev\"]\nauto_approve = true\n",
            RESOURCES,
        );
        has(&errors, "workflows.toml:1:", "'env:prod' is a collection");
        // A name that only looks like a declared one.
        for lookalike in ["Orders-db", "ｏrders-db", "\u{043E}rders-db"] {
            let errors = refused(
                &format!("[[workflow]]\nresource = \"{lookalike}\"\naction = \"read\"\nrequesters = [\"dev\"]\nauto_approve = true\n"),
                RESOURCES,
            );
            has(&errors, "workflows.toml:1:", "looks like 'orders-db'");
        }
    }

    #[test]
    fn bad_catalogs_are_refused_with_file_and_line() {
        let ok = "[[workflow]]\nresource = \"wiki\"\naction = \"read\"\nrequesters = [\"dev\"]\nauto_approve = true\n";
        let with = |extra: &str| format!("{RESOURCES}\n{extra}");
        // RESOURCES has 27 lines, so an appended resource starts on line 29.
        let errors = refused(ok, &with("[[resource]]\nname = \"wiki\"\nkind = \"http\"\n"));
        has(
            &errors,
            "resources.toml:29:",
            "'wiki' is already declared at resources.toml:24",
        );
        let errors = refused(ok, &with("[[resource]]\nname = \"env:prod\"\nkind = \"http\"\n"));
        has(&errors, "resources.toml:29:", "already declared at resources.toml:1");
        let errors = refused(
            ok,
            &with("[[resource]]\nname = \"api\"\nkind = \"http\"\nparent = \"env:qa\"\n"),
        );
        has(&errors, "resources.toml:29:", "unknown parent 'env:qa'");
        let errors = refused(
            ok,
            &with("[[collection]]\nname = \"a\"\nparent = \"b\"\n\n[[collection]]\nname = \"b\"\nparent = \"a\"\n"),
        );
        has(&errors, "resources.toml:29:", "parents form a cycle: a -> b -> a");
        assert_eq!(errors.iter().filter(|e| e.contains("cycle")).count(), 1, "{errors:?}");
        let errors = refused(
            ok,
            &with("[[resource]]\nname = \"self\"\nkind = \"http\"\nparent = \"self\"\n"),
        );
        has(&errors, "resources.toml:29:", "cycle: self -> self");
        for name in ["api\\u0007", "api\\u0000", "api\\u200b", "api\\u202e", "my api", ""] {
            let errors = refused(
                ok,
                &with(&format!("[[resource]]\nname = \"{name}\"\nkind = \"http\"\n")),
            );
            has(&errors, "resources.toml:29:", "resource name");
        }
        for name in ["WIKI", "ｗｉｋｉ", "w\\u0456ki"] {
            let errors = refused(
                ok,
                &with(&format!("[[resource]]\nname = \"{name}\"\nkind = \"http\"\n")),
            );
            has(
                &errors,
                "resources.toml:29:",
                "looks like 'wiki' declared at resources.toml:24",
            );
        }
        let errors = refused(
            ok,
            &with("[[resource]]\nname = \"api\"\nkind = \"http\"\nlabels = { \"t\\u200beam\" = \"x\", env = \"pr\\u0000od\" }\n"),
        );
        has(&errors, "resources.toml:29:", "label key");
        has(&errors, "resources.toml:29:", "label env: value");
        let errors = refused(ok, &with("[[resource]]\nname = \"api\"\nkind = \"Web App\"\n"));
        has(&errors, "resources.toml:29:", "is not a word");
        let errors = refused(
            ok,
            &with("[[resource]]\nname = \"api\"\nkind = \"http\"\nowners = [\"nobody\"]\n"),
        );
        has(&errors, "resources.toml:29:", "owners: unknown group 'nobody'");
        let errors = refused(
            ok,
            &with("[[resource]]\nname = \"api\"\nkind = \"http\"\nowner = [\"payments\"]\n"),
        );
        has(&errors, "resources.toml:29:", "unknown key 'owner'");
        let errors = refused(ok, &with("[[resource]]\nname = \"api\"\n"));
        has(&errors, "resources.toml:29:", "kind");
    }

    #[test]
    fn ten_thousand_resources_and_five_hundred_selectors_expand_to_one_lookup_each() {
        use std::fmt::Write as _;
        let mut resources = String::new();
        for i in 0..10_000 {
            let env = if i % 2 == 0 { "prod" } else { "staging" };
            writeln!(
                resources,
                "[[resource]]\nname = \"db-{i:05}\"\nkind = \"postgres\"\nlabels = {{ team = \"t{}\", env = \"{env}\" }}\nowners = [\"payments\"]\n",
                i % 500
            )
            .unwrap();
        }
        let mut workflows = String::new();
        for k in 0..499 {
            writeln!(
                workflows,
                "[[workflow]]\nresources = {{ labels = {{ team = \"t{k}\" }} }}\nactions = [\"read\", \"write\"]\nrequesters = [\"dev\"]\nauto_approve = true\n"
            )
            .unwrap();
        }
        workflows.push_str(
            "[[workflow]]\nresources = { names = [\"db-0*\"], labels = { env = \"prod\" } }\naction = \"write\"\nrequesters = [\"dev\"]\nsteps = [{ owners = true }]\n",
        );
        let started = std::time::Instant::now();
        let rules = jitgate_policy::Rules::parse_with_catalog(
            DIRECTORY,
            &workflows,
            &[("resources.toml".to_string(), resources)],
        )
        .unwrap_or_else(|e| panic!("{:?}", &e[..e.len().min(3)]));
        eprintln!(
            "10,000 resources x 500 workflows parsed and expanded in {:?}",
            started.elapsed()
        );
        // t499 is selected by nobody: its resources have no workflow.
        assert!(rules.workflow("db-00499", "read").is_err());
        let w = rules.workflow("db-05000", "read").unwrap();
        assert!(w.auto_approve && w.resource == "db-05000");
        // The glob beats the labels on the prod databases it names; its owners step resolved.
        let w = rules.workflow("db-05000", "write").unwrap();
        assert_eq!(w.steps, vec![step("payments", 1)]);
        assert_eq!(
            rules.matched("db-05000", "write").unwrap().specificity,
            Specificity::Glob
        );
        assert_eq!(
            rules.matched("db-05001", "write").unwrap().specificity,
            Specificity::Labels
        );
        assert_eq!(rules.matched("db-10000", "write"), None);
    }

    #[test]
    fn the_catalog_is_loaded_from_the_directory_with_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("directory.toml"), DIRECTORY).unwrap();
        std::fs::write(dir.path().join("workflows.toml"), WORKFLOWS).unwrap();
        let (first, rest) = RESOURCES.split_at(RESOURCES.find("[[resource]]\nname = \"metrics-db\"").unwrap());
        std::fs::write(dir.path().join("resources.toml"), first).unwrap();
        std::fs::create_dir(dir.path().join("resources")).unwrap();
        std::fs::write(dir.path().join("resources/more.toml"), rest).unwrap();
        let p = Policy::load(dir.path()).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            p.rules().catalog().resource("wiki").unwrap().file,
            "resources/more.toml"
        );
        assert_eq!(
            p.explain(&user("alice", &["dev"]), "metrics-db", "read", None, weekday_morning())
                .verdict,
            Verdict::Automatic
        );
        // A duplicate across the two files names both, with the folder's file by its path.
        std::fs::write(
            dir.path().join("resources/zz.toml"),
            "[[resource]]\nname = \"orders-db\"\nkind = \"postgres\"\n",
        )
        .unwrap();
        let errors: Vec<String> = Policy::load(dir.path())
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        let zz = dir.path().join("resources/zz.toml").display().to_string();
        has(
            &errors,
            &format!("{zz}:1:"),
            "'orders-db' is already declared at resources.toml:5",
        );
    }
}

#[test]
fn the_quickstart_declares_its_resources_in_a_catalog() {
    let p = quickstart();
    let catalog = p.rules().catalog();
    let names: Vec<&str> = catalog.resources().map(|r| r.name.as_str()).collect();
    // `files` (issue #24): an agent's MCP server, whose tools are its declared actions.
    assert_eq!(names, vec!["bastion", "files", "prod-api", "prod-db", "staging-db"]);
    let prod_db = catalog.resource("prod-db").unwrap();
    assert_eq!(
        (prod_db.kind.as_str(), prod_db.labels["env"].as_str()),
        ("postgres", "prod")
    );
    assert_eq!(catalog.ancestors("prod-db"), vec!["env:prod"]);
    // Every workflow written before the catalog still names its resource exactly; one
    // selects by kind and label, and reaches the staging database and nothing else.
    let selected: Vec<(String, String)> = p
        .workflows()
        .filter(|w| {
            p.rules().matched(&w.resource, &w.action).unwrap().specificity != jitgate_policy::Specificity::Exact
        })
        .map(|w| (w.resource.clone(), w.action.clone()))
        .collect();
    assert_eq!(selected, vec![("staging-db".to_string(), "migrate".to_string())]);
    let matched = p.rules().matched("staging-db", "migrate").unwrap();
    assert_eq!(matched.specificity, jitgate_policy::Specificity::Labels);
    assert!(matched.selector.contains(r#"env = "staging""#), "{}", matched.selector);
    for (resource, action) in [("staging-db", "read"), ("prod-db", "read"), ("prod-db", "write")] {
        assert_eq!(
            p.rules().matched(resource, action).unwrap().specificity,
            jitgate_policy::Specificity::Exact,
            "{resource} {action}"
        );
    }
}

/// An unknown resource is refused with where to look, never with every name there is (a
/// catalog may hold thousands, most of which the caller may not request), and with the
/// declared look-alike when it was a slip.
#[test]
fn an_unknown_resource_says_where_to_look_and_names_no_other_resource() {
    let p = quickstart();
    let alice = user("alice", &["dev"]);
    let now = weekday_morning();
    let refused = p
        .admit(&alice, &ask("payroll-db", "read", "x"), now)
        .unwrap_err()
        .to_string();
    assert!(refused.contains("unknown resource 'payroll-db'"), "{refused}");
    assert!(refused.contains("`jitgate resources`"), "{refused}");
    for other in ["prod-db", "staging-db", "prod-api", "bastion"] {
        assert!(!refused.contains(other), "{refused}");
    }
    let slip = p
        .admit(&alice, &ask("PROD-DB", "read", "x"), now)
        .unwrap_err()
        .to_string();
    assert!(slip.contains("did you mean 'prod-db'?"), "{slip}");
}

/// A ticket example is one the pattern finds inside a sentence, as people write reasons (or
/// at its start, for an anchored pattern, said so); a pattern no common shape fits may carry
/// the policy's own `ticket_hint`, one line of visible text.
#[test]
fn ticket_examples_are_judged_inside_a_sentence_and_a_hint_may_say_more() {
    let directory = "[[principal]]\nname = \"alice\"\ngroups = [\"dev\"]\n";
    let workflow = |pattern: &str, extra: &str| {
        format!(
            "[[workflow]]\nresource = \"db\"\naction = \"write\"\nrequesters = [\"dev\"]\nauto_approve = true\nticket_pattern = {pattern:?}\n{extra}"
        )
    };
    let shape = |pattern: &str| {
        let p = Policy::from_texts(directory, &workflow(pattern, ""), None, &[]).unwrap();
        let w = p.rules().workflow("db", "write").unwrap();
        (w.ticket_shape(), w.ticket_example())
    };
    use jitgate_policy::TicketPlace::{Anywhere, Start};
    assert_eq!(
        shape(r"\b[A-Z][A-Z0-9]+-[0-9]+\b"),
        (Some(("OPS-123", Anywhere)), Some("OPS-123"))
    );
    assert_eq!(shape(r"^[A-Z]+-[0-9]+"), (Some(("OPS-123", Start)), Some("OPS-123")));
    // Matched alone but never inside a sentence: no example to mislead with.
    assert_eq!(shape(r"^OPS-[0-9]+$"), (None, None));
    assert_eq!(shape("INC[0-9]+"), (None, None));

    let hinted = workflow(
        "INC[0-9]+",
        "ticket_hint = \"Mention the incident, such as INC0012345.\"\n",
    );
    let p = Policy::from_texts(directory, &hinted, None, &[]).unwrap();
    assert_eq!(
        p.rules().workflow("db", "write").unwrap().ticket_hint.as_deref(),
        Some("Mention the incident, such as INC0012345.")
    );
    let long = "x".repeat(jitgate_policy::MAX_TICKET_HINT + 1);
    for (bad, says) in [
        ("line one\\nline two", "line break"),
        ("see \\u202Egnp", "U+202E"),
        ("zero\\u200Bwidth", "U+200B"),
        ("a\\u0000b", "NUL"),
        ("   ", "1 to 200 characters"),
        (long.as_str(), "1 to 200 characters"),
    ] {
        let text = workflow("INC[0-9]+", &format!("ticket_hint = \"{bad}\"\n"));
        let errors = Policy::from_texts(directory, &text, None, &[]).unwrap_err();
        assert!(
            errors
                .iter()
                .any(|e| e.message.contains("ticket_hint") && e.message.contains(says)),
            "{bad:?}: {errors:?}"
        );
    }
    let without_pattern = "[[workflow]]\nresource = \"db\"\naction = \"write\"\nrequesters = [\"dev\"]\nauto_approve = true\nticket_hint = \"INC please\"\n";
    let errors = Policy::from_texts(directory, without_pattern, None, &[]).unwrap_err();
    assert!(
        errors.iter().any(|e| e.message.contains("ticket_pattern")),
        "{errors:?}"
    );
}
