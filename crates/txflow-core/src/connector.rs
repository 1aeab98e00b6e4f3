//! The connector port: what a sink of the predictions topic implements.
//!
//! A connector writes one partition's events idempotently and says where
//! each partition resumes; everything else (the consumer group, buffering,
//! dead letters, pausing while the store is away, metrics) is the sink
//! member's, the same for every connector. Adding a store is adding one
//! [`Connector`] and one registry line.
//!
//! The methods return boxed futures so that the binary can hold any
//! connector as `Box<dyn Connector>`, picked by the URL's scheme.

use crate::error::BoxError;
use crate::event::PredictionEvent;
pub use crate::ports::BoxFuture;
use std::collections::HashMap;

/// One record of the predictions topic, decoded, with where it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkRecord {
    pub partition: i32,
    pub offset: i64,
    pub event: PredictionEvent,
}

/// A record the store refused for its content (a mapping conflict, a value
/// out of range): it goes to the dead-letter topic; the others are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Its index in the slice handed to [`Connector::write`].
    pub index: usize,
    /// A short name of the reason (`mapping`, `invalid_value`, ...).
    pub rule: String,
    pub message: String,
}

/// Why a write or a resume failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The store is away, busy or throttling (a refused connection, a 5xx,
    /// a 429): the member stops fetching, waits and tries the same records
    /// again. Nothing is dead-lettered.
    #[error("the store is unavailable: {0}")]
    Unavailable(BoxError),
    /// A failure that waiting does not cure (bad credentials, a missing
    /// bucket): the member stops with an error.
    #[error("{0}")]
    Fatal(BoxError),
}

/// Where each partition of a topic resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// The store keeps it, written with the data: the next offset of each
    /// partition it has seen (the others start at the beginning).
    Stored(HashMap<i32, i64>),
    /// The store cannot keep offsets with the data: the consumer group's
    /// offsets committed after each acknowledged write are used, and the
    /// writes must be idempotent (a replay overwrites, never adds).
    Committed,
}

/// A store the predictions topic is fanned out to.
pub trait Connector: Send + Sync {
    /// The kind, as in the default group `txflow-sink-<kind>` and in metrics.
    fn kind(&self) -> &'static str;

    /// Where the partitions of `topic` resume. `assigned` are the partitions
    /// this member has just been given: what an unfinished write left in
    /// them may be cleaned up. Empty when the member only looks (it must not
    /// touch partitions another member may be writing).
    fn resume<'a>(
        &'a self,
        topic: &'a str,
        assigned: &'a [i32],
    ) -> BoxFuture<'a, Result<Resume, ConnectorError>>;

    /// Writes one partition's records (in offset order, no gaps since the
    /// resume point or the previous write) so that writing them again adds
    /// nothing. Returns the records refused for their content, by index.
    fn write<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
        records: &'a [SinkRecord],
    ) -> BoxFuture<'a, Result<Vec<Refused>, ConnectorError>>;

    /// A one-line description for logs (credentials hidden).
    fn describe(&self) -> String;
}
