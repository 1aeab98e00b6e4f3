//! `txflow dlq`: look at the dead-letter topic, and replay what failed.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Timelike, Utc};
use serde_json::{Value, json};
use txflow_core::replay::{Replay, ReplayOutcome, ReplayRow};
use txflow_core::{RunId, Secret};
use txflow_kafka::dlq::{self, Letter};

use crate::kafka_args::KafkaArgs;

const EXAMPLES: &str = "\
Examples:
  txflow dlq list
  txflow dlq show --class decode --limit 5
  txflow dlq replay --class classification --dry-run
  txflow dlq replay --class classification --rate 500
  txflow dlq replays";

/// Look at the dead-letter topic, and replay what failed once it is fixed.
#[derive(Debug, clap::Args)]
#[command(after_long_help = EXAMPLES)]
pub struct Args {
    #[command(subcommand)]
    command: DlqCommand,
}

#[derive(Debug, clap::Subcommand)]
enum DlqCommand {
    /// Counts of letters by error class and rule, source partition and hour.
    List {
        #[command(flatten)]
        select: Select,
        /// As JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        kafka: KafkaArgs,
    },
    /// The letters themselves: headers, error and a readable payload.
    Show {
        #[command(flatten)]
        select: Select,
        /// At most this many letters (the oldest first).
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// As JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        kafka: KafkaArgs,
    },
    /// Publish the selected letters' records to their source topic again.
    Replay(ReplayArgs),
    /// Moved: `txflow runs rejected` (batch rows, not the topic); kept so
    /// that scripts calling it go on working.
    #[command(hide = true)]
    Rejected(crate::cmd::runs::RejectedArgs),
    /// What was replayed, and what became of it: stored, dead-lettered
    /// again, or not yet processed.
    Replays {
        /// As JSON.
        #[arg(long)]
        json: bool,
        #[arg(long, env = "DATABASE_URL", default_value = crate::store::DEFAULT_DATABASE, hide_env_values = true)]
        database_url: Secret,
        #[command(flatten)]
        kafka: KafkaArgs,
    },
}

#[derive(Debug, clap::Args)]
struct ReplayArgs {
    #[command(flatten)]
    select: Select,
    /// Print what would be replayed; publish and record nothing.
    #[arg(long)]
    dry_run: bool,
    /// At most this many records per second.
    #[arg(long, value_name = "PER_SECOND")]
    rate: Option<u32>,
    /// Leave out letters whose record has failed this many times: a
    /// record that keeps failing ends here rather than looping.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    max_attempts: u32,
    /// Where replays are recorded (the stream's database):
    /// postgres://user:password@host:port/db or sqlite://path/to/file.db.
    #[arg(long, env = "DATABASE_URL", default_value = crate::store::DEFAULT_DATABASE, hide_env_values = true)]
    database_url: Secret,
    /// The id recorded with each replay; generated when absent.
    #[arg(long)]
    run_id: Option<String>,
    #[command(flatten)]
    kafka: KafkaArgs,
}

/// Which letters.
#[derive(Debug, Clone, Default, clap::Args)]
struct Select {
    /// Only this error class (decode, validation, classification, sink);
    /// repeatable.
    #[arg(long)]
    class: Vec<String>,
    /// Only this rule (event_format, amount_format, refused, ...); repeatable.
    #[arg(long)]
    rule: Vec<String>,
    /// Only letters written at or after this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    since: Option<DateTime<Utc>>,
    /// Only letters written before this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    until: Option<DateTime<Utc>>,
    /// Only records from this partition of their source topic.
    #[arg(long)]
    source_partition: Option<i32>,
    /// Only records at these offsets of their source partition: FROM-TO,
    /// both included.
    #[arg(long, value_parser = parse_range)]
    source_offsets: Option<(i64, i64)>,
    /// Only the records with this key (a transaction id); repeatable.
    #[arg(long = "id")]
    ids: Vec<String>,
    /// Only this letter, PARTITION:OFFSET of the dead-letter topic;
    /// repeatable.
    #[arg(long = "letter", value_parser = parse_letter)]
    letters: Vec<(i32, i64)>,
}

impl From<Select> for dlq::Selection {
    fn from(s: Select) -> dlq::Selection {
        dlq::Selection {
            classes: s.class,
            rules: s.rule,
            since: s.since,
            until: s.until,
            source_partition: s.source_partition,
            source_offsets: s.source_offsets,
            ids: s.ids,
            letters: s.letters,
        }
    }
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{s:?} is not an RFC 3339 time like 2026-11-25T08:00:00Z: {e}"))
}

fn parse_range(s: &str) -> Result<(i64, i64), String> {
    let bad = || format!("{s:?} is not FROM-TO (two offsets, e.g. 100-250)");
    let (from, to) = s.split_once('-').ok_or_else(bad)?;
    let (from, to) = (
        from.parse().map_err(|_| bad())?,
        to.parse().map_err(|_| bad())?,
    );
    if from > to {
        return Err(format!("{s:?}: FROM is after TO"));
    }
    Ok((from, to))
}

fn parse_letter(s: &str) -> Result<(i32, i64), String> {
    let bad = || format!("{s:?} is not PARTITION:OFFSET (e.g. 2:1041)");
    let (p, o) = s.split_once(':').ok_or_else(bad)?;
    Ok((p.parse().map_err(|_| bad())?, o.parse().map_err(|_| bad())?))
}

pub async fn run(args: Args) -> Result<ExitCode> {
    match args.command {
        DlqCommand::List {
            select,
            json,
            kafka,
        } => {
            let letters = read(&kafka, select).await?;
            print_counts(&letters, json);
        }
        DlqCommand::Show {
            select,
            limit,
            json,
            kafka,
        } => {
            let letters = read(&kafka, select).await?;
            let shown = &letters[..letters.len().min(limit)];
            if json {
                let all: Vec<Value> = shown.iter().map(letter_json).collect();
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                for l in shown {
                    print_letter(l);
                }
                println!("{} of {} letter(s) shown", shown.len(), letters.len());
            }
        }
        DlqCommand::Replay(args) => return replay(args).await,
        DlqCommand::Rejected(args) => {
            eprintln!("note: `txflow dlq rejected` is now `txflow runs rejected`");
            crate::cmd::runs::rejected(args).await?;
        }
        DlqCommand::Replays {
            json,
            database_url,
            kafka,
        } => replays(&kafka, database_url, json).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn read(kafka: &KafkaArgs, select: Select) -> Result<Vec<Letter>> {
    let connection = kafka.connection()?;
    let topic = &kafka.dead_letter_topic;
    let selection = dlq::Selection::from(select);
    dlq::read(&connection, topic, move |l| selection.keeps(l))
        .await
        .with_context(|| format!("reading the dead-letter topic {topic:?}"))
}

/// Counts by key, most first.
fn count<K: Ord + Clone>(letters: &[Letter], key: impl Fn(&Letter) -> K) -> Vec<(K, usize)> {
    let mut counts: BTreeMap<K, usize> = BTreeMap::new();
    for l in letters {
        *counts.entry(key(l)).or_default() += 1;
    }
    let mut counts: Vec<(K, usize)> = counts.into_iter().collect();
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    counts
}

fn hour(l: &Letter) -> String {
    l.timestamp.map_or("unknown".into(), |t| {
        t.with_minute(0)
            .and_then(|t| t.with_second(0))
            .and_then(|t| t.with_nanosecond(0))
            .map_or("unknown".into(), |t| {
                t.format("%Y-%m-%dT%H:00Z").to_string()
            })
    })
}

fn source(l: &Letter) -> String {
    format!(
        "{}/{}",
        l.source_topic().unwrap_or("?"),
        l.source_partition().map_or("?".into(), |p| p.to_string())
    )
}

fn print_counts(letters: &[Letter], json: bool) {
    let by_class = count(letters, |l| (l.class().to_owned(), l.rule().to_owned()));
    let by_source = count(letters, source);
    let by_hour = count(letters, hour);
    let by_attempts = count(letters, Letter::attempts);
    if json {
        let out = json!({
            "total": letters.len(),
            "by_class": by_class.iter().map(|((c, r), n)| json!({"class": c, "rule": r, "count": n})).collect::<Vec<_>>(),
            "by_source": by_source.iter().map(|(s, n)| json!({"source": s, "count": n})).collect::<Vec<_>>(),
            "by_hour": by_hour.iter().map(|(h, n)| json!({"hour": h, "count": n})).collect::<Vec<_>>(),
            "by_attempts": by_attempts.iter().map(|(a, n)| json!({"attempts": a, "count": n})).collect::<Vec<_>>(),
        });
        println!("{out:#}");
        return;
    }
    println!("{} dead letter(s)\n", letters.len());
    println!("{:<16} {:<24} {:>8}", "CLASS", "RULE", "LETTERS");
    for ((class, rule), n) in &by_class {
        println!("{class:<16} {rule:<24} {n:>8}");
    }
    println!("\n{:<41} {:>8}", "SOURCE TOPIC/PARTITION", "LETTERS");
    for (s, n) in &by_source {
        println!("{s:<41} {n:>8}");
    }
    println!("\n{:<41} {:>8}", "HOUR (UTC)", "LETTERS");
    for (h, n) in &by_hour {
        println!("{h:<41} {n:>8}");
    }
    println!("\n{:<41} {:>8}", "ATTEMPTS", "LETTERS");
    for (a, n) in &by_attempts {
        println!("{a:<41} {n:>8}");
    }
}

/// A payload as text: UTF-8 as is (cut at 2,000 characters), else hex.
fn readable(bytes: Option<&[u8]>) -> String {
    let Some(bytes) = bytes else {
        return "(none)".into();
    };
    match std::str::from_utf8(bytes) {
        Ok(text) if text.chars().count() > 2_000 => {
            let cut: String = text.chars().take(2_000).collect();
            format!("{cut}… ({} bytes in all)", bytes.len())
        }
        Ok(text) => text.to_owned(),
        Err(_) => {
            let hex: String = bytes.iter().take(256).map(|b| format!("{b:02x}")).collect();
            format!("(binary, {} bytes) {hex}", bytes.len())
        }
    }
}

fn letter_json(l: &Letter) -> Value {
    let headers: serde_json::Map<String, Value> = l
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_deref()
                    .map_or(Value::Null, |v| readable(Some(v)).into()),
            )
        })
        .collect();
    json!({
        "letter": l.name(),
        "partition": l.partition,
        "offset": l.offset,
        "timestamp": l.timestamp.map(|t| t.to_rfc3339()),
        "key": l.key_text(),
        "class": l.class(),
        "rule": l.rule(),
        "message": l.message(),
        "attempts": l.attempts(),
        "source_topic": l.source_topic(),
        "source_partition": l.source_partition(),
        "source_offset": l.source_offset(),
        "replay_of": l.replay_of(),
        "headers": headers,
        "payload": readable(l.value.as_deref()),
    })
}

fn print_letter(l: &Letter) {
    println!(
        "letter {}  {}  {}/{}  attempt {}",
        l.name(),
        l.timestamp.map_or("-".into(), |t| t.to_rfc3339()),
        l.class(),
        l.rule(),
        l.attempts()
    );
    println!(
        "  source   {} offset {}",
        source(l),
        l.source_offset().map_or("?".into(), |o| o.to_string())
    );
    println!("  key      {}", l.key_text().unwrap_or("(none)"));
    println!("  error    {}", l.message());
    if let Some(of) = l.replay_of() {
        println!("  replay of {of}");
    }
    for (k, v) in l.headers.iter().filter(|(k, _)| !dlq::is_ours(k)) {
        println!("  header   {k}: {}", readable(v.as_deref()));
    }
    println!("  payload  {}\n", readable(l.value.as_deref()));
}

async fn open_database(url: &Secret) -> Result<crate::store::Store> {
    crate::store::Store::open(url.expose(), crate::store::default_max_outage()).await
}

async fn replay(args: ReplayArgs) -> Result<ExitCode> {
    let ReplayArgs {
        select,
        dry_run,
        rate,
        max_attempts,
        database_url,
        run_id,
        kafka,
    } = args;
    let kafka = &kafka;
    let letters = read(kafka, select).await?;
    let (capped, chosen): (Vec<&Letter>, Vec<&Letter>) =
        letters.iter().partition(|l| l.attempts() >= max_attempts);
    let unreplayable = chosen.iter().filter(|l| l.source_topic().is_none()).count();
    if unreplayable > 0 {
        bail!(
            "{unreplayable} selected letter(s) have no source topic header: not txflow dead letters"
        );
    }
    if dry_run {
        println!("dry run: {} letter(s) would be replayed:", chosen.len());
        for l in &chosen {
            println!(
                "  {}  {}/{}  to {} (attempt {})  key {}",
                l.name(),
                l.class(),
                l.rule(),
                source(l),
                l.attempts() + 1,
                l.key_text().unwrap_or("(none)")
            );
        }
        if !capped.is_empty() {
            println!(
                "{} letter(s) left out: they failed {max_attempts} time(s) already (--max-attempts)",
                capped.len()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let database = open_database(&database_url).await?;
    let run_id = match run_id {
        Some(id) => RunId::parse(&id)?,
        None => RunId::generate(),
    };
    let producer = dlq::producer(&kafka.connection()?)?;
    let started = Instant::now();
    for (i, l) in chosen.iter().enumerate() {
        if let Some(rate) = rate {
            let due = started + Duration::from_secs_f64(i as f64 / f64::from(rate.max(1)));
            tokio::time::sleep_until(due.into()).await;
        }
        dlq::replay(&producer, l)
            .await
            .with_context(|| format!("replaying letter {}", l.name()))?;
        database
            .record_replay(&Replay {
                letter_topic: l.topic.clone(),
                letter_partition: l.partition,
                letter_offset: l.offset,
                run_id: run_id.to_string(),
                source_topic: l.source_topic().unwrap_or_default().to_owned(),
                transaction_key: l.key_text().map(str::to_owned),
                error_class: l.class().to_owned(),
                error_rule: l.rule().to_owned(),
                attempt: i32::try_from(l.attempts() + 1).unwrap_or(i32::MAX),
            })
            .await
            .map_err(|e| anyhow::anyhow!(e))
            .with_context(|| format!("recording the replay of letter {}", l.name()))?;
    }
    println!(
        "replay {run_id}: {} letter(s) replayed in {:.1} s; {} left out at their attempt cap ({max_attempts})",
        chosen.len(),
        started.elapsed().as_secs_f64(),
        capped.len()
    );
    Ok(ExitCode::SUCCESS)
}

async fn replays(kafka: &KafkaArgs, database_url: Secret, json: bool) -> Result<()> {
    let database = open_database(&database_url).await?;
    let rows = database.replays().await.map_err(|e| anyhow::anyhow!(e))?;
    // A replayed record that failed again is a letter naming this one.
    let again: BTreeMap<String, Letter> = read(kafka, Select::default())
        .await?
        .into_iter()
        .filter_map(|l| Some((l.replay_of()?.to_owned(), l)))
        .collect();
    let outcome = |r: &ReplayRow| -> ReplayOutcome {
        let failed_again = again
            .get(&r.replay.letter())
            .map(|l| (l.name(), l.class().to_owned()));
        ReplayOutcome::of(r, failed_again)
    };
    if json {
        let all: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "letter": r.replay.letter(),
                    "run_id": r.replay.run_id,
                    "replayed_at": r.replayed_at.to_rfc3339(),
                    "source_topic": r.replay.source_topic,
                    "key": r.replay.transaction_key,
                    "class": r.replay.error_class,
                    "rule": r.replay.error_rule,
                    "attempt": r.replay.attempt,
                    "outcome": outcome(r).to_string(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    for r in &rows {
        println!(
            "{}/{}/{}  {}  run {}  attempt {}  {}",
            r.replay.letter_topic,
            r.replay.letter_partition,
            r.replay.letter_offset,
            r.replayed_at.to_rfc3339(),
            r.replay.run_id,
            r.replay.attempt,
            outcome(r)
        );
    }
    println!("{} replay(s)", rows.len());
    Ok(())
}
