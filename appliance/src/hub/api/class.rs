//! A teacher's class: its tiles and their live changes, commands to its tablets,
//! roll call, QR cards, level groups and screen-time rules. Every handler first
//! checks that the signed-in teacher teaches the class (and the CSRF token for
//! changes).

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cartable_protocol::device::Action;
use serde::Deserialize;
use serde_json::json;

use super::{HubState, allowed_class, class_teacher, teacher};
use crate::base::clock::{ClockTime, Days};
use crate::base::http::{HttpError, HttpResult, JsonBody};
use crate::store::school;

/// `GET /api/v1/classes/{id}/devices`: the tiles of one of the teacher's classes.
pub(super) async fn devices(
    State(state): State<HubState>,
    headers: HeaderMap,
    Path(class): Path<i64>,
) -> HttpResult {
    class_teacher(&state.hub, &headers, class, false).await?;
    Ok(Json(state.hub.tiles(Some(class))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Command {
    action: Action,
    /// Some of the class's tablets; all of them when absent.
    #[serde(default)]
    devices: Option<Vec<i64>>,
    /// Or the tablets of one of the class's level groups.
    #[serde(default)]
    group: Option<i64>,
}

/// `POST /api/v1/classes/{id}/commands`: fan out now, answer once it is stored.
pub(super) async fn command(
    State(state): State<HubState>,
    headers: HeaderMap,
    Path(class): Path<i64>,
    JsonBody(body): JsonBody<Command>,
) -> HttpResult {
    let hub = &state.hub;
    let session = class_teacher(hub, &headers, class, true).await?;
    let targets = match (&body.devices, body.group) {
        (Some(_), Some(_)) => {
            return Err(HttpError::bad_request("either devices or group, not both"));
        }
        (None, Some(group)) => {
            let members = hub
                .store()
                .read(move |c| school::group_members(c, group, class))
                .await?;
            hub.used_by(class, &members)
        }
        (None, None) => hub.tiles(Some(class)).iter().map(|t| t.id).collect(),
        (Some(ids), None) => {
            let mine = hub.in_class(class, ids);
            if mine.len() != ids.len() {
                return Err(HttpError::forbidden(
                    "some of these tablets are not in this class",
                ));
            }
            mine
        }
    };
    if !hub.fits(&targets, &body.action) {
        return Err(HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "this command is too large for the tablets (an allow list of a few thousand names at most)",
        ));
    }
    let (id, persist) = hub.command(&targets, body.action.clone());
    hub.tag_command(id, class);
    tracing::info!(teacher = session.login, class, command = id, devices = targets.len(), action = ?body.action, "class command");
    persist.await?;
    let status = hub.command_status(id).unwrap_or_default();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "command": id, "status": status })),
    )
        .into_response())
}

/// `GET /api/v1/commands/{id}`: who acknowledged (for a teacher of its class).
pub(super) async fn command_status(
    State(state): State<HubState>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> HttpResult {
    let session = teacher(&state.hub, &headers, false).await?;
    let status = state
        .hub
        .command_status(id)
        .ok_or(HttpError::not_found("no such command"))?;
    match status.class {
        Some(class) => allowed_class(&session, class)?,
        None => return Err(HttpError::forbidden("not one of your commands")),
    }
    Ok(Json(status).into_response())
}

/// `GET /api/v1/classes/{id}/events`: server-sent events, one `tiles` event with every
/// tile of the class whenever one changes (connection, state, ack), at most every
/// 100 ms.
pub(super) async fn events(
    State(state): State<HubState>,
    headers: HeaderMap,
    Path(class): Path<i64>,
) -> HttpResult {
    use axum::response::sse::{Event, KeepAlive, Sse};
    class_teacher(&state.hub, &headers, class, false).await?;
    let hub = state.hub;
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
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// `GET /api/v1/classes/{id}/pupils`: the class's pupils, with today's attendance.
pub(super) async fn pupils(
    State(state): State<HubState>,
    headers: HeaderMap,
    Path(class): Path<i64>,
) -> HttpResult {
    class_teacher(&state.hub, &headers, class, false).await?;
    let day = state.clock.today();
    let rows = state
        .hub
        .store()
        .read(move |c| school::pupils_with_attendance(c, class, &day))
        .await?;
    Ok(Json(rows).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Attendance {
    /// The pupils present; every other pupil of the class is absent.
    present: Vec<i64>,
}

/// `POST /api/v1/classes/{id}/attendance`: saved, and an outbox event per pupil in
/// the same transaction.
pub(super) async fn save_attendance(
    State(state): State<HubState>,
    headers: HeaderMap,
    Path(class): Path<i64>,
    JsonBody(body): JsonBody<Attendance>,
) -> HttpResult {
    let session = class_teacher(&state.hub, &headers, class, true).await?;
    let (day, now) = (state.clock.today(), state.clock.unix());
    let saved = state
        .hub
        .store()
        .write(move |t| school::save_attendance(t, class, &day, &body.present, &session.login, now))
        .await?;
    Ok(Json(json!({ "saved": saved })).into_response())
}

#[derive(Deserialize)]
pub(super) struct HistoryParams {
    /// First day, `YYYY-MM-DD` (default: 30 days before `to`).
    from: Option<String>,
    /// Last day (default: today).
    to: Option<String>,
    /// `csv` for a spreadsheet; JSON otherwise.
    format: Option<String>,
}

/// A day as the roll calls store it, or why not.
fn day_param(name: &str, value: Option<String>, default: String) -> Result<String, HttpError> {
    let v = value.filter(|v| !v.is_empty()).unwrap_or(default);
    match v.parse::<jiff::civil::Date>() {
        Ok(d) => Ok(d.to_string()),
        Err(_) => Err(HttpError::bad_request(format!(
            "{name}: `{v}` is not a date (YYYY-MM-DD)"
        ))),
    }
}

/// `GET /api/v1/classes/{id}/attendance[?from=&to=][&format=csv]`: the saved roll
/// calls, for the class's teachers (names stay in the school: this is not sent on).
pub(super) async fn attendance_history(
    State(state): State<HubState>,
    headers: HeaderMap,
    Path(class): Path<i64>,
    axum::extract::Query(q): axum::extract::Query<HistoryParams>,
) -> HttpResult {
    class_teacher(&state.hub, &headers, class, false).await?;
    let today = state.clock.today();
    let to = day_param("to", q.to, today.clone())?;
    let month_ago = today
        .parse::<jiff::civil::Date>()
        .ok()
        .and_then(|d| d.checked_sub(jiff::Span::new().days(30)).ok())
        .map_or(today, |d| d.to_string());
    let from = day_param("from", q.from, month_ago)?;
    let rows = state
        .hub
        .store()
        .read(move |c| school::attendance_history(c, class, &from, &to))
        .await?;
    if q.format.as_deref() != Some("csv") {
        return Ok(Json(rows).into_response());
    }
    let mut csv = String::from("day,pupil,present,teacher\r\n");
    for r in &rows {
        let cell = |s: &str| {
            // Quoted, and never read as a formula by a spreadsheet.
            let s = if s.starts_with(['=', '+', '-', '@']) {
                format!("'{s}")
            } else {
                s.to_string()
            };
            format!("\"{}\"", s.replace('"', "\"\""))
        };
        csv.push_str(&format!(
            "{},{},{},{}\r\n",
            r.day,
            cell(&r.pupil),
            if r.present { 1 } else { 0 },
            cell(&r.teacher)
        ));
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"appel.csv\"",
            ),
        ],
        csv,
    )
        .into_response())
}

/// `GET /api/v1/classes/{id}/cards`: a printable page of the class's QR cards.
pub(super) async fn cards(
    State(state): State<HubState>,
    headers: HeaderMap,
    Path(class): Path<i64>,
) -> HttpResult {
    class_teacher(&state.hub, &headers, class, false).await?;
    let (class_name, pupils) = state
        .hub
        .store()
        .read(move |c| school::cards(c, class))
        .await?;
    let html = super::super::cards::page(&state.hub.cards, &state.school, &class_name, &pupils);
    Ok((
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
        .into_response())
}

/// `POST /api/v1/classes/{id}/pupils/{pupil}/revoke-card`: every printed copy of
/// the pupil's card stops working; the next page of cards has a new one.
pub(super) async fn revoke_card(
    State(state): State<HubState>,
    headers: HeaderMap,
    Path((class, pupil)): Path<(i64, i64)>,
) -> HttpResult {
    class_teacher(&state.hub, &headers, class, true).await?;
    let done = state
        .hub
        .store()
        .write(move |t| school::revoke_card(t, class, pupil))
        .await?;
    if !done {
        return Err(HttpError::not_found("no such pupil in this class"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Group {
    name: String,
    pupils: Vec<i64>,
}

/// `POST /api/v1/classes/{id}/groups`: a level group (created or replaced by name)
/// from pupils of the class.
pub(super) async fn save_group(
    State(state): State<HubState>,
    headers: HeaderMap,
    Path(class): Path<i64>,
    JsonBody(body): JsonBody<Group>,
) -> HttpResult {
    class_teacher(&state.hub, &headers, class, true).await?;
    if body.name.trim().is_empty() || body.name.len() > 100 {
        return Err(HttpError::bad_request("name: 1 to 100 characters"));
    }
    let saved = state
        .hub
        .store()
        .write(move |t| school::save_group(t, class, &body.name, &body.pupils))
        .await?;
    match saved {
        Some(id) => Ok((StatusCode::CREATED, Json(json!({ "group": id }))).into_response()),
        None => Err(HttpError::bad_request("every pupil must be of this class")),
    }
}

/// `GET /api/v1/classes/{id}/groups`: the class's groups and their pupils.
pub(super) async fn groups(
    State(state): State<HubState>,
    headers: HeaderMap,
    Path(class): Path<i64>,
) -> HttpResult {
    class_teacher(&state.hub, &headers, class, false).await?;
    let rows = state
        .hub
        .store()
        .read(move |c| school::groups(c, class))
        .await?;
    Ok(Json(rows).into_response())
}

#[derive(Deserialize)]
pub(super) struct GroupParam {
    group: Option<i64>,
}

/// `GET /api/v1/classes/{id}/screen-time[?group=G]`: the rule saved for the class or
/// one of its groups, as the form shows it; with none saved, no limit on school days
/// (`saved` false).
pub(super) async fn get_screen_time(
    State(state): State<HubState>,
    headers: HeaderMap,
    Path(class): Path<i64>,
    axum::extract::Query(q): axum::extract::Query<GroupParam>,
) -> HttpResult {
    class_teacher(&state.hub, &headers, class, false).await?;
    let group = q.group.unwrap_or(0);
    let row = state
        .hub
        .store()
        .read(move |c| school::screen_time(c, class, group))
        .await?;
    let body = match row {
        Some((minutes, days, from, to)) => json!({
            "saved": true, "minutes_per_day": minutes,
            "days": days.split(',').filter(|d| !d.is_empty()).collect::<Vec<_>>(),
            "from": from, "to": to,
        }),
        None => json!({
            "saved": false, "minutes_per_day": 0,
            "days": ["mon", "tue", "wed", "thu", "fri"], "from": "08:00", "to": "17:00",
        }),
    };
    Ok(Json(body).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScreenTime {
    /// A level group of the class; the whole class when absent.
    #[serde(default)]
    group: Option<i64>,
    /// 0: no daily limit.
    minutes_per_day: u32,
    days: Vec<Days>,
    from: ClockTime,
    to: ClockTime,
}

/// `POST /api/v1/classes/{id}/screen-time`: the rule of the class or of one of its
/// groups (replaces the previous one).
pub(super) async fn set_screen_time(
    State(state): State<HubState>,
    headers: HeaderMap,
    Path(class): Path<i64>,
    JsonBody(body): JsonBody<ScreenTime>,
) -> Result<Response, HttpError> {
    class_teacher(&state.hub, &headers, class, true).await?;
    if body.days.is_empty() || body.minutes_per_day > 24 * 60 {
        return Err(HttpError::bad_request(
            "days must list some days; minutes_per_day at most 1440",
        ));
    }
    let days = body
        .days
        .iter()
        .map(|d| String::from(*d))
        .collect::<Vec<_>>()
        .join(",");
    let (from, to) = (String::from(body.from), String::from(body.to));
    let (group, minutes_per_day) = (body.group.unwrap_or(0), body.minutes_per_day);
    let saved = state
        .hub
        .store()
        .write(move |t| {
            school::set_screen_time(
                t,
                &school::ScreenTimeRow {
                    class,
                    group,
                    minutes_per_day,
                    days: &days,
                    from: &from,
                    to: &to,
                },
            )
        })
        .await?;
    if !saved {
        return Err(HttpError::bad_request("no such group in this class"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
