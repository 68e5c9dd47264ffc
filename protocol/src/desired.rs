//! Desired state from the central side, in signed envelopes.
//!
//! The central side signs the exact bytes of a [`Desired`] document with the fleet's
//! Ed25519 key; a box verifies them against the key pinned at enrolment before it reads
//! a single field. The signature covers a domain-separation prefix, the scope and the
//! version, so a message cannot be replayed onto another box, nor an older version
//! passed off as new.

use ring::signature::{ED25519, Ed25519KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use crate::topics::{DesiredKind, Scope};

/// Signed bytes start with this, so a fleet signature is good for nothing else.
const DOMAIN: &[u8] = b"cartable/v1 desired\0";
/// Largest envelope a box accepts (a catalogue of thousands of apps fits).
pub const MAX_ENVELOPE: usize = 4 << 20;

/// What travels on a desired-state topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// The JSON text of a [`Desired`] document, exactly as signed.
    pub payload: String,
    /// Ed25519 signature of `DOMAIN || payload`, hex.
    pub signature: String,
}

/// One piece of desired state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Desired {
    /// Strictly increasing per kind (the central side uses milliseconds since 1970).
    pub version: u64,
    pub scope: Scope,
    /// Unix seconds when it was signed.
    pub issued_at: i64,
    pub body: Body,
}

impl Desired {
    pub fn kind(&self) -> DesiredKind {
        match self.body {
            Body::Policies(_) => DesiredKind::Policies,
            Body::Catalogue(_) => DesiredKind::Catalogue,
            Body::Release(_) => DesiredKind::Release,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "content", rename_all = "snake_case")]
pub enum Body {
    Policies(PolicySet),
    Catalogue(Catalogue),
    Release(Release),
}

/// Filter policies for the box: when present, they replace the `[[filter.policy]]`
/// tables of its config file (the central side wins for desired state).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySet {
    pub policies: Vec<Policy>,
}

/// One policy, with the keys and meanings of a `[[filter.policy]]` table.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub block: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safe_search: Option<bool>,
    /// "off", "moderate" or "strict".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub youtube: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_bypass: Option<bool>,
    /// "null", "nxdomain" or "blockpage".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clients: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub default: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedule: Vec<ScheduleRule>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRule {
    pub days: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    pub policy: String,
}

/// What the box must hold in its app and update cache.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    pub items: Vec<CatalogueItem>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogueItem {
    pub id: String,
    pub version: String,
    pub urls: Vec<String>,
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
    #[serde(default)]
    pub pinned: bool,
    /// Classes or devices it is for; empty means everyone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audience: Vec<String>,
    /// Lower goes first.
    #[serde(default)]
    pub priority: i32,
}

/// A firmware release for the A/B updater.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    pub version: String,
    pub urls: Vec<String>,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("the envelope is larger than {MAX_ENVELOPE} bytes")]
    TooLarge,
    #[error("the envelope is not valid JSON: {0}")]
    Malformed(String),
    #[error("the signature is not hex of 64 bytes")]
    BadSignatureEncoding,
    #[error("the signature does not verify with the pinned fleet key")]
    BadSignature,
    #[error("the signed document is malformed: {0}")]
    BadDocument(String),
}

/// Signs `desired` with the fleet key.
pub fn seal(key: &Ed25519KeyPair, desired: &Desired) -> Envelope {
    let payload = serde_json::to_string(desired).expect("desired state serializes");
    let signature = key.sign(&signed_bytes(&payload));
    Envelope {
        payload,
        signature: hex(signature.as_ref()),
    }
}

/// Checks the signature with `public_key` (32 bytes), then parses the document.
pub fn open(bytes: &[u8], public_key: &[u8]) -> Result<Desired, EnvelopeError> {
    if bytes.len() > MAX_ENVELOPE {
        return Err(EnvelopeError::TooLarge);
    }
    let env: Envelope =
        serde_json::from_slice(bytes).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
    let sig = unhex(&env.signature)
        .filter(|s| s.len() == 64)
        .ok_or(EnvelopeError::BadSignatureEncoding)?;
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(&signed_bytes(&env.payload), &sig)
        .map_err(|_| EnvelopeError::BadSignature)?;
    serde_json::from_str(&env.payload).map_err(|e| EnvelopeError::BadDocument(e.to_string()))
}

fn signed_bytes(payload: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(DOMAIN.len() + payload.len());
    v.extend_from_slice(DOMAIN);
    v.extend_from_slice(payload.as_bytes());
    v
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::KeyPair;

    fn key() -> Ed25519KeyPair {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
    }

    fn doc() -> Desired {
        Desired {
            version: 7,
            scope: Scope::Fleet,
            issued_at: 1_700_000_000,
            body: Body::Policies(PolicySet {
                policies: vec![Policy {
                    name: "ecole".into(),
                    block: vec!["adult".into()],
                    default: true,
                    ..Policy::default()
                }],
            }),
        }
    }

    #[test]
    fn a_sealed_document_opens_with_the_public_key() {
        let k = key();
        let env = seal(&k, &doc());
        let bytes = serde_json::to_vec(&env).unwrap();
        assert_eq!(open(&bytes, k.public_key().as_ref()).unwrap(), doc());
    }

    #[test]
    fn forged_tampered_or_malformed_envelopes_are_refused() {
        let (k, other) = (key(), key());
        let pubkey = k.public_key().as_ref().to_vec();
        let forged = serde_json::to_vec(&seal(&other, &doc())).unwrap();
        assert_eq!(open(&forged, &pubkey), Err(EnvelopeError::BadSignature));

        let mut env = seal(&k, &doc());
        env.payload = env.payload.replace("\"version\":7", "\"version\":8");
        let tampered = serde_json::to_vec(&env).unwrap();
        assert_eq!(open(&tampered, &pubkey), Err(EnvelopeError::BadSignature));

        assert!(matches!(
            open(b"{not json", &pubkey),
            Err(EnvelopeError::Malformed(_))
        ));
        let bad_sig = br#"{"payload":"{}","signature":"zz"}"#;
        assert_eq!(
            open(bad_sig, &pubkey),
            Err(EnvelopeError::BadSignatureEncoding)
        );
        // Correctly signed garbage is still refused, after the signature check.
        let garbage = Envelope {
            payload: "[1,2]".into(),
            signature: hex(k.sign(&signed_bytes("[1,2]")).as_ref()),
        };
        assert!(matches!(
            open(&serde_json::to_vec(&garbage).unwrap(), &pubkey),
            Err(EnvelopeError::BadDocument(_))
        ));
        assert_eq!(
            open(&vec![b' '; MAX_ENVELOPE + 1], &pubkey),
            Err(EnvelopeError::TooLarge)
        );
    }
}
