//! `txflow`: classify bank transactions in batch (CSV files, local or S3) and
//! in real time (Kafka) into PostgreSQL or SQLite, and serve the
//! classification API. This binary only parses flags and wires the core
//! (`txflow-core`) to its adapters; each subcommand is one file in `cmd/`.

mod catalogue;
mod classifier;
mod cmd;
mod config;
#[cfg(feature = "kafka")]
mod connectors;
mod errors;
// Used without the `kafka` feature; its test runs with every feature.
#[cfg_attr(feature = "kafka", allow(dead_code))]
mod features;
mod inputs;
#[cfg(feature = "kafka")]
mod kafka_args;
mod learned;
mod signal;
mod store;
mod telemetry;
mod tls;

#[cfg(not(feature = "kafka"))]
use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Classify bank transactions into spending categories, with full lineage.
#[derive(Debug, Parser)]
#[command(name = "txflow", version, about, propagate_version = true)]
struct Cli {
    /// Log format: text, json, or auto (text on a terminal, json otherwise).
    #[arg(long, global = true, env = "TXFLOW_LOG_FORMAT", default_value = "auto")]
    log_format: telemetry::LogFormat,

    /// A TOML file of settings: one table per command, keys named like its
    /// flags, and [all] for any command. Flags and variables win over it.
    #[arg(long, global = true, env = config::ENV, value_name = "FILE")]
    config: Option<std::path::PathBuf>,

    /// Export traces over OTLP/HTTP to this collector (http://host:4318);
    /// the standard OTEL_EXPORTER_OTLP_* variables work too. Off by default.
    #[arg(long, global = true, value_name = "URL")]
    otlp_endpoint: Option<String>,

    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    Batch(cmd::batch::Args),
    #[cfg(feature = "kafka")]
    Consume(cmd::consume::Args),
    #[cfg(feature = "kafka")]
    Dlq(cmd::dlq::Args),
    Evaluate(cmd::evaluate::Args),
    Generate(cmd::generate::Args),
    #[cfg(feature = "kafka")]
    Lake(cmd::lake::Args),
    Diff(cmd::diff::Args),
    Reclassify(cmd::reclassify::Args),
    Review(cmd::review::Args),
    Models(cmd::models::Args),
    List(cmd::list::Args),
    Migrate(cmd::migrate::Args),
    #[cfg(feature = "kafka")]
    Produce(cmd::produce::Args),
    Runs(cmd::runs::Args),
    Serve(cmd::serve::Args),
    #[cfg(feature = "kafka")]
    Sink(cmd::sink::Args),
    Split(cmd::split::Args),
    Top(cmd::top::Args),
    #[cfg(feature = "kafka")]
    Topics(cmd::topics::Args),
    Train(cmd::train::Args),
    /// A command of a feature this build left out (see `features`).
    #[cfg(not(feature = "kafka"))]
    #[command(external_subcommand)]
    Missing(Vec<OsString>),
}

impl Command {
    /// The subcommand's name, as typed.
    fn name(&self) -> &'static str {
        match self {
            Command::Batch(_) => "batch",
            #[cfg(feature = "kafka")]
            Command::Consume(_) => "consume",
            #[cfg(feature = "kafka")]
            Command::Dlq(_) => "dlq",
            Command::Evaluate(_) => "evaluate",
            Command::Generate(_) => "generate",
            #[cfg(feature = "kafka")]
            Command::Lake(_) => "lake",
            Command::Diff(_) => "diff",
            Command::Reclassify(_) => "reclassify",
            Command::Review(_) => "review",
            Command::Models(_) => "models",
            Command::List(_) => "list",
            Command::Migrate(_) => "migrate",
            #[cfg(feature = "kafka")]
            Command::Produce(_) => "produce",
            Command::Runs(_) => "runs",
            Command::Serve(_) => "serve",
            #[cfg(feature = "kafka")]
            Command::Sink(_) => "sink",
            Command::Split(_) => "split",
            Command::Top(_) => "top",
            #[cfg(feature = "kafka")]
            Command::Topics(_) => "topics",
            Command::Train(_) => "train",
            #[cfg(not(feature = "kafka"))]
            Command::Missing(_) => "missing",
        }
    }
}

fn main() -> ExitCode {
    tls::install_crypto();
    let args = match config::apply(std::env::args_os().collect(), &Cli::command()) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("error: {}", errors::chain(e.as_ref()));
            return ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(args);
    let service = format!("txflow-{}", cli.command.name());
    let _traces = match telemetry::init(cli.log_format, &service, cli.otlp_endpoint.as_deref()) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    catalogue::install();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Batch(args) => cmd::batch::run(args).await,
            #[cfg(feature = "kafka")]
            Command::Consume(args) => cmd::consume::run(args).await,
            #[cfg(feature = "kafka")]
            Command::Dlq(args) => cmd::dlq::run(args).await,
            Command::Evaluate(args) => cmd::evaluate::run(args).await,
            Command::Generate(args) => cmd::generate::run(args).await,
            #[cfg(feature = "kafka")]
            Command::Lake(args) => cmd::lake::run(args).await,
            Command::Diff(args) => cmd::diff::run(args).await,
            Command::Reclassify(args) => cmd::reclassify::run(args).await,
            Command::Review(args) => cmd::review::run(args).await,
            Command::Models(args) => cmd::models::run(args).await,
            Command::List(args) => cmd::list::run(args).await,
            Command::Migrate(args) => cmd::migrate::run(args).await,
            #[cfg(feature = "kafka")]
            Command::Produce(args) => cmd::produce::run(args).await,
            Command::Runs(args) => cmd::runs::run(args).await,
            Command::Serve(args) => cmd::serve::run(args).await,
            #[cfg(feature = "kafka")]
            Command::Sink(args) => cmd::sink::run(args).await,
            Command::Split(args) => cmd::split::run(args).await,
            Command::Top(args) => cmd::top::run(args).await,
            #[cfg(feature = "kafka")]
            Command::Topics(args) => cmd::topics::run(args).await,
            Command::Train(args) => cmd::train::run(args).await,
            #[cfg(not(feature = "kafka"))]
            Command::Missing(args) => Err(features::missing(&args)),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", errors::chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Cli;

    #[cfg(feature = "kafka")]
    #[test]
    fn debug_output_of_the_parsed_arguments_shows_no_password() {
        for command in ["batch", "consume", "runs", "list", "migrate"] {
            let mut args = vec!["txflow", command];
            if matches!(command, "batch" | "list") {
                args.push("in.csv");
            }
            args.extend([
                "--database-url",
                "postgres://u:hunter2-secret@db/txflow",
                "--kafka-option",
                "sasl.password=hunter3-secret",
            ]);
            if !matches!(command, "consume") {
                args.truncate(args.len() - 2);
            }
            let cli = Cli::try_parse_from(&args).expect("valid arguments");
            let shown = format!("{cli:?}");
            assert!(!shown.contains("hunter"), "{command}: {shown}");
        }
    }
}
