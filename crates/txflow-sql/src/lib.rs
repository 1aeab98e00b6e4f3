//! The SQL that txflow's two engines, PostgreSQL and SQLite, run as written,
//! kept once so that they cannot drift apart. Each statement uses only what
//! both dialects agree on: `$n` parameters (SQLite numbers `$`-named
//! parameters in order of first use, so binding by position works when they
//! first appear in order, as here), `ON CONFLICT … DO UPDATE SET … =
//! excluded.…`, `CAST(… AS TEXT)` where PostgreSQL must know a parameter's
//! type. Values are bound the engine's way (timestamps as `timestamptz` or
//! RFC 3339 text, counts as 64-bit integers).
//!
//! What the dialects do not share stays in each adapter: bulk writes
//! (binary `COPY` and staging tables or prepared inserts), arrays
//! (`= ANY($1)`), the models' and review's queries over JSON and UUIDs, and
//! comparisons where a cast would keep an engine from its index (the
//! replays' `stored`).

/// How both engines run their migrations: refinery, each engine's
/// `migrations/V{n}__{name}.sql` (numbered and named alike), all pending ones
/// in one transaction, recorded in [`schema::HISTORY_TABLE`].
pub mod schema {
    use refinery::Runner;

    /// Where refinery records the applied migrations.
    pub const HISTORY_TABLE: &str = "txflow_schema_history";

    /// The embedded migrations set to run as txflow runs them.
    pub fn runner(embedded: Runner) -> Runner {
        let mut runner = embedded.set_grouped(true);
        runner.set_migration_table_name(HISTORY_TABLE);
        runner
    }

    /// The latest embedded version.
    pub fn latest(embedded: &Runner) -> i32 {
        embedded
            .get_migrations()
            .iter()
            .map(refinery::Migration::version)
            .max()
            .unwrap_or(0)
    }

    /// The applied version a refinery failure names when the database was
    /// migrated by a newer txflow (a version above `latest` that this one
    /// does not have), if that is the failure.
    pub fn newer_applied(cause: &refinery::Error, latest: i32) -> Option<i32> {
        match cause.kind() {
            refinery::error::Kind::MissingVersion(m) if m.version() > latest => Some(m.version()),
            _ => None,
        }
    }

    /// (version, name) of every embedded migration, in order.
    pub fn versions(embedded: &Runner) -> Vec<(i32, String)> {
        let mut all: Vec<_> = embedded
            .get_migrations()
            .iter()
            .map(|m| (m.version(), m.name().to_owned()))
            .collect();
        all.sort();
        all
    }
}

/// The run ledger: `runs`, `run_files`, `rejected_records`.
pub mod ledger {
    /// A run's row, inserted or brought up to date: $1 run id, $2 kind,
    /// $3 status, $4 started at, $5 finished at, $6 files, $7 files failed,
    /// $8 bytes, $9 rows read, $10 valid, $11 invalid, $12 classified,
    /// $13 written, $14 predictions written, $15 error, $16 txflow version,
    /// $17 rows unclassified.
    pub const UPSERT_RUN: &str = "\
INSERT INTO runs (run_id, kind, status, started_at, finished_at, files, files_failed, bytes,
    rows_read, rows_valid, rows_invalid, rows_classified, rows_written, predictions_written,
    error, txflow_version, rows_unclassified)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
ON CONFLICT (run_id) DO UPDATE SET kind = excluded.kind, status = excluded.status,
    started_at = excluded.started_at, finished_at = excluded.finished_at,
    files = excluded.files, files_failed = excluded.files_failed, bytes = excluded.bytes,
    rows_read = excluded.rows_read, rows_valid = excluded.rows_valid,
    rows_invalid = excluded.rows_invalid, rows_classified = excluded.rows_classified,
    rows_written = excluded.rows_written, predictions_written = excluded.predictions_written,
    error = excluded.error, txflow_version = excluded.txflow_version,
    rows_unclassified = excluded.rows_unclassified";

    /// A committed batch's rows added to its run, in the batch's database
    /// transaction (`Batch::run_additions`): $1 read, $2 valid, $3 invalid,
    /// $4 classified, $5 unclassified, $6 newly written, $7 predictions
    /// written, $8 run id. (Numbered in the order they appear: SQLite
    /// binds `$N` by first appearance.)
    pub const ADD_BATCH: &str = "\
UPDATE runs SET rows_read = rows_read + $1, rows_valid = rows_valid + $2,
    rows_invalid = rows_invalid + $3, rows_classified = rows_classified + $4,
    rows_unclassified = rows_unclassified + $5, rows_written = rows_written + $6,
    predictions_written = predictions_written + $7
WHERE run_id = $8";

    /// What a run did with one file: $1 run id, $2 location, $3 status
    /// (`done` or `failed`), $4 rows read, $5 valid, $6 invalid, $7
    /// written, $8 error, $9 finished at.
    pub const UPSERT_FILE: &str = "\
INSERT INTO run_files (run_id, source_location, status, rows_read, rows_valid, rows_invalid,
    rows_written, error, finished_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (run_id, source_location) DO UPDATE SET status = excluded.status,
    rows_read = excluded.rows_read, rows_valid = excluded.rows_valid,
    rows_invalid = excluded.rows_invalid, rows_written = excluded.rows_written,
    error = excluded.error, finished_at = excluded.finished_at";

    /// The runs whose id starts with $1, oldest first: run id, status,
    /// files, files failed, rows read, invalid, written, error.
    pub const RUNS_BY_PREFIX: &str = "\
SELECT run_id, status, files, files_failed, rows_read, rows_invalid, rows_written, error
FROM runs WHERE substr(run_id, 1, length(CAST($1 AS TEXT))) = $1
ORDER BY started_at, run_id";

    /// Rejected rows by rule and source: rule, location, count; of run $1
    /// and rule $2 (each NULL for all).
    pub const REJECTION_COUNTS: &str = "\
SELECT rule, source_location, count(*) FROM rejected_records
WHERE (CAST($1 AS TEXT) IS NULL OR run_id = $1) AND (CAST($2 AS TEXT) IS NULL OR rule = $2)
GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2";

    /// The first $3 rejected rows of run $1 and rule $2 (each NULL for
    /// all): location, line, rule, field, message, raw, run id.
    pub const REJECTED_ROWS: &str = "\
SELECT source_location, source_line, rule, field, message, raw, run_id
FROM rejected_records
WHERE (CAST($1 AS TEXT) IS NULL OR run_id = $1) AND (CAST($2 AS TEXT) IS NULL OR rule = $2)
ORDER BY rejected_at, source_location, source_line LIMIT $3";
}

/// A stream consumer group's stored positions.
pub mod offsets {
    /// Partition and where group $1 resumes on topic $2: the next offset,
    /// or the first whose predictions' Kafka transaction was not seen
    /// committed.
    pub const STORED: &str = "\
SELECT partition, COALESCE(unpublished_from, next_offset) FROM stream_offsets
WHERE consumer_group = $1 AND topic = $2";
    /// Group $1's predictions of partition $3 of topic $2 are all published.
    pub const PUBLISHED: &str = "\
UPDATE stream_offsets SET unpublished_from = NULL
WHERE consumer_group = $1 AND topic = $2 AND partition = $3 AND unpublished_from IS NOT NULL";
}

/// What `txflow dlq replay` sent back to the stream.
pub mod replays {
    /// A replay (again for the same letter and run: no change): $1 letter
    /// topic, $2 partition, $3 offset, $4 run id, $5 source topic, $6
    /// transaction key, $7 error class, $8 rule, $9 attempt.
    pub const RECORD: &str = "\
INSERT INTO replays (letter_topic, letter_partition, letter_offset, run_id, source_topic,
    transaction_key, error_class, error_rule, attempt)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT DO NOTHING";
}
