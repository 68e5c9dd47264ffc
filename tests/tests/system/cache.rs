//! The cache's serving side, with curl: whole objects, ranges (a download resumed),
//! ETag, and bad input.

use std::process::Command;

use cartable::cache::objects::{Objects, Sha256};
use cartable_systests::appliance::Appliance;

fn curl(args: &[&str]) -> (u16, Vec<u8>, String) {
    let out = Command::new("curl")
        .args(["-s", "-m", "10", "-D", "/dev/stderr", "-o", "-"])
        .args(args)
        .output()
        .expect("curl runs");
    let head = String::from_utf8_lossy(&out.stderr).into_owned();
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, out.stdout, head.to_ascii_lowercase())
}

#[test]
fn objects_are_served_whole_by_range_and_with_etags() {
    let app = Appliance::start("");
    let bytes: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let sha = Sha256::parse(&cartable_protocol::desired::hex(
        ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref(),
    ))
    .unwrap();
    let objects = Objects::open(&app.dir.path().join("data")).unwrap();
    objects
        .put(&sha, bytes.chunks(65536).map(|c| Ok(c.to_vec())))
        .unwrap();
    let url = format!("http://{}/cache/{}", app.http, sha.as_str());

    let (status, body, head) = curl(&[&url]);
    assert_eq!(status, 200);
    assert_eq!(body, bytes);
    assert!(head.contains("content-length: 1000000"), "{head}");
    assert!(
        head.contains(&format!("etag: \"{}\"", sha.as_str())),
        "{head}"
    );

    // A download cut at 90 % resumes from there.
    let (status, first, _) = curl(&["-r", "0-899999", &url]);
    assert_eq!((status, first.len()), (206, 900_000));
    let (status, rest, head) = curl(&["-r", "900000-", &url]);
    assert_eq!(status, 206);
    assert!(
        head.contains("content-range: bytes 900000-999999/1000000"),
        "{head}"
    );
    assert_eq!([first, rest].concat(), bytes);
    let (_, tail, _) = curl(&["-r", "-10", &url]);
    assert_eq!(tail, bytes[999_990..]);

    let etag = format!("If-None-Match: \"{}\"", sha.as_str());
    assert_eq!(curl(&["-H", &etag, &url]).0, 304);
    let (status, _, head) = curl(&["-r", "2000000-", &url]);
    assert_eq!(status, 416);
    assert!(head.contains("content-range: bytes */1000000"), "{head}");
    for bad in [
        "/cache/abc",
        "/cache/..%2F..%2Fcartable.db",
        &format!("/cache/{}", "z".repeat(64)),
    ] {
        assert_eq!(
            curl(&[&format!("http://{}{bad}", app.http)]).0,
            400,
            "{bad}"
        );
    }
    let missing = format!("http://{}/cache/{}", app.http, "0".repeat(64));
    assert_eq!(curl(&[&missing]).0, 404);
}

#[test]
fn the_catalogue_lists_what_the_box_holds_and_what_it_still_needs() {
    let dir = tempfile::tempdir().unwrap();
    let held = b"apk bytes".to_vec();
    let held_sha = cartable_protocol::desired::hex(
        ring::digest::digest(&ring::digest::SHA256, &held).as_ref(),
    );
    let catalogue = dir.path().join("catalogue.json");
    std::fs::write(
        &catalogue,
        format!(
            r#"{{"items": [
                {{"id": "lecture", "version": "2.1", "urls": ["http://127.0.0.1:1/l.apk"], "size": 9, "sha256": "{held_sha}", "pinned": true}},
                {{"id": "maths", "version": "1.0", "urls": ["http://127.0.0.1:1/m.apk"], "size": 5, "sha256": "{}"}}
            ]}}"#,
            "cd".repeat(32)
        ),
    )
    .unwrap();
    let app = Appliance::start(&format!(
        "[cache]\ncatalogue = \"{}\"\n",
        catalogue.display()
    ));
    Objects::open(&app.dir.path().join("data"))
        .unwrap()
        .put(&Sha256::parse(&held_sha).unwrap(), [Ok(held)])
        .unwrap();
    let (status, body, _) = curl(&[&format!("http://{}/api/v1/cache", app.http)]);
    assert_eq!(status, 200);
    let items: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(items[0]["id"], "lecture");
    assert_eq!(items[0]["state"], "present");
    assert_eq!(items[1]["state"], "missing");
}

#[test]
fn a_broken_catalogue_is_reported_and_the_box_still_serves() {
    let dir = tempfile::tempdir().unwrap();
    let catalogue = dir.path().join("catalogue.json");
    std::fs::write(&catalogue, "{ not json").unwrap();
    let app = Appliance::start(&format!(
        "[cache]\ncatalogue = \"{}\"\n",
        catalogue.display()
    ));
    let (status, body, _) = curl(&[&format!("http://{}/api/v1/cache", app.http)]);
    assert_eq!((status, body.as_slice()), (200, b"[]".as_slice()));
    assert!(app.log().contains("is not a catalogue"), "{}", app.log());
}
