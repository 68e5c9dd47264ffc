//! The school admin's calls: enrolment codes, tablets, teachers' passwords, the CSV
//! import, the school overview and deletions. Callers on the box itself only (the
//! [`Admin`] extractor) until admin accounts exist.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use super::{Admin, HubState};
use crate::base::http::{HttpError, HttpResult, JsonBody};
use crate::hub::auth::{self, AdminRefused};
use crate::store::{StoreError, school};

/// How long an enrolment code stays valid.
const CODE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Largest CSV file imported at once.
const MAX_IMPORT: usize = 4 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewCode {
    name: String,
    #[serde(default)]
    class: Option<String>,
    /// For a Headwind MDM tablet: its device number for good, so a long code (24
    /// characters) that the provisioning QR carries.
    #[serde(default)]
    headwind: bool,
}

/// `POST /api/v1/admin/enrolment-codes`: a one-use code for a tablet, and its QR code
/// (`cartable:enrol?box=URL&code=CODE`: the box as the admin's browser reached it, the
/// code) for a tablet's provisioning to scan; for a Headwind tablet, when the agent's
/// APK is named, Android's provisioning QR (`hub::provisioning`).
pub(super) async fn new_code(
    State(state): State<HubState>,
    admin: Admin,
    headers: HeaderMap,
    JsonBody(body): JsonBody<NewCode>,
) -> HttpResult {
    if body.name.trim().is_empty() || body.name.len() > 100 {
        return Err(HttpError::bad_request("name: 1 to 100 characters"));
    }
    let hub = &state.hub;
    let class_id = match body.class {
        None => None,
        Some(class) => Some(
            hub.store()
                .read(move |c| school::class_id(c, &class))
                .await?
                .ok_or(HttpError::bad_request("no such class"))?,
        ),
    };
    let length = if body.headwind { 24 } else { 8 };
    let name = body.name.clone();
    match hub
        .new_enrolment_code(body.name, class_id, CODE_TTL, length)
        .await
    {
        Ok(code) => {
            admin.audit(&state, "enrolment code", name).await;
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            let base = format!("http://{host}");
            // A Headwind tablet scans Android's provisioning QR, when the box can
            // give it the agent; others scan ours.
            let headwind = state.provisioning.as_ref().filter(|_| body.headwind);
            let provisioning = headwind.map(|p| p.qr_json(&base, &code));
            let payload = match &provisioning {
                Some(p) => p.to_string(),
                None => format!("cartable:enrol?box={base}&code={code}"),
            };
            let qr = crate::hub::cards::qr_svg(&payload);
            Ok((
                StatusCode::CREATED,
                Json(json!({
                    "code": code, "qr": qr, "qr_payload": payload,
                    "provisioning": provisioning,
                    // The network the QR has the tablet join (a cart's access point).
                    "wifi": headwind.and_then(|p| p.wifi.as_ref()).map(|w| &w.ssid),
                })),
            )
                .into_response())
        }
        Err(StoreError::Sqlite(e)) => Err(HttpError::new(StatusCode::CONFLICT, e.to_string())),
        Err(e) => Err(e.into()),
    }
}

/// `POST /api/v1/admin/devices/{id}/revoke`.
pub(super) async fn revoke(
    State(state): State<HubState>,
    admin: Admin,
    Path(id): Path<i64>,
) -> HttpResult {
    if !state.hub.revoke(id).await? {
        return Err(HttpError::not_found("no such device"));
    }
    admin
        .audit(&state, "device revoked", format!("device {id}"))
        .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Password {
    password: String,
}

/// `POST /api/v1/admin/teachers/{login}/password`.
pub(super) async fn set_password(
    State(state): State<HubState>,
    admin: Admin,
    Path(login): Path<String>,
    JsonBody(body): JsonBody<Password>,
) -> HttpResult {
    auth::check_password(&body.password).map_err(HttpError::bad_request)?;
    if !state.hub.set_password(login.clone(), body.password).await? {
        return Err(HttpError::not_found("no such teacher"));
    }
    admin.audit(&state, "teacher password set", login).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Assign {
    pupil: Option<i64>,
}

/// `POST /api/v1/admin/devices/{id}/pupil`: the tablet's pupil, of its class.
pub(super) async fn assign(
    State(state): State<HubState>,
    admin: Admin,
    Path(id): Path<i64>,
    JsonBody(body): JsonBody<Assign>,
) -> HttpResult {
    if !state.hub.assign(id, body.pupil).await? {
        return Err(HttpError::bad_request(
            "no such pupil in this tablet's class",
        ));
    }
    let detail = format!("device {id}, pupil {:?}", body.pupil);
    admin.audit(&state, "tablet assigned", detail).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/v1/admin/import`: a CSV of classes, teachers or pupils, as `text/csv`
/// (which no cross-site form can send).
#[derive(Deserialize)]
pub(super) struct ImportParams {
    /// Say what the file would change, change nothing.
    #[serde(default)]
    preview: bool,
}

/// `POST /api/v1/admin/import[?preview=true]` with a `text/csv` body.
pub(super) async fn import(
    State(state): State<HubState>,
    admin: Admin,
    headers: HeaderMap,
    axum::extract::Query(params): axum::extract::Query<ImportParams>,
    body: String,
) -> HttpResult {
    let csv = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/csv"));
    if !csv {
        return Err(HttpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the file as text/csv",
        ));
    }
    if body.len() > MAX_IMPORT {
        return Err(HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "at most 4 MiB per file",
        ));
    }
    match crate::store::import::import_csv(state.hub.store(), body, params.preview).await {
        Ok(report) => {
            if !params.preview {
                let what = format!(
                    "{} {:?}: {} added, {} changed",
                    report.rows, report.kind, report.added, report.updated
                );
                admin.audit(&state, "import", what.to_lowercase()).await;
            }
            Ok((StatusCode::OK, Json(json!(report))).into_response())
        }
        Err(crate::store::import::ImportError::Store(e)) => {
            Err(HttpError::unavailable("import failed in the store", &e))
        }
        Err(e) => Err(HttpError::bad_request(format!("{e}\nnothing was imported"))),
    }
}

/// `GET /api/v1/admin/school`: classes, teachers, pupils and tablets.
pub(super) async fn school(State(state): State<HubState>, _admin: Admin) -> HttpResult {
    let tiles = state.hub.tiles(None);
    let [classes, teachers, pupils] = state.hub.store().read(school::overview).await?;
    Ok(Json(
        json!({ "classes": classes, "teachers": teachers, "pupils": pupils, "devices": tiles }),
    )
    .into_response())
}

/// `DELETE /api/v1/admin/{kind}/{id}`: a class (with its pupils), a teacher or a
/// pupil.
pub(super) async fn delete(
    State(state): State<HubState>,
    admin: Admin,
    Path((kind, id)): Path<(String, i64)>,
) -> HttpResult {
    let kind =
        school::Kind::parse(&kind).ok_or(HttpError::not_found("classes, teachers or pupils"))?;
    let done = state
        .hub
        .store()
        .write(move |t| school::delete(t, kind, id))
        .await?;
    if !done {
        return Err(HttpError::not_found("not found"));
    }
    // The store cascaded; the hub's memory follows.
    state.hub.forget(kind.table(), id);
    let detail = format!("{} {id}", kind.table());
    admin.audit(&state, "deleted", detail).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewAdmin {
    login: String,
    password: String,
}

/// `POST /api/v1/admin/admins`: adds an admin account, or sets an admin's password
/// (`cartable admin add` goes through here while the daemon runs).
pub(super) async fn put_admin(
    State(state): State<HubState>,
    admin: Admin,
    JsonBody(body): JsonBody<NewAdmin>,
) -> HttpResult {
    let added = auth::put_admin(
        state.hub.store(),
        &body.login,
        &body.password,
        state.clock.unix(),
        admin.actor,
    )
    .await
    .map_err(|refused| match refused {
        AdminRefused::Invalid(why) => HttpError::bad_request(why),
        AdminRefused::Taken(why) => HttpError::new(StatusCode::CONFLICT, why),
        AdminRefused::Store(e) => e.into(),
    })?;
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    };
    Ok(status.into_response())
}
