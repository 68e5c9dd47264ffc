//! `[hub] headwind_apk_sha256`: the Headwind agent's APK as the cache holds it, which
//! a Headwind tablet's provisioning QR has it download (`hub::provisioning`).

use serde::{Deserialize, Serialize};

/// The agent's APK as the cache holds it: its SHA-256, 64 lower-case hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct ApkDigest(String);

impl ApkDigest {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ApkDigest {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let t = s.trim().to_ascii_lowercase();
        if cartable_protocol::desired::unhex(&t).is_some_and(|b| b.len() == 32) {
            Ok(ApkDigest(t))
        } else {
            Err(format!(
                "`{s}` is not a SHA-256: the 64 hex digits of the agent's APK, as its catalogue item says"
            ))
        }
    }
}

impl From<ApkDigest> for String {
    fn from(d: ApkDigest) -> String {
        d.0
    }
}
