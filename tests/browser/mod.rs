//! A real headless Chromium, driven through WebDriver (Debian's `chromium` and `chromium-driver`, installed with
//! apt-get when missing, as tests/arm.rs installs qemu): pages are tested as a browser renders them and runs their
//! scripts, not by reading their HTML.
// Each test compiles its own copy and uses only part of it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

/// Fonts too: without recommended packages Chromium would draw text as boxes in screenshots.
const PACKAGES: [&str; 3] = ["chromium", "chromium-driver", "fonts-liberation"];
/// WebDriver's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn installed() -> bool {
    Command::new("chromedriver")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        && Path::new("/usr/bin/chromium").exists()
}

fn ensure_installed() {
    if installed() {
        return;
    }
    let known = Command::new("apt-cache")
        .args(["show", PACKAGES[0]])
        .output()
        .is_ok_and(|o| o.status.success());
    if !known {
        run(Command::new("apt-get").args(["update", "-qq"]));
    }
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(PACKAGES)
        .env("DEBIAN_FRONTEND", "noninteractive"));
    assert!(
        installed(),
        "chromium and chromedriver after apt-get install"
    );
}

fn run(command: &mut Command) {
    let output = command.output().expect("to start");
    assert!(
        output.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Where screenshots go: a folder under the build's test output, to be looked at after a run.
pub fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A chromedriver on a free port with one headless Chromium session (its camera a test pattern); both end when it
/// is dropped.
pub struct Browser {
    driver: Child,
    session: String,
    base: String,
    http: ureq::Agent,
}

impl Browser {
    pub fn start() -> Browser {
        ensure_installed();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let http: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        let started = Instant::now();
        while http.get(format!("{base}/status")).call().is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "chromedriver on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut browser = Browser {
            driver,
            session: String::new(),
            base,
            http,
        };
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "timeouts": {"script": 120_000},
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                // Root in a container: no sandbox; no GPU; /dev/shm may be small.
                // Chromium's own test camera (a moving pattern) stands in for a webcam, allowed without asking.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1000", "--use-fake-device-for-media-stream",
                         "--use-fake-ui-for-media-stream"]
            }
        }}});
        let created = browser.request("POST", "/session", Some(capabilities));
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_string();
        browser
    }

    /// A WebDriver call; its `value`. An error answer fails the test.
    fn request(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let response = match (method, body) {
            ("GET", _) => self.http.get(&url).call(),
            ("DELETE", _) => self.http.delete(&url).call(),
            (_, body) => self.http.post(&url).send_json(body.unwrap_or(json!({}))),
        }
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status();
        let answer: Value = response.into_body().read_json().unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {answer}");
        answer["value"].clone()
    }

    fn at(&self, path: &str) -> String {
        format!("/session/{}{path}", self.session)
    }

    pub fn open(&self, url: &str) {
        self.request("POST", &self.at("/url"), Some(json!({ "url": url })));
    }

    /// The elements `css` selects, as WebDriver references.
    pub fn find_all(&self, css: &str) -> Vec<String> {
        let found = self.request(
            "POST",
            &self.at("/elements"),
            Some(json!({"using": "css selector", "value": css})),
        );
        found
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e[ELEMENT].as_str().unwrap().to_string())
            .collect()
    }

    /// The one element `css` selects.
    pub fn find(&self, css: &str) -> String {
        let found = self.find_all(css);
        assert_eq!(found.len(), 1, "one element for {css}");
        found[0].clone()
    }

    pub fn click(&self, css: &str) {
        let element = self.find(css);
        self.request("POST", &self.at(&format!("/element/{element}/click")), None);
    }

    /// Types `text` into the element `css` selects; for a file input, file paths (one per line) to choose.
    pub fn send_keys(&self, css: &str, text: &str) {
        let element = self.find(css);
        self.request(
            "POST",
            &self.at(&format!("/element/{element}/value")),
            Some(json!({ "text": text })),
        );
    }

    /// Runs `script` until it returns something other than null or false; that value. Fails the test after
    /// `limit`.
    pub fn wait_for(&self, script: &str, limit: Duration) -> Value {
        let started = Instant::now();
        loop {
            let value = self.script(script);
            if !value.is_null() && value != false {
                return value;
            }
            if started.elapsed() > limit {
                let shot = screenshot_dir().join("timed-out.png");
                self.screenshot(&shot);
                let text = self.script("return document.body.innerText.slice(0, 2000)");
                panic!(
                    "waited {limit:?} for: {script}\n(page saved as {}) the page says: {text}",
                    shot.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `script` as an asynchronous function body: it ends by calling `done(value)`.
    pub fn script_async(&self, script: &str) -> Value {
        let body = format!("const done = arguments[arguments.length - 1]; {script}");
        self.request(
            "POST",
            &self.at("/execute/async"),
            Some(json!({"script": body, "args": []})),
        )
    }

    /// Runs `script` (a function body) in the page and returns what it returns.
    pub fn script(&self, script: &str) -> Value {
        self.request(
            "POST",
            &self.at("/execute/sync"),
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Saves the visible page as a PNG.
    pub fn screenshot(&self, to: &Path) {
        let data = self.request("GET", &self.at("/screenshot"), None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap())
            .unwrap();
        std::fs::write(to, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self
                .http
                .delete(format!("{}/session/{}", self.base, self.session))
                .call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
