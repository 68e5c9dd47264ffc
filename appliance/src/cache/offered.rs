//! The chunks of the signed release this box holds, offered to the site's other boxes.
//!
//! A box asked for `/cache/{sha256}` answers from what it holds; when the hash is a
//! chunk of the release the fleet signed and this box stored, it also fetches it from
//! the release's origin (one download however many boxes ask, paced like its own) and
//! streams it as it arrives. So the site's other boxes, pointed at one box
//! (`[update] peers`), make one copy of a release cross the school's link, not one
//! per box. Only the origin's URLs are used here, never peers: two boxes pointed at
//! each other cannot bounce a request between them.

use std::collections::HashMap;

use cartable_protocol::desired::CatalogueItem;
use cartable_protocol::release::Release;

/// The chunks on offer: the release's version, its chunk URLs and each chunk's size.
#[derive(Debug, Default)]
pub(crate) struct Offered {
    version: String,
    bundle: String,
    bases: Vec<String>,
    sizes: HashMap<String, u64>,
}

impl Offered {
    /// The chunks of `release` (none: nothing on offer).
    pub(crate) fn of(release: Option<&Release>) -> Offered {
        let Some(r) = release else {
            return Offered::default();
        };
        Offered {
            version: r.version.clone(),
            bundle: r.bundle.sha256.clone(),
            bases: r
                .chunk_urls
                .iter()
                .map(|u| u.trim_end_matches('/').to_string())
                .collect(),
            sizes: r
                .chunks
                .iter()
                .map(|c| (c.sha256.to_ascii_lowercase(), u64::from(c.size)))
                .collect(),
        }
    }

    /// Whether this is already the offer for `release`.
    pub(crate) fn is_of(&self, release: Option<&Release>) -> bool {
        match release {
            None => self.sizes.is_empty(),
            Some(r) => self.version == r.version && self.bundle == r.bundle.sha256,
        }
    }

    /// The download of chunk `sha` from the origin, as the cache fetches an item.
    pub(crate) fn item(&self, sha: &str) -> Option<CatalogueItem> {
        let size = *self.sizes.get(sha)?;
        Some(CatalogueItem {
            id: format!("firmware-{}", self.version),
            version: String::new(),
            urls: self.bases.iter().map(|b| format!("{b}/{sha}")).collect(),
            size,
            sha256: sha.to_string(),
            pinned: false,
            audience: Vec::new(),
            priority: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cartable_protocol::release::{BundleRef, ChunkRef};

    fn release() -> Release {
        Release {
            version: "2026.12.2".into(),
            board: "x86_64".into(),
            bundle: BundleRef {
                size: 3,
                sha256: "b".repeat(64),
            },
            chunks: vec![ChunkRef {
                sha256: "a".repeat(64),
                size: 3,
            }],
            chunk_urls: vec!["http://origin/chunks/".into()],
            min_from: None,
            rollout: Default::default(),
            window: None,
            downgrade: false,
        }
    }

    #[test]
    fn a_chunk_of_the_release_is_fetched_from_its_origin_and_nothing_else_is() {
        let r = release();
        let o = Offered::of(Some(&r));
        assert!(o.is_of(Some(&r)) && !o.is_of(None));
        let item = o.item(&"a".repeat(64)).unwrap();
        assert_eq!(
            item.urls,
            vec![format!("http://origin/chunks/{}", "a".repeat(64))]
        );
        assert_eq!((item.size, item.id.as_str()), (3, "firmware-2026.12.2"));
        assert!(o.item(&"c".repeat(64)).is_none());
        assert!(Offered::of(None).item(&"a".repeat(64)).is_none());
    }
}
