//! Teachers signing in and out, and what a signed-in teacher may list.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{COOKIE, HubState, cookie, teacher};
use crate::base::http::{HttpError, HttpResult, JsonBody};
use crate::hub::auth;
use crate::store::school;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Login {
    login: String,
    password: String,
}

/// `POST /api/v1/login`: a session cookie (HttpOnly, SameSite=Strict) and the CSRF
/// token to send back with every change.
pub(super) async fn login(
    State(state): State<HubState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(body): JsonBody<Login>,
) -> HttpResult {
    let hub = &state.hub;
    if !hub.sessions.may_try(&body.login, peer.ip()) {
        return Err(HttpError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed sign-ins; wait 15 minutes",
        ));
    }
    let login = body.login.clone();
    let found = hub
        .store()
        .read(move |c| school::credentials(c, &login))
        .await?;
    let password = body.password;
    let verified = match found {
        Some(cred) => tokio::task::spawn_blocking(move || {
            auth::verify_password(&password, &cred.salt, &cred.hash, cred.iterations)
                .then_some((cred.teacher_id, cred.classes))
        })
        .await
        .ok()
        .flatten(),
        None => None,
    };
    let Some((id, classes)) = verified else {
        hub.sessions.failed(&body.login, peer.ip());
        return Err(HttpError::new(
            StatusCode::UNAUTHORIZED,
            "wrong login or password",
        ));
    };
    let (cookie, session) = hub.sessions.open(id, &body.login, classes);
    Ok((
        [(
            header::SET_COOKIE,
            format!(
                "{COOKIE}={cookie}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
                auth::SESSION_TTL.as_secs()
            ),
        )],
        Json(json!({ "login": session.login, "csrf": session.csrf, "classes": session.classes })),
    )
        .into_response())
}

/// `POST /api/v1/logout`.
pub(super) async fn logout(State(state): State<HubState>, headers: HeaderMap) -> Response {
    if let Some(c) = cookie(&headers) {
        state.hub.sessions.close(c);
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

/// `GET /api/v1/session`: the signed-in teacher and the CSRF token, for a page that
/// was reloaded (the token is readable only by the box's own pages).
pub(super) async fn session(State(state): State<HubState>, headers: HeaderMap) -> HttpResult {
    let s = teacher(&state.hub, &headers, false)?;
    Ok(Json(json!({ "login": s.login, "csrf": s.csrf, "classes": s.classes })).into_response())
}

/// `GET /api/v1/classes`: the signed-in teacher's classes.
pub(super) async fn classes(State(state): State<HubState>, headers: HeaderMap) -> HttpResult {
    let session = teacher(&state.hub, &headers, false)?;
    let ids = session.classes;
    let rows = state
        .hub
        .store()
        .read(move |c| school::classes(c, &ids))
        .await?;
    Ok(Json(rows).into_response())
}
