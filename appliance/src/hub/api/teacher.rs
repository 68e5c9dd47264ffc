//! Teachers signing in and out, and what a signed-in teacher may list.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use super::{COOKIE, HubState, cookie, csrf_sent, not_waiting, teacher};
use crate::base::http::{HttpError, HttpResult, JsonBody};
use crate::hub::auth;
use crate::store::school;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Login {
    login: String,
    password: String,
}

/// Longest login and password read (the import's names are at most 64 bytes).
const MAX_LOGIN: usize = 64;
const MAX_PASSWORD: usize = 200;

/// `POST /api/v1/login`: a session cookie (HttpOnly, SameSite=Strict) and the CSRF
/// token to send back with every change. An address that guesses waits longer at
/// each failure; an unknown login costs the time a known one does.
pub(super) async fn login(
    State(state): State<HubState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(body): JsonBody<Login>,
) -> HttpResult {
    let hub = &state.hub;
    if body.login.len() > MAX_LOGIN || body.password.len() > MAX_PASSWORD {
        return Err(HttpError::bad_request(
            "a login has at most 64 bytes, a password at most 200",
        ));
    }
    not_waiting(&hub.limits.sign_in, peer.ip())?;
    let login = body.login.clone();
    let (admin, teacher) = hub
        .store()
        .read(move |c| {
            Ok((
                school::admin_credentials(c, &login)?,
                school::credentials(c, &login)?,
            ))
        })
        .await?;
    let password = body.password;
    // The account decides the role: an admin's login opens an admin session.
    let verified = tokio::task::spawn_blocking(move || match (admin, teacher) {
        (Some(a), _) => auth::verify_password(&password, &a.salt, &a.hash, a.iterations)
            .then_some(Role::Admin(a.admin_id)),
        (None, Some(cred)) => {
            auth::verify_password(&password, &cred.salt, &cred.hash, cred.iterations)
                .then_some(Role::Teacher(cred.teacher_id, cred.classes))
        }
        (None, None) => {
            let (salt, hash) = auth::decoy();
            let _ = auth::verify_password(&password, salt, hash, auth::PBKDF2_ITERATIONS);
            None
        }
    })
    .await
    .ok()
    .flatten();
    let Some(role) = verified else {
        hub.limits.sign_in.failed(peer.ip()).await;
        return Err(HttpError::new(
            StatusCode::UNAUTHORIZED,
            "wrong login or password",
        ));
    };
    hub.limits.sign_in.succeeded(peer.ip()).await;
    let (id, classes) = match role {
        Role::Teacher(id, classes) => (id, classes),
        Role::Admin(id) => {
            let (cookie, session) = hub.sessions.open_admin(id, &body.login).await?;
            return Ok((
                [(header::SET_COOKIE, session_cookie(&cookie))],
                Json(json!({ "login": session.login, "csrf": session.csrf, "role": "admin" })),
            )
                .into_response());
        }
    };
    let (cookie, session) = hub.sessions.open(id, &body.login, classes).await?;
    Ok((
        [(header::SET_COOKIE, session_cookie(&cookie))],
        Json(json!({ "login": session.login, "csrf": session.csrf, "classes": session.classes, "role": "teacher" })),
    )
        .into_response())
}

/// Who signed in.
enum Role {
    Teacher(i64, Vec<i64>),
    Admin(i64),
}

fn session_cookie(cookie: &str) -> String {
    format!(
        "{COOKIE}={cookie}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        auth::SESSION_TTL.as_secs()
    )
}

/// `POST /api/v1/logout`: with the CSRF token, like every change (a page of another
/// site must not sign a teacher out).
pub(super) async fn logout(State(state): State<HubState>, headers: HeaderMap) -> HttpResult {
    let admin = match cookie(&headers) {
        Some(c) => state.hub.sessions.get_admin(c).await?,
        None => None,
    };
    match admin {
        Some(a) => csrf_sent(&headers, &a.csrf)?,
        None => {
            teacher(&state.hub, &headers, true).await?;
        }
    }
    if let Some(c) = cookie(&headers) {
        state.hub.sessions.close(c).await?;
    }
    Ok((
        [(
            header::SET_COOKIE,
            format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
        )],
        StatusCode::NO_CONTENT,
    )
        .into_response())
}

/// `GET /api/v1/session`: the signed-in teacher and the CSRF token, for a page that
/// was reloaded (the token is readable only by the box's own pages).
pub(super) async fn session(State(state): State<HubState>, headers: HeaderMap) -> HttpResult {
    if let Some(c) = cookie(&headers)
        && let Some(a) = state.hub.sessions.get_admin(c).await?
    {
        return Ok(
            Json(json!({ "login": a.login, "csrf": a.csrf, "role": "admin" })).into_response(),
        );
    }
    let s = teacher(&state.hub, &headers, false).await?;
    Ok(Json(json!({ "login": s.login, "csrf": s.csrf, "classes": s.classes })).into_response())
}

/// `GET /api/v1/classes`: the signed-in teacher's classes.
pub(super) async fn classes(State(state): State<HubState>, headers: HeaderMap) -> HttpResult {
    let session = teacher(&state.hub, &headers, false).await?;
    let ids = session.classes;
    let rows = state
        .hub
        .store()
        .read(move |c| school::classes(c, &ids))
        .await?;
    Ok(Json(rows).into_response())
}
