//! The daemon as a process: starts, answers, reports, and stops cleanly on SIGTERM.

use std::time::Duration;

use crate::support::{Daemon, curl, run, write};

/// Extracts `127.0.0.1:PORT` from the demo's `web  http://ADDR/` line.
fn web_addr(lines: &[String]) -> String {
    lines
        .iter()
        .find_map(|l| l.split("http://").nth(1))
        .and_then(|rest| rest.split('/').next())
        .expect("the demo prints its web address")
        .to_string()
}

#[test]
fn demo_serves_reports_and_stops_on_sigterm() {
    let data = tempfile::tempdir().unwrap();
    let mut demo = Daemon::spawn(&[
        "demo",
        "--http",
        "127.0.0.1:0",
        "--dns",
        "127.0.0.1:0",
        "--data-dir",
        data.path().to_str().unwrap(),
    ]);
    let banner = demo.wait_for_line("Stop with Ctrl-C", Duration::from_secs(20));
    assert!(banner.iter().any(|l| l.contains("3 classes")), "{banner:?}");
    let addr = web_addr(&banner);

    let (code, body) = curl(&format!("http://{addr}/healthz"));
    assert_eq!((code, body.trim()), (200, "ok"));

    let (code, json) = curl(&format!("http://{addr}/api/v1/status"));
    assert_eq!(code, 200);
    assert!(json.contains("\"box_id\":\"demo-box\""), "{json}");
    assert!(json.contains("\"free_bytes\""), "{json}");

    let out = run(&["status", "--http", &addr]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for service in ["store", "uplink", "filter", "dns", "http"] {
        assert!(
            text.lines()
                .any(|l| l.contains(service) && l.contains("running")),
            "{service} not running in:\n{text}"
        );
    }

    // The demo's teacher sees the first class's tablets, driven by reference agents.
    assert!(
        banner.iter().any(|l| l.contains("6 demo tablets")),
        "{banner:?}"
    );
    let jar = data.path().join("cookies");
    let curl_json = |args: &[&str]| -> String {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-m",
                "5",
                "-b",
                jar.to_str().unwrap(),
                "-c",
                jar.to_str().unwrap(),
            ])
            .args(args)
            .output()
            .expect("curl runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let login = curl_json(&[
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"login":"c.martin","password":"demo-cartable"}"#,
        &format!("http://{addr}/api/v1/login"),
    ]);
    assert!(login.contains("csrf"), "{login}");
    let classes = curl_json(&[&format!("http://{addr}/api/v1/classes")]);
    let id = classes
        .split("\"id\":")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .expect("a class id")
        .to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let tiles = curl_json(&[&format!("http://{addr}/api/v1/classes/{id}/devices")]);
        if tiles.matches("\"connected\":true").count() == 6 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "demo tablets not connected: {tiles}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    demo.terminate();
    let status = demo.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
    assert!(data.path().join("cartable.db").exists());
}

#[test]
fn run_with_a_config_file_and_stop_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = write(
        dir.path(),
        "box.toml",
        &format!(
            "[appliance]\nid = \"box-7\"\nsite = \"college-jaures\"\ndata_dir = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n[dns]\nlisten = [\"127.0.0.1:0\"]\nsystem_resolvers = false\n",
            data.display()
        ),
    );
    let mut daemon = Daemon::spawn(&["run", "--config", &config]);
    // `run` prints nothing on stdout; wait for its database and port instead.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !data.join("cartable.db").exists() {
        assert!(std::time::Instant::now() < deadline, "no database created");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = nix::unistd::Pid::from_raw(daemon.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    assert_eq!(daemon.wait_exit(Duration::from_secs(5)).code(), Some(0));
}

#[test]
fn run_refuses_an_invalid_config_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "box.toml", "[http]\nlisten = \"nowhere\"\n");
    let out = run(&["run", "--config", &config]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(":2: [http] listen"));
}

#[test]
fn status_without_a_daemon_says_so() {
    // Bind then drop to find a port where nothing listens.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = run(&["status", "--http", &format!("127.0.0.1:{port}")]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot reach the daemon"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_command_has_help() {
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["demo", "--help"],
        &["check-config", "--help"],
        &["status", "--help"],
    ] {
        let out = run(args);
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage:"),
            "{args:?}"
        );
    }
}
