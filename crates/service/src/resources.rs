//! What a caller may ask for: every resource and action a workflow lets them request, with
//! what each would take (automatic, or whose approvals). The API's `GET /v1/resources`, the
//! CLI's `jitgate resources` and the web UI's new-request page all list from here, so they
//! never disagree about what someone may request.

use crate::app::App;
use crate::auth::Caller;
use crate::ServiceError;
use jitgate_core::Step;
use std::collections::BTreeMap;

/// The most resources one page lists.
pub const MAX_PAGE: u32 = 500;

/// Which resources to list.
#[derive(Debug, Clone, Default)]
pub struct ResourceQuery {
    /// Text the name or the description contains (any case).
    pub search: Option<String>,
    /// Only resources of this kind.
    pub kind: Option<String>,
    /// Only resources with every one of these labels.
    pub labels: BTreeMap<String, String>,
    /// Page size, 1 to [`MAX_PAGE`].
    pub limit: u32,
    /// The last name of the previous page: the page starts after it.
    pub after: Option<String>,
}

/// One action a caller may request on a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestableAction {
    pub action: String,
    /// Granted at once, without a reviewer.
    pub automatic: bool,
    /// The approvals it waits for otherwise.
    pub needs: Vec<Step>,
    pub description: Option<String>,
    /// The longest a grant may last.
    pub max_duration: jitgate_core::DurationSecs,
    /// The request must name the exact command or statement, and the grant allows only it.
    pub action_bound: bool,
    /// The grant allows exactly one check.
    pub single_use: bool,
    /// The labels the catalog declares for the action (`effect = "read"`); for an MCP
    /// server's tool, what the tool does.
    pub labels: BTreeMap<String, String>,
}

/// A resource with the actions the caller may request on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestableResource {
    pub name: String,
    /// The catalog's kind, when the catalog declares the resource.
    pub kind: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub description: Option<String>,
    pub actions: Vec<RequestableAction>,
}

impl App {
    /// Every resource `caller` may request, all pages at once (for a form that offers them).
    pub fn all_requestable(&self, caller: &Caller) -> Result<Vec<RequestableResource>, ServiceError> {
        let mut query = ResourceQuery {
            limit: MAX_PAGE,
            ..ResourceQuery::default()
        };
        let mut all = Vec::new();
        loop {
            let (page, next) = self.requestable(caller, &query)?;
            all.extend(page);
            match next {
                Some(next) => query.after = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// The resources `caller` may request, by name, a page at a time; the second value is
    /// where the next page starts, if there is one.
    pub fn requestable(
        &self,
        caller: &Caller,
        query: &ResourceQuery,
    ) -> Result<(Vec<RequestableResource>, Option<String>), ServiceError> {
        if !(1..=MAX_PAGE).contains(&query.limit) {
            return Err(ServiceError::invalid(format!(
                "limit: {} is out of range; use 1 to {MAX_PAGE}",
                query.limit
            )));
        }
        let policy = self.policy();
        let who = caller.who();
        let now = crate::clock::now();
        let search = query.search.as_deref().map(str::to_lowercase);
        let contains = |text: Option<&str>, needle: &str| text.is_some_and(|t| contains_any_case(t, needle));
        let mut page: Vec<RequestableResource> = Vec::new();
        let mut more = false;
        // Walk the resources in name order from the page's start and stop once the page is
        // full: the cheap tests (kind, labels, text) come first, Cedar only for what passes.
        for (name, workflows) in policy.rules().resources_after(query.after.as_deref()) {
            let declared = policy.rules().catalog().resource(name);
            if query
                .kind
                .as_deref()
                .is_some_and(|k| declared.map(|r| r.kind.as_str()) != Some(k))
                || !query
                    .labels
                    .iter()
                    .all(|(k, v)| declared.and_then(|r| r.labels.get(k)) == Some(v))
            {
                continue;
            }
            let description = declared.and_then(|r| r.description.as_deref());
            let resource_matches = search
                .as_deref()
                .is_none_or(|s| contains_any_case(name, s) || contains(description, s));
            let mut actions = Vec::new();
            for workflow in workflows {
                let text_matches = resource_matches
                    || search
                        .as_deref()
                        .is_some_and(|s| contains(workflow.description.as_deref(), s));
                let may_request =
                    workflow.requesters.is_empty() || workflow.requesters.iter().any(|g| who.groups.contains(g));
                if !text_matches || !may_request {
                    continue;
                }
                let Some(verdict) = policy.prospect(who, workflow, now) else {
                    continue;
                };
                let needs = match verdict {
                    jitgate_policy::Verdict::NeedsApproval(steps) => steps,
                    _ => Vec::new(),
                };
                actions.push(RequestableAction {
                    action: workflow.action.clone(),
                    automatic: needs.is_empty(),
                    needs,
                    description: workflow.description.clone(),
                    max_duration: workflow.max_duration,
                    action_bound: workflow.action_bound,
                    single_use: workflow.single_use,
                    labels: workflow.action_labels.clone(),
                });
            }
            if actions.is_empty() {
                continue;
            }
            if page.len() == query.limit as usize {
                more = true;
                break;
            }
            page.push(RequestableResource {
                name: name.to_string(),
                kind: declared.map(|r| r.kind.clone()),
                labels: declared.map(|r| r.labels.clone()).unwrap_or_default(),
                description: description.map(str::to_string),
                actions,
            });
        }
        let next = more.then(|| page.last().map(|r| r.name.clone())).flatten();
        Ok((page, next))
    }
}

/// Whether `text` contains `needle` (already lower case) in any case. A search walks every
/// resource's name and description, so the common all-ASCII case compares in place rather
/// than lower-casing a copy of each.
fn contains_any_case(text: &str, needle: &str) -> bool {
    if needle.is_ascii() {
        let needle = needle.as_bytes();
        return needle.is_empty()
            || text
                .as_bytes()
                .windows(needle.len())
                .any(|window| window.eq_ignore_ascii_case(needle));
    }
    text.to_lowercase().contains(needle)
}

#[cfg(test)]
mod tests {
    use super::contains_any_case;

    #[test]
    fn a_search_matches_in_any_case_and_beyond_ascii() {
        assert!(contains_any_case("Prod-DB of Payments", "prod-db"));
        assert!(contains_any_case("prod-db", ""));
        assert!(!contains_any_case("prod-db", "staging"));
        assert!(!contains_any_case("db", "prod-db"));
        assert!(contains_any_case("Zürich Ledger", "zürich"));
        assert!(contains_any_case("ZÜRICH ledger", "zürich"));
        assert!(!contains_any_case("Zurich", "zürich"));
    }
}

/// What a form needs to guide someone asking for one action on one resource: what the
/// workflow is for, how long by default and at most, and what the request must carry. Read
/// from the same policy `file` judges by, so the form never asks for what filing refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilingGuide {
    pub resource: String,
    pub action: String,
    /// The workflow's description, else the catalog's for the resource.
    pub description: Option<String>,
    /// Whether the caller may file it as a request (else only break glass on it).
    pub may_request: bool,
    /// Granted at once, without a reviewer.
    pub automatic: bool,
    /// The approvals it waits for otherwise.
    pub needs: Vec<Step>,
    pub default_duration: jitgate_core::DurationSecs,
    pub max_duration: jitgate_core::DurationSecs,
    pub reason_required: bool,
    /// The reason must mention a ticket the workflow's pattern accepts.
    pub asks_for_ticket: bool,
    /// A ticket reference the pattern accepts, when one of the common shapes does.
    pub ticket_example: Option<&'static str>,
    /// The pattern finds `ticket_example` only at the start of the reason.
    pub ticket_at_start: bool,
    /// What the policy says about the ticket to mention (`ticket_hint`), in its words.
    pub ticket_hint: Option<String>,
    /// The request names the exact command or statement, and the grant allows only it.
    pub action_bound: bool,
    pub single_use: bool,
    /// The caller may break glass on it, for at most this long.
    pub break_glass: Option<jitgate_core::DurationSecs>,
}

/// The most break-glass procedures [`App::break_glass_choices`] offers (a policy has a
/// handful; the form is not the place for thousands).
pub const MAX_BREAK_GLASS_CHOICES: usize = 100;

impl App {
    /// How `caller` would ask for `action` on `resource`: `None` when they may neither
    /// request it nor break glass on it (or no workflow governs it).
    pub fn filing_guide(&self, caller: &Caller, resource: &str, action: &str) -> Option<FilingGuide> {
        let policy = self.policy();
        let workflow = policy.rules().workflow_arc(resource, action)?;
        let who = caller.who();
        let now = crate::clock::now();
        let in_requesters =
            workflow.requesters.is_empty() || workflow.requesters.iter().any(|g| who.groups.contains(g));
        let verdict = in_requesters.then(|| policy.prospect(who, &workflow, now)).flatten();
        // Cedar's judgement as `file` makes it (agents never may), without the limits a
        // reason must meet: a ticket pattern is the form's to ask for, not a reason to hide
        // the procedure.
        let break_glass = policy.break_glass_prospect(who, &workflow, now);
        if verdict.is_none() && break_glass.is_none() {
            return None;
        }
        let needs = match &verdict {
            Some(jitgate_policy::Verdict::NeedsApproval(steps)) => steps.clone(),
            _ => Vec::new(),
        };
        let description = workflow.description.clone().or_else(|| {
            policy
                .rules()
                .catalog()
                .resource(resource)
                .and_then(|r| r.description.clone())
        });
        Some(FilingGuide {
            resource: resource.to_string(),
            action: action.to_string(),
            description,
            may_request: verdict.is_some(),
            automatic: verdict.is_some() && needs.is_empty(),
            needs,
            default_duration: workflow.default_duration.min(workflow.max_duration),
            max_duration: workflow.max_duration,
            reason_required: workflow.reason_required,
            asks_for_ticket: workflow.ticket_pattern.is_some(),
            ticket_example: workflow.ticket_example(),
            ticket_at_start: workflow
                .ticket_shape()
                .is_some_and(|(_, place)| place == jitgate_policy::TicketPlace::Start),
            ticket_hint: workflow.ticket_hint.clone(),
            action_bound: workflow.action_bound,
            single_use: workflow.single_use,
            break_glass,
        })
    }

    /// The (resource, action) pairs `caller` may break glass on but not request: a form lists
    /// them beside what they may request, so an emergency is one choice away. In name order,
    /// the first [`MAX_BREAK_GLASS_CHOICES`].
    pub fn break_glass_choices(&self, caller: &Caller) -> Vec<FilingGuide> {
        self.break_glass_guides(caller, |g| !g.may_request)
    }

    /// Every (resource, action) pair `caller` may break glass on, requestable or not, in name
    /// order, the first [`MAX_BREAK_GLASS_CHOICES`]: what a form offers break-glass for while
    /// nothing is chosen.
    pub fn break_glass_reach(&self, caller: &Caller) -> Vec<FilingGuide> {
        self.break_glass_guides(caller, |_| true)
    }

    /// The guides of procedures `caller` may break glass on that `keep` keeps, walked in name
    /// order and filtered before the first [`MAX_BREAK_GLASS_CHOICES`] are taken, so what is
    /// offered is the same whatever order the policy holds its workflows in. Only procedures
    /// naming one of the caller's groups are judged (a Cedar decision each).
    fn break_glass_guides(&self, caller: &Caller, keep: impl Fn(&FilingGuide) -> bool) -> Vec<FilingGuide> {
        let policy = self.policy();
        let who = caller.who();
        let mut candidates: Vec<(&str, &str)> = policy
            .workflows()
            .filter(|w| {
                w.break_glass
                    .as_ref()
                    .is_some_and(|bg| bg.groups.iter().any(|g| who.groups.contains(g)))
            })
            .map(|w| (w.resource.as_str(), w.action.as_str()))
            .collect();
        candidates.sort_unstable();
        candidates
            .into_iter()
            .filter_map(|(resource, action)| self.filing_guide(caller, resource, action))
            .filter(|g| g.break_glass.is_some() && keep(g))
            .take(MAX_BREAK_GLASS_CHOICES)
            .collect()
    }

    /// The groups whose members may request something, in name order: whom a person who may
    /// request nothing should ask to be added to.
    pub fn requesting_groups(&self) -> Vec<String> {
        let policy = self.policy();
        let groups: std::collections::BTreeSet<String> =
            policy.workflows().flat_map(|w| w.requesters.iter().cloned()).collect();
        groups.into_iter().collect()
    }
}
