//! The one configuration tree: a TOML file with one section per service.
//!
//! Every key has a default, so an empty file is a valid configuration. Parsing keeps
//! going past the first mistake: an admin editing a box's file by hand over a weak
//! link wants every problem at once, each as `FILE:LINE: message` naming the key.

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod checks;
mod headwind;
mod net;
mod update;

pub use crate::filter::policy::{BlockMode, PolicyConfig};
pub use headwind::ApkDigest;
pub use net::{
    ApConfig, ApSecurity, DhcpConfig, FirewallConfig, IfName, Ipv4Net, LanConfig, Mac, NetConfig,
    NetMode, Passphrase, StaticLease,
};
pub use update::{FirmwareVersion, InstallWindow, PeerUrl, UpdateBackend, UpdateConfig};

/// The whole configuration of one box. Each service reads only its own section.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub appliance: ApplianceConfig,
    pub http: HttpConfig,
    pub dns: DnsConfig,
    pub filter: FilterConfig,
    pub cache: CacheConfig,
    pub hub: HubConfig,
    pub sync: SyncConfig,
    pub update: UpdateConfig,
    pub net: NetConfig,
}

/// Who this box is and where it keeps its state.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApplianceConfig {
    /// Stable identity of the box in the fleet (MQTT topics, event ids).
    pub id: Name,
    /// The school (or cart) the box serves; groups boxes in the fleet console.
    pub site: Name,
    /// Folder holding the SQLite store and every cached object.
    pub data_dir: PathBuf,
}

impl Default for ApplianceConfig {
    fn default() -> Self {
        Self {
            id: Name("cartable".into()),
            site: Name("default".into()),
            data_dir: PathBuf::from("/var/lib/cartable"),
        }
    }
}

/// The box's web server: teacher pages, admin API, cache, block page.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 80)),
        }
    }
}

/// What the filtering DNS server answers, and how.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Addresses to serve on, UDP and TCP each.
    pub listen: Vec<SocketAddr>,
    /// Addresses to serve DNS over TLS on (RFC 7858; Android's Private DNS tries the
    /// box's port 853 first). In cart mode the LAN address's port 853 is added.
    pub tls_listen: Vec<SocketAddr>,
    /// The DNS-over-TLS certificate chain and key (PEM); without them a self-signed
    /// pair is made at first start under `data_dir/dns/tls/` (enough for Android's
    /// opportunistic mode, which encrypts without checking the name).
    pub tls_cert_file: Option<ExistingPath>,
    pub tls_key_file: Option<ExistingPath>,
    /// Where allowed names are resolved: `IP[:port]`, or `tls://IP[:port]#name` for
    /// DNS over TLS.
    pub upstreams: Vec<Upstream>,
    /// CA certificates (PEM) for TLS upstreams; the system's bundle when not set.
    pub upstream_ca_file: Option<ExistingPath>,
    /// With no `upstreams`, use the system's resolvers (/etc/resolv.conf).
    pub system_resolvers: bool,
    /// How a blocked name is answered.
    pub block_mode: BlockMode,
    /// The box's addresses on the school network: block page answers point there.
    pub box_addresses: Vec<std::net::IpAddr>,
    /// Names the box answers itself, each with its addresses.
    pub local: std::collections::BTreeMap<String, Vec<std::net::IpAddr>>,
    /// Most answers kept in the cache.
    pub cache_entries: usize,
    /// How long an expired answer may still be served while the uplink is down.
    pub stale_max_hours: u32,
    /// How long to wait for an upstream before trying the next.
    pub upstream_timeout_ms: u64,
    /// Queries kept in the in-memory query log, for the admin (0: none).
    pub query_log: usize,
    /// Who may use this DNS server: addresses and subnets (CIDR); everyone else is
    /// answered REFUSED. By default the private, link-local and loopback ranges: an
    /// open resolver on a public address would be an amplifier for the whole internet.
    pub allow_clients: Vec<crate::filter::policy::Cidr>,
    /// DNS-rebinding protection: an upstream answer that gives a public name a private,
    /// loopback or link-local address is refused (as dnsmasq's `stop-dns-rebind`), so a
    /// web page cannot turn a pupil's browser against the box or the school's printers.
    pub rebind_protection: bool,
    /// Domains (and their subdomains) whose upstream answers may hold private
    /// addresses: the school's own internal zones. `[dns] local` names are never
    /// checked.
    pub rebind_allow: Vec<crate::filter::policy::DomainName>,
    /// Queries per second one client may send, sustained (0: no limit) ...
    pub client_rate: u32,
    /// ... and in a burst: a tablet opening a news site sends 50 to 100 at once.
    pub client_burst: u32,
    /// Clients the rate limit does not apply to (the box's own programs by default).
    pub rate_exempt: Vec<crate::filter::policy::Cidr>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from(([0, 0, 0, 0], 53))],
            tls_listen: Vec::new(),
            tls_cert_file: None,
            tls_key_file: None,
            upstreams: Vec::new(),
            upstream_ca_file: None,
            system_resolvers: true,
            block_mode: BlockMode::Blockpage,
            box_addresses: Vec::new(),
            local: Default::default(),
            cache_entries: 100_000,
            stale_max_hours: 24 * 7,
            upstream_timeout_ms: 1500,
            query_log: 10_000,
            allow_clients: subnets(&[
                "10.0.0.0/8",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "127.0.0.0/8",
                "169.254.0.0/16",
                "100.64.0.0/10",
                "::1/128",
                "fc00::/7",
                "fe80::/10",
            ]),
            rebind_protection: true,
            // Special-use and private-use names (RFC 6761, 6762, 8375): never public.
            rebind_allow: ["test", "localhost", "local", "lan", "home.arpa", "internal"]
                .iter()
                .map(|d| {
                    crate::filter::policy::DomainName::try_from(d.to_string())
                        .expect("a valid built-in name")
                })
                .collect(),
            client_rate: 500,
            client_burst: 1000,
            rate_exempt: subnets(&["127.0.0.0/8", "::1/128"]),
        }
    }
}

/// Built-in subnets, written as text.
fn subnets(cidrs: &[&str]) -> Vec<crate::filter::policy::Cidr> {
    cidrs
        .iter()
        .map(|c| c.parse().expect("a valid built-in subnet"))
        .collect()
}

/// Block lists and policies.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    /// An unpacked UT1 `blacklists/` folder.
    pub ut1_dir: Option<ExistingPath>,
    /// The UT1 `.tar.gz` archive, used when `ut1_dir` is not set.
    pub ut1_archive: Option<ExistingPath>,
    /// More lists (hosts files or one name a line), each filling a category.
    #[serde(rename = "list")]
    pub lists: Vec<ListConfig>,
    /// The policies; when none is written, the built-in `ecole` (default), `college`
    /// and `enseignants`.
    #[serde(rename = "policy")]
    pub policies: Vec<PolicyConfig>,
    /// The time zone schedules are read in (IANA name).
    pub timezone: TimeZoneName,
}

impl Default for FilterConfig {
    fn default() -> Self {
        FilterConfig {
            ut1_dir: None,
            ut1_archive: None,
            lists: Vec::new(),
            policies: crate::filter::policy::builtin(),
            timezone: TimeZoneName("Europe/Paris".into()),
        }
    }
}

/// A list file outside the UT1 tree (`[[filter.list]]`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListConfig {
    /// The category it fills: a UT1 one, or a new one of this name.
    pub category: String,
    pub path: ExistingPath,
}

/// The app and update cache.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Most bytes the cached objects may take under `data_dir`.
    pub quota_bytes: u64,
    /// Free space the cache always leaves on the disk of `data_dir`, measured before
    /// each object is stored (the quota alone cannot know what else fills the disk).
    pub reserve_bytes: u64,
    /// A local catalogue file (JSON), for a box not driven by the central side.
    pub catalogue: Option<ExistingPath>,
    /// When the prefetcher may use the uplink; none means at any time. A tablet's
    /// request for a missing object is fetched at once whatever the time.
    pub windows: Vec<CacheWindow>,
    /// Most bytes per second the prefetcher takes from the uplink (0: no cap).
    pub rate_limit: u64,
    /// Longest wait between two attempts at a failing download, in seconds (the wait
    /// doubles from 1 s up to this, with jitter).
    pub retry_max_secs: u64,
    /// Seconds without a byte from the origin before a download counts as cut.
    pub stall_secs: u64,
    /// CA certificates (PEM) for HTTPS origins, instead of the system's.
    pub ca_file: Option<ExistingPath>,
    /// DNS redirect mode: origins whose names the DNS server answers with the box's
    /// address (`[dns] box_addresses`), so that plain-HTTP downloads from them are
    /// served by the cache.
    pub redirect: Vec<RedirectOrigin>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            quota_bytes: 32 * 1024 * 1024 * 1024,
            reserve_bytes: 1024 * 1024 * 1024,
            catalogue: None,
            windows: Vec::new(),
            rate_limit: 0,
            retry_max_secs: 900,
            stall_secs: 60,
            ca_file: None,
            redirect: Vec::new(),
        }
    }
}

impl CacheConfig {
    /// Every host name of `[[cache.redirect]]`: the DNS server answers them with the
    /// box.
    pub fn redirect_hosts(&self) -> Vec<String> {
        self.redirect
            .iter()
            .flat_map(|o| o.hosts.iter().cloned())
            .collect()
    }
}

/// A time window for the prefetcher (`[[cache.windows]]`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CacheWindow {
    /// Days, as names or ranges: `["mon-fri"]`, `["wed"]`.
    pub days: Vec<crate::base::clock::Days>,
    /// Start, `HH:MM`.
    pub from: crate::base::clock::ClockTime,
    /// End, `HH:MM`, excluded; before `from`, the window crosses midnight.
    pub to: crate::base::clock::ClockTime,
}

/// An origin served in DNS redirect mode (`[[cache.redirect]]`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectOrigin {
    /// Names the objects of these hosts are stored under: hosts that serve the same
    /// files (a CDN's mirrors) share one name, so each file is stored once.
    pub name: Name,
    /// Host names, exact (`dl.example.org`).
    pub hosts: Vec<String>,
}

/// The classroom hub.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubConfig {
    /// How long a one-shot action (open a link, launch an app, a message) waits for a
    /// tablet that is offline, in seconds.
    pub one_shot_ttl_secs: u64,
    /// The Headwind MDM agent's shared secret (its build's `REQUEST_SIGNATURE`);
    /// without it the Headwind endpoints are off.
    pub headwind_secret: Option<String>,
    /// The Headwind server project path the agents are set up with ("" for none).
    pub headwind_project: String,
    /// The Headwind agent's APK in the cache (its SHA-256, as its catalogue item
    /// says): a Headwind enrolment code then comes with the Android provisioning QR a
    /// factory-reset tablet scans to install the agent from the box.
    pub headwind_apk_sha256: Option<ApkDigest>,
    /// Apps whose data a "log out and wipe" clears on Headwind tablets.
    pub wipe_packages: Vec<String>,
    /// Folders (under the tablet's storage) a "log out and wipe" empties.
    pub wipe_dirs: Vec<String>,
    /// Seconds between screen-time checks (each counts that much use).
    pub screen_time_tick_secs: u64,
    /// The school's name as pupils and teachers read it (on the QR cards); by
    /// default `[appliance] site`.
    pub school_name: String,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            one_shot_ttl_secs: 600,
            headwind_secret: None,
            headwind_project: String::new(),
            headwind_apk_sha256: None,
            wipe_packages: Vec::new(),
            wipe_dirs: vec!["Download".to_string(), "Pictures".to_string()],
            screen_time_tick_secs: 60,
            school_name: String::new(),
        }
    }
}

/// The MQTT link to the central side.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// `mqtt://host:port` or `mqtts://host:port`; no broker means a standalone box.
    pub broker: Option<BrokerUrl>,
    pub username: Option<String>,
    pub password_file: Option<ExistingPath>,
    /// CA certificate that signs the broker's certificate (for `mqtts://`).
    pub ca_file: Option<ExistingPath>,
    /// This box's client certificate and key (PEM), for brokers that authenticate boxes
    /// by certificate.
    pub client_cert_file: Option<ExistingPath>,
    pub client_key_file: Option<ExistingPath>,
    /// The fleet's root Ed25519 public key (hex), pinned at enrolment: it certifies the
    /// working keys that sign desired state, and signs their revocations. Without it,
    /// desired state from the central side is refused.
    pub fleet_public_key: Option<FleetKey>,
    /// Seconds between MQTT keep-alive pings.
    pub keep_alive_secs: u16,
    /// Longest wait between reconnection attempts (the wait doubles from 1 s up to
    /// this, with random jitter so a fleet does not reconnect in the same second).
    pub reconnect_max_secs: u16,
    /// The outbox's bound on disk; past it statistics are dropped, oldest first (and
    /// counted); audit rows are always kept.
    pub outbox_max_bytes: u64,
    /// A batch is published once it holds this many bytes of events (before
    /// compression) ...
    pub batch_max_bytes: usize,
    /// ... or once its oldest event is this old.
    pub batch_max_age_secs: u32,
    /// Bytes per second the sync may use on the uplink (0: no cap) ...
    pub rate_limit: u64,
    /// ... during these days ...
    pub rate_limit_days: Vec<crate::base::clock::Days>,
    /// ... from this time ...
    pub rate_limit_from: crate::base::clock::ClockTime,
    /// ... to this time (local time of `[filter] timezone`).
    pub rate_limit_to: crate::base::clock::ClockTime,
    /// Seconds between retained state messages (also sent at each connection).
    pub state_every_secs: u32,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            broker: None,
            username: None,
            password_file: None,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            fleet_public_key: None,
            keep_alive_secs: 30,
            reconnect_max_secs: 300,
            outbox_max_bytes: 512 << 20,
            batch_max_bytes: 256 << 10,
            batch_max_age_secs: 5,
            rate_limit: 0,
            rate_limit_days: vec![crate::base::clock::Days::WEEKDAYS],
            rate_limit_from: crate::base::clock::ClockTime::hm(8, 0),
            rate_limit_to: crate::base::clock::ClockTime::hm(17, 0),
            state_every_secs: 300,
        }
    }
}

/// The fleet's Ed25519 public key: 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct FleetKey(pub Vec<u8>);

impl TryFrom<String> for FleetKey {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        cartable_protocol::keyring::public_key(s.trim())
            .map(FleetKey)
            .ok_or_else(|| {
                format!("`{s}` is not an Ed25519 public key: use the 64 hex digits `cartable-central keygen --root` printed")
            })
    }
}

impl From<FleetKey> for String {
    fn from(k: FleetKey) -> String {
        cartable_protocol::desired::hex(&k.0)
    }
}

/// A short identifier safe in MQTT topics, file names and URLs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

impl Name {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Name {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let ok_char =
            |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
        if s.is_empty() || s.len() > 64 || !s.chars().all(ok_char) {
            return Err(format!(
                "`{s}` is not a valid name: use 1 to 64 of a-z, 0-9, `-` and `_`"
            ));
        }
        Ok(Name(s))
    }
}

impl From<Name> for String {
    fn from(n: Name) -> String {
        n.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An IANA time zone name known to the bundled time zone database.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct TimeZoneName(String);

impl TimeZoneName {
    pub fn zone(&self) -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::get(&self.0).unwrap_or(jiff::tz::TimeZone::UTC)
    }
}

impl TryFrom<String> for TimeZoneName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        jiff::tz::TimeZone::get(&s)
            .map(|_| TimeZoneName(s.clone()))
            .map_err(|_| format!("`{s}` is not a time zone (like Europe/Paris)"))
    }
}

impl From<TimeZoneName> for String {
    fn from(t: TimeZoneName) -> String {
        t.0
    }
}

/// A path that must exist when the configuration is read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "PathBuf", into = "PathBuf")]
pub struct ExistingPath(PathBuf);

impl ExistingPath {
    pub fn as_path(&self) -> &Path {
        &self.0
    }
}

impl TryFrom<PathBuf> for ExistingPath {
    type Error = String;
    fn try_from(p: PathBuf) -> Result<Self, String> {
        match std::fs::metadata(&p) {
            Ok(_) => Ok(ExistingPath(p)),
            Err(e) => Err(format!("file `{}` cannot be read: {e}", p.display())),
        }
    }
}

impl From<ExistingPath> for PathBuf {
    fn from(p: ExistingPath) -> PathBuf {
        p.0
    }
}

/// An MQTT broker address: `mqtt://host:port` or `mqtts://host:port`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct BrokerUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl TryFrom<String> for BrokerUrl {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let bad =
            || format!("`{s}` is not a broker address: use mqtt://host:port or mqtts://host:port");
        let (tls, rest) = if let Some(r) = s.strip_prefix("mqtts://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("mqtt://") {
            (false, r)
        } else {
            return Err(bad());
        };
        let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.is_empty() || port == 0 || host.contains('/') {
            return Err(bad());
        }
        Ok(BrokerUrl {
            tls,
            host: host.to_string(),
            port,
        })
    }
}

impl From<BrokerUrl> for String {
    fn from(b: BrokerUrl) -> String {
        let scheme = if b.tls { "mqtts" } else { "mqtt" };
        if b.host.contains(':') {
            format!("{scheme}://[{}]:{}", b.host, b.port)
        } else {
            format!("{scheme}://{}:{}", b.host, b.port)
        }
    }
}

/// One problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line in the file; 0 when the problem is not tied to a line.
    pub line: usize,
    pub message: String,
}

/// Every problem found in a configuration file, printable as `FILE:LINE: message`.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}: {}", self.file.display(), p.line, p.message)?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            problems: vec![Problem {
                line: 0,
                message: format!("cannot read the file: {e}"),
            }],
        })?;
        Config::parse(&text).map_err(|problems| ConfigError {
            file: path.to_path_buf(),
            problems,
        })
    }

    /// Parses configuration text, returning every problem found, in line order.
    pub fn parse(text: &str) -> Result<Config, Vec<Problem>> {
        use toml::de::{DeTable, Deserializer};

        let line_of = |span: Option<Range<usize>>| match span {
            Some(s) => text[..s.start.min(text.len())].matches('\n').count() + 1,
            None => 0,
        };
        let (mut root, syntax) = DeTable::parse_recoverable(text);
        if !syntax.is_empty() {
            return Err(syntax
                .iter()
                .map(|e| Problem {
                    line: line_of(e.span()),
                    message: format!("syntax: {}", e.message().trim()),
                })
                .collect());
        }
        // serde stops at the first error: record it, remove the entry it points at,
        // and try again, so that one run reports every independent mistake.
        let mut problems = Vec::new();
        let mut removed: Vec<String> = Vec::new();
        for _ in 0..256 {
            match Config::deserialize(Deserializer::from(root.clone())) {
                Ok(config) if problems.is_empty() => {
                    if let Some(p) = config.cross_checks(text) {
                        return Err(vec![p]);
                    }
                    let mut problems = config.net_checks(text);
                    problems.extend(config.category_checks(text));
                    return if problems.is_empty() {
                        Ok(config)
                    } else {
                        Err(problems)
                    };
                }
                Ok(_) => break,
                Err(e) => {
                    let span = e.span();
                    let path = span
                        .clone()
                        .and_then(|s| remove_entry(root.get_mut(), &s, &mut Vec::new()));
                    let message = describe(e.message(), path.as_deref());
                    // A key removed for a bad value is then "missing": that is the
                    // same mistake, already reported.
                    let echo = e.message().starts_with("missing field")
                        && removed
                            .iter()
                            .any(|k: &String| e.message().contains(&format!("`{k}`")));
                    if !echo {
                        problems.push(Problem {
                            line: line_of(span),
                            message,
                        });
                    }
                    if let Some(key) = path.as_ref().and_then(|p| p.last()) {
                        removed.push(key.clone());
                    }
                    if path.is_none() {
                        break;
                    }
                }
            }
        }
        problems.sort_by_key(|p| p.line);
        Err(problems)
    }
}

impl Config {
    /// Where the filter's lists come from, with archives unpacked under `data_dir`.
    pub fn filter_sources(&self) -> crate::filter::load::Sources {
        let f = &self.filter;
        crate::filter::load::Sources {
            ut1_dir: f.ut1_dir.as_ref().map(|p| p.as_path().to_path_buf()),
            ut1_archive: f.ut1_archive.as_ref().map(|p| p.as_path().to_path_buf()),
            unpack_dir: self.appliance.data_dir.join("filter"),
            index_file: Some(self.appliance.data_dir.join("filter").join("index.bin")),
            lists: f
                .lists
                .iter()
                .map(|l| (l.category.clone(), l.path.as_path().to_path_buf()))
                .collect(),
        }
    }
}

/// Phrases serde's message so that it names the key it is about.
fn describe(message: &str, path: Option<&[String]>) -> String {
    let message = message.trim().replace('\n', " ");
    match path {
        Some(path) if !path.is_empty() => {
            let key = path.last().map(String::as_str).unwrap_or_default();
            let section = &path[..path.len() - 1];
            if message.starts_with("unknown field") {
                let hint = message
                    .split_once(", expected")
                    .map(|(_, h)| h)
                    .unwrap_or("");
                let hint = if hint.is_empty() {
                    String::new()
                } else {
                    format!(" (expected{hint})")
                };
                if section.is_empty() {
                    format!("unknown section `[{key}]`{hint}")
                } else {
                    format!("[{}] unknown key `{key}`{hint}", section.join("."))
                }
            } else if section.is_empty() {
                format!("`{key}`: {message}")
            } else {
                format!("[{}] {key}: {message}", section.join("."))
            }
        }
        _ => message,
    }
}

/// Removes the deepest key whose key or value covers `span`; returns its path.
///
/// A table's own span is only its header, so every table is searched, not only the
/// one whose span covers the error.
fn remove_entry(
    table: &mut toml::de::DeTable<'_>,
    span: &Range<usize>,
    path: &mut Vec<String>,
) -> Option<Vec<String>> {
    use toml::de::DeValue;
    let covers = |r: Range<usize>| r.start <= span.start && span.end <= r.end.max(r.start + 1);
    let keys: Vec<_> = table.keys().cloned().collect();
    for key in keys {
        path.push(key.get_ref().to_string());
        let value = table.get_mut(&key)?;
        let direct = covers(key.span()) || covers(value.span());
        let inner = match value.get_mut() {
            DeValue::Table(inner) => remove_entry(inner, span, path),
            DeValue::Array(items) => items.iter_mut().find_map(|item| match item.get_mut() {
                DeValue::Table(inner) => remove_entry(inner, span, path),
                _ => None,
            }),
            _ => None,
        };
        if inner.is_some() {
            return inner;
        }
        if direct {
            let found = path.clone();
            table.remove(&key);
            return Some(found);
        }
        path.pop();
    }
    None
}

/// One upstream resolver: plain DNS, or DNS over TLS (RFC 7858) to a named server.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum Upstream {
    /// `IP` or `IP:port` (53 by default): UDP, TCP when truncated.
    Plain(SocketAddr),
    /// `tls://IP[:port]#name` (853 by default): the certificate must be valid for `name`.
    Tls { addr: SocketAddr, name: String },
}

impl Upstream {
    pub fn addr(&self) -> SocketAddr {
        match self {
            Upstream::Plain(a) | Upstream::Tls { addr: a, .. } => *a,
        }
    }
}

fn parse_addr(text: &str, default_port: u16) -> Option<SocketAddr> {
    text.parse::<SocketAddr>()
        .ok()
        .or_else(|| {
            text.parse::<std::net::IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, default_port))
        })
        .or_else(|| {
            let ip = text.strip_prefix('[')?.strip_suffix(']')?.parse().ok()?;
            Some(SocketAddr::new(ip, default_port))
        })
}

impl TryFrom<String> for Upstream {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let bad =
            || format!("`{s}` is not an upstream: use IP, IP:port, or tls://IP[:port]#server-name");
        if let Some(rest) = s.strip_prefix("tls://") {
            let (addr, name) = rest.split_once('#').ok_or_else(bad)?;
            let addr = parse_addr(addr, 853).ok_or_else(bad)?;
            if crate::filter::name::normalize(name).is_none() {
                return Err(bad());
            }
            return Ok(Upstream::Tls {
                addr,
                name: name.to_string(),
            });
        }
        parse_addr(&s, 53).map(Upstream::Plain).ok_or_else(bad)
    }
}

impl From<Upstream> for String {
    fn from(u: Upstream) -> String {
        match u {
            Upstream::Plain(a) => a.to_string(),
            Upstream::Tls { addr, name } => format!("tls://{addr}#{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn every_mistake_is_reported_with_its_line_and_key() {
        let text = "[appliance]\nid = \"Box 1\"\n\n[http]\nlisen = \"127.0.0.1:80\"\n\n[dns]\nlisten = [\"127.0.0.1:99999\"]\nblock_mode = 3\n";
        let problems = Config::parse(text).unwrap_err();
        let lines: Vec<usize> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![2, 5, 8, 9], "{problems:?}");
        assert!(
            problems[0].message.contains("[appliance] id"),
            "{problems:?}"
        );
        assert!(
            problems[1].message.contains("unknown key `lisen`"),
            "{problems:?}"
        );
        assert!(problems[2].message.contains("[dns] listen"), "{problems:?}");
        assert!(
            problems[3].message.contains("[dns] block_mode"),
            "{problems:?}"
        );
    }

    #[test]
    fn unknown_section_is_named() {
        let problems = Config::parse("[dsn]\nlisten = []\n").unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].line, 1);
        assert!(
            problems[0].message.contains("unknown section `[dsn]`"),
            "{problems:?}"
        );
    }

    #[test]
    fn cache_windows_and_redirect_origins() {
        let text = "[cache]\nwindows = [{ days = [\"wed\"], from = \"12:00\", to = \"18:00\" }]\n\
                    [[cache.redirect]]\nname = \"manuels\"\nhosts = [\"dl.manuels.example\"]\n";
        let problems = Config::parse(text).unwrap_err();
        assert_eq!(problems[0].line, 3, "{problems:?}");
        assert!(
            problems[0].message.contains("box_addresses"),
            "{problems:?}"
        );
        let c = Config::parse(&format!("[dns]\nbox_addresses = [\"10.0.0.1\"]\n{text}")).unwrap();
        assert_eq!(c.cache.windows.len(), 1);
        assert_eq!(c.cache.redirect[0].hosts, ["dl.manuels.example"]);
        let bad = "[dns]\nbox_addresses = [\"10.0.0.1\"]\n[[cache.redirect]]\nname = \"x\"\nhosts = [\"not a host\"]\n";
        let problems = Config::parse(bad).unwrap_err();
        assert!(
            problems[0].message.contains("not a host name"),
            "{problems:?}"
        );
        let problems = Config::parse(
            "[cache]\nwindows = [{ days = [\"wed\"], from = \"25:00\", to = \"18:00\" }]\n",
        )
        .unwrap_err();
        assert_eq!(problems[0].line, 2, "{problems:?}");
    }

    #[test]
    fn a_missing_list_file_is_one_problem() {
        let text = "[[filter.list]]\ncategory = \"x\"\npath = \"/nonexistent/list.txt\"\n";
        let problems = Config::parse(text).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].line, 3, "{problems:?}");
        assert!(
            problems[0].message.contains("/nonexistent/list.txt"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_category_no_list_provides_is_an_error_with_its_likely_fix() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("jeux.txt");
        std::fs::write(&list, "casino.example\n").unwrap();
        let text = format!(
            "[[filter.list]]\ncategory = \"gambling\"\npath = \"{}\"\n\n[[filter.policy]]\nname = \"p\"\nblock = [\"gamblig\"]\n",
            list.display()
        );
        let problems = Config::parse(&text).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].line, 7, "{problems:?}");
        assert!(problems[0].message.contains("`gamblig`"), "{problems:?}");
        assert!(
            problems[0].message.contains("did you mean `gambling`"),
            "{problems:?}"
        );
        let optional = text.replace(
            "block = [\"gamblig\"]",
            "block = [\"gamblig\"]\noptional = [\"gamblig\"]",
        );
        assert!(Config::parse(&optional).is_ok());
        // Without any list, nothing to check against: the filter says it is degraded.
        assert!(Config::parse("[[filter.policy]]\nname = \"p\"\nblock = [\"gamblig\"]\n").is_ok());
    }

    #[test]
    fn syntax_errors_have_lines() {
        let problems = Config::parse("[http]\nlisten = \n").unwrap_err();
        assert_eq!(problems[0].line, 2, "{problems:?}");
        assert!(problems[0].message.starts_with("syntax"), "{problems:?}");
    }

    #[test]
    fn broker_urls() {
        let ok = BrokerUrl::try_from("mqtts://[::1]:8883".to_string()).unwrap();
        assert!(ok.tls && ok.host == "::1" && ok.port == 8883);
        assert_eq!(String::from(ok), "mqtts://[::1]:8883");
        for bad in [
            "tcp://a:1",
            "mqtt://a",
            "mqtt://:1",
            "mqtt://a:0",
            "mqtt://a:x",
        ] {
            assert!(BrokerUrl::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    #[test]
    fn the_example_file_is_the_defaults() {
        let text = include_str!("../../config/example.toml");
        let parsed = Config::parse(text).unwrap();
        assert_eq!(parsed, Config::default());
    }
}
