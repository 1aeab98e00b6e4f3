//! Logging (human-readable on a terminal, JSON lines otherwise), when
//! asked for, traces exported over OTLP (see `txflow_trace`), and the
//! operators' `/health` and `/metrics` of a long-running command.

use std::io::IsTerminal;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use txflow_http::server::HealthChecks;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Auto,
    Text,
    Json,
}

/// Whether traces are asked for: `--otlp-endpoint`, or the standard
/// variables (and not `OTEL_SDK_DISABLED=true`).
fn traces_wanted(endpoint: Option<&str>) -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    !disabled
        && (endpoint.is_some()
            || set("OTEL_EXPORTER_OTLP_ENDPOINT")
            || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// Installs the global subscriber: logs filtered by `RUST_LOG` (default
/// `info`, refinery's own lines from `warn`: it says "going to apply 0
/// migrations" at every start), and the trace exporter when asked for, as service `service`
/// (`txflow-consume`, ...). Keep the guard until the end: dropping it sends
/// the last spans.
pub fn init(
    format: LogFormat,
    service: &str,
    otlp_endpoint: Option<&str>,
) -> Result<Option<txflow_trace::Guard>, txflow_trace::TraceError> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,refinery_core=warn"))
        // Spans made for traces are not log lines.
        .add_directive(
            format!("{}=off", txflow_trace::TARGET)
                .parse()
                .expect("a valid directive"),
        );
    let terminal = std::io::stderr().is_terminal();
    let json = match format {
        LogFormat::Auto => !terminal,
        LogFormat::Text => false,
        LogFormat::Json => true,
    };
    let logs = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_ansi(terminal)
            .with_target(false)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed()
    };
    if !traces_wanted(otlp_endpoint) {
        tracing_subscriber::registry().with(logs).init();
        return Ok(None);
    }
    let (traces, guard) = txflow_trace::layer(service, otlp_endpoint)?;
    tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .init();
    Ok(Some(guard))
}

/// Binds `listen` and serves `/health` (from `checks`) and `/metrics` there
/// in the background; returns the bound address.
pub async fn serve_ops(listen: SocketAddr, checks: HealthChecks) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen} for /metrics (try --metrics-listen)"))?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        let router = txflow_http::server::ops_router(checks);
        if let Err(e) = txflow_http::server::serve_router(listener, router).await {
            tracing::error!(error = %e, "the /metrics server stopped");
        }
    });
    Ok(address)
}
