//! Errors of the PostgreSQL adapter. Messages carry the server's own words
//! (`database "x" does not exist`), not just "db error".

use crate::target::{SslMode, mode_name};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to PostgreSQL at {url}: {}; check the URL, that the server runs and accepts this user", describe(.cause))]
    Connect {
        url: String,
        cause: tokio_postgres::Error,
    },
    #[error("invalid database URL {url}: {problem}")]
    Config { url: String, problem: String },
    #[error("cannot connect to PostgreSQL at {url} with TLS (sslmode={mode}): {}; {hint}", describe(.cause))]
    Tls {
        url: String,
        mode: &'static str,
        hint: &'static str,
        cause: tokio_postgres::Error,
    },
    #[error("migrating the schema: {}", describe_migration(.cause))]
    Migration { cause: refinery::Error },
    #[error(
        "the database schema is at version {found}, newer than this txflow knows ({known}); \
         upgrade txflow"
    )]
    SchemaTooNew { found: i32, known: i32 },
    #[error("the database holds a value txflow cannot read back: {what}")]
    Corrupt { what: String },
    #[error("{what}: {}", describe(.cause))]
    Query {
        what: &'static str,
        cause: tokio_postgres::Error,
    },
    #[error("{what}: cancelled (txflow is shutting down)")]
    Cancelled { what: &'static str },
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
            Error::Migration { cause } => migration_cause(cause).is_some_and(connection_lost),
            Error::Query { cause, .. } => connection_lost(cause),
            Error::Config { .. }
            | Error::Tls { .. }
            | Error::SchemaTooNew { .. }
            | Error::Corrupt { .. }
            | Error::Cancelled { .. }
            | Error::Outage { .. } => false,
        }
    }

    /// Whether the server refused a write because a row with the same key
    /// is stored (SQLSTATE 23505).
    pub(crate) fn is_unique_violation(&self) -> bool {
        matches!(self, Error::Query { cause, .. }
            if cause.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION))
    }

    /// A failed connection attempt; TLS failures (a certificate refused,
    /// no TLS on the server) get their own variant with the likely fix,
    /// and are not waited out.
    pub(crate) fn connect(url: &str, mode: SslMode, cause: tokio_postgres::Error) -> Error {
        let url = url.to_owned();
        match tls_hint(&cause) {
            Some(hint) => Error::Tls {
                url,
                mode: mode_name(mode),
                hint,
                cause,
            },
            None => Error::Connect { url, cause },
        }
    }

    pub(crate) fn query(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Error {
        move |cause| Error::Query { what, cause }
    }
}

/// The fix for a TLS failure, or `None` when `e` is not one (or is the
/// network failing during the handshake, which waiting may cure).
fn tls_hint(e: &tokio_postgres::Error) -> Option<&'static str> {
    // The driver's TLS kind is not public; its message is stable.
    if e.to_string() != "error performing TLS handshake" {
        return None;
    }
    let cause = std::error::Error::source(e)?;
    let Some(io) = cause.downcast_ref::<std::io::Error>() else {
        // The driver's own words: the server answered that it has no TLS.
        return Some(
            "the server does not offer TLS: turn ssl on in postgresql.conf, or connect with sslmode=prefer",
        );
    };
    let tls = io
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())?;
    Some(match tls {
        rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForName
            | rustls::CertificateError::NotValidForNameContext { .. },
        ) => {
            "the server's certificate does not name this host: connect by a name the certificate carries, or use sslmode=verify-ca"
        }
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => {
            "the server's certificate is not signed by the CA given: set sslrootcert to the CA that signed it"
        }
        rustls::Error::InvalidCertificate(
            rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. },
        ) => "the server's certificate has expired: renew it on the server",
        _ => "check sslmode and sslrootcert against the server's TLS set-up",
    })
}

impl Error {
    /// A refinery failure: a database migrated by a newer txflow is
    /// [`Error::SchemaTooNew`] (`known`: the latest embedded version).
    pub(crate) fn migration(cause: refinery::Error, known: i32) -> Error {
        match txflow_sql::schema::newer_applied(&cause, known) {
            Some(found) => Error::SchemaTooNew { found, known },
            None => Error::Migration { cause },
        }
    }
}

/// The server's error under a refinery failure, if it was one.
fn migration_cause(e: &refinery::Error) -> Option<&tokio_postgres::Error> {
    match e.kind() {
        refinery::error::Kind::Connection(_, source) => source.downcast_ref(),
        _ => None,
    }
}

fn describe_migration(e: &refinery::Error) -> String {
    match (e.kind(), migration_cause(e)) {
        (refinery::error::Kind::Connection(what, _), Some(cause)) => {
            format!("{what}: {}", describe(cause))
        }
        (refinery::error::Kind::DivergentVersion(applied, _), _) => format!(
            "migration {applied} was applied from a different file than this txflow's; \
             the database was migrated by another build of txflow"
        ),
        _ => e.to_string(),
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
