//! The model file loader (`txflow_learn::file::decode`) on any bytes. The
//! input is taken as a file without its checksum, and the right checksum
//! is appended, so that the fuzzer reaches past it (a random file is
//! refused there): the header, the sizes, the buckets and the weights.
//! Whatever loads must predict without panicking, and its encoding must
//! load and encode to the same bytes again (the input itself may spell its
//! JSON header another way).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

fuzz_target!(|data: &[u8]| {
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
    }
});
