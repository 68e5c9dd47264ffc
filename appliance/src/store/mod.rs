//! The box's one store: a SQLite file in WAL mode under `data_dir`.
//!
//! One writer thread owns the only write connection. Callers hand it closures; it runs
//! whatever is queued in one transaction (each closure in its own savepoint, so one
//! failing closure does not undo the others), commits with a full fsync, and only then
//! answers each caller. Group commit keeps many small writes cheap while every write a
//! caller saw succeed survives a kill -9 or a power cut. Readers use connections of
//! their own and never wait for the writer.

pub(crate) mod import;
pub(crate) mod migrations;
pub mod outbox;
pub mod school;
pub(crate) mod service;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::{Connection, OpenFlags, Transaction};
use tokio::sync::{Notify, mpsc, oneshot};

/// File name of the database inside `data_dir`.
pub const DB_FILE: &str = "cartable.db";

/// Most closures committed in one transaction.
const MAX_BATCH: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the database was written by a newer Cartable (schema {found}, this binary knows up to {supported}); install that version or newer, or restore a backup"
    )]
    TooNew { found: u32, supported: u32 },
    #[error("migration {version} ({name}) failed: {source}")]
    Migration {
        version: u32,
        name: &'static str,
        source: rusqlite::Error,
    },
    #[error("cannot open the database at {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("cannot create the data folder {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the store writer has stopped")]
    WriterGone,
    #[error("the write could not be committed: {0}")]
    Commit(String),
    #[error("a write panicked: {0}")]
    Panicked(String),
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// A CSV import refused (nothing of it was kept).
    #[error(transparent)]
    Import(#[from] import::ImportError),
}

/// The signed envelope of the desired state in force for `kind`, as the sync stored
/// it. Readers verify it again: the store is not a trusted channel.
pub(crate) fn desired_envelope(
    c: &Connection,
    kind: cartable_protocol::topics::DesiredKind,
) -> Result<Option<String>, StoreError> {
    use rusqlite::OptionalExtension;
    Ok(
        c.prepare_cached("SELECT envelope FROM desired WHERE kind = ?1")?
            .query_row([kind.as_str()], |r| r.get(0))
            .optional()?,
    )
}

/// A handler that meets a store error answers 503 (and the error is logged).
impl From<StoreError> for crate::base::http::HttpError {
    fn from(e: StoreError) -> Self {
        crate::base::http::HttpError::unavailable("store error", &e)
    }
}

/// Called once the transaction a job ran in is committed (or failed to commit).
type Finish = Box<dyn FnOnce(Result<(), &str>) + Send>;
type Job = Box<dyn FnOnce(&Transaction<'_>) -> Finish + Send>;

enum Msg {
    Job(Job),
    Stop,
}

/// A cheap handle to the store; clone it freely.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    jobs: mpsc::UnboundedSender<Msg>,
    writer: Mutex<Option<JoinHandle<()>>>,
    readers: Mutex<Vec<Connection>>,
    /// Woken once a transaction that appended to the outbox is committed.
    appended: Arc<Notify>,
}

impl Store {
    /// Opens (creating if needed) the store under `data_dir` and applies migrations.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join(DB_FILE);
        let mut conn = open_conn(&path, false)?;
        migrations::apply(&mut conn)?;
        let (jobs, rx) = mpsc::unbounded_channel();
        let appended = Arc::new(Notify::new());
        let woken = appended.clone();
        let writer = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(conn, rx, &woken))
            .map_err(|e| StoreError::Panicked(format!("cannot start the writer: {e}")))?;
        Ok(Store {
            inner: Arc::new(Inner {
                path,
                jobs,
                writer: Mutex::new(Some(writer)),
                readers: Mutex::new(Vec::new()),
                appended,
            }),
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` in the writer's transaction; returns once its effects are durable.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |t| {
            let ran = run_in_savepoint(t, f);
            Box::new(move |committed: Result<(), &str>| {
                let out = match (ran, committed) {
                    (Ok(value), Ok(())) => Ok(value),
                    (Ok(_), Err(why)) => Err(StoreError::Commit(why.to_string())),
                    (Err(e), _) => Err(e),
                };
                let _ = tx.send(out);
            })
        });
        self.inner
            .jobs
            .send(Msg::Job(job))
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Runs `f` on a reader connection, off the async threads.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.read_blocking(f))
            .await
            .map_err(|e| StoreError::Panicked(e.to_string()))?
    }

    /// Runs `f` on a reader connection on this thread.
    pub fn read_blocking<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self.inner.readers.lock().ok().and_then(|mut v| v.pop());
        let conn = match pooled {
            Some(c) => c,
            None => open_conn(&self.inner.path, true)?,
        };
        let result = f(&conn);
        if let Ok(mut pool) = self.inner.readers.lock()
            && pool.len() < 8
        {
            pool.push(conn);
        }
        result
    }

    /// Resolves once a write that appended to the outbox has been committed since the
    /// last call (a wake-up is kept if nobody was waiting): the sync drains on it
    /// instead of polling.
    pub async fn outbox_appended(&self) {
        self.inner.appended.notified().await
    }

    /// True while the writer thread is alive.
    pub fn writer_alive(&self) -> bool {
        self.inner
            .writer
            .lock()
            .map(|w| w.as_ref().is_some_and(|h| !h.is_finished()))
            .unwrap_or(false)
    }

    /// Stops the writer after everything queued before is committed, and waits for it.
    pub fn close(&self) {
        let handle = self.inner.writer.lock().ok().and_then(|mut w| w.take());
        let _ = self.inner.jobs.send(Msg::Stop);
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

fn run_in_savepoint<T>(
    t: &Transaction<'_>,
    f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    t.execute_batch("SAVEPOINT job")?;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(t)));
    let keep = matches!(outcome, Ok(Ok(_)));
    t.execute_batch(if keep {
        "RELEASE job"
    } else {
        "ROLLBACK TO job; RELEASE job"
    })?;
    match outcome {
        Ok(result) => result,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(StoreError::Panicked(msg))
        }
    }
}

fn writer_loop(mut conn: Connection, mut rx: mpsc::UnboundedReceiver<Msg>, appended: &Notify) {
    let mut stop = false;
    while !stop {
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Job(job) => batch.push(job),
                Msg::Stop => {
                    stop = true;
                    break;
                }
            }
            if batch.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            commit_batch(&mut conn, batch, appended);
        }
    }
    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
        tracing::warn!(error = %e, "final checkpoint failed");
    }
}

/// Runs a batch of jobs in one transaction and tells each the commit's outcome. The
/// drainer is woken before any caller hears of the commit, so a caller whose write
/// appended an event knows the drainer will see it.
fn commit_batch(conn: &mut Connection, batch: Vec<Job>, appended: &Notify) {
    let tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => {
            let why = e.to_string();
            tracing::error!(error = %why, "store cannot begin a transaction");
            // Dropping the jobs unblocks their callers with `WriterGone`.
            drop(batch);
            return;
        }
    };
    let finishers: Vec<Finish> = batch.into_iter().map(|job| job(&tx)).collect();
    let committed = tx.commit().map_err(|e| e.to_string());
    if let Err(why) = &committed {
        tracing::error!(error = %why, jobs = finishers.len(), "store commit failed");
    }
    if outbox::take_appended() && committed.is_ok() {
        appended.notify_one();
    }
    for finish in finishers {
        finish(committed.as_ref().map(|_| ()).map_err(String::as_str));
    }
}

fn open_conn(path: &Path, read_only: bool) -> Result<Connection, StoreError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let open = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open_with_flags(path, flags).map_err(open)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(open)?;
    if !read_only {
        // WAL lets readers run beside the writer; FULL makes each commit survive a power
        // cut, not only a crash of the process.
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(open)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(open(rusqlite::Error::InvalidParameterName(format!(
                "journal_mode is {mode}, WAL is required"
            ))));
        }
        conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
            .map_err(open)?;
    }
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(store: &Store) -> Vec<String> {
        store
            .read_blocking(|c| {
                let mut st = c.prepare(
                    "SELECT type || ' ' || name || ' ' || coalesce(sql, '') FROM sqlite_master ORDER BY type, name",
                )?;
                let rows = st.query_map([], |r| r.get::<_, String>(0))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .unwrap()
    }

    #[test]
    fn fresh_and_reopened_databases_reach_the_same_schema() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let fresh = Store::open(a.path()).unwrap();
        let first = Store::open(b.path()).unwrap();
        first.close();
        let reopened = Store::open(b.path()).unwrap();
        assert_eq!(schema(&fresh), schema(&reopened));
        assert!(schema(&fresh).iter().any(|s| s.contains("pupils")));
        let version: u32 = reopened
            .read_blocking(|c| Ok(c.query_row("PRAGMA user_version", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(version, migrations::latest());
    }

    #[test]
    fn a_newer_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        Store::open(dir.path()).unwrap().close();
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.pragma_update(None, "user_version", migrations::latest() + 1)
            .unwrap();
        drop(conn);
        match Store::open(dir.path()) {
            Err(StoreError::TooNew { found, supported }) => {
                assert_eq!(found, migrations::latest() + 1);
                assert_eq!(supported, migrations::latest());
            }
            Err(other) => panic!("wrong error: {other}"),
            Ok(_) => panic!("a newer database was opened"),
        }
    }

    #[tokio::test]
    async fn a_failing_write_does_not_undo_its_neighbours() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut handles = Vec::new();
        for i in 0..50 {
            let s = store.clone();
            handles.push(tokio::spawn(async move {
                s.write(move |t| {
                    if i % 10 == 3 {
                        t.execute("INSERT INTO nope VALUES (1)", [])?;
                    }
                    t.execute(
                        "INSERT INTO meta(key, value) VALUES (?1, 'x')",
                        [format!("k{i}")],
                    )?;
                    Ok(())
                })
                .await
            }));
        }
        let mut failed = 0;
        for h in handles {
            if h.await.unwrap().is_err() {
                failed += 1;
            }
        }
        assert_eq!(failed, 5);
        let count: i64 = store
            .read(|c| {
                Ok(
                    c.query_row("SELECT count(*) FROM meta WHERE key LIKE 'k%'", [], |r| {
                        r.get(0)
                    })?,
                )
            })
            .await
            .unwrap();
        assert_eq!(count, 45);
        let panicked = store
            .write(|_| -> Result<(), StoreError> { panic!("boom") })
            .await;
        assert!(matches!(panicked, Err(StoreError::Panicked(_))));
        assert!(store.writer_alive());
        store.close();
        assert!(!store.writer_alive());
    }
}
