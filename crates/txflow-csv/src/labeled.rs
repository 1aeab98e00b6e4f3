//! Labeled files: what `txflow train` and `txflow evaluate` read.
//!
//! A header names `description` and `category` (required) and, when
//! present, `merchant`, `amount`, `side`, `operation_type` and
//! `transaction_id` (what `txflow review import` matches labels by); other
//! columns are ignored. Both dialects: the delimiter is detected from the header,
//! the amount's decimal mark follows it (`;` files write `-12,50`).
//! [`write_header`] and [`write_row`] write the common dialect.

use txflow_core::Side;
use txflow_core::transaction::{Amount, DecimalMark};

use crate::dialect::Dialect;

/// One labeled row, its fields checked.
#[derive(Debug, Clone, PartialEq)]
pub struct LabeledRecord {
    /// The row's number in the file, the header being row 1.
    pub row: u64,
    pub description: String,
    pub category: String,
    pub merchant: Option<String>,
    pub amount: Option<Amount>,
    pub side: Option<Side>,
    pub operation_type: Option<String>,
    /// The stored transaction the label is for (`txflow review export`).
    pub transaction_id: Option<String>,
}

/// Why a labeled file cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabeledError {
    #[error(
        "the header has no '{column}' column: found [{found}]; a labeled file needs 'description' and 'category' (and may have merchant, amount, side, operation_type)"
    )]
    MissingColumn { column: &'static str, found: String },
    #[error("row {row}: {column} {value:?} {reason}")]
    BadValue {
        row: u64,
        column: &'static str,
        value: String,
        reason: String,
    },
    #[error("the file has no row under its header")]
    Empty,
}

const COLUMNS: [&str; 7] = [
    "description",
    "category",
    "merchant",
    "amount",
    "side",
    "operation_type",
    "transaction_id",
];

/// Every row of a labeled file.
pub fn read_labeled(bytes: &[u8]) -> Result<Vec<LabeledRecord>, LabeledError> {
    let header_end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(bytes.len());
    let delimiter = Dialect::detect_delimiter(&bytes[..header_end]);
    let decimal = Dialect::default_decimal(delimiter);
    let mut reader = csv_core::ReaderBuilder::new().delimiter(delimiter).build();
    let mut input = bytes;
    let mut field: Vec<u8> = Vec::new();
    let mut buffer = [0u8; 8192];
    let mut record: Vec<String> = Vec::new();
    let mut index: Option<[Option<usize>; COLUMNS.len()]> = None;
    let mut rows = Vec::new();
    let mut row = 0u64;
    loop {
        let (result, read, written) = reader.read_field(input, &mut buffer);
        input = &input[read..];
        field.extend_from_slice(&buffer[..written]);
        match result {
            csv_core::ReadFieldResult::InputEmpty | csv_core::ReadFieldResult::OutputFull => {}
            csv_core::ReadFieldResult::Field { record_end } => {
                record.push(String::from_utf8_lossy(&field).into_owned());
                field.clear();
                if record_end {
                    row += 1;
                    match &index {
                        None => index = Some(header(&record)?),
                        Some(columns) => {
                            if !(record.len() == 1 && record[0].trim().is_empty()) {
                                rows.push(labeled(row, &record, columns, decimal)?);
                            }
                        }
                    }
                    record.clear();
                }
            }
            csv_core::ReadFieldResult::End => break,
        }
    }
    if rows.is_empty() {
        return Err(LabeledError::Empty);
    }
    Ok(rows)
}

fn header(record: &[String]) -> Result<[Option<usize>; COLUMNS.len()], LabeledError> {
    let mut index = [None; COLUMNS.len()];
    for (i, cell) in record.iter().enumerate() {
        let cell = cell.trim().trim_start_matches('\u{feff}');
        if let Some(c) = COLUMNS.iter().position(|c| c.eq_ignore_ascii_case(cell)) {
            index[c].get_or_insert(i);
        }
    }
    for (c, column) in COLUMNS.iter().enumerate().take(2) {
        if index[c].is_none() {
            return Err(LabeledError::MissingColumn {
                column,
                found: record.join(", "),
            });
        }
    }
    Ok(index)
}

fn labeled(
    row: u64,
    record: &[String],
    index: &[Option<usize>; COLUMNS.len()],
    decimal: DecimalMark,
) -> Result<LabeledRecord, LabeledError> {
    let get = |c: usize| {
        index[c]
            .and_then(|i| record.get(i))
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    };
    let bad = |column: &'static str, value: &str, reason: &str| LabeledError::BadValue {
        row,
        column,
        value: value.chars().take(80).collect(),
        reason: reason.to_owned(),
    };
    let description = get(0).ok_or_else(|| bad("description", "", "is empty"))?;
    let category =
        get(1).ok_or_else(|| bad("category", "", "is empty: label the row or remove it"))?;
    let amount = match get(3) {
        None => None,
        Some(text) => Some(Amount::parse(text, decimal).map_err(|e| {
            bad(
                "amount",
                text,
                &format!(
                    "is not an amount ({e}); write it as -12.50 (',' files) or -12,50 (';' files)"
                ),
            )
        })?),
    };
    let side = match get(4) {
        None => None,
        Some(text) => {
            Some(Side::parse(text).ok_or_else(|| bad("side", text, "is not debit or credit"))?)
        }
    };
    Ok(LabeledRecord {
        row,
        description: description.to_owned(),
        category: category.to_owned(),
        merchant: get(2).map(str::to_owned),
        amount,
        side,
        operation_type: get(5).map(str::to_owned),
        transaction_id: get(6).map(str::to_owned),
    })
}

/// The optional columns a labeled file being written carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Columns {
    pub merchant: bool,
    pub amount: bool,
    pub side: bool,
    pub operation_type: bool,
    pub transaction_id: bool,
}

/// One labeled row's fields, to write.
#[derive(Debug, Clone, Copy)]
pub struct LabeledFields<'a> {
    pub description: &'a str,
    pub category: &'a str,
    pub merchant: Option<&'a str>,
    pub amount: Option<Amount>,
    pub side: Option<Side>,
    pub operation_type: Option<&'a str>,
    pub transaction_id: Option<&'a str>,
}

/// The header of a labeled file (common dialect) with `columns`.
pub fn write_header(out: &mut Vec<u8>, columns: Columns) {
    let optional = [
        (columns.merchant, "merchant"),
        (columns.amount, "amount"),
        (columns.side, "side"),
        (columns.operation_type, "operation_type"),
        (columns.transaction_id, "transaction_id"),
    ];
    let names = ["description", "category"]
        .into_iter()
        .chain(optional.into_iter().filter(|(on, _)| *on).map(|(_, n)| n));
    crate::write::join(out, b',', names.map(str::as_bytes));
}

/// One row under [`write_header`]'s header with the same `columns`; an
/// absent value is an empty field.
pub fn write_row(out: &mut Vec<u8>, columns: Columns, row: &LabeledFields<'_>) {
    let mut cells = vec![row.description.to_owned(), row.category.to_owned()];
    if columns.merchant {
        cells.push(row.merchant.unwrap_or_default().to_owned());
    }
    if columns.amount {
        cells.push(row.amount.map(|a| a.to_string()).unwrap_or_default());
    }
    if columns.side {
        cells.push(row.side.map(|s| s.as_str()).unwrap_or_default().to_owned());
    }
    if columns.operation_type {
        cells.push(row.operation_type.unwrap_or_default().to_owned());
    }
    if columns.transaction_id {
        cells.push(row.transaction_id.unwrap_or_default().to_owned());
    }
    crate::write::join(out, b',', cells.iter().map(String::as_bytes));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_dialects_and_the_optional_columns_are_read() {
        let common = read_labeled(
            b"description,category\n[debit] UBER TRIP,Transportation\n\"A, quoted\",Shopping\n",
        )
        .expect("reads");
        assert_eq!(common.len(), 2);
        assert_eq!(common[1].description, "A, quoted");
        assert_eq!(common[1].row, 3);
        let reference = read_labeled(
            "merchant;description;amount;side;category;extra\nLidl;Courses;-12,50;debit;Food;x\n"
                .as_bytes(),
        )
        .expect("reads");
        assert_eq!(reference[0].amount, Amount::from_cents(-1250));
        assert_eq!(reference[0].side, Some(Side::Debit));
        assert_eq!(reference[0].merchant.as_deref(), Some("Lidl"));
    }

    #[test]
    fn a_written_file_reads_back() {
        let columns = Columns {
            amount: true,
            side: true,
            ..Columns::default()
        };
        let mut out = Vec::new();
        write_header(&mut out, columns);
        write_row(
            &mut out,
            columns,
            &LabeledFields {
                description: "Café, \"chez Paul\"",
                category: "Restaurants",
                merchant: None,
                amount: Amount::from_cents(-1250),
                side: Some(Side::Debit),
                operation_type: None,
                transaction_id: None,
            },
        );
        let back = read_labeled(&out).expect("reads");
        assert_eq!(back[0].description, "Café, \"chez Paul\"");
        assert_eq!(back[0].amount, Amount::from_cents(-1250));
        assert_eq!(back[0].side, Some(Side::Debit));
    }

    #[test]
    fn problems_name_the_row_the_column_and_the_fix() {
        let e = read_labeled(b"description,label\nx,y\n").expect_err("no category");
        assert!(e.to_string().contains("no 'category' column"), "{e}");
        let e = read_labeled(b"description,category,amount\nx,Food,12.5x\n").expect_err("amount");
        assert!(e.to_string().starts_with("row 2: amount \"12.5x\""), "{e}");
        let e = read_labeled(b"description,category\nx,\n").expect_err("empty");
        assert!(e.to_string().contains("row 2: category"), "{e}");
        assert_eq!(
            read_labeled(b"description,category\n"),
            Err(LabeledError::Empty)
        );
    }
}
