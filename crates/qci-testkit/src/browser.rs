//! A real browser for console tests and benchmarks: Debian's `chromium`, headless, driven
//! through Debian's `chromedriver` (WebDriver, the fantoccini crate) over loopback.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

/// What a first visit to the group list loads: the page, its style, and its modules.
pub const LIST_PAGE: [&str; 5] = [
    "/groups",
    "/console/style.css",
    "/console/app.js",
    "/console/ui.js",
    "/console/list.js",
];

/// `base` + `path`, asking for gzip (reqwest here does not decompress: the body is what
/// crossed the wire).
pub async fn get_gzip(base: &str, path: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{base}{path}"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A headless chromium under chromedriver, closed (with its driver) when dropped.
pub struct Browser {
    pub c: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    shots: PathBuf,
    step: usize,
}

impl Browser {
    /// A browser whose window is `width`×`height`; its screenshots go to
    /// `target/console-screenshots/<label>/`.
    pub async fn start(label: &str, width: u32, height: u32) -> Browser {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: install it with `apt-get install {package}` (or run ./scripts/test.sh)"
            );
        }
        let port = crate::free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let profile = tempfile::tempdir().expect("a browser profile dir");
        // As root, without a display, and never reaching out to the network (this machine's
        // is closed; the console needs nothing but the server on loopback).
        let caps = serde_json::json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        });
        let caps = match caps {
            serde_json::Value::Object(m) => m,
            _ => unreachable!(),
        };
        let url = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        let c = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(e) if start.elapsed() < Duration::from_secs(20) => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("chromedriver on {url} did not start a browser: {e}"),
            }
        };
        let shots = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/console-screenshots")
            .join(label);
        // (Each run's own: an earlier run's steps would mix with this one's.)
        let _ = std::fs::remove_dir_all(&shots);
        std::fs::create_dir_all(&shots).expect("screenshot dir");
        Browser {
            c,
            driver,
            _profile: profile,
            shots,
            step: 0,
        }
    }

    /// Keeps a screenshot of this step (`target/console-screenshots/NN-name.png`).
    pub async fn shot(&mut self, name: &str) {
        self.step += 1;
        let png = self.c.screenshot().await.expect("screenshot");
        std::fs::write(self.shots.join(format!("{:02}-{name}.png", self.step)), png)
            .expect("writing a screenshot");
    }

    pub async fn js(&self, script: &str) -> serde_json::Value {
        self.c
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script {script:?}: {e}"))
    }

    /// Waits (30 s at most) until `script` answers true; panics with `what` and the page text.
    pub async fn until(&mut self, what: &str, script: &str) {
        let start = Instant::now();
        loop {
            if self.js(script).await == serde_json::Value::Bool(true) {
                return;
            }
            if start.elapsed() > Duration::from_secs(45) {
                self.shot(&format!("FAILED-{}", what.replace(' ', "-")))
                    .await;
                let text = self.js("return document.body.innerText").await;
                panic!("timed out waiting for {what}; the page says:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn css(&self, selector: &str) -> fantoccini::elements::Element {
        self.c
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(selector))
            .await
            .unwrap_or_else(|e| panic!("no element {selector:?}: {e}"))
    }

    pub async fn click(&self, selector: &str) {
        self.css(selector)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {selector:?}: {e}"));
    }

    /// Clicks the button (or a link drawn as one) whose text is `label`.
    pub async fn press(&self, label: &str) {
        let xpath = format!(
            "//button[normalize-space(.)='{label}' and not(@disabled)] | //a[contains(@class, 'button') and normalize-space(.)='{label}']"
        );
        self.c
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::XPath(&xpath))
            .await
            .unwrap_or_else(|e| panic!("no button {label:?}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("pressing {label:?}: {e}"));
    }

    pub async fn type_in(&self, selector: &str, text: &str) {
        let el = self.css(selector).await;
        el.clear().await.expect("clear");
        el.send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("typing into {selector:?}: {e}"));
    }

    pub async fn sign_in(&mut self, base: &str, key: &str, who: &str) {
        self.c.goto(base).await.expect("open the console");
        self.until(
            "the sign-in form",
            "return !!document.querySelector('#login-key')",
        )
        .await;
        self.type_in("#login-key", key).await;
        self.press("Sign in").await;
        self.until(
            "the signed-in header",
            &format!("return (document.querySelector('#whoami')?.textContent || '') === {who:?}"),
        )
        .await;
    }

    pub async fn close(mut self) {
        let _ = self.c.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
