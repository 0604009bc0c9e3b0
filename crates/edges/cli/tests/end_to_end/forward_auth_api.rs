//! `/v1/forward-auth` over real HTTP against the real server, as a proxy calls it (the real
//! nginx and Caddy are in `forward_auth.rs`): the headers of each proxy's convention, the 200
//! after approval with the identity headers, the 403 with its request link (JSON or a page by
//! `Accept`), the 401 with its sign-in link, the 400s naming the header, Envoy's path below the
//! prefix; and the web UI's side: the pre-filled request page, the way back to the app kept
//! only for a host the catalog serves, sign-in keeping the whole link, `[ui] cookie_domain`.

use crate::support::*;
use reqwest::blocking::{RequestBuilder, Response};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{json, Value};

const APP: &str = "grafana.example.test";

/// The quickstart with an app behind forward auth: `grafana` (read for dev with one sre's
/// approval; write likewise) on the whole host.
fn policy() -> tempfile::TempDir {
    let policy = quickstart_with_workflows(
        r#"
[[workflow]]
resource = "grafana"
action = "read"
requesters = ["dev"]
max_duration = "1h"
steps = [{ group = "sre", approvals = 1 }]

[[workflow]]
resource = "grafana"
action = "write"
requesters = ["dev"]
max_duration = "1h"
steps = [{ group = "sre", approvals = 1 }]
"#,
    );
    let path = policy.path().join("resources.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&format!(
        r#"
[[resource]]
name = "grafana"
kind = "http"
description = "Dashboards"
http = {{ hosts = ["{APP}"], path_prefix = "/", url = "https://{APP}/" }}
"#
    ));
    std::fs::write(&path, text).unwrap();
    policy
}

pub(crate) fn server() -> (Server, tempfile::TempDir) {
    let policy = policy();
    (Server::start_with_policy(policy.path()), policy)
}

/// A header as sent: its name and its raw bytes.
type Header<'a> = (&'a str, &'a [u8]);

/// An auth request as a proxy sends it: to `path`, with `headers`. At the prefix itself every
/// proxy names the original method; `X-Forwarded-Method: GET` stands for it when `headers`
/// name none (see `without_a_method_header_nginx_style_calls_are_400`).
fn ask(s: &Server, method: &str, path: &str, headers: &[(&str, &[u8])]) -> Response {
    let names_method = headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("x-forwarded-method") || n.eq_ignore_ascii_case("x-original-method"));
    let mut headers = headers.to_vec();
    if path == "/v1/forward-auth" && !names_method {
        headers.push(("X-Forwarded-Method", b"GET"));
    }
    ask_exactly(s, method, path, &headers)
}

/// An auth request with exactly `headers`.
fn ask_exactly(s: &Server, method: &str, path: &str, headers: &[(&str, &[u8])]) -> Response {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(value).unwrap(),
        );
    }
    let request: RequestBuilder = no_redirects()
        .request(method.parse().unwrap(), format!("{}{path}", s.url))
        .headers(map);
    request.send().unwrap()
}

/// Traefik's and Caddy's convention: `X-Forwarded-*`.
pub(crate) fn traefik(s: &Server, method: &str, uri: &str, extra: &[(&str, &[u8])]) -> Response {
    let mut headers: Vec<(&str, &[u8])> = vec![
        ("X-Forwarded-Method", method.as_bytes()),
        ("X-Forwarded-Host", APP.as_bytes()),
        ("X-Forwarded-Uri", uri.as_bytes()),
        ("X-Forwarded-Proto", b"https"),
    ];
    headers.extend_from_slice(extra);
    ask(s, "GET", "/v1/forward-auth", &headers)
}

fn header(r: &Response, name: &str) -> Option<String> {
    r.headers().get(name).map(|v| v.to_str().unwrap().to_string())
}

fn json_of(r: Response) -> Value {
    let text = r.text().unwrap();
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

/// `/ui/new?...` as the 403 links to it, on this server.
fn request_url(s: &Server, action: &str, return_to: &str) -> String {
    let query =
        serde_urlencoded::to_string([("resource", "grafana"), ("action", action), ("return_to", return_to)]).unwrap();
    format!("{}/ui/new?{query}", s.url)
}

/// alice asks for `action` on grafana and bob approves: the grant.
fn granted(s: &Server, action: &str) -> Value {
    let r = s.file(
        "demo-alice",
        json!({"resource": "grafana", "action": action, "duration": "30m", "reason": "dashboards"}),
    );
    let (status, r) = s.post(&format!("/v1/requests/{}/approve", id(&r)), "demo-bob", json!({}));
    assert_eq!(status, 200, "{r}");
    r["grant"].clone()
}

#[test]
fn a_user_without_a_grant_gets_the_request_link_and_with_one_the_identity_headers() {
    let (s, _policy) = server();
    let alice: &[(&str, &[u8])] = &[("Authorization", b"Bearer demo-alice")];

    // No grant: 403, why, and where to ask.
    let r = traefik(&s, "GET", "/d/abc?orgId=1", alice);
    assert_eq!(r.status(), 403);
    assert_eq!(header(&r, "cache-control").as_deref(), Some("no-store"));
    let link = request_url(&s, "read", &format!("https://{APP}/d/abc?orgId=1"));
    assert_eq!(header(&r, "x-jitgate-request-url").as_deref(), Some(link.as_str()));
    assert!(header(&r, "x-jitgate-reason").is_some_and(|why| !why.is_empty()));
    let body = json_of(r);
    assert_eq!(body["error"]["code"], "forbidden", "{body}");
    assert_eq!(body["request_url"], link.as_str(), "{body}");

    // Approved: 200, empty, with who, which grant, until when.
    let grant = granted(&s, "read");
    let r = traefik(&s, "GET", "/d/abc?orgId=1", alice);
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "cache-control").as_deref(), Some("no-store"));
    assert_eq!(header(&r, "x-jitgate-principal").as_deref(), Some("alice"));
    assert_eq!(header(&r, "x-jitgate-grant").as_deref(), grant["id"].as_str());
    assert_eq!(header(&r, "x-jitgate-resource").as_deref(), Some("grafana"));
    assert_eq!(header(&r, "x-jitgate-action").as_deref(), Some("read"));
    assert_eq!(header(&r, "x-jitgate-token"), None, "no token unless configured");
    let expires = header(&r, "x-jitgate-expires-at").unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(&expires).unwrap();
    let granted_until = chrono::DateTime::parse_from_rfc3339(grant["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(expires, granted_until);
    assert_eq!(r.text().unwrap(), "");

    // A write is another action: 403, with the link for write.
    let r = traefik(&s, "POST", "/api/dashboards", alice);
    assert_eq!(r.status(), 403);
    assert_eq!(
        header(&r, "x-jitgate-request-url").as_deref(),
        Some(request_url(&s, "write", &format!("https://{APP}/api/dashboards")).as_str())
    );

    // nginx's convention, and the UI session cookie as the credential: the same answer.
    let session = ui_session(&s, "demo-alice");
    let r = ask(
        &s,
        "GET",
        "/v1/forward-auth",
        &[
            ("X-Original-Method", b"GET"),
            ("X-Original-URI", b"/d/abc"),
            ("Host", APP.as_bytes()),
            ("Cookie", session.as_bytes()),
        ],
    );
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-jitgate-principal").as_deref(), Some("alice"));

    // Revoked: 403 at once.
    let (status, v) = s.post(
        &format!("/v1/grants/{}/revoke", grant["id"].as_str().unwrap()),
        "demo-alice",
        json!({}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(traefik(&s, "GET", "/d/abc", alice).status(), 403);
}

#[test]
fn envoy_asks_below_the_prefix_with_the_original_method_and_host() {
    let (s, _policy) = server();
    let as_envoy = |method: &str, path: &str| {
        ask(
            &s,
            method,
            path,
            &[("Host", APP.as_bytes()), ("Authorization", b"Bearer demo-alice")],
        )
    };
    let r = as_envoy("POST", "/v1/forward-auth/api/dashboards/db?overwrite=true");
    assert_eq!(r.status(), 403);
    assert_eq!(
        header(&r, "x-jitgate-request-url").as_deref(),
        Some(request_url(&s, "write", &format!("https://{APP}/api/dashboards/db?overwrite=true")).as_str())
    );
    granted(&s, "read");
    for method in ["GET", "HEAD", "OPTIONS"] {
        let r = as_envoy(method, "/v1/forward-auth/d/abc");
        assert_eq!(r.status(), 200, "{method}");
        assert_eq!(header(&r, "x-jitgate-action").as_deref(), Some("read"), "{method}");
    }
    assert_eq!(as_envoy("GET", "/v1/forward-auth/").status(), 200);
    for method in ["PUT", "DELETE", "PATCH"] {
        assert_eq!(as_envoy(method, "/v1/forward-auth/d/abc").status(), 403, "{method}");
    }
}

#[test]
fn without_identity_the_answer_is_401_with_where_to_sign_in() {
    let (s, _policy) = server();
    for extra in [
        vec![],
        // A user header from a caller that is not a configured proxy counts for nothing.
        vec![("X-Forwarded-User", b"bob".as_slice())],
        vec![("Authorization", b"Bearer not-a-token".as_slice())],
    ] {
        let r = traefik(&s, "GET", "/d/abc", &extra);
        assert_eq!(r.status(), 401, "{extra:?}");
        assert_eq!(
            header(&r, "www-authenticate").as_deref(),
            Some("Bearer realm=\"jitgate\"")
        );
        assert_eq!(header(&r, "cache-control").as_deref(), Some("no-store"));
        let next = format!(
            "/ui/new?{}",
            serde_urlencoded::to_string([
                ("resource", "grafana"),
                ("action", "read"),
                ("return_to", &format!("https://{APP}/d/abc"))
            ])
            .unwrap()
        );
        let login = format!(
            "{}/ui/login?{}",
            s.url,
            serde_urlencoded::to_string([("next", &next)]).unwrap()
        );
        assert_eq!(header(&r, "x-jitgate-login-url").as_deref(), Some(login.as_str()));
        let body = json_of(r);
        assert_eq!(body["error"]["code"], "unauthenticated", "{body}");
    }
    // A browser gets a page with the sign-in link.
    let r = traefik(&s, "GET", "/d/abc", &[("Accept", b"text/html,application/xhtml+xml")]);
    assert_eq!(r.status(), 401);
    assert!(header(&r, "content-type").unwrap().starts_with("text/html"));
    let html = r.text().unwrap();
    assert!(html.contains(">Sign in</a>"), "{html}");
    assert!(
        html.contains(&format!(
            "href=\"{}/ui/login?next=%2Fui%2Fnew%3Fresource%3Dgrafana",
            s.url
        )),
        "{html}"
    );
}

#[test]
fn a_browser_gets_a_page_with_the_request_button_and_a_program_json() {
    let (s, _policy) = server();
    let alice: (&str, &[u8]) = ("Authorization", b"Bearer demo-alice");
    let r = traefik(&s, "GET", "/d/<b>x</b>", &[alice, ("Accept", b"text/html")]);
    assert_eq!(r.status(), 403);
    assert!(header(&r, "content-type").unwrap().starts_with("text/html"));
    let csp = header(&r, "content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    let html = r.text().unwrap();
    assert!(html.contains("You need approval for read on grafana."), "{html}");
    assert!(html.contains(">Request access</a>"), "{html}");
    assert!(
        html.contains(&format!(
            "href=\"{}/ui/new?resource=grafana&#38;action=read&#38;return_to=https%3A%2F%2Fgrafana.example.test%2Fd%2F%3Cb%3Ex%3C%2Fb%3E\"",
            s.url
        )),
        "{html}"
    );
    assert!(!html.contains("<b>"), "{html}");
    // No Accept, or JSON: the API's error.
    let r = traefik(&s, "GET", "/d/x", &[alice, ("Accept", b"application/json")]);
    assert!(header(&r, "content-type").unwrap().starts_with("application/json"));
    // A URL no catalog resource serves: 403 without a link (a missing entry never allows).
    let r = ask(
        &s,
        "GET",
        "/v1/forward-auth",
        &[
            ("X-Forwarded-Host", b"other.example.test"),
            ("X-Forwarded-Uri", b"/"),
            alice,
        ],
    );
    assert_eq!(r.status(), 403);
    assert_eq!(header(&r, "x-jitgate-request-url"), None);
    assert!(header(&r, "x-jitgate-reason").unwrap().contains("other.example.test"));
}

#[test]
fn an_auth_request_that_cannot_be_read_is_400_naming_the_header() {
    let (s, _policy) = server();
    let alice: (&str, &[u8]) = ("Authorization", b"Bearer demo-alice");
    let host: (&str, &[u8]) = ("Host", APP.as_bytes());
    let cases: Vec<(Vec<Header>, &str)> = vec![
        (vec![alice, host], "no original URI"),
        (
            vec![alice, host, ("X-Forwarded-Uri", b"/a"), ("X-Forwarded-Uri", b"/b")],
            "X-Forwarded-Uri: sent more than once",
        ),
        (
            vec![
                alice,
                host,
                ("X-Forwarded-Uri", b"/public"),
                ("X-Original-URI", b"/admin"),
            ],
            "X-Forwarded-Uri and X-Original-URI differ",
        ),
        (
            vec![
                alice,
                host,
                ("X-Forwarded-Uri", b"/"),
                ("X-Forwarded-Method", b"GET"),
                ("X-Original-Method", b"POST"),
            ],
            "X-Forwarded-Method and X-Original-Method differ",
        ),
        (
            vec![
                alice,
                ("X-Forwarded-Host", b"grafana.example.test,evil.test"),
                ("X-Forwarded-Uri", b"/"),
            ],
            "X-Forwarded-Host: holds a comma",
        ),
        (
            vec![alice, host, ("X-Forwarded-Uri", b"/caf\xc3\xa9")],
            "X-Forwarded-Uri: holds byte 0xC3 (not ASCII)",
        ),
        (
            vec![alice, host, ("X-Original-URI", b"/a\tb")],
            "X-Original-URI: holds a tab",
        ),
        (
            vec![
                alice,
                host,
                ("X-Forwarded-Uri", b"/"),
                ("X-Forwarded-Method", b"G\xffT"),
            ],
            "X-Forwarded-Method: holds byte 0xFF",
        ),
        (
            vec![alice, host, ("X-Forwarded-Uri", b"/"), ("X-Forwarded-Proto", b"gopher")],
            "X-Forwarded-Proto: 'gopher' is neither http nor https",
        ),
        // What the catalog cannot judge: the service's 400, naming the part.
        (vec![alice, host, ("X-Forwarded-Uri", b"/a%00b")], "uri: "),
        (vec![alice, host, ("X-Forwarded-Uri", b"/a%2Fb")], "uri: "),
        (vec![alice, host, ("X-Forwarded-Uri", b"/../admin")], "uri: "),
    ];
    for (headers, message) in cases {
        let r = ask(&s, "GET", "/v1/forward-auth", &headers);
        assert_eq!(r.status(), 400, "{message}");
        assert_eq!(header(&r, "cache-control").as_deref(), Some("no-store"));
        let body = json_of(r);
        assert_eq!(body["error"]["code"], "bad_request", "{body}");
        let text = body["error"]["message"].as_str().unwrap();
        assert!(text.starts_with(message), "{message}: {text}");
    }
    // A header the endpoint does not read may hold anything.
    let r = ask(
        &s,
        "GET",
        "/v1/forward-auth",
        &[alice, host, ("X-Forwarded-Uri", b"/"), ("X-Other", b"\xff\t")],
    );
    assert_eq!(r.status(), 403);
}

/// The page's HTML, as alice's browser gets it.
fn page(s: &Server, session: &str, path: &str) -> (u16, String) {
    let r = no_redirects()
        .get(format!("{}{path}", s.url))
        .header("Cookie", session)
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

/// File from the form as alice's browser posts it: where it sends her.
fn file_from_form(s: &Server, session: &str, return_to: &str) -> String {
    let body = serde_urlencoded::to_string([
        ("csrf", "a".repeat(64).as_str()),
        ("target", "grafana|read"),
        ("duration", "30m"),
        ("reason", "dashboards"),
        ("return_to", return_to),
    ])
    .unwrap();
    let r = no_redirects()
        .post(format!("{}/ui/requests", s.url))
        .header("Cookie", session)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    header(&r, "location").unwrap()
}

#[test]
fn the_request_link_opens_the_form_with_the_target_chosen_and_leads_back_once_granted() {
    let (s, _policy) = server();
    let session = ui_session(&s, "demo-alice");
    let back = format!("https://{APP}/d/abc?orgId=1&from=now-1h");
    let link = request_url(&s, "read", &back);
    let path = link.strip_prefix(&s.url).unwrap();
    let (status, html) = page(&s, &session, path);
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("<option value=\"grafana|read\" selected>"), "{html}");
    assert!(!html.contains("<option value=\"grafana|write\" selected>"), "{html}");
    assert!(
        html.contains("<input type=\"hidden\" name=\"return_to\" value=\"https://grafana.example.test/d/abc?orgId=1&#38;from=now-1h\">"),
        "{html}"
    );

    // Filed with the way back: the request's page carries it.
    let location = file_from_form(&s, &session, &back);
    let id = location
        .strip_prefix("/ui/requests/")
        .and_then(|rest| rest.split_once('?'))
        .map(|(id, _)| id.to_string())
        .unwrap_or_else(|| panic!("{location}"));
    let query = serde_urlencoded::to_string([("return_to", back.as_str())]).unwrap();
    assert_eq!(location, format!("/ui/requests/{id}?{query}"));
    let (_, html) = page(&s, &session, &location);
    assert!(html.contains("pending"), "{html}");
    assert!(!html.contains("Continue to"), "no way back before approval: {html}");
    // It refreshes itself while pending, keeping the way back.
    assert!(
        html.contains(&format!(
            "hx-get=\"/ui/requests/{id}?return_to=https%3A%2F%2Fgrafana.example.test"
        )),
        "{html}"
    );

    let (status, v) = s.post(&format!("/v1/requests/{id}/approve"), "demo-bob", json!({}));
    assert_eq!(status, 200, "{v}");
    let (_, html) = page(&s, &session, &location);
    assert!(
        html.contains(
            "<a class=\"button primary\" id=\"continue\" href=\"https://grafana.example.test/d/abc?orgId=1&#38;from=now-1h\""
        ),
        "{html}"
    );
    assert!(
        html.contains("Continue to https://grafana.example.test/d/abc?orgId=1&#38;from=now-1h</a>"),
        "{html}"
    );
}

#[test]
fn the_way_back_leads_only_to_hosts_the_catalog_serves() {
    let (s, _policy) = server();
    let session = ui_session(&s, "demo-alice");
    for foreign in [
        "https://evil.example/".to_string(),
        format!("https://{APP}@evil.example/"),
        format!("https://evil.example\\@{APP}/"),
        format!("javascript://{APP}/%0aalert(1)"),
        format!("//{APP}/"),
        format!("https://{APP}/{}", "x".repeat(2048)),
        format!("https://{APP}.evil.example/"),
        format!("ftp://{APP}/"),
    ] {
        let path = format!(
            "/ui/new?{}",
            serde_urlencoded::to_string([("resource", "grafana"), ("action", "read"), ("return_to", &foreign)])
                .unwrap()
        );
        let (status, html) = page(&s, &session, &path);
        assert_eq!(status, 200, "{foreign}");
        assert!(!html.contains("name=\"return_to\""), "{foreign}: {html}");
        assert!(
            html.contains("The link back to the application was left out"),
            "{foreign}: {html}"
        );
        // The target is still chosen.
        assert!(html.contains("<option value=\"grafana|read\" selected>"), "{foreign}");
        // A form changed by hand is checked again.
        let location = file_from_form(&s, &session, &foreign);
        assert!(!location.contains('?'), "{foreign}: {location}");
    }
    // Something alice may not ask for: said, not silently dropped.
    let (status, html) = page(&s, &session, "/ui/new?resource=grafana&action=admin");
    assert_eq!(status, 200);
    assert!(html.contains("You may not ask for admin on grafana"), "{html}");
}

#[test]
fn signing_in_keeps_the_whole_request_link() {
    let (s, _policy) = server();
    let next = format!(
        "/ui/new?{}",
        serde_urlencoded::to_string([
            ("resource", "grafana"),
            ("action", "read"),
            ("return_to", &format!("https://{APP}/d/abc?x=1&y=2"))
        ])
        .unwrap()
    );
    // Without a session the page sends the browser to sign in, and keeps the link.
    let r = no_redirects().get(format!("{}{next}", s.url)).send().unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let login = header(&r, "location").unwrap();
    let (_, query) = login.split_once('?').unwrap();
    let sent: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
    assert_eq!(sent, vec![("next".to_string(), next.clone())]);
    // The sign-in page keeps it in its form, and signing in goes there.
    let r = no_redirects().get(format!("{}{login}", s.url)).send().unwrap();
    let html = r.text().unwrap();
    assert!(
        html.contains(&format!("name=\"next\" value=\"{}\"", next.replace('&', "&#38;"))),
        "{html}"
    );
    let csrf = "a".repeat(64);
    let r = no_redirects()
        .post(format!("{}/ui/login", s.url))
        .header("Cookie", format!("jitgate_csrf={csrf}"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string([("token", "demo-alice"), ("csrf", &csrf), ("next", &next)]).unwrap())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(header(&r, "location").as_deref(), Some(next.as_str()));
}

#[test]
fn the_session_cookie_goes_to_the_cookie_domain_when_configured() {
    let policy = policy();
    let port = free_port();
    let config = format!(
        "[notify]\npublic_url = \"http://jit.example.test:{port}\"\n\n[ui]\ncookie_domain = \"example.test\"\n"
    );
    let s = Server::start_with(policy.path(), Some(&config));
    let csrf = "a".repeat(64);
    let r = no_redirects()
        .post(format!("{}/ui/login", s.url))
        .header("Cookie", format!("jitgate_csrf={csrf}"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("token=demo-alice&csrf={csrf}"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .filter(|c| c.starts_with("jitgate_session="))
        .collect();
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("jitgate_session=demo-alice; Domain=example.test; Path=/; HttpOnly; SameSite=Lax")),
        "{cookies:?}"
    );
    // The cookie the app's proxy passes on counts at forward auth.
    granted(&s, "read");
    let r = ask(
        &s,
        "GET",
        "/v1/forward-auth",
        &[
            ("X-Forwarded-Host", APP.as_bytes()),
            ("X-Forwarded-Uri", b"/"),
            ("Cookie", b"other=1; jitgate_session=demo-alice"),
        ],
    );
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-jitgate-principal").as_deref(), Some("alice"));
    // Signing out ends it there too.
    let r = no_redirects()
        .post(format!("{}/ui/logout", s.url))
        .header("Cookie", format!("jitgate_session=demo-alice; jitgate_csrf={csrf}"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}"))
        .send()
        .unwrap();
    let ended: Vec<&str> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .filter(|c| c.starts_with("jitgate_session=;"))
        .collect();
    assert!(
        ended
            .iter()
            .any(|c| c.contains("Domain=example.test; Path=/;") && c.contains("Max-Age=0")),
        "{ended:?}"
    );

    // A domain that is not plain, or that jitgate is not on, stops the server at start.
    for (config, says) in [
        (
            "[ui]\ncookie_domain = \".Example.test\"\n",
            "ui.cookie_domain: '.Example.test' holds upper case",
        ),
        (
            "[notify]\npublic_url = \"https://jit.other.test\"\n[ui]\ncookie_domain = \"example.test\"\n",
            "ui.cookie_domain: jitgate's public URL https://jit.other.test is not on example.test",
        ),
    ] {
        let stderr = serve_refused(policy.path(), config);
        assert!(stderr.contains(says), "{stderr}");
    }
}

/// In a real browser: the 403's link, signing in on the way, the form with the target chosen,
/// and the request's page showing the way back by itself once bob approves (htmx under the
/// pages' Content-Security-Policy).
#[test]
fn in_a_browser_the_request_link_leads_through_sign_in_and_back_to_the_app() {
    let (s, _policy) = server();
    let back = format!("https://{APP}/d/abc?orgId=1");
    let b = crate::support::browser::Browser::start(1280, 860);
    b.goto(&request_url(&s, "read", &back));
    // Not signed in: the sign-in page, which comes back to the link.
    b.type_into("#token", "demo-alice");
    b.click("button[type=submit].primary");
    b.find("#return-to");
    assert!(
        b.url().contains("/ui/new?resource=grafana&action=read&return_to="),
        "{}",
        b.url()
    );
    assert!(b.text("#return-to").contains(&back), "{}", b.text("#return-to"));
    b.type_into("#duration", "30m");
    b.type_into("#reason", "dashboards");
    b.click("#file");
    b.wait_for_text("#state .badge", "pending");
    assert!(!b.exists("#continue"));
    let r = pending_request(&s, |r| r["resource"] == "grafana" && r["requester"] == "alice");
    let (status, v) = s.post(&format!("/v1/requests/{}/approve", id(&r)), "demo-bob", json!({}));
    assert_eq!(status, 200, "{v}");
    // The page, left open, offers the way back by itself.
    b.wait_for_text("#state", &format!("Continue to {back}"));
    assert!(
        b.source()
            .contains("href=\"https://grafana.example.test/d/abc?orgId=1\""),
        "{}",
        b.source()
    );
    b.screenshot("14-forward-auth-continue");
    crate::support::browser::clean_console(&b);
}

#[test]
fn without_a_method_header_nginx_style_calls_are_400() {
    // nginx sends every auth subrequest as GET: a POST must never be judged by that.
    let (s, _policy) = server();
    let alice: Header = ("Authorization", b"Bearer demo-alice");
    let r = ask_exactly(
        &s,
        "GET",
        "/v1/forward-auth",
        &[alice, ("Host", APP.as_bytes()), ("X-Original-URI", b"/")],
    );
    assert_eq!(r.status(), 400);
    let body = json_of(r);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("no original method"),
        "{body}"
    );
    // Below the prefix (Envoy) the auth request is the original, and no header may describe
    // another.
    let r = ask_exactly(
        &s,
        "GET",
        "/v1/forward-auth/",
        &[alice, ("Host", APP.as_bytes()), ("X-Forwarded-Uri", b"/public")],
    );
    assert_eq!(r.status(), 400);
    assert!(json_of(r)["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("X-Forwarded-Uri: not read below"));
    // A method override is judged too: a read grant does not let a GET that the application
    // would run as DELETE through.
    granted(&s, "read");
    assert_eq!(traefik(&s, "GET", "/", &[alice]).status(), 200);
    for name in ["X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"] {
        let r = traefik(&s, "GET", "/", &[alice, (name, b"DELETE")]);
        assert_eq!(r.status(), 403, "{name}");
        assert!(
            header(&r, "x-jitgate-request-url").unwrap().contains("action=write"),
            "{name}"
        );
    }
    // Lower case is the same method to the application, and to jitgate.
    assert_eq!(traefik(&s, "get", "/", &[alice]).status(), 200);
}
