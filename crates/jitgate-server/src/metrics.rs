//! Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabel {
    pub sink: String,
    pub outcome: String,
}

pub struct Metrics {
    registry: Registry,
    /// Events shipped to live audit sinks, by sink and outcome (sent, failed: retried).
    pub audit_sink_events: Family<SinkLabel, Counter>,
    /// Denied checks recorded in the log (as `check.denied` events) and those that fell into a
    /// window's overflow event because too many distinct ones were denied at once.
    pub denied_checks_overflow: Counter,
    /// Access requests by what became of them: filed, approved, denied, cancelled, expired.
    pub requests: Family<OutcomeLabel, Counter>,
    /// Checks by answer: allow or deny.
    pub checks: Family<OutcomeLabel, Counter>,
    /// The two check counters, resolved once so the check path does no label lookup.
    pub checks_allowed: Counter,
    pub checks_denied: Counter,
    /// Checks answered deny because the decision could not be made durable (fail closed).
    /// Any at all deserves an alarm.
    pub check_errors: Counter,
    pub check_seconds: Histogram,
    pub active_grants: Gauge,
    /// Grants ended, by how: revoked, expired, used.
    pub grants_ended: Family<OutcomeLabel, Counter>,
    /// Policy reloads: loaded or refused.
    pub policy_reloads: Family<OutcomeLabel, Counter>,
    /// Refused authentications, by reason: missing, malformed, unknown_token, expired_token,
    /// jwt, jwt_principal, proxy_untrusted, proxy_malformed.
    pub auth_failures: Family<OutcomeLabel, Counter>,
    /// Refused authentications held back because their source keeps failing.
    pub auth_throttled: Counter,
    /// Refused authentications answered at once because the most that may be held were held.
    pub auth_throttle_full: Counter,
    /// Failed provider deliveries, by operation: provision, deprovision.
    pub outbox_failures: Family<OutcomeLabel, Counter>,
    /// Time from when a deprovisioning fell due (a grant's end) to its acknowledgement.
    pub deprovision_lag_seconds: Histogram,
    /// Calls refused because a limit was reached, by limit: waiters, ...
    pub limits_exceeded: Family<OutcomeLabel, Counter>,
    /// Callers waiting for a decision right now.
    pub waiting: Gauge,
    /// Notifications by outcome: sent, refused (by the receiver, skipped), failed (retried).
    pub notifications: Family<OutcomeLabel, Counter>,
    /// Slack actions by outcome: approved, denied, refused (by the rules), unlinked (unknown
    /// Slack user), forged (bad or stale signature).
    pub slack_actions: Family<OutcomeLabel, Counter>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("jitgate");
        let requests = Family::<OutcomeLabel, Counter>::default();
        registry.register("access_requests", "Access requests by outcome", requests.clone());
        let checks = Family::<OutcomeLabel, Counter>::default();
        registry.register("checks", "Access checks by answer", checks.clone());
        // From 1 µs to about 8 ms: the check path lives at the low end.
        let check_seconds = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            1e-6, 2.0, 14,
        ));
        registry.register(
            "check_duration_seconds",
            "Time to decide a check, inside the server",
            check_seconds.clone(),
        );
        let active_grants = Gauge::default();
        registry.register("active_grants", "Grants currently active", active_grants.clone());
        let grants_ended = Family::<OutcomeLabel, Counter>::default();
        registry.register("grants_ended", "Grants ended, by how", grants_ended.clone());
        let policy_reloads = Family::<OutcomeLabel, Counter>::default();
        registry.register("policy_reloads", "Policy reloads by outcome", policy_reloads.clone());
        let auth_failures = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "auth_failures",
            "Refused authentications by reason",
            auth_failures.clone(),
        );
        let auth_throttled = Counter::default();
        registry.register(
            "auth_throttled",
            "Refused authentications delayed because their source keeps failing",
            auth_throttled.clone(),
        );
        let auth_throttle_full = Counter::default();
        registry.register(
            "auth_throttle_full",
            "Refused authentications answered without delay because auth.throttle.max_delayed were held",
            auth_throttle_full.clone(),
        );
        let outbox_failures = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "provider_failures",
            "Failed provider deliveries by operation",
            outbox_failures.clone(),
        );
        // From 10 ms to about 80 s.
        // Fine around the 1 s budget, so its percentiles can be read off the buckets.
        let deprovision_lag_seconds = Histogram::new([
            0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0,
            300.0,
        ]);
        registry.register(
            "deprovision_lag_seconds",
            "Time from a grant's end to its deprovisioning being acknowledged",
            deprovision_lag_seconds.clone(),
        );
        let limits_exceeded = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "limits_exceeded",
            "Calls refused because a limit was reached, by limit",
            limits_exceeded.clone(),
        );
        let waiting = Gauge::default();
        registry.register("waiting_callers", "Callers waiting for a decision", waiting.clone());
        let notifications = Family::<OutcomeLabel, Counter>::default();
        registry.register("notifications", "Notifications by outcome", notifications.clone());
        let slack_actions = Family::<OutcomeLabel, Counter>::default();
        registry.register("slack_actions", "Slack actions by outcome", slack_actions.clone());
        let audit_sink_events = Family::<SinkLabel, Counter>::default();
        registry.register(
            "audit_sink_events",
            "Audit events shipped to live sinks, by sink and outcome",
            audit_sink_events.clone(),
        );
        let denied_checks_overflow = Counter::default();
        registry.register(
            "denied_checks_overflow",
            "Denied checks counted only in a window's overflow event (too many distinct ones)",
            denied_checks_overflow.clone(),
        );
        let check_errors = Counter::default();
        registry.register(
            "check_errors",
            "Checks answered deny because the decision could not be recorded (fail closed); alarm on any",
            check_errors.clone(),
        );
        let checks_allowed = checks
            .get_or_create(&OutcomeLabel {
                outcome: "allow".into(),
            })
            .clone();
        let checks_denied = checks.get_or_create(&OutcomeLabel { outcome: "deny".into() }).clone();
        Metrics {
            registry,
            audit_sink_events,
            denied_checks_overflow,
            requests,
            checks,
            checks_allowed,
            checks_denied,
            check_errors,
            check_seconds,
            active_grants,
            grants_ended,
            policy_reloads,
            auth_failures,
            auth_throttled,
            auth_throttle_full,
            outbox_failures,
            deprovision_lag_seconds,
            limits_exceeded,
            waiting,
            notifications,
            slack_actions,
        }
    }

    pub fn count_outbox_failure(&self, operation: &str) {
        self.outbox_failures
            .get_or_create(&OutcomeLabel {
                outcome: operation.to_string(),
            })
            .inc();
    }

    pub fn count_auth_failure(&self, reason: &str) {
        self.auth_failures
            .get_or_create(&OutcomeLabel {
                outcome: reason.to_string(),
            })
            .inc();
    }

    pub fn count_notification(&self, outcome: &str) {
        self.notifications
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn count_audit_sink(&self, sink: &str, outcome: &str, events: u64) {
        self.audit_sink_events
            .get_or_create(&SinkLabel {
                sink: sink.to_string(),
                outcome: outcome.to_string(),
            })
            .inc_by(events);
    }

    pub fn count_slack(&self, outcome: &str) {
        self.slack_actions
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn count_limit(&self, limit: &str) {
        self.limits_exceeded
            .get_or_create(&OutcomeLabel {
                outcome: limit.to_string(),
            })
            .inc();
    }

    pub fn count_request(&self, outcome: &str) {
        self.requests
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn count_grant_end(&self, how: &str) {
        self.grants_ended
            .get_or_create(&OutcomeLabel {
                outcome: how.to_string(),
            })
            .inc();
    }

    pub fn count_policy_reload(&self, outcome: &str) {
        self.policy_reloads
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
