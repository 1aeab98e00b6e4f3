//! The poll thread: fetches records and hands them to the member over a
//! bounded channel. When the channel is full (the database or the
//! classifier is slow or down) the thread blocks on it and stops polling:
//! consumption pauses, nothing is dropped, and what librdkafka prefetches
//! meanwhile is bounded by `queued.max.messages.kbytes`.
//!
//! It does not call `rd_kafka_pause`: against the Tansu broker, partitions
//! paused and resumed received no more records.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use tokio::sync::mpsc::{self, error::TrySendError};
use txflow_core::resilience::RejoinPolicy;

use super::metric;
use super::rebalance::Context;
use crate::error::Error;
use crate::record::{Chunk, Record};

/// What the poll thread (and the rebalance callback, which runs on it) tells
/// the member.
#[derive(Debug)]
pub(crate) enum Event {
    /// Records in the order polled (at most [`CHUNK`]).
    Records(Vec<Record>),
    /// The member has read everything the broker has in a partition:
    /// what is buffered can be stored at once.
    CaughtUp,
    /// Partitions taken away; the member answers on the channel once no
    /// write of theirs is in progress.
    Revoked(Vec<i32>, std::sync::mpsc::SyncSender<()>),
    /// The member cannot go on (its stored offsets cannot be read).
    Fatal(Error),
    Stopped,
}

/// Detects a member that holds no partition while it should, and rejoins.
///
/// A group coordinator may hand a restarted member an empty assignment and
/// leave it there (Tansu 0.6 does, while the member it replaced is still in
/// the group: see docs/RELIABILITY.md). On any broker, a member given nothing
/// in a group that has no more members than the topic has partitions is
/// wrong: after the policy's `empty_grace`, the member leaves and rejoins its
/// group. A member idle because the group has more members than partitions
/// stays as it is.
///
/// It also watches the partitions it does not hold: one whose stored offset
/// has not moved for the policy's `stall_after` while the broker has records
/// beyond it belongs to nobody (Tansu 0.6 may leave the partitions of an evicted
/// member unassigned when a member misses the rebalance) or to a member that
/// is stuck; either way the member rejoins so that the group reassigns it.
pub(crate) struct Watchdog {
    pub topic: String,
    pub partitions: usize,
    policy: RejoinPolicy,
    checked_at: Instant,
    stalls_checked_at: Instant,
}

impl Watchdog {
    pub fn new(topic: String, partitions: usize, policy: RejoinPolicy) -> Watchdog {
        Watchdog {
            topic,
            partitions,
            policy,
            checked_at: Instant::now(),
            stalls_checked_at: Instant::now(),
        }
    }

    fn tick(&mut self, consumer: &BaseConsumer<Context>) {
        let now = Instant::now();
        if now.duration_since(self.stalls_checked_at) >= STALL_CHECK_EVERY {
            self.stalls_checked_at = now;
            if let Some(partition) = self.stalled_partition(consumer) {
                let why = format!(
                    "partition {partition} has records waiting and no member stored any for {:?}",
                    self.policy.stall_after
                );
                self.rejoin(consumer, &why);
                return;
            }
        }
        if now.duration_since(self.checked_at) < Duration::from_secs(1) {
            return;
        }
        self.checked_at = now;
        let context = consumer.context();
        let Some(since) = context.empty_since() else {
            return;
        };
        if !self.policy.empty_for_too_long(now.duration_since(since)) {
            return;
        }
        let group = &context.group;
        let members = match consumer.fetch_group_list(Some(group), Duration::from_secs(5)) {
            Ok(list) => list
                .groups()
                .iter()
                .find(|g| g.name() == group)
                .map_or(0, |g| g.members().len()),
            Err(e) => {
                tracing::warn!(%group, error = %e, "holding no partition; cannot describe the group");
                return;
            }
        };
        // Checked again only after another empty assignment.
        context.clear_empty();
        if !self.policy.rejoin_when_empty(members, self.partitions) {
            tracing::info!(%group, members, partitions = self.partitions,
                "holding no partition: the group has more members than the topic has partitions");
            return;
        }
        let why = format!(
            "holding no partition for {:?} while the group has {members} members for {} partitions",
            now.duration_since(since),
            self.partitions
        );
        self.rejoin(consumer, &why);
    }

    /// A partition this member does not hold that stands still while
    /// records wait in it (stored offsets from the database, the authority;
    /// high watermarks from the broker).
    fn stalled_partition(&mut self, consumer: &BaseConsumer<Context>) -> Option<i32> {
        let context = consumer.context();
        let mine: Vec<i32> = consumer
            .assignment()
            .map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect())
            .unwrap_or_default();
        if mine.len() >= self.partitions {
            self.policy.reset();
            return None;
        }
        let stored = match (context.load_offsets)(&self.topic, &[], Duration::from_secs(5)) {
            Ok(stored) => stored,
            Err(e) => {
                tracing::debug!(error = %e, "watching other partitions: cannot read the stored offsets");
                return None;
            }
        };
        for partition in 0..self.partitions as i32 {
            if mine.contains(&partition) {
                self.policy.forget(partition);
                continue;
            }
            let Ok((_, high)) =
                consumer.fetch_watermarks(&self.topic, partition, Duration::from_secs(5))
            else {
                continue;
            };
            let next = stored.get(&partition).copied().unwrap_or(0);
            if self.policy.stalled(partition, next, high, Instant::now()) {
                self.policy.reset();
                return Some(partition);
            }
        }
        None
    }

    fn rejoin(&self, consumer: &BaseConsumer<Context>, why: &str) {
        let group = &consumer.context().group;
        tracing::warn!(%group, why, "rejoining the group so that it reassigns the partitions");
        metrics::counter!(metric::REJOINS).increment(1);
        consumer.context().clear_empty();
        consumer.unsubscribe();
        if let Err(e) = consumer.subscribe(&[&self.topic]) {
            tracing::error!(%group, error = %e, "subscribing again");
        }
    }
}

/// How often the partitions held by others are looked at.
const STALL_CHECK_EVERY: Duration = Duration::from_secs(5);

/// The poll thread's body: [`poll_loop`], its panic (a bug) turned into a
/// fatal event so that the member stops instead of waiting for ever.
pub(crate) fn run(
    consumer: &BaseConsumer<Context>,
    events: &mpsc::Sender<Event>,
    stop: &AtomicBool,
    watchdog: Watchdog,
) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        poll_loop(consumer, events, stop, watchdog);
    }));
    if let Err(panic) = outcome {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_owned());
        let _ = events.blocking_send(Event::Fatal(Error::PollThread(what)));
    }
}

/// Records handed over at once, at most: one channel operation (and at
/// most one thread wake-up) per chunk rather than per record.
pub(crate) const CHUNK: usize = 256;

/// Polls and hands records over in chunks until `stop`, then sends
/// `Stopped`. A chunk goes as soon as it is full or nothing more is ready,
/// so batching costs no latency.
fn poll_loop(
    consumer: &BaseConsumer<Context>,
    events: &mpsc::Sender<Event>,
    stop: &AtomicBool,
    mut watchdog: Watchdog,
) {
    let mut chunk = Chunk::default();
    while !stop.load(Ordering::SeqCst) {
        if chunk.is_empty() {
            watchdog.tick(consumer);
        }
        // Wait for records only with nothing in hand.
        let timeout = if chunk.is_empty() {
            Duration::from_millis(100)
        } else {
            Duration::ZERO
        };
        let after = match consumer.poll(timeout) {
            Some(Ok(message)) => {
                let floor = consumer
                    .context()
                    .floors()
                    .get(&message.partition())
                    .copied();
                if floor.is_none_or(|floor| message.offset() >= floor) {
                    chunk.push(&message);
                }
                if chunk.len() < CHUNK {
                    continue;
                }
                None
            }
            Some(Err(KafkaError::PartitionEOF(_))) => Some(Event::CaughtUp),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "consumer error");
                None
            }
            None => None,
        };
        if !chunk.is_empty() && !send(events, Event::Records(chunk.take())) {
            return;
        }
        if let Some(event) = after
            && !send(events, event)
        {
            return;
        }
    }
    if !chunk.is_empty() && !send(events, Event::Records(chunk.take())) {
        return;
    }
    let _ = events.blocking_send(Event::Stopped);
}

/// Sends, blocking while the member is busy; false once it has gone.
fn send(events: &mpsc::Sender<Event>, event: Event) -> bool {
    match events.try_send(event) {
        Ok(()) => true,
        Err(TrySendError::Closed(_)) => false,
        Err(TrySendError::Full(event)) => {
            metrics::counter!(metric::PAUSES).increment(1);
            tracing::debug!("consumption paused: records wait for the pipeline");
            let sent = events.blocking_send(event).is_ok();
            tracing::debug!("consumption resumed");
            sent
        }
    }
}
