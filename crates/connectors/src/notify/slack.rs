//! The Slack sink: an incoming webhook, with Approve and Deny buttons on requests to review.

use crate::config::http_url;
use crate::delivery::post_json;
use crate::entry::NotifySinkEntry;
use async_trait::async_trait;
use jitgate_policy::Policy;
use jitgate_service::connectors::{Failure, Message, NotificationSink};
use serde_json::{json, Value};
use std::time::Duration;

struct Slack {
    name: String,
    url: String,
    timeout: Duration,
    http: reqwest::Client,
}

/// `kind = "slack"`: `url` (or `url_env`), the incoming webhook; no secret.
pub fn build(entry: &NotifySinkEntry<'_>) -> Result<Box<dyn NotificationSink>, String> {
    let (c, at) = (entry.config, entry.at);
    let url = http_url(
        crate::config::value_or_env(c.url.as_deref(), c.url_env.as_deref(), "url", at)?,
        at,
    )?;
    if c.secret.is_some() || c.secret_env.is_some() {
        return Err(format!(
            "{}: Slack webhooks are not signed by the sender; remove it",
            at("secret")
        ));
    }
    Ok(Box::new(Slack {
        name: c.name.clone(),
        url,
        timeout: entry.timeout,
        http: entry.http.clone(),
    }))
}

#[async_trait]
impl NotificationSink for Slack {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, message: &Message, link: &str, policy: &Policy) -> Result<(), Failure> {
        let body = body(policy, message, link).to_string();
        let headers = [("Idempotency-Key", format!("{}:{}", self.name, message.event.seq))];
        post_json(&self.http, &self.url, self.timeout, &headers, body).await
    }
}

fn body(policy: &Policy, message: &Message, link: &str) -> Value {
    let mentions: Vec<String> = message
        .recipients
        .iter()
        .map(
            |p| match policy.rules().principal(p).and_then(|e| e.slack_user.as_deref()) {
                Some(slack) => format!("<@{slack}>"),
                None => slack_escape(p),
            },
        )
        .collect();
    let request = &message.request;
    let mut text = format!("*{}*", slack_escape(&message.headline));
    if !request.items.is_empty() {
        // Several things at once: the reviewer sees every item approving would grant, each
        // with its exact payload and what it still needs.
        for item in (0..request.item_count()).filter_map(|i| request.item_request(i)) {
            text.push_str(&format!(
                "\n• {} {}",
                slack_escape(&item.action),
                slack_escape(&item.resource)
            ));
            if let Some(payload) = &item.payload {
                text.push_str(&payload_block(payload, PAYLOAD_CHARS / request.item_count().max(1)));
            }
            let needs: Vec<String> = item
                .missing_approvals()
                .iter()
                .map(|s| format!("{} from {}", s.approvals, s.group))
                .collect();
            if message.review && !needs.is_empty() {
                text.push_str(&format!(" (needs {})", slack_escape(&needs.join(" and "))));
            }
        }
    } else if let Some(payload) = &request.payload {
        text.push_str(&payload_block(payload, PAYLOAD_CHARS));
    }
    if message.review && request.items.is_empty() {
        let needs: Vec<String> = request
            .missing_approvals()
            .iter()
            .map(|s| format!("{} from {}", s.approvals, s.group))
            .collect();
        text.push_str(&format!("\nneeds {}", slack_escape(&needs.join(" and "))));
    }
    if !mentions.is_empty() {
        text.push_str(&format!("\nfor {}", mentions.join(" ")));
    }
    let mut elements = Vec::new();
    if message.review {
        // Approving from Slack approves the payload this message showed: the button carries
        // its hash, and the server refuses the approval if the request's differs.
        let value = match &request.payload_sha256 {
            Some(hash) => format!("{} sha256={hash}", request.id),
            None => request.id.clone(),
        };
        elements.push(
            json!({"type": "button", "action_id": "jitgate_approve", "style": "primary",
            "text": {"type": "plain_text", "text": "Approve"}, "value": value}),
        );
        elements.push(json!({"type": "button", "action_id": "jitgate_deny", "style": "danger",
            "text": {"type": "plain_text", "text": "Deny"}, "value": request.id}));
    }
    elements.push(json!({"type": "button", "action_id": "jitgate_open",
        "text": {"type": "plain_text", "text": "Open"}, "url": link}));
    json!({
        // The fallback (notifications, screen readers) is mrkdwn too: escaped like the blocks,
        // so a reason cannot ping `<!channel>` or dress a link up as something else.
        "text": slack_escape(&message.headline),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "actions", "block_id": format!("jitgate:{}", request.id), "elements": elements},
        ],
    })
}

/// The characters of a message's payloads in all: Slack refuses a section text over 3,000
/// characters (and with it the whole message, buttons and all), and the headline, reason and
/// mentions need the rest.
const PAYLOAD_CHARS: usize = 2_000;

/// A payload as the reviewer reads it in Slack: verbatim, with control, invisible and bidi
/// characters written as visible escapes, in a code block it cannot break out of; one longer
/// than the readable bound, or than `budget` characters once escaped, is cut, with its size and
/// hash and the way to the whole.
fn payload_block(payload: &str, budget: usize) -> String {
    let shown = jitgate_core::text::PayloadShown::new(payload);
    // A run of three backticks would end the code block: its third is written as the escape
    // `\u{60}`, which the payload cannot forge (escaping doubled its backslashes).
    let mut body = slack_escape(&shown.head).replace("```", "``\\u{60}");
    let mut complete = shown.complete;
    if body.chars().count() > budget {
        let mut cut: String = body.chars().take(budget).collect();
        // Not in the middle of an entity (`&amp;`), which would read as other text.
        if let Some(amp) = cut.rfind('&').filter(|&at| !cut[at..].contains(';')) {
            cut.truncate(amp);
        }
        body = cut;
        complete = false;
    }
    let mut block = format!("\n```{body}```");
    if !complete {
        block.push_str(&format!(
            "\n_only the start is shown: the whole payload is {}; Open shows all of it_",
            shown.summary()
        ));
    }
    block
}

/// The request id and payload hash an Approve button carries (`REQ` or `REQ sha256=HEX`).
pub fn approve_value(value: &str) -> (&str, Option<&str>) {
    match value.split_once(" sha256=") {
        Some((id, hash)) => (id, Some(hash)),
        None => (value, None),
    }
}

/// Text for Slack's mrkdwn, where `<...>` is a mention, a channel ping (`<!channel>`) or a link
/// (`<https://...|label>`): Slack's three control characters escaped, as Slack documents
/// (`&` first, so nothing is escaped twice). Every text jitgate sends Slack goes through it.
pub fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a reviewer reads in Slack is what is stored: control, invisible and bidi characters
    /// as escapes, mrkdwn's specials escaped, no way out of the code block; a long payload cut
    /// with its size and hash.
    #[test]
    fn payloads_are_shown_escaped_and_long_ones_summarised() {
        let block = payload_block("a\0b\u{202e}c\u{200b}<!channel> ```x```", PAYLOAD_CHARS);
        assert_eq!(
            block,
            "\n```a\\x00b\\u{202e}c\\u{200b}&lt;!channel&gt; ``\\u{60}x``\\u{60}```"
        );
        // The escape of a backtick cannot be forged: a payload's own backslash is doubled.
        let forged = payload_block("``\\u{60}", PAYLOAD_CHARS);
        assert_eq!(forged, "\n`````\\\\u{60}```");
        // Escaping that multiplies the length (`&` is `&amp;`) is cut to the budget, never past
        // Slack's limit, and never in the middle of an entity; the summary says it is cut.
        let ampersands = "&".repeat(1000);
        let block = payload_block(&ampersands, PAYLOAD_CHARS);
        assert!(block.chars().count() < PAYLOAD_CHARS + 200, "{}", block.len());
        assert!(block.contains("&amp;```"), "{block}");
        assert!(block.contains("(1000 bytes, sha256 "), "{block}");
        let long = "y".repeat(2000);
        let block = payload_block(&long, PAYLOAD_CHARS);
        assert!(block.contains(&"y".repeat(1024)) && !block.contains(&"y".repeat(1025)), "{block}");
        assert!(
            block.contains(&format!(
                "(2000 bytes, sha256 {})",
                jitgate_core::model::payload_digest(&long)
            )),
            "{block}"
        );
        assert_eq!(approve_value("req_1 sha256=ab"), ("req_1", Some("ab")));
        assert_eq!(approve_value("req_1"), ("req_1", None));
    }
}
