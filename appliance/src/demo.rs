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
/// The same for malware, which every built-in policy blocks (the teachers' too): with
/// a list for each, no policy blocks nothing and the demo is not degraded.
pub const MALWARE_LIST: &str =
    "# Cartable demo list: invented names only.\nvirus-demo.example\nrancongiciel.example\n";

/// The demo's configuration: every default, but on loopback, in `data_dir`, with a
/// small gambling and malware lists (written there) and the given upstreams.
pub fn config(
    dns: SocketAddr,
    http: SocketAddr,
    data_dir: PathBuf,
    upstreams: Vec<SocketAddr>,
) -> std::io::Result<Config> {
    let list = data_dir.join("demo-gambling.txt");
    let malware = data_dir.join("demo-malware.txt");
    std::fs::create_dir_all(&data_dir)?;
    std::fs::write(&list, BLOCKLIST)?;
    std::fs::write(&malware, MALWARE_LIST)?;
    let mut c = Config::default();
    c.appliance.id = "demo-box".to_string().try_into().expect("valid name");
    c.appliance.site = "ecole-demo".to_string().try_into().expect("valid name");
    c.appliance.data_dir = data_dir;
    c.dns.listen = vec![dns];
    c.dns.upstreams = upstreams
        .into_iter()
        .map(crate::config::Upstream::Plain)
        .collect();
    // The demo sends nothing off the machine unless told where.
    c.dns.system_resolvers = false;
    c.dns.box_addresses = vec![http.ip()];
    c.dns.local.insert("cartable.lan".into(), vec![http.ip()]);
    c.http.listen = http;
    for (category, path) in [("gambling", list), ("malware", malware)] {
        c.filter.lists.push(crate::config::ListConfig {
            category: category.into(),
            path: crate::config::ExistingPath::try_from(path).map_err(std::io::Error::other)?,
        });
    }
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

/// The demo teachers' password (printed by `cartable demo`).
pub const DEMO_PASSWORD: &str = "demo-cartable";
/// The demo school's IT admin.
pub const DEMO_ADMIN: &str = "admin";

/// Gives the demo teachers a password and the first class a tablet per pupil, each
/// enrolled and assigned; returns their tokens for the reference agents. Nothing when
/// the data folder already has tablets (a `--data-dir` reused).
pub async fn tablets(hub: &crate::hub::Hub) -> anyhow::Result<Vec<String>> {
    for class in SCHOOL {
        hub.set_password(class.teacher.0.to_string(), DEMO_PASSWORD.to_string())
            .await?;
    }
    if !hub.tiles(None).is_empty() {
        return Ok(Vec::new());
    }
    let first = SCHOOL[0].name.to_string();
    let pupils: Vec<(i64, i64)> = hub
        .store()
        .read(move |c| {
            let mut st = c.prepare(
                "SELECT p.id, c.id FROM pupils p JOIN classes c ON c.id = p.class_id
                 WHERE c.name = ?1 ORDER BY p.id",
            )?;
            let v = st
                .query_map([first], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(v)
        })
        .await?;
    let mut tokens = Vec::new();
    for (i, (pupil, class)) in pupils.into_iter().enumerate() {
        let name = format!("{}-tab-{:02}", SCHOOL[0].name.to_lowercase(), i + 1);
        let code = hub
            .new_enrolment_code(name, Some(class), std::time::Duration::from_secs(60), 8)
            .await?;
        if let Some((id, token)) = hub.enrol(&code, "cartable-agent (demo)").await? {
            hub.assign(id, Some(pupil)).await?;
            tokens.push(token);
        }
    }
    Ok(tokens)
}

/// Runs a reference agent per token against the demo's own hub until `stop`.
pub fn run_agents(
    http: std::net::SocketAddr,
    tokens: Vec<String>,
    stop: tokio_util::sync::CancellationToken,
) {
    let url = format!("ws://{http}/api/v1/devices/ws");
    for token in tokens {
        let (url, stop) = (url.clone(), stop.clone());
        tokio::spawn(async move {
            let view = cartable_agent::Shared::default();
            while !stop.is_cancelled() {
                let _ =
                    cartable_agent::run_once(&url, &token, None, view.clone(), stop.clone()).await;
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                    _ = stop.cancelled() => {}
                }
            }
        });
    }
}

/// Runs the demo until `shutdown`: the daemon from [`config`], the school seeded,
/// six tablets enrolled and played by reference agents, and what it serves printed
/// once every service is ready.
pub async fn run(
    dns: SocketAddr,
    http: SocketAddr,
    data_dir: PathBuf,
    upstreams: Vec<SocketAddr>,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let config =
        config(dns, http, data_dir.clone(), upstreams).context("writing the demo's list")?;
    let app = crate::app::App::build(config)?;
    app.store()
        .write(|t| crate::store::school::seed(t, SCHOOL))
        .await
        .context("seeding the demo school")?;
    let now = crate::base::clock::unix_now();
    let actor = "cartable demo".to_string();
    if crate::hub::auth::put_admin(app.store(), DEMO_ADMIN, DEMO_PASSWORD, now, actor)
        .await
        .is_err()
    {
        anyhow::bail!("cannot make the demo admin");
    }
    let counts = app.store().read(crate::store::school::counts).await?;
    let tokens = tablets(app.hub())
        .await
        .context("enrolling the demo tablets")?;
    let tablets = tokens.len();
    let http_addr = app.http_addr();
    let dns_addr = app.dns_addrs().first().copied().unwrap_or(dns);
    // Reference agents stand for the first class's tablets.
    run_agents(http_addr, tokens, shutdown.clone());
    app.run(shutdown, move || {
        println!("Cartable demo is running (box demo-box, site ecole-demo)");
        println!("  web     http://{http_addr}/  (health /healthz, status /api/v1/status)");
        println!(
            "  dns     {dns_addr} UDP and TCP  (try: dig @{} -p {} casino-demo.example)",
            dns_addr.ip(),
            dns_addr.port()
        );
        println!("  data    {}", data_dir.display());
        println!(
            "  school  {} classes, {} teachers, {} pupils",
            counts.classes, counts.teachers, counts.pupils
        );
        println!(
            "  class   http://{http_addr}/classe  (sign in as {} / {DEMO_PASSWORD}; {tablets} demo tablets)",
            SCHOOL[0].teacher.0,
        );
        println!(
            "  admin   http://{http_addr}/admin  (sign in as {DEMO_ADMIN} / {DEMO_PASSWORD}; open from this machine, no sign-in)"
        );
        println!("Stop with Ctrl-C.");
    })
    .await;
    Ok(())
}
