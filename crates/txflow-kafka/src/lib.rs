//! txflow on the Kafka API (Apache Kafka, Redpanda, Tansu), over rdkafka.
//!
//! - [`client`]: the brokers and the operator's librdkafka settings
//!   (`--kafka-option`), checked, values never printed.
//! - [`event`]: the transaction event as it travels on the `transactions`
//!   topic (JSON), decoded into the core's raw record so that events are
//!   validated by exactly the rules the batch pipeline uses.
//! - [`prediction`]: the predictions event (JSON, `schemas/prediction-event.v1.json`),
//!   written by `consume` and `batch --publish`, read by the sinks.
//! - [`publishing`]: `txflow batch --publish`, a sink that publishes each
//!   batch's predictions before the database stores it.
//! - [`sink`]: a sink connector's consumer group member on the predictions
//!   topic (`txflow sink URL`).
//! - [`topics`]: creating the pipeline's topics (`txflow topics create`).
//! - [`produce`]: the event producer and the simulated producers
//!   (`txflow produce`).
//! - [`member`]: what every group member shares: its settings
//!   ([`member::MemberConfig`]) and the runtime that buffers and flushes.
//! - [`consume`]: a consumer group member, exactly once into the database
//!   (`txflow consume`).
//! - [`dlq`]: the dead-letter topic read and replayed (`txflow dlq`).

pub mod client;
pub mod consume;
pub mod dlq;
pub mod error;
pub mod event;
pub mod member;
pub mod prediction;
pub mod produce;
pub mod publishing;
mod record;
pub mod sink;
pub mod topics;

pub use client::{Connection, Setting};
pub use error::{Error, Result};
