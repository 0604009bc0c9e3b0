//! A real OpenID Provider for the CLI's single sign-on tests: panva's `oidc-provider` from npm
//! (OpenID Certified), pinned in `scripts/oidc/package.json` and its lock, installed on first use
//! by `scripts/oidc.sh install` into `target/node-oidc` and run as `scripts/oidc/provider.mjs`
//! (which says how it is configured). Each [`OidcProvider`] is a process of its own on a free
//! port of 127.0.0.1, issuer `http://127.0.0.1:PORT`, killed on drop.
//!
//! The provider's own pages (login, consent, device code entry and confirmation) are completed
//! in headless Chromium by [`complete_in_browser`] and [`complete_device_flow`], as a person
//! would: the selectors are those of the pages oidc-provider 9 renders.

use super::browser::Browser;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The CLI's public client at the provider.
pub const CLIENT_ID: &str = "jitgate-cli";

/// The grant type of the device flow (RFC 8628).
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

/// `scripts/oidc.sh install`: installs the pinned packages when missing (tests running at once
/// wait for one another on its flock), once per test process.
pub fn install() {
    static INSTALLED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    INSTALLED.get_or_init(|| {
        let out = Command::new(repo().join("scripts/oidc.sh"))
            .arg("install")
            .stdin(Stdio::null())
            .output()
            .expect("scripts/oidc.sh (node and npm: apt-get install nodejs npm; scripts/test.sh does)");
        assert!(
            out.status.success(),
            "scripts/oidc.sh install: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// A running provider; killed on drop.
pub struct OidcProvider {
    child: Child,
    /// The other end is the provider's stdin: it exits when this closes (OIDC_EXIT_ON_STDIN_EOF),
    /// so a test process killed with SIGKILL leaves no provider behind.
    _stdin: ChildStdin,
    /// `http://127.0.0.1:PORT`, as the provider names itself.
    pub issuer: String,
    pub port: u16,
    dir: tempfile::TempDir,
    pub http: reqwest::blocking::Client,
}

impl OidcProvider {
    /// A provider whose ID tokens last 20 s.
    pub fn start() -> OidcProvider {
        Self::start_with_env(&[])
    }

    /// A provider with `env` set for it alone (`OIDC_ID_TOKEN_TTL`, `OIDC_DEVICE_CODE_TTL`,
    /// `OIDC_DEVICE_FLOW`: scripts/oidc/provider.mjs says what each does).
    pub fn start_with_env(env: &[(&str, &str)]) -> OidcProvider {
        install();
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("provider.log");
        // Appended to by the provider's stderr and by the thread that copies its stdout there
        // (its notices), so neither overwrites the other.
        let append = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .unwrap()
        };
        // Port 0: the provider binds a free port itself and names it in its ready line, so no
        // other test can take the port between choosing and binding.
        let mut child = Command::new(repo().join("scripts/oidc.sh"))
            .args(["start", "0"])
            .env("OIDC_EXIT_ON_STDIN_EOF", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(append())
            .spawn()
            .expect("scripts/oidc.sh start");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let mut copy = append();
        // The ready line, then everything else it prints on stdout (oidc-provider's notices go
        // there) into the log, until it exits.
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout);
            let mut line = String::new();
            let _ = lines.read_line(&mut line);
            let _ = tx.send(line);
            let _ = std::io::copy(&mut lines, &mut copy);
        });
        let line = rx.recv_timeout(Duration::from_secs(60));
        let issuer = match line.as_deref().map(|l| l.trim().strip_prefix("oidc-provider ready ")) {
            Ok(Some(issuer)) => issuer.to_string(),
            // No ready line in time, or another line first: killed first, so that the wait
            // cannot hang on a provider that goes on running.
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the OpenID Provider did not say `oidc-provider ready ISSUER` within 60 s (it said {line:?}):\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
        };
        let port = issuer.rsplit(':').next().unwrap().parse().unwrap();
        assert_eq!(issuer, format!("http://127.0.0.1:{port}"));
        OidcProvider {
            child,
            _stdin: stdin,
            issuer,
            port,
            dir,
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    /// Stop the provider and keep its port: what is left there closes every connection at
    /// once, so the CLI finds the provider unreachable, and no other test's provider can get
    /// the port (and so the same issuer) meanwhile. Its log stays readable.
    pub fn stop_and_hold_port(mut self) -> DeadProvider {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let listener = std::net::TcpListener::bind(("127.0.0.1", self.port)).unwrap_or_else(|e| {
            panic!(
                "port {} was taken at once after the OpenID Provider stopped: {e}",
                self.port
            )
        });
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    // Dropped at once: the connection closes before any answer.
                    Ok((stream, _)) => drop(stream),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        let log = self.log();
        DeadProvider {
            issuer: self.issuer.clone(),
            log,
            stop,
            thread: Some(thread),
        }
    }

    /// How many refresh token grants the provider has answered so far.
    pub fn refresh_grants(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| *l == "provider.mjs: granted refresh_token")
            .count()
    }

    /// What the provider wrote on stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("provider.log")).unwrap_or_default()
    }

    /// Its discovery document.
    pub fn discovery(&self) -> Value {
        self.http
            .get(format!("{}/.well-known/openid-configuration", self.issuer))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    fn endpoint(&self, name: &str) -> String {
        let doc = self.discovery();
        doc[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in {doc}"))
            .to_string()
    }

    /// POST `form` to the endpoint the discovery document names `endpoint`: status and body.
    pub fn post_form(&self, endpoint: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let response = self.http.post(self.endpoint(endpoint)).form(form).send().unwrap();
        let status = response.status().as_u16();
        let text = response.text().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Use `refresh_token` at the token endpoint as the CLI's client would: 200 and the new
    /// tokens, or the provider's error (`invalid_grant` for a revoked or spent one).
    pub fn refresh(&self, refresh_token: &str) -> (u16, Value) {
        self.post_form(
            "token_endpoint",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
                ("client_id", CLIENT_ID),
            ],
        )
    }

    /// Revoke `refresh_token` at the revocation endpoint (RFC 7009), as the user would at the
    /// provider's account page: the grant it belongs to ends.
    pub fn revoke(&self, refresh_token: &str) {
        let (status, body) = self.post_form(
            "revocation_endpoint",
            &[
                ("token", refresh_token),
                ("token_type_hint", "refresh_token"),
                ("client_id", CLIENT_ID),
            ],
        );
        assert_eq!(status, 200, "revocation: {body}");
    }

    /// Start a device authorization (RFC 8628 3.1) for the CLI's client, as the CLI does:
    /// `device_code`, `user_code`, `verification_uri`, `verification_uri_complete`, ...
    pub fn device_authorization(&self, scope: &str) -> Value {
        let (status, body) = self.post_form(
            "device_authorization_endpoint",
            &[("client_id", CLIENT_ID), ("scope", scope)],
        );
        assert_eq!(status, 200, "device authorization: {body}");
        body
    }

    /// Poll the token endpoint once for `device_code`: `authorization_pending` until the user
    /// has finished on the provider's pages, then the tokens.
    pub fn device_token(&self, device_code: &str) -> (u16, Value) {
        self.post_form(
            "token_endpoint",
            &[
                ("grant_type", DEVICE_CODE_GRANT),
                ("device_code", device_code),
                ("client_id", CLIENT_ID),
            ],
        )
    }
}

/// The port of a provider that is gone ([`OidcProvider::stop_and_hold_port`]): every
/// connection closed at once, until dropped.
pub struct DeadProvider {
    pub issuer: String,
    /// What the provider had logged.
    pub log: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for DeadProvider {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if std::thread::panicking() {
            eprintln!("--- OpenID Provider log ({}, stopped) ---\n{}", self.issuer, self.log);
        }
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        // scripts/oidc.sh start execs node: this is the provider itself.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- OpenID Provider log ({}) ---\n{}", self.issuer, self.log());
        }
    }
}

/// The claims of a JWT (its middle part), unverified: for a test to read `exp` or `sub`.
pub fn jwt_claims(jwt: &str) -> Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).unwrap_or_else(|| panic!("not a JWT: {jwt}"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// One of the provider's pages, as told apart by what is on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// The device flow's first page: a field for the code the CLI showed.
    DeviceCodeEntry,
    /// The device flow's "the following code should be displayed on your device" page.
    DeviceConfirm,
    /// devInteractions' sign-in form: any login, any password.
    Login,
    /// devInteractions' consent page ("Authorize").
    Consent,
    /// The device flow's last page.
    DeviceSuccess,
    /// The provider's error page (its `error` and `error_description` are on it).
    Error,
    /// Anything else: not the provider's (the CLI's callback page, once redirected there).
    Other,
}

// The selectors, from the pages oidc-provider 9 renders (lib/helpers/defaults.js
// userCodeInputSource, userCodeConfirmSource, successSource; lib/views/login.js and
// interaction.js for devInteractions).
const CODE_FIELD: &str = "form[id='op.deviceInputForm'] input[name='user_code']";
const CODE_SUBMIT: &str = "button[type='submit'][form='op.deviceInputForm']";
const CONFIRM_SUBMIT: &str = "button[autofocus][form='op.deviceConfirmForm']";
const LOGIN_FIELD: &str = "input[name='login']";
const PASSWORD_FIELD: &str = "input[name='password']";
const LOGIN_OR_CONSENT_SUBMIT: &str = "button[type='submit'].login-submit";
const CONSENT_FORM: &str = "input[type='hidden'][name='prompt'][value='consent']";
/// The `[ Cancel ]` link of devInteractions' pages: the provider answers the client with
/// `error=access_denied`.
pub const CANCEL_LINK: &str = ".login-help a[href*='/abort']";
/// The `[ Abort ]` button of the device flow's confirmation page: the provider answers the
/// polling client with `access_denied`.
pub const DEVICE_ABORT: &str = "button[name='abort'][form='op.deviceConfirmForm']";

/// What the browser shows, if it is one of the provider's pages (`issuer`'s).
pub fn page(b: &Browser, issuer: &str) -> Page {
    if !b.url().starts_with(issuer) {
        return Page::Other;
    }
    let title = b
        .command("GET", "/title", None)
        .as_str()
        .unwrap_or_default()
        .to_string();
    if b.exists(CODE_FIELD) {
        Page::DeviceCodeEntry
    } else if b.exists(CONFIRM_SUBMIT) {
        Page::DeviceConfirm
    } else if b.exists(LOGIN_FIELD) {
        Page::Login
    } else if b.exists(CONSENT_FORM) {
        Page::Consent
    } else if title == "Sign-in Success" {
        Page::DeviceSuccess
    } else if title.starts_with("oops!") || b.exists("pre#error") {
        Page::Error
    } else {
        Page::Other
    }
}

/// The provider's page shown now loaded nothing from anywhere but the provider, and names no
/// web font (scripts/oidc/provider.mjs cuts oidc-provider's Google Fonts import): the tests
/// need no network but the loopback.
fn assert_self_contained(b: &Browser, issuer: &str) {
    let loaded = b.command(
        "POST",
        "/execute/sync",
        Some(json!({"script": "return performance.getEntriesByType('resource').map(e => e.name);", "args": []})),
    );
    // While the browser navigates, the script may not run: nothing to check then.
    if let Some(loaded) = loaded.as_array() {
        for url in loaded.iter().filter_map(Value::as_str) {
            assert!(
                url.starts_with(&format!("{issuer}/")),
                "the provider's page at {} loaded {url}",
                b.url()
            );
        }
    }
    let source = b.source();
    assert!(
        !source.contains("fonts.googleapis.com"),
        "the provider's page at {} names Google Fonts:\n{source}",
        b.url()
    );
}

/// Mark the document shown now, so that [`wait_for_new_document`] can tell when a submit has
/// replaced it (the device flow's pages share one URL, so the URL does not tell).
fn mark_document(b: &Browser) {
    b.execute("window.__jitgateTestSeen = true; return null;", vec![]);
}

fn wait_for_new_document(b: &Browser) {
    let started = Instant::now();
    loop {
        // While the browser navigates, a script may fail to run: then just look again.
        let v = b.command(
            "POST",
            "/execute/sync",
            Some(json!({"script": "return document.readyState === 'complete' && !window.__jitgateTestSeen;", "args": []})),
        );
        if v == Value::Bool(true) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the page did not change after a submit: {}\n{}",
            b.url(),
            b.source()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Act on the page (type and click): the next page has loaded when this returns.
fn submit(b: &Browser, act: impl FnOnce()) {
    mark_document(b);
    act();
    wait_for_new_document(b);
}

/// Go through the provider's pages as `login` (any password), consenting to what is asked,
/// entering `user_code` where the device flow asks for it, until `done` says the journey is
/// over: the pages seen, in order. Fails on the provider's error page, or after 60 s.
pub fn complete_in_browser(
    b: &Browser,
    issuer: &str,
    login: &str,
    user_code: Option<&str>,
    done: impl Fn(&Browser, Page) -> bool,
) -> Vec<Page> {
    let started = Instant::now();
    let mut seen = Vec::new();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the provider's pages did not finish: {seen:?}, now at {}:\n{}",
            b.url(),
            b.source()
        );
        let now = page(b, issuer);
        if done(b, now) {
            seen.push(now);
            return seen;
        }
        if now != Page::Other {
            assert_self_contained(b, issuer);
        }
        match now {
            Page::DeviceCodeEntry => {
                let code = user_code.unwrap_or_else(|| panic!("the provider asks for a device code: {seen:?}"));
                submit(b, || {
                    b.type_into(CODE_FIELD, code);
                    b.click(CODE_SUBMIT);
                });
            }
            Page::DeviceConfirm => {
                if let Some(code) = user_code {
                    let shown = b.text("code");
                    assert_eq!(shown, code, "the confirmation page shows another code");
                }
                submit(b, || b.click(CONFIRM_SUBMIT));
            }
            Page::Login => submit(b, || {
                b.type_into(LOGIN_FIELD, login);
                b.type_into(PASSWORD_FIELD, "any password will do");
                b.click(LOGIN_OR_CONSENT_SUBMIT);
            }),
            Page::Consent => submit(b, || b.click(LOGIN_OR_CONSENT_SUBMIT)),
            Page::Error => panic!(
                "the provider showed an error after {seen:?} at {}:\n{}",
                b.url(),
                b.source()
            ),
            Page::DeviceSuccess | Page::Other => {
                // Still loading, or a page `done` does not accept yet (a redirect under way).
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        }
        seen.push(now);
    }
}

/// The device flow on the provider's pages: open `verification_uri`, enter `user_code`,
/// confirm, sign in as `login`, consent, until "Sign-in Success". The pages seen, in order.
pub fn complete_device_flow(
    b: &Browser,
    issuer: &str,
    verification_uri: &str,
    user_code: &str,
    login: &str,
) -> Vec<Page> {
    b.goto(verification_uri);
    let seen = complete_in_browser(b, issuer, login, Some(user_code), |_, p| p == Page::DeviceSuccess);
    assert!(
        b.source().contains("was successful"),
        "the device flow's last page: {}",
        b.source()
    );
    seen
}

/// The authorization code flow on the provider's pages: open `authorization_url`, sign in as
/// `login`, consent, until the browser is sent to a URL starting with `redirect_prefix` (the
/// CLI's loopback callback). The pages seen, in order.
pub fn complete_authorization(
    b: &Browser,
    issuer: &str,
    authorization_url: &str,
    login: &str,
    redirect_prefix: &str,
) -> Vec<Page> {
    b.goto(authorization_url);
    complete_in_browser(b, issuer, login, None, |b, p| {
        p == Page::Other && b.url().starts_with(redirect_prefix)
    })
}
