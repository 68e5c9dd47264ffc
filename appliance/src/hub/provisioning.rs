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
//!   headwind_project`), `com.hmdm.DEVICE_ID` (the enrolment code);
//! - in a cart, `..._WIFI_SSID`, `..._WIFI_SECURITY_TYPE` and `..._WIFI_PASSWORD`: the
//!   cart's access point, the only network a reset tablet there can reach. As
//!   ManagedProvisioning uses them: the SSID goes as it is into
//!   `WifiConfiguration.SSID`, which takes a UTF-8 name between double quotes, and is
//!   then compared with `WifiInfo.getSSID()`, quoted the same way
//!   (`AddWifiNetworkTask.isConnectedToSpecifiedWifi`), so it is sent quoted; the
//!   security type is `WPA` (`WifiConfigurationProvider` knows `WPA`, `WEP`, `EAP`,
//!   `NONE`; `WPA` is a pre-shared key, which a WPA3-only access point refuses: there
//!   the QR carries no network, and the tablet joins it by hand in the setup wizard).

use serde_json::{Value, json};

pub use crate::config::ApkDigest;
use crate::config::{ApSecurity, NetConfig, NetMode};

/// The Headwind agent's device admin receiver.
pub const COMPONENT: &str = "com.hmdm.launcher/com.hmdm.launcher.AdminReceiver";

/// What the QR needs besides the code: the agent's APK, Headwind's project path, and
/// in a cart the access point to join.
#[derive(Debug, Clone)]
pub struct Provisioning {
    pub apk: ApkDigest,
    pub project: String,
    pub wifi: Option<Wifi>,
}

/// A WPA2 (or WPA2/WPA3 transition) network with a pre-shared key.
#[derive(Clone)]
pub struct Wifi {
    pub ssid: String,
    pub passphrase: String,
}

impl Wifi {
    /// The cart's access point, when the box runs one a provisioning can join: cart
    /// mode, the access point on with its passphrase, and not WPA3 only.
    pub fn of_cart(net: &NetConfig) -> Option<Wifi> {
        let ap = &net.ap;
        if net.mode != NetMode::Cart || !ap.enabled || ap.security == ApSecurity::Wpa3 {
            return None;
        }
        Some(Wifi {
            ssid: ap.ssid.0.clone(),
            passphrase: ap.passphrase.as_ref()?.0.clone(),
        })
    }
}

impl std::fmt::Debug for Wifi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wifi")
            .field("ssid", &self.ssid)
            .finish_non_exhaustive()
    }
}

impl Provisioning {
    /// The provisioning JSON for the tablet enrolling with `code`, the box being
    /// `base` (`http://host[:port]`, as the admin's browser reached it).
    pub fn qr_json(&self, base: &str, code: &str) -> Value {
        let mut qr = json!({
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
        });
        if let (Some(wifi), Some(map)) = (&self.wifi, qr.as_object_mut()) {
            let extra = |k: &str| format!("android.app.extra.PROVISIONING_WIFI_{k}");
            map.insert(extra("SSID"), json!(format!("\"{}\"", wifi.ssid)));
            map.insert(extra("SECURITY_TYPE"), json!("WPA"));
            map.insert(extra("PASSWORD"), json!(wifi.passphrase));
        }
        qr
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

    #[test]
    fn a_cart_s_qr_carries_its_access_point_quoted_as_android_compares_it() {
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let mut p = Provisioning {
            apk: ApkDigest::try_from(empty.to_string()).unwrap(),
            project: String::new(),
            wifi: None,
        };
        let key = |k: &str| format!("android.app.extra.PROVISIONING_WIFI_{k}");
        assert!(
            p.qr_json("http://10.42.0.1", "c")
                .get(key("SSID"))
                .is_none()
        );
        p.wifi = Some(Wifi {
            ssid: "Classe mobile \"CM2\"".into(),
            passphrase: "cartable-cm2".into(),
        });
        let qr = p.qr_json("http://10.42.0.1", "c");
        assert_eq!(qr[key("SSID")], "\"Classe mobile \"CM2\"\"");
        assert_eq!(qr[key("SECURITY_TYPE")], "WPA");
        assert_eq!(qr[key("PASSWORD")], "cartable-cm2");
        assert!(!format!("{:?}", p.wifi).contains("cartable-cm2"));
    }

    #[test]
    fn only_a_cart_s_wpa2_access_point_goes_in_the_qr() {
        let mut net: NetConfig = toml::from_str(
            "mode = \"cart\"\n[ap]\nenabled = true\nssid = \"CM2\"\npassphrase = \"cartable-cm2\"\n",
        )
        .unwrap();
        assert_eq!(Wifi::of_cart(&net).unwrap().ssid, "CM2");
        net.ap.security = ApSecurity::Wpa2;
        assert!(Wifi::of_cart(&net).is_some());
        net.ap.security = ApSecurity::Wpa3;
        assert!(Wifi::of_cart(&net).is_none());
        net.ap.security = ApSecurity::Wpa2Wpa3;
        net.ap.enabled = false;
        assert!(Wifi::of_cart(&net).is_none());
        net.ap.enabled = true;
        net.mode = NetMode::School;
        assert!(Wifi::of_cart(&net).is_none());
    }
}
