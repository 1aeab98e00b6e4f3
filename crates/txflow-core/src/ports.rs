//! The ports: what the pipeline needs from the outside world, as traits.
//! Adapter crates implement them, one technology each.

use std::future::Future;
use std::sync::Arc;

use uuid::Uuid;

use crate::error::BoxError;
use crate::model::ReferenceModel;
use crate::pipeline::{Lineage, RunSummary};
use crate::record::{Position, RawRecord};
use crate::transaction::{DecimalMark, Prediction, Transaction};
use crate::validation::RejectedRecord;

/// A stream of raw records from one input (a CSV file, a topic partition).
pub trait RecordSource: Send {
    /// The input's canonical URL (`file:///abs/path.csv`, `s3://bucket/key`).
    fn location(&self) -> &Arc<str>;

    /// The decimal mark of the input's amounts.
    fn decimal_mark(&self) -> DecimalMark;

    /// The next record, or `None` at the end of the input. The record
    /// borrows the source's buffers until the next call.
    fn next_record(
        &mut self,
    ) -> impl Future<Output = Result<Option<RawRecord<'_>>, BoxError>> + Send;

    /// Bytes consumed so far, for progress reporting.
    fn bytes_read(&self) -> u64;
}

/// Classifies transactions in batches.
pub trait Classifier: Send + Sync {
    /// One prediction per transaction, in the same order.
    fn classify(
        &self,
        transactions: &[Transaction],
    ) -> impl Future<Output = Result<Vec<Prediction>, BoxError>> + Send;
}

impl Classifier for ReferenceModel {
    async fn classify(&self, transactions: &[Transaction]) -> Result<Vec<Prediction>, BoxError> {
        Ok(transactions
            .iter()
            .map(|tx| Prediction {
                transaction_id: tx.id(),
                category: ReferenceModel::category(tx.id()),
                confidence: Some(1.0),
                model_version: ReferenceModel::VERSION.to_owned(),
            })
            .collect())
    }
}

/// One unit of work for a sink: written in one database transaction.
#[derive(Debug, Clone)]
pub struct Batch {
    pub lineage: Lineage,
    /// Deterministic per (run, source, sequence number).
    pub batch_id: Uuid,
    pub transactions: Vec<Transaction>,
    /// Where each transaction stood in the source; same length as `transactions`.
    pub positions: Vec<Position>,
    /// One per transaction, same order.
    pub predictions: Vec<Prediction>,
    pub rejected: Vec<RejectedRecord>,
}

/// What a sink actually added: rows already present are not counted, so a
/// rerun of the same input reports zeros.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteReport {
    pub transactions: u64,
    pub predictions: u64,
    pub rejected: u64,
}

/// Durable storage of transactions, predictions, rejected rows and runs.
///
/// Writing the same batch twice must add nothing the second time.
pub trait Sink: Send + Sync {
    /// Records that a run started (or restarted, with the same run id).
    fn start_run(&self, run: &RunSummary) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Writes a batch atomically.
    fn write_batch(
        &self,
        batch: Batch,
    ) -> impl Future<Output = Result<WriteReport, BoxError>> + Send;

    /// Records a run's final counts and status.
    fn finish_run(&self, run: &RunSummary) -> impl Future<Output = Result<(), BoxError>> + Send;
}

/// A place that keeps each run's invalid rows as a file people can open.
pub trait RejectLog: Send {
    fn append(
        &mut self,
        rejected: &[RejectedRecord],
    ) -> impl Future<Output = Result<(), BoxError>> + Send;
}
