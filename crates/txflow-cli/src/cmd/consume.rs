//! `txflow consume`: one member of the streaming pipeline's consumer group.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use txflow_core::Secret;

use anyhow::{Context, Result, anyhow};
use chrono::Utc;
use txflow_core::{ProcessingType, RunId, RunSummary};
use txflow_http::server::HealthChecks;
use txflow_kafka::consume::{self, ConsumeConfig};

use crate::classifier::{AnyClassifier, ClassifierArgs, parse_duration};
use crate::kafka_args::{KafkaArgs, MemberArgs};
use crate::store::{self, DEFAULT_DATABASE, Store};

const EXAMPLES: &str = "\
Examples:
  txflow consume --database-url postgres://txflow@localhost/txflow
  txflow consume --group fraud-team --max-batch 5000 --max-wait 200ms --classifier http://ml:8000

Start more members with the same --group to share the partitions. SIGTERM or
Ctrl-C: stop fetching, store what is buffered, leave the group. Each stored
batch carries its partition's next offset in the same database transaction;
a restarted member resumes from there, so nothing is lost or written twice.";

/// Consume transaction events: validate, classify, publish predictions,
/// dead-letter what fails, and store everything exactly once.
#[derive(Debug, clap::Args)]
#[command(after_long_help = EXAMPLES)]
pub struct Args {
    #[command(flatten)]
    kafka: KafkaArgs,

    /// Where to store results: postgres://… (or sqlite://path for a try-out).
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE, hide_env_values = true)]
    database_url: Secret,

    /// Database writes in flight at once, one connection each (PostgreSQL;
    /// an SQLite file has one writer whatever this says). Partitions are
    /// spread over them, so more than the partitions a member holds gains
    /// nothing.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
    db_writers: u32,

    /// The consumer group.
    #[arg(long, env = "TXFLOW_GROUP", default_value = "txflow")]
    group: String,

    /// Publish each flush's predictions and dead letters in a Kafka
    /// transaction committed once the database has its rows, so readers
    /// with isolation.level=read_committed (the sinks) never see a
    /// prediction that was not stored. Needs a broker with transactions
    /// (Apache Kafka); transactional.id is txflow-<group>-<member id or
    /// name>: give --member-id so a restarted member aborts what its
    /// predecessor left open at once.
    #[arg(long, env = "TXFLOW_TRANSACTIONS")]
    transactions: bool,

    #[command(flatten)]
    membership: MemberArgs,

    /// Records buffered before a flush, at most. Larger flushes commit
    /// less often and hold more memory (see docs/PERFORMANCE.md).
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_batch: u32,

    /// How long a record may wait in the buffer (e.g. 500ms).
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    max_wait: Duration,

    /// Where /health and /metrics are served (port 0: any free port).
    #[arg(long, env = "TXFLOW_METRICS_LISTEN", default_value = "127.0.0.1:9464")]
    metrics_listen: SocketAddr,

    #[command(flatten)]
    classifier: ClassifierArgs,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let mut classifier_args = args.classifier.clone();
    // A stream waits for its classifier as long as it takes; the circuit
    // breaker pauses consumption meanwhile.
    classifier_args.classifier_max_outage = Duration::MAX;
    let classifier = AnyClassifier::from_args(&classifier_args).await?;
    // A stream waits for its database as long as it takes; meanwhile it
    // stops fetching and /health says the database is down.
    let options = store::Options {
        max_outage: Duration::MAX,
        writers: args.db_writers as usize,
    };
    let store = Store::open_with(args.database_url.expose(), options).await?;
    let review_below = classifier.review_below(&args.classifier, &*store).await?;
    let config = ConsumeConfig {
        member: args.membership.config(
            &args.kafka,
            &args.group,
            &args.kafka.transactions_topic,
            args.max_batch as usize,
            args.max_wait,
        )?,
        predictions_topic: args.kafka.predictions_topic.clone(),
        writers: args.db_writers as usize,
        review_below,
        transactions: args.transactions,
    };
    let member = config.member.name.clone();

    let health_store = store.clone();
    let checks: HealthChecks = Arc::new(move || vec![("database", health_store.is_up())]);
    let metrics_address = crate::telemetry::serve_ops(args.metrics_listen, checks).await?;

    let run_id = RunId::parse(&format!("{}/{}", args.group, member))?;
    let mut summary = RunSummary::start(run_id.clone(), ProcessingType::Streaming, Utc::now());
    store
        .start_run(&summary)
        .await
        .map_err(|e| anyhow!(e))
        .context("recording the run start")?;
    tracing::info!(group = %args.group, member = %member, topic = %config.member.topic,
        database = %store.describe(), metrics = %metrics_address,
        classifier = %classifier.describe(&args.classifier), "consuming");

    let outcome = consume::run(
        &config,
        &classifier,
        store.database(),
        crate::signal::shutdown(),
    )
    .await;
    let error = outcome.as_ref().err().map(|e| crate::errors::chain(e));
    if let Ok(done) = &outcome {
        summary.counts = done.counts;
    }
    summary.finish(Utc::now(), error, txflow_core::ErrorBudget::UNLIMITED);
    // The database may be away (the reason the member stops, perhaps): the
    // run's record is not worth waiting for past the shutdown timeout.
    match tokio::time::timeout(args.membership.shutdown_timeout, store.finish_run(&summary)).await {
        Ok(recorded) => recorded
            .map_err(|e| anyhow!(e))
            .context("recording the run's end")?,
        Err(_) => tracing::warn!(run = %run_id, waited = ?args.membership.shutdown_timeout,
            "could not record the run's end: the database does not answer"),
    }
    let done = outcome?;
    let c = &done.counts;
    println!(
        "member {run_id} stopped: {} records, {} valid, {} invalid, {} written, {} predictions published, {} dead letters",
        c.read, c.valid, c.invalid, c.written, done.predictions_published, done.dead_letters
    );
    Ok(ExitCode::SUCCESS)
}
