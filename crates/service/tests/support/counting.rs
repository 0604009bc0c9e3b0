//! A store that counts every call it is asked, to show that a path does not touch the
//! database. Generated from the `Store` trait: each method counts, then delegates.

use async_trait::async_trait;
use jitgate_core::audit::{ChainReport, Checkpoint};
use jitgate_core::github::{DeploymentAnswer, GithubCall, GithubDeployment, NewGithubCall};
use jitgate_core::keys::SigningKeyRecord;
use jitgate_core::outbox::{OutboxItem, OutboxState};
use jitgate_core::scim::{DirectoryWrite, ScimGroup, ScimPage, ScimQuery, ScimSnapshot, ScimUser};
use jitgate_core::{ApiToken, AuditEvent, Grant, NewEvent, Request, Timestamp};
use jitgate_store::{AuditFilter, ChangeFeed, GrantFilter, RequestFilter, Result, SinkCursor, Store};
use parking_lot::Mutex;
use std::sync::Arc;

pub struct Counting {
    pub inner: Arc<dyn Store>,
    /// The methods called, in order.
    pub calls: Mutex<Vec<&'static str>>,
}

impl Counting {
    fn touched(&self, name: &'static str) {
        self.calls.lock().push(name);
    }
}

#[async_trait]
impl Store for Counting {
    async fn create_request(&self, request: &Request, events: &[NewEvent]) -> Result<Request> {
        self.touched("create_request");
        self.inner.create_request(request, events).await
    }

    async fn create_requests(&self, batch: &[(Request, Vec<NewEvent>)]) -> Result<()> {
        self.touched("create_requests");
        self.inner.create_requests(batch).await
    }

    async fn save_transition(&self, previous: &Request, next: &Request, events: &[NewEvent]) -> Result<Request> {
        self.touched("save_transition");
        self.inner.save_transition(previous, next, events).await
    }

    async fn append_events(&self, events: &[NewEvent]) -> Result<()> {
        self.touched("append_events");
        self.inner.append_events(events).await
    }

    async fn consume_grant(&self, grant_id: &str, used: &NewEvent, now: Timestamp) -> Result<bool> {
        self.touched("consume_grant");
        self.inner.consume_grant(grant_id, used, now).await
    }

    async fn get_request(&self, id: &str) -> Result<Option<Request>> {
        self.touched("get_request");
        self.inner.get_request(id).await
    }

    async fn get_request_by_grant(&self, grant_id: &str) -> Result<Option<Request>> {
        self.touched("get_request_by_grant");
        self.inner.get_request_by_grant(grant_id).await
    }

    async fn get_grants(&self, ids: &[String]) -> Result<Vec<Grant>> {
        self.touched("get_grants");
        self.inner.get_grants(ids).await
    }

    async fn list_requests(&self, filter: &RequestFilter, now: Timestamp) -> Result<Vec<Request>> {
        self.touched("list_requests");
        self.inner.list_requests(filter, now).await
    }

    async fn list_grants(&self, filter: &GrantFilter, now: Timestamp) -> Result<Vec<Grant>> {
        self.touched("list_grants");
        self.inner.list_grants(filter, now).await
    }

    async fn count_pending(&self, requester: &str, now: Timestamp) -> Result<u64> {
        self.touched("count_pending");
        self.inner.count_pending(requester, now).await
    }

    async fn active_grants(&self) -> Result<Vec<Grant>> {
        self.touched("active_grants");
        self.inner.active_grants().await
    }

    async fn live_grants(&self, after_id: Option<&str>, limit: u32) -> Result<Vec<jitgate_core::index::LiveGrant>> {
        self.touched("live_grants");
        self.inner.live_grants(after_id, limit).await
    }

    async fn due_requests(&self, now: Timestamp, limit: u32) -> Result<Vec<Request>> {
        self.touched("due_requests");
        self.inner.due_requests(now, limit).await
    }

    async fn audit_events(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>> {
        self.touched("audit_events");
        self.inner.audit_events(filter).await
    }

    async fn verify_audit(&self) -> Result<ChainReport> {
        self.touched("verify_audit");
        self.inner.verify_audit().await
    }

    async fn add_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()> {
        self.touched("add_checkpoint");
        self.inner.add_checkpoint(checkpoint).await
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        self.touched("checkpoints");
        self.inner.checkpoints().await
    }

    async fn archive_audit_through(&self, through: i64, event: &NewEvent) -> Result<u64> {
        self.touched("archive_audit_through");
        self.inner.archive_audit_through(through, event).await
    }

    async fn create_token(&self, token: &ApiToken, event: &NewEvent) -> Result<()> {
        self.touched("create_token");
        self.inner.create_token(token, event).await
    }

    async fn revoke_token(&self, revoked: &ApiToken, event: &NewEvent) -> Result<()> {
        self.touched("revoke_token");
        self.inner.revoke_token(revoked, event).await
    }

    async fn list_tokens(&self) -> Result<Vec<ApiToken>> {
        self.touched("list_tokens");
        self.inner.list_tokens().await
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        self.touched("signing_keys");
        self.inner.signing_keys().await
    }

    async fn rotate_signing_key(&self, new: &SigningKeyRecord, event: &NewEvent) -> Result<()> {
        self.touched("rotate_signing_key");
        self.inner.rotate_signing_key(new, event).await
    }

    async fn ssh_ca(&self) -> Result<Option<(String, String)>> {
        self.touched("ssh_ca");
        self.inner.ssh_ca().await
    }

    async fn init_ssh_ca(&self, private: &str, public: &str, event: &NewEvent) -> Result<()> {
        self.touched("init_ssh_ca");
        self.inner.init_ssh_ca(private, public, event).await
    }

    async fn due_outbox(&self, now: Timestamp, limit: u32) -> Result<Vec<OutboxItem>> {
        self.touched("due_outbox");
        self.inner.due_outbox(now, limit).await
    }

    async fn lease_outbox(
        &self,
        now: Timestamp,
        holder: &str,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<OutboxItem>> {
        self.touched("lease_outbox");
        self.inner.lease_outbox(now, holder, lease_until, limit).await
    }

    async fn release_outbox_leases(&self, holder: &str) -> Result<u64> {
        self.touched("release_outbox_leases");
        self.inner.release_outbox_leases(holder).await
    }

    async fn complete_outbox(&self, id: i64, at: Timestamp, event: Option<&NewEvent>) -> Result<()> {
        self.touched("complete_outbox");
        self.inner.complete_outbox(id, at, event).await
    }

    async fn retry_outbox(&self, id: i64, next_due: Timestamp, error: &str, event: Option<&NewEvent>) -> Result<()> {
        self.touched("retry_outbox");
        self.inner.retry_outbox(id, next_due, error, event).await
    }

    async fn outbox_states(&self, grant_ids: &[String]) -> Result<Vec<OutboxState>> {
        self.touched("outbox_states");
        self.inner.outbox_states(grant_ids).await
    }

    async fn claim_handout(&self, grant_id: &str, provider: &str, at: Timestamp) -> Result<bool> {
        self.touched("claim_handout");
        self.inner.claim_handout(grant_id, provider, at).await
    }

    async fn release_handout(&self, grant_id: &str, provider: &str) -> Result<()> {
        self.touched("release_handout");
        self.inner.release_handout(grant_id, provider).await
    }

    async fn grants_to_remind(&self, now: Timestamp, lead: chrono::TimeDelta, limit: u32) -> Result<Vec<Grant>> {
        self.touched("grants_to_remind");
        self.inner.grants_to_remind(now, lead, limit).await
    }

    async fn mark_reminded(&self, grant_id: &str, event: &NewEvent) -> Result<bool> {
        self.touched("mark_reminded");
        self.inner.mark_reminded(grant_id, event).await
    }

    async fn audit_head(&self) -> Result<i64> {
        self.touched("audit_head");
        self.inner.audit_head().await
    }

    async fn notification_cursor(&self, sink: &str) -> Result<Option<i64>> {
        self.touched("notification_cursor");
        self.inner.notification_cursor(sink).await
    }

    async fn lease_sink(&self, sink: &str, holder: &str, now: Timestamp, until: Timestamp) -> Result<bool> {
        self.touched("lease_sink");
        self.inner.lease_sink(sink, holder, now, until).await
    }

    async fn set_notification_cursor(&self, sink: &str, after_seq: i64) -> Result<()> {
        self.touched("set_notification_cursor");
        self.inner.set_notification_cursor(sink, after_seq).await
    }

    async fn sink_cursor(&self, sink: &str) -> Result<Option<SinkCursor>> {
        self.touched("sink_cursor");
        self.inner.sink_cursor(sink).await
    }

    async fn set_sink_cursor(&self, sink: &str, cursor: &SinkCursor) -> Result<()> {
        self.touched("set_sink_cursor");
        self.inner.set_sink_cursor(sink, cursor).await
    }

    async fn change_feed(&self) -> Result<Option<Box<dyn ChangeFeed>>> {
        self.touched("change_feed");
        self.inner.change_feed().await
    }

    async fn ping(&self) -> Result<()> {
        self.touched("ping");
        self.inner.ping().await
    }

    async fn ready(&self) -> Result<()> {
        self.touched("ready");
        self.inner.ready().await
    }

    fn divergence(&self) -> Option<String> {
        self.inner.divergence()
    }

    async fn accept_history(&self) -> Result<Option<String>> {
        self.touched("accept_history");
        self.inner.accept_history().await
    }

    async fn scim_write(&self, write: &DirectoryWrite) -> Result<()> {
        self.touched("scim_write");
        self.inner.scim_write(write).await
    }

    async fn scim_user(&self, id: &str) -> Result<Option<ScimUser>> {
        self.touched("scim_user");
        self.inner.scim_user(id).await
    }

    async fn scim_group(&self, id: &str) -> Result<Option<ScimGroup>> {
        self.touched("scim_group");
        self.inner.scim_group(id).await
    }

    async fn scim_users(&self, query: &ScimQuery) -> Result<ScimPage<ScimUser>> {
        self.touched("scim_users");
        self.inner.scim_users(query).await
    }

    async fn scim_groups(&self, query: &ScimQuery, members: bool) -> Result<ScimPage<ScimGroup>> {
        self.touched("scim_groups");
        self.inner.scim_groups(query, members).await
    }

    async fn scim_groups_of(&self, user_id: &str) -> Result<Vec<(String, String)>> {
        self.touched("scim_groups_of");
        self.inner.scim_groups_of(user_id).await
    }

    async fn scim_directory(&self) -> Result<ScimSnapshot> {
        self.touched("scim_directory");
        self.inner.scim_directory().await
    }

    async fn github_claim_delivery(&self, delivery_id: &str, event: &str, at: Timestamp) -> Result<bool> {
        self.touched("github_claim_delivery");
        self.inner.github_claim_delivery(delivery_id, event, at).await
    }

    async fn github_release_delivery(&self, delivery_id: &str) -> Result<()> {
        self.touched("github_release_delivery");
        self.inner.github_release_delivery(delivery_id).await
    }

    async fn github_track_deployment(&self, deployment: &GithubDeployment) -> Result<bool> {
        self.touched("github_track_deployment");
        self.inner.github_track_deployment(deployment).await
    }

    async fn github_deployment(&self, request_id: &str) -> Result<Option<GithubDeployment>> {
        self.touched("github_deployment");
        self.inner.github_deployment(request_id).await
    }

    async fn github_waiting(&self, limit: u32) -> Result<Vec<GithubDeployment>> {
        self.touched("github_waiting");
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
        self.touched("github_answer");
        self.inner
            .github_answer(request_id, answer, comment, at, calls, event)
            .await
    }

    async fn github_enqueue(&self, calls: &[NewGithubCall]) -> Result<()> {
        self.touched("github_enqueue");
        self.inner.github_enqueue(calls).await
    }

    async fn github_lease_calls(
        &self,
        now: Timestamp,
        holder: &str,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<GithubCall>> {
        self.touched("github_lease_calls");
        self.inner.github_lease_calls(now, holder, lease_until, limit).await
    }

    async fn github_call_done(&self, id: i64, at: Timestamp, event: Option<&NewEvent>) -> Result<()> {
        self.touched("github_call_done");
        self.inner.github_call_done(id, at, event).await
    }

    async fn github_call_retry(&self, id: i64, holder: &str, next_due: Timestamp, error: &str) -> Result<()> {
        self.touched("github_call_retry");
        self.inner.github_call_retry(id, holder, next_due, error).await
    }

    async fn github_forget_deliveries(&self, before: Timestamp) -> Result<u64> {
        self.touched("github_forget_deliveries");
        self.inner.github_forget_deliveries(before).await
    }

    async fn github_release_call_leases(&self, holder: &str) -> Result<u64> {
        self.touched("github_release_call_leases");
        self.inner.github_release_call_leases(holder).await
    }

    async fn github_calls(&self, request_id: &str) -> Result<Vec<GithubCall>> {
        self.touched("github_calls");
        self.inner.github_calls(request_id).await
    }
}
