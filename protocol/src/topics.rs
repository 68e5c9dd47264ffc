//! The MQTT topic tree, in one place so the box, the central side and tests agree.
//!
//! ```text
//! cartable/v1/{site}/{box}/presence          retained; {"online": bool, "version"}; also the last will
//! cartable/v1/{site}/{box}/state             retained; the box's reported state (box wins)
//! cartable/v1/{site}/{box}/events            QoS 1 batches of outbox events (compressed)
//! cartable/v1/fleet/desired/{kind}           retained signed envelope for every box
//! cartable/v1/{site}/desired/{kind}          retained signed envelope for one site
//! cartable/v1/{site}/{box}/desired/{kind}    retained signed envelope for one box
//! cartable/v1/fleet/revocations              retained root-signed revocation list
//! ```
//!
//! Everything a box publishes is sealed with its own key (`sealed`); everything the
//! central side publishes is signed through the fleet's keyring (`desired`, `keyring`).
//!
//! `{kind}` is `policies`, `catalogue` or `release`. Site and box names are 1 to 64 of
//! `a-z 0-9 - _` (no MQTT wildcard or separator can appear); `fleet` is reserved.

use serde::{Deserialize, Serialize};

pub const ROOT: &str = "cartable/v1";
/// The site name that means "every box".
pub const FLEET: &str = "fleet";

/// What desired state a message carries; one retained topic per kind and scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DesiredKind {
    Policies,
    Catalogue,
    Release,
}

impl DesiredKind {
    pub const ALL: [DesiredKind; 3] = [
        DesiredKind::Policies,
        DesiredKind::Catalogue,
        DesiredKind::Release,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DesiredKind::Policies => "policies",
            DesiredKind::Catalogue => "catalogue",
            DesiredKind::Release => "release",
        }
    }

    pub fn parse(s: &str) -> Option<DesiredKind> {
        DesiredKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Which boxes a piece of desired state is for. Signed inside the envelope, so a
/// message signed for one box cannot be replayed onto another box's topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "scope", rename_all = "snake_case")]
pub enum Scope {
    Fleet,
    Site { site: String },
    Box { site: String, r#box: String },
}

impl Scope {
    /// True when a box `site`/`box_id` must act on this scope.
    pub fn includes(&self, site: &str, box_id: &str) -> bool {
        match self {
            Scope::Fleet => true,
            Scope::Site { site: s } => s == site,
            Scope::Box { site: s, r#box: b } => s == site && b == box_id,
        }
    }

    pub fn label(&self) -> String {
        match self {
            Scope::Fleet => FLEET.to_string(),
            Scope::Site { site } => site.clone(),
            Scope::Box { site, r#box } => format!("{site}/{box}"),
        }
    }
}

pub fn presence(site: &str, box_id: &str) -> String {
    format!("{ROOT}/{site}/{box_id}/presence")
}

pub fn state(site: &str, box_id: &str) -> String {
    format!("{ROOT}/{site}/{box_id}/state")
}

pub fn events(site: &str, box_id: &str) -> String {
    format!("{ROOT}/{site}/{box_id}/events")
}

pub fn desired(scope: &Scope, kind: DesiredKind) -> String {
    let kind = kind.as_str();
    match scope {
        Scope::Fleet => format!("{ROOT}/{FLEET}/desired/{kind}"),
        Scope::Site { site } => format!("{ROOT}/{site}/desired/{kind}"),
        Scope::Box { site, r#box } => format!("{ROOT}/{site}/{box}/desired/{kind}"),
    }
}

/// The root-signed list of revoked working keys.
pub fn revocations() -> String {
    format!("{ROOT}/{FLEET}/revocations")
}

/// The filters a box subscribes to for its desired state and the keyring.
pub fn desired_filters(site: &str, box_id: &str) -> [String; 4] {
    [
        revocations(),
        format!("{ROOT}/{FLEET}/desired/+"),
        format!("{ROOT}/{site}/desired/+"),
        format!("{ROOT}/{site}/{box_id}/desired/+"),
    ]
}

/// The filters the central side subscribes to: the boxes' retained presence and
/// state (every central instance keeps them all), then their events.
pub fn central_filters() -> [String; 3] {
    [
        format!("{ROOT}/+/+/presence"),
        format!("{ROOT}/+/+/state"),
        format!("{ROOT}/+/+/events"),
    ]
}

/// The events' filter as a shared subscription of `group` (MQTT 5's `$share`, which
/// Mosquitto and EMQX also give MQTT 3.1.1 clients): the broker hands each message to
/// one instance of the group only.
pub fn shared_events_filter(group: &str) -> String {
    format!("$share/{group}/{ROOT}/+/+/events")
}

/// True for a shared subscription's group name (no level separator or wildcard).
pub fn valid_share_group(s: &str) -> bool {
    valid_name(s)
}

/// A topic, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topic {
    Presence { site: String, r#box: String },
    State { site: String, r#box: String },
    Events { site: String, r#box: String },
    Desired { scope: Scope, kind: DesiredKind },
    Revocations,
}

/// True for a site or box name that is safe in a topic.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
}

pub fn parse(topic: &str) -> Option<Topic> {
    let rest = topic.strip_prefix(ROOT)?.strip_prefix('/')?;
    let parts: Vec<&str> = rest.split('/').collect();
    let name = |s: &str| valid_name(s).then(|| s.to_string());
    match parts.as_slice() {
        [FLEET, "revocations"] => Some(Topic::Revocations),
        [FLEET, "desired", kind] => Some(Topic::Desired {
            scope: Scope::Fleet,
            kind: DesiredKind::parse(kind)?,
        }),
        [site, "desired", kind] if *site != FLEET => Some(Topic::Desired {
            scope: Scope::Site { site: name(site)? },
            kind: DesiredKind::parse(kind)?,
        }),
        [site, b, "desired", kind] if *site != FLEET => Some(Topic::Desired {
            scope: Scope::Box {
                site: name(site)?,
                r#box: name(b)?,
            },
            kind: DesiredKind::parse(kind)?,
        }),
        [site, b, leaf] if *site != FLEET => {
            let (site, r#box) = (name(site)?, name(b)?);
            match *leaf {
                "presence" => Some(Topic::Presence { site, r#box }),
                "state" => Some(Topic::State { site, r#box }),
                "events" => Some(Topic::Events { site, r#box }),
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_parses_back_to_what_built_it() {
        assert_eq!(
            parse(&events("epinal", "b1")),
            Some(Topic::Events {
                site: "epinal".into(),
                r#box: "b1".into()
            })
        );
        assert_eq!(parse(&revocations()), Some(Topic::Revocations));
        assert_eq!(
            parse(&presence("s", "b")),
            Some(Topic::Presence {
                site: "s".into(),
                r#box: "b".into()
            })
        );
        for scope in [
            Scope::Fleet,
            Scope::Site { site: "s".into() },
            Scope::Box {
                site: "s".into(),
                r#box: "b".into(),
            },
        ] {
            for kind in DesiredKind::ALL {
                assert_eq!(
                    parse(&desired(&scope, kind)),
                    Some(Topic::Desired {
                        scope: scope.clone(),
                        kind
                    })
                );
            }
        }
    }

    #[test]
    fn foreign_or_malformed_topics_do_not_parse() {
        for t in [
            "cartable/v2/s/b/events",
            "cartable/v1/s/b/other",
            "cartable/v1/S/b/events",
            "cartable/v1/fleet/b/events",
            "cartable/v1/s/desired/firmware",
            "cartable/v1",
            "",
        ] {
            assert_eq!(parse(t), None, "{t}");
        }
    }

    #[test]
    fn scopes_include_the_right_boxes() {
        let b = Scope::Box {
            site: "s".into(),
            r#box: "b".into(),
        };
        assert!(b.includes("s", "b"));
        assert!(!b.includes("s", "c"));
        assert!(Scope::Site { site: "s".into() }.includes("s", "c"));
        assert!(!Scope::Site { site: "s".into() }.includes("t", "c"));
        assert!(Scope::Fleet.includes("t", "c"));
    }
}
