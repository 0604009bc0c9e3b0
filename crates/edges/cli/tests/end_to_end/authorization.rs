//! The authorization table of docs/authorization.md, attacked row by row against the real
//! server: every role the table refuses tries the call and must be refused (403, or 404 where
//! the request is not theirs to see), then a role the table allows makes it, so a refusal can't
//! pass just because the endpoint is broken. Every route refuses a caller with no credentials,
//! and every secured route of the OpenAPI document is covered here.

use crate::support::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;

const ALICE: &str = "demo-alice"; // user, dev: the requester below
const DAVE: &str = "demo-dave"; // user, dev: uninvolved
const BOB: &str = "demo-bob"; // user, sre: reviewer of prod-db requests
const CAROL: &str = "demo-carol"; // user, sre
const SERVICE: &str = "demo-svc";
const AUDITOR: &str = "demo-auditor";
const ADMIN: &str = "demo-admin";

/// One attempted call and the status it must get.
struct Attempt<'a> {
    who: &'a str,
    status: u16,
}

fn refused(who: &str) -> Attempt<'_> {
    Attempt { who, status: 403 }
}

fn hidden(who: &str) -> Attempt<'_> {
    Attempt { who, status: 404 }
}

fn ok(who: &str, status: u16) -> Attempt<'_> {
    Attempt { who, status }
}

/// Try `method path` as each caller in turn, in order (refusals first, then the allowed call).
fn row(s: &Server, method: &str, path: &str, body: Value, attempts: &[Attempt]) -> Value {
    let mut last = Value::Null;
    for a in attempts {
        let (status, v) = s.call(method, path, a.who, (method == "POST").then(|| body.clone()));
        assert_eq!(status, a.status, "{method} {path} as {}: {v}", a.who);
        if (400..500).contains(&status) {
            assert!(
                v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
                "an error names what went wrong: {v}"
            );
        }
        last = v;
    }
    last
}

/// The ids a list endpoint shows the bearer of `token`.
fn ids_at(s: &Server, path: &str, token: &str) -> BTreeSet<String> {
    let (status, v) = s.get(path, token);
    assert_eq!(status, 200, "{v}");
    v["items"].as_array().unwrap().iter().map(id).collect()
}

fn pending_prod_read(s: &Server) -> String {
    id(&s.file(
        ALICE,
        json!({"resource": "prod-db", "action": "read", "duration": "10m", "reason": "INC-1"}),
    ))
}

#[test]
fn every_role_the_table_refuses_is_refused() {
    let s = Server::start();

    let daves = s.file(
        DAVE,
        json!({"resource": "staging-db", "action": "read", "duration": "10m"}),
    );
    assert_eq!(daves["requester"], "dave");

    // File a request: services never file.
    let filed = row(
        &s,
        "POST",
        "/v1/requests",
        json!({"resource": "staging-db", "action": "read", "duration": "10m"}),
        &[refused(SERVICE), ok(ALICE, 201)],
    );
    let staging_grant = filed["grant"]["id"].as_str().unwrap().to_string();

    // Read a request: the requester, its reviewers, auditors and admins; others don't see it.
    let a = pending_prod_read(&s);
    row(
        &s,
        "GET",
        &format!("/v1/requests/{a}"),
        json!(null),
        &[
            refused(SERVICE),
            hidden(DAVE),
            ok(ALICE, 200),
            ok(BOB, 200),
            ok(AUDITOR, 200),
            ok(ADMIN, 200),
        ],
    );
    // Lists hold only what the caller may see.
    row(&s, "GET", "/v1/requests", json!(null), &[refused(SERVICE)]);
    let listed = |token: &str| ids_at(&s, "/v1/requests", token);
    assert!(!listed(DAVE).contains(&a));
    // Pages are counted in what the caller may see: dave's one request, filed before several of
    // alice's, is on his first page of one, and the page after it is empty.
    let (status, page) = s.get("/v1/requests?limit=1", DAVE);
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["items"][0]["requester"], "dave");
    let (_, rest) = s.get(
        &format!("/v1/requests?limit=1&before={}", page["next"].as_str().unwrap()),
        DAVE,
    );
    assert_eq!(rest["items"], json!([]), "{rest}");
    assert!(listed(BOB).contains(&a));
    assert!(listed(AUDITOR).contains(&a));

    // Approve: only a reviewer the policy names, never the requester; auditors and admins see
    // the request but are no reviewers of it.
    row(
        &s,
        "POST",
        &format!("/v1/requests/{a}/approve"),
        json!({}),
        &[
            refused(SERVICE),
            hidden(DAVE),
            refused(ALICE),
            refused(AUDITOR),
            refused(ADMIN),
            ok(BOB, 200),
        ],
    );

    // Deny: reviewers, and admins any request.
    let b = pending_prod_read(&s);
    row(
        &s,
        "POST",
        &format!("/v1/requests/{b}/deny"),
        json!({}),
        &[
            refused(SERVICE),
            hidden(DAVE),
            refused(ALICE),
            refused(AUDITOR),
            ok(ADMIN, 200),
        ],
    );

    // Cancel: the requester (admins any); a reviewer may deny but not cancel.
    let c = pending_prod_read(&s);
    row(
        &s,
        "POST",
        &format!("/v1/requests/{c}/cancel"),
        json!({}),
        &[
            refused(SERVICE),
            hidden(DAVE),
            refused(BOB),
            refused(AUDITOR),
            ok(ALICE, 200),
        ],
    );

    // The review a break-glass request owes: another of its reviewers, never the one who broke
    // the glass.
    let glass = id(&s.file(
        BOB,
        json!({"resource": "prod-db", "action": "write", "duration": "5m", "reason": "OPS-9 outage", "break_glass": true}),
    ));
    row(
        &s,
        "POST",
        &format!("/v1/requests/{glass}/review"),
        json!({"comment": "checked"}),
        &[
            refused(SERVICE),
            hidden(ALICE),
            refused(BOB),
            refused(AUDITOR),
            ok(CAROL, 200),
        ],
    );

    // Grants: users list their own, auditors and admins all.
    row(&s, "GET", "/v1/grants", json!(null), &[refused(SERVICE)]);
    let grants_of = |token: &str| ids_at(&s, "/v1/grants?principal=alice", token);
    assert!(grants_of(ALICE).contains(&staging_grant));
    let daves_grant = daves["grant"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        grants_of(DAVE),
        BTreeSet::from([daves_grant]),
        "a user's principal filter is their own name"
    );
    assert!(grants_of(AUDITOR).contains(&staging_grant));
    // The auditor pages through every grant one at a time: each once, newest first, and the
    // last page says there is no next one.
    let mut paged = Vec::new();
    let mut path = "/v1/grants?limit=1".to_string();
    loop {
        let (status, page) = s.get(&path, AUDITOR);
        assert_eq!(status, 200, "{page}");
        paged.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| g["id"].as_str().unwrap().to_string()),
        );
        match page["next"].as_str() {
            Some(next) => path = format!("/v1/grants?limit=1&before={next}"),
            None => break,
        }
    }
    let (_, everything) = s.get("/v1/grants?limit=500", AUDITOR);
    let newest_first: Vec<String> = everything["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap().to_string())
        .collect();
    assert!(newest_first.len() >= 2, "{everything}");
    assert!(newest_first.windows(2).all(|w| w[0] > w[1]), "{newest_first:?}");
    assert_eq!(paged, newest_first);

    // Extend: the holder only.
    row(
        &s,
        "POST",
        &format!("/v1/grants/{staging_grant}/extend"),
        json!({"duration": "10m", "reason": "more"}),
        &[
            refused(SERVICE),
            hidden(DAVE),
            hidden(BOB),
            refused(AUDITOR),
            refused(ADMIN),
            ok(ALICE, 200),
        ],
    );

    // An SSH certificate: the holder only (staging-db is no SSH workflow, so the holder's own
    // call is refused by the policy with 409 after the table lets it through).
    row(
        &s,
        "POST",
        &format!("/v1/grants/{staging_grant}/ssh-cert"),
        json!({"public_key": "ssh-ed25519 AAAA"}),
        &[
            refused(SERVICE),
            hidden(DAVE),
            refused(AUDITOR),
            refused(ADMIN),
            ok(ALICE, 409),
        ],
    );

    // Database credentials: the holder only (staging-db has no postgres provider, so the
    // holder's own call is refused with 409 after the table lets it through).
    row(
        &s,
        "POST",
        &format!("/v1/grants/{staging_grant}/credentials"),
        json!({}),
        &[
            refused(SERVICE),
            hidden(DAVE),
            refused(AUDITOR),
            refused(ADMIN),
            ok(ALICE, 409),
        ],
    );

    // Revoke: the holder, its request's reviewers, admins.
    row(
        &s,
        "POST",
        &format!("/v1/grants/{staging_grant}/revoke"),
        json!({}),
        &[refused(SERVICE), hidden(DAVE), refused(AUDITOR), ok(ALICE, 200)],
    );

    // Done: the holder only (alice has just ended it herself, so the table lets her through
    // and the state machine answers 409).
    row(
        &s,
        "POST",
        &format!("/v1/grants/{staging_grant}/done"),
        json!({"exit_code": 0}),
        &[
            refused(SERVICE),
            hidden(DAVE),
            refused(AUDITOR),
            refused(ADMIN),
            ok(ALICE, 409),
        ],
    );

    // Check: services and admins only.
    let check = json!({"principal": "alice", "resource": "prod-db", "action": "read"});
    for path in ["/v1/check", "/v1/check/batch"] {
        let body = if path.ends_with("batch") {
            json!({"checks": [check.clone()]})
        } else {
            check.clone()
        };
        row(
            &s,
            "POST",
            path,
            body,
            &[
                refused(ALICE),
                refused(BOB),
                refused(AUDITOR),
                ok(SERVICE, 200),
                ok(ADMIN, 200),
            ],
        );
    }

    // Use one's own grant: anyone but a service, always about themselves (mcp.rs and the
    // service's tests check what it answers).
    row(
        &s,
        "POST",
        "/v1/grants/use",
        json!({"resource": "staging-db", "action": "read"}),
        &[
            refused(SERVICE),
            ok(ALICE, 200),
            ok(BOB, 200),
            ok(AUDITOR, 200),
            ok(ADMIN, 200),
        ],
    );

    // What one may request: whoever may file, each seeing their own (resources.rs checks what).
    row(
        &s,
        "GET",
        "/v1/resources",
        json!(null),
        &[
            refused(SERVICE),
            ok(ALICE, 200),
            ok(BOB, 200),
            ok(AUDITOR, 200),
            ok(ADMIN, 200),
        ],
    );

    // Explain: users for themselves; auditors and admins for anyone.
    row(
        &s,
        "GET",
        "/v1/policy/explain?resource=prod-db&action=read",
        json!(null),
        &[refused(SERVICE), ok(ALICE, 200)],
    );
    row(
        &s,
        "GET",
        "/v1/policy/explain?resource=prod-db&action=read&principal=bob",
        json!(null),
        &[refused(ALICE), ok(AUDITOR, 200), ok(ADMIN, 200)],
    );

    // Audit: auditors and admins (signing the head is part of reading it: an export ends with
    // a fresh checkpoint).
    for (method, path, status) in [
        ("GET", "/v1/audit", 200),
        ("GET", "/v1/audit/verify", 200),
        ("GET", "/v1/audit/checkpoints", 200),
        ("POST", "/v1/audit/checkpoints", 201),
        ("GET", "/v1/audit/keys", 200),
    ] {
        row(
            &s,
            method,
            path,
            json!(null),
            &[
                refused(ALICE),
                refused(BOB),
                refused(SERVICE),
                ok(AUDITOR, status),
                ok(ADMIN, status),
            ],
        );
    }

    // Tokens: admins only.
    let everyone_but_admin = [refused(ALICE), refused(BOB), refused(SERVICE), refused(AUDITOR)];
    row(&s, "GET", "/v1/tokens", json!(null), &everyone_but_admin);
    row(
        &s,
        "POST",
        "/v1/tokens",
        json!({"principal": "mallory", "groups": ["admins"]}),
        &everyone_but_admin,
    );
    let made = row(
        &s,
        "POST",
        "/v1/tokens",
        json!({"principal": "frank"}),
        &[ok(ADMIN, 201)],
    );
    row(
        &s,
        "POST",
        &format!("/v1/tokens/{}/revoke", id(&made)),
        json!({}),
        &[
            refused(ALICE),
            refused(BOB),
            refused(SERVICE),
            refused(AUDITOR),
            ok(ADMIN, 200),
        ],
    );
    // Signing keys: admins only.
    row(
        &s,
        "POST",
        "/v1/keys/rotate",
        json!({}),
        &[
            refused(ALICE),
            refused(BOB),
            refused(SERVICE),
            refused(AUDITOR),
            ok(ADMIN, 200),
        ],
    );
    // The database's history: admins only. On SQLite nothing ever diverges: 200 says so,
    // and nothing is recorded.
    let accepted = row(
        &s,
        "POST",
        "/v1/admin/database/accept-history",
        json!({}),
        &[
            refused(ALICE),
            refused(BOB),
            refused(SERVICE),
            refused(AUDITOR),
            ok(ADMIN, 200),
        ],
    );
    assert_eq!(accepted["diverged"], false, "{accepted}");
    assert!(accepted.get("given_up").is_none(), "{accepted}");
    assert!(
        accepted["message"].as_str().unwrap().contains("nothing diverged"),
        "{accepted}"
    );
    let (_, metrics) = s.get("/metrics", "");
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("\njitgate_database_history_diverged 0\n"),
        "{metrics}"
    );
    // The CLI says the same, and refuses for a non-admin with the server's reason.
    let (code, out, err) = s.cli(ADMIN, &["database", "accept-history"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("nothing diverged"), "{out}");
    let (code, out, err) = s.cli(ADMIN, &["--output", "json", "database", "accept-history"]);
    assert_eq!(code, 0, "{out}{err}");
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["diverged"], false, "{answer}");
    let (code, out, err) = s.cli(ALICE, &["database", "accept-history"]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("admin"), "the refusal names who may: {err}");
    assert!(
        s.audit_kinds("kind=database.history_accepted").is_empty(),
        "nothing diverged, nothing recorded"
    );

    // Who am I: every role may ask, about itself only.
    for (token, principal) in [
        (ALICE, "alice"),
        (SERVICE, "svc-api"),
        (AUDITOR, "auditor"),
        (ADMIN, "admin"),
    ] {
        let who = row(&s, "GET", "/v1/whoami", json!(null), &[ok(token, 200)]);
        assert_eq!(who["principal"], principal, "{who}");
    }

    // Nothing a refused caller tried left a trace of success.
    let (_, tokens) = s.get("/v1/tokens", ADMIN);
    assert_eq!(tokens["items"].as_array().unwrap().len(), 1, "{tokens}");
}

/// Every (method, path) the API serves behind authentication, as the OpenAPI document lists them.
fn secured_routes(s: &Server) -> BTreeSet<(String, String)> {
    routes_secured_by(s, None)
}

/// The routes behind the security scheme `scheme` (`bearer`, or `scim` for the provisioning
/// tokens of /scim/v2), or behind any when `None`.
fn routes_secured_by(s: &Server, scheme: Option<&str>) -> BTreeSet<(String, String)> {
    let (status, doc) = s.get("/openapi.json", "");
    assert_eq!(status, 200);
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let Some(security) = op.get("security") else { continue };
            let by_scheme = scheme.is_none_or(|name| {
                security
                    .as_array()
                    .is_some_and(|list| list.iter().any(|s| s.get(name).is_some()))
            });
            if by_scheme {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

#[test]
fn every_secured_route_refuses_callers_without_valid_credentials() {
    // Dozens of bad credentials from one address in a row would be slowed down (that is
    // tested in identity.rs); here only the refusals matter.
    let s = Server::start_with(&quickstart(), Some("[auth.throttle]\nfree_failures = 100000\n"));
    // Provisioning (/scim/v2) takes SCIM tokens only, never a role of this table: below.
    let scim = routes_secured_by(&s, Some("scim"));
    assert!(scim.len() >= 20, "{scim:?}");
    let routes: BTreeSet<(String, String)> = secured_routes(&s).difference(&scim).cloned().collect();
    // The rows of the test above, by route: a new endpoint must be added there too.
    let covered: BTreeSet<(String, String)> = [
        ("POST", "/v1/requests"),
        ("GET", "/v1/requests"),
        ("GET", "/v1/requests/{id}"),
        ("POST", "/v1/requests/{id}/approve"),
        ("POST", "/v1/requests/{id}/deny"),
        ("POST", "/v1/requests/{id}/cancel"),
        ("POST", "/v1/requests/{id}/review"),
        ("GET", "/v1/grants"),
        ("POST", "/v1/grants/{id}/revoke"),
        ("POST", "/v1/grants/{id}/extend"),
        ("POST", "/v1/grants/{id}/done"),
        ("POST", "/v1/grants/{id}/ssh-cert"),
        ("POST", "/v1/grants/{id}/credentials"),
        ("POST", "/v1/check"),
        ("POST", "/v1/check/batch"),
        ("POST", "/v1/grants/use"),
        ("GET", "/v1/policy/explain"),
        ("GET", "/v1/resources"),
        ("GET", "/v1/audit"),
        ("GET", "/v1/audit/verify"),
        ("GET", "/v1/audit/checkpoints"),
        ("POST", "/v1/audit/checkpoints"),
        ("GET", "/v1/audit/keys"),
        ("GET", "/v1/tokens"),
        ("POST", "/v1/tokens"),
        ("POST", "/v1/tokens/{id}/revoke"),
        ("POST", "/v1/keys/rotate"),
        ("POST", "/v1/admin/database/accept-history"),
        ("GET", "/v1/whoami"),
    ]
    .iter()
    .map(|(m, p)| (m.to_string(), p.to_string()))
    .collect();
    assert_eq!(
        routes, covered,
        "every secured route has its row in the authorization test"
    );

    for (method, path) in &routes {
        let path = path.replace("{id}", "req_0");
        for token in ["", "not-a-token", "demo-alice-but-wrong", "eyJhbGciOiJub25lIn0.e30."] {
            let (status, v) = s.call(method, &path, token, (method == "POST").then(|| json!({})));
            assert_eq!(status, 401, "{method} {path} with '{token}': {v}");
            assert_eq!(v["error"]["code"], "unauthenticated");
        }
    }

    // Every SCIM route refuses the same bad credentials, and the API's own valid ones, with
    // SCIM's 401 (docs/scim.md).
    for (method, path) in &scim {
        let path = path.replace("{id}", "u_0");
        for token in [
            "",
            "not-a-token",
            "eyJhbGciOiJub25lIn0.e30.",
            ADMIN,
            "demo-svc",
            "demo-alice",
        ] {
            let mut request = s
                .http
                .request(
                    reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                    format!("{}{path}", s.url),
                )
                .header("content-type", "application/scim+json")
                .body("{}");
            if !token.is_empty() {
                request = request.bearer_auth(token);
            }
            let response = request.send().unwrap();
            assert_eq!(response.status().as_u16(), 401, "{method} {path} with '{token}'");
            assert_eq!(
                response.headers().get("content-type").and_then(|v| v.to_str().ok()),
                Some("application/scim+json"),
                "{method} {path}"
            );
            let v: serde_json::Value = response.json().unwrap();
            assert_eq!(v["status"], "401", "{method} {path}: {v}");
        }
    }
}
