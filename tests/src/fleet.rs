//! The fleet's keyring as a test holds it: a root key (what boxes pin), a working key
//! certified by it, and helpers that publish on the broker the way the console does.

use cartable_central::broker::BrokerArgs;
use cartable_protocol::desired::{self, Desired, hex};
use cartable_protocol::keyring::{self, Certificate, WorkingKey};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};

use crate::mosquitto::Mosquitto;

pub fn key() -> Ed25519KeyPair {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("random");
    Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("a fresh key")
}

pub struct Fleet {
    pub root: Ed25519KeyPair,
    pub working: Ed25519KeyPair,
    pub certificate: Certificate,
}

impl Fleet {
    /// A root and a working key valid from 2020 to 2100.
    pub fn new() -> Fleet {
        let (root, working) = (key(), key());
        let certificate = certify(&root, &working, 1_577_836_800, 4_102_444_800);
        Fleet {
            root,
            working,
            certificate,
        }
    }

    /// The line for the box's `[sync]` section.
    pub fn pin(&self) -> String {
        format!(
            "fleet_public_key = \"{}\"\n",
            hex(self.root.public_key().as_ref())
        )
    }

    pub fn seal(&self, d: &Desired) -> Vec<u8> {
        serde_json::to_vec(&desired::seal(&self.working, &self.certificate, d)).expect("json")
    }
}

impl Default for Fleet {
    fn default() -> Self {
        Self::new()
    }
}

/// The root's certificate for `working`, valid between the two unix times.
pub fn certify(
    root: &Ed25519KeyPair,
    working: &Ed25519KeyPair,
    not_before: i64,
    not_after: i64,
) -> Certificate {
    keyring::certify(
        root,
        &WorkingKey {
            key: hex(working.public_key().as_ref()),
            name: "test".into(),
            not_before,
            not_after,
        },
    )
}

/// How the console reaches `broker` (anonymous, plain MQTT).
pub fn broker_args(broker: &Mosquitto) -> BrokerArgs {
    BrokerArgs {
        broker: broker.address(),
        ca_file: None,
        client_cert: None,
        client_key: None,
        username: None,
        password_file: None,
    }
}

/// Publishes one QoS 1 message and waits for the broker's ack.
pub fn send(args: &BrokerArgs, topic: &str, payload: Vec<u8>, retain: bool) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(cartable_central::publish::send(
            args, topic, payload, retain,
        ))
}

/// Unix seconds now.
pub use cartable_central::store::now;

/// The message retained on `topic` (waits up to 10 s for it).
pub fn retained(args: &BrokerArgs, topic: &str) -> anyhow::Result<Vec<u8>> {
    use rumqttc::{AsyncClient, Event, Incoming, QoS};
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let options = args.options(&format!("test-retained-{}", std::process::id()))?;
            let (client, mut eventloop) = AsyncClient::new(options, 8);
            client.subscribe(topic, QoS::AtLeastOnce).await?;
            let got = tokio::time::timeout(std::time::Duration::from_secs(10), async {
                loop {
                    if let Event::Incoming(Incoming::Publish(p)) = eventloop.poll().await? {
                        return anyhow::Ok(p.payload.to_vec());
                    }
                }
            })
            .await
            .map_err(|_| anyhow::anyhow!("nothing retained on {topic}"))??;
            Ok(got)
        })
}
