//! LAN peers (issue #15): the site's boxes pointed at one of theirs (`[update] peers`)
//! take a release through it, so each chunk crosses the school's link once, whatever
//! the number of boxes; the peer is a shortcut, never a dependency: with it down, a
//! box goes to the origin.

use cartable_protocol::release::Release;
use cartable_systests::appliance::Appliance;
use cartable_systests::mosquitto::Mosquitto;

use crate::sync::desired::ceremony;
use crate::update::{
    Fleet, RUNNING, rauc_bundle, reboot, release_ca, stored_release, update_status,
    updating_box_with, wait_update, window_closed_now, window_open_now,
};

/// How many times the origin sent each of `r`'s chunks, in order (asking before
/// the chunks were put there is not counted: nothing crossed the link).
fn sent(fleet: &Fleet<'_>, r: &Release) -> Vec<usize> {
    r.chunks
        .iter()
        .map(|c| {
            fleet
                .origin
                .requests(&format!("/chunks/{}", c.sha256))
                .iter()
                .filter(|s| s.found)
                .count()
        })
        .collect()
}

/// Each box installs `version`, reboots into it and commits it.
fn commit_all(boxes: &mut [Appliance], version: &str) {
    for b in boxes {
        reboot(b);
        wait_update(b, &format!("{version} committed"), |u| {
            u["state"] == "committed" && u["running"] == version
        });
    }
}

#[test]
fn boxes_pointed_at_a_peer_make_each_chunk_cross_the_link_once_and_do_without_it() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let (pin, key) = ceremony(dir.path());
    let ca = release_ca(dir.path(), "release-ca");
    // The seed installs at night (its window is closed now): it fetches, holds and
    // serves the release all day.
    let seed = updating_box_with(&broker, &pin, &ca.0, "seed", &window_closed_now(), "");
    let peers = format!("peers = [\"http://{}\"]\n", seed.http);
    let fleet = Fleet::whole(dir.path(), &key, &broker);
    let bundle = rauc_bundle(
        dir.path(),
        "2026.12.2",
        &cartable_systests::noise(2 << 20, 46),
        &ca,
    );
    let out = fleet.command(&bundle, "2026.12.2", "x86_64", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_update(&seed, "the seed holds the release", |u| {
        u["version"] == "2026.12.2"
    });
    let r = stored_release(&seed);
    fleet.serve(&r, 0..r.chunks.len());
    // The other boxes start once the origin serves the chunks (they take the release
    // retained on the broker): before it, a box whose peer answered 404 went to the
    // origin itself, as it should, and a chunk could cross the link twice.
    let mut boxes: Vec<_> = ["box-1", "box-2"]
        .iter()
        .map(|id| updating_box_with(&broker, &pin, &ca.0, id, &window_open_now(), &peers))
        .collect();
    commit_all(&mut boxes, "2026.12.2");
    wait_update(
        &seed,
        "the seed verified it and waits for its window",
        |u| u["state"] == "waiting_for_window",
    );
    assert_eq!(
        sent(&fleet, &r),
        vec![1; r.chunks.len()],
        "each chunk sent by the origin once for three boxes"
    );
    assert_eq!(update_status(&seed)["running"], RUNNING);

    // The seed is down: the next release comes from the origin, to each box.
    drop(seed);
    let bundle = rauc_bundle(
        dir.path(),
        "2026.12.3",
        &cartable_systests::noise(1 << 20, 50),
        &ca,
    );
    let out = fleet.command(&bundle, "2026.12.3", "x86_64", &[]);
    assert!(out.status.success());
    wait_update(&boxes[0], "2026.12.3 stored", |u| {
        u["version"] == "2026.12.3"
    });
    let first = r;
    let r = stored_release(&boxes[0]);
    fleet.serve(&r, 0..r.chunks.len());
    commit_all(&mut boxes, "2026.12.3");
    // Chunks the boxes held already (in the bundle before: sent once, then) were
    // copied, not fetched.
    let expected: Vec<usize> = r
        .chunks
        .iter()
        .map(|c| {
            if first.chunks.iter().any(|f| f.sha256 == c.sha256) {
                1
            } else {
                2
            }
        })
        .collect();
    assert_eq!(
        sent(&fleet, &r),
        expected,
        "each box fetched each new chunk from the origin"
    );
}
