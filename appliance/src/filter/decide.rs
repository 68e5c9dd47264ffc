//! (name, client, time) -> verdict, with the reason that decided it.
//!
//! The order, first match wins: a device rule from the hub (internet off, allow-list
//! only); the anti-bypass names; safe search; the policy's allow list; its deny list;
//! its blocked categories; otherwise allowed.

use std::net::IpAddr;
use std::sync::Arc;

use super::index::{CategorySet, Index, ids};
use super::policy::{BlockMode, MacAddr, Policies, SuffixSet};
use super::safesearch::{self, Engine};
use crate::base::clock::LocalTime;

/// Names that, answered NXDOMAIN, keep devices on the box's DNS: Firefox's DoH canary
/// and iCloud Private Relay.
pub const BYPASS_CANARIES: &[&str] = &[
    "use-application-dns.net",
    "mask.icloud.com",
    "mask-h2.icloud.com",
];

/// Hostnames of public resolvers that Android's Private DNS ("strict" mode) and
/// browsers' secure DNS are set to, with their subdomains (NextDNS's per-account
/// names): NXDOMAIN, so a tablet set to one fails visibly ("Private DNS server cannot
/// be accessed") instead of leaving the filter. Their addresses are refused by the
/// cart's firewall; their DoH names are also in UT1's `doh` category.
pub const STRICT_PRIVATE_DNS: &[&str] = &[
    "dns.google",
    "one.one.one.one",
    "1dot1dot1dot1.cloudflare-dns.com",
    "cloudflare-dns.com",
    "security.cloudflare-dns.com",
    "family.cloudflare-dns.com",
    "dns.quad9.net",
    "dns9.quad9.net",
    "dns10.quad9.net",
    "dns11.quad9.net",
    "dns.adguard.com",
    "dns.adguard-dns.com",
    "dns-family.adguard.com",
    "family.adguard-dns.com",
    "unfiltered.adguard-dns.com",
    "dns.nextdns.io",
    "dns.opendns.com",
    "familyshield.opendns.com",
    "doh.opendns.com",
    "dns.mullvad.net",
    "dns.controld.com",
    "dot.sb",
    "doh.sb",
    "dns.cleanbrowsing.org",
];

/// Is `name` a bypass name: a canary (exactly), or a strict-mode resolver's (or
/// under one)? No allocation, no hashing: a few byte comparisons per query.
fn is_bypass_name(name: &str) -> bool {
    BYPASS_CANARIES.contains(&name)
        || STRICT_PRIVATE_DNS.iter().any(|r| {
            name.len() >= r.len()
                && name.ends_with(r)
                && (name.len() == r.len() || name.as_bytes()[name.len() - r.len() - 1] == b'.')
        })
}

/// What the hub has decided for one device, enforced here as well as by its agent.
#[derive(Debug, Clone)]
pub enum DeviceRule {
    /// Every query refused.
    InternetOff,
    /// Only these names (and their subdomains), and the policy's allow list.
    AllowListOnly(Arc<SuffixSet>),
}

/// What to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Block(BlockMode),
    /// The name does not exist, whatever the block mode (anti-bypass canaries).
    NxDomain,
    /// REFUSED: this device has no internet access at all.
    Refuse,
    /// Answer with a CNAME to this safe endpoint.
    Rewrite(&'static str),
}

/// Why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason<'n> {
    NotListed,
    Allowed {
        entry: &'n str,
    },
    Denied {
        entry: &'n str,
    },
    Listed {
        entry: &'n str,
        category: u8,
        categories: CategorySet,
    },
    SafeSearch(Engine),
    Bypass,
    InternetOff,
    NotOnAllowList,
}

/// What is already known of a name in the lists, carried between queries by the DNS
/// cache: a cached name's answer then skips the index, whose probe (one slot of a
/// table of millions) is the answer path's costliest cache miss. Policy-independent:
/// it says the lists hold none of the name's suffixes, whoever asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// Not known: the index is looked up (and the answer noted if it is `Unlisted`).
    Unknown,
    /// No suffix of the name is in the index.
    Unlisted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict<'n> {
    pub action: Action,
    /// Index of the policy applied, in `Filter::policies`.
    pub policy: usize,
    pub reason: Reason<'n>,
}

/// An immutable snapshot of the lists and the policies compiled against them; the DNS
/// server swaps a whole new one in on reload.
#[derive(Debug, Clone)]
pub struct Filter {
    pub index: Arc<Index>,
    pub policies: Policies,
}

impl Filter {
    /// Decides for `name`, which must be normalized (`name::normalize`).
    pub fn decide<'n>(
        &self,
        name: &'n str,
        client: IpAddr,
        now: LocalTime,
        device: Option<&DeviceRule>,
    ) -> Verdict<'n> {
        self.decide_with(name, client, now, device, &mut Listing::Unknown)
    }

    /// [`Filter::decide`], with what is known of the name in this filter's index:
    /// `Unlisted` skips the index; `Unknown` becomes `Unlisted` when the lookup
    /// finds none of the name's suffixes.
    pub fn decide_with<'n>(
        &self,
        name: &'n str,
        client: IpAddr,
        now: LocalTime,
        device: Option<&DeviceRule>,
        listing: &mut Listing,
    ) -> Verdict<'n> {
        self.decide_for(name, client, None, now, device, listing)
    }

    /// [`Filter::decide_with`] for a client whose MAC is known (a cart's DHCP lease):
    /// a policy that names the MAC wins over one that names the address.
    pub fn decide_for<'n>(
        &self,
        name: &'n str,
        client: IpAddr,
        mac: Option<&MacAddr>,
        now: LocalTime,
        device: Option<&DeviceRule>,
        listing: &mut Listing,
    ) -> Verdict<'n> {
        let policy = self.policies.for_client(client, mac, now);
        let p = self.policies.get(policy);
        let verdict = |action: Action, reason: Reason<'n>| Verdict {
            action,
            policy,
            reason,
        };
        match device {
            Some(DeviceRule::InternetOff) => {
                return verdict(Action::Refuse, Reason::InternetOff);
            }
            Some(DeviceRule::AllowListOnly(list)) => {
                return match list.covering(name).or_else(|| p.allow.covering(name)) {
                    Some(entry) => verdict(Action::Allow, Reason::Allowed { entry }),
                    None => verdict(Action::Block(p.block_mode), Reason::NotOnAllowList),
                };
            }
            None => {}
        }
        if p.no_bypass && is_bypass_name(name) {
            return verdict(Action::NxDomain, Reason::Bypass);
        }
        if let Some((engine, target)) = safesearch::rewrite(name, p.safe_search, p.youtube) {
            return verdict(Action::Rewrite(target), Reason::SafeSearch(engine));
        }
        if let Some(entry) = p.allow.covering(name) {
            return verdict(Action::Allow, Reason::Allowed { entry });
        }
        if let Some(entry) = p.deny.covering(name) {
            return verdict(Action::Block(p.block_mode), Reason::Denied { entry });
        }
        if p.blocked != 0 && *listing == Listing::Unknown {
            let mut listed = false;
            for hit in self.index.lookup(name) {
                listed = true;
                let blocked = hit.categories & p.blocked;
                if let Some(category) = ids(blocked).next() {
                    return verdict(
                        Action::Block(p.block_mode),
                        Reason::Listed {
                            entry: hit.entry,
                            category,
                            categories: hit.categories,
                        },
                    );
                }
            }
            if !listed {
                *listing = Listing::Unlisted;
            }
        }
        verdict(Action::Allow, Reason::NotListed)
    }

    /// The policies that block nothing of what they name: every category they name
    /// is missing from the lists or holds no names. Such a policy looks in force and
    /// filters nothing, so the box says it is degraded.
    pub fn coverage_problems(&self) -> Vec<String> {
        let categories = self.index.categories();
        self.policies
            .all()
            .iter()
            .filter(|p| p.named > 0)
            .filter(|p| {
                !categories
                    .iter()
                    .any(|c| p.blocked & (1u128 << c.id) != 0 && c.entries > 0)
            })
            .map(|p| {
                format!(
                    "policy `{}` blocks none of the {} categories it names: no list provides them, or their lists are empty",
                    p.name, p.named
                )
            })
            .collect()
    }

    /// Explains a verdict in words, naming the list file and line when it is from a
    /// list (reads the file: for people, not for the answer path).
    pub fn explain(&self, name: &str, verdict: &Verdict<'_>) -> String {
        let policy = &self.policies.get(verdict.policy).name;
        let action = match verdict.action {
            Action::Allow => "allowed".to_string(),
            Action::Block(mode) => format!("blocked ({})", block_mode_word(mode)),
            Action::NxDomain => "answered NXDOMAIN".to_string(),
            Action::Refuse => "refused".to_string(),
            Action::Rewrite(target) => format!("answered with {target}"),
        };
        let why = match verdict.reason {
            Reason::NotListed => "no list of the policy names it".to_string(),
            Reason::Allowed { entry } => format!("`{entry}` is on the policy's allow list"),
            Reason::Denied { entry } => format!("`{entry}` is on the policy's deny list"),
            Reason::Listed {
                entry,
                category,
                categories,
            } => {
                let c = &self.index.categories()[category as usize];
                let title = c.titles.get("fr").or_else(|| c.titles.get("en"));
                let mut s = format!("`{entry}` is listed in category `{}`", c.name);
                if let Some(t) = title {
                    s.push_str(&format!(" ({t})"));
                }
                if let Some((path, line)) =
                    self.index.find_line(entry, categories & (1 << category))
                {
                    s.push_str(&format!(", {}:{line}", path.display()));
                }
                s
            }
            Reason::SafeSearch(engine) => format!("safe search is on for {engine:?}"),
            Reason::Bypass => "it would let the device bypass the box's filtering".to_string(),
            Reason::InternetOff => "the hub has turned this device's internet off".to_string(),
            Reason::NotOnAllowList => {
                "the device is on allow-list only and the name is not on it".to_string()
            }
        };
        format!("{name}: {action}\n  policy: {policy}\n  reason: {why}\n")
    }
}

fn block_mode_word(mode: BlockMode) -> &'static str {
    match mode {
        BlockMode::Null => "null address",
        BlockMode::Nxdomain => "NXDOMAIN",
        BlockMode::Blockpage => "block page",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::index::{Index, ListSource};
    use crate::filter::policy::{PolicyConfig, builtin};
    use crate::filter::ut1::{Kind, Ut1Category};

    fn filter(configs: &[PolicyConfig]) -> (Filter, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let cat = |name: &str| Ut1Category {
            name: name.into(),
            aliases: if name == "adult" {
                vec!["porn".into()]
            } else {
                vec![]
            },
            kind: Kind::Black,
            titles: [("fr".to_string(), format!("titre {name}"))].into(),
            descriptions: Default::default(),
            domains: None,
        };
        let write = |file: &str, text: &str| {
            let p = dir.path().join(file);
            std::fs::write(&p, text).unwrap();
            p
        };
        let index = Index::build(
            vec![cat("adult"), cat("social_networks"), cat("doh")],
            vec![
                ListSource {
                    category: "adult".into(),
                    path: write("adult", "bad.test\nworse.test\n"),
                },
                ListSource {
                    category: "social_networks".into(),
                    path: write("social", "chat.test\nsocial.test\n"),
                },
                ListSource {
                    category: "doh".into(),
                    path: write("doh", "dns.resolver.test\n"),
                },
            ],
        )
        .unwrap();
        let policies = Policies::compile(configs, &index, BlockMode::Blockpage).unwrap();
        (
            Filter {
                index: Arc::new(index),
                policies,
            },
            dir,
        )
    }

    const PUPIL: &str = "192.168.1.20";
    const TEACHER: &str = "192.168.50.3";

    fn configs() -> Vec<PolicyConfig> {
        let mut c = builtin();
        c[0].allow = vec!["ok.bad.test".to_string().try_into().unwrap()];
        c[0].deny = vec![
            "games.test".to_string().try_into().unwrap(),
            "bad.test".to_string().try_into().unwrap(),
        ];
        c[2].clients = vec!["192.168.50.0/24".parse().unwrap()];
        c[2].block_mode = Some(BlockMode::Nxdomain);
        c
    }

    fn decide<'n>(f: &Filter, name: &'n str, client: &str) -> Verdict<'n> {
        f.decide(
            name,
            client.parse().unwrap(),
            LocalTime::new(1, 10, 0),
            None,
        )
    }

    /// The memo is set only when no suffix is listed (whatever the policy blocks),
    /// and a memo says "skip the index".
    #[test]
    fn a_lookup_that_finds_nothing_is_noted_and_then_skipped() {
        let (f, _d) = filter(&configs());
        let now = LocalTime::new(1, 10, 0);
        let teacher: IpAddr = TEACHER.parse().unwrap();
        let mut listing = Listing::Unknown;
        let v = f.decide_with("www.example.test", teacher, now, None, &mut listing);
        assert_eq!((v.action, listing), (Action::Allow, Listing::Unlisted));
        // Listed in a category teachers do not block: allowed, but not "unlisted".
        let mut listing = Listing::Unknown;
        let v = f.decide_with("www.social.test", teacher, now, None, &mut listing);
        assert_eq!((v.action, listing), (Action::Allow, Listing::Unknown));
        let pupil: IpAddr = PUPIL.parse().unwrap();
        let mut listing = Listing::Unlisted;
        let v = f.decide_with("www.social.test", pupil, now, None, &mut listing);
        assert_eq!(v.action, Action::Allow, "the memo is trusted: no lookup");
    }

    #[test]
    fn categories_block_names_and_subdomains_per_policy() {
        let (f, _d) = filter(&configs());
        let v = decide(&f, "www.social.test", PUPIL);
        assert_eq!(v.action, Action::Block(BlockMode::Blockpage));
        assert!(matches!(
            v.reason,
            Reason::Listed {
                entry: "social.test",
                ..
            }
        ));
        // Teachers may use social networks, but never adult sites.
        assert_eq!(decide(&f, "www.social.test", TEACHER).action, Action::Allow);
        assert_eq!(
            decide(&f, "x.worse.test", TEACHER).action,
            Action::Block(BlockMode::Nxdomain)
        );
        assert_eq!(decide(&f, "fine.test", PUPIL).action, Action::Allow);
        assert_eq!(
            decide(&f, "dns.resolver.test", TEACHER).action,
            Action::Block(BlockMode::Nxdomain),
            "doh is always blocked"
        );
    }

    #[test]
    fn allow_overrides_deny_and_categories() {
        let (f, _d) = filter(&configs());
        let v = decide(&f, "a.ok.bad.test", PUPIL);
        assert_eq!(v.action, Action::Allow);
        assert_eq!(
            v.reason,
            Reason::Allowed {
                entry: "ok.bad.test"
            }
        );
        assert!(matches!(
            decide(&f, "bad.test", PUPIL).reason,
            Reason::Denied { entry: "bad.test" }
        ));
        assert!(matches!(
            decide(&f, "www.games.test", PUPIL).reason,
            Reason::Denied { .. }
        ));
    }

    #[test]
    fn safe_search_and_bypass_canaries() {
        let (f, _d) = filter(&configs());
        assert_eq!(
            decide(&f, "www.google.fr", PUPIL).action,
            Action::Rewrite("forcesafesearch.google.com")
        );
        assert_eq!(decide(&f, "www.google.fr", TEACHER).action, Action::Allow);
        assert_eq!(
            decide(&f, "www.youtube.com", PUPIL).action,
            Action::Rewrite("restrict.youtube.com")
        );
        assert_eq!(
            decide(&f, "use-application-dns.net", TEACHER).action,
            Action::NxDomain
        );
        assert_eq!(
            decide(&f, "mask-h2.icloud.com", PUPIL).reason,
            Reason::Bypass
        );
        // Android's strict Private DNS hostnames, and NextDNS's per-account ones.
        for strict in ["dns.google", "one.one.one.one", "abc123.dns.nextdns.io"] {
            assert_eq!(
                decide(&f, strict, PUPIL).action,
                Action::NxDomain,
                "{strict}"
            );
        }
        for not in ["google", "notdns.google", "www.google.com", "one.one.one"] {
            assert_ne!(decide(&f, not, PUPIL).reason, Reason::Bypass, "{not}");
        }
    }

    #[test]
    fn device_rules_come_first() {
        let (f, _d) = filter(&configs());
        let client = PUPIL.parse().unwrap();
        let now = LocalTime::new(1, 10, 0);
        let off = DeviceRule::InternetOff;
        assert_eq!(
            f.decide("fine.test", client, now, Some(&off)).action,
            Action::Refuse
        );
        let only = DeviceRule::AllowListOnly(Arc::new(SuffixSet::new(["edu.test"])));
        assert_eq!(
            f.decide("www.edu.test", client, now, Some(&only)).action,
            Action::Allow
        );
        assert_eq!(
            f.decide("ok.bad.test", client, now, Some(&only)).action,
            Action::Allow,
            "the policy's allow list still counts"
        );
        let v = f.decide("fine.test", client, now, Some(&only));
        assert_eq!(
            (v.action, v.reason),
            (Action::Block(BlockMode::Blockpage), Reason::NotOnAllowList)
        );
    }

    #[test]
    fn explanations_name_the_category_and_the_list_line() {
        let (f, _d) = filter(&configs());
        let v = decide(&f, "m.worse.test", PUPIL);
        let text = f.explain("m.worse.test", &v);
        assert!(text.contains("policy: ecole"), "{text}");
        assert!(text.contains("category `adult` (titre adult)"), "{text}");
        assert!(text.contains("adult:2"), "{text}");
    }
}
