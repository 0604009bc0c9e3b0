//! The new-request form (#27 part C) in Chromium and over plain HTTP: nothing chosen until
//! the requester chooses; the chosen workflow described with only the fields it takes;
//! each refusal beside its field in plain words (`aria-invalid`, `aria-describedby`, the
//! focus on it, what was typed kept); `?again=` pre-filling a request of one's own and
//! nobody else's; whom to ask when nothing may be requested; and hostile input refused
//! beside its field with nothing filed.

use super::{browser, sign_in, DESKTOP};
use crate::support::browser::{clean_console, Browser};
use crate::support::postgres::{Postgres, SUPERUSER_PASSWORD};
use crate::support::*;
use serde_json::{json, Value};

/// The id of the element that has the focus.
fn focused_id(b: &Browser) -> String {
    let active = b.command("GET", "/element/active", None);
    let element = active
        .as_object()
        .and_then(|o| o.values().next())
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no active element: {active}"))
        .to_string();
    b.command("GET", &format!("/element/{element}/attribute/id"), None)
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The current value of a form field, as the browser holds it.
fn value(b: &Browser, css: &str) -> String {
    let id = b.find(css);
    b.command("GET", &format!("/element/{id}/property/value"), None)
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Empty a form field.
fn clear(b: &Browser, css: &str) {
    let id = b.find(css);
    let v = b.command("POST", &format!("/element/{id}/clear"), None);
    assert!(v.is_null(), "clear {css}: {v}");
}

/// The values of the chosen `<option>`s of `#target`.
fn chosen(b: &Browser) -> Vec<String> {
    let page = b.source();
    page.split("<option ")
        .skip(1)
        .filter(|o| o.split('>').next().is_some_and(|tag| tag.contains("selected")))
        .filter_map(|o| o.split("value=\"").nth(1)?.split('"').next().map(str::to_string))
        .collect()
}

/// alice's requests, as the API lists them.
fn requests_of(s: &Server, token: &str, requester: &str) -> Vec<Value> {
    let (status, v) = s.get(&format!("/v1/requests?requester={requester}"), token);
    assert_eq!(status, 200, "{v}");
    v["items"].as_array().cloned().unwrap_or_default()
}

/// POST the new-request form as a signed-in browser would, without following the redirect.
fn post_form(s: &Server, cookie: &str, fields: &[(&str, &str)]) -> (u16, String) {
    let mut all = vec![("csrf", "a".repeat(64))];
    all.extend(fields.iter().map(|(k, v)| (*k, v.to_string())));
    let response = no_redirects()
        .post(format!("{}/ui/requests", s.url))
        .header("Cookie", cookie)
        .form(&all)
        .send()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().unwrap())
}

fn get_page(s: &Server, cookie: &str, path: &str) -> (u16, String) {
    let response = no_redirects()
        .get(format!("{}{path}", s.url))
        .header("Cookie", cookie)
        .send()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().unwrap())
}

/// The text of the element with `id` in `html` (up to its closing tag), for pages read
/// without a browser.
fn element_text<'h>(html: &'h str, id: &str) -> Option<&'h str> {
    let at = html.find(&format!("id=\"{id}\""))?;
    let rest = &html[at..];
    let start = rest.find('>')? + 1;
    let end = rest[start..].find("</")?;
    Some(&rest[start..start + end])
}

/// The opening tag of the element with `id` in `html`.
fn tag_of<'h>(html: &'h str, id: &str) -> &'h str {
    let at = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id}:\n{html}"));
    let start = html[..at].rfind('<').unwrap();
    let end = at + html[at..].find('>').unwrap();
    &html[start..=end]
}

#[test]
fn a_missing_ticket_on_prod_db_write_is_said_beside_the_reason_field() {
    let s = Server::start();
    let alice = browser(DESKTOP);
    sign_in(&alice, &s, "demo-alice");
    alice.click("nav a[href='/ui/new']");
    alice.find("#target");
    // Nothing is chosen for her, and every field is there with its hint until she chooses.
    assert_eq!(chosen(&alice), Vec::<String>::new());
    assert!(alice.exists("#payload") && alice.exists("#duration-hint"));

    // Choosing prod-db write describes it in place: its terms, and the ticket it asks for.
    alice.select("#target", "prod-db|write");
    alice.wait_for_text("#fields", "Write to the production database");
    let fields = alice.text("#fields");
    assert!(fields.contains("2 approvals from sre"), "{fields}");
    assert!(fields.contains("at most 30m"), "{fields}");
    assert_eq!(alice.text("#reason-hint"), "Mention a ticket such as OPS-123.");
    assert!(!alice.exists("#payload"), "prod-db write takes no exact action");
    assert!(!alice.exists("#break_glass"), "alice may not break glass");

    alice.type_into("#duration", "10m");
    alice.type_into("#reason", "clean up <b>old</b> rows");
    alice.click("#file");
    alice.wait_for_text("#reason-error", "Mention a ticket");
    // The form came back as a 422, which the browser notes; nothing else went wrong.
    let console = alice.console();
    assert!(
        console
            .iter()
            .filter(|line| line.contains("SEVERE"))
            .all(|line| line.contains("/ui/requests") && line.contains("422")),
        "{console:?}"
    );

    // Beside the field, in plain words, tied to it for screen readers, and focused.
    assert_eq!(
        alice.text("#reason-error"),
        "Mention a ticket such as OPS-123 in the reason."
    );
    assert_eq!(alice.attribute("#reason", "aria-invalid").as_deref(), Some("true"));
    assert_eq!(
        alice.attribute("#reason", "aria-describedby").as_deref(),
        Some("reason-error reason-hint")
    );
    assert_eq!(focused_id(&alice), "reason");
    // Nothing else is marked wrong, and nothing is said above the form.
    assert_eq!(alice.attribute("#duration", "aria-invalid"), None);
    assert!(!alice.exists("#form-error"));
    // What she typed and chose is kept; the regular expression is nowhere on the page.
    assert_eq!(value(&alice, "#reason"), "clean up <b>old</b> rows");
    assert_eq!(value(&alice, "#duration"), "10m");
    assert_eq!(chosen(&alice), vec!["prod-db|write".to_string()]);
    assert!(!alice.source().contains("[A-Z0-9]+"), "the pattern is not shown");
    alice.screenshot("new-form-error-beside-reason");
    assert!(requests_of(&s, "demo-alice", "alice").is_empty(), "nothing was filed");

    // The API answers exactly as it did (CONTRACT): same code, same message.
    let (status, v) = s.post(
        "/v1/requests",
        "demo-alice",
        json!({"resource": "prod-db", "action": "write", "duration": "10m", "reason": "clean up old rows"}),
    );
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "invalid_argument");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("reason: must mention a ticket matching /") && message.ends_with("(for example OPS-123)"),
        "{message}"
    );

    // Fixed where it is said, it files.
    clear(&alice, "#reason");
    alice.type_into("#reason", "clean up <b>old</b> rows OPS-123");
    alice.click("#file");
    alice.wait_for_text("#state .badge", "pending");
    let mine = requests_of(&s, "demo-alice", "alice");
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["reason"], "clean up <b>old</b> rows OPS-123");
    clean_console(&alice);
}

#[test]
fn only_the_fields_that_apply_are_offered() {
    let s = Server::start();
    let alice = browser(DESKTOP);
    sign_in(&alice, &s, "demo-alice");
    alice.goto(&format!("{}/ui/new", s.url));
    // Each choice says what it is for, who approves and for how long at most.
    let choices = alice.text("#target");
    assert!(
        choices.contains("read on prod-db: Read the production database · 1 approval from sre · up to 1h"),
        "{choices}"
    );
    assert!(
        choices.contains("read on staging-db: Read the staging database · granted at once"),
        "{choices}"
    );

    // What was typed before choosing survives the fields being redrawn for the choice.
    alice.type_into("#duration", "15m");
    alice.type_into("#reason", "OPS-5 ship <i>it</i>");
    alice.select("#target", "prod-api|deploy");
    alice.wait_for_text("#fields", "Deploy one exact artifact");
    assert_eq!(value(&alice, "#reason"), "OPS-5 ship <i>it</i>");
    assert_eq!(value(&alice, "#duration"), "15m");
    assert!(
        alice.exists("#payload"),
        "an action-bound workflow takes its exact action"
    );
    assert!(
        alice.text("#fields").contains("single use"),
        "{}",
        alice.text("#fields")
    );
    // Choosing prod-db read instead (the select is multiple: click to leave deploy first).
    alice.select("#target", "prod-api|deploy");
    alice.select("#target", "prod-db|read");
    alice.wait_for_text("#fields", "Read the production database");
    assert!(!alice.exists("#payload"), "{}", alice.source());
    assert!(!alice.exists("#break_glass"));

    // bob (sre) may only break glass on prod-db write: it is offered to him as that, and the
    // box shows for it, not for prod-db read.
    let bob = browser(DESKTOP);
    sign_in(&bob, &s, "demo-bob");
    bob.goto(&format!("{}/ui/new", s.url));
    let choices = bob.text("#target");
    assert!(choices.contains("write on prod-db · break-glass only"), "{choices}");
    assert!(
        bob.exists("#break_glass"),
        "while nothing is chosen, every field he may use is there"
    );
    bob.select("#target", "prod-db|read");
    bob.wait_for_text("#fields", "Read the production database");
    assert!(!bob.exists("#break_glass"), "no break-glass on prod-db read");
    bob.select("#target", "prod-db|read");
    bob.select("#target", "prod-db|write");
    bob.wait_for_text("#fields", "break-glass only");
    assert!(
        bob.text("#break_glass-hint").contains("at most 15m"),
        "{}",
        bob.text("#break_glass-hint")
    );
    bob.type_into("#reason", "INC-9: disk full");
    bob.click("#break_glass");
    bob.click("#file");
    bob.wait_for_text("#state .badge", "approved");
    let filed = requests_of(&s, "demo-bob", "bob");
    assert_eq!(filed[0]["break_glass"], true, "{filed:?}");

    // Without script the form is whole: every field and its hint is in the page.
    let cookie = ui_session(&s, "demo-alice");
    let (status, page) = get_page(&s, &cookie, "/ui/new");
    assert_eq!(status, 200);
    for id in [
        "target",
        "duration",
        "duration-hint",
        "reason",
        "reason-hint",
        "payload",
        "payload-hint",
    ] {
        assert!(page.contains(&format!("id=\"{id}\"")), "#{id} missing:\n{page}");
    }
    assert!(
        !page.contains("id=\"break_glass\""),
        "alice may not break glass anywhere"
    );
    // And a chosen target (from a link) is described by the server.
    let (_, page) = get_page(&s, &cookie, "/ui/new?resource=prod-api&action=deploy");
    assert!(page.contains("Deploy one exact artifact"), "{page}");
    assert!(page.contains(r#"value="prod-api|deploy" selected"#), "{page}");
    clean_console(&alice);
    clean_console(&bob);
}

#[test]
fn request_again_pre_fills_every_item_and_leaks_nobody_elses() {
    let s = Server::start();
    let two = s.file(
        "demo-alice",
        json!({"items": [
            {"resource": "staging-db", "action": "read"},
            {"resource": "prod-db", "action": "read"}
        ], "duration": "30m", "reason": "OPS-3 compare the replicas"}),
    );
    let alice = browser(DESKTOP);
    sign_in(&alice, &s, "demo-alice");
    alice.goto(&format!("{}/ui/new?again={}", s.url, id(&two)));
    alice.find("#target");
    let mut picked = chosen(&alice);
    picked.sort();
    assert_eq!(picked, vec!["prod-db|read".to_string(), "staging-db|read".to_string()]);
    assert_eq!(value(&alice, "#duration"), "30m");
    assert_eq!(value(&alice, "#reason"), "OPS-3 compare the replicas");
    assert!(alice.text("#fields").contains("Read the staging database"));
    assert!(alice.text("#fields").contains("Read the production database"));
    // One click files it again.
    alice.click("#file");
    alice.wait_for_text("#state .badge", "pending");
    let mine = requests_of(&s, "demo-alice", "alice");
    assert_eq!(mine.len(), 2, "{mine:?}");
    let again = mine.iter().find(|r| r["id"] != two["id"]).unwrap();
    assert_eq!(again["items"].as_array().map(Vec::len), Some(2), "{again}");
    assert_eq!(again["reason"], "OPS-3 compare the replicas");

    // Break-glass is never ticked for you again: an emergency is declared afresh.
    let bobs = s.file(
        "demo-bob",
        json!({"resource": "prod-db", "action": "write", "duration": "10m", "reason": "INC-9: disk full SECRET-BOB", "break_glass": true}),
    );
    let bob_cookie = ui_session(&s, "demo-bob");
    let (status, page) = get_page(&s, &bob_cookie, &format!("/ui/new?again={}", id(&bobs)));
    assert_eq!(status, 200);
    assert!(page.contains(r#"value="prod-db|write" selected"#), "{page}");
    assert!(tag_of(&page, "break_glass").contains("type=\"checkbox\""));
    assert!(
        !tag_of(&page, "break_glass").contains("checked"),
        "{}",
        tag_of(&page, "break_glass")
    );

    // alice asking for bob's again learns nothing: the same words as for no request at all,
    // and nothing of his on the page.
    let cookie = ui_session(&s, "demo-alice");
    let ask_again = |again: &str| {
        let response = no_redirects()
            .get(format!("{}/ui/new", s.url))
            .query(&[("again", again)])
            .header("Cookie", &cookie)
            .send()
            .unwrap();
        (response.status().as_u16(), response.text().unwrap())
    };
    let said = |again: &str| {
        let (status, page) = ask_again(again);
        assert_eq!(status, 200, "the form, not an error page: {page}");
        assert!(!page.contains("SECRET-BOB"), "{page}");
        assert!(!page.contains(" selected"), "nothing chosen from it: {page}");
        element_text(&page, "form-error")
            .unwrap_or_else(|| panic!("no error:\n{page}"))
            .to_string()
    };
    let of_bobs = said(&id(&bobs));
    assert!(of_bobs.contains("not one of your requests"), "{of_bobs}");
    for probe in [
        "req_00000000000000000000000000".to_string(),
        "req_\u{200b}".to_string(),
        "r".repeat(10_000),
    ] {
        assert_eq!(said(&probe), of_bobs, "{probe:?}");
    }
    // Control and bidi characters are refused before any lookup (the server's guard on
    // every query): the same answer whether or not the id before them exists.
    for bad in ["\u{0}", "\u{202e}", "\u{1b}"] {
        let (status, real) = ask_again(&format!("{}{bad}", id(&bobs)));
        // Made up, of the same length, so that even the byte named is the same.
        let made_up_id = format!("req_{}", "0".repeat(id(&bobs).len() - 4));
        let (_, made_up) = ask_again(&format!("{made_up_id}{bad}"));
        // The UI's guard answers a parameter refused as a page (422) naming it, before any
        // handler runs.
        assert_eq!(status, 422, "{real}");
        assert!(real.contains("again: contains"), "{real}");
        assert!(!real.contains("SECRET-BOB") && !real.contains(&id(&bobs)), "{real}");
        assert_eq!(real, made_up);
    }
    // An auditor sees bob's request, yet it is not theirs to ask for again.
    let auditor = ui_session(&s, "demo-auditor");
    let (_, page) = get_page(&s, &auditor, &format!("/ui/new?again={}", id(&bobs)));
    assert!(!page.contains("SECRET-BOB"), "{page}");
    clean_console(&alice);
}

#[test]
fn someone_who_may_request_nothing_is_told_whom_to_ask() {
    let s = Server::start();
    let admin = browser(DESKTOP);
    sign_in(&admin, &s, "demo-admin");
    admin.goto(&format!("{}/ui/new", s.url));
    let said = admin.text("#empty-state");
    assert_eq!(
        said,
        "No workflow lets you ask for anything. Ask the people who run jitgate (admins) to add you to a group such as ci, dev or sre."
    );
    assert!(!admin.exists("#file"), "no form to file what cannot be filed");
    admin.screenshot("new-form-empty-state");
    // A search that finds nothing is not the empty state: bob may ask for things.
    let bob = ui_session(&s, "demo-bob");
    let (_, page) = get_page(&s, &bob, "/ui/new?q=staging");
    assert!(!page.contains("id=\"empty-state\""), "{page}");
    assert!(page.contains("Nothing you may ask for matches"), "{page}");
    clean_console(&admin);
}

#[test]
fn hostile_input_is_refused_beside_its_field_and_nothing_is_filed() {
    let s = Server::start();
    hostile_input_refused(&s);
    assert_eq!(s.sqlite("SELECT count(*) FROM requests"), "0");
}

/// The same on PostgreSQL, which cannot store a NUL in text at all: refused beside the
/// field before the database sees it, and a request id no one has (long, zero-width) is
/// "not one of yours" there too.
#[test]
fn hostile_input_is_refused_beside_its_field_on_postgres() {
    let pg = Postgres::start();
    pg.admin("postgres", "CREATE DATABASE jitgate");
    let url = pg.url("postgres", SUPERUSER_PASSWORD, "jitgate");
    let s = Server::start_on(&quickstart(), None, Some(&url));
    hostile_input_refused(&s);
    let cookie = ui_session(&s, "demo-alice");
    for probe in ["r".repeat(10_000), "req_\u{200b}".to_string()] {
        let response = no_redirects()
            .get(format!("{}/ui/new", s.url))
            .query(&[("again", probe.as_str())])
            .header("Cookie", &cookie)
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let page = response.text().unwrap();
        assert!(
            element_text(&page, "form-error").is_some_and(|e| e.contains("not one of your requests")),
            "{page}"
        );
    }
}

fn hostile_input_refused(s: &Server) {
    let cookie = ui_session(s, "demo-alice");
    let refused_beside = |fields: &[(&str, &str)], field: &str| -> String {
        let (status, page) = post_form(s, &cookie, fields);
        assert_eq!(status, 422, "{fields:?}:\n{page}");
        let tag = tag_of(&page, field);
        assert!(tag.contains(r#"aria-invalid="true""#), "{tag}");
        assert!(tag.contains(&format!(r#"aria-describedby="{field}-error"#)), "{tag}");
        assert!(tag.contains("autofocus"), "{tag}");
        assert!(
            !page.contains("id=\"form-error\""),
            "said beside the field, not above: {page}"
        );
        element_text(&page, &format!("{field}-error"))
            .unwrap_or_else(|| panic!("no #{field}-error:\n{page}"))
            .to_string()
    };
    let read = ("target", "prod-db|read");
    for (reason, says) in [
        ("INC-1 a\u{0}b", "a NUL byte"),
        ("INC-1 \u{202e}gnp.exe", "U+202E"),
        ("INC-1 a\u{1b}[31mred", "escape character"),
        ("\u{200b}\u{200b}", "is required"),
        ("   ", "is required"),
    ] {
        let said = refused_beside(&[read, ("duration", "30m"), ("reason", reason)], "reason");
        assert!(said.starts_with("The reason "), "{said}");
        assert!(said.contains(says), "{reason:?}: {said}");
        // The hostile character itself is never echoed into the message.
        assert!(
            !said.contains('\u{0}') && !said.contains('\u{202e}') && !said.contains('\u{1b}'),
            "{said:?}"
        );
    }
    // 100 KB: said beside the reason, counted as a field over its length.
    let long = "OPS-1 ".to_string() + &"x".repeat(100 * 1024);
    let said = refused_beside(&[read, ("reason", &long)], "reason");
    assert!(said.contains("keep it under"), "{said}");

    // Durations: a NUL, a sign, too long, more than the workflow allows, 10 KB.
    let ten_kb = "1".repeat(10 * 1024);
    for duration in ["1h\u{0}", "-5m", "99999h", "2h", ten_kb.as_str()] {
        let said = refused_beside(&[read, ("duration", duration), ("reason", "INC-2 slow")], "duration");
        assert!(said.starts_with("The duration "), "{duration:?}: {said}");
        assert!(!said.contains('\u{0}'), "{said:?}");
    }
    // A payload where none applies, and none where one must be.
    let said = refused_beside(&[read, ("reason", "INC-3"), ("payload", "SELECT 1")], "payload");
    assert!(said.contains("not action-bound"), "{said}");
    let said = refused_beside(&[("target", "prod-api|deploy"), ("reason", "INC-4 ship")], "payload");
    assert!(said.contains("is required"), "{said}");
    let said = refused_beside(
        &[
            ("target", "prod-api|deploy"),
            ("reason", "INC-4 ship"),
            ("payload", "deploy \u{202e}v2"),
        ],
        "payload",
    );
    assert!(said.contains("U+202E"), "{said}");
    // Nothing chosen: said beside the choice.
    let said = refused_beside(&[("reason", "INC-5")], "target");
    assert!(said.contains("choose what to ask for"), "{said}");

    // An item's refusal names its choice in words and its field as the API does.
    let (status, page) = post_form(
        s,
        &cookie,
        &[
            ("target", "staging-db|read"),
            ("target", "prod-api|deploy"),
            ("reason", "OPS-4 ship"),
        ],
    );
    assert_eq!(status, 422);
    let said = element_text(&page, "payload-error").unwrap();
    assert!(
        said.starts_with("For deploy on prod-api: The exact action is required"),
        "{said}"
    );
    assert!(page.contains(r#"data-field="items[1].payload""#), "{page}");

    // Not one of these filed anything.
    assert!(requests_of(s, "demo-alice", "alice").is_empty());

    // The fields fragment: a target she may not ask for is not described; what was typed
    // is never carried back (it stays in the fields; only the choice travels).
    let fragment = |query: &str| get_page(s, &cookie, &format!("/ui/new/fields?{query}"));
    let (status, html) = fragment("target=prod-db%7Cwrite&reason=%3Cscript%3Ealert(1)%3C%2Fscript%3E");
    assert_eq!(status, 200);
    assert!(html.contains("Mention a ticket such as OPS-123."), "{html}");
    assert!(!html.contains("script") && !html.contains("alert(1)"), "{html}");
    assert!(
        !html.contains("id=\"reason\"") && !html.contains("id=\"duration\""),
        "the fragment holds no field typed into: {html}"
    );
    let (_, html) = fragment(&format!("target=prod-db%7Cread&reason={}", "y".repeat(3000)));
    assert!(!html.contains("yyy"), "an oversize reason is not carried back");
    // Two probes: a NUL makes the whole address refused, which would hide whether the first
    // target was described.
    let (status, html) = fragment("target=secret-db%7Cdrop");
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("id=\"guides\""), "{html}");
    assert!(
        !html.contains("secret-db") && !html.contains("class=\"guide\""),
        "{html}"
    );
    let (status, html) = fragment("target=%00%7C%E2%80%AE");
    assert_eq!(status, 422, "a control character in the address is refused: {html}");
    assert!(!html.contains("class=\"guide\""), "{html}");
    let (status, _) = get_page(s, "", "/ui/new/fields?target=prod-db%7Cread");
    assert!(status == 303 || status == 401, "signed out: {status}");
}

#[test]
fn a_choice_stays_chosen_through_a_search_and_both_are_filed() {
    let s = Server::start();
    let alice = browser(DESKTOP);
    sign_in(&alice, &s, "demo-alice");
    alice.goto(&format!("{}/ui/new", s.url));
    alice.select("#target", "prod-db|read");
    alice.wait_for_text("#fields", "Read the production database");
    alice.type_into("#reason", "OPS-8 compare");
    // Searching for something else keeps prod-db read on offer and chosen.
    alice.type_into("#q", "staging");
    wait_until("the search narrowed the choices", || {
        let choices = alice.text("#target");
        choices.contains("staging-db") && !choices.contains("bastion")
    });
    assert_eq!(chosen(&alice), vec!["prod-db|read".to_string()]);
    assert!(alice.url().contains("target=prod-db%7Cread"), "{}", alice.url());
    alice.select("#target", "staging-db|read");
    alice.wait_for_text("#fields", "Read the staging database");
    assert!(alice.text("#fields").contains("Read the production database"));
    assert_eq!(value(&alice, "#reason"), "OPS-8 compare", "what was typed stays");
    alice.click("#file");
    alice.wait_for_text("#state .badge", "pending");
    let mine = requests_of(&s, "demo-alice", "alice");
    assert_eq!(mine.len(), 1);
    // The API lists every item, the first included.
    let mut asked: Vec<String> = mine[0]["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| format!("{}|{}", r["resource"].as_str().unwrap(), r["action"].as_str().unwrap()))
        .collect();
    asked.sort();
    assert_eq!(
        asked,
        vec!["prod-db|read".to_string(), "staging-db|read".to_string()],
        "{mine:?}"
    );

    // Without script: `target` in the address chooses, whatever else the search finds, and
    // one that may not be asked for is said, not chosen.
    let cookie = ui_session(&s, "demo-alice");
    let (status, page) = get_page(
        &s,
        &cookie,
        "/ui/new?q=staging&target=prod-db%7Cread&target=secret%7Cdrop",
    );
    assert_eq!(status, 200);
    assert!(page.contains(r#"value="prod-db|read" selected"#), "{page}");
    assert!(!page.contains(r#"value="secret|drop""#), "{page}");
    assert!(
        element_text(&page, "form-error").is_some_and(|e| e.contains("You may not ask for drop on secret")),
        "{page}"
    );
    clean_console(&alice);
}

/// How many workflow guides a page or fragment describes.
fn guides_in(html: &str) -> usize {
    html.matches("class=\"guide\"").count()
}

/// One caller cannot make the form do unbounded work: 5,000 targets in one POST (duplicates
/// and names no workflow governs) are refused beside the choice with at most a request's worth
/// of guides built, and the fields fragment describes at most as many.
#[test]
fn thousands_of_targets_are_refused_beside_the_choice_with_bounded_work() {
    let s = Server::start();
    let cookie = ui_session(&s, "demo-alice");
    let unknown: Vec<String> = (0..21).map(|i| format!("nothing-{i}|read")).collect();
    let mut fields: Vec<(&str, &str)> = vec![("target", "prod-db|read"); 4_979];
    fields.extend(unknown.iter().map(|t| ("target", t.as_str())));
    fields.push(("reason", "OPS-1 look"));
    let started = std::time::Instant::now();
    let (status, page) = post_form(&s, &cookie, &fields);
    let took = started.elapsed();
    assert_eq!(status, 422, "{page}");
    let said = element_text(&page, "target-error").unwrap_or_else(|| panic!("no #target-error:\n{page}"));
    assert!(said.contains("at most 20"), "{said}");
    assert!(tag_of(&page, "target").contains(r#"aria-invalid="true""#));
    assert!(guides_in(&page) <= 20, "{} guides built", guides_in(&page));
    assert!(page.len() < 200_000, "the refusal is {} bytes", page.len());
    assert!(took < std::time::Duration::from_secs(5), "took {took:?}");
    assert!(requests_of(&s, "demo-alice", "alice").is_empty(), "nothing filed");

    let query: String = std::iter::repeat_n("target=prod-db%7Cread", 100)
        .chain(std::iter::once("target=staging-db%7Cread"))
        .collect::<Vec<_>>()
        .join("&");
    let (status, html) = get_page(&s, &cookie, &format!("/ui/new/fields?{query}"));
    assert_eq!(status, 200, "{html}");
    assert_eq!(guides_in(&html), 2, "each target described once:\n{html}");
}

/// Changing the choice redraws what describes it, never what was typed: a two-line reason
/// (which a URL's query may not carry) stays in its field, and the guide and the break-glass
/// box follow the new choice.
#[test]
fn changing_the_choice_updates_the_guide_and_keeps_a_two_line_reason() {
    let s = Server::start();
    let bob = browser(DESKTOP);
    sign_in(&bob, &s, "demo-bob");
    bob.goto(&format!("{}/ui/new", s.url));
    bob.type_into("#reason", "INC-9: disk full\nsecond line");
    bob.type_into("#duration", "10m");
    bob.select("#target", "prod-db|write");
    bob.wait_for_text("#fields", "break-glass only");
    assert!(bob.exists("#break_glass"));
    // The change is said to screen readers by a status region that stays on the page (one
    // that is replaced is not announced): marked before, still marked after, its words new.
    let said = |b: &Browser| {
        b.execute(
            "const p = document.getElementById('choice-said'); \
             return [p.getAttribute('role'), p.dataset.mark || '', p.textContent, !!p.closest('#guides')];",
            vec![],
        )
    };
    bob.execute("document.getElementById('choice-said').dataset.mark = 'kept';", vec![]);
    bob.select("#target", "prod-db|write");
    bob.select("#target", "prod-db|read");
    bob.wait_for_text("#fields", "Read the production database");
    let status = said(&bob);
    assert_eq!(status[0], "status", "{status}");
    assert_eq!(
        status[1], "kept",
        "the status region was replaced, not updated: {status}"
    );
    assert!(
        status[2].as_str().unwrap().contains("Now showing: read on prod-db."),
        "{status}"
    );
    assert!(!status[2].as_str().unwrap().contains("break-glass"), "{status}");
    assert_eq!(status[3], false, "outside the guides that are swapped: {status}");
    assert!(!bob.exists("#break_glass"), "no break-glass on prod-db read");
    assert!(
        !bob.text("#guides").contains("break-glass only"),
        "{}",
        bob.text("#guides")
    );
    assert_eq!(value(&bob, "#reason"), "INC-9: disk full\nsecond line");
    assert_eq!(value(&bob, "#duration"), "10m");
    // The payload field comes with an action-bound choice and goes with it.
    bob.select("#target", "prod-db|read");
    let alice = browser(DESKTOP);
    sign_in(&alice, &s, "demo-alice");
    alice.goto(&format!("{}/ui/new", s.url));
    alice.type_into("#reason", "OPS-5 ship\nit");
    alice.select("#target", "prod-db|read");
    alice.wait_for_text("#guides", "Read the production database");
    assert!(!alice.exists("#payload"));
    alice.select("#target", "prod-db|read");
    alice.select("#target", "prod-api|deploy");
    alice.wait_for_text("#guides", "Deploy one exact artifact");
    assert!(alice.exists("#payload") && alice.exists("#payload-hint"));
    assert_eq!(value(&alice, "#reason"), "OPS-5 ship\nit");
    clean_console(&bob);
    clean_console(&alice);
}

/// A reason typed on two lines files: the browser sends the line break as CRLF, and the form
/// stores it as the line break the person typed (`\n`), as the CLI sends it. The payload is
/// one line, sent exactly as typed.
#[test]
fn a_two_line_reason_typed_in_the_browser_files_with_a_line_break() {
    let s = Server::start();
    let alice = browser(DESKTOP);
    sign_in(&alice, &s, "demo-alice");
    alice.goto(&format!("{}/ui/new", s.url));
    alice.select("#target", "staging-db|read");
    alice.wait_for_text("#guides", "Read the staging database");
    alice.type_into("#reason", "compare the replicas\nafter the migration");
    alice.click("#file");
    alice.wait_for_text("#state .badge", "approved");
    let mine = requests_of(&s, "demo-alice", "alice");
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(mine[0]["reason"], "compare the replicas\nafter the migration");

    // An action-bound payload is one line and goes byte for byte.
    alice.goto(&format!("{}/ui/new?resource=prod-api&action=deploy", s.url));
    assert_eq!(
        tag_of(&alice.source(), "payload").split_whitespace().next(),
        Some("<input")
    );
    alice.type_into("#reason", "OPS-7 ship\nthe fix");
    alice.type_into("#payload", "deploy  v2 \"quoted\" ");
    alice.click("#file");
    alice.wait_for_text("#state .badge", "pending");
    let mine = requests_of(&s, "demo-alice", "alice");
    let deploy = mine.iter().find(|r| r["resource"] == "prod-api").unwrap();
    assert_eq!(deploy["reason"], "OPS-7 ship\nthe fix");
    assert_eq!(deploy["payload"], "deploy  v2 \"quoted\" ");
    clean_console(&alice);
}

/// Break-glass files the whole request as one emergency, so the box is offered only when
/// every chosen target allows it.
#[test]
fn break_glass_is_offered_only_when_every_choice_allows_it() {
    let s = Server::start();
    let cookie = ui_session(&s, "demo-bob");
    let fragment = |query: &str| {
        let (status, html) = get_page(&s, &cookie, &format!("/ui/new/fields?{query}"));
        assert_eq!(status, 200, "{html}");
        html
    };
    let write = fragment("target=prod-db%7Cwrite");
    assert!(write.contains("id=\"break_glass\""));
    // bob may only break glass on prod-db write: its terms are the procedure's (15m), not
    // the workflow's (30m), in the guide and the duration's hint alike.
    let hint = element_text(&write, "duration-hint").unwrap_or_default();
    assert_eq!(hint, "Like 15m, 1h or 90s. Empty for 15m; at most 15m.", "{write}");
    let both = fragment("target=prod-db%7Cwrite&target=prod-db%7Cread");
    assert!(!both.contains("id=\"break_glass\""), "{both}");
    let with_unknown = fragment("target=prod-db%7Cwrite&target=nothing%7Cread");
    assert!(!with_unknown.contains("id=\"break_glass\""), "{with_unknown}");
}

/// A link cannot make jitgate's page say what its author likes: a name from the link is
/// repeated at most 64 characters long, escaped, and several refused choices are counted,
/// not listed.
#[test]
fn a_link_cannot_write_the_error_message() {
    let s = Server::start();
    let cookie = ui_session(&s, "demo-alice");
    let pitch = "Your account is locked. Call +1 555 0100 and read them your password to unlock it now";
    let (status, page) = get_page(
        &s,
        &cookie,
        &format!("/ui/new?resource=x&action={}", pitch.replace(' ', "+")),
    );
    assert_eq!(status, 200, "{page}");
    let said = element_text(&page, "form-error").unwrap_or_else(|| panic!("{page}"));
    assert!(said.contains("You may not ask for"), "{said}");
    assert!(!said.contains("unlock it now"), "{said}");
    assert!(said.chars().count() < 300, "{said}");

    let query: String = (0..20)
        .map(|i| format!("target=x{i}%7C{}", pitch.replace(' ', "+")))
        .collect::<Vec<_>>()
        .join("&");
    let (status, page) = get_page(&s, &cookie, &format!("/ui/new?{query}"));
    assert_eq!(status, 200, "{page}");
    let said = element_text(&page, "form-error").unwrap_or_else(|| panic!("{page}"));
    assert!(said.starts_with("20 choices in the link cannot be asked for"), "{said}");
    assert!(!said.contains("Your account"), "{said}");
}

/// A payload is the exact action of the action-bound choices only: asking for a deploy and a
/// database read together files, the payload bound to the deploy alone.
#[test]
fn a_payload_goes_with_the_action_bound_choice_only() {
    let s = Server::start();
    let cookie = ui_session(&s, "demo-alice");
    let (status, page) = post_form(
        &s,
        &cookie,
        &[
            ("target", "prod-api|deploy"),
            ("target", "staging-db|read"),
            ("reason", "OPS-6 ship and check"),
            ("payload", "deploy api v2"),
        ],
    );
    assert_eq!(status, 303, "{page}");
    let mine = requests_of(&s, "demo-alice", "alice");
    assert_eq!(mine.len(), 1, "{mine:?}");
    let id = mine[0]["id"].as_str().unwrap();
    let (_, r) = s.get(&format!("/v1/requests/{id}"), "demo-alice");
    let items = r["items"].as_array().unwrap();
    let of = |name: &str| {
        items
            .iter()
            .find(|i| i["resource"] == name)
            .unwrap_or_else(|| panic!("{r}"))
    };
    assert_eq!(of("prod-api")["payload"], "deploy api v2", "{r}");
    assert!(of("staging-db")["payload"].is_null(), "{r}");
}

/// The ticket hint never sends people in a loop: a pattern anchored at the start says so, and
/// a pattern no common example fits says what the policy's `ticket_hint` says, in the hint
/// and beside the refused reason alike.
#[test]
fn the_ticket_hint_says_where_and_what_the_pattern_wants() {
    let policy = quickstart_with_workflows(
        r#"
[[workflow]]
resource = "queue"
action = "purge"
requesters = ["dev"]
steps = [{ group = "sre", approvals = 1 }]
ticket_pattern = "^[A-Z]+-[0-9]+"

[[workflow]]
resource = "queue"
action = "drain"
requesters = ["dev"]
steps = [{ group = "sre", approvals = 1 }]
ticket_pattern = "INC[0-9]+"
ticket_hint = "Mention the incident, such as INC0012345."
"#,
    );
    let resources = policy.path().join("resources.toml");
    let mut text = std::fs::read_to_string(&resources).unwrap();
    text.push_str("\n[[resource]]\nname = \"queue\"\nkind = \"postgres\"\nlabels = { env = \"test\" }\n");
    std::fs::write(&resources, text).unwrap();
    let s = Server::start_on(policy.path(), None, None);
    let cookie = ui_session(&s, "demo-alice");
    for (target, hint, refusal) in [
        (
            "queue|purge",
            "Start the reason with a ticket such as OPS-123.",
            "Start the reason with a ticket such as OPS-123.",
        ),
        (
            "queue|drain",
            "Mention the incident, such as INC0012345.",
            "Mention the incident, such as INC0012345.",
        ),
    ] {
        let (status, html) = get_page(
            &s,
            &cookie,
            &format!("/ui/new/fields?target={}", target.replace('|', "%7C")),
        );
        assert_eq!(status, 200, "{html}");
        assert_eq!(element_text(&html, "reason-hint"), Some(hint), "{html}");
        let (status, page) = post_form(&s, &cookie, &[("target", target), ("reason", "fix OPS-123 now")]);
        assert_eq!(status, 422, "{page}");
        assert_eq!(element_text(&page, "reason-error"), Some(refusal), "{page}");
    }
    // Started with the ticket, as said, it files.
    let (status, page) = post_form(&s, &cookie, &[("target", "queue|purge"), ("reason", "OPS-123 fix now")]);
    assert_eq!(status, 303, "{page}");
}

/// The reason is asked for where the workflow asks for one (the server says so beside the
/// field), not by the browser for every choice; a choice that went away since the page was
/// shown is said in plain words, not the API's.
#[test]
fn the_reason_is_optional_where_the_workflow_allows_and_a_vanished_choice_is_said_plainly() {
    let s = Server::start();
    let cookie = ui_session(&s, "demo-alice");
    let (_, page) = get_page(&s, &cookie, "/ui/new?resource=staging-db&action=read");
    assert!(
        !tag_of(&page, "reason").contains("required"),
        "{}",
        tag_of(&page, "reason")
    );
    let (status, page) = post_form(&s, &cookie, &[("target", "staging-db|read"), ("reason", "")]);
    assert_eq!(status, 303, "staging-db read needs no reason: {page}");

    let (status, page) = post_form(&s, &cookie, &[("target", "gone-db|read"), ("reason", "OPS-1")]);
    assert_eq!(status, 422, "{page}");
    assert_eq!(
        element_text(&page, "target-error"),
        Some("That choice cannot be asked for now: no workflow governs it (the policy may have changed since this page was shown). Choose again from the list."),
        "{page}"
    );
    assert!(!page.contains("jitgate resources"), "{page}");
}
