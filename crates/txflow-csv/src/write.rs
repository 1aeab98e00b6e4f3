//! Writing CSV: generated transactions and rejected rows.

use txflow_core::transaction::DecimalMark;
use txflow_core::{RejectedRecord, Transaction};

use crate::dialect::Dialect;

/// The header of a transactions file.
pub fn transaction_header(out: &mut Vec<u8>, dialect: Dialect) {
    let names = [
        "id",
        "description",
        "amount",
        "timestamp",
        "merchant",
        "operation_type",
        "side",
    ];
    join(out, dialect.delimiter, names.iter().map(|n| n.as_bytes()));
}

/// One transaction, as the dialect writes it: the reference dialect quotes
/// every text and writes `-952,40` and `2023-11-28 06:35:12`, like the
/// original system's exports; the common one quotes only where needed and
/// writes `-952.40` and RFC 3339.
pub fn transaction(out: &mut Vec<u8>, tx: &Transaction, dialect: Dialect) {
    let reference = dialect == Dialect::REFERENCE;
    let d = dialect.delimiter;
    let text = |out: &mut Vec<u8>, s: &str| {
        if reference {
            quote(out, s.as_bytes());
        } else {
            field(out, s.as_bytes(), d);
        }
    };
    field(out, tx.source_id().as_bytes(), d);
    out.push(d);
    text(out, tx.description());
    out.push(d);
    let amount = tx.amount().to_string();
    if dialect.decimal == DecimalMark::Comma {
        out.extend(amount.bytes().map(|b| if b == b'.' { b',' } else { b }));
    } else {
        out.extend_from_slice(amount.as_bytes());
    }
    out.push(d);
    let ts = if reference {
        tx.timestamp().format("%Y-%m-%d %H:%M:%S").to_string()
    } else {
        tx.timestamp().to_rfc3339_opts(chrono_secs(), true)
    };
    text(out, &ts);
    out.push(d);
    text(out, tx.merchant().unwrap_or(""));
    out.push(d);
    text(out, tx.operation_type());
    out.push(d);
    text(out, tx.side().as_str());
    out.push(b'\n');
}

fn chrono_secs() -> chrono::SecondsFormat {
    chrono::SecondsFormat::Secs
}

/// The header of a rejected-rows file.
pub fn rejected_header(out: &mut Vec<u8>) {
    let names = [
        "source", "line", "offset", "rule", "field", "message", "raw",
    ];
    join(out, b',', names.iter().map(|n| n.as_bytes()));
}

/// One rejected row, comma-separated, quoted where needed.
pub fn rejected(out: &mut Vec<u8>, r: &RejectedRecord) {
    let line = r.position.line.to_string();
    let offset = r.position.offset.to_string();
    let cells: [&[u8]; 7] = [
        r.source.as_bytes(),
        line.as_bytes(),
        offset.as_bytes(),
        r.rule.name().as_bytes(),
        r.field.map_or(&b""[..], |f| f.name().as_bytes()),
        r.message.as_bytes(),
        r.raw.as_bytes(),
    ];
    join(out, b',', cells.into_iter());
}

pub(crate) fn join<'a>(out: &mut Vec<u8>, delimiter: u8, cells: impl Iterator<Item = &'a [u8]>) {
    for (i, cell) in cells.enumerate() {
        if i > 0 {
            out.push(delimiter);
        }
        field(out, cell, delimiter);
    }
    out.push(b'\n');
}

/// A field, quoted only if it holds the delimiter, a quote or a line break.
fn field(out: &mut Vec<u8>, value: &[u8], delimiter: u8) {
    if value
        .iter()
        .any(|&b| b == delimiter || b == b'"' || b == b'\n' || b == b'\r')
    {
        quote(out, value);
    } else {
        out.extend_from_slice(value);
    }
}

fn quote(out: &mut Vec<u8>, value: &[u8]) {
    out.push(b'"');
    for &b in value {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}
