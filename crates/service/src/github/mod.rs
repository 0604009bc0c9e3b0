//! jitgate as a GitHub App (issue #26, docs/github.md): GitHub asks jitgate before a
//! deployment to a protected environment proceeds, and reviewers approve in pull requests.
//!
//! - `webhook`: what GitHub sends, pure: the signature (`X-Hub-Signature-256`, HMAC-SHA256,
//!   compared in constant time), the payloads jitgate reads, and `/jitgate` commands.
//! - `flow`: the use cases on [`App`]: a `deployment_protection_rule` delivery files a request
//!   for the environment (a catalog resource `github:OWNER/REPO/ENV`, action `deploy`, payload
//!   the commit SHA, requester `ci:OWNER/REPO` with `context.ci`); a comment command approves
//!   or denies as the GitHub user's principal would through the API; a decided (or expired)
//!   request's deployment is answered `approved` or `rejected`.
//! - `worker`: the background work: answering decided deployments, and making the queued
//!   calls to GitHub (through [`crate::connectors::GithubApi`]) with retries, on one replica
//!   at a time per call.
//!
//! Every call to GitHub is queued in the store first (`Store::github_*`) and made afterwards,
//! so nothing owed to GitHub is lost to a crash or an outage.

pub mod config;
mod flow;
pub mod webhook;
pub mod worker;

pub use config::{GithubConfig, GithubConfigError, GithubSettings};
pub use flow::{WebhookDelivery, WebhookOutcome};
pub use worker::run;

use crate::connectors::GithubApi;
use std::sync::Arc;

/// The configured GitHub App: its settings and the client that calls GitHub's REST API.
pub struct Github {
    pub settings: GithubSettings,
    pub api: Arc<dyn GithubApi>,
}
