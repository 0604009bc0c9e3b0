//! Webhook providers and the durable outbox, against the real server and a webhook receiver
//! on loopback: signed deliveries, retries until acknowledged, deprovisioning within a second
//! of a grant's end or revocation, and kill -9 at the awkward moments.

use crate::support::receiver::{receiver, Delivery, Receiver};
use crate::support::*;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

const SECRET: &str = "0123456789abcdef-test-secret";

/// What the receiver heard about grants.
trait GrantDeliveries {
    fn delivered(&self, grant: &str, operation: &str) -> Vec<Delivery>;
    fn acknowledged(&self, grant: &str, operation: &str) -> Option<Delivery>;
}

impl GrantDeliveries for Receiver {
    fn delivered(&self, grant: &str, operation: &str) -> Vec<Delivery> {
        self.deliveries
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.body["grant"]["id"] == grant && d.body["operation"] == operation)
            .cloned()
            .collect()
    }

    fn acknowledged(&self, grant: &str, operation: &str) -> Option<Delivery> {
        self.delivered(grant, operation).into_iter().find(|d| d.answered == 200)
    }
}

fn policy_with_provider() -> tempfile::TempDir {
    quickstart_with_workflows(
        r#"
[[workflow]]
resource = "app-db"
action = "read"
requesters = ["dev"]
auto_approve = true
max_duration = "1h"
providers = ["hook"]
"#,
    )
}

fn config(url: &str) -> String {
    format!("[[providers]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{url}\"\nsecret = \"{SECRET}\"\ntimeout = \"2s\"\n")
}

fn grant_of(s: &Server, duration: &str) -> (String, chrono::DateTime<chrono::Utc>) {
    let r = s.file(
        "demo-alice",
        json!({"resource": "app-db", "action": "read", "duration": duration}),
    );
    assert_eq!(r["status"], "approved", "{r}");
    let end = chrono::DateTime::parse_from_rfc3339(r["grant"]["expires_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    (r["grant"]["id"].as_str().unwrap().to_string(), end)
}

fn verify_signature(d: &Delivery) {
    let header = &d.headers["x-jitgate-signature"];
    let (t, v1) = header
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
        .unwrap_or_else(|| panic!("signature header: {header}"));
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.{}", d.raw).as_bytes());
    mac.verify_slice(&hex::decode(v1).unwrap()).expect("the HMAC verifies");
    // A body altered in transit would not.
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.{}", d.raw.replace("alice", "mallory")).as_bytes());
    assert!(mac.verify_slice(&hex::decode(v1).unwrap()).is_err());
}

#[test]
fn webhooks_are_signed_retried_and_deprovision_within_a_second() {
    let hook = receiver();
    let policy = policy_with_provider();
    let s = Server::start_with(policy.path(), Some(&config(&hook.url)));

    // The receiver fails the first two attempts: delivery is retried with the same key.
    hook.fail.store(2, Ordering::SeqCst);
    let (grant, end) = grant_of(&s, "3s");
    wait_until("provisioned", || hook.acknowledged(&grant, "provision").is_some());
    let attempts = hook.delivered(&grant, "provision");
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    let keys: Vec<&String> = attempts.iter().map(|d| &d.headers["idempotency-key"]).collect();
    assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
    let ok = hook.acknowledged(&grant, "provision").unwrap();
    verify_signature(&ok);
    assert_eq!(ok.body["grant"]["principal"], "alice");
    assert_eq!(ok.body["grant"]["status"], "active");

    // The server records the delivery once the receiver's answer is back: the receiver seeing
    // its own acknowledgement comes first, so the grant's view is read until it catches up.
    let providers_shown = || {
        let (_, grants) = s.get("/v1/grants?principal=alice", "demo-alice");
        grants["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["id"] == grant.as_str())
            .unwrap()["providers"]
            .clone()
    };
    let provisioned = json!([{"provider": "hook", "status": "provisioned"}]);
    wait_until("the delivery recorded", || providers_shown() == provisioned);
    assert_eq!(providers_shown(), provisioned);

    // At the grant's end the provider is told, within a second, by nobody's action.
    wait_until("deprovisioned", || hook.acknowledged(&grant, "deprovision").is_some());
    let gone = hook.acknowledged(&grant, "deprovision").unwrap();
    verify_signature(&gone);
    let lag = (gone.at - end).num_milliseconds();
    assert!((0..1000).contains(&lag), "deprovisioned {lag} ms after expires_at");

    // As above, the receiver holds its acknowledgement before the server has it back: the
    // request's view is read until the server has recorded it.
    let request_id = ok.body["grant"]["request_id"].as_str().unwrap().to_string();
    let provider_on_request = || {
        let (_, request) = s.get(&format!("/v1/requests/{request_id}"), "demo-alice");
        request["grant"]["providers"][0]["status"].clone()
    };
    wait_until("the deprovisioning recorded", || {
        provider_on_request() == "deprovisioned"
    });
    assert_eq!(provider_on_request(), "deprovisioned");

    // A revocation is passed on at once.
    let (revoked, _) = grant_of(&s, "1h");
    wait_until("provisioned", || hook.acknowledged(&revoked, "provision").is_some());
    let (status, _) = s.post(&format!("/v1/grants/{revoked}/revoke"), "demo-alice", json!({}));
    assert_eq!(status, 200);
    let asked = chrono::Utc::now();
    wait_until("deprovisioned", || hook.acknowledged(&revoked, "deprovision").is_some());
    let lag = (hook.acknowledged(&revoked, "deprovision").unwrap().at - asked).num_milliseconds();
    assert!(lag < 1000, "revocation reached the provider {lag} ms later");

    // Failures are counted and alarmed; deliveries are audited. The revocation's
    // deprovisioning is recorded (and audited) once the receiver's answer is back, which is
    // after the receiver logged it: the log is read until both deliveries of each grant are in.
    let (_, metrics) = s.get("/metrics", "");
    assert!(metrics
        .as_str()
        .unwrap()
        .contains("jitgate_provider_failures_total{outcome=\"provision\"} 2"));
    let audited = |kind: &str| {
        let (_, events) = s.get("/v1/audit?limit=1000", "demo-admin");
        events["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == kind)
            .count()
    };
    wait_until("the revocation's deprovisioning audited", || {
        audited("grant.deprovisioned") >= 2
    });
    assert_eq!(audited("grant.provisioned"), 2);
    assert_eq!(audited("grant.deprovisioned"), 2);
}

#[test]
fn a_failing_deprovisioning_alarms_and_is_retried_until_it_succeeds() {
    let hook = receiver();
    let policy = policy_with_provider();
    let s = Server::start_with(policy.path(), Some(&config(&hook.url)));
    let (grant, _) = grant_of(&s, "1h");
    wait_until("provisioned", || hook.acknowledged(&grant, "provision").is_some());
    hook.fail.store(3, Ordering::SeqCst);
    assert_eq!(
        s.post(&format!("/v1/grants/{grant}/revoke"), "demo-alice", json!({})).0,
        200
    );
    // While it fails, the grant shows it, with the provider's answer.
    wait_until("the failure shows", || {
        let (_, grants) = s.get("/v1/grants?principal=alice", "demo-alice");
        grants["items"][0]["providers"][0]["status"] == "failed"
    });
    let (_, grants) = s.get("/v1/grants?principal=alice", "demo-alice");
    assert!(
        grants["items"][0]["providers"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("500"),
        "{grants}"
    );
    wait_until("deprovisioned", || hook.acknowledged(&grant, "deprovision").is_some());
    assert_eq!(hook.delivered(&grant, "deprovision").len(), 4);
    let (_, events) = s.get("/v1/audit?limit=1000", "demo-admin");
    let alarms = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "grant.deprovision_failed")
        .count();
    assert_eq!(alarms, 1, "the first failure alarms; the retries do not flood the log");
}

#[test]
fn kill_9_between_grant_and_provisioning_and_before_deprovisioning_ends_right() {
    let hook = receiver();
    let policy = policy_with_provider();
    let mut s = Server::start_with(policy.path(), Some(&config(&hook.url)));

    // The target is down when two grants are issued, and the server dies before it is back.
    hook.fail.store(usize::MAX / 2, Ordering::SeqCst);
    let (lasting, _) = grant_of(&s, "1h");
    let (short, short_end) = grant_of(&s, "2s");
    // Killed at once, the server is started again as soon as the short grant has ended; its
    // port is checked and taken again right after (not seconds after it was freed).
    s.kill9_and_restart_after(|_| {
        wait_until("the short grant has ended", || {
            chrono::Utc::now() > short_end + chrono::TimeDelta::milliseconds(200)
        });
        hook.fail.store(0, Ordering::SeqCst);
    });
    // The lasting grant is provisioned after all; the short one, which ended meanwhile, is
    // deprovisioned and never provisioned late.
    wait_until("the outbox is drained", || {
        hook.acknowledged(&lasting, "provision").is_some() && hook.acknowledged(&short, "deprovision").is_some()
    });
    assert!(
        hook.acknowledged(&short, "provision").is_none(),
        "an ended grant is not provisioned late"
    );

    // A grant is provisioned, then the server dies before its end: it is deprovisioned after
    // the restart.
    let (ending, ending_end) = grant_of(&s, "3s");
    wait_until("provisioned", || hook.acknowledged(&ending, "provision").is_some());
    s.kill9_and_restart_after(|_| {
        wait_until("the grant has ended", || {
            chrono::Utc::now() > ending_end + chrono::TimeDelta::milliseconds(200)
        });
        assert!(
            hook.acknowledged(&ending, "deprovision").is_none(),
            "nothing is delivered while down"
        );
    });
    wait_until("deprovisioned", || hook.acknowledged(&ending, "deprovision").is_some());
    assert!(hook.acknowledged(&lasting, "deprovision").is_none());
}

#[test]
fn an_exec_provider_runs_its_command_for_each_delivery() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.log");
    let fail_once = dir.path().join("fail-once");
    std::fs::write(&fail_once, "").unwrap();
    let script = dir.path().join("grant-hook");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ -e {fail} ]; then rm {fail}; echo 'target busy' >&2; exit 3; fi\n\
             body=$(cat)\necho \"$JITGATE_OPERATION $JITGATE_PRINCIPAL $JITGATE_RESOURCE $JITGATE_GRANT_ID $body\" >> {log}\n",
            fail = fail_once.display(),
            log = log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = format!(
        "[[providers]]\nname = \"hook\"\nkind = \"exec\"\ncommand = [\"{}\"]\ntimeout = \"5s\"\n",
        script.display()
    );
    let policy = policy_with_provider();
    let s = Server::start_with(policy.path(), Some(&config));
    let (grant, _) = grant_of(&s, "1h");
    let calls = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until("provisioned", || calls().contains("provision alice app-db"));
    assert!(!fail_once.exists(), "the first run failed and was retried");
    assert_eq!(
        s.post(&format!("/v1/grants/{grant}/revoke"), "demo-alice", json!({})).0,
        200
    );
    wait_until("deprovisioned", || calls().contains("deprovision alice app-db"));
    let lines = calls();
    let first: Vec<&str> = lines.lines().next().unwrap().splitn(5, ' ').collect();
    assert_eq!(first[..4], ["provision", "alice", "app-db", grant.as_str()]);
    let body: Value = serde_json::from_str(first[4]).unwrap();
    assert_eq!(body["grant"]["id"], grant.as_str());
    // The script logs its line before it exits, and the server records the delivery once it
    // has reaped it: the grant's view is read until it catches up.
    let provider_status = || {
        let (_, grants) = s.get("/v1/grants?principal=alice", "demo-alice");
        grants["items"][0]["providers"][0]["status"].clone()
    };
    wait_until("the deprovisioning recorded", || provider_status() == "deprovisioned");
    assert_eq!(provider_status(), "deprovisioned");
}
