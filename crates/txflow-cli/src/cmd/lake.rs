//! `txflow lake`: a Delta table's history, compaction and vacuum.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use txflow_delta::log::Log;
use txflow_delta::table::{self, CompactOptions};

use crate::classifier::parse_duration;
use crate::connectors::open_table;
use crate::inputs::S3Args;

const EXAMPLES: &str = "\
Examples:
  txflow lake history delta+file:///var/lib/txflow/delta
  txflow lake compact delta+s3://lake/predictions --where 'date >= 2024-06-01'
  txflow lake vacuum delta+s3://lake/predictions --retain 7d --dry-run

The table is the one `txflow sink delta+…` writes. Compaction and vacuum
may run while the sink writes: a compaction commits like any writer and
only conflicts with another compaction of the same files.";

/// A Delta table written by `txflow sink delta+…`: history, compact, vacuum.
#[derive(Debug, clap::Args)]
#[command(after_long_help = EXAMPLES)]
pub struct Args {
    #[command(subcommand)]
    command: LakeCommand,
}

#[derive(Debug, clap::Subcommand)]
enum LakeCommand {
    /// Every version: when, the operation, files added and removed, rows.
    History(HistoryArgs),
    /// Rewrites each partition's small files into large ones, in one
    /// commit; the rows are unchanged (`dataChange` false).
    Compact(CompactArgs),
    /// Deletes the data files no longer in the table (replaced by a
    /// compaction, or left by a write that never committed) once older
    /// than --retain. Time travel then goes back at most --retain.
    Vacuum(VacuumArgs),
}

#[derive(Debug, clap::Args)]
struct Table {
    /// The table: delta+s3://bucket/path or delta+file:///path.
    #[arg(value_name = "URL")]
    url: String,

    #[command(flatten)]
    s3: S3Args,
}

impl Table {
    fn log(&self) -> Result<Log> {
        if !self.url.contains("://") {
            bail!(
                "{:?} is not a table URL: write delta+file:///path or delta+s3://bucket/path",
                self.url
            );
        }
        let location = open_table(&self.url, &self.s3.options())?;
        Ok(Log::new(
            Arc::clone(location.store()),
            location.path().clone(),
            format!("delta+{}", location.url()),
        ))
    }
}

#[derive(Debug, clap::Args)]
struct HistoryArgs {
    #[command(flatten)]
    table: Table,

    /// A JSON array instead of one line per version.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct CompactArgs {
    #[command(flatten)]
    table: Table,

    /// The size of a rewritten file at most (of its inputs' bytes): 128MiB,
    /// 1GiB, 64MB, or bytes.
    #[arg(long, default_value = "128MiB", value_parser = parse_size)]
    target_size: u64,

    /// Only some partitions: `date >= YYYY-MM-DD`.
    #[arg(long = "where", value_name = "PREDICATE", value_parser = parse_where)]
    since: Option<String>,

    /// The report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct VacuumArgs {
    #[command(flatten)]
    table: Table,

    /// Keep files removed or written within this long (7d, 12h, 0s).
    #[arg(long, default_value = "7d", value_parser = parse_duration)]
    retain: Duration,

    /// List what would be deleted; delete nothing.
    #[arg(long)]
    dry_run: bool,

    /// The report as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    match args.command {
        LakeCommand::History(a) => {
            let versions = table::history(&a.table.log()?).await?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&versions)?);
                return Ok(ExitCode::SUCCESS);
            }
            let mut out = std::io::stdout().lock();
            let header = writeln!(
                out,
                "{:>8}  {:<24}  {:<18}  {:>7}  {:>7}  {:>10}  {:>12}",
                "version", "time (UTC)", "operation", "+files", "-files", "+rows", "rows"
            );
            let lines = versions.into_iter().map(|v| {
                let time = v
                    .timestamp
                    .and_then(chrono::DateTime::from_timestamp_millis)
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
                    .unwrap_or_default();
                format!(
                    "{:>8}  {:<24}  {:<18}  {:>7}  {:>7}  {:>10}  {:>12}",
                    v.version,
                    time,
                    v.operation,
                    v.files_added,
                    v.files_removed,
                    v.rows_added,
                    v.rows
                )
            });
            let mut lines = lines;
            let written = header.and_then(|()| lines.try_for_each(|l| writeln!(out, "{l}")));
            match written {
                // A reader that stopped early (`| head`) is not a failure.
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
                _ => {}
            }
        }
        LakeCommand::Compact(a) => {
            let options = CompactOptions {
                target_size: a.target_size,
                since: a.since,
            };
            let done = table::compact(&a.table.log()?, &options).await?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&done)?);
            } else if let Some(version) = done.version {
                println!(
                    "compacted {} files of {} partitions into {} ({} rows) as version {version}",
                    done.files_before, done.partitions, done.files_after, done.rows
                );
            } else {
                println!("nothing to compact: no partition has two files under the target size");
            }
        }
        LakeCommand::Vacuum(a) => {
            let done = table::vacuum(&a.table.log()?, a.retain, a.dry_run).await?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&done)?);
                return Ok(ExitCode::SUCCESS);
            }
            for file in &done.files {
                println!("{file}");
            }
            println!(
                "{} {} files ({} bytes)",
                if done.dry_run {
                    "would delete"
                } else {
                    "deleted"
                },
                done.files.len(),
                done.bytes
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A size with an optional unit: B, KB/MB/GB (powers of 1000), KiB/MiB/GiB
/// (powers of 1024).
fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 128MiB, 1GiB or 64MB"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?}; use B, KB, MB, GB, KiB, MiB or GiB"
            ));
        }
    };
    number
        .checked_mul(factor)
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{text:?} is not a size above zero that fits in 64 bits"))
}

/// `date >= YYYY-MM-DD`, the one predicate compaction takes.
fn parse_where(text: &str) -> Result<String, String> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let date = compact
        .strip_prefix("date>=")
        .map(|d| d.trim_matches(|c| c == '\'' || c == '"'))
        .ok_or_else(|| {
            format!("{text:?}: compaction takes `date >= YYYY-MM-DD` (the partition column)")
        })?;
    chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .map(|d| d.format("%Y-%m-%d").to_string())
        .map_err(|e| format!("{text:?}: {date:?} is not a date YYYY-MM-DD ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_with_their_units_and_bad_ones_say_which_are_known() {
        assert_eq!(parse_size("128MiB"), Ok(128 << 20));
        assert_eq!(parse_size("64MB"), Ok(64_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        let message = parse_size("12 parsecs").expect_err("refused");
        assert!(message.contains("unknown unit \"parsecs\""), "{message}");
        assert!(parse_size("0").is_err());
    }

    #[test]
    fn the_where_predicate_is_a_date_bound_of_the_partition_column() {
        assert_eq!(parse_where("date >= 2024-06-01"), Ok("2024-06-01".into()));
        assert_eq!(parse_where("date>='2024-06-01'"), Ok("2024-06-01".into()));
        let message = parse_where("category = 'Food'").expect_err("refused");
        assert!(message.contains("date >= YYYY-MM-DD"), "{message}");
        assert!(parse_where("date >= 2024-13-01").is_err());
    }
}
