//! Forward authentication through real reverse proxies on loopback, started by
//! `scripts/proxies.sh` with the configurations docs/forward-auth.md shows: nginx
//! (`auth_request`) and Caddy (`forward_auth`) from Debian, Traefik (`ForwardAuth`) and Envoy
//! (`ext_authz`) from their PyPI wheels, each in front of the same demo app (an nginx that
//! answers with the X-Jitgate-* headers it received). The bar of issue #23 for every proxy:
//! no grant -> 403 and the request link; approved -> 200 with the identity reaching the app;
//! a write refused while only read is granted; revocation and expiry -> 403 within a second;
//! a forged user header without the proxy's credential, or from a wrong address -> 401. And
//! the attacks a client can make through the proxy: forged forwarding headers, dot segments
//! plain and encoded, control and invisible characters.
//!
//! Requests go to the proxies as raw bytes over TCP: an HTTP client library would normalize
//! `/public/../admin` before sending it, and an attacker's client does not.

use crate::support::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const HOST: &str = "app.example.test";
/// What the demo app's every answer starts with: a body holding it came from the app.
const FROM_APP: &str = "demo app: ";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

fn policy() -> PathBuf {
    repo().join("examples/forward-auth")
}

fn script() -> PathBuf {
    repo().join("scripts/proxies.sh")
}

/// The server config of these tests: users' own credentials, and the proxy `svc-edge`
/// asserting users in X-Forwarded-User from 127.0.0.1 only.
const CONFIG: &str = r#"
[forward_auth]
user_header = "X-Forwarded-User"
services = ["svc-edge"]
trusted_proxies = ["127.0.0.1/32"]

[audit]
denied_checks_every = "1s"
"#;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Nginx,
    Caddy,
    Traefik,
    Envoy,
}

impl Kind {
    fn command(self) -> &'static str {
        match self {
            Kind::Nginx => "nginx",
            Kind::Caddy => "caddy",
            Kind::Traefik => "traefik",
            Kind::Envoy => "envoy",
        }
    }
}

/// One process (or set of processes) `scripts/proxies.sh` started in a directory of its
/// own; stopped, and its directory deleted, on drop.
struct Proxy {
    name: String,
    dir: PathBuf,
    port: u16,
}

impl Proxy {
    fn start(root: &Path, name: &str, args: &[String]) -> Proxy {
        let dir = root.join(name);
        let port = free_port();
        let out = Command::new("bash")
            .arg(script())
            .arg(args[0].as_str())
            .arg(&dir)
            .arg(port.to_string())
            .args(&args[1..])
            .output()
            .expect("run scripts/proxies.sh");
        assert!(
            out.status.success(),
            "proxies.sh {} failed (run scripts/test.sh as root to install nginx and caddy): {}{}",
            args[0],
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Proxy {
            name: name.to_string(),
            dir,
            port,
        }
    }

    fn logs(&self) -> String {
        let mut text = String::new();
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                text.push_str(&format!(
                    "--- {} {} ---\n{}\n",
                    self.name,
                    path.display(),
                    std::fs::read_to_string(&path).unwrap_or_default()
                ));
            }
        }
        text
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        let _ = Command::new("bash").arg(script()).arg("stop").arg(&self.dir).output();
    }
}

/// jitgate, the demo app and one proxy in front of it.
struct Bed {
    // Dropped in this order: the proxy, then the app, then the server.
    proxy: Proxy,
    _app: Proxy,
    s: Server,
    _dir: tempfile::TempDir,
}

fn jitgate_port(s: &Server) -> String {
    s.listen.rsplit(':').next().unwrap().to_string()
}

impl Bed {
    fn start(kind: Kind) -> Bed {
        let s = Server::start_with(&policy(), Some(CONFIG));
        Self::in_front_of(s, kind.command(), &[])
    }

    /// `command` of proxies.sh in front of the server `s` (extra arguments after the ports).
    fn in_front_of(s: Server, command: &str, extra: &[String]) -> Bed {
        let dir = tempfile::tempdir().unwrap();
        let app = Proxy::start(dir.path(), "app", &["upstream".to_string()]);
        let mut args = vec![command.to_string(), jitgate_port(&s), app.port.to_string()];
        args.extend(extra.iter().cloned());
        let proxy = Proxy::start(dir.path(), command, &args);
        Bed {
            proxy,
            _app: app,
            s,
            _dir: dir,
        }
    }

    /// A request through the proxy, for the demo app's host.
    fn send(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut text = format!("{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n");
        for (name, value) in headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        if method == "POST" || method == "PUT" {
            text.push_str("Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
        } else {
            text.push_str("\r\n");
        }
        raw(self.proxy.port, text.as_bytes())
    }

    fn get(&self, path: &str, token: &str) -> Reply {
        let auth = format!("Bearer {token}");
        self.send("GET", path, &[("Authorization", &auth)])
    }

    /// alice asks for `action` on `resource` for `duration`, bob approves: the grant.
    fn grant(&self, resource: &str, action: &str, duration: &str) -> Value {
        let r = self.s.file(
            "demo-alice",
            json!({"resource": resource, "action": action, "duration": duration, "reason": "look at the demo app"}),
        );
        let (status, approved) = self
            .s
            .post(&format!("/v1/requests/{}/approve", id(&r)), "demo-bob", json!({}));
        assert_eq!(status, 200, "{approved}");
        let grant = approved["grant"].clone();
        assert_eq!(grant["status"], "active", "{approved}");
        grant
    }
}

/// An HTTP response as the client received it.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The demo app answered: the proxy let the request through.
    fn reached_app(&self) -> bool {
        self.body.starts_with(FROM_APP)
    }

    /// What the app saw under `key` (`principal`, `grant`, `action`, ...).
    fn app_saw(&self, key: &str) -> Option<&str> {
        self.body
            .lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
    }
}

/// Write `request` as it is to 127.0.0.1:`port` and read the whole answer (the request
/// asks the server to close the connection after it).
fn raw(port: u16, request: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the proxy");
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    stream.write_all(request).unwrap();
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    if bytes.is_empty() {
        // Closed without an answer (nginx's 444): status 0, nothing reached.
        return Reply {
            status: 0,
            headers: Vec::new(),
            body: String::new(),
        };
    }
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {:?}", String::from_utf8_lossy(&bytes)));
    let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
    let mut body = bytes[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&rest[..end])
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .trim();
        let size = usize::from_str_radix(size, 16).unwrap();
        if size == 0 {
            break;
        }
        out.extend_from_slice(&rest[end + 2..end + 2 + size]);
        rest = &rest[end + 2 + size + 2..];
    }
    out
}

/// The statuses a refused request may get through a proxy: jitgate's 403, or its 400 for an
/// unusable forwarded request (422 from the server's input filter for a NUL byte in a path
/// Envoy appends to `/v1/forward-auth/`), which nginx turns into a 500 (auth_request passes
/// only 401 and 403 on), or the proxy's own 400 for a request it will not parse.
const REFUSED: [u16; 4] = [400, 403, 422, 500];

/// Poll `path` as alice every 10 ms until it is refused with 403; how long it took.
fn until_refused(bed: &Bed, path: &str) -> Duration {
    let start = Instant::now();
    loop {
        let reply = bed.get(path, "demo-alice");
        if reply.status == 403 {
            assert!(!reply.reached_app());
            return start.elapsed();
        }
        assert_eq!(reply.status, 200, "{reply:?}");
        assert!(start.elapsed() < Duration::from_secs(10), "still allowed after 10 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The issue's bar through one proxy.
fn the_bar(kind: Kind) {
    let bed = Bed::start(kind);
    let proxy = kind.command();

    // No grant: 403 and the link to request exactly this.
    let denied = bed.get("/", "demo-alice");
    assert_eq!(denied.status, 403, "{proxy}: {denied:?}");
    assert!(!denied.reached_app(), "{proxy}: {denied:?}");
    let link = denied
        .header("X-Jitgate-Request-Url")
        .unwrap_or_else(|| panic!("{proxy}: no request link: {denied:?}"))
        .to_string();
    assert!(
        link.contains("/ui/new?resource=demo-app&action=read"),
        "{proxy}: {link}"
    );
    assert!(link.contains("return_to="), "{proxy}: {link}");
    // A browser is one click from asking: nginx redirects it (the error_page recipe), the
    // others pass jitgate's page on with its "Request access" button.
    let browser = bed.send(
        "GET",
        "/",
        &[
            ("Authorization", "Bearer demo-alice"),
            ("Accept", "text/html,application/xhtml+xml"),
        ],
    );
    if kind == Kind::Nginx {
        assert_eq!(browser.status, 302, "{browser:?}");
        assert_eq!(browser.header("Location"), Some(link.as_str()), "{browser:?}");
    } else {
        assert_eq!(browser.status, 403, "{proxy}: {browser:?}");
        assert!(browser.body.contains("Request access"), "{proxy}: {browser:?}");
        assert!(browser.body.contains("demo-app"), "{proxy}: {browser:?}");
    }

    // No credential at all: 401, with the way to sign in (nginx redirects a browser there).
    let anonymous = bed.send("GET", "/", &[]);
    assert_eq!(anonymous.status, 401, "{proxy}: {anonymous:?}");
    assert!(!anonymous.reached_app(), "{proxy}: {anonymous:?}");
    let login = anonymous
        .header("X-Jitgate-Login-Url")
        .unwrap_or_else(|| panic!("{proxy}: no sign-in link: {anonymous:?}"))
        .to_string();
    assert!(login.contains("/ui/login?next="), "{proxy}: {login}");
    assert_eq!(
        anonymous.header("WWW-Authenticate"),
        Some("Bearer realm=\"jitgate\""),
        "{proxy}: {anonymous:?}"
    );
    let browser = bed.send("GET", "/", &[("Accept", "text/html")]);
    if kind == Kind::Nginx {
        assert_eq!(browser.status, 302, "{browser:?}");
        assert_eq!(browser.header("Location"), Some(login.as_str()), "{browser:?}");
    } else {
        assert_eq!(browser.status, 401, "{proxy}: {browser:?}");
        assert!(browser.body.contains("Sign in"), "{proxy}: {browser:?}");
    }

    // bob approves alice's read request: 200 through the proxy, and the app learns who.
    let grant = bed.grant("demo-app", "read", "1h");
    let gid = grant["id"].as_str().unwrap();
    let allowed = bed.get("/reports?week=1", "demo-alice");
    assert_eq!(allowed.status, 200, "{proxy}: {allowed:?}");
    assert!(
        allowed.body.starts_with("demo app: GET /reports?week=1"),
        "{proxy}: {allowed:?}"
    );
    assert_eq!(allowed.app_saw("principal"), Some("alice"), "{proxy}: {allowed:?}");
    assert_eq!(allowed.app_saw("grant"), Some(gid), "{proxy}: {allowed:?}");
    assert_eq!(allowed.app_saw("resource"), Some("demo-app"), "{proxy}: {allowed:?}");
    assert_eq!(allowed.app_saw("action"), Some("read"), "{proxy}: {allowed:?}");
    // Identity headers a client sends itself are replaced by jitgate's.
    let forged = bed.send(
        "GET",
        "/",
        &[
            ("Authorization", "Bearer demo-alice"),
            ("X-Jitgate-Principal", "bob"),
            ("X-Jitgate-Grant", "grt_forged"),
            ("X-Jitgate-Action", "admin"),
            ("X-Jitgate-Resource", "demo-app-admin"),
            ("X-Jitgate-Token", "forged"),
        ],
    );
    assert_eq!(forged.status, 200, "{proxy}: {forged:?}");
    assert_eq!(forged.app_saw("principal"), Some("alice"), "{proxy}: {forged:?}");
    assert_eq!(forged.app_saw("grant"), Some(gid), "{proxy}: {forged:?}");
    assert_eq!(forged.app_saw("action"), Some("read"), "{proxy}: {forged:?}");
    assert_eq!(forged.app_saw("resource"), Some("demo-app"), "{proxy}: {forged:?}");
    // No grant token is configured: none reaches the app, not even the client's own.
    assert_eq!(forged.app_saw("token"), Some(""), "{proxy}: {forged:?}");

    // The web UI's session cookie works as well as the API token.
    let cookie = ui_session(&bed.s, "demo-alice");
    let by_cookie = bed.send("GET", "/", &[("Cookie", &cookie)]);
    assert_eq!(by_cookie.status, 200, "{proxy}: {by_cookie:?}");
    assert_eq!(by_cookie.app_saw("principal"), Some("alice"), "{proxy}: {by_cookie:?}");

    // Only read is granted: a POST is a write, refused, with the link to ask for write.
    let post = bed.send("POST", "/items", &[("Authorization", "Bearer demo-alice")]);
    assert_eq!(post.status, 403, "{proxy}: {post:?}");
    assert!(!post.reached_app(), "{proxy}: {post:?}");
    if let Some(link) = post.header("X-Jitgate-Request-Url") {
        assert!(link.contains("action=write"), "{proxy}: {link}");
    }

    // A user header from a caller without the proxy's service credential: 401.
    for headers in [
        vec![("X-Forwarded-User", "bob")],
        vec![("X-Forwarded-User", "alice")],
        // A credential that is not a proxy's: a user's, or a service not listed in services.
        vec![
            ("X-Forwarded-User", "bob"),
            ("X-Jitgate-Proxy-Authorization", "Bearer demo-alice"),
        ],
        vec![
            ("X-Forwarded-User", "bob"),
            ("X-Jitgate-Proxy-Authorization", "Bearer demo-svc"),
        ],
        vec![
            ("X-Forwarded-User", "bob"),
            ("X-Jitgate-Proxy-Authorization", "Bearer wrong"),
        ],
    ] {
        let reply = bed.send("GET", "/", &headers);
        assert_eq!(reply.status, 401, "{proxy}: {headers:?}: {reply:?}");
        assert!(!reply.reached_app(), "{proxy}: {reply:?}");
    }
    // A user's own token with someone else's name in the header is still that user.
    let mixed = bed.send(
        "GET",
        "/",
        &[("Authorization", "Bearer demo-alice"), ("X-Forwarded-User", "bob")],
    );
    assert_eq!(mixed.app_saw("principal"), Some("alice"), "{proxy}: {mixed:?}");

    // Revocation: refused within a second of the revoke's answer.
    let (status, revoked) = bed.s.post(&format!("/v1/grants/{gid}/revoke"), "demo-bob", json!({}));
    assert_eq!(status, 200, "{revoked}");
    let took = until_refused(&bed, "/");
    assert!(
        took < Duration::from_secs(1),
        "{proxy}: refused {took:?} after the revocation"
    );
    eprintln!("{proxy}: refused {took:?} after the revocation");

    // The refusals are in the audit, counted as denied checks are.
    let mut denied = Vec::new();
    wait_until("the denials are recorded", || {
        let (_, v) = bed.s.get("/v1/audit?kind=check.denied", "demo-admin");
        denied = v["items"].as_array().cloned().unwrap_or_default();
        ["read", "write"].iter().all(|action| {
            denied
                .iter()
                .any(|e| e["subject"] == "alice" && e["resource"] == "demo-app" && e["action"] == *action)
        })
    });
}

#[test]
fn through_nginx_auth_request_the_bar_holds() {
    the_bar(Kind::Nginx);
}

#[test]
fn through_caddy_forward_auth_the_bar_holds() {
    the_bar(Kind::Caddy);
}

#[test]
fn through_traefik_forward_auth_the_bar_holds() {
    the_bar(Kind::Traefik);
}

#[test]
fn through_envoy_ext_authz_the_bar_holds() {
    the_bar(Kind::Envoy);
}

/// With `grant_token = true` the app receives the grant's signed token, the one its holder
/// sees, to verify offline.
#[test]
fn with_grant_token_the_app_behind_nginx_receives_the_grants_signed_token() {
    let config = CONFIG.replace("[audit]", "grant_token = true\n\n[audit]");
    let s = Server::start_with(&policy(), Some(&config));
    let bed = Bed::in_front_of(s, "nginx", &[]);
    let grant = bed.grant("demo-app", "read", "1h");
    let (status, grants) = bed.s.get("/v1/grants", "demo-alice");
    assert_eq!(status, 200, "{grants}");
    let token = grants["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == grant["id"])
        .and_then(|g| g["token"].as_str())
        .unwrap_or_else(|| panic!("alice sees her grant's token: {grants}"))
        .to_string();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let reply = bed.send(
        "GET",
        "/",
        &[("Authorization", "Bearer demo-alice"), ("X-Jitgate-Token", "forged")],
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.app_saw("token"), Some(token.as_str()), "{reply:?}");
}

/// A short grant ends at every proxy within a second of its `expires_at`.
#[test]
fn a_short_grant_is_refused_through_nginx_and_caddy_within_a_second_of_its_expiry() {
    let nginx = Bed::start(Kind::Nginx);
    let dir = tempfile::tempdir().unwrap();
    let caddy = Proxy::start(
        dir.path(),
        "caddy",
        &["caddy".to_string(), jitgate_port(&nginx.s), nginx._app.port.to_string()],
    );
    let grant = nginx.grant("demo-app", "read", "3s");
    let expires_at = chrono::DateTime::parse_from_rfc3339(grant["expires_at"].as_str().unwrap()).unwrap();
    let mut refused = [None, None];
    let mut allowed_before = [false, false];
    let mut last_allowed_sent = [None, None];
    let deadline = Instant::now() + Duration::from_secs(15);
    while refused.iter().any(Option::is_none) {
        assert!(Instant::now() < deadline, "still allowed 15 s after a 3 s grant");
        for (i, port) in [nginx.proxy.port, caddy.port].into_iter().enumerate() {
            if refused[i].is_some() {
                continue;
            }
            // An allow is timed when its request was sent (it was judged no earlier): one sent
            // a second past the end and let through is a proven late allow, whatever the round
            // trip. A refusal is timed when it arrived, an upper bound for the report.
            let sent = chrono::Utc::now();
            let reply = raw(
                port,
                format!(
                    "GET / HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer demo-alice\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            );
            let now = chrono::Utc::now();
            match reply.status {
                200 => {
                    assert_eq!(reply.app_saw("principal"), Some("alice"));
                    assert!(
                        sent < expires_at + chrono::Duration::seconds(1),
                        "allowed a request sent at {sent} (answered at {now}), expired at {expires_at}"
                    );
                    allowed_before[i] = true;
                    last_allowed_sent[i] = Some(sent);
                }
                403 => refused[i] = Some(now),
                other => panic!("{other}: {reply:?}"),
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(allowed_before, [true, true], "the grant allowed before it expired");
    // The bar (no request sent a second past expires_at let through) was checked on every
    // allow above; here the figures: the last allowed request's send, and the refusal's
    // arrival, which includes its round trip and the poll gap.
    let expires_at = expires_at.with_timezone(&chrono::Utc);
    for ((name, at), last_allowed) in ["nginx", "caddy"].iter().zip(refused).zip(last_allowed_sent) {
        let late = at.unwrap() - expires_at;
        let last_allowed = last_allowed.map(|sent| (sent - expires_at).num_milliseconds());
        eprintln!(
            "{name}: last allowed request sent {last_allowed:?} ms after expires_at, refusal arrived {} ms after it",
            late.num_milliseconds()
        );
    }
}

/// Whatever a client sends under the names the proxy sets, and however it spells the path,
/// the decision is about the request the proxy actually serves: alice holds read on
/// demo-app (`/`), not on demo-app-admin (`/admin`).
fn attacks(kind: Kind) {
    let bed = Bed::start(kind);
    let proxy = kind.command();
    bed.grant("demo-app", "read", "1h");
    // A grant on another host: every forgery below that would make jitgate judge that host
    // instead of the app's would let alice in, so none of them can pass unnoticed.
    bed.grant("other-app", "read", "1h");
    let ok = bed.get("/public", "demo-alice");
    assert_eq!(ok.status, 200, "{proxy}: {ok:?}");
    let admin = bed.get("/admin/users", "demo-alice");
    assert_eq!(admin.status, 403, "{proxy}: {admin:?}");
    if let Some(link) = admin.header("X-Jitgate-Request-Url") {
        assert!(link.contains("resource=demo-app-admin"), "{proxy}: {link}");
    }

    let auth = ("Authorization", "Bearer demo-alice");
    // Forged forwarding headers: the proxy's own values win, or the request is refused.
    for (path, forged) in [
        ("/admin/users", ("X-Forwarded-Uri", "/public")),
        ("/admin/users", ("X-Original-URI", "/public")),
        ("/admin/users", ("X-Forwarded-Method", "GET")),
        ("/admin/users", ("X-Forwarded-Host", "other.example.test")),
        ("/admin/users", ("X-Forwarded-Prefix", "/public")),
    ] {
        let reply = bed.send("GET", path, &[auth, forged]);
        assert!(!reply.reached_app(), "{proxy}: {forged:?}: {reply:?}");
        assert!(REFUSED.contains(&reply.status), "{proxy}: {forged:?}: {reply:?}");
    }
    // A write disguised as a read: the method the proxy serves is POST.
    let post = bed.send(
        "POST",
        "/public",
        &[auth, ("X-Forwarded-Method", "GET"), ("X-Original-Method", "GET")],
    );
    assert!(!post.reached_app(), "{proxy}: {post:?}");
    // Another host, claimed to be the app's.
    let other = raw(
        bed.proxy.port,
        b"GET / HTTP/1.1\r\nHost: other.example.test\r\nX-Forwarded-Host: app.example.test\r\nAuthorization: Bearer demo-alice\r\nConnection: close\r\n\r\n",
    );
    assert!(!other.reached_app(), "{proxy}: {other:?}");

    // The request line in absolute form names one host, the Host header another: the app is
    // told the host jitgate decided on, or is not reached.
    for (target, host) in [
        ("http://app.example.test/public", "other.example.test"),
        ("http://other.example.test/public", HOST),
    ] {
        let reply = raw(
            bed.proxy.port,
            format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer demo-alice\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        if reply.reached_app() {
            let seen = reply.app_saw("host").unwrap_or_default();
            assert_eq!(seen.split(':').next(), Some(HOST), "{proxy}: {target}: {reply:?}");
            assert_eq!(
                reply.app_saw("principal"),
                Some("alice"),
                "{proxy}: {target}: {reply:?}"
            );
        }
    }

    // Dot segments, plain and percent-encoded, and a case change: all reach /admin.
    for path in [
        "/public/../admin/users",
        "/public/%2e%2e/admin/users",
        "/public/%2E%2E/admin",
        "/public/.%2e/admin",
        "/./admin",
        "//admin",
        "/ADMIN/users",
        "/%61dmin/users",
    ] {
        let reply = bed.get(path, "demo-alice");
        assert!(!reply.reached_app(), "{proxy}: {path}: {reply:?}");
        assert!(REFUSED.contains(&reply.status), "{proxy}: {path}: {reply:?}");
    }
    // Paths jitgate refuses outright, although alice may read everything outside /admin:
    // encoded NUL, control characters, an encoded slash or backslash, an invisible
    // character, invalid UTF-8, and `..` above the root.
    for path in [
        "/%00",
        "/public%00/x",
        "/%01",
        "/x%0d%0aX-Jitgate-Principal:%20bob",
        "/public%2f..%2fadmin",
        "/public%5c..%5cadmin",
        "/%E2%80%8Bpublic",
        "/%ff",
        "/../admin",
        "/%2e%2e/admin",
    ] {
        let reply = bed.get(path, "demo-alice");
        assert!(!reply.reached_app(), "{proxy}: {path}: {reply:?}");
        assert!(REFUSED.contains(&reply.status), "{proxy}: {path}: {reply:?}");
    }
    // Dots out of /admin: an application that does not resolve them would serve /admin's
    // pages. jitgate refuses them; a proxy that resolves them itself (Traefik) asks about, and
    // hands the app, the resolved path: either way the app never serves a path under /admin.
    for path in ["/admin/../public", "/admin/%2e%2e/public", "/admin/..;/public"] {
        let reply = bed.get(path, "demo-alice");
        if reply.reached_app() {
            let served = reply.body.lines().next().unwrap_or_default();
            assert!(!served.contains("/admin"), "{proxy}: {path}: {reply:?}");
            assert_eq!(
                reply.app_saw("resource"),
                Some("demo-app"),
                "{proxy}: {path}: {reply:?}"
            );
        } else {
            assert!(REFUSED.contains(&reply.status), "{proxy}: {path}: {reply:?}");
        }
    }
    // Raw control bytes in the request line or a header never reach the app as alice's.
    for request in [
        format!(
            "GET /\x01public HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer demo-alice\r\nConnection: close\r\n\r\n"
        ),
        format!("GET /public HTTP/1.1\r\nHost: {HOST}\r\nX-Forwarded-User: bo\x01b\r\nConnection: close\r\n\r\n"),
        format!("GET /public HTTP/1.1\r\nHost: {HOST}\r\nX-Forwarded-User: \u{430}lice\r\nConnection: close\r\n\r\n"),
    ] {
        let reply = raw(bed.proxy.port, request.as_bytes());
        assert!(!reply.reached_app(), "{proxy}: {request:?}: {reply:?}");
        assert_ne!(reply.status, 200, "{proxy}: {request:?}: {reply:?}");
    }
}

#[test]
fn through_nginx_forged_headers_and_crafted_paths_change_no_decision() {
    attacks(Kind::Nginx);
}

#[test]
fn through_caddy_forged_headers_and_crafted_paths_change_no_decision() {
    attacks(Kind::Caddy);
}

#[test]
fn through_traefik_forged_headers_and_crafted_paths_change_no_decision() {
    attacks(Kind::Traefik);
}

#[test]
fn through_envoy_forged_headers_and_crafted_paths_change_no_decision() {
    attacks(Kind::Envoy);
}

/// A direct call to /v1/forward-auth as the proxy `svc-edge` asserting `user`, from `source`.
fn as_proxy(s: &Server, source: &str, credential: &str, user: &str) -> reqwest::blocking::Response {
    // From bytes: a look-alike name is not ASCII, which `&str` header values refuse.
    let user = reqwest::header::HeaderValue::from_bytes(user.as_bytes()).unwrap();
    reqwest::blocking::Client::builder()
        .local_address(source.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
        .get(format!("{}/v1/forward-auth", s.url))
        .header("X-Jitgate-Proxy-Authorization", format!("Bearer {credential}"))
        .header("X-Forwarded-User", user)
        .header("X-Forwarded-Method", "GET")
        .header("X-Forwarded-Host", HOST)
        .header("X-Forwarded-Uri", "/")
        .send()
        .unwrap()
}

/// The proxy signs users in itself (HTTP Basic here) and asserts them with its service
/// token: that works from the proxy's address only, and a client cannot choose the user.
#[test]
fn a_proxy_asserts_users_with_its_credential_from_its_address_only() {
    let s = Server::start_with(&policy(), Some(CONFIG));
    let work = tempfile::tempdir().unwrap();
    let htpasswd = work.path().join("htpasswd");
    std::fs::write(&htpasswd, "alice:{PLAIN}alice-password\nbob:{PLAIN}bob-password\n").unwrap();
    let bed = Bed::in_front_of(
        s,
        "nginx-proxy-user",
        &[htpasswd.display().to_string(), "demo-edge".to_string()],
    );
    let basic = |user: &str, password: &str| {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    };
    let alice = basic("alice", "alice-password");

    // Not signed in with nginx: nginx's own 401.
    let anonymous = bed.send("GET", "/", &[("X-Forwarded-User", "alice")]);
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
    assert!(!anonymous.reached_app());
    // Signed in, no grant: 403.
    let denied = bed.send("GET", "/", &[("Authorization", &alice)]);
    assert_eq!(denied.status, 403, "{denied:?}");

    let grant = bed.grant("demo-app", "read", "1h");
    let allowed = bed.send("GET", "/", &[("Authorization", &alice)]);
    assert_eq!(allowed.status, 200, "{allowed:?}");
    assert_eq!(allowed.app_saw("principal"), Some("alice"), "{allowed:?}");
    assert_eq!(allowed.app_saw("grant"), grant["id"].as_str(), "{allowed:?}");
    // The proxy's credential goes to jitgate only, never to the app.
    assert_eq!(allowed.app_saw("proxy_authorization"), Some(""), "{allowed:?}");
    // The client cannot pick the user nginx asserts: nginx replaces the header.
    let bob = basic("bob", "bob-password");
    let as_bob = bed.send("GET", "/", &[("Authorization", &bob), ("X-Forwarded-User", "alice")]);
    assert_eq!(as_bob.status, 403, "{as_bob:?}");
    let as_alice = bed.send("GET", "/", &[("Authorization", &alice), ("X-Forwarded-User", "bob")]);
    assert_eq!(as_alice.app_saw("principal"), Some("alice"), "{as_alice:?}");
    assert_eq!(as_alice.app_saw("forwarded_user"), Some("alice"), "{as_alice:?}");

    // The same credential and header straight to jitgate: from the proxy's address it is
    // alice; from another address (127.0.0.2 is loopback too, not in `trusted_proxies`) it is 401.
    let s = &bed.s;
    assert_eq!(as_proxy(s, "127.0.0.1", "demo-edge", "alice").status(), 200);
    let elsewhere = as_proxy(s, "127.0.0.2", "demo-edge", "alice");
    assert_eq!(elsewhere.status(), 401, "{:?}", elsewhere.headers());
    // A service not listed in `services`, a user's token, a wrong token: 401.
    for credential in ["demo-svc", "demo-bob", "not-a-token"] {
        assert_eq!(
            as_proxy(s, "127.0.0.1", credential, "alice").status(),
            401,
            "{credential}"
        );
    }
    // A user name that is not a principal's name (a look-alike Cyrillic a; control
    // characters cannot even be sent) is refused, never treated as alice.
    let look_alike = as_proxy(s, "127.0.0.1", "demo-edge", "\u{430}lice");
    assert_ne!(look_alike.status(), 200);
    assert!(look_alike.headers().get("X-Jitgate-Principal").is_none());
}

/// docs/forward-auth.md shows exactly the configurations these tests run.
#[test]
fn the_docs_show_the_tested_configurations() {
    let doc = std::fs::read_to_string(repo().join("docs/forward-auth.md")).unwrap();
    for name in [
        "nginx.conf",
        "nginx-proxy-user.conf",
        "Caddyfile",
        "traefik.yml",
        "envoy.yaml",
        "upstream.conf",
    ] {
        let config = std::fs::read_to_string(repo().join("scripts/forward-auth").join(name)).unwrap();
        assert!(
            doc.contains(config.trim_end()),
            "docs/forward-auth.md does not show scripts/forward-auth/{name} as it is"
        );
    }
}

/// Every configuration passes its proxy's own check (`nginx -t`, `caddy validate`, `envoy
/// --mode validate`), including the benchmark's baseline that no test above runs.
#[test]
fn every_configuration_passes_its_proxys_own_check() {
    let out = Command::new("bash").arg(script()).arg("check").output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    for line in [
        "nginx -t: nginx.conf ok",
        "nginx -t: nginx-plain.conf ok",
        "nginx -t: nginx-proxy-user.conf ok",
        "caddy validate: Caddyfile ok",
        "envoy --mode validate: envoy.yaml ok",
    ] {
        assert!(text.contains(line), "{text}");
    }
}

/// The demo policy passes its own test cases.
#[test]
fn the_demo_policy_passes_its_own_tests() {
    let out = Command::new(BIN)
        .args(["policy", "test"])
        .arg(policy())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("4 passed, 0 failed"), "{text}");
}
