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
use rdkafka::message::{Message, OwnedMessage};
use tokio::sync::mpsc::{self, error::TrySendError};

use super::metric;
use super::rebalance::Context;
use crate::error::Error;

/// What the poll thread (and the rebalance callback, which runs on it) tells
/// the member.
#[derive(Debug)]
pub(super) enum Event {
    Record(OwnedMessage),
    /// The member has read everything the broker has in a partition:
    /// what is buffered can be stored at once.
    CaughtUp,
    Revoked(Vec<i32>),
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
/// wrong: after `grace`, the member leaves and rejoins its group. A member
/// idle because the group has more members than partitions stays as it is.
pub(super) struct Watchdog {
    pub topic: String,
    pub partitions: usize,
    /// How long an empty assignment may last before the group is checked.
    pub grace: Duration,
    checked_at: Instant,
}

impl Watchdog {
    pub fn new(topic: String, partitions: usize, grace: Duration) -> Watchdog {
        Watchdog {
            topic,
            partitions,
            grace,
            checked_at: Instant::now(),
        }
    }

    fn tick(&mut self, consumer: &BaseConsumer<Context>) {
        let now = Instant::now();
        if now.duration_since(self.checked_at) < Duration::from_secs(1) {
            return;
        }
        self.checked_at = now;
        let context = consumer.context();
        let Some(since) = context.empty_since() else {
            return;
        };
        if now.duration_since(since) < self.grace {
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
        if members > self.partitions {
            tracing::info!(%group, members, partitions = self.partitions,
                "holding no partition: the group has more members than the topic has partitions");
            return;
        }
        tracing::warn!(%group, members, partitions = self.partitions, waited = ?now.duration_since(since),
            "holding no partition while the group has no more members than partitions; rejoining");
        metrics::counter!(metric::REJOINS).increment(1);
        consumer.unsubscribe();
        if let Err(e) = consumer.subscribe(&[&self.topic]) {
            tracing::error!(%group, error = %e, "subscribing again");
        }
    }
}

/// The poll thread's body: [`poll_loop`], its panic (a bug) turned into a
/// fatal event so that the member stops instead of waiting for ever.
pub(super) fn run(
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

/// Polls and hands records over until `stop`, then sends `Stopped`.
fn poll_loop(
    consumer: &BaseConsumer<Context>,
    events: &mpsc::Sender<Event>,
    stop: &AtomicBool,
    mut watchdog: Watchdog,
) {
    while !stop.load(Ordering::SeqCst) {
        watchdog.tick(consumer);
        let event = match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                let floor = consumer
                    .context()
                    .floors()
                    .get(&message.partition())
                    .copied();
                if floor.is_some_and(|floor| message.offset() < floor) {
                    continue;
                }
                Event::Record(message.detach())
            }
            Some(Err(KafkaError::PartitionEOF(_))) => Event::CaughtUp,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "consumer error");
                continue;
            }
            None => continue,
        };
        if !send(events, event) {
            return;
        }
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
