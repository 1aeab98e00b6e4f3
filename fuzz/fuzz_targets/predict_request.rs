//! The `POST /predict` request parser: any bytes as a body. A body that
//! does not parse must come with at least one problem to show (the 422
//! lists them); every item of one that does parses or names the rule it
//! breaks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use txflow_http::contract::{PredictItem, shape_problems, validator};

fuzz_target!(|data: &[u8]| {
    let validator = validator();
    match serde_json::from_slice::<Vec<PredictItem<'_>>>(data) {
        Ok(items) => {
            for (index, item) in items.iter().enumerate() {
                if let Err(problem) = item.parse(index, &validator) {
                    assert_eq!(problem.index, Some(index));
                    assert!(problem.rule.is_some(), "a refused item names the rule");
                }
            }
        }
        Err(_) => assert!(!shape_problems(data).is_empty(), "a bad body names its problems"),
    }
});
