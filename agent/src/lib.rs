//! The reference agent: what a tablet runs to be driven by the hub. It speaks the
//! device protocol (`cartable_protocol::device`), applies every command to the state a
//! tablet would show, acknowledges it, and reports its state. Tests and benchmarks run
//! many of them in one process; `cartable-agent` runs one.
#![forbid(unsafe_code)]

pub mod http;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use cartable_protocol::device::{self, Action, DeviceState, FromDevice, ToDevice};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// What the tablet shows, as the hub drove it.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub device_id: Option<i64>,
    pub name: String,
    pub state: DeviceState,
    /// One-shot actions carried out, in order (`open_url https://...`, ...).
    pub done: Vec<String>,
    pub wipes: u32,
    pub commands: u64,
    /// Error frames the hub sent back.
    pub errors: Vec<String>,
    pub revoked: bool,
    pub connected: bool,
    /// The last command carried out, and when its ack was sent (for benchmarks).
    pub last_command: Option<(u64, std::time::Instant)>,
    /// The pupil signed in with a card, and their class.
    pub pupil: Option<(String, String)>,
}

pub type Shared = Arc<Mutex<View>>;

/// Enrols with a one-use code; returns (device id, token).
pub async fn enrol(box_http: SocketAddr, code: &str, model: &str) -> anyhow::Result<(i64, String)> {
    let body = serde_json::json!({ "code": code, "model": model }).to_string();
    let r = http::request(
        box_http,
        "POST",
        "/api/v1/devices/enrol",
        &[("content-type", "application/json")],
        Some(&body),
    )
    .await?;
    if r.status != 201 {
        bail!("enrolment refused ({}): {}", r.status, r.body.trim());
    }
    let v = r.json()?;
    Ok((
        v["device_id"].as_i64().context("device_id")?,
        v["token"].as_str().context("token")?.to_string(),
    ))
}

/// Carries out one action on the view.
fn carry_out(view: &mut View, action: &Action) {
    if !action.apply_to(&mut view.state) {
        let line = match action {
            Action::LaunchApp { package } => format!("launch_app {package}"),
            Action::OpenUrl { url } => format!("open_url {url}"),
            Action::ShareDocument { url, name } => format!("share_document {name} {url}"),
            Action::ShowMessage { text } => format!("show_message {text}"),
            Action::LogoutAndWipe => {
                view.wipes += 1;
                view.pupil = None;
                "logout_and_wipe".to_string()
            }
            _ => String::new(),
        };
        view.done.push(line);
    }
    view.commands += 1;
}

/// One connection to the hub at `ws_url`, from `local` if given (so tests can give
/// each agent an address of its own); returns when the hub closes it or `stop` fires.
pub async fn run_once(
    ws_url: &str,
    token: &str,
    local: Option<std::net::IpAddr>,
    view: Shared,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    run_with(ws_url, token, local, view, stop, None).await
}

/// Like [`run_once`], also sending what comes on `outgoing` (a pupil's card, a
/// logout: what a tablet's user does).
// Long: one select loop over the socket, the heartbeat and the user's actions, as a
// tablet's agent is; its arms are short and read in order.
pub async fn run_with(
    ws_url: &str,
    token: &str,
    local: Option<std::net::IpAddr>,
    view: Shared,
    stop: tokio_util::sync::CancellationToken,
    mut outgoing: Option<tokio::sync::mpsc::UnboundedReceiver<FromDevice>>,
) -> anyhow::Result<()> {
    let mut request = ws_url.into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let host = request.uri().host().context("no host")?.to_string();
    let port = request.uri().port_u16().unwrap_or(80);
    let addr: SocketAddr = tokio::net::lookup_host((host.as_str(), port))
        .await?
        .next()
        .context("no address")?;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if let Some(ip) = local {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    let (ws, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .context("WebSocket handshake")?;
    let (mut tx, mut rx) = ws.split();
    let hello = {
        let v = view.lock().unwrap_or_else(|e| e.into_inner());
        FromDevice::Hello {
            v: device::VERSION,
            model: "cartable-agent".into(),
            os: std::env::consts::OS.into(),
            agent: env!("CARGO_PKG_VERSION").into(),
            battery: Some(90),
            app: None,
            state: v.state.clone(),
        }
    };
    tx.send(Message::Text(serde_json::to_string(&hello)?.into()))
        .await?;
    view.lock().unwrap_or_else(|e| e.into_inner()).connected = true;
    let mut heartbeat = tokio::time::interval(Duration::from_secs(20));
    heartbeat.tick().await;
    let result = loop {
        let frame = tokio::select! {
            f = rx.next() => f,
            Some(out) = async {
                match outgoing.as_mut() {
                    Some(o) => o.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                tx.send(Message::Text(serde_json::to_string(&out)?.into())).await?;
                continue;
            }
            _ = heartbeat.tick() => {
                let hb = FromDevice::Heartbeat { battery: Some(90) };
                tx.send(Message::Text(serde_json::to_string(&hb)?.into())).await?;
                continue;
            }
            _ = stop.cancelled() => break Ok(()),
        };
        let text = match frame {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(_))) | None => break Ok(()),
            Some(Ok(_)) => continue,
            Some(Err(e)) => break Err(e.into()),
        };
        let m: ToDevice = match serde_json::from_str(text.as_str()) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable frame from the hub");
                continue;
            }
        };
        match m {
            ToDevice::Welcome {
                device_id, name, ..
            } => {
                let mut v = view.lock().unwrap_or_else(|e| e.into_inner());
                v.device_id = Some(device_id);
                v.name = name;
            }
            ToDevice::Command { id, action } => {
                let state = {
                    let mut v = view.lock().unwrap_or_else(|e| e.into_inner());
                    carry_out(&mut v, &action);
                    v.state.clone()
                };
                let ack = FromDevice::Ack {
                    command: id,
                    ok: true,
                    error: String::new(),
                };
                tx.send(Message::Text(serde_json::to_string(&ack)?.into()))
                    .await?;
                view.lock().unwrap_or_else(|e| e.into_inner()).last_command =
                    Some((id, std::time::Instant::now()));
                let report = FromDevice::State {
                    state,
                    battery: Some(90),
                    app: None,
                };
                tx.send(Message::Text(serde_json::to_string(&report)?.into()))
                    .await?;
            }
            ToDevice::Error { message } => {
                view.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .errors
                    .push(message);
            }
            ToDevice::Revoked => {
                view.lock().unwrap_or_else(|e| e.into_inner()).revoked = true;
                break Ok(());
            }
            ToDevice::PupilSession { pupil, class } => {
                view.lock().unwrap_or_else(|e| e.into_inner()).pupil = Some((pupil, class));
            }
        }
    };
    view.lock().unwrap_or_else(|e| e.into_inner()).connected = false;
    result
}

/// Sends raw text on a fresh connection and returns the hub's first error frame (for
/// tests of malformed input).
pub async fn send_raw(ws_url: &str, token: &str, text: &str) -> anyhow::Result<Option<String>> {
    send_frames(ws_url, token, &[text]).await
}

/// [`send_raw`] with several frames in a row; the first error frame the box answers
/// (frames are handled in order: an error for the last one means all were read).
pub async fn send_frames(
    ws_url: &str,
    token: &str,
    frames: &[&str],
) -> anyhow::Result<Option<String>> {
    let mut request = ws_url.into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let (ws, _) = tokio_tungstenite::connect_async(request).await?;
    let (mut tx, mut rx) = ws.split();
    for text in frames {
        tx.send(Message::Text(text.to_string().into())).await?;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Ok(Some(frame)) = tokio::time::timeout_at(deadline, rx.next()).await {
        if let Ok(Message::Text(t)) = frame
            && let Ok(ToDevice::Error { message }) = serde_json::from_str(t.as_str())
        {
            return Ok(Some(message));
        }
    }
    Ok(None)
}
