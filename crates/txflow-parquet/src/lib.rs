//! The Parquet sink connector: the predictions topic as a data lake.
//!
//! Layout under the prefix (Hive-style, so DuckDB, Polars and Spark read the
//! `date` and `partition` columns from the paths):
//!
//! ```text
//! date=2023-11-28/partition=2/offsets-00000000000000001200-00000000000000001499.parquet
//! _txflow/<topic>/partition=2.json      the commit marker of Kafka partition 2
//! ```
//!
//! `date` is the transaction's date (UTC) by default, or the prediction's
//! ([`LakeDate`]). An object holds one Kafka partition's events of one date
//! from one write, named by the first and last offset it holds. Objects are
//! rotated by the sink member's record count and `--max-wait`, never by
//! wall-clock alignment. A write of historical transactions spans many
//! dates, so by transaction date a backfill makes many small objects; by
//! prediction date it makes one object per partition and write (the
//! transaction's time stays a column that readers filter on).
//!
//! Exactly once, for readers that list the folders: before a write the
//! partition's marker records the objects about to be written (`pending`),
//! after it the next offset. On assignment the member resumes at the
//! marker's offset and deletes any pending object left by a crash between
//! the two (its records are written again, perhaps split differently), so
//! every prediction is in exactly one object once the sink has resumed.
//!
//! Parts: [`schema`] (the Arrow schema and the batch encoder), this module
//! (the store layout, markers and the [`Connector`]).

pub mod schema;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use txflow_core::connector::BoxFuture;
use txflow_core::{BoxError, Connector, ConnectorError, Refused, Resume, SinkRecord};

/// Where the commit markers live under the prefix (readers skip folders
/// whose name starts with `_`).
pub const MARKERS: &str = "_txflow";

/// Objects of one write put at once, at most.
const PARALLEL_PUTS: usize = 16;

/// A partition's commit marker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// The next offset to write: every record before it is in an object.
    pub next_offset: i64,
    /// Objects a write was putting when the marker was written; deleted on
    /// resume if that write did not finish.
    pub pending: Vec<String>,
}

/// Which date names an event's `date=` folder. Both are in the event, so a
/// replay puts each event in the same folder whichever is chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LakeDate {
    /// The transaction's date (UTC): folders that match the questions asked
    /// of transactions, many small objects for a backfill.
    #[default]
    Transaction,
    /// The date the prediction was made (UTC): a backfill lands in the days
    /// it ran, in large objects.
    Prediction,
}

impl LakeDate {
    /// `records` by this date (`YYYY-MM-DD`, UTC), each date's in the
    /// order given.
    pub fn group<'a, R>(self, records: R) -> BTreeMap<String, Vec<&'a SinkRecord>>
    where
        R: IntoIterator<Item = &'a SinkRecord>,
    {
        let mut by_date: BTreeMap<String, Vec<&SinkRecord>> = BTreeMap::new();
        for r in records {
            let at = match self {
                LakeDate::Transaction => r.event.transaction.timestamp(),
                LakeDate::Prediction => r.event.predicted_at,
            };
            by_date
                .entry(at.format("%Y-%m-%d").to_string())
                .or_default()
                .push(r);
        }
        by_date
    }
}

/// Writes predictions events as Parquet objects into `prefix` of `store`.
#[derive(Debug)]
pub struct ParquetConnector {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    /// The URL it was opened with, for logs.
    url: String,
    date: LakeDate,
}

impl ParquetConnector {
    pub fn new(store: Arc<dyn ObjectStore>, prefix: Path, url: String) -> ParquetConnector {
        ParquetConnector {
            store,
            prefix,
            url,
            date: LakeDate::default(),
        }
    }

    /// Names the `date=` folders by `date`.
    pub fn with_date(mut self, date: LakeDate) -> ParquetConnector {
        self.date = date;
        self
    }

    fn marker_path(&self, topic: &str, partition: i32) -> Path {
        self.prefix
            .clone()
            .join(MARKERS)
            .join(topic)
            .join(format!("partition={partition}.json"))
    }

    /// The object for one date's records of a write.
    pub fn object_path(&self, date: &str, partition: i32, first: i64, last: i64) -> Path {
        self.prefix
            .clone()
            .join(format!("date={date}"))
            .join(format!("partition={partition}"))
            .join(format!("offsets-{first:020}-{last:020}.parquet"))
    }

    async fn put_marker(&self, path: &Path, marker: &Marker) -> Result<(), ConnectorError> {
        let json = serde_json::to_vec(marker).map_err(|e| ConnectorError::Fatal(e.into()))?;
        self.store
            .put(path, PutPayload::from(json))
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn read_marker(&self, path: &Path) -> Result<Option<Marker>, ConnectorError> {
        let bytes = match self.store.get(path).await {
            Ok(got) => got.bytes().await.map_err(store_error)?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(store_error(e)),
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            ConnectorError::Fatal(
                format!("the commit marker {path} is not valid ({e}): it was not written by txflow; move it away").into(),
            )
        })
    }

    async fn delete_if_present(&self, path: &Path) -> Result<(), ConnectorError> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn resume_topic(&self, topic: &str, assigned: &[i32]) -> Result<Resume, ConnectorError> {
        let folder = self.prefix.clone().join(MARKERS).join(topic);
        let listed: Vec<_> = self
            .store
            .list(Some(&folder))
            .try_collect()
            .await
            .map_err(store_error)?;
        let mut next = HashMap::new();
        for meta in listed {
            let Some(partition) = meta
                .location
                .filename()
                .and_then(|f| f.strip_prefix("partition="))
                .and_then(|f| f.strip_suffix(".json"))
                .and_then(|p| p.parse::<i32>().ok())
            else {
                continue;
            };
            let Some(marker) = self.read_marker(&meta.location).await? else {
                continue;
            };
            if !marker.pending.is_empty() && assigned.contains(&partition) {
                // A write that did not finish: its objects go, its records
                // are written again from the marker's offset.
                for key in &marker.pending {
                    self.delete_if_present(&Path::from(key.as_str())).await?;
                }
                tracing::info!(
                    topic,
                    partition,
                    removed = marker.pending.len(),
                    next_offset = marker.next_offset,
                    "removed the objects of an unfinished write"
                );
                let clean = Marker {
                    next_offset: marker.next_offset,
                    pending: Vec::new(),
                };
                self.put_marker(&meta.location, &clean).await?;
            }
            next.insert(partition, marker.next_offset);
        }
        Ok(Resume::Stored(next))
    }

    /// A write's first two steps: the marker names the objects about to be
    /// written, then they are put. Returns the marker to commit.
    async fn put_objects(
        &self,
        topic: &str,
        partition: i32,
        records: &[SinkRecord],
    ) -> Result<Option<(Path, Marker)>, ConnectorError> {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Ok(None);
        };
        // One object per date, in offset order within each.
        let by_date = self.date.group(records);
        let mut objects = Vec::with_capacity(by_date.len());
        for (date, rows) in &by_date {
            let (lo, hi) = (rows[0].offset, rows[rows.len() - 1].offset);
            let bytes = schema::encode(rows).map_err(|e| ConnectorError::Fatal(e.into()))?;
            objects.push((self.object_path(date, partition, lo, hi), bytes));
        }
        let marker = self.marker_path(topic, partition);
        let pending = Marker {
            next_offset: first.offset,
            pending: objects.iter().map(|(p, _)| p.to_string()).collect(),
        };
        self.put_marker(&marker, &pending).await?;
        // A write of historical data spans many dates: its objects go up
        // side by side.
        futures::stream::iter(objects)
            .map(|(path, bytes)| async move {
                self.store
                    .put(&path, PutPayload::from(Bytes::from(bytes)))
                    .await
                    .map_err(store_error)
            })
            .buffer_unordered(PARALLEL_PUTS)
            .try_collect::<Vec<_>>()
            .await?;
        let done = Marker {
            next_offset: last.offset + 1,
            pending: Vec::new(),
        };
        Ok(Some((marker, done)))
    }

    async fn write_partition(
        &self,
        topic: &str,
        partition: i32,
        records: &[SinkRecord],
    ) -> Result<Vec<Refused>, ConnectorError> {
        if let Some((marker, done)) = self.put_objects(topic, partition, records).await? {
            self.put_marker(&marker, &done).await?;
        }
        Ok(Vec::new())
    }
}

/// Whether an object-store failure does not pass by waiting: refused
/// credentials, a missing bucket, an operation the store lacks, a bad path.
/// (Connection refused, 5xx and time-outs may.) Shared by the connectors
/// that write to object stores.
pub fn is_fatal(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }
            | object_store::Error::NotSupported { .. }
            | object_store::Error::NotImplemented { .. }
            | object_store::Error::InvalidPath { .. }
    ) || e.to_string().contains("NoSuchBucket")
}

/// Object-store failures: a missing bucket or refused credentials do not
/// pass by waiting; the rest (connection refused, 5xx, time-outs) may.
fn store_error(e: object_store::Error) -> ConnectorError {
    let fatal = is_fatal(&e);
    let boxed: BoxError = Box::new(e);
    if fatal {
        ConnectorError::Fatal(boxed)
    } else {
        ConnectorError::Unavailable(boxed)
    }
}

impl Connector for ParquetConnector {
    fn kind(&self) -> &'static str {
        "parquet"
    }

    fn resume<'a>(
        &'a self,
        topic: &'a str,
        assigned: &'a [i32],
    ) -> BoxFuture<'a, Result<Resume, ConnectorError>> {
        Box::pin(self.resume_topic(topic, assigned))
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
        format!("Parquet objects under {}", self.url)
    }
}

/// One row of the lake as a reader sees it (the columns tests and checks
/// need), with the object it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LakeRow {
    pub object: String,
    pub transaction_id: String,
    pub category: String,
    pub amount_cents: i128,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
}

/// Reads every Parquet object under `prefix` (outside `_txflow/`) back with
/// the parquet crate, as a reader that lists the folders would.
pub async fn read_lake(store: &dyn ObjectStore, prefix: &Path) -> Result<Vec<LakeRow>, BoxError> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Decimal128Type, Int16Type, Int32Type, Int64Type};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let listed: Vec<_> = store.list(Some(prefix)).try_collect().await?;
    let mut rows = Vec::new();
    for meta in listed {
        let key = meta.location.to_string();
        if !key.ends_with(".parquet") || key.contains(&format!("/{MARKERS}/")) {
            continue;
        }
        let bytes = store.get(&meta.location).await?.bytes().await?;
        for batch in ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()? {
            let batch = batch?;
            let column = |name: &str| {
                batch
                    .column_by_name(name)
                    .ok_or_else(|| format!("{key}: no column {name}"))
            };
            let ids = column("transaction_id")?.as_string::<i32>().clone();
            let categories = column("category")?.as_dictionary::<Int16Type>().clone();
            let names = categories.values().as_string::<i32>().clone();
            let amounts = column("amount")?.as_primitive::<Decimal128Type>().clone();
            let partitions = column("kafka_partition")?
                .as_primitive::<Int32Type>()
                .clone();
            let offsets = column("kafka_offset")?.as_primitive::<Int64Type>().clone();
            for i in 0..batch.num_rows() {
                rows.push(LakeRow {
                    object: key.clone(),
                    transaction_id: ids.value(i).to_owned(),
                    category: names.value(categories.keys().value(i) as usize).to_owned(),
                    amount_cents: amounts.value(i),
                    kafka_partition: partitions.value(i),
                    kafka_offset: offsets.value(i),
                });
            }
        }
    }
    Ok(rows)
}

/// A predictions record for tests of this crate and of the table formats
/// built on its files: partition `partition`, offset `offset`, a
/// transaction of 2023-11-`day` whose id, amount and merchant follow from
/// the offset.
#[doc(hidden)]
pub mod fixture {
    use txflow_core::transaction::{Amount, Side, TransactionId, TransactionParts};
    use txflow_core::{
        Category, Lineage, Position, Prediction, PredictionEvent, ProcessingType, RunId,
        SinkRecord, Transaction,
    };

    pub fn record(partition: i32, offset: i64, day: u32) -> SinkRecord {
        let id = TransactionId::from_uuid(uuid::Uuid::from_u128(
            (partition as u128) << 64 | offset as u128,
        ));
        let timestamp = chrono::NaiveDate::from_ymd_opt(2023, 11, day)
            .and_then(|d| d.and_hms_opt(6, 35, 12))
            .expect("a date")
            .and_utc();
        let transaction = Transaction::from(TransactionParts {
            id,
            source_id: offset.to_string(),
            description: "Card expense at EDF".into(),
            amount: Amount::from_cents(-95_240 - offset).expect("in range"),
            timestamp,
            merchant: (offset % 2 == 0).then(|| "EDF".to_owned()),
            operation_type: "card".into(),
            side: Side::Debit,
        });
        SinkRecord {
            partition,
            offset,
            event: PredictionEvent {
                prediction: Prediction {
                    transaction_id: id,
                    category: Category::new("Utilities").expect("a name"),
                    confidence: Some(0.9),
                    model_version: "reference-1".into(),
                },
                transaction,
                predicted_at: timestamp,
                lineage: Lineage {
                    run_id: RunId::parse("g/m").expect("a run id"),
                    source: "kafka://t/0".into(),
                    processing_type: ProcessingType::Streaming,
                },
                position: Some(Position {
                    line: offset as u64,
                    offset: offset as u64,
                }),
                needs_review: false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use object_store::memory::InMemory;

    use super::fixture::record;
    use super::*;

    fn connector(store: &Arc<InMemory>) -> ParquetConnector {
        let store: Arc<dyn ObjectStore> = store.clone();
        ParquetConnector::new(store, Path::from("lake"), "memory://lake".into())
    }

    #[tokio::test]
    async fn a_write_lands_by_date_and_partition_named_by_its_offsets_and_reads_back() {
        let store = Arc::new(InMemory::new());
        let lake = connector(&store);
        let records: Vec<SinkRecord> = (10..20)
            .map(|o| record(2, o, 27 + (o % 2) as u32))
            .collect();
        lake.write("t", 2, &records).await.expect("written");
        let rows = read_lake(store.as_ref(), &Path::from("lake"))
            .await
            .expect("read");
        assert_eq!(rows.len(), 10);
        let objects: HashSet<&str> = rows.iter().map(|r| r.object.as_str()).collect();
        assert_eq!(
            objects,
            HashSet::from([
                "lake/date=2023-11-27/partition=2/offsets-00000000000000000010-00000000000000000018.parquet",
                "lake/date=2023-11-28/partition=2/offsets-00000000000000000011-00000000000000000019.parquet",
            ])
        );
        let first = rows
            .iter()
            .find(|r| r.kafka_offset == 10)
            .expect("offset 10");
        assert_eq!(first.amount_cents, -95_250);
        assert_eq!(first.category, "Utilities");
        assert_eq!(
            lake.resume("t", &[]).await.expect("resume"),
            Resume::Stored(HashMap::from([(2, 20)]))
        );
    }

    #[tokio::test]
    async fn by_prediction_date_a_backfill_write_is_one_object_per_partition() {
        let store = Arc::new(InMemory::new());
        let store_dyn: Arc<dyn ObjectStore> = store.clone();
        let lake = ParquetConnector::new(store_dyn, Path::from("lake"), "memory://lake".into())
            .with_date(LakeDate::Prediction);
        // Transactions of 10 different days, all predicted on 2026-11-26.
        let predicted = chrono::NaiveDate::from_ymd_opt(2026, 11, 26)
            .and_then(|d| d.and_hms_opt(8, 0, 0))
            .expect("a date")
            .and_utc();
        let records: Vec<SinkRecord> = (0..20)
            .map(|o| {
                let mut r = record(1, o, 1 + (o % 10) as u32);
                r.event.predicted_at = predicted;
                r
            })
            .collect();
        lake.write("t", 1, &records).await.expect("written");
        let rows = read_lake(store.as_ref(), &Path::from("lake"))
            .await
            .expect("read");
        let objects: HashSet<&str> = rows.iter().map(|r| r.object.as_str()).collect();
        assert_eq!(
            objects,
            HashSet::from([
                "lake/date=2026-11-26/partition=1/offsets-00000000000000000000-00000000000000000019.parquet",
            ])
        );
        assert_eq!(rows.len(), 20);
    }

    #[tokio::test]
    async fn a_write_cut_short_is_removed_on_resume_and_the_replay_leaves_each_prediction_once() {
        let store = Arc::new(InMemory::new());
        let lake = connector(&store);
        let all: Vec<SinkRecord> = (0..30).map(|o| record(0, o, 1 + (o / 7) as u32)).collect();
        lake.write("t", 0, &all[..10]).await.expect("written");
        // A crash after the next write's objects, before its marker moved.
        lake.put_objects("t", 0, &all[10..25]).await.expect("put");
        let visible = read_lake(store.as_ref(), &Path::from("lake"))
            .await
            .expect("read");
        assert_eq!(visible.len(), 25);
        // Looking (the watchdog of another member) changes nothing.
        lake.resume("t", &[]).await.expect("resume");
        assert_eq!(
            read_lake(store.as_ref(), &Path::from("lake"))
                .await
                .expect("read")
                .len(),
            25
        );
        // The member given the partition resumes where the marker says, and
        // replays with other boundaries.
        let resume = lake.resume("t", &[0]).await.expect("resume");
        assert_eq!(resume, Resume::Stored(HashMap::from([(0, 10)])));
        assert_eq!(
            read_lake(store.as_ref(), &Path::from("lake"))
                .await
                .expect("read")
                .len(),
            10,
            "the unfinished write's objects are gone"
        );
        lake.write("t", 0, &all[10..17]).await.expect("written");
        lake.write("t", 0, &all[17..30]).await.expect("written");
        let rows = read_lake(store.as_ref(), &Path::from("lake"))
            .await
            .expect("read");
        let mut offsets: Vec<i64> = rows.iter().map(|r| r.kafka_offset).collect();
        offsets.sort_unstable();
        assert_eq!(
            offsets,
            (0..30).collect::<Vec<_>>(),
            "each prediction exactly once"
        );
    }
}
