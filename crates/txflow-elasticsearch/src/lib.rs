//! The search sink connector: predictions indexed through the `_bulk` API of
//! Elasticsearch or OpenSearch, one document per transaction.
//!
//! Idempotent: the document id is the transaction id and every action is a
//! plain `index` (no external versions), so a replay overwrites the same
//! document. On assignment the connector creates the index with explicit
//! mappings when it does not exist (keyword category, text description,
//! scaled amount, date timestamps). The sink member resumes at its consumer
//! group's committed offsets.
//!
//! Answers, per request and per item:
//! - 2xx: written;
//! - 429, 5xx, 401/403, a network failure, or any item with 429 or 5xx: the
//!   store is unavailable and the whole batch is sent again later (ids make
//!   that harmless); nothing is dead-lettered;
//! - an item refused for its content (400 `mapper_parsing_exception`, …) or
//!   a version conflict (409, which plain `index` actions never cause unless
//!   someone else versions the index): that record alone is dead-lettered,
//!   never silently dropped;
//! - any other answer to the request stops the member with the store's words.
//!
//! No Elasticsearch or OpenSearch server can run on the machines this was
//! written on: it is tested against a double that implements the documented
//! request and response shapes, not against a real cluster.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};
use txflow_core::connector::BoxFuture;
use txflow_core::{BoxError, Connector, ConnectorError, Refused, Resume, SinkRecord};

/// The index's mappings.
pub fn mappings() -> Value {
    let keyword = json!({"type": "keyword"});
    let date = json!({"type": "date"});
    json!({
        "mappings": {
            "dynamic": "strict",
            "properties": {
                "transaction_id": keyword,
                "source_id": keyword,
                "description": {"type": "text"},
                "amount": {"type": "scaled_float", "scaling_factor": 100},
                "timestamp": date,
                "merchant": keyword,
                "operation_type": keyword,
                "side": keyword,
                "category": keyword,
                "confidence": {"type": "float"},
                "model_version": keyword,
                "predicted_at": date,
                "run_id": keyword,
                "processing_type": keyword,
                "source": keyword,
                "kafka_partition": {"type": "integer"},
                "kafka_offset": {"type": "long"}
            }
        }
    })
}

/// The document of one prediction.
pub fn document(r: &SinkRecord) -> Value {
    let (tx, p, l) = (&r.event.transaction, &r.event.prediction, &r.event.lineage);
    json!({
        "transaction_id": tx.id().to_string(),
        "source_id": tx.source_id(),
        "description": tx.description(),
        "amount": tx.amount().to_string(),
        "timestamp": tx.timestamp().to_rfc3339(),
        "merchant": tx.merchant(),
        "operation_type": tx.operation_type(),
        "side": tx.side().as_str(),
        "category": p.category.as_str(),
        "confidence": p.confidence,
        "model_version": p.model_version,
        "predicted_at": r.event.predicted_at.to_rfc3339(),
        "run_id": l.run_id.as_str(),
        "processing_type": l.processing_type.as_str(),
        "source": &*l.source,
        "kafka_partition": r.partition,
        "kafka_offset": r.offset,
    })
}

/// Why an `elasticsearch+http(s)://` URL cannot be used.
#[derive(Debug)]
pub struct InvalidUrl(String);

impl std::fmt::Display for InvalidUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidUrl {}

/// Indexes predictions into one index.
#[derive(Debug)]
pub struct ElasticsearchConnector {
    client: reqwest::Client,
    /// The cluster's base URL (credentials in it are sent as basic auth).
    base: url::Url,
    index: String,
}

impl ElasticsearchConnector {
    /// `elasticsearch+http://host:9200/INDEX` (or `+https`, with
    /// `user:password@` for basic auth).
    pub fn new(url: &str) -> Result<ElasticsearchConnector, InvalidUrl> {
        let plain = url.strip_prefix("elasticsearch+").ok_or_else(|| {
            InvalidUrl(format!(
                "{url:?} does not start with elasticsearch+http(s)://"
            ))
        })?;
        let mut base = url::Url::parse(plain).map_err(|e| InvalidUrl(format!("not a URL: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(InvalidUrl(
                "use elasticsearch+http:// or elasticsearch+https://".into(),
            ));
        }
        let index = base.path().trim_matches('/').to_owned();
        let valid = !index.is_empty()
            && !index.contains('/')
            && !index.starts_with(['_', '-', '+'])
            && index == index.to_lowercase();
        if !valid {
            return Err(InvalidUrl(format!(
                "{:?} is not an index name: give one lowercase name as the path, e.g. elasticsearch+http://host:9200/predictions",
                index
            )));
        }
        base.set_path("/");
        default_tls_provider();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| InvalidUrl(format!("an HTTP client: {e}")))?;
        Ok(ElasticsearchConnector {
            client,
            base,
            index,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut url = self.base.clone();
        let (user, password) = (url.username().to_owned(), url.password().map(str::to_owned));
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.set_path(path);
        let request = self.client.request(method, url);
        if user.is_empty() {
            request
        } else {
            request.basic_auth(user, password)
        }
    }

    /// The cluster without credentials, and the index.
    fn shown(&self) -> String {
        let mut shown = self.base.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        format!("{shown}{}", self.index)
    }

    fn error(&self, said: impl std::fmt::Display) -> BoxError {
        format!("{} answered {said}", self.shown()).into()
    }

    /// Creates the index with its mappings unless it exists.
    async fn ensure_index(&self) -> Result<(), ConnectorError> {
        let response = self
            .request(reqwest::Method::PUT, &format!("/{}", self.index))
            .json(&mappings())
            .send()
            .await
            .map_err(|e| ConnectorError::Unavailable(self.error(e)))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let exists = body["error"]["type"] == "resource_already_exists_exception";
        if status.is_success() || exists {
            return Ok(());
        }
        Err(self.classify_request(status, &body))
    }

    fn classify_request(&self, status: reqwest::StatusCode, body: &Value) -> ConnectorError {
        let said = format!("{status}: {body}");
        match status.as_u16() {
            401 | 403 | 408 | 429 => ConnectorError::Unavailable(self.error(said)),
            s if s >= 500 => ConnectorError::Unavailable(self.error(said)),
            _ => ConnectorError::Fatal(self.error(said)),
        }
    }

    async fn bulk(&self, records: &[SinkRecord]) -> Result<Vec<Refused>, ConnectorError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let mut body = String::with_capacity(records.len() * 600);
        for r in records {
            let action = json!({"index": {"_index": self.index, "_id": r.event.transaction.id().to_string()}});
            let _ = writeln!(body, "{action}");
            let _ = writeln!(body, "{}", document(r));
        }
        let response = self
            .request(reqwest::Method::POST, "/_bulk")
            .header("Content-Type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .map_err(|e| ConnectorError::Unavailable(self.error(e)))?;
        let status = response.status();
        let answer: Value = response.json().await.map_err(|e| {
            ConnectorError::Unavailable(self.error(format!("{status}, an unreadable body: {e}")))
        })?;
        if !status.is_success() {
            return Err(self.classify_request(status, &answer));
        }
        if answer["errors"] != Value::Bool(true) {
            return Ok(Vec::new());
        }
        let items = answer["items"].as_array().cloned().unwrap_or_default();
        if items.len() != records.len() {
            return Err(ConnectorError::Fatal(self.error(format!(
                "{} items for {} actions",
                items.len(),
                records.len()
            ))));
        }
        let mut refused = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let result = item
                .as_object()
                .and_then(|o| o.values().next())
                .cloned()
                .unwrap_or(Value::Null);
            let status = result["status"].as_u64().unwrap_or(0);
            if (200..300).contains(&status) {
                continue;
            }
            if status == 429 || status >= 500 || status == 0 {
                // Sent again whole: the ids make the written ones harmless.
                return Err(ConnectorError::Unavailable(
                    self.error(format!("item {index}: {status} {}", result["error"])),
                ));
            }
            let kind = result["error"]["type"].as_str().unwrap_or("refused");
            let reason = result["error"]["reason"].as_str().unwrap_or("");
            refused.push(Refused {
                index,
                rule: kind.to_owned(),
                message: format!("{status} {kind}: {reason}"),
            });
        }
        Ok(refused)
    }
}

impl Connector for ElasticsearchConnector {
    fn kind(&self) -> &'static str {
        "elasticsearch"
    }

    fn resume<'a>(
        &'a self,
        _topic: &'a str,
        _assigned: &'a [i32],
    ) -> BoxFuture<'a, Result<Resume, ConnectorError>> {
        Box::pin(async move {
            self.ensure_index().await?;
            Ok(Resume::Committed)
        })
    }

    fn write<'a>(
        &'a self,
        _topic: &'a str,
        _partition: i32,
        records: &'a [SinkRecord],
    ) -> BoxFuture<'a, Result<Vec<Refused>, ConnectorError>> {
        Box::pin(self.bulk(records))
    }

    fn describe(&self) -> String {
        format!("Elasticsearch index {}", self.shown())
    }
}

/// rustls's process-wide provider, which reqwest uses: *ring*, unless the
/// application installed one first (txflow's binary does the same).
fn default_tls_provider() {
    // Fails only when a provider is installed already: the goal.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
