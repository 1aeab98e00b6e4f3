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

use std::borrow::Cow;
use std::fmt;

use serde::Deserializer;
use serde::de::{Deserialize, MapAccess, SeqAccess, Visitor};
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
/// [`RawRecord`]; a string without escapes is borrowed from the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFields<'a> {
    values: [Option<Cow<'a, str>>; 7],
    raw: &'a [u8],
}

impl<'a> EventFields<'a> {
    /// Decodes a record value. Unknown fields are ignored; a `null` counts as
    /// absent; of a field given twice, the last counts.
    pub fn decode(value: Option<&'a [u8]>) -> Result<EventFields<'a>, DecodeError> {
        let raw = value.filter(|v| !v.is_empty()).ok_or(DecodeError::Empty)?;
        let Top::Object(slots) =
            serde_json::from_slice(raw).map_err(|e| DecodeError::NotJson(e.to_string()))?
        else {
            return Err(DecodeError::NotAnObject);
        };
        let mut values: [Option<Cow<'a, str>>; 7] = Default::default();
        for (column, slot) in Column::ALL.into_iter().zip(slots) {
            values[column as usize] = match slot {
                Scalar::Absent => None,
                Scalar::Text(text) => Some(text),
                Scalar::Other => {
                    return Err(DecodeError::NotAScalar {
                        field: column.name().to_owned(),
                    });
                }
            };
        }
        Ok(EventFields { values, raw })
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
            raw: self.raw,
            fields,
            field_count: Column::ALL.len(),
            expected_fields: Column::ALL.len(),
            oversized: None,
        }
    }
}

/// The whole value: an object's fields by [`Column`], or something else.
enum Top<'de> {
    Object([Scalar<'de>; 7]),
    NotAnObject,
}

/// A field's value: absent or `null`, text (a string, or a number as
/// `serde_json` writes it), or anything else.
#[derive(Default)]
enum Scalar<'de> {
    #[default]
    Absent,
    Text(Cow<'de, str>),
    Other,
}

impl<'de> Deserialize<'de> for Top<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TopVisitor)
    }
}

struct TopVisitor;

impl<'de> Visitor<'de> for TopVisitor {
    type Value = Top<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top<'de>, A::Error> {
        let mut slots: [Scalar<'de>; 7] = Default::default();
        while let Some(key) = map.next_key::<Key>()? {
            match key.0 {
                Some(column) => slots[column] = map.next_value()?,
                None => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(Top::Object(slots))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Top<'de>, A::Error> {
        SkipVisitor.visit_seq(seq)?;
        Ok(Top::NotAnObject)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Top<'de>, E> {
        Ok(Top::NotAnObject)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Top<'de>, E> {
        Ok(Top::NotAnObject)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Top<'de>, E> {
        Ok(Top::NotAnObject)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Top<'de>, E> {
        Ok(Top::NotAnObject)
    }

    fn visit_str<E>(self, _: &str) -> Result<Top<'de>, E> {
        Ok(Top::NotAnObject)
    }

    fn visit_unit<E>(self) -> Result<Top<'de>, E> {
        Ok(Top::NotAnObject)
    }
}

/// An object's key: the index of the [`Column`] it names, if any.
struct Key(Option<usize>);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E>(self, name: &str) -> Result<Key, E> {
        Ok(Key(Column::ALL
            .iter()
            .position(|column| column.name() == name)))
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, a number or null")
    }

    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Text(Cow::Borrowed(text)))
    }

    fn visit_str<E>(self, text: &str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Text(Cow::Owned(text.to_owned())))
    }

    fn visit_string<E>(self, text: String) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Text(Cow::Owned(text)))
    }

    // Numbers as `serde_json::Value` would print them.
    fn visit_i64<E>(self, n: i64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Text(Cow::Owned(
            serde_json::Number::from(n).to_string(),
        )))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Text(Cow::Owned(
            serde_json::Number::from(n).to_string(),
        )))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Scalar<'de>, E> {
        Ok(serde_json::Number::from_f64(n)
            .map_or(Scalar::Absent, |n| Scalar::Text(Cow::Owned(n.to_string()))))
    }

    fn visit_unit<E>(self) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Absent)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Scalar<'de>, A::Error> {
        SkipVisitor.visit_seq(seq)?;
        Ok(Scalar::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Scalar<'de>, A::Error> {
        SkipVisitor.visit_map(map)?;
        Ok(Scalar::Other)
    }
}

/// Any value, read through and kept nowhere. Unlike `IgnoredAny`, its
/// strings are read as strings, so a value that is not valid JSON (text
/// that is not UTF-8 included) is refused wherever it is.
struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skip;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_str<E>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_unit<E>(self) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(Skip)
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
        let encoded = encode(&tx);
        let again = EventFields::decode(Some(&encoded)).expect("an event");
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

    fn text(value: &[u8], column: Column) -> Option<String> {
        let fields = EventFields::decode(Some(value)).expect("an event");
        let record = fields.record(at(1));
        record.fields[column as usize].map(|f| String::from_utf8(f.to_vec()).expect("text"))
    }

    #[test]
    fn fields_read_as_a_json_value_reads_them() {
        // Of a field given twice, the last counts, whatever the first was.
        assert_eq!(
            text(br#"{"id": "a", "id": "b"}"#, Column::Id).as_deref(),
            Some("b")
        );
        assert_eq!(
            text(br#"{"id": [1], "id": "c"}"#, Column::Id).as_deref(),
            Some("c")
        );
        // Escapes are decoded; numbers are written as serde_json writes them.
        assert_eq!(
            text(
                br#"{"description": "caf\u00e9 \"x\""}"#,
                Column::Description
            )
            .as_deref(),
            Some("caf\u{e9} \"x\"")
        );
        assert_eq!(
            text(br#"{"amount": 1e2}"#, Column::Amount).as_deref(),
            Some("100.0")
        );
        assert_eq!(
            text(br#"{"amount": -7}"#, Column::Amount).as_deref(),
            Some("-7")
        );
        // Unknown fields of any shape are read through and ignored.
        assert_eq!(
            text(
                br#"{"x": {"y": [true, null, {"z": 1.5}]}, "side": "debit"}"#,
                Column::Side
            )
            .as_deref(),
            Some("debit")
        );
        // ... but must be JSON: text that is not UTF-8 is refused there too.
        assert!(matches!(
            EventFields::decode(Some(b"{\"x\": \"\xff\", \"id\": \"1\"}")),
            Err(DecodeError::NotJson(_))
        ));
        assert!(matches!(
            EventFields::decode(Some(br#"{"id": "1"} x"#)),
            Err(DecodeError::NotJson(_))
        ));
        assert_eq!(
            EventFields::decode(Some(br#""text""#)),
            Err(DecodeError::NotAnObject)
        );
        assert_eq!(
            EventFields::decode(Some(br#"{"side": true}"#)),
            Err(DecodeError::NotAScalar {
                field: "side".into()
            })
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
