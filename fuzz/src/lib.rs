//! What each fuzz target checks, as plain functions of the input bytes:
//! the cargo fuzz targets (`fuzz_targets/`, nightly, libFuzzer) call them,
//! and `cargo test` replays the seeds and seeded mutations of them through
//! the same functions on the stable toolchain
//! (`crates/txflow-cli/tests/it/fuzz_replay.rs` includes this file). Each
//! panics when the property it states does not hold, and returns whether
//! the input got past the parser (so the replay can tell that its mutants
//! reach both sides).

use std::sync::Arc;

use sha2::{Digest, Sha256};
use txflow_core::transaction::DecimalMark;
use txflow_core::{Column, Position, Validator};
use txflow_csv::{Decoded, Decoder, Dialect, KEPT_BYTES};
use txflow_http::contract::{PredictItem, shape_problems, validator};
use txflow_kafka::event::{DecodeError, EventFields};

/// The CSV decoder, both dialects (detected, or forced by the first byte),
/// the input pushed in chunks whose sizes the first byte picks. Every
/// record it hands over must point at its own raw text, and validating it
/// must not panic.
pub fn csv_decoder(data: &[u8]) -> bool {
    let Some((&control, input)) = data.split_first() else {
        return false;
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
    let mut records = 0;
    loop {
        let step = match decoder.advance() {
            Ok(step) => step,
            // A bad header stops a file; that is an answer, not a crash.
            Err(_) => return false,
        };
        match step {
            Decoded::NeedInput => match chunks.next() {
                Some(c) => decoder.push(c),
                None => decoder.finish(),
            },
            Decoded::Record => {
                records += 1;
                let record = decoder.record();
                let offset = record.position.offset as usize;
                assert!(last_offset < Some(offset), "records move forward");
                last_offset = Some(offset);
                if record.oversized.is_some() {
                    assert!(record.raw.len() <= KEPT_BYTES);
                }
                let at = input.get(offset..).expect("the offset is inside the input");
                assert!(
                    at.starts_with(record.raw),
                    "raw text is the input at the offset"
                );
                let validator = validator.get_or_insert_with(|| {
                    Validator::new(Arc::from("fuzz://input.csv"), decoder.dialect().decimal)
                });
                let _ = validator.validate(&record);
            }
            Decoded::End => return records > 0,
        }
    }
}

/// The Kafka transaction event decoder: any bytes as a record value. It
/// must read what `serde_json::Value` reads (the same fields, the same
/// refusals), and a decoded event must give a record the core's validator
/// judges without panicking.
pub fn kafka_event(data: &[u8]) -> bool {
    let decoded = EventFields::decode(Some(data));
    if !data.is_empty() {
        let fields = decoded.as_ref().map(|event| {
            event
                .record(Position { line: 1, offset: 1 })
                .fields
                .map(|f| f.map(|f| String::from_utf8(f.to_vec()).expect("text")))
        });
        assert_eq!(
            fields.map_err(Clone::clone),
            event_by_value(data),
            "decoded as a Value would be"
        );
    }
    let Ok(event) = decoded else {
        return false;
    };
    let validator =
        Validator::new(Arc::from("kafka://fuzz/0"), DecimalMark::Point).requiring_uuid_ids();
    let record = event.record(Position { line: 1, offset: 1 });
    assert_eq!(record.raw, data);
    let _ = validator.validate(&record);
    true
}

/// The event's fields as the decoder read them before it streamed them:
/// through a `serde_json::Value`.
fn event_by_value(data: &[u8]) -> Result<[Option<String>; 7], DecodeError> {
    use serde_json::Value;
    let value: Value =
        serde_json::from_slice(data).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    let Value::Object(object) = value else {
        return Err(DecodeError::NotAnObject);
    };
    let mut fields: [Option<String>; 7] = Default::default();
    for column in Column::ALL {
        fields[column as usize] = match object.get(column.name()) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(_) => {
                return Err(DecodeError::NotAScalar {
                    field: column.name().to_owned(),
                });
            }
        };
    }
    Ok(fields)
}

/// The `POST /predict` request parser: any bytes as a body. A body that
/// does not parse must come with at least one problem to show (the 422
/// lists them); every item of one that does parses or names the rule it
/// breaks.
pub fn predict_request(data: &[u8]) -> bool {
    let validator = validator();
    match serde_json::from_slice::<Vec<PredictItem<'_>>>(data) {
        Ok(items) => {
            for (index, item) in items.iter().enumerate() {
                if let Err(problem) = item.parse(index, &validator) {
                    assert_eq!(problem.index, Some(index));
                    assert!(problem.rule.is_some(), "a refused item names the rule");
                }
            }
            true
        }
        Err(_) => {
            assert!(
                !shape_problems(data).is_empty(),
                "a bad body names its problems"
            );
            false
        }
    }
}

/// The model file loader (`txflow_learn::file::decode`) on any bytes. The
/// input is taken as a file without its checksum, and the right checksum
/// is appended, so that the fuzzer reaches past it (a random file is
/// refused there): the header, the sizes, the buckets and the weights.
/// Whatever loads must predict without panicking, and its encoding must
/// load and encode to the same bytes again (the input itself may spell its
/// JSON header another way).
pub fn model_file(data: &[u8]) -> bool {
    let _ = txflow_learn::file::decode(data);
    let mut file = data.to_vec();
    file.extend_from_slice(&Sha256::digest(data));
    if let Ok(model) = txflow_learn::file::decode(&file) {
        let (index, confidence) = model.best(&txflow_learn::Input {
            description: "[debit] COFFEE SHOP 1234",
            ..Default::default()
        });
        assert!(index < model.labels().len());
        assert!((0.0..=1.0).contains(&confidence) || confidence.is_nan());
        let encoded = txflow_learn::file::encode(&model);
        let again = txflow_learn::file::decode(&encoded).expect("its own encoding loads");
        assert_eq!(txflow_learn::file::encode(&again), encoded);
        return true;
    }
    false
}
