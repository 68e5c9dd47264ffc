//! Fleet updates (issue #15), as far as they go: the console cuts a bundle into
//! content-addressed chunks, signs the manifest and publishes it; the box stores a
//! manifest it could follow and refuses, with the fault, one it could not.

use std::time::Duration;

use cartable_protocol::desired::{Body, Desired};
use cartable_protocol::release::Release;
use cartable_protocol::topics::{self, DesiredKind, Scope};
use cartable_systests::appliance::Appliance;
use cartable_systests::fleet;
use cartable_systests::mosquitto::Mosquitto;

use crate::sync::desired::{central, ceremony, refused, target, wait_stored};
use crate::sync::{BOX, SITE, sync_config, wait_until};

/// The manifest in force on the box, as it stored it.
fn stored_release(app: &Appliance) -> Release {
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
    let target = target(&key, &broker);
    let publish = |bundle: &std::path::Path, version: &str, window: &str| {
        let mut args = vec![
            "release",
            "publish",
            bundle.to_str().unwrap(),
            "--version",
            version,
            "--board",
            "x86_64",
            "--store",
            store.to_str().unwrap(),
            "--chunk-url",
            "http://127.0.0.1:9/chunks",
            "--window",
            window,
        ];
        args.extend(target.iter().map(String::as_str));
        central(&args)
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
