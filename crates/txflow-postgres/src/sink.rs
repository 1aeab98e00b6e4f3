//! The sink: one database transaction per batch.

use std::collections::HashSet;

use std::time::Duration;

use tokio_postgres::Client;
use txflow_core::ports::BoxFuture;
use txflow_core::ports::WriteReport;
use txflow_core::resilience::OutagePolicy;
use txflow_core::{
    Batch, BoxError, FileOutcome, OffsetStore, Rejections, RunId, RunLedger, RunRecord, RunSummary,
    Sink,
};

use crate::copy::{self, PREDICTION_COLUMNS, REJECTED_COLUMNS, TRANSACTION_COLUMNS};
use crate::error::{Error, Result};
use crate::review;
use crate::session::{Health, Session};
use crate::target::Target;

/// Writes batches to PostgreSQL over one connection (or one per writer, see
/// [`PostgresStore::with_writers`]), re-established when it breaks (see
/// [`PostgresStore::with_max_outage`]).
#[derive(Debug)]
pub struct PostgresStore {
    /// Everything but stream writes goes through the first.
    sessions: Vec<Session>,
    version: &'static str,
}

impl PostgresStore {
    /// Connects, applies pending migrations and prepares the session's
    /// staging tables. `version` is stored with every run. The first
    /// connection is not retried: a wrong URL, or no server at start, is
    /// reported at once. Later outages are waited out (without bound unless
    /// [`PostgresStore::with_max_outage`] says otherwise).
    pub async fn connect(url: &str, version: &'static str) -> Result<PostgresStore> {
        let target = Target::parse(url)?;
        let mut client = target.connect().await?;
        let applied = crate::migrate(&mut client).await?;
        if !applied.is_empty() {
            tracing::info!(?applied, "applied schema migrations");
        }
        client
            .batch_execute(copy::CREATE_STAGING)
            .await
            .map_err(Error::query("creating staging tables"))?;
        Ok(PostgresStore {
            sessions: vec![Session::new(
                target,
                client,
                OutagePolicy::waiting(Duration::MAX),
            )],
            version,
        })
    }

    /// How long a call may wait for the database to come back before it
    /// fails (default: without bound).
    pub fn with_max_outage(mut self, max_outage: Duration) -> PostgresStore {
        for session in &mut self.sessions {
            session.set_max_outage(max_outage);
        }
        self
    }

    /// Opens connections until there are `writers`: a stream's batches for
    /// different partitions are then written side by side, a partition's
    /// always on the same connection (`partition % writers`), so its
    /// offsets move in order.
    pub async fn with_writers(mut self, writers: usize) -> Result<PostgresStore> {
        while self.sessions.len() < writers {
            let client = self.session().target().connect().await?;
            client
                .batch_execute(copy::CREATE_STAGING)
                .await
                .map_err(Error::query("creating staging tables"))?;
            let sibling = self.session().sibling(client);
            self.sessions.push(sibling);
        }
        Ok(self)
    }

    pub(crate) fn session(&self) -> &Session {
        &self.sessions[0]
    }

    /// Whether the database is reachable, for `/health`.
    pub fn health(&self) -> Health {
        self.session().health()
    }

    pub(crate) async fn write(&self, batch: &Batch) -> Result<WriteReport> {
        let writer = batch.checkpoint.as_ref().map_or(0, |c| {
            c.partition.unsigned_abs() as usize % self.sessions.len()
        });
        self.sessions[writer]
            .retrying("writing a batch", |mut client| async move {
                write_batch(&mut client, batch).await
            })
            .await
    }

    async fn upsert_run(&self, run: &RunSummary) -> Result<()> {
        self.session()
            .retrying("recording the run", |mut client| async move {
                upsert_run(&mut client, run, self.version).await
            })
            .await
    }

    async fn upsert_file(&self, run: &RunId, file: &FileOutcome) -> Result<()> {
        self.session()
            .retrying("recording a file of the run", |mut client| async move {
                upsert_file(&mut client, run, file).await
            })
            .await
    }

    /// Which of `locations` some run has read to the end.
    pub async fn done_files(&self, locations: &[String]) -> Result<HashSet<String>> {
        self.session()
            .retrying("reading the files already done", |client| async move {
                let rows = client
                    .query(
                        "SELECT DISTINCT source_location FROM run_files
                         WHERE status = 'done' AND source_location = ANY($1)",
                        &[&locations],
                    )
                    .await
                    .map_err(Error::query("reading the files already done"))?;
                Ok(rows.iter().map(|r| r.get(0)).collect())
            })
            .await
    }

    pub(crate) async fn offsets(&self, group: &str, topic: &str) -> Result<Vec<(i32, i64)>> {
        self.session()
            .retrying("reading stream offsets", |client| async move {
                let rows = client
                    .query(
                        "SELECT partition, next_offset FROM stream_offsets
                         WHERE consumer_group = $1 AND topic = $2",
                        &[&group, &topic],
                    )
                    .await
                    .map_err(Error::query("reading stream offsets"))?;
                Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
            })
            .await
    }

    /// The runs whose id starts with `prefix`, oldest first.
    pub async fn runs(&self, prefix: &str) -> Result<Vec<RunRecord>> {
        let pattern = &format!("{}%", like_escape(prefix));
        self.session()
            .retrying("reading runs", |client| async move {
                let rows = client
                    .query(
                        "SELECT run_id, status, files, files_failed, rows_read, rows_invalid, rows_written, error
                         FROM runs WHERE run_id LIKE $1 ORDER BY started_at, run_id",
                        &[pattern],
                    )
                    .await
                    .map_err(Error::query("reading runs"))?;
                rows.iter()
                    .map(|r| {
                        let status: &str = r.get(1);
                        Ok(RunRecord {
                            run_id: r.get(0),
                            status: txflow_core::RunStatus::parse(status).ok_or_else(|| Error::Corrupt {
                                what: format!("run status {status:?}"),
                            })?,
                            files: r.get::<_, i64>(2) as u64,
                            files_failed: r.get::<_, i64>(3) as u64,
                            rows_read: r.get::<_, i64>(4) as u64,
                            rows_invalid: r.get::<_, i64>(5) as u64,
                            rows_written: r.get::<_, i64>(6) as u64,
                            error: r.get(7),
                        })
                    })
                    .collect()
            })
            .await
    }
}

/// One batch in one database transaction: rows through the staging tables,
/// then the stream checkpoint, if any.
async fn write_batch(client: &mut Client, batch: &Batch) -> Result<WriteReport> {
    {
        let tx = client
            .transaction()
            .await
            .map_err(Error::query("starting a batch"))?;
        let mut report = WriteReport::default();
        if !batch.transactions.is_empty() {
            copy::transactions(&tx, batch).await?;
            report.transactions = from_staging(
                &tx,
                "transactions",
                TRANSACTION_COLUMNS,
                "id",
                "moving transactions out of staging",
            )
            .await?;
        }
        if !batch.predictions.is_empty() {
            copy::predictions(&tx, batch).await?;
            report.predictions = from_staging(
                &tx,
                "predictions",
                PREDICTION_COLUMNS,
                "transaction_id, model_version",
                "moving predictions out of staging",
            )
            .await?;
        }
        if !batch.rejected.is_empty() {
            copy::rejected(&tx, batch).await?;
            report.rejected = from_staging(
                &tx,
                "rejected_records",
                REJECTED_COLUMNS,
                "source_location, source_line",
                "moving rejected rows out of staging",
            )
            .await?;
        }
        if !batch.unclassified.is_empty() {
            report.unclassified = copy::unclassified(&tx, batch).await?;
        }
        report.queued = review::queue(&tx, &batch.reviews, batch.lineage.run_id.as_str()).await?;
        if let Some(c) = &batch.checkpoint {
            tx.execute(
                "INSERT INTO stream_offsets (consumer_group, topic, partition, next_offset)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET
                     next_offset = GREATEST(stream_offsets.next_offset, EXCLUDED.next_offset),
                     updated_at = now()",
                &[&c.group, &c.topic, &c.partition, &c.next_offset],
            )
            .await
            .map_err(Error::query("storing the stream offset"))?;
        }
        tx.commit()
            .await
            .map_err(Error::query("committing a batch"))?;
        Ok(report)
    }
}

async fn upsert_run(client: &mut Client, run: &RunSummary, version: &str) -> Result<()> {
    {
        let c = &run.counts;
        let n = |v: u64| v as i64;
        client
            .execute(
                "INSERT INTO runs (run_id, kind, status, started_at, finished_at, files, files_failed, bytes, rows_read,
                     rows_valid, rows_invalid, rows_classified, rows_written, predictions_written, error,
                     txflow_version, rows_unclassified)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
                 ON CONFLICT (run_id) DO UPDATE SET kind = EXCLUDED.kind, status = EXCLUDED.status,
                     started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at,
                     files = EXCLUDED.files, files_failed = EXCLUDED.files_failed, bytes = EXCLUDED.bytes, rows_read = EXCLUDED.rows_read,
                     rows_valid = EXCLUDED.rows_valid, rows_invalid = EXCLUDED.rows_invalid,
                     rows_classified = EXCLUDED.rows_classified, rows_written = EXCLUDED.rows_written,
                     predictions_written = EXCLUDED.predictions_written, error = EXCLUDED.error,
                     txflow_version = EXCLUDED.txflow_version,
                     rows_unclassified = EXCLUDED.rows_unclassified",
                &[
                    &run.run_id.as_str(),
                    &run.kind.as_str(),
                    &run.status.as_str(),
                    &run.started_at,
                    &run.finished_at,
                    &n(c.files),
                    &n(c.files_failed),
                    &n(c.bytes),
                    &n(c.read),
                    &n(c.valid),
                    &n(c.invalid),
                    &n(c.classified),
                    &n(c.written),
                    &n(c.predictions_written),
                    &run.error,
                    &version,
                    &n(c.unclassified),
                ],
            )
            .await
            .map_err(Error::query("recording the run"))?;
        Ok(())
    }
}

async fn upsert_file(client: &mut Client, run: &RunId, file: &FileOutcome) -> Result<()> {
    {
        let c = &file.counts;
        let n = |v: u64| v as i64;
        client
            .execute(
                "INSERT INTO run_files (run_id, source_location, status, rows_read, rows_valid,
                     rows_invalid, rows_written, error)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (run_id, source_location) DO UPDATE SET status = EXCLUDED.status,
                     rows_read = EXCLUDED.rows_read, rows_valid = EXCLUDED.rows_valid,
                     rows_invalid = EXCLUDED.rows_invalid, rows_written = EXCLUDED.rows_written,
                     error = EXCLUDED.error, finished_at = now()",
                &[
                    &run.as_str(),
                    &file.location,
                    &file.status(),
                    &n(c.read),
                    &n(c.valid),
                    &n(c.invalid),
                    &n(c.written),
                    &file.error,
                ],
            )
            .await
            .map_err(Error::query("recording a file of the run"))?;
        Ok(())
    }
}

/// Moves the rows of `staging_<table>` into `table`, leaving alone those whose
/// `key` is already there (a rerun adds nothing); returns the rows added.
async fn from_staging(
    tx: &tokio_postgres::Transaction<'_>,
    table: &str,
    columns: &str,
    key: &str,
    what: &'static str,
) -> Result<u64> {
    tx.execute(
        &format!(
            "INSERT INTO {table} ({columns}) SELECT {columns} FROM staging_{table} \
             ON CONFLICT ({key}) DO NOTHING"
        ),
        &[],
    )
    .await
    .map_err(Error::query(what))
}

/// `prefix` for a LIKE pattern, its wildcards taken literally.
fn like_escape(prefix: &str) -> String {
    prefix
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

impl OffsetStore for PostgresStore {
    fn stored_offsets<'a>(
        &'a self,
        group: &'a str,
        topic: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(i32, i64)>, BoxError>> {
        Box::pin(async move { Ok(self.offsets(group, topic).await?) })
    }
}

impl Sink for PostgresStore {
    fn write_batch(&self, batch: Batch) -> BoxFuture<'_, Result<WriteReport, BoxError>> {
        Box::pin(async move { Ok(self.write(&batch).await?) })
    }
}

impl RunLedger for PostgresStore {
    fn start_run<'a>(&'a self, run: &'a RunSummary) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move { Ok(self.upsert_run(run).await?) })
    }

    fn record_file<'a>(
        &'a self,
        run: &'a RunId,
        file: &'a FileOutcome,
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move { Ok(self.upsert_file(run, file).await?) })
    }

    fn finish_run<'a>(&'a self, run: &'a RunSummary) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move { Ok(self.upsert_run(run).await?) })
    }

    fn done_files<'a>(
        &'a self,
        locations: &'a [String],
    ) -> BoxFuture<'a, Result<HashSet<String>, BoxError>> {
        Box::pin(async move { Ok(PostgresStore::done_files(self, locations).await?) })
    }

    fn runs<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<RunRecord>, BoxError>> {
        Box::pin(async move { Ok(PostgresStore::runs(self, prefix).await?) })
    }

    fn rejections<'a>(
        &'a self,
        run: Option<&'a str>,
        rule: Option<&'a str>,
        limit: i64,
    ) -> BoxFuture<'a, Result<Rejections, BoxError>> {
        Box::pin(async move { Ok(PostgresStore::rejections(self, run, rule, limit).await?) })
    }
}
