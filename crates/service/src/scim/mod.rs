//! SCIM 2.0 service provider (issue #25): the use cases behind `/scim/v2`.

/// How SCIM users become principals, checked at start against the OIDC issuers
/// (`[scim]` in the server's config; see docs/scim.md).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScimSettings {
    /// The attribute the principal is made from: `userName` (the default), `externalId` or
    /// `email` (the primary email's value).
    pub principal_attribute: String,
    /// Put before the attribute's value (`okta:`), to match the linked OIDC issuer's
    /// `principal_prefix`.
    pub principal_prefix: String,
    /// The `principal_prefix` of every OIDC issuer other than the linked one: a SCIM
    /// principal never starts with one of these, so it cannot be another issuer's principal.
    pub foreign_prefixes: Vec<String>,
}
