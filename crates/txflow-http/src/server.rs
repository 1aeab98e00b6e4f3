//! `txflow serve`: the classification service.
//!
//! It takes an already-bound listener and a shutdown signal, so tests bind
//! port 0 and run many servers side by side; on the signal it stops
//! accepting and finishes the requests in flight.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use tokio::net::TcpListener;
use txflow_core::{Model, ReferenceModel};
use utoipa::OpenApi;

use crate::auth::{self, Tokens};
use crate::contract::{ErrorBody, PredictAnswer, PredictItem, Problem, shape_problems};
use crate::tls::TlsListener;

/// The model the service runs, with the name `/ready` gives it
/// (`reference`, `merchant`, or where a trained model's file was read).
#[derive(Debug, Clone)]
pub struct ServedModel {
    pub name: String,
    pub model: Arc<dyn Model>,
}

impl ServedModel {
    pub fn new(name: impl Into<String>, model: Arc<dyn Model>) -> ServedModel {
        ServedModel {
            name: name.into(),
            model,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn version(&self) -> &str {
        self.model.version()
    }
}

/// What the service is configured with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub model: ServedModel,
    /// More items than this in one request get 413.
    pub max_batch: usize,
    /// Bodies larger than this are refused (413) before they are parsed.
    pub max_body_bytes: usize,
    /// Bearer tokens required on `/predict` (and every route if
    /// [`Auth::all_routes`]); `None`: open.
    pub auth: Option<Auth>,
    /// Serve HTTPS with this certificate; `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Who may call the service.
#[derive(Debug, Clone)]
pub struct Auth {
    pub tokens: Tokens,
    /// Also `/health`, `/ready`, `/metrics` and `/openapi.json` (open by
    /// default, for probes and scrapers).
    pub all_routes: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            model: ServedModel::new("reference", Arc::new(ReferenceModel)),
            max_batch: 10_000,
            max_body_bytes: 16 * 1024 * 1024,
            auth: None,
            tls: None,
        }
    }
}

struct AppState {
    config: ServerConfig,
    metrics: PrometheusHandle,
    /// The core's rules, as for CSV rows and stream events.
    validator: txflow_core::Validator,
}

/// The process's Prometheus recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Every histogram gets buckets (never a summary, which cannot
            // be aggregated across members), chosen by the unit its name
            // ends with; see `txflow_core::metric`.
            let builder = PrometheusBuilder::new()
                .set_buckets(txflow_core::metric::SECONDS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Suffix("_size".into()),
                        txflow_core::metric::SIZES,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Suffix("_bytes".into()),
                        txflow_core::metric::BYTES,
                    )
                });
            let recorder = match builder {
                Ok(builder) => builder.build_recorder(),
                // The bucket lists are constant and not empty.
                Err(_) => PrometheusBuilder::new().build_recorder(),
            };
            let handle = recorder.handle();
            // Another recorder may be installed already (an embedding
            // program's); ours then only serves its own, empty, registry.
            let _ = metrics::set_global_recorder(recorder);
            start_upkeep(handle.clone());
            handle
        })
        .clone()
}

/// How often the recorder's histograms are drained into their buckets.
pub const METRICS_UPKEEP: std::time::Duration = std::time::Duration::from_secs(5);

/// The name of the thread that drains them.
pub const METRICS_UPKEEP_THREAD: &str = "metrics-upkeep";

/// Drains the recorder's histograms into their buckets every
/// [`METRICS_UPKEEP`]. Without it, each recorded sample is kept until the
/// next scrape renders it: a member nobody scrapes grew about 12 bytes per
/// event for as long as it ran (heaptrack, docs/RELIABILITY.md).
fn start_upkeep(handle: PrometheusHandle) {
    let started = std::thread::Builder::new()
        .name(METRICS_UPKEEP_THREAD.into())
        .spawn(move || {
            loop {
                std::thread::sleep(METRICS_UPKEEP);
                handle.run_upkeep();
            }
        });
    if let Err(e) = started {
        tracing::warn!(error = %e, "cannot start the metrics upkeep thread; histograms are drained only when scraped");
    }
}

/// Metric names, one place.
pub mod metric {
    use txflow_core::metric::Metric;

    pub const REQUESTS: &str = "txflow_http_requests_total";
    pub const LATENCY: &str = "txflow_http_request_duration_seconds";
    pub const BATCH_SIZE: &str = "txflow_predict_batch_size";
    pub const PREDICTIONS: &str = "txflow_predictions_total";
    pub const TLS_HANDSHAKE_FAILURES: &str = "txflow_http_tls_handshake_failures_total";

    /// Every metric above.
    pub const ALL: &[Metric] = &[
        Metric::counter(
            REQUESTS,
            &["route", "status"],
            "HTTP requests answered by the service, by route and status code",
        ),
        Metric::histogram(LATENCY, &["route"], "Time to answer one request, by route"),
        Metric::histogram(BATCH_SIZE, &[], "Transactions per /predict request"),
        Metric::counter(
            PREDICTIONS,
            &["category"],
            "Transactions classified by the service, by category",
        ),
        Metric::counter(
            TLS_HANDSHAKE_FAILURES,
            &[],
            "TLS handshakes that failed (wrong certificate, plain HTTP to the TLS port)",
        ),
    ];
}

/// The service's routes.
pub fn router(config: ServerConfig) -> Router {
    let limit = config.max_body_bytes;
    let auth = config.auth.clone();
    let state = Arc::new(AppState {
        config,
        metrics: metrics_handle(),
        validator: crate::contract::validator(),
    });
    let mut guarded = Router::new().route("/predict", post(predict));
    let mut open = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi));
    if let Some(auth) = auth {
        let check = middleware::from_fn_with_state(auth.tokens, require_token);
        if auth.all_routes {
            open = open.route_layer(check.clone());
        }
        guarded = guarded.route_layer(check);
    }
    guarded
        .merge(open)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// 401 unless the request carries `Authorization: Bearer <a valid token>`.
async fn require_token(State(tokens): State<Tokens>, request: Request, next: Next) -> Response {
    let valid = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| auth::bearer(value.as_bytes()))
        .is_some_and(|token| tokens.accepts(token));
    if valid {
        return next.run(request).await;
    }
    let route = request.uri().path().to_owned();
    metrics::counter!(metric::REQUESTS, "route" => route, "status" => "401").increment(1);
    let mut response = json(
        StatusCode::UNAUTHORIZED,
        &ErrorBody {
            error: "a valid bearer token is required: send Authorization: Bearer <token>"
                .to_owned(),
            problems: Vec::new(),
        },
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"txflow\""),
    );
    response
}

/// What a worker's `/health` checks: each dependency's name and whether it
/// is up now.
pub type HealthChecks = Arc<dyn Fn() -> Vec<(&'static str, bool)> + Send + Sync>;

/// `/health` and `/metrics` alone: what a worker (`txflow consume`) serves
/// for its operators. `/health` answers 200 with every check `up`, or 503
/// naming what is `down` (`{"status": "degraded", "checks": {"database": "down"}}`).
pub fn ops_router(checks: HealthChecks) -> Router {
    let handle = metrics_handle();
    let health = move || {
        let checks = checks();
        let up = checks.iter().all(|(_, up)| *up);
        let detail: serde_json::Map<String, serde_json::Value> = checks
            .into_iter()
            .map(|(name, up)| (name.to_owned(), (if up { "up" } else { "down" }).into()))
            .collect();
        let (status, word) = if up {
            (StatusCode::OK, "ok")
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, "degraded")
        };
        async move {
            json(
                status,
                &serde_json::json!({ "status": word, "checks": detail }),
            )
        }
    };
    Router::new().route("/health", get(health)).route(
        "/metrics",
        get(move || {
            let body = handle.render();
            async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body) }
        }),
    )
}

/// Serves any router (e.g. [`ops_router`]) until the process ends.
pub async fn serve_router(listener: TcpListener, router: Router) -> std::io::Result<()> {
    axum::serve(listener, router).await
}

/// Serves (HTTPS when the configuration has TLS) until `shutdown`
/// resolves, then finishes the requests in flight.
pub async fn serve(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tls = config.tls.clone();
    serve_app(listener, tls, router(config), shutdown).await
}

/// Serves `app` (over TLS with `tls`) until `shutdown` resolves, then
/// finishes the requests in flight: what every txflow server does.
pub(crate) async fn serve_app(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match tls {
        Some(tls) => {
            axum::serve(TlsListener::new(listener, tls), app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}

/// The OpenAPI document, generated from the handlers and types below.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "txflow classification service",
        description = "Classifies bank transactions into spending categories."
    ),
    paths(predict, health, ready, metrics_text),
    components(schemas(PredictAnswer, Problem, ErrorBody))
)]
pub struct ApiDoc;

/// Classify a list of transactions.
#[utoipa::path(
    post,
    path = "/predict",
    request_body(content = Vec<PredictItem>, description = "The transactions, at most the configured maximum"),
    responses(
        (status = 200, description = "One answer per transaction, in request order", body = Vec<PredictAnswer>),
        (status = 413, description = "Too many items, or a body over the size limit", body = ErrorBody),
        (status = 422, description = "A malformed request: every problem, by item and field", body = ErrorBody),
    )
)]
async fn predict(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let started = Instant::now();
    // A caller's trace context makes this request part of its trace.
    let parent = headers
        .get(txflow_trace::HEADER)
        .map(axum::http::HeaderValue::as_bytes);
    let span = txflow_trace::span("txflow.predict", "server", parent);
    let response = span.in_scope(|| classify(&state.config, &state.validator, &body));
    let status = response.status();
    metrics::counter!(metric::REQUESTS, "route" => "/predict", "status" => status.as_str().to_owned())
        .increment(1);
    metrics::histogram!(metric::LATENCY, "route" => "/predict")
        .record(started.elapsed().as_secs_f64());
    response
}

fn classify(config: &ServerConfig, validator: &txflow_core::Validator, body: &[u8]) -> Response {
    let items: Vec<PredictItem<'_>> = match serde_json::from_slice(body) {
        Ok(items) => items,
        Err(_) => return problems(shape_problems(body)),
    };
    if items.len() > config.max_batch {
        let error = format!(
            "{} transactions in one request; the maximum is {} (split the batch)",
            items.len(),
            config.max_batch
        );
        return json(
            StatusCode::PAYLOAD_TOO_LARGE,
            &ErrorBody {
                error,
                problems: Vec::new(),
            },
        );
    }
    metrics::histogram!(metric::BATCH_SIZE).record(items.len() as f64);
    let mut all_problems = Vec::new();
    let mut transactions = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        match item.parse(index, validator) {
            Ok(tx) => transactions.push(tx),
            Err(p) => all_problems.push(p),
        }
    }
    if !all_problems.is_empty() {
        return problems(all_problems);
    }
    let model = &*config.model.model;
    let labels = model.labels();
    let mut per_category = vec![0u64; labels.len()];
    let predictions: Vec<_> = transactions.iter().map(|tx| model.predict(tx)).collect();
    let answers: Vec<Answer> = predictions
        .iter()
        .map(|p| {
            if let Some(i) = labels.index_of(p.category.as_str()) {
                per_category[i] += 1;
            }
            Answer {
                transaction_id: p.transaction_id.as_uuid().hyphenated(),
                category: p.category.as_str(),
                confidence_score: p.confidence,
                model_version: model.version(),
            }
        })
        .collect();
    for (category, n) in labels.iter().zip(per_category) {
        if n > 0 {
            metrics::counter!(metric::PREDICTIONS, "category" => category.as_str().to_owned())
                .increment(n);
        }
    }
    json(StatusCode::OK, &answers)
}

/// A [`PredictAnswer`] as written, without allocating per item.
#[derive(Serialize)]
struct Answer<'a> {
    transaction_id: uuid::fmt::Hyphenated,
    category: &'a str,
    confidence_score: Option<f64>,
    model_version: &'a str,
}

fn problems(problems: Vec<Problem>) -> Response {
    json(
        StatusCode::UNPROCESSABLE_ENTITY,
        &ErrorBody {
            error: format!("{} problem(s) in the request", problems.len()),
            problems,
        },
    )
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The process is alive.
#[utoipa::path(get, path = "/health", responses((status = 200, description = "Alive")))]
async fn health() -> Response {
    json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
}

/// The model is loaded and the service answers predictions.
#[utoipa::path(get, path = "/ready", responses((status = 200, description = "Ready, with the model and its version")))]
async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let model = &state.config.model;
    json(
        StatusCode::OK,
        &serde_json::json!({
            "status": "ready",
            "model": model.name(),
            "model_version": model.version(),
            "labels": model.model.labels().names(),
        }),
    )
}

/// Prometheus metrics: requests by status, latency, batch sizes,
/// predictions by category.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn openapi() -> Response {
    json(StatusCode::OK, &ApiDoc::openapi())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// The process's threads by name.
    fn thread_names() -> Vec<String> {
        std::fs::read_dir("/proc/self/task")
            .expect("the process's threads")
            .filter_map(|task| {
                let comm = task.ok()?.path().join("comm");
                Some(std::fs::read_to_string(comm).ok()?.trim().to_owned())
            })
            .collect()
    }

    #[test]
    fn installing_the_recorder_starts_the_thread_that_drains_histograms() {
        let _handle = super::metrics_handle();
        // A new thread names itself once it runs: until then it carries
        // its parent's name.
        let mut names = thread_names();
        for _ in 0..250 {
            if names.iter().any(|n| n == super::METRICS_UPKEEP_THREAD) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            names = thread_names();
        }
        panic!(
            "no {} thread after 5 s: {names:?}",
            super::METRICS_UPKEEP_THREAD
        );
    }
}
