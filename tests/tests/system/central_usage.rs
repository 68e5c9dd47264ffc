//! The fleet console's usage statistics and tablets, end to end: a box's hub with
//! enrolled tablets, the app time, DNS counters and roll calls it records, sent over a
//! real Mosquitto to `cartable-central`, rolled up as they arrive, read on the pages
//! (in Chromium), as JSON and as CSV; the same on PostgreSQL. No pupil's name leaves
//! the box.

use std::time::Duration;

use cartable::store::{Store, outbox};
use cartable_protocol::events::EventBody;
use cartable_systests::appliance::Appliance;
use cartable_systests::browser::Browser;
use cartable_systests::central::Central;
use cartable_systests::mosquitto::Mosquitto;
use serde_json::{Value, json};

use crate::sync::{sync_config, wait_until};

/// A box of site `default` with three tablets enrolled (two in CM1-A, one in 6e-B),
/// Léa assigned to the first, and a day's worth of events written to its outbox while
/// it was stopped: two tablets used (60 minutes in all), the third never; the box-wide
/// DNS counters; a roll call.
async fn school_with_usage(broker: &Mosquitto) -> Appliance {
    let mut app = Appliance::start(&sync_config(&broker.url(), ""));
    app.import(&[
        "class;level\nCM1-A;CM1\n6e-B;6e\n",
        "first_name,last_name,class\nLéa,Martin,CM1-A\n",
    ])
    .await;
    for (name, class) in [
        ("cm1-tab-00", "CM1-A"),
        ("cm1-tab-01", "CM1-A"),
        ("6e-tab-00", "6e-B"),
    ] {
        let body = json!({ "name": name, "class": class }).to_string();
        let r = cartable_agent::http::request(
            app.http,
            "POST",
            "/api/v1/admin/enrolment-codes",
            &[("content-type", "application/json")],
            Some(&body),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 201, "{}", r.body);
        let code = r.json().unwrap()["code"].as_str().unwrap().to_string();
        cartable_agent::enrol(app.http, &code, "Lenovo Tab M10")
            .await
            .unwrap();
    }
    let school = app.get_json("/api/v1/admin/school");
    let lea = school["pupils"][0]["id"].as_i64().unwrap();
    let tab = school["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "cm1-tab-00")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let r = cartable_agent::http::request(
        app.http,
        "POST",
        &format!("/api/v1/admin/devices/{tab}/pupil"),
        &[("content-type", "application/json")],
        Some(&json!({ "pupil": lea }).to_string()),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 204, "{}", r.body);
    app.stop();
    let today = cartable::base::clock::unix_now() / 86_400 * 86_400;
    let app_usage = |hour: i64, device: &str, app: &str, seconds: u32| EventBody::AppUsage {
        hour,
        device: device.into(),
        app: app.into(),
        seconds,
        class: Some("CM1-A".into()),
    };
    let events = vec![
        app_usage(today + 9 * 3600, "cm1-tab-00", "org.ent.lecture", 1800),
        app_usage(
            today - 86_400 + 9 * 3600,
            "cm1-tab-00",
            "fr.calculatrice",
            600,
        ),
        app_usage(today + 10 * 3600, "cm1-tab-01", "org.ent.lecture", 1200),
        EventBody::DnsHourly {
            hour: today + 9 * 3600,
            client: "*".into(),
            queries: 1000,
            blocked: 50,
            categories: [("adult".to_string(), 30), ("gambling".to_string(), 20)].into(),
        },
        EventBody::Attendance {
            class: "CM1-A".into(),
            pupil: "p0123456789abcdef".into(),
            present: true,
        },
        EventBody::Attendance {
            class: "CM1-A".into(),
            pupil: "p00000000000000ff".into(),
            present: false,
        },
    ];
    let store = Store::open(&app.data_dir()).unwrap();
    let at = today + 11 * 3600;
    store
        .write(move |t| {
            for e in &events {
                outbox::append(t, at, e)?;
            }
            Ok(())
        })
        .await
        .unwrap();
    drop(store);
    app.restart();
    app
}

/// The report central makes of that box, once every event arrived.
fn report(central: &Central) -> Value {
    wait_until(
        "the events and the tablets at central",
        Duration::from_secs(30),
        || {
            let usage = central.get("/api/v1/usage").unwrap_or_default();
            let tablets = central.get("/api/v1/tablets").unwrap_or_default();
            usage["report"]["tablets"]
                .as_array()
                .is_some_and(|t| t.len() == 2)
                && usage["report"]["sites"][0]["absent"] == 1
                && tablets.as_array().is_some_and(|t| t.len() == 3)
        },
    );
    central.get("/api/v1/usage").unwrap()
}

fn check(usage: &Value, tablets: &Value) {
    let r = &usage["report"];
    let site = &r["sites"][0];
    assert_eq!(site["site"], "default");
    assert_eq!(
        (site["tablets_used"].as_i64(), site["minutes"].as_i64()),
        (Some(2), Some(60))
    );
    assert!(site["queries"].as_i64().unwrap() >= 1000, "{site}");
    assert_eq!(
        (site["present"].as_i64(), site["absent"].as_i64()),
        (Some(1), Some(1))
    );
    let cm1: i64 = r["class_weeks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w[1] == "CM1-A")
        .map(|w| w[3].as_i64().unwrap())
        .sum();
    assert_eq!(cm1, 60, "{r}");
    assert_eq!(r["apps"][0], json!(["org.ent.lecture", 50]));
    assert_eq!(r["categories"][0], json!(["adult", 30]));
    let never: Vec<&str> = usage["never_used"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tablet"].as_str().unwrap())
        .collect();
    assert_eq!(never, ["6e-tab-00"]);
    // The inventory: class, model, the pupil as a pseudonym; never a name.
    let first = tablets
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tablet"]["name"] == "cm1-tab-00")
        .unwrap();
    assert_eq!(first["tablet"]["class"], "CM1-A");
    assert!(first["tablet"]["pupil"].as_str().unwrap().starts_with('p'));
    let all = format!("{usage}{tablets}");
    assert!(!all.contains("Léa") && !all.contains("Martin"), "{all}");
}

/// The fleet admin reads usage per site, class and tablet in Chromium (and the fleet
/// and the tablets), exports it as CSV with the same filters, and sees no names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_sees_usage_per_site_class_and_tablet_and_never_a_pupils_name() {
    let broker = Mosquitto::start();
    let central = Central::start(&broker.address());
    let _app = school_with_usage(&broker).await;
    let usage = report(&central);
    check(&usage, &central.get("/api/v1/tablets").unwrap());

    let csv = std::process::Command::new("curl")
        .args(["-s", "-m", "10"])
        .arg(format!(
            "http://{}/api/v1/usage?format=csv&table=tablets&site=default&from={}&to={}",
            central.http,
            usage["from"].as_str().unwrap(),
            usage["to"].as_str().unwrap()
        ))
        .output()
        .unwrap();
    let csv = String::from_utf8(csv.stdout).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0], "site,box,tablet,class,days_used,minutes,last_used",
        "{csv}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("default,cartable,cm1-tab-00,CM1-A,2,40,")),
        "{csv}"
    );
    assert_eq!(lines.len(), 3, "{csv}");
    // What is in force per scope: this box runs no policy from the central side.
    let page = std::process::Command::new("curl")
        .args(["-s", "-m", "10"])
        .arg(format!("http://{}/policies", central.http))
        .output()
        .unwrap();
    let page = String::from_utf8(page.stdout).unwrap();
    assert!(
        page.contains("Boîtiers sans politique du central")
            && page.contains("<td>default/cartable</td>"),
        "{page}"
    );

    let browser = Browser::start().await.unwrap();
    browser.resize(1280, 800).await.unwrap();
    browser
        .goto(&format!("http://{}/usage", central.http))
        .await
        .unwrap();
    let text = |id: &'static str| {
        let b = &browser;
        async move {
            b.eval(&format!(
                "return document.getElementById('{id}').textContent"
            ))
            .await
            .unwrap()
        }
    };
    assert_eq!(text("tablets-used").await, "2");
    assert_eq!(text("never-used").await, "1");
    let page = browser
        .eval("return document.body.innerText")
        .await
        .unwrap();
    let page = page.as_str().unwrap();
    assert!(
        page.contains("Minutes par classe et par semaine") && page.contains("CM1-A"),
        "{page}"
    );
    assert!(page.contains("6e-tab-00"), "{page}");
    assert_eq!(
        browser
            .eval("return document.querySelectorAll('svg.chart rect').length")
            .await
            .unwrap(),
        2,
        "two days with use"
    );
    browser.check_accessible("central-usage").await.unwrap();
    browser.keep_screenshot("central-usage").await.unwrap();
    browser
        .goto(&format!("http://{}/tablets?lang=en", central.http))
        .await
        .unwrap();
    assert_eq!(text("tablet-count").await, "3");
    let page = browser
        .eval("return document.body.innerText")
        .await
        .unwrap();
    assert!(
        page.as_str().unwrap().contains("Pupil (pseudonym)"),
        "{page}"
    );
    browser.check_accessible("central-tablets").await.unwrap();
    browser.keep_screenshot("central-tablets").await.unwrap();
    browser
        .goto(&format!("http://{}/", central.http))
        .await
        .unwrap();
    let page = browser
        .eval("return document.body.innerText")
        .await
        .unwrap();
    assert!(
        page.as_str().unwrap().contains("Boxes"),
        "the choice of English stays: {page}"
    );
    browser.check_accessible("central-fleet").await.unwrap();
    browser.keep_screenshot("central-fleet").await.unwrap();
}

/// The same report from PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_usage_report_is_the_same_on_postgresql() {
    let pg = cartable_systests::postgres::Postgres::start();
    let broker = Mosquitto::start();
    let central = Central::start_with(&broker.address(), Some(&pg.url()));
    let _app = school_with_usage(&broker).await;
    let usage = report(&central);
    check(&usage, &central.get("/api/v1/tablets").unwrap());
}
