//! Models as versions: the `models` table, reading stored transactions for
//! reclassification, writing a model's predictions, and the difference
//! between two models over the same transactions.

use txflow_core::ports::BoxFuture;
use txflow_core::registry::{
    DiffCell, ModelKind, ModelRegistry, ModelRow, Page, Registration, Selection,
};
use txflow_core::transaction::{Amount, Side, TransactionId, TransactionParts};
use txflow_core::{BoxError, Prediction, ReviewRequest, Transaction};

use crate::error::{Error, Result};
use crate::sink::PostgresStore;

/// Adds `clause` (its `?` the next parameter) and `value` to a query.
fn filter<'a>(
    sql: &mut String,
    params: &mut Vec<&'a (dyn tokio_postgres::types::ToSql + Sync)>,
    clause: &str,
    value: &'a (dyn tokio_postgres::types::ToSql + Sync),
) {
    params.push(value);
    sql.push_str(&clause.replace('?', &format!("${}", params.len())));
}

/// A stored transaction, as the core knows it.
fn transaction(r: &tokio_postgres::Row) -> Result<Transaction> {
    let id: uuid::Uuid = r.get(0);
    let cents: i64 = r.get(3);
    let side: String = r.get(7);
    let corrupt = |what: &str| Error::Corrupt {
        what: format!("transaction {id}: {what}"),
    };
    Ok(Transaction::from(TransactionParts {
        id: TransactionId::from_uuid(id),
        source_id: r.get(1),
        description: r.get(2),
        amount: Amount::from_cents(cents).ok_or_else(|| corrupt("amount"))?,
        timestamp: r.get(4),
        merchant: r.get(5),
        operation_type: r.get(6),
        side: Side::parse(&side).ok_or_else(|| corrupt("side"))?,
    }))
}

impl PostgresStore {
    /// Registers a model version (again: its name, kind and location are
    /// updated, its active flag kept). Registering never activates.
    pub async fn register_model(&self, model: Registration<'_>) -> Result<()> {
        let (version, name, kind, location) = (
            model.version,
            model.name,
            model.kind.as_str(),
            model.location,
        );
        self.session()
            .retrying("registering a model", |client| async move {
                client
                    .execute(
                        "INSERT INTO models (version, name, kind, location)
                         VALUES ($1, $2, $3, $4)
                         ON CONFLICT (version) DO UPDATE
                         SET name = excluded.name, kind = excluded.kind, location = excluded.location",
                        &[&version, &name, &kind, &location],
                    )
                    .await
                    .map_err(Error::query("registering a model"))?;
                Ok(())
            })
            .await
    }

    /// Records a registered model's label set and training metrics (JSON
    /// texts); false when the version is not registered.
    pub async fn describe_model(&self, version: &str, labels: &str, metrics: &str) -> Result<bool> {
        self.session()
            .retrying("describing a model", |client| async move {
                let n = client
                    .execute(
                        "UPDATE models SET labels = $2, metrics = $3 WHERE version = $1",
                        &[&version, &labels, &metrics],
                    )
                    .await
                    .map_err(Error::query("describing a model"))?;
                Ok(n == 1)
            })
            .await
    }

    /// Records a registered model's review threshold (`None`: none); false
    /// when the version is not registered.
    pub async fn set_review_below(&self, version: &str, below: Option<f64>) -> Result<bool> {
        self.session()
            .retrying("setting a model's review threshold", |client| async move {
                let n = client
                    .execute(
                        "UPDATE models SET review_below = $2 WHERE version = $1",
                        &[&version, &below],
                    )
                    .await
                    .map_err(Error::query("setting a model's review threshold"))?;
                Ok(n == 1)
            })
            .await
    }

    /// The review threshold a model version was registered with.
    pub async fn review_below(&self, version: &str) -> Result<Option<f64>> {
        self.session()
            .retrying("reading a model's review threshold", |client| async move {
                let row = client
                    .query_opt(
                        "SELECT review_below FROM models WHERE version = $1",
                        &[&version],
                    )
                    .await
                    .map_err(Error::query("reading a model's review threshold"))?;
                Ok(row.and_then(|r| r.get(0)))
            })
            .await
    }

    /// Makes `version` the active model; false when it is not registered.
    pub async fn activate_model(&self, version: &str) -> Result<bool> {
        self.session()
            .retrying("activating a model", |mut client| async move {
                let tx = client
                    .transaction()
                    .await
                    .map_err(Error::query("activating a model"))?;
                tx.execute("UPDATE models SET active = false WHERE active", &[])
                    .await
                    .map_err(Error::query("activating a model"))?;
                let n = tx
                    .execute(
                        "UPDATE models SET active = true WHERE version = $1",
                        &[&version],
                    )
                    .await
                    .map_err(Error::query("activating a model"))?;
                if n == 1 {
                    tx.commit()
                        .await
                        .map_err(Error::query("activating a model"))?;
                }
                Ok(n == 1)
            })
            .await
    }

    /// Registered models and versions found only in predictions (kind
    /// `unregistered`), with their prediction counts.
    pub async fn models(&self) -> Result<Vec<ModelRow>> {
        self.session()
            .retrying("reading models", |client| async move {
                let rows = client
                    .query(
                        "WITH counts AS (SELECT model_version, count(*) AS n FROM predictions GROUP BY 1)
                         SELECT coalesce(m.version, c.model_version), coalesce(m.name, c.model_version),
                                m.kind, m.location, m.registered_at,
                                coalesce(m.active, false), coalesce(c.n, 0), m.labels, m.metrics,
                                m.review_below
                         FROM models m FULL JOIN counts c ON c.model_version = m.version
                         ORDER BY 5 NULLS LAST, 1",
                        &[],
                    )
                    .await
                    .map_err(Error::query("reading models"))?;
                Ok(rows
                    .iter()
                    .map(|r| ModelRow {
                        version: r.get(0),
                        name: r.get(1),
                        kind: r.get::<_, Option<&str>>(2).and_then(ModelKind::parse),
                        location: r.get(3),
                        registered_at: r.get(4),
                        active: r.get(5),
                        predictions: r.get(6),
                        labels: r.get(7),
                        metrics: r.get(8),
                        review_below: r.get(9),
                    })
                    .collect())
            })
            .await
    }

    /// The next page of a reclassification: up to `limit` selected
    /// transactions after id `after` (in id order), and of those the ones
    /// `version` has not classified yet (a rerun skips what is done).
    /// `last` is `None` once the selection is exhausted.
    ///
    /// Two index walks, not one anti-join: with fresh statistics PostgreSQL
    /// planned `NOT EXISTS` as a hash anti-join over every prediction, once
    /// per page (1,000,000 rows at 3,788/s; docs/PERFORMANCE.md).
    pub async fn transactions_to_classify(
        &self,
        selection: &Selection,
        version: &str,
        after: Option<TransactionId>,
        limit: i64,
    ) -> Result<Page> {
        let after = after.map(|id| *id.as_uuid());
        // Only the filters given, so the plan is an index walk on the id.
        let mut sql = String::from(
            "SELECT t.id, t.source_id, t.description, (t.amount * 100)::bigint, t.\"timestamp\",
                    t.merchant, t.operation_type, t.side
             FROM transactions t WHERE true",
        );
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = Vec::new();
        if let Some(after) = &after {
            filter(&mut sql, &mut params, " AND t.id > ?", after);
        }
        if let Some(run) = &selection.run {
            filter(&mut sql, &mut params, " AND t.run_id = ?", run);
        }
        if let Some(since) = &selection.since {
            filter(&mut sql, &mut params, " AND t.\"timestamp\" >= ?", since);
        }
        if let Some(until) = &selection.until {
            filter(&mut sql, &mut params, " AND t.\"timestamp\" < ?", until);
        }
        if let Some(category) = &selection.category {
            filter(
                &mut sql,
                &mut params,
                " AND t.id IN (SELECT id FROM transactions_with_latest_prediction WHERE category = ?)",
                category,
            );
        }
        if let Some(source) = &selection.source {
            filter(&mut sql, &mut params, " AND t.source_location = ?", source);
        }
        filter(&mut sql, &mut params, " ORDER BY t.id LIMIT ?", &limit);
        let sql = &sql;
        let params = &params;
        self.session()
            .retrying("reading transactions to classify", |client| async move {
                let rows = client
                    .query(sql.as_str(), params)
                    .await
                    .map_err(Error::query("reading transactions to classify"))?;
                let ids: Vec<uuid::Uuid> = rows.iter().map(|r| r.get(0)).collect();
                let done: std::collections::HashSet<uuid::Uuid> = client
                    .query(
                        "SELECT transaction_id FROM predictions
                         WHERE model_version = $1 AND transaction_id = ANY($2)",
                        &[&version, &ids],
                    )
                    .await
                    .map_err(Error::query("reading transactions to classify"))?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                let todo = rows
                    .iter()
                    .filter(|r| !done.contains(&r.get::<_, uuid::Uuid>(0)))
                    .map(transaction)
                    .collect::<Result<Vec<_>>>()?;
                Ok(Page {
                    last: ids.last().map(|id| TransactionId::from_uuid(*id)),
                    todo,
                })
            })
            .await
    }

    /// Adds predictions (one per transaction and model version: one that
    /// exists is kept, never overwritten) and queues those `reviews` asks
    /// for, in one database transaction; returns how many predictions and
    /// how many review items were added.
    pub async fn add_predictions(
        &self,
        predictions: &[Prediction],
        reviews: &[ReviewRequest],
        run_id: &str,
    ) -> Result<(u64, u64)> {
        let ids: Vec<uuid::Uuid> = predictions
            .iter()
            .map(|p| *p.transaction_id.as_uuid())
            .collect();
        let versions: Vec<&str> = predictions
            .iter()
            .map(|p| p.model_version.as_str())
            .collect();
        let categories: Vec<&str> = predictions.iter().map(|p| p.category.as_str()).collect();
        let confidences: Vec<Option<f64>> = predictions.iter().map(|p| p.confidence).collect();
        self.session()
            .retrying("writing predictions", |mut client| {
                let (ids, versions, categories, confidences) =
                    (&ids, &versions, &categories, &confidences);
                async move {
                    let tx = client
                        .transaction()
                        .await
                        .map_err(Error::query("writing predictions"))?;
                    let added = tx
                        .execute(
                            "INSERT INTO predictions (transaction_id, model_version, category, confidence, run_id)
                             SELECT id, v, c, conf, $5
                             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::float8[]) AS x(id, v, c, conf)
                             ON CONFLICT (transaction_id, model_version) DO NOTHING",
                            &[ids, versions, categories, confidences, &run_id],
                        )
                        .await
                        .map_err(Error::query("writing predictions"))?;
                    let queued = crate::review::queue(&tx, reviews, run_id).await?;
                    tx.commit()
                        .await
                        .map_err(Error::query("writing predictions"))?;
                    Ok((added, queued))
                }
            })
            .await
    }

    /// The confusion matrix of `from` against `to` over the transactions
    /// both classified, with a few examples per cell.
    pub async fn diff(&self, from: &str, to: &str) -> Result<Vec<DiffCell>> {
        self.session()
            .retrying("comparing two models", |client| async move {
                let rows = client
                    .query(
                        "SELECT a.category, b.category, count(*), coalesce(sum(t.amount * 100), 0)::bigint,
                                (array_agg(t.id::text ORDER BY t.id))[1:3]
                         FROM predictions a
                         JOIN predictions b ON b.transaction_id = a.transaction_id AND b.model_version = $2
                         JOIN transactions t ON t.id = a.transaction_id
                         WHERE a.model_version = $1
                         GROUP BY 1, 2
                         ORDER BY 1, 2",
                        &[&from, &to],
                    )
                    .await
                    .map_err(Error::query("comparing two models"))?;
                Ok(rows
                    .iter()
                    .map(|r| DiffCell {
                        from: r.get(0),
                        to: r.get(1),
                        count: r.get(2),
                        amount_cents: r.get(3),
                        examples: r.get(4),
                    })
                    .collect())
            })
            .await
    }
}

impl ModelRegistry for PostgresStore {
    fn register<'a>(&'a self, model: Registration<'a>) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move { Ok(self.register_model(model).await?) })
    }

    fn describe_model<'a>(
        &'a self,
        version: &'a str,
        labels: &'a str,
        metrics: &'a str,
    ) -> BoxFuture<'a, Result<bool, BoxError>> {
        Box::pin(async move { Ok(self.describe_model(version, labels, metrics).await?) })
    }

    fn set_review_below<'a>(
        &'a self,
        version: &'a str,
        below: Option<f64>,
    ) -> BoxFuture<'a, Result<bool, BoxError>> {
        Box::pin(async move { Ok(PostgresStore::set_review_below(self, version, below).await?) })
    }

    fn review_below<'a>(
        &'a self,
        version: &'a str,
    ) -> BoxFuture<'a, Result<Option<f64>, BoxError>> {
        Box::pin(async move { Ok(PostgresStore::review_below(self, version).await?) })
    }

    fn activate<'a>(&'a self, version: &'a str) -> BoxFuture<'a, Result<bool, BoxError>> {
        Box::pin(async move { Ok(self.activate_model(version).await?) })
    }

    fn models(&self) -> BoxFuture<'_, Result<Vec<ModelRow>, BoxError>> {
        Box::pin(async move { Ok(PostgresStore::models(self).await?) })
    }

    fn transactions_to_classify<'a>(
        &'a self,
        selection: &'a Selection,
        version: &'a str,
        after: Option<TransactionId>,
        limit: i64,
    ) -> BoxFuture<'a, Result<Page, BoxError>> {
        Box::pin(async move {
            Ok(
                PostgresStore::transactions_to_classify(self, selection, version, after, limit)
                    .await?,
            )
        })
    }

    fn add_predictions<'a>(
        &'a self,
        predictions: &'a [Prediction],
        reviews: &'a [ReviewRequest],
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<(u64, u64), BoxError>> {
        Box::pin(async move {
            Ok(PostgresStore::add_predictions(self, predictions, reviews, run_id).await?)
        })
    }

    fn diff<'a>(
        &'a self,
        from: &'a str,
        to: &'a str,
    ) -> BoxFuture<'a, Result<Vec<DiffCell>, BoxError>> {
        Box::pin(async move { Ok(PostgresStore::diff(self, from, to).await?) })
    }
}
