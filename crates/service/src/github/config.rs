//! `[github]` in the server's config file (docs/github.md), checked before start.

use serde::Deserialize;
use std::path::PathBuf;

/// `[github]`: the GitHub App jitgate is.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GithubConfig {
    /// The environment variable holding the App's webhook secret (required).
    pub webhook_secret_env: Option<String>,
    /// The App's id (required to call GitHub).
    pub app_id: Option<u64>,
    /// The App's private key (PEM, RSA), to sign the App's JWTs (required to call GitHub).
    pub private_key_file: Option<PathBuf>,
    /// GitHub's REST API: `https://api.github.com`, or `https://HOST/api/v3` for GitHub
    /// Enterprise Server.
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// The groups a deployment's requester (`ci:OWNER/REPO`) is in, for `requesters` and Cedar.
    #[serde(default = "default_requester_groups")]
    pub requester_groups: Vec<String>,
    /// Owners (organisations or users) whose repositories may file requests; unset: any
    /// installation of the App.
    pub allowed_owners: Option<Vec<String>>,
    /// Comment on a deployment's pull requests with the approve command and a link.
    #[serde(default = "default_true")]
    pub announce: bool,
    /// A SCIM user attribute holding the user's GitHub login (for example
    /// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber` or a custom
    /// extension's); unset: only `github_user` in directory.toml maps logins to principals.
    pub scim_login_attribute: Option<String>,
}

fn default_api_url() -> String {
    "https://api.github.com".into()
}

fn default_requester_groups() -> Vec<String> {
    vec!["ci".into()]
}

fn default_true() -> bool {
    true
}

/// A `[github]` value that cannot be used, naming the key and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("github config: {0}")]
pub struct GithubConfigError(pub String);

/// `[github]`, checked: what the service needs. (`Debug` hides the secret.)
#[derive(Clone, PartialEq, Eq)]
pub struct GithubSettings {
    /// The webhook secret's bytes.
    pub webhook_secret: Vec<u8>,
    /// `api_url` without a trailing slash.
    pub api_url: String,
    pub requester_groups: Vec<String>,
    /// Lower-cased.
    pub allowed_owners: Option<Vec<String>>,
    pub announce: bool,
    pub scim_login_attribute: Option<String>,
}

/// The shortest webhook secret accepted: GitHub signs with whatever it is given, and a short
/// secret can be guessed from signed deliveries (GitHub advises a random string of high
/// entropy; `openssl rand -hex 32` gives one).
pub const MIN_WEBHOOK_SECRET_BYTES: usize = 16;

/// The longest GitHub login or organisation name.
pub const MAX_GITHUB_LOGIN: usize = 39;

impl std::fmt::Debug for GithubSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubSettings")
            .field("webhook_secret", &"<hidden>")
            .field("api_url", &self.api_url)
            .field("requester_groups", &self.requester_groups)
            .field("allowed_owners", &self.allowed_owners)
            .field("announce", &self.announce)
            .field("scim_login_attribute", &self.scim_login_attribute)
            .finish()
    }
}

impl GithubConfig {
    /// The settings, reading the secret from the environment through `env`.
    pub fn settings(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<GithubSettings, GithubConfigError> {
        let fail = |message: String| Err(GithubConfigError(message));
        let Some(variable) = self.webhook_secret_env.as_deref() else {
            return fail(
                "github.webhook_secret_env is required: the environment variable holding the App's webhook secret"
                    .into(),
            );
        };
        if variable.is_empty() || !variable.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return fail(format!(
                "github.webhook_secret_env: '{}' is not an environment variable's name (ASCII letters, digits and _)",
                variable.escape_debug()
            ));
        }
        let secret = match env(variable) {
            Some(secret) if !secret.trim().is_empty() => secret,
            _ => {
                return fail(format!(
                    "github.webhook_secret_env: the environment variable {variable} is not set (or empty); set it to the App's webhook secret"
                ))
            }
        };
        if secret.len() < MIN_WEBHOOK_SECRET_BYTES {
            return fail(format!(
                "github.webhook_secret_env: the secret in {variable} is shorter than {MIN_WEBHOOK_SECRET_BYTES} bytes; use a random one (openssl rand -hex 32) in the App's settings and here"
            ));
        }
        let api_url = api_url(&self.api_url)
            .map_err(|why| GithubConfigError(format!("github.api_url: '{}' {why}", self.api_url.escape_debug())))?;
        let mut requester_groups: Vec<String> = Vec::new();
        for group in &self.requester_groups {
            if let Some(problem) = jitgate_core::principal_name_problem(group) {
                return fail(format!(
                    "github.requester_groups: group name '{}' {problem}",
                    group.escape_debug()
                ));
            }
            if jitgate_policy::is_reserved_group(group) {
                return fail(format!(
                    "github.requester_groups: '{group}' is one of jitgate's own roles ({}); a workflow run must never be in it",
                    jitgate_policy::RESERVED_GROUPS.join(", ")
                ));
            }
            if group.starts_with(jitgate_core::Step::PRINCIPAL_PREFIX) {
                return fail(format!(
                    "github.requester_groups: '{group}': names starting with '{}' are reserved",
                    jitgate_core::Step::PRINCIPAL_PREFIX
                ));
            }
            if !requester_groups.contains(group) {
                requester_groups.push(group.clone());
            }
        }
        let allowed_owners = match &self.allowed_owners {
            None => None,
            Some(owners) if owners.is_empty() => {
                return fail(
                    "github.allowed_owners is empty, so no repository could ever file a request; list the owners, or leave the key out to accept every installation of the App".into(),
                )
            }
            Some(owners) => {
                let mut lowered: Vec<String> = Vec::new();
                for owner in owners {
                    if let Some(problem) = github_login_problem(owner) {
                        return fail(format!(
                            "github.allowed_owners: '{}' {problem}",
                            owner.escape_debug()
                        ));
                    }
                    let owner = owner.to_ascii_lowercase();
                    if !lowered.contains(&owner) {
                        lowered.push(owner);
                    }
                }
                Some(lowered)
            }
        };
        let scim_login_attribute = match &self.scim_login_attribute {
            None => None,
            Some(attribute) => {
                if attribute.is_empty() || attribute.len() > 256 || !attribute.chars().all(|c| c.is_ascii_graphic()) {
                    return fail(format!(
                        "github.scim_login_attribute: '{}' is not a SCIM attribute's name (1 to 256 visible ASCII characters, like urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber)",
                        attribute.escape_debug()
                    ));
                }
                Some(attribute.clone())
            }
        };
        Ok(GithubSettings {
            webhook_secret: secret.into_bytes(),
            api_url,
            requester_groups,
            allowed_owners,
            announce: self.announce,
            scim_login_attribute,
        })
    }
}

/// Why `name` is not the shape of a GitHub login or organisation, or `None`: 1 to 39 ASCII
/// letters, digits and hyphens, no hyphen first, last or twice in a row. Anything else (a
/// look-alike letter from another script, an invisible character) can never be GitHub's.
pub fn github_login_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("is empty".into());
    }
    if name.len() > MAX_GITHUB_LOGIN {
        return Some(format!(
            "is longer than {MAX_GITHUB_LOGIN} characters, as no GitHub name is"
        ));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Some("holds a character GitHub names never hold (they are ASCII letters, digits and hyphens)".into());
    }
    if name.starts_with('-') || name.ends_with('-') || name.contains("--") {
        return Some("has a hyphen first, last or twice in a row, as no GitHub name does".into());
    }
    None
}

/// `api_url` checked: `https://HOST[:PORT][/PATH]` (plain `http` only to a loopback host, for
/// tests and a local stand-in: a token sent in clear elsewhere could be read on the way), no
/// credentials, query or fragment; without its trailing slashes, so paths join with one `/`.
fn api_url(text: &str) -> Result<String, String> {
    if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("holds a space or a control character".into());
    }
    let lower = text.to_ascii_lowercase();
    let (secure, rest) = if lower.starts_with("https://") {
        (true, &text["https://".len()..])
    } else if lower.starts_with("http://") {
        (false, &text["http://".len()..])
    } else {
        return Err(
            "is not an https:// URL (https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server)"
                .into(),
        );
    };
    if rest.contains(['?', '#']) {
        return Err("has a query or fragment; give the API's base URL only".into());
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        return Err("holds credentials; jitgate authenticates as the App, never with credentials in the URL".into());
    }
    let host = if let Some(bracketed) = authority.strip_prefix('[') {
        match bracketed.split_once(']') {
            Some((host, _)) => host,
            None => return Err("has an unclosed [ in its host".into()),
        }
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    if host.is_empty() {
        return Err("has no host".into());
    }
    if !secure && !is_loopback(host) {
        return Err(
            "is http:// to a host that is not loopback; use https:// (tokens would cross the network in clear)".into(),
        );
    }
    Ok(text.trim_end_matches('/').to_string())
}

/// `localhost`, 127.0.0.0/8 or ::1.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const SECRET: &str = "It's a Secret to Everybody";

    fn config(extra: &str) -> GithubConfig {
        toml::from_str(&format!("webhook_secret_env = \"GH_SECRET\"\napp_id = 1\n{extra}")).unwrap()
    }

    fn with_secret(name: &str) -> Option<String> {
        (name == "GH_SECRET").then(|| SECRET.to_string())
    }

    fn refused(config: &GithubConfig) -> String {
        config.settings(&with_secret).unwrap_err().0
    }

    #[test]
    fn defaults_read_the_secret_and_call_github_com() {
        let settings = config("").settings(&with_secret).unwrap();
        assert_eq!(settings.webhook_secret, SECRET.as_bytes());
        assert_eq!(settings.api_url, "https://api.github.com");
        assert_eq!(settings.requester_groups, ["ci"]);
        assert_eq!(settings.allowed_owners, None);
        assert!(settings.announce);
        assert_eq!(settings.scim_login_attribute, None);
    }

    #[test]
    fn the_secret_is_required_and_the_error_names_the_variable() {
        let mut no_key = config("");
        no_key.webhook_secret_env = None;
        assert!(refused(&no_key).contains("webhook_secret_env is required"));
        let unset = config("").settings(&|_| None).unwrap_err().0;
        assert!(unset.contains("GH_SECRET is not set"), "{unset}");
        let empty = config("").settings(&|_| Some("  ".into())).unwrap_err().0;
        assert!(empty.contains("GH_SECRET"), "{empty}");
        let short = config("").settings(&|_| Some("short".into())).unwrap_err().0;
        assert!(
            short.contains("shorter than 16 bytes") && short.contains("GH_SECRET"),
            "{short}"
        );
        let mut odd = config("");
        odd.webhook_secret_env = Some("GH SECRET\u{0}".into());
        assert!(
            refused(&odd).contains("not an environment variable"),
            "{}",
            refused(&odd)
        );
    }

    #[test]
    fn api_url_is_https_or_loopback_http_and_loses_its_trailing_slash() {
        for (given, kept) in [
            ("https://api.github.com/", "https://api.github.com"),
            ("https://ghe.example.com/api/v3//", "https://ghe.example.com/api/v3"),
            (
                "HTTPS://ghe.example.com:8443/api/v3",
                "HTTPS://ghe.example.com:8443/api/v3",
            ),
            ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
            ("http://localhost:9000/", "http://localhost:9000"),
            ("http://[::1]:9000/api", "http://[::1]:9000/api"),
        ] {
            let settings = config(&format!("api_url = \"{given}\""))
                .settings(&with_secret)
                .unwrap();
            assert_eq!(settings.api_url, kept, "{given}");
        }
        for (given, why) in [
            ("http://api.github.com", "not loopback"),
            ("http://127.0.0.1.evil.example", "not loopback"),
            ("http://localhost@evil.example", "credentials"),
            ("https://user:pw@api.github.com", "credentials"),
            ("ftp://api.github.com", "not an https:// URL"),
            ("api.github.com", "not an https:// URL"),
            ("https://", "no host"),
            ("https://api.github.com/?x=1", "query"),
            ("https://api.github.com/#x", "query"),
            ("https://api.github.com/\u{0}", "control"),
            ("https://api.git hub.com", "space"),
            ("http://[::1", "unclosed"),
        ] {
            let message = refused(&config(&format!("api_url = {}", serde_json::to_string(given).unwrap())));
            assert!(message.contains(why), "{given}: {message}");
            assert!(message.starts_with("github.api_url"), "{message}");
        }
    }

    #[test]
    fn requester_groups_are_plain_names_and_never_a_role_of_jitgate() {
        let settings = config("requester_groups = [\"ci\", \"deployers\", \"ci\"]")
            .settings(&with_secret)
            .unwrap();
        assert_eq!(settings.requester_groups, ["ci", "deployers"]);
        assert!(config("requester_groups = []")
            .settings(&with_secret)
            .unwrap()
            .requester_groups
            .is_empty());
        for (group, why) in [
            ("admins", "jitgate's own roles"),
            ("Admins", "jitgate's own roles"),
            ("auditors", "jitgate's own roles"),
            ("agents", "jitgate's own roles"),
            ("user:alice", "reserved"),
            ("ci\u{200b}", "invisible"),
            ("c\u{0}i", "control"),
            ("", "empty"),
            ("ѕre", "non-ASCII"),
        ] {
            let toml_text = format!("requester_groups = [{}]", serde_json::to_string(group).unwrap());
            let message = refused(&config(&toml_text));
            assert!(message.contains(why), "{group:?}: {message}");
        }
        let long = format!("requester_groups = [\"{}\"]", "g".repeat(300));
        assert!(refused(&config(&long)).contains("longer"));
    }

    #[test]
    fn allowed_owners_are_github_names_lower_cased() {
        let settings = config("allowed_owners = [\"Example\", \"my-org\", \"example\"]")
            .settings(&with_secret)
            .unwrap();
        assert_eq!(settings.allowed_owners.unwrap(), ["example", "my-org"]);
        assert!(refused(&config("allowed_owners = []")).contains("no repository could ever"));
        for owner in [
            "еxample", // Cyrillic е: looks like GitHub's, is not
            "exa\u{200b}mple",
            "ex\u{0}ample",
            "-example",
            "example-",
            "ex--ample",
            "ex_ample",
            "ex ample",
            "",
            &"a".repeat(40),
        ] {
            let toml_text = format!("allowed_owners = [{}]", serde_json::to_string(owner).unwrap());
            let message = refused(&config(&toml_text));
            assert!(message.starts_with("github.allowed_owners"), "{owner:?}: {message}");
        }
        assert_eq!(github_login_problem(&"a".repeat(39)), None);
        assert_eq!(github_login_problem("octo-cat-1"), None);
    }

    #[test]
    fn scim_login_attribute_is_a_visible_name() {
        let attribute = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber";
        let settings = config(&format!("scim_login_attribute = \"{attribute}\""))
            .settings(&with_secret)
            .unwrap();
        assert_eq!(settings.scim_login_attribute.as_deref(), Some(attribute));
        for bad in ["", "a b", "x\u{0}", "\u{202e}x"] {
            let toml_text = format!("scim_login_attribute = {}", serde_json::to_string(bad).unwrap());
            assert!(refused(&config(&toml_text)).contains("scim_login_attribute"), "{bad:?}");
        }
    }

    #[test]
    fn unknown_keys_are_refused_when_parsed() {
        let parsed: Result<GithubConfig, _> = toml::from_str("webhook_secret_env = \"X\"\napi_uri = \"https://x\"");
        assert!(parsed.unwrap_err().to_string().contains("api_uri"));
    }
}
