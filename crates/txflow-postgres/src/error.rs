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
    #[error(
        "{what}: the database was unreachable for {}s, longer than allowed (--db-max-outage); last error: {last}",
        waited.as_secs()
    )]
    Outage {
        what: &'static str,
        waited: std::time::Duration,
        last: Box<Error>,
    },
}

impl Error {
    /// Whether the server was unreachable (refused, restarted, connection
    /// lost), as opposed to refusing the request itself: only then is
    /// waiting and trying again useful.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Connect { cause, .. } => match cause.as_db_error() {
                // Wrong password, unknown database or role: waiting will not help.
                Some(db) => connection_lost_code(db.code().code()),
                None => true,
            },
            Error::Migration { cause, .. } | Error::Query { cause, .. } => connection_lost(cause),
            Error::SchemaTooNew { .. } | Error::Outage { .. } => false,
        }
    }

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

/// The connection broke: closed, an I/O error, or the server going down.
fn connection_lost(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.as_db_error() {
        Some(db) => connection_lost_code(db.code().code()),
        None => std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()),
    }
}

/// SQLSTATE class 08 (connection exception), admin or crash shutdown, and
/// "the database system is starting up / shutting down".
fn connection_lost_code(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
}
