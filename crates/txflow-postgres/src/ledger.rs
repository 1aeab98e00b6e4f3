//! The run ledger in PostgreSQL: the core's [`RunLedger`] over `runs`,
//! `run_files` and `rejected_records`, with the SQL both engines share.

use std::collections::HashSet;

use txflow_core::ports::BoxFuture;
use txflow_core::{
    BoxError, FileOutcome, RejectionQuery, Rejections, RunId, RunLedger, RunRecord, RunStatus,
    RunSummary, StoredRejection,
};
use txflow_sql::ledger;

use crate::error::Error;
use crate::sink::PostgresStore;

/// A count as PostgreSQL's `bigint`.
pub(crate) fn n(v: u64) -> i64 {
    v as i64
}

impl PostgresStore {
    async fn upsert_run(&self, run: &RunSummary) -> crate::Result<()> {
        let c = &run.counts;
        self.session()
            .retrying("recording the run", |client| async move {
                client
                    .execute(
                        ledger::UPSERT_RUN,
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
                            &self.version(),
                            &n(c.unclassified),
                        ],
                    )
                    .await
                    .map_err(Error::query("recording the run"))?;
                Ok(())
            })
            .await
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
        let c = &file.counts;
        let recorded =
            self.session()
                .retrying("recording a file of the run", move |client| async move {
                    client
                        .execute(
                            ledger::UPSERT_FILE,
                            &[
                                &run.as_str(),
                                &file.location,
                                &file.status(),
                                &n(c.read),
                                &n(c.valid),
                                &n(c.invalid),
                                &n(c.written),
                                &file.error,
                                &chrono::Utc::now(),
                            ],
                        )
                        .await
                        .map_err(Error::query("recording a file of the run"))?;
                    Ok(())
                });
        Box::pin(async move { Ok(recorded.await?) })
    }

    fn finish_run<'a>(&'a self, run: &'a RunSummary) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move { Ok(self.upsert_run(run).await?) })
    }

    /// Which of `locations` some run has read to the end, in one query.
    fn done_files<'a>(
        &'a self,
        locations: &'a [String],
    ) -> BoxFuture<'a, Result<HashSet<String>, BoxError>> {
        let done =
            self.session()
                .retrying("reading the files already done", move |client| async move {
                    let rows = client
                        .query(
                            "SELECT DISTINCT source_location FROM run_files
                         WHERE status = 'done' AND source_location = ANY($1)",
                            &[&locations],
                        )
                        .await
                        .map_err(Error::query("reading the files already done"))?;
                    Ok(rows.iter().map(|r| r.get(0)).collect())
                });
        Box::pin(async move { Ok(done.await?) })
    }

    fn runs<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<RunRecord>, BoxError>> {
        let runs = self
            .session()
            .retrying("reading runs", move |client| async move {
                let rows = client
                    .query(ledger::RUNS_BY_PREFIX, &[&prefix])
                    .await
                    .map_err(Error::query("reading runs"))?;
                rows.iter()
                    .map(|r| {
                        let status: &str = r.get(1);
                        Ok(RunRecord {
                            run_id: r.get(0),
                            status: RunStatus::parse(status).ok_or_else(|| Error::Corrupt {
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
            });
        Box::pin(async move { Ok(runs.await?) })
    }

    fn rejections<'a>(
        &'a self,
        query: &'a RejectionQuery,
    ) -> BoxFuture<'a, Result<Rejections, BoxError>> {
        let (run, rule, limit) = (query.run.as_deref(), query.rule.as_deref(), query.limit);
        let read = self
            .session()
            .retrying("reading rejected rows", move |client| async move {
                let what = "reading rejected rows";
                let counts = client
                    .query(ledger::REJECTION_COUNTS, &[&run, &rule])
                    .await
                    .map_err(Error::query(what))?;
                let rows = client
                    .query(ledger::REJECTED_ROWS, &[&run, &rule, &limit])
                    .await
                    .map_err(Error::query(what))?;
                Ok(Rejections {
                    counts: counts
                        .iter()
                        .map(|r| (r.get(0), r.get(1), r.get(2)))
                        .collect(),
                    rows: rows
                        .iter()
                        .map(|r| StoredRejection {
                            source_location: r.get(0),
                            source_line: r.get(1),
                            rule: r.get(2),
                            field: r.get(3),
                            message: r.get(4),
                            raw: r.get(5),
                            run_id: r.get(6),
                        })
                        .collect(),
                })
            });
        Box::pin(async move { Ok(read.await?) })
    }
}
