//! The inbox, one's own requests, a request's page and deciding on it.

use super::*;

/// Text a person entered, as a reviewer must see it: control characters, bidirectional
/// overrides and invisible characters written as visible escapes (askama then escapes HTML),
/// so the page can never show something other than what is stored and enforced.
pub(super) fn shown(text: &str) -> String {
    jitgate_core::text::escape_for_display(text).into_owned()
}

/// A payload on a request's page: shown escaped, a long one cut with its size and hash, and
/// the whole of it (escaped) one click away in a `<details>`.
pub struct PayloadBox {
    pub(super) shown: PayloadShown,
    pub(super) full: Option<String>,
}

impl PayloadBox {
    pub(super) fn new(payload: &str) -> PayloadBox {
        let head = PayloadShown::new(payload);
        let full = (!head.complete).then(|| shown(payload));
        PayloadBox { shown: head, full }
    }
}

/// The requester as people see it: `claude-alice (agent for alice)` for an agent.
pub(super) fn requester_shown(v: &RequestView) -> String {
    jitgate_core::model::requester_text(&v.requester, v.on_behalf_of.as_deref())
}

/// What a reviewer has left to do on a pending request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReviewerPart {
    /// None of its items is theirs to approve.
    None,
    /// They may approve an item they have not approved yet.
    Owed,
    /// They approved every item they may approve (a multi-step request waits for others):
    /// approving again would be refused, so no Approve button is offered.
    Given,
}

/// The caller's part in deciding `request`: never their own, nor their agent's, nor an
/// agent's; of a multi-item request, a reviewer of any item is waited for until they have
/// approved each item they may approve.
pub(super) fn reviewer_part(
    policy: &jitgate_policy::Policy,
    who: &jitgate_core::Identity,
    request: &jitgate_core::Request,
    at: Timestamp,
) -> ReviewerPart {
    let own = request.requester == who.principal || request.on_behalf_of.as_deref() == Some(who.principal.as_str());
    if own || who.is_agent() {
        return ReviewerPart::None;
    }
    let mut reviews_any = false;
    for item in (0..request.item_count()).filter_map(|i| request.item_request(i)) {
        if policy.may_review(who, &item, at).is_ok() {
            reviews_any = true;
            if !item.approvals.iter().any(|a| a.reviewer == who.principal) {
                return ReviewerPart::Owed;
            }
        }
    }
    if reviews_any {
        ReviewerPart::Given
    } else {
        ReviewerPart::None
    }
}

pub(super) fn needs_text(v: &RequestView) -> String {
    needs_list(&v.needs)
}

/// "1 approval", "2 approvals": how many a step still needs, as a person says it.
pub(super) fn approvals(n: u32) -> String {
    jitgate_core::text::counted(n, "approval", "approvals")
}

pub(super) fn needs_list(needs: &[crate::api::NeedView]) -> String {
    needs
        .iter()
        .map(|n| match n.group.strip_prefix(jitgate_core::Step::PRINCIPAL_PREFIX) {
            Some(person) => format!("{} from {person}", approvals(n.approvals)),
            None => format!("{} from {}", approvals(n.approvals), n.group),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// "3 min ago", "2 h ago".
pub(super) fn ago(then: Timestamp, at: Timestamp) -> String {
    let secs = (at - then).num_seconds().max(0);
    match secs {
        0..=59 => "just now".into(),
        60..=3599 => format!("{} min ago", secs / 60),
        3600..=86_399 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86_400),
    }
}

/// "1h 5m", "42s": what is left until `until`.
pub(super) fn left(until: Timestamp, at: Timestamp) -> String {
    let secs = (until - at).num_seconds();
    if secs <= 0 {
        return "ended".into();
    }
    let secs = u64::try_from(secs).unwrap_or(0);
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s}s"),
        _ => format!("{h}h {m}m"),
    }
}

pub(super) fn when(t: Timestamp) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

pub struct ApprovalRow {
    pub(super) reviewer: String,
    pub(super) comment: Option<String>,
    pub(super) at: String,
}

pub struct RequestDetail {
    pub(super) id: String,
    pub(super) resource: String,
    pub(super) action: String,
    pub(super) requester: String,
    pub(super) reason: String,
    pub(super) payload: Option<PayloadBox>,
    /// The payload's SHA-256, sent with an approval so it approves what this page showed.
    pub(super) payload_sha256: Option<String>,
    /// Only an action-bound request's payload is enforced, and shown as its exact action.
    pub(super) action_bound: bool,
    pub(super) single_use: bool,
    pub(super) duration: String,
    pub(super) status: String,
    pub(super) break_glass: bool,
    pub(super) created_at: String,
    pub(super) created_at_text: String,
    pub(super) pending_left: String,
    pub(super) approvals: Vec<ApprovalRow>,
    pub(super) needs: String,
    pub(super) closed: Option<String>,
    pub(super) grant: Option<GrantRow>,
    pub(super) can_review: bool,
    /// The viewer approved already; the request waits for other reviewers.
    pub(super) you_approved: bool,
    pub(super) can_cancel: bool,
    /// A break-glass request whose after-the-fact review this viewer may give.
    pub(super) can_post_review: bool,
    pub(super) live: bool,
    /// A multi-item request's items, each as the reviewer must see it before approving.
    pub(super) items: Vec<ItemRow>,
    /// This page's own address, for the live part to refresh from (keeps `return_to`).
    pub(super) link: String,
    /// The app to go back to, once access is granted (a forward-auth 403 led here).
    pub(super) continue_to: Option<String>,
}

/// One item of a multi-item request on its page.
pub struct ItemRow {
    pub(super) resource: String,
    pub(super) action: String,
    pub(super) payload: Option<PayloadBox>,
    pub(super) action_bound: bool,
    pub(super) approvals: String,
    pub(super) needs: String,
    pub(super) grant: String,
}

#[derive(Template)]
#[template(path = "request.html")]
pub(super) struct RequestPage {
    pub(super) chrome: Chrome,
    pub(super) r: RequestDetail,
}

#[derive(Debug, Default, Deserialize)]
pub struct ReturnQuery {
    pub(super) return_to: Option<String>,
}

/// `/ui/requests/{id}`, with the app to go back to once granted.
pub(super) fn request_link(id: &str, return_to: Option<&str>) -> String {
    match return_to {
        Some(url) => format!("/ui/requests/{}?return_to={}", encode(id), encode(url)),
        None => format!("/ui/requests/{}", encode(id)),
    }
}

pub async fn request(
    State(app): State<Arc<App>>,
    Extension(csrf): Extension<CsrfToken>,
    caller: Allowed<op::ReadRequests>,
    Path(id): Path<String>,
    Query(back): Query<ReturnQuery>,
    Extension(flash): Extension<FlashSlot>,
) -> Result<Response, ApiError> {
    let request = app.visible_request(&caller, &id).await?;
    let at = now();
    let who = caller.who();
    let v = RequestView::new(&request, at, &who.principal);
    let pending = request.status_at(at) == RequestStatus::Pending;
    // Of a multi-item request, a reviewer of any item may approve (their items) or deny,
    // until they have approved each item they may.
    let policy = app.policy();
    let own = request.requester == who.principal || request.on_behalf_of.as_deref() == Some(who.principal.as_str());
    let part = if pending {
        reviewer_part(&policy, who, &request, at)
    } else {
        ReviewerPart::None
    };
    let can_review = part == ReviewerPart::Owed;
    let can_revoke = authz::reach(who, Operation::RevokeGrant).covers(who, &request);
    // Access is live: the grant, or of a multi-item request every item's grant, is active.
    let granted = v.grant.as_ref().is_some_and(|g| g.status == "active")
        || (!v.items.is_empty()
            && v.items
                .iter()
                .all(|i| i.grant.as_ref().is_some_and(|g| g.status == "active")));
    let return_to = kept_return_to(&app, back.return_to.as_deref()).ok().flatten();
    let closed = v.closed_by.as_ref().map(|c| {
        let mut text = format!("{} by {} at {}", v.status, c.by, when(c.at));
        if let Some(comment) = &c.comment {
            text.push_str(&format!(": “{}”", shown(comment)));
        }
        text
    });
    let r = RequestDetail {
        id: v.id.clone(),
        resource: v.resource.clone(),
        action: v.action.clone(),
        requester: requester_shown(&v),
        reason: shown(&v.reason),
        payload: v.payload.as_deref().map(PayloadBox::new),
        payload_sha256: v.payload_sha256.clone(),
        action_bound: v.action_bound,
        single_use: v.single_use,
        duration: v.duration.clone(),
        status: v.status.clone(),
        break_glass: v.break_glass,
        created_at: v.created_at.to_rfc3339(),
        created_at_text: when(v.created_at),
        pending_left: left(v.pending_expires_at, at),
        approvals: v
            .approvals
            .iter()
            .map(|a| ApprovalRow {
                reviewer: a.reviewer.clone(),
                comment: a.comment.as_deref().map(shown),
                at: when(a.at),
            })
            .collect(),
        needs: needs_text(&v),
        closed,
        grant: v
            .grant
            .as_ref()
            .map(|g| GrantRow::new(g, at, can_revoke).on_request_page(&app, who, &request, at)),
        can_review,
        you_approved: part == ReviewerPart::Given,
        can_cancel: pending && own,
        can_post_review: v.review_due
            && !own
            && !who.is_agent()
            && authz::reach(who, Operation::ReviewBreakGlass) != Reach::Nothing,
        live: pending || v.grant.as_ref().is_some_and(|g| g.status == "active"),
        link: request_link(&v.id, return_to.as_deref()),
        continue_to: return_to.filter(|_| granted),
        items: v
            .items
            .iter()
            .map(|i| ItemRow {
                resource: i.resource.clone(),
                action: i.action.clone(),
                payload: i.payload.as_deref().map(PayloadBox::new),
                action_bound: i.action_bound,
                approvals: i
                    .approvals
                    .iter()
                    .map(|a| a.reviewer.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
                needs: needs_list(&i.needs),
                grant: i
                    .grant
                    .as_ref()
                    .map(|g| {
                        format!(
                            "{} {} ({} to {})",
                            g.status,
                            g.id,
                            when(g.starts_at),
                            when(g.expires_at)
                        )
                    })
                    .unwrap_or_default(),
            })
            .collect(),
    };
    Ok(render(&RequestPage {
        chrome: Chrome::for_caller(&caller, "inbox", &csrf).with_flash(&flash),
        r,
    }))
}

#[derive(Deserialize)]
pub struct DecisionForm {
    pub(super) comment: Option<String>,
    /// The payload hash the page showed: the approval is refused if the request's differs.
    pub(super) payload_sha256: Option<String>,
}

/// Approve, deny or cancel a request, or review a break-glass one; back to its page.
pub async fn decide(
    State(app): State<Arc<App>>,
    caller: Allowed<op::ReadRequests>,
    Path((id, decision)): Path<(String, String)>,
    Form(form): Form<DecisionForm>,
) -> Result<Response, ApiError> {
    let comment = form.comment.map(|c| c.trim().to_string()).filter(|c| !c.is_empty());
    let who = caller.who().clone();
    // The same operations, and the same table, as the API's endpoints.
    let done = match decision.as_str() {
        "approve" => {
            let caller = crate::auth::caller_for::<op::ApproveRequest>(who)?;
            let shown = form.payload_sha256.as_deref().filter(|h| !h.is_empty());
            app.approve_confirmed(&caller, &id, comment, shown).await?;
            Flash::Approved
        }
        "deny" => {
            let caller = crate::auth::caller_for::<op::DenyRequest>(who)?;
            app.deny(&caller, &id, comment).await?;
            Flash::Denied
        }
        "cancel" => {
            let caller = crate::auth::caller_for::<op::CancelRequest>(who)?;
            app.cancel(&caller, &id).await?;
            Flash::Cancelled
        }
        "review" => {
            let caller = crate::auth::caller_for::<op::ReviewBreakGlass>(who)?;
            app.review_break_glass(&caller, &id, comment).await?;
            Flash::Reviewed
        }
        other => return Err(ApiError::NotFound(format!("no decision '{other}'"))),
    };
    Ok(see_other_with(&format!("/ui/requests/{}", encode(&id)), done))
}
