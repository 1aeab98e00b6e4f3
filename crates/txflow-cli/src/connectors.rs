//! The sink connectors, picked by the URL's scheme: one line each in
//! [`CONNECTORS`]. A connector is a crate (or a folder) that implements
//! `txflow_core::Connector`; this file only opens it.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use futures::future::BoxFuture;
use txflow_core::{Connector, Secret};
use txflow_influx::InfluxConnector;
use txflow_parquet::ParquetConnector;
use txflow_storage::Location;

use crate::inputs::S3Args;

/// What a connector may need besides its URL.
#[derive(Debug)]
pub struct Options<'a> {
    pub s3: &'a S3Args,
    /// The token of InfluxDB 2.x/3.x (`Authorization: Token ...`).
    pub influx_token: Option<&'a Secret>,
}

type Open = for<'a> fn(&'a str, &'a Options<'a>) -> BoxFuture<'a, Result<Arc<dyn Connector>>>;

/// Every connector: URL schemes, what it writes, and how it is opened.
pub const CONNECTORS: &[(&[&str], &str, Open)] = &[
    (
        &["s3", "file"],
        "Parquet objects (a Hive-style data lake)",
        |url, options| Box::pin(parquet(url, options)),
    ),
    (
        &["influx+http", "influx+https"],
        "line protocol: InfluxDB, VictoriaMetrics",
        |url, options| Box::pin(influx(url, options)),
    ),
];

/// Opens the connector for `url`'s scheme.
pub async fn open(url: &str, options: &Options<'_>) -> Result<Arc<dyn Connector>> {
    let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
    for (schemes, _, open) in CONNECTORS {
        if schemes.contains(&scheme) {
            return open(url, options).await;
        }
    }
    let known: Vec<String> = CONNECTORS
        .iter()
        .map(|(schemes, what, _)| format!("{}:// ({what})", schemes.join("://, ")))
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
    Ok(Arc::new(ParquetConnector::new(
        Arc::clone(location.store()),
        location.path().clone(),
        location.url(),
    )))
}

async fn influx(url: &str, options: &Options<'_>) -> Result<Arc<dyn Connector>> {
    let connector = InfluxConnector::new(url, options.influx_token.cloned())?;
    Ok(Arc::new(connector))
}
