//! `txflow batch`: validate, classify and store CSV files of transactions.

mod report;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use txflow_core::Secret;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use tracing::Instrument;
use txflow_core::batch::{BatchRun, FileEnd, RunObserver, RunOutcome, SourceOpener};
use txflow_core::pipeline::BatchPipeline;
use txflow_core::transaction::DecimalMark;
use txflow_core::{
    BoxError, Counts, ErrorBudget, FileOutcome, ProcessingType, RunId, RunStatus, RunSummary,
};
use txflow_csv::Dialect;
#[cfg(feature = "kafka")]
use txflow_kafka::publishing::{Publisher, PublishingSink};
use txflow_storage::{CsvSource, ERRORS_FOLDER, Input, Location, RejectFile};

use crate::classifier::{AnyClassifier, ClassifierArgs, parse_duration};
use crate::inputs::{self, S3Args};
#[cfg(feature = "kafka")]
use crate::kafka_args::KafkaArgs;
use crate::store::{DEFAULT_DATABASE, DEFAULT_MAX_OUTAGE, Store};

/// Exit code of a run that finished but had more invalid rows than
/// `--max-error-rate` allows.
pub const EXIT_ERROR_RATE: u8 = 3;

const EXAMPLES: &str = "\
Examples:
  txflow batch transactions.csv
  txflow batch data/2024/ --database-url postgres://txflow@localhost/txflow
  AWS_ENDPOINT_URL=http://127.0.0.1:9000 txflow batch s3://bank/exports/ --max-error-rate 0.01

Exit status: 0 when the run succeeded (invalid rows are kept in rejected_records
and in the errors file), 3 when more rows were invalid than --max-error-rate
allows, 1 when the run failed (an unreadable input, a database error), 2 for
bad flags.";

/// Validate, classify and store CSV files of transactions, with lineage.
///
/// Each input is a file, a folder or an S3 prefix (every .csv below it, except
/// in folders whose name starts with `_` or `.`). Rows are validated, the
/// valid ones classified by the reference model and written to the database
/// with their run id, source and line; invalid rows go to rejected_records and
/// to an errors file. Running the same input again adds nothing.
#[derive(Debug, clap::Args)]
#[command(after_long_help = EXAMPLES)]
pub struct Args {
    /// Files, folders or prefixes: a path, file:///abs/path, s3://bucket/key.csv
    /// or s3://bucket/prefix/.
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<String>,

    /// Where to store results: postgres://user:password@host:port/db or
    /// sqlite://path/to/file.db.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE, hide_env_values = true)]
    database_url: Secret,

    /// How long to wait for a database server that went away mid-run before
    /// the file being written fails (a rerun completes it, adding no row twice).
    #[arg(long, default_value = DEFAULT_MAX_OUTAGE, value_parser = parse_duration)]
    db_max_outage: Duration,

    /// How long to keep trying when the read of an input breaks (the object
    /// store restarted): the read resumes from the byte reached.
    #[arg(long, default_value = DEFAULT_MAX_OUTAGE, value_parser = parse_duration)]
    source_max_outage: Duration,

    /// The run id stored with every row (Airflow sets TXFLOW_RUN_ID);
    /// generated when absent.
    #[arg(long, env = "TXFLOW_RUN_ID")]
    run_id: Option<String>,

    /// The CSV dialect: auto detects it from the header and first row.
    #[arg(long, value_enum, default_value = "auto")]
    format: InputFormat,

    /// Valid rows per batch; each batch is one database transaction.
    /// Default: 10,000 into PostgreSQL, 50,000 into SQLite (whose commits
    /// cost more per batch).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    batch_size: Option<u32>,

    /// Folder or prefix for the file of invalid rows (<ERRORS>/<run id>.csv);
    /// by default `_txflow_errors/` beside the first input.
    #[arg(long, value_name = "ERRORS")]
    errors: Option<String>,

    /// Fail the run (exit status 3) when the share of invalid rows is above
    /// this, between 0 and 1. The valid rows are stored all the same.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    max_error_rate: Option<ErrorBudget>,

    #[command(flatten)]
    s3: S3Args,

    /// Also write the run summary as JSON to this file (`-` for standard output).
    #[arg(long, value_name = "PATH")]
    summary_json: Option<PathBuf>,

    /// No progress bar, even on a terminal.
    #[arg(long)]
    no_progress: bool,

    /// Leave out the files some earlier run has read to the end (see
    /// `txflow list --skip-done`); by default every file is read, and what
    /// is already stored is not written twice.
    #[arg(long)]
    skip_done: bool,

    /// Also publish each batch's predictions to the predictions topic
    /// (`--brokers`, `--predictions-topic` and the librdkafka settings of the
    /// stream commands) before the batch is stored, so the sink connectors
    /// receive batch data too. A rerun publishes again what it stores again.
    #[arg(long)]
    publish: bool,

    /// Push the run's metrics (rows by outcome, files, duration, status,
    /// last success time) to this Prometheus Pushgateway when the run starts
    /// and ends. A Pushgateway that is away is logged, not fatal.
    #[arg(long, env = "TXFLOW_PUSHGATEWAY", value_name = "URL")]
    pushgateway: Option<String>,

    /// The `job` label of the pushed group.
    #[arg(long, default_value = "txflow_batch", value_name = "JOB")]
    pushgateway_job: String,

    /// A grouping label of the push besides `job`, repeatable; by default
    /// `instance=<host name>`. Runs that must not overwrite each other's
    /// metrics (Airflow's mapped tasks) give each its own, e.g.
    /// `--pushgateway-label file=<input>`.
    #[arg(long = "pushgateway-label", value_name = "KEY=VALUE", value_parser = report::parse_label)]
    pushgateway_labels: Vec<(String, String)>,

    /// Serve /metrics and /health on this address while the run goes.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,

    #[cfg(feature = "kafka")]
    #[command(flatten)]
    kafka: KafkaArgs,

    #[command(flatten)]
    classifier: ClassifierArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum InputFormat {
    Auto,
    /// `;`, decimal comma, `YYYY-MM-DD HH:MM:SS`.
    Reference,
    /// `,`, decimal point, RFC 3339.
    Common,
}

fn parse_rate(s: &str) -> Result<ErrorBudget, String> {
    let rate: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    ErrorBudget::new(rate).ok_or_else(|| format!("{s} is not between 0 and 1"))
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let run_id = match &args.run_id {
        Some(id) => RunId::parse(id)?,
        None => RunId::generate(),
    };
    let s3 = args.s3.options();
    let dialect = match args.format {
        InputFormat::Auto => None,
        InputFormat::Reference => Some(Dialect::REFERENCE),
        InputFormat::Common => Some(Dialect::COMMON),
    };

    // Resolve every input before writing anything: a typo stops the run here.
    let (mut inputs, first) = inputs::resolve(&args.inputs, &s3).await?;
    let errors_target = match (&args.errors, &first) {
        (Some(prefix), _) => Location::parse(prefix, &s3)?.file_in(&format!("{run_id}.csv")),
        (None, Some(first)) => first.sibling_folder_file(ERRORS_FOLDER, &format!("{run_id}.csv")),
        (None, None) => unreachable!("clap requires one input"),
    };

    let gateway = match &args.pushgateway {
        Some(url) => Some(report::gateway(
            url,
            &args.pushgateway_job,
            &args.pushgateway_labels,
        )?),
        None => None,
    };
    let report = report::Report::new(crate::catalogue::install(), gateway);
    if let Some(listen) = args.metrics_listen {
        let address = crate::telemetry::serve_ops(listen, std::sync::Arc::new(Vec::new)).await?;
        tracing::info!(%address, "serving /metrics and /health");
    }

    let classifier = AnyClassifier::from_args(&args.classifier).await?;
    let store = Store::open(args.database_url.expose(), args.db_max_outage).await?;
    let database = store.describe().to_owned();
    let review_below = classifier.review_below(&args.classifier, &*store).await?;
    if args.skip_done {
        inputs::skip_done(&store, &mut inputs).await?;
    }
    let budget = args.max_error_rate.unwrap_or(ErrorBudget::UNLIMITED);
    tracing::info!(run_id = %run_id, files = inputs.len(), database = %database,
        classifier = %classifier.describe(&args.classifier), "run started");
    let started = Instant::now();
    report.started().await;

    #[cfg(feature = "kafka")]
    let publishing = PublishingSink {
        inner: &*store,
        publisher: publisher(&args).await?,
    };
    #[cfg(feature = "kafka")]
    let sink = &publishing;
    #[cfg(not(feature = "kafka"))]
    let sink = {
        anyhow::ensure!(
            !args.publish,
            "--publish needs Kafka, which this txflow was built without \
             (--no-default-features); build it with `cargo build --release`"
        );
        &*store
    };
    let run = BatchRun {
        pipeline: BatchPipeline {
            classifier: &classifier,
            sink,
            batch_size: args
                .batch_size
                .map_or(store.batch_size(), |rows| rows as usize),
            run_id: run_id.clone(),
            processing_type: ProcessingType::Batch,
            review_below,
        },
        ledger: &*store,
        budget,
    };
    let opener = CsvOpener {
        dialect,
        max_outage: args.source_max_outage,
    };
    let mut watch = Watch {
        inputs: &inputs,
        dialect: "",
        progress: Progress::new(&inputs, args.no_progress),
        report: &report,
        started,
    };
    let RunOutcome {
        summary,
        rejected,
        error,
    } = run
        .run(&opener, &inputs, RejectFile::new(errors_target), &mut watch)
        .await?;
    watch.progress.finish();

    report.finished(summary.status, started.elapsed()).await;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        summary_line(&summary, seconds, rejected.as_ref(), &database)
    );
    if let Some(path) = &args.summary_json {
        write_json(
            path,
            &summary,
            seconds,
            rejected.as_ref(),
            &database,
            budget,
        )?;
    }
    if let Some(e) = error {
        return Err(e.into());
    }
    Ok(match summary.status {
        RunStatus::ErrorRateExceeded => ExitCode::from(EXIT_ERROR_RATE),
        RunStatus::Failed => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    })
}

/// The run's inputs, opened as CSV (local or on S3) in the chosen dialect.
/// The Kafka publisher of `--publish`.
#[cfg(feature = "kafka")]
async fn publisher(args: &Args) -> Result<Option<Publisher>> {
    if !args.publish {
        return Ok(None);
    }
    let connection = args.kafka.connection()?;
    let topic = &args.kafka.predictions_topic;
    let publisher = Publisher::connect(&connection, topic)
        .await
        .with_context(|| format!("--publish: publishing predictions to {topic:?}"))?;
    Ok(Some(publisher))
}

struct CsvOpener {
    dialect: Option<Dialect>,
    max_outage: Duration,
}

impl SourceOpener for CsvOpener {
    type Input = Input;
    type Source = CsvSource;

    fn url(&self, input: &Input) -> String {
        input.location.url()
    }

    async fn open(&self, input: &Input) -> std::result::Result<CsvSource, BoxError> {
        let source = CsvSource::open(&input.location, self.dialect).await?;
        Ok(source.with_max_outage(self.max_outage))
    }
}

/// How a person and Prometheus watch the run: the progress bar (or a log
/// line every 10 s), each file's log line and errors, the run's metrics; a
/// file is a trace (its requests to a classification service are part of
/// it).
struct Watch<'a> {
    inputs: &'a [Input],
    /// The dialect of the file being read.
    dialect: &'static str,
    progress: Progress,
    report: &'a report::Report,
    started: Instant,
}

impl RunObserver<CsvSource> for Watch<'_> {
    fn opened(&mut self, index: usize, source: &CsvSource) {
        if !source.has_header() {
            tracing::warn!(file = %self.inputs[index].location.url(), "empty file: no header, no rows");
        }
        self.dialect = dialect_name(source.dialect());
    }

    fn progress(&self, counts: &Counts, file_bytes: u64) {
        self.progress.update(counts, file_bytes);
    }

    fn file_done(&mut self, index: usize, file: &FileOutcome, end: FileEnd<'_>) {
        let url = &file.location;
        self.progress.file_done(self.inputs[index].size);
        self.report
            .file_done(&file.counts, !file.done, self.started.elapsed());
        let c = &file.counts;
        match end {
            FileEnd::Done => tracing::info!(
                file = %url,
                dialect = self.dialect,
                read = c.read,
                valid = c.valid,
                invalid = c.invalid,
                written = c.written,
                "file done"
            ),
            FileEnd::NotOpened(e) => {
                self.progress
                    .println(&format!("error: {e}; no row of this file was written"));
                tracing::error!(file = %url, error = %e, "file skipped");
            }
            // An unreadable file stops that file only; what it wrote stays
            // written, and a rerun completes it without duplicates.
            FileEnd::Stopped(e) => {
                self.progress
                    .println(&format!("error: {e}; rows before that point were written"));
                tracing::error!(file = %url, error = %e, "file stopped");
            }
            FileEnd::RunStopped(_) => {}
        }
    }

    fn scope<F: Future + Send>(
        &self,
        _index: usize,
        work: F,
    ) -> impl Future<Output = F::Output> + Send {
        work.instrument(txflow_trace::span("txflow.batch.file", "internal", None))
    }
}

fn dialect_name(d: Dialect) -> &'static str {
    match (d.delimiter, d.decimal) {
        (b';', DecimalMark::Comma) => "reference",
        (b',', DecimalMark::Point) => "common",
        _ => "custom",
    }
}

fn rate(rows: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        rows as f64 / seconds
    } else {
        0.0
    }
}

/// The one line every run ends with.
fn summary_line(
    s: &RunSummary,
    seconds: f64,
    rejected: Option<&(String, u64)>,
    database: &str,
) -> String {
    let c = &s.counts;
    let not_stored = match c.not_stored() {
        0 => String::new(),
        n => format!(", {n} not stored"),
    };
    let mut line = format!(
        "run {} {}: {} file{}{}, {} rows read, {} valid, {} invalid, {} written ({} already present{}) to {}, \
         {:.2} s, {:.0} rows/s",
        s.run_id,
        s.status.as_str(),
        c.files,
        if c.files == 1 { "" } else { "s" },
        if c.files_failed > 0 {
            format!(" ({} failed)", c.files_failed)
        } else {
            String::new()
        },
        c.read,
        c.valid,
        c.invalid,
        c.written,
        c.present,
        not_stored,
        database,
        seconds,
        rate(c.read, seconds),
    );
    if c.unclassified > 0 {
        line.push_str(&format!(
            "; {} valid rows could not be classified (stored without a prediction, see \
             classification_failures; a rerun classifies them)",
            c.unclassified
        ));
    }
    if c.queued > 0 {
        line.push_str(&format!(
            "; {} prediction(s) queued for review (txflow review list, or review serve)",
            c.queued
        ));
    }
    if let Some((url, rows)) = rejected {
        line.push_str(&format!("; {rows} invalid rows in {url}"));
    }
    line
}

fn write_json(
    path: &PathBuf,
    s: &RunSummary,
    seconds: f64,
    rejected: Option<&(String, u64)>,
    database: &str,
    budget: ErrorBudget,
) -> Result<()> {
    let c = &s.counts;
    let value = serde_json::json!({
        "run_id": s.run_id.as_str(),
        "kind": s.kind.as_str(),
        "status": s.status.as_str(),
        "started_at": s.started_at.to_rfc3339(),
        "finished_at": s.finished_at.map(|t| t.to_rfc3339()),
        "seconds": seconds,
        "files": c.files,
        "files_failed": c.files_failed,
        "bytes": c.bytes,
        "rows_read": c.read,
        "rows_valid": c.valid,
        "rows_invalid": c.invalid,
        "rows_classified": c.classified,
        "rows_unclassified": c.unclassified,
        "rows_written": c.written,
        "rows_already_present": c.present,
        "rows_not_stored": c.not_stored(),
        "predictions_written": c.predictions_written,
        "error_rate": c.error_rate(),
        "max_error_rate": budget.max_rate(),
        "rows_per_second": rate(c.read, seconds),
        "errors_file": rejected.map(|r| &r.0),
        "database": database,
        "error": s.error,
    });
    let text = serde_json::to_string_pretty(&value).context("encoding the summary")?;
    if path.as_os_str() == "-" {
        println!("{text}");
    } else {
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// A progress bar on a terminal; otherwise a log line every 10 seconds.
struct Progress {
    bar: Option<ProgressBar>,
    done_bytes: u64,
    last_log: std::sync::Mutex<Instant>,
}

impl Progress {
    fn new(inputs: &[Input], disabled: bool) -> Progress {
        let total: u64 = inputs.iter().map(|i| i.size).sum();
        let bar = (!disabled && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(total);
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta}) {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            done_bytes: 0,
            last_log: std::sync::Mutex::new(Instant::now()),
        }
    }

    fn update(&self, counts: &Counts, file_bytes: u64) {
        let position = self.done_bytes + file_bytes;
        match &self.bar {
            Some(bar) => {
                bar.set_position(position);
                bar.set_message(format!("{} rows, {} invalid", counts.read, counts.invalid));
            }
            None => {
                let mut last_log = self
                    .last_log
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if last_log.elapsed() < Duration::from_secs(10) {
                    return;
                }
                *last_log = Instant::now();
                tracing::info!(
                    rows = counts.read,
                    invalid = counts.invalid,
                    written = counts.written,
                    bytes = position,
                    "progress"
                );
            }
        }
    }

    fn file_done(&mut self, size: u64) {
        self.done_bytes += size;
        if let Some(bar) = &self.bar {
            bar.set_position(self.done_bytes);
        }
    }

    fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
