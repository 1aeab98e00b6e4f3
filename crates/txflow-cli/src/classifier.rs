//! The classifier a run uses, picked by `--classifier`: a built-in model, a
//! trained model file (in process), or an HTTP service.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use txflow_core::{
    BoxError, Classifier, InProcess, LabelSet, MerchantModel, Model, Outcome, Ranked,
    ReferenceModel, ReviewBelow, Transaction,
};
use txflow_http::{ClientConfig, HttpClassifier};

/// The `--classifier*` flags, shared by the commands that classify.
#[derive(Debug, Clone, clap::Args)]
pub struct ClassifierArgs {
    /// `reference` (the in-process model), `merchant` (the in-process
    /// model by merchant name), a trained model file (`file:///path/m.txm`,
    /// `s3://bucket/m.txm` or a path ending in .txm; made by `txflow train`,
    /// run in process) or the URL of a classification service, e.g.
    /// http://127.0.0.1:8000 (txflow serve, or the original).
    #[arg(long, env = "TXFLOW_CLASSIFIER", default_value = "reference")]
    pub classifier: String,

    /// Transactions per request to the service.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub classifier_batch_size: u32,

    /// Requests to the service in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub classifier_concurrency: u32,

    /// Timeout of one request to the service (e.g. 500ms, 30s).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub classifier_timeout: Duration,

    /// Fail the run (no record) when the service has been unusable this long.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub classifier_max_outage: Duration,

    /// Model version stored when the service's answers carry none (the
    /// original service's).
    #[arg(long, default_value = "external")]
    pub classifier_model_version: String,

    /// A file whose first token is sent to the service as
    /// `Authorization: Bearer <token>` (same format as serve's --auth-token-file).
    #[arg(long, env = "TXFLOW_CLASSIFIER_TOKEN_FILE")]
    pub classifier_token_file: Option<PathBuf>,

    /// CA certificates (PEM) to trust for an https:// service, e.g. a
    /// private CA; the system's are trusted too.
    #[arg(long, env = "TXFLOW_CLASSIFIER_CA")]
    pub classifier_ca: Option<PathBuf>,

    /// Also queue each prediction under this confidence (in (0, 1]) for a
    /// person (`txflow review`), in the same database transaction. Default:
    /// the threshold the model was registered with (`txflow models
    /// register --review-below`), else none.
    #[arg(long, env = "TXFLOW_REVIEW_BELOW")]
    pub review_below: Option<ReviewBelow>,
}

/// One of the classifiers txflow knows.
#[derive(Debug)]
pub enum AnyClassifier {
    /// A built-in model or a trained model file.
    InProcess(InProcess),
    Http(Box<HttpClassifier>),
}

/// The in-process model a name or location stands for: `reference`,
/// `merchant`, or a model file; `None` for anything else (a service's URL).
pub async fn in_process_model(value: &str) -> Result<Option<Arc<dyn Model>>> {
    Ok(match value {
        "reference" => Some(Arc::new(ReferenceModel)),
        "merchant" => Some(Arc::new(MerchantModel)),
        v if crate::learned::is_model_file(v) => Some(crate::learned::load_model(v).await?),
        _ => None,
    })
}

impl AnyClassifier {
    pub async fn from_args(args: &ClassifierArgs) -> Result<AnyClassifier> {
        if let Some(model) = in_process_model(&args.classifier).await? {
            return Ok(AnyClassifier::InProcess(InProcess(model)));
        }
        if !args.classifier.starts_with("http://") && !args.classifier.starts_with("https://") {
            bail!(
                "--classifier {:?} is not a model: use reference, merchant, a model file \
                 (file:///path/model.txm, s3://bucket/model.txm, path.txm) or a service's \
                 http(s):// URL",
                args.classifier
            );
        }
        let mut config = ClientConfig::new(&args.classifier);
        config.batch_size = args.classifier_batch_size as usize;
        config.max_in_flight = args.classifier_concurrency as usize;
        config.request_timeout = args.classifier_timeout;
        config.max_outage = Some(args.classifier_max_outage);
        config.default_model_version = args.classifier_model_version.clone();
        config.token = args
            .classifier_token_file
            .as_deref()
            .map(txflow_http::auth::first_token)
            .transpose()?;
        config.ca_file = args.classifier_ca.clone();
        Ok(AnyClassifier::Http(Box::new(HttpClassifier::new(config)?)))
    }

    /// The review threshold of a run: [`review_threshold`] for the
    /// in-process model's version (a service's is known only once it
    /// answers).
    pub async fn review_below(
        &self,
        args: &ClassifierArgs,
        database: &dyn crate::store::Database,
    ) -> Result<Option<ReviewBelow>> {
        let version = match self {
            AnyClassifier::InProcess(m) => Some(m.0.version()),
            AnyClassifier::Http(_) => None,
        };
        review_threshold(args.review_below, database, version).await
    }

    /// For logs and summaries.
    pub fn describe(&self, args: &ClassifierArgs) -> String {
        match self {
            AnyClassifier::InProcess(m) => format!("in-process {}", m.0.version()),
            AnyClassifier::Http(_) => args.classifier.clone(),
        }
    }
}

impl Classifier for AnyClassifier {
    async fn classify(&self, transactions: &[Transaction]) -> Result<Vec<Outcome>, BoxError> {
        match self {
            AnyClassifier::InProcess(m) => m.classify(transactions).await,
            AnyClassifier::Http(h) => h.classify(transactions).await,
        }
    }

    fn ranked(&self, tx: &Transaction, n: usize) -> Option<Vec<Ranked>> {
        match self {
            AnyClassifier::InProcess(m) => m.ranked(tx, n),
            AnyClassifier::Http(h) => h.ranked(tx, n),
        }
    }

    fn label_set(&self, version: &str) -> Option<LabelSet> {
        match self {
            AnyClassifier::InProcess(m) => m.label_set(version),
            AnyClassifier::Http(h) => h.label_set(version),
        }
    }
}

/// The review threshold of a run: `--review-below`, else the one `version`
/// was registered with (`models register --review-below`), else none.
pub async fn review_threshold(
    flag: Option<ReviewBelow>,
    database: &dyn crate::store::Database,
    version: Option<&str>,
) -> Result<Option<ReviewBelow>> {
    let (None, Some(version)) = (flag, version) else {
        return Ok(flag);
    };
    let registered = database
        .review_below(version)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    Ok(registered.and_then(|v| ReviewBelow::new(v).ok()))
}

/// `250ms`, `30s`, `10m`, `1h 30m` (humantime's forms); a bare number is
/// seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration such as 500ms, 30s, 10m or 1h 30m: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_with_their_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("fast").is_err());
    }
}
