//! Desired state from the central side: verified, then applied idempotently.
//!
//! Nothing is read from a message before its signature chain verifies: the pinned
//! root key certifies the working key, the working key signs the document. A refused
//! message (unsigned, forged, signed by a revoked or expired working key, signed in the
//! future, for another box, older than what is in force, malformed, or not applicable)
//! is logged, counted and recorded as an audit event, and the box keeps the state it
//! had.
//!
//! The root's revocation list comes on its own retained topic. A document in force
//! whose signer is later revoked stays in force until replaced, but no longer holds
//! the version floor: whatever version a leaked key signed, a document from a valid
//! key replaces it.

use std::sync::Arc;

use cartable_protocol::desired::{self, Body, Desired, EnvelopeError};
use cartable_protocol::events::{AppliedDesired, EventBody};
use cartable_protocol::keyring;
use cartable_protocol::topics::{self, DesiredKind, Topic};
use ring::signature::Ed25519KeyPair;
use rusqlite::{Connection, OptionalExtension, params};

use super::Sinks;
use crate::base::clock::unix_now;
use crate::filter::policy::PolicyConfig;
use crate::store::outbox;
use crate::store::{Store, StoreError};

/// What became of one message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Applied {
        kind: DesiredKind,
        version: u64,
    },
    /// The version in force, delivered again (retained messages come at every connect).
    AlreadyInForce,
    /// An empty retained message: the central side cleared the topic.
    Cleared,
    /// A newer revocation list from the root, now in force.
    Revoked {
        keys: usize,
    },
    Refused {
        reason: &'static str,
        detail: String,
    },
}

/// Who this box is and what it trusts.
#[derive(Debug, Clone)]
pub struct Identity {
    pub site: String,
    pub box_id: String,
    /// The fleet's root public key (`[sync] fleet_public_key`).
    pub fleet_key: Option<Vec<u8>>,
    /// The box's own key, which seals what it publishes.
    pub box_key: Arc<Ed25519KeyPair>,
}

/// Before this (2026-01-01), the box's clock is not set (a Pi without a real-time
/// clock starts in 1970) and signing times are not compared with it.
const CLOCK_SET_AFTER: i64 = 1_767_225_600;
/// How far ahead of the box's clock a document may have been signed.
const FUTURE_SLACK_SECS: i64 = 3_600;

/// Handles one message from a desired-state topic.
pub(crate) async fn handle(
    identity: &Identity,
    store: &Store,
    sinks: &Sinks,
    topic: &str,
    payload: &[u8],
) -> Outcome {
    let outcome = if topics::parse(topic) == Some(Topic::Revocations) {
        revocations(identity, store, payload).await
    } else {
        desired_state(identity, store, sinks, topic, payload).await
    };
    if let Outcome::Refused { reason, detail } = &outcome {
        record_refusal(store, topic, reason, detail).await;
    }
    outcome
}

async fn desired_state(
    identity: &Identity,
    store: &Store,
    sinks: &Sinks,
    topic: &str,
    payload: &[u8],
) -> Outcome {
    match check(identity, store, topic, payload).await {
        Ok(Checked::Apply(d, signer, envelope)) => apply(store, sinks, *d, signer, envelope).await,
        Ok(Checked::Done(o)) => o,
        Err(o) => o,
    }
}

/// Logs, counts and records a refused message.
async fn record_refusal(store: &Store, topic: &str, reason: &'static str, detail: &str) {
    tracing::warn!(
        topic,
        reason,
        detail,
        "desired state refused; the box keeps its state"
    );
    let (detail, kind, version) = (detail.to_string(), kind_of(topic), 0);
    let recorded = store
        .write(move |t| {
            outbox::add_counter(t, &format!("refused:{reason}"), 1)?;
            outbox::append(
                t,
                unix_now(),
                &EventBody::Desired {
                    kind: kind.unwrap_or(DesiredKind::Policies),
                    version,
                    applied: false,
                    reason: format!("{reason}: {detail}"),
                },
            )?;
            Ok(())
        })
        .await;
    if let Err(e) = recorded {
        tracing::error!(error = %e, "cannot record a refused desired state");
    }
}

/// Takes in the root's revocation list, if it is newer than the one in force.
async fn revocations(id: &Identity, store: &Store, payload: &[u8]) -> Outcome {
    if payload.is_empty() {
        return Outcome::Cleared;
    }
    let Some(root) = id.fleet_key.as_deref() else {
        return refuse("no_fleet_key", "[sync] fleet_public_key is not set");
    };
    let list = match keyring::open_revocations(payload, root) {
        Ok(l) => l,
        Err(e @ keyring::KeyringError::BadRevocations) => {
            return refuse("bad_signature", e.to_string());
        }
        Err(e) => return refuse("malformed", e.to_string()),
    };
    let keys = list.keys.len();
    let stored = store
        .write(move |t| {
            let current = outbox::counter(t, "revocations_issued_at")?;
            if list.issued_at <= current {
                return Ok(false);
            }
            t.execute("DELETE FROM revoked_keys", [])?;
            for k in &list.keys {
                t.execute(
                    "INSERT OR IGNORE INTO revoked_keys(key) VALUES (?1)",
                    [k.to_ascii_lowercase()],
                )?;
            }
            outbox::set_counter(t, "revocations_issued_at", list.issued_at)?;
            outbox::append(
                t,
                unix_now(),
                &EventBody::Audit {
                    actor: "fleet root".into(),
                    action: "revocations".into(),
                    detail: format!("{} working keys revoked", list.keys.len()),
                },
            )?;
            Ok(true)
        })
        .await;
    match stored {
        Ok(true) => {
            tracing::warn!(keys, "revocation list in force");
            Outcome::Revoked { keys }
        }
        Ok(false) => Outcome::AlreadyInForce,
        Err(e) => refuse("store", e.to_string()),
    }
}

fn revoked(c: &Connection, key: &str) -> Result<bool, StoreError> {
    Ok(
        c.prepare_cached("SELECT 1 FROM revoked_keys WHERE key = ?1")?
            .query_row([key.to_ascii_lowercase()], |_| Ok(()))
            .optional()?
            .is_some(),
    )
}

fn kind_of(topic: &str) -> Option<DesiredKind> {
    match topics::parse(topic) {
        Some(Topic::Desired { kind, .. }) => Some(kind),
        _ => None,
    }
}

enum Checked {
    /// The document (boxed: a release manifest makes it large), the working key that
    /// signed it, and the envelope as received.
    Apply(Box<Desired>, String, String),
    Done(Outcome),
}

fn refuse(reason: &'static str, detail: impl Into<String>) -> Outcome {
    Outcome::Refused {
        reason,
        detail: detail.into(),
    }
}

async fn check(
    id: &Identity,
    store: &Store,
    topic: &str,
    payload: &[u8],
) -> Result<Checked, Outcome> {
    let Some(Topic::Desired { scope, kind }) = topics::parse(topic) else {
        return Err(refuse(
            "topic",
            format!("`{topic}` is not a desired-state topic"),
        ));
    };
    if payload.is_empty() {
        return Ok(Checked::Done(Outcome::Cleared));
    }
    let key = id
        .fleet_key
        .as_deref()
        .ok_or_else(|| refuse("no_fleet_key", "[sync] fleet_public_key is not set"))?;
    let verified = desired::open(payload, key).map_err(|e| match e {
        EnvelopeError::BadSignature
        | EnvelopeError::BadSignatureEncoding
        | EnvelopeError::Keyring(keyring::KeyringError::BadCertificate) => {
            refuse("bad_signature", e.to_string())
        }
        EnvelopeError::OutsideValidity { .. } => refuse("expired_key", e.to_string()),
        EnvelopeError::VersionLeap { .. } => refuse("version_leap", e.to_string()),
        other => refuse("malformed", other.to_string()),
    })?;
    let (d, signer) = (verified.desired, verified.signer.key);
    let now = unix_now();
    if now > CLOCK_SET_AFTER && d.issued_at > now + FUTURE_SLACK_SECS {
        return Err(refuse(
            "future",
            format!(
                "signed at {}, ahead of the box's clock ({now})",
                d.issued_at
            ),
        ));
    }
    if d.scope != scope || !d.scope.includes(&id.site, &id.box_id) {
        return Err(refuse(
            "wrong_scope",
            format!("signed for {}, came on {topic}", d.scope.label()),
        ));
    }
    if d.kind() != kind {
        return Err(refuse(
            "wrong_kind",
            format!(
                "a {} document on the {} topic",
                d.kind().as_str(),
                kind.as_str()
            ),
        ));
    }
    let by = signer.clone();
    let (current, signer_revoked) = store
        .read(move |c| {
            let current = c
                .prepare_cached("SELECT version, signer FROM desired WHERE kind = ?1")?
                .query_row([kind.as_str()], |r| {
                    Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?))
                })
                .optional()?;
            // The floor a document in force sets, unless its own signer was revoked.
            let floor = match current {
                Some((v, s)) if !revoked(c, &s)? => Some(v),
                _ => None,
            };
            Ok((floor, revoked(c, &by)?))
        })
        .await
        .map_err(|e| refuse("store", e.to_string()))?;
    if signer_revoked {
        return Err(refuse(
            "revoked_key",
            format!("signed by {signer}, which the root revoked"),
        ));
    }
    match current {
        Some(v) if d.version < v => Err(refuse(
            "older_version",
            format!("version {} is older than {v} in force", d.version),
        )),
        Some(v) if d.version == v => Ok(Checked::Done(Outcome::AlreadyInForce)),
        _ => Ok(Checked::Apply(
            Box::new(d),
            signer,
            String::from_utf8_lossy(payload).into_owned(),
        )),
    }
}

async fn apply(
    store: &Store,
    sinks: &Sinks,
    d: Desired,
    signer: String,
    envelope: String,
) -> Outcome {
    let kind = d.kind();
    // Check that it can be put in force before storing it.
    let prepared = match (&d.body, sinks.policies.as_ref()) {
        (Body::Policies(set), Some(sink)) => {
            match policy_configs(set).and_then(|c| sink.as_ref()(c)) {
                Ok(put_in_force) => Some(put_in_force),
                Err(e) => return refuse("invalid", e),
            }
        }
        (Body::Policies(set), None) => {
            if let Err(e) = policy_configs(set) {
                return refuse("invalid", e);
            }
            None
        }
        (Body::Catalogue(c), _) => {
            if let Some(check) = &sinks.check_catalogue
                && let Err(e) = check(c)
            {
                return refuse("invalid", e);
            }
            None
        }
        // The updater reads its release from the store; a manifest it could not
        // follow is refused here, with its fault, before it replaces anything.
        (Body::Release(r), _) => {
            if let Err(e) = r.check() {
                return refuse("invalid", e.to_string());
            }
            None
        }
    };
    let (version, scope) = (d.version, d.scope.label());
    let stored = store
        .write(move |t| {
            t.prepare_cached(
                "INSERT INTO desired(kind, version, scope, envelope, applied_at, signer)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(kind) DO UPDATE SET version = excluded.version,
                   scope = excluded.scope, envelope = excluded.envelope,
                   applied_at = excluded.applied_at, signer = excluded.signer",
            )?
            .execute(params![
                kind.as_str(),
                version as i64,
                scope,
                envelope,
                unix_now(),
                signer
            ])?;
            outbox::append(
                t,
                unix_now(),
                &EventBody::Desired {
                    kind,
                    version,
                    applied: true,
                    reason: String::new(),
                },
            )?;
            Ok(())
        })
        .await;
    if let Err(e) = stored {
        return refuse("store", e.to_string());
    }
    if let Some(put_in_force) = prepared {
        put_in_force();
    }
    tracing::info!(kind = kind.as_str(), version, "desired state applied");
    Outcome::Applied { kind, version }
}

/// The protocol's policies as the filter's, checked the way the config file's are.
pub(crate) fn policy_configs(set: &desired::PolicySet) -> Result<Vec<PolicyConfig>, String> {
    resolver_addresses(set)?;
    set.policies
        .iter()
        .map(|p| {
            serde_json::to_value(p)
                .and_then(serde_json::from_value::<PolicyConfig>)
                .map_err(|e| format!("policy `{}`: {e}", p.name))
        })
        .collect()
}

/// The set's resolver addresses, each an IP address (else the set is refused whole).
pub(crate) fn resolver_addresses(
    set: &desired::PolicySet,
) -> Result<Vec<std::net::IpAddr>, String> {
    set.resolver_addresses
        .iter()
        .map(|a| {
            a.parse()
                .map_err(|_| format!("resolver_addresses: `{a}` is not an IP address"))
        })
        .collect()
}

/// The resolver addresses of the central side's policies in force (verified again),
/// for the cart's firewall.
pub(crate) fn stored_resolvers(store: &Store, fleet_key: Option<&[u8]>) -> Vec<std::net::IpAddr> {
    stored_policy_set(store, fleet_key)
        .and_then(|set| resolver_addresses(&set).ok())
        .unwrap_or_default()
}

/// The desired state in force for `kind`, if any.
pub(crate) fn in_force(
    c: &Connection,
    kind: DesiredKind,
) -> Result<Option<AppliedDesired>, StoreError> {
    Ok(
        c.prepare_cached("SELECT version, scope, applied_at FROM desired WHERE kind = ?1")?
            .query_row([kind.as_str()], |r| {
                Ok(AppliedDesired {
                    version: r.get::<_, i64>(0)? as u64,
                    scope: r.get(1)?,
                    applied_at: r.get(2)?,
                })
            })
            .optional()?,
    )
}

/// The central side's policies stored at the last apply, for the start of the daemon
/// (verified again: the store is not a trusted channel).
pub(crate) fn stored_policies(
    store: &Store,
    fleet_key: Option<&[u8]>,
) -> Option<Vec<PolicyConfig>> {
    policy_configs(&stored_policy_set(store, fleet_key)?).ok()
}

/// The central side's policy set in force, read from the store and verified again.
fn stored_policy_set(store: &Store, fleet_key: Option<&[u8]>) -> Option<desired::PolicySet> {
    let key = fleet_key?;
    let envelope = store
        .read_blocking(|c| crate::store::desired_envelope(c, DesiredKind::Policies))
        .ok()
        .flatten();
    match desired::open(envelope?.as_bytes(), key).ok()?.desired.body {
        Body::Policies(set) => Some(set),
        _ => None,
    }
}
