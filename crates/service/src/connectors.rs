//! What the service asks of the systems it talks to, as small traits it owns: providers that
//! make grants real in target systems, notification sinks that tell people, and audit sinks
//! that ship the log. The implementations (webhook, exec, PostgreSQL roles, Slack, file,
//! stdout, HTTP...) live in the `jitgate-connectors` crate and are built from the server's
//! configuration in its registry; the service runs them (outbox, cursors, leases, retries)
//! without knowing which kinds exist. docs/architecture.md says what a new kind touches.

use async_trait::async_trait;
use jitgate_core::outbox::OutboxItem;
use jitgate_core::{Grant, Request, Timestamp};
use jitgate_policy::{Policy, Workflow};
use std::time::Duration;

/// Why a delivery did not go through.
#[derive(Debug)]
pub enum Failure {
    /// Unreachable, timed out, 5xx, 408 or 429: try again later.
    Retry(String),
    /// Any other 4xx: the receiver will not take this body, however often it is sent.
    Refused(String),
}

impl Failure {
    pub fn message(&self) -> &str {
        match self {
            Failure::Retry(m) | Failure::Refused(m) => m,
        }
    }
}

/// One outbox item to carry out: provision or deprovision `grant` in a target system.
pub struct Delivery<'a> {
    pub item: &'a OutboxItem,
    pub grant: &'a Grant,
    /// The grant's workflow in the current policy (`None` if the policy no longer has it).
    pub workflow: Option<&'a Workflow>,
    /// When this attempt started.
    pub at: Timestamp,
}

/// A provider kind: makes grants real in a target system and ends them there. The outbox
/// worker retries a failed delivery with backoff until it acknowledges, so every delivery must
/// be idempotent.
#[async_trait]
pub trait Provider: Send + Sync {
    /// The longest one delivery may take (the worker's lease allows for it).
    fn timeout(&self) -> Duration;

    /// Carry out one provisioning or deprovisioning; an error is retried.
    async fn deliver(&self, delivery: &Delivery<'_>) -> Result<(), String>;

    /// What this kind requires of a workflow that names it, checked whenever a policy is
    /// loaded: a policy that breaks it is refused.
    fn check_workflow(&self, _workflow: &Workflow) -> Result<(), String> {
        Ok(())
    }

    /// The logins this provider hands a grant's holder on request, if it makes any.
    fn logins(&self) -> Option<&dyn LoginIssuer> {
        None
    }
}

/// A login made for a grant's holder.
pub struct Login {
    pub user: String,
    pub password: String,
    /// Where the holder connects.
    pub host: String,
    pub port: u16,
    pub database: String,
    /// A connection URL with all of the above, for clients and drivers.
    pub url: String,
}

/// A provider that makes database logins for grant holders (`POST /v1/grants/{id}/credentials`).
#[async_trait]
pub trait LoginIssuer: Send + Sync {
    /// A fresh login for the provisioned grant; called once per grant and provider.
    async fn issue_login(&self, grant: &Grant) -> Result<Login, String>;
}

/// A notification sink kind: delivers one message to people, through a chat or a webhook.
#[async_trait]
pub trait NotificationSink: Send + Sync {
    /// The sink's name in the config, which keys its cursor and lease in the store.
    fn name(&self) -> &str;

    /// Deliver `message`; `link` opens its request. The policy's directory says how to reach
    /// each recipient. A `Failure::Refused` skips the message, a `Failure::Retry` retries it.
    async fn send(&self, message: &Message, link: &str, policy: &Policy) -> Result<(), Failure>;
}

/// One notification: what happened, to whom it matters, and the request it is about.
pub struct Message {
    pub event: jitgate_core::AuditEvent,
    pub headline: String,
    /// Principals to tell.
    pub recipients: Vec<String>,
    pub request: Request,
    /// Offer Approve and Deny.
    pub review: bool,
}

/// One audit event, as an audit sink receives it: its sequence number, its hash and its line
/// (json or ecs, as the sink's config says).
pub struct AuditLine {
    pub seq: i64,
    pub hash: String,
    pub text: String,
}

/// The last event an audit sink's target holds: its seq and, when the target kept it, its
/// hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditMark {
    pub seq: i64,
    pub hash: Option<String>,
}

/// An audit sink kind: ships committed audit events somewhere, in order. Delivery is at least
/// once; an error is retried with backoff and nothing is skipped.
#[async_trait]
pub trait AuditSink: Send + Sync {
    /// Events per call to `ship` at most.
    fn batch(&self) -> u32 {
        100
    }

    /// Ship `lines` (never empty, in order); `name` is the sink's name in the config.
    async fn ship(&self, name: &str, lines: &[AuditLine]) -> Result<(), String>;

    /// The last event the target itself holds, when it can tell (a file reads its last line):
    /// the runner goes on after it, and first makes sure the log still has that event with
    /// that hash. `None` when it cannot tell (stdout, a receiver over HTTP).
    async fn holds(&self) -> Result<Option<AuditMark>, String> {
        Ok(None)
    }
}

/// GitHub's REST API, as the App's installation (issue #26): the GitHub worker makes each
/// queued call through it and retries on `Failure::Retry`. The implementation (App JWT,
/// installation tokens cached until near their expiry, `api_url`) is in the connectors crate.
#[async_trait]
pub trait GithubApi: Send + Sync {
    /// Make `call` as installation `call.installation_id`: its JSON answer (`None` for an
    /// empty one, as 204).
    async fn call(&self, call: &jitgate_core::github::NewGithubCall) -> Result<Option<serde_json::Value>, Failure>;
}
