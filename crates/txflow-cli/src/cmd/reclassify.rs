//! `txflow reclassify`: classify stored transactions with another model,
//! adding its predictions beside the old ones.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use txflow_core::registry::{ModelKind, Registration, Selection};
use txflow_core::{Position, RunId, Secret, pipeline, review};

use super::models::store_error;

use crate::classifier::{AnyClassifier, ClassifierArgs};

/// Classify stored transactions with a model (the batch command's
/// `--classifier` flags) and store its predictions as a new version: old
/// predictions are never overwritten, a rerun skips what that version has
/// classified already, and memory stays bounded by `--batch-size`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The database: postgres://user:password@host:port/db or
    /// sqlite://path/to/file.db.
    #[arg(long, env = "DATABASE_URL", default_value = crate::store::DEFAULT_DATABASE, hide_env_values = true)]
    database_url: Secret,

    /// Every stored transaction.
    #[arg(long, conflicts_with_all = ["run", "since", "until", "category", "source"])]
    all: bool,
    /// Only those a run stored.
    #[arg(long)]
    run: Option<String>,
    /// Only transactions at or after this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    since: Option<DateTime<Utc>>,
    /// Only transactions before this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    until: Option<DateTime<Utc>>,
    /// Only those whose current category is this one.
    #[arg(long)]
    category: Option<String>,
    /// Only those read from this source (a file's URL, kafka://topic/partition).
    #[arg(long)]
    source: Option<String>,

    /// Transactions per page (read, classified and written together).
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(i64).range(1..=100_000))]
    batch_size: i64,

    /// Count what would be classified; write nothing.
    #[arg(long)]
    dry_run: bool,

    /// The run id stored with the predictions; generated when absent.
    #[arg(long)]
    run_id: Option<String>,

    #[command(flatten)]
    classifier: ClassifierArgs,
}

pub(crate) fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{s:?} is not an RFC 3339 time like 2026-11-25T08:00:00Z: {e}"))
}

/// The version the classifier's predictions will carry, and how it is
/// registered: (version, name, kind, location).
async fn model_of(
    args: &ClassifierArgs,
    classifier: &AnyClassifier,
) -> Result<(String, String, ModelKind, Option<String>)> {
    if let AnyClassifier::InProcess(m) = classifier {
        let version = m.0.version().to_owned();
        return Ok(if crate::learned::is_model_file(&args.classifier) {
            let name = crate::learned::model_name(&version).to_owned();
            (
                version,
                name,
                ModelKind::File,
                Some(args.classifier.clone()),
            )
        } else {
            (version, args.classifier.clone(), ModelKind::Builtin, None)
        });
    }
    let url = args.classifier.trim_end_matches('/');
    if args.classifier_model_version != "external" {
        let v = args.classifier_model_version.clone();
        return Ok((v.clone(), v, ModelKind::Http, Some(url.to_owned())));
    }
    // txflow serve says which model it runs.
    let ready: serde_json::Value = reqwest::get(format!("{url}/ready"))
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("asking {url}/ready which model the service runs; name it with --classifier-model-version"))?
        .json()
        .await
        .with_context(|| format!("{url}/ready did not answer JSON; name the model with --classifier-model-version"))?;
    let (Some(version), name) = (ready["model_version"].as_str(), ready["model"].as_str()) else {
        bail!("{url}/ready names no model_version; name it with --classifier-model-version");
    };
    Ok((
        version.to_owned(),
        name.unwrap_or(version).to_owned(),
        ModelKind::Http,
        Some(url.to_owned()),
    ))
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let selection = Selection {
        run: args.run.clone(),
        since: args.since,
        until: args.until,
        category: args.category.clone(),
        source: args.source.clone(),
    };
    if !args.all && selection == Selection::default() {
        bail!("say which transactions: --all, or --run, --since/--until, --category or --source");
    }
    let database = super::models::open(&args.database_url).await?;
    let classifier = AnyClassifier::from_args(&args.classifier).await?;
    let (version, name, kind, location) = model_of(&args.classifier, &classifier).await?;
    let review_below = crate::classifier::review_threshold(
        args.classifier.review_below,
        &*database,
        Some(&version),
    )
    .await?;
    let run_id = match &args.run_id {
        Some(id) => RunId::parse(id)?,
        None => RunId::generate(),
    };
    if !args.dry_run {
        let model = Registration {
            version: &version,
            name: &name,
            kind,
            location: location.as_deref(),
        };
        super::models::register(&*database, model).await?;
    }
    tracing::info!(%run_id, model = %version, classifier = %classifier.describe(&args.classifier),
        dry_run = args.dry_run, "reclassifying");
    let started = Instant::now();
    let (mut read, mut written, mut failed, mut queued) = (0u64, 0u64, 0u64, 0u64);
    let mut after = None;
    loop {
        let page = database
            .transactions_to_classify(&selection, &version, after, args.batch_size)
            .await
            .map_err(store_error)?;
        let Some(last) = page.last else { break };
        after = Some(last);
        let page = page.todo;
        read += page.len() as u64;
        if args.dry_run || page.is_empty() {
            continue;
        }
        let positions: Vec<Position> = (0..page.len() as u64)
            .map(|i| Position { line: i, offset: i })
            .collect();
        let (predictions, unclassified) =
            pipeline::classify(&classifier, &page, &positions, "reclassify").await?;
        failed += unclassified.len() as u64;
        let mismatched = predictions
            .iter()
            .filter(|p| p.model_version != version)
            .count();
        if mismatched > 0 {
            bail!(
                "the service answered with model version {:?}, not {version:?}: name the version it runs with --classifier-model-version",
                predictions
                    .iter()
                    .find(|p| p.model_version != version)
                    .map(|p| p.model_version.clone())
            );
        }
        let reviews = review::route_predictions(&classifier, review_below, &page, &predictions);
        let (added, queued_now) = database
            .add_predictions(&predictions, &reviews, run_id.as_str())
            .await
            .map_err(store_error)?;
        written += added;
        queued += queued_now;
    }
    let seconds = started.elapsed().as_secs_f64();
    let rate = if seconds > 0.0 {
        read as f64 / seconds
    } else {
        0.0
    };
    if args.dry_run {
        println!(
            "dry run: {read} transaction(s) have no {version} prediction and would be classified"
        );
    } else {
        println!(
            "reclassify {run_id}: {read} transaction(s) classified with {version}, {written} prediction(s) added, {queued} queued for review, {failed} not classified, in {seconds:.1} s ({rate:.0}/s)"
        );
    }
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
