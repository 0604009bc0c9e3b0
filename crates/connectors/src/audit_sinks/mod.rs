//! Audit sinks: the log shipped, event by event as it is committed, to a file (rotated by
//! size), to stdout (for a log collector), or to an HTTP endpoint (a SIEM's collector). The
//! service (jitgate_service::audit::sinks) keeps each sink's cursor and lease and retries; a
//! sink only ships the lines it is given.

kinds! {
    /// The audit sink kinds jitgate ships.
    pub const KINDS: &[(&str, crate::entry::AuditSinkBuilder)] = {
        "file" => file,
        "stdout" => stdout,
        "http" => http,
    };
}

use crate::config::{At, AuditSinkConfig};

/// The keys only file sinks take, and whether each is set.
fn file_keys(c: &AuditSinkConfig) -> [(&'static str, bool); 3] {
    [
        ("path", c.path.is_some()),
        ("rotate_bytes", c.rotate_bytes.is_some()),
        ("keep", c.keep.is_some()),
    ]
}

/// The keys only HTTP sinks take, and whether each is set.
fn http_keys(c: &AuditSinkConfig) -> [(&'static str, bool); 5] {
    [
        ("url", c.url.is_some() || c.url_env.is_some()),
        ("secret", c.secret.is_some() || c.secret_env.is_some()),
        ("authorization_env", c.authorization_env.is_some()),
        ("batch", c.batch.is_some()),
        ("timeout", c.timeout.is_some()),
    ]
}

/// Refuse the first of `keys` that is set: the sink's kind does not use it.
fn refuse(c: &AuditSinkConfig, at: At<'_>, keys: &[(&str, bool)]) -> Result<(), String> {
    match keys.iter().find(|(_, set)| *set) {
        Some((key, _)) => Err(format!("{}: not used by a {} sink; remove it", at(key), c.kind)),
        None => Ok(()),
    }
}
