//! What policy evaluation adds to a request decision: `Policy::admit` on the quickstart, plus
//! a Cedar condition on CI claims. Run: cargo bench -p jitgate-policy --bench admit

// A benchmark whose set-up fails should stop loudly.
#![allow(clippy::panic)]

use criterion::{criterion_group, criterion_main, Criterion};
use jitgate_core::{Ask, CiClaims, Identity, PrincipalKind};
use jitgate_policy::Policy;
use std::hint::black_box;
use std::path::Path;

fn quickstart_with_ci_rule() -> Policy {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../examples/quickstart");
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    let ci_rule = r#"
permit(principal in Group::"ci", action == Action::"auto_approve", resource == Resource::"prod-api")
when { context.access == "deploy" && context has ci && context.ci.ref == "refs/heads/main" };
"#;
    match Policy::from_texts_with_catalog(
        &read("directory.toml"),
        &read("workflows.toml"),
        None,
        &[("ci.cedar".into(), ci_rule.into())],
        &[("resources.toml".into(), read("resources.toml"))],
    ) {
        Ok(p) => p,
        Err(e) => panic!("benchmark policy is invalid: {e:?}"),
    }
}

fn bench_admit(c: &mut Criterion) {
    let policy = quickstart_with_ci_rule();
    let now = chrono::Utc::now();
    let alice = Identity::user("alice", &["dev"]);
    let job = Identity {
        principal: "ci:example/app".into(),
        groups: vec!["ci".into()],
        kind: PrincipalKind::User,
        on_behalf_of: None,
        ci: Some(CiClaims {
            repository: "example/app".into(),
            git_ref: "refs/heads/main".into(),
            ..Default::default()
        }),
    };
    let read = Ask {
        resource: "prod-db",
        action: "read",
        duration: None,
        reason: "INC-1",
        payload: None,
        break_glass: false,
    };
    let deploy = Ask {
        resource: "prod-api",
        action: "deploy",
        duration: None,
        reason: "release",
        payload: Some("sha256:1"),
        break_glass: false,
    };
    c.bench_function("admit/prod-db read (needs approval)", |b| {
        b.iter(|| policy.admit(black_box(&alice), black_box(&read), now))
    });
    c.bench_function("admit/prod-api deploy by CI (automatic)", |b| {
        b.iter(|| policy.admit(black_box(&job), black_box(&deploy), now))
    });
}

criterion_group!(benches, bench_admit);
criterion_main!(benches);
