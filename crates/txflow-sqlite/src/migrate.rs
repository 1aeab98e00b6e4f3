//! Embedded schema migrations, run by refinery (`migrations/V{n}__{name}.sql`,
//! numbered and named as PostgreSQL's) and recorded in
//! `txflow_schema_history`.
//!
//! refinery's own SQLite driver reads the history in one transaction and
//! applies in another, so two processes opening a new file at once would both
//! apply. Here the whole run happens inside one `BEGIN IMMEDIATE`
//! transaction: the second process waits for the write lock and then finds
//! nothing to do. [`Locked`] is refinery's driver contract over that open
//! transaction.

use std::path::Path;

use refinery::{Migration, Runner, Target};
use refinery_core::traits::sync::{Migrate, Query, Transaction};
use rusqlite::Connection;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::{Error, Result, begin_write, query};

mod embedded {
    refinery::embed_migrations!("migrations");
}

pub use txflow_sql::schema::HISTORY_TABLE;

/// Every embedded migration: (version, name), in order.
pub fn migrations() -> Vec<(i32, String)> {
    txflow_sql::schema::versions(&embedded::migrations::runner())
}

fn latest() -> i32 {
    txflow_sql::schema::latest(&embedded::migrations::runner())
}

fn runner() -> Runner {
    txflow_sql::schema::runner(embedded::migrations::runner())
}

/// Applies the migrations the file lacks. Returns the versions applied.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<Vec<i32>> {
    let tx = begin_write(conn).map_err(query(path, "starting the migration"))?;
    let mut locked = Locked(&tx);
    adopt_user_version(&mut locked, path)?;
    let report = runner()
        .run(&mut locked)
        .map_err(|cause| migration_error(cause, path))?;
    // An older txflow reads `user_version` and refuses a newer schema
    // instead of migrating it again.
    tx.execute_batch(&format!("PRAGMA user_version = {}", latest()))
        .map_err(query(path, "recording the schema version"))?;
    tx.commit()
        .map_err(query(path, "committing the migration"))?;
    Ok(report
        .applied_migrations()
        .iter()
        .map(Migration::version)
        .collect())
}

/// Files made before refinery ran the migrations kept their version in
/// `user_version`, with five migrations: 1 to 4 as today, and a fifth that
/// held what are now 5 to 9. Such a file's versions are recorded as applied
/// without running them.
fn adopt_user_version(locked: &mut Locked<'_>, path: &Path) -> Result<()> {
    let conn = locked.0;
    let history: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [HISTORY_TABLE],
            |r| r.get(0),
        )
        .map_err(query(path, "looking for the schema history"))?;
    if history {
        return Ok(());
    }
    let version: i32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(query(path, "reading the earlier schema version"))?;
    let adopted = match version {
        0 => return Ok(()),
        1..=4 => version,
        5 => 9,
        found => {
            return Err(Error::SchemaTooNew {
                path: path.to_owned(),
                found,
                known: latest(),
            });
        }
    };
    runner()
        .set_target(Target::FakeVersion(adopted))
        .run(locked)
        .map_err(|cause| migration_error(cause, path))?;
    Ok(())
}

fn migration_error(cause: refinery::Error, path: &Path) -> Error {
    match txflow_sql::schema::newer_applied(&cause, latest()) {
        Some(found) => Error::SchemaTooNew {
            path: path.to_owned(),
            found,
            known: latest(),
        },
        None => Error::Migration {
            path: path.to_owned(),
            cause,
        },
    }
}

/// refinery's driver contract over a transaction already open on the
/// connection: statements run in it, and the caller commits.
struct Locked<'t>(&'t Connection);

impl Transaction for Locked<'_> {
    type Error = rusqlite::Error;

    fn execute<'a, T: Iterator<Item = &'a str>>(&mut self, queries: T) -> rusqlite::Result<usize> {
        let mut count = 0;
        for sql in queries {
            self.0.execute_batch(sql)?;
            count += 1;
        }
        Ok(count)
    }
}

impl Query<Vec<Migration>> for Locked<'_> {
    /// Reads refinery's history rows: version, name, applied_on (RFC 3339),
    /// checksum (a decimal u64), as its own drivers write them.
    fn query(&mut self, sql: &str) -> rusqlite::Result<Vec<Migration>> {
        let mut statement = self.0.prepare(sql)?;
        let rows = statement.query_map([], |row| {
            let applied_on: String = row.get(2)?;
            let applied_on = OffsetDateTime::parse(&applied_on, &Rfc3339).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, e.into())
            })?;
            let checksum: String = row.get(3)?;
            let checksum = checksum.parse::<u64>().map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, e.into())
            })?;
            Ok(Migration::applied(
                row.get(0)?,
                row.get(1)?,
                applied_on,
                checksum,
            ))
        })?;
        rows.collect()
    }
}

impl Migrate for Locked<'_> {}
