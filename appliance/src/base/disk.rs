//! Free space on the disk holding a path: the status page shows it, the sync reports
//! it to the central side, and the cache keeps its reserve with it.

use cartable_protocol::status::DiskStatus;

/// Bytes left for unprivileged writers, and the filesystem's size, on the disk holding
/// `path`.
// The statvfs counts are u32 on 32-bit targets.
#[allow(clippy::unnecessary_cast)]
pub(crate) fn space(path: &std::path::Path) -> std::io::Result<(u64, u64)> {
    let v = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    let frag = v.fragment_size() as u64;
    Ok((v.blocks_available() as u64 * frag, v.blocks() as u64 * frag))
}

/// [`space`] as the status reports it; zeros (and a warning) when it cannot be read.
pub(crate) fn status(path: &std::path::Path) -> DiskStatus {
    let (free_bytes, total_bytes) = space(path).unwrap_or_else(|e| {
        tracing::warn!(path = %path.display(), error = %e, "statvfs failed");
        (0, 0)
    });
    DiskStatus {
        path: path.display().to_string(),
        free_bytes,
        total_bytes,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_real_disk_has_room_and_a_missing_path_has_none() {
        let dir = tempfile::tempdir().unwrap();
        let s = super::status(dir.path());
        assert!(s.total_bytes > 0 && s.free_bytes <= s.total_bytes);
        assert!(super::space(&dir.path().join("missing")).is_err());
        assert_eq!(super::status(&dir.path().join("missing")).total_bytes, 0);
    }
}
