//! Live grants, and acting on them.

use super::*;

pub struct GrantRow {
    pub(super) id: String,
    pub(super) request_id: String,
    pub(super) resource: String,
    pub(super) action: String,
    pub(super) principal: String,
    pub(super) status: String,
    pub(super) window: String,
    pub(super) left: String,
    pub(super) expires_at: String,
    pub(super) expires_at_text: String,
    pub(super) single_use: bool,
    pub(super) break_glass: bool,
    pub(super) can_revoke: bool,
}

impl GrantRow {
    pub(super) fn new(g: &GrantView, at: Timestamp, can_revoke: bool) -> GrantRow {
        GrantRow {
            id: g.id.clone(),
            request_id: g.request_id.clone(),
            resource: g.resource.clone(),
            action: g.action.clone(),
            principal: g.principal.clone(),
            status: g.status.clone(),
            window: format!("{} to {}", when(g.starts_at), when(g.expires_at)),
            left: left(g.expires_at, at),
            expires_at: g.expires_at.to_rfc3339(),
            expires_at_text: when(g.expires_at),
            single_use: g.single_use,
            break_glass: g.break_glass,
            can_revoke: can_revoke && g.status == "active",
        }
    }
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
        rows.push(GrantRow::new(&GrantView::new(g, at, &who.principal), at, can_revoke));
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

#[derive(Deserialize)]
pub struct RevokeForm {
    pub(super) back: Option<String>,
    pub(super) comment: Option<String>,
}

pub async fn revoke(
    State(app): State<Arc<App>>,
    caller: Allowed<op::RevokeGrant>,
    Path(id): Path<String>,
    Form(form): Form<RevokeForm>,
) -> Result<Response, ApiError> {
    let comment = form
        .comment
        .filter(|c| !c.trim().is_empty())
        .or(Some("revoked in the web UI".into()));
    app.revoke(&caller, &id, comment).await?;
    Ok(see_other_with(&safe_next(form.back.as_deref()), Flash::Revoked))
}
