//! Every store, bounded: no call waits on the database longer than the write bound. A
//! PostgreSQL whose synchronous standby is gone never commits, and a write waiting on it
//! (or on the lock it holds) would wait with it; past the bound the caller hears
//! `Unavailable` and can be told to come back (a 503 with `Retry-After`), while the write,
//! already sent, may still commit: callers read before they retry (docs/api.md). A store
//! whose history diverged takes no write at all.
//!
//! The log walk (`verify_audit`), the loading of the check index and retention's archiving
//! take as long as the data takes, and the change feed waits by design: those are not
//! bounded.

use crate::{AuditFilter, ChangeFeed, GrantFilter, RequestFilter, Result, Store, StoreError};
use async_trait::async_trait;
use jitgate_core::audit::{ChainReport, Checkpoint};
use jitgate_core::github::{DeploymentAnswer, GithubCall, GithubDeployment, NewGithubCall};
use jitgate_core::keys::SigningKeyRecord;
use jitgate_core::outbox::{OutboxItem, OutboxState};
use jitgate_core::scim::{DirectoryWrite, ScimGroup, ScimPage, ScimQuery, ScimSnapshot, ScimUser};
use jitgate_core::{ApiToken, AuditEvent, Grant, NewEvent, Request, Timestamp};
use std::future::Future;
use std::time::Duration;

pub(crate) struct Bounded<S> {
    inner: S,
    bound: Duration,
}

impl<S: Store> Bounded<S> {
    pub(crate) fn new(inner: S, bound: Duration) -> Self {
        Bounded { inner, bound }
    }

    async fn write<T>(&self, write: impl Future<Output = Result<T>>) -> Result<T> {
        if let Some(why) = self.inner.divergence() {
            return Err(StoreError::Diverged(why));
        }
        tokio::time::timeout(self.bound, write).await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(format!(
                "the database did not commit the write within {}; it may still commit, so read before retrying",
                seconds(self.bound)
            )))
        })
    }

    async fn read<T>(&self, read: impl Future<Output = Result<T>>) -> Result<T> {
        tokio::time::timeout(self.bound, read).await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(format!(
                "the database did not answer within {}",
                seconds(self.bound)
            )))
        })
    }
}

fn seconds(bound: Duration) -> String {
    format!("{}s", bound.as_secs_f64())
}

#[async_trait]
impl<S: Store> Store for Bounded<S> {
    async fn create_request(&self, request: &Request, events: &[NewEvent]) -> Result<Request> {
        self.write(self.inner.create_request(request, events)).await
    }

    async fn create_requests(&self, batch: &[(Request, Vec<NewEvent>)]) -> Result<()> {
        self.write(self.inner.create_requests(batch)).await
    }

    async fn save_transition(&self, previous: &Request, next: &Request, events: &[NewEvent]) -> Result<Request> {
        self.write(self.inner.save_transition(previous, next, events)).await
    }

    async fn append_events(&self, events: &[NewEvent]) -> Result<()> {
        self.write(self.inner.append_events(events)).await
    }

    async fn consume_grant(&self, grant_id: &str, used: &NewEvent, now: Timestamp) -> Result<bool> {
        self.write(self.inner.consume_grant(grant_id, used, now)).await
    }

    async fn get_request(&self, id: &str) -> Result<Option<Request>> {
        self.read(self.inner.get_request(id)).await
    }

    async fn get_request_by_grant(&self, grant_id: &str) -> Result<Option<Request>> {
        self.read(self.inner.get_request_by_grant(grant_id)).await
    }

    async fn get_grants(&self, ids: &[String]) -> Result<Vec<Grant>> {
        self.read(self.inner.get_grants(ids)).await
    }

    async fn list_requests(&self, filter: &RequestFilter, now: Timestamp) -> Result<Vec<Request>> {
        self.read(self.inner.list_requests(filter, now)).await
    }

    async fn list_grants(&self, filter: &GrantFilter, now: Timestamp) -> Result<Vec<Grant>> {
        self.read(self.inner.list_grants(filter, now)).await
    }

    async fn count_pending(&self, requester: &str, now: Timestamp) -> Result<u64> {
        self.read(self.inner.count_pending(requester, now)).await
    }

    async fn active_grants(&self) -> Result<Vec<Grant>> {
        self.inner.active_grants().await
    }

    async fn live_grants(&self, after_id: Option<&str>, limit: u32) -> Result<Vec<jitgate_core::index::LiveGrant>> {
        self.inner.live_grants(after_id, limit).await
    }

    async fn due_requests(&self, now: Timestamp, limit: u32) -> Result<Vec<Request>> {
        self.read(self.inner.due_requests(now, limit)).await
    }

    async fn audit_events(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>> {
        self.read(self.inner.audit_events(filter)).await
    }

    async fn verify_audit(&self) -> Result<ChainReport> {
        self.inner.verify_audit().await
    }

    async fn add_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()> {
        self.write(self.inner.add_checkpoint(checkpoint)).await
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        self.read(self.inner.checkpoints()).await
    }

    async fn archive_audit_through(&self, through: i64, event: &NewEvent) -> Result<u64> {
        // Retention is background work nobody waits on, and deleting a long log's oldest part
        // takes what it takes: a bound would only make it start over, forever.
        if let Some(why) = self.inner.divergence() {
            return Err(StoreError::Diverged(why));
        }
        self.inner.archive_audit_through(through, event).await
    }

    async fn create_token(&self, token: &ApiToken, event: &NewEvent) -> Result<()> {
        self.write(self.inner.create_token(token, event)).await
    }

    async fn revoke_token(&self, revoked: &ApiToken, event: &NewEvent) -> Result<()> {
        self.write(self.inner.revoke_token(revoked, event)).await
    }

    async fn list_tokens(&self) -> Result<Vec<ApiToken>> {
        self.read(self.inner.list_tokens()).await
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        self.read(self.inner.signing_keys()).await
    }

    async fn rotate_signing_key(&self, new: &SigningKeyRecord, event: &NewEvent) -> Result<()> {
        self.write(self.inner.rotate_signing_key(new, event)).await
    }

    async fn ssh_ca(&self) -> Result<Option<(String, String)>> {
        self.read(self.inner.ssh_ca()).await
    }

    async fn init_ssh_ca(&self, private: &str, public: &str, event: &NewEvent) -> Result<()> {
        self.write(self.inner.init_ssh_ca(private, public, event)).await
    }

    async fn due_outbox(&self, now: Timestamp, limit: u32) -> Result<Vec<OutboxItem>> {
        self.read(self.inner.due_outbox(now, limit)).await
    }

    async fn lease_outbox(
        &self,
        now: Timestamp,
        holder: &str,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<OutboxItem>> {
        self.write(self.inner.lease_outbox(now, holder, lease_until, limit))
            .await
    }

    async fn release_outbox_leases(&self, holder: &str) -> Result<u64> {
        self.write(self.inner.release_outbox_leases(holder)).await
    }

    async fn complete_outbox(&self, id: i64, at: Timestamp, event: Option<&NewEvent>) -> Result<()> {
        self.write(self.inner.complete_outbox(id, at, event)).await
    }

    async fn retry_outbox(&self, id: i64, next_due: Timestamp, error: &str, event: Option<&NewEvent>) -> Result<()> {
        self.write(self.inner.retry_outbox(id, next_due, error, event)).await
    }

    async fn outbox_states(&self, grant_ids: &[String]) -> Result<Vec<OutboxState>> {
        self.read(self.inner.outbox_states(grant_ids)).await
    }

    async fn claim_handout(&self, grant_id: &str, provider: &str, at: Timestamp) -> Result<bool> {
        self.write(self.inner.claim_handout(grant_id, provider, at)).await
    }

    async fn release_handout(&self, grant_id: &str, provider: &str) -> Result<()> {
        self.write(self.inner.release_handout(grant_id, provider)).await
    }

    async fn grants_to_remind(&self, now: Timestamp, lead: chrono::TimeDelta, limit: u32) -> Result<Vec<Grant>> {
        self.read(self.inner.grants_to_remind(now, lead, limit)).await
    }

    async fn mark_reminded(&self, grant_id: &str, event: &NewEvent) -> Result<bool> {
        self.write(self.inner.mark_reminded(grant_id, event)).await
    }

    async fn audit_head(&self) -> Result<i64> {
        self.read(self.inner.audit_head()).await
    }

    async fn notification_cursor(&self, sink: &str) -> Result<Option<i64>> {
        self.read(self.inner.notification_cursor(sink)).await
    }

    async fn lease_sink(&self, sink: &str, holder: &str, now: Timestamp, until: Timestamp) -> Result<bool> {
        self.write(self.inner.lease_sink(sink, holder, now, until)).await
    }

    async fn set_notification_cursor(&self, sink: &str, after_seq: i64) -> Result<()> {
        self.write(self.inner.set_notification_cursor(sink, after_seq)).await
    }

    async fn change_feed(&self) -> Result<Option<Box<dyn ChangeFeed>>> {
        self.inner.change_feed().await
    }

    async fn ping(&self) -> Result<()> {
        self.read(self.inner.ping()).await
    }

    async fn ready(&self) -> Result<()> {
        self.inner.ready().await
    }

    async fn accept_history(&self) -> Result<Option<String>> {
        self.inner.accept_history().await
    }

    async fn sink_cursor(&self, sink: &str) -> Result<Option<crate::SinkCursor>> {
        self.read(self.inner.sink_cursor(sink)).await
    }

    async fn set_sink_cursor(&self, sink: &str, cursor: &crate::SinkCursor) -> Result<()> {
        self.write(self.inner.set_sink_cursor(sink, cursor)).await
    }

    async fn scim_write(&self, write: &DirectoryWrite) -> Result<()> {
        self.write(self.inner.scim_write(write)).await
    }

    async fn scim_user(&self, id: &str) -> Result<Option<ScimUser>> {
        self.read(self.inner.scim_user(id)).await
    }

    async fn scim_group(&self, id: &str) -> Result<Option<ScimGroup>> {
        self.read(self.inner.scim_group(id)).await
    }

    async fn scim_users(&self, query: &ScimQuery) -> Result<ScimPage<ScimUser>> {
        self.read(self.inner.scim_users(query)).await
    }

    async fn scim_groups(&self, query: &ScimQuery, members: bool) -> Result<ScimPage<ScimGroup>> {
        self.read(self.inner.scim_groups(query, members)).await
    }

    async fn scim_groups_of(&self, user_id: &str) -> Result<Vec<(String, String)>> {
        self.read(self.inner.scim_groups_of(user_id)).await
    }

    /// Loading the whole directory (at start, on a resync) takes what the directory takes,
    /// as loading the check index does.
    async fn scim_directory(&self) -> Result<ScimSnapshot> {
        self.inner.scim_directory().await
    }

    async fn github_claim_delivery(&self, delivery_id: &str, event: &str, at: Timestamp) -> Result<bool> {
        self.write(self.inner.github_claim_delivery(delivery_id, event, at))
            .await
    }

    async fn github_release_delivery(&self, delivery_id: &str) -> Result<()> {
        self.write(self.inner.github_release_delivery(delivery_id)).await
    }

    async fn github_track_deployment(&self, deployment: &GithubDeployment) -> Result<bool> {
        self.write(self.inner.github_track_deployment(deployment)).await
    }

    async fn github_deployment(&self, request_id: &str) -> Result<Option<GithubDeployment>> {
        self.read(self.inner.github_deployment(request_id)).await
    }

    async fn github_waiting(&self, limit: u32) -> Result<Vec<GithubDeployment>> {
        self.read(self.inner.github_waiting(limit)).await
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
        self.write(self.inner.github_answer(request_id, answer, comment, at, calls, event))
            .await
    }

    async fn github_enqueue(&self, calls: &[NewGithubCall]) -> Result<()> {
        self.write(self.inner.github_enqueue(calls)).await
    }

    async fn github_lease_calls(
        &self,
        now: Timestamp,
        holder: &str,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<GithubCall>> {
        self.write(self.inner.github_lease_calls(now, holder, lease_until, limit))
            .await
    }

    async fn github_call_done(&self, id: i64, at: Timestamp, event: Option<&NewEvent>) -> Result<()> {
        self.write(self.inner.github_call_done(id, at, event)).await
    }

    async fn github_call_retry(&self, id: i64, holder: &str, next_due: Timestamp, error: &str) -> Result<()> {
        self.write(self.inner.github_call_retry(id, holder, next_due, error))
            .await
    }

    async fn github_forget_deliveries(&self, before: Timestamp) -> Result<u64> {
        self.write(self.inner.github_forget_deliveries(before)).await
    }

    async fn github_release_call_leases(&self, holder: &str) -> Result<u64> {
        self.write(self.inner.github_release_call_leases(holder)).await
    }

    async fn github_calls(&self, request_id: &str) -> Result<Vec<GithubCall>> {
        self.read(self.inner.github_calls(request_id)).await
    }

    fn divergence(&self) -> Option<String> {
        self.inner.divergence()
    }
}
