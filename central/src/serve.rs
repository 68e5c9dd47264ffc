//! `cartable-central serve`: takes in every box's presence, state and events from the
//! broker, stores them, and serves the fleet dashboard and its JSON API to its admins
//! (`auth`: signed in, or on the central host itself).
//!
//! The MQTT session is persistent (fixed client id, clean session off) and every
//! message is acknowledged only after its transaction is committed: a crash of the
//! central side loses nothing, the broker delivers again, and the store drops the
//! duplicates.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cartable_protocol::topics;
use rumqttc::{AsyncClient, Event, Incoming, QoS};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::store::Db;

pub struct ServeConfig {
    pub broker: crate::broker::BrokerArgs,
    pub client_id: String,
    /// The shared subscription's group several instances take the events through
    /// (`topics::shared_events_filter`); none: this instance takes them all.
    pub share_group: Option<String>,
    /// A SQLite file, or `postgres://...`.
    pub database: String,
    /// The fleet's working key, which signs a rollout's next group and what admins
    /// publish from the policies page, and how often rollouts are looked at; none:
    /// rollouts move only by hand, and the page does not publish.
    pub rollouts: Option<(Arc<crate::keys::Signer>, Duration)>,
}

/// Runs until `shutdown`: the broker subscriber and the HTTP server on `listener`.
pub async fn run(
    listener: tokio::net::TcpListener,
    config: ServeConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let db = Db::open(&config.database)
        .await
        .with_context(|| format!("opening the database {}", config.database))?;
    let mut options = config.broker.options(&config.client_id)?;
    options.set_keep_alive(Duration::from_secs(30));
    options.set_clean_session(false);
    options.set_manual_acks(true);
    let (client, mut eventloop) = AsyncClient::new(options, 256);

    // Unbounded: the broker's in-flight window bounds it, and the event loop must
    // never wait on the writer (the acks it sends go through the event loop).
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<rumqttc::Publish>();
    let writer = tokio::spawn(write(db.clone(), client.clone(), rx));
    let stop = shutdown.clone();
    let share_group = config.share_group.clone();
    let mqtt = tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                e = eventloop.poll() => e,
                _ = stop.cancelled() => return,
            };
            match event {
                Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                    // The group's name is a secret: not in the log.
                    tracing::info!(shared = share_group.is_some(), "connected to the broker");
                    subscribe(&client, share_group.as_deref());
                }
                Ok(Event::Incoming(Incoming::SubAck(ack))) => {
                    if ack
                        .return_codes
                        .iter()
                        .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                    {
                        tracing::error!(codes = ?ack.return_codes, "the broker refused a subscription (its ACL?)");
                    } else {
                        tracing::info!(codes = ?ack.return_codes, "subscribed");
                    }
                }
                Ok(Event::Incoming(Incoming::Publish(p))) => {
                    if tx.send(p).is_err() {
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

    let publishing = crate::policy_form::Publishing {
        db: db.clone(),
        signer: config.rollouts.as_ref().map(|(s, _)| s.clone()),
        broker: config.broker.clone(),
    };
    let rollouts = config.rollouts.map(|(signer, every)| {
        tokio::spawn(crate::rollout::control::run(
            db.clone(),
            signer,
            config.broker.clone(),
            every,
            shutdown.clone(),
        ))
    });

    let app = router(db, publishing);
    let stop = shutdown.clone();
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await?;
    let _ = mqtt.await;
    if let Some(r) = rollouts {
        let _ = r.await;
    }
    writer.abort();
    Ok(())
}

/// The one writer: stores each message, then acknowledges it.
async fn write(
    db: Db,
    client: AsyncClient,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<rumqttc::Publish>,
) {
    while let Some(p) = rx.recv().await {
        match crate::ingest::handle(&db, &p.topic, &p.payload).await {
            Ok(()) => {
                if let Err(e) = client.ack(&p).await {
                    tracing::warn!(error = %e, "cannot acknowledge");
                }
            }
            // Not acknowledged: the broker delivers it again after a reconnect.
            Err(e) => {
                tracing::error!(topic = p.topic, error = %e, "cannot store a message")
            }
        }
    }
}

/// Subscribes to every box's messages, the events shared with `group`'s other
/// instances if given. The session is persistent, so the broker still holds the
/// other form of the events' subscription from an earlier start: it is dropped, or
/// each event would come twice (stored once, but counted as a duplicate).
fn subscribe(client: &AsyncClient, group: Option<&str>) {
    let [presence, state, events] = topics::central_filters();
    let (wanted, other) = match group {
        Some(g) => (topics::shared_events_filter(g), Some(events)),
        None => (events, None),
    };
    // One SUBSCRIBE, so one SUBACK says whether the broker took them all.
    let filters =
        [presence, state, wanted].map(|f| rumqttc::SubscribeFilter::new(f, QoS::AtLeastOnce));
    if let Err(e) = client.try_subscribe_many(filters) {
        tracing::error!(error = %e, "cannot subscribe");
    }
    if let Some(f) = other
        && let Err(e) = client.try_unsubscribe(f)
    {
        tracing::error!(error = %e, "cannot unsubscribe");
    }
}

/// The dashboard, the JSON API and the sign-in, behind the admins' guard.
fn router(db: Db, publishing: crate::policy_form::Publishing) -> axum::Router {
    let auth = crate::auth::Auth::new(db.clone());
    let signin = axum::Router::new()
        .route(
            "/login",
            axum::routing::get(crate::auth::login_page).post(crate::auth::login_form),
        )
        .route(
            "/api/v1/login",
            axum::routing::post(crate::auth::login_json),
        )
        .route("/api/v1/logout", axum::routing::post(crate::auth::logout))
        .with_state(auth.clone());
    axum::Router::new()
        .route("/", axum::routing::get(dashboard))
        .route("/api/v1/boxes", axum::routing::get(api_boxes))
        .route("/api/v1/events", axum::routing::get(api_events))
        .route("/api/v1/usage", axum::routing::get(crate::usage::api))
        .route("/usage", axum::routing::get(crate::usage::page))
        .route("/api/v1/tablets", axum::routing::get(crate::tablets::api))
        .route("/tablets", axum::routing::get(crate::tablets::page))
        .route("/api/v1/counters", axum::routing::get(api_counters))
        .route("/api/v1/releases", axum::routing::get(api_releases))
        .with_state(db)
        .merge(
            axum::Router::new()
                .route("/policies", axum::routing::get(crate::policies::page))
                .route(
                    "/policies/publish",
                    axum::routing::post(crate::policy_form::publish),
                )
                .with_state(publishing),
        )
        .merge(signin)
        // Nothing of the fleet for anyone but its admins (and the host itself).
        .layer(axum::middleware::from_fn_with_state(
            auth,
            crate::auth::guard,
        ))
}

/// A failure of the store, said as a 500 with its chain.
pub(crate) fn internal(e: anyhow::Error) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")).into_response()
}

async fn api_boxes(State(db): State<Db>) -> Response {
    match db.boxes().await {
        Ok(b) => Json(b).into_response(),
        Err(e) => internal(e),
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
    match db.events(q.site, q.r#box, q.after, limit).await {
        Ok(e) => Json(e).into_response(),
        Err(e) => internal(e),
    }
}

async fn api_counters(State(db): State<Db>) -> Response {
    match db.counters().await {
        Ok(c) => Json(c).into_response(),
        Err(e) => internal(e),
    }
}

async fn api_releases(State(db): State<Db>) -> Response {
    match crate::rollout::control::report(&db).await {
        Ok(r) => Json(r).into_response(),
        Err(e) => internal(e),
    }
}

async fn dashboard(
    State(db): State<Db>,
    headers: axum::http::HeaderMap,
    Query(q): Query<LangQuery>,
) -> Response {
    let lang = crate::page::Lang::of(&headers, q.lang.as_deref());
    let (boxes, releases) = match (db.boxes().await, crate::rollout::control::report(&db).await) {
        (Ok(b), Ok(r)) => (b, r),
        (Err(e), _) | (_, Err(e)) => return internal(e),
    };
    let html = crate::dashboard::render(lang, &boxes, &releases, crate::store::now());
    crate::page::html(q.lang.as_deref(), html)
}

#[derive(Deserialize)]
struct LangQuery {
    lang: Option<String>,
}

/// Binds the dashboard's address.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))
}
