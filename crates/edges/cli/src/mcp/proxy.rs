//! `jitgate mcp proxy`: an MCP server's approval gate. Every message between the agent and the
//! upstream server passes through unchanged, except `tools/call`: each call of tool T is the
//! action T on the catalog resource `--resource`, and is forwarded only once one of the agent's
//! grants allows that exact call (`POST /v1/grants/use` with the call's canonical payload). A
//! call no grant allows yet is filed as a request, waited for (the agent hears progress), and
//! forwarded once, after its approval, with the grant consumed; anything else ends in a tool
//! error naming the request and the decision. An unapproved call, or one whose arguments differ
//! from what was approved, never reaches the upstream.

use super::jsonrpc::{self, Kind, Out};
use super::upstream::{Downstream, HttpUpstream, StdioUpstream, Upstream};
use crate::client::{Client, ClientError};
use crate::commands::CommandResult;
use crate::render;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long one long poll of a waiting request lasts: also how often the agent hears progress
/// and how soon a wait notices its upstream is gone.
const POLL: Duration = Duration::from_secs(5);
/// How long the proxy lets waiting calls wind up (cancel, answer) once the upstream is gone.
const WIND_UP: Duration = Duration::from_secs(15);

pub enum UpstreamSpec {
    Command(Vec<String>),
    Url(String),
}

pub struct ProxyArgs {
    pub resource: String,
    pub timeout: Duration,
    pub reason: Option<String>,
    pub duration: Option<String>,
    pub upstream: UpstreamSpec,
}

/// A gated call on its way: the jitgate request once filed, and whether the agent cancelled it.
#[derive(Default)]
struct Gated {
    request: Option<String>,
    cancelled: bool,
}

/// What the catalog says of one tool, for this agent.
#[derive(Clone, Debug)]
struct ToolPolicy {
    /// `None` when the server does not say (before action labels): file with the payload, and
    /// without it if the server refuses a payload.
    action_bound: Option<bool>,
}

pub struct Proxy {
    client: Client,
    resource: String,
    timeout: Duration,
    reason: Option<String>,
    duration: Option<String>,
    agent: Out,
    upstream: OnceLock<Box<dyn Upstream>>,
    /// Requests forwarded to the upstream and not yet answered, with their method.
    forwarded: Mutex<HashMap<String, (Value, String)>>,
    /// Gated calls not yet forwarded or refused.
    gated: Mutex<HashMap<String, Gated>>,
    /// Why the upstream is gone, once it is.
    gone: Mutex<Option<String>>,
    /// The agent's name from `initialize` (`clientInfo.name`), for the default reason.
    agent_name: Mutex<Option<String>>,
    tools: Mutex<HashMap<String, ToolPolicy>>,
    /// Set once the agent has gone and the proxy closes the upstream itself: its end is then
    /// no failure.
    closing: std::sync::atomic::AtomicBool,
}

/// How a gated call ends.
enum Verdict {
    Forward,
    Refuse(String),
    /// The agent cancelled it: it hears nothing more of it.
    Silent,
}

pub fn run(client: &Client, args: ProxyArgs) -> CommandResult {
    let proxy = Arc::new(Proxy {
        client: client.clone(),
        resource: args.resource,
        timeout: args.timeout,
        reason: args.reason,
        duration: args.duration,
        agent: Out::new(Box::new(std::io::stdout())),
        upstream: OnceLock::new(),
        forwarded: Mutex::new(HashMap::new()),
        gated: Mutex::new(HashMap::new()),
        gone: Mutex::new(None),
        agent_name: Mutex::new(None),
        tools: Mutex::new(HashMap::new()),
        closing: std::sync::atomic::AtomicBool::new(false),
    });
    let down: Arc<dyn Downstream> = proxy.clone();
    let upstream: Box<dyn Upstream> = match &args.upstream {
        UpstreamSpec::Command(argv) => Box::new(StdioUpstream::start(argv, down).map_err(ClientError::Other)?),
        UpstreamSpec::Url(url) => Box::new(HttpUpstream::new(url, down).map_err(ClientError::Other)?),
    };
    if proxy.upstream.set(upstream).is_err() {
        return Err(ClientError::Other("the upstream was set twice".into()));
    }
    // Stopped by a signal (a client that gives up on its server sends SIGTERM): nobody waits for
    // the calls still waiting, so their requests are cancelled first.
    let stopped = proxy.clone();
    let handled = ctrlc::set_handler(move || {
        // Closing first: nothing the agent sends from now on is forwarded or filed.
        stopped.closing.store(true, std::sync::atomic::Ordering::SeqCst);
        stopped.cancel_all_waiting();
        if let Some(upstream) = stopped.upstream() {
            upstream.close();
        }
        std::process::exit(130);
    });
    if let Err(e) = handled {
        eprintln!("jitgate mcp proxy: a signal will not cancel waiting requests: {e}");
    }
    let stdin = std::io::stdin();
    let mut reader = stdin.lock();
    loop {
        match jsonrpc::read_line(&mut reader) {
            Ok(Some(line)) => proxy.from_agent(line),
            Ok(None) => break,
            Err(e) => {
                eprintln!("jitgate mcp proxy: cannot read from the agent: {e}");
                break;
            }
        }
    }
    // The agent is gone: nobody waits for the calls still waiting for approval.
    proxy.closing.store(true, std::sync::atomic::Ordering::SeqCst);
    proxy.cancel_all_waiting();
    if let Some(upstream) = proxy.upstream.get() {
        upstream.close();
    }
    Ok(ExitCode::SUCCESS)
}

impl Proxy {
    /// Stopping (a signal, or the agent's input ended): nothing more goes upstream.
    fn is_closing(&self) -> bool {
        self.closing.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn upstream(&self) -> Option<&dyn Upstream> {
        self.upstream.get().map(|u| &**u)
    }

    fn gone(&self) -> Option<String> {
        self.gone.lock().ok().and_then(|g| g.clone())
    }

    /// One line from the agent.
    fn from_agent(self: &Arc<Self>, line: Vec<u8>) {
        if line.iter().all(u8::is_ascii_whitespace) || self.is_closing() {
            return;
        }
        // What cannot be read cannot be judged: it is never forwarded, since the upstream's
        // parser might read a call into it that this one did not.
        let message: Value = match serde_json::from_slice(&line) {
            Ok(m) => m,
            Err(e) => {
                self.agent.send(&jsonrpc::error(
                    &Value::Null,
                    jsonrpc::PARSE_ERROR,
                    &format!("jitgate mcp proxy: not JSON ({e}); not forwarded"),
                ));
                return;
            }
        };
        let ambiguous = match &message {
            Value::Array(batch) => batch.iter().find_map(jsonrpc::ambiguity),
            one => jsonrpc::ambiguity(one),
        };
        if let Some(why) = ambiguous {
            let id = message.get("id").cloned().unwrap_or(Value::Null);
            return self.agent.send(&jsonrpc::error(
                &id,
                jsonrpc::INVALID_REQUEST,
                &format!("jitgate mcp proxy: {why}; not forwarded"),
            ));
        }
        // From here on the upstream gets the message as the proxy read it, written again, never
        // the agent's bytes: what it parses is what was judged here.
        drop(line);
        if let Value::Array(batch) = &message {
            return self.from_agent_batch(batch);
        }
        match jsonrpc::kind(&message) {
            Kind::Request {
                id,
                method: "tools/call",
            } => {
                let id = id.clone();
                self.tool_call(id, message);
            }
            Kind::Notification { method: "tools/call" } => {
                // A call nobody can be told the outcome of is never made.
                eprintln!("jitgate mcp proxy: a tools/call without an id is not forwarded");
            }
            Kind::Notification {
                method: "notifications/cancelled",
            } if self.cancel_waiting(&message["params"]["requestId"]) => {}
            Kind::Request { id, method } => {
                if method == "initialize" {
                    self.note_agent(&message);
                }
                let (id, method) = (id.clone(), method.to_string());
                self.forward(&message, Some((id, method)));
            }
            _ => self.forward(&message, None),
        }
    }

    /// A JSON-RPC batch (MCP 2025-03-26) passes whole, unless it holds a tool call: a call is
    /// judged alone, so each request in such a batch is refused.
    fn from_agent_batch(self: &Arc<Self>, batch: &[Value]) {
        let calls = batch
            .iter()
            .any(|m| m.get("method").and_then(Value::as_str) == Some("tools/call"));
        if calls {
            for m in batch {
                if let Kind::Request { id, .. } = jsonrpc::kind(m) {
                    self.agent.send(&jsonrpc::error(
                        id,
                        jsonrpc::INVALID_REQUEST,
                        "jitgate mcp proxy: a batch holding tools/call is not forwarded; send each tools/call alone",
                    ));
                }
            }
            return;
        }
        for m in batch {
            if let Kind::Request { id, method } = jsonrpc::kind(m) {
                self.track(id.clone(), method.to_string());
            }
        }
        self.send_upstream(&Value::Array(batch.to_vec()));
    }

    fn note_agent(&self, initialize: &Value) {
        let name: String = initialize["params"]["clientInfo"]["name"]
            .as_str()
            .unwrap_or("")
            .chars()
            .filter(|c| c.is_alphanumeric() || " -_.@/:".contains(*c))
            .take(64)
            .collect();
        if let (false, Ok(mut held)) = (name.trim().is_empty(), self.agent_name.lock()) {
            *held = Some(name.trim().to_string());
        }
    }

    fn track(&self, id: Value, method: String) {
        if let Ok(mut f) = self.forwarded.lock() {
            f.insert(jsonrpc::key(&id), (id, method));
        }
    }

    /// Relay one message of the agent's, unless the upstream is gone.
    fn forward(&self, message: &Value, request: Option<(Value, String)>) {
        if let Some(why) = self.gone() {
            if let Some((id, _)) = request {
                self.agent.send(&jsonrpc::error(
                    &id,
                    jsonrpc::SERVER_ERROR,
                    &format!("jitgate mcp proxy: {why}; not forwarded"),
                ));
            }
            return;
        }
        if let Some((id, method)) = request {
            self.track(id, method);
        }
        self.send_upstream(message);
    }

    fn send_upstream(&self, message: &Value) {
        let sent = match self.upstream() {
            Some(upstream) => upstream.send(message.to_string().into_bytes(), message),
            None => Err("no upstream".into()),
        };
        if let Err(e) = sent {
            self.upstream_gone(e);
        }
    }

    /// A tool call: checked at once for the form of its parameters, then gated on a thread
    /// of its own (it may wait for a person for minutes).
    fn tool_call(self: &Arc<Self>, id: Value, message: Value) {
        let params = &message["params"];
        let Some(tool) = params["name"].as_str().map(str::to_string) else {
            return self.agent.send(&jsonrpc::error(
                &id,
                jsonrpc::INVALID_PARAMS,
                "jitgate mcp proxy: tools/call needs params.name, the tool's name",
            ));
        };
        let arguments = match params.get("arguments") {
            None | Some(Value::Null) => json!({}),
            Some(Value::Object(a)) => Value::Object(a.clone()),
            Some(_) => {
                return self.agent.send(&jsonrpc::error(
                    &id,
                    jsonrpc::INVALID_PARAMS,
                    "jitgate mcp proxy: params.arguments must be an object",
                ))
            }
        };
        let key = jsonrpc::key(&id);
        {
            let Ok(mut gated) = self.gated.lock() else { return };
            let in_flight = self.forwarded.lock().is_ok_and(|f| f.contains_key(&key));
            if gated.contains_key(&key) || in_flight {
                return self.agent.send(&jsonrpc::error(
                    &id,
                    jsonrpc::INVALID_REQUEST,
                    "jitgate mcp proxy: a request with this id is still unanswered; ids must be unique",
                ));
            }
            gated.insert(key.clone(), Gated::default());
        }
        let token = params["_meta"]["progressToken"].clone();
        let token = (!token.is_null()).then_some(token);
        // What goes upstream once allowed: the judged tool and arguments and nothing else the
        // upstream might read as them (a `Name` or `argumentſ` beside them, for a lenient parser),
        // with the agent's `_meta` (progress token) kept.
        let mut judged = json!({"name": tool, "arguments": arguments});
        if let Some(meta) = params.get("_meta").filter(|m| m.is_object()) {
            judged["_meta"] = meta.clone();
        }
        let message = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": judged});
        let proxy = self.clone();
        std::thread::spawn(move || {
            let verdict = proxy.decide(&key, &tool, &arguments, token.as_ref());
            match verdict {
                Verdict::Forward => proxy.forward_call(&id, &message),
                Verdict::Refuse(text) => proxy.agent.send(&jsonrpc::tool_error(&id, &text)),
                Verdict::Silent => {}
            }
            // Removed only once answered: a proxy winding up waits for the gated map to empty.
            if let Ok(mut gated) = proxy.gated.lock() {
                gated.remove(&key);
            }
        });
    }

    /// Forward an allowed call, rebuilt from what was judged: the upstream then reads exactly the
    /// tool and arguments whose canonical payload was judged, whatever its parser would have made
    /// of duplicate keys, outsized numbers or look-alike member names in the agent's text.
    fn forward_call(&self, id: &Value, message: &Value) {
        if self.is_closing() {
            return;
        }
        let key = jsonrpc::key(id);
        self.track(id.clone(), "tools/call".into());
        if let Some(why) = self.gone() {
            let still_ours = self.forwarded.lock().ok().and_then(|mut f| f.remove(&key)).is_some();
            if still_ours {
                self.agent.send(&jsonrpc::tool_error(
                    id,
                    &format!("jitgate: {why}; the call was not run"),
                ));
            }
            return;
        }
        self.send_upstream(message);
    }

    fn with_gated<T>(&self, key: &str, f: impl FnOnce(&mut Gated) -> T) -> Option<T> {
        self.gated.lock().ok().and_then(|mut g| g.get_mut(key).map(f))
    }

    fn cancelled(&self, key: &str) -> bool {
        self.with_gated(key, |g| g.cancelled).unwrap_or(true)
    }

    /// Judge a call: allowed at once, filed and waited for, or refused.
    fn decide(&self, key: &str, tool: &str, arguments: &Value, token: Option<&Value>) -> Verdict {
        let payload = jitgate_core::canonical::tool_call_payload(tool, arguments);
        match self.use_grant(tool, &payload) {
            // Cancelled by the agent (or the proxy stopping) while the grant was asked: not run.
            Ok(Some(_)) if self.cancelled(key) || self.is_closing() => return Verdict::Silent,
            Ok(Some(_)) => return Verdict::Forward,
            Ok(None) => {}
            Err(e) => return Verdict::Refuse(self.refused_by_jitgate(tool, None, &e)),
        }
        let policy = match self.tool_policy(tool) {
            Ok(Some(policy)) => policy,
            Ok(None) => {
                return Verdict::Refuse(format!(
                "jitgate: the tool {tool} of {} has no workflow that lets this agent ask for it; the call was not run",
                self.resource
            ))
            }
            Err(e) => return Verdict::Refuse(self.refused_by_jitgate(tool, None, &e)),
        };
        let request = match self.file(tool, &payload, &policy) {
            Ok(r) => r,
            Err(e) => return Verdict::Refuse(self.refused_by_jitgate(tool, None, &e)),
        };
        let id = render::raw(&request["id"]).to_string();
        if self.with_gated(key, |g| g.request = Some(id.clone())).is_none() || self.cancelled(key) {
            self.cancel_request(&id);
        }
        let request = if request["status"] == "pending" {
            match self.wait(key, tool, &request, token) {
                Ok(r) => r,
                Err(verdict) => return verdict,
            }
        } else {
            request
        };
        if self.cancelled(key) {
            self.end_unused(&request, "the agent cancelled the call");
            return Verdict::Silent;
        }
        if let Some(why) = self.gone() {
            self.end_unused(&request, &why);
            return Verdict::Refuse(format!(
                "jitgate: {why} while {tool} waited for approval (request {id}); the call was not run"
            ));
        }
        if request["status"] != "approved" {
            return Verdict::Refuse(decision_text(tool, &self.resource, &request, self.client.base()));
        }
        match self.use_grant(tool, &payload) {
            Ok(Some(_)) => Verdict::Forward,
            Ok(None) => Verdict::Refuse(format!(
                "jitgate: request {id} for {tool} was approved, but its grant does not allow this call now; the call was not run"
            )),
            Err(e) => Verdict::Refuse(self.refused_by_jitgate(tool, Some(&id), &e)),
        }
    }

    /// `POST /v1/grants/use`: the grant that allows this exact call, consumed if single-use.
    fn use_grant(&self, tool: &str, payload: &str) -> Result<Option<String>, ClientError> {
        let answer = self.client.post(
            "/v1/grants/use",
            &json!({"resource": self.resource, "action": tool, "payload": payload}),
        )?;
        if answer["allow"] == true {
            return Ok(Some(render::raw(&answer["grant_id"]).to_string()));
        }
        if answer["error"] == true {
            // Not a verdict: the server could not record the use. Never forward on it.
            return Err(ClientError::Other(format!(
                "jitgate could not decide ({}); try again",
                render::raw(&answer["reason"])
            )));
        }
        Ok(None)
    }

    /// What the catalog says of `tool` for this agent: `None` when no workflow lets it ask.
    /// Read once and again when a tool is not in it (the policy may have changed).
    fn tool_policy(&self, tool: &str) -> Result<Option<ToolPolicy>, ClientError> {
        if let Some(known) = self.tools.lock().ok().and_then(|t| t.get(tool).cloned()) {
            return Ok(Some(known));
        }
        let mut tools = HashMap::new();
        let mut before: Option<String> = None;
        loop {
            let mut query = vec![("q", self.resource.clone()), ("limit", "500".to_string())];
            if let Some(b) = &before {
                query.push(("before", b.clone()));
            }
            let page = self.client.get("/v1/resources", &query)?;
            for item in page["items"].as_array().into_iter().flatten() {
                if item["name"] != self.resource.as_str() {
                    continue;
                }
                for action in item["actions"].as_array().into_iter().flatten() {
                    let Some(name) = action["action"].as_str() else {
                        continue;
                    };
                    tools.insert(
                        name.to_string(),
                        ToolPolicy {
                            action_bound: action["action_bound"].as_bool(),
                        },
                    );
                }
            }
            match page["next"].as_str() {
                Some(next) => before = Some(next.to_string()),
                None => break,
            }
        }
        let found = tools.get(tool).cloned();
        if let Ok(mut held) = self.tools.lock() {
            *held = tools;
        }
        Ok(found)
    }

    fn file(&self, tool: &str, payload: &str, policy: &ToolPolicy) -> Result<Value, ClientError> {
        let agent = self
            .agent_name
            .lock()
            .ok()
            .and_then(|n| n.clone())
            .unwrap_or_else(|| "an MCP agent".into());
        let reason = self
            .reason
            .clone()
            .unwrap_or_else(|| format!("MCP tool call {tool} by {agent}"));
        let mut body = json!({"resource": self.resource, "action": tool, "reason": reason});
        if let Some(d) = &self.duration {
            body["duration"] = json!(d);
        }
        if policy.action_bound == Some(false) {
            return self.client.post("/v1/requests", &body);
        }
        let mut bound = body.clone();
        bound["payload"] = json!(payload);
        match self.client.post("/v1/requests", &bound) {
            // A server that does not say which tools are action-bound refuses a payload where
            // none belongs (422 naming it): ask again without.
            Err(ClientError::Api {
                status: 422, message, ..
            }) if policy.action_bound.is_none() && message.contains("payload") => {
                self.client.post("/v1/requests", &body)
            }
            other => other,
        }
    }

    /// Wait for a pending request's decision. `Err` carries how the call ends when the wait
    /// itself ends it (the credential refused, the agent cancelled, the timeout).
    fn wait(&self, key: &str, tool: &str, request: &Value, token: Option<&Value>) -> Result<Value, Verdict> {
        let id = render::raw(&request["id"]).to_string();
        let link = format!("{}/ui/requests/{id}", self.client.base());
        let needs = crate::waiting::needs_text(request);
        eprintln!(
            "jitgate mcp proxy: {} on {} is waiting for approval of {id} ({needs}): {link}",
            render::shown(tool),
            render::shown(&self.resource)
        );
        let started = Instant::now();
        let mut progress = 0u64;
        let mut tell = |elapsed: Duration| {
            if let Some(token) = token {
                progress += 1;
                self.agent.send(&jsonrpc::progress(
                    token,
                    progress,
                    &format!(
                        "waiting for approval of jitgate request {id} ({needs}), {}s so far: {link}",
                        elapsed.as_secs()
                    ),
                ));
            }
        };
        tell(Duration::ZERO);
        let mut failures = 0;
        loop {
            if self.cancelled(key) || self.gone().is_some() {
                self.cancel_request(&id);
                return Ok(self.read_request(&id).unwrap_or_else(|_| request.clone()));
            }
            let left = self.timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                return match self.client.post(&format!("/v1/requests/{id}/cancel"), &json!({})) {
                    Ok(_) => Err(Verdict::Refuse(format!(
                        "jitgate: nobody decided request {id} for {tool} within {}s; it is cancelled and the call was not run",
                        self.timeout.as_secs()
                    ))),
                    // Decided at the last moment: that decision stands.
                    Err(ClientError::Api { status: 409, .. }) => self
                        .read_request(&id)
                        .map_err(|e| Verdict::Refuse(self.refused_by_jitgate(tool, Some(&id), &e))),
                    Err(e) => Err(Verdict::Refuse(self.refused_by_jitgate(tool, Some(&id), &e))),
                };
            }
            let poll = left.min(POLL).max(Duration::from_secs(1));
            let answer = self.client.get(
                &format!("/v1/requests/{id}"),
                &[("wait", format!("{}s", poll.as_secs()))],
            );
            match answer {
                Ok(r) if r["status"] != "pending" => return Ok(r),
                Ok(_) => failures = 0,
                Err(e @ ClientError::Api { status: 401, .. }) => {
                    return Err(Verdict::Refuse(self.refused_by_jitgate(tool, Some(&id), &e)))
                }
                Err(ClientError::Api { status: 429, .. }) => std::thread::sleep(POLL.min(left)),
                Err(e) => {
                    failures += 1;
                    if failures >= 5 {
                        return Err(Verdict::Refuse(self.refused_by_jitgate(tool, Some(&id), &e)));
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            tell(started.elapsed());
        }
    }

    fn read_request(&self, id: &str) -> Result<Value, ClientError> {
        self.client.get(&format!("/v1/requests/{id}"), &[])
    }

    fn cancel_request(&self, id: &str) {
        match self.client.post(&format!("/v1/requests/{id}/cancel"), &json!({})) {
            Ok(_) => eprintln!("jitgate mcp proxy: request {id} is cancelled"),
            // Already decided: whoever ends the call ends its grant too (end_unused).
            Err(ClientError::Api { status: 409, .. }) => {}
            Err(e) => eprintln!("jitgate mcp proxy: could not cancel request {id}: {e}"),
        }
    }

    /// A request approved for a call that will not run: its grant ends unused.
    fn end_unused(&self, request: &Value, why: &str) {
        let request = match self.read_request(render::raw(&request["id"])) {
            Ok(r) => r,
            Err(_) => request.clone(),
        };
        let grant = &request["grant"];
        if request["status"] != "approved" || grant["status"] != "active" {
            return;
        }
        let grant_id = render::raw(&grant["id"]);
        let ended = self.client.post(
            &format!("/v1/grants/{grant_id}/done"),
            &json!({"comment": format!("not run: {why}")}),
        );
        if let Err(e) = ended {
            eprintln!("jitgate mcp proxy: could not end the unused grant {grant_id}: {e}");
        }
    }

    fn refused_by_jitgate(&self, tool: &str, request: Option<&str>, e: &ClientError) -> String {
        let about = request.map(|r| format!(" (request {r})")).unwrap_or_default();
        match e {
            ClientError::Api { status: 401, message, .. } => format!(
                "jitgate refused the agent's credential (JITGATE_TOKEN) while handling {tool}{about}: {message}. The call was not run; give the agent a valid jitgate token"
            ),
            ClientError::Api { message, .. } => {
                format!("jitgate refused {tool} on {}{about}: {message}. The call was not run", self.resource)
            }
            other => format!("jitgate could not judge {tool} on {}{about}: {other}. The call was not run", self.resource),
        }
    }

    /// The agent cancelled request `id`: if it is a call waiting for approval, its jitgate
    /// request is cancelled and the upstream never hears of it. `false` for anything else.
    fn cancel_waiting(&self, id: &Value) -> bool {
        let key = jsonrpc::key(id);
        let request = self.with_gated(&key, |g| {
            g.cancelled = true;
            g.request.clone()
        });
        match request {
            None => false,
            Some(request) => {
                if let Some(request) = request {
                    // Cancelling wakes the waiting poll at once.
                    let client = self.client.clone();
                    std::thread::spawn(move || {
                        let _ = client.post(&format!("/v1/requests/{request}/cancel"), &json!({}));
                    });
                }
                true
            }
        }
    }

    fn cancel_all_waiting(&self) {
        let keys: Vec<String> = self
            .gated
            .lock()
            .map(|g| g.keys().cloned().collect())
            .unwrap_or_default();
        for key in &keys {
            if let Ok(id) = serde_json::from_str::<Value>(key) {
                self.cancel_waiting(&id);
            }
        }
        self.wind_up();
    }

    /// Let the gated calls finish (each cancels or ends what it holds), for a while.
    fn wind_up(&self) {
        let deadline = Instant::now() + WIND_UP;
        while Instant::now() < deadline && self.gated.lock().is_ok_and(|g| !g.is_empty()) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Downstream for Proxy {
    fn upstream_said(&self, line: &[u8]) {
        if let Ok(message) = serde_json::from_slice::<Value>(line) {
            if let Kind::Response { id } = jsonrpc::kind(&message) {
                if let Ok(mut f) = self.forwarded.lock() {
                    f.remove(&jsonrpc::key(id));
                }
            }
        }
        self.agent.line(line);
    }

    fn upstream_gone(&self, why: String) {
        if self.is_closing() {
            return;
        }
        {
            let Ok(mut gone) = self.gone.lock() else { return };
            if gone.is_some() {
                return;
            }
            *gone = Some(why.clone());
        }
        eprintln!("jitgate mcp proxy: {why}");
        let unanswered: Vec<(Value, String)> = self
            .forwarded
            .lock()
            .map(|mut f| f.drain().map(|(_, v)| v).collect())
            .unwrap_or_default();
        for (id, method) in unanswered {
            let text = format!("jitgate mcp proxy: {why} before answering; this {method} got no answer");
            if method == "tools/call" {
                self.agent.send(&jsonrpc::tool_error(&id, &text));
            } else {
                self.agent.send(&jsonrpc::error(&id, jsonrpc::SERVER_ERROR, &text));
            }
        }
        // Every waiting call's request is cancelled (each wait notices, ends a grant approved
        // meanwhile unused, and tells its agent); then the proxy ends, never to forward again.
        let waiting: Vec<String> = self
            .gated
            .lock()
            .map(|g| g.values().filter_map(|w| w.request.clone()).collect())
            .unwrap_or_default();
        for request in waiting {
            self.cancel_request(&request);
        }
        self.wind_up();
        if let Some(upstream) = self.upstream() {
            upstream.close();
        }
        std::process::exit(1);
    }
}

/// The tool error for a request decided otherwise than approved: its id, the decision, who
/// made it and what they said.
fn decision_text(tool: &str, resource: &str, request: &Value, base: &str) -> String {
    let id = render::raw(&request["id"]);
    let status = render::raw(&request["status"]);
    let closed = &request["closed_by"];
    let by = closed["by"].as_str().map(|b| format!(" by {b}")).unwrap_or_default();
    let comment = closed["comment"]
        .as_str()
        .filter(|c| !c.is_empty())
        .map(|c| format!(": \"{c}\""))
        .unwrap_or_default();
    let what = match status {
        "expired" => "expired: nobody decided it in time".to_string(),
        other => format!("was {other}"),
    };
    format!(
        "jitgate: request {id} for {tool} on {resource} {what}{by}{comment}; the call was not run ({base}/ui/requests/{id})"
    )
}

#[cfg(test)]
mod tests {
    use super::decision_text;
    use serde_json::json;

    #[test]
    fn a_decision_names_the_request_who_decided_and_what_they_said() {
        let denied =
            json!({"id": "req_1", "status": "denied", "closed_by": {"by": "bob", "comment": "use the archive"}});
        assert_eq!(
            decision_text("delete_file", "files", &denied, "https://j.example"),
            "jitgate: request req_1 for delete_file on files was denied by bob: \"use the archive\"; the call was not run (https://j.example/ui/requests/req_1)"
        );
        let expired = json!({"id": "req_2", "status": "expired"});
        let text = decision_text("write_file", "files", &expired, "http://x");
        assert!(
            text.contains("req_2 for write_file on files expired: nobody decided it in time;"),
            "{text}"
        );
    }
}
