//! Reading a UT1 `blacklists/` tree: which categories exist, their aliases (symbolic
//! links and `usage` files), whether each is a block or an allow list, their names and
//! descriptions in French and English (`global_usage`), and where their `domains` file is.
//!
//! Only the tree's layout is read here; the `domains` files themselves are read and
//! hashed into the index by `index::build`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::FilterError;

/// Whether a category lists what to block or what to allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Black,
    White,
    /// Usable either way (`usage` says both).
    Both,
}

/// One UT1 category as found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ut1Category {
    pub name: String,
    /// Other names it answers to: symbolic links to it and the names in its `usage`.
    pub aliases: Vec<String>,
    pub kind: Kind,
    /// Short names and descriptions by language code (`fr`, `en`, ...).
    pub titles: BTreeMap<String, String>,
    pub descriptions: BTreeMap<String, String>,
    /// Its `domains` file, when it has one.
    pub domains: Option<PathBuf>,
}

/// Reads the categories of an unpacked `blacklists/` folder, sorted by name.
pub fn read_tree(root: &Path) -> Result<Vec<Ut1Category>, FilterError> {
    let io = |e: std::io::Error| FilterError::Io {
        path: root.to_path_buf(),
        source: e,
    };
    let mut categories: BTreeMap<String, Ut1Category> = BTreeMap::new();
    let mut links: Vec<(String, String)> = Vec::new();
    for entry in std::fs::read_dir(root).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().to_string();
        let meta = std::fs::symlink_metadata(entry.path()).map_err(io)?;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(entry.path()).map_err(io)?;
            let target = target
                .file_name()
                .map(|t| t.to_string_lossy().to_string())
                .unwrap_or_default();
            links.push((name, target));
        } else if meta.is_dir() {
            let dir = entry.path();
            let usage = std::fs::read_to_string(dir.join("usage")).unwrap_or_default();
            let (kind, aliases) = parse_usage(&usage, &name);
            let domains = dir.join("domains");
            categories.insert(
                name.clone(),
                Ut1Category {
                    name,
                    aliases,
                    kind,
                    titles: BTreeMap::new(),
                    descriptions: BTreeMap::new(),
                    domains: domains.is_file().then_some(domains),
                },
            );
        }
    }
    if categories.is_empty() {
        return Err(FilterError::NotUt1(root.to_path_buf()));
    }
    for (alias, target) in links {
        if let Some(c) = categories.get_mut(&target)
            && !c.aliases.contains(&alias)
        {
            c.aliases.push(alias);
        }
    }
    if let Ok(global) = std::fs::read_to_string(root.join("global_usage")) {
        for (name, titles, descriptions) in parse_global_usage(&global) {
            if let Some(c) = categories.get_mut(&name) {
                c.titles = titles;
                c.descriptions = descriptions;
            }
        }
    }
    let mut out: Vec<Ut1Category> = categories.into_values().collect();
    for c in &mut out {
        c.aliases.sort();
        c.aliases.dedup();
    }
    Ok(out)
}

/// Unpacks a UT1 `.tar.gz` into `dest` and returns the `blacklists/` folder inside.
///
/// Entries that would land outside `dest` (absolute paths, `..`) are refused by the
/// tar reader; only files, folders and symbolic links are written.
pub fn unpack_archive(archive: &Path, dest: &Path) -> Result<PathBuf, FilterError> {
    let io = |e: std::io::Error| FilterError::Io {
        path: archive.to_path_buf(),
        source: e,
    };
    let file = std::fs::File::open(archive).map_err(io)?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    tar.set_preserve_permissions(false);
    tar.set_overwrite(true);
    std::fs::create_dir_all(dest).map_err(io)?;
    for entry in tar.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir() || kind.is_symlink()) {
            continue;
        }
        if kind.is_symlink() {
            // A link may only name a sibling category, never leave the tree.
            let target = entry.link_name().map_err(io)?.unwrap_or_default();
            if target.is_absolute() || target.components().count() != 1 {
                continue;
            }
        }
        entry.unpack_in(dest).map_err(io)?;
    }
    let root = dest.join("blacklists");
    if root.is_dir() {
        Ok(root)
    } else {
        Err(FilterError::NotUt1(archive.to_path_buf()))
    }
}

/// Every category name and alias a UT1 `.tar.gz` holds, read from its entries without
/// unpacking it (for `check-config`: the folders, the links, and the `usage` files).
pub fn archive_category_names(archive: &Path) -> Result<Vec<String>, FilterError> {
    use std::io::Read;
    let io = |e: std::io::Error| FilterError::Io {
        path: archive.to_path_buf(),
        source: e,
    };
    let file = std::fs::File::open(archive).map_err(io)?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut names = Vec::new();
    for entry in tar.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let path = entry.path().map_err(io)?.into_owned();
        let parts: Vec<String> = path
            .components()
            .map(|c| c.as_os_str().to_string_lossy().to_string())
            .collect();
        match parts.as_slice() {
            [root, name] if root == "blacklists" => {
                let kind = entry.header().entry_type();
                if kind.is_dir() || kind.is_symlink() {
                    names.push(name.clone());
                }
            }
            [root, name, file] if root == "blacklists" && file == "usage" => {
                let mut text = String::new();
                // A usage file is a few lines; more is not one.
                let _ = entry.by_ref().take(64 << 10).read_to_string(&mut text);
                names.extend(parse_usage(&text, name).1);
            }
            _ => {}
        }
    }
    if names.is_empty() {
        return Err(FilterError::NotUt1(archive.to_path_buf()));
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// `usage`: `black` and/or `white`, other names of the category, `#` comments.
fn parse_usage(text: &str, name: &str) -> (Kind, Vec<String>) {
    let (mut black, mut white) = (false, false);
    let mut aliases = Vec::new();
    for line in text.lines().map(str::trim) {
        match line {
            "" => {}
            l if l.starts_with('#') => {}
            l if l.eq_ignore_ascii_case("black") => black = true,
            l if l.eq_ignore_ascii_case("white") => white = true,
            l if l != name => aliases.push(l.to_string()),
            _ => {}
        }
    }
    let kind = match (black, white) {
        (true, true) => Kind::Both,
        (false, true) => Kind::White,
        _ => Kind::Black,
    };
    (kind, aliases)
}

type Texts = BTreeMap<String, String>;

/// `global_usage`: blocks starting with `NAME: category`, then `NAME xx:` and `DESC xx:`.
fn parse_global_usage(text: &str) -> Vec<(String, Texts, Texts)> {
    let mut out: Vec<(String, Texts, Texts)> = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim().to_string();
        let mut words = key.split_whitespace();
        match (words.next(), words.next()) {
            (Some("NAME"), None) => out.push((value, Texts::new(), Texts::new())),
            (Some(field @ ("NAME" | "DESC")), Some(lang)) => {
                if let Some((_, titles, descriptions)) = out.last_mut() {
                    let map = if field == "NAME" {
                        titles
                    } else {
                        descriptions
                    };
                    map.insert(lang.to_ascii_lowercase(), value);
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_gives_kind_and_aliases() {
        assert_eq!(
            parse_usage("black\nadult\nporn\n", "adult"),
            (Kind::Black, vec!["porn".into()])
        );
        assert_eq!(
            parse_usage("white\n", "liste_blanche"),
            (Kind::White, vec![])
        );
        assert_eq!(parse_usage("", "x"), (Kind::Black, vec![]));
        assert_eq!(
            parse_usage("black\nwhite\n", "webmail"),
            (Kind::Both, vec![])
        );
        assert_eq!(
            parse_usage("# no longer kept\nblack\n", "x"),
            (Kind::Black, vec![])
        );
    }

    #[test]
    fn global_usage_blocks() {
        let text = "# c\nNAME:\tadult\nDEFAULT_TYPE: black\nDESC EN: Adult sites.\nDESC FR: Sites adultes.\nNAME EN: Adult (X)\nNAME FR: Adulte (X)\n\nNAME: bank\nNAME FR: Banque\n";
        let parsed = parse_global_usage(text);
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].0, "adult");
        assert_eq!(parsed[0].1["fr"], "Adulte (X)");
        assert_eq!(parsed[0].2["en"], "Adult sites.");
        assert_eq!(parsed[1].1["fr"], "Banque");
    }
}
