//! The peer for the sync benchmark: publishes every outbox event of a box's store as
//! its own JSON message (QoS 1), the naive way, and waits for every ack.
//!
//!   publish-each DATA_DIR HOST PORT

use std::time::{Duration, Instant};

use cartable::store::Store;
use cartable::store::outbox;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, host, port] = args.as_slice() else {
        anyhow::bail!("usage: publish-each DATA_DIR HOST PORT");
    };
    let store = Store::open(std::path::Path::new(dir))?;
    let (events, _) = store
        .read(|c| outbox::read_after(c, 0, usize::MAX, usize::MAX))
        .await?;
    store.close();
    let mut options = MqttOptions::new("publish-each", host.clone(), port.parse()?);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_inflight(100);
    let (client, mut eventloop) = AsyncClient::new(options, 1000);
    let n = events.len();
    let started = Instant::now();
    let publisher = tokio::spawn(async move {
        for e in events {
            let json = serde_json::to_vec(&e).expect("serializes");
            client
                .publish(
                    "cartable/v1/default/cartable/each",
                    QoS::AtLeastOnce,
                    false,
                    json,
                )
                .await
                .expect("queued");
        }
        client
    });
    let mut acked = 0;
    while acked < n {
        if let Event::Incoming(Incoming::PubAck(_)) = eventloop.poll().await? {
            acked += 1;
        }
    }
    let _client = publisher.await?;
    println!(
        "{n} messages acknowledged in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
