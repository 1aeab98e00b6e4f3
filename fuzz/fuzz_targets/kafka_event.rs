//! The Kafka transaction event decoder: any bytes as a record value. A
//! decoded event must give a record the core's validator judges without
//! panicking.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use txflow_core::transaction::DecimalMark;
use txflow_core::{Position, Validator};
use txflow_kafka::event::EventFields;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = EventFields::decode(Some(data)) else {
        return;
    };
    let validator = Validator::new(Arc::from("kafka://fuzz/0"), DecimalMark::Point)
        .requiring_uuid_ids();
    let record = event.record(Position { line: 1, offset: 1 });
    assert_eq!(record.raw, data);
    let _ = validator.validate(&record);
});
