//! `txflow sink URL`: one member of a sink connector's consumer group,
//! writing the predictions topic to a store exactly once.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Result;
use txflow_core::Secret;
use txflow_http::server::HealthChecks;
use txflow_kafka::sink::{self, SinkConfig};
use txflow_parquet::LakeDate;

use crate::classifier::parse_duration;
use crate::connectors::{self, Options};
use crate::inputs::S3Args;
use crate::kafka_args::{KafkaArgs, MemberArgs};

const EXAMPLES: &str = "\
Examples:
  txflow sink s3://lake/predictions           # Parquet on S3 (AWS_* variables, --s3-endpoint)
  txflow sink file:///var/lib/txflow/lake     # Parquet in a local folder
  txflow sink delta+s3://lake/predictions     # a Delta Lake table on S3
  txflow sink delta+file:///var/lib/txflow/delta   # a Delta Lake table in a folder
  txflow sink influx+http://vm:8428/write     # VictoriaMetrics (line protocol)
  txflow sink 'influx+http://influx:8086/write?db=txflow'   # InfluxDB 1.x
  txflow sink postgres://txflow@replica/analytics  # a second database
  txflow sink elasticsearch+https://search:9200/predictions

Each sink is its own consumer group (default txflow-sink-<kind>): its own
offsets, lag and restart point; start more members with the same --group to
share the partitions. SIGTERM or Ctrl-C: stop fetching, write what is
buffered, leave the group.";

/// `--parquet-date`, `--delta-partition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LakeDateArg {
    Transaction,
    Prediction,
}

impl From<LakeDateArg> for LakeDate {
    fn from(arg: LakeDateArg) -> LakeDate {
        match arg {
            LakeDateArg::Transaction => LakeDate::Transaction,
            LakeDateArg::Prediction => LakeDate::Prediction,
        }
    }
}

/// Write the predictions topic to a store (a data lake, ...), exactly once.
#[derive(Debug, clap::Args)]
#[command(after_long_help = EXAMPLES)]
pub struct Args {
    /// Where to write: s3://bucket/prefix or file:///path (Parquet),
    /// delta+s3://bucket/path or delta+file:///path (a Delta table),
    /// influx+http(s)://host:port/write?db=NAME (line protocol),
    /// postgres://… (a second database with txflow's schema),
    /// elasticsearch+http(s)://host:9200/INDEX (_bulk).
    #[arg(value_name = "URL")]
    url: String,

    #[command(flatten)]
    kafka: KafkaArgs,

    #[command(flatten)]
    s3: S3Args,

    /// The token InfluxDB 2.x/3.x asks for (never printed).
    #[arg(long, env = "TXFLOW_INFLUX_TOKEN", hide_env_values = true)]
    influx_token: Option<Secret>,

    /// Parquet: which date names the `date=` folders: the transaction's
    /// (default) or the prediction's (a backfill then makes large objects
    /// in the days it runs instead of small ones in every past day).
    #[arg(long, value_enum, default_value_t = LakeDateArg::Transaction)]
    parquet_date: LakeDateArg,

    /// Delta: which date is the table's `date` partition: the
    /// transaction's (default) or the prediction's (a backfill then adds
    /// few large files instead of small ones in every past day).
    #[arg(long, value_enum, default_value_t = LakeDateArg::Transaction)]
    delta_partition: LakeDateArg,

    /// Delta: a checkpoint (the table's state in one Parquet file, where
    /// readers start) every N commits. Default: the table's
    /// `delta.checkpointInterval`, else 100.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    delta_checkpoint_interval: Option<u32>,

    /// The consumer group (default txflow-sink-<kind>, e.g. txflow-sink-parquet).
    #[arg(long, env = "TXFLOW_SINK_GROUP")]
    group: Option<String>,

    #[command(flatten)]
    membership: MemberArgs,

    /// Records per write at most (per Parquet object and date, say).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_batch: u32,

    /// How long a record may wait in the buffer (e.g. 1s).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    max_wait: Duration,

    /// Where /health and /metrics are served (port 0: any free port).
    #[arg(long, env = "TXFLOW_METRICS_LISTEN", default_value = "127.0.0.1:9465")]
    metrics_listen: SocketAddr,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let entry = connectors::entry(&args.url)?;
    let group = args
        .group
        .clone()
        .unwrap_or_else(|| format!("txflow-sink-{}", entry.kind));
    let options = Options {
        group: &group,
        s3: &args.s3,
        influx_token: args.influx_token.as_ref(),
        parquet_date: args.parquet_date.into(),
        delta_date: args.delta_partition.into(),
        delta_checkpoint_interval: args.delta_checkpoint_interval,
    };
    let connector = (entry.open)(&args.url, &options).await?;
    let config: SinkConfig = args.membership.config(
        &args.kafka,
        &group,
        &args.kafka.predictions_topic,
        args.max_batch as usize,
        args.max_wait,
    )?;
    let member = config.name.clone();

    let up = Arc::new(AtomicBool::new(true));
    let store_up = Arc::clone(&up);
    let checks: HealthChecks = Arc::new(move || vec![("store", store_up.load(Ordering::Relaxed))]);
    let metrics_address = crate::telemetry::serve_ops(args.metrics_listen, checks).await?;
    tracing::info!(%group, %member, topic = %config.topic, store = %connector.describe(),
        metrics = %metrics_address, "sinking");
    let done = sink::run(&config, connector, up, crate::signal::shutdown()).await?;
    println!(
        "sink {group}/{member} stopped: {} records read, {} written in {} batches, {} dead letters",
        done.read, done.written, done.batches, done.dead_letters
    );
    Ok(ExitCode::SUCCESS)
}
