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

impl Replay {
    /// The replayed letter's name: `topic/partition/offset`.
    pub fn letter(&self) -> String {
        format!(
            "{}/{}/{}",
            self.letter_topic, self.letter_partition, self.letter_offset
        )
    }
}

/// What became of a replayed letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// Its transaction is in the database with a prediction.
    Stored,
    /// The replayed record failed again: the new letter's name and class.
    DeadLetteredAgain { letter: String, class: String },
    /// Neither yet: the stream has not reached it.
    NotProcessedYet,
}

impl ReplayOutcome {
    /// The outcome of `row`, given the letter (if any) that names the
    /// replayed one as its origin: `(name, class)`.
    pub fn of(row: &ReplayRow, failed_again: Option<(String, String)>) -> ReplayOutcome {
        if row.stored {
            ReplayOutcome::Stored
        } else if let Some((letter, class)) = failed_again {
            ReplayOutcome::DeadLetteredAgain { letter, class }
        } else {
            ReplayOutcome::NotProcessedYet
        }
    }
}

impl std::fmt::Display for ReplayOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplayOutcome::Stored => f.write_str("stored"),
            ReplayOutcome::DeadLetteredAgain { letter, class } => {
                write!(f, "dead-lettered again as {letter} ({class})")
            }
            ReplayOutcome::NotProcessedYet => f.write_str("not processed yet"),
        }
    }
}

/// The replays of dead letters, kept beside the rows.
pub trait ReplayLedger: Send + Sync {
    /// Records a replay (again for the same letter and run: no change).
    fn record_replay<'a>(&'a self, replay: &'a Replay) -> BoxFuture<'a, Result<(), BoxError>>;

    /// Every replay, oldest first, with whether its transaction is stored.
    fn replays(&self) -> BoxFuture<'_, Result<Vec<ReplayRow>, BoxError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(stored: bool) -> ReplayRow {
        ReplayRow {
            replay: Replay {
                letter_topic: "t-failed".into(),
                letter_partition: 0,
                letter_offset: 7,
                run_id: "r".into(),
                source_topic: "t".into(),
                transaction_key: None,
                error_class: "classification".into(),
                error_rule: "classifier".into(),
                attempt: 2,
            },
            replayed_at: DateTime::<Utc>::UNIX_EPOCH,
            stored,
        }
    }

    #[test]
    fn stored_wins_then_a_new_letter_then_not_yet() {
        let again = || Some(("t-failed/1/3".to_owned(), "decode".to_owned()));
        assert_eq!(
            ReplayOutcome::of(&row(true), again()),
            ReplayOutcome::Stored
        );
        let failed = ReplayOutcome::of(&row(false), again());
        assert_eq!(
            failed.to_string(),
            "dead-lettered again as t-failed/1/3 (decode)"
        );
        assert_eq!(
            ReplayOutcome::of(&row(false), None).to_string(),
            "not processed yet"
        );
        assert_eq!(row(false).replay.letter(), "t-failed/0/7");
    }
}
