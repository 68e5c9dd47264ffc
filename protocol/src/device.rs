//! The device protocol: one WebSocket per tablet to the hub (`/api/v1/devices/ws`),
//! authenticated at the upgrade by the device's token (`Authorization: Bearer ...`),
//! one JSON text frame per message.
//!
//! ```text
//! device                                   hub
//!   ── hello {v, model, os, agent, battery, app, state} ─▶
//!   ◀─ welcome {v, device_id, name}
//!   ◀─ command {id, action: {kind: apply, desired}}       the desired state, at every connect
//!   ◀─ command {id, action: {kind: lock | open_url ...}}  queued one-shots still valid, then live ones
//!   ── ack {command, ok, error} ─▶
//!   ── state {state, battery, app} ─▶                     whenever it changes
//!   ── heartbeat {battery} ─▶                             every 20 s; 60 s of silence closes
//!   ── pupil_login {card} ─▶                              a pupil's QR card, scanned
//!   ◀─ pupil_session {pupil, class}                       (or error: unknown or revoked card)
//!   ── pupil_logout ─▶                                    ends it: the hub sends logout_and_wipe,
//!                                                         and the session closes on its ack
//!   ◀─ error {message}                                    a frame the hub could not read
//!   ◀─ revoked                                            the token was revoked; the socket closes
//! ```

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// The protocol version in `hello` and `welcome`.
pub const VERSION: u32 = 1;
/// Largest frame either side accepts.
pub const MAX_FRAME: usize = 64 << 10;

/// Internet access of one device.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Internet {
    #[default]
    On,
    Off,
    /// Only these names and their subdomains.
    AllowList {
        domains: BTreeSet<String>,
    },
}

/// What the hub wants a device to be; re-applied at every (re)connection, so a lock
/// survives a reboot.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DesiredState {
    pub locked: bool,
    pub muted: bool,
    pub camera_off: bool,
    pub internet: Internet,
    /// The only app the device may show.
    pub app_lock: Option<String>,
}

/// What a device reports it is.
pub type DeviceState = DesiredState;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// The whole desired state (sent at connection).
    Apply {
        desired: DesiredState,
    },
    Lock,
    Unlock,
    LockApp {
        package: String,
    },
    UnlockApp,
    Mute,
    Unmute,
    CameraOff,
    CameraOn,
    InternetOff,
    InternetOn,
    AllowListOnly {
        domains: BTreeSet<String>,
    },
    LaunchApp {
        package: String,
    },
    OpenUrl {
        url: String,
    },
    /// A file the teacher uploaded to the box.
    ShareDocument {
        url: String,
        name: String,
    },
    ShowMessage {
        text: String,
    },
    /// End of a shared-tablet session: log the pupil out and wipe the local profile.
    LogoutAndWipe,
}

impl Action {
    /// Changes `desired` if this action is part of the lasting state; false for the
    /// one-shot actions, which are queued instead.
    pub fn apply_to(&self, desired: &mut DesiredState) -> bool {
        match self {
            Action::Apply { desired: d } => *desired = d.clone(),
            Action::Lock => desired.locked = true,
            Action::Unlock => desired.locked = false,
            Action::LockApp { package } => desired.app_lock = Some(package.clone()),
            Action::UnlockApp => desired.app_lock = None,
            Action::Mute => desired.muted = true,
            Action::Unmute => desired.muted = false,
            Action::CameraOff => desired.camera_off = true,
            Action::CameraOn => desired.camera_off = false,
            Action::InternetOff => desired.internet = Internet::Off,
            Action::InternetOn => desired.internet = Internet::On,
            Action::AllowListOnly { domains } => {
                desired.internet = Internet::AllowList {
                    domains: domains.clone(),
                }
            }
            Action::LaunchApp { .. }
            | Action::OpenUrl { .. }
            | Action::ShareDocument { .. }
            | Action::ShowMessage { .. }
            | Action::LogoutAndWipe => return false,
        }
        true
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FromDevice {
    Hello {
        v: u32,
        model: String,
        os: String,
        agent: String,
        #[serde(default)]
        battery: Option<u8>,
        #[serde(default)]
        app: Option<String>,
        #[serde(default)]
        state: DeviceState,
    },
    State {
        state: DeviceState,
        #[serde(default)]
        battery: Option<u8>,
        #[serde(default)]
        app: Option<String>,
    },
    Heartbeat {
        #[serde(default)]
        battery: Option<u8>,
    },
    Ack {
        command: u64,
        ok: bool,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        error: String,
    },
    /// A pupil showed their QR card to the tablet's camera.
    PupilLogin { card: String },
    /// The pupil tapped "log out": the hub answers with `logout_and_wipe`.
    PupilLogout,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ToDevice {
    Welcome {
        v: u32,
        device_id: i64,
        name: String,
    },
    Command {
        id: u64,
        action: Action,
    },
    Error {
        message: String,
    },
    Revoked,
    /// A pupil's session started on this tablet.
    PupilSession {
        pupil: String,
        class: String,
    },
}

/// Reads one frame from a device: a clear error for anything else.
pub fn parse_from_device(text: &str) -> Result<FromDevice, String> {
    if text.len() > MAX_FRAME {
        return Err(format!("frame larger than {MAX_FRAME} bytes"));
    }
    serde_json::from_str(text).map_err(|e| format!("unreadable message: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_action() -> Vec<Action> {
        let domains: BTreeSet<String> = ["lumni.fr".to_string()].into();
        vec![
            Action::Apply {
                desired: DesiredState {
                    locked: true,
                    internet: Internet::AllowList {
                        domains: domains.clone(),
                    },
                    ..DesiredState::default()
                },
            },
            Action::Lock,
            Action::Unlock,
            Action::LockApp {
                package: "org.geogebra".into(),
            },
            Action::UnlockApp,
            Action::Mute,
            Action::Unmute,
            Action::CameraOff,
            Action::CameraOn,
            Action::InternetOff,
            Action::InternetOn,
            Action::AllowListOnly { domains },
            Action::LaunchApp {
                package: "fr.lumni".into(),
            },
            Action::OpenUrl {
                url: "https://lumni.fr/".into(),
            },
            Action::ShareDocument {
                url: "/files/1".into(),
                name: "fiche.pdf".into(),
            },
            Action::ShowMessage {
                text: "Rangez les tablettes".into(),
            },
            Action::LogoutAndWipe,
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for (i, action) in every_action().into_iter().enumerate() {
            let m = ToDevice::Command {
                id: i as u64,
                action,
            };
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(
                serde_json::from_str::<ToDevice>(&json).unwrap(),
                m,
                "{json}"
            );
        }
        for m in [
            ToDevice::Welcome {
                v: VERSION,
                device_id: 3,
                name: "tab-03".into(),
            },
            ToDevice::Error {
                message: "x".into(),
            },
            ToDevice::Revoked,
        ] {
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(serde_json::from_str::<ToDevice>(&json).unwrap(), m);
        }
        for m in [
            FromDevice::Hello {
                v: VERSION,
                model: "Lenovo Tab M10".into(),
                os: "Android 13".into(),
                agent: "0.1.0".into(),
                battery: Some(80),
                app: Some("fr.lumni".into()),
                state: DeviceState::default(),
            },
            FromDevice::State {
                state: DeviceState {
                    muted: true,
                    ..DeviceState::default()
                },
                battery: None,
                app: None,
            },
            FromDevice::Heartbeat { battery: Some(5) },
            FromDevice::Ack {
                command: 9,
                ok: false,
                error: "no such app".into(),
            },
        ] {
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(parse_from_device(&json).unwrap(), m, "{json}");
        }
    }

    #[test]
    fn unknown_or_malformed_frames_are_errors() {
        for bad in [
            "",
            "{",
            r#"{"type":"reboot"}"#,
            r#"{"type":"ack","command":"x","ok":true}"#,
            r#"{"type":"heartbeat","battery":300}"#,
            r#"{"type":"heartbeat","extra":1}"#,
        ] {
            assert!(parse_from_device(bad).is_err(), "{bad}");
        }
        assert!(parse_from_device(&" ".repeat(MAX_FRAME + 1)).is_err());
    }

    #[test]
    fn lasting_actions_change_the_desired_state_and_one_shots_do_not() {
        let mut d = DesiredState::default();
        assert!(Action::Lock.apply_to(&mut d));
        assert!(Action::InternetOff.apply_to(&mut d));
        assert!(!Action::OpenUrl { url: "x".into() }.apply_to(&mut d));
        assert!(d.locked && d.internet == Internet::Off);
        assert!(Action::Unlock.apply_to(&mut d));
        assert!(!d.locked);
    }
}
