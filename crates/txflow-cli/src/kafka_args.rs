//! Flags shared by the commands that talk to Kafka.

/// The brokers and the pipeline's topics.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaArgs {
    /// Kafka-API brokers, host:port[,host:port...].
    #[arg(long, env = "TXFLOW_KAFKA_BROKERS", default_value = "localhost:9092")]
    pub brokers: String,

    /// The topic of incoming transaction events.
    #[arg(
        long,
        env = "TXFLOW_TOPIC_TRANSACTIONS",
        default_value = "transactions"
    )]
    pub transactions_topic: String,

    /// The topic predictions are published to.
    #[arg(long, env = "TXFLOW_TOPIC_PREDICTIONS", default_value = "predictions")]
    pub predictions_topic: String,

    /// The dead-letter topic.
    #[arg(
        long,
        env = "TXFLOW_TOPIC_DEAD_LETTERS",
        default_value = "failed-transactions"
    )]
    pub dead_letter_topic: String,
}
