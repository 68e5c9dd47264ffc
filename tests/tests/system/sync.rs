//! Store-and-forward to the central side, with a real Mosquitto broker, the real
//! `cartable-central`, and (for the cut uplink) the box in a network namespace.

use std::time::{Duration, Instant};

use cartable_systests::appliance::Appliance;
use cartable_systests::central::Central;
use cartable_systests::fleet;
use cartable_systests::mosquitto::Mosquitto;
use cartable_systests::netns::Netns;
use nix::sys::signal::Signal;

pub(crate) const SITE: &str = "default";
pub(crate) const BOX: &str = "cartable";

pub(crate) fn sync_config(broker: &str, extra: &str) -> String {
    format!(
        "[sync]\nbroker = \"{broker}\"\nbatch_max_age_secs = 0\nreconnect_max_secs = 2\nstate_every_secs = 2\n{extra}"
    )
}

pub(crate) fn wait_until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The details of the audit events central holds, in arrival order, checking that
/// sequence numbers arrive increasing and never twice.
pub(crate) fn audit_details(central: &Central) -> Vec<String> {
    let events = central.events(SITE, BOX, "audit");
    let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "events out of order or twice: {seqs:?}"
    );
    events
        .iter()
        .map(|e| e["body"]["detail"].as_str().unwrap_or_default().to_string())
        .collect()
}

pub(crate) fn expected(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

#[test]
fn events_made_while_the_broker_is_down_arrive_once_and_in_order() {
    let mut broker = Mosquitto::start();
    let central = Central::start(&broker.address());
    let app = Appliance::start(&sync_config(&broker.url(), "keep_alive_secs = 5\n"));
    app.post_audits("e", 0..10);
    wait_until(
        "the first events at central",
        Duration::from_secs(30),
        || audit_details(&central).len() == 10,
    );
    wait_until("an empty backlog", Duration::from_secs(10), || {
        app.get_json("/api/v1/status")["sync"]["backlog"]["rows"] == 0
    });
    assert_eq!(app.get_json("/api/v1/status")["sync"]["link"], "connected");

    broker.stop();
    app.post_audits("e", 10..40);
    wait_until("the link to notice", Duration::from_secs(30), || {
        app.get_json("/api/v1/status")["sync"]["link"] != "connected"
    });
    let status = app.get_json("/api/v1/status");
    assert!(
        status["sync"]["backlog"]["rows"].as_u64().unwrap() >= 30,
        "{status}"
    );
    assert!(status["sync"]["backlog"]["oldest_at"].as_i64().is_some());

    broker.restart();
    wait_until("every event at central", Duration::from_secs(60), || {
        audit_details(&central).len() >= 40
    });
    assert_eq!(audit_details(&central), expected("e", 0..40));
    let status = app.get_json("/api/v1/status");
    assert!(status["sync"]["backlog"]["last_sync_at"].as_i64().is_some());
    // The dashboard shows the box, with its version.
    let boxes = central.get("/api/v1/boxes").unwrap();
    assert_eq!(boxes[0]["box"], BOX);
    assert_eq!(boxes[0]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(boxes[0]["online"], true);
    assert!(boxes[0]["state"]["backlog"].is_object(), "{boxes}");
    // A box that dies without a word: the broker publishes its last will.
    app.signal(Signal::SIGKILL);
    wait_until("the last will", Duration::from_secs(30), || {
        central.get("/api/v1/boxes").unwrap()[0]["online"] == false
    });
}

#[test]
fn sigkill_in_the_middle_of_draining_loses_nothing_and_counts_nothing_twice() {
    let mut broker = Mosquitto::start();
    let central = Central::start(&broker.address());
    broker.stop();
    // Small batches and a rate cap at all hours, so the drain takes seconds.
    let mut app = Appliance::start(&sync_config(
        &broker.url(),
        "batch_max_bytes = 2048\nrate_limit = 3000\nrate_limit_days = [\"mon-sun\"]\nrate_limit_from = \"00:00\"\nrate_limit_to = \"24:00\"\n",
    ));
    app.post_audits("k", 0..1500);
    broker.restart();
    wait_until("part of the drain", Duration::from_secs(60), || {
        audit_details(&central).len() >= 150
    });
    app.signal(Signal::SIGKILL);
    let at_kill = audit_details(&central).len();
    assert!(at_kill < 1500, "the drain finished before the kill");
    app.restart();
    wait_until(
        "every event after the restart",
        Duration::from_secs(120),
        || audit_details(&central).len() >= 1500,
    );
    // One more event, after all the others: once it arrives, any batch sent twice
    // would have arrived before it (the drain publishes in sequence order).
    app.post_audits("z", 0..1);
    wait_until("the last event", Duration::from_secs(30), || {
        audit_details(&central).last().is_some_and(|d| d == "z0")
    });
    let mut all = audit_details(&central);
    all.pop();
    assert_eq!(all, expected("k", 0..1500));
    let counters = central.get("/api/v1/counters").unwrap();
    assert_eq!(counters["out_of_order"], 0, "{counters}");
}

#[test]
fn a_cut_uplink_pauses_the_sync_at_once_and_its_return_resumes_it() {
    if !Netns::available() {
        // Namespaces need root; CI runs as root. Say so rather than pass silently.
        panic!("network namespaces are not available: run the tests as root");
    }
    let ns = Netns::create(1);
    let broker = Mosquitto::start_on(ns.outer_ip.into());
    let central = Central::start(&broker.address());
    let app = Appliance::start_in(Some(&ns.name), &sync_config(&broker.url(), ""));
    app.post_audits("u", 0..5);
    wait_until("events over the veth link", Duration::from_secs(30), || {
        audit_details(&central).len() == 5
    });

    ns.link_down();
    // rtnetlink tells the box at once: the link is paused, not timing out.
    wait_until("the sync to pause", Duration::from_secs(3), || {
        app.get_json("/api/v1/status")["sync"]["link"] == "paused"
    });
    let status = app.get_json("/api/v1/status");
    assert_eq!(status["uplink"]["state"], "down", "{status}");
    app.post_audits("u", 5..25);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(audit_details(&central).len(), 5);
    assert_eq!(
        app.get_json("/api/v1/status")["sync"]["backlog"]["rows"],
        20
    );

    ns.link_up();
    wait_until("the events made offline", Duration::from_secs(20), || {
        audit_details(&central).len() >= 25
    });
    assert_eq!(audit_details(&central), expected("u", 0..25));
}

#[test]
fn the_box_speaks_tls_with_its_client_certificate_and_without_it_is_refused() {
    let (broker, pki) = Mosquitto::start_tls();
    let url = format!("mqtts://localhost:{}", broker.port);
    let tls = format!(
        "ca_file = \"{}\"\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"\n",
        pki.ca.display(),
        pki.client_cert.display(),
        pki.client_key.display()
    );
    let app = Appliance::start(&sync_config(&url, &tls));
    app.post_audits("t", 0..5);
    wait_until(
        "the events acknowledged over TLS",
        Duration::from_secs(30),
        || {
            let s = app.get_json("/api/v1/status");
            s["sync"]["link"] == "connected" && s["sync"]["backlog"]["rows"] == 0
        },
    );

    // The same CA but no client certificate: the broker refuses the box.
    let anonymous = Appliance::start(&sync_config(
        &url,
        &format!("ca_file = \"{}\"\n", pki.ca.display()),
    ));
    anonymous.post_audits("t", 0..5);
    wait_until("the refusal", Duration::from_secs(30), || {
        let s = anonymous.get_json("/api/v1/status");
        s["sync"]["last_error"].as_str().is_some() && s["sync"]["link"] != "connected"
    });
    // Rows go only on the broker's PUBACK, which a refused connection never gives.
    let s = anonymous.get_json("/api/v1/status");
    assert_eq!(s["sync"]["backlog"]["rows"], 5, "{s}");
}

#[test]
fn a_postgres_central_keeps_one_copy_of_each_event() {
    let pg = cartable_systests::postgres::Postgres::start();
    let broker = Mosquitto::start();
    let central = Central::start_with(&broker.address(), Some(&pg.url()));
    let app = Appliance::start(&sync_config(&broker.url(), ""));
    app.post_audits("p", 0..30);
    wait_until("the events in PostgreSQL", Duration::from_secs(30), || {
        audit_details(&central).len() == 30
    });
    // The same first five events again, as a box retrying after a lost ack would.
    let first: Vec<cartable_protocol::events::Event> = central.events(SITE, BOX, "audit")[..5]
        .iter()
        .map(|e| {
            let mut event = serde_json::Map::new();
            event.insert("seq".into(), e["seq"].clone());
            event.insert("at".into(), e["at"].clone());
            for (k, v) in e["body"].as_object().unwrap() {
                event.insert(k.clone(), v.clone());
            }
            serde_json::from_value(serde_json::Value::Object(event)).unwrap()
        })
        .collect();
    let batch = cartable_protocol::events::Batch {
        site: SITE.into(),
        r#box: BOX.into(),
        events: first,
    };
    // Sealed with the box's own key, as the box would on a retry.
    let box_key = ring::signature::Ed25519KeyPair::from_pkcs8(
        &std::fs::read(app.data_dir().join("box.key")).unwrap(),
    )
    .unwrap();
    let topic = cartable_protocol::topics::events(SITE, BOX);
    let sealed = cartable_protocol::sealed::seal(&box_key, &topic, 0, &batch.encode());
    fleet::send(&fleet::broker_args(&broker), &topic, sealed, false).unwrap();
    wait_until("the duplicates counted", Duration::from_secs(10), || {
        central.get("/api/v1/counters").unwrap()["duplicates"] == 5
    });
    assert_eq!(audit_details(&central), expected("p", 0..30));
    // The dashboard and the usage queries run on PostgreSQL too.
    assert!(central.get("/api/v1/usage").is_some());
    assert_eq!(central.get("/api/v1/boxes").unwrap()[0]["box"], BOX);
}

pub(crate) mod desired {
    use super::*;
    use cartable_protocol::desired::{Body, Desired, Policy, PolicySet};
    use cartable_protocol::topics::{self, DesiredKind, Scope};
    use cartable_systests::fleet::Fleet;

    pub(crate) fn policies(version: u64, deny: &str) -> Desired {
        Desired {
            version,
            scope: Scope::Fleet,
            issued_at: fleet::now(),
            body: Body::Policies(PolicySet {
                policies: vec![Policy {
                    name: "central".into(),
                    deny: vec![deny.into()],
                    default: true,
                    ..Policy::default()
                }],
                resolver_addresses: Vec::new(),
            }),
        }
    }

    pub(crate) fn publish(broker: &Mosquitto, payload: Vec<u8>) {
        let topic = topics::desired(&Scope::Fleet, DesiredKind::Policies);
        fleet::send(&fleet::broker_args(broker), &topic, payload, true).unwrap();
    }

    pub(crate) fn verdict(app: &Appliance, name: &str) -> String {
        app.get_json(&format!("/api/v1/filter/test?name={name}"))["verdict"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// One number from the box's store, read beside the running daemon (WAL).
    pub(crate) fn store_number(app: &Appliance, sql: &str, param: &str) -> i64 {
        let conn = rusqlite::Connection::open_with_flags(
            app.database(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        conn.query_row(sql, [param], |r| r.get(0)).unwrap()
    }

    /// The console's arguments that sign with `key` for this test's box, through
    /// `broker`.
    pub(crate) fn target(key: &std::path::Path, broker: &Mosquitto) -> Vec<String> {
        let key = key.to_str().unwrap();
        [
            "--key",
            key,
            "--broker",
            &broker.address(),
            "--site",
            SITE,
            "--box",
            BOX,
        ]
        .map(String::from)
        .to_vec()
    }

    /// Waits for the box to have stored a document of `kind`.
    pub(crate) fn wait_stored(app: &Appliance, kind: &str) {
        wait_until(
            &format!("the {kind} stored"),
            Duration::from_secs(20),
            || store_number(app, "SELECT count(*) FROM desired WHERE kind = ?1", kind) == 1,
        );
    }

    pub(crate) fn refused(app: &Appliance, reason: &str) -> i64 {
        store_number(
            app,
            "SELECT coalesce((SELECT value FROM sync_counters WHERE name = ?1), 0)",
            &format!("refused:{reason}"),
        )
    }

    pub(crate) fn central(args: &[&str]) -> std::process::Output {
        std::process::Command::new(cartable_systests::bins::bin("cartable-central"))
            .args(args)
            .output()
            .expect("cartable-central runs")
    }

    /// The fleet's key ceremony with the console's own commands, in `dir`: the root
    /// (offline), a working key, the root's certificate for it. Returns the line a box
    /// pins the root with, and the working key's path.
    pub(crate) fn ceremony(dir: &std::path::Path) -> (String, std::path::PathBuf) {
        let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
        let printed = |args: &[&str], prefix: &str| {
            let out = central(args);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .find_map(|l| l.strip_prefix(prefix).map(str::to_string))
                .unwrap()
        };
        let pin = printed(
            &["keygen", "--root", "--out", &path("root.key")],
            "fleet_public_key = ",
        );
        let working = printed(&["keygen", "--out", &path("fleet.key")], "working_key = ");
        let out = central(&[
            "certify",
            "--root",
            &path("root.key"),
            "--key",
            working.trim_matches('"'),
            "--days",
            "30",
            "--out",
            &path("fleet.key.cert"),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (format!("fleet_public_key = {pin}\n"), dir.join("fleet.key"))
    }

    #[test]
    fn the_fleet_console_signs_and_publishes_policies_and_catalogues_from_files() {
        let broker = Mosquitto::start();
        let dir = tempfile::tempdir().unwrap();
        let (pin, key) = ceremony(dir.path());
        let app = Appliance::start(&sync_config(&broker.url(), &pin));
        let policies = dir.path().join("policies.toml");
        std::fs::write(
            &policies,
            "[[policy]]\nname = \"ecole-central\"\ndeny = [\"from-toml.test\"]\ndefault = true\n",
        )
        .unwrap();
        let target = target(&key, &broker);
        let mut args = vec!["policy", "publish", policies.to_str().unwrap()];
        args.extend(target.iter().map(String::as_str));
        let out = central(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("published version"));
        wait_until(
            "the published policy in force",
            Duration::from_secs(20),
            || verdict(&app, "from-toml.test") == "block",
        );

        // The catalogue's item, at a local origin: the box fetches it once applied.
        let origin = cartable_systests::upstream::Upstream::start();
        origin.put("/lecture.apk", b"abc".to_vec(), Default::default());
        let catalogue = dir.path().join("catalogue.json");
        let url = origin.url("/lecture.apk");
        let item = |sha: &str| {
            format!(
                r#"{{"items": [{{"id": "lecture", "version": "2.1", "urls": ["{url}"], "size": 3, "sha256": "{sha}", "pinned": true}}]}}"#
            )
        };
        std::fs::write(&catalogue, item("nothex")).unwrap();
        let mut args = vec!["catalogue", "publish", catalogue.to_str().unwrap()];
        args.extend(target.iter().map(String::as_str));
        let out = central(&args);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("sha256"));
        // SHA-256("abc")
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        std::fs::write(&catalogue, item(abc)).unwrap();
        let out = central(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        wait_stored(&app, "catalogue");
        wait_until(
            "the catalogue's item fetched",
            Duration::from_secs(20),
            || app.get_json("/api/v1/cache")[0]["state"] == "present",
        );
        assert_eq!(origin.requests("/lecture.apk").len(), 1);
    }

    #[test]
    fn forged_replayed_and_malformed_policies_are_refused_and_the_policy_stays() {
        let broker = Mosquitto::start();
        let fleet = Fleet::new();
        let mut app = Appliance::start(&sync_config(&broker.url(), &fleet.pin()));

        publish(&broker, fleet.seal(&policies(10, "denied-v10.test")));
        wait_until(
            "the signed policy in force",
            Duration::from_secs(20),
            || verdict(&app, "denied-v10.test") == "block",
        );

        // Forged: a newer version signed by another key, with a genuine certificate.
        let forged = cartable_protocol::desired::seal(
            &fleet::key(),
            &fleet.certificate,
            &policies(20, "forged.test"),
        );
        publish(&broker, serde_json::to_vec(&forged).unwrap());
        wait_until("the forgery refused", Duration::from_secs(20), || {
            refused(&app, "bad_signature") == 1
        });
        // Replayed: genuinely signed, but older than the one in force.
        publish(&broker, fleet.seal(&policies(5, "old.test")));
        wait_until("the replay refused", Duration::from_secs(20), || {
            refused(&app, "older_version") == 1
        });
        // Malformed: not an envelope at all.
        publish(&broker, b"{\"payload\": 42".to_vec());
        wait_until("the garbage refused", Duration::from_secs(20), || {
            refused(&app, "malformed") == 1
        });
        // Signed for another box: refused even with the right key.
        let mut other = policies(30, "other-box.test");
        other.scope = Scope::Box {
            site: SITE.into(),
            r#box: "another".into(),
        };
        publish(&broker, fleet.seal(&other));
        wait_until(
            "the misdirected one refused",
            Duration::from_secs(20),
            || refused(&app, "wrong_scope") == 1,
        );

        for name in ["forged.test", "old.test", "other-box.test"] {
            assert_eq!(verdict(&app, name), "allow", "{name}");
        }
        assert_eq!(verdict(&app, "denied-v10.test"), "block");

        central_policies_are_read_only(&app);

        // The policy in force survives a restart (verified again from the store).
        app.stop();
        app.restart();
        assert_eq!(verdict(&app, "denied-v10.test"), "block");
        central_policies_are_read_only(&app);
    }

    /// The admin page shows the central side's policies and cannot change them.
    fn central_policies_are_read_only(app: &Appliance) {
        let shown = app.get_json("/api/v1/filter/policies");
        assert_eq!(
            (shown["source"].as_str(), shown["editable"].as_bool()),
            (Some("central"), Some(false))
        );
        let r = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(cartable_agent::http::request(
                app.http,
                "POST",
                "/api/v1/filter/policies/central/names",
                &[("content-type", "application/json")],
                Some(r#"{"name":"denied-v10.test","list":"allow"}"#),
            ))
            .unwrap();
        assert_eq!(r.status, 409, "{}", r.body);
        assert_eq!(verdict(app, "denied-v10.test"), "block");
    }
}
