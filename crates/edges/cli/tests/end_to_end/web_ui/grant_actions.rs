//! Grant actions in the web UI (#27 part A), in Chromium against the real server: the holder
//! extends (within the allowance the page states), ends and asks again; a refused extension
//! is said beside its field and changes nothing; someone else's grant is revoked only from the
//! page that asks first; each kind of grant shows its next step. Hostile ids and durations
//! come back as pages, never as a 500 nor as a change.

use super::{browser, sign_in, DESKTOP, PHONE};
use crate::support::browser::clean_console;
use crate::support::*;
use serde_json::{json, Value};

/// A session cookie (and its CSRF cookie, `a` x 64) for `token`, and that CSRF value.
fn session(s: &Server, token: &str) -> (String, String) {
    (ui_session(s, token), "a".repeat(64))
}

/// POST a form to a UI path as the holder of `cookie`; the status, a header, and the page.
fn post_form(s: &Server, cookie: &str, path: &str, fields: &[(&str, &str)], htmx: bool) -> (u16, String, String) {
    let body = serde_urlencoded::to_string(fields).unwrap();
    let mut request = no_redirects()
        .post(format!("{}{path}", s.url))
        .header("Cookie", cookie)
        .header("Content-Type", "application/x-www-form-urlencoded");
    if htmx {
        request = request.header("HX-Request", "true");
    }
    let response = request.body(body).send().unwrap();
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .or_else(|| response.headers().get("hx-redirect"))
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, location, response.text().unwrap())
}

fn get_page(s: &Server, cookie: &str, path: &str) -> (u16, String) {
    let response = no_redirects()
        .get(format!("{}{path}", s.url))
        .header("Cookie", cookie)
        .send()
        .unwrap();
    (response.status().as_u16(), response.text().unwrap())
}

fn grant_of(s: &Server, token: &str, request_id: &str) -> Value {
    let (status, r) = s.get(&format!("/v1/requests/{request_id}"), token);
    assert_eq!(status, 200, "{r}");
    r["grant"].clone()
}

fn expires_at(grant: &Value) -> chrono::DateTime<chrono::Utc> {
    grant["expires_at"].as_str().unwrap().parse().unwrap()
}

/// alice's automatic staging-db read for 1h: the request id and the grant id.
fn staging_grant(s: &Server) -> (String, String) {
    let r = s.file(
        "demo-alice",
        json!({"resource": "staging-db", "action": "read", "duration": "1h", "reason": "tests"}),
    );
    assert_eq!(r["grant"]["status"], "active", "{r}");
    (id(&r), r["grant"]["id"].as_str().unwrap().to_string())
}

/// alice's request of `resource` `action`, approved by bob: the request id and the grant id.
fn approved_grant(s: &Server, resource: &str, action: &str) -> (String, String) {
    let r = s.file(
        "demo-alice",
        json!({"resource": resource, "action": action, "duration": "30m", "reason": "INC-9: tests"}),
    );
    let request = id(&r);
    let (status, r) = s.post(&format!("/v1/requests/{request}/approve"), "demo-bob", json!({}));
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["grant"]["status"], "active", "{r}");
    (request, r["grant"]["id"].as_str().unwrap().to_string())
}

#[test]
fn alice_extends_and_ends_a_grant_from_the_ui_and_requests_again_with_one_click() {
    let s = Server::start();
    let (request, grant) = staging_grant(&s);
    let before = expires_at(&grant_of(&s, "demo-alice", &request));
    let alice = browser(DESKTOP);
    sign_in(&alice, &s, "demo-alice");
    alice.goto(&format!("{}/ui/requests/{request}", s.url));

    // The grant's id, copyable, and what the workflow still allows.
    assert_eq!(alice.text("#grant-id"), grant);
    assert_eq!(
        alice.text(&format!("#extend-allowance-{grant}")),
        "2 extensions left; at most 8h may remain."
    );
    // No next step for a plain database read without a login provider.
    assert!(!alice.exists(".ssh-command") && !alice.exists(".database-login"));
    alice.screenshot("grant-actions-01-active");

    // Extend by 30m: the window moves in the API, and the allowance goes down.
    alice.type_into(&format!("#extend-duration-{grant}"), "30m");
    alice.click(&format!("#extend-button-{grant}"));
    alice.wait_for_text(".flash", "Grant extended.");
    alice.wait_for_text(
        &format!("#extend-allowance-{grant}"),
        "1 extension left; at most 8h may remain.",
    );
    let extended = grant_of(&s, "demo-alice", &request);
    assert_eq!(extended["extensions"], 1, "{extended}");
    assert_eq!(
        expires_at(&extended) - before,
        chrono::TimeDelta::minutes(30),
        "{extended}"
    );
    assert!(
        alice.url().ends_with(&format!("/ui/requests/{request}")),
        "{}",
        alice.url()
    );
    alice.screenshot("grant-actions-02-extended");

    // End now: the grant is done, and checks deny at once.
    assert_eq!(s.check("alice", "staging-db", "read", None)["allow"], true);
    alice.click("#end-now");
    alice.wait_for_text(".flash", "Grant ended");
    let ended = grant_of(&s, "demo-alice", &request);
    assert_eq!(ended["status"], "done", "{ended}");
    assert_eq!(ended["ended_by"], "alice", "{ended}");
    assert_eq!(s.check("alice", "staging-db", "read", None)["allow"], false);
    assert!(!alice.exists("#end-now") && !alice.exists(&format!("#extend-{grant}")));

    // Request again, from the ended grant's page: one click to the form, pre-filled from this
    // request (part C fills it in from `again`).
    alice.click("#request-again");
    alice.find("main");
    assert!(
        alice.url().ends_with(&format!("/ui/new?again={request}")),
        "{}",
        alice.url()
    );
    // The form is pre-filled from that request: its target chosen, its duration and reason
    // kept (part C fills it in from `again`).
    let form = alice.execute(
        "return [[...document.querySelector('#target').selectedOptions].map(o => o.value), \
                 document.querySelector('#duration').value, document.querySelector('#reason').value]",
        vec![],
    );
    assert_eq!(form, json!([["staging-db|read"], "1h", "tests"]), "{}", alice.source());
    alice.screenshot("grant-actions-07-request-again-pre-filled");
    // One click on Send files the same again.
    alice.click("#file");
    alice.wait_for_text("#state .badge", "approved");
    let again = alice.url().rsplit('/').next().unwrap().to_string();
    assert_ne!(again, request);
    let (_, r) = s.get(&format!("/v1/requests/{again}"), "demo-alice");
    assert_eq!(
        (
            r["resource"].as_str(),
            r["action"].as_str(),
            r["reason"].as_str(),
            r["duration"].as_str()
        ),
        (Some("staging-db"), Some("read"), Some("tests"), Some("1h")),
        "{r}"
    );
    assert_eq!(r["grant"]["status"], "active", "{r}");
    clean_console(&alice);
}

#[test]
fn an_extension_over_the_allowance_is_refused_beside_the_field_and_changes_nothing() {
    let s = Server::start();
    let (request, grant) = staging_grant(&s);
    let before = grant_of(&s, "demo-alice", &request);
    let alice = browser(DESKTOP);
    sign_in(&alice, &s, "demo-alice");

    // On the request page: the refusal sits under the duration, in words, what was typed kept.
    alice.goto(&format!("{}/ui/requests/{request}", s.url));
    let field = format!("#extend-duration-{grant}");
    // 1h granted, at most 8h may remain: 10h more is over the allowance.
    alice.type_into(&field, "10h");
    alice.click(&format!("#extend-button-{grant}"));
    let error = format!("#extend-duration-error-{grant}");
    alice.wait_for_text(&error, "or less");
    let message = alice.text(&error);
    assert!(message.starts_with("Extending by 10h would leave"), "{message}");
    assert!(message.contains("more than the 8h allowed"), "{message}");
    assert!(!message.starts_with("duration:"), "{message}");
    let source = alice.source();
    assert!(source.contains("aria-invalid=\"true\""), "{source}");
    assert!(
        source.contains(&format!("aria-describedby=\"extend-duration-error-{grant} ")),
        "{source}"
    );
    assert!(source.contains("value=\"10h\""), "{source}");
    assert!(
        alice.url().ends_with(&format!("/ui/requests/{request}")),
        "{}",
        alice.url()
    );
    alice.screenshot("grant-actions-03-refused-beside-the-field");
    assert_eq!(grant_of(&s, "demo-alice", &request), before);

    // On the grants page: the same, and the refusal outlives the rows' refresh (every 5 s).
    alice.goto(&format!("{}/ui/grants", s.url));
    alice.click(&format!("#extend-box-{grant} summary"));
    alice.type_into(&field, "-5m");
    alice.click(&format!("#extend-button-{grant}"));
    alice.wait_for_text(&error, "unknown unit");
    std::thread::sleep(std::time::Duration::from_millis(5600));
    assert!(alice.text(&error).contains("unknown unit"), "{}", alice.source());
    assert!(alice.url().ends_with("/ui/grants"), "{}", alice.url());
    alice.screenshot("grant-actions-06-grants-page-refused");
    assert_eq!(grant_of(&s, "demo-alice", &request), before);
    clean_console(&alice);
}

#[test]
fn hostile_durations_and_reasons_come_back_beside_their_field_and_change_nothing() {
    let s = Server::start();
    let (request, grant) = staging_grant(&s);
    let before = grant_of(&s, "demo-alice", &request);
    let (cookie, csrf) = session(&s, "demo-alice");
    let path = format!("/ui/grants/{grant}/extend");
    let back = format!("/ui/requests/{request}");
    let ten_kb = "9".repeat(10 * 1024);
    for (duration, says) in [
        ("1h\u{0}", "unknown unit"),
        ("-5m", "unknown unit"),
        ("10h", "or less"),
        ("99999h", "longer than jitgate accepts"),
        ("1h\u{202e}m", "unknown unit"),
        ("1h\u{200b}", "unknown unit"),
        ("\u{ff11}h", "unknown unit"),
        (ten_kb.as_str(), "characters long"),
        ("", "how much longer"),
        (" \t", "how much longer"),
    ] {
        for htmx in [false, true] {
            let (status, _, html) = post_form(
                &s,
                &cookie,
                &path,
                &[("csrf", &csrf), ("back", &back), ("duration", duration), ("reason", "")],
                htmx,
            );
            // Without JavaScript a page that says why (422); with htmx the form to swap in.
            assert_eq!(status, if htmx { 200 } else { 422 }, "{duration:?}: {html}");
            let error = error_beside(&html, &format!("extend-duration-error-{grant}"))
                .unwrap_or_else(|| panic!("{duration:?}: no error beside the duration: {html}"));
            assert!(error.contains(says), "{duration:?}: {error}");
            assert!(html.contains("aria-invalid=\"true\""), "{duration:?}");
            assert!(
                !html.contains('\u{0}') && !html.contains('\u{202e}') && !html.contains('\u{200b}'),
                "{duration:?}: raw control characters read back"
            );
            assert!(html.len() < 8 * 1024, "{duration:?}: {} bytes read back", html.len());
            assert_eq!(
                htmx,
                !html.contains("<nav"),
                "{duration:?}: the fragment is the form alone"
            );
        }
    }
    assert_eq!(grant_of(&s, "demo-alice", &request), before);

    // What is allowed goes through, with or without JavaScript: back where the form was.
    let (status, location, _) = post_form(
        &s,
        &cookie,
        &path,
        &[("csrf", &csrf), ("back", &back), ("duration", "15m")],
        false,
    );
    assert_eq!((status, location.as_str()), (303, back.as_str()));
    let (status, location, _) = post_form(
        &s,
        &cookie,
        &path,
        &[("csrf", &csrf), ("back", "https://evil.example/"), ("duration", "15m")],
        true,
    );
    assert_eq!(
        (status, location.as_str()),
        (200, "/ui/grants"),
        "never to another site"
    );
    let after = grant_of(&s, "demo-alice", &request);
    assert_eq!(after["extensions"], 2, "{after}");
    assert_eq!(expires_at(&after) - expires_at(&before), chrono::TimeDelta::minutes(30));
    // The allowance spent, the page says so instead of offering the form.
    let (_, html) = get_page(&s, &cookie, &back);
    assert!(!html.contains(&format!("id=\"extend-{grant}\"")), "{html}");
    assert!(html.contains("Extended 2 times already"), "{html}");

    // A workflow that wants a reason: an empty or hostile one is refused beside the reason.
    let (request, grant) = approved_grant(&s, "prod-db", "read");
    let before = grant_of(&s, "demo-alice", &request);
    let (status, html) = get_page(&s, &cookie, &format!("/ui/requests/{request}"));
    assert_eq!(status, 200);
    assert!(html.contains(&format!("id=\"extend-reason-{grant}\"")), "{html}");
    assert!(html.contains("1 extension left; at most 1h may remain."), "{html}");
    let big = "x".repeat(100 * 1024);
    for reason in ["", "  \u{200b} ", "INC-1\u{0}", "INC-1 \u{202e}", big.as_str()] {
        // With htmx the form to swap in; without JavaScript a page that says why, the refusal
        // beside the reason all the same (an over-long one is the service's `TooLong`).
        for htmx in [false, true] {
            let (status, _, html) = post_form(
                &s,
                &cookie,
                &format!("/ui/grants/{grant}/extend"),
                &[
                    ("csrf", &csrf),
                    ("back", "/ui/grants"),
                    ("duration", "5m"),
                    ("reason", reason),
                ],
                htmx,
            );
            assert_eq!(status, if htmx { 200 } else { 422 }, "{reason:?}: {html}");
            let error = error_beside(&html, &format!("extend-reason-error-{grant}"))
                .unwrap_or_else(|| panic!("{reason:?}: no error beside the reason: {html}"));
            assert!(!error.starts_with("reason:"), "{reason:?}: {error}");
            if reason.len() > 2000 {
                assert!(error.starts_with("The reason is 102400 bytes"), "{error}");
            }
            assert!(!html.contains('\u{0}') && !html.contains('\u{202e}'), "{reason:?}");
            assert!(html.len() < 8 * 1024, "{reason:?}: {} bytes read back", html.len());
        }
    }
    assert_eq!(grant_of(&s, "demo-alice", &request), before);
}

#[test]
fn revoking_someone_elses_grant_asks_first_and_only_the_confirmation_revokes() {
    let s = Server::start();
    let (request, grant) = approved_grant(&s, "prod-db", "read");
    let bob = browser(DESKTOP);
    sign_in(&bob, &s, "demo-bob");
    bob.goto(&format!("{}/ui/requests/{request}", s.url));
    // bob holds nothing here: no extend, no end, no next step; revoking is a way to a question.
    assert!(!bob.exists(&format!("#extend-{grant}")) && !bob.exists("#end-now") && !bob.exists("#request-again"));
    bob.click("#revoke");
    bob.wait_for_text("h1", "Revoke alice's read on prod-db?");
    assert!(
        bob.text("main").contains("It ends their access now"),
        "{}",
        bob.text("main")
    );
    bob.screenshot("grant-actions-04-revoke-asks");

    // "Keep it": back to the request, the grant untouched.
    bob.click("#keep");
    bob.wait_for_text("#state .badge", "approved");
    assert_eq!(grant_of(&s, "demo-bob", &request)["status"], "active");
    assert_eq!(s.check("alice", "prod-db", "read", None)["allow"], true);

    // A post without the confirmation (a stale one-click form, a forged one) revokes nothing:
    // it is sent to the question.
    let (cookie, csrf) = session(&s, "demo-bob");
    for fields in [
        vec![("csrf", csrf.as_str()), ("back", "/ui/grants")],
        vec![("csrf", csrf.as_str()), ("back", "/ui/grants"), ("confirmed", "no")],
        vec![
            ("csrf", csrf.as_str()),
            ("back", "/ui/grants"),
            ("confirmed", "yes\u{0}"),
        ],
        vec![("csrf", csrf.as_str()), ("back", "/ui/grants"), ("confirmed", "YES")],
    ] {
        let (status, location, _) = post_form(&s, &cookie, &format!("/ui/grants/{grant}/revoke"), &fields, false);
        assert_eq!(status, 303, "{fields:?}");
        assert_eq!(
            location,
            format!("/ui/grants/{grant}/revoke?back=%2Fui%2Fgrants"),
            "{fields:?}"
        );
        assert_eq!(grant_of(&s, "demo-bob", &request)["status"], "active", "{fields:?}");
    }
    // Another site's page as `back` is not followed.
    let (status, html) = get_page(
        &s,
        &cookie,
        &format!("/ui/grants/{grant}/revoke?back=https://evil.example/"),
    );
    assert_eq!(status, 200);
    assert!(!html.contains("evil.example"), "{html}");

    // The confirmation revokes, with the comment kept.
    bob.goto(&format!("{}/ui/requests/{request}", s.url));
    bob.click("#revoke");
    bob.type_into("#revoke-comment", "INC-9 is over");
    bob.click("#confirm-revoke");
    bob.wait_for_text(".flash", "Grant revoked");
    let revoked = grant_of(&s, "demo-bob", &request);
    assert_eq!(revoked["status"], "revoked", "{revoked}");
    assert_eq!(revoked["ended_by"], "bob", "{revoked}");
    assert_eq!(s.check("alice", "prod-db", "read", None)["allow"], false);
    // Asking again about a revoked grant says so in words.
    let (status, html) = get_page(&s, &cookie, &format!("/ui/grants/{grant}/revoke"));
    assert_eq!(status, 409, "{html}");
    assert!(html.contains("nothing left to revoke"), "{html}");
    clean_console(&bob);

    // dave (dev) may not revoke alice's grant: he cannot even see it.
    let (_, other) = approved_grant(&s, "prod-db", "read");
    let (dave, dave_csrf) = session(&s, "demo-dave");
    let (status, html) = get_page(&s, &dave, &format!("/ui/grants/{other}/revoke"));
    assert!(status == 403 || status == 404, "{status}: {html}");
    let (status, _, _) = post_form(
        &s,
        &dave,
        &format!("/ui/grants/{other}/revoke"),
        &[("csrf", &dave_csrf), ("confirmed", "yes")],
        false,
    );
    assert!(status == 403 || status == 404, "{status}");
    assert_eq!(s.check("alice", "prod-db", "read", None)["allow"], true);
}

#[test]
fn each_kind_of_grant_shows_its_next_step_to_its_holder() {
    let s = Server::start();
    let (request, grant) = approved_grant(&s, "bastion", "login");
    let alice = browser(DESKTOP);
    sign_in(&alice, &s, "demo-alice");
    alice.goto(&format!("{}/ui/requests/{request}", s.url));
    let command = format!("jitgate ssh {grant} --key ~/.ssh/id_ed25519.pub > ~/.ssh/id_ed25519-cert.pub");
    assert_eq!(alice.text("code.ssh-command"), command);
    // bastion login cannot be extended: the page says what to do instead.
    assert!(
        alice.text("#no-extension").contains("request again"),
        "{}",
        alice.text("#no-extension")
    );
    alice.screenshot("grant-actions-05-ssh-next-step");
    // On the grants page, behind "Next step".
    alice.goto(&format!("{}/ui/grants", s.url));
    alice.click(&format!("#next-{grant} summary"));
    assert_eq!(alice.text(&format!("#next-{grant} code.ssh-command")), command);
    clean_console(&alice);
    // On a phone, the grant's actions are there without scrolling sideways.
    let phone = browser(PHONE);
    sign_in(&phone, &s, "demo-alice");
    phone.goto(&format!("{}/ui/requests/{request}", s.url));
    phone.find("#end-now");
    phone.screenshot("grant-actions-08-phone-request");
    phone.goto(&format!("{}/ui/grants", s.url));
    phone.click(&format!("#next-{grant} summary"));
    phone.screenshot("grant-actions-09-phone-grants");
    clean_console(&phone);

    // Only the holder is shown how to use it.
    let (bob, _) = session(&s, "demo-bob");
    let (status, html) = get_page(&s, &bob, &format!("/ui/requests/{request}"));
    assert_eq!(status, 200);
    assert!(!html.contains("jitgate ssh"), "{html}");

    // A grant whose workflow makes no database login: no button, and the route says why.
    let (_, staging) = staging_grant(&s);
    let (cookie, csrf) = session(&s, "demo-alice");
    let (_, html) = get_page(&s, &cookie, "/ui/grants");
    assert!(!html.contains("Get database login"), "{html}");
    let (status, _, html) = post_form(
        &s,
        &cookie,
        &format!("/ui/grants/{staging}/credentials"),
        &[("csrf", &csrf)],
        false,
    );
    assert_eq!(status, 409, "{html}");
    assert!(html.contains("grants no database login"), "{html}");
    assert!(html.contains("<nav"), "the error page keeps the navigation: {html}");
}

#[test]
fn grant_ids_with_control_nul_bidi_or_look_alike_characters_are_not_found() {
    let s = Server::start();
    let (_, grant) = staging_grant(&s);
    let (cookie, csrf) = session(&s, "demo-alice");
    let cyrillic_a = grant.replacen('a', "\u{0430}", 1).replacen("grt", "grt\u{0430}", 1);
    for bad in [
        format!("{grant}%00"),
        format!("{grant}%E2%80%AE"),
        format!("{grant}%0A"),
        format!("{grant}%1B%5B31m"),
        format!("{grant}%E2%80%8B"),
        serde_urlencoded::to_string([("", cyrillic_a.as_str())]).unwrap()[1..].to_string(),
        "x".repeat(5000),
    ] {
        let (status, html) = get_page(&s, &cookie, &format!("/ui/grants/{bad}/revoke"));
        assert_eq!(status, 404, "GET {bad:.40}: {html:.300}");
        assert!(html.contains("<html"), "GET {bad:.40}: a page: {html:.300}");
        for action in ["revoke", "extend", "done", "credentials"] {
            let (status, _, html) = post_form(
                &s,
                &cookie,
                &format!("/ui/grants/{bad}/{action}"),
                &[("csrf", &csrf), ("duration", "5m"), ("confirmed", "yes")],
                false,
            );
            assert_eq!(status, 404, "POST {action} {bad:.40}: {html:.300}");
            assert!(html.contains("<html"), "POST {action} {bad:.40}: a page");
        }
    }
    // Bytes that are not UTF-8 cannot be an id at all: a page saying the address is bad.
    let (status, html) = get_page(&s, &cookie, "/ui/grants/%C0%80/revoke");
    assert_eq!(status, 400, "{html:.300}");
    assert!(html.contains("<nav"), "{html:.300}");
    // The real grant is untouched.
    assert_eq!(s.check("alice", "staging-db", "read", None)["allow"], true);
}

/// A PostgreSQL grant: the holder gets the login made for it from the page, once; it works
/// against the real database; asking again is the API's refusal, as a page.
#[test]
fn the_holder_gets_the_database_login_once_from_the_page() {
    use crate::support::postgres::Postgres;
    const ADMIN_PASSWORD: &str = "jitgate-admin-password";
    let pg = Postgres::start();
    pg.admin("postgres", "CREATE DATABASE app");
    pg.admin(
        "app",
        &format!(
            "CREATE ROLE jitgate_admin LOGIN CREATEROLE PASSWORD '{ADMIN_PASSWORD}';
             CREATE ROLE app_read NOLOGIN;
             GRANT app_read TO jitgate_admin WITH ADMIN OPTION;
             CREATE TABLE orders (id int PRIMARY KEY, total int);
             INSERT INTO orders VALUES (1, 42);
             GRANT SELECT ON orders TO app_read;"
        ),
    );
    let policy = quickstart_with_workflows(
        r#"
[[workflow]]
resource = "app-db"
action = "read"
requesters = ["dev"]
auto_approve = true
max_duration = "1h"
providers = ["app-pg"]
postgres = { roles = ["app_read"] }
"#,
    );
    let config = format!(
        "[[providers]]\nname = \"app-pg\"\nkind = \"postgres\"\nurl = \"{}\"\ntimeout = \"3s\"\n",
        pg.url("jitgate_admin", ADMIN_PASSWORD, "app")
    );
    let s = Server::start_with(policy.path(), Some(&config));
    let r = s.file(
        "demo-alice",
        json!({"resource": "app-db", "action": "read", "duration": "30m", "reason": "monthly report"}),
    );
    let (request, grant) = (id(&r), r["grant"]["id"].as_str().unwrap().to_string());
    wait_until("the login role is made", || {
        grant_of(&s, "demo-alice", &request)["providers"][0]["status"] == "provisioned"
    });

    // bob (who may read the request) is offered no login: it is alice's.
    let (bob, _) = session(&s, "demo-bob");
    let (_, html) = get_page(&s, &bob, &format!("/ui/requests/{request}"));
    assert!(!html.contains("Get database login"), "{html}");
    // Nor handed one by posting the form: bob (an automatic workflow has no reviewers, so he
    // does not even see the request: 404) and an admin (who sees it: 403) are refused, and the
    // login stays unclaimed for alice.
    for (token, refused) in [("demo-bob", 404), ("demo-admin", 403)] {
        let (cookie, csrf) = session(&s, token);
        let (status, _, html) = post_form(
            &s,
            &cookie,
            &format!("/ui/grants/{grant}/credentials"),
            &[("csrf", &csrf)],
            false,
        );
        assert_eq!(status, refused, "{token}: {html}");
        assert!(!html.contains("Your database login"), "{token}: {html}");
    }

    let alice = browser(DESKTOP);
    sign_in(&alice, &s, "demo-alice");
    alice.goto(&format!("{}/ui/requests/{request}", s.url));
    alice.click(&format!("#database-login-{grant}"));
    alice.wait_for_text("h1", "Your database login");
    let (user, password, url) = (
        alice.text("#login-user-1"),
        alice.text("#login-password-1"),
        alice.text("#login-url-1"),
    );
    assert!(!user.is_empty() && !password.is_empty(), "{}", alice.source());
    assert!(url.starts_with("postgres"), "{url}");
    assert!(url.contains(&user), "{url}");
    alice.screenshot("grant-actions-07-database-login");
    // It is a working login on the real database, with the workflow's role.
    let (code, out, err) = Postgres::psql_at(&url, "SELECT total FROM orders WHERE id = 1");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "42");

    clean_console(&alice);

    // Shown once: the second time is the API's refusal, in its words, on a page (its 409 is
    // all the console reports).
    alice.goto(&format!("{}/ui/requests/{request}", s.url));
    alice.click(&format!("#database-login-{grant}"));
    alice.wait_for_text("main", "handed out already");
    assert!(!alice.source().contains(&password), "the password is never shown again");
}

/// An http resource of the catalog with a link: its grant's holder is offered the app.
#[test]
fn an_http_grant_links_its_holder_to_the_app() {
    let policy = quickstart_with_workflows(
        r#"
[[workflow]]
resource = "grafana"
action = "read"
requesters = ["dev"]
auto_approve = true
max_duration = "1h"
"#,
    );
    let path = policy.path().join("resources.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(
        r#"
[[resource]]
name = "grafana"
kind = "http"
description = "Dashboards"
http = { hosts = ["grafana.example.test"], path_prefix = "/", url = "https://grafana.example.test/d/home" }
"#,
    );
    std::fs::write(&path, text).unwrap();
    let s = Server::start_with_policy(policy.path());
    let r = s.file(
        "demo-alice",
        json!({"resource": "grafana", "action": "read", "duration": "30m", "reason": "dashboards"}),
    );
    let request = id(&r);
    let link = "<a class=\"button primary app-link\" href=\"https://grafana.example.test/d/home\" rel=\"noopener noreferrer\">Open grafana</a>";
    let (alice, _) = session(&s, "demo-alice");
    let (status, html) = get_page(&s, &alice, &format!("/ui/requests/{request}"));
    assert_eq!(status, 200);
    assert!(html.contains(link), "{html}");
    let (_, html) = get_page(&s, &alice, "/ui/grants");
    assert!(html.contains(link), "{html}");
    // Not for others, and not once the grant has ended.
    let (admin, _) = session(&s, "demo-admin");
    let (_, html) = get_page(&s, &admin, &format!("/ui/requests/{request}"));
    assert!(!html.contains("app-link"), "{html}");
    let (status, _) = s.post(
        &format!("/v1/grants/{}/done", r["grant"]["id"].as_str().unwrap()),
        "demo-alice",
        json!({}),
    );
    assert_eq!(status, 200);
    let (_, html) = get_page(&s, &alice, &format!("/ui/requests/{request}"));
    assert!(!html.contains("app-link"), "{html}");
}

/// `jitgate_limits_exceeded_total{outcome="rate"}` as the server counts it now.
fn rate_refusals(s: &Server) -> u64 {
    s.http
        .get(format!("{}/metrics", s.url))
        .send()
        .unwrap()
        .text()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("jitgate_limits_exceeded_total{outcome=\"rate\"} "))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// alice clicking Extend again and again spends her own limit on writes, not anyone else's:
/// past it the form says when to try again, beside the field, and bob still acts at once.
#[test]
fn one_holder_hammering_extend_spends_only_her_own_limit() {
    let s = Server::start_with(
        &quickstart(),
        Some("[limits]\nrequests_per_minute = 0\nwrites_per_minute = 1\nwrites_burst = 5\nmax_pending_per_requester = 0\n"),
    );
    let (request, grant) = staging_grant(&s);
    let before = grant_of(&s, "demo-alice", &request);
    let (alice, csrf) = session(&s, "demo-alice");
    let mut limited = 0;
    for _ in 0..20 {
        let (status, _, html) = post_form(
            &s,
            &alice,
            &format!("/ui/grants/{grant}/extend"),
            &[("csrf", &csrf), ("back", "/ui/grants"), ("duration", "10h")],
            true,
        );
        assert_eq!(status, 200, "{html}");
        assert!(
            html.contains(&format!("id=\"extend-duration-error-{grant}\"")),
            "{html}"
        );
        if html.contains("try again in") {
            limited += 1;
        } else {
            assert!(html.contains("or less"), "{html}");
        }
    }
    assert!(limited >= 14, "{limited} of 20 refused by the limit");
    assert_eq!(grant_of(&s, "demo-alice", &request), before);
    // Each refusal shown beside the field is counted as the API counts it.
    assert!(
        rate_refusals(&s) >= limited,
        "{} rate refusals counted for {limited} shown",
        rate_refusals(&s)
    );
    // Without JavaScript the same limit is a page that says when to come back.
    let (status, _, html) = post_form(
        &s,
        &alice,
        &format!("/ui/grants/{grant}/extend"),
        &[("csrf", &csrf), ("back", "/ui/grants"), ("duration", "10m")],
        false,
    );
    assert_eq!(status, 429, "{html}");
    assert!(html.contains("try again in"), "{html}");
    // bob's writes are his own: he approves and revokes as ever.
    let (other_request, other_grant) = approved_grant(&s, "prod-db", "read");
    let (bob, bob_csrf) = session(&s, "demo-bob");
    let (status, location, html) = post_form(
        &s,
        &bob,
        &format!("/ui/grants/{other_grant}/revoke"),
        &[("csrf", &bob_csrf), ("back", "/ui/grants"), ("confirmed", "yes")],
        false,
    );
    assert_eq!((status, location.as_str()), (303, "/ui/grants"), "{html}");
    assert_eq!(grant_of(&s, "demo-bob", &other_request)["status"], "revoked");
}

/// "Request again" is on the requester's page whatever became of the request (here denied, so
/// no grant at all), and only on theirs.
#[test]
fn request_again_is_offered_to_the_requester_whatever_the_status() {
    let s = Server::start();
    let r = s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "read", "duration": "30m", "reason": "INC-3: slow"}),
    );
    let request = id(&r);
    let (status, v) = s.post(
        &format!("/v1/requests/{request}/deny"),
        "demo-bob",
        json!({"comment": "not now"}),
    );
    assert_eq!(status, 200, "{v}");
    let again = format!("<a class=\"button\" id=\"request-again\" href=\"/ui/new?again={request}\">Request again</a>");
    let (alice, _) = session(&s, "demo-alice");
    let (status, html) = get_page(&s, &alice, &format!("/ui/requests/{request}"));
    assert_eq!(status, 200);
    assert!(html.contains(&again), "{html}");
    assert!(!html.contains("grant-panel"), "no grant, no grant actions: {html}");
    let (bob, _) = session(&s, "demo-bob");
    let (_, html) = get_page(&s, &bob, &format!("/ui/requests/{request}"));
    assert!(!html.contains("request-again"), "{html}");
}

/// Every place a grant's window is shown reads it as two `<time datetime>`s: `time.js` shows
/// each in the reader's zone, the server's UTC text kept in its title (shown on hover).
#[test]
fn a_grants_window_reads_in_the_readers_zone_with_utc_on_hover_wherever_it_is_shown() {
    use crate::support::browser::Browser;
    let s = Server::start();
    let (request, grant) = approved_grant(&s, "prod-db", "read");
    let g = grant_of(&s, "demo-alice", &request);
    let utc = |field: &str| {
        let t: chrono::DateTime<chrono::Utc> = g[field].as_str().unwrap().parse().unwrap();
        t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
    };
    let (starts, ends) = (utc("starts_at"), utc("expires_at"));
    // The two ends of the window under `css`, as the page shows them after time.js ran:
    // each local (India is +05:30, no summer time), its UTC text on hover.
    let window = |b: &Browser, css: &str, expected: &[&str]| {
        b.find(&format!("{css} time[data-local]"));
        let titles = b.execute(
            "return [...document.querySelectorAll(arguments[0])].map(t => \
                 [t.getAttribute('datetime') !== null, t.title, t.textContent])",
            vec![json!(format!("{css} time"))],
        );
        let titles = titles.as_array().unwrap();
        assert_eq!(titles.len(), expected.len(), "{css}: {titles:?}");
        for (shown, utc) in titles.iter().zip(expected) {
            assert_eq!(shown[0], true, "{css}: {shown}");
            assert_eq!(shown[1], *utc, "{css}: the UTC text on hover");
            let text = shown[2].as_str().unwrap();
            assert!(
                !text.contains("UTC") && (text.contains("GMT+5:30") || text.contains("IST")),
                "{css}: {text}"
            );
        }
    };
    let alice = Browser::start_in_zone(DESKTOP.0, DESKTOP.1, "Asia/Kolkata");
    sign_in(&alice, &s, "demo-alice");
    alice.goto(&format!("{}/ui/requests/{request}", s.url));
    // The request's grant line (#grant-until kept for the tests that read it) and the panel.
    window(&alice, "dl.facts dd:has(#grant-id)", &[&starts, &ends]);
    assert_eq!(alice.attribute("#grant-until", "title").as_deref(), Some(ends.as_str()));
    window(&alice, "#grant-window", &[&starts, &ends]);
    // The grants page, and its rows after a refresh (every 5 s) brings them anew.
    alice.goto(&format!("{}/ui/grants", s.url));
    window(&alice, "#grant-rows td.window", &[&starts, &ends]);
    alice.execute(
        "document.querySelector('#grant-rows td.window time').removeAttribute('data-local')",
        vec![],
    );
    // The refresh fires every 5 s; a browser on a loaded machine may run its timer and its
    // fetch late, so wait for the fresh rows (up to 15 s) rather than for a fixed time.
    wait_until_within(
        "the rows came anew and were read in the reader's zone",
        std::time::Duration::from_secs(15),
        || {
            alice.execute(
                "const t = document.querySelector('#grant-rows td.window time');
                 return t !== null && t.hasAttribute('data-local')",
                vec![],
            ) == true
        },
    );
    window(&alice, "#grant-rows td.window", &[&starts, &ends]);
    // The page that asks before revoking someone else's grant says until when.
    let bob = Browser::start_in_zone(PHONE.0, PHONE.1, "Asia/Kolkata");
    sign_in(&bob, &s, "demo-bob");
    bob.goto(&format!("{}/ui/grants/{grant}/revoke", s.url));
    window(&bob, ".revoke-confirm", &[&ends]);
    clean_console(&alice);
    clean_console(&bob);
}

/// alice's request of {staging-db read, prod-db read}, approved by bob: the request id and
/// each item's grant id.
fn two_item_grants(s: &Server) -> (String, Vec<String>) {
    let r = s.file(
        "demo-alice",
        json!({
            "items": [
                {"resource": "staging-db", "action": "read"},
                {"resource": "prod-db", "action": "read"},
            ],
            "duration": "30m",
            "reason": "OPS-7 compare staging with prod",
        }),
    );
    let request = id(&r);
    let (status, r) = s.post(&format!("/v1/requests/{request}/approve"), "demo-bob", json!({}));
    assert_eq!(status, 200, "{r}");
    let grants: Vec<String> = r["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            assert_eq!(i["grant"]["status"], "active", "{r}");
            i["grant"]["id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(grants.len(), 2, "{r}");
    (request, grants)
}

/// Revoke, End now and Extend act on every grant of a request: the pages name every item, and
/// the allowance shown is the one enforced (the strictest item's: prod-db read allows one
/// extension, at most 1h, with a reason), not the first item's (staging-db: two, 8h).
#[test]
fn a_request_of_several_items_names_every_item_and_shows_the_allowance_enforced() {
    let s = Server::start();
    let (request, grants) = two_item_grants(&s);
    let (alice, csrf) = session(&s, "demo-alice");
    let (status, html) = get_page(&s, &alice, &format!("/ui/requests/{request}"));
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("1 extension left; at most 1h may remain."), "{html}");
    assert!(!html.contains("2 extensions left"), "{html}");
    assert!(
        html.contains(&format!("id=\"extend-reason-{}\"", grants[0])),
        "prod-db read wants a reason: {html}"
    );
    assert!(html.contains("One request with prod-db read"), "{html}");
    assert!(html.contains("End now: staging-db read and prod-db read"), "{html}");
    // The grants page's rows say the same of each.
    let (_, html) = get_page(&s, &alice, "/ui/grants");
    assert!(html.contains("End now: staging-db read and prod-db read"), "{html}");
    assert!(html.contains("With prod-db read: one request"), "{html}");
    assert!(html.contains("With staging-db read: one request"), "{html}");
    // What the page offers is what the service allows: the one extension, then none.
    let (status, location, html) = post_form(
        &s,
        &alice,
        &format!("/ui/grants/{}/extend", grants[0]),
        &[
            ("csrf", &csrf),
            ("back", "/ui/grants"),
            ("duration", "10m"),
            ("reason", "INC-9 longer"),
        ],
        false,
    );
    assert_eq!((status, location.as_str()), (303, "/ui/grants"), "{html}");
    let (_, html) = get_page(&s, &alice, &format!("/ui/requests/{request}"));
    assert!(!html.contains("extension left"), "{html}");
    assert!(html.contains("id=\"no-extension\""), "{html}");
    // bob, asked before alice's access ends, is told all of it ends.
    let (bob, bob_csrf) = session(&s, "demo-bob");
    let (status, html) = get_page(
        &s,
        &bob,
        &format!("/ui/grants/{}/revoke?back=/ui/requests/{request}", grants[0]),
    );
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("Revoke alice&#39;s access to staging-db read and prod-db read?"),
        "{html}"
    );
    let (status, _, html) = post_form(
        &s,
        &bob,
        &format!("/ui/grants/{}/revoke", grants[0]),
        &[("csrf", &bob_csrf), ("back", "/ui/grants"), ("confirmed", "yes")],
        false,
    );
    assert_eq!(status, 303, "{html}");
    let (_, r) = s.get(&format!("/v1/requests/{request}"), "demo-alice");
    for item in r["items"].as_array().unwrap() {
        assert_eq!(item["grant"]["status"], "revoked", "{r}");
    }
}

/// A grant's forms lead back only to the grants page or the grant's own request: a `back`
/// written into the address (another request's page) cannot make "Grant revoked" show on a
/// page that has nothing to do with it.
#[test]
fn a_grants_forms_lead_back_only_to_its_own_pages() {
    let s = Server::start();
    let (request, grant) = approved_grant(&s, "prod-db", "read");
    let unrelated = id(&s.file(
        "demo-dave",
        json!({"resource": "staging-db", "action": "read", "duration": "1h", "reason": "tests"}),
    ));
    let (bob, csrf) = session(&s, "demo-bob");
    let elsewhere = format!("/ui/requests/{unrelated}");
    let (status, html) = get_page(
        &s,
        &bob,
        &format!("/ui/grants/{grant}/revoke?back={}", urlencoding(&elsewhere)),
    );
    assert_eq!(status, 200, "{html}");
    assert!(!html.contains(&elsewhere), "{html}");
    assert!(html.contains("value=\"/ui/grants\""), "{html}");
    // Its own request page is kept.
    let own = format!("/ui/requests/{request}");
    let (_, html) = get_page(
        &s,
        &bob,
        &format!("/ui/grants/{grant}/revoke?back={}", urlencoding(&own)),
    );
    assert!(html.contains(&format!("value=\"{own}\"")), "{html}");
    // The POST is held to the same: the banner lands on the grants page.
    let (status, location, html) = post_form(
        &s,
        &bob,
        &format!("/ui/grants/{grant}/revoke"),
        &[("csrf", &csrf), ("back", &elsewhere), ("confirmed", "yes")],
        false,
    );
    assert_eq!((status, location.as_str()), (303, "/ui/grants"), "{html}");
    assert_eq!(grant_of(&s, "demo-alice", &request)["status"], "revoked");
}

fn urlencoding(text: &str) -> String {
    serde_urlencoded::to_string([("v", text)]).unwrap()[2..].to_string()
}

/// Extend and End now are the holder's: bob (a reviewer, who sees alice's request) and an admin
/// posting the forms are refused with 403 and nothing changes.
#[test]
fn only_the_holder_extends_or_ends_a_grant_from_the_ui() {
    let s = Server::start();
    let (request, grant) = approved_grant(&s, "prod-db", "read");
    let before = grant_of(&s, "demo-alice", &request);
    for token in ["demo-bob", "demo-admin"] {
        let (cookie, csrf) = session(&s, token);
        let (status, html) = get_page(&s, &cookie, &format!("/ui/requests/{request}"));
        assert_eq!(status, 200, "{token}: {html}");
        for htmx in [false, true] {
            let (status, _, html) = post_form(
                &s,
                &cookie,
                &format!("/ui/grants/{grant}/extend"),
                &[
                    ("csrf", &csrf),
                    ("back", "/ui/grants"),
                    ("duration", "10m"),
                    ("reason", "INC-9 longer"),
                ],
                htmx,
            );
            assert_eq!(status, 403, "{token} htmx={htmx}: {html}");
        }
        for action in ["done", "credentials"] {
            let (status, _, html) = post_form(
                &s,
                &cookie,
                &format!("/ui/grants/{grant}/{action}"),
                &[("csrf", &csrf), ("back", "/ui/grants")],
                false,
            );
            assert_eq!(status, 403, "{token} {action}: {html}");
        }
    }
    assert_eq!(grant_of(&s, "demo-alice", &request), before);
}

/// The extend page's heading sits inside its card's padding, not against its top edge, and the
/// grants page's "Left" reads on one line ("59m 58s", never "59m" over "58s").
#[test]
fn the_extend_page_and_the_grants_left_column_are_laid_out_readably() {
    let s = Server::start();
    let (_, grant) = staging_grant(&s);
    for size in [DESKTOP, PHONE] {
        let alice = browser(size);
        sign_in(&alice, &s, "demo-alice");
        alice.goto(&format!("{}/ui/grants", s.url));
        alice.wait_for_text("#grant-rows", &grant);
        let lines = alice.execute(
            "return document.querySelector('#grant-rows tr td:nth-child(4) strong').getClientRects().length;",
            vec![],
        );
        assert_eq!(lines, json!(1), "the time left wraps at {size:?}");
        // The page a refused extension is without JavaScript: a plain form post.
        alice.execute(
            "const f = document.getElementById(arguments[0]);
             f.querySelector('input[name=duration]').value = '99999h';
             HTMLFormElement.prototype.submit.call(f);",
            vec![json!(format!("extend-{grant}"))],
        );
        alice.wait_for_text("h1", "Extend your read on staging-db");
        let gap = alice.execute(
            "const h = document.querySelector('main h1');
             return h.getBoundingClientRect().top - h.closest('section').getBoundingClientRect().top;",
            vec![],
        );
        assert!(
            gap.as_f64().unwrap() >= 16.0,
            "the heading is {gap}px from its card's top at {size:?}"
        );
    }
}

/// The text of the error paragraph `id` on the page (`<p class="error" id="ID">TEXT</p>`).
fn error_beside<'a>(html: &'a str, id: &str) -> Option<&'a str> {
    html.split(&format!("<p class=\"error\" id=\"{id}\">"))
        .nth(1)
        .and_then(|rest| rest.split("</p>").next())
}
