//! Dead-letter replays in a store: what `txflow dlq replay` sent back to
//! the stream, and whether the stream has stored it since (the
//! [`ReplayLedger`] port; both stores implement it).

use chrono::{DateTime, Utc};

use crate::error::BoxError;
use crate::ports::BoxFuture;

/// One letter replayed by one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    pub letter_topic: String,
    pub letter_partition: i32,
    pub letter_offset: i64,
    pub run_id: String,
    pub source_topic: String,
    pub transaction_key: Option<String>,
    pub error_class: String,
    pub error_rule: String,
    /// The attempt the replayed record is (2 for a first replay).
    pub attempt: i32,
}

/// A recorded replay, with what became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayRow {
    pub replay: Replay,
    pub replayed_at: DateTime<Utc>,
    /// The transaction (its key, a UUID) is in the database with a
    /// prediction.
    pub stored: bool,
}

/// The replays of dead letters, kept beside the rows.
pub trait ReplayLedger: Send + Sync {
    /// Records a replay (again for the same letter and run: no change).
    fn record_replay<'a>(&'a self, replay: &'a Replay) -> BoxFuture<'a, Result<(), BoxError>>;

    /// Every replay, oldest first, with whether its transaction is stored.
    fn replays(&self) -> BoxFuture<'_, Result<Vec<ReplayRow>, BoxError>>;
}
