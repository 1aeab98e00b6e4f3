//! The `POST /predict` request parser: any bytes as a body. A body that
//! does not parse must come with at least one problem to show (the 422
//! lists them); every item of one that does parses or names its problems.
#![no_main]

use libfuzzer_sys::fuzz_target;
use txflow_http::contract::{PredictItem, shape_problems};

fuzz_target!(|data: &[u8]| {
    match serde_json::from_slice::<Vec<PredictItem<'_>>>(data) {
        Ok(items) => {
            for (index, item) in items.iter().enumerate() {
                if let Err(problems) = item.parse(index) {
                    assert!(!problems.is_empty(), "a refused item names its problems");
                    assert!(problems.iter().all(|p| p.index == Some(index)));
                }
            }
        }
        Err(_) => assert!(!shape_problems(data).is_empty(), "a bad body names its problems"),
    }
});
