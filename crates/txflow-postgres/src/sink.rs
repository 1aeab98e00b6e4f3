//! The sink: one database transaction per batch.

use std::time::Duration;

use tokio_postgres::Client;
use txflow_core::ports::BoxFuture;
use txflow_core::ports::WriteReport;
use txflow_core::resilience::OutagePolicy;
use txflow_core::{Batch, BoxError, OffsetStore, Sink};

use txflow_sql::ledger;

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
    /// Connects and applies pending migrations (the staging tables are
    /// made by the first batch that needs them). `version` is stored with
    /// every run. The first connection is not retried: a wrong URL, or no
    /// server at start, is reported at once. Later outages are waited out (without bound unless
    /// [`PostgresStore::with_max_outage`] says otherwise).
    pub async fn connect(url: &str, version: &'static str) -> Result<PostgresStore> {
        let target = Target::parse(url)?;
        let mut client = target.connect().await?;
        let applied = crate::migrate(&mut client).await?;
        if !applied.is_empty() {
            tracing::info!(?applied, "applied schema migrations");
        }
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
            let sibling = self.session().sibling(client);
            self.sessions.push(sibling);
        }
        Ok(self)
    }

    /// The txflow version stored with every run.
    pub(crate) fn version(&self) -> &'static str {
        self.version
    }

    pub(crate) fn session(&self) -> &Session {
        &self.sessions[0]
    }

    /// Whether the database is reachable, for `/health`.
    pub fn health(&self) -> Health {
        self.session().health()
    }

    /// Writes on a task of its own: encoding the COPY runs on another
    /// core than the caller, which reads and classifies the next batch
    /// meanwhile. A caller that stops waiting (a member abandoning its
    /// writes) aborts the task, so the transaction in flight rolls back as
    /// it did when the write ran on the caller's task.
    ///
    /// Several batches go in one transaction (see [`write_batches`]), on
    /// the connection of the first one's partition.
    pub(crate) async fn write(&self, batches: Vec<Batch>) -> Result<WriteReport> {
        let writer = batches
            .first()
            .and_then(|b| b.checkpoint.as_ref())
            .map_or(0, |c| {
                c.partition.unsigned_abs() as usize % self.sessions.len()
            });
        let batches = std::sync::Arc::new(batches);
        self.sessions[writer]
            .retrying("writing a batch", |mut client| {
                let batches = std::sync::Arc::clone(&batches);
                async move {
                    let task = AbortOnDrop(tokio::spawn(async move {
                        write_batches(&mut client, &batches).await
                    }));
                    match task.await {
                        Ok(written) => written,
                        Err(e) => match e.try_into_panic() {
                            Ok(panic) => std::panic::resume_unwind(panic),
                            // Only a runtime shutting down cancels it.
                            Err(_) => Err(Error::Cancelled {
                                what: "writing a batch",
                            }),
                        },
                    }
                }
            })
            .await
    }

    pub(crate) async fn offsets(&self, group: &str, topic: &str) -> Result<Vec<(i32, i64)>> {
        self.session()
            .retrying("reading stream offsets", |client| async move {
                let rows = client
                    .query(txflow_sql::offsets::STORED, &[&group, &topic])
                    .await
                    .map_err(Error::query("reading stream offsets"))?;
                Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
            })
            .await
    }
}

/// A spawned task that is aborted when whoever awaits it stops waiting.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> std::future::Future for AbortOnDrop<T> {
    type Output = std::result::Result<T, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Batches in one database transaction (one commit): the rows of all of
/// them (one COPY per table), then each one's classification failures,
/// review items and stream checkpoint, if any.
async fn write_batches(client: &mut Client, batches: &[Batch]) -> Result<WriteReport> {
    let mut tx = client
        .transaction()
        .await
        .map_err(Error::query("starting a batch"))?;
    let mut report = rows(&mut tx, batches).await?;
    for batch in batches {
        let marks = marks(&tx, batch).await?;
        report.unclassified += marks.unclassified;
        report.queued += marks.queued;
    }
    if let Some((run, c)) = Batch::run_additions(batches, &report) {
        let n = crate::ledger::n;
        tx.execute(
            ledger::ADD_BATCH,
            &[
                &n(c.read),
                &n(c.valid),
                &n(c.invalid),
                &n(c.classified),
                &n(c.unclassified),
                &n(c.written),
                &n(c.predictions_written),
                &run,
            ],
        )
        .await
        .map_err(Error::query("adding the batch to its run"))?;
    }
    tx.commit()
        .await
        .map_err(Error::query("committing a batch"))?;
    Ok(report)
}

/// What a batch writes besides its rows: its classification failures, its
/// review items and its stream checkpoint.
async fn marks(tx: &tokio_postgres::Transaction<'_>, batch: &Batch) -> Result<WriteReport> {
    let mut report = WriteReport::default();
    if !batch.unclassified.is_empty() {
        report.unclassified = copy::unclassified(tx, batch).await?;
    }
    report.queued = review::queue(tx, &batch.reviews, batch.lineage.run_id.as_str()).await?;
    if let Some(c) = &batch.checkpoint {
        tx.execute(
            "INSERT INTO stream_offsets
                 (consumer_group, topic, partition, next_offset, unpublished_from)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET
                 next_offset = GREATEST(stream_offsets.next_offset, EXCLUDED.next_offset),
                 unpublished_from = CASE
                     WHEN EXCLUDED.next_offset >= stream_offsets.next_offset
                     THEN EXCLUDED.unpublished_from
                     ELSE stream_offsets.unpublished_from END,
                 updated_at = now()",
            &[
                &c.group,
                &c.topic,
                &c.partition,
                &c.next_offset,
                &c.unpublished_from,
            ],
        )
        .await
        .map_err(Error::query("storing the stream offset"))?;
    }
    Ok(report)
}

/// The batch's transactions, predictions and rejected rows, each stored
/// once. First copied straight into the final tables inside a savepoint:
/// a batch that holds nothing already stored (the usual case) costs one
/// COPY per table. A unique violation (a rerun, a replay, a resumed
/// stream) rolls the savepoint back and the batch goes through the
/// staging tables, where `ON CONFLICT DO NOTHING` keeps what is stored.
async fn rows(tx: &mut tokio_postgres::Transaction<'_>, batches: &[Batch]) -> Result<WriteReport> {
    let direct = tx
        .savepoint("direct")
        .await
        .map_err(Error::query("starting a batch's COPY"))?;
    match copy_all(&direct, batches, copy::Tables::Final).await {
        Ok(report) => {
            direct
                .commit()
                .await
                .map_err(Error::query("releasing a batch's savepoint"))?;
            return Ok(report);
        }
        Err(e) if e.is_unique_violation() => {
            direct
                .rollback()
                .await
                .map_err(Error::query("rolling back a batch's COPY"))?;
        }
        Err(e) => return Err(e),
    }
    tx.batch_execute(copy::CREATE_STAGING)
        .await
        .map_err(Error::query("creating staging tables"))?;
    let mut report = copy_all(tx, batches, copy::Tables::Staging).await?;
    for (table, columns, key, what, added) in [
        (
            "transactions",
            TRANSACTION_COLUMNS,
            "id",
            "moving transactions out of staging",
            &mut report.transactions,
        ),
        (
            "predictions",
            PREDICTION_COLUMNS,
            "transaction_id, model_version",
            "moving predictions out of staging",
            &mut report.predictions,
        ),
        (
            "rejected_records",
            REJECTED_COLUMNS,
            "source_location, source_line",
            "moving rejected rows out of staging",
            &mut report.rejected,
        ),
    ] {
        if *added > 0 {
            *added = from_staging(tx, table, columns, key, what).await?;
        }
    }
    Ok(report)
}

/// Copies the batch's rows into `tables`; the report counts the rows
/// copied.
async fn copy_all(
    tx: &tokio_postgres::Transaction<'_>,
    batches: &[Batch],
    tables: copy::Tables,
) -> Result<WriteReport> {
    let mut report = WriteReport::default();
    if batches.iter().any(|b| !b.transactions.is_empty()) {
        report.transactions = copy::transactions(tx, batches, tables).await?;
    }
    if batches.iter().any(|b| !b.predictions.is_empty()) {
        report.predictions = copy::predictions(tx, batches, tables).await?;
    }
    if batches.iter().any(|b| !b.rejected.is_empty()) {
        report.rejected = copy::rejected(tx, batches, tables).await?;
    }
    Ok(report)
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

impl OffsetStore for PostgresStore {
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
        Box::pin(async move {
            let what = "marking predictions published";
            self.session()
                .retrying(what, |mut client| async move {
                    // One transaction: one commit to wait for, whatever the
                    // partitions.
                    let tx = client.transaction().await.map_err(Error::query(what))?;
                    for partition in partitions {
                        tx.execute(txflow_sql::offsets::PUBLISHED, &[&group, &topic, partition])
                            .await
                            .map_err(Error::query(what))?;
                    }
                    tx.commit().await.map_err(Error::query(what))
                })
                .await?;
            Ok(())
        })
    }
}

impl Sink for PostgresStore {
    fn write_batch(&self, batch: Batch) -> BoxFuture<'_, Result<WriteReport, BoxError>> {
        Box::pin(async move { Ok(self.write(vec![batch]).await?) })
    }

    fn write_batches(&self, batches: Vec<Batch>) -> BoxFuture<'_, Result<WriteReport, BoxError>> {
        Box::pin(async move { Ok(self.write(batches).await?) })
    }
}
