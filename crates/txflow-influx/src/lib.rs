//! The line-protocol sink connector: one point per prediction, accepted by
//! InfluxDB 1.x (`/write?db=`), 2.x and 3.x (`/api/v2/write?bucket=&org=`,
//! with a token) and VictoriaMetrics (`/write`).
//!
//! ```text
//! transactions,category=Food,side=debit,model_version=reference-1,operation_type=card amount=-12.5,confidence=0.91 1701153312482913024
//! ```
//!
//! Idempotent: a point's timestamp is the transaction's second plus a
//! sub-second part derived from the transaction id, so a replay writes the
//! same point (same series, same time), which the store overwrites instead
//! of adding one. Stores that keep milliseconds (VictoriaMetrics, started
//! with `-dedup.minScrapeInterval=1ms` so that a replay replaces) keep three
//! of those nine digits: two transactions of one series in the same second
//! then share a millisecond with probability 1/1000 per pair, and one point
//! replaces the other (see the README).
//!
//! The store cannot keep offsets with the points, so the sink member resumes
//! at its consumer group's committed offsets ([`Resume::Committed`]).
//!
//! Answers: 2xx written; 429, 5xx, 401/403 and network failures: the store
//! is unavailable (waited out, nothing dead-lettered: a revoked token is an
//! outage, not bad data); 400: some point is refused for its content, found
//! by halving the batch, and dead-lettered alone; 404 (no such database) and
//! other 4xx stop the member with the store's answer.

use std::fmt::Write as _;
use std::time::Duration;

use txflow_core::connector::BoxFuture;
use txflow_core::{BoxError, Connector, ConnectorError, Refused, Resume, Secret, SinkRecord};

/// The measurement every point goes to.
pub const MEASUREMENT: &str = "transactions";

/// Writes predictions as line-protocol points.
#[derive(Debug)]
pub struct InfluxConnector {
    client: reqwest::Client,
    /// The write endpoint, query included (`precision=ns` added).
    endpoint: url::Url,
    token: Option<Secret>,
}

/// Why an `influx+http(s)://` URL cannot be used.
#[derive(Debug)]
pub struct InvalidUrl(String);

impl std::fmt::Display for InvalidUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidUrl {}

impl InfluxConnector {
    /// `influx+http://host:port/write?db=NAME` (InfluxDB 1.x, VictoriaMetrics)
    /// or `influx+https://host/api/v2/write?bucket=B&org=O` (2.x, 3.x; pass
    /// the token). A URL without a path writes to `/write`.
    pub fn new(url: &str, token: Option<Secret>) -> Result<InfluxConnector, InvalidUrl> {
        let plain = url
            .strip_prefix("influx+")
            .ok_or_else(|| InvalidUrl(format!("{url:?} does not start with influx+http(s)://")))?;
        let mut endpoint = url::Url::parse(plain)
            .map_err(|e| InvalidUrl(format!("{plain:?} is not a URL: {e}")))?;
        if !matches!(endpoint.scheme(), "http" | "https") {
            return Err(InvalidUrl(format!(
                "{url:?}: use influx+http:// or influx+https://"
            )));
        }
        if endpoint.path().is_empty() || endpoint.path() == "/" {
            endpoint.set_path("/write");
        }
        if !endpoint.query_pairs().any(|(k, _)| k == "precision") {
            endpoint.query_pairs_mut().append_pair("precision", "ns");
        }
        default_tls_provider();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| InvalidUrl(format!("an HTTP client: {e}")))?;
        Ok(InfluxConnector {
            client,
            endpoint,
            token,
        })
    }

    async fn post(&self, body: String) -> Result<(), Answer> {
        let mut request = self.client.post(self.endpoint.clone()).body(body);
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Token {}", token.expose()));
        }
        let response = request
            .send()
            .await
            .map_err(|e| Answer::Unavailable(e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        let said = format!("{status}: {}", text.trim());
        Err(match status.as_u16() {
            400 => Answer::Refused(said),
            401 | 403 | 408 | 429 => Answer::Unavailable(said),
            s if s >= 500 => Answer::Unavailable(said),
            _ => Answer::Fatal(said),
        })
    }

    /// Writes `records`; when the store refuses the batch for its content,
    /// halves it until each refused point stands alone.
    async fn write_all(&self, records: &[SinkRecord]) -> Result<Vec<Refused>, ConnectorError> {
        let mut refused = Vec::new();
        let mut pending = vec![(0, records.len())];
        while let Some((from, to)) = pending.pop() {
            if from == to {
                continue;
            }
            let mut body = String::with_capacity((to - from) * 160);
            for r in &records[from..to] {
                line(&mut body, r);
            }
            match self.post(body).await {
                Ok(()) => {}
                Err(Answer::Refused(said)) if to - from == 1 => refused.push(Refused {
                    index: from,
                    rule: "line_protocol".to_owned(),
                    message: said,
                }),
                Err(Answer::Refused(_)) => {
                    let middle = from + (to - from) / 2;
                    pending.push((middle, to));
                    pending.push((from, middle));
                }
                Err(Answer::Unavailable(said)) => {
                    return Err(ConnectorError::Unavailable(self.error(said)));
                }
                Err(Answer::Fatal(said)) => return Err(ConnectorError::Fatal(self.error(said))),
            }
        }
        refused.sort_by_key(|r| r.index);
        Ok(refused)
    }

    fn error(&self, said: String) -> BoxError {
        format!("{} answered {said}", self.shown()).into()
    }

    /// The endpoint without credentials.
    fn shown(&self) -> String {
        let mut shown = self.endpoint.clone();
        let _ = shown.set_password(None);
        let _ = shown.set_username("");
        shown.to_string()
    }
}

enum Answer {
    Refused(String),
    Unavailable(String),
    Fatal(String),
}

/// Line-protocol escaping of a tag value (or key): commas, equals signs and
/// spaces get a backslash; a line break cannot be sent and becomes a space.
fn tag(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            ',' | '=' | ' ' => {
                out.push('\\');
                out.push(c);
            }
            '\\' => out.push_str("\\\\"),
            '\n' | '\r' => out.push_str("\\ "),
            c => out.push(c),
        }
    }
}

/// The point's time: the transaction's second, plus nanoseconds taken from
/// its id, so one transaction always lands on the same instant.
pub fn point_time(record: &SinkRecord) -> i64 {
    let tx = &record.event.transaction;
    let second = tx.timestamp().timestamp();
    let id = tx.id();
    let (high, low) = id.as_uuid().as_u64_pair();
    let nanos = (high ^ low) % 1_000_000_000;
    second * 1_000_000_000 + nanos as i64
}

/// One point, with its line break.
pub fn line(out: &mut String, record: &SinkRecord) {
    let (tx, p) = (&record.event.transaction, &record.event.prediction);
    out.push_str(MEASUREMENT);
    for (key, value) in [
        ("category", p.category.as_str()),
        ("side", tx.side().as_str()),
        ("model_version", p.model_version.as_str()),
        ("operation_type", tx.operation_type()),
    ] {
        if value.is_empty() {
            continue; // an empty tag value is not allowed
        }
        out.push(',');
        out.push_str(key);
        out.push('=');
        tag(out, value);
    }
    let _ = write!(out, " amount={}", tx.amount());
    if let Some(confidence) = p.confidence {
        let _ = write!(out, ",confidence={confidence}");
    }
    let _ = writeln!(out, " {}", point_time(record));
}

impl Connector for InfluxConnector {
    fn kind(&self) -> &'static str {
        "influx"
    }

    fn resume<'a>(
        &'a self,
        _topic: &'a str,
        _assigned: &'a [i32],
    ) -> BoxFuture<'a, Result<Resume, ConnectorError>> {
        Box::pin(async { Ok(Resume::Committed) })
    }

    fn write<'a>(
        &'a self,
        _topic: &'a str,
        _partition: i32,
        records: &'a [SinkRecord],
    ) -> BoxFuture<'a, Result<Vec<Refused>, ConnectorError>> {
        Box::pin(self.write_all(records))
    }

    fn describe(&self) -> String {
        format!("line protocol to {}", self.shown())
    }
}

/// rustls's process-wide provider, which reqwest uses: *ring*, unless the
/// application installed one first (txflow's binary does the same).
fn default_tls_provider() {
    // Fails only when a provider is installed already: the goal.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use txflow_core::transaction::{Amount, Side, TransactionId, TransactionParts};
    use txflow_core::{
        Category, Lineage, Prediction, PredictionEvent, ProcessingType, RunId, Transaction,
    };

    use super::*;

    fn record(operation_type: &str, confidence: Option<f64>) -> SinkRecord {
        let id = TransactionId::from_uuid(uuid::Uuid::from_u128(0x1234_5678_9abc_def0_1122_3344));
        let timestamp = chrono::DateTime::parse_from_rfc3339("2023-11-28T06:35:12.700Z")
            .expect("a time")
            .to_utc();
        let transaction = Transaction::from(TransactionParts {
            id,
            source_id: "1".into(),
            description: "x".into(),
            amount: Amount::from_cents(-95_240).expect("in range"),
            timestamp,
            merchant: None,
            operation_type: operation_type.into(),
            side: Side::Debit,
        });
        SinkRecord {
            partition: 0,
            offset: 7,
            event: PredictionEvent {
                prediction: Prediction {
                    transaction_id: id,
                    category: Category::new("Client Expenses").expect("a name"),
                    confidence,
                    model_version: "reference-1".into(),
                },
                transaction,
                predicted_at: timestamp,
                lineage: Lineage {
                    run_id: RunId::parse("r").expect("a run id"),
                    source: "kafka://t/0".into(),
                    processing_type: ProcessingType::Streaming,
                },
                position: None,
                needs_review: false,
            },
        }
    }

    #[test]
    fn a_point_escapes_its_tags_and_lands_in_its_transactions_second() {
        let r = record("card, contactless=yes", Some(0.5));
        let mut out = String::new();
        line(&mut out, &r);
        let t = point_time(&r);
        assert_eq!(t / 1_000_000_000, 1_701_153_312, "the transaction's second");
        assert_eq!(
            out,
            format!(
                "transactions,category=Client\\ Expenses,side=debit,model_version=reference-1,\
                 operation_type=card\\,\\ contactless\\=yes amount=-952.40,confidence=0.5 {t}\n"
            )
        );
        // The same transaction, replayed, lands on the same instant.
        assert_eq!(point_time(&record("other", None)), t);
    }

    #[test]
    fn urls_name_the_write_endpoint_with_nanoseconds() {
        let c = InfluxConnector::new("influx+http://127.0.0.1:8428", None).expect("valid");
        assert_eq!(
            c.endpoint.as_str(),
            "http://127.0.0.1:8428/write?precision=ns"
        );
        let c = InfluxConnector::new("influx+http://h:8086/write?db=txflow", None).expect("valid");
        assert_eq!(
            c.endpoint.as_str(),
            "http://h:8086/write?db=txflow&precision=ns"
        );
        let e = InfluxConnector::new("influx+ftp://h/", None).expect_err("refused");
        assert!(e.to_string().contains("influx+http://"), "{e}");
    }
}
