//! `jitgate mcp proxy` and `jitgate mcp serve` driven by real MCP software: the official MCP
//! Python SDK as the agent (scripts/mcp/agent.py: ClientSession over stdio_client) and an
//! upstream server built with it (scripts/mcp/upstream.py: FastMCP), which logs every call it
//! executes so that these tests count what really ran, and with which arguments.
//! scripts/mcp.sh makes the SDK's virtualenv (target/venv-mcp) the first time.

use crate::support::*;
use serde_json::{json, Value};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The agent: an API token of its own, acting for alice (`jitgate token create --agent-for`).
const AGENT: &str = "claude-alice";
const BOB: &str = "demo-bob";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

/// The SDK's python, installed on first use.
fn python() -> PathBuf {
    let out = Command::new(repo().join("scripts/mcp.sh"))
        .arg("venv")
        .output()
        .expect("scripts/mcp.sh");
    assert!(
        out.status.success(),
        "scripts/mcp.sh venv: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A server with the `files` policy, and a directory of files for the upstream.
struct Bed {
    s: Server,
    /// The agent's bearer token.
    agent: String,
    work: tempfile::TempDir,
    python: PathBuf,
}

impl Bed {
    fn start() -> Bed {
        let python = python();
        // The quickstart's `files`: reads automatic for dev (and so for alice's agents), writes
        // and deletes reviewed by one sre and bound to the exact call.
        let s = Server::start();
        let (status, token) = s.post(
            "/v1/tokens",
            "demo-admin",
            json!({"principal": AGENT, "agent_for": "alice", "label": "the MCP tests' agent"}),
        );
        assert_eq!(status, 201, "{token}");
        let agent = token["token"].as_str().unwrap().to_string();
        let work = tempfile::tempdir().unwrap();
        std::fs::create_dir(work.path().join("root")).unwrap();
        std::fs::write(work.path().join("root/notes.txt"), "hello from the notes\n").unwrap();
        std::fs::write(work.path().join("root/a.txt"), "a").unwrap();
        Bed { s, agent, work, python }
    }

    fn root(&self) -> PathBuf {
        self.work.path().join("root")
    }

    /// The upstream server's command: stdio, logging to calls.log.
    fn upstream(&self) -> Vec<String> {
        vec![
            self.python.display().to_string(),
            repo().join("scripts/mcp/upstream.py").display().to_string(),
            "--root".into(),
            self.root().display().to_string(),
            "--log".into(),
            self.work.path().join("calls.log").display().to_string(),
            "--pid-file".into(),
            self.work.path().join("upstream.pid").display().to_string(),
        ]
    }

    /// Every call the upstream executed, in order.
    fn executed(&self) -> Vec<Value> {
        std::fs::read_to_string(self.work.path().join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The SDK agent running `steps` against `server` (a command), as the bearer of `token`.
    fn agent(&self, token: &str, steps: Value, server: &[String]) -> Agent {
        let stderr = self.work.path().join(format!("agent-{}.log", free_port()));
        let mut child = Command::new(&self.python)
            .arg(repo().join("scripts/mcp/agent.py"))
            .arg("--script")
            .arg(steps.to_string())
            .arg("--")
            .args(server)
            .env("JITGATE_URL", &self.s.url)
            .env("JITGATE_TOKEN", token)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("python agent");
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        Agent { child, lines, stderr }
    }

    /// The agent behind `jitgate mcp proxy --resource files [extra] -- upstream`.
    fn proxied(&self, token: &str, steps: Value, extra: &[&str]) -> Agent {
        let mut server = vec![
            BIN.to_string(),
            "mcp".into(),
            "proxy".into(),
            "--resource".into(),
            "files".into(),
        ];
        server.extend(extra.iter().map(|s| s.to_string()));
        server.push("--".into());
        server.extend(self.upstream());
        self.agent(token, steps, &server)
    }

    fn pending_for(&self, tool: &str, except: &[String]) -> Value {
        pending_request(&self.s, |r| r["action"] == tool && !except.contains(&id(r)))
    }

    fn decide(&self, request: &str, how: &str, comment: &str) {
        let (status, v) = self.s.post(
            &format!("/v1/requests/{request}/{how}"),
            BOB,
            json!({"comment": comment}),
        );
        assert_eq!(status, 200, "{v}");
    }
}

struct Agent {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: PathBuf,
}

impl Agent {
    /// The next step's result.
    fn next(&self, within: Duration) -> Value {
        match self.lines.recv_timeout(within) {
            Ok(line) => serde_json::from_str(&line).unwrap(),
            Err(e) => panic!(
                "no answer from the agent within {within:?} ({e}); its log:\n{}",
                std::fs::read_to_string(&self.stderr).unwrap_or_default()
            ),
        }
    }

    /// Nothing answered for `long`: the step is still waiting.
    fn still_waiting(&self, long: Duration) {
        if let Ok(line) = self.lines.recv_timeout(long) {
            panic!("the agent was answered while the call should wait: {line}");
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- agent and proxy log ---\n{}", self.log());
        }
    }
}

fn call(tool: &str, arguments: Value) -> Value {
    json!({"call": tool, "arguments": arguments})
}

fn canonical(tool: &str, arguments: &Value) -> String {
    jitgate_core::canonical::tool_call_payload(tool, arguments)
}

const QUICK: Duration = Duration::from_secs(20);

#[test]
fn reads_pass_at_once_and_each_delete_runs_once_after_its_own_approval() {
    let b = Bed::start();
    let delete_a = json!({"path": "a.txt"});
    let write = json!({"path": "c.txt", "content": "approved text"});
    // One byte different from what is approved below.
    let write_other = json!({"path": "c.txt", "content": "approved texT"});
    // The exact write is approved ahead, through the API, with its canonical payload.
    let ahead = b.s.file(
        &b.agent,
        json!({"resource": "files", "action": "write_file", "reason": "ahead", "payload": canonical("write_file", &write)}),
    );
    b.decide(&id(&ahead), "approve", "that exact text");

    let agent = b.proxied(
        &b.agent,
        json!([
            {"list_tools": true},
            call("read_file", json!({"path": "notes.txt"})),
            call("delete_file", delete_a.clone()),
            call("delete_file", delete_a.clone()),
            call("write_file", write_other.clone()),
            call("write_file", write.clone()),
        ]),
        &[],
    );
    let tools = agent.next(QUICK);
    assert_eq!(
        tools["tools"],
        json!(["read_file", "list_directory", "write_file", "delete_file"]),
        "tools/list passes through: {tools}"
    );

    // The read returns at once.
    let read = agent.next(QUICK);
    assert_eq!(read["isError"], false, "{read}");
    assert_eq!(read["text"], "hello from the notes\n");
    assert!(read["seconds"].as_f64().unwrap() < 5.0, "{read}");

    // The delete waits for bob, and does not run meanwhile.
    let first = b.pending_for("delete_file", &[]);
    // Filed by the agent, for alice: both names on the request.
    assert_eq!(first["requester"], AGENT);
    assert_eq!(first["on_behalf_of"], "alice");
    assert_eq!(first["payload"], json!(canonical("delete_file", &delete_a)));
    assert_eq!(
        first["payload"],
        r#"{"arguments":{"path":"a.txt"},"tool":"delete_file"}"#
    );
    assert_eq!(first["single_use"], true, "{first}");
    agent.still_waiting(Duration::from_secs(1));
    assert!(b.root().join("a.txt").exists());
    assert_eq!(b.executed().len(), 1, "{:?}", b.executed());
    b.decide(&id(&first), "approve", "ok");
    let deleted = agent.next(QUICK);
    assert_eq!(deleted["isError"], false, "{deleted}");
    assert_eq!(deleted["text"], "deleted a.txt");
    // The agent heard that it waits, and for which request.
    let progress = deleted["progress"].as_array().unwrap();
    assert!(!progress.is_empty(), "{deleted}");
    let told = progress[0]["message"].as_str().unwrap();
    assert!(told.contains(&id(&first)) && told.contains("/ui/requests/"), "{told}");
    assert!(!b.root().join("a.txt").exists());

    // The same call again needs a new approval: the grant was for one use.
    std::fs::write(b.root().join("a.txt"), "a again").unwrap();
    let second = b.pending_for("delete_file", &[id(&first)]);
    assert_ne!(id(&second), id(&first));
    assert_eq!(second["payload"], first["payload"]);
    agent.still_waiting(Duration::from_millis(500));
    b.decide(&id(&second), "approve", "once more");
    let again = agent.next(QUICK);
    assert_eq!(again["isError"], false, "{again}");

    // A write one byte off what was approved is not run: it is a new request, and bob denies
    // it; the agent's tool error names the request and the decision.
    let other = b.pending_for("write_file", &[]);
    assert_eq!(other["payload"], json!(canonical("write_file", &write_other)));
    b.decide(&id(&other), "deny", "not that text");
    let denied = agent.next(QUICK);
    assert_eq!(denied["isError"], true, "{denied}");
    let text = denied["text"].as_str().unwrap();
    assert!(text.contains(&id(&other)), "{text}");
    assert!(
        text.contains("denied by bob") && text.contains("not that text"),
        "{text}"
    );
    // The exact write approved ahead runs at once, consuming that grant.
    let written = agent.next(QUICK);
    assert_eq!(written["isError"], false, "{written}");
    assert_eq!(
        std::fs::read_to_string(b.root().join("c.txt")).unwrap(),
        "approved text"
    );

    // What ran, exactly: each approved call once, with the approved arguments.
    let executed = b.executed();
    assert_eq!(
        executed,
        vec![
            json!({"tool": "read_file", "arguments": {"path": "notes.txt"}}),
            json!({"tool": "delete_file", "arguments": delete_a}),
            json!({"tool": "delete_file", "arguments": delete_a}),
            json!({"tool": "write_file", "arguments": write}),
        ]
    );
    // Every grant for a reviewed call was used, none is left to use.
    for request in [id(&first), id(&second), id(&ahead)] {
        let (_, r) = b.s.get(&format!("/v1/requests/{request}"), &b.agent);
        assert_eq!(r["grant"]["status"], "used", "{r}");
    }
    let (_, active) = b.s.get("/v1/grants?status=active", &b.agent);
    assert!(
        active["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["action"] == "read_file"),
        "{active}"
    );
}

#[test]
fn a_tool_without_a_workflow_is_refused_and_never_forwarded() {
    let b = Bed::start();
    let agent = b.proxied(
        &b.agent,
        json!([call("move_file", json!({"source": "a.txt", "destination": "b.txt"}))]),
        &[],
    );
    let refused = agent.next(QUICK);
    assert_eq!(refused["isError"], true, "{refused}");
    let text = refused["text"].as_str().unwrap();
    assert!(
        text.contains("move_file") && text.contains("files") && text.contains("no workflow"),
        "{text}"
    );
    assert!(b.executed().is_empty());
    let (_, requests) = b.s.get("/v1/requests", &b.agent);
    assert_eq!(requests["items"], json!([]), "nothing was filed: {requests}");
}

#[test]
fn a_timed_out_or_cancelled_call_cancels_its_request_and_never_runs() {
    let b = Bed::start();
    let agent = b.proxied(
        &b.agent,
        json!([
            call("delete_file", json!({"path": "a.txt"})),
            {"call": "write_file", "arguments": {"path": "d.txt", "content": "x"}, "cancel_after": 1},
            {"sleep": 1},
        ]),
        // Well above the agent's cancel after 1 s, so the agent's cancel comes first even when
        // its event loop stalls on a loaded machine.
        &["--timeout", "5s"],
    );
    let timed_out = agent.next(QUICK);
    assert_eq!(timed_out["isError"], true, "{timed_out}");
    let text = timed_out["text"].as_str().unwrap();
    let (_, list) = b.s.get("/v1/requests?status=cancelled", &b.agent);
    let delete = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "delete_file")
        .cloned()
        .unwrap_or_else(|| panic!("the timed-out request is cancelled: {list}"));
    assert!(text.contains(&id(&delete)) && text.contains("cancelled"), "{text}");

    // The agent gives up on the write (notifications/cancelled): its request is cancelled too.
    let cancelled = agent.next(QUICK);
    assert_eq!(cancelled["cancelled"], true, "{cancelled}");
    wait_until("the cancelled call's request is cancelled", || {
        let (_, list) = b.s.get("/v1/requests?status=cancelled", &b.agent);
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["action"] == "write_file")
    });
    agent.next(QUICK);
    assert!(b.executed().is_empty(), "{:?}", b.executed());
}

#[test]
fn a_credential_that_expires_mid_wait_ends_the_call_without_running_it() {
    let b = Bed::start();
    // The credential must outlive the start of two Python programs one after the other (the
    // agent, then through the proxy the upstream) and the filing, on a loaded machine too; it
    // expires while the call waits, and the refusal comes within a wait that covers its life.
    const TTL: Duration = Duration::from_secs(20);
    let (status, made) = b.s.post(
        "/v1/tokens",
        "demo-admin",
        json!({"principal": "claude-alice-2", "agent_for": "alice", "ttl": format!("{}s", TTL.as_secs()), "label": "agent"}),
    );
    assert_eq!(status, 201, "{made}");
    let token = made["token"].as_str().unwrap().to_string();
    let agent = b.proxied(&token, json!([call("delete_file", json!({"path": "a.txt"}))]), &[]);
    let waiting = b.pending_for("delete_file", &[]);
    let refused = agent.next(TTL + QUICK);
    assert_eq!(refused["isError"], true, "{refused}");
    let text = refused["text"].as_str().unwrap();
    assert!(text.contains("credential") && text.contains(&id(&waiting)), "{text}");
    // Approving now grants nothing that runs: the agent is no longer waiting for it.
    b.decide(&id(&waiting), "approve", "late");
    std::thread::sleep(Duration::from_millis(300));
    assert!(b.executed().is_empty(), "{:?}", b.executed());
}

#[test]
fn an_upstream_that_dies_ends_waiting_calls_and_leaves_no_grant() {
    let b = Bed::start();
    let agent = b.proxied(
        &b.agent,
        json!([
            call("read_file", json!({"path": "notes.txt"})),
            call("delete_file", json!({"path": "a.txt"})),
        ]),
        &[],
    );
    assert_eq!(agent.next(QUICK)["isError"], false);
    let waiting = b.pending_for("delete_file", &[]);
    let pid = std::fs::read_to_string(b.work.path().join("upstream.pid")).unwrap();
    let killed = Command::new("kill").args(["-9", pid.trim()]).status().unwrap();
    assert!(killed.success());
    let ended = agent.next(QUICK);
    assert_eq!(ended["isError"], true, "{ended}");
    let text = ended["text"].as_str().unwrap();
    assert!(text.contains("exited") && text.contains(&id(&waiting)), "{text}");
    let (_, r) = b.s.get(&format!("/v1/requests/{}", id(&waiting)), &b.agent);
    assert_eq!(r["status"], "cancelled", "{r}");
    let (_, active) = b.s.get("/v1/grants?status=active", &b.agent);
    assert!(
        active["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["action"] != "delete_file"),
        "{active}"
    );
    assert_eq!(b.executed().len(), 1, "{:?}", b.executed());
    assert!(agent.log().contains("exited"), "{}", agent.log());
}

/// The SDK-built upstream serving streamable HTTP, once it listens: the process and its URL.
fn http_upstream(b: &Bed) -> (Child, String) {
    let port = free_port();
    let upstream = Command::new(&b.python)
        .args(&b.upstream()[1..])
        .args(["--http-port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the HTTP upstream did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    (upstream, format!("http://127.0.0.1:{port}/mcp"))
}

#[test]
fn a_streamable_http_upstream_that_goes_away_ends_the_proxy() {
    let b = Bed::start();
    let (mut upstream, url) = http_upstream(&b);
    let args: Vec<String> = ["mcp", "proxy", "--resource", "files", "--upstream-url", &url]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut raw = Raw::spawn(&b, &args);
    raw.send(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#);
    assert_eq!(raw.answer(json!(1))["result"]["serverInfo"]["name"], "files");
    raw.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    raw.send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"notes.txt"}}}"#);
    assert_eq!(raw.answer(json!(2))["result"]["isError"], false);
    upstream.kill().unwrap();
    upstream.wait().unwrap();
    raw.send(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"notes.txt"}}}"#);
    let refused = raw.answer(json!(3));
    let text = refused["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("cannot be reached"), "{refused}");
    let deadline = Instant::now() + QUICK;
    while raw.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the proxy outlived its upstream");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(b.executed().len(), 1, "{:?}", b.executed());
}

#[test]
fn a_streamable_http_upstream_is_gated_the_same() {
    let b = Bed::start();
    let (mut upstream, url) = http_upstream(&b);
    let server: Vec<String> = [BIN, "mcp", "proxy", "--resource", "files", "--upstream-url", &url]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let agent = b.agent(
        &b.agent,
        json!([
            {"list_tools": true},
            call("read_file", json!({"path": "notes.txt"})),
            call("delete_file", json!({"path": "a.txt"})),
        ]),
        &server,
    );
    assert_eq!(agent.next(QUICK)["tools"].as_array().map(Vec::len), Some(4));
    assert_eq!(agent.next(QUICK)["text"], "hello from the notes\n");
    let waiting = b.pending_for("delete_file", &[]);
    agent.still_waiting(Duration::from_millis(500));
    b.decide(&id(&waiting), "approve", "ok");
    let deleted = agent.next(QUICK);
    assert_eq!(deleted["isError"], false, "{deleted}");
    assert_eq!(b.executed().len(), 2, "{:?}", b.executed());
    let _ = upstream.kill();
    let _ = upstream.wait();
}

#[test]
fn mcp_serve_lets_an_agent_ask_follow_and_end_its_access() {
    let b = Bed::start();
    let server: Vec<String> = [BIN, "mcp", "serve"].iter().map(|s| s.to_string()).collect();
    let agent = b.agent(
        &b.agent,
        json!([
            {"list_tools": true},
            call("request_access", json!({"resource": "staging-db", "action": "read", "reason": "look", "duration": "10m"})),
            call("my_grants", json!({})),
            call("request_access", json!({"resource": "prod-db", "action": "read", "reason": "INC-7"})),
            call("request_access", json!({"resource": "prod-db", "action": "read", "reason": ""})),
            call("request_status", json!({"id": "../tokens"})),
            call("request_access", json!({"resource": "nowhere", "action": "read", "reason": "x"})),
        ]),
        &server,
    );
    let tools = agent.next(QUICK);
    assert_eq!(
        tools["tools"],
        json!(["request_access", "request_status", "my_grants", "done"]),
        "{tools}"
    );
    let granted = agent.next(QUICK);
    assert_eq!(granted["isError"], false, "{granted}");
    let granted: Value = serde_json::from_str(granted["text"].as_str().unwrap()).unwrap();
    assert_eq!(granted["status"], "approved", "{granted}");
    let grant = granted["grant"]["id"].as_str().unwrap().to_string();
    let mine = agent.next(QUICK);
    assert!(mine["text"].as_str().unwrap().contains(&grant), "{mine}");
    let pending = agent.next(QUICK);
    let pending: Value = serde_json::from_str(pending["text"].as_str().unwrap()).unwrap();
    assert_eq!(pending["status"], "pending", "{pending}");
    assert!(pending["link"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/ui/requests/{}", pending["id"].as_str().unwrap())));
    // The server's own refusals come back as tool errors with its message.
    let no_reason = agent.next(QUICK);
    assert_eq!(no_reason["isError"], true, "{no_reason}");
    assert!(no_reason["text"].as_str().unwrap().contains("reason"), "{no_reason}");
    let walked = agent.next(QUICK);
    assert_eq!(walked["isError"], true, "{walked}");
    assert!(walked["text"].as_str().unwrap().starts_with("id: "), "{walked}");
    let nowhere = agent.next(QUICK);
    assert_eq!(nowhere["isError"], true, "{nowhere}");
    drop(agent);

    // Waiting for a decision, and ending a grant.
    let request = pending["id"].as_str().unwrap().to_string();
    let agent = b.agent(
        &b.agent,
        json!([
            call("request_status", json!({"id": request, "wait_seconds": 30})),
            call("done", json!({"grant_id": grant, "outcome": "looked"})),
            call("request_status", json!({"id": request, "wait_seconds": 61})),
        ]),
        &server,
    );
    std::thread::sleep(Duration::from_millis(500));
    b.decide(&request, "approve", "go");
    let decided = agent.next(QUICK);
    let decided: Value = serde_json::from_str(decided["text"].as_str().unwrap()).unwrap();
    assert_eq!(decided["status"], "approved", "{decided}");
    assert_eq!(decided["approvals"][0]["by"], "bob", "{decided}");
    let ended = agent.next(QUICK);
    assert_eq!(ended["isError"], false, "{ended}");
    let (_, grants) = b.s.get("/v1/grants?status=active", &b.agent);
    assert!(
        grants["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["id"] != grant.as_str()),
        "{grants}"
    );
    let too_long = agent.next(QUICK);
    assert_eq!(too_long["isError"], true, "{too_long}");
    assert!(
        too_long["text"].as_str().unwrap().contains("wait_seconds"),
        "{too_long}"
    );
}

/// The proxy spoken to directly, one raw line at a time, as a broken or hostile agent would.
struct Raw {
    child: Child,
    stdin: std::process::ChildStdin,
    lines: mpsc::Receiver<String>,
    seen: Vec<Value>,
}

impl Raw {
    fn start(b: &Bed) -> Raw {
        Self::start_with(b, &[])
    }

    /// The proxy with `extra` arguments for the upstream.
    fn start_with(b: &Bed, extra: &[&str]) -> Raw {
        let mut args: Vec<String> = ["mcp", "proxy", "--resource", "files", "--"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(b.upstream());
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::spawn(b, &args)
    }

    fn spawn(b: &Bed, args: &[String]) -> Raw {
        let mut child = Command::new(BIN)
            .args(args)
            .env("JITGATE_URL", &b.s.url)
            .env("JITGATE_TOKEN", &b.agent)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        Raw {
            stdin: child.stdin.take().unwrap(),
            child,
            lines,
            seen: Vec::new(),
        }
    }

    fn send(&mut self, line: &str) {
        use std::io::Write;
        self.stdin.write_all(line.as_bytes()).unwrap();
        self.stdin.write_all(b"\n").unwrap();
        self.stdin.flush().unwrap();
    }

    /// The answer to request `id` (or the first message matching `wanted`), keeping the rest.
    fn until(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.seen.iter().position(&wanted) {
            return self.seen.remove(i);
        }
        loop {
            let line = self
                .lines
                .recv_timeout(QUICK)
                .unwrap_or_else(|e| panic!("no such answer ({e}); seen: {:?}", self.seen));
            let message: Value = serde_json::from_str(&line).unwrap();
            if wanted(&message) {
                return message;
            }
            self.seen.push(message);
        }
    }

    fn answer(&mut self, id: Value) -> Value {
        self.until(|m| m["id"] == id && m.get("method").is_none())
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn what_the_proxy_cannot_judge_never_reaches_the_upstream() {
    let b = Bed::start();
    let mut raw = Raw::start(&b);
    raw.send(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw\u0007agent","version":"1"}}}"#);
    let init = raw.answer(json!(1));
    assert_eq!(init["result"]["serverInfo"]["name"], "files", "{init}");
    raw.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);

    // Not JSON: a parse error, not forwarded (another parser might find a call in it).
    raw.send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_file",}"#);
    let parse = raw.until(|m| m["error"]["code"] == -32700);
    assert!(
        parse["error"]["message"].as_str().unwrap().contains("not forwarded"),
        "{parse}"
    );
    // A call without an id, whose outcome nobody could be told: dropped.
    raw.send(r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"delete_file","arguments":{"path":"a.txt"}}}"#);
    // A call inside a batch: refused; calls are judged one by one.
    raw.send(r#"[{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"notes.txt"}}}]"#);
    assert_eq!(raw.answer(json!(3))["error"]["code"], -32600);
    // Arguments that are no object.
    raw.send(r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"read_file","arguments":"notes.txt"}}"#);
    assert_eq!(raw.answer(json!(4))["error"]["code"], -32602);
    raw.send(r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"arguments":{}}}"#);
    assert_eq!(raw.answer(json!(5))["error"]["code"], -32602);
    // A NUL byte or a bidi control in the tool's name: jitgate refuses to judge it.
    for (id, name) in [(6, "read_file\\u0000"), (7, "read_file\\u202e")] {
        raw.send(&format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{name}","arguments":{{"path":"notes.txt"}}}}}}"#
        ));
        let refused = raw.answer(json!(id));
        assert_eq!(refused["result"]["isError"], true, "{refused}");
    }
    // A look-alike of a tool with a workflow (Cyrillic і) has none of its own.
    raw.send(r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"read_fіle","arguments":{"path":"notes.txt"}}}"#);
    let lookalike = raw.answer(json!(8));
    assert!(
        lookalike["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("no workflow"),
        "{lookalike}"
    );
    // Member names a lenient parser (Go's encoding/json, behind the Go MCP SDKs) reads as
    // JSON-RPC's own: a call hidden as `Method`, behind a ping, or with a NUL in the name, and
    // a method that reads as tools/call; refused, never forwarded.
    for (id, line) in [
        (
            11,
            r#"{"jsonrpc":"2.0","id":11,"Method":"tools/call","params":{"name":"delete_file","arguments":{"path":"a.txt"}}}"#,
        ),
        (
            12,
            r#"{"jsonrpc":"2.0","id":12,"method":"ping","METHOD":"tools/call","params":{"name":"delete_file","arguments":{"path":"a.txt"}}}"#,
        ),
        (
            13,
            r#"{"jsonrpc":"2.0","id":13,"method\u0000":"tools/call","params":{"name":"delete_file","arguments":{"path":"a.txt"}}}"#,
        ),
        (
            14,
            r#"{"jsonrpc":"2.0","id":14,"method":"Tools/Call","params":{"name":"delete_file","arguments":{"path":"a.txt"}}}"#,
        ),
        (
            15,
            r#"{"jsonrpc":"2.0","id":15,"method":"ping","param\u017f":{"name":"delete_file"}}"#,
        ),
    ] {
        raw.send(line);
        let refused = raw.answer(json!(id));
        assert_eq!(refused["error"]["code"], -32600, "{refused}");
        assert!(
            refused["error"]["message"].as_str().unwrap().contains("not forwarded"),
            "{refused}"
        );
    }
    // A call whose params also carry look-alike members (`Name`, `Arguments`): judged as read
    // by its exact members, and forwarded rebuilt from them alone.
    raw.send(r#"{"jsonrpc":"2.0","id":16,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"notes.txt"},"Name":"delete_file","Arguments":{"path":"a.txt"}}}"#);
    assert_eq!(raw.answer(json!(16))["result"]["isError"], false);
    // Two names in one call: what is judged is what the proxy read (the last), and only that
    // is forwarded, written again, so the upstream cannot read the other.
    raw.send(r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"read_file","name":"delete_file","arguments":{"path":"a.txt"}}}"#);
    let judged = b.pending_for("delete_file", &[]);
    assert_eq!(
        judged["payload"],
        json!(canonical("delete_file", &json!({"path": "a.txt"})))
    );
    // The same id again while it waits: refused, the waiting one goes on.
    raw.send(r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"notes.txt"}}}"#);
    assert_eq!(raw.answer(json!(9))["error"]["code"], -32600);
    // Everything else passes through, and answers come back as the upstream wrote them.
    raw.send(r#"{"jsonrpc":"2.0","id":"p","method":"ping"}"#);
    assert_eq!(raw.answer(json!("p"))["result"], json!({}));
    raw.send(r#"{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"notes.txt"},"_meta":{"progressToken":"t"}}}"#);
    let read = raw.answer(json!(10));
    assert_eq!(read["result"]["isError"], false, "{read}");
    // The agent gives up on the waiting call: its request is cancelled, it gets no answer.
    raw.send(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":9}}"#);
    wait_until("the abandoned call's request is cancelled", || {
        let (_, r) = b.s.get(&format!("/v1/requests/{}", id(&judged)), &b.agent);
        r["status"] == "cancelled"
    });
    // The default reason names the agent, its control character left out.
    assert_eq!(judged["reason"], "MCP tool call delete_file by rawagent");
    assert_eq!(
        b.executed(),
        vec![
            json!({"tool": "read_file", "arguments": {"path": "notes.txt"}}),
            json!({"tool": "read_file", "arguments": {"path": "notes.txt"}})
        ]
    );
}

#[test]
fn the_reference_filesystem_server_runs_behind_the_proxy() {
    if Command::new("npm").arg("--version").output().is_err() {
        eprintln!("skipped: npm is not installed (scripts/test.sh installs nodejs and npm)");
        return;
    }
    let out = Command::new(repo().join("scripts/mcp.sh"))
        .arg("filesystem")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/mcp.sh filesystem: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entry = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let b = Bed::start();
    let root = b.root().canonicalize().unwrap();
    let at = |name: &str| root.join(name).display().to_string();
    let server: Vec<String> = [BIN, "mcp", "proxy", "--resource", "files", "--", "node", &entry]
        .iter()
        .map(|s| s.to_string())
        .chain([root.display().to_string()])
        .collect();
    let agent = b.agent(
        &b.agent,
        json!([
            call("list_directory", json!({"path": at("")})),
            call("write_file", json!({"path": at("new.txt"), "content": "written once"})),
            call(
                "move_file",
                json!({"source": at("a.txt"), "destination": at("moved.txt")})
            ),
        ]),
        &server,
    );
    let listed = agent.next(QUICK);
    assert_eq!(listed["isError"], false, "{listed}");
    assert!(listed["text"].as_str().unwrap().contains("notes.txt"), "{listed}");
    let waiting = b.pending_for("write_file", &[]);
    agent.still_waiting(Duration::from_millis(500));
    assert!(!root.join("new.txt").exists());
    b.decide(&id(&waiting), "approve", "ok");
    let written = agent.next(QUICK);
    assert_eq!(written["isError"], false, "{written}");
    assert_eq!(std::fs::read_to_string(root.join("new.txt")).unwrap(), "written once");
    let moved = agent.next(QUICK);
    assert_eq!(moved["isError"], true, "{moved}");
    assert!(root.join("a.txt").exists() && !root.join("moved.txt").exists());
}

#[test]
fn an_upstream_that_dies_answers_calls_in_flight_and_the_proxy_exits() {
    let b = Bed::start();
    let mut raw = Raw::start_with(&b, &["--stall", "slow.txt"]);
    raw.send(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#);
    raw.answer(json!(1));
    raw.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    // A read forwarded and never answered, and a delete waiting for approval.
    raw.send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"slow.txt"}}}"#);
    wait_until("the read reaches the upstream", || b.executed().len() == 1);
    raw.send(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"delete_file","arguments":{"path":"a.txt"}}}"#);
    let waiting = b.pending_for("delete_file", &[]);
    let pid = std::fs::read_to_string(b.work.path().join("upstream.pid")).unwrap();
    assert!(Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap()
        .success());

    let in_flight = raw.answer(json!(2));
    assert_eq!(in_flight["result"]["isError"], true, "{in_flight}");
    let text = in_flight["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("exited") && text.contains("no answer"), "{text}");
    let waited = raw.answer(json!(3));
    let text = waited["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("exited") && text.contains(&id(&waiting)) && text.contains("not run"),
        "{text}"
    );
    // The proxy ends, with a failure status, and nothing is left to approve or use.
    let deadline = Instant::now() + QUICK;
    let status = loop {
        if let Some(status) = raw.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the proxy outlived its upstream");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1));
    let (_, r) = b.s.get(&format!("/v1/requests/{}", id(&waiting)), &b.agent);
    assert_eq!(r["status"], "cancelled", "{r}");
    assert_eq!(b.executed().len(), 1, "{:?}", b.executed());
}

#[test]
fn a_proxy_stopped_by_a_signal_cancels_what_its_calls_wait_for() {
    let b = Bed::start();
    let mut raw = Raw::start(&b);
    raw.send(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#);
    raw.answer(json!(1));
    raw.send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_file","arguments":{"path":"a.txt"}}}"#);
    let waiting = b.pending_for("delete_file", &[]);
    let stopped = Command::new("kill")
        .args(["-TERM", &raw.child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let status = raw.child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let (_, r) = b.s.get(&format!("/v1/requests/{}", id(&waiting)), &b.agent);
    assert_eq!(r["status"], "cancelled", "{r}");
    assert!(b.executed().is_empty(), "{:?}", b.executed());
}
