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

/// A second built-in model: the category from the merchant's name (a
/// table of well-known French merchants), else the reference model's. Its
/// predictions differ from the reference model's for most transactions,
/// which makes it the example of reclassifying history with a new model
/// and diffing the two (`txflow reclassify`, `txflow diff`).
#[derive(Debug, Clone, Copy, Default)]
pub struct MerchantModel;

impl MerchantModel {
    pub const VERSION: &'static str = "merchant-1";

    const TABLE: [(&'static str, Category); 24] = [
        ("auchan", Category::Food),
        ("carrefour", Category::Food),
        ("franprix", Category::Food),
        ("intermarche", Category::Food),
        ("leclerc", Category::Food),
        ("lidl", Category::Food),
        ("monoprix", Category::Food),
        ("systeme u", Category::Food),
        ("deliveroo", Category::Restaurant),
        ("ratp", Category::Transportation),
        ("sncf", Category::Transportation),
        ("totalenergies", Category::Transportation),
        ("transilien", Category::Transportation),
        ("uber", Category::Transportation),
        ("air france", Category::Travel),
        ("bouygues", Category::Utilities),
        ("edf", Category::Utilities),
        ("orange", Category::Utilities),
        ("sfr", Category::Utilities),
        ("veolia", Category::Utilities),
        ("la poste", Category::Utilities),
        ("amazon.fr", Category::Shopping),
        ("darty", Category::Shopping),
        ("fnac", Category::Shopping),
    ];

    /// The category and confidence: 0.9 from the merchant table, 0.3 when
    /// the merchant is unknown and the reference model decides.
    pub fn classify(id: TransactionId, merchant: Option<&str>) -> (Category, f64) {
        let known = merchant.and_then(|m| {
            let m = m.trim().to_lowercase();
            MerchantModel::TABLE
                .iter()
                .find(|(name, _)| *name == m)
                .map(|(_, c)| *c)
        });
        match known {
            Some(category) => (category, 0.9),
            None => (ReferenceModel::category(id), 0.3),
        }
    }

    pub fn predict(id: TransactionId, merchant: Option<&str>) -> Prediction {
        let (category, confidence) = MerchantModel::classify(id, merchant);
        Prediction {
            transaction_id: id,
            category,
            confidence: Some(confidence),
            model_version: MerchantModel::VERSION.to_owned(),
        }
    }
}

#[cfg(test)]
mod merchant_tests {
    use super::*;

    #[test]
    fn known_merchants_decide_and_the_reference_model_takes_the_rest() {
        let id = TransactionId::from_uuid(uuid::Uuid::nil());
        assert_eq!(
            MerchantModel::classify(id, Some("Lidl")),
            (Category::Food, 0.9)
        );
        assert_eq!(
            MerchantModel::classify(id, Some(" Air France ")),
            (Category::Travel, 0.9)
        );
        assert_eq!(
            MerchantModel::classify(id, Some("Unknown shop")),
            (ReferenceModel::category(id), 0.3)
        );
        assert_eq!(
            MerchantModel::classify(id, None).0,
            ReferenceModel::category(id)
        );
    }
}
