//! Soak load for `scripts/soak.sh` (issue #11): mixed traffic against a running server for a
//! while, reported every window: automatic filings with short grants (so expiries never
//! stop), reviewed filings approved or denied by another person, revocations, and checks.
//! Each window prints the operations done, the errors (an unexpected status or a failed
//! call), latency percentiles per kind, and the server's resident memory. Exits non-zero on
//! any error.
//!   soak URL SECONDS SERVER_PID [WINDOW_SECONDS]

use reqwest::blocking::Client;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const KINDS: [&str; 5] = ["file", "approve", "deny", "revoke", "check"];
/// Each caller's pause between calls: a steady load, not a saturating one, so that latency
/// measures the server and not the queue in front of it.
const PACE: Duration = Duration::from_millis(5);

#[derive(Default)]
struct Window {
    latencies: [Vec<u32>; 5],
    errors: Vec<String>,
}

struct Load {
    url: String,
    http: Client,
    window: Mutex<Window>,
    stop: AtomicBool,
}

impl Load {
    /// One call; its latency is recorded under `kind`, and any status but `expect` is an error.
    fn call(&self, kind: usize, path: &str, token: &str, body: Value, expect: u16) -> Option<Value> {
        let started = Instant::now();
        let result = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(token)
            .json(&body)
            .send();
        let micros = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        window.latencies[kind].push(micros);
        match result {
            Ok(resp) if resp.status().as_u16() == expect => {
                drop(window);
                resp.json().ok()
            }
            Ok(resp) => {
                let status = resp.status();
                window
                    .errors
                    .push(format!("{path}: {status} {}", resp.text().unwrap_or_default()));
                None
            }
            Err(e) => {
                window.errors.push(format!("{path}: {e}"));
                None
            }
        }
    }

    fn running(&self) -> bool {
        std::thread::sleep(PACE);
        !self.stop.load(Ordering::Relaxed)
    }
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap_or_default().to_string()
}

fn filer(load: &Load, n: u64) {
    let mut i = n;
    while load.running() {
        i = i.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let seconds = 5 + (i >> 33) % 26;
        let body = json!({"resource": "staging-db", "action": "read", "duration": format!("{seconds}s")});
        let Some(v) = load.call(0, "/v1/requests", "demo-alice", body, 201) else {
            continue;
        };
        if (i >> 40).is_multiple_of(10) {
            let grant = v["grant"]["id"].as_str().unwrap_or_default();
            load.call(3, &format!("/v1/grants/{grant}/revoke"), "demo-alice", json!({}), 200);
        }
    }
}

fn reviewed(load: &Load) {
    let mut n = 0u64;
    while load.running() {
        n += 1;
        let body = json!({"resource": "prod-db", "action": "read", "duration": "10s", "reason": format!("INC-{n}")});
        let Some(v) = load.call(0, "/v1/requests", "demo-dave", body, 201) else {
            continue;
        };
        let rid = id(&v);
        if n.is_multiple_of(5) {
            load.call(2, &format!("/v1/requests/{rid}/deny"), "demo-carol", json!({}), 200);
        } else {
            load.call(1, &format!("/v1/requests/{rid}/approve"), "demo-bob", json!({}), 200);
        }
    }
}

fn checker(load: &Load) {
    while load.running() {
        for (principal, resource) in [("alice", "staging-db"), ("dave", "prod-db"), ("erin", "prod-db")] {
            let body = json!({"principal": principal, "resource": resource, "action": "read"});
            load.call(4, "/v1/check", "demo-svc", body, 200);
        }
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    f64::from(sorted[rank - 1]) / 1000.0
}

fn rss_mib(pid: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: soak URL SECONDS SERVER_PID [WINDOW_SECONDS]");
        std::process::exit(2);
    }
    let seconds: u64 = args[2].parse().unwrap_or(600);
    let pid = args[3].clone();
    let every: u64 = args.get(4).and_then(|w| w.parse().ok()).unwrap_or(30);
    let http = match Client::builder().timeout(Duration::from_secs(10)).build() {
        Ok(http) => http,
        Err(e) => {
            eprintln!("cannot make an HTTP client: {e}");
            std::process::exit(2);
        }
    };
    let load = Load {
        url: args[1].clone(),
        http,
        window: Mutex::new(Window::default()),
        stop: AtomicBool::new(false),
    };
    let mut total_errors = 0usize;
    let mut rss = Vec::new();
    std::thread::scope(|scope| {
        scope.spawn(|| filer(&load, 1));
        scope.spawn(|| filer(&load, 2));
        scope.spawn(|| reviewed(&load));
        scope.spawn(|| checker(&load));
        scope.spawn(|| checker(&load));
        println!("window  rss_mib  ops   errors  p50/p99/max ms: {}", KINDS.join(" | "));
        let started = Instant::now();
        for n in 1..=seconds.div_ceil(every) {
            let until = Duration::from_secs((n * every).min(seconds));
            if let Some(left) = until.checked_sub(started.elapsed()) {
                std::thread::sleep(left);
            }
            let window = std::mem::take(&mut *load.window.lock().unwrap_or_else(|e| e.into_inner()));
            let ops: usize = window.latencies.iter().map(Vec::len).sum();
            let mut columns = Vec::new();
            for mut latencies in window.latencies {
                latencies.sort_unstable();
                columns.push(format!(
                    "{:.1}/{:.1}/{:.1}",
                    percentile(&latencies, 0.5),
                    percentile(&latencies, 0.99),
                    percentile(&latencies, 1.0)
                ));
            }
            let mib = rss_mib(&pid);
            rss.push(mib);
            println!(
                "{n:>6}  {mib:>7.1}  {ops:>5} {:>6}  {}",
                window.errors.len(),
                columns.join(" | ")
            );
            for error in window.errors.iter().take(5) {
                println!("        error: {error}");
            }
            total_errors += window.errors.len();
        }
        load.stop.store(true, Ordering::Relaxed);
    });
    let (first, last) = (rss.first().copied().unwrap_or(0.0), rss.last().copied().unwrap_or(0.0));
    let peak = rss.iter().copied().fold(0.0, f64::max);
    println!("errors: {total_errors}; rss first window {first:.1} MiB, last {last:.1} MiB, peak {peak:.1} MiB");
    if total_errors > 0 {
        std::process::exit(1);
    }
}
