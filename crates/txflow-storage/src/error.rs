//! Errors of the object-store adapter. Each names the URL concerned.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{input:?} is not a usable input: {reason}")]
    InvalidInput { input: String, reason: String },
    #[error(
        "nothing at {url}: no such file, folder or prefix; check the path (and the bucket and endpoint for s3://)"
    )]
    NotFound { url: String },
    #[error("{url}: {source}")]
    Store {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{url}: {source}")]
    Csv {
        url: String,
        #[source]
        source: txflow_csv::Error,
    },
    #[error("writing {url}: {source}")]
    Write {
        url: String,
        #[source]
        source: std::io::Error,
    },
}
