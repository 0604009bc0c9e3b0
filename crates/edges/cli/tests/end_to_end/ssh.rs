//! SSH certificates against a real `sshd` on loopback, started by `scripts/test-sshd.sh` to
//! trust jitgate's CA: a login works inside the grant's window and fails after it, a forced
//! command cannot be escaped, and a single-use grant yields one certificate.

use crate::support::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A throwaway sshd; stopped on drop.
struct Sshd {
    dir: PathBuf,
    port: u16,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../scripts/test-sshd.sh")
}

impl Sshd {
    fn start(s: &Server, dir: &Path, principal: &str) -> Sshd {
        let (status, ca) = s.get("/v1/ssh/ca.pub", "");
        assert_eq!(status, 200);
        let ca = ca.as_str().unwrap().to_string();
        assert!(ca.starts_with("ssh-ed25519 "), "{ca}");
        let ca_path = dir.join("ca.pub");
        std::fs::write(&ca_path, ca).unwrap();
        let port = free_port();
        let sshd_dir = dir.join("sshd");
        let out = Command::new("bash")
            .arg(script())
            .args([
                "start",
                sshd_dir.to_str().unwrap(),
                &port.to_string(),
                ca_path.to_str().unwrap(),
                principal,
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "sshd: {}", String::from_utf8_lossy(&out.stderr));
        Sshd { dir: sshd_dir, port }
    }

    /// Run `command` over SSH as the local user with `key` and its certificate.
    fn run(&self, key: &Path, command: &str) -> (i32, String, String) {
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
        let out = Command::new("ssh")
            .args(["-p", &self.port.to_string(), "-i"])
            .arg(key)
            .arg("-o")
            .arg(format!("CertificateFile={}-cert.pub", key.display()))
            .args([
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "IdentityAgent=none",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
                "-o",
                "ConnectTimeout=10",
                "-T",
            ])
            .arg(format!("{}@127.0.0.1", user.trim()))
            .arg(command)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .args(["stop", self.dir.to_str().unwrap()])
            .status();
        if std::thread::panicking() {
            eprintln!(
                "--- sshd log ---\n{}",
                std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
            );
        }
    }
}

fn new_key(dir: &Path, name: &str) -> PathBuf {
    let key = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(status.success());
    key
}

/// Ask for a certificate through the CLI and save it beside the key.
fn certify(s: &Server, token: &str, grant: &str, key: &Path) -> (i32, String) {
    let public = format!("{}.pub", key.display());
    let (code, out, err) = s.cli(token, &["ssh", grant, "--key", &public]);
    if code == 0 {
        std::fs::write(format!("{}-cert.pub", key.display()), &out).unwrap();
    }
    (code, format!("{out}{err}"))
}

fn describe(key: &Path) -> String {
    // In UTC, so its validity reads like the API's times.
    let out = Command::new("ssh-keygen")
        .env("TZ", "UTC")
        .arg("-L")
        .arg("-f")
        .arg(format!("{}-cert.pub", key.display()))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_certificate_logs_in_inside_the_grant_window_and_not_after() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(&s, dir.path(), "alice");
    let key = new_key(dir.path(), "alice_key");

    let r = s.file(
        "demo-alice",
        json!({"resource": "bastion", "action": "login", "duration": "6s", "reason": "INC-5 check logs"}),
    );
    // No grant yet: nothing to certify.
    let (status, _) = s.post(
        "/v1/grants/grt_none/ssh-cert",
        "demo-alice",
        json!({"public_key": "ssh-ed25519 AAAA"}),
    );
    assert_eq!(status, 404);
    let (status, approved) = s.post(&format!("/v1/requests/{}/approve", id(&r)), "demo-bob", json!({}));
    assert_eq!(status, 200, "{approved}");
    let grant = approved["grant"]["id"].as_str().unwrap().to_string();

    // Only the holder gets a certificate for it; a bad key is refused naming the field.
    let public = std::fs::read_to_string(format!("{}.pub", key.display())).unwrap();
    assert_eq!(
        s.post(
            &format!("/v1/grants/{grant}/ssh-cert"),
            "demo-bob",
            json!({"public_key": public})
        )
        .0,
        403
    );
    assert_eq!(
        s.post(
            &format!("/v1/grants/{grant}/ssh-cert"),
            "demo-dave",
            json!({"public_key": public})
        )
        .0,
        404
    );
    let (status, bad) = s.post(
        &format!("/v1/grants/{grant}/ssh-cert"),
        "demo-alice",
        json!({"public_key": "hello"}),
    );
    assert_eq!(status, 422, "{bad}");
    assert!(
        bad["error"]["message"].as_str().unwrap().starts_with("public_key:"),
        "{bad}"
    );

    let (code, out) = certify(&s, "demo-alice", &grant, &key);
    assert_eq!(code, 0, "{out}");
    let details = describe(&key);
    assert!(
        details.contains("Type: ssh-ed25519-cert-v01@openssh.com user certificate"),
        "{details}"
    );
    assert!(details.contains("Principals: \n                alice\n"), "{details}");
    assert!(!details.contains("force-command"), "{details}");
    // Valid from a minute before the grant (for hosts whose clocks lag) to its exact end.
    let time = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    let (starts, ends) = (
        time(&approved["grant"]["starts_at"]),
        time(&approved["grant"]["expires_at"]),
    );
    let window = format!(
        "Valid: from {} to {}",
        (starts - chrono::Duration::seconds(60)).format("%Y-%m-%dT%H:%M:%S"),
        ends.format("%Y-%m-%dT%H:%M:%S")
    );
    assert!(details.contains(&window), "{window} in {details}");

    // Inside the window: the login works.
    let (code, out, err) = sshd.run(&key, "echo inside-the-window");
    assert_eq!((code, out.trim()), (0, "inside-the-window"), "{err}");
    // The same key without the certificate gets nowhere.
    std::fs::rename(format!("{}-cert.pub", key.display()), dir.path().join("kept-cert.pub")).unwrap();
    assert_ne!(sshd.run(&key, "true").0, 0);
    std::fs::rename(dir.path().join("kept-cert.pub"), format!("{}-cert.pub", key.display())).unwrap();

    // After the grant's end, the very same certificate is refused by sshd itself, and jitgate
    // issues no new one.
    let end = chrono::DateTime::parse_from_rfc3339(approved["grant"]["expires_at"].as_str().unwrap()).unwrap();
    wait_until("the grant ends", || {
        chrono::Utc::now() > end + chrono::TimeDelta::milliseconds(1100)
    });
    let (code, out, err) = sshd.run(&key, "echo after-the-window");
    assert_ne!(code, 0, "{out}{err}");
    assert!(!out.contains("after-the-window"));
    let (code, out) = certify(&s, "demo-alice", &grant, &key);
    assert_eq!(code, 2);
    assert!(out.contains("409"), "{out}");

    let (_, events) = s.get(&format!("/v1/audit?request_id={}", id(&r)), "demo-admin");
    assert!(
        events["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "grant.ssh_certificate"),
        "{events}"
    );
}

#[test]
fn a_forced_command_cannot_be_escaped_and_single_use_means_one_certificate() {
    let policy = quickstart_with_workflows(
        r#"
[[workflow]]
resource = "bastion"
action = "run"
requesters = ["dev"]
auto_approve = true
action_bound = true
max_duration = "10m"
ssh = { source_address = ["127.0.0.1/32"] }
"#,
    );
    let s = Server::start_with_policy(policy.path());
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(&s, dir.path(), "alice");
    let key = new_key(dir.path(), "alice_key");

    let r: Value = s.file(
        "demo-alice",
        json!({"resource": "bastion", "action": "run", "duration": "5m", "reason": "rotate logs",
               "payload": "echo approved-command-ran"}),
    );
    assert_eq!(r["status"], "approved");
    let grant = r["grant"]["id"].as_str().unwrap().to_string();
    let (code, out) = certify(&s, "demo-alice", &grant, &key);
    assert_eq!(code, 0, "{out}");
    let details = describe(&key);
    assert!(details.contains("force-command echo approved-command-ran"), "{details}");
    assert!(details.contains("source-address 127.0.0.1/32"), "{details}");

    // Whatever the client asks to run, only the approved command runs.
    for attempt in ["cat /etc/passwd", "sh -c 'id'", "echo escaped; id", ""] {
        let (code, out, err) = sshd.run(&key, attempt);
        assert_eq!((code, out.trim()), (0, "approved-command-ran"), "'{attempt}': {err}");
    }
    // Single use: the certificate consumed the grant; there is no second one.
    let second = new_key(dir.path(), "second_key");
    let (code, out) = certify(&s, "demo-alice", &grant, &second);
    assert_eq!(code, 2);
    assert!(out.contains("already been used"), "{out}");
}
