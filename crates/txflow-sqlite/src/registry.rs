//! Model versions in SQLite: the core's [`ModelRegistry`], as the
//! PostgreSQL adapter has it (`txflow models`, `reclassify`, `diff`).

use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use txflow_core::ports::BoxFuture;
use txflow_core::registry::{DiffCell, ModelRegistry, ModelRow, Page, Registration, Selection};
use txflow_core::transaction::{TransactionId, TransactionParts};
use txflow_core::{BoxError, Prediction, ReviewRequest, Transaction};

use crate::{Result, SqliteStore, begin_write, query, review, values};

fn register(conn: &mut Connection, path: &Path, m: &Registration<'_>) -> Result<()> {
    conn.execute(
        "INSERT INTO models (version, name, kind, location) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (version) DO UPDATE
         SET name = excluded.name, kind = excluded.kind, location = excluded.location",
        params![m.version, m.name, m.kind.as_str(), m.location],
    )
    .map_err(query(path, "registering a model"))?;
    Ok(())
}

fn update(
    conn: &mut Connection,
    path: &Path,
    sql: &str,
    values: &[&dyn rusqlite::ToSql],
) -> Result<bool> {
    let n = conn
        .execute(sql, values)
        .map_err(query(path, "updating a model"))?;
    Ok(n == 1)
}

fn activate(conn: &mut Connection, path: &Path, version: &str) -> Result<bool> {
    let q = |what| query(path, what);
    let tx = begin_write(conn).map_err(q("activating a model"))?;
    tx.execute("UPDATE models SET active = 0 WHERE active = 1", [])
        .map_err(q("activating a model"))?;
    let n = tx
        .execute("UPDATE models SET active = 1 WHERE version = ?1", [version])
        .map_err(q("activating a model"))?;
    if n == 1 {
        tx.commit().map_err(q("activating a model"))?;
    }
    Ok(n == 1)
}

fn models(conn: &Connection, path: &Path) -> Result<Vec<ModelRow>> {
    let q = |what| query(path, what);
    values::all(
        conn,
        "WITH counts AS (SELECT model_version, count(*) AS n FROM predictions GROUP BY 1)
             SELECT * FROM (
                 SELECT m.version AS version, m.name, m.kind, m.location,
                        m.registered_at AS registered_at, m.active, coalesce(c.n, 0),
                        m.labels, m.metrics, m.review_below
                 FROM models m LEFT JOIN counts c ON c.model_version = m.version
                 UNION ALL
                 SELECT c.model_version, c.model_version, NULL, NULL, NULL, 0, c.n,
                        NULL, NULL, NULL
                 FROM counts c WHERE c.model_version NOT IN (SELECT version FROM models))
             ORDER BY registered_at IS NULL, registered_at, version",
        [],
        |r| {
            let at: Option<String> = r.get(4)?;
            Ok(ModelRow {
                version: r.get(0)?,
                name: r.get(1)?,
                kind: match r.get::<_, Option<String>>(2)? {
                    Some(_) => Some(values::model_kind(r, 2)?),
                    None => None,
                },
                location: r.get(3)?,
                registered_at: match at {
                    Some(_) => Some(values::time(r, 4)?),
                    None => None,
                },
                active: r.get(5)?,
                predictions: r.get(6)?,
                labels: r.get(7)?,
                metrics: r.get(8)?,
                review_below: r.get(9)?,
            })
        },
    )
    .map_err(q("reading models"))
}

/// A time as the bound of a `julianday` comparison (stored times are RFC
/// 3339 text with or without fractions, so text order is not time order).
fn bound(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn to_classify(
    conn: &Connection,
    path: &Path,
    selection: &Selection,
    version: &str,
    after: Option<TransactionId>,
    limit: i64,
) -> Result<Page> {
    let q = |what| query(path, what);
    // Every filter is a parameter; an absent one is NULL and drops out.
    // (id, the transaction, whether `version` classified it).
    let rows = values::all(
        conn,
        "SELECT t.id, t.source_id, t.description, CAST(round(t.amount * 100) AS INTEGER),
                    t.\"timestamp\", t.merchant, t.operation_type, t.side,
                    EXISTS (SELECT 1 FROM predictions p
                            WHERE p.transaction_id = t.id AND p.model_version = ?1)
             FROM transactions t
             WHERE (?2 IS NULL OR t.id > ?2)
               AND (?3 IS NULL OR t.run_id = ?3)
               AND (?4 IS NULL OR julianday(t.\"timestamp\") >= julianday(?4))
               AND (?5 IS NULL OR julianday(t.\"timestamp\") < julianday(?5))
               AND (?6 IS NULL OR t.id IN (SELECT id FROM transactions_with_latest_prediction
                                           WHERE category = ?6))
               AND (?7 IS NULL OR t.source_location = ?7)
             ORDER BY t.id LIMIT ?8",
        params![
            version,
            after.map(|id| id.to_string()),
            selection.run,
            selection.since.map(bound),
            selection.until.map(bound),
            selection.category,
            selection.source,
            limit,
        ],
        |r| {
            let transaction = Transaction::from(TransactionParts {
                id: values::id(r, 0)?,
                source_id: r.get(1)?,
                description: r.get(2)?,
                amount: values::amount(r, 3)?,
                timestamp: values::time(r, 4)?,
                merchant: r.get(5)?,
                operation_type: r.get(6)?,
                side: values::side(r, 7)?,
            });
            Ok((transaction, r.get::<_, bool>(8)?))
        },
    )
    .map_err(q("reading transactions to classify"))?;
    Ok(Page {
        last: rows.last().map(|(t, _)| t.id()),
        todo: rows
            .into_iter()
            .filter(|(_, done)| !done)
            .map(|(t, _)| t)
            .collect(),
    })
}

fn add_predictions(
    conn: &mut Connection,
    path: &Path,
    predictions: &[Prediction],
    reviews: &[ReviewRequest],
    run_id: &str,
) -> Result<(u64, u64)> {
    let q = |what| query(path, what);
    let tx = begin_write(conn).map_err(q("starting to add predictions"))?;
    let mut added = 0;
    {
        let mut insert = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO predictions (transaction_id, model_version, category, confidence, run_id)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(q("preparing the prediction insert"))?;
        for p in predictions {
            added += insert
                .execute(params![
                    p.transaction_id.to_string(),
                    p.model_version,
                    p.category.as_str(),
                    p.confidence,
                    run_id,
                ])
                .map_err(q("adding a prediction"))? as u64;
        }
    }
    let queued = review::queue(&tx, path, reviews, run_id)?;
    tx.commit().map_err(q("committing the predictions"))?;
    Ok((added, queued))
}

fn diff(conn: &Connection, path: &Path, from: &str, to: &str) -> Result<Vec<DiffCell>> {
    let q = |what| query(path, what);
    let cells = values::all(
        conn,
        "WITH pairs AS (
                 SELECT a.category AS f, b.category AS g, t.id AS id,
                        CAST(round(t.amount * 100) AS INTEGER) AS cents,
                        row_number() OVER (PARTITION BY a.category, b.category ORDER BY t.id) AS k
                 FROM predictions a
                 JOIN predictions b ON b.transaction_id = a.transaction_id AND b.model_version = ?2
                 JOIN transactions t ON t.id = a.transaction_id
                 WHERE a.model_version = ?1)
             SELECT f, g, count(*), coalesce(sum(cents), 0),
                    group_concat(CASE WHEN k <= 3 THEN id END)
             FROM pairs GROUP BY 1, 2 ORDER BY 1, 2",
        [from, to],
        |r| {
            let examples: Option<String> = r.get(4)?;
            let mut examples: Vec<String> = examples
                .map(|e| e.split(',').map(str::to_owned).collect())
                .unwrap_or_default();
            examples.sort();
            Ok(DiffCell {
                from: r.get(0)?,
                to: r.get(1)?,
                count: r.get(2)?,
                amount_cents: r.get(3)?,
                examples,
            })
        },
    )
    .map_err(q("comparing two models"))?;
    Ok(cells)
}

impl ModelRegistry for SqliteStore {
    fn register<'a>(&'a self, model: Registration<'a>) -> BoxFuture<'a, Result<(), BoxError>> {
        let (version, name, kind, location) = (
            model.version.to_owned(),
            model.name.to_owned(),
            model.kind,
            model.location.map(str::to_owned),
        );
        Box::pin(async move {
            Ok(self
                .with_conn(move |c, p| {
                    let model = Registration {
                        version: &version,
                        name: &name,
                        kind,
                        location: location.as_deref(),
                    };
                    register(c, p, &model)
                })
                .await?)
        })
    }

    fn describe_model<'a>(
        &'a self,
        version: &'a str,
        labels: &'a str,
        metrics: &'a str,
    ) -> BoxFuture<'a, Result<bool, BoxError>> {
        let values = (version.to_owned(), labels.to_owned(), metrics.to_owned());
        Box::pin(async move {
            Ok(self
                .with_conn(move |c, p| {
                    let (v, l, m) = &values;
                    update(
                        c,
                        p,
                        "UPDATE models SET labels = ?2, metrics = ?3 WHERE version = ?1",
                        &[v, l, m],
                    )
                })
                .await?)
        })
    }

    fn set_review_below<'a>(
        &'a self,
        version: &'a str,
        below: Option<f64>,
    ) -> BoxFuture<'a, Result<bool, BoxError>> {
        let version = version.to_owned();
        Box::pin(async move {
            Ok(self
                .with_conn(move |c, p| {
                    update(
                        c,
                        p,
                        "UPDATE models SET review_below = ?2 WHERE version = ?1",
                        &[&version, &below],
                    )
                })
                .await?)
        })
    }

    fn review_below<'a>(
        &'a self,
        version: &'a str,
    ) -> BoxFuture<'a, Result<Option<f64>, BoxError>> {
        let version = version.to_owned();
        Box::pin(async move {
            Ok(self
                .with_conn(move |c, p| {
                    let below: Option<Option<f64>> = c
                        .query_row(
                            "SELECT review_below FROM models WHERE version = ?1",
                            [&version],
                            |r| r.get(0),
                        )
                        .optional()
                        .map_err(query(p, "reading a model's review threshold"))?;
                    Ok(below.flatten())
                })
                .await?)
        })
    }

    fn activate<'a>(&'a self, version: &'a str) -> BoxFuture<'a, Result<bool, BoxError>> {
        let version = version.to_owned();
        Box::pin(async move { Ok(self.with_conn(move |c, p| activate(c, p, &version)).await?) })
    }

    fn models(&self) -> BoxFuture<'_, Result<Vec<ModelRow>, BoxError>> {
        Box::pin(async move { Ok(self.with_conn(|c, p| models(c, p)).await?) })
    }

    fn transactions_to_classify<'a>(
        &'a self,
        selection: &'a Selection,
        version: &'a str,
        after: Option<TransactionId>,
        limit: i64,
    ) -> BoxFuture<'a, Result<Page, BoxError>> {
        let (selection, version) = (selection.clone(), version.to_owned());
        Box::pin(async move {
            Ok(self
                .with_conn(move |c, p| to_classify(c, p, &selection, &version, after, limit))
                .await?)
        })
    }

    fn add_predictions<'a>(
        &'a self,
        predictions: &'a [Prediction],
        reviews: &'a [ReviewRequest],
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<(u64, u64), BoxError>> {
        let (predictions, reviews, run_id) =
            (predictions.to_vec(), reviews.to_vec(), run_id.to_owned());
        Box::pin(async move {
            Ok(self
                .with_conn(move |c, p| add_predictions(c, p, &predictions, &reviews, &run_id))
                .await?)
        })
    }

    fn diff<'a>(
        &'a self,
        from: &'a str,
        to: &'a str,
    ) -> BoxFuture<'a, Result<Vec<DiffCell>, BoxError>> {
        let (from, to) = (from.to_owned(), to.to_owned());
        Box::pin(async move { Ok(self.with_conn(move |c, p| diff(c, p, &from, &to)).await?) })
    }
}
