//! Several `cartable-central serve` on one PostgreSQL, sharing the boxes' events
//! through the broker's shared subscription (`--share-group`): a real Mosquitto,
//! a fleet's backlog published as the boxes seal it, one instance killed (SIGKILL)
//! while both drain it, then back under its client id. Nothing is lost, nothing is
//! stored or counted twice, and the usage rollups, which two instances update at
//! once, add up.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cartable_systests::bins::bin;
use cartable_systests::central::Central;
use cartable_systests::mosquitto::Mosquitto;
use cartable_systests::postgres::Postgres;
use nix::sys::signal::Signal;

use crate::sync::wait_until;

const BOXES: u64 = 12;
const BATCHES: u64 = 60;
const PER_BATCH: u64 = 40;

/// An instance of the group named in `group` (a file) with its own client id; its
/// log says each batch it stores.
fn instance(broker: &Mosquitto, pg: &Postgres, group: &Path, id: &str) -> Central {
    let args: Vec<String> = vec![
        "--client-id".into(),
        id.into(),
        "--share-group-file".into(),
        group.display().to_string(),
    ];
    let c = Central::start_logging(
        &broker.address(),
        Some(&pg.url()),
        &args,
        "info,cartable_central::ingest=debug",
    );
    wait_until(&format!("{id} subscribed"), Duration::from_secs(20), || {
        c.log().contains("subscribed")
    });
    assert!(!c.log().contains("refused"), "{}", c.log());
    c
}

fn stored(c: &Central) -> i64 {
    c.counter("events")
}

#[test]
fn two_centrals_share_the_events_and_one_killed_mid_drain_loses_none() {
    let pg = Postgres::start();
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let group = dir.path().join("share-group");
    std::fs::write(&group, "3f9c1e7a5b2d4c6e8a0b1c2d3e4f5a6b\n").unwrap();
    let a = instance(&broker, &pg, &group, "central-a");
    let b = instance(&broker, &pg, &group, "central-b");
    let total = (BOXES * BATCHES * PER_BATCH) as i64;
    let address = broker.address();
    let flood = std::thread::spawn(move || {
        let (host, port) = address.rsplit_once(':').unwrap();
        let out = Command::new(bin("flood-central"))
            .args([host, port])
            .args([BOXES, BATCHES, PER_BATCH].map(|n| n.to_string()))
            .output()
            .expect("flood-central runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    });
    wait_until(
        "a fifth of the backlog stored",
        Duration::from_secs(120),
        || stored(&b) >= total / 5,
    );
    a.signal(Signal::SIGKILL);
    let at_kill = stored(&b);
    assert!(at_kill < total, "the drain was over before the kill");
    let a_took = a.log().matches("batch stored").count();
    assert!(a_took > 0, "instance a took no batch: {}", a.log());
    let sent = flood.join().unwrap();
    assert_eq!(sent["events"], total);
    // Back under the same client id: the broker hands it what it had taken and not
    // acknowledged (its transaction died with it), and what came for it meanwhile.
    let a = instance(&broker, &pg, &group, "central-a");
    wait_until("the whole backlog stored", Duration::from_secs(180), || {
        stored(&b) >= total
    });
    assert!(
        b.log().matches("batch stored").count() > 0,
        "instance b took no batch"
    );
    assert_eq!(stored(&a), total, "every event stored once");
    // Each box's events, every sequence number once.
    let boxes = a.get("/api/v1/boxes").unwrap();
    let boxes = boxes.as_array().unwrap();
    assert_eq!(boxes.len() as u64, BOXES);
    for row in boxes {
        assert_eq!(row["events"], BATCHES * PER_BATCH, "{row}");
    }
    let site = boxes[0]["site"].as_str().unwrap();
    let box_id = boxes[0]["box"].as_str().unwrap();
    let events = a
        .get(&format!(
            "/api/v1/events?site={site}&box={box_id}&limit=100000"
        ))
        .unwrap();
    let mut seqs: Vec<i64> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=(BATCHES * PER_BATCH) as i64).collect::<Vec<_>>());
    // A minute of use per event: the tablets' usage, which both instances added to
    // at once, neither lost an addition nor counted a redelivered batch again.
    let usage = a.get("/api/v1/usage").unwrap();
    let minutes: i64 = usage["report"]["tablets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["minutes"].as_i64().unwrap())
        .sum();
    assert_eq!(minutes, total, "{}", usage["report"]["tablets"]);
    let site_minutes: i64 = usage["report"]["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["minutes"].as_i64().unwrap())
        .sum();
    assert_eq!(site_minutes, total);
}
