//! JSON-RPC 2.0 as MCP's stdio transport frames it: one message per line, UTF-8, no embedded
//! newlines. Written by hand rather than with an MCP SDK: the proxy relays every message it does
//! not gate unchanged, which an SDK that types every message cannot promise.

use serde_json::{json, Value};
use std::io::{BufRead, Read, Write};
use std::sync::Mutex;

/// JSON-RPC's "invalid request" and "invalid params" codes, and the range left to servers.
pub const INVALID_REQUEST: i64 = -32600;
pub const INVALID_PARAMS: i64 = -32602;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const PARSE_ERROR: i64 = -32700;
pub const SERVER_ERROR: i64 = -32000;

/// The protocol versions `jitgate mcp serve` speaks, newest first.
pub const PROTOCOL_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// What a message is, by its members.
#[derive(Debug, PartialEq)]
pub enum Kind<'a> {
    Request { id: &'a Value, method: &'a str },
    Notification { method: &'a str },
    Response { id: &'a Value },
    Other,
}

pub fn kind(message: &Value) -> Kind<'_> {
    let method = message.get("method").and_then(Value::as_str);
    let id = message.get("id").filter(|id| !id.is_null());
    match (method, id) {
        (Some(method), Some(id)) => Kind::Request { id, method },
        (Some(method), None) => Kind::Notification { method },
        (None, Some(id)) if message.get("result").is_some() || message.get("error").is_some() => Kind::Response { id },
        _ => Kind::Other,
    }
}

/// The members of a JSON-RPC message.
const MEMBERS: &[&str] = &["jsonrpc", "id", "method", "params", "result", "error"];

/// `key` as a lenient parser might read it: Go's `encoding/json` (behind the Go MCP SDKs)
/// matches member names without regard to case, folding `ſ` to `s` and the Kelvin sign to `k`,
/// and some parsers drop NUL and other control characters from names.
fn leniently(key: &str) -> String {
    key.chars()
        .filter(|c| !c.is_control() && !jitgate_core::text::is_invisible(*c))
        .map(|c| match c {
            '\u{017F}' => 's',
            '\u{212A}' => 'k',
            c => c,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// Why `message` could mean something else to the upstream than to the proxy, if it could: a
/// member name that is not one of JSON-RPC's but that a lenient parser reads as one (`Method`,
/// `method\u0000`, `ſ` for `s`), or a method that reads as `tools/call` that way. Such a message
/// could carry a tool call past the gate to a Go upstream, so it is never forwarded.
pub fn ambiguity(message: &Value) -> Option<String> {
    let Value::Object(members) = message else {
        return None;
    };
    for key in members.keys() {
        let read = leniently(key);
        if !MEMBERS.contains(&key.as_str()) && MEMBERS.contains(&read.as_str()) {
            return Some(format!(
                "the member name {key:?} is not {read:?}, but some servers read it as that; use the exact name"
            ));
        }
    }
    if let Some(method) = members.get("method").and_then(Value::as_str) {
        if method != "tools/call" && leniently(method) == "tools/call" {
            return Some(format!(
                "the method {method:?} is not \"tools/call\", but some servers read it as that; use the exact name"
            ));
        }
    }
    None
}

/// A request's id as a map key: its JSON text, so that `1` and `"1"` stay apart.
pub fn key(id: &Value) -> String {
    id.to_string()
}

pub fn result(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

pub fn error(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// A tool call's failure as MCP says it: a result the model reads, marked `isError`.
pub fn tool_error(id: &Value, text: &str) -> Value {
    result(
        id,
        json!({"content": [{"type": "text", "text": text}], "isError": true}),
    )
}

pub fn progress(token: &Value, progress: u64, message: &str) -> Value {
    json!({
        "jsonrpc": "2.0",
        "method": "notifications/progress",
        "params": {"progressToken": token, "progress": progress, "message": message},
    })
}

/// Where messages are written, one line each, whole: threads take turns.
pub struct Out {
    inner: Mutex<Box<dyn Write + Send>>,
}

impl Out {
    pub fn new(inner: Box<dyn Write + Send>) -> Out {
        Out {
            inner: Mutex::new(inner),
        }
    }

    /// Write one message's bytes and a newline. A reader that went away is not this
    /// writer's concern: the input side sees its end and stops the process.
    pub fn line(&self, bytes: &[u8]) {
        if let Ok(mut out) = self.inner.lock() {
            let written = out
                .write_all(bytes)
                .and_then(|()| out.write_all(b"\n"))
                .and_then(|()| out.flush());
            if let Err(e) = written {
                eprintln!("jitgate mcp: cannot write to the client: {e}");
            }
        }
    }

    pub fn send(&self, message: &Value) {
        self.line(message.to_string().as_bytes());
    }
}

/// The longest message line read: a peer that sends more without a line end is broken or
/// hostile, and is not allowed to fill memory.
pub const MAX_LINE: u64 = 16 * 1024 * 1024;

/// The next line of `reader` without its line ending; `None` at the end of input; an error for
/// a line longer than `MAX_LINE`.
pub fn read_line(reader: &mut impl BufRead) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    if reader.by_ref().take(MAX_LINE + 1).read_until(b'\n', &mut line)? == 0 {
        return Ok(None);
    }
    if line.len() as u64 > MAX_LINE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a message line longer than {MAX_LINE} bytes"),
        ));
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    Ok(Some(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_told_by_their_members() {
        let request = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call"});
        assert_eq!(
            kind(&request),
            Kind::Request {
                id: &json!(1),
                method: "tools/call"
            }
        );
        let note = json!({"jsonrpc": "2.0", "method": "notifications/cancelled"});
        assert_eq!(
            kind(&note),
            Kind::Notification {
                method: "notifications/cancelled"
            }
        );
        // A null id is no id: a notification, which gets no answer.
        let null_id = json!({"jsonrpc": "2.0", "id": null, "method": "tools/call"});
        assert_eq!(kind(&null_id), Kind::Notification { method: "tools/call" });
        let answer = json!({"jsonrpc": "2.0", "id": "a", "result": {}});
        assert_eq!(kind(&answer), Kind::Response { id: &json!("a") });
        assert_eq!(kind(&json!([1])), Kind::Other);
        assert_ne!(key(&json!(1)), key(&json!("1")));
    }

    #[test]
    fn names_a_lenient_parser_reads_as_members_are_ambiguous() {
        for message in [
            json!({"jsonrpc": "2.0", "id": 7, "Method": "tools/call", "params": {}}),
            json!({"jsonrpc": "2.0", "id": 8, "method": "ping", "METHOD": "tools/call"}),
            json!({"jsonrpc": "2.0", "id": 9, "method\u{0000}": "tools/call"}),
            json!({"jsonrpc": "2.0", "id": 9, "method\u{200B}": "tools/call"}),
            json!({"jsonrpc": "2.0", "id": 10, "method": "ping", "param\u{017F}": {}}),
            json!({"jsonrpc": "2.0", "id": 11, "method": "Tools/Call"}),
            json!({"jsonrpc": "2.0", "id": 12, "method": "tools/call\u{0000}"}),
            json!({"jsonrpc": "2.0", "\u{212A}ind": 1, "Id": 13, "method": "ping"}),
        ] {
            assert!(ambiguity(&message).is_some(), "{message}");
        }
        for message in [
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "x"}}),
            json!({"jsonrpc": "2.0", "id": 1, "result": {}, "extra": true}),
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        ] {
            assert_eq!(ambiguity(&message), None, "{message}");
        }
    }

    #[test]
    fn lines_lose_their_endings_and_keep_everything_else() {
        let mut input = std::io::Cursor::new(b"{\"a\":1}\r\n\n{\"b\":\"\\u0000\"}".to_vec());
        assert_eq!(read_line(&mut input).unwrap(), Some(b"{\"a\":1}".to_vec()));
        assert_eq!(read_line(&mut input).unwrap(), Some(Vec::new()));
        assert_eq!(read_line(&mut input).unwrap(), Some(b"{\"b\":\"\\u0000\"}".to_vec()));
        assert_eq!(read_line(&mut input).unwrap(), None);
    }
}
