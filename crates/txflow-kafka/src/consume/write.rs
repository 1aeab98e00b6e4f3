//! The database writes, on a task of their own: while one flush is written,
//! the member prepares and publishes the next.
//!
//! A flush's batches go to their partitions' lanes; a lane writes its
//! share of a flush in one database transaction (one commit for all its
//! partitions), one share at a time in the order they were queued, so a
//! partition's offsets only move forward and never ahead of its rows; at
//! most one share waits while another is written (the queue is what bounds
//! the member's memory, with the poll channel).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use chrono::Utc;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use txflow_core::{Batch, Sink};

use super::rebalance::Context;
use super::{Consumed, metric, stage_done};
use crate::error::{Error, Result};

/// One partition's records, prepared and published, waiting to be written
/// with the partition's next offset.
pub(super) struct Staged {
    pub location: String,
    pub batch: Batch,
    /// Kafka timestamps (ms) of the valid records, for end-to-end latency.
    pub timestamps: Vec<i64>,
    /// What the batch holds, its write aside.
    pub done: Consumed,
}

/// What a lane does next: write a flush's batches of its partitions, or
/// say it wrote all before.
pub(super) enum Job {
    Write(Vec<Staged>),
    Written(oneshot::Sender<()>),
}

/// The writing tasks ("lanes") and their queues. A partition always goes
/// to the same lane (`partition % lanes`), so its batches are written in
/// order; lanes write side by side (with a sink that has a connection for
/// each, see `PostgresStore::with_writers`).
pub(super) struct Writer {
    queues: Vec<mpsc::Sender<Job>>,
    tasks: Vec<JoinHandle<Result<()>>>,
    /// What was written so far: read after a shutdown that timed out too.
    done: Arc<Mutex<Consumed>>,
    group: String,
}

impl Writer {
    pub fn start<S: Sink + ?Sized + 'static>(
        sink: &Arc<S>,
        consumer: &Arc<BaseConsumer<Context>>,
        group: &str,
        lanes: usize,
    ) -> Writer {
        let done = Arc::new(Mutex::new(Consumed::default()));
        let (mut queues, mut tasks) = (Vec::new(), Vec::new());
        for _ in 0..lanes.max(1) {
            let (queue, mut jobs) = mpsc::channel::<Job>(1);
            let (sink, consumer) = (Arc::clone(sink), Arc::clone(consumer));
            let (written, group) = (Arc::clone(&done), group.to_owned());
            tasks.push(tokio::spawn(async move {
                while let Some(job) = jobs.recv().await {
                    match job {
                        Job::Write(staged) => {
                            let did = write(&*sink, &consumer, &group, staged).await?;
                            add(
                                &mut written.lock().unwrap_or_else(PoisonError::into_inner),
                                &did,
                            );
                        }
                        Job::Written(told) => {
                            let _ = told.send(());
                        }
                    }
                }
                Ok(())
            }));
            queues.push(queue);
        }
        Writer {
            queues,
            tasks,
            done,
            group: group.to_owned(),
        }
    }

    /// Queues a flush's batches (by partition), each on its partition's
    /// lane; waits while a lane has another share waiting already.
    pub async fn send(&mut self, flush: Vec<(i32, Staged)>) -> Result<()> {
        if self.queues.is_empty() {
            return Err(stopped(&self.group));
        }
        let mut shares: Vec<Vec<Staged>> = (0..self.queues.len()).map(|_| Vec::new()).collect();
        for (partition, staged) in flush {
            shares[partition.unsigned_abs() as usize % self.queues.len()].push(staged);
        }
        for (lane, share) in shares.into_iter().enumerate() {
            if !share.is_empty() && self.queues[lane].send(Job::Write(share)).await.is_err() {
                // The lane's task ended: a write failed.
                return Err(self.failure().await);
            }
        }
        Ok(())
    }

    /// Waits until every batch queued so far is written.
    pub async fn written(&mut self) -> Result<()> {
        if self.queues.is_empty() {
            return Err(stopped(&self.group));
        }
        let mut told = Vec::with_capacity(self.queues.len());
        for queue in &self.queues {
            let (tell, heard) = oneshot::channel();
            if queue.send(Job::Written(tell)).await.is_err() {
                return Err(self.failure().await);
            }
            told.push(heard);
        }
        for heard in told {
            if heard.await.is_err() {
                return Err(self.failure().await);
            }
        }
        Ok(())
    }

    /// Resolves when a lane has ended early (a write failed), with why.
    pub async fn failure(&mut self) -> Error {
        if self.tasks.is_empty() {
            return std::future::pending().await;
        }
        let (ended, _, _) = futures::future::select_all(self.tasks.iter_mut()).await;
        // The other lanes stop with the member (see `Drop`).
        self.queues.clear();
        match ended {
            Ok(Err(e)) => e,
            Ok(Ok(())) | Err(_) => stopped(&self.group),
        }
    }

    /// Waits until every queued batch is written.
    pub async fn finish(&mut self) -> Result<()> {
        self.queues.clear();
        for task in self.tasks.drain(..) {
            task.await.map_err(|_| stopped(&self.group))??;
        }
        Ok(())
    }

    /// What was written so far.
    pub fn done(&self) -> Consumed {
        *self.done.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Writer {
    /// A member stopped before its writes finished (a shutdown that timed
    /// out, a failure elsewhere) abandons them: the transaction in flight
    /// rolls back and the next member replays its records.
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn stopped(group: &str) -> Error {
    Error::Consumer {
        group: group.to_owned(),
        what: "the database writer",
        source: KafkaError::Canceled,
    }
}

fn add(total: &mut Consumed, did: &Consumed) {
    let (t, d) = (&mut total.counts, &did.counts);
    t.read += d.read;
    t.invalid += d.invalid;
    t.valid += d.valid;
    t.classified += d.classified;
    t.unclassified += d.unclassified;
    t.written += d.written;
    t.present += d.present;
    t.predictions_written += d.predictions_written;
    t.queued += d.queued;
    total.dead_letters += did.dead_letters;
    total.predictions_published += did.predictions_published;
}

/// Writes a lane's share of a flush (its partitions' batches and their
/// next offsets) in one database transaction (the sink waits out a
/// database outage), then commits the offsets to Kafka for lag
/// monitoring.
async fn write<S: Sink + ?Sized>(
    sink: &S,
    consumer: &BaseConsumer<Context>,
    group: &str,
    share: Vec<Staged>,
) -> Result<Consumed> {
    let mut done = Consumed::default();
    let mut locations = Vec::with_capacity(share.len());
    let mut batches = Vec::with_capacity(share.len());
    let mut timestamps = Vec::with_capacity(share.len());
    for staged in share {
        add(&mut done, &staged.done);
        locations.push(staged.location);
        batches.push(staged.batch);
        timestamps.push(staged.timestamps);
    }
    let started = Instant::now();
    let offered: u64 = batches.iter().map(|b| b.transactions.len() as u64).sum();
    let checkpoints: Vec<_> = batches
        .iter()
        .filter_map(|b| b.checkpoint.clone())
        .collect();
    let report = sink
        .write_batches(batches)
        .await
        .map_err(|source| Error::Sink {
            location: locations.join(", "),
            source,
        })?;
    stage_done("write", started);
    let now_ms = Utc::now().timestamp_millis();
    for ts in timestamps.into_iter().flatten() {
        metrics::histogram!(metric::END_TO_END_SECONDS)
            .record((now_ms - ts).max(0) as f64 / 1000.0);
    }
    metrics::counter!(metric::WRITTEN).increment(report.transactions);
    done.counts.written = report.transactions;
    done.counts.present = offered.saturating_sub(report.transactions);
    done.counts.predictions_written = report.predictions;
    done.counts.queued = report.queued;

    // For lag monitoring only: the database holds the offsets that count.
    let mut tpl = TopicPartitionList::new();
    let listed = checkpoints.iter().try_for_each(|c| {
        tpl.add_partition_offset(&c.topic, c.partition, Offset::Offset(c.next_offset))
    });
    if listed.is_ok()
        && tpl.count() > 0
        && let Err(e) = consumer.commit(&tpl, CommitMode::Async)
    {
        tracing::debug!(group, error = %e, "committing the offsets to Kafka");
    }
    Ok(done)
}
