//! Tablets enrolling: a one-use code shown to the admin becomes the device's token.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use super::{HubState, not_waiting};
use crate::base::http::{HttpError, HttpResult, JsonBody};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Enrol {
    code: String,
    #[serde(default)]
    model: String,
}

/// `POST /api/v1/devices/enrol`: a code shown to the admin, once, for one device.
pub(super) async fn enrol(
    State(state): State<HubState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(body): JsonBody<Enrol>,
) -> HttpResult {
    let hub = &state.hub;
    // Codes are short: guessing them is slowed down like passwords, apart from them.
    not_waiting(&hub.limits.enrolment, peer.ip())?;
    if body.code.len() > 64 || body.model.len() > 200 {
        return Err(HttpError::bad_request(
            "a code has at most 64 bytes, a model at most 200",
        ));
    }
    match hub.enrol(&body.code, &body.model).await? {
        Some((id, token)) => {
            hub.limits.enrolment.succeeded(peer.ip()).await;
            Ok((
                StatusCode::CREATED,
                Json(json!({ "device_id": id, "token": token })),
            )
                .into_response())
        }
        None => {
            hub.limits.enrolment.failed(peer.ip()).await;
            Err(HttpError::forbidden(
                "unknown, used or expired enrolment code",
            ))
        }
    }
}
