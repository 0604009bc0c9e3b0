//! The MCP server behind the proxy: a command spoken to over its standard input and output, or
//! a streamable HTTP endpoint (MCP 2025-03-26 and later). Either way, what it says is handed to
//! the proxy line by line, and its end (an exit, a connection refused) is reported once.

use super::jsonrpc::{self, Kind};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the upstream says, and its end.
pub trait Downstream: Send + Sync {
    /// One message from the upstream, as it sent it.
    fn upstream_said(&self, line: &[u8]);
    /// The upstream is gone; `why` says how (its exit status, the connection refused).
    fn upstream_gone(&self, why: String);
}

pub trait Upstream: Send + Sync {
    /// Send one message (its bytes, without a line ending). An error means the upstream cannot
    /// take it: the caller answers the agent.
    fn send(&self, line: Vec<u8>, message: &Value) -> Result<(), String>;
    /// Let it go: close its input and end the process, or end the HTTP session.
    fn close(&self);
}

/// An MCP server run as a child process, speaking newline-delimited JSON-RPC.
pub struct StdioUpstream {
    stdin: Mutex<Option<ChildStdin>>,
    child: Arc<Mutex<Child>>,
}

impl StdioUpstream {
    pub fn start(argv: &[String], down: Arc<dyn Downstream>) -> Result<StdioUpstream, String> {
        let (program, args) = argv
            .split_first()
            .ok_or("name the upstream MCP server's command after --, or give --upstream-url")?;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // Its log goes where the proxy's goes: MCP clients keep a server's stderr.
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the upstream MCP server {program}: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or("the upstream MCP server has no standard output")?;
        let child = Arc::new(Mutex::new(child));
        let watched = child.clone();
        let name = program.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                match jsonrpc::read_line(&mut reader) {
                    Ok(Some(line)) if line.iter().all(u8::is_ascii_whitespace) => {}
                    Ok(Some(line)) => down.upstream_said(&line),
                    Ok(None) => break,
                    Err(e) => {
                        eprintln!("jitgate mcp proxy: cannot read the upstream MCP server: {e}");
                        break;
                    }
                }
            }
            down.upstream_gone(format!("the upstream MCP server {name} {}", exit_of(&watched)));
        });
        Ok(StdioUpstream {
            stdin: Mutex::new(stdin),
            child,
        })
    }
}

/// How the child ended, once it has (it closed its output first; give it a moment).
fn exit_of(child: &Mutex<Child>) -> String {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let status = match child.lock() {
            Ok(mut c) => c.try_wait(),
            Err(_) => return "closed its output".into(),
        };
        match status {
            Ok(Some(status)) => return format!("exited ({status})"),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => return "closed its output".into(),
        }
    }
}

impl Upstream for StdioUpstream {
    fn send(&self, mut line: Vec<u8>, _message: &Value) -> Result<(), String> {
        line.push(b'\n');
        let mut stdin = self.stdin.lock().map_err(|_| "the upstream's input is unusable")?;
        let pipe = stdin.as_mut().ok_or("the upstream's input is closed")?;
        pipe.write_all(&line)
            .and_then(|()| pipe.flush())
            .map_err(|e| format!("cannot write to the upstream MCP server: {e}"))
    }

    fn close(&self) {
        // Closing its input is how MCP's stdio transport asks a server to stop.
        if let Ok(mut stdin) = self.stdin.lock() {
            stdin.take();
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            match self.child.lock().map(|mut c| c.try_wait()) {
                Ok(Ok(None)) => std::thread::sleep(Duration::from_millis(20)),
                _ => return,
            }
        }
        if let Ok(mut child) = self.child.lock() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An MCP server at a streamable HTTP endpoint: every message is POSTed; the answer is JSON or
/// a stream of server-sent events ending with it. The session id the server gives with its
/// answer to `initialize` goes with every later message, as does the protocol version agreed.
pub struct HttpUpstream {
    url: String,
    http: reqwest::blocking::Client,
    session: Mutex<Option<String>>,
    version: Mutex<Option<String>>,
    down: Arc<dyn Downstream>,
}

impl HttpUpstream {
    pub fn new(url: &str, down: Arc<dyn Downstream>) -> Result<Arc<HttpUpstream>, String> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "--upstream-url {url}: give the MCP endpoint's http:// or https:// URL (like http://127.0.0.1:8000/mcp)"
            ));
        }
        // No overall timeout: a tool call may run as long as it runs.
        let http = reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(None)
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(Arc::new(HttpUpstream {
            url: url.to_string(),
            http,
            session: Mutex::new(None),
            version: Mutex::new(None),
            down,
        }))
    }

    fn post(&self, line: Vec<u8>, id: Option<Value>, initialize: bool) {
        let mut request = self
            .http
            .post(&self.url)
            .header("Accept", "application/json, text/event-stream")
            .header("Content-Type", "application/json")
            .body(line);
        if let Some(session) = self.session.lock().ok().and_then(|s| s.clone()) {
            request = request.header("Mcp-Session-Id", session);
        }
        if let Some(version) = self.version.lock().ok().and_then(|v| v.clone()) {
            request = request.header("MCP-Protocol-Version", version);
        }
        let response = match request.send() {
            Ok(r) => r,
            Err(e) => {
                self.down.upstream_gone(format!(
                    "the upstream MCP server at {} cannot be reached ({e})",
                    self.url
                ));
                return;
            }
        };
        let status = response.status();
        if initialize {
            if let Some(session) = response.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()) {
                if let Ok(mut held) = self.session.lock() {
                    *held = Some(session.to_string());
                }
            }
        }
        if !status.is_success() {
            let body = response.text().unwrap_or_default();
            if let Some(id) = id {
                let message = format!(
                    "the upstream MCP server answered HTTP {status}: {}",
                    body.chars().take(500).collect::<String>()
                );
                self.down.upstream_said(
                    jsonrpc::error(&id, jsonrpc::SERVER_ERROR, &message)
                        .to_string()
                        .as_bytes(),
                );
            }
            return;
        }
        let event_stream = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/event-stream"));
        if event_stream {
            self.relay_events(BufReader::new(response), initialize);
        } else {
            match response.bytes() {
                Ok(body) if body.iter().all(u8::is_ascii_whitespace) => {}
                Ok(body) => self.relay(body.trim_ascii(), initialize),
                Err(e) => {
                    if let Some(id) = id {
                        let message = format!("cannot read the upstream MCP server's answer: {e}");
                        self.down.upstream_said(
                            jsonrpc::error(&id, jsonrpc::SERVER_ERROR, &message)
                                .to_string()
                                .as_bytes(),
                        );
                    }
                }
            }
        }
    }

    /// Server-sent events: each event's `data` lines, joined, are one message.
    fn relay_events(&self, mut reader: impl BufRead, initialize: bool) {
        let mut data: Vec<u8> = Vec::new();
        while let Ok(Some(line)) = jsonrpc::read_line(&mut reader) {
            if line.is_empty() {
                if !data.is_empty() {
                    self.relay(&std::mem::take(&mut data), initialize);
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix(b"data:") {
                if data.len() as u64 + rest.len() as u64 > jsonrpc::MAX_LINE {
                    eprintln!(
                        "jitgate mcp proxy: the upstream sent an event longer than {} bytes; its stream is dropped",
                        jsonrpc::MAX_LINE
                    );
                    return;
                }
                if !data.is_empty() {
                    data.push(b'\n');
                }
                data.extend_from_slice(rest.strip_prefix(b" ").unwrap_or(rest));
            }
        }
        if !data.is_empty() {
            self.relay(&data, initialize);
        }
    }

    fn relay(&self, message: &[u8], initialize: bool) {
        let parsed: Option<Value> = serde_json::from_slice(message).ok();
        if initialize {
            let version = parsed
                .as_ref()
                .and_then(|m| m["result"]["protocolVersion"].as_str())
                .map(str::to_string);
            if let (Some(version), Ok(mut held)) = (version, self.version.lock()) {
                *held = Some(version);
            }
        }
        // The agent reads one message per line: a message the server spread over lines is
        // written again on one.
        match parsed {
            Some(value) if message.contains(&b'\n') => self.down.upstream_said(value.to_string().as_bytes()),
            _ => self.down.upstream_said(message),
        }
    }
}

impl Upstream for Arc<HttpUpstream> {
    fn send(&self, line: Vec<u8>, message: &Value) -> Result<(), String> {
        let (id, initialize) = match jsonrpc::kind(message) {
            Kind::Request { id, method } => (Some(id.clone()), method == "initialize"),
            _ => (None, false),
        };
        if id.is_some() {
            // A request may be answered late (a long tool call) or with a stream: each waits
            // on its own thread, so a ping is not held behind it.
            let me = self.clone();
            std::thread::spawn(move || me.post(line, id, initialize));
        } else {
            // Notifications and answers are taken at once (202): in order, on this thread.
            self.post(line, None, false);
        }
        Ok(())
    }

    fn close(&self) {
        let session = self.session.lock().ok().and_then(|s| s.clone());
        if let Some(session) = session {
            let _ = self
                .http
                .delete(&self.url)
                .header("Mcp-Session-Id", session)
                .timeout(Duration::from_secs(5))
                .send();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Heard(Mutex<Vec<String>>);

    impl Downstream for Heard {
        fn upstream_said(&self, line: &[u8]) {
            self.0.lock().unwrap().push(String::from_utf8_lossy(line).into_owned());
        }
        fn upstream_gone(&self, why: String) {
            self.0.lock().unwrap().push(format!("gone: {why}"));
        }
    }

    #[test]
    fn each_event_of_a_stream_is_one_message_on_one_line() {
        let heard = Arc::new(Heard::default());
        let upstream = HttpUpstream::new("http://127.0.0.1:9/mcp", heard.clone()).unwrap();
        let stream = concat!(
            ": a comment\n",
            "event: message\n",
            "id: 1\n",
            "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n",
            "\n",
            "event: message\r\n",
            "data: {\"jsonrpc\":\"2.0\",\"id\":7,\n",
            "data:  \"result\":{\"protocolVersion\":\"2025-06-18\"}}\n",
            "\n",
            "data: {\"last\":true}",
        );
        upstream.relay_events(std::io::Cursor::new(stream.as_bytes().to_vec()), true);
        let heard = heard.0.lock().unwrap().clone();
        assert_eq!(
            heard,
            [
                r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#,
                r#"{"jsonrpc":"2.0","id":7,"result":{"protocolVersion":"2025-06-18"}}"#,
                r#"{"last":true}"#,
            ]
        );
        // The version agreed in the answer to initialize goes with every later message.
        assert_eq!(upstream.version.lock().unwrap().as_deref(), Some("2025-06-18"));
    }

    #[test]
    fn only_http_urls_are_upstreams() {
        let heard: Arc<dyn Downstream> = Arc::new(Heard::default());
        for bad in ["file:///etc/passwd", "127.0.0.1:8000/mcp", ""] {
            let refused = HttpUpstream::new(bad, heard.clone()).err().unwrap_or_default();
            assert!(refused.contains("--upstream-url"), "{bad}: {refused}");
        }
    }
}
