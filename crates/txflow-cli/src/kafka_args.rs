//! Flags shared by the commands that talk to Kafka.

use anyhow::{Context, Result};
use txflow_kafka::{Connection, Setting};

/// Variables `TXFLOW_KAFKA_OPT_<KEY>` set librdkafka settings, the key's
/// dots written as underscores (`TXFLOW_KAFKA_OPT_SASL_PASSWORD`).
pub const ENV_PREFIX: &str = "TXFLOW_KAFKA_OPT_";

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

    /// A librdkafka client setting, repeatable: `security.protocol=SASL_SSL`,
    /// `sasl.mechanism=SCRAM-SHA-512`, `sasl.username=me`,
    /// `sasl.password=@/run/secrets/kafka` (`@FILE`: the value is the file's
    /// content). Also from variables TXFLOW_KAFKA_OPT_<KEY> (dots as
    /// underscores) and the configuration file's [kafka] table; flags win,
    /// then variables, then the file. Values are never printed.
    #[arg(long = "kafka-option", value_name = "KEY=VALUE", value_parser = parse_setting)]
    pub kafka_options: Vec<Setting>,

    /// The configuration file's [kafka] table (set by the file loader).
    #[arg(long = "kafka-file-option", hide = true, value_parser = parse_setting)]
    pub kafka_file_options: Vec<Setting>,
}

impl KafkaArgs {
    /// The brokers and every librdkafka setting, layered (file, then
    /// variables, then flags) and checked.
    pub fn connection(&self) -> Result<Connection> {
        let mut settings = self.kafka_file_options.clone();
        let mut from_env: Vec<(String, String)> = std::env::vars()
            .filter(|(name, _)| name.starts_with(ENV_PREFIX))
            .collect();
        from_env.sort();
        for (name, value) in from_env {
            let key = name[ENV_PREFIX.len()..]
                .to_ascii_lowercase()
                .replace('_', ".");
            let value = resolve(&name, &value).map_err(anyhow::Error::msg)?;
            settings.push(Setting::new(key, value));
        }
        settings.extend(self.kafka_options.iter().cloned());
        Connection::new(self.brokers.clone(), settings).context("the Kafka client settings")
    }
}

/// `KEY=VALUE` (or `KEY=@FILE`) into a setting.
fn parse_setting(text: &str) -> Result<Setting, String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| "expected KEY=VALUE, e.g. security.protocol=SASL_SSL".to_owned())?;
    let key = key.trim();
    if key.is_empty() {
        return Err("the key before `=` is empty".to_owned());
    }
    Ok(Setting::new(key, resolve(key, value)?))
}

/// A value, or the content of the file it names after `@` (one trailing
/// newline dropped). Errors name the file, never the content.
fn resolve(key: &str, value: &str) -> Result<String, String> {
    let Some(path) = value.strip_prefix('@') else {
        return Ok(value.to_owned());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{key}: reading the value from {path}: {e}"))?;
    Ok(text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text)
        .to_owned())
}

/// How a consumer group member (`consume`, `sink`) lives in its group.
#[derive(Debug, Clone, clap::Args)]
pub struct MemberArgs {
    /// This member's name (run id `<group>/<member>`); default host and pid.
    #[arg(long, env = "TXFLOW_MEMBER")]
    pub member: Option<String>,

    /// Static membership: a restarted member with the same id gets its
    /// partitions back at once, without a rebalance of the group, if it
    /// returns within --session-timeout (until then they wait for it).
    /// Kafka's group.instance.id; give each member its own, stable across
    /// restarts (a pod's or host's name). Also names the member when
    /// --member is not given.
    #[arg(long, env = "TXFLOW_MEMBER_ID")]
    pub member_id: Option<String>,

    /// A member silent this long is taken out of the group by the broker,
    /// and its partitions go to the others.
    #[arg(long, default_value = "10s", value_parser = crate::classifier::parse_duration)]
    pub session_timeout: std::time::Duration,

    /// How long the stored offsets (resume points) may take to load when
    /// partitions are assigned; past this the member exits with an error
    /// (status 1).
    #[arg(long, default_value = "30s", value_parser = crate::classifier::parse_duration)]
    pub offsets_timeout: std::time::Duration,

    /// How long the member may stay with an empty assignment before it
    /// checks the group and, when it should hold partitions, rejoins.
    #[arg(long, default_value = "1s", value_parser = crate::classifier::parse_duration)]
    pub rejoin_after: std::time::Duration,

    /// On SIGTERM, how long the member may take to store what it buffered
    /// before it exits anyway (what it could not store, the next member
    /// replays: nothing is lost).
    #[arg(long, default_value = "20s", value_parser = crate::classifier::parse_duration)]
    pub shutdown_timeout: std::time::Duration,
}

impl MemberArgs {
    /// The member's settings: the flags in common, its group, the topic it
    /// reads and how it buffers.
    pub fn config(
        &self,
        kafka: &KafkaArgs,
        group: &str,
        topic: &str,
        max_batch: usize,
        max_wait: std::time::Duration,
    ) -> anyhow::Result<txflow_kafka::member::MemberConfig> {
        Ok(txflow_kafka::member::MemberConfig {
            connection: kafka.connection()?,
            group: group.to_owned(),
            name: self.name(),
            instance: self.member_id.clone(),
            topic: topic.to_owned(),
            dead_letter_topic: kafka.dead_letter_topic.clone(),
            max_batch,
            max_wait,
            version: crate::store::VERSION.to_owned(),
            session_timeout: self.session_timeout,
            offsets_timeout: self.offsets_timeout,
            rejoin_after: self.rejoin_after,
            shutdown_timeout: self.shutdown_timeout,
        })
    }

    /// The member's name: given, its static id, or host and pid.
    pub fn name(&self) -> String {
        self.member
            .clone()
            .or_else(|| self.member_id.clone())
            .unwrap_or_else(|| {
                let host = std::fs::read_to_string("/etc/hostname")
                    .map(|h| h.trim().to_owned())
                    .unwrap_or_else(|_| "host".to_owned());
                format!("{host}-{}", std::process::id())
            })
    }
}
