//! The HTTP surface as clients nobody on this project wrote see it (issue #19): every error of
//! every API route in the contract's shape, whatever refused it; an OpenAPI document that
//! openapi-spec-validator accepts and that Schemathesis finds the server true to.

use crate::support::*;
use reqwest::blocking::RequestBuilder;
use serde_json::Value;

/// Send, and insist on an error of `status` in the contract's shape:
/// `{"error": {"code": "...", "message": "..."}}` as `application/json`, nothing else.
fn assert_api_error(what: &str, request: RequestBuilder, status: u16) -> Value {
    // A server refusing a large body answers before reading it all and closes; a client still
    // sending may lose that answer (a send error: the client's race), so it sends again.
    let response = (0..4)
        .find_map(|_| request.try_clone().expect("a body that can be sent again").send().ok())
        .unwrap_or_else(|| request.send().expect(what));
    assert_eq!(response.status().as_u16(), status, "{what}");
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = response.text().unwrap();
    assert!(
        content_type.starts_with("application/json"),
        "{what}: answered {content_type:?}, not JSON: {text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"));
    let object = body.as_object().unwrap_or_else(|| panic!("{what}: {body}"));
    assert_eq!(object.len(), 1, "{what}: only `error` at the top: {body}");
    let error = body["error"].as_object().unwrap_or_else(|| panic!("{what}: {body}"));
    assert_eq!(error.len(), 2, "{what}: `error` holds code and message: {body}");
    for field in ["code", "message"] {
        assert!(
            error[field].as_str().is_some_and(|s| !s.is_empty()),
            "{what}: error.{field} is a non-empty string: {body}"
        );
    }
    body
}

#[test]
fn every_refusal_of_every_route_is_an_api_error_in_the_contract_shape() {
    let s = Server::start();
    let (status, filed) = s.post(
        "/v1/requests",
        "demo-alice",
        serde_json::json!({"resource": "prod-db", "action": "read", "reason": "look at orders"}),
    );
    assert_eq!(status, 201, "{filed}");
    let id = id(&filed);
    let url = |path: &str| format!("{}{path}", s.url);
    let admin = |r: RequestBuilder| r.bearer_auth("demo-admin");
    let big = "x".repeat(260 * 1024);

    // Malformed JSON: 400, on bodies that are required and bodies that may be left out.
    for path in [
        "/v1/requests",
        "/v1/check",
        &format!("/v1/requests/{id}/approve"),
        "/v1/grants/g/done",
    ] {
        let v = assert_api_error(
            &format!("malformed JSON to {path}"),
            admin(s.http.post(url(path)))
                .header("content-type", "application/json")
                .body("{oops"),
            400,
        );
        assert_eq!(v["error"]["code"], "bad_request", "{path}: {v}");
    }

    // Another content type on an endpoint that takes JSON: 415.
    for path in [
        "/v1/requests",
        "/v1/check",
        "/v1/check/batch",
        &format!("/v1/requests/{id}/approve"),
        &format!("/v1/requests/{id}/deny"),
        "/v1/grants/g/revoke",
        "/v1/grants/g/done",
        "/v1/grants/g/extend",
    ] {
        for content_type in [Some("text/plain"), Some("application/x-www-form-urlencoded"), None] {
            let mut request = admin(s.http.post(url(path))).body("{\"comment\": \"x\"}");
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            let v = assert_api_error(&format!("{content_type:?} to {path}"), request, 415);
            assert_eq!(v["error"]["code"], "unsupported_media_type", "{path}: {v}");
            assert!(
                v["error"]["message"].as_str().unwrap().contains("application/json"),
                "{v}"
            );
        }
    }

    // A body over the limit, whoever reads it: a JSON extractor, an optional body, Slack's
    // form, and one sent without a length (chunked).
    for path in [
        "/v1/check",
        &format!("/v1/requests/{id}/approve"),
        "/v1/grants/g/done",
        "/v1/slack/interactions",
    ] {
        let v = assert_api_error(
            &format!("oversize body to {path}"),
            admin(s.http.post(url(path)))
                .header("content-type", "application/json")
                .body(big.clone()),
            413,
        );
        assert_eq!(v["error"]["code"], "payload_too_large", "{path}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("262144 bytes"), "{v}");
    }
    // A reader's body has no length known in advance: it is sent chunked. The server answers
    // as soon as the limit is passed and closes; a client still sending may then lose the
    // answer (a send error), which is the client's race, so it tries again.
    let chunked_answers = (0..5).find_map(|_| {
        let unsized_body = reqwest::blocking::Body::new(std::io::Read::take(std::io::repeat(b'x'), 260 * 1024));
        admin(s.http.post(url("/v1/requests")))
            .header("content-type", "application/json")
            .body(unsized_body)
            .send()
            .ok()
    });
    let response = chunked_answers.expect("one of five oversize chunked bodies got an answer");
    assert_eq!(response.status().as_u16(), 413);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let v: Value = response.json().unwrap();
    assert_eq!(v["error"]["code"], "payload_too_large", "{v}");

    // Unknown routes and methods.
    for path in ["/v1/nope", "/v2/requests", "/nope", "/v1/requests/a/b/c"] {
        let v = assert_api_error(&format!("GET {path}"), admin(s.http.get(url(path))), 404);
        assert_eq!(v["error"]["code"], "not_found", "{v}");
    }
    for (request, allow) in [
        (s.http.delete(url("/v1/check")), "POST"),
        (s.http.put(url(&format!("/v1/requests/{id}"))), "GET,HEAD"),
        (s.http.patch(url("/")), "GET,HEAD"),
        (s.http.get(url(&format!("/v1/requests/{id}/approve"))), "POST"),
    ] {
        let what = format!("{request:?}");
        let v = assert_api_error(&what, admin(request.try_clone().unwrap()), 405);
        assert_eq!(v["error"]["code"], "method_not_allowed", "{v}");
        let response = admin(request).send().unwrap();
        let allowed = response.headers().get("allow").map(|v| v.to_str().unwrap().to_string());
        assert_eq!(allowed.as_deref(), Some(allow), "{what}: the Allow header is kept");
    }

    // Query strings and paths that do not parse.
    for path in [
        "/v1/requests?limit=abc",
        "/v1/requests?limit=-1",
        "/v1/requests?limit=99999999999",
        "/v1/grants?limit=1.5",
        "/v1/audit?after=abc",
        "/v1/audit/checkpoints?through=x",
        "/v1/requests?unknown=1",
        "/v1/policy/explain",
    ] {
        let v = assert_api_error(&format!("GET {path}"), admin(s.http.get(url(path))), 422);
        assert_eq!(v["error"]["code"], "invalid_argument", "{v}");
    }
    for path in ["/v1/requests/%FF", "/v1/requests/%C3%28/approve", "/v1/grants/%FF/done"] {
        let request = if path.ends_with("approve") || path.ends_with("done") {
            s.http.post(url(path))
        } else {
            s.http.get(url(path))
        };
        let v = assert_api_error(path, admin(request), 400);
        assert_eq!(v["error"]["code"], "bad_request", "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("id"), "{v}");
    }

    // The web UI may answer with pages, but never with plain text.
    for path in ["/ui/requests/%FF", "/ui/static/nope", "/ui/nope"] {
        let response = admin(s.http.get(url(path))).send().unwrap();
        assert!(response.status().is_client_error(), "{path}: {}", response.status());
        let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
        assert!(content_type.starts_with("text/html"), "{path}: {content_type}");
    }
}

/// scripts/test-openapi.sh: openapi-spec-validator on `/openapi.json`, then Schemathesis with
/// all its checks as an admin and as a user, against this build's binary on the quickstart.
#[test]
fn the_openapi_document_is_valid_and_schemathesis_finds_the_server_true_to_it() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../scripts/test-openapi.sh");
    let out = std::process::Command::new(&script)
        .env("JITGATE_BIN", BIN)
        .output()
        .expect("run scripts/test-openapi.sh");
    assert!(
        out.status.success(),
        "{} failed:\n{}\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Read from `stream` until the server closes it; how long that took and what it sent, or
/// `None` if it was still open after `limit`.
fn wait_for_close(
    stream: &mut std::net::TcpStream,
    limit: std::time::Duration,
) -> Option<(std::time::Duration, String)> {
    use std::io::Read;
    let start = std::time::Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.checked_sub(start.elapsed())?;
        stream
            .set_read_timeout(Some(left.max(std::time::Duration::from_millis(1))))
            .unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return Some((start.elapsed(), String::from_utf8_lossy(&answer).into_owned())),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some((start.elapsed(), String::from_utf8_lossy(&answer).into_owned()))
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return None,
            Err(e) => panic!("read: {e}"),
        }
    }
}

#[test]
fn slow_and_idle_connections_are_closed_while_long_polls_and_other_callers_carry_on() {
    use std::io::Write;
    use std::net::TcpStream;
    use std::time::{Duration, Instant};
    let s = Server::start_with(
        &quickstart(),
        Some("[connections]\nheader_timeout = \"2s\"\nbody_timeout = \"2s\"\n"),
    );
    let margin = Duration::from_secs(3);

    // 50 connections that send half a request line and headers, and stop.
    let opened = Instant::now();
    let mut stalled: Vec<TcpStream> = (0..50)
        .map(|i| {
            let mut c = TcpStream::connect(&s.listen).unwrap();
            let half: &[u8] = if i % 2 == 0 {
                b"GET /v1/requests HTTP/1.1\r\nHost: x\r\nAuthori"
            } else {
                b"GE"
            };
            c.write_all(half).unwrap();
            c
        })
        .collect();
    // A well-behaved caller is served meanwhile.
    let (status, _) = s.get("/v1/grants", "demo-alice");
    assert_eq!(status, 200);
    for (i, c) in stalled.iter_mut().enumerate() {
        let left = (Duration::from_secs(2) + margin).saturating_sub(opened.elapsed());
        let closed = wait_for_close(c, left.max(Duration::from_millis(10)));
        assert!(
            closed.is_some(),
            "stalled connection {i} still open {:?} after it was opened",
            opened.elapsed()
        );
    }
    assert!(
        opened.elapsed() >= Duration::from_millis(1500),
        "closed before the header timeout"
    );

    // An idle keep-alive connection is closed too, after answering.
    let mut idle = TcpStream::connect(&s.listen).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (took, answer) = wait_for_close(&mut idle, Duration::from_secs(2) + margin).expect("idle connection closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(took >= Duration::from_millis(1500), "{took:?}");

    // A body that stops half-way: 408 in the error shape, and the connection closed.
    let mut half_body = TcpStream::connect(&s.listen).unwrap();
    half_body
        .write_all(
            b"POST /v1/check HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer demo-svc\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"principal\": ",
        )
        .unwrap();
    let (took, answer) = wait_for_close(&mut half_body, Duration::from_secs(2) + margin).expect("half body closed");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");
    assert!(took >= Duration::from_millis(1500), "{took:?}");

    // A long poll waits longer than both timeouts and is answered, not cut.
    let filed = s.file(
        "demo-alice",
        serde_json::json!({"resource": "prod-db", "action": "read", "reason": "slow queries"}),
    );
    let started = Instant::now();
    let (status, v) = s.get(&format!("/v1/requests/{}?wait=5s", id(&filed)), "demo-alice");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "pending");
    assert!(
        started.elapsed() >= Duration::from_millis(4900),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn an_open_files_limit_too_low_for_the_connections_allowed_is_logged_at_start() {
    let s = Server::start_with(&quickstart(), Some("[connections]\nmax = 100000000\n"));
    let log = s.log();
    assert!(
        log.contains("open-files limit") && log.contains("LimitNOFILE="),
        "no warning about the open-files limit:\n{log}"
    );
    let s = Server::start_with(&quickstart(), Some("[connections]\nmax = 16\n"));
    assert!(!s.log().contains("open-files limit"), "{}", s.log());
}
