//! The real UT1 snapshot (shared/data/ut1) imports whole: every category with the
//! number of distinct entries that coreutils count in its `domains` file, aliases
//! from symbolic links and `usage`, names from `global_usage`.

use std::net::IpAddr;

use cartable::base::clock::LocalTime;
use cartable::filter::decide::{Action, Reason};
use cartable::filter::load::{Sources, load};
use cartable::filter::policy::{BlockMode, builtin};
use cartable::filter::ut1::Kind;
use cartable_systests::bins::workspace_root;

/// Distinct valid entries per category, counted for this snapshot with
/// `sed 's/^\.//' | tr A-Z a-z | grep -E '^[a-z0-9_-]+(\.[a-z0-9_-]+)*$' | sort -u | wc -l`.
const EXPECTED: &[(&str, u64)] = &[
    ("adult", 0),
    ("agressif", 360),
    ("ai", 77),
    ("arjel", 69),
    ("associations_religieuses", 1),
    ("astrology", 28),
    ("audio-video", 3710),
    ("bank", 6646),
    ("bitcoin", 1419),
    ("blog", 1497),
    ("celebrity", 635),
    ("chat", 268),
    ("child", 75),
    ("cleaning", 174),
    ("cooking", 37),
    ("cryptojacking", 11491),
    ("dangerous_material", 35),
    ("dating", 6504),
    ("ddos", 421),
    ("dialer", 4),
    ("doh", 3015),
    ("download", 4020),
    ("drogue", 603),
    ("dynamic-dns", 2077),
    ("educational_games", 8),
    ("examen_pix", 347),
    ("exceptions_liste_bu", 1),
    ("fakenews", 1118),
    ("filehosting", 941),
    ("financial", 472),
    ("forums", 205),
    ("gambling", 32247),
    ("games", 33741),
    ("hacking", 274),
    ("jobsearch", 60740),
    ("lingerie", 193),
    ("liste_blanche", 268),
    ("liste_bu", 2825),
    ("malware", 0),
    ("manga", 652),
    ("marketingware", 77),
    ("mixed_adult", 149),
    ("mobile-phone", 50),
    ("phishing", 0),
    ("press", 4644),
    ("publicite", 4344),
    ("radio", 567),
    ("reaffected", 7),
    ("redirector", 132323),
    ("remote-control", 170),
    ("residential-proxies", 138),
    ("sect", 144),
    ("sexual_education", 15),
    ("shopping", 36968),
    ("shortener", 4558),
    ("social_networks", 715),
    ("special", 1),
    ("sports", 2362),
    ("stalkerware", 525),
    ("strict_redirector", 132323),
    ("strong_redirector", 132323),
    ("translation", 175),
    ("tricheur", 53),
    ("tricheur_pix", 55),
    ("update", 30),
    ("vpn", 6039),
    ("warez", 1546),
    ("webhosting", 38),
    ("webmail", 404),
];

#[test]
fn the_ut1_snapshot_imports_with_its_counts_per_category() {
    let archive = workspace_root().join("../shared/data/ut1/ut1-blacklists-2026-08-17.tar.gz");
    assert!(
        archive.exists(),
        "the UT1 snapshot is missing at {}",
        archive.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let sources = Sources {
        ut1_archive: Some(archive),
        unpack_dir: dir.path().to_path_buf(),
        ..Sources::default()
    };
    let loaded = load(&sources, &builtin(), BlockMode::Blockpage).unwrap();
    let index = &loaded.filter.index;

    assert_eq!(index.categories().len(), EXPECTED.len());
    for (name, entries) in EXPECTED {
        let c = index
            .category(name)
            .unwrap_or_else(|| panic!("no category {name}"));
        assert_eq!(c.entries, *entries, "category {name}");
    }
    assert_eq!(
        index.category("porn").unwrap().name,
        "adult",
        "symbolic link"
    );
    assert_eq!(
        index.category("ads").unwrap().name,
        "publicite",
        "symbolic link"
    );
    assert_eq!(
        index.category("adult").unwrap().titles["fr"],
        "Adulte (X)",
        "global_usage"
    );
    assert_eq!(index.category("liste_blanche").unwrap().kind, Kind::White);
    assert_eq!(index.category("webmail").unwrap().kind, Kind::Both);
    let skipped: u64 = index.sources().iter().map(|s| s.skipped.count).sum();
    assert_eq!(
        skipped, 0,
        "every line of the snapshot is a name or an address"
    );

    let pupil: IpAddr = "10.0.0.5".parse().unwrap();
    let monday = LocalTime::new(0, 10, 0);
    let v = loaded
        .filter
        .decide("www.0-casino.info", pupil, monday, None);
    assert_eq!(v.action, Action::Block(BlockMode::Blockpage));
    assert!(matches!(
        v.reason,
        Reason::Listed {
            entry: "0-casino.info",
            ..
        }
    ));
    let text = loaded.filter.explain("www.0-casino.info", &v);
    assert!(text.contains("gambling/domains:1"), "{text}");
    let allowed = loaded
        .filter
        .decide("www.education.gouv.fr", pupil, monday, None);
    assert_eq!(allowed.action, Action::Allow);
}
