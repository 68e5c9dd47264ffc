//! Named policies and which client gets which.
//!
//! A policy blocks categories, allows and denies names (allow wins), turns safe search
//! on, and may hand its clients to another policy at set times (school hours vs
//! evenings and weekends). Clients map to policies by IP, by subnet (longest prefix
//! wins) or, once the hub knows them, by device; anyone else gets the default policy.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::base::clock::{self, ClockTime, Days, LocalTime};

use super::index::{CategorySet, Index};
use super::name::normalize;
use super::safesearch::YoutubeMode;

/// How a blocked name is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockMode {
    /// 0.0.0.0 and `::`: the connection fails at once.
    Null,
    /// The name does not exist.
    Nxdomain,
    /// The box's own address, where a page says what was blocked and why.
    Blockpage,
}

/// One policy as written in the configuration (`[[filter.policy]]`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub name: String,
    /// Categories to block, by UT1 name or alias.
    #[serde(default)]
    pub block: Vec<String>,
    /// Categories of `block` that may have no list yet (a list the admin will add
    /// later): missing, they are reported, not an error. Any other category that no
    /// list provides is a mistake `check-config` and the daemon's start refuse, since
    /// a misspelled name would silently block nothing.
    #[serde(default)]
    pub optional: Vec<String>,
    /// Names (and their subdomains) always allowed: wins over `deny` and categories.
    #[serde(default)]
    pub allow: Vec<DomainName>,
    /// Names (and their subdomains) always blocked.
    #[serde(default)]
    pub deny: Vec<DomainName>,
    /// Google, Bing, DuckDuckGo, Ecosia, Pixabay and Yandex answered by their safe
    /// endpoints.
    #[serde(default = "yes")]
    pub safe_search: bool,
    /// YouTube's restricted mode: "off", "moderate" or "strict".
    #[serde(default)]
    pub youtube: YoutubeMode,
    /// NXDOMAIN for the DoH canary and iCloud Private Relay, so devices keep using the
    /// box's DNS.
    #[serde(default = "yes")]
    pub no_bypass: bool,
    /// Overrides `[dns] block_mode` for this policy.
    #[serde(default)]
    pub block_mode: Option<BlockMode>,
    /// Addresses and subnets (CIDR) whose clients get this policy.
    #[serde(default)]
    pub clients: Vec<Cidr>,
    /// Tablets, by MAC address, that get this policy whatever address they are given
    /// (the cart's DHCP leases say which address is whose); before `clients`.
    #[serde(default)]
    pub macs: Vec<MacAddr>,
    /// The policy of every client no other policy claims (exactly one).
    #[serde(default)]
    pub default: bool,
    /// Times when this policy's clients get another policy instead.
    #[serde(default)]
    pub schedule: Vec<ScheduleRule>,
}

fn yes() -> bool {
    true
}

/// "During these days and hours, use that policy."
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRule {
    /// Days, as names or ranges: `["mon-fri"]`, `["sat", "sun"]`.
    pub days: Vec<Days>,
    /// Start, `HH:MM` (default 00:00).
    #[serde(default)]
    pub from: Option<ClockTime>,
    /// End, `HH:MM`, excluded (default 24:00). Before `from`: the window crosses midnight.
    #[serde(default)]
    pub to: Option<ClockTime>,
    /// The policy that applies in the window.
    pub policy: String,
}

impl ScheduleRule {
    fn covers(&self, now: LocalTime) -> bool {
        clock::covers(&self.days, self.from, self.to, now)
    }
}

/// A domain name as written in a policy (normalized, checked).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct DomainName(String);

impl TryFrom<String> for DomainName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        normalize(&s)
            .map(DomainName)
            .ok_or_else(|| format!("`{s}` is not a domain name"))
    }
}

impl From<DomainName> for String {
    fn from(d: DomainName) -> String {
        d.0
    }
}

impl DomainName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An address or a subnet: `192.168.10.0/24`, `10.0.0.7`, `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            // An IPv4 client seen through an IPv6 socket.
            (IpAddr::V4(_), IpAddr::V6(ip)) => ip
                .to_ipv4_mapped()
                .is_some_and(|v4| self.contains(IpAddr::V4(v4))),
            _ => false,
        }
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not an address or subnet (like 192.168.10.0/24)");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().map_err(|_| bad())?,
            None => max,
        };
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr { addr, prefix })
    }
}

impl TryFrom<String> for Cidr {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> String {
        c.to_string()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A MAC address, `aa:bb:cc:dd:ee:ff` (or with `-`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct MacAddr(pub [u8; 6]);

impl TryFrom<String> for MacAddr {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let parts: Vec<&str> = s.split([':', '-']).collect();
        let mut mac = [0u8; 6];
        let ok = parts.len() == 6
            && parts
                .iter()
                .zip(mac.iter_mut())
                .all(|(p, b)| p.len() == 2 && u8::from_str_radix(p, 16).map(|v| *b = v).is_ok());
        if ok {
            Ok(MacAddr(mac))
        } else {
            Err(format!(
                "`{s}` is not a MAC address (like 02:00:00:aa:bb:cc)"
            ))
        }
    }
}

impl From<MacAddr> for String {
    fn from(m: MacAddr) -> String {
        m.to_string()
    }
}

impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// A policy ready for lookups: category names resolved against one index.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub blocked: CategorySet,
    pub allow: SuffixSet,
    pub deny: SuffixSet,
    pub safe_search: bool,
    pub youtube: YoutubeMode,
    pub no_bypass: bool,
    pub block_mode: BlockMode,
    /// How many categories its configuration names (found in the lists or not).
    pub named: usize,
    /// (rule, index of the policy it switches to).
    schedule: Vec<(ScheduleRule, usize)>,
}

/// Names whose presence covers their subdomains; small, so a hash set per suffix.
#[derive(Debug, Clone, Default)]
pub struct SuffixSet(std::collections::HashSet<String>);

impl SuffixSet {
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        SuffixSet(names.into_iter().map(str::to_string).collect())
    }

    /// The entry covering `name`, longest first.
    pub fn covering<'a>(&self, name: &'a str) -> Option<&'a str> {
        if self.0.is_empty() {
            return None;
        }
        super::name::suffixes(name).find(|s| self.0.contains(*s))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Every policy and the client map, compiled against one index.
#[derive(Debug, Clone)]
pub struct Policies {
    policies: Vec<Policy>,
    by_ip: HashMap<IpAddr, usize>,
    /// Tablets by MAC (empty unless a policy names some).
    by_mac: HashMap<MacAddr, usize>,
    /// Longest prefix first.
    subnets: Vec<(Cidr, usize)>,
    default: usize,
    /// Category names that no list provides, per policy: reported, not fatal.
    pub unknown_categories: Vec<(String, String)>,
}

/// Why a set of policies cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("no policy is defined")]
    Empty,
    #[error("two policies are called `{0}`")]
    Duplicate(String),
    #[error("{0} policies say `default = true`; exactly one may")]
    Defaults(usize),
    #[error("policy `{policy}`: schedule names unknown policy `{target}`")]
    UnknownTarget { policy: String, target: String },
    #[error("client {client} is claimed by both `{a}` and `{b}`")]
    Claimed {
        client: String,
        a: String,
        b: String,
    },
}

impl Policies {
    /// Resolves `configs` against `index`. With no `default = true`, the first policy
    /// is the default.
    pub fn compile(
        configs: &[PolicyConfig],
        index: &Index,
        block_mode: BlockMode,
    ) -> Result<Policies, PolicyError> {
        if configs.is_empty() {
            return Err(PolicyError::Empty);
        }
        let mut names = HashMap::new();
        for (i, c) in configs.iter().enumerate() {
            if names.insert(c.name.as_str(), i).is_some() {
                return Err(PolicyError::Duplicate(c.name.clone()));
            }
        }
        let defaults: Vec<usize> = (0..configs.len()).filter(|&i| configs[i].default).collect();
        let default = match defaults.len() {
            0 => 0,
            1 => defaults[0],
            n => return Err(PolicyError::Defaults(n)),
        };
        let mut unknown = Vec::new();
        let mut policies = Vec::with_capacity(configs.len());
        for c in configs {
            let mut blocked: CategorySet = 0;
            for cat in &c.block {
                match index.category(cat) {
                    Some(k) => blocked |= 1u128 << k.id,
                    None => unknown.push((c.name.clone(), cat.clone())),
                }
            }
            let mut schedule = Vec::new();
            for rule in &c.schedule {
                let target =
                    *names
                        .get(rule.policy.as_str())
                        .ok_or_else(|| PolicyError::UnknownTarget {
                            policy: c.name.clone(),
                            target: rule.policy.clone(),
                        })?;
                schedule.push((rule.clone(), target));
            }
            policies.push(Policy {
                name: c.name.clone(),
                blocked,
                allow: SuffixSet::new(c.allow.iter().map(DomainName::as_str)),
                deny: SuffixSet::new(c.deny.iter().map(DomainName::as_str)),
                safe_search: c.safe_search,
                youtube: c.youtube,
                no_bypass: c.no_bypass,
                block_mode: c.block_mode.unwrap_or(block_mode),
                named: c.block.len(),
                schedule,
            });
        }
        let mut by_ip: HashMap<IpAddr, usize> = HashMap::new();
        let mut subnets: Vec<(Cidr, usize)> = Vec::new();
        for (i, c) in configs.iter().enumerate() {
            for cidr in &c.clients {
                let full = if cidr.addr.is_ipv4() { 32 } else { 128 };
                let clash = if cidr.prefix == full {
                    by_ip.insert(cidr.addr, i)
                } else {
                    let clash = subnets.iter().find(|(s, _)| s == cidr).map(|&(_, j)| j);
                    subnets.push((*cidr, i));
                    clash
                };
                if let Some(j) = clash.filter(|&j| j != i) {
                    return Err(PolicyError::Claimed {
                        client: cidr.to_string(),
                        a: configs[j].name.clone(),
                        b: c.name.clone(),
                    });
                }
            }
        }
        subnets.sort_by_key(|(c, _)| std::cmp::Reverse(c.prefix));
        let mut by_mac: HashMap<MacAddr, usize> = HashMap::new();
        for (i, c) in configs.iter().enumerate() {
            for mac in &c.macs {
                if let Some(j) = by_mac.insert(*mac, i).filter(|&j| j != i) {
                    return Err(PolicyError::Claimed {
                        client: mac.to_string(),
                        a: configs[j].name.clone(),
                        b: c.name.clone(),
                    });
                }
            }
        }
        Ok(Policies {
            policies,
            by_ip,
            by_mac,
            subnets,
            default,
            unknown_categories: unknown,
        })
    }

    /// Does any policy name tablets by MAC? (Only then is a client's MAC looked up.)
    pub fn by_mac(&self) -> bool {
        !self.by_mac.is_empty()
    }

    /// The policy index a client gets at `now`, before any device rule: by its MAC
    /// when its lease is known, else by address.
    pub fn for_client(&self, client: IpAddr, mac: Option<&MacAddr>, now: LocalTime) -> usize {
        let client = match client {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
            v4 => v4,
        };
        let base = mac
            .and_then(|m| self.by_mac.get(m))
            .or_else(|| self.by_ip.get(&client))
            .copied()
            .or_else(|| {
                self.subnets
                    .iter()
                    .find(|(c, _)| c.contains(client))
                    .map(|&(_, i)| i)
            })
            .unwrap_or(self.default);
        self.scheduled(base, now)
    }

    /// `base`, or the policy its schedule switches to at `now` (one step, no chains).
    pub fn scheduled(&self, base: usize, now: LocalTime) -> usize {
        self.policies[base]
            .schedule
            .iter()
            .find(|(rule, _)| rule.covers(now))
            .map_or(base, |&(_, target)| target)
    }

    pub fn get(&self, i: usize) -> &Policy {
        &self.policies[i]
    }

    pub fn by_name(&self, name: &str) -> Option<usize> {
        self.policies.iter().position(|p| p.name == name)
    }

    pub fn all(&self) -> &[Policy] {
        &self.policies
    }
}

/// A category a policy blocks that no list provides and that is not marked optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCategory {
    pub policy: String,
    pub category: String,
    /// Names the lists do provide that look like it (a typo's likely fix).
    pub close: Vec<String>,
}

impl fmt::Display for UnknownCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "policy `{}` blocks `{}`, which no list provides",
            self.policy, self.category
        )?;
        match self.close.as_slice() {
            [] => {}
            [one] => write!(f, " (did you mean `{one}`?)")?,
            many => write!(f, " (did you mean one of `{}`?)", many.join("`, `"))?,
        }
        write!(
            f,
            "; if its list comes later, add it to the policy's `optional`"
        )
    }
}

/// The categories `configs` block that are not in `known` (every name and alias the
/// lists provide) and not marked optional, with the known names closest to each.
pub fn unknown_categories(configs: &[PolicyConfig], known: &[String]) -> Vec<UnknownCategory> {
    let mut out = Vec::new();
    for c in configs {
        for cat in &c.block {
            if known.contains(cat) || c.optional.contains(cat) {
                continue;
            }
            let mut close: Vec<(usize, &String)> = known
                .iter()
                .map(|k| (edit_distance(cat, k), k))
                .filter(|&(d, k)| d <= 2 || (cat.len() >= 4 && k.contains(cat.as_str())))
                .collect();
            close.sort();
            close.dedup_by(|a, b| a.1 == b.1);
            out.push(UnknownCategory {
                policy: c.name.clone(),
                category: cat.clone(),
                close: close.into_iter().take(3).map(|(_, k)| k.clone()).collect(),
            });
        }
    }
    out
}

/// Levenshtein distance, for suggestions (names are short).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The policies a box has before its admin writes any: primary pupils (the default,
/// the most protective), secondary pupils, and teachers.
pub fn builtin() -> Vec<PolicyConfig> {
    let base = |name: &str, block: &[&str], youtube, default| PolicyConfig {
        name: name.into(),
        block: block.iter().map(|s| s.to_string()).collect(),
        optional: vec![],
        allow: vec![],
        deny: vec![],
        safe_search: true,
        youtube,
        no_bypass: true,
        block_mode: None,
        clients: vec![],
        macs: vec![],
        default,
        schedule: vec![],
    };
    const ALWAYS: &[&str] = &[
        "adult",
        "malware",
        "phishing",
        "cryptojacking",
        "stalkerware",
        "ddos",
        "doh",
    ];
    const PUPILS: &[&str] = &[
        "agressif",
        "dangerous_material",
        "dating",
        "dialer",
        "drogue",
        "gambling",
        "arjel",
        "hacking",
        "lingerie",
        "mixed_adult",
        "redirector",
        "remote-control",
        "residential-proxies",
        "sect",
        "tricheur",
        "vpn",
        "warez",
    ];
    let ecole: Vec<&str> = ALWAYS
        .iter()
        .chain(PUPILS)
        .chain(&["chat", "social_networks", "celebrity", "shortener"])
        .copied()
        .collect();
    let college: Vec<&str> = ALWAYS
        .iter()
        .chain(PUPILS)
        .chain(&["chat"])
        .copied()
        .collect();
    let mut enseignants = base("enseignants", ALWAYS, YoutubeMode::Off, false);
    enseignants.safe_search = false;
    vec![
        base("ecole", &ecole, YoutubeMode::Strict, true),
        base("college", &college, YoutubeMode::Moderate, false),
        enseignants,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T: serde::de::DeserializeOwned>(toml_text: &str) -> T {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn unknown_categories_come_with_their_likely_fix() {
        let known: Vec<String> = ["gambling", "adult", "porn", "social_networks"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let configs: Vec<PolicyConfig> = parse::<PolicyList>(
            "[[p]]\nname = \"a\"\nblock = [\"gamblig\", \"adult\", \"later\", \"social\"]\noptional = [\"later\"]\n",
        )
        .p;
        let unknown = unknown_categories(&configs, &known);
        assert_eq!(unknown.len(), 2, "{unknown:?}");
        assert_eq!(unknown[0].category, "gamblig");
        assert_eq!(unknown[0].close, ["gambling"]);
        assert!(unknown[0].to_string().contains("did you mean `gambling`?"));
        assert_eq!(unknown[1].close, ["social_networks"]);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[derive(serde::Deserialize)]
    struct PolicyList {
        p: Vec<PolicyConfig>,
    }

    #[test]
    fn cidrs() {
        let c: Cidr = "192.168.10.0/24".parse().unwrap();
        assert!(c.contains("192.168.10.77".parse().unwrap()));
        assert!(!c.contains("192.168.11.1".parse().unwrap()));
        assert!(c.contains("::ffff:192.168.10.3".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "x/8", "10.0.0/8", "::/129"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn days_and_times() {
        assert_eq!(Days::try_from("mon-fri".to_string()).unwrap().0, 0b0011111);
        assert_eq!(Days::try_from("sat-mon".to_string()).unwrap().0, 0b1100001);
        assert_eq!(Days::try_from("mercredi".to_string()).unwrap().0, 0b0000100);
        assert!(Days::try_from("someday".to_string()).is_err());
        assert_eq!(ClockTime::try_from("08:30".to_string()).unwrap().0, 510);
        assert!(ClockTime::try_from("25:00".to_string()).is_err());
        assert!(ClockTime::try_from("8h30".to_string()).is_err());
    }

    #[test]
    fn schedules_switch_policies_including_across_midnight() {
        let mut configs = builtin();
        configs[1].schedule = parse::<Wrapper>(
            r#"rules = [
                { days = ["mon-fri"], from = "18:00", to = "07:00", policy = "ecole" },
                { days = ["sat", "sun"], policy = "enseignants" },
            ]"#,
        )
        .rules;
        let p = Policies::compile(&configs, &Index::empty(), BlockMode::Nxdomain).unwrap();
        let college = p.by_name("college").unwrap();
        let at = |d, h, m| p.scheduled(college, LocalTime::new(d, h, m));
        assert_eq!(p.get(at(0, 10, 0)).name, "college", "Monday morning");
        assert_eq!(p.get(at(0, 19, 0)).name, "ecole", "Monday evening");
        assert_eq!(p.get(at(1, 6, 59)).name, "ecole", "Tuesday before 7");
        assert_eq!(
            p.get(at(0, 6, 0)).name,
            "college",
            "Monday 6:00: Sunday is not listed"
        );
        assert_eq!(p.get(at(5, 12, 0)).name, "enseignants", "Saturday");
    }

    #[derive(Deserialize)]
    struct Wrapper {
        rules: Vec<ScheduleRule>,
    }

    #[test]
    fn clients_map_by_ip_then_longest_subnet_then_default() {
        let mut configs = builtin();
        configs[1].clients = vec!["10.0.0.0/8".parse().unwrap()];
        configs[2].clients = vec!["10.1.0.0/16".parse().unwrap(), "10.0.0.9".parse().unwrap()];
        let p = Policies::compile(&configs, &Index::empty(), BlockMode::Nxdomain).unwrap();
        let now = LocalTime::new(0, 10, 0);
        let name = |ip: &str| {
            p.get(p.for_client(ip.parse().unwrap(), None, now))
                .name
                .clone()
        };
        assert_eq!(name("10.2.3.4"), "college");
        assert_eq!(name("10.1.3.4"), "enseignants");
        assert_eq!(name("10.0.0.9"), "enseignants");
        assert_eq!(name("192.168.1.1"), "ecole");
        assert_eq!(name("::ffff:10.2.0.1"), "college");
    }

    #[test]
    fn bad_sets_of_policies_are_refused() {
        let idx = Index::empty();
        assert_eq!(
            Policies::compile(&[], &idx, BlockMode::Null).unwrap_err(),
            PolicyError::Empty
        );
        let mut two = builtin();
        two[1].default = true;
        assert_eq!(
            Policies::compile(&two, &idx, BlockMode::Null).unwrap_err(),
            PolicyError::Defaults(2)
        );
        let mut dup = builtin();
        dup[1].name = "ecole".into();
        assert!(matches!(
            Policies::compile(&dup, &idx, BlockMode::Null),
            Err(PolicyError::Duplicate(_))
        ));
        let mut claimed = builtin();
        claimed[0].clients = vec!["10.0.0.0/8".parse().unwrap()];
        claimed[1].clients = vec!["10.0.0.0/8".parse().unwrap()];
        assert!(matches!(
            Policies::compile(&claimed, &idx, BlockMode::Null),
            Err(PolicyError::Claimed { .. })
        ));
        let mut target = builtin();
        target[0].schedule = vec![ScheduleRule {
            days: vec![Days(1)],
            from: None,
            to: None,
            policy: "nope".into(),
        }];
        assert!(matches!(
            Policies::compile(&target, &idx, BlockMode::Null),
            Err(PolicyError::UnknownTarget { .. })
        ));
    }

    #[test]
    fn unknown_categories_are_reported_not_fatal() {
        let p = Policies::compile(&builtin(), &Index::empty(), BlockMode::Null).unwrap();
        assert!(
            p.unknown_categories
                .iter()
                .any(|(pol, cat)| pol == "ecole" && cat == "adult")
        );
    }
}
