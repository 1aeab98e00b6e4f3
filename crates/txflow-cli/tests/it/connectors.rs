//! `txflow sink`: the predictions topic fanned out to stores by connector
//! processes, each its own consumer group, against the harness's real
//! broker, PostgreSQL and S3.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use object_store::path::Path as ObjectPath;
use txflow_parquet::{LakeRow, read_lake};

use crate::harness::{Bucket, Database, txflow, unique};
use crate::servers::free_port;
use crate::stream::{Member, Topics};

/// A `txflow sink URL` process on the test's topics.
fn sink(topics: &Topics, url: &str, extra: &[&str], env: &[(&str, &str)]) -> Member {
    let mut args = vec!["sink".to_owned(), url.to_owned()];
    args.extend(topics.flags());
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    for (flag, default) in [
        ("--max-batch", "400"),
        ("--max-wait", "100ms"),
        ("--metrics-listen", "127.0.0.1:0"),
    ] {
        if !extra.contains(&flag) {
            args.extend([flag.to_owned(), default.to_owned()]);
        }
    }
    Member::spawn(&args, env)
}

async fn lake(bucket: &Bucket, prefix: &str) -> Vec<LakeRow> {
    let path = ObjectPath::from(format!("{}/{prefix}", bucket.prefix));
    read_lake(&bucket.store, &path)
        .await
        .unwrap_or_else(|e| panic!("reading the lake: {e}"))
}

/// Waits until the lake holds `n` rows; returns them.
async fn wait_lake(
    bucket: &Bucket,
    prefix: &str,
    n: usize,
    within: Duration,
    sink: &Member,
) -> Vec<LakeRow> {
    let started = Instant::now();
    loop {
        let rows = lake(bucket, prefix).await;
        if rows.len() >= n {
            return rows;
        }
        assert!(
            started.elapsed() < within,
            "{} rows in the lake after {within:?}, {n} expected\n{}",
            rows.len(),
            sink.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Each transaction once, and exactly the expected ones.
fn assert_once(rows: &[LakeRow], expected: &HashSet<String>) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for r in rows {
        *seen.entry(&r.transaction_id).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "written more than once: {twice:?}");
    let ids: HashSet<String> = seen.keys().map(|k| (*k).to_owned()).collect();
    assert_eq!(&ids, expected);
}

async fn stored_ids(db: &Database) -> HashSet<String> {
    db.client
        .query(
            "SELECT id::text FROM predictions p JOIN transactions t ON t.id = p.transaction_id",
            &[],
        )
        .await
        .expect("the stored ids")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn consume_and_a_parquet_sink_side_by_side_put_every_prediction_in_the_lake_once() {
    let topics = Topics::create();
    let db = Database::create().await;
    let bucket = Bucket::new();
    let url = bucket.url("lake");
    let member = Member::start_on(&topics, &db.url, &unique("g"), None, &[]);
    let listen = format!("127.0.0.1:{}", free_port());
    let lake_sink = sink(&topics, &url, &["--metrics-listen", &listen], &[]);
    topics.producer(3_000, 1_500).wait();
    crate::harness::wait_count_at(
        &db.url,
        "SELECT count(*) FROM predictions",
        3_000,
        Duration::from_secs(60),
        || member.log(),
    )
    .await;
    let rows = wait_lake(&bucket, "lake", 3_000, Duration::from_secs(60), &lake_sink).await;
    assert_once(&rows, &stored_ids(&db).await);
    for r in &rows {
        assert!(
            r.object.contains("/lake/date=")
                && r.object
                    .contains(&format!("/partition={}/offsets-", r.kafka_partition)),
            "{}",
            r.object
        );
    }
    let metrics = reqwest::get(format!("http://{listen}/metrics"))
        .await
        .expect("/metrics")
        .text()
        .await
        .expect("the metrics");
    assert!(
        metrics.contains("txflow_sink_records_written_total{sink=\"parquet\"} 3000"),
        "{metrics}"
    );
    let health = reqwest::get(format!("http://{listen}/health"))
        .await
        .expect("/health");
    assert_eq!(health.status(), 200);
    lake_sink.stop();
    member.stop();
}

#[tokio::test]
async fn a_parquet_sink_killed_after_a_write_before_its_commit_resumes_and_the_lake_holds_each_prediction_once()
 {
    let topics = Topics::create();
    let db = Database::create().await;
    let bucket = Bucket::new();
    let url = bucket.url("lake");
    // Batch data, published by `txflow batch --publish`.
    let dir = tempfile::tempdir().expect("a directory");
    let csv = dir.path().join("in.csv");
    txflow(
        dir.path(),
        &[
            "generate",
            "--rows",
            "2000",
            "--seed",
            "7",
            "--output",
            csv.to_str().expect("UTF-8"),
        ],
    )
    .assert_code(0);
    let mut args = vec![
        "batch".to_owned(),
        csv.display().to_string(),
        "--publish".to_owned(),
        "--database-url".to_owned(),
        db.url.clone(),
    ];
    args.extend(topics.flags());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    txflow(dir.path(), &args).assert_code(0);
    let expected = stored_ids(&db).await;
    assert!(expected.len() > 1_000, "{} stored", expected.len());

    // The sink dies (as kill -9 would stop it) right after its third write,
    // before the dead letters and the offset commit.
    let mut crashing = sink(
        &topics,
        &url,
        &["--max-batch", "300"],
        &[("TXFLOW_FAILPOINT_SINK_ABORT_AFTER_WRITES", "3")],
    );
    let status = crashing.wait(Duration::from_secs(60));
    assert!(
        !status.success(),
        "the failpoint did not fire\n{}",
        crashing.log()
    );
    let partial = lake(&bucket, "lake").await.len();
    assert!(
        partial > 0 && partial < expected.len(),
        "{partial} rows before the restart"
    );

    let restarted = sink(&topics, &url, &[], &[]);
    let rows = wait_lake(
        &bucket,
        "lake",
        expected.len(),
        Duration::from_secs(60),
        &restarted,
    )
    .await;
    // Nothing more arrives later either.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rows_later = lake(&bucket, "lake").await;
    assert_eq!(rows_later.len(), rows.len());
    assert_once(&rows_later, &expected);
    restarted.stop();
}
