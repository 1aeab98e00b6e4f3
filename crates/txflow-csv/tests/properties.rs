//! Generated files with injected faults, decoded in any chunking: every row
//! read is valid or rejected (read = valid + invalid), each rejected row's
//! line and byte offset point at its raw text, and the faults are the rows
//! rejected (proptest).

use std::sync::Arc;

use proptest::prelude::*;
use txflow_core::synth::{Generator, IdStyle};
use txflow_core::transaction::DecimalMark;
use txflow_core::{Transaction, Validator};
use txflow_csv::{Decoded, Decoder, Dialect};

/// What is done to one row.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    None,
    BadAmount,
    ShortRow,
    ExtraField,
    EmptyId,
    BadSide,
    NotUtf8,
    /// Valid: a line break inside the quoted description.
    QuotedLineBreak,
    /// Valid: a blank line before the row.
    BlankLineBefore,
    /// Valid: the row ends with CRLF.
    Crlf,
}

impl Fault {
    fn breaks_a_rule(self) -> bool {
        matches!(
            self,
            Fault::BadAmount
                | Fault::ShortRow
                | Fault::ExtraField
                | Fault::EmptyId
                | Fault::BadSide
                | Fault::NotUtf8
        )
    }
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        6 => Just(Fault::None),
        1 => Just(Fault::BadAmount),
        1 => Just(Fault::ShortRow),
        1 => Just(Fault::ExtraField),
        1 => Just(Fault::EmptyId),
        1 => Just(Fault::BadSide),
        1 => Just(Fault::NotUtf8),
        1 => Just(Fault::QuotedLineBreak),
        1 => Just(Fault::BlankLineBefore),
        1 => Just(Fault::Crlf),
    ]
}

fn quoted(text: &[u8]) -> Vec<u8> {
    let mut out = vec![b'"'];
    for &b in text {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
    out
}

/// One row's fields as the dialect writes them, with `fault` applied.
fn row(tx: &Transaction, dialect: Dialect, fault: Fault) -> Vec<Vec<u8>> {
    let amount = tx.amount().to_string();
    let amount = match dialect.decimal {
        DecimalMark::Comma => amount.replace('.', ","),
        DecimalMark::Point => amount,
    };
    let timestamp = if dialect == Dialect::REFERENCE {
        tx.timestamp().format("%Y-%m-%d %H:%M:%S").to_string()
    } else {
        tx.timestamp().to_rfc3339()
    };
    let mut description = tx.description().as_bytes().to_vec();
    match fault {
        Fault::QuotedLineBreak => description.extend_from_slice(b"\nsecond line"),
        Fault::NotUtf8 => description.push(0xFF),
        _ => {}
    }
    let mut fields = vec![
        tx.source_id().as_bytes().to_vec(),
        quoted(&description),
        amount.into_bytes(),
        quoted(timestamp.as_bytes()),
        quoted(tx.merchant().unwrap_or("").as_bytes()),
        quoted(tx.operation_type().as_bytes()),
        quoted(tx.side().as_str().as_bytes()),
    ];
    match fault {
        Fault::BadAmount => fields[2] = b"12x".to_vec(),
        Fault::ShortRow => {
            fields.pop();
        }
        Fault::ExtraField => fields.push(b"extra".to_vec()),
        Fault::EmptyId => fields[0].clear(),
        Fault::BadSide => fields[6] = b"sideways".to_vec(),
        _ => {}
    }
    fields
}

/// A file of `faults.len()` rows; returns it and each row's raw text.
fn file(seed: u64, dialect: Dialect, faults: &[Fault]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let d = dialect.delimiter;
    let mut out = format!(
        "id{0}description{0}amount{0}timestamp{0}merchant{0}operation_type{0}side\n",
        d as char
    )
    .into_bytes();
    let mut generator = Generator::new(seed, IdStyle::Sequential);
    let mut raws = Vec::new();
    for &fault in faults {
        let tx = generator.next_transaction();
        let raw = row(&tx, dialect, fault).join(&d);
        if fault == Fault::BlankLineBefore {
            out.push(b'\n');
        }
        out.extend_from_slice(&raw);
        out.extend_from_slice(if fault == Fault::Crlf { b"\r\n" } else { b"\n" });
        raws.push(raw);
    }
    (out, raws)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn rows_read_are_valid_or_rejected_and_each_points_at_its_text(
        seed: u64,
        reference: bool,
        faults in prop::collection::vec(fault(), 1..60),
        chunk in 1usize..200,
    ) {
        let dialect = if reference { Dialect::REFERENCE } else { Dialect::COMMON };
        let (input, raws) = file(seed, dialect, &faults);
        let mut decoder = Decoder::new(None);
        let mut chunks = input.chunks(chunk);
        let validator = Validator::new(Arc::from("file:///generated.csv"), dialect.decimal);
        let (mut read, mut valid, mut invalid) = (0usize, 0usize, 0usize);
        loop {
            match decoder.advance().expect("a good header") {
                Decoded::NeedInput => match chunks.next() {
                    Some(c) => decoder.push(c),
                    None => decoder.finish(),
                },
                Decoded::Record => {
                    let record = decoder.record();
                    let offset = record.position.offset as usize;
                    prop_assert!(input[offset..].starts_with(record.raw));
                    let line = 1 + input[..offset].iter().filter(|&&b| b == b'\n').count() as u64;
                    prop_assert_eq!(record.position.line, line);
                    prop_assert_eq!(record.raw, &raws[read][..], "row {}", read);
                    match validator.validate(&record) {
                        Ok(_) => {
                            valid += 1;
                            prop_assert!(!faults[read].breaks_a_rule(), "row {} {:?} accepted", read, faults[read]);
                        }
                        Err(violation) => {
                            invalid += 1;
                            prop_assert!(faults[read].breaks_a_rule(), "row {} {:?}: {:?}", read, faults[read], violation);
                            let rejected = validator.reject(&record, violation);
                            prop_assert_eq!(rejected.position, record.position);
                            let raw = String::from_utf8_lossy(record.raw);
                            prop_assert_eq!(rejected.raw.as_str(), raw.as_ref());
                        }
                    }
                    read += 1;
                }
                Decoded::End => break,
            }
        }
        prop_assert_eq!(read, faults.len());
        prop_assert_eq!(read, valid + invalid);
        prop_assert_eq!(invalid, faults.iter().filter(|f| f.breaks_a_rule()).count());
        prop_assert_eq!(decoder.dialect(), dialect);
    }
}
