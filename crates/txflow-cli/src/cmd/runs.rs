//! `txflow runs`: the runs a database holds, a check a scheduler ends with,
//! and the rows batch runs rejected.

use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::json;
use txflow_core::{RunRecord, Secret};

use crate::store::{DEFAULT_DATABASE, Store, default_max_outage};

const EXAMPLES: &str = "\
Examples:
  txflow runs --database-url postgres://txflow@db/txflow
  txflow runs --prefix 'scheduled__2024-06-01' --expect 12 --check
  txflow runs rejected --rule amount_format

With --check the exit status is 1 when a matching run failed, exceeded its
error rate or is still running, or when fewer than --expect runs match.";

/// List runs (id, status, counts), optionally checking that they all succeeded.
#[derive(Debug, clap::Args)]
#[command(after_long_help = EXAMPLES, args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<RunsCommand>,

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

#[derive(Debug, clap::Subcommand)]
enum RunsCommand {
    /// Batch rows that failed validation (`rejected_records`): counts by
    /// rule and file, then the rows. A rerun of the fixed file stores them.
    Rejected(RejectedArgs),
}

#[derive(Debug, clap::Args)]
pub struct RejectedArgs {
    /// Only the rows of this run.
    #[arg(long)]
    run: Option<String>,
    /// Only this rule (amount_format, ...).
    #[arg(long)]
    rule: Option<String>,
    /// At most this many rows.
    #[arg(long, default_value_t = 20)]
    limit: i64,
    #[arg(long)]
    json: bool,
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE, hide_env_values = true)]
    database_url: Secret,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    if let Some(RunsCommand::Rejected(rejected_args)) = args.command {
        rejected(rejected_args).await?;
        return Ok(ExitCode::SUCCESS);
    }
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

/// `txflow runs rejected` (and the old `txflow dlq rejected`).
pub async fn rejected(args: RejectedArgs) -> Result<()> {
    let RejectedArgs {
        run,
        rule,
        limit,
        json,
        database_url,
    } = args;
    let store = Store::open(database_url.expose(), default_max_outage()).await?;
    let query = txflow_core::RejectionQuery { run, rule, limit };
    let r = store
        .rejections(&query)
        .await
        .map_err(|e| anyhow::anyhow!(e))
        .context("reading the rejected rows")?;
    let total: i64 = r.counts.iter().map(|c| c.2).sum();
    if json {
        let out = json!({
            "total": total,
            "by_rule": r.counts.iter().map(|(rule, source, n)| json!({"rule": rule, "source": source, "count": n})).collect::<Vec<_>>(),
            "rows": r.rows.iter().map(|x| json!({
                "source": x.source_location, "line": x.source_line, "rule": x.rule,
                "field": x.field, "message": x.message, "raw": x.raw, "run_id": x.run_id,
            })).collect::<Vec<_>>(),
        });
        println!("{out:#}");
        return Ok(());
    }
    println!("{total} rejected row(s)\n");
    println!("{:<24} {:>8}  SOURCE", "RULE", "ROWS");
    for (rule, source, n) in &r.counts {
        println!("{rule:<24} {n:>8}  {source}");
    }
    println!();
    for x in &r.rows {
        println!(
            "{}:{}  {}{}  {}\n  raw  {}",
            x.source_location,
            x.source_line,
            x.rule,
            x.field
                .as_deref()
                .map_or(String::new(), |f| format!(" ({f})")),
            x.message,
            x.raw
        );
    }
    Ok(())
}
