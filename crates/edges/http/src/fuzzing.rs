//! What the fuzz targets run (issue #11), one function per parser a caller or a policy author
//! can feed: the policy loader, durations, every JSON body the API takes, bearer tokens and
//! Slack's interaction payloads. `fuzz/` runs them under libFuzzer (`cargo +nightly fuzz run
//! TARGET`); `tests/fuzz_inputs.rs` runs them on stable for a CI-length while on random and
//! mutated inputs. Each must return, whatever the bytes: an error is fine, a panic is a bug.

use crate::api::{CheckBatchBody, CheckBody, CreateRequestBody, CreateTokenBody, DoneBody, ExtendBody, SshCertBody};
use jitgate_core::{Ask, Identity};
use std::sync::OnceLock;

/// The policy loader: the input is split at NUL bytes into the directory, the workflows, the
/// on-call schedule and one Cedar file.
pub fn policy(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let directory = parts.next().unwrap_or_default();
    let workflows = parts.next().unwrap_or_default();
    let oncall = parts.next();
    let cedar: Vec<(String, String)> = parts
        .next()
        .map(|c| ("fuzz.cedar".into(), c.into()))
        .into_iter()
        .collect();
    if let Ok(policy) = jitgate_policy::Policy::from_texts(directory, workflows, oncall, &cedar) {
        // A policy that loads must also answer: admit whatever its workflows name.
        let who = Identity::user("fuzz", &["dev"]);
        for workflow in policy.workflows() {
            let ask = Ask {
                resource: &workflow.resource,
                action: &workflow.action,
                duration: None,
                reason: "OPS-1",
                // Only an action-bound workflow takes a payload: admission gets past that check.
                payload: workflow.action_bound.then_some("x"),
                break_glass: false,
            };
            let _ = policy.admit(&who, &ask, chrono::Utc::now());
        }
    }
}

/// Durations as callers and policy authors write them (`90m`, `1h30m`).
pub fn duration(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(parsed) = jitgate_core::parse_duration(text) {
            // What parses prints, and what prints parses back to the same.
            let printed = jitgate_core::format_duration(parsed);
            assert_eq!(
                jitgate_core::parse_duration(&printed),
                Ok(parsed),
                "{text:?} -> {printed:?}"
            );
        }
    }
}

/// Every JSON body the API takes, through the checks its handler makes before acting.
pub fn json_bodies(data: &[u8]) {
    if let Ok(body) = serde_json::from_slice::<CreateRequestBody>(data) {
        if let Ok(body) = jitgate_service::inputs::NewRequest::try_from(body) {
            if let Ok(ask) = body.ask() {
                if let Some(policy) = quickstart() {
                    let _ = policy.admit(&Identity::user("alice", &["dev"]), &ask, chrono::Utc::now());
                }
            }
        }
    }
    if let Ok(body) = serde_json::from_slice::<CheckBody>(data) {
        let _ = crate::routes::validate_check(&body);
    }
    if let Ok(body) = serde_json::from_slice::<CheckBatchBody>(data) {
        for check in &body.checks {
            let _ = crate::routes::validate_check(check);
        }
    }
    if let Ok(body) = serde_json::from_slice::<ExtendBody>(data) {
        let _ = body.duration.0.parse("duration");
    }
    if let Ok(body) = serde_json::from_slice::<DoneBody>(data) {
        let _ = body.outcome();
    }
    if let Ok(body) = serde_json::from_slice::<CreateTokenBody>(data) {
        let _ = jitgate_service::inputs::NewToken::from(body).validate();
    }
    if let Ok(body) = serde_json::from_slice::<SshCertBody>(data) {
        let _ = ssh_key::PublicKey::from_openssh(body.public_key.trim());
    }
}

/// An `Authorization` header's value, as far as jitgate reads it without a network: the
/// bearer token, whether it looks like a JWT, its JWT header, and a lookup in a token table.
pub fn bearer(data: &[u8]) {
    let Ok(token) = crate::auth::bearer_token(data) else {
        return;
    };
    if crate::auth::oidc::looks_like_jwt(token) {
        let _ = jsonwebtoken::decode_header(token);
    }
    if let Some(table) = tokens() {
        let _ = table.lookup(token, chrono::Utc::now());
    }
}

/// A Slack interaction as Slack posts it (`payload=<JSON>`).
pub fn slack(data: &[u8]) {
    if let Ok(interaction) = crate::slack::parse(data) {
        let _ = interaction.actions.first().map(|a| a.value.as_deref());
    }
}

/// Whether the policy and token table the targets check against are there: without them
/// `json_bodies` and `bearer` would test less, and a run must say so.
pub fn fixtures_loaded() -> bool {
    quickstart().is_some() && tokens().is_some()
}

/// The quickstart policy, loaded once (`None` only if the checkout lacks it).
fn quickstart() -> Option<&'static jitgate_policy::Policy> {
    static POLICY: OnceLock<Option<jitgate_policy::Policy>> = OnceLock::new();
    POLICY
        .get_or_init(|| {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../examples/quickstart");
            jitgate_policy::Policy::load(std::path::Path::new(dir)).ok()
        })
        .as_ref()
}

fn tokens() -> Option<&'static crate::auth::tokens::TokenTable> {
    static TABLE: OnceLock<Option<crate::auth::tokens::TokenTable>> = OnceLock::new();
    TABLE
        .get_or_init(|| quickstart().map(|policy| crate::auth::tokens::TokenTable::build(policy, &[])))
        .as_ref()
}
