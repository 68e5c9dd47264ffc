//! What the box must hold: the catalogue, from the central side (signed, stored by
//! the sync service) or else from the local file `[cache] catalogue`. A catalogue
//! that does not parse is reported and the box keeps serving what it holds.

use cartable_protocol::desired::{Body, Catalogue};

use super::objects::Sha256;
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub(crate) enum CatalogueError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a catalogue: {message}")]
    Invalid { path: String, message: String },
}

/// Parses and checks a catalogue file's text (every hash 64 hex digits).
pub(crate) fn parse(path: &str, text: &str) -> Result<Catalogue, CatalogueError> {
    let c: Catalogue = serde_json::from_str(text).map_err(|e| CatalogueError::Invalid {
        path: path.into(),
        message: e.to_string(),
    })?;
    check(path, &c)?;
    Ok(c)
}

/// Every hash 64 hex digits, every URL http(s), every id usable in a path.
pub(crate) fn check(path: &str, c: &Catalogue) -> Result<(), CatalogueError> {
    let bad = |message: String| CatalogueError::Invalid {
        path: path.into(),
        message,
    };
    for item in &c.items {
        if item.id.is_empty()
            || item.id.contains(['/', '?', '#', '%'])
            || item.version.contains('/')
        {
            return Err(bad(format!(
                "item `{}`: ids and versions cannot contain `/`, `?`, `#` or `%`",
                item.id
            )));
        }
        if let Some(u) = item
            .urls
            .iter()
            .find(|u| !(u.starts_with("http://") || u.starts_with("https://")))
        {
            return Err(bad(format!(
                "item `{}`: `{u}` is not an http(s) URL",
                item.id
            )));
        }
        if Sha256::parse(&item.sha256).is_none() {
            return Err(CatalogueError::Invalid {
                path: path.into(),
                message: format!("item `{}`: sha256 must be 64 hex digits", item.id),
            });
        }
    }
    Ok(())
}

/// The catalogue in force: the central side's if one was applied (verified again
/// with the pinned key), else the local file's, else an empty one.
pub(crate) fn current(
    store: &Store,
    fleet_key: Option<&[u8]>,
    file: Option<&std::path::Path>,
) -> Result<Catalogue, CatalogueError> {
    if let Some(key) = fleet_key {
        let envelope = store
            .read_blocking(|c| {
                crate::store::desired_envelope(c, cartable_protocol::topics::DesiredKind::Catalogue)
            })
            .ok()
            .flatten();
        if let Some(Ok(d)) = envelope.map(|e| cartable_protocol::desired::open(e.as_bytes(), key))
            && let Body::Catalogue(c) = d.desired.body
        {
            return Ok(c);
        }
    }
    match file {
        Some(path) => {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|source| CatalogueError::Read {
                path: shown.clone(),
                source,
            })?;
            parse(&shown, &text)
        }
        None => Ok(Catalogue::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_catalogue_file_parses_and_bad_ones_say_why() {
        let good = format!(
            r#"{{"items": [{{"id": "lecture", "version": "2.1", "urls": ["http://origin/l.apk"], "size": 3, "sha256": "{}", "pinned": true}}]}}"#,
            "ab".repeat(32)
        );
        let c = parse("c.json", &good).unwrap();
        assert_eq!(
            (c.items[0].id.as_str(), c.items[0].pinned),
            ("lecture", true)
        );
        for (bad, why) in [
            ("{", "not a catalogue"),
            (r#"{"items": [{"id": "x"}]}"#, "missing field"),
            (
                r#"{"items": [{"id": "x", "version": "1", "urls": [], "size": 1, "sha256": "zz"}]}"#,
                "64 hex",
            ),
            (r#"{"things": []}"#, "unknown field"),
            (
                &format!(
                    r#"{{"items": [{{"id": "x", "version": "1", "urls": ["file:///etc/passwd"], "size": 1, "sha256": "{}"}}]}}"#,
                    "ab".repeat(32)
                ),
                "not an http(s) URL",
            ),
            (
                &format!(
                    r#"{{"items": [{{"id": "../x", "version": "1", "urls": [], "size": 1, "sha256": "{}"}}]}}"#,
                    "ab".repeat(32)
                ),
                "cannot contain",
            ),
        ] {
            let e = parse("c.json", bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
