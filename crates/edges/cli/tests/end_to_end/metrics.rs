//! `/metrics` as the tools that scrape it read it: Prometheus text 0.0.4 by default, checked by
//! `promtool check metrics` (Debian's `prometheus` package), and OpenMetrics for scrapers that
//! ask for it, parsed by the reference Python client's OpenMetrics parser (Debian's
//! `python3-prometheus-client`). scripts/test.sh installs both when missing.

use crate::support::*;
use serde_json::json;
use std::io::Write;
use std::process::{Command, Stdio};

/// Scrape with `accept` (none when `None`): the content type and the body.
fn scrape(s: &Server, accept: Option<&str>) -> (String, String) {
    let mut request = s.http.get(format!("{}/metrics", s.url));
    if let Some(accept) = accept {
        request = request.header("Accept", accept);
    }
    let response = request.send().unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    (content_type, response.text().unwrap())
}

/// Run `program args` with `input` on its standard input: exit code and everything it printed.
fn run_with_input(program: &str, args: &[&str], input: &str) -> (i32, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e} (scripts/test.sh installs it)"));
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn metrics_pass_promtool_as_text_004_and_parse_as_openmetrics() {
    let s = Server::start();
    // Some of every kind: counters with labels, a gauge, a histogram.
    s.file("demo-alice", json!({"resource": "staging-db", "action": "read"}));
    s.check("alice", "staging-db", "read", None);
    s.check("mallory", "staging-db", "read", None);

    // Without Accept, with Prometheus's 0.0.4 Accept, and with */*: text 0.0.4, which promtool
    // checks and lints (counters named after their `_total` series, HELP and TYPE for each).
    for accept in [None, Some("text/plain;version=0.0.4"), Some("*/*")] {
        let (content_type, text) = scrape(&s, accept);
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{accept:?}: {content_type}"
        );
        assert!(!text.contains("# EOF"), "{text}");
        assert!(text.contains("# TYPE jitgate_checks_total counter\n"), "{text}");
        assert!(
            text.contains("jitgate_checks_total{outcome=\"allow\"} 1\n"),
            "the series keep their names: {text}"
        );
        let (code, problems) = run_with_input("promtool", &["check", "metrics"], &text);
        assert_eq!(code, 0, "promtool check metrics ({accept:?}): {problems}\n{text}");
        assert!(problems.trim().is_empty(), "{problems}");
    }

    // Asked for OpenMetrics (as Prometheus asks): OpenMetrics, as before, parsed by the
    // reference parser, with the same family and series names as always.
    let prometheus_accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (content_type, openmetrics) = scrape(&s, Some(prometheus_accept));
    assert!(
        content_type.starts_with("application/openmetrics-text; version=1.0.0"),
        "{content_type}"
    );
    assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
    assert!(
        openmetrics.contains("jitgate_checks_total{outcome=\"allow\"} 1\n"),
        "{openmetrics}"
    );
    let parse = "import sys\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
        for family in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   for sample in family.samples:\n\
        \x20       print(family.type, family.name, sample.name, sample.labels.get('outcome', ''), sample.value)\n";
    let (code, parsed) = run_with_input("/usr/bin/python3", &["-c", parse], &openmetrics);
    assert_eq!(code, 0, "the OpenMetrics parser refused it: {parsed}\n{openmetrics}");
    for line in [
        "counter jitgate_checks jitgate_checks_total allow 1",
        "counter jitgate_checks jitgate_checks_total deny 1",
        "gauge jitgate_active_grants jitgate_active_grants  1",
        "histogram jitgate_check_duration_seconds jitgate_check_duration_seconds_count  2",
    ] {
        assert!(parsed.lines().any(|l| l == line), "{line} in:\n{parsed}");
    }
}
