//! The predictions event: what txflow publishes for every classified
//! transaction, and what the sink connectors read back.
//!
//! Its wire form (JSON, `schemas/prediction-event.v1.json`) is written and
//! read by `txflow-kafka`; this is the typed value both ends agree on.

use chrono::{DateTime, Utc};

use crate::record::Position;
use crate::run::Lineage;
use crate::transaction::{Prediction, Transaction};

/// The version of the event's contract, in the `schema-version` header and
/// the JSON's `schema` field (`txflow.prediction.v1`).
pub const PREDICTION_EVENT_VERSION: u32 = 1;

/// A classified transaction, keyed by its id, with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionEvent {
    pub transaction: Transaction,
    pub prediction: Prediction,
    /// When the prediction was made.
    pub predicted_at: DateTime<Utc>,
    /// The run, how the record arrived, and its source location.
    pub lineage: Lineage,
    /// Where in the source: the CSV line and byte offset, or the Kafka
    /// offset (both fields).
    pub position: Option<Position>,
    /// The prediction was under the review threshold and waits for a
    /// person (`--review-below`).
    pub needs_review: bool,
}
