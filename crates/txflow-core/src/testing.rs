//! In-memory sources, sinks and logs for the core's own tests.

use std::sync::{Arc, Mutex};

use crate::error::BoxError;
use crate::ports::{Batch, BoxFuture, RecordSource, RejectLog, Sink, WriteReport};
use crate::record::{Column, Position, RawRecord};
use crate::transaction::DecimalMark;
use crate::validation::RejectedRecord;

/// Rows of `;`-separated fields in column order, from memory.
pub(crate) struct Rows {
    pub location: Arc<str>,
    pub rows: Vec<Vec<u8>>,
    pub next: usize,
    /// The source breaks (an I/O error) when asked for this row.
    pub breaks_at: Option<usize>,
}

impl RecordSource for Rows {
    fn location(&self) -> &Arc<str> {
        &self.location
    }
    fn decimal_mark(&self) -> DecimalMark {
        DecimalMark::Comma
    }
    async fn next_record(&mut self) -> Result<Option<RawRecord<'_>>, BoxError> {
        if self.breaks_at == Some(self.next) {
            return Err("the disk went away".into());
        }
        let Some(row) = self.rows.get(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        let mut fields = [None; 7];
        let mut count = 0;
        for (i, cell) in row.split(|&b| b == b';').enumerate() {
            if let Some(slot) = fields.get_mut(i) {
                *slot = Some(cell);
            }
            count += 1;
        }
        Ok(Some(RawRecord {
            position: Position {
                line: self.next as u64 + 1,
                offset: 0,
            },
            raw: row,
            fields,
            field_count: count,
            expected_fields: Column::ALL.len(),
            oversized: None,
        }))
    }
    fn bytes_read(&self) -> u64 {
        0
    }
}

#[derive(Default)]
pub(crate) struct Memory {
    pub batches: Mutex<Vec<Batch>>,
}

impl Sink for Memory {
    fn write_batch(&self, batch: Batch) -> BoxFuture<'_, Result<WriteReport, BoxError>> {
        Box::pin(async move {
            let report = WriteReport {
                transactions: batch.transactions.len() as u64,
                predictions: batch.predictions.len() as u64,
                rejected: batch.rejected.len() as u64,
                queued: batch.reviews.len() as u64,
                unclassified: batch.unclassified.len() as u64,
            };
            self.batches.lock().map_err(|e| e.to_string())?.push(batch);
            Ok(report)
        })
    }
}

impl RejectLog for Vec<RejectedRecord> {
    async fn append(&mut self, rejected: &[RejectedRecord]) -> Result<(), BoxError> {
        self.extend_from_slice(rejected);
        Ok(())
    }

    async fn finish(self) -> Result<Option<(String, u64)>, BoxError> {
        Ok((!self.is_empty()).then(|| ("memory".to_owned(), self.len() as u64)))
    }
}

pub(crate) fn rows(n: usize, bad_every: usize) -> Rows {
    let rows = (1..=n)
        .map(|i| {
            let amount = if i % bad_every == 0 { "x" } else { "-1,50" };
            format!("{i};Coffee;{amount};2024-01-02 03:04:05;Café;card;debit").into_bytes()
        })
        .collect();
    Rows {
        location: Arc::from("file:///in.csv"),
        rows,
        next: 0,
        breaks_at: None,
    }
}
