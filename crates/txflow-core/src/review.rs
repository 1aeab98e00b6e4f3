//! The review loop: predictions a model is unsure of go to a person, whose
//! labels win over any model.
//!
//! - [`ReviewBelow`]: the confidence under which a prediction is queued.
//! - [`route`]: the pipeline stage that picks a batch's uncertain predictions
//!   ([`ReviewRequest`]s), written by the sink in the same database
//!   transaction as the predictions (and, in the stream, the offsets).
//! - [`ReviewStore`]: the port over the stored queue and labels that
//!   `txflow review` and its page use.

use std::collections::HashSet;
use std::fmt;

use chrono::{DateTime, Utc};

use crate::category::{Category, LabelSet};
use crate::error::BoxError;
use crate::ports::{Batch, BoxFuture, Classifier, paired};
use crate::transaction::{Amount, Prediction, Transaction, TransactionId};

/// How many of a model's best categories a queued item keeps.
pub const TOP: usize = 3;

/// The confidence under which a prediction is queued for review, in (0, 1].
/// A prediction without a confidence is queued too (nothing says it is sure).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReviewBelow(f64);

/// A threshold outside (0, 1].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("review threshold {0} is not in (0, 1]: give a confidence such as 0.6")]
pub struct InvalidThreshold(pub String);

impl ReviewBelow {
    pub fn new(value: f64) -> Result<ReviewBelow, InvalidThreshold> {
        if value > 0.0 && value <= 1.0 {
            Ok(ReviewBelow(value))
        } else {
            Err(InvalidThreshold(value.to_string()))
        }
    }

    pub fn get(self) -> f64 {
        self.0
    }

    /// Whether a prediction of this confidence goes to a person.
    pub fn wants(self, confidence: Option<f64>) -> bool {
        confidence.is_none_or(|c| c < self.0)
    }
}

impl std::str::FromStr for ReviewBelow {
    type Err = InvalidThreshold;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let value: f64 = s.trim().parse().map_err(|_| InvalidThreshold(s.into()))?;
        ReviewBelow::new(value)
    }
}

/// One category a model considered, with its probability.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    pub category: Category,
    pub confidence: f64,
}

/// A prediction to put before a person: what the queue stores.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewRequest {
    pub transaction_id: TransactionId,
    pub model_version: String,
    pub category: Category,
    pub confidence: Option<f64>,
    /// The model's best [`TOP`] categories, best first (the prediction
    /// alone when the model has no distribution).
    pub top: Vec<Ranked>,
    /// The model's label set, when the classifier knows it: a label must be
    /// one of these.
    pub labels: Option<LabelSet>,
}

/// The review stage: the batch's predictions under `below`, with the
/// model's best categories. Nothing when there is no threshold.
pub fn route<C: Classifier>(
    classifier: &C,
    below: Option<ReviewBelow>,
    batch: &Batch,
) -> Vec<ReviewRequest> {
    route_predictions(classifier, below, &batch.transactions, &batch.predictions)
}

/// [`route`] over transactions and their predictions (in the same order)
/// outside a batch: a reclassification's page.
pub fn route_predictions<C: Classifier>(
    classifier: &C,
    below: Option<ReviewBelow>,
    transactions: &[Transaction],
    predictions: &[Prediction],
) -> Vec<ReviewRequest> {
    let Some(below) = below else {
        return Vec::new();
    };
    paired(transactions, predictions)
        .filter(|(_, _, p)| below.wants(p.confidence))
        .map(|(_, tx, p)| {
            let top = classifier.ranked(tx, TOP).unwrap_or_else(|| {
                vec![Ranked {
                    category: p.category.clone(),
                    confidence: p.confidence.unwrap_or(0.0),
                }]
            });
            ReviewRequest {
                transaction_id: p.transaction_id,
                model_version: p.model_version.clone(),
                category: p.category.clone(),
                confidence: p.confidence,
                top,
                labels: classifier.label_set(&p.model_version),
            }
        })
        .collect()
}

/// The ids a batch queued for review: what its predictions events mark as
/// `needs_review`.
pub fn queued_ids(batch: &Batch) -> HashSet<(TransactionId, &str)> {
    batch
        .reviews
        .iter()
        .map(|r| (r.transaction_id, r.model_version.as_str()))
        .collect()
}

/// Where a label came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelSource {
    /// A person on the review page or `txflow review label`.
    Review,
    /// A file of labels made elsewhere (`txflow review import`).
    Import,
}

impl LabelSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LabelSource::Review => "review",
            LabelSource::Import => "import",
        }
    }

    pub fn parse(s: &str) -> Option<LabelSource> {
        match s {
            "review" => Some(LabelSource::Review),
            "import" => Some(LabelSource::Import),
            _ => None,
        }
    }
}

/// A person's category for one transaction: it wins over every model.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub transaction_id: TransactionId,
    pub category: Category,
    pub labeled_by: String,
    pub source: LabelSource,
}

/// Why a label was not stored.
#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error("no transaction {0} in the database")]
    UnknownTransaction(TransactionId),
    #[error(
        "{category:?} is not a category of model {model_version}, which queued transaction {transaction_id}: use one of {}",
        labels.join(", ")
    )]
    NotInLabelSet {
        transaction_id: TransactionId,
        category: String,
        model_version: String,
        labels: Vec<String>,
    },
    #[error(transparent)]
    Store(BoxError),
}

/// A queued item as a person sees it: the transaction and what the model
/// said of it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedItem {
    pub transaction_id: TransactionId,
    pub description: String,
    pub merchant: Option<String>,
    pub amount: Amount,
    pub timestamp: DateTime<Utc>,
    pub model_version: String,
    pub category: Category,
    pub confidence: Option<f64>,
    pub top: Vec<Ranked>,
    /// The model's label set, when known.
    pub labels: Option<Vec<String>>,
    pub queued_at: DateTime<Utc>,
}

/// Which queued items to list: pending ones, least confident first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueFilter {
    pub model_version: Option<String>,
    pub category: Option<String>,
    pub limit: i64,
}

/// How far the review has got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Transactions with a label.
    pub labeled: i64,
    /// Queued items still waiting for a person.
    pub pending: i64,
}

/// A stored label with its transaction: one row of a labeled file.
#[derive(Debug, Clone, PartialEq)]
pub struct LabeledTransaction {
    pub transaction_id: TransactionId,
    pub description: String,
    pub merchant: Option<String>,
    pub amount: Amount,
    pub side: crate::transaction::Side,
    pub operation_type: String,
    pub timestamp: DateTime<Utc>,
    pub category: Category,
    pub labeled_by: String,
    pub labeled_at: DateTime<Utc>,
    pub source: LabelSource,
}

/// The stored review queue and labels.
pub trait ReviewStore: Send + Sync {
    /// Pending items, least confident first (no confidence first of all),
    /// then oldest first.
    fn queue<'a>(
        &'a self,
        filter: &'a QueueFilter,
    ) -> BoxFuture<'a, Result<Vec<QueuedItem>, BoxError>>;

    /// Labeled transactions and pending items.
    fn progress(&self) -> BoxFuture<'_, Result<Progress, BoxError>>;

    /// Stores a label (replacing the transaction's previous one) and closes
    /// its queued items. The category must be a label of the model that
    /// queued it, when that model's set is known.
    fn label<'a>(&'a self, label: &'a Label) -> BoxFuture<'a, Result<(), LabelError>>;

    /// Takes a transaction's label back and reopens its queued items;
    /// whether there was one.
    fn unlabel(&self, transaction_id: TransactionId) -> BoxFuture<'_, Result<bool, BoxError>>;

    /// Every label with its transaction, labeled at or after `since`,
    /// oldest first.
    fn labeled<'a>(
        &'a self,
        since: Option<DateTime<Utc>>,
    ) -> BoxFuture<'a, Result<Vec<LabeledTransaction>, BoxError>>;
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} labeled, {} left", self.labeled, self.pending)
    }
}

/// The model's best `n` categories from its probabilities, best first
/// (ties: the model's order).
pub fn top_of(labels: &LabelSet, probabilities: &[f64], n: usize) -> Vec<Ranked> {
    let mut order: Vec<usize> = (0..probabilities.len().min(labels.len())).collect();
    order.sort_by(|&a, &b| {
        probabilities[b]
            .total_cmp(&probabilities[a])
            .then(a.cmp(&b))
    });
    order
        .into_iter()
        .take(n)
        .filter_map(|i| {
            Some(Ranked {
                category: labels.get(i)?.clone(),
                confidence: probabilities[i],
            })
        })
        .collect()
}

/// The stored form of a ranking: one `confidence<TAB>category` line each,
/// best first (a category holds no control character, so none is ambiguous).
pub fn encode_top(top: &[Ranked]) -> String {
    let lines: Vec<String> = top
        .iter()
        .map(|r| format!("{}\t{}", r.confidence, r.category))
        .collect();
    lines.join("\n")
}

/// Reads [`encode_top`]'s form back; `None` when it is not that.
pub fn decode_top(text: &str) -> Option<Vec<Ranked>> {
    text.lines()
        .map(|line| {
            let (confidence, name) = line.split_once('\t')?;
            Some(Ranked {
                category: Category::new(name).ok()?,
                confidence: confidence.parse().ok()?,
            })
        })
        .collect()
}

/// The stored form of a label set: one name per line, in its order.
pub fn encode_labels(labels: &LabelSet) -> String {
    labels.names().join("\n")
}

/// A label's check against the model that queued its transaction, the
/// store's facts in hand: whether the transaction exists, and the label set
/// (stored form) of the model that queued it last, if any queued it and its
/// set is known.
pub fn check_label(
    label: &Label,
    exists: bool,
    queued_by: Option<(&str, Option<&str>)>,
) -> Result<(), LabelError> {
    if !exists {
        return Err(LabelError::UnknownTransaction(label.transaction_id));
    }
    if let Some((model_version, Some(labels))) = queued_by
        && !labels.lines().any(|name| name == label.category.as_str())
    {
        return Err(LabelError::NotInLabelSet {
            transaction_id: label.transaction_id,
            category: label.category.as_str().to_owned(),
            model_version: model_version.to_owned(),
            labels: labels.lines().map(str::to_owned).collect(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_threshold_is_a_confidence_and_unknown_confidence_is_reviewed() {
        assert!("0".parse::<ReviewBelow>().is_err());
        assert!("1.5".parse::<ReviewBelow>().is_err());
        assert!("abc".parse::<ReviewBelow>().is_err());
        let below: ReviewBelow = "0.6".parse().expect("valid");
        assert!(below.wants(Some(0.59)));
        assert!(!below.wants(Some(0.6)));
        assert!(below.wants(None));
    }

    #[test]
    fn top_takes_the_most_probable_in_order() {
        let labels = LabelSet::new(["a", "b", "c", "d"]).expect("labels");
        let top = top_of(&labels, &[0.1, 0.4, 0.1, 0.4], 3);
        let names: Vec<&str> = top.iter().map(|r| r.category.as_str()).collect();
        assert_eq!(names, ["b", "d", "a"]);
        assert_eq!(decode_top(&encode_top(&top)), Some(top));
        assert_eq!(decode_top("0.5 no tab"), None);
    }

    #[test]
    fn a_label_must_be_of_the_queueing_models_set() {
        let label = Label {
            transaction_id: TransactionId::from_uuid(uuid::Uuid::nil()),
            category: Category::new("Food").expect("category"),
            labeled_by: "ana".into(),
            source: LabelSource::Review,
        };
        assert!(check_label(&label, true, Some(("m@1", Some("Rent\nFood")))).is_ok());
        assert!(check_label(&label, true, Some(("m@1", None))).is_ok());
        assert!(check_label(&label, true, None).is_ok());
        assert!(matches!(
            check_label(&label, false, None),
            Err(LabelError::UnknownTransaction(_))
        ));
        let refused = check_label(&label, true, Some(("m@1", Some("Rent\nTravel"))));
        let message = refused.expect_err("not in the set").to_string();
        assert!(message.contains("not a category of model m@1"), "{message}");
        assert!(message.contains("Rent, Travel"), "{message}");
    }
}
