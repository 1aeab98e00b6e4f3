//! Checkpoints: a version's whole state as one Parquet file in the log
//! (`<version, 20 digits>.checkpoint.parquet`, named by `_last_checkpoint`),
//! so that readers start there instead of replaying every commit.
//!
//! The file has one row per action of the state (the protocol, the
//! metadata, each application's `txn`, each file's `add`, each tombstone's
//! `remove`) and one struct column per kind of action, null where the row
//! is another kind: the classic single-file checkpoint of the protocol.
//! Every field is nullable in the file (readers take it so; Spark writes
//! it so).

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use arrow_array::builder::{ListBuilder, MapBuilder, MapFieldNames, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Int32Array, Int64Array, MapArray, RecordBatch, StringArray,
    StructArray,
};
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::log::{Add, Format, Metadata, Pairs, Protocol, Remove, Snapshot};

fn map_type() -> DataType {
    DataType::Map(
        Arc::new(Field::new(
            "key_value",
            DataType::Struct(Fields::from(vec![
                Field::new("key", DataType::Utf8, false),
                Field::new("value", DataType::Utf8, true),
            ])),
            false,
        )),
        false,
    )
}

fn field(name: &str, data_type: DataType) -> Field {
    Field::new(name, data_type, true)
}

fn txn_fields() -> Fields {
    Fields::from(vec![
        field("appId", DataType::Utf8),
        field("version", DataType::Int64),
        field("lastUpdated", DataType::Int64),
    ])
}

fn add_fields() -> Fields {
    Fields::from(vec![
        field("path", DataType::Utf8),
        field("partitionValues", map_type()),
        field("size", DataType::Int64),
        field("modificationTime", DataType::Int64),
        field("dataChange", DataType::Boolean),
        field("stats", DataType::Utf8),
    ])
}

fn remove_fields() -> Fields {
    Fields::from(vec![
        field("path", DataType::Utf8),
        field("deletionTimestamp", DataType::Int64),
        field("dataChange", DataType::Boolean),
        field("extendedFileMetadata", DataType::Boolean),
        field("partitionValues", map_type()),
        field("size", DataType::Int64),
    ])
}

fn format_fields() -> Fields {
    Fields::from(vec![
        field("provider", DataType::Utf8),
        field("options", map_type()),
    ])
}

fn metadata_fields() -> Fields {
    Fields::from(vec![
        field("id", DataType::Utf8),
        field("name", DataType::Utf8),
        field("description", DataType::Utf8),
        field("format", DataType::Struct(format_fields())),
        field("schemaString", DataType::Utf8),
        field(
            "partitionColumns",
            DataType::List(Arc::new(Field::new("element", DataType::Utf8, true))),
        ),
        field("configuration", map_type()),
        field("createdTime", DataType::Int64),
    ])
}

fn protocol_fields() -> Fields {
    Fields::from(vec![
        field("minReaderVersion", DataType::Int32),
        field("minWriterVersion", DataType::Int32),
    ])
}

/// The checkpoint file's schema.
pub static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        field("txn", DataType::Struct(txn_fields())),
        field("add", DataType::Struct(add_fields())),
        field("remove", DataType::Struct(remove_fields())),
        field("metaData", DataType::Struct(metadata_fields())),
        field("protocol", DataType::Struct(protocol_fields())),
    ]))
});

/// One row of a checkpoint: one action of the state.
enum Row<'a> {
    Protocol(&'a Protocol),
    Metadata(&'a Metadata),
    Txn(&'a str, i64),
    Add(&'a Add),
    Remove(&'a Remove),
}

impl<'a> Row<'a> {
    fn txn(&self) -> Option<(&'a str, i64)> {
        match self {
            Row::Txn(app, v) => Some((app, *v)),
            _ => None,
        }
    }

    fn add(&self) -> Option<&'a Add> {
        match self {
            Row::Add(a) => Some(a),
            _ => None,
        }
    }

    fn remove(&self) -> Option<&'a Remove> {
        match self {
            Row::Remove(x) => Some(x),
            _ => None,
        }
    }

    fn meta(&self) -> Option<&'a Metadata> {
        match self {
            Row::Metadata(m) => Some(m),
            _ => None,
        }
    }

    fn proto(&self) -> Option<&'a Protocol> {
        match self {
            Row::Protocol(p) => Some(p),
            _ => None,
        }
    }
}

fn strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
}

fn longs(values: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(values.collect::<Int64Array>())
}

fn ints(values: impl Iterator<Item = Option<i32>>) -> ArrayRef {
    Arc::new(values.collect::<Int32Array>())
}

fn bools(values: impl Iterator<Item = Option<bool>>) -> ArrayRef {
    Arc::new(values.collect::<BooleanArray>())
}

fn maps<'a>(values: impl Iterator<Item = Option<&'a Pairs>>) -> ArrayRef {
    let names = MapFieldNames {
        entry: "key_value".into(),
        key: "key".into(),
        value: "value".into(),
    };
    let mut builder = MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new());
    for value in values {
        match value {
            Some(map) => {
                for (k, v) in map.iter() {
                    builder.keys().append_value(k);
                    builder.values().append_option(v);
                }
                builder
                    .append(true)
                    .expect("keys and values appended together");
            }
            None => builder
                .append(false)
                .expect("keys and values appended together"),
        }
    }
    Arc::new(builder.finish())
}

/// A struct column: `present` says which rows are of this kind.
fn structure(fields: Fields, children: Vec<ArrayRef>, present: &[bool]) -> ArrayRef {
    Arc::new(StructArray::new(
        fields,
        children,
        Some(NullBuffer::from(present.to_vec())),
    ))
}

/// The state of `snapshot` as a checkpoint file.
pub fn encode(snapshot: &Snapshot) -> Result<(Vec<u8>, usize), parquet::errors::ParquetError> {
    let mut rows = vec![
        Row::Protocol(&snapshot.protocol),
        Row::Metadata(&snapshot.metadata),
    ];
    let mut txns: Vec<_> = snapshot.txns.iter().collect();
    txns.sort();
    rows.extend(txns.into_iter().map(|(app, v)| Row::Txn(app, *v)));
    rows.extend(snapshot.files.values().map(Row::Add));
    rows.extend(snapshot.tombstones.values().map(Row::Remove));

    let present = |f: &dyn Fn(&Row<'_>) -> bool| rows.iter().map(f).collect::<Vec<bool>>();

    let txn_column = structure(
        txn_fields(),
        vec![
            strings(rows.iter().map(|r| r.txn().map(|t| t.0))),
            longs(rows.iter().map(|r| r.txn().map(|t| t.1))),
            longs(rows.iter().map(|_| None)),
        ],
        &present(&|r| r.txn().is_some()),
    );
    let add_column = structure(
        add_fields(),
        vec![
            strings(rows.iter().map(|r| r.add().map(|a| a.path.as_str()))),
            maps(rows.iter().map(|r| r.add().map(|a| &a.partition_values))),
            longs(rows.iter().map(|r| r.add().map(|a| a.size))),
            longs(rows.iter().map(|r| r.add().map(|a| a.modification_time))),
            bools(rows.iter().map(|r| r.add().map(|a| a.data_change))),
            strings(
                rows.iter()
                    .map(|r| r.add().and_then(|a| a.stats.as_deref())),
            ),
        ],
        &present(&|r| r.add().is_some()),
    );
    let remove_column = structure(
        remove_fields(),
        vec![
            strings(rows.iter().map(|r| r.remove().map(|x| x.path.as_str()))),
            longs(
                rows.iter()
                    .map(|r| r.remove().and_then(|x| x.deletion_timestamp)),
            ),
            bools(rows.iter().map(|r| r.remove().map(|x| x.data_change))),
            bools(
                rows.iter()
                    .map(|r| r.remove().and_then(|x| x.extended_file_metadata)),
            ),
            maps(
                rows.iter()
                    .map(|r| r.remove().and_then(|x| x.partition_values.as_ref())),
            ),
            longs(rows.iter().map(|r| r.remove().and_then(|x| x.size))),
        ],
        &present(&|r| r.remove().is_some()),
    );
    let mut columns = ListBuilder::new(StringBuilder::new()).with_field(Arc::new(Field::new(
        "element",
        DataType::Utf8,
        true,
    )));
    for r in &rows {
        match r.meta() {
            Some(m) => {
                for c in &m.partition_columns {
                    columns.values().append_value(c);
                }
                columns.append(true);
            }
            None => columns.append(false),
        }
    }
    let is_meta = present(&|r| r.meta().is_some());
    let format_column = structure(
        format_fields(),
        vec![
            strings(
                rows.iter()
                    .map(|r| r.meta().map(|m| m.format.provider.as_str())),
            ),
            maps(rows.iter().map(|r| r.meta().map(|m| &m.format.options))),
        ],
        &is_meta,
    );
    let metadata_column = structure(
        metadata_fields(),
        vec![
            strings(rows.iter().map(|r| r.meta().map(|m| m.id.as_str()))),
            strings(
                rows.iter()
                    .map(|r| r.meta().and_then(|m| m.name.as_deref())),
            ),
            strings(
                rows.iter()
                    .map(|r| r.meta().and_then(|m| m.description.as_deref())),
            ),
            format_column,
            strings(
                rows.iter()
                    .map(|r| r.meta().map(|m| m.schema_string.as_str())),
            ),
            Arc::new(columns.finish()),
            maps(rows.iter().map(|r| r.meta().map(|m| &m.configuration))),
            longs(rows.iter().map(|r| r.meta().and_then(|m| m.created_time))),
        ],
        &is_meta,
    );
    let protocol_column = structure(
        protocol_fields(),
        vec![
            ints(rows.iter().map(|r| r.proto().map(|p| p.min_reader_version))),
            ints(rows.iter().map(|r| r.proto().map(|p| p.min_writer_version))),
        ],
        &present(&|r| r.proto().is_some()),
    );
    let batch = RecordBatch::try_new(
        Arc::clone(&SCHEMA),
        vec![
            txn_column,
            add_column,
            remove_column,
            metadata_column,
            protocol_column,
        ],
    )?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, Arc::clone(&SCHEMA), Some(properties))?;
    writer.write(&batch)?;
    writer.close()?;
    Ok((out, rows.len()))
}

/// The state a checkpoint file holds, as of `version`. Reads the columns
/// txflow writes; other writers' extra columns are ignored.
pub fn decode(bytes: bytes::Bytes, version: i64) -> Result<Snapshot, String> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| e.to_string())?
        .build()
        .map_err(|e| e.to_string())?;
    let mut protocol = None;
    let mut metadata = None;
    let mut snapshot_txns = std::collections::HashMap::new();
    let mut files = BTreeMap::new();
    let mut tombstones = BTreeMap::new();
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        let column = |name: &str| batch.column_by_name(name).map(|c| c.as_struct().clone());
        if let Some(txn) = column("txn") {
            let apps = child(&txn, "appId")?.as_string::<i32>().clone();
            let versions = child(&txn, "version")?.as_primitive::<Int64Type>().clone();
            for i in (0..txn.len()).filter(|i| txn.is_valid(*i)) {
                snapshot_txns.insert(apps.value(i).to_owned(), versions.value(i));
            }
        }
        if let Some(add) = column("add") {
            let paths = child(&add, "path")?.as_string::<i32>().clone();
            let partitions = child(&add, "partitionValues")?.as_map().clone();
            let sizes = child(&add, "size")?.as_primitive::<Int64Type>().clone();
            let times = child(&add, "modificationTime")?
                .as_primitive::<Int64Type>()
                .clone();
            let changes = child(&add, "dataChange")?.as_boolean().clone();
            let stats = child(&add, "stats")
                .ok()
                .map(|s| s.as_string::<i32>().clone());
            for i in (0..add.len()).filter(|i| add.is_valid(*i)) {
                let file = Add {
                    path: paths.value(i).to_owned(),
                    partition_values: map_at(&partitions, i),
                    size: sizes.value(i),
                    modification_time: times.value(i),
                    data_change: changes.value(i),
                    stats: stats
                        .as_ref()
                        .filter(|s| s.is_valid(i))
                        .map(|s| s.value(i).to_owned()),
                };
                files.insert(file.path.clone(), file);
            }
        }
        if let Some(remove) = column("remove") {
            let paths = child(&remove, "path")?.as_string::<i32>().clone();
            let deleted = child(&remove, "deletionTimestamp")?
                .as_primitive::<Int64Type>()
                .clone();
            let changes = child(&remove, "dataChange")?.as_boolean().clone();
            for i in (0..remove.len()).filter(|i| remove.is_valid(*i)) {
                let gone = Remove {
                    path: paths.value(i).to_owned(),
                    deletion_timestamp: deleted.is_valid(i).then(|| deleted.value(i)),
                    data_change: changes.value(i),
                    extended_file_metadata: None,
                    partition_values: None,
                    size: None,
                };
                tombstones.insert(gone.path.clone(), gone);
            }
        }
        if let Some(meta) = column("metaData")
            && let Some(i) = (0..meta.len()).find(|i| meta.is_valid(*i))
        {
            let text = |name: &str| -> Result<Option<String>, String> {
                let c = child(&meta, name)?.as_string::<i32>().clone();
                Ok(c.is_valid(i).then(|| c.value(i).to_owned()))
            };
            let format = child(&meta, "format")?.as_struct().clone();
            let provider = child(&format, "provider")?.as_string::<i32>().clone();
            let options = child(&format, "options")?.as_map().clone();
            let columns = child(&meta, "partitionColumns")?.as_list::<i32>().clone();
            let columns = columns.value(i);
            let columns = columns.as_string::<i32>();
            let created = child(&meta, "createdTime")?
                .as_primitive::<Int64Type>()
                .clone();
            let configuration = child(&meta, "configuration")?.as_map().clone();
            metadata = Some(Metadata {
                id: text("id")?.unwrap_or_default(),
                name: text("name")?,
                description: text("description")?,
                format: Format {
                    provider: provider.value(i).to_owned(),
                    options: map_at(&options, i),
                },
                schema_string: text("schemaString")?.unwrap_or_default(),
                partition_columns: (0..columns.len())
                    .map(|j| columns.value(j).to_owned())
                    .collect(),
                configuration: map_at(&configuration, i),
                created_time: created.is_valid(i).then(|| created.value(i)),
            });
        }
        if let Some(proto) = column("protocol")
            && let Some(i) = (0..proto.len()).find(|i| proto.is_valid(*i))
        {
            let reader = child(&proto, "minReaderVersion")?
                .as_primitive::<Int32Type>()
                .value(i);
            let writer = child(&proto, "minWriterVersion")?
                .as_primitive::<Int32Type>()
                .value(i);
            let features = |name: &str| {
                child(&proto, name).ok().and_then(|c| {
                    let list = c.as_list::<i32>();
                    list.is_valid(i).then(|| {
                        let values = list.value(i);
                        let values = values.as_string::<i32>();
                        (0..values.len())
                            .map(|j| values.value(j).to_owned())
                            .collect()
                    })
                })
            };
            protocol = Some(Protocol {
                min_reader_version: reader,
                min_writer_version: writer,
                reader_features: features("readerFeatures"),
                writer_features: features("writerFeatures"),
            });
        }
    }
    Ok(Snapshot {
        version,
        protocol: protocol.ok_or("it has no protocol row")?,
        metadata: metadata.ok_or("it has no metaData row")?,
        txns: snapshot_txns,
        files,
        tombstones,
    })
}

fn child<'a>(parent: &'a StructArray, name: &str) -> Result<&'a ArrayRef, String> {
    parent
        .column_by_name(name)
        .ok_or_else(|| format!("it has no column {name}"))
}

fn map_at(maps: &MapArray, i: usize) -> Pairs {
    if !maps.is_valid(i) {
        return Pairs::default();
    }
    let entries = maps.value(i);
    let keys = entries.column(0).as_string::<i32>();
    let values = entries.column(1).as_string::<i32>();
    (0..entries.len())
        .map(|j| {
            (
                keys.value(j).to_owned(),
                values.is_valid(j).then(|| values.value(j).to_owned()),
            )
        })
        .collect()
}
