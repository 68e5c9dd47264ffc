//! A throwaway PostgreSQL server from Debian's package: its own cluster in a temporary
//! folder, on a free loopback port, run as the `postgres` user when the tests run as
//! root (the server refuses root).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::child::TestChild;
use crate::net::free_port;

pub struct Postgres {
    pub port: u16,
    _dir: tempfile::TempDir,
    _child: TestChild,
}

fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (tests/run installs it)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("postgres").exists())
        .collect();
    found.sort();
    found
        .pop()
        .expect("a PostgreSQL server under /usr/lib/postgresql")
}

/// `program` from the server's folder, as `postgres` if we are root.
fn command(program: &str) -> Command {
    let path = bin_dir().join(program);
    if nix::unistd::Uid::effective().is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    }
}

impl Postgres {
    pub fn start() -> Postgres {
        let dir = tempfile::Builder::new()
            .prefix("cartable-pg")
            .tempdir()
            .expect("temp dir");
        if nix::unistd::Uid::effective().is_root() {
            let user = nix::unistd::User::from_name("postgres")
                .ok()
                .flatten()
                .expect("the postgres user (from the postgresql package)");
            nix::unistd::chown(dir.path(), Some(user.uid), Some(user.gid)).expect("chown");
        }
        let data = dir.path().join("data");
        let st = command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "cartable", "--no-sync"])
            .stdout(Stdio::null())
            .status()
            .expect("initdb runs");
        assert!(st.success(), "initdb failed");
        let port = free_port();
        let mut server = command("postgres");
        server
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-h", "127.0.0.1", "-F", "-k"])
            .arg(dir.path())
            .stderr(Stdio::null());
        let child = TestChild::spawn(server).expect("postgres starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = command("createdb")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-U",
                    "cartable",
                    "central",
                ])
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                break;
            }
            assert!(Instant::now() < deadline, "PostgreSQL did not start");
            std::thread::sleep(Duration::from_millis(200));
        }
        Postgres {
            port,
            _dir: dir,
            _child: child,
        }
    }

    pub fn url(&self) -> String {
        format!("postgres://cartable@127.0.0.1:{}/central", self.port)
    }
}
