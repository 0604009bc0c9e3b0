//! SCIM 2.0 provisioning (issue #25) against the real binary: scim2-tester (PyPI, pinned in
//! scripts/scim.sh) finds no failure; flows shaped as Okta and Entra ID provision; the issue's
//! Bar (a provisioned user in `dev` gets staging automatically; deactivation makes the check
//! deny within a second, with the revocation in the audit); and attacks on every input.
//!
//! Every test needs the store's SCIM tables (branch scim-store); `the_bar_*` and the
//! collision tests also need the directory (branch scim-directory): see each test.

use crate::support::postgres::{Postgres, SUPERUSER_PASSWORD};
use crate::support::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

/// A server with a provisioning token made as an admin would (`token create --scim`).
struct Scim {
    s: Server,
    token: String,
}

/// One SCIM answer: status, headers, body.
struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A SCIM error of this status (and scimType, when given), in SCIM's shape.
    fn assert_error(&self, status: u16, scim_type: Option<&str>) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(
            self.header("content-type"),
            Some("application/scim+json"),
            "{}",
            self.body
        );
        assert_eq!(
            self.body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
            "{}",
            self.body
        );
        assert_eq!(self.body["status"], status.to_string(), "{}", self.body);
        assert_eq!(self.body["scimType"].as_str(), scim_type, "{}", self.body);
        assert!(
            self.body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{}",
            self.body
        );
    }
}

impl Scim {
    fn start() -> Scim {
        Self::start_with(None)
    }

    fn start_with(config: Option<&str>) -> Scim {
        Self::provisioning(Server::start_with(&quickstart(), config))
    }

    /// On the PostgreSQL database `url` names.
    fn start_on(url: &str) -> Scim {
        Self::provisioning(Server::start_on(&quickstart(), None, Some(url)))
    }

    fn provisioning(s: Server) -> Scim {
        let (code, out, err) = s.cli(
            "demo-admin",
            &[
                "token",
                "create",
                "--principal",
                "scim-okta",
                "--scim",
                "--output",
                "json",
            ],
        );
        assert_eq!(code, 0, "{out}{err}");
        let created: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(created["scim"], true, "{created}");
        Scim {
            token: created["token"].as_str().unwrap().to_string(),
            s,
        }
    }

    fn send(&self, method: &str, path: &str, token: &str, body: Option<&Value>, headers: &[(&str, &str)]) -> Reply {
        let url = format!("{}/scim/v2{path}", self.s.url);
        let mut request = self
            .s
            .http
            .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
        if !token.is_empty() {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/scim+json")
                .body(serde_json::to_vec(body).unwrap());
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().expect("send");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().unwrap_or_default();
        Reply {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        self.send(method, path, &self.token, body.as_ref(), &[])
    }

    fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let reply = self.call(method, path, body);
        assert!(
            (200..300).contains(&reply.status),
            "{method} {path}: {} {}",
            reply.status,
            reply.body
        );
        if reply.status != 204 {
            assert_eq!(reply.header("content-type"), Some("application/scim+json"));
        }
        reply.body
    }

    fn create_user(&self, body: Value) -> Value {
        let reply = self.call("POST", "/Users", Some(body));
        assert_eq!(reply.status, 201, "{}", reply.body);
        assert_eq!(reply.header("location"), reply.body["meta"]["location"].as_str());
        assert_eq!(reply.header("etag"), reply.body["meta"]["version"].as_str());
        reply.body
    }

    fn create_group(&self, name: &str, members: &[&str]) -> Value {
        let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
        let reply = self.call(
            "POST",
            "/Groups",
            Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name, "members": members})),
        );
        assert_eq!(reply.status, 201, "{}", reply.body);
        reply.body
    }

    fn patch(&self, path: &str, operations: Value) -> Reply {
        self.call(
            "PATCH",
            path,
            Some(json!({"schemas": [PATCH_OP], "Operations": operations})),
        )
    }
}

fn url_filter(text: &str) -> String {
    text.replace(' ', "%20").replace('"', "%22")
}

fn member_ids(group: &Value) -> Vec<String> {
    let mut ids: Vec<String> = group["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| m["value"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// scim2-tester, the conformance checker from PyPI, against the server with a SCIM token:
/// every check it runs for what jitgate publishes succeeds, and the CRUD and PATCH checks
/// really ran for both resource types. Needs: scim-store.
#[test]
fn scim2_tester_reports_no_failures() {
    scim2_tester_passes(&Scim::start());
}

/// The same on PostgreSQL, and NUL bytes in every string refused before they reach it (a NUL
/// cannot be stored in a PostgreSQL text column). Needs: scim-store.
#[test]
fn on_postgresql_scim2_tester_passes_and_nul_bytes_are_refused() {
    let pg = Postgres::start();
    pg.admin("postgres", "CREATE DATABASE jitgate");
    let bed = Scim::start_on(&pg.url("postgres", SUPERUSER_PASSWORD, "jitgate"));
    scim2_tester_passes(&bed);
    nul_bytes_are_refused(&bed);
    let user = bed.create_user(json!({"userName": "pg-user", "displayName": "Zoë \"quoted\" ünïcode"}));
    let read = bed.ok("GET", &format!("/Users/{}", user["id"].as_str().unwrap()), None);
    assert_eq!(read["displayName"], "Zoë \"quoted\" ünïcode");
}

fn nul_bytes_are_refused(bed: &Scim) {
    bed.call("POST", "/Users", Some(json!({"userName": "nul\u{0}name"})))
        .assert_error(400, Some("invalidValue"));
    for field in ["displayName", "externalId"] {
        let mut body = json!({"userName": "ok-user"});
        body[field] = json!("a\u{0}b");
        bed.call("POST", "/Users", Some(body))
            .assert_error(400, Some("invalidValue"));
    }
    let mut body = json!({"userName": "ok-user"});
    body[ENTERPRISE] = json!({"employeeNumber": "7\u{0}"});
    bed.call("POST", "/Users", Some(body))
        .assert_error(400, Some("invalidValue"));
    bed.call("POST", "/Groups", Some(json!({"displayName": "g\u{0}"})))
        .assert_error(400, Some("invalidValue"));
    bed.call(
        "POST",
        "/Groups",
        Some(json!({"displayName": "g", "members": [{"value": "u\u{0}"}]})),
    )
    .assert_error(400, Some("invalidValue"));
    bed.call(
        "GET",
        &format!("/Users?filter={}", url_filter("userName eq \"a\\u0000\"")),
        None,
    )
    .assert_error(400, Some("invalidFilter"));
}

fn scim2_tester_passes(bed: &Scim) {
    let out = Command::new(repo().join("scripts/scim.sh"))
        .args(["check", &format!("{}/scim/v2", bed.s.url), &bed.token])
        .output()
        .expect("scripts/scim.sh");
    let text = String::from_utf8_lossy(&out.stdout);
    let failures: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("ERROR") || l.starts_with("CRITICAL"))
        .collect();
    assert!(
        failures.is_empty() && out.status.success(),
        "scim2-tester failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let succeeded = |check: &str| text.lines().any(|l| l.starts_with(&format!("SUCCESS {check}")));
    for resource in ["User", "Group"] {
        for check in [
            "object_creation",
            "object_query",
            "object_query_without_id",
            "object_query_with_attributes",
            "object_list_with_attributes",
            "search_with_attributes",
            "object_replacement",
            "object_deletion",
            "check_add_attribute",
            "check_remove_attribute",
            "check_replace_attribute",
        ] {
            assert!(
                succeeded(&format!("{check} [{resource}]")),
                "{check} [{resource}] did not run:\n{text}"
            );
        }
    }
    for check in [
        "service_provider_config_endpoint",
        "query_all_schemas",
        "query_all_resource_types",
        "random_url",
    ] {
        assert!(succeeded(check), "{check} did not run:\n{text}");
    }
    let successes = text.lines().filter(|l| l.starts_with("SUCCESS")).count();
    assert!(successes >= 70, "only {successes} checks succeeded:\n{text}");
    // Every write it made is in the audit, by the provisioning client.
    let (status, events) = bed.s.get("/v1/audit?kind=scim.user_created", "demo-admin");
    assert_eq!(status, 200, "{events}");
    let items = events["items"].as_array().unwrap();
    assert!(!items.is_empty());
    assert!(items.iter().all(|e| e["actor"] == "scim-okta"), "{events}");
}

/// Okta: look the user up by `userName eq`, create, PUT on profile changes, PATCH
/// `active=false` (a path-less replace), groups pushed with member add/remove by value.
/// Needs: scim-store.
#[test]
fn okta_shaped_flow() {
    let bed = Scim::start();
    let lookup = bed.ok(
        "GET",
        &format!(
            "/Users?filter={}&startIndex=1&count=100",
            url_filter(r#"userName eq "pat@example.com""#)
        ),
        None,
    );
    assert_eq!(lookup["totalResults"], 0, "{lookup}");
    assert_eq!(
        lookup["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:ListResponse"
    );
    let user = bed.create_user(json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "pat@example.com",
        "name": {"givenName": "Pat", "familyName": "Doe"},
        "emails": [{"primary": true, "value": "pat@example.com", "type": "work"}],
        "displayName": "Pat Doe",
        "locale": "en-US",
        "externalId": "00u1okta",
        "groups": [],
        "password": "never-kept",
        "active": true,
    }));
    let id = user["id"].as_str().unwrap().to_string();
    assert!(user.get("password").is_none() && user.get("locale").is_none(), "{user}");
    // Case-insensitive lookups find it; a second create with another case is a conflict.
    let lookup = bed.ok(
        "GET",
        &format!("/Users?filter={}", url_filter(r#"userName eq "PAT@example.com""#)),
        None,
    );
    assert_eq!(lookup["totalResults"], 1, "{lookup}");
    assert_eq!(lookup["Resources"][0]["id"], id.as_str());
    bed.call("POST", "/Users", Some(json!({"userName": "Pat@Example.com"})))
        .assert_error(409, Some("uniqueness"));
    // A profile change by PUT.
    let mut replaced = user.clone();
    replaced["name"]["familyName"] = json!("Roe");
    let put = bed.ok("PUT", &format!("/Users/{id}"), Some(replaced));
    assert_eq!(put["name"]["familyName"], "Roe");
    assert_eq!(put["meta"]["version"], "W/\"2\"");
    // Groups: created empty, then members by PATCH, as Okta's group push does.
    let group = bed.create_group("okta-sre", &[]);
    let gid = group["id"].as_str().unwrap();
    let other = bed.create_user(json!({"userName": "sam@example.com"}));
    let sam = other["id"].as_str().unwrap();
    let reply = bed.patch(
        &format!("/Groups/{gid}"),
        json!([{"op": "add", "path": "members", "value": [{"value": id, "display": "pat@example.com"}, {"value": sam}]}]),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(member_ids(&reply.body), {
        let mut v = vec![id.clone(), sam.to_string()];
        v.sort();
        v
    });
    let reply = bed.patch(
        &format!("/Groups/{gid}"),
        json!([{"op": "remove", "path": format!("members[value eq \"{sam}\"]")}]),
    );
    assert_eq!(member_ids(&reply.body), vec![id.clone()], "{}", reply.body);
    // The user shows the group.
    let read = bed.ok("GET", &format!("/Users/{id}"), None);
    assert_eq!(read["groups"][0]["display"], "okta-sre", "{read}");
    // Deprovisioning: active=false.
    let reply = bed.patch(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "value": {"active": false}}]),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["active"], false);
    assert_eq!(bed.ok("GET", &format!("/Users/{id}"), None)["active"], false);
    let kinds = bed.s.audit_kinds("kind=scim.user_deactivated");
    assert_eq!(kinds, ["scim.user_deactivated"]);
}

/// Entra ID: Replace/Add/Remove in capitals, booleans as strings, filtered email paths, the
/// enterprise manager, `id eq … and members eq …` with `excludedAttributes=members`, soft
/// delete (active "False") then DELETE. Needs: scim-store.
#[test]
fn entra_shaped_flow() {
    let bed = Scim::start();
    let manager = bed.create_user(json!({"userName": "boss@contoso.com", "active": true}));
    let manager_id = manager["id"].as_str().unwrap();
    let user = bed.create_user(json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
        "externalId": "8c4b1f5e",
        "userName": "ray@contoso.com",
        "active": true,
        "displayName": "Ray",
        "emails": [{"primary": true, "type": "work", "value": "ray@contoso.com"}],
        ENTERPRISE: {"department": "SRE", "employeeNumber": "42"},
    }));
    let id = user["id"].as_str().unwrap().to_string();
    assert_eq!(user["schemas"][1], ENTERPRISE);
    // Entra sends the manager as its id alone, not as {"value": ID}.
    let reply = bed.patch(
        &format!("/Users/{id}"),
        json!([
            {"op": "Replace", "path": "displayName", "value": "Ray M"},
            {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "ray.m@contoso.com"},
            {"op": "Add", "path": format!("{ENTERPRISE}:manager"), "value": manager_id},
            {"op": "Replace", "path": "name.givenName", "value": "Ray"},
        ]),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["displayName"], "Ray M");
    assert_eq!(reply.body["emails"][0]["value"], "ray.m@contoso.com");
    assert_eq!(reply.body[ENTERPRISE]["manager"]["value"], manager_id);
    assert_eq!(reply.body[ENTERPRISE]["department"], "SRE");
    // Groups: created, members added and removed by value lists, queried as Entra does.
    let group = bed.create_group("entra-ops", &[]);
    let gid = group["id"].as_str().unwrap();
    let reply = bed.patch(
        &format!("/Groups/{gid}"),
        json!([{"op": "Add", "path": "members", "value": [{"value": id}, {"value": manager_id}]}]),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    // Entra repeats itself: adding a member again and removing one who is not there are fine.
    let again = bed.patch(
        &format!("/Groups/{gid}"),
        json!([{"op": "Add", "path": "members", "value": [{"value": id}]}]),
    );
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(member_ids(&again.body).len(), 2, "{}", again.body);
    // Nothing changed: no new version, no event.
    assert_eq!(
        again.body["meta"]["version"], reply.body["meta"]["version"],
        "{}",
        again.body
    );
    assert_eq!(bed.s.audit_kinds("kind=scim.group_updated").len(), 1);
    let absent = bed.patch(
        &format!("/Groups/{gid}"),
        json!([{"op": "Remove", "path": "members", "value": [{"value": "never-a-member"}]}]),
    );
    assert_eq!(absent.status, 200, "{}", absent.body);
    assert_eq!(member_ids(&absent.body).len(), 2, "{}", absent.body);
    let filter = url_filter(&format!(r#"id eq "{gid}" and members eq "{id}""#));
    let found = bed.ok(
        "GET",
        &format!("/Groups?filter={filter}&excludedAttributes=members"),
        None,
    );
    assert_eq!(found["totalResults"], 1, "{found}");
    assert!(found["Resources"][0].get("members").is_none(), "{found}");
    assert_eq!(found["Resources"][0]["displayName"], "entra-ops");
    // The same for one group by id: answered without members (and without reading them).
    let bare = bed.ok("GET", &format!("/Groups/{gid}?excludedAttributes=members"), None);
    assert!(bare.get("members").is_none(), "{bare}");
    assert_eq!(bare["displayName"], "entra-ops", "{bare}");
    assert_eq!(bare["id"], gid, "{bare}");
    // A user cannot be their own manager, nor have one who is no user.
    for manager in [id.as_str(), "no-such-user"] {
        let refused = bed.patch(
            &format!("/Users/{id}"),
            json!([{"op": "Add", "path": format!("{ENTERPRISE}:manager"), "value": manager}]),
        );
        assert_eq!(refused.status, 400, "{}", refused.body);
        assert_eq!(refused.body["scimType"], "invalidValue", "{}", refused.body);
        assert!(
            refused.body["detail"].as_str().unwrap().contains("manager"),
            "{}",
            refused.body
        );
    }
    let reply = bed.patch(
        &format!("/Groups/{gid}"),
        json!([{"op": "Remove", "path": "members", "value": [{"value": id}]}]),
    );
    assert_eq!(member_ids(&reply.body), vec![manager_id.to_string()]);
    let found = bed.ok("GET", &format!("/Groups?filter={filter}"), None);
    assert_eq!(found["totalResults"], 0, "{found}");
    // A rename of the group and a path-less Replace.
    let reply = bed.patch(
        &format!("/Groups/{gid}"),
        json!([{"op": "Replace", "value": {"id": gid, "displayName": "entra-ops2"}}]),
    );
    assert_eq!(reply.body["displayName"], "entra-ops2", "{}", reply.body);
    // Soft delete (sent, as Entra's default mapping does, with attributes jitgate does not
    // keep: they are ignored and the deactivation takes effect), then delete.
    let reply = bed.patch(
        &format!("/Users/{id}"),
        json!([
            {"op": "Replace", "path": "title", "value": "Former employee"},
            {"op": "Replace", "path": "active", "value": "False"},
            {"op": "Replace", "path": "phoneNumbers[type eq \"work\"].value", "value": "+1 555 0100"},
        ]),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["active"], false, "{}", reply.body);
    let reply = bed.call("DELETE", &format!("/Users/{id}"), None);
    assert_eq!(reply.status, 204);
    bed.call("GET", &format!("/Users/{id}"), None).assert_error(404, None);
    bed.call("DELETE", &format!("/Users/{id}"), None)
        .assert_error(404, None);
    // Its userName is free again.
    bed.create_user(json!({"userName": "ray@contoso.com"}));
    let kinds = bed.s.audit_kinds("kind=scim.user_deleted");
    assert_eq!(kinds, ["scim.user_deleted"]);
}

/// ETags: every read and write carries the version; a stale If-Match is 412 on PUT, PATCH
/// and DELETE; a current one passes. Needs: scim-store.
#[test]
fn etags_guard_every_write() {
    let bed = Scim::start();
    let user = bed.create_user(json!({"userName": "eve"}));
    let id = user["id"].as_str().unwrap();
    let path = format!("/Users/{id}");
    let read = bed.call("GET", &path, None);
    assert_eq!(read.header("etag"), Some("W/\"1\""));
    let body = json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "displayName", "value": "E"}]});
    let stale = [("if-match", "W/\"7\"")];
    bed.send("PATCH", &path, &bed.token, Some(&body), &stale)
        .assert_error(412, None);
    bed.send("PUT", &path, &bed.token, Some(&json!({"userName": "eve"})), &stale)
        .assert_error(412, None);
    bed.send("DELETE", &path, &bed.token, None, &stale)
        .assert_error(412, None);
    let ok = bed.send("PATCH", &path, &bed.token, Some(&body), &[("if-match", "W/\"1\"")]);
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.header("etag"), Some("W/\"2\""));
    let group = bed.create_group("etag-group", &[]);
    let gpath = format!("/Groups/{}", group["id"].as_str().unwrap());
    bed.send("DELETE", &gpath, &bed.token, None, &stale)
        .assert_error(412, None);
    assert_eq!(
        bed.send("DELETE", &gpath, &bed.token, None, &[("if-match", "W/\"1\"")])
            .status,
        204
    );
}

/// Only a SCIM token opens /scim/v2, and a SCIM token opens nothing else; only an admin
/// makes one, and it carries nothing else. Needs: scim-store (the token's kind is stored).
#[test]
fn a_scim_token_calls_scim_only_and_nothing_else_calls_scim() {
    let bed = Scim::start();
    let (status, body) = bed.s.get("/v1/requests", &bed.token);
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body["error"]["message"],
        "a SCIM provisioning token may call /scim/v2 only"
    );
    let (status, _) = bed.s.post(
        "/v1/requests",
        &bed.token,
        json!({"resource": "staging-db", "action": "read", "duration": "1h", "reason": "x"}),
    );
    assert_eq!(status, 403);
    let (status, _) = bed.s.post(
        "/v1/check",
        &bed.token,
        json!({"principal": "a", "resource": "b", "action": "c"}),
    );
    assert_eq!(status, 403);
    for token in [
        "",
        "demo-admin",
        "demo-svc",
        "jgt_0000000000000000000000000000000000000000000000000000000000000000",
    ] {
        let reply = bed.send("GET", "/Users", token, None, &[]);
        reply.assert_error(401, None);
        assert!(reply
            .header("www-authenticate")
            .is_some_and(|h| h.starts_with("Bearer")));
    }
    // Only admins make provisioning tokens, and --scim takes nothing else.
    let (status, _) = bed
        .s
        .post("/v1/tokens", "demo-alice", json!({"principal": "scim-x", "scim": true}));
    assert_eq!(status, 403);
    for extra in [
        json!({"groups": ["dev"]}),
        json!({"service": true}),
        json!({"agent_for": "alice"}),
    ] {
        let mut body = json!({"principal": "scim-y", "scim": true});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let (status, answer) = bed.s.post("/v1/tokens", "demo-admin", body);
        assert_eq!(status, 422, "{answer}");
    }
    let (code, out, err) = bed.s.cli(
        "demo-admin",
        &["token", "create", "--principal", "scim-z", "--scim", "--service"],
    );
    assert_ne!(code, 0, "{out}{err}");
    let (code, out, _) = bed.s.cli("demo-admin", &["token", "list"]);
    assert_eq!(code, 0);
    assert!(
        out.lines().any(|l| l.contains("scim-okta") && l.contains("scim")),
        "{out}"
    );
    // Revoked: refused at once on /scim/v2.
    let (_, tokens) = bed.s.get("/v1/tokens", "demo-admin");
    let id = tokens["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["scim"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = bed.s.post(&format!("/v1/tokens/{id}/revoke"), "demo-admin", json!({}));
    assert_eq!(status, 200);
    bed.call("GET", "/Users", None).assert_error(401, None);
}

/// Attacks on every input: names with control, invisible, non-ASCII characters and NUL
/// bytes; look-alikes of directory principals and reserved groups; filters jitgate does not
/// support; bodies and member lists over the limits; wrong media types; unknown ids; members
/// that are no users. Needs: scim-store; the look-alike refusals need scim-directory.
#[test]
fn hostile_input_is_refused_in_scim_terms() {
    let bed = Scim::start();
    for name in [
        "pat smith",
        "pat\u{200b}",
        "pаt",
        "pat\u{0}x",
        "pat\tx",
        "ｐａｔ",
        "pat\u{202e}",
    ] {
        bed.call("POST", "/Users", Some(json!({"userName": name})))
            .assert_error(400, Some("invalidValue"));
    }
    for field in ["displayName", "externalId"] {
        let mut body = json!({"userName": "ok-user"});
        body[field] = json!("a\u{0}b");
        bed.call("POST", "/Users", Some(body))
            .assert_error(400, Some("invalidValue"));
    }
    let mut body = json!({"userName": "ok-user"});
    body[ENTERPRISE] = json!({"employeeNumber": "7\u{0}"});
    bed.call("POST", "/Users", Some(body))
        .assert_error(400, Some("invalidValue"));
    bed.call("POST", "/Users", Some(json!({"displayName": "no name"})))
        .assert_error(400, Some("invalidValue"));
    bed.call("POST", "/Users", Some(json!({"userName": 7})))
        .assert_error(400, Some("invalidValue"));
    bed.call("POST", "/Users", Some(json!(["userName"])))
        .assert_error(400, Some("invalidSyntax"));
    // Not JSON, another media type.
    let reply = bed.send(
        "POST",
        "/Users",
        &bed.token,
        None,
        &[("content-type", "application/scim+json")],
    );
    reply.assert_error(400, Some("invalidSyntax"));
    let reply = bed
        .s
        .http
        .post(format!("{}/scim/v2/Users", bed.s.url))
        .bearer_auth(&bed.token)
        .header("content-type", "text/plain")
        .body("userName=x")
        .send()
        .unwrap();
    assert_eq!(reply.status().as_u16(), 415);
    // Reserved and unusable group names.
    for name in ["admins", "Admins", "AUDITORS", "agents", "sre team", "sre\u{0}", "ѕre"] {
        let reply = bed.call("POST", "/Groups", Some(json!({"displayName": name})));
        reply.assert_error(400, Some("invalidValue"));
    }
    // A member that is no user.
    bed.call(
        "POST",
        "/Groups",
        Some(json!({"displayName": "g1", "members": [{"value": "nobody"}]})),
    )
    .assert_error(400, Some("invalidValue"));
    // Filters that are not supported.
    for filter in [
        r#"userName co "a""#,
        r#"userName eq "a" or userName eq "b""#,
        r#"emails.value eq "a@b""#,
        r#"meta.lastModified gt "2020-01-01T00:00:00Z""#,
        "userName pr",
    ] {
        bed.call("GET", &format!("/Users?filter={}", url_filter(filter)), None)
            .assert_error(400, Some("invalidFilter"));
    }
    // Over the body limit: 413 tooLarge; a member list over the limit of one call.
    let huge = json!({"userName": "big", "displayName": "x".repeat(3 * 1024 * 1024)});
    bed.call("POST", "/Users", Some(huge))
        .assert_error(413, Some("tooLarge"));
    let many: Vec<Value> = (0..20_001).map(|i| json!({"value": format!("u{i}")})).collect();
    let reply = bed.call("POST", "/Groups", Some(json!({"displayName": "many", "members": many})));
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.body["scimType"], "tooMany");
    // Unknown ids, unknown endpoints.
    bed.call("GET", "/Users/nope", None).assert_error(404, None);
    bed.call(
        "PATCH",
        "/Groups/nope",
        Some(json!({"Operations": [{"op": "remove", "path": "members"}]})),
    )
    .assert_error(404, None);
    bed.call("GET", "/Bulk", None).assert_error(404, None);
    // A PATCH that is no PatchOp, or changes what the server owns.
    let user = bed.create_user(json!({"userName": "target"}));
    let path = format!("/Users/{}", user["id"].as_str().unwrap());
    bed.patch(&path, json!([{"op": "move", "path": "userName"}]))
        .assert_error(400, Some("invalidSyntax"));
    bed.patch(&path, json!([{"op": "replace", "path": "id", "value": "mine"}]))
        .assert_error(400, Some("mutability"));
    bed.patch(&path, json!([{"op": "remove", "path": "userName"}]))
        .assert_error(400, Some("mutability"));
    bed.patch(&path, json!([{"op": "remove"}]))
        .assert_error(400, Some("noTarget"));
    bed.patch(
        &path,
        json!([{"op": "replace", "path": "userName", "value": "tar get"}]),
    )
    .assert_error(400, Some("invalidValue"));
    // Nothing of it was kept.
    let all = bed.ok("GET", "/Users", None);
    assert_eq!(all["totalResults"], 1, "{all}");
    let groups = bed.ok("GET", "/Groups", None);
    assert_eq!(groups["totalResults"], 0, "{groups}");
}

/// A userName naming a `directory.toml` principal (in any case) is refused 409, so an identity
/// provider cannot become `admin` or `svc-api`. Needs: scim-store and scim-directory.
#[test]
fn a_directory_principal_cannot_be_provisioned() {
    let bed = Scim::start();
    for name in ["admin", "Admin", "svc-api", "ALICE"] {
        bed.call("POST", "/Users", Some(json!({"userName": name})))
            .assert_error(409, Some("uniqueness"));
    }
}

/// The issue's Bar: a user created over SCIM in group `dev` files an automatic
/// `staging-db read` with an API token an admin made for that principal, and the check is
/// allowed; PATCH active=false makes the check deny within a second and the audit shows the
/// revocation; the SCIM token calling /v1/requests is refused.
/// Needs: scim-store and scim-directory.
#[test]
fn the_bar_provisioned_dev_gets_staging_and_deactivation_denies_within_a_second() {
    let bed = Scim::start();
    let user = bed.create_user(json!({"userName": "pat", "active": true}));
    let id = user["id"].as_str().unwrap();
    bed.create_group("dev", &[id]);
    let (status, token) = bed.s.post("/v1/tokens", "demo-admin", json!({"principal": "pat"}));
    assert_eq!(status, 201, "{token}");
    let pat = token["token"].as_str().unwrap().to_string();
    let request = bed.s.file(
        &pat,
        json!({"resource": "staging-db", "action": "read", "duration": "1h", "reason": "debug a failing test"}),
    );
    assert_eq!(request["status"], "approved", "{request}");
    let request_id = request["id"].as_str().unwrap().to_string();
    assert_eq!(bed.s.check("pat", "staging-db", "read", None)["allow"], true);
    let reply = bed.patch(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "value": {"active": false}}]),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        if bed.s.check("pat", "staging-db", "read", None)["allow"] == false {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the check still allows pat a second after deactivation"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, events) = bed.s.get(&format!("/v1/audit?request_id={request_id}"), "demo-admin");
    assert_eq!(status, 200, "{events}");
    let revoked = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "grant.revoked")
        .unwrap_or_else(|| panic!("no grant.revoked in {events}"));
    assert_eq!(revoked["actor"], "scim-okta", "{revoked}");
    assert!(
        revoked["comment"].as_str().unwrap().contains("deactivated"),
        "{revoked}"
    );
    assert_eq!(
        bed.s.audit_kinds("kind=scim.user_deactivated"),
        ["scim.user_deactivated"]
    );
    // Their API token is refused now, and the provisioning token is refused off /scim/v2.
    let (status, _) = bed.s.get("/v1/requests", &pat);
    assert_eq!(status, 401);
    let (status, _) = bed.s.get("/v1/requests", &bed.token);
    assert_eq!(status, 403);
}

/// A JWKS file with RFC 8037's example Ed25519 key: enough for an issuer to be configured.
fn jwks_file(dir: &Path) -> PathBuf {
    let path = dir.join("jwks.json");
    std::fs::write(
        &path,
        r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "k1"}]}"#,
    )
    .unwrap();
    path
}

fn issuer(name: &str, prefix: Option<&str>, jwks: &Path) -> String {
    format!(
        "[[auth.oidc]]\nissuer = \"{name}\"\naudience = [\"jitgate\"]\njwks_file = \"{}\"\nalgorithms = [\"EdDSA\"]\n{}\n",
        jwks.display(),
        prefix.map_or(String::new(), |p| format!("principal_prefix = \"{p}\"\n")),
    )
}

/// `[scim]` that cannot keep provisioned names apart from another issuer's is refused at
/// start, naming both keys; so is a linked issuer whose prefix differs. Needs: nothing else.
#[test]
fn a_scim_config_that_cannot_keep_names_apart_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = jwks_file(dir.path());
    let two = format!(
        "{}{}",
        issuer("https://okta.example.test", None, &jwks),
        issuer("https://google.example.test", Some("google:"), &jwks)
    );
    let stderr = serve_refused(
        &quickstart(),
        &format!("{two}\n[scim]\nprincipal_attribute = \"userName\"\n"),
    );
    assert!(
        stderr.contains("oidc[0].principal_prefix") && stderr.contains("scim.oidc_issuer"),
        "{stderr}"
    );
    let stderr = serve_refused(
        &quickstart(),
        &format!(
            "{}\n[scim]\noidc_issuer = \"https://okta.example.test\"\nprincipal_prefix = \"corp:\"\n",
            issuer("https://okta.example.test", Some("okta:"), &jwks)
        ),
    );
    assert!(
        stderr.contains("scim.principal_prefix") && stderr.contains("differs"),
        "{stderr}"
    );
    let stderr = serve_refused(&quickstart(), "[scim]\nprincipal_attribute = \"nickName\"\n");
    assert!(stderr.contains("scim.principal_attribute"), "{stderr}");
    let stderr = serve_refused(&quickstart(), "[scim]\nprincipal_atribute = \"userName\"\n");
    assert!(stderr.contains("principal_atribute"), "{stderr}");
}

/// With the linked issuer unprefixed and another issuer's names under `google:`, a
/// provisioned userName in `google:` is refused 409 (it would be that issuer's principal);
/// with a prefix, the principal is the prefix and the userName. Needs: scim-store.
#[test]
fn provisioned_principals_never_fall_in_another_issuers_names() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = jwks_file(dir.path());
    let config = format!(
        "{}{}\n[scim]\noidc_issuer = \"https://okta.example.test\"\n",
        issuer("https://okta.example.test", None, &jwks),
        issuer("https://google.example.test", Some("google:"), &jwks)
    );
    let bed = Scim::start_with(Some(&config));
    bed.call("POST", "/Users", Some(json!({"userName": "google:eve"})))
        .assert_error(409, Some("uniqueness"));
    bed.call("POST", "/Users", Some(json!({"userName": "GOOGLE:eve"})))
        .assert_error(409, Some("uniqueness"));
    bed.create_user(json!({"userName": "eve"}));

    let config = format!(
        "{}\n[scim]\noidc_issuer = \"https://okta.example.test\"\nprincipal_prefix = \"okta:\"\nprincipal_attribute = \"email\"\n",
        issuer("https://okta.example.test", Some("okta:"), &jwks)
    );
    let bed = Scim::start_with(Some(&config));
    bed.call("POST", "/Users", Some(json!({"userName": "no-email"})))
        .assert_error(400, Some("invalidValue"));
    bed.create_user(
        json!({"userName": "00u1", "emails": [{"value": "x@a.test"}, {"value": "pat@a.test", "primary": true}]}),
    );
    let (status, events) = bed.s.get("/v1/audit?kind=scim.user_created", "demo-admin");
    assert_eq!(status, 200, "{events}");
    assert_eq!(events["items"][0]["subject"], "okta:pat@a.test", "{events}");
}

/// Eight clients adding members to one group at the same moment: every edit is kept (a write
/// that lost the race is computed again from a fresh read), none is lost. Needs: scim-store.
#[test]
fn concurrent_member_edits_of_one_group_are_all_kept() {
    let bed = Scim::start();
    let ids: Vec<String> = (0..16)
        .map(|n| {
            bed.create_user(json!({"userName": format!("member{n}")}))["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let group = bed.create_group("busy", &[]);
    let path = format!("/Groups/{}", group["id"].as_str().unwrap());
    std::thread::scope(|scope| {
        for pair in ids.chunks(2) {
            let (bed, path) = (&bed, &path);
            scope.spawn(move || {
                let value: Vec<Value> = pair.iter().map(|id| json!({"value": id})).collect();
                let reply = bed.patch(path, json!([{"op": "add", "path": "members", "value": value}]));
                assert_eq!(reply.status, 200, "{}", reply.body);
            });
        }
    });
    let read = bed.ok("GET", &path, None);
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(member_ids(&read), expected);
    assert_eq!(read["meta"]["version"], "W/\"9\"", "{read}");
}

/// Two replicas on one PostgreSQL: a user provisioned on A into `dev` files and is allowed
/// on B once B has heard of it; deactivated on A, B's check denies within a second and B
/// refuses their API token. Needs: scim-store and scim-directory (the replica follower).
#[test]
fn a_deactivation_on_one_replica_denies_on_the_other_within_a_second() {
    let pg = Postgres::start();
    pg.admin("postgres", "CREATE DATABASE jitgate");
    let url = pg.url("postgres", SUPERUSER_PASSWORD, "jitgate");
    let a = Scim::start_on(&url);
    let b = Server::start_on(&quickstart(), None, Some(&url));
    let user = a.create_user(json!({"userName": "pat", "active": true}));
    let id = user["id"].as_str().unwrap();
    a.create_group("dev", &[id]);
    let (status, token) = b.post("/v1/tokens", "demo-admin", json!({"principal": "pat"}));
    assert_eq!(status, 201, "{token}");
    let pat = token["token"].as_str().unwrap().to_string();
    let body = json!({"resource": "staging-db", "action": "read", "duration": "1h", "reason": "replica test"});
    // No product bar here (B learns of the new user and group through its follower): the
    // test only needs pat known on B before it measures the deactivation's one-second bars.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, request) = b.post("/v1/requests", &pat, body.clone());
        if status == 201 {
            assert_eq!(request["status"], "approved", "{request}");
            break;
        }
        assert!(Instant::now() < deadline, "B never let pat file: {status} {request}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(b.check("pat", "staging-db", "read", None)["allow"], true);
    let reply = a.patch(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "value": {"active": false}}]),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let started = Instant::now();
    while b.check("pat", "staging-db", "read", None)["allow"] == true {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "B still allows pat a second after A deactivated them"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    while b.get("/v1/requests", &pat).0 != 401 {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "B still takes pat's token a second after"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
