//! The batch pipeline: records from a [`RecordSource`] are validated, the
//! valid ones classified in batches, and everything written to a [`Sink`];
//! invalid rows also go to a [`RejectLog`].
//!
//! Reading the next batch overlaps with writing the previous one: the sink's
//! write runs while the source is parsed, so the database and the parser work
//! at the same time. At most one batch is in flight, so memory stays bounded
//! by two batches whatever the input size.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::identity;
use crate::ports::{Batch, Classifier, RecordSource, RejectLog, Sink, Unclassified, WriteReport};
use crate::record::Position;
use crate::transaction::{Prediction, Transaction};
use crate::validation::{RejectedRecord, Validator};

/// A run id: given by the caller (Airflow sets one) or generated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RunId(Arc<str>);

/// Why a text is not a run id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("run id {0:?} must be 1 to 250 printable characters")]
pub struct InvalidRunId(pub String);

impl RunId {
    pub fn parse(s: &str) -> Result<RunId, InvalidRunId> {
        let ok = !s.is_empty() && s.chars().count() <= 250 && !s.chars().any(char::is_control);
        if ok {
            Ok(RunId(Arc::from(s)))
        } else {
            Err(InvalidRunId(s.to_owned()))
        }
    }

    /// A fresh run id: `run-` and a random UUID.
    pub fn generate() -> RunId {
        RunId(Arc::from(format!("run-{}", Uuid::new_v4())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a record reached txflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessingType {
    Batch,
    Streaming,
}

impl ProcessingType {
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessingType::Batch => "batch",
            ProcessingType::Streaming => "streaming",
        }
    }
}

/// What every row of a batch shares: who wrote it, from where, how.
#[derive(Debug, Clone, PartialEq)]
pub struct Lineage {
    pub run_id: RunId,
    pub source: Arc<str>,
    pub processing_type: ProcessingType,
}

/// Running totals of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub read: u64,
    pub valid: u64,
    pub invalid: u64,
    pub classified: u64,
    /// Valid transactions the classifier failed on (stored without a
    /// prediction).
    pub unclassified: u64,
    /// Transactions newly stored (a rerun adds none).
    pub written: u64,
    /// Valid transactions of committed batches that the database held
    /// already. `valid - written - present` were not stored (the run
    /// stopped before their batch was committed).
    pub present: u64,
    pub predictions_written: u64,
    /// Files finished, and files stopped by an error.
    pub files: u64,
    pub files_failed: u64,
    pub bytes: u64,
}

impl Counts {
    /// Invalid rows over rows read; 0 for an empty run.
    pub fn error_rate(&self) -> f64 {
        if self.read == 0 {
            0.0
        } else {
            self.invalid as f64 / self.read as f64
        }
    }

    /// Valid rows that are in no committed batch: read, but not stored
    /// because the run stopped.
    pub fn not_stored(&self) -> u64 {
        self.valid
            .saturating_sub(self.written)
            .saturating_sub(self.present)
    }

    /// A committed batch of `offered` transactions: what the sink added, and
    /// the rest, which it held already.
    fn add_write(&mut self, report: WriteReport, offered: u64) {
        self.written += report.transactions;
        self.present += offered.saturating_sub(report.transactions);
        self.predictions_written += report.predictions;
    }
}

/// The state of a run, as stored in the `runs` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    /// Every row valid and stored.
    Succeeded,
    /// Finished; some rows were invalid, fewer than the error budget allows.
    SucceededWithRejects,
    /// Finished, but more rows were invalid than the error budget allows.
    ErrorRateExceeded,
    /// Stopped by an error; what was written before it stays written.
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::SucceededWithRejects => "succeeded_with_rejects",
            RunStatus::ErrorRateExceeded => "error_rate_exceeded",
            RunStatus::Failed => "failed",
        }
    }
}

/// A rejected row as a sink stored it (`rejected_records`): what `txflow
/// dlq rejected` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRejection {
    pub source_location: String,
    pub source_line: i64,
    pub rule: String,
    pub field: Option<String>,
    pub message: String,
    pub raw: String,
    pub run_id: String,
}

/// Counts of rejected rows by rule and source, and the first rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rejections {
    /// (rule, source location, rows), most first.
    pub counts: Vec<(String, String, i64)>,
    pub rows: Vec<StoredRejection>,
}

/// A run as a sink stored it: what `txflow runs` prints and a scheduler checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    pub run_id: String,
    pub status: String,
    pub files: u64,
    pub files_failed: u64,
    pub rows_read: u64,
    pub rows_invalid: u64,
    pub rows_written: u64,
    pub error: Option<String>,
}

/// What a run did with one input file.
#[derive(Debug, Clone)]
pub struct FileOutcome {
    pub location: String,
    /// `true` when the file was read to its end.
    pub done: bool,
    /// This file's counts only.
    pub counts: Counts,
    pub error: Option<String>,
}

impl FileOutcome {
    pub fn status(&self) -> &'static str {
        if self.done { "done" } else { "failed" }
    }
}

/// `after - before`, field by field: one file's share of a run's counts.
impl std::ops::Sub for Counts {
    type Output = Counts;

    fn sub(self, before: Counts) -> Counts {
        Counts {
            read: self.read - before.read,
            valid: self.valid - before.valid,
            invalid: self.invalid - before.invalid,
            classified: self.classified - before.classified,
            unclassified: self.unclassified - before.unclassified,
            written: self.written - before.written,
            present: self.present - before.present,
            predictions_written: self.predictions_written - before.predictions_written,
            files: self.files - before.files,
            files_failed: self.files_failed - before.files_failed,
            bytes: self.bytes - before.bytes,
        }
    }
}

/// A run as a whole: identity, times, totals, outcome.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub run_id: RunId,
    pub kind: ProcessingType,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub counts: Counts,
    pub status: RunStatus,
    pub error: Option<String>,
}

impl RunSummary {
    pub fn start(run_id: RunId, kind: ProcessingType, now: DateTime<Utc>) -> Self {
        RunSummary {
            run_id,
            kind,
            started_at: now,
            finished_at: None,
            counts: Counts::default(),
            status: RunStatus::Running,
            error: None,
        }
    }

    /// Closes the run: the status follows from the error or failed files, if
    /// any, then from the error budget.
    pub fn finish(&mut self, now: DateTime<Utc>, error: Option<String>, budget: ErrorBudget) {
        self.finished_at = Some(now);
        self.status = if error.is_some() || self.counts.files_failed > 0 {
            RunStatus::Failed
        } else if budget.exceeded(&self.counts) {
            RunStatus::ErrorRateExceeded
        } else if self.counts.invalid > 0 || self.counts.unclassified > 0 {
            RunStatus::SucceededWithRejects
        } else {
            RunStatus::Succeeded
        };
        self.error = error;
    }

    pub fn seconds(&self) -> f64 {
        let end = self.finished_at.unwrap_or_else(Utc::now);
        (end - self.started_at).num_microseconds().unwrap_or(0) as f64 / 1e6
    }
}

/// The largest share of invalid rows a run may have and still succeed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorBudget {
    max_rate: f64,
}

impl ErrorBudget {
    /// No limit: a run succeeds whatever share of its rows is invalid.
    pub const UNLIMITED: ErrorBudget = ErrorBudget { max_rate: 1.0 };

    /// `max_rate` in [0, 1]; `None` otherwise.
    pub fn new(max_rate: f64) -> Option<Self> {
        (0.0..=1.0)
            .contains(&max_rate)
            .then_some(ErrorBudget { max_rate })
    }

    pub fn max_rate(&self) -> f64 {
        self.max_rate
    }

    pub fn exceeded(&self, counts: &Counts) -> bool {
        counts.error_rate() > self.max_rate
    }
}

/// The batch pipeline over one sink, one classifier and one reject log.
#[derive(Debug)]
pub struct BatchPipeline<'a, C, S> {
    pub classifier: &'a C,
    pub sink: &'a S,
    /// Valid transactions per batch (and per database transaction).
    pub batch_size: usize,
    pub run_id: RunId,
    pub processing_type: ProcessingType,
}

/// The rows gathered for one batch, before classification.
struct Pending {
    transactions: Vec<Transaction>,
    positions: Vec<Position>,
    rejected: Vec<RejectedRecord>,
    exhausted: bool,
}

impl<C: Classifier, S: Sink> BatchPipeline<'_, C, S> {
    /// Runs one source to its end, adding to `counts` and calling `progress`
    /// after every batch.
    pub async fn run_source<R, L>(
        &self,
        source: &mut R,
        rejects: &mut L,
        counts: &mut Counts,
        progress: &mut (dyn FnMut(&Counts, u64) + Send),
    ) -> Result<()>
    where
        R: RecordSource,
        L: RejectLog,
    {
        let location = Arc::clone(source.location());
        let validator = Validator::new(Arc::clone(&location), source.decimal_mark());
        let lineage = Lineage {
            run_id: self.run_id.clone(),
            source: Arc::clone(&location),
            processing_type: self.processing_type,
        };
        let mut sequence = 0u64;
        let mut in_flight: Option<Batch> = None;
        loop {
            // Write the previous batch while reading the next one.
            let write = async {
                match in_flight.take() {
                    Some(batch) => self.write(batch, rejects, &location).await.map(Some),
                    None => Ok(None),
                }
            };
            let read = self.gather(source, &validator, counts);
            let (written, pending) = futures::join!(write, read);
            if let Some((report, offered)) = written? {
                counts.add_write(report, offered);
            }
            let pending = pending?;
            counts.bytes = counts.bytes.max(source.bytes_read());
            progress(counts, source.bytes_read());
            if pending.transactions.is_empty() && pending.rejected.is_empty() {
                break;
            }
            let (predictions, unclassified) = classify(
                self.classifier,
                &pending.transactions,
                &pending.positions,
                &location,
            )
            .await?;
            counts.classified += predictions.len() as u64;
            counts.unclassified += unclassified.len() as u64;
            sequence += 1;
            in_flight = Some(Batch {
                lineage: lineage.clone(),
                batch_id: batch_id(&self.run_id, &location, sequence),
                transactions: pending.transactions,
                positions: pending.positions,
                predictions,
                unclassified,
                rejected: pending.rejected,
                checkpoint: None,
            });
            if pending.exhausted {
                if let Some(batch) = in_flight.take() {
                    let (report, offered) = self.write(batch, rejects, &location).await?;
                    counts.add_write(report, offered);
                }
                progress(counts, source.bytes_read());
                break;
            }
        }
        counts.files += 1;
        Ok(())
    }

    /// Reads records until a batch is full or the source ends.
    async fn gather<R: RecordSource>(
        &self,
        source: &mut R,
        validator: &Validator,
        counts: &mut Counts,
    ) -> Result<Pending> {
        let mut pending = Pending {
            transactions: Vec::with_capacity(self.batch_size),
            positions: Vec::with_capacity(self.batch_size),
            rejected: Vec::new(),
            exhausted: false,
        };
        // Rejected rows count towards the batch too, so a file of nothing but
        // bad rows still moves in bounded steps.
        while pending.transactions.len() + pending.rejected.len() < self.batch_size {
            let record = source.next_record().await.map_err(|e| Error::Source {
                location: validator.location().to_string(),
                source: e,
            })?;
            let Some(record) = record else {
                pending.exhausted = true;
                break;
            };
            counts.read += 1;
            match validator.validate(&record) {
                Ok(tx) => {
                    counts.valid += 1;
                    pending.transactions.push(tx);
                    pending.positions.push(record.position);
                }
                Err(violation) => {
                    counts.invalid += 1;
                    pending.rejected.push(validator.reject(&record, violation));
                }
            }
        }
        Ok(pending)
    }

    /// Writes a batch; returns the sink's report and how many transactions
    /// the batch offered.
    async fn write<L: RejectLog>(
        &self,
        batch: Batch,
        rejects: &mut L,
        location: &str,
    ) -> Result<(WriteReport, u64)> {
        if !batch.rejected.is_empty() {
            rejects
                .append(&batch.rejected)
                .await
                .map_err(|e| Error::RejectLog { source: e })?;
        }
        let offered = batch.transactions.len() as u64;
        let report = self
            .sink
            .write_batch(batch)
            .await
            .map_err(|e| Error::Sink {
                location: location.to_owned(),
                source: e,
            })?;
        Ok((report, offered))
    }
}

/// Classifies a batch: its predictions, and the transactions the classifier
/// failed on (each with its position). A stage both pipelines share.
pub async fn classify<C: Classifier>(
    classifier: &C,
    transactions: &[Transaction],
    positions: &[Position],
    location: &str,
) -> Result<(Vec<Prediction>, Vec<Unclassified>)> {
    if transactions.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let outcomes = classifier
        .classify(transactions)
        .await
        .map_err(|e| Error::Classify {
            location: location.to_owned(),
            source: e,
        })?;
    if outcomes.len() != transactions.len() {
        return Err(Error::PredictionCount {
            expected: transactions.len(),
            got: outcomes.len(),
        });
    }
    let mut predictions = Vec::with_capacity(outcomes.len());
    let mut unclassified = Vec::new();
    for ((outcome, tx), position) in outcomes.into_iter().zip(transactions).zip(positions) {
        match outcome {
            Ok(prediction) => predictions.push(prediction),
            Err(failure) => unclassified.push(Unclassified {
                transaction_id: tx.id(),
                position: *position,
                failure,
            }),
        }
    }
    Ok((predictions, unclassified))
}

/// The id of the `sequence`-th batch of `source` in `run`: the same on a rerun
/// with the same run id.
fn batch_id(run: &RunId, source: &str, sequence: u64) -> Uuid {
    let name = format!("batch\0{run}\0{source}\0{sequence}");
    Uuid::new_v5(&identity::NAMESPACE, name.as_bytes())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::error::BoxError;
    use crate::ports::{ClassifyFailure, FailureClass, Outcome};
    use crate::record::{Column, RawRecord};
    use crate::transaction::DecimalMark;
    use crate::{ReferenceModel, model};

    /// Rows of `;`-separated fields in column order, from memory.
    struct Rows {
        location: Arc<str>,
        rows: Vec<Vec<u8>>,
        next: usize,
    }

    impl RecordSource for Rows {
        fn location(&self) -> &Arc<str> {
            &self.location
        }
        fn decimal_mark(&self) -> DecimalMark {
            DecimalMark::Comma
        }
        async fn next_record(&mut self) -> Result<Option<RawRecord<'_>>, BoxError> {
            let Some(row) = self.rows.get(self.next) else {
                return Ok(None);
            };
            self.next += 1;
            let mut fields = [None; 7];
            let mut count = 0;
            for (i, cell) in row.split(|&b| b == b';').enumerate() {
                if let Some(slot) = fields.get_mut(i) {
                    *slot = Some(cell);
                }
                count += 1;
            }
            Ok(Some(RawRecord {
                position: Position {
                    line: self.next as u64 + 1,
                    offset: 0,
                },
                raw: row,
                fields,
                field_count: count,
                expected_fields: Column::ALL.len(),
                oversized: None,
            }))
        }
        fn bytes_read(&self) -> u64 {
            0
        }
    }

    #[derive(Default)]
    struct Memory {
        batches: Mutex<Vec<Batch>>,
    }

    impl Sink for Memory {
        async fn start_run(&self, _: &RunSummary) -> Result<(), BoxError> {
            Ok(())
        }
        async fn write_batch(&self, batch: Batch) -> Result<WriteReport, BoxError> {
            let report = WriteReport {
                transactions: batch.transactions.len() as u64,
                predictions: batch.predictions.len() as u64,
                rejected: batch.rejected.len() as u64,
                unclassified: batch.unclassified.len() as u64,
            };
            self.batches.lock().map_err(|e| e.to_string())?.push(batch);
            Ok(report)
        }
        async fn record_file(&self, _: &RunId, _: &FileOutcome) -> Result<(), BoxError> {
            Ok(())
        }
        async fn finish_run(&self, _: &RunSummary) -> Result<(), BoxError> {
            Ok(())
        }
    }

    impl RejectLog for Vec<RejectedRecord> {
        async fn append(&mut self, rejected: &[RejectedRecord]) -> Result<(), BoxError> {
            self.extend_from_slice(rejected);
            Ok(())
        }
    }

    /// Fails the transactions whose source id is even.
    struct FailsEven;

    impl Classifier for FailsEven {
        async fn classify(&self, txs: &[Transaction]) -> Result<Vec<Outcome>, BoxError> {
            Ok(txs
                .iter()
                .map(|tx| {
                    let even = tx.source_id().parse::<u64>().is_ok_and(|n| n % 2 == 0);
                    if even {
                        Err(ClassifyFailure {
                            class: FailureClass::InvalidAnswer,
                            message: "unknown category \"Pets\"".into(),
                        })
                    } else {
                        Ok(model::ReferenceModel::predict(tx.id()))
                    }
                })
                .collect())
        }
    }

    fn rows(n: usize, bad_every: usize) -> Rows {
        let rows = (1..=n)
            .map(|i| {
                let amount = if i % bad_every == 0 { "x" } else { "-1,50" };
                format!("{i};Coffee;{amount};2024-01-02 03:04:05;Café;card;debit").into_bytes()
            })
            .collect();
        Rows {
            location: Arc::from("file:///in.csv"),
            rows,
            next: 0,
        }
    }

    fn run<C: Classifier>(classifier: &C, source: &mut Rows) -> (Counts, Vec<Batch>, usize) {
        let sink = Memory::default();
        let pipeline = BatchPipeline {
            classifier,
            sink: &sink,
            batch_size: 4,
            run_id: RunId::parse("test").expect("a run id"),
            processing_type: ProcessingType::Batch,
        };
        let mut counts = Counts::default();
        let mut rejects = Vec::new();
        futures::executor::block_on(pipeline.run_source(
            source,
            &mut rejects,
            &mut counts,
            &mut |_, _| {},
        ))
        .expect("the run");
        let batches = sink.batches.into_inner().expect("the batches");
        (counts, batches, rejects.len())
    }

    #[test]
    fn every_row_read_is_valid_or_rejected_and_every_valid_one_is_written() {
        let (counts, batches, rejected) = run(&ReferenceModel, &mut rows(10, 3));
        assert_eq!((counts.read, counts.valid, counts.invalid), (10, 7, 3));
        assert_eq!((counts.written, counts.predictions_written), (7, 7));
        assert_eq!(rejected, 3);
        // Batches of at most 4 rows, valid and rejected together.
        assert_eq!(batches.len(), 3);
        let lines: Vec<u64> = batches
            .iter()
            .flat_map(|b| b.positions.iter().map(|p| p.line))
            .collect();
        assert_eq!(lines, [2, 3, 5, 6, 8, 9, 11]);
    }

    #[test]
    fn a_failed_item_is_stored_without_prediction_and_the_others_go_on() {
        let (counts, batches, _) = run(&FailsEven, &mut rows(6, 100));
        assert_eq!((counts.classified, counts.unclassified), (3, 3));
        assert_eq!(counts.written, 6);
        let unclassified: Vec<u64> = batches
            .iter()
            .flat_map(|b| b.unclassified.iter().map(|u| u.position.line))
            .collect();
        assert_eq!(unclassified, [3, 5, 7]);
        let mut summary = RunSummary::start(
            RunId::parse("test").expect("a run id"),
            ProcessingType::Batch,
            Utc::now(),
        );
        summary.counts = counts;
        summary.finish(Utc::now(), None, ErrorBudget::UNLIMITED);
        assert_eq!(summary.status, RunStatus::SucceededWithRejects);
    }
}
