//! The server side of the Headwind MDM Android agent's protocol (h-mdm/hmdm-android,
//! Apache-2.0), so schools can drive real tablets today with an agent that exists.
//!
//! - `GET|POST /{project}/rest/public/sync/configuration/{number}`: the device's
//!   configuration (`ServerConfig`), built from its desired state; the POST enrols a
//!   device whose number is an unused enrolment code. Requests carry
//!   `X-Request-Signature: SHA1(secret + number)`; answers carry
//!   `X-Response-Signature: SHA1(secret + data without whitespace)`, with `data` the
//!   last key of `{"status":"OK","message":null,"data":{...}}` as the agent expects.
//! - `POST /{project}/rest/public/sync/info`: the device's report (battery, model).
//! - `GET /{project}/rest/notification/polling/{number}`: the long poll; it answers
//!   as soon as a command is queued for the device (or after 45 s, empty), mapping
//!   lasting changes to `configUpdated` and one-shots to `intent` (open a link or a
//!   shared document), `runApp`, and `clearAppData` + `purgeDir` (log out and wipe).
//!
//! A Headwind tablet counts as connected while it polls (within 70 s of its last
//! request); its frames wait in the same queue a WebSocket device's would.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cartable_protocol::device::{Action, DesiredState, ToDevice};
use ring::digest;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::Hub;
use crate::supervisor::{Service, ServiceCtx, ServiceFuture};

const POLL: Duration = Duration::from_secs(45);
/// The shortest device number a Headwind tablet enrols with: the number is its
/// credential on every request, so it must not be guessable (24 characters from the
/// admin's enrolment codes, 120 bits).
const MIN_NUMBER: usize = 20;

/// Why a Headwind request about a device number is refused.
enum Refusal {
    /// The address tried unknown numbers: 429 for this long.
    Wait(Duration),
    /// The agent's own answer for a number the box does not know.
    Unknown,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Wait(wait) => (
                StatusCode::TOO_MANY_REQUESTS,
                [(
                    axum::http::header::RETRY_AFTER,
                    wait.as_secs().max(1).to_string(),
                )],
                "too many unknown device numbers from this address\n",
            )
                .into_response(),
            Refusal::Unknown => error("error.notfound.device"),
        }
    }
}

/// Refused while `ip` must wait after guessing numbers.
fn not_waiting(hub: &Hub, ip: IpAddr) -> Result<(), Refusal> {
    hub.limits.headwind.check(ip).map_err(Refusal::Wait)
}

/// The device a number names; an unknown number counts against `ip`.
async fn known(hub: &Hub, ip: IpAddr, number: &str) -> Result<i64, Refusal> {
    not_waiting(hub, ip)?;
    match hub.authenticate(number) {
        Some(id) => Ok(id),
        None => {
            hub.limits.headwind.failed(ip).await;
            Err(Refusal::Unknown)
        }
    }
}

const GONE_AFTER: Duration = Duration::from_secs(70);

struct Slot {
    session: u64,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<ToDevice>>>,
    last_seen: Instant,
}

/// The Headwind side of the hub.
pub struct Headwind {
    secret: String,
    pub project: String,
    wipe_packages: Vec<String>,
    wipe_dirs: Vec<String>,
    slots: Mutex<HashMap<i64, Slot>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn sent_signature(headers: &HeaderMap) -> &str {
    headers
        .get("x-request-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// `java.net.URLEncoder.encode(s, "utf8")`: letters, digits and `.-*_` kept, space as
/// `+`, every other byte of the UTF-8 as `%XX` (upper case).
pub fn java_url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'*' | b'_' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// SHA-1 in upper-case hex: the agent's `CryptoHelper.getSHA1String`.
pub fn sha1_hex(s: &str) -> String {
    digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, s.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

impl Headwind {
    pub fn new(
        secret: String,
        project: String,
        wipe_packages: Vec<String>,
        wipe_dirs: Vec<String>,
    ) -> Headwind {
        Headwind {
            secret,
            project: project.trim_matches('/').to_string(),
            wipe_packages,
            wipe_dirs,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The configuration requests' signature: `SHA1(REQUEST_SIGNATURE + number)`
    /// (`GetServerConfigTask`).
    fn signed(&self, headers: &HeaderMap, number: &str) -> bool {
        sent_signature(headers).eq_ignore_ascii_case(&sha1_hex(&format!("{}{number}", self.secret)))
    }

    /// The long poll's signature, as `PushLongPollingService` builds it:
    /// `SHA1(REQUEST_SIGNATURE + serverProject + "/rest/notification/polling/" +
    /// URLEncoder.encode(number, "utf8"))`.
    fn poll_signed(&self, headers: &HeaderMap, number: &str) -> bool {
        let path = format!(
            "{}/rest/notification/polling/{}",
            self.project,
            java_url_encode(number)
        );
        sent_signature(headers).eq_ignore_ascii_case(&sha1_hex(&format!("{}{path}", self.secret)))
    }

    /// `{"status":"OK","message":null,"data":...}` with its signature header.
    fn ok(&self, data: &Value) -> Response {
        let data = data.to_string();
        let stripped: String = data.chars().filter(|c| !c.is_whitespace()).collect();
        let signature = sha1_hex(&format!("{}{stripped}", self.secret));
        let body = format!("{{\"status\":\"OK\",\"message\":null,\"data\":{data}}}");
        let mut r = (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        if let Ok(v) = HeaderValue::from_str(&signature) {
            r.headers_mut().insert("x-response-signature", v);
        }
        r
    }

    /// The agent's `ServerConfig` for a device's desired state.
    pub fn server_config(&self, name: &str, d: &DesiredState) -> Value {
        let mut restrictions = Vec::new();
        if d.camera_off {
            restrictions.push("no_camera");
        }
        json!({
            "title": name,
            "description": name,
            "lock": d.locked,
            "lockMessage": if d.locked { "Regardez le tableau / Eyes on the board" } else { "" },
            "manageVolume": d.muted,
            "lockVolume": d.muted,
            "volume": if d.muted { 0 } else { 50 },
            "kioskMode": d.app_lock.is_some(),
            "mainApp": d.app_lock.clone().unwrap_or_default(),
            "restrictions": restrictions.join(","),
            "pushOptions": "polling",
            "applications": [],
            "applicationSettings": [],
            "files": [],
        })
    }

    /// Push messages for one frame of the hub; `None` for frames Headwind has no
    /// word for.
    fn push_messages(&self, frame: &ToDevice, base: &str) -> Vec<Value> {
        let msg = |t: &str, payload: Option<Value>| json!({ "messageType": t, "payload": payload.map(|p| p.to_string()) });
        let ToDevice::Command { action, .. } = frame else {
            return Vec::new();
        };
        match action {
            Action::OpenUrl { url } => vec![msg(
                "intent",
                Some(json!({ "action": "android.intent.action.VIEW", "data": url })),
            )],
            Action::ShareDocument { url, .. } => {
                let full = if url.starts_with('/') {
                    format!("{base}{url}")
                } else {
                    url.clone()
                };
                vec![msg(
                    "intent",
                    Some(json!({ "action": "android.intent.action.VIEW", "data": full })),
                )]
            }
            Action::LaunchApp { package } => vec![msg("runApp", Some(json!({ "pkg": package })))],
            Action::ShowMessage { text } => vec![msg("showMessage", Some(json!({ "text": text })))],
            Action::LogoutAndWipe => {
                let mut v: Vec<Value> = self
                    .wipe_packages
                    .iter()
                    .map(|p| msg("clearAppData", Some(json!({ "pkg": p }))))
                    .collect();
                v.extend(
                    self.wipe_dirs
                        .iter()
                        .map(|d| msg("purgeDir", Some(json!({ "path": d, "recursive": "1" })))),
                );
                v
            }
            // Every lasting change: fetch the configuration again.
            _ => vec![msg("configUpdated", None)],
        }
    }

    /// Drops the tablets that stopped polling.
    pub fn reap(&self, hub: &Hub) {
        let gone: Vec<(i64, u64)> = {
            let mut slots = lock(&self.slots);
            let old: Vec<i64> = slots
                .iter()
                .filter(|(_, s)| s.last_seen.elapsed() > GONE_AFTER && s.rx.try_lock().is_ok())
                .map(|(id, _)| *id)
                .collect();
            old.into_iter()
                .filter_map(|id| slots.remove(&id).map(|s| (id, s.session)))
                .collect()
        };
        for (id, session) in gone {
            hub.disconnect(id, session);
        }
    }
}

struct Ctx {
    hub: Arc<Hub>,
    hw: Arc<Headwind>,
}

/// The hub and the Headwind side, if they serve this project (else a plain 404).
fn ctx(state: &State_, project: &str) -> Result<Ctx, (StatusCode, &'static str)> {
    if state.hw.project == project.trim_matches('/') {
        Ok(Ctx {
            hub: state.hub.clone(),
            hw: state.hw.clone(),
        })
    } else {
        Err((StatusCode::NOT_FOUND, "not found\n"))
    }
}

/// What Headwind's handlers share.
#[derive(Clone)]
pub struct State_ {
    hub: Arc<Hub>,
    hw: Arc<Headwind>,
}

/// The agent's endpoints, with and without a server project in the path.
pub fn routes(hub: Arc<Hub>, hw: Arc<Headwind>) -> axum::Router {
    use axum::routing::{get, post};
    axum::Router::new()
        .route(
            "/rest/public/sync/configuration/{number}",
            get(config_get_root).post(config_post_root),
        )
        .route(
            "/{project}/rest/public/sync/configuration/{number}",
            get(config_get).post(config_post),
        )
        .route("/rest/public/sync/info", post(info_root))
        .route("/{project}/rest/public/sync/info", post(info))
        .route("/rest/notification/polling/{number}", get(poll_root))
        .route("/{project}/rest/notification/polling/{number}", get(poll))
        .with_state(State_ { hub, hw })
}

/// Headwind tablets poll instead of keeping a connection: one that stopped polling
/// is marked offline by this service, every 10 s.
pub struct Reaper {
    pub hub: Arc<Hub>,
    pub hw: Arc<Headwind>,
}

impl Service for Reaper {
    fn name(&self) -> &'static str {
        "headwind"
    }

    fn run(self: Arc<Self>, ctx: ServiceCtx) -> ServiceFuture {
        Box::pin(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            ctx.ready();
            loop {
                tokio::select! {
                    _ = tick.tick() => self.hw.reap(&self.hub),
                    _ = ctx.shutdown.cancelled() => return Ok(()),
                }
            }
        })
    }
}

fn error(message: &str) -> Response {
    Json(json!({ "status": "ERROR", "message": message, "data": null })).into_response()
}

pub async fn config_get(
    State(state): State<State_>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((project, number)): Path<(String, String)>,
) -> Response {
    configuration(state, peer.ip(), headers, project, number, false).await
}

pub async fn config_get_root(
    State(state): State<State_>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(number): Path<String>,
) -> Response {
    configuration(state, peer.ip(), headers, String::new(), number, false).await
}

pub async fn config_post(
    State(state): State<State_>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((project, number)): Path<(String, String)>,
) -> Response {
    configuration(state, peer.ip(), headers, project, number, true).await
}

pub async fn config_post_root(
    State(state): State<State_>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(number): Path<String>,
) -> Response {
    configuration(state, peer.ip(), headers, String::new(), number, true).await
}

async fn configuration(
    state: State_,
    ip: IpAddr,
    headers: HeaderMap,
    project: String,
    number: String,
    enrol: bool,
) -> Response {
    let c = match ctx(&state, &project) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    if !c.hw.signed(&headers, &number) {
        return (StatusCode::FORBIDDEN, "wrong X-Request-Signature\n").into_response();
    }
    if let Err(r) = not_waiting(&c.hub, ip) {
        return r.into_response();
    }
    let mut id = c.hub.authenticate(&number);
    // A Headwind tablet's number is its credential for good: only a long one enrols.
    if id.is_none() && enrol && number.len() >= MIN_NUMBER {
        match c
            .hub
            .enrol_with_token(&number, "Headwind agent", number.clone())
            .await
        {
            Ok(Some((new, _))) => id = Some(new),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "Headwind enrolment failed in the store");
                return (StatusCode::SERVICE_UNAVAILABLE, "try again\n").into_response();
            }
        }
    }
    let Some((name, desired)) = id.and_then(|id| c.hub.desired_of(id)) else {
        c.hub.limits.headwind.failed(ip).await;
        return error("error.notfound.device");
    };
    c.hw.ok(&c.hw.server_config(&name, &desired))
}

pub async fn info(
    State(state): State<State_>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(project): Path<String>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Response {
    device_info(state, peer.ip(), project, body).await
}

pub async fn info_root(
    State(state): State<State_>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Response {
    device_info(state, peer.ip(), String::new(), body).await
}

async fn device_info(
    state: State_,
    ip: IpAddr,
    project: String,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let c = match ctx(&state, &project) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let Ok(Json(info)) = body else {
        return (StatusCode::BAD_REQUEST, "a JSON DeviceInfo is expected\n").into_response();
    };
    // No signature on this call in the agent: only known numbers are listened to.
    let id = match known(&c.hub, ip, info["deviceId"].as_str().unwrap_or("")).await {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    let battery = info["batteryLevel"].as_u64().map(|b| b.min(100) as u8);
    let model = info["model"]
        .as_str()
        .unwrap_or_default()
        .chars()
        .take(100)
        .collect();
    c.hub.report(id, |r| {
        r.battery = battery.or(r.battery);
        r.model = model;
        r.agent = "headwind".into();
    });
    Json(json!({ "status": "OK", "message": null, "data": null })).into_response()
}

pub async fn poll(
    State(state): State<State_>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((project, number)): Path<(String, String)>,
) -> Response {
    long_poll(state, peer.ip(), headers, project, number).await
}

pub async fn poll_root(
    State(state): State<State_>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(number): Path<String>,
) -> Response {
    long_poll(state, peer.ip(), headers, String::new(), number).await
}

// Long: the Headwind long poll in the order the agent expects it (signature, slot,
// first-poll catch-up, wait, translation, acknowledgement).
async fn long_poll(
    state: State_,
    ip: IpAddr,
    headers: HeaderMap,
    project: String,
    number: String,
) -> Response {
    let c = match ctx(&state, &project) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    // Signed as the agent signs it, always: an unsigned poll would hand a tablet's
    // commands to whoever knows its number.
    if !c.hw.poll_signed(&headers, &number) {
        return (StatusCode::FORBIDDEN, "wrong X-Request-Signature\n").into_response();
    }
    let id = match known(&c.hub, ip, &number).await {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    let (rx, first) = {
        let existing = lock(&c.hw.slots).get_mut(&id).map(|s| {
            s.last_seen = Instant::now();
            s.rx.clone()
        });
        match existing {
            Some(rx) => (rx, false),
            None => {
                let Some((session, rx, _, _)) = c.hub.connect(id, ip) else {
                    return error("error.notfound.device");
                };
                let rx = Arc::new(tokio::sync::Mutex::new(rx));
                lock(&c.hw.slots).insert(
                    id,
                    Slot {
                        session,
                        rx: rx.clone(),
                        last_seen: Instant::now(),
                    },
                );
                (rx, true)
            }
        }
    };
    let base = format!(
        "http://{}",
        headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("cartable.local")
    );
    let mut frames: Vec<ToDevice> = Vec::new();
    let mut queued: Vec<u64> = Vec::new();
    if first {
        // A tablet back after a while: its configuration may have changed, and
        // one-shots may be waiting.
        frames.push(ToDevice::Command {
            id: c.hub.next_command_id(),
            action: Action::Apply {
                desired: DesiredState::default(),
            },
        });
        if let Ok(q) = c.hub.queued(id).await {
            for (command, action) in q {
                queued.push(command);
                frames.push(ToDevice::Command {
                    id: command,
                    action,
                });
            }
        }
    }
    {
        let mut rx = rx.lock().await;
        if frames.is_empty()
            && let Ok(Some(f)) = tokio::time::timeout(POLL, rx.recv()).await
        {
            frames.push(f);
        }
        while let Ok(f) = rx.try_recv() {
            frames.push(f);
        }
    }
    if let Some(s) = lock(&c.hw.slots).get_mut(&id) {
        s.last_seen = Instant::now();
    }
    let mut messages: Vec<Value> = Vec::new();
    for f in &frames {
        for m in c.hw.push_messages(f, &base) {
            if !messages.contains(&m) || m["messageType"] != "configUpdated" {
                messages.push(m);
            }
        }
        // Handed to the tablet: that is all the acknowledgement Headwind gives.
        if let ToDevice::Command { id: command, .. } = f {
            c.hub.ack(id, *command, true, String::new());
            if queued.contains(command) {
                let _ = c.hub.dequeue(id, *command).await;
            }
        }
    }
    Json(json!({ "status": "OK", "message": null, "data": messages })).into_response()
}
