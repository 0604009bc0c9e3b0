//! Notifications and approving from Slack, against the real server with receivers on loopback
//! standing in for Slack's incoming webhook, a JSON webhook and Slack's response URLs.

use crate::support::receiver::{receiver, Receiver};
use crate::support::*;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

const HOOK_SECRET: &str = "0123456789abcdef-notify-secret";
const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

/// The quickstart with Slack ids for alice, dave, bob and carol (erin has none), a team lead
/// lena, and a workflow whose undecided requests escalate to the leads after two seconds.
fn policy() -> tempfile::TempDir {
    let dir = quickstart_with_workflows(
        r#"
[[workflow]]
resource = "prod-db"
action = "migrate"
requesters = ["dev"]
steps = [{ group = "sre", approvals = 1 }]
escalation = { after = "2s", groups = ["leads"] }

[[workflow]]
resource = "prod-cache"
action = "flush"
requesters = ["sre"]
steps = [{ group = "sre", approvals = 1 }]
break_glass = { groups = ["sre"], max_duration = "15m", reviewers = ["leads"] }
"#,
    );
    let path = dir.path().join("directory.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(
        "\n[[principal]]\nname = \"lena\"\ngroups = [\"leads\"]\ntoken = \"demo-lena\"\nslack_user = \"ULENA\"\n",
    );
    for (name, slack) in [
        ("alice", "UALICE"),
        ("dave", "UDAVE"),
        ("bob", "UBOB"),
        ("carol", "UCAROL"),
    ] {
        text = text.replace(
            &format!("name = \"{name}\"\n"),
            &format!("name = \"{name}\"\nslack_user = \"{slack}\"\n"),
        );
    }
    std::fs::write(&path, text).unwrap();
    dir
}

struct Setup {
    s: Server,
    slack: Receiver,
    hook: Receiver,
    responses: Receiver,
    _policy: tempfile::TempDir,
}

fn setup() -> Setup {
    setup_with("")
}

/// The set-up, with `extra` (TOML) added to the server's config.
fn setup_with(extra: &str) -> Setup {
    let (slack, hook, responses) = (receiver(), receiver(), receiver());
    let policy = policy();
    let config = format!(
        r#"
[notify]
public_url = "https://jitgate.example.com/"
remind_before = "4s"

[[notify.sinks]]
name = "ops-slack"
kind = "slack"
url = "{}"

[[notify.sinks]]
name = "pager"
kind = "webhook"
url = "{}"
secret = "{HOOK_SECRET}"
timeout = "2s"

[slack]
signing_secret = "{SLACK_SECRET}"
{extra}
"#,
        slack.url, hook.url
    );
    let s = Server::start_with(policy.path(), Some(&config));
    Setup {
        s,
        slack,
        hook,
        responses,
        _policy: policy,
    }
}

/// The messages a receiver got about a request, by the event that caused them.
fn about(bodies: &[Value], needle: &str) -> Vec<Value> {
    bodies
        .iter()
        .filter(|b| b.to_string().contains(needle))
        .cloned()
        .collect()
}

fn wait_for_message(r: &Receiver, needle: &str, what: &str) -> Value {
    let mut found = None;
    wait_until(what, || {
        found = r.bodies().into_iter().find(|b| b.to_string().contains(needle));
        found.is_some()
    });
    found.unwrap()
}

/// Post a Slack interaction as Slack would: form-encoded `payload`, signed with `secret`, at
/// `stamp` (Unix seconds).
fn slack_click(
    s: &Server,
    user: &str,
    action: &str,
    request_id: &str,
    response_url: &str,
    secret: &str,
    stamp: i64,
) -> u16 {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": user, "username": user.to_lowercase()},
        "actions": [{"action_id": action, "value": request_id, "type": "button"}],
        "response_url": response_url,
    });
    let body = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{stamp}:{body}").as_bytes());
    let signature = format!("v0={}", hex::encode(mac.finalize().into_bytes()));
    s.http
        .post(format!("{}/v1/slack/interactions", s.url))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("X-Slack-Request-Timestamp", stamp.to_string())
        .header("X-Slack-Signature", signature)
        .body(body)
        .send()
        .unwrap()
        .status()
        .as_u16()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Every string in a JSON value, wherever it sits.
fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(strings).collect(),
        Value::Object(map) => map.values().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

/// A requester's reason is mrkdwn in Slack: `<!channel>` would ping everyone and
/// `<https://...|click>` would hide where a link goes. The top-level fallback `text` is
/// escaped exactly like the blocks, in the message to the reviewers and in the one that tells
/// the requester the outcome.
#[test]
fn a_reason_cannot_ping_the_channel_or_disguise_a_link_in_slack() {
    let Setup {
        s,
        slack,
        _policy: _keep_policy,
        ..
    } = setup();
    let reason = "<!channel> <https://evil.example|click> & co";
    let escaped = "&lt;!channel&gt; &lt;https://evil.example|click&gt; &amp; co";
    let r = s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "read", "duration": "30m", "reason": reason}),
    );
    let rid = id(&r);
    let message = wait_for_message(&slack, &rid, "a Slack message for the reviewers");
    let fallback = message["text"].as_str().unwrap();
    assert!(fallback.contains(escaped), "the fallback text: {fallback}");
    let section = message["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(section.contains(escaped), "the block: {section}");

    // The reviewer denies it; alice is told, with her reason in it again.
    let (status, v) = s.post(
        &format!("/v1/requests/{rid}/deny"),
        "demo-bob",
        json!({"comment": "<!here> no"}),
    );
    assert_eq!(status, 200, "{v}");
    wait_for_message(&slack, "was denied by bob", "alice hears of the denial");
    for body in about(&slack.bodies(), &rid) {
        for text in strings(&body) {
            for raw in ["<!channel>", "<!here>", "<https://evil.example|click>", " & co"] {
                assert!(!text.contains(raw), "{raw} reached Slack unescaped: {text}\n{body}");
            }
        }
    }
}

#[test]
fn a_slack_button_counts_against_the_reviewers_write_limit_like_any_other_write() {
    let Setup {
        s,
        responses,
        _policy: _keep_policy,
        ..
    } = setup_with("[limits]\nrequests_per_minute = 0\nwrites_per_minute = 1\nwrites_burst = 1\n");
    let ask = json!({"resource": "prod-db", "action": "read", "reason": "INC-6"});
    let (first, second) = (id(&s.file("demo-alice", ask.clone())), id(&s.file("demo-alice", ask)));
    // bob's one write: an approval through the API.
    assert_eq!(
        s.post(&format!("/v1/requests/{first}/approve"), "demo-bob", json!({}))
            .0,
        200
    );
    // His Slack click comes through the same service, so the same limit holds it back.
    let respond = format!("{}/respond", responses.url);
    assert_eq!(
        slack_click(&s, "UBOB", "jitgate_approve", &second, &respond, SLACK_SECRET, now()),
        200
    );
    let answer = wait_for_message(&responses, "writes_per_minute", "bob hears why");
    assert_eq!(answer["response_type"], "ephemeral", "{answer}");
    let (_, still) = s.get(&format!("/v1/requests/{second}"), "demo-alice");
    assert_eq!(still["status"], "pending", "{still}");
    let (_, metrics) = s.get("/metrics", "");
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("jitgate_limits_exceeded_total{outcome=\"rate\"} 1"),
        "{metrics}"
    );
    // carol is not held back by bob.
    assert_eq!(
        slack_click(&s, "UCAROL", "jitgate_approve", &second, &respond, SLACK_SECRET, now()),
        200
    );
    wait_for_message(&responses, "by carol", "carol's approval");
}

#[test]
fn reviewers_and_requesters_are_told_and_slack_buttons_decide_under_the_same_rules() {
    let Setup {
        s,
        slack,
        hook,
        responses,
        _policy: _keep_policy,
    } = setup();
    let r = s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "read", "duration": "30m", "reason": "INC-5 <slow> & stuck"}),
    );
    let rid = id(&r);

    // Reviewers hear of it in Slack: mentioned by their Slack ids (erin by name), the reason
    // escaped, with Approve, Deny and a link.
    let message = wait_for_message(&slack, &rid, "a Slack message for the reviewers");
    let text = message["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(
        text.contains("alice asks to read prod-db for 30m: INC-5 &lt;slow&gt; &amp; stuck"),
        "{text}"
    );
    assert!(
        text.contains("<@UBOB>") && text.contains("<@UCAROL>") && text.contains("erin"),
        "{text}"
    );
    assert!(!text.contains("UALICE"), "the requester is no reviewer: {text}");
    let buttons = &message["blocks"][1]["elements"];
    assert_eq!(buttons[0]["action_id"], "jitgate_approve");
    assert_eq!(buttons[0]["value"], rid.as_str());
    assert_eq!(buttons[1]["action_id"], "jitgate_deny");
    assert_eq!(
        buttons[2]["url"],
        format!("https://jitgate.example.com/ui/requests/{rid}")
    );

    // The JSON webhook gets the same, signed, with the recipients for routing.
    let filed = wait_for_message(&hook, &rid, "a webhook for the reviewers");
    assert_eq!(filed["event"], "request.filed");
    assert_eq!(filed["recipients"], json!(["bob", "carol", "erin"]));
    assert_eq!(filed["review"], true);
    let delivery = hook.deliveries.lock().unwrap()[0].clone();
    let header = &delivery.headers["x-jitgate-signature"];
    let (t, v1) = header.strip_prefix("t=").unwrap().split_once(",v1=").unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(HOOK_SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.{}", delivery.raw).as_bytes());
    mac.verify_slice(&hex::decode(v1).unwrap())
        .expect("the notification is signed");

    // Forged, stale or unsigned clicks are refused before anything is read.
    let respond = format!("{}/respond", responses.url);
    assert_eq!(
        slack_click(
            &s,
            "UBOB",
            "jitgate_approve",
            &rid,
            &respond,
            "not-the-secret-0123456789",
            now()
        ),
        401
    );
    assert_eq!(
        slack_click(&s, "UBOB", "jitgate_approve", &rid, &respond, SLACK_SECRET, now() - 301),
        401
    );
    assert_eq!(
        slack_click(&s, "UBOB", "jitgate_approve", &rid, &respond, SLACK_SECRET, now() + 301),
        401
    );
    let unsigned = s
        .http
        .post(format!("{}/v1/slack/interactions", s.url))
        .body("payload=%7B%7D")
        .send()
        .unwrap();
    assert_eq!(unsigned.status().as_u16(), 401);

    // Signed, but not allowed: the requester herself, a developer, an unlinked Slack user.
    for (user, expected) in [
        ("UALICE", "alice cannot do that"),
        ("UDAVE", "dave cannot do that"),
        ("UNOBODY", "not linked to a jitgate principal"),
    ] {
        assert_eq!(
            slack_click(&s, user, "jitgate_approve", &rid, &respond, SLACK_SECRET, now()),
            200
        );
        let answer = wait_for_message(&responses, expected, expected);
        assert_eq!(answer["response_type"], "ephemeral", "{answer}");
    }
    let (_, still) = s.get(&format!("/v1/requests/{rid}"), "demo-alice");
    assert_eq!(still["status"], "pending");
    assert_eq!(still["approvals"], json!([]));

    // bob approves from Slack: the grant is issued, the message says so, alice is told.
    assert_eq!(
        slack_click(&s, "UBOB", "jitgate_approve", &rid, &respond, SLACK_SECRET, now()),
        200
    );
    let shown = wait_for_message(&responses, "by bob", "the outcome in Slack");
    assert_eq!(shown["replace_original"], true);
    assert!(shown["text"].as_str().unwrap().contains("approved"), "{shown}");
    let (_, approved) = s.get(&format!("/v1/requests/{rid}"), "demo-alice");
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["approvals"][0]["reviewer"], "bob");
    assert_eq!(approved["approvals"][0]["comment"], "from Slack");
    let told = wait_for_message(
        &slack,
        "Your request to read prod-db was approved by bob",
        "alice hears",
    );
    assert!(
        told["blocks"][0]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("<@UALICE>"),
        "{told}"
    );
    let told = wait_for_message(&hook, "request.approved", "the webhook hears");
    assert_eq!(told["recipients"], json!(["alice"]));

    // Replaying bob's click inside the window changes nothing: the request is decided.
    assert_eq!(
        slack_click(&s, "UBOB", "jitgate_approve", &rid, &respond, SLACK_SECRET, now()),
        200
    );
    wait_for_message(&responses, "already", "the replay is refused");
    let (_, events) = s.get(&format!("/v1/audit?request_id={rid}"), "demo-admin");
    let approvals = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "request.approved")
        .count();
    assert_eq!(approvals, 1);

    // Deny from Slack works the same way; alice hears of it.
    let other = id(&s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "read", "reason": "INC-6"}),
    ));
    wait_for_message(&slack, &format!("\"value\":\"{other}\""), "the second review message");
    assert_eq!(
        slack_click(&s, "UCAROL", "jitgate_deny", &other, &respond, SLACK_SECRET, now()),
        200
    );
    wait_for_message(&slack, "was denied by carol", "alice hears of the denial");

    // bob revokes alice's grant: she is told.
    let grant = approved["grant"]["id"].as_str().unwrap();
    assert_eq!(
        s.post(
            &format!("/v1/grants/{grant}/revoke"),
            "demo-bob",
            json!({"comment": "incident over"})
        )
        .0,
        200
    );
    wait_for_message(
        &slack,
        "Your access to read prod-db was revoked by bob: incident over",
        "alice hears of the revocation",
    );

    // An automatic request needs nobody: no review message for it.
    let auto = id(&s.file(
        "demo-alice",
        json!({"resource": "staging-db", "action": "read", "duration": "1h"}),
    ));
    let (_, metrics) = s.get("/metrics", "");
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("jitgate_slack_actions_total{outcome=\"forged\"} 4"),
        "{metrics}"
    );
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert!(about(&slack.bodies(), &auto).is_empty(), "{:?}", slack.bodies());
}

#[test]
fn reminders_come_before_the_end_and_a_failing_sink_catches_up_in_order_after_a_crash() {
    let Setup {
        mut s,
        slack,
        hook,
        _policy: _keep_policy,
        ..
    } = setup();

    // A 9-second grant with reminders 4 seconds ahead (only grants longer than twice the
    // lead are reminded): the holder hears before it ends.
    // "Heard" is when the stand-in for Slack took the message, not when the test's poll
    // looked, so the poll's own delay does not count against the product.
    let r = s.file(
        "demo-alice",
        json!({"resource": "staging-db", "action": "read", "duration": "9s"}),
    );
    let end = chrono::DateTime::parse_from_rfc3339(r["grant"]["expires_at"].as_str().unwrap()).unwrap();
    let needle = "Your access to read staging-db ends at";
    let reminder = wait_for_message(&slack, needle, "a reminder");
    let heard = slack
        .deliveries
        .lock()
        .unwrap()
        .iter()
        .find(|d| d.raw.contains(needle))
        .map(|d| d.at)
        .unwrap();
    assert!(heard < end, "reminded at {heard}, after the end {end}");
    assert!(reminder["blocks"][0]["text"]["text"]
        .as_str()
        .unwrap()
        .contains("<@UALICE>"));
    let (_, events) = s.get(&format!("/v1/audit?request_id={}", id(&r)), "demo-admin");
    let kinds: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "grant.expiring").count(), 1, "{kinds:?}");

    // The webhook fails for a while; jitgate is killed meanwhile. After the restart every
    // message arrives, once each, in the order of the log. (Each sink delivers in order, so
    // first let it take the reminder.)
    wait_for_message(&hook, "grant.expiring", "the webhook's reminder");
    hook.fail.store(1_000, Ordering::SeqCst);
    let first = id(&s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "read", "reason": "INC-7"}),
    ));
    let second = id(&s.file(
        "demo-dave",
        json!({"resource": "prod-db", "action": "read", "reason": "INC-8"}),
    ));
    wait_until("the webhook failed on the first", || {
        hook.deliveries
            .lock()
            .unwrap()
            .iter()
            .any(|d| d.answered != 200 && d.raw.contains(&first))
    });
    s.kill9_and_restart();
    hook.fail.store(0, Ordering::SeqCst);
    let acknowledged = || -> Vec<Value> {
        hook.deliveries
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.answered == 200)
            .map(|d| d.body.clone())
            .collect()
    };
    wait_until("both arrive", || !about(&acknowledged(), &second).is_empty());
    let acknowledged = acknowledged();
    let order: Vec<String> = acknowledged
        .iter()
        .filter(|b| b["event"] == "request.filed")
        .map(|b| b["request"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(order, vec![first.clone(), second.clone()], "once each, in order");
    let keys: Vec<String> = hook
        .deliveries
        .lock()
        .unwrap()
        .iter()
        .filter(|d| d.body.to_string().contains(&first))
        .map(|d| d.headers["idempotency-key"].clone())
        .collect();
    assert!(
        keys.len() > 1 && keys.iter().all(|k| k == &keys[0]),
        "retries keep one key: {keys:?}"
    );
}

#[test]
fn undecided_requests_escalate_to_backup_reviewers_who_may_then_approve() {
    let Setup {
        s,
        slack,
        _policy: _keep_policy,
        ..
    } = setup();
    // Before the escalation the lead is no reviewer: the request is not even hers to see.
    // That holds for two seconds from the filing; on a machine so loaded that the check
    // ends later than that, a refusal proves nothing either way and an approval is no
    // fault, so the test files a fresh request and looks again.
    let mut tries = 0;
    let rid = loop {
        tries += 1;
        let filing = std::time::Instant::now();
        let r = s.file(
            "demo-alice",
            json!({"resource": "prod-db", "action": "migrate", "reason": "OPS-9 add index"}),
        );
        let rid = id(&r);
        let (status, v) = s.post(&format!("/v1/requests/{rid}/approve"), "demo-lena", json!({}));
        if filing.elapsed() < std::time::Duration::from_secs(2) {
            assert_eq!(status, 404, "{v}");
            break rid;
        }
        if status == 404 {
            break rid;
        }
        assert!(tries < 3, "three filings in a row took two seconds to check: {v}");
        eprintln!(
            "the lead's check came {:?} after the filing; filing again",
            filing.elapsed()
        );
    };
    // Two seconds undecided: the leads are told, with the buttons, and may now approve.
    let mut told = None;
    wait_until("the escalation message", || {
        told = slack.bodies().into_iter().find(|b| {
            let body = b.to_string();
            body.contains("as a backup reviewer") && body.contains(&rid)
        });
        told.is_some()
    });
    let told = told.unwrap();
    let text = told["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(text.contains("<@ULENA>") && !text.contains("UALICE"), "{text}");
    assert_eq!(told["blocks"][1]["elements"][0]["value"], rid.as_str());
    let (status, v) = s.post(&format!("/v1/requests/{rid}/approve"), "demo-lena", json!({}));
    assert_eq!((status, v["status"].as_str()), (200, Some("approved")), "{v}");
    assert!(v["escalated_at"].is_string(), "{v}");
    let kinds = s.event_kinds(&rid);
    assert_eq!(
        kinds.iter().filter(|k| **k == "request.escalated").count(),
        1,
        "{kinds:?}"
    );

    // Break-glass: taken at once, and the reviewers who owe its review hear of it (never the
    // one who broke the glass).
    s.file(
        "demo-bob",
        json!({"resource": "prod-db", "action": "write", "duration": "5m", "reason": "INC-99 outage", "break_glass": true}),
    );
    let alert = wait_for_message(&slack, "BREAK-GLASS: bob took write prod-db", "the break-glass alert");
    let text = alert["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(
        text.contains("INC-99 outage") && text.contains("<@UCAROL>") && text.contains("erin"),
        "{text}"
    );
    assert!(!text.contains("<@UBOB>"), "{text}");

    // Break-glass for several items: the reviewers of every item hear of it, not only the
    // first item's (leads review prod-cache's break-glass, sre prod-db's).
    let r = s.file(
        "demo-bob",
        json!({"items": [
            {"resource": "prod-db", "action": "write"},
            {"resource": "prod-cache", "action": "flush"}
        ], "duration": "5m", "reason": "INC-100 cache poisoned", "break_glass": true}),
    );
    assert_eq!(r["status"], "approved", "{r}");
    let mut alert = None;
    wait_until("the multi-item break-glass alert", || {
        alert = slack.bodies().into_iter().find(|b| {
            let body = b.to_string();
            body.contains("BREAK-GLASS") && body.contains("INC-100 cache poisoned")
        });
        alert.is_some()
    });
    let alert = alert.unwrap();
    let text = alert["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(text.contains("<@UCAROL>") && text.contains("<@ULENA>"), "{text}");
    assert!(!text.contains("<@UBOB>"), "{text}");
}

/// A request for several things at once: the reviewers are shown every item approving would
/// grant, with each exact payload, in Slack and in the webhook, and only once per filing.
#[test]
fn a_multi_item_request_shows_every_item_and_its_payload_to_the_reviewers() {
    let Setup {
        s,
        slack,
        hook,
        _policy: _keep_policy,
        ..
    } = setup();
    let payload = "sha256:4f1c <!channel>";
    let r = s.file(
        "demo-alice",
        json!({"items": [
            {"resource": "staging-db", "action": "read"},
            {"resource": "prod-db", "action": "read"},
            {"resource": "prod-api", "action": "deploy", "payload": payload}
        ], "duration": "30m", "reason": "OPS-9 ship"}),
    );
    let rid = id(&r);
    let message = wait_for_message(&slack, &rid, "a Slack message for the reviewers");
    let section = message["blocks"][0]["text"]["text"].as_str().unwrap();
    for shown in [
        "read staging-db",
        "read prod-db",
        "deploy prod-api",
        "sha256:4f1c &lt;!channel&gt;",
    ] {
        assert!(section.contains(shown), "{shown} in {section}");
    }
    assert!(!section.contains("<!channel>"), "{section}");
    let fallback = message["text"].as_str().unwrap();
    assert!(
        fallback.contains("read staging-db, read prod-db, deploy prod-api"),
        "{fallback}"
    );
    let webhook = wait_for_message(&hook, &rid, "a webhook message for the reviewers");
    let headline = webhook["headline"].as_str().unwrap();
    assert!(
        headline.contains("deploy prod-api (payload \"sha256:4f1c <!channel>\")"),
        "{headline}"
    );
    // And in the structured fields a bot reads: every item, with its payload and needs.
    let items = webhook["request"]["items"].as_array().expect("items in the webhook");
    let shown: Vec<(&str, &str)> = items
        .iter()
        .map(|i| (i["resource"].as_str().unwrap(), i["action"].as_str().unwrap()))
        .collect();
    assert_eq!(
        shown,
        [("staging-db", "read"), ("prod-db", "read"), ("prod-api", "deploy")]
    );
    assert_eq!(items[2]["payload"], payload, "{webhook}");
    assert_eq!(items[2]["action_bound"], true, "{webhook}");
    assert_eq!(items[0]["needs"], json!([]), "{webhook}");
    assert_eq!(
        items[1]["needs"],
        json!([{"group": "sre", "approvals": 1}]),
        "{webhook}"
    );
    // One message per filing, not one per item.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let filed: Vec<Value> = about(&hook.bodies(), &rid);
    assert_eq!(filed.len(), 1, "{filed:?}");
}

/// An agent's request in Slack and the webhook: the headline names the agent and its person,
/// the person is never asked to review, the payload is escaped and summarised, and the
/// Approve button approves the payload the message showed, never another.
#[test]
fn an_agents_request_names_its_person_and_slack_approves_the_payload_shown() {
    let Setup {
        s,
        slack,
        hook,
        responses,
        _policy,
    } = setup();
    let agent = |name: &str, person: &str| {
        let (status, v) = s.post(
            "/v1/tokens",
            "demo-admin",
            json!({"principal": name, "agent_for": person}),
        );
        assert_eq!(status, 201, "{v}");
        v["token"].as_str().unwrap().to_string()
    };
    let claude_alice = agent("claude-alice", "alice");
    let claude_bob = agent("claude-bob", "bob");
    let respond = format!("{}/respond", responses.url);

    // bob's agent asks: bob, an sre, is not among the reviewers told, and his click is refused.
    let bobs = id(&s.file(
        &claude_bob,
        json!({"resource": "prod-db", "action": "read", "duration": "10m", "reason": "INC-3 look"}),
    ));
    let message = wait_for_message(&slack, &bobs, "the reviewers of bob's agent's request");
    let text = message["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(
        text.contains("claude-bob (agent for bob) asks to read prod-db"),
        "{text}"
    );
    assert!(text.contains("<@UCAROL>") && !text.contains("UBOB"), "{text}");
    assert_eq!(
        slack_click(&s, "UBOB", "jitgate_approve", &bobs, &respond, SLACK_SECRET, now()),
        200
    );
    let refused = wait_for_message(&responses, "filed by claude-bob", "bob hears why not");
    assert_eq!(refused["response_type"], "ephemeral", "{refused}");
    assert_eq!(
        s.get(&format!("/v1/requests/{bobs}"), "demo-bob").1["status"],
        "pending"
    );

    // alice's agent asks to run one long command with a zero-width space in it.
    let payload = format!("deploy --to prod \u{200b}--force {}", "c".repeat(1100));
    let filed = s.file(
        &claude_alice,
        json!({"resource": "prod-api", "action": "deploy", "reason": "MCP tool call", "payload": payload}),
    );
    let rid = id(&filed);
    let sha = filed["payload_sha256"].as_str().unwrap().to_string();
    let message = wait_for_message(&slack, &rid, "the reviewers of alice's agent's request");
    let text = message["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(
        text.contains("claude-alice (agent for alice) asks to deploy prod-api"),
        "{text}"
    );
    assert!(
        text.contains("deploy --to prod \\u{200b}--force ccc") && !text.contains('\u{200b}'),
        "{text}"
    );
    assert!(
        text.contains(&format!("({} bytes, sha256 {sha})", payload.len())) && !text.contains(&"c".repeat(1100)),
        "{text}"
    );
    let button = message["blocks"][1]["elements"][0]["value"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(button, format!("{rid} sha256={sha}"));
    let webhook = wait_for_message(&hook, &rid, "the webhook of alice's agent's request");
    assert_eq!(webhook["request"]["on_behalf_of"], "alice", "{webhook}");
    assert_eq!(webhook["request"]["payload_sha256"], sha.as_str(), "{webhook}");

    // A button carrying another hash approves nothing; the one the message carried approves.
    let forged = format!("{rid} sha256={}", "2".repeat(64));
    assert_eq!(
        slack_click(&s, "UCAROL", "jitgate_approve", &forged, &respond, SLACK_SECRET, now()),
        200
    );
    wait_for_message(
        &responses,
        "carries the payload with sha256",
        "carol hears of the mismatch",
    );
    assert_eq!(s.get(&format!("/v1/requests/{rid}"), "demo-bob").1["status"], "pending");
    assert_eq!(
        slack_click(&s, "UCAROL", "jitgate_approve", &button, &respond, SLACK_SECRET, now()),
        200
    );
    let done = wait_for_message(&responses, &format!("{rid} approved"), "carol's approval");
    assert!(
        done["text"]
            .as_str()
            .unwrap()
            .contains("claude-alice (agent for alice)"),
        "{done}"
    );
    let (_, r) = s.get(&format!("/v1/requests/{rid}"), "demo-bob");
    assert_eq!(r["approvals"][0]["payload_sha256"], sha.as_str(), "{r}");
    // Both the agent and its person hear of the decision, in words true for both.
    let told = wait_for_message(
        &hook,
        "The request of claude-alice (agent for alice) to deploy prod-api was approved by carol",
        "the decision",
    );
    let recipients: Vec<&str> = told["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(recipients, ["claude-alice", "alice"], "{told}");
}
