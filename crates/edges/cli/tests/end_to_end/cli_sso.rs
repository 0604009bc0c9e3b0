//! The CLI's single sign-on (#28, part 2) against a real OpenID Provider: panva's
//! `oidc-provider` (support/oidc_provider.rs, scripts/oidc/provider.mjs), its pages completed in
//! headless Chromium as a person would. `jitgate login` with the device flow and with the
//! loopback browser flow, the fallback from one to the other, the loopback callback under
//! attack, silent refresh after the ID token expires (several CLIs at once), logout revoking the
//! refresh token, a refresh token revoked at the provider, a provider that names itself
//! otherwise, a server that switched provider, the provider's error shown escaped: `whoami`
//! after each. Every CLI run has its own `HOME` and `XDG_CONFIG_HOME`, no `JITGATE_*`
//! variable but those a test sets, and no way to open a browser but the `BROWSER` a test sets.

use crate::support::browser::Browser;
use crate::support::oidc_provider::*;
use crate::support::person::Person;
use crate::support::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The exit code of a CLI that fails with one line (`error: ...`). The spec of #28 part 2 says
/// 1; every error of this CLI exits 2 (1 means a negative answer: denied, not yet approved),
/// and part 1's test of the sibling message (an expired credential with no refresh token)
/// asserts 2, so the single sign-on errors do the same.
const ERROR_EXIT: i32 = 2;

/// How long a test lets the CLI wait for the browser before it gives up (`JITGATE_LOGIN_TIMEOUT`):
/// long enough for Chromium, short enough that a broken login fails the test in time.
const LOGIN_TIMEOUT_SECS: &str = "120";
/// How long [`Running::finish`] waits for a CLI: longer than [`LOGIN_TIMEOUT_SECS`].
const FINISH_TIMEOUT_SECS: u64 = 150;

/// A person's machine (support/person.rs) with no desktop: only the `BROWSER` a test sets may
/// open anything, and the CLI gives up waiting for a sign-in after [`LOGIN_TIMEOUT_SECS`].
fn person() -> Person {
    Person::new()
        .with_env("JITGATE_LOGIN_TIMEOUT", LOGIN_TIMEOUT_SECS)
        .without_env("BROWSER")
        .without_env("DISPLAY")
        .without_env("WAYLAND_DISPLAY")
}

/// What the single sign-on tests do with a [`Person`] besides running the CLI.
trait SsoPerson {
    fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> Running;
    fn stored(&self, profile: &str) -> Value;
    fn whoami_is(&self, principal: &str, issuer: &str) -> String;
    fn assert_nothing_stored(&self, what: &str);
    fn assert_not_signed_in(&self);
}

impl SsoPerson for Person {
    /// Start the CLI and leave it running: its stderr is read line by line as it comes.
    fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> Running {
        Running::new(self.command(args, env).spawn().unwrap())
    }

    /// The stored credential of `profile`, as JSON.
    fn stored(&self, profile: &str) -> Value {
        let text = std::fs::read_to_string(self.credential(profile)).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// `jitgate whoami` succeeds and names `principal`, from a single sign-on credential.
    fn whoami_is(&self, principal: &str, issuer: &str) -> String {
        let (code, out, err) = self.run(&["whoami"]);
        assert_eq!(code, 0, "whoami: {out}{err}");
        assert!(out.contains(&format!("principal   {principal}\n")), "{out}");
        assert!(out.contains(&format!("credential  oidc from {issuer}\n")), "{out}");
        assert!(out.contains("source      profile file"), "{out}");
        out
    }

    /// A failed sign-in left nothing behind: no credential of any profile, no config.toml (a
    /// person of these tests who never signed in has none), nothing else.
    fn assert_nothing_stored(&self, what: &str) {
        assert!(!self.credential("default").exists(), "{what}: a credential was stored");
        assert!(
            self.files()
                .iter()
                .all(|f| !f.to_string_lossy().contains("credentials")),
            "{what}: {:?}",
            self.files()
        );
        assert!(
            !self.config_dir().join("config.toml").exists(),
            "{what}: config.toml was written: {:?}",
            self.files()
        );
    }

    /// `jitgate whoami` says, in one line, that nobody is signed in and what to run.
    fn assert_not_signed_in(&self) {
        let (code, out, err) = self.run(&["whoami"]);
        assert_eq!(code, ERROR_EXIT, "whoami: {out}{err}");
        assert!(out.is_empty(), "{out}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("profile default: not signed in: run jitgate login"),
            "{err}"
        );
    }
}

/// A CLI still running: its stderr lines arrive through a thread as they are written.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every stderr line read so far.
    seen: Vec<String>,
    stdout: Option<std::thread::JoinHandle<String>>,
}

impl Running {
    fn new(mut child: Child) -> Running {
        let stderr = child.stderr.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdout = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            text
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
            stdout: Some(stdout),
        }
    }

    /// The first stderr line (from the start) that `matches`, waiting up to 60 s for it.
    fn line(&mut self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        if let Some(line) = self.seen.iter().find(|l| matches(l)) {
            return line.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if matches(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "the CLI never said {what}; its stderr so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// The stderr line right after the first one that `matches`.
    fn line_after(&mut self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let first = self.line(what, &matches);
        let at = self.seen.iter().position(|l| *l == first).unwrap();
        if let Some(next) = self.seen.get(at + 1) {
            return next.clone();
        }
        match self.lines.recv_timeout(Duration::from_secs(60)) {
            Ok(next) => {
                self.seen.push(next.clone());
                next
            }
            Err(_) => panic!(
                "the CLI said nothing after {what}; its stderr:\n{}",
                self.seen.join("\n")
            ),
        }
    }

    /// Wait for the CLI to exit: exit code, stdout, all of stderr. The CLI's own limit
    /// ([`LOGIN_TIMEOUT_SECS`]) comes first, so a stuck login ends with its own message.
    fn finish(mut self) -> (i32, String, String) {
        let deadline = Instant::now() + Duration::from_secs(FINISH_TIMEOUT_SECS);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("the CLI did not finish; its stderr:\n{}", self.drain().join("\n"));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let stderr = self.drain().join("\n");
        let stdout = self.stdout.take().unwrap().join().unwrap();
        (status.code().unwrap_or(-1), stdout, stderr)
    }

    /// Every stderr line, once the CLI has exited (the reader thread ends with the pipe).
    fn drain(&mut self) -> Vec<String> {
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        self.seen.clone()
    }

    /// Still running?
    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server's config: people sign in through `issuer` (`[cli]`), whose ID tokens for the
/// CLI's client it accepts, the principal named `sso:` and the token's `sub`.
fn sso_config(issuer: &str) -> String {
    format!(
        "[[auth.oidc]]\nissuer = \"{issuer}\"\naudience = [\"{CLIENT_ID}\"]\nprincipal_prefix = \"sso:\"\nleeway = \"1s\"\n\n[cli]\nsso_issuer = \"{issuer}\"\nsso_client_id = \"{CLIENT_ID}\"\n"
    )
}

fn sso_server(issuer: &str) -> Server {
    Server::start_with(&quickstart(), Some(&sso_config(issuer)))
}

/// Chromium that reaches the loopback only: the provider's pages must need nothing else.
fn browser() -> Browser {
    Browser::start_loopback_only(1000, 900)
}

/// The server's refused authentications so far (`jitgate_auth_failures_total`, every
/// reason): a credential the CLI sent and the server turned down counts here.
fn auth_failures(s: &Server) -> u64 {
    let text = s.http.get(format!("{}/metrics", s.url)).send().unwrap().text().unwrap();
    text.lines()
        .filter(|l| l.starts_with("jitgate_auth_failures_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// `To sign in, open VERIFICATION_URI and enter the code USER_CODE`: the URI and the code.
fn device_prompt(line: &str) -> (String, String) {
    let rest = line
        .strip_prefix("To sign in, open ")
        .unwrap_or_else(|| panic!("not the device prompt: {line:?}"));
    let (uri, code) = rest
        .split_once(" and enter the code ")
        .unwrap_or_else(|| panic!("not the device prompt: {line:?}"));
    (uri.to_string(), code.trim().to_string())
}

fn is_device_prompt(line: &str) -> bool {
    line.starts_with("To sign in, open ") && line.contains(" and enter the code ")
}

/// Read the device prompt from the running CLI and complete it in `b` as `login`.
fn complete_cli_device_flow(cli: &mut Running, b: &Browser, provider: &OidcProvider, login: &str) {
    let prompt = cli.line("the device prompt", is_device_prompt);
    let (uri, code) = device_prompt(&prompt);
    assert_eq!(uri, format!("{}/device", provider.issuer), "{prompt}");
    let pages = complete_device_flow(b, &provider.issuer, &uri, &code, login);
    assert_eq!(
        pages,
        [
            Page::DeviceCodeEntry,
            Page::DeviceConfirm,
            Page::Login,
            Page::Consent,
            Page::DeviceSuccess
        ]
    );
}

/// `jitgate login --url URL --device` completed as `login`: the CLI's exit, stdout and stderr.
fn device_login(me: &Person, s: &Server, provider: &OidcProvider, b: &Browser, login: &str) -> (i32, String, String) {
    let mut cli = me.spawn(&["login", "--url", &s.url, "--device"], &[]);
    complete_cli_device_flow(&mut cli, b, provider, login);
    cli.finish()
}

/// A signed-in profile: device login as `login`, checked.
fn signed_in(me: &Person, s: &Server, provider: &OidcProvider, login: &str) {
    signed_in_as_profile(me, s, provider, login, "default");
}

/// [`signed_in`] into the profile `profile`.
fn signed_in_as_profile(me: &Person, s: &Server, provider: &OidcProvider, login: &str, profile: &str) {
    let b = browser();
    let mut cli = me.spawn(&["login", "--url", &s.url, "--device", "--profile", profile], &[]);
    complete_cli_device_flow(&mut cli, &b, provider, login);
    signed_in_said(cli.finish(), s, login, profile);
}

/// Checks a finished login (exit, stdout, stderr): exit 0, and it says it signed in to `s`
/// as sso:`login` into `profile`. Its stdout and stderr, for more checks.
fn signed_in_said(finished: (i32, String, String), s: &Server, login: &str, profile: &str) -> (String, String) {
    let (code, out, err) = finished;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out.trim(),
        format!("Signed in to {} as sso:{login} (profile {profile})", s.url)
    );
    (out, err)
}

/// The authorization URL the browser flow printed: the line after `Sign in to ISSUER in your
/// browser; if it did not open, go to:`, two spaces then the URL.
fn authorization_url(cli: &mut Running, issuer: &str) -> reqwest::Url {
    let heading = format!("Sign in to {issuer} in your browser; if it did not open, go to:");
    let line = cli.line_after("the browser flow's heading", |l| l == heading);
    let url = line
        .strip_prefix("  ")
        .unwrap_or_else(|| panic!("not two spaces then the URL: {line:?}"));
    reqwest::Url::parse(url).unwrap_or_else(|e| panic!("{e}: {url}"))
}

/// `jitgate login --url URL` (the browser flow) with `BROWSER=browser` (`true`: opens nothing
/// and succeeds), left running: the CLI, the authorization URL it printed, and the redirect URI
/// in that URL (the CLI's loopback listener).
fn start_browser_login(me: &Person, s: &Server, issuer: &str, browser: &str) -> (Running, reqwest::Url, reqwest::Url) {
    let mut cli = me.spawn(&["login", "--url", &s.url], &[("BROWSER", browser)]);
    let url = authorization_url(&mut cli, issuer);
    let redirect = query(&url, "redirect_uri").unwrap_or_else(|| panic!("no redirect_uri: {url}"));
    let redirect = reqwest::Url::parse(&redirect).unwrap_or_else(|e| panic!("{e}: {redirect}"));
    (cli, url, redirect)
}

fn query(url: &reqwest::Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// A `$BROWSER` for `me`: a script that writes its argument count and first argument to a
/// file and exits 0. Its path, and the file's.
fn recording_browser(me: &Person) -> (String, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let script = me.home.path().join("record-browser");
    let arguments = me.home.path().join("browser-arguments");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n%s\\n' \"$#\" \"$1\" > '{}.tmp' && mv '{0}.tmp' '{0}'\n",
            arguments.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).unwrap();
    (script.display().to_string(), arguments)
}

/// The text of `path` once it exists (up to 30 s).
fn wait_for_file(path: &Path) -> String {
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// When `expires_at` (RFC 3339) is.
fn instant_of(expires_at: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(expires_at.as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc)
}

/// Sleep until `expires_at` has passed by `margin`.
fn sleep_past(expires_at: &Value, margin: Duration) {
    let until = instant_of(expires_at) + chrono::Duration::from_std(margin).unwrap();
    let now = chrono::Utc::now();
    if until > now {
        std::thread::sleep((until - now).to_std().unwrap());
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o777
}

/// One raw HTTP request to `127.0.0.1:port`: the status of the answer (0 when the connection
/// closed without one).
fn raw_request(port: u16, request: &[u8]) -> u16 {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn get(port: u16, target: &str) -> (u16, String) {
    let response = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{port}{target}"))
        .send()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().unwrap_or_default())
}

/// The CLI's side of RFC 8252 played by a test: a listener on a port of its own that answers
/// every request with a page and sends its request line on; it stops when dropped.
struct CallbackListener {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CallbackListener {
    fn start() -> (CallbackListener, mpsc::Receiver<String>) {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // Non-blocking, so that the thread sees `stop` rather than wait in accept forever.
        listener.set_nonblocking(true).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                let Ok((mut stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                let _ = reader.read_line(&mut request_line);
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 9\r\nconnection: close\r\n\r\nreceived.",
                );
                let _ = tx.send(request_line);
            }
        });
        (
            CallbackListener {
                port,
                stop,
                thread: Some(thread),
            },
            rx,
        )
    }
}

impl Drop for CallbackListener {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// The provider on its own: what the CLI's tests stand on.

#[test]
fn the_test_provider_completes_the_device_flow_in_chromium_and_jitgate_accepts_its_id_token() {
    let provider = OidcProvider::start();
    let s = sso_server(&provider.issuer);
    let (status, options) = s.get("/v1/login/options", "");
    assert_eq!(status, 200);
    assert_eq!(options["oidc"]["issuer"], provider.issuer.as_str());
    let doc = provider.discovery();
    assert_eq!(doc["issuer"], provider.issuer.as_str());
    for endpoint in [
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "device_authorization_endpoint",
        "revocation_endpoint",
    ] {
        assert!(
            doc[endpoint]
                .as_str()
                .is_some_and(|u| u.starts_with(&format!("{}/", provider.issuer))),
            "{endpoint}: {doc}"
        );
    }
    assert_eq!(doc["code_challenge_methods_supported"], serde_json::json!(["S256"]));

    // Started as the CLI starts it, with the server's scopes.
    let scopes: Vec<&str> = options["oidc"]["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let started = provider.device_authorization(&scopes.join(" "));
    let device_code = started["device_code"].as_str().unwrap();
    let (status, pending) = provider.device_token(device_code);
    assert_eq!(
        (status, pending["error"].as_str()),
        (400, Some("authorization_pending"))
    );
    let b = browser();
    let pages = complete_device_flow(
        &b,
        &provider.issuer,
        started["verification_uri"].as_str().unwrap(),
        started["user_code"].as_str().unwrap(),
        "carol",
    );
    assert_eq!(pages.first(), Some(&Page::DeviceCodeEntry));
    assert_eq!(pages.last(), Some(&Page::DeviceSuccess));
    let (status, tokens) = provider.device_token(device_code);
    assert_eq!(status, 200, "{tokens}");
    let id_token = tokens["id_token"].as_str().unwrap();
    let refresh_token = tokens["refresh_token"]
        .as_str()
        .expect("offline_access gives a refresh token");
    let claims = jwt_claims(id_token);
    assert_eq!(claims["iss"], provider.issuer.as_str());
    assert_eq!(claims["aud"], CLIENT_ID);
    assert_eq!(claims["sub"], "carol");
    assert_eq!(claims["email"], "carol@example.test");
    assert_eq!(claims["email_verified"], true);
    let lasts = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(lasts, 20, "{claims}");

    // jitgate takes the ID token as the provider's user, through the provider's JWKS.
    let (status, who) = s.get("/v1/whoami", id_token);
    assert_eq!(status, 200, "{who}");
    assert_eq!(who["principal"], "sso:carol");
    assert_eq!(who["credential"]["kind"], "oidc");
    assert_eq!(who["credential"]["issuer"], provider.issuer.as_str());

    // Refresh tokens rotate: the new one works, the spent one presented again ends the grant.
    // (A second later, so that the new ID token's `iat`, and so the token, differs.)
    std::thread::sleep(Duration::from_millis(1100));
    let (status, renewed) = provider.refresh(refresh_token);
    assert_eq!(status, 200, "{renewed}");
    let next = renewed["refresh_token"].as_str().unwrap();
    assert_ne!(next, refresh_token);
    assert_ne!(renewed["id_token"], tokens["id_token"]);
    let (status, reused) = provider.refresh(refresh_token);
    assert_eq!((status, reused["error"].as_str()), (400, Some("invalid_grant")));
    let (status, after) = provider.refresh(next);
    assert_eq!((status, after["error"].as_str()), (400, Some("invalid_grant")));

    // Revocation ends a live one.
    let again = provider.device_authorization("openid offline_access");
    complete_device_flow(
        &b,
        &provider.issuer,
        again["verification_uri_complete"].as_str().unwrap(),
        again["user_code"].as_str().unwrap(),
        "carol",
    );
    let (status, tokens) = provider.device_token(again["device_code"].as_str().unwrap());
    assert_eq!(status, 200, "{tokens}");
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    provider.revoke(refresh_token);
    let (status, refused) = provider.refresh(refresh_token);
    assert_eq!((status, refused["error"].as_str()), (400, Some("invalid_grant")));
}

#[test]
fn the_test_provider_answers_a_loopback_redirect_on_any_port_with_pkce() {
    use base64::Engine;
    use sha2::Digest;
    let provider = OidcProvider::start();
    // The CLI's side of RFC 8252 played by the test: a listener on a port of its own.
    let (callbacks, rx) = CallbackListener::start();
    let port = callbacks.port;
    // What reached /callback next (Chromium asks for /favicon.ico too).
    let next_callback = |rx: &mpsc::Receiver<String>, port: u16| loop {
        let request_line = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let target = request_line.split_whitespace().nth(1).unwrap();
        let landed = reqwest::Url::parse(&format!("http://127.0.0.1:{port}{target}")).unwrap();
        if landed.path() == "/callback" {
            break landed;
        }
    };
    let verifier = "a-verifier-of-at-least-43-characters-0123456789";
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    let redirect = format!("http://127.0.0.1:{port}/callback");
    // The code's exchange at the token endpoint, as the CLI makes it.
    let exchange = |code: &str, verifier: &str| {
        provider.post_form(
            "token_endpoint",
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &redirect),
                ("client_id", CLIENT_ID),
                ("code_verifier", verifier),
            ],
        )
    };
    let mut url = reqwest::Url::parse(provider.discovery()["authorization_endpoint"].as_str().unwrap()).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", CLIENT_ID)
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", &redirect)
        .append_pair("scope", "openid profile email offline_access")
        .append_pair("state", "the-state")
        .append_pair("nonce", "the-nonce")
        .append_pair("prompt", "consent")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let b = browser();
    let pages = complete_authorization(&b, &provider.issuer, url.as_str(), "carol", &redirect);
    assert_eq!(pages, [Page::Login, Page::Consent, Page::Other]);
    let landed = next_callback(&rx, port);
    assert_eq!(landed.path(), "/callback");
    assert_eq!(query(&landed, "state").as_deref(), Some("the-state"));
    assert_eq!(query(&landed, "iss").as_deref(), Some(provider.issuer.as_str()));
    let code = query(&landed, "code").unwrap();

    // A wrong verifier: the code is refused; the right one: tokens.
    let (status, refused) = exchange(&code, "a-wrong-verifier-of-at-least-43-characters-000");
    assert_eq!(
        (status, refused["error"].as_str()),
        (400, Some("invalid_grant")),
        "{refused}"
    );
    // (A code is good once: a failed attempt spends it. Sign in again for a fresh one.)
    b.goto(url.as_str());
    complete_in_browser(&b, &provider.issuer, "carol", None, |b, p| {
        p == Page::Other && b.url().starts_with(&redirect)
    });
    let landed = next_callback(&rx, port);
    let code = query(&landed, "code").unwrap();
    let (status, tokens) = exchange(&code, verifier);
    assert_eq!(status, 200, "{tokens}");
    let claims = jwt_claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(claims["nonce"], "the-nonce");
    assert_eq!(claims["sub"], "carol");
    assert!(
        tokens["refresh_token"].is_string(),
        "prompt=consent keeps offline_access: {tokens}"
    );

    // A redirect to anywhere but the loopback is refused by the provider itself.
    let mut elsewhere = url.clone();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "redirect_uri" {
                "http://attacker.example/callback".to_string()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    elsewhere.query_pairs_mut().clear().extend_pairs(pairs);
    b.goto(elsewhere.as_str());
    assert_eq!(page(&b, &provider.issuer), Page::Error);
    assert!(b.source().contains("redirect_uri"), "{}", b.source());

    // No PKCE at all: refused before any sign-in, the error sent back to the client.
    let mut without_pkce = url.clone();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| !k.starts_with("code_challenge"))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    without_pkce.query_pairs_mut().clear().extend_pairs(pairs);
    b.goto(without_pkce.as_str());
    let landed = next_callback(&rx, port);
    assert_eq!(query(&landed, "error").as_deref(), Some("invalid_request"), "{landed}");
    assert!(
        query(&landed, "error_description").is_some_and(|d| d.contains("PKCE")),
        "{landed}"
    );
    assert_eq!(query(&landed, "code"), None, "{landed}");
    drop(callbacks);
}

// ---------------------------------------------------------------------------------------
// The CLI.

#[test]
fn the_bar_a_device_flow_login_makes_whoami_print_the_providers_user() {
    let provider = OidcProvider::start();
    let s = sso_server(&provider.issuer);
    let me = person();
    let b = browser();
    let mut cli = me.spawn(&["login", "--url", &s.url, "--device"], &[]);
    let prompt = cli.line("the device prompt", is_device_prompt);
    // The complete URI, when the provider gives one, on the next line.
    let (_, code) = device_prompt(&prompt);
    let complete = cli.line_after("the device prompt", is_device_prompt);
    assert_eq!(
        complete,
        format!("  or open {}/device?user_code={code}", provider.issuer),
        "{prompt}"
    );
    complete_cli_device_flow(&mut cli, &b, &provider, "carol");
    let (out, err) = signed_in_said(cli.finish(), &s, "carol", "default");

    let who = me.whoami_is("sso:carol", &provider.issuer);

    // Stored as an OIDC credential for this server, 0600 in a 0700 directory.
    let path = me.credential("default");
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&me.config_dir()), 0o700);
    assert_eq!(mode(&me.config_dir().join("credentials")), 0o700);
    let stored = me.stored("default");
    assert_eq!(stored["kind"], "oidc");
    assert_eq!(stored["url"], s.url.as_str());
    assert_eq!(stored["issuer"], provider.issuer.as_str());
    assert_eq!(stored["client_id"], CLIENT_ID);
    let id_token = stored["id_token"].as_str().unwrap().to_string();
    let refresh_token = stored["refresh_token"].as_str().unwrap().to_string();
    let claims = jwt_claims(&id_token);
    assert_eq!(claims["sub"], "carol");
    assert_eq!(
        instant_of(&stored["expires_at"]).timestamp(),
        claims["exp"].as_i64().unwrap()
    );

    // No token anywhere else: not in another file, not on the terminal.
    for file in me.files() {
        if file == path {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            !text.contains(&id_token) && !text.contains(&refresh_token),
            "{} holds a token",
            file.display()
        );
    }
    for shown in [&out, &err, &who] {
        assert!(!shown.contains(&id_token) && !shown.contains(&refresh_token), "{shown}");
        assert!(!shown.contains("eyJ"), "a JWT was printed: {shown}");
    }
    let (code, json, _) = me.run(&["whoami", "--output", "json"]);
    assert_eq!(code, 0);
    let json: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["principal"], "sso:carol");
    assert_eq!(json["credential"]["kind"], "oidc");
}

#[test]
fn the_browser_flow_lands_on_the_callback_page_and_signs_in() {
    let provider = OidcProvider::start();
    let s = sso_server(&provider.issuer);
    let me = person();
    // A $BROWSER that writes down its arguments and succeeds: the test is the browser, driven
    // to the URL the CLI gave that program.
    let (browser_program, arguments) = recording_browser(&me);
    let (cli, url, redirect) = start_browser_login(&me, &s, &provider.issuer, &browser_program);
    let given = wait_for_file(&arguments);
    assert_eq!(
        given,
        format!("1\n{url}\n"),
        "$BROWSER is run with the URL as its one argument, as printed"
    );
    assert!(url.as_str().starts_with(&format!("{}/", provider.issuer)), "{url}");
    assert_eq!(query(&url, "client_id").as_deref(), Some(CLIENT_ID));
    assert_eq!(query(&url, "response_type").as_deref(), Some("code"));
    assert_eq!(query(&url, "code_challenge_method").as_deref(), Some("S256"));
    assert!(query(&url, "code_challenge").is_some_and(|c| c.len() >= 43), "{url}");
    assert!(query(&url, "state").is_some_and(|c| c.len() >= 16), "{url}");
    assert!(query(&url, "nonce").is_some_and(|c| c.len() >= 16), "{url}");
    assert_eq!(query(&url, "prompt").as_deref(), Some("consent"));
    let scope = query(&url, "scope").unwrap();
    for wanted in ["openid", "offline_access"] {
        assert!(scope.split(' ').any(|s| s == wanted), "{scope}");
    }
    assert_eq!(redirect.host_str(), Some("127.0.0.1"));
    assert_eq!(redirect.path(), "/callback");
    assert!(redirect.port().is_some_and(|p| p != 0));

    let b = browser();
    let pages = complete_authorization(&b, &provider.issuer, url.as_str(), "carol", redirect.as_str());
    assert_eq!(pages, [Page::Login, Page::Consent, Page::Other]);
    b.wait_for_text("h1", "Signed in to jitgate");
    assert!(
        b.text("p")
            .contains("You can close this tab and go back to the terminal."),
        "{}",
        b.source()
    );
    assert!(!b.source().contains("<script"), "{}", b.source());
    let (_, err) = signed_in_said(cli.finish(), &s, "carol", "default");
    assert!(!err.contains("eyJ"), "{err}");
    me.whoami_is("sso:carol", &provider.issuer);
    assert_eq!(mode(&me.credential("default")), 0o600);
    // The scopes held offline_access and the request prompt=consent: the provider kept it and
    // gave a refresh token, stored for the silent refresh.
    let stored = me.stored("default");
    assert_eq!(stored["kind"], "oidc");
    assert!(stored["refresh_token"].is_string(), "no refresh token stored");
    // The listener is gone once the login is over: `finish` saw the CLI exit, and its port
    // with it. (Probing the port afterwards could meet another test's listener.)
}

#[test]
fn when_no_browser_can_open_the_device_flow_takes_over() {
    let is_fallback = |l: &str| l == "No browser could be opened: using the device flow instead.";
    let provider = OidcProvider::start();
    let s = sso_server(&provider.issuer);
    let me = person();
    let b = browser();
    // `false URL` fails: the browser could not be opened.
    let mut cli = me.spawn(&["login", "--url", &s.url], &[("BROWSER", "false")]);
    cli.line("the fallback", is_fallback);
    complete_cli_device_flow(&mut cli, &b, &provider, "carol");
    signed_in_said(cli.finish(), &s, "carol", "default");
    me.whoami_is("sso:carol", &provider.issuer);
    drop(b);

    // No desktop and no BROWSER at all: the same.
    let other = person();
    let mut cli = other.spawn(&["login", "--url", &s.url], &[]);
    cli.line("the fallback", is_fallback);
    complete_cli_device_flow(&mut cli, &browser(), &provider, "dave");
    let (code, out, err) = cli.finish();
    assert_eq!(code, 0, "{out}{err}");
    other.whoami_is("sso:dave", &provider.issuer);
}

#[test]
fn the_loopback_callback_refuses_what_is_not_the_providers_answer() {
    let provider = OidcProvider::start();
    let s = sso_server(&provider.issuer);
    let me = person();
    let (mut cli, url, redirect) = start_browser_login(&me, &s, &provider.issuer, "true");
    let port = redirect.port().unwrap();
    let state = query(&url, "state").unwrap();

    // A connection that says nothing and stays open must not hold the login up.
    let idle = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();

    // Another local process guessing: a wrong or missing state is a 400, and the CLI waits on.
    for target in [
        "/callback?state=wrong&code=stolen".to_string(),
        "/callback?code=stolen".to_string(),
        format!("/callback?state={}x&code=stolen", state),
        "/callback?state=wrong&error=access_denied&error_description=go%20away".to_string(),
        "/callback?state=%1b%5b31m%00&code=x".to_string(),
    ] {
        let (status, _) = get(port, &target);
        assert_eq!(status, 400, "{target}");
        assert!(cli.running(), "{target} ended the login");
    }
    // Anything but /callback: 404.
    for target in ["/", "/callback/", "/favicon.ico", "/other?state=x&code=y"] {
        let (status, _) = get(port, target);
        assert_eq!(status, 404, "{target}");
        assert!(cli.running(), "{target} ended the login");
    }
    // Not a GET, an oversized request line, garbage: refused, and the CLI waits on.
    let status = raw_request(
        port,
        format!("POST /callback?state={state}&code=x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n")
            .as_bytes(),
    );
    assert!((400..500).contains(&status), "POST: {status}");
    let huge = format!("GET /callback?state={}&code=x HTTP/1.1\r\n\r\n", "a".repeat(20_000));
    let status = raw_request(port, huge.as_bytes());
    assert!(status == 0 || (400..500).contains(&status), "oversized: {status}");
    let status = raw_request(port, b"\x00\x01\x02 not http\r\n\r\n");
    assert!(status == 0 || (400..500).contains(&status), "garbage: {status}");
    assert!(cli.running(), "the attacks ended the login");

    // The real answer still signs in.
    let b = browser();
    complete_authorization(&b, &provider.issuer, url.as_str(), "carol", redirect.as_str());
    b.wait_for_text("h1", "Signed in to jitgate");
    let (code, out, err) = cli.finish();
    assert_eq!(code, 0, "{out}{err}");
    drop(idle);
    me.whoami_is("sso:carol", &provider.issuer);
}

#[test]
fn the_id_token_is_refreshed_after_it_expires_even_by_several_clis_at_once() {
    // ID tokens of 30 s, refreshed 10 s before they expire: the four CLIs below have 20 s to
    // start and read the credential before one of them would rightly refresh again.
    let provider = OidcProvider::start_with_env(&[("OIDC_ID_TOKEN_TTL", "30")]);
    let s = sso_server(&provider.issuer);
    let me = person();
    signed_in(&me, &s, &provider, "carol");
    let first = me.stored("default");

    assert_eq!(provider.refresh_grants(), 0);
    sleep_past(&first["expires_at"], Duration::from_secs(2));
    me.whoami_is("sso:carol", &provider.issuer);
    assert_eq!(provider.refresh_grants(), 1, "one refresh for one expiry");
    let second = me.stored("default");
    assert_ne!(second["id_token"], first["id_token"]);
    assert!(instant_of(&second["expires_at"]) > instant_of(&first["expires_at"]));
    assert_ne!(
        second["refresh_token"], first["refresh_token"],
        "the provider rotates refresh tokens"
    );
    assert_eq!(mode(&me.credential("default")), 0o600);
    // The old ID token has expired: the server refuses it.
    let (status, _) = s.get("/v1/whoami", first["id_token"].as_str().unwrap());
    assert_eq!(status, 401);
    let (status, who) = s.get("/v1/whoami", second["id_token"].as_str().unwrap());
    assert_eq!((status, who["principal"].as_str()), (200, Some("sso:carol")));

    // Several at once after it expires again: one refreshes, the others use its result. (With
    // rotation, two refreshes with the same token would end the whole grant at the provider.)
    sleep_past(&second["expires_at"], Duration::from_secs(2));
    let runs: Vec<Running> = (0..4).map(|_| me.spawn(&["whoami"], &[])).collect();
    for run in runs {
        let (code, out, err) = run.finish();
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("principal   sso:carol\n"), "{out}");
    }
    // One of them refreshed; the others waited on the lock and took its result. (Without the
    // lock, each would have refreshed, and the provider would have ended the grant.)
    assert_eq!(
        provider.refresh_grants(),
        2,
        "four CLIs at once refreshed once between them:\n{}",
        provider.log()
    );
    let third = me.stored("default");
    assert_ne!(third["id_token"], second["id_token"]);
    assert_ne!(third["refresh_token"], second["refresh_token"]);
    // The grant is alive: the stored refresh token still works at the provider. Read after
    // the last CLI run, whatever it did (a slow machine may have refreshed once more), and
    // used here last, since this use rotates it away from the CLI.
    me.whoami_is("sso:carol", &provider.issuer);
    let last = me.stored("default");
    let (status, renewed) = provider.refresh(last["refresh_token"].as_str().unwrap());
    assert_eq!(status, 200, "{renewed}");
    // No lock or temporary file is left readable by others.
    for file in me.files() {
        assert_eq!(mode(&file) & 0o077, 0, "{}", file.display());
    }
}

/// A server whose single sign-on users are developers: they may ask for `prod-db read`, which
/// one of `sre` (demo-bob) approves.
fn sso_server_for_developers(issuer: &str) -> Server {
    let config = sso_config(issuer).replacen("leeway = \"1s\"\n", "leeway = \"1s\"\ngroups = [\"dev\"]\n", 1);
    assert!(config.contains("groups = [\"dev\"]"), "{config}");
    Server::start_with(&quickstart(), Some(&config))
}

#[test]
fn a_wait_for_approval_outlives_the_id_token_it_started_with() {
    // ID tokens of 20 s (the provider's default); the CLI's long poll lasts 50 s, so the poll
    // after the first is sent when the first ID token has long expired.
    let provider = OidcProvider::start();
    let s = sso_server_for_developers(&provider.issuer);
    let me = person();
    signed_in(&me, &s, &provider, "carol");
    let first = me.stored("default");
    assert_eq!(provider.refresh_grants(), 0);

    let mut cli = me.spawn(
        &[
            "request",
            "prod-db",
            "read",
            "--reason",
            "outlives the token",
            "--wait",
            "--output",
            "json",
        ],
        &[],
    );
    let pending = pending_request(&s, |r| r["requester"] == "sso:carol");
    // The waiting CLI refreshes its credential when its next poll is due, the first ID token
    // being then within the refresh margin or past it.
    let deadline = Instant::now() + Duration::from_secs(90);
    while provider.refresh_grants() == 0 {
        assert!(cli.running(), "the CLI ended before it refreshed: {:?}", cli.drain());
        assert!(
            Instant::now() < deadline,
            "the waiting CLI never refreshed:\n{}",
            provider.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Approved by another principal after the first ID token expired, the server's leeway too.
    sleep_past(&first["expires_at"], Duration::from_secs(2));
    let (status, approved) = s.post(
        &format!("/v1/requests/{}/approve", id(&pending)),
        "demo-bob",
        serde_json::json!({}),
    );
    assert_eq!(status, 200, "{approved}");
    let (code, out, err) = cli.finish();
    assert_eq!(code, 0, "{out}{err}");
    let decided: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(decided["status"], "approved", "{out}");
    assert_eq!(decided["id"], pending["id"], "{out}");
    // The refreshed credential was stored for the next command.
    let now = me.stored("default");
    assert_ne!(now["id_token"], first["id_token"]);
    assert_eq!(mode(&me.credential("default")), 0o600);
}

#[test]
fn an_id_token_the_server_refuses_is_refreshed_once_and_the_call_made_again() {
    let provider = OidcProvider::start();
    let s = sso_server(&provider.issuer);
    let me = person();
    signed_in(&me, &s, &provider, "carol");
    let mut first = me.stored("default");
    let real_expiry = first["expires_at"].clone();
    // This machine believes the ID token holds for another hour (a clock that is behind): only
    // the server's refusal shows it expired.
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    first["expires_at"] = Value::String(later);
    std::fs::write(me.credential("default"), first.to_string()).unwrap();
    sleep_past(&real_expiry, Duration::from_secs(2));
    let refused_before = auth_failures(&s);

    me.whoami_is("sso:carol", &provider.issuer);
    assert_eq!(
        provider.refresh_grants(),
        1,
        "one refresh after one refusal:\n{}",
        provider.log()
    );
    assert_eq!(auth_failures(&s), refused_before + 1, "refused once, then accepted");
    let now = me.stored("default");
    assert_ne!(now["id_token"], first["id_token"]);
    assert!(instant_of(&now["expires_at"]) < chrono::Utc::now() + chrono::Duration::minutes(5));
    assert_eq!(mode(&me.credential("default")), 0o600);
}

#[test]
fn logout_revokes_the_refresh_token_at_the_provider() {
    let provider = OidcProvider::start();
    let s = sso_server(&provider.issuer);
    let me = person();
    signed_in(&me, &s, &provider, "carol");
    let refresh_token = me.stored("default")["refresh_token"].as_str().unwrap().to_string();

    let (code, out, err) = me.run(&["logout"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out.trim(),
        format!(
            "Signed out of profile default: removed {}; the refresh token was revoked at {}",
            me.credential("default").display(),
            provider.issuer
        )
    );
    assert!(!me.credential("default").exists());
    let (status, refused) = provider.refresh(&refresh_token);
    assert_eq!(
        (status, refused["error"].as_str()),
        (400, Some("invalid_grant")),
        "{refused}"
    );

    let (code, out, err) = me.run(&["whoami"]);
    assert_ne!(code, 0, "{out}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("not signed in") && err.contains("jitgate login"), "{err}");

    // -o json says so too.
    signed_in(&me, &s, &provider, "carol");
    let (code, out, err) = me.run(&["logout", "--output", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["revoked"], true);
    assert_eq!(json["removed"], true);
}

#[test]
fn a_refresh_token_revoked_at_the_provider_says_to_sign_in_again() {
    let provider = OidcProvider::start();
    let s = sso_server(&provider.issuer);
    let me = person();
    signed_in(&me, &s, &provider, "carol");
    let stored = me.stored("default");
    provider.revoke(stored["refresh_token"].as_str().unwrap());

    // Nothing happens until the ID token expires (the server checks its signature and expiry,
    // not the refresh token); then the refresh is refused.
    sleep_past(&stored["expires_at"], Duration::from_secs(2));
    let refused_before = auth_failures(&s);
    let (code, out, err) = me.run(&["whoami"]);
    assert_eq!(code, ERROR_EXIT, "{out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "profile default: the single sign-on session with {} has ended (the provider refused the refresh token): run jitgate login --profile default",
            provider.issuer
        )),
        "{err}"
    );
    assert!(out.is_empty(), "{out}");
    // Nothing was sent to the server with the expired token (it would have refused it), and
    // the file is still there to be replaced by the next login.
    assert_eq!(
        auth_failures(&s),
        refused_before,
        "the expired ID token reached the server"
    );
    assert!(me.credential("default").exists());
    // (The count would have moved: the server counts the expired token sent by hand.)
    let (status, _) = s.get("/v1/whoami", stored["id_token"].as_str().unwrap());
    assert_eq!(status, 401);
    assert!(
        auth_failures(&s) > refused_before,
        "jitgate_auth_failures_total did not count it"
    );
}

#[test]
fn a_provider_that_names_itself_otherwise_is_refused_and_nothing_is_stored() {
    let provider = OidcProvider::start();
    // The server names the provider http://localhost:PORT; it calls itself http://127.0.0.1:PORT.
    let named = format!("http://localhost:{}", provider.port);
    let s = sso_server(&named);
    let me = person();
    for args in [
        vec!["login", "--url", s.url.as_str(), "--device"],
        vec!["login", "--url", s.url.as_str()],
    ] {
        let (code, out, err) = me.run_env(&args, &[("BROWSER", "true")]);
        assert_eq!(code, ERROR_EXIT, "{args:?}: {out}{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("nothing was stored"), "{err}");
        assert!(
            err.contains(&format!(
                "the identity provider at {named} names itself {}: refusing to sign in",
                provider.issuer
            )),
            "{err}"
        );
        assert!(!err.contains("To sign in") && !err.contains("Sign in to"), "{err}");
        me.assert_nothing_stored(&format!("{args:?}"));
        me.assert_not_signed_in();
    }
}

#[test]
fn a_server_that_switched_provider_says_so_for_the_stored_credential() {
    // ID tokens that outlast the test: the stored one is still good when the server changes.
    let old = OidcProvider::start_with_env(&[("OIDC_ID_TOKEN_TTL", "600")]);
    let new = OidcProvider::start();
    let mut s = sso_server(&old.issuer);
    let me = person();
    signed_in(&me, &s, &old, "carol");
    me.whoami_is("sso:carol", &old.issuer);

    s.kill9_and_restart_after(|s| {
        let limits = "[limits]\nrequests_per_minute = 0\nwrites_per_minute = 0\nmax_pending_per_requester = 0\n";
        std::fs::write(
            s.dir.path().join("config.toml"),
            format!("{}\n{limits}", sso_config(&new.issuer)),
        )
        .unwrap();
    });
    let (code, out, err) = me.run(&["whoami"]);
    assert_eq!(code, ERROR_EXIT, "{out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "profile default: the server now signs people in through {}, not {}: run jitgate login --profile default",
            new.issuer, old.issuer
        )),
        "{err}"
    );
    // Signing in again, through the new one, works.
    signed_in(&me, &s, &new, "dave");
    me.whoami_is("sso:dave", &new.issuer);
}

#[test]
fn the_providers_refusal_is_shown_in_one_line_escaped() {
    let provider = OidcProvider::start();
    let s = sso_server(&provider.issuer);

    // A refusal with control and invisible characters in its description, as a hostile page
    // could send it to the callback with the right state (which is in the URL).
    let me = person();
    let (cli, url, redirect) = start_browser_login(&me, &s, &provider.issuer, "true");
    let port = redirect.port().unwrap();
    let state = query(&url, "state").unwrap();
    let mut callback = reqwest::Url::parse(&format!("http://127.0.0.1:{port}/callback")).unwrap();
    callback
        .query_pairs_mut()
        .append_pair("state", &state)
        .append_pair("error", "access_denied\u{1b}[2J")
        .append_pair(
            "error_description",
            "no\u{1b}[31m red\u{7}\r\nfake: line\u{202e}txt\u{200b}",
        );
    let (status, _) = get(port, &format!("/callback?{}", callback.query().unwrap()));
    assert!(status < 500, "{status}");
    let (code, out, err) = cli.finish();
    assert_eq!(code, ERROR_EXIT, "{out}{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.contains(
            "the identity provider refused the sign-in: access_denied\\x1b[2J (no\\x1b[31m red\\x07\\r\\nfake: line\\u{202e}txt\\u{200b})"
        ),
        "{err}"
    );
    assert!(
        !err.contains('\u{1b}') && !err.contains('\u{7}') && !err.contains('\u{202e}'),
        "{err:?}"
    );
    assert!(!err.contains("\nfake: line"), "{err}");
    me.assert_nothing_stored("a forged refusal");

    // The provider's own refusal: the person presses [ Cancel ] on its sign-in page.
    let (cli, url, _) = start_browser_login(&me, &s, &provider.issuer, "true");
    let b = browser();
    b.goto(url.as_str());
    assert_eq!(page(&b, &provider.issuer), Page::Login);
    b.click(CANCEL_LINK);
    let (code, out, err) = cli.finish();
    assert_eq!(code, ERROR_EXIT, "{out}{err}");
    assert!(
        err.lines()
            .last()
            .unwrap_or_default()
            .contains("the identity provider refused the sign-in: access_denied (End-User aborted interaction)"),
        "{err}"
    );
    me.assert_nothing_stored("[ Cancel ] at the provider");
    me.assert_not_signed_in();
}

#[test]
fn a_provider_account_whose_name_the_server_refuses_stores_nothing() {
    let provider = OidcProvider::start();
    let s = sso_server(&provider.issuer);
    // The provider takes any login name as `sub`; jitgate's principals are ASCII: a look-alike
    // Cyrillic letter and a zero-width space are refused by the server, so the CLI's check
    // with /v1/whoami fails and nothing is kept.
    for login in ["c\u{0430}rol", "carol\u{200b}"] {
        let me = person();
        let b = browser();
        let (code, out, err) = device_login(&me, &s, &provider, &b, login);
        assert_eq!(code, ERROR_EXIT, "{login:?}: {out}{err}");
        assert!(out.is_empty(), "{out}");
        // The provider signed the person in; it is the server that refused the ID token.
        let last = err.lines().last().unwrap_or_default();
        assert!(
            last.starts_with(&format!(
                "error: {} refused the ID token from {} (401",
                s.url, provider.issuer
            )),
            "{err}"
        );
        assert!(last.ends_with("; nothing was stored"), "{err}");
        assert!(!err.contains('\u{200b}'), "{err:?}");
        assert!(!err.contains("eyJ"), "{err}");
        me.assert_nothing_stored(&format!("{login:?}"));
        me.assert_not_signed_in();
    }
}

#[test]
fn a_provider_that_is_down_when_the_id_token_expires_is_named_and_the_sign_in_kept() {
    let provider = OidcProvider::start();
    let issuer = provider.issuer.clone();
    let s = sso_server(&issuer);
    let me = person();
    signed_in_as_profile(&me, &s, &provider, "carol", "work");
    let stored = me.stored("work");
    assert_eq!(stored["kind"], "oidc");
    // Gone, its port held so that no other test's provider (the same issuer) takes it.
    let _dead = provider.stop_and_hold_port();

    sleep_past(&stored["expires_at"], Duration::from_secs(2));
    let (code, out, err) = me.run(&["whoami"]);
    assert_eq!(code, ERROR_EXIT, "{out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("profile work: cannot reach {issuer} to refresh the sign-in ("))
            && err.contains("): try again, or run jitgate login --profile work"),
        "{err}"
    );
    assert!(!err.contains("eyJ"), "{err}");
    // Nothing was lost: the refresh token is still there for when the provider is back.
    assert_eq!(me.stored("work"), stored);
}

#[test]
fn without_the_device_flow_the_browser_flow_waits_and_gives_up_in_time() {
    let provider = OidcProvider::start();
    let config = sso_config(&provider.issuer).replace(
        &format!("sso_client_id = \"{CLIENT_ID}\"\n"),
        &format!("sso_client_id = \"{CLIENT_ID}\"\nsso_device = false\n"),
    );
    assert!(config.contains("sso_device = false"), "{config}");
    let s = Server::start_with(&quickstart(), Some(&config));
    let (_, options) = s.get("/v1/login/options", "");
    assert_eq!(options["oidc"]["device"], false, "{options}");
    let me = person();

    // --device when the server offers no device flow: one line, nothing stored.
    let (code, out, err) = me.run(&["login", "--url", &s.url, "--device"]);
    assert_eq!(code, ERROR_EXIT, "{out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(
        err.trim_end(),
        format!(
            "error: {} does not offer the device flow to jitgate (the jitgate server's [cli] sso_device is false): run jitgate login without --device",
            provider.issuer
        )
    );
    me.assert_nothing_stored("--device without the device flow");

    // No browser can open and no device flow to fall back on: the URL is shown and the CLI
    // waits; the person opens it themselves.
    let (cli, url, redirect) = start_browser_login(&me, &s, &provider.issuer, "false");
    complete_authorization(&browser(), &provider.issuer, url.as_str(), "carol", redirect.as_str());
    let (code, out, err) = cli.finish();
    assert_eq!(code, 0, "{out}{err}");
    assert!(!err.contains("device flow instead"), "{err}");
    me.whoami_is("sso:carol", &provider.issuer);

    // Nobody comes back: it gives up after JITGATE_LOGIN_TIMEOUT seconds, in one line.
    let other = person();
    let started = Instant::now();
    let (code, out, err) = other.run_env(
        &["login", "--url", &s.url],
        &[("BROWSER", "true"), ("JITGATE_LOGIN_TIMEOUT", "3")],
    );
    assert_eq!(code, ERROR_EXIT, "{out}{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(
        err.lines().last().unwrap_or_default(),
        "error: gave up waiting for the browser after 3 s: run jitgate login again (or --device)",
        "{err}"
    );
    assert!(!other.credential("default").exists());
}

#[test]
fn the_device_flow_denied_at_the_provider_says_so_and_stores_nothing() {
    let provider = OidcProvider::start();
    let s = sso_server(&provider.issuer);
    let me = person();
    let mut cli = me.spawn(&["login", "--url", &s.url, "--device"], &[]);
    let prompt = cli.line("the device prompt", is_device_prompt);
    let (uri, code) = device_prompt(&prompt);
    let b = browser();
    b.goto(&uri);
    // The person enters the code, then presses the provider's own [ Abort ] on the page that
    // asks to confirm it.
    complete_in_browser(&b, &provider.issuer, "carol", Some(&code), |_, p| {
        p == Page::DeviceConfirm
    });
    b.click(DEVICE_ABORT);
    let (code, out, err) = cli.finish();
    assert_eq!(code, ERROR_EXIT, "{out}{err}");
    assert!(out.is_empty(), "{out}");
    assert_eq!(
        err.lines().last().unwrap_or_default(),
        format!(
            "error: the sign-in was denied at {}: run jitgate login --device again if that was a mistake",
            provider.issuer
        ),
        "{err}"
    );
    me.assert_nothing_stored("the device flow denied");
    me.assert_not_signed_in();
}

#[test]
fn a_device_code_that_expires_or_a_device_sign_in_that_takes_too_long_says_so() {
    // Device codes of 3 s: nobody enters this one in time.
    let provider = OidcProvider::start_with_env(&[("OIDC_DEVICE_CODE_TTL", "3")]);
    let s = sso_server(&provider.issuer);
    let me = person();
    let started = Instant::now();
    let (code, out, err) = me.run(&["login", "--url", &s.url, "--device"]);
    assert_eq!(code, ERROR_EXIT, "{out}{err}");
    assert!(started.elapsed() < Duration::from_secs(60), "{:?}", started.elapsed());
    assert!(err.lines().any(is_device_prompt), "{err}");
    assert_eq!(
        err.lines().last().unwrap_or_default(),
        format!(
            "error: the device code expired before the sign-in was done at {}: run jitgate login --device again",
            provider.issuer
        ),
        "{err}"
    );
    me.assert_nothing_stored("an expired device code");

    // A device code that lasts, and a CLI that waits 3 s (JITGATE_LOGIN_TIMEOUT).
    let provider = OidcProvider::start();
    let s = sso_server(&provider.issuer);
    let other = person();
    let (code, out, err) = other.run_env(
        &["login", "--url", &s.url, "--device"],
        &[("JITGATE_LOGIN_TIMEOUT", "3")],
    );
    assert_eq!(code, ERROR_EXIT, "{out}{err}");
    assert_eq!(
        err.lines().last().unwrap_or_default(),
        "error: gave up waiting for the device sign-in after 3 s: run jitgate login --device again",
        "{err}"
    );
    other.assert_nothing_stored("a device sign-in that took too long");
    other.assert_not_signed_in();
}

#[test]
fn a_provider_without_the_device_flow_is_named_and_the_browser_flow_waits_instead() {
    let provider = OidcProvider::start_with_env(&[("OIDC_DEVICE_FLOW", "0")]);
    assert!(
        provider.discovery().get("device_authorization_endpoint").is_none(),
        "{}",
        provider.discovery()
    );
    // The server offers the device flow; the provider does not.
    let s = sso_server(&provider.issuer);
    let me = person();
    let (code, out, err) = me.run(&["login", "--url", &s.url, "--device"]);
    assert_eq!(code, ERROR_EXIT, "{out}{err}");
    assert_eq!(
        err.trim_end(),
        format!(
            "error: {} does not offer the device flow to jitgate (its discovery document names no device_authorization_endpoint): run jitgate login without --device",
            provider.issuer
        )
    );
    me.assert_nothing_stored("--device at a provider without it");

    // No browser opens and there is no device flow to fall back on: the URL is shown and the
    // CLI waits for the person to open it, then gives up in time.
    let (code, out, err) = me.run_env(
        &["login", "--url", &s.url],
        &[("BROWSER", "false"), ("JITGATE_LOGIN_TIMEOUT", "3")],
    );
    assert_eq!(code, ERROR_EXIT, "{out}{err}");
    assert!(
        err.starts_with(&format!(
            "Sign in to {} in your browser; if it did not open, go to:\n  {}/",
            provider.issuer, provider.issuer
        )),
        "{err}"
    );
    assert!(!err.contains("device flow instead"), "{err}");
    assert_eq!(
        err.lines().last().unwrap_or_default(),
        "error: gave up waiting for the browser after 3 s: run jitgate login again (or --device)",
        "{err}"
    );
    me.assert_nothing_stored("a browser flow nobody finished");
}

#[test]
fn logout_when_the_refresh_token_cannot_be_revoked_still_removes_the_file() {
    let provider = OidcProvider::start();
    let issuer = provider.issuer.clone();
    let s = sso_server(&issuer);
    let me = person();
    signed_in(&me, &s, &provider, "carol");

    // `login --output json` through single sign-on: the keys of the token login.
    let b = browser();
    let mut cli = me.spawn(
        &[
            "login",
            "--url",
            &s.url,
            "--device",
            "--profile",
            "work",
            "--output",
            "json",
        ],
        &[],
    );
    complete_cli_device_flow(&mut cli, &b, &provider, "carol");
    drop(b);
    let (code, out, err) = cli.finish();
    assert_eq!(code, 0, "{out}{err}");
    let json: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let mut keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["credential", "file", "principal", "profile", "url"], "{json}");
    assert_eq!(json["profile"], "work");
    assert_eq!(json["url"], s.url.as_str());
    assert_eq!(json["principal"], "sso:carol");
    assert_eq!(json["credential"]["kind"], "oidc");
    assert_eq!(json["file"], me.credential("work").display().to_string());
    assert!(
        !out.contains("eyJ") && !err.contains("eyJ"),
        "a JWT was printed: {out}{err}"
    );

    // The provider is gone: the revocation fails, the files go all the same.
    let dead = provider.stop_and_hold_port();
    let (code, out, err) = me.run(&["logout", "--profile", "default"]);
    assert_eq!(code, 0, "{out}{err}");
    let out = out.trim();
    assert!(
        out.starts_with(&format!(
            "Signed out of profile default: removed {}; the refresh token could not be revoked (",
            me.credential("default").display()
        )),
        "{out}"
    );
    assert!(
        out.ends_with(&format!("): it lasts until {issuer} expires it")),
        "{out}"
    );
    assert!(!me.credential("default").exists());

    let (code, out, err) = me.run(&["logout", "--profile", "work", "--output", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let json: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(json["revoked"], false, "{json}");
    assert_eq!(json["removed"], true, "{json}");
    assert_eq!(json["profile"], "work", "{json}");
    assert!(!me.credential("work").exists());
    drop(dead);
}
