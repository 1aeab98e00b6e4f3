//! `txflow review serve`: the review page and its JSON API, over any
//! [`ReviewStore`].
//!
//! - `GET /`: the queue's first screen, least confident first, rendered
//!   here (a little plain JavaScript adds the keys: digits, arrows, Enter,
//!   `u` to undo). Every asset is in this binary: no CDN.
//! - `GET /api/queue?limit=N[&model=V][&category=C]`: the same items as
//!   JSON, with the progress.
//! - `POST /api/labels` `{"transaction_id", "category"[, "labeled_by"]}`:
//!   201; 422 for a category outside the model's set (or a malformed body);
//!   404 for an unknown transaction.
//! - `DELETE /api/labels/{id}`: takes a label back (the page's undo); 204,
//!   or 404 when there was none.
//!
//! With tokens, every route but `/health` needs one: `Authorization:
//! Bearer <token>`, or the `txflow_token` cookie the page's sign-in sets (a
//! browser sends no header when it opens a page).

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use txflow_core::{
    Category, Label, LabelError, LabelSource, QueueFilter, QueuedItem, ReviewStore, TransactionId,
};

use crate::auth::{self, Tokens};
use crate::html::escape;

/// The most items one queue request returns.
pub const MAX_LIMIT: i64 = 1_000;

/// Items on the page's first screen.
const SCREEN: i64 = 50;

/// The cookie the page's sign-in sets with the token.
const COOKIE: &str = "txflow_token";

/// What the review server is configured with.
#[derive(Clone)]
pub struct ReviewConfig {
    pub store: Arc<dyn ReviewStore>,
    /// Tokens required on every route but `/health`; `None`: open.
    pub tokens: Option<Tokens>,
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl std::fmt::Debug for ReviewConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReviewConfig")
            .field("tokens", &self.tokens)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// One queued item as JSON: what `GET /api/queue` and `txflow review list
/// --json` answer.
pub fn item_json(item: &QueuedItem) -> Value {
    json!({
        "transaction_id": item.transaction_id.to_string(),
        "description": item.description,
        "merchant": item.merchant,
        "amount": item.amount.to_string(),
        "timestamp": item.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "model_version": item.model_version,
        "category": item.category.as_str(),
        "confidence": item.confidence,
        "top": item.top.iter().map(|r| json!({
            "category": r.category.as_str(),
            "confidence": r.confidence,
        })).collect::<Vec<_>>(),
        "labels": item.labels,
        "queued_at": item.queued_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
}

/// The review server's routes.
pub fn router(config: ReviewConfig) -> Router {
    let tokens = config.tokens.clone();
    let mut app = Router::new()
        .route("/", get(page))
        .route("/api/queue", get(queue))
        .route("/api/labels", post(label))
        .route("/api/labels/{id}", delete(unlabel));
    if let Some(tokens) = tokens {
        app = app.route_layer(middleware::from_fn_with_state(tokens, require_token));
    }
    app.route("/health", get(|| async { "ok" }))
        .with_state(Arc::new(config))
}

/// Serves (HTTPS when configured) until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    config: ReviewConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tls = config.tls.clone();
    crate::server::serve_app(listener, tls, router(config), shutdown).await
}

/// The token of a request: its bearer header, else the page's cookie.
fn presented(headers: &HeaderMap) -> Option<Vec<u8>> {
    if let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| auth::bearer(v.as_bytes()))
    {
        return Some(token.to_vec());
    }
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    cookies.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == COOKIE).then(|| percent_decoded(value))
    })
}

/// The page stores the token with `encodeURIComponent`: `%XX` back to bytes.
fn percent_decoded(value: &str) -> Vec<u8> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

async fn require_token(State(tokens): State<Tokens>, request: Request, next: Next) -> Response {
    if presented(request.headers()).is_some_and(|t| tokens.accepts(&t)) {
        return next.run(request).await;
    }
    if request.uri().path() == "/" {
        return (StatusCode::UNAUTHORIZED, Html(SIGN_IN)).into_response();
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer realm=\"txflow review\"")],
        axum::Json(
            json!({"error": "a valid token is required: send Authorization: Bearer <token>"}),
        ),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct QueueParams {
    limit: Option<i64>,
    model: Option<String>,
    category: Option<String>,
}

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

fn store_failed(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "the review store failed");
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the database did not answer: {e}"),
    )
}

async fn queue(State(state): State<Arc<ReviewConfig>>, Query(p): Query<QueueParams>) -> Response {
    let limit = p.limit.unwrap_or(SCREEN);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("limit {limit} is not in 1..={MAX_LIMIT}"),
        );
    }
    let filter = QueueFilter {
        model_version: p.model,
        category: p.category,
        limit,
    };
    let (items, progress) =
        match futures::try_join!(state.store.queue(&filter), state.store.progress()) {
            Ok(found) => found,
            Err(e) => return store_failed(e),
        };
    axum::Json(json!({
        "items": items.iter().map(item_json).collect::<Vec<_>>(),
        "labeled": progress.labeled,
        "pending": progress.pending,
    }))
    .into_response()
}

#[derive(Debug, Deserialize)]
struct LabelBody {
    transaction_id: String,
    category: String,
    labeled_by: Option<String>,
}

async fn label(State(state): State<Arc<ReviewConfig>>, body: Bytes) -> Response {
    let body: LabelBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(e) => {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "the body is not {{\"transaction_id\": \"<uuid>\", \"category\": \"<name>\"}}: {e}"
                ),
            );
        }
    };
    let Some(id) = TransactionId::parse(&body.transaction_id) else {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("transaction_id {:?} is not a UUID", body.transaction_id),
        );
    };
    let category = match Category::new(&body.category) {
        Ok(c) => c,
        Err(e) => return problem(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    };
    let labeled_by = body
        .labeled_by
        .map(|s| s.trim().chars().take(100).collect::<String>())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "review page".to_owned());
    let label = Label {
        transaction_id: id,
        category,
        labeled_by,
        source: LabelSource::Review,
    };
    match state.store.label(&label).await {
        Ok(()) => (
            StatusCode::CREATED,
            axum::Json(json!({
                "transaction_id": label.transaction_id.to_string(),
                "category": label.category.as_str(),
                "labeled_by": label.labeled_by,
            })),
        )
            .into_response(),
        Err(e @ LabelError::UnknownTransaction(_)) => problem(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ LabelError::NotInLabelSet { .. }) => {
            problem(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
        }
        Err(LabelError::Store(e)) => store_failed(e),
    }
}

async fn unlabel(State(state): State<Arc<ReviewConfig>>, Path(id): Path<String>) -> Response {
    let Some(id) = TransactionId::parse(&id) else {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{id:?} is not a transaction id (a UUID)"),
        );
    };
    match state.store.unlabel(id).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => problem(
            StatusCode::NOT_FOUND,
            format!("transaction {id} has no label"),
        ),
        Err(e) => store_failed(e),
    }
}

async fn page(State(state): State<Arc<ReviewConfig>>) -> Response {
    let filter = QueueFilter {
        limit: SCREEN,
        ..QueueFilter::default()
    };
    match futures::try_join!(state.store.queue(&filter), state.store.progress()) {
        Ok((items, progress)) => {
            Html(render(&items, progress.labeled, progress.pending)).into_response()
        }
        Err(e) => store_failed(e),
    }
}

fn percent(confidence: Option<f64>) -> String {
    confidence.map_or_else(|| "?".to_owned(), |c| format!("{:.0}%", c * 100.0))
}

/// The page: the items as a list, each with its top categories as buttons
/// (keys 1-3) and every label of its model in a menu.
fn render(items: &[QueuedItem], labeled: i64, pending: i64) -> String {
    let mut rows = String::new();
    for (i, item) in items.iter().enumerate() {
        let id = item.transaction_id.to_string();
        let _ = write!(
            rows,
            "<li class=\"item{}\" data-id=\"{id}\" data-model=\"{}\">\
             <div class=\"tx\"><span class=\"desc\">{}</span> <span class=\"merchant\">{}</span>\
             <span class=\"amount\">{}</span> <time>{}</time>\
             <span class=\"model\">{} · {}</span></div><div class=\"choices\">",
            if i == 0 { " current" } else { "" },
            escape(&item.model_version),
            escape(&item.description),
            escape(item.merchant.as_deref().unwrap_or("")),
            item.amount,
            item.timestamp.format("%Y-%m-%d %H:%M"),
            escape(&item.model_version),
            percent(item.confidence),
        );
        for (k, r) in item.top.iter().enumerate() {
            let _ = write!(
                rows,
                "<button type=\"button\" class=\"choice{}\" data-category=\"{c}\">\
                 <kbd>{}</kbd> {c} <small>{}</small></button>",
                if k == 0 { " focus" } else { "" },
                k + 1,
                percent(Some(r.confidence)),
                c = escape(r.category.as_str()),
            );
        }
        if let Some(labels) = &item.labels {
            rows.push_str("<select class=\"other\" aria-label=\"another category\"><option value=\"\">other…</option>");
            for name in labels {
                let _ = write!(rows, "<option>{}</option>", escape(name));
            }
            rows.push_str("</select>");
        }
        rows.push_str("</div></li>");
    }
    // The items last: their text is the only part not ours.
    let empty = if items.is_empty() {
        "<p id=\"empty\">Nothing to review: the queue is empty.</p>"
    } else {
        ""
    };
    PAGE.replace("{{LABELED}}", &labeled.to_string())
        .replace("{{PENDING}}", &pending.to_string())
        .replace("{{EMPTY}}", empty)
        .replace("{{ITEMS}}", &rows)
}

const PAGE: &str = include_str!("review/page.html");
const SIGN_IN: &str = include_str!("review/sign-in.html");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_percent_decoded() {
        assert_eq!(percent_decoded("a%2Bb%3D%zz"), b"a+b=%zz");
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
