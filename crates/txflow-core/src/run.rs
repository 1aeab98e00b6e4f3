//! A run's bookkeeping: its id, kind and lineage, its counts, outcome and
//! error budget, and what the ledger keeps of it ([`RunRecord`],
//! [`FileOutcome`], [`Rejections`]). The batch pipeline and the stream
//! member fill these in; [`crate::ports::RunLedger`] stores them.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

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
    /// Predictions under the review threshold newly queued for a person.
    pub queued: u64,
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
    pub(crate) fn add_write(&mut self, report: WriteReport, offered: u64) {
        self.written += report.transactions;
        self.present += offered.saturating_sub(report.transactions);
        self.predictions_written += report.predictions;
        self.queued += report.queued;
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

    /// The status a store wrote with [`RunStatus::as_str`].
    pub fn parse(s: &str) -> Option<RunStatus> {
        [
            RunStatus::Running,
            RunStatus::Succeeded,
            RunStatus::SucceededWithRejects,
            RunStatus::ErrorRateExceeded,
            RunStatus::Failed,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }

    /// Whether the run finished within its error budget.
    pub fn is_success(self) -> bool {
        matches!(self, RunStatus::Succeeded | RunStatus::SucceededWithRejects)
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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

/// Which rejected batch rows to read: of one run and of one rule (each
/// optional, the exact id or name), and at most `limit` of the rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RejectionQuery {
    pub run: Option<String>,
    pub rule: Option<String>,
    pub limit: i64,
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
    pub status: RunStatus,
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
            queued: self.queued - before.queued,
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

/// What a sink actually added: rows already present are not counted, so a
/// rerun of the same input reports zeros.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteReport {
    pub transactions: u64,
    pub predictions: u64,
    pub rejected: u64,
    pub unclassified: u64,
    /// Predictions newly queued for review.
    pub queued: u64,
}

impl std::ops::AddAssign for WriteReport {
    fn add_assign(&mut self, other: WriteReport) {
        self.transactions += other.transactions;
        self.predictions += other.predictions;
        self.rejected += other.rejected;
        self.unclassified += other.unclassified;
        self.queued += other.queued;
    }
}
