//! What the update agent keeps in the store: the release it is taking and where it
//! is, the chunks in place, the versions never to take again, and the release
//! installed last. Every SQL statement about updates is here.

use cartable_protocol::events::EventBody;
use cartable_protocol::release::Release;
use cartable_protocol::status::UpdateState;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::store::{StoreError, outbox};

/// The release being taken.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Target {
    pub(crate) release: Release,
    pub(crate) state: UpdateState,
    pub(crate) detail: String,
    /// The firmware running when the release was taken (what a rollback goes to).
    pub(crate) from_version: String,
    pub(crate) bytes_local: u64,
    /// The boot the reboot was asked from (empty until then).
    pub(crate) boot_id: String,
}

fn bad(e: serde_json::Error) -> StoreError {
    StoreError::Commit(format!("an update manifest in the store: {e}"))
}

pub(crate) fn target(c: &Connection) -> Result<Option<Target>, StoreError> {
    let row = c
        .prepare_cached(
            "SELECT manifest, state, detail, from_version, bytes_local, boot_id
             FROM update_target WHERE id = 1",
        )?
        .query_row([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, String>(5)?,
            ))
        })
        .optional()?;
    let Some((manifest, state, detail, from_version, bytes_local, boot_id)) = row else {
        return Ok(None);
    };
    Ok(Some(Target {
        release: serde_json::from_str(&manifest).map_err(bad)?,
        state: UpdateState::parse(&state).unwrap_or(UpdateState::Idle),
        detail,
        from_version,
        bytes_local: bytes_local.max(0) as u64,
        boot_id,
    }))
}

/// Takes a new release: its chunks start from none.
pub(crate) fn start(tx: &Transaction<'_>, t: &Target, at: i64) -> Result<(), StoreError> {
    tx.execute("DELETE FROM update_chunks", [])?;
    let manifest = serde_json::to_string(&t.release).map_err(bad)?;
    tx.prepare_cached(
        "INSERT INTO update_target(id, version, manifest, state, detail, from_version,
           bytes_local, changed_at, boot_id)
         VALUES (1, ?1, ?2, ?3, ?4, ?5, 0, ?6, '')
         ON CONFLICT(id) DO UPDATE SET version = excluded.version,
           manifest = excluded.manifest, state = excluded.state, detail = excluded.detail,
           from_version = excluded.from_version, bytes_local = 0,
           changed_at = excluded.changed_at, boot_id = ''",
    )?
    .execute(params![
        t.release.version,
        manifest,
        t.state.as_str(),
        t.detail,
        t.from_version,
        at
    ])?;
    Ok(())
}

pub(crate) fn set_state(
    tx: &Transaction<'_>,
    state: UpdateState,
    detail: &str,
    at: i64,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "UPDATE update_target SET state = ?1, detail = ?2, changed_at = ?3 WHERE id = 1",
    )?
    .execute(params![state.as_str(), detail, at])?;
    Ok(())
}

/// Records the boot a reboot is asked from.
pub(crate) fn set_boot_id(tx: &Transaction<'_>, boot_id: &str) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE update_target SET boot_id = ?1 WHERE id = 1")?
        .execute([boot_id])?;
    Ok(())
}

/// Chunks recorded in place.
pub(crate) fn chunks_done(c: &Connection) -> Result<Vec<u32>, StoreError> {
    let mut stmt = c.prepare_cached("SELECT idx FROM update_chunks ORDER BY idx")?;
    let rows = stmt.query_map([], |r| r.get::<_, i64>(0))?;
    let mut done = Vec::new();
    for r in rows {
        done.push(r? as u32);
    }
    Ok(done)
}

/// Records chunks whose bytes are synced in the bundle file.
pub(crate) fn record_chunks(
    tx: &Transaction<'_>,
    idx: &[u32],
    local_bytes: u64,
) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached("INSERT OR IGNORE INTO update_chunks(idx) VALUES (?1)")?;
    for i in idx {
        stmt.execute([i64::from(*i)])?;
    }
    if local_bytes > 0 {
        tx.prepare_cached("UPDATE update_target SET bytes_local = bytes_local + ?1 WHERE id = 1")?
            .execute([local_bytes as i64])?;
    }
    Ok(())
}

/// Forgets chunks found wrong in the bundle file (they are fetched again).
pub(crate) fn forget_chunks(tx: &Transaction<'_>, idx: &[u32]) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached("DELETE FROM update_chunks WHERE idx = ?1")?;
    for i in idx {
        stmt.execute([i64::from(*i)])?;
    }
    Ok(())
}

/// Forgets every chunk of the target (its bundle file was made anew).
pub(crate) fn forget_all_chunks(tx: &Transaction<'_>) -> Result<(), StoreError> {
    tx.execute("DELETE FROM update_chunks", [])?;
    tx.execute("UPDATE update_target SET bytes_local = 0 WHERE id = 1", [])?;
    Ok(())
}

/// Why `version` is never taken again, if it is not.
pub(crate) fn never(c: &Connection, version: &str) -> Result<Option<String>, StoreError> {
    Ok(
        c.prepare_cached("SELECT reason FROM update_never WHERE version = ?1")?
            .query_row([version], |r| r.get(0))
            .optional()?,
    )
}

pub(crate) fn add_never(
    tx: &Transaction<'_>,
    version: &str,
    reason: &str,
    at: i64,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO update_never(version, reason, at) VALUES (?1, ?2, ?3)
         ON CONFLICT(version) DO NOTHING",
    )?
    .execute(params![version, reason, at])?;
    Ok(())
}

/// The release installed last, whose bundle is kept.
pub(crate) fn installed(c: &Connection) -> Result<Option<Release>, StoreError> {
    let manifest: Option<String> = c
        .prepare_cached("SELECT manifest FROM update_installed WHERE id = 1")?
        .query_row([], |r| r.get(0))
        .optional()?;
    manifest
        .map(|m| serde_json::from_str(&m).map_err(bad))
        .transpose()
}

pub(crate) fn set_installed(tx: &Transaction<'_>, release: &Release) -> Result<(), StoreError> {
    let manifest = serde_json::to_string(release).map_err(bad)?;
    tx.prepare_cached(
        "INSERT INTO update_installed(id, version, manifest) VALUES (1, ?1, ?2)
         ON CONFLICT(id) DO UPDATE SET version = excluded.version,
           manifest = excluded.manifest",
    )?
    .execute(params![release.version, manifest])?;
    Ok(())
}

/// The release event for the outbox.
pub(crate) fn report(tx: &Transaction<'_>, at: i64, event: &EventBody) -> Result<(), StoreError> {
    outbox::append(tx, at, event)?;
    Ok(())
}
