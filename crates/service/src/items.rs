//! Requests for several things at once (issue #21): each item is judged by its own workflow,
//! and what the items share (one window, one extension) is the strictest of what their
//! workflows allow. Errors name the item by its index in the filed list (`items[3].resource`).

use crate::inputs::{NewItem, NewRequest};
use crate::ServiceError;
use jitgate_core::machine::{self, ExtensionLimits, FiledItem, NewIds, Transition};
use jitgate_core::model::MAX_ITEMS;
use jitgate_core::{Ask, DomainError, DurationSecs, Identity, Request, Timestamp};
use jitgate_policy::Policy;

/// An error about item `i`, named by its place in the list.
fn about_item(i: usize, item: &NewItem, e: DomainError) -> ServiceError {
    match e {
        e @ (DomainError::Invalid { .. } | DomainError::TooLong { .. }) => match ServiceError::from(e) {
            ServiceError::Invalid(invalid) => ServiceError::Invalid(invalid.in_item(i)),
            ServiceError::TooLong(invalid) => ServiceError::TooLong(invalid.in_item(i)),
            e => e,
        },
        other => {
            let what = format!("items[{i}] ({} on {})", item.action, item.resource);
            match ServiceError::from(other) {
                ServiceError::Forbidden(m) => ServiceError::Forbidden(format!("{what}: {m}")),
                ServiceError::NotFound(m) => ServiceError::NotFound(format!("{what}: {m}")),
                ServiceError::Conflict(m) => ServiceError::Conflict(format!("{what}: {m}")),
                e => e,
            }
        }
    }
}

/// A name must be typed as the catalog lists it: a control or invisible character (a
/// zero-width space, a bidi override) would make a look-alike of another resource.
fn check_name(i: usize, field: &str, value: &str) -> Result<(), ServiceError> {
    let bad = value
        .char_indices()
        .find(|&(_, c)| c.is_control() || (c != ' ' && jitgate_core::text::is_invisible(c)));
    match bad {
        None => Ok(()),
        Some((at, c)) => Err(ServiceError::invalid(format!(
            "items[{i}].{field}: contains U+{:04X} (a control or invisible character) at byte {at}; \
             type the name as `jitgate resources` lists it",
            c as u32
        ))),
    }
}

/// File a multi-item request: 1 to 20 items, no (resource, action) twice, each admitted by
/// its own workflow; the grants' one window is the shortest any item's workflow gives (an
/// asked duration longer than any item allows is refused, naming that item). Break-glass
/// needs every item's workflow to allow break-glass.
pub(crate) fn file(
    policy: &Policy,
    who: &Identity,
    body: &NewRequest,
    items: &[NewItem],
    ids: NewIds,
    at: Timestamp,
    mut mint_grant_id: impl FnMut() -> String,
) -> Result<Transition, ServiceError> {
    if !body.resource.is_empty() || !body.action.is_empty() || body.payload.is_some() {
        return Err(ServiceError::invalid(
            "items: give either resource, action (and payload) or items, not both",
        ));
    }
    if items.is_empty() || items.len() > MAX_ITEMS {
        return Err(ServiceError::invalid(format!(
            "items: {} items; a request asks for 1 to {MAX_ITEMS} things (file several requests for more)",
            items.len()
        )));
    }
    for (i, item) in items.iter().enumerate() {
        check_name(i, "resource", &item.resource)?;
        check_name(i, "action", &item.action)?;
        if let Some(j) = items[..i]
            .iter()
            .position(|other| other.resource == item.resource && other.action == item.action)
        {
            return Err(ServiceError::invalid(format!(
                "items[{i}].resource: {} on {} is already items[{j}]; ask for each resource and action once",
                item.action, item.resource
            )));
        }
    }
    let duration = body.duration.as_ref().map(|d| d.parse("duration")).transpose()?;
    let asks: Vec<Ask<'_>> = items
        .iter()
        .map(|item| Ask {
            resource: &item.resource,
            action: &item.action,
            duration,
            reason: &body.reason,
            payload: item.payload.as_deref(),
            break_glass: body.break_glass,
        })
        .collect();
    let mut admissions = Vec::with_capacity(items.len());
    for (i, (item, ask)) in items.iter().zip(&asks).enumerate() {
        admissions.push(policy.admit(who, ask, at).map_err(|e| about_item(i, item, e))?);
    }
    // One window for all: the shortest any item's workflow gives.
    let window = admissions
        .iter()
        .map(|a| a.duration)
        .fold(DurationSecs(u64::MAX), |a, b| if b.0 < a.0 { b } else { a });
    let mut admissions = admissions.into_iter();
    let Some(mut first) = admissions.next() else {
        return Err(ServiceError::invalid("items: give at least one item"));
    };
    first.duration = window;
    let further: Vec<FiledItem> = items
        .iter()
        .skip(1)
        .zip(admissions)
        .map(|(item, admission)| FiledItem {
            resource: item.resource.clone(),
            action: item.action.clone(),
            payload: item.payload.clone(),
            requirement: admission.requirement,
            grant_id: mint_grant_id(),
        })
        .collect();
    let Some(ask) = asks.first() else {
        return Err(ServiceError::invalid("items: give at least one item"));
    };
    Ok(machine::file_items(who, ask, first, further, ids, at))
}

/// What an extension of every item's grant may be: each item's workflow must allow it, and
/// the strictest limits hold for all (they keep one window).
pub(crate) fn extension_limits(
    policy: &Policy,
    who: &Identity,
    request: &Request,
    by: DurationSecs,
    reason: &str,
    now: Timestamp,
) -> Result<ExtensionLimits, DomainError> {
    let mut limits = policy.admit_extension(who, request, by, reason, now)?;
    for i in 1..request.item_count() {
        let Some(item) = request.item_request(i) else {
            continue;
        };
        let more = policy
            .admit_extension(who, &item, by, reason, now)
            .map_err(|e| match e {
                DomainError::Forbidden(m) => DomainError::Forbidden(format!("items[{i}]: {m}")),
                other => other,
            })?;
        limits.max_times = limits.max_times.min(more.max_times);
        if more.max_duration.0 < limits.max_duration.0 {
            limits.max_duration = more.max_duration;
        }
    }
    Ok(limits)
}

/// What the holder of a request's grants may still extend them by, by the rule an extension is
/// held to: [`extension_limits`] over every item and the machine's own checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionAllowance {
    /// Extensions left before the strictest item's workflow refuses more.
    pub times_left: u32,
    /// The longest the grants may last from the moment of an extension.
    pub max_duration: DurationSecs,
    /// Some item's workflow wants a reason for extending.
    pub reason_required: bool,
}

/// The reason an allowance is judged with when some workflow requires one: any words pass the
/// policy's own checks, as a holder's would.
const PROBE_REASON: &str = "how much longer may this last";

/// The allowance of `request`'s grants for `who` now, or the refusal an extension would get:
/// a dry run of an extension by one second through the same [`extension_limits`] and
/// `machine::extend` that a real one goes through, so the page never promises what is
/// refused. (A policy that judges the reason's words or the length asked for may still refuse a
/// particular extension: that refusal goes beside the field it is about.)
pub(crate) fn extension_allowance(
    policy: &Policy,
    who: &Identity,
    request: &Request,
    now: Timestamp,
) -> Result<ExtensionAllowance, DomainError> {
    let mut reason_required = false;
    for i in 0..request.item_count() {
        let Some(item) = request.item_request(i) else {
            continue;
        };
        reason_required |= policy.rules().workflow(&item.resource, &item.action)?.reason_required;
    }
    let reason = if reason_required { PROBE_REASON } else { "" };
    let probe = DurationSecs(1);
    let limits = extension_limits(policy, who, request, probe, reason, now)?;
    machine::extend(request, who, probe, reason, limits, now)?;
    let extensions = request.grant.as_ref().map_or(0, |g| g.extensions);
    Ok(ExtensionAllowance {
        times_left: limits.max_times.saturating_sub(extensions),
        max_duration: limits.max_duration,
        reason_required,
    })
}
