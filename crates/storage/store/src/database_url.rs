//! Database URLs, which may hold a password. The type shows itself (`Display`, `Debug`) with
//! every password replaced by `***`, and errors met while connecting have the password taken
//! out, so no log line or message that names the database carries its credential.

use crate::StoreError;
use std::fmt;

/// What a password is shown as.
const HIDDEN: &str = "***";

/// A database URL and, when it came apart from the URL (a password file), its password.
#[derive(Clone)]
pub struct DatabaseUrl {
    url: String,
    password: Option<String>,
}

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        DatabaseUrl {
            url: url.into(),
            password: None,
        }
    }

    /// Connect with `password` (read from a file), for a PostgreSQL URL that holds none.
    pub fn with_password(self, password: String) -> Result<Self, StoreError> {
        if !self.is_postgres() {
            return Err(StoreError::Url(format!(
                "{self}: only a PostgreSQL database takes a password"
            )));
        }
        if userinfo_password(&self.url).is_some() || query_passwords(&self.url).next().is_some() {
            return Err(StoreError::Url(format!(
                "{self} holds a password already: give it once, in the URL or in the password file"
            )));
        }
        if password.is_empty() {
            return Err(StoreError::Url("the database password file is empty".into()));
        }
        Ok(DatabaseUrl {
            password: Some(password),
            ..self
        })
    }

    pub fn is_postgres(&self) -> bool {
        self.url.starts_with("postgres://") || self.url.starts_with("postgresql://")
    }

    pub(crate) fn expose(&self) -> &str {
        &self.url
    }

    pub(crate) fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// `text` with every password this URL carries (as written and percent-decoded) replaced.
    pub fn scrub(&self, text: &str) -> String {
        let mut secrets: Vec<String> = Vec::new();
        let written = userinfo_password(&self.url)
            .into_iter()
            .chain(query_passwords(&self.url))
            .chain(self.password.as_deref());
        for secret in written {
            secrets.push(secret.to_string());
            secrets.push(percent_decoded(secret));
        }
        // The longest first, so a password holding another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let mut text = text.to_string();
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            text = text.replace(secret.as_str(), HIDDEN);
        }
        text
    }

    /// A store error with the passwords taken out of its message, if it repeated one.
    pub(crate) fn scrub_error(&self, error: StoreError) -> StoreError {
        let text = error.to_string();
        let scrubbed = self.scrub(&text);
        if scrubbed == text {
            error
        } else {
            StoreError::Unavailable(scrubbed)
        }
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.url))?;
        if self.password.is_some() {
            f.write_str(" (password from a file)")?;
        }
        Ok(())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// Where the part after `scheme://` starts (0 when there is no `://`).
fn after_scheme(url: &str) -> usize {
    url.find("://").map_or(0, |i| i + 3)
}

/// The password of `scheme://user:password@host...`. The user information ends at the *last*
/// `@`, so a password written with a raw `@`, `/`, `?` or `#` is still found whole (mistaking a
/// later `@` for its end can only hide more, never less).
fn userinfo_password(url: &str) -> Option<&str> {
    let rest = &url[after_scheme(url)..];
    let userinfo = &rest[..rest.rfind('@')?];
    let colon = userinfo.find(':')?;
    Some(&userinfo[colon + 1..])
}

/// The values of `password=` parameters (`postgres://host/db?password=...`).
fn query_passwords(url: &str) -> impl Iterator<Item = &str> {
    url.split(['?', '&'])
        .skip(1)
        .filter_map(|pair| pair.strip_prefix("password="))
}

fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `url` as it may be shown: the password of its user information and of `password=`
/// parameters replaced by `***`.
pub fn redact(url: &str) -> String {
    let mut shown = url.to_string();
    if let Some(password) = userinfo_password(url) {
        let start = password.as_ptr() as usize - url.as_ptr() as usize;
        shown.replace_range(start..start + password.len(), HIDDEN);
    }
    let passwords: Vec<&str> = query_passwords(url).collect();
    for password in passwords.into_iter().filter(|p| !p.is_empty()) {
        shown = shown.replace(&format!("password={password}"), &format!("password={HIDDEN}"));
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_never_shown() {
        let cases = [
            (
                "postgres://jitgate:s3cret@db.example:5432/jitgate",
                "postgres://jitgate:***@db.example:5432/jitgate",
            ),
            // Raw characters a URL should have escaped, and escaped ones.
            ("postgresql://u:p@ss/w?rd#x@db/j", "postgresql://u:***@db/j"),
            ("postgres://u:p%40ss@db/j", "postgres://u:***@db/j"),
            (
                "postgres://db/j?sslmode=require&password=s3cret&user=u",
                "postgres://db/j?sslmode=require&password=***&user=u",
            ),
            // Nothing to hide.
            ("postgres://u@db/j", "postgres://u@db/j"),
            (
                "sqlite://./jitgate-data/jitgate.db",
                "sqlite://./jitgate-data/jitgate.db",
            ),
            // Not even a URL: what looks like credentials is still hidden.
            ("postgres//u:s3cret@db/j", "postgres//u:***@db/j"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact(url), shown, "{url}");
            let db = DatabaseUrl::new(url);
            assert_eq!(db.to_string(), shown);
            assert_eq!(format!("{db:?}"), format!("DatabaseUrl({shown})"));
        }
    }

    #[test]
    fn errors_lose_the_password_written_or_decoded() {
        let db = DatabaseUrl::new("postgres://u:p%40ss@db/j");
        assert_eq!(
            db.scrub("cannot log in as u with p@ss or p%40ss"),
            "cannot log in as u with *** or ***"
        );
        let from_file = DatabaseUrl::new("postgres://u@db/j")
            .with_password("hunter2".into())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(from_file.scrub("hunter2 refused"), "*** refused");
        assert_eq!(from_file.to_string(), "postgres://u@db/j (password from a file)");
        assert!(!format!("{from_file:?}").contains("hunter2"));
    }

    #[test]
    fn a_password_file_needs_a_postgres_url_without_one() {
        let refused = |url: &str| {
            DatabaseUrl::new(url)
                .with_password("pw".into())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(refused("sqlite://x.db").contains("only a PostgreSQL database"));
        let twice = refused("postgres://u:0ld-pw@db/j");
        assert!(
            twice.contains("holds a password already") && !twice.contains("0ld-pw"),
            "{twice}"
        );
        assert!(refused("postgres://db/j?password=old").contains("holds a password already"));
    }
}
