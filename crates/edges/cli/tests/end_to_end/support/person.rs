//! A person's machine for the CLI's tests (cli_login.rs, cli_sso.rs): a home and config
//! directory of its own, and the CLI run there with no `JITGATE_*` variable of the test
//! process but `JITGATE_LOG`, and only the variables a test sets.

use super::BIN;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A home (`HOME`) and a config directory (`XDG_CONFIG_HOME`) of its own.
pub struct Person {
    pub home: tempfile::TempDir,
    /// Set for every CLI run of this person, before the variables of the run itself.
    env: Vec<(String, String)>,
    /// Removed from every CLI run of this person (unless the run sets them again).
    removed: Vec<String>,
}

impl Default for Person {
    fn default() -> Self {
        Self::new()
    }
}

impl Person {
    pub fn new() -> Person {
        Person {
            home: tempfile::tempdir().unwrap(),
            env: Vec::new(),
            removed: Vec::new(),
        }
    }

    /// `name=value` in every CLI run of this person.
    pub fn with_env(mut self, name: &str, value: &str) -> Person {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// `name` removed from every CLI run of this person.
    pub fn without_env(mut self, name: &str) -> Person {
        self.removed.push(name.to_string());
        self
    }

    pub fn config_dir(&self) -> PathBuf {
        self.home.path().join("xdg").join("jitgate")
    }

    pub fn credential(&self, profile: &str) -> PathBuf {
        self.config_dir().join("credentials").join(format!("{profile}.json"))
    }

    /// The CLI with `args`, this person's environment and then `env`; stdin empty, stdout and
    /// stderr piped.
    pub fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(BIN);
        command.args(args);
        for (name, _) in std::env::vars() {
            if name.starts_with("JITGATE_") {
                command.env_remove(name);
            }
        }
        for name in &self.removed {
            command.env_remove(name);
        }
        command
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join("xdg"))
            .env("JITGATE_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Run the CLI with `env` set (and every other JITGATE_ variable removed), `stdin` fed.
    pub fn run_full(&self, args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> (i32, String, String) {
        let mut command = self.command(args, env);
        if stdin.is_some() {
            command.stdin(Stdio::piped());
        }
        let mut child = command.spawn().unwrap();
        if let Some(input) = stdin {
            child.stdin.take().unwrap().write_all(input).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        self.run_full(args, env, None)
    }

    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        self.run_full(args, &[], None)
    }

    /// `jitgate login --url URL --token TOKEN [--profile PROFILE]`.
    pub fn login(&self, url: &str, token: &str, profile: Option<&str>) -> (i32, String, String) {
        let mut args = vec!["login", "--url", url, "--token", token];
        if let Some(p) = profile {
            args.extend(["--profile", p]);
        }
        self.run(&args)
    }

    /// Every regular file under the config directory.
    pub fn files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.push(path);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.config_dir(), &mut out);
        out
    }
}
