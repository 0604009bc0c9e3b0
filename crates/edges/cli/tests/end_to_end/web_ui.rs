//! The web UI in a real browser (headless Chromium over WebDriver) against the real server:
//! alice and bob sign in, file, approve from the notification link in two clicks, watch the
//! page update itself, revoke; a cross-site form post is refused; auditors read the log; the
//! pages work on a phone. Screenshots of each page go to `target/ui-screenshots/`.

use crate::support::browser::{clean_console, Browser};
use crate::support::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};

mod accessibility;
mod grant_actions;
mod new_form;
mod review_box;
mod small;

const DESKTOP: (u32, u32) = (1280, 860);
const PHONE: (u32, u32) = (390, 844);

fn browser((w, h): (u32, u32)) -> Browser {
    Browser::start(w, h)
}

/// An HTTP client that shows redirects instead of following them.
fn plain() -> reqwest::blocking::Client {
    no_redirects()
}

/// Sign in on the sign-in page with an API token; lands on the inbox.
fn sign_in(b: &Browser, s: &Server, token: &str) {
    b.goto(&format!("{}/ui/login", s.url));
    b.type_into("#token", token);
    b.click("button[type=submit].primary");
    b.find("nav[aria-label=Main]");
    assert!(b.url().ends_with("/ui/inbox"), "{}", b.url());
}

#[test]
fn a_reviewer_approves_from_the_link_in_two_clicks_and_the_requester_sees_it_live() {
    let s = Server::start();
    let alice = browser(DESKTOP);
    let bob = browser(DESKTOP);

    // alice files a request with the form: the workflows the policy lets her ask for.
    alice.goto(&format!("{}/ui/login", s.url));
    alice.screenshot("01-sign-in");
    sign_in(&alice, &s, "demo-alice");
    alice.click("nav a[href='/ui/new']");
    alice.select("#target", "prod-db|read");
    alice.type_into("#duration", "30m");
    alice.type_into("#reason", "INC-42: replica lag <script>alert(1)</script>");
    alice.screenshot("02-new-request");
    alice.click("#file");
    alice.wait_for_text("#state .badge", "pending");
    let link = alice.url();
    assert!(link.contains("/ui/requests/req_"), "{link}");
    let id = link.rsplit('/').next().unwrap().to_string();
    // Everything is escaped: the reason's markup is text, not a script.
    assert!(alice.text("dd.reason").contains("<script>alert(1)</script>"));
    assert!(alice.source().contains("&lt;script&gt;"));
    alice.screenshot("03-request-pending");

    // bob signs in; the request waits in his inbox.
    sign_in(&bob, &s, "demo-bob");
    bob.wait_for_text("#rows", "prod-db");
    bob.screenshot("04-inbox");

    // From the notification's link: open it (one), approve (two).
    bob.goto(&link);
    bob.click("#approve");
    bob.wait_for_text("#state .badge", "approved");
    assert!(bob.text("#state").contains("active"), "{}", bob.text("#state"));
    bob.screenshot("05-request-approved");
    let (status, r) = s.get(&format!("/v1/requests/{id}"), "demo-alice");
    assert_eq!(status, 200);
    assert_eq!(r["status"], "approved", "{r}");
    assert_eq!(r["approvals"][0]["reviewer"], "bob");
    assert_eq!(r["grant"]["status"], "active");
    assert_eq!(s.check("alice", "prod-db", "read", None)["allow"], true);

    // alice's page, left open, shows the decision by itself.
    alice.wait_for_text("#state .badge", "approved");
    alice.wait_for_text("#state", "left");

    // alice revokes her grant from the grants page.
    alice.click("nav a[href='/ui/grants']");
    alice.wait_for_text("#grant-rows", "prod-db");
    alice.screenshot("06-grants");
    alice.click("#grant-rows button.danger");
    alice.wait_for_text("#grant-rows", "No active grants");
    assert_eq!(s.check("alice", "prod-db", "read", None)["allow"], false);
    let (_, r) = s.get(&format!("/v1/requests/{id}"), "demo-alice");
    assert_eq!(r["grant"]["status"], "revoked", "{r}");
    alice.click("nav a[href='/ui/requests']");
    alice.wait_for_text("main table", "prod-db");
    alice.screenshot("07-my-requests");

    clean_console(&alice);
    clean_console(&bob);
}

/// Serve one page with a form that posts itself to `action` at once (another site's trap).
fn trap_page(action: &str) -> String {
    let page = format!(
        "<!doctype html><html><body><form id=f method=post action=\"{action}\">\
         <input name=back value=/ui/grants><input name=csrf value=guessed></form>\
         <script>document.getElementById('f').submit()</script></body></html>"
    );
    serve_html(page).to_string()
}

/// Serve `page` on a port of its own on 127.0.0.1 (another origin than jitgate's), for any
/// path, until the test ends: its port.
pub(super) fn serve_html(page: String) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let page = page.clone();
            // A connection each: the browser may open one and send nothing on it.
            std::thread::spawn(move || {
                let mut line = String::new();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                    page.len()
                );
            });
        }
    });
    port
}

#[test]
fn a_cross_site_form_post_is_refused() {
    let s = Server::start();
    let r = s.file(
        "demo-alice",
        json!({"resource": "staging-db", "action": "read", "duration": "1h", "reason": "tests"}),
    );
    let grant = r["grant"]["id"].as_str().unwrap().to_string();
    let alice = browser(DESKTOP);
    sign_in(&alice, &s, "demo-alice");

    // Another site (and another port of the same host, which browsers count as the same
    // site and send the cookies to) makes alice's browser post the revocation.
    let action = format!("{}/ui/grants/{grant}/revoke", s.url);
    let port = trap_page(&action);
    for trap in [format!("http://localhost:{port}/"), format!("http://127.0.0.1:{port}/")] {
        alice.goto(&trap);
        alice.wait_for_text("main", "refused");
        alice.screenshot("08-cross-site-post-refused");
        assert_eq!(s.check("alice", "staging-db", "read", None)["allow"], true, "{trap}");
    }

    // Even from the same origin, a post without the form's token is refused.
    let cookie_jar = alice_session(&s);
    let response = plain()
        .post(format!("{}/ui/grants/{grant}/revoke", s.url))
        .header("Cookie", cookie_jar)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("back=/ui/grants&csrf=0000")
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    assert_eq!(s.check("alice", "staging-db", "read", None)["allow"], true);
}

/// A session cookie for alice, and a CSRF cookie of our own choosing.
fn alice_session(s: &Server) -> String {
    ui_session(s, "demo-alice")
}

#[test]
fn pages_are_safe_by_default_and_read_well_on_a_phone() {
    let s = Server::start();
    let r = s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "read", "duration": "30m", "reason": "INC-7: slow queries"}),
    );
    let id = id(&r);

    // Every page is sent with a strict policy, no framing, no caching.
    let page = plain().get(format!("{}/ui/login", s.url)).send().unwrap();
    let headers = page.headers();
    let csp = headers["content-security-policy"].to_str().unwrap();
    for rule in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ] {
        assert!(csp.contains(rule), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["referrer-policy"], "same-origin");
    assert_eq!(headers["cache-control"], "no-store");
    let cookie = headers["set-cookie"].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let body = page.text().unwrap();
    assert!(!body.contains("<script>") && !body.contains("style="), "no inline code");
    // Not signed in: pages send the browser to sign in, and back after.
    let inbox = plain().get(format!("{}/ui/inbox", s.url)).send().unwrap();
    assert_eq!(inbox.status().as_u16(), 303);
    assert_eq!(inbox.headers()["location"], "/ui/login?next=%2Fui%2Finbox");

    // The same authorization as the API: alice cannot approve her own request, and dave (a
    // developer) cannot even see it.
    let dave = browser(DESKTOP);
    sign_in(&dave, &s, "demo-dave");
    dave.goto(&format!("{}/ui/requests/{id}", s.url));
    dave.wait_for_text("main h1", "Not found");
    let alice = browser(PHONE);
    sign_in(&alice, &s, "demo-alice");
    alice.goto(&format!("{}/ui/requests/{id}", s.url));
    alice.wait_for_text("#state .badge", "pending");
    assert!(!alice.exists("#approve"), "no approve button for the requester");
    alice.screenshot("09-phone-request");
    clean_console(&alice);

    // An auditor reads the log with filters, and asks the policy.
    let auditor = browser(DESKTOP);
    sign_in(&auditor, &s, "demo-auditor");
    auditor.click("nav a[href='/ui/audit']");
    auditor.select("select[name=kind]", "request.filed");
    auditor.click("form.filters button");
    auditor.wait_for_text("table.audit", "request.filed");
    assert!(!auditor.text("table.audit tbody").contains("grant.issued"));
    auditor.screenshot("10-audit");
    auditor.goto(&format!(
        "{}/ui/explain?resource=prod-db&action=read&principal=alice",
        s.url
    ));
    auditor.wait_for_text("main section h2", "prod-db");
    auditor.screenshot("11-explain");
    clean_console(&auditor);

    // bob on a phone: the inbox, then the request.
    let bob = browser(PHONE);
    sign_in(&bob, &s, "demo-bob");
    bob.wait_for_text("#rows", "prod-db");
    bob.screenshot("12-phone-inbox");
    clean_console(&bob);
    let (_, v): (u16, Value) = s.get("/v1/audit?kind=request.filed", "demo-auditor");
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
}

/// A tiny OpenID provider on loopback: `/authorize` signs "alice" in at once and sends the
/// browser back with a code; `/token` trades the code for an ID token only with the PKCE
/// verifier of that code's challenge.
struct Idp {
    url: String,
    jwks: String,
}

fn idp(client_id: &'static str) -> Idp {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use sha2::{Digest, Sha256};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).unwrap();
    let mut der = hex::decode("302e020100300506032b657004220420").unwrap();
    der.extend_from_slice(&seed);
    let key = jsonwebtoken::EncodingKey::from_ed_der(&der);
    let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, jsonwebtoken::Algorithm::EdDSA).unwrap();
    jwk.common.key_id = Some("idp-1".into());
    let jwks = json!({ "keys": [jwk] }).to_string();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let issued: Arc<Mutex<HashMap<String, (String, String)>>> = Arc::default();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (key, issued) = (key.clone(), issued.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                reader.read_line(&mut request_line).unwrap();
                let mut length = 0;
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                    line.clear();
                }
                let mut body = vec![0u8; length];
                std::io::Read::read_exact(&mut reader, &mut body).unwrap();
                let target = request_line.split(' ').nth(1).unwrap_or("/").to_string();
                let (path, query) = target.split_once('?').unwrap_or((&target, ""));
                let answer = if path == "/authorize" {
                    let q: HashMap<String, String> = serde_urlencoded::from_str(query).unwrap();
                    assert_eq!(q["code_challenge_method"], "S256");
                    assert_eq!(q["client_id"], client_id);
                    let mut raw = [0u8; 16];
                    getrandom::getrandom(&mut raw).unwrap();
                    let code = hex::encode(raw);
                    issued
                        .lock()
                        .unwrap()
                        .insert(code.clone(), (q["code_challenge"].clone(), q["nonce"].clone()));
                    let back = format!(
                        "{}?{}",
                        q["redirect_uri"],
                        serde_urlencoded::to_string([("code", code.as_str()), ("state", q["state"].as_str())]).unwrap()
                    );
                    format!("HTTP/1.1 302 Found\r\nLocation: {back}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                } else {
                    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap();
                    let known = issued.lock().unwrap().remove(&form["code"]);
                    let proof = URL_SAFE_NO_PAD.encode(Sha256::digest(form["code_verifier"].as_bytes()));
                    match known {
                        Some((challenge, nonce)) if challenge == proof => {
                            let now = chrono::Utc::now().timestamp();
                            let claims = json!({"iss": "https://id.example.test", "aud": client_id, "sub": "alice",
                                "groups": ["dev"], "nonce": nonce, "iat": now, "exp": now + 600});
                            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
                            header.kid = Some("idp-1".into());
                            let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
                            let body = json!({"id_token": token, "token_type": "Bearer"}).to_string();
                            format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                        }
                        _ => "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
                    }
                };
                let _ = stream.write_all(answer.as_bytes());
            });
        }
    });
    Idp { url, jwks }
}

#[test]
fn single_sign_on_with_pkce_signs_in_and_a_stolen_code_does_not() {
    let provider = idp("jitgate-ui");
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, &provider.jwks).unwrap();
    let config = format!(
        "[[auth.oidc]]\nissuer = \"https://id.example.test\"\naudience = [\"jitgate-ui\"]\njwks_file = \"{}\"\n\
         algorithms = [\"EdDSA\"]\ngroups_claim = \"groups\"\n\n\
         [ui.sso]\nissuer = \"https://id.example.test\"\nclient_id = \"jitgate-ui\"\n\
         authorization_url = \"{}/authorize\"\ntoken_url = \"{}/token\"\n",
        jwks.display(),
        provider.url,
        provider.url
    );
    let s = Server::start_with(&quickstart(), Some(&config));

    // In the browser: one click on "single sign-on", back signed in as alice.
    let b = browser(DESKTOP);
    b.goto(&format!("{}/ui/login?next=/ui/grants", s.url));
    b.click("a.button.primary");
    b.wait_for_text(".me", "alice");
    assert!(b.url().ends_with("/ui/grants"), "{}", b.url());
    b.screenshot("13-signed-in-with-sso");
    clean_console(&b);

    // A code stolen from someone else's sign-in is useless without their PKCE verifier, and
    // a callback this browser did not start is refused.
    let http = plain();
    let start = |http: &reqwest::blocking::Client| {
        let r = http.get(format!("{}/ui/login/sso", s.url)).send().unwrap();
        assert_eq!(r.status().as_u16(), 303);
        let location = r.headers()["location"].to_str().unwrap().to_string();
        let flow = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
            .find(|c| c.starts_with("jitgate_sso="))
            .unwrap();
        (location, flow)
    };
    let (victim_authorize, _victim_flow) = start(&http);
    let code_back = http.get(&victim_authorize).send().unwrap();
    let stolen = code_back.headers()["location"].to_str().unwrap().to_string();
    let code: std::collections::HashMap<String, String> =
        serde_urlencoded::from_str(stolen.split_once('?').unwrap().1).unwrap();
    let (attacker_authorize, attacker_flow) = start(&http);
    let attacker_state: std::collections::HashMap<String, String> =
        serde_urlencoded::from_str(attacker_authorize.split_once('?').unwrap().1).unwrap();
    let csrf = format!("jitgate_csrf={}", "b".repeat(64));
    let callback = |code: &str, state: &str, cookie: &str| {
        http.get(format!(
            "{}/ui/login/callback?{}",
            s.url,
            serde_urlencoded::to_string([("code", code), ("state", state)]).unwrap()
        ))
        .header("Cookie", format!("{cookie}; {csrf}"))
        .send()
        .unwrap()
    };
    let r = callback(&code["code"], &attacker_state["state"], &attacker_flow);
    assert_eq!(r.status().as_u16(), 401);
    assert!(r
        .headers()
        .get_all("set-cookie")
        .iter()
        .all(|c| !c.to_str().unwrap().starts_with("jitgate_session=e")));
    assert!(r.text().unwrap().contains("did not accept"));
    let r = callback(&code["code"], &code["state"], "jitgate_sso=none");
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.text().unwrap().contains("not started here"));
}

/// A standard OpenID provider on loopback, served from `listener`: discovery (its issuer is its
/// own URL), JWKS, `/authorize` that signs "alice" in at once, and `/token` that wants the
/// client's secret as HTTP Basic authentication. What it was sent is kept in `seen`.
fn standard_idp(
    listener: std::net::TcpListener,
    client_id: &'static str,
    secret: &'static str,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine;
    use sha2::{Digest, Sha256};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).unwrap();
    let mut der = hex::decode("302e020100300506032b657004220420").unwrap();
    der.extend_from_slice(&seed);
    let key = jsonwebtoken::EncodingKey::from_ed_der(&der);
    let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, jsonwebtoken::Algorithm::EdDSA).unwrap();
    jwk.common.key_id = Some("std-1".into());
    let jwks = json!({ "keys": [jwk] }).to_string();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let issued: Arc<Mutex<HashMap<String, (String, String)>>> = Arc::default();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (key, issued, seen, jwks, url) = (key.clone(), issued.clone(), seen.clone(), jwks.clone(), url.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                reader.read_line(&mut request_line).unwrap();
                let (mut length, mut authorization) = (0, String::new());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                    if lower.starts_with("authorization:") {
                        authorization = line["authorization:".len()..].trim().to_string();
                    }
                    line.clear();
                }
                let mut body = vec![0u8; length];
                std::io::Read::read_exact(&mut reader, &mut body).unwrap();
                let target = request_line.split(' ').nth(1).unwrap_or("/").to_string();
                let (path, query) = target.split_once('?').unwrap_or((&target, ""));
                let json_answer = |body: String| {
                    format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                };
                let refused = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string();
                let answer = match path {
                    "/.well-known/openid-configuration" => json_answer(
                        json!({
                            "issuer": url,
                            "authorization_endpoint": format!("{url}/authorize"),
                            "token_endpoint": format!("{url}/token"),
                            "jwks_uri": format!("{url}/jwks"),
                            "scopes_supported": ["openid", "profile", "email", "groups"],
                            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                        })
                        .to_string(),
                    ),
                    "/jwks" => json_answer(jwks),
                    "/authorize" => {
                        let q: HashMap<String, String> = serde_urlencoded::from_str(query).unwrap();
                        seen.lock().unwrap().push(format!("scope={}", q["scope"]));
                        let code = hex::encode(seed)[..16].to_string() + &q["state"][..8];
                        issued
                            .lock()
                            .unwrap()
                            .insert(code.clone(), (q["code_challenge"].clone(), q["nonce"].clone()));
                        let back = format!(
                            "{}?{}",
                            q["redirect_uri"],
                            serde_urlencoded::to_string([("code", code.as_str()), ("state", q["state"].as_str())])
                                .unwrap()
                        );
                        format!(
                            "HTTP/1.1 302 Found\r\nLocation: {back}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        )
                    }
                    _ => {
                        let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap();
                        seen.lock()
                            .unwrap()
                            .push(format!("token authorization={authorization}"));
                        // RFC 6749, section 2.3.1: each part form-encoded, then Base64.
                        let enc = |v: &str| serde_urlencoded::to_string([("v", v)]).unwrap()[2..].to_string();
                        let expected = format!(
                            "Basic {}",
                            STANDARD.encode(format!("{}:{}", enc(client_id), enc(secret)))
                        );
                        let known = issued.lock().unwrap().remove(&form["code"]);
                        let proof = URL_SAFE_NO_PAD.encode(Sha256::digest(form["code_verifier"].as_bytes()));
                        match known {
                            Some((challenge, nonce))
                                if challenge == proof
                                    && authorization == expected
                                    && !form.contains_key("client_secret") =>
                            {
                                let now = chrono::Utc::now().timestamp();
                                let claims = json!({"iss": url, "aud": client_id, "sub": "alice",
                                    "groups": ["dev"], "nonce": nonce, "iat": now, "exp": now + 600});
                                let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
                                header.kid = Some("std-1".into());
                                let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
                                json_answer(json!({"id_token": token, "token_type": "Bearer"}).to_string())
                            }
                            _ => refused,
                        }
                    }
                };
                let _ = stream.write_all(answer.as_bytes());
            });
        }
    });
}

/// Single sign-on against a provider configured by its issuer alone (endpoints and keys from
/// discovery), with the secret sent as HTTP Basic authentication. The provider is down when
/// jitgate starts: jitgate starts anyway and answers checks; sign-in works once it is up.
#[test]
fn single_sign_on_discovers_a_provider_that_was_down_at_start_and_sends_basic_auth() {
    // The provider's port, held by a socket bound but not listening: connecting is refused,
    // as to a provider that is down, and no other test can take the port before the
    // provider comes up on it.
    let reserved = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    reserved
        .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let port = reserved.local_addr().unwrap().as_socket().unwrap().port();
    let issuer = format!("http://127.0.0.1:{port}");
    let config = format!(
        "[[auth.oidc]]\nissuer = \"{issuer}\"\naudience = [\"jitgate-std\"]\nalgorithms = [\"EdDSA\"]\n\
         groups_claim = \"groups\"\njwks_min_refresh = \"0s\"\n\n\
         [ui.sso]\nissuer = \"{issuer}\"\nclient_id = \"jitgate-std\"\n\
         client_secret_env = \"JITGATE_TEST_SSO_SECRET_BASIC\"\nclient_auth = \"client_secret_basic\"\n"
    );
    // The provider is down: the server starts all the same, and services' checks work.
    let s = Server::start_with_env(
        &quickstart(),
        Some(&config),
        &[("JITGATE_TEST_SSO_SECRET_BASIC", "s3cret:with/odd&chars")],
    );
    let (status, answer) = s.post(
        "/v1/check",
        "demo-svc",
        json!({"principal": "alice", "resource": "staging-db", "action": "read"}),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["allow"], false);
    let http = plain();
    let r = http.get(format!("{}/ui/login/sso", s.url)).send().unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.text().unwrap().contains("cannot be reached"));

    // The provider comes up; the next sign-in discovers it.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    reserved.listen(128).unwrap();
    let listener: std::net::TcpListener = reserved.into();
    standard_idp(listener, "jitgate-std", "s3cret:with/odd&chars", seen.clone());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let started = loop {
        let r = http
            .get(format!("{}/ui/login/sso?next=/ui/grants", s.url))
            .send()
            .unwrap();
        if r.status().as_u16() == 303 {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "single sign-on never recovered");
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    let authorize = started.headers()["location"].to_str().unwrap().to_string();
    assert!(authorize.starts_with(&format!("{issuer}/authorize?")), "{authorize}");
    let flow = started
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .find(|c| c.starts_with("jitgate_sso="))
        .unwrap();
    let back = http.get(&authorize).send().unwrap();
    let callback = back.headers()["location"].to_str().unwrap().to_string();
    let r = http
        .get(&callback)
        .header("Cookie", format!("{flow}; jitgate_csrf={}", "b".repeat(64)))
        .send()
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(r.status().as_u16(), 303, "{seen:?}: {}", r.text().unwrap());
    assert_eq!(r.headers()["location"], "/ui/grants");
    let session = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("jitgate_session="))
        .unwrap();
    // The session lives as long as the ID token (600 s here), not forever.
    let max_age: u64 = session
        .split("; ")
        .find_map(|a| a.strip_prefix("Max-Age="))
        .unwrap()
        .parse()
        .unwrap();
    assert!((590..=600).contains(&max_age), "{session}");
    let grants = http
        .get(format!("{}/ui/grants", s.url))
        .header("Cookie", session.split(';').next().unwrap())
        .send()
        .unwrap();
    assert_eq!(grants.status().as_u16(), 200);
    assert!(grants.text().unwrap().contains("alice"));
    // What the provider was sent: the groups scope, and the secret as Basic authentication
    // (form-encoded first, as RFC 6749 says), never in the form.
    assert!(
        seen.iter().any(|l| l == "scope=openid profile email groups"),
        "{seen:?}"
    );
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        "jitgate-std:s3cret%3Awith%2Fodd%26chars",
    );
    assert!(
        seen.iter().any(|l| *l == format!("token authorization=Basic {basic}")),
        "{seen:?}"
    );
}

/// Behind a trusted authenticating proxy the UI needs no sign-in: the proxy's headers say who
/// it is, as for the API; posts still need the form's token. A break-glass access is reviewed
/// from its page.
#[test]
fn behind_a_trusted_proxy_reviewers_act_without_signing_in() {
    let config = "[auth.trusted_proxy]\nuser_header = \"X-Forwarded-User\"\ngroups_header = \"X-Forwarded-Groups\"\nsources = [\"127.0.0.1/32\"]\n";
    let s = Server::start_with(&quickstart(), Some(config));
    let glass = s.file(
        "demo-bob",
        json!({"resource": "prod-db", "action": "write", "duration": "10m", "reason": "INC-9: disk full", "break_glass": true}),
    );
    let id = id(&glass);
    let csrf = "c".repeat(64);
    let as_carol = |request: reqwest::blocking::RequestBuilder| {
        request
            .header("X-Forwarded-User", "carol")
            .header("X-Forwarded-Groups", "sre")
            .header("Cookie", format!("jitgate_csrf={csrf}"))
    };
    let page = as_carol(plain().get(format!("{}/ui/requests/{id}", s.url)))
        .send()
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().unwrap();
    assert!(
        html.contains("carol") && html.contains("Break-glass") && html.contains("id=\"review\""),
        "{html}"
    );

    // Without the form's token: refused, nothing recorded.
    let forged = as_carol(plain().post(format!("{}/ui/requests/{id}/review", s.url)))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("comment=fine")
        .send()
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    let (_, r) = s.get(&format!("/v1/requests/{id}"), "demo-auditor");
    assert_eq!(r["review_due"], true, "{r}");

    let reviewed = as_carol(plain().post(format!("{}/ui/requests/{id}/review", s.url)))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Origin", s.url.clone())
        .body(format!("comment=checked+the+disk&csrf={csrf}"))
        .send()
        .unwrap();
    assert_eq!(reviewed.status().as_u16(), 303);
    let (_, r) = s.get(&format!("/v1/requests/{id}"), "demo-auditor");
    assert_eq!(r["review_due"], false, "{r}");
    assert_eq!(r["post_review"]["by"], "carol", "{r}");
    assert_eq!(r["post_review"]["comment"], "checked the disk");
}

#[test]
fn the_new_request_page_searches_the_catalog_and_files_what_was_found() {
    let s = Server::start();
    let alice = browser(DESKTOP);
    sign_in(&alice, &s, "demo-alice");
    alice.click("nav a[href='/ui/new']");
    assert!(alice.text("#target").contains("prod-db"), "{}", alice.text("#target"));

    // Typing narrows the choices in place (htmx), by name or description.
    alice.type_into("#q", "staging");
    wait_until("the choices show only the staging database", || {
        let choices = alice.text("#target");
        choices.contains("staging-db") && !choices.contains("prod-db")
    });
    assert!(
        alice.url().contains("q=staging"),
        "the search is in the address: {}",
        alice.url()
    );
    alice.screenshot("08-new-request-search");
    alice.select("#target", "staging-db|read");
    alice.type_into("#reason", "OPS-7 check a migration");
    alice.click("#file");
    alice.wait_for_text("#state .badge", "approved");

    // Without script too: a label search is a plain GET, and shows the labels it matched.
    alice.goto(&format!("{}/ui/new?label=env%3Dprod&kind=postgres", s.url));
    let choices = alice.text("#target");
    assert!(choices.contains("prod-db") && choices.contains("env=prod"), "{choices}");
    assert!(
        !choices.contains("staging-db") && !choices.contains("bastion"),
        "{choices}"
    );

    // A malformed label is named next to the search, and nothing is offered for it.
    alice.goto(&format!("{}/ui/new?label=env", s.url));
    assert!(
        alice.text("#choices").contains("label: 'env' is not key=value"),
        "{}",
        alice.text("#choices")
    );
    // bob may not request staging-db: searching for it finds nothing he may ask for.
    let bob = browser(DESKTOP);
    sign_in(&bob, &s, "demo-bob");
    bob.goto(&format!("{}/ui/new?q=staging", s.url));
    assert!(
        bob.text("#choices").contains("Nothing you may ask for matches"),
        "{}",
        bob.text("#choices")
    );
    clean_console(&alice);
    clean_console(&bob);
}

#[test]
fn the_new_request_form_files_several_choices_as_one_request_of_items() {
    let s = Server::start();
    let cookie = alice_session(&s);
    let csrf = "a".repeat(64);
    let post = |body: String| {
        plain()
            .post(format!("{}/ui/requests", s.url))
            .header("Cookie", &cookie)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .unwrap()
    };
    // The form offers several at once.
    let page = plain()
        .get(format!("{}/ui/new", s.url))
        .header("Cookie", &cookie)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(page.contains(r#"name="target" required multiple"#), "{page}");

    // Two choices: one request, two items, each with what it needs.
    let filed = post(format!(
        "csrf={csrf}&target=staging-db%7Cread&target=prod-db%7Cread&duration=30m&reason=OPS-3+compare"
    ));
    assert_eq!(filed.status().as_u16(), 303);
    let location = filed.headers()["location"].to_str().unwrap().to_string();
    let id = location.rsplit('/').next().unwrap();
    let (_, r) = s.get(&format!("/v1/requests/{id}"), "demo-alice");
    let items = r["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{r}");
    assert_eq!(
        (items[0]["resource"].as_str(), items[1]["resource"].as_str()),
        (Some("staging-db"), Some("prod-db"))
    );
    assert_eq!(items[0]["needs"], json!([]), "{r}");
    assert_eq!(items[1]["needs"], json!([{"group": "sre", "approvals": 1}]), "{r}");
    assert_eq!(r["status"], "pending", "{r}");

    // A refusal names the item and shows the form again with both still chosen.
    let refused = post(format!(
        "csrf={csrf}&target=staging-db%7Cread&target=prod-api%7Cdeploy&reason=OPS-4+ship"
    ));
    assert_eq!(refused.status().as_u16(), 422);
    let page = refused.text().unwrap();
    assert!(page.contains("items[1]"), "{page}");
    assert!(page.contains(r#"value="staging-db|read" selected"#), "{page}");
    assert!(page.contains(r#"value="prod-api|deploy" selected"#), "{page}");
    // Nothing was filed by the refusal.
    let (_, mine) = s.get("/v1/requests?requester=alice", "demo-alice");
    assert_eq!(mine["items"].as_array().unwrap().len(), 1, "{mine}");
}

/// An agent's request in the browser: the inbox and the page name the agent and its person;
/// the long payload shows its start, size and hash, and the whole of it one click away; the
/// Approve button approves the payload the page showed (a form with another hash is refused);
/// the person sees Cancel and no Approve.
#[test]
fn a_reviewer_sees_an_agents_payload_escaped_and_approves_the_hash_shown() {
    let s = Server::start();
    let (code, out, err) = s.cli(
        "demo-admin",
        &[
            "token",
            "create",
            "--principal",
            "claude-alice",
            "--agent-for",
            "alice",
            "--output",
            "json",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let agent = serde_json::from_str::<Value>(&out).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let payload = format!(
        "{{\"arguments\":{{\"path\":\"/srv/\u{200b}x\"}},\"tool\":\"delete_file\"}} {}",
        "b".repeat(1200)
    );
    let filed = s.file(
        &agent,
        json!({"resource": "prod-api", "action": "deploy", "reason": "MCP tool call", "payload": payload}),
    );
    let rid = id(&filed);
    let sha = filed["payload_sha256"].as_str().unwrap().to_string();

    // A form that claims another payload approves nothing.
    let response = plain()
        .post(format!("{}/ui/requests/{rid}/approve", s.url))
        .header("Cookie", ui_session(&s, "demo-bob"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!(
            "csrf={}&comment=&payload_sha256={}",
            "a".repeat(64),
            "1".repeat(64)
        ))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 409);
    assert!(response.text().unwrap().contains(&sha));
    assert_eq!(s.get(&format!("/v1/requests/{rid}"), "demo-bob").1["status"], "pending");

    let bob = browser(DESKTOP);
    sign_in(&bob, &s, "demo-bob");
    bob.wait_for_text("#rows", "claude-alice (agent for alice)");
    bob.goto(&format!("{}/ui/requests/{rid}", s.url));
    assert!(
        bob.text("h1").contains("claude-alice (agent for alice)"),
        "{}",
        bob.text("h1")
    );
    let summary = bob.text(".payload-summary");
    assert!(
        summary.contains(&format!("({} bytes, sha256 {sha})", payload.len())),
        "{summary}"
    );
    assert!(
        bob.text("pre.payload").contains("/srv/\\u{200b}x"),
        "{}",
        bob.text("pre.payload")
    );
    // The whole payload, one click away.
    bob.click("details.payload-full summary");
    assert!(bob.text("details.payload-full").contains(&"b".repeat(1200)));
    bob.screenshot("agent-request-payload");
    bob.click("#approve");
    bob.wait_for_text("#state .badge", "approved");
    let (_, r) = s.get(&format!("/v1/requests/{rid}"), "demo-alice");
    assert_eq!(r["approvals"][0]["payload_sha256"], sha.as_str(), "{r}");

    // The person: Cancel on their agent's pending request, never Approve.
    let second = s.file(
        &agent,
        json!({"resource": "prod-db", "action": "read", "duration": "10m", "reason": "INC-9 look"}),
    );
    let alice = browser(DESKTOP);
    sign_in(&alice, &s, "demo-alice");
    alice.goto(&format!("{}/ui/requests/{}", s.url, id(&second)));
    assert!(alice.exists("#cancel") && !alice.exists("#approve"));
    alice.click("#cancel");
    alice.wait_for_text("#state .badge", "cancelled");
    clean_console(&bob);
    clean_console(&alice);
}

/// The inbox a reviewer trusts (#27): bob sees the break-glass access he owes a review and
/// reviews it from there; a request he already approved (it needs two) is marked and has no
/// Approve button, in the inbox or on its page, while one he has not approved has; each
/// pending request says when it expires, with the exact moment in UTC on hover.
#[test]
fn bobs_inbox_shows_reviews_owed_and_no_approve_button_on_what_he_approved() {
    let s = Server::start();
    let twice = s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "write", "duration": "10m", "reason": "OPS-123: rebuild the index"}),
    );
    let twice = id(&twice);
    let (status, r) = s.post(&format!("/v1/requests/{twice}/approve"), "demo-bob", json!({}));
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["status"], "pending", "the second approval is still needed: {r}");
    let filing_fresh = std::time::Instant::now();
    let fresh = s.file(
        "demo-dave",
        json!({"resource": "prod-db", "action": "read", "duration": "30m", "reason": "INC-7: slow queries"}),
    );
    let fresh = id(&fresh);
    let glass = s.file(
        "demo-carol",
        json!({"resource": "prod-db", "action": "write", "duration": "10m", "reason": "INC-9: disk full", "break_glass": true}),
    );
    let glass = id(&glass);
    let (_, r) = s.get(&format!("/v1/requests/{glass}"), "demo-auditor");
    assert_eq!(r["review_due"], true, "{r}");

    let bob = browser(DESKTOP);
    sign_in(&bob, &s, "demo-bob");
    let row = |id: &str| format!("#rows tr[data-request='{id}']");
    // The break-glass access bob owes a review of, with a way to give it.
    bob.wait_for_text(&row(&glass), "review owed");
    assert!(bob.text(&row(&glass)).contains("carol"), "{}", bob.text(&row(&glass)));
    assert!(bob.exists(&format!("{} a.review-owed", row(&glass))));
    // Already approved by bob: marked, and waits for someone else.
    assert!(
        bob.text(&row(&twice)).contains("you approved"),
        "{}",
        bob.text(&row(&twice))
    );
    assert!(
        !bob.text(&row(&fresh)).contains("you approved"),
        "{}",
        bob.text(&row(&fresh))
    );
    // Expires in: the time left, the exact moment in UTC on hover and machine-readable.
    assert!(bob.exists("thead th:nth-child(7)"));
    let head = bob.text("thead").to_lowercase();
    assert!(head.contains("expires in"), "{head}");
    let expires = bob.text(&format!("{} td.expires", row(&fresh)));
    assert!(expires.contains('m'), "{expires}");
    let source = bob.source();
    let cell = source
        .split(&format!("data-request=\"{fresh}\""))
        .nth(1)
        .and_then(|r| r.split("<td class=\"expires\">").nth(1))
        .unwrap_or_default();
    // It has an hour to wait: "59m" left when the page is read within a minute of the
    // filing, as it normally is; on a machine so slow that browser start and sign-in took
    // longer, one minute less for each minute gone by (never more than 59m, never less
    // than the time gone by allows).
    let gone_by = filing_fresh.elapsed().as_secs();
    let fewest = (3600 - gone_by.min(3600)) / 60;
    let shown: Option<u64> = cell
        .split(" UTC\">")
        .nth(1)
        .and_then(|left| left.split("m ").next())
        .and_then(|minutes| minutes.parse().ok());
    assert!(
        cell.starts_with("<time datetime=\"20") && shown.is_some_and(|m| (fewest..=59).contains(&m)),
        "{shown:?} minutes left, {gone_by} s after the filing: {source}"
    );
    // A break-glass access is no longer pending: nothing expires.
    assert!(bob.text(&format!("{} td.expires", row(&glass))).contains('—'));
    bob.screenshot("20-inbox-reviews-owed");

    // Its page has no Approve button, and says why.
    bob.goto(&format!("{}/ui/requests/{twice}", s.url));
    bob.wait_for_text("#state .badge", "pending");
    assert!(!bob.exists("#approve"), "no second approval from bob");
    assert!(bob.text("#you-approved").contains("You approved"));
    // One he has not approved still has it.
    bob.goto(&format!("{}/ui/requests/{fresh}", s.url));
    bob.find("#approve");

    // carol broke the glass: she owes no review of her own access.
    let carol = browser(PHONE);
    sign_in(&carol, &s, "demo-carol");
    carol.find(&row(&twice));
    assert!(!carol.exists(&row(&glass)));
    assert!(!carol.text(&row(&twice)).contains("you approved"));
    carol.screenshot("21-phone-inbox-expires");

    // The review owed, from the inbox's link: given, and gone from the inbox.
    bob.goto(&format!("{}/ui/inbox", s.url));
    bob.click(&format!("{} a.review-owed", row(&glass)));
    bob.type_into("#review-comment", "checked the disk");
    bob.click("#review");
    // The banner only the page after the review shows: the request's page before it holds
    // "prod-db" too, and reading the API before the form's POST landed would race it.
    bob.wait_for_text("main .flash", "Review recorded.");
    bob.wait_for_text("#state", "prod-db");
    let (_, r) = s.get(&format!("/v1/requests/{glass}"), "demo-auditor");
    assert_eq!(r["review_due"], false, "{r}");
    assert_eq!(r["post_review"]["by"], "bob", "{r}");
    bob.goto(&format!("{}/ui/inbox", s.url));
    bob.find(&row(&twice));
    assert!(!bob.exists(&row(&glass)), "reviewed: no longer owed");
    clean_console(&bob);
    clean_console(&carol);
}
