//! jitgate's connectors: the systems jitgate talks to, each kind behind a small trait of the
//! application service (`jitgate_service::connectors`) and built from the server's config in
//! one registry ([`registry::Registry::standard`]).
//!
//! - [`providers`]: make grants real in target systems (webhook, exec, PostgreSQL roles);
//! - [`notify`]: tell people (Slack, signed webhook);
//! - [`audit_sinks`]: ship the audit log (file, stdout, HTTP);
//! - [`fetch`]: read OpenID Connect documents for the service's authentication;
//! - [`github`]: GitHub's REST API as the jitgate App (issue #26).
//!
//! docs/architecture.md says what adding a kind touches.

/// A family's kinds, each in one line: the `kind` users write in the config, and the module
/// (a file of its own beside the family's `mod.rs`) whose `build` makes it. The line declares
/// the module and registers it, so a new kind is its own file and that one line.
macro_rules! kinds {
    ($(#[$doc:meta])* $vis:vis const $name:ident: $ty:ty = { $($kind:literal => $module:ident,)* };) => {
        $(pub mod $module;)*
        $(#[$doc])*
        $vis const $name: $ty = &[$(($kind, $module::build),)*];
    };
}

pub mod audit_sinks;
pub mod config;
pub mod delivery;
pub mod entry;
pub mod fetch;
pub mod github;
pub mod notify;
pub mod providers;
pub mod registry;

pub use config::{AuditConfig, NotifyConfig, ProviderConfig};
pub use registry::Registry;
