//! Cutting a firmware bundle into the chunks a release is served as (see
//! `cartable_protocol::release`).
//!
//! Chunks are cut where the content says (FastCDC, the 2020 algorithm: cut points
//! follow the bytes, not the offsets), so a release that changes one file of the root
//! shares every chunk but the few around the change with the one before it, and a box
//! fetches only those. Each chunk is written once under its SHA-256 to a folder any
//! HTTP server can serve as it is; a chunk already there is not written again, so the
//! folder holds every release's chunks with the shared ones once.

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::Path;

use anyhow::Context;
use cartable_protocol::desired::hex;
use cartable_protocol::release::{BundleRef, ChunkRef};
use fastcdc::v2020::StreamCDC;
use ring::digest::{Context as Digest, SHA256};

/// Smallest, usual and largest chunk: 64 KiB on average, as casync's default, a few
/// seconds each over a 2 Mbit/s link.
pub const MIN_CHUNK: u32 = 16 << 10;
pub const AVG_CHUNK: u32 = 64 << 10;
pub const MAX_CHUNK: u32 = 256 << 10;

/// What cutting a bundle made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    pub bundle: BundleRef,
    pub chunks: Vec<ChunkRef>,
    /// Chunks (and their bytes) the store did not hold before.
    pub new_chunks: usize,
    pub new_bytes: u64,
}

/// Cuts `bundle` into chunks written to `store` (made if missing).
pub fn cut(bundle: &Path, store: &Path) -> anyhow::Result<Cut> {
    std::fs::create_dir_all(store).with_context(|| format!("making {}", store.display()))?;
    let file = File::open(bundle).with_context(|| format!("opening {}", bundle.display()))?;
    let mut whole = Digest::new(&SHA256);
    let mut out = Cut {
        bundle: BundleRef::default(),
        chunks: Vec::new(),
        new_chunks: 0,
        new_bytes: 0,
    };
    for piece in StreamCDC::new(BufReader::new(file), MIN_CHUNK, AVG_CHUNK, MAX_CHUNK) {
        let piece = piece.with_context(|| format!("reading {}", bundle.display()))?;
        whole.update(&piece.data);
        let sha256 = hex(ring::digest::digest(&SHA256, &piece.data).as_ref());
        if write_chunk(store, &sha256, &piece.data)? {
            out.new_chunks += 1;
            out.new_bytes += piece.data.len() as u64;
        }
        out.bundle.size += piece.data.len() as u64;
        out.chunks.push(ChunkRef {
            sha256,
            size: u32::try_from(piece.length).context("a chunk over 4 GiB")?,
        });
    }
    anyhow::ensure!(!out.chunks.is_empty(), "{} is empty", bundle.display());
    out.bundle.sha256 = hex(whole.finish().as_ref());
    Ok(out)
}

/// Why a bundle's next release will be a large delta, if it will: RAUC packs the
/// root image into a squashfs whose blocks it compresses by default, so a change that
/// shifts the (already compressed) root image by a few bytes changes every block after
/// it, and few chunks are shared (tests/bench/update.sh, a routine release: 69 % of
/// the bundle fetched with RAUC's default, 9.6 % with the blocks stored as they are,
/// for a bundle 1 % bigger). Read from the bundle's squashfs superblock: the flags at
/// offset 24, data and fragments uncompressed.
pub fn delta_warning(bundle: &Path) -> Option<String> {
    const MAGIC: u32 = 0x7371_7368; // "hsqs"
    const UNCOMPRESSED_DATA: u16 = 0x0002;
    const UNCOMPRESSED_FRAGMENTS: u16 = 0x0008;
    const NO_FRAGMENTS: u16 = 0x0010;
    let mut head = [0u8; 26];
    let mut f = File::open(bundle).ok()?;
    std::io::Read::read_exact(&mut f, &mut head).ok()?;
    if u32::from_le_bytes([head[0], head[1], head[2], head[3]]) != MAGIC {
        return None;
    }
    let flags = u16::from_le_bytes([head[24], head[25]]);
    let data = flags & UNCOMPRESSED_DATA != 0;
    let fragments = flags & (UNCOMPRESSED_FRAGMENTS | NO_FRAGMENTS) != 0;
    (!data || !fragments).then(|| {
        "the bundle's squashfs compresses its blocks: the next release will share few \
         chunks with this one and boxes will fetch most of it again; make bundles with \
         `rauc bundle --mksquashfs-args=\"-noI -noD -noF -noX\"` (the root image is \
         compressed already)"
            .to_string()
    })
}

/// Writes a chunk under its name unless it is there; says whether it wrote. Written
/// aside, synced and renamed: a chunk under its name is always whole.
fn write_chunk(store: &Path, sha256: &str, data: &[u8]) -> anyhow::Result<bool> {
    let path = store.join(sha256);
    if path.exists() {
        return Ok(false);
    }
    let mut tmp = tempfile::NamedTempFile::new_in(store)
        .with_context(|| format!("writing in {}", store.display()))?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cartable_protocol::release::Release;

    /// Bytes that do not compress or repeat (SHA-256 of a counter), as a squashfs
    /// root's; the same for the same seed, so the chunks are.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        (0u64..)
            .flat_map(|i| {
                let block =
                    ring::digest::digest(&SHA256, &[seed.to_le_bytes(), i.to_le_bytes()].concat());
                block.as_ref().to_vec()
            })
            .take(len)
            .collect()
    }

    #[test]
    fn a_bundle_whose_squashfs_compresses_its_blocks_is_warned_about() {
        let dir = tempfile::tempdir().unwrap();
        let superblock = |flags: u16| {
            let mut b = 0x7371_7368u32.to_le_bytes().to_vec();
            b.resize(24, 0);
            b.extend(flags.to_le_bytes());
            b.resize(96, 0);
            b
        };
        let path = dir.path().join("b.raucb");
        // mksquashfs's defaults (RAUC's), then -noI -noD -noF -noX.
        std::fs::write(&path, superblock(0x02c0)).unwrap();
        assert!(delta_warning(&path).unwrap().contains("-noD"));
        std::fs::write(&path, superblock(0x03cb)).unwrap();
        assert_eq!(delta_warning(&path), None);
        // Not a squashfs (a plain RAUC bundle is one; anything else is not ours to say).
        std::fs::write(&path, b"not a bundle at all, longer than a superblock").unwrap();
        assert_eq!(delta_warning(&path), None);
    }

    fn reassemble(store: &Path, chunks: &[ChunkRef]) -> Vec<u8> {
        chunks
            .iter()
            .flat_map(|c| std::fs::read(store.join(&c.sha256)).unwrap())
            .collect()
    }

    /// The chunks put back in order are the bundle, each named by its SHA-256; the
    /// manifest made of them passes a box's checks; a bundle changed in one place
    /// shares all but the chunks around the change, and only those are written.
    #[test]
    fn a_bundle_cut_and_put_back_and_a_change_costs_a_few_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("chunks");
        let v1 = noise(4 << 20, 7);
        std::fs::write(dir.path().join("v1.raucb"), &v1).unwrap();
        let one = cut(&dir.path().join("v1.raucb"), &store).unwrap();
        assert_eq!(reassemble(&store, &one.chunks), v1);
        assert_eq!(one.bundle.size, v1.len() as u64);
        assert_eq!(
            one.bundle.sha256,
            hex(ring::digest::digest(&SHA256, &v1).as_ref())
        );
        assert!(one.chunks.iter().all(|c| c.size <= MAX_CHUNK));
        assert!(one.chunks.len() > 16, "{} chunks", one.chunks.len());
        assert_eq!(one.new_chunks, one.chunks.len());
        for c in &one.chunks {
            let data = std::fs::read(store.join(&c.sha256)).unwrap();
            assert_eq!(hex(ring::digest::digest(&SHA256, &data).as_ref()), c.sha256);
        }
        let manifest = Release {
            version: "2".into(),
            board: "x86_64".into(),
            bundle: one.bundle.clone(),
            chunks: one.chunks.clone(),
            chunk_urls: vec!["http://central.test/chunks".into()],
            ..Release::default()
        };
        assert_eq!(manifest.check(), Ok(()));

        // A new daemon in the middle of the root: 40 KiB replaced, 10 KiB inserted.
        let mut v2 = v1.clone();
        let at = 2 << 20;
        v2.splice(at..at + (40 << 10), noise(50 << 10, 9));
        std::fs::write(dir.path().join("v2.raucb"), &v2).unwrap();
        let two = cut(&dir.path().join("v2.raucb"), &store).unwrap();
        assert_eq!(reassemble(&store, &two.chunks), v2);
        assert!(
            two.new_bytes < 5 * u64::from(MAX_CHUNK),
            "{} of {} bytes new",
            two.new_bytes,
            two.bundle.size
        );
        assert!(two.new_chunks <= 5, "{} new chunks", two.new_chunks);
        // Cutting the same bundle again writes nothing.
        let again = cut(&dir.path().join("v2.raucb"), &store).unwrap();
        assert_eq!((again.new_chunks, &again.chunks), (0, &two.chunks));
    }

    #[test]
    fn an_empty_or_missing_bundle_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("empty"), b"").unwrap();
        let err = cut(&dir.path().join("empty"), &dir.path().join("s")).unwrap_err();
        assert!(err.to_string().contains("is empty"), "{err:#}");
        let err = cut(&dir.path().join("none"), &dir.path().join("s")).unwrap_err();
        assert!(format!("{err:#}").contains("opening"), "{err:#}");
    }
}
