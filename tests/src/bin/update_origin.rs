//! The origin for the update benchmark: serves the files of a folder (a release's
//! chunk store) at `/chunks/<name>` over HTTP/1.1 with `Range`, picks up files added
//! later, and keeps a count of what it sent in a JSON file, rewritten every second:
//! bytes sent, requests, and bytes sent beyond each chunk's size (sent twice).
//!
//!   update-origin LISTEN-ADDR DIR STATS-FILE

use std::time::Duration;

use cartable_systests::upstream::{Faults, Upstream};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, dir, stats] = args.as_slice() else {
        anyhow::bail!("usage: update-origin LISTEN-ADDR DIR STATS-FILE");
    };
    let origin = Upstream::start_on(listen);
    eprintln!(
        "update-origin: serving {dir} at http://{}/chunks/",
        origin.addr
    );
    loop {
        for entry in std::fs::read_dir(dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = format!("/chunks/{name}");
            // Chunks only (named by their SHA-256): not a file being written.
            let chunk = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
            if chunk
                && !origin.has(&path)
                && let Ok(bytes) = std::fs::read(entry.path())
            {
                origin.put(&path, bytes, Faults::default());
            }
        }
        let per_path = origin.sent_by_path();
        let twice: u64 = per_path
            .iter()
            .map(|(_, sent, size)| sent.saturating_sub(*size))
            .sum();
        let json = serde_json::json!({
            "bytes_sent": origin.bytes_sent(),
            "requests": origin.request_count(),
            "objects_sent": per_path.len(),
            "bytes_sent_twice": twice,
        });
        let tmp = format!("{stats}.tmp");
        std::fs::write(&tmp, json.to_string())?;
        std::fs::rename(&tmp, stats)?;
        std::thread::sleep(Duration::from_secs(1));
    }
}
