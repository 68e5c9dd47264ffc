//! The fleet console faces the internet: nothing of the fleet for a caller who has
//! not signed in as one of its admins, but on the central host itself. The caller
//! here is in a network namespace of its own, reaching the console over a veth pair.

use std::process::Command;

use cartable_systests::central::Central;
use cartable_systests::mosquitto::Mosquitto;
use cartable_systests::netns::Netns;

/// curl from inside `ns`: (status, headers and body).
fn curl(ns: &Netns, args: &[&str]) -> (u16, String) {
    let out = ns
        .command("curl")
        .args(["-s", "-m", "10", "-i", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (rest, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), rest.to_string())
}

#[test]
fn the_console_answers_only_its_admins_and_its_own_host() {
    if !Netns::available() {
        eprintln!("skipped: network namespaces need root");
        return;
    }
    let broker = Mosquitto::start();
    let central = Central::start_bound(&broker.address(), None, &[], [0, 0, 0, 0].into());
    let ns = Netns::create(57);
    let base = format!("http://{}:{}", ns.outer_ip, central.http.port());
    let url = |p: &str| format!("{base}{p}");

    // Not signed in, from elsewhere: nothing of the fleet.
    assert_eq!(curl(&ns, &[&url("/api/v1/boxes")]).0, 401);
    let (code, head) = curl(&ns, &[&url("/")]);
    assert_eq!(code, 303);
    assert!(
        head.to_ascii_lowercase().contains("location: /login"),
        "{head}"
    );
    let (code, page) = curl(&ns, &[&url("/login")]);
    assert_eq!(code, 200);
    assert!(
        page.contains("<form method=\"post\" action=\"/login\">"),
        "{page}"
    );
    // The host itself keeps the JSON API (scripts, monitoring).
    assert!(central.get("/api/v1/boxes").is_some());

    // An admin made with the command line.
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "craie-et-tableau-2026\n").unwrap();
    let db = central.dir.path().join("central.db");
    let st = Command::new(cartable_systests::bins::bin("cartable-central"))
        .args(["admin", "add", "parc", "--password-file"])
        .arg(&pw)
        .arg("--database")
        .arg(&db)
        .status()
        .unwrap();
    assert!(st.success());

    let login = |password: &str| {
        curl(
            &ns,
            &[
                "-H",
                "content-type: application/json",
                "-d",
                &format!(r#"{{"login": "parc", "password": "{password}"}}"#),
                &url("/api/v1/login"),
            ],
        )
    };
    assert_eq!(login("wrong-password-0000").0, 401);
    // Guessing slows the address down, even with the right password.
    assert_eq!(login("craie-et-tableau-2026").0, 429);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (code, answer) = login("craie-et-tableau-2026");
    assert_eq!(code, 200, "{answer}");
    let cookie = answer
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string();
    let body = answer.rsplit("\r\n\r\n").next().unwrap_or_default();
    let csrf = serde_json::from_str::<serde_json::Value>(body).expect("JSON")["csrf"]
        .as_str()
        .unwrap()
        .to_string();
    let with_cookie = ["-H", &format!("cookie: {cookie}")];
    let (code, boxes) = curl(
        &ns,
        &[with_cookie[0], with_cookie[1], &url("/api/v1/boxes")],
    );
    assert_eq!(code, 200, "{boxes}");
    assert_eq!(
        curl(&ns, &[with_cookie[0], with_cookie[1], &url("/")]).0,
        200
    );
    // A change without the CSRF token is refused; with it, the session ends.
    let logout = |csrf: &str| {
        curl(
            &ns,
            &[
                with_cookie[0],
                with_cookie[1],
                "-H",
                &format!("x-csrf-token: {csrf}"),
                "-X",
                "POST",
                &url("/api/v1/logout"),
            ],
        )
        .0
    };
    assert_eq!(logout("not-the-token"), 403);
    assert_eq!(logout(&csrf), 204);
    assert_eq!(
        curl(
            &ns,
            &[with_cookie[0], with_cookie[1], &url("/api/v1/boxes")]
        )
        .0,
        401
    );

    // The page's form signs in too, back to the dashboard.
    let (code, head) = curl(
        &ns,
        &[
            "-d",
            "login=parc&password=craie-et-tableau-2026",
            &url("/login"),
        ],
    );
    assert_eq!(code, 303, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("set-cookie: central_session="),
        "{head}"
    );
}
