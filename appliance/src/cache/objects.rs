//! The content-addressed object store under `data_dir/cache/`: one file per object,
//! named by its SHA-256. An object is written to a temporary file, hashed as it is
//! written (ring's SHA-256), flushed to disk, and renamed into place only if the hash
//! is the expected one: a reader never sees a partial or corrupt object, and a full
//! disk leaves nothing behind but an error.

use std::io::Write;
use std::path::{Path, PathBuf};

use ring::digest;

/// A SHA-256 in lower-case hex, checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sha256(String);

impl Sha256 {
    pub fn parse(s: &str) -> Option<Sha256> {
        (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Sha256(s.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("the bytes hash to {found}, not to the expected {expected}")]
    Mismatch { expected: String, found: String },
    #[error("cannot write the object: {0}")]
    Io(#[from] std::io::Error),
}

/// The store's folder under the data folder, and its two folders of files that are
/// not objects yet (also cleaned by [`super::clean`]).
pub(crate) const DIR: &str = "cache";
pub(crate) const TMP: &str = "tmp";
pub(crate) const PARTIAL: &str = "partial";

pub struct Objects {
    dir: PathBuf,
}

impl Objects {
    pub fn open(data_dir: &Path) -> std::io::Result<Objects> {
        let dir = data_dir.join(DIR);
        std::fs::create_dir_all(dir.join(TMP))?;
        std::fs::create_dir_all(dir.join(PARTIAL))?;
        // Leftovers of writes cut short (a crash, a full disk) are never objects.
        for e in std::fs::read_dir(dir.join(TMP))?.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
        Ok(Objects { dir })
    }

    pub fn path(&self, sha: &Sha256) -> PathBuf {
        self.dir.join(&sha.0[..2]).join(&sha.0)
    }

    /// Writes `bytes` as the object `expected`, or nothing at all.
    pub fn put(
        &self,
        expected: &Sha256,
        chunks: impl IntoIterator<Item = std::io::Result<Vec<u8>>>,
    ) -> Result<u64, ObjectError> {
        let tmp = self
            .dir
            .join(TMP)
            .join(format!("{}.{}", expected.0, std::process::id()));
        let result = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            let mut ctx = digest::Context::new(&digest::SHA256);
            let mut size = 0u64;
            for chunk in chunks {
                let chunk = chunk?;
                ctx.update(&chunk);
                file.write_all(&chunk)?;
                size += chunk.len() as u64;
            }
            file.sync_all()?;
            let found = cartable_protocol::desired::hex(ctx.finish().as_ref());
            if found != expected.0 {
                return Err(ObjectError::Mismatch {
                    expected: expected.0.clone(),
                    found,
                });
            }
            let path = self.path(expected);
            std::fs::create_dir_all(path.parent().unwrap_or(&self.dir))?;
            std::fs::rename(&tmp, &path)?;
            Ok(size)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    pub fn contains(&self, sha: &Sha256) -> bool {
        self.path(sha).is_file()
    }

    /// Where a download in progress grows; it survives restarts so that the next
    /// attempt asks the origin only for the rest.
    pub fn partial_path(&self, sha: &Sha256) -> PathBuf {
        self.dir.join(PARTIAL).join(&sha.0)
    }

    /// A fresh temporary file's path (cleared at the next start if left behind).
    pub fn temp_path(&self, tag: &str) -> PathBuf {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.dir
            .join(TMP)
            .join(format!("{tag}.{}.{n}", std::process::id()))
    }

    /// Hashes the finished file at `from` and renames it into place under its own
    /// hash (for objects no catalogue names).
    pub fn adopt(&self, from: &Path) -> Result<(Sha256, u64), ObjectError> {
        let (found, size) = hash_file(from)?;
        let sha = Sha256(found);
        self.place(from, &sha)?;
        Ok((sha, size))
    }

    /// Renames a file whose hash the caller verified into place, durably.
    pub fn place(&self, from: &Path, sha: &Sha256) -> std::io::Result<()> {
        std::fs::File::open(from)?.sync_all()?;
        let path = self.path(sha);
        std::fs::create_dir_all(path.parent().unwrap_or(&self.dir))?;
        std::fs::rename(from, &path)?;
        // The rename itself must survive a power cut before the index says "stored".
        if let Some(parent) = path.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
        Ok(())
    }

    pub fn remove(&self, sha: &Sha256) -> std::io::Result<()> {
        match std::fs::remove_file(self.path(sha)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Every object on disk with its size.
    pub fn list(&self) -> Vec<(Sha256, u64)> {
        let mut out = Vec::new();
        for shard in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = shard.file_name();
            let name = name.to_string_lossy();
            if name.len() != 2 || !shard.path().is_dir() {
                continue;
            }
            for f in std::fs::read_dir(shard.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if let (Some(sha), Ok(meta)) = (
                    Sha256::parse(&f.file_name().to_string_lossy()),
                    f.metadata(),
                ) && meta.is_file()
                {
                    out.push((sha, meta.len()));
                }
            }
        }
        out
    }

    /// Bytes left for unprivileged writers on the disk holding the cache.
    pub fn free_space(&self) -> std::io::Result<u64> {
        crate::base::disk::space(&self.dir).map(|(free, _)| free)
    }
}

fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        size += n as u64;
    }
    Ok((cartable_protocol::desired::hex(ctx.finish().as_ref()), size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(bytes: &[u8]) -> Sha256 {
        Sha256::parse(&cartable_protocol::desired::hex(
            digest::digest(&digest::SHA256, bytes).as_ref(),
        ))
        .unwrap()
    }

    #[test]
    fn an_object_lands_only_when_its_hash_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let objects = Objects::open(dir.path()).unwrap();
        let good = sha(b"hello tablets");
        let n = objects
            .put(&good, [Ok(b"hello ".to_vec()), Ok(b"tablets".to_vec())])
            .unwrap();
        assert_eq!(n, 13);
        assert_eq!(
            std::fs::read(objects.path(&good)).unwrap(),
            b"hello tablets"
        );

        let other = sha(b"something else");
        let err = objects.put(&other, [Ok(b"corrupt".to_vec())]).unwrap_err();
        assert!(matches!(err, ObjectError::Mismatch { .. }));
        assert!(!objects.contains(&other));
        // A cut download leaves nothing either.
        let cut = objects.put(
            &other,
            [Ok(b"some".to_vec()), Err(std::io::Error::other("cut"))],
        );
        assert!(cut.is_err() && !objects.contains(&other));
        assert_eq!(
            std::fs::read_dir(dir.path().join("cache/tmp"))
                .unwrap()
                .count(),
            0
        );
        assert!(Sha256::parse("../../etc/passwd").is_none());
        assert!(Sha256::parse(&"g".repeat(64)).is_none());
    }
}
