//! `txflow serve` with bearer tokens and TLS, and the HTTP classifier
//! sending a token and trusting a private CA.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;

use crate::harness::txflow;
use crate::serve::Serve;

const TOKEN_A: &str = "token-a-0123456789abcdef0123456789abcdef";
const TOKEN_B: &str = "token-b-0123456789abcdef0123456789abcdef";
const TOKEN_C: &str = "token-c-0123456789abcdef0123456789abcdef";

const ONE: &str = r#"[{"id": "b9fa6684-502b-4695-8f92-247432ba610d", "description": "Uber trip",
  "amount": -12.5, "timestamp": "2024-03-01T08:15:00", "merchant": "Uber",
  "operation_type": "card", "side": "debit"}]"#;

async fn predict(client: &reqwest::Client, url: &str, token: Option<&str>) -> StatusCode {
    let mut request = client
        .post(format!("{url}/predict"))
        .header("content-type", "application/json")
        .body(ONE);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("a response").status()
}

async fn get(client: &reqwest::Client, url: &str, token: Option<&str>) -> StatusCode {
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("a response").status()
}

fn write_tokens(file: &Path, tokens: &[&str]) {
    let mut text = String::from("# txflow serve tokens, one a line\n");
    for token in tokens {
        text.push_str(token);
        text.push('\n');
    }
    std::fs::write(file, text).expect("writing the token file");
}

#[tokio::test]
async fn predict_needs_a_listed_token_and_sighup_rotates_them() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let tokens = dir.path().join("tokens");
    write_tokens(&tokens, &[TOKEN_A, TOKEN_B]);
    let serve = Serve::start_with(&["--auth-token-file", tokens.to_str().expect("UTF-8")]).await;
    let client = crate::harness::http();

    let refused = client
        .post(format!("{}/predict", serve.url))
        .body(ONE)
        .send()
        .await
        .expect("a response");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(
        refused
            .headers()
            .get("www-authenticate")
            .is_some_and(|v| v.as_bytes().starts_with(b"Bearer")),
        "{:?}",
        refused.headers()
    );
    assert_eq!(
        predict(&client, &serve.url, Some(TOKEN_C)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        predict(&client, &serve.url, Some(&TOKEN_A[..TOKEN_A.len() - 1])).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        predict(&client, &serve.url, Some(TOKEN_A)).await,
        StatusCode::OK
    );
    assert_eq!(
        predict(&client, &serve.url, Some(TOKEN_B)).await,
        StatusCode::OK
    );
    // Probes and scrapers need no token.
    for route in ["/health", "/ready", "/metrics"] {
        let url = format!("{}{route}", serve.url);
        assert_eq!(get(&client, &url, None).await, StatusCode::OK, "{route}");
    }

    // Rotation: A retired, C added; SIGHUP re-reads the file.
    write_tokens(&tokens, &[TOKEN_B, TOKEN_C]);
    let status = Command::new("kill")
        .args(["-HUP", &serve.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    // Each poll before the reload is one more refusal to count.
    let mut polls_refused = 0;
    while predict(&client, &serve.url, Some(TOKEN_C)).await != StatusCode::OK {
        polls_refused += 1;
        assert!(
            std::time::Instant::now() < deadline,
            "token C not accepted 5 s after SIGHUP"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        predict(&client, &serve.url, Some(TOKEN_A)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        predict(&client, &serve.url, Some(TOKEN_B)).await,
        StatusCode::OK
    );

    // Refusals are counted.
    let metrics = client
        .get(format!("{}/metrics", serve.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let refused = format!(
        r#"txflow_http_requests_total{{route="/predict",status="401"}} {}"#,
        4 + polls_refused
    );
    assert!(metrics.contains(&refused), "{refused} in {metrics}");
}

#[tokio::test]
async fn auth_all_closes_every_route() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let tokens = dir.path().join("tokens");
    write_tokens(&tokens, &[TOKEN_A]);
    let serve = Serve::start_with(&[
        "--auth-token-file",
        tokens.to_str().expect("UTF-8"),
        "--auth-all",
    ])
    .await;
    let client = crate::harness::http();
    for route in ["/health", "/ready", "/metrics", "/openapi.json"] {
        let url = format!("{}{route}", serve.url);
        assert_eq!(
            get(&client, &url, None).await,
            StatusCode::UNAUTHORIZED,
            "{route}"
        );
        assert_eq!(
            get(&client, &url, Some(TOKEN_A)).await,
            StatusCode::OK,
            "{route}"
        );
    }
}

#[tokio::test]
async fn a_token_file_that_cannot_be_used_stops_serve_with_the_reason() {
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(dir.path().join("short"), "abc\n").expect("write");
    let run = txflow(
        dir.path(),
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--auth-token-file",
            "short",
        ],
    );
    run.assert_code(1);
    assert!(run.stderr.contains("line 1 of short"), "{}", run.stderr);
    assert!(!run.stderr.contains("abc"), "{}", run.stderr);
    let run = txflow(
        dir.path(),
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--auth-token-file",
            "missing",
        ],
    );
    run.assert_code(1);
    assert!(
        run.stderr.contains("reading the token file missing"),
        "{}",
        run.stderr
    );
}

/// A throwaway CA and a certificate for "localhost" signed by it, made with
/// openssl: (ca.pem, server.pem, server.key).
fn throwaway_certificate(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (scripts/harness.sh install installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(dir.join("server.ext"), "subjectAltName=DNS:localhost\n").expect("write");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

const SAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../samples/transactions_sample.csv"
);

#[tokio::test]
async fn batch_classifies_through_an_https_service_with_a_private_ca_and_a_token() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (ca, cert, key) = throwaway_certificate(dir.path());
    let tokens = dir.path().join("tokens");
    write_tokens(&tokens, &[TOKEN_A]);
    let serve = Serve::start_with(&[
        "--auth-token-file",
        tokens.to_str().expect("UTF-8"),
        "--tls-cert",
        cert.to_str().expect("UTF-8"),
        "--tls-key",
        key.to_str().expect("UTF-8"),
    ])
    .await;
    let https = format!("https://localhost:{}", serve.port);

    // A client that trusts the CA gets TLS; plain HTTP gets nothing.
    let pem = std::fs::read(&ca).expect("ca.pem");
    crate::harness::tls_provider();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("a PEM certificate"))
        .build()
        .expect("a client");
    assert_eq!(
        predict(&client, &https, Some(TOKEN_A)).await,
        StatusCode::OK
    );
    assert_eq!(
        predict(&client, &https, None).await,
        StatusCode::UNAUTHORIZED
    );
    assert!(
        crate::harness::get(format!("{}/health", serve.url))
            .await
            .is_err(),
        "plain HTTP must not be served"
    );

    let ca = ca.to_str().expect("UTF-8");
    let batch = |extra: &[&str]| {
        let mut args = vec![
            "batch",
            SAMPLE,
            "--classifier",
            &https,
            "--classifier-max-outage",
            "2s",
            "--summary-json",
            "-",
        ];
        args.extend_from_slice(extra);
        txflow(dir.path(), &args)
    };
    let run = batch(&["--classifier-ca", ca, "--classifier-token-file", "tokens"]);
    run.assert_code(0);
    assert_eq!(run.summary()["predictions_written"], 200);

    // Without the CA: the certificate is refused; no record failed for it.
    let run = batch(&[
        "--classifier-token-file",
        "tokens",
        "--database-url",
        "sqlite://no-ca.db",
    ]);
    run.assert_code(1);
    assert!(run.stderr.contains("certificate"), "{}", run.stderr);

    // With a token the service does not know: credentials named, no record failed.
    std::fs::write(dir.path().join("wrong"), format!("{TOKEN_C}\n")).expect("write");
    let run = batch(&[
        "--classifier-ca",
        ca,
        "--classifier-token-file",
        "wrong",
        "--database-url",
        "sqlite://wrong.db",
    ]);
    run.assert_code(1);
    assert!(
        run.stderr.contains("refused txflow's credentials"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(TOKEN_C), "{}", run.stderr);
    let db = rusqlite::Connection::open(dir.path().join("wrong.db")).expect("wrong.db");
    let failures: i64 = db
        .query_row("SELECT count(*) FROM classification_failures", [], |r| {
            r.get(0)
        })
        .expect("classification_failures");
    assert_eq!(failures, 0);
}
