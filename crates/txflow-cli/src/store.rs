//! The database a run writes to, picked by the URL's scheme from
//! [`DATABASES`]: one line per adapter. Each adapter implements the core's
//! ports ([`Sink`], [`RunLedger`], [`OffsetStore`]); [`Store`] holds
//! whichever the URL named.

use std::fmt;
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use txflow_core::ports::BoxFuture;
use txflow_core::registry::ModelRegistry;
use txflow_core::replay::ReplayLedger;
use txflow_core::{OffsetStore, ReviewStore, RunLedger, Sink};
use txflow_postgres::PostgresStore;
use txflow_sqlite::SqliteStore;

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

/// A database of txflow's schema: where batches are written, the run
/// ledger, the stream's stored offsets, and whether it answers.
pub trait Database:
    Sink + RunLedger + OffsetStore + ReviewStore + ModelRegistry + ReplayLedger + fmt::Debug
{
    /// Whether the database answers now, for `/health`.
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))] // consume's
    fn is_up(&self) -> bool;
}

impl Database for PostgresStore {
    fn is_up(&self) -> bool {
        self.health().is_up()
    }
}

impl Database for SqliteStore {
    /// An embedded file always answers.
    fn is_up(&self) -> bool {
        true
    }
}

/// How a database is opened, besides its URL.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// How long a database server that went away is waited for
    /// (`Duration::MAX`: for ever).
    pub max_outage: Duration,
    /// Connections for concurrent stream writes (PostgreSQL; an SQLite file
    /// has one writer at a time).
    pub writers: usize,
}

type Open = for<'a> fn(&'a str, Options) -> BoxFuture<'a, Result<Store>>;

/// A database adapter: its URL schemes, an example URL and how it opens.
#[derive(Debug)]
pub struct Entry {
    pub schemes: &'static [&'static str],
    pub example: &'static str,
    pub open: Open,
}

/// Every database adapter.
pub const DATABASES: &[Entry] = &[
    Entry {
        schemes: &["postgres", "postgresql"],
        example: "postgres://user:password@host:port/db",
        open: |url, options| Box::pin(postgres(url, options)),
    },
    Entry {
        schemes: &["sqlite"],
        example: "sqlite://path/to/file.db",
        open: |url, options| Box::pin(sqlite(url, options)),
    },
];

async fn postgres(url: &str, options: Options) -> Result<Store> {
    let sink = PostgresStore::connect(url, VERSION)
        .await?
        .with_max_outage(options.max_outage)
        .with_writers(options.writers)
        .await?;
    Ok(Store {
        database: Arc::new(sink),
        description: txflow_postgres::redact(url),
        batch_size: 10_000,
    })
}

async fn sqlite(url: &str, _: Options) -> Result<Store> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let path = PathBuf::from(path);
    let sink = tokio::task::spawn_blocking(move || SqliteStore::open(&path, VERSION))
        .await
        .context("opening SQLite")??;
    let description = format!("sqlite://{}", sink.path().display());
    // Each commit rewrites every index page the batch touched, and the
    // transaction ids are random keys: 1M rows took 28.6 s in batches of
    // 10,000 and 16.4 s in batches of 50,000 (docs/PERFORMANCE.md).
    Ok(Store {
        database: Arc::new(sink),
        description,
        batch_size: 50_000,
    })
}

/// The database a command works with, opened from its URL.
#[derive(Debug, Clone)]
pub struct Store {
    database: Arc<dyn Database>,
    /// Where the data goes, password hidden.
    description: String,
    /// Rows per database transaction when the command does not say.
    batch_size: usize,
}

impl Store {
    /// Opens the database and brings its schema up to date. Once open, a
    /// database server that goes away is waited for up to `max_outage`
    /// (`Duration::MAX`: for ever).
    pub async fn open(url: &str, max_outage: Duration) -> Result<Store> {
        Store::open_with(
            url,
            Options {
                max_outage,
                writers: 1,
            },
        )
        .await
    }

    /// [`Store::open`] with every option.
    pub async fn open_with(url: &str, options: Options) -> Result<Store> {
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        match DATABASES.iter().find(|e| e.schemes.contains(&scheme)) {
            Some(entry) => (entry.open)(url, options).await,
            None => {
                let examples: Vec<&str> = DATABASES.iter().map(|e| e.example).collect();
                bail!(
                    "unsupported database URL {:?}: use {}",
                    txflow_postgres::redact(url),
                    examples.join(" or ")
                )
            }
        }
    }

    /// Where the data goes, password hidden.
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// Rows per database transaction that suit this database, for a
    /// command not told otherwise (`--batch-size`).
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The database, to hand to what writes into it.
    pub fn database(&self) -> Arc<dyn Database> {
        Arc::clone(&self.database)
    }
}

impl Deref for Store {
    type Target = dyn Database;

    fn deref(&self) -> &Self::Target {
        &*self.database
    }
}
