//! The database a run writes to, picked by the URL's scheme.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use txflow_core::ports::WriteReport;
use txflow_core::{
    Batch, BoxError, FileOutcome, OffsetStore, RunId, RunRecord, RunSummary, Secret, Sink,
};
use txflow_postgres::PostgresSink;
use txflow_sqlite::SqliteSink;

/// The version stored with every run.
pub const VERSION: &str = concat!("txflow ", env!("CARGO_PKG_VERSION"));

/// The database when none is given: an SQLite file in the working directory.
pub const DEFAULT_DATABASE: &str = "sqlite://txflow.db";

/// How long a one-shot command waits for a database that went away, or for
/// an input whose read broke (`txflow batch --db-max-outage`,
/// `--source-max-outage`).
pub const DEFAULT_MAX_OUTAGE: &str = "60s";

/// [`DEFAULT_MAX_OUTAGE`] as a duration.
pub fn default_max_outage() -> Duration {
    crate::classifier::parse_duration(DEFAULT_MAX_OUTAGE)
        .expect("DEFAULT_MAX_OUTAGE is a valid duration")
}

/// `postgres://…`/`postgresql://…` or `sqlite://path` (also `sqlite:path`).
#[derive(Debug)]
pub enum Store {
    Postgres(PostgresSink),
    Sqlite(SqliteSink),
}

/// The stream's PostgreSQL, for what only it holds (`what`: replays, model
/// versions); a missing or non-PostgreSQL URL says so.
pub async fn open_postgres(url: Option<&Secret>, what: &str) -> Result<PostgresSink> {
    let Some(url) = url else {
        bail!(
            "no database: {what} live in PostgreSQL; give --database-url postgres://... (or DATABASE_URL)"
        );
    };
    let url = url.expose();
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        bail!("{what} live in PostgreSQL: give --database-url postgres://... (or DATABASE_URL)");
    }
    Ok(PostgresSink::connect(url, VERSION).await?)
}

impl Store {
    /// Opens the database and brings its schema up to date. Once open, a
    /// database server that goes away is waited for up to `max_outage`
    /// (`Duration::MAX`: for ever).
    pub async fn open(url: &str, max_outage: Duration) -> Result<Store> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let sink = PostgresSink::connect(url, VERSION)
                .await?
                .with_max_outage(max_outage);
            return Ok(Store::Postgres(sink));
        }
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let path = PathBuf::from(path);
            let sink = tokio::task::spawn_blocking(move || SqliteSink::open(&path, VERSION))
                .await
                .context("opening SQLite")??;
            return Ok(Store::Sqlite(sink));
        }
        bail!(
            "unsupported database URL {:?}: use postgres://user:password@host:port/db or sqlite://path/to/file.db",
            txflow_postgres::redact(url)
        )
    }

    /// A connection for each of `writers` concurrent stream writes
    /// (PostgreSQL; an SQLite file has one writer at a time).
    pub async fn with_writers(self, writers: usize) -> Result<Store> {
        Ok(match self {
            Store::Postgres(sink) => Store::Postgres(sink.with_writers(writers).await?),
            sqlite @ Store::Sqlite(_) => sqlite,
        })
    }

    /// Whether the database answers now, for `/health` (an embedded SQLite
    /// file always does).
    pub fn is_up(&self) -> bool {
        match self {
            Store::Postgres(s) => s.health().is_up(),
            Store::Sqlite(_) => true,
        }
    }

    /// Where the data goes, password hidden.
    pub fn describe(&self, url: &str) -> String {
        match self {
            Store::Postgres(_) => txflow_postgres::redact(url),
            Store::Sqlite(s) => format!("sqlite://{}", s.path().display()),
        }
    }
}

impl Store {
    /// Which of `locations` some run has read to the end.
    pub async fn done_files(&self, locations: &[String]) -> Result<HashSet<String>> {
        Ok(match self {
            Store::Postgres(s) => s.done_files(locations).await?,
            Store::Sqlite(s) => s.done_files(locations).await?,
        })
    }

    /// Rejected batch rows of a run and rule: counts, and the first rows.
    pub async fn rejections(
        &self,
        run: Option<&str>,
        rule: Option<&str>,
        limit: i64,
    ) -> Result<txflow_core::Rejections> {
        Ok(match self {
            Store::Postgres(s) => s.rejections(run, rule, limit).await?,
            Store::Sqlite(s) => s.rejections(run, rule, limit).await?,
        })
    }

    /// The runs whose id starts with `prefix`.
    pub async fn runs(&self, prefix: &str) -> Result<Vec<RunRecord>> {
        Ok(match self {
            Store::Postgres(s) => s.runs(prefix).await?,
            Store::Sqlite(s) => s.runs(prefix).await?,
        })
    }
}

impl OffsetStore for Store {
    async fn stored_offsets(&self, group: &str, topic: &str) -> Result<Vec<(i32, i64)>, BoxError> {
        match self {
            Store::Postgres(s) => s.stored_offsets(group, topic).await,
            Store::Sqlite(s) => s.stored_offsets(group, topic).await,
        }
    }
}

impl Sink for Store {
    async fn start_run(&self, run: &RunSummary) -> Result<(), BoxError> {
        match self {
            Store::Postgres(s) => s.start_run(run).await,
            Store::Sqlite(s) => s.start_run(run).await,
        }
    }

    async fn write_batch(&self, batch: Batch) -> Result<WriteReport, BoxError> {
        match self {
            Store::Postgres(s) => s.write_batch(batch).await,
            Store::Sqlite(s) => s.write_batch(batch).await,
        }
    }

    async fn record_file(&self, run: &RunId, file: &FileOutcome) -> Result<(), BoxError> {
        match self {
            Store::Postgres(s) => s.record_file(run, file).await,
            Store::Sqlite(s) => s.record_file(run, file).await,
        }
    }

    async fn finish_run(&self, run: &RunSummary) -> Result<(), BoxError> {
        match self {
            Store::Postgres(s) => s.finish_run(run).await,
            Store::Sqlite(s) => s.finish_run(run).await,
        }
    }
}
