//! unbound as a DNS-over-TLS server for tests: a certificate made for the test, and
//! every query forwarded to an upstream on loopback.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::child::TestChild;
use crate::net::free_port;

pub struct DotServer {
    pub addr: SocketAddr,
    /// The CA clients must trust; it signed the server's certificate for `name`.
    pub ca: PathBuf,
    _child: TestChild,
}

impl DotServer {
    /// Serves DNS over TLS as `name`, forwarding to `upstream`.
    pub fn start(dir: &Path, name: &str, upstream: SocketAddr) -> DotServer {
        let pki = crate::tls::Pki::new(dir, name);
        let (key, cert, ca) = (pki.server_key, pki.server_cert, pki.ca);
        let port = free_port();
        let config = dir.join("unbound.conf");
        std::fs::write(
            &config,
            format!(
                "server:\n  interface: 127.0.0.1@{port}\n  tls-port: {port}\n  tls-service-key: \"{key}\"\n  tls-service-pem: \"{cert}\"\n  do-daemonize: no\n  use-syslog: no\n  logfile: \"\"\n  username: \"\"\n  chroot: \"\"\n  directory: \"{dir}\"\n  pidfile: \"\"\n  do-ip6: no\n  access-control: 127.0.0.0/8 allow\n  do-not-query-localhost: no\n  module-config: \"iterator\"\n  local-zone: \"test.\" nodefault\nforward-zone:\n  name: \".\"\n  forward-addr: {}@{}\n",
                upstream.ip(),
                upstream.port(),
                key = key.display(),
                cert = cert.display(),
                dir = dir.display(),
            ),
        )
        .expect("write unbound.conf");
        let mut cmd = Command::new("unbound");
        cmd.arg("-c").arg(&config).stderr(Stdio::null());
        let child = TestChild::spawn(cmd).expect("unbound starts (tests/run installs unbound)");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "unbound did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        DotServer {
            addr,
            ca,
            _child: child,
        }
    }
}
