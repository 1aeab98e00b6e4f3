//! `txflow runs`: the runs a database holds, and a check a scheduler ends with.

use std::process::ExitCode;
use txflow_core::Secret;

use anyhow::{Context, Result};
use txflow_core::RunRecord;

use crate::store::{DEFAULT_DATABASE, Store, default_max_outage};

const EXAMPLES: &str = "\
Examples:
  txflow runs --database-url postgres://txflow@db/txflow
  txflow runs --prefix 'scheduled__2024-06-01' --expect 12 --check

With --check the exit status is 1 when a matching run failed, exceeded its
error rate or is still running, or when fewer than --expect runs match.";

/// List runs (id, status, counts), optionally checking that they all succeeded.
#[derive(Debug, clap::Args)]
#[command(after_long_help = EXAMPLES)]
pub struct Args {
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE, hide_env_values = true)]
    database_url: Secret,

    /// Only the runs whose id starts with this (e.g. an Airflow run id).
    #[arg(long, default_value = "")]
    prefix: String,

    /// Exit 1 unless every matching run succeeded (invalid rows within the
    /// error budget count as success).
    #[arg(long)]
    check: bool,

    /// With --check: how many runs must match.
    #[arg(long, requires = "check")]
    expect: Option<usize>,

    /// A JSON array instead of one line per run.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let store = Store::open(args.database_url.expose(), default_max_outage()).await?;
    let runs = store
        .runs(&args.prefix)
        .await
        .map_err(|e| anyhow::anyhow!(e))
        .context("reading the runs")?;
    if args.json {
        let list: Vec<_> = runs.iter().map(to_json).collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        for r in &runs {
            println!(
                "{} {}: {} files ({} failed), {} rows read, {} invalid, {} written{}",
                r.run_id,
                r.status,
                r.files,
                r.files_failed,
                r.rows_read,
                r.rows_invalid,
                r.rows_written,
                r.error
                    .as_deref()
                    .map(|e| format!("; error: {e}"))
                    .unwrap_or_default()
            );
        }
    }
    if !args.check {
        return Ok(ExitCode::SUCCESS);
    }
    let bad: Vec<&RunRecord> = runs.iter().filter(|r| !succeeded(r)).collect();
    let missing = args.expect.is_some_and(|n| runs.len() < n);
    for r in &bad {
        eprintln!("run {} is {}", r.run_id, r.status);
    }
    if missing {
        eprintln!(
            "{} run(s) match {:?}, {} expected: some never started or never recorded their start",
            runs.len(),
            args.prefix,
            args.expect.unwrap_or_default()
        );
    }
    Ok(if bad.is_empty() && !missing {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn succeeded(r: &RunRecord) -> bool {
    r.status.is_success()
}

fn to_json(r: &RunRecord) -> serde_json::Value {
    serde_json::json!({
        "run_id": r.run_id,
        "status": r.status.as_str(),
        "files": r.files,
        "files_failed": r.files_failed,
        "rows_read": r.rows_read,
        "rows_invalid": r.rows_invalid,
        "rows_written": r.rows_written,
        "error": r.error,
    })
}
