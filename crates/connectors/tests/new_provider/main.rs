//! The seam for connectors holds: a new provider kind is one new file (`noop.rs`, next to this one)
//! and one registration line, and the service's outbox worker carries a grant's provisioning
//! and deprovisioning to it without knowing it exists.

mod noop;

use jitgate_connectors::{NotifyConfig, ProviderConfig, Registry};
use jitgate_core::authz::op;
use jitgate_service::auth::{caller_for, config::AuthConfig, Authenticator};
use jitgate_service::inputs::NewRequest;
use jitgate_service::App;
use std::sync::Arc;
use std::time::{Duration, Instant};

const DIRECTORY: &str = "[[principal]]\nname = \"alice\"\ngroups = [\"dev\"]\n";
const WORKFLOWS: &str = "[[workflow]]\nresource = \"app\"\naction = \"deploy\"\nrequesters = [\"dev\"]\n\
                         auto_approve = true\nproviders = [\"recorder\"]\n";
const CONFIG: &str = "[[providers]]\nname = \"recorder\"\nkind = \"noop\"\ntimeout = \"2s\"\n";

/// Wait until the noop provider was told `operation` for `grant`.
async fn delivered(operation: &str, grant: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let wanted = ("recorder".to_string(), operation.to_string(), grant.to_string());
    while !noop::DELIVERED.lock().contains(&wanted) {
        assert!(
            Instant::now() < deadline,
            "no {operation} of {grant} reached the provider"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_provider_kind_gets_provisioning_and_deprovisioning_through_the_outbox() {
    // The one registration line.
    let registry = Registry::standard().provider("noop", noop::build);

    #[derive(serde::Deserialize)]
    struct File {
        providers: Vec<ProviderConfig>,
    }
    let config: File = toml::from_str(CONFIG).unwrap();
    let providers = registry.providers(&config.providers).unwrap();
    let policy = jitgate_policy::Policy::from_texts(DIRECTORY, WORKFLOWS, None, &[]).unwrap();
    providers.check_policy(&policy).unwrap();
    let alice = policy.rules().principal("alice").unwrap().identity.clone();
    let listen = "127.0.0.1:0".parse().unwrap();
    let notifier = registry.notifier(&NotifyConfig::default(), listen).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store = jitgate_store::open(&format!("sqlite://{}", dir.path().join("jitgate.db").display()))
        .await
        .unwrap();
    // No OpenID issuer is configured, so nothing is ever fetched.
    let fetch = jitgate_connectors::fetch::HttpFetch::with_timeout(std::time::Duration::from_secs(1)).unwrap();
    let auth = Authenticator::new(&AuthConfig::default(), Arc::new(fetch))
        .await
        .unwrap();
    let app = Arc::new(App::new(store, policy, auth, providers, notifier).await.unwrap());
    let outbox = tokio::spawn(jitgate_service::provision::run(app.clone()));

    let request = app
        .file(
            &alice,
            &NewRequest {
                resource: "app".into(),
                action: "deploy".into(),
                duration: None,
                reason: "ship the fix".into(),
                payload: None,
                break_glass: false,
                items: None,
            },
        )
        .await
        .unwrap();
    let grant = request.grant.expect("auto-approved: a grant").id;
    delivered("provision", &grant).await;

    let caller = caller_for::<op::FinishGrant>(alice).unwrap();
    app.done(&caller, &grant, Some("shipped".into())).await.unwrap();
    delivered("deprovision", &grant).await;

    // Both were acknowledged: the service records the provider's status as deprovisioned.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let statuses = app.provider_statuses(std::slice::from_ref(&grant)).await.unwrap();
        let status: Vec<(&str, &str)> = statuses[0].iter().map(|s| (s.provider.as_str(), s.status)).collect();
        if status == [("recorder", "deprovisioned")] {
            break;
        }
        assert!(Instant::now() < deadline, "{status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let told: Vec<(String, String, String)> = noop::DELIVERED
        .lock()
        .iter()
        .filter(|(_, _, g)| g == &grant)
        .cloned()
        .collect();
    assert_eq!(
        told,
        [
            ("recorder".to_string(), "provision".to_string(), grant.clone()),
            ("recorder".to_string(), "deprovision".to_string(), grant.clone()),
        ],
        "each operation once, in order"
    );
    outbox.abort();
}

#[test]
fn unknown_kinds_are_refused_with_every_registered_kind_named() {
    let config: Vec<ProviderConfig> = vec![toml::from_str("name = \"x\"\nkind = \"ldap\"\n").unwrap()];
    let Err(error) = Registry::standard().provider("noop", noop::build).providers(&config) else {
        panic!("an unknown kind was accepted");
    };
    assert_eq!(
        error,
        "providers[0].kind: 'ldap' is not a provider kind; use webhook, exec, postgres or noop"
    );
}
