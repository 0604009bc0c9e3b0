//! A throwaway PostgreSQL server on loopback, started by `scripts/test-postgres.sh` and
//! stopped (its data deleted) on drop; `psql` for talking to it as a person would.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

// The test ports (outside the kernel's ephemeral range, never handed out twice), here so that
// crates/storage/store/tests/store.rs, which includes this file alone, uses them too.
#[path = "ports.rs"]
pub mod ports;

pub const SUPERUSER_PASSWORD: &str = "test-superuser-password";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../scripts/test-postgres.sh")
}

pub struct Postgres {
    dir: tempfile::TempDir,
    pub port: u16,
}

impl Postgres {
    pub fn start() -> Postgres {
        // The port is free when asked for and no test or kernel choice takes it, but a
        // process outside the tests may bind it before PostgreSQL does: then it is tried
        // again on another port, in a new directory.
        for _ in 0..5 {
            let pg = Postgres {
                dir: tempfile::tempdir().expect("temp dir"),
                port: ports::free_port(),
            };
            let out = pg.run_script(&["start", &pg.port.to_string(), SUPERUSER_PASSWORD]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            if out.status.success() {
                return pg;
            }
            assert!(
                stderr.contains("Address already in use"),
                "test-postgres.sh start: {stderr}"
            );
        }
        panic!("test-postgres.sh start: five ports in a row were taken before PostgreSQL bound them");
    }

    fn run_script(&self, args: &[&str]) -> std::process::Output {
        Command::new("bash")
            .arg(script())
            .arg(args[0])
            .arg(self.dir.path())
            .args(&args[1..])
            .output()
            .expect("run test-postgres.sh")
    }

    fn script(&self, args: &[&str]) {
        let out = self.run_script(args);
        assert!(
            out.status.success(),
            "test-postgres.sh {}: {}",
            args[0],
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stop the server, keeping its data.
    pub fn pause(&self) {
        self.script(&["pause"]);
    }

    /// Start it again on the same data and port.
    pub fn resume(&self) {
        self.script(&["resume"]);
    }

    pub fn url(&self, user: &str, password: &str, database: &str) -> String {
        format!("postgres://{user}:{password}@127.0.0.1:{}/{database}", self.port)
    }

    /// Run SQL with psql at `url`: (exit code, stdout, stderr). Unaligned, tuples only.
    pub fn psql_at(url: &str, sql: &str) -> (i32, String, String) {
        let out = Command::new("psql")
            .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .expect("run psql");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Run SQL as the superuser in `database`; it must succeed.
    pub fn admin(&self, database: &str, sql: &str) -> String {
        let (code, out, err) = Self::psql_at(&self.url("postgres", SUPERUSER_PASSWORD, database), sql);
        assert_eq!(code, 0, "{sql}: {err}");
        out
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

/// A psql session kept open: statements are written to it one at a time.
pub struct Session {
    child: Child,
}

impl Session {
    pub fn open(url: &str) -> Session {
        let child = Command::new("psql")
            .args(["-X", "-At", "-d", url])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start psql");
        Session { child }
    }

    /// Send a statement without waiting for its answer.
    pub fn send(&mut self, sql: &str) {
        let stdin = self.child.stdin.as_mut().expect("psql stdin");
        // A session whose server went away may have closed its input already.
        let _ = writeln!(stdin, "{sql}");
        let _ = stdin.flush();
    }

    /// Close the input and collect everything: (exit code, stdout, stderr).
    pub fn finish(mut self) -> (i32, String, String) {
        drop(self.child.stdin.take());
        let out = self.child.wait_with_output().expect("psql output");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}
