//! `txflow sink URL`: one member of a sink's consumer group on the
//! predictions topic, writing to one store through a [`Connector`].
//!
//! Every sink has its own group (`txflow-sink-<kind>` by default), so its
//! offsets, lag and restart point are its own: a slow or broken store holds
//! back only its own member. The member reuses the stream member's poll
//! thread, rebalance handling and watchdog (`consume`), and:
//! - resumes each assigned partition where the connector says (offsets kept
//!   with the data), or at the group's committed offset for stores that
//!   cannot keep them (then writes are idempotent);
//! - buffers by `max_batch` and `max_wait`, flushing at once when caught up
//!   (the runtime every member shares, [`crate::member`]); the next flush
//!   gathers while the previous one is written (one write in flight; its
//!   partitions' records written side by side, one call each);
//! - while the store is unavailable it retries the same records with
//!   backoff and stops fetching (the poll channel fills): nothing is
//!   dead-lettered or lost;
//! - sends records the store refuses for their content, and values that are
//!   not predictions events, to the dead-letter topic (with the stream's
//!   headers), then commits the offset;
//! - finishes a write in progress before a revoked partition is released,
//!   so two members never write one partition at once.

pub mod metric;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::task::JoinSet;
use txflow_core::resilience::{OutagePolicy, RetryDecision, jitter};
use txflow_core::{Connector, ConnectorError, Refused, Resume, SinkRecord};

use crate::consume::partition::Traces;
use crate::consume::publish::{DeadLetter, Publisher};
use crate::consume::rebalance::{Context, OffsetLoader};
use crate::error::{Error, Result};
use crate::member::{self, MemberConfig, PartitionRecords};
use crate::prediction;
use crate::record::Record;

/// A failpoint for the crash tests: with `TXFLOW_FAILPOINT_SINK_ABORT_AFTER_WRITES=N`
/// the process aborts (as `kill -9` would stop it) right after the N-th
/// write the store acknowledged, before dead letters and the offset commit.
/// Unset, it costs one environment read at start.
pub const FAILPOINT_ABORT_AFTER_WRITES: &str = "TXFLOW_FAILPOINT_SINK_ABORT_AFTER_WRITES";

/// The member's producer (dead letters only), besides idempotence: it
/// waits for a broker that is away however long, so offsets move only once
/// the broker has the dead letters.
const PRODUCER_SETTINGS: &[(&str, &str)] = &[("message.timeout.ms", "0")];

/// A sink member's settings: its group membership, `topic` the
/// predictions topic.
pub type SinkConfig = MemberConfig;

/// What a sink member did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sunk {
    pub read: u64,
    pub written: u64,
    pub batches: u64,
    pub dead_letters: u64,
}

/// Runs one sink member until `shutdown` resolves; then stops fetching,
/// writes what it buffered (for `shutdown_timeout` at most) and leaves the
/// group. `up` says whether the store answers, for `/health`.
pub async fn run(
    config: &SinkConfig,
    connector: Arc<dyn Connector>,
    up: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()>,
) -> Result<Sunk> {
    config.connection.check_reachable().await?;
    let writes_to = [config.dead_letter_topic.as_str()];
    let joining = config.joining(&writes_to);
    let loader = offset_loader(config, Arc::clone(&connector))?;
    let (membership, mut inbox) = joining
        .join(|events| {
            let mut context =
                Context::new(config.group.clone(), loader, config.offsets_timeout, events);
            // A write in progress finishes before the partition goes to
            // another member (bounded: a member that is gone does not answer).
            context.revoke_wait = config.session_timeout.max(Duration::from_secs(10));
            Ok(context)
        })
        .await?;
    let producer = config.connection.idempotent_producer(PRODUCER_SETTINGS)?;
    tracing::info!(group = %config.group, topic = %config.topic, store = %connector.describe(),
        "sink started");
    let mut member = Member {
        config,
        connector: Arc::clone(&connector),
        consumer: &membership.consumer,
        publisher: Publisher {
            producer,
            connection: &config.connection,
            settings: PRODUCER_SETTINGS,
            predictions_topic: &config.topic,
            dead_letter_topic: &config.dead_letter_topic,
            version: &config.version,
            transactional_id: None,
        },
        up,
        done: Sunk::default(),
        abort_after: std::env::var(FAILPOINT_ABORT_AFTER_WRITES)
            .ok()
            .and_then(|n| n.parse().ok()),
        writing: None,
    };
    let outcome = membership
        .run_until(
            member::run(config.buffering(), &config.group, &mut inbox, &mut member),
            shutdown,
            config.shutdown_timeout,
        )
        .await;
    let done = member.done;
    membership.leave(inbox).await;
    outcome.map(|()| done)
}

/// Where each partition resumes: the connector's stored offsets, or the
/// group's committed ones (read through a consumer of the same group that
/// never joins it). Runs on the poll thread.
fn offset_loader(config: &SinkConfig, connector: Arc<dyn Connector>) -> Result<OffsetLoader> {
    let handle = tokio::runtime::Handle::current();
    let reader: BaseConsumer = config
        .connection
        .config(&[])
        .set("group.id", &config.group)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|source| Error::Client {
            brokers: config.connection.brokers.clone(),
            source,
        })?;
    Ok(Box::new(move |topic, assigned, within| {
        let resume = handle
            .block_on(async {
                tokio::time::timeout(within, connector.resume(topic, assigned)).await
            })
            .map_err(|_| format!("no answer from the store within {within:?}"))?
            .map_err(|e| e.to_string())?;
        match resume {
            Resume::Stored(next) => Ok(next),
            Resume::Committed => committed(&reader, topic, within),
        }
    }))
}

fn committed(
    reader: &BaseConsumer,
    topic: &str,
    within: Duration,
) -> std::result::Result<HashMap<i32, i64>, String> {
    let metadata = reader
        .fetch_metadata(Some(topic), within)
        .map_err(|e| format!("reading the partitions of {topic}: {e}"))?;
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            tpl.add_partition(topic, p.id());
        }
    }
    let committed = reader
        .committed_offsets(tpl, within)
        .map_err(|e| format!("reading the group's committed offsets: {e}"))?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(next) => Some((e.partition(), next)),
            _ => None,
        })
        .collect())
}

struct Member<'a> {
    config: &'a SinkConfig,
    connector: Arc<dyn Connector>,
    consumer: &'a BaseConsumer<Context>,
    publisher: Publisher<'a>,
    up: Arc<AtomicBool>,
    done: Sunk,
    /// See [`FAILPOINT_ABORT_AFTER_WRITES`].
    abort_after: Option<u64>,
    /// The flush being written, if any.
    writing: Option<Writing>,
}

/// One partition's records of a flush, decoded.
struct Prepared {
    topic: String,
    partition: i32,
    /// In offset order, no duplicates.
    messages: Vec<Record>,
    records: Vec<SinkRecord>,
    /// The index in `messages` of each of `records`.
    sources: Vec<usize>,
    /// Messages that are not predictions events: index and why.
    undecodable: Vec<(usize, String)>,
}

/// A partition's write the store acknowledged.
struct Written {
    prepared: Prepared,
    refused: Vec<Refused>,
    took: Duration,
}

/// A flush's writes, one task per partition (decoding, encoding and
/// writing side by side on the runtime's threads); dropped, it aborts them.
type Writing = Pin<Box<dyn Future<Output = Result<Vec<Written>>> + Send>>;

/// The sink member's flush: one flush in flight at a time (its partitions
/// written side by side), the next gathering meanwhile; a write in progress
/// finishes before its partitions go to another member, so two members
/// never write one partition at once.
impl member::Flush for Member<'_> {
    type Progress = Result<Vec<Written>>;

    async fn flush(&mut self, partitions: Vec<PartitionRecords>) -> Result<()> {
        self.writing = Some(self.start(partitions));
        Ok(())
    }

    fn busy(&self) -> bool {
        self.writing.is_some()
    }

    async fn progress(&mut self) -> Result<Self::Progress> {
        match self.writing.as_mut() {
            Some(writing) => {
                let written = writing.await;
                self.writing = None;
                Ok(written)
            }
            None => std::future::pending().await,
        }
    }

    async fn settled(&mut self, written: Self::Progress) -> Result<()> {
        self.finish_write(written?).await
    }

    async fn revoked(&mut self, _partitions: &[i32]) -> Result<()> {
        member::Flush::finish(self).await
    }

    async fn finish(&mut self) -> Result<()> {
        if let Some(writing) = self.writing.take() {
            self.finish_write(writing.await?).await?;
        }
        Ok(())
    }
}

impl Member<'_> {
    /// Starts a flush: each partition's records are decoded and written
    /// (waiting out the store) by a task of their own.
    fn start(&self, partitions: Vec<PartitionRecords>) -> Writing {
        let mut tasks = JoinSet::new();
        for (order, records) in partitions.into_iter().enumerate() {
            let PartitionRecords {
                topic,
                partition,
                messages,
            } = records;
            let (connector, up) = (Arc::clone(&self.connector), Arc::clone(&self.up));
            tasks.spawn(async move {
                let prepared = prepare(connector.kind(), topic, partition, messages);
                // With traces on, each traced event's span lasts until the
                // store has it.
                let traces = Traces::of("txflow.sink", &prepared.messages);
                let started = Instant::now();
                let refused = write_waiting(
                    &*connector,
                    &up,
                    &prepared.topic,
                    prepared.partition,
                    &prepared.records,
                )
                .await?;
                drop(traces);
                let took = started.elapsed();
                Ok::<_, Error>((
                    order,
                    Written {
                        prepared,
                        refused,
                        took,
                    },
                ))
            });
        }
        Box::pin(async move {
            let mut written = Vec::with_capacity(tasks.len());
            while let Some(joined) = tasks.join_next().await {
                let done = joined.map_err(|e| Error::WriteTask(e.to_string()))??;
                written.push(done);
            }
            written.sort_by_key(|(order, _)| *order);
            Ok(written.into_iter().map(|(_, w)| w).collect())
        })
    }

    /// After the store acknowledged a flush: each partition's refused and
    /// undecodable records go to the dead-letter topic, then its offset is
    /// committed.
    async fn finish_write(&mut self, written: Vec<Written>) -> Result<()> {
        let kind = self.connector.kind();
        for Written {
            prepared,
            refused,
            took,
        } in written
        {
            if self.abort_after.is_some_and(|n| self.done.batches + 1 >= n) {
                tracing::error!(
                    failpoint = FAILPOINT_ABORT_AFTER_WRITES,
                    "aborting after a write"
                );
                std::process::abort();
            }
            metrics::histogram!(metric::WRITE_SECONDS, "sink" => kind).record(took.as_secs_f64());
            let Prepared {
                topic,
                partition,
                messages,
                records,
                sources,
                undecodable,
            } = &prepared;
            let mut dead: Vec<DeadLetter<'_>> = undecodable
                .iter()
                .map(|(index, text)| DeadLetter {
                    message: &messages[*index],
                    class: "decode",
                    rule: "event_format".to_owned(),
                    text: text.clone(),
                })
                .collect();
            for r in &refused {
                if let Some(&index) = sources.get(r.index) {
                    metrics::counter!(metric::ERRORS, "sink" => kind, "class" => "refused")
                        .increment(1);
                    dead.push(DeadLetter {
                        message: &messages[index],
                        class: "sink",
                        rule: r.rule.clone(),
                        text: r.message.clone(),
                    });
                }
            }
            let written = (records.len() - refused.len()) as u64;
            metrics::counter!(metric::WRITTEN, "sink" => kind).increment(written);
            metrics::counter!(metric::BATCHES, "sink" => kind).increment(1);
            // The broker has the dead letters before the offset moves on.
            let location = format!("kafka://{topic}/{partition}");
            self.publisher
                .publish_dead(&dead, topic, *partition, &location)
                .await?;
            self.done.read += messages.len() as u64;
            self.done.written += written;
            self.done.batches += 1;
            self.done.dead_letters += dead.len() as u64;
            if let Some(last) = messages.last() {
                let mut tpl = TopicPartitionList::new();
                if tpl
                    .add_partition_offset(topic, *partition, Offset::Offset(last.offset() + 1))
                    .is_ok()
                    && let Err(e) = self.consumer.commit(&tpl, CommitMode::Async)
                {
                    tracing::warn!(group = %self.config.group, error = %e, "committing the offset");
                }
            }
        }
        Ok(())
    }
}

/// One partition's messages (in offset order, each once) decoded into
/// records; those that are not predictions events are set aside for the
/// dead-letter topic.
fn prepare(kind: &'static str, topic: String, partition: i32, messages: Vec<Record>) -> Prepared {
    let mut records = Vec::with_capacity(messages.len());
    let mut sources = Vec::with_capacity(messages.len());
    let mut undecodable = Vec::new();
    let mut bytes = 0;
    for (index, m) in messages.iter().enumerate() {
        let value = m.payload().unwrap_or_default();
        bytes += value.len() as u64;
        match prediction::decode(value) {
            Ok(event) => {
                records.push(SinkRecord {
                    partition,
                    offset: m.offset(),
                    event,
                });
                sources.push(index);
            }
            Err(e) => {
                metrics::counter!(metric::ERRORS, "sink" => kind, "class" => "decode").increment(1);
                undecodable.push((index, e.to_string()));
            }
        }
    }
    metrics::counter!(metric::READ, "sink" => kind).increment(messages.len() as u64);
    metrics::counter!(metric::BYTES, "sink" => kind).increment(bytes);
    Prepared {
        topic,
        partition,
        messages,
        records,
        sources,
        undecodable,
    }
}

/// Writes one partition's records, retrying while the store is unavailable
/// (for as long as it takes: meanwhile the member fetches nothing more).
async fn write_waiting(
    connector: &dyn Connector,
    up: &AtomicBool,
    topic: &str,
    partition: i32,
    records: &[SinkRecord],
) -> Result<Vec<Refused>> {
    let kind = connector.kind();
    let policy = OutagePolicy::waiting(Duration::MAX);
    let mut attempt = 0;
    let mut since: Option<Instant> = None;
    loop {
        match connector.write(topic, partition, records).await {
            Ok(refused) => {
                if let Some(since) = since {
                    tracing::info!(sink = kind, down_for = ?since.elapsed(), "the store is back");
                }
                set_up(connector, up, true);
                return Ok(refused);
            }
            Err(ConnectorError::Unavailable(e)) => {
                attempt += 1;
                let since = *since.get_or_insert_with(Instant::now);
                set_up(connector, up, false);
                metrics::counter!(metric::ERRORS, "sink" => kind, "class" => "unavailable")
                    .increment(1);
                if let RetryDecision::RetryAfter(delay) =
                    policy.after_failure(attempt, since.elapsed(), jitter())
                {
                    tracing::warn!(sink = kind, partition, error = %e, retry_in = ?delay,
                        attempt, "the store is unavailable; waiting");
                    tokio::time::sleep(delay).await;
                }
            }
            Err(ConnectorError::Fatal(source)) => {
                metrics::counter!(metric::ERRORS, "sink" => kind, "class" => "fatal").increment(1);
                return Err(Error::Sink {
                    location: format!("kafka://{topic}/{partition}"),
                    source,
                });
            }
        }
    }
}

/// Whether the store answers, for `/health` and the `up` gauge.
fn set_up(connector: &dyn Connector, up: &AtomicBool, answers: bool) {
    up.store(answers, Ordering::Relaxed);
    metrics::gauge!(metric::UP, "sink" => connector.kind()).set(if answers { 1.0 } else { 0.0 });
}
