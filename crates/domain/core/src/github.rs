//! GitHub deployments that wait on jitgate (custom deployment protection rules), and the calls
//! jitgate owes GitHub: records only, as the store keeps them. The protocol (webhooks,
//! signatures, commands) lives in the service's `github` module; the REST client in the
//! connectors crate. See docs/github.md.

use crate::Timestamp;
use serde::{Deserialize, Serialize};

/// What GitHub is told about a deployment: the `state` of the protection rule's callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeploymentAnswer {
    Approved,
    Rejected,
}

impl DeploymentAnswer {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentAnswer::Approved => "approved",
            DeploymentAnswer::Rejected => "rejected",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "approved" => Some(DeploymentAnswer::Approved),
            "rejected" => Some(DeploymentAnswer::Rejected),
            _ => None,
        }
    }
}

/// Where a tracked deployment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeploymentState {
    /// Its request is not decided yet (or not yet filed, after a crash between the two).
    Waiting,
    /// jitgate decided what to tell GitHub; the callback is queued (or done).
    Answered,
}

impl DeploymentState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentState::Waiting => "waiting",
            DeploymentState::Answered => "answered",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "waiting" => Some(DeploymentState::Waiting),
            "answered" => Some(DeploymentState::Answered),
            _ => None,
        }
    }
}

/// A deployment to a GitHub environment that waits on jitgate: one `deployment_protection_rule`
/// delivery (action `requested`), and the request jitgate files for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GithubDeployment {
    /// `X-GitHub-Delivery`: a redelivery of the same event changes nothing.
    pub delivery_id: String,
    /// Chosen before the request is filed, so filing again after a crash files the same one.
    pub request_id: String,
    /// The App installation the event came through: calls back authenticate as it.
    pub installation_id: i64,
    pub owner: String,
    pub repo: String,
    pub environment: String,
    /// The workflow run whose job waits (the callback's `/actions/runs/{run_id}/...`).
    pub run_id: i64,
    /// The commit being deployed: the request's payload.
    pub sha: String,
    pub git_ref: String,
    /// The event that started the workflow (`push`, `workflow_dispatch`, ...).
    pub event: String,
    /// The GitHub login that triggered it.
    pub actor: String,
    /// Pull requests the deployment belongs to (announced there).
    pub pull_requests: Vec<i64>,
    pub state: DeploymentState,
    pub answer: Option<DeploymentAnswer>,
    /// What GitHub is told with the answer.
    pub comment: Option<String>,
    pub received_at: Timestamp,
    pub answered_at: Option<Timestamp>,
}

impl GithubDeployment {
    /// The catalog resource it is a deployment to: `github:OWNER/REPO/ENVIRONMENT`.
    pub fn resource(&self) -> String {
        format!("github:{}/{}/{}", self.owner, self.repo, self.environment)
    }
}

/// Why jitgate calls GitHub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallPurpose {
    /// Answer a deployment protection rule (`approved` or `rejected`).
    Callback,
    /// Comment on an issue or pull request (announcements, replies to `/jitgate` commands).
    Comment,
}

impl CallPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            CallPurpose::Callback => "callback",
            CallPurpose::Comment => "comment",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "callback" => Some(CallPurpose::Callback),
            "comment" => Some(CallPurpose::Comment),
            _ => None,
        }
    }
}

/// A call to GitHub's REST API to make, durably: queued in a transaction, made by a worker,
/// retried with backoff until GitHub takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewGithubCall {
    /// Unique: queuing a key already queued does nothing (a redelivery, a second replica).
    pub key: String,
    pub installation_id: i64,
    /// `POST`, `PATCH`, ...
    pub method: String,
    /// Below the configured `api_url`, starting with `/` (`/repos/o/r/issues/7/comments`).
    pub path: String,
    pub body: serde_json::Value,
    pub purpose: CallPurpose,
    pub request_id: Option<String>,
    pub due_at: Timestamp,
}

/// A queued call, with how its attempts went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GithubCall {
    pub id: i64,
    pub call: NewGithubCall,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub done_at: Option<Timestamp>,
}
