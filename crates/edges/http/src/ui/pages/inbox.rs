//! The lists of requests: the inbox of what waits for the reviewer, and one's own.

use super::*;

/// One request in a list.
pub struct RequestRow {
    pub(super) id: String,
    pub(super) resource: String,
    pub(super) action: String,
    pub(super) requester: String,
    pub(super) reason: String,
    pub(super) duration: String,
    pub(super) status: String,
    pub(super) needs: String,
    pub(super) break_glass: bool,
    pub(super) created_at: String,
    /// When it was filed: the inbox's refresh keeps to what was filed before it was opened.
    pub(super) filed: Timestamp,
    pub(super) age: String,
    /// How many more items a request for several things holds beyond the one shown.
    pub(super) more_items: usize,
    /// The viewer approved every item they may approve; it waits for others.
    pub(super) you_approved: bool,
    /// The viewer may still approve or deny it: on a phone its card offers Approve and Deny.
    pub(super) decidable: bool,
    /// It binds one exact payload: approving it means reading that payload on its page, so no
    /// card approves it (the card's link leads there).
    pub(super) action_bound: bool,
    /// A break-glass access whose after-the-fact review the viewer may give, still owed.
    pub(super) review_owed: bool,
    /// A pending request's deadline: it expires then unless decided.
    pub(super) expires: Option<Deadline>,
}

/// A moment ahead, as a list shows it: the time left ("42m 10s"), with the exact moment in
/// UTC machine-readable and on hover (the pages render times on the server, in UTC).
pub struct Deadline {
    pub(super) at: String,
    pub(super) at_text: String,
    pub(super) left: String,
}

impl Deadline {
    pub(super) fn new(until: Timestamp, at: Timestamp) -> Deadline {
        Deadline {
            at: until.to_rfc3339(),
            at_text: when(until),
            left: left(until, at),
        }
    }
}

impl RequestRow {
    pub(super) fn new(v: &RequestView, at: Timestamp) -> RequestRow {
        RequestRow {
            id: v.id.clone(),
            resource: v.resource.clone(),
            action: v.action.clone(),
            requester: requester_shown(v),
            reason: shown(&v.reason),
            duration: v.duration.clone(),
            status: v.status.clone(),
            needs: needs_text(v),
            break_glass: v.break_glass,
            created_at: v.created_at.to_rfc3339(),
            filed: v.created_at,
            age: ago(v.created_at, at),
            more_items: v.items.len().saturating_sub(1),
            you_approved: false,
            decidable: false,
            action_bound: v.action_bound
                || v.payload_sha256.is_some()
                || v.items.iter().any(|i| i.action_bound || i.payload_sha256.is_some()),
            review_owed: false,
            expires: (v.status == "pending").then(|| Deadline::new(v.pending_expires_at, at)),
        }
    }
}

#[derive(Template)]
#[template(path = "requests.html")]
pub(super) struct RequestsPage {
    pub(super) chrome: Chrome,
    /// The form token the rows' Approve and Deny (phone cards) send.
    pub(super) csrf: String,
    pub(super) heading: &'static str,
    pub(super) blurb: &'static str,
    pub(super) live: Option<String>,
    /// What the live refresh sends besides its address (`hx-vals`): when the page was opened.
    pub(super) live_vals: String,
    pub(super) rows: Vec<RequestRow>,
    pub(super) empty: &'static str,
    /// The next page (older requests), when there is one.
    pub(super) older: Option<String>,
    /// The first page, when this is a later one.
    pub(super) newest: Option<String>,
    /// The inbox's requesters and how many of their requests wait (the inbox only).
    pub(super) by_requester: Option<RequesterSummary>,
    /// Never on a page's load: only its refreshes hold back what arrived since.
    pub(super) arrived: Option<Arrived>,
}

#[derive(Template)]
#[template(path = "request_rows.html")]
pub(super) struct RequestRows {
    pub(super) csrf: String,
    pub(super) rows: Vec<RequestRow>,
    pub(super) empty: &'static str,
    /// Requests that arrived since the inbox was opened, held back from the list (inserting
    /// them newest first would move the cards, and their Approve, under the reviewer's
    /// finger) and announced after it instead, with a link that shows them.
    pub(super) arrived: Option<Arrived>,
}

/// "2 new requests: show them", at the end of the refreshed list.
pub struct Arrived {
    pub(super) text: String,
    pub(super) link: String,
}

pub(super) const INBOX_EMPTY: &str = "Nothing waits for you.";
/// Requests on one page of the inbox; older ones are a link away.
pub const INBOX_PAGE: usize = 50;

/// Where a page of the inbox starts: after the request `before` (the API's cursor), or at the
/// newest.
#[derive(Deserialize, Default)]
pub struct InboxQuery {
    pub(super) before: Option<String>,
    /// Only this requester's requests (`?requester=alice`, from the summary's links).
    pub(super) requester: Option<String>,
    /// The live refresh's: when the page was opened (RFC 3339). Requests filed later are not
    /// inserted into the list, only counted.
    pub(super) upto: Option<String>,
}

/// A page's cursor (`before`) and the requester it is filtered to.
type CursorAndRequester = (Option<String>, Option<String>);

impl InboxQuery {
    /// The cursor and the requester asked for, empty ones left out; a requester that cannot be
    /// a principal's name (control, invisible or non-ASCII characters, too long) is refused
    /// before it reaches the store.
    fn parts(self) -> Result<CursorAndRequester, ApiError> {
        Ok(self.all_parts()?.0)
    }

    /// [`InboxQuery::parts`], and when the page was opened (`upto`), refused unless RFC 3339.
    fn all_parts(self) -> Result<(CursorAndRequester, Option<Timestamp>), ApiError> {
        let upto = match self.upto.as_deref().filter(|u| !u.is_empty()) {
            None => None,
            Some(text) => Some(
                chrono::DateTime::parse_from_rfc3339(text)
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .map_err(|_| {
                        ApiError::Invalid(format!(
                            "upto: '{}' is not an RFC 3339 time",
                            shown(&text.chars().take(40).collect::<String>())
                        ))
                    })?,
            ),
        };
        let before = self.before.filter(|b| !b.is_empty());
        let requester = self.requester.filter(|r| !r.is_empty());
        if let Some(problem) = requester.as_deref().and_then(jitgate_core::principal_name_problem) {
            return Err(ApiError::Invalid(format!("requester: the name {problem}")));
        }
        Ok(((before, requester), upto))
    }
}

/// Whose requests wait in the inbox, most first, so that one requester's many cannot bury
/// another's one: each a link to the inbox of theirs alone.
pub struct RequesterSummary {
    pub(super) requesters: Vec<RequesterCount>,
    /// Requesters beyond those named ("and 3 more").
    pub(super) more: usize,
    /// The count stopped at the scan's bound: there may be more than the numbers say.
    pub(super) partial: bool,
    /// The requester the list is filtered to, if any.
    pub(super) current: Option<String>,
}

pub struct RequesterCount {
    pub(super) name: String,
    pub(super) waiting: usize,
    pub(super) link: String,
    /// The list is filtered to this requester.
    pub(super) current: bool,
}

/// Whose requests wait, counted while the inbox's first page is read (the same store pages).
#[derive(Default)]
pub(super) struct Tally {
    counts: std::collections::BTreeMap<String, usize>,
    /// The scan stopped at its bound before the store's end.
    partial: bool,
}

/// A page of the pending requests the caller may approve (never their own), newest first,
/// from just before `before`, and the cursor of the next page when there may be more. With a
/// `tally`, the scan goes on past the page (within the same bound of `MAX_SCANS` store pages)
/// counting each requester's waiting requests: one scan for the page and its summary.
pub(super) async fn waiting_for(
    app: &App,
    caller: &Caller,
    before: Option<String>,
    requester: Option<&str>,
    mut tally: Option<&mut Tally>,
) -> Result<(Vec<RequestRow>, Option<String>), ApiError> {
    let at = now();
    let who = caller.who();
    let policy = app.policy();
    let mut rows = Vec::with_capacity(INBOX_PAGE);
    // Set once the page is full: where the next one starts.
    let mut page_next: Option<String> = None;
    let mut cursor = before;
    for _ in 0..MAX_SCANS {
        let filter = RequestFilter {
            status: Some(RequestStatus::Pending),
            requester: requester.map(str::to_string),
            limit: INBOX_PAGE as u32,
            before: cursor.clone(),
        };
        let (requests, next) = app.visible_requests(caller, filter, at).await?;
        for r in &requests {
            // Never one's own, nor one's agent's: neither is theirs to decide. One already
            // approved stays, marked, until the others decide.
            let part = reviewer_part(&policy, who, r, at);
            if part == ReviewerPart::None {
                continue;
            }
            if let Some(t) = tally.as_deref_mut() {
                *t.counts.entry(r.requester.clone()).or_default() += 1;
            }
            if page_next.is_some() {
                continue;
            }
            let mut row = RequestRow::new(&RequestView::new(r, at, &who.principal), at);
            row.you_approved = part == ReviewerPart::Given;
            row.decidable = part == ReviewerPart::Owed;
            rows.push(row);
            if rows.len() == INBOX_PAGE {
                page_next = Some(r.id.clone());
                if tally.is_none() {
                    return Ok((rows, page_next));
                }
            }
        }
        match next {
            Some(next) => cursor = Some(next),
            None => return Ok((rows, page_next)),
        }
    }
    if let Some(t) = tally {
        t.partial = true;
    }
    Ok((rows, page_next.or(cursor)))
}

/// The store pages by what the caller may see; whom they may review is judged here, so a page
/// of the inbox may take a few store pages to fill (bounded, and the cursor resumes the scan).
const MAX_SCANS: usize = 10;

/// How many requesters the summary names: the most waiting first, then "and K more", so that
/// on a phone the list (and the first card's Approve) stays on the first screen.
const SUMMARY_SHOWN: usize = 6;

/// The summary by requester from the counts the first page's scan took (at most `MAX_SCANS`
/// store pages of `INBOX_PAGE`, from the newest: beyond that it says "at least").
pub(super) fn requester_summary(tally: Tally, current: Option<&str>) -> RequesterSummary {
    let mut requesters: Vec<RequesterCount> = tally
        .counts
        .into_iter()
        .map(|(name, waiting)| RequesterCount {
            link: inbox_link("/ui/inbox", None, Some(&name)),
            current: current == Some(name.as_str()),
            name,
            waiting,
        })
        .collect();
    // Most waiting first; the sort is stable, so equal counts keep the map's order by name.
    requesters.sort_by_key(|c| std::cmp::Reverse(c.waiting));
    let more = requesters.len().saturating_sub(SUMMARY_SHOWN);
    requesters.truncate(SUMMARY_SHOWN);
    RequesterSummary {
        requesters,
        more,
        partial: tally.partial,
        current: current.map(str::to_string),
    }
}

/// Of the newest requests, how many are looked through for break-glass reviews owed: the
/// store has no filter for them, and such a review is owed soon after the access (its grant
/// lasts minutes), so the newest suffice.
pub(super) const REVIEW_SCAN_PAGES: usize = 4;
pub(super) const REVIEW_SCAN_PAGE: u32 = 100;

/// Whether `who` may give the after-the-fact review `request` still owes, as the state machine
/// judges it: not the one who broke the glass nor their person, not an agent, and an admin or
/// a member of one of its review groups.
pub(super) fn owes_post_review(who: &jitgate_core::Identity, request: &jitgate_core::Request) -> bool {
    if !request.review_due()
        || who.is_agent()
        || request.requester == who.principal
        || request.on_behalf_of.as_deref() == Some(who.principal.as_str())
        || authz::reach(who, Operation::ReviewBreakGlass) == Reach::Nothing
    {
        return false;
    }
    who.is_admin()
        || std::iter::once(&request.requirement)
            .chain(request.items.iter().map(|i| &i.requirement))
            .flat_map(|r| r.review_groups.iter())
            .any(|g| who.in_group(g))
}

/// The break-glass accesses among the newest requests whose review the caller owes, newest
/// first: they head the inbox's first page, whatever their status.
pub(super) async fn reviews_owed(
    app: &App,
    caller: &Caller,
    requester: Option<&str>,
) -> Result<Vec<RequestRow>, ApiError> {
    let at = now();
    let who = caller.who();
    if who.is_agent() || authz::reach(who, Operation::ReviewBreakGlass) == Reach::Nothing {
        return Ok(Vec::new());
    }
    let mut rows = Vec::new();
    let mut cursor = None;
    for _ in 0..REVIEW_SCAN_PAGES {
        let filter = RequestFilter {
            status: None,
            requester: requester.map(str::to_string),
            limit: REVIEW_SCAN_PAGE,
            before: cursor,
        };
        let (requests, next) = app.visible_requests(caller, filter, at).await?;
        for r in requests.iter().filter(|r| owes_post_review(who, r)) {
            let mut row = RequestRow::new(&RequestView::new(r, at, &who.principal), at);
            row.review_owed = true;
            rows.push(row);
        }
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(rows)
}

/// The inbox's rows (of `requester`'s requests only, when given): on the first page the
/// break-glass reviews owed, then the pending requests the caller may decide; and the cursor
/// of the next page.
pub(super) async fn inbox_page(
    app: &App,
    caller: &Caller,
    before: Option<String>,
    requester: Option<&str>,
    tally: Option<&mut Tally>,
) -> Result<(Vec<RequestRow>, Option<String>), ApiError> {
    let mut rows = match before {
        None => reviews_owed(app, caller, requester).await?,
        Some(_) => Vec::new(),
    };
    let (pending, next) = waiting_for(app, caller, before, requester, tally).await?;
    rows.extend(pending);
    Ok((rows, next))
}

/// `path` (the inbox or its rows) with this query.
pub(super) fn inbox_link(path: &str, before: Option<&str>, requester: Option<&str>) -> String {
    let query: Vec<String> = [("requester", requester), ("before", before)]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| format!("{name}={}", encode(v))))
        .collect();
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

pub async fn inbox(
    State(app): State<Arc<App>>,
    Extension(csrf): Extension<CsrfToken>,
    caller: Allowed<op::ReadRequests>,
    Query(query): Query<InboxQuery>,
    Extension(flash): Extension<FlashSlot>,
) -> Result<Response, ApiError> {
    let (before, requester) = query.parts()?;
    let requester = requester.as_deref();
    let opened = now();
    // The summary only on the first page, counted by the page's own scan.
    let mut tally = before.is_none().then(Tally::default);
    let (rows, next) = inbox_page(&app, &caller, before.clone(), requester, tally.as_mut()).await?;
    let by_requester = tally.map(|t| requester_summary(t, requester));
    Ok(render(&RequestsPage {
        chrome: Chrome::for_caller(&caller, "inbox", &csrf).with_flash(&flash),
        csrf: csrf.0.clone(),
        heading: "Waiting for you",
        blurb: "Break-glass accesses you owe a review, then requests you may approve, newest first. This list updates by itself.",
        live: Some(inbox_link("/ui/inbox/rows", before.as_deref(), requester)),
        live_vals: serde_json::json!({ "upto": opened.to_rfc3339() }).to_string(),
        rows,
        empty: INBOX_EMPTY,
        older: next.map(|next| inbox_link("/ui/inbox", Some(&next), requester)),
        newest: before.is_some().then(|| inbox_link("/ui/inbox", None, requester)),
        by_requester,
        arrived: None,
    }))
}

pub async fn inbox_rows(
    State(app): State<Arc<App>>,
    Extension(csrf): Extension<CsrfToken>,
    caller: Allowed<op::ReadRequests>,
    Query(query): Query<InboxQuery>,
) -> Result<Response, ApiError> {
    let ((before, requester), upto) = query.all_parts()?;
    let (mut rows, _) = inbox_page(&app, &caller, before.clone(), requester.as_deref(), None).await?;
    // What arrived since the page was opened is held back and counted (the rows a refresh
    // drops at the bottom to make room for them do not move the cards above).
    let mut arrived = 0;
    if let Some(upto) = upto {
        rows.retain(|r| {
            let old = r.filed <= upto;
            arrived += usize::from(!old);
            old
        });
    }
    Ok(render(&RequestRows {
        csrf: csrf.0,
        rows,
        empty: INBOX_EMPTY,
        arrived: (arrived > 0).then(|| Arrived {
            text: format!(
                "{} since you opened this list",
                jitgate_core::text::counted(
                    u32::try_from(arrived).unwrap_or(u32::MAX),
                    "new request",
                    "new requests"
                )
            ),
            link: inbox_link("/ui/inbox", before.as_deref(), requester.as_deref()),
        }),
    }))
}

pub async fn mine(
    State(app): State<Arc<App>>,
    Extension(csrf): Extension<CsrfToken>,
    caller: Allowed<op::ReadRequests>,
) -> Result<Response, ApiError> {
    let at = now();
    let filter = RequestFilter {
        status: None,
        requester: Some(caller.who().principal.clone()),
        limit: 100,
        before: None,
    };
    let (requests, _) = app.visible_requests(&caller, filter, at).await?;
    let rows = requests
        .iter()
        .map(|r| RequestRow::new(&RequestView::new(r, at, &caller.who().principal), at))
        .collect();
    Ok(render(&RequestsPage {
        chrome: Chrome::for_caller(&caller, "mine", &csrf),
        csrf: csrf.0.clone(),
        heading: "My requests",
        blurb: "What you asked for, newest first.",
        live: None,
        live_vals: String::new(),
        rows,
        empty: "You have not asked for anything yet.",
        older: None,
        newest: None,
        by_requester: None,
        arrived: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbox_links_keep_the_requester_and_the_cursor_encoded() {
        assert_eq!(inbox_link("/ui/inbox", None, None), "/ui/inbox");
        assert_eq!(inbox_link("/ui/inbox", Some("req_1"), None), "/ui/inbox?before=req_1");
        assert_eq!(
            inbox_link("/ui/inbox/rows", Some("req_1"), Some("ci:org/app|x+y@z")),
            "/ui/inbox/rows?requester=ci%3Aorg%2Fapp%7Cx%2By%40z&before=req_1"
        );
    }

    #[test]
    fn a_requester_that_cannot_be_a_principal_is_refused() {
        let query = |requester: &str| InboxQuery {
            before: None,
            requester: Some(requester.to_string()),
            upto: None,
        };
        for bad in [
            "ali\u{0}ce",
            "alice\n",
            "\u{202e}ecila",
            "ali\u{200b}ce",
            "\u{430}lice",
            &"a".repeat(300),
        ] {
            assert!(
                matches!(query(bad).parts(), Err(ApiError::Invalid(m)) if m.starts_with("requester:")),
                "{bad:?}"
            );
        }
        assert!(matches!(query("claude-alice").parts(), Ok((None, Some(r))) if r == "claude-alice"));
        // Empty is no filter, as an empty cursor is no cursor.
        let empty = InboxQuery {
            before: Some(String::new()),
            requester: Some(String::new()),
            upto: None,
        };
        assert!(matches!(empty.parts(), Ok((None, None))));
    }
}
