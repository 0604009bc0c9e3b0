//! The GitHub use cases on [`App`].
//!
//! A `deployment_protection_rule` delivery is tracked under a request id chosen first, then
//! filed: a crash between the two leaves a tracked deployment the worker files again under the
//! same id. Whatever jitgate owes GitHub (a callback, a comment) is queued in the store and
//! made by the worker, so the webhook answers within GitHub's timeout and nothing is lost to
//! an outage. A `/jitgate` comment decides as the commenter's principal would through the API.

use super::webhook::{self, Command, CommentEvent, DeploymentEvent};
use super::Github;
use crate::auth::{caller_for, op};
use crate::inputs::NewRequest;
use crate::{now, App, ServiceError};
use jitgate_core::audit::{EventKind, NewEvent, SYSTEM_ACTOR};
use jitgate_core::github::{CallPurpose, DeploymentAnswer, DeploymentState, GithubDeployment, NewGithubCall};
use jitgate_core::{CiClaims, Identity, PrincipalKind, Request, RequestStatus};
use serde::Serialize;
use serde_json::json;

/// One webhook delivery as it arrived: the headers jitgate reads and the raw body (the
/// signature covers these exact bytes).
#[derive(Debug, Clone, Copy)]
pub struct WebhookDelivery<'a> {
    /// `X-GitHub-Event`.
    pub event: Option<&'a str>,
    /// `X-GitHub-Delivery`.
    pub delivery: Option<&'a str>,
    /// `X-Hub-Signature-256`.
    pub signature: Option<&'a str>,
    pub body: &'a [u8],
}

/// What jitgate did with a delivery, as the webhook's 200/202 answer says it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum WebhookOutcome {
    /// A deployment's request was filed (`status` as filed: pending, approved, denied).
    Filed { request_id: String, status: String },
    /// A deployment jitgate cannot file for was answered `rejected` at once.
    Rejected { request_id: String, reason: String },
    /// A `/jitgate` command was carried out or refused; the reply is queued.
    Command {
        request_id: String,
        done: bool,
        reply: String,
    },
    /// This `X-GitHub-Delivery` was handled before: nothing done again.
    Duplicate,
    /// Signed, but nothing for jitgate (another event, another action, no command).
    Ignored { why: String },
}

impl WebhookOutcome {
    /// The `outcome` label of `jitgate_github_webhooks_total`.
    fn label(&self) -> &'static str {
        match self {
            WebhookOutcome::Filed { .. } => "filed",
            WebhookOutcome::Rejected { .. } => "rejected",
            WebhookOutcome::Command { .. } => "command",
            WebhookOutcome::Duplicate => "duplicate",
            WebhookOutcome::Ignored { .. } => "ignored",
        }
    }
}

/// The action every deployment request asks for.
pub const DEPLOY_ACTION: &str = "deploy";
/// The catalog kind of a GitHub environment.
pub const ENVIRONMENT_KIND: &str = "github-environment";
/// Most pull requests a deployment's request is announced on.
const MAX_ANNOUNCED: usize = 3;
/// Most pull request numbers kept with a deployment.
const MAX_PULL_REQUESTS: usize = 20;
/// The longest comment GitHub is told with an answer, in characters.
const MAX_ANSWER_COMMENT: usize = 1000;
/// What a record keeps for a value the delivery left out.
const MISSING: &str = "\\(missing)";
/// The longest request id a reply repeats, in characters.
const MAX_ECHOED_ID: usize = 64;
/// Most SCIM users read looking for a GitHub login in an attribute that cannot be queried.
const MAX_SCIM_SCAN: u64 = 10_000;

/// What became of filing a tracked deployment's request.
pub(crate) enum Filing {
    /// Filed now or before (a redelivery, another replica's sweep).
    Filed(Box<Request>),
    /// It cannot be filed: answer `rejected`, saying why.
    Refused(String),
}

impl App {
    /// Handle one delivery: 401 (`Unauthenticated`) unless signed with the webhook secret,
    /// 404 (`NotFound`) when `[github]` is not configured.
    pub async fn github_webhook(&self, delivery: &WebhookDelivery<'_>) -> Result<WebhookOutcome, ServiceError> {
        let Some(github) = self.github() else {
            return Err(ServiceError::NotFound("GitHub is not configured ([github])".into()));
        };
        let handled = self.handle_delivery(&github, delivery).await;
        let label = match &handled {
            Ok(outcome) => outcome.label(),
            Err(ServiceError::Unauthenticated(_)) => "unauthenticated",
            Err(ServiceError::Invalid(_)) => "bad_request",
            Err(_) => "failed",
        };
        self.metrics.count_github_webhook(label);
        handled
    }

    async fn handle_delivery(
        &self,
        github: &Github,
        delivery: &WebhookDelivery<'_>,
    ) -> Result<WebhookOutcome, ServiceError> {
        // Nothing is read before the signature is checked: an unsigned body is noise.
        if let Err(why) = webhook::verify_signature(&github.settings.webhook_secret, delivery.signature, delivery.body)
        {
            tracing::warn!(%why, "refused a GitHub webhook delivery");
            return Err(ServiceError::Unauthenticated(
                "the delivery is not signed with the App's webhook secret".into(),
            ));
        }
        for (name, value) in [
            ("X-GitHub-Delivery", delivery.delivery),
            ("X-GitHub-Event", delivery.event),
        ] {
            if let Some(problem) = webhook::header_problem(value) {
                return Err(ServiceError::invalid(format!("{name} {problem}")));
            }
        }
        let (Some(guid), Some(event)) = (delivery.delivery, delivery.event) else {
            return Err(ServiceError::invalid(
                "X-GitHub-Delivery and X-GitHub-Event are required",
            ));
        };
        // The signature covers the body, not the headers: whoever saw a delivery could send
        // it again under a fresh X-GitHub-Delivery. So a delivery is remembered by its signed
        // body (GitHub's redelivery sends the same bytes; two events never have the same
        // ones), and X-GitHub-Delivery only names it in the log.
        let delivery_key = webhook::delivery_key(delivery.body);
        tracing::debug!(delivery = guid, key = %delivery_key, event, "GitHub webhook delivery");
        let delivery_id = delivery_key.as_str();
        // Only the events jitgate acts on are read any further.
        let action = match event {
            "deployment_protection_rule" | "issue_comment" => {
                serde_json::from_slice::<webhook::ActionOnly>(delivery.body)
                    .map_err(|e| ServiceError::invalid(format!("the body is not a JSON object: {e}")))?
                    .action
            }
            _ => None,
        };
        match (event, action.as_deref()) {
            ("ping", _) => Ok(WebhookOutcome::Ignored {
                why: "ping: GitHub checks the webhook is reachable".into(),
            }),
            ("deployment_protection_rule", Some("requested")) => {
                self.deployment(github, delivery_id, delivery.body).await
            }
            ("issue_comment", Some("created")) => self.comment_command(github, delivery_id, delivery.body).await,
            (event, action) => Ok(WebhookOutcome::Ignored {
                why: format!(
                    "jitgate does not act on {event}{}",
                    action
                        .map(|a| format!(" ({})", webhook::stored_form(a)))
                        .unwrap_or_default()
                ),
            }),
        }
    }

    /// A deployment waits on jitgate: track it, file its request, announce it.
    async fn deployment(
        &self,
        github: &Github,
        delivery_id: &str,
        body: &[u8],
    ) -> Result<WebhookOutcome, ServiceError> {
        let event: DeploymentEvent = serde_json::from_slice(body)
            .map_err(|e| ServiceError::invalid(format!("the body is not a deployment_protection_rule event: {e}")))?;
        let deployment = read_deployment(delivery_id, &event)?;
        if !self.store.github_track_deployment(&deployment).await? {
            return Ok(WebhookOutcome::Duplicate);
        }
        match self.file_tracked(github, &deployment).await? {
            Filing::Filed(request) => {
                self.after_filing(github, &deployment, &request).await;
                Ok(WebhookOutcome::Filed {
                    request_id: request.id.clone(),
                    status: request.status_at(now()).as_str().to_string(),
                })
            }
            Filing::Refused(reason) => {
                self.answer_deployment(&deployment, None, DeploymentAnswer::Rejected, &reason, SYSTEM_ACTOR)
                    .await?;
                Ok(WebhookOutcome::Rejected {
                    request_id: deployment.request_id.clone(),
                    reason,
                })
            }
        }
    }

    /// File the request of a tracked deployment under its id (again, after a crash: an id
    /// already filed is read back).
    pub(crate) async fn file_tracked(&self, github: &Github, d: &GithubDeployment) -> Result<Filing, ServiceError> {
        if let Some(problem) = deployment_problem(github, d) {
            return Ok(Filing::Refused(problem));
        }
        let policy = self.policy();
        let resource = match resource_for(&policy, d) {
            Ok(resource) => resource,
            Err(problem) => return Ok(Filing::Refused(problem)),
        };
        // Whoever triggered the deployment counts as its requester: mapped to their principal,
        // they may not approve or deny it on any channel (the state machine refuses them as
        // it refuses an agent's person). Mapped again on each filing: directory.toml may
        // have linked them since.
        let triggered_by = self.triggered_by(github, d).await?;
        let who = requester(github, d, triggered_by);
        let body = NewRequest {
            resource,
            action: DEPLOY_ACTION.into(),
            duration: None,
            reason: format!(
                "GitHub deployment of {} ({}) to {}, run {}, triggered by {}",
                d.sha.get(..12).unwrap_or(&d.sha),
                d.git_ref,
                d.environment,
                d.run_id,
                d.actor
            ),
            payload: Some(d.sha.clone()),
            break_glass: false,
            items: None,
        };
        match self.file_with_id(&who, &body, d.request_id.clone()).await {
            Ok(request) => Ok(Filing::Filed(Box::new(request))),
            // Worth trying again later, with the same id: the store, a rate.
            Err(e @ (ServiceError::Unavailable(_) | ServiceError::RetryLater { .. })) => Err(e),
            Err(e @ (ServiceError::Conflict(_) | ServiceError::Internal(_))) => {
                // A second insert of the same id fails: it was filed (a redelivery racing a
                // sweep). Anything else is the server's fault, tried again later.
                match self.store.get_request(&d.request_id).await? {
                    Some(request) => Ok(Filing::Filed(Box::new(request))),
                    None => Err(e),
                }
            }
            // The policy's (or a limit's) refusal: GitHub is told why.
            Err(refusal) => Ok(Filing::Refused(format!(
                "jitgate refused the request to deploy to {}: {refusal}",
                body.resource
            ))),
        }
    }

    /// Once filed: announce a request that waits on the deployment's pull requests.
    pub(crate) async fn after_filing(&self, github: &Github, d: &GithubDeployment, request: &Request) {
        if !github.settings.announce || request.status_at(now()) != RequestStatus::Pending {
            return;
        }
        let calls: Vec<NewGithubCall> = d
            .pull_requests
            .iter()
            .take(MAX_ANNOUNCED)
            .map(|pr| NewGithubCall {
                key: format!("announce:{}:{pr}", request.id),
                installation_id: d.installation_id,
                method: "POST".into(),
                path: comments_path(&d.owner, &d.repo, *pr),
                body: json!({ "body": self.announcement(d, request) }),
                purpose: CallPurpose::Comment,
                request_id: Some(request.id.clone()),
                due_at: now(),
            })
            .collect();
        if calls.is_empty() {
            return;
        }
        // The deployment is tracked and filed: a lost announcement costs reviewers a link,
        // never the answer to GitHub.
        if let Err(error) = self.store.github_enqueue(&calls).await {
            tracing::warn!(%error, request_id = %request.id, "cannot queue the announcement of a deployment on its pull requests");
        }
    }

    /// The comment announcing a waiting deployment.
    fn announcement(&self, d: &GithubDeployment, request: &Request) -> String {
        let missing: Vec<String> = (0..request.item_count())
            .flat_map(|i| request.item_missing_approvals(i))
            .map(|s| format!("{} from {}", s.approvals, webhook::markdown(&s.group)))
            .collect();
        format!(
            "**jitgate**: the deployment of `{}` to {} of {}/{} waits for approval ({}).\n\n\
             It still needs {}.\n\nReviewers: comment `/jitgate approve {}` or `/jitgate deny {} reason`, \
             or open {}",
            d.sha,
            webhook::markdown(&d.environment),
            webhook::markdown(&d.owner),
            webhook::markdown(&d.repo),
            request.id,
            if missing.is_empty() {
                "a decision".to_string()
            } else {
                missing.join(" and ")
            },
            request.id,
            request.id,
            self.notifier().link(&request.id),
        )
    }

    /// Decide what GitHub is told about deployment `d` and queue the callback, with the
    /// `github.deployment_answered` event, in one write. `false` when another replica (or a
    /// redelivery) answered it first.
    pub(crate) async fn answer_deployment(
        &self,
        d: &GithubDeployment,
        request: Option<&Request>,
        answer: DeploymentAnswer,
        why: &str,
        actor: &str,
    ) -> Result<bool, ServiceError> {
        let at = now();
        let link = self.notifier().link(&d.request_id);
        let verdict = match answer {
            DeploymentAnswer::Approved => "jitgate approved this deployment",
            DeploymentAnswer::Rejected => "jitgate rejected this deployment",
        };
        let text = webhook::cut(
            &format!(
                "{verdict}: {}. Request {}: {link}",
                webhook::markdown(why),
                d.request_id
            ),
            MAX_ANSWER_COMMENT,
        );
        let callback = NewGithubCall {
            key: format!("callback:{}", d.request_id),
            installation_id: d.installation_id,
            method: "POST".into(),
            path: format!(
                "/repos/{}/{}/actions/runs/{}/deployment_protection_rule",
                webhook::path_segment(&d.owner),
                webhook::path_segment(&d.repo),
                d.run_id
            ),
            body: json!({
                "environment_name": d.environment,
                "state": answer.as_str(),
                "comment": text,
            }),
            purpose: CallPurpose::Callback,
            request_id: Some(d.request_id.clone()),
            due_at: at,
        };
        let event = NewEvent {
            kind: EventKind::GithubDeploymentAnswered,
            at,
            actor: actor.to_string(),
            subject: principal_of(d),
            request_id: Some(d.request_id.clone()),
            grant_id: request.and_then(|r| r.grant.as_ref()).map(|g| g.id.clone()),
            resource: request.map_or_else(|| d.resource(), |r| r.resource.clone()),
            action: DEPLOY_ACTION.into(),
            comment: Some(format!("{}: {why}", answer.as_str())),
        };
        let answered = self
            .store
            .github_answer(&d.request_id, answer, &text, at, &[callback], &event)
            .await?;
        Ok(answered)
    }

    /// A `/jitgate approve|deny` comment.
    async fn comment_command(
        &self,
        github: &Github,
        delivery_id: &str,
        body: &[u8],
    ) -> Result<WebhookOutcome, ServiceError> {
        let event: CommentEvent = serde_json::from_slice(body)
            .map_err(|e| ServiceError::invalid(format!("the body is not an issue_comment event: {e}")))?;
        let comment = event
            .comment
            .as_ref()
            .ok_or_else(|| ServiceError::invalid("comment is missing"))?;
        let user = comment.user.clone().unwrap_or_default();
        // jitgate never answers itself, nor any other App or bot.
        let by_app = comment.performed_via_github_app.as_ref().is_some_and(|v| !v.is_null());
        if user.kind.as_deref() == Some("Bot") || by_app {
            return Ok(WebhookOutcome::Ignored {
                why: "a comment by a bot or an App".into(),
            });
        }
        let command = webhook::parse_command(comment.body.as_deref().unwrap_or_default());
        if command == Command::NotACommand {
            return Ok(WebhookOutcome::Ignored {
                why: "no /jitgate command".into(),
            });
        }
        if !webhook::may_command(comment.author_association.as_deref()) {
            return Ok(WebhookOutcome::Ignored {
                why: "a command by someone who is not the repository's owner, a member or a collaborator".into(),
            });
        }
        let installation_id = installation_of(event.installation.as_ref())?;
        let issue = event
            .issue
            .as_ref()
            .and_then(|i| i.number)
            .filter(|n| *n > 0)
            .ok_or_else(|| ServiceError::invalid("issue.number is missing"))?;
        let (owner, repo) = repository_of(event.repository.as_ref())?;
        let login = user.login.clone().unwrap_or_default();
        // Every command costs a reply on GitHub, on the installation's shared rate limit:
        // one commenter (linked or not) gets the writes per minute any principal gets, under
        // a name no principal has. Not claimed: GitHub's redelivery may carry it out later.
        let commenter = format!("github-user:{}", login.to_ascii_lowercase());
        if let Err(after) = self.caller_limits().take_write(&commenter, std::time::Instant::now()) {
            self.metrics.count_limit(crate::Limit::Rate.as_str());
            return Err(ServiceError::RetryLater {
                limit: crate::Limit::Rate,
                message: format!(
                    "{} is sending /jitgate commands faster than this server's [limits] writes_per_minute allows; \
                     try again in {} s",
                    webhook::stored_form(&login),
                    crate::error::retry_after_seconds(after)
                ),
                after,
            });
        }
        if !self
            .store
            .github_claim_delivery(delivery_id, "issue_comment", now())
            .await?
        {
            return Ok(WebhookOutcome::Duplicate);
        }
        let carried = self
            .carry_out(
                github,
                &command,
                &login,
                (&owner, &repo, issue),
                comment.html_url.as_deref(),
            )
            .await;
        let (request_id, done, reply) = match carried {
            Ok(outcome) => outcome,
            Err(e) => {
                // Nothing was done: GitHub's redelivery is carried out.
                self.release_delivery(delivery_id).await;
                return Err(e);
            }
        };
        let call = NewGithubCall {
            key: format!("reply:{delivery_id}"),
            installation_id,
            method: "POST".into(),
            path: comments_path(&owner, &repo, issue),
            body: json!({ "body": reply }),
            purpose: CallPurpose::Comment,
            request_id: (!request_id.is_empty()).then(|| request_id.clone()),
            due_at: now(),
        };
        if let Err(e) = self.store.github_enqueue(&[call]).await {
            // A decision made stays made: the redelivery finds it decided and says so.
            self.release_delivery(delivery_id).await;
            return Err(e.into());
        }
        Ok(WebhookOutcome::Command {
            request_id,
            done,
            reply,
        })
    }

    async fn release_delivery(&self, delivery_id: &str) {
        if let Err(error) = self.store.github_release_delivery(delivery_id).await {
            tracing::warn!(%error, delivery_id, "cannot forget a GitHub delivery whose work failed; its redelivery will be ignored");
        }
    }

    /// Carry out a command: (request id, whether it was done, the reply). `Err` only for a
    /// failure worth a redelivery (the store).
    async fn carry_out(
        &self,
        github: &Github,
        command: &Command,
        login: &str,
        (owner, repo, issue): (&str, &str, i64),
        html_url: Option<&str>,
    ) -> Result<(String, bool, String), ServiceError> {
        let who_shown = webhook::markdown(login);
        let (approve, request_id, text) = match command {
            Command::Decide {
                approve,
                request_id,
                text,
            } => (*approve, request_id, text),
            Command::Refused(why) => {
                return Ok((String::new(), false, format!("{who_shown}: {}", webhook::markdown(why))))
            }
            Command::Usage | Command::NotACommand => {
                return Ok((String::new(), false, format!("{who_shown}: {}", webhook::USAGE)));
            }
        };
        let not_here = || {
            (
                String::new(),
                false,
                format!(
                    "{}: {} is not a deployment of {}/{}",
                    who_shown,
                    // Echoed, but never at length.
                    webhook::markdown(&webhook::cut(request_id, MAX_ECHOED_ID)),
                    webhook::markdown(owner),
                    webhook::markdown(repo)
                ),
            )
        };
        if !webhook::is_request_id(request_id) {
            return Ok(not_here());
        }
        // Only this repository's deployments are decided from its comments: anyone who can
        // comment on some repository must not reach another's requests, nor learn of them.
        let deployment = self.store.github_deployment(request_id).await?;
        let ours = deployment
            .as_ref()
            .is_some_and(|d| d.owner.eq_ignore_ascii_case(owner) && d.repo.eq_ignore_ascii_case(repo));
        if !ours {
            return Ok(not_here());
        }
        // A deployment that belongs to pull requests is decided only on them: a command on
        // any other issue of the repository would decide it where its reviewers are not.
        if let Some(d) = deployment.as_ref().filter(|d| !d.pull_requests.is_empty()) {
            if !d.pull_requests.contains(&issue) {
                let on: Vec<String> = d.pull_requests.iter().map(|n| format!("#{n}")).collect();
                return Ok((
                    request_id.clone(),
                    false,
                    format!(
                        "{who_shown}: {request_id} is decided only on its pull request{} {}: comment there",
                        if on.len() == 1 { "" } else { "s" },
                        on.join(", ")
                    ),
                ));
            }
        }
        // Whoever triggered the deployment never decides it, linked to a principal or not
        // (linked after it was filed, say).
        if deployment.as_ref().is_some_and(|d| d.actor.eq_ignore_ascii_case(login)) {
            return Ok((
                request_id.clone(),
                false,
                format!(
                    "{who_shown} triggered this deployment and cannot approve or deny it: someone else must decide"
                ),
            ));
        }
        let who = match self.github_principal(github, login).await? {
            Ok(who) => who,
            Err(reply) => return Ok((request_id.clone(), false, reply)),
        };
        let url = html_url.filter(|u| u.starts_with("https://") && webhook::ref_problem(u).is_none());
        let comment = match (text.is_empty(), url) {
            (false, Some(url)) => format!("{text} (from GitHub: {url})"),
            (false, None) => format!("{text} (from GitHub)"),
            (true, Some(url)) => format!("from GitHub: {url}"),
            (true, None) => "from GitHub".to_string(),
        };
        let principal = who.principal.clone();
        let decided = if approve {
            match caller_for::<op::ApproveRequest>(who) {
                Ok(caller) => self.approve(&caller, request_id, Some(comment)).await,
                Err(e) => Err(e),
            }
        } else {
            match caller_for::<op::DenyRequest>(who) {
                Ok(caller) => self.deny(&caller, request_id, Some(comment)).await,
                Err(e) => Err(e),
            }
        };
        let shown = webhook::markdown(&principal);
        // What was decided, so nobody mistakes one deployment for another.
        let what = deployment.as_ref().map_or_else(String::new, |d| {
            format!(
                " (the deployment of `{}` to {} from {})",
                d.sha.get(..12).unwrap_or(&d.sha),
                webhook::markdown(&d.environment),
                webhook::markdown(&d.git_ref)
            )
        });
        match decided {
            Ok(request) => {
                let missing: Vec<String> = (0..request.item_count())
                    .flat_map(|i| request.item_missing_approvals(i))
                    .map(|s| format!("{} from {}", s.approvals, webhook::markdown(&s.group)))
                    .collect();
                let reply = match request.status_at(now()) {
                    RequestStatus::Pending => format!(
                        "{shown} approved {}{what}; it still needs {}. {}",
                        request.id,
                        missing.join(" and "),
                        self.notifier().link(&request.id)
                    ),
                    status => format!(
                        "{}{what} is {} by {shown}. {}",
                        request.id,
                        status.as_str(),
                        self.notifier().link(&request.id)
                    ),
                };
                Ok((request_id.clone(), true, reply))
            }
            // The store could not take it: GitHub's redelivery tries again.
            Err(e @ (ServiceError::Unavailable(_) | ServiceError::Internal(_))) => Err(e),
            Err(refusal) => {
                if let Some(limit) = refusal.limit() {
                    self.metrics.count_limit(limit.as_str());
                }
                Ok((
                    request_id.clone(),
                    false,
                    format!("{shown} cannot do that: {}", webhook::markdown(&refusal.to_string())),
                ))
            }
        }
    }

    /// GitHub's `prevent_self_review`, which GitHub itself does not apply to custom protection
    /// rules: `reviewer` may not approve a deployment whose GitHub account (its `sender`) is
    /// linked to them now. The request's `on_behalf_of` already refuses whoever was linked when
    /// it was filed; this holds too for a login linked after filing, or by a SCIM attribute
    /// that was ambiguous then, and for a principal blocked then and reactivated since.
    pub(crate) async fn refuse_deployment_trigger(
        &self,
        request_id: &str,
        reviewer: &Identity,
    ) -> Result<(), ServiceError> {
        let Some(github) = self.github() else {
            return Ok(());
        };
        let Some(d) = self.store.github_deployment(request_id).await? else {
            return Ok(());
        };
        if !webhook::is_github_login(&d.actor) {
            return Ok(());
        }
        let linked = match directory_identity_for_login(&self.policy(), &d.actor) {
            Some(identity) => Some(identity.principal),
            None => match github.settings.scim_login_attribute.as_deref() {
                Some(attribute) => self.scim_principal_for_login(attribute, &d.actor).await?,
                None => None,
            },
        };
        match linked {
            Some(principal) if principal.eq_ignore_ascii_case(&reviewer.principal) => {
                Err(ServiceError::Forbidden(format!(
                    "{} triggered this deployment on GitHub (as {}): someone else must decide it",
                    reviewer.principal, d.actor
                )))
            }
            _ => Ok(()),
        }
    }

    /// The principal of the GitHub account that triggered deployment `d` (its `sender`), linked
    /// as a commenter's login is; `None` when it is linked to nobody (a bot, an unknown login).
    async fn triggered_by(&self, github: &Github, d: &GithubDeployment) -> Result<Option<String>, ServiceError> {
        if !webhook::is_github_login(&d.actor) {
            return Ok(None);
        }
        Ok(self
            .github_principal(github, &d.actor)
            .await?
            .ok()
            .map(|who| who.principal))
    }

    /// The identity a GitHub login acts as: directory.toml's `github_user`, else the SCIM
    /// user whose `scim_login_attribute` holds it; as authentication would give it (SCIM
    /// groups added, blocked principals refused). `Ok(Err(reply))` when it acts as nobody.
    async fn github_principal(&self, github: &Github, login: &str) -> Result<Result<Identity, String>, ServiceError> {
        if !webhook::is_github_login(login) {
            return Ok(Err(format!(
                "{} is not a GitHub login jitgate can link to a principal",
                webhook::markdown(login)
            )));
        }
        // A login has GitHub's shape (checked above): `@login` mentions that user only, never
        // a team, and a code span holds it as it is.
        let unlinked = || {
            format!(
                "@{login} is not linked to a jitgate principal: add `github_user = \"{login}\"` to your entry in directory.toml"
            )
        };
        let policy = self.policy();
        let identity = match directory_identity_for_login(&policy, login) {
            Some(identity) => identity,
            None => {
                let Some(attribute) = github.settings.scim_login_attribute.as_deref() else {
                    return Ok(Err(unlinked()));
                };
                match self.scim_principal_for_login(attribute, login).await? {
                    Some(principal) => Identity {
                        principal,
                        groups: Vec::new(),
                        kind: PrincipalKind::User,
                        ci: None,
                        on_behalf_of: None,
                    },
                    None => return Ok(Err(unlinked())),
                }
            }
        };
        Ok(crate::auth::tokens::resolve_with(&policy, self.directory(), identity)
            .map_err(|told| webhook::markdown(&told)))
    }

    /// The principal of the one live SCIM user whose `attribute` equals `login` (ASCII
    /// case-insensitive); `None` for none or several.
    async fn scim_principal_for_login(&self, attribute: &str, login: &str) -> Result<Option<String>, ServiceError> {
        let mut found: Vec<String> = Vec::new();
        let mut start = 1u64;
        loop {
            let query = jitgate_core::scim::ScimQuery {
                user_name: (attribute == "userName").then(|| login.to_string()),
                start_index: start,
                count: 100,
                ..Default::default()
            };
            let page = self.store.scim_users(&query).await?;
            let read = page.items.len() as u64;
            for user in page.items {
                let value = scim_attribute(&user.doc, attribute);
                if value.is_some_and(|v| v.eq_ignore_ascii_case(login)) && !found.contains(&user.principal) {
                    found.push(user.principal);
                }
            }
            start += read;
            if read == 0 || start > page.total || start > MAX_SCIM_SCAN {
                break;
            }
        }
        Ok(if found.len() == 1 { found.pop() } else { None })
    }
}

/// directory.toml's principal whose `github_user` is `login` (ASCII case-insensitive).
fn directory_identity_for_login(policy: &jitgate_policy::Policy, login: &str) -> Option<Identity> {
    policy
        .rules()
        .principal_by_github_user(login)
        .map(|entry| entry.identity.clone())
}

/// A string attribute of a SCIM user's document: `name.sub`, or an extension's
/// `urn:...:User:attribute`.
fn scim_attribute<'a>(doc: &'a serde_json::Value, attribute: &str) -> Option<&'a str> {
    if attribute.starts_with("urn:") {
        let (schema, name) = attribute.rsplit_once(':')?;
        return doc.get(schema)?.get(name)?.as_str();
    }
    let mut at = doc;
    for part in attribute.split('.') {
        at = at.get(part)?;
    }
    at.as_str()
}

/// The path of a comment on issue or pull request `number`.
fn comments_path(owner: &str, repo: &str, number: i64) -> String {
    format!(
        "/repos/{}/{}/issues/{number}/comments",
        webhook::path_segment(owner),
        webhook::path_segment(repo)
    )
}

/// The workflow's principal: `ci:OWNER/REPO`.
pub(crate) fn principal_of(d: &GithubDeployment) -> String {
    format!("ci:{}/{}", d.owner, d.repo)
}

/// The requester a deployment's request is filed (and its grant used) as; `triggered_by` is
/// the principal of who triggered it (kept as `on_behalf_of`: the state machine refuses their
/// review, and with `ci` set it makes no agent).
pub(crate) fn requester(github: &Github, d: &GithubDeployment, triggered_by: Option<String>) -> Identity {
    Identity {
        principal: principal_of(d),
        groups: github.settings.requester_groups.clone(),
        kind: PrincipalKind::User,
        ci: Some(CiClaims {
            repository: format!("{}/{}", d.owner, d.repo),
            git_ref: d.git_ref.clone(),
            environment: d.environment.clone(),
            workflow: String::new(),
            actor: d.actor.clone(),
        }),
        on_behalf_of: triggered_by,
    }
}

/// The installation a delivery came through: calls back authenticate as it.
fn installation_of(installation: Option<&webhook::Installation>) -> Result<i64, ServiceError> {
    installation
        .and_then(|i| i.id)
        .filter(|id| *id > 0)
        .ok_or_else(|| ServiceError::invalid("installation.id is missing"))
}

/// The repository a delivery is about, as (owner, name).
fn repository_of(repository: Option<&webhook::Repository>) -> Result<(String, String), ServiceError> {
    repository
        .and_then(webhook::Repository::owner_and_name)
        .ok_or_else(|| ServiceError::invalid("repository.full_name is missing"))
}

/// The record of a delivery: what it says, with text that jitgate refuses kept in its
/// escaped, bounded form (so the store never sees a NUL, and reading the record back refuses
/// it again). `Err` only when nothing could be answered: no callback URL for this
/// repository, no installation.
fn read_deployment(delivery_id: &str, event: &DeploymentEvent) -> Result<GithubDeployment, ServiceError> {
    let installation_id = installation_of(event.installation.as_ref())?;
    let (owner, repo) = repository_of(event.repository.as_ref())?;
    let url = event
        .deployment_callback_url
        .as_deref()
        .ok_or_else(|| ServiceError::invalid("deployment_callback_url is missing"))?;
    let run_id = webhook::callback_run_id(url, &owner, &repo)
        .map_err(|why| ServiceError::invalid(format!("deployment_callback_url {why}")))?;
    let deployment = event.deployment.clone().unwrap_or_default();
    let mut pull_requests: Vec<i64> = Vec::new();
    for number in event
        .pull_requests
        .iter()
        .flatten()
        .filter_map(|pr| pr.number)
        .filter(|n| *n > 0)
    {
        if !pull_requests.contains(&number) && pull_requests.len() < MAX_PULL_REQUESTS {
            pull_requests.push(number);
        }
    }
    // A value GitHub left out is kept as a mark no check accepts (the store keeps no empty
    // name, and the record must be refused again when read back).
    let text = |value: Option<&str>| match value {
        Some(v) if !v.is_empty() => webhook::stored_form(v),
        _ => MISSING.to_string(),
    };
    // `deployment.ref` exactly as GitHub sent it: GitHub names a branch or a tag by its short
    // name (`main`), and a tag and a branch of one name cannot be told apart from the event,
    // so jitgate never writes `refs/heads/` in front (a tag named `main` would then pass a
    // rule for the branch). A `refs/...` value stays as it is.
    let git_ref = text(deployment.git_ref.as_deref());
    Ok(GithubDeployment {
        delivery_id: delivery_id.to_string(),
        request_id: App::new_request_id(),
        installation_id,
        owner: text(Some(&owner)),
        repo: text(Some(&repo)),
        environment: text(event.environment.as_deref()),
        run_id,
        sha: text(deployment.sha.as_deref()),
        git_ref,
        event: event.event.as_deref().map(webhook::stored_form).unwrap_or_default(),
        actor: text(event.sender.as_ref().and_then(|s| s.login.as_deref())),
        pull_requests,
        state: DeploymentState::Waiting,
        answer: None,
        comment: None,
        received_at: now(),
        answered_at: None,
    })
}

/// Why a deployment's request cannot be filed, judged on the record (at the webhook and
/// again when the worker files it after a crash).
fn deployment_problem(github: &Github, d: &GithubDeployment) -> Option<String> {
    if !webhook::is_github_login(&d.owner) {
        return Some(format!(
            "the repository owner '{}' is not a GitHub account name",
            d.owner
        ));
    }
    if !webhook::is_github_repo(&d.repo) {
        return Some(format!(
            "the repository name '{}' is not a GitHub repository name",
            d.repo
        ));
    }
    if let Some(allowed) = &github.settings.allowed_owners {
        if !allowed.iter().any(|o| o.eq_ignore_ascii_case(&d.owner)) {
            return Some(format!(
                "{} is not among the owners this jitgate serves (github.allowed_owners)",
                d.owner
            ));
        }
    }
    if let Some(problem) = webhook::environment_problem(&d.environment) {
        return Some(format!("the environment name {problem}"));
    }
    if !webhook::is_commit_sha(&d.sha) {
        return Some("the deployment has no commit SHA (40 or 64 lowercase hex digits)".into());
    }
    if let Some(problem) = webhook::ref_problem(&d.git_ref) {
        return Some(format!("the deployment's ref {problem}"));
    }
    if !webhook::is_github_actor(&d.actor) {
        return Some("the deployment names no GitHub account that triggered it".into());
    }
    if !d.event.is_empty() && !webhook::is_event_name(&d.event) {
        return Some("the event that started the workflow is not a GitHub event name".into());
    }
    None
}

/// The catalog resource a deployment is to: a `github-environment` resource whose name
/// equals `github:OWNER/REPO/ENV` ignoring ASCII case (GitHub's names ignore case), by its
/// exact name; else that name as written. A resource of another kind is refused: an
/// environment must not reach, say, a database that happens to share its name.
fn resource_for(policy: &jitgate_policy::Policy, d: &GithubDeployment) -> Result<String, String> {
    let name = d.resource();
    let catalog = policy.rules().catalog();
    let found = catalog
        .resource(&name)
        .or_else(|| catalog.resources().find(|r| r.name.eq_ignore_ascii_case(&name)));
    match found {
        Some(r) if r.kind == ENVIRONMENT_KIND => Ok(r.name.clone()),
        Some(r) => Err(format!(
            "the catalog's resource {} is of kind {}, not {ENVIRONMENT_KIND}",
            r.name, r.kind
        )),
        None => Ok(name),
    }
}
