//! The cache's index in SQLite: each object's size and last access (for the LRU), and
//! which catalogue items refer to it (a pinned reference protects it). The files are
//! the truth for what exists; [`reconcile`] makes the index agree with them at start.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::objects::{Objects, Sha256};
use crate::store::StoreError;

/// An object the index knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    pub sha256: String,
    pub size: u64,
    pub last_access: i64,
}

/// Makes the index list exactly the objects on disk: rows without a file go, files
/// without a row come in (a crash between the rename and the insert); returns the
/// bytes held.
pub(crate) fn reconcile(
    tx: &Transaction<'_>,
    objects: &Objects,
    now: i64,
) -> Result<u64, StoreError> {
    let on_disk = objects.list();
    let known: Vec<String> = tx
        .prepare("SELECT sha256 FROM cache_objects")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for sha in &known {
        if !on_disk.iter().any(|(s, _)| s.as_str() == sha) {
            tx.execute("DELETE FROM cache_objects WHERE sha256 = ?1", [sha])?;
        }
    }
    let mut total = 0;
    for (sha, size) in &on_disk {
        tx.execute(
            "INSERT INTO cache_objects(sha256, size, stored_at, last_access) VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT(sha256) DO UPDATE SET size = excluded.size",
            params![sha.as_str(), *size as i64, now],
        )?;
        total += size;
    }
    Ok(total)
}

pub(crate) fn insert(
    tx: &Transaction<'_>,
    sha: &Sha256,
    size: u64,
    now: i64,
    source: Option<&str>,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO cache_objects(sha256, size, stored_at, last_access, source)
         VALUES (?1, ?2, ?3, ?3, ?4)
         ON CONFLICT(sha256) DO UPDATE SET size = excluded.size, last_access = excluded.last_access",
        params![sha.as_str(), size as i64, now, source],
    )?;
    Ok(())
}

pub(crate) fn touch(tx: &Transaction<'_>, shas: &[String], now: i64) -> Result<(), StoreError> {
    let mut stmt =
        tx.prepare_cached("UPDATE cache_objects SET last_access = ?2 WHERE sha256 = ?1")?;
    for sha in shas {
        stmt.execute(params![sha, now])?;
    }
    Ok(())
}

pub(crate) fn remove(tx: &Transaction<'_>, sha: &str) -> Result<(), StoreError> {
    tx.execute("DELETE FROM cache_objects WHERE sha256 = ?1", [sha])?;
    tx.execute("DELETE FROM cache_urls WHERE sha256 = ?1", [sha])?;
    Ok(())
}

/// Rewrites the catalogue's references (item, version, object, pinned).
pub(crate) fn set_refs(
    tx: &Transaction<'_>,
    refs: &[(String, String, String, bool)],
) -> Result<(), StoreError> {
    tx.execute("DELETE FROM cache_refs", [])?;
    let mut stmt = tx.prepare(
        "INSERT OR REPLACE INTO cache_refs(item, version, sha256, pinned) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (item, version, sha, pinned) in refs {
        stmt.execute(params![item, version, sha, *pinned])?;
    }
    Ok(())
}

/// Objects no pinned reference protects, least recently used first.
pub(crate) fn evictable(conn: &Connection) -> Result<Vec<Row>, StoreError> {
    let rows = conn
        .prepare(
            "SELECT o.sha256, o.size, o.last_access FROM cache_objects o
             WHERE NOT EXISTS (SELECT 1 FROM cache_refs r WHERE r.sha256 = o.sha256 AND r.pinned = 1)
             ORDER BY o.last_access, o.stored_at",
        )?
        .query_map([], |r| {
            Ok(Row {
                sha256: r.get(0)?,
                size: r.get::<_, i64>(1)? as u64,
                last_access: r.get(2)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// The object stored for a redirect-mode URL key, and its content type.
pub(crate) fn url(
    conn: &Connection,
    key: &str,
) -> Result<Option<(String, Option<String>)>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT sha256, content_type FROM cache_urls WHERE key = ?1",
            [key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

pub(crate) fn set_url(
    tx: &Transaction<'_>,
    key: &str,
    sha: &Sha256,
    content_type: Option<&str>,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT OR REPLACE INTO cache_urls(key, sha256, content_type) VALUES (?1, ?2, ?3)",
        params![key, sha.as_str(), content_type],
    )?;
    Ok(())
}
