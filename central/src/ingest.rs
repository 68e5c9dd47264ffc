//! One message from the broker, checked and stored: the central side's only way in.
//!
//! The broker is the second wall, not the first: a client it lets publish on a box's
//! topics, or the broker itself, must not be able to write or hide a single event. So
//! every message must be sealed by a box (`cartable_protocol::sealed`) with the key
//! pinned for that box, and this is checked before a byte of the body is parsed:
//!
//! - unsealed, or a signature that does not verify: counted, dropped;
//! - a box never seen: its key is pinned now (trust on first use, as SSH does), unless
//!   the fleet admin pinned one ahead of time with `cartable-central box add`;
//! - sealed with another key than the pinned one: held in quarantine, not stored, so
//!   a forger can neither add events nor take the sequence numbers of genuine ones; if
//!   it was the box itself with a new key (a reinstalled box), `box add --replace`
//!   pins the new key and takes in what was held;
//! - a retained presence or state older than the last one (a replay): dropped.

use cartable_protocol::desired::hex;
use cartable_protocol::events::{Batch, Presence, ReportedState};
use cartable_protocol::sealed::{self, SealError};
use cartable_protocol::topics::{self, Topic};

use crate::store::{Db, Pinned};

/// Stores one message. Messages that will never be stored (malformed, forged, stale)
/// are counted and dropped, so the broker does not deliver them again; only a store
/// failure is an error.
pub async fn handle(db: &Db, topic: &str, payload: &[u8]) -> anyhow::Result<()> {
    let (kind, site, box_id) = match topics::parse(topic) {
        Some(Topic::Events { site, r#box }) => (Kind::Events, site, r#box),
        Some(Topic::Presence { site, r#box }) => (Kind::Presence, site, r#box),
        Some(Topic::State { site, r#box }) => (Kind::State, site, r#box),
        _ => return Ok(()),
    };
    // An empty retained message clears the topic; there is nothing to store.
    if payload.is_empty() {
        return Ok(());
    }
    let Some((stamp, body)) = admit(db, &site, &box_id, topic, payload).await? else {
        return Ok(());
    };
    let malformed = |what: &str, e: &dyn std::fmt::Display| {
        tracing::warn!(topic, error = %e, "dropping a malformed {what}");
    };
    let stamp = i64::try_from(stamp).unwrap_or(i64::MAX);
    let fresh = match kind {
        Kind::Events => match Batch::decode(body) {
            Ok(batch) => {
                let r = db.ingest(&site, &box_id, batch).await?;
                tracing::debug!(
                    site,
                    r#box = box_id,
                    new = r.new,
                    duplicates = r.duplicates,
                    "batch stored"
                );
                if r.out_of_order > 0 {
                    tracing::warn!(
                        site,
                        r#box = box_id,
                        n = r.out_of_order,
                        "events arrived out of order"
                    );
                }
                true
            }
            Err(e) => {
                malformed("batch", &e);
                return db.bump("malformed").await;
            }
        },
        Kind::Presence => match serde_json::from_slice::<Presence>(body) {
            Ok(p) => db.presence(&site, &box_id, p, stamp).await?,
            Err(e) => {
                malformed("presence", &e);
                return db.bump("malformed").await;
            }
        },
        Kind::State => match serde_json::from_slice::<ReportedState>(body) {
            Ok(s) => db.state(&site, &box_id, s, stamp).await?,
            Err(e) => {
                malformed("state", &e);
                return db.bump("malformed").await;
            }
        },
    };
    if !fresh {
        tracing::info!(topic, stamp, "dropping a replayed presence or state");
        db.bump("stale").await?;
    }
    Ok(())
}

/// What a box publishes, by topic.
enum Kind {
    Events,
    Presence,
    State,
}

/// The stamp and body of a message sealed with the key pinned for its box, or `None`
/// when it was dropped or held.
async fn admit<'a>(
    db: &Db,
    site: &str,
    box_id: &str,
    topic: &str,
    payload: &'a [u8],
) -> anyhow::Result<Option<(u64, &'a [u8])>> {
    let opened = match sealed::open(topic, payload) {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(topic, error = %e, "dropping a message no box sealed");
            let counter = match e {
                SealError::BadSignature => "bad_signature",
                _ => "unsigned",
            };
            db.bump(counter).await?;
            return Ok(None);
        }
    };
    let key = hex(&opened.public_key);
    // Pinning without replacing is the check: the pinned key wins if there is one.
    let pinned = match db.pin(site, box_id, &key, "first contact", false).await? {
        Pinned::New => {
            tracing::info!(site, r#box = box_id, key, "box key pinned at first contact");
            None
        }
        Pinned::Same | Pinned::Replaced { .. } => None,
        Pinned::Conflict { old } => Some(old),
    };
    if let Some(pinned) = pinned {
        let kept = db.hold(site, box_id, &key, topic, payload).await?;
        tracing::warn!(
            site,
            r#box = box_id,
            key,
            pinned,
            kept,
            "a message sealed with another key than the box's: held, not stored"
        );
        db.bump(if kept { "held" } else { "held_full" }).await?;
        return Ok(None);
    }
    Ok(Some((opened.stamp, opened.body)))
}

/// What `cartable-central box add` did.
#[derive(Debug)]
pub struct Added {
    pub pinned: Pinned,
    /// Held messages sealed with the new key, now taken in.
    pub released: usize,
}

/// Pins `key` for a box ahead of its first contact, or (with `replace`) instead of the
/// pinned one; then takes in the messages held under that key.
pub async fn add_box(
    db: &Db,
    site: &str,
    box_id: &str,
    key: &str,
    replace: bool,
) -> anyhow::Result<Added> {
    for n in [site, box_id] {
        if !topics::valid_name(n) || n == topics::FLEET {
            anyhow::bail!("`{n}` is not a site or box name (1 to 64 of a-z, 0-9, - and _)");
        }
    }
    let key = key.to_ascii_lowercase();
    if cartable_protocol::keyring::public_key(&key).is_none() {
        anyhow::bail!("the key must be 64 hex digits (`cartable box-key` prints it on the box)");
    }
    let pinned = db.pin(site, box_id, &key, "admin", replace).await?;
    if let Pinned::Conflict { old } = &pinned {
        anyhow::bail!(
            "{site}/{box_id} is pinned to another key ({old}); pass --replace if the box was \
             reinstalled and this is its new key"
        );
    }
    let mut released = 0;
    for m in db.held(site, box_id, &key).await? {
        handle(db, &m.topic, &m.payload).await?;
        db.release(m.id).await?;
        released += 1;
    }
    Ok(Added { pinned, released })
}
