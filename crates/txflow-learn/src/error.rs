//! Why training, loading or evaluating a model failed.

/// The crate's errors. A model file's problems say what is wrong with it;
/// the caller adds the file's name.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "not a txflow model: it does not start with the .txm signature (make one with `txflow train`)"
    )]
    NotAModel,
    #[error("model format version {0}: this txflow reads version {supported}; retrain the model with this txflow, or use the txflow that made it", supported = crate::file::FORMAT_VERSION)]
    UnsupportedVersion(u32),
    #[error("truncated: {len} bytes where the file's own sizes need {needed}; copy the file again")]
    Truncated { len: usize, needed: usize },
    #[error("corrupted: its SHA-256 does not match its contents; copy the file again or retrain")]
    Corrupted,
    #[error("its header is not valid: {0}")]
    Header(String),
    #[error("its contents are not consistent: {0}")]
    Inconsistent(String),
    #[error("cannot train: {0}")]
    Options(String),
    #[error("cannot train on these categories: {0}")]
    Labels(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
