//! `GET /healthz` for probes and `GET /api/v1/status` for people and the CLI.
//!
//! The status speaks of every service, yet imports none: `app` hands it a reporter
//! for each part it shows (the sync link, the cache), as closures over the service's
//! own handle.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cartable_protocol::status::{
    CacheStatus, DiskStatus, ServiceState, StatusReport, SyncStatus, UplinkStatus,
};
use futures_util::future::BoxFuture;
use tokio::sync::watch;

use crate::supervisor::Health;

/// Reads the sync link's state and backlog.
pub(crate) type SyncReporter = Arc<dyn Fn() -> BoxFuture<'static, SyncStatus> + Send + Sync>;
/// Reads the cache's state.
pub(crate) type CacheReporter = Arc<dyn Fn() -> CacheStatus + Send + Sync>;

/// What the status handlers read.
#[derive(Clone)]
pub(crate) struct StatusState {
    pub box_id: String,
    pub site: String,
    /// The disk whose free space is shown.
    pub data_dir: PathBuf,
    pub health: Health,
    pub uplink: watch::Receiver<UplinkStatus>,
    pub started: Instant,
    pub sync: SyncReporter,
    pub cache: CacheReporter,
    pub update: Arc<dyn Fn() -> cartable_protocol::status::UpdateStatus + Send + Sync>,
}

pub(crate) fn routes(state: StatusState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/v1/status", get(status))
        .with_state(state)
}

async fn healthz(State(s): State<StatusState>) -> Response {
    let failing: Vec<String> = s
        .health
        .snapshot()
        .into_iter()
        .filter(|x| x.state != ServiceState::Running)
        .map(|x| format!("{}: {}", x.name, x.state.as_str()))
        .collect();
    if !failing.is_empty() {
        let body = format!("not running: {}\n", failing.join(", "));
        return (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
    }
    // Running but not doing what it is asked (a filter that blocks nothing it names):
    // not healthy either, and said so, with what to fix.
    let degraded: Vec<String> = s
        .health
        .snapshot()
        .into_iter()
        .flat_map(|x| {
            let name = x.name;
            x.problems.into_iter().map(move |p| format!("{name}: {p}"))
        })
        .collect();
    if degraded.is_empty() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        let body = format!("degraded:\n{}\n", degraded.join("\n"));
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

/// The whole report to a caller on the box; to the school network, without where
/// the box keeps its data and which broker it talks to.
async fn status(
    State(s): State<StatusState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
) -> Json<StatusReport> {
    let mut report = report(&s).await;
    if !crate::base::http::is_loopback(peer.ip()) {
        report.sync.broker = None;
        report.disk.path = String::new();
    }
    Json(report)
}

async fn report(s: &StatusState) -> StatusReport {
    let data_dir = s.data_dir.clone();
    let disk = tokio::task::spawn_blocking(move || crate::base::disk::status(&data_dir))
        .await
        .unwrap_or_else(|_| DiskStatus {
            path: String::new(),
            free_bytes: 0,
            total_bytes: 0,
        });
    let sync = (s.sync)().await;
    StatusReport {
        version: env!("CARGO_PKG_VERSION").to_string(),
        box_id: s.box_id.clone(),
        site: s.site.clone(),
        uptime_secs: s.started.elapsed().as_secs(),
        services: s.health.snapshot(),
        uplink: s.uplink.borrow().clone(),
        disk,
        sync,
        cache: (s.cache)(),
        update: (s.update)(),
    }
}
