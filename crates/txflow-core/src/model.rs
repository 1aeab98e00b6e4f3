//! Models in process: the [`Model`] trait every in-process model implements
//! (a version, a label set, a prediction per transaction), the reference
//! model (the original ML service's classifier, bit for bit) and the
//! merchant model.
//!
//! The original hashed the transaction UUID: `h = uuid.int % (2**61 - 1)`,
//! then picked `categories[h % 15]`. It always answered with confidence 1.0.

use std::fmt;
use std::sync::{Arc, LazyLock};

use crate::category::{Category, LabelSet};
use crate::error::BoxError;
use crate::ports::{Classifier, Outcome};
use crate::review::{Ranked, top_of};
use crate::transaction::{Prediction, Transaction, TransactionId};

/// A model that runs in this process: it declares its version and its
/// label set, and answers every transaction (no item fails, nothing to wait
/// for). The built-in models and trained model files implement it; the
/// binary, `txflow serve` and the pipeline hold one as `Arc<dyn Model>`.
pub trait Model: Send + Sync + fmt::Debug {
    /// The version stored with each prediction (`reference-1`, a trained
    /// file's `name@hash`).
    fn version(&self) -> &str;

    /// The categories it answers with, in its order.
    fn labels(&self) -> &LabelSet;

    /// Its answer for one transaction; the category is one of [`Model::labels`].
    fn predict(&self, tx: &Transaction) -> Prediction;

    /// Every category's probability, in the order of [`Model::labels`];
    /// `None` for a model that has no distribution (a rule).
    fn probabilities(&self, _tx: &Transaction) -> Option<Vec<f64>> {
        None
    }
}

/// The classifier port over an in-process model.
#[derive(Debug, Clone)]
pub struct InProcess(pub Arc<dyn Model>);

impl Classifier for InProcess {
    async fn classify(&self, transactions: &[Transaction]) -> Result<Vec<Outcome>, BoxError> {
        Ok(transactions
            .iter()
            .map(|tx| Ok(self.0.predict(tx)))
            .collect())
    }

    fn ranked(&self, tx: &Transaction, n: usize) -> Option<Vec<Ranked>> {
        let probabilities = self.0.probabilities(tx)?;
        Some(top_of(self.0.labels(), &probabilities, n))
    }

    fn label_set(&self, version: &str) -> Option<LabelSet> {
        (version == self.0.version()).then(|| self.0.labels().clone())
    }
}

/// The original service's 15 categories, in its order: the reference
/// model's contract, do not reorder.
pub const REFERENCE_LABELS: [&str; 15] = [
    "Rent",
    "Salary Income",
    "Food",
    "Restaurant",
    "Client Expenses",
    "Transportation",
    "Utilities",
    "Entertainment",
    "Healthcare",
    "Shopping",
    "Travel",
    "Education",
    "Insurance",
    "Investment",
    "Subscriptions",
];

static REFERENCE: LazyLock<LabelSet> = LazyLock::new(|| match LabelSet::new(REFERENCE_LABELS) {
    Ok(set) => set,
    // Fifteen distinct, valid constant names: a test checks it.
    Err(e) => unreachable!("the reference labels are a label set: {e}"),
});

/// The Mersenne prime 2^61 − 1 the original reduced the UUID by.
const MODULUS: u128 = (1 << 61) - 1;

/// The deterministic classifier every deployment has built in.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReferenceModel;

impl ReferenceModel {
    /// The version string stored with each prediction of this model.
    pub const VERSION: &'static str = "reference-1";

    /// The original's 15 categories.
    pub fn labels() -> &'static LabelSet {
        &REFERENCE
    }

    /// The category's index in [`REFERENCE_LABELS`], from the id alone.
    pub fn index(id: TransactionId) -> usize {
        let h = id.as_uuid().as_u128() % MODULUS;
        (h % 15) as usize
    }

    /// The category of a transaction, from its id alone.
    pub fn category(id: TransactionId) -> Category {
        REFERENCE
            .get(ReferenceModel::index(id))
            .cloned()
            .unwrap_or_else(|| {
                // h % 15 < 15 and the set has 15 labels.
                unreachable!("reference index in range")
            })
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

    fn category_of(s: &str) -> String {
        ReferenceModel::category(TransactionId::from_uuid(s.parse().expect("test uuid")))
            .as_str()
            .to_owned()
    }

    #[test]
    fn reproduces_the_original_service_test_vectors() {
        assert_eq!(
            category_of("b9fa6684-502b-4695-8f92-247432ba610d"),
            "Transportation"
        );
        assert_eq!(category_of("00000000-0000-0000-0000-000000000000"), "Rent");
        assert_eq!(
            category_of("ffffffff-ffff-ffff-ffff-ffffffffffff"),
            "Restaurant"
        );
        assert_eq!(
            category_of("123e4567-e89b-12d3-a456-426614174000"),
            "Transportation"
        );
    }

    #[test]
    fn the_reference_labels_are_the_original_fifteen_in_order() {
        assert_eq!(ReferenceModel::labels().names(), REFERENCE_LABELS);
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

    const TABLE: [(&'static str, &'static str); 24] = [
        ("auchan", "Food"),
        ("carrefour", "Food"),
        ("franprix", "Food"),
        ("intermarche", "Food"),
        ("leclerc", "Food"),
        ("lidl", "Food"),
        ("monoprix", "Food"),
        ("systeme u", "Food"),
        ("deliveroo", "Restaurant"),
        ("ratp", "Transportation"),
        ("sncf", "Transportation"),
        ("totalenergies", "Transportation"),
        ("transilien", "Transportation"),
        ("uber", "Transportation"),
        ("air france", "Travel"),
        ("bouygues", "Utilities"),
        ("edf", "Utilities"),
        ("orange", "Utilities"),
        ("sfr", "Utilities"),
        ("veolia", "Utilities"),
        ("la poste", "Utilities"),
        ("amazon.fr", "Shopping"),
        ("darty", "Shopping"),
        ("fnac", "Shopping"),
    ];

    /// The category and confidence: 0.9 from the merchant table, 0.3 when
    /// the merchant is unknown and the reference model decides.
    pub fn classify(id: TransactionId, merchant: Option<&str>) -> (Category, f64) {
        let known = merchant.and_then(|m| {
            let m = m.trim().to_lowercase();
            MerchantModel::TABLE
                .iter()
                .find(|(name, _)| *name == m)
                .and_then(|(_, c)| REFERENCE.find(c).cloned())
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
        let named = |s: &str| Category::new(s).expect("a name");
        assert_eq!(
            MerchantModel::classify(id, Some("Lidl")),
            (named("Food"), 0.9)
        );
        assert_eq!(
            MerchantModel::classify(id, Some(" Air France ")),
            (named("Travel"), 0.9)
        );
        for (_, name) in MerchantModel::TABLE {
            assert!(REFERENCE.contains(name), "{name}");
        }
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

impl Model for ReferenceModel {
    fn version(&self) -> &str {
        ReferenceModel::VERSION
    }

    fn labels(&self) -> &LabelSet {
        &REFERENCE
    }

    fn predict(&self, tx: &Transaction) -> Prediction {
        ReferenceModel::predict(tx.id())
    }
}

impl Model for MerchantModel {
    fn version(&self) -> &str {
        MerchantModel::VERSION
    }

    fn labels(&self) -> &LabelSet {
        &REFERENCE
    }

    fn predict(&self, tx: &Transaction) -> Prediction {
        MerchantModel::predict(tx.id(), tx.merchant())
    }
}
