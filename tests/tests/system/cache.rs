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

    // One kept-alive connection: an object (sent by sendfile), then a page of the
    // router, then the object again, a HEAD, and a pipelined pair.
    let status_url = format!("http://{}/api/v1/status", app.http);
    let out = Command::new("curl")
        .args([
            "-s",
            "-m",
            "10",
            "-w",
            "%{http_code} %{size_download} %{num_connects}\n",
        ])
        .args(["-o", "/dev/null", &url, "-o", "/dev/null", &status_url])
        .args(["-o", "/dev/null", &url])
        .output()
        .unwrap();
    let lines = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0], "200 1000000 1");
    assert!(
        lines[1].starts_with("200 ") && lines[1].ends_with(" 0"),
        "{lines:?}"
    );
    assert_eq!(lines[2], "200 1000000 0");
    let head = Command::new("curl")
        .args(["-s", "-I", &url])
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&head.stdout).to_ascii_lowercase();
    assert!(
        head.starts_with("http/1.1 200") && head.contains("content-length: 1000000"),
        "{head}"
    );
    let mut conn = std::net::TcpStream::connect(app.http).unwrap();
    use std::io::{Read, Write};
    let path = format!("/cache/{}", sha.as_str());
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: box\r\nRange: bytes=0-9\r\n\r\nGET /healthz HTTP/1.1\r\nHost: box\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 206"), "{text}");
    // The pipelined second request is answered too (a box without lists says it is
    // degraded there, with a 503: any answer shows the connection went on).
    assert_eq!(text.matches("HTTP/1.1 ").count(), 2, "{text}");
    let body_start = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(&answer[body_start..body_start + 10], &bytes[..10]);
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
        "[cache]\ncatalogue = \"{}\"\n{NO_PREFETCH}\n",
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

// ---- The cache with an origin: prefetch, resume, coalescing, corruption, quota ----

use cartable_systests::upstream::{Faults, Upstream};
use std::time::{Duration, Instant};

fn sha_of(bytes: &[u8]) -> String {
    cartable_protocol::desired::hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

fn payload(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32)
        .map(|i| {
            (i ^ seed.wrapping_mul(0x9e37_79b9))
                .wrapping_mul(2_654_435_761)
                .to_be_bytes()[0]
        })
        .collect()
}

/// A catalogue file in `dir` naming each (id, url, bytes, pinned).
fn catalogue(dir: &std::path::Path, items: &[(&str, String, &[u8], bool)]) -> std::path::PathBuf {
    let items: Vec<serde_json::Value> = items
        .iter()
        .enumerate()
        .map(|(i, (id, url, bytes, pinned))| {
            serde_json::json!({
                "id": id, "version": "1.0", "urls": [url], "size": bytes.len(),
                "sha256": sha_of(bytes), "pinned": pinned, "priority": i,
            })
        })
        .collect();
    let path = dir.join("catalogue.json");
    std::fs::write(&path, serde_json::json!({ "items": items }).to_string()).unwrap();
    path
}

/// The prefetcher never runs: a window with no day.
const NO_PREFETCH: &str = "windows = [{ days = [], from = \"00:00\", to = \"23:59\" }]";

fn item_state(app: &Appliance, id: &str) -> serde_json::Value {
    app.get_json("/api/v1/cache")
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id)
        .cloned()
        .unwrap_or_default()
}

fn wait_state(app: &Appliance, id: &str, state: &str, within: Duration) -> serde_json::Value {
    let t0 = Instant::now();
    loop {
        let v = item_state(app, id);
        if v["state"] == state {
            return v;
        }
        assert!(
            t0.elapsed() < within,
            "{id} never {state}: {v}\n{}",
            app.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_download_cut_at_90_percent_resumes_there_and_verifies() {
    let origin = Upstream::start();
    let body = payload(3_000_000, 1);
    origin.put(
        "/lecture.apk",
        body.clone(),
        Faults {
            drop_after: Some(2_700_000),
            ..Faults::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let cat = catalogue(
        dir.path(),
        &[("lecture", origin.url("/lecture.apk"), &body, true)],
    );
    let app = Appliance::start(&format!(
        "[cache]\ncatalogue = \"{}\"\nretry_max_secs = 1\nreserve_bytes = 0\n",
        cat.display()
    ));
    wait_state(&app, "lecture", "present", Duration::from_secs(30));
    let seen = origin.requests("/lecture.apk");
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].range, None);
    assert_eq!(seen[1].range.as_deref(), Some("bytes=2700000-"), "{seen:?}");
    // The origin sent the object once: 90 % then the last 10 %.
    assert_eq!(origin.bytes_sent(), 3_000_000);
    let (status, got, head) = curl(&[&format!("http://{}/cache/items/lecture", app.http)]);
    assert_eq!(status, 200);
    assert_eq!(sha_of(&got), sha_of(&body));
    assert!(
        head.contains("content-type: application/vnd.android.package-archive"),
        "{head}"
    );
    assert!(head.contains("filename=\"lecture.apk\""), "{head}");
    let status = app.get_json("/api/v1/status");
    assert_eq!(status["cache"]["present"], 1, "{status}");
    assert_eq!(status["cache"]["bytes_used"], 3_000_000, "{status}");
    // Stored and reported: the outbox holds the event for the central side.
    let events: i64 = rusqlite::Connection::open(app.database())
        .unwrap()
        .query_row(
            "SELECT count(*) FROM outbox WHERE body LIKE '%update_progress%' AND body LIKE '%stored%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(events, 1);
}

#[test]
fn an_origin_that_ignores_range_is_fetched_whole_again() {
    let origin = Upstream::start();
    let body = payload(1_500_000, 2);
    origin.put(
        "/a.zip",
        body.clone(),
        Faults {
            drop_after: Some(1_000_000),
            ignore_range: true,
            ..Faults::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let cat = catalogue(dir.path(), &[("atlas", origin.url("/a.zip"), &body, true)]);
    let app = Appliance::start(&format!(
        "[cache]\ncatalogue = \"{}\"\nretry_max_secs = 1\nreserve_bytes = 0\n",
        cat.display()
    ));
    wait_state(&app, "atlas", "present", Duration::from_secs(30));
    let seen = origin.requests("/a.zip");
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[1].range.as_deref(), Some("bytes=1000000-"));
    // It answered the range with the whole object, which was taken from byte 0.
    assert_eq!(origin.bytes_sent(), 1_000_000 + 1_500_000);
    let (_, got, _) = curl(&[&format!("http://{}/cache/{}", app.http, sha_of(&body))]);
    assert_eq!(got, body);
}

#[test]
fn fifty_concurrent_requests_for_a_cold_object_make_one_upstream_fetch() {
    let origin = Upstream::start();
    let body = payload(4_000_000, 3);
    origin.put(
        "/big.apk",
        body.clone(),
        Faults {
            trickle: Duration::from_millis(15),
            ..Faults::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let cat = catalogue(dir.path(), &[("big", origin.url("/big.apk"), &body, false)]);
    let app = Appliance::start(&format!(
        "[cache]\ncatalogue = \"{}\"\nreserve_bytes = 0\n{NO_PREFETCH}\n",
        cat.display()
    ));
    assert_eq!(item_state(&app, "big")["state"], "missing");
    let url = format!("http://{}/cache/{}", app.http, sha_of(&body));
    let clients: Vec<_> = (0..50)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let out = Command::new("curl")
                    .args(["-s", "-f", "-m", "60", "-o", "-", &url])
                    .output()
                    .unwrap();
                (out.status.success(), sha_of(&out.stdout), out.stdout.len())
            })
        })
        .collect();
    let want = sha_of(&body);
    for c in clients {
        let (ok, sha, len) = c.join().unwrap();
        assert!(
            ok && sha == want,
            "a client got {len} bytes hashing to {sha}"
        );
    }
    assert_eq!(origin.requests("/big.apk").len(), 1);
    assert_eq!(origin.bytes_sent(), 4_000_000);
    assert_eq!(item_state(&app, "big")["state"], "present");
}

#[test]
fn a_corrupt_body_is_not_published_its_clients_are_cut_and_it_is_retried() {
    let origin = Upstream::start();
    let body = payload(2_000_000, 4);
    origin.put(
        "/m.apk",
        body.clone(),
        Faults {
            corrupt: 1,
            // Still arriving when the answer starts, so the client is cut mid-body.
            trickle: Duration::from_millis(10),
            ..Faults::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let cat = catalogue(dir.path(), &[("maths", origin.url("/m.apk"), &body, false)]);
    let app = Appliance::start(&format!(
        "[cache]\ncatalogue = \"{}\"\nreserve_bytes = 0\n{NO_PREFETCH}\n",
        cat.display()
    ));
    let url = format!("http://{}/cache/{}", app.http, sha_of(&body));
    let out = Command::new("curl")
        .args(["-s", "-m", "30", "-o", "-", &url])
        .output()
        .unwrap();
    // curl: 18 = "transfer closed with outstanding read data remaining".
    assert_eq!(out.status.code(), Some(18), "curl {:?}", out.status);
    assert!(out.stdout.len() < body.len());
    assert_ne!(item_state(&app, "maths")["state"], "present");
    assert!(
        !app.dir
            .path()
            .join("data/cache")
            .join(&sha_of(&body)[..2])
            .join(sha_of(&body))
            .exists()
    );
    assert!(app.log().contains("hash"), "{}", app.log());
    // The next request fetches again, and this time the bytes verify.
    let (status, got, _) = curl(&[&url]);
    assert_eq!(status, 200);
    assert_eq!(sha_of(&got), sha_of(&body));
    assert_eq!(origin.requests("/m.apk").len(), 2);
}

#[test]
fn the_quota_evicts_the_least_recently_used_and_keeps_pinned_objects() {
    let origin = Upstream::start();
    let [a, b, c, d] = [5, 6, 7, 8].map(|s| payload(1_000_000, s));
    for (p, x) in [("/a", &a), ("/b", &b), ("/c", &c), ("/d", &d)] {
        origin.put(p, x.clone(), Faults::default());
    }
    let dir = tempfile::tempdir().unwrap();
    let cat = catalogue(
        dir.path(),
        &[
            ("a", origin.url("/a"), &a, true),
            ("b", origin.url("/b"), &b, false),
            ("c", origin.url("/c"), &c, false),
            ("d", origin.url("/d"), &d, false),
        ],
    );
    let mut app = Appliance::start(&format!(
        "[cache]\ncatalogue = \"{}\"\nquota_bytes = 3500000\nreserve_bytes = 0\n{NO_PREFETCH}\n",
        cat.display()
    ));
    let http = app.http;
    let get = |x: &[u8]| {
        let (status, got, _) = curl(&[&format!("http://{}/cache/{}", http, sha_of(x))]);
        assert_eq!((status, got.len()), (200, x.len()));
    };
    get(&a);
    get(&b);
    get(&c);
    std::thread::sleep(Duration::from_millis(20));
    get(&b); // b is now more recent than c
    get(&d); // 4 MB > 3.5 MB: the least recently used unpinned object goes: c
    let states: Vec<_> = ["a", "b", "c", "d"]
        .iter()
        .map(|id| item_state(&app, id)["state"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(states, ["present", "present", "missing", "present"]);
    let status = app.get_json("/api/v1/status");
    assert_eq!(status["cache"]["bytes_used"], 3_000_000, "{status}");
    // After a restart the index still knows what is held and what was used when.
    app.stop();
    app.restart();
    get(&c); // b was used before d was stored: b is the least recent now
    let states: Vec<_> = ["a", "b", "c", "d"]
        .iter()
        .map(|id| item_state(&app, id)["state"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(states, ["present", "missing", "present", "present"]);
}

/// A small tmpfs mounted on the cache's folder: the disk really fills.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &std::path::Path, bytes: u64) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount tmpfs (the system tests run as root)");
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_is_a_clear_error_and_leaves_nothing_behind() {
    let origin = Upstream::start();
    let small = payload(1_000_000, 9);
    let big = payload(6_000_000, 10);
    origin.put("/small", small.clone(), Faults::default());
    origin.put("/big", big.clone(), Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let cat = catalogue(
        dir.path(),
        &[
            ("small", origin.url("/small"), &small, false),
            ("big", origin.url("/big"), &big, false),
        ],
    );
    let mut app = Appliance::start(&format!(
        "[cache]\ncatalogue = \"{}\"\nreserve_bytes = 1048576\n{NO_PREFETCH}\n",
        cat.display()
    ));
    // The cache's disk: 4 MiB, of which 1 MiB must stay free.
    app.stop();
    let cache_dir = app.dir.path().join("data/cache");
    std::fs::remove_dir_all(&cache_dir).unwrap();
    let _disk = Tmpfs::mount(&cache_dir, 4 << 20);
    app.restart();
    let (status, body, _) = curl(&[&format!("http://{}/cache/{}", app.http, sha_of(&big))]);
    assert_eq!(status, 507, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("no room"));
    assert_eq!(
        origin.requests("/big").len(),
        0,
        "nothing fetched without room"
    );
    let leftovers = std::fs::read_dir(cache_dir.join("partial"))
        .unwrap()
        .count();
    assert_eq!(leftovers, 0);
    // What fits still comes, and the box is well.
    let (status, got, _) = curl(&[&format!("http://{}/cache/{}", app.http, sha_of(&small))]);
    assert_eq!((status, got), (200, small));
    assert_eq!(app.get_json("/api/v1/status")["cache"]["present"], 1);
}

#[test]
fn friendly_paths_and_bad_input() {
    let app = Appliance::start("");
    for (path, want) in [
        ("/cache/items/nothing", 404),
        ("/cache/items/..%2F..%2Fcartable.db", 404),
        ("/cache/items/a/..%2F..%2F..%2Fetc%2Fpasswd", 404),
        ("/cache/..%2Fcache%2Ftmp", 400),
    ] {
        assert_eq!(
            curl(&[&format!("http://{}{path}", app.http)]).0,
            want,
            "{path}"
        );
    }
}

#[test]
fn redirect_mode_serves_an_origin_by_host_and_stores_each_file_once() {
    use cartable_systests::dig::dig;
    use cartable_systests::dnsmasq::Dnsmasq;
    // The real origin, at the address its name has upstream (port 80, as LanCache).
    let origin = Upstream::start_on("127.0.0.3:80");
    let book = payload(500_000, 11);
    let other = payload(300_000, 12);
    origin.put("/pack/lecture.apk", book.clone(), Faults::default());
    origin.put("/other.bin?v=2", other.clone(), Faults::default());
    let upstream = Dnsmasq::start(
        &[
            ("dl.manuels.test", "127.0.0.3"),
            ("dl2.manuels.test", "127.0.0.3"),
        ],
        60,
    );
    let dir = tempfile::tempdir().unwrap();
    let cat = catalogue(
        dir.path(),
        &[(
            "lecture",
            "http://dl.manuels.test/pack/lecture.apk".into(),
            &book,
            false,
        )],
    );
    let app = Appliance::start(&format!(
        "[dns]\nupstreams = [\"{}\"]\nbox_addresses = [\"127.0.0.1\"]\n\
         [cache]\ncatalogue = \"{}\"\nreserve_bytes = 0\n{NO_PREFETCH}\n\
         [[cache.redirect]]\nname = \"manuels\"\nhosts = [\"dl.manuels.test\", \"dl2.manuels.test\"]\n",
        upstream.addr,
        cat.display()
    ));
    // The box answers the origin's names with its own address...
    for name in ["dl.manuels.test", "dl2.manuels.test"] {
        assert_eq!(
            dig(app.dns, name, "A", &[]).data("A"),
            ["127.0.0.1"],
            "{name}"
        );
    }
    let port = app.http.port();
    let via = |host: &str, path: &str| {
        curl(&[
            "--resolve",
            &format!("{host}:{port}:127.0.0.1"),
            &format!("http://{host}:{port}{path}"),
        ])
    };
    // ... the catalogue's file comes from its verified object, whichever host ...
    let (status, got, head) = via("dl2.manuels.test", "/pack/lecture.apk");
    assert_eq!((status, got.len()), (200, book.len()), "{head}");
    assert_eq!(got, book);
    // The last bytes go out once the hash verified; the fsync and the rename follow.
    wait_state(&app, "lecture", "present", Duration::from_secs(10));
    let (_, again, _) = via("dl.manuels.test", "/pack/lecture.apk");
    assert_eq!(again, book);
    assert_eq!(origin.requests("/pack/lecture.apk").len(), 1);
    // ... and a file no catalogue names is fetched once, then kept for both hosts: it
    // is stored before its last byte goes out, so the very next request finds it.
    let (status, got, _) = via("dl.manuels.test", "/other.bin?v=2");
    assert_eq!((status, got), (200, other.clone()));
    for host in ["dl2.manuels.test", "dl.manuels.test"] {
        let (status, got, _) = via(host, "/other.bin?v=2");
        assert_eq!((status, got), (200, other.clone()), "{host}");
        assert_eq!(
            origin.requests("/other.bin?v=2").len(),
            1,
            "{host}: fetched again"
        );
    }
    // Only downloads: the box's own pages are not reachable under an origin's name.
    let (status, _, _) = via("dl.manuels.test", "/api/v1/status");
    assert_eq!(status, 404);
    assert!(app.get_json("/api/v1/status")["box_id"].is_string());
}

#[test]
fn the_prefetcher_keeps_to_its_rate_cap_and_its_windows() {
    let origin = Upstream::start();
    let body = payload(1_000_000, 13);
    origin.put("/slow.apk", body.clone(), Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let cat = catalogue(
        dir.path(),
        &[("slow", origin.url("/slow.apk"), &body, true)],
    );
    // 50 kB/s: after its first 256 KiB the download waits more than 5 s.
    let app = Appliance::start(&format!(
        "[cache]\ncatalogue = \"{}\"\nreserve_bytes = 0\nrate_limit = 50000\n",
        cat.display()
    ));
    let v = wait_state(&app, "slow", "downloading", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(1500));
    let v2 = item_state(&app, "slow");
    assert_eq!(v2["state"], "downloading", "{v} then {v2}");
    assert!(v2["bytes"].as_u64().unwrap() < 1_000_000, "{v2}");
    let status = app.get_json("/api/v1/status");
    assert_eq!(
        status["cache"]["downloading"][0]["item"], "slow",
        "{status}"
    );
    assert_eq!(status["cache"]["in_window"], true);

    // Outside its windows the prefetcher does not start at all.
    let other = Appliance::start(&format!(
        "[cache]\ncatalogue = \"{}\"\nreserve_bytes = 0\n{NO_PREFETCH}\n",
        cat.display()
    ));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(item_state(&other, "slow")["state"], "missing");
    assert_eq!(
        other.get_json("/api/v1/status")["cache"]["in_window"],
        false
    );
}

/// The admin edits the local catalogue file and sends SIGHUP (`systemctl reload`):
/// the new pinned item is fetched; without the signal the box would wait for its
/// next idle tick (30 s).
#[test]
fn sighup_reads_the_local_catalogue_again() {
    let origin = Upstream::start();
    let (first, second) = (payload(100_000, 21), payload(100_000, 22));
    origin.put("/first", first.clone(), Faults::default());
    origin.put("/second", second.clone(), Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let cat = catalogue(dir.path(), &[("first", origin.url("/first"), &first, true)]);
    let app = Appliance::start(&format!(
        "[cache]\ncatalogue = \"{}\"\nreserve_bytes = 0\n",
        cat.display()
    ));
    wait_state(&app, "first", "present", Duration::from_secs(30));
    let edited = catalogue(
        dir.path(),
        &[
            ("first", origin.url("/first"), &first, true),
            ("second", origin.url("/second"), &second, true),
        ],
    );
    assert_eq!(edited, cat);
    app.signal(nix::sys::signal::Signal::SIGHUP);
    wait_state(&app, "second", "present", Duration::from_secs(20));
    assert_eq!(origin.requests("/second").len(), 1);
}
