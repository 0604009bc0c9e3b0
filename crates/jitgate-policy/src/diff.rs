//! `jitgate policy diff`: the effective change in access between two policy versions, for
//! review in pull requests. Every known principal, and a stand-in member of every known
//! group, is asked about every resource and action under both versions; differences are
//! reported as gained, lost, weaker or stronger.
//!
//! Conditions on the request context are judged for one representative request: a Wednesday
//! at 10:00 UTC, the workflow's default duration, a reason that names a ticket, no CI claims.

use crate::{Explanation, Policy, Verdict};
use jitgate_core::{DurationSecs, Identity, PrincipalKind, Step, Timestamp};
use serde::Serialize;
use std::collections::BTreeSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// A new ability.
    Gained,
    /// An ability gone.
    Lost,
    /// Fewer approvals, automatic where review was needed, or longer access.
    Weaker,
    /// More approvals, review where it was automatic, or shorter access.
    Stronger,
    /// Different but not simply weaker or stronger (other approver groups).
    Changed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// A principal, or `group:NAME` for any member of a group.
    pub subject: String,
    pub resource: String,
    pub action: String,
    /// `request`, `break_glass` or `max_duration`.
    pub ability: String,
    pub kind: ChangeKind,
    pub before: String,
    pub after: String,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = match self.kind {
            ChangeKind::Gained => '+',
            ChangeKind::Lost => '-',
            ChangeKind::Weaker | ChangeKind::Stronger | ChangeKind::Changed => '~',
        };
        let kind = format!("{:?}", self.kind).to_lowercase();
        write!(
            f,
            "{sign} {}: {} {} on {}: {kind}: {} -> {}",
            self.subject, self.ability, self.action, self.resource, self.before, self.after
        )
    }
}

fn representative_time() -> Timestamp {
    chrono::DateTime::from_timestamp(1_767_780_000, 0).unwrap_or_default()
}

fn describe(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Refused(_) => "refused".into(),
        Verdict::Automatic => "automatic".into(),
        Verdict::NeedsApproval(steps) => format!(
            "needs {}",
            steps
                .iter()
                .map(|s| format!("{} from {}", s.approvals, s.group))
                .collect::<Vec<_>>()
                .join(" and ")
        ),
    }
}

fn total(steps: &[Step]) -> u32 {
    steps.iter().map(|s| s.approvals).sum()
}

fn duration_text(d: Option<DurationSecs>) -> String {
    d.map(|d| d.to_string()).unwrap_or_else(|| "none".into())
}

fn identity_in(policy: &Policy, subject: &str) -> Identity {
    if let Some(group) = subject.strip_prefix("group:") {
        return Identity {
            principal: format!("member-of-{group}"),
            groups: vec![group.to_string()],
            kind: PrincipalKind::User,
            ci: None,
        };
    }
    match policy.rules().principal(subject) {
        Some(entry) => entry.identity.clone(),
        None => Identity {
            principal: subject.to_string(),
            groups: Vec::new(),
            kind: PrincipalKind::User,
            ci: None,
        },
    }
}

/// Every effective difference between `old` and `new`, in a stable order.
pub fn diff(old: &Policy, new: &Policy) -> Vec<Change> {
    let at = representative_time();
    let mut subjects: BTreeSet<String> = BTreeSet::new();
    let mut targets: BTreeSet<(String, String)> = BTreeSet::new();
    for p in [old, new] {
        for entry in p.principals() {
            subjects.insert(entry.identity.principal.clone());
            for g in &entry.identity.groups {
                subjects.insert(format!("group:{g}"));
            }
        }
        for w in p.workflows() {
            targets.insert((w.resource.clone(), w.action.clone()));
        }
    }
    let mut changes = Vec::new();
    for subject in &subjects {
        for (resource, action) in &targets {
            let before = old.explain(&identity_in(old, subject), resource, action, None, at);
            let after = new.explain(&identity_in(new, subject), resource, action, None, at);
            compare(subject, resource, action, &before, &after, &mut changes);
        }
    }
    changes
}

fn compare(
    subject: &str,
    resource: &str,
    action: &str,
    before: &Explanation,
    after: &Explanation,
    out: &mut Vec<Change>,
) {
    let mut push = |ability: &str, kind: ChangeKind, b: String, a: String| {
        out.push(Change {
            subject: subject.to_string(),
            resource: resource.to_string(),
            action: action.to_string(),
            ability: ability.to_string(),
            kind,
            before: b,
            after: a,
        })
    };
    let (b, a) = (&before.verdict, &after.verdict);
    let kind = match (b, a) {
        (Verdict::Refused(_), Verdict::Refused(_)) => None,
        (Verdict::Refused(_), _) => Some(ChangeKind::Gained),
        (_, Verdict::Refused(_)) => Some(ChangeKind::Lost),
        (Verdict::Automatic, Verdict::Automatic) => None,
        (Verdict::NeedsApproval(_), Verdict::Automatic) => Some(ChangeKind::Weaker),
        (Verdict::Automatic, Verdict::NeedsApproval(_)) => Some(ChangeKind::Stronger),
        (Verdict::NeedsApproval(x), Verdict::NeedsApproval(y)) if x == y => None,
        (Verdict::NeedsApproval(x), Verdict::NeedsApproval(y)) => Some(match total(x).cmp(&total(y)) {
            std::cmp::Ordering::Greater => ChangeKind::Weaker,
            std::cmp::Ordering::Less => ChangeKind::Stronger,
            std::cmp::Ordering::Equal => ChangeKind::Changed,
        }),
    };
    if let Some(kind) = kind {
        push("request", kind, describe(b), describe(a));
    }
    let both_requestable = !matches!(b, Verdict::Refused(_)) && !matches!(a, Verdict::Refused(_));
    if both_requestable && before.max_duration != after.max_duration {
        let kind = if after.max_duration > before.max_duration {
            ChangeKind::Weaker
        } else {
            ChangeKind::Stronger
        };
        push(
            "max_duration",
            kind,
            duration_text(before.max_duration),
            duration_text(after.max_duration),
        );
    }
    let kind = match (before.break_glass, after.break_glass) {
        (None, Some(_)) => Some(ChangeKind::Gained),
        (Some(_), None) => Some(ChangeKind::Lost),
        (Some(x), Some(y)) if y > x => Some(ChangeKind::Weaker),
        (Some(x), Some(y)) if y < x => Some(ChangeKind::Stronger),
        _ => None,
    };
    if let Some(kind) = kind {
        push(
            "break_glass",
            kind,
            duration_text(before.break_glass),
            duration_text(after.break_glass),
        );
    }
}
