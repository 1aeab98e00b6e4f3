//! txflow's embedded SQLite adapter: a [`txflow_core::Sink`] writing the same
//! tables and views as the PostgreSQL one into a single file, so that
//! `txflow batch file.csv` works on a machine without a database server.
//!
//! SQLite is synchronous: each call runs on Tokio's blocking pool, one batch
//! per SQLite transaction, `INSERT OR IGNORE` for idempotence.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, params};
use txflow_core::ports::BoxFuture;
use txflow_core::ports::WriteReport;
use txflow_core::{
    Batch, BoxError, FileOutcome, OffsetStore, Rejections, RunId, RunLedger, RunRecord, RunSummary,
    Sink, StoredRejection,
};

mod migrate;
mod registry;
mod replays;
mod review;
mod values;

pub use migrate::{HISTORY_TABLE, migrations};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("opening SQLite database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "the SQLite database {path} is at schema version {found}, newer than this txflow knows ({known}); upgrade txflow"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i32,
        known: i32,
    },
    #[error("SQLite database {path}: {what}: {source}")]
    Query {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("SQLite database {path}: migrating the schema: {cause}")]
    Migration {
        path: PathBuf,
        cause: refinery::Error,
    },
    #[error("the SQLite worker thread stopped: {0}")]
    Worker(String),
}

/// How long a statement waits for another connection's lock on the file.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Starts a writing transaction with `BEGIN IMMEDIATE`: the write lock is
/// taken (waiting up to the busy timeout) before anything is read, so that a
/// transaction never has to upgrade a read lock, which SQLite refuses at once
/// with "database is locked" when another writer went first.
fn begin_write(conn: &mut Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
}

/// A sink over one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
    version: &'static str,
}

impl SqliteStore {
    /// Opens (or creates) the database and applies pending migrations.
    pub fn open(path: &Path, version: &'static str) -> Result<SqliteStore> {
        let open_err = |source| Error::Open {
            path: path.to_owned(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        // First of all: several runs may open the same file at once (parallel
        // Airflow tasks), and every statement below may have to wait for
        // another's lock, switching to WAL included.
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        // Switching to WAL can answer "locked" without waiting while another
        // connection creates the file: that one statement is retried.
        let started = std::time::Instant::now();
        loop {
            match conn.execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
            ) {
                Ok(()) => break,
                Err(e)
                    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                        && started.elapsed() < BUSY_TIMEOUT =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(open_err(e)),
            }
        }
        migrate::migrate(&mut conn, path)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_owned(),
            version,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the connection, on the blocking pool.
    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, &Path) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn = Arc::clone(&self.conn);
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(|e| Error::Worker(e.to_string()))?;
            f(&mut guard, &path)
        })
        .await
        .map_err(|e| Error::Worker(e.to_string()))?
    }

    /// Which of `locations` some run has read to the end.
    pub async fn done_files(&self, locations: &[String]) -> Result<HashSet<String>> {
        let locations = locations.to_vec();
        self.with_conn(move |conn, path| {
            let mut select = conn
                .prepare_cached(
                    "SELECT 1 FROM run_files WHERE status = 'done' AND source_location = ?1 LIMIT 1",
                )
                .map_err(query(path, "preparing the done-files query"))?;
            let mut done = HashSet::new();
            for location in locations {
                let found = select
                    .exists([&location])
                    .map_err(query(path, "reading the files already done"))?;
                if found {
                    done.insert(location);
                }
            }
            Ok(done)
        })
        .await
    }

    async fn offsets(&self, group: &str, topic: &str) -> Result<Vec<(i32, i64)>> {
        let (group, topic) = (group.to_owned(), topic.to_owned());
        self.with_conn(move |conn, path| {
            values::all(
                conn,
                "SELECT partition, next_offset FROM stream_offsets
                 WHERE consumer_group = ?1 AND topic = ?2",
                [&group, &topic],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(query(path, "reading stream offsets"))
        })
        .await
    }

    /// The runs whose id starts with `prefix`, oldest first.
    pub async fn runs(&self, prefix: &str) -> Result<Vec<RunRecord>> {
        let prefix = prefix.to_owned();
        self.with_conn(move |conn, path| {
            values::all(
                conn,
                "SELECT run_id, status, files, files_failed, rows_read, rows_invalid, rows_written, error
                 FROM runs WHERE substr(run_id, 1, length(?1)) = ?1 ORDER BY started_at, run_id",
                [&prefix],
                |r| {
                    Ok(RunRecord {
                        run_id: r.get(0)?,
                        status: values::run_status(r, 1)?,
                        files: r.get::<_, i64>(2)? as u64,
                        files_failed: r.get::<_, i64>(3)? as u64,
                        rows_read: r.get::<_, i64>(4)? as u64,
                        rows_invalid: r.get::<_, i64>(5)? as u64,
                        rows_written: r.get::<_, i64>(6)? as u64,
                        error: r.get(7)?,
                    })
                },
            )
            .map_err(query(path, "reading runs"))
        })
        .await
    }

    /// Rejected batch rows (`rejected_records`) of a run and rule (each
    /// optional): counts by rule and source, and the first `limit` rows.
    pub async fn rejections(
        &self,
        run: Option<&str>,
        rule: Option<&str>,
        limit: i64,
    ) -> Result<Rejections> {
        let (run, rule) = (run.map(str::to_owned), rule.map(str::to_owned));
        self.with_conn(move |conn, path| {
            let filter = "(?1 IS NULL OR run_id = ?1) AND (?2 IS NULL OR rule = ?2)";
            let counts = values::all(
                conn,
                &format!(
                    "SELECT rule, source_location, count(*) FROM rejected_records
                     WHERE {filter} GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2"
                ),
                params![run, rule],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(query(path, "reading rejected rows"))?;
            let rows = values::all(
                conn,
                &format!(
                    "SELECT source_location, source_line, rule, field, message, raw, run_id
                     FROM rejected_records WHERE {filter}
                     ORDER BY rejected_at, source_location, source_line LIMIT ?3"
                ),
                params![run, rule, limit],
                |r| {
                    Ok(StoredRejection {
                        source_location: r.get(0)?,
                        source_line: r.get(1)?,
                        rule: r.get(2)?,
                        field: r.get(3)?,
                        message: r.get(4)?,
                        raw: r.get(5)?,
                        run_id: r.get(6)?,
                    })
                },
            )
            .map_err(query(path, "reading rejected rows"))?;
            Ok(Rejections { counts, rows })
        })
        .await
    }
}

fn upsert_file(conn: &mut Connection, path: &Path, run: &RunId, file: &FileOutcome) -> Result<()> {
    let c = &file.counts;
    let n = |v: u64| v as i64;
    conn.execute(
        "INSERT INTO run_files (run_id, source_location, status, rows_read, rows_valid, rows_invalid,
             rows_written, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (run_id, source_location) DO UPDATE SET status = excluded.status,
             rows_read = excluded.rows_read, rows_valid = excluded.rows_valid,
             rows_invalid = excluded.rows_invalid, rows_written = excluded.rows_written,
             error = excluded.error, finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
        params![
            run.as_str(),
            file.location,
            file.status(),
            n(c.read),
            n(c.valid),
            n(c.invalid),
            n(c.written),
            file.error,
        ],
    )
    .map_err(query(path, "recording a file of the run"))?;
    Ok(())
}

fn query(path: &Path, what: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    let path = path.to_owned();
    move |source| Error::Query { path, what, source }
}

fn write(conn: &mut Connection, path: &Path, batch: &Batch) -> Result<WriteReport> {
    let q = |what| query(path, what);
    let tx = begin_write(conn).map_err(q("starting a batch"))?;
    let mut report = WriteReport::default();
    {
        let lineage = &batch.lineage;
        let batch_id = batch.batch_id.to_string();
        let mut insert = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO transactions (id, source_id, description, amount, \"timestamp\", merchant,
                     operation_type, side, processing_type, run_id, batch_id, source_location, source_line,
                     source_offset)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )
            .map_err(q("preparing the transaction insert"))?;
        for (t, position) in batch.transactions.iter().zip(&batch.positions) {
            report.transactions += insert
                .execute(params![
                    t.id().to_string(),
                    t.source_id(),
                    t.description(),
                    t.amount().to_string(),
                    t.timestamp().to_rfc3339_opts(chrono_secs(), true),
                    t.merchant(),
                    t.operation_type(),
                    t.side().as_str(),
                    lineage.processing_type.as_str(),
                    lineage.run_id.as_str(),
                    batch_id,
                    &*lineage.source,
                    position.line as i64,
                    position.offset as i64,
                ])
                .map_err(q("inserting a transaction"))? as u64;
        }
        let mut insert = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO predictions (transaction_id, model_version, category, confidence, run_id)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(q("preparing the prediction insert"))?;
        for p in &batch.predictions {
            report.predictions += insert
                .execute(params![
                    p.transaction_id.to_string(),
                    p.model_version,
                    p.category.as_str(),
                    p.confidence,
                    lineage.run_id.as_str(),
                ])
                .map_err(q("inserting a prediction"))? as u64;
        }
        let mut insert = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO rejected_records (source_location, source_line, source_offset, rule,
                     field, message, raw, processing_type, run_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .map_err(q("preparing the rejected-row insert"))?;
        for r in &batch.rejected {
            report.rejected += insert
                .execute(params![
                    &*r.source,
                    r.position.line as i64,
                    r.position.offset as i64,
                    r.rule.name(),
                    r.field.map(|f| f.name()),
                    r.message,
                    r.raw,
                    lineage.processing_type.as_str(),
                    lineage.run_id.as_str(),
                ])
                .map_err(q("inserting a rejected row"))? as u64;
        }
        let mut insert = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO classification_failures (transaction_id, run_id, failure_class,
                     message, source_location, source_line)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .map_err(q("preparing the classification-failure insert"))?;
        for u in &batch.unclassified {
            report.unclassified += insert
                .execute(params![
                    u.transaction_id.to_string(),
                    lineage.run_id.as_str(),
                    u.failure.class.as_str(),
                    u.failure.message,
                    &*lineage.source,
                    u.position.line as i64,
                ])
                .map_err(q("inserting a classification failure"))?
                as u64;
        }
        report.queued = review::queue(&tx, path, &batch.reviews, batch.lineage.run_id.as_str())?;
        if let Some(c) = &batch.checkpoint {
            tx.execute(
                "INSERT INTO stream_offsets (consumer_group, topic, partition, next_offset)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET
                     next_offset = max(next_offset, excluded.next_offset),
                     updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
                params![c.group, c.topic, c.partition, c.next_offset],
            )
            .map_err(q("storing the stream offset"))?;
        }
    }
    tx.commit().map_err(q("committing a batch"))?;
    Ok(report)
}

fn chrono_secs() -> SecondsFormat {
    SecondsFormat::AutoSi
}

fn upsert_run(conn: &mut Connection, path: &Path, run: &RunSummary, version: &str) -> Result<()> {
    let c = &run.counts;
    let n = |v: u64| v as i64;
    let ts = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono_secs(), true);
    conn.execute(
        "INSERT INTO runs (run_id, kind, status, started_at, finished_at, files, files_failed, bytes, rows_read, rows_valid,
             rows_invalid, rows_classified, rows_written, predictions_written, error, txflow_version, rows_unclassified)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
         ON CONFLICT (run_id) DO UPDATE SET kind = excluded.kind, status = excluded.status,
             started_at = excluded.started_at, finished_at = excluded.finished_at, files = excluded.files,
             files_failed = excluded.files_failed,
             bytes = excluded.bytes, rows_read = excluded.rows_read, rows_valid = excluded.rows_valid,
             rows_invalid = excluded.rows_invalid, rows_classified = excluded.rows_classified,
             rows_written = excluded.rows_written, predictions_written = excluded.predictions_written,
             error = excluded.error, txflow_version = excluded.txflow_version,
             rows_unclassified = excluded.rows_unclassified",
        params![
            run.run_id.as_str(),
            run.kind.as_str(),
            run.status.as_str(),
            ts(run.started_at),
            run.finished_at.map(ts),
            n(c.files),
            n(c.files_failed),
            n(c.bytes),
            n(c.read),
            n(c.valid),
            n(c.invalid),
            n(c.classified),
            n(c.written),
            n(c.predictions_written),
            run.error,
            version,
            n(c.unclassified),
        ],
    )
    .map_err(query(path, "recording the run"))?;
    Ok(())
}

impl OffsetStore for SqliteStore {
    fn stored_offsets<'a>(
        &'a self,
        group: &'a str,
        topic: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(i32, i64)>, BoxError>> {
        Box::pin(async move { Ok(self.offsets(group, topic).await?) })
    }
}

impl Sink for SqliteStore {
    fn write_batch(&self, batch: Batch) -> BoxFuture<'_, Result<WriteReport, BoxError>> {
        Box::pin(async move { Ok(self.with_conn(move |c, p| write(c, p, &batch)).await?) })
    }
}

impl RunLedger for SqliteStore {
    fn start_run<'a>(&'a self, run: &'a RunSummary) -> BoxFuture<'a, Result<(), BoxError>> {
        let (run, version) = (run.clone(), self.version);
        Box::pin(async move {
            Ok(self
                .with_conn(move |c, p| upsert_run(c, p, &run, version))
                .await?)
        })
    }

    fn record_file<'a>(
        &'a self,
        run: &'a RunId,
        file: &'a FileOutcome,
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        let (run, file) = (run.clone(), file.clone());
        Box::pin(async move {
            Ok(self
                .with_conn(move |c, p| upsert_file(c, p, &run, &file))
                .await?)
        })
    }

    fn finish_run<'a>(&'a self, run: &'a RunSummary) -> BoxFuture<'a, Result<(), BoxError>> {
        self.start_run(run)
    }

    fn done_files<'a>(
        &'a self,
        locations: &'a [String],
    ) -> BoxFuture<'a, Result<HashSet<String>, BoxError>> {
        Box::pin(async move { Ok(SqliteStore::done_files(self, locations).await?) })
    }

    fn runs<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<RunRecord>, BoxError>> {
        Box::pin(async move { Ok(SqliteStore::runs(self, prefix).await?) })
    }

    fn rejections<'a>(
        &'a self,
        run: Option<&'a str>,
        rule: Option<&'a str>,
        limit: i64,
    ) -> BoxFuture<'a, Result<Rejections, BoxError>> {
        Box::pin(async move { Ok(SqliteStore::rejections(self, run, rule, limit).await?) })
    }
}
