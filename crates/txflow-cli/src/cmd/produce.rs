//! `txflow produce`: publish transaction events to the transactions topic.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use chrono::Utc;
use txflow_core::synth::{Generator, IdStyle};
use txflow_core::{RecordSource, Transaction, TransactionParts, Validator};
use txflow_kafka::produce::{self, EventProducer, Pace, ProducerSpec};
use txflow_storage::{CsvSource, Location};

use crate::classifier::parse_duration;
use crate::inputs::S3Args;
use crate::kafka_args::KafkaArgs;

const EXAMPLES: &str = "\
Examples:
  txflow produce                                  # the original system's two producers, until Ctrl-C
  txflow produce --producer 1-10@500ms --producer 5-20@1s --count 1000
  txflow produce --rate 5000 --count 1000000      # a load test
  txflow produce --flat --count 1000000           # as fast as the broker takes them
  txflow produce --from-csv transactions.csv      # sample real rows, with fresh ids and times

Each event is a fresh transaction (a new UUID, timestamped now), keyed by its
id, as JSON with content-type and schema-version headers, through an
idempotent producer. Ctrl-C or SIGTERM stops and flushes what is queued.";

/// Publish transaction events: simulated producers, a steady rate, or flat out.
#[derive(Debug, clap::Args)]
#[command(after_long_help = EXAMPLES)]
pub struct Args {
    #[command(flatten)]
    kafka: KafkaArgs,

    /// A simulated producer, MIN-MAX@INTERVAL (events per tick, e.g.
    /// 1-10@500ms); repeat for several. Default: the original system's two.
    #[arg(long, value_name = "MIN-MAX@INTERVAL", value_parser = parse_producer)]
    producer: Vec<ProducerSpec>,

    /// A steady rate, events per second, instead of simulated producers.
    #[arg(long, conflicts_with_all = ["producer", "flat"])]
    rate: Option<u32>,

    /// As fast as the broker takes them.
    #[arg(long, conflicts_with = "producer")]
    flat: bool,

    /// Stop after this many events.
    #[arg(long)]
    count: Option<u64>,

    /// Time events in the reference period (2023-01-01 and 486 days on, as
    /// `txflow generate` does) instead of now: a backfill of history.
    #[arg(long, conflicts_with = "from_csv")]
    historical: bool,

    /// Sample events from this CSV file (path, file:// or s3://) instead of
    /// generating them; each gets a new UUID and the current time.
    #[arg(long, value_name = "FILE")]
    from_csv: Option<String>,

    /// Seed of the generator; random when absent.
    #[arg(long)]
    seed: Option<u64>,

    #[command(flatten)]
    s3: S3Args,
}

fn parse_producer(text: &str) -> Result<ProducerSpec, String> {
    let usage = || format!("{text:?}: expected MIN-MAX@INTERVAL, e.g. 1-10@500ms");
    let (range, interval) = text.split_once('@').ok_or_else(usage)?;
    let (min, max) = range.split_once('-').ok_or_else(usage)?;
    let min: u32 = min.trim().parse().map_err(|_| usage())?;
    let max: u32 = max.trim().parse().map_err(|_| usage())?;
    if min > max || max == 0 {
        return Err(format!(
            "{text:?}: MIN must be at most MAX, and MAX above 0"
        ));
    }
    Ok(ProducerSpec {
        min,
        max,
        interval: parse_duration(interval)?,
    })
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let seed = args.seed.unwrap_or_else(|| {
        let now = Utc::now();
        now.timestamp_nanos_opt().unwrap_or_default() as u64 ^ u64::from(std::process::id())
    });
    let mut generator = Generator::new(seed, IdStyle::Uuid);
    let historical = args.historical;
    let samples = match &args.from_csv {
        Some(file) => load_samples(file, &args.s3).await?,
        None => Vec::new(),
    };
    let mut pick = seed;
    let mut next = move || -> Transaction {
        let fresh = if historical {
            generator.next_transaction()
        } else {
            generator.next_at(Utc::now())
        };
        if samples.is_empty() {
            return fresh;
        }
        pick = pick.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let sample = &samples[(pick >> 33) as usize % samples.len()];
        Transaction::from(TransactionParts {
            id: fresh.id(),
            source_id: fresh.id().to_string(),
            description: sample.description().to_owned(),
            amount: sample.amount(),
            timestamp: fresh.timestamp(),
            merchant: sample.merchant().map(str::to_owned),
            operation_type: sample.operation_type().to_owned(),
            side: sample.side(),
        })
    };
    let pace = match (args.rate, args.flat) {
        (Some(0), _) => bail!("--rate must be above 0 (or use --flat)"),
        (Some(rate), _) => Pace::Rate(rate),
        (None, true) => Pace::Flat,
        (None, false) if args.producer.is_empty() => {
            Pace::Profile(ProducerSpec::SEED_PROFILE.to_vec())
        }
        (None, false) => Pace::Profile(args.producer.clone()),
    };
    let connection = args.kafka.connection()?;
    connection.check_reachable().await?;
    let producer = EventProducer::new(&connection, &args.kafka.transactions_topic)?;
    tracing::info!(topic = %args.kafka.transactions_topic, brokers = %args.kafka.brokers, ?pace, count = ?args.count, "producing");
    let started = Instant::now();
    let produced = produce::run(
        &producer,
        &mut next,
        &pace,
        args.count,
        seed,
        crate::signal::shutdown(),
    )
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{} events published to {} ({} failed), {:.2} s, {:.0} events/s",
        produced.sent,
        args.kafka.transactions_topic,
        produced.failed,
        seconds,
        produced.sent as f64 / seconds.max(f64::EPSILON)
    );
    Ok(if produced.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The valid transactions of a CSV file, at most 100,000.
async fn load_samples(file: &str, s3: &S3Args) -> Result<Vec<Transaction>> {
    let location = Location::parse(file, &s3.options())?;
    let mut source = CsvSource::open(&location, None).await?;
    let validator = Validator::new(source.location().clone(), source.decimal_mark());
    let mut samples = Vec::new();
    while samples.len() < 100_000 {
        let record = source
            .next_record()
            .await
            .map_err(|e| anyhow::anyhow!(e))
            .with_context(|| format!("reading {}", location.url()))?;
        let Some(record) = record else { break };
        if let Ok(tx) = validator.validate(&record) {
            samples.push(tx);
        }
    }
    if samples.is_empty() {
        bail!("{} holds no valid transaction to sample", location.url());
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::parse_producer;

    #[test]
    fn a_producer_is_min_max_at_an_interval_and_a_bad_one_says_the_form() {
        let spec = parse_producer("2-10@250ms").expect("valid");
        assert_eq!((spec.min, spec.max), (2, 10));
        assert_eq!(spec.interval, std::time::Duration::from_millis(250));
        for bad in ["2-10", "10@1s", "a-3@1s", "5-2@1s", "0-0@1s"] {
            let e = parse_producer(bad).expect_err(bad);
            assert!(e.contains(bad), "{e}");
        }
    }
}
