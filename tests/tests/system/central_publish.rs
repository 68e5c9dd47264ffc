//! Publishing from the fleet console's policies page, end to end: the fleet's keys
//! made by the ceremony, `cartable-central serve --release-key`, an admin who signs in
//! in Chromium, writes the fleet's policies in the page's form (a wrong one first:
//! refused, kept to fix), publishes; a real box on a real Mosquitto verifies the
//! signature and filters with it. Without a session, or without the form's CSRF
//! token, nothing is published.

use std::process::Command;
use std::time::Duration;

use cartable_systests::appliance::Appliance;
use cartable_systests::browser::Browser;
use cartable_systests::central::Central;
use cartable_systests::mosquitto::Mosquitto;

use crate::sync::desired::{central as central_cli, ceremony, verdict};
use crate::sync::{sync_config, wait_until};

const NAME: &str = "publie-depuis-la-console.test";

/// `curl` against the console: (status, headers and body).
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-i", "-m", "10"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_publishes_the_fleets_policies_from_the_page_and_the_box_applies_them() {
    let dir = tempfile::tempdir().unwrap();
    let (pin, key) = ceremony(dir.path());
    let broker = Mosquitto::start();
    let central = Central::start_args(
        &broker.url(),
        None,
        &["--release-key".into(), key.display().to_string()],
    );
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "craie-et-tableau-2026\n").unwrap();
    let db = central.database();
    let out = central_cli(&[
        "admin",
        "add",
        "parc",
        "--password-file",
        pw.to_str().unwrap(),
        "--database",
        db.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let app = Appliance::start(&sync_config(&broker.url(), &pin));
    let url = |path: &str| format!("http://{}{path}", central.http);
    let form = |csrf: &str| {
        format!(
            "kind=policies&csrf={csrf}&source=%5B%5Bpolicy%5D%5D%0Aname%3D%22x%22%0Adefault%3Dtrue"
        )
    };

    // The host's own caller without a session reads the page, without a form, and
    // cannot publish (a page elsewhere could have the host's browser post it).
    let (status, page) = curl(&[&url("/policies")]);
    assert_eq!(status, 200);
    assert!(page.contains("Connectez-vous pour publier") && !page.contains("<textarea"));
    let (status, _) = curl(&["-d", &form(""), &url("/policies/publish")]);
    assert_eq!(status, 403);
    // With a session, the form's token is checked.
    let (status, signed_in) = curl(&[
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"login": "parc", "password": "craie-et-tableau-2026"}"#,
        &url("/api/v1/login"),
    ]);
    assert_eq!(status, 200, "{signed_in}");
    let cookie = signed_in
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_string();
    let (status, _) = curl(&[
        "-H",
        &format!("cookie: {cookie}"),
        "-d",
        &form("not-the-token"),
        &url("/policies/publish"),
    ]);
    assert_eq!(status, 403);
    assert!(central.log().find("published from the console").is_none());

    let browser = Browser::start().await.unwrap();
    browser.resize(1280, 800).await.unwrap();
    browser.goto(&url("/login")).await.unwrap();
    browser.check_accessible("central-login").await.unwrap();
    browser
        .type_into("input[name=login]", "parc")
        .await
        .unwrap();
    browser
        .type_into("input[name=password]", "craie-et-tableau-2026")
        .await
        .unwrap();
    browser.click("button[type=submit]").await.unwrap();
    browser
        .wait(
            "the fleet page",
            "return location.pathname === '/'",
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    browser.goto(&url("/policies")).await.unwrap();
    let fill = |text: &str| {
        format!(
            "document.querySelector('textarea[name=source]').value = {}; return true",
            serde_json::to_string(text).unwrap()
        )
    };
    let submit = async |text: &str| {
        browser.eval(&fill(text)).await.unwrap();
        browser
            .click("form[action='/policies/publish'] button")
            .await
            .unwrap();
    };
    // A mistake: refused with the reason, the text kept to be fixed.
    submit("[[policy]]\nname = \"ecole\"\ndeny = 42\n").await;
    browser
        .wait(
            "the refusal",
            "return !!document.querySelector('[role=alert]')",
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let source = async || {
        browser
            .eval("return document.querySelector('textarea[name=source]').value")
            .await
            .unwrap()
    };
    let kept = source().await;
    assert!(kept.as_str().unwrap().contains("deny = 42"), "{kept}");
    let policies = format!(
        "[[policy]]\nname = \"ecole\"\ndefault = true\ndeny = [\"{NAME}\"]\nsafe_search = true\n"
    );
    submit(&policies).await;
    browser
        .wait(
            "the publication listed",
            "return document.body.innerText.includes('Publié depuis la console') \
             && [...document.querySelectorAll('td')].some(t => t.textContent === 'parc')",
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    // The form now starts from what was published.
    let again = source().await;
    assert_eq!(again.as_str().unwrap(), policies);
    browser.check_accessible("central-policies").await.unwrap();
    browser.keep_screenshot("central-policies").await.unwrap();

    // The box checks the working key's signature and filters with it.
    wait_until(
        "the box applies the page's policies",
        Duration::from_secs(30),
        || verdict(&app, NAME) == "block",
    );
    assert_eq!(verdict(&app, "example.org"), "allow");
}
