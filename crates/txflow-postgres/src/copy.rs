//! Binary COPY of batches (one COPY per table for all of them), into the
//! final tables or the session's staging tables.

use futures::pin_mut;
use tokio_postgres::Transaction as DbTransaction;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use txflow_core::Batch;

use crate::error::{Error, Result};
use crate::numeric::Numeric;

/// Staging tables: private to the session, emptied at every commit;
/// made by the first batch that needs them (most sessions never do), in
/// its transaction, without the notices of tables that exist already.
pub(crate) const CREATE_STAGING: &str = "
    SET LOCAL client_min_messages = warning;
    CREATE TEMP TABLE IF NOT EXISTS staging_transactions
        (LIKE transactions INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE IF NOT EXISTS staging_predictions
        (LIKE predictions INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE IF NOT EXISTS staging_rejected_records
        (LIKE rejected_records INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;";

pub(crate) const TRANSACTION_COLUMNS: &str = "id, source_id, description, amount, \"timestamp\", merchant, \
     operation_type, side, processing_type, run_id, batch_id, source_location, source_line, source_offset";
pub(crate) const PREDICTION_COLUMNS: &str =
    "transaction_id, model_version, category, confidence, run_id";
pub(crate) const REJECTED_COLUMNS: &str = "source_location, source_line, source_offset, rule, field, message, raw, processing_type, run_id";

/// Where a COPY goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tables {
    /// Straight into the final tables: a row already stored fails the whole
    /// COPY with a unique violation.
    Final,
    /// Into `staging_<table>`, to be moved with `ON CONFLICT DO NOTHING`.
    Staging,
}

impl Tables {
    fn table(self, table: &str) -> String {
        match self {
            Tables::Final => table.to_owned(),
            Tables::Staging => format!("staging_{table}"),
        }
    }
}

/// PostgreSQL text cannot hold NUL; a rejected row may.
fn text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}").into()
    } else {
        s.into()
    }
}

async fn begin(
    tx: &DbTransaction<'_>,
    table: String,
    columns: &str,
    types: &[Type],
) -> Result<BinaryCopyInWriter> {
    let sink = tx
        .copy_in(&format!(
            "COPY {table} ({columns}) FROM STDIN (FORMAT binary)"
        ))
        .await
        .map_err(Error::query("starting a COPY"))?;
    Ok(BinaryCopyInWriter::new(sink, types))
}

const COPY_ROW: &str = "copying a batch";

/// One row into a binary COPY.
async fn write_row(
    writer: std::pin::Pin<&mut BinaryCopyInWriter>,
    row: &[&(dyn ToSql + Sync)],
) -> Result<()> {
    writer.write(row).await.map_err(Error::query(COPY_ROW))
}
const COPY_END: &str = "finishing a batch's COPY";

/// Returns the rows copied.
pub(crate) async fn transactions(
    tx: &DbTransaction<'_>,
    batches: &[Batch],
    into: Tables,
) -> Result<u64> {
    use Type as T;
    let types = [
        T::UUID,
        T::TEXT,
        T::TEXT,
        T::NUMERIC,
        T::TIMESTAMPTZ,
        T::TEXT,
        T::TEXT,
        T::TEXT,
        T::TEXT,
        T::TEXT,
        T::UUID,
        T::TEXT,
        T::INT8,
        T::INT8,
    ];
    let writer = begin(tx, into.table("transactions"), TRANSACTION_COLUMNS, &types).await?;
    pin_mut!(writer);
    for batch in batches {
        let lineage = &batch.lineage;
        let (processing, run, source) = (
            lineage.processing_type.as_str(),
            lineage.run_id.as_str(),
            &*lineage.source,
        );
        for (t, position) in batch.transactions.iter().zip(&batch.positions) {
            let (id, amount, timestamp) = (*t.id().as_uuid(), Numeric(t.amount()), t.timestamp());
            let (source_id, description, merchant) = (t.source_id(), t.description(), t.merchant());
            let (operation_type, side) = (t.operation_type(), t.side().as_str());
            let (line, offset) = (position.line as i64, position.offset as i64);
            let row: [&(dyn ToSql + Sync); 14] = [
                &id,
                &source_id,
                &description,
                &amount,
                &timestamp,
                &merchant,
                &operation_type,
                &side,
                &processing,
                &run,
                &batch.batch_id,
                &source,
                &line,
                &offset,
            ];
            write_row(writer.as_mut(), &row).await?;
        }
    }
    writer.finish().await.map_err(Error::query(COPY_END))
}

/// Returns the rows copied.
pub(crate) async fn predictions(
    tx: &DbTransaction<'_>,
    batches: &[Batch],
    into: Tables,
) -> Result<u64> {
    let types = [Type::UUID, Type::TEXT, Type::TEXT, Type::FLOAT8, Type::TEXT];
    let writer = begin(tx, into.table("predictions"), PREDICTION_COLUMNS, &types).await?;
    pin_mut!(writer);
    for batch in batches {
        let run = batch.lineage.run_id.as_str();
        for p in &batch.predictions {
            let (id, category) = (*p.transaction_id.as_uuid(), p.category.as_str());
            let row: [&(dyn ToSql + Sync); 5] =
                [&id, &p.model_version, &category, &p.confidence, &run];
            write_row(writer.as_mut(), &row).await?;
        }
    }
    writer.finish().await.map_err(Error::query(COPY_END))
}

/// Returns the rows copied.
pub(crate) async fn rejected(
    tx: &DbTransaction<'_>,
    batches: &[Batch],
    into: Tables,
) -> Result<u64> {
    use Type as T;
    let types = [
        T::TEXT,
        T::INT8,
        T::INT8,
        T::TEXT,
        T::TEXT,
        T::TEXT,
        T::TEXT,
        T::TEXT,
        T::TEXT,
    ];
    let writer = begin(tx, into.table("rejected_records"), REJECTED_COLUMNS, &types).await?;
    pin_mut!(writer);
    for batch in batches {
        let (processing, run) = (
            batch.lineage.processing_type.as_str(),
            batch.lineage.run_id.as_str(),
        );
        for r in &batch.rejected {
            let (line, offset) = (r.position.line as i64, r.position.offset as i64);
            let (source, rule, field) = (&*r.source, r.rule.name(), r.field.map(|f| f.name()));
            let (message, raw) = (text(&r.message), text(&r.raw));
            let row: [&(dyn ToSql + Sync); 9] = [
                &source,
                &line,
                &offset,
                &rule,
                &field,
                &message,
                &raw,
                &processing,
                &run,
            ];
            write_row(writer.as_mut(), &row).await?;
        }
    }
    writer.finish().await.map_err(Error::query(COPY_END))
}

/// The batch's classification failures; rare, so one INSERT over arrays.
/// Returns the rows added.
pub(crate) async fn unclassified(tx: &DbTransaction<'_>, batch: &Batch) -> Result<u64> {
    let u = &batch.unclassified;
    let ids: Vec<uuid::Uuid> = u.iter().map(|f| *f.transaction_id.as_uuid()).collect();
    let classes: Vec<&str> = u.iter().map(|f| f.failure.class.as_str()).collect();
    let messages: Vec<String> = u
        .iter()
        .map(|f| text(&f.failure.message).into_owned())
        .collect();
    let lines: Vec<i64> = u.iter().map(|f| f.position.line as i64).collect();
    let (run, source) = (batch.lineage.run_id.as_str(), &*batch.lineage.source);
    tx.execute(
        "INSERT INTO classification_failures
             (transaction_id, failure_class, message, source_line, run_id, source_location)
         SELECT id, class, message, line, $5, $6
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int8[]) AS f(id, class, message, line)
         ON CONFLICT (transaction_id, run_id) DO NOTHING",
        &[&ids, &classes, &messages, &lines, &run, &source],
    )
    .await
    .map_err(Error::query("recording classification failures"))
}
