//! The CSV decoder, both dialects (detected, or forced by the first byte),
//! the input pushed in chunks whose sizes the fuzzer picks. Every record it
//! hands over must point at its own raw text, and validating it must not
//! panic.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use txflow_core::Validator;
use txflow_csv::{Decoded, Decoder, Dialect, KEPT_BYTES};

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let dialect = match control % 3 {
        0 => None,
        1 => Some(Dialect::REFERENCE),
        _ => Some(Dialect::COMMON),
    };
    let chunk = usize::from(control / 3).max(1);
    let mut decoder = Decoder::new(dialect);
    let mut chunks = input.chunks(chunk);
    let mut validator: Option<Validator> = None;
    let mut last_offset = None;
    loop {
        let step = match decoder.advance() {
            Ok(step) => step,
            // A bad header stops a file; that is an answer, not a crash.
            Err(_) => return,
        };
        match step {
            Decoded::NeedInput => match chunks.next() {
                Some(c) => decoder.push(c),
                None => decoder.finish(),
            },
            Decoded::Record => {
                let record = decoder.record();
                let offset = record.position.offset as usize;
                assert!(last_offset < Some(offset), "records move forward");
                last_offset = Some(offset);
                if record.oversized.is_some() {
                    assert!(record.raw.len() <= KEPT_BYTES);
                }
                let at = input.get(offset..).expect("the offset is inside the input");
                assert!(at.starts_with(record.raw), "raw text is the input at the offset");
                let validator = validator.get_or_insert_with(|| {
                    Validator::new(Arc::from("fuzz://input.csv"), decoder.dialect().decimal)
                });
                let _ = validator.validate(&record);
            }
            Decoded::End => return,
        }
    }
});
