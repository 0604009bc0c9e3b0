//! The CLI for people (#28, part 1): `jitgate login --token`, `logout`, `whoami`, profiles, the
//! credential store and its file modes, completions and man pages, `ssh --write`; and the
//! server's `GET /v1/whoami` and `GET /v1/login/options`. Every CLI run here has its own
//! `HOME` and `XDG_CONFIG_HOME` and no `JITGATE_*` variable but those a test sets.

use crate::support::person::Person;
use crate::support::*;
use serde_json::{json, Value};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o777
}

fn json_of(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// A server that records every byte sent to it and answers each connection with a 401, to
/// see whether a credential reached a server it was not stored for.
struct Recorder {
    url: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Recorder {
    fn start() -> Recorder {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                stream
                    .set_read_timeout(Some(std::time::Duration::from_millis(300)))
                    .unwrap();
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    log.lock().unwrap().extend_from_slice(&buf[..n]);
                    if log.lock().unwrap().windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
                );
            }
        });
        Recorder { url, seen }
    }

    fn saw(&self, needle: &str) -> bool {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).contains(needle)
    }

    fn saw_anything(&self) -> bool {
        !self.seen.lock().unwrap().is_empty()
    }
}

/// An address where nothing listens: a command that tried the network would say it cannot
/// reach it.
fn nowhere() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

#[test]
fn the_bar_login_then_whoami_prints_alice_with_no_token_in_the_environment() {
    let s = Server::start();
    let me = Person::new();
    let (code, out, err) = me.login(&s.url, "demo-alice", None);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.trim(), format!("Signed in to {} as alice (profile default)", s.url));

    let (code, out, err) = me.run(&["whoami"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("principal   alice"), "{out}");
    assert!(out.contains("groups      dev"), "{out}");
    assert!(out.contains("roles       user"), "{out}");
    assert!(out.contains("credential  static_token"), "{out}");
    assert!(out.contains("profile     default"), "{out}");
    assert!(out.contains(&format!("server      {}", s.url)), "{out}");
    assert!(out.contains("source      profile file"), "{out}");
    assert!(!out.contains("demo-alice"), "{out}");

    // The file is 0600 in a 0700 directory; nothing others may read holds the token.
    assert_eq!(mode(&me.credential("default")), 0o600);
    assert_eq!(mode(&me.config_dir()), 0o700);
    assert_eq!(mode(&me.config_dir().join("credentials")), 0o700);
    assert_eq!(mode(&me.config_dir().join("config.toml")), 0o600);
    let files = me.files();
    assert_eq!(files.len(), 2, "{files:?}");
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        if text.contains("demo-alice") {
            assert_eq!(mode(file) & 0o077, 0, "{} holds the token", file.display());
        }
    }
    assert!(!std::fs::read_to_string(me.config_dir().join("config.toml"))
        .unwrap()
        .contains("demo-alice"));

    // Other commands use the stored credential and the profile's URL too.
    let (code, out, err) = me.run(&["requests", "--output", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(json_of(&out)["items"].is_array());
}

#[test]
fn completions_for_three_shells_and_man_pages() {
    let me = Person::new();
    let (code, bash, err) = me.run(&["completion", "bash"]);
    assert_eq!(code, 0, "{err}");
    assert!(bash.contains("_jitgate") && bash.contains("complete -F"), "{bash}");
    assert!(
        bash.contains("what=requests") && bash.contains("jitgate __complete \"${what}\""),
        "{bash}"
    );
    assert!(!bash.contains("compgen -W \"$(jitgate"), "{bash}");
    // The internal command is not offered on `jitgate <TAB>`.
    let top = bash
        .lines()
        .find(|l| l.trim_start().starts_with("opts=\"") && l.contains(" whoami "))
        .unwrap();
    assert!(!top.contains("__complete"), "{top}");
    let script = me.home.path().join("jitgate.bash");
    std::fs::write(&script, &bash).unwrap();
    let check = Command::new("bash").arg("-n").arg(&script).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let (_, fish, _) = me.run(&["completion", "fish"]);
    assert!(!fish.contains("-a \"__complete\""), "{fish}");
    for shell in ["zsh", "fish"] {
        let (code, out, err) = me.run(&["completion", shell]);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.len() > 1000 && out.contains("login") && out.contains("whoami"),
            "{shell}: {out}"
        );
    }
    let (code, _, err) = me.run(&["completion", "tcsh"]);
    assert_eq!(code, 2, "{err}");

    let (code, man, err) = me.run(&["man"]);
    assert_eq!(code, 0, "{err}");
    assert!(man.starts_with(".ie") || man.contains(".TH jitgate"), "{man}");
    let pages = me.home.path().join("man");
    let (code, _, err) = me.run(&["man", "--dir", pages.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    for page in [
        "jitgate.1",
        "jitgate-login.1",
        "jitgate-whoami.1",
        "jitgate-profile-use.1",
    ] {
        assert!(pages.join(page).is_file(), "{page}");
    }

    // Candidates from the server for the bash completion: ids of pending requests, names of
    // resources; nothing at all, quickly, when there is no server.
    let s = Server::start();
    let filed = s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "read", "duration": "30m", "reason": "INC-1 look"}),
    );
    me.login(&s.url, "demo-alice", None);
    let (code, out, _) = me.run(&["__complete", "requests"]);
    assert_eq!(code, 0);
    assert!(out.lines().any(|l| l == filed["id"].as_str().unwrap()), "{out}");
    let (_, out, _) = me.run(&["__complete", "resources"]);
    assert!(out.lines().any(|l| l == "prod-db"), "{out}");
    // Another server named by --url: the stored credential is not sent there, nothing printed.
    let other = Recorder::start();
    let started = std::time::Instant::now();
    let (code, out, err) = me.run(&["__complete", "requests", "--url", &other.url]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(!other.saw_anything(), "completion sent something to another server");
}

#[test]
fn a_stored_credential_is_only_ever_sent_to_the_server_it_was_stored_for() {
    let s = Server::start();
    let me = Person::new();
    assert_eq!(me.login(&s.url, "demo-alice", None).0, 0);
    let evil = Recorder::start();
    let refusal = format!(
        "profile default is signed in to {}, not {}: pass --token or JITGATE_TOKEN for that server, or run jitgate login --profile NAME --url {}",
        s.url, evil.url, evil.url
    );
    // --url, JITGATE_URL, and bash completion's __complete on TAB.
    for (args, env) in [
        (vec!["--url", evil.url.as_str(), "whoami"], vec![]),
        (vec!["requests", "--url", evil.url.as_str()], vec![]),
        (
            vec!["whoami", "--output", "json"],
            vec![("JITGATE_URL", evil.url.as_str())],
        ),
        (
            vec!["whoami"],
            vec![("JITGATE_URL", evil.url.as_str()), ("JITGATE_PROFILE", "default")],
        ),
    ] {
        let (code, out, err) = me.run_full(&args, &env, None);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert_eq!(err.trim(), format!("error: {refusal}"), "{args:?}");
        assert!(!out.contains("demo-alice") && !err.contains("demo-alice"));
    }
    for what in ["requests", "resources"] {
        let (code, out, err) = me.run_full(&["__complete", what], &[("JITGATE_URL", &evil.url)], None);
        assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
    }
    assert!(!evil.saw("demo-alice"), "the stored token reached another server");
    assert!(!evil.saw_anything(), "something was sent to another server");

    // The same server spelt differently is the same server.
    let (code, out, err) = me.run(&["whoami", "--url", &format!("{}/", s.url.to_uppercase())]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("principal   alice"), "{out}");
    // Editing config.toml to point the profile elsewhere does not redirect the credential:
    // it goes where it was stored for.
    std::fs::write(
        me.config_dir().join("config.toml"),
        format!("active = \"default\"\n[profiles.default]\nurl = \"{}\"\n", evil.url),
    )
    .unwrap();
    let (code, out, err) = me.run(&["whoami", "--output", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(json_of(&out)["url"], s.url.as_str());
    assert!(!evil.saw_anything());
    // A flag token for the other server goes there, and only that one.
    let (code, _, _) = me.run(&["whoami", "--url", &evil.url, "--token", "for-evil"]);
    assert_eq!(code, 2);
    assert!(evil.saw("for-evil") && !evil.saw("demo-alice"));

    // A credential that names no server (an older jitgate wrote it) is sent nowhere.
    let fresh = Recorder::start();
    let cred = me.credential("default");
    std::fs::write(&cred, r#"{"kind":"token","token":"demo-alice"}"#).unwrap();
    std::fs::write(
        me.config_dir().join("config.toml"),
        format!("active = \"default\"\n[profiles.default]\nurl = \"{}\"\n", fresh.url),
    )
    .unwrap();
    for env in [vec![], vec![("JITGATE_URL", fresh.url.as_str())]] {
        let (code, _, err) = me.run_full(&["whoami"], &env, None);
        assert_eq!(code, 2);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("profile default: the stored credential names no server")
                && err.contains("run jitgate login --profile default --url URL"),
            "{err}"
        );
    }
    assert!(!fresh.saw_anything());
}

#[test]
fn a_refused_token_stores_nothing_and_the_environment_and_flag_win() {
    let s = Server::start();
    let me = Person::new();
    let (code, out, err) = me.login(&s.url, "not-a-token", None);
    assert_eq!(code, 2, "{out}");
    assert!(err.contains("the server refused that token (401)"), "{err}");
    assert!(!err.contains("not-a-token"), "{err}");
    assert!(me.files().is_empty(), "{:?}", me.files());

    me.login(&s.url, "demo-alice", None);
    let (_, out, _) = me.run_full(&["whoami", "--output", "json"], &[("JITGATE_TOKEN", "demo-bob")], None);
    let who = json_of(&out);
    assert_eq!(who["principal"], "bob");
    assert_eq!(who["source"], "JITGATE_TOKEN");
    assert_eq!(who["profile"], "default");
    assert_eq!(who["url"], s.url.as_str());
    let (_, out, _) = me.run(&["whoami", "--token", "demo-carol", "--output", "json"]);
    let who = json_of(&out);
    assert_eq!(
        (who["principal"].as_str(), who["source"].as_str()),
        (Some("carol"), Some("--token"))
    );
    let (_, out, _) = me.run_full(
        &["whoami", "--output", "json"],
        &[("JITGATE_TOKEN_COMMAND", "echo demo-erin")],
        None,
    );
    let who = json_of(&out);
    assert_eq!(
        (who["principal"].as_str(), who["source"].as_str()),
        (Some("erin"), Some("JITGATE_TOKEN_COMMAND"))
    );
    let (_, out, _) = me.run(&["whoami", "--output", "json"]);
    let who = json_of(&out);
    assert_eq!(who["principal"], "alice");
    assert!(who["source"].as_str().unwrap().starts_with("profile file "), "{who}");
    assert!(!out.contains("demo-alice"));

    // A bare CI container (no HOME, no XDG_CONFIG_HOME): the environment alone decides.
    let bare = |env: &[(&str, &str)]| {
        let out = Command::new(BIN)
            .args(["whoami", "--output", "json"])
            .env_clear()
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = bare(&[("JITGATE_URL", &s.url), ("JITGATE_TOKEN", "demo-bob")]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(json_of(&out)["source"], "JITGATE_TOKEN");
    let (code, _, err) = bare(&[("JITGATE_URL", &s.url)]);
    assert_eq!(code, Some(2));
    assert!(err.contains("not signed in") && err.contains("JITGATE_TOKEN"), "{err}");

    // `--token -` reads the token from standard input (out of shell history).
    let other = Person::new();
    let (code, out, err) = other.run_full(&["login", "--url", &s.url, "--token", "-"], &[], Some(b"demo-dave\n"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("as dave"), "{out}");
    // JITGATE_TOKEN alone is never stored by login: it asks the server how to sign in.
    let third = Person::new();
    let (code, _, err) = third.run_full(&["login", "--url", &s.url], &[("JITGATE_TOKEN", "demo-erin")], None);
    assert_eq!(code, 2);
    assert!(err.contains("accepts only tokens: run jitgate login --url"), "{err}");
    assert!(third.files().is_empty());
}

#[test]
fn two_profiles_side_by_side_then_logout() {
    let one = Server::start();
    let two = Server::start();
    let me = Person::new();
    assert_eq!(me.login(&one.url, "demo-alice", Some("work")).0, 0);
    assert_eq!(me.login(&two.url, "demo-bob", Some("ops")).0, 0);

    // The last login is active; --profile and JITGATE_PROFILE pick another.
    let (_, out, _) = me.run(&["whoami", "--output", "json"]);
    assert_eq!(
        (json_of(&out)["principal"].as_str(), json_of(&out)["url"].as_str()),
        (Some("bob"), Some(two.url.as_str()))
    );
    let (_, out, _) = me.run(&["whoami", "--profile", "work", "--output", "json"]);
    assert_eq!(json_of(&out)["principal"], "alice");
    let (_, out, _) = me.run_full(&["whoami", "--output", "json"], &[("JITGATE_PROFILE", "work")], None);
    assert_eq!(json_of(&out)["url"], one.url.as_str());

    let (code, out, _) = me.run(&["profile", "list"]);
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .any(|l| l.starts_with("* ops") && l.contains(&two.url) && l.contains("yes")),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("  work") && l.contains(&one.url)),
        "{out}"
    );
    assert!(!out.contains("demo-"), "{out}");
    // JITGATE_PROFILE overrides the active one: the marker follows what commands would use.
    let (_, out, _) = me.run_full(&["profile", "list"], &[("JITGATE_PROFILE", "work")], None);
    assert!(out.lines().any(|l| l.starts_with("* work")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("  ops")), "{out}");
    let (_, out, _) = me.run(&["profile", "list", "--output", "json"]);
    assert_eq!(json_of(&out)["items"].as_array().unwrap().len(), 2);
    assert!(!out.contains("demo-"), "{out}");

    assert_eq!(me.run(&["profile", "use", "work"]).0, 0);
    let (_, out, _) = me.run(&["whoami", "--output", "json"]);
    assert_eq!(json_of(&out)["principal"], "alice");
    let (code, _, err) = me.run(&["profile", "use", "staging"]);
    assert_eq!(code, 2);
    assert!(err.contains("no profile staging; known: ops, work"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    // Logout removes the file, keeps the URL; then commands say to sign in.
    let (code, out, _) = me.run(&["logout"]);
    assert_eq!(code, 0);
    assert!(out.contains("Signed out of profile work"), "{out}");
    assert!(!me.credential("work").exists());
    assert!(me.credential("ops").exists());
    let (code, _, err) = me.run(&["requests"]);
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!(
            "profile work: not signed in: run jitgate login --profile work --url {}",
            one.url
        )),
        "{err}"
    );
    let (code, out, _) = me.run(&["logout"]);
    assert_eq!(code, 0);
    assert!(out.contains("Profile work holds no credential"), "{out}");
    // Signing in again needs no --url: the profile kept it.
    let (code, out, err) = me.run(&["login", "--token", "demo-dave", "--profile", "work"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("Signed in to {} as dave", one.url)), "{out}");
}

#[test]
fn loose_foreign_symlinked_or_garbage_files_are_refused_in_one_line_before_any_call() {
    let me = Person::new();
    // A profile on an address where nothing listens: a refusal that tried the network would
    // say "cannot reach".
    let s = Server::start();
    me.login(&s.url, "demo-alice", None);
    let config = me.config_dir().join("config.toml");
    std::fs::write(
        &config,
        format!("active = \"default\"\n[profiles.default]\nurl = \"{}\"\n", nowhere()),
    )
    .unwrap();
    let cred = me.credential("default");

    std::fs::set_permissions(&cred, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = me.run(&["whoami"]);
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("profile default:") && err.contains(&format!("chmod 600 {}", cred.display())),
        "{err}"
    );
    assert!(!err.contains("cannot reach") && !err.contains("demo-alice"), "{err}");
    std::fs::set_permissions(&cred, std::fs::Permissions::from_mode(0o600)).unwrap();

    std::fs::set_permissions(me.config_dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, _, err) = me.run(&["whoami"]);
    assert_eq!(code, 2);
    assert!(err.contains("chmod 700"), "{err}");
    std::fs::set_permissions(me.config_dir(), std::fs::Permissions::from_mode(0o700)).unwrap();

    // A credentials file that is a symbolic link to a file elsewhere is not followed.
    let elsewhere = me.home.path().join("planted.json");
    std::fs::write(&elsewhere, r#"{"kind":"token","token":"demo-admin"}"#).unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::remove_file(&cred).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &cred).unwrap();
    let (code, _, err) = me.run(&["whoami"]);
    assert_eq!(code, 2);
    assert!(err.contains("symbolic link"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    std::fs::remove_file(&cred).unwrap();

    // A config file with garbage: the file and line named, in one line.
    std::fs::write(&config, "active = \"default\"\n\n[profiles.default\nurl = 3\n").unwrap();
    let (code, _, err) = me.run(&["whoami"]);
    assert_eq!(code, 2);
    assert!(err.contains(&format!("{}:3", config.display())), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // A garbage credential file: named, without quoting its content.
    std::fs::write(&config, format!("[profiles.default]\nurl = \"{}\"\n", s.url)).unwrap();
    std::fs::write(&cred, "{\"kind\": \"token\", \"token\": \"demo-alice\"").unwrap();
    std::fs::set_permissions(&cred, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, _, err) = me.run(&["whoami"]);
    assert_eq!(code, 2);
    assert!(err.contains("default.json") && err.contains("jitgate login"), "{err}");
    assert!(!err.contains("demo-alice"), "{err}");
    // An expired single sign-on credential (the format part 2 writes): one line naming the
    // profile, and nothing sent.
    std::fs::write(&config, format!("[profiles.default]\nurl = \"{}\"\n", nowhere())).unwrap();
    std::fs::write(
        &cred,
        format!(
            r#"{{"kind": "oidc", "url": "{}", "issuer": "https://id.example.test", "client_id": "jitgate-cli",
            "id_token": "eyJ.secret.x", "refresh_token": "r-secret", "expires_at": "2020-01-01T00:00:00Z"}}"#,
            nowhere()
        ),
    )
    .unwrap();
    let (code, _, err) = me.run(&["whoami"]);
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("profile default: the single sign-on credential from https://id.example.test expired at 2020-01-01T00:00:00Z: run jitgate login --profile default"),
        "{err}"
    );
    assert!(!err.contains("secret") && !err.contains("cannot reach"), "{err}");
    std::fs::write(&config, format!("[profiles.default]\nurl = \"{}\"\n", s.url)).unwrap();

    // CI that sets both variables never reads the files at all.
    let (code, out, err) = me.run_full(
        &["whoami", "--output", "json"],
        &[("JITGATE_URL", &s.url), ("JITGATE_TOKEN", "demo-bob")],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(json_of(&out)["principal"], "bob");
}

#[test]
fn a_revoked_stored_token_names_the_profile_and_what_to_run() {
    let s = Server::start();
    let (status, created) = s.post(
        "/v1/tokens",
        "demo-admin",
        json!({"principal": "alice", "groups": ["dev"], "ttl": "1h", "label": "laptop"}),
    );
    assert_eq!(status, 201, "{created}");
    let token = created["token"].as_str().unwrap();
    let me = Person::new();
    assert_eq!(me.login(&s.url, token, Some("prod")).0, 0);
    let (_, out, _) = me.run(&["whoami"]);
    assert!(
        out.contains(&format!("credential  api_token {}", created["id"].as_str().unwrap())),
        "{out}"
    );
    assert!(!out.contains("never"), "an API token with a ttl has an expiry: {out}");
    let (status, _) = s.post(
        &format!("/v1/tokens/{}/revoke", created["id"].as_str().unwrap()),
        "demo-admin",
        json!({}),
    );
    assert_eq!(status, 200);
    for args in [&["requests"][..], &["whoami"][..], &["grants", "--output", "json"][..]] {
        let (code, out, err) = me.run(args);
        assert_eq!(code, 2, "{out}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("profile prod: the server refused the stored credential (401")
                && err.contains("run jitgate login --profile prod"),
            "{err}"
        );
        assert!(!err.contains(token) && !out.contains(token));
    }
}

#[test]
fn hostile_profile_names_and_tokens_are_refused_before_anything_is_stored() {
    let s = Server::start();
    let me = Person::new();
    let long = "p".repeat(300);
    for name in [
        "a/b",
        "../up",
        "..",
        ".hidden",
        "a\u{1}b",
        "a\u{202e}b",
        "prоd", /* Cyrillic о */
        "a\u{200b}b",
        "a b",
        "Prod",
        long.as_str(),
        "",
    ] {
        let (code, _, err) = me.login(&s.url, "demo-alice", Some(name));
        assert_eq!(code, 2, "{name:?}");
        assert!(err.contains("profile name"), "{name:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        // Every command refuses the name itself, even with a URL and a token that need no file.
        for extra in [&[][..], &["--url", s.url.as_str(), "--token", "demo-alice"][..]] {
            let mut args = vec!["whoami", "--profile", name];
            args.extend_from_slice(extra);
            let (code, out, err) = me.run(&args);
            assert_eq!(code, 2, "{name:?}: {out}{err}");
            assert!(err.contains("error: profile name "), "{name:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(!err.chars().any(|c| c.is_control() && c != '\n'), "{err:?}");
        }
    }
    assert!(me.files().is_empty(), "{:?}", me.files());
    // NUL cannot be passed in an argument; through the environment it is refused by the OS,
    // so JITGATE_PROFILE's check is the one above. A NUL or line break in a token on stdin:
    for token in [
        &b"demo-alice\0x\n"[..],
        b"demo\x1balice\n",
        b"demo alice\n",
        b"\n",
        b"demo-alice\rmore\n",
    ] {
        let (code, _, err) = me.run_full(&["login", "--url", &s.url, "--token", "-"], &[], Some(token));
        assert_eq!(code, 2, "{token:?}");
        assert!(err.contains("refused before anything is stored"), "{token:?}: {err}");
        assert!(!err.contains("demo"), "{err}");
    }
    let (code, _, err) = me.login(&s.url, "demo-alice\nX", None);
    assert_eq!(code, 2);
    assert!(err.contains("refused before anything is stored"), "{err}");
    let (code, _, _) = me.login(&s.url, &"t".repeat(9000), None);
    assert_eq!(code, 2);
    assert!(me.files().is_empty(), "{:?}", me.files());

    // --output json of every command of the CLI for people never holds the token.
    me.login(&s.url, "demo-alice", None);
    for args in [
        &["login", "--url", &s.url, "--token", "demo-alice", "--output", "json"][..],
        &["whoami", "--output", "json"][..],
        &["profile", "list", "--output", "json"][..],
        &["profile", "use", "default", "--output", "json"][..],
        &["logout", "--output", "json"][..],
    ] {
        let (code, out, err) = me.run(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(
            !out.contains("demo-alice") && !err.contains("demo-alice"),
            "{args:?}: {out}"
        );
        json_of(&out);
    }
}

#[test]
fn whoami_says_which_credential_for_each_kind_and_401_without_one() {
    let s = Server::start();
    let (status, who) = s.get("/v1/whoami", "demo-alice");
    assert_eq!(status, 200, "{who}");
    assert_eq!(
        who,
        json!({"principal": "alice", "kind": "user", "groups": ["dev"], "roles": ["user"],
               "credential": {"kind": "static_token"}})
    );
    let (_, who) = s.get("/v1/whoami", "demo-admin");
    assert_eq!(who["roles"], json!(["user", "admin"]));
    let (_, who) = s.get("/v1/whoami", "demo-svc");
    assert_eq!(
        (who["kind"].as_str(), who["roles"].clone()),
        (Some("service"), json!(["service"]))
    );

    let (_, api) = s.post(
        "/v1/tokens",
        "demo-admin",
        json!({"principal": "ci-bot", "groups": ["dev"], "ttl": "2h"}),
    );
    let (status, who) = s.get("/v1/whoami", api["token"].as_str().unwrap());
    assert_eq!(status, 200, "{who}");
    assert_eq!(who["credential"]["kind"], "api_token");
    assert_eq!(who["credential"]["id"], api["id"]);
    assert!(who["credential"]["id"].as_str().unwrap().starts_with("tok_"), "{who}");
    assert_eq!(who["credential"]["expires_at"], api["expires_at"]);

    let (_, agent) = s.post(
        "/v1/tokens",
        "demo-admin",
        json!({"principal": "claude-alice", "agent_for": "alice"}),
    );
    let (_, who) = s.get("/v1/whoami", agent["token"].as_str().unwrap());
    assert_eq!(who["kind"], "agent");
    assert_eq!(who["on_behalf_of"], "alice");
    assert!(who["groups"].as_array().unwrap().contains(&json!("agents")), "{who}");
    assert!(who["credential"].get("expires_at").is_none(), "{who}");

    let (status, body) = s.get("/v1/whoami", "");
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthenticated");
    let (status, _) = s.get("/v1/whoami", "nope");
    assert_eq!(status, 401);
    // The answer never carries the token.
    let (_, text) = s.get("/v1/whoami", api["token"].as_str().unwrap());
    assert!(!text.to_string().contains(api["token"].as_str().unwrap()));
}

/// `GET /v1/whoami` as `token` from the loopback address `source`: its status and how long it took.
fn whoami_from(s: &Server, source: &str, token: &str) -> (u16, std::time::Duration) {
    let http = reqwest::blocking::Client::builder()
        .local_address(source.parse::<std::net::IpAddr>().unwrap())
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let status = http
        .get(format!("{}/v1/whoami", s.url))
        .bearer_auth(token)
        .send()
        .unwrap()
        .status()
        .as_u16();
    (status, started.elapsed())
}

/// `/v1/whoami` is no oracle for guessing tokens faster: its refusals are slowed down like every
/// other endpoint's, for the guessing source only; `/v1/login/options` reads nothing a caller
/// could exhaust (an answer held in memory), so a flood of it leaves it and others answering.
#[test]
fn whoami_guesses_are_slowed_for_the_guesser_only_and_login_options_stays_cheap() {
    let s = Server::start_with(
        &quickstart(),
        Some("[auth.throttle]\nfree_failures = 3\nmax_delay = \"1s\"\n"),
    );
    // The free failures (as identity.rs counts them), then each refusal waits, doubling.
    for n in 0..4 {
        assert_eq!(whoami_from(&s, "127.0.0.5", &format!("guess-{n}")).0, 401);
    }
    for expected_ms in [100u64, 200, 400] {
        let (status, took) = whoami_from(&s, "127.0.0.5", "guess-again");
        assert_eq!(status, 401);
        assert!(took >= std::time::Duration::from_millis(expected_ms), "{took:?}");
    }
    // A slowed source is slowed on every try, a stalled machine only now and then: the fastest
    // of three tries (the three failures fit in 127.0.0.6's free ones) is what must be quick.
    let fastest = |token: &str, expected: u16| {
        (0..3)
            .map(|_| {
                let (status, took) = whoami_from(&s, "127.0.0.6", token);
                assert_eq!(status, expected);
                took
            })
            .min()
            .unwrap()
    };
    let took = fastest("demo-alice", 200);
    assert!(took < std::time::Duration::from_millis(400), "{took:?}");
    let took = fastest("guess-elsewhere", 401);
    assert!(took < std::time::Duration::from_millis(400), "{took:?}");

    let started = std::time::Instant::now();
    for _ in 0..300 {
        assert_eq!(s.get("/v1/login/options", "").0, 200);
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(s.get("/v1/whoami", "demo-bob").0, 200);
    // A query string or a body changes nothing; a control character in the query is the
    // API's 422, as everywhere.
    assert_eq!(s.get("/v1/login/options?x=1", "").0, 200);
    assert_eq!(s.get("/v1/login/options?x=%00", "").0, 422);
}

#[test]
fn whoami_names_a_trusted_proxy_credential() {
    let s = Server::start_with(
        &quickstart(),
        Some("[auth.trusted_proxy]\nuser_header = \"X-Forwarded-User\"\ngroups_header = \"X-Forwarded-Groups\"\nsources = [\"127.0.0.1/32\"]\n"),
    );
    let who: Value = s
        .http
        .get(format!("{}/v1/whoami", s.url))
        .header("X-Forwarded-User", "grace")
        .header("X-Forwarded-Groups", "dev, auditors")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(who["principal"], "grace", "{who}");
    assert_eq!(who["roles"], json!(["user", "auditor"]));
    assert_eq!(who["credential"], json!({"kind": "trusted_proxy"}));
}

/// An Ed25519 key for a test issuer, as identity.rs makes them.
fn ed25519_key() -> (jsonwebtoken::EncodingKey, Value) {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).unwrap();
    let mut der = hex::decode("302e020100300506032b657004220420").unwrap();
    der.extend_from_slice(&seed);
    let key = jsonwebtoken::EncodingKey::from_ed_der(&der);
    let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, jsonwebtoken::Algorithm::EdDSA).unwrap();
    jwk.common.key_id = Some("k1".into());
    (key, json!({"keys": [jwk]}))
}

#[test]
fn login_options_with_and_without_cli_and_an_oidc_caller_in_whoami() {
    let plain = Server::start();
    let (status, options) = plain.get("/v1/login/options", "");
    assert_eq!(status, 200);
    assert_eq!(options, json!({"token": true, "oidc": null}));

    let (key, jwks) = ed25519_key();
    let dir = tempfile::tempdir().unwrap();
    let jwks_path = dir.path().join("jwks.json");
    std::fs::write(&jwks_path, jwks.to_string()).unwrap();
    let oidc = format!(
        "[[auth.oidc]]\nissuer = \"https://id.example.test\"\naudience = [\"jitgate\", \"jitgate-cli\"]\njwks_file = \"{}\"\nalgorithms = [\"EdDSA\"]\ngroups_claim = \"groups\"\n",
        jwks_path.display()
    );
    let sso = Server::start_with(
        &quickstart(),
        Some(&format!(
            "{oidc}\n[cli]\nsso_issuer = \"https://id.example.test\"\nsso_client_id = \"jitgate-cli\"\n"
        )),
    );
    let response = reqwest::blocking::get(format!("{}/v1/login/options", sso.url)).unwrap();
    assert_eq!(response.headers()["cache-control"], "max-age=60");
    let options: Value = response.json().unwrap();
    assert_eq!(
        options,
        json!({"token": true, "oidc": {"issuer": "https://id.example.test", "client_id": "jitgate-cli",
            "scopes": ["openid", "profile", "email", "offline_access"], "device": true}})
    );
    // The CLI says what the server offers, and never stores anything without a token.
    let me = Person::new();
    let (code, _, err) = me.run(&["login", "--url", &sso.url]);
    assert_eq!(code, 2);
    assert!(err.contains("single sign-on through https://id.example.test"), "{err}");
    let (code, _, err) = me.run(&["login", "--url", &plain.url]);
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!(
            "{} accepts only tokens: run jitgate login --url {} --token -",
            plain.url, plain.url
        )),
        "{err}"
    );
    assert!(me.files().is_empty());

    // An OIDC caller: the issuer and the token's expiry.
    let exp = chrono::Utc::now().timestamp() + 600;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some("k1".into());
    let jwt = jsonwebtoken::encode(
        &header,
        &json!({"iss": "https://id.example.test", "aud": "jitgate-cli", "sub": "frank", "groups": ["dev"],
                "iat": exp - 600, "exp": exp}),
        &key,
    )
    .unwrap();
    let (status, who) = sso.get("/v1/whoami", &jwt);
    assert_eq!(status, 200, "{who}");
    assert_eq!(who["principal"], "frank");
    assert_eq!(who["credential"]["kind"], "oidc");
    assert_eq!(who["credential"]["issuer"], "https://id.example.test");
    let expires = chrono::DateTime::parse_from_rfc3339(who["credential"]["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(expires.timestamp(), exp);

    // [cli] naming an issuer the server does not trust, or a client outside its audience,
    // refuses to start and names the key.
    let err = serve_refused(
        &quickstart(),
        &format!("{oidc}\n[cli]\nsso_issuer = \"https://elsewhere.example.test\"\nsso_client_id = \"jitgate-cli\"\n"),
    );
    assert!(
        err.contains("[cli] sso_issuer") && err.contains("elsewhere.example.test"),
        "{err}"
    );
    let err = serve_refused(
        &quickstart(),
        &format!("{oidc}\n[cli]\nsso_issuer = \"https://id.example.test\"\nsso_client_id = \"web\"\n"),
    );
    assert!(err.contains("[cli] sso_client_id"), "{err}");
    let err = serve_refused(
        &quickstart(),
        "[cli]\nsso_issuer = \"https://id.example.test\"\nsso_client_id = \"x\"\n",
    );
    assert!(err.contains("none is configured"), "{err}");
}

#[test]
fn ssh_write_puts_the_certificate_beside_the_key() {
    let s = Server::start();
    let me = Person::new();
    me.login(&s.url, "demo-alice", None);
    let filed = s.file(
        "demo-alice",
        json!({"resource": "bastion", "action": "login", "duration": "30m", "reason": "INC-9 logs"}),
    );
    let id = filed["id"].as_str().unwrap();
    let (status, approved) = s.post(&format!("/v1/requests/{id}/approve"), "demo-bob", json!({}));
    assert_eq!(status, 200, "{approved}");
    let grant = approved["grant"]["id"].as_str().unwrap().to_string();
    let ssh_dir = me.home.path().join(".ssh");
    std::fs::create_dir_all(&ssh_dir).unwrap();
    let key = ssh_dir.join("id_ed25519");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(made.success());
    let public = format!("{}.pub", key.display());

    // Without --write: printed, as before.
    let (code, printed, err) = me.run(&["ssh", &grant, "--key", &public]);
    assert_eq!(code, 0, "{err}");
    assert!(printed.starts_with("ssh-ed25519-cert-v01@openssh.com "), "{printed}");
    let (code, out, err) = me.run(&["ssh", &grant, "--key", &public, "--write"]);
    assert_eq!(code, 0, "{err}");
    let cert = ssh_dir.join("id_ed25519-cert.pub");
    assert_eq!(out.trim(), cert.display().to_string());
    assert_eq!(mode(&cert), 0o644);
    let text = std::fs::read_to_string(&cert).unwrap();
    assert!(
        text.starts_with("ssh-ed25519-cert-v01@openssh.com ") && text.ends_with('\n'),
        "{text}"
    );
    let listed = Command::new("ssh-keygen")
        .arg("-L")
        .arg("-f")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&listed.stdout).contains("alice"));
    // Written again over the old one; no temporary file left.
    assert_eq!(me.run(&["ssh", &grant, "--key", &public, "--write"]).0, 0);
    let left: Vec<_> = std::fs::read_dir(&ssh_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left.len(), 3, "{left:?}");

    // A -cert.pub that is a symbolic link is replaced by a file, not followed.
    let target = me.home.path().join("not-a-cert");
    std::fs::write(&target, "keep me\n").unwrap();
    std::fs::remove_file(&cert).unwrap();
    std::os::unix::fs::symlink(&target, &cert).unwrap();
    assert_eq!(me.run(&["ssh", &grant, "--key", &public, "--write"]).0, 0);
    assert!(!std::fs::symlink_metadata(&cert).unwrap().file_type().is_symlink());
    assert!(std::fs::read_to_string(&cert)
        .unwrap()
        .starts_with("ssh-ed25519-cert-v01@openssh.com "));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me\n");

    // The private key given by mistake is refused before anything is sent.
    let audit_before = s.audit_count();
    let (code, out, err) = me.run(&["ssh", &grant, "--key", key.to_str().unwrap(), "--write"]);
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(
        err.trim(),
        format!(
            "error: --key {}: that is a private key: pass the .pub file",
            key.display()
        )
    );
    assert!(!out.contains("PRIVATE") && !err.contains("PRIVATE"));
    assert_eq!(s.audit_count(), audit_before, "the private key reached the server");
}

/// Press TAB after `jitgate WORDS...` in bash: source the script `jitgate completion bash`
/// prints, with `path_first` ahead of PATH (where `jitgate` is looked up), call its function
/// and return the candidates, one a line.
fn bash_tab(me: &Person, path_first: &Path, words: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    let (code, script, err) = me.run(&["completion", "bash"]);
    assert_eq!(code, 0, "{err}");
    let file = me.home.path().join("jitgate.bash");
    std::fs::write(&file, script).unwrap();
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source '{}'; COMP_WORDS=({}); COMP_CWORD={}; _jitgate_from_server jitgate; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file.display(),
        quoted.join(" "),
        words.len() - 1
    );
    let path = format!("{}:{}", path_first.display(), std::env::var("PATH").unwrap_or_default());
    let mut command = Command::new("bash");
    command
        .args(["-c", &program])
        .env("PATH", path)
        .env("HOME", me.home.path())
        .env("XDG_CONFIG_HOME", me.home.path().join("xdg"));
    for (name, _) in std::env::vars() {
        if name.starts_with("JITGATE_") {
            command.env_remove(name);
        }
    }
    let out = command.envs(env.iter().copied()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// A quickstart server whose catalog also holds `resource` (TOML text appended to
/// resources.toml), and its policy's directory, kept while the test runs.
fn server_with_resource(resource: &str) -> (tempfile::TempDir, Server) {
    let policy = editable_quickstart();
    let catalog = policy.path().join("resources.toml");
    let mut text = std::fs::read_to_string(&catalog).unwrap();
    text.push_str(resource);
    std::fs::write(&catalog, text).unwrap();
    let s = Server::start_with_policy(policy.path());
    (policy, s)
}

#[test]
fn bash_completion_never_runs_what_the_server_names() {
    let me = Person::new();
    let traps = tempfile::tempdir().unwrap();
    let trap = |n: u32| traps.path().join(format!("PWNED{n}"));

    // The script alone: a `jitgate` that answers hostile words. They are offered or not, but
    // never run, expanded or globbed.
    let fake = tempfile::tempdir().unwrap();
    let fake_bin = fake.path().join("jitgate");
    std::fs::write(
        &fake_bin,
        format!(
            "#!/bin/sh\nif [ \"$1\" = __complete ]; then\n  printf '%s\\n' 'prod-db' '$(touch${{IFS}}{one})' '`touch {two}`' '*' 'prod-api'\n  exit 0\nfi\nexec {bin} \"$@\"\n",
            one = trap(1).display(),
            two = trap(2).display(),
            bin = BIN
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake_bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let offered = bash_tab(&me, fake.path(), &["jitgate", "request", "p"], &[]);
    assert_eq!(offered, vec!["prod-db", "prod-api"]);
    let offered = bash_tab(&me, fake.path(), &["jitgate", "request", ""], &[]);
    assert!(offered.contains(&"*".to_string()) && offered.len() == 5, "{offered:?}");
    assert!(
        !trap(1).exists() && !trap(2).exists(),
        "a completion ran the server's words"
    );

    // The real binary against a server whose catalog holds such a name: it is not even printed.
    let (_policy, s) = server_with_resource(&format!(
        "\n[[resource]]\nname = \"$(touch${{IFS}}{})\"\nkind = \"postgres\"\nlabels = {{ env = \"staging\", team = \"data\" }}\n",
        trap(3).display()
    ));
    let (status, listed) = s.get("/v1/resources", "demo-alice");
    assert_eq!(status, 200);
    assert!(
        listed.to_string().contains("PWNED3"),
        "the hostile name is requestable: {listed}"
    );
    assert_eq!(me.login(&s.url, "demo-alice", None).0, 0);
    let (_, out, _) = me.run(&["__complete", "resources"]);
    assert!(out.lines().any(|l| l == "staging-db"), "{out}");
    assert!(!out.contains("PWNED3"), "{out}");
    let bin_dir = Path::new(BIN).parent().unwrap();
    let offered = bash_tab(&me, bin_dir, &["jitgate", "request", "st"], &[]);
    assert_eq!(offered, vec!["staging-db"]);
    let offered = bash_tab(&me, bin_dir, &["jitgate", "request", ""], &[]);
    assert!(offered.contains(&"prod-db".to_string()), "{offered:?}");
    assert!(!trap(3).exists(), "a completion ran the server's words");
}

#[test]
fn completion_never_hangs_a_tab() {
    let me = Person::new();
    // A server that accepts and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = format!("http://{}", listener.local_addr().unwrap());
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            keep.lock().unwrap().push(stream);
        }
    });
    for env in [
        vec![("JITGATE_URL", silent.as_str()), ("JITGATE_TOKEN", "demo-alice")],
        // A token command that takes its time is not run by a TAB at all.
        vec![
            ("JITGATE_URL", silent.as_str()),
            ("JITGATE_TOKEN_COMMAND", "sleep 30; echo demo-alice"),
        ],
        vec![("JITGATE_TOKEN_COMMAND", "sleep 30; echo demo-alice")],
    ] {
        for what in ["requests", "resources"] {
            // The CLI gives a completion COMPLETION_TIMEOUT (2 s, crates/edges/cli/src/shell.rs)
            // of its own; starting and ending the debug binary comes on top, and takes longer
            // on a loaded machine. Measure that overhead just before, with a run of the same
            // binary that waits for nothing, rather than guessing it.
            let started = std::time::Instant::now();
            let (code, _, _) = me.run_full(&["--version"], &env, None);
            let baseline = started.elapsed();
            assert_eq!(code, 0);
            let started = std::time::Instant::now();
            let (code, out, err) = me.run_full(&["__complete", what], &env, None);
            let took = started.elapsed();
            assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""), "{env:?}");
            let completion_timeout = std::time::Duration::from_secs(2);
            let slack = std::time::Duration::from_millis(500);
            // Never tighter than the 3 s the test allowed before it measured the overhead: a
            // stall during the wait that the quick run did not meet still fits.
            let bound = (completion_timeout + baseline + slack).max(std::time::Duration::from_secs(3));
            assert!(
                took < bound,
                "{env:?}: {took:?} (a run that waits for nothing took {baseline:?})"
            );
        }
    }
}

#[test]
fn login_refuses_cleartext_http_to_another_machine() {
    let me = Person::new();
    for url in ["http://jit.invalid", "http://10.255.255.1:7400"] {
        let (code, out, err) = me.login(url, "demo-alice", None);
        assert_eq!(code, 2, "{out}{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("http:// would send the token in clear text") && err.contains("--insecure-http"),
            "{err}"
        );
        assert!(!err.contains("cannot reach") && !err.contains("demo-alice"), "{err}");
    }
    assert!(me.files().is_empty(), "{:?}", me.files());
    // --insecure-http lets it through (here to a name that does not resolve).
    let (code, _, err) = me.run(&[
        "login",
        "--url",
        "http://jit.invalid",
        "--token",
        "demo-alice",
        "--insecure-http",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot reach"), "{err}");
    assert!(me.files().is_empty());
    // Something that is not a jitgate server is named as such, not "error decoding".
    let other = Recorder::start();
    let (code, _, err) = me.run(&["login", "--url", &other.url]);
    assert_eq!(code, 2);
    assert!(err.contains("answered 401 Unauthorized: not a jitgate server"), "{err}");
    // This machine, by name or address, needs no flag.
    let s = Server::start();
    let port = s.url.rsplit(':').next().unwrap();
    let (code, out, err) = me.login(&format!("http://localhost:{port}"), "demo-alice", None);
    assert_eq!(code, 0, "{out}{err}");
}

/// Python that the pty tests' drivers start with: `pump(until, limit)` reads what the
/// terminal `fd` shows into `seen` until `until` (bytes, or a test of what was seen) holds;
/// with None, until `limit` seconds passed or the terminal closed.
const PTY_PUMP: &str = r#"
import os, pty, select, sys, threading, time
seen = b""
def pump(until, limit=10):
    global seen
    done = until if callable(until) else (lambda s: until is not None and until in s)
    end = time.time() + limit
    while time.time() < end and not done(seen):
        if not select.select([fd], [], [], 0.2)[0]:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
"#;

/// Runs the Python `driver` with `args` as `me`, with none of the caller's JITGATE_ settings.
fn python(me: &Person, driver: &str, args: &[&str]) -> std::process::Output {
    let mut command = Command::new("python3");
    command
        .arg("-c")
        .arg(driver)
        .args(args)
        .env("HOME", me.home.path())
        .env("XDG_CONFIG_HOME", me.home.path().join("xdg"));
    for (name, _) in std::env::vars() {
        if name.starts_with("JITGATE_") && name != "JITGATE_LOG" {
            command.env_remove(name);
        }
    }
    command.output().unwrap()
}

/// What the terminal showed to `driver`, which runs after `PTY_PUMP`.
fn in_terminal(me: &Person, driver: &str, args: &[&str]) -> String {
    let out = python(me, &format!("{PTY_PUMP}{driver}"), args);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_token_typed_at_a_terminal_is_not_echoed() {
    let s = Server::start();
    let me = Person::new();
    // A real terminal (a pseudo-terminal from Python's pty module): what it shows is what a
    // person at it would see.
    let driver = r#"
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
pump(b"Token", 10)
os.write(fd, b"demo-alice\r")
pump(b"Signed in", 10)
os.kill(pid, 9) if b"Signed in" not in seen else None
os.waitpid(pid, 0)
sys.stdout.write(seen.decode("utf-8", "replace"))
"#;
    let screen = in_terminal(&me, driver, &[BIN, "login", "--url", &s.url, "--token", "-"]);
    assert!(screen.contains("Token (not shown): "), "{screen}");
    assert!(
        screen.contains("Signed in to") && screen.contains("as alice"),
        "{screen}"
    );
    assert!(!screen.contains("demo-alice"), "the token was echoed: {screen}");
    assert_eq!(mode(&me.credential("default")), 0o600);
}

/// A shell the completion tests run, present or the test says how to get it.
fn shell_program(name: &str) -> &str {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{name} is missing: run scripts/test.sh as root (it installs zsh and fish), or apt-get install zsh fish"
    );
    name
}

/// Run `program` in `shell` (`zsh -f -c` or `fish --no-config -c`) as `me`, with `path_first`
/// ahead of PATH (where `jitgate` is looked up) and no JITGATE_ variable; its standard output.
fn in_shell(me: &Person, shell: &str, path_first: &Path, program: &str) -> String {
    let path = format!("{}:{}", path_first.display(), std::env::var("PATH").unwrap_or_default());
    let mut command = Command::new(shell_program(shell));
    match shell {
        "zsh" => command.args(["-f", "-c", program]),
        _ => command.args(["--no-config", "-c", program]),
    };
    command
        .env("PATH", path)
        .env("HOME", me.home.path())
        .env("XDG_CONFIG_HOME", me.home.path().join("xdg"))
        .env("XDG_DATA_HOME", me.home.path().join("data"))
        .current_dir(me.home.path());
    for (name, _) in std::env::vars() {
        if name.starts_with("JITGATE_") {
            command.env_remove(name);
        }
    }
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{shell} -c {program}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The script `jitgate completion SHELL` prints, saved in `me`'s home; its path.
fn completion_script(me: &Person, shell: &str) -> PathBuf {
    let (code, script, err) = me.run(&["completion", shell]);
    assert_eq!(code, 0, "{err}");
    let file = me.home.path().join(format!("jitgate.{shell}"));
    std::fs::write(&file, script).unwrap();
    file
}

/// Press TAB after `line` in fish: `complete -C` lists what fish would offer, one a line
/// (a candidate, then a tab and its description when it has one).
fn fish_tab(me: &Person, path_first: &Path, line: &str) -> Vec<String> {
    let script = completion_script(me, "fish");
    let program = format!("source '{}'; complete -C '{line}'", script.display());
    in_shell(me, "fish", path_first, &program)
        .lines()
        .map(|l| l.split('\t').next().unwrap_or("").to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// zsh's function for the server's words, called as `_arguments` calls it (compadd's options
/// first), with `compadd` replaced by one that prints the words it is handed (and the user's
/// options that would glob or split a word turned on).
fn zsh_words(me: &Person, path_first: &Path, what: &str) -> Vec<String> {
    let script = completion_script(me, "zsh");
    let program = format!(
        "compdef() {{ : }}; compadd() {{ local i=${{argv[(i)-a]}}; print -rl -- \"${{(@P)argv[i+1]}}\" }}; source '{}'; setopt globsubst shwordsplit; _jitgate_server_{what} -J group -X explanation; true",
        script.display()
    );
    in_shell(me, "zsh", path_first, &program)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Presses TAB in a real interactive zsh (in a pseudo-terminal from zsh's own zpty module)
/// after `$2`, with compinit and the completion script in the directory `$1` (on fpath), and
/// prints each candidate zsh would offer (as quoted for the command line), one a line. The
/// `compadd` wrapper only records what the completion functions add.
const ZSH_TAB: &str = r#"
zmodload zsh/zpty || exit 2
zpty z zsh -f -i
zpty -w z "PS1=''; RPROMPT=''; fpath=('$1' \$fpath); autoload -U compinit; compinit -u -d '$1/zcompdump'"
zpty -w z "zstyle ':completion:*' list-grouped false; zstyle ':completion:*' insert-tab false"
zpty -w z 'compadd () {
  if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then builtin compadd "$@"; return $?; fi
  typeset -a __hits
  builtin compadd -A __hits "$@"
  local ret=$?
  (( $#__hits )) && print -rl -- "<HIT>"${^__hits}
  return ret
}'
zpty -w z "bindkey '^I' complete-word"
zpty -w z "print -r -- '<READY>'"
zpty -r z line '*<READY>*' || exit 3
zpty -w z "print -r -- '<SET>'"
zpty -r z line '*<SET>*' || exit 4
zpty -n -w z "$2"$'\t'
out=""
integer quiet=0
while (( quiet < 12 )); do
  if zpty -r -t z chunk 2>/dev/null; then out+=$chunk; quiet=0; else sleep 0.2; (( quiet++ )); fi
done
zpty -d z
print -r -- "$out" | tr -d '\r' | grep -o '<HIT>.*' | sed 's/<HIT>//'
true
"#;

/// Press TAB after `line` in a real zsh with `jitgate completion zsh` loaded: the candidates.
fn zsh_tab(me: &Person, path_first: &Path, line: &str) -> Vec<String> {
    let (code, script, err) = me.run(&["completion", "zsh"]);
    assert_eq!(code, 0, "{err}");
    let fpath = me.home.path().join("zsh-functions");
    std::fs::create_dir_all(&fpath).unwrap();
    std::fs::write(fpath.join("_jitgate"), script).unwrap();
    let harness = me.home.path().join("zsh-tab.zsh");
    std::fs::write(&harness, ZSH_TAB).unwrap();
    let program = format!("source '{}' '{}' '{line}'", harness.display(), fpath.display());
    in_shell(me, "zsh", path_first, &program)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn zsh_and_fish_complete_from_the_server_and_never_run_its_words() {
    let me = Person::new();
    // Both scripts load: zsh and fish parse them without running anything.
    let zsh = completion_script(&me, "zsh");
    let check = Command::new(shell_program("zsh")).arg("-n").arg(&zsh).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let fish = completion_script(&me, "fish");
    let check = Command::new(shell_program("fish"))
        .arg("--no-execute")
        .arg(&fish)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    // zsh: the internal command is not among the words offered; the arguments that take ids
    // and names ask the server.
    let text = std::fs::read_to_string(&zsh).unwrap();
    assert!(!text.lines().any(|l| l.starts_with("'__complete:")), "{text}");
    assert_eq!(text.matches("':id:_jitgate_server_requests' \\").count(), 5, "{text}");
    assert_eq!(
        text.matches("':resource:_jitgate_server_resources' \\").count(),
        3,
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("'--request=[") && l.ends_with(":RESOURCE:_jitgate_server_resources' \\")),
        "{text}"
    );

    // A real server: fish offers its pending request ids, its resource names, and for
    // `ssh --request` the resources too; `jitgate <TAB>` never offers __complete.
    let s = Server::start();
    let filed = s.file(
        "demo-alice",
        json!({"resource": "prod-db", "action": "read", "duration": "30m", "reason": "INC-1 look"}),
    );
    let request_id = filed["id"].as_str().unwrap().to_string();
    assert_eq!(me.login(&s.url, "demo-alice", None).0, 0);
    let bin_dir = Path::new(BIN).parent().unwrap();
    let offered = fish_tab(&me, bin_dir, "jitgate show ");
    assert!(offered.contains(&request_id), "{offered:?}");
    // Only the first argument is an id: after an option's value (`ok` is --comment's) it is
    // still to come, after an id it is not.
    let offered = fish_tab(&me, bin_dir, "jitgate approve --comment ok ");
    assert!(offered.contains(&request_id), "{offered:?}");
    let offered = fish_tab(&me, bin_dir, &format!("jitgate approve {request_id} "));
    assert!(
        !offered.contains(&request_id),
        "only the first argument is an id: {offered:?}"
    );
    let offered = fish_tab(&me, bin_dir, "jitgate approve --comment ");
    assert!(
        !offered.contains(&request_id),
        "an option's value is no id: {offered:?}"
    );
    let offered = fish_tab(&me, bin_dir, "jitgate request ");
    assert!(
        offered.contains(&"prod-db".to_string()) && offered.contains(&"bastion".to_string()),
        "{offered:?}"
    );
    let offered = fish_tab(&me, bin_dir, "jitgate ssh --request ");
    assert!(offered.contains(&"bastion".to_string()), "{offered:?}");
    // bash too, for `ssh --request`.
    let offered = bash_tab(&me, bin_dir, &["jitgate", "ssh", "--request", "bas"], &[]);
    assert_eq!(offered, ["bastion"]);
    let offered = fish_tab(&me, bin_dir, "jitgate ");
    assert!(offered.contains(&"whoami".to_string()), "{offered:?}");
    assert!(!offered.iter().any(|w| w.contains("__complete")), "{offered:?}");
    // zsh's function gets the same words from the real binary, and a real zsh offers them.
    let words = zsh_words(&me, bin_dir, "requests");
    assert!(words.contains(&request_id), "{words:?}");
    let offered = zsh_tab(&me, bin_dir, "jitgate show ");
    assert!(offered.contains(&request_id), "{offered:?}");
    let offered = zsh_tab(&me, bin_dir, "jitgate ssh --request ");
    assert!(offered.contains(&"bastion".to_string()), "{offered:?}");
    let offered = zsh_tab(&me, bin_dir, "jitgate ");
    assert!(offered.contains(&"whoami".to_string()), "{offered:?}");
    assert!(!offered.iter().any(|w| w.contains("__complete")), "{offered:?}");

    // A `jitgate` that answers hostile words: offered as plain words or not at all, never run.
    let traps = tempfile::tempdir().unwrap();
    let trap = |n: u32| traps.path().join(format!("PWNED{n}"));
    let fake = tempfile::tempdir().unwrap();
    let fake_bin = fake.path().join("jitgate");
    std::fs::write(
        &fake_bin,
        format!(
            "#!/bin/sh\nif [ \"$1\" = __complete ]; then\n  printf '%s\\n' 'req_1' '$(touch {one})' '`touch {two}`' '*' '(touch {three})' 'req_2'\n  exit 0\nfi\nexec {bin} \"$@\"\n",
            one = trap(1).display(),
            two = trap(2).display(),
            three = trap(3).display(),
            bin = BIN
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake_bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let offered = fish_tab(&me, fake.path(), "jitgate show ");
    assert!(
        offered.contains(&"req_1".to_string()) && offered.contains(&"req_2".to_string()),
        "{offered:?}"
    );
    let offered = fish_tab(&me, fake.path(), "jitgate show req");
    assert_eq!(offered, ["req_1", "req_2"]);
    let offered = zsh_tab(&me, fake.path(), "jitgate show ");
    assert_eq!(
        offered,
        [
            "req_1".to_string(),
            format!("\\$\\(touch\\ {}\\)", trap(1).display()),
            format!("\\`touch\\ {}\\`", trap(2).display()),
            "\\*".to_string(),
            format!("\\(touch\\ {}\\)", trap(3).display()),
            "req_2".to_string(),
        ],
        "zsh offers each word quoted, as typed text"
    );
    let words = zsh_words(&me, fake.path(), "requests");
    assert_eq!(
        words,
        [
            "req_1".to_string(),
            format!("$(touch {})", trap(1).display()),
            format!("`touch {}`", trap(2).display()),
            "*".to_string(),
            format!("(touch {})", trap(3).display()),
            "req_2".to_string(),
        ]
    );
    assert!(
        !trap(1).exists() && !trap(2).exists() && !trap(3).exists(),
        "a completion ran the server's words"
    );

    // The real binary against a catalog holding such a name: not even printed.
    let (_policy, hostile) = server_with_resource(&format!(
        "\n[[resource]]\nname = \"$(touch${{IFS}}{})\"\nkind = \"postgres\"\nlabels = {{ env = \"staging\" }}\n",
        trap(4).display()
    ));
    let (_, listed) = hostile.get("/v1/resources", "demo-alice");
    assert!(
        listed.to_string().contains("PWNED4"),
        "the hostile name is requestable: {listed}"
    );
    let me = Person::new();
    assert_eq!(me.login(&hostile.url, "demo-alice", None).0, 0);
    for line in ["jitgate request ", "jitgate ssh --request "] {
        let offered = fish_tab(&me, bin_dir, line);
        assert!(offered.contains(&"staging-db".to_string()), "{line}: {offered:?}");
        assert!(!offered.iter().any(|w| w.contains("PWNED")), "{line}: {offered:?}");
    }
    assert!(!zsh_words(&me, bin_dir, "resources").iter().any(|w| w.contains("PWNED")));
    assert!(!trap(4).exists(), "a completion ran the server's words");
}

/// Drives `jitgate login --token -` in a real terminal (Python's pty module), as the scenario
/// `argv[1]` says; prints what the terminal showed, with the driver's own notes in `<...>`.
/// Runs after `PTY_PUMP`.
const PROMPT_DRIVER: &str = r#"
import os, pty, re, select, signal, subprocess, sys, termios, time
mode, binary, url = sys.argv[1], sys.argv[2], sys.argv[3]
login = [binary, "login", "--url", url, "--token", "-"]
if mode == "suspend":
    # A shell with job control: jitgate in a process group of its own, in the foreground.
    pid, fd = pty.fork()
    if pid == 0:
        r, w = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(w)
            os.setpgid(0, 0)
            os.read(r, 1)
            os.execv(binary, login)
        os.close(r)
        try:
            os.setpgid(child, child)
        except OSError:
            pass
        signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        os.tcsetpgrp(0, child)
        os.write(w, b"x")
        os.write(1, ("<PID %d>\r\n" % child).encode())
        while True:
            _, status = os.waitpid(child, os.WUNTRACED)
            if os.WIFSTOPPED(status):
                os.write(1, b"<STOPPED>\r\n")
                continue
            break
        os.write(1, ("<RC %d>\r\n" % os.waitstatus_to_exitcode(status)).encode())
        os._exit(0)
else:
    pid, fd = pty.fork()
    if pid == 0:
        after = 'echo "rc=$?"; stty -a'
        if mode == "paste":
            after = 'echo "rc=$?"; stty -a; stty -icanon min 0 time 10; echo "LEFT<$(dd bs=1 count=64 2>/dev/null)>"'
        os.execv("/bin/sh", ["sh", "-c", '"$0" login --url "$1" --token -; ' + after, binary, url])
def jitgate_pid():
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return int(out[0])
pump(lambda s: b"Token" in s)
if mode in ("TERM", "HUP"):
    os.write(fd, b"demo-al")
    time.sleep(0.3)
    os.kill(jitgate_pid(), getattr(signal, "SIG" + mode))
    pump(lambda s: b"rc=" in s)
    pump(lambda s: False, 2)
elif mode == "paste":
    data = b"a" * (64 * 1024 + 300)
    while data:
        data = data[os.write(fd, data):]
    pump(lambda s: b"LEFT<" in s, 20)
    pump(lambda s: False, 3)
elif mode == "suspend":
    os.write(fd, b"demo-")
    time.sleep(0.3)
    os.write(fd, b"\x1a")
    pump(lambda s: b"<STOPPED>" in s)
    echo = termios.tcgetattr(fd)[3] & termios.ECHO
    seen += ("<ECHO-WHILE-STOPPED %d>" % (1 if echo else 0)).encode()
    child = int(re.search(rb"<PID (\d+)>", seen).group(1))
    os.kill(child, signal.SIGCONT)
    pump(lambda s: s.count(b"Token (not shown)") >= 2)
    os.write(fd, b"alice\r")
    pump(lambda s: b"<RC " in s)
os.waitpid(pid, 0)
sys.stdout.write(seen.decode("utf-8", "replace"))
"#;

/// What the terminal showed in `PROMPT_DRIVER`'s scenario `mode`.
fn prompt_scenario(me: &Person, url: &str, mode: &str) -> String {
    let out = python(me, &format!("{PTY_PUMP}{PROMPT_DRIVER}"), &[mode, BIN, url]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The terminal modes `stty -a` printed after `marker` restored: echo, icanon, isig.
fn assert_restored(screen: &str, marker: &str) {
    let settings: Vec<&str> = screen
        .split_once(marker)
        .map(|(_, after)| after)
        .unwrap_or_default()
        .split_whitespace()
        .map(|w| w.trim_end_matches(';'))
        .collect();
    for mode in ["echo", "icanon", "isig"] {
        assert!(
            settings.contains(&mode) && !settings.contains(&format!("-{mode}").as_str()),
            "{mode} was not restored: {screen}"
        );
    }
}

#[test]
fn the_hidden_prompt_restores_the_terminal_on_signals_suspends_and_drops_a_long_paste() {
    let s = Server::start();
    let me = Person::new();
    // SIGTERM (a script's timeout, a closing session) and SIGHUP at the prompt: the terminal
    // gets its echo back before the process ends.
    for signal in ["TERM", "HUP"] {
        let screen = prompt_scenario(&me, &s.url, signal);
        assert!(screen.contains("interrupted: nothing was stored"), "{signal}: {screen}");
        assert!(screen.contains("rc=130"), "{signal}: {screen}");
        assert!(!screen.contains("demo-al"), "the token was echoed: {screen}");
        assert_restored(&screen, "rc=130");
    }
    assert!(me.files().is_empty(), "{:?}", me.files());

    // Ctrl-Z stops jitgate with the echo back on; once continued the prompt shows again and
    // what was typed before stays: the key is no part of the token.
    let screen = prompt_scenario(&me, &s.url, "suspend");
    assert!(screen.contains("<STOPPED>"), "{screen}");
    assert!(screen.contains("<ECHO-WHILE-STOPPED 1>"), "{screen}");
    assert_eq!(screen.matches("Token (not shown): ").count(), 2, "{screen}");
    assert!(
        screen.contains("Signed in to") && screen.contains("as alice"),
        "{screen}"
    );
    assert!(screen.contains("<RC 0>"), "{screen}");
    assert!(
        !screen.contains("demo-") && !screen.contains("alice\r"),
        "the token was echoed: {screen}"
    );

    // A paste longer than any token: refused, and its rest is not left for the shell to read.
    let me = Person::new();
    let screen = prompt_scenario(&me, &s.url, "paste");
    assert!(screen.contains("more than 65536 bytes is no token"), "{screen}");
    assert!(
        screen.contains("LEFT<>"),
        "the rest of the paste was left in the terminal: {screen}"
    );
    assert!(screen.contains("rc=2"), "{screen}");
    assert_restored(&screen, "rc=2");
    assert!(me.files().is_empty(), "{:?}", me.files());
}

#[test]
fn fish_completes_the_first_argument_after_an_option_and_its_value() {
    let me = Person::new();
    let s = Server::start();
    assert_eq!(me.login(&s.url, "demo-alice", None).0, 0);
    let bin_dir = Path::new(BIN).parent().unwrap();
    for line in [
        "jitgate request --for 30m ",
        "jitgate request --reason 'INC 1' --wait ",
        "jitgate gate --timeout 5m ",
        "jitgate gate --url URL --reason x ",
        "jitgate run --for 1h ",
        "jitgate --output json request --for=30m ",
    ] {
        let line = line.replace("URL", &s.url);
        let offered = fish_tab(&me, bin_dir, &line.replace('\'', "\\'"));
        assert!(
            offered.contains(&"prod-db".to_string()) && offered.contains(&"bastion".to_string()),
            "{line}: {offered:?}"
        );
    }
    // Not once the resource is there, nor for an option's value.
    for line in [
        "jitgate request prod-db ",
        "jitgate request --for ",
        "jitgate gate --timeout 5m prod-db --for 1h ",
    ] {
        let offered = fish_tab(&me, bin_dir, line);
        assert!(!offered.contains(&"bastion".to_string()), "{line}: {offered:?}");
    }
}

#[test]
fn ctrl_c_at_the_hidden_token_prompt_gives_the_terminal_its_echo_back() {
    let s = Server::start();
    let me = Person::new();
    // A real terminal (Python's pty module) running a shell: jitgate prompts, the person types
    // half a token and presses Ctrl-C, then the same terminal's settings are printed by stty.
    let driver = r#"
pid, fd = pty.fork()
if pid == 0:
    os.execv("/bin/sh", ["sh", "-c", '"$0" login --url "$1" --token -; echo "rc=$?"; stty -a', sys.argv[1], sys.argv[2]])
pump(b"Token", 10)
os.write(fd, b"demo-al")
time.sleep(0.3)
os.write(fd, b"\x03")
pump(b"rc=", 10)
pump(None, 2)
os.waitpid(pid, 0)
sys.stdout.write(seen.decode("utf-8", "replace"))
"#;
    let screen = in_terminal(&me, driver, &[BIN, &s.url]);
    assert!(screen.contains("Token (not shown): "), "{screen}");
    assert!(screen.contains("interrupted: nothing was stored"), "{screen}");
    assert!(screen.contains("rc=130"), "{screen}");
    assert!(!screen.contains("demo-al"), "the token was echoed: {screen}");
    assert_restored(&screen, "rc=130");
    assert!(me.files().is_empty(), "{:?}", me.files());
}

#[test]
fn logout_removes_the_credential_even_when_its_lock_is_refused_and_locks_no_empty_profile() {
    let s = Server::start();
    let me = Person::new();
    // A profile that holds nothing: nothing removed, no lock file made for it.
    let (code, out, err) = me.run(&["logout", "--profile", "empty"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.trim(), "Profile empty holds no credential: nothing to remove");
    assert!(
        me.files().iter().all(|f| !f.to_string_lossy().contains("empty")),
        "{:?}",
        me.files()
    );

    // A config directory others may read: the lock is refused, the token is removed anyway,
    // and the one line says so. (The profile is named: which one is active is in the config,
    // which is not read from a loose directory.)
    let (code, out, err) = me.login(&s.url, "demo-alice", None);
    assert_eq!(code, 0, "{out}{err}");
    std::fs::set_permissions(me.config_dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, out, err) = me.run(&["logout", "--profile", "default"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.starts_with(&format!(
            "Signed out of profile default: removed {}; warning: removed without its lock (",
            me.credential("default").display()
        )) && out
            .trim_end()
            .ends_with("run jitgate logout again once no other jitgate runs"),
        "{out}"
    );
    assert!(!me.credential("default").exists());
}

#[test]
fn ctrl_z_at_the_hidden_prompt_stops_the_whole_pipeline_as_the_terminal_would() {
    let s = Server::start();
    let me = Person::new();
    // bash with job control (-m) in a real terminal runs `jitgate login | cat` as one job:
    // Ctrl-Z must stop both, so that bash sees the job stopped and goes on (status 148).
    let driver = r#"
pid, fd = pty.fork()
if pid == 0:
    os.execv("/bin/bash", ["bash", "--norc", "--noprofile", "-m", "-c", sys.argv[1]])
pump(b"Token", 10)
os.write(fd, b"\x1a")
pump(b"status=", 10)
try:
    os.kill(pid, 9)
except OSError:
    pass
os.waitpid(pid, 0)
sys.stdout.write(seen.decode("utf-8", "replace"))
"#;
    let pipeline = format!(
        "'{}' login --url '{}' --token - | cat; echo \"status=$?\"; kill -9 %1",
        BIN, s.url
    );
    let screen = in_terminal(&me, driver, &[&pipeline]);
    assert!(screen.contains("Token (not shown): "), "{screen}");
    assert!(screen.contains("status=148"), "the job was not seen stopped: {screen}");
    assert!(!me.credential("default").exists());
}

#[test]
fn the_rest_of_a_paste_too_long_for_a_token_never_reaches_the_shell() {
    let s = Server::start();
    let me = Person::new();
    // A paste of 100 KiB at the hidden prompt, then what the shell reads after jitgate: the
    // terminal feeds a paste 4 KiB at a time, so a flush alone leaves the rest for the shell.
    let driver = r#"
pid, fd = pty.fork()
if pid == 0:
    os.execv("/bin/bash", ["bash", "--norc", "--noprofile", "-c", sys.argv[1]])
pump(b"Token", 10)
def paste():
    try:
        os.write(fd, b"a" * 100000 + b"\r" + (b"a" * 100 + b"\r") * 20 + b"echo PWNED\r")
    except OSError:
        pass
threading.Thread(target=paste, daemon=True).start()
pump(b"after=", 20)
try:
    os.kill(pid, 9)
except OSError:
    pass
sys.stdout.write(seen.decode("utf-8", "replace"))
sys.stdout.flush()
os._exit(0)
"#;
    let script = format!(
        "'{}' login --url '{}' --token -; echo \"jitgate=$?\"; IFS= read -r -t 3 line; echo \"after=[${{#line}}]\"",
        BIN, s.url
    );
    let screen = in_terminal(&me, driver, &[&script]);
    assert!(screen.contains("is no token; nothing was stored"), "{screen}");
    assert!(screen.contains("jitgate=2"), "{screen}");
    assert!(
        screen.contains("after=[0]"),
        "the shell read the rest of the paste: {screen}"
    );
    assert!(!screen.contains("PWNED"), "{screen}");
    assert!(!me.credential("default").exists());
}
