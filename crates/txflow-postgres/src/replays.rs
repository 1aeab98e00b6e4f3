//! The `replays` table: what `txflow dlq replay` sent back, and whether the
//! stream has stored it since.

use txflow_core::ports::BoxFuture;
use txflow_core::replay::{Replay, ReplayLedger, ReplayRow};
use txflow_core::{BoxError, Rejections, StoredRejection};

use crate::error::{Error, Result};
use crate::sink::PostgresStore;

impl PostgresStore {
    /// Records a replay (again for the same letter and run: no change).
    pub async fn record_replay(&self, r: &Replay) -> Result<()> {
        self.session()
            .retrying("recording a replay", |client| async move {
                client
                    .execute(
                        "INSERT INTO replays (letter_topic, letter_partition, letter_offset, run_id,
                             source_topic, transaction_key, error_class, error_rule, attempt)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                         ON CONFLICT DO NOTHING",
                        &[
                            &r.letter_topic,
                            &r.letter_partition,
                            &r.letter_offset,
                            &r.run_id,
                            &r.source_topic,
                            &r.transaction_key,
                            &r.error_class,
                            &r.error_rule,
                            &r.attempt,
                        ],
                    )
                    .await
                    .map_err(Error::query("recording a replay"))?;
                Ok(())
            })
            .await
    }

    /// Every replay, oldest first, with whether its transaction is stored.
    pub async fn replays(&self) -> Result<Vec<ReplayRow>> {
        self.session()
            .retrying("reading replays", |client| async move {
                let rows = client
                    .query(
                        "SELECT r.letter_topic, r.letter_partition, r.letter_offset, r.run_id,
                                r.source_topic, r.transaction_key, r.error_class, r.error_rule,
                                r.attempt, r.replayed_at,
                                EXISTS (SELECT 1 FROM predictions p
                                        WHERE p.transaction_id::text = lower(r.transaction_key))
                         FROM replays r
                         ORDER BY r.replayed_at, r.letter_topic, r.letter_partition, r.letter_offset",
                        &[],
                    )
                    .await
                    .map_err(Error::query("reading replays"))?;
                Ok(rows
                    .iter()
                    .map(|r| ReplayRow {
                        replay: Replay {
                            letter_topic: r.get(0),
                            letter_partition: r.get(1),
                            letter_offset: r.get(2),
                            run_id: r.get(3),
                            source_topic: r.get(4),
                            transaction_key: r.get(5),
                            error_class: r.get(6),
                            error_rule: r.get(7),
                            attempt: r.get(8),
                        },
                        replayed_at: r.get(9),
                        stored: r.get(10),
                    })
                    .collect())
            })
            .await
    }

    /// Rejected batch rows (`rejected_records`) of a run and rule (each
    /// optional): counts by rule and source, and the first `limit` rows.
    pub async fn rejections(
        &self,
        run: Option<&str>,
        rule: Option<&str>,
        limit: i64,
    ) -> Result<Rejections> {
        self.session()
            .retrying("reading rejected rows", |client| async move {
                let filter =
                    "($1::text IS NULL OR run_id = $1) AND ($2::text IS NULL OR rule = $2)";
                let counts = client
                    .query(
                        &format!(
                            "SELECT rule, source_location, count(*) FROM rejected_records
                             WHERE {filter} GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2"
                        ),
                        &[&run, &rule],
                    )
                    .await
                    .map_err(Error::query("reading rejected rows"))?;
                let rows = client
                    .query(
                        &format!(
                            "SELECT source_location, source_line, rule, field, message, raw, run_id
                             FROM rejected_records WHERE {filter}
                             ORDER BY rejected_at, source_location, source_line LIMIT $3"
                        ),
                        &[&run, &rule, &limit],
                    )
                    .await
                    .map_err(Error::query("reading rejected rows"))?;
                Ok(Rejections {
                    counts: counts
                        .iter()
                        .map(|r| (r.get(0), r.get(1), r.get(2)))
                        .collect(),
                    rows: rows
                        .iter()
                        .map(|r| StoredRejection {
                            source_location: r.get(0),
                            source_line: r.get(1),
                            rule: r.get(2),
                            field: r.get(3),
                            message: r.get(4),
                            raw: r.get(5),
                            run_id: r.get(6),
                        })
                        .collect(),
                })
            })
            .await
    }
}

impl ReplayLedger for PostgresStore {
    fn record_replay<'a>(&'a self, replay: &'a Replay) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move { Ok(PostgresStore::record_replay(self, replay).await?) })
    }

    fn replays(&self) -> BoxFuture<'_, Result<Vec<ReplayRow>, BoxError>> {
        Box::pin(async move { Ok(PostgresStore::replays(self).await?) })
    }
}
