//! The file sink: JSON lines appended to a file, rotated by size, synced to disk before the
//! cursor moves. At start it reads its last line (seq and hash): the runner goes on after it,
//! and only if the log still has that event with that hash. It never skips silently: an event
//! it is given again is skipped only when the batch also carries the file's last event with
//! the hash the file holds; any other overlap (a log rewound or forked under the file) is
//! refused and nothing is written.

use crate::entry::AuditSinkEntry;
use async_trait::async_trait;
use jitgate_service::connectors::{AuditLine, AuditMark, AuditSink};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

struct FileSink {
    path: PathBuf,
    rotate_bytes: u64,
    keep: usize,
    /// The last event on disk (seq and hash), read once: what a restart must not write again.
    on_disk: parking_lot::Mutex<Option<AuditMark>>,
}

/// `kind = "file"`: `path`, optionally `rotate_bytes` (at least 1024, default 100 MiB) and
/// `keep` (rotated files kept, default 10).
pub fn build(entry: &AuditSinkEntry<'_>) -> Result<Box<dyn AuditSink>, String> {
    let (c, at) = (entry.config, entry.at);
    super::refuse(c, at, &super::http_keys(c))?;
    let path = c
        .path
        .clone()
        .ok_or_else(|| format!("{}: a file sink needs the file's path", at("path")))?;
    let rotate_bytes = c.rotate_bytes.unwrap_or(100 * 1024 * 1024);
    if rotate_bytes < 1024 {
        return Err(format!("{}: use at least 1024", at("rotate_bytes")));
    }
    Ok(Box::new(FileSink {
        path,
        rotate_bytes,
        keep: c.keep.unwrap_or(10).max(1),
        on_disk: parking_lot::Mutex::new(None),
    }))
}

#[async_trait]
impl AuditSink for FileSink {
    async fn ship(&self, _name: &str, lines: &[AuditLine]) -> Result<(), String> {
        let lines: Vec<(i64, String)> = lines.iter().map(|l| (l.seq, l.text.clone())).collect();
        let (path, rotate_bytes, keep) = (self.path.clone(), self.rotate_bytes, self.keep);
        // One task ships a sink at a time, so nothing writes `on_disk` in between.
        let known = self.on_disk.lock().clone();
        let mark = tokio::task::spawn_blocking(move || append_lines(&path, rotate_bytes, keep, known, &lines))
            .await
            .map_err(|e| e.to_string())??;
        *self.on_disk.lock() = mark;
        Ok(())
    }

    async fn holds(&self) -> Result<Option<AuditMark>, String> {
        let path = self.path.clone();
        let mark = tokio::task::spawn_blocking(move || last_in(&path).map_err(|e| format!("{}: {e}", path.display())))
            .await
            .map_err(|e| e.to_string())??;
        *self.on_disk.lock() = mark.clone();
        Ok(mark)
    }
}

/// The hash a line (json or ecs) states for its event.
fn line_hash(line: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    v["hash"].as_str().or_else(|| v["jitgate"]["hash"].as_str()).map(str::to_string)
}

/// `append_lines`, giving the last seq on disk.
#[cfg(test)]
fn append_rotating(
    path: &Path,
    rotate_bytes: u64,
    keep: usize,
    known: Option<AuditMark>,
    lines: &[(i64, String)],
) -> Result<i64, String> {
    append_lines(path, rotate_bytes, keep, known, lines).map(|mark| mark.map_or(0, |m| m.seq))
}

/// Append `lines` (each with its event's seq) to `path`, rotating before a line would take
/// the file past `rotate_bytes`; synced to disk before the cursor moves. Events the file
/// already holds are skipped only when `lines` carries the file's last event with the hash
/// the file has for it (the same history, sent again after a crash); otherwise nothing is
/// written and the overlap is an error. Returns the last event on disk.
fn append_lines(
    path: &Path,
    rotate_bytes: u64,
    keep: usize,
    known: Option<AuditMark>,
    lines: &[(i64, String)],
) -> Result<Option<AuditMark>, String> {
    let shown = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut on_disk = match known {
        Some(mark) => Some(mark),
        None => last_in(path).map_err(shown)?,
    };
    let held = on_disk.as_ref().map_or(0, |m| m.seq);
    if let Some((first, _)) = lines.first().filter(|(seq, _)| *seq <= held) {
        let file_hash = on_disk.as_ref().and_then(|m| m.hash.clone());
        match lines.iter().find(|(seq, _)| *seq == held) {
            Some((_, line)) if line_hash(line) == file_hash => {}
            Some((_, line)) => {
                return Err(format!(
                    "{}: the file ends with event {held} (hash {}), but the log's event {held} has hash {}: \
                     the log was rewound or forked under the file; nothing was written (move the file aside \
                     to keep it, see docs/audit.md, \"A rewound or forked log\")",
                    path.display(),
                    file_hash.as_deref().unwrap_or("unknown"),
                    line_hash(line).as_deref().unwrap_or("unknown"),
                ))
            }
            None => {
                return Err(format!(
                    "{}: the file already holds events through {held}; refusing to skip event {first} and \
                     what follows without its event {held} to compare; nothing was written",
                    path.display()
                ))
            }
        }
    }
    let mut file = open_append(path).map_err(shown)?;
    let mut size = file.metadata().map_err(shown)?.len();
    let mut written = None;
    for (seq, line) in lines {
        if *seq <= held {
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
        written = Some((*seq, line));
    }
    file.sync_data().map_err(shown)?;
    if let Some((seq, line)) = written {
        on_disk = Some(AuditMark {
            seq,
            hash: line_hash(line),
        });
    }
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
#[cfg(test)]
fn last_seq_in(path: &Path) -> std::io::Result<Option<i64>> {
    last_in(path).map(|mark| mark.map(|m| m.seq))
}

/// The seq and hash of the last complete line of the file (json or ecs), if any.
fn last_in(path: &Path) -> std::io::Result<Option<AuditMark>> {
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
        let seq = v["seq"].as_i64().or_else(|| v["event"]["sequence"].as_i64())?;
        Some(AuditMark {
            seq,
            hash: line_hash(line),
        })
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

    /// Lines as the json format writes them: each with its seq and a hash of its history.
    fn chained(seqs: std::ops::RangeInclusive<i64>, history: &str) -> Vec<(i64, String)> {
        seqs.map(|s| (s, format!("{{\"seq\":{s},\"hash\":\"{history}-{s}\"}}")))
            .collect()
    }

    fn read_seqs_and_hashes(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap_or_default()["hash"].to_string())
            .collect()
    }

    #[test]
    fn the_last_line_gives_its_seq_and_hash_in_either_format() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let json = dir.path().join("audit.jsonl");
        append_lines(&json, 1 << 20, 1, None, &chained(1..=3, "a")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            last_in(&json).ok().flatten(),
            Some(AuditMark {
                seq: 3,
                hash: Some("a-3".into())
            })
        );
        let ecs = dir.path().join("audit-ecs.jsonl");
        let line = r#"{"event":{"sequence":9},"jitgate":{"hash":"h9"}}"#.to_string();
        append_lines(&ecs, 1 << 20, 1, None, &[(9, line)]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            last_in(&ecs).ok().flatten(),
            Some(AuditMark {
                seq: 9,
                hash: Some("h9".into())
            })
        );
        assert_eq!(last_in(&dir.path().join("none.jsonl")).ok().flatten(), None);
    }

    #[test]
    fn events_sent_again_are_skipped_only_when_the_files_last_event_matches() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("audit.jsonl");
        append_lines(&path, 1 << 20, 1, None, &chained(1..=5, "a")).unwrap_or_else(|e| panic!("{e}"));
        // The same history sent again after a crash: 4 and 5 are skipped, 6 and 7 written.
        let mark = append_lines(&path, 1 << 20, 1, None, &chained(4..=7, "a")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(mark.map(|m| (m.seq, m.hash)), Some((7, Some("a-7".to_string()))));
        let before = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(before.lines().count(), 7);

        // Another history that reuses 6 and 7 (a rewound log): refused, nothing written.
        let known = last_in(&path).ok().flatten();
        let error = append_lines(&path, 1 << 20, 1, known.clone(), &chained(6..=9, "b")).err().unwrap_or_default();
        assert!(
            error.contains("ends with event 7 (hash a-7)") && error.contains("has hash b-7") && error.contains("nothing was written"),
            "{error}"
        );
        // A batch that stops short of the file's last event cannot be compared: refused too.
        let error = append_lines(&path, 1 << 20, 1, known.clone(), &chained(5..=6, "a")).err().unwrap_or_default();
        assert!(error.contains("refusing to skip event 5"), "{error}");
        // Read from the file rather than remembered: the same.
        assert!(append_lines(&path, 1 << 20, 1, None, &chained(7..=8, "b")).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap_or_default(), before, "nothing was written");

        // Lines without a hash against a file whose last line has one: not the same event.
        let bare = vec![(7, "{\"seq\":7}".to_string()), (8, "{\"seq\":8}".to_string())];
        assert!(append_lines(&path, 1 << 20, 1, known, &bare).is_err());
        let hashes = read_seqs_and_hashes(&path);
        assert_eq!(hashes.last().map(String::as_str), Some("\"a-7\""));
    }

    #[tokio::test]
    async fn the_sink_says_what_it_holds_and_refuses_another_history() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("audit.jsonl");
        append_lines(&path, 1 << 20, 1, None, &chained(1..=3, "a")).unwrap_or_else(|e| panic!("{e}"));
        let sink = FileSink {
            path: path.clone(),
            rotate_bytes: 1 << 20,
            keep: 1,
            on_disk: parking_lot::Mutex::new(None),
        };
        assert_eq!(
            sink.holds().await.ok().flatten(),
            Some(AuditMark {
                seq: 3,
                hash: Some("a-3".into())
            })
        );
        let line = |seq: i64, history: &str| AuditLine {
            seq,
            hash: format!("{history}-{seq}"),
            text: format!("{{\"seq\":{seq},\"hash\":\"{history}-{seq}\"}}"),
        };
        assert!(sink.ship("file", &[line(3, "b"), line(4, "b")]).await.is_err());
        assert!(sink.ship("file", &[line(4, "a"), line(5, "a")]).await.is_ok());
        assert_eq!(
            sink.holds().await.ok().flatten().map(|m| m.seq),
            Some(5)
        );
    }
}
