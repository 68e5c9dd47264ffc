//! The box's one HTTP server: it mounts every service's routes on one router.

pub mod audit_api;
pub mod blockpage;
pub mod conn;
pub mod filter_api;
pub mod status;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use cartable_protocol::status::UplinkStatus;
use tokio::sync::watch;

use crate::config::Config;
use crate::store::Store;
use crate::supervisor::{Health, Service, ServiceCtx, ServiceFuture};

/// What the handlers share.
#[derive(Clone)]
pub struct WebState {
    pub config: Arc<Config>,
    pub store: Store,
    pub health: Health,
    pub uplink: watch::Receiver<UplinkStatus>,
    pub started: Instant,
    /// The DNS engine, for the block page and the filter API (absent in some tests).
    pub engine: Option<Arc<crate::dns::engine::Engine>>,
    /// The sync link's state, for `/api/v1/status`.
    pub sync: crate::sync::SyncView,
    /// The classroom hub (absent in some tests).
    pub hub: Option<Arc<crate::hub::Hub>>,
    /// The Headwind MDM endpoints, when `[hub] headwind_secret` is set.
    pub headwind: Option<Arc<crate::hub::headwind::Headwind>>,
    /// The app and update cache (absent in some tests).
    pub cache: Option<Arc<crate::cache::Cache>>,
}

/// Builds the router; tests drive it directly.
pub fn router(state: WebState) -> Router {
    use crate::hub::api as hub_api;
    use crate::hub::headwind;
    use axum::routing::{get, post};
    status::routes()
        .route("/api/v1/filter/test", axum::routing::get(filter_api::test))
        .route(
            "/api/v1/filter/stats",
            axum::routing::get(filter_api::stats),
        )
        .route("/api/v1/filter/log", axum::routing::get(filter_api::log))
        .route("/api/v1/audit", axum::routing::post(audit_api::record))
        .route("/api/v1/devices/ws", get(crate::hub::ws::upgrade))
        .route("/api/v1/devices/enrol", post(hub_api::enrol))
        .route("/api/v1/admin/enrolment-codes", post(hub_api::new_code))
        .route("/api/v1/admin/devices/{id}/revoke", post(hub_api::revoke))
        .route(
            "/api/v1/admin/teachers/{login}/password",
            post(hub_api::set_password),
        )
        .route("/api/v1/admin/import", post(hub_api::import))
        .route("/api/v1/classes", get(hub_api::classes))
        .route("/api/v1/login", post(hub_api::login))
        .route("/api/v1/logout", post(hub_api::logout))
        .route("/api/v1/classes/{id}/devices", get(hub_api::class_devices))
        .route(
            "/api/v1/classes/{id}/commands",
            post(hub_api::class_command),
        )
        .route("/api/v1/commands/{id}", get(hub_api::command_status))
        .route("/api/v1/classes/{id}/events", get(hub_api::class_events))
        .route("/api/v1/classes/{id}/pupils", get(hub_api::class_pupils))
        .route(
            "/api/v1/classes/{id}/attendance",
            post(hub_api::save_attendance),
        )
        .route("/api/v1/admin/devices/{id}/pupil", post(hub_api::assign))
        .route("/api/v1/classes/{id}/cards", get(hub_api::class_cards))
        .route(
            "/api/v1/classes/{id}/screen-time",
            post(hub_api::set_screen_time),
        )
        .route(
            "/api/v1/classes/{id}/groups",
            get(hub_api::groups).post(hub_api::save_group),
        )
        .route(
            "/api/v1/classes/{class}/pupils/{pupil}/revoke-card",
            post(hub_api::revoke_card),
        )
        .route("/api/v1/session", get(hub_api::session))
        .route(
            "/rest/public/sync/configuration/{number}",
            get(headwind::config_get_root).post(headwind::config_post_root),
        )
        .route(
            "/{project}/rest/public/sync/configuration/{number}",
            get(headwind::config_get).post(headwind::config_post),
        )
        .route("/rest/public/sync/info", post(headwind::info_root))
        .route("/{project}/rest/public/sync/info", post(headwind::info))
        .route(
            "/rest/notification/polling/{number}",
            get(headwind::poll_root),
        )
        .route(
            "/{project}/rest/notification/polling/{number}",
            get(headwind::poll),
        )
        .route(
            "/api/v1/classes/{id}/documents",
            post(hub_api::upload_document).layer(axum::extract::DefaultBodyLimit::max(50 << 20)),
        )
        .route("/documents/{id}/{name}", get(hub_api::document))
        .route("/cache/{sha256}", get(crate::cache::serve::object))
        .route("/api/v1/cache", get(crate::cache::serve::items))
        .route("/cache/items/{id}", get(crate::cache::serve::item))
        .route(
            "/cache/items/{id}/{version}",
            get(crate::cache::serve::item),
        )
        .route("/admin", get(crate::hub::page::admin))
        .route("/admin.js", get(crate::hub::page::admin_script))
        .route("/api/v1/admin/school", get(hub_api::school))
        .route(
            "/api/v1/admin/{kind}/{id}",
            axum::routing::delete(hub_api::delete),
        )
        .route("/classe", get(crate::hub::page::page))
        .route("/classe.css", get(crate::hub::page::css))
        .route("/classe.js", get(crate::hub::page::script))
        .fallback(blockpage::page)
        // Redirect mode: requests for a cached origin's host never reach the routes.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::cache::redirect::middleware,
        ))
        .with_state(state)
}

/// The HTTP service. Its socket is bound when it is built, so a restart reuses it and
/// a bad address fails the start, not a later restart loop.
pub struct HttpService {
    listener: TcpListener,
    state: WebState,
}

impl HttpService {
    pub fn bind(addr: SocketAddr, state: WebState) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(HttpService { listener, state })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

impl Service for HttpService {
    fn name(&self) -> &'static str {
        "http"
    }

    fn run(self: Arc<Self>, ctx: ServiceCtx) -> ServiceFuture {
        Box::pin(async move {
            let listener = tokio::net::TcpListener::from_std(self.listener.try_clone()?)?;
            let app = router(self.state.clone());
            ctx.ready();
            conn::serve(
                listener,
                app,
                self.state.cache.clone(),
                ctx.shutdown.clone(),
            )
            .await;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::Supervisor;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use cartable_protocol::status::UplinkState;
    use http_body_util::BodyExt;
    use tokio_util::sync::CancellationToken;
    use tower::ServiceExt;

    /// Never manages to start.
    struct Broken;

    impl Service for Broken {
        fn name(&self) -> &'static str {
            "broken"
        }
        fn run(self: Arc<Self>, _ctx: ServiceCtx) -> ServiceFuture {
            Box::pin(async { anyhow::bail!("cannot open /dev/nothing") })
        }
    }

    async fn get(app: &Router, path: &str) -> (StatusCode, String) {
        let response = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let code = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (code, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn healthz_names_the_failing_service() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let health = Health::default();
        let (_tx, uplink) = watch::channel(UplinkStatus {
            state: UplinkState::Unknown,
            interface: None,
        });
        let mut config = Config::default();
        config.appliance.data_dir = dir.path().to_path_buf();
        let app = router(WebState {
            config: Arc::new(config),
            store: store.clone(),
            health: health.clone(),
            uplink,
            started: Instant::now(),
            engine: None,
            sync: crate::sync::SyncView::standalone(),
            hub: None,
            headwind: None,
            cache: None,
        });
        let mut sup = Supervisor::new(health.clone());
        sup.add(Arc::new(Broken));
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(sup.run(shutdown.clone(), || {}));
        // Wait until the supervisor has seen it fail at least once.
        while health.snapshot().first().is_none_or(|s| s.restarts == 0) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let (code, body) = get(&app, "/healthz").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("broken"), "{body}");

        let (code, json) = get(&app, "/api/v1/status").await;
        assert_eq!(code, StatusCode::OK);
        let report: cartable_protocol::status::StatusReport = serde_json::from_str(&json).unwrap();
        assert!(!report.healthy());
        assert_eq!(
            report.services[0].last_error.as_deref(),
            Some("cannot open /dev/nothing")
        );
        assert!(report.disk.total_bytes > 0);
        shutdown.cancel();
        running.await.unwrap();
        store.close();
    }

    async fn post_audit(app: &Router, from: [u8; 4], body: &str) -> (StatusCode, String) {
        let mut request = Request::post("/api/v1/audit")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(SocketAddr::from((from, 40000))));
        let response = app.clone().oneshot(request).await.unwrap();
        let code = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (code, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn audit_entries_are_local_only_checked_and_land_in_the_outbox() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (_tx, uplink) = watch::channel(UplinkStatus {
            state: UplinkState::Unknown,
            interface: None,
        });
        let app = router(WebState {
            config: Arc::new(Config::default()),
            store: store.clone(),
            health: Health::default(),
            uplink,
            started: Instant::now(),
            engine: None,
            sync: crate::sync::SyncView::standalone(),
            hub: None,
            headwind: None,
            cache: None,
        });
        let ok = r#"{"action":"switch replaced","detail":"room 3"}"#;
        assert_eq!(
            post_audit(&app, [10, 0, 0, 7], ok).await.0,
            StatusCode::FORBIDDEN
        );
        for bad in [
            "{",
            r#"{"detail":"no action"}"#,
            r#"{"action":"  "}"#,
            r#"{"action":"a","extra":1}"#,
        ] {
            let (code, body) = post_audit(&app, [127, 0, 0, 1], bad).await;
            assert_eq!(code, StatusCode::BAD_REQUEST, "{bad}: {body}");
        }
        let (code, body) = post_audit(&app, [127, 0, 0, 1], ok).await;
        assert_eq!(code, StatusCode::CREATED, "{body}");
        let (events, _) = store
            .read(|c| crate::store::outbox::read_after(c, 0, 10, usize::MAX))
            .await
            .unwrap();
        assert_eq!(events.len(), 1);
        assert!(matches!(
            &events[0].body,
            cartable_protocol::events::EventBody::Audit { actor, action, .. }
                if actor == "admin@127.0.0.1" && action == "switch replaced"
        ));
        store.close();
    }
}
