//! `[scim]` in the server's config file, checked against the OIDC issuers before start.

use super::ScimSettings;
use crate::auth::config::AuthConfig;
use serde::Deserialize;

/// `[scim]`: how a provisioned user becomes a principal (docs/scim.md).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ScimConfig {
    /// `userName` (the default), `externalId`, or `email` (the primary email's value, else
    /// the first's).
    #[serde(default = "default_attribute")]
    pub principal_attribute: String,
    /// Put before the attribute's value, to equal the linked issuer's `principal_prefix`.
    #[serde(default)]
    pub principal_prefix: String,
    /// The `[[auth.oidc]]` issuer whose sign-ins are these users.
    #[serde(default)]
    pub oidc_issuer: Option<String>,
}

fn default_attribute() -> String {
    "userName".into()
}

impl Default for ScimConfig {
    fn default() -> Self {
        ScimConfig {
            principal_attribute: default_attribute(),
            principal_prefix: String::new(),
            oidc_issuer: None,
        }
    }
}

/// A `[scim]` value that cannot be used, naming the keys and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scim config: {0}")]
pub struct ScimConfigError(pub String);

impl ScimConfig {
    /// The settings, or why this config cannot keep provisioned principals apart from the
    /// principals of the other OIDC issuers.
    pub fn settings(&self, auth: &AuthConfig) -> Result<ScimSettings, ScimConfigError> {
        let attribute = match self.principal_attribute.as_str() {
            "userName" | "externalId" | "email" => self.principal_attribute.clone(),
            other => {
                return Err(ScimConfigError(format!(
                    "scim.principal_attribute: '{other}' is not userName, externalId or email"
                )))
            }
        };
        if !self.principal_prefix.is_empty() {
            if let Some(problem) = jitgate_core::principal_name_problem(&self.principal_prefix) {
                return Err(ScimConfigError(format!(
                    "scim.principal_prefix: '{}' {problem}",
                    self.principal_prefix.escape_debug()
                )));
            }
        }
        let linked = match &self.oidc_issuer {
            None => None,
            Some(issuer) => Some(auth.oidc.iter().position(|o| &o.issuer == issuer).ok_or_else(|| {
                ScimConfigError(format!(
                    "scim.oidc_issuer: '{issuer}' is not the issuer of any [[auth.oidc]]"
                ))
            })?),
        };
        if let Some(n) = linked {
            let theirs = auth.oidc[n].effective_prefix();
            if theirs != self.principal_prefix {
                return Err(ScimConfigError(format!(
                    "scim.principal_prefix: '{}' differs from oidc[{n}].principal_prefix '{theirs}' of the linked \
                     issuer (scim.oidc_issuer): the same person would be two principals; make them equal",
                    self.principal_prefix
                )));
            }
        }
        let mut foreign_prefixes = Vec::new();
        for (n, issuer) in auth.oidc.iter().enumerate() {
            if Some(n) == linked {
                continue;
            }
            let prefix = issuer.effective_prefix();
            if prefix.is_empty() {
                return Err(ScimConfigError(format!(
                    "oidc[{n}].principal_prefix: the issuer '{}' has no prefix, so its principals could be \
                     provisioned users' names; give it a principal_prefix, or name it in scim.oidc_issuer if \
                     its sign-ins are the provisioned users",
                    issuer.issuer
                )));
            }
            foreign_prefixes.push(prefix.to_string());
        }
        Ok(ScimSettings {
            principal_attribute: attribute,
            principal_prefix: self.principal_prefix.clone(),
            foreign_prefixes,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn auth(issuers: &[(&str, Option<&str>)]) -> AuthConfig {
        let mut text = String::new();
        for (issuer, prefix) in issuers {
            text.push_str(&format!(
                "[[oidc]]\nissuer = \"{issuer}\"\naudience = [\"jitgate\"]\njwks_file = \"/dev/null\"\n"
            ));
            if let Some(p) = prefix {
                text.push_str(&format!("principal_prefix = \"{p}\"\n"));
            }
        }
        toml::from_str(&text).unwrap()
    }

    #[test]
    fn every_other_issuer_needs_a_prefix() {
        let two = auth(&[("https://okta", None), ("https://google", Some("google:"))]);
        let settings = ScimConfig {
            oidc_issuer: Some("https://okta".into()),
            ..Default::default()
        }
        .settings(&two)
        .unwrap();
        assert_eq!(settings.foreign_prefixes, ["google:"]);
        let error = ScimConfig::default().settings(&two).unwrap_err();
        assert!(
            error.0.contains("oidc[0].principal_prefix") && error.0.contains("scim.oidc_issuer"),
            "{error}"
        );
    }

    #[test]
    fn the_linked_issuer_must_name_people_as_scim_does() {
        let one = auth(&[("https://okta", Some("okta:"))]);
        let ok = ScimConfig {
            principal_prefix: "okta:".into(),
            oidc_issuer: Some("https://okta".into()),
            ..Default::default()
        };
        assert!(ok.settings(&one).unwrap().foreign_prefixes.is_empty());
        let differs = ScimConfig {
            oidc_issuer: Some("https://okta".into()),
            ..Default::default()
        };
        assert!(differs.settings(&one).unwrap_err().0.contains("differs"));
        let unknown = ScimConfig {
            oidc_issuer: Some("https://nope".into()),
            ..Default::default()
        };
        assert!(unknown.settings(&one).unwrap_err().0.contains("scim.oidc_issuer"));
        let bad = ScimConfig {
            principal_attribute: "nickName".into(),
            ..Default::default()
        };
        assert!(bad.settings(&one).is_err());
        let bad = ScimConfig {
            principal_prefix: "ok ta:".into(),
            ..Default::default()
        };
        assert!(bad.settings(&one).is_err());
    }
}
