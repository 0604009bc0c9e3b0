//! Human-readable output. `--output json` prints the server's JSON instead.

use jitgate_core::text::escape_for_display;
use serde_json::Value;
use std::borrow::Cow;

/// A string field as it may be printed to a terminal: control characters (a carriage return,
/// an escape sequence, OSC 52, BEL), bidi overrides and invisible characters are shown as
/// escapes, so a reviewer's terminal can never show something other than what is stored.
pub fn s(v: &Value) -> Cow<'_, str> {
    escape_for_display(raw(v))
}

/// A string field exactly as the server sent it, for passing on (ids in URLs, a secret
/// written to a file), never for showing.
pub fn raw(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

/// Any text from the server (an error message that may quote what someone typed), escaped
/// for the terminal like [`s`].
pub fn shown(text: &str) -> Cow<'_, str> {
    escape_for_display(text)
}

/// Who filed a request (or holds a token), escaped: `claude-alice (agent for alice)` for an
/// agent, `ci:example/app (triggered by bob)` for a CI job someone triggered (a GitHub
/// deployment: no agent), the name alone otherwise.
pub fn requester(requester: &Value, on_behalf_of: &Value) -> String {
    let name = s(requester);
    let ci = requester
        .as_str()
        .is_some_and(|r| r.starts_with(jitgate_core::identity::CI_PRINCIPAL_PREFIX));
    match on_behalf_of.as_str() {
        Some(person) if ci => format!("{name} (triggered by {})", shown(person)),
        Some(person) => format!("{name} (agent for {})", shown(person)),
        None => name.into_owned(),
    }
}

/// A payload as a reviewer reads it in a terminal: escaped; one longer than
/// `PAYLOAD_SHOWN_BYTES` cut, with its size and hash and how to print the whole. `pad` starts
/// the lines after the first.
fn payload_text(payload: &str, id: &str, pad: &str) -> String {
    let shown = jitgate_core::text::PayloadShown::new(payload);
    if shown.complete {
        return format!("{}\n{pad}sha256 {}", shown.head, shown.sha256);
    }
    format!(
        "{}...\n{pad}only the start is shown: the whole payload is {}; `jitgate show {id} --payload` prints it",
        shown.head,
        shown.summary()
    )
}

/// `jitgate show ID --payload`: the whole payload, escaped, however long (and every item's).
pub fn whole_payload(r: &Value) -> String {
    let mut out = String::new();
    if let Some(p) = r["payload"].as_str() {
        out.push_str(&format!("{}\n", shown(p)));
    }
    for item in r["items"].as_array().into_iter().flatten().skip(1) {
        if let Some(p) = item["payload"].as_str() {
            out.push_str(&format!("{}\n", shown(p)));
        }
    }
    if out.is_empty() {
        out.push_str(&format!("request {} carries no payload\n", s(&r["id"])));
    }
    out
}

pub fn request_line(r: &Value) -> String {
    let line = format!(
        "{:<36}  {:<9}  {:<10}  {:<12} {:<8}  {:>6}  {}",
        s(&r["id"]),
        s(&r["status"]),
        requester(&r["requester"], &r["on_behalf_of"]),
        s(&r["resource"]),
        s(&r["action"]),
        s(&r["duration"]),
        s(&r["created_at"])
    );
    // A request for several things: the first is shown, and how many more (`jitgate show`).
    match r["items"].as_array().map(Vec::len) {
        Some(n) if n > 1 => format!("{line}  (+{} more items)", n - 1),
        _ => line,
    }
}

pub fn request_header() -> String {
    format!(
        "{:<36}  {:<9}  {:<10}  {:<12} {:<8}  {:>6}  {}",
        "ID", "STATUS", "REQUESTER", "RESOURCE", "ACTION", "FOR", "CREATED"
    )
}

pub fn request_detail(r: &Value) -> String {
    let mut out = format!(
        "request   {}\nstatus    {}\nrequester {}\naccess    {} on {} for {}\nreason    {}\n",
        s(&r["id"]),
        s(&r["status"]),
        requester(&r["requester"], &r["on_behalf_of"]),
        s(&r["action"]),
        s(&r["resource"]),
        s(&r["duration"]),
        r["reason"]
            .as_str()
            .filter(|x| !x.is_empty())
            .map(shown)
            .unwrap_or("(none)".into())
    );
    if let Some(p) = r["payload"].as_str() {
        out.push_str(&format!("payload   {}\n", payload_text(p, raw(&r["id"]), "          ")));
    }
    // A request for several things at once: every item, with what it needs and its grant.
    for (i, item) in r["items"].as_array().into_iter().flatten().enumerate() {
        out.push_str(&format!(
            "item {i}    {} on {}",
            s(&item["action"]),
            s(&item["resource"])
        ));
        if let Some(p) = item["payload"].as_str() {
            let p = jitgate_core::text::PayloadShown::new(p);
            if p.complete {
                out.push_str(&format!(" payload {}", p.head));
            } else {
                out.push_str(&format!(" payload {}... {}", p.head, p.summary()));
            }
        }
        let approved: Vec<String> = item["approvals"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| s(&a["reviewer"]).to_string())
            .collect();
        if !approved.is_empty() {
            out.push_str(&format!("; approved by {}", approved.join(", ")));
        }
        let needs: Vec<String> = item["needs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| format!("{} from {}", n["approvals"], s(&n["group"])))
            .collect();
        if !needs.is_empty() {
            out.push_str(&format!("; needs {}", needs.join(" and ")));
        }
        if let Some(g) = item["grant"].as_object() {
            out.push_str(&format!(
                "; grant {} {}",
                g.get("id").map(s).unwrap_or_default(),
                g.get("status").map(s).unwrap_or_default()
            ));
        }
        out.push('\n');
    }
    if r["review_due"].as_bool() == Some(true) {
        out.push_str("BREAK-GLASS: granted at once; a review is owed (jitgate review ID)\n");
    } else if let Some(review) = r["post_review"].as_object() {
        let by = shown(review.get("by").and_then(Value::as_str).unwrap_or("-"));
        out.push_str(&format!("BREAK-GLASS: reviewed by {by}\n"));
    }
    for a in r["approvals"].as_array().into_iter().flatten() {
        let comment = a["comment"]
            .as_str()
            .map(|c| format!(": {}", shown(c)))
            .unwrap_or_default();
        let bound = a["payload_sha256"]
            .as_str()
            .map(|h| format!(" (payload sha256 {})", shown(h)))
            .unwrap_or_default();
        out.push_str(&format!(
            "approved  by {} at {}{bound}{comment}\n",
            s(&a["reviewer"]),
            s(&a["at"])
        ));
    }
    for n in r["needs"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "needs     {} from {}\n",
            jitgate_core::text::counted(n["approvals"].as_u64().unwrap_or(0), "more approval", "more approvals"),
            s(&n["group"])
        ));
    }
    if let Some(c) = r["closed_by"].as_object() {
        let comment = c
            .get("comment")
            .and_then(Value::as_str)
            .map(|c| format!(": {}", shown(c)))
            .unwrap_or_default();
        out.push_str(&format!(
            "closed    by {} at {}{comment}\n",
            shown(c.get("by").and_then(Value::as_str).unwrap_or("-")),
            c.get("at").and_then(Value::as_str).unwrap_or("-")
        ));
    }
    if r["status"] == "pending" {
        out.push_str(&format!("expires   {} unless decided\n", s(&r["pending_expires_at"])));
    }
    if let Some(g) = r["grant"].as_object() {
        let g = Value::Object(g.clone());
        out.push_str(&format!(
            "grant     {} {} from {} until {}\n",
            s(&g["id"]),
            s(&g["status"]),
            s(&g["starts_at"]),
            s(&g["expires_at"])
        ));
    }
    out
}

pub fn resource_header() -> String {
    format!(
        "{:<24}  {:<10}  {:<12}  {}",
        "RESOURCE", "ACTION", "TAKES", "DESCRIPTION"
    )
}

/// One line per action the caller may request on a resource.
pub fn resource_lines(r: &Value) -> String {
    let mut lines = String::new();
    for a in r["actions"].as_array().into_iter().flatten() {
        let takes = if a["automatic"].as_bool() == Some(true) {
            "automatic".to_string()
        } else {
            a["needs"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|n| format!("{} of {}", n["approvals"], s(&n["group"])))
                .collect::<Vec<_>>()
                .join(" + ")
        };
        let description = if a["description"].is_string() {
            &a["description"]
        } else {
            &r["description"]
        };
        lines.push_str(&format!(
            "{:<24}  {:<10}  {:<12}  {}\n",
            s(&r["name"]),
            s(&a["action"]),
            takes,
            s(description)
        ));
    }
    lines
}

pub fn grant_header() -> String {
    format!(
        "{:<36}  {:<8}  {:<10}  {:<12} {:<8}  {}",
        "GRANT", "STATUS", "PRINCIPAL", "RESOURCE", "ACTION", "EXPIRES"
    )
}

pub fn grant_line(g: &Value) -> String {
    format!(
        "{:<36}  {:<8}  {:<10}  {:<12} {:<8}  {}",
        s(&g["id"]),
        s(&g["status"]),
        s(&g["principal"]),
        s(&g["resource"]),
        s(&g["action"]),
        s(&g["expires_at"])
    )
}

pub fn event_line(e: &Value) -> String {
    let comment = e["comment"]
        .as_str()
        .filter(|c| !c.is_empty())
        .map(|c| format!("  \"{}\"", shown(c)))
        .unwrap_or_default();
    format!(
        "{:>6}  {}  {:<18} {:<10} {} {} on {}{}",
        e["seq"],
        s(&e["at"]),
        s(&e["kind"]),
        s(&e["actor"]),
        s(&e["subject"]),
        s(&e["action"]),
        s(&e["resource"]),
        comment
    )
}

pub fn token_header() -> String {
    format!(
        "{:<36}  {:<8}  {:<16}  {:<7}  {:<24}  {:<24}  {}",
        "TOKEN", "STATUS", "PRINCIPAL", "KIND", "EXPIRES", "LABEL", "GROUPS"
    )
}

pub fn token_line(t: &Value) -> String {
    let groups: Vec<Cow<'_, str>> = t["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(shown)
        .collect();
    format!(
        "{:<36}  {:<8}  {:<16}  {:<7}  {:<24}  {:<24}  {}",
        s(&t["id"]),
        s(&t["status"]),
        requester(&t["principal"], &t["agent_for"]),
        if t["scim"].as_bool() == Some(true) {
            "scim"
        } else if t["service"].as_bool() == Some(true) {
            "service"
        } else if t["agent_for"].is_string() {
            "agent"
        } else {
            "user"
        },
        shown(t["expires_at"].as_str().unwrap_or("never")),
        s(&t["label"]),
        groups.join(",")
    )
}

#[cfg(test)]
mod tests {
    // Test code: a failed expectation should abort the test loudly.
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    /// A payload stored by an older version, or reaching the terminal some other way, with a
    /// NUL, an escape sequence, a carriage return and a bidi override: every one shown as a
    /// visible escape, with the hash of what is really stored; the agent and its person both
    /// named.
    #[test]
    fn a_reviewer_sees_hidden_characters_escaped_and_both_names() {
        let payload = "rm -rf /tmp/x\0\r\x1b[2K\u{202e}ls";
        let r = json!({"id": "req_1", "status": "pending", "requester": "claude-alice",
            "on_behalf_of": "alice\u{200b}", "action": "deploy", "resource": "prod-api",
            "duration": "1h", "reason": "r", "payload": payload});
        let out = request_detail(&r);
        assert!(
            out.contains("payload   rm -rf /tmp/x\\x00\\r\\x1b[2K\\u{202e}ls\n"),
            "{out}"
        );
        assert!(
            out.contains(&format!("sha256 {}", jitgate_core::model::payload_digest(payload))),
            "{out}"
        );
        assert!(
            out.contains("requester claude-alice (agent for alice\\u{200b})"),
            "{out}"
        );
        assert!(!out.contains(['\0', '\r', '\x1b', '\u{202e}', '\u{200b}']), "{out:?}");
        assert_eq!(whole_payload(&r), "rm -rf /tmp/x\\x00\\r\\x1b[2K\\u{202e}ls\n");
    }

    /// A GitHub deployment's request names who triggered it, and is no agent's.
    #[test]
    fn a_ci_job_someone_triggered_is_no_agent() {
        assert_eq!(
            requester(&json!("ci:example/app"), &json!("bob")),
            "ci:example/app (triggered by bob)"
        );
        assert_eq!(
            requester(&json!("claude-bob"), &json!("bob")),
            "claude-bob (agent for bob)"
        );
        assert_eq!(requester(&json!("ci:example/app"), &Value::Null), "ci:example/app");
    }

    #[test]
    fn a_long_payload_is_cut_with_its_size_hash_and_the_way_to_the_whole() {
        let payload = "x".repeat(3000);
        let r = json!({"id": "req_2", "status": "pending", "requester": "bob", "payload": payload});
        let out = request_detail(&r);
        assert!(!out.contains(&"x".repeat(1025)), "{out}");
        assert!(
            out.contains(&format!(
                "(3000 bytes, sha256 {}); `jitgate show req_2 --payload` prints it",
                jitgate_core::model::payload_digest(&payload)
            )),
            "{out}"
        );
        assert_eq!(whole_payload(&r).trim_end(), payload);
    }
}
