//! Waiting for decisions: `jitgate request --wait`, `jitgate gate` for pipelines and
//! `jitgate run` for terminals. Waiting long-polls the server (`GET /v1/requests/{id}?wait=..`),
//! so a decision reaches the client the moment it is made. A server with no place for another
//! waiting caller (429: `[limits] max_waiters`, or this principal's `max_waiters_per_principal`)
//! is asked every few seconds instead, with the same timeout and exit codes. Ctrl-C (or SIGTERM, as a cancelled
//! CI job gets) while a request is filed or waits cancels it: nobody should approve what nobody
//! waits for. For the same reason a wait that fails for good (the network, the server; passing
//! failures are tried again first, backing off for about a minute) cancels the request too, as
//! far as the server can be reached, and says so.

use crate::client::{Client, ClientError};
use crate::commands::{print, CommandResult};
use crate::{render, Output};
use serde_json::{json, Value};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One long poll, well under the client's HTTP timeout.
const LONG_POLL: Duration = Duration::from_secs(50);
/// On a terminal the wait is shown ticking, so each poll is short (a decision still ends it
/// at once).
const TICK: Duration = Duration::from_secs(1);
/// How often a request is looked at when the server has no place for another long poll.
const POLL_EVERY: Duration = Duration::from_secs(3);
/// The pauses before looking again after a look at the request failed for a passing reason
/// (the network, a restarting server, a proxy's 502), one per failure in a row: backing off,
/// about a minute in all, so that a routine restart or deploy is ridden out. One more failure
/// (or the timeout, reached while the last look failed) gives the wait up, and the request is
/// cancelled.
const RETRY_PAUSES: [Duration; 7] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(15),
    Duration::from_secs(15),
    Duration::from_secs(15),
];
/// `jitgate gate` exits with this when nobody decided in time.
pub const EXIT_TIMED_OUT: u8 = 3;

/// The request being waited for, cancelled if the wait is interrupted.
#[derive(Clone, Default)]
pub struct Interrupt {
    pending: Arc<Mutex<Option<String>>>,
    /// Set once the handler took the waiting request to cancel it: the handler exits 130,
    /// and the waiting thread, which may see the cancellation first, must not exit otherwise.
    handling: Arc<AtomicBool>,
    /// Set by a signal that came while no request was waiting: while one was being filed, or
    /// after its decision. The command stops at its next step (it cancels the request once
    /// filed, it runs nothing), rather than carry on as if nobody had pressed Ctrl-C. Set under
    /// `pending`'s lock, so that a request is either waited for or seen stopped, never neither.
    stopped: Arc<AtomicBool>,
}

impl Interrupt {
    /// Handle Ctrl-C and SIGTERM for the rest of the process: while a request waits, cancel it
    /// and exit 130; otherwise note it ([`Interrupt::stopped`]): a command that already runs has
    /// the signal too, and jitgate carries on until it ends.
    pub fn install(client: &Client) -> Interrupt {
        let interrupt = Interrupt::default();
        let (pending, client) = (interrupt.pending.clone(), client.clone());
        let (handling, stopped) = (interrupt.handling.clone(), interrupt.stopped.clone());
        let installed = ctrlc::set_handler(move || {
            let waiting = match pending.lock() {
                Ok(mut pending) => {
                    let waiting = pending.take();
                    if waiting.is_none() {
                        stopped.store(true, Ordering::SeqCst);
                    }
                    waiting
                }
                Err(_) => None,
            };
            if let Some(id) = waiting {
                handling.store(true, Ordering::SeqCst);
                cancel_and_exit(&client, &id);
            }
        });
        if let Err(e) = installed {
            eprintln!("warning: Ctrl-C will not cancel the request: {e}");
        }
        interrupt
    }

    /// Whether a signal came while no request was waiting.
    pub fn stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Wait for `id` (or for nothing): false, and nothing set, if a signal came first.
    fn waiting_for(&self, id: Option<&str>) -> bool {
        match self.pending.lock() {
            Ok(mut pending) => {
                if id.is_some() && self.stopped() {
                    return false;
                }
                *pending = id.map(str::to_string);
                true
            }
            Err(_) => true,
        }
    }

    /// Wait for `id`; if a signal came before (while it was being filed), cancel it and exit
    /// 130, as a signal during the wait would.
    fn wait_for_or_cancel(&self, client: &Client, id: &str) {
        if !self.waiting_for(Some(id)) {
            cancel_and_exit(client, id);
        }
    }
}

/// Interrupted while request `id` was waiting (or being filed): cancel it, say so, exit 130.
fn cancel_and_exit(client: &Client, id: &str) -> ! {
    let shown = render::shown(id);
    match client.post(&format!("/v1/requests/{id}/cancel"), &json!({})) {
        Ok(_) => eprintln!("\ninterrupted: request {shown} is cancelled"),
        Err(e) => eprintln!("\ninterrupted: could not cancel request {shown}: {e}"),
    }
    std::process::exit(130);
}

/// How to wait.
pub struct Wait<'a> {
    pub client: &'a Client,
    /// Give up (and cancel the request) after this long; `None` waits until it is decided or
    /// expires.
    pub timeout: Option<Duration>,
    /// Show the wait ticking on standard error (only when it is a terminal).
    pub progress: bool,
    pub interrupt: Option<&'a Interrupt>,
}

/// What became of a wait.
pub enum Outcome {
    Decided(Value),
    /// Still pending when the timeout passed; the request has been cancelled.
    TimedOut(Value),
}

impl Wait<'_> {
    pub fn until_decided(&self, request: Value) -> Result<Outcome, ClientError> {
        if request["status"] != "pending" {
            return Ok(Outcome::Decided(request));
        }
        let id = render::raw(&request["id"]).to_string();
        let started = Instant::now();
        let show = self.progress && std::io::stderr().is_terminal();
        let needs = needs_text(&request);
        if let Some(interrupt) = self.interrupt {
            interrupt.wait_for_or_cancel(self.client, &id);
        }
        // Set once the server refuses a long poll for want of places: from then on, ask.
        let mut polling = false;
        // Failures in a row of the look at the request, and the last one.
        let mut failures = 0usize;
        let mut failing: Option<ClientError> = None;
        let result = loop {
            let left = self.timeout.map(|t| t.saturating_sub(started.elapsed()));
            if left.is_some_and(|l| l.is_zero()) {
                // The server could not be asked up to the end: that is why, not that nobody
                // decided.
                if let Some(error) = failing.take() {
                    break Err(error);
                }
                if let Some(interrupt) = self.interrupt {
                    interrupt.waiting_for(None);
                }
                let cancelled = self.client.post(&format!("/v1/requests/{id}/cancel"), &json!({}));
                break match cancelled {
                    Ok(request) => Ok(Outcome::TimedOut(request)),
                    // Decided in the last moment: that decision stands.
                    Err(ClientError::Api { status: 409, .. }) => self
                        .client
                        .get(&format!("/v1/requests/{id}"), &[])
                        .map(Outcome::Decided),
                    Err(e) => Err(e),
                };
            }
            let poll = if show { TICK } else { LONG_POLL };
            let poll = left.map_or(poll, |l| l.min(poll)).max(Duration::from_secs(1));
            if show {
                eprint!(
                    "\rwaiting for approval of {id} ({needs}) {}s ",
                    started.elapsed().as_secs()
                );
                let _ = std::io::stderr().flush();
            }
            let looked = if polling {
                std::thread::sleep(left.map_or(POLL_EVERY, |l| l.min(POLL_EVERY)));
                self.client.get(&format!("/v1/requests/{id}"), &[])
            } else {
                let long_poll = self.client.get(
                    &format!("/v1/requests/{id}"),
                    &[("wait", format!("{}s", poll.as_secs()))],
                );
                match long_poll {
                    Err(ClientError::Api {
                        status: 429, message, ..
                    }) => {
                        if show {
                            eprintln!();
                        }
                        eprintln!(
                            "jitgate: the server cannot hold this wait ({message}); asking every {}s instead",
                            POLL_EVERY.as_secs()
                        );
                        polling = true;
                        continue;
                    }
                    other => other,
                }
            };
            let request = match looked {
                Ok(request) => {
                    failures = 0;
                    failing = None;
                    request
                }
                Err(e) if passing(&e) && failures < RETRY_PAUSES.len() => {
                    let pause = RETRY_PAUSES[failures];
                    failures += 1;
                    failing = Some(e);
                    std::thread::sleep(left.map_or(pause, |l| l.min(pause)));
                    continue;
                }
                Err(e) => break Err(e),
            };
            if request["status"] != "pending" {
                break Ok(Outcome::Decided(request));
            }
        };
        if let Some(interrupt) = self.interrupt {
            interrupt.waiting_for(None);
            // Interrupted: the handler is cancelling the request and exits 130; the poll that
            // just saw the cancellation must not end the process with another status first.
            while interrupt.handling.load(Ordering::SeqCst) {
                std::thread::park_timeout(Duration::from_secs(1));
            }
        }
        if show {
            eprintln!();
        }
        result.map_err(|e| self.give_up(&id, e))
    }

    /// The wait failed (`error`) while the request may still be pending: nobody should approve
    /// what nobody waits for, so cancel it, as far as the server can be reached, and say so.
    fn give_up(&self, id: &str, error: ClientError) -> ClientError {
        let shown = render::shown(id);
        match self.client.post(&format!("/v1/requests/{id}/cancel"), &json!({})) {
            Ok(_) => ClientError::Other(format!("could not wait for request {shown} ({error}); it is cancelled")),
            Err(ClientError::Api { status: 409, .. }) => ClientError::Other(format!(
                "could not wait for request {shown} ({error}); it was decided meanwhile: jitgate show {shown}"
            )),
            Err(cancel) => ClientError::Other(format!(
                "could not wait for request {shown} ({error}), nor cancel it ({cancel}): run jitgate cancel {shown}"
            )),
        }
    }
}

/// Whether a failed look at a request may well succeed a moment later: the server could not be
/// reached, or a proxy or the server said it is unavailable for now.
fn passing(error: &ClientError) -> bool {
    match error {
        ClientError::Transport { .. } => true,
        ClientError::Api { status, .. } => matches!(status, 502..=504),
        _ => false,
    }
}

pub fn needs_text(request: &Value) -> String {
    let needs: Vec<String> = request["needs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| format!("{} from {}", n["approvals"], n["group"].as_str().unwrap_or("?")))
        .collect();
    format!("needs {}", needs.join(" and "))
}

/// What to ask for.
pub struct Ask<'a> {
    pub resource: &'a str,
    pub action: &'a str,
    pub duration: Option<String>,
    pub reason: &'a str,
    pub payload: Option<String>,
    /// More in the same request (`--also`).
    pub also: Vec<AlsoItem>,
}

/// One more thing asked for in the same request (`--also RESOURCE:ACTION[=PAYLOAD]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlsoItem {
    pub resource: String,
    pub action: String,
    pub payload: Option<String>,
}

/// Read `--also` values: `RESOURCE:ACTION` or `RESOURCE:ACTION=PAYLOAD`. The action follows
/// the last `:` before the first `=`, since resource names may hold colons
/// (`github:OWNER/REPO/ENV`) and payloads anything.
pub fn parse_also(values: &[String]) -> Result<Vec<AlsoItem>, ClientError> {
    values
        .iter()
        .map(|value| {
            let (target, payload) = match value.split_once('=') {
                Some((target, payload)) => (target, Some(payload.to_string())),
                None => (value.as_str(), None),
            };
            match target.rsplit_once(':') {
                Some((resource, action)) if !resource.is_empty() && !action.is_empty() => Ok(AlsoItem {
                    resource: resource.to_string(),
                    action: action.to_string(),
                    payload,
                }),
                _ => Err(ClientError::Other(format!(
                    "--also {}: write RESOURCE:ACTION, or RESOURCE:ACTION=PAYLOAD (like --also staging-db:read)",
                    render::shown(value)
                ))),
            }
        })
        .collect()
}

/// With `--also`, the body asks for every item instead of one resource and action.
pub fn add_items(body: &mut Value, also: &[AlsoItem]) {
    if also.is_empty() {
        return;
    }
    let Some(fields) = body.as_object_mut() else {
        return;
    };
    let first = json!({
        "resource": fields.remove("resource").unwrap_or(Value::Null),
        "action": fields.remove("action").unwrap_or(Value::Null),
        "payload": fields.remove("payload").unwrap_or(Value::Null),
    });
    let mut items = vec![first];
    items.extend(
        also.iter()
            .map(|a| json!({"resource": a.resource, "action": a.action, "payload": a.payload})),
    );
    fields.insert("items".into(), Value::Array(items));
}

fn file(client: &Client, ask: &Ask) -> Result<Value, ClientError> {
    let mut body = json!({"resource": ask.resource, "action": ask.action, "reason": ask.reason});
    if let Some(d) = &ask.duration {
        body["duration"] = json!(d);
    }
    if let Some(p) = &ask.payload {
        body["payload"] = json!(p);
    }
    add_items(&mut body, &ask.also);
    client.post("/v1/requests", &body)
}

/// Where a reviewer acts on the request.
fn review_text(client: &Client, request: &Value) -> String {
    let id = render::s(&request["id"]);
    format!(
        "  review:  {}/ui/requests/{id}\n  approve: jitgate approve {id}\n",
        client.base()
    )
}

/// `jitgate gate`: file, wait, and answer with the exit code a pipeline step needs.
pub fn gate(client: &Client, ask: &Ask, timeout: Duration) -> CommandResult {
    let interrupt = Interrupt::install(client);
    let Decision { request, code } = file_and_wait(client, ask, timeout, &interrupt)?;
    print(client, &request, render::request_detail);
    Ok(code)
}

/// What a filed request came to, and the exit code `jitgate gate` gives it: 0 approved,
/// 1 denied or cancelled, [`EXIT_TIMED_OUT`] expired or not decided in time.
pub struct Decision {
    pub request: Value,
    pub code: ExitCode,
}

impl Decision {
    pub fn approved(&self) -> bool {
        self.request["status"] == "approved"
    }
}

/// File the request and wait for its decision, as `jitgate gate` and `jitgate ssh --request`
/// do: what it waits for and who must approve it go to standard error; Ctrl-C (or SIGTERM)
/// while it is filed or waits cancels it and exits 130; nobody deciding within `timeout`
/// cancels it. `interrupt` is installed by the caller, which checks it again after the
/// decision.
pub fn file_and_wait(
    client: &Client,
    ask: &Ask,
    timeout: Duration,
    interrupt: &Interrupt,
) -> Result<Decision, ClientError> {
    let request = file(client, ask)?;
    if request["status"] == "pending" {
        // Cancellable from the moment it exists, not only once the wait below begins.
        interrupt.wait_for_or_cancel(client, render::raw(&request["id"]));
        // The names are as typed: escaped, so that a control character cannot rewrite the line.
        eprintln!(
            "jitgate: {} on {} is waiting for approval: request {} ({})\n{}",
            render::shown(ask.action),
            render::shown(ask.resource),
            render::s(&request["id"]),
            needs_text(&request),
            review_text(client, &request)
        );
        append_step_summary(client, &request);
    }
    let wait = Wait {
        client,
        timeout: Some(timeout),
        progress: false,
        interrupt: Some(interrupt),
    };
    Ok(match wait.until_decided(request)? {
        Outcome::Decided(request) => {
            let code = match request["status"].as_str() {
                Some("approved") => ExitCode::SUCCESS,
                Some("expired") => ExitCode::from(EXIT_TIMED_OUT),
                _ => ExitCode::from(1),
            };
            Decision { request, code }
        }
        Outcome::TimedOut(request) => {
            eprintln!(
                "jitgate: nobody decided within {}s; request {} is cancelled",
                timeout.as_secs(),
                render::s(&request["id"])
            );
            Decision {
                request,
                code: ExitCode::from(EXIT_TIMED_OUT),
            }
        }
    })
}

/// In GitHub Actions, say in the job summary what the step waits for.
fn append_step_summary(client: &Client, request: &Value) {
    let Ok(path) = std::env::var("GITHUB_STEP_SUMMARY") else {
        return;
    };
    let line = format!(
        "**jitgate**: `{}` on `{}` waits for approval ({}): [{id}]({}/ui/requests/{id}), or `jitgate approve {id}`\n",
        render::s(&request["action"]),
        render::s(&request["resource"]),
        needs_text(request),
        client.base(),
        id = render::s(&request["id"]),
    );
    let appended = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = appended {
        eprintln!("warning: cannot write the GitHub step summary: {e}");
    }
}

/// `jitgate run`: ask for exactly this command, wait, run it once approved, record how it went
/// and end the grant. The command's exit code is passed through.
pub fn run(
    client: &Client,
    resource: &str,
    action: &str,
    duration: Option<String>,
    reason: &str,
    argv: &[String],
    also: Vec<AlsoItem>,
) -> CommandResult {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| ClientError::Other("name the command to run after --".into()))?;
    let payload = shlex::try_join(argv.iter().map(String::as_str))
        .map_err(|e| ClientError::Other(format!("the command cannot be written as one line: {e}")))?;
    // Only an action-bound workflow limits the grant to this command; anywhere else the server
    // refuses a payload, which reviewers would take for a limit that is not there.
    let bound = client
        .get(
            "/v1/policy/explain",
            &[("resource", resource.to_string()), ("action", action.to_string())],
        )
        .map_or(true, |e| e["action_bound"] != false);
    if !bound && client.output != Output::Json {
        eprintln!("jitgate: {action} on {resource} is not action-bound: its grant is not limited to this command");
    }
    let interrupt = Interrupt::install(client);
    let ask = Ask {
        resource,
        action,
        duration,
        reason,
        payload: bound.then(|| payload.clone()),
        also,
    };
    let request = file(client, &ask)?;
    let quiet = client.output == Output::Json || !std::io::stderr().is_terminal();
    if request["status"] == "pending" && !quiet {
        eprintln!(
            "jitgate: approval needed to run: {payload}\n{}",
            review_text(client, &request)
        );
    }
    let wait = Wait {
        client,
        timeout: None,
        progress: true,
        interrupt: Some(&interrupt),
    };
    let request = match wait.until_decided(request)? {
        Outcome::Decided(r) | Outcome::TimedOut(r) => r,
    };
    if request["status"] != "approved" {
        eprintln!(
            "jitgate: request {} was {}; not running {program}",
            render::s(&request["id"]),
            render::s(&request["status"])
        );
        return Ok(ExitCode::from(1));
    }
    let grant = &request["grant"];
    let grant_id = render::raw(&grant["id"]).to_string();
    if interrupt.stopped() {
        // Interrupted once the decision came: run nothing, and end the grant nobody will use.
        let ended = client.post(
            &format!("/v1/grants/{grant_id}/done"),
            &json!({"comment": "jitgate run: interrupted before the command ran"}),
        );
        match ended {
            Ok(_) => eprintln!("\ninterrupted: grant {grant_id} is ended; not running {program}"),
            Err(e) => eprintln!("\ninterrupted: not running {program}; could not end grant {grant_id} ({e}): run jitgate done {grant_id}"),
        }
        return Ok(ExitCode::from(130));
    }
    let mut command = std::process::Command::new(program);
    command
        .args(args)
        .env("JITGATE_REQUEST_ID", render::raw(&request["id"]))
        .env("JITGATE_GRANT_ID", &grant_id);
    if let Some(token) = grant["token"].as_str() {
        command.env("JITGATE_GRANT_TOKEN", token);
    }
    // With `--also`, every item's grant (the first is JITGATE_GRANT_ID's); `done` ends them all.
    let all: Vec<&str> = request["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["grant"]["id"].as_str())
        .collect();
    if !all.is_empty() {
        command.env("JITGATE_GRANT_IDS", all.join(","));
    }
    let started = Instant::now();
    let status = command.status();
    let took = started.elapsed();
    let (exit_code, finished) = match &status {
        Ok(s) => (exit_code_of(s), format!("{program} exited with {}", exit_code_of(s))),
        Err(e) => (127, format!("cannot run {program}: {e}")),
    };
    let outcome = json!({
        "exit_code": exit_code,
        "duration_ms": u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
        "comment": format!("jitgate run: {payload}"),
    });
    if let Err(e) = client.post(&format!("/v1/grants/{grant_id}/done"), &outcome) {
        eprintln!("warning: could not record the outcome and end grant {grant_id}: {e}");
    }
    if status.is_err() || !quiet {
        eprintln!(
            "jitgate: {finished} after {:.1}s; grant {grant_id} ended",
            took.as_secs_f64()
        );
    }
    Ok(ExitCode::from(u8::try_from(exit_code).unwrap_or(1)))
}

/// The exit code a shell would report: the status, or 128 + the signal that ended it.
pub fn exit_code_of(status: &std::process::ExitStatus) -> i32 {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return 128 + signal;
        }
    }
    status.code().unwrap_or(1)
}

#[cfg(test)]
mod also_tests {
    use super::{parse_also, AlsoItem};

    #[test]
    fn also_splits_at_the_last_colon_before_the_payload() {
        let parsed = parse_also(&[
            "staging-db:read".into(),
            "github:acme/api/prod:deploy=sha256:ab=cd".into(),
        ])
        .unwrap_or_default();
        assert_eq!(
            parsed,
            [
                AlsoItem {
                    resource: "staging-db".into(),
                    action: "read".into(),
                    payload: None
                },
                AlsoItem {
                    resource: "github:acme/api/prod".into(),
                    action: "deploy".into(),
                    payload: Some("sha256:ab=cd".into())
                }
            ]
        );
        for bad in ["staging-db", ":read", "staging-db:", "=x"] {
            let error = parse_also(&[bad.to_string()])
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(error.contains("RESOURCE:ACTION"), "{bad}: {error}");
        }
    }
}
