//! The domain core of txflow.
//!
//! It knows what a bank transaction is, how a raw record becomes one (or is
//! rejected, with the rule it broke), how a transaction gets a stable
//! identity, how the reference model classifies it, and how the batch
//! pipeline moves records from a source through a classifier into a sink.
//!
//! It does no I/O and depends on no client library: sources, classifiers and
//! sinks are traits ([`ports`]) that adapter crates implement. Policies (the
//! error budget, batching) return decisions; adapters act on them.
//!
//! Parts:
//! - [`transaction`]: the value types (`TransactionId`, `Amount`, `Side`, ...)
//!   and [`Transaction`] itself.
//! - [`record`]: a raw record as a source hands it over, before validation.
//! - [`validation`]: the named rules and [`Validator`].
//! - [`identity`]: UUIDs kept or derived deterministically.
//! - [`category`] and [`model`]: categories, label sets, the [`Model`] trait
//!   of in-process models, the reference and merchant models.
//! - [`event`]: [`PredictionEvent`], the contract of the predictions topic.
//! - [`ports`]: the traits adapters implement.
//! - [`connector`]: [`Connector`], the port of the predictions topic's sinks.
//! - [`pipeline`]: the batch pipeline (one input).
//! - [`batch`]: the batch use case: a run over a list of inputs, kept in
//!   the run ledger.
//! - [`run`]: a run's bookkeeping (id, counts, summary, error budget).
//! - [`metric`]: how a crate declares its metrics (the catalogues).
//! - [`resilience`]: retry (backoff) and circuit-breaker policies.
//! - [`secret`]: [`Secret`], a value no output shows.
//! - [`synth`]: the deterministic sample generator.

pub mod batch;
pub mod category;
pub mod connector;
pub mod error;
pub mod event;
pub mod identity;
pub mod metric;
pub mod model;
pub mod pipeline;
pub mod ports;
pub mod record;
pub mod registry;
pub mod replay;
pub mod resilience;
pub mod review;
pub mod run;
pub mod secret;
pub mod synth;
#[cfg(test)]
mod testing;
pub mod transaction;
pub mod validation;

pub use category::{Category, InvalidCategory, LabelSet, LabelSetError};
pub use connector::{Connector, ConnectorError, Refused, Resume, SinkRecord};
pub use error::{BoxError, Error, Result};
pub use event::{PREDICTION_EVENT_VERSION, PredictionEvent};
pub use model::{InProcess, MerchantModel, Model, REFERENCE_LABELS, ReferenceModel};
pub use ports::{
    Batch, Checkpoint, Classifier, ClassifyFailure, FailureClass, OffsetStore, Outcome,
    RecordSource, RejectLog, RunLedger, Sink, Unclassified,
};
pub use record::{Column, Oversized, Position, RawRecord};
pub use review::{
    Label, LabelError, LabelSource, LabeledTransaction, Progress, QueueFilter, QueuedItem, Ranked,
    ReviewBelow, ReviewRequest, ReviewStore,
};
pub use run::{
    Counts, ErrorBudget, FileOutcome, Lineage, ProcessingType, RejectionQuery, Rejections, RunId,
    RunRecord, RunStatus, RunSummary, StoredRejection,
};
pub use secret::Secret;
pub use transaction::{Amount, Prediction, Side, Transaction, TransactionId, TransactionParts};
pub use validation::{RejectedRecord, Rule, Validator, Violation};
