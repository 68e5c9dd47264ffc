//! Entry point for the fuzzer (`fuzz/`): any message on a box's topics, through the
//! same checks and store as `serve`. A unit test runs it on pseudo-random inputs too.

use std::sync::OnceLock;

use cartable_protocol::sealed;
use cartable_protocol::topics;
use ring::rand::SystemRandom;
use ring::signature::Ed25519KeyPair;

use crate::store::Db;

struct Harness {
    runtime: tokio::runtime::Runtime,
    db: Db,
    /// The key of the box `s/b`, so inputs can be sealed and reach the parsers.
    key: Ed25519KeyPair,
    _dir: tempfile::TempDir,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join("central.db");
        let db = runtime
            .block_on(Db::open(path.to_str().expect("a UTF-8 path")))
            .expect("the database");
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("random");
        let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("a key");
        Harness {
            runtime,
            db,
            key,
            _dir: dir,
        }
    })
}

/// Byte 0 picks the topic (events, presence, state of box `s/b`, or another box's);
/// byte 1 whether the rest is sealed with the box's key (and its stamp); the rest is
/// the message. Nothing may panic, and only a store failure may be an error.
pub fn message(data: &[u8]) {
    let [which, seal, rest @ ..] = data else {
        return;
    };
    let box_id = if which & 4 == 0 { "b" } else { "other" };
    let topic = match which % 3 {
        0 => topics::events("s", box_id),
        1 => topics::presence("s", box_id),
        _ => topics::state("s", box_id),
    };
    let h = harness();
    let payload = if seal & 1 == 1 {
        sealed::seal(&h.key, &topic, u64::from(*seal), rest)
    } else {
        rest.to_vec()
    };
    h.runtime
        .block_on(crate::ingest::handle(&h.db, &topic, &payload))
        .expect("only the store may fail");
}

#[cfg(test)]
mod tests {
    use cartable_protocol::events::{Batch, Event, EventBody};

    #[test]
    fn messages_never_panic() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let batch = Batch {
            site: "s".into(),
            r#box: "b".into(),
            events: vec![Event {
                seq: 1,
                at: 1,
                body: EventBody::Audit {
                    actor: "a".into(),
                    action: "b".into(),
                    detail: String::new(),
                },
            }],
        }
        .encode();
        let seeds: [&[u8]; 4] = [
            &batch,
            br#"{"online":true,"version":"1"}"#,
            br#"{"version":"1","uptime_secs":1,"disk_free_bytes":1,"backlog":{"rows":0,"bytes":0,"oldest_at":null,"dropped_rows":0,"last_sync_at":null},"desired":{},"refused":{},"counts":{}}"#,
            b"",
        ];
        for i in 0..3_000usize {
            let mut body = seeds[i % seeds.len()].to_vec();
            for _ in 0..(next() % 4) {
                if !body.is_empty() {
                    let at = next() as usize % body.len();
                    body[at] = next() as u8;
                }
            }
            if i % 7 == 0 {
                body.truncate(next() as usize % (body.len() + 1));
            }
            let mut data = vec![(i % 6) as u8, (i / 6 % 3) as u8];
            data.extend(body);
            super::message(&data);
        }
    }
}
