//! The `replays` table: what `txflow dlq replay` sent back, and whether the
//! stream has stored it since.

use txflow_core::BoxError;
use txflow_core::ports::BoxFuture;
use txflow_core::replay::{Replay, ReplayLedger, ReplayRow};

use crate::error::{Error, Result};
use crate::sink::PostgresStore;

impl PostgresStore {
    /// Records a replay (again for the same letter and run: no change).
    pub async fn record_replay(&self, r: &Replay) -> Result<()> {
        self.session()
            .retrying("recording a replay", |client| async move {
                client
                    .execute(
                        txflow_sql::replays::RECORD,
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
}

impl ReplayLedger for PostgresStore {
    fn record_replay<'a>(&'a self, replay: &'a Replay) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move { Ok(PostgresStore::record_replay(self, replay).await?) })
    }

    fn replays(&self) -> BoxFuture<'_, Result<Vec<ReplayRow>, BoxError>> {
        Box::pin(async move { Ok(PostgresStore::replays(self).await?) })
    }
}
