//! `txflow sink`: the predictions topic fanned out to stores by connector
//! processes, each its own consumer group, against the harness's real
//! broker, PostgreSQL and S3.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use txflow_parquet::{LakeRow, read_lake};

use crate::harness::{Bucket, Database, scrape_checked, unique};
use crate::servers::free_port;
use crate::stream::{Member, Topics};

/// A `txflow sink URL` process on the test's topics.
pub fn sink(topics: &Topics, url: &str, extra: &[&str], env: &[(&str, &str)]) -> Member {
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
    let lake_sink = sink(
        &topics,
        &url,
        &["--metrics-listen", &listen, "--group", &unique("lake")],
        &[],
    );
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
    let metrics = scrape_checked(&format!("http://{listen}/metrics")).await;
    assert!(
        metrics.contains("txflow_sink_records_written_total{sink=\"parquet\"} 3000"),
        "{metrics}"
    );
    let health = crate::harness::get(format!("http://{listen}/health"))
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

    let group = unique("lake");
    // The sink dies (as kill -9 would stop it) right after its third write,
    // before the dead letters and the offset commit.
    let mut crashing = sink(
        &topics,
        &url,
        &["--max-batch", "300", "--group", &group],
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
    let restarted = sink(&topics, &url, &["--group", &group], &[]);
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

/// Sum of `amount` and number of points per category in VictoriaMetrics
/// over all of history.
async fn store_totals(vm: &str) -> HashMap<String, (f64, i64)> {
    let query = |q: &'static str| async move {
        let url = reqwest::Url::parse_with_params(&format!("{vm}/api/v1/query"), [("query", q)])
            .expect("a query URL");
        let answer: serde_json::Value = crate::harness::get(url)
            .await
            .expect("a PromQL answer")
            .json()
            .await
            .expect("JSON");
        answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|r| {
                let category = r["metric"]["category"].as_str().unwrap_or("").to_owned();
                let value: f64 = r["value"][1]
                    .as_str()
                    .unwrap_or("0")
                    .parse()
                    .expect("a number");
                (category, value)
            })
            .collect::<HashMap<_, _>>()
    };
    let sums = query("sum by (category) (sum_over_time(transactions_amount[2000d]))").await;
    let counts = query("sum by (category) (count_over_time(transactions_amount[2000d]))").await;
    sums.into_iter()
        .map(|(c, s)| {
            let n = counts.get(&c).copied().unwrap_or(0.0) as i64;
            (c, (s, n))
        })
        .collect()
}

/// PostgreSQL's `category_totals`: sum and count per category.
async fn database_totals(db: &Database) -> HashMap<String, (f64, i64)> {
    db.client
        .query(
            "SELECT category, total_amount::float8, transactions FROM category_totals",
            &[],
        )
        .await
        .expect("category_totals")
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect()
}

/// Waits until the store's totals are the database's (sums to the cent).
async fn wait_totals(vm: &str, db: &Database, within: Duration, sink: &Member) {
    let expected = database_totals(db).await;
    let started = Instant::now();
    loop {
        let got = store_totals(vm).await;
        let same = got.len() == expected.len()
            && expected.iter().all(|(c, (sum, n))| {
                got.get(c)
                    .is_some_and(|(s, m)| (s - sum).abs() < 0.005 && m == n)
            });
        if same {
            return;
        }
        assert!(
            started.elapsed() < within,
            "the store's totals {got:?}\nare not the database's {expected:?}\n{}",
            sink.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn the_line_protocol_sink_matches_the_database_totals_and_a_full_replay_changes_nothing() {
    let topics = Topics::create();
    let db = Database::create().await;
    // The totals are over the whole store: a store of the test's own.
    let mut private = crate::servers::PrivateVictoria::start();
    let url = format!("influx+{}/write", private.url());
    let member = Member::start_on(&topics, &db.url, &unique("g"), None, &[]);
    // Historical events: points spread over 486 days, as a backfill.
    topics.producer_with(2_000, 2_000, &["--historical"]).wait();
    crate::harness::wait_count_at(
        &db.url,
        "SELECT count(*) FROM predictions",
        2_000,
        Duration::from_secs(60),
        || member.log(),
    )
    .await;
    member.stop();
    let first = sink(&topics, &url, &["--group", &unique("influx")], &[]);
    wait_totals(&private.url(), &db, Duration::from_secs(60), &first).await;
    first.stop();
    // A second group replays the whole topic into the same store: every
    // point lands on itself.
    let listen = format!("127.0.0.1:{}", free_port());
    let replay = sink(
        &topics,
        &url,
        &["--group", &unique("influx"), "--metrics-listen", &listen],
        &[],
    );
    let started = Instant::now();
    loop {
        let metrics = crate::harness::get(format!("http://{listen}/metrics"))
            .await
            .map(|r| r.text());
        let written = match metrics {
            Ok(text) => text.await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if written.contains("txflow_sink_records_written_total{sink=\"influx\"} 2000") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{}",
            replay.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    wait_totals(&private.url(), &db, Duration::from_secs(10), &replay).await;
    replay.stop();
    private.kill();
}

#[tokio::test]
async fn a_store_that_goes_away_holds_back_only_its_own_sink_which_catches_up_when_it_returns() {
    let topics = Topics::create();
    let db = Database::create().await;
    let bucket = Bucket::new();
    let mut vm = crate::servers::PrivateVictoria::start();
    let member = Member::start_on(&topics, &db.url, &unique("g"), None, &[]);
    let lake_sink = sink(
        &topics,
        &bucket.url("lake"),
        &["--group", &unique("lake")],
        &[],
    );
    let listen = format!("127.0.0.1:{}", free_port());
    let line_sink = sink(
        &topics,
        &format!("influx+{}/write", vm.url()),
        &["--metrics-listen", &listen, "--group", &unique("influx")],
        &[],
    );
    let producer = topics.producer_with(3_000, 300, &["--historical"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    vm.stop();
    // The database and the lake get everything while the store is away.
    producer.wait();
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
    // Meanwhile the line-protocol sink says its store is down, and waits.
    let health = crate::harness::get(format!("http://{listen}/health"))
        .await
        .expect("/health");
    assert_eq!(health.status(), 503, "{}", line_sink.log());
    let metrics = scrape_checked(&format!("http://{listen}/metrics")).await;
    assert!(
        metrics.contains("txflow_sink_errors_total{sink=\"influx\",class=\"unavailable\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("txflow_sink_store_up{sink=\"influx\"} 0"),
        "{metrics}"
    );
    vm.start_again();
    wait_totals(&vm.url(), &db, Duration::from_secs(90), &line_sink).await;
    let health = crate::harness::get(format!("http://{listen}/health"))
        .await
        .expect("/health");
    assert_eq!(health.status(), 200);
    line_sink.stop();
    lake_sink.stop();
    member.stop();
}

#[tokio::test]
async fn a_postgres_sink_follows_the_topic_into_a_second_database_exactly_once_across_a_crash() {
    let topics = Topics::create();
    let db = Database::create().await;
    let replica = Database::create().await;
    crate::harness::txflow(
        &std::env::temp_dir(),
        &["migrate", "--database-url", &replica.url],
    )
    .assert_code(0);
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
    let group = unique("replica");
    let mut crashing = sink(
        &topics,
        &replica.url,
        &["--max-batch", "300", "--group", &group],
        &[("TXFLOW_FAILPOINT_SINK_ABORT_AFTER_WRITES", "2")],
    );
    let status = crashing.wait(Duration::from_secs(60));
    assert!(
        !status.success(),
        "the failpoint did not fire\n{}",
        crashing.log()
    );
    let restarted = sink(&topics, &replica.url, &["--group", &group], &[]);
    crate::harness::wait_count_at(
        &replica.url,
        "SELECT coalesce(sum(next_offset), 0)::bigint FROM stream_offsets",
        topics.count(&topics.predictions),
        Duration::from_secs(60),
        || restarted.log(),
    )
    .await;
    restarted.stop();
    assert_eq!(replica.count("transactions", "").await, 3_000);
    assert_eq!(
        replica
            .count_sql("SELECT count(DISTINCT id) FROM transactions")
            .await,
        3_000
    );
    assert_eq!(replica.count("predictions", "").await, 3_000);
    assert_eq!(database_totals(&replica).await, database_totals(&db).await);
    // Lineage survives the trip: the stream's run and source.
    assert_eq!(
        replica
            .count(
                "transactions",
                "source_location LIKE 'kafka://%' AND processing_type = 'streaming'"
            )
            .await,
        3_000
    );
}
