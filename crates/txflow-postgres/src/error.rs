//! Errors of the PostgreSQL adapter. Messages carry the server's own words
//! (`database "x" does not exist`), not just "db error".

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to PostgreSQL at {url}: {}; check the URL, that the server runs and accepts this user", describe(.cause))]
    Connect {
        url: String,
        cause: tokio_postgres::Error,
    },
    #[error("applying migration {version} ({name}): {}", describe(.cause))]
    Migration {
        version: i32,
        name: &'static str,
        cause: tokio_postgres::Error,
    },
    #[error(
        "the database schema is at version {found}, newer than this txflow knows ({known}); \
         upgrade txflow"
    )]
    SchemaTooNew { found: i32, known: i32 },
    #[error("{what}: {}", describe(.cause))]
    Query {
        what: &'static str,
        cause: tokio_postgres::Error,
    },
}

impl Error {
    pub(crate) fn query(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Error {
        move |cause| Error::Query { what, cause }
    }
}

/// The server's message, with its detail and SQLSTATE, or the client's
/// error and its cause (I/O, TLS, protocol).
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut text = format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
        if let Some(detail) = db.detail() {
            text.push_str(&format!("; {detail}"));
        }
        return text;
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}
