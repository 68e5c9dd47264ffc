//! A network namespace joined to this one by a veth pair, made and removed by the test:
//! the box on one side, the broker on the other, and a link the test can cut.

use std::net::Ipv4Addr;
use std::process::Command;

pub struct Netns {
    pub name: String,
    /// The veth end inside the namespace.
    pub inner: String,
    /// The veth end outside.
    pub outer: String,
    pub outer_ip: Ipv4Addr,
    pub inner_ip: Ipv4Addr,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn must(args: &[&str]) {
    assert!(ip(args), "ip {} failed", args.join(" "));
}

impl Netns {
    /// True when namespaces can be made here (root, iproute2).
    pub fn available() -> bool {
        let probe = format!("cartable-probe-{}", std::process::id());
        let ok = ip(&["netns", "add", &probe]);
        if ok {
            ip(&["netns", "del", &probe]);
        }
        ok
    }

    /// `index` keeps concurrent tests apart (addresses 10.231.index.0/30).
    pub fn create(index: u8) -> Netns {
        let pid = std::process::id();
        let n = Netns {
            name: format!("cartable-t{pid}-{index}"),
            inner: format!("ctin{}{index}", pid % 100_000),
            outer: format!("ctout{}{index}", pid % 100_000),
            outer_ip: Ipv4Addr::new(10, 231, index, 1),
            inner_ip: Ipv4Addr::new(10, 231, index, 2),
        };
        must(&["netns", "add", &n.name]);
        must(&[
            "link", "add", &n.outer, "type", "veth", "peer", "name", &n.inner,
        ]);
        must(&["link", "set", &n.inner, "netns", &n.name]);
        must(&[
            "addr",
            "add",
            &format!("{}/30", n.outer_ip),
            "dev",
            &n.outer,
        ]);
        must(&["link", "set", &n.outer, "up"]);
        n.exec_ip(&["link", "set", "lo", "up"]);
        n.exec_ip(&[
            "addr",
            "add",
            &format!("{}/30", n.inner_ip),
            "dev",
            &n.inner,
        ]);
        n.link_up();
        n
    }

    fn exec_ip(&self, args: &[&str]) {
        let mut full = vec!["netns", "exec", &self.name, "ip"];
        full.extend_from_slice(args);
        must(&full);
    }

    /// Cuts the box's link (the default route goes with it).
    pub fn link_down(&self) {
        self.exec_ip(&["link", "set", &self.inner, "down"]);
    }

    /// Restores the link and the default route through it.
    pub fn link_up(&self) {
        self.exec_ip(&["link", "set", &self.inner, "up"]);
        let gw = self.outer_ip.to_string();
        self.exec_ip(&["route", "replace", "default", "via", &gw]);
    }

    /// A command run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        ip(&["link", "del", &self.outer]);
        ip(&["netns", "del", &self.name]);
    }
}
