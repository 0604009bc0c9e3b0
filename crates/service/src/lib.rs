//! jitgate's application service: every use case (file, approve, deny, cancel, review,
//! revoke, extend, done, check, credentials, SSH certificates, tokens, keys, audit, explain,
//! waiting for a decision) over the pure core, the policy and the store, and the background
//! work that keeps them moving (expiry, deliveries, notifications, audit sinks, replicas,
//! policy reloads).
//!
//! No transport lives here: inputs and outputs are domain types and errors are
//! [`ServiceError`]. Each edge (the HTTP API, the web UI, Slack, the CLI) is a thin adapter
//! that authenticates through [`App::authenticate`], calls a use case and says the answer
//! its own way, so a rule or a limit cannot be enforced on one path and forgotten on another.

pub mod app;
pub mod audit;
pub mod auth;
pub mod background;
pub mod clock;
pub mod connectors;
pub mod directory;
pub mod error;
pub mod forward_auth;
pub mod github;
pub mod inputs;
mod items;
pub mod limits;
pub mod metrics;
pub mod notify;
pub mod outage;
pub mod provision;
pub mod replica;
pub mod resources;
pub mod scim;
pub mod signing;
pub mod ssh;

pub use app::{now, App, DatabaseLogin, Decision};
pub use error::{Invalid, Limit, ServiceError};
pub use items::ExtensionAllowance;
