//! Reading back what txflow wrote, column by column: a value that does not
//! parse is a conversion error naming its column, which the caller's
//! `query(path, what)` turns into an error naming the file.

use std::fmt;

use chrono::{DateTime, Utc};
use rusqlite::Row;
use rusqlite::types::Type;
use txflow_core::review::{self, Ranked};
use txflow_core::transaction::{Amount, Side, TransactionId};
use txflow_core::{Category, LabelSource};

/// Every row `sql` gives for `params`, each made by `row`; the statement is
/// prepared once per connection and kept. One error to map, whichever step
/// failed.
pub(crate) fn all<T>(
    conn: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
    row: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    conn.prepare_cached(sql)?.query_map(params, row)?.collect()
}

/// What a column held that txflow did not write.
#[derive(Debug)]
struct Unreadable(String);

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not what txflow writes: {}", self.0)
    }
}

impl std::error::Error for Unreadable {}

/// Column `i` as text, parsed by `parse`.
fn parsed<T>(
    r: &Row<'_>,
    i: usize,
    what: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> rusqlite::Result<T> {
    let text: String = r.get(i)?;
    parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            Type::Text,
            Box::new(Unreadable(format!("{what} {text:?}"))),
        )
    })
}

pub(crate) fn id(r: &Row<'_>, i: usize) -> rusqlite::Result<TransactionId> {
    parsed(r, i, "transaction id", TransactionId::parse)
}

pub(crate) fn time(r: &Row<'_>, i: usize) -> rusqlite::Result<DateTime<Utc>> {
    parsed(r, i, "time", |t| {
        DateTime::parse_from_rfc3339(t)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    })
}

pub(crate) fn category(r: &Row<'_>, i: usize) -> rusqlite::Result<Category> {
    parsed(r, i, "category", |c| Category::new(c).ok())
}

pub(crate) fn side(r: &Row<'_>, i: usize) -> rusqlite::Result<Side> {
    parsed(r, i, "side", Side::parse)
}

pub(crate) fn source(r: &Row<'_>, i: usize) -> rusqlite::Result<LabelSource> {
    parsed(r, i, "label source", LabelSource::parse)
}

pub(crate) fn run_status(r: &Row<'_>, i: usize) -> rusqlite::Result<txflow_core::RunStatus> {
    parsed(r, i, "run status", txflow_core::RunStatus::parse)
}

pub(crate) fn model_kind(
    r: &Row<'_>,
    i: usize,
) -> rusqlite::Result<txflow_core::registry::ModelKind> {
    parsed(r, i, "model kind", txflow_core::registry::ModelKind::parse)
}

pub(crate) fn top(r: &Row<'_>, i: usize) -> rusqlite::Result<Vec<Ranked>> {
    parsed(r, i, "ranking", review::decode_top)
}

/// Column `i` holds cents (`CAST(round(amount * 100) AS INTEGER)`).
pub(crate) fn amount(r: &Row<'_>, i: usize) -> rusqlite::Result<Amount> {
    let cents: i64 = r.get(i)?;
    Amount::from_cents(cents).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            Type::Integer,
            Box::new(Unreadable(format!("amount of {cents} cents"))),
        )
    })
}
