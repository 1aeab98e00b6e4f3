//! txflow's embedded SQLite adapter: a [`txflow_core::Sink`] writing the same
//! tables and views as the PostgreSQL one into a single file, so that
//! `txflow batch file.csv` works on a machine without a database server.
//!
//! SQLite is synchronous: each call runs on Tokio's blocking pool, one batch
//! per SQLite transaction, `INSERT OR IGNORE` for idempotence.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::SecondsFormat;
use rusqlite::{Connection, params};
use txflow_core::ports::BoxFuture;
use txflow_core::ports::WriteReport;
use txflow_core::{Batch, BoxError, OffsetStore, Sink};

mod ledger;
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
                // A 64 MiB page cache (the default is 2 MiB): a batch's
                // inserts into the random-key indexes then find their pages
                // in memory (1M rows in batches of 50,000: 21.2 s -> 16.4 s).
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;
                 PRAGMA cache_size = -65536;",
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

    async fn offsets(&self, group: &str, topic: &str) -> Result<Vec<(i32, i64)>> {
        let (group, topic) = (group.to_owned(), topic.to_owned());
        self.with_conn(move |conn, path| {
            values::all(conn, txflow_sql::offsets::STORED, [&group, &topic], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(query(path, "reading stream offsets"))
        })
        .await
    }
}

fn query(path: &Path, what: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    let path = path.to_owned();
    move |source| Error::Query { path, what, source }
}

/// Batches in one transaction (one commit).
fn write(conn: &mut Connection, path: &Path, batches: &[Batch]) -> Result<WriteReport> {
    let tx = begin_write(conn).map_err(query(path, "starting a batch"))?;
    // One time for the whole write, as PostgreSQL's now() (the
    // transaction's start), bound rather than left to the columns'
    // defaults: SQLite's 'now' is per statement, so rows of one batch got
    // times a millisecond apart (and read back out of their line order),
    // and formatting it for every row took about 4 % of a 1M-row load.
    let now = chrono::Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    let mut report = WriteReport::default();
    for batch in batches {
        report += write_rows(&tx, path, batch, &now)?;
    }
    if let Some((run, c)) = Batch::run_additions(batches, &report) {
        let n = ledger::n;
        tx.execute(
            txflow_sql::ledger::ADD_BATCH,
            params![
                n(c.read),
                n(c.valid),
                n(c.invalid),
                n(c.classified),
                n(c.unclassified),
                n(c.written),
                n(c.predictions_written),
                run
            ],
        )
        .map_err(query(path, "adding the batch to its run"))?;
    }
    tx.commit().map_err(query(path, "committing a batch"))?;
    Ok(report)
}

/// A batch's rows, classification failures, review items and checkpoint.
fn write_rows(
    tx: &rusqlite::Transaction<'_>,
    path: &Path,
    batch: &Batch,
    now: &str,
) -> Result<WriteReport> {
    let q = |what| query(path, what);
    let mut report = WriteReport::default();
    {
        let lineage = &batch.lineage;
        let batch_id = batch.batch_id.to_string();
        let mut insert = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO transactions (id, source_id, description, amount, \"timestamp\", merchant,
                     operation_type, side, processing_type, run_id, batch_id, source_location, source_line,
                     source_offset, ingested_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
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
                    now,
                ])
                .map_err(q("inserting a transaction"))? as u64;
        }
        let mut insert = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO predictions (transaction_id, model_version, category, confidence, run_id,
                     predicted_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
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
                    now,
                ])
                .map_err(q("inserting a prediction"))? as u64;
        }
        let mut insert = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO rejected_records (source_location, source_line, source_offset, rule,
                     field, message, raw, processing_type, run_id, rejected_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
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
                    now,
                ])
                .map_err(q("inserting a rejected row"))? as u64;
        }
        let mut insert = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO classification_failures (transaction_id, run_id, failure_class,
                     message, source_location, source_line, failed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
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
                    now,
                ])
                .map_err(q("inserting a classification failure"))?
                as u64;
        }
        report.queued = review::queue(tx, path, &batch.reviews, batch.lineage.run_id.as_str())?;
        if let Some(c) = &batch.checkpoint {
            tx.execute(
                "INSERT INTO stream_offsets
                     (consumer_group, topic, partition, next_offset, unpublished_from)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET
                     next_offset = max(next_offset, excluded.next_offset),
                     unpublished_from = CASE
                         WHEN excluded.next_offset >= next_offset THEN excluded.unpublished_from
                         ELSE unpublished_from END,
                     updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
                params![
                    c.group,
                    c.topic,
                    c.partition,
                    c.next_offset,
                    c.unpublished_from
                ],
            )
            .map_err(q("storing the stream offset"))?;
        }
    }
    Ok(report)
}

fn chrono_secs() -> SecondsFormat {
    SecondsFormat::AutoSi
}

impl OffsetStore for SqliteStore {
    fn stored_offsets<'a>(
        &'a self,
        group: &'a str,
        topic: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(i32, i64)>, BoxError>> {
        Box::pin(async move { Ok(self.offsets(group, topic).await?) })
    }

    fn published<'a>(
        &'a self,
        group: &'a str,
        topic: &'a str,
        partitions: &'a [i32],
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        let (group, topic, partitions) = (group.to_owned(), topic.to_owned(), partitions.to_vec());
        Box::pin(async move {
            self.with_conn(move |conn, path| {
                let what = "marking predictions published";
                let tx = conn.transaction().map_err(query(path, what))?;
                for partition in partitions {
                    tx.execute(
                        txflow_sql::offsets::PUBLISHED,
                        params![group, topic, partition],
                    )
                    .map_err(query(path, what))?;
                }
                tx.commit().map_err(query(path, what))
            })
            .await?;
            Ok(())
        })
    }
}

impl Sink for SqliteStore {
    fn write_batch(&self, batch: Batch) -> BoxFuture<'_, Result<WriteReport, BoxError>> {
        Box::pin(async move { Ok(self.with_conn(move |c, p| write(c, p, &[batch])).await?) })
    }

    fn write_batches(&self, batches: Vec<Batch>) -> BoxFuture<'_, Result<WriteReport, BoxError>> {
        Box::pin(async move { Ok(self.with_conn(move |c, p| write(c, p, &batches)).await?) })
    }
}
