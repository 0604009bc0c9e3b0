//! Accessibility in a real browser (#27): axe-core, the reference engine of WCAG rules, runs in
//! headless Chromium on every page of the web UI at desktop and phone sizes and must find no
//! violation of WCAG 2.2 level A or AA; the inbox reads as cards on a phone with Approve and
//! Deny in reach; one requester's many requests cannot bury another's. Each page is
//! photographed at both sizes into `target/ui-screenshots/` (`scripts/ui-screenshots.sh` copies
//! them to `docs/ui/`).
//!
//! axe-core comes from npm, pinned in `scripts/ui/package.json` and its lock, installed by
//! `scripts/ui.sh` with `npm ci` into `target/node-ui`. It is injected through WebDriver's
//! `execute`, which Chromium runs over the DevTools protocol: the pages' Content-Security-Policy
//! (`script-src 'self'`) stays on and untouched while axe reads them.

use super::{sign_in, DESKTOP, PHONE};
use crate::support::browser::{clean_console, Browser};
use crate::support::*;
use serde_json::json;
use std::time::Duration;

/// The rule sets of WCAG 2.2 levels A and AA, as axe-core tags them.
const WCAG_22_AA: [&str; 5] = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"];

/// axe-core's `axe.min.js`, from the pinned npm package (`scripts/ui.sh axe` installs it when
/// missing and prints its path).
fn axe_source() -> String {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../scripts/ui.sh");
    let out = std::process::Command::new(&script)
        .arg("axe")
        .output()
        .expect("scripts/ui.sh (node and npm: apt-get install nodejs npm; scripts/test.sh does)");
    assert!(
        out.status.success(),
        "scripts/ui.sh axe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = String::from_utf8(out.stdout).unwrap();
    let source = std::fs::read_to_string(path.trim()).unwrap();
    assert!(source.contains("axe v4."), "axe-core's script at {path}");
    source
}

/// What axe-core finds against WCAG 2.2 A and AA on the page the browser shows, one entry per
/// rule broken: its id, impact, help text and every element that breaks it (CSS selector, the
/// element's markup, and what to fix).
pub(super) fn wcag_violations(b: &Browser, axe: &str) -> Vec<String> {
    // Once per document: a page reached by navigating starts without it.
    let loaded = b.execute(
        &format!("if (!window.axe) {{\n{axe}\n}}\nreturn typeof window.axe.run;"),
        vec![],
    );
    assert_eq!(loaded, "function", "axe-core did not load on {}", b.url());
    // The page holds still while it is checked: no htmx refresh swaps nodes out from under axe
    // (until the next navigation).
    b.execute(
        "document.addEventListener('htmx:beforeRequest', e => e.preventDefault());",
        vec![],
    );
    // A refresh already in flight when the blocker went in would still swap nodes: wait
    // until htmx has no request, swap or settle under way.
    wait_until_within(&format!("htmx is idle on {}", b.url()), Duration::from_secs(15), || {
        b.execute(
            "return document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling') === null",
            vec![],
        ) == true
    });
    let found = b.execute_async(
        "const done = arguments[arguments.length - 1];
         axe.run(document, {runOnly: {type: 'tag', values: arguments[0]}, resultTypes: ['violations']})
           .then(r => done(r.violations.map(v => ({
               id: v.id, impact: v.impact, help: v.help,
               nodes: v.nodes.map(n => ({target: n.target.join(' '), html: n.html, fix: n.failureSummary}))}))))
           .catch(e => done([{id: 'axe-error', impact: 'error', help: String(e), nodes: []}]));",
        vec![json!(WCAG_22_AA)],
        Duration::from_secs(60),
    );
    let found = found.as_array().cloned().unwrap_or_else(|| panic!("axe.run: {found}"));
    found
        .iter()
        .map(|v| {
            let nodes: Vec<String> = v["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|n| {
                    format!(
                        "    at {}: {}\n      {}",
                        n["target"],
                        n["html"],
                        n["fix"].as_str().unwrap_or_default().replace('\n', "\n      ")
                    )
                })
                .collect();
            format!("{} ({}): {}\n{}", v["id"], v["impact"], v["help"], nodes.join("\n"))
        })
        .collect()
}

/// A browser of that size: a phone's is emulated, exactly (a headless window is 500 pixels wide
/// at least), and checked.
fn phone_or_desktop(s: &Server, width: u32, height: u32) -> Browser {
    let b = Browser::start(width, height);
    if (width, height) == PHONE {
        b.emulate_phone(width, height);
        // A page of the UI: its viewport is the device's width (an empty page's is 980).
        b.goto(&format!("{}/ui/login", s.url));
        let seen = b.execute("return [window.innerWidth, window.innerHeight];", vec![]);
        assert_eq!(seen, json!([width, height]), "the phone's viewport");
    }
    b
}

/// One page of the UI to check: how to reach it, and what it shows once there.
struct Page {
    /// Its name in the report and in the screenshots' (`NAME-desktop.png`, `NAME-phone.png`).
    name: &'static str,
    /// The API token of who looks at it; `None`: signed out.
    who: Option<&'static str>,
    /// The path to open.
    path: String,
    /// What to do on the page before checking it (fill in a form and send it...).
    then: Option<fn(&Browser)>,
    /// Something the page must show once ready: (CSS selector, text it contains).
    ready: (&'static str, &'static str),
}

fn page(
    name: &'static str,
    who: Option<&'static str>,
    path: impl Into<String>,
    ready: (&'static str, &'static str),
) -> Page {
    Page {
        name,
        who,
        path: path.into(),
        then: None,
        ready,
    }
}

impl Page {
    fn then(mut self, step: fn(&Browser)) -> Page {
        self.then = Some(step);
        self
    }
}

/// The requests the pages show, filed through the API.
struct Seeded {
    /// dave's prod-db read, pending: bob may approve it.
    pending: String,
    /// alice's prod-db read, approved by bob: an active grant, extendable once.
    approved: String,
    /// Its grant's id.
    approved_grant: String,
    /// alice's bastion login, approved by bob: an SSH grant (its next step a command).
    ssh: String,
    /// alice's prod-db write (two approvals from sre), approved once by bob.
    half_approved: String,
    /// alice's request of two items (staging-db read and prod-db read), pending.
    items: String,
    /// alice's action-bound prod-api deploy, its payload with markup in it.
    deploy: String,
    /// carol's break-glass write on prod-db, its review owed.
    glass: String,
}

fn seed(s: &Server) -> Seeded {
    let pending = id(&s.file(
        "demo-dave",
        json!({"resource": "prod-db", "action": "read", "duration": "30m", "reason": "INC-7: slow queries"}),
    ));
    let approved = id(&s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "read", "duration": "30m", "reason": "INC-42: replica lag"}),
    ));
    let (status, r) = s.post(
        &format!("/v1/requests/{approved}/approve"),
        "demo-bob",
        json!({"comment": "ok"}),
    );
    assert_eq!((status, r["grant"]["status"].as_str()), (200, Some("active")), "{r}");
    let approved_grant = r["grant"]["id"].as_str().unwrap().to_string();
    let ssh = id(&s.file(
        "demo-alice",
        json!({"resource": "bastion", "action": "login", "duration": "30m", "reason": "INC-42: look at the logs"}),
    ));
    let (status, r) = s.post(&format!("/v1/requests/{ssh}/approve"), "demo-bob", json!({}));
    assert_eq!((status, r["grant"]["status"].as_str()), (200, Some("active")), "{r}");
    let half_approved = id(&s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "write", "duration": "10m", "reason": "OPS-123: rebuild the index"}),
    ));
    let (status, r) = s.post(&format!("/v1/requests/{half_approved}/approve"), "demo-bob", json!({}));
    assert_eq!((status, r["status"].as_str()), (200, Some("pending")), "{r}");
    let items = id(&s.file(
        "demo-alice",
        json!({"items": [{"resource": "staging-db", "action": "read"}, {"resource": "prod-db", "action": "read"}],
               "duration": "30m", "reason": "OPS-3 compare staging with prod"}),
    ));
    let deploy = id(&s.file(
        "demo-alice",
        json!({"resource": "prod-api", "action": "deploy", "reason": "OPS-9 ship",
               "payload": "{\"image\":\"api:1.2.3\",\"note\":\"<b>bold</b>\"}"}),
    ));
    let glass = id(&s.file(
        "demo-carol",
        json!({"resource": "prod-db", "action": "write", "duration": "10m", "reason": "INC-9: disk full", "break_glass": true}),
    ));
    Seeded {
        pending,
        approved,
        approved_grant,
        ssh,
        half_approved,
        items,
        deploy,
        glass,
    }
}

/// Every page of the UI, in every state worth checking. A page added to the UI is one line here.
fn pages(r: &Seeded) -> Vec<Page> {
    let request = |id: &str| format!("/ui/requests/{id}");
    vec![
        // Signed out.
        page("sign-in", None, "/ui/login", ("main h1", "Sign in")),
        page("sign-in-error", None, "/ui/login", ("main", "")).then(|b| {
            b.type_into("#token", "not-a-token");
            b.click("button[type=submit].primary");
            b.find("main .error, main .alert, main [role=alert]");
        }),
        page("signed-out", None, "/ui/login", ("main", "")).then(|b| {
            // Sign in and out: the sign-in page with its confirmation on top.
            b.type_into("#token", "demo-dave");
            b.click("button[type=submit].primary");
            b.click("form.who button[type=submit]");
            b.wait_for_text("main .flash", "Signed out");
        }),
        // A reviewer: the inbox with rows, a review owed and one already approved.
        page("inbox", Some("demo-bob"), "/ui/inbox", ("#rows", "review owed")),
        page(
            "inbox-one-requester",
            Some("demo-bob"),
            "/ui/inbox?requester=alice",
            ("#filtered", "alice"),
        ),
        page(
            "request-pending-reviewer",
            Some("demo-bob"),
            request(&r.pending),
            ("#state .badge", "pending"),
        ),
        page(
            "request-you-approved",
            Some("demo-bob"),
            request(&r.half_approved),
            ("#you-approved", "You approved"),
        ),
        page(
            "request-payload",
            Some("demo-bob"),
            request(&r.deploy),
            ("#if-approve", "If you approve"),
        ),
        // A reviewer revoking alice's grant: the question first (part A).
        page(
            "revoke-confirm",
            Some("demo-bob"),
            format!("/ui/grants/{}/revoke", r.approved_grant),
            ("main h1", "Revoke alice's read on prod-db?"),
        ),
        page(
            "request-break-glass",
            Some("demo-bob"),
            request(&r.glass),
            ("main", "Break-glass"),
        ),
        // A requester.
        page(
            "inbox-empty",
            Some("demo-alice"),
            "/ui/inbox",
            ("#rows", "Nothing waits for you"),
        ),
        page(
            "my-requests",
            Some("demo-alice"),
            "/ui/requests",
            ("main table", "prod-db"),
        ),
        page(
            "request-approved",
            Some("demo-alice"),
            request(&r.approved),
            ("#grant-panel-title", "Your access"),
        ),
        // The holder's actions on an SSH grant: its command as the next step, End now.
        page(
            "request-ssh-grant",
            Some("demo-alice"),
            request(&r.ssh),
            ("code.ssh-command", "jitgate ssh"),
        ),
        // An extension refused without JavaScript's help: the form again as a page, the
        // refusal beside the duration (a form sent by the browser itself, as with htmx off).
        page(
            "extend-refused",
            Some("demo-alice"),
            request(&r.approved),
            ("form.extend", "Extend by"),
        )
        .then(|b| {
            b.execute(
                "const form = document.querySelector('form.extend');
                 form.querySelector('[name=duration]').value = '10h';
                 form.querySelector('[name=reason]').value = 'INC-42: still lagging';
                 HTMLFormElement.prototype.submit.call(form);",
                vec![],
            );
            b.wait_for_text("main h1", "Extend");
            b.find("form.extend p.error");
        }),
        page(
            "request-items",
            Some("demo-alice"),
            request(&r.items),
            ("main", "staging-db"),
        ),
        page("new-request", Some("demo-alice"), "/ui/new", ("main h1", "")),
        page(
            "new-request-again",
            Some("demo-alice"),
            format!("/ui/new?again={}", r.approved),
            ("#fields", "at most"),
        ),
        page(
            "new-request-error",
            Some("demo-alice"),
            "/ui/new?resource=prod-db&action=write",
            ("main", ""),
        )
        .then(|b| {
            // No ticket in the reason: refused, the form shown again with the error.
            b.type_into("#reason", "rebuild the index");
            b.click("#file");
            b.wait_for_text("#reason-error", "ticket");
        }),
        page("grants", Some("demo-alice"), "/ui/grants", ("#grant-rows", "prod-db")),
        page(
            "not-found",
            Some("demo-alice"),
            "/ui/requests/req_nothing_here",
            ("main h1", "Not found"),
        ),
        page("forbidden", Some("demo-alice"), "/ui/audit", ("main h1", "Not allowed")),
        // An auditor.
        page(
            "audit",
            Some("demo-auditor"),
            "/ui/audit",
            ("table.audit", "request.filed"),
        ),
        page("explain", Some("demo-auditor"), "/ui/explain", ("main h1", "")),
        // Someone who may request nothing: whom to ask instead of a form (part C).
        page(
            "new-request-empty",
            Some("demo-admin"),
            "/ui/new",
            ("#empty-state", "No workflow lets you"),
        ),
        // Filed from the form: the request's page says whom it waits for (part B). Last, as
        // it files a request of dave's each time it is shown.
        page(
            "request-sent",
            Some("demo-dave"),
            "/ui/new?resource=prod-db&action=read",
            ("main", ""),
        )
        .then(|b| {
            b.type_into("#reason", "INC-5: check the replica");
            b.click("#file");
            b.wait_for_text("main .flash", "Request sent to sre");
        }),
        page(
            "explain-answer",
            Some("demo-auditor"),
            "/ui/explain?resource=prod-db&action=read&principal=alice",
            ("main section h2", "prod-db"),
        ),
    ]
}

/// Open `p` in `b` as its viewer (signing out or in as needed; `signed_in` says who is now),
/// do its step, and wait until it shows what it should.
fn open(b: &Browser, s: &Server, p: &Page, signed_in: &mut Option<&'static str>) {
    if *signed_in != p.who {
        if signed_in.is_some() {
            b.goto(&format!("{}/ui/inbox", s.url));
            b.click("form.who button[type=submit]");
            b.find("#token");
        }
        if let Some(token) = p.who {
            sign_in(b, s, token);
        }
        *signed_in = p.who;
    }
    b.goto(&format!("{}{}", s.url, p.path));
    if let Some(step) = p.then {
        step(b);
    }
    b.wait_for_text(p.ready.0, p.ready.1);
}

/// The page broke no rule of its Content-Security-Policy and threw no error; the one error a
/// page may log is its own status when that is an error (the 404 page is a 404).
fn console_clean_but_for_the_status(b: &Browser, name: &str) {
    let problems: Vec<String> = b
        .console()
        .into_iter()
        .filter(|m| m.contains("SEVERE") || m.contains("Content Security Policy") || m.contains("Refused"))
        .filter(|m| !m.contains("Failed to load resource: the server responded with a status of 4"))
        .collect();
    assert!(problems.is_empty(), "{name}: console: {problems:#?}");
}

/// The bar of #27: axe-core reports no violation of WCAG 2.2 A or AA on any page, at desktop
/// and at phone size, and in the dark theme. One server, and one browser per size, for all
/// pages, to keep it quick.
#[test]
fn every_page_has_no_wcag_2_2_aa_violation_on_desktop_phone_and_dark() {
    let axe = axe_source();
    let s = Server::start();
    let seeded = seed(&s);
    let pages = pages(&seeded);
    let mut report = Vec::new();
    let mut checked = 0;
    // The stylesheet has a dark theme too: its colours are checked at one size.
    for (size, (w, h), dark) in [
        ("desktop", DESKTOP, false),
        ("phone", PHONE, false),
        ("dark", DESKTOP, true),
    ] {
        let b = phone_or_desktop(&s, w, h);
        if dark {
            b.prefer_dark();
        }
        let mut signed_in = None;
        for p in &pages {
            open(&b, &s, p, &mut signed_in);
            if dark {
                let on = b.execute("return matchMedia('(prefers-color-scheme: dark)').matches;", vec![]);
                assert_eq!(on, true, "{}: the dark theme", p.name);
            }
            b.screenshot(&format!("{}-{size}", p.name));
            for violation in wcag_violations(&b, &axe) {
                report.push(format!("{} at {size} ({}):\n  {violation}", p.name, b.url()));
            }
            checked += 1;
            console_clean_but_for_the_status(&b, p.name);
        }
    }
    assert_eq!(checked, pages.len() * 3);
    assert!(
        report.is_empty(),
        "{} WCAG 2.2 AA violations:\n{}",
        report.len(),
        report.join("\n")
    );
}

/// Where an element is, as the viewport sees it: (top, bottom, height) in CSS pixels, and the
/// viewport's height.
fn placed(b: &Browser, css: &str) -> (f64, f64, f64, f64) {
    let v = b.execute(
        "const e = document.querySelector(arguments[0]);
         if (!e) return null;
         const r = e.getBoundingClientRect();
         return [r.top, r.bottom, r.height, window.innerHeight];",
        vec![json!(css)],
    );
    let n = |i: usize| {
        v[i].as_f64()
            .unwrap_or_else(|| panic!("no '{css}' on {}: {v}", b.url()))
    };
    (n(0), n(1), n(2), n(3))
}

/// One requester cannot bury others (#27): with 30 of alice's requests waiting and 1 of
/// dave's, bob's inbox says so above the list and dave's is one link away on the first screen,
/// at desktop and on a phone; the filter keeps the inbox's paging. On a phone each request is a
/// card that keeps the reason, with Approve and Deny in view without scrolling (that an
/// action-bound or multi-item request's card has no Approve is asserted by
/// `a_card_approves_only_what_it_shows_and_new_requests_do_not_move_it`).
#[test]
fn the_inbox_groups_by_requester_and_reads_as_cards_on_a_phone() {
    let s = Server::start();
    let dave = id(&s.file(
        "demo-dave",
        json!({"resource": "prod-db", "action": "read", "duration": "30m", "reason": "INC-8: the one from dave"}),
    ));
    let alice: Vec<String> = (0..30)
        .map(|i| {
            id(&s.file(
                "demo-alice",
                json!({"resource": "prod-db", "action": "read", "duration": "30m", "reason": format!("INC-{i}: alice again")}),
            ))
        })
        .collect();

    // The summary, from the first screen of a phone.
    let b = phone_or_desktop(&s, PHONE.0, PHONE.1);
    sign_in(&b, &s, "demo-bob");
    let summary = b.text("nav.by-requester");
    assert!(
        summary.contains("alice 30 waiting") && summary.contains("dave 1 waiting"),
        "{summary}"
    );
    assert!(!summary.contains("at least"), "everything was counted: {summary}");
    // alice's come first (most waiting), and dave's link is on the first screen.
    assert!(summary.find("alice") < summary.find("dave"), "{summary}");
    let dave_link = "nav.by-requester a[href='/ui/inbox?requester=dave']";
    let (top, bottom, _, viewport) = placed(&b, dave_link);
    assert!(
        top >= 0.0 && bottom <= viewport,
        "dave's link at {top}..{bottom} of {viewport}"
    );

    // Cards: the newest request's card shows its reason, and its Approve and Deny, in view.
    let first = format!("#rows tr[data-request='{}']", alice[29]);
    let (_, _, height, _) = placed(&b, &format!("{first} td.reason"));
    assert!(height > 0.0, "the reason is shown on a phone");
    assert!(b.text(&format!("{first} td.reason")).contains("INC-29: alice again"));
    let approve = format!("{first} form.card-decide button.primary");
    let (top, bottom, _, viewport) = placed(&b, &approve);
    assert!(
        top >= 0.0 && bottom <= viewport,
        "Approve at {top}..{bottom} of {viewport}"
    );
    let (top, bottom, _, viewport) = placed(&b, &format!("{first} form.card-decide button.danger"));
    assert!(
        top >= 0.0 && bottom <= viewport,
        "Deny at {top}..{bottom} of {viewport}"
    );
    b.screenshot("inbox-cards-phone");

    // dave's, one tap away: the filter shows his alone, and Approve on his card approves it.
    b.click(dave_link);
    b.wait_for_text("#filtered", "Only dave's requests");
    assert!(b.url().ends_with("/ui/inbox?requester=dave"), "{}", b.url());
    let rows = b.execute(
        "return [...document.querySelectorAll('#rows tr[data-request]')].map(r => r.dataset.request);",
        vec![],
    );
    assert_eq!(rows, json!([dave]), "only dave's");
    assert!(b.exists("nav.by-requester a[aria-current=page][href='/ui/inbox?requester=dave']"));
    b.click(&format!(
        "#rows tr[data-request='{dave}'] form.card-decide button.primary"
    ));
    b.wait_for_text("#state .badge", "approved");
    let (_, r) = s.get(&format!("/v1/requests/{dave}"), "demo-dave");
    assert_eq!(r["status"], "approved", "{r}");
    assert_eq!(r["approvals"][0]["reviewer"], "bob", "{r}");
    clean_console(&b);

    // On a desktop the table stays a table, without the cards' buttons.
    let d = Browser::start(DESKTOP.0, DESKTOP.1);
    sign_in(&d, &s, "demo-bob");
    let (_, _, height, _) = placed(&d, "#rows form.card-decide");
    assert_eq!(height, 0.0, "no card buttons on a desktop");
    assert!(d.text("nav.by-requester").contains("alice 30 waiting"));
    assert!(!d.text("nav.by-requester").contains("dave"), "dave's was approved");
    clean_console(&d);

    // The filter keeps paging: alice's, 50 to a page, with the filter kept in the links.
    let cookie = ui_session(&s, "demo-bob");
    let html = |path: &str| {
        let response = no_redirects()
            .get(format!("{}{path}", s.url))
            .header("Cookie", &cookie)
            .send()
            .unwrap();
        (response.status().as_u16(), response.text().unwrap())
    };
    let (status, page) = html("/ui/inbox?requester=alice");
    assert_eq!(status, 200);
    assert_eq!(page.matches("<tr data-request=").count(), 30, "all of alice's");
    assert!(
        page.contains("hx-get=\"/ui/inbox/rows?requester=alice\""),
        "the live rows keep the filter"
    );
    let (_, rows) = html(&format!("/ui/inbox/rows?requester=alice&before={}", alice[10]));
    let shown: Vec<&str> = rows
        .split("<tr data-request=\"")
        .skip(1)
        .filter_map(|r| r.split('"').next())
        .collect();
    let older: Vec<&str> = alice[..10].iter().rev().map(String::as_str).collect();
    assert_eq!(shown, older, "the cursor pages within the filter");

    hostile_requesters_are_refused(&s);
}

/// A card's Approve approves only what the card shows: not a request of several items (the
/// card names one and "N more") nor an action-bound one (its payload is read on its page). A
/// request arriving while the reviewer looks is announced after the list, never inserted above
/// the cards: the first card's Approve stays exactly where it was.
#[test]
fn a_card_approves_only_what_it_shows_and_new_requests_do_not_move_it() {
    let s = Server::start();
    let single = id(&s.file(
        "demo-dave",
        json!({"resource": "prod-db", "action": "read", "duration": "30m", "reason": "INC-8: dave's"}),
    ));
    let items = id(&s.file(
        "demo-alice",
        json!({"items": [{"resource": "prod-db", "action": "read"}, {"resource": "staging-db", "action": "read"}],
               "duration": "30m", "reason": "OPS-3 compare"}),
    ));
    let deploy = id(&s.file(
        "demo-alice",
        json!({"resource": "prod-api", "action": "deploy", "reason": "OPS-9 ship", "payload": "api:1.2.3"}),
    ));
    let b = phone_or_desktop(&s, PHONE.0, PHONE.1);
    sign_in(&b, &s, "demo-bob");
    let row = |id: &str| format!("#rows tr[data-request='{id}']");
    b.find(&row(&items));
    assert!(b.text(&row(&items)).contains("and 1 more"));
    for (what, id) in [("a multi-item request", &items), ("an action-bound request", &deploy)] {
        assert!(
            !b.exists(&format!("{} form.card-decide", row(id))),
            "{what}'s card has no Approve"
        );
    }
    // The newest card that may be approved in place: the deploy and the items are newer, so
    // the one-item request is below them.
    let approve = format!("{} form.card-decide button.primary", row(&single));
    let before = placed(&b, &approve);
    let newcomer = id(&s.file(
        "demo-erin",
        json!({"resource": "prod-db", "action": "read", "duration": "30m", "reason": "INC-11: erin's"}),
    ));
    b.wait_for_text("#arrived", "1 new request since you opened this list");
    assert!(!b.exists(&row(&newcomer)), "not inserted above the cards");
    let after = placed(&b, &approve);
    assert_eq!(before, after, "the first card's Approve did not move");
    b.click("#arrived a");
    b.find(&row(&newcomer));
    // The hostile refresh parameter is refused, not guessed at.
    for bad in ["yesterday", "yesterday%00", "2026-13-45T99:00:00Z", &"9".repeat(10_000)] {
        let response = no_redirects()
            .get(format!("{}/ui/inbox/rows?upto={bad}", s.url))
            .header("Cookie", ui_session(&s, "demo-bob"))
            .send()
            .unwrap();
        let status = response.status().as_u16();
        let page = response.text().unwrap();
        assert_eq!(status, 422, "{page}");
        assert!(page.contains("upto"), "{page}");
    }
    clean_console(&b);
}

/// Twenty requesters waiting: the summary names the six with most waiting and "and 14 more",
/// so on a phone the first card's Approve is still on the first screen.
#[test]
fn a_long_summary_by_requester_keeps_the_first_card_in_view_on_a_phone() {
    let s = Server::start();
    let mut ids = Vec::new();
    for n in 0..20 {
        let r = id(&s.file(
            "demo-alice",
            json!({"resource": "prod-db", "action": "read", "duration": "30m", "reason": format!("INC-{n}")}),
        ));
        // Another requester for each (the quickstart knows few people): written in the store.
        s.sqlite(&format!(
            "UPDATE requests SET requester = 'requester{n:02}', doc = json_set(doc, '$.requester', 'requester{n:02}') WHERE id = '{r}'"
        ));
        ids.push(r);
    }
    let b = phone_or_desktop(&s, PHONE.0, PHONE.1);
    sign_in(&b, &s, "demo-bob");
    let summary = b.text("nav.by-requester");
    assert_eq!(summary.matches(" 1 waiting").count(), 6, "{summary}");
    assert!(b.text("#by-requester-more").contains("and 14 more"), "{summary}");
    let first = format!("#rows tr[data-request='{}'] form.card-decide button.primary", ids[19]);
    let (top, bottom, _, viewport) = placed(&b, &first);
    assert!(
        top >= 0.0 && bottom <= viewport,
        "Approve at {top}..{bottom} of {viewport}"
    );
    clean_console(&b);
}

/// The summary by requester counts over at most the scans one page of the inbox may take (the
/// newest 500 pending requests): past that it says its numbers are a floor, not a total.
#[test]
fn the_summary_by_requester_says_at_least_past_its_bound() {
    let s = Server::start();
    let ask = json!({"resource": "prod-db", "action": "read", "duration": "30m", "reason": "INC-1"});
    for _ in 0..501 {
        s.file("demo-alice", ask.clone());
    }
    let page = no_redirects()
        .get(format!("{}/ui/inbox", s.url))
        .header("Cookie", ui_session(&s, "demo-bob"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let summary = page
        .split("<nav class=\"by-requester\"")
        .nth(1)
        .and_then(|rest| rest.split("</nav>").next())
        .unwrap_or_else(|| panic!("no summary: {page}"));
    assert!(summary.contains("at least"), "{summary}");
    assert!(summary.contains("</a> 500 waiting"), "{summary}");
}

/// A requester name that cannot be a principal's is refused before the store, on both the
/// inbox and its rows: control, NUL, bidirectional and zero-width characters, a look-alike
/// (Cyrillic `а`), too long; and the inbox still answers after.
fn hostile_requesters_are_refused(s: &Server) {
    let cookie = ui_session(s, "demo-bob");
    let get = |path: &str| {
        let response = no_redirects()
            .get(format!("{}{path}", s.url))
            .header("Cookie", &cookie)
            .send()
            .unwrap();
        (response.status().as_u16(), response.text().unwrap())
    };
    let long = "a".repeat(300);
    for bad in [
        "ali%00ce",
        "alice%0A",
        "%E2%80%AEecila",
        "ali%E2%80%8Bce",
        "%D0%B0lice",
        &long,
    ] {
        for path in ["/ui/inbox", "/ui/inbox/rows"] {
            let (status, body) = get(&format!("{path}?requester={bad}"));
            assert_eq!(status, 422, "{path}?requester={bad}: {body}");
            assert!(body.contains("requester"), "{body}");
        }
    }
    let (status, body) = get("/ui/inbox?requester=alice");
    assert_eq!(status, 200, "{body}");
}

/// On PostgreSQL too (which refuses NUL in text outright): nothing hostile reaches the store.
#[test]
fn hostile_requester_names_never_reach_postgresql() {
    use crate::support::postgres::{Postgres, SUPERUSER_PASSWORD};
    let pg = Postgres::start();
    pg.admin("postgres", "CREATE DATABASE jitgate");
    let url = pg.url("postgres", SUPERUSER_PASSWORD, "jitgate");
    let s = Server::start_on(&quickstart(), None, Some(&url));
    s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "read", "duration": "30m", "reason": "INC-1"}),
    );
    hostile_requesters_are_refused(&s);
}

/// The pages forward authentication answers a browser with, on the app's host (a proxy passes
/// them through): "Sign in" (401) and "Request access" (403). They are served by the proxy, not
/// under `/ui`, so each is taken from jitgate's answer and shown as the browser would get it,
/// its stylesheet from jitgate, at desktop and phone size and in the dark theme.
#[test]
fn the_forward_auth_pages_have_no_wcag_2_2_aa_violation() {
    let axe = axe_source();
    let (s, _policy) = crate::forward_auth_api::server();
    let alice: (&str, &[u8]) = ("Authorization", b"Bearer demo-alice");
    let html: (&str, &[u8]) = ("Accept", b"text/html,application/xhtml+xml");
    let answers = [
        (
            "forward-auth-sign-in",
            crate::forward_auth_api::traefik(&s, "GET", "/d/abc", &[html]),
            401,
        ),
        (
            "forward-auth-request-access",
            crate::forward_auth_api::traefik(&s, "GET", "/d/abc", &[alice, html]),
            403,
        ),
    ];
    let mut report = Vec::new();
    let mut checked = 0;
    let pages: Vec<(&str, String)> = answers
        .into_iter()
        .map(|(name, r, status)| {
            assert_eq!(r.status().as_u16(), status, "{name}");
            (name, r.text().unwrap())
        })
        .collect();
    for (size, (w, h), dark) in [
        ("desktop", DESKTOP, false),
        ("phone", PHONE, false),
        ("dark", DESKTOP, true),
    ] {
        let b = phone_or_desktop(&s, w, h);
        if dark {
            b.prefer_dark();
        }
        for (name, page) in &pages {
            // On a host of its own, as the app's would be.
            let port = super::serve_html(page.clone());
            b.goto(&format!("http://localhost:{port}/d/abc"));
            b.find("main h1");
            // Styled as jitgate's pages are: the stylesheet came from jitgate.
            let styled = b.execute_async(
                "const done = arguments[arguments.length - 1];
                 const link = document.querySelector('link[rel=stylesheet]');
                 const width = () => getComputedStyle(document.querySelector('main')).maxWidth;
                 if (link.sheet) { done(width()); }
                 else { link.addEventListener('load', () => done(width()));
                        link.addEventListener('error', () => done('failed: ' + link.href)); }",
                vec![],
                Duration::from_secs(10),
            );
            assert_eq!(styled, json!("1100px"), "{name}: the stylesheet did not load");
            b.screenshot(&format!("{name}-{size}"));
            for violation in wcag_violations(&b, &axe) {
                report.push(format!("{name} at {size}:\n  {violation}"));
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 6);
    assert!(
        report.is_empty(),
        "{} WCAG 2.2 AA violations:\n{}",
        report.len(),
        report.join("\n")
    );
}
