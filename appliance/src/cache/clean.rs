//! Leftovers of the cache nobody will finish, removed by a daily timer
//! (`cartable cache-clean`, systemd/cartable-cache-clean.timer).
//!
//! A write cut short is cleared at the daemon's next start, but a box runs for months:
//! temporary files of writes that failed while it ran, and partial downloads of items
//! no catalogue names any more, would fill `/data` a little at a time. A file still
//! being written is touched as it grows, so only files untouched for a day (temporary)
//! or a week (partial: a fill over a weak link may pause, and resume, for days) go.

use std::path::Path;
use std::time::{Duration, SystemTime};

use super::objects;

/// How long a temporary file may sit untouched.
pub const TMP_AGE: Duration = Duration::from_secs(24 * 3600);
/// How long a partial download may sit untouched before it is given up.
pub const PARTIAL_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// What a clean removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Cleaned {
    pub files: u64,
    pub bytes: u64,
}

/// Removes the cache's stale temporary and partial files under `data_dir` as of `now`.
/// A data folder with no cache yet has nothing to clean.
pub fn clean(data_dir: &Path, now: SystemTime) -> std::io::Result<Cleaned> {
    let mut cleaned = Cleaned::default();
    for (folder, age) in [(objects::TMP, TMP_AGE), (objects::PARTIAL, PARTIAL_AGE)] {
        let dir = data_dir.join(objects::DIR).join(folder);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            let idle = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .unwrap_or_default();
            if meta.is_file() && idle > age && std::fs::remove_file(entry.path()).is_ok() {
                cleaned.files += 1;
                cleaned.bytes += meta.len();
            }
        }
    }
    Ok(cleaned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_left_untouched_long_enough_go() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            clean(dir.path(), SystemTime::now()).unwrap(),
            Cleaned::default()
        );
        let cache = dir.path().join("cache");
        for (folder, name) in [("tmp", "t"), ("partial", "p"), ("ab", "object")] {
            std::fs::create_dir_all(cache.join(folder)).unwrap();
            std::fs::write(cache.join(folder).join(name), b"12345").unwrap();
        }
        let now = SystemTime::now();
        // Two days on: the temporary file goes, the partial download waits.
        let later = now + Duration::from_secs(2 * 24 * 3600);
        let c = clean(dir.path(), later).unwrap();
        assert_eq!(c, Cleaned { files: 1, bytes: 5 });
        assert!(!cache.join("tmp/t").exists());
        assert!(cache.join("partial/p").exists());
        // Eight days on: the partial download too; objects are never touched.
        let c = clean(dir.path(), now + Duration::from_secs(8 * 24 * 3600)).unwrap();
        assert_eq!(c, Cleaned { files: 1, bytes: 5 });
        assert!(cache.join("ab/object").exists());
    }
}
