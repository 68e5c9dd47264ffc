//! The school admin's console (`/admin`) as an IT admin uses it: signed in with an
//! account, in Chromium, on the dashboard, the query log (a block explained, then
//! allowed in one click, and the DNS answering accordingly), the policies, the school
//! (a CSV previewed, then imported; an enrolment code with its QR) and the cache. The
//! JSON behind the pages is tested apart, from another address than the box's own.

use std::net::IpAddr;
use std::time::Duration;

use cartable_systests::appliance::Appliance;
use cartable_systests::browser::Browser;
use cartable_systests::dig::dig;
use cartable_systests::dnsmasq::Dnsmasq;
use serde_json::json;

const ADMIN: &str = "it-admin";
const PASSWORD: &str = "mot-de-passe-long";

struct Setup {
    _upstream: Dnsmasq,
    app: Appliance,
    _lists: tempfile::TempDir,
}

/// A box filtering gambling (`casino.test`) for everyone, with an admin account.
fn setup() -> Setup {
    let upstream = Dnsmasq::start(
        &[("casino.test", "10.1.0.2"), ("www.ecole.test", "10.1.0.3")],
        300,
    );
    let lists = tempfile::tempdir().unwrap();
    let list = lists.path().join("gambling.txt");
    std::fs::write(&list, "casino.test\npoker.test\n").unwrap();
    let app = Appliance::start(&format!(
        r#"
[dns]
upstreams = ["{upstream}"]
block_mode = "nxdomain"

[[filter.list]]
category = "gambling"
path = "{list}"

[[filter.policy]]
name = "ecole"
block = ["gambling"]
default = true

[[filter.policy]]
name = "maison"
"#,
        upstream = upstream.addr,
        list = list.display()
    ));
    app.admin_add(ADMIN, PASSWORD);
    Setup {
        _upstream: upstream,
        app,
        _lists: lists,
    }
}

/// The outbox's audit records, as the central side will get them.
fn audits(app: &Appliance) -> Vec<String> {
    let db = rusqlite::Connection::open(app.database()).unwrap();
    db.prepare("SELECT body FROM outbox WHERE body LIKE '%\"audit\"%' ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Waits for the page to show `what`; else fails with what it shows.
async fn wait(browser: &Browser, what: &str, script: &str) {
    browser
        .wait(what, script, Duration::from_secs(10))
        .await
        .unwrap();
}

async fn sign_in(browser: &Browser, app: &Appliance) {
    browser
        .goto(&format!("http://{}/classe", app.http))
        .await
        .unwrap();
    wait(
        browser,
        "the sign-in form",
        "return !document.getElementById('signin-form').hidden",
    )
    .await;
    browser.type_into("#login", ADMIN).await.unwrap();
    browser.type_into("#password", PASSWORD).await.unwrap();
    browser.click("#signin").await.unwrap();
    // The account decides the role: an admin goes on to the admin's pages.
    wait(
        browser,
        "the dashboard",
        "return location.pathname === '/admin' && !document.getElementById('dashboard').hidden \
         && document.querySelectorAll('#cards .card').length === 6",
    )
    .await;
}

/// The dashboard counts what the tablets asked and names what was blocked; the query
/// log explains the block; one click allows the name for the policy that blocked it,
/// the DNS answers it at once, and the audit trail names the admin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_the_admin_reads_the_dashboard_explains_a_block_and_allows_the_name() {
    let s = setup();
    let tablet = ["-b", "127.0.0.5"];
    assert_eq!(
        dig(s.app.dns, "casino.test", "A", &tablet).status,
        "NXDOMAIN"
    );
    assert_eq!(
        dig(s.app.dns, "poker.test", "A", &tablet).status,
        "NXDOMAIN"
    );
    let allowed = dig(s.app.dns, "www.ecole.test", "A", &tablet);
    assert_eq!(allowed.data("A"), ["10.1.0.3"], "{}", allowed.raw);

    let browser = Browser::start().await.unwrap();
    browser.resize(1280, 800).await.unwrap();
    sign_in(&browser, &s.app).await;
    // French by default: the browser asks for French.
    wait(
        &browser,
        "the counts of the day and the names blocked",
        "const cards = document.getElementById('cards').textContent; \
         const top = document.getElementById('top-blocked').textContent; \
         return cards.includes('Requêtes (24 h)3') && cards.includes('Bloquées (24 h)2') \
           && top.includes('casino.test') && top.includes('poker.test') \
           && document.getElementById('top-categories').textContent.includes('gambling') \
           && document.getElementById('top-clients').textContent.includes('127.0.0.5') \
           && document.querySelectorAll('#chart rect.bar-b').length === 24",
    )
    .await;
    browser.check_accessible("admin-dashboard").await.unwrap();
    browser.keep_screenshot("admin-dashboard").await.unwrap();
    browser.resize(390, 844).await.unwrap();
    browser
        .check_accessible("admin-dashboard-phone")
        .await
        .unwrap();
    browser
        .keep_screenshot("admin-dashboard-phone")
        .await
        .unwrap();
    browser.resize(1280, 800).await.unwrap();

    // The query log, searched for blocked lines; the block explained.
    browser.click("#tabs [data-tab=log]").await.unwrap();
    browser
        .eval("document.getElementById('log-outcome').value = 'blocked'; return true")
        .await
        .unwrap();
    browser.type_into("#log-name", "casino").await.unwrap();
    browser
        .click("#log-search button[type=submit]")
        .await
        .unwrap();
    wait(
        &browser,
        "one blocked line for casino.test",
        "const rows = [...document.querySelectorAll('#log-lines tr.line')]; \
         return rows.length === 1 && rows[0].textContent.includes('casino.test') \
           && rows[0].textContent.includes('127.0.0.5') && rows[0].textContent.includes('bloqué')",
    )
    .await;
    browser.click("#log-lines tr.line button").await.unwrap();
    wait(
        &browser,
        "the verdict explained: the policy, the list and its line",
        "const why = document.querySelector('#log-lines .why'); \
         return !!why && why.textContent.includes('policy: ecole') \
           && why.textContent.includes('gambling.txt:1')",
    )
    .await;
    browser.check_accessible("admin-query-log").await.unwrap();
    browser.keep_screenshot("admin-query-log").await.unwrap();
    browser.click("#log-lines .why button.allow").await.unwrap();
    wait(
        &browser,
        "the rule in force",
        "return document.querySelector('#log-lines .why').textContent.includes('Fait')",
    )
    .await;
    let now = dig(s.app.dns, "casino.test", "A", &tablet);
    assert_eq!(now.data("A"), ["10.1.0.2"], "allowed at once: {}", now.raw);
    assert_eq!(
        dig(s.app.dns, "poker.test", "A", &tablet).status,
        "NXDOMAIN"
    );
    let trail = audits(&s.app);
    assert!(
        trail
            .iter()
            .any(|a| a.contains(&format!("\"actor\":\"{ADMIN}\""))
                && a.contains("policy ecole: casino.test allowed")),
        "{trail:?}"
    );

    // The policies page says where the policies come from and shows the change.
    browser.click("#tabs [data-tab=filtering]").await.unwrap();
    wait(
        &browser,
        "the edited policy",
        "const f = document.querySelector('#policies fieldset[data-name=ecole]'); \
         return !!f && f.querySelector('[data-key=allow]').value === 'casino.test' \
           && f.querySelector('.cats input[value=gambling]').checked \
           && document.getElementById('policy-source').textContent.includes('it-admin') \
           && document.getElementById('lists').textContent.includes('gambling.txt')",
    )
    .await;
    // A time rule: evenings go to "maison". A day the box cannot read is refused
    // with its reason and nothing is stored; then the rule as meant is saved.
    browser
        .click("#policies fieldset[data-name=ecole] button.add-rule")
        .await
        .unwrap();
    let set_days = |days: &str| {
        format!(
            "const i = document.querySelector('#policies fieldset[data-name=ecole] .rule [data-rule=days]'); \
             i.value = '{days}'; i.dispatchEvent(new Event('input', {{ bubbles: true }})); return true"
        )
    };
    browser.eval(&set_days("lundo-ven")).await.unwrap();
    browser.click("#save-policies").await.unwrap();
    wait(
        &browser,
        "the refusal",
        "return document.getElementById('error').textContent.includes('lundo')",
    )
    .await;
    let stored = |app: &Appliance| {
        app.get_json("/api/v1/filter/policies")["policies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "ecole")
            .unwrap()["schedule"]
            .clone()
    };
    assert!(
        stored(&s.app).as_array().is_none_or(|a| a.is_empty()),
        "{}",
        stored(&s.app)
    );
    browser.eval(&set_days("lun-ven")).await.unwrap();
    wait(
        &browser,
        "the rule said as a sentence",
        "return document.querySelector('#policies .rule .said').textContent \
           === 'lun au ven de 18:00 à 07:30 : « maison »'",
    )
    .await;
    browser.click("#save-policies").await.unwrap();
    wait(
        &browser,
        "saved",
        "return document.getElementById('policy-result').textContent === 'Enregistré'",
    )
    .await;
    // Stored as the box reads it.
    assert_eq!(
        stored(&s.app),
        serde_json::json!([{ "days": ["mon,tue,wed,thu,fri"], "from": "18:00", "to": "07:30", "policy": "maison" }])
    );
    browser.check_accessible("admin-filtering").await.unwrap();
    browser
        .eval("document.querySelector('#policies .rule').scrollIntoView({ block: 'center' }); return true")
        .await
        .unwrap();
    browser.keep_screenshot("admin-filtering").await.unwrap();
}

/// The school page previews a CSV (nothing stored), then imports it; an enrolment
/// code comes with its QR code; the cache page shows its space.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_the_admin_previews_and_imports_the_school_and_makes_a_code() {
    let s = setup();
    let browser = Browser::start().await.unwrap();
    browser.resize(1280, 800).await.unwrap();
    sign_in(&browser, &s.app).await;
    browser.click("#tabs [data-tab=school]").await.unwrap();
    browser
        .eval("document.getElementById('csv').value = 'class;level\\nCE2-B;CE2\\nCM1-A;CM1\\n'; return true")
        .await
        .unwrap();
    browser.click("#preview").await.unwrap();
    wait(
        &browser,
        "the preview",
        "const r = document.getElementById('import-result').textContent; \
         return r.includes('Aperçu') && r.includes('+ CE2-B (CE2)') && r.includes('2 ajout(s)')",
    )
    .await;
    let school = s.app.get_json("/api/v1/admin/school");
    assert_eq!(
        school["classes"].as_array().unwrap().len(),
        0,
        "a preview stores nothing"
    );
    browser.click("#import").await.unwrap();
    wait(
        &browser,
        "the classes imported",
        "return document.getElementById('import-result').textContent.includes('Importé') \
           && document.querySelectorAll('#classes tr').length === 2 \
           && document.querySelectorAll('#code-class option').length === 3",
    )
    .await;
    browser.type_into("#code-name", "ce2-tab-01").await.unwrap();
    browser
        .eval("document.getElementById('code-class').value = 'CE2-B'; return true")
        .await
        .unwrap();
    browser.click("#new-code").await.unwrap();
    wait(
        &browser,
        "a code and its QR",
        "const img = document.getElementById('code-qr'); \
         return /^[A-Z0-9]{8}$/.test(document.getElementById('code').textContent) \
           && img.complete && img.naturalWidth > 0 && img.alt.startsWith('cartable:enrol?box=http://')",
    )
    .await;
    browser.check_accessible("admin-school").await.unwrap();
    browser.keep_screenshot("admin-school").await.unwrap();
    let code = browser
        .eval("return document.getElementById('code').textContent")
        .await
        .unwrap();
    let (id, _) = cartable_agent::enrol(s.app.http, code.as_str().unwrap(), "t")
        .await
        .unwrap();
    assert!(id > 0);
    browser.click("#tabs [data-tab=cache]").await.unwrap();
    wait(
        &browser,
        "the cache's space",
        "return document.getElementById('cache-usage').textContent.includes('utilisés sur')",
    )
    .await;
    let trail = audits(&s.app);
    assert!(
        trail
            .iter()
            .any(|a| a.contains(&format!("\"actor\":\"{ADMIN}\""))
                && a.contains("2 classes: 2 added")),
        "{trail:?}"
    );
}

/// From another machine on the LAN the filter's admin API answers an admin's session
/// only (a teacher's is not enough); a change needs the CSRF token; a mistaken set is
/// refused with its reason and changes nothing; the admin's set survives a restart;
/// going back to the file's policies works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_filter_api_answers_an_admin_session_from_the_lan_and_edits_survive_a_restart() {
    let mut s = setup();
    let laptop: Option<IpAddr> = Some([127, 0, 7, 1].into());
    let app = &s.app;
    let r = app
        .call(laptop, "GET", "/api/v1/filter/stats", &[], None)
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
    let body = json!({ "login": ADMIN, "password": PASSWORD }).to_string();
    let r = app
        .call(laptop, "POST", "/api/v1/login", &[], Some(&body))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let cookie = r
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let csrf = r.json().unwrap()["csrf"].as_str().unwrap().to_string();
    let read = [("cookie", cookie.as_str())];
    let both = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
    for path in [
        "/api/v1/filter/stats",
        "/api/v1/filter/hourly?hours=168",
        "/api/v1/filter/log?outcome=blocked",
        "/api/v1/filter/test?name=casino.test",
        "/api/v1/filter/policies",
        "/api/v1/net",
    ] {
        let r = app.call(laptop, "GET", path, &read, None).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }
    let week = app
        .call(
            laptop,
            "GET",
            "/api/v1/filter/hourly?hours=168",
            &read,
            None,
        )
        .await;
    assert_eq!(week.json().unwrap()["hours"].as_array().unwrap().len(), 168);
    let policies = app
        .call(laptop, "GET", "/api/v1/filter/policies", &read, None)
        .await
        .json()
        .unwrap();
    assert_eq!(
        (policies["source"].as_str(), policies["editable"].as_bool()),
        (Some("file"), Some(true))
    );
    let mut set = policies["policies"].clone();
    set[0]["deny"] = json!(["jeux.test"]);
    let put = json!({ "policies": set }).to_string();
    let r = app
        .call(laptop, "PUT", "/api/v1/filter/policies", &read, Some(&put))
        .await;
    assert_eq!(r.status, 401, "no CSRF token, no change: {}", r.body);
    let mut wrong = set.clone();
    wrong[0]["block"] = json!(["gambling", "gamblng"]);
    let bad = json!({ "policies": wrong }).to_string();
    let r = app
        .call(laptop, "PUT", "/api/v1/filter/policies", &both, Some(&bad))
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains("`gamblng`, which no list provides"),
        "{}",
        r.body
    );
    let r = app
        .call(laptop, "PUT", "/api/v1/filter/policies", &both, Some(&put))
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(dig(app.dns, "www.jeux.test", "A", &[]).status, "NXDOMAIN");
    s.app.restart();
    let app = &s.app;
    let after = app.get_json("/api/v1/filter/policies");
    assert_eq!(after["source"], "local");
    assert_eq!(after["policies"][0]["deny"], json!(["jeux.test"]));
    assert_eq!(after["edited"]["by"], ADMIN);
    let explained = app.get_json("/api/v1/filter/test?name=www.jeux.test");
    assert_eq!(explained["verdict"], "block", "{explained}");
    let r = app
        .call(None, "DELETE", "/api/v1/filter/policies", &[], None)
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let back = app.get_json("/api/v1/filter/policies");
    assert_eq!(back["source"], "file");
    assert_eq!(back["policies"][0]["deny"], json!([]));
}
