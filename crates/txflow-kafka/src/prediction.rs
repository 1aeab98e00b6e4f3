//! The predictions event on the wire: one JSON object per record of the
//! predictions topic, keyed by transaction id, with the headers
//! `content-type: application/json` and `schema-version: 1`.
//!
//! ```json
//! {"schema": "txflow.prediction.v1",
//!  "transaction": {"id": "b9fa6684-…", "source_id": "1042", "description": "Uber trip",
//!                  "amount": "-12.50", "timestamp": "2024-03-01T07:15:00Z",
//!                  "merchant": "Uber", "operation_type": "card", "side": "debit"},
//!  "prediction": {"category": "Transportation", "confidence": 0.91,
//!                 "model_version": "reference-1", "predicted_at": "2026-11-25T09:00:00.120Z",
//!                 "needs_review": false},
//!  "lineage": {"run_id": "txflow/host-42", "processing_type": "streaming",
//!              "source": "kafka://transactions/2", "line": 1234, "offset": 1234}}
//! ```
//!
//! The contract is `schemas/prediction-event.v1.json` (JSON Schema); the
//! amount is a string with two decimals so no reader rounds it. A reader
//! accepts unknown fields (a later minor version may add some) and refuses
//! another major version by name.

use std::borrow::Cow;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use rdkafka::message::{Header, OwnedHeaders};
use serde::{Deserialize, Serialize};
use txflow_core::transaction::DecimalMark;
use txflow_core::{
    Amount, Batch, Category, Lineage, PREDICTION_EVENT_VERSION, Position, Prediction,
    PredictionEvent, ProcessingType, RunId, Side, Transaction, TransactionId, TransactionParts,
};

/// The `schema` field's value.
pub const SCHEMA: &str = "txflow.prediction.v1";

/// Why a record of the predictions topic is not a predictions event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("the value is not a predictions event: {0}")]
    Json(String),
    #[error(
        "schema {found:?} is not {SCHEMA:?}: this txflow reads version {PREDICTION_EVENT_VERSION}"
    )]
    Version { found: String },
    #[error("field {field}: {problem}")]
    Field {
        field: &'static str,
        problem: String,
    },
}

// One shape for writing (strings lent by the batch) and reading (owned).
#[derive(Serialize, Deserialize)]
struct Wire<'a> {
    schema: Cow<'a, str>,
    transaction: WireTransaction<'a>,
    prediction: WirePrediction<'a>,
    lineage: WireLineage<'a>,
}

#[derive(Serialize, Deserialize)]
struct WireTransaction<'a> {
    id: Cow<'a, str>,
    source_id: Cow<'a, str>,
    description: Cow<'a, str>,
    amount: Cow<'a, str>,
    timestamp: Cow<'a, str>,
    merchant: Option<Cow<'a, str>>,
    operation_type: Cow<'a, str>,
    side: Cow<'a, str>,
}

#[derive(Serialize, Deserialize)]
struct WirePrediction<'a> {
    category: Cow<'a, str>,
    confidence: Option<f64>,
    model_version: Cow<'a, str>,
    predicted_at: Cow<'a, str>,
    /// Absent in events written before it existed: false.
    #[serde(default)]
    needs_review: bool,
}

#[derive(Serialize, Deserialize)]
struct WireLineage<'a> {
    run_id: Cow<'a, str>,
    processing_type: Cow<'a, str>,
    source: Cow<'a, str>,
    line: Option<u64>,
    offset: Option<u64>,
}

/// What the events of one batch share, formatted once.
struct Shared<'a> {
    predicted_at: String,
    lineage: &'a Lineage,
}

/// The headers of every predictions event.
pub fn headers() -> OwnedHeaders {
    OwnedHeaders::new()
        .insert(Header {
            key: "content-type",
            value: Some("application/json"),
        })
        .insert(Header {
            key: "schema-version",
            value: Some("1"),
        })
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The event as JSON.
pub fn encode(event: &PredictionEvent) -> String {
    let shared = Shared {
        predicted_at: time(event.predicted_at),
        lineage: &event.lineage,
    };
    let mut out = Vec::new();
    let mut id = [0; 36];
    write(
        &mut out,
        event
            .transaction
            .id()
            .as_uuid()
            .hyphenated()
            .encode_lower(&mut id),
        &event.transaction,
        &event.prediction,
        &shared,
        event.position,
        event.needs_review,
    );
    // serde_json writes UTF-8 only.
    String::from_utf8(out).expect("JSON is UTF-8")
}

/// Appends an event's JSON to `out`, its strings lent by its parts (`id`:
/// the transaction's id as text, which the caller also keys the record by).
fn write(
    out: &mut Vec<u8>,
    id: &str,
    tx: &Transaction,
    p: &Prediction,
    shared: &Shared<'_>,
    position: Option<Position>,
    needs_review: bool,
) {
    let lineage = shared.lineage;
    let wire = Wire {
        schema: SCHEMA.into(),
        transaction: WireTransaction {
            id: id.into(),
            source_id: tx.source_id().into(),
            description: tx.description().into(),
            amount: tx.amount().to_string().into(),
            timestamp: time(tx.timestamp()).into(),
            merchant: tx.merchant().map(Cow::from),
            operation_type: tx.operation_type().into(),
            side: tx.side().as_str().into(),
        },
        prediction: WirePrediction {
            category: p.category.as_str().into(),
            confidence: p.confidence,
            model_version: p.model_version.as_str().into(),
            predicted_at: shared.predicted_at.as_str().into(),
            needs_review,
        },
        lineage: WireLineage {
            run_id: lineage.run_id.as_str().into(),
            processing_type: lineage.processing_type.as_str().into(),
            source: (&*lineage.source).into(),
            line: position.map(|p| p.line),
            offset: position.map(|p| p.offset),
        },
    };
    serde_json::to_writer(out, &wire).expect("an event always serialises");
}

/// A batch's predictions events: (key, JSON value, position) of each, in
/// the batch's order, `needs_review` set for those it queued for review.
/// The key is the transaction id's 36 characters.
pub fn events(
    batch: &Batch,
    predicted_at: DateTime<Utc>,
) -> impl Iterator<Item = ([u8; 36], Vec<u8>, Position)> + '_ {
    let queued = txflow_core::review::queued_ids(batch);
    let shared = Shared {
        predicted_at: time(predicted_at),
        lineage: &batch.lineage,
    };
    batch.predicted().map(move |(tx, p, position)| {
        let needs_review = queued.contains(&(p.transaction_id, p.model_version.as_str()));
        // About what an event takes, so that writing it seldom grows it.
        let mut value = Vec::with_capacity(512 + tx.description().len());
        let mut key = [0; 36];
        let id = tx.id().as_uuid().hyphenated().encode_lower(&mut key);
        write(&mut value, id, tx, p, &shared, Some(position), needs_review);
        (key, value, position)
    })
}

fn field<T>(field: &'static str, value: Option<T>, problem: &str) -> Result<T, EventError> {
    value.ok_or_else(|| EventError::Field {
        field,
        problem: problem.to_owned(),
    })
}

fn parse_time(name: &'static str, text: &str) -> Result<DateTime<Utc>, EventError> {
    let parsed = DateTime::parse_from_rfc3339(text).ok();
    field(name, parsed, "not an RFC 3339 time").map(|t| t.with_timezone(&Utc))
}

/// Reads an event back (the sink connectors' input).
pub fn decode(value: &[u8]) -> Result<PredictionEvent, EventError> {
    let wire: Wire<'_> =
        serde_json::from_slice(value).map_err(|e| EventError::Json(e.to_string()))?;
    if wire.schema != SCHEMA {
        return Err(EventError::Version {
            found: wire.schema.into_owned(),
        });
    }
    let t = wire.transaction;
    let id = uuid::Uuid::parse_str(&t.id)
        .ok()
        .map(TransactionId::from_uuid);
    let amount = Amount::parse(&t.amount, DecimalMark::Point).ok();
    let transaction = Transaction::from(TransactionParts {
        id: field("transaction.id", id, "not a UUID")?,
        source_id: t.source_id.into_owned(),
        description: t.description.into_owned(),
        amount: field("transaction.amount", amount, "not a decimal amount")?,
        timestamp: parse_time("transaction.timestamp", &t.timestamp)?,
        merchant: t.merchant.map(Cow::into_owned),
        operation_type: t.operation_type.into_owned(),
        side: field(
            "transaction.side",
            Side::parse(&t.side),
            "not debit or credit",
        )?,
    });
    let p = wire.prediction;
    let category = p.category.parse::<Category>().ok();
    let prediction = Prediction {
        transaction_id: transaction.id(),
        category: field(
            "prediction.category",
            category,
            "not a category name (1 to 64 bytes, no control character)",
        )?,
        confidence: p.confidence,
        model_version: p.model_version.into_owned(),
    };
    let l = wire.lineage;
    let processing_type = match &*l.processing_type {
        "batch" => Some(ProcessingType::Batch),
        "streaming" => Some(ProcessingType::Streaming),
        _ => None,
    };
    let position = match (l.line, l.offset) {
        (Some(line), Some(offset)) => Some(Position { line, offset }),
        _ => None,
    };
    Ok(PredictionEvent {
        transaction,
        prediction,
        predicted_at: parse_time("prediction.predicted_at", &p.predicted_at)?,
        lineage: Lineage {
            run_id: field(
                "lineage.run_id",
                RunId::parse(&l.run_id).ok(),
                "not a run id",
            )?,
            source: Arc::from(&*l.source),
            processing_type: field(
                "lineage.processing_type",
                processing_type,
                "not batch or streaming",
            )?,
        },
        position,
        needs_review: p.needs_review,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> PredictionEvent {
        let transaction = Transaction::from(TransactionParts {
            id: TransactionId::from_uuid(uuid::Uuid::from_u128(42)),
            source_id: "1042".into(),
            description: "Uber \"trip\" ✓".into(),
            amount: Amount::from_cents(-1250).expect("in range"),
            timestamp: parse_time("t", "2024-03-01T07:15:00Z").expect("a time"),
            merchant: None,
            operation_type: "card".into(),
            side: Side::Debit,
        });
        PredictionEvent {
            prediction: Prediction {
                transaction_id: transaction.id(),
                category: Category::new("Transportation").expect("a name"),
                confidence: Some(0.91),
                model_version: "reference-1".into(),
            },
            transaction,
            predicted_at: parse_time("t", "2026-11-25T09:00:00.120Z").expect("a time"),
            lineage: Lineage {
                run_id: RunId::parse("txflow/host-42").expect("a run id"),
                source: "kafka://transactions/2".into(),
                processing_type: ProcessingType::Streaming,
            },
            position: Some(Position {
                line: 1234,
                offset: 1234,
            }),
            needs_review: false,
        }
    }

    #[test]
    fn an_event_reads_back_as_it_was_written() {
        let e = event();
        let json = encode(&e);
        assert!(json.contains(r#""amount":"-12.50""#), "{json}");
        assert!(
            json.contains(r#""predicted_at":"2026-11-25T09:00:00.120Z""#),
            "{json}"
        );
        assert_eq!(decode(json.as_bytes()), Ok(e));
    }

    #[test]
    fn what_is_written_validates_against_the_published_schema() {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../../schemas/prediction-event.v1.json"))
                .expect("the schema is JSON");
        let validator = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&schema)
            .expect("a valid schema");
        let full = event();
        let mut sparse = event();
        sparse.prediction.confidence = None;
        sparse.position = None;
        sparse.lineage.processing_type = ProcessingType::Batch;
        let mut credit = event();
        credit.transaction = Transaction::from(TransactionParts {
            id: TransactionId::from_uuid(uuid::Uuid::from_u128(7)),
            source_id: "7".into(),
            description: String::new(),
            amount: Amount::from_cents(5).expect("in range"),
            timestamp: parse_time("t", "1999-12-31T23:59:59.999999Z").expect("a time"),
            merchant: Some("Café".into()),
            operation_type: "transfer".into(),
            side: Side::Credit,
        });
        for e in [full, sparse, credit] {
            let value: serde_json::Value = serde_json::from_str(&encode(&e)).expect("JSON");
            let errors: Vec<String> = validator
                .iter_errors(&value)
                .map(|e| e.to_string())
                .collect();
            assert!(errors.is_empty(), "{value}: {errors:?}");
        }
        // The schema is not a formality: a rounded amount is refused.
        let mut value: serde_json::Value = serde_json::from_str(&encode(&event())).expect("JSON");
        value["transaction"]["amount"] = serde_json::json!(-12.5);
        assert!(!validator.is_valid(&value));
    }

    #[test]
    fn another_major_version_is_refused_by_name() {
        let json = encode(&event()).replace(SCHEMA, "txflow.prediction.v2");
        let e = decode(json.as_bytes()).expect_err("refused");
        assert!(e.to_string().contains("txflow.prediction.v2"), "{e}");
    }

    #[test]
    fn a_bad_field_is_named() {
        let json = encode(&event()).replace("\"debit\"", "\"sideways\"");
        let e = decode(json.as_bytes()).expect_err("refused");
        assert_eq!(e.to_string(), "field transaction.side: not debit or credit");
    }
}
