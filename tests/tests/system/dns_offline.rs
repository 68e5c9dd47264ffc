//! The filtering DNS as an offline school and its admin live with it: an upstream
//! that goes silent, a power cut, a list that vanishes, a misspelled category, and
//! the admin's debugging tool asking the box that actually answers.

use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

use cartable_systests::appliance::Appliance;
use cartable_systests::bins::{bin, cartable_ok};
use cartable_systests::blackhole::BlackHole;
use cartable_systests::dig::dig;
use cartable_systests::dnsmasq::Dnsmasq;
use nix::sys::signal::Signal;

/// One A query over UDP, timed; the reply's rcode and its first answer's TTL.
fn timed_query(server: std::net::SocketAddr, name: &str) -> (Duration, u8, Option<u32>) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
    let mut q = vec![0x42, 0x42, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    let started = Instant::now();
    s.send_to(&q, server).unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = s.recv_from(&mut buf).expect("an answer");
    let took = started.elapsed();
    let answers = u16::from_be_bytes([buf[6], buf[7]]);
    // The first answer's TTL: after the question, a 2-byte pointer, type, class.
    let ttl = (answers > 0 && n >= q.len() + 10).then(|| {
        let at = q.len() + 6;
        u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
    });
    (took, buf[3] & 0x0f, ttl)
}

/// The upstream is "up" but every packet to it vanishes: after the first failure,
/// stale answers go out at once (RFC 8767's failure recheck), not after the
/// upstream's timeout each time (1.52 s per answer before).
#[test]
fn a_black_holed_upstream_is_answered_stale_at_once_after_the_first_failure() {
    let names: Vec<String> = (0..6).map(|i| format!("n{i}.stale.test")).collect();
    let records: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "10.6.0.1")).collect();
    let resolver = Dnsmasq::start(&records, 1);
    let relay = BlackHole::start(resolver.addr);
    let box_ = Appliance::start(&format!(
        "[dns]\nupstreams = [\"{}\"]\nupstream_timeout_ms = 1500\n",
        relay.addr
    ));
    for n in &names {
        assert_eq!(dig(box_.dns, n, "A", &[]).data("A"), ["10.6.0.1"], "{n}");
    }
    // The answers expire (TTL 1 s): from now on they are stale.
    std::thread::sleep(Duration::from_millis(1100));
    relay.cut();
    // The first stale answer waits for the upstream to fail.
    let (first, rcode, ttl) = timed_query(box_.dns, &names[0]);
    assert_eq!(
        (rcode, ttl),
        (0, Some(30)),
        "stale, with RFC 8767's 30 s TTL"
    );
    // Every one after goes out at once.
    let (mut fastest, mut slowest) = (Duration::MAX, Duration::ZERO);
    for n in &names[1..] {
        let (took, rcode, ttl) = timed_query(box_.dns, n);
        assert_eq!((rcode, ttl), (0, Some(30)), "{n}");
        assert!(took < Duration::from_millis(1000), "{n} waited {took:?}");
        fastest = fastest.min(took);
        slowest = slowest.max(took);
    }
    eprintln!(
        "black-holed upstream: first stale answer {first:?}; after it, fastest {fastest:?}, slowest {slowest:?}"
    );
    assert!(fastest < Duration::from_millis(50), "{fastest:?}");
}

/// A kill -9 (a power cut) two seconds after a name was learned, then a restart with
/// the upstream gone: the name is still answered (before, only what the five-minute
/// save held survived).
#[test]
fn a_name_learned_seconds_before_a_power_cut_survives_it() {
    let mut upstream = Dnsmasq::start(&[("learned.test", "10.7.0.1")], 3600);
    let mut box_ = Appliance::start(&format!("[dns]\nupstreams = [\"{}\"]\n", upstream.addr));
    assert_eq!(
        dig(box_.dns, "learned.test", "A", &[]).data("A"),
        ["10.7.0.1"]
    );
    // The learned answer reaches the store within seconds (the save every five minutes
    // would never come within this bound).
    let db = rusqlite::Connection::open(box_.database()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n: i64 = db
            .query_row(
                "SELECT count(*) FROM dns_cache WHERE name = 'learned.test'",
                [],
                |r| r.get(0),
            )
            .unwrap_or(0);
        if n == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "not stored within 10 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(db);
    box_.signal(Signal::SIGKILL);
    upstream.stop();
    box_.restart();
    let after = dig(box_.dns, "learned.test", "A", &[]);
    assert_eq!(after.data("A"), ["10.7.0.1"], "{}", after.raw);
}

/// A misspelled category is an error with its likely fix, for `check-config` and at
/// start; marked optional, it is accepted.
#[test]
fn a_misspelled_category_is_refused_by_check_config_and_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("jeux.txt");
    std::fs::write(&list, "000-online-casino.com\n").unwrap();
    let config = dir.path().join("cartable.toml");
    let text = format!(
        "[appliance]\ndata_dir = \"{}\"\n[[filter.list]]\ncategory = \"gambling\"\npath = \"{}\"\n[[filter.policy]]\nname = \"ecole\"\nblock = [\"gamblig\"]\n",
        dir.path().join("data").display(),
        list.display()
    );
    std::fs::write(&config, &text).unwrap();
    for command in ["check-config", "run"] {
        let mut cmd = Command::new(bin("cartable"));
        match command {
            "run" => cmd.args(["run", "--config"]),
            _ => cmd.arg("check-config"),
        };
        let out = cmd.arg(&config).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {stderr}");
        assert!(
            stderr.contains("`gamblig`") && stderr.contains("did you mean `gambling`"),
            "{command}: {stderr}"
        );
    }
    std::fs::write(
        &config,
        text.replace("block = [\"gamblig\"]", "block = [\"gambling\"]"),
    )
    .unwrap();
    cartable_ok([std::ffi::OsStr::new("check-config"), config.as_os_str()]);
}

/// A list file deleted under a running box: the lists in service stay, and the box
/// says it is degraded, naming the file. A policy that blocks nothing it names says
/// so too.
#[test]
fn a_vanished_list_or_a_policy_that_blocks_nothing_is_degraded() {
    let lists = tempfile::tempdir().unwrap();
    let list = lists.path().join("jeux.txt");
    std::fs::write(&list, "casino.test\n").unwrap();
    let box_ = Appliance::start(&format!(
        "[dns]\nblock_mode = \"nxdomain\"\n[[filter.list]]\ncategory = \"gambling\"\npath = \"{}\"\n[[filter.policy]]\nname = \"ecole\"\nblock = [\"gambling\"]\n",
        list.display()
    ));
    assert_eq!(box_.healthz(), (200, "ok\n".to_string()));
    std::fs::remove_file(&list).unwrap();
    box_.signal(Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(20);
    let (code, body) = loop {
        let (code, body) = box_.healthz();
        if code != 200 {
            break (code, body);
        }
        assert!(Instant::now() < deadline, "still healthy: {body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(code, 503, "{body}");
    assert!(body.starts_with("degraded"), "{body}");
    assert!(body.contains(&list.display().to_string()), "{body}");
    assert_eq!(
        dig(box_.dns, "casino.test", "A", &[]).status,
        "NXDOMAIN",
        "the lists in service stay"
    );
    let status = box_.get_json("/api/v1/status");
    let filter = status["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "filter")
        .unwrap()
        .clone();
    assert!(
        filter["problems"].to_string().contains("jeux.txt"),
        "{filter}"
    );

    // No list at all: the built-in policies block nothing they name.
    let bare = Appliance::start("");
    let (code, body) = bare.healthz();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("policy `ecole` blocks none"), "{body}");
}

/// `cartable filter test` asks the running daemon (its policies may not be the file's)
/// and says so; with no daemon it decides from the file and the store, and says that.
#[test]
fn filter_test_asks_the_running_daemon() {
    let lists = tempfile::tempdir().unwrap();
    let list = lists.path().join("jeux.txt");
    std::fs::write(&list, "000-online-casino.com\n").unwrap();
    let mut box_ = Appliance::start(&format!(
        "[[filter.list]]\ncategory = \"gambling\"\npath = \"{}\"\n[[filter.policy]]\nname = \"ecole\"\nblock = [\"gambling\"]\n",
        list.display()
    ));
    // The file changes under the daemon, which still runs with what it loaded.
    let text = std::fs::read_to_string(&box_.config).unwrap();
    std::fs::write(
        &box_.config,
        text.replace("block = [\"gambling\"]", "block = []"),
    )
    .unwrap();
    let ask = |box_: &Appliance| {
        let config = box_.config.to_str().expect("utf-8 path");
        cartable_ok([
            "filter",
            "test",
            "000-online-casino.com",
            "--config",
            config,
        ])
    };
    let running = ask(&box_);
    assert!(running.contains("gambling"), "{running}");
    assert!(running.contains("asked the running daemon"), "{running}");
    assert!(running.contains("the configuration file"), "{running}");
    box_.stop();
    let offline = ask(&box_);
    assert!(offline.contains("no daemon answers"), "{offline}");
    assert!(
        !offline.contains("gambling"),
        "the file's policy now: {offline}"
    );
}
