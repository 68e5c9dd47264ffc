//! `cartable check-config`: exit 0 on a valid file; otherwise exit 2 with every
//! problem as `FILE:LINE: message` naming the key.

use crate::support::{run, write};

fn check(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "box.toml", text);
    let out = run(&["check-config", &path]);
    let stderr = String::from_utf8_lossy(&out.stderr).replace(&path, "FILE");
    (out.status.code().unwrap_or(-1), stderr)
}

/// Asserts exactly one problem, at `line`, whose message contains each of `words`.
fn assert_one(text: &str, line: usize, words: &[&str]) {
    let (code, stderr) = check(text);
    assert_eq!(code, 2, "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with(&format!("FILE:{line}: ")), "{stderr}");
    for w in words {
        assert!(lines[0].contains(w), "{w:?} not in {stderr}");
    }
}

#[test]
fn the_documented_example_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml");
    let out = run(&["check-config", example]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_empty_file_is_valid() {
    assert_eq!(check("").0, 0);
}

#[test]
fn unknown_key() {
    assert_one(
        "[http]\n\nlisen = \"0.0.0.0:80\"\n",
        3,
        &["[http]", "unknown key `lisen`"],
    );
}

#[test]
fn unknown_section() {
    assert_one(
        "[appliance]\nid = \"a\"\n[dsn]\n",
        3,
        &["unknown section `[dsn]`"],
    );
}

#[test]
fn wrong_type() {
    assert_one(
        "[cache]\nquota_bytes = \"lots\"\n",
        2,
        &["[cache] quota_bytes", "string"],
    );
}

#[test]
fn bad_address() {
    assert_one(
        "[dns]\nlisten = [\"0.0.0.0:53\", \"127.0.0.1:99999\"]\n",
        2,
        &["[dns] listen", "address"],
    );
    assert_one(
        "[http]\nlisten = \"localhost\"\n",
        2,
        &["[http] listen", "address"],
    );
    assert_one(
        "[sync]\nbroker = \"tcp://central:1883\"\n",
        2,
        &["[sync] broker", "mqtt://"],
    );
}

#[test]
fn missing_file() {
    assert_one(
        "[filter]\nut1_archive = \"/nonexistent/ut1.tar.gz\"\n",
        2,
        &["[filter] ut1_archive", "/nonexistent/ut1.tar.gz"],
    );
}

#[test]
fn bad_value() {
    assert_one(
        "[dns]\nblock_mode = \"silent\"\n",
        2,
        &["[dns] block_mode", "nxdomain"],
    );
    assert_one(
        "[appliance]\nsite = \"École Jaurès\"\n",
        2,
        &["[appliance] site"],
    );
    assert_one(
        "[sync]\nbroker = \"mqtt://c:1883\"\nfleet_public_key = \"abcd\"\n",
        3,
        &["[sync] fleet_public_key", "keygen"],
    );
    assert_one(
        "[sync]\nrate_limit_from = \"8h\"\n",
        2,
        &["[sync] rate_limit_from", "HH:MM"],
    );
}

#[test]
fn syntax_error() {
    assert_one("[http]\nlisten = \"0.0.0.0:80\n", 2, &["syntax"]);
}

#[test]
fn every_problem_is_reported_in_one_run() {
    let (code, stderr) = check(
        "[appliance]\nid = \"Box 1\"\n[http]\nport = 80\n[cache]\nquota_bytes = -1\n[update]\nchannel = \"beta\"\n",
    );
    assert_eq!(code, 2);
    let at: Vec<&str> = stderr
        .lines()
        .map(|l| l.split(": ").next().unwrap())
        .collect();
    assert_eq!(at, ["FILE:2", "FILE:4", "FILE:6", "FILE:8"], "{stderr}");
}

#[test]
fn an_unreadable_file_is_an_error() {
    let out = run(&["check-config", "/nonexistent/cartable.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}
