//! Publishing a partition's predictions and dead letters, and waiting until
//! the broker has every one of them (before the database gets the offsets).

use std::time::Duration;

use chrono::Utc;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use txflow_core::Batch;

use super::metric;
use super::partition::Traces;
use crate::client::{Connection, off_runtime};
use crate::error::{Error, Result};
use crate::prediction;
use crate::record::Record;

/// Headers of a dead letter, besides the record's own.
pub mod dead_letter {
    pub const ERROR_CLASS: &str = "txflow-error-class";
    pub const ERROR_RULE: &str = "txflow-error-rule";
    pub const ERROR_MESSAGE: &str = "txflow-error-message";
    pub const SOURCE_TOPIC: &str = "txflow-source-topic";
    pub const SOURCE_PARTITION: &str = "txflow-source-partition";
    pub const SOURCE_OFFSET: &str = "txflow-source-offset";
    pub const ATTEMPTS: &str = "txflow-attempts";
    pub const FIRST_FAILURE: &str = "txflow-first-failure";
    pub const VERSION: &str = "txflow-version";
}

/// A record that goes to the dead-letter topic, and why.
#[derive(Debug)]
pub(crate) struct DeadLetter<'m> {
    pub message: &'m Record,
    pub class: &'static str,
    pub rule: String,
    pub text: String,
}

/// The member's producer and where it publishes.
pub(crate) struct Publisher<'a> {
    pub producer: FutureProducer,
    /// To make a new producer when this one fails for good.
    pub connection: &'a Connection,
    pub settings: &'a [(&'a str, &'a str)],
    pub predictions_topic: &'a str,
    pub dead_letter_topic: &'a str,
    /// Written in dead-letter headers.
    pub version: &'a str,
    /// With `--transactions`: the producer's `transactional.id`, each
    /// flush published in a transaction of its own.
    pub transactional_id: Option<String>,
}

/// The member's producer: transactional (its transactions initialised)
/// when it has a `transactional.id`, idempotent otherwise.
pub(crate) async fn producer(
    connection: &Connection,
    settings: &[(&str, &str)],
    transactional_id: Option<&str>,
) -> Result<FutureProducer> {
    match transactional_id {
        Some(id) => connection.transactional_producer(settings, id).await,
        None => connection.idempotent_producer(settings),
    }
}

/// The pause before the `attempt`-th new try: 200 ms more each time, at
/// most 5 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200 * u64::from(attempt.min(25)))
}

/// One partition's share of a flush to publish.
pub(crate) struct Part<'p, 'm> {
    pub batch: &'p Batch,
    pub dead: &'p [DeadLetter<'m>],
    pub traces: &'p Traces,
    pub topic: &'p str,
    pub partition: i32,
}

impl Publisher<'_> {
    /// Publishes a flush's partitions (all enqueued, then all acknowledged)
    /// and returns once the broker has every record; a producer failed for
    /// good is renewed and everything published again, as long as it takes.
    pub async fn publish_all(&mut self, parts: &[Part<'_, '_>]) -> Result<()> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.publish_parts(parts).await {
                Err(e) if is_fatal(&e) => self.renew(&e, attempt).await?,
                outcome => return outcome,
            }
        }
    }

    /// Publishes a flush's partitions in one Kafka transaction and returns
    /// once the broker acknowledged every record, the transaction left open
    /// for [`Publisher::commit`] once the database has the rows. What fails
    /// before (a broker away past `transaction.timeout.ms`, a producer
    /// fenced or failed for good) is aborted and published again in a new
    /// transaction, with a growing pause, as long as it takes; an error of
    /// the records themselves (too large, not allowed) is returned.
    pub async fn publish_in_transaction(&mut self, parts: &[Part<'_, '_>]) -> Result<()> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.transaction_once(parts).await {
                Ok(()) => return Ok(()),
                Err(e) if is_fatal(&e) || aborts_the_transaction(&e) => {
                    self.start_over(&e, attempt).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn transaction_once(&self, parts: &[Part<'_, '_>]) -> Result<()> {
        self.producer
            .begin_transaction()
            .map_err(|source| self.transaction_error("beginning a transaction", source))?;
        self.publish_parts(parts).await
    }

    /// Aborts the open transaction, or, if the producer cannot, renews it
    /// (the new producer fences the old and aborts what it left open).
    async fn start_over(&mut self, e: &Error, attempt: u32) -> Result<()> {
        match off_runtime(&self.producer, |p| p.abort_transaction(Timeout::Never)).await {
            Ok(()) => {
                let pause = backoff(attempt);
                tracing::warn!(error = %e, attempt, retry_in = ?pause,
                    "publishing in a Kafka transaction failed; aborted it, publishing again");
                tokio::time::sleep(pause).await;
                Ok(())
            }
            Err(_) => self.renew(e, attempt).await,
        }
    }

    /// Commits the flush's transaction: the predictions and dead letters
    /// become visible to `read_committed` readers (the sinks). Waits out a
    /// commit that can be retried; a transaction that must be aborted now,
    /// its rows stored, is an error: the next member to take the
    /// partitions resumes at the first offset still marked unpublished and
    /// publishes them again.
    pub async fn commit(&self) -> Result<()> {
        loop {
            let committed =
                off_runtime(&self.producer, |p| p.commit_transaction(Timeout::Never)).await;
            match committed {
                Ok(()) => return Ok(()),
                Err(KafkaError::Transaction(e)) if e.is_retriable() => {
                    tracing::warn!(error = %e, "committing the Kafka transaction; again");
                }
                Err(source) => {
                    return Err(self.transaction_error(
                        "committing the transaction after its rows were stored (a member \
                         resuming on these partitions publishes them again)",
                        source,
                    ));
                }
            }
        }
    }

    fn transaction_error(&self, what: &'static str, source: KafkaError) -> Error {
        Error::Transaction {
            id: self.transactional_id.clone().unwrap_or_default(),
            what,
            source,
        }
    }

    /// A fatal or fencing error ends the producer (see `ends_the_producer`);
    /// librdkafka's advice is to make a new one. What was being published
    /// is published again (at least once, as always).
    /// As long as it takes (a broker that keeps losing producers is waited
    /// out like one that is away), with a growing pause between attempts.
    async fn renew(&mut self, e: &Error, attempt: u32) -> Result<()> {
        let pause = backoff(attempt);
        tracing::warn!(error = %e, attempt, retry_in = ?pause,
            "the producer failed for good; making a new one and publishing again");
        tokio::time::sleep(pause).await;
        self.producer = producer(
            self.connection,
            self.settings,
            self.transactional_id.as_deref(),
        )
        .await?;
        Ok(())
    }

    /// Publishes every part's records, then waits for the broker to
    /// acknowledge them all: the partitions of a flush share the wait.
    async fn publish_parts(&self, parts: &[Part<'_, '_>]) -> Result<()> {
        let records = parts
            .iter()
            .map(|p| p.batch.predictions.len() + p.dead.len())
            .sum();
        let mut deliveries: Vec<(&str, DeliveryFuture)> = Vec::with_capacity(records);
        let predicted_at = Utc::now();
        for p in parts {
            self.enqueue_predictions(p.batch, p.traces, predicted_at, &mut deliveries)?;
            let location = &*p.batch.lineage.source;
            self.enqueue_dead(p.dead, p.topic, p.partition, location, &mut deliveries)?;
        }
        settle(deliveries).await
    }

    /// Enqueues a batch's predictions (events keyed by transaction id, see
    /// [`prediction`](crate::prediction)), each continuing its record's
    /// trace.
    fn enqueue_predictions<'t>(
        &'t self,
        batch: &Batch,
        traces: &Traces,
        predicted_at: chrono::DateTime<Utc>,
        deliveries: &mut Vec<(&'t str, DeliveryFuture)>,
    ) -> Result<()> {
        for (key, value, position) in prediction::events(batch, predicted_at) {
            let mut headers = prediction::headers();
            let traceparent = traces.traceparent(position.offset as i64);
            if let Some(value) = &traceparent {
                headers = headers.insert(Header {
                    key: txflow_trace::HEADER,
                    value: Some(value.as_str()),
                });
            }
            let record = FutureRecord::to(self.predictions_topic)
                .key(&key[..])
                .payload(&value[..])
                .headers(headers);
            deliveries.push((self.predictions_topic, self.enqueue(record)?));
        }
        Ok(())
    }

    /// Publishes one partition's dead letters; returns once the broker
    /// acknowledged all of them.
    pub async fn publish_dead(
        &mut self,
        dead: &[DeadLetter<'_>],
        topic: &str,
        partition: i32,
        location: &str,
    ) -> Result<()> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut deliveries = Vec::with_capacity(dead.len());
            let outcome = match self.enqueue_dead(dead, topic, partition, location, &mut deliveries)
            {
                Ok(()) => settle(deliveries).await,
                Err(e) => Err(e),
            };
            match outcome {
                Err(e) if is_fatal(&e) => self.renew(&e, attempt).await?,
                outcome => return outcome,
            }
        }
    }

    fn enqueue_dead<'t>(
        &'t self,
        dead: &[DeadLetter<'_>],
        topic: &str,
        partition: i32,
        location: &str,
        deliveries: &mut Vec<(&'t str, DeliveryFuture)>,
    ) -> Result<()> {
        let first_failure = Utc::now().to_rfc3339();
        for d in dead {
            metrics::counter!(metric::DEAD_LETTERS, "class" => d.class).increment(1);
            tracing::warn!(source = %location, offset = d.message.offset(), class = d.class,
                rule = %d.rule, error = %d.text, "dead letter");
            let headers = self.dead_letter_headers(d, topic, partition, &first_failure);
            let mut record = FutureRecord::to(self.dead_letter_topic).headers(headers);
            if let Some(key) = d.message.key() {
                record = record.key(key);
            }
            if let Some(payload) = d.message.payload() {
                record = record.payload(payload);
            }
            deliveries.push((self.dead_letter_topic, self.enqueue(record)?));
        }
        Ok(())
    }

    fn enqueue(&self, record: FutureRecord<'_, [u8], [u8]>) -> Result<DeliveryFuture> {
        let topic = record.topic.to_owned();
        self.producer
            .send_result(record)
            .map_err(|(source, _)| Error::Publish { topic, source })
    }

    fn dead_letter_headers(
        &self,
        d: &DeadLetter<'_>,
        topic: &str,
        partition: i32,
        first_failure: &str,
    ) -> OwnedHeaders {
        // The record's own headers, but not those txflow set on an earlier
        // failure (a replayed record carries its attempt count and first
        // failure: they carry on).
        let mut headers = OwnedHeaders::new();
        let mut attempts = "1";
        let mut first_failure = first_failure;
        for (key, value) in d.message.headers() {
            let text = value.and_then(|v| std::str::from_utf8(v).ok());
            match (key, text) {
                (dead_letter::ATTEMPTS, Some(n)) => attempts = n,
                (dead_letter::FIRST_FAILURE, Some(t)) => first_failure = t,
                (key, _) if crate::dlq::is_ours(key) => {}
                (key, _) => headers = headers.insert(Header { key, value }),
            }
        }
        let partition = partition.to_string();
        let offset = d.message.offset().to_string();
        let ours: [(&str, &str); 9] = [
            (dead_letter::ERROR_CLASS, d.class),
            (dead_letter::ERROR_RULE, &d.rule),
            (dead_letter::ERROR_MESSAGE, &d.text),
            (dead_letter::SOURCE_TOPIC, topic),
            (dead_letter::SOURCE_PARTITION, &partition),
            (dead_letter::SOURCE_OFFSET, &offset),
            (dead_letter::ATTEMPTS, attempts),
            (dead_letter::FIRST_FAILURE, first_failure),
            (dead_letter::VERSION, self.version),
        ];
        for (key, value) in ours {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        headers
    }
}

/// Waits for every delivery; the first failure is the error.
async fn settle(deliveries: Vec<(&str, DeliveryFuture)>) -> Result<()> {
    for (topic, delivery) in deliveries {
        let source = match delivery.await {
            Ok(Ok(_)) => continue,
            Ok(Err((source, _))) => source,
            Err(_) => KafkaError::Canceled,
        };
        return Err(Error::Publish {
            topic: topic.to_owned(),
            source,
        });
    }
    Ok(())
}

/// Whether a transaction's record or call failed in a way that the
/// transaction must be aborted and its records published again: a delivery
/// that timed out (a broker away past `message.timeout.ms`), or an error
/// librdkafka marks abortable or retriable.
fn aborts_the_transaction(e: &Error) -> bool {
    match e {
        Error::Publish { source, .. } | Error::Transaction { source, .. } => matches!(
            source,
            KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)
                | KafkaError::Transaction(_)
        ),
        _ => false,
    }
}

/// Whether the producer itself is finished (see `ends_the_producer`), or
/// the delivery was purged from the queue of one that is.
fn is_fatal(e: &Error) -> bool {
    matches!(e, Error::Publish { source, .. }
        if crate::produce::ends_the_producer(source) || crate::produce::purged(source))
}
