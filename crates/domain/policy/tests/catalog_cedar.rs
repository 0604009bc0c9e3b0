//! Cedar over the resource catalog (issue #21): resources are entities with their kind, their
//! labels as tags and their ancestors as parents, so authored policies can select by them; the
//! schema refuses what does not exist; and the generated 10,000-resource directory loads.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jitgate_core::{Ask, DomainError, Identity, Timestamp};
use jitgate_policy::{Policy, PolicyError, Verdict};

#[allow(dead_code)]
#[path = "../examples/generate_catalog.rs"]
mod generate_catalog;

const DIRECTORY: &str = r#"
[[principal]]
name = "alice"
groups = ["dev"]
[[principal]]
name = "bob"
groups = ["sre"]
"#;

/// A chain: card-vault -> payments-api (a resource) -> payments:prod -> pci -> env:prod.
const RESOURCES: &str = r#"
[[collection]]
name = "env:prod"

[[collection]]
name = "pci"
parent = "env:prod"

[[collection]]
name = "payments:prod"
parent = "pci"

[[resource]]
name = "payments-api"
kind = "http"
labels = { env = "prod", team = "payments" }
parent = "payments:prod"

[[resource]]
name = "card-vault"
kind = "postgres"
labels = { env = "prod", team = "payments" }
parent = "payments-api"

[[resource]]
name = "orders-db"
kind = "postgres"
labels = { env = "prod", team = "orders" }
parent = "env:prod"

[[resource]]
name = "staging-db"
kind = "postgres"
labels = { env = "staging", team = "orders" }
"#;

const WORKFLOWS: &str = r#"
[[workflow]]
resources = { kind = "postgres" }
actions = ["read", "write"]
requesters = ["dev", "sre"]
auto_approve = true

[[workflow]]
resource = "payments-api"
action = "access"
requesters = ["dev", "sre"]
auto_approve = true

# A bare name the catalog does not declare, as before the catalog.
[[workflow]]
resource = "legacy-box"
action = "login"
requesters = ["dev"]
auto_approve = true
"#;

fn load(cedar: &str) -> Result<Policy, Vec<PolicyError>> {
    Policy::from_texts_with_catalog(
        DIRECTORY,
        WORKFLOWS,
        None,
        &[("rules.cedar".to_string(), cedar.to_string())],
        &[("resources.toml".to_string(), RESOURCES.to_string())],
    )
}

fn at(rfc3339: &str) -> Timestamp {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .with_timezone(&chrono::Utc)
}

/// A Wednesday and a Saturday, 10:00 UTC.
fn wednesday() -> Timestamp {
    at("2026-11-25T10:00:00Z")
}

fn saturday() -> Timestamp {
    at("2026-11-28T10:00:00Z")
}

fn ask<'a>(resource: &'a str, action: &'a str) -> Ask<'a> {
    Ask {
        resource,
        action,
        duration: None,
        reason: "why",
        payload: None,
        break_glass: false,
    }
}

fn refusal(p: &Policy, who: &Identity, resource: &str, action: &str, now: Timestamp) -> String {
    match p.admit(who, &ask(resource, action), now) {
        Err(DomainError::Forbidden(m)) => m,
        other => panic!("expected {resource} {action} to be refused, got {other:?}"),
    }
}

fn automatic(p: &Policy, who: &Identity, resource: &str, action: &str, now: Timestamp) {
    let admission = p
        .admit(who, &ask(resource, action), now)
        .unwrap_or_else(|e| panic!("{resource} {action}: {e}"));
    assert!(admission.requirement.steps.is_empty(), "{resource} {action}");
}

#[test]
fn a_forbid_by_label_tag_denies_on_a_weekend() {
    let cedar = r#"
@id("prod-freeze-at-weekends")
forbid(principal, action == Action::"request", resource)
when { resource.hasTag("env") && resource.getTag("env") == "prod" && context.weekday >= 6 };
"#;
    let p = load(cedar).unwrap_or_else(|e| panic!("{e:?}"));
    let alice = Identity::user("alice", &["dev"]);
    let m = refusal(&p, &alice, "orders-db", "read", saturday());
    assert!(m.contains("forbidden by policy prod-freeze-at-weekends"), "{m}");
    // The same request on a weekday, and a staging resource on the weekend, are untouched.
    automatic(&p, &alice, "orders-db", "read", wednesday());
    automatic(&p, &alice, "staging-db", "write", saturday());
    // A bare name has no labels: the tag test is false, nothing fails.
    automatic(&p, &alice, "legacy-box", "login", saturday());
    // Explain (and so policy test and diff) sees the same.
    assert!(matches!(
        p.explain(&alice, "orders-db", "write", None, saturday()).verdict,
        Verdict::Refused(_)
    ));
}

#[test]
fn resource_in_a_collection_matches_through_a_chain_of_parents() {
    let cedar = r#"
@id("pci-is-sre-only")
forbid(principal, action == Action::"request", resource in Collection::"pci")
unless { principal in Group::"sre" };
"#;
    let p = load(cedar).unwrap_or_else(|e| panic!("{e:?}"));
    let alice = Identity::user("alice", &["dev"]);
    let bob = Identity::user("bob", &["sre"]);
    // card-vault's parent is a resource, whose parent collection is under pci.
    let m = refusal(&p, &alice, "card-vault", "read", wednesday());
    assert!(m.contains("pci-is-sre-only"), "{m}");
    let m = refusal(&p, &alice, "payments-api", "access", wednesday());
    assert!(m.contains("pci-is-sre-only"), "{m}");
    automatic(&p, &bob, "card-vault", "read", wednesday());
    // In env:prod but not in pci; and a resource with no parent at all.
    automatic(&p, &alice, "orders-db", "read", wednesday());
    automatic(&p, &alice, "staging-db", "read", wednesday());

    // `in` a resource: everything below payments-api.
    let below = r#"
@id("below-the-api")
forbid(principal, action, resource in Resource::"payments-api") when { context.access == "write" };
"#;
    let p = load(below).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(refusal(&p, &alice, "card-vault", "write", wednesday()).contains("below-the-api"));
    automatic(&p, &alice, "card-vault", "read", wednesday());
    automatic(&p, &alice, "orders-db", "write", wednesday());
}

#[test]
fn the_kind_is_an_attribute_and_a_bare_name_has_none() {
    let cedar = r#"
@id("postgres-writes-by-sre")
forbid(principal, action == Action::"request", resource)
when { resource.kind == "postgres" && context.access == "write" && !(principal in Group::"sre") };
@id("bare-names-are-marked")
forbid(principal, action == Action::"request", resource)
when { resource.kind == "" && context.hour >= 22 };
"#;
    let p = load(cedar).unwrap_or_else(|e| panic!("{e:?}"));
    let alice = Identity::user("alice", &["dev"]);
    assert!(refusal(&p, &alice, "orders-db", "write", wednesday()).contains("postgres-writes-by-sre"));
    automatic(&p, &alice, "orders-db", "read", wednesday());
    automatic(&p, &Identity::user("bob", &["sre"]), "orders-db", "write", wednesday());
    // A resource the catalog does not declare has kind "".
    automatic(&p, &alice, "legacy-box", "login", wednesday());
    let late = at("2026-11-25T22:30:00Z");
    assert!(refusal(&p, &alice, "legacy-box", "login", late).contains("bare-names-are-marked"));
    automatic(&p, &alice, "orders-db", "read", late);
}

/// Cedar skips a policy that fails to evaluate; a `forbid` must not be lost that way.
#[test]
fn a_forbid_that_fails_to_evaluate_refuses() {
    let cedar = r#"
@id("overflowing-forbid")
forbid(principal, action == Action::"request", resource)
when { resource.hasTag("env") && context.duration_seconds * 9223372036854775807 > 0 };
"#;
    let p = load(cedar).unwrap_or_else(|e| panic!("{e:?}"));
    let alice = Identity::user("alice", &["dev"]);
    let m = refusal(&p, &alice, "orders-db", "read", wednesday());
    assert!(m.contains("forbidden by policy overflowing-forbid"), "{m}");
    // Where it does not get that far (no labels), nothing fails and nothing is refused.
    automatic(&p, &alice, "legacy-box", "login", wednesday());
}

/// Policy check refuses what the schema does not have, at the policy's file and line.
#[test]
fn a_wrong_attribute_or_type_or_unknown_collection_is_refused_with_file_and_line() {
    let refused = |cedar: &str| -> Vec<String> {
        load(cedar)
            .expect_err("the policy must be refused")
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    let head = "\n\nforbid(principal, action == Action::\"request\", resource)\n";
    // Labels are tags, not attributes.
    let errors = refused(&format!("{head}when {{ resource.env == \"prod\" }};\n"));
    assert!(
        errors.iter().any(|e| e.starts_with("rules.cedar:4:")
            && e.contains("attribute `env`")
            && e.contains("labels are tags: resource.hasTag(\"env\") && resource.getTag(\"env\")")),
        "{errors:?}"
    );
    // A tag is a string.
    let errors = refused(&format!(
        "{head}when {{ resource.hasTag(\"tier\") && resource.getTag(\"tier\") > 2 }};\n"
    ));
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("rules.cedar:4:") && e.contains("expected Long but saw String")),
        "{errors:?}"
    );
    // A tag read without asking whether it is there.
    let errors = refused(&format!("{head}when {{ resource.getTag(\"env\") == \"prod\" }};\n"));
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("rules.cedar:4:") && e.contains("access to tag `\"env\"`")),
        "{errors:?}"
    );
    // The kind is a string.
    let errors = refused(&format!("{head}when {{ resource.kind == 1 }};\n"));
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("rules.cedar:4:") && e.contains("Long and String")),
        "{errors:?}"
    );
    // A collection or resource in the scope must be declared; look-alikes and invisible
    // characters are not the declared name.
    for name in ["pcii", "PCI", "pci\u{200b}", "p\u{0441}i", "pci\u{0}"] {
        let cedar = format!(
            "forbid(principal, action, resource in Collection::\"{}\");\n",
            name.escape_default()
        );
        let errors = refused(&cedar);
        // Shown escaped, so an invisible or control character is visible in the message.
        let shown = format!("rules.cedar:1: unknown collection '{}'", name.escape_debug());
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with(&shown) && e.contains("[[collection]]")),
            "{name:?}: {errors:?}"
        );
        assert!(
            errors.iter().all(|e| !e.contains('\u{0}') && !e.contains('\u{200b}')),
            "{errors:?}"
        );
    }
    let errors = refused("forbid(principal, action, resource in Resource::\"payments-apj\");\n");
    assert!(
        errors
            .iter()
            .any(|e| e == "rules.cedar:1: unknown resource 'payments-apj'"),
        "{errors:?}"
    );
    // A collection is no resource.
    let errors = refused("forbid(principal, action, resource == Resource::\"pci\");\n");
    assert!(
        errors.iter().any(|e| e == "rules.cedar:1: unknown resource 'pci'"),
        "{errors:?}"
    );
}

fn options(out: &std::path::Path, resources: usize, workflows: usize, variant: bool) -> generate_catalog::Options {
    generate_catalog::Options {
        out: out.to_path_buf(),
        resources,
        workflows,
        seed: 1,
        variant,
    }
}

/// What `jitgate policy check` runs (`Policy::load`) accepts the generated 10,000 resources
/// and 500 workflows, and its variant.
#[test]
fn the_generated_ten_thousand_resource_directory_passes_policy_check() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    assert_eq!(
        generate_catalog::generate(&options(&base, 10_000, 500, false)).unwrap(),
        500
    );
    let started = std::time::Instant::now();
    let p = Policy::load(&base).unwrap_or_else(|e| panic!("{:?}", &e[..e.len().min(5)]));
    eprintln!("generated 10,000 / 500 loaded in {:?} (debug build)", started.elapsed());
    assert_eq!(p.rules().catalog().resources().count(), 10_000);
    assert!(p.workflows().count() > 5_000, "{}", p.workflows().count());
    // Every pair's workflow can be asked about; one in the middle is judged.
    let middle = p.rules().catalog().resources().nth(5_000).unwrap().name.clone();
    let alice = Identity::user("alice", &["dev", "team-payments"]);
    let _ = p.explain(&alice, &middle, "read", None, wednesday());

    let variant = dir.path().join("variant");
    generate_catalog::generate(&options(&variant, 10_000, 500, true)).unwrap();
    let v = Policy::load(&variant).unwrap_or_else(|e| panic!("{:?}", &e[..e.len().min(5)]));
    assert_eq!(v.rules().catalog().resources().count(), 10_100);
    assert_eq!(
        std::fs::read_to_string(base.join("workflows.toml")).unwrap(),
        std::fs::read_to_string(variant.join("workflows.toml")).unwrap(),
        "the variant keeps the workflows"
    );
}

#[test]
fn the_generator_is_deterministic_for_a_seed() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    generate_catalog::generate(&options(&a, 400, 40, false)).unwrap();
    generate_catalog::generate(&options(&b, 400, 40, false)).unwrap();
    for file in [
        "directory.toml",
        "workflows.toml",
        "resources.toml",
        "resources/postgres.toml",
    ] {
        assert_eq!(
            std::fs::read(a.join(file)).unwrap(),
            std::fs::read(b.join(file)).unwrap(),
            "{file}"
        );
    }
    Policy::load(&a).unwrap_or_else(|e| panic!("{e:?}"));
    let c = dir.path().join("c");
    generate_catalog::generate(&generate_catalog::Options {
        seed: 2,
        ..options(&c, 400, 40, false)
    })
    .unwrap();
    assert_ne!(
        std::fs::read(a.join("workflows.toml")).unwrap(),
        std::fs::read(c.join("workflows.toml")).unwrap()
    );
}
