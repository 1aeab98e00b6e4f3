//! PostgreSQL over TLS, with libpq's `sslmode` and `sslrootcert`, against
//! the harness's TLS-only server (`hostssl`, password; its certificate
//! names "localhost" and is signed by a throwaway CA).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::{Run, harness_var, txflow_command, unique};

const HEADER: &str = "id;description;amount;timestamp;merchant;operation_type;side\n";

/// A database of its own on the TLS server, made over the server's Unix
/// socket (no TLS needed there); `url` has the password and no `sslmode`.
pub struct TlsDatabase {
    pub url: String,
    admin: String,
}

impl TlsDatabase {
    pub async fn create() -> TlsDatabase {
        let admin = harness_var("TXFLOW_TEST_PG_TLS_ADMIN");
        let name = unique("tls");
        let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("{admin}: {e}"));
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("creating a test database");
        let base = harness_var("TXFLOW_TEST_PG_TLS_URL");
        let base = base
            .strip_suffix("/postgres")
            .expect("URL ends with /postgres");
        TlsDatabase {
            url: format!("{base}/{name}"),
            admin: format!("{admin} dbname={name}"),
        }
    }

    /// The URL with `query` appended (`sslmode=…&…`).
    pub fn with(&self, query: &str) -> String {
        format!("{}?{query}", self.url)
    }

    async fn admin(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.admin, tokio_postgres::NoTls)
            .await
            .expect("the admin socket");
        tokio::spawn(connection);
        client
    }

    /// Every table and view of the database, each as its rows' text.
    pub async fn dump(&self) -> Vec<(String, String)> {
        let client = self.admin().await;
        let names: Vec<String> = client
            .query(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
                &[],
            )
            .await
            .expect("the tables")
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut dump = Vec::new();
        for name in names {
            let rows: String = client
                .query_one(
                    &format!("SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM \"{name}\" t"),
                    &[],
                )
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .get(0);
            dump.push((name, rows));
        }
        dump
    }

    async fn count(&self, table: &str) -> i64 {
        self.admin()
            .await
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .expect("count")
            .get(0)
    }
}

fn ca() -> String {
    harness_var("TXFLOW_TEST_PG_TLS_CA")
}

/// `txflow batch` of a two-row file into `url`, HOME set to `dir` so that
/// no `~/.postgresql/root.crt` of the machine plays a part.
fn batch(dir: &Path, url: &str) -> (Run, Duration) {
    std::fs::write(
        dir.join("in.csv"),
        format!(
            "{HEADER}1;A;-1,00;2023-11-28 06:35:12;EDF;card;debit\n2;B;2,00;2023-11-28 06:35:12;;transfer;credit\n"
        ),
    )
    .expect("writing the input");
    let started = Instant::now();
    let run: Run = txflow_command(dir, &["batch", "in.csv", "--database-url", url])
        .env("HOME", dir)
        .output()
        .expect("starting txflow")
        .into();
    (run, started.elapsed())
}

/// A refused connection fails at once (not after the outage allowance),
/// says why, and never shows the password.
#[track_caller]
fn assert_refused(run: &Run, took: Duration, cause: &str) {
    run.assert_code(1);
    assert!(
        run.stderr.contains(cause),
        "{cause:?} not in:\n{}",
        run.stderr
    );
    let password = harness_var("TXFLOW_TEST_PG_TLS_PASSWORD");
    assert!(!run.stderr.contains(&password), "{}", run.stderr);
    assert!(!run.stdout.contains(&password), "{}", run.stdout);
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[tokio::test]
async fn verify_full_with_the_ca_connects_and_writes_and_every_command_uses_it() {
    let db = TlsDatabase::create().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let url = db.with(&format!("sslmode=verify-full&sslrootcert={}", ca()));

    let (run, _) = batch(dir.path(), &url);
    run.assert_code(0);
    assert_eq!(db.count("transactions").await, 2);
    assert_eq!(db.count("predictions").await, 2);
    let password = harness_var("TXFLOW_TEST_PG_TLS_PASSWORD");
    assert!(!run.stdout.contains(&password), "{}", run.stdout);
    assert!(
        run.stdout.contains("txflow:***@localhost"),
        "{}",
        run.stdout
    );

    for args in [
        vec!["runs", "--database-url", &url, "--check", "--expect", "1"],
        vec!["migrate", "--database-url", &url],
        vec!["list", "in.csv", "--skip-done", "--database-url", &url],
    ] {
        let run: Run = txflow_command(dir.path(), &args)
            .env("HOME", dir.path())
            .output()
            .expect("starting txflow")
            .into();
        run.assert_code(0);
    }
}

#[tokio::test]
async fn verify_full_refuses_a_certificate_for_another_host_and_verify_ca_accepts_it() {
    let db = TlsDatabase::create().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    // Same server, reached as 127.0.0.1: the certificate names "localhost".
    let by_address = |mode: &str| {
        db.with(&format!("sslmode={mode}&sslrootcert={}", ca()))
            .replace("@localhost:", "@127.0.0.1:")
    };

    let (run, took) = batch(dir.path(), &by_address("verify-full"));
    assert_refused(
        &run,
        took,
        "the server's certificate does not name this host",
    );
    assert!(run.stderr.contains("sslmode=verify-full"), "{}", run.stderr);
    // Not even the schema was written.
    assert_eq!(db.count("pg_tables WHERE tablename = 'runs'").await, 0);

    let (run, _) = batch(dir.path(), &by_address("verify-ca"));
    run.assert_code(0);
    assert_eq!(db.count("transactions").await, 2);
}

#[tokio::test]
async fn verify_full_without_the_right_ca_is_refused_naming_the_cause() {
    let db = TlsDatabase::create().await;
    let dir = tempfile::tempdir().expect("a temp dir");

    let (run, took) = batch(dir.path(), &db.with("sslmode=verify-full"));
    assert_refused(&run, took, "add sslrootcert=");

    let other = harness_var("TXFLOW_TEST_PG_TLS_OTHER_CA");
    let (run, took) = batch(
        dir.path(),
        &db.with(&format!("sslmode=verify-full&sslrootcert={other}")),
    );
    assert_refused(&run, took, "not signed by the CA given");

    let (run, took) = batch(
        dir.path(),
        &db.with("sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"),
    );
    assert_refused(&run, took, "sslrootcert=/nonexistent/ca.pem: cannot read");
}

#[tokio::test]
async fn require_and_the_default_prefer_connect_without_a_ca() {
    let db = TlsDatabase::create().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let (run, _) = batch(dir.path(), &db.with("sslmode=require"));
    run.assert_code(0);
    // No sslmode: prefer, as libpq; the server offers TLS, so TLS it is.
    let (run, _) = batch(dir.path(), &db.url);
    run.assert_code(0);
    assert_eq!(db.count("transactions").await, 2);
    assert_eq!(db.count("runs").await, 2);
}

#[tokio::test]
async fn sslmode_disable_is_refused_by_the_server_with_its_reason() {
    let db = TlsDatabase::create().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let (run, took) = batch(dir.path(), &db.with("sslmode=disable"));
    assert_refused(&run, took, "no pg_hba.conf entry");
    assert!(run.stderr.contains("no encryption"), "{}", run.stderr);
}

#[tokio::test]
async fn require_against_a_server_without_tls_says_so() {
    let plain = harness_var("TXFLOW_TEST_DATABASE_URL");
    let dir = tempfile::tempdir().expect("a temp dir");
    let (run, took) = batch(dir.path(), &format!("{plain}?sslmode=require"));
    run.assert_code(1);
    assert!(
        run.stderr.contains("the server does not offer TLS"),
        "{}",
        run.stderr
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
}
