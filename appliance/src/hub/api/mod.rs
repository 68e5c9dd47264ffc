//! The hub's HTTP API, by who calls it: tablets (`devices`), teachers signing in
//! (`teacher`), a teacher's class (`class`), shared documents (`documents`) and the
//! school's admin (`admin`, local only until admin accounts exist).
//!
//! Every permission is checked here, on the server: a teacher sees and commands only
//! the tablets of their classes. Handlers stay thin: the school's SQL is in
//! `store::school`, the registry's logic in [`super::Hub`], HTML in `cards` and `page`.

mod admin;
mod class;
mod devices;
mod documents;
mod teacher;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{delete, get, post};

use super::Hub;
use super::auth::Session;
use super::headwind::Headwind;
use super::limit::Limiter;
use crate::base::clock::Clock;
use crate::base::http::{AdminCheck, HttpError, local_only};

const COOKIE: &str = "cartable_session";

/// What the hub's handlers share.
#[derive(Clone)]
pub(crate) struct HubState {
    pub hub: Arc<Hub>,
    /// Where shared documents are kept (`data_dir/documents`).
    pub documents: PathBuf,
    /// "Today" for attendance is the school's day, in `[filter] timezone`.
    pub clock: Clock,
    /// The school's name, printed on the pupils' cards.
    pub school: String,
    /// What a Headwind tablet's provisioning QR needs, when Headwind is on and the
    /// agent's APK is named.
    pub provisioning: Option<crate::hub::provisioning::Provisioning>,
}

/// Every route of the hub: the tablets' WebSocket and enrolment, the teacher's API and
/// page, the admin's API and page, shared documents, and Headwind MDM's endpoints when
/// `headwind` is set.
pub(crate) fn routes(state: HubState, headwind: Option<Arc<Headwind>>) -> Router {
    let router = Router::new()
        .route("/api/v1/devices/ws", get(super::ws::upgrade))
        .route("/api/v1/devices/enrol", post(devices::enrol))
        .route("/api/v1/login", post(teacher::login))
        .route("/api/v1/logout", post(teacher::logout))
        .route("/api/v1/session", get(teacher::session))
        .route("/api/v1/classes", get(teacher::classes))
        .route("/api/v1/classes/{id}/devices", get(class::devices))
        .route("/api/v1/classes/{id}/commands", post(class::command))
        .route("/api/v1/commands/{id}", get(class::command_status))
        .route("/api/v1/classes/{id}/events", get(class::events))
        .route("/api/v1/classes/{id}/pupils", get(class::pupils))
        .route(
            "/api/v1/classes/{id}/attendance",
            get(class::attendance_history).post(class::save_attendance),
        )
        .route("/api/v1/classes/{id}/cards", get(class::cards))
        .route(
            "/api/v1/classes/{id}/screen-time",
            get(class::get_screen_time).post(class::set_screen_time),
        )
        .route(
            "/api/v1/classes/{id}/groups",
            get(class::groups).post(class::save_group),
        )
        .route(
            "/api/v1/classes/{class}/pupils/{pupil}/revoke-card",
            post(class::revoke_card),
        )
        .route("/api/v1/classes/{id}/documents", post(documents::upload))
        .route(
            "/api/v1/classes/{id}/documents/{doc}",
            delete(documents::delete),
        )
        .route("/documents/{id}/{name}", get(documents::download))
        .route("/api/v1/admin/enrolment-codes", post(admin::new_code))
        .route("/api/v1/admin/devices/{id}/revoke", post(admin::revoke))
        .route("/api/v1/admin/devices/{id}/pupil", post(admin::assign))
        .route(
            "/api/v1/admin/teachers/{login}/password",
            post(admin::set_password),
        )
        .route("/api/v1/admin/import", post(admin::import))
        .route("/api/v1/admin/admins", post(admin::put_admin))
        .route("/api/v1/admin/school", get(admin::school))
        .route("/api/v1/admin/{kind}/{id}", delete(admin::delete))
        .route("/classe", get(super::page::page))
        .route("/classe.css", get(super::page::css))
        .route("/classe.js", get(super::page::script))
        .route("/admin", get(super::page::admin))
        .route("/admin.js", get(super::page::admin_script))
        .route("/admin.css", get(super::page::admin_css))
        .with_state(state.clone());
    match headwind {
        Some(hw) => router.merge(super::headwind::routes(state.hub, hw)),
        None => router,
    }
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
async fn teacher(hub: &Hub, headers: &HeaderMap, changes: bool) -> Result<Session, HttpError> {
    let found = match cookie(headers) {
        Some(c) => hub.sessions.get(c).await?,
        None => None,
    };
    let session = found.ok_or(HttpError::new(StatusCode::UNAUTHORIZED, "sign in first"))?;
    if changes {
        csrf_sent(headers, &session.csrf)?;
    }
    Ok(session)
}

/// A change must carry its session's CSRF token (another site's page cannot read it).
fn csrf_sent(headers: &HeaderMap, expected: &str) -> Result<(), HttpError> {
    let sent = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
    if sent != Some(expected) {
        return Err(HttpError::forbidden("missing or wrong X-CSRF-Token"));
    }
    Ok(())
}

/// A signed-in teacher of `class` (with the CSRF token when `changes`).
async fn class_teacher(
    hub: &Hub,
    headers: &HeaderMap,
    class: i64,
    changes: bool,
) -> Result<Session, HttpError> {
    let s = teacher(hub, headers, changes).await?;
    allowed_class(&s, class)?;
    Ok(s)
}

fn allowed_class(session: &Session, class: i64) -> Result<(), HttpError> {
    if session.classes.contains(&class) {
        Ok(())
    } else {
        Err(HttpError::forbidden("not one of your classes"))
    }
}

/// The school's admin: a signed-in admin (from any address, with the CSRF token for
/// changes), or a caller on the box itself (a script, or root at the console, as on a
/// Pi-hole). `actor` names them in the audit trail.
pub(crate) struct Admin {
    pub(crate) actor: String,
}

impl axum::extract::FromRequestParts<HubState> for Admin {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &HubState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
            .ok_or(HttpError::forbidden("no peer address"))?;
        same_origin(&parts.headers)?;
        let session = match cookie(&parts.headers) {
            Some(c) => state.hub.sessions.get_admin(c).await?,
            None => None,
        };
        match session {
            Some(s) => {
                if parts.method != axum::http::Method::GET {
                    csrf_sent(&parts.headers, &s.csrf)?;
                }
                Ok(Admin { actor: s.login })
            }
            None => {
                local_only(&peer).map_err(|_| {
                    HttpError::new(
                        StatusCode::UNAUTHORIZED,
                        "sign in as an admin (or call from the box itself)",
                    )
                })?;
                Ok(Admin {
                    actor: format!("admin@{}", peer.ip()),
                })
            }
        }
    }
}

impl Admin {
    /// Records what the admin did in the audit trail (and so on the central side).
    /// Written once the change is committed: a crash between the two loses the
    /// record, never invents one.
    pub(crate) async fn audit(&self, state: &HubState, action: &str, detail: String) {
        let body = cartable_protocol::events::EventBody::Audit {
            actor: self.actor.clone(),
            action: action.to_string(),
            detail,
        };
        let now = state.clock.unix();
        let written = state
            .hub
            .store()
            .write(move |t| crate::store::outbox::append(t, now, &body))
            .await;
        if let Err(e) = written {
            tracing::error!(error = %e, "cannot record an admin action in the audit trail");
        }
    }
}

/// The hub's [`AdminCheck`] for the other services' admin routes: the admin a
/// request's session names, under the rules of [`Admin`] (this box's page, the CSRF
/// token for a change).
pub(crate) fn admin_check(hub: Arc<Hub>) -> AdminCheck {
    Arc::new(move |headers, method| {
        let hub = hub.clone();
        let cookie = cookie(headers).map(str::to_owned);
        let origin_ok = same_origin(headers).is_ok();
        let csrf = headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let change = method != axum::http::Method::GET && method != axum::http::Method::HEAD;
        Box::pin(async move {
            let session = hub.sessions.get_admin(&cookie?).await.ok().flatten()?;
            (origin_ok && (!change || csrf.as_deref() == Some(session.csrf.as_str())))
                .then_some(session.login)
        })
    })
}

/// Refuses a client that must wait (429 with `Retry-After`).
fn not_waiting(limiter: &Limiter, client: std::net::IpAddr) -> Result<(), HttpError> {
    limiter.check(client).map_err(|wait| {
        HttpError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many failed attempts from this address; try again in {} s",
                wait.as_secs().max(1)
            ),
        )
    })
}

/// Refuses a request a browser sent for another site's page: a form on any web page
/// opened in the box's own browser could otherwise post to the admin API, which
/// trusts the loopback address. Scripts (curl) send no `Origin`.
fn same_origin(headers: &HeaderMap) -> Result<(), HttpError> {
    let cross_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site" || v == "same-site");
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let foreign_origin = origin.is_some_and(|o| {
        let o = o.split_once("://").map_or(o, |(_, rest)| rest);
        Some(o) != host
    });
    if cross_site || foreign_origin {
        return Err(HttpError::forbidden("a request from another site's page"));
    }
    Ok(())
}
