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
    // Signed out, an error page has no navigation to offer.
    let (status, html) = page(&s, "", "/ui/no-such-page");
    assert_eq!(status, 404, "{html}");
    assert!(!html.contains("<nav aria-label=\"Main\">"), "{html}");
}
