//! Profiles and stored credentials for the CLI for people, pure of HTTP.
//!
//! Everything lives in `$XDG_CONFIG_HOME/jitgate/` (else `$HOME/.config/jitgate/`), a directory
//! only its owner may enter (0700):
//! - `config.toml`: `active = "NAME"` and `[profiles.NAME] url = "..."`; no secrets, 0600 still;
//! - `credentials/NAME.json`: one profile's credential, 0600, written atomically (a temporary
//!   file created 0600 in the same directory, synced, renamed over the old one).
//!
//! A file or directory that group or others may read or write, or that another user owns, is
//! refused, as ssh refuses such a key: a credential someone else could have read is not a
//! secret any more, and one someone else could have written is not ours.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The profile used when none is named.
pub const DEFAULT_PROFILE: &str = "default";
/// The longest profile name.
const MAX_PROFILE_NAME: usize = 64;
/// The largest credential or config file read: anything bigger is not ours.
const MAX_FILE_BYTES: u64 = 256 * 1024;
/// How long a command waits for another jitgate that holds a profile's credential lock: twice
/// the longest a refresh can take (discovery, the keys and the token call, 30 s each). A
/// holder stopped with Ctrl-Z, or hung, must not hang every later command without a word.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(180);

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error(
        "profile name {shown:?}: {why}; use lower-case letters, digits, '.', '_' and '-' (at most 64, not starting with '.')"
    )]
    BadName { shown: String, why: &'static str },
    #[error("no config directory: set XDG_CONFIG_HOME or HOME")]
    NoHome,
    #[error(
        "{path}: group or others may read or write it (mode {mode:o}): run chmod {fix} {path}, or jitgate login again"
    )]
    Loose { path: String, mode: u32, fix: &'static str },
    #[error("{path}: owned by another user (uid {owner}); remove it and run jitgate login")]
    NotOwned { path: String, owner: u32 },
    #[error("{path}: a symbolic link or not a regular file; remove it and run jitgate login")]
    NotAFile { path: String },
    #[error("{path}: {message}")]
    Malformed { path: String, message: String },
    #[error("another jitgate{holder} has held {path} for {waited} s (stopped with Ctrl-Z, or hung?): try again once it ends")]
    Locked { path: String, holder: String, waited: u64 },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ProfileError + '_ {
    move |source| ProfileError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A profile name is a file name in `credentials/`: a short, plain, visible name, so it can be
/// neither a path (`/`, `..`), nor hide what it is (control, bidi or look-alike characters).
pub fn check_profile_name(name: &str) -> Result<(), ProfileError> {
    let bad = |why| {
        Err(ProfileError::BadName {
            shown: name.chars().take(80).collect::<String>().escape_debug().to_string(),
            why,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_PROFILE_NAME {
        return bad("too long");
    }
    if name.starts_with('.') {
        return bad("starts with '.'");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
    {
        // Lower case only: on a case-insensitive file system `Prod` and `prod` would share
        // one credential file.
        return bad("holds a character other than lower-case letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

/// What one profile names: the server. Never a secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProfileEntry {
    pub url: String,
}

/// `config.toml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The profile used when `--profile` and `JITGATE_PROFILE` say nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<String>,
    #[serde(default)]
    pub profiles: BTreeMap<String, ProfileEntry>,
}

/// A stored credential. Its `Debug` never shows the secret.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Credential {
    /// A bearer token (an API token, or a static token of the server's directory).
    Token {
        /// The server the credential was stored for: it is only ever sent there. Kept in
        /// the credential itself, not only in `config.toml`, so that editing the config
        /// cannot redirect it. A file without one (an older jitgate) is refused.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        token: String,
    },
    /// Single sign-on through an OpenID issuer: the ID token is the bearer token, refreshed
    /// with the refresh token while it lasts. (Filled by `jitgate login` with single sign-on.)
    Oidc {
        /// The jitgate server it was stored for, as for `Token`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        issuer: String,
        client_id: String,
        id_token: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refresh_token: Option<String>,
        expires_at: DateTime<Utc>,
        /// The `sub` of the ID token signed in with: a refreshed one must name the same
        /// (OpenID Connect Core 12.2). Absent in files of an older jitgate.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subject: Option<String>,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Token { .. } => f.write_str("Credential::Token(hidden)"),
            Credential::Oidc { issuer, expires_at, .. } => {
                write!(f, "Credential::Oidc({issuer}, expires {expires_at}, tokens hidden)")
            }
        }
    }
}

impl Credential {
    /// The bearer token to send.
    pub fn bearer(&self) -> &str {
        match self {
            Credential::Token { token, .. } => token,
            Credential::Oidc { id_token, .. } => id_token,
        }
    }

    /// The server this credential may be sent to (`None`: written by an older jitgate).
    pub fn url(&self) -> Option<&str> {
        match self {
            Credential::Token { url, .. } | Credential::Oidc { url, .. } => url.as_deref(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Credential::Token { .. } => "token",
            Credential::Oidc { .. } => "oidc",
        }
    }
}

/// Why a token may not be stored: it must be sendable as `Authorization: Bearer TOKEN` and
/// never carry a line break or a control character into a file or a header.
pub fn token_problem(token: &str) -> Option<&'static str> {
    if token.is_empty() {
        return Some("it is empty");
    }
    if token.len() > 8192 {
        return Some("it is longer than 8192 bytes");
    }
    if !token.chars().all(|c| c.is_ascii_graphic()) {
        return Some("it holds a space, a line break, a control or a non-ASCII character");
    }
    None
}

/// The config directory: `$XDG_CONFIG_HOME/jitgate` (an absolute XDG_CONFIG_HOME only, as the
/// XDG spec says), else `$HOME/.config/jitgate`.
pub fn default_dir() -> Result<PathBuf, ProfileError> {
    let from = |name: &str| std::env::var_os(name).map(PathBuf::from).filter(|p| p.is_absolute());
    match (from("XDG_CONFIG_HOME"), from("HOME")) {
        (Some(xdg), _) => Ok(xdg.join("jitgate")),
        (None, Some(home)) => Ok(home.join(".config").join("jitgate")),
        (None, None) => Err(ProfileError::NoHome),
    }
}

/// The files of one config directory.
#[derive(Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(dir: PathBuf) -> Self {
        Store { dir }
    }

    #[cfg(test)]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    fn credentials_dir(&self) -> PathBuf {
        self.dir.join("credentials")
    }

    pub fn credential_path(&self, profile: &str) -> Result<PathBuf, ProfileError> {
        check_profile_name(profile)?;
        Ok(self.credentials_dir().join(format!("{profile}.json")))
    }

    /// Refuse a directory that exists and is not private to us. (A missing one is fine: it is
    /// created 0700 when something is written.)
    fn check_dir(path: &Path) -> Result<bool, ProfileError> {
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io(path)(e)),
            Ok(meta) if !meta.is_dir() => Err(ProfileError::NotAFile {
                path: path.display().to_string(),
            }),
            Ok(meta) => {
                check_owner_and_mode(path, &meta, "700")?;
                Ok(true)
            }
        }
    }

    /// Read a file of ours: no symbolic link followed, private, ours, of sane size. `None`
    /// when it does not exist.
    fn read_private(&self, path: &Path) -> Result<Option<String>, ProfileError> {
        if !Self::check_dir(&self.dir)? {
            return Ok(None);
        }
        if let Some(parent) = path.parent().filter(|p| *p != self.dir) {
            if !Self::check_dir(parent)? {
                return Ok(None);
            }
        }
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path);
        let mut file = match opened {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            // ELOOP: the last component is a symbolic link.
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                return Err(ProfileError::NotAFile {
                    path: path.display().to_string(),
                })
            }
            Err(e) => return Err(io(path)(e)),
        };
        let meta = file.metadata().map_err(io(path))?;
        if !meta.is_file() {
            return Err(ProfileError::NotAFile {
                path: path.display().to_string(),
            });
        }
        check_owner_and_mode(path, &meta, "600")?;
        if meta.len() > MAX_FILE_BYTES {
            return Err(ProfileError::Malformed {
                path: path.display().to_string(),
                message: format!("larger than {MAX_FILE_BYTES} bytes"),
            });
        }
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(io(path))?;
        Ok(Some(text))
    }

    /// `config.toml`, or an empty config when there is none.
    pub fn load_config(&self) -> Result<Config, ProfileError> {
        let path = self.config_path();
        let Some(text) = self.read_private(&path)? else {
            return Ok(Config::default());
        };
        let config: Config = toml::from_str(&text).map_err(|e| ProfileError::Malformed {
            path: match e.span() {
                Some(span) => {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    format!("{}:{line}", path.display())
                }
                None => path.display().to_string(),
            },
            message: e.message().replace('\n', " "),
        })?;
        for name in config.profiles.keys().chain(config.active.iter()) {
            check_profile_name(name).map_err(|e| ProfileError::Malformed {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        }
        Ok(config)
    }

    pub fn save_config(&self, config: &Config) -> Result<(), ProfileError> {
        let text = toml::to_string(config).map_err(|e| ProfileError::Malformed {
            path: self.config_path().display().to_string(),
            message: e.to_string(),
        })?;
        self.create_dir(&self.dir)?;
        write_atomically(&self.config_path(), text.as_bytes(), 0o600)
    }

    /// The credential stored for `profile`, if any.
    pub fn load_credential(&self, profile: &str) -> Result<Option<Credential>, ProfileError> {
        let path = self.credential_path(profile)?;
        let Some(text) = self.read_private(&path)? else {
            return Ok(None);
        };
        // serde_json's message never quotes a string value of the file: the token stays out.
        let credential: Credential = serde_json::from_str(&text).map_err(|e| ProfileError::Malformed {
            path: path.display().to_string(),
            message: format!(
                "not a credential (line {}); run jitgate login --profile {profile}",
                e.line()
            ),
        })?;
        if let Some(problem) = token_problem(credential.bearer()) {
            return Err(ProfileError::Malformed {
                path: path.display().to_string(),
                message: format!("the stored token is unusable: {problem}; run jitgate login --profile {profile}"),
            });
        }
        Ok(Some(credential))
    }

    pub fn save_credential(&self, profile: &str, credential: &Credential) -> Result<PathBuf, ProfileError> {
        let path = self.credential_path(profile)?;
        let text = serde_json::to_vec_pretty(credential).map_err(|e| ProfileError::Malformed {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        self.create_dir(&self.dir)?;
        self.create_dir(&self.credentials_dir())?;
        write_atomically(&path, &text, 0o600)?;
        Ok(path)
    }

    /// Remove the credential of `profile`: `true` when there was one.
    pub fn remove_credential(&self, profile: &str) -> Result<bool, ProfileError> {
        let path = self.credential_path(profile)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Take the exclusive lock of `profile`'s credential (`credentials/PROFILE.lock`, created
    /// 0600 beside the credential, never through a symbolic link), waiting up to [`LOCK_WAIT`]
    /// for another jitgate that holds it. Held until the returned guard is dropped. Two jitgate
    /// commands refreshing the same single sign-on credential at once would each spend the
    /// refresh token, and a provider that rotates refresh tokens would then end the session:
    /// the second one waits, re-reads the credential, and finds it fresh. `login` and `logout`
    /// take it too, so that a refresh in flight cannot write its old session over theirs.
    pub fn lock_credential(&self, profile: &str) -> Result<CredentialLock, ProfileError> {
        self.lock_credential_within(profile, LOCK_WAIT)
    }

    /// [`lock_credential`](Self::lock_credential), waiting at most `wait`; then
    /// [`ProfileError::Locked`], naming the holder's process id (which each holder writes
    /// into the lock file).
    pub fn lock_credential_within(
        &self,
        profile: &str,
        wait: std::time::Duration,
    ) -> Result<CredentialLock, ProfileError> {
        check_profile_name(profile)?;
        self.create_dir(&self.dir)?;
        self.create_dir(&self.credentials_dir())?;
        let path = self.credentials_dir().join(format!("{profile}.lock"));
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&path);
        let file = match opened {
            Ok(file) => file,
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                return Err(ProfileError::NotAFile {
                    path: path.display().to_string(),
                })
            }
            Err(e) => return Err(io(&path)(e)),
        };
        let meta = file.metadata().map_err(io(&path))?;
        if !meta.is_file() {
            return Err(ProfileError::NotAFile {
                path: path.display().to_string(),
            });
        }
        check_owner_and_mode(&path, &meta, "600")?;
        let started = std::time::Instant::now();
        loop {
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => break,
                Err(e) if e == rustix::io::Errno::WOULDBLOCK || e == rustix::io::Errno::INTR => {}
                Err(e) => return Err(io(&path)(e.into())),
            }
            if started.elapsed() >= wait {
                return Err(ProfileError::Locked {
                    holder: lock_holder(&file),
                    path: path.display().to_string(),
                    waited: started.elapsed().as_secs(),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        // Who holds it, for the next one's message; the lock is what counts, not this text.
        let mut file = file;
        let _ = file.set_len(0);
        let _ = std::io::Seek::rewind(&mut file);
        let _ = write!(file, "{}", std::process::id());
        Ok(CredentialLock { _file: file })
    }

    /// Create a directory 0700 (and check one that exists).
    fn create_dir(&self, path: &Path) -> Result<(), ProfileError> {
        if Self::check_dir(path)? {
            return Ok(());
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(io(path))?;
        // The umask may have taken bits away, never added any; set exactly 0700 all the same.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(io(path))
    }
}

/// The process id the holder of a lock wrote into it, as ` (pid N)`, or nothing.
fn lock_holder(file: &std::fs::File) -> String {
    let mut text = String::new();
    let _ = file.take(32).read_to_string(&mut text);
    match text.trim().parse::<u32>() {
        Ok(pid) => format!(" (pid {pid})"),
        Err(_) => String::new(),
    }
}

/// An exclusive lock on one profile's credential: released when dropped (the file is closed).
/// The lock file itself stays: removing it while another process waits on it would let a
/// third one lock a new file of the same name.
pub struct CredentialLock {
    _file: std::fs::File,
}

fn check_owner_and_mode(path: &Path, meta: &std::fs::Metadata, fix: &'static str) -> Result<(), ProfileError> {
    let me = rustix::process::getuid().as_raw();
    if meta.uid() != me {
        return Err(ProfileError::NotOwned {
            path: path.display().to_string(),
            owner: meta.uid(),
        });
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ProfileError::Loose {
            path: path.display().to_string(),
            mode,
            fix,
        });
    }
    Ok(())
}

/// Write `bytes` to `path` so that a reader sees the old file or the new one, never half of
/// one, and the new one is never readable by others, not even for a moment: a temporary file
/// created with `mode` beside it, synced, renamed over it.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), ProfileError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let mut attempt = 0u32;
    let (temp, mut file) = loop {
        let temp = dir.join(format!(".{name}.{}.{attempt}.tmp", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&temp)
        {
            Ok(file) => break (temp, file),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 100 => attempt += 1,
            Err(e) => return Err(io(&temp)(e)),
        }
    };
    let written = (|| {
        // Exactly `mode`, whatever the umask left.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(io(path)(e));
    }
    // The rename itself durable too.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("jitgate"));
        (dir, store)
    }

    #[test]
    fn profile_names_are_plain_file_names() {
        for good in ["default", "prod", "eu-west.1", "a_b", &"x".repeat(64)] {
            assert!(check_profile_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "../x",
            "a\0b",
            "a\nb",
            "a\u{202e}b",
            "Prod",
            "PROD",
            "prоd", // Cyrillic о
            "a b",
            &"x".repeat(65),
            &"é".repeat(150),
        ] {
            assert!(check_profile_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_credential_round_trips_private_and_atomically() {
        let (_tmp, store) = store();
        assert!(store.load_credential("default").unwrap().is_none());
        let cred = Credential::Token {
            url: Some("https://jit.example".into()),
            token: "demo-alice".into(),
        };
        let path = store.save_credential("default", &cred).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(store.dir()).unwrap().mode() & 0o777, 0o700);
        assert_eq!(store.load_credential("default").unwrap(), Some(cred));
        // No temporary file left behind.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
        assert!(store.remove_credential("default").unwrap());
        assert!(!store.remove_credential("default").unwrap());
    }

    #[test]
    fn the_oidc_credential_has_a_fixed_format_and_debug_hides_secrets() {
        let json = r#"{"kind":"oidc","url":"https://jit.example","issuer":"https://idp","client_id":"cli","id_token":"eyJ.x.y","refresh_token":"r1","expires_at":"2026-01-01T00:00:00Z"}"#;
        let cred: Credential = serde_json::from_str(json).unwrap();
        assert_eq!(cred.bearer(), "eyJ.x.y");
        assert_eq!(cred.url(), Some("https://jit.example"));
        let shown = format!("{cred:?}");
        assert!(!shown.contains("eyJ") && !shown.contains("r1"), "{shown}");
        let token = Credential::Token {
            url: None,
            token: "s3cret".into(),
        };
        assert!(!format!("{token:?}").contains("s3cret"));
    }

    #[test]
    fn loose_modes_symlinks_and_garbage_are_refused() {
        let (tmp, store) = store();
        let path = store
            .save_credential(
                "default",
                &Credential::Token {
                    url: None,
                    token: "t".into(),
                },
            )
            .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = store.load_credential("default").unwrap_err().to_string();
        assert!(e.contains("chmod 600") && e.contains("default.json"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(store.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = store.load_credential("default").unwrap_err().to_string();
        assert!(e.contains("chmod 700"), "{e}");
        std::fs::set_permissions(store.dir(), std::fs::Permissions::from_mode(0o700)).unwrap();
        // A symbolic link to a file elsewhere, even a private one, is not followed.
        let elsewhere = tmp.path().join("elsewhere.json");
        write_atomically(&elsewhere, br#"{"kind":"token","token":"x"}"#, 0o600).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        assert!(matches!(
            store.load_credential("default"),
            Err(ProfileError::NotAFile { .. })
        ));
        std::fs::remove_file(&path).unwrap();
        write_atomically(
            &store.config_path(),
            b"active = \"default\"\n[profiles.default]\nurl = \n",
            0o600,
        )
        .unwrap();
        let e = store.load_config().unwrap_err().to_string();
        assert!(e.contains("config.toml:3"), "{e}");
    }

    #[test]
    fn oversize_files_are_refused_unread() {
        let (_tmp, store) = store();
        store.save_config(&Config::default()).unwrap();
        let huge = format!("# {}\n", "x".repeat(MAX_FILE_BYTES as usize));
        write_atomically(&store.config_path(), huge.as_bytes(), 0o600).unwrap();
        let e = store.load_config().unwrap_err().to_string();
        assert!(e.contains("larger than"), "{e}");
        let path = store
            .save_credential(
                "default",
                &Credential::Token {
                    url: None,
                    token: "t".into(),
                },
            )
            .unwrap();
        write_atomically(&path, huge.as_bytes(), 0o600).unwrap();
        assert!(store
            .load_credential("default")
            .unwrap_err()
            .to_string()
            .contains("larger than"));
    }

    #[test]
    fn tokens_with_control_characters_are_refused() {
        assert!(token_problem("demo-alice").is_none());
        for bad in ["", "a\nb", "a b", "a\0b", "a\u{7f}", "тoken", "a\u{200b}b"] {
            assert!(token_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn a_lock_held_too_long_is_a_one_line_error_naming_the_holder() {
        let (_tmp, store) = store();
        let held = store.lock_credential("p").unwrap();
        // flock locks belong to the open file, so a second open in this process waits as
        // another jitgate would.
        let started = std::time::Instant::now();
        let e = match store.lock_credential_within("p", std::time::Duration::from_millis(300)) {
            Err(e) => e,
            Ok(_) => panic!("locked twice"),
        };
        let took = started.elapsed();
        assert!(took >= std::time::Duration::from_millis(300));
        assert!(took < std::time::Duration::from_secs(3), "{took:?}");
        let line = e.to_string();
        let path = store.dir().join("credentials").join("p.lock");
        // The wait it names is whole seconds of the time it waited: 0 s normally, more only
        // if the machine stalled the waiter (never more than the test saw go by).
        let said = |waited: u64| {
            format!(
                "another jitgate (pid {}) has held {} for {waited} s (stopped with Ctrl-Z, or hung?): try again once it ends",
                std::process::id(),
                path.display()
            )
        };
        assert!(
            (0..=took.as_secs()).any(|waited| line == said(waited)),
            "{line:?} is not {:?} (waited {took:?})",
            said(0)
        );
        // Once it is let go, the next one takes it at once.
        drop(held);
        let started = std::time::Instant::now();
        let _again = store
            .lock_credential_within("p", std::time::Duration::from_secs(5))
            .unwrap();
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(LOCK_WAIT >= std::time::Duration::from_secs(90) && LOCK_WAIT <= std::time::Duration::from_secs(300));
    }

    #[test]
    fn config_round_trips() {
        let (_tmp, store) = store();
        let mut config = Config {
            active: Some("prod".into()),
            ..Config::default()
        };
        config.profiles.insert(
            "prod".into(),
            ProfileEntry {
                url: "https://jit.example".into(),
            },
        );
        store.save_config(&config).unwrap();
        assert_eq!(store.load_config().unwrap(), config);
        assert_eq!(std::fs::metadata(store.config_path()).unwrap().mode() & 0o777, 0o600);
    }
}
