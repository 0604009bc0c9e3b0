//! A throwaway PostgreSQL server on loopback for the service's tests, started by
//! `scripts/test-postgres.sh` and stopped (its data deleted) on drop. (The end-to-end suite's
//! helper finds the script from a crate one level deeper.)

use std::path::{Path, PathBuf};
use std::process::Command;

pub const SUPERUSER_PASSWORD: &str = "test-superuser-password";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/test-postgres.sh")
}

pub struct Postgres {
    dir: tempfile::TempDir,
    port: u16,
}

impl Postgres {
    pub fn start() -> Postgres {
        // The port is free when asked for, but another test may bind it before PostgreSQL
        // does: then it is tried again on another port, in a new directory.
        for _ in 0..5 {
            let port = {
                let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                listener.local_addr().expect("addr").port()
            };
            // Made before starting, so that a failed start is cleaned up by `Drop` too.
            let pg = Postgres {
                dir: tempfile::tempdir().expect("temp dir"),
                port,
            };
            let out = Command::new("bash")
                .arg(script())
                .args(["start"])
                .arg(pg.dir.path())
                .args([&port.to_string(), SUPERUSER_PASSWORD])
                .output()
                .expect("run test-postgres.sh");
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

    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres:{SUPERUSER_PASSWORD}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// A new database on the server.
    pub fn create_database(&self, name: &str) {
        let out = Command::new("psql")
            .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", &self.url("postgres")])
            .args(["-c", &format!("CREATE DATABASE {name}")])
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .expect("run psql");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
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
