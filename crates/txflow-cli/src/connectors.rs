//! The sink connectors, picked by the URL's scheme: one line each in
//! [`CONNECTORS`]. A connector is a crate (or a folder) that implements
//! `txflow_core::Connector`; this file only opens it.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use futures::future::BoxFuture;
use txflow_core::{Connector, Secret};
use txflow_delta::DeltaConnector;
use txflow_elasticsearch::ElasticsearchConnector;
use txflow_influx::InfluxConnector;
use txflow_parquet::{LakeDate, ParquetConnector};
use txflow_postgres::{PostgresConnector, PostgresStore};
use txflow_storage::Location;

use crate::inputs::S3Args;
use crate::store::VERSION;

/// What a connector may need besides its URL.
#[derive(Debug)]
pub struct Options<'a> {
    /// The sink's consumer group (stores that keep offsets key them by it).
    pub group: &'a str,
    pub s3: &'a S3Args,
    /// The token of InfluxDB 2.x/3.x (`Authorization: Token ...`).
    pub influx_token: Option<&'a Secret>,
    /// Which date names the Parquet lake's `date=` folders.
    pub parquet_date: LakeDate,
    /// Which date is the Delta table's `date` partition.
    pub delta_date: LakeDate,
    /// Commits between the Delta table's checkpoints, if not the table's.
    pub delta_checkpoint_interval: Option<u32>,
}

type Open = for<'a> fn(&'a str, &'a Options<'a>) -> BoxFuture<'a, Result<Arc<dyn Connector>>>;

/// A connector: its URL schemes, its kind (the default group is
/// `txflow-sink-<kind>`), what it writes, and how it is opened.
#[derive(Debug)]
pub struct Entry {
    pub schemes: &'static [&'static str],
    pub kind: &'static str,
    pub what: &'static str,
    pub open: Open,
}

/// Every connector.
pub const CONNECTORS: &[Entry] = &[
    Entry {
        schemes: &["s3", "file"],
        kind: "parquet",
        what: "Parquet objects (a Hive-style data lake)",
        open: |url, options| Box::pin(parquet(url, options)),
    },
    Entry {
        schemes: &["delta+s3", "delta+file"],
        kind: "delta",
        what: "a Delta Lake table",
        open: |url, options| Box::pin(delta(url, options)),
    },
    Entry {
        schemes: &["influx+http", "influx+https"],
        kind: "influx",
        what: "line protocol: InfluxDB, VictoriaMetrics",
        open: |url, options| Box::pin(influx(url, options)),
    },
    Entry {
        schemes: &["elasticsearch+http", "elasticsearch+https"],
        kind: "elasticsearch",
        what: "an Elasticsearch or OpenSearch index (_bulk)",
        open: |url, _| Box::pin(elasticsearch(url)),
    },
    Entry {
        schemes: &["postgres", "postgresql"],
        kind: "postgres",
        what: "a PostgreSQL database with txflow's schema",
        open: |url, options| Box::pin(postgres(url, options)),
    },
];

/// The connector for `url`'s scheme.
pub fn entry(url: &str) -> Result<&'static Entry> {
    let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
    if let Some(entry) = CONNECTORS.iter().find(|e| e.schemes.contains(&scheme)) {
        return Ok(entry);
    }
    let known: Vec<String> = CONNECTORS
        .iter()
        .map(|e| format!("{}:// ({})", e.schemes.join("://, "), e.what))
        .collect();
    bail!(
        "no sink for {:?}: the URL must start with one of {}",
        txflow_postgres::redact(url),
        known.join("; ")
    )
}

async fn parquet(url: &str, options: &Options<'_>) -> Result<Arc<dyn Connector>> {
    if let Some(path) = url.strip_prefix("file://") {
        std::fs::create_dir_all(path)
            .with_context(|| format!("creating the folder of {url} (the lake's root)"))?;
    }
    let prefix = if url.ends_with('/') {
        url.to_owned()
    } else {
        format!("{url}/")
    };
    let location = Location::parse(&prefix, &options.s3.options())?;
    Ok(Arc::new(
        ParquetConnector::new(
            Arc::clone(location.store()),
            location.path().clone(),
            location.url(),
        )
        .with_date(options.parquet_date),
    ))
}

async fn delta(url: &str, options: &Options<'_>) -> Result<Arc<dyn Connector>> {
    let location = open_table(url, &options.s3.options())?;
    Ok(Arc::new(
        DeltaConnector::new(
            Arc::clone(location.store()),
            location.path().clone(),
            format!("delta+{}", location.url()),
            options.group.to_owned(),
        )
        .with_date(options.delta_date)
        .with_checkpoint_interval(options.delta_checkpoint_interval),
    ))
}

/// The location of a Delta table's root from its URL: `delta+s3://bucket/path`
/// or `delta+file:///path` (`delta+` optional; a local folder is made if
/// missing).
pub fn open_table(url: &str, s3: &txflow_storage::S3Options) -> Result<Location> {
    let bare = url.strip_prefix("delta+").unwrap_or(url);
    if let Some(path) = bare.strip_prefix("file://") {
        std::fs::create_dir_all(path)
            .with_context(|| format!("creating the folder of {url} (the table's root)"))?;
    }
    let root = if bare.ends_with('/') {
        bare.to_owned()
    } else {
        format!("{bare}/")
    };
    Ok(Location::parse(&root, s3)?)
}

async fn influx(url: &str, options: &Options<'_>) -> Result<Arc<dyn Connector>> {
    let connector = InfluxConnector::new(url, options.influx_token.cloned())?;
    Ok(Arc::new(connector))
}

async fn postgres(url: &str, options: &Options<'_>) -> Result<Arc<dyn Connector>> {
    let sink = PostgresStore::connect(url, VERSION).await?;
    Ok(Arc::new(PostgresConnector::new(
        Arc::new(sink),
        options.group.to_owned(),
        txflow_postgres::redact(url),
    )))
}

async fn elasticsearch(url: &str) -> Result<Arc<dyn Connector>> {
    Ok(Arc::new(ElasticsearchConnector::new(url)?))
}
