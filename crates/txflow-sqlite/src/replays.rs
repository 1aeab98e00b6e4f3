//! Dead-letter replays in SQLite: the core's [`ReplayLedger`].

use rusqlite::params;
use txflow_core::BoxError;
use txflow_core::ports::BoxFuture;
use txflow_core::replay::{Replay, ReplayLedger, ReplayRow};

use crate::{SqliteStore, query, values};

impl ReplayLedger for SqliteStore {
    fn record_replay<'a>(&'a self, replay: &'a Replay) -> BoxFuture<'a, Result<(), BoxError>> {
        let r = replay.clone();
        Box::pin(async move {
            Ok(self
                .with_conn(move |conn, path| {
                    conn.execute(
                        txflow_sql::replays::RECORD,
                        params![
                            r.letter_topic,
                            r.letter_partition,
                            r.letter_offset,
                            r.run_id,
                            r.source_topic,
                            r.transaction_key,
                            r.error_class,
                            r.error_rule,
                            r.attempt,
                        ],
                    )
                    .map_err(query(path, "recording a replay"))?;
                    Ok(())
                })
                .await?)
        })
    }

    fn replays(&self) -> BoxFuture<'_, Result<Vec<ReplayRow>, BoxError>> {
        Box::pin(async move {
            Ok(self
                .with_conn(|conn, path| {
                    let q = |what| query(path, what);
                    values::all(
                        conn,
                            "SELECT r.letter_topic, r.letter_partition, r.letter_offset, r.run_id,
                                    r.source_topic, r.transaction_key, r.error_class, r.error_rule,
                                    r.attempt, r.replayed_at,
                                    EXISTS (SELECT 1 FROM predictions p
                                            WHERE p.transaction_id = lower(r.transaction_key))
                             FROM replays r
                             ORDER BY r.replayed_at, r.letter_topic, r.letter_partition, r.letter_offset",
                        [], |r| {
                            Ok(ReplayRow {
                                replay: Replay {
                                    letter_topic: r.get(0)?,
                                    letter_partition: r.get(1)?,
                                    letter_offset: r.get(2)?,
                                    run_id: r.get(3)?,
                                    source_topic: r.get(4)?,
                                    transaction_key: r.get(5)?,
                                    error_class: r.get(6)?,
                                    error_rule: r.get(7)?,
                                    attempt: r.get(8)?,
                                },
                                replayed_at: values::time(r, 9)?,
                                stored: r.get(10)?,
                            })
                        },
                    )
                    .map_err(q("reading replays"))
                })
                .await?)
        })
    }
}
