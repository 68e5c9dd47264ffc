//! The fleet's keyring: an offline root key, working keys it certifies for a time, and
//! revocations it signs.
//!
//! Boxes pin only the root's public key. The root private key stays on an offline
//! machine; it signs a [`Certificate`] for each working key (the one the console signs
//! desired state and releases with), valid from `not_before` to `not_after`, and, if a
//! working key leaks, a [`RevocationList`] naming it. A leaked working key therefore
//! signs for a bounded time at most, and the root can end that time early without
//! touching a single box.
//!
//! Every signature covers a domain-separation prefix of its own, so a certificate can
//! never pass for a revocation list or a desired-state document, nor the reverse.

use ring::signature::{ED25519, Ed25519KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use crate::desired::{hex, unhex};

const CERT_DOMAIN: &[u8] = b"cartable/v1 working key\0";
const REVOKE_DOMAIN: &[u8] = b"cartable/v1 revocations\0";
/// Largest revocation message a box accepts.
pub const MAX_REVOCATIONS: usize = 256 << 10;

/// A working key and the time the root lets it sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkingKey {
    /// The Ed25519 public key, hex.
    pub key: String,
    /// A name for people ("console 2026").
    #[serde(default)]
    pub name: String,
    /// Unix seconds: documents signed (`issued_at`) outside these are refused.
    pub not_before: i64,
    pub not_after: i64,
}

/// A [`WorkingKey`] signed by the root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    /// The JSON text of the [`WorkingKey`], exactly as signed.
    pub payload: String,
    /// The root's Ed25519 signature of `CERT_DOMAIN || payload`, hex.
    pub signature: String,
}

/// Working keys the root no longer vouches for. Each list replaces the previous one
/// (it names every key still revoked), and a box keeps the newest by `issued_at`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationList {
    pub issued_at: i64,
    /// Public keys, hex.
    pub keys: Vec<String>,
}

/// A [`RevocationList`] signed by the root: what travels on the revocations topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedRevocations {
    pub payload: String,
    pub signature: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyringError {
    #[error("the working key's certificate is not signed by the pinned root key")]
    BadCertificate,
    #[error("the certificate is malformed: {0}")]
    MalformedCertificate(String),
    #[error("the revocation list is not signed by the pinned root key")]
    BadRevocations,
    #[error("the revocation list is malformed: {0}")]
    MalformedRevocations(String),
}

/// The bytes of an Ed25519 public key written as 64 hex digits (either case).
pub fn public_key(hex: &str) -> Option<Vec<u8>> {
    unhex(&hex.to_ascii_lowercase()).filter(|k| k.len() == 32)
}

/// The root signs `key` (run on the offline machine).
pub fn certify(root: &Ed25519KeyPair, key: &WorkingKey) -> Certificate {
    let payload = serde_json::to_string(key).expect("a working key serializes");
    Certificate {
        signature: hex(root.sign(&domain(CERT_DOMAIN, &payload)).as_ref()),
        payload,
    }
}

/// The working key `cert` vouches for, if the root signed it.
pub fn check_certificate(cert: &Certificate, root: &[u8]) -> Result<WorkingKey, KeyringError> {
    verify(root, CERT_DOMAIN, &cert.payload, &cert.signature)
        .map_err(|()| KeyringError::BadCertificate)?;
    let key: WorkingKey = serde_json::from_str(&cert.payload)
        .map_err(|e| KeyringError::MalformedCertificate(e.to_string()))?;
    if public_key(&key.key).is_none() {
        return Err(KeyringError::MalformedCertificate(
            "the key is not 32 bytes of hex".into(),
        ));
    }
    Ok(key)
}

/// The root signs a revocation list.
pub fn revoke(root: &Ed25519KeyPair, list: &RevocationList) -> SignedRevocations {
    let payload = serde_json::to_string(list).expect("a revocation list serializes");
    SignedRevocations {
        signature: hex(root.sign(&domain(REVOKE_DOMAIN, &payload)).as_ref()),
        payload,
    }
}

/// Reads a revocation message, checking the root's signature before any field.
pub fn open_revocations(bytes: &[u8], root: &[u8]) -> Result<RevocationList, KeyringError> {
    if bytes.len() > MAX_REVOCATIONS {
        return Err(KeyringError::MalformedRevocations("too large".into()));
    }
    let signed: SignedRevocations = serde_json::from_slice(bytes)
        .map_err(|e| KeyringError::MalformedRevocations(e.to_string()))?;
    verify(root, REVOKE_DOMAIN, &signed.payload, &signed.signature)
        .map_err(|()| KeyringError::BadRevocations)?;
    serde_json::from_str(&signed.payload)
        .map_err(|e| KeyringError::MalformedRevocations(e.to_string()))
}

fn domain(prefix: &[u8], payload: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(prefix.len() + payload.len());
    v.extend_from_slice(prefix);
    v.extend_from_slice(payload.as_bytes());
    v
}

/// Checks a hex Ed25519 signature of `prefix || payload` by `key`.
pub(crate) fn verify(key: &[u8], prefix: &[u8], payload: &str, signature: &str) -> Result<(), ()> {
    let sig = unhex(signature).filter(|s| s.len() == 64).ok_or(())?;
    UnparsedPublicKey::new(&ED25519, key)
        .verify(&domain(prefix, payload), &sig)
        .map_err(|_| ())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::KeyPair;

    pub(crate) fn key() -> Ed25519KeyPair {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
    }

    pub(crate) fn working(k: &Ed25519KeyPair) -> WorkingKey {
        WorkingKey {
            key: hex(k.public_key().as_ref()),
            name: "console".into(),
            not_before: 1_700_000_000,
            not_after: 1_800_000_000,
        }
    }

    #[test]
    fn only_the_root_certifies_and_revokes() {
        let (root, other, w) = (key(), key(), key());
        let root_pub = root.public_key().as_ref();
        let cert = certify(&root, &working(&w));
        assert_eq!(check_certificate(&cert, root_pub), Ok(working(&w)));
        assert_eq!(
            check_certificate(&certify(&other, &working(&w)), root_pub),
            Err(KeyringError::BadCertificate)
        );
        // A longer validity written into a genuine certificate breaks its signature.
        let mut stretched = cert.clone();
        stretched.payload = stretched.payload.replace("1800000000", "1900000000");
        assert_eq!(
            check_certificate(&stretched, root_pub),
            Err(KeyringError::BadCertificate)
        );

        let list = RevocationList {
            issued_at: 1_750_000_000,
            keys: vec![hex(w.public_key().as_ref())],
        };
        let bytes = serde_json::to_vec(&revoke(&root, &list)).unwrap();
        assert_eq!(open_revocations(&bytes, root_pub), Ok(list.clone()));
        let forged = serde_json::to_vec(&revoke(&other, &list)).unwrap();
        assert_eq!(
            open_revocations(&forged, root_pub),
            Err(KeyringError::BadRevocations)
        );
        // A certificate's signature is no revocation's, and the reverse.
        let as_revocation = serde_json::to_vec(&SignedRevocations {
            payload: cert.payload.clone(),
            signature: cert.signature.clone(),
        })
        .unwrap();
        assert_eq!(
            open_revocations(&as_revocation, root_pub),
            Err(KeyringError::BadRevocations)
        );
        assert!(matches!(
            open_revocations(b"[]", root_pub),
            Err(KeyringError::MalformedRevocations(_))
        ));
    }
}
