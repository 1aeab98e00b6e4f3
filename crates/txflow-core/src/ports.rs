//! The ports: what the pipeline needs from the outside world, as traits.
//! Adapter crates implement them, one technology each.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use uuid::Uuid;

use crate::category::LabelSet;
use crate::error::BoxError;
use crate::record::{Position, RawRecord};
use crate::review::{Ranked, ReviewRequest};
pub use crate::run::WriteReport;
use crate::run::{
    Counts, FileOutcome, Lineage, RejectionQuery, Rejections, RunId, RunRecord, RunSummary,
};
use crate::transaction::{DecimalMark, Prediction, Transaction, TransactionId};
use crate::validation::RejectedRecord;

/// A boxed future, as the ports that are held as trait objects return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

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

/// What a classifier says of one transaction: a prediction, or why there is
/// none for it.
pub type Outcome = Result<Prediction, ClassifyFailure>;

/// Classifies transactions in batches.
pub trait Classifier: Send + Sync {
    /// One outcome per transaction, in the same order. A failed item fails
    /// that transaction only; an `Err` means the classifier could not answer
    /// at all, and stops the run (nothing of the batch is written, so a
    /// rerun picks it up).
    fn classify(
        &self,
        transactions: &[Transaction],
    ) -> impl Future<Output = Result<Vec<Outcome>, BoxError>> + Send;

    /// The model's best `n` categories for one transaction with their
    /// probabilities, best first; `None` when it has no distribution (a
    /// rule, a remote service). Asked only of the predictions queued for
    /// review.
    fn ranked(&self, _tx: &Transaction, _n: usize) -> Option<Vec<Ranked>> {
        None
    }

    /// The label set of a model version this classifier answered with,
    /// when it knows it.
    fn label_set(&self, _version: &str) -> Option<LabelSet> {
        None
    }
}

/// Why a classifier gave no prediction for one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassifyFailure {
    pub class: FailureClass,
    pub message: String,
}

/// The kinds of [`ClassifyFailure`], stored by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// The service refused the request (a 4xx other than 429).
    Refused,
    /// The service's answer for this item was unusable (unknown category,
    /// confidence out of range, a duplicated id).
    InvalidAnswer,
    /// The service's answer had no item for this transaction.
    MissingAnswer,
}

impl FailureClass {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Refused => "refused",
            FailureClass::InvalidAnswer => "invalid_answer",
            FailureClass::MissingAnswer => "missing_answer",
        }
    }
}

/// A valid transaction the classifier failed on. It is stored all the same,
/// without a prediction (so it shows in `unprocessed_transactions`), and a
/// rerun classifies it.
#[derive(Debug, Clone)]
pub struct Unclassified {
    pub transaction_id: TransactionId,
    pub position: Position,
    pub failure: ClassifyFailure,
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
    /// At most one per transaction.
    pub predictions: Vec<Prediction>,
    /// The transactions of this batch the classifier failed on.
    pub unclassified: Vec<Unclassified>,
    pub rejected: Vec<RejectedRecord>,
    /// The predictions queued for a person (see [`crate::review::route`]),
    /// written in the same database transaction.
    pub reviews: Vec<ReviewRequest>,
    /// For a stream: where the consumer stands once this batch is stored,
    /// written in the same database transaction as its rows.
    pub checkpoint: Option<Checkpoint>,
    /// Whether the sink adds this batch's rows (read, valid, invalid,
    /// classified, unclassified, newly written, predictions) to its run's
    /// row in the run ledger, in the same database transaction: a run
    /// stopped without recording its end (killed, the machine lost) still
    /// says what it committed. The batch pipeline's batches are; a
    /// stream's are not (its lanes would contend for the run's row). A
    /// call of [`Sink::write_batches`] is tallied only when all its batches
    /// are and belong to one run.
    pub run_tally: bool,
}

impl Batch {
    /// What a write of `batches`, committed as `report` says, adds to its
    /// run's ledger row (see [`Batch::run_tally`]), when every batch asks
    /// for it and all are of one run: the run, and the counts the pipeline
    /// adds for these batches (read, valid, invalid, classified,
    /// unclassified, written, predictions written).
    pub fn run_additions<'a>(
        batches: &'a [Batch],
        report: &WriteReport,
    ) -> Option<(&'a str, Counts)> {
        let run = batches.first()?.lineage.run_id.as_str();
        if !batches
            .iter()
            .all(|b| b.run_tally && b.lineage.run_id.as_str() == run)
        {
            return None;
        }
        let mut counts = Counts::default();
        for b in batches {
            let (valid, invalid) = (b.transactions.len() as u64, b.rejected.len() as u64);
            counts.read += valid + invalid;
            counts.valid += valid;
            counts.invalid += invalid;
            counts.classified += b.predictions.len() as u64;
            counts.unclassified += b.unclassified.len() as u64;
        }
        counts.add_write(*report, counts.valid);
        Some((run, counts))
    }

    /// Each prediction with its transaction and position: what a predictions
    /// event carries. Predictions follow the transactions' order (those the
    /// classifier failed on have none), so one walk pairs them even when two
    /// transactions share an id.
    pub fn predicted(&self) -> impl Iterator<Item = (&Transaction, &Prediction, Position)> {
        paired(&self.transactions, &self.predictions)
            .filter_map(|(i, tx, p)| Some((tx, p, *self.positions.get(i)?)))
    }
}

/// Each prediction with its transaction and the transaction's index, for
/// predictions in the transactions' order (some transactions may have none).
pub fn paired<'a>(
    transactions: &'a [Transaction],
    predictions: &'a [Prediction],
) -> impl Iterator<Item = (usize, &'a Transaction, &'a Prediction)> {
    let mut next = 0;
    predictions.iter().filter_map(move |p| {
        while next < transactions.len() && transactions[next].id() != p.transaction_id {
            next += 1;
        }
        let i = next;
        next += 1;
        Some((i, transactions.get(i)?, p))
    })
}

/// The next offset a consumer group reads in one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub next_offset: i64,
    /// For a member that publishes in Kafka transactions: the batch's first
    /// offset, its predictions in a transaction not yet committed when the
    /// rows are. A member starting on the partition resumes there (and
    /// publishes them again) until [`OffsetStore::published`] clears it.
    pub unpublished_from: Option<i64>,
}

/// Where stream consumers stand, kept with the rows (see [`Checkpoint`]).
pub trait OffsetStore: Send + Sync {
    /// Where `group` resumes in each partition of `topic`: the stored next
    /// offset, or the first offset whose predictions may not be published
    /// (see [`Checkpoint::unpublished_from`]).
    fn stored_offsets<'a>(
        &'a self,
        group: &'a str,
        topic: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(i32, i64)>, BoxError>>;

    /// Records that the predictions of these partitions' stored batches are
    /// all published (their Kafka transactions committed).
    fn published<'a>(
        &'a self,
        group: &'a str,
        topic: &'a str,
        partitions: &'a [i32],
    ) -> BoxFuture<'a, Result<(), BoxError>>;
}

/// Where batches of transactions and predictions are written.
///
/// Writing the same batch twice must add nothing the second time. This is
/// all a store of the pipeline's output implements; the run ledger
/// ([`RunLedger`]) and the resume point ([`OffsetStore`]) are separate ports.
pub trait Sink: Send + Sync {
    /// Writes a batch atomically.
    fn write_batch(&self, batch: Batch) -> BoxFuture<'_, Result<WriteReport, BoxError>>;

    /// Writes several batches (a stream member's partitions of one flush,
    /// each with its checkpoint); the report is their sum. A store that
    /// can writes them in one transaction: one commit instead of one per
    /// batch. By default, one after the other, each atomically: a failure
    /// leaves those before it written, each with its checkpoint.
    fn write_batches(&self, batches: Vec<Batch>) -> BoxFuture<'_, Result<WriteReport, BoxError>> {
        Box::pin(async move {
            let mut total = WriteReport::default();
            for batch in batches {
                total += self.write_batch(batch).await?;
            }
            Ok(total)
        })
    }
}

/// The run ledger: what each run did, kept in SQL beside the rows.
pub trait RunLedger: Send + Sync {
    /// Records that a run started (or restarted, with the same run id).
    fn start_run<'a>(&'a self, run: &'a RunSummary) -> BoxFuture<'a, Result<(), BoxError>>;

    /// Records what a run did with one input file (again for the same run
    /// and file: replaced).
    fn record_file<'a>(
        &'a self,
        run: &'a RunId,
        file: &'a FileOutcome,
    ) -> BoxFuture<'a, Result<(), BoxError>>;

    /// Records a run's final counts and status.
    fn finish_run<'a>(&'a self, run: &'a RunSummary) -> BoxFuture<'a, Result<(), BoxError>>;

    /// Which of `locations` some run has read to the end.
    fn done_files<'a>(
        &'a self,
        locations: &'a [String],
    ) -> BoxFuture<'a, Result<HashSet<String>, BoxError>>;

    /// The runs whose id starts with `prefix`, newest first.
    fn runs<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<RunRecord>, BoxError>>;

    /// Rejected rows of batch runs that `query` selects: counts by rule and
    /// file, and the first rows.
    fn rejections<'a>(
        &'a self,
        query: &'a RejectionQuery,
    ) -> BoxFuture<'a, Result<Rejections, BoxError>>;
}

impl<T: Sink + ?Sized> Sink for Arc<T> {
    fn write_batch(&self, batch: Batch) -> BoxFuture<'_, Result<WriteReport, BoxError>> {
        (**self).write_batch(batch)
    }

    fn write_batches(&self, batches: Vec<Batch>) -> BoxFuture<'_, Result<WriteReport, BoxError>> {
        (**self).write_batches(batches)
    }
}

impl<T: OffsetStore + ?Sized> OffsetStore for Arc<T> {
    fn stored_offsets<'a>(
        &'a self,
        group: &'a str,
        topic: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(i32, i64)>, BoxError>> {
        (**self).stored_offsets(group, topic)
    }

    fn published<'a>(
        &'a self,
        group: &'a str,
        topic: &'a str,
        partitions: &'a [i32],
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        (**self).published(group, topic, partitions)
    }
}

/// A place that keeps each run's invalid rows as a file people can open.
pub trait RejectLog: Send {
    fn append(
        &mut self,
        rejected: &[RejectedRecord],
    ) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Closes the log once the run is over: where its file is and how many
    /// rows it holds, if it wrote any.
    fn finish(self) -> impl Future<Output = Result<Option<(String, u64)>, BoxError>> + Send
    where
        Self: Sized;
}
