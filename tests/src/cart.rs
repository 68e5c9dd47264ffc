//! A cart's network, made by the test in namespaces: the box (its LAN ports are veth
//! ends it joins to its own bridge, its uplink a veth to the "internet"), tablets on
//! the other ends of the LAN ports, and the "internet": one namespace holding a
//! resolver on a TEST-NET address (192.0.2.53, dnsmasq) and a few TCP listeners, with
//! no route out of the topology. Nothing leaves the machine.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::child::TestChild;

/// The "internet" resolver's address, and a "public resolver" the firewall refuses.
pub const RESOLVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);
pub const PUBLIC_RESOLVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 99);
/// The box's uplink address.
pub const BOX_UPLINK: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// Another public resolver, refused only once the central side lists it.
pub const LISTED_LATER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 98);

pub struct Cart {
    pub box_ns: String,
    pub inet_ns: String,
    pub tablets: Vec<Tablet>,
    dir: tempfile::TempDir,
    peers: Vec<TestChild>,
    /// The veth end in this namespace of the box's link to a broker, if any.
    broker_link: Option<String>,
}

pub struct Tablet {
    pub ns: String,
    pub mac: String,
    /// The box-side veth end (a LAN port the box joins to its bridge).
    pub port: String,
    script: std::path::PathBuf,
    out: std::path::PathBuf,
}

fn run(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("ip runs");
    assert!(st.success(), "ip {} failed", args.join(" "));
}

impl Cart {
    /// The topology with `tablets` tablets (MACs 02:00:00:00:0X:01...), and the
    /// internet's resolver answering `records`. `tag` keeps concurrent tests apart.
    pub fn create(tag: &str, tablets: usize, records: &[(&str, &str)]) -> Cart {
        let base = format!("cart{}{tag}", std::process::id() % 100_000);
        let box_ns = format!("{base}b");
        let inet_ns = format!("{base}i");
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cart = Cart {
            box_ns: box_ns.clone(),
            inet_ns: inet_ns.clone(),
            tablets: Vec::new(),
            dir,
            peers: Vec::new(),
            broker_link: None,
        };
        for ns in [&box_ns, &inet_ns] {
            run(&["netns", "add", ns]);
            run(&["-n", ns, "link", "set", "lo", "up"]);
        }
        run(&[
            "-n", &box_ns, "link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns",
            &inet_ns,
        ]);
        run(&[
            "-n",
            &box_ns,
            "addr",
            "add",
            &format!("{BOX_UPLINK}/24"),
            "dev",
            "up0",
        ]);
        run(&["-n", &box_ns, "link", "set", "up0", "up"]);
        for a in [RESOLVER, PUBLIC_RESOLVER, LISTED_LATER] {
            run(&[
                "-n",
                &inet_ns,
                "addr",
                "add",
                &format!("{a}/24"),
                "dev",
                "eth0",
            ]);
        }
        run(&["-n", &inet_ns, "link", "set", "eth0", "up"]);
        run(&[
            "-n",
            &box_ns,
            "route",
            "add",
            "default",
            "via",
            &RESOLVER.to_string(),
        ]);
        for i in 1..=tablets {
            let ns = format!("{base}t{i}");
            let port = format!("tp{i}");
            let mac = format!("02:00:00:00:{:02x}:01", i);
            run(&["netns", "add", &ns]);
            run(&["-n", &ns, "link", "set", "lo", "up"]);
            run(&[
                "-n", &box_ns, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ]);
            run(&["-n", &ns, "link", "set", "eth0", "address", &mac]);
            run(&["-n", &ns, "link", "set", "eth0", "up"]);
            let script = cart.dir.path().join(format!("udhcpc-{i}.sh"));
            let out = cart.dir.path().join(format!("lease-{i}.env"));
            std::fs::write(&script, UDHCPC_SCRIPT).expect("script");
            std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .expect("chmod");
            cart.tablets.push(Tablet {
                ns,
                mac,
                port,
                script,
                out,
            });
        }
        cart.start_internet(records);
        cart
    }

    /// dnsmasq on 192.0.2.53:53, and TCP listeners on 192.0.2.53:853, :8080 and
    /// 192.0.2.99:443 that answer one line.
    fn start_internet(&mut self, records: &[(&str, &str)]) {
        let listen = RESOLVER.to_string();
        let mut cmd = crate::dnsmasq::Dnsmasq::command(self.inet(&["dnsmasq"]), &listen, records);
        cmd.arg("--port=53").stderr(Stdio::null());
        self.peers
            .push(TestChild::spawn(cmd).expect("dnsmasq starts"));
        for (addr, port) in LISTENERS {
            let mut c = self.inet(&["socat"]);
            c.arg(format!("TCP-LISTEN:{port},bind={addr},fork,reuseaddr"))
                .arg("SYSTEM:echo open")
                .stderr(Stdio::null());
            self.peers.push(TestChild::spawn(c).expect("socat starts"));
        }
        // The box reaches each one (its own traffic is not the tablets').
        let deadline = Instant::now() + Duration::from_secs(10);
        for (addr, port) in LISTENERS {
            while !self.tcp_open(&self.box_ns, SocketAddr::from((addr, port))) {
                assert!(Instant::now() < deadline, "{addr}:{port} never listened");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// A veth pair from this namespace to the box's (10.233.N.1 here, .2 there), for a
    /// broker the test runs here: its address on this side.
    pub fn broker_link(&mut self, n: u8) -> Ipv4Addr {
        let here = format!("cmq{}{n}", std::process::id() % 100_000);
        run(&[
            "link",
            "add",
            &here,
            "type",
            "veth",
            "peer",
            "name",
            "mq0",
            "netns",
            &self.box_ns,
        ]);
        run(&["addr", "add", &format!("10.233.{n}.1/30"), "dev", &here]);
        run(&["link", "set", &here, "up"]);
        run(&[
            "-n",
            &self.box_ns,
            "addr",
            "add",
            &format!("10.233.{n}.2/30"),
            "dev",
            "mq0",
        ]);
        run(&["-n", &self.box_ns, "link", "set", "mq0", "up"]);
        self.broker_link = Some(here);
        Ipv4Addr::new(10, 233, n, 1)
    }

    fn inet(&self, program: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.inet_ns]).args(program);
        c
    }

    /// Does a TCP connection from `ns` to `to` open and carry the listener's line?
    pub fn tcp_open(&self, ns: &str, to: SocketAddr) -> bool {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "socat", "-T", "3", "-u"])
            .arg(format!("TCP:{}:{},connect-timeout=3", to.ip(), to.port()))
            .arg("STDOUT")
            .stderr(Stdio::null())
            .output()
            .expect("socat runs");
        String::from_utf8_lossy(&out.stdout).contains("open")
    }

    /// The `[net]` and `[dns]` lines of a cart box in this topology (its LAN ports,
    /// the internet's resolver as upstream), before `extra`.
    pub fn config(&self, extra: &str) -> String {
        let ports: Vec<String> = self
            .tablets
            .iter()
            .map(|t| format!("\"{}\"", t.port))
            .collect();
        format!(
            "[net]\nmode = \"cart\"\n\n[net.lan]\nports = [{}]\n\n{extra}",
            ports.join(", ")
        )
    }

    /// The box's nftables table, if any.
    pub fn ruleset(&self) -> Option<String> {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.box_ns,
                "nft",
                "list",
                "table",
                "inet",
                "cartable",
            ])
            .stderr(Stdio::null())
            .output()
            .expect("nft runs (tests/run installs nftables)");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).to_string())
    }
}

/// The internet's TCP listeners: DoT and a web server on the resolver, HTTPS on the
/// two public resolvers.
const LISTENERS: [(Ipv4Addr, u16); 4] = [
    (RESOLVER, 853),
    (RESOLVER, 8080),
    (PUBLIC_RESOLVER, 443),
    (LISTED_LATER, 443),
];

/// udhcpc's event script: applies the lease to the tablet's interface and writes
/// what the server gave to `$OUT` (never to /etc/resolv.conf).
const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
case "$1" in
  deconfig) ip addr flush dev "$interface" ;;
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route replace default via "$router" dev "$interface"
    env > "$OUT.tmp" && mv "$OUT.tmp" "$OUT" ;;
  nak) echo nak >> "$OUT.naks" ;;
esac
exit 0
"#;

impl Tablet {
    /// Runs udhcpc until it has a lease (or gives up); what the server gave, as
    /// udhcpc's script saw it (`ip`, `mask`, `router`, `dns`, `lease`, `serverid`,
    /// `opt114` for the captive portal).
    pub fn dhcp(&self) -> Option<HashMap<String, String>> {
        let _ = std::fs::remove_file(&self.out);
        let st = Command::new("ip")
            .args([
                "netns", "exec", &self.ns, "udhcpc", "-i", "eth0", "-f", "-q", "-n",
            ])
            .args(["-t", "6", "-T", "1", "-A", "1", "-O", "114", "-s"])
            .arg(&self.script)
            .env("OUT", &self.out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("udhcpc runs (tests/run installs udhcpc)");
        if !st.success() {
            return None;
        }
        let text = std::fs::read_to_string(&self.out).ok()?;
        Some(
            text.lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// Sends `bytes` as one UDP datagram to the LAN's broadcast address, port 67.
    pub fn send_dhcp_garbage(&self, bytes: &[u8]) {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, "socat", "-u", "STDIN"])
            .arg("UDP-DATAGRAM:255.255.255.255:67,broadcast,so-bindtodevice=eth0")
            .stdin(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = c.spawn().expect("socat runs");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(bytes)
            .expect("write");
        let _ = child.wait();
    }
}

impl Drop for Cart {
    fn drop(&mut self) {
        self.peers.clear();
        if let Some(link) = &self.broker_link {
            let _ = Command::new("ip").args(["link", "del", link]).status();
        }
        for t in &self.tablets {
            let _ = Command::new("ip").args(["netns", "del", &t.ns]).status();
        }
        for ns in [&self.box_ns, &self.inet_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
