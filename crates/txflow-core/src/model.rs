//! The reference model: the original ML service's classifier, bit for bit.
//!
//! The original hashed the transaction UUID: `h = uuid.int % (2**61 - 1)`,
//! then picked `categories[h % 15]`. It always answered with confidence 1.0.

use crate::category::Category;
use crate::transaction::{Prediction, TransactionId};

/// The Mersenne prime 2^61 − 1 the original reduced the UUID by.
const MODULUS: u128 = (1 << 61) - 1;

/// The deterministic classifier every deployment has built in.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReferenceModel;

impl ReferenceModel {
    /// The version string stored with each prediction of this model.
    pub const VERSION: &'static str = "reference-1";

    /// The category of a transaction, from its id alone.
    pub fn category(id: TransactionId) -> Category {
        let h = id.as_uuid().as_u128() % MODULUS;
        // h % 15 < 15, so the index is always in range.
        Category::ALL[(h % 15) as usize]
    }

    /// The prediction of a transaction: its category, confidence 1.0.
    pub fn predict(id: TransactionId) -> Prediction {
        Prediction {
            transaction_id: id,
            category: ReferenceModel::category(id),
            confidence: Some(1.0),
            model_version: ReferenceModel::VERSION.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn category_of(s: &str) -> Category {
        ReferenceModel::category(TransactionId::from_uuid(s.parse().expect("test uuid")))
    }

    #[test]
    fn reproduces_the_original_service_test_vectors() {
        assert_eq!(
            category_of("b9fa6684-502b-4695-8f92-247432ba610d"),
            Category::Transportation
        );
        assert_eq!(
            category_of("00000000-0000-0000-0000-000000000000"),
            Category::Rent
        );
        assert_eq!(
            category_of("ffffffff-ffff-ffff-ffff-ffffffffffff"),
            Category::Restaurant
        );
        assert_eq!(
            category_of("123e4567-e89b-12d3-a456-426614174000"),
            Category::Transportation
        );
    }
}
