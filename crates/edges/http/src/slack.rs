//! Approve and deny from Slack: the buttons on a review message (notify.rs) post here.
//!
//! A request is believed only if Slack signed it: `X-Slack-Signature` is `v0=` + hex of
//! HMAC-SHA256(signing secret, `v0:TIMESTAMP:BODY`), compared in constant time, with
//! `X-Slack-Request-Timestamp` within five minutes of now (so a captured request cannot be
//! replayed later). The Slack user is mapped to a principal by `slack_user` in
//! `directory.toml`; an unlinked user can do nothing. The decision then goes through exactly
//! the same path as the API: the authorization table, the state machine (never one's own
//! request, never twice) and the policy's reviewer rules.

use crate::auth::caller_for;
use crate::ApiError;
use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use jitgate_core::authz::op;
use jitgate_service::{now, App};
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;

/// How far a signed request's timestamp may be from now.
pub const REPLAY_WINDOW_SECS: i64 = 300;

/// The `[slack]` section of the server's config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// The Slack app's signing secret, or better `signing_secret_env`.
    pub signing_secret: Option<String>,
    pub signing_secret_env: Option<String>,
}

pub struct Slack {
    signing_secret: Vec<u8>,
    http: reqwest::Client,
}

impl Slack {
    /// `None` when Slack is not configured: the endpoint then answers 404.
    pub fn new(config: &SlackConfig) -> Result<Option<Slack>, String> {
        if config.signing_secret.is_none() && config.signing_secret_env.is_none() {
            return Ok(None);
        }
        let at = |key: &str| format!("slack.{key}");
        let secret = crate::provision::value_or_env(
            config.signing_secret.as_deref(),
            config.signing_secret_env.as_deref(),
            "signing_secret",
            &at,
        )?;
        if secret.len() < 16 {
            return Err(format!(
                "{}: Slack's signing secrets are 32 characters",
                at("signing_secret")
            ));
        }
        Ok(Some(Slack {
            signing_secret: secret.into_bytes(),
            http: reqwest::Client::new(),
        }))
    }

    /// Was this body signed by Slack, recently?
    pub fn verify(&self, headers: &HeaderMap, body: &[u8], now_secs: i64) -> Result<(), ApiError> {
        let refused = |why: &str| {
            tracing::warn!(why, "refused a Slack request");
            ApiError::Unauthenticated("the request is not signed by Slack".into())
        };
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let stamp = header("x-slack-request-timestamp").ok_or_else(|| refused("no timestamp"))?;
        let signed_at: i64 = stamp.parse().map_err(|_| refused("malformed timestamp"))?;
        if (now_secs - signed_at).abs() > REPLAY_WINDOW_SECS {
            return Err(refused("timestamp outside the replay window"));
        }
        let signature = header("x-slack-signature")
            .and_then(|s| s.strip_prefix("v0="))
            .and_then(|hex_text| hex::decode(hex_text).ok())
            .ok_or_else(|| refused("no or malformed signature"))?;
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.signing_secret).map_err(|e| ApiError::Internal(e.to_string()))?;
        mac.update(format!("v0:{stamp}:").as_bytes());
        mac.update(body);
        mac.verify_slice(&signature).map_err(|_| refused("signature mismatch"))
    }
}

/// The parts of a Slack interaction payload jitgate uses.
#[derive(Debug, Deserialize)]
pub struct Interaction {
    #[serde(rename = "type")]
    pub kind: String,
    pub user: SlackUser,
    #[serde(default)]
    pub actions: Vec<SlackAction>,
    pub response_url: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct SlackUser {
    pub id: String,
}

#[derive(Debug, Deserialize)]
pub struct SlackAction {
    pub action_id: String,
    pub value: Option<String>,
}

/// The form body Slack posts: `payload=<JSON>`.
pub fn parse(body: &[u8]) -> Result<Interaction, ApiError> {
    #[derive(Deserialize)]
    struct Form {
        payload: String,
    }
    let form: Form = serde_urlencoded::from_bytes(body)
        .map_err(|e| ApiError::BadRequest(format!("expected a form with payload=JSON: {e}")))?;
    serde_json::from_str(&form.payload).map_err(|e| ApiError::BadRequest(format!("payload: {e}")))
}

pub use jitgate_connectors::notify::slack::slack_escape as escape;

/// Carry out a verified interaction and say how it went, in the message Slack shows.
pub async fn act(app: &App, interaction: &Interaction) -> Option<serde_json::Value> {
    if interaction.kind != "block_actions" {
        return None;
    }
    let action = interaction.actions.first()?;
    let decide = match action.action_id.as_str() {
        "jitgate_approve" => true,
        "jitgate_deny" => false,
        // "Open" is a link; nothing to do.
        _ => return None,
    };
    let value = action.value.clone().unwrap_or_default();
    let (request_id, shown_sha256) = jitgate_connectors::notify::slack::approve_value(&value);
    let request_id = request_id.to_string();
    let ephemeral =
        |text: String| json!({"response_type": "ephemeral", "replace_original": false, "text": escape(&text)});
    let policy = app.policy();
    let Some(entry) = policy.rules().principal_by_slack_user(&interaction.user.id) else {
        app.metrics.count_slack("unlinked");
        return Some(ephemeral(format!(
            "Your Slack account ({}) is not linked to a jitgate principal: add slack_user = \"{}\" to your entry in directory.toml",
            interaction.user.id, interaction.user.id
        )));
    };
    let who = entry.identity.clone();
    let comment = Some("from Slack".to_string());
    let decided = if decide {
        match caller_for::<op::ApproveRequest>(who) {
            Ok(caller) => app.approve_confirmed(&caller, &request_id, comment, shown_sha256).await,
            Err(e) => Err(e),
        }
    } else {
        match caller_for::<op::DenyRequest>(who) {
            Ok(caller) => app.deny(&caller, &request_id, comment).await,
            Err(e) => Err(e),
        }
    };
    let principal = &entry.identity.principal;
    Some(match decided {
        Ok(request) => {
            app.metrics.count_slack(if decide { "approved" } else { "denied" });
            // Of a multi-item request, what every item still needs, and every item by name.
            let missing: Vec<String> = (0..request.item_count())
                .flat_map(|i| request.item_missing_approvals(i))
                .map(|s| format!("{} from {}", s.approvals, s.group))
                .collect();
            let what = if request.items.is_empty() {
                format!("{} {}", request.action, request.resource)
            } else {
                jitgate_service::notify::items_text(&request)
            };
            let requester = jitgate_core::model::requester_text(&request.requester, request.on_behalf_of.as_deref());
            let text = match request.status {
                jitgate_core::RequestStatus::Pending => format!(
                    "{principal} approved {} ({what} for {}); it still needs {}",
                    request.id,
                    requester,
                    missing.join(" and ")
                ),
                status => format!(
                    "{} {} ({what} for {}) by {principal}",
                    request.id,
                    status.as_str(),
                    requester
                ),
            };
            json!({"response_type": "in_channel", "replace_original": true, "text": escape(&text)})
        }
        Err(error) => {
            app.metrics.count_slack("refused");
            // Slack is answered 200 whatever happened, so no response carries the limit to
            // the layer that counts them: count it here.
            if let Some(limit) = error.limit() {
                app.metrics.count_limit(limit.as_str());
            }
            ephemeral(format!("{principal} cannot do that: {error}"))
        }
    })
}

/// Show the outcome in Slack, through the interaction's response URL (best effort).
pub fn respond(slack: &Slack, response_url: Option<String>, message: serde_json::Value) {
    let Some(url) = response_url else {
        return;
    };
    let http = slack.http.clone();
    tokio::spawn(async move {
        let sent =
            crate::delivery::post_json(&http, &url, std::time::Duration::from_secs(5), &[], message.to_string()).await;
        if let Err(failure) = sent {
            tracing::warn!(error = failure.message(), "cannot show the outcome in Slack");
        }
    });
}

/// The current time in Unix seconds, for the replay window.
pub fn now_secs() -> i64 {
    now().timestamp()
}
