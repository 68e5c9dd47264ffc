//! `cartable-central serve`: takes in every box's presence, state and events from the
//! broker, stores them, and serves the fleet dashboard and its JSON API.
//!
//! The MQTT session is persistent (fixed client id, clean session off) and every
//! message is acknowledged only after its transaction is committed: a crash of the
//! central side loses nothing, the broker delivers again, and the store drops the
//! duplicates.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use cartable_protocol::events::{Batch, Presence, ReportedState};
use cartable_protocol::topics::{self, Topic};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::store;

pub struct ServeConfig {
    pub broker_host: String,
    pub broker_port: u16,
    pub client_id: String,
    pub database: PathBuf,
}

/// Runs until `shutdown`: the broker subscriber and the HTTP server on `listener`.
pub async fn run(
    listener: tokio::net::TcpListener,
    config: ServeConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Create the schema before anything reads.
    store::open(&config.database)
        .with_context(|| format!("opening {}", config.database.display()))?;
    let db = Arc::new(config.database.clone());
    let mut options = MqttOptions::new(
        config.client_id.clone(),
        config.broker_host.clone(),
        config.broker_port,
    );
    options.set_keep_alive(Duration::from_secs(30));
    options.set_clean_session(false);
    options.set_manual_acks(true);
    options.set_max_packet_size(8 << 20, 8 << 20);
    let (client, mut eventloop) = AsyncClient::new(options, 256);

    // One writer thread: commit, then acknowledge.
    let (tx, rx) = std::sync::mpsc::sync_channel::<rumqttc::Publish>(256);
    let writer = {
        let (client, path) = (client.clone(), config.database.clone());
        std::thread::Builder::new()
            .name("central-writer".into())
            .spawn(move || writer_loop(&path, rx, client))?
    };
    let stop = shutdown.clone();
    let mqtt = tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                e = eventloop.poll() => e,
                _ = stop.cancelled() => return,
            };
            match event {
                Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                    tracing::info!("connected to the broker");
                    for f in topics::central_filters() {
                        if let Err(e) = client.try_subscribe(f, QoS::AtLeastOnce) {
                            tracing::error!(error = %e, "cannot subscribe");
                        }
                    }
                }
                Ok(Event::Incoming(Incoming::Publish(p))) => {
                    let tx = tx.clone();
                    if tokio::task::spawn_blocking(move || tx.send(p))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "broker connection lost; retrying in 1 s");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.cancelled() => return,
                    }
                }
            }
        }
    });

    let app = axum::Router::new()
        .route("/", axum::routing::get(dashboard))
        .route("/api/v1/boxes", axum::routing::get(api_boxes))
        .route("/api/v1/events", axum::routing::get(api_events))
        .route("/api/v1/usage", axum::routing::get(api_usage))
        .route("/api/v1/counters", axum::routing::get(api_counters))
        .with_state(db);
    let stop = shutdown.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await?;
    let _ = mqtt.await;
    drop(writer);
    Ok(())
}

fn writer_loop(
    path: &std::path::Path,
    rx: std::sync::mpsc::Receiver<rumqttc::Publish>,
    client: AsyncClient,
) {
    let mut conn = match store::open(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot open the database");
            return;
        }
    };
    while let Ok(p) = rx.recv() {
        let handled = handle(&mut conn, &p.topic, &p.payload);
        match handled {
            // Stored (or refused for good): the broker may forget it.
            Ok(()) => {}
            Err(Fatal(e)) => {
                // Not acknowledged: the broker delivers it again after a reconnect.
                tracing::error!(topic = p.topic, error = %e, "cannot store a message");
                continue;
            }
        }
        if let Err(e) = client.try_ack(&p) {
            tracing::warn!(error = %e, "cannot acknowledge");
        }
    }
}

/// A store failure: the message is not acknowledged.
struct Fatal(rusqlite::Error);

fn handle(conn: &mut rusqlite::Connection, topic: &str, payload: &[u8]) -> Result<(), Fatal> {
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        tracing::warn!(topic, error = %e, "dropping a malformed {what}");
    };
    match topics::parse(topic) {
        Some(Topic::Events { site, r#box }) => match Batch::decode(payload) {
            Ok(batch) => {
                let r = store::ingest(conn, &site, &r#box, &batch).map_err(Fatal)?;
                tracing::debug!(
                    site,
                    r#box,
                    new = r.new,
                    duplicates = r.duplicates,
                    "batch stored"
                );
                if r.out_of_order > 0 {
                    tracing::warn!(
                        site,
                        r#box,
                        n = r.out_of_order,
                        "events arrived out of order"
                    );
                }
            }
            Err(e) => {
                bad("batch", &e);
                count(conn, "malformed").map_err(Fatal)?;
            }
        },
        Some(Topic::Presence { site, r#box }) if !payload.is_empty() => {
            match serde_json::from_slice::<Presence>(payload) {
                Ok(p) => store::presence(conn, &site, &r#box, &p).map_err(Fatal)?,
                Err(e) => {
                    bad("presence", &e);
                    count(conn, "malformed").map_err(Fatal)?;
                }
            }
        }
        Some(Topic::State { site, r#box }) if !payload.is_empty() => {
            match serde_json::from_slice::<ReportedState>(payload) {
                Ok(s) => store::state(conn, &site, &r#box, &s).map_err(Fatal)?,
                Err(e) => {
                    bad("state", &e);
                    count(conn, "malformed").map_err(Fatal)?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn count(conn: &rusqlite::Connection, name: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO counters(name, value) VALUES (?1, 1)
         ON CONFLICT(name) DO UPDATE SET value = value + 1",
        [name],
    )?;
    Ok(())
}

type Db = Arc<PathBuf>;

async fn read<T: Send + 'static>(
    db: &Db,
    f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
) -> Result<T, Response> {
    let path = db.clone();
    tokio::task::spawn_blocking(move || {
        let conn = rusqlite::Connection::open_with_flags(
            path.as_path(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        f(&conn)
    })
    .await
    .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())?
    .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())
}

async fn api_boxes(State(db): State<Db>) -> Response {
    match read(&db, store::boxes).await {
        Ok(b) => Json(b).into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct EventsQuery {
    site: Option<String>,
    r#box: Option<String>,
    #[serde(default)]
    after: i64,
    limit: Option<i64>,
}

async fn api_events(State(db): State<Db>, Query(q): Query<EventsQuery>) -> Response {
    let limit = q.limit.unwrap_or(1000).clamp(1, 100_000);
    match read(&db, move |c| {
        store::events(c, q.site.as_deref(), q.r#box.as_deref(), q.after, limit)
    })
    .await
    {
        Ok(e) => Json(e).into_response(),
        Err(r) => r,
    }
}

async fn api_usage(State(db): State<Db>) -> Response {
    match read(&db, store::usage).await {
        Ok(u) => Json(u).into_response(),
        Err(r) => r,
    }
}

async fn api_counters(State(db): State<Db>) -> Response {
    match read(&db, |c| {
        let mut out = std::collections::BTreeMap::new();
        for name in ["events", "duplicates", "out_of_order", "malformed"] {
            out.insert(name, store::count(c, name)?);
        }
        Ok(out)
    })
    .await
    {
        Ok(c) => Json(c).into_response(),
        Err(r) => r,
    }
}

async fn dashboard(State(db): State<Db>) -> Response {
    let data = read(&db, |c| Ok((store::boxes(c)?, store::usage(c)?))).await;
    let (boxes, usage) = match data {
        Ok(d) => d,
        Err(r) => return r,
    };
    let html = crate::dashboard::render(&boxes, &usage, now());
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Binds the dashboard's address.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))
}
