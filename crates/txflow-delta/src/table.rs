//! What `txflow lake` does to a table: its history, compaction of small
//! files, and vacuum of the files no version needs any more.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{RecordBatch, new_null_array};
use arrow_schema::{Field, Schema};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use txflow_parquet::schema::{Metadata as FileMetadata, SCHEMA};

use crate::log::{Action, Add, LOG, Log, Pairs, Remove, Snapshot};
use crate::schema::DATE;
use crate::{ENGINE, Error, now_ms};

/// One version of the table, as `txflow lake history` prints it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Version {
    pub version: i64,
    /// Milliseconds since the epoch, from the commit's `commitInfo`.
    pub timestamp: Option<i64>,
    pub operation: String,
    pub files_added: usize,
    pub files_removed: usize,
    /// Rows of the files added with `dataChange` (new data, not rewrites).
    pub rows_added: i64,
    /// Rows in the table at this version.
    pub rows: i64,
}

/// Every version of the table, oldest first. When the early commits were
/// cleaned up after a checkpoint (as other tools do), the history starts
/// at that checkpoint, listed as operation `CHECKPOINT`.
pub async fn history(log: &Log) -> Result<Vec<Version>, Error> {
    let listing = log.list_log(None).await?;
    let Some(&first) = listing.commits.first() else {
        return Err(Error::NoTable {
            table: log.url().to_owned(),
        });
    };
    let mut sizes: BTreeMap<String, i64> = BTreeMap::new();
    let mut out = Vec::with_capacity(listing.commits.len());
    let mut from = 0;
    if first > 0 {
        let Some(&checkpoint) = listing.checkpoints.iter().find(|c| **c >= first - 1) else {
            return Err(Error::Unsupported {
                table: log.url().to_owned(),
                what: format!(
                    "its log starts at version {first} without a checkpoint txflow reads"
                ),
            });
        };
        let state = log.read_checkpoint(checkpoint).await?;
        sizes.extend(
            state
                .files
                .values()
                .map(|a| (a.path.clone(), a.num_records().unwrap_or(0))),
        );
        out.push(Version {
            version: checkpoint,
            timestamp: None,
            operation: "CHECKPOINT".into(),
            files_added: 0,
            files_removed: 0,
            rows_added: 0,
            rows: sizes.values().sum(),
        });
        from = checkpoint + 1;
    }
    for v in listing.commits.into_iter().filter(|v| *v >= from) {
        let actions = log.read_commit(v).await?;
        let mut entry = Version {
            version: v,
            timestamp: None,
            operation: String::new(),
            files_added: 0,
            files_removed: 0,
            rows_added: 0,
            rows: 0,
        };
        for action in &actions {
            if let Some(info) = &action.commit_info {
                entry.timestamp = info.get("timestamp").and_then(|t| t.as_i64());
                entry.operation = info
                    .get("operation")
                    .and_then(|o| o.as_str())
                    .unwrap_or_default()
                    .to_owned();
            }
            if let Some(add) = &action.add {
                entry.files_added += 1;
                let rows = add.num_records().unwrap_or(0);
                if add.data_change {
                    entry.rows_added += rows;
                }
                sizes.insert(add.path.clone(), rows);
            }
            if let Some(remove) = &action.remove {
                entry.files_removed += 1;
                sizes.remove(&remove.path);
            }
        }
        entry.rows = sizes.values().sum();
        out.push(entry);
    }
    Ok(out)
}

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Compaction {
    /// The version it committed, if it rewrote anything.
    pub version: Option<i64>,
    pub partitions: usize,
    pub files_before: usize,
    pub files_after: usize,
    /// The compressed bytes of the files rewritten, and of their rewrites.
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub rows: i64,
}

/// Which files a compaction rewrites.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// A rewritten file's size at most (of its inputs' compressed bytes).
    pub target_size: u64,
    /// Only partitions whose `date` is at least this one (`YYYY-MM-DD`).
    pub since: Option<String>,
}

/// The small files of each partition rewritten into files of about
/// `target_size`, in one commit (`remove` and `add` with `dataChange`
/// false: readers of the changes see none, the rows are the same).
pub async fn compact(log: &Log, options: &CompactOptions) -> Result<Compaction, Error> {
    let snapshot = log.snapshot().await?.ok_or_else(|| Error::NoTable {
        table: log.url().to_owned(),
    })?;
    if let crate::schema::Evolution::Incompatible(why) =
        crate::schema::evolution(&snapshot.metadata.schema_string, &crate::schema::current())
    {
        return Err(Error::Unsupported {
            table: log.url().to_owned(),
            what: format!(
                "{why}; a compaction by this txflow would drop it (use a txflow as new as the table)"
            ),
        });
    }
    let bins = plan(&snapshot, options);
    let mut report = Compaction {
        partitions: bins.iter().map(|b| &b.date).collect::<HashSet<_>>().len(),
        files_before: bins.iter().map(|b| b.files.len()).sum(),
        bytes_before: bins
            .iter()
            .flat_map(|b| b.files.iter().map(|f| f.size as u64))
            .sum(),
        ..Compaction::default()
    };
    if bins.is_empty() {
        return Ok(report);
    }
    let mut actions = Vec::new();
    let stamp = now_ms();
    let removed: HashSet<String> = bins
        .iter()
        .flat_map(|b| b.files.iter().map(|f| f.path.clone()))
        .collect();
    let rewritten: Vec<(Bin, Add, i64)> = futures::stream::iter(bins)
        .map(|bin| rewrite(log.clone(), bin))
        .buffer_unordered(PARALLEL_BINS)
        .try_collect()
        .await?;
    for (bin, add, rows) in &rewritten {
        let (add, rows) = (add.clone(), *rows);
        report.rows += rows;
        report.files_after += 1;
        report.bytes_after += add.size as u64;
        actions.push(Action::add(add));
        for old in &bin.files {
            actions.push(Action::remove(Remove {
                path: old.path.clone(),
                deletion_timestamp: Some(stamp),
                data_change: false,
                extended_file_metadata: Some(true),
                partition_values: Some(old.partition_values.clone()),
                size: Some(old.size),
            }));
        }
    }
    actions.push(Action::commit_info(serde_json::json!({
        "timestamp": now_ms(),
        "operation": "OPTIMIZE",
        "operationParameters": {
            "targetSize": options.target_size.to_string(),
            "predicate": options.since.as_ref().map(|d| format!("{DATE} >= '{d}'")),
        },
        "readVersion": snapshot.version,
        "isBlindAppend": false,
        "operationMetrics": {
            "numAddedFiles": report.files_after.to_string(),
            "numRemovedFiles": report.files_before.to_string(),
        },
        "engineInfo": ENGINE,
    })));
    let mut latest = snapshot;
    loop {
        let version = latest.version + 1;
        if log.try_commit(version, &actions).await? {
            report.version = Some(version);
            return Ok(report);
        }
        // Appends by the sink meanwhile do not touch the files rewritten;
        // another compaction that removed one of them does.
        for (v, commit) in log.update(&mut latest).await? {
            if commit
                .iter()
                .filter_map(|a| a.remove.as_ref())
                .any(|r| removed.contains(&r.path))
            {
                return Err(Error::Data {
                    table: log.url().to_owned(),
                    what: format!(
                        "version {v} removed files this compaction rewrote (another compaction?); nothing was committed, run it again"
                    ),
                });
            }
        }
    }
}

/// Files of one partition to rewrite into one.
#[derive(Debug)]
struct Bin {
    date: String,
    files: Vec<Add>,
}

/// The bins of a compaction: in each partition, the files under the target
/// size, in path order, packed while their sum stays under it; a bin of one
/// file is left alone.
fn plan(snapshot: &Snapshot, options: &CompactOptions) -> Vec<Bin> {
    let mut by_date: BTreeMap<String, Vec<&Add>> = BTreeMap::new();
    for add in snapshot.files.values() {
        let date = add
            .partition_values
            .get(DATE)
            .unwrap_or_default()
            .to_owned();
        if options.since.as_ref().is_some_and(|s| date < *s) {
            continue;
        }
        if (add.size as u64) < options.target_size {
            by_date.entry(date).or_default().push(add);
        }
    }
    let mut bins = Vec::new();
    for (date, files) in by_date {
        let mut bin: Vec<Add> = Vec::new();
        let mut size = 0u64;
        for file in files {
            if !bin.is_empty() && size + file.size as u64 > options.target_size {
                if bin.len() > 1 {
                    bins.push(Bin {
                        date: date.clone(),
                        files: std::mem::take(&mut bin),
                    });
                }
                bin.clear();
                size = 0;
            }
            size += file.size as u64;
            bin.push(file.clone());
        }
        if bin.len() > 1 {
            bins.push(Bin { date, files: bin });
        }
    }
    bins
}

/// Reads a data file of the table as batches of the lake's schema: the
/// columns it has typed as txflow writes them, the nullable columns it
/// lacks (a file older than the column) as nulls.
pub async fn read_file(log: &Log, path: &str) -> Result<Vec<RecordBatch>, Error> {
    let bytes = fetch(log, path).await?;
    decode_file(bytes, path).map_err(|what| Error::Data {
        table: log.url().to_owned(),
        what,
    })
}

async fn fetch(log: &Log, path: &str) -> Result<Bytes, Error> {
    let location = log.data_path(path)?;
    Ok(log.store().get(&location).await?.bytes().await?)
}

/// [`read_file`]'s decoding, on bytes already fetched.
fn decode_file(bytes: Bytes, path: &str) -> Result<Vec<RecordBatch>, String> {
    let data = |e: &dyn std::fmt::Display| format!("{path}: {e}");
    let plain =
        ArrowReaderMetadata::load(&bytes, ArrowReaderOptions::new()).map_err(|e| data(&e))?;
    // The file's columns in its order, with the lake's types as hints
    // (dictionaries, the time zone).
    let hint: Vec<Field> = plain
        .schema()
        .fields()
        .iter()
        .map(|f| {
            SCHEMA
                .field_with_name(f.name())
                .map_or_else(|_| f.as_ref().clone(), Clone::clone)
        })
        .collect();
    let options = ArrowReaderOptions::new().with_schema(Arc::new(Schema::new(hint)));
    let typed = ArrowReaderMetadata::try_new(Arc::clone(plain.metadata()), options)
        .map_err(|e| data(&e))?;
    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(bytes, typed)
        .build()
        .map_err(|e| data(&e))?;
    let mut batches = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| data(&e))?;
        let mut columns = Vec::with_capacity(SCHEMA.fields().len());
        for field in SCHEMA.fields() {
            match batch.column_by_name(field.name()) {
                Some(c) => columns.push(Arc::clone(c)),
                None if field.is_nullable() => {
                    columns.push(new_null_array(field.data_type(), batch.num_rows()));
                }
                None => return Err(data(&format!("it has no column {}", field.name()))),
            }
        }
        batches.push(RecordBatch::try_new(Arc::clone(&SCHEMA), columns).map_err(|e| data(&e))?);
    }
    Ok(batches)
}

/// Files of a bin fetched at once, at most.
const PARALLEL_GETS: usize = 16;

/// Bins rewritten at once, at most.
const PARALLEL_BINS: usize = 16;

/// One bin rewritten as one file: the bin, the file's add and row count.
async fn rewrite(log: Log, bin: Bin) -> Result<(Bin, Add, i64), Error> {
    let fetched: Vec<(String, Bytes)> = futures::stream::iter(&bin.files)
        .map(|f| {
            let log = &log;
            async move { Ok::<_, Error>((f.path.clone(), fetch(log, &f.path).await?)) }
        })
        .buffered(PARALLEL_GETS)
        .try_collect()
        .await?;
    let date = bin.date.clone();
    // Decoding and encoding are CPU work: off the runtime's threads.
    let encoded = tokio::task::spawn_blocking(move || merge(fetched, &date))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
    let (out, rows, lo, hi) = encoded.map_err(|what| Error::Data {
        table: log.url().to_owned(),
        what: format!("rewriting {DATE}={}: {what}", bin.date),
    })?;
    let name = format!(
        "{DATE}={}/compacted-{}.parquet",
        bin.date,
        uuid::Uuid::new_v4().simple()
    );
    let size = out.len() as i64;
    log.store()
        .put(&log.data_path(&name)?, PutPayload::from(Bytes::from(out)))
        .await?;
    let stats = serde_json::json!({
        "numRecords": rows,
        "minValues": { "kafka_offset": lo },
        "maxValues": { "kafka_offset": hi },
        "nullCount": { "kafka_offset": 0 },
    });
    let add = Add {
        path: name,
        partition_values: Pairs::from_iter([(DATE.to_owned(), Some(bin.date.clone()))]),
        size,
        modification_time: now_ms(),
        data_change: false,
        stats: Some(stats.to_string()),
    };
    Ok((bin, add, rows))
}

/// The files' rows as one Parquet file: its bytes, rows, and the least and
/// greatest Kafka offset.
fn merge(files: Vec<(String, Bytes)>, date: &str) -> Result<(Vec<u8>, i64, i64, i64), String> {
    let mut out = Vec::new();
    let mut writer = txflow_parquet::schema::writer(&mut out, FileMetadata::ParquetOnly)
        .map_err(|e| e.to_string())?;
    let (mut rows, mut lo, mut hi) = (0i64, i64::MAX, i64::MIN);
    for (path, bytes) in files {
        for batch in decode_file(bytes, &path)? {
            rows += batch.num_rows() as i64;
            if let Some(offsets) = batch.column_by_name("kafka_offset") {
                for o in offsets.as_primitive::<Int64Type>().values() {
                    lo = lo.min(*o);
                    hi = hi.max(*o);
                }
            }
            writer
                .write(&batch)
                .map_err(|e| format!("{DATE}={date}: {e}"))?;
        }
    }
    writer.close().map_err(|e| e.to_string())?;
    Ok((out, rows, lo, hi))
}

/// What a vacuum removed (or would remove, dry).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Vacuum {
    /// Relative paths, sorted.
    pub files: Vec<String>,
    pub bytes: u64,
    pub dry_run: bool,
}

/// Deletes the data files the latest version does not use and that were
/// written, or removed from the table, more than `retain` ago: files that
/// compaction replaced, and files of writes that never committed. Versions
/// older than `retain` may then no longer be readable (time travel goes
/// back at most `retain`).
pub async fn vacuum(log: &Log, retain: Duration, dry_run: bool) -> Result<Vacuum, Error> {
    let snapshot = log.snapshot().await?.ok_or_else(|| Error::NoTable {
        table: log.url().to_owned(),
    })?;
    let cutoff_ms = now_ms() - i64::try_from(retain.as_millis()).unwrap_or(i64::MAX);
    let cutoff = chrono::DateTime::from_timestamp_millis(cutoff_ms).unwrap_or_default();
    let root = log.root().clone();
    let listed: Vec<_> = log.store().list(Some(&root)).try_collect().await?;
    let mut report = Vacuum {
        dry_run,
        ..Vacuum::default()
    };
    let mut doomed = Vec::new();
    for meta in listed {
        let Some(relative) = meta.location.prefix_match(&root) else {
            continue;
        };
        let parts: Vec<String> = relative.map(|p| p.as_ref().to_owned()).collect();
        let relative = parts.join("/");
        // The log and hidden folders are not data.
        if parts
            .first()
            .is_none_or(|p| p == LOG || p.starts_with('_') || p.starts_with('.'))
        {
            continue;
        }
        if snapshot.files.contains_key(&relative) || meta.last_modified > cutoff {
            continue;
        }
        if let Some(t) = snapshot.tombstones.get(&relative)
            && t.deletion_timestamp.is_some_and(|d| d > cutoff_ms)
        {
            continue;
        }
        report.bytes += meta.size;
        report.files.push(relative);
        doomed.push(meta.location);
    }
    report.files.sort();
    if !dry_run {
        // S3 deletes up to 1,000 keys per request this way.
        let paths = futures::stream::iter(doomed.into_iter().map(Ok)).boxed();
        let mut deleted = log.store().delete_stream(paths);
        while let Some(done) = deleted.next().await {
            match done {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(report)
}

/// The table's latest version: its files and rows, for `txflow lake` and tests.
pub async fn latest(
    store: Arc<dyn ObjectStore>,
    root: Path,
    url: String,
) -> Result<Snapshot, Error> {
    let log = Log::new(store, root, url);
    log.snapshot().await?.ok_or_else(|| Error::NoTable {
        table: log.url().to_owned(),
    })
}
