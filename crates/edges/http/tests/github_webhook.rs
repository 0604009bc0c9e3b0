//! `POST /v1/github/webhook` at the HTTP edge, on the real router over a real SQLite store and
//! the quickstart policy: what the route itself decides (404 unconfigured, the 1 MiB body limit,
//! headers sent twice, no bearer token needed) and `[github]` made ready at start (the key file,
//! the required keys). What the service makes of a delivery is tested in the service's tests and
//! end to end.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use jitgate_server::github::{self, GithubConfig, MAX_WEBHOOK_BODY_BYTES};
use jitgate_service::auth::oidc::Fetch;
use jitgate_service::App;
use serde_json::Value;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use tower::ServiceExt;

/// GitHub's documented example ("Validating webhook deliveries").
const EXAMPLE_SECRET: &str = "It's a Secret to Everybody";
const EXAMPLE_BODY: &str = "Hello, World!";
const EXAMPLE_SIGNATURE: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

struct NoFetch;

#[async_trait::async_trait]
impl Fetch for NoFetch {
    async fn get(&self, url: &str) -> Result<String, String> {
        Err(format!("no network in tests: {url}"))
    }
}

struct Bed {
    app: Arc<App>,
    router: axum::Router,
    _dir: tempfile::TempDir,
}

async fn bed() -> Bed {
    let quickstart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../examples/quickstart");
    let policy = jitgate_policy::Policy::load(&quickstart).unwrap_or_else(|e| panic!("{e:?}"));
    let dir = tempfile::tempdir().unwrap();
    let store = jitgate_store::open(&format!("sqlite://{}", dir.path().join("jitgate.db").display()))
        .await
        .unwrap();
    let auth: jitgate_service::auth::config::AuthConfig = toml::from_str("").unwrap();
    let authenticator = jitgate_service::auth::Authenticator::new(&auth, Arc::new(NoFetch))
        .await
        .unwrap();
    let notifier =
        jitgate_service::notify::Notifier::new(None, None, "127.0.0.1:0".parse().unwrap(), Vec::new()).unwrap();
    let app = Arc::new(
        App::new(
            store,
            policy,
            authenticator,
            jitgate_service::provision::Providers::new(Vec::new()),
            notifier,
        )
        .await
        .unwrap(),
    );
    let router = jitgate_server::routes::router(jitgate_server::state::Edge::new(app.clone(), None), None);
    Bed { app, router, _dir: dir }
}

/// An RSA key as GitHub gives an App's (PKCS#1 PEM), made once.
fn app_key_pem() -> &'static str {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| {
        use base64::Engine;
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
        let der = private.to_pkcs1_der().unwrap();
        let text = base64::engine::general_purpose::STANDARD.encode(der.as_bytes());
        let lines: Vec<&str> = text
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----\n",
            lines.join("\n")
        )
    })
}

fn secret_env(name: &str) -> Option<String> {
    (name == "GH_WEBHOOK_SECRET").then(|| EXAMPLE_SECRET.to_string())
}

/// `[github]` with a key file in `dir`, calling a GitHub that is not there (these tests never
/// reach it).
fn config(dir: &Path, extra: &str) -> GithubConfig {
    let key = dir.join("app.pem");
    std::fs::write(&key, app_key_pem()).unwrap();
    toml::from_str(&format!(
        "webhook_secret_env = \"GH_WEBHOOK_SECRET\"\napp_id = 4242\nprivate_key_file = {:?}\napi_url = \"http://127.0.0.1:9\"\n{extra}",
        key.display().to_string()
    ))
    .unwrap()
}

fn configure(bed: &Bed) {
    let (settings, client) = github::app(Some(&config(bed._dir.path(), "")), &secret_env)
        .unwrap()
        .unwrap();
    bed.app.configure_github(settings, Arc::new(client));
}

async fn post(router: &axum::Router, headers: &[(&str, &[u8])], body: Vec<u8>) -> (StatusCode, Value) {
    let mut request = Request::post("/v1/github/webhook").header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn signed_example() -> [(&'static str, &'static [u8]); 3] {
    [
        ("x-github-event", b"ping"),
        ("x-github-delivery", b"72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ("x-hub-signature-256", EXAMPLE_SIGNATURE.as_bytes()),
    ]
}

#[tokio::test]
async fn without_github_configured_the_webhook_is_404_even_when_signed() {
    let bed = bed().await;
    let (status, body) = post(&bed.router, &signed_example(), EXAMPLE_BODY.into()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "not_found", "{body}");
    assert!(bed.app.github().is_none());
}

#[tokio::test]
async fn a_delivery_over_one_mib_is_413_and_one_below_is_not_refused_for_its_size() {
    let bed = bed().await;
    configure(&bed);
    let over = vec![b' '; MAX_WEBHOOK_BODY_BYTES + 1];
    let (status, body) = post(&bed.router, &signed_example(), over).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("1048576 bytes"),
        "{body}"
    );
    // Over the API's 256 KiB but within GitHub's limit: read, and judged by its signature
    // (this one is not GitHub's), never refused for its size.
    let (status, body) = post(&bed.router, &signed_example(), vec![b' '; 512 * 1024]).await;
    assert_ne!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    // The rest of the API keeps its own limit.
    let response = bed
        .router
        .clone()
        .oneshot(
            Request::post("/v1/requests")
                .header("authorization", "Bearer demo-alice")
                .header("content-type", "application/json")
                .body(Body::from(vec![b' '; 512 * 1024]))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_header_sent_twice_is_refused_naming_it() {
    let bed = bed().await;
    configure(&bed);
    for twice in ["x-github-event", "x-github-delivery", "x-hub-signature-256"] {
        let mut headers = signed_example().to_vec();
        let again: &[u8] = if twice == "x-hub-signature-256" {
            b"sha256=0000000000000000000000000000000000000000000000000000000000000000"
        } else {
            b"issue_comment"
        };
        headers.push((twice, again));
        let (status, body) = post(&bed.router, &headers, EXAMPLE_BODY.into()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{twice}: {body}");
        let message = body["error"]["message"].as_str().unwrap().to_ascii_lowercase();
        assert!(message.contains(twice), "{twice}: {message}");
    }
}

#[tokio::test]
async fn the_webhook_needs_no_bearer_token_and_ignores_one() {
    let bed = bed().await;
    // A bearer token is neither required nor a way in: the answer is the same with a valid
    // admin token, a forged one, or none (here, unconfigured: 404 for all three).
    let mut answers = Vec::new();
    for bearer in [None, Some(&b"Bearer demo-admin"[..]), Some(&b"Bearer forged"[..])] {
        let mut headers = signed_example().to_vec();
        if let Some(bearer) = bearer {
            headers.push(("authorization", bearer));
        }
        answers.push(post(&bed.router, &headers, EXAMPLE_BODY.into()).await);
    }
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    assert_eq!(answers[0].0, StatusCode::NOT_FOUND);
    // Configured: an admin's bearer token does not stand in for GitHub's signature.
    configure(&bed);
    for bearer in [&b"Bearer demo-admin"[..], &b"Bearer forged"[..]] {
        let mut headers = signed_example().to_vec();
        headers[2] = (
            "x-hub-signature-256",
            b"sha256=0000000000000000000000000000000000000000000000000000000000000000",
        );
        headers.push(("authorization", bearer));
        let (status, body) = post(&bed.router, &headers, EXAMPLE_BODY.into()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    // ... and with GitHub's signature it is GitHub's delivery, whatever bearer comes along.
    let mut headers = signed_example().to_vec();
    headers.push(("authorization", &b"Bearer forged"[..]));
    let (status, body) = post(&bed.router, &headers, EXAMPLE_BODY.into()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[test]
fn github_is_made_ready_at_start_or_the_error_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        github::app(None, &secret_env).unwrap().is_none(),
        "no [github]: nothing"
    );
    let (settings, _client) = github::app(Some(&config(dir.path(), "")), &secret_env)
        .unwrap()
        .unwrap();
    assert_eq!(settings.webhook_secret, EXAMPLE_SECRET.as_bytes());
    assert_eq!(settings.api_url, "http://127.0.0.1:9");

    let mut no_app_id = config(dir.path(), "");
    no_app_id.app_id = None;
    let error = github::app(Some(&no_app_id), &secret_env).unwrap_err();
    assert!(error.contains("github.app_id is required"), "{error}");

    let mut no_key = config(dir.path(), "");
    no_key.private_key_file = None;
    let error = github::app(Some(&no_key), &secret_env).unwrap_err();
    assert!(error.contains("github.private_key_file is required"), "{error}");

    let mut missing_file = config(dir.path(), "");
    missing_file.private_key_file = Some(dir.path().join("nowhere.pem"));
    let error = github::app(Some(&missing_file), &secret_env).unwrap_err();
    assert!(
        error.contains("github.private_key_file") && error.contains("nowhere.pem"),
        "{error}"
    );

    let not_a_key = dir.path().join("not-a-key.pem");
    std::fs::write(
        &not_a_key,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let mut wrong_key = config(dir.path(), "");
    wrong_key.private_key_file = Some(not_a_key);
    let error = github::app(Some(&wrong_key), &secret_env).unwrap_err();
    assert!(
        error.contains("github.private_key_file") && error.contains("CERTIFICATE"),
        "{error}"
    );

    let error = github::app(Some(&config(dir.path(), "")), &|_| None).unwrap_err();
    assert!(error.contains("GH_WEBHOOK_SECRET"), "{error}");
    let error = github::app(Some(&config(dir.path(), "")), &|_| None).unwrap_err();
    assert!(!error.contains(EXAMPLE_SECRET));

    let error = github::app(
        Some(&config(dir.path(), "requester_groups = [\"admins\"]")),
        &secret_env,
    )
    .unwrap_err();
    assert!(error.contains("github.requester_groups"), "{error}");
}

#[test]
fn the_webhook_is_in_the_openapi_document_without_bearer_security() {
    let doc = serde_json::to_value(jitgate_server::openapi::document()).unwrap();
    let post = &doc["paths"]["/v1/github/webhook"]["post"];
    assert!(post.is_object(), "missing");
    assert!(post.get("security").is_none(), "{post}");
    for status in ["200", "400", "401", "404", "413", "503"] {
        assert!(post["responses"][status].is_object(), "{status}: {post}");
    }
    assert!(post["responses"]["413"]["description"]
        .as_str()
        .unwrap()
        .contains("1 MiB"));
    let names: Vec<&str> = post["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["X-GitHub-Event", "X-GitHub-Delivery", "X-Hub-Signature-256"]);
    let answer = &doc["components"]["schemas"]["GithubWebhookAnswer"];
    assert!(answer["properties"]["outcome"].is_object(), "{answer}");
}
