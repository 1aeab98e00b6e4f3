//! Errors of the core: what can stop a pipeline run.

/// The error type adapters hand back through a port.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a pipeline run stopped. Invalid rows are not errors: they are
/// [`crate::RejectedRecord`]s and the run goes on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The source could not be read (I/O, a malformed CSV stream).
    #[error("reading {location}: {source}")]
    Source {
        location: String,
        #[source]
        source: BoxError,
    },
    /// The classifier failed for a whole batch.
    #[error("classifying a batch from {location}: {source}")]
    Classify {
        location: String,
        #[source]
        source: BoxError,
    },
    /// The classifier answered with the wrong number of predictions.
    #[error(
        "the classifier returned {got} predictions for {expected} transactions; \
         check that the model service answers one item per transaction"
    )]
    PredictionCount { expected: usize, got: usize },
    /// The sink refused a batch.
    #[error("writing a batch from {location}: {source}")]
    Sink {
        location: String,
        #[source]
        source: BoxError,
    },
    /// The run ledger could not record what the run did.
    #[error("{what}: {source}")]
    Ledger {
        what: &'static str,
        #[source]
        source: BoxError,
    },
    /// The rejected-rows log could not be written.
    #[error("writing rejected rows: {source}")]
    RejectLog {
        #[source]
        source: BoxError,
    },
}

/// `error: cause: cause…`, each told once: a typed error of ours says its
/// cause in its own message (so that a log line with `%error` is whole) and
/// also returns it from `source()` (so that the chain can be walked); here a
/// cause whose text is already in what is written is left out.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    for cause in std::iter::successors(Some(error), |e| e.source()) {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}
