//! The new-request form: finding what to ask for in the catalog, and filing it.

use super::*;

pub struct Target {
    pub(super) value: String,
    pub(super) label: String,
    /// Chosen on the form that is shown again (a refusal keeps what was typed).
    pub(super) selected: bool,
}

#[derive(Template)]
#[template(path = "new.html")]
pub(super) struct NewPage {
    pub(super) chrome: Chrome,
    pub(super) error: Option<String>,
    pub(super) finder: Finder,
    pub(super) duration: String,
    pub(super) reason: String,
    pub(super) payload: String,
    /// Where to go once granted (a forward-auth 403's app), carried through filing.
    pub(super) return_to: Option<String>,
    /// Why a `return_to` given was not kept.
    pub(super) return_to_problem: Option<String>,
}

/// How many choices the new-request page offers at once: a catalog may hold thousands, so
/// the page searches it rather than listing it.
pub(super) const CHOICES_PER_PAGE: u32 = 100;

/// The catalog search on the new-request page, as typed, and what it found.
#[derive(Debug, Default, Deserialize)]
pub struct CatalogSearch {
    pub(super) q: Option<String>,
    pub(super) kind: Option<String>,
    pub(super) label: Option<String>,
}

pub(super) struct Finder {
    pub(super) q: String,
    pub(super) kind: String,
    pub(super) label: String,
    pub(super) targets: Vec<Target>,
    /// More match than the page shows: the requester should narrow the search.
    pub(super) more: bool,
    /// The search itself was refused (a malformed label); said next to it.
    pub(super) problem: Option<String>,
}

/// What the caller may ask for that matches `search`, as the service lists it for every edge
/// (`GET /v1/resources`): each action with who approves it and its longest duration.
pub(super) fn finder(app: &App, caller: &Caller, search: CatalogSearch) -> Finder {
    let query = crate::api::ResourceListQuery {
        q: search.q.clone().filter(|q| !q.trim().is_empty()),
        kind: search.kind.clone().filter(|k| !k.trim().is_empty()),
        label: search.label.clone().filter(|l| !l.trim().is_empty()),
        limit: Some(CHOICES_PER_PAGE),
        before: None,
    };
    let found = query
        .into_query()
        .map_err(|e| e.to_string())
        .and_then(|query| app.requestable(caller, &query).map_err(|e| e.to_string()));
    let (resources, next, problem) = match found {
        Ok((resources, next)) => (resources, next, None),
        Err(problem) => (Vec::new(), None, Some(problem)),
    };
    Finder {
        q: search.q.unwrap_or_default(),
        kind: search.kind.unwrap_or_default(),
        label: search.label.unwrap_or_default(),
        targets: targets_of(&resources),
        more: next.is_some(),
        problem,
    }
}

/// One choice on the form for each action of each resource.
pub(super) fn targets_of(resources: &[jitgate_service::resources::RequestableResource]) -> Vec<Target> {
    resources
        .iter()
        .flat_map(|r| r.actions.iter().map(move |a| (r, a)))
        .map(|(r, a)| {
            let approval = if a.automatic {
                "automatic".to_string()
            } else {
                a.needs
                    .iter()
                    .map(|s| format!("{} from {}", approvals(s.approvals), s.group))
                    .collect::<Vec<_>>()
                    .join(" + ")
            };
            let mut label = format!("{} {} · {approval} · up to {}", a.action, r.name, a.max_duration);
            if a.action_bound {
                label.push_str(" · exact action");
            }
            if !r.labels.is_empty() {
                let labels: Vec<String> = r.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                label.push_str(&format!(" · {}", labels.join(", ")));
            }
            Target {
                value: format!("{}|{}", r.name, a.action),
                label,
                selected: false,
            }
        })
        .collect()
}

/// `/ui/new?resource=R&action=A&return_to=URL`: the target a forward-auth 403 links to, and
/// the app to go back to once it is granted.
#[derive(Debug, Default, Deserialize)]
pub struct Preselect {
    pub(super) resource: Option<String>,
    pub(super) action: Option<String>,
    pub(super) return_to: Option<String>,
}

/// Choose `resource|action` on the form, finding it in the catalog when the search did not
/// (a search for a name lists, in name order, every resource whose name holds it). `Err` says
/// why it cannot be asked for.
pub(super) fn preselect(
    app: &App,
    caller: &Caller,
    finder: &mut Finder,
    resource: &str,
    action: &str,
) -> Result<(), String> {
    let value = format!("{resource}|{action}");
    if let Some(target) = finder.targets.iter_mut().find(|t| t.value == value) {
        target.selected = true;
        return Ok(());
    }
    let mut query = jitgate_service::resources::ResourceQuery {
        search: Some(resource.to_string()),
        limit: jitgate_service::resources::MAX_PAGE,
        ..Default::default()
    };
    // Bounded: a name held by more than a few thousand others is not worth the walk.
    for _ in 0..8 {
        let (page, next) = app.requestable(caller, &query).map_err(|e| e.to_string())?;
        if let Some(found) = page.iter().find(|r| r.name == resource) {
            let mut target = targets_of(std::slice::from_ref(found))
                .into_iter()
                .find(|t| t.value == value)
                .ok_or_else(|| cannot_ask(resource, action))?;
            target.selected = true;
            finder.targets.insert(0, target);
            return Ok(());
        }
        match next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    Err(cannot_ask(resource, action))
}

pub(super) fn cannot_ask(resource: &str, action: &str) -> String {
    format!(
        "You may not ask for {action} on {resource}: no workflow lets you request it. Ask the people who run jitgate, or choose something else."
    )
}

/// `return_to` as kept: `Ok(None)` when there is none, `Err` with why when it may not lead
/// back. Only an absolute http(s) URL of at most 2,048 bytes of visible ASCII whose host a
/// catalog resource of kind `http` serves, as the catalog and as a browser read it: never a
/// way to send people elsewhere.
pub(crate) fn kept_return_to(app: &App, return_to: Option<&str>) -> Result<Option<String>, String> {
    let Some(url) = return_to.filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    if let Some(problem) = crate::forward_auth::return_to_problem(url) {
        return Err(format!("The link back to the application was left out: it {problem}."));
    }
    let origin = crate::forward_auth::browser_origin(url).unwrap_or_default();
    if !(serves_url(app, url) && serves_url(app, &origin)) {
        return Err(
            "The link back to the application was left out: no catalog resource of kind http serves its host.".into(),
        );
    }
    Ok(Some(url.to_string()))
}

/// Whether some catalog resource of kind `http` serves the host of `url`.
pub(super) fn serves_url(app: &App, url: &str) -> bool {
    app.policy().http_routes().serves_url(url)
}

pub async fn new_request(
    State(app): State<Arc<App>>,
    Extension(csrf): Extension<CsrfToken>,
    caller: Allowed<op::FileRequest>,
    Query(mut search): Query<CatalogSearch>,
    Query(pick): Query<Preselect>,
) -> Result<Response, ApiError> {
    let some = |v: Option<String>| v.map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let target = some(pick.resource).zip(some(pick.action));
    if let Some((resource, _)) = &target {
        if search.q.as_deref().is_none_or(|q| q.trim().is_empty()) {
            search.q = Some(resource.clone());
        }
    }
    let mut finder = finder(&app, &caller, search);
    let error = target.and_then(|(resource, action)| preselect(&app, &caller, &mut finder, &resource, &action).err());
    let (return_to, return_to_problem) = match kept_return_to(&app, pick.return_to.as_deref()) {
        Ok(kept) => (kept, None),
        Err(problem) => (None, Some(problem)),
    };
    Ok(render(&NewPage {
        chrome: Chrome::for_caller(&caller, "new", &csrf),
        error,
        finder,
        duration: String::new(),
        reason: String::new(),
        payload: String::new(),
        return_to,
        return_to_problem,
    }))
}

/// The new-request form: one or several targets (`RESOURCE|ACTION`), for one window.
#[derive(Default)]
pub struct FileForm {
    pub(super) targets: Vec<String>,
    pub(super) duration: Option<String>,
    pub(super) reason: Option<String>,
    pub(super) payload: Option<String>,
    pub(super) break_glass: Option<String>,
    pub(super) return_to: Option<String>,
}

impl FileForm {
    /// Read the posted fields; `target` repeats when several things are chosen.
    pub(super) fn from_fields(fields: Vec<(String, String)>) -> FileForm {
        let mut form = FileForm::default();
        for (name, value) in fields {
            match name.as_str() {
                "target" => form.targets.push(value),
                "duration" => form.duration = Some(value),
                "reason" => form.reason = Some(value),
                "payload" => form.payload = Some(value),
                "break_glass" => form.break_glass = Some(value),
                "return_to" => form.return_to = Some(value),
                _ => {}
            }
        }
        form
    }
}

pub async fn file(
    State(app): State<Arc<App>>,
    Extension(csrf): Extension<CsrfToken>,
    caller: Allowed<op::FileRequest>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let form = FileForm::from_fields(fields);
    let chosen: Vec<(&str, &str)> = form
        .targets
        .iter()
        .map(|t| {
            t.rsplit_once('|')
                .ok_or_else(|| ApiError::Invalid("target: choose what to ask for".into()))
        })
        .collect::<Result<_, _>>()?;
    let duration = form.duration.as_deref().map(str::trim).filter(|d| !d.is_empty());
    let payload = form.payload.as_deref().filter(|p| !p.trim().is_empty());
    // One choice files as it always has; several become the items of one request, each
    // judged by its own workflow (a payload goes with each, for action-bound workflows).
    let (resource, action, items) = match chosen.as_slice() {
        [] => return Err(ApiError::Invalid("target: choose what to ask for".into())),
        [(resource, action)] => (Some(resource.to_string()), Some(action.to_string()), None),
        several => (
            None,
            None,
            Some(
                several
                    .iter()
                    .map(|(resource, action)| ItemBody {
                        resource: resource.to_string(),
                        action: action.to_string(),
                        payload: payload.map(str::to_string),
                    })
                    .collect(),
            ),
        ),
    };
    let body = CreateRequestBody {
        payload: payload.filter(|_| items.is_none()).map(str::to_string),
        resource,
        action,
        items,
        duration: duration.map(DurationInput::text),
        reason: form.reason.clone().unwrap_or_default(),
        break_glass: form.break_glass.is_some(),
    };
    // Checked again: the form is the browser's to change.
    let return_to = kept_return_to(&app, form.return_to.as_deref()).ok().flatten();
    match app.file(caller.who(), &body.try_into()?).await {
        Ok(request) => Ok(see_other_with(
            &request_link(&request.id, return_to.as_deref()),
            Flash::Sent,
        )),
        // A refusal the requester can fix is shown on the form, with what they typed.
        Err(
            e @ (ServiceError::Invalid(_)
            | ServiceError::Forbidden(_)
            | ServiceError::RetryLater { .. }
            | ServiceError::OverLimit(Limit::FieldLength | Limit::Pending, _)),
        ) => {
            let (status, limit) = match &e {
                ServiceError::RetryLater { limit, .. } => (StatusCode::TOO_MANY_REQUESTS, Some(*limit)),
                ServiceError::OverLimit(limit, _) if *limit == Limit::Pending => {
                    (StatusCode::TOO_MANY_REQUESTS, Some(*limit))
                }
                ServiceError::OverLimit(limit, _) => (StatusCode::UNPROCESSABLE_ENTITY, Some(*limit)),
                _ => (StatusCode::UNPROCESSABLE_ENTITY, None),
            };
            let page = NewPage {
                chrome: Chrome::for_caller(&caller, "new", &csrf),
                error: Some(e.to_string()),
                // What was chosen stays on offer and chosen, whatever else matches.
                finder: {
                    let mut found = finder(
                        &app,
                        &caller,
                        CatalogSearch {
                            q: match chosen.as_slice() {
                                [(resource, _)] => Some(resource.to_string()),
                                _ => None,
                            },
                            ..CatalogSearch::default()
                        },
                    );
                    for target in &mut found.targets {
                        target.selected = form.targets.contains(&target.value);
                    }
                    found
                },
                duration: duration.unwrap_or_default().to_string(),
                reason: form.reason.unwrap_or_default(),
                payload: form.payload.unwrap_or_default(),
                return_to,
                return_to_problem: None,
            };
            let mut response = (status, render(&page)).into_response();
            if let Some(limit) = limit {
                // Counted like any other call over a limit.
                response.extensions_mut().insert(crate::error::LimitHit(limit));
            }
            if let ServiceError::RetryLater { after, .. } = &e {
                response.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    crate::error::retry_after_seconds(*after).into(),
                );
            }
            Ok(response)
        }
        Err(e) => Err(e.into()),
    }
}
