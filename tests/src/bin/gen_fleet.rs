//! Fills a fleet console's store through its own ingest path with what BOXES schools
//! send in DAYS days: per school day, each tablet's app time (two apps, with its class),
//! the box-wide DNS counters with blocked categories, a roll call per class; and each
//! box's inventory of tablets. Used by `tests/bench/central.sh`.
//!
//!   gen-fleet DATABASE [BOXES] [DAYS] [TABLETS]
//!
//! Prints the events stored and the seconds it took (events per second of ingest).

use cartable_central::store::Db;
use cartable_protocol::events::{Batch, DeviceReport, Event, EventBody, ReportedState};

const APPS: [&str; 6] = [
    "org.ent.lecture",
    "fr.lumni",
    "org.geogebra",
    "com.scratch.jr",
    "fr.bayard.okapi",
    "fr.calculatrice",
];
const CLASSES: usize = 5;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let spec = args
        .get(1)
        .ok_or_else(|| anyhow::anyhow!("usage: gen-fleet DATABASE [BOXES] [DAYS] [TABLETS]"))?;
    let boxes: usize = args.get(2).map_or(Ok(500), |s| s.parse())?;
    let days: i64 = args.get(3).map_or(Ok(365), |s| s.parse())?;
    let tablets: usize = args.get(4).map_or(Ok(30), |s| s.parse())?;
    let db = Db::open(spec).await?;
    let today = cartable::base::clock::unix_now() / 86_400;
    let started = std::time::Instant::now();
    let mut stored = 0u64;
    let mut next = cartable_systests::xorshift(0x2545_f491_4f6c_dd1d);
    for b in 0..boxes {
        let (site, box_id) = (format!("ecole-{:03}", b / 2), format!("box-{b:03}"));
        let mut seq = 0u64;
        let mut events = Vec::new();
        for d in (today - days + 1)..=today {
            // 1970-01-01 was a Thursday: no school on Saturdays and Sundays.
            if (d + 3) % 7 >= 5 {
                continue;
            }
            let hour = d * 86_400 + 9 * 3600;
            for t in 0..tablets {
                // Some tablets stay in the cart some days (and one never leaves it).
                if t == tablets - 1 || next() % 10 < 2 {
                    continue;
                }
                for _ in 0..2 {
                    seq += 1;
                    events.push(Event {
                        seq,
                        at: hour + 3599,
                        body: EventBody::AppUsage {
                            hour,
                            device: format!("tab-{t:02}"),
                            app: APPS[(next() % APPS.len() as u64) as usize].into(),
                            seconds: (300 + next() % 2400) as u32,
                            class: Some(format!("classe-{}", t % CLASSES)),
                        },
                    });
                }
            }
            seq += 1;
            events.push(Event {
                seq,
                at: hour + 3599,
                body: EventBody::DnsHourly {
                    hour,
                    client: "*".into(),
                    queries: 20_000 + next() % 20_000,
                    blocked: 100 + next() % 400,
                    categories: [
                        ("adult".to_string(), next() % 50),
                        ("games".to_string(), next() % 200),
                        ("social_networks".to_string(), next() % 200),
                    ]
                    .into(),
                },
            });
            for c in 0..CLASSES {
                seq += 1;
                events.push(Event {
                    seq,
                    at: hour + 600,
                    body: EventBody::Attendance {
                        class: format!("classe-{c}"),
                        pupil: format!("p{:016x}", next()),
                        present: !next().is_multiple_of(20),
                    },
                });
            }
            if events.len() >= 2_000 {
                stored += ingest(&db, &site, &box_id, &mut events).await?;
            }
        }
        stored += ingest(&db, &site, &box_id, &mut events).await?;
        let state = ReportedState {
            version: "1.4.0".into(),
            devices: (0..tablets)
                .map(|t| DeviceReport {
                    name: format!("tab-{t:02}"),
                    class: Some(format!("classe-{}", t % CLASSES)),
                    pupil: Some(format!("p{:016x}", next())),
                    model: "Lenovo Tab M10".into(),
                    os: "Android 13".into(),
                    agent: "1.2.0".into(),
                    battery: Some((next() % 100) as u8),
                    connected: false,
                    last_seen: today * 86_400,
                })
                .collect(),
            ..ReportedState::default()
        };
        // A box's messages are taken once its key is pinned.
        db.pin(&site, &box_id, &format!("{b:064x}"), "bench", false)
            .await?;
        db.state(&site, &box_id, state, 1).await?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{stored} events in {secs:.1} s: {:.0} events/s",
        stored as f64 / secs
    );
    Ok(())
}

async fn ingest(db: &Db, site: &str, box_id: &str, events: &mut Vec<Event>) -> anyhow::Result<u64> {
    if events.is_empty() {
        return Ok(0);
    }
    let batch = Batch {
        site: site.into(),
        r#box: box_id.into(),
        events: std::mem::take(events),
    };
    Ok(db.ingest(site, box_id, batch).await?.new)
}
