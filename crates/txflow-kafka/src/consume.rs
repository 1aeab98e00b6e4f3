//! `txflow consume`: one member of a consumer group, exactly once into the
//! database.
//!
//! A dedicated thread polls Kafka and hands records to the async side over an
//! unbounded channel; when `2 × max_batch` records wait, it stops polling
//! until they are down to `max_batch`, so a slow classifier or an open
//! circuit pauses consumption instead of failing records.
//!
//! The async side buffers records up to `max_batch` or `max_wait`, then per
//! partition: decodes and validates (the core's rules, UUID ids required),
//! classifies, publishes predictions and dead letters and waits for the
//! broker to have them, and writes the rows and the partition's next offset
//! in one database transaction. On assignment the poll thread seeks each
//! partition to its stored offset, so a crash at any point replays only what
//! the database does not have, and the upserts keep a replay from writing a
//! row twice. Offsets are also committed to Kafka, for lag monitoring only.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::FutureExt;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use txflow_core::transaction::DecimalMark;
use txflow_core::{
    Batch, Checkpoint, Classifier, Counts, Lineage, OffsetStore, Position, ProcessingType,
    RejectedRecord, Rule, RunId, Sink, Validator, pipeline,
};

use crate::error::{Error, Result};
use crate::event::EventFields;

/// A consumer group member's settings.
#[derive(Debug, Clone)]
pub struct ConsumeConfig {
    pub brokers: String,
    pub group: String,
    /// This member's name, in the run id `<group>/<member>`.
    pub member: String,
    pub input_topic: String,
    pub predictions_topic: String,
    pub dead_letter_topic: String,
    /// Records per flush at most.
    pub max_batch: usize,
    /// How long the first buffered record waits for a flush at most.
    pub max_wait: Duration,
    /// The version written in dead-letter headers.
    pub version: String,
}

/// Metric names, one place.
pub mod metric {
    pub const CONSUMED: &str = "txflow_stream_records_consumed_total";
    pub const WRITTEN: &str = "txflow_stream_transactions_written_total";
    pub const DEAD_LETTERS: &str = "txflow_stream_dead_letters_total";
    pub const BATCH_SIZE: &str = "txflow_stream_batch_size";
    pub const FLUSH_SECONDS: &str = "txflow_stream_flush_seconds";
    pub const END_TO_END_SECONDS: &str = "txflow_stream_end_to_end_seconds";
    pub const LAG: &str = "txflow_consumer_lag";
}

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

enum Event {
    Record(OwnedMessage),
    Revoked(Vec<i32>),
    Stopped,
}

type OffsetLoader =
    Box<dyn Fn(&str) -> std::result::Result<HashMap<i32, i64>, String> + Send + Sync>;

/// How far before a stored offset a partition is fetched from on assignment.
///
/// Tansu 0.6 answers a fetch at an offset inside a record batch with the
/// batches *after* it, so records between the stored offset and the end of
/// its batch would never arrive. Fetching from further back (a librdkafka
/// producer puts at most 10,000 records in a batch) and dropping what lies
/// before the stored offset works on every broker; on Apache Kafka it only
/// costs a little re-reading.
const REWIND: i64 = 10_000;

struct Context {
    group: String,
    load_offsets: OffsetLoader,
    events: mpsc::UnboundedSender<Event>,
    /// The stored offset of each assigned partition of the input topic:
    /// records before it are already in the database and are dropped.
    floors: std::sync::Mutex<HashMap<i32, i64>>,
}

impl Context {
    fn floors(&self) -> std::sync::MutexGuard<'_, HashMap<i32, i64>> {
        self.floors.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ClientContext for Context {
    fn stats(&self, statistics: Statistics) {
        for (topic, t) in statistics.topics {
            for (partition, p) in t.partitions {
                if partition >= 0 && p.consumer_lag >= 0 {
                    metrics::gauge!(metric::LAG, "topic" => topic.clone(), "partition" => partition.to_string())
                        .set(p.consumer_lag as f64);
                }
            }
        }
    }
}

impl ConsumerContext for Context {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let mut topics: Vec<String> = tpl
                    .elements()
                    .iter()
                    .map(|e| e.topic().to_owned())
                    .collect();
                topics.dedup();
                for topic in topics {
                    let stored = match (self.load_offsets)(&topic) {
                        Ok(stored) => stored,
                        Err(e) => {
                            // Without the stored offsets the member must not
                            // read: it could replay or skip. Take nothing.
                            tracing::error!(group = %self.group, topic, error = %e,
                                "cannot read the stored offsets; taking no partition");
                            let _ = consumer.assign(&TopicPartitionList::new());
                            return;
                        }
                    };
                    let mut floors = self.floors();
                    let assigned: Vec<i32> = tpl
                        .elements_for_topic(&topic)
                        .iter()
                        .map(|e| e.partition())
                        .collect();
                    for partition in assigned {
                        // The database is the only authority: a partition it
                        // has no offset for starts at the beginning, whatever
                        // Kafka's committed offsets say.
                        let from = match stored.get(&partition) {
                            Some(&next) => {
                                floors.insert(partition, next);
                                Offset::Offset((next - REWIND).max(0))
                            }
                            None => Offset::Beginning,
                        };
                        let _ = tpl.set_partition_offset(&topic, partition, from);
                    }
                }
                let partitions: Vec<String> = tpl
                    .elements()
                    .iter()
                    .map(|e| format!("{}/{}@{:?}", e.topic(), e.partition(), e.offset()))
                    .collect();
                tracing::info!(group = %self.group, ?partitions, "partitions assigned");
                if let Err(e) = consumer.assign(tpl) {
                    tracing::error!(group = %self.group, error = %e, "assigning partitions");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let revoked: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                self.floors()
                    .retain(|partition, _| !revoked.contains(partition));
                tracing::info!(group = %self.group, ?revoked, "partitions revoked");
                let _ = self.events.send(Event::Revoked(revoked));
                if let Err(e) = consumer.unassign() {
                    tracing::error!(group = %self.group, error = %e, "unassigning partitions");
                }
            }
            other => {
                tracing::error!(group = %self.group, error = ?other, "rebalance failed");
                let _ = consumer.unassign();
            }
        }
    }
}

/// What a member did, for its run summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Consumed {
    pub counts: Counts,
    pub dead_letters: u64,
    pub predictions_published: u64,
}

/// Runs one member until `shutdown` resolves; then stops fetching, stores
/// what it buffered and leaves the group.
pub async fn run<C, S>(
    config: &ConsumeConfig,
    classifier: &C,
    sink: Arc<S>,
    shutdown: impl Future<Output = ()>,
) -> Result<Consumed>
where
    C: Classifier,
    S: Sink + OffsetStore + 'static,
{
    let (events, mut inbox) = mpsc::unbounded_channel();
    let handle = tokio::runtime::Handle::current();
    let loader_sink = Arc::clone(&sink);
    let group = config.group.clone();
    let context = Context {
        group: config.group.clone(),
        load_offsets: Box::new(move |topic| {
            let stored = handle
                .block_on(loader_sink.stored_offsets(&group, topic))
                .map_err(|e| e.to_string())?;
            Ok(stored.into_iter().collect())
        }),
        events: events.clone(),
        floors: std::sync::Mutex::new(HashMap::new()),
    };
    let client_error = |source| Error::Client {
        brokers: config.brokers.clone(),
        source,
    };
    let consumer: Arc<BaseConsumer<Context>> = Arc::new(
        ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", &config.group)
            .set("client.id", format!("txflow-{}", config.member))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("statistics.interval.ms", "5000")
            // While the pipeline is stalled (an open circuit) the member
            // stops polling; past this it leaves the group, and rejoins at
            // its stored offsets once it polls again.
            .set("max.poll.interval.ms", "600000")
            .set("queued.max.messages.kbytes", "16384")
            // A broker may hold a fetch this long when there is little to
            // read; it adds to every record's latency, on top of max_wait.
            .set("fetch.wait.max.ms", "100")
            .create_with_context(context)
            .map_err(client_error)?,
    );
    // A missing topic would only show as records waiting for ever.
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(client_error)?;
    for topic in [
        &config.input_topic,
        &config.predictions_topic,
        &config.dead_letter_topic,
    ] {
        if !metadata
            .topics()
            .iter()
            .any(|t| t.name() == topic.as_str() && !t.partitions().is_empty())
        {
            return Err(Error::MissingTopic {
                topic: topic.clone(),
            });
        }
    }
    consumer
        .subscribe(&[&config.input_topic])
        .map_err(|source| Error::Consumer {
            group: config.group.clone(),
            what: "subscribing",
            source,
        })?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("message.max.bytes", "4000000")
        .create()
        .map_err(client_error)?;

    let queued = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (consumer, queued, stop) = (
            Arc::clone(&consumer),
            Arc::clone(&queued),
            Arc::clone(&stop),
        );
        let high = config.max_batch.saturating_mul(2).max(1);
        let low = config.max_batch.max(1);
        std::thread::Builder::new()
            .name("txflow-poll".into())
            .spawn(move || poll_loop(&consumer, &events, &queued, &stop, high, low))
            .map_err(|e| Error::Consumer {
                group: config.group.clone(),
                what: "starting the poll thread",
                source: KafkaError::Subscription(e.to_string()),
            })?
    };

    let mut member = Member {
        config,
        classifier,
        sink: &*sink,
        consumer: &consumer,
        producer: &producer,
        run_id: RunId::parse(&format!("{}/{}", config.group, config.member))
            .unwrap_or_else(|_| RunId::generate()),
        done: Consumed::default(),
        queued: &queued,
    };
    let mut buffer: Vec<OwnedMessage> = Vec::new();
    let mut deadline = tokio::time::Instant::now();
    let mut shutdown = std::pin::pin!(shutdown.fuse());
    let outcome: Result<()> = loop {
        let event = tokio::select! {
            event = inbox.recv() => event,
            () = tokio::time::sleep_until(deadline), if !buffer.is_empty() => {
                if let Err(e) = member.flush(&mut buffer).await { break Err(e); }
                continue;
            }
            () = &mut shutdown, if !stop.load(Ordering::SeqCst) => {
                tracing::info!(group = %config.group, "stopping: no more fetching, storing what is buffered");
                stop.store(true, Ordering::SeqCst);
                continue;
            }
        };
        match event {
            Some(Event::Record(message)) => {
                metrics::counter!(metric::CONSUMED).increment(1);
                if buffer.is_empty() {
                    deadline = tokio::time::Instant::now() + config.max_wait;
                }
                buffer.push(message);
                if buffer.len() >= config.max_batch
                    && let Err(e) = member.flush(&mut buffer).await
                {
                    break Err(e);
                }
            }
            Some(Event::Revoked(partitions)) => {
                let before = buffer.len();
                buffer.retain(|m| !partitions.contains(&m.partition()));
                queued.fetch_sub(before - buffer.len(), Ordering::SeqCst);
            }
            Some(Event::Stopped) | None => break member.flush(&mut buffer).await,
        }
    };
    stop.store(true, Ordering::SeqCst);
    let _ = tokio::task::spawn_blocking(move || poller.join()).await;
    // Leave the group now: the poll thread has stopped polling.
    consumer.unsubscribe();
    outcome.map(|()| member.done)
}

/// Polls and hands records over until `stop`. While `high` records wait for
/// the pipeline (a slow database, an open circuit) it stops polling until
/// they are down to `low`: consumption pauses, nothing is dropped, and what
/// librdkafka prefetches meanwhile is bounded by `queued.max.messages.kbytes`.
///
/// (It does not call `rd_kafka_pause`: against the Tansu broker, partitions
/// paused and resumed received no more records.)
fn poll_loop(
    consumer: &BaseConsumer<Context>,
    events: &mpsc::UnboundedSender<Event>,
    queued: &AtomicUsize,
    stop: &AtomicBool,
    high: usize,
    low: usize,
) {
    let mut waiting = false;
    while !stop.load(Ordering::SeqCst) {
        let backlog = queued.load(Ordering::SeqCst);
        if backlog >= high || (waiting && backlog > low) {
            if !waiting {
                tracing::info!(backlog, "consumption paused: records wait for the pipeline");
                waiting = true;
            }
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        if waiting {
            tracing::info!(backlog, "consumption resumed");
            waiting = false;
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                let floor = consumer
                    .context()
                    .floors()
                    .get(&message.partition())
                    .copied();
                if floor.is_some_and(|floor| message.offset() < floor) {
                    continue;
                }
                queued.fetch_add(1, Ordering::SeqCst);
                if events.send(Event::Record(message.detach())).is_err() {
                    break;
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, "consumer error"),
            None => {}
        }
    }
    let _ = events.send(Event::Stopped);
}

struct Member<'a, C, S> {
    config: &'a ConsumeConfig,
    classifier: &'a C,
    sink: &'a S,
    consumer: &'a BaseConsumer<Context>,
    producer: &'a FutureProducer,
    run_id: RunId,
    done: Consumed,
    queued: &'a AtomicUsize,
}

/// A record that goes to the dead-letter topic, and why.
struct DeadLetter<'m> {
    message: &'m OwnedMessage,
    class: &'static str,
    rule: String,
    text: String,
}

impl<C: Classifier, S: Sink> Member<'_, C, S> {
    /// Stores the buffered records, partition by partition.
    async fn flush(&mut self, buffer: &mut Vec<OwnedMessage>) -> Result<()> {
        if buffer.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let count = buffer.len();
        metrics::histogram!(metric::BATCH_SIZE).record(count as f64);
        let mut by_partition: BTreeMap<(String, i32), Vec<OwnedMessage>> = BTreeMap::new();
        for m in buffer.drain(..) {
            by_partition
                .entry((m.topic().to_owned(), m.partition()))
                .or_default()
                .push(m);
        }
        for ((topic, partition), mut messages) in by_partition {
            messages.sort_by_key(Message::offset);
            // A replay after a rebalance may repeat a record: keep one.
            let mut seen = HashSet::new();
            messages.retain(|m| seen.insert(m.offset()));
            self.store_partition(&topic, partition, &messages).await?;
        }
        self.queued.fetch_sub(count, Ordering::SeqCst);
        metrics::histogram!(metric::FLUSH_SECONDS).record(started.elapsed().as_secs_f64());
        Ok(())
    }

    async fn store_partition(
        &mut self,
        topic: &str,
        partition: i32,
        messages: &[OwnedMessage],
    ) -> Result<()> {
        let location = format!("kafka://{topic}/{partition}");
        let validator =
            Validator::new(location.as_str().into(), DecimalMark::Point).requiring_uuid_ids();
        let mut transactions = Vec::with_capacity(messages.len());
        let mut positions = Vec::with_capacity(messages.len());
        let mut valid_messages = Vec::with_capacity(messages.len());
        let mut rejected = Vec::new();
        let mut dead = Vec::new();
        for m in messages {
            let offset = m.offset().max(0) as u64;
            let position = Position {
                line: offset,
                offset,
            };
            match EventFields::decode(m.payload()) {
                Ok(fields) => match validator.validate(&fields.record(position)) {
                    Ok(tx) => {
                        transactions.push(tx);
                        positions.push(position);
                        valid_messages.push(m);
                    }
                    Err(violation) => {
                        let record = validator.reject(&fields.record(position), violation);
                        dead.push(DeadLetter {
                            message: m,
                            class: "validation",
                            rule: record.rule.name().to_owned(),
                            text: record.message.clone(),
                        });
                        rejected.push(record);
                    }
                },
                Err(e) => {
                    let raw = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                    dead.push(DeadLetter {
                        message: m,
                        class: "decode",
                        rule: Rule::EventFormat.name().to_owned(),
                        text: e.to_string(),
                    });
                    rejected.push(RejectedRecord {
                        source: location.as_str().into(),
                        position,
                        rule: Rule::EventFormat,
                        field: None,
                        message: e.to_string(),
                        raw,
                    });
                }
            }
        }
        let (predictions, unclassified) =
            pipeline::classify(self.classifier, &transactions, &positions, &location)
                .await
                .map_err(|source| Error::Pipeline {
                    location: location.clone(),
                    source,
                })?;
        for u in &unclassified {
            if let Some(i) = transactions.iter().position(|t| t.id() == u.transaction_id) {
                dead.push(DeadLetter {
                    message: valid_messages[i],
                    class: "classification",
                    rule: u.failure.class.as_str().to_owned(),
                    text: u.failure.message.clone(),
                });
            }
        }

        // The broker has the predictions and the dead letters before the
        // database has the offsets: a crash in between replays, never loses.
        let mut deliveries: Vec<(String, DeliveryFuture)> = Vec::new();
        for p in &predictions {
            let key = p.transaction_id.to_string();
            let value = serde_json::json!({
                "transaction_id": key,
                "category": p.category.as_str(),
                "confidence_score": p.confidence,
                "model_version": p.model_version,
                "source": location,
            })
            .to_string();
            let record = FutureRecord::to(&self.config.predictions_topic)
                .key(key.as_bytes())
                .payload(value.as_bytes())
                .headers(OwnedHeaders::new().insert(Header {
                    key: "content-type",
                    value: Some("application/json"),
                }));
            deliveries.push((self.config.predictions_topic.clone(), self.enqueue(record)?));
        }
        let first_failure = Utc::now().to_rfc3339();
        for d in &dead {
            metrics::counter!(metric::DEAD_LETTERS, "class" => d.class).increment(1);
            tracing::warn!(source = %location, offset = d.message.offset(), class = d.class,
                rule = %d.rule, error = %d.text, "dead letter");
            let headers = self.dead_letter_headers(d, topic, partition, &first_failure);
            let mut record = FutureRecord::to(&self.config.dead_letter_topic).headers(headers);
            if let Some(key) = d.message.key() {
                record = record.key(key);
            }
            if let Some(payload) = d.message.payload() {
                record = record.payload(payload);
            }
            deliveries.push((self.config.dead_letter_topic.clone(), self.enqueue(record)?));
        }
        for (topic, delivery) in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((source, _))) => return Err(Error::Publish { topic, source }),
                Err(_) => {
                    return Err(Error::Publish {
                        topic,
                        source: KafkaError::Canceled,
                    });
                }
            }
        }
        self.done.predictions_published += predictions.len() as u64;
        self.done.dead_letters += dead.len() as u64;

        let last = messages.last().map_or(0, Message::offset);
        let timestamps: Vec<i64> = valid_messages
            .iter()
            .filter_map(|m| m.timestamp().to_millis())
            .collect();
        let read = messages.len() as u64;
        let invalid = rejected.len() as u64;
        let classified = predictions.len() as u64;
        let unclassified_count = unclassified.len() as u64;
        let batch = Batch {
            lineage: Lineage {
                run_id: self.run_id.clone(),
                source: location.as_str().into(),
                processing_type: ProcessingType::Streaming,
            },
            batch_id: uuid::Uuid::new_v4(),
            transactions,
            positions,
            predictions,
            unclassified,
            rejected,
            checkpoint: Some(Checkpoint {
                group: self.config.group.clone(),
                topic: topic.to_owned(),
                partition,
                next_offset: last + 1,
            }),
        };
        let report = self
            .sink
            .write_batch(batch)
            .await
            .map_err(|source| Error::Sink {
                location: location.clone(),
                source,
            })?;
        let now_ms = Utc::now().timestamp_millis();
        for ts in timestamps {
            metrics::histogram!(metric::END_TO_END_SECONDS)
                .record((now_ms - ts).max(0) as f64 / 1000.0);
        }
        metrics::counter!(metric::WRITTEN).increment(report.transactions);
        let c = &mut self.done.counts;
        c.read += read;
        c.invalid += invalid;
        c.valid += read - invalid;
        c.classified += classified;
        c.unclassified += unclassified_count;
        c.written += report.transactions;
        c.predictions_written += report.predictions;

        // For lag monitoring only: the database holds the offsets that count.
        let mut tpl = TopicPartitionList::new();
        if tpl
            .add_partition_offset(topic, partition, Offset::Offset(last + 1))
            .is_ok()
            && let Err(e) = self.consumer.commit(&tpl, CommitMode::Async)
        {
            tracing::debug!(error = %e, "committing the offset to Kafka");
        }
        Ok(())
    }

    fn enqueue<'r>(&self, record: FutureRecord<'r, [u8], [u8]>) -> Result<DeliveryFuture>
    where
        Self: 'r,
    {
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
        let mut headers = OwnedHeaders::new();
        if let Some(original) = d.message.headers() {
            for h in original.iter() {
                headers = headers.insert(Header {
                    key: h.key,
                    value: h.value,
                });
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
            (dead_letter::ATTEMPTS, "1"),
            (dead_letter::FIRST_FAILURE, first_failure),
            (dead_letter::VERSION, &self.config.version),
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
