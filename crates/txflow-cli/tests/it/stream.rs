//! The streaming pipeline against the harness's Apache Kafka and
//! PostgreSQL of the harness: `txflow topics create`, `txflow produce` and
//! `txflow consume` run as processes, as an operator would run them.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::harness::{Database, Run, harness_var, scrape_checked, txflow, unique};
use crate::servers::free_port;

/// A `txflow produce` process and where its log goes.
pub struct Producer {
    child: Child,
    log: std::path::PathBuf,
}

impl Producer {
    /// What the producer logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the producer; fails the test with its log unless every
    /// event was delivered.
    pub fn wait(mut self) {
        let status = self.child.wait().expect("the producer");
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let _ = std::fs::remove_file(&self.log);
        assert!(
            status.success(),
            "txflow produce exited with {status}:\n{log}"
        );
    }
}

/// Three topics of a test's own, created with `txflow topics create`.
pub struct Topics {
    pub brokers: String,
    pub transactions: String,
    pub predictions: String,
    pub dead_letters: String,
}

impl Topics {
    pub fn create() -> Topics {
        Topics::create_on(harness_var("TXFLOW_TEST_KAFKA_BROKERS"))
    }

    /// The topics on another broker than the harness's.
    pub fn create_on(brokers: String) -> Topics {
        let name = unique("t");
        let topics = Topics {
            brokers,
            transactions: format!("{name}-transactions"),
            predictions: format!("{name}-predictions"),
            dead_letters: format!("{name}-failed"),
        };
        let run = topics.txflow(&[
            "topics",
            "create",
            "--partitions",
            "3",
            "--replication",
            "1",
        ]);
        run.assert_code(0);
        assert!(run.stdout.contains("created"), "{}", run.stdout);
        topics
    }

    /// `txflow ARGS...` with these topics' flags added.
    pub fn txflow(&self, args: &[&str]) -> Run {
        let flags = self.flags();
        let mut all = args.to_vec();
        all.extend(flags.iter().map(String::as_str));
        txflow(&std::env::temp_dir(), &all)
    }

    pub fn flags(&self) -> Vec<String> {
        [
            ("--brokers", &self.brokers),
            ("--transactions-topic", &self.transactions),
            ("--predictions-topic", &self.predictions),
            ("--dead-letter-topic", &self.dead_letters),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_owned(), value.clone()])
        .collect()
    }

    /// A `txflow produce` process publishing `count` events at `rate` per
    /// second, in the background.
    pub fn producer(&self, count: u64, rate: u64) -> Producer {
        self.producer_with(count, rate, &[])
    }

    /// [`Topics::producer`] with more `txflow produce` flags.
    pub fn producer_with(&self, count: u64, rate: u64, extra: &[&str]) -> Producer {
        let log = std::env::temp_dir().join(format!("{}.log", unique("produce")));
        let stderr = std::fs::File::create(&log).expect("the producer's log");
        let child = Command::new(env!("CARGO_BIN_EXE_txflow"))
            .args([
                "produce",
                "--count",
                &count.to_string(),
                "--rate",
                &rate.to_string(),
            ])
            .args(extra)
            .args(self.flags())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("starting txflow produce");
        Producer { child, log }
    }

    pub fn produce(&self, count: u64) {
        let mut args: Vec<String> = ["produce", "--flat", "--count", &count.to_string()]
            .map(String::from)
            .to_vec();
        args.extend(self.flags());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        txflow(&std::env::temp_dir(), &args).assert_code(0);
    }

    /// Records on a topic, summed over its partitions.
    pub fn count(&self, topic: &str) -> i64 {
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", &self.brokers);
        count_records(&client, topic)
    }

    /// Every record of a topic: read until nothing comes for 3 seconds
    /// (committed records only: librdkafka's default isolation).
    pub fn read_all(&self, topic: &str) -> Vec<rdkafka::message::OwnedMessage> {
        self.read_all_as(topic, "read_committed")
    }

    /// [`Topics::read_all`] with this `isolation.level`.
    pub fn read_all_as(&self, topic: &str, isolation: &str) -> Vec<rdkafka::message::OwnedMessage> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", unique("reader"))
            .set("isolation.level", isolation)
            .create()
            .expect("a consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..3 {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .expect("a partition");
        }
        consumer.assign(&tpl).expect("assign");
        let mut out = Vec::new();
        let mut quiet_since = Instant::now();
        while quiet_since.elapsed() < Duration::from_secs(3) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                out.push(m.detach());
                quiet_since = Instant::now();
            }
        }
        out
    }
}

/// Records on a topic of three partitions, read by a client of `config`.
pub fn count_records(config: &ClientConfig, topic: &str) -> i64 {
    let consumer: BaseConsumer = config.create().expect("a consumer");
    (0..3)
        .map(|p| {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks");
            high - low
        })
        .sum()
}

/// Every record is a predictions event as `schemas/prediction-event.v1.json`
/// says, with its headers, from `processing` (batch or streaming).
pub fn assert_valid_events(records: &[rdkafka::message::OwnedMessage], processing: &str) {
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../../../schemas/prediction-event.v1.json"))
            .expect("the schema is JSON");
    let validator = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("a valid schema");
    assert!(!records.is_empty(), "no predictions event");
    for m in records {
        let value: serde_json::Value =
            serde_json::from_slice(m.payload().expect("a value")).expect("JSON");
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{value}: {errors:?}");
        assert_eq!(value["lineage"]["processing_type"], processing, "{value}");
        let key = std::str::from_utf8(m.key().expect("a key")).expect("UTF-8");
        assert_eq!(value["transaction"]["id"], key, "keyed by transaction id");
        let headers = m.headers().expect("headers");
        let version = headers
            .iter()
            .find(|h| h.key == "schema-version")
            .and_then(|h| h.value);
        assert_eq!(version, Some(&b"1"[..]));
    }
}

/// A `txflow consume` process, its log in a file of its own.
pub struct Member {
    child: Child,
    log: tempfile::NamedTempFile,
}

impl Member {
    pub fn start(
        topics: &Topics,
        db: &Database,
        group: &str,
        member: &str,
        extra: &[&str],
    ) -> Member {
        Member::start_on(topics, &db.url, group, Some(member), extra)
    }

    /// A member writing to `database_url`; `member: None` keeps the default
    /// name (host and pid), as an operator would run it.
    pub fn start_on(
        topics: &Topics,
        database_url: &str,
        group: &str,
        member: Option<&str>,
        extra: &[&str],
    ) -> Member {
        Member::start_with(topics, database_url, group, member, extra, &[])
    }

    /// [`Member::start_on`] with these environment variables.
    pub fn start_with(
        topics: &Topics,
        database_url: &str,
        group: &str,
        member: Option<&str>,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Member {
        // The schema first, so the test can count rows from the start.
        txflow(
            &std::env::temp_dir(),
            &["migrate", "--database-url", database_url],
        )
        .assert_code(0);
        let mut args: Vec<String> = ["consume", "--database-url", database_url, "--group", group]
            .map(String::from)
            .to_vec();
        if let Some(member) = member {
            args.extend(["--member".to_owned(), member.to_owned()]);
        }
        args.extend(["--max-batch", "500", "--max-wait", "100ms"].map(String::from));
        args.extend(topics.flags());
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        if !extra.contains(&"--metrics-listen") {
            args.extend(["--metrics-listen", "127.0.0.1:0"].map(String::from));
        }
        Member::spawn(&args, env)
    }

    /// Any long-running `txflow` command (`consume`, `sink`), its log (JSON
    /// lines) in a file of its own.
    pub fn spawn(args: &[String], env: &[(&str, &str)]) -> Member {
        let log = tempfile::NamedTempFile::new().expect("a log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_txflow"));
        command
            .args(args)
            .envs(env.iter().copied())
            .env("TXFLOW_LOG_FORMAT", "json")
            .env("AWS_ENDPOINT_URL", harness_var("TXFLOW_TEST_S3_ENDPOINT"))
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("the log file"));
        Member {
            child: command.spawn().expect("starting txflow"),
            log,
        }
    }

    /// How many partitions the member's latest assignment holds (its log's
    /// last "partitions assigned"), if it logged one.
    fn assigned(&self) -> Option<usize> {
        self.log().lines().rev().find_map(|line| {
            let entry: serde_json::Value = serde_json::from_str(line).ok()?;
            let fields = entry.get("fields").unwrap_or(&entry);
            if fields.get("message")?.as_str()? != "partitions assigned" {
                return None;
            }
            Some(fields.get("partitions")?.as_str()?.matches('@').count())
        })
    }

    /// Waits until every member holds some partitions and together they
    /// hold `partitions`, each once: the group has settled.
    pub fn wait_settled(members: &[&Member], partitions: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let held: Vec<Option<usize>> = members.iter().map(|m| m.assigned()).collect();
            if held.iter().all(|h| h.is_some_and(|n| n > 0))
                && held.iter().flatten().sum::<usize>() == partitions
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the group did not settle within {within:?}: latest assignments {held:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What the member logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(mut self) {
        self.signal("-TERM");
        let status = self.wait(Duration::from_secs(30));
        assert!(
            status.success(),
            "txflow exited with {status}\n{}",
            self.log()
        );
    }

    /// Waits for the process to end by itself.
    pub fn wait(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("the member") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "txflow still runs after {within:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("the member").is_none()
    }

    pub fn kill_9(mut self) {
        self.signal("-KILL");
        let _ = self.child.wait();
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn wait_for(db: &Database, table: &str, n: i64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let count = db.count(table, "").await;
        if count >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{table}: {count} rows after {within:?}, {n} expected"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn every_event_produced_is_stored_once_with_its_prediction_published() {
    let topics = Topics::create();
    let db = Database::create().await;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let member = Member::start(
        &topics,
        &db,
        &unique("g"),
        "m1",
        &["--metrics-listen", &listen],
    );
    topics.produce(3_000);
    wait_for(&db, "predictions", 3_000, Duration::from_secs(60)).await;
    let health = crate::harness::get(format!("http://{listen}/health"))
        .await
        .expect("/health");
    assert_eq!(health.status(), 200);
    let metrics = scrape_checked(&format!("http://{listen}/metrics")).await;
    for name in [
        "txflow_stream_records_consumed_total 3000",
        "txflow_stream_transactions_written_total 3000",
        "txflow_stream_batch_size",
        "txflow_stream_flush_seconds",
        "txflow_stream_end_to_end_seconds",
    ] {
        assert!(metrics.contains(name), "no {name} in\n{metrics}");
    }
    member.stop();
    assert_eq!(
        db.count("transactions", "processing_type = 'streaming'")
            .await,
        3_000
    );
    assert_eq!(db.count("predictions", "").await, 3_000);
    assert_eq!(
        db.count_sql("SELECT sum(next_offset)::bigint FROM stream_offsets")
            .await,
        3_000
    );
    // Every prediction is on the topic (at least once: a replay may repeat one).
    let published: HashSet<Vec<u8>> = topics
        .read_all(&topics.predictions)
        .iter()
        .filter_map(|m| m.key().map(<[u8]>::to_vec))
        .collect();
    assert_eq!(published.len(), 3_000);
    assert_valid_events(&topics.read_all(&topics.predictions), "streaming");
    assert_eq!(topics.count(&topics.dead_letters), 0);
    assert_eq!(
        db.count(
            "runs",
            "kind = 'streaming' AND status = 'succeeded' AND rows_read = 3000"
        )
        .await,
        1
    );
    // Lineage: topic, partition and offset of each event.
    let located = db
        .count(
            "transactions",
            &format!(
                "source_location LIKE 'kafka://{}/%' AND source_offset >= 0",
                topics.transactions
            ),
        )
        .await;
    assert_eq!(located, 3_000);
}

#[tokio::test]
async fn poison_records_go_to_the_dead_letter_topic_with_their_story_and_the_rest_is_stored() {
    let topics = Topics::create();
    let db = Database::create().await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &topics.brokers)
        .set("message.max.bytes", "4000000")
        .create()
        .expect("a producer");
    let good = |i: u32| {
        format!(
            r#"{{"id": "{}", "description": "Coffee {i}", "amount": -2.5, "timestamp": "2024-03-01T08:15:00Z",
                "merchant": "Café", "operation_type": "card", "side": "debit"}}"#,
            uuid::Uuid::new_v4()
        )
    };
    let huge = format!(
        r#"{{"id": "{}", "description": "{}", "amount": -2.5, "timestamp": "2024-03-01T08:15:00Z",
            "merchant": null, "operation_type": "card", "side": "debit"}}"#,
        uuid::Uuid::new_v4(),
        "x".repeat(1_000_000)
    );
    let poison: Vec<(&str, Vec<u8>)> = vec![
        ("not-json", b"this is not JSON".to_vec()),
        ("missing-fields", br#"{"id": "8d6f1a8e-1b7c-4f5e-9a55-2f1c7a0e9b11", "amount": -1}"#.to_vec()),
        (
            "bad-uuid",
            br#"{"id": "12345", "description": "x", "amount": -1, "timestamp": "2024-03-01T08:15:00Z",
                "operation_type": "card", "side": "debit"}"#
                .to_vec(),
        ),
        ("huge", huge.into_bytes()),
    ];
    // All on one partition (same key for the good ones), poison in the middle.
    let mut values: Vec<(String, Vec<u8>)> = (0..5)
        .map(|i| ("good".to_owned(), good(i).into_bytes()))
        .collect();
    values.extend(poison.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    values.extend((5..10).map(|i| ("good".to_owned(), good(i).into_bytes())));
    for (key, value) in &values {
        let record = FutureRecord::to(&topics.transactions)
            .key(key)
            .payload(value)
            .partition(1)
            .headers(OwnedHeaders::new().insert(Header {
                key: "origin",
                value: Some("test"),
            }));
        producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .expect("produced");
    }

    let member = Member::start(&topics, &db, &unique("g"), "m1", &[]);
    wait_for(&db, "transactions", 10, Duration::from_secs(60)).await;
    wait_for(&db, "rejected_records", 4, Duration::from_secs(30)).await;
    member.stop();
    assert_eq!(db.count("transactions", "").await, 10);
    let dead = topics.read_all(&topics.dead_letters);
    assert_eq!(dead.len(), 4);
    let header = |m: &rdkafka::message::OwnedMessage, name: &str| -> String {
        m.headers()
            .and_then(|h| h.iter().find(|h| h.key == name))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_else(|| panic!("no header {name}"))
    };
    let mut by_key: HashMap<String, &rdkafka::message::OwnedMessage> = HashMap::new();
    for m in &dead {
        by_key.insert(
            String::from_utf8_lossy(m.key().expect("a key")).into_owned(),
            m,
        );
    }
    let expect = [
        ("not-json", "decode", "event_format"),
        ("missing-fields", "validation", "required"),
        ("bad-uuid", "validation", "id_format"),
        ("huge", "validation", "field_length"),
    ];
    for (key, class, rule) in expect {
        let m = by_key
            .get(key)
            .unwrap_or_else(|| panic!("no dead letter {key}"));
        assert_eq!(header(m, "txflow-error-class"), class, "{key}");
        assert_eq!(header(m, "txflow-error-rule"), rule, "{key}");
        assert!(!header(m, "txflow-error-message").is_empty());
        assert_eq!(header(m, "txflow-source-topic"), topics.transactions);
        assert_eq!(header(m, "txflow-source-partition"), "1");
        assert!(
            header(m, "txflow-source-offset")
                .parse::<i64>()
                .expect("an offset")
                >= 5
        );
        assert_eq!(header(m, "txflow-attempts"), "1");
        assert!(header(m, "txflow-first-failure").starts_with("20"));
        assert!(header(m, "txflow-version").starts_with("txflow "));
        assert_eq!(
            header(m, "origin"),
            "test",
            "the record's own headers are kept"
        );
        let original = &poison
            .iter()
            .find(|(k, _)| *k == key)
            .expect("the poison")
            .1;
        assert_eq!(
            m.payload(),
            Some(original.as_slice()),
            "{key}: original bytes"
        );
    }
}

#[tokio::test]
async fn two_members_of_one_group_split_the_partitions_and_write_each_record_once() {
    let topics = Topics::create();
    let db = Database::create().await;
    let group = unique("g");
    let first = Member::start(&topics, &db, &group, "m1", &[]);
    let second = Member::start(&topics, &db, &group, "m2", &[]);
    // Let the group settle before the records arrive.
    Member::wait_settled(&[&first, &second], 3, Duration::from_secs(60));
    topics.produce(6_000);
    wait_for(&db, "predictions", 6_000, Duration::from_secs(90)).await;
    first.stop();
    second.stop();
    assert_eq!(db.count("transactions", "").await, 6_000);
    let members = db
        .count_sql("SELECT count(DISTINCT run_id) FROM transactions")
        .await;
    assert_eq!(members, 2, "both members should have written");
}

#[tokio::test]
async fn with_the_classifier_down_nothing_is_dead_lettered_and_all_is_written_after_recovery() {
    let topics = Topics::create();
    let db = Database::create().await;
    let url = format!("http://127.0.0.1:{}", free_port());
    let member = Member::start(&topics, &db, &unique("g"), "m1", &["--classifier", &url]);
    topics.produce(500);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(db.count("transactions", "").await, 0);
    assert_eq!(topics.count(&topics.dead_letters), 0);

    let mut serve = Command::new(env!("CARGO_BIN_EXE_txflow"))
        .args(["serve", "--listen", url.trim_start_matches("http://")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting txflow serve");
    wait_for(&db, "predictions", 500, Duration::from_secs(60)).await;
    member.stop();
    let _ = serve.kill();
    let _ = serve.wait();
    assert_eq!(db.count("transactions", "").await, 500);
    assert_eq!(topics.count(&topics.dead_letters), 0);
    assert_eq!(db.count("classification_failures", "").await, 0);
}

#[tokio::test]
async fn produce_from_a_csv_file_with_simulated_producers_publishes_the_file_s_transactions() {
    let topics = Topics::create();
    let sample = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../samples/transactions_sample.csv"
    );
    let run = topics.txflow(&[
        "produce",
        "--from-csv",
        sample,
        "--producer",
        "5-10@50ms",
        "--producer",
        "1-2@20ms",
        "--count",
        "120",
        "--seed",
        "7",
    ]);
    run.assert_code(0);
    assert!(
        run.stdout.contains("120 events published"),
        "{}",
        run.stdout
    );
    let descriptions: HashSet<String> = std::fs::read_to_string(sample)
        .expect("the sample")
        .lines()
        .skip(1)
        .filter_map(|l| Some(l.split(';').nth(1)?.trim_matches('"').to_owned()))
        .collect();
    let records = topics.read_all(&topics.transactions);
    assert_eq!(records.len(), 120);
    let mut ids = HashSet::new();
    for record in &records {
        let event: serde_json::Value =
            serde_json::from_slice(record.payload().expect("a value")).expect("JSON");
        let description = event["description"].as_str().expect("a description");
        assert!(
            descriptions.contains(description),
            "{description:?} is not a description of the sample"
        );
        ids.insert(event["id"].as_str().expect("an id").to_owned());
    }
    assert_eq!(ids.len(), 120, "each event gets a new id");
    // A rate of 0 is refused with the fix.
    let refused = topics.txflow(&["produce", "--rate", "0", "--count", "1"]);
    refused.assert_code(1);
    assert!(refused.stderr.contains("--flat"), "{}", refused.stderr);
}
