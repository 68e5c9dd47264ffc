//! The QR code a factory-reset Android tablet scans to become a Headwind MDM tablet of
//! this box: Android Enterprise's provisioning JSON (what ManagedProvisioning reads
//! from the QR) with Headwind's extras (what `com.hmdm.launcher.AdminReceiver` reads
//! when provisioning completes). The tablet downloads the agent's APK from the box's
//! cache, checks it against the digest in the QR, installs it as device owner, and
//! the agent enrols with its device number: the enrolment code.
//!
//! Keys, as the two readers spell them:
//! - `android.app.extra.PROVISIONING_DEVICE_ADMIN_COMPONENT_NAME`: the agent's
//!   admin receiver, `com.hmdm.launcher/com.hmdm.launcher.AdminReceiver`;
//! - `..._PACKAGE_DOWNLOAD_LOCATION` and `..._PACKAGE_CHECKSUM` (the APK's SHA-256,
//!   URL-safe base64): the box's `/cache/{sha256}`, which serves only an object whose
//!   content has that digest;
//! - `..._ADMIN_EXTRAS_BUNDLE`: `com.hmdm.BASE_URL` (scheme, host and port, as the
//!   agent's `ServerUrl` splits them), `com.hmdm.SERVER_PROJECT` (the path, `[hub]
//!   headwind_project`), `com.hmdm.DEVICE_ID` (the enrolment code).

use serde_json::{Value, json};

pub use crate::config::ApkDigest;

/// The Headwind agent's device admin receiver.
pub const COMPONENT: &str = "com.hmdm.launcher/com.hmdm.launcher.AdminReceiver";

/// What the QR needs besides the code: the agent's APK and Headwind's project path.
#[derive(Debug, Clone)]
pub struct Provisioning {
    pub apk: ApkDigest,
    pub project: String,
}

impl Provisioning {
    /// The provisioning JSON for the tablet enrolling with `code`, the box being
    /// `base` (`http://host[:port]`, as the admin's browser reached it).
    pub fn qr_json(&self, base: &str, code: &str) -> Value {
        json!({
            "android.app.extra.PROVISIONING_DEVICE_ADMIN_COMPONENT_NAME": COMPONENT,
            "android.app.extra.PROVISIONING_DEVICE_ADMIN_PACKAGE_DOWNLOAD_LOCATION":
                format!("{base}/cache/{}", self.apk.as_str()),
            "android.app.extra.PROVISIONING_DEVICE_ADMIN_PACKAGE_CHECKSUM": checksum(self.apk.as_str()),
            "android.app.extra.PROVISIONING_LEAVE_ALL_SYSTEM_APPS_ENABLED": true,
            "android.app.extra.PROVISIONING_ADMIN_EXTRAS_BUNDLE": {
                "com.hmdm.BASE_URL": base,
                "com.hmdm.SERVER_PROJECT": self.project,
                "com.hmdm.DEVICE_ID": code,
            },
        })
    }
}

/// The digest as Android's provisioning checks it: URL-safe base64 of the 32 bytes.
fn checksum(hex: &str) -> String {
    base64_url(&cartable_protocol::desired::unhex(hex).unwrap_or_default())
}

/// RFC 4648's URL-safe alphabet, with padding.
fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> shift & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_is_url_safe_base64_of_the_digest() {
        // SHA-256 of the empty string.
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            checksum(empty),
            "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        assert_eq!(base64_url(b"f"), "Zg==");
        assert_eq!(base64_url(b"fo"), "Zm8=");
        assert_eq!(base64_url(b"foo"), "Zm9v");
        assert!(ApkDigest::try_from("xyz".to_string()).is_err());
    }
}
