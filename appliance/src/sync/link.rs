//! One MQTT connection to the broker, with publishes the caller can await until the
//! broker's PUBACK.
//!
//! rumqttc's own reconnection is not used: each connection is a fresh client and event
//! loop, so a lost connection fails every pending publish at once and the drainer
//! starts again from the first unacknowledged outbox row. The reconnection wait,
//! capped exponential with full jitter, is `base::backoff`'s.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, Incoming, LastWill, MqttOptions, Outgoing, QoS,
    Transport,
};
use tokio::sync::{mpsc, oneshot};

use crate::config::{BrokerUrl, SyncConfig};

/// Largest packet either way: an outbox batch, a catalogue envelope.
pub(crate) const MAX_PACKET: usize = 8 << 20;

/// A publish the broker has not acknowledged yet.
pub(crate) type Ack = oneshot::Receiver<()>;

#[derive(Default)]
struct Waiters {
    /// Publishes handed to the event loop, not yet written (their id comes then).
    queued: VecDeque<oneshot::Sender<()>>,
    by_pkid: HashMap<u16, oneshot::Sender<()>>,
}

/// The connected side: publish and subscribe.
#[derive(Clone)]
pub(crate) struct Link {
    client: AsyncClient,
    waiters: Arc<Mutex<Waiters>>,
    /// Keeps "queue the waiter, then the publish" in the same order for every caller.
    order: Arc<tokio::sync::Mutex<()>>,
}

/// A message that came in on a subscription.
pub(crate) struct Incoming_ {
    pub topic: String,
    pub payload: Vec<u8>,
}

impl Link {
    /// Publishes with QoS 1; the returned [`Ack`] resolves at the broker's PUBACK and
    /// errs if the connection is lost first.
    pub(crate) async fn publish(
        &self,
        topic: String,
        retain: bool,
        payload: Vec<u8>,
    ) -> Result<Ack, rumqttc::ClientError> {
        let _turn = self.order.lock().await;
        let (tx, rx) = oneshot::channel();
        lock(&self.waiters).queued.push_back(tx);
        if let Err(e) = self
            .client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
        {
            lock(&self.waiters).queued.pop_back();
            return Err(e);
        }
        Ok(rx)
    }

    pub(crate) async fn subscribe(&self, filter: String) -> Result<(), rumqttc::ClientError> {
        self.client.subscribe(filter, QoS::AtLeastOnce).await
    }

    pub(crate) async fn disconnect(&self) {
        let _ = self.client.disconnect().await;
    }
}

fn lock(w: &Mutex<Waiters>) -> std::sync::MutexGuard<'_, Waiters> {
    w.lock().unwrap_or_else(|e| e.into_inner())
}

/// The client options for one connection attempt.
pub(crate) fn options(
    config: &SyncConfig,
    broker: &BrokerUrl,
    client_id: &str,
    will: Option<(String, Vec<u8>)>,
    clean_session: bool,
) -> anyhow::Result<MqttOptions> {
    let mut o = MqttOptions::new(client_id, broker.host.clone(), broker.port);
    o.set_keep_alive(Duration::from_secs(u64::from(
        config.keep_alive_secs.max(5),
    )));
    o.set_max_packet_size(MAX_PACKET, MAX_PACKET);
    o.set_clean_session(clean_session);
    if let Some((topic, payload)) = will {
        o.set_last_will(LastWill::new(topic, payload, QoS::AtLeastOnce, true));
    }
    if let Some(user) = &config.username {
        let password = match &config.password_file {
            Some(p) => std::fs::read_to_string(p.as_path())
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", p.as_path().display()))?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
            None => String::new(),
        };
        o.set_credentials(user.clone(), password);
    }
    if broker.tls {
        o.set_transport(Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(tls_config(config)?),
        ));
    }
    Ok(o)
}

fn tls_config(config: &SyncConfig) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let ca = config.ca_file.as_ref().map(|p| p.as_path());
    let identity = match (&config.client_cert_file, &config.client_key_file) {
        (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
        (None, None) => None,
        _ => anyhow::bail!("[sync] client_cert_file and client_key_file go together"),
    };
    crate::base::tls::client_config_with_identity(ca, identity)
        .map_err(|e| anyhow::anyhow!("broker TLS: {e}"))
}

/// Connects: returns once the broker accepted the session (CONNACK), with the link and
/// the task that drives the connection until it fails. Messages on subscriptions go to
/// `incoming`.
pub(crate) async fn connect(
    options: MqttOptions,
    incoming: mpsc::Sender<Incoming_>,
    timeout: Duration,
) -> Result<(Link, tokio::task::JoinHandle<ConnectionError>), ConnectionError> {
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    eventloop
        .network_options
        .set_connection_timeout(timeout.as_secs().max(1));
    // The first poll connects and returns the CONNACK (or the reason it could not).
    loop {
        match tokio::time::timeout(timeout, eventloop.poll()).await {
            Err(_) => return Err(ConnectionError::NetworkTimeout),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(Event::Incoming(Incoming::ConnAck(_)))) => break,
            Ok(Ok(_)) => {}
        }
    }
    let waiters = Arc::new(Mutex::new(Waiters::default()));
    let driver = tokio::spawn(drive(eventloop, waiters.clone(), incoming));
    Ok((
        Link {
            client,
            waiters,
            order: Arc::new(tokio::sync::Mutex::new(())),
        },
        driver,
    ))
}

async fn drive(
    mut eventloop: EventLoop,
    waiters: Arc<Mutex<Waiters>>,
    incoming: mpsc::Sender<Incoming_>,
) -> ConnectionError {
    loop {
        match eventloop.poll().await {
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                let mut w = lock(&waiters);
                if let Some(tx) = w.queued.pop_front() {
                    w.by_pkid.insert(pkid, tx);
                }
            }
            Ok(Event::Incoming(Incoming::PubAck(ack))) => {
                if let Some(tx) = lock(&waiters).by_pkid.remove(&ack.pkid) {
                    let _ = tx.send(());
                }
            }
            Ok(Event::Incoming(Incoming::Publish(p))) => {
                // A full queue means the handler is behind; waiting here would stall
                // acks, so the message waits for the handler instead of the socket.
                if incoming
                    .send(Incoming_ {
                        topic: p.topic,
                        payload: p.payload.to_vec(),
                    })
                    .await
                    .is_err()
                {
                    return ConnectionError::RequestsDone;
                }
            }
            Ok(_) => {}
            Err(e) => {
                // Every pending publish fails now: their senders are dropped.
                let mut w = lock(&waiters);
                w.queued.clear();
                w.by_pkid.clear();
                return e;
            }
        }
    }
}
