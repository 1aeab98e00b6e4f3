//! Errors of the Kafka adapter.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "connecting to the Kafka brokers {brokers}: {source}; check --brokers (host:port), and that \
         security.protocol and its TLS/SASL settings (--kafka-option) match the brokers' listener"
    )]
    Client {
        brokers: String,
        #[source]
        source: KafkaError,
    },
    #[error(
        "connecting to the Kafka brokers {brokers}: {source}{said}; check --brokers (host:port), \
         and that security.protocol and its TLS/SASL settings (--kafka-option) match the brokers' listener"
    )]
    Unreachable {
        brokers: String,
        #[source]
        source: Box<KafkaError>,
        /// librdkafka's last error, e.g. why a TLS handshake failed.
        said: String,
    },
    #[error("dead letter {letter}: {reason}")]
    Letter { letter: String, reason: String },
    #[error("Kafka client setting {key:?}: {reason}")]
    Setting { key: String, reason: String },
    #[error("creating topic {topic:?}: {code}{hint}")]
    CreateTopic {
        topic: String,
        code: RDKafkaErrorCode,
        hint: &'static str,
    },
    #[error(
        "topic {topic:?} does not exist: create the pipeline's topics with `txflow topics create`"
    )]
    MissingTopic { topic: String },
    #[error("reading metadata of topic {topic:?}: {source}")]
    Metadata {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("publishing to {topic:?}: {source}")]
    Publish {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("consumer group {group:?}: {what}: {source}")]
    Consumer {
        group: String,
        what: &'static str,
        #[source]
        source: KafkaError,
    },
    #[error("processing records from {location}: {source}")]
    Pipeline {
        location: String,
        #[source]
        source: txflow_core::Error,
    },
    #[error("storing records from {location}: {source}")]
    Sink {
        location: String,
        #[source]
        source: txflow_core::BoxError,
    },
    #[error("the poll thread stopped: {0} (a bug: please report it with the log)")]
    PollThread(String),
    #[error("a sink's write task stopped: {0} (a bug: please report it with the log)")]
    WriteTask(String),
    #[error(
        "Kafka transaction {id:?}: {what}: {source}; the brokers must support transactions \
         (Apache Kafka does; without them run the member without --transactions)"
    )]
    Transaction {
        id: String,
        what: &'static str,
        #[source]
        source: KafkaError,
    },
    #[error("reading the stored offsets of group {group:?}: {source}")]
    Offsets {
        group: String,
        #[source]
        source: txflow_core::BoxError,
    },
}
