//! The review loop in SQLite: the queue written with each batch, and the
//! core's [`ReviewStore`] (listing, labels, progress, export).

use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{OptionalExtension, Transaction, params};
use txflow_core::ports::BoxFuture;
use txflow_core::review::{self, check_label};
use txflow_core::transaction::TransactionId;
use txflow_core::{
    BoxError, Label, LabelError, LabeledTransaction, Progress, QueueFilter, QueuedItem,
    ReviewRequest, ReviewStore,
};

use crate::values;
use crate::{Result, SqliteStore, begin_write, query};

/// Review requests, in the caller's transaction (a batch's, a
/// reclassification page's): the label sets of their models once, then the
/// items (already labeled transactions are queued as `labeled`; a rerun
/// adds nothing), each superseding another model's pending item for the
/// same transaction. Returns the items added.
pub(crate) fn queue(
    tx: &Transaction<'_>,
    path: &Path,
    reviews: &[ReviewRequest],
    run: &str,
) -> Result<u64> {
    if reviews.is_empty() {
        return Ok(0);
    }
    let q = |what| query(path, what);
    let mut sets = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO review_label_sets (model_version, labels) VALUES (?1, ?2)",
        )
        .map_err(q("preparing the label-set insert"))?;
    let mut seen: Vec<&str> = Vec::new();
    for request in reviews {
        if let Some(labels) = &request.labels
            && !seen.contains(&request.model_version.as_str())
        {
            seen.push(&request.model_version);
            sets.execute(params![
                request.model_version,
                review::encode_labels(labels)
            ])
            .map_err(q("recording a review label set"))?;
        }
    }
    let mut insert = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO review_queue (transaction_id, model_version, category, confidence,
                 top, status, run_id)
             VALUES (?1, ?2, ?3, ?4, ?5,
                     CASE WHEN EXISTS (SELECT 1 FROM labels WHERE transaction_id = ?1)
                          THEN 'labeled' ELSE 'pending' END,
                     ?6)",
        )
        .map_err(q("preparing the review-queue insert"))?;
    let mut supersede = tx
        .prepare_cached(
            "UPDATE review_queue SET status = 'superseded'
             WHERE transaction_id = ?1 AND model_version <> ?2 AND status IN ('pending', 'labeled')",
        )
        .map_err(q("preparing the review-queue update"))?;
    let mut queued = 0;
    for r in reviews {
        let added = insert
            .execute(params![
                r.transaction_id.to_string(),
                r.model_version,
                r.category.as_str(),
                r.confidence,
                review::encode_top(&r.top),
                run,
            ])
            .map_err(q("queueing a prediction for review"))?;
        if added > 0 {
            supersede
                .execute(params![r.transaction_id.to_string(), r.model_version])
                .map_err(q("superseding an older review item"))?;
        }
        queued += added as u64;
    }
    Ok(queued)
}

/// The queue's pending items, least confident first.
fn queued(conn: &rusqlite::Connection, path: &Path, f: &QueueFilter) -> Result<Vec<QueuedItem>> {
    let q = |what| query(path, what);
    values::all(
        conn,
            "SELECT q.transaction_id, t.description, t.merchant, CAST(round(t.amount * 100) AS INTEGER),
                    t.\"timestamp\", q.model_version, q.category, q.confidence, q.top, s.labels,
                    q.queued_at
             FROM review_queue q
             JOIN transactions t ON t.id = q.transaction_id
             LEFT JOIN review_label_sets s ON s.model_version = q.model_version
             WHERE q.status = 'pending'
               AND (?1 IS NULL OR q.model_version = ?1)
               AND (?2 IS NULL OR q.category = ?2)
             ORDER BY q.confidence, q.queued_at, q.transaction_id
             LIMIT ?3",
        params![f.model_version, f.category, f.limit], |r| {
            let labels: Option<String> = r.get(9)?;
            Ok(QueuedItem {
                transaction_id: values::id(r, 0)?,
                description: r.get(1)?,
                merchant: r.get(2)?,
                amount: values::amount(r, 3)?,
                timestamp: values::time(r, 4)?,
                model_version: r.get(5)?,
                category: values::category(r, 6)?,
                confidence: r.get(7)?,
                top: values::top(r, 8)?,
                labels: labels.map(|l| l.lines().map(str::to_owned).collect()),
                queued_at: values::time(r, 10)?,
            })
        },
    )
    .map_err(q("reading the review queue"))
}

fn progress(conn: &rusqlite::Connection, path: &Path) -> Result<Progress> {
    conn.query_row(
        "SELECT (SELECT count(*) FROM labels),
                (SELECT count(*) FROM review_queue WHERE status = 'pending')",
        [],
        |r| {
            Ok(Progress {
                labeled: r.get(0)?,
                pending: r.get(1)?,
            })
        },
    )
    .map_err(query(path, "reading the review progress"))
}

/// Checks and stores one label (outer result: the database; inner: the
/// label's check).
fn store_label(
    conn: &mut rusqlite::Connection,
    path: &Path,
    label: &Label,
) -> Result<std::result::Result<(), LabelError>> {
    let q = |what| query(path, what);
    let tx = begin_write(conn).map_err(q("starting a label"))?;
    let id = label.transaction_id.to_string();
    let exists = tx
        .query_row(
            "SELECT 1 FROM transactions WHERE id = ?1",
            [&id],
            |_| Ok(()),
        )
        .optional()
        .map_err(q("finding the labeled transaction"))?
        .is_some();
    let queued_by: Option<(String, Option<String>)> = tx
        .query_row(
            "SELECT q.model_version, s.labels FROM review_queue q
             LEFT JOIN review_label_sets s ON s.model_version = q.model_version
             WHERE q.transaction_id = ?1
             ORDER BY q.queued_at DESC, q.model_version LIMIT 1",
            [&id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(q("finding the model that queued the transaction"))?;
    let queued_by = queued_by.as_ref().map(|(m, l)| (m.as_str(), l.as_deref()));
    if let Err(refused) = check_label(label, exists, queued_by) {
        return Ok(Err(refused));
    }
    tx.execute(
        "INSERT INTO labels (transaction_id, category, labeled_by, source) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (transaction_id) DO UPDATE SET category = excluded.category,
             labeled_by = excluded.labeled_by, source = excluded.source,
             labeled_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
        params![
            id,
            label.category.as_str(),
            label.labeled_by,
            label.source.as_str()
        ],
    )
    .map_err(q("storing a label"))?;
    tx.execute(
        "UPDATE review_queue SET status = 'labeled' WHERE transaction_id = ?1 AND status = 'pending'",
        [&id],
    )
    .map_err(q("closing the labeled item"))?;
    tx.commit().map_err(q("committing a label"))?;
    Ok(Ok(()))
}

fn remove_label(conn: &mut rusqlite::Connection, path: &Path, id: TransactionId) -> Result<bool> {
    let q = |what| query(path, what);
    let tx = begin_write(conn).map_err(q("starting to take a label back"))?;
    let id = id.to_string();
    let n = tx
        .execute("DELETE FROM labels WHERE transaction_id = ?1", [&id])
        .map_err(q("taking a label back"))?;
    tx.execute(
        "UPDATE review_queue SET status = 'pending' WHERE transaction_id = ?1 AND status = 'labeled'",
        [&id],
    )
    .map_err(q("reopening the item"))?;
    tx.commit().map_err(q("committing the label taken back"))?;
    Ok(n == 1)
}

fn labeled(
    conn: &rusqlite::Connection,
    path: &Path,
    since: Option<DateTime<Utc>>,
) -> Result<Vec<LabeledTransaction>> {
    let q = |what| query(path, what);
    let since = since.map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true));
    values::all(
        conn,
            "SELECT t.id, t.description, t.merchant, CAST(round(t.amount * 100) AS INTEGER), t.side,
                    t.operation_type, t.\"timestamp\", l.category, l.labeled_by, l.labeled_at, l.source
             FROM labels l JOIN transactions t ON t.id = l.transaction_id
             WHERE ?1 IS NULL OR l.labeled_at >= ?1
             ORDER BY l.labeled_at, t.id",
        [since], |r| {
            Ok(LabeledTransaction {
                transaction_id: values::id(r, 0)?,
                description: r.get(1)?,
                merchant: r.get(2)?,
                amount: values::amount(r, 3)?,
                side: values::side(r, 4)?,
                operation_type: r.get(5)?,
                timestamp: values::time(r, 6)?,
                category: values::category(r, 7)?,
                labeled_by: r.get(8)?,
                labeled_at: values::time(r, 9)?,
                source: values::source(r, 10)?,
            })
        },
    )
    .map_err(q("reading labels"))
}

impl ReviewStore for SqliteStore {
    fn queue<'a>(
        &'a self,
        filter: &'a QueueFilter,
    ) -> BoxFuture<'a, std::result::Result<Vec<QueuedItem>, BoxError>> {
        let filter = filter.clone();
        Box::pin(async move { Ok(self.with_conn(move |c, p| queued(c, p, &filter)).await?) })
    }

    fn progress(&self) -> BoxFuture<'_, std::result::Result<Progress, BoxError>> {
        Box::pin(async move { Ok(self.with_conn(|c, p| progress(c, p)).await?) })
    }

    fn label<'a>(&'a self, label: &'a Label) -> BoxFuture<'a, std::result::Result<(), LabelError>> {
        let label = label.clone();
        Box::pin(async move {
            self.with_conn(move |c, p| store_label(c, p, &label))
                .await
                .map_err(|e| LabelError::Store(Box::new(e)))?
        })
    }

    fn unlabel(&self, id: TransactionId) -> BoxFuture<'_, std::result::Result<bool, BoxError>> {
        Box::pin(async move { Ok(self.with_conn(move |c, p| remove_label(c, p, id)).await?) })
    }

    fn labeled<'a>(
        &'a self,
        since: Option<DateTime<Utc>>,
    ) -> BoxFuture<'a, std::result::Result<Vec<LabeledTransaction>, BoxError>> {
        Box::pin(async move { Ok(self.with_conn(move |c, p| labeled(c, p, since)).await?) })
    }
}
