//! Errors of the PostgreSQL adapter.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "cannot connect to PostgreSQL at {url}: {source}; check the URL, that the server runs and accepts this user"
    )]
    Connect {
        url: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("applying migration {version} ({name}): {source}")]
    Migration {
        version: i32,
        name: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(
        "the database schema is at version {found}, newer than this txflow knows ({known}); \
         upgrade txflow"
    )]
    SchemaTooNew { found: i32, known: i32 },
    #[error("{what}: {source}")]
    Query {
        what: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
}

impl Error {
    pub(crate) fn query(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Error {
        move |source| Error::Query { what, source }
    }
}
