//! SSH certificates against a real `sshd` on loopback, started by `scripts/test-sshd.sh` to
//! trust jitgate's CA: a login works inside the grant's window and fails after it, a forced
//! command cannot be escaped, and a single-use grant yields one certificate.

use crate::support::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A finished command's exit code (-1 when a signal ended it), stdout and stderr.
fn outcome(out: std::process::Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

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
        outcome(out)
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

/// A policy with two more SSH resources beside the quickstart's bastion (one login, approved by
/// an sre): `jump`, whose login is automatic, and `twin`, with two login actions.
fn ssh_request_policy() -> tempfile::TempDir {
    let policy = quickstart_with_workflows(
        r#"
[[workflow]]
resource = "jump"
action = "login"
requesters = ["dev"]
auto_approve = true
max_duration = "10m"
ssh = {}

[[workflow]]
resource = "twin"
actions = ["login", "shell"]
requesters = ["dev"]
auto_approve = true
max_duration = "10m"
ssh = {}
"#,
    );
    let catalog = policy.path().join("resources.toml");
    let mut text = std::fs::read_to_string(&catalog).unwrap();
    text.push_str("\n[[resource]]\nname = \"jump\"\nkind = \"ssh\"\n\n[[resource]]\nname = \"twin\"\nkind = \"ssh\"\n");
    std::fs::write(&catalog, text).unwrap();
    policy
}

/// A server on [`ssh_request_policy`], and that policy's directory, kept while the test runs.
fn ssh_request_server() -> (tempfile::TempDir, Server) {
    let policy = ssh_request_policy();
    let s = Server::start_with_policy(policy.path());
    (policy, s)
}

/// A person's machine for `jitgate ssh --request`: a HOME with ~/.ssh/id_ed25519 (the key
/// jitgate picks by default), signed in as alice through the environment.
struct Laptop {
    home: tempfile::TempDir,
}

impl Laptop {
    fn new() -> Laptop {
        let home = tempfile::tempdir().unwrap();
        let ssh_dir = home.path().join(".ssh");
        std::fs::create_dir_all(&ssh_dir).unwrap();
        new_key(&ssh_dir, "id_ed25519");
        Laptop { home }
    }

    fn key(&self) -> PathBuf {
        self.home.path().join(".ssh").join("id_ed25519")
    }

    fn command(&self, s: &Server, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join("xdg"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for (name, _) in std::env::vars() {
            if name.starts_with("JITGATE_") {
                command.env_remove(name);
            }
        }
        command
            .env("JITGATE_URL", &s.url)
            .env("JITGATE_TOKEN", "demo-alice")
            .envs(env.iter().copied());
        command
    }

    /// Starts jitgate with `args` through `proxy`, interrupts it once `ready` holds (`what`
    /// names the wait: a request the proxy holds), lets the proxy pass the held request on
    /// only after the signal was sent, and returns its stderr; see [`interrupt`].
    fn interrupted(
        &self,
        s: &Server,
        args: &[&str],
        env: &[(&str, &str)],
        what: &str,
        ready: impl FnMut() -> bool,
        proxy: &FlakyProxy,
    ) -> String {
        let child = self.command(s, args, env).spawn().unwrap();
        wait_until(what, ready);
        interrupt_then(child, || proxy.release_after_signal())
    }

    fn run(&self, s: &Server, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let out = self.command(s, args, env).output().unwrap();
        outcome(out)
    }
}

/// ssh's options for the throwaway sshd, given after `--` (after the destination, where ssh
/// still reads options), then the remote command.
fn ssh_args(sshd: &Sshd, remote: &str) -> Vec<String> {
    let mut args: Vec<String> = vec!["-p".into(), sshd.port.to_string()];
    for option in [
        "IdentitiesOnly=yes",
        "IdentityAgent=none",
        "BatchMode=yes",
        "StrictHostKeyChecking=no",
        "UserKnownHostsFile=/dev/null",
        "LogLevel=ERROR",
        "ConnectTimeout=10",
    ] {
        args.extend(["-o".into(), option.into()]);
    }
    args.extend(["-T".into(), remote.into()]);
    args
}

fn local_user() -> String {
    String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string()
}

/// A stand-in for ssh that only records that it ran (with which arguments).
fn fake_ssh(dir: &Path) -> (PathBuf, PathBuf) {
    let marker = dir.join("fake-ssh-ran");
    let program = dir.join("fake-ssh");
    std::fs::write(
        &program,
        format!("#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\n", marker.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    (program, marker)
}

#[test]
fn ssh_request_files_waits_for_bob_writes_the_certificate_and_logs_in() {
    use std::os::unix::fs::PermissionsExt;
    let (_policy, s) = ssh_request_server();
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(&s, dir.path(), "alice");
    let laptop = Laptop::new();
    let destination = format!("{}@127.0.0.1", local_user());

    // bastion's login needs an sre: bob approves it while the command waits.
    let mut args = vec![
        "ssh",
        "--request",
        "bastion",
        "--reason",
        "INC-7 read the logs",
        "--for",
        "5m",
        "--timeout",
        "60s",
        &destination,
        "--",
    ];
    let remote = ssh_args(&sshd, "echo logged-in-through-jitgate; whoami");
    args.extend(remote.iter().map(String::as_str));
    let child = laptop.command(&s, &args, &[]).spawn().unwrap();
    let filed = pending_request(&s, |r| r["resource"] == "bastion");
    assert_eq!(filed["action"], "login");
    assert_eq!(filed["reason"], "INC-7 read the logs");
    let (status, approved) = s.post(&format!("/v1/requests/{}/approve", id(&filed)), "demo-bob", json!({}));
    assert_eq!(status, 200, "{approved}");
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["logged-in-through-jitgate", local_user().as_str()],
        "{stderr}"
    );
    // What it waited for and who must approve, then the grant and where the certificate went.
    assert!(
        stderr.contains(&format!(
            "jitgate: login on bastion is waiting for approval: request {} (needs 1 from sre)",
            id(&filed)
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("approve: jitgate approve {}", id(&filed))),
        "{stderr}"
    );
    let cert = laptop.home.path().join(".ssh").join("id_ed25519-cert.pub");
    assert!(stderr.contains(&format!("certificate {}", cert.display())), "{stderr}");
    assert_eq!(std::fs::metadata(&cert).unwrap().permissions().mode() & 0o777, 0o644);
    let details = describe(&laptop.key());
    assert!(details.contains("Principals: \n                alice\n"), "{details}");
    assert!(s
        .event_kinds(&id(&filed))
        .contains(&"grant.ssh_certificate".to_string()));

    // An automatic one: no wait; ssh's exit code is the command's.
    let mut args = vec!["ssh", "--request", "jump", &destination, "--"];
    let remote = ssh_args(&sshd, "echo via-jump; exit 7");
    args.extend(remote.iter().map(String::as_str));
    let (code, out, err) = laptop.run(&s, &args, &[]);
    assert_eq!((code, out.trim()), (7, "via-jump"), "{err}");
    assert!(!err.contains("waiting for approval"), "{err}");

    // Two login actions: which one is asked, and --action answers.
    let mut args = vec!["ssh", "--request", "twin", &destination, "--"];
    let remote = ssh_args(&sshd, "echo via-twin");
    args.extend(remote.iter().map(String::as_str));
    let audit_before = s.audit_count();
    let (code, _, err) = laptop.run(&s, &args, &[]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(
        err.trim(),
        "error: --request twin: which action? you may request login, shell on it: pick one with --action; nothing was requested"
    );
    assert_eq!(s.audit_count(), audit_before);
    args.splice(3..3, ["--action", "shell"]);
    let (code, out, err) = laptop.run(&s, &args, &[]);
    assert_eq!((code, out.trim()), (0, "via-twin"), "{err}");
}

#[test]
fn ssh_request_denied_cancelled_or_hostile_runs_no_ssh() {
    let (_policy, s) = ssh_request_server();
    let dir = tempfile::tempdir().unwrap();
    let laptop = Laptop::new();
    let (fake, marker) = fake_ssh(dir.path());
    let fake = fake.to_str().unwrap().to_string();
    let env = [("JITGATE_SSH_PROGRAM", fake.as_str())];

    // Denied by bob: one line, gate's exit code 1, and ssh never runs.
    let child = laptop
        .command(
            &s,
            &["ssh", "--request", "bastion", "--reason", "INC-8", "alice@127.0.0.1"],
            &env,
        )
        .spawn()
        .unwrap();
    let filed = pending_request(&s, |r| r["resource"] == "bastion");
    let (status, denied) = s.post(
        &format!("/v1/requests/{}/deny", id(&filed)),
        "demo-bob",
        json!({"comment": "not now"}),
    );
    assert_eq!(status, 200, "{denied}");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.lines().last().unwrap(),
        format!("jitgate: request {} was denied; not running ssh", id(&filed))
    );
    assert!(!marker.exists(), "ssh ran for a denied request");
    assert!(!laptop.home.path().join(".ssh/id_ed25519-cert.pub").exists());

    // Nobody decides in time: cancelled, exit 3 as gate.
    let (code, _, err) = laptop.run(
        &s,
        &["ssh", "--request", "bastion", "--timeout", "1s", "alice@127.0.0.1"],
        &env,
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("nobody decided within 1s"), "{err}");
    assert!(err.trim_end().ends_with("was cancelled; not running ssh"), "{err}");
    assert!(!marker.exists());

    // Ctrl-C while it waits cancels the request, as gate does.
    let child = laptop
        .command(&s, &["ssh", "--request", "bastion", "alice@127.0.0.1"], &env)
        .spawn()
        .unwrap();
    let filed = pending_request(&s, |r| r["resource"] == "bastion");
    // The request shows up once filed; the command knows its id a moment later.
    std::thread::sleep(std::time::Duration::from_millis(500));
    interrupt(child);
    assert_cancelled(&s, &id(&filed));
    assert!(!marker.exists());

    // Refused before anything is filed: a destination ssh would read as an option or that
    // holds a control character, a name with an invisible character, a resource that is not
    // SSH, a private key as --key, a grant id with --request.
    let private = laptop.key();
    let private = private.to_str().unwrap();
    let audit_before = s.audit_count();
    let hostile: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["ssh", "--request", "jump", "-oProxyCommand=touch /tmp/jitgate-pwned"],
            // clap itself takes it for an unknown flag (and the command checks it again).
            "",
        ),
        (
            vec!["ssh", "--request", "jump", "--", "-oProxyCommand=touch /tmp/jitgate-pwned"],
            "",
        ),
        (
            vec!["ssh", "--request", "jump", "alice@host\x1b[2J"],
            "error: USER@HOST alice@host\\x1b[2J: it holds U+001B, a space, control or invisible character; nothing was requested",
        ),
        (
            vec!["ssh", "--request", "jump", "alice@host\nProxyCommand=x"],
            "error: USER@HOST alice@host\\nProxyCommand=x: it holds U+000A, a space, control or invisible character; nothing was requested",
        ),
        (
            vec!["ssh", "--request", "bas\u{200b}tion", "alice@127.0.0.1"],
            "error: --request bas\\u{200b}tion: the name holds U+200B, an invisible or control character: type the name (jitgate resources --kind ssh lists them); nothing was requested",
        ),
        (
            vec!["ssh", "--request", "bastiоn", "alice@127.0.0.1"],
            "error: --request bastiоn: no resource of that name that you may request (jitgate resources --kind ssh lists those you may); nothing was requested",
        ),
        (
            vec!["ssh", "--request", "prod-db", "alice@127.0.0.1"],
            "error: --request prod-db: it is a postgres resource, not ssh; nothing was requested",
        ),
        (
            vec!["ssh", "--request", "jump", "--key", private, "alice@127.0.0.1"],
            "",
        ),
        (vec!["ssh", "grt_0193", "--request", "jump"], ""),
    ];
    for (args, expected) in &hostile {
        let (code, out, err) = laptop.run(&s, args, &env);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        if !expected.is_empty() {
            assert_eq!(err.trim(), *expected, "{args:?}");
        }
        assert!(!err.contains("PRIVATE"), "{err}");
    }
    let (_, _, err) = laptop.run(&s, &hostile[7].0, &env);
    assert_eq!(
        err.trim(),
        format!("error: --key {private}: that is a private key: pass the .pub file")
    );
    let (_, _, err) = laptop.run(&s, &hostile[8].0, &env);
    assert!(
        err.starts_with("error: the argument '--request <RESOURCE>' cannot be used with '<GRANT_ID>' (grt_0193)"),
        "{err}"
    );
    assert_eq!(
        s.audit_count(),
        audit_before,
        "a refused ssh --request reached the server's log"
    );
    assert!(!marker.exists() && !Path::new("/tmp/jitgate-pwned").exists());

    // Without a key: said before anything is filed.
    std::fs::remove_file(format!("{}.pub", laptop.key().display())).unwrap();
    let (code, _, err) = laptop.run(&s, &["ssh", "--request", "jump", "alice@127.0.0.1"], &env);
    assert_eq!(code, 2);
    assert!(
        err.contains("no SSH key: none of id_ed25519.pub, id_ecdsa.pub, id_rsa.pub exists"),
        "{err}"
    );
    assert_eq!(s.audit_count(), audit_before);

    // The fake ssh gets exactly the key, the certificate and the destination, then the rest.
    // The key and certificate are the login's own files, in a directory of its own under
    // TMPDIR (removed afterwards); KEY-cert.pub is written beside the key all the same.
    let other = dir.path().join("work_key");
    new_key(dir.path(), "work_key");
    let public = format!("{}.pub", other.display());
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let (code, _, err) = laptop.run(
        &s,
        &[
            "ssh",
            "--request",
            "jump",
            "--key",
            &public,
            "alice@127.0.0.1",
            "--",
            "-p",
            "2222",
            "uptime",
        ],
        &[env[0], ("TMPDIR", tmp.to_str().unwrap())],
    );
    assert_eq!(code, 0, "{err}");
    let grant = err.split("(grt_").nth(1).and_then(|r| r.split(')').next()).unwrap();
    // Named at random, not after the grant and the process (which others could foresee and
    // take first): `jitgate-ssh-` and 12 letters or digits.
    let own = tmp.join("jitgate-ssh-");
    let own = own.to_str().unwrap();
    let argv = std::fs::read_to_string(&marker).unwrap();
    let argv: Vec<&str> = argv.lines().collect();
    assert_eq!(argv.len(), 10, "{argv:?}");
    let identity = argv[1]
        .strip_prefix(&format!("IdentityFile=\"{own}"))
        .and_then(|rest| rest.strip_suffix("/id\""));
    let certificate = argv[3]
        .strip_prefix(&format!("CertificateFile=\"{own}"))
        .and_then(|rest| rest.strip_suffix("/id-cert.pub\""));
    assert!(
        identity.is_some_and(|random| random.len() == 12
            && random.chars().all(|c| c.is_ascii_alphanumeric())
            && !random.contains(grant))
            && identity == certificate,
        "{argv:?}"
    );
    assert_eq!(
        [argv[0], argv[2], argv[4], argv[5], argv[6], argv[7], argv[8], argv[9]],
        [
            "-o",
            "-o",
            "-o",
            "IdentitiesOnly=yes",
            "alice@127.0.0.1",
            "-p",
            "2222",
            "uptime"
        ]
    );
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "the login's files were left behind"
    );
    assert!(Path::new(&format!("{}-cert.pub", other.display())).exists());
}

#[test]
fn ssh_request_checks_the_program_and_the_paths_ssh_reads_before_filing() {
    use std::os::unix::fs::PermissionsExt;
    let (_policy, s) = ssh_request_server();
    let dir = tempfile::tempdir().unwrap();
    let laptop = Laptop::new();
    let (fake, marker) = fake_ssh(dir.path());
    let audit_before = s.audit_count();

    // A program without its execute bit, named or first on PATH: it would fail with 127 only
    // after the (automatic) approval.
    let not_executable = dir.path().join("bin").join("ssh");
    std::fs::create_dir_all(not_executable.parent().unwrap()).unwrap();
    std::fs::write(&not_executable, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&not_executable, std::fs::Permissions::from_mode(0o644)).unwrap();
    let bin = dir.path().join("bin");
    for env in [
        vec![("JITGATE_SSH_PROGRAM", not_executable.to_str().unwrap())],
        vec![("PATH", bin.to_str().unwrap())],
    ] {
        let (code, _, err) = laptop.run(&s, &["ssh", "--request", "jump", "alice@127.0.0.1"], &env);
        assert_eq!(code, 2, "{env:?}: {err}");
        assert!(
            err.contains("or it is not executable") && err.trim_end().ends_with("nothing was requested"),
            "{err}"
        );
    }

    // A temporary directory (where the login's files go) that ssh would read otherwise than
    // it is written.
    let odd_tmp = dir.path().join("it's");
    std::fs::create_dir_all(&odd_tmp).unwrap();
    let fake = fake.to_str().unwrap();
    let (code, _, err) = laptop.run(
        &s,
        &["ssh", "--request", "jump", "alice@127.0.0.1"],
        &[("JITGATE_SSH_PROGRAM", fake), ("TMPDIR", odd_tmp.to_str().unwrap())],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("set TMPDIR to another one") && err.trim_end().ends_with("nothing was requested"),
        "{err}"
    );
    assert_eq!(s.audit_count(), audit_before, "refused after something was filed");
    assert!(!marker.exists());

    // A temporary directory that is not there, and a KEY-cert.pub that cannot be written.
    let missing = dir.path().join("no-such-tmp");
    let (code, _, err) = laptop.run(
        &s,
        &["ssh", "--request", "jump", "alice@127.0.0.1"],
        &[("JITGATE_SSH_PROGRAM", fake), ("TMPDIR", missing.to_str().unwrap())],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("set TMPDIR to another one"), "{err}");
    let blocked = dir.path().join("blocked");
    std::fs::create_dir_all(&blocked).unwrap();
    let blocked_key = new_key(&blocked, "id_ed25519");
    std::fs::create_dir(format!("{}-cert.pub", blocked_key.display())).unwrap();
    let blocked_public = format!("{}.pub", blocked_key.display());
    let (code, _, err) = laptop.run(
        &s,
        &["ssh", "--request", "jump", "--key", &blocked_public, "alice@127.0.0.1"],
        &[("JITGATE_SSH_PROGRAM", fake)],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("cannot write its certificate") && err.contains("(it is a directory); nothing was requested"),
        "{err}"
    );
    assert_eq!(s.audit_count(), audit_before, "refused after something was filed");
    assert!(!marker.exists());

    // A key whose directory ssh would read otherwise: ssh never sees that path, so it works.
    let odd = dir.path().join("o'brien $HOME");
    std::fs::create_dir_all(&odd).unwrap();
    let key = new_key(&odd, "id_ed25519");
    let public = format!("{}.pub", key.display());
    let (code, _, err) = laptop.run(
        &s,
        &["ssh", "--request", "jump", "--key", &public, "alice@127.0.0.1"],
        &[("JITGATE_SSH_PROGRAM", fake)],
    );
    assert_eq!(code, 0, "{err}");
    assert!(marker.exists());
}

#[test]
fn ssh_request_with_action_still_checks_the_resource_and_the_action() {
    let (_policy, s) = ssh_request_server();
    let dir = tempfile::tempdir().unwrap();
    let laptop = Laptop::new();
    let (fake, marker) = fake_ssh(dir.path());
    let env = [("JITGATE_SSH_PROGRAM", fake.to_str().unwrap())];
    let audit_before = s.audit_count();
    for (args, expected) in [
        (
            vec!["ssh", "--request", "prod-db", "--action", "read", "--reason", "INC-9", "alice@127.0.0.1"],
            "error: --request prod-db: it is a postgres resource, not ssh; nothing was requested",
        ),
        (
            vec!["ssh", "--request", "nowhere", "--action", "login", "alice@127.0.0.1"],
            "error: --request nowhere: no resource of that name that you may request (jitgate resources --kind ssh lists those you may); nothing was requested",
        ),
        (
            vec!["ssh", "--request", "twin", "--action", "reboot", "alice@127.0.0.1"],
            "error: --action reboot: not an action you may request on twin (you may request login, shell); nothing was requested",
        ),
    ] {
        let (code, out, err) = laptop.run(&s, &args, &env);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert_eq!(err.trim(), expected, "{args:?}");
    }
    assert_eq!(
        s.audit_count(),
        audit_before,
        "a refused --action reached the server's log"
    );
    assert!(!marker.exists());
    // An action the resource offers is taken as asked.
    let (code, _, err) = laptop.run(
        &s,
        &["ssh", "--request", "twin", "--action", "shell", "alice@127.0.0.1"],
        &env,
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("jitgate: shell on twin granted until"), "{err}");
}

#[test]
fn ssh_request_finds_its_resource_past_the_first_page_of_the_search() {
    // 501 SSH resources whose names contain "jump" and sort before it: the search for `jump`
    // fills a whole page (500) with others first.
    let policy = quickstart_with_workflows(
        r#"
[[workflow]]
resources = { names = ["a-jump-*", "jump"], kind = "ssh" }
action = "login"
requesters = ["dev"]
auto_approve = true
max_duration = "10m"
ssh = {}
"#,
    );
    let catalog = policy.path().join("resources.toml");
    let mut text = std::fs::read_to_string(&catalog).unwrap();
    for n in 0..=500 {
        text.push_str(&format!("\n[[resource]]\nname = \"a-jump-{n:03}\"\nkind = \"ssh\"\n"));
    }
    text.push_str("\n[[resource]]\nname = \"jump\"\nkind = \"ssh\"\n");
    std::fs::write(&catalog, text).unwrap();
    let s = Server::start_with_policy(policy.path());
    let dir = tempfile::tempdir().unwrap();
    let laptop = Laptop::new();
    let (fake, marker) = fake_ssh(dir.path());
    let env = [("JITGATE_SSH_PROGRAM", fake.to_str().unwrap())];
    let (code, _, err) = laptop.run(&s, &["ssh", "--request", "jump", "alice@127.0.0.1"], &env);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("jitgate: login on jump granted until"), "{err}");
    assert!(marker.exists());

    // A name longer than the server's search takes: one line, nothing filed.
    let audit_before = s.audit_count();
    let long = format!("z-{}", "b".repeat(300));
    let (code, _, err) = laptop.run(&s, &["ssh", "--request", &long, "alice@127.0.0.1"], &env);
    assert_eq!(code, 2, "{err}");
    assert_eq!(
        err.trim(),
        format!("error: --request {long}: no resource of that name that you may request (jitgate resources --kind ssh lists those you may); nothing was requested")
    );
    assert_eq!(s.audit_count(), audit_before);
}

#[test]
fn ssh_request_logs_in_with_a_key_whose_path_holds_a_percent_token() {
    let (_policy, s) = ssh_request_server();
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(&s, dir.path(), "alice");
    let laptop = Laptop::new();
    // ssh expands `%u` (the local user) in `-i` as in `-o` values: the key must reach it as
    // written, or ssh loads another file (or none) as the private key.
    let odd = dir.path().join("100%u");
    std::fs::create_dir_all(&odd).unwrap();
    let key = new_key(&odd, "id_ed25519");
    let public = format!("{}.pub", key.display());
    let destination = format!("{}@127.0.0.1", local_user());
    let mut args = vec!["ssh", "--request", "jump", "--key", &public, &destination, "--"];
    let remote = ssh_args(&sshd, "echo percent-key-logged-in");
    args.extend(remote.iter().map(String::as_str));
    let (code, out, err) = laptop.run(&s, &args, &[]);
    assert_eq!((code, out.trim()), (0, "percent-key-logged-in"), "{err}");
}

/// A stand-in for ssh that waits for `NAME.go` in FAKE_DIR (after saying `NAME.started`), then
/// records the key id of the certificate it was given and of the one ssh would load beside
/// the identity by itself.
fn slow_fake_ssh(dir: &Path) -> PathBuf {
    let program = dir.join("slow-fake-ssh");
    std::fs::write(
        &program,
        r#"#!/bin/sh
touch "$FAKE_DIR/$FAKE_NAME.started"
i=0
while [ ! -e "$FAKE_DIR/$FAKE_NAME.go" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
cert=$(printf '%s\n' "$@" | sed -n 's/^CertificateFile="\(.*\)"$/\1/p')
identity=$(printf '%s\n' "$@" | sed -n 's/^IdentityFile="\(.*\)"$/\1/p')
ssh-keygen -L -f "$cert" | grep 'Key ID' > "$FAKE_DIR/$FAKE_NAME.cert"
ssh-keygen -L -f "$identity-cert.pub" | grep 'Key ID' > "$FAKE_DIR/$FAKE_NAME.beside"
"#,
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    program
}

#[test]
fn two_logins_with_the_same_key_each_present_their_own_grants_certificate() {
    let (_policy, s) = ssh_request_server();
    let dir = tempfile::tempdir().unwrap();
    let laptop = Laptop::new();
    let fake = slow_fake_ssh(dir.path());
    let fake_dir = dir.path().to_str().unwrap();
    let env = |name: &'static str| {
        [
            ("JITGATE_SSH_PROGRAM", fake.to_str().unwrap()),
            ("FAKE_DIR", fake_dir),
            ("FAKE_NAME", name),
        ]
    };
    // The first login's ssh is still connecting when the second writes its certificate.
    let first = laptop
        .command(&s, &["ssh", "--request", "jump", "alice@127.0.0.1"], &env("one"))
        .spawn()
        .unwrap();
    wait_until("the first ssh starts", || dir.path().join("one.started").exists());
    std::fs::write(dir.path().join("two.go"), "").unwrap();
    let (code, _, second_err) = laptop.run(
        &s,
        &["ssh", "--request", "twin", "--action", "login", "alice@127.0.0.1"],
        &env("two"),
    );
    assert_eq!(code, 0, "{second_err}");
    std::fs::write(dir.path().join("one.go"), "").unwrap();
    let out = first.wait_with_output().unwrap();
    let first_err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{first_err}");
    let grant = |err: &str| {
        format!(
            "grt_{}",
            err.split("(grt_").nth(1).and_then(|r| r.split(')').next()).unwrap()
        )
    };
    let (one, two) = (grant(&first_err), grant(&second_err));
    assert_ne!(one, two);
    for (name, grant) in [("one", &one), ("two", &two)] {
        for file in ["cert", "beside"] {
            let seen = std::fs::read_to_string(dir.path().join(format!("{name}.{file}"))).unwrap();
            assert!(
                seen.contains(&format!("jitgate grant {grant} ")),
                "{name}.{file}: {seen}"
            );
        }
    }
    // KEY-cert.pub, beside the key, holds the last one written.
    assert!(describe(&laptop.key()).contains(&format!("jitgate grant {two} ")));
}

/// What [`FlakyProxy`] does with a request a rule picks.
#[derive(Clone, Copy)]
enum Flaw {
    /// Answer this status itself, the server never asked.
    Fail(u16),
    /// Hold the request until the test releases it ([`FlakyProxy::release_after_signal`]),
    /// then pass it on: how long it is held does not depend on how fast the test is.
    HoldUntilReleased,
}

type Picks = Box<dyn Fn(&str, &str) -> bool + Send>;

/// Rules, first match wins: (which requests, by method and path with query; what to do; how
/// many more times, `None` for ever).
type Rules = std::sync::Arc<std::sync::Mutex<Vec<(Picks, Flaw, Option<usize>)>>>;

/// A proxy in front of a real server, as the network between a laptop and jitgate can be: it
/// passes requests on, but those a rule picks fail or take their time.
struct FlakyProxy {
    url: String,
    rules: Rules,
    /// How many requests a rule picked so far.
    picked: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Releases given and not yet used by a held request (a count, so that a release that
    /// comes before the held request reaches its wait is not lost).
    releases: Releases,
}

type Releases = std::sync::Arc<(std::sync::Mutex<usize>, std::sync::Condvar)>;

impl FlakyProxy {
    fn start(upstream: &str) -> FlakyProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let rules: Rules = Default::default();
        let picked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let releases: Releases = Default::default();
        let (thread_rules, thread_picked, thread_releases, upstream) =
            (rules.clone(), picked.clone(), releases.clone(), upstream.to_string());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (rules, picked, releases, upstream) = (
                    thread_rules.clone(),
                    thread_picked.clone(),
                    thread_releases.clone(),
                    upstream.clone(),
                );
                std::thread::spawn(move || Self::serve(stream, &rules, &picked, &releases, &upstream));
            }
        });
        FlakyProxy {
            url,
            rules,
            picked,
            releases,
        }
    }

    /// Lets one held request pass, a second after the Ctrl-C was sent: the signal reaches
    /// jitgate's handler, which notes it, well before the answer it waits for comes back.
    /// (The hold itself no longer has to outlast the test's look at `picked` and its `kill`.)
    fn release_after_signal(&self) {
        std::thread::sleep(std::time::Duration::from_secs(1));
        let (count, released) = &*self.releases;
        *count.lock().unwrap() += 1;
        released.notify_all();
    }

    /// Waits for a release (at most two minutes, so that a test that forgot one still ends).
    fn wait_for_release(releases: &Releases) {
        let (count, released) = &**releases;
        let (mut count, _) = released
            .wait_timeout_while(count.lock().unwrap(), std::time::Duration::from_secs(120), |n| *n == 0)
            .unwrap();
        *count = count.saturating_sub(1);
    }

    fn rule(&self, picks: impl Fn(&str, &str) -> bool + Send + 'static, flaw: Flaw, times: Option<usize>) {
        self.rules.lock().unwrap().push((Box::new(picks), flaw, times));
    }

    fn picked(&self) -> usize {
        self.picked.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn serve(
        stream: std::net::TcpStream,
        rules: &Rules,
        picked: &std::sync::atomic::AtomicUsize,
        releases: &Releases,
        upstream: &str,
    ) {
        use std::io::{BufRead, Read, Write};
        let http = reqwest::blocking::Client::builder()
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .unwrap();
        let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let mut words = line.split_whitespace();
            let (method, target) = (
                words.next().unwrap_or("").to_string(),
                words.next().unwrap_or("").to_string(),
            );
            let mut headers = Vec::new();
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 {
                    return;
                }
                let header = header.trim_end();
                if header.is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':') {
                    headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
                }
            }
            let length: usize = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            let flaw = {
                let mut rules = rules.lock().unwrap();
                let found = rules
                    .iter_mut()
                    .find(|(picks, _, times)| times != &Some(0) && picks(&method, &target));
                found.map(|(_, flaw, times)| {
                    if let Some(n) = times {
                        *n -= 1;
                    }
                    *flaw
                })
            };
            if flaw.is_some() {
                picked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            match flaw {
                Some(Flaw::Fail(status)) => {
                    let _ = write!(
                        writer,
                        "HTTP/1.1 {status} Flaky\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    return;
                }
                Some(Flaw::HoldUntilReleased) => Self::wait_for_release(releases),
                None => {}
            }
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let mut passed = http.request(method, format!("{upstream}{target}")).body(body);
            for (name, value) in &headers {
                if matches!(name.as_str(), "authorization" | "content-type" | "accept") {
                    passed = passed.header(name.as_str(), value.as_str());
                }
            }
            let Ok(answer) = passed.send() else { return };
            let status = answer.status().as_u16();
            let kind = answer
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/json")
                .to_string();
            let bytes = answer.bytes().unwrap_or_default();
            let head = format!(
                "HTTP/1.1 {status} Passed\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\r\n",
                bytes.len()
            );
            if writer
                .write_all(head.as_bytes())
                .and_then(|_| writer.write_all(&bytes))
                .is_err()
            {
                return;
            }
        }
    }
}

/// The first `req_...` or `grt_...` id in `text`.
fn first_id(text: &str, prefix: &str) -> String {
    let start = text.find(prefix).unwrap_or_else(|| panic!("no {prefix} in {text}"));
    text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// Sends `child` the SIGINT a Ctrl-C would, waits for it, checks that it exited 130 (128 +
/// SIGINT, as a shell reports an interrupted command) and returns its stderr.
fn interrupt(child: std::process::Child) -> String {
    interrupt_then(child, || {})
}

/// As [`interrupt`], doing `after_signal` once the signal is sent and before waiting for the
/// child (which may need it to end, such as a held request let through).
fn interrupt_then(child: std::process::Child, after_signal: impl FnOnce()) -> String {
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    after_signal();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(130), "{err}");
    err
}

/// Checks that `request` is cancelled.
fn assert_cancelled(s: &Server, request: &str) {
    let (_, after) = s.get(&format!("/v1/requests/{request}"), "demo-alice");
    assert_eq!(after["status"], "cancelled");
}

/// Checks that `grant` is not among alice's active grants (any more).
fn assert_not_active(s: &Server, grant: &str) {
    let (_, grants) = s.get("/v1/grants?status=active", "demo-alice");
    assert!(!grants.to_string().contains(grant), "{grants}");
}

#[test]
fn a_wait_that_fails_cancels_the_request_and_a_login_that_fails_ends_the_grant() {
    let (_policy, s) = ssh_request_server();
    let dir = tempfile::tempdir().unwrap();
    let laptop = Laptop::new();
    let (fake, marker) = fake_ssh(dir.path());
    let proxy = FlakyProxy::start(&s.url);
    let env = [
        ("JITGATE_SSH_PROGRAM", fake.to_str().unwrap()),
        ("JITGATE_URL", proxy.url.as_str()),
    ];
    let long_poll = |method: &str, target: &str| method == "GET" && target.contains("?wait=");

    // Four failed looks in a row (a restart of some 15 s: the CLI backs off 1, 2, 4, 8 s) are
    // ridden out: bob's approval still reaches `gate`.
    proxy.rule(long_poll, Flaw::Fail(502), Some(4));
    let child = laptop
        .command(
            &s,
            &["gate", "bastion", "login", "--reason", "INC-10", "--timeout", "60s"],
            &env,
        )
        .spawn()
        .unwrap();
    let filed = pending_request(&s, |r| r["resource"] == "bastion");
    // The four looks come after pauses of 1, 2 and 4 s: 7 s the test designed, each look a
    // new connection through the proxy. A wait of its own, that the backoff fits in under load.
    wait_until_within("four looks failed", std::time::Duration::from_secs(30), || {
        proxy.picked() >= 4
    });
    let (status, approved) = s.post(&format!("/v1/requests/{}/approve", id(&filed)), "demo-bob", json!({}));
    assert_eq!(status, 200, "{approved}");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

    // A wait that keeps failing cancels the request and says so, for gate and ssh alike: here
    // until the timeout (a shorter one than the minute of retries), which is then not "nobody
    // decided" but why the server could not be asked.
    proxy.rule(long_poll, Flaw::Fail(502), None);
    for args in [
        vec!["gate", "bastion", "login", "--reason", "INC-11", "--timeout", "10s"],
        vec!["ssh", "--request", "bastion", "--timeout", "10s", "alice@127.0.0.1"],
    ] {
        let (code, _, err) = laptop.run(&s, &args, &env);
        assert_eq!(code, 2, "{args:?}: {err}");
        let request = first_id(&err, "req_");
        assert!(
            err.contains(&format!("error: could not wait for request {request} ("))
                && err.trim_end().ends_with("); it is cancelled"),
            "{err}"
        );
        let (_, after) = s.get(&format!("/v1/requests/{request}"), "demo-alice");
        assert_eq!(after["status"], "cancelled", "{args:?}");
    }
    assert!(!marker.exists());

    // Approved, but no certificate comes back: the grant is ended, not left live.
    proxy.rule(
        |method, target| method == "POST" && target.ends_with("/ssh-cert"),
        Flaw::Fail(502),
        None,
    );
    let (code, _, err) = laptop.run(&s, &["ssh", "--request", "jump", "alice@127.0.0.1"], &env);
    assert_eq!(code, 2, "{err}");
    let grant = first_id(&err, "grt_");
    assert!(err.trim_end().ends_with(&format!("; grant {grant} is ended")), "{err}");
    assert_not_active(&s, &grant);
    assert!(!marker.exists());
}

#[test]
fn ctrl_c_while_filing_cancels_and_after_approval_runs_no_ssh() {
    let (_policy, s) = ssh_request_server();
    let dir = tempfile::tempdir().unwrap();
    let laptop = Laptop::new();
    let (fake, marker) = fake_ssh(dir.path());
    let proxy = FlakyProxy::start(&s.url);
    let env = [
        ("JITGATE_SSH_PROGRAM", fake.to_str().unwrap()),
        ("JITGATE_URL", proxy.url.as_str()),
    ];

    // Ctrl-C while the request is being filed: once it exists, it is cancelled.
    proxy.rule(
        |m, t| m == "POST" && t == "/v1/requests",
        Flaw::HoldUntilReleased,
        Some(1),
    );
    let err = laptop.interrupted(
        &s,
        &["ssh", "--request", "bastion", "--timeout", "5s", "alice@127.0.0.1"],
        &env,
        "the request is being filed",
        || proxy.picked() == 1,
        &proxy,
    );
    let request = first_id(&err, "req_");
    assert!(
        err.contains(&format!("interrupted: request {request} is cancelled")),
        "{err}"
    );
    assert_cancelled(&s, &request);

    // Ctrl-C once approved, while the certificate is being issued: ssh does not start, and
    // the grant is ended.
    proxy.rule(
        |m, t| m == "POST" && t.ends_with("/ssh-cert"),
        Flaw::HoldUntilReleased,
        Some(1),
    );
    let err = laptop.interrupted(
        &s,
        &["ssh", "--request", "jump", "alice@127.0.0.1"],
        &env,
        "the certificate is being issued",
        || proxy.picked() == 2,
        &proxy,
    );
    let grant = first_id(&err, "grt_");
    assert!(
        err.contains(&format!("interrupted: not running ssh; grant {grant} is ended")),
        "{err}"
    );
    assert_not_active(&s, &grant);
    assert!(!marker.exists(), "ssh ran after Ctrl-C");
    // The certificate was issued before the Ctrl-C was seen: KEY-cert.pub, which a plain ssh
    // would load by itself, is removed, and the message says the certificate stays valid.
    let certificate = laptop.key().with_file_name("id_ed25519-cert.pub");
    assert!(!certificate.exists(), "the ended grant's certificate was left: {err}");
    assert!(
        err.contains("; its certificate, already issued, stays valid until ")
            && err.contains("(hosts check no revocation list): removed ")
            && err.trim_end().ends_with("id_ed25519-cert.pub"),
        "{err}"
    );

    // Ctrl-C while an auto-approved request is filed: the grant is ended before any
    // certificate is asked for.
    let asked_before = proxy.picked();
    proxy.rule(
        |m, t| m == "POST" && t == "/v1/requests",
        Flaw::HoldUntilReleased,
        Some(1),
    );
    proxy.rule(|m, t| m == "POST" && t.ends_with("/ssh-cert"), Flaw::Fail(599), None);
    let err = laptop.interrupted(
        &s,
        &["ssh", "--request", "jump", "alice@127.0.0.1"],
        &env,
        "the request is being filed",
        || proxy.picked() == asked_before + 1,
        &proxy,
    );
    let grant = first_id(&err, "grt_");
    assert!(
        err.trim_end()
            .ends_with(&format!("interrupted: not running ssh; grant {grant} is ended")),
        "{err}"
    );
    assert_eq!(
        proxy.picked(),
        asked_before + 1,
        "a certificate was asked for after Ctrl-C"
    );
    assert!(!certificate.exists(), "{err}");
    assert_not_active(&s, &grant);
    assert!(!marker.exists(), "ssh ran after Ctrl-C");
}

#[test]
fn ctrl_c_while_filing_also_stops_gate_and_run() {
    let (_policy, s) = ssh_request_server();
    let dir = tempfile::tempdir().unwrap();
    let laptop = Laptop::new();
    let proxy = FlakyProxy::start(&s.url);
    let env = [("JITGATE_URL", proxy.url.as_str())];
    let filing = |m: &str, t: &str| m == "POST" && t == "/v1/requests";

    // gate: the request, once filed, is cancelled.
    proxy.rule(filing, Flaw::HoldUntilReleased, Some(1));
    let err = laptop.interrupted(
        &s,
        &["gate", "bastion", "login", "--reason", "INC-12", "--timeout", "5s"],
        &env,
        "gate's request is being filed",
        || proxy.picked() == 1,
        &proxy,
    );
    let request = first_id(&err, "req_");
    assert_cancelled(&s, &request);

    // run, approved at once: the command does not run, and its grant is ended.
    let ran = dir.path().join("run-ran");
    proxy.rule(filing, Flaw::HoldUntilReleased, Some(1));
    let err = laptop.interrupted(
        &s,
        &["run", "jump", "login", "--", "touch", ran.to_str().unwrap()],
        &env,
        "run's request is being filed",
        || proxy.picked() == 2,
        &proxy,
    );
    let grant = first_id(&err, "grt_");
    assert!(
        err.contains(&format!("interrupted: grant {grant} is ended; not running touch")),
        "{err}"
    );
    assert_not_active(&s, &grant);
    assert!(!ran.exists(), "run's command ran after Ctrl-C");
}

#[test]
fn an_ssh_that_cannot_start_after_approval_ends_the_grant() {
    use std::os::unix::fs::PermissionsExt;
    let (_policy, s) = ssh_request_server();
    let dir = tempfile::tempdir().unwrap();
    let laptop = Laptop::new();
    // Executable, so it passes the check before filing, but the kernel cannot start it.
    let broken = dir.path().join("broken-ssh");
    std::fs::write(&broken, "#!/no/such/interpreter\n").unwrap();
    std::fs::set_permissions(&broken, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, _, err) = laptop.run(
        &s,
        &["ssh", "--request", "jump", "alice@127.0.0.1"],
        &[("JITGATE_SSH_PROGRAM", broken.to_str().unwrap())],
    );
    assert_eq!(code, 127, "{err}");
    let grant = first_id(&err, "grt_");
    let certificate = laptop.key().with_file_name("id_ed25519-cert.pub");
    assert!(
        err.contains("cannot run")
            && err.contains(&format!(
                "; grant {grant} is ended; its certificate, already issued, stays valid until "
            ))
            && err.trim_end().ends_with(&format!(
                "(hosts check no revocation list): removed {}",
                certificate.display()
            )),
        "{err}"
    );
    assert_not_active(&s, &grant);
    assert!(!certificate.exists(), "the ended grant's certificate was left: {err}");
}
