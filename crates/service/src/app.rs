//! The application service: loads state from the store, runs a pure transition of the core,
//! saves it with its events in one transaction, and keeps the in-memory check index in step.

use crate::auth::{Authenticator, Caller};
use crate::error::{retry_after_seconds, Limit};
use crate::inputs::{Extension, NewRequest, NewToken};
use crate::metrics::Metrics;
use crate::ServiceError;
use jitgate_core::machine::{self, NewIds, Transition};
use jitgate_core::{
    ApiToken, CheckOutcome, DomainError, Grant, GrantIndex, GrantStatus, Identity, Request, RequestStatus, Timestamp,
};
use jitgate_policy::Policy;
use jitgate_store::{Store, StoreError};
use parking_lot::RwLock;
use std::sync::Arc;

/// How often a transition is re-applied when another writer changed the request first.
const MAX_CONFLICT_RETRIES: usize = 16;
/// The longest one call may wait for a decision; clients wait longer by asking again.
pub const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(60);
/// Sent to waiting callers when anything may have changed (a replica resynced).
const EVERYTHING_CHANGED: &str = "*";

pub struct App {
    pub store: Arc<dyn Store>,
    policy: RwLock<Arc<Policy>>,
    auth: Authenticator,
    signer: crate::signing::GrantSigner,
    ssh_ca: crate::ssh::SshCa,
    providers: crate::provision::Providers,
    notifier: crate::notify::Notifier,
    index: RwLock<GrantIndex>,
    pub metrics: Metrics,
    /// The id of every request that changed, for callers waiting on a decision.
    changes: tokio::sync::broadcast::Sender<String>,
    /// Denied checks of the current window, recorded in the log as `check.denied` events.
    denied: crate::audit::denied::DeniedChecks,
    /// While a resync reads every grant (a page at a time), the index changes made meanwhile,
    /// to apply to what it read before it takes over: a grant revoked during the read must
    /// not come back.
    resyncing: parking_lot::Mutex<Option<Vec<IndexChange>>>,
    caller_limits: crate::limits::CallerLimits,
    /// Bumped each time an operator accepts the database's history.
    history_accepted: std::sync::atomic::AtomicU64,
    /// `[forward_auth]`, checked.
    forward_auth: RwLock<Arc<crate::forward_auth::Settings>>,
    /// `[scim]`, checked (issue #25).
    scim: RwLock<Arc<crate::scim::ScimSettings>>,
    /// `[github]` and its REST client, when configured (issue #26).
    github: RwLock<Option<Arc<crate::github::Github>>>,
}

/// A change to the check index, as `resyncing` keeps it.
enum IndexChange {
    Hold(Box<Grant>),
    Remove(String),
}

/// A principal's place among the waiting callers, given back on drop.
struct WaiterSlot<'a> {
    app: &'a App,
    principal: String,
}

impl Drop for WaiterSlot<'_> {
    fn drop(&mut self) {
        self.app.caller_limits.leave_waiting(&self.principal);
        self.app.metrics.waiting.dec();
    }
}

pub use crate::clock::now;

/// Every active grant, read a page at a time with only the fields the index keeps: a million
/// load in seconds, without holding a million full rows at once. The next page is read while
/// this one goes into the index.
async fn load_index(store: &Arc<dyn Store>) -> Result<GrantIndex, StoreError> {
    const PAGE: u32 = 50_000;
    // The follower's load reads on the follower's connections, in the tasks it spawns too.
    let following = jitgate_store::is_following();
    let fetch = |after: Option<String>| {
        let store = store.clone();
        tokio::spawn(async move {
            let page = async { store.live_grants(after.as_deref(), PAGE).await };
            if following {
                jitgate_store::following(page).await
            } else {
                page.await
            }
        })
    };
    let mut index = GrantIndex::new();
    let mut next = Some(fetch(None));
    while let Some(reading) = next.take() {
        let page = reading
            .await
            .map_err(|e| StoreError::Corrupt(format!("loading grants: {e}")))??;
        if page.len() == PAGE as usize {
            next = Some(fetch(page.last().map(|g| g.id.clone())));
        }
        for grant in page {
            index.insert_live(grant);
        }
    }
    Ok(index)
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

impl App {
    /// Build the service and load every active grant into the check index.
    pub async fn new(
        store: Arc<dyn Store>,
        policy: Policy,
        auth: Authenticator,
        providers: crate::provision::Providers,
        notifier: crate::notify::Notifier,
    ) -> Result<Self, StoreError> {
        // The provisioned directory first: the token table and the policy read it.
        let snapshot = store.scim_directory().await?;
        auth.directory().load(&snapshot);
        let (users, groups) = auth.directory().size();
        tracing::info!(users, groups, "loaded the provisioned directory");
        let policy = policy.with_provisioned(auth.directory().clone());
        auth.rebuild(&policy, Some(store.list_tokens().await?));
        let signer = crate::signing::GrantSigner::load(&*store, now())
            .await
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let ssh_ca = crate::ssh::SshCa::load(&*store, now())
            .await
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let index = load_index(&store).await?;
        let metrics = Metrics::new();
        metrics
            .active_grants
            .set(i64::try_from(index.len()).unwrap_or(i64::MAX));
        tracing::info!(active_grants = index.len(), "loaded active grants");
        Ok(App {
            store,
            policy: RwLock::new(Arc::new(policy)),
            auth,
            signer,
            ssh_ca,
            providers,
            notifier,
            index: RwLock::new(index),
            metrics,
            changes: tokio::sync::broadcast::channel(1024).0,
            denied: crate::audit::denied::DeniedChecks::default(),
            resyncing: parking_lot::Mutex::new(None),
            caller_limits: crate::limits::CallerLimits::default(),
            history_accepted: std::sync::atomic::AtomicU64::new(0),
            forward_auth: RwLock::new(Arc::new(crate::forward_auth::Settings::default())),
            scim: RwLock::new(Arc::new(crate::scim::ScimSettings {
                principal_attribute: "userName".into(),
                ..Default::default()
            })),
            github: RwLock::new(None),
        })
    }

    /// How SCIM users become principals (`[scim]`).
    pub fn scim_settings(&self) -> Arc<crate::scim::ScimSettings> {
        self.scim.read().clone()
    }

    /// Take `[scim]`, already checked.
    pub fn set_scim_settings(&self, settings: crate::scim::ScimSettings) {
        *self.scim.write() = Arc::new(settings);
    }

    /// The GitHub App, when `[github]` is configured.
    pub fn github(&self) -> Option<Arc<crate::github::Github>> {
        self.github.read().clone()
    }

    /// Become the GitHub App `settings` describe, calling GitHub through `api`.
    pub fn configure_github(
        &self,
        settings: crate::github::GithubSettings,
        api: Arc<dyn crate::connectors::GithubApi>,
    ) {
        *self.github.write() = Some(Arc::new(crate::github::Github { settings, api }));
    }

    pub fn policy(&self) -> Arc<Policy> {
        self.policy.read().clone()
    }

    /// The directory an identity provider provisions (SCIM), in memory on this replica.
    pub fn directory(&self) -> &Arc<crate::directory::Directory> {
        self.auth.directory()
    }

    /// Read the whole provisioned directory again (a replica catching up on a gap), and
    /// rebuild the token table from it. Each principal blocked now that was not before is
    /// swept as a per-user notice would have been (`directory::sweep_leaver`): the reload
    /// replaced those notices. A sweep that fails stays owed and is tried again by the next
    /// reload (the caller retries on the error).
    pub(crate) async fn reload_directory(&self) -> Result<(), ServiceError> {
        let snapshot = self.store.scim_directory().await?;
        let newly = self.directory().load(&snapshot);
        self.auth.rebuild(&self.policy(), None);
        let at = now();
        for (principal, since) in newly {
            let since = since.unwrap_or_else(|| crate::directory::deleted_since(at));
            self.directory().owe_sweep(principal, since);
        }
        crate::directory::sweep_owed(self).await
    }

    /// A transition committed elsewhere than `transition` (a provisioning write): into the
    /// check index, and to whoever waits on the request.
    pub(crate) fn track_committed(&self, before: &Request, after: &Request) {
        self.track(Some(before), after);
    }

    /// The spellings (ASCII case aside) of `principal` that hold grants in this replica's
    /// check index: a leaver's grants under a spelling other than the directory's.
    pub(crate) fn principals_holding_like(&self, principal: &str) -> Vec<String> {
        self.index.read().principals_like(principal)
    }

    /// Swap in a new policy (already validated). Requests in flight keep their requirements.
    pub fn replace_policy(&self, policy: Policy) {
        let policy = policy.with_provisioned(self.directory().clone());
        self.auth.rebuild(&policy, None);
        *self.policy.write() = Arc::new(policy);
    }

    /// Whom the policy is explained for: the caller, or, for those whose reach is everyone
    /// (admins and auditors), anyone in the directory. The API and the web UI both ask here.
    pub fn explain_subject(&self, caller: &Caller, principal: Option<&str>) -> Result<Identity, ServiceError> {
        let who = caller.who();
        match principal {
            None => Ok(who.clone()),
            Some(p) if p == who.principal => Ok(who.clone()),
            Some(p) => {
                if caller.reach() != jitgate_core::authz::Reach::All {
                    return Err(ServiceError::Forbidden(format!(
                        "{} may explain only their own requests; admins and auditors may explain anyone's",
                        who.principal
                    )));
                }
                self.known_identity(p)?
                    .ok_or_else(|| ServiceError::NotFound(format!("no principal {p} in the policy's directory")))
            }
        }
    }

    /// `principal` as the directory knows them now: `directory.toml`'s entry, or a provisioned
    /// user as they would authenticate now; `None` when neither names them (a principal whose
    /// groups come only with their sign-in, like an OIDC token's claims, is not kept). `Err`
    /// when the directory blocks them. What a reviewer is shown of a requester's groups, and
    /// whom `explain` explains, come from here; the caller decides who may ask.
    pub fn known_identity(&self, principal: &str) -> Result<Option<Identity>, ServiceError> {
        let policy = self.policy();
        if let Some(entry) = policy.rules().principal(principal) {
            return Ok(Some(entry.identity.clone()));
        }
        if self.directory().holder_of(principal).is_some() {
            return crate::auth::tokens::resolve_with(&policy, self.directory(), Identity::user(principal, &[]))
                .map(Some)
                .map_err(ServiceError::Conflict);
        }
        Ok(None)
    }

    pub(crate) fn set_forward_auth(&self, settings: crate::forward_auth::Settings) {
        *self.forward_auth.write() = Arc::new(settings);
    }

    pub(crate) fn forward_auth_settings(&self) -> Arc<crate::forward_auth::Settings> {
        self.forward_auth.read().clone()
    }

    /// The live grant a check of (principal, resource, action) would find now, from memory.
    pub(crate) fn live_grant_for(
        &self,
        principal: &str,
        resource: &str,
        action: &str,
    ) -> Option<jitgate_core::index::LiveGrant> {
        let index = self.index.read();
        match index.check(principal, resource, action, None, now()) {
            CheckOutcome::Allow { grant_id, .. } | CheckOutcome::AllowIfConsumed { grant_id, .. } => {
                index.live(&grant_id)
            }
            CheckOutcome::Deny { .. } => None,
        }
    }

    /// A live grant by id, from memory.
    pub(crate) fn live_grant(&self, grant_id: &str) -> Option<jitgate_core::index::LiveGrant> {
        self.index.read().live(grant_id)
    }

    /// The signed token of a live grant, made from memory.
    pub(crate) fn sign_live_grant(
        &self,
        grant: &jitgate_core::index::LiveGrant,
    ) -> Result<String, crate::signing::SigningError> {
        self.signer.sign_live(grant)
    }

    /// Denied checks counted for the audit log.
    pub fn denied_checks(&self) -> &crate::audit::denied::DeniedChecks {
        &self.denied
    }

    pub fn providers(&self) -> &crate::provision::Providers {
        &self.providers
    }

    pub fn notifier(&self) -> &crate::notify::Notifier {
        &self.notifier
    }

    pub fn authenticator(&self) -> &Authenticator {
        &self.auth
    }

    fn track(&self, before: Option<&Request>, after: &Request) {
        // Nobody listening is not an error.
        let _ = self.changes.send(after.id.clone());
        for grant in after.grants() {
            self.hold_grant(grant);
            let was_active = before
                .and_then(|b| b.grant_by_id(&grant.id))
                .is_some_and(|g| g.status == GrantStatus::Active);
            if was_active && grant.status != GrantStatus::Active {
                self.metrics.count_grant_end(grant.status.as_str());
            }
        }
        let before_status = before.map(|b| b.status);
        if before_status != Some(after.status) {
            if before.is_none() {
                self.metrics.count_request("filed");
            }
            if after.status != RequestStatus::Pending {
                self.metrics.count_request(after.status.as_str());
            }
        }
    }

    pub fn caller_limits(&self) -> &crate::limits::CallerLimits {
        &self.caller_limits
    }

    /// Count one write `who` can repeat against their `[limits] writes_per_minute`: every
    /// entry point (API, web UI, Slack) comes through the service, so each one counts, and
    /// every attempt counts, refused ones too.
    fn take_write(&self, who: &Identity) -> Result<(), ServiceError> {
        self.caller_limits
            .take_write(&who.principal, std::time::Instant::now())
            .map_err(|after| ServiceError::RetryLater {
                limit: Limit::Rate,
                message: format!(
                    "{} is making changes faster than this server's [limits] writes_per_minute allows; try again in {} s",
                    who.principal,
                    retry_after_seconds(after)
                ),
                after,
            })
    }

    /// File a request for `who`.
    pub async fn file(&self, who: &Identity, body: &NewRequest) -> Result<Request, ServiceError> {
        self.file_with_id(who, body, new_id("req")).await
    }

    /// A fresh request id, as `file` gives one: for callers that must know the id before
    /// filing (a GitHub deployment is tracked under it first, so that filing again after a
    /// crash files the same request).
    pub fn new_request_id() -> String {
        new_id("req")
    }

    /// `file`, with the request's id chosen by the caller. Filing an id that already exists
    /// fails (the store refuses the second insert): the caller reads the request instead.
    pub async fn file_with_id(
        &self,
        who: &Identity,
        body: &NewRequest,
        request_id: String,
    ) -> Result<Request, ServiceError> {
        if let Err(after) = self.caller_limits.take(&who.principal, std::time::Instant::now()) {
            return Err(ServiceError::RetryLater {
                limit: Limit::Rate,
                message: format!(
                    "{} is filing requests faster than this server's [limits] allow; try again in {} ms",
                    who.principal,
                    after.as_millis().max(1)
                ),
                after,
            });
        }
        // A principal the provisioned directory blocks (or is blocking) files nothing.
        if let Some(told) = crate::directory::refusal(self, who) {
            return Err(ServiceError::Unauthenticated(told));
        }
        let ids = NewIds {
            request_id,
            grant_id: new_id("grt"),
        };
        let at = now();
        let Transition { mut request, events } = match &body.items {
            None => {
                let ask = body.ask()?;
                let admission = self.policy().admit(who, &ask, at)?;
                machine::file(who, &ask, admission, ids, at)
            }
            Some(items) => crate::items::file(&self.policy(), who, body, items, ids, at, || new_id("grt"))?,
        };
        if request.status == RequestStatus::Pending {
            self.may_add_pending(who, at).await?;
        }
        self.sign_grants(
            &Request {
                grant: None,
                items: Vec::new(),
                ..request.clone()
            },
            &mut request,
        )?;
        let stored = self.store.create_request(&request, &events).await?;
        self.track(None, &stored);
        // Filed while the directory was ending the filer's access (the change read their
        // requests before this one committed): undone here, as the change would have.
        if let Some(told) = crate::directory::refusal(self, who) {
            crate::directory::undo_raced(self, who, &stored.id, &told).await?;
            return Err(ServiceError::Unauthenticated(told));
        }
        Ok(stored)
    }

    /// Whether `who` may have one more request pending: the store counts (the source of truth
    /// for every replica). Only a request that would wait for reviewers is counted against
    /// the limit, so automatic access and break-glass stay open to someone at the limit.
    /// Filings racing each other may each see the count below the limit; how many can race
    /// is bounded by the filing rate.
    async fn may_add_pending(&self, who: &Identity, at: Timestamp) -> Result<(), ServiceError> {
        let Some(max) = self.caller_limits.max_pending_per_requester() else {
            return Ok(());
        };
        let pending = self.store.count_pending(&who.principal, at).await?;
        if pending >= u64::from(max) {
            return Err(ServiceError::OverLimit(
                Limit::Pending,
                format!(
                    "{} has {pending} pending requests, as many as this server's [limits] max_pending_per_requester \
                     allows; cancel some (jitgate cancel ID) or wait for decisions",
                    who.principal
                ),
            ));
        }
        Ok(())
    }

    /// Load a request the caller may see; others get the same 404 as a missing one, so ids
    /// cannot be probed.
    pub async fn visible_request(&self, caller: &Caller, id: &str) -> Result<Request, ServiceError> {
        let request = self.store.get_request(id).await?;
        match request {
            Some(r) if caller.may_see(&r) => Ok(r),
            _ => Err(ServiceError::NotFound(format!("no request {id}"))),
        }
    }

    /// The request once it is no longer pending, or as it stands after `wait`: whichever comes
    /// first. Every transition wakes the callers waiting on its request at once.
    pub async fn wait_for_decision(
        &self,
        caller: &Caller,
        id: &str,
        wait: std::time::Duration,
    ) -> Result<Request, ServiceError> {
        use tokio::sync::broadcast::error::RecvError;
        let _slot = self.waiter_slot(caller.who())?;
        // Subscribe before reading, so a change between the read and the wait is not missed.
        let mut changes = self.changes.subscribe();
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
        loop {
            let request = self.visible_request(caller, id).await?;
            let at = now();
            if request.status_at(at) != RequestStatus::Pending || tokio::time::Instant::now() >= deadline {
                return Ok(request);
            }
            // A pending request also ends by itself at its deadline.
            let to_expiry = (request.pending_expires_at - at).to_std().unwrap_or_default();
            let until = deadline.min(tokio::time::Instant::now() + to_expiry + std::time::Duration::from_millis(1));
            let _ = tokio::time::timeout_at(until, async {
                loop {
                    match changes.recv().await {
                        Ok(changed) if changed == id || changed == EVERYTHING_CHANGED => return,
                        Ok(_) => {}
                        // Missed some changes: look at the request again.
                        Err(RecvError::Lagged(_)) => return,
                        Err(RecvError::Closed) => std::future::pending::<()>().await,
                    }
                }
            })
            .await;
        }
    }

    fn waiter_slot(&self, who: &Identity) -> Result<WaiterSlot<'_>, ServiceError> {
        use crate::limits::WaitRefused;
        let refused = |message: String| ServiceError::RetryLater {
            limit: Limit::Waiters,
            message,
            after: crate::limits::WAITERS_RETRY_AFTER,
        };
        match self.caller_limits.enter_waiting(&who.principal) {
            Ok(()) => {}
            Err(WaitRefused::Full(max_waiters)) => {
                return Err(refused(format!(
                    "{max_waiters} callers are already waiting for decisions; ask again without wait, or later"
                )))
            }
            Err(WaitRefused::PrincipalFull(per_principal)) => {
                return Err(refused(format!(
                    "{} already has {per_principal} callers waiting for decisions, as many as this server's \
                     [limits] max_waiters_per_principal allows; ask again without wait, or later",
                    who.principal
                )))
            }
        }
        self.metrics.waiting.inc();
        Ok(WaiterSlot {
            app: self,
            principal: who.principal.clone(),
        })
    }

    /// A page of the requests the caller may see. Requests they may not see are skipped
    /// before the page is counted, so a page is full whenever enough visible requests exist
    /// (scanning at most `MAX_SCANNED_PAGES` store pages per call; `next` resumes the scan).
    pub async fn visible_requests(
        &self,
        caller: &Caller,
        mut filter: jitgate_store::RequestFilter,
        at: Timestamp,
    ) -> Result<(Vec<Request>, Option<String>), ServiceError> {
        const MAX_SCANNED_PAGES: usize = 20;
        let wanted = filter.limit as usize;
        if caller.reach() == jitgate_core::authz::Reach::Own {
            // Only their own: the store can filter that itself.
            filter.requester = Some(caller.who().principal.clone());
        }
        let mut visible = Vec::with_capacity(wanted);
        for _ in 0..MAX_SCANNED_PAGES {
            let page = self.store.list_requests(&filter, at).await?;
            let exhausted = page.len() < filter.limit as usize;
            let mut resume = page.last().map(|r| r.id.clone());
            for request in page {
                if caller.may_see(&request) {
                    visible.push(request);
                    if visible.len() == wanted {
                        // Resume right after the last request handed out.
                        resume = visible.last().map(|r| r.id.clone());
                        return Ok((visible, resume));
                    }
                }
            }
            if exhausted {
                return Ok((visible, None));
            }
            filter.before = resume;
        }
        let next = filter.before.clone();
        Ok((visible, next))
    }

    /// Apply a transition to request `id`, re-reading and re-applying it if another writer
    /// got there first. The transition sees the freshest state every time, so a race can
    /// never count an approval twice or decide a request twice.
    async fn transition(
        &self,
        caller: &Caller,
        id: &str,
        by_grant: bool,
        apply: impl Fn(&Request, Timestamp) -> Result<Transition, DomainError>,
    ) -> Result<Request, ServiceError> {
        // Every decision, cancellation, review, revocation, extension and `done` comes here.
        self.take_write(caller.who())?;
        for _ in 0..MAX_CONFLICT_RETRIES {
            let current = if by_grant {
                self.store.get_request_by_grant(id).await?
            } else {
                self.store.get_request(id).await?
            };
            let current = match current {
                Some(r) if caller.may_see(&r) => r,
                _ => {
                    let what = if by_grant { "grant" } else { "request" };
                    return Err(ServiceError::NotFound(format!("no {what} {id}")));
                }
            };
            caller.require_reach(&current)?;
            let Transition { mut request, events } = apply(&current, now())?;
            self.sign_grants(&current, &mut request)?;
            match self.store.save_transition(&current, &request, &events).await {
                Ok(saved) => {
                    self.track(Some(&current), &saved);
                    return Ok(saved);
                }
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Conflict(format!(
            "{id} is changing too often to update; try again"
        )))
    }

    pub async fn approve(&self, caller: &Caller, id: &str, comment: Option<String>) -> Result<Request, ServiceError> {
        self.approve_confirmed(caller, id, comment, None).await
    }

    /// Approve, bound to the payload the reviewer was shown: `payload_sha256` (hex SHA-256)
    /// must be the request's payload's, or nothing is approved (`PayloadMismatch`). Checked
    /// against the request as it stands when the approval is saved.
    pub async fn approve_confirmed(
        &self,
        caller: &Caller,
        id: &str,
        comment: Option<String>,
        payload_sha256: Option<&str>,
    ) -> Result<Request, ServiceError> {
        self.approve_shown(caller, id, comment, machine::Shown::payload(payload_sha256))
            .await
    }

    /// Approve, bound to everything the reviewer was shown (the web UI's "If you approve"):
    /// each item's payload hash, checked against that item's own payload and recorded on its
    /// approval, and where the approval lands ("yours is the 1st of 2"), refused (409) if
    /// another approval moved it. All checked against the request as it stands when the
    /// approval is saved, in the same transition: never a read-then-write race.
    pub async fn approve_shown(
        &self,
        caller: &Caller,
        id: &str,
        comment: Option<String>,
        shown: machine::Shown,
    ) -> Result<Request, ServiceError> {
        for hash in shown.payload_sha256.iter().flatten() {
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                // Quote a bounded start of it: the body may be large.
                let start: String = hash.chars().take(80).collect();
                return Err(ServiceError::invalid(format!(
                    "payload_sha256: '{}' is not a SHA-256 in hex (64 characters 0-9, a-f); \
                     send the hash shown with the payload, or leave it out",
                    start.escape_debug()
                )));
            }
        }
        let who = caller.who();
        // A reviewer the provisioned directory blocks (or is blocking) approves nothing.
        if let Some(told) = crate::directory::refusal(self, who) {
            return Err(ServiceError::Unauthenticated(told));
        }
        // Nor the person whose GitHub account triggered a deployment, however linked.
        self.refuse_deployment_trigger(id, who).await?;
        let grant_id = new_id("grt");
        // A multi-item request's last approval issues a grant per item.
        let grant_ids: Vec<String> = std::iter::once(grant_id.clone())
            .chain((1..jitgate_core::model::MAX_ITEMS).map(|_| new_id("grt")))
            .collect();
        let policy = self.policy();
        let approved = self
            .transition(caller, id, false, |r, now| {
                // The state machine's refusals (own request, twice, decided) read best; the
                // policy's Cedar `approve` conditions are checked on top. Nothing is saved unless
                // both agree.
                if !r.items.is_empty() {
                    // Every item the reviewer may approve, by its own steps and its own workflow's
                    // Cedar conditions, in this one call.
                    let allowed: Vec<bool> = (0..r.item_count())
                        .map(|i| {
                            r.item_request(i)
                                .is_some_and(|item| policy.may_review(who, &item, now).is_ok())
                        })
                        .collect();
                    return machine::approve_items_shown(
                        r,
                        who,
                        comment.clone(),
                        &shown,
                        &grant_ids,
                        |i| allowed.get(i).copied().unwrap_or(false),
                        now,
                    );
                }
                let approved = machine::approve_shown(r, who, comment.clone(), &shown, grant_id.clone(), now)?;
                policy.may_review(who, r, now)?;
                Ok(approved)
            })
            .await?;
        // Given while the directory was ending the reviewer's access: withdrawn (or the grant
        // it completed revoked), as the change would have.
        if let Some(told) = crate::directory::refusal(self, who) {
            crate::directory::undo_raced(self, who, &approved.id, &told).await?;
            return Err(ServiceError::Unauthenticated(told));
        }
        Ok(approved)
    }

    pub async fn deny(&self, caller: &Caller, id: &str, comment: Option<String>) -> Result<Request, ServiceError> {
        let who = caller.who();
        let policy = self.policy();
        self.transition(caller, id, false, |r, now| {
            let denied = machine::deny(r, who, comment.clone(), now)?;
            // Admins may deny anything; everyone else must be a reviewer by the policy.
            if !who.is_admin() {
                // Of a multi-item request, a reviewer of any item may deny the whole.
                let first = policy.may_review(who, r, now);
                if first.is_err()
                    && !(1..r.item_count()).any(|i| {
                        r.item_request(i)
                            .is_some_and(|item| policy.may_review(who, &item, now).is_ok())
                    })
                {
                    first?;
                }
            }
            Ok(denied)
        })
        .await
    }

    pub async fn review_break_glass(
        &self,
        caller: &Caller,
        id: &str,
        comment: Option<String>,
    ) -> Result<Request, ServiceError> {
        let who = caller.who();
        self.transition(caller, id, false, |r, now| {
            machine::review_break_glass(r, who, comment.clone(), now)
        })
        .await
    }

    pub async fn cancel(&self, caller: &Caller, id: &str) -> Result<Request, ServiceError> {
        let who = caller.who();
        self.transition(caller, id, false, |r, now| machine::cancel(r, who, now))
            .await
    }

    pub async fn revoke(
        &self,
        caller: &Caller,
        grant_id: &str,
        comment: Option<String>,
    ) -> Result<Grant, ServiceError> {
        let who = caller.who();
        let request = self
            .transition(caller, grant_id, true, |r, now| {
                machine::revoke(r, who, comment.clone(), now)
            })
            .await?;
        request
            .grant_by_id(grant_id)
            .cloned()
            .ok_or_else(|| ServiceError::Internal("revoked request has no grant".into()))
    }

    /// The holder's task is finished: end the grant if it is active, and record the outcome.
    pub async fn done(&self, caller: &Caller, grant_id: &str, outcome: Option<String>) -> Result<Grant, ServiceError> {
        let who = caller.who();
        let request = self
            .transition(caller, grant_id, true, |r, now| {
                machine::done(r, who, outcome.clone(), now)
            })
            .await?;
        request
            .grant_by_id(grant_id)
            .cloned()
            .ok_or_else(|| ServiceError::Internal("finished request has no grant".into()))
    }

    pub async fn extend(&self, caller: &Caller, grant_id: &str, body: &Extension) -> Result<Grant, ServiceError> {
        let who = caller.who();
        let by = body.duration.parse("duration")?;
        let policy = self.policy();
        let request = self
            .transition(caller, grant_id, true, |r, now| {
                let limits = crate::items::extension_limits(&policy, who, r, by, &body.reason, now)?;
                machine::extend(r, who, by, &body.reason, limits, now)
            })
            .await?;
        request
            .grant_by_id(grant_id)
            .cloned()
            .ok_or_else(|| ServiceError::Internal("extended request has no grant".into()))
    }

    /// Give an active grant a token for its current window: when it is issued and when it is
    /// extended.
    fn sign_grants(&self, before: &Request, after: &mut Request) -> Result<(), ServiceError> {
        for grant in after.grants_mut() {
            let before = before.grant_by_id(&grant.id);
            let window_changed = before.is_none_or(|b| b.expires_at != grant.expires_at || b.token.is_none());
            if grant.status == GrantStatus::Active && window_changed {
                grant.token = Some(
                    self.signer
                        .sign(grant)
                        .map_err(|e| ServiceError::Internal(format!("cannot sign grant {}: {e}", grant.id)))?,
                );
            }
        }
        Ok(())
    }

    /// Read the signing keys again: another replica rotated them.
    pub(crate) async fn reload_keys(&self) -> Result<(), ServiceError> {
        self.signer.reload(&*self.store).await.map_err(|e| match e {
            // The database away is not a fault of this server.
            crate::signing::SigningError::Store(e) => e.into(),
            e => ServiceError::Internal(format!("cannot reload signing keys: {e}")),
        })
    }

    /// Every public key that may have signed a checkpoint.
    pub fn checkpoint_keys(&self) -> Vec<jsonwebtoken::jwk::Jwk> {
        self.signer.all_public_keys()
    }

    /// Sign the audit log's head if it moved past `signed` (0: whatever it is); the checkpoint
    /// kept, if one was.
    pub async fn sign_audit_head(
        &self,
        signed: i64,
    ) -> Result<Option<jitgate_core::audit::Checkpoint>, crate::audit::checkpoint::CheckpointError> {
        crate::audit::checkpoint::sign_head(&*self.store, &self.signer, signed).await
    }

    /// Record the denied checks counted since the last time, and those earlier windows could
    /// not record.
    pub async fn flush_denied_checks(&self) {
        crate::audit::denied::flush(&self.denied, &*self.store, &self.metrics).await;
    }

    /// Sign the audit log's head now, for a caller who asks (`POST /v1/audit/checkpoints`).
    pub async fn checkpoint_now(
        &self,
        caller: &Caller,
    ) -> Result<Option<jitgate_core::audit::Checkpoint>, ServiceError> {
        self.take_write(caller.who())?;
        Ok(self.sign_audit_head(0).await?)
    }

    /// Verify the audit log: the hash chain, every checkpoint's signature, and the log against
    /// its checkpoints.
    pub async fn verify_audit(&self) -> Result<jitgate_core::audit::ChainReport, ServiceError> {
        // A checkpoint is evidence only if its signature holds.
        for checkpoint in self.store.checkpoints().await? {
            if let Err(why) = self.signer.verify_checkpoint(&checkpoint) {
                let events = self.store.audit_head().await?;
                return Ok(jitgate_core::audit::ChainReport::broken(
                    u64::try_from(events).unwrap_or(0),
                    checkpoint.seq,
                    format!("the checkpoint at event {}: {why}", checkpoint.seq),
                ));
            }
        }
        Ok(self.store.verify_audit().await?)
    }

    /// The keys that verify grant tokens now.
    pub fn jwks(&self) -> serde_json::Value {
        self.signer.jwks(now())
    }

    /// Start signing with a new key; returns its id.
    pub async fn rotate_keys(&self, caller: &Caller) -> Result<String, ServiceError> {
        self.take_write(caller.who())?;
        self.signer
            .rotate(&*self.store, &caller.who().principal, now())
            .await
            .map_err(|e| match e {
                crate::signing::SigningError::Store(e) => e.into(),
                e => ServiceError::Internal(format!("key rotation failed: {e}")),
            })
    }

    /// The status of each grant's providers, from the outbox: for every id given, in order.
    pub async fn provider_statuses(
        &self,
        grant_ids: &[String],
    ) -> Result<Vec<Vec<jitgate_core::outbox::ProviderStatus>>, ServiceError> {
        if grant_ids.is_empty() {
            return Ok(Vec::new());
        }
        let states = self.store.outbox_states(grant_ids).await?;
        Ok(grant_ids
            .iter()
            .map(|id| {
                let mine: Vec<_> = states.iter().filter(|s| &s.grant_id == id).cloned().collect();
                jitgate_core::outbox::provider_status(&mine)
            })
            .collect())
    }

    /// The SSH user CA's public key line.
    pub fn ssh_ca_public(&self) -> &str {
        self.ssh_ca.public_line()
    }

    /// The whole request (every item) that holds grant `grant_id`, if the caller may see it
    /// and the operation reaches it. A request the caller may not see is the same 404 as a
    /// missing one, so ids cannot be probed; one they see but the operation does not reach
    /// (another's grant, for an operation on one's own) is 403.
    pub async fn reachable_request_of_grant(&self, caller: &Caller, grant_id: &str) -> Result<Request, ServiceError> {
        let request = match self.store.get_request_by_grant(grant_id).await? {
            Some(r) if caller.may_see(&r) => r,
            _ => return Err(ServiceError::NotFound(format!("no grant {grant_id}"))),
        };
        caller.require_reach(&request)?;
        Ok(request)
    }

    /// A grant, with its item seen as a request of its own (`Request::view_of_grant`: its
    /// payload and workflow are what count), under the same rule as
    /// [`App::reachable_request_of_grant`]: 404 if not visible, 403 if not reached.
    pub async fn reachable_grant(&self, caller: &Caller, grant_id: &str) -> Result<(Request, Grant), ServiceError> {
        let request = self.reachable_request_of_grant(caller, grant_id).await?;
        // Of a multi-item request, the item this grant is for: its payload and workflow count.
        let request = request
            .view_of_grant(grant_id)
            .ok_or_else(|| ServiceError::NotFound(format!("no grant {grant_id}")))?;
        let grant = request
            .grant
            .clone()
            .ok_or_else(|| ServiceError::NotFound(format!("no grant {grant_id}")))?;
        Ok((request, grant))
    }

    /// How much more the caller may extend grant `grant_id` by now (times left, the longest it
    /// may then last, whether a reason is wanted), judged by the rule `extend` enforces: every
    /// item's workflow and the policy's `Extend` decision, the strictest holding for all. The
    /// refusal an extension would get otherwise.
    pub async fn extension_allowance(
        &self,
        caller: &Caller,
        grant_id: &str,
    ) -> Result<crate::items::ExtensionAllowance, ServiceError> {
        let request = self.reachable_request_of_grant(caller, grant_id).await?;
        self.extension_allowance_of(caller.who(), &request, now())
    }

    /// [`App::extension_allowance`] of a whole request already read (a page that lists it).
    pub fn extension_allowance_of(
        &self,
        who: &Identity,
        request: &Request,
        at: Timestamp,
    ) -> Result<crate::items::ExtensionAllowance, ServiceError> {
        Ok(crate::items::extension_allowance(&self.policy(), who, request, at)?)
    }

    /// An OpenSSH user certificate for the caller's active grant on an SSH workflow. A
    /// single-use grant is consumed by it: one certificate, once.
    pub async fn ssh_certificate(
        &self,
        caller: &Caller,
        grant_id: &str,
        public_key: &str,
    ) -> Result<String, ServiceError> {
        // Each certificate adds an audit event: asking again and again is a flood like any other.
        self.take_write(caller.who())?;
        let (request, grant) = self.reachable_grant(caller, grant_id).await?;
        let at = now();
        if grant.status == GrantStatus::Used {
            return Err(ServiceError::Conflict(format!(
                "single-use grant {grant_id} has already been used"
            )));
        }
        if !grant.is_live(at) {
            return Err(ServiceError::Conflict(format!(
                "grant {grant_id} is {}; only an active grant gets a certificate",
                grant.status_at(at).as_str()
            )));
        }
        let policy = self.policy();
        let workflow = policy.rules().workflow(&grant.resource, &grant.action)?;
        let Some(ssh) = &workflow.ssh else {
            return Err(ServiceError::Conflict(format!(
                "{} {} is not SSH access: its workflow has no `ssh` section",
                grant.action, grant.resource
            )));
        };
        let spec = crate::ssh::CertificateSpec {
            principal: &grant.principal,
            force_command: grant.payload_sha256.as_ref().and(request.payload.as_deref()),
            source_address: &ssh.source_address,
        };
        // Build the certificate before consuming anything, so a bad public key costs nothing.
        let certificate = self.ssh_ca.issue(&grant, public_key, &spec).map_err(|e| match e {
            crate::ssh::SshError::BadPublicKey(m) => ServiceError::invalid(m),
            other => ServiceError::Internal(other.to_string()),
        })?;
        let mut issued = machine::used_event(&grant, &caller.who().principal, at);
        issued.kind = jitgate_core::EventKind::SshCertificateIssued;
        issued.comment = Some(format!(
            "valid {} to {} for principal {}{} (the certificate from {}: hosts' clocks may lag {} s)",
            grant.starts_at.to_rfc3339(),
            grant.expires_at.to_rfc3339(),
            grant.principal,
            spec.force_command
                .map(|c| format!(", force-command {c}"))
                .unwrap_or_default(),
            crate::ssh::valid_after(grant.starts_at).to_rfc3339(),
            crate::ssh::CLOCK_SKEW.as_secs()
        ));
        if grant.single_use {
            let used = machine::used_event(&grant, &caller.who().principal, at);
            if !self.store.consume_grant(grant_id, &used, at).await? {
                return Err(ServiceError::Conflict(format!(
                    "single-use grant {grant_id} has already been used"
                )));
            }
            let mut after = request.clone();
            if let Some(g) = after.grant.as_mut() {
                g.status = GrantStatus::Used;
            }
            self.track(Some(&request), &after);
        }
        self.store.append_events(std::slice::from_ref(&issued)).await?;
        Ok(certificate)
    }

    /// The database logins the grant's postgres providers made, for its holder, once each.
    /// The handout is claimed in the store before the password is set, so of any number of
    /// concurrent callers exactly one gets it; a claim whose password could not be set is
    /// given back.
    pub async fn database_credentials(
        &self,
        caller: &Caller,
        grant_id: &str,
    ) -> Result<Vec<DatabaseLogin>, ServiceError> {
        self.take_write(caller.who())?;
        let (_, grant) = self.reachable_grant(caller, grant_id).await?;
        let at = now();
        if !grant.is_live(at) {
            return Err(ServiceError::Conflict(format!(
                "grant {grant_id} is {}; only an active grant has credentials",
                grant.status_at(at).as_str()
            )));
        }
        let targets: Vec<(&String, &dyn crate::connectors::LoginIssuer)> = grant
            .providers
            .iter()
            .filter_map(|name| {
                let issuer = self.providers.get(name)?.logins()?;
                Some((name, issuer))
            })
            .collect();
        if targets.is_empty() {
            return Err(ServiceError::Conflict(format!(
                "{} {} grants no database login: its workflow names no postgres provider",
                grant.action, grant.resource
            )));
        }
        let states = self.store.outbox_states(std::slice::from_ref(&grant.id)).await?;
        // Every login must exist before any is claimed, so no claim is spent on a partial answer.
        for (name, _) in &targets {
            let provisioned = states.iter().any(|s| {
                &s.provider == *name && s.operation == jitgate_core::outbox::OutboxOperation::Provision && s.done
            });
            if !provisioned {
                return Err(ServiceError::Unavailable(format!(
                    "the login role for grant {grant_id} is still being created by provider {name}; try again in a moment"
                )));
            }
        }
        let mut handed = Vec::new();
        for (name, target) in targets {
            if !self.store.claim_handout(&grant.id, name, at).await? {
                return Err(ServiceError::Conflict(format!(
                    "the credentials for grant {grant_id} from provider {name} were handed out already; they are shown once"
                )));
            }
            let login = match target.issue_login(&grant).await {
                Ok(login) => login,
                Err(error) => {
                    self.store.release_handout(&grant.id, name).await?;
                    tracing::warn!(grant = %grant.id, provider = %name, %error, "cannot make database credentials");
                    return Err(ServiceError::Unavailable(format!(
                        "provider {name} cannot make the login now; try again shortly ({error})"
                    )));
                }
            };
            let mut issued = machine::used_event(&grant, &caller.who().principal, at);
            issued.kind = jitgate_core::EventKind::GrantCredentialsIssued;
            issued.comment = Some(format!(
                "provider {name}: login role {} on {}:{}/{} until {}",
                login.user,
                login.host,
                login.port,
                login.database,
                grant.expires_at.to_rfc3339()
            ));
            self.store.append_events(std::slice::from_ref(&issued)).await?;
            handed.push(DatabaseLogin {
                provider: name.clone(),
                url: login.url,
                user: login.user,
                password: login.password,
                host: login.host,
                port: login.port,
                database: login.database,
                expires_at: grant.expires_at,
            });
        }
        Ok(handed)
    }

    /// Issue an API token. The token itself is returned once and kept nowhere.
    pub async fn create_token(&self, caller: &Caller, body: &NewToken) -> Result<(ApiToken, String), ServiceError> {
        self.take_write(caller.who())?;
        body.validate()?;
        // An agent is a principal of its own: never a person or service the directory names,
        // whose grants and requests would then be the agent's too.
        if body.agent_for.is_some() && self.policy().rules().principal(body.principal.trim()).is_some() {
            return Err(ServiceError::invalid(format!(
                "principal: {} is a principal of directory.toml; an agent needs a name of its own \
                 (for example claude-{})",
                body.principal.trim(),
                body.agent_for.as_deref().unwrap_or_default()
            )));
        }
        // `ci:` names CI jobs, whose `on_behalf_of` is who triggered them and makes no agent:
        // an agent under such a name would escape the policy's rules for agents.
        if body.agent_for.is_some()
            && body
                .principal
                .trim()
                .to_ascii_lowercase()
                .starts_with(jitgate_core::identity::CI_PRINCIPAL_PREFIX)
        {
            return Err(ServiceError::invalid(format!(
                "principal: {} starts with {}, which names CI jobs; an agent needs another name (for example claude-{})",
                body.principal.trim(),
                jitgate_core::identity::CI_PRINCIPAL_PREFIX,
                body.agent_for.as_deref().unwrap_or_default()
            )));
        }
        let at = now();
        let expires_at = match &body.ttl {
            None => None,
            Some(ttl) => Some(at + ttl.parse("ttl")?.as_delta()),
        };
        let secret = crate::auth::tokens::generate()
            .map_err(|e| ServiceError::Internal(format!("no randomness for a token: {e}")))?;
        let mut groups = body.groups.clone();
        groups.sort();
        groups.dedup();
        let token = ApiToken {
            id: new_id("tok"),
            hash: crate::auth::tokens::hash_hex(&secret),
            principal: body.principal.trim().to_string(),
            groups,
            service: body.service,
            on_behalf_of: body.agent_for.clone(),
            scim: body.scim,
            label: body.label.clone().filter(|l| !l.trim().is_empty()),
            created_by: caller.who().principal.clone(),
            created_at: at,
            expires_at,
            revoked_at: None,
            revoked_by: None,
        };
        self.store.create_token(&token, &token.created_event()).await?;
        self.reload_tokens().await?;
        Ok((token, secret))
    }

    pub async fn list_tokens(&self) -> Result<Vec<ApiToken>, ServiceError> {
        Ok(self.store.list_tokens().await?)
    }

    /// Revoke an API token: refused from the moment this returns.
    pub async fn revoke_token(&self, caller: &Caller, id: &str) -> Result<ApiToken, ServiceError> {
        self.take_write(caller.who())?;
        let tokens = self.store.list_tokens().await?;
        let token = tokens
            .iter()
            .find(|t| t.id == id)
            .ok_or_else(|| ServiceError::NotFound(format!("no token {id}")))?;
        if token.revoked_at.is_some() {
            return Err(ServiceError::Conflict(format!("token {id} is already revoked")));
        }
        let (revoked, event) = token.revoke(&caller.who().principal, now());
        match self.store.revoke_token(&revoked, &event).await {
            Ok(()) => {}
            Err(StoreError::Conflict) => return Err(ServiceError::Conflict(format!("token {id} is already revoked"))),
            Err(e) => return Err(e.into()),
        }
        self.reload_tokens().await?;
        Ok(revoked)
    }

    pub(crate) async fn reload_tokens(&self) -> Result<(), StoreError> {
        let tokens = self.store.list_tokens().await?;
        self.auth.rebuild(&self.policy(), Some(tokens));
        Ok(())
    }

    /// Another replica changed request `id`: hold its grant as the database has it now, and
    /// wake whoever waits on it here.
    pub(crate) async fn refresh_request(&self, id: &str) -> Result<(), ServiceError> {
        if let Some(request) = self.store.get_request(id).await? {
            self.hold(&request);
        }
        Ok(())
    }

    /// Another replica changed grant `id` (a check consumed it).
    pub(crate) async fn refresh_grant(&self, id: &str) -> Result<(), ServiceError> {
        if let Some(request) = self.store.get_request_by_grant(id).await? {
            self.hold(&request);
        }
        Ok(())
    }

    fn hold(&self, request: &Request) {
        for grant in request.grants() {
            self.hold_grant(grant);
        }
        let _ = self.changes.send(request.id.clone());
    }

    /// Put a grant's current state in the check index. The gauge is set from the index under
    /// its lock, so changes made here and heard from other replicas cannot count one twice.
    /// While the database's history diverged, another replica's change is applied only if it
    /// takes access away (a grant the database says is no longer active leaves the index):
    /// a revocation made by a replica that accepted the database must not stay allowed here,
    /// and nothing the diverged database says may give access back.
    pub(crate) async fn narrow_request(&self, id: &str) -> Result<(), ServiceError> {
        if let Some(request) = self.store.get_request(id).await? {
            self.narrow(&request);
        }
        Ok(())
    }

    /// `narrow_request`, for a grant.
    pub(crate) async fn narrow_grant(&self, id: &str) -> Result<(), ServiceError> {
        if let Some(request) = self.store.get_request_by_grant(id).await? {
            self.narrow(&request);
        }
        Ok(())
    }

    fn narrow(&self, request: &Request) {
        let at = now();
        for grant in request.grants().filter(|g| !g.is_live(at)) {
            self.hold_grant(grant);
        }
    }

    fn hold_grant(&self, grant: &Grant) {
        let mut index = self.index.write();
        index.upsert(grant);
        // Under the index's lock, so a resync taking over cannot miss it.
        if let Some(journal) = self.resyncing.lock().as_mut() {
            journal.push(IndexChange::Hold(Box::new(grant.clone())));
        }
        self.metrics
            .active_grants
            .set(i64::try_from(index.len()).unwrap_or(i64::MAX));
    }

    /// Load every active grant from the database again, and let waiting callers look again.
    /// What could not be read is kept as it was and said in the error (the caller tries again).
    pub(crate) async fn resync(&self) -> Result<(), ServiceError> {
        *self.resyncing.lock() = Some(Vec::new());
        let mut failed: Option<ServiceError> = None;
        match load_index(&self.store).await {
            Ok(mut index) => {
                let mut current = self.index.write();
                // What changed while the pages were read wins over what they said.
                for change in self.resyncing.lock().take().unwrap_or_default() {
                    match change {
                        IndexChange::Hold(grant) => index.upsert(&grant),
                        IndexChange::Remove(id) => index.remove(&id),
                    }
                }
                let loaded = index.len();
                self.metrics
                    .active_grants
                    .set(i64::try_from(loaded).unwrap_or(i64::MAX));
                *current = index;
                drop(current);
                let _ = self.changes.send(EVERYTHING_CHANGED.to_string());
                tracing::info!(active_grants = loaded, "check index loaded from the database");
            }
            // The index is kept as it is; the caller says so (once, not at every retry).
            Err(e) => {
                self.resyncing.lock().take();
                failed = Some(e.into());
            }
        }
        if let Err(e) = self.reload_directory().await {
            failed = failed.or(Some(e));
        }
        if let Err(e) = self.reload_tokens().await {
            failed = failed.or(Some(e.into()));
        }
        if let Err(e) = self.reload_keys().await {
            failed = failed.or(Some(e));
        }
        failed.map_or(Ok(()), Err)
    }

    /// How many times an operator accepted the database's history in this process: the
    /// replica follower starts counting what it heard afresh when this moves.
    pub fn history_acceptances(&self) -> u64 {
        self.history_accepted.load(std::sync::atomic::Ordering::Acquire)
    }

    /// An operator accepts the database's history as it is now (`POST
    /// /v1/admin/database/accept-history`): the store forgets what it had seen of the history
    /// and writes again, the acceptance is recorded in the audit log with what was given up,
    /// and the check index is loaded again from the database. `None`: nothing had diverged,
    /// nothing was recorded.
    pub async fn accept_database_history(&self, caller: &Caller) -> Result<Option<String>, ServiceError> {
        self.take_write(caller.who())?;
        let Some(given_up) = self.store.accept_history().await? else {
            return Ok(None);
        };
        self.history_accepted.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        tracing::warn!(operator = %caller.who().principal, given_up = %given_up, "the database's history was accepted as it is; writing again");
        let event = jitgate_core::NewEvent {
            kind: jitgate_core::EventKind::DatabaseHistoryAccepted,
            at: now(),
            actor: caller.who().principal.clone(),
            subject: caller.who().principal.clone(),
            request_id: None,
            grant_id: None,
            resource: String::new(),
            action: String::new(),
            comment: Some(given_up.clone()),
        };
        let recorded = self.store.append_events(&[event]).await;
        // The index may hold grants the accepted history never had, or lack ones it has.
        let loaded = self.resync().await;
        if let Err(e) = recorded {
            // Accepted all the same: what was given up stays in the server's log at least.
            tracing::error!(error = %e, given_up = %given_up, "the acceptance of the database's history could not be recorded in the audit log");
            return Err(e.into());
        }
        loaded?;
        Ok(Some(given_up))
    }

    /// Apply every time-based transition due at `now`. Returns how many requests changed.
    pub async fn settle_due(&self, now: Timestamp, batch: u32) -> Result<usize, StoreError> {
        let due = self.store.due_requests(now, batch).await?;
        // Saved together, so that the store can commit many expiries at once.
        let saves = due.iter().filter_map(|current| {
            machine::settle(current, now).map(|Transition { request, events }| async move {
                (current, self.store.save_transition(current, &request, &events).await)
            })
        });
        let mut changed = 0;
        for (current, saved) in futures_util::future::join_all(saves).await {
            match saved {
                Ok(saved) => {
                    self.track(Some(current), &saved);
                    changed += 1;
                }
                // Someone else moved it on; the next round sees the fresh state.
                Err(StoreError::Conflict) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(changed)
    }

    /// Decide a check against the clock at this moment. Reusable grants are answered from
    /// memory alone; a single-use grant is consumed in the store first, so of any number of
    /// concurrent checks exactly one is allowed.
    pub async fn check(
        &self,
        checker: &Identity,
        principal: &str,
        resource: &str,
        action: &str,
        payload: Option<&str>,
    ) -> Decision {
        let started = std::time::Instant::now();
        let at = now();
        let outcome = self.index.read().check(principal, resource, action, payload, at);
        let answer = match outcome {
            CheckOutcome::Allow {
                grant_id,
                expires_at_ms,
            } => allow(grant_id, expires_at_ms),
            CheckOutcome::Deny { reason } => Decision {
                allow: false,
                grant_id: None,
                expires_at: None,
                reason,
                error: false,
            },
            CheckOutcome::AllowIfConsumed {
                grant_id,
                expires_at_ms,
            } => self.consume(checker, &grant_id, expires_at_ms, at).await,
        };
        if answer.allow {
            self.metrics.checks_allowed.inc();
        } else {
            self.metrics.checks_denied.inc();
            self.denied
                .record(&checker.principal, principal, resource, action, &answer.reason, at);
        }
        self.metrics.check_seconds.observe(started.elapsed().as_secs_f64());
        answer
    }

    /// Does one of the caller's own grants cover `action` on `resource` (with `payload`) now?
    /// The decision `check` makes with the caller as the principal, never another, consuming a
    /// single-use grant the same way (of concurrent uses exactly one is allowed), with the same
    /// metrics and denial records: how an agent's MCP proxy spends the grant that was approved
    /// for one exact tool call, without being a service that may ask about anyone.
    pub async fn use_grant(&self, caller: &Caller, resource: &str, action: &str, payload: Option<&str>) -> Decision {
        let who = caller.who();
        self.check(who, &who.principal, resource, action, payload).await
    }

    /// Use grant `grant_id` itself, not whichever live grant covers the same principal,
    /// resource, action and payload (as `check` picks): a single-use grant is consumed exactly
    /// once (of any number of concurrent uses one is allowed), a reusable one is only checked
    /// to be live. The index, the metrics and the denial records change as a check's do.
    /// What jitgate uses for a request it answers for itself (a GitHub deployment), so that
    /// two requests for the same thing each spend their own grant.
    pub async fn use_grant_by_id(&self, checker: &Identity, grant_id: &str) -> Decision {
        let started = std::time::Instant::now();
        let at = now();
        let denied = |reason: String| Decision {
            allow: false,
            grant_id: None,
            expires_at: None,
            reason,
            error: false,
        };
        let grant = match self.store.get_request_by_grant(grant_id).await {
            Ok(request) => request.and_then(|r| r.grant_by_id(grant_id).cloned()),
            Err(e) => {
                tracing::error!(error = %e, grant_id, "cannot load a grant to use; denying");
                self.metrics.check_errors.inc();
                return Decision {
                    error: true,
                    ..denied(
                        "the decision could not be recorded (the database is unavailable); denied, try again".into(),
                    )
                };
            }
        };
        let answer = match &grant {
            None => denied(format!("grant {grant_id} is unknown")),
            Some(g) if !g.is_live(at) => denied(format!(
                "grant {grant_id} is not in force now (it is {})",
                g.status_at(at).as_str()
            )),
            Some(g) if !g.single_use => allow(grant_id.to_string(), g.expires_at.timestamp_millis()),
            Some(g) => {
                self.consume(checker, grant_id, g.expires_at.timestamp_millis(), at)
                    .await
            }
        };
        if answer.allow {
            self.metrics.checks_allowed.inc();
        } else {
            self.metrics.checks_denied.inc();
            if let Some(g) = &grant {
                self.denied.record(
                    &checker.principal,
                    &g.principal,
                    &g.resource,
                    &g.action,
                    &answer.reason,
                    at,
                );
            }
        }
        self.metrics.check_seconds.observe(started.elapsed().as_secs_f64());
        answer
    }

    async fn consume(&self, checker: &Identity, grant_id: &str, expires_at_ms: i64, at: Timestamp) -> Decision {
        let denied = |reason: String| Decision {
            allow: false,
            grant_id: None,
            expires_at: None,
            reason,
            error: false,
        };
        // Fail closed: a decision we cannot make durable is a deny, but marked, so that the
        // caller can tell it from a real denial and retry.
        let unrecorded = || Decision {
            error: true,
            ..denied("the decision could not be recorded (the database is unavailable); denied, try again".into())
        };
        let request = match self.store.get_request_by_grant(grant_id).await {
            Ok(Some(r)) => r,
            Ok(None) => return denied(format!("grant {grant_id} is unknown")),
            Err(e) => {
                tracing::error!(error = %e, grant_id, "cannot load single-use grant; denying");
                self.metrics.check_errors.inc();
                return unrecorded();
            }
        };
        let Some(grant) = request.grant_by_id(grant_id).cloned() else {
            return denied(format!("grant {grant_id} is unknown"));
        };
        let used = machine::used_event(&grant, &checker.principal, at);
        match self.store.consume_grant(grant_id, &used, at).await {
            Ok(true) => {
                let mut after = request.clone();
                if let Some(g) = after.grant_by_id_mut(grant_id) {
                    g.status = GrantStatus::Used;
                }
                self.track(Some(&request), &after);
                allow(grant_id.to_string(), expires_at_ms)
            }
            Ok(false) => {
                let mut index = self.index.write();
                index.remove(grant_id);
                if let Some(journal) = self.resyncing.lock().as_mut() {
                    journal.push(IndexChange::Remove(grant_id.to_string()));
                }
                self.metrics
                    .active_grants
                    .set(i64::try_from(index.len()).unwrap_or(i64::MAX));
                denied(format!("single-use grant {grant_id} has already been used"))
            }
            Err(e) => {
                tracing::error!(error = %e, grant_id, "cannot consume single-use grant; denying");
                self.metrics.check_errors.inc();
                unrecorded()
            }
        }
    }
}

impl App {
    /// Authenticate the credentials a call presents from `peer`. A refusal from a source that
    /// keeps failing is held back before it is answered; a credential that authenticates is
    /// answered at once, whatever its source did before. Every edge authenticates here.
    pub async fn authenticate(
        &self,
        presented: &dyn crate::auth::Presented,
        peer: Option<std::net::IpAddr>,
    ) -> Result<Identity, ServiceError> {
        self.authenticate_described(presented, peer)
            .await
            .map(|(identity, _)| identity)
    }

    /// [`App::authenticate`], and which credential the caller presented (`GET /v1/whoami`).
    pub async fn authenticate_described(
        &self,
        presented: &dyn crate::auth::Presented,
        peer: Option<std::net::IpAddr>,
    ) -> Result<(Identity, crate::auth::CredentialInfo), ServiceError> {
        let auth = self.authenticator();
        let failure = match auth.authenticate_described(&|| self.policy(), presented, peer).await {
            Ok(described) => return Ok(described),
            Err(failure) => failure,
        };
        self.metrics.count_auth_failure(failure.label);
        if failure.label == crate::auth::SCIM_TOKEN_LABEL {
            return Err(ServiceError::Forbidden(crate::auth::SCIM_TOKEN_ELSEWHERE.into()));
        }
        if !failure.counts {
            return Err(ServiceError::Unauthenticated(
                "send a bearer token: Authorization: Bearer TOKEN".into(),
            ));
        }
        self.hold_back(&failure, peer).await;
        Err(ServiceError::Unauthenticated(
            failure.told.unwrap_or_else(|| "the credentials are not valid".into()),
        ))
    }

    /// The provisioning client behind a `/scim/v2` call: a SCIM token, nothing else.
    pub async fn authenticate_scim(
        &self,
        presented: &dyn crate::auth::Presented,
        peer: Option<std::net::IpAddr>,
    ) -> Result<crate::scim::ScimClient, ServiceError> {
        let failure = match self.authenticator().authenticate_scim(presented) {
            Ok(principal) => return Ok(crate::scim::ScimClient { principal }),
            Err(failure) => failure,
        };
        self.metrics.count_auth_failure(failure.label);
        if failure.counts {
            self.hold_back(&failure, peer).await;
        }
        Err(ServiceError::Unauthenticated(
            "send a SCIM provisioning token (jitgate token create --principal NAME --scim): Authorization: Bearer TOKEN".into(),
        ))
    }

    /// Log a refused credential and hold the answer back if its source keeps failing.
    pub(crate) async fn hold_back(&self, failure: &crate::auth::AuthFailure, peer: Option<std::net::IpAddr>) {
        let auth = self.authenticator();
        tracing::warn!(source = ?peer, reason = %failure.reason, "authentication refused");
        match auth.throttle.failure(peer) {
            crate::auth::throttle::Hold::None => {}
            crate::auth::throttle::Hold::For(delay, _held) => {
                self.metrics.auth_throttled.inc();
                tokio::time::sleep(delay).await;
            }
            crate::auth::throttle::Hold::Full => {
                self.metrics.auth_throttle_full.inc();
            }
        }
    }
}

fn allow(grant_id: String, expires_at_ms: i64) -> Decision {
    let expires_at = chrono::DateTime::from_timestamp_millis(expires_at_ms);
    let until = expires_at
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default();
    Decision {
        allow: true,
        reason: format!("grant {grant_id} allows until {until}"),
        grant_id: Some(grant_id),
        expires_at,
        error: false,
    }
}

/// The answer to a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allow: bool,
    /// The grant that allows it.
    pub grant_id: Option<String>,
    /// When that grant ends.
    pub expires_at: Option<Timestamp>,
    /// Why: the grant and its end, or what is missing.
    pub reason: String,
    /// The decision could not be made durable (the store failed to load or consume a
    /// single-use grant): always a deny, but a retry may succeed.
    pub error: bool,
}

/// A database login made for a grant's holder, shown once.
#[derive(Debug, Clone)]
pub struct DatabaseLogin {
    /// The provider (from the server's config) that made the login.
    pub provider: String,
    pub user: String,
    pub password: String,
    pub host: String,
    pub port: u16,
    pub database: String,
    /// A connection URL with all of the above, for `psql` and drivers.
    pub url: String,
    pub expires_at: Timestamp,
}
