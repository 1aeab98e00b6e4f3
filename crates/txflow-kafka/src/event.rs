//! The transaction event: one JSON object per Kafka record value.
//!
//! ```json
//! {"id": "b9fa6684-…", "description": "Uber trip", "amount": -12.5,
//!  "timestamp": "2024-03-01T08:15:00+01:00", "merchant": "Uber",
//!  "operation_type": "card", "side": "debit"}
//! ```
//!
//! `amount` may be a JSON number or a string with a decimal point. Decoding
//! only checks that the value is a JSON object of scalars; every business
//! rule is the core's [`Validator`](txflow_core::Validator)'s, applied to the
//! [`RawRecord`] this module builds, so a stream and a file accept exactly
//! the same transactions.

use serde_json::{Map, Value};
use txflow_core::{Column, Position, RawRecord, Transaction};

/// The value of the `content-type` header of a transaction event.
pub const CONTENT_TYPE: &str = "application/json";
/// The value of the `schema-version` header of a transaction event.
pub const SCHEMA_VERSION: &str = "1";

/// Why a record's value is not a transaction event at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the record has no value")]
    Empty,
    #[error("the value is not JSON: {0}")]
    NotJson(String),
    #[error("the value is JSON but not an object")]
    NotAnObject,
    #[error("field {field:?} must be a string, a number or null")]
    NotAScalar { field: String },
}

/// An event's fields as text, in [`Column`] order, ready to be lent to a
/// [`RawRecord`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFields {
    values: [Option<String>; 7],
    raw: Vec<u8>,
}

impl EventFields {
    /// Decodes a record value. Unknown fields are ignored; a `null` counts as
    /// absent.
    pub fn decode(value: Option<&[u8]>) -> Result<EventFields, DecodeError> {
        let bytes = value.filter(|v| !v.is_empty()).ok_or(DecodeError::Empty)?;
        let parsed: Value =
            serde_json::from_slice(bytes).map_err(|e| DecodeError::NotJson(e.to_string()))?;
        let Value::Object(object) = parsed else {
            return Err(DecodeError::NotAnObject);
        };
        let mut values: [Option<String>; 7] = Default::default();
        for column in Column::ALL {
            values[column as usize] = scalar(&object, column.name())?;
        }
        Ok(EventFields {
            values,
            raw: bytes.to_vec(),
        })
    }

    /// The fields as a raw record at `position` (for a stream: the line is
    /// the record's offset, and so is the offset).
    pub fn record(&self, position: Position) -> RawRecord<'_> {
        let mut fields: [Option<&[u8]>; 7] = [None; 7];
        for (slot, value) in fields.iter_mut().zip(&self.values) {
            *slot = value.as_deref().map(str::as_bytes);
        }
        RawRecord {
            position,
            raw: &self.raw,
            fields,
            field_count: Column::ALL.len(),
            expected_fields: Column::ALL.len(),
            oversized: None,
        }
    }
}

fn scalar(object: &Map<String, Value>, name: &str) -> Result<Option<String>, DecodeError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(DecodeError::NotAScalar {
            field: name.to_owned(),
        }),
    }
}

/// The event of a transaction, as producers publish it.
pub fn encode(tx: &Transaction) -> Vec<u8> {
    let value = serde_json::json!({
        "id": tx.id().to_string(),
        "description": tx.description(),
        "amount": tx.amount().to_string(),
        "timestamp": tx.timestamp().to_rfc3339(),
        "merchant": tx.merchant(),
        "operation_type": tx.operation_type(),
        "side": tx.side().as_str(),
    });
    // A JSON value built from strings cannot fail to serialise.
    serde_json::to_vec(&value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use txflow_core::transaction::DecimalMark;
    use txflow_core::{Rule, Validator};

    use super::*;

    fn validator() -> Validator {
        Validator::new(Arc::from("kafka://transactions/0"), DecimalMark::Point)
    }

    fn at(offset: u64) -> Position {
        Position {
            line: offset,
            offset,
        }
    }

    #[test]
    fn an_encoded_transaction_decodes_to_the_same_transaction() {
        let value = br#"{"id": "b9fa6684-502b-4695-8f92-247432ba610d", "description": "Uber",
            "amount": -12.5, "timestamp": "2024-03-01T08:15:00+01:00", "merchant": null,
            "operation_type": "card", "side": "debit", "extra": [1, 2]}"#;
        let fields = EventFields::decode(Some(value)).expect("an event");
        let tx = validator().validate(&fields.record(at(7))).expect("valid");
        assert_eq!(tx.amount().cents(), -1250);
        assert_eq!(tx.merchant(), None);
        let again = EventFields::decode(Some(&encode(&tx))).expect("an event");
        assert_eq!(validator().validate(&again.record(at(7))), Ok(tx));
    }

    #[test]
    fn values_that_are_not_events_say_why() {
        assert_eq!(EventFields::decode(None), Err(DecodeError::Empty));
        assert!(matches!(
            EventFields::decode(Some(b"{oops")),
            Err(DecodeError::NotJson(_))
        ));
        assert_eq!(
            EventFields::decode(Some(b"[1]")),
            Err(DecodeError::NotAnObject)
        );
        assert_eq!(
            EventFields::decode(Some(br#"{"id": {"a": 1}}"#)),
            Err(DecodeError::NotAScalar { field: "id".into() })
        );
    }

    #[test]
    fn an_event_breaks_the_same_rules_as_a_csv_row() {
        let missing =
            EventFields::decode(Some(br#"{"id": "1", "amount": "-1.00"}"#)).expect("an event");
        let violation = validator()
            .validate(&missing.record(at(1)))
            .expect_err("invalid");
        assert_eq!(violation.rule, Rule::Required);
        let sign =
            br#"{"id": "1", "description": "x", "amount": 5, "timestamp": "2024-03-01 08:15:00",
            "operation_type": "card", "side": "debit"}"#;
        let fields = EventFields::decode(Some(sign)).expect("an event");
        let violation = validator()
            .validate(&fields.record(at(2)))
            .expect_err("invalid");
        assert_eq!(violation.rule, Rule::SideSign);
    }
}
