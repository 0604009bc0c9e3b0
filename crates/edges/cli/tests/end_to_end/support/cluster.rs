//! A PostgreSQL failover test bed on loopback: a primary, a streaming standby (synchronous or
//! not) and, when asked, haproxy routing to whichever node is writable. Everything is started
//! by `scripts/test-postgres.sh` (`primary`, `standby`, `front`, `kill`, `promote`, `solo`,
//! `pause`, `resume`) and stopped, its data deleted, on drop.

use super::postgres::Postgres;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The superuser's password on every node. The failover tests look for it in every line the
/// replicas log; it needs no percent-encoding in a URL.
pub const PASSWORD: &str = "fo-Superuser-7Kq2xv";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../scripts/test-postgres.sh")
}

fn run(command: &str, dir: &Path, args: &[&str]) {
    let out = Command::new("bash")
        .arg(script())
        .arg(command)
        .arg(dir)
        .args(args)
        .output()
        .expect("run test-postgres.sh");
    assert!(
        out.status.success(),
        "test-postgres.sh {command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Replication {
    /// The primary's commits wait for the standby (`synchronous_standby_names`).
    Sync,
    Async,
}

/// One PostgreSQL server of the test bed.
pub struct Node {
    dir: tempfile::TempDir,
    pub port: u16,
}

impl Node {
    /// A new primary, set up for streaming replication.
    pub fn primary() -> Node {
        let node = Node {
            dir: tempfile::tempdir().expect("temp dir"),
            port: super::free_port(),
        };
        run("primary", node.dir.path(), &[&node.port.to_string(), PASSWORD]);
        node
    }

    /// A standby streaming from `primary` (a base backup of it), caught up when this returns.
    pub fn standby_of(primary: &Node, mode: Replication) -> Node {
        let node = Node {
            dir: tempfile::tempdir().expect("temp dir"),
            port: super::free_port(),
        };
        let mode = match mode {
            Replication::Sync => "sync",
            Replication::Async => "async",
        };
        run(
            "standby",
            node.dir.path(),
            &[primary.dir.path().to_str().unwrap(), &node.port.to_string(), mode],
        );
        node
    }

    /// `kill -9` of the postmaster and all its processes: no shutdown, no goodbye.
    pub fn kill(&self) {
        run("kill", self.dir.path(), &[]);
    }

    pub fn promote(&self) {
        run("promote", self.dir.path(), &[]);
    }

    /// Stop the server (fast shutdown), keeping its data.
    pub fn pause(&self) {
        run("pause", self.dir.path(), &[]);
    }

    /// Start it again on its data and port (a standby goes on following its primary).
    pub fn resume(&self) {
        run("resume", self.dir.path(), &[]);
    }

    /// Start a killed primary again on its old data, writable, waiting for no standby.
    pub fn solo(&self) {
        run("solo", self.dir.path(), &[]);
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres:{PASSWORD}@127.0.0.1:{}/{database}", self.port)
    }

    /// Run SQL as the superuser in `database`: its output, or psql's error.
    pub fn sql(&self, database: &str, sql: &str) -> Result<String, String> {
        let (code, out, err) = Postgres::psql_at(&self.url(database), sql);
        if code == 0 {
            Ok(out)
        } else {
            Err(err)
        }
    }

    /// Run SQL as the superuser in `database`; it must succeed.
    pub fn admin(&self, database: &str, sql: &str) -> String {
        self.sql(database, sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub fn in_recovery(&self) -> bool {
        self.admin("postgres", "SELECT pg_is_in_recovery()") == "t"
    }
}

/// Stop what the script started in `dir` and delete it (whatever happened before).
fn stop(dir: &std::path::Path) {
    let _ = Command::new("bash").arg(script()).arg("stop").arg(dir).output();
}

impl Drop for Node {
    fn drop(&mut self) {
        stop(self.dir.path());
    }
}

/// haproxy on loopback, routing to whichever of its nodes is writable (checked every 250 ms).
pub struct Front {
    dir: tempfile::TempDir,
    pub port: u16,
}

impl Front {
    pub fn start(nodes: &[&Node]) -> Front {
        let front = Front {
            dir: tempfile::tempdir().expect("temp dir"),
            port: super::free_port(),
        };
        let port = front.port.to_string();
        let mut args = vec![port.as_str()];
        args.extend(nodes.iter().map(|n| n.dir.path().to_str().unwrap()));
        run("front", front.dir.path(), &args);
        front
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres:{PASSWORD}@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        stop(self.dir.path());
    }
}

/// A primary with one standby, a database `jitgate` on it, and haproxy in front when asked.
/// (Fields drop in order: the front first, then the nodes.)
pub struct Cluster {
    pub front: Option<Front>,
    pub primary: Node,
    pub standby: Node,
}

impl Cluster {
    pub fn start(mode: Replication, with_front: bool) -> Cluster {
        let primary = Node::primary();
        let standby = Node::standby_of(&primary, mode);
        primary.admin("postgres", "CREATE DATABASE jitgate");
        let front = with_front.then(|| Front::start(&[&primary, &standby]));
        let cluster = Cluster {
            front,
            primary,
            standby,
        };
        if let Some(front) = &cluster.front {
            // The front routes once its first check has passed.
            let started = Instant::now();
            while Postgres::psql_at(&front.url("jitgate"), "SELECT 1").0 != 0 {
                assert!(started.elapsed() < Duration::from_secs(30), "haproxy never routed");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        cluster
    }

    /// The URL replicas use: through the front when there is one, else the primary's.
    pub fn database_url(&self) -> String {
        match &self.front {
            Some(front) => front.url("jitgate"),
            None => self.primary.url("jitgate"),
        }
    }

    /// A libpq-style URL listing `first`, then `second`, with `target_session_attrs=attrs`.
    pub fn multi_host_url(first: &Node, second: &Node, attrs: &str) -> String {
        format!(
            "postgres://postgres:{PASSWORD}@127.0.0.1:{},127.0.0.1:{}/jitgate?target_session_attrs={attrs}",
            first.port, second.port
        )
    }

    /// Wait until the standby has replayed everything the primary has written so far.
    pub fn wait_replayed(&self) {
        let lsn = self.primary.admin("postgres", "SELECT pg_current_wal_lsn()");
        let started = Instant::now();
        while self.standby.admin(
            "postgres",
            &format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn"),
        ) != "t"
        {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the standby did not catch up"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The failover: `kill -9` of the primary, then promotion of the standby. Returns when the
    /// standby is writable.
    pub fn failover(&self) {
        self.primary.kill();
        self.standby.promote();
        assert!(!self.standby.in_recovery());
    }
}
