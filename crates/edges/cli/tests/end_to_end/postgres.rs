//! The PostgreSQL role provider against a real PostgreSQL server on loopback (started by
//! `scripts/test-postgres.sh`) and the real jitgate binary: a grant becomes a login role that
//! works, its credentials are handed out once, an extension moves its `VALID UNTIL`, and at its
//! end (revocation or expiry) the role is gone and its open session is cut; kill -9 while the
//! target is down is finished after the restart.

use crate::support::postgres::{Postgres, Session, SUPERUSER_PASSWORD};
use crate::support::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ADMIN_PASSWORD: &str = "jitgate-admin-password";

/// A target database `app` as a DBA would prepare it for jitgate: an admin role with
/// CREATEROLE and pg_signal_backend (not a superuser), a read role and a scratch-schema role.
fn target() -> Postgres {
    let pg = Postgres::start();
    pg.admin("postgres", "CREATE DATABASE app");
    pg.admin(
        "app",
        &format!(
            "CREATE ROLE jitgate_admin LOGIN CREATEROLE PASSWORD '{ADMIN_PASSWORD}';
             GRANT pg_signal_backend TO jitgate_admin;
             CREATE ROLE app_read NOLOGIN;
             CREATE ROLE app_scratch NOLOGIN;
             GRANT app_read, app_scratch TO jitgate_admin WITH ADMIN OPTION;
             CREATE TABLE orders (id int PRIMARY KEY, total int);
             INSERT INTO orders VALUES (1, 42);
             GRANT SELECT ON orders TO app_read;
             CREATE SCHEMA scratch;
             GRANT USAGE, CREATE ON SCHEMA scratch TO app_scratch;"
        ),
    );
    pg
}

fn policy() -> tempfile::TempDir {
    quickstart_with_workflows(
        r#"
[[workflow]]
resource = "app-db"
action = "read"
requesters = ["dev"]
auto_approve = true
max_duration = "1h"
extension = { max_times = 1 }
providers = ["app-pg"]
postgres = { roles = ["app_read", "app_scratch"] }
"#,
    )
}

fn server(pg: &Postgres, policy: &tempfile::TempDir) -> Server {
    let config = format!(
        "[[providers]]\nname = \"app-pg\"\nkind = \"postgres\"\nurl = \"{}\"\ntimeout = \"3s\"\n",
        pg.url("jitgate_admin", ADMIN_PASSWORD, "app")
    );
    Server::start_with(policy.path(), Some(&config))
}

fn file_grant(s: &Server, duration: &str) -> (String, chrono::DateTime<chrono::Utc>) {
    let r = s.file(
        "demo-alice",
        json!({"resource": "app-db", "action": "read", "duration": duration, "reason": "monthly report"}),
    );
    assert_eq!(r["status"], "approved", "{r}");
    (
        r["grant"]["id"].as_str().unwrap().to_string(),
        time(&r["grant"]["expires_at"]),
    )
}

fn time(v: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc)
}

fn provider_status(s: &Server, grant: &str) -> Value {
    let (status, grants) = s.get("/v1/grants?principal=alice&limit=100", "demo-alice");
    assert_eq!(status, 200, "{grants}");
    grants["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == grant)
        .map(|g| g["providers"][0].clone())
        .unwrap_or(Value::Null)
}

fn wait_for_status(s: &Server, grant: &str, wanted: &str) {
    wait_until(&format!("provider status {wanted}"), || {
        provider_status(s, grant)["status"] == wanted
    });
}

/// The login role of a grant, as the target sees it: (can log in, valid until as Unix
/// seconds, member of), or None when there is no such role.
fn role(pg: &Postgres, name: &str) -> Option<(bool, i64, String)> {
    let row = pg.admin(
        "app",
        &format!(
            "SELECT r.rolcanlogin, floor(extract(epoch FROM r.rolvaliduntil))::bigint,
                    (SELECT string_agg(m.rolname, ',' ORDER BY m.rolname) FROM pg_auth_members a
                     JOIN pg_roles m ON m.oid = a.roleid WHERE a.member = r.oid)
             FROM pg_roles r WHERE r.rolname = '{name}'"
        ),
    );
    if row.is_empty() {
        return None;
    }
    let parts: Vec<&str> = row.split('|').collect();
    Some((parts[0] == "t", parts[1].parse().unwrap(), parts[2].to_string()))
}

fn sessions_of(pg: &Postgres, name: &str) -> usize {
    pg.admin(
        "app",
        &format!("SELECT count(*) FROM pg_stat_activity WHERE usename = '{name}'"),
    )
    .parse()
    .unwrap()
}

/// Watches, from inside PostgreSQL, for the login role `name` to be dropped: one statement
/// looks every 10 ms (each look with a fresh snapshot) until the role is gone, then reads the
/// database server's clock. The moment is the drop's to within 10 ms whatever the load on the
/// test machine, where a psql started for each look (as [`role`] does) takes 0.1-0.6 s under
/// load, a delay a bar of a second or two cannot absorb.
struct RoleWatch {
    child: std::process::Child,
    name: String,
}

impl RoleWatch {
    /// Starts watching, and returns once the watch is running (so that it cannot miss a drop
    /// that comes right after).
    fn start(pg: &Postgres, name: &str) -> RoleWatch {
        let application = format!("watch_{name}");
        let sql = format!(
            "DO $$ DECLARE give_up timestamptz := clock_timestamp() + interval '60 s'; BEGIN
               WHILE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{name}')
                     AND clock_timestamp() < give_up LOOP
                 PERFORM pg_sleep(0.01);
               END LOOP;
             END $$;
             SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint,
                    EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{name}');"
        );
        let mut child = std::process::Command::new("psql")
            .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(pg.url("postgres", SUPERUSER_PASSWORD, "app"))
            .args(["-c", &sql])
            .env("PGAPPNAME", &application)
            .env("PGCONNECT_TIMEOUT", "10")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run psql");
        // Running, or already done (the role gone before it looked: the time it reads is then
        // later than the drop, never earlier).
        wait_until("the role watch runs", || {
            matches!(child.try_wait(), Ok(Some(_)))
                || pg.admin(
                    "app",
                    &format!(
                        "SELECT count(*) FROM pg_stat_activity
                         WHERE application_name = '{application}' AND state = 'active'"
                    ),
                ) == "1"
        });
        RoleWatch {
            child,
            name: name.to_string(),
        }
    }

    /// When the role was seen gone (waiting for it, up to a minute from the start).
    fn gone_at(self) -> chrono::DateTime<chrono::Utc> {
        let out = self.child.wait_with_output().expect("psql output");
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            out.status.success(),
            "the watch of {}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        // psql prints the DO's command tag too: the answer is the last line.
        let (millis, still_there) = stdout
            .lines()
            .last()
            .and_then(|line| line.split_once('|'))
            .unwrap_or_else(|| panic!("the watch of {}: {stdout}", self.name));
        assert_eq!(still_there, "f", "the role {} outlived the watch's minute", self.name);
        let millis = millis
            .parse()
            .unwrap_or_else(|e| panic!("the watch of {}: {e}: {stdout}", self.name));
        chrono::DateTime::from_timestamp_millis(millis).unwrap()
    }
}

fn credentials(s: &Server, grant: &str) -> Value {
    let (code, out, err) = s.cli("demo-alice", &["credentials", grant, "--output", "json"]);
    assert_eq!(code, 0, "jitgate credentials: {err}");
    let answer: Value = serde_json::from_str(&out).unwrap();
    answer["credentials"][0].clone()
}

fn events_of(s: &Server, grant: &str) -> Vec<Value> {
    let (status, v) = s.get("/v1/audit?limit=5000", "demo-admin");
    assert_eq!(status, 200);
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["grant_id"] == grant)
        .cloned()
        .collect()
}

/// Start `jitgate serve` on `database_args` (with `env`), logging at debug level; once it is
/// ready (or, when `ready` is false, once it has exited refusing to start), everything it
/// printed, stdout and stderr.
fn serve_output(database_args: &[String], env: &[(&str, String)], ready: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = std::process::Command::new(BIN)
        .args(["serve", "--listen", &listen, "--policy"])
        .arg(quickstart())
        .args(database_args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("JITGATE_LOG", "debug")
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let http = reqwest::blocking::Client::new();
    loop {
        assert!(Instant::now() < deadline, "the server neither started nor exited");
        if let Some(status) = child.try_wait().unwrap() {
            assert!(
                !ready,
                "the server exited: {status}\n{}",
                std::fs::read_to_string(&err).unwrap()
            );
            assert!(!status.success());
            break;
        }
        if ready {
            if let Ok(r) = http.get(format!("http://{listen}/readyz")).send() {
                if r.status().is_success() {
                    // Some traffic, so whatever logs per request or per query has its say.
                    let r = http
                        .get(format!("http://{listen}/v1/requests"))
                        .bearer_auth("demo-alice")
                        .send()
                        .unwrap();
                    assert_eq!(r.status().as_u16(), 200);
                    child.kill().unwrap();
                    child.wait().unwrap();
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::read_to_string(&out).unwrap() + &std::fs::read_to_string(&err).unwrap()
}

/// jitgate's own database on PostgreSQL with a password: the password never appears in what
/// the server prints, whether it comes in the URL, the environment or a password file, nor
/// when the connection fails.
#[test]
fn the_database_password_is_never_logged() {
    const PASSWORD: &str = "Sup3r-S3cret-db-pw";
    let pg = Postgres::start();
    pg.admin("postgres", &format!("CREATE ROLE jitgate LOGIN PASSWORD '{PASSWORD}'"));
    pg.admin("postgres", "CREATE DATABASE jitgate OWNER jitgate");
    let with_password = pg.url("jitgate", PASSWORD, "jitgate");
    let without_password = format!("postgres://jitgate@127.0.0.1:{}/jitgate", pg.port);
    let secrets = tempfile::tempdir().unwrap();
    let password_file = secrets.path().join("db-password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let no_leak = |output: &str, secret: &str| {
        assert!(!output.contains(secret), "the password was printed:\n{output}");
    };

    // In the URL (the contract's `--database URL`): it serves, and says where, password hidden.
    let output = serve_output(&["--database".into(), with_password.clone()], &[], true);
    no_leak(&output, PASSWORD);
    let shown = format!("postgres://jitgate:***@127.0.0.1:{}/jitgate", pg.port);
    assert!(output.contains(&shown), "{output}");
    // The same URL from the environment.
    let output = serve_output(&[], &[("JITGATE_DATABASE", with_password.clone())], true);
    no_leak(&output, PASSWORD);
    assert!(output.contains(&shown), "{output}");
    // A URL without it, and the password from a file (a mounted secret).
    let file_args = |url: &str| {
        vec![
            "--database".to_string(),
            url.to_string(),
            "--database-password-file".to_string(),
            password_file.display().to_string(),
        ]
    };
    let output = serve_output(&file_args(&without_password), &[], true);
    no_leak(&output, PASSWORD);
    assert!(output.contains("(password from a file)"), "{output}");

    // A wrong password, in the URL or the file: it refuses to start, without repeating it.
    let wrong = "Wr0ng-db-pw-attempt";
    let output = serve_output(&["--database".into(), pg.url("jitgate", wrong, "jitgate")], &[], false);
    no_leak(&output, wrong);
    assert!(output.contains("password authentication failed"), "{output}");
    std::fs::write(&password_file, wrong).unwrap();
    let output = serve_output(&file_args(&without_password), &[], false);
    no_leak(&output, wrong);
    // A password in the URL and a file too is one too many; a URL that is not a database's
    // is refused without repeating its password either.
    let output = serve_output(&file_args(&with_password), &[], false);
    no_leak(&output, PASSWORD);
    assert!(output.contains("holds a password already"), "{output}");
    let output = serve_output(
        &["--database".into(), format!("mysql://jitgate:{PASSWORD}@db/x")],
        &[],
        false,
    );
    no_leak(&output, PASSWORD);
    assert!(output.contains("mysql://jitgate:***@db/x"), "{output}");

    // `serve --help` says what --database takes.
    let help = std::process::Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("postgres://USER[:PASSWORD]@HOST:PORT/DATABASE"), "{help}");
    assert!(help.contains("--database-password-file"), "{help}");
}

#[test]
fn a_grant_is_a_login_role_until_revoked_and_then_gone_with_its_session() {
    let pg = target();
    let policy = policy();
    let s = server(&pg, &policy);
    let (grant, end) = file_grant(&s, "30m");
    wait_for_status(&s, &grant, "provisioned");

    // Provisioned: a role that cannot log in yet, valid until the grant's end, with the
    // workflow's roles. Nobody has its password.
    let c = {
        let (status, v) = s.post(&format!("/v1/grants/{grant}/credentials"), "demo-bob", json!({}));
        assert_eq!(status, 404, "another user cannot ask for alice's login: {v}");
        credentials(&s, &grant)
    };
    let user = c["user"].as_str().unwrap().to_string();
    assert!(user.starts_with("jit_alice_"), "{c}");
    assert_eq!(
        (c["host"].as_str(), c["port"].as_u64()),
        (Some("127.0.0.1"), Some(u64::from(pg.port)))
    );
    assert_eq!(c["database"], "app");
    assert_eq!(time(&c["expires_at"]), end);
    let (can_login, valid_until, member_of) = role(&pg, &user).expect("the role exists");
    assert!(can_login, "LOGIN once the credentials are handed out");
    assert_eq!(valid_until, end.timestamp());
    assert_eq!(member_of, "app_read,app_scratch");

    // Shown once: a second ask is refused, and the role's password did not change.
    let (code, _, err) = s.cli("demo-alice", &["credentials", &grant]);
    assert_ne!(code, 0);
    assert!(err.contains("handed out already"), "{err}");

    // The login works with the workflow's privileges and no more.
    let url = c["url"].as_str().unwrap();
    assert_eq!(Postgres::psql_at(url, "SELECT total FROM orders WHERE id = 1").1, "42");
    let (code, _, err) = Postgres::psql_at(url, "DELETE FROM orders");
    assert_ne!(code, 0, "app_read may not delete");
    assert!(err.contains("permission denied"), "{err}");
    let (code, _, err) = Postgres::psql_at(url, "CREATE TABLE scratch.notes (line text)");
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = Postgres::psql_at(&pg.url(&user, "not-the-password", "app"), "SELECT 1");
    assert_ne!(code, 0);
    assert!(err.contains("password authentication failed"), "{err}");

    // An extension moves VALID UNTIL with the grant's end.
    let (code, out, err) = s.cli(
        "demo-alice",
        &[
            "extend",
            &grant,
            "--for",
            "15m",
            "--reason",
            "not done yet",
            "--output",
            "json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let new_end = time(&serde_json::from_str::<Value>(&out).unwrap()["expires_at"]);
    assert!(new_end > end);
    wait_until("VALID UNTIL follows the extension", || {
        role(&pg, &user).is_some_and(|r| r.1 == new_end.timestamp())
    });

    // An open session...
    let mut session = Session::open(url);
    session.send("SELECT 'open';");
    wait_until("the session is open", || sessions_of(&pg, &user) == 1);

    // ... is cut when alice revokes the grant, and the role is dropped (within two seconds of
    // the revocation's return, timed by a watch inside PostgreSQL); what it created is kept,
    // handed to the provider's role.
    let watch = RoleWatch::start(&pg, &user);
    let (code, _, err) = s.cli("demo-alice", &["revoke", &grant]);
    assert_eq!(code, 0, "{err}");
    let revoked = chrono::Utc::now();
    let lag = (watch.gone_at() - revoked).num_milliseconds();
    eprintln!("role dropped {lag} ms after the revocation returned");
    assert!(lag < 2000, "role dropped {lag} ms after the revocation returned");
    assert!(role(&pg, &user).is_none());
    assert_eq!(sessions_of(&pg, &user), 0);
    session.send("SELECT 'still here';");
    let (code, out, err) = session.finish();
    assert!(out.contains("open"), "{out}");
    assert!(!out.contains("still here"), "the session outlived the grant: {out}");
    assert_ne!(code, 0, "psql noticed the cut: {err}");
    let (code, _, err) = Postgres::psql_at(url, "SELECT 1");
    assert_ne!(code, 0, "the same login works no more");
    assert!(err.contains("password authentication failed"), "{err}");
    assert_eq!(
        pg.admin(
            "app",
            "SELECT tableowner FROM pg_tables WHERE schemaname = 'scratch' AND tablename = 'notes'"
        ),
        "jitgate_admin"
    );
    wait_for_status(&s, &grant, "deprovisioned");

    // The audit trail has every step, the handout naming the role but never the password.
    let events = events_of(&s, &grant);
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for kind in [
        "grant.issued",
        "grant.provisioned",
        "grant.credentials_issued",
        "grant.extended",
        "grant.revoked",
        "grant.deprovisioned",
    ] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    let handout = events.iter().find(|e| e["kind"] == "grant.credentials_issued").unwrap();
    assert!(handout["comment"].as_str().unwrap().contains(&user), "{handout}");
    assert!(!handout.to_string().contains(c["password"].as_str().unwrap()));
    let (_, audit) = s.get("/v1/audit?limit=5000", "demo-admin");
    assert!(!audit.to_string().contains(c["password"].as_str().unwrap()));
}

#[test]
fn expiry_cuts_the_session_and_kill_9_while_postgres_is_down_is_finished_after_restart() {
    let pg = target();
    let policy = policy();
    let mut s = server(&pg, &policy);

    // Expiry, with nobody's action: within a second of the end the role is gone and its
    // open session cut. The grant lasts long enough for what comes before its end (the
    // provisioning, `jitgate credentials`, a psql login, a look at its session) on a loaded
    // machine; every bar below is timed from its end.
    let (grant, end) = file_grant(&s, "10s");
    wait_for_status(&s, &grant, "provisioned");
    let c = credentials(&s, &grant);
    let user = c["user"].as_str().unwrap().to_string();
    let mut session = Session::open(c["url"].as_str().unwrap());
    session.send("SELECT 'open';");
    wait_until("the session is open", || sessions_of(&pg, &user) == 1);
    let gone = RoleWatch::start(&pg, &user).gone_at();
    eprintln!(
        "role dropped {} ms after the grant's end",
        (gone - end).num_milliseconds()
    );
    assert!(role(&pg, &user).is_none());
    assert!(
        (gone - end).num_milliseconds() < 1500,
        "role dropped {} ms after the end",
        (gone - end).num_milliseconds()
    );
    session.send("SELECT 'still here';");
    let (_, out, _) = session.finish();
    assert!(out.contains("open") && !out.contains("still here"), "{out}");
    // The role is gone inside the delivery; its event is committed just after.
    let mut deprovisioned = Value::Null;
    wait_until("the deprovisioned event", || {
        deprovisioned = events_of(&s, &grant)
            .into_iter()
            .find(|e| e["kind"] == "grant.deprovisioned")
            .unwrap_or(Value::Null);
        !deprovisioned.is_null()
    });
    let lag = (time(&deprovisioned["at"]) - end).num_milliseconds();
    assert!((0..1000).contains(&lag), "deprovisioned {lag} ms after expires_at");

    // kill -9 between grant and provisioning: the target is down when the grant is issued,
    // provisioning fails and is retried; jitgate is killed; after the restart, with the
    // target back, the role is created.
    pg.pause();
    let (grant, end) = file_grant(&s, "12s");
    wait_for_status(&s, &grant, "failed");
    assert!(provider_status(&s, &grant)["last_error"]
        .as_str()
        .is_some_and(|e| !e.is_empty()));
    // Back together: the retries, due at growing intervals from the first failure, must not
    // pass the grant's end while jitgate and the target are both away.
    s.kill9_and_restart_after(|_| pg.resume());
    wait_for_status(&s, &grant, "provisioned");
    let user = credentials(&s, &grant)["user"].as_str().unwrap().to_string();
    assert!(role(&pg, &user).is_some());

    // kill -9 between expiry and deprovisioning: the target is down at the grant's end, the
    // deprovisioning fails and alarms; jitgate is killed; after the restart, with the target
    // back, the role is dropped.
    pg.pause();
    let wait = (end - chrono::Utc::now()).num_milliseconds().max(0) as u64 + 300;
    std::thread::sleep(Duration::from_millis(wait));
    wait_until("the deprovisioning alarms", || {
        events_of(&s, &grant)
            .iter()
            .any(|e| e["kind"] == "grant.deprovision_failed")
    });
    assert_eq!(provider_status(&s, &grant)["status"], "failed");
    s.kill9_and_restart_after(|_| pg.resume());
    wait_for_status(&s, &grant, "deprovisioned");
    assert!(role(&pg, &user).is_none(), "the role outlived its grant");
    let (_, verify) = s.get("/v1/audit/verify", "demo-admin");
    assert_eq!(verify["ok"], true, "{verify}");
}
