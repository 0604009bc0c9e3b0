//! jitgate's connectors: the systems jitgate talks to, each kind behind a small trait of the
//! application service (`jitgate_service::connectors`) and built from the server's config in
//! one registry ([`registry::Registry::standard`]).
//!
//! - [`providers`]: make grants real in target systems (webhook, exec, PostgreSQL roles);
//! - [`notify`]: tell people (Slack, signed webhook);
//! - [`audit_sinks`]: ship the audit log (file, stdout, HTTP);
//! - [`fetch`]: read OpenID Connect documents for the service's authentication.
//!
//! docs/architecture.md says what adding a kind touches.

pub mod audit_sinks;
pub mod config;
pub mod delivery;
pub mod fetch;
pub mod notify;
pub mod providers;
pub mod registry;

pub use config::{AuditConfig, NotifyConfig, ProviderConfig};
pub use registry::Registry;
