//! Desired state from the central side, in signed envelopes.
//!
//! The central side signs the exact bytes of a [`Desired`] document with a working key
//! of the fleet's [keyring](crate::keyring), and the envelope carries the root's
//! certificate for that key. A box verifies the certificate against the root key it
//! pinned at enrolment, then the document against the working key, before it reads a
//! single field. The signature covers a domain-separation prefix, the scope and the
//! version, so a message cannot be replayed onto another box, nor an older version
//! passed off as new; the document's `issued_at` must fall in the working key's
//! validity, and its version cannot leap past its signing time (a version of 2^64-1
//! would otherwise freeze every later document).

use ring::signature::Ed25519KeyPair;
use serde::{Deserialize, Serialize};

use crate::keyring::{self, Certificate, KeyringError, WorkingKey};
pub use crate::release::Release;
use crate::topics::{DesiredKind, Scope};

/// Signed bytes start with this, so a fleet signature is good for nothing else.
const DOMAIN: &[u8] = b"cartable/v1 desired\0";
/// Largest envelope a box accepts (a catalogue of thousands of apps fits).
pub const MAX_ENVELOPE: usize = 4 << 20;
/// How far a version may run ahead of its signing time, in milliseconds: versions are
/// milliseconds since 1970 by default, and a console's clock may be a little ahead.
pub const VERSION_SLACK_MS: u64 = 3_600_000;

/// The highest version a document signed at `issued_at` may carry.
pub fn max_version(issued_at: i64) -> u64 {
    (issued_at.max(0) as u64)
        .saturating_mul(1000)
        .saturating_add(VERSION_SLACK_MS)
}

/// What travels on a desired-state topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// The JSON text of a [`Desired`] document, exactly as signed.
    pub payload: String,
    /// Ed25519 signature of `DOMAIN || payload` by the certified working key, hex.
    pub signature: String,
    /// The root's certificate for the working key that signed.
    pub certificate: Certificate,
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
    /// Public resolvers' addresses a cart's firewall refuses to tablets (DNS over
    /// HTTPS by address), on top of its built-in set: the fleet keeps the list current
    /// as resolvers come and go.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolver_addresses: Vec<String>,
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
    /// Tablets by MAC address (a cart's DHCP leases say where each one is).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub macs: Vec<String>,
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

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("the envelope is larger than {MAX_ENVELOPE} bytes")]
    TooLarge,
    #[error("the envelope is not valid JSON: {0}")]
    Malformed(String),
    #[error("the signature is not hex of 64 bytes")]
    BadSignatureEncoding,
    #[error("the signature does not verify with the certified working key")]
    BadSignature,
    #[error("{0}")]
    Keyring(#[from] KeyringError),
    #[error(
        "signed at {issued_at}, outside the working key's validity ({not_before} to {not_after})"
    )]
    OutsideValidity {
        issued_at: i64,
        not_before: i64,
        not_after: i64,
    },
    #[error("version {version} leaps past its signing time (at most {max})")]
    VersionLeap { version: u64, max: u64 },
    #[error("the signed document is malformed: {0}")]
    BadDocument(String),
}

/// A document whose whole chain verified, with the working key that signed it.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub desired: Desired,
    pub signer: WorkingKey,
}

/// Signs `desired` with a working key, attaching the root's certificate for it.
pub fn seal(key: &Ed25519KeyPair, certificate: &Certificate, desired: &Desired) -> Envelope {
    let payload = serde_json::to_string(desired).expect("desired state serializes");
    let signature = key.sign(&signed_bytes(&payload));
    Envelope {
        payload,
        signature: hex(signature.as_ref()),
        certificate: certificate.clone(),
    }
}

/// Checks the certificate with the pinned `root` key (32 bytes), the signature with
/// the working key, the signing time against the key's validity and the version
/// against the signing time; then returns the document.
pub fn open(bytes: &[u8], root: &[u8]) -> Result<Verified, EnvelopeError> {
    if bytes.len() > MAX_ENVELOPE {
        return Err(EnvelopeError::TooLarge);
    }
    let env: Envelope =
        serde_json::from_slice(bytes).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
    let signer = keyring::check_certificate(&env.certificate, root)?;
    if unhex(&env.signature).is_none_or(|s| s.len() != 64) {
        return Err(EnvelopeError::BadSignatureEncoding);
    }
    let working = keyring::public_key(&signer.key).unwrap_or_default();
    keyring::verify(&working, DOMAIN, &env.payload, &env.signature)
        .map_err(|()| EnvelopeError::BadSignature)?;
    let desired: Desired = serde_json::from_str(&env.payload)
        .map_err(|e| EnvelopeError::BadDocument(e.to_string()))?;
    if desired.issued_at < signer.not_before || desired.issued_at > signer.not_after {
        return Err(EnvelopeError::OutsideValidity {
            issued_at: desired.issued_at,
            not_before: signer.not_before,
            not_after: signer.not_after,
        });
    }
    let max = max_version(desired.issued_at);
    if desired.version > max {
        return Err(EnvelopeError::VersionLeap {
            version: desired.version,
            max,
        });
    }
    Ok(Verified { desired, signer })
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
    use crate::keyring::tests::{key, working};
    use crate::keyring::{Certificate, certify};
    use ring::signature::KeyPair;

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
                resolver_addresses: Vec::new(),
            }),
        }
    }

    struct Fleet {
        root: Ed25519KeyPair,
        working: Ed25519KeyPair,
        cert: Certificate,
    }

    fn fleet() -> Fleet {
        let (root, working_key) = (key(), key());
        let cert = certify(&root, &working(&working_key));
        Fleet {
            root,
            working: working_key,
            cert,
        }
    }

    fn sealed(f: &Fleet, d: &Desired) -> Vec<u8> {
        serde_json::to_vec(&seal(&f.working, &f.cert, d)).unwrap()
    }

    #[test]
    fn a_sealed_document_opens_with_the_root_key() {
        let f = fleet();
        let v = open(&sealed(&f, &doc()), f.root.public_key().as_ref()).unwrap();
        assert_eq!(v.desired, doc());
        assert_eq!(v.signer, working(&f.working));
    }

    #[test]
    fn forged_tampered_or_malformed_envelopes_are_refused() {
        let f = fleet();
        let root = f.root.public_key().as_ref().to_vec();
        // Signed by an uncertified key, with a genuine certificate for another.
        let forged = serde_json::to_vec(&seal(&key(), &f.cert, &doc())).unwrap();
        assert_eq!(open(&forged, &root), Err(EnvelopeError::BadSignature));
        // A certificate the root did not sign.
        let self_certified = key();
        let cert = certify(&self_certified, &working(&self_certified));
        let forged = serde_json::to_vec(&seal(&self_certified, &cert, &doc())).unwrap();
        assert_eq!(
            open(&forged, &root),
            Err(EnvelopeError::Keyring(KeyringError::BadCertificate))
        );

        let mut env = seal(&f.working, &f.cert, &doc());
        env.payload = env.payload.replace("\"version\":7", "\"version\":8");
        let tampered = serde_json::to_vec(&env).unwrap();
        assert_eq!(open(&tampered, &root), Err(EnvelopeError::BadSignature));

        assert!(matches!(
            open(b"{not json", &root),
            Err(EnvelopeError::Malformed(_))
        ));
        let mut bad_sig = seal(&f.working, &f.cert, &doc());
        bad_sig.signature = "zz".into();
        assert_eq!(
            open(&serde_json::to_vec(&bad_sig).unwrap(), &root),
            Err(EnvelopeError::BadSignatureEncoding)
        );
        // Correctly signed garbage is still refused, after the signature check.
        let garbage = Envelope {
            payload: "[1,2]".into(),
            signature: hex(f.working.sign(&signed_bytes("[1,2]")).as_ref()),
            certificate: f.cert.clone(),
        };
        assert!(matches!(
            open(&serde_json::to_vec(&garbage).unwrap(), &root),
            Err(EnvelopeError::BadDocument(_))
        ));
        assert_eq!(
            open(&vec![b' '; MAX_ENVELOPE + 1], &root),
            Err(EnvelopeError::TooLarge)
        );
    }

    #[test]
    fn a_version_cannot_leap_past_its_signing_time_nor_a_key_sign_outside_its_validity() {
        let f = fleet();
        let root = f.root.public_key().as_ref().to_vec();
        let mut frozen = doc();
        frozen.version = u64::MAX;
        assert!(matches!(
            open(&sealed(&f, &frozen), &root),
            Err(EnvelopeError::VersionLeap { .. })
        ));
        let mut in_time = doc();
        in_time.version = max_version(in_time.issued_at);
        assert!(open(&sealed(&f, &in_time), &root).is_ok());

        for issued_at in [1_699_999_999, 1_800_000_001] {
            let mut late = doc();
            late.issued_at = issued_at;
            assert!(matches!(
                open(&sealed(&f, &late), &root),
                Err(EnvelopeError::OutsideValidity { .. })
            ));
        }
    }
}
