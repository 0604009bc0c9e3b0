//! The small fixes of the web UI's second pass (#27), over plain HTTP against the real
//! server: the audit page says its introduction once, counts read "1 approval", static files
//! go gzip-compressed to browsers that take it, and error pages read as sentences and keep
//! the navigation.

use crate::support::*;
use serde_json::json;

fn page(s: &Server, cookie: &str, path: &str) -> (u16, String) {
    let r = no_redirects()
        .get(format!("{}{path}", s.url))
        .header("Cookie", cookie)
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

#[test]
fn the_audit_page_says_how_to_verify_the_log_once_with_real_code() {
    let s = Server::start();
    let (status, html) = page(&s, &ui_session(&s, "demo-auditor"), "/ui/audit");
    assert_eq!(status, 200, "{html}");
    assert_eq!(html.matches("jitgate audit verify").count(), 1, "{html}");
    assert!(html.contains("<code>jitgate audit verify</code>"), "{html}");
    assert!(!html.contains('`'), "no literal backticks: {html}");
}

#[test]
fn counts_of_approvals_are_singular_or_plural() {
    let s = Server::start();
    let r = s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "read", "duration": "30m", "reason": "INC-7: slow queries"}),
    );
    let id = id(&r);
    let alice = ui_session(&s, "demo-alice");
    let (status, html) = page(&s, &alice, &format!("/ui/requests/{id}"));
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("1 approval from sre"), "{html}");
    let (_, mine) = page(&s, &alice, "/ui/requests");
    assert!(mine.contains("needs 1 approval from sre"), "{mine}");
    for html in [&html, &mine] {
        assert!(!html.contains("approval(s)") && !html.contains("1 approvals"), "{html}");
    }
    // The CLI says it the same way.
    let (code, out, err) = s.cli("demo-alice", &["show", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("1 more approval from sre") && !out.contains("approval(s)"),
        "{out}"
    );
}

#[test]
fn static_files_go_gzip_compressed_to_browsers_that_take_it() {
    let s = Server::start();
    let get = |file: &str, accept: Option<&str>| {
        let mut request = no_redirects().get(format!("{}/ui/static/{file}", s.url));
        if let Some(accept) = accept {
            request = request.header("Accept-Encoding", accept);
        }
        let r = request.send().unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let headers = r.headers().clone();
        (headers, r.bytes().unwrap().to_vec())
    };
    let (plain_headers, plain) = get("htmx.min.js", None);
    assert!(plain_headers.get("content-encoding").is_none());
    assert!(plain.len() > 40_000, "{}", plain.len());
    for file in ["htmx.min.js", "app.css"] {
        let (headers, body) = get(file, Some("gzip, deflate, br"));
        assert_eq!(headers["content-encoding"], "gzip", "{file}");
        assert!(body.starts_with(&[0x1f, 0x8b]), "{file}: a gzip stream");
        assert_eq!(headers["cache-control"], "public, max-age=3600", "{file}");
        assert!(
            headers["vary"]
                .to_str()
                .unwrap()
                .to_ascii_lowercase()
                .contains("accept-encoding"),
            "{file}"
        );
        let (refused, identity) = get(file, Some("gzip;q=0"));
        assert!(refused.get("content-encoding").is_none(), "{file}");
        assert!(
            body.len() * 2 < identity.len(),
            "{file}: {} of {}",
            body.len(),
            identity.len()
        );
    }
    assert!(plain_headers["vary"].to_str().unwrap().contains("accept-encoding"));
    assert_eq!(plain_headers["cache-control"], "public, max-age=3600");
}

#[test]
fn error_pages_read_as_sentences_and_keep_the_navigation() {
    let s = Server::start();
    let dave = ui_session(&s, "demo-dave");
    let (status, html) = page(&s, &dave, "/ui/audit");
    assert_eq!(status, 403, "{html}");
    assert!(html.contains("<nav aria-label=\"Main\">"), "{html}");
    assert!(html.contains("Only auditors and admins may."), "{html}");
    assert!(!html.contains("only these roles may:"), "{html}");
    let (status, html) = page(&s, &dave, "/ui/no-such-page");
    assert_eq!(status, 404, "{html}");
    assert!(
        html.contains("<nav aria-label=\"Main\">") && html.contains("There is no such page."),
        "{html}"
    );
    // An address no id of ours can hold (a control character in the path, one in the query)
    // keeps the navigation too.
    for (path, status_wanted) in [("/ui/grants/grt_%01x/revoke", 404), ("/ui/inbox?requester=a%01b", 422)] {
        let (status, html) = page(&s, &dave, path);
        assert_eq!(status, status_wanted, "{path}: {html}");
        assert!(html.contains("<nav aria-label=\"Main\">"), "{path}: {html}");
    }
    // Signed out, an error page has no navigation to offer.
    let (status, html) = page(&s, "", "/ui/no-such-page");
    assert_eq!(status, 404, "{html}");
    assert!(!html.contains("<nav aria-label=\"Main\">"), "{html}");
}

/// Post a UI form as the browser with `cookie` would (its CSRF token is 64 `a`s); the answer.
fn post_form(s: &Server, cookie: &str, path: &str, body: &str) -> reqwest::blocking::Response {
    no_redirects()
        .post(format!("{}{path}", s.url))
        .header("Cookie", cookie)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("csrf={}&{body}", "a".repeat(64)))
        .send()
        .unwrap()
}

/// The `jitgate_flash` cookie a redirect sets, as the browser would send it back.
fn flash_cookie(r: &reqwest::blocking::Response) -> String {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("jitgate_flash="))
        .expect("a confirmation cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn confirmations_show_once_on_the_page_they_were_meant_for() {
    let s = Server::start();
    let r = s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "read", "duration": "30m", "reason": "INC-7: slow queries"}),
    );
    let id = id(&r);
    let bob = ui_session(&s, "demo-bob");
    let decided = post_form(&s, &bob, &format!("/ui/requests/{id}/approve"), "comment=ok");
    assert_eq!(decided.status().as_u16(), 303);
    let flash = flash_cookie(&decided);
    let with_flash = format!("{bob}; {flash}");
    // Another page does not show it ...
    let (_, inbox) = page(&s, &with_flash, "/ui/inbox");
    assert!(!inbox.contains("class=\"flash\""), "{inbox}");
    // ... the request's page does, once: the answer deletes the cookie.
    let response = no_redirects()
        .get(format!("{}/ui/requests/{id}", s.url))
        .header("Cookie", &with_flash)
        .send()
        .unwrap();
    let cleared = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.starts_with("jitgate_flash=;") && v.contains("Max-Age=0"));
    let html = response.text().unwrap();
    assert!(
        html.contains("<p class=\"flash\" role=\"status\">Approved.</p>"),
        "{html}"
    );
    assert!(cleared, "the confirmation is shown once");
    // A link cannot make a page claim a decision: nothing in the address is a confirmation.
    let (_, html) = page(&s, &bob, &format!("/ui/requests/{id}?flash=approved&done=approved"));
    assert!(!html.contains("class=\"flash\""), "{html}");
    // A made-up cookie value shows nothing either.
    let (_, html) = page(&s, &format!("{bob}; jitgate_flash=<b>x</b>~%2Fui%2Finbox"), "/ui/inbox");
    assert!(!html.contains("class=\"flash\""), "{html}");

    // Signing out says so; a session that ended says that instead.
    let out = post_form(&s, &bob, "/ui/logout", "");
    let flash = flash_cookie(&out);
    let (_, login) = page(&s, &format!("jitgate_csrf={}; {flash}", "a".repeat(64)), "/ui/login");
    assert!(login.contains("Signed out."), "{login}");
    let (_, login) = page(&s, "jitgate_session=no-longer-valid", "/ui/login");
    assert!(login.contains("Your session ended. Sign in again to go on."), "{login}");
    let (_, login) = page(&s, "", "/ui/login");
    assert!(!login.contains("class=\"flash\""), "{login}");
}

/// The confirmation cookie is the server's own: another app on a shared cookie domain cannot
/// make a page claim a decision, and a cookie for one page waits for that page while others
/// (a static file, another tab) are fetched first.
#[test]
fn a_forged_confirmation_shows_nothing_and_one_for_another_page_waits_for_it() {
    let s = Server::start();
    let r = s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "read", "duration": "30m", "reason": "INC-7: slow queries"}),
    );
    let id = id(&r);
    let bob = ui_session(&s, "demo-bob");
    // What a sibling subdomain could set: the page's own address, no approval behind it.
    let forged = format!("jitgate_flash=approved~%2Fui%2Frequests%2F{id}");
    let (_, html) = page(&s, &format!("{bob}; {forged}"), &format!("/ui/requests/{id}"));
    assert!(!html.contains("class=\"flash\""), "{html}");
    // A real one, fetched first by another page and a static file: neither clears it.
    let decided = post_form(&s, &bob, &format!("/ui/requests/{id}/approve"), "comment=ok");
    assert_eq!(decided.status().as_u16(), 303);
    let flash = flash_cookie(&decided);
    let with_flash = format!("{bob}; {flash}");
    for other in ["/ui/inbox", "/ui/static/app.css"] {
        let response = no_redirects()
            .get(format!("{}{other}", s.url))
            .header("Cookie", &with_flash)
            .send()
            .unwrap();
        let cleared = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.starts_with("jitgate_flash="));
        assert!(
            !cleared,
            "{other} cleared the confirmation meant for the request's page"
        );
        assert!(!response.text().unwrap().contains("class=\"flash\""), "{other}");
    }
    let (_, html) = page(&s, &with_flash, &format!("/ui/requests/{id}"));
    assert!(
        html.contains("<p class=\"flash\" role=\"status\">Approved.</p>"),
        "{html}"
    );
}
