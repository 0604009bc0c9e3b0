//! Live audit sinks: every event, as it is committed, shipped to a file (rotated by size), to
//! stdout (for a log collector), or to an HTTP endpoint (a SIEM's collector: Splunk HEC, Elastic,
//! Datadog, Vector, ...) as JSON lines, in jitgate's own shape or in ECS.
//!
//! Each sink reads the log from its own cursor in the store, like notification sinks: nothing
//! committed is skipped, a failing sink is retried with backoff (audit events are never dropped;
//! the sink waits until its receiver takes them), and with replicas one of them holds each sink
//! at a time. Delivery is at least once: an event may be sent again after a crash or a takeover,
//! and carries `seq` to tell. A file sink reads its last line at start and skips what it already
//! holds.

use crate::app::{now, App};
use crate::audit::format::{ecs_line, event_line};
use crate::delivery::{post, signature, Failure};
use jitgate_core::AuditEvent;
use jitgate_store::AuditFilter;
use serde::Deserialize;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often an idle sink looks for new events.
const TICK: Duration = Duration::from_millis(250);
/// How long a replica holds a sink (renewed with every batch).
const LEASE: chrono::TimeDelta = chrono::TimeDelta::seconds(15);

/// One `[[audit.sinks]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    pub name: String,
    /// `file`, `stdout` or `http`.
    pub kind: String,
    /// `json` (default: the event as `GET /v1/audit` gives it, verifiable offline) or `ecs`.
    pub format: Option<String>,
    /// `file`: where; rotated to `PATH.1`, `PATH.2`, ... once it reaches `rotate_bytes`.
    pub path: Option<PathBuf>,
    pub rotate_bytes: Option<u64>,
    /// `file`: how many rotated files to keep (default 10).
    pub keep: Option<usize>,
    /// `http`: where to POST (or the environment variable holding it).
    pub url: Option<String>,
    pub url_env: Option<String>,
    /// `http`: sign each body with HMAC (`X-Jitgate-Signature`, as webhooks).
    pub secret: Option<String>,
    pub secret_env: Option<String>,
    /// `http`: the environment variable holding an `Authorization` header value
    /// (`Splunk <token>`, `Bearer <token>`).
    pub authorization_env: Option<String>,
    /// `http`: events per POST (default 100, at most 1000).
    pub batch: Option<u32>,
    pub timeout: Option<String>,
    /// `beginning` (default: the whole log, then what follows) or `now`.
    pub start: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Ecs,
}

enum Target {
    File {
        path: PathBuf,
        rotate_bytes: u64,
        keep: usize,
    },
    Stdout,
    Http {
        url: String,
        secret: Option<Vec<u8>>,
        authorization: Option<String>,
        timeout: Duration,
        http: reqwest::Client,
    },
}

/// A configured sink.
pub struct Sink {
    pub name: String,
    format: Format,
    target: Target,
    batch: u32,
    from_now: bool,
}

impl Sink {
    pub fn new(c: &SinkConfig, at: &dyn Fn(&str) -> String) -> Result<Sink, String> {
        if c.name.is_empty()
            || !c
                .name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
        {
            return Err(format!("{}: use letters, digits, '-', '_' or '.'", at("name")));
        }
        let format = match c.format.as_deref() {
            None | Some("json") => Format::Json,
            Some("ecs") => Format::Ecs,
            Some(other) => return Err(format!("{}: '{other}' is not a format; use json or ecs", at("format"))),
        };
        let from_now = match c.start.as_deref() {
            None | Some("beginning") => false,
            Some("now") => true,
            Some(other) => return Err(format!("{}: '{other}'; use beginning or now", at("start"))),
        };
        let refuse = |keys: &[(&str, bool)]| -> Result<(), String> {
            match keys.iter().find(|(_, set)| *set) {
                Some((key, _)) => Err(format!("{}: not used by a {} sink; remove it", at(key), c.kind)),
                None => Ok(()),
            }
        };
        let file_keys = [
            ("path", c.path.is_some()),
            ("rotate_bytes", c.rotate_bytes.is_some()),
            ("keep", c.keep.is_some()),
        ];
        let http_keys = [
            ("url", c.url.is_some() || c.url_env.is_some()),
            ("secret", c.secret.is_some() || c.secret_env.is_some()),
            ("authorization_env", c.authorization_env.is_some()),
            ("batch", c.batch.is_some()),
            ("timeout", c.timeout.is_some()),
        ];
        let target = match c.kind.as_str() {
            "file" => {
                refuse(&http_keys)?;
                let path = c
                    .path
                    .clone()
                    .ok_or_else(|| format!("{}: a file sink needs the file's path", at("path")))?;
                let rotate_bytes = c.rotate_bytes.unwrap_or(100 * 1024 * 1024);
                if rotate_bytes < 1024 {
                    return Err(format!("{}: use at least 1024", at("rotate_bytes")));
                }
                Target::File {
                    path,
                    rotate_bytes,
                    keep: c.keep.unwrap_or(10).max(1),
                }
            }
            "stdout" => {
                refuse(&file_keys)?;
                refuse(&http_keys)?;
                Target::Stdout
            }
            "http" => {
                refuse(&file_keys)?;
                let url = crate::provision::value_or_env(c.url.as_deref(), c.url_env.as_deref(), "url", at)?;
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(format!("{}: '{url}' is not an http(s) URL", at("url")));
                }
                let secret = if c.secret.is_some() || c.secret_env.is_some() {
                    Some(crate::provision::hmac_secret(
                        c.secret.as_deref(),
                        c.secret_env.as_deref(),
                        at,
                    )?)
                } else {
                    None
                };
                let authorization = match &c.authorization_env {
                    None => None,
                    Some(var) => Some(std::env::var(var).map_err(|_| {
                        format!("{}: the environment variable {var} is not set", at("authorization_env"))
                    })?),
                };
                let timeout = c.timeout.clone().unwrap_or_else(|| "10s".into());
                Target::Http {
                    url,
                    secret,
                    authorization,
                    timeout: crate::auth::config::duration(&at("timeout"), &timeout).map_err(|e| e.0)?,
                    http: reqwest::Client::new(),
                }
            }
            other => {
                return Err(format!(
                    "{}: '{other}' is not an audit sink kind; use file, stdout or http",
                    at("kind")
                ))
            }
        };
        let batch = c.batch.unwrap_or(100);
        if !(1..=1000).contains(&batch) {
            return Err(format!("{}: use 1 to 1000", at("batch")));
        }
        Ok(Sink {
            name: c.name.clone(),
            format,
            target,
            batch,
            from_now,
        })
    }

    /// The sink's cursor and lease in the store (shared with notification sinks, so prefixed).
    pub fn key(&self) -> String {
        format!("audit:{}", self.name)
    }

    fn line(&self, event: &AuditEvent) -> String {
        match self.format {
            Format::Json => event_line(event),
            Format::Ecs => ecs_line(event),
        }
    }
}

/// Give each sink that never ran its cursor, before the server serves: the log's start, or
/// its head for `start = "now"`.
pub async fn start_cursors(app: &App, sinks: &[Arc<Sink>]) -> Result<(), jitgate_store::StoreError> {
    for sink in sinks {
        if app.store.notification_cursor(&sink.key()).await?.is_none() {
            let start = if sink.from_now {
                app.store.audit_head().await?
            } else {
                0
            };
            app.store.set_notification_cursor(&sink.key(), start).await?;
        }
    }
    Ok(())
}

/// Ship the log to one sink, forever.
pub async fn run(app: Arc<App>, sink: Arc<Sink>) {
    let mut attempts = 0u32;
    let mut next_try = Instant::now();
    // A file sink's last event on disk, read once: what a restart must not write again.
    let mut on_disk: Option<i64> = None;
    loop {
        tokio::time::sleep(TICK).await;
        if Instant::now() < next_try {
            continue;
        }
        loop {
            match ship_batch(&app, &sink, &mut on_disk).await {
                Ok(Shipped::Full) => continue,
                Ok(Shipped::Rest) => {
                    attempts = 0;
                    break;
                }
                Err(error) => {
                    attempts += 1;
                    let delay = jitgate_core::outbox::retry_delay(attempts)
                        .to_std()
                        .unwrap_or(Duration::from_secs(30));
                    next_try = Instant::now() + delay;
                    tracing::warn!(sink = %sink.name, attempt = attempts, %error, "audit sink delivery failed; will retry");
                    break;
                }
            }
        }
    }
}

enum Shipped {
    /// A whole batch went: there may be more.
    Full,
    /// Caught up, or another replica holds the sink.
    Rest,
}

async fn ship_batch(app: &App, sink: &Sink, on_disk: &mut Option<i64>) -> Result<Shipped, String> {
    let at = now();
    let key = sink.key();
    let holder = app.notifier().holder();
    if !app
        .store
        .lease_sink(&key, holder, at, at + LEASE)
        .await
        .map_err(|e| e.to_string())?
    {
        return Ok(Shipped::Rest);
    }
    let cursor = app
        .store
        .notification_cursor(&key)
        .await
        .map_err(|e| e.to_string())?
        .unwrap_or(0);
    let events = app
        .store
        .audit_events(&AuditFilter {
            after_seq: Some(cursor),
            limit: sink.batch,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let Some(last) = events.last().map(|e| e.seq) else {
        return Ok(Shipped::Rest);
    };
    if let Some(first) = events.first().filter(|e| e.seq != cursor + 1) {
        // Retention waits for every sink, so this means the events were gone before the sink
        // was configured (or were deleted by hand): say so, loudly.
        tracing::error!(sink = %sink.name, from = cursor + 1, to = first.seq - 1, "audit events missing from the log were not shipped");
        app.metrics.count_audit_sink(
            &sink.name,
            "missing",
            u64::try_from(first.seq - cursor - 1).unwrap_or(0),
        );
    }
    let count = events.len() as u64;
    let result = match &sink.target {
        Target::Stdout => {
            let mut out = std::io::stdout().lock();
            events
                .iter()
                .try_for_each(|e| writeln!(out, "{}", sink.line(e)))
                .and_then(|()| out.flush())
                .map_err(|e| format!("stdout: {e}"))
        }
        Target::File {
            path,
            rotate_bytes,
            keep,
        } => {
            let lines: Vec<(i64, String)> = events.iter().map(|e| (e.seq, sink.line(e))).collect();
            let (path, rotate_bytes, keep, known) = (path.clone(), *rotate_bytes, *keep, *on_disk);
            let written =
                tokio::task::spawn_blocking(move || append_rotating(&path, rotate_bytes, keep, known, &lines))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r);
            written.map(|seq| *on_disk = Some(seq))
        }
        Target::Http {
            url,
            secret,
            authorization,
            timeout,
            http,
        } => {
            let mut body = String::new();
            for e in &events {
                body.push_str(&sink.line(e));
                body.push('\n');
            }
            let first = events.first().map_or(last, |e| e.seq);
            let mut headers = vec![("Idempotency-Key", format!("jitgate-audit-{}-{first}-{last}", sink.name))];
            if let Some(secret) = secret {
                headers.push(("X-Jitgate-Signature", signature(secret, now(), &body)?));
            }
            if let Some(value) = authorization {
                headers.push(("Authorization", value.clone()));
            }
            post(http, url, *timeout, "application/x-ndjson", &headers, body)
                .await
                .map_err(|f| match f {
                    Failure::Retry(m) | Failure::Refused(m) => m,
                })
        }
    };
    if let Err(error) = result {
        app.metrics.count_audit_sink(&sink.name, "failed", count);
        return Err(error);
    }
    app.metrics.count_audit_sink(&sink.name, "sent", count);
    app.store
        .set_notification_cursor(&key, last)
        .await
        .map_err(|e| e.to_string())?;
    Ok(if count == u64::from(sink.batch) {
        Shipped::Full
    } else {
        Shipped::Rest
    })
}

/// Append `lines` (each with its event's seq) to `path`, skipping events the file already
/// holds, rotating before a line would take the file past `rotate_bytes`; synced to disk
/// before the cursor moves. Returns the last seq on disk.
fn append_rotating(
    path: &Path,
    rotate_bytes: u64,
    keep: usize,
    known: Option<i64>,
    lines: &[(i64, String)],
) -> Result<i64, String> {
    let shown = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut on_disk = match known {
        Some(seq) => seq,
        None => last_seq_in(path).map_err(shown)?.unwrap_or(0),
    };
    let mut file = open_append(path).map_err(shown)?;
    let mut size = file.metadata().map_err(shown)?.len();
    for (seq, line) in lines {
        if *seq <= on_disk {
            continue;
        }
        let bytes = line.len() as u64 + 1;
        if size > 0 && size + bytes > rotate_bytes {
            file.sync_data().map_err(shown)?;
            rotate(path, keep).map_err(shown)?;
            file = open_append(path).map_err(shown)?;
            size = 0;
        }
        file.write_all(line.as_bytes()).map_err(shown)?;
        file.write_all(b"\n").map_err(shown)?;
        size += bytes;
        on_disk = *seq;
    }
    file.sync_data().map_err(shown)?;
    Ok(on_disk)
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().create(true).append(true).open(path)
}

/// `path` becomes `path.1`, `path.1` becomes `path.2`, ...; the oldest beyond `keep` goes.
fn rotate(path: &Path, keep: usize) -> std::io::Result<()> {
    let numbered = |n: usize| PathBuf::from(format!("{}.{n}", path.display()));
    let _ = std::fs::remove_file(numbered(keep));
    for n in (1..keep).rev() {
        if numbered(n).exists() {
            std::fs::rename(numbered(n), numbered(n + 1))?;
        }
    }
    std::fs::rename(path, numbered(1))
}

/// The seq of the last complete line of the file (json or ecs), if any.
fn last_seq_in(path: &Path) -> std::io::Result<Option<i64>> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let from = len.saturating_sub(64 * 1024);
    file.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    // The seek may land inside a line (or a character): only whole lines after it count.
    let tail = String::from_utf8_lossy(&bytes);
    let whole = if from == 0 {
        &tail[..]
    } else {
        tail.split_once('\n').map_or("", |(_, rest)| rest)
    };
    let last = whole.lines().rev().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        v["seq"].as_i64().or_else(|| v["event"]["sequence"].as_i64())
    });
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(seqs: std::ops::RangeInclusive<i64>) -> Vec<(i64, String)> {
        seqs.map(|s| (s, format!("{{\"seq\":{s},\"pad\":\"{}\"}}", "x".repeat(80))))
            .collect()
    }

    #[test]
    fn the_last_line_is_found_whatever_the_tail_starts_in() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("audit.jsonl");
        // Multi-byte characters everywhere, and more than the 64 KiB read from the end: the
        // seek lands inside a line and maybe inside a character.
        let lines: Vec<(i64, String)> = (1..=400)
            .map(|s| (s, format!("{{\"seq\":{s},\"comment\":\"{}\"}}", "é€😀".repeat(40))))
            .collect();
        append_rotating(&path, 100 * 1024 * 1024, 1, None, &lines).unwrap_or_default();
        assert!(std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) > 64 * 1024);
        assert_eq!(last_seq_in(&path).ok().flatten(), Some(400));
    }

    #[test]
    fn files_rotate_by_size_keep_their_count_and_never_repeat_a_line() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("audit.jsonl");
        let last = append_rotating(&path, 1024, 2, None, &lines(1..=30)).unwrap_or_default();
        assert_eq!(last, 30);
        // A restart that re-sends events 25 to 40 writes only 31 to 40.
        let last = append_rotating(&path, 1024, 2, None, &lines(25..=40)).unwrap_or_default();
        assert_eq!(last, 40);
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let current = read(&path);
        let rotated: Vec<String> = (1..=3)
            .map(|n| read(&PathBuf::from(format!("{}.{n}", path.display()))))
            .collect();
        assert!(rotated[2].is_empty(), "only two rotated files are kept");
        for file in [&current, &rotated[0], &rotated[1]] {
            assert!(file.len() <= 1024, "{}", file.len());
        }
        let seqs: Vec<i64> = [&rotated[1], &rotated[0], &current]
            .iter()
            .flat_map(|f| f.lines())
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap_or_default()["seq"]
                    .as_i64()
                    .unwrap_or(0)
            })
            .collect();
        let expected: Vec<i64> = (seqs[0]..=40).collect();
        assert_eq!(seqs, expected, "in order, none twice, none missing in what is kept");
    }
}
