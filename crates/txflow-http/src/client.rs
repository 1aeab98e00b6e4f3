//! [`HttpClassifier`]: the core's classifier port over an HTTP service that
//! speaks the `POST /predict` contract (txflow's own or the original one).
//!
//! A batch is split into requests of `batch_size` items, up to
//! `max_in_flight` at once, over pooled keep-alive connections. What the
//! service does wrong is sorted into three kinds:
//! - *retriable* (connection error, timeout, 429, 5xx, an answer that is not
//!   a JSON list, and 401/403: txflow's credentials, not the records):
//!   retried with backoff, counted by the circuit breaker; while
//!   the circuit is open every call waits, so an outage pauses the pipeline
//!   and fails no record;
//! - *refused* (another 4xx): the request's records fail with that class;
//! - *bad items* in a good answer (a category outside the answering model's
//!   label set, confidence out of range, a duplicated or missing id): those
//!   records fail, the others go on.
//!
//! The label set of each model version that answers is known for the
//! built-in versions and the default one (the original service's 15), and
//! asked of the service's `/ready` once for any other version; a service
//! whose `/ready` names no labels for it has its answers checked as
//! category names only.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use serde_json::Value;
use txflow_core::resilience::{
    Admission, Backoff, CircuitBreaker, CircuitState, RetryDecision, jitter,
};
use txflow_core::{
    BoxError, Category, Classifier, ClassifyFailure, FailureClass, LabelSet, MerchantModel,
    Outcome, Prediction, ReferenceModel, Secret, Transaction, TransactionId,
};
use uuid::Uuid;

use crate::contract::{ErrorBody, PredictItem};

/// How to reach the service and how patient to be with it.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The service's base URL, e.g. `http://127.0.0.1:8000`; requests go to
    /// `<url>/predict`.
    pub url: String,
    /// Transactions per request.
    pub batch_size: usize,
    /// Requests in flight at once.
    pub max_in_flight: usize,
    pub connect_timeout: Duration,
    /// The whole request, answer included.
    pub request_timeout: Duration,
    pub backoff: Backoff,
    /// Failures in a row that open the circuit.
    pub breaker_threshold: u32,
    /// How long the circuit stays open before a probe.
    pub breaker_cool_down: Duration,
    /// Give up (the run fails, no record does) when the service has been
    /// unusable this long; `None` waits for ever, as a streaming consumer
    /// should.
    pub max_outage: Option<Duration>,
    /// The model version stored when an answer carries none (the original
    /// service's answers).
    pub default_model_version: String,
    /// Sent as `Authorization: Bearer <token>`.
    pub token: Option<Secret>,
    /// A PEM file of CA certificates to trust for an `https://` service
    /// (besides the system's), e.g. a private CA.
    pub ca_file: Option<PathBuf>,
}

impl ClientConfig {
    pub fn new(url: impl Into<String>) -> ClientConfig {
        ClientConfig {
            url: url.into(),
            batch_size: 1_000,
            max_in_flight: 4,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(30),
            backoff: Backoff::default(),
            breaker_threshold: 5,
            breaker_cool_down: Duration::from_secs(5),
            max_outage: Some(Duration::from_secs(600)),
            default_model_version: "external".to_owned(),
            token: None,
            ca_file: None,
        }
    }
}

/// Why the client could not classify at all.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid classifier URL {url:?}: {reason}; use http://host:port")]
    Url { url: String, reason: String },
    #[error("building the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("reading the classifier's CA file {}: {reason}; give a PEM file of CA certificates with --classifier-ca", .file.display())]
    Ca { file: PathBuf, reason: String },
    #[error(
        "the classification service at {url} has been unavailable for {waited:?} \
         (last error: {last_error}); no record was failed for it: fix the service and rerun"
    )]
    Unavailable {
        url: String,
        waited: Duration,
        last_error: String,
    },
}

/// Metric names, one place.
pub mod metric {
    use txflow_core::metric::Metric;

    pub const REQUESTS: &str = "txflow_classifier_requests_total";
    pub const LATENCY: &str = "txflow_classifier_request_duration_seconds";
    pub const RETRIES: &str = "txflow_classifier_retries_total";
    pub const CIRCUIT: &str = "txflow_classifier_circuit_state";
    pub const FAILED_ITEMS: &str = "txflow_classifier_failed_items_total";

    /// Every metric above.
    pub const ALL: &[Metric] = &[
        Metric::counter(
            REQUESTS,
            &["outcome"],
            "Requests to the classification service by outcome: answered, refused (4xx), retriable (5xx, timeout, refused connection)",
        ),
        Metric::histogram(
            LATENCY,
            &["outcome"],
            "Time of one request to the classification service, by outcome",
        ),
        Metric::counter(
            RETRIES,
            &[],
            "Requests sent again after a retriable failure",
        ),
        Metric::gauge(
            CIRCUIT,
            &[],
            "The classifier client's circuit: 0 closed, 1 open (calls paused), 2 half-open (probing)",
        ),
        Metric::counter(
            FAILED_ITEMS,
            &["class"],
            "Transactions the service did not classify, by failure class",
        ),
    ];
}

/// The classifier port over HTTP.
#[derive(Debug)]
pub struct HttpClassifier {
    client: reqwest::Client,
    endpoint: String,
    ready: String,
    config: ClientConfig,
    breaker: Mutex<CircuitBreaker>,
    /// The label set of each model version seen (`None`: the service
    /// named none, names are checked alone).
    labels: Mutex<HashMap<String, Option<LabelSet>>>,
}

impl HttpClassifier {
    pub fn new(config: ClientConfig) -> Result<HttpClassifier, Error> {
        let base = config.url.trim_end_matches('/');
        let parsed = reqwest::Url::parse(base).map_err(|e| Error::Url {
            url: config.url.clone(),
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::Url {
                url: config.url.clone(),
                reason: format!("the scheme is {:?}", parsed.scheme()),
            });
        }
        let mut builder = crate::tls::client_builder(&parsed)
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_max_idle_per_host(config.max_in_flight.max(1))
            .tcp_nodelay(true);
        if let Some(file) = &config.ca_file {
            let ca_error = |reason: String| Error::Ca {
                file: file.clone(),
                reason,
            };
            let pem = std::fs::read(file).map_err(|e| ca_error(e.to_string()))?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca_error(describe(&e)))?;
            if certs.is_empty() {
                return Err(ca_error("no certificate in the file".into()));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().map_err(Error::Client)?;
        let breaker = CircuitBreaker::new(config.breaker_threshold, config.breaker_cool_down);
        metrics::gauge!(metric::CIRCUIT).set(0.0);
        let reference = Some(ReferenceModel::labels().clone());
        let labels = HashMap::from([
            (ReferenceModel::VERSION.to_owned(), reference.clone()),
            (MerchantModel::VERSION.to_owned(), reference.clone()),
            (config.default_model_version.clone(), reference),
        ]);
        Ok(HttpClassifier {
            client,
            endpoint: format!("{base}/predict"),
            ready: format!("{base}/ready"),
            config,
            breaker: Mutex::new(breaker),
            labels: Mutex::new(labels),
        })
    }

    /// The circuit's state now.
    pub fn circuit_state(&self) -> CircuitState {
        self.with_breaker(|b| b.state())
    }

    fn with_breaker<T>(&self, f: impl FnOnce(&mut CircuitBreaker) -> T) -> T {
        // A panic while holding this lock cannot leave the breaker in a
        // state worse than any other; keep using it.
        let mut guard = self
            .breaker
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }

    fn circuit_changed(&self, from: Option<CircuitState>) {
        let now = self.circuit_state();
        if let Some(from) = from.filter(|f| *f != now) {
            let level = match now {
                CircuitState::Closed => 0.0,
                CircuitState::Open => 1.0,
                CircuitState::HalfOpen => 2.0,
            };
            metrics::gauge!(metric::CIRCUIT).set(level);
            match now {
                CircuitState::Open => tracing::warn!(
                    service = %self.endpoint,
                    from = from.as_str(),
                    cool_down = ?self.config.breaker_cool_down,
                    "classifier circuit open: calls paused"
                ),
                _ => tracing::info!(
                    service = %self.endpoint,
                    from = from.as_str(),
                    to = now.as_str(),
                    "classifier circuit state changed"
                ),
            }
        }
    }

    /// One request's worth of transactions, retried until it is answered,
    /// refused, or the outage lasts longer than allowed.
    async fn call(&self, txs: &[Transaction]) -> Result<Vec<Outcome>, Error> {
        let items: Vec<PredictItem<'_>> = txs.iter().map(PredictItem::from_transaction).collect();
        let body = bytes_of(&items);
        let mut attempt = 0u32;
        let mut first_failure: Option<Instant> = None;
        let mut last_error = String::new();
        loop {
            // Wait while the circuit is open (or another call is probing).
            loop {
                let admission = self.with_breaker(|b| b.admit(Instant::now()));
                match admission {
                    Admission::Proceed => break,
                    Admission::Wait(d) => {
                        self.check_outage(first_failure, d, &last_error)?;
                        tokio::time::sleep(d).await;
                    }
                }
            }
            attempt += 1;
            let started = Instant::now();
            let answer = self.send(body.clone()).await;
            let outcome = match &answer {
                Attempt::Answered(_) => "answered",
                Attempt::Refused(_) => "refused",
                Attempt::Retriable { .. } => "retriable",
            };
            metrics::histogram!(metric::LATENCY, "outcome" => outcome)
                .record(started.elapsed().as_secs_f64());
            metrics::counter!(metric::REQUESTS, "outcome" => outcome).increment(1);
            match answer {
                Attempt::Answered(answers) => {
                    let changed = self.with_breaker(|b| b.on_success());
                    self.circuit_changed(changed);
                    self.learn_labels(&answers).await;
                    return Ok(self.match_answers(txs, answers));
                }
                Attempt::Refused(message) => {
                    // The service is up and says no: not a reason to open the circuit.
                    let changed = self.with_breaker(|b| b.on_success());
                    self.circuit_changed(changed);
                    tracing::warn!(service = %self.endpoint, items = txs.len(), error = %message, "classification refused");
                    let failure = ClassifyFailure {
                        class: FailureClass::Refused,
                        message,
                    };
                    metrics::counter!(metric::FAILED_ITEMS, "class" => "refused")
                        .increment(txs.len() as u64);
                    return Ok(txs.iter().map(|_| Err(failure.clone())).collect());
                }
                Attempt::Retriable { error, retry_after } => {
                    let now = Instant::now();
                    first_failure.get_or_insert(now);
                    last_error = error;
                    let changed = self.with_breaker(|b| b.on_failure(now));
                    self.circuit_changed(changed);
                    match self
                        .config
                        .backoff
                        .after_failure(attempt, jitter(), retry_after)
                    {
                        RetryDecision::RetryAfter(delay) => {
                            tracing::debug!(service = %self.endpoint, attempt, ?delay, error = %last_error, "retrying");
                            metrics::counter!(metric::RETRIES).increment(1);
                            self.check_outage(first_failure, delay, &last_error)?;
                            tokio::time::sleep(delay).await;
                        }
                        RetryDecision::GiveUp => {
                            tracing::warn!(service = %self.endpoint, attempts = attempt, error = %last_error,
                                "classification attempts exhausted; waiting for the service");
                            let changed = self.with_breaker(|b| b.trip(Instant::now()));
                            self.circuit_changed(changed);
                            attempt = 0;
                        }
                    }
                }
            }
        }
    }

    fn check_outage(
        &self,
        first_failure: Option<Instant>,
        next_wait: Duration,
        last_error: &str,
    ) -> Result<(), Error> {
        let (Some(max), Some(first)) = (self.config.max_outage, first_failure) else {
            return Ok(());
        };
        let waited = first.elapsed();
        if waited + next_wait > max {
            return Err(Error::Unavailable {
                url: self.endpoint.clone(),
                waited,
                last_error: last_error.to_owned(),
            });
        }
        Ok(())
    }

    async fn send(&self, body: bytes::Bytes) -> Attempt {
        let mut request = self
            .client
            .post(&self.endpoint)
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(token) = &self.config.token {
            request = request.bearer_auth(token.expose());
        }
        // The service continues the caller's trace (traces on only).
        if let Some(traceparent) = txflow_trace::traceparent(&tracing::Span::current()) {
            request = request.header(txflow_trace::HEADER, traceparent);
        }
        let response = request.send().await;
        let response = match response {
            Ok(r) => r,
            Err(e) => return Attempt::retriable(describe(&e)),
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = match response.bytes().await {
            Ok(b) => b,
            Err(e) => return Attempt::retriable(format!("reading the answer: {}", describe(&e))),
        };
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            // Our credentials, not the records: wait (the token may be
            // rotated in) rather than fail every record.
            return Attempt::retriable(format!(
                "HTTP {status}: the service refused txflow's credentials; check --classifier-token-file"
            ));
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Attempt::Retriable {
                error: format!("HTTP {status}: {}", excerpt(&bytes)),
                retry_after,
            };
        }
        if !status.is_success() {
            let detail = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|b| {
                    let first = b.problems.first().map(|p| {
                        format!(
                            "; first problem: item {:?}, field {:?}: {}",
                            p.index, p.field, p.message
                        )
                    });
                    format!("{}{}", b.error, first.unwrap_or_default())
                })
                .unwrap_or_else(|_| excerpt(&bytes));
            return Attempt::Refused(format!("HTTP {status}: {detail}"));
        }
        match parse_answers(&bytes) {
            Some(answers) => Attempt::Answered(answers),
            None => Attempt::retriable(format!(
                "the answer is not a JSON list of predictions: {}",
                excerpt(&bytes)
            )),
        }
    }

    /// Asks `/ready` for the label set of each model version in `answers`
    /// not seen before. Once per version: a service that cannot say has its
    /// answers checked as names alone.
    async fn learn_labels(&self, answers: &[Value]) {
        let unknown: Vec<String> = {
            let known = self.labels.lock().unwrap_or_else(|p| p.into_inner());
            let mut unknown: Vec<String> = answers
                .iter()
                .filter_map(|a| a.get("model_version").and_then(Value::as_str))
                .filter(|v| !known.contains_key(*v))
                .map(str::to_owned)
                .collect();
            unknown.sort_unstable();
            unknown.dedup();
            unknown
        };
        for version in unknown {
            let set = match self.client.get(&self.ready).send().await {
                Ok(response) => response.json::<Value>().await.ok().and_then(|ready| {
                    let names = ready.get("labels")?.as_array()?;
                    if ready.get("model_version")?.as_str()? != version {
                        return None;
                    }
                    LabelSet::new(names.iter().filter_map(Value::as_str)).ok()
                }),
                Err(_) => None,
            };
            if set.is_none() {
                tracing::warn!(service = %self.ready, model_version = %version,
                    "the service names no label set for this model version; its categories are checked as names only");
            }
            self.labels
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(version, set);
        }
    }

    /// Pairs each transaction with its answer, failing only the items whose
    /// answer is missing, duplicated or unusable.
    fn match_answers(&self, txs: &[Transaction], answers: Vec<Value>) -> Vec<Outcome> {
        let mut by_id: HashMap<Uuid, Vec<Value>> = HashMap::with_capacity(answers.len());
        let mut strays = 0usize;
        for answer in answers {
            match answer
                .get("transaction_id")
                .and_then(Value::as_str)
                .and_then(|s| Uuid::try_parse(s).ok())
            {
                Some(id) => by_id.entry(id).or_default().push(answer),
                None => strays += 1,
            }
        }
        let mut wanted: HashMap<Uuid, usize> = HashMap::with_capacity(txs.len());
        for tx in txs {
            *wanted.entry(*tx.id().as_uuid()).or_default() += 1;
        }
        let unknown = by_id.keys().filter(|id| !wanted.contains_key(id)).count();
        if strays + unknown > 0 {
            tracing::warn!(service = %self.endpoint, without_id = strays, unknown_ids = unknown,
                "the classifier answered items that match no transaction; ignored");
        }
        let mut outcomes = Vec::with_capacity(txs.len());
        for tx in txs {
            let id = *tx.id().as_uuid();
            let outcome = match by_id.get_mut(&id) {
                Some(list) if list.len() > wanted[&id] => Err(ClassifyFailure {
                    class: FailureClass::InvalidAnswer,
                    message: format!(
                        "the service answered {} items for transaction {id}",
                        list.len()
                    ),
                }),
                Some(list) if !list.is_empty() => {
                    let answer = list.remove(0);
                    self.prediction(tx.id(), &answer)
                }
                _ => Err(ClassifyFailure {
                    class: FailureClass::MissingAnswer,
                    message: format!("the service's answer has no item for transaction {id}"),
                }),
            };
            if let Err(f) = &outcome {
                metrics::counter!(metric::FAILED_ITEMS, "class" => f.class.as_str()).increment(1);
            }
            outcomes.push(outcome);
        }
        outcomes
    }

    fn prediction(&self, id: TransactionId, answer: &Value) -> Outcome {
        let invalid = |message: String| {
            Err(ClassifyFailure {
                class: FailureClass::InvalidAnswer,
                message,
            })
        };
        let Some(name) = answer.get("category").and_then(Value::as_str) else {
            return invalid("the answer has no category".into());
        };
        let confidence = match answer.get("confidence_score") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_f64() {
                Some(c) if (0.0..=1.0).contains(&c) => Some(c),
                _ => return invalid(format!("confidence_score {v} is not a number in [0, 1]")),
            },
        };
        let model_version = match answer.get("model_version") {
            None | Some(Value::Null) => self.config.default_model_version.clone(),
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(v) => return invalid(format!("model_version {v} is not a non-empty string")),
        };
        let category = {
            let labels = self.labels.lock().unwrap_or_else(|p| p.into_inner());
            match labels.get(&model_version) {
                Some(Some(set)) => match set.find(name) {
                    Some(c) => c.clone(),
                    None => {
                        return invalid(format!(
                            "unknown category {name:?}: not a label of model {model_version}"
                        ));
                    }
                },
                _ => match Category::new(name) {
                    Ok(c) => c,
                    Err(e) => return invalid(format!("unknown category: {e}")),
                },
            }
        };
        Ok(Prediction {
            transaction_id: id,
            category,
            confidence,
            model_version,
        })
    }
}

impl Classifier for HttpClassifier {
    async fn classify(&self, transactions: &[Transaction]) -> Result<Vec<Outcome>, BoxError> {
        let size = self.config.batch_size.max(1);
        let calls: Vec<_> = transactions
            .chunks(size)
            .map(|chunk| self.call(chunk))
            .collect();
        let results: Vec<Result<Vec<Outcome>, Error>> = futures::stream::iter(calls)
            .buffered(self.config.max_in_flight.max(1))
            .collect()
            .await;
        let mut outcomes = Vec::with_capacity(transactions.len());
        for result in results {
            outcomes.extend(result?);
        }
        Ok(outcomes)
    }

    fn label_set(&self, version: &str) -> Option<LabelSet> {
        let labels = self.labels.lock().unwrap_or_else(|p| p.into_inner());
        labels.get(version).cloned().flatten()
    }
}

enum Attempt {
    Answered(Vec<Value>),
    Refused(String),
    Retriable {
        error: String,
        retry_after: Option<Duration>,
    },
}

impl Attempt {
    fn retriable(error: String) -> Attempt {
        Attempt::Retriable {
            error,
            retry_after: None,
        }
    }
}

fn bytes_of(items: &[PredictItem<'_>]) -> bytes::Bytes {
    // Serialising plain structs of strings and numbers cannot fail.
    serde_json::to_vec(items).unwrap_or_default().into()
}

/// The answer as a list of items, each checked on its own later.
fn parse_answers(bytes: &[u8]) -> Option<Vec<Value>> {
    match serde_json::from_slice::<Value>(bytes).ok()? {
        Value::Array(items) => Some(items),
        _ => None,
    }
}

pub(crate) fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut text = format!("{kind}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]);
    text.trim().to_owned()
}
