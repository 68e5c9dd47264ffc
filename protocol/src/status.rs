//! The box's state as `GET /api/v1/status` reports it (and, later, the retained MQTT
//! state message): one shape for the daemon, `cartable status` and the fleet console.

use serde::{Deserialize, Serialize};

/// A snapshot of the whole box.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// Version of the `cartable` binary.
    pub version: String,
    pub box_id: String,
    pub site: String,
    pub uptime_secs: u64,
    /// Every supervised service, in start order.
    pub services: Vec<ServiceStatus>,
    pub uplink: UplinkStatus,
    pub disk: DiskStatus,
    /// The link to the central side and what waits to go up it.
    #[serde(default)]
    pub sync: SyncStatus,
    /// The app and update cache: what it holds and what it is fetching.
    #[serde(default)]
    pub cache: CacheStatus,
    /// The firmware: what runs, and the release being taken, if any.
    #[serde(default)]
    pub update: UpdateStatus,
}

/// The firmware update agent's state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UpdateStatus {
    /// The firmware version running.
    pub running: String,
    /// The slot booted ("A", "B"), when the installer knows slots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// The installer: "rauc", "directory", or "none" (releases are only stored).
    pub backend: String,
    pub state: UpdateState,
    /// The release the state is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default)]
    pub progress: UpdateProgress,
    /// Why the release is refused, failing, waiting or rolled back.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// How far a release's bundle is rebuilt.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UpdateProgress {
    pub chunks_done: u32,
    pub chunks: u32,
    /// Bytes in place, of the bundle's.
    pub bytes_done: u64,
    pub bytes: u64,
    /// Of the bytes in place, those copied from the bundle installed before (the rest
    /// crossed the link or came from a peer).
    pub bytes_local: u64,
}

/// Where a release is on a box. `Committed`, `RolledBack` and `Refused` are final
/// for that version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateState {
    /// Nothing to take.
    #[default]
    Idle,
    Downloading,
    /// The bundle is whole, its SHA-256 and RAUC signature checked.
    Verified,
    WaitingForWindow,
    Installing,
    Rebooting,
    /// Booted into the new slot, checking its health.
    Checking,
    Committed,
    RolledBack,
    Refused,
    /// The fleet aborted the rollout before this box installed it.
    Aborted,
}

impl UpdateState {
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateState::Idle => "idle",
            UpdateState::Downloading => "downloading",
            UpdateState::Verified => "verified",
            UpdateState::WaitingForWindow => "waiting_for_window",
            UpdateState::Installing => "installing",
            UpdateState::Rebooting => "rebooting",
            UpdateState::Checking => "checking",
            UpdateState::Committed => "committed",
            UpdateState::RolledBack => "rolled_back",
            UpdateState::Refused => "refused",
            UpdateState::Aborted => "aborted",
        }
    }

    pub fn parse(s: &str) -> Option<UpdateState> {
        [
            UpdateState::Idle,
            UpdateState::Downloading,
            UpdateState::Verified,
            UpdateState::WaitingForWindow,
            UpdateState::Installing,
            UpdateState::Rebooting,
            UpdateState::Checking,
            UpdateState::Committed,
            UpdateState::RolledBack,
            UpdateState::Refused,
            UpdateState::Aborted,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// The app and update cache's state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CacheStatus {
    /// Items of the catalogue in force, and how many the box holds.
    pub items: u32,
    pub present: u32,
    pub bytes_used: u64,
    pub quota_bytes: u64,
    /// Downloads in progress.
    pub downloading: Vec<CacheDownload>,
    /// Items whose last download failed (they are retried with backoff).
    pub failing: u32,
    pub last_error: Option<String>,
    /// False outside the prefetcher's time windows.
    pub in_window: bool,
}

/// One download in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheDownload {
    pub item: String,
    pub version: String,
    pub bytes: u64,
    pub size: u64,
}

/// The sync link and its backlog.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SyncStatus {
    pub link: LinkState,
    /// `mqtt(s)://host:port`, when the box has a broker.
    pub broker: Option<String>,
    /// The box's public signing key (hex): what the central side pins for this box.
    #[serde(default)]
    pub box_key: Option<String>,
    pub backlog: crate::events::Backlog,
    /// Why the last connection attempt or session ended.
    pub last_error: Option<String>,
}

/// Where the MQTT link is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// No broker configured: events stay in the outbox.
    #[default]
    Standalone,
    Connecting,
    Connected,
    /// The uplink is down: no attempt until it comes back.
    Paused,
    /// Waiting before the next attempt.
    Backoff,
}

impl StatusReport {
    /// True when every service is running: what `/healthz` answers 200 for.
    pub fn healthy(&self) -> bool {
        self.services
            .iter()
            .all(|s| s.state == ServiceState::Running)
    }
}

/// One supervised service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    pub state: ServiceState,
    /// Times the supervisor restarted it since the daemon started.
    pub restarts: u32,
    /// Why it last failed, if it ever did.
    pub last_error: Option<String>,
    /// Running, but not doing all it is asked to: each problem, as the admin fixes it
    /// (a policy whose categories no list provides, a list file gone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// Where a service is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    /// Started, not yet serving (listeners not bound, first load not done).
    Starting,
    Running,
    /// Stopped with an error; the supervisor restarts it after a backoff.
    Failed,
    Stopped,
}

impl ServiceState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Starting => "starting",
            ServiceState::Running => "running",
            ServiceState::Failed => "failed",
            ServiceState::Stopped => "stopped",
        }
    }
}

/// Whether the box can reach beyond the school.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UplinkStatus {
    pub state: UplinkState,
    /// Interface carrying the default route, when there is one.
    pub interface: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UplinkState {
    /// A default route exists.
    Up,
    /// No default route: the box works offline.
    Down,
    /// Not checked yet.
    Unknown,
}

/// Space on the file system holding `data_dir`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskStatus {
    pub path: String,
    pub free_bytes: u64,
    pub total_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_as_json_with_stable_names() {
        let report = StatusReport {
            version: "0.1.0".into(),
            box_id: "b1".into(),
            site: "s1".into(),
            uptime_secs: 3,
            services: vec![ServiceStatus {
                name: "http".into(),
                state: ServiceState::Failed,
                restarts: 2,
                last_error: Some("bind".into()),
                problems: Vec::new(),
            }],
            uplink: UplinkStatus {
                state: UplinkState::Down,
                interface: None,
            },
            disk: DiskStatus {
                path: "/var/lib/cartable".into(),
                free_bytes: 1,
                total_bytes: 2,
            },
            sync: SyncStatus::default(),
            cache: CacheStatus::default(),
            update: UpdateStatus {
                running: "2026.12.1".into(),
                state: UpdateState::WaitingForWindow,
                ..UpdateStatus::default()
            },
        };
        let json = serde_json::to_string(&report).unwrap();
        assert!(json.contains(r#""state":"failed""#), "{json}");
        assert!(json.contains(r#""state":"waiting_for_window""#), "{json}");
        for s in [
            UpdateState::Idle,
            UpdateState::RolledBack,
            UpdateState::Checking,
        ] {
            assert_eq!(UpdateState::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert!(json.contains(r#""state":"down""#), "{json}");
        let back: StatusReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
        assert!(!back.healthy());
    }
}
