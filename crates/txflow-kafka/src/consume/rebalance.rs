//! Rebalances and offsets: the database is the only offset authority.
//!
//! When partitions are assigned, their stored next offsets are read from the
//! database (retried up to a bound, then the member stops with an error, so
//! an orchestrator restarts it: never a silent stall) and each partition is
//! fetched from there. Records before a partition's stored offset are
//! already stored; the poll thread drops them (see [`REWIND`]).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use txflow_core::resilience::{OutagePolicy, RetryDecision, jitter};

use super::metric;
use super::poll::Event;
use crate::error::Error;

/// Reads the stored offsets of a topic, waiting at most the given time. The
/// partitions are those this member has just been assigned (it may clean up
/// what an unfinished write left in them); none when it only looks.
pub(crate) type OffsetLoader = Box<
    dyn Fn(&str, &[i32], Duration) -> std::result::Result<HashMap<i32, i64>, String> + Send + Sync,
>;

/// How far before a stored offset a partition is fetched from on assignment.
///
/// Tansu 0.6 answers a fetch at an offset inside a record batch with the
/// batches *after* it, so records between the stored offset and the end of
/// its batch would never arrive. Fetching from further back (a librdkafka
/// producer puts at most 10,000 records in a batch) and dropping what lies
/// before the stored offset works on every broker; on Apache Kafka it only
/// costs a little re-reading.
const REWIND: i64 = 10_000;

/// The consumer's context: rebalances, statistics, and what the poll thread
/// needs to know about the assignment.
pub(crate) struct Context {
    pub group: String,
    pub load_offsets: OffsetLoader,
    /// How long stored offsets may take to load before the member gives up.
    pub offsets_timeout: Duration,
    /// How long a revocation waits for the member to finish a write in
    /// progress (zero: it does not wait). A store without transactions
    /// needs it, so that two members never write one partition at once.
    pub revoke_wait: Duration,
    pub events: mpsc::Sender<Event>,
    /// The stored offset of each assigned partition of the input topic:
    /// records before it are already in the database and are dropped.
    floors: Mutex<HashMap<i32, i64>>,
    /// Since when the group has given this member nothing (an explicit
    /// empty assignment), if it has.
    empty_since: Mutex<Option<Instant>>,
}

impl Context {
    pub fn new(
        group: String,
        load_offsets: OffsetLoader,
        offsets_timeout: Duration,
        events: mpsc::Sender<Event>,
    ) -> Context {
        Context {
            group,
            load_offsets,
            offsets_timeout,
            revoke_wait: Duration::ZERO,
            events,
            floors: Mutex::new(HashMap::new()),
            empty_since: Mutex::new(None),
        }
    }

    pub fn floors(&self) -> MutexGuard<'_, HashMap<i32, i64>> {
        self.floors.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Since when the group's last assignment gave this member nothing.
    pub fn empty_since(&self) -> Option<Instant> {
        *self.empty_since.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets an empty assignment (the member is rejoining).
    pub fn clear_empty(&self) {
        *self.empty_since.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Records the partitions assigned now; `None` while a rebalance is in
    /// progress (revoked, not yet assigned).
    fn set_assigned(&self, n: Option<usize>) {
        let mut empty = self.empty_since.lock().unwrap_or_else(|p| p.into_inner());
        *empty = match n {
            Some(0) => Some(empty.unwrap_or_else(Instant::now)),
            _ => None,
        };
        metrics::gauge!(metric::ASSIGNED).set(n.unwrap_or(0) as f64);
    }

    /// The stored offsets of `topic`, retried with backoff until
    /// `offsets_timeout` has passed.
    fn stored_offsets(
        &self,
        topic: &str,
        assigned: &[i32],
    ) -> std::result::Result<HashMap<i32, i64>, String> {
        let started = Instant::now();
        let policy = OutagePolicy {
            initial: Duration::from_millis(200),
            max_delay: Duration::from_secs(2),
            max_outage: self.offsets_timeout,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let remaining = self.offsets_timeout.saturating_sub(started.elapsed());
            let error = match (self.load_offsets)(topic, assigned, remaining) {
                Ok(stored) => return Ok(stored),
                Err(e) => e,
            };
            match policy.after_failure(attempt, started.elapsed(), jitter()) {
                RetryDecision::RetryAfter(delay) => {
                    tracing::warn!(group = %self.group, topic, error = %error, attempt,
                        retry_in = ?delay, "cannot read the stored offsets; retrying");
                    std::thread::sleep(delay);
                }
                RetryDecision::GiveUp => {
                    return Err(format!(
                        "{error} (tried {attempt} times over {:.1}s; see --offsets-timeout)",
                        started.elapsed().as_secs_f64()
                    ));
                }
            }
        }
    }

    /// Sends an event to the member. Rebalance callbacks run on the poll
    /// thread, where waiting for room is right, but also on whichever thread
    /// closes the consumer at the end (possibly the runtime's, which must not
    /// block): there the event is dropped when the member is not listening,
    /// as it is no longer.
    fn tell(&self, event: Event) {
        if tokio::runtime::Handle::try_current().is_ok() {
            let _ = self.events.try_send(event);
        } else {
            let _ = self.events.blocking_send(event);
        }
    }

    fn assign(&self, consumer: &BaseConsumer<Context>, tpl: &mut TopicPartitionList) {
        let mut topics: Vec<String> = tpl
            .elements()
            .iter()
            .map(|e| e.topic().to_owned())
            .collect();
        topics.dedup();
        for topic in topics {
            let assigned: Vec<i32> = tpl
                .elements_for_topic(&topic)
                .iter()
                .map(|e| e.partition())
                .collect();
            let stored = match self.stored_offsets(&topic, &assigned) {
                Ok(stored) => stored,
                Err(source) => {
                    // Without the stored offsets the member must not read: it
                    // could replay or skip. It takes nothing and stops.
                    tracing::error!(group = %self.group, topic, error = %source,
                        "cannot read the stored offsets; stopping");
                    let _ = consumer.assign(&TopicPartitionList::new());
                    self.set_assigned(None);
                    self.tell(Event::Fatal(Error::Offsets {
                        group: self.group.clone(),
                        source: source.into(),
                    }));
                    return;
                }
            };
            let mut floors = self.floors();
            for partition in assigned {
                // A partition the database has no offset for starts at the
                // beginning, whatever Kafka's committed offsets say.
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
        match consumer.assign(tpl) {
            Ok(()) => self.set_assigned(Some(tpl.count())),
            Err(e) => tracing::error!(group = %self.group, error = %e, "assigning partitions"),
        }
    }
}

impl ClientContext for Context {
    fn error(&self, error: KafkaError, reason: &str) {
        // The end of a partition is the signal to flush, not an error.
        if !matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        ) {
            tracing::error!(group = %self.group, error = %error, reason, "librdkafka error");
        }
    }

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
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let revoked: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                self.floors()
                    .retain(|partition, _| !revoked.contains(partition));
                tracing::info!(group = %self.group, ?revoked, "partitions revoked");
                let (done, written) = std::sync::mpsc::sync_channel(1);
                self.tell(Event::Revoked(revoked, done));
                // Disconnected: the member has stopped, nothing is in progress.
                if !self.revoke_wait.is_zero()
                    && let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                        written.recv_timeout(self.revoke_wait)
                {
                    tracing::warn!(group = %self.group, waited = ?self.revoke_wait,
                        "a write of a revoked partition did not finish in time");
                }
                if let Err(e) = consumer.unassign() {
                    tracing::error!(group = %self.group, error = %e, "unassigning partitions");
                }
                self.set_assigned(None);
            }
            other => {
                tracing::error!(group = %self.group, error = ?other, "rebalance failed");
                let _ = consumer.unassign();
                self.set_assigned(None);
            }
        }
    }
}
