//! Reading back what txflow wrote: a value that does not parse is a
//! corrupt database, named with the file.

use std::path::Path;

use chrono::{DateTime, Utc};
use txflow_core::Category;
use txflow_core::transaction::{Amount, TransactionId};

use crate::{Error, Result};

/// A value read back that is not what txflow wrote.
pub(crate) fn corrupt(path: &Path, what: String) -> Error {
    Error::Corrupt {
        path: path.to_owned(),
        what,
    }
}

pub(crate) fn id_of(path: &Path, text: &str) -> Result<TransactionId> {
    uuid::Uuid::parse_str(text)
        .map(TransactionId::from_uuid)
        .map_err(|_| corrupt(path, format!("transaction id {text:?}")))
}

pub(crate) fn time_of(path: &Path, text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| corrupt(path, format!("time {text:?}")))
}

pub(crate) fn category_of(path: &Path, name: &str) -> Result<Category> {
    Category::new(name).map_err(|e| corrupt(path, e.to_string()))
}

pub(crate) fn amount_of(path: &Path, cents: i64) -> Result<Amount> {
    Amount::from_cents(cents).ok_or_else(|| corrupt(path, format!("amount of {cents} cents")))
}
