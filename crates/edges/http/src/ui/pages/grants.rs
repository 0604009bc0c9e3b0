//! Live grants, and acting on them: the next step for the grant's kind, Extend, End now,
//! Request again, and Revoke (which asks first when the grant is someone else's).
//!
//! Every action here is the API's own operation, authorized by the same table
//! (`Allowed<op::X>`): the UI only decides which buttons to show, and a button shown in error
//! is refused by the service exactly as the API would refuse it.

use super::*;

/// The longest duration text the extend form takes. The service would refuse a longer one
/// too, but its refusal repeats what was typed; past this a person made a mistake and a short
/// sentence helps more than their 10 KB read back.
const MAX_DURATION_TEXT: usize = 32;

pub struct GrantRow {
    pub(super) id: String,
    pub(super) request_id: String,
    pub(super) resource: String,
    pub(super) action: String,
    pub(super) principal: String,
    pub(super) status: String,
    /// The grant's window, each end a `<time datetime>` that `time.js` shows in the reader's
    /// zone (UTC on hover).
    pub(super) starts: Moment,
    pub(super) left: String,
    pub(super) ends: Moment,
    pub(super) single_use: bool,
    pub(super) break_glass: bool,
    pub(super) can_revoke: bool,
    /// The viewer may revoke the grants of its request (while any is active).
    revoke_allowed: bool,
    /// Revoking is someone else's access ending: it goes through a page that asks first.
    pub(super) revoke_asks: bool,
    /// The viewer holds this grant.
    pub(super) yours: bool,
    /// The holder may end it now (`done`).
    pub(super) can_end: bool,
    /// The viewer may ask for the same again (`/ui/new?again=REQUEST_ID`).
    pub(super) again: bool,
    /// For an SSH workflow's grant: the command that gets its certificate.
    pub(super) ssh_command: Option<String>,
    /// The grant's workflow has a provider that hands out database logins.
    pub(super) database_login: bool,
    /// For an http resource of the catalog that has a link: where the app is.
    pub(super) app_url: Option<String>,
    /// The extend form, when the holder may extend it.
    pub(super) extension: Option<ExtendBox>,
    /// Why the holder cannot extend it, in words, when they cannot.
    pub(super) no_extension: Option<String>,
    /// Where the grant's forms lead back to.
    pub(super) back: String,
    /// The page that asks before revoking, leading back to `back`.
    pub(super) revoke_link: String,
    /// Some grant of its request is active: its actions (which act on every active grant of
    /// the request) are offered, though this one may have ended (a single-use grant used).
    pub(super) live: bool,
    /// What its actions act on, for a button's name: "read staging-db", or for a request of
    /// several items each of its active grants, "staging-db read and prod-db read".
    pub(super) label: String,
    /// The same as the object of a sentence: "read on staging-db", or "access to staging-db
    /// read and prod-db read".
    pub(super) access: String,
    /// For a request of several items: the others its actions also act on, "prod-db read".
    pub(super) also: Option<String>,
}

/// The extend form: what it allows, what was typed, and a refusal beside its field.
pub struct ExtendBox {
    /// "2 extensions left; at most 8h may remain".
    pub(super) allowance: String,
    pub(super) reason_required: bool,
    pub(super) duration: String,
    pub(super) reason: String,
    pub(super) error: Option<FieldError>,
}

/// A refusal, and the field it is about.
pub struct FieldError {
    pub(super) field: ExtendField,
    pub(super) message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtendField {
    Duration,
    Reason,
}

impl ExtendBox {
    /// The refusal to show beside `field` (`duration` or `reason`, as the template names them).
    pub(super) fn error_on(&self, field: &str) -> Option<&str> {
        let field = match field {
            "duration" => ExtendField::Duration,
            "reason" => ExtendField::Reason,
            _ => return None,
        };
        self.error
            .as_ref()
            .filter(|e| e.field == field)
            .map(|e| e.message.as_str())
    }
}

impl GrantRow {
    pub(super) fn new(g: &GrantView, at: Timestamp, can_revoke: bool) -> GrantRow {
        let can_revoke_any = can_revoke;
        let can_revoke = can_revoke && g.status == "active";
        GrantRow {
            id: g.id.clone(),
            request_id: g.request_id.clone(),
            resource: g.resource.clone(),
            action: g.action.clone(),
            principal: g.principal.clone(),
            status: g.status.clone(),
            starts: Moment::new(g.starts_at),
            left: left(g.expires_at, at),
            ends: Moment::new(g.expires_at),
            single_use: g.single_use,
            break_glass: g.break_glass,
            revoke_allowed: can_revoke_any,
            can_revoke,
            // Until it is known whose it is, revoking asks.
            revoke_asks: can_revoke,
            yours: false,
            can_end: false,
            again: false,
            ssh_command: None,
            database_login: false,
            app_url: None,
            extension: None,
            no_extension: None,
            back: "/ui/grants".into(),
            revoke_link: revoke_page_link(&g.id, "/ui/grants"),
            live: g.status == "active",
            label: format!("{} {}", g.action, g.resource),
            access: format!("{} on {}", g.action, g.resource),
            also: None,
        }
    }

    /// The grant's actions as `who` may take them, on its request's page (`request` whole,
    /// every item).
    pub(super) fn on_request_page(
        self,
        app: &App,
        who: &jitgate_core::Identity,
        request: &jitgate_core::Request,
        at: Timestamp,
    ) -> GrantRow {
        let back = format!("/ui/requests/{}", encode(&request.id));
        let Some(grant) = request.grant_by_id(&self.id).cloned() else {
            return self;
        };
        let active = active_grants_of(request, at);
        self.with_actions(app, who, &grant, &active, Some(request), at, back)
    }

    /// What `who` may do with `grant` now: only what the policy and the authorization table
    /// would let them, so no button leads to a refusal in the ordinary case. `active` are the
    /// active grants of its request (revoke, End now and Extend act on all of them together);
    /// `request`, the whole request when it was read (the extension allowance is judged on
    /// every item; without it none is offered).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn with_actions(
        mut self,
        app: &App,
        who: &jitgate_core::Identity,
        grant: &jitgate_core::Grant,
        active: &[jitgate_core::Grant],
        request: Option<&jitgate_core::Request>,
        at: Timestamp,
        back: String,
    ) -> GrantRow {
        let yours = grant.principal == who.principal;
        let live = !active.is_empty();
        self.live = live;
        self.can_revoke = self.revoke_allowed && live;
        if active.len() > 1 {
            let all = in_words(active.iter());
            self.label = all.clone();
            self.access = format!("access to {all}");
            self.also = Some(in_words(active.iter().filter(|g| g.id != grant.id)));
        }
        self.revoke_link = revoke_page_link(&grant.id, &back);
        self.back = back;
        self.yours = yours;
        self.revoke_asks = self.can_revoke && !yours;
        self.again = yours && authz::reach(who, Operation::FileRequest) != Reach::Nothing;
        if !(yours && live) {
            return self;
        }
        self.can_end = authz::reach(who, Operation::FinishGrant) != Reach::Nothing;
        let policy = app.policy();
        // The next step is this grant's own: only while it is live itself.
        if grant.status_at(at) == GrantStatus::Active {
            let workflow = policy.rules().workflow(&grant.resource, &grant.action).ok();
            if workflow.is_some_and(|w| w.ssh.is_some()) {
                self.ssh_command = Some(format!(
                    "jitgate ssh {} --key ~/.ssh/id_ed25519.pub > ~/.ssh/id_ed25519-cert.pub",
                    grant.id
                ));
            }
            self.database_login = grant
                .providers
                .iter()
                .any(|name| app.providers().get(name).is_some_and(|p| p.logins().is_some()));
            self.app_url = policy
                .http_routes()
                .urls()
                .find(|(resource, _)| *resource == grant.resource)
                .map(|(_, url)| url.to_string());
        }
        if authz::reach(who, Operation::ExtendGrant) == Reach::Nothing {
            return self;
        }
        let Some(request) = request else {
            return self;
        };
        // The service judges the allowance by the rule an extension is held to (every item's
        // workflow, the policy's `Extend`, the machine's checks): shown and enforced agree.
        match app.extension_allowance_of(who, request, at) {
            Ok(allowance) => {
                self.extension = Some(ExtendBox {
                    allowance: format!(
                        "{} left; at most {} may remain.",
                        jitgate_core::text::counted(allowance.times_left, "extension", "extensions"),
                        jitgate_core::format_duration(allowance.max_duration)
                    ),
                    reason_required: allowance.reason_required,
                    duration: String::new(),
                    reason: String::new(),
                    error: None,
                });
            }
            Err(refused) => self.no_extension = Some(no_extension_words(&policy, request, &refused)),
        }
        self
    }
}

/// The active grants of `request`, every item's.
fn active_grants_of(request: &jitgate_core::Request, at: Timestamp) -> Vec<jitgate_core::Grant> {
    request
        .grants()
        .filter(|g| g.status_at(at) == GrantStatus::Active)
        .cloned()
        .collect()
}

/// Grants as a list people read: "staging-db read", "staging-db read and prod-db read",
/// "a read, b read and c write".
fn in_words<'a>(grants: impl Iterator<Item = &'a jitgate_core::Grant>) -> String {
    let names: Vec<String> = grants.map(|g| format!("{} {}", g.resource, g.action)).collect();
    match names.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// Why the holder cannot extend now, in words that say what to do instead. The decision is the
/// service's (`refused`); the words name the usual cases plainly.
fn no_extension_words(
    policy: &jitgate_policy::Policy,
    request: &jitgate_core::Request,
    refused: &ServiceError,
) -> String {
    let workflows: Vec<_> = (0..request.item_count())
        .filter_map(|i| request.item_request(i))
        .filter_map(|item| policy.rules().workflow(&item.resource, &item.action).ok())
        .collect();
    if workflows.iter().any(|w| w.extension.is_none()) {
        return "Its workflow does not allow extending: request again for more time.".into();
    }
    if workflows
        .iter()
        .any(|w| w.extension.as_ref().is_some_and(|e| e.requires_approval))
    {
        return "Extending needs approval again: request again; the new grant overlaps this one.".into();
    }
    let extensions = request.grant.as_ref().map_or(0, |g| g.extensions);
    let most = workflows
        .iter()
        .filter_map(|w| w.extension.as_ref().map(|e| e.max_times))
        .min();
    if matches!(refused, ServiceError::Conflict(_)) && most.is_some_and(|most| extensions >= most) {
        return format!(
            "Extended {} already, the most its workflow allows: request again for more time.",
            jitgate_core::text::counted(extensions, "time", "times")
        );
    }
    sentence(&refused.to_string())
}

#[derive(Template)]
#[template(path = "grants.html")]
pub(super) struct GrantsPage {
    pub(super) chrome: Chrome,
    pub(super) blurb: &'static str,
    pub(super) grants: Vec<GrantRow>,
    pub(super) csrf: String,
}

#[derive(Template)]
#[template(path = "grant_rows.html")]
pub(super) struct GrantRows {
    pub(super) grants: Vec<GrantRow>,
    pub(super) csrf: String,
}

pub(super) async fn active_grants(app: &App, caller: &Caller) -> Result<Vec<GrantRow>, ApiError> {
    let at = now();
    let who = caller.who();
    let principal = (caller.reach() != Reach::All).then(|| who.principal.clone());
    let grants = app
        .store
        .list_grants(
            &GrantFilter {
                principal,
                status: Some(GrantStatus::Active),
                limit: 500,
                before: None,
            },
            at,
        )
        .await?;
    let revoke_reach = authz::reach(who, Operation::RevokeGrant);
    // The active grants of each request, from the list itself: what its actions act on.
    let mut by_request: std::collections::HashMap<&str, Vec<jitgate_core::Grant>> = std::collections::HashMap::new();
    for g in &grants {
        if g.status_at(at) == GrantStatus::Active {
            by_request.entry(g.request_id.as_str()).or_default().push(g.clone());
        }
    }
    // Requests read whole, once each: the holder's own (their allowance is judged on every
    // item) and those of several items (their items named in the request's order).
    let mut wholes: std::collections::HashMap<&str, Option<jitgate_core::Request>> = std::collections::HashMap::new();
    let mut rows = Vec::with_capacity(grants.len());
    for g in &grants {
        // Revoking is judged on the request, as the API does (its requester, reviewers, ...).
        let can_revoke = match revoke_reach {
            Reach::All => true,
            Reach::Nothing => false,
            reach => {
                g.principal == who.principal || {
                    let request = app.store.get_request(&g.request_id).await?;
                    request.is_some_and(|r| reach.covers(who, &r))
                }
            }
        };
        let listed = by_request.get(g.request_id.as_str()).map_or(&[][..], Vec::as_slice);
        let whole = if g.principal == who.principal || listed.len() > 1 {
            if !wholes.contains_key(g.request_id.as_str()) {
                let request = app.store.get_request(&g.request_id).await?;
                wholes.insert(g.request_id.as_str(), request);
            }
            wholes.get(g.request_id.as_str()).and_then(Option::as_ref)
        } else {
            None
        };
        let active = whole.map_or_else(|| listed.to_vec(), |r| active_grants_of(r, at));
        let whole = whole.filter(|_| g.principal == who.principal);
        rows.push(
            GrantRow::new(&GrantView::new(g, at, &who.principal), at, can_revoke).with_actions(
                app,
                who,
                g,
                &active,
                whole,
                at,
                "/ui/grants".into(),
            ),
        );
    }
    Ok(rows)
}

pub async fn grants(
    State(app): State<Arc<App>>,
    Extension(csrf): Extension<CsrfToken>,
    caller: Allowed<op::ReadGrants>,
    Extension(flash): Extension<FlashSlot>,
) -> Result<Response, ApiError> {
    let grants = active_grants(&app, &caller).await?;
    let blurb = if caller.reach() == Reach::All {
        "Everyone's access that is live now. The time left updates by itself."
    } else {
        "Your access that is live now. The time left updates by itself."
    };
    Ok(render(&GrantsPage {
        chrome: Chrome::for_caller(&caller, "grants", &csrf).with_flash(&flash),
        blurb,
        grants,
        csrf: csrf.0.clone(),
    }))
}

pub async fn grant_rows(
    State(app): State<Arc<App>>,
    Extension(csrf): Extension<CsrfToken>,
    caller: Allowed<op::ReadGrants>,
) -> Result<Response, ApiError> {
    let grants = active_grants(&app, &caller).await?;
    Ok(render(&GrantRows {
        grants,
        csrf: csrf.0.clone(),
    }))
}

/// A grant id as jitgate makes them (`grt_` and hex, or a test's plain name): anything else
/// is no grant of ours, answered 404 before it reaches a store (PostgreSQL refuses NUL in
/// text, and a control or bidi character has no business in a query).
fn grant_id_shape(id: &str) -> Result<(), ApiError> {
    let plain =
        !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        Ok(())
    } else {
        Err(ApiError::NotFound("There is no such grant.".into()))
    }
}

/// The grant `id` and its whole request (every item), by the service's own rule
/// (`App::reachable_request_of_grant`): a grant the caller may not see is the same 404 as a
/// missing one, so ids cannot be probed; one they see but the operation does not reach is 403.
async fn reachable_grant(
    app: &App,
    caller: &Caller,
    id: &str,
) -> Result<(jitgate_core::Request, jitgate_core::Grant), ApiError> {
    grant_id_shape(id)?;
    let request = app.reachable_request_of_grant(caller, id).await?;
    let grant = request
        .grant_by_id(id)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(format!("There is no grant {id}.")))?;
    Ok((request, grant))
}

#[derive(Deserialize)]
pub struct RevokeForm {
    pub(super) back: Option<String>,
    pub(super) comment: Option<String>,
    /// `yes` only from the page that asks: revoking someone else's grant needs it.
    pub(super) confirmed: Option<String>,
}

pub async fn revoke(
    State(app): State<Arc<App>>,
    caller: Allowed<op::RevokeGrant>,
    Path(id): Path<String>,
    Form(form): Form<RevokeForm>,
) -> Result<Response, ApiError> {
    let (request, grant) = reachable_grant(&app, &caller, &id).await?;
    let back = grant_back(form.back.as_deref(), &request);
    if grant.principal != caller.who().principal && form.confirmed.as_deref() != Some("yes") {
        // Someone else's access ends only from the page that says so: a one-click button (or
        // a stale form) leads there instead, and nothing is revoked.
        return Ok(see_other(&revoke_page_link(&id, &back)));
    }
    let comment = form
        .comment
        .filter(|c| !c.trim().is_empty())
        .or(Some("revoked in the web UI".into()));
    app.revoke(&caller, &id, comment).await?;
    Ok(see_other_with(&back, Flash::Revoked))
}

/// Where a grant's form leads back to: the grants page or the grant's own request page, the
/// only pages its forms are on. Anything else (an address someone wrote) is the grants page, so
/// "Grant revoked" never lands on a page that has nothing to do with the grant.
fn grant_back(back: Option<&str>, request: &jitgate_core::Request) -> String {
    let back = safe_next(back);
    let own_page = format!("/ui/requests/{}", encode(&request.id));
    if back == "/ui/grants" || back == own_page {
        back
    } else {
        "/ui/grants".into()
    }
}

fn revoke_page_link(id: &str, back: &str) -> String {
    format!("/ui/grants/{}/revoke?back={}", encode(id), encode(back))
}

#[derive(Debug, Default, Deserialize)]
pub struct BackQuery {
    pub(super) back: Option<String>,
}

#[derive(Template)]
#[template(path = "grant_revoke.html")]
pub(super) struct RevokePage {
    pub(super) chrome: Chrome,
    pub(super) id: String,
    pub(super) holder: String,
    pub(super) yours: bool,
    /// What ends: "read on staging-db", or every active grant of a request of several items,
    /// "access to staging-db read and prod-db read".
    pub(super) access: String,
    /// Its grants, for the title: "read staging-db", "staging-db read and prod-db read".
    pub(super) label: String,
    pub(super) left: String,
    pub(super) until: Moment,
    pub(super) back: String,
}

/// `GET /ui/grants/{id}/revoke`: the question before someone else's access ends.
pub async fn revoke_page(
    State(app): State<Arc<App>>,
    Extension(csrf): Extension<CsrfToken>,
    caller: Allowed<op::RevokeGrant>,
    Path(id): Path<String>,
    Query(query): Query<BackQuery>,
) -> Result<Response, ApiError> {
    let (request, grant) = reachable_grant(&app, &caller, &id).await?;
    let at = now();
    // Revoking ends every active grant of the request: it is refused only when none is left
    // (the first item's single-use grant may be used while the others are live).
    let active = active_grants_of(&request, at);
    if active.is_empty() {
        return Err(ApiError::Conflict(format!(
            "This grant is {} already: there is nothing left to revoke.",
            grant.status_at(at).as_str()
        )));
    }
    let yours = grant.principal == caller.who().principal;
    let (access, label) = if active.len() > 1 {
        let all = in_words(active.iter());
        (format!("access to {all}"), all)
    } else {
        let only = active.first().unwrap_or(&grant);
        (
            format!("{} on {}", only.action, only.resource),
            format!("{} {}", only.action, only.resource),
        )
    };
    let ends = active.iter().map(|g| g.expires_at).max().unwrap_or(grant.expires_at);
    Ok(render(&RevokePage {
        chrome: Chrome::for_caller(&caller, "grants", &csrf),
        id: grant.id.clone(),
        holder: if yours {
            "your".into()
        } else {
            format!("{}'s", grant.principal)
        },
        yours,
        access,
        label,
        left: left(ends, at),
        until: Moment::new(ends),
        back: grant_back(query.back.as_deref(), &request),
    }))
}

#[derive(Deserialize)]
pub struct BackForm {
    pub(super) back: Option<String>,
}

/// `POST /ui/grants/{id}/done`: the holder's task is finished; the access ends now.
pub async fn done(
    State(app): State<Arc<App>>,
    caller: Allowed<op::FinishGrant>,
    Path(id): Path<String>,
    Form(form): Form<BackForm>,
) -> Result<Response, ApiError> {
    let (request, _) = reachable_grant(&app, &caller, &id).await?;
    app.done(&caller, &id, Some("ended in the web UI".into())).await?;
    Ok(see_other_with(
        &grant_back(form.back.as_deref(), &request),
        Flash::Ended,
    ))
}

#[derive(Deserialize)]
pub struct ExtendForm {
    pub(super) back: Option<String>,
    #[serde(default)]
    pub(super) duration: String,
    #[serde(default)]
    pub(super) reason: String,
}

#[derive(Template)]
#[template(path = "grant_extend.html")]
pub(super) struct ExtendFragment {
    pub(super) g: GrantRow,
    pub(super) x: ExtendBox,
    pub(super) csrf: String,
}

#[derive(Template)]
#[template(path = "grant_extend_page.html")]
pub(super) struct ExtendPage {
    pub(super) chrome: Chrome,
    pub(super) g: GrantRow,
    pub(super) x: ExtendBox,
    pub(super) csrf: String,
}

/// Where a refusal of an extension goes, read from the error's type (`refused_input`, as the
/// new-request form reads it): beside the reason when it is the reason's, else beside the
/// duration (the allowance and the grant's state concern the duration asked for). The field's
/// name is left out of the words: they are shown beside the field.
fn refusal_beside(e: &ServiceError) -> FieldError {
    let Some((field, invalid)) = refused_input(e) else {
        return FieldError {
            field: ExtendField::Duration,
            message: sentence(&e.to_string()),
        };
    };
    let (field, subject) = match field {
        "reason" => (ExtendField::Reason, "The reason"),
        _ => (ExtendField::Duration, "The duration"),
    };
    let message = match (problem_in_words(invalid), e) {
        (Some(words), _) => words,
        // "is 102400 bytes; keep it under 2000" says what is too long only with its subject.
        (None, ServiceError::TooLong(_)) => sentence(&format!("{subject} {}", invalid.message)),
        (None, _) => sentence(&invalid.message),
    };
    FieldError { field, message }
}

/// A refusal as a sentence: capital first, full stop last, control and invisible characters
/// shown as escapes (what was typed is read back in it).
fn sentence(message: &str) -> String {
    let shown = shown(message.trim());
    let mut chars = shown.chars();
    let mut text: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => "That did not work".into(),
    };
    if !text.ends_with(['.', '!', '?']) {
        text.push('.');
    }
    text
}

/// `POST /ui/grants/{id}/extend`: the holder asks for more time. Granted: back where the
/// form was, with "Grant extended." Refused: the form again with the reason beside its field
/// (in place, for htmx; as a page of its own without JavaScript), what was typed kept.
pub async fn extend(
    State(app): State<Arc<App>>,
    Extension(csrf): Extension<CsrfToken>,
    caller: Allowed<op::ExtendGrant>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<ExtendForm>,
) -> Result<Response, ApiError> {
    let (request, grant) = reachable_grant(&app, &caller, &id).await?;
    let back = grant_back(form.back.as_deref(), &request);
    let htmx = headers.contains_key("hx-request");
    let mut limit_marks = LimitMarks::default();
    let refusal = if form.duration.trim().is_empty() {
        Some(FieldError {
            field: ExtendField::Duration,
            message: "Say how much longer, like 30m or 2h.".into(),
        })
    } else if form.duration.chars().count() > MAX_DURATION_TEXT {
        Some(FieldError {
            field: ExtendField::Duration,
            message: format!(
                "Write a duration like 30m or 2h; this one is {} characters long.",
                form.duration.chars().count()
            ),
        })
    } else {
        let body = jitgate_service::inputs::Extension {
            duration: jitgate_service::inputs::DurationInput::Text(form.duration.clone()),
            reason: form.reason.clone(),
        };
        match app.extend(&caller, &id, &body).await {
            Ok(_) => {
                let mut done = see_other_with(&back, Flash::Extended);
                if htmx {
                    // A redirect would be followed inside the request and its page swapped
                    // into the form: htmx goes to the page itself instead.
                    *done.status_mut() = StatusCode::OK;
                    if let Some(location) = done.headers_mut().remove(header::LOCATION) {
                        done.headers_mut().insert("hx-redirect", location);
                    }
                }
                return Ok(done);
            }
            // A refusal of what was asked goes beside the field, in place with htmx or as the
            // form's page without. A limit that lifts with time goes there too with htmx (the
            // form says when to try again) but keeps what marks it: the limit counted in the
            // metrics and `Retry-After`. Anything else (the server's fault, the database away,
            // the grant gone) is the error page as the API answers it: logged, counted, with
            // its status.
            Err(e) => match refusal_kind(&e, htmx) {
                RefusalKind::BesideTheField => {
                    limit_marks = LimitMarks::of(&e);
                    Some(refusal_beside(&e))
                }
                RefusalKind::ErrorPage => return Ok(error_answer(&caller, &csrf, e, htmx)),
            },
        }
    };
    let at = now();
    let active = active_grants_of(&request, at);
    let mut g = GrantRow::new(&GrantView::new(&grant, at, &caller.who().principal), at, false).with_actions(
        &app,
        caller.who(),
        &grant,
        &active,
        Some(&request),
        at,
        back,
    );
    let mut x = match g.extension.take() {
        Some(x) => x,
        // No longer extendable (its last extension went, it ended): the form says why.
        None => {
            let mut x = empty_extend_box();
            x.allowance = g
                .no_extension
                .clone()
                .unwrap_or_else(|| "This grant cannot be extended now.".into());
            x
        }
    };
    x.duration = kept(&form.duration);
    x.reason = kept(&form.reason);
    x.error = refusal;
    if htmx {
        let fragment = render(&ExtendFragment {
            g,
            x,
            csrf: csrf.0.clone(),
        });
        return Ok(limit_marks.on(fragment));
    }
    let page = render(&ExtendPage {
        chrome: Chrome::for_caller(&caller, "grants", &csrf),
        g,
        x,
        csrf: csrf.0.clone(),
    });
    Ok(limit_marks.on((StatusCode::UNPROCESSABLE_ENTITY, page).into_response()))
}

/// Where a refusal of an extension is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefusalKind {
    /// Beside the duration or the reason: something the holder can change and send again.
    BesideTheField,
    /// The error page, as the API answers it.
    ErrorPage,
}

/// Only refusals of what was asked go beside the field. A limit that lifts with time does
/// too with htmx (a swapped-in page would replace the form for a few seconds' wait); without
/// it, it is the 429 page that says when to come back.
fn refusal_kind(e: &ServiceError, htmx: bool) -> RefusalKind {
    match e {
        ServiceError::Invalid(_)
        | ServiceError::TooLong(_)
        | ServiceError::Conflict(_)
        | ServiceError::Forbidden(_)
        | ServiceError::OverLimit(..) => RefusalKind::BesideTheField,
        ServiceError::RetryLater { .. } if htmx => RefusalKind::BesideTheField,
        _ => RefusalKind::ErrorPage,
    }
}

/// What an over-limit refusal shown beside the field keeps of the API's answer: the limit, for
/// `jitgate_limits_exceeded_total`, and when to try again.
#[derive(Debug, Default)]
struct LimitMarks {
    limit: Option<Limit>,
    retry_after: Option<std::time::Duration>,
}

impl LimitMarks {
    fn of(e: &ServiceError) -> LimitMarks {
        match e {
            ServiceError::OverLimit(limit, _) => LimitMarks {
                limit: Some(*limit),
                retry_after: None,
            },
            ServiceError::TooLong(_) => LimitMarks {
                limit: Some(Limit::FieldLength),
                retry_after: None,
            },
            ServiceError::RetryLater { limit, after, .. } => LimitMarks {
                limit: Some(*limit),
                retry_after: Some(*after),
            },
            _ => LimitMarks::default(),
        }
    }

    fn on(self, mut response: Response) -> Response {
        if let Some(limit) = self.limit {
            response.extensions_mut().insert(crate::error::LimitHit(limit));
        }
        if let Some(after) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, crate::error::retry_after_seconds(after).into());
        }
        response
    }
}

/// An error that is no refusal of what was typed, as the API's answer made a page: the API's
/// response first (it logs an internal error's detail, marks a limit, sets `Retry-After`),
/// then its message in a page with the caller's navigation. htmx swaps no error status in: it
/// gets the page with 200 and `HX-Retarget: body`, the status kept in `X-Jitgate-Status`.
fn error_answer(caller: &Caller, csrf: &CsrfToken, e: ServiceError, htmx: bool) -> Response {
    let api = ApiError::from(e);
    let message = match &api {
        ApiError::Internal(_) => "Internal error; the server log has the details.".to_string(),
        other => other.to_string(),
    };
    let answered = api.into_response();
    let status = answered.status();
    let mut page = error_page_for(Some(caller.who()), &csrf.0, status, &message);
    if let Some(limit) = answered.extensions().get::<crate::error::LimitHit>().copied() {
        page.extensions_mut().insert(limit);
    }
    if let Some(retry_after) = answered.headers().get(header::RETRY_AFTER).cloned() {
        page.headers_mut().insert(header::RETRY_AFTER, retry_after);
    }
    if htmx {
        *page.status_mut() = StatusCode::OK;
        let h = page.headers_mut();
        h.insert("hx-retarget", HeaderValue::from_static("body"));
        h.insert("hx-reswap", HeaderValue::from_static("innerHTML"));
        if let Ok(v) = HeaderValue::from_str(status.as_str()) {
            h.insert("x-jitgate-status", v);
        }
    }
    page
}

/// What was typed, to fill the form in again: control and invisible characters as visible
/// escapes (a NUL or a bidi override has no place in the page), and at most a line's worth.
fn kept(typed: &str) -> String {
    let shown = shown(typed);
    match shown.char_indices().nth(2000) {
        Some((cut, _)) => shown[..cut].to_string(),
        None => shown,
    }
}

fn empty_extend_box() -> ExtendBox {
    ExtendBox {
        allowance: String::new(),
        reason_required: false,
        duration: String::new(),
        reason: String::new(),
        error: None,
    }
}

/// One database login, as the page shows it once.
pub struct LoginRow {
    pub(super) provider: String,
    pub(super) user: String,
    pub(super) password: String,
    pub(super) url: String,
    pub(super) expires: Moment,
}

#[derive(Template)]
#[template(path = "grant_credentials.html")]
pub(super) struct CredentialsPage {
    pub(super) chrome: Chrome,
    pub(super) id: String,
    pub(super) request_id: String,
    pub(super) logins: Vec<LoginRow>,
}

/// `POST /ui/grants/{id}/credentials`: the database login made for the holder's grant,
/// shown once (`Cache-Control: no-store` is on every page; asking again is the API's 409).
pub async fn credentials(
    State(app): State<Arc<App>>,
    Extension(csrf): Extension<CsrfToken>,
    caller: Allowed<op::IssueCredentials>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (request, _) = reachable_grant(&app, &caller, &id).await?;
    let logins = app.database_credentials(&caller, &id).await?;
    Ok(render(&CredentialsPage {
        chrome: Chrome::for_caller(&caller, "grants", &csrf),
        id,
        request_id: request.id.clone(),
        logins: logins
            .into_iter()
            .map(|l| LoginRow {
                provider: l.provider,
                user: l.user,
                password: l.password,
                url: l.url,
                expires: Moment::new(l.expires_at),
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_goes_beside_the_field_its_type_names_and_reads_as_a_sentence() {
        let refused = refusal_beside(&ServiceError::invalid_field(
            "reason",
            "say why prod-db must last longer",
        ));
        assert_eq!(refused.field, ExtendField::Reason);
        assert_eq!(refused.message, "Say why prod-db must last longer.");
        let refused = refusal_beside(&ServiceError::invalid_field(
            "duration",
            "'1h\0' has an unknown unit '\0'; write 30m",
        ));
        assert_eq!(refused.field, ExtendField::Duration);
        assert!(!refused.message.contains('\0'), "{:?}", refused.message);
        // Over its length: beside the field it names, with what is too long said.
        let refused = refusal_beside(&ServiceError::from(jitgate_core::DomainError::TooLong {
            field: "reason",
            len: 102400,
            max: 2000,
        }));
        assert_eq!(refused.field, ExtendField::Reason);
        assert_eq!(refused.message, "The reason is 102400 bytes; keep it under 2000.");
        // Words that merely begin like a field's name are not read as one.
        let refused = refusal_beside(&ServiceError::invalid("reason: looks like a field"));
        assert_eq!(refused.field, ExtendField::Duration);
        // A refusal of the grant's state concerns the duration asked for.
        let refused = refusal_beside(&ServiceError::Conflict("grant grt_1 has been extended 2 times".into()));
        assert_eq!(refused.field, ExtendField::Duration);
        assert_eq!(refused.message, "Grant grt_1 has been extended 2 times.");
    }

    #[test]
    fn only_refusals_of_what_was_asked_go_beside_the_field() {
        let refused = ServiceError::invalid_field("duration", "write 30m");
        assert_eq!(refusal_kind(&refused, true), RefusalKind::BesideTheField);
        assert_eq!(refusal_kind(&refused, false), RefusalKind::BesideTheField);
        let later = ServiceError::RetryLater {
            limit: Limit::Rate,
            message: "try again in 2s".into(),
            after: std::time::Duration::from_millis(1500),
        };
        assert_eq!(refusal_kind(&later, true), RefusalKind::BesideTheField);
        assert_eq!(refusal_kind(&later, false), RefusalKind::ErrorPage);
        let marks = LimitMarks::of(&later).on(StatusCode::OK.into_response());
        assert!(marks.extensions().get::<crate::error::LimitHit>().is_some());
        assert_eq!(marks.headers()[header::RETRY_AFTER], "2");
        for fault in [
            ServiceError::Internal("the disk is on fire".into()),
            ServiceError::Unavailable("the database is away".into()),
            ServiceError::NotFound("no grant grt_1".into()),
        ] {
            assert_eq!(refusal_kind(&fault, true), RefusalKind::ErrorPage, "{fault:?}");
        }
    }

    #[test]
    fn only_grant_ids_of_our_shape_reach_a_store() {
        assert!(grant_id_shape("grt_0192abcdef").is_ok());
        for bad in [
            "",
            "grt_\0",
            "grt_\u{202e}1",
            "grt 1",
            "grt_1\n",
            "../x",
            &"a".repeat(129),
        ] {
            assert!(grant_id_shape(bad).is_err(), "{bad:?}");
        }
    }
}
