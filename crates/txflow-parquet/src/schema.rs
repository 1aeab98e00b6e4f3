//! The lake's columns, typed so analytics engines read them without casts:
//! the amount as `DECIMAL(15,2)`, times as timestamps in UTC, the category
//! dictionary-encoded; zstd compression.

use std::sync::{Arc, LazyLock};

use arrow_array::builder::{
    BooleanBuilder, Decimal128Builder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    StringDictionaryBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::types::Int16Type;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use txflow_core::SinkRecord;

/// The amount's precision and scale (as PostgreSQL's `numeric(15, 2)`).
pub const AMOUNT_PRECISION: u8 = 15;
pub const AMOUNT_SCALE: i8 = 2;

fn utc() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn dictionary() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int16), Box::new(DataType::Utf8))
}

/// Every object's schema (the `date` and `partition` columns come from the
/// object's path).
pub static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("transaction_id", DataType::Utf8, false),
        Field::new("source_id", DataType::Utf8, false),
        Field::new("description", DataType::Utf8, false),
        Field::new(
            "amount",
            DataType::Decimal128(AMOUNT_PRECISION, AMOUNT_SCALE),
            false,
        ),
        Field::new("timestamp", utc(), false),
        Field::new("merchant", DataType::Utf8, true),
        Field::new("operation_type", dictionary(), false),
        Field::new("side", dictionary(), false),
        Field::new("category", dictionary(), false),
        Field::new("confidence", DataType::Float64, true),
        Field::new("model_version", dictionary(), false),
        Field::new("predicted_at", utc(), false),
        Field::new("run_id", DataType::Utf8, false),
        Field::new("processing_type", dictionary(), false),
        Field::new("source", DataType::Utf8, false),
        Field::new("source_line", DataType::Int64, true),
        Field::new("source_offset", DataType::Int64, true),
        Field::new("kafka_partition", DataType::Int32, false),
        Field::new("kafka_offset", DataType::Int64, false),
        // Added after the first lakes were written: nullable, so that
        // their older objects read as null.
        Field::new("needs_review", DataType::Boolean, true),
    ]))
});

/// The records as one Parquet file (one row group), zstd-compressed.
pub fn encode(rows: &[&SinkRecord]) -> Result<Vec<u8>, ParquetError> {
    write(&[batch(rows)?], Metadata::Arrow)
}

/// Whether a file carries the Arrow schema in its metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metadata {
    /// With it: Arrow readers get the dictionaries and the time zone back.
    Arrow,
    /// Without it: the Parquet types alone (strings, UTC timestamps), which
    /// is what a table format's readers expect of a data file.
    ParquetOnly,
}

/// Batches of [`SCHEMA`] as one Parquet file (a row group per batch),
/// zstd-compressed.
pub fn write(batches: &[RecordBatch], metadata: Metadata) -> Result<Vec<u8>, ParquetError> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut out = Vec::with_capacity(rows * 64);
    let mut writer = writer(&mut out, metadata)?;
    for batch in batches {
        writer.write(batch)?;
    }
    writer.close()?;
    Ok(out)
}

/// A writer of [`SCHEMA`]'s batches into `out`, zstd-compressed: for a
/// file made of more batches than fit in memory at once (a compaction).
pub fn writer<W: std::io::Write + Send>(
    out: W,
    metadata: Metadata,
) -> Result<ArrowWriter<W>, ParquetError> {
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_created_by(concat!("txflow ", env!("CARGO_PKG_VERSION")).to_owned())
        .build();
    let options = ArrowWriterOptions::new()
        .with_properties(properties)
        .with_skip_arrow_metadata(metadata == Metadata::ParquetOnly);
    ArrowWriter::try_new_with_options(out, Arc::clone(&SCHEMA), options)
}

/// The records as one batch of [`SCHEMA`].
pub fn batch(rows: &[&SinkRecord]) -> Result<RecordBatch, ParquetError> {
    let n = rows.len();
    let mut id = StringBuilder::with_capacity(n, n * 36);
    let mut source_id = StringBuilder::new();
    let mut description = StringBuilder::new();
    let mut amount = Decimal128Builder::with_capacity(n)
        .with_precision_and_scale(AMOUNT_PRECISION, AMOUNT_SCALE)
        .map_err(|e| ParquetError::General(e.to_string()))?;
    let mut timestamp = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut merchant = StringBuilder::new();
    let mut operation_type = StringDictionaryBuilder::<Int16Type>::new();
    let mut side = StringDictionaryBuilder::<Int16Type>::new();
    let mut category = StringDictionaryBuilder::<Int16Type>::new();
    let mut confidence = Float64Builder::with_capacity(n);
    let mut model_version = StringDictionaryBuilder::<Int16Type>::new();
    let mut predicted_at = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut run_id = StringBuilder::new();
    let mut processing_type = StringDictionaryBuilder::<Int16Type>::new();
    let mut source = StringBuilder::new();
    let mut line = Int64Builder::with_capacity(n);
    let mut offset = Int64Builder::with_capacity(n);
    let mut kafka_partition = Int32Builder::with_capacity(n);
    let mut kafka_offset = Int64Builder::with_capacity(n);
    let mut needs_review = BooleanBuilder::with_capacity(n);
    let dictionary_full = |e: arrow_schema::ArrowError| ParquetError::General(e.to_string());
    for r in rows {
        let (tx, p, lineage) = (&r.event.transaction, &r.event.prediction, &r.event.lineage);
        id.append_value(tx.id().to_string());
        source_id.append_value(tx.source_id());
        description.append_value(tx.description());
        amount.append_value(i128::from(tx.amount().cents()));
        timestamp.append_value(tx.timestamp().timestamp_micros());
        merchant.append_option(tx.merchant());
        operation_type
            .append(tx.operation_type())
            .map_err(dictionary_full)?;
        side.append(tx.side().as_str()).map_err(dictionary_full)?;
        category
            .append(p.category.as_str())
            .map_err(dictionary_full)?;
        confidence.append_option(p.confidence);
        model_version
            .append(&p.model_version)
            .map_err(dictionary_full)?;
        predicted_at.append_value(r.event.predicted_at.timestamp_micros());
        run_id.append_value(lineage.run_id.as_str());
        processing_type
            .append(lineage.processing_type.as_str())
            .map_err(dictionary_full)?;
        source.append_value(&*lineage.source);
        line.append_option(r.event.position.map(|p| p.line as i64));
        offset.append_option(r.event.position.map(|p| p.offset as i64));
        kafka_partition.append_value(r.partition);
        kafka_offset.append_value(r.offset);
        needs_review.append_value(r.event.needs_review);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(source_id.finish()),
        Arc::new(description.finish()),
        Arc::new(amount.finish()),
        Arc::new(timestamp.finish()),
        Arc::new(merchant.finish()),
        Arc::new(operation_type.finish()),
        Arc::new(side.finish()),
        Arc::new(category.finish()),
        Arc::new(confidence.finish()),
        Arc::new(model_version.finish()),
        Arc::new(predicted_at.finish()),
        Arc::new(run_id.finish()),
        Arc::new(processing_type.finish()),
        Arc::new(source.finish()),
        Arc::new(line.finish()),
        Arc::new(offset.finish()),
        Arc::new(kafka_partition.finish()),
        Arc::new(kafka_offset.finish()),
        Arc::new(needs_review.finish()),
    ];
    Ok(RecordBatch::try_new(Arc::clone(&SCHEMA), columns)?)
}
