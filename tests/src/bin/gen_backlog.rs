//! Fills a box's outbox with what a large school produces while offline: 400 tablets,
//! school hours, for a number of days. Used by `tests/bench/sync.sh`.
//!
//!   gen-backlog DATA_DIR [DAYS] [TABLETS]

use cartable::store::Store;
use cartable::store::outbox;
use cartable_protocol::events::EventBody;

const APPS: [&str; 8] = [
    "org.ent.lecture",
    "fr.lumni",
    "org.geogebra",
    "com.scratch.jr",
    "fr.bayard.okapi",
    "org.wikipedia",
    "fr.calculatrice",
    "com.camera",
];
const CATEGORIES: [&str; 4] = ["adult", "gambling", "social_networks", "games"];

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args
        .get(1)
        .ok_or_else(|| anyhow::anyhow!("usage: gen-backlog DATA_DIR [DAYS] [TABLETS]"))?;
    let days: i64 = args.get(2).map_or(Ok(7), |s| s.parse())?;
    let tablets: u32 = args.get(3).map_or(Ok(400), |s| s.parse())?;
    let store = Store::open(std::path::Path::new(dir))?;
    let start = cartable::base::clock::unix_now() / 86_400 * 86_400 - days * 86_400;
    let mut total = 0u64;
    let mut next = cartable_systests::xorshift(0x2545_f491_4f6c_dd1d);
    for day in 0..days {
        let day_start = start + day * 86_400;
        // 1970-01-01 was a Thursday: skip Saturdays and Sundays.
        let weekday = (day_start / 86_400 + 3) % 7;
        if weekday >= 5 {
            continue;
        }
        let mut events = Vec::new();
        for hour in 8..16 {
            let h = day_start + hour * 3600;
            for t in 0..tablets {
                let client = format!("10.20.{}.{}", t / 200, t % 200 + 10);
                // Not every tablet is used every hour.
                if next() % 10 < 3 {
                    continue;
                }
                let queries = 50 + next() % 400;
                let blocked = next() % 4;
                events.push((
                    h + 3599,
                    EventBody::DnsHourly {
                        hour: h,
                        client: client.clone(),
                        queries,
                        blocked,
                        categories: Default::default(),
                    },
                ));
                for _ in 0..3 {
                    events.push((
                        h + 3599,
                        EventBody::AppUsage {
                            hour: h,
                            device: format!("tab-{t:04}"),
                            app: APPS[(next() % APPS.len() as u64) as usize].to_string(),
                            seconds: (60 + next() % 1200) as u32,
                            class: Some(format!("C{}", t % 8)),
                        },
                    ));
                }
            }
            events.push((
                h + 3599,
                EventBody::DnsHourly {
                    hour: h,
                    client: "*".into(),
                    queries: 60_000,
                    blocked: 900,
                    categories: CATEGORIES
                        .iter()
                        .map(|c| (c.to_string(), next() % 300))
                        .collect(),
                },
            ));
            // A lesson an hour per class of 25: attendance of every pupil.
            for p in 0..tablets {
                events.push((
                    h + 600,
                    EventBody::Attendance {
                        class: format!("classe-{}", p / 25),
                        pupil: format!("eleve-{p:04}"),
                        present: !next().is_multiple_of(20),
                    },
                ));
            }
        }
        total += events.len() as u64;
        store
            .write(move |t| {
                for (at, e) in &events {
                    outbox::append(t, *at, e)?;
                }
                Ok(())
            })
            .await?;
    }
    let backlog = store.read(outbox::backlog).await?;
    store.close();
    println!(
        "{total} events, {} rows, {} bytes of JSON in the outbox",
        backlog.rows, backlog.bytes
    );
    Ok(())
}
