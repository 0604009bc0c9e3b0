//! Headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`, which
//! `scripts/test.sh` installs), for the web UI's end-to-end tests: a real browser that runs
//! the pages' scripts, keeps cookies, enforces the Content-Security-Policy and takes
//! screenshots. The few WebDriver commands the tests need are plain JSON over HTTP.

use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    session: String,
    base: String,
    http: reqwest::blocking::Client,
    _profile: tempfile::TempDir,
}

/// Where screenshots go: `target/ui-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../target/ui-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

impl Browser {
    /// A fresh headless Chromium with an empty profile, `width` x `height` pixels.
    pub fn start(width: u32, height: u32) -> Browser {
        Self::start_with_zone(width, height, None)
    }

    /// [`Browser::start`], in the time zone `zone` (`Asia/Kolkata`): Chromium takes its zone
    /// from the `TZ` of chromedriver, which starts it.
    pub fn start_in_zone(width: u32, height: u32, zone: &str) -> Browser {
        Self::start_with_zone(width, height, Some(zone))
    }

    /// [`Browser::start`], able to reach the loopback only: no name resolves (but `localhost`)
    /// and everything not on the loopback goes to a proxy that is not there. For pages that
    /// are not ours (the OpenID Provider's), so that nothing they name on the internet is
    /// fetched, and a test never waits on the network.
    pub fn start_loopback_only(width: u32, height: u32) -> Browser {
        Self::start_with(width, height, None, true)
    }

    fn start_with_zone(width: u32, height: u32, zone: Option<&str>) -> Browser {
        Self::start_with(width, height, zone, false)
    }

    fn start_with(width: u32, height: u32, zone: Option<&str>, loopback_only: bool) -> Browser {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        // Under load Chromium sometimes fails to come up ("session not created", "DevToolsActivePort
        // file doesn't exist", a renderer that crashes at launch). Nothing depends on the first
        // try: try again with a new chromedriver and a new, empty profile.
        let mut failures = Vec::new();
        for _ in 0..3 {
            let (mut driver, base) = start_driver(&http, zone);
            let profile = tempfile::tempdir().unwrap();
            match new_session(&http, &base, width, height, profile.path(), loopback_only) {
                Ok(session) => {
                    return Browser {
                        driver,
                        session,
                        base,
                        http,
                        _profile: profile,
                    }
                }
                Err(e) => failures.push(e),
            }
            let _ = driver.kill();
            let _ = driver.wait();
        }
        panic!("no browser session in three tries: {}", failures.join("; "));
    }

    pub(crate) fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let request = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self.http.post(&url).json(&body.unwrap_or(json!({}))),
        };
        let answer: Value = request.send().expect("webdriver").json().unwrap();
        answer["value"].clone()
    }

    pub fn goto(&self, url: &str) {
        let v = self.command("POST", "/url", Some(json!({ "url": url })));
        assert!(v.is_null(), "navigate to {url}: {v}");
    }

    pub fn url(&self) -> String {
        self.command("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn source(&self) -> String {
        self.command("GET", "/source", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn try_find(&self, css: &str) -> Option<String> {
        let v = self.command("POST", "/element", Some(json!({"using": "css selector", "value": css})));
        v[ELEMENT].as_str().map(str::to_string)
    }

    /// The element `css` selects, waiting up to 10 s for it to appear.
    pub fn find(&self, css: &str) -> String {
        let started = Instant::now();
        loop {
            if let Some(id) = self.try_find(css) {
                return id;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no element '{css}' on {}:\n{}",
                self.url(),
                self.source()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn exists(&self, css: &str) -> bool {
        self.try_find(css).is_some()
    }

    /// Run `command` on the element `css` selects. Finding an element and acting on it are
    /// two round trips: a live page (the inbox's rows are swapped every 2 s, the grants' every
    /// 5 s) may replace the element in between, and WebDriver then answers "stale element
    /// reference" and does nothing. The element is found again and the command sent again
    /// (it had no effect), for up to 10 s; any other answer is returned as it is.
    fn on_element(&self, css: &str, command: impl Fn(&str) -> Value) -> Value {
        let started = Instant::now();
        loop {
            let id = self.find(css);
            let v = command(&id);
            let stale = v.get("error").and_then(Value::as_str) == Some("stale element reference");
            if !stale || started.elapsed() > Duration::from_secs(10) {
                return v;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn click(&self, css: &str) {
        let v = self.on_element(css, |id| self.command("POST", &format!("/element/{id}/click"), None));
        assert!(v.is_null(), "click {css}: {v}");
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let v = self.on_element(css, |id| {
            self.command("POST", &format!("/element/{id}/value"), Some(json!({ "text": text })))
        });
        assert!(v.is_null(), "type into {css}: {v}");
    }

    /// Choose the `<option>` of a `<select>` whose value is `value`.
    pub fn select(&self, select_css: &str, value: &str) {
        self.click(&format!("{select_css} option[value=\"{value}\"]"));
    }

    /// The text of the element `css` selects, as it is shown. A stale element (swapped out
    /// by a live page between finding and reading) is found again, never read as "".
    pub fn text(&self, css: &str) -> String {
        let v = self.on_element(css, |id| self.command("GET", &format!("/element/{id}/text"), None));
        match v.as_str() {
            Some(text) => text.to_string(),
            None => panic!("the text of {css}: {v}"),
        }
    }

    /// The attribute `name` of the element `css` selects, as the page has it now (after its
    /// scripts ran); `None` when it has no such attribute.
    pub fn attribute(&self, css: &str, name: &str) -> Option<String> {
        let v = self.on_element(css, |id| {
            self.command("GET", &format!("/element/{id}/attribute/{name}"), None)
        });
        assert!(v.get("error").is_none(), "attribute {name} of {css}: {v}");
        v.as_str().map(str::to_string)
    }

    /// Wait up to 10 s until the text of `css` contains `needle` (a page that updates itself).
    pub fn wait_for_text(&self, css: &str, needle: &str) {
        let started = Instant::now();
        loop {
            let shown = self.try_find(css).and_then(|id| {
                self.command("GET", &format!("/element/{id}/text"), None)
                    .as_str()
                    .map(str::to_string)
            });
            // Not there yet, or swapped out while read (stale): look again.
            if shown.is_some_and(|text| text.contains(needle)) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "'{css}' never said '{needle}' on {}:\n{}",
                self.url(),
                self.source()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Run `script` (a function body: `arguments[i]` are `args`) in the page and return what
    /// it returns. WebDriver runs it through the DevTools protocol, not as the page's own
    /// script, so the page's Content-Security-Policy does not apply to it.
    pub fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        let v = self.command("POST", "/execute/sync", Some(json!({"script": script, "args": args})));
        assert!(v.get("error").is_none(), "execute: {v}");
        v
    }

    /// Like `execute`, for a script that finishes later: it calls its last argument (the
    /// callback WebDriver adds after `args`) with the result, within `timeout`.
    pub fn execute_async(&self, script: &str, args: Vec<Value>, timeout: Duration) -> Value {
        let ms = timeout.as_millis() as u64;
        let v = self.command("POST", "/timeouts", Some(json!({ "script": ms })));
        assert!(v.is_null(), "timeouts: {v}");
        let v = self.command("POST", "/execute/async", Some(json!({"script": script, "args": args})));
        assert!(v.get("error").is_none(), "execute_async: {v}");
        v
    }

    /// Show pages exactly `width` x `height` CSS pixels as a phone does (mobile viewport, touch
    /// layout): headless Chromium will not make a window narrower than 500 pixels, so a
    /// phone's 390 needs the DevTools protocol's device emulation.
    pub fn emulate_phone(&self, width: u32, height: u32) {
        let v = self.command(
            "POST",
            "/goog/cdp/execute",
            Some(json!({"cmd": "Emulation.setDeviceMetricsOverride",
                        "params": {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": true}})),
        );
        assert!(v.get("error").is_none(), "emulate a phone: {v}");
    }

    /// Render pages as for a reader who chose a dark theme (`prefers-color-scheme: dark`),
    /// through ChromeDriver's DevTools passthrough.
    pub fn prefer_dark(&self) {
        let v = self.command(
            "POST",
            "/goog/cdp/execute",
            Some(json!({"cmd": "Emulation.setEmulatedMedia",
                        "params": {"features": [{"name": "prefers-color-scheme", "value": "dark"}]}})),
        );
        assert!(v.get("error").is_none(), "prefer dark: {v}");
    }

    /// Save a PNG of the viewport as `target/ui-screenshots/NAME.png`.
    pub fn screenshot(&self, name: &str) {
        use base64::Engine;
        let data = self.command("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap_or_default())
            .expect("a PNG");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
    }

    /// What the page logged to the console since the last call (CSP violations show there).
    pub fn console(&self) -> Vec<String> {
        let v = self.command("POST", "/se/log", Some(json!({"type": "browser"})));
        v.as_array()
            .into_iter()
            .flatten()
            .map(|e| format!("{} {}", e["level"], e["message"]))
            .collect()
    }
}

/// A chromedriver of ours, answering on a port of ours: (the process, its base URL).
fn start_driver(http: &reqwest::blocking::Client, zone: Option<&str>) -> (Child, String) {
    // The port is the tests' alone (free_port), but a process outside them may hold it: then
    // chromedriver exits, and whoever holds the port must not be taken for it. Try another.
    for _ in 0..5 {
        let port = super::free_port();
        let mut command = Command::new("chromedriver");
        if let Some(zone) = zone {
            command.env("TZ", zone);
        }
        let mut driver = command
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (apt-get install chromium-driver; scripts/test.sh does)");
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            // Ours must be alive after /status answered, and hold the port.
            let answered = http.get(format!("{base}/status")).send().is_ok();
            if let Ok(Some(_)) = driver.try_wait() {
                break;
            }
            if answered {
                match super::listens_on(driver.id(), port) {
                    Some(true) | None => return (driver, base),
                    Some(false) => {
                        let _ = driver.kill();
                        let _ = driver.wait();
                        break;
                    }
                }
            }
            if started.elapsed() > Duration::from_secs(20) {
                let _ = driver.kill();
                let _ = driver.wait();
                panic!("chromedriver did not start");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("chromedriver: five ports in a row were held by another process");
}

/// A new Chromium session, in the empty profile `profile`: its id, or chromedriver's error.
fn new_session(
    http: &reqwest::blocking::Client,
    base: &str,
    width: u32,
    height: u32,
    profile: &std::path::Path,
    loopback_only: bool,
) -> Result<String, String> {
    let mut args = vec![
        "--headless=new".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-extensions".into(),
        format!("--window-size={width},{height}"),
        format!("--user-data-dir={}", profile.display()),
    ];
    if loopback_only {
        // Chromium sends the loopback past any proxy by itself; port 9 (discard) has no
        // listener, so the rest fails at once rather than after a network timeout.
        args.push("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1".into());
        args.push("--proxy-server=http://127.0.0.1:9".into());
    }
    let capabilities = json!({"capabilities": {"alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args},
        "goog:loggingPrefs": {"browser": "ALL"},
    }}});
    let answer: Value = http
        .post(format!("{base}/session"))
        .json(&capabilities)
        .send()
        .map_err(|e| format!("POST /session: {e}"))?
        .json()
        .map_err(|e| format!("POST /session answered no JSON: {e}"))?;
    answer["value"]["sessionId"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("no session: {answer}"))
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The page broke no rule of its Content-Security-Policy and threw no error.
pub fn clean_console(b: &Browser) {
    let problems: Vec<String> = b
        .console()
        .into_iter()
        .filter(|m| m.contains("SEVERE") || m.contains("Content Security Policy") || m.contains("Refused"))
        .collect();
    assert!(problems.is_empty(), "console: {problems:#?}");
}
