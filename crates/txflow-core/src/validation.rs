//! The validation rules. Each has a stable name, stored with every rejected
//! row so that rejections can be counted and queried by rule.
//!
//! | rule | what it checks |
//! |---|---|
//! | `record_too_long` | the record fits the source's limit (1 MiB for files); its start is kept |
//! | `row_shape` | the row has as many fields as the header |
//! | `encoding` | every field is valid UTF-8, without NUL characters |
//! | `required` | id, description, amount, timestamp, operation_type and side are present and not blank |
//! | `field_length` | id ≤ 128, description ≤ 1024, merchant ≤ 256, operation_type ≤ 64 characters |
//! | `amount_format` | the amount is a plain decimal number in the file's decimal mark |
//! | `amount_precision` | at most 2 decimals (further zeros are allowed) |
//! | `amount_range` | at most ±9,999,999,999,999.99 |
//! | `timestamp_format` | RFC 3339 or `YYYY-MM-DD HH:MM:SS` (taken as UTC) |
//! | `side_value` | side is `debit` or `credit` |
//! | `side_sign` | a debit is negative, a credit positive (so zero is refused) |
//! | `id_format` | streams only: the id is a UUID (files may use any id) |
//! | `event_format` | streams only: the record is a JSON object of strings and numbers |
//!
//! Rules run in that order and a row is rejected by the first it breaks.

use std::fmt;
use std::sync::Arc;

use crate::identity;
use crate::record::{Column, Position, RawRecord};
use crate::transaction::{Amount, AmountError, DecimalMark, Side, Transaction, parse_timestamp};

/// A validation rule, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    RecordTooLong,
    RowShape,
    Encoding,
    Required,
    FieldLength,
    AmountFormat,
    AmountPrecision,
    AmountRange,
    TimestampFormat,
    SideValue,
    SideSign,
    /// Streams only: the id must be a UUID.
    IdFormat,
    /// Streams only: the record is not a transaction event at all (checked
    /// by the adapter that decodes it, named here so all rules share one list).
    EventFormat,
}

impl Rule {
    pub fn name(self) -> &'static str {
        match self {
            Rule::RecordTooLong => "record_too_long",
            Rule::RowShape => "row_shape",
            Rule::Encoding => "encoding",
            Rule::Required => "required",
            Rule::FieldLength => "field_length",
            Rule::AmountFormat => "amount_format",
            Rule::AmountPrecision => "amount_precision",
            Rule::AmountRange => "amount_range",
            Rule::TimestampFormat => "timestamp_format",
            Rule::SideValue => "side_value",
            Rule::SideSign => "side_sign",
            Rule::IdFormat => "id_format",
            Rule::EventFormat => "event_format",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The first rule a row broke, the field concerned and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: Rule,
    pub field: Option<Column>,
    pub message: String,
}

impl Violation {
    fn new(rule: Rule, field: impl Into<Option<Column>>, message: String) -> Self {
        Violation {
            rule,
            field: field.into(),
            message,
        }
    }
}

/// An invalid row, kept with everything needed to find and fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRecord {
    pub source: Arc<str>,
    pub position: Position,
    pub rule: Rule,
    pub field: Option<Column>,
    pub message: String,
    /// The row as it stood in the input; invalid UTF-8 is replaced by U+FFFD.
    pub raw: String,
}

/// The longest text accepted in each column, in characters.
pub fn max_length(column: Column) -> usize {
    match column {
        Column::Id => 128,
        Column::Description => 1024,
        Column::Merchant => 256,
        Column::OperationType => 64,
        // Amounts, timestamps and sides have their own rules; this bound
        // only keeps a pathological field out of error messages.
        Column::Amount | Column::Timestamp | Column::Side => 64,
    }
}

/// Applies the rules to the records of one source.
#[derive(Debug, Clone)]
pub struct Validator {
    location: Arc<str>,
    decimal: DecimalMark,
    uuid_ids: bool,
}

impl Validator {
    /// `location` is the source's canonical URL: it feeds derived ids.
    pub fn new(location: Arc<str>, decimal: DecimalMark) -> Self {
        Validator {
            location,
            decimal,
            uuid_ids: false,
        }
    }

    /// Refuses ids that are not UUIDs (rule `id_format`): a stream's events
    /// carry their own identity, there is no file and line to derive one from.
    pub fn requiring_uuid_ids(mut self) -> Self {
        self.uuid_ids = true;
        self
    }

    pub fn location(&self) -> &Arc<str> {
        &self.location
    }

    /// The transaction the record holds, or the first rule it breaks.
    pub fn validate(&self, record: &RawRecord<'_>) -> Result<Transaction, Violation> {
        if let Some(o) = record.oversized {
            let message = if o.unclosed_quote {
                format!(
                    "a quote opened in this record is never closed: the rest of the input ({} bytes) \
                     reads as one record, longer than the {}-byte limit; close the quote",
                    o.length, o.limit
                )
            } else {
                format!(
                    "the record is {} bytes, longer than the {}-byte limit; only its start is kept \
                     here; shorten the long field or look for a stray quote",
                    o.length, o.limit
                )
            };
            return Err(Violation::new(Rule::RecordTooLong, None, message));
        }
        if record.field_count != record.expected_fields {
            return Err(Violation::new(
                Rule::RowShape,
                None,
                format!(
                    "the row has {} fields, the header has {}; check the separator and quoting",
                    record.field_count, record.expected_fields
                ),
            ));
        }
        let mut text: [Option<&str>; 7] = [None; 7];
        for column in Column::ALL {
            let Some(bytes) = record.field(column) else {
                continue;
            };
            let value = std::str::from_utf8(bytes).map_err(|e| {
                Violation::new(
                    Rule::Encoding,
                    column,
                    format!(
                        "{column} is not valid UTF-8 (bad byte at {}); re-export the file as UTF-8",
                        e.valid_up_to()
                    ),
                )
            })?;
            if value.contains('\0') {
                return Err(Violation::new(
                    Rule::Encoding,
                    column,
                    format!("{column} contains a NUL character; remove it from the input"),
                ));
            }
            let value = value.trim();
            text[column.index()] = (!value.is_empty()).then_some(value);
        }
        for column in Column::ALL {
            if column.required() && text[column.index()].is_none() {
                return Err(Violation::new(
                    Rule::Required,
                    column,
                    format!("{column} is missing or blank"),
                ));
            }
            if let Some(value) = text[column.index()] {
                let max = max_length(column);
                // Bytes bound chars from above: count chars only when needed.
                if value.len() > max && value.chars().count() > max {
                    return Err(Violation::new(
                        Rule::FieldLength,
                        column,
                        format!(
                            "{column} is {} characters long, the limit is {max}",
                            value.chars().count()
                        ),
                    ));
                }
            }
        }
        let get = |c: Column| text[c.index()].unwrap_or_default();

        let amount_text = get(Column::Amount);
        let amount = Amount::parse(amount_text, self.decimal).map_err(|e| {
            let (rule, why) = match e {
                AmountError::NotANumber => (
                    Rule::AmountFormat,
                    format!(
                        "is not a decimal number written with '{}'",
                        self.decimal.as_char()
                    ),
                ),
                AmountError::TooPrecise => {
                    (Rule::AmountPrecision, "has more than 2 decimals".to_owned())
                }
                AmountError::OutOfRange => (
                    Rule::AmountRange,
                    "is beyond ±9,999,999,999,999.99".to_owned(),
                ),
            };
            Violation::new(
                rule,
                Column::Amount,
                format!("amount {amount_text:?} {why}"),
            )
        })?;

        let ts_text = get(Column::Timestamp);
        let timestamp = parse_timestamp(ts_text).ok_or_else(|| {
            Violation::new(
                Rule::TimestampFormat,
                Column::Timestamp,
                format!("timestamp {ts_text:?} is neither RFC 3339 nor YYYY-MM-DD HH:MM:SS"),
            )
        })?;

        let side_text = get(Column::Side);
        let side = Side::parse(side_text).ok_or_else(|| {
            Violation::new(
                Rule::SideValue,
                Column::Side,
                format!("side {side_text:?} is neither debit nor credit"),
            )
        })?;
        let sign_ok = match side {
            Side::Debit => amount.cents() < 0,
            Side::Credit => amount.cents() > 0,
        };
        if !sign_ok {
            let want = if side == Side::Debit {
                "negative"
            } else {
                "positive"
            };
            return Err(Violation::new(
                Rule::SideSign,
                Column::Amount,
                format!("a {} must be {want}, the amount is {amount}", side.as_str()),
            ));
        }

        let source_id = get(Column::Id);
        if self.uuid_ids && uuid::Uuid::try_parse(source_id).is_err() {
            return Err(Violation::new(
                Rule::IdFormat,
                Column::Id,
                format!("id {source_id:?} is not a UUID; stream events must carry a UUID id"),
            ));
        }
        Ok(Transaction {
            id: identity::transaction_id(&self.location, source_id),
            source_id: source_id.to_owned(),
            description: get(Column::Description).to_owned(),
            amount,
            timestamp,
            merchant: text[Column::Merchant.index()].map(str::to_owned),
            operation_type: get(Column::OperationType).to_owned(),
            side,
        })
    }

    /// The error record of a row that broke `violation`.
    pub fn reject(&self, record: &RawRecord<'_>, violation: Violation) -> RejectedRecord {
        RejectedRecord {
            source: Arc::clone(&self.location),
            position: record.position,
            rule: violation.rule,
            field: violation.field,
            message: violation.message,
            raw: String::from_utf8_lossy(record.raw).into_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a record from the 7 values in `Column::ALL` order.
    fn record(values: [&'static str; 7]) -> RawRecord<'static> {
        let mut fields = [None; 7];
        for (slot, v) in fields.iter_mut().zip(values) {
            *slot = Some(v.as_bytes());
        }
        RawRecord {
            position: Position {
                line: 2,
                offset: 10,
            },
            raw: b"raw",
            fields,
            field_count: 7,
            expected_fields: 7,
            oversized: None,
        }
    }

    fn good() -> [&'static str; 7] {
        [
            "1",
            "Card expense at EDF",
            "-952,40",
            "2023-11-28 06:35:12",
            "EDF",
            "refund",
            "debit",
        ]
    }

    fn validator() -> Validator {
        Validator::new(Arc::from("file:///data/a.csv"), DecimalMark::Comma)
    }

    fn rule_of(values: [&'static str; 7]) -> Rule {
        validator()
            .validate(&record(values))
            .expect_err("should be rejected")
            .rule
    }

    #[test]
    fn a_reference_row_becomes_a_transaction() {
        let tx = validator().validate(&record(good())).expect("valid");
        assert_eq!(tx.amount().cents(), -95240);
        assert_eq!(tx.side(), Side::Debit);
        assert_eq!(tx.merchant(), Some("EDF"));
        assert_eq!(tx.source_id(), "1");
        assert_eq!(tx.id(), identity::transaction_id("file:///data/a.csv", "1"));
    }

    #[test]
    fn each_rule_rejects_what_it_names() {
        let mut v = good();
        v[2] = "abc";
        assert_eq!(rule_of(v), Rule::AmountFormat);
        v[2] = "-1,234";
        assert_eq!(rule_of(v), Rule::AmountPrecision);
        v = good();
        v[3] = "yesterday";
        assert_eq!(rule_of(v), Rule::TimestampFormat);
        v = good();
        v[6] = "sideways";
        assert_eq!(rule_of(v), Rule::SideValue);
        v[6] = "credit";
        assert_eq!(rule_of(v), Rule::SideSign);
        v = good();
        v[5] = "  ";
        assert_eq!(rule_of(v), Rule::Required);
        v = good();
        v[2] = "0,00";
        assert_eq!(rule_of(v), Rule::SideSign);
    }

    #[test]
    fn a_missing_merchant_is_allowed() {
        let mut v = good();
        v[4] = "";
        assert_eq!(
            validator().validate(&record(v)).expect("valid").merchant(),
            None
        );
    }

    #[test]
    fn long_fields_and_bad_bytes_are_rejected() {
        let long: &'static str = Box::leak("x".repeat(1025).into_boxed_str());
        let mut v = good();
        v[1] = long;
        assert_eq!(rule_of(v), Rule::FieldLength);

        let mut rec = record(good());
        rec.fields[1] = Some(b"caf\xe9");
        let violation = validator().validate(&rec).expect_err("latin-1 byte");
        assert_eq!(
            (violation.rule, violation.field),
            (Rule::Encoding, Some(Column::Description))
        );
    }

    #[test]
    fn a_short_row_breaks_row_shape_and_keeps_its_line() {
        let mut rec = record(good());
        rec.field_count = 5;
        let v = validator().validate(&rec).expect_err("short row");
        assert_eq!(v.rule, Rule::RowShape);
        let rejected = validator().reject(&rec, v);
        assert_eq!(rejected.position.line, 2);
        assert_eq!(rejected.raw, "raw");
    }
}
