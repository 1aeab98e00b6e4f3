//! End-to-end tests of `txflow batch` against the real PostgreSQL and S3
//! servers of `scripts/harness.sh`, and against SQLite.

mod batch_outages;
mod connectors;
mod delta;
mod dlq;
mod fuzz_replay;
mod harness;
mod kafka_secured;
mod kafka_settings;
mod kafka_transactions;
mod learned;
mod models;
mod observability;
mod publish;
mod review;
mod schema;
mod secrets;
mod serve;
mod serve_auth;
mod servers;
mod sink_contract;
mod stream;
mod survival;
mod tls;
mod traces;

use harness::{Bucket, Database, reference_file, txflow};
use txflow_core::{REFERENCE_LABELS, ReferenceModel, TransactionId};

fn reference_category(id: uuid::Uuid) -> &'static str {
    REFERENCE_LABELS[ReferenceModel::index(TransactionId::from_uuid(id))]
}

const HEADER: &str = "id;description;amount;timestamp;merchant;operation_type;side\n";

/// A small reference-format file: lines 2 and 4 valid, the rest each
/// breaking one rule.
const MIXED: &str = "id;description;amount;timestamp;merchant;operation_type;side
1;Card expense at EDF;-952,40;2023-11-28 06:35:12;EDF;card;debit
2;Bad amount;-12,3x;2023-11-28 06:35:12;EDF;card;debit
3;Salary;2500,00;2023-11-30 09:00:00;ACME;transfer;credit
4;Wrong sign;15,00;2023-11-28 06:35:12;Shop;card;debit
5;Bad date;-1,00;2023-13-45 99:00:00;Shop;card;debit
6;Bad side;-1,00;2023-11-28 06:35:12;Shop;card;sideways
7;No op;-1,00;2023-11-28 06:35:12;Shop;;debit
8;Too precise;-1,005;2023-11-28 06:35:12;Shop;card;debit
9;short row;-1,00
";

#[tokio::test]
async fn the_reference_file_from_s3_gives_10000_transactions_and_a_rerun_adds_none() {
    let db = Database::create().await;
    let bucket = Bucket::new();
    let body = std::fs::read(reference_file()).expect("reading the reference file");
    let url = bucket.put("in/transactions_fr.csv", body).await;
    let dir = tempfile::tempdir().expect("a temp dir");

    let first = txflow(
        dir.path(),
        &[
            "batch",
            &url,
            "--database-url",
            &db.url,
            "--run-id",
            "first",
            "--summary-json",
            "-",
        ],
    );
    first.assert_code(0);
    let summary = first.summary();
    assert_eq!(summary["status"], "succeeded");
    assert_eq!(summary["rows_read"], 10_000);
    assert_eq!(summary["rows_written"], 10_000);
    assert_eq!(summary["predictions_written"], 10_000);
    assert_eq!(db.count("transactions", "").await, 10_000);
    assert_eq!(db.count("predictions", "").await, 10_000);
    assert_eq!(db.count("rejected_records", "").await, 0);

    let second = txflow(
        dir.path(),
        &[
            "batch",
            &url,
            "--database-url",
            &db.url,
            "--run-id",
            "second",
            "--summary-json",
            "-",
        ],
    );
    second.assert_code(0);
    assert_eq!(second.summary()["rows_valid"], 10_000);
    assert_eq!(second.summary()["rows_written"], 0);
    assert!(
        second.stdout.contains("0 written (10000 already present)"),
        "{}",
        second.stdout
    );
    assert_eq!(db.count("transactions", "").await, 10_000);
    assert_eq!(db.count("predictions", "").await, 10_000);
    assert_eq!(db.count("runs", "status = 'succeeded'").await, 2);

    // Lineage of one row, and its category as the reference model computes it.
    let row = db
        .client
        .query_one(
            "SELECT t.id, t.amount::text, t.merchant, t.run_id, t.source_location, t.source_line, \
                    t.processing_type, p.category, p.confidence, p.model_version
             FROM transactions t JOIN predictions p ON p.transaction_id = t.id
             WHERE t.source_id = '1'",
            &[],
        )
        .await
        .expect("the row of source id 1");
    let id: uuid::Uuid = row.get(0);
    assert_eq!(row.get::<_, String>(1), "-952.40");
    assert_eq!(row.get::<_, Option<String>>(2).as_deref(), Some("EDF"));
    assert_eq!(row.get::<_, String>(3), "first");
    assert_eq!(row.get::<_, String>(4), url);
    assert_eq!(row.get::<_, i64>(5), 2);
    assert_eq!(row.get::<_, String>(6), "batch");
    assert_eq!(row.get::<_, String>(7), reference_category(id));
    assert_eq!(row.get::<_, f64>(8), 1.0);
    assert_eq!(row.get::<_, String>(9), ReferenceModel::VERSION);

    let totals: i64 = db
        .client
        .query_one("SELECT sum(transactions)::bigint FROM category_totals", &[])
        .await
        .expect("category_totals")
        .get(0);
    assert_eq!(totals, 10_000);
}

#[tokio::test]
async fn a_file_missing_a_column_writes_nothing_and_names_the_file_and_column() {
    let db = Database::create().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("no_side.csv");
    std::fs::write(
        &file,
        "id;description;amount;timestamp;merchant;operation_type\n1;x;-1,00;2023-11-28 06:35:12;EDF;card\n",
    )
    .expect("writing the file");

    let run = txflow(
        dir.path(),
        &["batch", "no_side.csv", "--database-url", &db.url],
    );
    run.assert_code(1);
    assert!(run.stderr.contains("no_side.csv"), "{}", run.stderr);
    assert!(run.stderr.contains("side"), "{}", run.stderr);
    assert!(run.stdout.contains("failed"), "{}", run.stdout);
    assert_eq!(db.count("transactions", "").await, 0);
    assert_eq!(db.count("rejected_records", "").await, 0);
    assert_eq!(
        db.count("runs", "status = 'failed' AND files_failed = 1")
            .await,
        1
    );
}

#[tokio::test]
async fn a_file_mixing_good_and_bad_rows_stores_the_good_and_records_every_bad_one() {
    let db = Database::create().await;
    let bucket = Bucket::new();
    let url = bucket.put("in/mixed.csv", MIXED).await;
    let dir = tempfile::tempdir().expect("a temp dir");

    let run = txflow(
        dir.path(),
        &[
            "batch",
            &url,
            "--database-url",
            &db.url,
            "--run-id",
            "mixed",
            "--summary-json",
            "-",
        ],
    );
    run.assert_code(0);
    let summary = run.summary();
    assert_eq!(summary["status"], "succeeded_with_rejects");
    assert_eq!(summary["rows_read"], 9);
    assert_eq!(summary["rows_valid"], 2);
    assert_eq!(summary["rows_invalid"], 7);

    let stored: Vec<String> = db
        .client
        .query(
            "SELECT source_id FROM transactions ORDER BY source_line",
            &[],
        )
        .await
        .expect("transactions")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(stored, ["1", "3"]);

    let rejected: Vec<(i64, String, Option<String>, String, String)> = db
        .client
        .query(
            "SELECT source_line, rule, field, raw, run_id FROM rejected_records ORDER BY source_line",
            &[],
        )
        .await
        .expect("rejected_records")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    let expected = [
        (3, "amount_format", Some("amount")),
        (5, "side_sign", Some("amount")),
        (6, "timestamp_format", Some("timestamp")),
        (7, "side_value", Some("side")),
        (8, "required", Some("operation_type")),
        (9, "amount_precision", Some("amount")),
        (10, "row_shape", None),
    ];
    let got: Vec<(i64, &str, Option<&str>)> = rejected
        .iter()
        .map(|(line, rule, field, _, _)| (*line, rule.as_str(), field.as_deref()))
        .collect();
    assert_eq!(got, expected);
    for (line, _, _, raw, run_id) in &rejected {
        let source_line = MIXED.lines().nth(*line as usize - 1).expect("the line");
        assert_eq!(raw, source_line);
        assert_eq!(run_id, "mixed");
    }

    // The same rows, in the errors file beside the input.
    let errors = bucket
        .get("in/_txflow_errors/mixed.csv")
        .await
        .expect("the errors file in s3://…/in/_txflow_errors/mixed.csv");
    let mut lines = errors.lines();
    assert_eq!(
        lines.next(),
        Some("source,line,offset,rule,field,message,raw")
    );
    assert_eq!(lines.count(), 7);
    assert!(errors.contains("side_sign"), "{errors}");
    assert!(
        run.stdout.contains("7 invalid rows in s3://"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn an_empty_file_is_a_successful_run_with_no_rows() {
    let db = Database::create().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(dir.path().join("empty.csv"), "").expect("writing the file");
    std::fs::write(dir.path().join("header_only.csv"), HEADER).expect("writing the file");

    for name in ["empty.csv", "header_only.csv"] {
        let run = txflow(
            dir.path(),
            &[
                "batch",
                name,
                "--database-url",
                &db.url,
                "--summary-json",
                "-",
            ],
        );
        run.assert_code(0);
        assert_eq!(run.summary()["status"], "succeeded");
        assert_eq!(run.summary()["rows_read"], 0);
        assert_eq!(run.summary()["errors_file"], serde_json::Value::Null);
    }
    assert_eq!(db.count("transactions", "").await, 0);
    assert_eq!(db.count("runs", "status = 'succeeded'").await, 2);
}

#[tokio::test]
async fn a_file_with_a_bom_and_crlf_line_ends_is_read_like_any_other() {
    let db = Database::create().await;
    let bucket = Bucket::new();
    let body = format!(
        "\u{feff}{}",
        "id;description;amount;timestamp;merchant;operation_type;side\r\n\
         1;\"Card expense at EDF\";-952,40;\"2023-11-28 06:35:12\";\"EDF\";\"refund\";\"debit\"\r\n\
         2;\"Line\r\nbreak\";10,00;\"2023-11-28 06:35:12\";;\"transfer\";\"credit\"\r\n"
    );
    let url = bucket.put("bom.csv", body).await;
    let dir = tempfile::tempdir().expect("a temp dir");

    let run = txflow(
        dir.path(),
        &[
            "batch",
            &url,
            "--database-url",
            &db.url,
            "--summary-json",
            "-",
        ],
    );
    run.assert_code(0);
    assert_eq!(run.summary()["rows_written"], 2);
    let rows = db
        .client
        .query(
            "SELECT source_id, description, merchant, source_line FROM transactions ORDER BY source_line",
            &[],
        )
        .await
        .expect("transactions");
    assert_eq!(rows[0].get::<_, String>(0), "1");
    assert_eq!(rows[0].get::<_, String>(1), "Card expense at EDF");
    assert_eq!(rows[1].get::<_, String>(1), "Line\r\nbreak");
    assert_eq!(rows[1].get::<_, Option<String>>(2), None);
    assert_eq!(rows[1].get::<_, i64>(3), 3);
}

#[tokio::test]
async fn the_common_format_is_detected_and_ids_that_are_uuids_are_kept() {
    let db = Database::create().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(
        dir.path().join("common.csv"),
        "side,amount,id,description,timestamp,operation_type,merchant,extra\n\
         debit,-12.50,b9fa6684-502b-4695-8f92-247432ba610d,Coffee,2024-03-01T08:15:00+01:00,card,Café,ignored\n",
    )
    .expect("writing the file");

    let run = txflow(
        dir.path(),
        &["batch", "common.csv", "--database-url", &db.url],
    );
    run.assert_code(0);
    let row = db
        .client
        .query_one(
            "SELECT t.id::text, t.amount::text, t.\"timestamp\" = '2024-03-01T07:15:00Z'::timestamptz, p.category
             FROM transactions t JOIN predictions p ON p.transaction_id = t.id",
            &[],
        )
        .await
        .expect("the one row");
    assert_eq!(
        row.get::<_, String>(0),
        "b9fa6684-502b-4695-8f92-247432ba610d"
    );
    assert_eq!(row.get::<_, String>(1), "-12.50");
    assert!(row.get::<_, bool>(2));
    assert_eq!(row.get::<_, String>(3), "Transportation");
}

#[tokio::test]
async fn a_prefix_runs_every_csv_below_it_but_not_the_errors_folder() {
    let db = Database::create().await;
    let bucket = Bucket::new();
    let mut a = String::from(HEADER);
    a.push_str("1;A;-1,00;2023-11-28 06:35:12;EDF;card;debit\n2;bad;x;2023-11-28 06:35:12;EDF;card;debit\n");
    bucket.put("day/a.csv", a).await;
    bucket
        .put(
            "day/sub/b.csv",
            format!("{HEADER}1;B;2,00;2023-11-28 06:35:12;;transfer;credit\n"),
        )
        .await;
    bucket.put("day/notes.txt", "not a csv").await;
    let dir = tempfile::tempdir().expect("a temp dir");

    let prefix = bucket.url("day/");
    for run_id in ["one", "two"] {
        let run = txflow(
            dir.path(),
            &[
                "batch",
                &prefix,
                "--database-url",
                &db.url,
                "--run-id",
                run_id,
                "--summary-json",
                "-",
            ],
        );
        run.assert_code(0);
        // The second run finds the first one's errors file and leaves it alone.
        assert_eq!(run.summary()["files"], 2, "{}", run.stdout);
        assert_eq!(run.summary()["rows_read"], 3);
    }
    // Same source id, two files: two transactions.
    assert_eq!(db.count("transactions", "").await, 2);
    assert_eq!(db.count("rejected_records", "").await, 1);
    assert!(bucket.get("day/_txflow_errors/one.csv").await.is_some());
    assert!(bucket.get("day/_txflow_errors/two.csv").await.is_some());
}

#[tokio::test]
async fn more_invalid_rows_than_the_error_budget_fails_the_run_with_status_3() {
    let db = Database::create().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(dir.path().join("mixed.csv"), MIXED).expect("writing the file");
    let errors = dir.path().join("errors");

    let run = txflow(
        dir.path(),
        &[
            "batch",
            "mixed.csv",
            "--database-url",
            &db.url,
            "--max-error-rate",
            "0.5",
            "--errors",
            errors.to_str().expect("a UTF-8 path"),
            "--run-id",
            "budget",
        ],
    );
    run.assert_code(3);
    assert!(run.stdout.contains("error_rate_exceeded"), "{}", run.stdout);
    // The valid rows are stored all the same, the invalid ones kept.
    assert_eq!(db.count("transactions", "").await, 2);
    assert_eq!(db.count("rejected_records", "").await, 7);
    assert!(errors.join("budget.csv").exists());
}

#[tokio::test]
async fn an_unknown_input_stops_the_run_before_anything_is_written() {
    let db = Database::create().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let run = txflow(
        dir.path(),
        &["batch", "nowhere.csv", "--database-url", &db.url],
    );
    run.assert_code(1);
    assert!(run.stderr.contains("nowhere.csv"), "{}", run.stderr);
    let runs = db
        .client
        .query_opt("SELECT 1 FROM pg_tables WHERE tablename = 'runs'", &[])
        .await
        .expect("pg_tables");
    assert!(
        runs.is_none(),
        "nothing, not even the schema, should be written"
    );
}

#[tokio::test]
async fn the_same_pipeline_writes_to_sqlite_by_default_and_a_rerun_adds_nothing() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = reference_file();
    let file = file.to_str().expect("a UTF-8 path");

    let first = txflow(
        dir.path(),
        &["batch", file, "--summary-json", "-", "--errors", "errors"],
    );
    first.assert_code(0);
    assert_eq!(first.summary()["rows_written"], 10_000);
    let second = txflow(
        dir.path(),
        &["batch", file, "--summary-json", "-", "--errors", "errors"],
    );
    second.assert_code(0);
    assert_eq!(second.summary()["rows_written"], 0);

    let db = rusqlite::Connection::open(dir.path().join("txflow.db")).expect("./txflow.db");
    let count = |sql: &str| -> i64 {
        db.query_row(sql, [], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    };
    assert_eq!(count("SELECT count(*) FROM transactions"), 10_000);
    assert_eq!(count("SELECT count(*) FROM predictions"), 10_000);
    assert_eq!(
        count("SELECT count(*) FROM runs WHERE status = 'succeeded'"),
        2
    );
    assert_eq!(
        count("SELECT sum(transactions) FROM category_totals"),
        10_000
    );
    let (id, category): (String, String) = db
        .query_row(
            "SELECT t.id, p.category FROM transactions t JOIN predictions p ON p.transaction_id = t.id
             WHERE t.source_id = '1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("the row of source id 1");
    let id: uuid::Uuid = id.parse().expect("a UUID");
    assert_eq!(category, reference_category(id));
}

#[tokio::test]
async fn a_bad_row_is_recorded_once_across_reruns_and_stored_once_fixed() {
    let db = Database::create().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("fix.csv");
    std::fs::write(
        &file,
        format!("{HEADER}1;A;-1,0x;2023-11-28 06:35:12;EDF;card;debit\n"),
    )
    .expect("write");
    txflow(dir.path(), &["batch", "fix.csv", "--database-url", &db.url]).assert_code(0);
    txflow(dir.path(), &["batch", "fix.csv", "--database-url", &db.url]).assert_code(0);
    assert_eq!(db.count("rejected_records", "").await, 1);

    std::fs::write(
        &file,
        format!("{HEADER}1;A;-1,00;2023-11-28 06:35:12;EDF;card;debit\n"),
    )
    .expect("write");
    txflow(dir.path(), &["batch", "fix.csv", "--database-url", &db.url]).assert_code(0);
    assert_eq!(db.count("transactions", "").await, 1);
}

#[tokio::test]
async fn list_skips_the_files_done_and_runs_check_tells_a_failed_run() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("a folder");
    std::fs::write(
        data.join("a.csv"),
        format!("{HEADER}1;A;-1,00;2023-11-28 06:35:12;EDF;card;debit\n"),
    )
    .expect("write");
    std::fs::write(data.join("b.csv"), "id;amount\n1;2\n").expect("write");

    let list = |extra: &[&str]| {
        let mut args = vec!["list", "data", "--json"];
        args.extend_from_slice(extra);
        let run = txflow(dir.path(), &args);
        run.assert_code(0);
        serde_json::from_str::<Vec<String>>(run.stdout.trim()).expect("a JSON list")
    };
    assert_eq!(list(&[]).len(), 2);
    txflow(dir.path(), &["batch", "data/a.csv", "--run-id", "day1.0"]).assert_code(0);
    txflow(dir.path(), &["batch", "data/b.csv", "--run-id", "day1.1"]).assert_code(1);
    let left = list(&["--skip-done"]);
    assert_eq!(left.len(), 1);
    assert!(left[0].ends_with("/data/b.csv"), "{left:?}");

    let check = txflow(
        dir.path(),
        &["runs", "--prefix", "day1.", "--check", "--expect", "2"],
    );
    check.assert_code(1);
    assert!(
        check.stderr.contains("run day1.1 is failed"),
        "{}",
        check.stderr
    );
    txflow(
        dir.path(),
        &["runs", "--prefix", "day1.0", "--check", "--expect", "1"],
    )
    .assert_code(0);
    let missing = txflow(
        dir.path(),
        &["runs", "--prefix", "day1.0", "--check", "--expect", "2"],
    );
    missing.assert_code(1);
    assert!(missing.stderr.contains("2 expected"), "{}", missing.stderr);
}

#[tokio::test]
async fn a_configuration_file_sets_what_flags_do_not_and_a_typo_in_it_is_an_error() {
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(
        dir.path().join("in.csv"),
        format!("{HEADER}1;A;-1,00;2023-11-28 06:35:12;EDF;card;debit\n"),
    )
    .expect("write");
    std::fs::write(
        dir.path().join("txflow.toml"),
        "[all]\ndatabase_url = \"sqlite://from-file.db\"\n\n[batch]\nsummary_json = \"-\"\nbatch_size = 500\n",
    )
    .expect("write");
    let run = txflow(
        dir.path(),
        &[
            "--config",
            "txflow.toml",
            "batch",
            "in.csv",
            "--run-id",
            "cfg",
        ],
    );
    run.assert_code(0);
    assert_eq!(run.summary()["rows_written"], 1);
    assert!(dir.path().join("from-file.db").exists());
    assert!(!dir.path().join("txflow.db").exists());

    // A flag wins over the file.
    let run = txflow(
        dir.path(),
        &[
            "--config",
            "txflow.toml",
            "batch",
            "in.csv",
            "--database-url",
            "sqlite://flag.db",
        ],
    );
    run.assert_code(0);
    assert!(dir.path().join("flag.db").exists());

    std::fs::write(dir.path().join("typo.toml"), "[batch]\nbatch_sise = 5\n").expect("write");
    let run = txflow(dir.path(), &["--config", "typo.toml", "batch", "in.csv"]);
    run.assert_code(2);
    assert!(
        run.stderr
            .contains("typo.toml: unknown setting `batch_sise` in [batch]"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn a_record_over_the_size_limit_is_rejected_and_the_rest_of_the_file_is_stored() {
    let db = Database::create().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let long = "d".repeat(2_000_000);
    std::fs::write(
        dir.path().join("long.csv"),
        format!(
            "{HEADER}1;A;-1,00;2023-11-28 06:35:12;EDF;card;debit\n\
             2;{long};-2,00;2023-11-28 06:35:12;EDF;card;debit\n\
             3;C;-3,00;2023-11-28 06:35:12;EDF;card;debit\n"
        ),
    )
    .expect("write");
    let mut unclosed = format!("{HEADER}1;A;-1,00;2023-11-28 06:35:12;EDF;card;debit\n2;\"open");
    for i in 0..40_000 {
        unclosed.push_str(&format!("\n{i};x;-1,00;2023-11-28 06:35:12;EDF;card;debit"));
    }
    std::fs::write(dir.path().join("unclosed.csv"), &unclosed).expect("write");

    let run = txflow(
        dir.path(),
        &[
            "batch",
            "long.csv",
            "--database-url",
            &db.url,
            "--summary-json",
            "-",
            "--run-id",
            "long",
        ],
    );
    run.assert_code(0);
    let summary = run.summary();
    assert_eq!(summary["status"], "succeeded_with_rejects");
    assert_eq!(summary["rows_read"], 3);
    assert_eq!(summary["rows_invalid"], 1);
    assert_eq!(summary["rows_written"], 2);
    assert_eq!(db.count("transactions", "").await, 2);
    let row = db
        .client
        .query_one(
            "SELECT source_line, source_offset, rule, length(raw), message FROM rejected_records",
            &[],
        )
        .await
        .expect("the rejected record");
    assert_eq!(row.get::<_, i64>(0), 3);
    assert_eq!(row.get::<_, i64>(1), (HEADER.len() + 45) as i64);
    assert_eq!(row.get::<_, String>(2), "record_too_long");
    assert_eq!(row.get::<_, i32>(3), 4096);
    let length = "2;".len() + long.len() + ";-2,00;2023-11-28 06:35:12;EDF;card;debit".len();
    let message: String = row.get(4);
    assert!(message.contains(&format!("is {length} bytes")), "{message}");
    let errors = std::fs::read_to_string(dir.path().join("_txflow_errors/long.csv"))
        .expect("the errors file");
    assert!(errors.contains("record_too_long"), "{errors}");

    let run = txflow(
        dir.path(),
        &[
            "batch",
            "unclosed.csv",
            "--database-url",
            &db.url,
            "--summary-json",
            "-",
        ],
    );
    run.assert_code(0);
    assert_eq!(run.summary()["rows_read"], 2);
    assert_eq!(run.summary()["rows_written"], 1);
    let message: String = db
        .client
        .query_one(
            "SELECT message FROM rejected_records WHERE source_location LIKE '%unclosed.csv'",
            &[],
        )
        .await
        .expect("the rejected record")
        .get(0);
    assert!(message.contains("never closed"), "{message}");
}
