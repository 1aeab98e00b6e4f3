//! Model versions in a store: the [`ModelRegistry`] port (`txflow models`,
//! `reclassify`, `diff`) and its values. Both stores implement it.

use chrono::{DateTime, Utc};

use crate::error::BoxError;
use crate::ports::BoxFuture;
use crate::review::ReviewRequest;
use crate::transaction::{Prediction, Transaction, TransactionId};

/// A model version as the store knows it, with how many predictions it has
/// written.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRow {
    pub version: String,
    pub name: String,
    /// How it runs; `None` for a version only seen in predictions.
    pub kind: Option<ModelKind>,
    pub location: Option<String>,
    pub registered_at: Option<DateTime<Utc>>,
    pub active: bool,
    pub predictions: i64,
    /// The categories, as a JSON array (a registered model file's).
    pub labels: Option<String>,
    /// How it did when trained, as a JSON object (a model file's).
    pub metrics: Option<String>,
    /// The review threshold runs with it use by default.
    pub review_below: Option<f64>,
}

impl ModelRow {
    /// Its kind's name, `unregistered` for a version only seen in
    /// predictions.
    pub fn kind_name(&self) -> &'static str {
        self.kind.map_or("unregistered", ModelKind::as_str)
    }
}

/// How a model runs, as registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// In the process (`reference`, `merchant`).
    Builtin,
    /// A classification service.
    Http,
    /// A trained model file, in the process.
    File,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Builtin => "builtin",
            ModelKind::Http => "http",
            ModelKind::File => "file",
        }
    }

    pub fn parse(s: &str) -> Option<ModelKind> {
        match s {
            "builtin" => Some(ModelKind::Builtin),
            "http" => Some(ModelKind::Http),
            "file" => Some(ModelKind::File),
            _ => None,
        }
    }
}

/// Which stored transactions to reclassify.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    pub run: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Their current category (a label, else the active model's, else the
    /// latest).
    pub category: Option<String>,
    /// Their source location (a file, `kafka://topic/partition`).
    pub source: Option<String>,
}

/// A page of a reclassification.
#[derive(Debug)]
pub struct Page {
    /// The last transaction of the page, selected or not: where the next
    /// page starts. `None` when the selection is exhausted.
    pub last: Option<TransactionId>,
    /// The page's transactions the model has not classified yet.
    pub todo: Vec<Transaction>,
}

/// One cell of the confusion matrix between two models.
#[derive(Debug, Clone, PartialEq)]
pub struct DiffCell {
    pub from: String,
    pub to: String,
    pub count: i64,
    /// The sum of the transactions' amounts, in cents.
    pub amount_cents: i64,
    /// A few transaction ids of the cell, in id order.
    pub examples: Vec<String>,
}

/// A model's registration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Registration<'a> {
    pub version: &'a str,
    pub name: &'a str,
    pub kind: ModelKind,
    /// The service's URL or the file's location.
    pub location: Option<&'a str>,
}

/// Model versions and their predictions in a store.
pub trait ModelRegistry: Send + Sync {
    /// Registers a version (again: its name, kind and location are
    /// updated, its active flag and threshold kept). Never activates.
    fn register<'a>(&'a self, model: Registration<'a>) -> BoxFuture<'a, Result<(), BoxError>>;

    /// Records a registered model's label set and training metrics (JSON
    /// texts); false when the version is not registered.
    fn describe_model<'a>(
        &'a self,
        version: &'a str,
        labels: &'a str,
        metrics: &'a str,
    ) -> BoxFuture<'a, Result<bool, BoxError>>;

    /// Records a registered model's review threshold; false when the
    /// version is not registered.
    fn set_review_below<'a>(
        &'a self,
        version: &'a str,
        below: Option<f64>,
    ) -> BoxFuture<'a, Result<bool, BoxError>>;

    /// The review threshold a version was registered with.
    fn review_below<'a>(&'a self, version: &'a str)
    -> BoxFuture<'a, Result<Option<f64>, BoxError>>;

    /// Makes `version` the active model (the views prefer its predictions);
    /// false when it is not registered.
    fn activate<'a>(&'a self, version: &'a str) -> BoxFuture<'a, Result<bool, BoxError>>;

    /// Registered versions and those only seen in predictions, with their
    /// prediction counts; registered first, by registration time.
    fn models(&self) -> BoxFuture<'_, Result<Vec<ModelRow>, BoxError>>;

    /// The next page of a reclassification: up to `limit` selected
    /// transactions after `after` in id order, and of those the ones
    /// `version` has not classified (a rerun skips what is done).
    fn transactions_to_classify<'a>(
        &'a self,
        selection: &'a Selection,
        version: &'a str,
        after: Option<TransactionId>,
        limit: i64,
    ) -> BoxFuture<'a, Result<Page, BoxError>>;

    /// Adds predictions (an existing one is kept, never overwritten) and
    /// queues the `reviews`, in one database transaction; returns how many
    /// predictions and review items were added.
    fn add_predictions<'a>(
        &'a self,
        predictions: &'a [Prediction],
        reviews: &'a [ReviewRequest],
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<(u64, u64), BoxError>>;

    /// The confusion matrix of `from` against `to` over the transactions
    /// both classified, with up to three example ids per cell.
    fn diff<'a>(
        &'a self,
        from: &'a str,
        to: &'a str,
    ) -> BoxFuture<'a, Result<Vec<DiffCell>, BoxError>>;
}
