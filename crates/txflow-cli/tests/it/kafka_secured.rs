//! The stream over Apache Kafka's SASL_SSL listener (SCRAM-SHA-512, a
//! certificate signed by the harness's private CA), end to end: every Kafka
//! command, configured each documented way (`--kafka-option`, the
//! `TXFLOW_KAFKA_OPT_*` variables, the `[kafka]` table, `KEY=@file` for the
//! password); and the refusals a user meets first, each at once and with
//! librdkafka's reason. The password never appears in any output.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::harness::{Database, Run, harness_var, txflow_command, unique, wait_count_at};
use crate::stream::{Member, Topics, count_records, wait_for};

/// The SASL_SSL listener and what a client needs to use it.
struct Secured {
    /// The SASL_SSL listener and the test's topic names (created by the
    /// test itself, over that listener).
    topics: Topics,
    ca: String,
    password: String,
    /// Holds the password, for `sasl.password=@FILE`.
    password_file: tempfile::NamedTempFile,
}

impl Secured {
    fn new() -> Secured {
        let password = harness_var("TXFLOW_TEST_KAFKA_PASSWORD");
        let password_file = tempfile::NamedTempFile::new().expect("a file");
        // A trailing newline, as `echo` or a mounted secret leaves it.
        std::fs::write(password_file.path(), format!("{password}\n")).expect("the password file");
        let name = unique("sec");
        Secured {
            topics: Topics {
                brokers: harness_var("TXFLOW_TEST_KAFKA_SASL_SSL_BROKERS"),
                transactions: format!("{name}-transactions"),
                predictions: format!("{name}-predictions"),
                dead_letters: format!("{name}-failed"),
            },
            ca: harness_var("TXFLOW_TEST_KAFKA_CA"),
            password,
            password_file,
        }
    }

    fn password_ref(&self) -> String {
        format!("@{}", self.password_file.path().display())
    }

    /// The settings besides the password.
    fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("security.protocol", "SASL_SSL".to_owned()),
            ("sasl.mechanism", "SCRAM-SHA-512".to_owned()),
            ("sasl.username", harness_var("TXFLOW_TEST_KAFKA_USER")),
            ("ssl.ca.location", self.ca.clone()),
        ]
    }

    /// Everything as `--kafka-option` flags, the password from its file.
    fn option_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        for (key, value) in self.settings() {
            flags.extend(["--kafka-option".to_owned(), format!("{key}={value}")]);
        }
        flags.extend([
            "--kafka-option".to_owned(),
            format!("sasl.password={}", self.password_ref()),
        ]);
        flags
    }

    /// Everything as `TXFLOW_KAFKA_OPT_*` variables, the password's value
    /// itself (as a container's environment gives it).
    fn variables(&self) -> Vec<(String, String)> {
        let mut settings = self.settings();
        settings.push(("sasl.password", self.password.clone()));
        settings
            .into_iter()
            .map(|(key, value)| {
                let name = format!("TXFLOW_KAFKA_OPT_{}", key.replace('.', "_").to_uppercase());
                (name, value)
            })
            .collect()
    }

    /// A configuration file whose `[kafka]` table holds everything, the
    /// password from its file.
    fn config_file(&self) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().expect("a file");
        let mut text = String::from("[kafka]\n");
        for (key, value) in self.settings() {
            text.push_str(&format!("{key:?} = {value:?}\n"));
        }
        text.push_str(&format!("\"sasl.password\" = {:?}\n", self.password_ref()));
        std::fs::write(file.path(), text).expect("the configuration file");
        file
    }

    /// A client of the test's own, with every setting.
    fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.topics.brokers);
        for (key, value) in self.settings() {
            config.set(key, value);
        }
        config.set("sasl.password", &self.password);
        config
    }

    /// Records on a topic of three partitions, counted over SASL_SSL.
    fn count(&self, topic: &str) -> i64 {
        count_records(&self.client(), topic)
    }

    /// `txflow ARGS` with `env`; fails the test if the output shows the
    /// password.
    fn run(&self, args: &[String], env: &[(String, String)]) -> (Run, Duration) {
        let mut command = txflow_command(&std::env::temp_dir(), &[]);
        command.args(args);
        for (name, value) in env {
            command.env(name, value);
        }
        let started = Instant::now();
        let run: Run = command.output().expect("txflow").into();
        let took = started.elapsed();
        self.assert_no_password(&format!("{args:?}"), &run.stdout);
        self.assert_no_password(&format!("{args:?}"), &run.stderr);
        (run, took)
    }

    fn assert_no_password(&self, what: &str, output: &str) {
        assert!(
            !output.contains(&self.password),
            "{what} printed the Kafka password:\n{output}"
        );
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

#[tokio::test]
async fn the_stream_runs_over_sasl_ssl_configured_by_flags_variables_and_the_config_file() {
    let secured = Secured::new();

    // topics: --kafka-option flags, the password from a file.
    let mut args = strings(&[
        "topics",
        "create",
        "--partitions",
        "3",
        "--replication",
        "1",
    ]);
    args.extend(secured.topics.flags());
    args.extend(secured.option_flags());
    let (created, _) = secured.run(&args, &[]);
    created.assert_code(0);
    assert!(created.stdout.contains("created"), "{}", created.stdout);

    // produce: the variables.
    let mut args = strings(&["produce", "--flat", "--count", "500"]);
    args.extend(secured.topics.flags());
    let (produced, _) = secured.run(&args, &secured.variables());
    produced.assert_code(0);
    // And one record no member can read, for the dead-letter topic.
    let producer: FutureProducer = secured.client().create().expect("a producer");
    producer
        .send(
            FutureRecord::<str, [u8]>::to(&secured.topics.transactions)
                .key("poison")
                .payload(&b"this is not JSON"[..]),
            Duration::from_secs(10),
        )
        .await
        .expect("the poison record over SASL_SSL");

    // consume: the [kafka] table of a configuration file.
    let db = Database::create().await;
    let config = secured.config_file();
    let migrate = strings(&["migrate", "--database-url", &db.url]);
    secured.run(&migrate, &[]).0.assert_code(0);
    let mut args = strings(&[
        "--config",
        config.path().to_str().expect("a UTF-8 path"),
        "consume",
        "--database-url",
        &db.url,
        "--group",
        &unique("g"),
        "--max-wait",
        "100ms",
    ]);
    args.extend(secured.topics.flags());
    let member = Member::spawn(&args, &[]);
    wait_for(&db, "predictions", 500, Duration::from_secs(60)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while secured.count(&secured.topics.dead_letters) < 1 {
        assert!(
            Instant::now() < deadline,
            "no dead letter after 30 s\n{}",
            member.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = member.log();
    member.stop();
    secured.assert_no_password("consume's log", &log);
    assert_eq!(db.count("transactions", "").await, 500);
    assert_eq!(secured.count(&secured.topics.predictions), 500);

    // The predictions read back over SASL_SSL: one per stored transaction.
    let consumer: BaseConsumer = secured
        .client()
        .set("group.id", unique("reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("a consumer");
    consumer
        .subscribe(&[&secured.topics.predictions])
        .expect("subscribe");
    let mut keys = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while keys.len() < 500 && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            keys.insert(m.key().map(<[u8]>::to_vec));
        }
    }
    assert_eq!(keys.len(), 500);

    // dlq: flags again; the letter is there, counted.
    let mut args = strings(&["dlq", "list", "--json"]);
    args.extend(secured.topics.flags());
    args.extend(secured.option_flags());
    let (listed, _) = secured.run(&args, &[]);
    listed.assert_code(0);
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).expect("JSON");
    assert_eq!(listed["total"], 1, "{listed}");

    // sink: the predictions into a second database, variables again.
    let replica = Database::create().await;
    let migrate = strings(&["migrate", "--database-url", &replica.url]);
    secured.run(&migrate, &[]).0.assert_code(0);
    let mut args = strings(&["sink", &replica.url, "--group", &unique("replica")]);
    args.extend(secured.topics.flags());
    let variables = secured.variables();
    let env: Vec<(&str, &str)> = variables
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let sink = Member::spawn(&args, &env);
    wait_count_at(
        &replica.url,
        "SELECT count(*) FROM predictions",
        500,
        Duration::from_secs(60),
        || sink.log(),
    )
    .await;
    let log = sink.log();
    sink.stop();
    secured.assert_no_password("sink's log", &log);
}

/// `txflow topics create` on `brokers` with `settings` (and no others):
/// its output and how long it took.
fn create_topics(secured: &Secured, brokers: &str, settings: &[(&str, String)]) -> (Run, Duration) {
    let mut args = strings(&["topics", "create", "--replication", "1"]);
    args.extend(secured.topics.flags());
    let at = args
        .iter()
        .position(|a| a == "--brokers")
        .expect("--brokers")
        + 1;
    args[at] = brokers.to_owned();
    for (key, value) in settings {
        args.extend(["--kafka-option".to_owned(), format!("{key}={value}")]);
    }
    secured.run(&args, &[])
}

/// [`create_topics`], which must fail.
fn refused(secured: &Secured, brokers: &str, settings: &[(&str, String)]) -> (Run, Duration) {
    let (run, took) = create_topics(secured, brokers, settings);
    run.assert_code(1);
    (run, took)
}

#[test]
fn a_wrong_password_an_unknown_ca_and_a_plaintext_client_are_refused_at_once_saying_why() {
    let secured = Secured::new();
    let mut settings = secured.settings();

    // A wrong password: the broker's SCRAM refusal.
    settings.push(("sasl.password", "not-the-password".to_owned()));
    let (run, took) = refused(&secured, &secured.topics.brokers, &settings);
    assert!(
        run.stderr.contains("SASL authentication error")
            && run.stderr.contains("invalid credentials"),
        "{}",
        run.stderr
    );
    assert!(took < Duration::from_secs(15), "took {took:?}");

    // The right password, but a CA that did not sign the broker's
    // certificate: the TLS verification failure.
    let mut settings = secured.settings();
    settings.retain(|(key, _)| *key != "ssl.ca.location");
    settings.push(("ssl.ca.location", harness_var("TXFLOW_TEST_KAFKA_OTHER_CA")));
    settings.push(("sasl.password", secured.password_ref()));
    let (run, took) = refused(&secured, &secured.topics.brokers, &settings);
    assert!(
        run.stderr.contains("certificate verify failed"),
        "{}",
        run.stderr
    );
    assert!(took < Duration::from_secs(15), "took {took:?}");

    // A client without TLS or SASL on the SASL_SSL port: Kafka closes the
    // connection, which librdkafka only logs; txflow says what it means.
    let (run, took) = refused(&secured, &secured.topics.brokers, &[]);
    assert!(
        run.stderr
            .contains("does it expect TLS (security.protocol=SSL or SASL_SSL)?"),
        "{}",
        run.stderr
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");

    // SASL without TLS on the SASL_PLAINTEXT listener works, with the same
    // user: the listener decides, not txflow.
    let mut settings = secured.settings();
    settings.retain(|(key, _)| *key != "security.protocol" && *key != "ssl.ca.location");
    settings.push(("security.protocol", "SASL_PLAINTEXT".to_owned()));
    settings.push(("sasl.password", secured.password_ref()));
    let brokers = harness_var("TXFLOW_TEST_KAFKA_SASL_BROKERS");
    let (run, _) = create_topics(&secured, &brokers, &settings);
    run.assert_code(0);
}
