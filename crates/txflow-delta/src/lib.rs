//! The Delta Lake sink connector: the predictions topic as a Delta table.
//!
//! Layout under the table's root:
//!
//! ```text
//! _delta_log/00000000000000000000.json            the commits
//! date=2023-11-28/p2-<first>-<last>-<uuid>.parquet   data files
//! ```
//!
//! Each write of a Kafka partition's records adds its data files (one per
//! date) and a `txn` action whose `appId` is `<group>/<topic>/<partition>`
//! and whose `version` is the last offset written, in one commit. The table
//! is the only record of progress: on assignment the member resumes after
//! each partition's `txn` version, and a write first drops the records the
//! table already has, so a replay (a crash between the files and the
//! commit, a zombie member after a rebalance) adds nothing. Files put by a
//! write that never committed are invisible to readers and go with
//! `txflow lake vacuum`.
//!
//! Commits in one process are serialised, and the writes that arrive while
//! one is being put share the next (a group commit). A commit puts its
//! version from what the process knows of the table, with "create if
//! absent": when another process (a second sink member) took the version,
//! the log is read, each partition's progress checked again, and the next
//! version tried, as the protocol says. A checkpoint is written every
//! [`CHECKPOINT_INTERVAL`] commits.
//!
//! Parts: [`log`] (actions, snapshots, commits), [`checkpoint`] (a
//! version's state as one Parquet file), [`schema`] (the table's schema
//! and its evolution), [`table`] (compaction, vacuum, history: the
//! `txflow lake` commands), this module (the [`Connector`]).

pub mod checkpoint;
pub mod log;
pub mod schema;
pub mod table;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use std::sync::atomic::{AtomicI64, Ordering};

use tokio::sync::{Mutex, oneshot};
use txflow_core::connector::BoxFuture;
use txflow_core::{BoxError, Connector, ConnectorError, Refused, Resume, SinkRecord};
use txflow_parquet::LakeDate;
use txflow_parquet::schema::Metadata as FileMetadata;

use crate::log::{Action, Add, Format, Log, Metadata, Pairs, Protocol, Snapshot, Txn};
use crate::schema::{DATE, Evolution};

/// Data files of one write put at once, at most.
const PARALLEL_PUTS: usize = 16;

/// Commits between checkpoints, unless the table's `delta.checkpointInterval`
/// says otherwise (delta-rs's default; Spark's is 10).
pub const CHECKPOINT_INTERVAL: i64 = 100;

/// Versions tried before a write gives up on a busy table (each loss means
/// another writer committed: the table moves, this one waits its turn).
const COMMIT_ATTEMPTS: usize = 1_000;

/// What can go wrong with a table.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] object_store::Error),
    #[error("the Delta table {table} is damaged: {what}")]
    Corrupt { table: String, what: String },
    #[error("txflow cannot write the Delta table {table}: {what}")]
    Unsupported { table: String, what: String },
    #[error("the Delta table {table} has no version {version}: `txflow lake history` lists them")]
    NoSuchVersion { table: String, version: i64 },
    #[error(
        "there is no Delta table at {table} (no _delta_log/ commits): `txflow sink delta+…` makes one"
    )]
    NoTable { table: String },
    #[error("the Delta table {table}: {what}")]
    Data { table: String, what: String },
    /// One failure of a commit shared by the writes it held.
    #[error(transparent)]
    Shared(Arc<Error>),
}

impl Error {
    /// Whether waiting may cure it (a store away, a time-out).
    fn is_transient(&self) -> bool {
        match self {
            Error::Store(e) => !txflow_parquet::is_fatal(e),
            Error::Shared(e) => e.is_transient(),
            _ => false,
        }
    }
}

impl From<Error> for ConnectorError {
    fn from(e: Error) -> ConnectorError {
        let transient = e.is_transient();
        let boxed: BoxError = Box::new(e);
        if transient {
            ConnectorError::Unavailable(boxed)
        } else {
            ConnectorError::Fatal(boxed)
        }
    }
}

/// Milliseconds since the epoch, as the protocol's times are.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The engine info written in each commit.
pub const ENGINE: &str = concat!("txflow/", env!("CARGO_PKG_VERSION"));

/// Writes predictions events into a Delta table.
#[derive(Debug)]
pub struct DeltaConnector {
    log: Log,
    /// The sink's consumer group: the first part of every `appId`.
    group: String,
    date: LakeDate,
    /// Commits between checkpoints, when the operator says (else the
    /// table's `delta.checkpointInterval`, else [`CHECKPOINT_INTERVAL`]).
    checkpoint_interval: Option<i64>,
    /// The table as last read or written by this process; commits hold it.
    state: Mutex<Option<Snapshot>>,
    /// Writes waiting for the next commit.
    queue: std::sync::Mutex<Vec<Pending>>,
    /// The version of the last checkpoint this process wrote.
    checkpointed: AtomicI64,
}

impl DeltaConnector {
    /// The table at `root` of `store` (made by the first write), written by
    /// the sink group `group`; `url` is for logs.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        root: Path,
        url: String,
        group: String,
    ) -> DeltaConnector {
        DeltaConnector {
            log: Log::new(store, root, url),
            group,
            date: LakeDate::default(),
            checkpoint_interval: None,
            state: Mutex::new(None),
            queue: std::sync::Mutex::new(Vec::new()),
            checkpointed: AtomicI64::new(0),
        }
    }

    /// Partitions the table by `date`.
    pub fn with_date(mut self, date: LakeDate) -> DeltaConnector {
        self.date = date;
        self
    }

    /// Writes a checkpoint every `commits` commits.
    pub fn with_checkpoint_interval(mut self, commits: Option<u32>) -> DeltaConnector {
        self.checkpoint_interval = commits.map(i64::from).filter(|c| *c > 0);
        self
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    /// The `appId` of a partition's progress.
    pub fn app_id(&self, topic: &str, partition: i32) -> String {
        format!("{}/{topic}/{partition}", self.group)
    }

    /// The table as this process knows it, read (or made) on first use;
    /// with `refresh`, brought to the latest version first. A commit needs
    /// no refresh: its put fails if any other writer committed since, and
    /// only then is the log read again.
    async fn known<'a>(
        &self,
        state: &'a mut Option<Snapshot>,
        refresh: bool,
    ) -> Result<&'a mut Snapshot, Error> {
        match state {
            Some(snapshot) => {
                if refresh {
                    self.log.update(snapshot).await?;
                }
            }
            None => {
                let snapshot = match self.log.snapshot().await? {
                    Some(s) => s,
                    None => self.create().await?,
                };
                *state = Some(snapshot);
            }
        }
        Ok(state.as_mut().expect("set above"))
    }

    /// Makes the table (version 0), or reads the one another writer made
    /// meanwhile.
    async fn create(&self) -> Result<Snapshot, Error> {
        let protocol = Protocol {
            min_reader_version: log::READER_VERSION,
            min_writer_version: log::WRITER_VERSION,
            reader_features: None,
            writer_features: None,
        };
        let metadata = Metadata {
            id: uuid::Uuid::new_v4().to_string(),
            name: None,
            description: Some("txflow predictions".into()),
            format: Format {
                provider: "parquet".into(),
                options: Pairs::default(),
            },
            schema_string: schema_string(),
            partition_columns: vec![DATE.into()],
            configuration: Pairs::default(),
            created_time: Some(now_ms()),
        };
        let actions = [
            Action {
                protocol: Some(protocol),
                ..Action::default()
            },
            Action::metadata(metadata),
            Action::commit_info(serde_json::json!({
                "timestamp": now_ms(),
                "operation": "CREATE TABLE",
                "operationParameters": {
                    "mode": "ErrorIfExists",
                    "partitionBy": serde_json::to_string(&[DATE]).unwrap_or_default(),
                },
                "engineInfo": ENGINE,
                "isBlindAppend": true,
            })),
        ];
        if self.log.try_commit(0, &actions).await? {
            tracing::info!(table = %self.log.url(), "made the Delta table");
        }
        self.log.snapshot().await?.ok_or_else(|| Error::Corrupt {
            table: self.log.url().to_owned(),
            what: "version 0 was put but cannot be read back".into(),
        })
    }

    async fn resume_topic(&self, topic: &str) -> Result<Resume, Error> {
        let mut state = self.state.lock().await;
        // Other members may have written: the table as it is now.
        let snapshot = self.known(&mut state, true).await?;
        let prefix = format!("{}/{topic}/", self.group);
        let next = snapshot
            .txns
            .iter()
            .filter_map(|(app, version)| {
                let partition = app.strip_prefix(&prefix)?.parse::<i32>().ok()?;
                Some((partition, version + 1))
            })
            .collect::<HashMap<_, _>>();
        Ok(Resume::Stored(next))
    }

    /// The last offset of `app` the table has as this process knows it, or
    /// -1 (if another writer moved it since, the commit finds out).
    async fn stored_offset(&self, app: &str) -> Result<i64, Error> {
        let mut state = self.state.lock().await;
        let snapshot = self.known(&mut state, false).await?;
        Ok(snapshot.txns.get(app).copied().unwrap_or(-1))
    }

    /// Puts the data files of `records` (one per date); returns their adds.
    async fn put_files(&self, partition: i32, records: &[&SinkRecord]) -> Result<Vec<Add>, Error> {
        let by_date = self.date.group(records.iter().copied());
        let mut files = Vec::with_capacity(by_date.len());
        for (date, rows) in by_date {
            let (lo, hi) = (rows[0].offset, rows[rows.len() - 1].offset);
            let batch = txflow_parquet::schema::batch(&rows).map_err(|e| self.data_error(e))?;
            let bytes = txflow_parquet::schema::write(&[batch], FileMetadata::ParquetOnly)
                .map_err(|e| self.data_error(e))?;
            let name = format!(
                "{DATE}={date}/p{partition}-{lo:020}-{hi:020}-{}.parquet",
                uuid::Uuid::new_v4().simple()
            );
            let stats = serde_json::json!({
                "numRecords": rows.len(),
                "minValues": { "kafka_offset": lo },
                "maxValues": { "kafka_offset": hi },
                "nullCount": { "kafka_offset": 0 },
            });
            files.push((date, name, bytes, stats.to_string()));
        }
        futures::stream::iter(files)
            .map(|(date, name, bytes, stats)| {
                let store = Arc::clone(self.log.store());
                let path = self.log.data_path(&name);
                async move {
                    let path = path?;
                    let size = bytes.len() as i64;
                    store
                        .put(&path, PutPayload::from(Bytes::from(bytes)))
                        .await?;
                    Ok::<_, Error>(Add {
                        path: name,
                        partition_values: Pairs::from_iter([(DATE.to_owned(), Some(date))]),
                        size,
                        modification_time: now_ms(),
                        data_change: true,
                        stats: Some(stats),
                    })
                }
            })
            .buffer_unordered(PARALLEL_PUTS)
            .try_collect()
            .await
    }

    fn data_error(&self, e: impl std::fmt::Display) -> Error {
        Error::Data {
            table: self.log.url().to_owned(),
            what: e.to_string(),
        }
    }

    async fn delete_files(&self, adds: &[Add]) {
        for add in adds {
            let Ok(path) = self.log.data_path(&add.path) else {
                continue;
            };
            if let Err(e) = self.log.store().delete(&path).await {
                tracing::warn!(file = %path, error = %e, "an uncommitted data file stays (txflow lake vacuum removes it)");
            }
        }
    }

    async fn write_partition(
        &self,
        topic: &str,
        partition: i32,
        records: &[SinkRecord],
    ) -> Result<Vec<Refused>, Error> {
        let app = self.app_id(topic, partition);
        let mut stored = self.stored_offset(&app).await?;
        loop {
            let fresh: Vec<&SinkRecord> = records.iter().filter(|r| r.offset > stored).collect();
            let Some(last) = fresh.last().map(|r| r.offset) else {
                return Ok(Vec::new());
            };
            let adds = self.put_files(partition, &fresh).await?;
            match self
                .commit(&app, stored, last, adds.clone(), fresh.len())
                .await?
            {
                Committed::Done => return Ok(Vec::new()),
                Committed::Moved(now) => {
                    // Another writer stored this partition meanwhile: these
                    // files go, the records it lacks are written again.
                    tracing::warn!(table = %self.log.url(), app, stored = now,
                        "another writer stored this partition meanwhile; writing only what it lacks");
                    self.delete_files(&adds).await;
                    stored = now;
                }
            }
        }
    }

    /// Commits `adds` with `app`'s new version `last`, if the table still has
    /// `stored` for `app`. Writes that arrive while a commit is being put
    /// go together into the next one (the partitions of a flush, written
    /// side by side, make one or two commits rather than one each).
    async fn commit(
        &self,
        app: &str,
        stored: i64,
        last: i64,
        adds: Vec<Add>,
        rows: usize,
    ) -> Result<Committed, Error> {
        let (done, outcome) = oneshot::channel();
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Pending {
                app: app.to_owned(),
                stored,
                last,
                adds,
                rows,
                done,
            });
        {
            let mut state = self.state.lock().await;
            let batch = std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()));
            if !batch.is_empty() {
                self.commit_batch(&mut state, batch).await;
            }
        }
        // Ours was in this batch or in the one of the holder before.
        outcome.await.unwrap_or_else(|_| {
            Err(Error::Corrupt {
                table: self.log.url().to_owned(),
                what: "a commit ended without saying how".into(),
            })
        })
    }

    /// One commit of every write in `batch` whose partition has not moved;
    /// each write is told what became of it.
    async fn commit_batch(&self, state: &mut Option<Snapshot>, mut batch: Vec<Pending>) {
        for attempt in 0..COMMIT_ATTEMPTS {
            let snapshot = match self.known(state, attempt > 0).await {
                Ok(s) => s,
                Err(e) => return fail(batch, e),
            };
            // A partition moved by another writer, or written twice in
            // this batch, is sent back to write what the table lacks.
            let mut seen = std::collections::HashSet::new();
            let (ready, moved): (Vec<Pending>, Vec<Pending>) = batch.into_iter().partition(|p| {
                snapshot.txns.get(&p.app).copied().unwrap_or(-1) == p.stored
                    && seen.insert(p.app.clone())
            });
            for p in moved {
                let now = snapshot.txns.get(&p.app).copied().unwrap_or(-1);
                let _ = p.done.send(Ok(Committed::Moved(now)));
            }
            batch = ready;
            if batch.is_empty() {
                return;
            }
            let mut actions =
                Vec::with_capacity(batch.iter().map(|p| p.adds.len() + 1).sum::<usize>() + 2);
            match schema::evolution(&snapshot.metadata.schema_string, &schema::current()) {
                Evolution::Same => {}
                Evolution::Adds(columns) => {
                    tracing::info!(table = %self.log.url(), ?columns, "adding the new columns to the table's schema");
                    actions.push(Action::metadata(Metadata {
                        schema_string: schema_string(),
                        ..snapshot.metadata.clone()
                    }));
                }
                Evolution::Incompatible(why) => {
                    let e = Error::Unsupported {
                        table: self.log.url().to_owned(),
                        what: format!("{why}; write to a new table"),
                    };
                    return fail(batch, e);
                }
            }
            let stamp = now_ms();
            for p in &batch {
                actions.extend(p.adds.iter().cloned().map(Action::add));
                actions.push(Action::txn(Txn {
                    app_id: p.app.clone(),
                    version: p.last,
                    last_updated: Some(stamp),
                }));
            }
            let apps: Vec<&str> = batch.iter().map(|p| p.app.as_str()).collect();
            actions.push(Action::commit_info(serde_json::json!({
                "timestamp": stamp,
                "operation": "STREAMING UPDATE",
                "operationParameters": {
                    "outputMode": "Append",
                    "queryId": apps.join(","),
                    "epochId": batch.iter().map(|p| p.last.to_string()).collect::<Vec<_>>().join(","),
                },
                "readVersion": snapshot.version,
                "isolationLevel": "Serializable",
                "isBlindAppend": true,
                "operationMetrics": {
                    "numFiles": batch.iter().map(|p| p.adds.len()).sum::<usize>().to_string(),
                    "numOutputRows": batch.iter().map(|p| p.rows).sum::<usize>().to_string(),
                },
                "engineInfo": ENGINE,
            })));
            let version = snapshot.version + 1;
            match self.log.try_commit(version, &actions).await {
                Ok(true) => {
                    log::apply(snapshot, &actions);
                    snapshot.version = version;
                    self.checkpoint_if_due(snapshot).await;
                    for p in batch {
                        let _ = p.done.send(Ok(Committed::Done));
                    }
                    return;
                }
                Ok(false) => tracing::debug!(
                    version,
                    "another writer took the version; reading its commit"
                ),
                Err(e) => return fail(batch, e),
            }
        }
        let e = Error::Corrupt {
            table: self.log.url().to_owned(),
            what: format!("{COMMIT_ATTEMPTS} versions in a row were taken by other writers"),
        };
        fail(batch, e)
    }

    /// Writes a checkpoint when `interval` commits passed since the last
    /// this process wrote (or, at its first commit, since version 0).
    async fn checkpoint_if_due(&self, snapshot: &Snapshot) {
        let interval = self
            .checkpoint_interval
            .unwrap_or_else(|| checkpoint_interval(snapshot));
        let last = self.checkpointed.load(Ordering::Relaxed);
        if snapshot.version - last < interval {
            return;
        }
        // Readers start from it; a failure only makes them read more commits.
        match self.log.write_checkpoint(snapshot).await {
            Ok(()) => self.checkpointed.store(snapshot.version, Ordering::Relaxed),
            Err(e) => {
                tracing::warn!(table = %self.log.url(), version = snapshot.version, error = %e, "the checkpoint was not written")
            }
        }
    }
}

/// A write waiting for the next commit.
#[derive(Debug)]
struct Pending {
    app: String,
    stored: i64,
    last: i64,
    adds: Vec<Add>,
    rows: usize,
    done: oneshot::Sender<Result<Committed, Error>>,
}

/// Tells every write of `batch` that its commit failed with `e`.
fn fail(batch: Vec<Pending>, e: Error) {
    let shared = Arc::new(e);
    for p in batch {
        let _ = p.done.send(Err(Error::Shared(Arc::clone(&shared))));
    }
}

/// What became of a commit.
#[derive(Debug)]
enum Committed {
    Done,
    /// The partition's stored offset moved to this one meanwhile.
    Moved(i64),
}

/// Commits between checkpoints of this table.
fn checkpoint_interval(snapshot: &Snapshot) -> i64 {
    snapshot
        .metadata
        .configuration
        .get("delta.checkpointInterval")
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|v| *v > 0)
        .unwrap_or(CHECKPOINT_INTERVAL)
}

/// The current schema as the `schemaString` of a `metaData` action.
fn schema_string() -> String {
    serde_json::to_string(&schema::current()).expect("a schema always encodes")
}

impl Connector for DeltaConnector {
    fn kind(&self) -> &'static str {
        "delta"
    }

    fn resume<'a>(
        &'a self,
        topic: &'a str,
        _assigned: &'a [i32],
    ) -> BoxFuture<'a, Result<Resume, ConnectorError>> {
        Box::pin(async move { Ok(self.resume_topic(topic).await?) })
    }

    fn write<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
        records: &'a [SinkRecord],
    ) -> BoxFuture<'a, Result<Vec<Refused>, ConnectorError>> {
        Box::pin(async move { Ok(self.write_partition(topic, partition, records).await?) })
    }

    fn describe(&self) -> String {
        format!("the Delta table {}", self.log.url())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::Duration;

    use object_store::memory::InMemory;
    use txflow_parquet::fixture::record;

    use super::*;
    use crate::table::{CompactOptions, compact, history, read_file, vacuum};

    fn records(partition: i32, offsets: std::ops::Range<i64>) -> Vec<SinkRecord> {
        offsets
            .map(|o| record(partition, o, 1 + (o % 3) as u32))
            .collect()
    }

    /// Writes `offsets` of `partition` of topic `t` through `delta`.
    async fn put(delta: &DeltaConnector, partition: i32, offsets: std::ops::Range<i64>) {
        delta
            .write("t", partition, &records(partition, offsets))
            .await
            .expect("written");
    }

    fn table(store: &Arc<InMemory>) -> DeltaConnector {
        let store: Arc<dyn ObjectStore> = store.clone();
        DeltaConnector::new(
            store,
            Path::from("lake"),
            "memory://lake".into(),
            "g".into(),
        )
    }

    /// Every (partition, offset) of the latest version, read from its files.
    async fn rows(log: &Log) -> Vec<(i32, i64)> {
        let snapshot = log.snapshot().await.expect("read").expect("a table");
        let mut rows = Vec::new();
        for path in snapshot.files.keys() {
            for batch in read_file(log, path).await.expect("a file") {
                use arrow_array::cast::AsArray;
                use arrow_array::types::{Int32Type, Int64Type};
                let p = batch.column_by_name("kafka_partition").expect("column");
                let o = batch.column_by_name("kafka_offset").expect("column");
                let (p, o) = (p.as_primitive::<Int32Type>(), o.as_primitive::<Int64Type>());
                rows.extend(p.values().iter().copied().zip(o.values().iter().copied()));
            }
        }
        rows.sort_unstable();
        rows
    }

    fn expected(parts: &[(i32, std::ops::Range<i64>)]) -> Vec<(i32, i64)> {
        let mut all: Vec<(i32, i64)> = parts
            .iter()
            .flat_map(|(p, r)| r.clone().map(move |o| (*p, o)))
            .collect();
        all.sort_unstable();
        all
    }

    #[tokio::test]
    async fn each_write_is_a_commit_with_its_files_by_date_and_the_partitions_progress() {
        let store = Arc::new(InMemory::new());
        let delta = table(&store);
        assert_eq!(
            delta.resume("t", &[0]).await.expect("resume"),
            Resume::Stored(HashMap::new()),
            "a new table has no progress"
        );
        put(&delta, 0, 0..10).await;
        put(&delta, 1, 0..4).await;
        put(&delta, 0, 10..12).await;
        let snapshot = delta
            .log()
            .snapshot()
            .await
            .expect("read")
            .expect("a table");
        assert_eq!(
            snapshot.version, 3,
            "version 0 makes the table, then one per write"
        );
        assert_eq!(snapshot.num_records(), 16);
        assert_eq!(snapshot.files.len(), 3 + 3 + 2, "a file per date and write");
        assert!(
            snapshot
                .files
                .values()
                .all(|f| f.path.starts_with("date=2023-11-0") && f.data_change),
            "{:?}",
            snapshot.files.keys()
        );
        assert_eq!(rows(delta.log()).await, expected(&[(0, 0..12), (1, 0..4)]));
        assert_eq!(
            delta.resume("t", &[]).await.expect("resume"),
            Resume::Stored(HashMap::from([(0, 12), (1, 4)]))
        );
        // Another topic of the same group, or another group, starts afresh.
        assert_eq!(
            delta.resume("other", &[]).await.expect("resume"),
            Resume::Stored(HashMap::new())
        );
    }

    #[test]
    fn a_store_outage_shared_by_a_group_commit_is_waited_out_and_a_refusal_is_not() {
        let away = || {
            Error::Store(object_store::Error::Generic {
                store: "S3",
                source: "connection refused".into(),
            })
        };
        let refused = Error::Store(object_store::Error::PermissionDenied {
            path: "lake".into(),
            source: "403".into(),
        });
        assert!(matches!(
            ConnectorError::from(Error::Shared(Arc::new(away()))),
            ConnectorError::Unavailable(_)
        ));
        assert!(matches!(
            ConnectorError::from(away()),
            ConnectorError::Unavailable(_)
        ));
        assert!(matches!(
            ConnectorError::from(Error::Shared(Arc::new(refused))),
            ConnectorError::Fatal(_)
        ));
    }

    #[tokio::test]
    async fn a_checkpoint_every_interval_gives_the_same_state_as_the_commits() {
        let store = Arc::new(InMemory::new());
        let delta = table(&store);
        put(&delta, 0, 0..5).await;
        let log = delta.log();
        // A table whose interval is 4 (a property other writers set).
        let mut snapshot = log.snapshot().await.expect("read").expect("a table");
        let mut metadata = snapshot.metadata.clone();
        metadata
            .configuration
            .insert("delta.checkpointInterval".into(), Some("4".into()));
        assert!(
            log.try_commit(2, &[Action::metadata(metadata)])
                .await
                .expect("put")
        );
        for start in (5..50).step_by(5) {
            delta
                .write(
                    "t",
                    start as i32 % 2,
                    &records(start as i32 % 2, start..start + 5),
                )
                .await
                .expect("written");
        }
        let listed: Vec<String> = store
            .list(Some(&Path::from("lake/_delta_log")))
            .map_ok(|m| m.location.filename().unwrap_or_default().to_owned())
            .try_collect()
            .await
            .expect("listed");
        let mut checkpoints: Vec<&String> =
            listed.iter().filter(|n| n.contains("checkpoint")).collect();
        checkpoints.sort();
        assert_eq!(
            checkpoints,
            [
                "00000000000000000004.checkpoint.parquet",
                "00000000000000000008.checkpoint.parquet",
                "_last_checkpoint"
            ]
        );
        // From the checkpoint of version 8 and commits 9 to 11, or from
        // every commit: the same table.
        let from_checkpoint = log.snapshot().await.expect("read").expect("a table");
        assert_eq!(from_checkpoint.version, 11);
        let mut replayed = log
            .snapshot_at(Some(0))
            .await
            .expect("read")
            .expect("a table");
        log.update(&mut replayed).await.expect("updated");
        assert_eq!(from_checkpoint.txns, replayed.txns);
        assert_eq!(from_checkpoint.files, replayed.files);
        assert_eq!(from_checkpoint.metadata, replayed.metadata);
        assert_eq!(from_checkpoint.protocol, replayed.protocol);
        snapshot = log
            .snapshot_at(Some(8))
            .await
            .expect("read")
            .expect("a table");
        assert_eq!(
            snapshot.num_records(),
            35,
            "versions 1 and 3 to 8 each added 5"
        );
        // The commits before a checkpoint may be cleaned up (as other
        // tools do): the table still reads.
        for v in 0..8 {
            store
                .delete(&Path::from(format!("lake/_delta_log/{v:020}.json")))
                .await
                .expect("deleted");
        }
        let later = log.snapshot().await.expect("read").expect("a table");
        assert_eq!(later.files, from_checkpoint.files);
        assert_eq!(rows(log).await, {
            let mut all: Vec<(i32, i64)> = (0..50)
                .map(|o| (if o < 5 { 0 } else { (o / 5 * 5) as i32 % 2 }, o))
                .collect();
            all.sort_unstable();
            all
        });
    }

    #[tokio::test]
    async fn a_replay_and_a_zombie_member_add_only_what_the_table_lacks() {
        let store = Arc::new(InMemory::new());
        let first = table(&store);
        put(&first, 0, 0..10).await;
        // The same member replays from before what it stored.
        put(&first, 0, 5..15).await;
        // A second process (a member that took the partition over) that
        // never read the table, then the first one as a zombie.
        let second = table(&store);
        put(&second, 0, 0..20).await;
        put(&first, 0, 15..25).await;
        assert_eq!(rows(first.log()).await, expected(&[(0, 0..25)]));
        assert_eq!(
            second.resume("t", &[0]).await.expect("resume"),
            Resume::Stored(HashMap::from([(0, 25)]))
        );
    }

    #[tokio::test]
    async fn two_processes_committing_side_by_side_take_every_version_once() {
        let store = Arc::new(InMemory::new());
        let (a, b) = (table(&store), table(&store));
        async fn write(delta: &DeltaConnector, partition: i32) {
            for start in (0..200).step_by(10) {
                put(delta, partition, start..start + 10).await;
            }
        }
        tokio::join!(write(&a, 0), write(&b, 1), write(&a, 2), write(&b, 3));
        let snapshot = a.log().snapshot().await.expect("read").expect("a table");
        // 80 writes; those that met a commit in flight went into the next.
        assert!(snapshot.version <= 80, "{}", snapshot.version);
        let versions = a.log().versions_after(None).await.expect("listed");
        assert_eq!(versions, (0..=snapshot.version).collect::<Vec<_>>());
        assert_eq!(
            rows(a.log()).await,
            expected(&[(0, 0..200), (1, 0..200), (2, 0..200), (3, 0..200)])
        );
    }

    #[tokio::test]
    async fn writes_that_meet_a_commit_in_flight_go_together_into_the_next() {
        use object_store::throttle::{ThrottleConfig, ThrottledStore};
        // Every put takes 50 ms: the writes of six partitions, side by
        // side, reach the commit while the first one's is being put.
        let slow = ThrottledStore::new(
            InMemory::new(),
            ThrottleConfig {
                wait_put_per_call: Duration::from_millis(50),
                ..ThrottleConfig::default()
            },
        );
        let store: Arc<dyn ObjectStore> = Arc::new(slow);
        let delta = DeltaConnector::new(
            store,
            Path::from("lake"),
            "memory://lake".into(),
            "g".into(),
        );
        delta.resume("t", &[]).await.expect("the table made");
        let parts: Vec<Vec<SinkRecord>> = (0..6).map(|p| records(p, 0..10)).collect();
        let writes = parts
            .iter()
            .enumerate()
            .map(|(p, r)| delta.write("t", p as i32, r));
        for written in futures::future::join_all(writes).await {
            written.expect("written");
        }
        let snapshot = delta
            .log()
            .snapshot()
            .await
            .expect("read")
            .expect("a table");
        assert!(
            snapshot.version < 6,
            "6 writes in {} commits",
            snapshot.version
        );
        assert_eq!(snapshot.txns.len(), 6);
        assert_eq!(
            rows(delta.log()).await,
            expected(&[
                (0, 0..10),
                (1, 0..10),
                (2, 0..10),
                (3, 0..10),
                (4, 0..10),
                (5, 0..10)
            ])
        );
        let mut most = 0;
        for v in 1..=snapshot.version {
            let commit = delta.log().read_commit(v).await.expect("read");
            most = most.max(commit.iter().filter(|a| a.txn.is_some()).count());
        }
        assert!(
            most > 1,
            "no commit holds more than one partition's progress"
        );
    }

    #[tokio::test]
    async fn compaction_rewrites_small_files_with_the_same_rows_and_vacuum_removes_the_old() {
        let store = Arc::new(InMemory::new());
        let delta = table(&store);
        for start in (0..300).step_by(20) {
            put(&delta, 0, start..start + 20).await;
        }
        let log = delta.log();
        let before = log.snapshot().await.expect("read").expect("a table");
        assert_eq!(before.files.len(), 45);
        let options = CompactOptions {
            target_size: 128 << 20,
            since: Some("2023-11-02".into()),
        };
        let done = compact(log, &options).await.expect("compacted");
        assert_eq!(done.partitions, 2, "dates 2 and 3, not 1");
        assert_eq!(
            (done.files_before, done.files_after, done.rows),
            (30, 2, 200)
        );
        let after = log.snapshot().await.expect("read").expect("a table");
        assert_eq!(after.files.len(), 15 + 2);
        assert_eq!(after.num_records(), 300);
        assert_eq!(rows(log).await, expected(&[(0, 0..300)]));
        // The sink's progress is untouched.
        assert_eq!(after.txns, before.txns);

        let versions = history(log).await.expect("history");
        let last = versions.last().expect("a version");
        assert_eq!(last.operation, "OPTIMIZE");
        assert_eq!(
            (last.files_added, last.files_removed, last.rows_added),
            (2, 30, 0)
        );
        assert_eq!(last.rows, 300);
        assert_eq!(versions[1].rows_added, 20);

        // A file of a write that never committed.
        store
            .put(
                &Path::from("lake/date=2023-11-01/orphan.parquet"),
                PutPayload::from_static(b"x"),
            )
            .await
            .expect("put");
        let kept = vacuum(log, Duration::from_secs(3600), false)
            .await
            .expect("vacuum");
        assert!(kept.files.is_empty(), "all younger than the retention");
        let dry = vacuum(log, Duration::ZERO, true).await.expect("vacuum");
        assert_eq!(dry.files.len(), 31, "the 30 compacted and the orphan");
        assert!(
            dry.files
                .contains(&"date=2023-11-01/orphan.parquet".to_owned())
        );
        let listed = |store: Arc<InMemory>| async move {
            store
                .list(Some(&Path::from("lake")))
                .try_collect::<Vec<_>>()
                .await
                .expect("listed")
                .len()
        };
        let objects = listed(Arc::clone(&store)).await;
        vacuum(log, Duration::ZERO, false).await.expect("vacuum");
        assert_eq!(listed(Arc::clone(&store)).await, objects - 31);
        assert_eq!(rows(log).await, expected(&[(0, 0..300)]));
        // Time travel to before the compaction now lacks its files.
        let old = log
            .snapshot_at(Some(3))
            .await
            .expect("read")
            .expect("a table");
        let missing: HashSet<&String> = old
            .files
            .keys()
            .filter(|p| !after.files.contains_key(*p))
            .collect();
        assert!(!missing.is_empty());
    }

    #[tokio::test]
    async fn a_table_missing_a_nullable_column_gains_it_and_a_changed_type_is_refused() {
        let store = Arc::new(InMemory::new());
        let delta = table(&store);
        put(&delta, 0, 0..3).await;
        let log = delta.log();
        // An older txflow's table: its schema lacks `confidence`.
        let snapshot = log.snapshot().await.expect("read").expect("a table");
        let mut older = schema::current();
        older.fields.retain(|f| f.name != "confidence");
        let metadata = Metadata {
            schema_string: serde_json::to_string(&older).expect("encoded"),
            ..snapshot.metadata.clone()
        };
        assert!(
            log.try_commit(2, &[Action::metadata(metadata)])
                .await
                .expect("put")
        );
        put(&delta, 0, 3..6).await;
        let evolved = log.read_commit(3).await.expect("read");
        let schema = evolved
            .iter()
            .find_map(|a| a.metadata.as_ref())
            .expect("a metaData action in the write's commit");
        assert_eq!(schema.schema_string, schema_string());
        assert_eq!(schema.id, snapshot.metadata.id, "the same table");

        let mut retyped = schema::current();
        retyped.fields[0].kind = serde_json::Value::String("long".into());
        let metadata = Metadata {
            schema_string: serde_json::to_string(&retyped).expect("encoded"),
            ..snapshot.metadata
        };
        assert!(
            log.try_commit(4, &[Action::metadata(metadata)])
                .await
                .expect("put")
        );
        let refused = delta
            .write("t", 0, &records(0, 6..9))
            .await
            .expect_err("refused");
        let message = refused.to_string();
        assert!(
            matches!(refused, ConnectorError::Fatal(_))
                && message.contains("transaction_id")
                && message.contains("memory://lake"),
            "{message}"
        );
    }
}
