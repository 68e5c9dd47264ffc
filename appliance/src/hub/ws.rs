//! `/api/v1/devices/ws`: one WebSocket per tablet, authenticated at the upgrade.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cartable_protocol::device::{self, Action, FromDevice, ToDevice};

use super::Hub;
use super::api::HubState;

/// Silence after which a device counts as gone (it sends a heartbeat every 20 s).
const SILENCE: Duration = Duration::from_secs(60);
/// Unreadable frames tolerated on one connection before it is closed.
const MAX_BAD_FRAMES: u32 = 20;

pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

pub(crate) async fn upgrade(
    State(state): State<HubState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let hub = state.hub.clone();
    let Some(id) = bearer(&headers).and_then(|t| hub.authenticate(t)) else {
        return (
            StatusCode::UNAUTHORIZED,
            "a valid device token is required\n",
        )
            .into_response();
    };
    // Small buffers: frames are a few hundred bytes, and a box holds a thousand of
    // these connections (tungstenite's defaults, 128 KiB each way, would cost 256 KiB
    // a tablet).
    ws.max_message_size(device::MAX_FRAME)
        .max_frame_size(device::MAX_FRAME)
        .read_buffer_size(4 << 10)
        .write_buffer_size(0)
        .max_write_buffer_size(device::MAX_FRAME * 2)
        .on_upgrade(move |socket| session(hub, id, peer, socket))
}

async fn send(socket: &mut WebSocket, m: &ToDevice) -> bool {
    let text = serde_json::to_string(m).unwrap_or_default();
    socket.send(Message::Text(text.into())).await.is_ok()
}

#[tracing::instrument(name = "device", skip(hub, socket), fields(device = id, %peer))]
// Long: one select loop per tablet (frames in, commands out, silence); its arms are
// the device protocol's messages, each a few lines.
async fn session(hub: Arc<Hub>, id: i64, peer: SocketAddr, mut socket: WebSocket) {
    let Some((session, mut rx, name, desired)) = hub.connect(id, peer.ip()) else {
        return;
    };
    tracing::debug!("device connected");
    let greeted = send(
        &mut socket,
        &ToDevice::Welcome {
            v: device::VERSION,
            device_id: id,
            name,
        },
    )
    .await
        && send(
            &mut socket,
            &ToDevice::Command {
                id: hub.next_command_id(),
                action: Action::Apply { desired },
            },
        )
        .await;
    let mut queued_ids = Vec::new();
    let mut alive = greeted;
    if alive {
        match hub.queued(id).await {
            Ok(q) => {
                for (command, action) in q {
                    queued_ids.push(command);
                    if !send(
                        &mut socket,
                        &ToDevice::Command {
                            id: command,
                            action,
                        },
                    )
                    .await
                    {
                        alive = false;
                        break;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the device's queue"),
        }
    }
    let mut bad = 0;
    let mut deadline = tokio::time::Instant::now() + SILENCE;
    if !alive {
        hub.disconnect(id, session);
        return;
    }
    loop {
        tokio::select! {
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    deadline = tokio::time::Instant::now() + SILENCE;
                    match device::parse_from_device(text.as_str()) {
                        Ok(m) => {
                            if let Some(reply) = handle(&hub, id, m, &mut queued_ids).await
                                && !send(&mut socket, &reply).await
                            {
                                break;
                            }
                        }
                        Err(message) => {
                            bad += 1;
                            if bad > MAX_BAD_FRAMES || !send(&mut socket, &ToDevice::Error { message }).await {
                                break;
                            }
                        }
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    bad += 1;
                    let message = "binary frames are not part of the protocol".to_string();
                    if bad > MAX_BAD_FRAMES || !send(&mut socket, &ToDevice::Error { message }).await {
                        break;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                    deadline = tokio::time::Instant::now() + SILENCE;
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
            },
            out = rx.recv() => match out {
                Some(ToDevice::Revoked) => {
                    let _ = send(&mut socket, &ToDevice::Revoked).await;
                    let _ = socket.send(Message::Close(None)).await;
                    break;
                }
                Some(m) => if !send(&mut socket, &m).await { break },
                // A newer connection of the same device replaced this one.
                None => break,
            },
            _ = tokio::time::sleep_until(deadline) => {
                tracing::debug!("device silent for 60 s");
                break;
            }
        }
    }
    hub.disconnect(id, session);
    tracing::debug!("device disconnected");
}

/// Takes one message in; returns what to answer, if anything.
async fn handle(hub: &Hub, id: i64, m: FromDevice, queued: &mut Vec<u64>) -> Option<ToDevice> {
    match m {
        FromDevice::Hello {
            model,
            os,
            agent,
            battery,
            app,
            state,
            ..
        } => hub.report(id, |r| {
            r.model = model;
            r.os = os;
            r.agent = agent;
            r.battery = battery;
            r.app = app;
            r.state = state;
        }),
        FromDevice::State {
            state,
            battery,
            app,
        } => hub.report(id, |r| {
            r.state = state;
            if battery.is_some() {
                r.battery = battery;
            }
            r.app = app;
        }),
        FromDevice::Heartbeat { battery } => {
            if battery.is_some() {
                hub.report(id, |r| r.battery = battery);
            }
        }
        FromDevice::Ack { command, ok, error } => {
            hub.ack(id, command, ok, error);
            if let Some(i) = queued.iter().position(|c| *c == command) {
                queued.swap_remove(i);
                if let Err(e) = hub.dequeue(id, command).await {
                    tracing::warn!(error = %e, "cannot remove a delivered action");
                }
            }
        }
        FromDevice::PupilLogin { card } => {
            return Some(match hub.pupil_login(id, &card).await {
                Ok(reply) => reply,
                Err(e) => {
                    tracing::error!(error = %e, "pupil sign-in failed in the store");
                    ToDevice::Error {
                        message: "the box cannot sign pupils in now".into(),
                    }
                }
            });
        }
        FromDevice::PupilLogout => {
            if let Err(e) = hub.pupil_logout(id).await {
                tracing::error!(error = %e, "pupil logout failed in the store");
            }
        }
    }
    None
}
