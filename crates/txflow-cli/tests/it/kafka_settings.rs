//! librdkafka settings reach every Kafka command, from flags, variables and
//! the configuration file; bad ones are refused naming the key, values are
//! never printed, and security settings that do not match the broker's
//! listener fail at once with a message that says so.

use std::process::Output;
use std::time::{Duration, Instant};

use crate::harness::{Run, harness_var, txflow_command};

fn run(args: &[&str], env: &[(&str, &str)]) -> (Run, Duration) {
    let dir = std::env::temp_dir();
    let mut command = txflow_command(&dir, args);
    for (name, value) in env {
        command.env(name, value);
    }
    let started = Instant::now();
    let output: Output = command.output().expect("txflow");
    (output.into(), started.elapsed())
}

fn brokers() -> String {
    harness_var("TXFLOW_TEST_KAFKA_BROKERS")
}

#[test]
fn an_unknown_setting_is_refused_naming_it_from_a_flag_a_variable_or_the_file() {
    let b = brokers();
    let (flag, _) = run(
        &[
            "topics",
            "create",
            "--brokers",
            &b,
            "--kafka-option",
            "no.such.thing=1",
        ],
        &[],
    );
    let (variable, _) = run(
        &["topics", "create", "--brokers", &b],
        &[("TXFLOW_KAFKA_OPT_NO_SUCH_THING", "1")],
    );
    let file = tempfile::NamedTempFile::new().expect("a file");
    std::fs::write(file.path(), "[kafka]\n\"no.such.thing\" = 1\n").expect("the file");
    let path = file.path().to_str().expect("a UTF-8 path");
    let (from_file, _) = run(
        &["--config", path, "topics", "create", "--brokers", &b],
        &[],
    );
    for (run, how) in [(flag, "flag"), (variable, "variable"), (from_file, "file")] {
        run.assert_code(1);
        assert!(
            run.stderr.contains("\"no.such.thing\"") && run.stderr.contains("no such setting"),
            "{how}: {}",
            run.stderr
        );
    }
}

#[test]
fn a_secret_value_is_never_printed_even_when_refused() {
    let secret = "hunter2-do-not-print";
    let file = tempfile::NamedTempFile::new().expect("a file");
    std::fs::write(file.path(), format!("{secret}\n")).expect("the secret file");
    let from_file = format!("sasl.password=@{}", file.path().display());
    for args in [
        vec![
            "--kafka-option",
            "sasl.password=hunter2-do-not-print",
            "--kafka-option",
            "no.such.thing=1",
        ],
        vec![
            "--kafka-option",
            &from_file,
            "--kafka-option",
            "security.protocol=hunter2-do-not-print",
        ],
    ] {
        let mut all = vec![
            "consume",
            "--brokers",
            "127.0.0.1:1",
            "--database-url",
            "sqlite://:memory:",
        ];
        all.extend(args);
        let (run, _) = run(&all, &[]);
        assert_ne!(run.status, Some(0));
        assert!(
            !run.stdout.contains(secret) && !run.stderr.contains(secret),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn sasl_against_a_plaintext_listener_fails_at_once_saying_what_to_check() {
    let b = brokers();
    let sasl = [
        "--kafka-option",
        "security.protocol=sasl_plaintext",
        "--kafka-option",
        "sasl.mechanism=PLAIN",
        "--kafka-option",
        "sasl.username=txflow",
        "--kafka-option",
        "sasl.password=not-a-real-one",
    ];
    for command in [
        vec!["topics", "create", "--brokers", &b],
        vec!["produce", "--count", "1", "--brokers", &b],
    ] {
        let args = [command.as_slice(), &sasl].concat();
        let (run, took) = run(&args, &[]);
        assert_ne!(run.status, Some(0), "{}", run.stdout);
        // librdkafka's reason ends the check before its 10 s bound.
        assert!(took < Duration::from_secs(10), "{args:?} took {took:?}");
        assert!(
            run.stderr.contains("security.protocol")
                && run.stderr.contains("listener")
                && run.stderr.contains("(librdkafka: ")
                && run.stderr.contains("SASL"),
            "{}",
            run.stderr
        );
        assert!(!run.stderr.contains("not-a-real-one"), "{}", run.stderr);
    }
}

#[test]
fn tls_against_a_plaintext_listener_fails_within_the_check_saying_what_to_check() {
    let (run, took) = run(
        &[
            "topics",
            "create",
            "--brokers",
            &brokers(),
            "--kafka-option",
            "security.protocol=ssl",
        ],
        &[],
    );
    run.assert_code(1);
    // The metadata check's 10 s bound, plus start-up: never a hang.
    assert!(took < Duration::from_secs(15), "took {took:?}");
    // Tansu holds the handshake unanswered (our hint says "is the listener
    // plaintext?"); Apache Kafka closes it and librdkafka asks "connecting
    // to a PLAINTEXT broker listener?": either way the listener is named.
    assert!(
        run.stderr.to_lowercase().contains("plaintext") && run.stderr.contains("security.protocol"),
        "{}",
        run.stderr
    );
}

#[test]
fn settings_reach_librdkafka_and_a_valid_one_changes_nothing_else() {
    // A harmless setting, from a file value: the commands work as before.
    let file = tempfile::NamedTempFile::new().expect("a file");
    std::fs::write(file.path(), "txflow-settings-test\n").expect("the file");
    let client_id = format!("client.id=@{}", file.path().display());
    let (run, _) = run(
        &[
            "topics",
            "create",
            "--replication",
            "1",
            "--brokers",
            &brokers(),
            "--transactions-topic",
            "settings-tx",
            "--predictions-topic",
            "settings-p",
            "--dead-letter-topic",
            "settings-d",
            "--kafka-option",
            &client_id,
        ],
        &[("TXFLOW_KAFKA_OPT_SOCKET_KEEPALIVE_ENABLE", "true")],
    );
    run.assert_code(0);
}
