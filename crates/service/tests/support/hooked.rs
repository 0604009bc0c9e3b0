//! A store that runs a hook right after the next request transition it saves commits: to
//! put a concurrent change exactly between a write and what its caller does next.
//! It can also make SCIM writes answer `Unavailable` after they commit (a bounded write that
//! timed out and committed anyway) and SCIM reads fail. Generated from `counting.rs`: every
//! other method delegates.

use async_trait::async_trait;
use jitgate_core::audit::{ChainReport, Checkpoint};
use jitgate_core::github::{DeploymentAnswer, GithubCall, GithubDeployment, NewGithubCall};
use jitgate_core::keys::SigningKeyRecord;
use jitgate_core::outbox::{OutboxItem, OutboxState};
use jitgate_core::scim::{DirectoryWrite, ScimGroup, ScimPage, ScimQuery, ScimSnapshot, ScimUser};
use jitgate_core::{ApiToken, AuditEvent, Grant, NewEvent, Request, Timestamp};
use jitgate_store::{AuditFilter, ChangeFeed, GrantFilter, RequestFilter, Result, SinkCursor, Store};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// What runs after the next saved transition.
pub type Hook = Box<dyn FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send>;

pub struct Hooked {
    pub inner: Arc<dyn Store>,
    /// Taken by the next `save_transition` that commits.
    pub after_save: Mutex<Option<Hook>>,
    /// Taken and run by the next `scim_write`, before it writes.
    pub before_scim_write: Mutex<Option<Hook>>,
    /// How many of the next `scim_write`s commit and then answer `Unavailable`.
    pub scim_writes_time_out: AtomicUsize,
    /// How many of the next `scim_user` / `scim_group` reads answer `Unavailable`.
    pub scim_reads_fail: AtomicUsize,
    /// How many of the next `scim_write`s answer `Unavailable` without committing.
    pub scim_writes_fail: AtomicUsize,
    /// How many reads fail once the next `scim_write` committed (moved into
    /// `scim_reads_fail` then).
    pub scim_reads_fail_after_write: AtomicUsize,
}

impl Hooked {
    pub fn new(inner: Arc<dyn Store>) -> Hooked {
        Hooked {
            inner,
            after_save: Mutex::new(None),
            before_scim_write: Mutex::new(None),
            scim_writes_time_out: AtomicUsize::new(0),
            scim_reads_fail: AtomicUsize::new(0),
            scim_reads_fail_after_write: AtomicUsize::new(0),
            scim_writes_fail: AtomicUsize::new(0),
        }
    }

    /// Take one from `counter` if it is above zero.
    fn take(counter: &AtomicUsize) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    fn read_fails(&self) -> Result<()> {
        if Self::take(&self.scim_reads_fail) {
            return Err(jitgate_store::StoreError::Unavailable(
                "injected: the read failed".into(),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Store for Hooked {
    async fn create_request(&self, request: &Request, events: &[NewEvent]) -> Result<Request> {
        self.inner.create_request(request, events).await
    }

    async fn create_requests(&self, batch: &[(Request, Vec<NewEvent>)]) -> Result<()> {
        self.inner.create_requests(batch).await
    }

    async fn save_transition(&self, previous: &Request, next: &Request, events: &[NewEvent]) -> Result<Request> {
        let saved = self.inner.save_transition(previous, next, events).await?;
        let hook = self.after_save.lock().take();
        if let Some(hook) = hook {
            hook().await;
        }
        Ok(saved)
    }

    async fn append_events(&self, events: &[NewEvent]) -> Result<()> {
        self.inner.append_events(events).await
    }

    async fn consume_grant(&self, grant_id: &str, used: &NewEvent, now: Timestamp) -> Result<bool> {
        self.inner.consume_grant(grant_id, used, now).await
    }

    async fn get_request(&self, id: &str) -> Result<Option<Request>> {
        self.inner.get_request(id).await
    }

    async fn get_request_by_grant(&self, grant_id: &str) -> Result<Option<Request>> {
        self.inner.get_request_by_grant(grant_id).await
    }

    async fn get_grants(&self, ids: &[String]) -> Result<Vec<Grant>> {
        self.inner.get_grants(ids).await
    }

    async fn list_requests(&self, filter: &RequestFilter, now: Timestamp) -> Result<Vec<Request>> {
        self.inner.list_requests(filter, now).await
    }

    async fn list_grants(&self, filter: &GrantFilter, now: Timestamp) -> Result<Vec<Grant>> {
        self.inner.list_grants(filter, now).await
    }

    async fn count_pending(&self, requester: &str, now: Timestamp) -> Result<u64> {
        self.inner.count_pending(requester, now).await
    }

    async fn active_grants(&self) -> Result<Vec<Grant>> {
        self.inner.active_grants().await
    }

    async fn live_grants(&self, after_id: Option<&str>, limit: u32) -> Result<Vec<jitgate_core::index::LiveGrant>> {
        self.inner.live_grants(after_id, limit).await
    }

    async fn due_requests(&self, now: Timestamp, limit: u32) -> Result<Vec<Request>> {
        self.inner.due_requests(now, limit).await
    }

    async fn audit_events(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>> {
        self.inner.audit_events(filter).await
    }

    async fn verify_audit(&self) -> Result<ChainReport> {
        self.inner.verify_audit().await
    }

    async fn add_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()> {
        self.inner.add_checkpoint(checkpoint).await
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        self.inner.checkpoints().await
    }

    async fn archive_audit_through(&self, through: i64, event: &NewEvent) -> Result<u64> {
        self.inner.archive_audit_through(through, event).await
    }

    async fn create_token(&self, token: &ApiToken, event: &NewEvent) -> Result<()> {
        self.inner.create_token(token, event).await
    }

    async fn revoke_token(&self, revoked: &ApiToken, event: &NewEvent) -> Result<()> {
        self.inner.revoke_token(revoked, event).await
    }

    async fn list_tokens(&self) -> Result<Vec<ApiToken>> {
        self.inner.list_tokens().await
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        self.inner.signing_keys().await
    }

    async fn rotate_signing_key(&self, new: &SigningKeyRecord, event: &NewEvent) -> Result<()> {
        self.inner.rotate_signing_key(new, event).await
    }

    async fn ssh_ca(&self) -> Result<Option<(String, String)>> {
        self.inner.ssh_ca().await
    }

    async fn init_ssh_ca(&self, private: &str, public: &str, event: &NewEvent) -> Result<()> {
        self.inner.init_ssh_ca(private, public, event).await
    }

    async fn due_outbox(&self, now: Timestamp, limit: u32) -> Result<Vec<OutboxItem>> {
        self.inner.due_outbox(now, limit).await
    }

    async fn lease_outbox(
        &self,
        now: Timestamp,
        holder: &str,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<OutboxItem>> {
        self.inner.lease_outbox(now, holder, lease_until, limit).await
    }

    async fn release_outbox_leases(&self, holder: &str) -> Result<u64> {
        self.inner.release_outbox_leases(holder).await
    }

    async fn complete_outbox(&self, id: i64, at: Timestamp, event: Option<&NewEvent>) -> Result<()> {
        self.inner.complete_outbox(id, at, event).await
    }

    async fn retry_outbox(&self, id: i64, next_due: Timestamp, error: &str, event: Option<&NewEvent>) -> Result<()> {
        self.inner.retry_outbox(id, next_due, error, event).await
    }

    async fn outbox_states(&self, grant_ids: &[String]) -> Result<Vec<OutboxState>> {
        self.inner.outbox_states(grant_ids).await
    }

    async fn claim_handout(&self, grant_id: &str, provider: &str, at: Timestamp) -> Result<bool> {
        self.inner.claim_handout(grant_id, provider, at).await
    }

    async fn release_handout(&self, grant_id: &str, provider: &str) -> Result<()> {
        self.inner.release_handout(grant_id, provider).await
    }

    async fn grants_to_remind(&self, now: Timestamp, lead: chrono::TimeDelta, limit: u32) -> Result<Vec<Grant>> {
        self.inner.grants_to_remind(now, lead, limit).await
    }

    async fn mark_reminded(&self, grant_id: &str, event: &NewEvent) -> Result<bool> {
        self.inner.mark_reminded(grant_id, event).await
    }

    async fn audit_head(&self) -> Result<i64> {
        self.inner.audit_head().await
    }

    async fn notification_cursor(&self, sink: &str) -> Result<Option<i64>> {
        self.inner.notification_cursor(sink).await
    }

    async fn lease_sink(&self, sink: &str, holder: &str, now: Timestamp, until: Timestamp) -> Result<bool> {
        self.inner.lease_sink(sink, holder, now, until).await
    }

    async fn set_notification_cursor(&self, sink: &str, after_seq: i64) -> Result<()> {
        self.inner.set_notification_cursor(sink, after_seq).await
    }

    async fn sink_cursor(&self, sink: &str) -> Result<Option<SinkCursor>> {
        self.inner.sink_cursor(sink).await
    }

    async fn set_sink_cursor(&self, sink: &str, cursor: &SinkCursor) -> Result<()> {
        self.inner.set_sink_cursor(sink, cursor).await
    }

    async fn change_feed(&self) -> Result<Option<Box<dyn ChangeFeed>>> {
        self.inner.change_feed().await
    }

    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }

    async fn ready(&self) -> Result<()> {
        self.inner.ready().await
    }

    fn divergence(&self) -> Option<String> {
        self.inner.divergence()
    }

    async fn accept_history(&self) -> Result<Option<String>> {
        self.inner.accept_history().await
    }

    async fn scim_write(&self, write: &DirectoryWrite) -> Result<()> {
        let hook = self.before_scim_write.lock().take();
        if let Some(hook) = hook {
            hook().await;
        }
        if Self::take(&self.scim_writes_fail) {
            return Err(jitgate_store::StoreError::Unavailable(
                "injected: the write did not commit".into(),
            ));
        }
        self.inner.scim_write(write).await?;
        let failing = self.scim_reads_fail_after_write.swap(0, Ordering::SeqCst);
        self.scim_reads_fail.fetch_add(failing, Ordering::SeqCst);
        if Self::take(&self.scim_writes_time_out) {
            return Err(jitgate_store::StoreError::Unavailable(
                "injected: the write did not commit within the bound (it did commit)".into(),
            ));
        }
        Ok(())
    }

    async fn scim_user(&self, id: &str) -> Result<Option<ScimUser>> {
        self.read_fails()?;
        self.inner.scim_user(id).await
    }

    async fn scim_group(&self, id: &str) -> Result<Option<ScimGroup>> {
        self.read_fails()?;
        self.inner.scim_group(id).await
    }

    async fn scim_users(&self, query: &ScimQuery) -> Result<ScimPage<ScimUser>> {
        self.inner.scim_users(query).await
    }

    async fn scim_groups(&self, query: &ScimQuery, members: bool) -> Result<ScimPage<ScimGroup>> {
        self.inner.scim_groups(query, members).await
    }

    async fn scim_groups_of(&self, user_id: &str) -> Result<Vec<(String, String)>> {
        self.inner.scim_groups_of(user_id).await
    }

    async fn scim_directory(&self) -> Result<ScimSnapshot> {
        self.inner.scim_directory().await
    }

    async fn github_claim_delivery(&self, delivery_id: &str, event: &str, at: Timestamp) -> Result<bool> {
        self.inner.github_claim_delivery(delivery_id, event, at).await
    }

    async fn github_release_delivery(&self, delivery_id: &str) -> Result<()> {
        self.inner.github_release_delivery(delivery_id).await
    }

    async fn github_track_deployment(&self, deployment: &GithubDeployment) -> Result<bool> {
        self.inner.github_track_deployment(deployment).await
    }

    async fn github_deployment(&self, request_id: &str) -> Result<Option<GithubDeployment>> {
        self.inner.github_deployment(request_id).await
    }

    async fn github_waiting(&self, limit: u32) -> Result<Vec<GithubDeployment>> {
        self.inner.github_waiting(limit).await
    }

    async fn github_answer(
        &self,
        request_id: &str,
        answer: DeploymentAnswer,
        comment: &str,
        at: Timestamp,
        calls: &[NewGithubCall],
        event: &NewEvent,
    ) -> Result<bool> {
        self.inner
            .github_answer(request_id, answer, comment, at, calls, event)
            .await
    }

    async fn github_enqueue(&self, calls: &[NewGithubCall]) -> Result<()> {
        self.inner.github_enqueue(calls).await
    }

    async fn github_lease_calls(
        &self,
        now: Timestamp,
        holder: &str,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<GithubCall>> {
        self.inner.github_lease_calls(now, holder, lease_until, limit).await
    }

    async fn github_call_done(&self, id: i64, at: Timestamp, event: Option<&NewEvent>) -> Result<()> {
        self.inner.github_call_done(id, at, event).await
    }

    async fn github_call_retry(&self, id: i64, holder: &str, next_due: Timestamp, error: &str) -> Result<()> {
        self.inner.github_call_retry(id, holder, next_due, error).await
    }

    async fn github_forget_deliveries(&self, before: Timestamp) -> Result<u64> {
        self.inner.github_forget_deliveries(before).await
    }

    async fn github_release_call_leases(&self, holder: &str) -> Result<u64> {
        self.inner.github_release_call_leases(holder).await
    }

    async fn github_calls(&self, request_id: &str) -> Result<Vec<GithubCall>> {
        self.inner.github_calls(request_id).await
    }
}
