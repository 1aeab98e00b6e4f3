//! The run ledger in SQLite: the core's [`RunLedger`] over `runs`,
//! `run_files` and `rejected_records`, with the SQL both engines share.

use std::collections::HashSet;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::params;
use txflow_core::ports::BoxFuture;
use txflow_core::{
    BoxError, FileOutcome, RejectionQuery, Rejections, RunId, RunLedger, RunRecord, RunSummary,
    StoredRejection,
};
use txflow_sql::ledger;

use crate::{SqliteStore, chrono_secs, query, values};

/// A count as SQLite's 64-bit integer.
pub(crate) fn n(v: u64) -> i64 {
    v as i64
}

impl RunLedger for SqliteStore {
    fn start_run<'a>(&'a self, run: &'a RunSummary) -> BoxFuture<'a, Result<(), BoxError>> {
        let (run, version) = (run.clone(), self.version);
        let ts = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono_secs(), true);
        Box::pin(async move {
            let c = run.counts;
            Ok(self
                .with_conn(move |conn, path| {
                    conn.execute(
                        ledger::UPSERT_RUN,
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
                })
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
            let c = file.counts;
            Ok(self
                .with_conn(move |conn, path| {
                    conn.execute(
                        ledger::UPSERT_FILE,
                        params![
                            run.as_str(),
                            file.location,
                            file.status(),
                            n(c.read),
                            n(c.valid),
                            n(c.invalid),
                            n(c.written),
                            file.error,
                            Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
                        ],
                    )
                    .map_err(query(path, "recording a file of the run"))?;
                    Ok(())
                })
                .await?)
        })
    }

    fn finish_run<'a>(&'a self, run: &'a RunSummary) -> BoxFuture<'a, Result<(), BoxError>> {
        self.start_run(run)
    }

    /// Which of `locations` some run has read to the end, one indexed
    /// lookup each (SQLite has no arrays to bind).
    fn done_files<'a>(
        &'a self,
        locations: &'a [String],
    ) -> BoxFuture<'a, Result<HashSet<String>, BoxError>> {
        let locations = locations.to_vec();
        Box::pin(async move {
            Ok(self
                .with_conn(move |conn, path| {
                    let mut select = conn
                        .prepare_cached(
                            "SELECT 1 FROM run_files
                             WHERE status = 'done' AND source_location = ?1 LIMIT 1",
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
                .await?)
        })
    }

    fn runs<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<RunRecord>, BoxError>> {
        let prefix = prefix.to_owned();
        Box::pin(async move {
            Ok(self
                .with_conn(move |conn, path| {
                    values::all(conn, ledger::RUNS_BY_PREFIX, [&prefix], |r| {
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
                    })
                    .map_err(query(path, "reading runs"))
                })
                .await?)
        })
    }

    fn rejections<'a>(
        &'a self,
        selection: &'a RejectionQuery,
    ) -> BoxFuture<'a, Result<Rejections, BoxError>> {
        let RejectionQuery { run, rule, limit } = selection.clone();
        Box::pin(async move {
            Ok(self
                .with_conn(move |conn, path| {
                    let what = "reading rejected rows";
                    let counts =
                        values::all(conn, ledger::REJECTION_COUNTS, params![run, rule], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                        })
                        .map_err(query(path, what))?;
                    let rows = values::all(
                        conn,
                        ledger::REJECTED_ROWS,
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
                    .map_err(query(path, what))?;
                    Ok(Rejections { counts, rows })
                })
                .await?)
        })
    }
}
