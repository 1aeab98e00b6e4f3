//! What every consumer group member here shares (`txflow consume`, `txflow
//! sink`): joining (the consumer, the topics checked, the poll thread with
//! its watchdog), running until shutdown with a bounded drain, and leaving.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use tokio::sync::mpsc;
use txflow_core::resilience::RejoinPolicy;

use super::poll::{self, Event, Watchdog};
use super::rebalance::Context;
use super::{check_topics, group_consumer};
use crate::client::Connection;
use crate::error::{Error, Result};

/// How a member joins its group.
#[derive(Debug)]
pub(crate) struct Joining<'a> {
    pub connection: &'a Connection,
    pub group: &'a str,
    pub member: &'a str,
    /// Its `group.instance.id`, for static membership.
    pub instance: Option<&'a str>,
    /// The topic it consumes.
    pub topic: &'a str,
    /// Topics it writes to, which must exist too.
    pub writes_to: &'a [&'a str],
    pub max_batch: usize,
    pub session_timeout: Duration,
    pub rejoin_after: Duration,
}

/// A member in its group: the consumer and the poll thread feeding it.
pub(crate) struct Membership {
    pub consumer: Arc<BaseConsumer<Context>>,
    group: String,
    stop: Arc<AtomicBool>,
    poller: std::thread::JoinHandle<()>,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl Joining<'_> {
    fn failed(&self, what: &'static str, e: impl ToString) -> Error {
        Error::Consumer {
            group: self.group.to_owned(),
            what,
            source: KafkaError::Subscription(e.to_string()),
        }
    }

    /// Makes the consumer (its context from `context`, given the channel the
    /// rebalances talk on), checks the topics, subscribes and starts the
    /// poll thread. Returns the membership and the member's inbox.
    pub async fn join(
        &self,
        context: impl FnOnce(mpsc::Sender<Event>) -> Result<Context>,
    ) -> Result<(Membership, mpsc::Receiver<Event>)> {
        // At most about `max_batch` records wait in the channel (the buffer
        // holds as many again): past that the poll thread blocks and stops
        // fetching.
        let capacity = self.max_batch.div_ceil(poll::CHUNK).max(1);
        let (events, inbox) = mpsc::channel(capacity);
        let consumer = Arc::new(group_consumer(
            self.connection,
            self.member,
            self.instance,
            self.session_timeout,
            context(events.clone())?,
        )?);
        let partitions = {
            let consumer = Arc::clone(&consumer);
            let connection = self.connection.clone();
            let topics: Vec<String> = std::iter::once(self.topic)
                .chain(self.writes_to.iter().copied())
                .map(str::to_owned)
                .collect();
            tokio::task::spawn_blocking(move || {
                let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
                check_topics(&consumer, &connection, &topics)
            })
            .await
            .map_err(|e| self.failed("checking the topics", e))??
        };
        consumer
            .subscribe(&[self.topic])
            .map_err(|source| Error::Consumer {
                group: self.group.to_owned(),
                what: "subscribing",
                source,
            })?;
        let stop = Arc::new(AtomicBool::new(false));
        let poller = {
            let (consumer, stop) = (Arc::clone(&consumer), Arc::clone(&stop));
            let policy = RejoinPolicy::new(
                self.rejoin_after,
                (self.session_timeout * 2).max(Duration::from_secs(10)),
            );
            let watchdog = Watchdog::new(self.topic.to_owned(), partitions, policy);
            std::thread::Builder::new()
                .name("txflow-poll".into())
                .spawn(move || poll::run(&consumer, &events, &stop, watchdog))
                .map_err(|e| self.failed("starting the poll thread", e))?
        };
        let membership = Membership {
            consumer,
            group: self.group.to_owned(),
            stop,
            poller,
        };
        Ok((membership, inbox))
    }
}

impl Membership {
    /// Runs `work` until it ends or `shutdown` resolves; then stops fetching
    /// and gives `work` `shutdown_timeout` to store what it buffered (what
    /// it cannot, the next member replays).
    pub async fn run_until(
        &self,
        work: impl Future<Output = Result<()>>,
        shutdown: impl Future<Output = ()>,
        shutdown_timeout: Duration,
    ) -> Result<()> {
        let mut work = std::pin::pin!(work);
        let mut shutdown = std::pin::pin!(shutdown);
        let group = &self.group;
        tokio::select! {
            outcome = &mut work => outcome,
            () = &mut shutdown => {
                tracing::info!(%group, "stopping: no more fetching, storing what is buffered");
                self.stop.store(true, Ordering::SeqCst);
                match tokio::time::timeout(shutdown_timeout, &mut work).await {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        tracing::warn!(%group, waited = ?shutdown_timeout,
                            "could not store what was buffered in time; the next member replays it");
                        Ok(())
                    }
                }
            }
        }
    }

    /// Stops the poll thread (unblocking it if it waits on a full channel),
    /// then leaves the group and closes the consumer, both off the runtime's
    /// threads (they block until the broker answers).
    pub async fn leave(self, mut inbox: mpsc::Receiver<Event>) {
        self.stop.store(true, Ordering::SeqCst);
        inbox.close();
        while inbox.try_recv().is_ok() {}
        let poller = self.poller;
        let _ = tokio::task::spawn_blocking(move || poller.join()).await;
        let consumer = self.consumer;
        let _ = tokio::task::spawn_blocking(move || {
            consumer.unsubscribe();
            drop(consumer);
        })
        .await;
    }
}
