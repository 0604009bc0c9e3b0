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
            return Err(ServiceError::Invalid(format!(
                "limit: {} is out of range; use 1 to {MAX_PAGE}",
                query.limit
            )));
        }
        let policy = self.policy();
        let who = caller.who();
        let search = query.search.as_deref().map(str::to_lowercase);
        let mut by_name: BTreeMap<&str, RequestableResource> = BTreeMap::new();
        for workflow in policy.workflows() {
            let may_request =
                workflow.requesters.is_empty() || workflow.requesters.iter().any(|g| who.groups.contains(g));
            if !may_request
                || query
                    .after
                    .as_deref()
                    .is_some_and(|after| workflow.resource.as_str() <= after)
            {
                continue;
            }
            let resource = by_name.entry(workflow.resource.as_str()).or_insert_with(|| {
                // What the catalog says of it, when the catalog declares it.
                let declared = policy.rules().catalog().resource(&workflow.resource);
                RequestableResource {
                    name: workflow.resource.clone(),
                    kind: declared.map(|r| r.kind.clone()),
                    labels: declared.map(|r| r.labels.clone()).unwrap_or_default(),
                    description: declared.and_then(|r| r.description.clone()),
                    actions: Vec::new(),
                }
            });
            resource.actions.push(RequestableAction {
                action: workflow.action.clone(),
                automatic: workflow.auto_approve || workflow.steps.is_empty(),
                needs: if workflow.auto_approve {
                    Vec::new()
                } else {
                    workflow.steps.clone()
                },
                description: workflow.description.clone(),
                max_duration: workflow.max_duration,
                action_bound: workflow.action_bound,
            });
        }
        let matches = |r: &RequestableResource| {
            let text = search.as_deref().is_none_or(|s| {
                r.name.to_lowercase().contains(s)
                    || r.description.as_deref().is_some_and(|d| d.to_lowercase().contains(s))
                    || r.actions
                        .iter()
                        .any(|a| a.description.as_deref().is_some_and(|d| d.to_lowercase().contains(s)))
            });
            let kind = query.kind.as_deref().is_none_or(|k| r.kind.as_deref() == Some(k));
            let labels = query.labels.iter().all(|(k, v)| r.labels.get(k) == Some(v));
            text && kind && labels
        };
        let mut page: Vec<RequestableResource> = Vec::new();
        let mut more = false;
        for mut resource in by_name.into_values().filter(|r| matches(r)) {
            if page.len() == query.limit as usize {
                more = true;
                break;
            }
            resource.actions.sort_by(|a, b| a.action.cmp(&b.action));
            page.push(resource);
        }
        let next = more.then(|| page.last().map(|r| r.name.clone())).flatten();
        Ok((page, next))
    }
}
