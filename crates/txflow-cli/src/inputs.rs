//! Input flags and their resolution into files, shared by `batch` and `list`.

use anyhow::{Context, Result};
use txflow_storage::{Input, Location, S3Options};

use crate::store::Store;

/// Where S3 inputs live; credentials come from the usual AWS_* variables.
#[derive(Debug, Clone, clap::Args)]
pub struct S3Args {
    /// S3-compatible endpoint (e.g. http://127.0.0.1:9000); the other AWS_*
    /// variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...) are read too.
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub s3_endpoint: Option<String>,

    /// S3 region.
    #[arg(long, env = "AWS_REGION")]
    pub s3_region: Option<String>,
}

impl S3Args {
    pub fn options(&self) -> S3Options {
        S3Options {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
        }
    }
}

/// Every file the inputs name (folders and prefixes expanded), in order, and
/// the first input's location. A typo fails here, before anything is written.
pub async fn resolve(raw: &[String], s3: &S3Options) -> Result<(Vec<Input>, Option<Location>)> {
    let mut inputs = Vec::new();
    let mut first: Option<Location> = None;
    for raw in raw {
        let location = Location::parse(raw, s3)?;
        let found = location.inputs().await?;
        if found.is_empty() {
            tracing::warn!(input = %location.url(), "no .csv file found");
        }
        first.get_or_insert(location);
        inputs.extend(found);
    }
    Ok((inputs, first))
}

/// Leaves out the files some earlier run read to the end (`--skip-done`).
pub async fn skip_done(store: &Store, inputs: &mut Vec<Input>) -> Result<()> {
    let urls: Vec<String> = inputs.iter().map(|i| i.location.url()).collect();
    let done = store
        .done_files(&urls)
        .await
        .map_err(|e| anyhow::anyhow!(e))
        .context("reading which files are done")?;
    if !done.is_empty() {
        tracing::info!(skipped = done.len(), "files already done by an earlier run");
    }
    inputs.retain(|i| !done.contains(&i.location.url()));
    Ok(())
}
