//! The test harness: starts the real `jitgate` binary on a loopback port with its own SQLite
//! file (and config file, when a test gives one), and talks to it over HTTP and through the CLI.

#![allow(dead_code)]

pub mod browser;
pub mod cluster;
pub mod oidc_provider;
pub mod person;
pub mod postgres;
pub mod receiver;

use reqwest::blocking::Client;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_jitgate");

pub fn quickstart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../examples/quickstart")
}

/// A running server and everything it needs; killed on drop.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub listen: String,
    pub policy: PathBuf,
    pub dir: tempfile::TempDir,
    pub http: Client,
    config: Option<PathBuf>,
    /// `--database`; a SQLite file in `dir` when `None`.
    database: Option<String>,
    /// Environment variables for the server process (never set on the test process, which
    /// every test shares).
    env: Vec<(String, String)>,
}

/// A loopback port for a server a test starts: outside the kernel's ephemeral range, so that no
/// `bind(0)` or `connect()` anywhere is given it, and never handed out twice, so that it stays
/// the test's while its server is down (support/ports.rs says how).
pub use postgres::ports::free_port;

/// Whether the process `pid` holds the socket listening on loopback `port` (IPv4 or IPv6):
/// `Some(false)` when another process does, `None` when /proc cannot tell (no table, no
/// listener in it, or the process's descriptors unreadable).
pub fn listens_on(pid: u32, port: u16) -> Option<bool> {
    let mut sockets = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
            let fields: Vec<&str> = line.split_whitespace().collect();
            let Some((_, local_port)) = fields.get(1).and_then(|a| a.rsplit_once(':')) else {
                continue;
            };
            let listening = fields.get(3) == Some(&"0A");
            if listening && u16::from_str_radix(local_port, 16) == Ok(port) {
                if let Some(inode) = fields.get(9) {
                    sockets.push(PathBuf::from(format!("socket:[{inode}]")));
                }
            }
        }
    }
    if sockets.is_empty() {
        return None;
    }
    let descriptors = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(
        descriptors
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| sockets.contains(&target))),
    )
}

/// Why a server never became ready.
#[derive(Debug)]
enum NotReady {
    /// It exited; its log says why.
    Exited(std::process::ExitStatus),
    /// `/readyz` answered on its port from a process that is not our server.
    AnsweredByAnother(String),
    TimedOut,
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotReady::Exited(status) => write!(f, "server exited early: {status}"),
            NotReady::AnsweredByAnother(listen) => write!(
                f,
                "{listen} answered /readyz, but another process than our server listens there"
            ),
            NotReady::TimedOut => write!(f, "server did not become ready"),
        }
    }
}

impl Server {
    pub fn start() -> Server {
        Self::start_with_policy(&quickstart())
    }

    pub fn start_with_policy(policy: &Path) -> Server {
        Self::start_with(policy, None)
    }

    /// Start with a server config file holding `config` (TOML).
    pub fn start_with(policy: &Path, config: Option<&str>) -> Server {
        Self::start_on(policy, config, None)
    }

    /// Start on the database `database` names (`postgres://...`), or a SQLite file of its own.
    pub fn start_on(policy: &Path, config: Option<&str>, database: Option<&str>) -> Server {
        Self::launch(policy, config, database, &[])
    }

    /// Start with a config file holding `config` and the environment variables `env` set for
    /// the server alone (secrets the config names by variable, such as `client_secret_env`).
    pub fn start_with_env(policy: &Path, config: Option<&str>, env: &[(&str, &str)]) -> Server {
        Self::launch(policy, config, None, env)
    }

    /// Start on the database `database` names with the environment variables `env` set for
    /// the server alone (`JITGATE_LOG`, for a test that reads every line the server logs).
    pub fn start_on_with_env(policy: &Path, database: &str, env: &[(&str, &str)]) -> Server {
        Self::launch(policy, None, Some(database), env)
    }

    /// Start with a config file holding `config`, on the database `database` names (a SQLite
    /// file of its own when `None`), with the environment variables `env` set for the server
    /// alone (the GitHub App's webhook secret, on PostgreSQL).
    pub fn start_with_everything(
        policy: &Path,
        config: Option<&str>,
        database: Option<&str>,
        env: &[(&str, &str)],
    ) -> Server {
        Self::launch(policy, config, database, env)
    }

    /// As `start_on_with_env`, without waiting for `/readyz`: for a server whose database
    /// cannot take writes, which must run and say so rather than be ready.
    pub fn spawn_on_with_env(policy: &Path, database: &str, env: &[(&str, &str)]) -> Server {
        Self::launch_and(policy, None, Some(database), env, false)
    }

    fn launch(policy: &Path, config: Option<&str>, database: Option<&str>, env: &[(&str, &str)]) -> Server {
        Self::launch_and(policy, config, database, env, true)
    }

    fn launch_and(
        policy: &Path,
        config: Option<&str>,
        database: Option<&str>,
        env: &[(&str, &str)],
        wait_ready: bool,
    ) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let listen = format!("127.0.0.1:{}", free_port());
        // Tests file, decide and leave requests pending in bursts from one principal; the
        // per-principal limits on filings, writes and pending requests are off unless a test
        // sets its own (limits.rs does).
        const NO_CALLER_LIMITS: &str =
            "[limits]\nrequests_per_minute = 0\nwrites_per_minute = 0\nmax_pending_per_requester = 0\n";
        let text = match config {
            Some(text) if text.contains("[limits]") => text.to_string(),
            Some(text) => format!("{text}\n{NO_CALLER_LIMITS}"),
            None => NO_CALLER_LIMITS.to_string(),
        };
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).expect("write config");
        let config = Some(path);
        let database = database.map(str::to_string);
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut server = Server {
            child: spawn(
                &listen,
                policy,
                dir.path(),
                config.as_deref(),
                database.as_deref(),
                &env,
            ),
            url: format!("http://{listen}"),
            listen,
            policy: policy.to_path_buf(),
            config,
            database,
            env,
            dir,
            http: Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
        };
        if !wait_ready {
            return server;
        }
        // The port is the tests' alone (free_port), but a process outside them may still bind
        // it first: then the server cannot listen, and it starts again on another port (on the
        // same file: it was never ready, and starting is idempotent).
        // What this start logged: an earlier start's refused bind must not excuse a later
        // start that exited for another reason.
        let mut logged_before = 0;
        for _ in 0..4 {
            match server.try_wait_ready() {
                Ok(()) => return server,
                Err(NotReady::Exited(_))
                    if server
                        .log()
                        .get(logged_before..)
                        .is_some_and(|since| since.contains("Address already in use")) => {}
                Err(NotReady::AnsweredByAnother(_)) => {
                    let _ = server.child.kill();
                    let _ = server.child.wait();
                }
                Err(e) => panic!("{e}"),
            }
            logged_before = server.log().len();
            server.listen = format!("127.0.0.1:{}", free_port());
            server.url = format!("http://{}", server.listen);
            server.child = server.spawn_again();
        }
        server.wait_ready();
        server
    }

    /// Wait until the server answers `/readyz`; panics if it exits first, or if the answer
    /// comes from another process than ours.
    pub fn wait_ready(&mut self) {
        if let Err(e) = self.try_wait_ready() {
            panic!("{e}");
        }
    }

    fn try_wait_ready(&mut self) -> Result<(), NotReady> {
        let port: u16 = self
            .listen
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port in listen");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            // Ours must be alive before the probe and after it, and hold the port: an answer
            // while ours has exited, or from a socket ours does not hold, is another
            // process's (a server that lost the port to it, or has not bound it yet).
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(NotReady::Exited(status));
            }
            let answered = self
                .http
                .get(format!("{}/readyz", self.url))
                .send()
                .is_ok_and(|r| r.status().is_success());
            if answered {
                if let Ok(Some(status)) = self.child.try_wait() {
                    return Err(NotReady::Exited(status));
                }
                return match listens_on(self.child.id(), port) {
                    Some(false) => Err(NotReady::AnsweredByAnother(self.listen.clone())),
                    Some(true) | None => Ok(()),
                };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(NotReady::TimedOut)
    }

    /// Kill with SIGKILL (no chance to flush anything) and start again on the same file.
    pub fn kill9_and_restart(&mut self) {
        self.kill9_and_restart_after(|_| {});
    }

    /// Kill with SIGKILL, let `meanwhile` change what it left (its files, its SQLite
    /// database through `sqlite`) while nothing runs, and start again.
    pub fn kill9_and_restart_after(&mut self, meanwhile: impl FnOnce(&Server)) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
        self.restart_after(meanwhile);
    }

    /// Stop with SIGTERM (a clean stop: the server finishes what it owes, such as the open
    /// window of denied checks) and start again on the same file.
    pub fn stop_and_restart(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success(), "kill -TERM failed");
        let exited = self.child.wait().expect("reap");
        assert!(exited.success(), "a clean stop exits 0: {exited}");
        self.restart_after(|_| {});
    }

    fn restart_after(&mut self, meanwhile: impl FnOnce(&Server)) {
        meanwhile(self);
        // The port was free while the server was down. No test and no kernel choice takes it
        // (free_port), but a process outside the tests could: say so here rather than let
        // the new server fail to listen.
        if let Err(e) = std::net::TcpListener::bind(&self.listen) {
            panic!(
                "{} was taken by a process outside the tests while the server was down ({e})",
                self.listen
            );
        }
        self.child = self.spawn_again();
        self.wait_ready();
    }

    /// The server process started again as this one was: its address, policy, directory,
    /// config, database and environment.
    fn spawn_again(&self) -> Child {
        spawn(
            &self.listen,
            &self.policy,
            self.dir.path(),
            self.config.as_deref(),
            self.database.as_deref(),
            &self.env,
        )
    }

    pub fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.url);
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
        let mut req = self.http.request(method, &url);
        if !token.is_empty() {
            req = req.bearer_auth(token);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().expect("send");
        let status = resp.status().as_u16();
        let text = resp.text().expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call("GET", path, token, None)
    }

    pub fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, token, Some(body))
    }

    pub fn file(&self, token: &str, body: Value) -> Value {
        let (status, v) = self.post("/v1/requests", token, body);
        assert_eq!(status, 201, "{v}");
        v
    }

    pub fn check(&self, principal: &str, resource: &str, action: &str, payload: Option<&str>) -> Value {
        let mut body = json!({"principal": principal, "resource": resource, "action": action});
        if let Some(p) = payload {
            body["payload"] = json!(p);
        }
        let (status, v) = self.post("/v1/check", "demo-svc", body);
        assert_eq!(status, 200, "{v}");
        v
    }

    pub fn audit_count(&self) -> usize {
        let (status, v) = self.get("/v1/audit?limit=5000", "demo-admin");
        assert_eq!(status, 200, "{v}");
        v["items"].as_array().expect("items").len()
    }

    pub fn cli(&self, token: &str, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(BIN)
            .args(args)
            .env("JITGATE_URL", &self.url)
            .env("JITGATE_TOKEN", token)
            .output()
            .expect("run cli");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

fn spawn(
    listen: &str,
    policy: &Path,
    dir: &Path,
    config: Option<&Path>,
    database: Option<&str>,
    env: &[(String, String)],
) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .expect("server log");
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--listen", listen, "--policy"])
        .arg(policy)
        .arg("--database")
        .arg(database.map_or_else(
            || format!("sqlite://{}", dir.join("jitgate.db").display()),
            str::to_string,
        ));
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    command
        .env("JITGATE_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn server")
}

impl Server {
    /// The kinds of a request's audit events, oldest first.
    pub fn event_kinds(&self, request_id: &str) -> Vec<String> {
        self.audit_kinds(&format!("request_id={request_id}"))
    }

    /// The kinds of the audit events `query` selects, oldest first.
    pub fn audit_kinds(&self, query: &str) -> Vec<String> {
        let (status, events) = self.get(&format!("/v1/audit?{query}"), "demo-admin");
        assert_eq!(status, 200, "{events}");
        events["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_string())
            .collect()
    }

    /// Run SQL on the server's SQLite file with the `sqlite3` program, as an outside tool
    /// (or an attacker with the file) would, waiting for the server's write lock.
    pub fn sqlite(&self, statement: &str) -> String {
        let out = Command::new("sqlite3")
            .args(["-cmd", ".timeout 10000"])
            .arg(self.dir.path().join("jitgate.db"))
            .arg(statement)
            .output()
            .expect("sqlite3 (apt-get install sqlite3)");
        assert!(
            out.status.success(),
            "{statement}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- server log ---\n{}", self.log());
        }
    }
}

pub fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_string()
}

/// A copy of the quickstart in a directory the test may edit.
pub fn editable_quickstart() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["directory.toml", "workflows.toml", "resources.toml"] {
        std::fs::copy(quickstart().join(name), dir.path().join(name)).unwrap();
    }
    dir
}

/// An editable copy of the quickstart with `workflows` (TOML) appended to its workflows.toml.
pub fn quickstart_with_workflows(workflows: &str) -> tempfile::TempDir {
    let policy = editable_quickstart();
    let path = policy.path().join("workflows.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(workflows);
    std::fs::write(&path, text).unwrap();
    policy
}

/// The first pending request (as a reviewer sees them) that `matches`, once one appears.
pub fn pending_request(s: &Server, matches: impl Fn(&Value) -> bool) -> Value {
    let mut found = Value::Null;
    wait_until("the request waits", || {
        let (_, list) = s.get("/v1/requests?status=pending", "demo-bob");
        found = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| matches(r))
            .cloned()
            .unwrap_or(Value::Null);
        !found.is_null()
    });
    found
}

pub fn wait_until(what: &str, done: impl FnMut() -> bool) {
    wait_until_within(what, Duration::from_secs(10), done);
}

/// As [`wait_until`], for a wait whose length the test itself sets (a backoff it designed, a
/// lifetime it chose): the deadline is `limit`, not the usual 10 s.
pub fn wait_until_within(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An HTTP client that shows redirects instead of following them.
pub fn no_redirects() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Sign in to the web UI with `token` (an API token) and a CSRF cookie of our own choosing
/// (64 `a`s, which forms then send as `csrf`): the `Cookie` header of the session.
pub fn ui_session(s: &Server, token: &str) -> String {
    let csrf = "a".repeat(64);
    let response = no_redirects()
        .post(format!("{}/ui/login", s.url))
        .header("Cookie", format!("jitgate_csrf={csrf}"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("token={token}&csrf={csrf}"))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 303);
    let session = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("jitgate_session="))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    format!("{session}; jitgate_csrf={csrf}")
}

/// `jitgate serve` on `policy` with `config`, expected to refuse to start: its stderr.
pub fn serve_refused(policy: &std::path::Path, config: &str) -> String {
    use std::io::Read;
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = std::process::Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port()), "--policy"])
        .arg(policy)
        .arg("--database")
        .arg(format!("sqlite://{}", dir.path().join("j.db").display()))
        .arg("--config")
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the server started on a config it must refuse:\n{config}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    stderr
}
