//! The file sink: JSON lines appended to a file, rotated by size, synced to disk before the
//! cursor moves. At start it reads its last line and skips what it already holds, so a
//! restart does not write an event twice.

use crate::entry::AuditSinkEntry;
use async_trait::async_trait;
use jitgate_service::connectors::{AuditLine, AuditSink};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

struct FileSink {
    path: PathBuf,
    rotate_bytes: u64,
    keep: usize,
    /// The last event on disk, read once: what a restart must not write again.
    on_disk: parking_lot::Mutex<Option<i64>>,
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
        let known = *self.on_disk.lock();
        let seq = tokio::task::spawn_blocking(move || append_rotating(&path, rotate_bytes, keep, known, &lines))
            .await
            .map_err(|e| e.to_string())??;
        *self.on_disk.lock() = Some(seq);
        Ok(())
    }
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
