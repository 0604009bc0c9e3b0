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
    /// A refusal that belongs to no one field, shown above the form.
    pub(super) error: Option<String>,
    pub(super) finder: Finder,
    /// Everything below the choice: what it is, and the fields it takes.
    pub(super) fields: Fields,
    /// Where to go once granted (a forward-auth 403's app), carried through filing.
    pub(super) return_to: Option<String>,
    /// Why a `return_to` given was not kept.
    pub(super) return_to_problem: Option<String>,
    /// The caller may request nothing at all: whom to ask instead.
    pub(super) empty: Option<String>,
}

/// `/ui/new/fields`: the part of the form below the choice, for what was chosen (htmx swaps
/// it in when the choice changes).
#[derive(Template)]
#[template(path = "new_fields.html")]
pub(super) struct FieldsFragment {
    pub(super) fields: Fields,
}

/// One chosen target, described for the person asking.
pub(super) struct Guide {
    /// "write on prod-db".
    pub(super) title: String,
    pub(super) description: Option<String>,
    /// Who approves, in words: "1 approval from sre", "granted at once".
    pub(super) approval: String,
    /// "30m unless you say otherwise; at most 1h".
    pub(super) durations: String,
    /// Single use, exact action.
    pub(super) notes: Vec<&'static str>,
}

/// The fields below the choice: only those that apply to what was chosen (all of them, with
/// hints, while nothing is), each with its error beside it.
#[derive(Default)]
pub(super) struct Fields {
    pub(super) guides: Vec<Guide>,
    pub(super) duration: String,
    pub(super) duration_hint: String,
    pub(super) reason: String,
    pub(super) reason_hint: String,
    /// Offered only for action-bound workflows (or while nothing is chosen).
    pub(super) payload_applies: bool,
    pub(super) payload: String,
    pub(super) payload_hint: String,
    /// Offered only to whom may break glass on what is chosen (or on anything, while nothing is).
    pub(super) break_glass_hint: Option<String>,
    pub(super) errors: FieldErrors,
    /// Rendered as `/ui/new/fields` answers a change of choice: the guides and hints only,
    /// never the fields typed into.
    pub(super) fragment: bool,
    /// In the fragment: the payload field appears or goes (it applied before the change and
    /// not now, or the other way round), so its part is swapped; else only its hint is.
    pub(super) payload_part_changes: bool,
}

/// A refusal shown beside its field.
pub(super) struct FieldError {
    /// In plain words.
    pub(super) text: String,
    /// The field as the API names it (`reason`, `items[1].payload`), for scripts and tests.
    pub(super) path: String,
}

/// The refusals beside their fields; `first` is the one that gets the focus.
#[derive(Default)]
pub(super) struct FieldErrors {
    pub(super) target: Option<FieldError>,
    pub(super) duration: Option<FieldError>,
    pub(super) reason: Option<FieldError>,
    pub(super) payload: Option<FieldError>,
    pub(super) break_glass: Option<FieldError>,
}

impl FieldErrors {
    /// The first invalid field in the form's order, by its element id.
    pub(super) fn first(&self) -> &'static str {
        [
            (self.target.is_some(), "target"),
            (self.duration.is_some(), "duration"),
            (self.reason.is_some(), "reason"),
            (self.payload.is_some(), "payload"),
            (self.break_glass.is_some(), "break_glass"),
        ]
        .into_iter()
        .find(|(invalid, _)| *invalid)
        .map_or("", |(_, id)| id)
    }
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
                "granted at once".to_string()
            } else {
                needs_in_words(&a.needs)
            };
            let mut label = format!("{} on {}", a.action, r.name);
            // What it is for, in the workflow's words (else the resource's), then the terms.
            if let Some(description) = a.description.as_deref().or(r.description.as_deref()) {
                label.push_str(&format!(": {description}"));
            }
            label.push_str(&format!(" · {approval} · up to {}", a.max_duration));
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
    /// A request of the caller's to ask for again (`Request again` on a request's page).
    pub(super) again: Option<String>,
}

/// Choose `resource|action` on the form: the caller's guide for it says whether they may ask
/// for it (a lookup, whatever the catalog's size), and the choice is added when the search did
/// not list it. `Err` says why it cannot be asked for.
pub(super) fn preselect(
    app: &App,
    caller: &Caller,
    finder: &mut Finder,
    resource: &str,
    action: &str,
) -> Result<(), String> {
    let value = format!("{resource}|{action}");
    let guide = app
        .filing_guide(caller, resource, action)
        .ok_or_else(|| cannot_ask(resource, action))?;
    if let Some(target) = finder.targets.iter_mut().find(|t| t.value == value) {
        target.selected = true;
        return Ok(());
    }
    let mut target = target_of_guide(&guide);
    target.selected = true;
    finder.targets.insert(0, target);
    Ok(())
}

/// A choice on the form for what a guide describes, worded as the catalog's choices are.
fn target_of_guide(g: &jitgate_service::resources::FilingGuide) -> Target {
    let mut label = format!("{} on {}", g.action, g.resource);
    if let Some(description) = &g.description {
        label.push_str(&format!(": {description}"));
    }
    let most = if g.may_request {
        g.max_duration
    } else {
        g.break_glass.unwrap_or(g.max_duration)
    };
    label.push_str(&format!(" · {} · up to {most}", approvals_in_words(g)));
    if g.action_bound {
        label.push_str(" · exact action");
    }
    Target {
        value: format!("{}|{}", g.resource, g.action),
        label,
        selected: false,
    }
}

pub(super) fn cannot_ask(resource: &str, action: &str) -> String {
    format!(
        "You may not ask for {} on {}: no workflow lets you request it. Ask the people who run jitgate, or choose something else.",
        quoted_from_link(action),
        quoted_from_link(resource)
    )
}

/// The most characters of a name taken from a link that a message repeats.
const MAX_ECHOED_NAME: usize = 64;

/// A name from the link as a message may repeat it: at most [`MAX_ECHOED_NAME`] characters,
/// control and invisible ones shown escaped. Anyone can write a link, and what it says must
/// not become a paragraph of their choosing on jitgate's pages.
fn quoted_from_link(name: &str) -> String {
    let mut shown: String = name.chars().take(MAX_ECHOED_NAME).collect();
    if shown.len() < name.len() {
        shown.push('…');
    }
    jitgate_core::text::escape_for_display(&shown).into_owned()
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

/// What the caller chose, described: `None` for a target they may not ask for (filing says why).
fn guides_for(app: &App, caller: &Caller, chosen: &[(&str, &str)]) -> Vec<jitgate_service::resources::FilingGuide> {
    chosen
        .iter()
        .filter_map(|(resource, action)| app.filing_guide(caller, resource, action))
        .collect()
}

fn approvals_in_words(g: &jitgate_service::resources::FilingGuide) -> String {
    if !g.may_request {
        return "break-glass only: granted at once, reviewed afterwards".into();
    }
    if g.automatic {
        return "granted at once, no approval needed".into();
    }
    needs_in_words(&g.needs)
}

/// The approvals a request waits for: "2 approvals from sre and 1 approval from security".
fn needs_in_words(needs: &[jitgate_core::Step]) -> String {
    needs
        .iter()
        .map(|s| format!("{} from {}", approvals(s.approvals), s.group))
        .collect::<Vec<_>>()
        .join(" and ")
}

/// The fields below the choice for `chosen`, keeping what was typed.
pub(super) fn fields_for(
    app: &App,
    caller: &Caller,
    chosen: &[(&str, &str)],
    duration: String,
    reason: String,
    payload: String,
) -> Fields {
    let found = guides_for(app, caller, chosen);
    let guides: Vec<Guide> = found
        .iter()
        .map(|g| Guide {
            title: format!("{} on {}", g.action, g.resource),
            description: g.description.clone(),
            approval: approvals_in_words(g),
            durations: match (g.may_request, g.default_duration == g.max_duration) {
                (true, true) => format!("{}, the most it allows", g.max_duration),
                (true, false) => format!(
                    "{} unless you say otherwise; at most {}",
                    g.default_duration, g.max_duration
                ),
                (false, _) => format!("at most {}", g.break_glass.unwrap_or(g.max_duration)),
            },
            notes: [
                (g.action_bound, "bound to the exact action you give below"),
                (g.single_use, "single use: the grant ends at its first use"),
            ]
            .into_iter()
            .filter_map(|(applies, note)| applies.then_some(note))
            .collect(),
        })
        .collect();
    let nothing_chosen = found.is_empty();
    let duration_hint = match found.iter().map(|g| durations_of(g).1).min() {
        Some(max) if found.len() == 1 => format!(
            "Like 15m, 1h or 90s. Empty for {}; at most {max}.",
            durations_of(&found[0]).0
        ),
        Some(max) => format!("Like 15m, 1h or 90s; at most {max} for all of them together."),
        None => "Like 15m, 1h or 90s; empty for the workflow's default.".into(),
    };
    let ticket = found.iter().find(|g| g.asks_for_ticket);
    let reason_hint = match ticket {
        Some(g) => ticket_words(g),
        None if found.iter().any(|g| g.reason_required) => "Say why you need access; reviewers read it.".into(),
        None if nothing_chosen => "Say why you need access. Some workflows ask for a ticket such as OPS-123.".into(),
        None => "Say why you need access.".into(),
    };
    let payload_applies = nothing_chosen || found.iter().any(|g| g.action_bound);
    let payload_hint = if nothing_chosen {
        "Only for workflows marked “exact action”: the command or artifact digest the grant is bound to, on one line; leave it empty otherwise.".into()
    } else {
        "The exact command or artifact digest, on one line: reviewers approve exactly this, and the grant allows only this.".into()
    };
    // Break-glass is offered where the policy lets the caller take it (the same judgement
    // filing makes); while nothing is chosen, if they may take it anywhere.
    let break_glass_max = if nothing_chosen {
        app.break_glass_reach(caller).iter().filter_map(|g| g.break_glass).max()
    } else if found.len() == chosen.len() && found.iter().all(|g| g.break_glass.is_some()) {
        // Break-glass files the whole request as one emergency: offered only when every
        // chosen target allows it, for the shortest of their maximums.
        found.iter().filter_map(|g| g.break_glass).min()
    } else {
        None
    };
    let break_glass_hint = break_glass_max.map(|max| {
        format!("Emergency only: granted at once for at most {max}, without a reviewer; it raises an alert and is reviewed afterwards.")
    });
    Fields {
        guides,
        duration,
        duration_hint,
        reason,
        reason_hint,
        payload_applies,
        payload,
        payload_hint,
        break_glass_hint,
        errors: FieldErrors::default(),
        fragment: false,
        payload_part_changes: false,
    }
}

/// The duration a choice gets when none is given, and the most it may have: a workflow's own,
/// or its break-glass procedure's for whom may only break glass on it (break-glass files for
/// the procedure's maximum unless told otherwise).
fn durations_of(
    g: &jitgate_service::resources::FilingGuide,
) -> (jitgate_core::DurationSecs, jitgate_core::DurationSecs) {
    match (g.may_request, g.break_glass) {
        (false, Some(most)) => (most, most),
        _ => (g.default_duration, g.max_duration),
    }
}

/// The reason's hint for a workflow that asks for a ticket: the policy's own words
/// (`ticket_hint`), else an example where the pattern finds it.
fn ticket_words(g: &jitgate_service::resources::FilingGuide) -> String {
    if let Some(hint) = &g.ticket_hint {
        return hint.clone();
    }
    match g.ticket_example {
        Some(example) if g.ticket_at_start => format!("Start the reason with a ticket such as {example}."),
        Some(example) => format!("Mention a ticket such as {example}."),
        None => "Mention the ticket this is for: this workflow asks for one.".into(),
    }
}

/// What to say beside a reason refused for want of a ticket: the policy's `ticket_hint`, else
/// an example where the pattern finds it (at the start, for a pattern anchored there).
/// `None`: no example fits, and the service's message (which names the pattern) says more.
fn no_ticket_words(g: &jitgate_service::resources::FilingGuide) -> Option<String> {
    if let Some(hint) = &g.ticket_hint {
        return Some(hint.clone());
    }
    g.ticket_example.map(|example| {
        if g.ticket_at_start {
            format!("Start the reason with a ticket such as {example}.")
        } else {
            format!("Mention a ticket such as {example} in the reason.")
        }
    })
}

/// `RESOURCE|ACTION` as chosen; `None` when it is not of that shape.
fn split_target(target: &str) -> Option<(&str, &str)> {
    target.rsplit_once('|')
}

/// `/ui/new/fields?target=R|A&...[&payload_shown=yes]`: what describes a new choice (its
/// guides and hints, the payload and break-glass parts), swapped in beside the fields. Only
/// the choice travels: what was typed stays in the fields (a reason or payload in a URL would
/// land in access logs, and a line break in it would be refused as a URL's).
pub async fn new_fields(
    State(app): State<Arc<App>>,
    caller: Allowed<op::FileRequest>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let payload_shown = query
        .iter()
        .any(|(name, value)| name == "payload_shown" && value == "yes");
    let form = FileForm::from_fields(query);
    let chosen: Vec<(&str, &str)> = form.targets.iter().filter_map(|t| split_target(t)).collect();
    let mut fields = fields_for(&app, &caller, &chosen, String::new(), String::new(), String::new());
    fields.fragment = true;
    fields.payload_part_changes = fields.payload_applies != payload_shown;
    Ok(render(&FieldsFragment { fields }))
}

/// What a request asked for, to ask for it again: targets, duration, reason and payload
/// (break-glass never: an emergency is declared afresh).
struct Again {
    targets: Vec<(String, String)>,
    duration: String,
    reason: String,
    payload: String,
    /// Its items had different exact actions; the form holds one.
    payloads_differ: bool,
}

/// The words for a request that cannot be asked for again: the same whether it is missing,
/// hidden or someone else's, so that ids cannot be probed.
const NOT_AGAIN: &str =
    "That request cannot be asked for again here: it is not one of your requests. Choose what to ask for below.";

async fn again(app: &App, caller: &Caller, id: &str) -> Result<Again, String> {
    let request = app
        .visible_request(caller, id)
        .await
        .map_err(|_| NOT_AGAIN.to_string())?;
    if request.requester != caller.who().principal {
        return Err(NOT_AGAIN.into());
    }
    // The request's own resource and action are its first item; `items` holds the others.
    let targets = std::iter::once((request.resource.clone(), request.action.clone()))
        .chain(request.items.iter().map(|i| (i.resource.clone(), i.action.clone())))
        .collect();
    // The form sends one exact action, to each action-bound item: a request whose items
    // had different ones is pre-filled with the first, and says so.
    let mut payloads: Vec<&String> = Vec::new();
    for p in request
        .payload
        .iter()
        .chain(request.items.iter().filter_map(|i| i.payload.as_ref()))
    {
        if !payloads.contains(&p) {
            payloads.push(p);
        }
    }
    Ok(Again {
        targets,
        duration: request.duration.to_string(),
        reason: request.reason.clone(),
        payload: payloads.first().map(|p| p.to_string()).unwrap_or_default(),
        payloads_differ: payloads.len() > 1,
    })
}

/// The choices the caller may only break glass on, as the catalog search would find them.
fn add_break_glass_choices(app: &App, caller: &Caller, finder: &mut Finder) {
    let q = finder.q.trim().to_lowercase();
    if !finder.kind.trim().is_empty() || !finder.label.trim().is_empty() {
        return;
    }
    for g in app.break_glass_choices(caller) {
        let value = format!("{}|{}", g.resource, g.action);
        let matches = q.is_empty()
            || g.resource.to_lowercase().contains(&q)
            || g.description.as_deref().is_some_and(|d| d.to_lowercase().contains(&q));
        if matches && !finder.targets.iter().any(|t| t.value == value) {
            finder.targets.push(Target {
                label: format!(
                    "{} on {} · break-glass only: granted at once, reviewed afterwards · up to {}",
                    g.action,
                    g.resource,
                    g.break_glass.unwrap_or(g.max_duration)
                ),
                value,
                selected: false,
            });
        }
    }
}

/// Whom to ask when the caller may request nothing at all: `None` when they may request
/// something (or the search merely found nothing).
fn empty_state(app: &App, finder: &Finder) -> Option<String> {
    let searched = !(finder.q.trim().is_empty() && finder.kind.trim().is_empty() && finder.label.trim().is_empty());
    if searched || !finder.targets.is_empty() || finder.problem.is_some() {
        return None;
    }
    let groups = app.requesting_groups();
    let such_as = match groups.as_slice() {
        [] => return Some("No workflow lets you ask for anything, and the policy names no group that may. Ask the people who run jitgate (admins) to add a workflow for what you need.".into()),
        [one] => one.clone(),
        [first @ .., last] => format!("{} or {last}", first.iter().take(4).cloned().collect::<Vec<_>>().join(", ")),
    };
    Some(format!(
        "No workflow lets you ask for anything. Ask the people who run jitgate (admins) to add you to a group such as {such_as}."
    ))
}

pub async fn new_request(
    State(app): State<Arc<App>>,
    Extension(csrf): Extension<CsrfToken>,
    caller: Allowed<op::FileRequest>,
    Query(mut search): Query<CatalogSearch>,
    Query(pick): Query<Preselect>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let some = |v: Option<String>| v.map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let target = some(pick.resource).zip(some(pick.action));
    // What was chosen before a search (`target=R|A`, repeated) stays chosen through it.
    let mut kept: Vec<(String, String)> = Vec::new();
    for (resource, action) in pairs
        .iter()
        .filter(|(name, _)| name == "target")
        .filter_map(|(_, value)| split_target(value))
    {
        let pair = (resource.to_string(), action.to_string());
        if !kept.contains(&pair) {
            kept.push(pair);
        }
        if kept.len() == jitgate_core::model::MAX_ITEMS {
            break;
        }
    }
    if let Some((resource, _)) = &target {
        if search.q.as_deref().is_none_or(|q| q.trim().is_empty()) {
            search.q = Some(resource.clone());
        }
    }
    let mut finder = finder(&app, &caller, search);
    add_break_glass_choices(&app, &caller, &mut finder);
    let empty = empty_state(&app, &finder);
    let mut errors = Vec::new();
    let mut typed = (String::new(), String::new(), String::new());
    let mut wanted: Vec<(String, String)> = target.into_iter().chain(kept).collect();
    if let Some(id) = some(pick.again) {
        match again(&app, &caller, &id).await {
            Ok(earlier) => {
                if earlier.payloads_differ {
                    errors.push(
                        "That request gave its items different exact actions; this form sends one exact action to each item that takes one, so the first is filled in. Ask for the others in requests of their own."
                            .to_string(),
                    );
                }
                wanted = earlier.targets;
                typed = (earlier.duration, earlier.reason, earlier.payload);
            }
            Err(problem) => errors.push(problem),
        }
    }
    // What the link asks for and cannot be had is said once: one choice by name, several
    // by how many (a link may hold 20).
    let refused: Vec<String> = wanted
        .iter()
        .filter_map(|(resource, action)| preselect(&app, &caller, &mut finder, resource, action).err())
        .collect();
    match refused.as_slice() {
        [] => {}
        [one] => errors.push(one.clone()),
        several => errors.push(format!(
            "{} choices in the link cannot be asked for: no workflow lets you request them. Choose from the list below.",
            several.len()
        )),
    }
    let chosen: Vec<(&str, &str)> = finder
        .targets
        .iter()
        .filter(|t| t.selected)
        .filter_map(|t| split_target(&t.value))
        .collect();
    let fields = fields_for(&app, &caller, &chosen, typed.0, typed.1, typed.2);
    let (return_to, return_to_problem) = match kept_return_to(&app, pick.return_to.as_deref()) {
        Ok(kept) => (kept, None),
        Err(problem) => (None, Some(problem)),
    };
    Ok(render(&NewPage {
        chrome: Chrome::for_caller(&caller, "new", &csrf),
        error: (!errors.is_empty()).then(|| errors.join(" ")),
        finder,
        fields,
        return_to,
        return_to_problem,
        empty,
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
    /// More distinct targets were sent than one request may hold: `targets` keeps the first
    /// [`jitgate_core::model::MAX_ITEMS`], and the form is refused beside the choice.
    pub(super) too_many: bool,
}

impl FileForm {
    /// Read the posted fields; `target` repeats when several things are chosen. Targets are
    /// kept once each and at most as many as a request holds, so whatever is sent, the work
    /// done for them (a guide each, with its Cedar decisions) is bounded.
    pub(super) fn from_fields(fields: Vec<(String, String)>) -> FileForm {
        let mut form = FileForm::default();
        for (name, value) in fields {
            match name.as_str() {
                "target" => {
                    if form.targets.contains(&value) {
                        continue;
                    }
                    if form.targets.len() < jitgate_core::model::MAX_ITEMS {
                        form.targets.push(value);
                    } else {
                        form.too_many = true;
                    }
                }
                "duration" => form.duration = Some(value),
                "reason" => form.reason = Some(lines_as_typed(&value)),
                "payload" => form.payload = Some(value),
                "break_glass" => form.break_glass = Some(value),
                "return_to" => form.return_to = Some(value),
                _ => {}
            }
        }
        form
    }
}

/// A reason's line breaks as the person typed them: browsers send a textarea's line breaks
/// as CRLF (HTML's form encoding), which the service refuses as a carriage return the person
/// never saw; each CRLF, and a lone CR, becomes LF, as the CLI and API send them. The payload
/// is never changed (an action-bound grant allows its bytes exactly): its field is one line,
/// which the service requires, so the browser has no line break to encode.
fn lines_as_typed(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// The field the form's own refusals of the choice name (nothing chosen, too much chosen):
/// beside the choice, in words written for the form.
const FORM_CHOICE: &str = "target";

/// Where a refusal goes on the form: beside the field it is about, or (`None`) above the form.
/// Read from the error's type (its field and problem), never from its words.
fn beside_field(
    e: &ServiceError,
    chosen: &[(&str, &str)],
    guide_of: impl Fn(&str, &str) -> Option<jitgate_service::resources::FilingGuide>,
    errors: &mut FieldErrors,
) -> bool {
    let Some((field, invalid)) = refused_input(e) else {
        return false;
    };
    let slot = match field {
        FORM_CHOICE | "resource" | "action" => &mut errors.target,
        "duration" => &mut errors.duration,
        "reason" => &mut errors.reason,
        "payload" => &mut errors.payload,
        "break_glass" => &mut errors.break_glass,
        _ => return false,
    };
    let subject = match field {
        "resource" | "action" => "That choice",
        "duration" => "The duration",
        "reason" => "The reason",
        "payload" => "The exact action",
        _ => "Break-glass",
    };
    // Else what the service says, after the field's name in words; shown escaped, since it
    // may quote what was typed (a NUL, a bidi override).
    let chose = chosen.get(invalid.item.unwrap_or(0));
    let worded = match &invalid.problem {
        // In the words of the chosen workflow's guide, which knows where a ticket goes.
        Some(jitgate_core::Problem::NoTicket { .. }) => {
            chose.and_then(|(resource, action)| guide_of(resource, action).as_ref().and_then(no_ticket_words))
        }
        _ => problem_in_words(invalid),
    };
    let said = match field {
        // The form's own refusals of the choice are its own words already.
        FORM_CHOICE => Some(invalid.message.clone()),
        // The service names the catalog and the CLI; on the form, the choice went away (a
        // policy reload since the page was shown) or was never on offer.
        "resource" | "action" => Some(
            "That choice cannot be asked for now: no workflow governs it (the policy may have changed since this page was shown). Choose again from the list.".to_string(),
        ),
        _ => worded,
    };
    let said = said.unwrap_or_else(|| {
        format!(
            "{subject} {}.",
            jitgate_core::text::escape_for_display(invalid.message.trim_end_matches('.'))
        )
    });
    let text = match invalid.item.and_then(|i| chosen.get(i)) {
        Some((resource, action)) => format!("For {action} on {resource}: {said}"),
        None => said,
    };
    let path = match invalid.item {
        Some(i) => format!("items[{i}].{field}"),
        None => field.to_string(),
    };
    *slot = Some(FieldError { text, path });
    true
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
        .map(|t| split_target(t).ok_or_else(|| ApiError::Invalid("target: choose what to ask for".into())))
        .collect::<Result<_, _>>()?;
    let duration = form.duration.as_deref().map(str::trim).filter(|d| !d.is_empty());
    let payload = form.payload.as_deref().filter(|p| !p.trim().is_empty());
    // Checked again: the form is the browser's to change.
    let return_to = kept_return_to(&app, form.return_to.as_deref()).ok().flatten();
    // One choice files as it always has; several become the items of one request, each
    // judged by its own workflow. The payload goes with the action-bound items only (a
    // deploy's command is not a database read's): with none action-bound it goes with each,
    // so the service says why it does not apply rather than the form dropping it unseen.
    let policy = app.policy();
    let bound: Vec<bool> = chosen
        .iter()
        .map(|(resource, action)| policy.rules().workflow(resource, action).is_ok_and(|w| w.action_bound))
        .collect();
    let any_bound = bound.contains(&true);
    let (resource, action, items) = match chosen.as_slice() {
        [] => (None, None, None),
        [(resource, action)] => (Some(resource.to_string()), Some(action.to_string()), None),
        several => (
            None,
            None,
            Some(
                several
                    .iter()
                    .zip(&bound)
                    .map(|((resource, action), bound)| ItemBody {
                        resource: resource.to_string(),
                        action: action.to_string(),
                        payload: payload.filter(|_| *bound || !any_bound).map(str::to_string),
                    })
                    .collect(),
            ),
        ),
    };
    let filed = if chosen.is_empty() {
        // Nothing chosen: said beside the choice, like any other refusal of a field.
        Err(ServiceError::invalid_field(
            FORM_CHOICE,
            "Nothing is chosen: choose what to ask for.",
        ))
    } else if form.too_many {
        Err(ServiceError::invalid_field(
            FORM_CHOICE,
            format!(
                "More than {} things are chosen: ask for at most {} together.",
                jitgate_core::model::MAX_ITEMS,
                jitgate_core::model::MAX_ITEMS
            ),
        ))
    } else {
        let body = CreateRequestBody {
            payload: payload.filter(|_| items.is_none()).map(str::to_string),
            resource,
            action,
            items,
            duration: duration.map(DurationInput::text),
            reason: form.reason.clone().unwrap_or_default(),
            break_glass: form.break_glass.is_some(),
        };
        app.file(caller.who(), &body.try_into()?).await
    };
    match filed {
        Ok(request) => Ok(see_other_with(
            &request_link(&request.id, return_to.as_deref()),
            Flash::Sent,
        )),
        // A refusal the requester can fix is shown on the form, with what they typed.
        Err(
            e @ (ServiceError::Invalid(_)
            | ServiceError::TooLong(_)
            | ServiceError::Forbidden(_)
            | ServiceError::RetryLater { .. }
            | ServiceError::OverLimit(Limit::Pending, _)),
        ) => {
            let status = match e.limit() {
                Some(Limit::Pending | Limit::Rate | Limit::Waiters) => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            let mut fields = fields_for(
                &app,
                &caller,
                &chosen,
                duration.unwrap_or_default().to_string(),
                form.reason.clone().unwrap_or_default(),
                form.payload.clone().unwrap_or_default(),
            );
            let guide_of = |resource: &str, action: &str| app.filing_guide(&caller, resource, action);
            let error = (!beside_field(&e, &chosen, guide_of, &mut fields.errors)).then(|| e.to_string());
            let page = NewPage {
                chrome: Chrome::for_caller(&caller, "new", &csrf),
                error,
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
                    add_break_glass_choices(&app, &caller, &mut found);
                    for target in &mut found.targets {
                        target.selected = form.targets.contains(&target.value);
                    }
                    found
                },
                fields,
                return_to,
                return_to_problem: None,
                empty: None,
            };
            let mut response = (status, render(&page)).into_response();
            if let Some(limit) = e.limit() {
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
