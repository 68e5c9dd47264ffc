//! The box's one HTTP server. It owns the listening socket and the accept loop
//! (`conn`), the status routes (`status`) and the admin's audit note (`audit_api`);
//! every other route belongs to the service that answers it (`dns::routes`,
//! `hub::routes`, `cache::routes`), and `app` merges them into the router this
//! service runs. What must not live here: another service's handlers or state.

pub(crate) mod audit_api;
pub(crate) mod conn;
pub(crate) mod status;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use axum::Router;

use crate::base::http::FastPath;
use crate::supervisor::{Service, ServiceCtx, ServiceFuture};

/// The HTTP service. Its socket is bound when it is built, so a restart reuses it and
/// a bad address fails the start, not a later restart loop.
pub(crate) struct HttpService {
    listener: TcpListener,
    router: Router,
    fast: Option<Arc<dyn FastPath>>,
}

impl HttpService {
    /// Serves `router`; each connection goes to `fast` first when one is given.
    pub(crate) fn bind(
        addr: SocketAddr,
        router: Router,
        fast: Option<Arc<dyn FastPath>>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(HttpService {
            listener,
            router,
            fast,
        })
    }

    pub(crate) fn local_addr(&self) -> std::io::Result<SocketAddr> {
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
            ctx.ready();
            conn::serve(
                listener,
                self.router.clone(),
                self.fast.clone(),
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
    use crate::store::Store;
    use crate::supervisor::{Health, Supervisor};
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use cartable_protocol::status::UplinkState;
    use cartable_protocol::status::{CacheStatus, SyncStatus, UplinkStatus};
    use http_body_util::BodyExt;
    use std::time::Instant;
    use tokio::sync::watch;
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
        let response =
            app.clone()
                .oneshot({
                    let mut r = Request::get(path).body(Body::empty()).unwrap();
                    r.extensions_mut().insert(axum::extract::ConnectInfo(
                        std::net::SocketAddr::from(([127, 0, 0, 1], 40000)),
                    ));
                    r
                })
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
        let app = status::routes(status::StatusState {
            box_id: "cartable".into(),
            site: "default".into(),
            data_dir: dir.path().to_path_buf(),
            health: health.clone(),
            uplink,
            started: Instant::now(),
            sync: Arc::new(|| Box::pin(async { SyncStatus::default() })),
            cache: Arc::new(CacheStatus::default),
            update: Arc::new(cartable_protocol::status::UpdateStatus::default),
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
        let app = audit_api::routes(store.clone());
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
