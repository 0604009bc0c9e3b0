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
pub struct SinkNameLabel {
    pub sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabel {
    pub sink: String,
    pub outcome: String,
}

/// A call jitgate made to GitHub's REST API: why (callback, comment) and how it went.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GithubCallLabel {
    pub purpose: String,
    pub result: String,
}

pub struct Metrics {
    registry: Registry,
    /// GitHub webhook deliveries by outcome (`jitgate_github_webhooks_total`): filed,
    /// rejected, command, duplicate, ignored, unauthenticated, bad_request, failed.
    pub github_webhooks: Family<OutcomeLabel, Counter>,
    /// Calls to GitHub by purpose (callback, comment) and result (ok, retry, refused)
    /// (`jitgate_github_calls_total`).
    pub github_calls: Family<GithubCallLabel, Counter>,
    /// Events shipped to live audit sinks, by sink and outcome (sent, failed: retried).
    pub audit_sink_events: Family<SinkLabel, Counter>,
    /// Audit sinks that found the log rewound or forked under them (an event they shipped is
    /// gone or has another hash) and hold until an operator acts. Any at all is an alarm.
    pub audit_forks_detected: Family<SinkNameLabel, Counter>,
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
    /// 1 while this replica refuses the database's history (a failover lost what it had seen,
    /// or another primary forked the log): writes answer 503 until an operator accepts it.
    pub database_history_diverged: Gauge,
    /// Times this replica read other replicas' changes again after a gap in its change feed:
    /// `catch_up` (only what the audit log names since the last change heard) or `full`
    /// (every active grant).
    pub replica_resyncs: Family<OutcomeLabel, Counter>,
    /// Forward-auth answers by outcome (`jitgate_forward_auth_total`), resolved once so the
    /// path does no label lookup: allow, deny, unrouted, unauthenticated, bad_request.
    pub forward_auth: ForwardAuthCounters,
}

/// The counter of each forward-auth outcome.
#[derive(Clone, Debug)]
pub struct ForwardAuthCounters {
    pub allow: Counter,
    pub deny: Counter,
    pub unrouted: Counter,
    pub unauthenticated: Counter,
    pub bad_request: Counter,
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
        let github_webhooks = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "github_webhooks",
            "GitHub webhook deliveries by outcome",
            github_webhooks.clone(),
        );
        let github_calls = Family::<GithubCallLabel, Counter>::default();
        registry.register(
            "github_calls",
            "Calls to GitHub's REST API by purpose and result",
            github_calls.clone(),
        );
        let audit_sink_events = Family::<SinkLabel, Counter>::default();
        registry.register(
            "audit_sink_events",
            "Audit events shipped to live sinks, by sink and outcome",
            audit_sink_events.clone(),
        );
        let audit_forks_detected = Family::<SinkNameLabel, Counter>::default();
        registry.register(
            "audit_forks_detected",
            "Audit sinks that found the log rewound or forked under what they shipped (they hold); alarm on any",
            audit_forks_detected.clone(),
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
        let database_history_diverged = Gauge::default();
        registry.register(
            "database_history_diverged",
            "1 while the database's history diverged from what this replica saw (writes refused until an operator accepts it); alarm on 1",
            database_history_diverged.clone(),
        );
        let replica_resyncs = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "replica_resyncs",
            "Reads of other replicas' changes after a gap in the change feed, by how: catch_up or full",
            replica_resyncs.clone(),
        );
        let forward_auth_family = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "forward_auth",
            "Forward-auth answers by outcome: allow, deny, unrouted, unauthenticated, bad_request",
            forward_auth_family.clone(),
        );
        let outcome = |name: &str| {
            forward_auth_family
                .get_or_create(&OutcomeLabel { outcome: name.into() })
                .clone()
        };
        let forward_auth = ForwardAuthCounters {
            allow: outcome("allow"),
            deny: outcome("deny"),
            unrouted: outcome("unrouted"),
            unauthenticated: outcome("unauthenticated"),
            bad_request: outcome("bad_request"),
        };
        Metrics {
            registry,
            forward_auth,
            database_history_diverged,
            replica_resyncs,
            audit_sink_events,
            audit_forks_detected,
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
            github_webhooks,
            github_calls,
        }
    }

    pub fn count_github_webhook(&self, outcome: &str) {
        self.github_webhooks
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn count_github_call(&self, purpose: &str, result: &str) {
        self.github_calls
            .get_or_create(&GithubCallLabel {
                purpose: purpose.to_string(),
                result: result.to_string(),
            })
            .inc();
    }

    pub fn count_outbox_failure(&self, operation: &str) {
        self.outbox_failures
            .get_or_create(&OutcomeLabel {
                outcome: operation.to_string(),
            })
            .inc();
    }

    pub fn count_replica_resync(&self, how: &str) {
        self.replica_resyncs
            .get_or_create(&OutcomeLabel {
                outcome: how.to_string(),
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

    pub fn count_audit_fork(&self, sink: &str) {
        self.audit_forks_detected
            .get_or_create(&SinkNameLabel { sink: sink.to_string() })
            .inc();
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

    /// Every metric in OpenMetrics text (what the registry writes).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Every metric in the format the scraper asked for.
    pub fn encode_as(&self, format: Format) -> String {
        match format {
            Format::OpenMetrics => self.encode(),
            Format::Text004 => openmetrics_to_text_004(&self.encode()),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The exposition formats `/metrics` speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text, for scrapers that ask for `application/openmetrics-text`.
    OpenMetrics,
    /// Prometheus text format 0.0.4, for everyone else (`text/plain`, `*/*`, no Accept).
    Text004,
}

impl Format {
    /// The format an `Accept` header prefers: OpenMetrics when it accepts
    /// `application/openmetrics-text` at least as much as anything else it names (Prometheus
    /// itself sends `application/openmetrics-text;version=1.0.0,...,text/plain;version=0.0.4;q=0.5,*/*;q=0.1`),
    /// text 0.0.4 otherwise, the format every Prometheus-compatible tool reads.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let mut openmetrics = 0.0f32;
        let mut other = 0.0f32;
        for range in accept.unwrap_or("").split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .and_then(|(_, v)| v.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if media == "application/openmetrics-text" {
                openmetrics = openmetrics.max(q);
            } else if !media.is_empty() {
                other = other.max(q);
            }
        }
        if openmetrics > 0.0 && openmetrics >= other {
            Format::OpenMetrics
        } else {
            Format::Text004
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text004 => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// The registry's OpenMetrics text as Prometheus text 0.0.4. The samples stay exactly as they
/// are (so a counter's series keeps its `_total` name in both formats); what differs is around
/// them: a 0.0.4 counter family is named after its samples (`jitgate_checks_total`, where
/// OpenMetrics says `jitgate_checks`), and 0.0.4 has no `# UNIT`, no `# EOF`, no `_created`
/// series, no info type. prometheus-client writes only OpenMetrics, hence this translation;
/// jitgate uses no exemplars, which 0.0.4 could not carry.
fn openmetrics_to_text_004(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<(&str, &str)> = None;
    // The family whose samples follow, as OpenMetrics names it.
    let mut family = "";
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (renamed, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "gauge" | "histogram" | "summary" => (name.to_string(), kind),
                "info" => (format!("{name}_info"), "gauge"),
                "stateset" => (name.to_string(), "gauge"),
                _ => (name.to_string(), "untyped"),
            };
            if let Some((_, text)) = help.take().filter(|(helped, _)| *helped == name) {
                out.push_str(&format!("# HELP {renamed} {text}\n"));
            }
            out.push_str(&format!("# TYPE {renamed} {kind}\n"));
            family = name;
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let sample = line.split(['{', ' ']).next().unwrap_or("");
        if sample.strip_prefix(family).is_some_and(|suffix| suffix == "_created") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_picks_the_format() {
        use Format::*;
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        for (accept, format) in [
            (Some(prometheus), OpenMetrics),
            (Some("application/openmetrics-text"), OpenMetrics),
            (Some("Application/OpenMetrics-Text; version=1.0.0"), OpenMetrics),
            (Some("text/plain;version=0.0.4"), Text004),
            (
                Some("text/plain;version=0.0.4;q=1,application/openmetrics-text;q=0.5"),
                Text004,
            ),
            (Some("application/openmetrics-text;q=0"), Text004),
            (Some("*/*"), Text004),
            (Some(""), Text004),
            (None, Text004),
        ] {
            assert_eq!(Format::negotiate(accept), format, "{accept:?}");
        }
    }

    #[test]
    fn text_004_names_counters_after_their_samples_and_drops_what_only_openmetrics_has() {
        let metrics = Metrics::new();
        metrics.count_request("approved");
        metrics.check_seconds.observe(0.000_01);
        metrics.active_grants.set(2);
        let openmetrics = metrics.encode_as(Format::OpenMetrics);
        assert!(
            openmetrics.contains("# TYPE jitgate_access_requests counter\n"),
            "{openmetrics}"
        );
        assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");

        let text = metrics.encode_as(Format::Text004);
        assert!(
            text.contains("# HELP jitgate_access_requests_total Access requests by outcome."),
            "{text}"
        );
        assert!(
            text.contains("# TYPE jitgate_access_requests_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("\njitgate_access_requests_total{outcome=\"approved\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE jitgate_check_duration_seconds histogram\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE jitgate_active_grants gauge\njitgate_active_grants 2\n"),
            "{text}"
        );
        assert!(
            !text.contains("# EOF") && !text.contains("# UNIT") && !text.contains("_created"),
            "{text}"
        );
        // Every sample of the OpenMetrics text is in the 0.0.4 text, unchanged.
        let samples =
            |t: &str| -> Vec<String> { t.lines().filter(|l| !l.starts_with('#')).map(str::to_string).collect() };
        assert_eq!(samples(&openmetrics), samples(&text));
        // Every family has one TYPE line naming the series that follow it.
        let mut family = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                family = rest.split(' ').next().unwrap_or("").to_string();
            } else if !line.starts_with('#') {
                assert!(line.starts_with(&family), "{line} outside its family {family}");
            }
        }
    }

    #[test]
    fn created_series_are_dropped_from_text_004() {
        let openmetrics = "# HELP x_requests Requests.\n# TYPE x_requests counter\nx_requests_total 3\nx_requests_created 1.7e9\n# HELP x_up Up.\n# TYPE x_up gauge\n# UNIT x_up seconds\nx_up 1\n# EOF\n";
        assert_eq!(
            openmetrics_to_text_004(openmetrics),
            "# HELP x_requests_total Requests.\n# TYPE x_requests_total counter\nx_requests_total 3\n# HELP x_up Up.\n# TYPE x_up gauge\nx_up 1\n"
        );
    }
}
