//! The PostgreSQL sink connector: a second database (an analytics replica,
//! say) that follows the predictions topic, through the same schema and
//! writer as `txflow batch` and `txflow consume`.
//!
//! Exactly once as the stream member is: each write is one database
//! transaction holding the rows and the partition's next offset (in
//! `stream_offsets`, under the sink's consumer group), and rows are upserts.

use std::collections::BTreeMap;
use std::sync::Arc;

use txflow_core::connector::BoxFuture;
use txflow_core::{
    Batch, Checkpoint, Connector, ConnectorError, Lineage, Position, Refused, Resume, SinkRecord,
};

use crate::error::Error;
use crate::sink::PostgresStore;

/// Writes predictions events as transactions and predictions rows.
#[derive(Debug)]
pub struct PostgresConnector {
    sink: Arc<PostgresStore>,
    /// The sink's consumer group: the offsets are stored under it.
    group: String,
    /// The URL, password hidden, for logs.
    shown: String,
}

impl PostgresConnector {
    pub fn new(sink: Arc<PostgresStore>, group: String, shown: String) -> PostgresConnector {
        PostgresConnector { sink, group, shown }
    }

    async fn write_partition(
        &self,
        topic: &str,
        partition: i32,
        records: &[SinkRecord],
    ) -> Result<Vec<Refused>, ConnectorError> {
        let Some(last) = records.last() else {
            return Ok(Vec::new());
        };
        // A batch has one lineage: records from several runs or sources
        // (batch and stream data mixed on the topic) make several batches,
        // written in one transaction; the offset goes with the last one.
        let mut by_lineage: BTreeMap<(String, String, &'static str), Vec<&SinkRecord>> =
            BTreeMap::new();
        for r in records {
            let l = &r.event.lineage;
            by_lineage
                .entry((
                    l.run_id.as_str().to_owned(),
                    l.source.to_string(),
                    l.processing_type.as_str(),
                ))
                .or_default()
                .push(r);
        }
        let count = by_lineage.len();
        let mut batches = Vec::with_capacity(count);
        for (i, rows) in by_lineage.into_values().enumerate() {
            let lineage: Lineage = rows[0].event.lineage.clone();
            let checkpoint = (i + 1 == count).then(|| Checkpoint {
                group: self.group.clone(),
                topic: topic.to_owned(),
                partition,
                next_offset: last.offset + 1,
                unpublished_from: None,
            });
            let batch = Batch {
                lineage,
                batch_id: uuid::Uuid::new_v4(),
                transactions: rows.iter().map(|r| r.event.transaction.clone()).collect(),
                positions: rows
                    .iter()
                    .map(|r| {
                        r.event.position.unwrap_or(Position {
                            line: r.offset.max(0) as u64,
                            offset: r.offset.max(0) as u64,
                        })
                    })
                    .collect(),
                predictions: rows.iter().map(|r| r.event.prediction.clone()).collect(),
                unclassified: Vec::new(),
                rejected: Vec::new(),
                reviews: Vec::new(),
                checkpoint,
                // The predictions' own runs, not this connector's.
                run_tally: false,
            };
            batches.push(batch);
        }
        self.sink.write(batches).await.map_err(classify)?;
        Ok(Vec::new())
    }
}

/// A database that is away is waited for by the sink itself (its session
/// retries); what reaches here is a bounded outage or an error in the data
/// or the schema.
fn classify(e: Error) -> ConnectorError {
    if e.is_unavailable() || matches!(e, Error::Outage { .. }) {
        ConnectorError::Unavailable(Box::new(e))
    } else {
        ConnectorError::Fatal(Box::new(e))
    }
}

impl Connector for PostgresConnector {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn resume<'a>(
        &'a self,
        topic: &'a str,
        _assigned: &'a [i32],
    ) -> BoxFuture<'a, Result<Resume, ConnectorError>> {
        Box::pin(async move {
            let stored = self
                .sink
                .offsets(&self.group, topic)
                .await
                .map_err(classify)?;
            Ok(Resume::Stored(stored.into_iter().collect()))
        })
    }

    fn write<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
        records: &'a [SinkRecord],
    ) -> BoxFuture<'a, Result<Vec<Refused>, ConnectorError>> {
        Box::pin(self.write_partition(topic, partition, records))
    }

    fn describe(&self) -> String {
        format!("PostgreSQL {}", self.shown)
    }
}
