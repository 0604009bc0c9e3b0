//! The audit log's page and the policy explainer.

use super::*;

#[derive(Deserialize, Default)]
pub struct AuditForm {
    #[serde(default)]
    pub(super) principal: String,
    #[serde(default)]
    pub(super) resource: String,
    #[serde(default)]
    pub(super) action: String,
    #[serde(default)]
    pub(super) kind: String,
    #[serde(default)]
    pub(super) request_id: String,
    pub(super) before: Option<i64>,
}

pub struct EventRow {
    pub(super) seq: i64,
    pub(super) at: String,
    pub(super) at_text: String,
    pub(super) kind: &'static str,
    pub(super) actor: String,
    pub(super) subject: String,
    pub(super) request_id: Option<String>,
    pub(super) resource: String,
    pub(super) action: String,
    pub(super) comment: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
pub(super) struct AuditPage {
    pub(super) chrome: Chrome,
    pub(super) f: AuditForm,
    pub(super) kinds: Vec<String>,
    pub(super) events: Vec<EventRow>,
    pub(super) next: Option<String>,
    pub(super) verified: String,
}

pub(super) const AUDIT_PAGE: u32 = 100;

/// The newest events first, a page at a time, with the API's filters.
pub async fn audit(
    State(app): State<Arc<App>>,
    Extension(csrf): Extension<CsrfToken>,
    caller: Allowed<op::ReadAudit>,
    Query(f): Query<AuditForm>,
) -> Result<Response, ApiError> {
    let some = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
    if let Some(kind) = some(&f.kind) {
        if !jitgate_core::audit::EventKind::ALL.iter().any(|k| k.as_str() == kind) {
            return Err(ApiError::Invalid(format!("kind: '{kind}' is not an event kind")));
        }
    }
    // The store reads oldest first after a sequence number: find the window that ends just
    // before `before` (or at the head) and show it newest first.
    let head = app.store.audit_head().await?;
    let end = f.before.map_or(head, |b| (b - 1).min(head));
    let filter = |after: i64| AuditFilter {
        request_id: some(&f.request_id),
        principal: some(&f.principal),
        resource: some(&f.resource),
        action: some(&f.action),
        kind: some(&f.kind),
        since: None,
        after_seq: Some(after),
        limit: 5000,
    };
    // Walk back in steps until a page's worth matches (bounded: filters may match rarely).
    let mut matched = Vec::new();
    let mut window_end = end;
    for _ in 0..20 {
        if window_end <= 0 || matched.len() >= AUDIT_PAGE as usize {
            break;
        }
        let start = (window_end - 5000).max(0);
        let mut events: Vec<_> = app
            .store
            .audit_events(&filter(start))
            .await?
            .into_iter()
            .filter(|e| e.seq <= window_end)
            .collect();
        events.reverse();
        matched.extend(events);
        window_end = start;
    }
    matched.truncate(AUDIT_PAGE as usize);
    let next = (matched.len() == AUDIT_PAGE as usize)
        .then(|| matched.last().map(|e| e.seq))
        .flatten()
        .map(|before| {
            let query = serde_urlencoded::to_string([
                ("principal", f.principal.as_str()),
                ("resource", f.resource.as_str()),
                ("action", f.action.as_str()),
                ("kind", f.kind.as_str()),
                ("request_id", f.request_id.as_str()),
                ("before", &before.to_string()),
            ])
            .unwrap_or_default();
            format!("/ui/audit?{query}")
        });
    let events = matched
        .into_iter()
        .map(|e| EventRow {
            seq: e.seq,
            at: e.event.at.to_rfc3339(),
            at_text: when(e.event.at),
            kind: e.event.kind.as_str(),
            actor: shown(&e.event.actor),
            subject: shown(&e.event.subject),
            request_id: e.event.request_id,
            resource: e.event.resource,
            action: e.event.action,
            comment: e.event.comment.as_deref().map(shown).unwrap_or_default(),
        })
        .collect();
    // Only the count: the template says once, around a real <code>, how to verify the log.
    let verified = format!("{} in the log.", jitgate_core::text::counted(head, "event", "events"));
    Ok(render(&AuditPage {
        chrome: Chrome::for_caller(&caller, "audit", &csrf),
        f,
        kinds: jitgate_core::audit::EventKind::ALL
            .iter()
            .map(|k| k.as_str().to_string())
            .collect(),
        events,
        next,
        verified,
    }))
}

// ---- explain ----

#[derive(Deserialize, Default)]
pub struct ExplainForm {
    #[serde(default)]
    pub(super) resource: String,
    #[serde(default)]
    pub(super) action: String,
    #[serde(default)]
    pub(super) principal: String,
}

pub struct Answer {
    pub(super) summary: String,
    pub(super) facts: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "explain.html")]
pub(super) struct ExplainPage {
    pub(super) chrome: Chrome,
    pub(super) resource: String,
    pub(super) action: String,
    pub(super) principal: String,
    pub(super) answer: Option<Answer>,
}

pub async fn explain(
    State(app): State<Arc<App>>,
    Extension(csrf): Extension<CsrfToken>,
    caller: Allowed<op::ExplainPolicy>,
    Query(form): Query<ExplainForm>,
) -> Result<Response, ApiError> {
    let answer = if form.resource.trim().is_empty() || form.action.trim().is_empty() {
        None
    } else {
        let policy = app.policy();
        let principal = Some(form.principal.trim()).filter(|p| !p.is_empty());
        let subject = app.explain_subject(&caller, principal)?;
        let (resource, action) = (form.resource.trim(), form.action.trim());
        let explanation = policy.explain(&subject, resource, action, None, now());
        let json = jitgate_policy::explanation_json(&subject.principal, resource, action, &explanation);
        let facts = json
            .as_object()
            .map(|o| {
                o.iter()
                    // `workflow` is `governed by` as data; the page shows the sentence.
                    .filter(|(k, v)| !matches!(k.as_str(), "summary" | "workflow") && !v.is_null())
                    .map(|(k, v)| (k.replace('_', " "), fact_text(v)))
                    .collect()
            })
            .unwrap_or_default();
        Some(Answer {
            summary: json["summary"].as_str().unwrap_or_default().to_string(),
            facts,
        })
    };
    Ok(render(&ExplainPage {
        chrome: Chrome::for_caller(&caller, "explain", &csrf),
        resource: form.resource,
        action: form.action,
        principal: form.principal,
        answer,
    }))
}

/// One value of the policy's explanation, as a person reads it.
pub(super) fn fact_text(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "yes".into(),
        Value::Bool(false) => "no".into(),
        Value::Array(items) if items.is_empty() => "nothing".into(),
        Value::Array(items) => items
            .iter()
            .map(|item| match (item["approvals"].as_u64(), item["group"].as_str()) {
                (Some(n), Some(group)) => format!(
                    "{} from {group}",
                    jitgate_core::text::counted(n, "approval", "approvals")
                ),
                _ => fact_text(item),
            })
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}
