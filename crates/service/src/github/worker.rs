//! The GitHub worker: answers decided deployments and makes the queued calls.
//!
//! Two jobs, every tick:
//! - the sweep (one replica at a time, under the `github:sweep` lease): each deployment still
//!   waiting is filed again if a crash left it unfiled, and answered once its request is
//!   decided: `approved` after the request's own grant (by id, never another deployment's) is
//!   used by jitgate itself (a single-use grant is consumed exactly once; one found consumed
//!   already was consumed for this deployment by an overlapping sweep), `rejected` for a denial, a cancellation, an
//!   expiry or an approval that ended before GitHub was told;
//! - the calls (any replica; each call leased to one): queued callbacks and comments are made
//!   through [`crate::connectors::GithubApi`], retried with the outbox's backoff.

use super::flow::{Filing, DEPLOY_ACTION};
use super::Github;
use crate::connectors::Failure;
use crate::{now, App, ServiceError};
use jitgate_core::audit::{EventKind, NewEvent, SYSTEM_ACTOR};
use jitgate_core::github::{CallPurpose, DeploymentAnswer, GithubCall, GithubDeployment};
use jitgate_core::{GrantStatus, Request, RequestStatus};
use std::sync::Arc;

/// How often the worker looks for work.
pub const TICK: std::time::Duration = std::time::Duration::from_millis(250);
/// The lease one replica holds on the sweep (renewed every tick).
pub const SWEEP_LEASE: &str = "github:sweep";
const SWEEP_LEASE_FOR: chrono::TimeDelta = chrono::TimeDelta::seconds(15);
/// Deployments looked at per sweep, oldest first. The store gives the oldest waiting ones and
/// no more: as many deployments waiting for reviewers at once as this would hold up the
/// answers of newer ones, so it is far above what one jitgate sees waiting at a time.
const SWEEP_BATCH: u32 = 1000;
/// A deployment tracked this long ago whose request is missing was left unfiled by a crash
/// (the webhook files within this, or failed and GitHub was told to retry).
const REFILE_AFTER: chrono::TimeDelta = chrono::TimeDelta::seconds(10);
/// How long a replica holds the calls it is making.
const CALL_LEASE_FOR: chrono::TimeDelta = chrono::TimeDelta::seconds(60);
/// Calls made per tick.
const CALL_BATCH: u32 = 20;
/// How long a delivery that tracked no deployment (a comment, a ping) is remembered: far
/// longer than GitHub lets anyone redeliver (3 days), so the table does not grow for ever.
pub const REMEMBER_DELIVERIES_FOR: chrono::TimeDelta = chrono::TimeDelta::days(30);
/// How often the sweep's holder forgets old deliveries.
const FORGET_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);
/// The name the sweep spends a deployment's grant under (the `grant.used` event's actor): no
/// principal can hold it (a `:` after `jitgate` is no prefix an issuer or SCIM may give), so
/// a grant found used counts as this deployment's approval only when jitgate spent it, never
/// when a workflow or a service used it through `/v1/grants/use` or `/v1/check` first.
pub const GITHUB_SPENDER: &str = "jitgate:github";

/// Run forever (does nothing while `[github]` is not configured).
pub async fn run(app: Arc<App>) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sweeping = crate::outage::Outage::default();
    let mut calling = crate::outage::Outage::default();
    // The calls this replica's earlier self leased and never finished (it was killed) are due
    // again now, not when their leases run out.
    match app.store.github_release_call_leases(app.notifier().holder()).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(calls = n, "took up calls to GitHub an earlier run left unfinished"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot release earlier leases on calls to GitHub; they fall due when they run out")
        }
    }
    let mut forgot_at: Option<std::time::Instant> = None;
    loop {
        interval.tick().await;
        if app.github().is_none() {
            continue;
        }
        if forgot_at.is_none_or(|at| at.elapsed() >= FORGET_EVERY) {
            forgot_at = Some(std::time::Instant::now());
            match app
                .store
                .github_forget_deliveries(now() - REMEMBER_DELIVERIES_FOR)
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(deliveries = n, "forgot GitHub deliveries older than 30 days"),
                Err(e) => tracing::warn!(error = %e, "cannot forget old GitHub deliveries; trying again in an hour"),
            }
        }
        match sweep(&app).await {
            Ok(_) => sweeping.ended("answering GitHub deployments again"),
            Err(e) => sweeping.failed(&e, "cannot answer GitHub deployments; retrying"),
        }
        match make_calls(&app).await {
            Ok(_) => calling.ended("calling GitHub again"),
            Err(e) => calling.failed(&e, "cannot make the calls owed to GitHub; retrying"),
        }
    }
}

/// One sweep, if this replica holds (or takes) the sweep's lease: how many deployments were
/// answered.
pub async fn sweep(app: &App) -> Result<usize, ServiceError> {
    let Some(github) = app.github() else {
        return Ok(0);
    };
    if !hold_sweep(app).await? {
        return Ok(0);
    }
    let mut answered = 0;
    for deployment in app.store.github_waiting(SWEEP_BATCH).await? {
        match answer_one(app, &github, &deployment).await {
            Ok(true) => answered += 1,
            Ok(false) => {}
            // One deployment's trouble does not hold the others up.
            Err(error) => {
                tracing::warn!(%error, request_id = %deployment.request_id, "cannot answer a GitHub deployment yet");
            }
        }
    }
    Ok(answered)
}

/// Take or renew the sweep's lease. Leases live on the notification cursors' rows (as a
/// sink's do): the first sweep ever makes the row, at position 0 (it reads no events).
async fn hold_sweep(app: &App) -> Result<bool, ServiceError> {
    let at = now();
    let holder = app.notifier().holder();
    if app
        .store
        .lease_sink(SWEEP_LEASE, holder, at, at + SWEEP_LEASE_FOR)
        .await?
    {
        return Ok(true);
    }
    if app.store.notification_cursor(SWEEP_LEASE).await?.is_some() {
        // Another replica holds it.
        return Ok(false);
    }
    // Two replicas making the row at once both write position 0; one of them gets the lease.
    app.store.set_notification_cursor(SWEEP_LEASE, 0).await?;
    Ok(app
        .store
        .lease_sink(SWEEP_LEASE, holder, at, at + SWEEP_LEASE_FOR)
        .await?)
}

/// What to tell GitHub, if the deployment's request is decided: `true` when answered now.
async fn answer_one(app: &App, github: &Github, d: &GithubDeployment) -> Result<bool, ServiceError> {
    let at = now();
    let request = match app.store.get_request(&d.request_id).await? {
        Some(request) => request,
        None if at - d.received_at < REFILE_AFTER => return Ok(false),
        None => match app.file_tracked(github, d).await? {
            Filing::Filed(request) => {
                app.after_filing(github, d, &request).await;
                *request
            }
            Filing::Refused(reason) => {
                return app
                    .answer_deployment(d, None, DeploymentAnswer::Rejected, &reason, SYSTEM_ACTOR)
                    .await;
            }
        },
    };
    let Some((answer, why, actor)) = decision(app, &request).await? else {
        return Ok(false);
    };
    app.answer_deployment(d, Some(&request), answer, &why, &actor).await
}

/// The answer a decided request gives, why, and whose decision it follows; `None` while it
/// waits (or when jitgate cannot tell now: asked again next sweep).
async fn decision(app: &App, request: &Request) -> Result<Option<(DeploymentAnswer, String, String)>, ServiceError> {
    let at = now();
    let closed = |verb: &str| match &request.closed_by {
        Some(review) => (
            review.by.clone(),
            match &review.comment {
                Some(c) => format!("{verb} by {}: {c}", review.by),
                None => format!("{verb} by {}", review.by),
            },
        ),
        None => (SYSTEM_ACTOR.to_string(), verb.to_string()),
    };
    Ok(Some(match request.status_at(at) {
        RequestStatus::Pending => return Ok(None),
        RequestStatus::Denied => {
            let (actor, why) = closed("denied");
            (DeploymentAnswer::Rejected, why, actor)
        }
        RequestStatus::Cancelled => {
            let (actor, why) = closed("cancelled");
            (DeploymentAnswer::Rejected, why, actor)
        }
        RequestStatus::Expired => (
            DeploymentAnswer::Rejected,
            "nobody decided before it expired".to_string(),
            SYSTEM_ACTOR.to_string(),
        ),
        RequestStatus::Approved => {
            let (approved_by, actor) = approvers(request);
            let Some(grant) = &request.grant else {
                return Ok(Some((
                    DeploymentAnswer::Rejected,
                    "the approval ended before GitHub was told: no grant was issued".into(),
                    actor,
                )));
            };
            match grant.status_at(at) {
                GrantStatus::Active => {
                    // This request's own grant, by id: another deployment of the same
                    // repository, environment and commit has its own grant, never this one.
                    let decided = app
                        .use_grant_by_id(&jitgate_core::Identity::user(GITHUB_SPENDER, &[]), &grant.id)
                        .await;
                    if decided.error {
                        // Not a denial: the grant could not be consumed durably. Next sweep.
                        return Ok(None);
                    }
                    if decided.allow {
                        (DeploymentAnswer::Approved, approved_by, actor)
                    } else {
                        // Another sweep (a replica whose lease ran out, say) may have consumed
                        // it for this very deployment: a used grant is this deployment's
                        // approval, spent once.
                        let now_stored = app
                            .store
                            .get_request_by_grant(&grant.id)
                            .await?
                            .and_then(|r| r.grant_by_id(&grant.id).cloned());
                        match now_stored {
                            Some(g) if g.status == GrantStatus::Used && spent_by_jitgate(app, &g).await? => {
                                (DeploymentAnswer::Approved, approved_by, actor)
                            }
                            _ => (
                                DeploymentAnswer::Rejected,
                                format!("the approval ended before GitHub was told: {}", decided.reason),
                                actor,
                            ),
                        }
                    }
                }
                // Consumed by jitgate itself, by an earlier sweep that did not live to answer.
                GrantStatus::Used if spent_by_jitgate(app, grant).await? => {
                    (DeploymentAnswer::Approved, approved_by, actor)
                }
                status => (
                    DeploymentAnswer::Rejected,
                    format!(
                        "the approval ended before GitHub was told: grant {} is {}",
                        grant.id,
                        status.as_str()
                    ),
                    actor,
                ),
            }
        }
    }))
}

/// Was this used grant spent by the sweep (its `grant.used` event names [`GITHUB_SPENDER`])?
/// A grant someone else used first (a workflow authenticated as `ci:OWNER/REPO`, a service's
/// check) is no approval of the deployment: the approval was for one use, and it is gone.
async fn spent_by_jitgate(app: &App, grant: &jitgate_core::Grant) -> Result<bool, ServiceError> {
    let used = app
        .store
        .audit_events(&jitgate_store::AuditFilter {
            request_id: Some(grant.request_id.clone()),
            kind: Some(EventKind::GrantUsed.as_str().to_string()),
            limit: 100,
            ..Default::default()
        })
        .await?;
    Ok(used
        .iter()
        .any(|e| e.event.grant_id.as_deref() == Some(grant.id.as_str()) && e.event.actor == GITHUB_SPENDER))
}

/// Who approved a request, in words, and the actor of the answer (the last reviewer, or
/// `system` for an automatic approval).
fn approvers(request: &Request) -> (String, String) {
    if request.approvals.is_empty() {
        let why = if request.break_glass {
            "taken at once by break-glass"
        } else {
            "approved by the policy"
        };
        return (why.to_string(), SYSTEM_ACTOR.to_string());
    }
    let names: Vec<String> = request
        .approvals
        .iter()
        .map(|a| match &a.comment {
            Some(c) => format!("{} ({c})", a.reviewer),
            None => a.reviewer.clone(),
        })
        .collect();
    let actor = request
        .approvals
        .last()
        .map_or_else(|| SYSTEM_ACTOR.to_string(), |a| a.reviewer.clone());
    (format!("approved by {}", names.join(", ")), actor)
}

/// Make the calls due now that this replica leases: how many GitHub took.
pub async fn make_calls(app: &App) -> Result<usize, ServiceError> {
    let Some(github) = app.github() else {
        return Ok(0);
    };
    let at = now();
    let calls = app
        .store
        .github_lease_calls(at, app.notifier().holder(), at + CALL_LEASE_FOR, CALL_BATCH)
        .await?;
    let made = futures_util::future::join_all(calls.iter().map(|call| make_call(app, &github, call))).await;
    let mut done = 0;
    for result in made {
        match result {
            Ok(true) => done += 1,
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "cannot record a call made to GitHub; it will be made again"),
        }
    }
    Ok(done)
}

/// Make one call and record how it went: `true` when GitHub took it.
async fn make_call(app: &App, github: &Github, call: &GithubCall) -> Result<bool, ServiceError> {
    let purpose = call.call.purpose.as_str();
    let attempts = call.attempts + 1;
    match github.api.call(&call.call).await {
        Ok(_) => {
            app.metrics.count_github_call(purpose, "ok");
            let event = reported_event(app, call, |answer| format!("{answer} after {attempts} attempt(s)")).await?;
            app.store.github_call_done(call.id, now(), event.as_ref()).await?;
            Ok(true)
        }
        Err(Failure::Retry(error)) => {
            app.metrics.count_github_call(purpose, "retry");
            tracing::warn!(key = %call.call.key, attempt = attempts, %error, "a call to GitHub failed; will retry");
            let next = now() + jitgate_core::outbox::retry_delay(attempts);
            app.store
                .github_call_retry(call.id, app.notifier().holder(), next, &error)
                .await?;
            Ok(false)
        }
        Err(Failure::Refused(error)) => {
            // GitHub will not take it however often it is sent (the run was cancelled, the
            // comment's issue is gone): done, and said so, rather than retried for ever.
            app.metrics.count_github_call(purpose, "refused");
            tracing::warn!(key = %call.call.key, %error, "GitHub refused a call; not retrying it");
            let event = reported_event(app, call, |answer| {
                format!("GitHub refused the answer {answer} after {attempts} attempt(s): {error}")
            })
            .await?;
            app.store.github_call_done(call.id, now(), event.as_ref()).await?;
            Ok(false)
        }
    }
}

/// The `github.deployment_reported` event a callback owes, its comment made from the answer.
async fn reported_event(
    app: &App,
    call: &GithubCall,
    comment: impl FnOnce(&str) -> String,
) -> Result<Option<NewEvent>, ServiceError> {
    if call.call.purpose != CallPurpose::Callback {
        return Ok(None);
    }
    let Some(request_id) = call.call.request_id.as_deref() else {
        return Ok(None);
    };
    let Some(d) = app.store.github_deployment(request_id).await? else {
        return Ok(None);
    };
    let request = app.store.get_request(request_id).await?;
    let answer = d.answer.map_or("answer", DeploymentAnswer::as_str);
    Ok(Some(NewEvent {
        kind: EventKind::GithubDeploymentReported,
        at: now(),
        actor: SYSTEM_ACTOR.into(),
        subject: super::flow::principal_of(&d),
        request_id: Some(request_id.to_string()),
        grant_id: request.as_ref().and_then(|r| r.grant.as_ref()).map(|g| g.id.clone()),
        resource: request.as_ref().map_or_else(|| d.resource(), |r| r.resource.clone()),
        action: DEPLOY_ACTION.into(),
        comment: Some(comment(answer)),
    }))
}
