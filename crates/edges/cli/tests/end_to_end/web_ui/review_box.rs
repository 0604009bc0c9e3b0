//! The "If you approve" box (#27 part B), in Chromium against the real server: a reviewer is
//! told what their approval gives, until when, which approval of how many it is, who the
//! requester is (groups, recent requests for the same resource) and, for an action-bound
//! request, the exact payload escaped with its full SHA-256. "Request sent to sre" after
//! filing, and times in the reader's own time zone with the UTC text on hover.

use super::{browser, sign_in, DESKTOP};
use crate::support::browser::{clean_console, Browser};
use crate::support::*;
use chrono::{DateTime, FixedOffset, Utc};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn page_of(s: &Server, id: &str) -> String {
    format!("{}/ui/requests/{id}", s.url)
}

fn created_at(r: &Value) -> DateTime<Utc> {
    r["created_at"].as_str().unwrap().parse().unwrap()
}

/// The text of the box's part `css` (inside `#if-approve`).
fn box_text(b: &Browser, css: &str) -> String {
    b.text(&format!("#if-approve {css}"))
}

#[test]
fn bob_is_told_his_is_the_1st_of_2_and_carol_the_2nd_with_alices_groups_and_history() {
    let s = Server::start();
    // alice's history: an earlier prod-db request (shown), one on another resource (not).
    let earlier = s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "read", "duration": "15m", "reason": "INC-1: slow"}),
    );
    let staging = s.file(
        "demo-alice",
        json!({"resource": "staging-db", "action": "read", "duration": "1h", "reason": "tests"}),
    );
    let r = s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "write", "duration": "30m", "reason": "OPS-123: fix the index"}),
    );
    let rid = id(&r);

    let bob = browser(DESKTOP);
    sign_in(&bob, &s, "demo-bob");
    bob.goto(&page_of(&s, &rid));
    bob.find("section#if-approve[aria-labelledby=if-approve-heading]");
    assert_eq!(bob.text("#if-approve-heading"), "If you approve");
    let access = box_text(&bob, "#if-approve-access");
    assert!(access.contains("alice gets write on prod-db"), "{access}");
    assert!(access.contains("Write to the production database"), "{access}");
    let place = box_text(&bob, "#if-approve-place");
    assert!(place.contains("Yours is the 1st of 2 from sre."), "{place}");
    assert!(
        place.contains("After yours it still needs 1 approval from sre."),
        "{place}"
    );
    let window = box_text(&bob, "#if-approve-window");
    assert!(
        window.starts_with("From when the last approval lands, for 30m: until ")
            && window.ends_with(" at the earliest."),
        "{window}"
    );
    // Until: 30 minutes from now, as the <time> says to the second.
    let until: DateTime<Utc> = bob
        .attribute("#if-approve-window time", "datetime")
        .unwrap()
        .parse()
        .unwrap();
    let expected = Utc::now() + chrono::TimeDelta::minutes(30);
    assert!((until - expected).num_seconds().abs() < 60, "{until} vs {expected}");
    assert_eq!(box_text(&bob, "#if-approve-groups"), "alice is in dev.");
    // Her recent requests for prod-db: the earlier one, linked with its status; not the
    // staging-db one, nor this one.
    assert_eq!(
        bob.text("#if-approve-recent-heading"),
        "alice's recent requests for prod-db"
    );
    let recent = box_text(&bob, "#if-approve-recent");
    assert!(
        recent.contains("read on prod-db") && recent.contains("pending"),
        "{recent}"
    );
    let html = bob.source();
    assert!(
        html.contains(&format!("href=\"/ui/requests/{}\"", id(&earlier))),
        "{html}"
    );
    let in_box = html.split("id=\"if-approve\"").nth(1).unwrap();
    assert!(
        !in_box.contains(&id(&staging)),
        "another resource's request is not listed"
    );
    assert!(!recent.contains("write on prod-db"), "not the request itself: {recent}");
    bob.screenshot("review-box-1st-of-2");

    // bob approves: the box goes, the page says he approved and waits for the other.
    bob.click("#approve");
    bob.find("#you-approved");
    assert!(!bob.exists("#if-approve"), "no box for someone who approved already");
    assert_eq!(
        s.get(&format!("/v1/requests/{rid}"), "demo-bob").1["approvals"][0]["reviewer"],
        "bob"
    );

    // carol: the 2nd of 2, and the last: access from the moment she approves.
    let carol = browser(DESKTOP);
    sign_in(&carol, &s, "demo-carol");
    carol.goto(&page_of(&s, &rid));
    let place = box_text(&carol, "#if-approve-place");
    assert!(place.contains("Yours is the 2nd of 2 from sre."), "{place}");
    assert!(
        place.contains("Yours is the last approval it needs: alice has access at once."),
        "{place}"
    );
    let window = box_text(&carol, "#if-approve-window");
    assert!(
        window.starts_with("From the moment you approve, for 30m: until about"),
        "{window}"
    );

    // The requester is never shown the box.
    let alice = browser(DESKTOP);
    sign_in(&alice, &s, "demo-alice");
    alice.goto(&page_of(&s, &rid));
    alice.find("#cancel");
    assert!(!alice.exists("#if-approve"));

    // carol approves: decided, and nobody gets the box any more.
    carol.click("#approve");
    carol.wait_for_text("#state .badge", "approved");
    assert!(!carol.exists("#if-approve"));
    let erin = browser(DESKTOP);
    sign_in(&erin, &s, "demo-erin");
    erin.goto(&page_of(&s, &rid));
    erin.wait_for_text("#state .badge", "approved");
    assert!(!erin.exists("#if-approve"), "no box on a decided request");
    for b in [&alice, &bob, &carol, &erin] {
        clean_console(b);
    }
}

#[test]
fn an_action_bound_payload_is_shown_escaped_with_its_full_hash_and_approving_binds_it() {
    let s = Server::start();
    // The API refuses a right-to-left override or a control character in a payload...
    let (status, refused) = s.post(
        "/v1/requests",
        "demo-alice",
        json!({"resource": "prod-api", "action": "deploy", "reason": "r", "payload": "a\u{202e}b"}),
    );
    assert_eq!(status, 422, "{refused}");
    // ...so such a payload reaches a page only as text stored before the checks existed (or
    // written by another tool): markup, a zero-width space (which the API takes), an override
    // that would flip what follows and a bell (a control character that is not NUL). What is
    // enforced, byte for byte, must be what the reviewer reads.
    let r = s.file(
        "demo-alice",
        json!({"resource": "prod-api", "action": "deploy", "reason": "release 1.4",
               "payload": "deploy <script>alert(1)</script> v1.4"}),
    );
    let rid = id(&r);
    let payload = "deploy api@sha256:4f2a <script>alert(1)</script>\u{200b} \u{202e}gpj.exe\u{202c} \u{7}v1.4";
    let sha = hex::encode(Sha256::digest(payload.as_bytes()));
    let stored = |payload: &str, sha: &str| {
        s.sqlite(&format!(
            "UPDATE requests SET doc = json_set(doc, '$.payload', '{}', '$.payload_sha256', '{sha}') WHERE id = '{rid}'",
            payload.replace('\'', "''")
        ));
    };
    stored(payload, &sha);
    assert_eq!(s.get(&format!("/v1/requests/{rid}"), "demo-bob").1["payload"], payload);

    let bob = browser(DESKTOP);
    sign_in(&bob, &s, "demo-bob");
    bob.goto(&page_of(&s, &rid));
    let access = box_text(&bob, "#if-approve-access");
    assert!(
        access.contains("alice gets deploy on prod-api, for exactly the action below, single use"),
        "{access}"
    );
    assert!(access.contains("Deploy one exact artifact or command"), "{access}");
    assert_eq!(
        box_text(&bob, "pre.payload"),
        "deploy api@sha256:4f2a <script>alert(1)</script>\\u{200b} \\u{202e}gpj.exe\\u{202c} \\x07v1.4"
    );
    // The hash in full, equal to sha256 of the stored payload, and the one the form sends.
    assert_eq!(box_text(&bob, ".if-approve-sha256"), sha);
    assert_eq!(bob.attribute("#payload-sha256", "value").as_deref(), Some(sha.as_str()));
    assert!(!bob.exists(".if-approve-mismatch"));
    // Nothing of it reaches the page raw: no markup, no override, no control character.
    let html = bob.source();
    assert!(!html.contains("<script>alert(1)</script>"), "{html}");
    for raw in ['\u{202e}', '\u{202c}', '\u{200b}', '\u{7}'] {
        assert!(!html.contains(raw), "raw {raw:?} on the page");
    }
    // The facts above point to the box rather than saying it twice; the box says the hash once.
    assert_eq!(html.matches("<pre class=\"payload\">").count(), 1, "{html}");
    let in_box = html.split("id=\"if-approve\"").nth(1).unwrap();
    assert_eq!(
        in_box.split("</section>").next().unwrap().matches(&sha).count(),
        1,
        "{html}"
    );
    bob.screenshot("review-box-payload");

    // A payload changed behind jitgate's back no longer hashes to what is enforced: said.
    stored("deploy v1.5", &sha);
    bob.goto(&page_of(&s, &rid));
    assert!(
        box_text(&bob, ".if-approve-mismatch").contains("what is enforced is not what you see"),
        "{}",
        box_text(&bob, ".bound-payload")
    );
    stored(payload, &sha);

    bob.goto(&page_of(&s, &rid));
    bob.click("#approve");
    bob.wait_for_text("#state .badge", "approved");
    let (_, after) = s.get(&format!("/v1/requests/{rid}"), "demo-bob");
    assert_eq!(after["approvals"][0]["payload_sha256"], sha.as_str(), "{after}");
    assert_eq!(s.check("alice", "prod-api", "deploy", Some(payload))["allow"], true);
    clean_console(&bob);
}

/// `t` read on a clock `offset` ahead of UTC, in 24 or 12 hours (as the browser's locale
/// writes it).
fn clock_readings(t: DateTime<Utc>, offset: &FixedOffset) -> [String; 2] {
    let local = t.with_timezone(offset);
    [local.format("%H:%M").to_string(), local.format("%-I:%M").to_string()]
}

#[test]
fn times_read_in_the_readers_zone_with_the_utc_text_on_hover_also_after_a_live_update() {
    let s = Server::start();
    let r = s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "read", "duration": "30m", "reason": "INC-9: lag"}),
    );
    let rid = id(&r);
    let filed = created_at(&r);
    let kolkata = FixedOffset::east_opt(5 * 3600 + 30 * 60).unwrap();

    let alice = Browser::start_in_zone(DESKTOP.0, DESKTOP.1, "Asia/Kolkata");
    sign_in(&alice, &s, "demo-alice");
    alice.goto(&page_of(&s, &rid));
    let filed_css = "dl.facts time";
    let utc_text = filed.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    alice.find(&format!("{filed_css}[data-local]"));
    // How long it waits for a decision stays relative ("59m 58s"), its moment on hover.
    let deadline: DateTime<Utc> = r["pending_expires_at"].as_str().unwrap().parse().unwrap();
    let css = "dl.facts dd time[datetime^='20']:not([title$=' UTC'])";
    let hover = alice.attribute(css, "title").unwrap();
    assert!(
        hover.ends_with(&format!("({} UTC)", deadline.format("%Y-%m-%d %H:%M"))),
        "{hover}"
    );
    assert!(alice.text(css).contains('m'), "{}", alice.text(css));
    assert_eq!(alice.attribute(filed_css, "title").as_deref(), Some(utc_text.as_str()));
    let text = alice.text(filed_css);
    assert!(!text.contains("UTC"), "{text}");
    assert!(text.contains("GMT+5:30") || text.contains("IST"), "{text}");
    let readings = clock_readings(filed, &kolkata);
    assert!(
        readings.iter().any(|r| text.contains(r.as_str())),
        "{text} is not {readings:?}"
    );

    // bob, in Kolkata too, approves; alice's page, left open, updates itself (htmx) and the
    // approval's time it brings reads as local too.
    let bob = Browser::start_in_zone(DESKTOP.0, DESKTOP.1, "Asia/Kolkata");
    sign_in(&bob, &s, "demo-bob");
    // The inbox's relative times ("2 min ago") stay relative, with the moment on hover:
    // local, then UTC (the first is the row's age, which has no title of its own).
    let hover = bob.attribute("main time[data-local]", "title").unwrap();
    assert!(
        (hover.contains("GMT+5:30") || hover.contains("IST")) && hover.ends_with(" UTC)"),
        "{hover}"
    );
    bob.goto(&page_of(&s, &rid));
    let until = box_text(&bob, "#if-approve-window time");
    assert!(until.contains("GMT+5:30") || until.contains("IST"), "{until}");
    let until_title = bob.attribute("#if-approve-window time", "title").unwrap();
    // The server's text: the time of day when the window ends on the same UTC day, with the
    // date when it ends on another (a 30m window opened after 23:30 UTC ends tomorrow).
    let shown_at = Utc::now();
    let until_at: DateTime<Utc> = bob
        .attribute("#if-approve-window time", "datetime")
        .unwrap()
        .parse()
        .unwrap();
    let from_now = until_at - shown_at;
    assert!(
        from_now > chrono::Duration::minutes(28) && from_now <= chrono::Duration::minutes(30),
        "{until_at} is not 30m from {shown_at}"
    );
    // The server compares with the moment it rendered the page (the window is 30m from
    // then), not with when the test read it: across midnight UTC the two differ.
    let rendered_at = until_at - chrono::Duration::minutes(30);
    let expected_title = if until_at.date_naive() == rendered_at.date_naive() {
        until_at.format("%H:%M UTC").to_string()
    } else {
        until_at.format("%Y-%m-%d %H:%M UTC").to_string()
    };
    assert_eq!(until_title, expected_title);
    bob.click("#approve");
    alice.wait_for_text("#state .badge", "approved");
    let (_, after) = s.get(&format!("/v1/requests/{rid}"), "demo-alice");
    let approved_at: DateTime<Utc> = after["approvals"][0]["at"].as_str().unwrap().parse().unwrap();
    let approval_css = "#state ul.plain time";
    alice.find(&format!("{approval_css}[data-local]"));
    assert_eq!(
        alice.attribute(approval_css, "title"),
        Some(approved_at.format("%Y-%m-%d %H:%M:%S UTC").to_string())
    );
    let text = alice.text(approval_css);
    let readings = clock_readings(approved_at, &kolkata);
    assert!(
        readings.iter().any(|r| text.contains(r.as_str())),
        "{text} is not {readings:?}"
    );
    alice.screenshot("request-local-times");

    // Without JavaScript the page says UTC: that is what the server writes.
    let html = no_redirects()
        .get(page_of(&s, &rid))
        .header("Cookie", ui_session(&s, "demo-alice"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        html.contains(&format!("<time datetime=\"{}\">{utc_text}</time>", filed.to_rfc3339())),
        "{html}"
    );
    assert!(
        html.contains("<script src=\"/ui/static/time.js\" defer></script>"),
        "{html}"
    );
    clean_console(&alice);
    clean_console(&bob);
}

#[test]
fn the_time_script_is_served_like_the_stylesheet_gzip_included() {
    let s = Server::start();
    let plain = no_redirects()
        .get(format!("{}/ui/static/time.js", s.url))
        .header("Accept-Encoding", "identity")
        .send()
        .unwrap();
    assert_eq!(plain.status().as_u16(), 200);
    assert_eq!(plain.headers()["content-type"], "text/javascript; charset=utf-8");
    assert!(plain.text().unwrap().contains("htmx:load"));
    let gzipped = no_redirects()
        .get(format!("{}/ui/static/time.js", s.url))
        .header("Accept-Encoding", "gzip")
        .send()
        .unwrap();
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
}

#[test]
fn request_sent_to_sre_names_whom_it_waits_for() {
    let s = Server::start();
    let alice = browser(DESKTOP);
    sign_in(&alice, &s, "demo-alice");
    alice.click("nav a[href='/ui/new']");
    alice.select("#target", "prod-db|read");
    alice.type_into("#duration", "30m");
    alice.type_into("#reason", "INC-5: checking the replica");
    alice.click("#file");
    alice.wait_for_text("#state .badge", "pending");
    assert_eq!(alice.text(".flash"), "Request sent to sre.");
    // Once: a reload shows no banner.
    alice.goto(&alice.url());
    alice.find("#state");
    assert!(!alice.exists(".flash"));
    clean_console(&alice);
}

/// File over the form's own POST as `token`; the banner on the page it leads to.
fn banner_after_filing(s: &Server, token: &str, form: &str) -> String {
    let session = ui_session(s, token);
    let filed = no_redirects()
        .post(format!("{}/ui/requests", s.url))
        .header("Cookie", &session)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("csrf={}&{form}", "a".repeat(64)))
        .send()
        .unwrap();
    assert_eq!(filed.status().as_u16(), 303, "{:?}", filed.text());
    let location = filed.headers()["location"].to_str().unwrap().to_string();
    let flash = filed
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("jitgate_flash="))
        .expect("a confirmation")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let html = no_redirects()
        .get(format!("{}{location}", s.url))
        .header("Cookie", format!("{session}; {flash}"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let banner = html
        .split("<p class=\"flash\" role=\"status\">")
        .nth(1)
        .unwrap_or_else(|| panic!("no banner: {html}"));
    banner.split("</p>").next().unwrap().to_string()
}

#[test]
fn an_automatic_or_break_glass_request_says_it_was_granted_at_once() {
    let s = Server::start();
    assert_eq!(
        banner_after_filing(&s, "demo-alice", "target=staging-db%7Cread&duration=1h&reason=tests"),
        "Granted at once."
    );
    assert_eq!(
        banner_after_filing(
            &s,
            "demo-bob",
            "target=prod-db%7Cwrite&duration=10m&reason=OPS-9%3A+outage&break_glass=on"
        ),
        "Granted at once: break-glass. A review is owed afterwards."
    );
}

/// The requests listed are bounded (the last 5 of the same resource, newest first), and one
/// requester's flood of other requests costs the page no more than its fixed scan, which
/// the page says it looked through.
#[test]
fn the_recent_requests_are_the_last_five_for_the_resource_newest_first() {
    let s = Server::start();
    let mut earlier = Vec::new();
    for n in 0..6 {
        let r = s.file(
            "demo-alice",
            json!({"resource": "prod-db", "action": "read", "duration": "5m", "reason": format!("INC-{n}: look")}),
        );
        earlier.push(id(&r));
    }
    let r = s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "write", "duration": "30m", "reason": "OPS-77: reindex"}),
    );
    let bob = browser(DESKTOP);
    sign_in(&bob, &s, "demo-bob");
    bob.goto(&page_of(&s, &id(&r)));
    bob.find("#if-approve-recent");
    let html = bob.source();
    let listed: Vec<&str> = html
        .split("id=\"if-approve-recent\"")
        .nth(1)
        .unwrap()
        .split("</ul>")
        .next()
        .unwrap()
        .split("href=\"/ui/requests/")
        .skip(1)
        .map(|s| s.split('"').next().unwrap())
        .collect();
    let newest_five: Vec<&str> = earlier.iter().rev().take(5).map(String::as_str).collect();
    assert_eq!(listed, newest_five);
    assert_eq!(
        box_text(&bob, "#if-approve-recent-scope"),
        "Looked for among the last 25 of alice's requests that you may see."
    );
}

/// A hostile `HX-Request` header (htmx's refresh of the live part) only leaves the box out;
/// the box never shows to those who may not approve, however they ask.
#[test]
fn the_box_is_given_only_to_a_reviewer_whose_approval_is_owed() {
    let s = Server::start();
    let r = s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "read", "duration": "30m", "reason": "INC-3: lag"}),
    );
    let path = format!("/ui/requests/{}", id(&r));
    let page = |token: &str, htmx: bool| {
        let mut get = no_redirects()
            .get(format!("{}{path}", s.url))
            .header("Cookie", ui_session(&s, token));
        if htmx {
            get = get.header("HX-Request", "true");
        }
        let response = get.send().unwrap();
        (response.status().as_u16(), response.text().unwrap())
    };
    let (status, html) = page("demo-bob", false);
    assert_eq!(status, 200);
    assert!(html.contains("id=\"if-approve\""), "{html}");
    let (status, html) = page("demo-bob", true);
    assert_eq!(status, 200);
    // The live part's refresh carries the place (refreshed with the state) but does not read
    // the requester's history.
    assert!(html.contains("id=\"if-approve-live\""), "{html}");
    assert!(html.contains("Yours is the 1st of 1 from sre."), "{html}");
    assert!(
        !html.contains("id=\"if-approve-recent"),
        "the live part's refresh does not read the history: {html}"
    );
    // Those who may see the request get its page (200), never the box.
    for (token, sees) in [
        ("demo-alice", true),
        ("demo-dave", false),
        ("demo-auditor", true),
        ("demo-admin", true),
    ] {
        for htmx in [false, true] {
            let (status, html) = page(token, htmx);
            assert_eq!(status, if sees { 200 } else { 404 }, "{token}: {html}");
            assert!(
                !html.contains("id=\"if-approve"),
                "{token} may not approve: {status} {html}"
            );
        }
    }
}

/// The request page as `token` sees it, over plain HTTP.
fn page_as(s: &Server, token: &str, path: &str) -> (u16, String) {
    let response = no_redirects()
        .get(format!("{}{path}", s.url))
        .header("Cookie", ui_session(s, token))
        .send()
        .unwrap();
    (response.status().as_u16(), response.text().unwrap())
}

/// The box's part with `id`, its markup up to the end of its element.
fn part<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in {html}"));
    let rest = &html[start..];
    &rest[..rest.find("</p>").or_else(|| rest.find("</ul>")).unwrap_or(rest.len())]
}

#[test]
fn a_multi_item_request_is_told_item_by_item_with_each_payload_and_hash() {
    let s = Server::start();
    let payload = "deploy api@sha256:9c1e <b>bold</b>";
    let r = s.file(
        "demo-alice",
        json!({"items": [
            {"resource": "prod-db", "action": "read"},
            {"resource": "prod-api", "action": "deploy", "payload": payload}
        ], "reason": "INC-8: release with a look at the data", "duration": "20m"}),
    );
    let (status, html) = page_as(&s, "demo-bob", &format!("/ui/requests/{}", id(&r)));
    assert_eq!(status, 200, "{html}");
    let access = part(&html, "if-approve-access");
    assert!(
        access.contains("<strong>alice</strong> gets <em>read</em> on <strong>prod-db</strong>"),
        "{access}"
    );
    assert!(
        access.contains(
            "<strong>alice</strong> gets <em>deploy</em> on <strong>prod-api</strong>, for exactly the action below"
        ),
        "{access}"
    );
    let place = part(&html, "if-approve-place");
    assert!(
        place.contains("For read on prod-db: Yours is the 1st of 1 from sre."),
        "{place}"
    );
    assert!(
        place.contains("For deploy on prod-api: Yours is the 1st of 1 from sre."),
        "{place}"
    );
    assert!(
        place.contains("Yours is the last approval it needs: alice has access at once."),
        "{place}"
    );
    assert!(
        part(&html, "if-approve-window").contains("for 20m: until about"),
        "{html}"
    );
    // The item's payload, escaped, with its hash in full.
    assert!(html.contains("The exact action for deploy on prod-api"), "{html}");
    assert!(
        html.contains("&#60;b&#62;bold&#60;/b&#62;") && !html.contains("<b>bold</b>"),
        "{html}"
    );
    let sha = hex::encode(Sha256::digest(payload.as_bytes()));
    assert!(
        html.contains(&format!("<code class=\"if-approve-sha256\">{sha}</code>")),
        "{html}"
    );
    assert!(part(&html, "if-approve-recent-heading").contains("recent requests for prod-db and prod-api"));
}

/// Requests the reviewer may not see (another resource's automatic grants) are skipped, so a
/// flood of them neither hides the history nor costs the page more than its bounded scan.
#[test]
fn a_flood_of_requests_the_reviewer_cannot_see_does_not_hide_the_history() {
    let s = Server::start();
    let earlier = s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "read", "duration": "5m", "reason": "INC-1: look"}),
    );
    for n in 0..40 {
        s.file(
            "demo-alice",
            json!({"resource": "staging-db", "action": "read", "duration": "5m", "reason": format!("run {n}")}),
        );
    }
    let r = s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "write", "duration": "30m", "reason": "OPS-5: reindex"}),
    );
    let started = std::time::Instant::now();
    let (status, html) = page_as(&s, "demo-bob", &format!("/ui/requests/{}", id(&r)));
    assert_eq!(status, 200);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let recent = part(&html, "if-approve-recent");
    assert!(recent.contains(&id(&earlier)), "{recent}");
    assert!(!recent.contains("staging-db"), "{recent}");
}

/// A requester the directory does not know is said to be unknown; a look-alike of alice
/// (`a1ice`, `Alice`) borrows neither her groups nor her history.
#[test]
fn a_requester_unknown_to_the_directory_is_said_so_and_a_lookalike_borrows_nothing() {
    let s = Server::start();
    let alices = s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "read", "duration": "5m", "reason": "INC-1: look"}),
    );
    let mut tried = 0;
    for name in ["a1ice", "Alice", "alice.", "zoe"] {
        let (code, out, err) = s.cli(
            "demo-admin",
            &[
                "token",
                "create",
                "--principal",
                name,
                "--groups",
                "dev",
                "--output",
                "json",
            ],
        );
        if code != 0 {
            // Refused as a look-alike of a principal the directory names: nothing to borrow.
            assert!(name != "a1ice" && name != "zoe", "{name}: {out}{err}");
            continue;
        }
        tried += 1;
        let token = serde_json::from_str::<Value>(&out).unwrap()["token"]
            .as_str()
            .unwrap()
            .to_string();
        let r = s.file(
            &token,
            json!({"resource": "prod-db", "action": "read", "duration": "5m", "reason": "INC-2: look"}),
        );
        let (status, html) = page_as(&s, "demo-bob", &format!("/ui/requests/{}", id(&r)));
        assert_eq!(status, 200, "{html}");
        let groups = part(&html, "if-approve-groups");
        assert!(
            groups.contains(&format!(
                "{name} is not in jitgate&#39;s directory: their groups came with their sign-in and are not kept."
            )),
            "{name}: {groups}"
        );
        assert!(!html.contains(&id(&alices)), "{name} is shown alice's request: {html}");
    }
    assert!(tried >= 2, "a1ice and zoe are plain new principals");
}

/// Hostile request ids in the page's path: not found (control and bidi characters: the UI's
/// page naming the id, by the check every route has, before any store), never a 500, never
/// a box.
#[test]
fn hostile_request_ids_are_refused_or_not_found() {
    let s = Server::start();
    let long = "r".repeat(10_000);
    for path in [
        "/ui/requests/req_%00x".to_string(),
        "/ui/requests/req_%E2%80%AEx".to_string(),
        "/ui/requests/req_%0d%0aSet-Cookie:%20x=1".to_string(),
        "/ui/requests/%EF%BC%B2EQ_1".to_string(),
        format!("/ui/requests/{long}"),
    ] {
        let (status, html) = page_as(&s, "demo-bob", &path);
        match status {
            422 => assert!(html.contains("id: contains"), "{path}: {html}"),
            404 => assert!(html.contains("Not found"), "{path}: {html}"),
            _ => panic!("{path}: {status} {html}"),
        }
        assert!(!html.contains("id=\"if-approve\""), "{path}");
    }
}

/// The box on PostgreSQL reads as on SQLite: the place, the groups, the history found with
/// the store's requester filter; a NUL byte in the page's id is refused the same way, before
/// the database (which cannot hold one in text) sees it.
#[test]
fn the_box_on_postgres() {
    use crate::support::postgres::{Postgres, SUPERUSER_PASSWORD};
    let pg = Postgres::start();
    pg.admin("postgres", "CREATE DATABASE jitgate");
    let url = pg.url("postgres", SUPERUSER_PASSWORD, "jitgate");
    let s = Server::start_on(&quickstart(), None, Some(&url));
    let earlier = s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "read", "duration": "5m", "reason": "INC-1: look"}),
    );
    let r = s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "write", "duration": "30m", "reason": "OPS-4: reindex"}),
    );
    let (status, html) = page_as(&s, "demo-bob", &format!("/ui/requests/{}", id(&r)));
    assert_eq!(status, 200, "{html}");
    assert!(
        part(&html, "if-approve-place").contains("Yours is the 1st of 2 from sre."),
        "{html}"
    );
    assert!(part(&html, "if-approve-groups").contains("alice is in dev."), "{html}");
    assert!(part(&html, "if-approve-recent").contains(&id(&earlier)), "{html}");
    // An id with a NUL names no page of ours: the UI's guard answers "not found", naming the
    // character, before any store sees it (PostgreSQL would refuse the NUL).
    let (status, html) = page_as(&s, "demo-bob", &format!("/ui/requests/{}%00", id(&r)));
    assert_eq!(status, 404, "{html}");
    assert!(html.contains("id: contains a NUL byte"), "{html}");
}

/// The box's place goes stale no more: it is refreshed with the request's state, and an
/// approval is bound to the place it was shown. bob is told "the 1st of 2"; carol approves;
/// had bob clicked before his page caught up, his approval (now the last, granting at once)
/// is refused and nothing is recorded; the page, once refreshed, tells him the truth.
#[test]
fn an_approval_is_refused_when_another_landed_since_the_reviewer_looked() {
    let s = Server::start();
    let r = s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "write", "duration": "30m", "reason": "OPS-77: vacuum"}),
    );
    let rid = id(&r);
    let bob = browser(DESKTOP);
    sign_in(&bob, &s, "demo-bob");
    bob.goto(&page_of(&s, &rid));
    assert!(box_text(&bob, "#if-approve-place").contains("Yours is the 1st of 2 from sre."));
    assert_eq!(
        bob.attribute("input[name=expect_places]", "value").as_deref(),
        Some("0")
    );
    assert_eq!(
        bob.attribute("input[name=expect_last]", "value").as_deref(),
        Some("false")
    );
    // Freeze bob's page as it was (a click before the next refresh): the live part, cloned
    // without htmx's poll.
    bob.execute(
        "const s = document.getElementById('state'); s.replaceWith(s.cloneNode(true)); return 1;",
        vec![],
    );
    let (status, body) = s.post(&format!("/v1/requests/{rid}/approve"), "demo-carol", json!({}));
    assert_eq!(status, 200, "{body}");
    bob.click("#approve");
    bob.wait_for_text("main", "changed since you looked");
    // Its title says what happened, not "already decided": the request still waits.
    assert!(
        bob.text("main h1").contains("Nothing was changed"),
        "{}",
        bob.text("main")
    );
    let (_, after) = s.get(&format!("/v1/requests/{rid}"), "demo-bob");
    assert_eq!(after["status"], "pending", "{after}");
    assert_eq!(after["approvals"].as_array().unwrap().len(), 1, "only carol's: {after}");
    assert_eq!(s.check("alice", "prod-db", "write", None)["allow"], false);

    // A page left open refreshes the place: the 2nd of 2, the last, with the fields it sends.
    bob.goto(&page_of(&s, &rid));
    assert!(box_text(&bob, "#if-approve-place").contains("Yours is the 2nd of 2 from sre."));
    let erin = browser(DESKTOP);
    sign_in(&erin, &s, "demo-erin");
    let r2 = s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "write", "duration": "30m", "reason": "OPS-78: vacuum"}),
    );
    let rid2 = id(&r2);
    erin.goto(&page_of(&s, &rid2));
    assert!(box_text(&erin, "#if-approve-place").contains("Yours is the 1st of 2 from sre."));
    let (status, body) = s.post(&format!("/v1/requests/{rid2}/approve"), "demo-carol", json!({}));
    assert_eq!(status, 200, "{body}");
    erin.wait_for_text("#if-approve-place", "Yours is the 2nd of 2 from sre.");
    assert!(box_text(&erin, "#if-approve-place").contains("alice has access at once"));
    assert!(box_text(&erin, "#if-approve-window").starts_with("From the moment you approve"));
    assert_eq!(
        erin.attribute("input[name=expect_places]", "value").as_deref(),
        Some("1")
    );
    assert_eq!(
        erin.attribute("input[name=expect_last]", "value").as_deref(),
        Some("true")
    );
    // The history is still there (read once, not on each refresh).
    assert!(erin.exists("#if-approve-recent-heading"));
    erin.click("#approve");
    erin.wait_for_text("#state .badge", "approved");
    assert_eq!(s.check("alice", "prod-db", "write", None)["allow"], true);
    // (bob's console holds the refused POST's 409, as it should.)
    clean_console(&erin);
}

/// A UI form POST as `token`, with the session's CSRF token; the status and the page.
fn ui_post(s: &Server, token: &str, path: &str, body: &str) -> (u16, String) {
    let response = no_redirects()
        .post(format!("{}{path}", s.url))
        .header("Cookie", ui_session(s, token))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("csrf={}&{body}", "a".repeat(64)))
        .send()
        .unwrap();
    (response.status().as_u16(), response.text().unwrap())
}

/// The value of the hidden input `name` on a page.
fn hidden(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\""))?;
    let rest = &html[at..];
    let value = &rest[rest.find("value=\"")? + 7..];
    Some(value[..value.find('"')?].to_string())
}

/// Each action-bound item's hash is bound, not only the first's: the form sends every item's,
/// the service checks each against its own item's payload, and records each on its own
/// approval. A payload changed behind the page's back on a further item refuses the approval.
#[test]
fn every_items_payload_hash_is_sent_checked_and_recorded_on_its_own_approval() {
    let s = Server::start();
    let payload = "deploy api@sha256:77aa v2.0";
    let r = s.file(
        "demo-alice",
        json!({"items": [
            {"resource": "prod-db", "action": "read"},
            {"resource": "prod-api", "action": "deploy", "payload": payload}
        ], "reason": "INC-9: release", "duration": "20m"}),
    );
    let rid = id(&r);
    let path = format!("/ui/requests/{rid}");
    let (status, html) = page_as(&s, "demo-bob", &path);
    assert_eq!(status, 200, "{html}");
    let sha = hex::encode(Sha256::digest(payload.as_bytes()));
    assert_eq!(
        hidden(&html, "payload_sha256_1").as_deref(),
        Some(sha.as_str()),
        "{html}"
    );
    assert_eq!(hidden(&html, "expect_places").as_deref(), Some("0,0"));
    assert_eq!(hidden(&html, "expect_last").as_deref(), Some("true"));
    // The deploy item's payload replaced after bob looked: his approval, bound to what he saw,
    // is refused and nothing is recorded.
    let swapped = "deploy api@sha256:666 v2.0";
    let swapped_sha = hex::encode(Sha256::digest(swapped.as_bytes()));
    s.sqlite(&format!(
        "UPDATE requests SET doc = json_set(doc, '$.items[0].payload', '{swapped}', '$.items[0].payload_sha256', '{swapped_sha}') WHERE id = '{rid}'"
    ));
    let form = format!("payload_sha256_1={sha}&expect_places=0,0&expect_last=true");
    let (status, page) = ui_post(&s, "demo-bob", &format!("{path}/approve"), &form);
    assert_eq!(status, 409, "{page}");
    assert!(page.contains("deploy on prod-api"), "{page}");
    let (_, now) = s.get(&format!("/v1/requests/{rid}"), "demo-bob");
    assert_eq!(now["status"], "pending", "{now}");
    assert!(now["approvals"].as_array().unwrap().is_empty(), "{now}");
    // Another item's hash sent as this one's: refused too.
    let (status, _) = ui_post(
        &s,
        "demo-bob",
        &format!("{path}/approve"),
        &format!("payload_sha256={swapped_sha}&expect_places=0,0&expect_last=true"),
    );
    assert_eq!(status, 409);
    // Hostile fields: not a hash, an item that does not exist, a place that is no count.
    for bad in [
        "payload_sha256_1=xyz",
        "payload_sha256_99=aa",
        "payload_sha256_x=aa",
        "expect_places=0,%00",
        "expect_last=maybe",
    ] {
        let (status, page) = ui_post(&s, "demo-bob", &format!("{path}/approve"), bad);
        assert_eq!(status, 422, "{bad}: {page}");
    }
    // What the page now shows, approved: each item's approval records its own hash.
    let (_, html) = page_as(&s, "demo-bob", &path);
    assert_eq!(hidden(&html, "payload_sha256_1").as_deref(), Some(swapped_sha.as_str()));
    let form = format!("payload_sha256_1={swapped_sha}&expect_places=0,0&expect_last=true");
    let (status, page) = ui_post(&s, "demo-bob", &format!("{path}/approve"), &form);
    assert_eq!(status, 303, "{page}");
    let (_, after) = s.get(&format!("/v1/requests/{rid}"), "demo-bob");
    assert_eq!(after["status"], "approved", "{after}");
    assert!(after["approvals"][0]["payload_sha256"].is_null(), "{after}");
    assert_eq!(
        after["items"][1]["approvals"][0]["payload_sha256"],
        swapped_sha.as_str(),
        "{after}"
    );
}

/// An approval that would count towards no step (the step's group changed, a workflow gone):
/// no box, no Approve, on the page and in the inbox; an action-bound payload without its hash
/// is still shown, with the alert.
#[test]
fn no_box_where_the_approval_counts_for_nothing_and_a_payload_without_hash_is_shown() {
    let s = Server::start();
    // sre's step is full (carol's approval) and the rest is security's: bob's approval, though
    // the policy lets sre review it, would count towards nothing.
    let r = s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "write", "duration": "30m", "reason": "OPS-3: lag"}),
    );
    let rid = id(&r);
    let (status, body) = s.post(&format!("/v1/requests/{rid}/approve"), "demo-carol", json!({}));
    assert_eq!(status, 200, "{body}");
    s.sqlite(&format!(
        "UPDATE requests SET doc = json_set(doc, '$.requirement.steps', \
         json('[{{\"group\":\"sre\",\"approvals\":1}},{{\"group\":\"security\",\"approvals\":1}}]')) WHERE id = '{rid}'"
    ));
    assert_eq!(s.get(&format!("/v1/requests/{rid}"), "demo-bob").1["status"], "pending");
    let (status, html) = page_as(&s, "demo-bob", &format!("/ui/requests/{rid}"));
    assert_eq!(status, 200, "{html}");
    assert!(!html.contains("id=\"if-approve"), "{html}");
    assert!(!html.contains("id=\"approve\""), "{html}");
    let (status, inbox) = page_as(&s, "demo-bob", "/ui/inbox");
    assert_eq!(status, 200);
    assert!(!inbox.contains(&rid), "{inbox}");

    let d = s.file(
        "demo-alice",
        json!({"resource": "prod-api", "action": "deploy", "reason": "release", "payload": "deploy v9"}),
    );
    let did = id(&d);
    s.sqlite(&format!(
        "UPDATE requests SET doc = json_remove(doc, '$.payload_sha256') WHERE id = '{did}'"
    ));
    let (status, html) = page_as(&s, "demo-bob", &format!("/ui/requests/{did}"));
    assert_eq!(status, 200, "{html}");
    let in_box = html.split("id=\"if-approve\"").nth(1).expect("a box");
    assert!(in_box.contains("deploy v9"), "the payload is shown: {html}");
    assert!(in_box.contains("carries no hash of its payload"), "{html}");
}
