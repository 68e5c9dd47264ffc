//! A kill -9 or a power cut at each step of an update (issue #15) leaves a box that
//! boots and finishes the release or rolls it back, never one stuck between slots.
//!
//! The download step's cut is in `update`. Here: after the check (the bundle is not
//! fetched again), in the middle of the install (a half-written slot), between the
//! install and the reboot (the daemon killed before the machine went down), and during
//! the health check (a crash of the daemon: the check runs again; a power cut: the
//! bootloader's counting falls back to the slot that was good). The box is the
//! directory backend: a "power cut" is a kill -9 whose next start is a boot.

use std::path::PathBuf;
use std::time::Duration;

use cartable_systests::appliance::Appliance;
use cartable_systests::mosquitto::Mosquitto;
use cartable_systests::upstream::Upstream;

use crate::sync::desired::{ceremony, target};
use crate::update::{
    Fleet, RUNNING, rauc_bundle, reboot, release_ca, update_status, updating_box_named,
    wait_update, window_open_now,
};

fn slots(app: &Appliance) -> PathBuf {
    app.data_dir().join("update/slots")
}

/// The modelled bootloader's environment, changed by `f`.
fn boot_env(app: &Appliance, f: impl FnOnce(&mut serde_json::Value)) {
    let path = slots(app).join("boot.json");
    let mut env: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    f(&mut env);
    std::fs::write(&path, serde_json::to_vec(&env).unwrap()).unwrap();
}

/// The power goes: the daemon dies where it is, and its next start is a boot.
fn power_cut(app: &mut Appliance) {
    app.kill9();
    boot_env(app, |env| env["reboot"] = true.into());
    app.restart();
}

/// The update agent's row, changed by SQL while the daemon is down.
fn set_target(app: &Appliance, sql: &str) {
    let conn = rusqlite::Connection::open(app.database()).unwrap();
    assert_eq!(conn.execute(sql, []).unwrap(), 1, "{sql}");
}

#[test]
fn a_kill_at_every_step_leaves_a_box_that_boots_and_finishes_or_rolls_back() {
    let mut broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let (pin, key) = ceremony(dir.path());
    let ca = release_ca(dir.path(), "release-ca");
    let mut app = updating_box_named(&broker, &pin, &ca.0, crate::sync::BOX);
    let fleet = Fleet {
        dir: dir.path(),
        target: target(&key, &broker),
        origin: Upstream::start(),
    };
    // The window open now, and its one closed minute turned into the only open one.
    let open = window_open_now();
    let (from, to) = open.split_once('-').unwrap();
    let closed = format!("{to}-{from}");

    // 1. Checked and waiting for the window: a power cut fetches nothing again.
    let root2 = cartable_systests::noise(1 << 20, 51);
    let v2 = rauc_bundle(dir.path(), "2026.12.2", &root2, &ca);
    let r2 = fleet.publish_with(&app, &v2, "2026.12.2", "x86_64", &["--window", &closed]);
    fleet.serve(&r2, 0..r2.chunks.len());
    wait_update(&app, "waiting for the window", |u| {
        u["state"] == "waiting_for_window"
    });
    let fetched = fleet.origin.bytes_sent();
    power_cut(&mut app);
    wait_update(&app, "still waiting after the cut", |u| {
        u["state"] == "waiting_for_window" && u["running"] == RUNNING && u["slot"] == "A"
    });
    assert_eq!(fleet.origin.bytes_sent(), fetched, "fetched again");

    // 2. Killed in the middle of the install: slot B half written. The next start
    // installs again from the start and goes on.
    app.kill9();
    set_target(&app, "UPDATE update_target SET state = 'installing'");
    std::fs::create_dir_all(slots(&app).join("B.new")).unwrap();
    std::fs::write(slots(&app).join("B.new/rootfs.img"), b"half").unwrap();
    app.respawn();
    reboot(&mut app);
    wait_update(&app, "2026.12.2 committed", |u| {
        u["state"] == "committed" && u["running"] == "2026.12.2" && u["slot"] == "B"
    });
    assert_eq!(
        std::fs::read(slots(&app).join("B/rootfs.img")).unwrap(),
        root2
    );
    assert!(!slots(&app).join("B.new").exists());

    // 3. Killed between the install and the reboot: the slot is written, the machine
    // never went down. The next start sees the same boot and reboots, not a fallback.
    let root3 = cartable_systests::noise(1 << 20, 52);
    let v3 = rauc_bundle(dir.path(), "2026.12.3", &root3, &ca);
    let r3 = fleet.publish_with(&app, &v3, "2026.12.3", "x86_64", &[]);
    fleet.serve(&r3, 0..r3.chunks.len());
    assert_eq!(app.wait_exit(Duration::from_secs(60)), Some(0));
    boot_env(&app, |env| env["reboot"] = false.into());
    app.respawn();
    reboot(&mut app);
    wait_update(&app, "2026.12.3 committed", |u| {
        u["state"] == "committed" && u["running"] == "2026.12.3" && u["slot"] == "A"
    });
    assert!(
        app.log().contains("the reboot never happened"),
        "{}",
        app.log()
    );

    // 4. During the health check (the broker is away, so the check waits): a crash
    // of the daemon runs the check again; a power cut falls back to 2026.12.3.
    let v4 = rauc_bundle(
        dir.path(),
        "2026.12.4",
        &cartable_systests::noise(1 << 20, 53),
        &ca,
    );
    let r4 = fleet.publish_with(&app, &v4, "2026.12.4", "x86_64", &[]);
    fleet.serve(&r4, 0..r4.chunks.len());
    assert_eq!(app.wait_exit(Duration::from_secs(60)), Some(0));
    broker.stop();
    app.restart();
    let checking = |u: &serde_json::Value| u["state"] == "checking" && u["running"] == "2026.12.4";
    wait_update(&app, "checking 2026.12.4", checking);
    app.restart();
    wait_update(&app, "checking again after a crash", checking);
    power_cut(&mut app);
    wait_update(&app, "back on 2026.12.3", |u| {
        u["state"] == "rolled_back"
            && u["running"] == "2026.12.3"
            && u["slot"] == "A"
            && u["detail"]
                .as_str()
                .unwrap_or("")
                .contains("did not come up")
    });
    // The good slot serves on, and is confirmed at each start.
    broker.restart();
    app.restart();
    let u = update_status(&app);
    assert_eq!(
        (u["running"].as_str(), u["slot"].as_str()),
        (Some("2026.12.3"), Some("A")),
        "{u}"
    );
}
