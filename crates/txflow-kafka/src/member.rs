//! The member runtime every consumer group member here runs (`txflow
//! consume`, `txflow sink`): it buffers what the poll thread hands over and
//! decides when a flush goes; a [`Flush`] strategy per kind of member says
//! what a flush does.
//!
//! - A flush is due when `max_batch` records wait, when the oldest has
//!   waited `max_wait`, or at once when the member has read all the broker
//!   has (light traffic is stored in milliseconds, heavy traffic in large
//!   batches).
//! - A flush hands the strategy each partition's records in offset order,
//!   without the repeats a replay after a rebalance may bring.
//! - While the strategy is busy (a write in flight that the next flush must
//!   not overtake) a due flush waits; once `max_batch` records wait too, the
//!   member stops reading its inbox, the poll channel fills and fetching
//!   stops.
//! - Revoked partitions: the strategy settles what it has in flight, then
//!   their buffered records are dropped (their new owner reads them again).
//! - Stopped: what is buffered is flushed and everything settled.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::KafkaError;
use tokio::sync::mpsc;

use crate::client::Connection;
use crate::consume::membership::Joining;
use crate::consume::poll::Event;
use crate::error::{Error, Result};
use crate::record::Record;

/// What every member is (`txflow consume`, `txflow sink`): where it reads,
/// its group and name, how it buffers, how it lives in its group.
#[derive(Debug, Clone)]
pub struct MemberConfig {
    pub connection: Connection,
    pub group: String,
    /// This member's name (run id `<group>/<name>`, client id
    /// `txflow-<name>`).
    pub name: String,
    /// Static membership (Kafka's `group.instance.id`): the broker keeps
    /// this member's partitions for it across a restart within the session
    /// timeout, without a rebalance. Each member its own, stable across
    /// restarts.
    pub instance: Option<String>,
    /// The topic it consumes.
    pub topic: String,
    /// Where records it cannot take go, with the stream's headers.
    pub dead_letter_topic: String,
    /// Records per flush at most.
    pub max_batch: usize,
    /// How long the first buffered record waits for a flush at most.
    pub max_wait: Duration,
    /// The version written in dead-letter headers.
    pub version: String,
    /// A member silent this long is taken out of the group by the broker.
    pub session_timeout: Duration,
    /// How long resume points may take to load on assignment before the
    /// member stops with an error.
    pub offsets_timeout: Duration,
    /// How long the member may hold no partition before it checks whether
    /// it should, and rejoins.
    pub rejoin_after: Duration,
    /// How long, once asked to stop, the member may take to store what it
    /// buffered.
    pub shutdown_timeout: Duration,
}

impl MemberConfig {
    pub(crate) fn buffering(&self) -> Buffering {
        Buffering {
            max_batch: self.max_batch,
            max_wait: self.max_wait,
        }
    }

    /// How it joins its group; `writes_to`: the topics it writes, which
    /// must exist too.
    pub(crate) fn joining<'a>(&'a self, writes_to: &'a [&'a str]) -> Joining<'a> {
        Joining {
            connection: &self.connection,
            group: &self.group,
            member: &self.name,
            instance: self.instance.as_deref(),
            topic: &self.topic,
            writes_to,
            max_batch: self.max_batch,
            session_timeout: self.session_timeout,
            rejoin_after: self.rejoin_after,
        }
    }
}

/// When a flush is due.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Buffering {
    /// Records per flush at most.
    pub max_batch: usize,
    /// How long the first buffered record waits for a flush at most.
    pub max_wait: Duration,
}

/// One partition's records of a flush: in offset order, each offset once.
#[derive(Debug)]
pub(crate) struct PartitionRecords {
    pub topic: String,
    pub partition: i32,
    pub messages: Vec<Record>,
}

/// What a flush does, for one kind of member.
pub(crate) trait Flush {
    /// What [`Flush::progress`] hands to [`Flush::settled`].
    type Progress;

    /// Records came in from the poll thread (before any is buffered).
    fn received(&mut self, _count: usize) {}

    /// Takes a flush; called only when the strategy is not
    /// [`Flush::busy`]. May wait (back-pressure) before it returns.
    fn flush(&mut self, partitions: Vec<PartitionRecords>) -> impl Future<Output = Result<()>>;

    /// Whether a flush must wait (something is in flight).
    fn busy(&self) -> bool;

    /// Resolves when work in flight completes (or fails); pending for ever
    /// when nothing is in flight. Cancel-safe: the runtime races it with its
    /// inbox and its deadline.
    fn progress(&mut self) -> impl Future<Output = Result<Self::Progress>>;

    /// After [`Flush::progress`] resolved: what follows a completed write
    /// (not raced, so it runs to its end).
    fn settled(&mut self, progress: Self::Progress) -> impl Future<Output = Result<()>>;

    /// Before partitions are given up: whatever must not overlap with
    /// their new owner's work.
    fn revoked(&mut self, partitions: &[i32]) -> impl Future<Output = Result<()>>;

    /// Once the member stops, after its last flush: everything in flight
    /// completed.
    fn finish(&mut self) -> impl Future<Output = Result<()>>;
}

/// Buffers and flushes until the poll thread stops (once the membership is
/// asked to stop) or something fails; returns once every flush settled.
pub(crate) async fn run<F: Flush>(
    buffering: Buffering,
    group: &str,
    inbox: &mut mpsc::Receiver<Event>,
    flusher: &mut F,
) -> Result<()> {
    let mut buffer: Vec<Record> = Vec::new();
    let mut deadline = tokio::time::Instant::now();
    let mut due = false;
    loop {
        if due && !flusher.busy() {
            due = false;
            if !buffer.is_empty() {
                flusher
                    .flush(by_partition(std::mem::take(&mut buffer)))
                    .await?;
            }
        }
        let full = buffer.len() >= buffering.max_batch;
        let event = tokio::select! {
            progress = flusher.progress() => {
                flusher.settled(progress?).await?;
                continue;
            }
            () = tokio::time::sleep_until(deadline), if !buffer.is_empty() && !due => {
                due = true;
                continue;
            }
            event = inbox.recv(), if !full => event,
        };
        match event {
            Some(Event::Records(records)) => {
                flusher.received(records.len());
                for message in records {
                    if buffer.is_empty() {
                        deadline = tokio::time::Instant::now() + buffering.max_wait;
                    }
                    buffer.push(message);
                    if buffer.len() >= buffering.max_batch {
                        if flusher.busy() {
                            due = true;
                        } else {
                            flusher
                                .flush(by_partition(std::mem::take(&mut buffer)))
                                .await?;
                        }
                    }
                }
            }
            Some(Event::CaughtUp) => due = true,
            Some(Event::Revoked(partitions, done)) => {
                flusher.revoked(&partitions).await?;
                buffer.retain(|m| !partitions.contains(&m.partition()));
                let _ = done.try_send(());
            }
            Some(Event::Fatal(e)) => return Err(e),
            Some(Event::Stopped) => {
                while flusher.busy() {
                    let progress = flusher.progress().await?;
                    flusher.settled(progress).await?;
                }
                if !buffer.is_empty() {
                    flusher
                        .flush(by_partition(std::mem::take(&mut buffer)))
                        .await?;
                }
                return flusher.finish().await;
            }
            None => {
                return Err(Error::Consumer {
                    group: group.to_owned(),
                    what: "the poll thread",
                    source: KafkaError::Canceled,
                });
            }
        }
    }
}

/// The buffer by partition (in topic and partition order), each in offset
/// order with every offset once.
fn by_partition(buffer: Vec<Record>) -> Vec<PartitionRecords> {
    let mut grouped: BTreeMap<(Arc<str>, i32), Vec<Record>> = BTreeMap::new();
    for m in buffer {
        grouped
            .entry((m.topic().clone(), m.partition()))
            .or_default()
            .push(m);
    }
    grouped
        .into_iter()
        .map(|((topic, partition), mut messages)| {
            // Stable: of two records at one offset, the first polled stays.
            messages.sort_by_key(Record::offset);
            messages.dedup_by_key(|m| m.offset());
            PartitionRecords {
                topic: topic.to_string(),
                partition,
                messages,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn record(partition: i32, offset: i64) -> Record {
        let payload = format!("{partition}/{offset}");
        Record::new(
            "transactions",
            partition,
            offset,
            None,
            Some(payload.as_bytes()),
            &[],
        )
    }

    /// What the strategy saw: each flush as (partition, offsets) lists.
    type Flushes = Arc<Mutex<Vec<Vec<(i32, Vec<i64>)>>>>;

    /// A strategy that keeps each flush in flight until the test lets it
    /// complete (`complete`), as the sink's one write in flight does, or
    /// completes each at once.
    struct Recording {
        flushes: Flushes,
        in_flight: bool,
        holds: bool,
        complete: mpsc::Receiver<()>,
        revoked: Arc<Mutex<Vec<Vec<i32>>>>,
        finished: Arc<Mutex<u32>>,
    }

    impl Flush for Recording {
        type Progress = ();

        async fn flush(&mut self, partitions: Vec<PartitionRecords>) -> Result<()> {
            let seen = partitions
                .iter()
                .map(|p| (p.partition, p.messages.iter().map(Record::offset).collect()))
                .collect();
            self.flushes.lock().expect("the flushes").push(seen);
            self.in_flight = self.holds;
            Ok(())
        }

        fn busy(&self) -> bool {
            self.in_flight
        }

        async fn progress(&mut self) -> Result<()> {
            if !self.in_flight {
                return std::future::pending().await;
            }
            self.complete.recv().await;
            Ok(())
        }

        async fn settled(&mut self, (): ()) -> Result<()> {
            self.in_flight = false;
            Ok(())
        }

        async fn revoked(&mut self, partitions: &[i32]) -> Result<()> {
            if self.in_flight {
                self.complete.recv().await;
                self.in_flight = false;
            }
            self.revoked
                .lock()
                .expect("the revocations")
                .push(partitions.to_vec());
            Ok(())
        }

        async fn finish(&mut self) -> Result<()> {
            if self.in_flight {
                self.complete.recv().await;
                self.in_flight = false;
            }
            *self.finished.lock().expect("the count") += 1;
            Ok(())
        }
    }

    struct Harness {
        inbox: mpsc::Sender<Event>,
        complete: mpsc::Sender<()>,
        flushes: Flushes,
        revoked: Arc<Mutex<Vec<Vec<i32>>>>,
        finished: Arc<Mutex<u32>>,
        member: tokio::task::JoinHandle<Result<()>>,
    }

    /// A member running `Recording` over an in-memory inbox (no broker).
    fn start(max_batch: usize, max_wait: Duration, holds: bool, inbox_capacity: usize) -> Harness {
        let (inbox, mut receiver) = mpsc::channel(inbox_capacity);
        let (complete, completions) = mpsc::channel(16);
        let flushes = Flushes::default();
        let revoked = Arc::new(Mutex::new(Vec::new()));
        let finished = Arc::new(Mutex::new(0));
        let mut flusher = Recording {
            flushes: Arc::clone(&flushes),
            in_flight: false,
            holds,
            complete: completions,
            revoked: Arc::clone(&revoked),
            finished: Arc::clone(&finished),
        };
        let buffering = Buffering {
            max_batch,
            max_wait,
        };
        let member =
            tokio::spawn(async move { run(buffering, "group", &mut receiver, &mut flusher).await });
        Harness {
            inbox,
            complete,
            flushes,
            revoked,
            finished,
            member,
        }
    }

    impl Harness {
        async fn send(&self, event: Event) {
            self.inbox.send(event).await.expect("the member reads");
        }

        fn flushes(&self) -> Vec<Vec<(i32, Vec<i64>)>> {
            self.flushes.lock().expect("the flushes").clone()
        }

        /// Lets the runtime's task run until it waits again.
        async fn settle(&self) {
            for _ in 0..20 {
                tokio::task::yield_now().await;
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_flushes_at_once_by_partition_in_offset_order_without_repeats() {
        let h = start(4, Duration::from_secs(60), false, 8);
        h.send(Event::Records(vec![
            record(1, 11),
            record(0, 5),
            record(1, 10),
        ]))
        .await;
        h.settle().await;
        assert!(h.flushes().is_empty(), "three of four records wait");
        // A replay repeats offset 10; the fourth record makes the batch.
        h.send(Event::Records(vec![record(1, 10)])).await;
        h.settle().await;
        assert_eq!(h.flushes(), [vec![(0, vec![5]), (1, vec![10, 11])]]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_oldest_record_waits_max_wait_at_most() {
        let h = start(100, Duration::from_millis(50), false, 8);
        h.send(Event::Records(vec![record(0, 1)])).await;
        h.settle().await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        h.send(Event::Records(vec![record(0, 2)])).await;
        h.settle().await;
        assert!(h.flushes().is_empty());
        tokio::time::sleep(Duration::from_millis(21)).await;
        h.settle().await;
        assert_eq!(h.flushes(), [vec![(0, vec![1, 2])]]);
    }

    #[tokio::test(start_paused = true)]
    async fn caught_up_flushes_at_once() {
        let h = start(100, Duration::from_secs(60), false, 8);
        h.send(Event::Records(vec![record(2, 7)])).await;
        h.send(Event::CaughtUp).await;
        h.settle().await;
        assert_eq!(h.flushes(), [vec![(2, vec![7])]]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_flush_in_flight_holds_the_next_and_a_full_buffer_stops_reading() {
        let h = start(2, Duration::from_secs(60), true, 1);
        h.send(Event::Records(vec![record(0, 1), record(0, 2)]))
            .await;
        h.settle().await;
        assert_eq!(h.flushes().len(), 1);
        // The next batch gathers and is due, but the first is in flight.
        h.send(Event::Records(vec![record(0, 3), record(0, 4)]))
            .await;
        h.settle().await;
        assert_eq!(h.flushes().len(), 1);
        // The buffer is full: the member reads no more, so the inbox (one
        // place) fills and a sender waits.
        h.send(Event::Records(vec![record(0, 5)])).await;
        h.settle().await;
        let blocked = h.inbox.try_send(Event::Records(vec![record(0, 6)]));
        assert!(blocked.is_err(), "the inbox should be full");
        h.complete.send(()).await.expect("a completion");
        h.settle().await;
        assert_eq!(h.flushes(), [vec![(0, vec![1, 2])], vec![(0, vec![3, 4])]]);
    }

    #[tokio::test(start_paused = true)]
    async fn revoked_partitions_settle_in_flight_work_then_their_records_are_dropped() {
        let h = start(3, Duration::from_secs(60), true, 8);
        h.send(Event::Records(vec![
            record(0, 1),
            record(1, 1),
            record(1, 0),
        ]))
        .await;
        h.send(Event::Records(vec![record(0, 2), record(1, 2)]))
            .await;
        h.settle().await;
        let (answer, answered) = std::sync::mpsc::sync_channel(1);
        h.send(Event::Revoked(vec![1], answer)).await;
        h.settle().await;
        assert!(
            answered.try_recv().is_err(),
            "no answer while a write is in flight"
        );
        h.complete.send(()).await.expect("a completion");
        h.settle().await;
        answered.try_recv().expect("answered once settled");
        assert_eq!(*h.revoked.lock().expect("the revocations"), [vec![1]]);
        h.send(Event::CaughtUp).await;
        h.settle().await;
        assert_eq!(
            h.flushes(),
            [vec![(0, vec![1]), (1, vec![0, 1])], vec![(0, vec![2])]]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stopped_flushes_what_is_buffered_and_settles_everything() {
        let h = start(100, Duration::from_secs(60), false, 8);
        h.send(Event::Records(vec![record(3, 9), record(3, 8)]))
            .await;
        h.send(Event::Stopped).await;
        let flushes = h.flushes.clone();
        h.member.await.expect("the task").expect("a clean stop");
        assert_eq!(
            *flushes.lock().expect("the flushes"),
            [vec![(3, vec![8, 9])]]
        );
        assert_eq!(*h.finished.lock().expect("the count"), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fatal_event_or_a_lost_poll_thread_ends_the_member_with_an_error() {
        let h = start(100, Duration::from_secs(60), false, 8);
        h.send(Event::Fatal(Error::WriteTask("boom".into()))).await;
        let error = h.member.await.expect("the task").expect_err("fatal");
        assert!(error.to_string().contains("boom"), "{error}");

        let h = start(100, Duration::from_secs(60), false, 8);
        drop(h.inbox);
        let error = h
            .member
            .await
            .expect("the task")
            .expect_err("no poll thread");
        assert!(error.to_string().contains("poll thread"), "{error}");
    }
}
