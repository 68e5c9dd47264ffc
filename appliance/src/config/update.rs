//! The `[update]` section: how the firmware update agent installs, what it checks,
//! when it may reboot; with the value types its keys are checked as.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The firmware update agent: how it installs, what it checks, when it may reboot.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpdateConfig {
    /// The installer: `rauc` on the firmware image, `directory` (two slots modelled in
    /// a folder, for tests and trials), `none` (releases are stored, never installed),
    /// or `auto`: `rauc` when `/etc/rauc/system.conf` exists, else `none`.
    pub backend: UpdateBackend,
    /// The `directory` backend's folder (default: `data_dir/update/slots`).
    pub directory: Option<PathBuf>,
    /// The certificates RAUC checks a bundle's signature against.
    pub keyring: PathBuf,
    /// The board releases must name (default: from RAUC's `compatible`, else the
    /// processor: `x86_64`).
    pub board: Option<String>,
    /// The firmware version running (default: the booted slot's, else `IMAGE_VERSION`
    /// in `/etc/os-release`, else the daemon's own).
    pub version: Option<FirmwareVersion>,
    /// When a release may be installed and the box rebooted, school-local time, when
    /// its manifest names no window: never during class hours.
    pub window: InstallWindow,
    /// Seconds the new firmware has, after its first boot, to pass its health check
    /// before it is marked bad and the box goes back to the old one.
    pub health_timeout_secs: u32,
    /// Other boxes of the site (`http://host:port`), asked for a release's chunks
    /// before the origin: one copy crosses the school's link.
    pub peers: Vec<PeerUrl>,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        UpdateConfig {
            backend: UpdateBackend::Auto,
            directory: None,
            keyring: PathBuf::from("/etc/rauc/keyring.pem"),
            board: None,
            version: None,
            window: InstallWindow("20:00-06:00".into()),
            health_timeout_secs: 300,
            peers: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateBackend {
    Auto,
    Rauc,
    Directory,
    None,
}

/// "HH:MM-HH:MM", possibly across midnight.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstallWindow(pub String);

impl TryFrom<String> for InstallWindow {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match cartable_protocol::release::parse_window(&s) {
            Some(_) => Ok(InstallWindow(s)),
            None => Err(format!(
                "`{s}` is not a window: use HH:MM-HH:MM (22:00-05:00 passes midnight)"
            )),
        }
    }
}

impl From<InstallWindow> for String {
    fn from(w: InstallWindow) -> String {
        w.0
    }
}

/// Dotted numbers, as releases are versioned.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct FirmwareVersion(pub String);

impl TryFrom<String> for FirmwareVersion {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match cartable_protocol::release::Version::parse(&s) {
            Some(_) => Ok(FirmwareVersion(s)),
            None => Err(format!(
                "`{s}` is not a version: use dotted numbers (2026.12.1)"
            )),
        }
    }
}

impl From<FirmwareVersion> for String {
    fn from(v: FirmwareVersion) -> String {
        v.0
    }
}

/// A peer box's base URL: `http://host[:port]`, no path.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct PeerUrl(pub String);

impl TryFrom<String> for PeerUrl {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let rest = s.strip_prefix("http://").unwrap_or("");
        let ok = !rest.is_empty()
            && !rest.contains('/')
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
        if ok {
            Ok(PeerUrl(s))
        } else {
            Err(format!(
                "`{s}` is not a peer: use http://host or http://host:port"
            ))
        }
    }
}

impl From<PeerUrl> for String {
    fn from(p: PeerUrl) -> String {
        p.0
    }
}
