//! A raw record: the fields of one input row as a source decoded them,
//! before any rule was applied.

use std::fmt;

/// The columns txflow reads. Inputs name them in a header; any other column
/// is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Column {
    Id,
    Description,
    Amount,
    Timestamp,
    Merchant,
    OperationType,
    Side,
}

impl Column {
    pub const ALL: [Column; 7] = [
        Column::Id,
        Column::Description,
        Column::Amount,
        Column::Timestamp,
        Column::Merchant,
        Column::OperationType,
        Column::Side,
    ];

    /// The header name, as the reference data spells it.
    pub fn name(self) -> &'static str {
        match self {
            Column::Id => "id",
            Column::Description => "description",
            Column::Amount => "amount",
            Column::Timestamp => "timestamp",
            Column::Merchant => "merchant",
            Column::OperationType => "operation_type",
            Column::Side => "side",
        }
    }

    /// Whether a file without this column is refused. Only `merchant` may be
    /// left out (some transactions, transfers among them, have none).
    pub fn required(self) -> bool {
        self != Column::Merchant
    }

    /// The column a header cell names, ignoring case and surrounding spaces.
    pub fn from_header(cell: &str) -> Option<Column> {
        let cell = cell.trim();
        Column::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(cell))
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a record starts in its source: the 1-based line number and the byte
/// offset from the start of the file (or, for a stream, the message offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub line: u64,
    pub offset: u64,
}

/// A record longer than its source's limit: only its start is kept (in
/// [`RawRecord::raw`]) and it has no fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Oversized {
    /// The whole record's length in bytes.
    pub length: u64,
    /// The source's limit.
    pub limit: u64,
    /// The record ran to the end of the input with a quote left open.
    pub unclosed_quote: bool,
}

/// One row's fields, borrowed from the source's buffers.
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a> {
    pub position: Position,
    /// The row as it stood in the input, without its line ending.
    pub raw: &'a [u8],
    /// The value of each [`Column`] (indexed by `Column as usize`), `None`
    /// when the file has no such column.
    pub fields: [Option<&'a [u8]>; 7],
    /// How many fields the row had, and how many the header announced.
    pub field_count: usize,
    pub expected_fields: usize,
    /// Set when the record was too long to read: `raw` is its start only.
    pub oversized: Option<Oversized>,
}

impl<'a> RawRecord<'a> {
    pub fn field(&self, column: Column) -> Option<&'a [u8]> {
        self.fields[column.index()]
    }
}
