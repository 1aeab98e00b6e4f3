//! `txflow serve` as a process, and `txflow batch --classifier http://…`
//! through it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use txflow_core::{ReferenceModel, TransactionId};

use crate::harness::{Database, reference_file, txflow};
use crate::servers::free_port;

/// A `txflow serve` process on a free port, killed when dropped.
pub struct Serve {
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    pub port: u16,
}

impl Serve {
    pub async fn start() -> Serve {
        Serve::start_with(&[]).await
    }

    /// With `extra` flags (tokens, TLS); ready once its port accepts.
    pub async fn start_with(extra: &[&str]) -> Serve {
        Serve::start_on_with(free_port(), extra).await
    }

    /// On `port` (a service restarted at the address its clients know).
    pub async fn start_on(port: u16) -> Serve {
        Serve::start_on_with(port, &[]).await
    }

    /// On `port`, with `extra` flags.
    pub async fn start_on_with(port: u16, extra: &[&str]) -> Serve {
        let child = Command::new(env!("CARGO_BIN_EXE_txflow"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting txflow serve");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "txflow serve did not come up on {url}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Serve { child, url, port }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        crate::harness::stop(&mut self.child);
    }
}

#[tokio::test]
async fn the_batch_pipeline_through_txflow_serve_stores_the_same_predictions_as_in_process() {
    let serve = Serve::start().await;
    let db = Database::create().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = reference_file();
    let file = file.to_str().expect("a UTF-8 path");

    let run = txflow(
        dir.path(),
        &[
            "batch",
            file,
            "--database-url",
            &db.url,
            "--classifier",
            &serve.url,
            "--summary-json",
            "-",
        ],
    );
    run.assert_code(0);
    assert_eq!(run.summary()["predictions_written"], 10_000);
    assert_eq!(run.summary()["rows_unclassified"], 0);
    let rows = db
        .client
        .query(
            "SELECT transaction_id, category, model_version FROM predictions",
            &[],
        )
        .await
        .expect("predictions");
    assert_eq!(rows.len(), 10_000);
    for row in rows {
        let id: uuid::Uuid = row.get(0);
        let category: String = row.get(1);
        assert_eq!(
            category,
            ReferenceModel::category(TransactionId::from_uuid(id)).as_str()
        );
        assert_eq!(row.get::<_, String>(2), ReferenceModel::VERSION);
    }
    // The in-process model is the same model: a rerun with it adds nothing.
    let again = txflow(
        dir.path(),
        &[
            "batch",
            file,
            "--database-url",
            &db.url,
            "--summary-json",
            "-",
        ],
    );
    again.assert_code(0);
    assert_eq!(again.summary()["predictions_written"], 0);
}

#[tokio::test]
async fn with_the_service_down_the_run_fails_without_failing_a_record_and_a_rerun_completes_it() {
    let db = Database::create().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let sample = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../samples/transactions_sample.csv"
    );
    let down = format!("http://127.0.0.1:{}", free_port());

    let run = txflow(
        dir.path(),
        &[
            "batch",
            sample,
            "--database-url",
            &db.url,
            "--classifier",
            &down,
            "--classifier-max-outage",
            "1s",
            "--run-id",
            "down",
        ],
    );
    run.assert_code(1);
    assert!(run.stderr.contains("unavailable"), "{}", run.stderr);
    assert_eq!(db.count("transactions", "").await, 0);
    assert_eq!(db.count("classification_failures", "").await, 0);
    assert_eq!(
        db.count("runs", "run_id = 'down' AND status = 'failed'")
            .await,
        1
    );

    let serve = Serve::start().await;
    let run = txflow(
        dir.path(),
        &[
            "batch",
            sample,
            "--database-url",
            &db.url,
            "--classifier",
            &serve.url,
            "--run-id",
            "down",
        ],
    );
    run.assert_code(0);
    assert_eq!(db.count("transactions", "").await, 200);
    assert_eq!(db.count("unprocessed_transactions", "").await, 0);
}

#[tokio::test]
async fn txflow_serve_stops_cleanly_on_sigterm() {
    let mut serve = Serve::start().await;
    let status = Command::new("kill")
        .args(["-TERM", &serve.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = serve.child.try_wait().expect("the serve process") {
            assert!(status.success(), "txflow serve exited with {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "txflow serve did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
