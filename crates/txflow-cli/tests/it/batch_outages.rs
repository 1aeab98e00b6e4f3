//! `txflow batch` when what it talks to goes away or is shared: the
//! database server stopped mid-run, the object store gone mid-file, two runs
//! into one SQLite file at once.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::harness::{Database, Run, count_at, txflow_command, wait_count_at};
use crate::servers::{PrivatePostgres, PrivateS3};

/// Writes `txflow generate --rows N --seed S` to `dir/name`.
fn generate(dir: &Path, name: &str, rows: u32, seed: u32) -> String {
    let path = dir.join(name);
    let path = path.to_str().expect("a UTF-8 path").to_owned();
    crate::harness::txflow(
        dir,
        &[
            "generate",
            "--rows",
            &rows.to_string(),
            "--seed",
            &seed.to_string(),
            "-o",
            &path,
        ],
    )
    .assert_code(0);
    path
}

/// `txflow batch` started in the background, as the harness's `txflow` runs it.
fn spawn_batch(dir: &Path, args: &[&str]) -> Child {
    txflow_command(dir, &[&["batch"], args].concat())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting txflow batch")
}

fn finish(child: Child) -> Run {
    child.wait_with_output().expect("txflow batch").into()
}

#[tokio::test]
async fn two_batch_runs_started_together_into_one_sqlite_file_both_complete() {
    for round in 0..3 {
        let dir = tempfile::tempdir().expect("a temp dir");
        let a = generate(dir.path(), "a.csv", 5_000, 10 + round);
        let b = generate(dir.path(), "b.csv", 5_000, 20 + round);
        // The embedded default (./txflow.db), created by whichever run wins.
        let first = spawn_batch(dir.path(), &[&a, "--summary-json", "-"]);
        let second = spawn_batch(dir.path(), &[&b, "--summary-json", "-"]);
        let (first, second) = (finish(first), finish(second));
        first.assert_code(0);
        second.assert_code(0);
        let db = rusqlite::Connection::open(dir.path().join("txflow.db")).expect("./txflow.db");
        let count: i64 = db
            .query_row("SELECT count(*) FROM transactions", [], |r| r.get(0))
            .expect("a count");
        assert_eq!(count, 10_000, "round {round}");
    }
}

#[tokio::test]
async fn a_batch_run_killed_with_9_says_in_the_ledger_what_it_committed_and_a_rerun_completes_it() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = generate(dir.path(), "big.csv", 100_000, 5);
    let path = dir.path().join("txflow.db");
    let url = format!("sqlite://{}", path.display());
    let args = [
        file.as_str(),
        "--database-url",
        &url,
        "--batch-size",
        "1000",
    ];
    let mut first = spawn_batch(dir.path(), &args);
    let stored = |db: &rusqlite::Connection| -> i64 {
        db.query_row("SELECT count(*) FROM transactions", [], |r| r.get(0))
            .unwrap_or(0)
    };
    let started = std::time::Instant::now();
    loop {
        if path.exists()
            && let Ok(db) = rusqlite::Connection::open(&path)
            && stored(&db) >= 10_000
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "10,000 rows not stored within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().expect("kill -9");
    first.wait().expect("the killed run");
    let db = rusqlite::Connection::open(&path).expect("the database");
    let at_kill = stored(&db);
    let (status, read, valid, invalid, written, predictions): (String, i64, i64, i64, i64, i64) =
        db.query_row(
            "SELECT status, rows_read, rows_valid, rows_invalid, rows_written, predictions_written
             FROM runs",
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )
        .expect("the killed run's row");
    let stored_predictions: i64 = db
        .query_row("SELECT count(*) FROM predictions", [], |r| r.get(0))
        .expect("a count");
    // No end was recorded, but every committed batch counted itself.
    assert_eq!(status, "running");
    assert_eq!(
        (written, predictions),
        (at_kill, stored_predictions),
        "the ledger against the tables"
    );
    assert_eq!(read, valid + invalid);
    assert!(
        valid >= written && at_kill < 100_000,
        "{valid} {written} {at_kill}"
    );
    drop(db);
    let rerun = finish(spawn_batch(dir.path(), &args));
    rerun.assert_code(0);
    let db = rusqlite::Connection::open(&path).expect("the database");
    assert_eq!(stored(&db), 100_000);
    let rerun_written: i64 = db
        .query_row(
            "SELECT rows_written FROM runs WHERE status <> 'running'",
            [],
            |r| r.get(0),
        )
        .expect("the rerun's row");
    assert_eq!(rerun_written, 100_000 - at_kill);
}

#[tokio::test]
async fn the_database_stopped_mid_batch_is_waited_for_and_the_run_completes_once() {
    let pg = PrivatePostgres::start();
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = generate(dir.path(), "big.csv", 300_000, 7);
    let run = spawn_batch(
        dir.path(),
        &[
            &file,
            "--database-url",
            &pg.url,
            "--batch-size",
            "2000",
            "--summary-json",
            "-",
        ],
    );
    wait_rows(&pg.url, 20_000).await;
    pg.stop();
    tokio::time::sleep(Duration::from_secs(5)).await;
    pg.start_again();
    let run = finish(run);
    run.assert_code(0);
    assert!(
        run.stderr.contains("the database is back"),
        "{}",
        run.stderr
    );
    assert_eq!(
        count_at(&pg.url, "SELECT count(*) FROM transactions").await,
        300_000
    );
    assert_eq!(
        count_at(&pg.url, "SELECT count(*) FROM predictions").await,
        300_000
    );
}

#[tokio::test]
async fn a_database_away_longer_than_allowed_fails_the_file_and_a_rerun_completes_it_once() {
    let pg = PrivatePostgres::start();
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = generate(dir.path(), "big.csv", 300_000, 8);
    let args = [
        file.as_str(),
        "--database-url",
        &pg.url,
        "--batch-size",
        "2000",
        "--db-max-outage",
        "2s",
        "--run-id",
        "outage-run",
        "--summary-json",
        "-",
    ];
    let run = spawn_batch(dir.path(), &args);
    wait_rows(&pg.url, 20_000).await;
    pg.stop();
    let run = finish(run);
    assert_ne!(run.status, Some(0), "{}", run.stdout);
    assert!(
        run.stderr.contains("unreachable") && run.stderr.contains("--db-max-outage"),
        "the message names the cause and the flag:\n{}",
        run.stderr
    );
    pg.start_again();
    // The summary of the stopped run is what the database holds.
    let first = run.summary();
    let stored = count_at(&pg.url, "SELECT count(*) FROM transactions").await;
    assert!((20_000..300_000).contains(&stored), "{stored}");
    assert_eq!(first["rows_written"], stored, "{first}");
    assert_eq!(first["rows_already_present"], 0, "{first}");
    assert!(first["rows_not_stored"].as_i64() > Some(0), "{first}");
    assert_eq!(
        first["rows_not_stored"].as_i64(),
        first["rows_valid"].as_i64().map(|v| v - stored),
        "{first}"
    );
    let again = finish(spawn_batch(dir.path(), &args));
    again.assert_code(0);
    let second = again.summary();
    assert_eq!(second["rows_already_present"], stored, "{second}");
    assert_eq!(second["rows_written"], 300_000 - stored, "{second}");
    assert_eq!(second["rows_not_stored"], 0, "{second}");
    assert_eq!(
        count_at(&pg.url, "SELECT count(*) FROM transactions").await,
        300_000
    );
    assert_eq!(
        count_at(&pg.url, "SELECT count(DISTINCT id) FROM transactions").await,
        300_000
    );
}

#[tokio::test]
async fn a_database_error_mid_file_leaves_a_summary_that_matches_the_database() {
    let db = Database::create().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = generate(dir.path(), "big.csv", 300_000, 10);
    let run = spawn_batch(
        dir.path(),
        &[
            &file,
            "--database-url",
            &db.url,
            "--batch-size",
            "2000",
            "--summary-json",
            "-",
        ],
    );
    wait_rows(&db.url, 20_000).await;
    // From now on every new row breaks a constraint: the next batch fails.
    db.client
        .batch_execute(
            "ALTER TABLE transactions ADD CONSTRAINT stop_here CHECK (source_line < 0) NOT VALID",
        )
        .await
        .expect("adding the constraint");
    let run = finish(run);
    run.assert_code(1);
    assert!(run.stderr.contains("stop_here"), "{}", run.stderr);
    let summary = run.summary();
    let stored = db.count("transactions", "").await;
    assert!(stored < 300_000, "{stored}");
    assert_eq!(summary["rows_written"], stored, "{summary}");
    assert_eq!(
        summary["predictions_written"],
        db.count("predictions", "").await
    );
    assert_eq!(summary["rows_already_present"], 0, "{summary}");
    // Rows were read that the database never got: the summary says so.
    assert!(summary["rows_not_stored"].as_i64() > Some(0), "{summary}");
    assert_eq!(
        summary["rows_not_stored"].as_i64(),
        summary["rows_valid"].as_i64().map(|v| v - stored),
        "{summary}"
    );
    assert!(
        run.stdout
            .contains(&format!("{stored} written (0 already present, ")),
        "{}",
        run.stdout
    );
    let (written, status): (i64, String) = {
        let row = db
            .client
            .query_one("SELECT rows_written, status FROM runs", &[])
            .await
            .expect("the run");
        (row.get(0), row.get(1))
    };
    assert_eq!((written, status.as_str()), (stored, "failed"));
}

/// Waits until the server holds at least `n` transactions (none while the
/// schema is not there yet).
async fn wait_rows(url: &str, n: i64) {
    let sql = "SELECT count(*) FROM transactions";
    wait_count_at(url, sql, n, Duration::from_secs(120), String::new).await;
}

#[tokio::test]
async fn the_object_store_away_mid_file_the_read_resumes_from_the_byte_reached() {
    let mut s3 = PrivateS3::start();
    let bucket = s3.root.path().join("data");
    std::fs::create_dir(&bucket).expect("a bucket");
    generate(&bucket, "big.csv", 400_000, 9);
    let db = Database::create().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let run = txflow_command(
        dir.path(),
        &[
            "batch",
            "s3://data/big.csv",
            "--database-url",
            &db.url,
            "--no-progress",
        ],
    )
    .env("AWS_ENDPOINT_URL", s3.endpoint())
    .env("AWS_ACCESS_KEY_ID", PrivateS3::ACCESS_KEY)
    .env("AWS_SECRET_ACCESS_KEY", PrivateS3::SECRET_KEY)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("starting txflow batch");
    wait_rows(&db.url, 40_000).await;
    s3.kill();
    // Longer than the S3 client's own retries (about 7 s here).
    tokio::time::sleep(Duration::from_secs(15)).await;
    s3.start_again();
    let run = finish(run);
    run.assert_code(0);
    assert!(run.stderr.contains("read resumed"), "{}", run.stderr);
    assert_eq!(db.count("transactions", "").await, 400_000);
    assert_eq!(
        db.count_sql("SELECT count(DISTINCT source_line) FROM transactions")
            .await,
        400_000
    );
}
