//! A firmware release as the fleet publishes it: a RAUC bundle cut into
//! content-defined chunks, each named by its SHA-256, and the manifest that lists them.
//!
//! Why chunks: a school's link is 2 Mbit/s on a good day and gone for a week on a bad
//! one. A box rebuilds the bundle from chunks: those it already holds (the bundle it
//! installed last) are copied locally and only the others cross the link, each
//! verified on arrival, so an outage costs at most the chunk in flight and a routine
//! release costs what changed. The manifest travels in a signed desired-state envelope
//! (`desired::Body::Release`); its checks here are what a box applies before it
//! fetches a byte: a manifest that fails them is refused with the reason.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

/// Most chunks in one release (a 2 GiB bundle at the ~64 KiB average).
pub const MAX_CHUNKS: usize = 32_768;
/// Largest chunk a box accepts (the chunker cuts at 256 KiB at most).
pub const MAX_CHUNK: u32 = 1 << 20;

/// A firmware release for the A/B updater.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// Dotted numbers, compared number by number ("2026.12.10" is after "2026.12.9").
    pub version: String,
    /// The board the bundle is for ("x86_64", "rpi4", "rpi5"), as RAUC's
    /// `compatible` names it.
    pub board: String,
    /// The whole bundle.
    pub bundle: BundleRef,
    /// The bundle's chunks, in order.
    pub chunks: Vec<ChunkRef>,
    /// Where chunks are served: a chunk is `<base>/<sha256>` under any of them.
    pub chunk_urls: Vec<String>,
    /// The oldest running version this release upgrades (none: any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_from: Option<String>,
    #[serde(default)]
    pub rollout: Rollout,
    /// When a box may install, school-local time, "HH:MM-HH:MM" (may pass midnight);
    /// none: the box's own configured window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// A rollback order: boxes running a newer version take this older one. Signed
    /// like every release, so a downgrade is something the fleet decided, never
    /// something a replayed old manifest can do.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub downgrade: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleRef {
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkRef {
    /// Lower-case hex.
    pub sha256: String,
    pub size: u32,
}

/// Which boxes take the release now.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    /// This share of the fleet (by a stable hash of the box's id); none: every box.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave_percent: Option<u8>,
    /// Only boxes of these sites (empty: no restriction).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sites: Vec<String>,
    /// The rollout is aborted: a box that has not installed the release stops and
    /// drops what it fetched; a box already running it keeps it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub aborted: bool,
}

/// A box's stable place in the fleet, 0 to 99: a wave of P % takes the boxes below P,
/// so widening a wave keeps every box it had. From the box's names alone, so the box
/// and the central side compute the same place.
pub fn place_in_fleet(site: &str, box_id: &str) -> u32 {
    let d = ring::digest::digest(
        &ring::digest::SHA256,
        format!("cartable-wave/{site}/{box_id}").as_bytes(),
    );
    let mut first = [0u8; 8];
    first.copy_from_slice(&d.as_ref()[..8]);
    (u64::from_be_bytes(first) % 100) as u32
}

/// Why a manifest is refused before anything is fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("version `{0}` is not dotted numbers")]
    Version(String),
    #[error("no board named")]
    Board,
    #[error("{0}")]
    Chunks(String),
    #[error("no address to fetch chunks from")]
    NoUrls,
    #[error("wave of {0} % (1 to 100)")]
    Wave(u8),
    #[error("install window `{0}` is not HH:MM-HH:MM")]
    Window(String),
}

impl Release {
    /// Every check that needs nothing but the manifest.
    pub fn check(&self) -> Result<(), ManifestError> {
        Version::parse(&self.version)
            .ok_or_else(|| ManifestError::Version(self.version.clone()))?;
        if let Some(min) = &self.min_from {
            Version::parse(min).ok_or_else(|| ManifestError::Version(min.clone()))?;
        }
        if self.board.trim().is_empty() {
            return Err(ManifestError::Board);
        }
        if !is_sha256(&self.bundle.sha256) {
            return Err(ManifestError::Chunks(
                "the bundle's SHA-256 is not 64 hex digits".into(),
            ));
        }
        if self.chunks.is_empty() || self.chunks.len() > MAX_CHUNKS {
            return Err(ManifestError::Chunks(format!(
                "{} chunks (1 to {MAX_CHUNKS})",
                self.chunks.len()
            )));
        }
        let mut total = 0u64;
        for (i, c) in self.chunks.iter().enumerate() {
            if !is_sha256(&c.sha256) {
                return Err(ManifestError::Chunks(format!(
                    "chunk {i}: SHA-256 is not 64 lower-case hex digits"
                )));
            }
            if c.size == 0 || c.size > MAX_CHUNK {
                return Err(ManifestError::Chunks(format!(
                    "chunk {i}: {} bytes (1 to {MAX_CHUNK})",
                    c.size
                )));
            }
            total += u64::from(c.size);
        }
        if total != self.bundle.size {
            return Err(ManifestError::Chunks(format!(
                "chunks add up to {total} bytes, the bundle is {}",
                self.bundle.size
            )));
        }
        if self.chunk_urls.is_empty() {
            return Err(ManifestError::NoUrls);
        }
        if let Some(w) = self.rollout.wave_percent
            && !(1..=100).contains(&w)
        {
            return Err(ManifestError::Wave(w));
        }
        if let Some(window) = &self.window {
            parse_window(window).ok_or_else(|| ManifestError::Window(window.clone()))?;
        }
        Ok(())
    }
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A window "HH:MM-HH:MM" as minutes of the day (start, end); start after end means
/// it passes midnight.
pub fn parse_window(s: &str) -> Option<(u16, u16)> {
    let (from, to) = s.split_once('-')?;
    let minute = |t: &str| -> Option<u16> {
        let (h, m) = t.trim().split_once(':')?;
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        (h < 24 && m < 60 && t.trim().len() == 5).then_some(h * 60 + m)
    };
    let (from, to) = (minute(from)?, minute(to)?);
    (from != to).then_some((from, to))
}

/// A release version: dotted numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version(Vec<u64>);

impl Version {
    pub fn parse(s: &str) -> Option<Version> {
        let parts: Option<Vec<u64>> = s
            .split('.')
            .map(|p| {
                (!p.is_empty() && p.len() <= 18 && p.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| p.parse().ok())
                    .flatten()
            })
            .collect();
        parts.filter(|p| !p.is_empty() && p.len() <= 8).map(Version)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    /// Number by number; a missing number counts as 0 ("1.2" = "1.2.0").
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.0.len().max(other.0.len());
        (0..n)
            .map(|i| {
                let a = self.0.get(i).copied().unwrap_or(0);
                let b = other.0.get(i).copied().unwrap_or(0);
                a.cmp(&b)
            })
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(n: u8, size: u32) -> ChunkRef {
        ChunkRef {
            sha256: format!("{n:02x}").repeat(32),
            size,
        }
    }

    fn release() -> Release {
        Release {
            version: "2026.12.1".into(),
            board: "x86_64".into(),
            bundle: BundleRef {
                size: 300,
                sha256: "ab".repeat(32),
            },
            chunks: vec![chunk(1, 100), chunk(2, 200)],
            chunk_urls: vec!["https://central.test/chunks".into()],
            ..Release::default()
        }
    }

    #[test]
    fn a_good_manifest_passes_and_each_fault_is_named() {
        assert_eq!(release().check(), Ok(()));
        let mut r = release();
        r.version = "2026.12.x".into();
        assert_eq!(r.check(), Err(ManifestError::Version("2026.12.x".into())));
        let mut r = release();
        r.chunks[1].size = 199;
        assert!(matches!(r.check(), Err(ManifestError::Chunks(m)) if m.contains("299")));
        let mut r = release();
        r.chunks[0].sha256 = "AB".repeat(32);
        assert!(matches!(r.check(), Err(ManifestError::Chunks(m)) if m.contains("chunk 0")));
        let mut r = release();
        r.chunks[0].size = MAX_CHUNK + 1;
        assert!(r.check().is_err());
        let mut r = release();
        r.chunks.clear();
        assert!(r.check().is_err());
        let mut r = release();
        r.chunk_urls.clear();
        assert_eq!(r.check(), Err(ManifestError::NoUrls));
        let mut r = release();
        r.rollout.wave_percent = Some(0);
        assert_eq!(r.check(), Err(ManifestError::Wave(0)));
        let mut r = release();
        r.window = Some("22:00-25:00".into());
        assert!(matches!(r.check(), Err(ManifestError::Window(_))));
        let mut r = release();
        r.board = " ".into();
        assert_eq!(r.check(), Err(ManifestError::Board));
    }

    #[test]
    fn versions_compare_number_by_number() {
        let v = |s| Version::parse(s).unwrap();
        assert!(v("2026.12.10") > v("2026.12.9"));
        assert_eq!(v("1.2"), v("1.2.0").max(v("1.2")));
        assert_eq!(v("1.2").cmp(&v("1.2.0")), Ordering::Equal);
        for bad in ["", "1..2", "1.a", "-1", "1.2.", "99999999999999999999"] {
            assert_eq!(Version::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn windows_may_pass_midnight() {
        assert_eq!(parse_window("22:00-05:30"), Some((1320, 330)));
        assert_eq!(parse_window("12:00-13:00"), Some((720, 780)));
        for bad in [
            "12:00-12:00",
            "1:00-2:00",
            "12:60-13:00",
            "12:00",
            "aa:bb-cc:dd",
        ] {
            assert_eq!(parse_window(bad), None, "{bad}");
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let mut json = serde_json::to_value(release()).unwrap();
        json["surprise"] = serde_json::json!(1);
        assert!(serde_json::from_value::<Release>(json).is_err());
    }
}
