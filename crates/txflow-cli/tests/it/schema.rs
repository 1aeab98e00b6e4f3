//! The schema of both engines: migrations numbered and named alike, the
//! same tables and columns, databases made before refinery adopted, a newer
//! schema refused, and many processes migrating one database at once.

use std::path::{Path, PathBuf};

use crate::harness::Database;

/// The latest migration of both engines.
const LATEST: i64 = 10;

/// One engine's migration files, by version: (version, SQL).
fn migration_files(engine: &str) -> Vec<(i32, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../txflow-{engine}/migrations"));
    let mut files: Vec<(i32, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("a directory entry").path();
            let name = path.file_name().expect("a file name").to_string_lossy();
            let version = name
                .strip_prefix('V')
                .and_then(|rest| rest.split_once("__"))
                .and_then(|(v, _)| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} is not named V{{n}}__{{name}}.sql"));
            let sql = std::fs::read_to_string(&path).expect("a migration file");
            (version, sql)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn both_engines_number_and_name_their_migrations_alike() {
    let postgres = txflow_postgres::migrations();
    assert_eq!(postgres, txflow_sqlite::migrations());
    assert!(postgres.len() >= 9, "{postgres:?}");
    let versions: Vec<i32> = postgres.iter().map(|m| m.0).collect();
    assert_eq!(versions, (1..=versions.len() as i32).collect::<Vec<_>>());
}

async fn postgres_columns(db: &Database) -> Vec<(String, String)> {
    db.client
        .query(
            "SELECT table_name::text, column_name::text FROM information_schema.columns
             WHERE table_schema = 'public' ORDER BY table_name, ordinal_position",
            &[],
        )
        .await
        .expect("the columns")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn sqlite_columns(path: &Path) -> Vec<(String, String)> {
    let conn = rusqlite::Connection::open(path).expect("the file");
    let mut statement = conn
        .prepare(
            "SELECT m.name, c.name FROM sqlite_master m, pragma_table_info(m.name) c
             WHERE m.type IN ('table', 'view') ORDER BY m.name, c.cid",
        )
        .expect("the query");
    statement
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("the columns")
        .collect::<Result<_, _>>()
        .expect("the columns")
}

#[tokio::test]
async fn both_engines_have_the_same_tables_views_and_columns() {
    let db = Database::create().await;
    txflow_postgres::PostgresStore::connect(&db.url, "test")
        .await
        .expect("the store");
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("schema.db");
    txflow_sqlite::SqliteStore::open(&path, "test").expect("the store");
    let postgres = postgres_columns(&db).await;
    let sqlite = sqlite_columns(&path);
    assert!(postgres.len() > 50, "{postgres:?}");
    assert_eq!(postgres, sqlite);
}

async fn postgres_history(db: &Database) -> i64 {
    db.count(txflow_postgres::HISTORY_TABLE, "").await
}

#[tokio::test]
async fn a_postgres_database_migrated_before_refinery_is_adopted_without_running_anything() {
    let db = Database::create().await;
    // The schema as the earlier runner left it: every migration applied and
    // listed in txflow_migrations.
    for (_, sql) in migration_files("postgres")
        .into_iter()
        .filter(|(version, _)| *version <= 9)
    {
        db.client.batch_execute(&sql).await.expect("a migration");
    }
    db.client
        .batch_execute(
            "CREATE TABLE txflow_migrations (version integer PRIMARY KEY, name text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now());
             INSERT INTO txflow_migrations (version, name)
             SELECT v, 'm' || v FROM generate_series(1, 9) v;",
        )
        .await
        .expect("the earlier history");
    // Running a migration again would fail (its tables exist); the later
    // ones run.
    txflow_postgres::PostgresStore::connect(&db.url, "test")
        .await
        .expect("the store adopts the earlier history");
    assert_eq!(postgres_history(&db).await, LATEST);
    txflow_postgres::PostgresStore::connect(&db.url, "test")
        .await
        .expect("and opens it again");
    assert_eq!(postgres_history(&db).await, LATEST);
}

#[tokio::test]
async fn a_postgres_schema_newer_than_this_txflow_is_refused() {
    let db = Database::create().await;
    txflow_postgres::PostgresStore::connect(&db.url, "test")
        .await
        .expect("the store");
    db.client
        .batch_execute(&format!(
            "INSERT INTO {} (version, name, applied_on, checksum)
             VALUES (99, 'from_the_future', '2030-01-01T00:00:00Z', '1')",
            txflow_postgres::HISTORY_TABLE
        ))
        .await
        .expect("a newer version");
    let error = txflow_postgres::PostgresStore::connect(&db.url, "test")
        .await
        .expect_err("a newer schema");
    let text = error.to_string();
    assert!(
        text.contains("version 99, newer than this txflow knows (10)") && text.contains("upgrade"),
        "{text}"
    );
}

#[tokio::test]
async fn many_connections_migrating_one_new_postgres_database_at_once_all_succeed() {
    let db = Database::create().await;
    let opens = (0..6).map(|_| txflow_postgres::PostgresStore::connect(&db.url, "test"));
    for open in futures::future::join_all(opens).await {
        open.expect("every store opens");
    }
    assert_eq!(postgres_history(&db).await, LATEST);
}

fn sqlite_count(path: &Path, sql: &str) -> i64 {
    rusqlite::Connection::open(path)
        .expect("the file")
        .query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// A file as the earlier runner left it: `migrations` applied by hand and
/// `user_version` set.
fn earlier_sqlite_file(
    dir: &Path,
    migrations: std::ops::RangeInclusive<i32>,
    user_version: i32,
) -> PathBuf {
    let path = dir.join(format!("earlier-{user_version}.db"));
    let conn = rusqlite::Connection::open(&path).expect("the file");
    for (version, sql) in migration_files("sqlite") {
        if migrations.contains(&version) {
            conn.execute_batch(&sql).expect("a migration");
        }
    }
    conn.execute_batch(&format!("PRAGMA user_version = {user_version}"))
        .expect("the version");
    path
}

#[test]
fn sqlite_files_migrated_before_refinery_are_adopted_and_brought_up_to_date() {
    let dir = tempfile::tempdir().expect("a temp dir");
    // The earlier fifth migration held what are now 5 to 9; 10 came after.
    let complete = earlier_sqlite_file(dir.path(), 1..=9, 5);
    txflow_sqlite::SqliteStore::open(&complete, "test").expect("adopted");
    let history = format!("SELECT count(*) FROM {}", txflow_sqlite::HISTORY_TABLE);
    assert_eq!(sqlite_count(&complete, &history), LATEST);
    assert_eq!(sqlite_count(&complete, "PRAGMA user_version"), LATEST);
    // A file at 4 gets 5 to the latest run.
    let behind = earlier_sqlite_file(dir.path(), 1..=4, 4);
    txflow_sqlite::SqliteStore::open(&behind, "test").expect("brought up to date");
    assert_eq!(sqlite_count(&behind, &history), LATEST);
    assert_eq!(
        sqlite_count(&behind, "SELECT count(*) FROM review_queue"),
        0
    );
    assert_eq!(sqlite_columns(&behind), sqlite_columns(&complete));
}

#[test]
fn a_sqlite_schema_newer_than_this_txflow_is_refused() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("newer.db");
    txflow_sqlite::SqliteStore::open(&path, "test").expect("the store");
    rusqlite::Connection::open(&path)
        .expect("the file")
        .execute_batch(&format!(
            "INSERT INTO {} (version, name, applied_on, checksum)
             VALUES (99, 'from_the_future', '2030-01-01T00:00:00Z', '1')",
            txflow_sqlite::HISTORY_TABLE
        ))
        .expect("a newer version");
    let error = txflow_sqlite::SqliteStore::open(&path, "test").expect_err("a newer schema");
    let text = error.to_string();
    assert!(
        text.contains("newer.db is at schema version 99, newer than this txflow knows (10)"),
        "{text}"
    );
}

#[test]
fn many_connections_opening_one_new_sqlite_file_at_once_all_succeed() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("shared.db");
    let opened: Vec<_> = std::thread::scope(|scope| {
        let opens: Vec<_> = (0..6)
            .map(|_| scope.spawn(|| txflow_sqlite::SqliteStore::open(&path, "test").map(|_| ())))
            .collect();
        opens
            .into_iter()
            .map(|t| t.join().expect("a thread"))
            .collect()
    });
    for open in opened {
        open.expect("every store opens");
    }
    let history = format!("SELECT count(*) FROM {}", txflow_sqlite::HISTORY_TABLE);
    assert_eq!(sqlite_count(&path, &history), LATEST);
}
