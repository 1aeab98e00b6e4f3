//! What the writer writes, the decoder and the validator read back unchanged.

use std::sync::Arc;

use txflow_core::synth::{Generator, IdStyle};
use txflow_core::{Transaction, Validator};
use txflow_csv::{Decoded, Decoder, Dialect, write};

fn read_back(bytes: &[u8], location: &str) -> (Vec<Transaction>, Dialect) {
    let mut decoder = Decoder::new(None);
    decoder.push(bytes);
    decoder.finish();
    let mut out = Vec::new();
    while decoder.advance().expect("decodes") == Decoded::Record {
        let validator = Validator::new(Arc::from(location), decoder.dialect().decimal);
        out.push(validator.validate(&decoder.record()).expect("valid"));
    }
    (out, decoder.dialect())
}

#[test]
fn generated_files_read_back_in_both_dialects() {
    for (dialect, ids) in [
        (Dialect::REFERENCE, IdStyle::Sequential),
        (Dialect::COMMON, IdStyle::Uuid),
    ] {
        let written: Vec<Transaction> = Generator::new(42, ids).take(500).collect();
        let mut bytes = Vec::new();
        write::transaction_header(&mut bytes, dialect);
        for tx in &written {
            write::transaction(&mut bytes, tx, dialect);
        }
        let (read, detected) = read_back(&bytes, "synth:");
        assert_eq!(detected, dialect);
        assert_eq!(read.len(), written.len());
        for (r, w) in read.iter().zip(&written) {
            assert_eq!(
                (
                    r.source_id(),
                    r.description(),
                    r.amount(),
                    r.timestamp(),
                    r.merchant(),
                    r.operation_type(),
                    r.side()
                ),
                (
                    w.source_id(),
                    w.description(),
                    w.amount(),
                    w.timestamp(),
                    w.merchant(),
                    w.operation_type(),
                    w.side()
                )
            );
        }
    }
}
