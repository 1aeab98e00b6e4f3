//! The wire contract of `POST /predict`, shared by the server and the client.
//!
//! A request is a JSON array of [`PredictItem`]; the answer a JSON array, in
//! request order, of [`PredictAnswer`]. The original service answered only
//! `transaction_id` and `category`; the two other fields are additions, and
//! the client accepts answers without them.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use txflow_core::transaction::DecimalMark;
use txflow_core::{Column, Position, RawRecord, Transaction, Validator};
use utoipa::ToSchema;

/// One transaction to classify.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PredictItem<'a> {
    /// The transaction's UUID.
    #[schema(value_type = uuid::Uuid, example = "b9fa6684-502b-4695-8f92-247432ba610d")]
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    #[schema(value_type = String, example = "Card expense at EDF")]
    #[serde(borrow)]
    pub description: Cow<'a, str>,
    /// Negative for a debit, at most 2 decimals.
    #[schema(example = -952.4)]
    pub amount: f64,
    /// ISO 8601, with or without an offset (without: UTC).
    #[schema(value_type = String, example = "2023-11-28T06:35:12")]
    #[serde(borrow)]
    pub timestamp: Cow<'a, str>,
    #[schema(value_type = Option<String>, example = "EDF")]
    #[serde(borrow, default)]
    pub merchant: Option<Cow<'a, str>>,
    #[schema(value_type = String, example = "card")]
    #[serde(borrow)]
    pub operation_type: Cow<'a, str>,
    /// `debit` or `credit`.
    #[schema(value_type = String, example = "debit")]
    #[serde(borrow)]
    pub side: Cow<'a, str>,
}

impl<'a> PredictItem<'a> {
    /// The request item of a transaction.
    pub fn from_transaction(tx: &'a Transaction) -> PredictItem<'a> {
        PredictItem {
            id: Cow::Owned(tx.id().to_string()),
            description: Cow::Borrowed(tx.description()),
            amount: tx.amount().cents() as f64 / 100.0,
            timestamp: Cow::Owned(tx.timestamp().to_rfc3339()),
            merchant: tx.merchant().map(Cow::Borrowed),
            operation_type: Cow::Borrowed(tx.operation_type()),
            side: Cow::Borrowed(tx.side().as_str()),
        }
    }

    /// The transaction this item describes, or the rule it breaks: the
    /// item is judged by the core's [`Validator`] as a CSV row or a stream
    /// event is (the same rules and rule names), with ids that must be UUIDs.
    pub fn parse(&self, index: usize, validator: &Validator) -> Result<Transaction, Problem> {
        let amount = self.amount.to_string();
        let fields = Column::ALL.map(|column| match column {
            Column::Id => Some(self.id.as_bytes()),
            Column::Description => Some(self.description.as_bytes()),
            Column::Amount => Some(amount.as_bytes()),
            Column::Timestamp => Some(self.timestamp.as_bytes()),
            Column::Merchant => self.merchant.as_deref().map(str::as_bytes),
            Column::OperationType => Some(self.operation_type.as_bytes()),
            Column::Side => Some(self.side.as_bytes()),
        });
        let record = RawRecord {
            position: Position {
                line: index as u64,
                offset: 0,
            },
            raw: b"",
            fields,
            field_count: Column::ALL.len(),
            expected_fields: Column::ALL.len(),
            oversized: None,
        };
        validator.validate(&record).map_err(|v| Problem {
            index: Some(index),
            field: v.field.map(|c| c.name().to_owned()),
            rule: Some(v.rule.name().to_owned()),
            message: v.message,
        })
    }
}

/// The validator of `/predict` items: point decimals, UUID ids.
pub fn validator() -> Validator {
    Validator::new("http://predict".into(), DecimalMark::Point).requiring_uuid_ids()
}

/// The classification of one transaction.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PredictAnswer {
    #[schema(value_type = uuid::Uuid)]
    pub transaction_id: String,
    /// One of the 15 categories.
    #[schema(example = "Transportation")]
    pub category: String,
    /// In [0, 1]; absent from the original service's answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence_score: Option<f64>,
    /// Absent from the original service's answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
}

/// One thing wrong with a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// The item's position in the request array; absent for the whole body.
    pub index: Option<usize>,
    pub field: Option<String>,
    /// The validation rule broken (as CSV rows and stream events name it:
    /// `amount_format`, `side_sign`, ...); absent for a problem of shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub message: String,
}

/// The body of a 4xx answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default)]
    pub problems: Vec<Problem>,
}

/// The fields every item must have, for problems found before typing.
const FIELDS: [(&str, FieldKind); 7] = [
    ("id", FieldKind::String),
    ("description", FieldKind::String),
    ("amount", FieldKind::Number),
    ("timestamp", FieldKind::String),
    ("merchant", FieldKind::NullableString),
    ("operation_type", FieldKind::String),
    ("side", FieldKind::String),
];

#[derive(Clone, Copy)]
enum FieldKind {
    String,
    NullableString,
    Number,
}

/// Every problem of a body that did not deserialise as a list of items: the
/// slow path, taken only for bad requests, so that the answer names each
/// item and field rather than the first error.
pub fn shape_problems(body: &[u8]) -> Vec<Problem> {
    let whole = |message: String| {
        vec![Problem {
            index: None,
            field: None,
            rule: None,
            message,
        }]
    };
    let value: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return whole(format!("the body is not JSON: {e}")),
    };
    let Some(items) = value.as_array() else {
        return whole("the body must be a JSON array of transactions".into());
    };
    let mut problems = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let Some(object) = item.as_object() else {
            problems.push(Problem {
                index: Some(index),
                field: None,
                rule: None,
                message: "each item must be a JSON object".into(),
            });
            continue;
        };
        for (name, kind) in FIELDS {
            let message = match (object.get(name), kind) {
                (None, FieldKind::NullableString) => None,
                (None, _) => Some("is required".to_owned()),
                (Some(v), FieldKind::String) if !v.is_string() => {
                    Some(format!("must be a string, not {v}"))
                }
                (Some(v), FieldKind::NullableString) if !(v.is_string() || v.is_null()) => {
                    Some(format!("must be a string or null, not {v}"))
                }
                (Some(v), FieldKind::Number) if !v.is_number() => {
                    Some(format!("must be a number, not {v}"))
                }
                _ => None,
            };
            if let Some(message) = message {
                problems.push(Problem {
                    index: Some(index),
                    field: Some(name.to_owned()),
                    rule: None,
                    message,
                });
            }
        }
    }
    if problems.is_empty() {
        // Serde refused it for a reason the checks above do not know.
        if let Err(e) = serde_json::from_slice::<Vec<PredictItem<'_>>>(body) {
            return whole(e.to_string());
        }
    }
    problems
}
