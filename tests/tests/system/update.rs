//! Fleet updates (issue #15): the console cuts a real RAUC bundle (Debian's `rauc
//! bundle`, signed by a test CA made with openssl) into content-addressed chunks,
//! signs the manifest and publishes it over a real Mosquitto; the box rebuilds the
//! bundle from a local origin through its cache, resumes after a kill -9, checks it
//! with `rauc info`, installs it with `rauc extract` into the directory backend's
//! other slot, "reboots" (the daemon exits; its next start is the next boot), checks
//! its health and commits, or rolls back and never takes that version again.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cartable_protocol::desired::{Body, Desired};
use cartable_protocol::release::Release;
use cartable_protocol::topics::{self, DesiredKind, Scope};
use cartable_systests::appliance::Appliance;
use cartable_systests::fleet;
use cartable_systests::mosquitto::Mosquitto;
use cartable_systests::upstream::{Faults, Upstream};

use crate::sync::desired::{central, ceremony, refused, target, wait_stored};
use crate::sync::{BOX, SITE, sync_config, wait_until};

/// The manifest in force on the box, as it stored it.
pub(crate) fn stored_release(app: &Appliance) -> Release {
    let conn = rusqlite::Connection::open_with_flags(
        app.database(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let envelope: String = conn
        .query_row(
            "SELECT envelope FROM desired WHERE kind = 'release'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let envelope: cartable_protocol::desired::Envelope = serde_json::from_str(&envelope).unwrap();
    let desired: Desired = serde_json::from_str(&envelope.payload).unwrap();
    match desired.body {
        Body::Release(r) => r,
        other => panic!("not a release: {other:?}"),
    }
}

#[test]
fn a_release_is_cut_signed_and_stored_and_a_manifest_the_box_cannot_follow_is_refused() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let (pin, key) = ceremony(dir.path());
    let app = Appliance::start(&sync_config(&broker.url(), &pin));
    let store = dir.path().join("chunks");
    let bundle = dir.path().join("cartable-2026.12.1.raucb");
    std::fs::write(&bundle, cartable_systests::noise(3 << 20, 5)).unwrap();
    let fleet = Fleet {
        dir: dir.path(),
        target: target(&key, &broker),
        origin: Upstream::start(),
    };
    let publish = |bundle: &std::path::Path, version: &str, window: &str| {
        fleet.command(bundle, version, "x86_64", &["--window", window])
    };
    let out = publish(&bundle, "2026.12.1", "22:00-05:00");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_stored(&app, "release");
    let release = stored_release(&app);
    assert_eq!(
        (release.version.as_str(), release.board.as_str()),
        ("2026.12.1", "x86_64")
    );
    assert_eq!(release.window.as_deref(), Some("22:00-05:00"));
    assert_eq!(release.bundle.size, 3 << 20);
    // Every chunk the manifest names is in the store under its SHA-256, and put back
    // in order they are the bundle.
    let mut whole = Vec::new();
    for c in &release.chunks {
        let data = std::fs::read(store.join(&c.sha256)).unwrap();
        assert_eq!(data.len(), c.size as usize);
        whole.extend(data);
    }
    assert_eq!(whole, std::fs::read(&bundle).unwrap());

    // The console refuses to sign what a box would refuse, and publishes nothing.
    let out = publish(&bundle, "2026.12.2", "25:00-26:00");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("install window"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A manifest signed with the fleet's key but that a box cannot follow (its chunks
    // do not add up to its bundle) is refused by the box, which keeps the one before.
    let signer = cartable_central::keys::signer(&key, None).unwrap();
    let mut broken = release.clone();
    broken.version = "2026.12.3".into();
    broken.bundle.size += 1;
    let doc = Desired {
        // Newer than the console's (milliseconds of the same second, maybe), within
        // the slack a version may run ahead of its signing time.
        version: fleet::now() as u64 * 1000 + 60_000,
        scope: Scope::Box {
            site: SITE.into(),
            r#box: BOX.into(),
        },
        issued_at: fleet::now(),
        body: Body::Release(broken),
    };
    let envelope = cartable_protocol::desired::seal(&signer.key, &signer.certificate, &doc);
    let topic = topics::desired(&doc.scope, DesiredKind::Release);
    fleet::send(
        &fleet::broker_args(&broker),
        &topic,
        serde_json::to_vec(&envelope).unwrap(),
        true,
    )
    .unwrap();
    wait_until(
        "the broken manifest refused",
        Duration::from_secs(20),
        || refused(&app, "invalid") == 1,
    );
    assert_eq!(stored_release(&app).version, "2026.12.1");
}

// ---- The update agent, with the directory backend ----

pub(crate) const RUNNING: &str = "2026.12.1";

/// A test release CA (certificate, key) made with openssl, as a fleet's would be.
pub(crate) fn release_ca(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj",
        ])
        .arg(format!("/CN=Cartable {name}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// A real RAUC bundle of `rootfs`, signed by `ca`.
pub(crate) fn rauc_bundle(
    dir: &Path,
    version: &str,
    rootfs: &[u8],
    ca: &(PathBuf, PathBuf),
) -> PathBuf {
    let content = dir.join(format!("content-{version}"));
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("rootfs.img"), rootfs).unwrap();
    std::fs::write(
        content.join("manifest.raucm"),
        format!(
            "[update]\ncompatible=cartable-x86_64\nversion={version}\n\n[bundle]\nformat=verity\n\n[image.rootfs]\nfilename=rootfs.img\n"
        ),
    )
    .unwrap();
    let bundle = dir.join(format!("cartable-{version}.raucb"));
    let out = Command::new("rauc")
        .arg(format!("--cert={}", ca.0.display()))
        .arg(format!("--key={}", ca.1.display()))
        .arg("bundle")
        // As the README says to: the root image's bytes as they are, so releases
        // share chunks.
        .arg("--mksquashfs-args=-noI -noD -noF -noX")
        .arg(&content)
        .arg(&bundle)
        .output()
        .expect("rauc runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    bundle
}

/// An install window open all day but for one minute half a day away, whatever the
/// time the test runs at and the box's time zone.
pub(crate) fn window_open_now() -> String {
    let now = (fleet::now() / 60) % 1440;
    let closed = (now + 720) % 1440;
    let open = (closed + 1) % 1440;
    let hm = |m: i64| format!("{:02}:{:02}", m / 60, m % 60);
    format!("{}-{}", hm(open), hm(closed))
}

/// An install window of one minute half a day away: closed whenever the test runs.
pub(crate) fn window_closed_now() -> String {
    let (open, closed) = window_open_now()
        .split_once('-')
        .map(|(o, c)| (o.to_string(), c.to_string()))
        .unwrap();
    format!("{closed}-{open}")
}

/// The box: synced with `broker`, updates through the directory backend.
fn updating_box(broker: &Mosquitto, pin: &str, keyring: &Path) -> Appliance {
    updating_box_named(broker, pin, keyring, BOX)
}

/// [`updating_box`] named `id` in the site.
pub(crate) fn updating_box_named(
    broker: &Mosquitto,
    pin: &str,
    keyring: &Path,
    id: &str,
) -> Appliance {
    updating_box_with(broker, pin, keyring, id, &window_open_now(), "")
}

/// [`updating_box_named`] with its install `window` and `more` lines in its `[update]`
/// section.
pub(crate) fn updating_box_with(
    broker: &Mosquitto,
    pin: &str,
    keyring: &Path,
    id: &str,
    window: &str,
    more: &str,
) -> Appliance {
    Appliance::start(&format!(
        "[appliance]\nid = \"{id}\"\n{}",
        sync_config(
            &broker.url(),
            &format!(
                "{pin}\n[update]\nbackend = \"directory\"\nkeyring = \"{}\"\nboard = \"x86_64\"\nversion = \"{RUNNING}\"\nwindow = \"{window}\"\nhealth_timeout_secs = 8\n{more}",
                keyring.display(),
            ),
        )
    ))
}

pub(crate) fn update_status(app: &Appliance) -> serde_json::Value {
    app.get_json("/api/v1/status")["update"].clone()
}

pub(crate) fn wait_update(app: &Appliance, what: &str, ok: impl Fn(&serde_json::Value) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let last = update_status(app);
        if ok(&last) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}; update status: {last}\n{}",
            app.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The console and the chunk store an origin serves.
pub(crate) struct Fleet<'a> {
    pub(crate) dir: &'a Path,
    /// The console's key and broker arguments.
    pub(crate) target: Vec<String>,
    pub(crate) origin: Upstream,
}

impl Fleet<'_> {
    /// The console signing with `key`, publishing to the whole fleet through
    /// `broker`, and a fresh origin.
    pub(crate) fn whole<'a>(dir: &'a Path, key: &Path, broker: &Mosquitto) -> Fleet<'a> {
        Fleet {
            dir,
            target: [
                "--key",
                key.to_str().unwrap(),
                "--broker",
                &broker.address(),
            ]
            .map(String::from)
            .to_vec(),
            origin: Upstream::start(),
        }
    }

    pub(crate) fn store(&self) -> PathBuf {
        self.dir.join("chunks")
    }

    /// `release publish` of `bundle`, with `extra` arguments.
    pub(crate) fn command(
        &self,
        bundle: &Path,
        version: &str,
        board: &str,
        extra: &[&str],
    ) -> std::process::Output {
        let store = self.store();
        let url = self.origin.url("/chunks");
        let mut args = vec![
            "release",
            "publish",
            bundle.to_str().unwrap(),
            "--version",
            version,
            "--board",
            board,
            "--store",
            store.to_str().unwrap(),
            "--chunk-url",
            &url,
        ];
        args.extend(extra);
        args.extend(self.target.iter().map(String::as_str));
        central(&args)
    }

    /// `release publish`, then the manifest as the box stored it.
    fn publish(&self, app: &Appliance, bundle: &Path, version: &str, board: &str) -> Release {
        self.publish_with(app, bundle, version, board, &[])
    }

    /// [`Fleet::publish`] with `extra` arguments.
    pub(crate) fn publish_with(
        &self,
        app: &Appliance,
        bundle: &Path,
        version: &str,
        board: &str,
        extra: &[&str],
    ) -> Release {
        let before = desired_version(app);
        let out = self.command(bundle, version, board, extra);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        wait_until("the release stored", Duration::from_secs(20), || {
            desired_version(app) != before
        });
        let r = stored_release(app);
        assert_eq!(r.version, version);
        r
    }

    /// Puts the release's chunks `range` on the origin.
    pub(crate) fn serve(&self, r: &Release, range: std::ops::Range<usize>) {
        for c in &r.chunks[range] {
            let bytes = std::fs::read(self.store().join(&c.sha256)).unwrap();
            self.origin
                .put(&format!("/chunks/{}", c.sha256), bytes, Faults::default());
        }
    }
}

/// The version of the release document in force (each publish signs a newer one).
pub(crate) fn desired_version(app: &Appliance) -> Option<i64> {
    let conn = rusqlite::Connection::open_with_flags(
        app.database(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .ok()?;
    conn.query_row(
        "SELECT version FROM desired WHERE kind = 'release'",
        [],
        |r| r.get(0),
    )
    .ok()
}

/// The box reboots into its new slot: the daemon exits, and starts again.
pub(crate) fn reboot(app: &mut Appliance) {
    assert_eq!(
        app.wait_exit(Duration::from_secs(60)),
        Some(0),
        "a clean stop"
    );
    app.restart();
}

#[test]
fn a_release_resumes_after_a_cut_installs_commits_and_the_next_fetches_only_its_changes() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let (pin, key) = ceremony(dir.path());
    let ca = release_ca(dir.path(), "release-ca");
    let mut app = updating_box(&broker, &pin, &ca.0);
    let u = update_status(&app);
    assert_eq!(
        (
            u["running"].as_str(),
            u["slot"].as_str(),
            u["backend"].as_str()
        ),
        (Some(RUNNING), Some("A"), Some("directory")),
        "{u}"
    );
    let fleet = Fleet {
        dir: dir.path(),
        target: target(&key, &broker),
        origin: Upstream::start(),
    };
    let rootfs = cartable_systests::noise(3 << 20, 11);
    let v2 = rauc_bundle(dir.path(), "2026.12.2", &rootfs, &ca);
    let bundle_size = std::fs::metadata(&v2).unwrap().len();

    // The origin has half the chunks: the box takes them and waits for the rest.
    let r2 = fleet.publish(&app, &v2, "2026.12.2", "x86_64");
    let half = r2.chunks.len() / 2;
    fleet.serve(&r2, 0..half);
    wait_update(&app, "half the chunks in place", |u| {
        u["state"] == "downloading" && u["progress"]["chunks_done"] == half as u64
    });
    // A power cut; the rest appears; the box goes on where it stopped.
    app.restart();
    fleet.serve(&r2, half..r2.chunks.len());
    reboot(&mut app);
    // No byte crossed the link twice: the origin sent the bundle's bytes once (a
    // request cut under load resumes with a Range, so requests may be more).
    assert_eq!(fleet.origin.bytes_sent(), bundle_size);
    wait_update(&app, "2026.12.2 committed", |u| {
        u["state"] == "committed" && u["running"] == "2026.12.2" && u["slot"] == "B"
    });
    let slots = app.data_dir().join("update/slots");
    assert_eq!(std::fs::read(slots.join("B/rootfs.img")).unwrap(), rootfs);

    // The next release changes 100 KB of the root: only its new chunks are fetched.
    let mut changed = rootfs.clone();
    changed[1_500_000..1_600_000].copy_from_slice(&cartable_systests::noise(100_000, 12));
    let v3 = rauc_bundle(dir.path(), "2026.12.3", &changed, &ca);
    let before = fleet.origin.bytes_sent();
    let r3 = fleet.publish(&app, &v3, "2026.12.3", "x86_64");
    fleet.serve(&r3, 0..r3.chunks.len());
    reboot(&mut app);
    wait_update(&app, "2026.12.3 committed", |u| {
        u["state"] == "committed" && u["running"] == "2026.12.3" && u["slot"] == "A"
    });
    let old: std::collections::HashSet<&str> =
        r2.chunks.iter().map(|c| c.sha256.as_str()).collect();
    let new_bytes: u64 = r3
        .chunks
        .iter()
        .filter(|c| !old.contains(c.sha256.as_str()))
        .map(|c| u64::from(c.size))
        .sum();
    let fetched = fleet.origin.bytes_sent() - before;
    assert_eq!(fetched, new_bytes);
    assert!(
        fetched * 4 < r3.bundle.size,
        "{fetched} of {} bytes fetched",
        r3.bundle.size
    );
    assert_eq!(std::fs::read(slots.join("A/rootfs.img")).unwrap(), changed);
}

#[test]
fn releases_the_box_must_not_take_are_refused_and_the_running_slot_is_untouched() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let (pin, key) = ceremony(dir.path());
    let ca = release_ca(dir.path(), "release-ca");
    let other = release_ca(dir.path(), "someone-else");
    let mut app = updating_box(&broker, &pin, &ca.0);
    let fleet = Fleet {
        dir: dir.path(),
        target: target(&key, &broker),
        origin: Upstream::start(),
    };
    let refused = refused_for;
    let rootfs = cartable_systests::noise(1 << 20, 21);

    let bundle = rauc_bundle(dir.path(), "2026.12.2", &rootfs, &ca);
    fleet.publish(&app, &bundle, "2026.12.2", "rpi4");
    refused(&app, "2026.12.2", "rpi4");

    let older = rauc_bundle(dir.path(), "2026.11.30", &rootfs, &ca);
    fleet.publish(&app, &older, "2026.11.30", "x86_64");
    refused(&app, "2026.11.30", "older");

    // Signed by a CA the box does not trust: fetched, then refused by RAUC's check.
    let forged = rauc_bundle(dir.path(), "2026.12.3", &rootfs, &other);
    let r = fleet.publish(&app, &forged, "2026.12.3", "x86_64");
    fleet.serve(&r, 0..r.chunks.len());
    refused(&app, "2026.12.3", "signature");

    // A chunk altered on its way is caught by its hash, fetched again, and the
    // release goes through.
    let good = rauc_bundle(
        dir.path(),
        "2026.12.4",
        &cartable_systests::noise(1 << 20, 22),
        &ca,
    );
    let r = fleet.publish(&app, &good, "2026.12.4", "x86_64");
    let path = format!("/chunks/{}", r.chunks[1].sha256);
    let bytes = std::fs::read(fleet.store().join(&r.chunks[1].sha256)).unwrap();
    fleet.origin.put(
        &path,
        bytes,
        Faults {
            corrupt: 1,
            ..Faults::default()
        },
    );
    fleet.serve(&r, 0..1);
    fleet.serve(&r, 2..r.chunks.len());
    reboot(&mut app);
    assert!(fleet.origin.requests(&path).len() >= 2);
    wait_update(&app, "2026.12.4 committed", |u| {
        u["state"] == "committed" && u["running"] == "2026.12.4"
    });
}

#[test]
fn new_firmware_failing_its_health_check_is_rolled_back_and_never_taken_again() {
    let mut broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let (pin, key) = ceremony(dir.path());
    let ca = release_ca(dir.path(), "release-ca");
    let mut app = updating_box(&broker, &pin, &ca.0);
    let uplink = app.get_json("/api/v1/status")["uplink"]["state"].clone();
    assert_eq!(
        uplink, "up",
        "the health check needs the uplink up to miss the broker"
    );
    let fleet = Fleet {
        dir: dir.path(),
        target: target(&key, &broker),
        origin: Upstream::start(),
    };
    let bundle = rauc_bundle(
        dir.path(),
        "2026.12.2",
        &cartable_systests::noise(1 << 20, 31),
        &ca,
    );
    let r = fleet.publish(&app, &bundle, "2026.12.2", "x86_64");
    fleet.serve(&r, 0..r.chunks.len());
    // The new firmware boots without reaching its console: it must go back.
    assert_eq!(app.wait_exit(Duration::from_secs(60)), Some(0));
    broker.stop();
    app.restart();
    wait_update(&app, "the health check under way", |u| {
        u["state"] == "checking" && u["running"] == "2026.12.2"
    });
    reboot(&mut app);
    wait_update(&app, "2026.12.2 rolled back", |u| {
        u["state"] == "rolled_back"
            && u["running"] == RUNNING
            && u["slot"] == "A"
            && u["detail"].as_str().unwrap_or("").contains("broker")
    });
    // Published again (after another release), the version is refused.
    broker.restart();
    let other = fleet.publish(&app, &bundle, "2026.12.5", "rpi4");
    assert_eq!(other.board, "rpi4");
    refused_for(&app, "2026.12.5", "rpi4");
    fleet.publish(&app, &bundle, "2026.12.2", "x86_64");
    refused_for(&app, "2026.12.2", "not taken again: health check failed");
}

pub(crate) fn refused_for(app: &Appliance, version: &str, says: &str) {
    wait_update(app, &format!("{version} refused"), |u| {
        u["state"] == "refused"
            && u["version"] == version
            && u["detail"].as_str().unwrap_or("").contains(says)
    });
    let u = update_status(app);
    assert_eq!(
        (u["running"].as_str(), u["slot"].as_str()),
        (Some(RUNNING), Some("A")),
        "{u}"
    );
}
