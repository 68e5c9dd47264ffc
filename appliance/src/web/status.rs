//! `GET /healthz` for probes and `GET /api/v1/status` for people and the CLI.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cartable_protocol::status::{DiskStatus, ServiceState, StatusReport};

use super::WebState;

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/v1/status", get(status))
}

async fn healthz(State(s): State<WebState>) -> Response {
    let failing: Vec<String> = s
        .health
        .snapshot()
        .into_iter()
        .filter(|x| x.state != ServiceState::Running)
        .map(|x| format!("{}: {}", x.name, x.state.as_str()))
        .collect();
    if failing.is_empty() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        let body = format!("not running: {}\n", failing.join(", "));
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

async fn status(State(s): State<WebState>) -> Json<StatusReport> {
    let data_dir = s.config.appliance.data_dir.clone();
    let disk = tokio::task::spawn_blocking(move || crate::base::disk::status(&data_dir))
        .await
        .unwrap_or_else(|_| DiskStatus {
            path: String::new(),
            free_bytes: 0,
            total_bytes: 0,
        });
    let sync = crate::sync::status(&s.sync, &s.store).await;
    Json(StatusReport {
        version: env!("CARGO_PKG_VERSION").to_string(),
        box_id: s.config.appliance.id.to_string(),
        site: s.config.appliance.site.to_string(),
        uptime_secs: s.started.elapsed().as_secs(),
        services: s.health.snapshot(),
        uplink: s.uplink.borrow().clone(),
        disk,
        sync,
        cache: s.cache.as_ref().map(|c| c.status()).unwrap_or_default(),
    })
}
