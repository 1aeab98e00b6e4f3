//! `txflow sink`: the predictions topic fanned out to stores by connector
//! processes, each its own consumer group, against the harness's real
//! broker, PostgreSQL and S3.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use txflow_parquet::{LakeRow, read_lake};

use crate::harness::{Bucket, Database, unique};
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

/// Waits until the lake's commit markers cover every offset of the
/// predictions topic (cheaper than reading the lake), then reads the lake.
async fn wait_lake(
    bucket: &Bucket,
    prefix: &str,
    topics: &Topics,
    within: Duration,
    sink: &Member,
) -> Vec<LakeRow> {
    let n = topics.count(&topics.predictions);
    let markers = ObjectPath::from(format!(
        "{}/{prefix}/_txflow/{}",
        bucket.prefix, topics.predictions
    ));
    let started = Instant::now();
    loop {
        let mut covered = 0;
        let listed: Vec<_> = bucket
            .store
            .list(Some(&markers))
            .try_collect()
            .await
            .expect("listing the markers");
        for meta in listed {
            let bytes = bucket
                .store
                .get(&meta.location)
                .await
                .expect("a marker")
                .bytes()
                .await
                .expect("a marker's bytes");
            let marker: txflow_parquet::Marker = serde_json::from_slice(&bytes).expect("a marker");
            covered += marker.next_offset;
        }
        if covered >= n {
            return lake(bucket, prefix).await;
        }
        assert!(
            started.elapsed() < within,
            "the lake's markers cover {covered} of {n} offsets after {within:?}\n{}",
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
    let rows = wait_lake(
        &bucket,
        "lake",
        &topics,
        Duration::from_secs(60),
        &lake_sink,
    )
    .await;
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
    // Streamed data: `txflow consume` publishes a prediction per event.
    let member = Member::start_on(&topics, &db.url, &unique("g"), None, &[]);
    topics.producer(3_000, 3_000).wait();
    crate::harness::wait_count_at(
        &db.url,
        "SELECT count(*) FROM predictions",
        3_000,
        Duration::from_secs(60),
        || member.log(),
    )
    .await;
    member.stop();
    let started = Instant::now();
    let expected = stored_ids(&db).await;
    assert_eq!(expected.len(), 3_000);

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

    let crashed_after = started.elapsed();
    let restarted = sink(&topics, &url, &[], &[]);
    let rows = wait_lake(
        &bucket,
        "lake",
        &topics,
        Duration::from_secs(120),
        &restarted,
    )
    .await;
    eprintln!(
        "crashed after {crashed_after:?} with {partial} rows; complete {:?} after the restart",
        started.elapsed() - crashed_after
    );
    // Nothing more arrives later either.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rows_later = lake(&bucket, "lake").await;
    assert_eq!(rows_later.len(), rows.len());
    assert_once(&rows_later, &expected);
    restarted.stop();
}
