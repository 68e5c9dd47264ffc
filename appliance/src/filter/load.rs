//! From where the lists are to a ready `Filter`: unpack a UT1 archive if given, read
//! the tree, add the extra lists, compile the index, then the policies.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::FilterError;
use super::decide::Filter;
use super::index::{Index, ListSource};
use super::policy::{BlockMode, Policies, PolicyConfig};
use super::ut1::{self, Kind, Ut1Category};

/// Where the lists come from.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub ut1_dir: Option<PathBuf>,
    /// Used when `ut1_dir` is not set; unpacked under `unpack_dir`.
    pub ut1_archive: Option<PathBuf>,
    pub unpack_dir: PathBuf,
    /// (category, file): hosts files and plain lists.
    pub lists: Vec<(String, PathBuf)>,
    /// Where the compiled index is kept between runs (none: always compile).
    pub index_file: Option<PathBuf>,
}

/// What the index is made of, as a digest: every list file's path, size and time of
/// change (or the archive's), the UT1 tree's layout, and this binary's version.
fn fingerprint(sources: &Sources) -> Option<String> {
    use std::fmt::Write;
    let mut text = format!("cartable {}\n", env!("CARGO_PKG_VERSION"));
    fn stat(text: &mut String, p: &Path) -> Option<()> {
        let m = std::fs::metadata(p).ok()?;
        let changed = m
            .modified()
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?;
        writeln!(text, "{}|{}|{}", p.display(), m.len(), changed.as_nanos()).ok()
    }
    match (&sources.ut1_dir, &sources.ut1_archive) {
        (Some(dir), _) => {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
                .ok()?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            entries.sort();
            let _ = stat(&mut text, &dir.join("global_usage"));
            for e in entries {
                if let Ok(target) = std::fs::read_link(&e) {
                    let _ = writeln!(text, "{} -> {}", e.display(), target.display());
                    continue;
                }
                for file in ["usage", "domains"] {
                    let _ = stat(&mut text, &e.join(file));
                }
            }
        }
        (None, Some(archive)) => stat(&mut text, archive)?,
        (None, None) => {}
    }
    for (category, path) in &sources.lists {
        let _ = writeln!(text, "list {category}");
        stat(&mut text, path)?;
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    Some(digest.as_ref().iter().map(|b| format!("{b:02x}")).collect())
}

/// Every category name and alias the sources provide, without compiling them; `None`
/// when no source is configured (then nothing can be checked).
pub fn category_names(sources: &Sources) -> Result<Option<Vec<String>>, FilterError> {
    let mut names = match (&sources.ut1_dir, &sources.ut1_archive) {
        (Some(dir), _) => names_in_tree(dir)?,
        (None, Some(archive)) => match unpacked_copy(archive, &sources.unpack_dir) {
            Some(tree) => names_in_tree(&tree)?,
            None => ut1::archive_category_names(archive)?,
        },
        (None, None) if sources.lists.is_empty() => return Ok(None),
        (None, None) => Vec::new(),
    };
    names.extend(sources.lists.iter().map(|(c, _)| c.clone()));
    Ok(Some(names))
}

fn names_in_tree(root: &Path) -> Result<Vec<String>, FilterError> {
    Ok(ut1::read_tree(root)?
        .into_iter()
        .flat_map(|c| std::iter::once(c.name).chain(c.aliases))
        .collect())
}

/// The tree `unpack` made of `archive`, if it was made after the archive's last
/// change: its folders name the same categories, read without decompressing the
/// archive again at every start.
fn unpacked_copy(archive: &Path, unpack_dir: &Path) -> Option<PathBuf> {
    let tree = unpack_dir.join("ut1");
    let unpacked = std::fs::metadata(&tree).ok()?.modified().ok()?;
    let changed = std::fs::metadata(archive).ok()?.modified().ok()?;
    (unpacked >= changed).then(|| tree.join("blacklists"))
}

/// A compiled filter and what was noticed on the way.
pub struct Loaded {
    pub filter: Filter,
    /// The index came from the saved file, not from compiling the lists.
    pub from_saved: bool,
    pub warnings: Vec<String>,
    pub took: Duration,
}

/// Compiles the lists and the policies. On error the caller keeps its current filter.
pub fn load(
    sources: &Sources,
    policies: &[PolicyConfig],
    block_mode: BlockMode,
) -> Result<Loaded, FilterError> {
    let started = Instant::now();
    let saved = fingerprint(sources).zip(sources.index_file.clone());
    let index = match &saved {
        Some((fp, file)) => Index::load(file, fp),
        None => None,
    };
    let from_saved = index.is_some();
    let index = match index {
        Some(index) => {
            tracing::debug!("the saved index matches the lists");
            index
        }
        None => {
            let index = compile(sources)?;
            if let Some((fp, file)) = &saved {
                let written = file
                    .parent()
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .and_then(|_| index.save(file, fp));
                if let Err(e) = written {
                    tracing::warn!(file = %file.display(), error = %e, "cannot keep the compiled lists for the next start");
                }
            }
            index
        }
    };
    finish(index, policies, block_mode, started, from_saved)
}

/// Reads the sources and compiles them.
fn compile(sources: &Sources) -> Result<Index, FilterError> {
    let root = match (&sources.ut1_dir, &sources.ut1_archive) {
        (Some(dir), _) => Some(dir.clone()),
        (None, Some(archive)) => Some(unpack(archive, &sources.unpack_dir)?),
        (None, None) => None,
    };
    let mut categories: Vec<Ut1Category> = match &root {
        Some(r) => ut1::read_tree(r)?,
        None => Vec::new(),
    };
    let mut list_sources: Vec<ListSource> = categories
        .iter()
        .filter_map(|c| {
            c.domains.as_ref().map(|p| ListSource {
                category: c.name.clone(),
                path: p.clone(),
            })
        })
        .collect();
    for (category, path) in &sources.lists {
        let known = categories
            .iter()
            .any(|c| &c.name == category || c.aliases.contains(category));
        if !known {
            categories.push(Ut1Category {
                name: category.clone(),
                aliases: Vec::new(),
                kind: Kind::Black,
                titles: Default::default(),
                descriptions: Default::default(),
                domains: None,
            });
        }
        list_sources.push(ListSource {
            category: category.clone(),
            path: path.clone(),
        });
    }
    Index::build(categories, list_sources)
}

fn finish(
    index: Index,
    policies: &[PolicyConfig],
    block_mode: BlockMode,
    started: Instant,
    from_saved: bool,
) -> Result<Loaded, FilterError> {
    let compiled = Policies::compile(policies, &index, block_mode)
        .map_err(|e| FilterError::Policy(e.to_string()))?;
    // One line per policy: a box without UT1 lists would otherwise log dozens.
    let mut missing: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (p, c) in &compiled.unknown_categories {
        missing.entry(p).or_default().push(c);
    }
    let mut warnings: Vec<String> = missing
        .iter()
        .map(|(p, cats)| {
            format!(
                "policy `{p}` blocks categories no list provides: {}",
                cats.join(", ")
            )
        })
        .collect();
    for c in index.categories().iter().filter(|c| c.entries == 0) {
        let blocked_by: Vec<&str> = compiled
            .all()
            .iter()
            .filter(|p| p.blocked & (1u128 << c.id) != 0)
            .map(|p| p.name.as_str())
            .collect();
        let by = if blocked_by.is_empty() {
            String::new()
        } else {
            format!(", yet policies {} block it", blocked_by.join(", "))
        };
        warnings.push(format!(
            "category `{}` holds no names (its list is missing or empty){by}",
            c.name
        ));
    }
    for s in index.sources() {
        if s.skipped.count > 0 {
            warnings.push(format!(
                "{}: {} lines skipped (not domain names), e.g. line {}",
                s.path.display(),
                s.skipped.count,
                s.skipped.examples.first().map_or(0, |e| e.0)
            ));
        }
    }
    Ok(Loaded {
        filter: Filter {
            index: Arc::new(index),
            policies: compiled,
        },
        from_saved,
        warnings,
        took: started.elapsed(),
    })
}

/// Unpacks into a fresh folder beside the last one, so a bad archive never destroys
/// the lists in service; the previous unpacked copy is removed only after success.
fn unpack(archive: &Path, unpack_dir: &Path) -> Result<PathBuf, FilterError> {
    let fresh = unpack_dir.join("ut1.new");
    let current = unpack_dir.join("ut1");
    let io = |path: &Path, e| FilterError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    if fresh.exists() {
        std::fs::remove_dir_all(&fresh).map_err(|e| io(&fresh, e))?;
    }
    ut1::unpack_archive(archive, &fresh)?;
    if current.exists() {
        std::fs::remove_dir_all(&current).map_err(|e| io(&current, e))?;
    }
    std::fs::rename(&fresh, &current).map_err(|e| io(&current, e))?;
    Ok(current.join("blacklists"))
}
