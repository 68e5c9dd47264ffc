//! The filtering DNS server as a process, asked by `dig`, forwarding to `dnsmasq`, all
//! on loopback. Loopback addresses other than 127.0.0.1 (`dig -b 127.0.0.N`) stand for
//! clients on different subnets.

use std::net::UdpSocket;
use std::time::Duration;

use cartable_systests::appliance::Appliance;
use cartable_systests::dig::dig;
use cartable_systests::dnsmasq::Dnsmasq;

/// Lists and policies: 127.0.0.2 is a primary class (NXDOMAIN), 127.0.0.3 a secondary
/// one (null answers), 127.0.0.4 a third (block page); everyone else is a teacher.
fn config(upstream: std::net::SocketAddr, list: &std::path::Path) -> String {
    format!(
        r#"
[dns]
upstreams = ["{upstream}"]
box_addresses = ["192.0.2.80"]
block_mode = "blockpage"

[dns.local]
"cartable.lan" = ["192.0.2.80"]

[[filter.list]]
category = "gambling"
path = "{list}"

[[filter.policy]]
name = "primaire"
block = ["gambling"]
block_mode = "nxdomain"
allow = ["ok.casino.test"]
deny = ["games.test"]
youtube = "strict"
clients = ["127.0.0.2"]

[[filter.policy]]
name = "college"
block = ["gambling"]
block_mode = "null"
clients = ["127.0.0.3"]

[[filter.policy]]
name = "lycee"
block = ["gambling"]
clients = ["127.0.0.4/32"]

[[filter.policy]]
name = "enseignants"
safe_search = false
default = true
"#,
        list = list.display()
    )
}

struct Setup {
    _upstream: Dnsmasq,
    box_: Appliance,
    /// The gambling list the appliance reads (kept for the test's life).
    list: std::path::PathBuf,
    _lists: tempfile::TempDir,
}

fn setup() -> Setup {
    let upstream = Dnsmasq::start(
        &[
            ("www.allowed.test", "10.1.0.1"),
            ("burst.allowed.test", "10.1.0.7"),
            ("casino.test", "10.1.0.2"),
            ("games.test", "10.1.0.3"),
            ("forcesafesearch.google.com", "216.239.38.120"),
            ("restrict.youtube.com", "216.239.38.119"),
            ("www.google.fr", "198.51.100.9"),
        ],
        300,
    );
    let lists = tempfile::tempdir().unwrap();
    let list = lists.path().join("gambling.txt");
    std::fs::write(&list, "casino.test\npoker.test\n").unwrap();
    let box_ = Appliance::start(&config(upstream.addr, &list));
    Setup {
        _upstream: upstream,
        box_,
        list,
        _lists: lists,
    }
}

#[test]
fn blocks_per_category_and_subdomain_with_each_block_mode() {
    let s = setup();
    let dns = s.box_.dns;
    let primaire = dig(dns, "www.casino.test", "A", &["-b", "127.0.0.2"]);
    assert_eq!(primaire.status, "NXDOMAIN", "{}", primaire.raw);
    let college = dig(dns, "casino.test", "A", &["-b", "127.0.0.3"]);
    assert_eq!(college.data("A"), ["0.0.0.0"], "{}", college.raw);
    let college6 = dig(dns, "casino.test", "AAAA", &["-b", "127.0.0.3"]);
    assert_eq!(college6.data("AAAA"), ["::"], "{}", college6.raw);
    let lycee = dig(dns, "deep.sub.casino.test", "A", &["-b", "127.0.0.4"]);
    assert_eq!(lycee.data("A"), ["192.0.2.80"], "block page: {}", lycee.raw);
    let teacher = dig(dns, "casino.test", "A", &[]);
    assert_eq!(
        teacher.data("A"),
        ["10.1.0.2"],
        "teachers are not filtered: {}",
        teacher.raw
    );
    let not_a_sub = dig(dns, "notcasino.test", "A", &["-b", "127.0.0.2"]);
    assert_eq!(
        not_a_sub.status, "NXDOMAIN",
        "forwarded, and dnsmasq does not know it"
    );
    assert!(not_a_sub.answers.is_empty());
}

#[test]
fn allow_overrides_deny_and_categories() {
    let s = setup();
    let dns = s.box_.dns;
    let allowed = dig(dns, "ok.casino.test", "A", &["-b", "127.0.0.2"]);
    assert_eq!(allowed.data("A"), ["10.1.0.2"], "{}", allowed.raw);
    let denied = dig(dns, "www.games.test", "A", &["-b", "127.0.0.2"]);
    assert_eq!(denied.status, "NXDOMAIN", "{}", denied.raw);
    let elsewhere = dig(dns, "games.test", "A", &["-b", "127.0.0.3"]);
    assert_eq!(
        elsewhere.data("A"),
        ["10.1.0.3"],
        "the deny list is the primary policy's"
    );
}

#[test]
fn safe_search_and_anti_bypass_answers() {
    let s = setup();
    let dns = s.box_.dns;
    let google = dig(dns, "www.google.fr", "A", &["-b", "127.0.0.2"]);
    assert_eq!(
        google.data("CNAME"),
        ["forcesafesearch.google.com"],
        "{}",
        google.raw
    );
    assert_eq!(google.data("A"), ["216.239.38.120"], "{}", google.raw);
    // Another engine's name, same endpoint: answered from the cache.
    let images = dig(dns, "www.google.com", "A", &["-b", "127.0.0.2"]);
    assert_eq!(images.data("A"), ["216.239.38.120"], "{}", images.raw);
    assert_eq!(s._upstream.queries_for("forcesafesearch.google.com"), 1);
    let youtube = dig(dns, "www.youtube.com", "A", &["-b", "127.0.0.2"]);
    assert_eq!(
        youtube.data("CNAME"),
        ["restrict.youtube.com"],
        "{}",
        youtube.raw
    );
    let teacher = dig(dns, "www.google.fr", "A", &[]);
    assert_eq!(
        teacher.data("A"),
        ["198.51.100.9"],
        "no safe search for teachers: {}",
        teacher.raw
    );
    for canary in [
        "use-application-dns.net",
        "mask.icloud.com",
        "mask-h2.icloud.com",
    ] {
        assert_eq!(dig(dns, canary, "A", &[]).status, "NXDOMAIN", "{canary}");
    }
}

#[test]
fn local_names_forwarding_cache_and_tcp() {
    let s = setup();
    let dns = s.box_.dns;
    let local = dig(dns, "Cartable.LAN", "A", &["+tcp"]);
    assert_eq!(local.data("A"), ["192.0.2.80"], "{}", local.raw);
    assert!(local.flags.contains(&"aa".to_string()), "{}", local.raw);
    let first = dig(dns, "www.allowed.test", "A", &[]);
    assert_eq!(first.data("A"), ["10.1.0.1"]);
    std::thread::sleep(Duration::from_millis(1100));
    let second = dig(dns, "WWW.Allowed.Test", "A", &["+tcp"]);
    assert_eq!(second.data("A"), ["10.1.0.1"]);
    assert_eq!(
        second.answers[0].0, "WWW.Allowed.Test",
        "the client's case is echoed"
    );
    assert!(
        second.answers[0].1 < first.answers[0].1,
        "the cached TTL counts down"
    );
}

#[test]
fn answers_stale_when_the_upstream_is_gone() {
    let mut upstream = Dnsmasq::start(&[("short.test", "10.2.0.1")], 1);
    let lists = tempfile::tempdir().unwrap();
    let list = lists.path().join("empty.txt");
    std::fs::write(&list, "").unwrap();
    let box_ = Appliance::start(&config(upstream.addr, &list));
    let fresh = dig(box_.dns, "short.test", "A", &[]);
    assert_eq!(fresh.data("A"), ["10.2.0.1"], "{}", fresh.raw);
    upstream.stop();
    std::thread::sleep(Duration::from_millis(2100));
    let stale = dig(box_.dns, "short.test", "A", &["+time=4"]);
    assert_eq!(stale.status, "NOERROR", "{}", stale.raw);
    assert_eq!(stale.data("A"), ["10.2.0.1"], "{}", stale.raw);
    assert_eq!(
        stale.answers[0].1, 30,
        "stale answers carry a 30 s TTL (RFC 8767)"
    );
    let unknown = dig(box_.dns, "never-seen.test", "A", &["+time=4"]);
    assert_eq!(unknown.status, "SERVFAIL", "{}", unknown.raw);
}

#[test]
fn truncated_over_udp_then_whole_over_tcp() {
    let many: Vec<String> = (1..=60).map(|i| format!("10.3.0.{i}")).collect();
    let records: Vec<(&str, &str)> = many.iter().map(|a| ("big.test", a.as_str())).collect();
    let upstream = Dnsmasq::start(&records, 300);
    let lists = tempfile::tempdir().unwrap();
    let list = lists.path().join("empty.txt");
    std::fs::write(&list, "").unwrap();
    let box_ = Appliance::start(&config(upstream.addr, &list));
    let udp_only = dig(box_.dns, "big.test", "A", &["+noedns", "+ignore"]);
    assert!(
        udp_only.flags.contains(&"tc".to_string()),
        "{}",
        udp_only.raw
    );
    assert!(udp_only.answers.is_empty());
    let retried = dig(box_.dns, "big.test", "A", &["+noedns"]);
    assert_eq!(
        retried.data("A").len(),
        60,
        "dig retried over TCP: {}",
        retried.raw
    );
    let edns = dig(box_.dns, "big.test", "A", &[]);
    assert_eq!(
        edns.data("A").len(),
        60,
        "fits in 1232 bytes with EDNS: {}",
        edns.raw
    );
}

#[test]
fn malformed_packets_get_formerr_or_nothing_and_the_server_goes_on() {
    let s = setup();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x12],
        vec![
            0xAB, 0xCD, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 0x0C, 0, 1, 0, 1,
        ],
        vec![0xAB, 0xCD, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0],
        vec![0xAB, 0xCD, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 63],
        vec![0xFF; 4000],
    ];
    for (seed, len) in [12usize, 13, 40, 300, 512, 1400].into_iter().enumerate() {
        garbage.push(cartable_systests::noise(len, 0x2545_F491 + seed as u64));
    }
    for g in &garbage {
        socket.send_to(g, s.box_.dns).unwrap();
        let mut buf = [0u8; 4096];
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            assert!(n >= 12, "a reply is at least a header");
            assert_eq!(&buf[..2], &g[..2], "the reply keeps the query's ID");
            assert!(buf[2] & 0x80 != 0, "it is a response");
            let rcode = buf[3] & 0x0f;
            assert!(
                matches!(rcode, 1 | 4 | 5),
                "FORMERR, NOTIMP or REFUSED, got {rcode}"
            );
        }
    }
    // Over 4 KiB: dropped whole, even with a well-formed question at its head.
    let mut oversized = vec![0xAB, 0xCD, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["www", "allowed", "test"] {
        oversized.push(label.len() as u8);
        oversized.extend_from_slice(label.as_bytes());
    }
    oversized.extend_from_slice(&[0, 0, 1, 0, 1]);
    oversized.resize(9000, 0);
    socket.send_to(&oversized, s.box_.dns).unwrap();
    let mut buf = [0u8; 4096];
    assert!(
        socket.recv_from(&mut buf).is_err(),
        "an oversized datagram gets no answer"
    );
    let after = dig(s.box_.dns, "www.allowed.test", "A", &[]);
    assert_eq!(
        after.data("A"),
        ["10.1.0.1"],
        "still serving: {}",
        after.raw
    );
}

/// dnsperf runs while the lists are changed and SIGHUP swaps them in: every query
/// is answered, and the new list is in force afterwards.
#[test]
fn reload_under_load_loses_no_query() {
    let s = setup();
    let dns = s.box_.dns;
    // 127.0.0.3 gets null answers for blocked names: before the reload, dnsmasq's
    // NXDOMAIN; after, the box's 0.0.0.0.
    let before = dig(dns, "newly-listed.test", "A", &["-b", "127.0.0.3"]);
    assert_eq!(before.status, "NXDOMAIN", "{}", before.raw);

    let queries = s.box_.dir.path().join("queries.txt");
    let mix: String = (0..200)
        .map(|i| match i % 4 {
            0 => "casino.test A\n".to_string(),
            1 => "www.allowed.test A\n".to_string(),
            2 => format!("sub{i}.poker.test A\n"),
            _ => "cartable.lan A\n".to_string(),
        })
        .collect();
    std::fs::write(&queries, mix).unwrap();
    let perf = std::process::Command::new("dnsperf")
        .args(["-s", "127.0.0.1", "-p", &dns.port().to_string(), "-d"])
        .arg(&queries)
        .args(["-l", "4", "-Q", "3000", "-t", "2"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("dnsperf is installed (tests/run installs it)");

    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(800));
        std::fs::write(&s.list, "casino.test\npoker.test\nnewly-listed.test\n").unwrap();
        s.box_.signal(nix::sys::signal::Signal::SIGHUP);
    }
    let out = perf.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    let number = |label: &str| -> u64 {
        report
            .lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no `{label}` in dnsperf's report:\n{report}"))
    };
    assert!(number("Queries sent:") > 3000, "{report}");
    assert_eq!(number("Queries lost:"), 0, "{report}");
    let after = dig(dns, "www.newly-listed.test", "A", &["-b", "127.0.0.3"]);
    assert_eq!(after.data("A"), ["0.0.0.0"], "{}", after.raw);
    assert!(s.box_.log().matches("SIGHUP: reloading").count() >= 1);
}

#[test]
fn the_cache_survives_a_restart_and_counters_are_stored() {
    let mut upstream = Dnsmasq::start(&[("kept.test", "10.4.0.1")], 1);
    let lists = tempfile::tempdir().unwrap();
    let list = lists.path().join("gambling.txt");
    std::fs::write(&list, "casino.test\n").unwrap();
    let mut box_ = Appliance::start(&config(upstream.addr, &list));
    assert_eq!(dig(box_.dns, "kept.test", "A", &[]).data("A"), ["10.4.0.1"]);
    assert_eq!(
        dig(box_.dns, "casino.test", "A", &["-b", "127.0.0.2"]).status,
        "NXDOMAIN"
    );
    assert_eq!(box_.stop(), Some(0));
    // A stop is no failure (the DNS service said "a DNS socket loop ended" when its
    // loops' ends beat the shutdown signal to its select).
    let log = box_.log();
    assert!(!log.contains("failed while stopping"), "{log}");
    upstream.stop();

    // The counters of the run are in the store, by hour.
    let db = rusqlite::Connection::open(box_.database()).unwrap();
    let count = |counter: &str| -> i64 {
        db.query_row(
            "SELECT coalesce(sum(value), 0) FROM dns_hourly WHERE counter = ?1",
            [counter],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert!(count("queries") >= 2, "queries: {}", count("queries"));
    assert_eq!(count("blocked:gambling"), 1);
    drop(db);

    // Restarted with the upstream gone, the box still knows the name (stale, 30 s TTL).
    std::thread::sleep(Duration::from_millis(1100));
    box_.restart();
    let after = dig(box_.dns, "kept.test", "A", &["+time=4"]);
    assert_eq!(
        after.data("A"),
        ["10.4.0.1"],
        "{}\n{}",
        after.raw,
        box_.log()
    );
    assert_eq!(after.answers[0].1, 30);
}

fn curl(args: &[&str]) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-s", "-m", "5", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn the_block_page_says_what_was_blocked_and_why() {
    let s = setup();
    let url = format!("http://{}/", s.box_.http);
    // 127.0.0.4 is in block-page mode: its browser lands on the box with the blocked Host.
    let (code, page) = curl(&[
        "--interface",
        "127.0.0.4",
        "-H",
        "Host: www.casino.test",
        &url,
    ]);
    assert_eq!(code, 403, "{page}");
    assert!(
        page.contains("Ce site est bloqué") && page.contains("This site is blocked"),
        "{page}"
    );
    assert!(page.contains("www.casino.test"), "{page}");
    assert!(page.contains("gambling"), "the category is named: {page}");
    let (code, _) = curl(&[
        "--interface",
        "127.0.0.4",
        "-H",
        "Host: www.allowed.test",
        &url,
    ]);
    assert_eq!(code, 404, "a name that is not blocked gets no block page");
    let (code, page) = curl(&[
        "--interface",
        "127.0.0.4",
        "-H",
        "Host: <script>alert(1)</script>",
        &url,
    ]);
    assert_eq!(code, 404);
    assert!(!page.contains("<script>"));
}

#[test]
fn the_admin_api_explains_and_counts_on_loopback() {
    let s = setup();
    assert_eq!(
        dig(s.box_.dns, "casino.test", "A", &["-b", "127.0.0.2"]).status,
        "NXDOMAIN"
    );
    let base = format!("http://{}", s.box_.http);
    let (code, json) = curl(&[&format!(
        "{base}/api/v1/filter/test?name=www.casino.test&client=127.0.0.2"
    )]);
    assert_eq!(code, 200, "{json}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["verdict"], "block");
    assert_eq!(v["policy"], "primaire");
    assert_eq!(v["category"], "gambling");
    assert_eq!(v["entry"], "casino.test");
    assert!(
        v["explanation"]
            .as_str()
            .unwrap()
            .contains("gambling.txt:1"),
        "{json}"
    );
    let (code, json) = curl(&[&format!("{base}/api/v1/filter/stats")]);
    assert_eq!(code, 200);
    let stats: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(stats["queries"].as_u64().unwrap() >= 1);
    assert_eq!(stats["blocked_by_category"]["gambling"], 1);
    let pupil = stats["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client"] == "127.0.0.2")
        .expect("the pupil's tablet is counted");
    assert_eq!(
        (pupil["queries"].as_u64(), pupil["blocked"].as_u64()),
        (Some(1), Some(1))
    );
    let (code, _) = curl(&[&format!("{base}/api/v1/filter/test?name=not%20a%20name")]);
    assert_eq!(code, 400);
    let (code, json) = curl(&[&format!("{base}/api/v1/filter/log?client=127.0.0.2")]);
    assert_eq!(code, 200);
    let log: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(log[0]["name"], "casino.test", "{json}");
    assert_eq!(log[0]["outcome"], "blocked");
    assert_eq!(log[0]["category"], "gambling");
    // From the school network (127.0.0.4 stands for it), not signed in as an admin:
    // the admin API says to sign in.
    let (code, body) = curl(&[
        "--interface",
        "127.0.0.4",
        &format!("{base}/api/v1/filter/log"),
    ]);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("sign in as an admin"), "{body}");
}

// `popular_names_are_refreshed_before_they_expire` is in `dns::engine`: it moves the
// engine's clock instead of sleeping ten seconds for a real TTL.

/// Forwarding over DNS over TLS to a real server (unbound), trusting only the CA given;
/// a server whose certificate is for another name gets nothing.
#[test]
fn forwards_over_tls_and_checks_the_certificate() {
    let upstream = Dnsmasq::start(&[("over-tls.test", "10.6.0.1")], 300);
    let dir = tempfile::tempdir().unwrap();
    let dot = cartable_systests::unbound::DotServer::start(dir.path(), "dot.test", upstream.addr);
    let tls_config = |name: &str| {
        format!(
            "[dns]\nupstreams = [\"tls://{}#{name}\"]\nupstream_ca_file = \"{}\"\n",
            dot.addr,
            dot.ca.display()
        )
    };
    let good = Appliance::start(&tls_config("dot.test"));
    let answer = dig(good.dns, "over-tls.test", "A", &["+time=4"]);
    assert_eq!(
        answer.data("A"),
        ["10.6.0.1"],
        "{}\n{}",
        answer.raw,
        good.log()
    );
    let wrong = Appliance::start(&tls_config("impostor.test"));
    let refused = dig(wrong.dns, "over-tls.test", "A", &["+time=4"]);
    assert_eq!(refused.status, "SERVFAIL", "{}", refused.raw);
}

/// Fifty clients asking the same new name at once cause one upstream query.
#[test]
fn concurrent_misses_share_one_upstream_query() {
    let s = setup();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let query = |id: u16| -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        for label in ["burst", "allowed", "test"] {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        q
    };
    for id in 0..50u16 {
        socket.send_to(&query(id), s.box_.dns).unwrap();
    }
    let mut answered = std::collections::HashSet::new();
    let mut buf = [0u8; 512];
    while answered.len() < 50 {
        let (n, _) = socket
            .recv_from(&mut buf)
            .expect("every client gets its answer");
        assert!(n > 12 && buf[3] & 0x0f == 0, "NOERROR");
        answered.insert(u16::from_be_bytes([buf[0], buf[1]]));
    }
    assert_eq!(s._upstream.queries_for("burst.allowed.test"), 1);
}

/// A list turned to garbage is refused on reload; the lists in service stay.
#[test]
fn a_garbage_list_on_reload_keeps_the_previous_index() {
    let s = setup();
    let dns = s.box_.dns;
    assert_eq!(
        dig(dns, "casino.test", "A", &["-b", "127.0.0.3"]).data("A"),
        ["0.0.0.0"]
    );
    let garbage: String = (0..50)
        .map(|i| format!("<html><body>{i} not a list</body>\n"))
        .collect();
    std::fs::write(&s.list, garbage).unwrap();
    s.box_.signal(nix::sys::signal::Signal::SIGHUP);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !s.box_.log().contains("reload failed") {
        assert!(
            std::time::Instant::now() < deadline,
            "no reload failure logged:\n{}",
            s.box_.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        s.box_.log().contains("not domain names"),
        "{}",
        s.box_.log()
    );
    assert_eq!(
        dig(dns, "casino.test", "A", &["-b", "127.0.0.3"]).data("A"),
        ["0.0.0.0"],
        "still blocked"
    );
}

/// A restart with the same lists loads the compiled index instead of compiling it; a
/// changed list is compiled again.
#[test]
fn a_restart_reuses_the_compiled_lists_until_they_change() {
    let mut s = setup();
    assert_eq!(s.box_.stop(), Some(0));
    s.box_.restart();
    assert!(
        s.box_.log().contains("filter lists loaded (saved index"),
        "{}",
        s.box_.log()
    );
    assert_eq!(
        dig(s.box_.dns, "casino.test", "A", &["-b", "127.0.0.3"]).data("A"),
        ["0.0.0.0"]
    );
    assert_eq!(s.box_.stop(), Some(0));
    std::fs::write(&s.list, "casino.test\npoker.test\nroulette.test\n").unwrap();
    let compiled_before = s.box_.log().matches("filter lists compiled").count();
    s.box_.restart();
    assert_eq!(
        s.box_.log().matches("filter lists compiled").count(),
        compiled_before + 1
    );
    assert_eq!(
        dig(s.box_.dns, "roulette.test", "A", &["-b", "127.0.0.3"]).data("A"),
        ["0.0.0.0"]
    );
}
