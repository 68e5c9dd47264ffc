//! `cartable demo`: the real daemon with embedded defaults, on loopback and
//! unprivileged ports, with a small school seeded so every page has something to show.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::Config;
use crate::store::school::ClassSeed;

/// Where the demo listens unless told otherwise.
pub const DEFAULT_DNS: &str = "127.0.0.1:5353";
pub const DEFAULT_HTTP: &str = "127.0.0.1:8080";

/// A few invented names for the demo's lists, so blocking shows without UT1.
pub const BLOCKLIST: &str = "# Cartable demo list: invented names only.\ncasino-demo.example\njeux-argent.example\npoker-en-ligne.example\n";

/// The demo's configuration: every default, but on loopback, in `data_dir`, with a
/// small gambling list (written there) and the given upstreams.
pub fn config(
    dns: SocketAddr,
    http: SocketAddr,
    data_dir: PathBuf,
    upstreams: Vec<SocketAddr>,
) -> std::io::Result<Config> {
    let list = data_dir.join("demo-gambling.txt");
    std::fs::create_dir_all(&data_dir)?;
    std::fs::write(&list, BLOCKLIST)?;
    let mut c = Config::default();
    c.appliance.id = "demo-box".to_string().try_into().expect("valid name");
    c.appliance.site = "ecole-demo".to_string().try_into().expect("valid name");
    c.appliance.data_dir = data_dir;
    c.dns.listen = vec![dns];
    c.dns.upstreams = upstreams
        .into_iter()
        .map(crate::dns::forward::Upstream::Plain)
        .collect();
    // The demo sends nothing off the machine unless told where.
    c.dns.system_resolvers = false;
    c.dns.box_addresses = vec![http.ip()];
    c.dns.local.insert("cartable.lan".into(), vec![http.ip()]);
    c.http.listen = http;
    c.filter.lists.push(crate::config::ListConfig {
        category: "gambling".into(),
        path: crate::config::ExistingPath::try_from(list).map_err(std::io::Error::other)?,
    });
    Ok(c)
}

/// A primary and a secondary class, and the teachers' own group.
pub const SCHOOL: &[ClassSeed<'static>] = &[
    ClassSeed {
        name: "CE2-A",
        level: "ecole",
        teacher: ("c.martin", "Claire Martin"),
        pupils: &[
            ("Léa", "Bernard"),
            ("Hugo", "Petit"),
            ("Inès", "Durand"),
            ("Nathan", "Leroy"),
            ("Jade", "Moreau"),
            ("Adam", "Simon"),
        ],
    },
    ClassSeed {
        name: "CM2-B",
        level: "ecole",
        teacher: ("k.diallo", "Karim Diallo"),
        pupils: &[
            ("Chloé", "Laurent"),
            ("Louis", "Lefebvre"),
            ("Manon", "Michel"),
            ("Gabriel", "Garcia"),
            ("Zoé", "David"),
        ],
    },
    ClassSeed {
        name: "5e-3",
        level: "college",
        teacher: ("s.nguyen", "Sophie Nguyen"),
        pupils: &[
            ("Emma", "Bertrand"),
            ("Raphaël", "Roux"),
            ("Lina", "Vincent"),
            ("Jules", "Fournier"),
            ("Sarah", "Morel"),
            ("Noah", "Girard"),
            ("Alice", "André"),
        ],
    },
];
