//! OIDC bearer tokens: JWTs from configured issuers, verified against the issuer's JWKS.
//!
//! A token is accepted only when its issuer is configured, its algorithm is on that issuer's
//! allow-list (never `none`, never a symmetric one), its key is in the issuer's key set, its
//! signature verifies with that key, and `exp`, `nbf`, `iss` and `aud` hold (with the configured
//! leeway). Why a token was refused goes to the log; the caller learns only that it was.

use super::config::{duration, ConfigError, OidcIssuerConfig};
use jitgate_core::{CiClaims, Identity, PrincipalKind};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::RwLock;
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Key sets are fetched again after this long even when no unknown key forces it.
const JWKS_MAX_AGE: Duration = Duration::from_secs(3600);

/// Why a JWT proves no identity.
#[derive(Debug)]
pub enum Refusal {
    /// The token is not good (malformed, forged, expired, from an issuer or for an audience
    /// not accepted): the reason goes to the log only, the caller learns just that it failed.
    Token(String),
    /// The token is genuine but names no principal jitgate accepts (an unverified email, a
    /// name with look-alike characters). Only the token's holder sees this reason and it
    /// tells nothing about keys, so the caller is told, to take to their identity provider.
    Principal(String),
}

struct Key {
    kid: Option<String>,
    /// The algorithm the JWK says it is for, if it says.
    alg: Option<Algorithm>,
    key: DecodingKey,
}

#[derive(Default)]
struct KeySet {
    keys: Vec<Key>,
    fetched: Option<Instant>,
}

impl KeySet {
    fn parse(text: &str) -> Result<KeySet, String> {
        let set: JwkSet = serde_json::from_str(text).map_err(|e| format!("not a JWKS document: {e}"))?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            // Keys of types jitgate cannot use (encryption keys, say) are skipped, not fatal:
            // issuers publish them beside signing keys.
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => keys.push(Key {
                    kid: jwk.common.key_id.clone(),
                    alg: jwk.common.key_algorithm.and_then(|a| Algorithm::try_from(a).ok()),
                    key,
                }),
                Err(e) => tracing::debug!(kid = ?jwk.common.key_id, error = %e, "JWKS key skipped"),
            }
        }
        Ok(KeySet {
            keys,
            fetched: Some(Instant::now()),
        })
    }

    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&Key> {
        let fits = |k: &&Key| k.alg.is_none_or(|a| a == alg);
        match kid {
            Some(kid) => self.keys.iter().filter(fits).find(|k| k.kid.as_deref() == Some(kid)),
            None => {
                let mut candidates = self.keys.iter().filter(fits);
                let only = candidates.next()?;
                candidates.next().is_none().then_some(only)
            }
        }
    }
}

enum Source {
    File(PathBuf),
    Url(String),
    /// The `jwks_uri` of this issuer's discovery document.
    Discovery(String),
}

/// Reads a document from the web for the service: OpenID Connect discovery documents and key
/// sets. The service says what it needs; an edge or a connector carries it out with an HTTP
/// client (each request bounded in time), so none is linked into the service.
#[async_trait::async_trait]
pub trait Fetch: Send + Sync {
    /// The body of a successful `GET url`; anything else (no answer, a 4xx or 5xx, a timeout)
    /// is an error saying what happened.
    async fn get(&self, url: &str) -> Result<String, String>;
}

/// The issuer's discovery document (`ISSUER/.well-known/openid-configuration`, OpenID Connect
/// Discovery 1.0). Its `issuer` must be `issuer` exactly, trailing slash included: that is
/// what the provider's tokens carry as `iss`.
pub async fn discover(http: &dyn Fetch, issuer: &str) -> Result<Value, String> {
    let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
    let text = http.get(&url).await.map_err(|e| format!("cannot read {url}: {e}"))?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| format!("{url} is not a discovery document: {e}"))?;
    let named = doc["issuer"].as_str().unwrap_or_default();
    if named != issuer {
        return Err(format!(
            "{url} names the issuer '{named}', not '{issuer}': configure the issuer exactly as the provider \
             names it (tokens carry it as `iss`; mind the trailing slash)"
        ));
    }
    Ok(doc)
}

/// An issuer's key set, cached and fetched again when a token names a key it lacks.
struct Jwks {
    source: Source,
    current: RwLock<Arc<KeySet>>,
    /// When the last fetch was tried; held while fetching so concurrent misses fetch once.
    last_attempt: tokio::sync::Mutex<Option<Instant>>,
    min_refresh: Duration,
    http: Arc<dyn Fetch>,
}

impl Jwks {
    async fn load(&self) -> Result<KeySet, String> {
        match &self.source {
            Source::File(path) => {
                let text = tokio::fs::read_to_string(path)
                    .await
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                KeySet::parse(&text)
            }
            Source::Discovery(issuer) => {
                let doc = discover(&*self.http, issuer).await?;
                let url = doc["jwks_uri"]
                    .as_str()
                    .ok_or_else(|| format!("the discovery document of {issuer} has no jwks_uri"))?;
                self.fetch(url).await
            }
            Source::Url(url) => self.fetch(url).await,
        }
    }

    async fn fetch(&self, url: &str) -> Result<KeySet, String> {
        let text = self
            .http
            .get(url)
            .await
            .map_err(|e| format!("cannot fetch {url}: {e}"))?;
        KeySet::parse(&text)
    }

    /// Fetch again unless a fetch was tried less than `min_refresh` ago.
    async fn refresh(&self) {
        let mut last = self.last_attempt.lock().await;
        if last.is_some_and(|t| t.elapsed() < self.min_refresh) {
            return;
        }
        *last = Some(Instant::now());
        match self.load().await {
            Ok(set) => {
                tracing::info!(keys = set.keys.len(), "JWKS loaded");
                *self.current.write() = Arc::new(set);
            }
            Err(e) => tracing::warn!(error = %e, "JWKS refresh failed; keeping the keys held"),
        }
    }

    fn snapshot(&self) -> Arc<KeySet> {
        self.current.read().clone()
    }

    /// The key set holding the key a token names, fetching again if needed.
    async fn with_key(&self, kid: Option<&str>, alg: Algorithm) -> Option<Arc<KeySet>> {
        let held = self.snapshot();
        let stale = held.fetched.is_none_or(|t| t.elapsed() > JWKS_MAX_AGE);
        if !stale && held.find(kid, alg).is_some() {
            return Some(held);
        }
        self.refresh().await;
        let fresh = self.snapshot();
        fresh.find(kid, alg).is_some().then_some(fresh)
    }
}

/// One configured issuer.
pub struct OidcIssuer {
    config: OidcIssuerConfig,
    /// Without a prefix of its own: the other issuers' prefixes, which its names must not take.
    foreign_prefixes: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway: u64,
    jwks: Jwks,
}

/// Every configured issuer.
#[derive(Default)]
pub struct Oidc {
    issuers: Vec<OidcIssuer>,
}

/// Does this bearer token look like a JWT (three base64url parts, a JSON header)?
pub fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.bytes().filter(|b| *b == b'.').count() == 2
}

fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => "the token has expired (exp)".into(),
        ErrorKind::ImmatureSignature => "the token is not yet valid (nbf)".into(),
        ErrorKind::InvalidAudience => "the token's audience (aud) is not accepted".into(),
        ErrorKind::InvalidIssuer => "the token's issuer (iss) is not accepted".into(),
        ErrorKind::InvalidSignature => "the signature does not verify".into(),
        ErrorKind::InvalidAlgorithm => "the key does not fit the token's algorithm".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("the token lacks the claim {c}"),
        _ => format!("the token is malformed: {e}"),
    }
}

/// Has the issuer verified the token's `email`? `email_verified` must be `true` (a few issuers
/// send the string `"true"`); false or absent is not verified.
fn email_verified(claims: &Map<String, Value>) -> bool {
    match claims.get("email_verified") {
        Some(Value::Bool(verified)) => *verified,
        Some(Value::String(text)) => text == "true",
        _ => false,
    }
}

fn claim_string<'a>(claims: &'a Map<String, Value>, name: &str) -> &'a str {
    claims.get(name).and_then(Value::as_str).unwrap_or("")
}

impl OidcIssuer {
    async fn new(
        config: OidcIssuerConfig,
        n: usize,
        foreign_prefixes: Vec<String>,
        http: Arc<dyn Fetch>,
    ) -> Result<OidcIssuer, ConfigError> {
        let algorithms = config
            .algorithms
            .iter()
            .map(|a| Algorithm::from_str(a).map_err(|_| ConfigError(format!("oidc[{n}].algorithms: '{a}' is unknown"))))
            .collect::<Result<Vec<_>, _>>()?;
        let leeway = duration(&format!("oidc[{n}].leeway"), &config.leeway)?.as_secs();
        let min_refresh = duration(&format!("oidc[{n}].jwks_min_refresh"), &config.jwks_min_refresh)?;
        let source = match (&config.jwks_file, &config.jwks_url) {
            (Some(path), _) => Source::File(path.clone()),
            (None, Some(url)) => Source::Url(url.clone()),
            (None, None) => Source::Discovery(config.issuer.clone()),
        };
        let jwks = Jwks {
            source,
            current: RwLock::new(Arc::new(KeySet::default())),
            last_attempt: tokio::sync::Mutex::new(None),
            min_refresh,
            http,
        };
        match jwks.load().await {
            Ok(set) => *jwks.current.write() = Arc::new(set),
            // A key file that cannot be read is a mistake to fix now; an issuer that is down
            // may be back by the first login, so its keys are fetched then.
            Err(e) if matches!(jwks.source, Source::File(_)) => {
                return Err(ConfigError(format!("oidc[{n}].jwks_file: {e}")))
            }
            Err(e) => {
                tracing::warn!(issuer = %config.issuer, error = %e, "JWKS not loaded yet; will fetch on first use")
            }
        }
        Ok(OidcIssuer {
            config,
            foreign_prefixes,
            algorithms,
            leeway,
            jwks,
        })
    }

    fn identity(&self, claims: &Map<String, Value>) -> Result<Identity, Refusal> {
        if self.config.github_actions {
            let owner = claim_string(claims, "repository_owner");
            let owner = if owner.is_empty() {
                claim_string(claims, "repository").split('/').next().unwrap_or("")
            } else {
                owner
            };
            let allowed = self.config.allowed_owners.as_deref().unwrap_or_default();
            if !allowed.iter().any(|a| a.eq_ignore_ascii_case(owner)) {
                return Err(Refusal::Token(format!(
                    "repository owner '{owner}' is not in allowed_owners"
                )));
            }
        }
        let claim = self.config.effective_claim();
        let name = claims
            .get(claim)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Refusal::Principal(format!("the token has no string claim '{claim}' to name you")))?;
        // An address the issuer has not checked belongs to whoever typed it in.
        if claim == "email" && !email_verified(claims) {
            return Err(Refusal::Principal(format!(
                "the identity provider has not verified the email address {name:?} \
                 (the token's email_verified is not true)"
            )));
        }
        if let Some(problem) = jitgate_core::principal_name_problem(name) {
            return Err(Refusal::Principal(format!("the claim '{claim}' ({name:?}) {problem}")));
        }
        let prefix = self.config.effective_prefix();
        // An issuer without a prefix must not issue a name in another issuer's namespace.
        if let Some(theirs) = self.foreign_prefixes.iter().find(|p| name.starts_with(p.as_str())) {
            return Err(Refusal::Principal(format!(
                "the claim '{claim}' ({name:?}) starts with '{theirs}', the prefix of another issuer's names"
            )));
        }
        let principal = format!("{prefix}{name}");
        if let Some(problem) = jitgate_core::principal_name_problem(&principal) {
            return Err(Refusal::Principal(format!("the principal {principal:?} {problem}")));
        }
        let mut groups: Vec<String> = match (&self.config.groups, self.config.github_actions) {
            (Some(g), _) => g.clone(),
            (None, true) => vec!["ci".into()],
            (None, false) => Vec::new(),
        };
        if let Some(groups_claim) = &self.config.groups_claim {
            match claims.get(groups_claim) {
                Some(Value::String(g)) => groups.push(g.clone()),
                Some(Value::Array(items)) => groups.extend(items.iter().filter_map(Value::as_str).map(String::from)),
                _ => {}
            }
        }
        groups.sort();
        groups.dedup();
        let ci = self.config.github_actions.then(|| CiClaims {
            repository: claim_string(claims, "repository").to_string(),
            git_ref: claim_string(claims, "ref").to_string(),
            environment: claim_string(claims, "environment").to_string(),
            workflow: claim_string(claims, "workflow").to_string(),
            actor: claim_string(claims, "actor").to_string(),
        });
        Ok(Identity {
            principal,
            groups,
            kind: PrincipalKind::User,
            on_behalf_of: None,
            ci,
        })
    }

    async fn verify(&self, token: &str, alg: Algorithm, kid: Option<&str>) -> Result<Identity, Refusal> {
        if !self.algorithms.contains(&alg) {
            return Err(Refusal::Token(format!(
                "algorithm {alg:?} is not on the allow-list of issuer {}",
                self.config.issuer
            )));
        }
        let keys = self.jwks.with_key(kid, alg).await.ok_or_else(|| {
            Refusal::Token(format!(
                "issuer {} has no key {} for {alg:?}",
                self.config.issuer,
                kid.map_or("(no kid, and not exactly one candidate)".to_string(), |k| format!(
                    "'{k}'"
                ))
            ))
        })?;
        let key = keys
            .find(kid, alg)
            .ok_or_else(|| Refusal::Token("the key vanished during verification".to_string()))?;
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&self.config.audience);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = self.leeway;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(|e| Refusal::Token(describe(&e)))?;
        self.identity(&data.claims)
    }
}

/// The issuer and expiry of a JWT that [`Oidc::verify`] has just accepted: read from its claims
/// only after the signature, issuer, audience and times were checked.
pub fn described(token: &str) -> super::CredentialInfo {
    let claims: Map<String, Value> = jsonwebtoken::dangerous::insecure_decode_claims(token).unwrap_or_default();
    super::CredentialInfo {
        kind: super::CredentialKind::Oidc,
        id: None,
        issuer: Some(claim_string(&claims, "iss").to_string()).filter(|i| !i.is_empty()),
        expires_at: claims
            .get("exp")
            .and_then(Value::as_i64)
            .and_then(|exp| chrono::DateTime::from_timestamp(exp, 0)),
    }
}

impl Oidc {
    pub async fn new(configs: &[OidcIssuerConfig], http: Arc<dyn Fetch>) -> Result<Oidc, ConfigError> {
        let mut issuers = Vec::with_capacity(configs.len());
        for (n, config) in configs.iter().enumerate() {
            let foreign_prefixes = if config.effective_prefix().is_empty() {
                configs
                    .iter()
                    .map(|c| c.effective_prefix().to_string())
                    .filter(|p| !p.is_empty())
                    .collect()
            } else {
                Vec::new()
            };
            issuers.push(OidcIssuer::new(config.clone(), n, foreign_prefixes, http.clone()).await?);
        }
        Ok(Oidc { issuers })
    }

    pub fn is_configured(&self) -> bool {
        !self.issuers.is_empty()
    }

    /// The identity a JWT proves, or why it proves nothing (for the log).
    pub async fn verify(&self, token: &str) -> Result<Identity, Refusal> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| Refusal::Token(format!("the token header is malformed: {e}")))?;
        // The issuer is read before the signature is checked only to pick the issuer's keys
        // and rules; nothing else of the unverified claims is used.
        let unverified: Map<String, Value> = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|e| Refusal::Token(format!("the token's claims are malformed: {e}")))?;
        let iss = claim_string(&unverified, "iss");
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.config.issuer == iss)
            .ok_or_else(|| Refusal::Token(format!("issuer '{iss}' is not configured")))?;
        issuer.verify(token, header.alg, header.kid.as_deref()).await
    }
}
