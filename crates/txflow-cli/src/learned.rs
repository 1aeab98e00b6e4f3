//! Trained models and labeled files, read from a path, `file://` or
//! `s3://` (credentials and endpoint from the usual `AWS_*` variables).

use std::sync::Arc;

use anyhow::{Context, Result};
use txflow_core::Amount;
use txflow_learn::{LabeledRow, LearnedModel};
use txflow_storage::{Location, S3Options};

/// S3 settings from the environment (`AWS_ENDPOINT_URL`, `AWS_REGION`).
pub fn s3_from_env() -> S3Options {
    S3Options {
        endpoint: std::env::var("AWS_ENDPOINT_URL").ok(),
        region: std::env::var("AWS_REGION").ok(),
    }
}

/// Whether a `--classifier`/`--model` value names a model file.
pub fn is_model_file(value: &str) -> bool {
    value.starts_with("file://") || value.starts_with("s3://") || value.ends_with(".txm")
}

/// The name part of a model version (`us17` of `us17@d482885b714c`; a
/// built-in version is its own name).
pub fn model_name(version: &str) -> &str {
    version.split('@').next().unwrap_or(version)
}

/// A model file, loaded and checked.
pub async fn load_model(url: &str) -> Result<Arc<LearnedModel>> {
    let location = Location::parse(url, &s3_from_env())?;
    let bytes = location
        .read_all()
        .await
        .with_context(|| format!("reading the model {url}"))?;
    let model = txflow_learn::file::decode(&bytes)
        .with_context(|| format!("the model {} cannot be used", location.url()))?;
    Ok(Arc::new(model))
}

/// Every row of the labeled files, in order.
/// A person's label and its transaction, as a training row.
pub fn row_of_label(l: &txflow_core::LabeledTransaction) -> LabeledRow {
    LabeledRow {
        description: l.description.clone(),
        category: l.category.as_str().to_owned(),
        merchant: l.merchant.clone(),
        amount_cents: Some(l.amount.cents()),
        side: Some(l.side),
        operation_type: Some(l.operation_type.clone()),
    }
}

pub async fn read_labeled(files: &[String]) -> Result<Vec<LabeledRow>> {
    let s3 = s3_from_env();
    let mut rows = Vec::new();
    for file in files {
        let location = Location::parse(file, &s3)?;
        let bytes = location
            .read_all()
            .await
            .with_context(|| format!("reading the labeled file {file}"))?;
        let records = txflow_csv::labeled::read_labeled(&bytes)
            .with_context(|| format!("the labeled file {}", location.url()))?;
        rows.extend(records.into_iter().map(|r| LabeledRow {
            description: r.description,
            category: r.category,
            merchant: r.merchant,
            amount_cents: r.amount.map(Amount::cents),
            side: r.side,
            operation_type: r.operation_type,
        }));
    }
    Ok(rows)
}
