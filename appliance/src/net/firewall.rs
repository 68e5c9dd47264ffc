//! The cart's no-bypass ruleset (service `firewall`): one nftables table the box
//! writes whole and hands to `nft -f` (one transaction: the old table, if any, goes in
//! the same commit the new one comes in, so there is no moment without rules), and
//! deletes when the service stops. After a kill -9 the next start replaces it the same
//! way, and the systemd unit deletes it after any stop (`ExecStopPost`).
//!
//! What it does, for packets coming in on the LAN bridge:
//! - every DNS packet (port 53, UDP and TCP), to any address, is redirected to the
//!   box's DNS server: a tablet set to 8.8.8.8 gets the box's filtered answer;
//! - DNS over TLS and over QUIC (port 853) is refused except to the box itself,
//!   which answers it (Android's Private DNS tries it first);
//! - public resolvers' addresses (DNS over HTTPS by address; their names are the UT1
//!   `doh` category, blocked in DNS) are refused, with a TCP reset or an ICMP error so
//!   that the tablet falls back at once instead of waiting;
//! - the LAN is masqueraded to the uplink.
//!
//! What must not live here: the addresses' source (the store, the central side) or
//! the DNS server; this file renders and applies.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use crate::config::{IfName, Ipv4Net};
use crate::supervisor::{Service, ServiceCtx, ServiceFuture};

/// The table every rule of the box lives in (nothing else of the system is touched).
pub(crate) const TABLE: &str = "cartable";

/// Public resolvers known to serve DNS over HTTPS or TLS on their own addresses:
/// Google, Cloudflare, Quad9, OpenDNS, AdGuard, CleanBrowsing, NextDNS, Control D,
/// Mullvad, DNS.SB. The central side adds to it; a school's file may too.
pub(crate) const BUILTIN_RESOLVERS: &[&str] = &[
    "8.8.8.8",
    "8.8.4.4",
    "2001:4860:4860::8888",
    "2001:4860:4860::8844",
    "1.1.1.1",
    "1.0.0.1",
    "1.1.1.2",
    "1.0.0.2",
    "1.1.1.3",
    "1.0.0.3",
    "2606:4700:4700::1111",
    "2606:4700:4700::1001",
    "9.9.9.9",
    "149.112.112.112",
    "9.9.9.10",
    "9.9.9.11",
    "2620:fe::fe",
    "2620:fe::9",
    "208.67.222.222",
    "208.67.220.220",
    "208.67.222.123",
    "208.67.220.123",
    "94.140.14.14",
    "94.140.15.15",
    "94.140.14.15",
    "94.140.15.16",
    "185.228.168.9",
    "185.228.169.9",
    "185.228.168.168",
    "45.90.28.0",
    "45.90.30.0",
    "76.76.2.0",
    "76.76.10.0",
    "194.242.2.2",
    "194.242.2.3",
    "185.222.222.222",
    "45.11.45.11",
];

/// What the ruleset is made from.
#[derive(Debug, Clone)]
pub(crate) struct Ruleset {
    pub bridge: IfName,
    pub lan: Ipv4Net,
    /// The box's DNS port (the redirect's target).
    pub dns_port: u16,
    /// The box's DNS-over-TLS port, if it serves one (853 to the box stays open).
    pub dot_port: Option<u16>,
    /// Masquerade the LAN to this interface, or to any but the bridge when `None`.
    pub nat: Option<Option<IfName>>,
    pub resolvers: Vec<IpAddr>,
}

impl Ruleset {
    /// The `nft -f` input: the table replaced in one transaction.
    pub(crate) fn render(&self) -> String {
        let br = &self.bridge.0;
        let (v4, v6): (Vec<IpAddr>, Vec<IpAddr>) = self.resolvers.iter().partition(|a| a.is_ipv4());
        let elements = |v: &[IpAddr]| {
            if v.is_empty() {
                String::new()
            } else {
                let list: Vec<String> = v.iter().map(IpAddr::to_string).collect();
                format!("elements = {{ {} }}", list.join(", "))
            }
        };
        let mut out = format!(
            "# Written by cartable: the cart's no-bypass rules. Replaced whole at each start.\n\
             table inet {TABLE}\ndelete table inet {TABLE}\n\
             table inet {TABLE} {{\n\
             \tset resolvers4 {{ type ipv4_addr; {} }}\n\
             \tset resolvers6 {{ type ipv6_addr; {} }}\n",
            elements(&v4),
            elements(&v6)
        );
        out.push_str(&format!(
            "\tchain dns_redirect {{\n\
             \t\ttype nat hook prerouting priority dstnat; policy accept;\n\
             \t\tiifname \"{br}\" udp dport 53 redirect to :{port}\n\
             \t\tiifname \"{br}\" tcp dport 53 redirect to :{port}\n\
             \t}}\n",
            port = self.dns_port
        ));
        out.push_str(&format!(
            "\tchain no_bypass {{\n\
             \t\ttype filter hook forward priority filter; policy accept;\n\
             \t\tiifname \"{br}\" tcp dport 853 reject with tcp reset\n\
             \t\tiifname \"{br}\" udp dport 853 reject with icmpx admin-prohibited\n\
             \t\tiifname \"{br}\" ip daddr @resolvers4 meta l4proto tcp reject with tcp reset\n\
             \t\tiifname \"{br}\" ip daddr @resolvers4 reject with icmpx admin-prohibited\n\
             \t\tiifname \"{br}\" ip6 daddr @resolvers6 meta l4proto tcp reject with tcp reset\n\
             \t\tiifname \"{br}\" ip6 daddr @resolvers6 reject with icmpx admin-prohibited\n\
             \t}}\n"
        ));
        if let Some(dot) = self.dot_port
            && dot != 853
        {
            // DoT served on another port: tablets still knock on 853 (RFC 7858).
            out.push_str(&format!(
                "\tchain dot_redirect {{\n\
                 \t\ttype nat hook prerouting priority dstnat; policy accept;\n\
                 \t\tiifname \"{br}\" ip daddr {addr} tcp dport 853 redirect to :{dot}\n\
                 \t}}\n",
                addr = self.lan.addr
            ));
        }
        if let Some(out_if) = &self.nat {
            let oif = match out_if {
                Some(u) => format!("oifname \"{}\"", u.0),
                None => format!("oifname != \"{br}\""),
            };
            out.push_str(&format!(
                "\tchain nat_out {{\n\
                 \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
                 \t\tip saddr {net}/{prefix} {oif} masquerade\n\
                 \t}}\n",
                net = self.lan.network(),
                prefix = self.lan.prefix
            ));
        }
        out.push_str("}\n");
        out
    }
}

/// Runs `nft -f FILE`, with nft's own error when it refuses.
fn nft_file(path: &std::path::Path) -> anyhow::Result<()> {
    let out = std::process::Command::new(nft())
        .arg("-f")
        .arg(path)
        .output()
        .context("running nft (is nftables installed?)")?;
    if !out.status.success() {
        anyhow::bail!(
            "nft refused the ruleset: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn nft() -> &'static str {
    if std::path::Path::new("/usr/sbin/nft").exists() {
        "/usr/sbin/nft"
    } else {
        "nft"
    }
}

/// Deletes the box's table; true if there was one (false too where nft is missing
/// or not allowed: then there is nothing of ours to remove).
pub(crate) fn remove() -> bool {
    std::process::Command::new(nft())
        .stdout(std::process::Stdio::null())
        .args(["delete", "table", "inet", TABLE])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The central side's resolver addresses in force (verified policies), read at each
/// apply.
pub(crate) type CentralResolvers = Arc<dyn Fn() -> Vec<IpAddr> + Send + Sync>;

/// The firewall as a service: applied when it runs, again when the central side's
/// resolver addresses change (`wake`), removed when it stops.
pub(crate) struct Firewall {
    /// The ruleset; its `resolvers` are the built-in and configured ones.
    pub ruleset: Ruleset,
    pub central: CentralResolvers,
    pub wake: Arc<tokio::sync::Notify>,
    /// Where the rendered file is kept (the admin reads what was applied).
    pub file: PathBuf,
    /// Turns IPv4 forwarding on, which NAT needs.
    pub forward: bool,
}

impl Firewall {
    fn apply(&self) -> anyhow::Result<()> {
        let mut ruleset = self.ruleset.clone();
        ruleset.resolvers.extend((self.central)());
        ruleset.resolvers.sort();
        ruleset.resolvers.dedup();
        let text = ruleset.render();
        if let Some(dir) = self.file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&self.file, &text)
            .with_context(|| format!("writing {}", self.file.display()))?;
        nft_file(&self.file)?;
        const FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
        let on = std::fs::read_to_string(FORWARD).is_ok_and(|v| v.trim() == "1");
        if self.forward
            && !on
            && let Err(e) = std::fs::write(FORWARD, "1")
        {
            tracing::warn!(error = %e, "cannot turn IPv4 forwarding on: tablets get no internet");
        }
        tracing::info!(
            file = %self.file.display(),
            resolvers = ruleset.resolvers.len(),
            "no-bypass ruleset applied"
        );
        Ok(())
    }
}

impl Service for Firewall {
    fn name(&self) -> &'static str {
        "firewall"
    }

    fn run(self: Arc<Self>, ctx: ServiceCtx) -> ServiceFuture {
        Box::pin(async move {
            let me = self.clone();
            tokio::task::spawn_blocking(move || me.apply()).await??;
            ctx.ready();
            loop {
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => break,
                    _ = self.wake.notified() => {
                        // Replaced whole, in one transaction: no moment without rules.
                        let me = self.clone();
                        if let Err(e) = tokio::task::spawn_blocking(move || me.apply()).await? {
                            tracing::warn!(error = %e, "cannot apply the new resolver addresses; the rules before stay");
                        }
                    }
                }
            }
            let gone = tokio::task::spawn_blocking(remove).await.unwrap_or(false);
            tracing::info!(removed = gone, "no-bypass ruleset removed");
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ruleset_replaces_itself_and_names_the_bridge() {
        let r = Ruleset {
            bridge: IfName("br-cart".into()),
            lan: Ipv4Net::try_from("10.42.0.1/24".to_string()).unwrap(),
            dns_port: 53,
            dot_port: Some(853),
            nat: Some(None),
            resolvers: vec!["8.8.8.8".parse().unwrap(), "2620:fe::fe".parse().unwrap()],
        };
        let text = r.render();
        assert!(text.starts_with("# Written by cartable"));
        assert!(text.contains("table inet cartable\ndelete table inet cartable\n"));
        assert!(text.contains("iifname \"br-cart\" udp dport 53 redirect to :53"));
        assert!(text.contains("elements = { 8.8.8.8 }"));
        assert!(text.contains("elements = { 2620:fe::fe }"));
        assert!(text.contains("ip saddr 10.42.0.0/24 oifname != \"br-cart\" masquerade"));
        assert!(!text.contains("dot_redirect"));
    }
}
