//! `txflow serve`: the classification service (`POST /predict`).

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, Result};
use txflow_http::{Model, ServerConfig};

const EXAMPLES: &str = "\
Examples:
  txflow serve
  txflow serve --listen 0.0.0.0:8000 --max-batch 5000

  curl -s localhost:8000/predict -H 'content-type: application/json' -d '[{\"id\": \
\"b9fa6684-502b-4695-8f92-247432ba610d\", \"description\": \"Uber trip\", \"amount\": -12.5, \
\"timestamp\": \"2024-03-01T08:15:00\", \"merchant\": \"Uber\", \"operation_type\": \"card\", \
\"side\": \"debit\"}]'

Routes: POST /predict, GET /health, GET /ready, GET /metrics (Prometheus),
GET /openapi.json. SIGTERM or Ctrl-C stops accepting and finishes the requests
in flight.";

/// Serve the classification API: POST /predict with a JSON list of
/// transactions answers a category, a confidence score and the model version
/// for each.
#[derive(Debug, clap::Args)]
#[command(after_long_help = EXAMPLES)]
pub struct Args {
    /// The address to listen on.
    #[arg(long, env = "TXFLOW_LISTEN", default_value = "127.0.0.1:8000")]
    listen: SocketAddr,

    /// The model to serve.
    #[arg(long, default_value = "reference")]
    model: Model,

    /// The most transactions one request may hold (more: 413).
    #[arg(long, default_value_t = 10_000)]
    max_batch: usize,

    /// The largest request body, in bytes (larger: 413, before parsing).
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    max_body_bytes: usize,
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
    let config = ServerConfig {
        model: args.model,
        max_batch: args.max_batch,
        max_body_bytes: args.max_body_bytes,
    };
    tracing::info!(%address, model = config.model.name(), version = config.model.version(), "serving");
    txflow_http::serve(listener, config, crate::signal::shutdown())
        .await
        .context("serving")?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}
