//! The `[net]` section: whether the box sits on a school's LAN (`school`: it touches
//! no link) or is a cart's whole network (`cart`: its bridge, addresses, DHCP,
//! firewall and access point), with the value types its keys are checked as.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

pub use crate::filter::policy::MacAddr as Mac;

/// The box's network.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetConfig {
    /// `school`: the box sits on an existing LAN and changes no link, route or
    /// firewall; `cart`: the box is the tablets' network (bridge, DHCP, no bypass).
    pub mode: NetMode,
    /// The cart's LAN (cart mode).
    pub lan: LanConfig,
    /// The cart's DHCP server (cart mode).
    pub dhcp: DhcpConfig,
    /// The no-bypass firewall (cart mode).
    pub firewall: FirewallConfig,
    /// The access point hostapd runs (cart mode).
    pub ap: ApConfig,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NetMode {
    #[default]
    School,
    Cart,
}

/// The cart's LAN: one bridge the access point's interface (and any wired port) joins.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LanConfig {
    /// The bridge, created if missing, adopted if it exists.
    pub bridge: IfName,
    /// Interfaces joined to the bridge: the access point's, wired ports. hostapd adds
    /// its own interface when it starts (its `bridge=` line), so it may be left out.
    pub ports: Vec<IfName>,
    /// The box's address on the LAN, with its prefix: the tablets' router and DNS.
    pub address: Ipv4Net,
    /// The uplink interface (NATed to); by default whichever holds the default route.
    pub uplink: Option<IfName>,
}

impl Default for LanConfig {
    fn default() -> Self {
        LanConfig {
            bridge: IfName("br-cart".into()),
            ports: Vec::new(),
            address: Ipv4Net {
                addr: Ipv4Addr::new(10, 42, 0, 1),
                prefix: 24,
            },
            uplink: None,
        }
    }
}

/// The cart's DHCPv4 server.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DhcpConfig {
    /// Serve addresses on the LAN (cart mode only).
    pub enabled: bool,
    /// The first and last address given out (in the LAN's subnet).
    pub range_start: Ipv4Addr,
    pub range_end: Ipv4Addr,
    /// How long a lease lasts, in seconds.
    pub lease_secs: u32,
    /// The captive-portal URI given to tablets (RFC 8910, option 114); by default
    /// the box's RFC 8908 API on the LAN address. Empty: the option is not sent.
    pub captive_portal: Option<String>,
    /// Addresses reserved for given tablets.
    #[serde(rename = "static")]
    pub statics: Vec<StaticLease>,
}

impl Default for DhcpConfig {
    fn default() -> Self {
        DhcpConfig {
            enabled: true,
            range_start: Ipv4Addr::new(10, 42, 0, 100),
            range_end: Ipv4Addr::new(10, 42, 0, 250),
            lease_secs: 12 * 3600,
            captive_portal: None,
            statics: Vec::new(),
        }
    }
}

/// `[[net.dhcp.static]]`: this MAC always gets this address.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StaticLease {
    pub mac: Mac,
    pub address: Ipv4Addr,
    /// A label for the admin (the tablet's inventory name).
    #[serde(default)]
    pub name: String,
}

/// The firewall that keeps tablets on the box's DNS.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FirewallConfig {
    /// Apply the ruleset (cart mode only).
    pub enabled: bool,
    /// NAT the LAN to the uplink.
    pub nat: bool,
    /// Public resolvers' addresses refused to tablets (DNS over HTTPS by address), on
    /// top of the built-in set and the central side's.
    pub resolver_addresses: Vec<std::net::IpAddr>,
}

impl Default for FirewallConfig {
    fn default() -> Self {
        FirewallConfig {
            enabled: true,
            nat: true,
            resolver_addresses: Vec::new(),
        }
    }
}

/// The access point: rendered into hostapd's configuration at start.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApConfig {
    /// Render hostapd's configuration (cart mode only).
    pub enabled: bool,
    /// The radio's interface.
    pub interface: IfName,
    pub ssid: Ssid,
    /// WPA2 or WPA3 passphrase, 8 to 63 printable ASCII characters, as hostapd wants.
    pub passphrase: Option<Passphrase>,
    /// `wpa2`, `wpa3` (SAE only) or `wpa2-wpa3` (transition: older tablets still join).
    pub security: ApSecurity,
    /// The regulatory country, two letters (`FR`).
    pub country: Country,
    /// 1 to 13 (2.4 GHz) or a 5 GHz channel (36 to 165).
    pub channel: Channel,
    /// Where the rendered configuration is written (hostapd's unit reads it).
    pub config_file: std::path::PathBuf,
}

impl Default for ApConfig {
    fn default() -> Self {
        ApConfig {
            enabled: false,
            interface: IfName("wlan0".into()),
            ssid: Ssid("cartable".into()),
            passphrase: None,
            security: ApSecurity::Wpa2Wpa3,
            country: Country("FR".into()),
            channel: Channel(6),
            config_file: "/run/cartable/hostapd.conf".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApSecurity {
    Wpa2,
    Wpa3,
    Wpa2Wpa3,
}

/// A network interface's name, as the kernel takes it (1 to 15 bytes, no `/`, no space).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct IfName(pub String);

impl TryFrom<String> for IfName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() < 16
            && s != "."
            && s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
        if ok {
            Ok(IfName(s))
        } else {
            Err(format!(
                "`{s}` is not an interface name: 1 to 15 characters, no `/`, `:` or space"
            ))
        }
    }
}

impl From<IfName> for String {
    fn from(n: IfName) -> String {
        n.0
    }
}

impl std::fmt::Display for IfName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An IPv4 address with its prefix: `10.42.0.1/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ipv4Net {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Net {
    pub fn mask(&self) -> Ipv4Addr {
        Ipv4Addr::from(
            u32::MAX
                .checked_shl(32 - u32::from(self.prefix))
                .unwrap_or(0),
        )
    }

    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & u32::from(self.mask()))
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()) | !u32::from(self.mask()))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & u32::from(self.mask()) == u32::from(self.network())
    }
}

impl TryFrom<String> for Ipv4Net {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let bad = || format!("`{s}` is not an address with its prefix (like 10.42.0.1/24)");
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&prefix) {
            return Err(format!("`{s}`: the prefix must be 8 to 30"));
        }
        let net = Ipv4Net { addr, prefix };
        if addr == net.network() || addr == net.broadcast() {
            return Err(format!(
                "`{s}` is the subnet's network or broadcast address"
            ));
        }
        Ok(net)
    }
}

impl From<Ipv4Net> for String {
    fn from(n: Ipv4Net) -> String {
        format!("{}/{}", n.addr, n.prefix)
    }
}

/// An SSID: 1 to 32 bytes, no control character (hostapd's file is line-based).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ssid(pub String);

impl TryFrom<String> for Ssid {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.is_empty() || s.len() > 32 || s.chars().any(char::is_control) {
            return Err(format!(
                "`{s}` is not an SSID: 1 to 32 bytes, no control character"
            ));
        }
        Ok(Ssid(s))
    }
}

impl From<Ssid> for String {
    fn from(s: Ssid) -> String {
        s.0
    }
}

/// A WPA passphrase hostapd takes: 8 to 63 bytes (its `wpa_passphrase`, also SAE's
/// password in WPA3 and transition modes), on one line of its file. hostapd counts
/// bytes, so a non-ASCII character counts as its UTF-8 bytes (and some tablets cannot
/// type it: printable ASCII is the safe choice).
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Passphrase(pub String);

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(..)")
    }
}

impl TryFrom<String> for Passphrase {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if !(8..=63).contains(&s.len()) {
            return Err(format!(
                "the passphrase has {} bytes: hostapd takes 8 to 63",
                s.len()
            ));
        }
        if s.contains(['\n', '\r', '\0']) {
            return Err(
                "the passphrase holds a line break or a NUL: hostapd's file is one per line".into(),
            );
        }
        Ok(Passphrase(s))
    }
}

impl From<Passphrase> for String {
    fn from(p: Passphrase) -> String {
        p.0
    }
}

/// An ISO 3166 country code, two capital letters.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Country(pub String);

impl TryFrom<String> for Country {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Country(s))
        } else {
            Err(format!("`{s}` is not a country code (like FR)"))
        }
    }
}

impl From<Country> for String {
    fn from(c: Country) -> String {
        c.0
    }
}

/// A wifi channel hostapd can be set to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "u16", into = "u16")]
pub struct Channel(pub u16);

impl Channel {
    /// hostapd's `hw_mode`: `g` on 2.4 GHz, `a` on 5 GHz.
    pub fn hw_mode(self) -> &'static str {
        if self.0 <= 14 { "g" } else { "a" }
    }
}

impl TryFrom<u16> for Channel {
    type Error = String;
    fn try_from(c: u16) -> Result<Self, String> {
        const FIVE: &[u16] = &[
            36, 40, 44, 48, 52, 56, 60, 64, 100, 104, 108, 112, 116, 120, 124, 128, 132, 136, 140,
            144, 149, 153, 157, 161, 165,
        ];
        if (1..=13).contains(&c) || FIVE.contains(&c) {
            Ok(Channel(c))
        } else {
            Err(format!(
                "`{c}` is not a wifi channel: 1 to 13, or a 5 GHz one (36, 40, ... 165)"
            ))
        }
    }
}

impl From<Channel> for u16 {
    fn from(c: Channel) -> u16 {
        c.0
    }
}

impl NetConfig {
    /// What no single key can say: the DHCP range inside the LAN and apart from the
    /// box's address, static leases inside the LAN, an access point with a passphrase.
    pub(super) fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.mode != NetMode::Cart {
            return out;
        }
        let lan = self.lan.address;
        let d = &self.dhcp;
        if d.enabled {
            for (key, ip) in [("range_start", d.range_start), ("range_end", d.range_end)] {
                if !lan.contains(ip) || ip == lan.network() || ip == lan.broadcast() {
                    out.push(format!(
                        "[net.dhcp] {key} = {ip} is not a host of the LAN {}/{}",
                        lan.network(),
                        lan.prefix
                    ));
                }
            }
            if u32::from(d.range_start) > u32::from(d.range_end) {
                out.push("[net.dhcp] range_start comes after range_end".into());
            }
            if (u32::from(d.range_start)..=u32::from(d.range_end)).contains(&u32::from(lan.addr)) {
                out.push(format!(
                    "[net.dhcp] the range holds the box's own address {}",
                    lan.addr
                ));
            }
            if d.lease_secs < 120 {
                out.push("[net.dhcp] lease_secs must be at least 120".into());
            }
            let mut seen = std::collections::HashSet::new();
            for s in &d.statics {
                if !lan.contains(s.address) || s.address == lan.addr {
                    out.push(format!(
                        "[[net.dhcp.static]] {}: {} is not a tablet's address on the LAN",
                        s.mac, s.address
                    ));
                }
                if !seen.insert(s.address) {
                    out.push(format!(
                        "[[net.dhcp.static]] {} is given to two tablets",
                        s.address
                    ));
                }
            }
        }
        if self.ap.enabled && self.ap.passphrase.is_none() {
            out.push(
                "[net.ap] passphrase is missing: an open access point would let anyone in".into(),
            );
        }
        out
    }
}
