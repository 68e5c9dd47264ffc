//! The hub's HTTP API: enrolment (devices), sign-in and commands (teachers), and the
//! admin's calls (local only until admin accounts exist). Every permission is checked
//! here, on the server: a teacher sees and commands only the tablets of their classes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cartable_protocol::device::Action;
use rusqlite::{OptionalExtension, params};
use serde::Deserialize;
use serde_json::json;

use super::Hub;
use super::auth::{self, Session};
use crate::web::WebState;
use crate::web::filter_api::local_only;

const COOKIE: &str = "cartable_session";
const CODE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

type Refusal = (StatusCode, &'static str);

fn hub(state: &WebState) -> Result<Arc<Hub>, Refusal> {
    state
        .hub
        .clone()
        .ok_or((StatusCode::SERVICE_UNAVAILABLE, "no hub\n"))
}

fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// The signed-in teacher; for requests that change something, the CSRF token too.
fn teacher(hub: &Hub, headers: &HeaderMap, changes: bool) -> Result<Session, Refusal> {
    let session = cookie(headers)
        .and_then(|c| hub.sessions.get(c))
        .ok_or((StatusCode::UNAUTHORIZED, "sign in first\n"))?;
    if changes {
        let sent = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
        if sent != Some(session.csrf.as_str()) {
            return Err((StatusCode::FORBIDDEN, "missing or wrong X-CSRF-Token\n"));
        }
    }
    Ok(session)
}

/// A JSON body; anything else is a 400 that says what is wrong.
pub struct JsonBody<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = (StatusCode, String);

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(e) => Err((StatusCode::BAD_REQUEST, format!("{}\n", e.body_text()))),
        }
    }
}

/// The hub, for a caller on the box itself (the admin, until admin accounts exist).
pub struct AdminHub(pub Arc<Hub>);

impl axum::extract::FromRequestParts<WebState> for AdminHub {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &WebState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
            .ok_or((StatusCode::FORBIDDEN, "no peer address\n"))?;
        local_only(&peer)?;
        Ok(AdminHub(hub(state)?))
    }
}

fn store_error(e: crate::store::StoreError) -> Response {
    tracing::error!(error = %e, "hub store error");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the store cannot do it now\n",
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrol {
    code: String,
    #[serde(default)]
    model: String,
}

/// `POST /api/v1/devices/enrol`: a code shown to the admin, once, for one device.
pub async fn enrol(
    State(state): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(body): JsonBody<Enrol>,
) -> Response {
    let hub = match hub(&state) {
        Ok(h) => h,
        Err(r) => return r.into_response(),
    };
    // Codes are short: guessing them is rate-limited like passwords.
    if !hub.sessions.may_try("enrolment", peer.ip()) {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            "too many wrong codes; wait 15 minutes\n",
        )
            .into_response();
    }
    match hub.enrol(&body.code, &body.model).await {
        Ok(Some((id, token))) => (
            StatusCode::CREATED,
            Json(json!({ "device_id": id, "token": token })),
        )
            .into_response(),
        Ok(None) => {
            hub.sessions.failed("enrolment", peer.ip());
            (
                StatusCode::FORBIDDEN,
                "unknown, used or expired enrolment code\n",
            )
                .into_response()
        }
        Err(e) => store_error(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCode {
    name: String,
    #[serde(default)]
    class: Option<String>,
}

/// `POST /api/v1/admin/enrolment-codes` (local): a one-use code for a tablet.
pub async fn new_code(AdminHub(hub): AdminHub, JsonBody(body): JsonBody<NewCode>) -> Response {
    if body.name.trim().is_empty() || body.name.len() > 100 {
        return (StatusCode::BAD_REQUEST, "name: 1 to 100 characters\n").into_response();
    }
    let class_id = match body.class {
        None => None,
        Some(class) => {
            let found = hub
                .store()
                .read(move |c| {
                    Ok(
                        c.query_row("SELECT id FROM classes WHERE name = ?1", [class], |r| {
                            r.get::<_, i64>(0)
                        })
                        .optional()?,
                    )
                })
                .await;
            match found {
                Ok(Some(id)) => Some(id),
                Ok(None) => return (StatusCode::BAD_REQUEST, "no such class\n").into_response(),
                Err(e) => return store_error(e),
            }
        }
    };
    match hub.new_enrolment_code(body.name, class_id, CODE_TTL).await {
        Ok(code) => (StatusCode::CREATED, Json(json!({ "code": code }))).into_response(),
        Err(crate::store::StoreError::Sqlite(e)) => {
            (StatusCode::CONFLICT, format!("{e}\n")).into_response()
        }
        Err(e) => store_error(e),
    }
}

/// `POST /api/v1/admin/devices/{id}/revoke` (local).
pub async fn revoke(AdminHub(hub): AdminHub, Path(id): Path<i64>) -> Response {
    match hub.revoke(id).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => (StatusCode::NOT_FOUND, "no such device\n").into_response(),
        Err(e) => store_error(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Password {
    password: String,
}

/// `POST /api/v1/admin/teachers/{login}/password` (local).
pub async fn set_password(
    AdminHub(hub): AdminHub,
    Path(login): Path<String>,
    JsonBody(body): JsonBody<Password>,
) -> Response {
    if body.password.chars().count() < 8 || body.password.len() > 200 {
        return (
            StatusCode::BAD_REQUEST,
            "a password has 8 to 200 characters\n",
        )
            .into_response();
    }
    let done = hub.set_password(login, body.password).await;
    match done {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => (StatusCode::NOT_FOUND, "no such teacher\n").into_response(),
        Err(e) => store_error(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    login: String,
    password: String,
}

/// `POST /api/v1/login`: a session cookie (HttpOnly, SameSite=Strict) and the CSRF
/// token to send back with every change.
pub async fn login(
    State(state): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(body): JsonBody<Login>,
) -> Response {
    let hub = match hub(&state) {
        Ok(h) => h,
        Err(r) => return r.into_response(),
    };
    if !hub.sessions.may_try(&body.login, peer.ip()) {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed sign-ins; wait 15 minutes\n",
        )
            .into_response();
    }
    let login = body.login.clone();
    let found = hub
        .store()
        .read(move |c| {
            let row: Option<(i64, Vec<u8>, Vec<u8>, u32)> = c
                .query_row(
                    "SELECT t.id, p.salt, p.hash, p.iterations FROM teachers t
                     JOIN teacher_passwords p ON p.teacher_id = t.id WHERE t.login = ?1",
                    [&login],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()?;
            let Some(row) = row else { return Ok(None) };
            let mut st = c.prepare("SELECT class_id FROM class_teachers WHERE teacher_id = ?1")?;
            let classes = st
                .query_map([row.0], |r| r.get::<_, i64>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some((row, classes)))
        })
        .await;
    let found = match found {
        Ok(f) => f,
        Err(e) => return store_error(e),
    };
    let password = body.password;
    let verified = match found {
        Some(((id, salt, hash, iterations), classes)) => tokio::task::spawn_blocking(move || {
            auth::verify_password(&password, &salt, &hash, iterations).then_some((id, classes))
        })
        .await
        .ok()
        .flatten(),
        None => None,
    };
    let Some((id, classes)) = verified else {
        hub.sessions.failed(&body.login, peer.ip());
        return (StatusCode::UNAUTHORIZED, "wrong login or password\n").into_response();
    };
    let (cookie, session) = hub.sessions.open(id, &body.login, classes);
    (
        [(
            header::SET_COOKIE,
            format!(
                "{COOKIE}={cookie}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
                auth::SESSION_TTL.as_secs()
            ),
        )],
        Json(json!({ "login": session.login, "csrf": session.csrf, "classes": session.classes })),
    )
        .into_response()
}

/// `POST /api/v1/logout`.
pub async fn logout(State(state): State<WebState>, headers: HeaderMap) -> Response {
    if let (Some(hub), Some(c)) = (state.hub.as_ref(), cookie(&headers)) {
        hub.sessions.close(c);
    }
    (
        [(
            header::SET_COOKIE,
            format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
        )],
        StatusCode::NO_CONTENT,
    )
        .into_response()
}

/// A signed-in teacher of `class` (with the CSRF token when `changes`).
fn class_teacher(
    state: &WebState,
    headers: &HeaderMap,
    class: i64,
    changes: bool,
) -> Result<(Arc<Hub>, Session), Refusal> {
    let h = hub(state)?;
    let s = teacher(&h, headers, changes)?;
    allowed_class(&s, class)?;
    Ok((h, s))
}

fn allowed_class(session: &Session, class: i64) -> Result<(), Refusal> {
    if session.classes.contains(&class) {
        Ok(())
    } else {
        Err((StatusCode::FORBIDDEN, "not one of your classes\n"))
    }
}

/// `GET /api/v1/classes/{id}/devices`: the tiles of one of the teacher's classes.
pub async fn class_devices(
    State(state): State<WebState>,
    headers: HeaderMap,
    Path(class): Path<i64>,
) -> Response {
    let checked = class_teacher(&state, &headers, class, false).map(|(h, _)| h);
    match checked {
        Ok(h) => Json(h.tiles(Some(class))).into_response(),
        Err(r) => r.into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Command {
    action: Action,
    /// Some of the class's tablets; all of them when absent.
    #[serde(default)]
    devices: Option<Vec<i64>>,
    /// Or the tablets of one of the class's level groups.
    #[serde(default)]
    group: Option<i64>,
}

/// `POST /api/v1/classes/{id}/commands`: fan out now, answer once it is stored.
pub async fn class_command(
    State(state): State<WebState>,
    headers: HeaderMap,
    Path(class): Path<i64>,
    JsonBody(body): JsonBody<Command>,
) -> Response {
    let checked = class_teacher(&state, &headers, class, true);
    let (hub, session) = match checked {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let targets = match (&body.devices, body.group) {
        (Some(_), Some(_)) => {
            return (
                StatusCode::BAD_REQUEST,
                "either devices or group, not both\n",
            )
                .into_response();
        }
        (None, Some(group)) => {
            let members = state
                .store
                .read(move |c| {
                    let mut st = c.prepare(
                        "SELECT m.pupil_id FROM pupil_group_members m
                         JOIN pupil_groups g ON g.id = m.group_id
                         WHERE g.id = ?1 AND g.class_id = ?2",
                    )?;
                    let v = st
                        .query_map(params![group, class], |r| r.get::<_, i64>(0))?
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(v)
                })
                .await;
            match members {
                Ok(m) => hub.used_by(class, &m),
                Err(e) => return store_error(e),
            }
        }
        (None, None) => hub.tiles(Some(class)).iter().map(|t| t.id).collect(),
        (Some(ids), None) => {
            let mine = hub.in_class(class, ids);
            if mine.len() != ids.len() {
                return (
                    StatusCode::FORBIDDEN,
                    "some of these tablets are not in this class\n",
                )
                    .into_response();
            }
            mine
        }
    };
    let (id, persist) = hub.command(&targets, body.action.clone());
    hub.tag_command(id, class);
    tracing::info!(teacher = session.login, class, command = id, devices = targets.len(), action = ?body.action, "class command");
    if let Err(e) = persist.await {
        return store_error(e);
    }
    let status = hub.command_status(id).unwrap_or_default();
    (
        StatusCode::ACCEPTED,
        Json(json!({ "command": id, "status": status })),
    )
        .into_response()
}

/// `GET /api/v1/commands/{id}`: who acknowledged (for a signed-in teacher).
pub async fn command_status(
    State(state): State<WebState>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Response {
    let checked = hub(&state).and_then(|h| {
        let session = teacher(&h, &headers, false)?;
        let status = h
            .command_status(id)
            .ok_or((StatusCode::NOT_FOUND, "no such command\n"))?;
        match status.class {
            Some(class) => allowed_class(&session, class)?,
            None => return Err((StatusCode::FORBIDDEN, "not one of your commands\n")),
        }
        Ok(status)
    });
    match checked {
        Ok(s) => Json(s).into_response(),
        Err(r) => r.into_response(),
    }
}

/// `POST /api/v1/admin/import` (local): a CSV of classes, teachers or pupils, as
/// `text/csv` (which no cross-site form can send).
pub async fn import(
    State(state): State<WebState>,
    _admin: AdminHub,
    headers: HeaderMap,
    body: String,
) -> Response {
    let csv = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/csv"));
    if !csv {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the file as text/csv\n",
        )
            .into_response();
    }
    if body.len() > 4 << 20 {
        return (StatusCode::PAYLOAD_TOO_LARGE, "at most 4 MiB per file\n").into_response();
    }
    match crate::store::import::import_csv(&state.store, body).await {
        Ok((kind, rows)) => (
            StatusCode::OK,
            Json(json!({ "kind": format!("{kind:?}").to_lowercase(), "rows": rows })),
        )
            .into_response(),
        Err(crate::store::import::ImportError::Store(e)) => {
            tracing::error!(error = e, "import failed in the store");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the store cannot do it now\n",
            )
                .into_response()
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            format!("{e}\nnothing was imported\n"),
        )
            .into_response(),
    }
}

/// `GET /api/v1/classes`: the signed-in teacher's classes.
pub async fn classes(State(state): State<WebState>, headers: HeaderMap) -> Response {
    let session = match hub(&state).and_then(|h| teacher(&h, &headers, false)) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let ids = session.classes.clone();
    let rows = state
        .store
        .read(move |c| {
            let mut out = Vec::new();
            let mut st = c.prepare_cached("SELECT id, name, level FROM classes WHERE id = ?1")?;
            for id in ids {
                if let Some(row) = st
                    .query_row([id], |r| {
                        Ok(json!({ "id": r.get::<_, i64>(0)?, "name": r.get::<_, String>(1)?, "level": r.get::<_, String>(2)? }))
                    })
                    .optional()?
                {
                    out.push(row);
                }
            }
            Ok(out)
        })
        .await;
    match rows {
        Ok(r) => Json(r).into_response(),
        Err(e) => store_error(e),
    }
}

/// `GET /api/v1/classes/{id}/events`: server-sent events, one `tiles` event with every
/// tile of the class whenever one changes (connection, state, ack), at most every
/// 100 ms.
pub async fn class_events(
    State(state): State<WebState>,
    headers: HeaderMap,
    Path(class): Path<i64>,
) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let checked = class_teacher(&state, &headers, class, false).map(|(h, _)| h);
    let hub = match checked {
        Ok(h) => h,
        Err(r) => return r.into_response(),
    };
    let rx = hub.subscribe();
    let stream =
        futures_util::stream::unfold((hub, rx, true), move |(hub, mut rx, first)| async move {
            if !first {
                loop {
                    match rx.recv().await {
                        Ok(c) if c == class => break,
                        Ok(_) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    }
                }
                // Coalesce a burst (30 acks arrive within milliseconds).
                tokio::time::sleep(Duration::from_millis(100)).await;
                while rx.try_recv().is_ok() {}
            }
            let tiles = serde_json::to_string(&hub.tiles(Some(class))).unwrap_or_default();
            let event: Result<Event, std::convert::Infallible> =
                Ok(Event::default().event("tiles").data(tiles));
            Some((event, (hub, rx, false)))
        });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// `GET /api/v1/classes/{id}/pupils`: the class's pupils, with today's attendance.
pub async fn class_pupils(
    State(state): State<WebState>,
    headers: HeaderMap,
    Path(class): Path<i64>,
) -> Response {
    if let Err(r) = class_teacher(&state, &headers, class, false).map(|_| ()) {
        return r.into_response();
    }
    let day = today();
    let rows = state
        .store
        .read(move |c| {
            let mut st = c.prepare(
                "SELECT p.id, p.first_name, p.last_name, a.present FROM pupils p
                 LEFT JOIN attendance a ON a.pupil_id = p.id AND a.class_id = p.class_id AND a.day = ?2
                 WHERE p.class_id = ?1 ORDER BY p.last_name, p.first_name",
            )?;
            let rows = st
                .query_map(params![class, day], |r| {
                    Ok(json!({
                        "id": r.get::<_, i64>(0)?,
                        "first_name": r.get::<_, String>(1)?,
                        "last_name": r.get::<_, String>(2)?,
                        "saved_present": r.get::<_, Option<i64>>(3)?.map(|p| p != 0),
                    }))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await;
    match rows {
        Ok(r) => Json(r).into_response(),
        Err(e) => store_error(e),
    }
}

fn today() -> String {
    jiff::Zoned::now().date().to_string()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attendance {
    /// The pupils present; every other pupil of the class is absent.
    present: Vec<i64>,
}

/// `POST /api/v1/classes/{id}/attendance`: saved, and an outbox event per pupil in
/// the same transaction.
pub async fn save_attendance(
    State(state): State<WebState>,
    headers: HeaderMap,
    Path(class): Path<i64>,
    JsonBody(body): JsonBody<Attendance>,
) -> Response {
    let session = match class_teacher(&state, &headers, class, true).map(|(_, s)| s) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let day = today();
    let saved = state
        .store
        .write(move |t| {
            let class_name: String =
                t.query_row("SELECT name FROM classes WHERE id = ?1", [class], |r| {
                    r.get(0)
                })?;
            let pupils: Vec<(i64, String)> = t
                .prepare(
                    "SELECT id, first_name || ' ' || last_name FROM pupils WHERE class_id = ?1",
                )?
                .query_map([class], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            let now = crate::base::clock::unix_now();
            for (id, name) in &pupils {
                let present = body.present.contains(id);
                t.execute(
                    "INSERT INTO attendance(class_id, day, pupil_id, present, teacher, saved_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT(class_id, day, pupil_id) DO UPDATE SET present = excluded.present,
                       teacher = excluded.teacher, saved_at = excluded.saved_at",
                    params![class, day, id, present, session.login, now],
                )?;
                crate::store::outbox::append(
                    t,
                    now,
                    &cartable_protocol::events::EventBody::Attendance {
                        class: class_name.clone(),
                        pupil: name.clone(),
                        present,
                    },
                )?;
            }
            Ok(pupils.len())
        })
        .await;
    match saved {
        Ok(n) => Json(json!({ "saved": n })).into_response(),
        Err(e) => store_error(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assign {
    pupil: Option<i64>,
}

/// `POST /api/v1/admin/devices/{id}/pupil` (local): the tablet's pupil, of its class.
pub async fn assign(
    AdminHub(hub): AdminHub,
    Path(id): Path<i64>,
    JsonBody(body): JsonBody<Assign>,
) -> Response {
    match hub.assign(id, body.pupil).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => (
            StatusCode::BAD_REQUEST,
            "no such pupil in this tablet's class\n",
        )
            .into_response(),
        Err(e) => store_error(e),
    }
}

/// `GET /api/v1/session`: the signed-in teacher and the CSRF token, for a page that
/// was reloaded (the token is readable only by the box's own pages).
pub async fn session(State(state): State<WebState>, headers: HeaderMap) -> Response {
    match hub(&state).and_then(|h| teacher(&h, &headers, false)) {
        Ok(s) => {
            Json(json!({ "login": s.login, "csrf": s.csrf, "classes": s.classes })).into_response()
        }
        Err(r) => r.into_response(),
    }
}

/// `GET /api/v1/classes/{id}/cards`: a printable page of the class's QR cards.
pub async fn class_cards(
    State(state): State<WebState>,
    headers: HeaderMap,
    Path(class): Path<i64>,
) -> Response {
    let hub = match class_teacher(&state, &headers, class, false).map(|(h, _)| h) {
        Ok(h) => h,
        Err(r) => return r.into_response(),
    };
    let rows = state
        .store
        .read(move |c| {
            let name: String =
                c.query_row("SELECT name FROM classes WHERE id = ?1", [class], |r| {
                    r.get(0)
                })?;
            let mut st = c.prepare(
                "SELECT id, first_name, last_name, card_generation FROM pupils
                 WHERE class_id = ?1 ORDER BY last_name, first_name",
            )?;
            let pupils = st
                .query_map([class], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok((name, pupils))
        })
        .await;
    let (class_name, pupils) = match rows {
        Ok(r) => r,
        Err(e) => return store_error(e),
    };
    let esc = crate::web::blockpage::escape;
    let mut html = format!(
        "<!doctype html><html lang=\"fr\"><head><meta charset=\"utf-8\"><title>Cartes — {0}</title>\
         <style>body{{font-family:system-ui,sans-serif}}.cards{{display:grid;grid-template-columns:repeat(3,1fr);gap:12px}}\
         .card{{border:1px dashed #888;padding:10px;text-align:center;break-inside:avoid}}.card svg{{width:160px;height:160px}}\
         .name{{font-size:1.3rem;font-weight:bold}}</style></head><body><h1>{0}</h1><div class=\"cards\">",
        esc(&class_name)
    );
    for (id, first, last, generation) in pupils {
        let token = hub.cards.token(id, generation);
        html.push_str(&format!(
            "<div class=\"card\" data-pupil=\"{id}\" data-card=\"{}\"><div class=\"name\">{} {}</div>{}</div>",
            esc(&token),
            esc(&first),
            esc(&last),
            super::cards::qr_svg(&token)
        ));
    }
    html.push_str("</div></body></html>");
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

/// `POST /api/v1/classes/{id}/pupils/{pupil}/revoke-card`: every printed copy of
/// the pupil's card stops working; the next page of cards has a new one.
pub async fn revoke_card(
    State(state): State<WebState>,
    headers: HeaderMap,
    Path((class, pupil)): Path<(i64, i64)>,
) -> Response {
    if let Err(r) = class_teacher(&state, &headers, class, true).map(|_| ()) {
        return r.into_response();
    }
    let done = state
        .store
        .write(move |t| {
            Ok(t.execute(
                "UPDATE pupils SET card_generation = card_generation + 1 WHERE id = ?1 AND class_id = ?2",
                params![pupil, class],
            )?)
        })
        .await;
    match done {
        Ok(1) => StatusCode::NO_CONTENT.into_response(),
        Ok(_) => (StatusCode::NOT_FOUND, "no such pupil in this class\n").into_response(),
        Err(e) => store_error(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    name: String,
    pupils: Vec<i64>,
}

/// `POST /api/v1/classes/{id}/groups`: a level group (created or replaced by name)
/// from pupils of the class.
pub async fn save_group(
    State(state): State<WebState>,
    headers: HeaderMap,
    Path(class): Path<i64>,
    JsonBody(body): JsonBody<Group>,
) -> Response {
    if let Err(r) = class_teacher(&state, &headers, class, true).map(|_| ()) {
        return r.into_response();
    }
    if body.name.trim().is_empty() || body.name.len() > 100 {
        return (StatusCode::BAD_REQUEST, "name: 1 to 100 characters\n").into_response();
    }
    let saved = state
        .store
        .write(move |t| {
            for p in &body.pupils {
                let ok: i64 = t.query_row(
                    "SELECT count(*) FROM pupils WHERE id = ?1 AND class_id = ?2",
                    params![p, class],
                    |r| r.get(0),
                )?;
                if ok == 0 {
                    return Ok(None);
                }
            }
            t.execute(
                "INSERT INTO pupil_groups(class_id, name) VALUES (?1, ?2) ON CONFLICT(class_id, name) DO NOTHING",
                params![class, body.name],
            )?;
            let id: i64 = t.query_row(
                "SELECT id FROM pupil_groups WHERE class_id = ?1 AND name = ?2",
                params![class, body.name],
                |r| r.get(0),
            )?;
            t.execute("DELETE FROM pupil_group_members WHERE group_id = ?1", [id])?;
            for p in &body.pupils {
                t.execute(
                    "INSERT OR IGNORE INTO pupil_group_members(group_id, pupil_id) VALUES (?1, ?2)",
                    params![id, p],
                )?;
            }
            Ok(Some(id))
        })
        .await;
    match saved {
        Ok(Some(id)) => (StatusCode::CREATED, Json(json!({ "group": id }))).into_response(),
        Ok(None) => (
            StatusCode::BAD_REQUEST,
            "every pupil must be of this class\n",
        )
            .into_response(),
        Err(e) => store_error(e),
    }
}

/// `GET /api/v1/classes/{id}/groups`: the class's groups and their pupils.
pub async fn groups(
    State(state): State<WebState>,
    headers: HeaderMap,
    Path(class): Path<i64>,
) -> Response {
    if let Err(r) = class_teacher(&state, &headers, class, false).map(|_| ()) {
        return r.into_response();
    }
    let rows = state
        .store
        .read(move |c| {
            let mut st = c.prepare(
                "SELECT g.id, g.name, group_concat(m.pupil_id) FROM pupil_groups g
                 LEFT JOIN pupil_group_members m ON m.group_id = g.id
                 WHERE g.class_id = ?1 GROUP BY g.id ORDER BY g.name",
            )?;
            let v = st
                .query_map([class], |r| {
                    let members: Option<String> = r.get(2)?;
                    let pupils: Vec<i64> = members
                        .unwrap_or_default()
                        .split(',')
                        .filter_map(|x| x.parse().ok())
                        .collect();
                    Ok(json!({ "id": r.get::<_, i64>(0)?, "name": r.get::<_, String>(1)?, "pupils": pupils }))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(v)
        })
        .await;
    match rows {
        Ok(r) => Json(r).into_response(),
        Err(e) => store_error(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScreenTime {
    /// A level group of the class; the whole class when absent.
    #[serde(default)]
    group: Option<i64>,
    /// 0: no daily limit.
    minutes_per_day: u32,
    days: Vec<crate::base::clock::Days>,
    from: crate::base::clock::ClockTime,
    to: crate::base::clock::ClockTime,
}

/// `POST /api/v1/classes/{id}/screen-time`: the rule of the class or of one of its
/// groups (replaces the previous one).
pub async fn set_screen_time(
    State(state): State<WebState>,
    headers: HeaderMap,
    Path(class): Path<i64>,
    JsonBody(body): JsonBody<ScreenTime>,
) -> Response {
    if let Err(r) = class_teacher(&state, &headers, class, true).map(|_| ()) {
        return r.into_response();
    }
    if body.days.is_empty() || body.minutes_per_day > 24 * 60 {
        return (
            StatusCode::BAD_REQUEST,
            "days must list some days; minutes_per_day at most 1440\n",
        )
            .into_response();
    }
    let days = body
        .days
        .iter()
        .map(|d| String::from(*d))
        .collect::<Vec<_>>()
        .join(",");
    let (from, to) = (String::from(body.from), String::from(body.to));
    let group = body.group.unwrap_or(0);
    let saved = state
        .store
        .write(move |t| {
            if group != 0 {
                let ok: i64 = t.query_row(
                    "SELECT count(*) FROM pupil_groups WHERE id = ?1 AND class_id = ?2",
                    params![group, class],
                    |r| r.get(0),
                )?;
                if ok == 0 {
                    return Ok(false);
                }
            }
            t.execute(
                "INSERT INTO screen_time(class_id, group_id, minutes_per_day, days, from_time, to_time)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(class_id, group_id) DO UPDATE SET minutes_per_day = excluded.minutes_per_day,
                   days = excluded.days, from_time = excluded.from_time, to_time = excluded.to_time",
                params![class, group, body.minutes_per_day, days, from, to],
            )?;
            Ok(true)
        })
        .await;
    match saved {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => (StatusCode::BAD_REQUEST, "no such group in this class\n").into_response(),
        Err(e) => store_error(e),
    }
}

/// `GET /api/v1/admin/school` (local): classes, teachers, pupils and tablets.
pub async fn school(State(state): State<WebState>, _admin: AdminHub) -> Response {
    let tiles = state
        .hub
        .as_ref()
        .map(|h| h.tiles(None))
        .unwrap_or_default();
    let rows = state
        .store
        .read(|c| {
            let all = |sql: &str, f: &dyn Fn(&rusqlite::Row<'_>) -> rusqlite::Result<serde_json::Value>| -> Result<Vec<serde_json::Value>, crate::store::StoreError> {
                let mut st = c.prepare(sql)?;
                let v = st.query_map([], |r| f(r))?.collect::<Result<Vec<_>, _>>()?;
                Ok(v)
            };
            let classes = all("SELECT id, name, level FROM classes ORDER BY name", &|r| {
                Ok(json!({ "id": r.get::<_, i64>(0)?, "name": r.get::<_, String>(1)?, "level": r.get::<_, String>(2)? }))
            })?;
            let teachers = all(
                "SELECT t.id, t.login, t.display_name, group_concat(c.name, '|'),
                        EXISTS(SELECT 1 FROM teacher_passwords p WHERE p.teacher_id = t.id)
                 FROM teachers t LEFT JOIN class_teachers ct ON ct.teacher_id = t.id
                 LEFT JOIN classes c ON c.id = ct.class_id GROUP BY t.id ORDER BY t.login",
                &|r| {
                    Ok(json!({ "id": r.get::<_, i64>(0)?, "login": r.get::<_, String>(1)?,
                        "name": r.get::<_, String>(2)?, "classes": r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                        "has_password": r.get::<_, bool>(4)? }))
                },
            )?;
            let pupils = all(
                "SELECT p.id, p.first_name, p.last_name, c.name FROM pupils p JOIN classes c ON c.id = p.class_id
                 ORDER BY c.name, p.last_name, p.first_name",
                &|r| {
                    Ok(json!({ "id": r.get::<_, i64>(0)?, "first_name": r.get::<_, String>(1)?,
                        "last_name": r.get::<_, String>(2)?, "class": r.get::<_, String>(3)? }))
                },
            )?;
            Ok((classes, teachers, pupils))
        })
        .await;
    match rows {
        Ok((classes, teachers, pupils)) => Json(
            json!({ "classes": classes, "teachers": teachers, "pupils": pupils, "devices": tiles }),
        )
        .into_response(),
        Err(e) => store_error(e),
    }
}

/// `DELETE /api/v1/admin/{kind}/{id}` (local): a class (with its pupils), a teacher
/// or a pupil.
pub async fn delete(
    State(state): State<WebState>,
    _admin: AdminHub,
    Path((kind, id)): Path<(String, i64)>,
) -> Response {
    let table = match kind.as_str() {
        "classes" => "classes",
        "teachers" => "teachers",
        "pupils" => "pupils",
        _ => return (StatusCode::NOT_FOUND, "classes, teachers or pupils\n").into_response(),
    };
    let done = state
        .store
        .write(move |t| Ok(t.execute(&format!("DELETE FROM {table} WHERE id = ?1"), [id])?))
        .await;
    match done {
        Ok(1) => {
            // The store cascaded; the hub's memory follows.
            if let Some(hub) = &state.hub {
                hub.forget(table, id);
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(_) => (StatusCode::NOT_FOUND, "not found\n").into_response(),
        Err(e) => store_error(e),
    }
}

/// Largest document a teacher can share.
const MAX_DOCUMENT: usize = 50 << 20;

fn documents_dir(state: &WebState) -> std::path::PathBuf {
    state.config.appliance.data_dir.join("documents")
}

/// A file name safe in a path and a header: letters, digits, `.`, `-`, `_`.
fn safe_name(name: &str) -> Option<String> {
    let n: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || ".-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    (!n.is_empty() && !n.starts_with('.')).then_some(n)
}

/// `POST /api/v1/classes/{id}/documents?name=fiche.pdf`: the body is the file. Stored
/// under an unguessable id (a tablet's browser opening the link carries no token);
/// answers the link to share.
pub async fn upload_document(
    State(state): State<WebState>,
    headers: HeaderMap,
    Path(class): Path<i64>,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = class_teacher(&state, &headers, class, true).map(|_| ()) {
        return r.into_response();
    }
    let Some(name) = q.get("name").and_then(|n| safe_name(n)) else {
        return (StatusCode::BAD_REQUEST, "?name=FILE is required\n").into_response();
    };
    if body.is_empty() || body.len() > MAX_DOCUMENT {
        return (StatusCode::PAYLOAD_TOO_LARGE, "1 byte to 50 MiB\n").into_response();
    }
    let id = auth::new_secret()[..32].to_string();
    let dir = documents_dir(&state).join(&id);
    let written = tokio::task::spawn_blocking({
        let (dir, name) = (dir.clone(), name.clone());
        move || -> std::io::Result<()> {
            std::fs::create_dir_all(&dir)?;
            let tmp = dir.join(".part");
            std::fs::write(&tmp, &body)?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, dir.join(name))
        }
    })
    .await;
    match written {
        Ok(Ok(())) => (
            StatusCode::CREATED,
            Json(json!({ "url": format!("/documents/{id}/{name}"), "name": name })),
        )
            .into_response(),
        _ => (
            StatusCode::INSUFFICIENT_STORAGE,
            "the document could not be stored\n",
        )
            .into_response(),
    }
}

/// `GET /documents/{id}/{name}`: a shared document.
pub async fn document(
    State(state): State<WebState>,
    Path((id, name)): Path<(String, String)>,
) -> Response {
    let valid_id = id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
    let Some(name) = safe_name(&name).filter(|n| *n == name && valid_id) else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let path = documents_dir(&state).join(id).join(&name);
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(_) => return (StatusCode::NOT_FOUND, "not found\n").into_response(),
    };
    let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let stream = tokio_util::io::ReaderStream::new(file);
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"{name}\""),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}
