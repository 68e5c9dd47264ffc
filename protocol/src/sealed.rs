//! What a box publishes (events, presence, state), signed with the box's own key.
//!
//! The broker is not trusted to say who published what: anyone with a login on it, or
//! the broker itself, could publish on a box's topics. So every message a box sends
//! carries its public key, a stamp and an Ed25519 signature over the topic, the stamp
//! and the body. The central side pins each box's key at first contact (or ahead of
//! time) and stores nothing the pinned key did not sign.
//!
//! ```text
//! [FORMAT 1 byte = 2][public key 32][signature 64][stamp 8, big-endian][body ...]
//! signed: DOMAIN || topic || 0x00 || stamp || body
//! ```
//!
//! The topic in the signed bytes stops a message from being replayed onto another
//! box's topic or another kind of topic. The stamp orders the retained messages
//! (presence, state) so an old one replayed later is recognised as old: it is
//! [`stamp`]`(session, n)`, the session growing at every connection the box makes.

use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

/// First byte of a sealed message (an unsealed batch starts with 1, JSON with `{`).
pub const FORMAT_SEALED: u8 = 2;
const DOMAIN: &[u8] = b"cartable/v1 box\0";
const KEY: usize = 32;
const SIG: usize = 64;
const HEADER: usize = 1 + KEY + SIG + 8;

/// The last `n` of a session: a box's offline presence (its will, or its goodbye)
/// outranks everything else it published in that session.
pub const LAST_IN_SESSION: u64 = (1 << 24) - 1;

/// The stamp of the `n`th retained message of `session` (`n` < 2^24).
pub fn stamp(session: u64, n: u64) -> u64 {
    (session << 24) | n.min(LAST_IN_SESSION)
}

/// A sealed message whose signature verified with the key it carries.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened<'a> {
    pub public_key: [u8; KEY],
    pub stamp: u64,
    pub body: &'a [u8],
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("not signed by a box (format byte {0})")]
    Unsigned(u8),
    #[error("empty message")]
    Empty,
    #[error("shorter than a sealed header")]
    Truncated,
    #[error("the signature does not verify with the key the message carries")]
    BadSignature,
}

/// Signs `body` for `topic` with the box's key.
pub fn seal(key: &Ed25519KeyPair, topic: &str, stamp: u64, body: &[u8]) -> Vec<u8> {
    let signature = key.sign(&signed_bytes(topic, stamp, body));
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.push(FORMAT_SEALED);
    out.extend_from_slice(key.public_key().as_ref());
    out.extend_from_slice(signature.as_ref());
    out.extend_from_slice(&stamp.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Checks the signature against the key carried in the message; the caller then
/// checks that key against the one pinned for the topic's box.
pub fn open<'a>(topic: &str, bytes: &'a [u8]) -> Result<Opened<'a>, SealError> {
    let (&format, _) = bytes.split_first().ok_or(SealError::Empty)?;
    if format != FORMAT_SEALED {
        return Err(SealError::Unsigned(format));
    }
    if bytes.len() < HEADER {
        return Err(SealError::Truncated);
    }
    let mut public_key = [0u8; KEY];
    public_key.copy_from_slice(&bytes[1..1 + KEY]);
    let signature = &bytes[1 + KEY..1 + KEY + SIG];
    let mut stamp = [0u8; 8];
    stamp.copy_from_slice(&bytes[1 + KEY + SIG..HEADER]);
    let stamp = u64::from_be_bytes(stamp);
    let body = &bytes[HEADER..];
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(&signed_bytes(topic, stamp, body), signature)
        .map_err(|_| SealError::BadSignature)?;
    Ok(Opened {
        public_key,
        stamp,
        body,
    })
}

fn signed_bytes(topic: &str, stamp: u64, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(DOMAIN.len() + topic.len() + 9 + body.len());
    v.extend_from_slice(DOMAIN);
    v.extend_from_slice(topic.as_bytes());
    v.push(0);
    v.extend_from_slice(&stamp.to_be_bytes());
    v.extend_from_slice(body);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    fn key() -> Ed25519KeyPair {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
    }

    #[test]
    fn a_sealed_message_opens_only_on_its_topic_and_unchanged() {
        let k = key();
        let topic = "cartable/v1/s/b/presence";
        let sealed = seal(&k, topic, stamp(7, 1), b"{\"online\":true}");
        let opened = open(topic, &sealed).unwrap();
        assert_eq!(opened.public_key, k.public_key().as_ref());
        assert_eq!(
            (opened.stamp, opened.body),
            (stamp(7, 1), &b"{\"online\":true}"[..])
        );

        // Another box's topic, another stamp, another body: refused.
        assert_eq!(
            open("cartable/v1/s/other/presence", &sealed),
            Err(SealError::BadSignature)
        );
        let mut restamped = sealed.clone();
        restamped[HEADER - 1] ^= 1;
        assert_eq!(open(topic, &restamped), Err(SealError::BadSignature));
        let mut changed = sealed.clone();
        *changed.last_mut().unwrap() = b']';
        assert_eq!(open(topic, &changed), Err(SealError::BadSignature));

        assert_eq!(open(topic, b""), Err(SealError::Empty));
        assert_eq!(open(topic, b"{}"), Err(SealError::Unsigned(b'{')));
        assert_eq!(
            open(topic, &sealed[..HEADER - 1]),
            Err(SealError::Truncated)
        );
    }

    #[test]
    fn the_goodbye_outranks_its_session_and_a_new_session_outranks_both() {
        assert!(stamp(5, LAST_IN_SESSION) > stamp(5, 2));
        assert!(stamp(6, 1) > stamp(5, LAST_IN_SESSION));
        assert_eq!(stamp(5, u64::MAX), stamp(5, LAST_IN_SESSION));
    }
}
