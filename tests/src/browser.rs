//! Headless Chromium (Debian's), driven through chromedriver's WebDriver API, for the
//! pages the box serves. Started by the test, on loopback, with a fresh profile and
//! background networking off (the machine has no way out, and must not try).

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cartable_agent::http::request;
use serde_json::{Value, json};

use crate::child::TestChild;
use crate::net::free_port;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// axe-core's engine, where `tests/run` installs it.
const AXE: &str = "target/test-tools/node_modules/axe-core/axe.min.js";

/// Runs axe on the document; WebDriver's callback gets each broken rule, with the
/// selectors of (at most five of) the elements that break it.
const AXE_RUN: &str = "const done = arguments[arguments.length - 1];
axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } })
  .then(r => done(r.violations.map(v => ({ id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ')) }))))
  .catch(e => done([{ id: 'axe-failed', impact: 'critical', help: String(e), nodes: [] }]));";

pub struct Browser {
    addr: SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
    _driver: TestChild,
}

impl Browser {
    pub async fn start() -> anyhow::Result<Browser> {
        let port = free_port();
        let mut cmd = Command::new("chromedriver");
        cmd.arg(format!("--port={port}")).stderr(Stdio::null());
        let driver =
            TestChild::spawn(cmd).context("chromedriver (apt-get install chromium-driver)")?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(20);
        while request(addr, "GET", "/status", &[], None).await.is_err() {
            if Instant::now() > deadline {
                bail!("chromedriver did not start");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir()?;
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                // A French school's browser (headless Chromium ignores `--lang`).
                "prefs": { "intl.accept_languages": "fr-FR,fr" },
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-quic",
                    format!("--user-data-dir={}", profile.path().display()),
                    "--window-size=1280,1000", "--lang=fr"
                ]
            }
        }}});
        let r = request(
            addr,
            "POST",
            "/session",
            &[("content-type", "application/json")],
            Some(&caps.to_string()),
        )
        .await?;
        let v = r.json()?;
        let session = v["value"]["sessionId"]
            .as_str()
            .with_context(|| format!("no session: {}", r.body))?
            .to_string();
        Ok(Browser {
            addr,
            session,
            _profile: profile,
            _driver: driver,
        })
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> anyhow::Result<Value> {
        let path = format!("/session/{}{path}", self.session);
        let body = body.to_string();
        let r = request(
            self.addr,
            method,
            &path,
            &[("content-type", "application/json")],
            if method == "GET" { None } else { Some(&body) },
        )
        .await?;
        let v = r.json()?;
        if r.status != 200 {
            bail!("WebDriver {method} {path}: {}", v["value"]);
        }
        Ok(v["value"].clone())
    }

    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.call("POST", "/url", json!({ "url": url }))
            .await
            .map(|_| ())
    }

    pub async fn find(&self, css: &str) -> anyhow::Result<String> {
        let v = self
            .call(
                "POST",
                "/element",
                json!({ "using": "css selector", "value": css }),
            )
            .await?;
        Ok(v[ELEMENT].as_str().context("no element id")?.to_string())
    }

    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        let e = self.find(css).await?;
        self.call("POST", &format!("/element/{e}/click"), json!({}))
            .await
            .map(|_| ())
    }

    pub async fn type_into(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let e = self.find(css).await?;
        self.call(
            "POST",
            &format!("/element/{e}/value"),
            json!({ "text": text }),
        )
        .await
        .map(|_| ())
    }

    pub async fn eval(&self, script: &str) -> anyhow::Result<Value> {
        self.call(
            "POST",
            "/execute/sync",
            json!({ "script": script, "args": [] }),
        )
        .await
    }

    /// Polls `script` (which returns a boolean) until it is true; else fails with the
    /// page's text.
    pub async fn wait(&self, what: &str, script: &str, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if self.eval(script).await? == Value::Bool(true) {
                return Ok(());
            }
            if Instant::now() > deadline {
                // What it showed instead: the failure says it, every test alike.
                let shown = self.eval("return document.body.innerText").await;
                bail!(
                    "the page never showed {what}; it shows:\n{}",
                    shown.unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs axe-core (the accessibility engine, installed by `tests/run` from npm) on
    /// the page as it is, WCAG 2 A and AA rules, and fails with each rule broken, its
    /// impact and the first elements that break it.
    pub async fn check_accessible(&self, page: &str) -> anyhow::Result<()> {
        let engine = std::fs::read_to_string(crate::bins::workspace_root().join(AXE))
            .with_context(|| format!("{AXE} (tests/run installs it)"))?;
        // Injected through WebDriver: the page's own CSP forbids scripts, not this.
        self.eval(&format!("{engine}\n;return true")).await?;
        let found = self
            .call(
                "POST",
                "/execute/async",
                json!({ "script": AXE_RUN, "args": [] }),
            )
            .await?;
        let broken = found.as_array().cloned().unwrap_or_default();
        if !broken.is_empty() {
            bail!(
                "{page}: {} accessibility rules broken:\n{}",
                broken.len(),
                broken
                    .iter()
                    .map(|v| format!(
                        "- {} ({}): {} at {}",
                        v["id"].as_str().unwrap_or(""),
                        v["impact"].as_str().unwrap_or(""),
                        v["help"].as_str().unwrap_or(""),
                        v["nodes"]
                    ))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        Ok(())
    }

    /// A PNG of the page.
    pub async fn screenshot(&self) -> anyhow::Result<Vec<u8>> {
        let v = self.call("GET", "/screenshot", Value::Null).await?;
        decode_base64(v.as_str().context("no image")?)
    }

    /// Resizes the window (a 1280x800 tablet, a 390x844 phone).
    pub async fn resize(&self, width: u32, height: u32) -> anyhow::Result<()> {
        self.call(
            "POST",
            "/window/rect",
            json!({ "width": width, "height": height }),
        )
        .await
        .map(|_| ())
    }

    /// Keeps a screenshot of the page as `target/test-artifacts/NAME.png` (CI keeps
    /// the folder: what the user saw, to look at).
    pub async fn keep_screenshot(&self, name: &str) -> anyhow::Result<()> {
        let png = self.screenshot().await?;
        anyhow::ensure!(png.get(1..4) == Some(&b"PNG"[..]), "not a PNG");
        let dir = crate::bins::workspace_root().join("target/test-artifacts");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("{name}.png")), png)?;
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Closing the session ends Chromium; the driver is killed with its child.
        let _ = std::process::Command::new("curl")
            .args(["-s", "-m", "2", "-X", "DELETE"])
            .arg(format!("http://{}/session/{}", self.addr, self.session))
            .stdout(Stdio::null())
            .status();
    }
}

fn decode_base64(s: &str) -> anyhow::Result<Vec<u8>> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut buf, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = A.iter().position(|a| *a == c).context("bad base64")? as u32;
        buf = buf << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    Ok(out)
}
