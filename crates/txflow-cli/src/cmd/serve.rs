//! `txflow serve`: the classification service (`POST /predict`).

use std::net::SocketAddr;
use std::process::ExitCode;

use std::path::PathBuf;

use anyhow::{Context, Result};
use txflow_http::{Auth, ServedModel, ServerConfig, Tokens};

const EXAMPLES: &str = "\
Examples:
  txflow serve
  txflow serve --listen 0.0.0.0:8000 --max-batch 5000

  curl -s localhost:8000/predict -H 'content-type: application/json' -d '[{\"id\": \
\"b9fa6684-502b-4695-8f92-247432ba610d\", \"description\": \"Uber trip\", \"amount\": -12.5, \
\"timestamp\": \"2024-03-01T08:15:00\", \"merchant\": \"Uber\", \"operation_type\": \"card\", \
\"side\": \"debit\"}]'

  openssl rand -hex 32 > tokens; txflow serve --auth-token-file tokens \\
    --tls-cert server.pem --tls-key server.key
  curl --cacert ca.pem -H \"Authorization: Bearer $(head -1 tokens)\" https://localhost:8000/predict ...

Routes: POST /predict, GET /health, GET /ready, GET /metrics (Prometheus),
GET /openapi.json. SIGTERM or Ctrl-C stops accepting and finishes the requests
in flight; SIGHUP re-reads the token file.";

/// Serve the classification API: POST /predict with a JSON list of
/// transactions answers a category, a confidence score and the model version
/// for each.
#[derive(Debug, clap::Args)]
#[command(after_long_help = EXAMPLES)]
pub struct Args {
    /// The address to listen on.
    #[arg(long, env = "TXFLOW_LISTEN", default_value = "127.0.0.1:8000")]
    listen: SocketAddr,

    /// The model to serve: reference, merchant, or a trained model file
    /// (file:///path/model.txm, s3://bucket/model.txm, path.txm).
    #[arg(long, default_value = "reference")]
    model: String,

    /// The most transactions one request may hold (more: 413).
    #[arg(long, default_value_t = 10_000)]
    max_batch: usize,

    /// The largest request body, in bytes (larger: 413, before parsing).
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    max_body_bytes: usize,

    /// Require a bearer token on /predict: a file of tokens, one a line
    /// (several while rotating; `#` comments). Re-read on SIGHUP.
    #[arg(long, env = "TXFLOW_AUTH_TOKEN_FILE")]
    auth_token_file: Option<PathBuf>,

    /// Require the token on every route, /health, /ready, /metrics and
    /// /openapi.json included (open by default, for probes and scrapers).
    #[arg(long, requires = "auth_token_file")]
    auth_all: bool,

    /// Serve HTTPS with this certificate chain (PEM, leaf first).
    #[arg(long, env = "TXFLOW_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "TXFLOW_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "listening on {} (is the port in use? try --listen)",
                args.listen
            )
        })?;
    let address = listener.local_addr().context("reading the bound address")?;
    let auth = match &args.auth_token_file {
        Some(file) => {
            let tokens = Tokens::load(file)?;
            reload_on_hangup(tokens.clone())?;
            Some(Auth {
                tokens,
                all_routes: args.auth_all,
            })
        }
        None => None,
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(txflow_http::tls::server_config(cert, key)?),
        _ => None,
    };
    let Some(model) = crate::classifier::in_process_model(&args.model).await? else {
        anyhow::bail!(
            "--model {:?} is not a model: use reference, merchant, or a model file (file:///path/model.txm, s3://bucket/model.txm, path.txm)",
            args.model
        );
    };
    let name = match args.model.as_str() {
        "reference" | "merchant" => args.model.clone(),
        _ => crate::learned::model_name(model.version()).to_owned(),
    };
    let config = ServerConfig {
        model: ServedModel::new(name, model),
        max_batch: args.max_batch,
        max_body_bytes: args.max_body_bytes,
        auth,
        tls,
    };
    tracing::info!(%address, model = config.model.name(), version = config.model.version(),
        tls = config.tls.is_some(), auth = config.auth.as_ref().map(|a| if a.all_routes { "all routes" } else { "/predict" }),
        "serving");
    txflow_http::serve(listener, config, crate::signal::shutdown())
        .await
        .context("serving")?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Re-reads the token file on each SIGHUP; a file that cannot be used is
/// reported and the tokens in use stay.
fn reload_on_hangup(tokens: Tokens) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match tokens.reload() {
                Ok(count) => tracing::info!(file = %tokens.file().display(), tokens = count,
                    "token file re-read"),
                Err(e) => {
                    tracing::error!(error = %e, "token file not re-read; the tokens in use stay")
                }
            }
        }
    });
    Ok(())
}
