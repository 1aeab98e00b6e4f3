//! cargo fuzz target: `txflow_fuzz::model_file` (its checks are in src/lib.rs,
//! which `cargo test` also replays on the seeds).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    txflow_fuzz::model_file(data);
});
