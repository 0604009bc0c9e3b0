//! `GET /v1/resources` and `jitgate resources`: what a caller may request, with what each
//! action would take, and nothing they may not request.

use crate::support::*;
use serde_json::{json, Value};

/// The (resource, action, automatic, needs) a listing shows, in order.
fn offered(list: &Value) -> Vec<(String, String, bool, Value)> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            r["actions"].as_array().unwrap().iter().map(move |a| {
                (
                    r["name"].as_str().unwrap().to_string(),
                    a["action"].as_str().unwrap().to_string(),
                    a["automatic"].as_bool().unwrap(),
                    a["needs"].clone(),
                )
            })
        })
        .collect()
}

#[test]
fn each_caller_sees_only_what_they_may_request_and_what_it_takes() {
    let s = Server::start();
    let (status, alice) = s.get("/v1/resources", "demo-alice");
    assert_eq!(status, 200, "{alice}");
    let offered_to_alice = offered(&alice);
    let names: Vec<(&str, &str)> = offered_to_alice
        .iter()
        .map(|(r, a, _, _)| (r.as_str(), a.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("bastion", "login"),
            // The quickstart's MCP server (issue #24): its tools, selected by their labels.
            ("files", "delete_file"),
            ("files", "list_directory"),
            ("files", "read_file"),
            ("files", "write_file"),
            ("prod-api", "deploy"),
            ("prod-db", "read"),
            ("prod-db", "write"),
            ("staging-db", "migrate"),
            ("staging-db", "read")
        ]
    );
    // Selected by kind and label, not named: automatic as its workflow says.
    let migrate = offered_to_alice.iter().find(|o| o.1 == "migrate").unwrap();
    assert!(migrate.2, "staging-db migrate is automatic");
    let staging = offered_to_alice.iter().find(|o| o.0 == "staging-db").unwrap();
    assert!(staging.2, "staging-db read is automatic");
    assert_eq!(staging.3, json!([]));
    let prod_read = offered_to_alice
        .iter()
        .find(|o| o.0 == "prod-db" && o.1 == "read")
        .unwrap();
    assert!(!prod_read.2);
    assert_eq!(prod_read.3, json!([{"group": "sre", "approvals": 1}]));
    let prod_write = offered_to_alice
        .iter()
        .find(|o| o.0 == "prod-db" && o.1 == "write")
        .unwrap();
    assert_eq!(prod_write.3, json!([{"group": "sre", "approvals": 2}]));
    assert!(alice.get("next").is_none(), "{alice}");

    // bob (sre) may request only what names sre among its requesters.
    let (_, bob) = s.get("/v1/resources", "demo-bob");
    let names: Vec<(String, String)> = offered(&bob).into_iter().map(|(r, a, _, _)| (r, a)).collect();
    assert_eq!(names, [("prod-db".to_string(), "read".to_string())]);

    // What is listed can be filed: every automatic offer is granted at once.
    let r = s.file(
        "demo-alice",
        json!({"resource": "staging-db", "action": "read", "duration": "5m"}),
    );
    assert_eq!(r["status"], "approved", "{r}");
}

#[test]
fn search_labels_and_pages_narrow_the_list_and_bad_queries_are_refused_by_name() {
    let s = Server::start();
    // Search: names and descriptions, any case.
    let (_, found) = s.get("/v1/resources?q=PROD-D", "demo-alice");
    let names: Vec<String> = found["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["prod-db"]);
    let (_, by_description) = s.get("/v1/resources?q=staging%20database", "demo-alice");
    assert_eq!(by_description["items"][0]["name"], "staging-db", "{by_description}");
    // Labels and kinds select from the catalog (examples/quickstart/resources.toml).
    let names_of = |list: &Value| -> Vec<String> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (status, prod) = s.get("/v1/resources?label=env=prod", "demo-alice");
    assert_eq!(status, 200, "{prod}");
    assert_eq!(names_of(&prod), ["bastion", "prod-api", "prod-db"]);
    let (_, data_prod) = s.get("/v1/resources?label=env=prod,team=data", "demo-alice");
    assert_eq!(names_of(&data_prod), ["prod-db"]);
    assert_eq!(data_prod["items"][0]["kind"], "postgres", "{data_prod}");
    assert_eq!(data_prod["items"][0]["labels"], json!({"env": "prod", "team": "data"}));
    assert_eq!(data_prod["items"][0]["description"], "The production database");
    let (_, ssh) = s.get("/v1/resources?kind=ssh", "demo-alice");
    assert_eq!(names_of(&ssh), ["bastion"]);
    let (_, none) = s.get("/v1/resources?label=env=nowhere", "demo-alice");
    assert_eq!(none["items"], json!([]));
    // Pages: one resource at a time, each page continuing after the last.
    let mut seen = Vec::new();
    let mut path = "/v1/resources?limit=1".to_string();
    loop {
        let (status, page) = s.get(&path, "demo-alice");
        assert_eq!(status, 200, "{page}");
        assert!(page["items"].as_array().unwrap().len() <= 1);
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["name"].as_str().unwrap().to_string()),
        );
        match page["next"].as_str() {
            Some(next) => path = format!("/v1/resources?limit=1&before={next}"),
            None => break,
        }
    }
    assert_eq!(seen, ["bastion", "files", "prod-api", "prod-db", "staging-db"]);
    // Refusals name what to fix.
    let (status, bad) = s.get("/v1/resources?label=envprod", "demo-alice");
    assert_eq!(status, 422, "{bad}");
    assert!(bad["error"]["message"].as_str().unwrap().starts_with("label:"), "{bad}");
    let (status, bad) = s.get("/v1/resources?limit=0", "demo-alice");
    assert_eq!(status, 422, "{bad}");
    assert!(bad["error"]["message"].as_str().unwrap().contains("limit"), "{bad}");
    let (status, bad) = s.get("/v1/resources?q=prod%00db", "demo-alice");
    assert_eq!(status, 422, "{bad}");
    let long = "x".repeat(257);
    let (status, bad) = s.get(&format!("/v1/resources?q={long}"), "demo-alice");
    assert_eq!(status, 422, "{bad}");
    assert!(bad["error"]["message"].as_str().unwrap().starts_with("q:"), "{bad}");
    let (status, _) = s.get("/v1/resources", "");
    assert_eq!(status, 401);
}

#[test]
fn the_cli_lists_what_the_caller_may_request() {
    let s = Server::start();
    let (code, out, err) = s.cli("demo-alice", &["resources"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("RESOURCE"), "{out}");
    let line = |resource: &str, action: &str| {
        out.lines()
            .find(|l| l.split_whitespace().take(2).eq([resource, action]))
            .unwrap_or_else(|| panic!("no {resource} {action} in:\n{out}"))
            .to_string()
    };
    assert!(line("staging-db", "read").contains("automatic"));
    assert!(line("prod-db", "write").contains("2 of sre"));
    let (code, out, _) = s.cli("demo-alice", &["resources", "--search", "staging"]);
    assert_eq!(code, 0);
    // The header, then staging-db's two actions: read (named) and migrate (selected).
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(
        out.lines()
            .all(|l| l.starts_with("RESOURCE") || l.starts_with("staging-db")),
        "{out}"
    );
    let (code, out, _) = s.cli("demo-bob", &["--output", "json", "resources"]);
    assert_eq!(code, 0, "{out}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
}

#[test]
fn a_catalog_file_added_under_resources_is_served_without_a_restart() {
    let dir = editable_quickstart();
    let s = Server::start_with_policy(dir.path());
    let (_, before) = s.get("/v1/resources?label=team=ledger", "demo-alice");
    assert_eq!(before["items"], json!([]), "{before}");
    // A new staging database, declared and nothing else: the quickstart's selector (migrate on
    // every staging PostgreSQL database) governs it without a workflow written for it.
    std::fs::create_dir(dir.path().join("resources")).unwrap();
    std::fs::write(
        dir.path().join("resources").join("ledger.toml"),
        "[[resource]]\nname = \"ledger-db\"\nkind = \"postgres\"\nlabels = { env = \"staging\", team = \"ledger\" }\n",
    )
    .unwrap();
    wait_until("the new catalog file is served", || {
        let (_, after) = s.get("/v1/resources?label=team=ledger", "demo-alice");
        after["items"].as_array().is_some_and(|items| {
            items.len() == 1
                && items[0]["name"] == "ledger-db"
                && items[0]["actions"].as_array().is_some_and(|actions| {
                    actions.len() == 1
                        && actions[0]["action"] == "migrate"
                        && actions[0]["automatic"] == true
                        && actions[0]["needs"] == json!([])
                })
        })
    });
    let r = s.file(
        "demo-alice",
        json!({"resource": "ledger-db", "action": "migrate", "duration": "10m", "reason": "OPS-9 add an index"}),
    );
    assert_eq!(r["status"], "approved", "{r}");
    assert_eq!(s.check("alice", "ledger-db", "migrate", None)["allow"], true);
}

#[test]
fn the_listing_shows_what_cedar_enforces_forbids_hide_and_automatic_approvals_show() {
    let dir = editable_quickstart();
    std::fs::write(
        dir.path().join("policy.cedar"),
        r#"
forbid(principal == User::"alice", action == Action::"request", resource == Resource::"prod-api");
permit(principal == User::"alice", action == Action::"auto_approve", resource == Resource::"prod-db")
when { context.access == "read" };
"#,
    )
    .unwrap();
    let s = Server::start_with_policy(dir.path());
    let (status, alice) = s.get("/v1/resources", "demo-alice");
    assert_eq!(status, 200, "{alice}");
    let offers = offered(&alice);
    assert!(
        !offers.iter().any(|o| o.0 == "prod-api"),
        "a forbidden request is not offered: {alice}"
    );
    let read = offers.iter().find(|o| o.0 == "prod-db" && o.1 == "read").unwrap();
    assert!(
        read.2,
        "Cedar approves alice's reads at once, so the listing says so: {alice}"
    );
    assert_eq!(read.3, json!([]));
    let write = offers.iter().find(|o| o.0 == "prod-db" && o.1 == "write").unwrap();
    assert!(!write.2, "writes still wait: {alice}");

    // What the listing says is what filing does.
    let r = s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "read", "duration": "5m", "reason": "OPS-1 look"}),
    );
    assert_eq!(r["status"], "approved", "{r}");
    let (status, refused) = s.post(
        "/v1/requests",
        "demo-alice",
        json!({"resource": "prod-api", "action": "deploy", "reason": "OPS-2", "payload": "sha256:ab"}),
    );
    assert_eq!(status, 403, "{refused}");
}

/// Issue #21's bar on the quickstart plus a catalog with labels: a label-selected workflow
/// approves at once, a glob-selected one waits for its group, an owners step asks the
/// resource's owners; a request for all three is approved item by item and then allows exactly
/// each checked pair; two equally specific selectors on one resource are refused.
#[test]
fn selectors_and_owners_over_the_catalog_decide_a_three_item_request_item_by_item() {
    let dir = quickstart_with_workflows(
        r#"
# Every staging database, today's and any added later: selected by kind and label.
[[workflow]]
resources = { kind = "postgres", labels = { env = "staging" } }
actions = ["write"]
requesters = ["dev"]
auto_approve = true

# Every production resource by name.
[[workflow]]
resources = { names = ["prod-*"] }
actions = ["audit"]
requesters = ["dev"]
steps = [{ group = "sre", approvals = 1 }]

# The ledger console's owners decide.
[[workflow]]
resource = "ledger-console"
action = "access"
requesters = ["dev"]
steps = [{ owners = true }]
"#,
    );
    let mut catalog = std::fs::read_to_string(quickstart().join("resources.toml")).unwrap();
    catalog.push_str(
        r#"
[[resource]]
name = "ledger-db"
kind = "postgres"
labels = { env = "staging", team = "ledger" }

[[resource]]
name = "ledger-console"
kind = "http"
labels = { env = "prod", team = "ledger" }
owners = ["admins"]
description = "The ledger's admin console"
"#,
    );
    std::fs::write(dir.path().join("resources.toml"), &catalog).unwrap();
    let s = Server::start_with_policy(dir.path());

    // What alice is offered says what each would take.
    let (_, listed) = s.get("/v1/resources", "demo-alice");
    let offers = offered(&listed);
    let offer = |resource: &str, action: &str| {
        offers
            .iter()
            .find(|o| o.0 == resource && o.1 == action)
            .cloned()
            .unwrap_or_else(|| panic!("{resource} {action} is not offered: {listed}"))
    };
    assert!(offer("ledger-db", "write").2, "label-selected: automatic");
    assert!(offer("staging-db", "write").2, "label-selected: automatic");
    assert_eq!(offer("prod-db", "audit").3, json!([{"group": "sre", "approvals": 1}]));
    assert_eq!(offer("prod-api", "audit").3, json!([{"group": "sre", "approvals": 1}]));
    assert_eq!(
        offer("ledger-console", "access").3,
        json!([{"group": "admins", "approvals": 1}])
    );

    let pairs = [
        ("ledger-db", "write"),
        ("prod-db", "audit"),
        ("ledger-console", "access"),
    ];
    let r = s.file(
        "demo-alice",
        json!({
            "items": pairs.iter().map(|(r, a)| json!({"resource": r, "action": a})).collect::<Vec<_>>(),
            "duration": "20m",
            "reason": "OPS-21 reconcile the ledger",
        }),
    );
    assert_eq!(r["status"], "pending", "{r}");
    assert_eq!(r["items"][0]["needs"], json!([]), "{r}");
    assert_eq!(r["items"][1]["needs"], json!([{"group": "sre", "approvals": 1}]), "{r}");
    assert_eq!(
        r["items"][2]["needs"],
        json!([{"group": "admins", "approvals": 1}]),
        "{r}"
    );
    let id = r["id"].as_str().unwrap().to_string();
    let allowed = |resource: &str, action: &str| s.check("alice", resource, action, None)["allow"] == true;
    assert!(
        pairs.iter().all(|(r, a)| !allowed(r, a)),
        "nothing before every item is approved"
    );

    // bob (sre) approves the glob-selected item; the owners' item still waits.
    let (status, after_bob) = s.post(&format!("/v1/requests/{id}/approve"), "demo-bob", json!({}));
    assert_eq!(status, 200, "{after_bob}");
    assert_eq!(after_bob["status"], "pending", "{after_bob}");
    assert!(pairs.iter().all(|(r, a)| !allowed(r, a)), "nothing while an item waits");

    // The owner group (admins) approves the last item: each checked pair is allowed, nothing else.
    let (status, done) = s.post(&format!("/v1/requests/{id}/approve"), "demo-admin", json!({}));
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["status"], "approved", "{done}");
    for (resource, action) in pairs {
        assert!(allowed(resource, action), "{resource} {action} after approval");
        assert_eq!(s.check("dave", resource, action, None)["allow"], false, "only alice");
    }
    assert!(!allowed("prod-api", "audit"), "an item not asked for");
    assert!(!allowed("staging-db", "write"), "an item not asked for");

    // Two selectors of equal specificity on one (resource, action): refused, naming both.
    let mut workflows = std::fs::read_to_string(dir.path().join("workflows.toml")).unwrap();
    workflows.push_str(
        "\n[[workflow]]\nresources = { labels = { team = \"ledger\" } }\nactions = [\"write\"]\nrequesters = [\"dev\"]\nsteps = [{ group = \"sre\", approvals = 1 }]\n",
    );
    std::fs::write(dir.path().join("workflows.toml"), workflows).unwrap();
    let refused = std::process::Command::new(BIN)
        .args(["policy", "check"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("'ledger-db'") && said.contains("equal specificity") && said.contains("team = \"ledger\""),
        "{said}"
    );
}

/// Issue #24: an MCP server's tools are labelled actions. The listing says, per tool, what it
/// takes, whether a request must carry the exact call (action_bound) for one use, and the
/// labels the catalog gives it; what it says is what filing does.
#[test]
fn an_mcp_servers_tools_are_listed_with_their_labels_and_binding() {
    let s = Server::start();
    let (status, listed) = s.get("/v1/resources?kind=mcp", "demo-alice");
    assert_eq!(status, 200, "{listed}");
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{listed}");
    assert_eq!(items[0]["name"], "files");
    assert_eq!(items[0]["kind"], "mcp");
    let tool = |name: &str| {
        items[0]["actions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["action"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} is not listed: {listed}"))
    };
    for name in ["read_file", "list_directory"] {
        let t = tool(name);
        assert_eq!(t["automatic"], true, "{t}");
        assert_eq!(t["action_bound"], false, "{t}");
        assert_eq!(t["single_use"], false, "{t}");
        assert_eq!(t["labels"], json!({"effect": "read"}), "{t}");
    }
    for (name, effect) in [("write_file", "write"), ("delete_file", "destructive")] {
        let t = tool(name);
        assert_eq!(t["automatic"], false, "{t}");
        assert_eq!(t["needs"], json!([{"group": "sre", "approvals": 1}]), "{t}");
        assert_eq!(t["action_bound"], true, "{t}");
        assert_eq!(t["single_use"], true, "{t}");
        assert_eq!(t["labels"], json!({"effect": effect}), "{t}");
    }
    // Other resources' actions carry the new fields too: no labels, their own binding.
    let (_, all) = s.get("/v1/resources", "demo-alice");
    let deploy = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "prod-api")
        .map(|r| r["actions"][0].clone())
        .unwrap();
    assert_eq!(
        (
            deploy["action_bound"].clone(),
            deploy["single_use"].clone(),
            deploy["labels"].clone()
        ),
        (json!(true), json!(true), json!({}))
    );
    // bob (sre) requests no tool: he reviews them.
    let (_, bob) = s.get("/v1/resources?kind=mcp", "demo-bob");
    assert_eq!(bob["items"], json!([]), "{bob}");

    // What the listing says is what filing does: a read at once, a delete waits for the exact call.
    let read = s.file(
        "demo-alice",
        json!({"resource": "files", "action": "read_file", "duration": "5m"}),
    );
    assert_eq!(read["status"], "approved", "{read}");
    let call = r#"{"arguments":{"path":"notes.txt"},"tool":"delete_file"}"#;
    let delete = s.file(
        "demo-alice",
        json!({"resource": "files", "action": "delete_file", "reason": "clean up", "payload": call}),
    );
    assert_eq!(delete["status"], "pending", "{delete}");
    let (status, unbound) = s.post(
        "/v1/requests",
        "demo-alice",
        json!({"resource": "files", "action": "delete_file", "reason": "clean up"}),
    );
    assert_eq!(status, 422, "{unbound}");
    assert!(
        unbound["error"]["message"].as_str().unwrap().contains("payload"),
        "{unbound}"
    );
    // A tool the catalog declares nowhere is no action of the resource.
    let (status, unknown) = s.post(
        "/v1/requests",
        "demo-alice",
        json!({"resource": "files", "action": "move_file", "reason": "x"}),
    );
    assert_eq!(status, 422, "{unknown}");
    assert!(
        unknown["error"]["message"]
            .as_str()
            .unwrap()
            .contains("its actions are: delete_file, list_directory, read_file, write_file"),
        "{unknown}"
    );
}
