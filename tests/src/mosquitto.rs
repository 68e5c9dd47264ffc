//! A real Mosquitto broker on a free port, with persistence on (what a central side
//! runs), so a stopped and restarted broker keeps the central side's session.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::child::TestChild;
use crate::net::free_port;

pub struct Mosquitto {
    pub host: IpAddr,
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<TestChild>,
    /// Listener lines for TLS with client certificates required, when asked for.
    tls: Option<String>,
    /// The whole configuration, when it is the project's shipped one.
    conf_text: Option<String>,
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        Self::start_on([127, 0, 0, 1].into())
    }

    /// Listens on `host` (an address of this machine, e.g. one end of a veth pair).
    pub fn start_on(host: IpAddr) -> Mosquitto {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut m = Mosquitto {
            host,
            port: free_port(),
            dir,
            child: None,
            tls: None,
            conf_text: None,
        };
        m.restart();
        m
    }

    /// The configuration the project ships (`central/mosquitto/`), as an admin would
    /// install it: TLS on 127.0.0.1 with `pki`'s server certificate, no anonymous
    /// client, the shipped ACL, and these `(username, password)` accounts.
    pub fn start_shipped(pki: &crate::tls::Pki, accounts: &[(&str, &str)]) -> Mosquitto {
        let dir = tempfile::tempdir().expect("temp dir");
        let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../central/mosquitto");
        let etc = dir.path().join("etc");
        std::fs::create_dir_all(&etc).expect("etc");
        std::fs::copy(shipped.join("cartable.acl"), etc.join("cartable.acl")).expect("the ACL");
        let passwd = etc.join("cartable.passwd");
        std::fs::write(&passwd, "").expect("password file");
        for (user, password) in accounts {
            let ok = Command::new("mosquitto_passwd")
                .arg("-b")
                .arg(&passwd)
                .args([user, password])
                .status()
                .expect("mosquitto_passwd runs");
            assert!(ok.success());
        }
        let port = free_port();
        let text = std::fs::read_to_string(shipped.join("cartable.conf")).expect("the conf");
        let conf: String = text
            .lines()
            .map(|l| match l.split_once(' ') {
                Some(("listener", _)) => format!("listener {port} 127.0.0.1"),
                Some(("cafile", _)) => format!("cafile {}", pki.ca.display()),
                Some(("certfile", _)) => format!("certfile {}", pki.server_cert.display()),
                Some(("keyfile", _)) => format!("keyfile {}", pki.server_key.display()),
                _ => l.replace("/etc/mosquitto/", &format!("{}/", etc.display())),
            })
            .chain([
                "user root".to_string(),
                format!("persistence_location {}/", dir.path().display()),
                "log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice".into(),
            ])
            .collect::<Vec<_>>()
            .join("\n");
        let mut m = Mosquitto {
            host: [127, 0, 0, 1].into(),
            port,
            dir,
            child: None,
            tls: None,
            conf_text: Some(conf + "\n"),
        };
        m.restart();
        m
    }

    /// TLS only, on 127.0.0.1, with a server certificate for `localhost` and client
    /// certificates required; the PKI's files are in the broker's folder.
    pub fn start_tls() -> (Mosquitto, crate::tls::Pki) {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = crate::tls::Pki::new(dir.path(), "localhost");
        let tls = format!(
            "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\nuse_identity_as_username true\n",
            pki.ca.display(),
            pki.server_cert.display(),
            pki.server_key.display()
        );
        let mut m = Mosquitto {
            host: [127, 0, 0, 1].into(),
            port: free_port(),
            dir,
            child: None,
            tls: Some(tls),
            conf_text: None,
        };
        m.restart();
        (m, pki)
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("mosquitto.conf")
    }

    /// Starts (again) on the same port and persistence folder.
    pub fn restart(&mut self) {
        let conf = self.conf_text.clone().unwrap_or_else(|| format!(
            "listener {} {}\n{}allow_anonymous true\nuser root\npersistence true\npersistence_location {}/\n\
             max_queued_messages 0\nmessage_size_limit 0\nlog_dest stderr\nlog_type error\nlog_type warning\n",
            self.port,
            self.host,
            self.tls.as_deref().unwrap_or(""),
            self.dir.path().display()
        ));
        std::fs::write(self.conf(), conf).expect("write mosquitto.conf");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("mosquitto.log"))
            .expect("log");
        let mut cmd = Command::new(mosquitto_bin());
        cmd.arg("-c").arg(self.conf()).stderr(Stdio::from(log));
        self.child =
            Some(TestChild::spawn(cmd).expect("mosquitto starts (apt-get install mosquitto)"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect((self.host, self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the broker the way an admin would (SIGTERM: it saves its sessions).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.signal(nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://{}:{}", self.host, self.port)
    }

    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

fn mosquitto_bin() -> PathBuf {
    for p in ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"] {
        if std::path::Path::new(p).exists() {
            return p.into();
        }
    }
    "mosquitto".into()
}
