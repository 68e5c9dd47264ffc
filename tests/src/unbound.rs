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
        let key = dir.join("dot.key");
        let cert = dir.join("dot.pem");
        let ca = dir.join("ca.pem");
        let openssl = |args: &[&str]| {
            let ok = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .stderr(Stdio::null())
                .stdout(Stdio::null())
                .status()
                .expect("openssl runs");
            assert!(ok.success(), "openssl {args:?} failed");
        };
        // A CA, and a server certificate for `name` that it signs.
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut args = vec![
            "req", "-x509", "-days", "1", "-keyout", "ca.key", "-out", "ca.pem",
        ];
        args.extend(ec);
        args.extend([
            "-subj",
            "/CN=Cartable test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ]);
        openssl(&args);
        let mut args = vec!["req", "-keyout", "dot.key", "-out", "dot.csr", "-subj"];
        let subject = format!("/CN={name}");
        args.push(&subject);
        args.extend(ec);
        openssl(&args);
        std::fs::write(
            dir.join("dot.ext"),
            format!("subjectAltName=DNS:{name}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"),
        )
        .expect("write extensions");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "dot.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            "dot.pem",
            "-extfile",
            "dot.ext",
        ]);
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
