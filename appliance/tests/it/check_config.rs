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

#[test]
fn a_passphrase_hostapd_would_refuse_is_refused_with_its_line() {
    // Too short (hostapd: 8 to 63), and a character hostapd does not take.
    assert_one(
        "[net]\nmode = \"cart\"\n\n[net.ap]\nenabled = true\npassphrase = \"court\"\n",
        6,
        &["[net.ap] passphrase", "8 to 63"],
    );
    assert_one(
        "[net.ap]\npassphrase = \"ligne\\ncoupée\"\n",
        2,
        &["line break"],
    );
    // hostapd counts bytes: "ééé" is 6.
    assert_one("[net.ap]\npassphrase = \"ééé\"\n", 2, &["6 bytes"]);
    // An access point with no passphrase at all would be open.
    assert_one(
        "[net]\nmode = \"cart\"\n\n[net.ap]\nenabled = true\n",
        4,
        &["[net.ap] passphrase is missing"],
    );
}

#[test]
fn a_cart_lan_that_does_not_hold_together_is_refused() {
    let (code, stderr) = check(
        "[net]\nmode = \"cart\"\n\n[net.lan]\naddress = \"10.42.0.1/24\"\n\n\
         [net.dhcp]\nrange_start = \"10.42.1.10\"\nrange_end = \"10.42.0.20\"\n\n\
         [[net.dhcp.static]]\nmac = \"02:00:00:00:00:01\"\naddress = \"10.42.0.1\"\n",
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("range_start = 10.42.1.10 is not a host of the LAN 10.42.0.0/24"),
        "{stderr}"
    );
    assert!(
        stderr.contains("range_start comes after range_end"),
        "{stderr}"
    );
    assert!(stderr.contains("is not a tablet's address"), "{stderr}");
    assert!(stderr.starts_with("FILE:7: "), "{stderr}");
    assert_one(
        "[[net.dhcp.static]]\nmac = \"02:00:00:00:00\"\naddress = \"10.42.0.9\"\n",
        2,
        &["not a MAC address"],
    );
    assert_one("[net.ap]\nchannel = 14\n", 2, &["not a wifi channel"]);
}
