//! Publishes a fleet's backlog to a broker as the boxes would, for the central side
//! to drain: BOXES boxes (two per site), each with a key of its own, BATCHES sealed
//! batches of EVENTS tablet-hours of app use (a minute each, over a school week; each
//! pair of batches brings ten tablets not seen before), QoS 1, every acknowledgement
//! awaited. Prints what was sent, as JSON: `{"events": N, "seconds": S}`. Used by
//! `tests/bench/central_share.sh` and the shared-subscription test.
//!
//!   flood-central HOST PORT BOXES BATCHES EVENTS

use std::time::Duration;

use cartable_protocol::events::{Batch, Event, EventBody};
use cartable_protocol::{sealed, topics};
use ring::signature::Ed25519KeyPair;
use rumqttc::{AsyncClient, Event as MqttEvent, Incoming, MqttOptions, QoS};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, host, port, boxes, batches, per_batch] = args.as_slice() else {
        anyhow::bail!("usage: flood-central HOST PORT BOXES BATCHES EVENTS");
    };
    let (boxes, batches, per_batch): (u64, u64, u64) =
        (boxes.parse()?, batches.parse()?, per_batch.parse()?);
    let rng = ring::rand::SystemRandom::new();
    let keys = (0..boxes)
        .map(|_| {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| anyhow::anyhow!("key"))?;
            Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| anyhow::anyhow!("key"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut options =
        MqttOptions::new(format!("flood-{}", std::process::id()), host, port.parse()?);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(16 << 20, 16 << 20);
    options.set_inflight(100);
    let (client, mut eventloop) = AsyncClient::new(options, 1000);
    // Monday of last week, 9:00: five school days of ten tablets' hours.
    let today = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64
        / 86_400;
    let monday = today - (today + 3) % 7 - 7;
    let n = boxes * batches;
    let publisher = tokio::spawn(async move {
        // Box after box, each its batches back to back, as boxes drain after an
        // outage: consecutive batches of one box go to different instances at once.
        for (b, key) in keys.iter().enumerate() {
            for batch in 0..batches {
                let (site, box_id) = (format!("ecole-{:03}", b / 2), format!("box-{b:03}"));
                let events = (0..per_batch)
                    .map(|i| {
                        let k = batch * per_batch + i;
                        let hour = (monday + (k / 80 % 5) as i64) * 86_400
                            + (9 + (k / 10 % 8) as i64) * 3600;
                        Event {
                            seq: k + 1,
                            at: hour + 3599,
                            body: EventBody::AppUsage {
                                hour,
                                // Two batches in a row share ten tablets seen
                                // for the first time (two instances create their
                                // rows at once).
                                device: format!("tab-{:03}", batch / 2 * 10 + k % 10),
                                app: "org.ent.lecture".into(),
                                seconds: 60,
                                class: Some("CM1".into()),
                            },
                        }
                    })
                    .collect();
                let body = Batch {
                    site: site.clone(),
                    r#box: box_id.clone(),
                    events,
                }
                .encode();
                let topic = topics::events(&site, &box_id);
                let sealed = sealed::seal(key, &topic, 0, &body);
                client
                    .publish(topic, QoS::AtLeastOnce, false, sealed)
                    .await
                    .expect("queued");
            }
        }
        client
    });
    let mut acked = 0;
    while acked < n {
        if let MqttEvent::Incoming(Incoming::PubAck(_)) = eventloop.poll().await? {
            acked += 1;
        }
    }
    let _client = publisher.await?;
    let events = n * per_batch;
    println!(r#"{{"events": {events}, "seconds": {}}}"#, events * 60);
    Ok(())
}
