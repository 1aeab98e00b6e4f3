//! Secrets never leak: a database password (right and wrong), a SASL
//! password (from a flag, a variable and a file), the service's bearer
//! token and the S3 secret key are set for every command, succeeding and
//! failing runs alike, logs in text and JSON at debug level; then every
//! output (stdout, stderr, `--summary-json`, the errors file, `--help`, the
//! service's log) and every row of the database are searched for them.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Bucket, Run, harness_var, txflow_command};
use crate::servers::free_port;
use crate::tls::TlsDatabase;

const TOKEN: &str = "svc-token-SECRET-5d41402abc4b2a76b9719d911017c592";
const WRONG_PG_PASSWORD: &str = "wrong-pg-SECRET-7215ee9c7d9dc229d2921a40e899ec5f";
const SASL_FLAG: &str = "sasl-flag-SECRET-6f8f57715090da2632453988d9a1501b";
const SASL_VARIABLE: &str = "sasl-env-SECRET-1f3870be274f6c49b3e31a0c6728957f";
const SASL_FILE: &str = "sasl-file-SECRET-8e296a067a37563370ded05f5a3bf3ec";

const HEADER: &str = "id;description;amount;timestamp;merchant;operation_type;side\n";

/// Every text a run produced, by name.
#[derive(Default)]
struct Seen(Vec<(String, String)>);

impl Seen {
    fn add(&mut self, what: impl Into<String>, text: impl Into<String>) {
        self.0.push((what.into(), text.into()));
    }

    fn run(&mut self, what: &str, run: &Run) {
        self.add(format!("{what}: stdout"), run.stdout.clone());
        self.add(format!("{what}: stderr"), run.stderr.clone());
    }

    #[track_caller]
    fn assert_free_of(&self, secrets: &[&str]) {
        for (what, text) in &self.0 {
            for secret in secrets {
                assert!(
                    !text.contains(secret),
                    "a secret ({}…) appears in {what}:\n{text}",
                    &secret[..6]
                );
            }
        }
    }
}

#[tokio::test]
async fn no_secret_appears_in_any_output_or_in_the_database() {
    let db = TlsDatabase::create().await;
    let pg_password = harness_var("TXFLOW_TEST_PG_TLS_PASSWORD");
    let s3_secret = harness_var("AWS_SECRET_ACCESS_KEY");
    let brokers = harness_var("TXFLOW_TEST_KAFKA_BROKERS");
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = |name: &str| dir.path().join(name).to_str().expect("UTF-8").to_owned();
    std::fs::write(dir.path().join("tokens"), format!("{TOKEN}\n")).expect("write");
    std::fs::write(dir.path().join("sasl-password"), format!("{SASL_FILE}\n")).expect("write");
    let url = db.with("sslmode=require");
    let wrong_url = url.replace(&pg_password, WRONG_PG_PASSWORD);
    assert_ne!(url, wrong_url);
    let bucket = Bucket::new();
    let input = bucket
        .put(
            "in/mixed.csv",
            format!(
                "{HEADER}1;A;-1,00;2023-11-28 06:35:12;EDF;card;debit\n2;bad;x;2023-11-28 06:35:12;EDF;card;debit\n"
            ),
        )
        .await;

    // The service, its log kept.
    let port = free_port();
    let service_log = dir.path().join("serve.log");
    let mut serve = Command::new(env!("CARGO_BIN_EXE_txflow"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--auth-token-file", &path("tokens")])
        .env("RUST_LOG", "debug")
        .env("TXFLOW_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&service_log).expect("serve.log"))
        .spawn()
        .expect("txflow serve");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "txflow serve did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let service = format!("http://127.0.0.1:{port}");

    let sasl: Vec<String> = [
        "security.protocol=sasl_plaintext",
        "sasl.mechanism=SCRAM-SHA-256",
        "sasl.username=txflow",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("sasl.password={SASL_FLAG}")])
    .collect();
    let sasl_file = format!("sasl.password=@{}", path("sasl-password"));

    let mut seen = Seen::default();
    let mut run = |what: &str, args: &[&str], format: &str| -> Run {
        let run: Run = txflow_command(dir.path(), args)
            .env("RUST_LOG", "debug")
            .env("TXFLOW_LOG_FORMAT", format)
            .env("TXFLOW_KAFKA_OPT_SASL_PASSWORD", SASL_VARIABLE)
            .output()
            .expect("txflow")
            .into();
        seen.run(what, &run);
        run
    };

    // Succeeding runs.
    let summary = path("summary.json");
    run(
        "batch",
        &[
            "batch",
            &input,
            "--database-url",
            &url,
            "--classifier",
            &service,
            "--classifier-token-file",
            "tokens",
            "--summary-json",
            &summary,
            "--run-id",
            "ok",
        ],
        "json",
    )
    .assert_code(0);
    run("runs", &["runs", "--database-url", &url, "--json"], "text").assert_code(0);
    run("migrate", &["migrate", "--database-url", &url], "json").assert_code(0);
    run(
        "list",
        &["list", &input, "--skip-done", "--database-url", &url],
        "text",
    )
    .assert_code(0);

    // Failing runs: wrong password, a server that is not there, a token the
    // service refuses, Kafka with SASL the broker does not offer.
    run(
        "batch, wrong password",
        &["batch", &input, "--database-url", &wrong_url],
        "text",
    )
    .assert_code(1);
    let nowhere = wrong_url.replace(
        &wrong_url[wrong_url.rfind(':').expect("a port")..wrong_url.rfind('/').expect("a path")],
        &format!(":{}", free_port()),
    );
    run(
        "batch, no server",
        &["batch", &input, "--database-url", &nowhere],
        "json",
    )
    .assert_code(1);
    std::fs::write(dir.path().join("bad-token"), format!("{SASL_VARIABLE}\n")).expect("write");
    run(
        "batch, refused token",
        &[
            "batch",
            &input,
            "--database-url",
            &url,
            "--classifier",
            &service,
            "--classifier-token-file",
            "bad-token",
            "--classifier-max-outage",
            "1s",
            "--run-id",
            "refused",
        ],
        "json",
    )
    .assert_code(1);
    let with_sasl = |command: &[&str], file: bool| -> Vec<String> {
        let mut args: Vec<String> = command.iter().map(|s| s.to_string()).collect();
        args.extend(["--brokers".to_owned(), brokers.clone()]);
        for setting in &sasl {
            args.extend(["--kafka-option".to_owned(), setting.clone()]);
        }
        if file {
            args.extend(["--kafka-option".to_owned(), sasl_file.clone()]);
        }
        args
    };
    for (what, command, file) in [
        ("topics", vec!["topics", "create"], false),
        ("produce", vec!["produce", "--count", "1"], true),
        ("consume", vec!["consume", "--database-url", &url], false),
    ] {
        let args = with_sasl(&command, file);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let failed = run(what, &args, "json");
        assert_eq!(failed.status, Some(1), "{what}: {}", failed.stderr);
    }
    // The variable alone (no flag): the same.
    run(
        "topics, variable",
        &[
            "topics",
            "create",
            "--brokers",
            &brokers,
            "--kafka-option",
            "security.protocol=sasl_plaintext",
            "--kafka-option",
            "sasl.mechanism=PLAIN",
        ],
        "text",
    )
    .assert_code(1);

    // Help, with the secrets in the environment the flags read.
    for command in [
        "batch", "consume", "produce", "topics", "runs", "list", "migrate", "serve",
    ] {
        let help: Run = txflow_command(dir.path(), &[command, "--help"])
            .env("DATABASE_URL", &url)
            .env("TXFLOW_KAFKA_OPT_SASL_PASSWORD", SASL_VARIABLE)
            .env("TXFLOW_CLASSIFIER_TOKEN_FILE", path("tokens"))
            .output()
            .expect("txflow --help")
            .into();
        help.assert_code(0);
        seen.run(&format!("{command} --help"), &help);
    }

    // The service's own log, after it stopped.
    let _ = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status();
    let _ = serve.wait();
    seen.add(
        "serve log",
        std::fs::read_to_string(&service_log).expect("serve.log"),
    );
    seen.add(
        "summary",
        std::fs::read_to_string(&summary).expect("summary.json"),
    );
    seen.add(
        "errors file",
        bucket
            .get("in/_txflow_errors/ok.csv")
            .await
            .expect("the errors file"),
    );

    // Every row of every table and view.
    for (table, rows) in db.dump().await {
        seen.add(format!("table {table}"), rows);
    }
    // The checks above must have seen real traffic, or they prove nothing.
    assert!(
        seen.0
            .iter()
            .any(|(what, text)| what == "table runs" && text.contains("refused")),
        "the runs table was not dumped"
    );
    assert!(
        seen.0
            .iter()
            .any(|(what, text)| what.starts_with("consume") && text.contains("SASL")),
        "consume did not reach the broker's SASL handshake"
    );

    seen.assert_free_of(&[
        &pg_password,
        WRONG_PG_PASSWORD,
        SASL_FLAG,
        SASL_VARIABLE,
        SASL_FILE,
        TOKEN,
        &s3_secret,
    ]);
}
