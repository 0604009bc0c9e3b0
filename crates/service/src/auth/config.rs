//! How callers may prove who they are: the `[auth]` section of the server's config file.

use ipnet::IpNet;
use jitgate_core::parse_duration;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Everything about authentication that is not in the policy directory.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Identity providers whose JWTs are accepted as bearer tokens.
    #[serde(default)]
    pub oidc: Vec<OidcIssuerConfig>,
    /// An authenticating proxy in front of jitgate that names the user in a header.
    pub trusted_proxy: Option<TrustedProxyConfig>,
    #[serde(default)]
    pub throttle: ThrottleConfig,
}

/// One OIDC issuer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcIssuerConfig {
    /// The `iss` claim, exactly (`https://token.actions.githubusercontent.com`).
    pub issuer: String,
    /// Accepted `aud` values; a token must name at least one.
    pub audience: Vec<String>,
    /// The issuer's public keys as a JWKS document on disk (re-read when a token names a key
    /// it does not hold).
    pub jwks_file: Option<PathBuf>,
    /// The issuer's JWKS URL (fetched at start, cached, fetched again on an unknown `kid` and
    /// every hour). Without `jwks_file` and `jwks_url`, the `jwks_uri` of the issuer's
    /// discovery document (`ISSUER/.well-known/openid-configuration`).
    pub jwks_url: Option<String>,
    /// Accepted signing algorithms. Only asymmetric ones may be named.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Clock-skew allowance for `exp` and `nbf`.
    #[serde(default = "default_leeway")]
    pub leeway: String,
    /// The claim that names the principal (default `sub`; `repository` with `github_actions`).
    pub principal_claim: Option<String>,
    /// Put before the claim's value to make the principal (`okta:`; `ci:` with
    /// `github_actions`). Required unless the claim is `sub`: see `OidcIssuerConfig::validate`.
    pub principal_prefix: Option<String>,
    /// A claim holding the principal's groups (a list of strings, or one string).
    pub groups_claim: Option<String>,
    /// Groups every principal of this issuer belongs to.
    pub groups: Option<Vec<String>>,
    /// GitHub Actions tokens: the principal is `ci:OWNER/REPO`, the claims `repository`,
    /// `ref`, `environment`, `workflow` and `actor` reach the policy as `context.ci`, and the
    /// principal is in the group `ci` unless `groups` says otherwise.
    #[serde(default)]
    pub github_actions: bool,
    /// With `github_actions`: the GitHub organisations or users whose workflows may
    /// authenticate. Required, because any repository on GitHub can obtain a token for any
    /// audience from GitHub's issuer.
    pub allowed_owners: Option<Vec<String>>,
    /// The shortest time between two JWKS fetches triggered by unknown keys.
    #[serde(default = "default_min_refresh")]
    pub jwks_min_refresh: String,
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into(), "EdDSA".into()]
}

fn default_leeway() -> String {
    "60s".into()
}

fn default_min_refresh() -> String {
    "10s".into()
}

/// An authenticating proxy: requests from `sources` may name their user in `user_header`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedProxyConfig {
    /// The header that names the authenticated user (`X-Forwarded-User`).
    pub user_header: String,
    /// An optional header with the user's groups, comma-separated.
    pub groups_header: Option<String>,
    /// The proxy's addresses, as CIDR blocks (`10.0.0.5/32`). The headers from anyone else
    /// are refused.
    pub sources: Vec<IpNet>,
}

/// Slowing down whoever keeps failing to authenticate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleConfig {
    /// Failures a source may have within `window` before its further failing attempts are
    /// slowed. A request that authenticates is never slowed.
    #[serde(default = "default_free_failures")]
    pub free_failures: u32,
    /// How long failures are remembered.
    #[serde(default = "default_window")]
    pub window: String,
    /// The longest delay a refusal is held for.
    #[serde(default = "default_max_delay")]
    pub max_delay: String,
    /// The most refusals held at once, across all sources; past it refusals are answered at
    /// once, so guessers cannot make the server hold unbounded connections.
    #[serde(default = "default_max_delayed")]
    pub max_delayed: usize,
}

fn default_max_delayed() -> usize {
    1024
}

fn default_free_failures() -> u32 {
    10
}

fn default_window() -> String {
    "5m".into()
}

fn default_max_delay() -> String {
    "5s".into()
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            free_failures: default_free_failures(),
            window: default_window(),
            max_delay: default_max_delay(),
            max_delayed: default_max_delayed(),
        }
    }
}

/// A config value that cannot be used, naming the key and the fix.
#[derive(Debug, thiserror::Error)]
#[error("auth config: {0}")]
pub struct ConfigError(pub String);

/// Algorithms that may verify identity tokens. Symmetric (HS*) ones are absent on purpose: a
/// shared secret would let whoever holds it mint identities, and accepting HS256 where an
/// issuer signs with RSA is the classic key-confusion forgery.
pub const ASYMMETRIC_ALGORITHMS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

pub fn duration(field: &str, text: &str) -> Result<Duration, ConfigError> {
    if matches!(text.trim(), "0" | "0s") {
        return Ok(Duration::ZERO);
    }
    parse_duration(text)
        .map(|d| Duration::from_secs(d.0))
        .map_err(|m| ConfigError(format!("{field}: {m}")))
}

impl OidcIssuerConfig {
    pub fn validate(&self, n: usize) -> Result<(), ConfigError> {
        let at = |key: &str| format!("oidc[{n}].{key}");
        if self.issuer.trim().is_empty() {
            return Err(ConfigError(format!("{}: must name the issuer's `iss`", at("issuer"))));
        }
        if self.audience.is_empty() || self.audience.iter().any(|a| a.trim().is_empty()) {
            return Err(ConfigError(format!(
                "{}: list the `aud` values jitgate accepts, like [\"jitgate\"]",
                at("audience")
            )));
        }
        match (&self.jwks_file, &self.jwks_url) {
            (Some(_), None) => {}
            (None, Some(url)) if url.starts_with("https://") || url.starts_with("http://") => {}
            // Neither: the key set is the `jwks_uri` of the issuer's discovery document.
            (None, None) if self.issuer.starts_with("https://") || self.issuer.starts_with("http://") => {}
            (None, None) => {
                return Err(ConfigError(format!(
                    "{}: '{}' is not an http(s) URL, so its keys cannot be discovered: set jwks_file or jwks_url",
                    at("issuer"),
                    self.issuer
                )))
            }
            (None, Some(url)) => {
                return Err(ConfigError(format!(
                    "{}: '{url}' is not an http(s) URL",
                    at("jwks_url")
                )))
            }
            _ => {
                return Err(ConfigError(format!(
                    "{}: set exactly one of jwks_file and jwks_url",
                    at("jwks_file")
                )))
            }
        }
        if self.algorithms.is_empty() {
            return Err(ConfigError(format!(
                "{}: name at least one algorithm",
                at("algorithms")
            )));
        }
        for alg in &self.algorithms {
            if !ASYMMETRIC_ALGORITHMS.contains(&alg.as_str()) {
                return Err(ConfigError(format!(
                    "{}: '{alg}' is not accepted; use the issuer's asymmetric algorithm, one of {}",
                    at("algorithms"),
                    ASYMMETRIC_ALGORITHMS.join(", ")
                )));
            }
        }
        duration(&at("leeway"), &self.leeway)?;
        duration(&at("jwks_min_refresh"), &self.jwks_min_refresh)?;
        if self.github_actions && self.allowed_owners.as_ref().is_none_or(|o| o.is_empty()) {
            return Err(ConfigError(format!(
                "{}: list the GitHub organisations whose workflows may authenticate, like [\"example\"]; \
                 any repository on GitHub can get a token from this issuer",
                at("allowed_owners")
            )));
        }
        if !self.github_actions && self.allowed_owners.is_some() {
            return Err(ConfigError(format!(
                "{}: only applies with github_actions = true",
                at("allowed_owners")
            )));
        }
        if self.principal_claim.as_deref().is_some_and(|c| c.trim().is_empty()) {
            return Err(ConfigError(format!(
                "{}: name a claim, like \"email\"",
                at("principal_claim")
            )));
        }
        let prefix = self.effective_prefix();
        if prefix.is_empty() && self.effective_claim() != "sub" {
            // Names from such a claim land among the directory's names: a token whose `email`
            // is `admin` would be the admin. Only `sub`, which the issuer assigns to each
            // account and never reassigns (OpenID Connect Core 1.0, section 5.7), can go
            // without: users cannot choose it.
            return Err(ConfigError(format!(
                "{}: the principal claim '{}' can be set to any name, a directory principal's \
                 included (a token whose {} is 'admin' would be the admin): set a prefix ending in \
                 ':' that keeps this issuer's names apart, like \"okta:\"",
                at("principal_prefix"),
                self.effective_claim(),
                self.effective_claim()
            )));
        }
        if !prefix.is_empty() {
            if let Some(problem) = jitgate_core::principal_name_problem(prefix) {
                return Err(ConfigError(format!("{}: '{prefix}' {problem}", at("principal_prefix"))));
            }
            if !prefix.ends_with(':') {
                return Err(ConfigError(format!(
                    "{}: '{prefix}' must end with ':', like \"{}:\", so the issuer's names are \
                     told apart from directory names that merely start the same way",
                    at("principal_prefix"),
                    prefix.trim_end_matches(':')
                )));
            }
        }
        Ok(())
    }

    /// What goes before the principal claim's value.
    pub fn effective_prefix(&self) -> &str {
        match (&self.principal_prefix, self.github_actions) {
            (Some(p), _) => p,
            (None, true) => "ci:",
            (None, false) => "",
        }
    }

    /// The claim that names the principal.
    pub fn effective_claim(&self) -> &str {
        match (&self.principal_claim, self.github_actions) {
            (Some(c), _) => c,
            (None, true) => "repository",
            (None, false) => "sub",
        }
    }
}

impl AuthConfig {
    /// Check every value before the server starts, so a typo is an error rather than a
    /// silently refused (or silently accepted) login.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (n, issuer) in self.oidc.iter().enumerate() {
            issuer.validate(n)?;
            if self.oidc[..n].iter().any(|other| other.issuer == issuer.issuer) {
                return Err(ConfigError(format!(
                    "oidc[{n}].issuer: '{}' is configured twice",
                    issuer.issuer
                )));
            }
            // Two issuers' names must never meet: at most one goes without a prefix (its names
            // that start with another's prefix are refused when they come), and no prefix
            // starts with another (`a:` and `a:b:` would both issue `a:b:x`).
            let prefix = issuer.effective_prefix();
            for (m, other) in self.oidc[..n].iter().enumerate() {
                let theirs = other.effective_prefix();
                let meet = if prefix.is_empty() || theirs.is_empty() {
                    prefix == theirs
                } else {
                    prefix.starts_with(theirs) || theirs.starts_with(prefix)
                };
                if meet {
                    let shown = |p: &str| {
                        if p.is_empty() {
                            "no prefix".to_string()
                        } else {
                            format!("prefix '{p}'")
                        }
                    };
                    return Err(ConfigError(format!(
                        "oidc[{n}].principal_prefix: {} would issue names that oidc[{m}] ({}, {}) issues too; \
                         give each issuer a prefix of its own that does not start with another's",
                        shown(prefix),
                        other.issuer,
                        shown(theirs)
                    )));
                }
            }
        }
        if let Some(proxy) = &self.trusted_proxy {
            if proxy.user_header.trim().is_empty() || !is_header_name(&proxy.user_header) {
                return Err(ConfigError(
                    "trusted_proxy.user_header: name a header, like \"X-Forwarded-User\"".into(),
                ));
            }
            if proxy.sources.is_empty() {
                return Err(ConfigError(
                    "trusted_proxy.sources: list the proxy's addresses, like [\"10.0.0.5/32\"]".into(),
                ));
            }
        }
        duration("throttle.window", &self.throttle.window)?;
        duration("throttle.max_delay", &self.throttle.max_delay)?;
        Ok(())
    }
}

/// A field name as HTTP allows it (RFC 9110's `token`): what a proxy can send as a header.
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(), String> {
        let config: AuthConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate().map_err(|e| e.to_string())
    }

    const GOOD: &str = r#"
[[oidc]]
issuer = "https://id.example"
audience = ["jitgate"]
jwks_url = "https://id.example/jwks"
"#;

    #[test]
    fn a_minimal_issuer_is_accepted() {
        assert_eq!(parse(GOOD), Ok(()));
        assert_eq!(parse(""), Ok(()));
        // Distinct prefixes, and one issuer of unprefixed subjects, live side by side.
        let github = "[[oidc]]\nissuer = \"https://token.actions.githubusercontent.com\"\naudience = [\"jitgate\"]\n\
                      jwks_url = \"https://gh.example/jwks\"\ngithub_actions = true\nallowed_owners = [\"example\"]\n";
        let okta =
            GOOD.replace("id.example", "okta.example") + "principal_claim = \"email\"\nprincipal_prefix = \"okta:\"\n";
        assert_eq!(parse(&format!("{GOOD}{github}{okta}")), Ok(()));
    }

    #[test]
    fn mistakes_are_refused_naming_the_key() {
        let cases = [
            (GOOD.replace("[\"jitgate\"]", "[]"), "oidc[0].audience"),
            (
                GOOD.replace("jwks_url = \"https://id.example/jwks\"", "")
                    .replace("https://id.example", "id.example"),
                "oidc[0].issuer: 'id.example' is not an http(s) URL, so its keys cannot be discovered",
            ),
            (
                GOOD.replace("jwks_url", "jwks_file = \"/k.json\"\njwks_url"),
                "exactly one of jwks_file and jwks_url",
            ),
            (GOOD.replace("https://id.example/jwks", "ftp://x"), "oidc[0].jwks_url"),
            (format!("{GOOD}algorithms = [\"HS256\"]\n"), "'HS256' is not accepted"),
            (format!("{GOOD}algorithms = [\"none\"]\n"), "'none' is not accepted"),
            (format!("{GOOD}leeway = \"soon\"\n"), "oidc[0].leeway"),
            (format!("{GOOD}github_actions = true\n"), "oidc[0].allowed_owners"),
            (
                format!("{GOOD}allowed_owners = [\"x\"]\n"),
                "only applies with github_actions",
            ),
            (
                format!("{GOOD}{GOOD}"),
                "oidc[1].issuer: 'https://id.example' is configured twice",
            ),
            (
                "[trusted_proxy]\nuser_header = \"X-User\"\nsources = []\n".to_string(),
                "trusted_proxy.sources",
            ),
            (
                "[trusted_proxy]\nuser_header = \"bad header\"\nsources = [\"10.0.0.1/32\"]\n".to_string(),
                "trusted_proxy.user_header",
            ),
            ("[throttle]\nmax_delay = \"-1\"\n".to_string(), "throttle.max_delay"),
            ("[oidc_typo]\n".to_string(), "unknown field"),
            // An email (or any claim users can choose) without a prefix could be `admin`.
            (
                format!("{GOOD}principal_claim = \"email\"\n"),
                "oidc[0].principal_prefix: the principal claim 'email' can be set to any name",
            ),
            (
                format!("{GOOD}principal_claim = \"preferred_username\"\nprincipal_prefix = \"\"\n"),
                "oidc[0].principal_prefix",
            ),
            (
                format!("{GOOD}principal_claim = \"email\"\nprincipal_prefix = \"okta\"\n"),
                "must end with ':'",
            ),
            (
                format!("{GOOD}principal_claim = \"email\"\nprincipal_prefix = \"ok ta:\"\n"),
                "holds a space",
            ),
            (
                format!("{GOOD}github_actions = true\nallowed_owners = [\"x\"]\nprincipal_prefix = \"\"\n"),
                "the principal claim 'repository' can be set to any name",
            ),
            // Two issuers whose names could meet.
            (
                format!("{GOOD}{}", GOOD.replace("id.example", "other.example")),
                "oidc[1].principal_prefix: no prefix would issue names that oidc[0]",
            ),
            (
                format!(
                    "{GOOD}principal_prefix = \"a:\"\n{}principal_prefix = \"a:b:\"\n",
                    GOOD.replace("id.example", "other.example")
                ),
                "oidc[1].principal_prefix: prefix 'a:b:' would issue names that oidc[0]",
            ),
        ];
        for (text, expected) in cases {
            let error = parse(&text).err().unwrap_or_default();
            assert!(error.contains(expected), "{text}\n→ {error}\n(expected {expected})");
        }
    }
}
