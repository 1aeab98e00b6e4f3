//! Errors that stop the decoding of a file. Bad rows are not errors here:
//! they are decoded and left to the validation rules.

use txflow_core::Column;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error(
        "the header has no {} column{}: found [{found}]; add {} to the header, or fix its spelling",
        quoted(missing), if missing.len() > 1 { "s" } else { "" },
        if missing.len() > 1 { "them" } else { "it" }
    )]
    MissingColumns { missing: Vec<Column>, found: String },
    #[error("the header names column {column} twice; remove one of them")]
    DuplicateColumn { column: Column },
    #[error(
        "the record starting at line {line} is longer than {limit} bytes; \
         look for an unclosed quote on or after that line"
    )]
    RecordTooLong { line: u64, limit: usize },
}

fn quoted(columns: &[Column]) -> String {
    columns
        .iter()
        .map(|c| format!("'{c}'"))
        .collect::<Vec<_>>()
        .join(", ")
}
