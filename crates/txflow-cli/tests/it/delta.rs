//! `txflow sink delta+…` and `txflow lake`: the predictions topic as a Delta
//! table, against the harness's broker, PostgreSQL and S3, read back by
//! delta-rs (the `deltalake` package) and polars, the tools analysts use
//! (`scripts/read_delta.py`, in the harness's venv).

use std::collections::HashSet;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use txflow_delta::log::Log;

use crate::connectors::sink;
use crate::harness::{Bucket, Database, harness_var, unique};
use crate::stream::{Member, Topics};

/// The partitions `Topics::create` makes.
const PARTITIONS: i32 = 3;

/// What `scripts/read_delta.py` printed: delta-rs's and polars's view.
fn read_delta(uri: &str, version: Option<i64>, app_ids: &[String]) -> serde_json::Value {
    read_delta_with(uri, version, app_ids, &[], &[])
}

/// [`read_delta`], with the null count of each of `nulls`, and the extra
/// flags `extra` (`--optimize`).
fn read_delta_with(
    uri: &str,
    version: Option<i64>,
    app_ids: &[String],
    nulls: &[&str],
    extra: &[&str],
) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/read_delta.py");
    let mut command = Command::new(harness_var("TXFLOW_TEST_DELTA_PYTHON"));
    command.arg(script).arg(uri);
    if let Some(v) = version {
        command.args(["--version", &v.to_string()]);
    }
    for app in app_ids {
        command.args(["--app-id", app]);
    }
    for column in nulls {
        command.args(["--nulls", column]);
    }
    command.args(extra);
    command.env("AWS_ENDPOINT_URL", harness_var("TXFLOW_TEST_S3_ENDPOINT"));
    let output = command.output().expect("starting read_delta.py");
    assert!(
        output.status.success(),
        "read_delta.py {uri}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "read_delta.py printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// Waits until the table's latest version holds `n` rows (by the files'
/// statistics, as txflow wrote them).
async fn wait_rows(log: &Log, n: i64, within: Duration, sink: &Member) -> i64 {
    let started = Instant::now();
    loop {
        let rows = match log.snapshot().await {
            Ok(Some(s)) => s.num_records(),
            Ok(None) => 0,
            Err(e) => panic!("reading the table: {e}"),
        };
        if rows >= n {
            return rows;
        }
        assert!(
            started.elapsed() < within,
            "the table holds {rows} of {n} rows after {within:?}\n{}",
            sink.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A sink of `group` into the table at `url` (batches of 100), 1,500 more
/// events produced, and the table waited for until it holds `rows`.
async fn sink_round(topics: &Topics, url: &str, group: &str, log: &Log, rows: i64) -> Member {
    let member = sink(topics, url, &["--group", group, "--max-batch", "100"], &[]);
    topics.producer(1_500, 1_500).wait();
    wait_rows(log, rows, Duration::from_secs(90), &member).await;
    member
}

/// A test's stream: its own topics, and its own database with a `txflow
/// consume` member publishing a prediction per event.
async fn stream() -> (Topics, Database, Member) {
    let topics = Topics::create();
    let db = Database::create().await;
    let member = Member::start_on(&topics, &db.url, &unique("g"), None, &[]);
    (topics, db, member)
}

/// A table's folder `name` under `dir`, and its `delta+file://` URL.
fn table_in(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, String) {
    let root = dir.join(name);
    let url = format!("delta+file://{}", root.display());
    (root, url)
}

fn app_ids(group: &str, topics: &Topics) -> Vec<String> {
    (0..PARTITIONS)
        .map(|p| format!("{group}/{}/{p}", topics.predictions))
        .collect()
}

/// Each partition's last offset, as delta-rs reads the `txn` actions, plus
/// one, summed: the records the table says it holds.
fn txn_total(seen: &serde_json::Value) -> i64 {
    seen["txn"]
        .as_object()
        .expect("txn")
        .values()
        .map(|v| v.as_i64().map_or(0, |o| o + 1))
        .sum()
}

#[tokio::test]
async fn a_delta_sink_fills_a_table_that_delta_rs_and_polars_read_and_compact_and_vacuum_keep_its_rows()
 {
    let (topics, db, member) = stream().await;
    let dir = tempfile::tempdir().expect("a folder");
    let (root, url) = table_in(dir.path(), "predictions");
    let group = unique("delta");
    let delta = sink(
        &topics,
        &url,
        &["--group", &group, "--delta-checkpoint-interval", "5"],
        &[],
    );
    topics.producer(3_000, 1_500).wait();
    let log = Log::new(
        Arc::new(object_store::local::LocalFileSystem::new()),
        ObjectPath::from_filesystem_path(&root).expect("a path"),
        url.clone(),
    );
    wait_rows(&log, 3_000, Duration::from_secs(90), &delta).await;
    delta.stop();
    member.stop();
    let stored = db.count("predictions", "").await;
    assert_eq!(stored, 3_000);

    // Checkpoints every 5 commits, where delta-rs and polars start reading.
    let checkpoints = walk(&root.join("_delta_log"))
        .into_iter()
        .filter(|f| f.ends_with(".checkpoint.parquet"))
        .count();
    assert!(
        checkpoints > 0,
        "no checkpoint in {:?}",
        walk(&root.join("_delta_log"))
    );
    let uri = root.display().to_string();
    let seen = read_delta(&uri, Some(1), &app_ids(&group, &topics));
    assert_eq!(seen["count"], 3_000, "{seen}");
    assert_eq!(seen["rows"], 3_000, "{seen}");
    assert_eq!(seen["distinct_ids"], 3_000, "{seen}");
    assert_eq!(
        txn_total(&seen),
        3_000,
        "the txn versions cover the topic: {seen}"
    );
    let version_1 = log
        .snapshot_at(Some(1))
        .await
        .expect("read")
        .expect("a table")
        .num_records();
    assert!(version_1 > 0 && version_1 < 3_000, "{version_1}");
    assert_eq!(
        seen["rows_at"], version_1,
        "time travel to version 1: {seen}"
    );
    let columns: Vec<&str> = seen["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    for column in [
        "transaction_id",
        "category",
        "amount",
        "kafka_offset",
        "date",
    ] {
        assert!(columns.contains(&column), "{column} in {columns:?}");
    }
    let files_before = seen["files"].as_i64().expect("files");
    assert!(files_before > 1, "{seen}");

    let dir_path = dir.path();
    let compacted = crate::harness::txflow(dir_path, &["lake", "compact", &url, "--json"]);
    compacted.assert_code(0);
    let report: serde_json::Value = serde_json::from_str(&compacted.stdout).expect("JSON");
    assert_eq!(report["rows"], 3_000, "{report}");
    let after = read_delta(&uri, None, &app_ids(&group, &topics));
    assert_eq!(
        (&after["rows"], &after["distinct_ids"], &after["count"]),
        (&seen["rows"], &seen["distinct_ids"], &seen["count"]),
        "{after}"
    );
    assert_eq!(after["categories"], seen["categories"]);
    assert_eq!(
        after["digest"], seen["digest"],
        "the same rows, value for value"
    );
    assert_eq!(after["txn"], seen["txn"], "compaction keeps the progress");
    assert!(
        after["files"].as_i64().expect("files") < files_before,
        "{files_before} files before, {after}"
    );
    assert_eq!(
        after["operations"].as_array().and_then(|o| o.last()),
        Some(&serde_json::json!("OPTIMIZE")),
        "{after}"
    );

    let history = crate::harness::txflow(dir_path, &["lake", "history", &url]);
    history.assert_code(0);
    assert!(
        history.stdout.contains("CREATE TABLE")
            && history.stdout.contains("STREAMING UPDATE")
            && history.stdout.contains("OPTIMIZE"),
        "{}",
        history.stdout
    );

    let dry = crate::harness::txflow(
        dir_path,
        &["lake", "vacuum", &url, "--retain", "0s", "--dry-run"],
    );
    dry.assert_code(0);
    assert!(
        dry.stdout
            .contains(&format!("would delete {files_before} files")),
        "{}",
        dry.stdout
    );
    let vacuumed = crate::harness::txflow(dir_path, &["lake", "vacuum", &url, "--retain", "0s"]);
    vacuumed.assert_code(0);
    let parquet_files = walk(&root)
        .into_iter()
        .filter(|p| p.ends_with(".parquet") && !p.starts_with("_delta_log"))
        .count() as i64;
    assert_eq!(parquet_files, after["files"].as_i64().expect("files"));
    let last = read_delta(&uri, None, &[]);
    assert_eq!(last["rows"], 3_000, "{last}");
}

/// Every file under `root`, as paths relative to it.
fn walk(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("a folder") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(
                    path.strip_prefix(root)
                        .expect("under the root")
                        .display()
                        .to_string(),
                );
            }
        }
    }
    out
}

#[tokio::test]
async fn a_delta_sink_on_s3_killed_mid_stream_and_restarted_leaves_every_prediction_once() {
    let (topics, db, member) = stream().await;
    let bucket = Bucket::new();
    let url = format!("delta+{}", bucket.url("table"));
    let group = unique("delta");
    let first = sink(
        &topics,
        &url,
        &["--group", &group, "--max-batch", "200"],
        &[],
    );
    // 2,000 events over about 4 s; the sink is killed once the table holds
    // 600 rows, most often while they still arrive; 2,000 more arrive while
    // it is down. (Killing it while all 4,000 arrived was not certain: on
    // a busy CI machine a sink that started late caught up with all of
    // them before the table was first seen at 600 rows, twice.)
    let producer = topics.producer(2_000, 500);
    let log = Log::new(
        Arc::new(bucket.store.clone()) as Arc<dyn ObjectStore>,
        ObjectPath::from(format!("{}/table", bucket.prefix)),
        url.clone(),
    );
    let partial = wait_rows(&log, 600, Duration::from_secs(60), &first).await;
    first.kill_9();
    producer.wait();
    topics.producer(2_000, 2_000).wait();
    assert!(
        (600..=2_000).contains(&partial),
        "{partial} rows when killed"
    );
    let restarted = sink(&topics, &url, &["--group", &group], &[]);
    wait_rows(&log, 4_000, Duration::from_secs(90), &restarted).await;
    // Nothing more arrives later either.
    tokio::time::sleep(Duration::from_secs(2)).await;
    restarted.stop();
    member.stop();

    let seen = read_delta(
        &format!("s3://{}/{}/table", bucket.bucket, bucket.prefix),
        None,
        &app_ids(&group, &topics),
    );
    assert_eq!(seen["rows"], 4_000, "{seen}");
    assert_eq!(seen["distinct_ids"], 4_000, "each prediction once: {seen}");
    assert_eq!(txn_total(&seen), 4_000, "{seen}");
    let stored: HashSet<String> = db
        .client
        .query("SELECT transaction_id::text FROM predictions", &[])
        .await
        .expect("ids")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(stored.len(), 4_000);
    // The S3 server refuses a second put of a version (If-None-Match: *):
    // what keeps two writers from both taking one.
    let taken = log
        .try_commit(1, &[txflow_delta::log::Action::default()])
        .await
        .expect("a put");
    assert!(!taken, "version 1 was overwritten");
}

/// The table at a local folder, for reading its log.
fn local_log(root: &std::path::Path) -> Log {
    std::fs::create_dir_all(root).expect("the table's folder");
    Log::new(
        Arc::new(object_store::local::LocalFileSystem::new()),
        ObjectPath::from_filesystem_path(root).expect("a path"),
        format!("delta+file://{}", root.display()),
    )
}

#[tokio::test]
async fn two_sink_members_share_one_table_and_each_prediction_lands_once() {
    let (topics, _db, member) = stream().await;
    let dir = tempfile::tempdir().expect("a folder");
    let (root, url) = table_in(dir.path(), "shared");
    let group = unique("delta");
    let first = sink(
        &topics,
        &url,
        &["--group", &group, "--max-batch", "100"],
        &[],
    );
    let second = sink(
        &topics,
        &url,
        &["--group", &group, "--max-batch", "100"],
        &[],
    );
    topics.producer(3_000, 1_500).wait();
    let log = local_log(&root);
    wait_rows(&log, 3_000, Duration::from_secs(90), &first).await;
    first.stop();
    second.stop();
    member.stop();
    let seen = read_delta(&root.display().to_string(), None, &app_ids(&group, &topics));
    assert_eq!(
        (&seen["rows"], &seen["distinct_ids"]),
        (&serde_json::json!(3_000), &serde_json::json!(3_000)),
        "{seen}"
    );
    assert_eq!(txn_total(&seen), 3_000, "{seen}");
    let versions = log.versions_after(None).await.expect("listed");
    assert_eq!(
        versions,
        (0..=*versions.last().expect("a version")).collect::<Vec<_>>(),
        "every version taken once"
    );
}

#[tokio::test]
async fn a_table_of_an_older_txflow_gains_the_new_column_and_its_old_files_read_as_null() {
    use txflow_delta::log::{Action, Add};

    let (topics, _db, member) = stream().await;
    let dir = tempfile::tempdir().expect("a folder");
    topics.producer(1_000, 1_000).wait();
    // Today's table, written by the sink.
    let today = dir.path().join("today");
    let writer = sink(
        &topics,
        &format!("delta+file://{}", today.display()),
        &["--group", &unique("delta")],
        &[],
    );
    wait_rows(&local_log(&today), 1_000, Duration::from_secs(90), &writer).await;
    writer.stop();
    member.stop();

    // The same rows as an older txflow wrote them: no `needs_review`
    // column in the files or the schema.
    let old = dir.path().join("old");
    std::fs::create_dir_all(&old).expect("a folder");
    let (log_today, log_old) = (local_log(&today), local_log(&old));
    let snapshot = log_today.snapshot().await.expect("read").expect("a table");
    let mut schema = txflow_delta::schema::current();
    schema.fields.retain(|f| f.name != "needs_review");
    let metadata = txflow_delta::log::Metadata {
        schema_string: serde_json::to_string(&schema).expect("a schema"),
        ..snapshot.metadata.clone()
    };
    let version_0 = [
        Action {
            protocol: Some(snapshot.protocol.clone()),
            ..Action::default()
        },
        Action::metadata(metadata),
    ];
    assert!(log_old.try_commit(0, &version_0).await.expect("put"));
    let mut adds = Vec::new();
    for (i, add) in snapshot.files.values().enumerate() {
        let batches = txflow_delta::table::read_file(&log_today, &add.path)
            .await
            .expect("a file");
        let keep: Vec<usize> = (0..batches[0].num_columns() - 1).collect();
        let projected = batches[0].schema().project(&keep).expect("a schema");
        let mut bytes = Vec::new();
        let mut file = parquet::arrow::ArrowWriter::try_new(&mut bytes, Arc::new(projected), None)
            .expect("a writer");
        for b in &batches {
            file.write(&b.project(&keep).expect("projected"))
                .expect("written");
        }
        file.close().expect("closed");
        let path = format!(
            "{}/old-{i}.parquet",
            add.path.split('/').next().expect("a partition")
        );
        let target = old.join(&path);
        std::fs::create_dir_all(target.parent().expect("a partition folder")).expect("a folder");
        std::fs::write(target, &bytes).expect("written");
        adds.push(Action::add(Add {
            path,
            size: bytes.len() as i64,
            ..add.clone()
        }));
    }
    assert!(log_old.try_commit(1, &adds).await.expect("put"));

    // Today's sink writes into it (its group has no progress there: the
    // topic again, 1,000 more rows).
    let writer = sink(
        &topics,
        &format!("delta+file://{}", old.display()),
        &["--group", &unique("delta")],
        &[],
    );
    wait_rows(&log_old, 2_000, Duration::from_secs(90), &writer).await;
    writer.stop();
    let evolved = log_old.read_commit(2).await.expect("commit 2");
    let schema = evolved
        .iter()
        .find_map(|a| a.metadata.as_ref())
        .expect("the first write's commit adds the column");
    assert!(schema.schema_string.contains("needs_review"));
    assert_eq!(schema.id, snapshot.metadata.id, "the same table");

    let seen = read_delta_with(
        &old.display().to_string(),
        None,
        &[],
        &["needs_review"],
        &[],
    );
    assert_eq!(seen["rows"], 2_000, "{seen}");
    assert_eq!(seen["distinct_ids"], 1_000, "{seen}");
    assert_eq!(
        seen["nulls"]["needs_review"], 1_000,
        "the older files' rows read as null: {seen}"
    );
}

#[tokio::test]
async fn a_table_compacted_and_checkpointed_by_delta_rs_takes_the_sinks_next_writes_once() {
    let (topics, _db, member) = stream().await;
    let dir = tempfile::tempdir().expect("a folder");
    let (root, url) = table_in(dir.path(), "shared-with-delta-rs");
    let uri = root.display().to_string();
    let group = unique("delta");
    let log = local_log(&root);
    let first = sink_round(&topics, &url, &group, &log, 1_500).await;
    first.stop();

    // delta-rs compacts the table and writes a checkpoint of its own.
    let maintained = read_delta_with(&uri, None, &app_ids(&group, &topics), &[], &["--optimize"]);
    assert!(
        maintained["optimized"]["numFilesRemoved"]
            .as_i64()
            .unwrap_or(0)
            > 1,
        "{maintained}"
    );
    assert_eq!(maintained["rows"], 1_500, "{maintained}");
    assert_eq!(
        txn_total(&maintained),
        1_500,
        "delta-rs keeps the progress: {maintained}"
    );

    // txflow reads that table (delta-rs's checkpoint, its commit) and goes
    // on where the table says.
    let second = sink_round(&topics, &url, &group, &log, 3_000).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    second.stop();
    member.stop();
    let seen = read_delta(&uri, None, &app_ids(&group, &topics));
    assert_eq!(
        (&seen["rows"], &seen["distinct_ids"]),
        (&serde_json::json!(3_000), &serde_json::json!(3_000)),
        "{seen}"
    );
    assert_eq!(txn_total(&seen), 3_000, "{seen}");
    let history = crate::harness::txflow(dir.path(), &["lake", "history", &url]);
    history.assert_code(0);
    assert!(history.stdout.contains("OPTIMIZE"), "{}", history.stdout);
}
