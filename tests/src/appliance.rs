//! The `cartable` daemon as a process with a test's configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::bins::bin;
use crate::child::TestChild;
use crate::net::free_port;

pub struct Appliance {
    pub dns: SocketAddr,
    pub http: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    /// The network namespace it runs in, if not this one.
    pub netns: Option<String>,
    child: TestChild,
}

impl Appliance {
    /// Starts `cartable run` with `extra` TOML appended to a config that sets the data
    /// folder, loopback ports, and no system resolvers. Waits for `/healthz`.
    pub fn start(extra: &str) -> Appliance {
        Self::start_in(None, extra)
    }

    /// Like [`Appliance::start`], inside the network namespace `netns`.
    pub fn start_in(netns: Option<&str>, extra: &str) -> Appliance {
        Self::start_at(netns, ([127, 0, 0, 1], free_port()).into(), extra)
    }

    /// Like [`Appliance::start_in`], its DNS server on `dns` (a cart's box serves
    /// its LAN on 0.0.0.0:53 in its own namespace).
    pub fn start_at(netns: Option<&str>, dns: SocketAddr, extra: &str) -> Appliance {
        let dir = tempfile::tempdir().expect("temp dir");
        let http: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let config = dir.path().join("cartable.toml");
        // `extra` may start with its own [appliance] lines (a box's site and id):
        // they join the table the data folder is set in.
        let (own, extra) = match extra.strip_prefix("[appliance]\n") {
            Some(rest) => rest
                .split_once("\n[")
                .map_or((rest, ""), |(own, _)| (own, &rest[own.len() + 1..])),
            None => ("", extra),
        };
        let text = format!(
            "[appliance]\ndata_dir = \"{}\"\n{own}\n[http]\nlisten = \"{http}\"\n{extra}\n",
            dir.path().join("data").display()
        );
        // `extra` may open its own [dns]; the defaults for tests go in only if not.
        let text = if extra.contains("[dns]") {
            text.replacen(
                "[dns]",
                &format!("[dns]\nlisten = [\"{dns}\"]\nsystem_resolvers = false"),
                1,
            )
        } else {
            format!("{text}\n[dns]\nlisten = [\"{dns}\"]\nsystem_resolvers = false\n")
        };
        std::fs::write(&config, text).expect("write config");
        let netns = netns.map(str::to_string);
        let child = Self::spawn(&dir, &config, netns.as_deref());
        let app = Appliance {
            dns,
            http,
            dir,
            config,
            netns,
            child,
        };
        app.wait_healthy();
        app
    }

    fn spawn(dir: &tempfile::TempDir, config: &std::path::Path, netns: Option<&str>) -> TestChild {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("cartable.log"))
            .expect("log file");
        let mut cmd = Self::command(netns, bin("cartable").to_str().expect("utf-8 path"));
        cmd.args(["run", "--config", config.to_str().expect("utf-8 path")])
            .stderr(log);
        TestChild::spawn(cmd).expect("cartable starts")
    }

    /// Stops the daemon with SIGTERM and waits for it to exit; returns its exit code.
    pub fn stop(&mut self) -> Option<i32> {
        self.signal(Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "the appliance did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the daemon to exit on its own (a reboot of the update agent's
    /// directory backend); its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "the appliance did not exit: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `GET /healthz`: (status code, body).
    pub fn healthz(&self) -> (u16, String) {
        let out = Self::command(self.netns.as_deref(), "curl")
            .args(["-s", "-w", "\n%{http_code}", "-m", "5"])
            .arg(format!("http://{}/healthz", self.http))
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// Starts the daemon again on the same configuration and data. One still running
    /// is killed first (kill -9, as a power cut) and reaped, so the new one finds its
    /// ports free: spawning before the old one was dropped raced it for them.
    pub fn restart(&mut self) {
        let _ = self.child.child.kill();
        let _ = self.child.child.wait();
        self.child = Self::spawn(&self.dir, &self.config, self.netns.as_deref());
        self.wait_healthy();
    }

    /// kill -9 and reaps it, without starting it again (a test changes what the next
    /// start finds first).
    pub fn kill9(&mut self) {
        let _ = self.child.child.kill();
        let _ = self.child.child.wait();
    }

    /// Starts the daemon again without waiting for it to serve (it may be meant to
    /// stop on its own at once, as a reboot does).
    pub fn respawn(&mut self) {
        self.kill9();
        self.child = Self::spawn(&self.dir, &self.config, self.netns.as_deref());
    }

    /// The daemon's data folder.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The store's database file.
    pub fn database(&self) -> PathBuf {
        self.dir.path().join("data").join("cartable.db")
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = Self::command(self.netns.as_deref(), "curl")
                .args(["-s", "-w", "\n%{http_code}", "-m", "2"])
                .arg(format!("http://{}/healthz", self.http))
                .output()
                .expect("curl runs");
            // Serving, even if degraded (a test box often has no lists at all).
            let text = String::from_utf8_lossy(&out.stdout);
            if text.ends_with("\n200") || text.starts_with("degraded") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the appliance did not become healthy"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `program`, inside the appliance's namespace if it has one.
    fn command(netns: Option<&str>, program: &str) -> Command {
        match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, program]);
                c
            }
            None => Command::new(program),
        }
    }

    /// GET `path` on the HTTP API, as JSON.
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let out = Self::command(self.netns.as_deref(), "curl")
            .args(["-sf", "-m", "5"])
            .arg(format!("http://{}{path}", self.http))
            .output()
            .expect("curl runs");
        assert!(out.status.success(), "GET {path} failed");
        serde_json::from_slice(&out.stdout).expect("JSON")
    }

    /// Records `count` admin audit entries, `detail` = `{prefix}{i}`, in order.
    pub fn post_audits(&self, prefix: &str, range: std::ops::Range<usize>) {
        // One curl for many requests: `--next` separates them, reusing the connection.
        for chunk in range.collect::<Vec<_>>().chunks(200) {
            let mut cmd = Self::command(self.netns.as_deref(), "curl");
            cmd.args(["-sf", "-m", "30", "-o", "/dev/null"]);
            for (n, i) in chunk.iter().enumerate() {
                if n > 0 {
                    cmd.arg("--next");
                }
                cmd.args([
                    "-sf",
                    "-o",
                    "/dev/null",
                    "-H",
                    "content-type: application/json",
                ])
                .arg("-d")
                .arg(format!(r#"{{"action":"test","detail":"{prefix}{i}"}}"#))
                .arg(format!("http://{}/api/v1/audit", self.http));
            }
            let st = cmd.status().expect("curl runs");
            assert!(st.success(), "POST /api/v1/audit failed");
        }
    }

    /// What the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("cartable.log")).unwrap_or_default()
    }

    /// Imports the school's CSV files (classes, then teachers, then pupils) through
    /// the admin API, as the admin on the box does.
    pub async fn import(&self, files: &[&str]) {
        for csv in files {
            let r = cartable_agent::http::request(
                self.http,
                "POST",
                "/api/v1/admin/import",
                &[("content-type", "text/csv")],
                Some(csv),
            )
            .await
            .expect("the box answers");
            assert_eq!(r.status, 200, "{}", r.body);
        }
    }

    /// A JSON request to the box from `from` (another address of this machine stands
    /// for another machine of the LAN; `None`: loopback).
    pub async fn call(
        &self,
        from: Option<std::net::IpAddr>,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> cartable_agent::http::Response {
        let mut h = vec![("content-type", "application/json")];
        h.extend_from_slice(headers);
        cartable_agent::http::request_from(from, self.http, method, path, &h, body)
            .await
            .expect("the box answers")
    }

    /// Adds a school admin account with `cartable admin add` (through the daemon when
    /// it runs, else in the store); returns what the command said.
    pub fn admin_add(&self, login: &str, password: &str) -> String {
        let file = self.dir.path().join("admin-password");
        std::fs::write(&file, format!("{password}\n")).expect("a temporary file");
        let file = file.to_str().expect("utf-8 path");
        let config = self.config.to_str().expect("utf-8 path");
        crate::bins::cartable_ok([
            "admin",
            "add",
            login,
            "--password-file",
            file,
            "--config",
            config,
        ])
    }

    /// The daemon's resident memory, from `/proc/PID/status`, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.child.id()))
            .expect("the daemon runs");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    pub fn signal(&self, s: Signal) {
        self.child.signal(s).expect("signal sent");
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- cartable log ---\n{}", self.log());
        }
    }
}
