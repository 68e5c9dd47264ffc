//! `cartable demo`: the real daemon with embedded defaults, on loopback and
//! unprivileged ports, with a small school seeded so every page has something to show.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::Config;
use crate::store::school::ClassSeed;

/// Where the demo listens unless told otherwise.
pub const DEFAULT_DNS: &str = "127.0.0.1:5353";
pub const DEFAULT_HTTP: &str = "127.0.0.1:8080";

/// The demo's configuration: every default, but on loopback and in `data_dir`.
pub fn config(dns: SocketAddr, http: SocketAddr, data_dir: PathBuf) -> Config {
    let mut c = Config::default();
    c.appliance.id = "demo-box".to_string().try_into().expect("valid name");
    c.appliance.site = "ecole-demo".to_string().try_into().expect("valid name");
    c.appliance.data_dir = data_dir;
    c.dns.listen = vec![dns];
    c.http.listen = http;
    c
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
