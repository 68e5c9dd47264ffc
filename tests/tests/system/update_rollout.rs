//! Rollouts (issue #15), end to end: the console (`cartable-central serve
//! --release-key`) starts a release's groups in turn as real boxes (the directory
//! backend, real RAUC bundles, a real Mosquitto) report committing it, halts when one
//! refuses it, and a person's resume, widen and abort reach the boxes as new signed
//! manifests. A box's group is its stable place in the fleet, the same on both sides.

use std::path::Path;
use std::time::Duration;

use cartable_protocol::release::place_in_fleet;
use cartable_systests::appliance::Appliance;
use cartable_systests::central::Central;
use cartable_systests::mosquitto::Mosquitto;

use crate::sync::desired::{central, ceremony};
use crate::sync::{SITE, wait_until};
use crate::update::{
    Fleet, RUNNING, rauc_bundle, reboot, release_ca, update_status, updating_box_named, wait_update,
};

/// A box name of the site whose place is in `places`.
fn named_in(places: std::ops::Range<u32>) -> String {
    (0..)
        .map(|i| format!("box-{i}"))
        .find(|n| places.contains(&place_in_fleet(SITE, n)))
        .unwrap()
}

/// The console, moving rollouts every second with the working key.
fn console(broker: &Mosquitto, key: &Path) -> Central {
    Central::start_args(
        &broker.url(),
        None,
        &[
            "--release-key".into(),
            key.display().to_string(),
            "--rollout-every".into(),
            "1".into(),
        ],
    )
}

/// `release status --json` of the console.
fn status(c: &Central) -> serde_json::Value {
    let out = central(&[
        "release",
        "status",
        "--json",
        "--database",
        c.database().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn wait_rollout(c: &Central, what: &str, ok: impl Fn(&serde_json::Value) -> bool) {
    wait_until(what, Duration::from_secs(60), || {
        ok(&status(c)["rollouts"][0])
    });
}

/// A person's `release ACTION` on the fleet's rollout.
fn by_hand(c: &Central, fleet: &Fleet<'_>, action: &str, signs: bool) {
    let db = c.database();
    let mut args = vec!["release", action, "--database", db.to_str().unwrap()];
    if signs {
        args.extend(fleet.target.iter().map(String::as_str));
    }
    let out = central(&args);
    assert!(
        out.status.success(),
        "{action}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn publish(fleet: &Fleet<'_>, c: &Central, bundle: &Path, version: &str, extra: &[&str]) {
    let db = c.database();
    let mut args = vec!["--database", db.to_str().unwrap()];
    args.extend(extra);
    let out = fleet.command(bundle, version, "x86_64", &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_rollout_starts_its_second_group_only_when_the_first_has_committed() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let (pin, key) = ceremony(dir.path());
    let ca = release_ca(dir.path(), "release-ca");
    let c = console(&broker, &key);
    let (first, second) = (named_in(0..50), named_in(50..100));
    let mut a = updating_box_named(&broker, &pin, &ca.0, &first);
    let mut b = updating_box_named(&broker, &pin, &ca.0, &second);
    let fleet = Fleet::whole(dir.path(), &key, &broker);
    let bundle = rauc_bundle(
        dir.path(),
        "2026.12.2",
        &cartable_systests::noise(1 << 20, 41),
        &ca,
    );
    publish(
        &fleet,
        &c,
        &bundle,
        "2026.12.2",
        &["--waves", "50,100", "--success", "100"],
    );
    wait_update(&a, "the first group's box downloading", |u| {
        u["version"] == "2026.12.2" && u["state"] != "idle"
    });
    let r = status(&c)["rollouts"][0]["release"].clone();
    assert_eq!(r["rollout"]["wave_percent"], 50, "{r}");
    // Nothing served yet: the first box cannot commit, the second is not asked.
    wait_update(&b, "the second box told to wait", |u| {
        u["version"] == "2026.12.2"
            && u["state"] == "idle"
            && u["detail"].as_str().unwrap_or("").contains("50 %")
    });

    let manifest: cartable_protocol::release::Release =
        serde_json::from_value(r).expect("the rollout's manifest");
    fleet.serve(&manifest, 0..manifest.chunks.len());
    reboot(&mut a);
    wait_update(&a, "committed in the first group", |u| {
        u["state"] == "committed" && u["running"] == "2026.12.2"
    });
    // The console saw it and started the second group: the second box takes it,
    // installs it and reboots.
    reboot(&mut b);
    wait_update(&b, "committed in the second group", |u| {
        u["state"] == "committed" && u["running"] == "2026.12.2"
    });
    wait_rollout(&c, "the rollout finished", |r| r["state"] == "finished");
    let s = status(&c);
    let groups = &s["rollouts"][0]["groups"];
    assert_eq!(
        (
            groups[0]["committed"].as_u64(),
            groups[1]["committed"].as_u64()
        ),
        (Some(1), Some(1)),
        "{s}"
    );
    // The first box committed before the second was ever asked (the console's
    // arrival order).
    let events = |name: &str| c.events(SITE, name, "release");
    let committed_a = events(&first)
        .iter()
        .find(|e| e["body"]["state"] == "committed")
        .map(|e| e["id"].as_i64().unwrap())
        .unwrap();
    let first_b = events(&second)[0]["id"].as_i64().unwrap();
    assert!(
        committed_a < first_b,
        "{committed_a} then {first_b}: {:?}",
        events(&second)
    );
    // Presence reports the firmware version, which the dashboard shows.
    wait_until(
        "the new version on the dashboard",
        Duration::from_secs(20),
        || c.box_row(SITE, &second)["version"] == "2026.12.2",
    );
    let page = std::process::Command::new("curl")
        .args(["-sf", &format!("http://{}/", c.http)])
        .output()
        .unwrap();
    let page = String::from_utf8_lossy(&page.stdout);
    assert!(
        page.contains("finished") && page.contains("2026.12.2"),
        "{page}"
    );
    drop((a, b));
}

#[test]
fn a_refusal_halts_the_rollout_and_resume_widen_and_abort_reach_the_boxes() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let (pin, key) = ceremony(dir.path());
    let ca = release_ca(dir.path(), "release-ca");
    let other = release_ca(dir.path(), "someone-else");
    let c = console(&broker, &key);
    let (first, second) = (named_in(0..50), named_in(50..100));
    let a = updating_box_named(&broker, &pin, &ca.0, &first);
    let b = updating_box_named(&broker, &pin, &ca.0, &second);
    let fleet = Fleet::whole(dir.path(), &key, &broker);
    // Signed by a CA the boxes do not trust: the first box refuses it.
    let forged = rauc_bundle(
        dir.path(),
        "2026.12.2",
        &cartable_systests::noise(1 << 20, 42),
        &other,
    );
    publish(&fleet, &c, &forged, "2026.12.2", &["--waves", "50,100"]);
    let r: cartable_protocol::release::Release =
        serde_json::from_value(status(&c)["rollouts"][0]["release"].clone()).unwrap();
    fleet.serve(&r, 0..r.chunks.len());
    wait_update(&a, "refused", |u| u["state"] == "refused");
    wait_rollout(&c, "halted", |r| {
        r["state"] == "halted" && r["detail"].as_str().unwrap_or("").contains("1 of 1")
    });
    assert_eq!(update_status(&b)["state"], "idle");

    // Resumed, the refusal is accepted; widened by hand, the second box takes it,
    // refuses it too, and the rollout halts again on that new failure.
    by_hand(&c, &fleet, "resume", false);
    wait_rollout(&c, "resumed", |r| {
        r["state"] == "running" && r["failures_accepted"] == 1
    });
    by_hand(&c, &fleet, "widen", true);
    wait_update(&b, "refused by the second box", |u| {
        u["state"] == "refused" && u["version"] == "2026.12.2"
    });
    wait_rollout(&c, "halted again", |r| r["state"] == "halted");

    // A release whose chunks never come: both boxes start; the abort stops them and
    // their partial bundles go.
    let good = rauc_bundle(
        dir.path(),
        "2026.12.3",
        &cartable_systests::noise(1 << 20, 43),
        &ca,
    );
    publish(&fleet, &c, &good, "2026.12.3", &[]);
    for app in [&a, &b] {
        wait_update(app, "downloading", |u| {
            u["state"] == "downloading" && u["version"] == "2026.12.3"
        });
    }
    by_hand(&c, &fleet, "abort", true);
    for app in [&a, &b] {
        wait_update(app, "aborted", |u| {
            u["state"] == "aborted" && u["running"] == RUNNING
        });
        assert!(!app.data_dir().join("update/bundle.raucb").exists());
    }
    wait_rollout(&c, "aborted", |r| r["state"] == "aborted");
    drop::<(Appliance, Appliance)>((a, b));
}

#[test]
fn a_signed_rollback_order_takes_a_box_back_to_an_older_release() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let (pin, key) = ceremony(dir.path());
    let ca = release_ca(dir.path(), "release-ca");
    let c = console(&broker, &key);
    let mut a = updating_box_named(&broker, &pin, &ca.0, &named_in(0..100));
    let fleet = Fleet::whole(dir.path(), &key, &broker);
    let old_root = cartable_systests::noise(1 << 20, 44);
    let old = rauc_bundle(dir.path(), RUNNING, &old_root, &ca);
    let new = rauc_bundle(
        dir.path(),
        "2026.12.2",
        &cartable_systests::noise(1 << 20, 45),
        &ca,
    );
    publish(&fleet, &c, &new, "2026.12.2", &[]);
    let r: cartable_protocol::release::Release =
        serde_json::from_value(status(&c)["rollouts"][0]["release"].clone()).unwrap();
    fleet.serve(&r, 0..r.chunks.len());
    reboot(&mut a);
    wait_update(&a, "2026.12.2 committed", |u| {
        u["state"] == "committed" && u["running"] == "2026.12.2"
    });
    // The old release published as it was is refused: older than what runs.
    publish(&fleet, &c, &old, RUNNING, &[]);
    wait_update(&a, "an unsigned downgrade refused", |u| {
        u["state"] == "refused" && u["detail"].as_str().unwrap_or("").contains("older")
    });
    // A rollback order is a decision of the fleet, signed: the box goes back. The
    // refusal above is no verdict on the version, so it is taken now.
    publish(&fleet, &c, &old, RUNNING, &["--downgrade"]);
    let r: cartable_protocol::release::Release =
        serde_json::from_value(status(&c)["rollouts"][0]["release"].clone()).unwrap();
    assert!(r.downgrade);
    fleet.serve(&r, 0..r.chunks.len());
    reboot(&mut a);
    wait_update(&a, "back on the old release", |u| {
        u["state"] == "committed" && u["running"] == RUNNING && u["slot"] == "A"
    });
    wait_rollout(&c, "the rollback finished", |r| r["state"] == "finished");
}
