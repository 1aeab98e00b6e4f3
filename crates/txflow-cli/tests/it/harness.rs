//! What every integration test needs: the `txflow` binary, a fresh
//! PostgreSQL database and a unique S3 prefix on the servers that
//! `scripts/harness.sh` started (its `env` file sets `TXFLOW_TEST_*`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use tokio_postgres::{Client, NoTls};

/// A variable the harness sets; without it the tests cannot run, and say how.
pub fn harness_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests with scripts/test.sh, which starts PostgreSQL and S3 \
             (or `scripts/harness.sh start DIR` and `source DIR/env`)"
        )
    })
}

/// The 10,000-row reference sample, beside the repository (`../shared`).
pub fn reference_file() -> PathBuf {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/transactions_fr.csv");
    assert!(
        path.exists(),
        "the reference sample {} is missing: it lives in ../shared/data beside the repository",
        path.display()
    );
    path
}

/// A short unique name for databases, prefixes and run ids.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// A database of its own for one test.
pub struct Database {
    pub url: String,
    pub client: Client,
}

impl Database {
    pub async fn create() -> Database {
        let admin_url = harness_var("TXFLOW_TEST_DATABASE_URL");
        let admin = connect(&admin_url).await;
        let name = unique("it");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("creating a test database");
        let base = admin_url
            .rsplit_once('/')
            .map(|(base, _)| base)
            .expect("TXFLOW_TEST_DATABASE_URL ends with /database");
        let url = format!("{base}/{name}");
        let client = connect(&url).await;
        Database { url, client }
    }

    /// The single number a query answers.
    pub async fn count_sql(&self, sql: &str) -> i64 {
        self.client
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }

    /// `SELECT count(*)` of a table or view, with an optional WHERE clause.
    pub async fn count(&self, table: &str, filter: &str) -> i64 {
        let sql = if filter.is_empty() {
            format!("SELECT count(*) FROM {table}")
        } else {
            format!("SELECT count(*) FROM {table} WHERE {filter}")
        };
        self.client
            .query_one(&sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }
}

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    tokio::spawn(connection);
    client
}

/// The single number `sql` answers, over a connection made for it, so that
/// it works across server restarts; `None` while the server, or the table,
/// is not there.
pub async fn try_count_at(url: &str, sql: &str) -> Option<i64> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.ok()?;
    tokio::spawn(connection);
    client.query_one(sql, &[]).await.ok().map(|r| r.get(0))
}

/// [`try_count_at`], the server expected to answer.
pub async fn count_at(url: &str, sql: &str) -> i64 {
    try_count_at(url, sql)
        .await
        .unwrap_or_else(|| panic!("{sql}: the database does not answer"))
}

/// Waits until `sql` answers at least `n` (a server away counts as not
/// yet); returns how long it took. On time-out the failure shows `context()`
/// (processes' logs, say).
pub async fn wait_count_at(
    url: &str,
    sql: &str,
    n: i64,
    within: std::time::Duration,
    context: impl Fn() -> String,
) -> std::time::Duration {
    let started = std::time::Instant::now();
    loop {
        let got = try_count_at(url, sql).await;
        if got.is_some_and(|got| got >= n) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{sql}: {got:?} after {within:?}, {n} expected\n{}",
            context()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The harness's S3 bucket, under a prefix of this test's own.
pub struct Bucket {
    pub store: AmazonS3,
    pub bucket: String,
    pub prefix: String,
}

impl Bucket {
    pub fn new() -> Bucket {
        let bucket = harness_var("TXFLOW_TEST_S3_BUCKET");
        tls_provider();
        let store = AmazonS3Builder::from_env()
            .with_endpoint(harness_var("TXFLOW_TEST_S3_ENDPOINT"))
            .with_bucket_name(&bucket)
            .with_allow_http(true)
            .build()
            .expect("an S3 client for the harness");
        Bucket {
            store,
            bucket,
            prefix: unique("it"),
        }
    }

    /// `s3://bucket/<prefix>/<key>`.
    pub fn url(&self, key: &str) -> String {
        format!("s3://{}/{}/{key}", self.bucket, self.prefix)
    }

    pub async fn put(&self, key: &str, body: impl Into<Vec<u8>>) -> String {
        let path = ObjectPath::from(format!("{}/{key}", self.prefix));
        self.store
            .put(&path, PutPayload::from(body.into()))
            .await
            .unwrap_or_else(|e| panic!("uploading {key}: {e}"));
        self.url(key)
    }

    pub async fn get(&self, key: &str) -> Option<String> {
        let path = ObjectPath::from(format!("{}/{key}", self.prefix));
        match self.store.get(&path).await {
            Ok(object) => {
                let bytes = object.bytes().await.expect("reading an S3 object");
                Some(String::from_utf8(bytes.to_vec()).expect("UTF-8"))
            }
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => panic!("reading {key}: {e}"),
        }
    }
}

/// One run of the `txflow` binary.
pub struct Run {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.status,
            Some(code),
            "txflow exited with {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// The `--summary-json -` document (the JSON object on stdout).
    pub fn summary(&self) -> serde_json::Value {
        let start = self
            .stdout
            .find("\n{")
            .map(|i| i + 1)
            .or_else(|| self.stdout.starts_with('{').then_some(0))
            .unwrap_or_else(|| panic!("no JSON summary in stdout:\n{}", self.stdout));
        serde_json::from_str(&self.stdout[start..]).expect("the JSON summary")
    }
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            status: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// The `txflow` binary in `dir` with the harness's S3 settings and no
/// inherited database URL or run id, so each test says what it means.
pub fn txflow_command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_txflow"));
    command
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("TXFLOW_RUN_ID")
        .env("AWS_ENDPOINT_URL", harness_var("TXFLOW_TEST_S3_ENDPOINT"))
        .env("TXFLOW_LOG_FORMAT", "text")
        .env("NO_COLOR", "1");
    command
}

/// Runs [`txflow_command`] to its end.
pub fn txflow(dir: &Path, args: &[&str]) -> Run {
    txflow_command(dir, args)
        .output()
        .expect("starting the txflow binary")
        .into()
}

/// rustls's process provider, installed as the binary installs it (reqwest
/// needs one; see `src/tls.rs`).
pub fn tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An HTTP client for the tests.
pub fn http() -> reqwest::Client {
    tls_provider();
    reqwest::Client::new()
}

/// `GET url` with [`http`].
pub async fn get(url: impl reqwest::IntoUrl) -> reqwest::Result<reqwest::Response> {
    http().get(url).send().await
}

/// The text of a `/metrics` endpoint, after Prometheus's own linter
/// (`promtool check metrics`: help text, types, names, histogram series)
/// found nothing to say about it.
pub async fn scrape_checked(url: &str) -> String {
    let text = get(url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    promtool_check(&text, url);
    text
}

/// Runs `promtool check metrics` on `text`; panics with what it said.
pub fn promtool_check(text: &str, what: &str) {
    use std::io::Write;
    let mut child = Command::new(harness_var("TXFLOW_TEST_PROMTOOL"))
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("writing to promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics of {what}: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Stops a `txflow` server process: SIGTERM first (it finishes its requests
/// and exits, and an instrumented build writes its coverage profile),
/// SIGKILL after 5 s.
pub fn stop(child: &mut std::process::Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}
