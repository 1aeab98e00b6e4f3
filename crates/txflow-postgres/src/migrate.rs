//! Embedded schema migrations, run by refinery (`migrations/V{n}__{name}.sql`,
//! numbered and named as SQLite's) and recorded in `txflow_schema_history`.

use refinery::{Runner, Target};
use tokio_postgres::Client;

use crate::error::{Error, Result};

mod embedded {
    refinery::embed_migrations!("migrations");
}

pub use txflow_sql::schema::HISTORY_TABLE;

/// An arbitrary constant: the advisory lock that serialises migrations.
const LOCK_KEY: i64 = 0x7478_666c_6f77; // "txflow"

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

/// Applies the migrations the database lacks, all in one transaction. Safe
/// to run from many processes at once: they queue on an advisory lock and
/// the later ones find nothing to do. Returns the versions applied.
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(Error::query("taking the migration lock"))?;
    let applied = migrate_locked(client).await;
    // Released with the session too: a failure here after a failed migration
    // would be the connection's loss, reported with the migration's error.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await
        .map_err(Error::query("releasing the migration lock"));
    let applied = applied?;
    unlocked?;
    Ok(applied)
}

async fn migrate_locked(client: &mut Client) -> Result<Vec<i32>> {
    adopt_legacy_history(client).await?;
    let report = runner()
        .run_async(client)
        .await
        .map_err(|cause| Error::migration(cause, latest()))?;
    Ok(report
        .applied_migrations()
        .iter()
        .map(refinery::Migration::version)
        .collect())
}

/// Databases made before refinery ran the migrations recorded them in
/// `txflow_migrations` (same versions and names). The first run that finds
/// that table and no history records its versions as applied without running
/// them; the old table is left as it was.
async fn adopt_legacy_history(client: &mut Client) -> Result<()> {
    let row = client
        .query_one(
            "SELECT to_regclass('txflow_migrations') IS NOT NULL,
                    to_regclass($1) IS NOT NULL",
            &[&HISTORY_TABLE],
        )
        .await
        .map_err(Error::query("looking for an earlier schema history"))?;
    let (legacy, history): (bool, bool) = (row.get(0), row.get(1));
    if !legacy || history {
        return Ok(());
    }
    let row = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM txflow_migrations",
            &[],
        )
        .await
        .map_err(Error::query("reading the earlier schema version"))?;
    let version: i32 = row.get(0);
    if version > latest() {
        return Err(Error::SchemaTooNew {
            found: version,
            known: latest(),
        });
    }
    if version > 0 {
        runner()
            .set_target(Target::FakeVersion(version))
            .run_async(client)
            .await
            .map_err(|cause| Error::migration(cause, latest()))?;
        tracing::info!(version, "adopted the schema history of txflow_migrations");
    }
    Ok(())
}
