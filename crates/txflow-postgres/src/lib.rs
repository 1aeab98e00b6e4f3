//! txflow's PostgreSQL adapter: a [`txflow_core::Sink`].
//!
//! - [`migrate`]: the embedded schema migrations, applied under an advisory
//!   lock so that parallel workers (Airflow tasks, consumers) can all start
//!   at once.
//! - [`PostgresSink`]: each batch is one database transaction: binary `COPY`
//!   into temporary staging tables, then `INSERT … SELECT … ON CONFLICT DO
//!   NOTHING` into the real ones, so a rerun adds nothing.
//! - `session`: the one connection, re-established when the server goes
//!   away; calls wait out an outage (the core's `OutagePolicy`) and
//!   [`Health`] tells `/health` meanwhile.

mod copy;
mod error;
pub mod metric;
mod migrate;
mod numeric;
mod session;
mod sink;

pub use error::{Error, Result};
pub use migrate::{MIGRATIONS, migrate};
pub use session::Health;
pub use sink::PostgresSink;

/// Connects to `url` (`postgres://user:pass@host:port/db`) and drives the
/// connection on the current Tokio runtime.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|cause| Error::Connect {
            url: redact(url),
            cause,
        })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::error!(error = %e, "PostgreSQL connection closed");
        }
    });
    Ok(client)
}

/// The URL with its password replaced by `***`, fit for messages and logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_never_print() {
        assert_eq!(
            super::redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(super::redact("postgres://h/db"), "postgres://h/db");
    }
}
