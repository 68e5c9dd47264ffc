//! Tablets enrolling: a one-use code shown to the admin becomes the device's token.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use super::HubState;
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
    // Codes are short: guessing them is rate-limited like passwords.
    if !hub.sessions.may_try("enrolment", peer.ip()) {
        return Err(HttpError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many wrong codes; wait 15 minutes",
        ));
    }
    match hub.enrol(&body.code, &body.model).await? {
        Some((id, token)) => Ok((
            StatusCode::CREATED,
            Json(json!({ "device_id": id, "token": token })),
        )
            .into_response()),
        None => {
            hub.sessions.failed("enrolment", peer.ip());
            Err(HttpError::forbidden(
                "unknown, used or expired enrolment code",
            ))
        }
    }
}
