//! `txflow train`: a model from labeled files.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use txflow_learn::{FeatureSettings, TrainOptions};
use txflow_storage::Location;

const EXAMPLES: &str = "\
Examples:
  txflow train labeled.csv --output model.txm --name us-spending
  txflow train jan.csv feb.csv --output s3://models/us-spending.txm --seed 7
  txflow evaluate --model model.txm held-out.csv --html report.html

A labeled file has a header with description and category, and may have
merchant, amount, side and operation_type (both CSV dialects, as in batch).
The categories found make the model's label set.";

/// Train a classifier (multinomial logistic regression over words,
/// character n-grams and the optional fields) with calibrated confidence.
///
/// The confidence's temperature is fitted on merchants the model has not
/// seen: each half of the merchants scored by a model fitted on the other
/// half (or one held-out slice, --calibration slice), which also reports
/// how the model does on merchants it never saw (those models are fitted
/// without the --merchant-copies); the model is then fitted on every row.
/// Deterministic for a seed, whatever the number of cores.
#[derive(Debug, clap::Args)]
#[command(after_long_help = EXAMPLES)]
pub struct Args {
    /// Labeled files: paths, file:///abs/path.csv or s3://bucket/key.csv.
    #[arg(required_unless_present = "from_database", value_name = "LABELS.csv")]
    labels: Vec<String>,

    /// Also train on the labels people gave (`txflow review`), joined with
    /// their transactions, from --database-url.
    #[arg(long)]
    from_database: bool,

    /// With --from-database: only labels given at or after this time (RFC 3339).
    #[arg(long, requires = "from_database", value_parser = super::reclassify::parse_time)]
    since: Option<chrono::DateTime<chrono::Utc>>,

    /// The database of --from-database.
    #[arg(long, env = "DATABASE_URL", default_value = crate::store::DEFAULT_DATABASE, hide_env_values = true)]
    database_url: txflow_core::Secret,

    /// Where to write the model: a path, file:/// or s3://.
    #[arg(long, short)]
    output: String,

    /// The model's name; its version is NAME@ and a digest of its weights.
    #[arg(long)]
    name: Option<String>,

    /// Seed of the calibration split.
    #[arg(long, default_value_t = 42)]
    seed: u64,

    /// L2 penalty on the weights (added to the mean cross-entropy).
    #[arg(long, default_value_t = 7e-7)]
    l2: f64,

    /// balanced: each row weighs the inverse of its category's frequency,
    /// so every category counts alike (what macro-F1 rewards); none: every
    /// row alike.
    #[arg(long, default_value = "balanced", value_parser = ["balanced", "none"])]
    class_weights: String,

    /// The weight of a copy of each row without the words that name its
    /// merchant (and without its merchant field), fitted beside the row, so
    /// the model also learns what else a description says: all it has for
    /// a merchant it never met. 0: no copies (the default before 0.05;
    /// docs/MODELS.md, "Session 19"). Higher weights raised macro-F1 on
    /// new merchants no further on average, and their confidence is less
    /// evenly calibrated.
    #[arg(long, default_value_t = 0.05, value_name = "WEIGHT")]
    merchant_copies: f64,

    /// cross-fit: the temperature is fitted on every training row, each
    /// scored by a model fitted on the other half of the merchants; slice:
    /// on --calibration-fraction of the merchants held out (faster).
    #[arg(long, default_value = "cross-fit", value_parser = ["cross-fit", "slice"])]
    calibration: String,

    /// Most L-BFGS iterations of each fit.
    #[arg(long, default_value_t = 80)]
    iterations: usize,

    /// With --calibration slice: the share of the merchants held out to
    /// calibrate (0: no calibration).
    #[arg(long, default_value_t = 0.3)]
    calibration_fraction: f64,

    /// Feature buckets: 2^bits.
    #[arg(long, default_value_t = 18, value_parser = clap::value_parser!(u8).range(10..=24))]
    hash_bits: u8,

    /// Threads for training (default: the machine's cores; the model is
    /// the same whatever the number).
    #[arg(long)]
    threads: Option<usize>,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let started = Instant::now();
    let mut rows = crate::learned::read_labeled(&args.labels).await?;
    if args.from_database {
        let store = crate::store::Store::open(
            args.database_url.expose(),
            crate::store::default_max_outage(),
        )
        .await?;
        let labeled = store
            .labeled(args.since)
            .await
            .map_err(|e| anyhow::anyhow!(e))
            .context("reading the labels")?;
        if labeled.is_empty() {
            bail!(
                "{} holds no label{}: label with `txflow review` first",
                store.describe(),
                if args.since.is_some() {
                    " since --since"
                } else {
                    ""
                }
            );
        }
        println!("{} label(s) from {}", labeled.len(), store.describe());
        rows.extend(labeled.iter().map(crate::learned::row_of_label));
    }
    let name = match args.name {
        Some(name) => name,
        None => std::path::Path::new(&args.output)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("model")
            .to_owned(),
    };
    if name.is_empty() || name.contains('@') || name.chars().any(char::is_whitespace) {
        bail!("--name {name:?}: a model name has no '@' and no space, e.g. us-spending");
    }
    if !(0.0..=1.0).contains(&args.merchant_copies) {
        bail!(
            "--merchant-copies {}: a weight from 0 (no copies) to 1, e.g. 0.5",
            args.merchant_copies
        );
    }
    let mut options = TrainOptions {
        name,
        seed: args.seed,
        l2: args.l2,
        max_iterations: args.iterations,
        calibration_fraction: args.calibration_fraction,
        balanced: args.class_weights == "balanced",
        cross_fit: args.calibration == "cross-fit",
        merchant_copies: args.merchant_copies,
        features: FeatureSettings {
            hash_bits: args.hash_bits,
            ..FeatureSettings::default()
        },
        ..TrainOptions::default()
    };
    if let Some(threads) = args.threads {
        options.threads = threads.max(1);
    }
    let read = started.elapsed();
    let trained = tokio::task::spawn_blocking(move || txflow_learn::train(&rows, &options))
        .await
        .context("the training thread stopped")??;
    let model = trained.model;
    let bytes = txflow_learn::file::encode(&model);
    let location = Location::parse(&args.output, &crate::learned::s3_from_env())?;
    location
        .write_all(bytes.clone())
        .await
        .with_context(|| format!("writing the model to {}", args.output))?;
    let h = model.header();
    println!(
        "trained {} on {} rows ({} categories) in {:.1} s (reading {:.1} s); wrote {} ({:.1} MiB)",
        h.version,
        h.training.rows,
        h.labels.len(),
        started.elapsed().as_secs_f64(),
        read.as_secs_f64(),
        location.url(),
        bytes.len() as f64 / (1024.0 * 1024.0)
    );
    match &trained.holdout {
        Some(e) => println!(
            "held-out merchants ({} rows): accuracy {:.3}, macro-F1 {:.3}; temperature {:.3}, ECE {:.3} -> {:.3}",
            e.rows,
            e.accuracy,
            e.macro_f1,
            h.calibration.temperature,
            h.calibration.ece_before,
            h.calibration.ece_after
        ),
        None => println!("no merchant held out: confidence not calibrated (temperature 1)"),
    }
    Ok(ExitCode::SUCCESS)
}
