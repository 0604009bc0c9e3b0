//! Forward authentication: a reverse proxy (nginx `auth_request`, Caddy `forward_auth`,
//! Traefik `ForwardAuth`, Envoy `ext_authz`) asks whether the request it holds may pass.
//!
//! Who is asking, in this order of trust:
//! 1. the web UI's session cookie, authenticated as a bearer token;
//! 2. `Authorization: Bearer` (OpenID token, API or directory token), unless it is a proxy of
//!    `[forward_auth] services` and the user header is present: then it is that proxy's
//!    credential (3);
//! 3. the configured user header, only when a proxy credential authenticates as a listed
//!    service and the call comes from one of `trusted_proxies`;
//! 4. nothing else: unauthenticated.
//!
//! The generic `[auth.trusted_proxy]` header is never read here: nginx passes the client's own
//! headers on to the auth subrequest, so a header trusted for its source address alone would
//! be the client's to forge.
//!
//! Then the request is routed by the catalog (resources of kind http, in memory) and checked
//! like any `/v1/check`: a denial is counted in the audit log as a denied check. Nothing here
//! reads the store, except the consumption of a single-use grant, as every check does.

use crate::auth::{self, AuthFailure, Presented, AUTHORIZATION};
use crate::App;
use ipnet::IpNet;
use jitgate_core::authz::{self, Operation, Reach};
use jitgate_core::{Identity, PrincipalKind, Timestamp};
use jitgate_policy::{Route, Unroutable};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::net::IpAddr;

/// The resource an unrouted forward-auth request is recorded under in the audit log.
pub const UNROUTED_RESOURCE: &str = "(unrouted)";

/// Where a proxy sends its own credential (`Bearer TOKEN`) by default.
pub const DEFAULT_PROXY_CREDENTIAL_HEADER: &str = "X-Jitgate-Proxy-Authorization";

/// `[forward_auth]` of the server's config file (the keys are those of the interface contract).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardAuthConfig {
    /// The header in which a listed proxy names the user. Read only when `services` and
    /// `trusted_proxies` are set; without them only users' own credentials count.
    #[serde(default = "default_user_header")]
    pub user_header: String,
    /// Service principals that may assert users with `user_header`.
    #[serde(default)]
    pub services: Vec<String>,
    /// ... and only from these addresses (CIDR blocks): the proxies'.
    #[serde(default)]
    pub trusted_proxies: Vec<IpNet>,
    /// Where the proxy's own credential comes, as `Bearer TOKEN`.
    #[serde(default = "default_credential_header")]
    pub proxy_credential_header: String,
    /// Whether an allowing answer carries the grant's signed token.
    #[serde(default)]
    pub grant_token: bool,
}

/// The user header when none is configured: what oauth2-proxy and most gateways set.
pub const DEFAULT_USER_HEADER: &str = "X-Forwarded-User";

fn default_user_header() -> String {
    DEFAULT_USER_HEADER.into()
}

fn default_credential_header() -> String {
    DEFAULT_PROXY_CREDENTIAL_HEADER.into()
}

impl Default for ForwardAuthConfig {
    fn default() -> Self {
        ForwardAuthConfig {
            user_header: default_user_header(),
            services: Vec::new(),
            trusted_proxies: Vec::new(),
            proxy_credential_header: default_credential_header(),
            grant_token: false,
        }
    }
}

/// A `[forward_auth]` value that cannot be used, naming the key and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("forward_auth config: {0}")]
pub struct ConfigError(pub String);

/// The config, checked: header names lower case, as `Presented::field` is asked.
#[derive(Debug, Clone)]
pub struct Settings {
    user_header: Option<String>,
    proxies: BTreeSet<String>,
    sources: Vec<IpNet>,
    credential_header: String,
    grant_token: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            user_header: None,
            proxies: BTreeSet::new(),
            sources: Vec::new(),
            credential_header: DEFAULT_PROXY_CREDENTIAL_HEADER.to_ascii_lowercase(),
            grant_token: false,
        }
    }
}

/// Headers that carry something else already and so can name neither a user nor a proxy's
/// credential.
const RESERVED_HEADERS: [&str; 5] = ["authorization", "cookie", "host", "x-forwarded-host", "x-forwarded-uri"];

impl ForwardAuthConfig {
    /// Check every key; the message names the key and the fix.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let header = |key: &str, name: &str| -> Result<String, ConfigError> {
            if !auth::config::is_header_name(name) {
                return Err(ConfigError(format!(
                    "{key}: {:?} is not a header name (letters, digits and -)",
                    name.escape_debug().to_string()
                )));
            }
            let lower = name.to_ascii_lowercase();
            if RESERVED_HEADERS.contains(&lower.as_str()) {
                return Err(ConfigError(format!(
                    "{key}: {name} carries something else already; choose another header"
                )));
            }
            Ok(lower)
        };
        let credential_header = header("proxy_credential_header", &self.proxy_credential_header)?;
        let user_header = header("user_header", &self.user_header)?;
        if user_header == credential_header {
            return Err(ConfigError(
                "user_header and proxy_credential_header must be different headers".into(),
            ));
        }
        let mut proxies = BTreeSet::new();
        for (i, p) in self.services.iter().enumerate() {
            if let Some(problem) = jitgate_core::principal_name_problem(p) {
                return Err(ConfigError(format!(
                    "services[{i}]: {:?} {problem}",
                    p.escape_debug().to_string()
                )));
            }
            if !proxies.insert(p.clone()) {
                return Err(ConfigError(format!("services: {p} is listed twice")));
            }
        }
        // Either both or neither: a header believed from any address, or from an address
        // without a credential, would be anyone's to forge.
        if proxies.is_empty() && !self.trusted_proxies.is_empty() {
            return Err(ConfigError(
                "trusted_proxies needs services: the service principals that may assert users (services = [\"svc-edge\"])"
                    .into(),
            ));
        }
        if !proxies.is_empty() && self.trusted_proxies.is_empty() {
            return Err(ConfigError(
                "services needs trusted_proxies: the proxies' addresses (trusted_proxies = [\"127.0.0.1/32\"])".into(),
            ));
        }
        let user_header = (!proxies.is_empty()).then_some(user_header);
        Ok(Settings {
            user_header,
            proxies,
            sources: self.trusted_proxies.clone(),
            credential_header,
            grant_token: self.grant_token,
        })
    }
}

/// The request the proxy holds, as the edge read it from the proxy's conventions.
#[derive(Debug, Clone, Copy)]
pub struct Original<'a> {
    pub method: &'a str,
    /// As the `Host` header gives it, with its port if any.
    pub host: &'a str,
    /// The origin-form target: path and query.
    pub uri: &'a str,
}

/// The answer to the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardAuthAnswer {
    /// 200: a grant covers it.
    Allow {
        principal: String,
        resource: String,
        action: String,
        grant_id: String,
        expires_at: Timestamp,
        /// The grant's signed token, when `[forward_auth] grant_token = true`.
        token: Option<String>,
    },
    /// 401: no usable identity. `reason` is for the log only.
    Unauthenticated { reason: String },
    /// 403. `route` is None when no catalog resource serves the URL (nothing to request).
    Deny {
        principal: String,
        route: Option<Route>,
        reason: String,
    },
    /// 400: the forwarded request itself is unusable (bad method token, bad path). Names the
    /// field.
    BadRequest(String),
}

/// Only one field of the presented credentials, seen as `authorization`: so that the
/// authenticator reads a bearer token from where forward auth says, and nothing else (never
/// the generic trusted proxy's header).
struct BearerFrom<'a> {
    presented: &'a dyn Presented,
    field: &'a str,
}

impl Presented for BearerFrom<'_> {
    fn field(&self, name: &str) -> Option<&[u8]> {
        if name == AUTHORIZATION {
            self.presented.field(self.field)
        } else {
            None
        }
    }
}

/// What the credentials tried so far came to.
#[derive(Default)]
struct Attempts {
    /// Present but refused: these count towards slowing the source down.
    refused: Vec<AuthFailure>,
    /// Some credential authenticated: the answer is then never held back.
    any_authenticated: bool,
}

/// Who asks (the proxy, or the user itself) and about whom.
struct Asking {
    checker: Identity,
    principal: Identity,
}

impl App {
    /// Apply `[forward_auth]`. Until called, only users' own credentials count.
    pub fn configure_forward_auth(&self, config: ForwardAuthConfig) -> Result<(), ConfigError> {
        let settings = config.validate()?;
        self.set_forward_auth(settings);
        Ok(())
    }

    /// May the request the proxy holds pass? See the module's documentation for the order in
    /// which identities are trusted.
    pub async fn forward_auth(
        &self,
        presented: &dyn Presented,
        session_cookie: Option<&str>,
        original: Original<'_>,
        peer: Option<IpAddr>,
    ) -> ForwardAuthAnswer {
        let counters = &self.metrics.forward_auth;
        let settings = self.forward_auth_settings();
        let policy = self.policy();
        let routed = match policy.http_routes().route(original.host, original.uri, original.method) {
            Err(Unroutable::BadMethod(p)) => {
                counters.bad_request.inc();
                return ForwardAuthAnswer::BadRequest(format!("method: {p}"));
            }
            Err(Unroutable::BadPath(p)) => {
                counters.bad_request.inc();
                return ForwardAuthAnswer::BadRequest(format!("uri: {p}"));
            }
            Err(Unroutable::NoResource(reason)) => Err(reason),
            Ok(route) => Ok(route),
        };
        let mut attempts = Attempts::default();
        let asking = match self
            .forward_identity(&settings, presented, session_cookie, peer, &mut attempts)
            .await
        {
            Ok(asking) => asking,
            Err(reason) => {
                self.refuse_forward(attempts, peer).await;
                tracing::info!(source = ?peer, reason = %reason, "forward auth: unauthenticated");
                counters.unauthenticated.inc();
                return ForwardAuthAnswer::Unauthenticated { reason };
            }
        };
        let Asking { checker, principal } = asking;
        if authz::reach(&checker, Operation::ForwardAuth) == Reach::Nothing {
            counters.deny.inc();
            return ForwardAuthAnswer::Deny {
                principal: principal.principal,
                route: None,
                reason: format!("{} may not ask forward-auth questions", checker.principal),
            };
        }
        let route = match routed {
            Ok(route) => route,
            Err(reason) => {
                // Recorded like a denied check, under one key for every unrouted request of
                // this caller and principal (the host and path are the client's to vary: as
                // keys they could crowd everyone else's denials out of the window); the reason
                // names the host and path, escaped.
                self.denied_checks().record(
                    &checker.principal,
                    &principal.principal,
                    UNROUTED_RESOURCE,
                    "-",
                    &reason,
                    crate::now(),
                );
                counters.unrouted.inc();
                return ForwardAuthAnswer::Deny {
                    principal: principal.principal,
                    route: None,
                    reason,
                };
            }
        };
        // A single-use grant leaves the index as it is consumed: keep what its token needs
        // first.
        let before = settings
            .grant_token
            .then(|| self.live_grant_for(&principal.principal, &route.resource, &route.action))
            .flatten();
        let decision = self
            .check(&checker, &principal.principal, &route.resource, &route.action, None)
            .await;
        let (true, Some(grant_id)) = (decision.allow, decision.grant_id) else {
            counters.deny.inc();
            return ForwardAuthAnswer::Deny {
                principal: principal.principal,
                route: Some(route),
                reason: decision.reason,
            };
        };
        let token = if settings.grant_token {
            let live = before
                .filter(|g| g.id == grant_id)
                .or_else(|| self.live_grant(&grant_id));
            match live.map(|g| self.sign_live_grant(&g)) {
                Some(Ok(token)) => Some(token),
                Some(Err(e)) => {
                    tracing::error!(error = %e, grant_id, "forward auth: cannot sign the grant's token");
                    None
                }
                None => {
                    tracing::error!(
                        grant_id,
                        "forward auth: the grant left memory before its token was signed"
                    );
                    None
                }
            }
        } else {
            None
        };
        counters.allow.inc();
        ForwardAuthAnswer::Allow {
            principal: principal.principal,
            resource: route.resource,
            action: route.action,
            grant_id,
            expires_at: decision.expires_at.unwrap_or_else(crate::now),
            token,
        }
    }

    /// Authenticate one credential, noting a refusal.
    async fn try_credential(
        &self,
        presented: &dyn Presented,
        peer: Option<IpAddr>,
        attempts: &mut Attempts,
    ) -> Option<Identity> {
        match self
            .authenticator()
            .authenticate(&|| self.policy(), presented, peer)
            .await
        {
            Ok(identity) => {
                attempts.any_authenticated = true;
                Some(identity)
            }
            Err(failure) => {
                if failure.counts {
                    self.metrics.count_auth_failure(failure.label);
                    attempts.refused.push(failure);
                }
                None
            }
        }
    }

    async fn forward_identity(
        &self,
        settings: &Settings,
        presented: &dyn Presented,
        session_cookie: Option<&str>,
        peer: Option<IpAddr>,
        attempts: &mut Attempts,
    ) -> Result<Asking, String> {
        let own = |identity: Identity| Asking {
            checker: identity.clone(),
            principal: identity,
        };
        // 1. The web UI's session.
        if let Some(cookie) = session_cookie {
            let bearer = format!("Bearer {cookie}");
            if let Some(identity) = self
                .try_credential(&auth::BearerOnly(bearer.as_bytes()), peer, attempts)
                .await
            {
                return Ok(own(identity));
            }
        }
        let asserted = settings.user_header.as_deref().and_then(|h| presented.field(h));
        // 2. The caller's bearer token: the user's own, or a listed proxy's.
        let bearer = BearerFrom {
            presented,
            field: AUTHORIZATION,
        };
        let mut proxy = None;
        if let Some(identity) = self.try_credential(&bearer, peer, attempts).await {
            if settings.proxies.contains(&identity.principal) {
                // A proxy's credential speaks for the users it names, never for itself.
                if asserted.is_none() {
                    return Err(format!(
                        "{} is a forward_auth service but named no user in {}",
                        identity.principal,
                        settings.user_header.as_deref().unwrap_or_default()
                    ));
                }
                proxy = Some(identity);
            } else {
                return Ok(own(identity));
            }
        }
        // 3. A user named by a listed proxy.
        let Some(value) = asserted else {
            return Err(match attempts.refused.first() {
                Some(f) => f.reason.clone(),
                None => "no credentials: no session cookie, bearer token or asserted user".into(),
            });
        };
        let header = settings.user_header.as_deref().unwrap_or_default();
        let proxy = match proxy {
            Some(p) => p,
            None => {
                let credential = BearerFrom {
                    presented,
                    field: &settings.credential_header,
                };
                self.try_credential(&credential, peer, attempts).await.ok_or_else(|| {
                    format!(
                        "header {header} names a user, but no proxy credential authenticates (send the proxy's service token in {})",
                        settings.credential_header
                    )
                })?
            }
        };
        if proxy.kind != PrincipalKind::Service {
            return Err(format!(
                "{} asserted a user with {header} but is not a service",
                proxy.principal
            ));
        }
        if !settings.proxies.contains(&proxy.principal) {
            return Err(format!(
                "{} asserted a user with {header} but is not in forward_auth.services",
                proxy.principal
            ));
        }
        if !peer.is_some_and(|ip| settings.sources.iter().any(|net| net.contains(&ip))) {
            return Err(format!(
                "{} asserted a user with {header} from {}, which is not in forward_auth.trusted_proxies",
                proxy.principal,
                peer.map_or("an unknown address".into(), |ip| ip.to_string())
            ));
        }
        let name = std::str::from_utf8(value)
            .map_err(|_| format!("header {header} is not UTF-8"))?
            .trim_matches(|c| c == ' ' || c == '\t');
        if let Some(problem) = jitgate_core::principal_name_problem(name) {
            return Err(format!(
                "header {header}: {:?} {problem}",
                name.escape_debug().to_string()
            ));
        }
        // A person the provisioned directory blocks is refused here as on every other path.
        let user = auth::tokens::resolve_with(&self.policy(), self.directory(), Identity::user(name, &[]))?;
        // A proxy asserts people; a service's grants are for the service's own credential.
        if user.kind == PrincipalKind::Service {
            return Err(format!(
                "{} asserted {name} with {header}, which the directory marks as a service",
                proxy.principal
            ));
        }
        Ok(Asking {
            checker: proxy,
            principal: user,
        })
    }

    /// Answer an unauthenticated call as every path does: a source that keeps presenting bad
    /// credentials is held back, unless some credential of this call authenticated.
    async fn refuse_forward(&self, attempts: Attempts, peer: Option<IpAddr>) {
        if attempts.any_authenticated {
            return;
        }
        if let Some(failure) = attempts.refused.into_iter().next() {
            self.hold_back(&failure, peer).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Result<Settings, ConfigError> {
        let config: ForwardAuthConfig = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        config.validate()
    }

    #[test]
    fn an_empty_section_trusts_only_users_own_credentials() {
        let s = config("").unwrap();
        assert_eq!(s.user_header, None);
        assert_eq!(s.credential_header, "x-jitgate-proxy-authorization");
        assert!(!s.grant_token);
    }

    #[test]
    fn services_and_trusted_proxies_go_together() {
        let e = config("trusted_proxies = [\"127.0.0.1/32\"]").unwrap_err();
        assert!(e.0.contains("trusted_proxies needs services"), "{e}");
        let e = config("services = [\"svc-edge\"]").unwrap_err();
        assert!(e.0.contains("services needs trusted_proxies"), "{e}");
        // The contract's default user header.
        let s = config("services = [\"svc-edge\"]\ntrusted_proxies = [\"127.0.0.1/32\"]\ngrant_token = true").unwrap();
        assert_eq!(s.user_header.as_deref(), Some("x-forwarded-user"));
        assert!(s.grant_token);
        let s = config(
            "user_header = \"X-Auth-Request-Email\"\nservices = [\"svc-edge\"]\ntrusted_proxies = [\"127.0.0.1/32\"]",
        )
        .unwrap();
        assert_eq!(s.user_header.as_deref(), Some("x-auth-request-email"));
        // A user header alone is never believed.
        assert_eq!(config("user_header = \"X-Forwarded-User\"").unwrap().user_header, None);
    }

    #[test]
    fn bad_values_are_refused_naming_the_key() {
        for (text, key) in [
            ("user_header = \"X Forwarded\"\nservices = [\"p\"]\ntrusted_proxies = [\"127.0.0.1/32\"]", "user_header"),
            ("user_header = \"Authorization\"\nservices = [\"p\"]\ntrusted_proxies = [\"127.0.0.1/32\"]", "user_header"),
            ("user_header = \"Cookie\"\nservices = [\"p\"]\ntrusted_proxies = [\"127.0.0.1/32\"]", "user_header"),
            ("proxy_credential_header = \"X-A\\u0000\"", "proxy_credential_header"),
            (
                "user_header = \"X-U\"\nservices = [\"svc\\u200bedge\"]\ntrusted_proxies = [\"127.0.0.1/32\"]",
                "services[0]",
            ),
            (
                "user_header = \"X-U\"\nservices = [\"p\", \"p\"]\ntrusted_proxies = [\"127.0.0.1/32\"]",
                "listed twice",
            ),
            (
                "user_header = \"X-U\"\nproxy_credential_header = \"x-u\"\nservices = [\"p\"]\ntrusted_proxies = [\"127.0.0.1/32\"]",
                "different headers",
            ),
        ] {
            let e = config(text).unwrap_err();
            assert!(e.0.contains(key), "{text}: {e}");
        }
        // Unknown keys are refused by name.
        let e = config("user_heder = \"X-U\"").unwrap_err();
        assert!(e.0.contains("user_heder"), "{e}");
        // Sources are CIDR blocks.
        assert!(config("user_header = \"X-U\"\nservices = [\"p\"]\ntrusted_proxies = [\"localhost\"]").is_err());
    }
}
