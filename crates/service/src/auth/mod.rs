//! Who is calling, and may they. Authentication accepts, in this order: a bearer token that is
//! a JWT from a configured OIDC issuer, a bearer API token (issued by `jitgate token create`, or
//! a static token of the policy directory), or the user header of a trusted authenticating
//! proxy. Authorization is the table in `jitgate_core::authz`, turned into types here: a handler
//! that takes `Allowed<op::Check>` runs only for callers the table lets check, and gets the
//! reach the table gives them.

pub mod config;
pub mod oidc;
pub mod scim_tokens;
pub mod throttle;
pub mod tokens;

use crate::clock::now;
use crate::ServiceError;
use config::{AuthConfig, ConfigError};
use ipnet::IpNet;
use jitgate_core::authz::{self, Operation, Reach};
use jitgate_core::{ApiToken, Identity, Request};
use jitgate_policy::Policy;
use oidc::Oidc;
use parking_lot::RwLock;
use scim_tokens::ScimTokenTable;
use std::net::IpAddr;
use std::sync::Arc;
use throttle::Throttle;
use tokens::{TokenRefusal, TokenTable};

/// The longest bearer token looked at.
const MAX_TOKEN_LEN: usize = 8192;

/// The credentials a call presents, as its edge received them: HTTP headers, or anything
/// else that carries fields by the same names.
pub trait Presented: Sync {
    /// The value of field `name` (lowercase, like `authorization`), if present.
    fn field(&self, name: &str) -> Option<&[u8]>;
}

/// A bearer token alone, for edges that receive nothing else (the web UI's sign-in form).
pub struct BearerOnly<'a>(pub &'a [u8]);

impl Presented for BearerOnly<'_> {
    fn field(&self, name: &str) -> Option<&[u8]> {
        (name == AUTHORIZATION).then_some(self.0)
    }
}

/// The label of a SCIM token presented outside `/scim/v2`: refused 403, not 401 (the token is
/// genuine; it is the place that is wrong).
pub const SCIM_TOKEN_LABEL: &str = "scim_token_elsewhere";
/// What its holder is told.
pub const SCIM_TOKEN_ELSEWHERE: &str = "a SCIM provisioning token may call /scim/v2 only";

/// The field a bearer token comes in.
pub const AUTHORIZATION: &str = "authorization";

struct TrustedProxy {
    /// Lowercase, as `Presented::field` is asked.
    user_header: String,
    groups_header: Option<String>,
    sources: Vec<IpNet>,
}

/// Why an authentication failed. The reason goes to the log; the caller gets one message.
#[derive(Debug)]
pub struct AuthFailure {
    /// A metric label.
    pub label: &'static str,
    pub reason: String,
    /// Missing credentials are not a guess and do not count towards slowing a source down.
    pub counts: bool,
    /// What the caller is told, when it may be told more than that the credentials are not
    /// valid (a genuine token that names no usable principal).
    pub told: Option<String>,
}

impl AuthFailure {
    fn new(label: &'static str, reason: impl Into<String>) -> Self {
        AuthFailure {
            label,
            reason: reason.into(),
            counts: true,
            told: None,
        }
    }
}

/// Which path of [`Authenticator::authenticate`] accepted a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// An API token issued by `jitgate token create`.
    ApiToken,
    /// A static token of the policy directory (`directory.toml`).
    StaticToken,
    /// A JWT from a configured OpenID Connect issuer.
    Oidc,
    /// The user header of a trusted authenticating proxy.
    TrustedProxy,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::ApiToken => "api_token",
            CredentialKind::StaticToken => "static_token",
            CredentialKind::Oidc => "oidc",
            CredentialKind::TrustedProxy => "trusted_proxy",
        }
    }
}

/// What credential a caller presented, as the authenticator saw it: kept beside the
/// [`Identity`] (which the policy judges) rather than in it, since no decision depends on it.
/// Never holds the credential itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialInfo {
    pub kind: CredentialKind,
    /// The API token's id (`tok_...`).
    pub id: Option<String>,
    /// The OpenID issuer that signed the token.
    pub issuer: Option<String>,
    /// When the credential stops being accepted, when known.
    pub expires_at: Option<jitgate_core::Timestamp>,
}

impl CredentialInfo {
    fn of(kind: CredentialKind) -> Self {
        CredentialInfo {
            kind,
            id: None,
            issuer: None,
            expires_at: None,
        }
    }
}

/// Everything that turns a request's credentials into an identity.
pub struct Authenticator {
    tokens: RwLock<Arc<TokenTable>>,
    /// Provisioning tokens, a table of their own: valid on `/scim/v2` only.
    scim_tokens: RwLock<Arc<ScimTokenTable>>,
    /// Issued API tokens as stored, kept to rebuild the table when the policy changes.
    api_tokens: RwLock<Arc<Vec<ApiToken>>>,
    oidc: Oidc,
    proxy: Option<TrustedProxy>,
    pub throttle: Throttle,
    /// The provisioned directory (SCIM), in memory: groups it adds, principals it blocks.
    directory: Arc<crate::directory::Directory>,
    /// Held from the reads of a table rebuild to its swap (never across an await): two
    /// rebuilds at once would otherwise let the one that read first swap last.
    rebuilding: parking_lot::Mutex<()>,
}

impl Authenticator {
    /// Check the config and fetch what it names (OIDC key sets).
    pub async fn new(config: &AuthConfig, http: Arc<dyn oidc::Fetch>) -> Result<Authenticator, ConfigError> {
        config.validate()?;
        let proxy = match &config.trusted_proxy {
            None => None,
            Some(p) => Some(TrustedProxy {
                user_header: header_name("trusted_proxy.user_header", &p.user_header)?,
                groups_header: p
                    .groups_header
                    .as_deref()
                    .map(|h| header_name("trusted_proxy.groups_header", h))
                    .transpose()?,
                sources: p.sources.clone(),
            }),
        };
        Ok(Authenticator {
            tokens: RwLock::new(Arc::new(TokenTable::default())),
            scim_tokens: RwLock::new(Arc::new(ScimTokenTable::default())),
            api_tokens: RwLock::new(Arc::new(Vec::new())),
            oidc: Oidc::new(&config.oidc, http).await?,
            proxy,
            throttle: Throttle::new(&config.throttle)?,
            directory: Arc::new(crate::directory::Directory::default()),
            rebuilding: parking_lot::Mutex::new(()),
        })
    }

    /// Rebuild the token table from the policy's directory and the issued tokens (`Some`: as
    /// just read from the store). A revocation is for good: a token the list kept here has
    /// revoked stays revoked whatever a list read before that revocation says.
    pub fn rebuild(&self, policy: &Policy, api_tokens: Option<Vec<ApiToken>>) {
        let _serialised = self.rebuilding.lock();
        if let Some(list) = api_tokens {
            let held = self.api_tokens.read().clone();
            let revoked: std::collections::HashMap<&str, &ApiToken> = held
                .iter()
                .filter(|t| t.revoked_at.is_some())
                .map(|t| (t.id.as_str(), t))
                .collect();
            let merged = list
                .into_iter()
                .map(|t| match revoked.get(t.id.as_str()) {
                    Some(gone) if t.revoked_at.is_none() => (*gone).clone(),
                    _ => t,
                })
                .collect();
            *self.api_tokens.write() = Arc::new(merged);
        }
        self.rebuild_held(policy);
    }

    /// The table built again from the list kept; `rebuilding` is held by the caller.
    fn rebuild_held(&self, policy: &Policy) {
        let list = self.api_tokens.read().clone();
        *self.tokens.write() = Arc::new(TokenTable::build_with(policy, &self.directory, &list));
        *self.scim_tokens.write() = Arc::new(ScimTokenTable::build(&list));
    }

    /// The issued API tokens as last read.
    pub fn api_tokens(&self) -> Arc<Vec<ApiToken>> {
        self.api_tokens.read().clone()
    }

    /// The provisioned directory every authentication reads.
    pub fn directory(&self) -> &Arc<crate::directory::Directory> {
        &self.directory
    }

    /// After a provisioning change: take the tokens it revoked into the list kept, and
    /// rebuild the table if they, or a change to `touched` principals (their groups, whether
    /// they are blocked; lowercase, as blocking compares ignoring ASCII case), reach any
    /// token. A change that reaches no token costs a scan of the
    /// list, never a rebuild.
    pub fn directory_changed(
        &self,
        policy: &Policy,
        touched: &std::collections::HashSet<String>,
        revoked: &[ApiToken],
    ) {
        let _serialised = self.rebuilding.lock();
        let list = self.api_tokens.read().clone();
        let reaches = !revoked.is_empty()
            || list.iter().any(|t| {
                touched.contains(&t.principal.to_ascii_lowercase())
                    || t.on_behalf_of
                        .as_ref()
                        .is_some_and(|p| touched.contains(&p.to_ascii_lowercase()))
            });
        if !reaches {
            return;
        }
        if !revoked.is_empty() {
            let updated: Vec<ApiToken> = list
                .iter()
                .map(|t| revoked.iter().find(|r| r.id == t.id).unwrap_or(t).clone())
                .collect();
            *self.api_tokens.write() = Arc::new(updated);
        }
        self.rebuild_held(policy);
    }

    /// The provisioning client behind a SCIM call's bearer token: only a SCIM token is one.
    pub fn authenticate_scim(&self, headers: &dyn Presented) -> Result<String, AuthFailure> {
        let value = headers.field(AUTHORIZATION).ok_or_else(|| AuthFailure {
            counts: false,
            ..AuthFailure::new("missing", "no credentials")
        })?;
        let token = bearer_token(value)?;
        let table = self.scim_tokens.read();
        match table.lookup(token, now()) {
            Ok(principal) => Ok(principal.to_string()),
            Err(TokenRefusal::Expired) => Err(AuthFailure::new("expired_token", "SCIM token has expired")),
            // Unknown, or any refusal the API's table adds later: not a provisioning token.
            Err(_) => Err(AuthFailure::new(
                "unknown_scim_token",
                "not a SCIM provisioning token (API tokens, OpenID tokens and sessions are refused on /scim/v2)",
            )),
        }
    }

    /// The identity behind a request's credentials. `policy` is asked for only when the
    /// credentials need the directory (an OpenID token, a proxy's header): a bearer API token,
    /// every check's credential, is answered from the token table alone.
    pub async fn authenticate(
        &self,
        policy: &(dyn Fn() -> Arc<Policy> + Sync),
        headers: &dyn Presented,
        peer: Option<IpAddr>,
    ) -> Result<Identity, AuthFailure> {
        self.authenticate_described(policy, headers, peer)
            .await
            .map(|(identity, _)| identity)
    }

    /// [`Authenticator::authenticate`], and which credential was accepted (`GET /v1/whoami`).
    pub async fn authenticate_described(
        &self,
        policy: &(dyn Fn() -> Arc<Policy> + Sync),
        headers: &dyn Presented,
        peer: Option<IpAddr>,
    ) -> Result<(Identity, CredentialInfo), AuthFailure> {
        if let Some(value) = headers.field(AUTHORIZATION) {
            let token = bearer_token(value)?;
            if self.oidc.is_configured() && oidc::looks_like_jwt(token) {
                let identity = self.oidc.verify(token).await.map_err(|refusal| match refusal {
                    oidc::Refusal::Token(reason) => AuthFailure::new("jwt", reason),
                    oidc::Refusal::Principal(reason) => AuthFailure {
                        told: Some(format!("the token names no usable principal: {reason}")),
                        ..AuthFailure::new("jwt_principal", reason)
                    },
                })?;
                let identity = tokens::resolve_with(&policy(), &self.directory, identity).map_err(blocked)?;
                return Ok((identity, oidc::described(token)));
            }
            // Read under the lock (nothing here waits) rather than cloning the table's Arc:
            // every check passes here, and a shared count touched by every core costs.
            let table = self.tokens.read();
            return match table.lookup(token, now()) {
                Ok(identity) => {
                    let info = match table.describe(token) {
                        Some((Some(id), expires_at)) => CredentialInfo {
                            id: Some(id.to_string()),
                            expires_at,
                            ..CredentialInfo::of(CredentialKind::ApiToken)
                        },
                        _ => CredentialInfo::of(CredentialKind::StaticToken),
                    };
                    Ok((identity.clone(), info))
                }
                Err(TokenRefusal::Unknown) if self.scim_tokens.read().holds(token) => Err(AuthFailure {
                    counts: false,
                    told: Some(SCIM_TOKEN_ELSEWHERE.into()),
                    ..AuthFailure::new(SCIM_TOKEN_LABEL, "a SCIM token presented outside /scim/v2")
                }),
                Err(TokenRefusal::Unknown) => Err(AuthFailure::new("unknown_token", "unknown bearer token")),
                Err(TokenRefusal::Expired) => Err(AuthFailure::new(
                    "expired_token",
                    format!("API token {} has expired", table.token_id(token).unwrap_or("(static)")),
                )),
                Err(TokenRefusal::Blocked) => Err(blocked(
                    table
                        .blocked_reason(token)
                        .unwrap_or("blocked in the directory")
                        .to_string(),
                )),
            };
        }
        if let Some(proxy) = &self.proxy {
            if let Some(value) = headers.field(&proxy.user_header) {
                return Self::proxy_identity(&policy(), &self.directory, proxy, value, headers, peer)
                    .map(|identity| (identity, CredentialInfo::of(CredentialKind::TrustedProxy)));
            }
        }
        Err(AuthFailure {
            label: "missing",
            reason: "no credentials".into(),
            counts: false,
            told: None,
        })
    }

    fn proxy_identity(
        policy: &Policy,
        directory: &crate::directory::Directory,
        proxy: &TrustedProxy,
        value: &[u8],
        headers: &dyn Presented,
        peer: Option<IpAddr>,
    ) -> Result<Identity, AuthFailure> {
        let trusted = peer.is_some_and(|ip| proxy.sources.iter().any(|net| net.contains(&ip)));
        if !trusted {
            return Err(AuthFailure::new(
                "proxy_untrusted",
                format!(
                    "header {} from {} which is not a trusted proxy source",
                    proxy.user_header,
                    peer.map_or("an unknown address".into(), |ip| ip.to_string())
                ),
            ));
        }
        let principal = std::str::from_utf8(value)
            .ok()
            .map(str::trim)
            .filter(|p| jitgate_core::principal_name_problem(p).is_none())
            .ok_or_else(|| {
                AuthFailure::new("proxy_malformed", format!("header {} is not a name", proxy.user_header))
            })?;
        let groups = proxy
            .groups_header
            .as_ref()
            .and_then(|h| headers.field(h))
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        let identity = Identity {
            principal: principal.to_string(),
            groups,
            kind: jitgate_core::PrincipalKind::User,
            on_behalf_of: None,
            ci: None,
        };
        tokens::resolve_with(policy, directory, identity).map_err(blocked)
    }
}

/// A genuine credential of a principal the provisioned directory blocks: told why.
fn blocked(told: String) -> AuthFailure {
    AuthFailure {
        told: Some(told.clone()),
        ..AuthFailure::new("blocked", told)
    }
}

/// The token of an `Authorization: Bearer TOKEN` header's value: visible ASCII, at most
/// `MAX_TOKEN_LEN` bytes; anything else is malformed.
pub fn bearer_token(value: &[u8]) -> Result<&str, AuthFailure> {
    std::str::from_utf8(value)
        .ok()
        .filter(|h| h.chars().all(|c| c.is_ascii() && !c.is_ascii_control()))
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= MAX_TOKEN_LEN)
        .ok_or_else(|| AuthFailure::new("malformed", "the Authorization header is not 'Bearer TOKEN'"))
}

fn header_name(field: &str, name: &str) -> Result<String, ConfigError> {
    if !config::is_header_name(name) {
        return Err(ConfigError(format!("{field}: '{name}' is not a header name")));
    }
    Ok(name.to_ascii_lowercase())
}

/// An authenticated caller and how far the operation at hand reaches for them. Built only by
/// `caller_for`, from an identity that was authenticated: by the `Allowed` extractor below
/// (bearer tokens, OIDC, proxy) or by a channel with its own proof (a Slack user in a request
/// Slack signed).
#[derive(Debug, Clone)]
pub struct Caller {
    who: Identity,
    operation: Operation,
    reach: Reach,
}

/// The caller for operation `O`, if the authorization table lets `who` do it at all.
pub fn caller_for<O: authz::op::Op>(who: Identity) -> Result<Caller, ServiceError> {
    // Agents never decide requests, whatever groups they inherit from their person: refused
    // here, before any request is read, with words that name the person.
    if matches!(
        O::OPERATION,
        Operation::ApproveRequest | Operation::DenyRequest | Operation::ReviewBreakGlass
    ) {
        if let Some(why) = who.agent_may_not_review() {
            return Err(ServiceError::Forbidden(why));
        }
    }
    let reach = authz::reach(&who, O::OPERATION);
    if reach == Reach::Nothing {
        return Err(ServiceError::Forbidden(format!(
            "{} may not {}. Only {} may.",
            who.principal,
            authz::rule(O::OPERATION).what,
            authz::who_may_in_words(O::OPERATION)
        )));
    }
    Ok(Caller {
        who,
        operation: O::OPERATION,
        reach,
    })
}

impl Caller {
    pub fn who(&self) -> &Identity {
        &self.who
    }

    pub fn reach(&self) -> Reach {
        self.reach
    }

    /// May the caller see this request at all? Requests they may not see answer 404. The
    /// person an agent acts for sees the agent's requests as their own.
    pub fn may_see(&self, request: &Request) -> bool {
        let reach = authz::reach(&self.who, Operation::ReadRequests);
        reach.covers(&self.who, request) || (reach >= Reach::Own && self.is_person_of(request))
    }

    /// Whether the caller is the person the request's agent acted for.
    fn is_person_of(&self, request: &Request) -> bool {
        request.on_behalf_of.as_deref() == Some(self.who.principal.as_str())
    }

    /// Refuse the operation on a request the caller can see but the table puts out of reach.
    /// Reading and cancelling reach the requests one's agents filed as one's own; nothing else
    /// does (their grants stay the agent's: it holds them, extends and ends them).
    pub fn require_reach(&self, request: &Request) -> Result<(), ServiceError> {
        if self.reach.covers(&self.who, request) {
            return Ok(());
        }
        let own_reach =
            self.reach >= Reach::Own && matches!(self.operation, Operation::ReadRequests | Operation::CancelRequest);
        if own_reach && self.is_person_of(request) {
            return Ok(());
        }
        Err(ServiceError::Forbidden(format!(
            "{} may not {} on {}",
            self.who.principal,
            authz::rule(self.operation).what,
            request.id
        )))
    }
}

pub use jitgate_core::authz::op;
