//! txflow's PostgreSQL adapter: a [`txflow_core::Sink`].
//!
//! - [`migrate`]: the embedded schema migrations (refinery, numbered and
//!   named as SQLite's), applied under an advisory lock so that parallel
//!   workers (Airflow tasks, consumers) can all start at once.
//! - [`PostgresStore`]: each batch is one database transaction: binary `COPY`
//!   into temporary staging tables, then `INSERT … SELECT … ON CONFLICT DO
//!   NOTHING` into the real ones, so a rerun adds nothing.
//! - [`Target`]: the database URL with libpq's `sslmode`/`sslrootcert`;
//!   every connection is made through it (TLS by rustls).
//! - `models`: registered model versions, reclassification and diffs
//!   (`txflow models`, `reclassify`, `diff`).
//! - `replays`: the `replays` table of `txflow dlq replay`.
//! - `review`: the review queue (written with each batch) and people's
//!   labels: the core's `ReviewStore`.
//! - `session`: the one connection, re-established when the server goes
//!   away; calls wait out an outage (the core's `OutagePolicy`) and
//!   [`Health`] tells `/health` meanwhile.

mod connector;
mod copy;
mod error;
mod ledger;
pub mod metric;
mod migrate;
mod models;
mod numeric;
mod replays;
mod review;
mod session;
mod sink;
mod target;

pub use connector::PostgresConnector;
pub use error::{Error, Result};
pub use migrate::{HISTORY_TABLE, migrate, migrations};
pub use session::Health;
pub use sink::PostgresStore;
pub use target::{SslMode, Target};

/// The URL with its password (in the user part or a `password=`
/// parameter) replaced by `***`, fit for messages and logs.
pub fn redact(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut shown = match base.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
                None => base.to_owned(),
            },
            None => base.to_owned(),
        },
        None => base.to_owned(),
    };
    if let Some(query) = query {
        let pairs: Vec<&str> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some(("password", _)) => "password=***",
                _ => pair,
            })
            .collect();
        shown.push('?');
        shown.push_str(&pairs.join("&"));
    }
    shown
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
        assert_eq!(
            super::redact("postgres://u@h/db?sslmode=require&password=secret"),
            "postgres://u@h/db?sslmode=require&password=***"
        );
    }
}
