//! `cartable-central serve` as a process, and its JSON API read with curl.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::bins::bin;
use crate::child::TestChild;
use crate::net::free_port;

pub struct Central {
    pub http: SocketAddr,
    pub dir: tempfile::TempDir,
    child: TestChild,
}

impl Central {
    pub fn start(broker: &str) -> Central {
        Self::start_with(broker, None)
    }

    /// With `database` (e.g. `postgres://...`) instead of a SQLite file.
    pub fn start_with(broker: &str, database: Option<&str>) -> Central {
        Self::start_args(broker, database, &[])
    }

    /// With more arguments for `serve` (TLS, credentials).
    pub fn start_args(broker: &str, database: Option<&str>, extra: &[String]) -> Central {
        Self::start_bound(broker, database, extra, [127, 0, 0, 1].into())
    }

    /// Serving on `bind` (0.0.0.0: every address of this machine, as on the internet);
    /// `http` stays the loopback address, which needs no sign-in.
    pub fn start_bound(
        broker: &str,
        database: Option<&str>,
        extra: &[String],
        bind: std::net::IpAddr,
    ) -> Central {
        Self::start_full(broker, database, extra, bind, "info")
    }

    /// With `log` as its RUST_LOG (what its log shows).
    pub fn start_logging(
        broker: &str,
        database: Option<&str>,
        extra: &[String],
        log: &str,
    ) -> Central {
        Self::start_full(broker, database, extra, [127, 0, 0, 1].into(), log)
    }

    fn start_full(
        broker: &str,
        database: Option<&str>,
        extra: &[String],
        bind: std::net::IpAddr,
        rust_log: &str,
    ) -> Central {
        let dir = tempfile::tempdir().expect("temp dir");
        let database = database.map_or_else(
            || dir.path().join("central.db").display().to_string(),
            str::to_string,
        );
        let http: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let listen = SocketAddr::new(bind, http.port());
        let log = std::fs::File::create(dir.path().join("central.log")).expect("log");
        let mut cmd = Command::new(bin("cartable-central"));
        cmd.args(["serve", "--broker", broker, "--listen", &listen.to_string()])
            .arg("--database")
            .arg(&database)
            .args(extra)
            .env("RUST_LOG", rust_log)
            .stderr(log);
        let child = TestChild::spawn(cmd).expect("cartable-central starts");
        let c = Central { http, dir, child };
        let deadline = Instant::now() + Duration::from_secs(60);
        while c.get("/api/v1/counters").is_none() {
            assert!(
                Instant::now() < deadline,
                "central did not start: {}",
                c.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        c
    }

    /// GET `path` as JSON (None while the server is not answering).
    pub fn get(&self, path: &str) -> Option<serde_json::Value> {
        let out = Command::new("curl")
            .args(["-sf", "-m", "5"])
            .arg(format!("http://{}{path}", self.http))
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Events of one box with `type`, in arrival order.
    pub fn events(&self, site: &str, box_id: &str, kind: &str) -> Vec<serde_json::Value> {
        let all = self
            .get(&format!(
                "/api/v1/events?site={site}&box={box_id}&limit=100000"
            ))
            .unwrap_or_default();
        all.as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e["body"]["type"] == kind)
            .collect()
    }

    /// The SQLite database (for `cartable-central box add`).
    pub fn database(&self) -> std::path::PathBuf {
        self.dir.path().join("central.db")
    }

    /// The box's row in `/api/v1/boxes`.
    pub fn box_row(&self, site: &str, box_id: &str) -> serde_json::Value {
        self.get("/api/v1/boxes")
            .and_then(|b| {
                b.as_array()?
                    .iter()
                    .find(|r| r["site"] == site && r["box"] == box_id)
                    .cloned()
            })
            .unwrap_or_default()
    }

    pub fn counter(&self, name: &str) -> i64 {
        self.get("/api/v1/counters")
            .and_then(|c| c[name].as_i64())
            .unwrap_or(-1)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("central.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.child.id()
    }

    /// Sends `signal` to the process (SIGKILL: a crash, mid-transaction).
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        self.child.signal(signal).expect("signal sent");
    }
}

impl Drop for Central {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- central log ---\n{}", self.log());
        }
    }
}
