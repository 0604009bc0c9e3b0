//! `jitgate mcp serve`: an MCP server (stdio) whose tools let an agent ask for access the way a
//! person does with the CLI: file a request, follow it, list its grants, end one. Every call is
//! made with the agent's own credential (JITGATE_TOKEN), so the server's rules and refusals
//! apply unchanged; a refusal comes back as a tool error carrying the server's message.

use super::jsonrpc::{self, Kind, Out};
use crate::client::{Client, ClientError};
use crate::commands::CommandResult;
use crate::render;
use serde_json::{json, Value};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// The longest `request_status` waits for a decision.
const MAX_WAIT_SECONDS: u64 = 60;

pub fn run(client: &Client) -> CommandResult {
    let out = Arc::new(Out::new(Box::new(std::io::stdout())));
    let stdin = std::io::stdin();
    let mut reader = stdin.lock();
    let mut calls = Vec::new();
    loop {
        let line = match jsonrpc::read_line(&mut reader) {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(e) => {
                eprintln!("jitgate mcp serve: cannot read from the client: {e}");
                break;
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let message: Value = match serde_json::from_slice(&line) {
            Ok(m) => m,
            Err(e) => {
                out.send(&jsonrpc::error(
                    &Value::Null,
                    jsonrpc::PARSE_ERROR,
                    &format!("not JSON: {e}"),
                ));
                continue;
            }
        };
        let Kind::Request { id, method } = jsonrpc::kind(&message) else {
            // Notifications (initialized, cancelled) and answers need nothing from us.
            continue;
        };
        let id = id.clone();
        match method {
            "initialize" => out.send(&jsonrpc::result(&id, initialize(&message["params"]))),
            "ping" => out.send(&jsonrpc::result(&id, json!({}))),
            "tools/list" => out.send(&jsonrpc::result(&id, json!({"tools": tools()}))),
            "tools/call" => {
                // A status wait may last a minute: each call on its own thread.
                let (client, out) = (client.clone(), out.clone());
                let params = message["params"].clone();
                calls.push(std::thread::spawn(move || {
                    out.send(&jsonrpc::result(&id, call(&client, &params)));
                }));
                calls.retain(|c| !c.is_finished());
            }
            other => out.send(&jsonrpc::error(
                &id,
                jsonrpc::METHOD_NOT_FOUND,
                &format!("jitgate mcp serve has no method {other}"),
            )),
        }
    }
    for call in calls {
        let _ = call.join();
    }
    Ok(ExitCode::SUCCESS)
}

fn initialize(params: &Value) -> Value {
    let asked = params["protocolVersion"].as_str().unwrap_or("");
    let version = jsonrpc::PROTOCOL_VERSIONS
        .iter()
        .find(|v| **v == asked)
        .unwrap_or(&jsonrpc::PROTOCOL_VERSIONS[0]);
    json!({
        "protocolVersion": version,
        "capabilities": {"tools": {"listChanged": false}},
        "serverInfo": {"name": "jitgate", "version": env!("CARGO_PKG_VERSION")},
        "instructions": "Ask jitgate for just-in-time access: request_access files a request (a person or a rule approves it), request_status follows it, my_grants lists your grants, done ends one when the task is finished.",
    })
}

pub fn tools() -> Value {
    json!([
        {
            "name": "request_access",
            "description": "Ask for access to an action on a resource for a while. The policy decides: granted at once, or waiting for reviewers (follow it with request_status). Returns the request's id, status, what it still needs and its page.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "resource": {"type": "string", "description": "The resource, as jitgate's catalog names it (prod-db)."},
                    "action": {"type": "string", "description": "The action on it (read, write, a tool's name)."},
                    "reason": {"type": "string", "description": "Why: reviewers read it (a ticket, the task)."},
                    "duration": {"type": "string", "description": "How long the access should last once approved (30m, 2h); the policy's default otherwise."},
                    "payload": {"type": "string", "description": "For an action-bound workflow: the exact command, statement or tool call the grant will allow, and nothing else."},
                    "break_glass": {"type": "boolean", "description": "Emergency access, granted at once and reviewed afterwards, where the policy allows it; never for an agent token (created with --agent-for), which jitgate refuses."}
                },
                "required": ["resource", "action", "reason"],
                "additionalProperties": false
            }
        },
        {
            "name": "request_status",
            "description": "A request's status (pending, approved, denied, cancelled, expired), its grant once approved, and who decided. With wait_seconds, waits up to that long (at most 60) for a pending request to be decided.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "id": {"type": "string", "description": "The request's id (req_...)."},
                    "wait_seconds": {"type": "integer", "minimum": 0, "maximum": MAX_WAIT_SECONDS, "description": "Wait this long for a decision (0 to 60)."}
                },
                "required": ["id"],
                "additionalProperties": false
            }
        },
        {
            "name": "my_grants",
            "description": "Your active grants: resource, action, until when, and each grant's id.",
            "inputSchema": {"type": "object", "properties": {}, "additionalProperties": false}
        },
        {
            "name": "done",
            "description": "End one of your grants now because the task is finished, recording how it went.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "grant_id": {"type": "string", "description": "The grant's id (grt_...)."},
                    "outcome": {"type": "string", "description": "How the task went, for the audit log."}
                },
                "required": ["grant_id"],
                "additionalProperties": false
            }
        }
    ])
}

/// The result of one tool call: the server's answer as JSON text (and structured), or a tool
/// error with the server's message.
fn call(client: &Client, params: &Value) -> Value {
    let name = params["name"].as_str().unwrap_or("");
    let arguments = match &params["arguments"] {
        Value::Null => json!({}),
        Value::Object(_) => params["arguments"].clone(),
        _ => return tool_error("arguments must be an object"),
    };
    let answer = match name {
        "request_access" => request_access(client, &arguments),
        "request_status" => request_status(client, &arguments),
        "my_grants" => my_grants(client),
        "done" => done(client, &arguments),
        other => Err(format!(
            "no tool {other}; the tools are request_access, request_status, my_grants and done"
        )),
    };
    match answer {
        Ok(value) => json!({
            "content": [{"type": "text", "text": value.to_string()}],
            "structuredContent": value,
            "isError": false,
        }),
        Err(message) => tool_error(&message),
    }
}

fn tool_error(message: &str) -> Value {
    json!({"content": [{"type": "text", "text": message}], "isError": true})
}

/// A required string argument, or a message naming it.
fn text<'a>(arguments: &'a Value, field: &str) -> Result<&'a str, String> {
    match &arguments[field] {
        Value::String(s) => Ok(s),
        Value::Null => Err(format!("{field}: is required")),
        _ => Err(format!("{field}: must be a string")),
    }
}

fn optional_text(arguments: &Value, field: &str) -> Result<Option<String>, String> {
    match &arguments[field] {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(format!("{field}: must be a string")),
    }
}

fn refused(e: ClientError) -> String {
    match e {
        ClientError::Api {
            status: 401, message, ..
        } => {
            format!("jitgate refused the agent's credential (JITGATE_TOKEN): {message}")
        }
        ClientError::Api { message, .. } => format!("jitgate refused: {message}"),
        other => other.to_string(),
    }
}

/// What an agent needs of a request: the decision, what it still needs, its grant and link.
fn request_summary(client: &Client, r: &Value) -> Value {
    let id = render::raw(&r["id"]);
    let mut summary = json!({
        "id": id,
        "status": r["status"],
        "resource": r["resource"],
        "action": r["action"],
        "needs": r["needs"],
        "link": format!("{}/ui/requests/{id}", client.base()),
    });
    let approvals: Vec<Value> = r["approvals"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| json!({"by": a["reviewer"], "comment": a["comment"]}))
        .collect();
    if !approvals.is_empty() {
        summary["approvals"] = json!(approvals);
    }
    if !r["closed_by"].is_null() {
        summary["closed_by"] = r["closed_by"].clone();
    }
    if !r["grant"].is_null() {
        summary["grant"] = json!({
            "id": r["grant"]["id"],
            "status": r["grant"]["status"],
            "expires_at": r["grant"]["expires_at"],
            "single_use": r["grant"]["single_use"],
        });
    }
    summary
}

fn request_access(client: &Client, arguments: &Value) -> Result<Value, String> {
    let mut body = json!({
        "resource": text(arguments, "resource")?,
        "action": text(arguments, "action")?,
        "reason": text(arguments, "reason")?,
    });
    if let Some(d) = optional_text(arguments, "duration")? {
        body["duration"] = json!(d);
    }
    if let Some(p) = optional_text(arguments, "payload")? {
        body["payload"] = json!(p);
    }
    match &arguments["break_glass"] {
        Value::Null => {}
        Value::Bool(b) => body["break_glass"] = json!(b),
        _ => return Err("break_glass: must be true or false".into()),
    }
    let request = client.post("/v1/requests", &body).map_err(refused)?;
    Ok(request_summary(client, &request))
}

fn request_status(client: &Client, arguments: &Value) -> Result<Value, String> {
    let id = text(arguments, "id")?;
    let wait = match &arguments["wait_seconds"] {
        Value::Null => 0,
        v => v.as_u64().filter(|s| *s <= MAX_WAIT_SECONDS).ok_or(format!(
            "wait_seconds: must be a whole number from 0 to {MAX_WAIT_SECONDS}"
        ))?,
    };
    let path = format!("/v1/requests/{}", segment("id", id)?);
    let query = if wait > 0 {
        vec![("wait", format!("{}s", Duration::from_secs(wait).as_secs()))]
    } else {
        Vec::new()
    };
    let request = client.get(&path, &query).map_err(refused)?;
    Ok(request_summary(client, &request))
}

fn my_grants(client: &Client) -> Result<Value, String> {
    let grants = client
        .get("/v1/grants", &[("status", "active".to_string())])
        .map_err(refused)?;
    let items: Vec<Value> = grants["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| {
            json!({
                "id": g["id"],
                "request_id": g["request_id"],
                "resource": g["resource"],
                "action": g["action"],
                "expires_at": g["expires_at"],
                "single_use": g["single_use"],
            })
        })
        .collect();
    Ok(json!({"grants": items}))
}

fn done(client: &Client, arguments: &Value) -> Result<Value, String> {
    let grant = text(arguments, "grant_id")?;
    let mut body = json!({});
    if let Some(outcome) = optional_text(arguments, "outcome")? {
        body["comment"] = json!(outcome);
    }
    let grant = client
        .post(&format!("/v1/grants/{}/done", segment("grant_id", grant)?), &body)
        .map_err(refused)?;
    Ok(json!({"id": grant["id"], "status": grant["status"], "ended_at": grant["ended_at"]}))
}

/// An id as one path segment, or a message naming `field`: ids are letters, digits, `_` and
/// `-`, so an agent's `../tokens` (or its percent-encoded dots, which URLs still read as a
/// parent) never walks the API.
fn segment<'a>(field: &str, id: &'a str) -> Result<&'a str, String> {
    let plain =
        !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        Ok(id)
    } else {
        Err(format!(
            "{field}: {} is not an id; give the id jitgate answered (like req_01... or grt_01...)",
            render::shown(&serde_json::to_string(id).unwrap_or_default())
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_stay_one_path_segment() {
        assert_eq!(segment("id", "req_01ab-C"), Ok("req_01ab-C"));
        for bad in [
            "../tokens",
            "..",
            "%2e%2e",
            "a?b",
            "a#b",
            "a b",
            "a\0",
            "",
            "req\u{202e}1",
        ] {
            let error = segment("id", bad).unwrap_err();
            assert!(error.starts_with("id: "), "{bad}: {error}");
        }
        assert!(segment("id", &"a".repeat(129)).is_err());
    }

    #[test]
    fn every_tool_has_an_object_schema_naming_its_required_fields() {
        for tool in tools().as_array().unwrap() {
            let schema = &tool["inputSchema"];
            assert_eq!(schema["type"], "object", "{tool}");
            for required in schema["required"].as_array().into_iter().flatten() {
                assert!(schema["properties"].get(required.as_str().unwrap()).is_some(), "{tool}");
            }
        }
    }

    #[test]
    fn the_version_asked_for_is_answered_when_spoken() {
        assert_eq!(
            initialize(&json!({"protocolVersion": "2025-03-26"}))["protocolVersion"],
            "2025-03-26"
        );
        assert_eq!(
            initialize(&json!({"protocolVersion": "1999-01-01"}))["protocolVersion"],
            jsonrpc::PROTOCOL_VERSIONS[0]
        );
    }
}
