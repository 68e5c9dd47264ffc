//! A kill -9 at any moment loses no write the store reported committed.

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use cartable::store::Store;
use cartable_systests::child::TestChild;
use nix::sys::signal::Signal;

fn committed_ids(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("committed ").map(str::to_string))
        .collect()
}

#[test]
fn sigkill_while_writing_loses_no_committed_row() {
    let dir = tempfile::tempdir().unwrap();
    let mut reported = Vec::new();
    // Three rounds on the same database: each kill lands at a different moment, and
    // each restart must recover what the previous one committed.
    for round in 0..3 {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_durability-writer"));
        cmd.arg(dir.path());
        let writer = TestChild::spawn(cmd).unwrap();
        let mut seen = Vec::new();
        while seen.len() < 1500 + round * 500 {
            let line = writer
                .next_line(Duration::from_secs(20))
                .expect("the writer keeps reporting commits");
            seen.push(line);
        }
        writer.signal(Signal::SIGKILL).unwrap();
        // Lines printed before the kill landed still count as reported.
        seen.extend(writer.drain_lines(Duration::from_millis(300)));
        reported.extend(committed_ids(&seen));
    }

    let store = Store::open(dir.path()).expect("the store reopens after kill -9");
    let on_disk: HashSet<String> = store
        .read_blocking(|c| {
            let mut st = c.prepare("SELECT id FROM probe")?;
            let ids = st.query_map([], |r| r.get::<_, String>(0))?;
            Ok(ids.collect::<Result<HashSet<_>, _>>()?)
        })
        .unwrap();
    let missing: Vec<&String> = reported
        .iter()
        .filter(|id| !on_disk.contains(*id))
        .collect();
    assert!(reported.len() >= 4500);
    assert!(
        missing.is_empty(),
        "{} of {} committed rows lost, e.g. {:?}",
        missing.len(),
        reported.len(),
        &missing[..missing.len().min(5)]
    );
    let integrity: String = store
        .read_blocking(|c| Ok(c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(integrity, "ok");
}
