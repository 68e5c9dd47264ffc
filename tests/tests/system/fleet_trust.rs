//! The fleet's trust, end to end, with a real Mosquitto and the real binaries: a broker
//! client (or the broker) cannot forge, erase or hide a box's messages; the shipped
//! broker configuration keeps each box to its own topics; the keyring's root ends a
//! leaked working key.

use std::time::Duration;

use cartable_protocol::desired::hex;
use cartable_protocol::events::{Batch, Event, EventBody, Presence};
use cartable_protocol::sealed;
use cartable_protocol::topics;
use cartable_systests::appliance::Appliance;
use cartable_systests::central::Central;
use cartable_systests::fleet::{self, Fleet};
use cartable_systests::mosquitto::Mosquitto;
use ring::signature::KeyPair;

use crate::sync::desired::{central, policies, publish, refused, store_number, verdict};
use crate::sync::{BOX, SITE, audit_details, expected, sync_config, wait_until};

const WITHIN: Duration = Duration::from_secs(30);

/// Attendance a forger would like central to believe, with `seqs`.
fn forged_batch(seqs: std::ops::Range<u64>) -> Vec<u8> {
    Batch {
        site: SITE.into(),
        r#box: BOX.into(),
        events: seqs
            .map(|seq| Event {
                seq,
                at: fleet::now(),
                body: EventBody::Attendance {
                    class: "CM1-A".into(),
                    pupil: "forged".into(),
                    present: false,
                },
            })
            .collect(),
    }
    .encode()
}

fn presence(online: bool) -> Vec<u8> {
    serde_json::to_vec(&Presence {
        online,
        version: "forged".into(),
    })
    .unwrap()
}

fn box_key(app: &Appliance) -> String {
    app.get_json("/api/v1/status")["sync"]["box_key"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_forger_on_the_broker_can_neither_add_nor_erase_nor_hide_a_box_s_events() {
    let broker = Mosquitto::start();
    let args = fleet::broker_args(&broker);
    let central_side = Central::start(&broker.address());
    let mut app = Appliance::start(&sync_config(&broker.url(), ""));
    app.post_audits("g", 0..5);
    wait_until("the first events", WITHIN, || {
        audit_details(&central_side).len() == 5
    });
    // Pinned at first contact, and shown: the key the box reports.
    let row = central_side.box_row(SITE, BOX);
    assert_eq!(row["key"], box_key(&app), "{row}");
    assert_eq!(row["online"], true);
    let genuine_online = fleet::retained(&args, &topics::presence(SITE, BOX)).unwrap();

    // Forged attendance with the next sequence numbers: unsealed, then sealed with a
    // key of the forger's own. Then a spoofed offline presence, both ways.
    let events = topics::events(SITE, BOX);
    let presence_topic = topics::presence(SITE, BOX);
    let forger = fleet::key();
    fleet::send(&args, &events, forged_batch(6..30), false).unwrap();
    let sealed_forgery = sealed::seal(&forger, &events, 0, &forged_batch(6..30));
    fleet::send(&args, &events, sealed_forgery, false).unwrap();
    fleet::send(&args, &presence_topic, presence(false), true).unwrap();
    let sealed_offline = sealed::seal(&forger, &presence_topic, u64::MAX, &presence(false));
    fleet::send(&args, &presence_topic, sealed_offline, true).unwrap();
    wait_until("the forgeries counted", WITHIN, || {
        central_side.counter("unsigned") == 2 && central_side.counter("held") == 2
    });

    // The box's own events with those sequence numbers all arrive; nothing forged does.
    app.post_audits("g", 5..10);
    wait_until("the genuine events", WITHIN, || {
        audit_details(&central_side).len() == 10
    });
    assert_eq!(audit_details(&central_side), expected("g", 0..10));
    assert!(central_side.events(SITE, BOX, "attendance").is_empty());
    let row = central_side.box_row(SITE, BOX);
    assert_eq!(
        row["online"], true,
        "a spoofed presence showed the box offline: {row}"
    );
    assert_eq!(row["held"], 2, "{row}");

    // The box says goodbye; its own old "online", replayed, does not bring it back.
    app.stop();
    wait_until("the box offline", WITHIN, || {
        central_side.box_row(SITE, BOX)["online"] == false
    });
    fleet::send(&args, &presence_topic, genuine_online, true).unwrap();
    wait_until("the replay dropped", WITHIN, || {
        central_side.counter("stale") >= 1
    });
    assert_eq!(central_side.box_row(SITE, BOX)["online"], false);
}

#[test]
fn a_box_pinned_to_another_key_is_held_until_the_admin_pins_its_new_one() {
    let broker = Mosquitto::start();
    let central_side = Central::start(&broker.address());
    let database = central_side.database();
    let db = database.to_str().unwrap();
    // The admin pinned a key ahead of time: the box's old one, before a reinstall.
    let old = hex(fleet::key().public_key().as_ref());
    let add = |key: &str, replace: bool| {
        let mut args = vec![
            "box",
            "add",
            "--site",
            SITE,
            "--box",
            BOX,
            "--key",
            key,
            "--database",
            db,
        ];
        if replace {
            args.push("--replace");
        }
        central(&args)
    };
    assert!(add(&old, false).status.success());

    let app = Appliance::start(&sync_config(&broker.url(), ""));
    app.post_audits("h", 0..5);
    wait_until("the box's messages held", WITHIN, || {
        central_side.box_row(SITE, BOX)["held"].as_i64() >= Some(3)
    });
    assert!(audit_details(&central_side).is_empty());
    let dashboard = std::process::Command::new("curl")
        .args(["-sf", &format!("http://{}/", central_side.http)])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&dashboard.stdout).contains("messages retenus"));

    // `cartable box-key` on the box prints what the status shows.
    let out = std::process::Command::new(cartable_systests::bins::bin("cartable"))
        .args(["box-key", "--config"])
        .arg(&app.config)
        .output()
        .unwrap();
    let printed = String::from_utf8(out.stdout).unwrap();
    let new = box_key(&app);
    assert!(
        printed.contains(&format!("box_key = \"{new}\"")),
        "{printed}"
    );

    let refused_add = add(&new, false);
    assert!(!refused_add.status.success());
    assert!(String::from_utf8_lossy(&refused_add.stderr).contains("--replace"));
    let out = add(&new, true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("taken in"));
    // What was held is in, in order, and what follows flows as usual.
    wait_until("the held events taken in", WITHIN, || {
        audit_details(&central_side).len() == 5
    });
    app.post_audits("h", 5..8);
    wait_until("the next events", WITHIN, || {
        audit_details(&central_side).len() == 8
    });
    assert_eq!(audit_details(&central_side), expected("h", 0..8));
}

#[test]
fn the_shipped_broker_configuration_keeps_each_box_to_its_own_topics() {
    let dir = tempfile::tempdir().unwrap();
    let pki = cartable_systests::tls::Pki::new(dir.path(), "localhost");
    let me = format!("{SITE}/{BOX}");
    let broker = Mosquitto::start_shipped(
        &pki,
        &[
            ("central", "central-pw"),
            (&me, "box-pw"),
            ("default/other", "other-pw"),
        ],
    );
    let url = format!("mqtts://localhost:{}", broker.port);
    let password = |name: &str, pw: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, format!("{pw}\n")).unwrap();
        p.display().to_string()
    };
    let ca = pki.ca.display().to_string();
    let central_pw = password("central.pw", "central-pw");
    let central_side = Central::start_args(
        &url,
        None,
        &[
            "--ca-file".into(),
            ca.clone(),
            "--username".into(),
            "central".into(),
            "--password-file".into(),
            central_pw.clone(),
            "--share-group-file".into(),
            password("share-group", "e1b0c4a2f97d3b5e8c6a1d0f2b4e7a9c"),
        ],
    );
    wait_until("central subscribed", WITHIN, || {
        central_side.log().contains("subscribed")
    });
    assert!(
        !central_side.log().contains("refused"),
        "{}",
        central_side.log()
    );
    // Another box's account tries to join central's shared subscription, to be
    // handed every other batch (which it may not read, so the broker would drop
    // them). Mosquitto lets any account subscribe to anything (its ACL is checked
    // on delivery only): the group's secret name is what keeps it out.
    let thief = {
        // Line-buffered: mosquitto_sub says the SUBACK on a pipe.
        let mut cmd = std::process::Command::new("stdbuf");
        cmd.args([
            "-oL",
            "mosquitto_sub",
            "-d",
            "-h",
            "localhost",
            "-p",
            &broker.port.to_string(),
        ])
        .args(["--cafile", &ca, "-u", "default/other", "-P", "other-pw"])
        .args(["-q", "1"])
        .args(
            ["central", "cartable", "cartable-central"]
                .iter()
                .flat_map(|g| ["-t".to_string(), topics::shared_events_filter(g)]),
        );
        cartable_systests::child::TestChild::spawn(cmd).expect("mosquitto_sub starts")
    };
    std::iter::from_fn(|| thief.next_line(WITHIN))
        .find(|l| l.starts_with("Subscribed"))
        .expect("a SUBACK");
    let app = Appliance::start(&sync_config(
        &url,
        &format!(
            "ca_file = \"{ca}\"\nusername = \"{me}\"\npassword_file = \"{}\"\n",
            password("box.pw", "box-pw")
        ),
    ));
    // One batch at a time: in the group, the thief would take one of each two.
    for i in 0..5 {
        app.post_audits("a", i..i + 1);
        wait_until("each event over TLS with passwords", WITHIN, || {
            audit_details(&central_side).len() == i + 1
        });
    }
    drop(thief);

    let as_user = |user: &str, pw: &str| {
        let mut a = fleet::broker_args(&broker);
        a.broker = url.clone();
        a.ca_file = Some(pki.ca.clone());
        a.username = Some(user.into());
        a.password_file = Some(password(&format!("{}.pw", user.replace('/', "_")), pw).into());
        a
    };
    let other = as_user("default/other", "other-pw");
    // Another box's account: the broker drops its publish on this box's topic, and
    // takes the same on its own (central then counts it as unsigned: one, not two).
    // (A denied publish gets a PUBACK or, at times, the connection closed: Mosquitto
    // 2.0 does either. What counts is that nobody receives it.)
    let _ = fleet::send(&other, &topics::events(SITE, BOX), b"x".to_vec(), false);
    fleet::send(&other, &topics::events(SITE, "other"), b"x".to_vec(), false).unwrap();
    wait_until("the other box's own message", WITHIN, || {
        central_side.counter("unsigned") >= 1
    });
    assert_eq!(central_side.counter("unsigned"), 1);

    // Desired state is the central side's to write: a box's retained write is dropped.
    let policies_topic = topics::desired(&topics::Scope::Fleet, topics::DesiredKind::Policies);
    let _ = fleet::send(&other, &policies_topic, b"{}".to_vec(), true);
    let central_args = as_user("central", "central-pw");
    assert!(fleet::retained(&central_args, &policies_topic).is_err());

    // No account, no connection; a wrong password neither.
    let mut anonymous = central_args.clone();
    anonymous.username = None;
    anonymous.password_file = None;
    assert!(fleet::send(&anonymous, &policies_topic, b"{}".to_vec(), true).is_err());
    assert!(fleet::send(&as_user("central", "wrong"), &policies_topic, vec![], true).is_err());
}

/// A new working key certified by `fleet`'s root for the period given.
fn certified_by(fleet: &Fleet, not_before: i64, not_after: i64) -> Fleet {
    let working = fleet::key();
    let certificate = fleet::certify(&fleet.root, &working, not_before, not_after);
    Fleet {
        // Only the working key and its certificate sign; this root is not used.
        root: fleet::key(),
        working,
        certificate,
    }
}

#[test]
fn a_leaked_working_key_cannot_freeze_the_fleet_and_the_root_ends_it() {
    let broker = Mosquitto::start();
    let leaked = Fleet::new();
    let mut app = Appliance::start(&sync_config(&broker.url(), &leaked.pin()));

    // A version of 2^64-1 would freeze every later policy: it is refused.
    publish(&broker, leaked.seal(&policies(u64::MAX, "frozen.test")));
    wait_until("the leap refused", WITHIN, || {
        refused(&app, "version_leap") == 1
    });
    let now_ms = fleet::now() as u64 * 1000;
    publish(&broker, leaked.seal(&policies(now_ms, "leaked.test")));
    wait_until("the leaked key's policy", WITHIN, || {
        verdict(&app, "leaked.test") == "block"
    });

    // A working key whose certificate ran out signs nothing.
    let expired = certified_by(&leaked, 1_577_836_800, 1_609_459_200);
    publish(&broker, expired.seal(&policies(now_ms + 1, "expired.test")));
    wait_until("the expired key refused", WITHIN, || {
        refused(&app, "expired_key") == 1
    });

    // The root revokes the leaked key: its next document is refused, and a new key's
    // document replaces the one in force whatever its version.
    let list = cartable_protocol::keyring::RevocationList {
        issued_at: fleet::now(),
        keys: vec![hex(leaked.working.public_key().as_ref())],
    };
    let signed = cartable_protocol::keyring::revoke(&leaked.root, &list);
    fleet::send(
        &fleet::broker_args(&broker),
        &topics::revocations(),
        serde_json::to_vec(&signed).unwrap(),
        true,
    )
    .unwrap();
    wait_until("the revocation in force", WITHIN, || {
        store_number(
            &app,
            "SELECT count(*) FROM revoked_keys WHERE key != ?1",
            "",
        ) == 1
    });
    publish(
        &broker,
        leaked.seal(&policies(now_ms + 2, "after-leak.test")),
    );
    wait_until("the revoked key refused", WITHIN, || {
        refused(&app, "revoked_key") == 1
    });
    let renewed = certified_by(&leaked, 1_577_836_800, 4_102_444_800);
    publish(&broker, renewed.seal(&policies(5, "renewed.test")));
    wait_until("the new key's policy in force", WITHIN, || {
        verdict(&app, "renewed.test") == "block"
    });
    assert_eq!(verdict(&app, "leaked.test"), "allow");
    assert_eq!(verdict(&app, "after-leak.test"), "allow");

    app.stop();
    app.restart();
    assert_eq!(verdict(&app, "renewed.test"), "block");
}
