//! The value types of a transaction. Each is built by a parser that checks
//! it, so a [`Transaction`] in hand is always valid.

use std::fmt;

use chrono::{DateTime, NaiveDateTime, Utc};
use uuid::Uuid;

use crate::category::Category;

/// A transaction's identity: a UUID, kept from the input or derived from it
/// (see [`crate::identity`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransactionId(Uuid);

impl TransactionId {
    /// A stored id in its text form (a UUID); `None` for anything else.
    pub fn parse(text: &str) -> Option<TransactionId> {
        Uuid::parse_str(text.trim()).ok().map(TransactionId)
    }

    pub fn from_uuid(uuid: Uuid) -> Self {
        TransactionId(uuid)
    }

    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl fmt::Display for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Which way the money went. Bank exports say `debit` for money out and
/// `credit` for money in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Debit,
    Credit,
}

impl Side {
    /// Parses `debit` or `credit`, in any letter case.
    pub fn parse(s: &str) -> Option<Side> {
        if s.eq_ignore_ascii_case("debit") {
            Some(Side::Debit)
        } else if s.eq_ignore_ascii_case("credit") {
            Some(Side::Credit)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Side::Debit => "debit",
            Side::Credit => "credit",
        }
    }
}

/// Which character separates the units from the cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecimalMark {
    /// `-952.40`
    Point,
    /// `-952,40`, as French bank exports write it.
    Comma,
}

impl DecimalMark {
    pub fn as_char(self) -> char {
        match self {
            DecimalMark::Point => '.',
            DecimalMark::Comma => ',',
        }
    }
}

/// A money amount in cents (hundredths of the currency unit). Negative for a
/// debit, positive for a credit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Amount(pub(crate) i64);

/// Why a text is not an [`Amount`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmountError {
    /// Not a plain decimal number (letters, exponent, wrong decimal mark, ...).
    NotANumber,
    /// More than two significant decimals.
    TooPrecise,
    /// Beyond ±9,999,999,999,999.99, the largest amount stored.
    OutOfRange,
}

impl fmt::Display for AmountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AmountError::NotANumber => "not a plain decimal number",
            AmountError::TooPrecise => "more than 2 decimals",
            AmountError::OutOfRange => "beyond ±9,999,999,999,999.99",
        })
    }
}

impl Amount {
    /// The largest magnitude stored, in cents: `numeric(15,2)` in PostgreSQL.
    pub const MAX_CENTS: i64 = 999_999_999_999_999;

    pub fn from_cents(cents: i64) -> Option<Amount> {
        (cents.abs() <= Self::MAX_CENTS).then_some(Amount(cents))
    }

    pub fn cents(self) -> i64 {
        self.0
    }

    /// Parses `[+-]digits[<mark>digits]`. Decimals past the second must be
    /// zeros (`12.500` is 12.50; `12.505` is refused, never rounded).
    pub fn parse(text: &str, mark: DecimalMark) -> Result<Amount, AmountError> {
        let (negative, body) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let (units, decimals) = match body.split_once(mark.as_char()) {
            Some((u, d)) => (u, d),
            None => (body, ""),
        };
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if units.is_empty() && decimals.is_empty()
            || !all_digits(units)
            || !all_digits(decimals)
            || (body.contains(mark.as_char()) && decimals.is_empty())
        {
            return Err(AmountError::NotANumber);
        }
        if decimals.len() > 2 && decimals[2..].bytes().any(|b| b != b'0') {
            return Err(AmountError::TooPrecise);
        }
        let mut cents: i64 = 0;
        for b in units.bytes() {
            cents = cents
                .checked_mul(10)
                .and_then(|c| c.checked_add(i64::from(b - b'0')))
                .ok_or(AmountError::OutOfRange)?;
        }
        let dec = decimals.as_bytes();
        let digit = |i: usize| dec.get(i).map_or(0, |b| i64::from(b - b'0'));
        cents = cents
            .checked_mul(100)
            .and_then(|c| c.checked_add(digit(0) * 10 + digit(1)))
            .ok_or(AmountError::OutOfRange)?;
        if cents > Self::MAX_CENTS {
            return Err(AmountError::OutOfRange);
        }
        Ok(Amount(if negative { -cents } else { cents }))
    }
}

impl fmt::Display for Amount {
    /// Always with a decimal point and two decimals: `-952.40`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

/// Parses a timestamp: RFC 3339 (`2023-11-28T06:35:12Z`, with any offset), or
/// a naive `YYYY-MM-DD HH:MM:SS` / `YYYY-MM-DDTHH:MM:SS`, with optional
/// fractional seconds, which is taken as UTC.
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .map(|t| t.and_utc())
}

/// A valid bank transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Transaction {
    pub(crate) id: TransactionId,
    pub(crate) source_id: String,
    pub(crate) description: String,
    pub(crate) amount: Amount,
    pub(crate) timestamp: DateTime<Utc>,
    pub(crate) merchant: Option<String>,
    pub(crate) operation_type: String,
    pub(crate) side: Side,
}

impl Transaction {
    pub fn id(&self) -> TransactionId {
        self.id
    }
    /// The id as the input wrote it (an integer in the reference data).
    pub fn source_id(&self) -> &str {
        &self.source_id
    }
    pub fn description(&self) -> &str {
        &self.description
    }
    pub fn amount(&self) -> Amount {
        self.amount
    }
    pub fn timestamp(&self) -> DateTime<Utc> {
        self.timestamp
    }
    pub fn merchant(&self) -> Option<&str> {
        self.merchant.as_deref()
    }
    pub fn operation_type(&self) -> &str {
        &self.operation_type
    }
    pub fn side(&self) -> Side {
        self.side
    }
}

/// A transaction's parts, each already parsed: for adapters that receive
/// typed values (a JSON request, an event) rather than a CSV row.
#[derive(Debug, Clone)]
pub struct TransactionParts {
    pub id: TransactionId,
    pub source_id: String,
    pub description: String,
    pub amount: Amount,
    pub timestamp: DateTime<Utc>,
    pub merchant: Option<String>,
    pub operation_type: String,
    pub side: Side,
}

impl From<TransactionParts> for Transaction {
    fn from(p: TransactionParts) -> Transaction {
        Transaction {
            id: p.id,
            source_id: p.source_id,
            description: p.description,
            amount: p.amount,
            timestamp: p.timestamp,
            merchant: p.merchant,
            operation_type: p.operation_type,
            side: p.side,
        }
    }
}

/// A classifier's answer for one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub transaction_id: TransactionId,
    pub category: Category,
    /// In [0, 1]; `None` when the model service did not say.
    pub confidence: Option<f64>,
    pub model_version: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_in_both_decimal_marks() {
        assert_eq!(
            Amount::parse("-952,40", DecimalMark::Comma),
            Ok(Amount(-95240))
        );
        assert_eq!(
            Amount::parse("184.91", DecimalMark::Point),
            Ok(Amount(18491))
        );
        assert_eq!(Amount::parse("+7", DecimalMark::Point), Ok(Amount(700)));
        assert_eq!(Amount::parse("0,5", DecimalMark::Comma), Ok(Amount(50)));
        assert_eq!(Amount::parse(",5", DecimalMark::Comma), Ok(Amount(50)));
        assert_eq!(
            Amount::parse("12.500", DecimalMark::Point),
            Ok(Amount(1250))
        );
    }

    #[test]
    fn amounts_refuse_what_is_not_a_two_decimal_number() {
        use AmountError::*;
        for (text, mark, err) in [
            ("12.505", DecimalMark::Point, TooPrecise),
            ("12,50", DecimalMark::Point, NotANumber),
            ("1e3", DecimalMark::Point, NotANumber),
            ("NaN", DecimalMark::Point, NotANumber),
            ("inf", DecimalMark::Point, NotANumber),
            ("", DecimalMark::Point, NotANumber),
            ("-", DecimalMark::Point, NotANumber),
            ("5.", DecimalMark::Point, NotANumber),
            ("1 000,00", DecimalMark::Comma, NotANumber),
            ("99999999999999999999", DecimalMark::Point, OutOfRange),
            ("10000000000000.00", DecimalMark::Point, OutOfRange),
        ] {
            assert_eq!(Amount::parse(text, mark), Err(err), "{text:?}");
        }
    }

    #[test]
    fn amounts_print_with_a_point_and_two_decimals() {
        assert_eq!(Amount(-95240).to_string(), "-952.40");
        assert_eq!(Amount(5).to_string(), "0.05");
        assert_eq!(Amount(-5).to_string(), "-0.05");
    }

    #[test]
    fn timestamps_parse_naive_and_rfc3339() {
        let naive = parse_timestamp("2023-11-28 06:35:12").expect("naive");
        let rfc = parse_timestamp("2023-11-28T07:35:12+01:00").expect("rfc3339");
        assert_eq!(naive, rfc);
        assert!(parse_timestamp("2023-11-28T06:35:12.250Z").is_some());
        assert!(parse_timestamp("28/11/2023 06:35").is_none());
        assert!(parse_timestamp("2023-02-30 00:00:00").is_none());
    }
}
