//! `txflow consume`: one member of a consumer group, exactly once into the
//! database.
//!
//! The member is a chain of stages:
//! - [`poll`]: a dedicated thread polls Kafka and hands records over a
//!   bounded channel; when the member is busy (a slow or unreachable
//!   database, an open circuit) the channel fills and polling stops.
//! - [`rebalance`]: on assignment, each partition is fetched from the next
//!   offset stored in the database with its rows (the only offset
//!   authority); a member that holds nothing while it should rejoins.
//! - [`crate::member`]: the runtime every member shares buffers records and
//!   flushes when `max_batch` records wait, when the oldest has waited
//!   `max_wait`, or at once when the member has read all the broker has;
//!   this module's flush strategy stages each partition's records:
//! - [`partition`]: per partition, records are decoded, validated and
//!   classified.
//! - [`publish`]: predictions and dead letters are published and
//!   acknowledged by the broker.
//! - then each writing lane writes its partitions' rows and next offsets
//!   in one database transaction (the sink waits out a database outage).
//!
//! A crash at any point replays only what the database does not have, and
//! the upserts keep a replay from writing a row twice. Offsets are also
//! committed to Kafka, for lag monitoring only.

pub(crate) mod membership;
pub mod metric;
pub(crate) mod partition;
pub(crate) mod poll;
pub(crate) mod publish;
pub(crate) mod rebalance;
mod write;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::sync::mpsc;
use txflow_core::review::{self, ReviewBelow};
use txflow_core::{
    Batch, Checkpoint, Classifier, Counts, Lineage, OffsetStore, ProcessingType, RunId, Sink,
};

pub use self::publish::dead_letter;

use self::partition::Traces;
use self::poll::Event;
use self::publish::{DeadLetter, Part, Publisher};
use self::rebalance::Context;
use self::write::{Staged, Writer};
use crate::client::Connection;
use crate::error::{Error, Result};
use crate::member::{self, MemberConfig, PartitionRecords};
use crate::record::Record;

/// The member's producer, besides idempotence: it waits for a broker that
/// is away however long (`message.timeout.ms` 0), so offsets move only once
/// the broker has what was published. Predictions are compressed (lz4):
/// the broker then writes and replicates a fraction of the bytes, which
/// took its CPU from 12.5 to 4.2 CPU-s for a 1M-record drain here
/// (docs/PERFORMANCE.md); `--kafka-option compression.type=none` undoes it.
const PRODUCER_SETTINGS: &[(&str, &str)] = &[
    ("message.timeout.ms", "0"),
    ("linger.ms", "2"),
    ("message.max.bytes", "4000000"),
    ("compression.type", "lz4"),
];

/// A failpoint for the crash tests of `--transactions`: with
/// `TXFLOW_FAILPOINT_CONSUME_ABORT=published:N` the process aborts (as
/// `kill -9` would stop it) once the N-th flush is published in its open
/// transaction, before the database has it; with `stored:N`, once the
/// database committed it, before the Kafka commit. Unset, it costs one
/// environment read at start.
pub const FAILPOINT_ABORT: &str = "TXFLOW_FAILPOINT_CONSUME_ABORT";

/// Where [`FAILPOINT_ABORT`] stops the member, and after how many flushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AbortAt {
    Published(u64),
    Stored(u64),
}

impl AbortAt {
    fn from_env() -> Option<AbortAt> {
        let value = std::env::var(FAILPOINT_ABORT).ok()?;
        let (at, n) = value.split_once(':')?;
        let n = n.parse().ok()?;
        match at {
            "published" => Some(AbortAt::Published(n)),
            "stored" => Some(AbortAt::Stored(n)),
            _ => None,
        }
    }

    /// Aborts the process if this is the place and the flush.
    fn check(this: Option<AbortAt>, here: AbortAt) {
        if this == Some(here) {
            tracing::error!(failpoint = FAILPOINT_ABORT, at = ?here, "aborting");
            std::process::abort();
        }
    }
}

/// The transactional producer's: a delivery cannot outlive its transaction
/// (`transaction.timeout.ms`, 60 s by default, settable with
/// `--kafka-option`), so a broker away longer aborts the flush's
/// transaction and publishes it again.
const TRANSACTIONAL_SETTINGS: &[(&str, &str)] = &[
    ("linger.ms", "2"),
    ("message.max.bytes", "4000000"),
    ("compression.type", "lz4"),
];

/// A stream member's settings.
#[derive(Debug, Clone)]
pub struct ConsumeConfig {
    /// Its group membership; `member.topic` is the transactions topic.
    pub member: MemberConfig,
    pub predictions_topic: String,
    /// Database writes in flight at once, each for its own partitions (give
    /// the sink as many connections).
    pub writers: usize,
    /// Predictions under this confidence are also queued for review, in the
    /// same database transaction as the rows and the offsets.
    pub review_below: Option<ReviewBelow>,
    /// Publish each flush's predictions and dead letters in a Kafka
    /// transaction, committed once the database has the rows (see
    /// [`Member::publish_and_store`]).
    pub transactions: bool,
}

impl ConsumeConfig {
    /// The member's `transactional.id`: the group and the member's stable
    /// name (`--member-id`, else `--member`), so a restarted member fences
    /// its predecessor and aborts what it left open at once.
    pub fn transactional_id(&self) -> String {
        let m = &self.member;
        format!(
            "txflow-{}-{}",
            m.group,
            m.instance.as_deref().unwrap_or(&m.name)
        )
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
/// what it buffered (for `shutdown_timeout` at most: what it cannot store in
/// that time, with the database away, say, the next member replays) and
/// leaves the group.
pub async fn run<C, S>(
    config: &ConsumeConfig,
    classifier: &C,
    sink: Arc<S>,
    shutdown: impl Future<Output = ()>,
) -> Result<Consumed>
where
    C: Classifier,
    S: Sink + OffsetStore + ?Sized + 'static,
{
    let m = &config.member;
    m.connection.check_reachable().await?;
    let writes_to = [config.predictions_topic.as_str(), &m.dead_letter_topic];
    let joining = m.joining(&writes_to);
    let (membership, mut inbox) = joining
        .join(|events| Ok(context(config, Arc::clone(&sink), events)))
        .await?;
    let transactional_id = config.transactions.then(|| config.transactional_id());
    let settings = if config.transactions {
        TRANSACTIONAL_SETTINGS
    } else {
        PRODUCER_SETTINGS
    };
    let producer = publish::producer(&m.connection, settings, transactional_id.as_deref()).await?;
    let writer = Writer::start(&sink, &membership.consumer, &m.group, config.writers);
    let mut member = Member {
        config,
        classifier,
        publisher: Publisher {
            producer,
            connection: &m.connection,
            settings,
            predictions_topic: &config.predictions_topic,
            dead_letter_topic: &m.dead_letter_topic,
            version: &m.version,
            transactional_id,
        },
        writer,
        offsets: Arc::clone(&sink),
        flushes: 0,
        abort_at: AbortAt::from_env(),
        run_id: RunId::parse(&format!("{}/{}", m.group, m.name))
            .unwrap_or_else(|_| RunId::generate()),
        published: Consumed::default(),
    };
    let outcome = membership
        .run_until(
            member::run(m.buffering(), &m.group, &mut inbox, &mut member),
            shutdown,
            m.shutdown_timeout,
        )
        .await;
    let mut done = member.writer.done();
    done.dead_letters = member.published.dead_letters;
    done.predictions_published = member.published.predictions_published;
    drop(member);
    membership.leave(inbox).await;
    outcome.map(|()| done)
}

/// The member's consumer context, its rebalances reading offsets from `sink`.
fn context<S>(config: &ConsumeConfig, sink: Arc<S>, events: mpsc::Sender<Event>) -> Context
where
    S: OffsetStore + ?Sized + 'static,
{
    let handle = tokio::runtime::Handle::current();
    let group = config.member.group.clone();
    // Runs on the poll thread (in the rebalance callback), never on the
    // runtime's own threads.
    let load_offsets: rebalance::OffsetLoader = Box::new(move |topic, _assigned, within| {
        let stored = handle
            .block_on(async {
                tokio::time::timeout(within, sink.stored_offsets(&group, topic)).await
            })
            .map_err(|_| format!("no answer from the database within {within:?}"))?
            .map_err(|e| e.to_string())?;
        Ok(stored.into_iter().collect())
    });
    Context::new(
        config.member.group.clone(),
        load_offsets,
        config.member.offsets_timeout,
        events,
    )
}

/// A consumer group member's Kafka consumer: offsets never committed by
/// librdkafka itself, the end of a partition reported (the signal to flush);
/// a static member when `instance` is given.
pub(crate) fn group_consumer(
    connection: &Connection,
    member: &str,
    instance: Option<&str>,
    session_timeout: Duration,
    context: Context,
) -> Result<BaseConsumer<Context>> {
    let client_id = format!("txflow-{member}");
    let session_timeout = session_timeout.as_millis().to_string();
    let group = context.group.clone();
    let mut settings = connection.config(&[
        ("client.id", &client_id),
        ("auto.offset.reset", "earliest"),
        ("statistics.interval.ms", "5000"),
        ("session.timeout.ms", &session_timeout),
        // While the pipeline is stalled (an open circuit, the database away)
        // the member stops polling; past this it leaves the group, and
        // rejoins at its stored offsets once it polls again.
        ("max.poll.interval.ms", "600000"),
        ("queued.max.messages.kbytes", "16384"),
        // Once that queue is full (the member is busy), librdkafka waits
        // this long before it fetches again; its default (1 s) left the
        // member idle for most of a second after every pause.
        ("fetch.queue.backoff.ms", "10"),
        // How long a broker may hold a fetch when there is nothing to read.
        // Tansu 0.6 holds every fetch this long, records or not, so it is
        // also the floor of each record's latency there.
        ("fetch.wait.max.ms", "20"),
    ]);
    // Set last: the operator may not change these (see `client`).
    settings
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // Reaching the end of a partition is the signal to flush at once.
        .set("enable.partition.eof", "true");
    if let Some(instance) = instance {
        settings.set("group.instance.id", instance);
    }
    settings
        .create_with_context(context)
        .map_err(|source| Error::Client {
            brokers: connection.brokers.clone(),
            source,
        })
}

/// Refuses to start when a topic is missing (records would only wait for
/// ever); returns the first topic's partition count. Blocking: call it off
/// the runtime's threads.
pub(crate) fn check_topics(
    consumer: &BaseConsumer<Context>,
    connection: &Connection,
    topics: &[&str],
) -> Result<usize> {
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(|source| Error::Client {
            brokers: connection.brokers.clone(),
            source,
        })?;
    let partitions = |name: &str| {
        metadata
            .topics()
            .iter()
            .find(|t| t.name() == name)
            .map_or(0, |t| t.partitions().len())
    };
    for topic in topics {
        if partitions(topic) == 0 {
            return Err(Error::MissingTopic {
                topic: (*topic).to_owned(),
            });
        }
    }
    Ok(topics.first().map_or(0, |t| partitions(t)))
}

struct Member<'a, C, S: ?Sized> {
    config: &'a ConsumeConfig,
    classifier: &'a C,
    publisher: Publisher<'a>,
    writer: Writer,
    /// Where the marks of unpublished predictions are cleared.
    offsets: Arc<S>,
    /// Flushes published in transactions, and [`FAILPOINT_ABORT`].
    flushes: u64,
    abort_at: Option<AbortAt>,
    run_id: RunId,
    /// Dead letters and predictions published (the writer counts the rest).
    published: Consumed,
}

/// The stream member's flush: each partition's records prepared and
/// published, then queued for the writer's lanes (which wait while a
/// partition's previous batch waits: the back-pressure). Nothing to settle
/// on revocation: the offsets stored with the rows are the only authority,
/// so the new owner replays only what is not stored.
impl<C: Classifier, S: OffsetStore + ?Sized> member::Flush for Member<'_, C, S> {
    type Progress = std::convert::Infallible;

    fn received(&mut self, count: usize) {
        metrics::counter!(metric::CONSUMED).increment(count as u64);
    }

    async fn flush(&mut self, partitions: Vec<PartitionRecords>) -> Result<()> {
        let started = Instant::now();
        let records: usize = partitions.iter().map(|p| p.messages.len()).sum();
        metrics::histogram!(metric::BATCH_SIZE).record(records as f64);
        self.publish_and_store(&partitions).await?;
        metrics::histogram!(metric::FLUSH_SECONDS).record(started.elapsed().as_secs_f64());
        Ok(())
    }

    fn busy(&self) -> bool {
        false
    }

    async fn progress(&mut self) -> Result<Self::Progress> {
        Err(self.writer.failure().await)
    }

    async fn settled(&mut self, progress: Self::Progress) -> Result<()> {
        match progress {}
    }

    async fn revoked(&mut self, _partitions: &[i32]) -> Result<()> {
        Ok(())
    }

    async fn finish(&mut self) -> Result<()> {
        self.writer.finish().await
    }
}

impl<C: Classifier, S: OffsetStore + ?Sized> Member<'_, C, S> {
    /// A flush: every partition prepared, then published together (one
    /// wait for the broker's acknowledgements), then handed to the writing
    /// lanes (each writes its partitions of the flush in one database
    /// transaction). The broker has the predictions and the dead letters before the
    /// database has the offsets: a crash in between replays, never loses.
    ///
    /// With `--transactions` the flush is one Kafka transaction, left open
    /// by the publish; each batch is marked unpublished from its first
    /// offset, and [`Member::commit_flush`] waits for the writes, commits
    /// and clears the marks. A member killed before the commit leaves an
    /// open transaction, which the next producer of the same id aborts (or
    /// the coordinator, after `transaction.timeout.ms`): `read_committed`
    /// readers never see a prediction whose rows were not stored. Killed
    /// after the database commit and before Kafka's, the mark makes the
    /// next member resume at the batch and publish it again. Flushes do not
    /// overlap then (one open transaction per producer): the drain is
    /// slower than without.
    async fn publish_and_store(&mut self, partitions: &[PartitionRecords]) -> Result<()> {
        let transactions = self.config.transactions;
        let mut prepared = Vec::with_capacity(partitions.len());
        for p in partitions {
            prepared.push(self.prepare(&p.topic, p.partition, &p.messages).await?);
        }
        let parts = parts(&prepared, partitions);
        let started = Instant::now();
        if transactions {
            self.publisher.publish_in_transaction(&parts).await?;
        } else {
            self.publisher.publish_all(&parts).await?;
        }
        stage_done("publish", started);
        drop(parts);
        if transactions {
            self.flushes += 1;
            AbortAt::check(self.abort_at, AbortAt::Published(self.flushes));
        }
        let mut flush = Vec::with_capacity(prepared.len());
        for ((mut staged, dead, _), p) in prepared.into_iter().zip(partitions) {
            self.published.predictions_published += staged.batch.predictions.len() as u64;
            self.published.dead_letters += dead.len() as u64;
            if transactions && let Some(c) = &mut staged.batch.checkpoint {
                c.unpublished_from = p.messages.first().map(Record::offset);
            }
            flush.push((p.partition, staged));
        }
        self.writer.send(flush).await?;
        if transactions {
            self.commit_flush(partitions).await?;
        }
        Ok(())
    }

    /// The open transaction's end: once the database has every batch of
    /// the flush, the Kafka transaction committed and the marks cleared
    /// (one small database transaction; a crash in between publishes the
    /// flush again, at least once as without transactions).
    async fn commit_flush(&mut self, partitions: &[PartitionRecords]) -> Result<()> {
        self.writer.written().await?;
        AbortAt::check(self.abort_at, AbortAt::Stored(self.flushes));
        let started = Instant::now();
        self.publisher.commit().await?;
        let m = &self.config.member;
        let flushed: Vec<i32> = partitions.iter().map(|p| p.partition).collect();
        self.offsets
            .published(&m.group, &m.topic, &flushed)
            .await
            .map_err(|source| Error::Offsets {
                group: m.group.clone(),
                source,
            })?;
        stage_done("commit", started);
        Ok(())
    }

    /// One partition's records decoded, validated and classified into the
    /// batch to store, with its dead letters and traces.
    async fn prepare<'m>(
        &mut self,
        topic: &str,
        partition: i32,
        messages: &'m [Record],
    ) -> Result<(Staged, Vec<DeadLetter<'m>>, Traces)> {
        let location = format!("kafka://{topic}/{partition}");
        let started = Instant::now();
        let prepared = partition::prepare(self.classifier, &location, messages).await?;
        stage_done("prepare", started);
        let last = messages.last().map_or(0, Record::offset);
        let read = messages.len() as u64;
        let mut done = Consumed::default();
        let c = &mut done.counts;
        c.read = read;
        c.invalid = prepared.rejected.len() as u64;
        c.valid = read - c.invalid;
        c.classified = prepared.predictions.len() as u64;
        c.unclassified = prepared.unclassified.len() as u64;
        let mut batch = Batch {
            lineage: Lineage {
                run_id: self.run_id.clone(),
                source: location.as_str().into(),
                processing_type: ProcessingType::Streaming,
            },
            batch_id: uuid::Uuid::new_v4(),
            transactions: prepared.transactions,
            positions: prepared.positions,
            predictions: prepared.predictions,
            unclassified: prepared.unclassified,
            rejected: prepared.rejected,
            reviews: Vec::new(),
            checkpoint: Some(Checkpoint {
                group: self.config.member.group.clone(),
                topic: topic.to_owned(),
                partition,
                next_offset: last + 1,
                unpublished_from: None,
            }),
            run_tally: false,
        };
        batch.reviews = review::route(self.classifier, self.config.review_below, &batch);
        let staged = Staged {
            location,
            batch,
            timestamps: prepared.timestamps,
            done,
        };
        Ok((staged, prepared.dead, prepared.traces))
    }
}

/// The records a flush publishes, partition by partition.
fn parts<'p, 'm>(
    prepared: &'p [(Staged, Vec<DeadLetter<'m>>, Traces)],
    partitions: &'p [PartitionRecords],
) -> Vec<Part<'p, 'm>> {
    prepared
        .iter()
        .zip(partitions)
        .map(|((staged, dead, traces), p)| Part {
            batch: &staged.batch,
            dead,
            traces,
            topic: &p.topic,
            partition: p.partition,
        })
        .collect()
}

/// Records how long a stage of a flush took; returns when the next began.
pub(super) fn stage_done(stage: &'static str, started: Instant) -> Instant {
    let now = Instant::now();
    metrics::histogram!(metric::STAGE_SECONDS, "stage" => stage)
        .record(now.duration_since(started).as_secs_f64());
    now
}
