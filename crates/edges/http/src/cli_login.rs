//! What the CLI for people needs from the server: `GET /v1/whoami` (who the server takes the
//! caller for, and with which credential) and `GET /v1/login/options` (how people sign in from
//! the CLI: tokens only, or single sign-on through an OpenID issuer the server already trusts,
//! from the `[cli]` section of the config file).

use crate::auth::{caller_for, op, Headers};
use crate::error::ErrorBody;
use crate::state::Edge;
use crate::ApiError;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use utoipa::ToSchema;

/// `[cli]` of the config file: the public OpenID client `jitgate login` signs people in with.
/// Without the section (or without `sso_issuer`), people sign in with tokens only.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CliConfig {
    /// The issuer (one of `[[auth.oidc]]`, exactly as its `issuer`) people sign in with.
    pub sso_issuer: Option<String>,
    /// The public client registered at that issuer for the CLI; one of the issuer's `audience`
    /// values, so that the ID tokens it gets are accepted as bearer tokens.
    pub sso_client_id: Option<String>,
    /// The scopes asked for [default: openid, profile, email, offline_access].
    pub sso_scopes: Option<Vec<String>>,
    /// Whether the issuer offers the device authorization grant (RFC 8628) to that client
    /// [default: true].
    pub sso_device: Option<bool>,
}

/// The scopes asked for when `[cli] sso_scopes` does not say: `offline_access` for a refresh
/// token, so that people sign in once.
pub const DEFAULT_SSO_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// The answer of `GET /v1/login/options`.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct LoginOptions {
    /// Bearer tokens (`jitgate login --token -`) are always accepted.
    pub token: bool,
    /// Single sign-on from the CLI; `null` when the server has none.
    pub oidc: Option<OidcLoginOption>,
}

impl Default for LoginOptions {
    fn default() -> Self {
        LoginOptions {
            token: true,
            oidc: None,
        }
    }
}

/// The OpenID issuer and public client the CLI signs people in with.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct OidcLoginOption {
    pub issuer: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    /// Whether the device authorization grant may be used (`jitgate login --device`).
    pub device: bool,
}

impl CliConfig {
    /// The login options, checked against the OpenID issuers the server trusts: an issuer it
    /// does not trust, or a client whose tokens it would refuse, is refused with the key named.
    pub fn login_options(&self, auth: &crate::auth::config::AuthConfig) -> Result<LoginOptions, String> {
        let issuer = match (&self.sso_issuer, &self.sso_client_id) {
            (None, None) => return Ok(LoginOptions::default()),
            (Some(_), None) => return Err("[cli] sso_issuer needs sso_client_id: the CLI's public client".into()),
            (None, Some(_)) => {
                return Err("[cli] sso_client_id needs sso_issuer: the issuer it is registered at".into())
            }
            (Some(issuer), Some(_)) => issuer,
        };
        let client_id = self.sso_client_id.clone().unwrap_or_default();
        let trusted = auth.oidc.iter().find(|o| &o.issuer == issuer).ok_or_else(|| {
            let known: Vec<&str> = auth.oidc.iter().map(|o| o.issuer.as_str()).collect();
            format!(
                "[cli] sso_issuer: '{}' is not one of the [[auth.oidc]] issuers ({}); people could sign in but every call would be refused",
                issuer.escape_debug(),
                if known.is_empty() { "none is configured".to_string() } else { known.join(", ") }
            )
        })?;
        if !trusted.audience.iter().any(|a| a == &client_id) {
            return Err(format!(
                "[cli] sso_client_id: '{}' is not in the audience of [[auth.oidc]] issuer {issuer}; add it there, or its ID tokens are refused",
                client_id.escape_debug()
            ));
        }
        let scopes = match &self.sso_scopes {
            None => DEFAULT_SSO_SCOPES.iter().map(|s| s.to_string()).collect(),
            Some(scopes) => {
                if !scopes.iter().any(|s| s == "openid") {
                    return Err("[cli] sso_scopes: must include 'openid'".into());
                }
                if let Some(bad) = scopes
                    .iter()
                    .find(|s| s.is_empty() || !s.chars().all(|c| c.is_ascii_graphic() && c != '"' && c != '\\'))
                {
                    return Err(format!("[cli] sso_scopes: '{}' is not a scope", bad.escape_debug()));
                }
                scopes.clone()
            }
        };
        Ok(LoginOptions {
            token: true,
            oidc: Some(OidcLoginOption {
                issuer: issuer.clone(),
                client_id,
                scopes,
                device: self.sso_device.unwrap_or(true),
            }),
        })
    }
}

/// How people sign in from the CLI. Unauthenticated and cheap (an answer held in memory, no
/// database): it is what a CLI asks before it holds any credential.
#[utoipa::path(get, path = "/v1/login/options",
    responses((status = 200, body = LoginOptions, description = "how people sign in from the CLI: tokens, and single sign-on when [cli] configures it",
        headers(("Cache-Control" = String, description = "max-age=60")))),
    tag = "identity")]
pub async fn login_options(State(edge): State<Edge>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "max-age=60")],
        axum::Json(edge.login_options.as_ref().clone()),
    )
}

/// Who the server takes the caller for.
#[derive(Debug, Serialize, ToSchema)]
pub struct WhoamiView {
    pub principal: String,
    /// `user`, `service` or `agent` (an agent token acting for a person).
    pub kind: String,
    pub groups: Vec<String>,
    /// The roles of the authorization table the caller holds: `user`, `service`, `auditor`,
    /// `admin` (docs/authorization.md).
    pub roles: Vec<String>,
    /// For an agent: the person it acts for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
    pub credential: CredentialView,
}

/// The credential the caller presented: never the credential itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialView {
    /// `api_token`, `static_token`, `oidc` or `trusted_proxy`.
    pub kind: String,
    /// The API token's id (`tok_...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The OpenID issuer that signed the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// When the credential stops being accepted, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// Who the server takes the caller for: principal, kind, groups, roles, and which credential
/// (never the credential itself). Every authenticated caller may ask.
#[utoipa::path(get, path = "/v1/whoami",
    responses((status = 200, body = WhoamiView), (status = 401, body = ErrorBody)),
    security(("bearer" = [])), tag = "identity")]
pub async fn whoami(
    State(edge): State<Edge>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
) -> Result<Json<WhoamiView>, ApiError> {
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let (who, credential) = edge.app.authenticate_described(&Headers(&headers), peer).await?;
    let caller = caller_for::<op::Whoami>(who)?;
    let who = caller.who();
    Ok(Json(WhoamiView {
        principal: who.principal.clone(),
        kind: if who.is_agent() {
            "agent"
        } else {
            match who.kind {
                jitgate_core::PrincipalKind::User => "user",
                jitgate_core::PrincipalKind::Service => "service",
            }
        }
        .to_string(),
        groups: who.groups.clone(),
        roles: jitgate_core::authz::roles(who)
            .map(|r| r.as_str().to_string())
            .collect(),
        on_behalf_of: who.on_behalf_of.clone(),
        credential: CredentialView {
            kind: credential.kind.as_str().to_string(),
            id: credential.id,
            issuer: credential.issuer,
            expires_at: credential.expires_at,
        },
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn auth(issuer: &str, audience: &str) -> crate::auth::config::AuthConfig {
        toml::from_str(&format!(
            "[[oidc]]\nissuer = \"{issuer}\"\naudience = [\"{audience}\"]\njwks_file = \"/nonexistent\"\n"
        ))
        .unwrap()
    }

    #[test]
    fn without_the_section_people_sign_in_with_tokens_only() {
        let options = CliConfig::default().login_options(&auth("https://idp", "cli")).unwrap();
        assert_eq!(
            options,
            LoginOptions {
                token: true,
                oidc: None
            }
        );
    }

    #[test]
    fn a_trusted_issuer_and_client_give_the_defaults() {
        let config = CliConfig {
            sso_issuer: Some("https://idp".into()),
            sso_client_id: Some("cli".into()),
            ..CliConfig::default()
        };
        let oidc = config.login_options(&auth("https://idp", "cli")).unwrap().oidc.unwrap();
        assert_eq!(oidc.scopes, DEFAULT_SSO_SCOPES);
        assert!(oidc.device);
    }

    #[test]
    fn an_unknown_issuer_a_foreign_client_or_half_a_section_is_refused_naming_the_key() {
        let trusted = auth("https://idp", "cli");
        let refused = |issuer: Option<&str>, client: Option<&str>, scopes: Option<Vec<&str>>| {
            CliConfig {
                sso_issuer: issuer.map(String::from),
                sso_client_id: client.map(String::from),
                sso_scopes: scopes.map(|s| s.into_iter().map(String::from).collect()),
                sso_device: None,
            }
            .login_options(&trusted)
            .unwrap_err()
        };
        assert!(refused(Some("https://other"), Some("cli"), None).contains("[cli] sso_issuer"));
        assert!(refused(Some("https://idp"), Some("web"), None).contains("[cli] sso_client_id"));
        assert!(refused(Some("https://idp"), None, None).contains("sso_client_id"));
        assert!(refused(None, Some("cli"), None).contains("sso_issuer"));
        assert!(refused(Some("https://idp"), Some("cli"), Some(vec!["profile"])).contains("openid"));
        assert!(refused(Some("https://idp"), Some("cli"), Some(vec!["openid", "a\u{0}b"])).contains("sso_scopes"));
    }
}
