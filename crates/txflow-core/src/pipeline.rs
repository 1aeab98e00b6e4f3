//! The batch pipeline: records from a [`RecordSource`] are validated, the
//! valid ones classified in batches, and everything written to a [`Sink`];
//! invalid rows also go to a [`RejectLog`].
//!
//! Reading the next batch overlaps with writing the previous one: the sink's
//! write runs while the source is parsed, so the database and the parser work
//! at the same time. At most one batch is in flight, so memory stays bounded
//! by two batches whatever the input size.

use std::sync::Arc;

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::identity;
use crate::ports::{Batch, Classifier, RecordSource, RejectLog, Sink, Unclassified, WriteReport};
use crate::record::Position;
use crate::review::{self, ReviewBelow};
use crate::run::{Counts, Lineage, ProcessingType, RunId};
use crate::transaction::{Prediction, Transaction};
use crate::validation::{RejectedRecord, Validator};

/// The batch pipeline over one sink, one classifier and one reject log.
#[derive(Debug)]
pub struct BatchPipeline<'a, C, S: ?Sized> {
    pub classifier: &'a C,
    pub sink: &'a S,
    /// Valid transactions per batch (and per database transaction).
    pub batch_size: usize,
    pub run_id: RunId,
    pub processing_type: ProcessingType,
    /// Predictions under this confidence are also queued for review.
    pub review_below: Option<ReviewBelow>,
}

/// The rows gathered for one batch, before classification.
struct Pending {
    transactions: Vec<Transaction>,
    positions: Vec<Position>,
    rejected: Vec<RejectedRecord>,
    exhausted: bool,
}

impl<C: Classifier, S: Sink + ?Sized> BatchPipeline<'_, C, S> {
    /// Runs one source to its end, adding to `counts` and calling `progress`
    /// after every batch.
    pub async fn run_source<R, L>(
        &self,
        source: &mut R,
        rejects: &mut L,
        counts: &mut Counts,
        progress: &mut (dyn FnMut(&Counts, u64) + Send),
    ) -> Result<()>
    where
        R: RecordSource,
        L: RejectLog,
    {
        let location = Arc::clone(source.location());
        let validator = Validator::new(Arc::clone(&location), source.decimal_mark());
        let lineage = Lineage {
            run_id: self.run_id.clone(),
            source: Arc::clone(&location),
            processing_type: self.processing_type,
        };
        let mut sequence = 0u64;
        let mut in_flight: Option<Batch> = None;
        loop {
            // Write the previous batch while reading and classifying the
            // next one.
            let write = async {
                match in_flight.take() {
                    Some(batch) => self.write(batch, rejects, &location).await.map(Some),
                    None => Ok(None),
                }
            };
            let read = async {
                // A source's first batch is half the others: its write
                // then starts while the rest of a small file is still
                // being classified (a file of one batch would otherwise
                // be read, classified and written with nothing overlapped).
                let size = if sequence == 0 {
                    self.batch_size.div_ceil(2)
                } else {
                    self.batch_size
                };
                let pending = self.gather(source, &validator, counts, size).await?;
                let classified = classify(
                    self.classifier,
                    &pending.transactions,
                    &pending.positions,
                    &location,
                )
                .await?;
                Ok::<_, Error>((pending, classified))
            };
            let (written, read) = futures::join!(write, read);
            if let Some((report, offered)) = written? {
                counts.add_write(report, offered);
            }
            let (pending, (predictions, unclassified)) = read?;
            counts.bytes = counts.bytes.max(source.bytes_read());
            progress(counts, source.bytes_read());
            if pending.transactions.is_empty() && pending.rejected.is_empty() {
                break;
            }
            counts.classified += predictions.len() as u64;
            counts.unclassified += unclassified.len() as u64;
            sequence += 1;
            let mut batch = Batch {
                lineage: lineage.clone(),
                batch_id: batch_id(&self.run_id, &location, sequence),
                transactions: pending.transactions,
                positions: pending.positions,
                predictions,
                unclassified,
                rejected: pending.rejected,
                reviews: Vec::new(),
                checkpoint: None,
                run_tally: true,
            };
            batch.reviews = review::route(self.classifier, self.review_below, &batch);
            in_flight = Some(batch);
            if pending.exhausted {
                if let Some(batch) = in_flight.take() {
                    let (report, offered) = self.write(batch, rejects, &location).await?;
                    counts.add_write(report, offered);
                }
                progress(counts, source.bytes_read());
                break;
            }
        }
        counts.files += 1;
        Ok(())
    }

    /// Reads records until a batch holds `size` or the source ends.
    async fn gather<R: RecordSource>(
        &self,
        source: &mut R,
        validator: &Validator,
        counts: &mut Counts,
        size: usize,
    ) -> Result<Pending> {
        let mut pending = Pending {
            transactions: Vec::with_capacity(size),
            positions: Vec::with_capacity(size),
            rejected: Vec::new(),
            exhausted: false,
        };
        // Rejected rows count towards the batch too, so a file of nothing but
        // bad rows still moves in bounded steps.
        while pending.transactions.len() + pending.rejected.len() < size {
            let record = source.next_record().await.map_err(|e| Error::Source {
                location: validator.location().to_string(),
                source: e,
            })?;
            let Some(record) = record else {
                pending.exhausted = true;
                break;
            };
            counts.read += 1;
            match validator.validate(&record) {
                Ok(tx) => {
                    counts.valid += 1;
                    pending.transactions.push(tx);
                    pending.positions.push(record.position);
                }
                Err(violation) => {
                    counts.invalid += 1;
                    pending.rejected.push(validator.reject(&record, violation));
                }
            }
        }
        Ok(pending)
    }

    /// Writes a batch; returns the sink's report and how many transactions
    /// the batch offered.
    async fn write<L: RejectLog>(
        &self,
        batch: Batch,
        rejects: &mut L,
        location: &str,
    ) -> Result<(WriteReport, u64)> {
        if !batch.rejected.is_empty() {
            rejects
                .append(&batch.rejected)
                .await
                .map_err(|e| Error::RejectLog { source: e })?;
        }
        let offered = batch.transactions.len() as u64;
        let report = self
            .sink
            .write_batch(batch)
            .await
            .map_err(|e| Error::Sink {
                location: location.to_owned(),
                source: e,
            })?;
        Ok((report, offered))
    }
}

/// Classifies a batch: its predictions, and the transactions the classifier
/// failed on (each with its position). A stage both pipelines share.
pub async fn classify<C: Classifier>(
    classifier: &C,
    transactions: &[Transaction],
    positions: &[Position],
    location: &str,
) -> Result<(Vec<Prediction>, Vec<Unclassified>)> {
    if transactions.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let outcomes = classifier
        .classify(transactions)
        .await
        .map_err(|e| Error::Classify {
            location: location.to_owned(),
            source: e,
        })?;
    if outcomes.len() != transactions.len() {
        return Err(Error::PredictionCount {
            expected: transactions.len(),
            got: outcomes.len(),
        });
    }
    let mut predictions = Vec::with_capacity(outcomes.len());
    let mut unclassified = Vec::new();
    for ((outcome, tx), position) in outcomes.into_iter().zip(transactions).zip(positions) {
        match outcome {
            Ok(prediction) => predictions.push(prediction),
            Err(failure) => unclassified.push(Unclassified {
                transaction_id: tx.id(),
                position: *position,
                failure,
            }),
        }
    }
    Ok((predictions, unclassified))
}

/// The id of the `sequence`-th batch of `source` in `run`: the same on a rerun
/// with the same run id.
fn batch_id(run: &RunId, source: &str, sequence: u64) -> Uuid {
    let name = format!("batch\0{run}\0{source}\0{sequence}");
    Uuid::new_v5(&identity::NAMESPACE, name.as_bytes())
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::error::BoxError;
    use crate::ports::{ClassifyFailure, FailureClass, Outcome};
    use crate::testing::{Memory, Rows, rows};

    use crate::run::{ErrorBudget, RunStatus, RunSummary};

    use crate::{ReferenceModel, model};
    use chrono::Utc;

    /// Fails the transactions whose source id is even.
    struct FailsEven;

    impl Classifier for FailsEven {
        async fn classify(&self, txs: &[Transaction]) -> Result<Vec<Outcome>, BoxError> {
            Ok(txs
                .iter()
                .map(|tx| {
                    let even = tx.source_id().parse::<u64>().is_ok_and(|n| n % 2 == 0);
                    if even {
                        Err(ClassifyFailure {
                            class: FailureClass::InvalidAnswer,
                            message: "unknown category \"Pets\"".into(),
                        })
                    } else {
                        Ok(model::ReferenceModel::predict(tx.id()))
                    }
                })
                .collect())
        }
    }

    fn run<C: Classifier>(classifier: &C, source: &mut Rows) -> (Counts, Vec<Batch>, usize) {
        run_reviewing(classifier, source, None)
    }

    fn run_reviewing<C: Classifier>(
        classifier: &C,
        source: &mut Rows,
        review_below: Option<ReviewBelow>,
    ) -> (Counts, Vec<Batch>, usize) {
        let sink = Memory::default();
        let pipeline = BatchPipeline {
            classifier,
            sink: &sink,
            batch_size: 4,
            run_id: RunId::parse("test").expect("a run id"),
            processing_type: ProcessingType::Batch,
            review_below,
        };
        let mut counts = Counts::default();
        let mut rejects = Vec::new();
        futures::executor::block_on(pipeline.run_source(
            source,
            &mut rejects,
            &mut counts,
            &mut |_, _| {},
        ))
        .expect("the run");
        let batches = sink.batches.into_inner().expect("the batches");
        (counts, batches, rejects.len())
    }

    #[test]
    fn every_row_read_is_valid_or_rejected_and_every_valid_one_is_written() {
        let (counts, batches, rejected) = run(
            &model::InProcess(std::sync::Arc::new(ReferenceModel)),
            &mut rows(10, 3),
        );
        assert_eq!((counts.read, counts.valid, counts.invalid), (10, 7, 3));
        assert_eq!((counts.written, counts.predictions_written), (7, 7));
        assert_eq!(rejected, 3);
        // Batches of at most 4 rows, valid and rejected together.
        assert_eq!(batches.len(), 3);
        let lines: Vec<u64> = batches
            .iter()
            .flat_map(|b| b.positions.iter().map(|p| p.line))
            .collect();
        assert_eq!(lines, [2, 3, 5, 6, 8, 9, 11]);
    }

    /// Answers a confidence of source id / 10 (none for id 5).
    struct Unsure;

    impl Classifier for Unsure {
        async fn classify(&self, txs: &[Transaction]) -> Result<Vec<Outcome>, BoxError> {
            Ok(txs
                .iter()
                .map(|tx| {
                    let n: u32 = tx.source_id().parse().unwrap_or(0);
                    let mut p = model::ReferenceModel::predict(tx.id());
                    p.confidence = (n != 5).then_some(f64::from(n) / 10.0);
                    Ok(p)
                })
                .collect())
        }
    }

    #[test]
    fn predictions_under_the_threshold_are_queued_with_their_batch() {
        let below = ReviewBelow::new(0.35).expect("a threshold");
        let (counts, batches, _) = run_reviewing(&Unsure, &mut rows(8, 100), Some(below));
        let queued: Vec<Option<f64>> = batches
            .iter()
            .flat_map(|b| b.reviews.iter().map(|r| r.confidence))
            .collect();
        // 0.1, 0.2, 0.3 and the one without a confidence; 0.4 and up are not.
        assert_eq!(queued, [Some(0.1), Some(0.2), Some(0.3), None]);
        assert_eq!(counts.queued, 4);
        for b in &batches {
            for r in &b.reviews {
                assert!(
                    b.predictions
                        .iter()
                        .any(|p| p.transaction_id == r.transaction_id)
                );
                assert_eq!(r.top[0].category, r.category);
            }
        }
        let (counts, batches, _) = run(&Unsure, &mut rows(8, 100));
        assert_eq!(counts.queued, 0);
        assert!(batches.iter().all(|b| b.reviews.is_empty()));
    }

    #[test]
    fn a_failed_item_is_stored_without_prediction_and_the_others_go_on() {
        let (counts, batches, _) = run(&FailsEven, &mut rows(6, 100));
        assert_eq!((counts.classified, counts.unclassified), (3, 3));
        assert_eq!(counts.written, 6);
        let unclassified: Vec<u64> = batches
            .iter()
            .flat_map(|b| b.unclassified.iter().map(|u| u.position.line))
            .collect();
        assert_eq!(unclassified, [3, 5, 7]);
        let mut summary = RunSummary::start(
            RunId::parse("test").expect("a run id"),
            ProcessingType::Batch,
            Utc::now(),
        );
        summary.counts = counts;
        summary.finish(Utc::now(), None, ErrorBudget::UNLIMITED);
        assert_eq!(summary.status, RunStatus::SucceededWithRejects);
    }
}
