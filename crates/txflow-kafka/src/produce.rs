//! `txflow produce`: publishes transaction events, as the original system's
//! simulated producers did, or at a fixed rate for load tests.

use std::future::Future;
use std::time::Duration;

use futures::FutureExt;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use txflow_core::Transaction;

use crate::client::Connection;
use crate::error::{Error, Result};
use crate::event;

/// A producer of transaction events: idempotent, keyed by transaction id,
/// JSON values, `content-type` and `schema-version` headers.
pub struct EventProducer {
    /// Replaced when it fails for good (see [`EventProducer::renew`]).
    producer: std::sync::Mutex<FutureProducer>,
    connection: Connection,
    topic: String,
}

impl std::fmt::Debug for EventProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventProducer")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl EventProducer {
    pub fn new(connection: &Connection, topic: &str) -> Result<EventProducer> {
        Ok(EventProducer {
            producer: std::sync::Mutex::new(Self::create(connection)?),
            connection: connection.clone(),
            topic: topic.to_owned(),
        })
    }

    fn create(connection: &Connection) -> Result<FutureProducer> {
        connection.idempotent_producer(&[("linger.ms", "5")])
    }

    fn producer(&self) -> FutureProducer {
        self.producer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Makes a new producer: an idempotent producer's fatal error ends the
    /// old one, and librdkafka documents a new instance as the cure (seen
    /// with Tansu 0.6, which forgets producer sequences when it restarts;
    /// on Apache Kafka a producer state the broker expired does the same).
    pub fn renew(&self) -> Result<()> {
        let fresh = Self::create(&self.connection)?;
        *self
            .producer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        Ok(())
    }

    /// Queues one event; the future resolves when the broker has it.
    pub fn send(&self, tx: &Transaction) -> Result<DeliveryFuture> {
        let key = tx.id().to_string();
        let value = event::encode(tx);
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: "content-type",
                value: Some(event::CONTENT_TYPE),
            })
            .insert(Header {
                key: "schema-version",
                value: Some(event::SCHEMA_VERSION),
            });
        // With traces on, each event starts a trace that its consumers,
        // the classification service and the sinks continue.
        let span = txflow_trace::span("txflow.produce", "producer", None);
        let traceparent = txflow_trace::traceparent(&span);
        if let Some(value) = &traceparent {
            headers = headers.insert(Header {
                key: txflow_trace::HEADER,
                value: Some(value.as_str()),
            });
        }
        let record = || {
            FutureRecord::to(&self.topic)
                .key(&key)
                .payload(&value)
                .headers(headers.clone())
        };
        let sent = match self.producer().send_result(record()) {
            Err((e, _)) if ends_the_producer(&e) => {
                self.renew()?;
                self.producer().send_result(record())
            }
            sent => sent,
        };
        sent.map_err(|(source, _)| Error::Publish {
            topic: self.topic.clone(),
            source,
        })
    }

    /// Waits until every queued event is delivered (or `timeout` passes).
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        self.producer()
            .flush(Timeout::After(timeout))
            .map_err(|source| Error::Publish {
                topic: self.topic.clone(),
                source,
            })
    }
}

/// One simulated producer: every `interval`, between `min` and `max` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerSpec {
    pub min: u32,
    pub max: u32,
    pub interval: Duration,
}

impl ProducerSpec {
    /// The original system's two producers: 1–10 events every 0.5 s, and
    /// 5–20 every 1.0 s.
    pub const SEED_PROFILE: [ProducerSpec; 2] = [
        ProducerSpec {
            min: 1,
            max: 10,
            interval: Duration::from_millis(500),
        },
        ProducerSpec {
            min: 5,
            max: 20,
            interval: Duration::from_secs(1),
        },
    ];
}

/// How events are paced.
#[derive(Debug, Clone, PartialEq)]
pub enum Pace {
    /// Simulated producers, side by side.
    Profile(Vec<ProducerSpec>),
    /// A steady number of events per second.
    Rate(u32),
    /// As fast as the broker takes them.
    Flat,
}

/// What a production run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Produced {
    pub sent: u64,
    pub failed: u64,
}

/// Publishes events from `next` at `pace` until `count` are sent or
/// `shutdown` resolves, then flushes what is queued.
pub async fn run(
    producer: &EventProducer,
    next: &mut (dyn FnMut() -> Transaction + Send),
    pace: &Pace,
    count: Option<u64>,
    seed: u64,
    shutdown: impl Future<Output = ()>,
) -> Result<Produced> {
    let mut shutdown = std::pin::pin!(shutdown.fuse());
    let mut produced = Produced::default();
    let mut pending: Vec<(DeliveryFuture, Transaction)> = Vec::new();
    let mut rng = seed | 1;
    let start = tokio::time::Instant::now();
    // When each simulated producer sends next.
    let specs = match pace {
        Pace::Profile(specs) => specs.clone(),
        Pace::Rate(_) | Pace::Flat => Vec::new(),
    };
    let mut due: Vec<tokio::time::Instant> = specs.iter().map(|_| start).collect();
    loop {
        if count.is_some_and(|c| produced.sent >= c) {
            break;
        }
        let (wake, burst) = match pace {
            Pace::Profile(_) => {
                let (i, at) = due
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, at)| **at)
                    .map(|(i, at)| (i, *at))
                    .unwrap_or((0, start));
                let spec = specs[i];
                due[i] = at + spec.interval;
                let span = u64::from(spec.max.saturating_sub(spec.min)) + 1;
                (at, u64::from(spec.min) + next_random(&mut rng) % span)
            }
            Pace::Rate(per_second) => {
                let per_second = u64::from((*per_second).max(1));
                // Send in 10 ms slices to keep the rate smooth.
                let slice = (per_second / 100).max(1);
                let at = start + Duration::from_secs_f64(produced.sent as f64 / per_second as f64);
                (at, slice)
            }
            Pace::Flat => (tokio::time::Instant::now(), 1_000),
        };
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            () = &mut shutdown => break,
        }
        let burst = count.map_or(burst, |c| burst.min(c - produced.sent));
        for _ in 0..burst {
            let tx = next();
            pending.push((producer.send(&tx)?, tx));
            produced.sent += 1;
        }
        if pending.len() >= 10_000 {
            produced.failed += settle(producer, &mut pending).await?;
        }
    }
    produced.failed += settle(producer, &mut pending).await?;
    producer.flush(Duration::from_secs(30))?;
    produced.sent -= produced.failed;
    Ok(produced)
}

/// Awaits the queued deliveries; returns how many failed. Events lost to
/// the producer's fatal error are sent again with a new producer (nine
/// times at most, a pause growing by 200 ms each time).
async fn settle(
    producer: &EventProducer,
    pending: &mut Vec<(DeliveryFuture, Transaction)>,
) -> Result<u64> {
    let mut failed = 0;
    for round in 0..10 {
        let mut again = Vec::new();
        for (delivery, tx) in pending.drain(..) {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) if round < 9 && (ends_the_producer(&e) || purged(&e)) => {
                    again.push(tx);
                }
                Ok(Err((e, _))) => {
                    failed += 1;
                    tracing::warn!(error = %e, "an event was not delivered");
                }
                Err(_) => failed += 1,
            }
        }
        if again.is_empty() {
            break;
        }
        tracing::warn!(
            events = again.len(),
            "the producer failed for good; sending its events again with a new one"
        );
        tokio::time::sleep(Duration::from_millis(200 * (round + 1))).await;
        producer.renew()?;
        for tx in again {
            pending.push((producer.send(&tx)?, tx));
        }
    }
    Ok(failed)
}

/// Whether the error ends the producer instance: librdkafka's fatal error
/// or the delivery errors behind it (an idempotent producer whose sequence
/// the broker lost: Tansu 0.6 forgets them on restart and its S3 engine
/// sometimes desynchronises them without one; Apache Kafka when the
/// producer's state expired), or fencing (Tansu 0.6's S3 engine has handed
/// one producer id to two producers). A new producer is the cure
/// librdkafka documents for a fatal error.
pub(crate) fn ends_the_producer(e: &KafkaError) -> bool {
    matches!(
        e,
        KafkaError::MessageProduction(
            RDKafkaErrorCode::Fatal
                | RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::OutOfOrderSequenceNumber
                | RDKafkaErrorCode::UnknownProducerId
                | RDKafkaErrorCode::InvalidProducerEpoch
        )
    )
}

/// Whether the event was dropped from the queue of a producer that ended
/// (librdkafka purges what a fatal producer still held): it was never sent.
pub(crate) fn purged(e: &KafkaError) -> bool {
    matches!(
        e,
        KafkaError::MessageProduction(
            RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight
        )
    )
}

/// SplitMix64: the burst sizes of the simulated producers.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
