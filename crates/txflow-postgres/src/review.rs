//! The review loop in PostgreSQL: the queue written with each batch, and
//! the core's [`ReviewStore`] (listing, labels, progress, export).

use chrono::{DateTime, Utc};
use tokio_postgres::Transaction as DbTransaction;
use txflow_core::ports::BoxFuture;
use txflow_core::review::{self, check_label};
use txflow_core::transaction::{Amount, Side, TransactionId};
use txflow_core::{
    BoxError, Category, Label, LabelError, LabelSource, LabeledTransaction, Progress, QueueFilter,
    QueuedItem, ReviewRequest, ReviewStore,
};

use crate::error::{Error, Result};
use crate::sink::PostgresStore;

/// Review requests, in the caller's database transaction (a batch's, a
/// reclassification page's): the label sets of their models once, then the
/// items (already labeled transactions are queued as `labeled`; a rerun
/// adds nothing), each superseding another model's pending item for the
/// same transaction. Returns the items added.
pub(crate) async fn queue(tx: &DbTransaction<'_>, r: &[ReviewRequest], run: &str) -> Result<u64> {
    if r.is_empty() {
        return Ok(0);
    }
    let mut versions: Vec<&str> = Vec::new();
    let mut sets: Vec<String> = Vec::new();
    for request in r {
        if let Some(labels) = &request.labels
            && !versions.contains(&request.model_version.as_str())
        {
            versions.push(&request.model_version);
            sets.push(review::encode_labels(labels));
        }
    }
    if !versions.is_empty() {
        tx.execute(
            "INSERT INTO review_label_sets (model_version, labels)
             SELECT * FROM unnest($1::text[], $2::text[])
             ON CONFLICT (model_version) DO NOTHING",
            &[&versions, &sets],
        )
        .await
        .map_err(Error::query("recording the review label sets"))?;
    }
    let ids: Vec<uuid::Uuid> = r.iter().map(|q| *q.transaction_id.as_uuid()).collect();
    let models: Vec<&str> = r.iter().map(|q| q.model_version.as_str()).collect();
    let categories: Vec<&str> = r.iter().map(|q| q.category.as_str()).collect();
    let confidences: Vec<Option<f64>> = r.iter().map(|q| q.confidence).collect();
    let tops: Vec<String> = r.iter().map(|q| review::encode_top(&q.top)).collect();
    let queued = tx.execute(
        "INSERT INTO review_queue (transaction_id, model_version, category, confidence, top, status, run_id)
         SELECT q.id, q.model, q.category, q.confidence, q.top,
                CASE WHEN EXISTS (SELECT 1 FROM labels l WHERE l.transaction_id = q.id)
                     THEN 'labeled' ELSE 'pending' END,
                $6
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::float8[], $5::text[])
              AS q(id, model, category, confidence, top)
         ON CONFLICT (transaction_id, model_version) DO NOTHING",
        &[&ids, &models, &categories, &confidences, &tops, &run],
    )
    .await
    .map_err(Error::query("queueing predictions for review"))?;
    tx.execute(
        "UPDATE review_queue q SET status = 'superseded'
         FROM unnest($1::uuid[], $2::text[]) AS n(id, model)
         WHERE q.transaction_id = n.id AND q.model_version <> n.model
           AND q.status IN ('pending', 'labeled')",
        &[&ids, &models],
    )
    .await
    .map_err(Error::query("superseding older review items"))?;
    Ok(queued)
}

fn corrupt(what: String) -> Error {
    Error::Corrupt { what }
}

fn category(name: &str, id: uuid::Uuid) -> Result<Category> {
    Category::new(name).map_err(|e| corrupt(format!("transaction {id}: {e}")))
}

fn amount(cents: i64, id: uuid::Uuid) -> Result<Amount> {
    Amount::from_cents(cents).ok_or_else(|| corrupt(format!("transaction {id}: amount")))
}

impl PostgresStore {
    async fn queued(&self, filter: &QueueFilter) -> Result<Vec<QueuedItem>> {
        self.session()
            .retrying("reading the review queue", |client| async move {
                let rows = client
                    .query(
                        "SELECT q.transaction_id, t.description, t.merchant, (t.amount * 100)::int8,
                                t.\"timestamp\", q.model_version, q.category, q.confidence, q.top,
                                s.labels, q.queued_at
                         FROM review_queue q
                         JOIN transactions t ON t.id = q.transaction_id
                         LEFT JOIN review_label_sets s ON s.model_version = q.model_version
                         WHERE q.status = 'pending'
                           AND ($1::text IS NULL OR q.model_version = $1)
                           AND ($2::text IS NULL OR q.category = $2)
                         ORDER BY q.confidence NULLS FIRST, q.queued_at, q.transaction_id
                         LIMIT $3",
                        &[&filter.model_version, &filter.category, &filter.limit],
                    )
                    .await
                    .map_err(Error::query("reading the review queue"))?;
                rows.iter()
                    .map(|r| {
                        let id: uuid::Uuid = r.get(0);
                        let top: String = r.get(8);
                        let labels: Option<String> = r.get(9);
                        Ok(QueuedItem {
                            transaction_id: TransactionId::from_uuid(id),
                            description: r.get(1),
                            merchant: r.get(2),
                            amount: amount(r.get(3), id)?,
                            timestamp: r.get(4),
                            model_version: r.get(5),
                            category: category(r.get(6), id)?,
                            confidence: r.get(7),
                            top: review::decode_top(&top)
                                .ok_or_else(|| corrupt(format!("review item {id}: top")))?,
                            labels: labels.map(|l| l.lines().map(str::to_owned).collect()),
                            queued_at: r.get(10),
                        })
                    })
                    .collect()
            })
            .await
    }

    async fn review_progress(&self) -> Result<Progress> {
        self.session()
            .retrying("reading the review progress", |client| async move {
                let row = client
                    .query_one(
                        "SELECT (SELECT count(*) FROM labels),
                                (SELECT count(*) FROM review_queue WHERE status = 'pending')",
                        &[],
                    )
                    .await
                    .map_err(Error::query("reading the review progress"))?;
                Ok(Progress {
                    labeled: row.get(0),
                    pending: row.get(1),
                })
            })
            .await
    }

    /// Checks and stores one label in one database transaction (the outer
    /// result: the database; the inner: the label's check).
    async fn store_label(&self, label: &Label) -> Result<std::result::Result<(), LabelError>> {
        const WHAT: &str = "storing a label";
        let id = *label.transaction_id.as_uuid();
        self.session()
            .retrying(WHAT, |mut client| async move {
                let tx = client.transaction().await.map_err(Error::query(WHAT))?;
                let exists = tx
                    .query_opt("SELECT 1 FROM transactions WHERE id = $1", &[&id])
                    .await
                    .map_err(Error::query(WHAT))?
                    .is_some();
                let queued = tx
                    .query_opt(
                        "SELECT q.model_version, s.labels FROM review_queue q
                         LEFT JOIN review_label_sets s ON s.model_version = q.model_version
                         WHERE q.transaction_id = $1
                         ORDER BY q.queued_at DESC, q.model_version LIMIT 1",
                        &[&id],
                    )
                    .await
                    .map_err(Error::query(WHAT))?;
                let queued_by = queued
                    .as_ref()
                    .map(|r| (r.get::<_, &str>(0), r.get::<_, Option<&str>>(1)));
                if let Err(refused) = check_label(label, exists, queued_by) {
                    return Ok(Err(refused));
                }
                tx.execute(
                    "INSERT INTO labels (transaction_id, category, labeled_by, source)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (transaction_id) DO UPDATE SET category = excluded.category,
                         labeled_by = excluded.labeled_by, labeled_at = now(),
                         source = excluded.source",
                    &[
                        &id,
                        &label.category.as_str(),
                        &label.labeled_by,
                        &label.source.as_str(),
                    ],
                )
                .await
                .map_err(Error::query(WHAT))?;
                tx.execute(
                    "UPDATE review_queue SET status = 'labeled'
                     WHERE transaction_id = $1 AND status = 'pending'",
                    &[&id],
                )
                .await
                .map_err(Error::query(WHAT))?;
                tx.commit().await.map_err(Error::query(WHAT))?;
                Ok(Ok(()))
            })
            .await
    }

    async fn remove_label(&self, id: TransactionId) -> Result<bool> {
        let id = *id.as_uuid();
        self.session()
            .retrying("taking a label back", |mut client| async move {
                let tx = client
                    .transaction()
                    .await
                    .map_err(Error::query("taking a label back"))?;
                let n = tx
                    .execute("DELETE FROM labels WHERE transaction_id = $1", &[&id])
                    .await
                    .map_err(Error::query("taking a label back"))?;
                tx.execute(
                    "UPDATE review_queue SET status = 'pending'
                     WHERE transaction_id = $1 AND status = 'labeled'",
                    &[&id],
                )
                .await
                .map_err(Error::query("taking a label back"))?;
                tx.commit()
                    .await
                    .map_err(Error::query("taking a label back"))?;
                Ok(n == 1)
            })
            .await
    }

    async fn labeled_rows(&self, since: Option<DateTime<Utc>>) -> Result<Vec<LabeledTransaction>> {
        self.session()
            .retrying("reading labels", |client| async move {
                let rows = client
                    .query(
                        "SELECT t.id, t.description, t.merchant, (t.amount * 100)::int8, t.side,
                                t.operation_type, t.\"timestamp\", l.category, l.labeled_by,
                                l.labeled_at, l.source
                         FROM labels l JOIN transactions t ON t.id = l.transaction_id
                         WHERE $1::timestamptz IS NULL OR l.labeled_at >= $1
                         ORDER BY l.labeled_at, t.id",
                        &[&since],
                    )
                    .await
                    .map_err(Error::query("reading labels"))?;
                rows.iter()
                    .map(|r| {
                        let id: uuid::Uuid = r.get(0);
                        let side: &str = r.get(4);
                        let source: &str = r.get(10);
                        Ok(LabeledTransaction {
                            transaction_id: TransactionId::from_uuid(id),
                            description: r.get(1),
                            merchant: r.get(2),
                            amount: amount(r.get(3), id)?,
                            side: Side::parse(side)
                                .ok_or_else(|| corrupt(format!("transaction {id}: side")))?,
                            operation_type: r.get(5),
                            timestamp: r.get(6),
                            category: category(r.get(7), id)?,
                            labeled_by: r.get(8),
                            labeled_at: r.get(9),
                            source: LabelSource::parse(source)
                                .ok_or_else(|| corrupt(format!("label {id}: source")))?,
                        })
                    })
                    .collect()
            })
            .await
    }
}

impl ReviewStore for PostgresStore {
    fn queue<'a>(
        &'a self,
        filter: &'a QueueFilter,
    ) -> BoxFuture<'a, std::result::Result<Vec<QueuedItem>, BoxError>> {
        Box::pin(async move { Ok(self.queued(filter).await?) })
    }

    fn progress(&self) -> BoxFuture<'_, std::result::Result<Progress, BoxError>> {
        Box::pin(async move { Ok(self.review_progress().await?) })
    }

    fn label<'a>(&'a self, label: &'a Label) -> BoxFuture<'a, std::result::Result<(), LabelError>> {
        Box::pin(async move {
            self.store_label(label)
                .await
                .map_err(|e| LabelError::Store(Box::new(e)))?
        })
    }

    fn unlabel(&self, id: TransactionId) -> BoxFuture<'_, std::result::Result<bool, BoxError>> {
        Box::pin(async move { Ok(self.remove_label(id).await?) })
    }

    fn labeled<'a>(
        &'a self,
        since: Option<DateTime<Utc>>,
    ) -> BoxFuture<'a, std::result::Result<Vec<LabeledTransaction>, BoxError>> {
        Box::pin(async move { Ok(self.labeled_rows(since).await?) })
    }
}
