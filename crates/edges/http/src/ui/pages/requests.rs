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
/// approved each item they may approve. Owed only where the approval would count towards some
/// step (`machine::approval_place`, the rule the approval is counted by): a step already full,
/// or a workflow no longer in the policy, offers no Approve that would then be refused or count
/// for nothing.
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
    let mut approved_any = false;
    for (i, item) in (0..request.item_count()).filter_map(|i| request.item_request(i).map(|item| (i, item))) {
        if policy.may_review(who, &item, at).is_ok() {
            if jitgate_core::machine::approval_place(request, i, who).is_some() {
                return ReviewerPart::Owed;
            }
            if item.approvals.iter().any(|a| a.reviewer == who.principal) {
                approved_any = true;
            }
        }
    }
    if approved_any {
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

/// A moment as a page shows it: `<time datetime="{{ at }}">{{ text }}</time>`, the text in
/// UTC (right without JavaScript), which `static/time.js` rewrites to the reader's local time.
pub struct Moment {
    /// RFC 3339, UTC.
    pub(super) at: String,
    /// `2026-12-04 14:10:00 UTC`, or `14:10 UTC` for [`Moment::clock`].
    pub(super) text: String,
}

impl Moment {
    pub(super) fn new(t: Timestamp) -> Moment {
        Moment {
            at: t.to_rfc3339(),
            text: when(t),
        }
    }

    /// Only the time of day (`14:10 UTC`): "until about 14:10" within the next hours.
    pub(super) fn clock(t: Timestamp) -> Moment {
        Moment {
            at: t.to_rfc3339(),
            text: t.format("%H:%M UTC").to_string(),
        }
    }

    /// A moment ahead of `at`, as "until about" says it: the time of day when it falls on the
    /// same UTC day, the date with it when not (read without JavaScript, `14:10 UTC` alone
    /// would say the wrong day).
    pub(super) fn ahead(t: Timestamp, at: Timestamp) -> Moment {
        if t.date_naive() == at.date_naive() {
            Moment::clock(t)
        } else {
            Moment {
                at: t.to_rfc3339(),
                text: t.format("%Y-%m-%d %H:%M UTC").to_string(),
            }
        }
    }
}

pub struct ApprovalRow {
    pub(super) reviewer: String,
    pub(super) comment: Option<String>,
    pub(super) at: Moment,
}

/// Who denied or cancelled a request, when, and their word.
pub struct ClosedRow {
    pub(super) status: String,
    pub(super) by: String,
    pub(super) at: Moment,
    pub(super) comment: Option<String>,
}

/// An item's grant on a multi-item request's page.
pub struct ItemGrant {
    pub(super) status: String,
    pub(super) id: String,
    pub(super) starts: Moment,
    pub(super) ends: Moment,
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
    /// The further items' payload hashes (`payload_sha256_{i}`, item `i`), sent with an
    /// approval as the first item's is: each checked against its own item's payload.
    pub(super) items_payload_sha256: Vec<(usize, String)>,
    /// Only an action-bound request's payload is enforced, and shown as its exact action.
    pub(super) action_bound: bool,
    pub(super) single_use: bool,
    pub(super) duration: String,
    pub(super) status: String,
    pub(super) break_glass: bool,
    pub(super) created_at: String,
    pub(super) created_at_text: String,
    pub(super) pending_left: String,
    /// When it expires unless decided (RFC 3339), the moment behind `pending_left`.
    pub(super) pending_expires_at: String,
    pub(super) approvals: Vec<ApprovalRow>,
    pub(super) needs: String,
    pub(super) closed: Option<ClosedRow>,
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
    /// What approving does, for a reviewer whose approval is owed. Its place, window and
    /// "then" lines (`#if-approve-live`) are refreshed with `#state`; the requester's history
    /// is read only when the page is loaded.
    pub(super) if_approved: Option<ApproveBox>,
}

/// One item of a multi-item request on its page.
pub struct ItemRow {
    pub(super) resource: String,
    pub(super) action: String,
    pub(super) payload: Option<PayloadBox>,
    pub(super) action_bound: bool,
    pub(super) approvals: String,
    pub(super) needs: String,
    pub(super) grant: Option<ItemGrant>,
}

/// The "If you approve" box: what a reviewer's approval does, told before they give it.
pub struct ApproveBox {
    /// "alice gets read on prod-db", one per item.
    pub(super) access: Vec<AccessLine>,
    /// "From the moment you approve, for 30m: until about" or "From when the last approval
    /// lands, for 30m: until", then `until`, then `until_note` (" at the earliest" or "").
    pub(super) window: String,
    pub(super) until: Moment,
    pub(super) until_note: &'static str,
    /// "Yours is the 1st of 2 from sre.", one per item the approval counts towards.
    pub(super) places: Vec<String>,
    /// "Once you approve, alice has access at once." or "After yours it still needs ...".
    pub(super) then: String,
    /// What the places say, sent with the approval (`expect_places`): per item the approvals
    /// its step already had, `-` where the approval counts for nothing; the approval is
    /// refused if another approval moved it before it is saved.
    pub(super) expect_places: String,
    /// Whether `then` told the reviewer theirs is the last approval (`expect_last`).
    pub(super) expect_last: bool,
    /// The requester's groups and history were read (the page's load, not its refreshes).
    pub(super) with_history: bool,
    /// "alice is in dev." or why the groups cannot be told.
    pub(super) groups: String,
    /// "alice's recent requests for prod-db".
    pub(super) recent_heading: String,
    /// The requester's recent requests for the same resources, newest first.
    pub(super) recent: Vec<RecentRow>,
    /// What `recent` was taken from, in words.
    pub(super) recent_scope: String,
    /// The exact payload of each action-bound item, escaped, with its SHA-256 in full.
    pub(super) payloads: Vec<BoundPayload>,
}

/// One thing an approval gives.
pub struct AccessLine {
    pub(super) holder: String,
    pub(super) action: String,
    pub(super) resource: String,
    /// The workflow's description (`description` in the policy), escaped.
    pub(super) description: Option<String>,
    pub(super) single_use: bool,
    pub(super) action_bound: bool,
}

/// An action-bound item's payload: the approval is for exactly this.
pub struct BoundPayload {
    pub(super) what: String,
    pub(super) payload: PayloadBox,
    /// The hash the approval is bound to and the grant enforces (the item's own); `None`
    /// when the stored request has none (written behind jitgate's back).
    pub(super) sha256: Option<String>,
    /// The stored payload does not hash to `sha256`, or has no hash: what is shown is then not
    /// what would be enforced, and the reviewer is told so.
    pub(super) mismatch: bool,
}

/// One of the requester's earlier requests.
pub struct RecentRow {
    pub(super) link: String,
    pub(super) what: String,
    pub(super) status: String,
    pub(super) at: Moment,
}

/// How many of the requester's latest requests (that the viewer may see) are looked through
/// for the same resources: a bound on the page's cost, said on the page.
const RECENT_SCANNED: u32 = 25;
/// How many of them the box lists.
const RECENT_SHOWN: usize = 5;

/// "1st", "2nd", "3rd", "4th", "11th", "22nd".
pub(super) fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// "sre", "sre and security", "sre, security and dba".
pub(super) fn and_list(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// A step's group as people say it: `user:carol` is carol.
fn step_whom(group: &str) -> &str {
    group
        .strip_prefix(jitgate_core::Step::PRINCIPAL_PREFIX)
        .unwrap_or(group)
}

/// "1 approval from security, 2 approvals from sre".
fn steps_text(steps: &[jitgate_core::Step]) -> String {
    steps
        .iter()
        .map(|s| format!("{} from {}", approvals(s.approvals), step_whom(&s.group)))
        .collect::<Vec<_>>()
        .join(" and ")
}

/// The banner after filing: whom the request waits for, or that access was granted at once.
pub(super) fn sent_text(request: &jitgate_core::Request, at: Timestamp) -> String {
    match request.status_at(at) {
        RequestStatus::Approved if request.break_glass => {
            "Granted at once: break-glass. A review is owed afterwards.".into()
        }
        RequestStatus::Approved => "Granted at once.".into(),
        RequestStatus::Pending => {
            let mut whom: Vec<String> = Vec::new();
            for item in (0..request.item_count()).filter_map(|i| request.item_request(i)) {
                for step in item.missing_approvals() {
                    let name = step_whom(&step.group).to_string();
                    if !whom.contains(&name) {
                        whom.push(name);
                    }
                }
            }
            if whom.is_empty() {
                "Request sent.".into()
            } else {
                format!("Request sent to {}.", and_list(&whom))
            }
        }
        _ => "Request sent.".into(),
    }
}

/// What approving `request` does, as `caller` (whose approval is owed) would give it: the
/// same rules the approval is then counted by (`machine::approval_place`), the policy's
/// workflows, the directory, and the requests the caller may see.
///
/// `with_history`: read the requester's recent requests (a store scan); not on the page's own
/// refreshes, which keep only `#state` and `#if-approve-live`.
async fn approve_box(
    app: &App,
    caller: &Caller,
    request: &jitgate_core::Request,
    at: Timestamp,
    with_history: bool,
) -> Result<ApproveBox, ApiError> {
    let who = caller.who();
    let policy = app.policy();
    let holder = jitgate_core::model::requester_text(&request.requester, request.on_behalf_of.as_deref());
    let items: Vec<jitgate_core::Request> = (0..request.item_count())
        .filter_map(|i| request.item_request(i))
        .collect();
    let several = items.len() > 1;
    let mut access = Vec::new();
    let mut places = Vec::new();
    let mut payloads = Vec::new();
    let mut still: Vec<jitgate_core::Step> = Vec::new();
    let mut expect_places: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let workflow = policy.rules().workflow(&item.resource, &item.action).ok();
        access.push(AccessLine {
            holder: holder.clone(),
            action: item.action.clone(),
            resource: item.resource.clone(),
            description: workflow.and_then(|w| w.description.as_deref()).map(shown),
            single_use: item.requirement.single_use,
            action_bound: item.requirement.action_bound,
        });
        let what = format!("{} on {}", item.action, item.resource);
        // Only an item the policy lets this reviewer approve counts their approval, where
        // the state machine counts it.
        let place = policy
            .may_review(who, item, at)
            .ok()
            .and_then(|()| jitgate_core::machine::approval_place(request, i, who));
        expect_places.push(place.as_ref().map_or_else(|| "-".to_string(), |p| p.given.to_string()));
        match place {
            Some(place) => {
                let mut line = format!(
                    "Yours is the {} of {} from {}",
                    ordinal(place.given + 1),
                    place.of,
                    step_whom(&place.group)
                );
                if place.as_backup {
                    line.push_str(", as a backup reviewer (nobody decided in time)");
                }
                line.push('.');
                if several {
                    line = format!("For {what}: {line}");
                }
                places.push(line);
                still.extend(place.then_needs);
            }
            None => still.extend(item.missing_approvals()),
        }
        if item.requirement.action_bound {
            // Shown whenever there is a payload: the facts send the reviewer here for it.
            if let Some(payload) = &item.payload {
                let payload = PayloadBox::new(payload);
                let sha256 = item.payload_sha256.clone();
                payloads.push(BoundPayload {
                    what,
                    mismatch: !sha256
                        .as_deref()
                        .is_some_and(|h| payload.shown.sha256.eq_ignore_ascii_case(h)),
                    payload,
                    sha256,
                });
            }
        }
    }
    let last = still.is_empty();
    let duration = jitgate_core::format_duration(request.duration);
    let (window, until_note) = if last {
        (format!("From the moment you approve, for {duration}: until about"), "")
    } else {
        (
            format!("From when the last approval lands, for {duration}: until"),
            " at the earliest",
        )
    };
    let then = if last {
        format!("Yours is the last approval it needs: {holder} has access at once.")
    } else {
        format!("After yours it still needs {}.", steps_text(&merged(still)))
    };
    // The person an agent acts for: the agent's groups are theirs.
    let subject = request.agent_person().unwrap_or(&request.requester);
    if !with_history {
        return Ok(ApproveBox {
            access,
            window,
            until: Moment::ahead(at + request.duration.as_delta(), at),
            until_note,
            places,
            then,
            expect_places: expect_places.join(","),
            expect_last: last,
            with_history: false,
            groups: String::new(),
            recent_heading: String::new(),
            recent: Vec::new(),
            recent_scope: String::new(),
            payloads,
        });
    }
    let groups = match app.known_identity(subject) {
        Ok(Some(identity)) if identity.groups.is_empty() => format!("{} is in no group.", shown(subject)),
        Ok(Some(identity)) => {
            let names: Vec<String> = identity.groups.iter().map(|g| shown(g)).collect();
            format!("{} is in {}.", shown(subject), and_list(&names))
        }
        Ok(None) => format!(
            "{} is not in jitgate's directory: their groups came with their sign-in and are not kept.",
            shown(subject)
        ),
        Err(e) => format!("The directory blocks {}: {}", shown(subject), shown(&e.to_string())),
    };
    let mut resources: Vec<&str> = Vec::new();
    for item in &items {
        if !resources.contains(&item.resource.as_str()) {
            resources.push(&item.resource);
        }
    }
    let filter = RequestFilter {
        requester: Some(request.requester.clone()),
        limit: RECENT_SCANNED,
        ..RequestFilter::default()
    };
    let (latest, _) = app.visible_requests(caller, filter, at).await?;
    let recent = latest
        .iter()
        .filter(|r| r.id != request.id)
        .filter(|r| {
            (0..r.item_count())
                .filter_map(|i| r.item_request(i))
                .any(|i| resources.contains(&i.resource.as_str()))
        })
        .take(RECENT_SHOWN)
        .map(|r| RecentRow {
            link: request_link(&r.id, None),
            what: match r.items.len() {
                0 => format!("{} on {}", r.action, r.resource),
                n => format!("{} on {} and {n} more", r.action, r.resource),
            },
            status: r.status_at(at).as_str().to_string(),
            at: Moment::new(r.created_at),
        })
        .collect();
    Ok(ApproveBox {
        access,
        window,
        until: Moment::ahead(at + request.duration.as_delta(), at),
        until_note,
        places,
        then,
        expect_places: expect_places.join(","),
        expect_last: last,
        with_history: true,
        groups,
        recent,
        recent_heading: format!(
            "{}'s recent requests for {}",
            shown(&request.requester),
            and_list(&resources.iter().map(|r| shown(r)).collect::<Vec<_>>())
        ),
        recent_scope: format!(
            "Looked for among the last {RECENT_SCANNED} of {}'s requests that you may see.",
            shown(&request.requester)
        ),
        payloads,
    })
}

/// Steps of the same group as one, keeping the most any item needs: one reviewer's approval
/// counts towards every item they may approve, so two items each needing 1 from sre need
/// 1 sre more, not 2.
fn merged(steps: Vec<jitgate_core::Step>) -> Vec<jitgate_core::Step> {
    let mut out: Vec<jitgate_core::Step> = Vec::new();
    for step in steps {
        match out.iter_mut().find(|s| s.group == step.group) {
            Some(s) => s.approvals = s.approvals.max(step.approvals),
            None => out.push(step),
        }
    }
    out
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

#[allow(clippy::too_many_arguments)] // axum extractors, one per thing the page reads
pub async fn request(
    State(app): State<Arc<App>>,
    Extension(csrf): Extension<CsrfToken>,
    caller: Allowed<op::ReadRequests>,
    Path(id): Path<String>,
    Query(back): Query<ReturnQuery>,
    Extension(flash): Extension<FlashSlot>,
    headers: HeaderMap,
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
    let closed = v.closed_by.as_ref().map(|c| ClosedRow {
        status: v.status.clone(),
        by: c.by.clone(),
        at: Moment::new(c.at),
        comment: c.comment.as_deref().map(shown),
    });
    // htmx's refresh of the live part keeps only `#state` and the box's `#if-approve-live`:
    // the requester's history is not read there.
    let refresh = headers.contains_key("hx-request");
    let if_approved = if can_review {
        Some(approve_box(&app, &caller, &request, at, !refresh).await?)
    } else {
        None
    };
    let items_payload_sha256 = if can_review {
        (1..request.item_count())
            .filter_map(|i| {
                request
                    .item_request(i)
                    .and_then(|item| item.payload_sha256)
                    .map(|h| (i, h))
            })
            .collect()
    } else {
        Vec::new()
    };
    let r = RequestDetail {
        id: v.id.clone(),
        resource: v.resource.clone(),
        action: v.action.clone(),
        requester: requester_shown(&v),
        reason: shown(&v.reason),
        payload: v.payload.as_deref().map(PayloadBox::new),
        payload_sha256: v.payload_sha256.clone(),
        items_payload_sha256,
        action_bound: v.action_bound,
        single_use: v.single_use,
        duration: v.duration.clone(),
        status: v.status.clone(),
        break_glass: v.break_glass,
        created_at: v.created_at.to_rfc3339(),
        created_at_text: when(v.created_at),
        pending_left: left(v.pending_expires_at, at),
        pending_expires_at: v.pending_expires_at.to_rfc3339(),
        approvals: v
            .approvals
            .iter()
            .map(|a| ApprovalRow {
                reviewer: a.reviewer.clone(),
                comment: a.comment.as_deref().map(shown),
                at: Moment::new(a.at),
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
                grant: i.grant.as_ref().map(|g| ItemGrant {
                    status: g.status.clone(),
                    id: g.id.clone(),
                    starts: Moment::new(g.starts_at),
                    ends: Moment::new(g.expires_at),
                }),
            })
            .collect(),
        if_approved,
    };
    let mut chrome = Chrome::for_caller(&caller, "inbox", &csrf).with_flash(&flash);
    if flash.0 == Some(Flash::Sent) {
        // Right after filing: whom it waits for, or that it was granted at once.
        chrome.flash = Some(sent_text(&request, at));
    }
    Ok(render(&RequestPage { chrome, r }))
}

#[derive(Deserialize)]
pub struct DecisionForm {
    pub(super) comment: Option<String>,
    /// The payload hash the page showed: the approval is refused if the request's differs.
    pub(super) payload_sha256: Option<String>,
    /// Where the "If you approve" box said the approval lands (`ApproveBox::expect_places`).
    pub(super) expect_places: Option<String>,
    /// Whether the box said it is the last approval: `true` or `false`.
    pub(super) expect_last: Option<String>,
    /// The further items' payload hashes, `payload_sha256_{i}` for item `i`.
    #[serde(flatten)]
    pub(super) more: std::collections::HashMap<String, String>,
}

impl DecisionForm {
    /// What the page showed, which the approval is bound to (`machine::Shown`); a field that
    /// is not what the page sends is refused (422), never guessed at.
    fn shown(&self) -> Result<jitgate_core::machine::Shown, ApiError> {
        let hash = |h: Option<&String>| h.map(|h| h.trim().to_string()).filter(|h| !h.is_empty());
        let mut payload_sha256 = vec![hash(self.payload_sha256.as_ref())];
        for (name, value) in &self.more {
            let Some(i) = name.strip_prefix("payload_sha256_") else {
                continue;
            };
            let i: usize = i
                .parse()
                .ok()
                .filter(|i| (1..jitgate_core::model::MAX_ITEMS).contains(i))
                .ok_or_else(|| ApiError::Invalid(format!("{}: no such item", shown(name))))?;
            if payload_sha256.len() <= i {
                payload_sha256.resize(i + 1, None);
            }
            if let Some(slot) = payload_sha256.get_mut(i) {
                *slot = hash(Some(value));
            }
        }
        let places = match self.expect_places.as_deref().filter(|p| !p.is_empty()) {
            None => None,
            Some(text) => {
                let parts: Vec<&str> = text.split(',').collect();
                if parts.len() > jitgate_core::model::MAX_ITEMS {
                    return Err(ApiError::Invalid("expect_places: more places than items".into()));
                }
                let places = parts
                    .iter()
                    .map(|p| match *p {
                        "-" => Ok(None),
                        n => n.parse::<u32>().map(Some),
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| {
                        ApiError::Invalid(format!(
                            "expect_places: '{}' is not a list of counts",
                            shown(&text.chars().take(80).collect::<String>())
                        ))
                    })?;
                Some(places)
            }
        };
        let last = match self.expect_last.as_deref() {
            None | Some("") => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(other) => {
                return Err(ApiError::Invalid(format!(
                    "expect_last: '{}' is neither true nor false",
                    shown(&other.chars().take(80).collect::<String>())
                )))
            }
        };
        Ok(jitgate_core::machine::Shown {
            payload_sha256,
            places,
            last,
        })
    }
}

/// Approve, deny or cancel a request, or review a break-glass one; back to its page.
pub async fn decide(
    State(app): State<Arc<App>>,
    caller: Allowed<op::ReadRequests>,
    Path((id, decision)): Path<(String, String)>,
    Form(form): Form<DecisionForm>,
) -> Result<Response, ApiError> {
    let comment = form
        .comment
        .as_deref()
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty());
    let who = caller.who().clone();
    // The same operations, and the same table, as the API's endpoints.
    let done = match decision.as_str() {
        "approve" => {
            let caller = crate::auth::caller_for::<op::ApproveRequest>(who)?;
            let shown = form.shown()?;
            app.approve_shown(&caller, &id, comment, shown).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use jitgate_core::machine::{self, NewIds};
    use jitgate_core::{Admission, Ask, DurationSecs, Identity, Requirement, Step};

    #[test]
    fn approvals_are_counted_as_people_say_it() {
        let said: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101, 111].map(ordinal).into();
        assert_eq!(
            said,
            ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "101st", "111th"]
        );
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(and_list(&names(&[])), "");
        assert_eq!(and_list(&names(&["sre"])), "sre");
        assert_eq!(and_list(&names(&["sre", "security"])), "sre and security");
        assert_eq!(and_list(&names(&["sre", "security", "dba"])), "sre, security and dba");
    }

    fn step(group: &str, approvals: u32) -> Step {
        Step {
            group: group.into(),
            approvals,
        }
    }

    #[test]
    fn one_approval_counts_for_every_item_so_needs_merge_by_the_most() {
        let merged = merged(vec![step("sre", 1), step("security", 1), step("sre", 2)]);
        assert_eq!(merged, vec![step("sre", 2), step("security", 1)]);
        assert_eq!(
            steps_text(&[step("sre", 2), step("user:carol", 1)]),
            "2 approvals from sre and 1 approval from carol"
        );
    }

    fn filed(steps: Vec<Step>, break_glass: bool) -> jitgate_core::Request {
        let alice = Identity::user("alice", &["dev"]);
        let ask = Ask {
            resource: "prod-db",
            action: "write",
            duration: Some(DurationSecs(600)),
            reason: "OPS-1",
            payload: None,
            break_glass,
        };
        let admission = Admission {
            requirement: Requirement {
                steps,
                single_use: false,
                action_bound: false,
                pending_ttl: DurationSecs(3600),
                review_groups: vec!["sre".into()],
                alert: None,
                providers: Vec::new(),
                escalation: None,
            },
            duration: DurationSecs(600),
            decided_by: None,
        };
        let ids = NewIds {
            request_id: "req_1".into(),
            grant_id: "grt_1".into(),
        };
        machine::file(&alice, &ask, admission, ids, now()).request
    }

    #[test]
    fn the_sent_banner_names_whom_the_request_waits_for() {
        let at = now();
        assert_eq!(
            sent_text(&filed(vec![step("sre", 2)], false), at),
            "Request sent to sre."
        );
        assert_eq!(
            sent_text(
                &filed(vec![step("sre", 1), step("security", 1), step("sre", 1)], false),
                at
            ),
            "Request sent to sre and security."
        );
        assert_eq!(
            sent_text(&filed(vec![step("user:carol", 1)], false), at),
            "Request sent to carol."
        );
        assert_eq!(sent_text(&filed(vec![], false), at), "Granted at once.");
        assert_eq!(
            sent_text(&filed(vec![], true), at),
            "Granted at once: break-glass. A review is owed afterwards."
        );
        // Decided otherwise by the time the page shows (expired): no claim about whom.
        let later = at + chrono::TimeDelta::hours(2);
        assert_eq!(sent_text(&filed(vec![step("sre", 1)], false), later), "Request sent.");
    }

    #[test]
    fn a_moment_is_written_in_utc_for_the_script_to_make_local() {
        let t = chrono::DateTime::from_timestamp(1_796_394_600, 0).unwrap_or_default();
        let m = Moment::new(t);
        assert_eq!(m.at, "2026-12-04T14:30:00+00:00");
        assert_eq!(m.text, "2026-12-04 14:30:00 UTC");
        assert_eq!(Moment::clock(t).text, "14:30 UTC");
    }

    #[test]
    fn until_about_names_the_day_when_the_end_falls_on_another_utc_day() {
        let at = chrono::DateTime::from_timestamp(1_796_394_600, 0).unwrap_or_default(); // 14:30
        let same_day = at + chrono::TimeDelta::hours(2);
        assert_eq!(Moment::ahead(same_day, at).text, "16:30 UTC");
        let next_day = at + chrono::TimeDelta::hours(12);
        assert_eq!(Moment::ahead(next_day, at).text, "2026-12-05 02:30 UTC");
        assert_eq!(Moment::ahead(next_day, at).at, "2026-12-05T02:30:00+00:00");
    }
}
