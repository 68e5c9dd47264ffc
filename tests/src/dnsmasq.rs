//! dnsmasq as the upstream resolver of tests: authoritative for the names a test
//! gives it, NXDOMAIN for the rest of `.test`, on a loopback port, asking nobody.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::child::TestChild;
use crate::dig::dig;
use crate::net::free_port;

pub struct Dnsmasq {
    pub addr: SocketAddr,
    child: Option<TestChild>,
    log: tempfile::NamedTempFile,
}

impl Dnsmasq {
    /// dnsmasq as an authoritative resolver for `records` (and NXDOMAIN for the rest
    /// of `.test`) on `listen`, asking nobody; `program` is `dnsmasq`, or `ip netns
    /// exec NS dnsmasq` for one inside a namespace.
    pub fn command(mut cmd: Command, listen: &str, records: &[(&str, &str)]) -> Command {
        cmd.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            "--bind-interfaces",
            "--user=root",
            "--pid-file=",
            "--local=/test/",
        ])
        .arg(format!("--listen-address={listen}"));
        for (name, addr) in records {
            cmd.arg(format!("--address=/{name}/{addr}"));
        }
        cmd
    }

    /// Starts dnsmasq answering each (name, address) with `ttl`.
    pub fn start(records: &[(&str, &str)], ttl: u32) -> Dnsmasq {
        let port = free_port();
        let log = tempfile::NamedTempFile::new().expect("log file");
        let mut cmd = Self::command(Command::new("dnsmasq"), "127.0.0.1", records);
        cmd.arg("--log-queries")
            .arg(format!("--log-facility={}", log.path().display()))
            .arg(format!("--port={port}"))
            .arg(format!("--local-ttl={ttl}"))
            .arg(format!("--auth-ttl={ttl}"))
            .stderr(Stdio::null());
        let child =
            TestChild::spawn(cmd).expect("dnsmasq starts (tests/run installs dnsmasq-base)");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(10);
        while dig(addr, "ready.probe.test", "A", &[]).status.is_empty() {
            assert!(Instant::now() < deadline, "dnsmasq did not answer");
            std::thread::sleep(Duration::from_millis(50));
        }
        Dnsmasq {
            addr,
            child: Some(child),
            log,
        }
    }

    /// How many queries for `name` it has received (from its query log).
    pub fn queries_for(&self, name: &str) -> usize {
        let log = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains("query[") && l.contains(&format!(" {name} from ")))
            .count()
    }

    /// Stops it (kill -9): the upstream is gone.
    pub fn stop(&mut self) {
        self.child.take();
    }
}
