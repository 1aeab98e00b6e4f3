//! Embedded schema migrations.

use tokio_postgres::Client;

use crate::error::{Error, Result};

/// Every migration, in order: (version, name, SQL).
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "initial", include_str!("../migrations/0001_initial.sql")),
    (
        2,
        "classification_failures",
        include_str!("../migrations/0002_classification_failures.sql"),
    ),
    (
        3,
        "run_files",
        include_str!("../migrations/0003_run_files.sql"),
    ),
    (
        4,
        "stream_offsets",
        include_str!("../migrations/0004_stream_offsets.sql"),
    ),
    (
        5,
        "predictions_without_foreign_key",
        include_str!("../migrations/0005_predictions_without_foreign_key.sql"),
    ),
    (6, "replays", include_str!("../migrations/0006_replays.sql")),
    (7, "models", include_str!("../migrations/0007_models.sql")),
    (
        8,
        "model_labels",
        include_str!("../migrations/0008_model_labels.sql"),
    ),
    (9, "review", include_str!("../migrations/0009_review.sql")),
];

/// An arbitrary constant: the advisory lock that serialises migrations.
const LOCK_KEY: i64 = 0x7478_666c_6f77; // "txflow"

/// Applies the migrations the database lacks. Safe to run from many
/// processes at once: they queue on an advisory lock and the later ones find
/// nothing to do. Returns the versions applied.
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>> {
    let tx = client
        .transaction()
        .await
        .map_err(Error::query("starting the migration"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(Error::query("taking the migration lock"))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS txflow_migrations (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .map_err(Error::query("creating txflow_migrations"))?;
    let row = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM txflow_migrations",
            &[],
        )
        .await
        .map_err(Error::query("reading the schema version"))?;
    let current: i32 = row.get(0);
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > known {
        return Err(Error::SchemaTooNew {
            found: current,
            known,
        });
    }
    let mut applied = Vec::new();
    for &(version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        let failed = |cause| Error::Migration {
            version,
            name,
            cause,
        };
        tx.batch_execute(sql).await.map_err(failed)?;
        tx.execute(
            "INSERT INTO txflow_migrations (version, name) VALUES ($1, $2)",
            &[&version, &name],
        )
        .await
        .map_err(failed)?;
        applied.push(version);
    }
    tx.commit()
        .await
        .map_err(Error::query("committing the migration"))?;
    Ok(applied)
}
