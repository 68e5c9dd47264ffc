//! The audit log's admin entry: an admin on the box records what they did (a switch
//! replaced, a class moved), and it goes up to the central side with the box's own
//! audit events. Local callers only, like the rest of the admin API until the hub's
//! accounts exist.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cartable_protocol::events::EventBody;
use serde::Deserialize;

use crate::base::http::local_only;
use crate::store::{Store, outbox};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditEntry {
    action: String,
    #[serde(default)]
    detail: String,
    #[serde(default)]
    actor: Option<String>,
}

const MAX_FIELD: usize = 4096;

/// `POST /api/v1/audit`.
pub(crate) fn routes(store: Store) -> axum::Router {
    axum::Router::new()
        .route("/api/v1/audit", axum::routing::post(record))
        .with_state(store)
}

pub(crate) async fn record(
    State(store): State<Store>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Json<AuditEntry>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Err(e) = local_only(&peer) {
        return e.into_response();
    }
    let Json(entry) = match body {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{}\n", e.body_text())).into_response(),
    };
    if entry.action.trim().is_empty()
        || entry.action.len() > MAX_FIELD
        || entry.detail.len() > MAX_FIELD
        || entry.actor.as_ref().is_some_and(|a| a.len() > MAX_FIELD)
    {
        return (
            StatusCode::BAD_REQUEST,
            "action (1 to 4096 bytes) is required; detail and actor are at most 4096 bytes\n",
        )
            .into_response();
    }
    let body = EventBody::Audit {
        actor: entry
            .actor
            .unwrap_or_else(|| format!("admin@{}", peer.ip())),
        action: entry.action,
        detail: entry.detail,
    };
    match store
        .write(move |t| outbox::append(t, crate::base::clock::unix_now(), &body))
        .await
    {
        Ok(seq) => (StatusCode::CREATED, Json(serde_json::json!({ "seq": seq }))).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot record an audit entry");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the store cannot record it now\n",
            )
                .into_response()
        }
    }
}
