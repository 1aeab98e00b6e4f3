//! How txflow reaches the brokers: their addresses and any librdkafka
//! setting the operator adds (`security.protocol`, `sasl.*`, `ssl.*`, ...),
//! checked against librdkafka before any client is made. Values never
//! appear in `Debug` output or error messages: they may be secrets.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::client::DefaultClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::types::RDKafkaConfRes;
use rdkafka::{ClientConfig, ClientContext};

use crate::error::{Error, Result};

/// Settings txflow owns: its guarantees depend on them, or a flag sets them.
const OWNED: [(&str, &str); 7] = [
    ("bootstrap.servers", "use --brokers"),
    ("transactional.id", "use --transactions"),
    ("group.id", "use --group"),
    ("group.instance.id", "use --member-id"),
    (
        "enable.auto.commit",
        "txflow commits offsets with the rows it stores",
    ),
    (
        "enable.auto.offset.store",
        "txflow commits offsets with the rows it stores",
    ),
    (
        "enable.partition.eof",
        "txflow uses the end of a partition to flush at once",
    ),
];

/// One librdkafka setting; its value is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Setting {
    pub key: String,
    value: String,
}

impl Setting {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Setting {
        Setting {
            key: key.into(),
            value: value.into(),
        }
    }
}

impl std::fmt::Debug for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}=***", self.key)
    }
}

/// The brokers and the operator's librdkafka settings, checked.
#[derive(Debug, Clone)]
pub struct Connection {
    pub brokers: String,
    settings: Vec<Setting>,
}

impl Connection {
    /// Checks every setting: not one txflow owns, known to librdkafka, with
    /// a value it accepts. Later settings of the same key win.
    pub fn new(brokers: impl Into<String>, settings: Vec<Setting>) -> Result<Connection> {
        for s in &settings {
            if let Some((_, why)) = OWNED.iter().find(|(key, _)| *key == s.key) {
                return Err(Error::Setting {
                    key: s.key.clone(),
                    reason: format!("txflow sets it ({why})"),
                });
            }
            let mut one = ClientConfig::new();
            one.set(&s.key, &s.value);
            if let Err(e) = one.create_native_config() {
                let reason = match e {
                    KafkaError::ClientConfig(RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN, ..) => {
                        "librdkafka has no such setting; its CONFIGURATION.md lists them".to_owned()
                    }
                    KafkaError::ClientConfig(RDKafkaConfRes::RD_KAFKA_CONF_INVALID, ..) => {
                        "librdkafka refuses its value (not shown here: it may be a secret)"
                            .to_owned()
                    }
                    _ => "librdkafka refuses it".to_owned(),
                };
                return Err(Error::Setting {
                    key: s.key.clone(),
                    reason,
                });
            }
        }
        Ok(Connection {
            brokers: brokers.into(),
            settings,
        })
    }

    /// Brokers alone, no setting.
    pub fn plain(brokers: impl Into<String>) -> Connection {
        Connection {
            brokers: brokers.into(),
            settings: Vec::new(),
        }
    }

    /// A client configuration: the brokers, `defaults` (txflow's own choices
    /// for this client), then the operator's settings, which win.
    pub fn config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for s in &self.settings {
            config.set(&s.key, &s.value);
        }
        config
    }

    /// An idempotent producer (`acks=all`) with `extra` settings over those
    /// defaults; the operator's settings (`--kafka-option`) still come last.
    pub fn idempotent_producer(&self, extra: &[(&str, &str)]) -> Result<FutureProducer> {
        let mut defaults = vec![("enable.idempotence", "true"), ("acks", "all")];
        defaults.extend_from_slice(extra);
        self.config(&defaults)
            .create()
            .map_err(|source| Error::Client {
                brokers: self.brokers.clone(),
                source,
            })
    }

    /// A transactional producer (`transactional.id` = `id`) with its
    /// transactions initialised: an earlier producer of the same id is
    /// fenced and the transaction it left open aborted.
    pub async fn transactional_producer(
        &self,
        extra: &[(&str, &str)],
        id: &str,
    ) -> Result<FutureProducer> {
        let mut settings = vec![("transactional.id", id)];
        settings.extend_from_slice(extra);
        let producer = self.idempotent_producer(&settings)?;
        off_runtime(&producer, |p| p.init_transactions(Duration::from_secs(120)))
            .await
            .map_err(|source| Error::Transaction {
                id: id.to_owned(),
                what: "initialising transactions",
                source,
            })?;
        Ok(producer)
    }

    /// Asks the brokers for their metadata (10 s at most), so that wrong
    /// addresses or security settings fail at once with a clear message
    /// rather than as a request that waits for ever. A TLS or SASL failure
    /// ends the wait at once; librdkafka's last word is in the error.
    pub async fn check_reachable(&self) -> Result<()> {
        let config = self.config(&[]);
        let brokers = self.brokers.clone();
        let tls = config
            .get("security.protocol")
            .is_some_and(|p| p.eq_ignore_ascii_case("ssl") || p.eq_ignore_ascii_case("sasl_ssl"));
        tokio::task::spawn_blocking(move || {
            let unreachable = |source, context: &Probe| {
                let mut said = context.said();
                if said.is_empty() && tls {
                    said = " (no answer to the TLS handshake: is the listener plaintext?)".into();
                }
                Error::Unreachable {
                    brokers: brokers.clone(),
                    source: Box::new(source),
                    said,
                }
            };
            let probe: BaseConsumer<Probe> = config
                .create_with_context(Probe::default())
                .map_err(|e| unreachable(e, &Probe::default()))?;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let failed = match probe.fetch_metadata(None, Duration::from_secs(1)) {
                    Ok(_) => return Ok(()),
                    Err(e) => e,
                };
                // Serve librdkafka's error events to the context.
                let _ = probe.poll(Duration::ZERO);
                if Instant::now() >= deadline || probe.context().security_failed() {
                    return Err(unreachable(failed, probe.context()));
                }
            }
        })
        .await
        .map_err(|e| Error::Client {
            brokers: self.brokers.clone(),
            source: KafkaError::Subscription(e.to_string()),
        })?
    }
}

/// A blocking call of the producer's transactional API (init, commit,
/// abort: they wait on the broker), off the runtime's threads.
pub(crate) async fn off_runtime(
    producer: &FutureProducer,
    call: impl FnOnce(&FutureProducer) -> rdkafka::error::KafkaResult<()> + Send + 'static,
) -> Result<(), KafkaError> {
    let producer = producer.clone();
    tokio::task::spawn_blocking(move || call(&producer))
        .await
        .map_err(|_| KafkaError::Canceled)
        .and_then(|outcome| outcome)
}

/// The probe's context: remembers librdkafka's last error, and whether it
/// was about security (TLS, SASL), which waiting will not cure.
#[derive(Debug, Default)]
struct Probe {
    last: Mutex<Option<String>>,
    security: AtomicBool,
}

impl Probe {
    fn said(&self) -> String {
        match &*self.last.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(reason) => format!(" (librdkafka: {reason})"),
            None => String::new(),
        }
    }

    fn security_failed(&self) -> bool {
        self.security.load(Ordering::Relaxed)
    }
}

impl ClientContext for Probe {
    fn error(&self, error: KafkaError, reason: &str) {
        use rdkafka::types::RDKafkaErrorCode as Code;
        let security = matches!(
            error.rdkafka_error_code(),
            Some(Code::SSL | Code::Authentication | Code::SaslAuthenticationFailed)
        ) || reason.contains("SSL handshake failed")
            || reason.contains("SASL");
        if security {
            self.security.store(true, Ordering::Relaxed);
        }
        self.remember(reason.to_owned());
    }

    /// librdkafka tells of a closed connection only in its log.
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        // A TLS listener closes a plaintext client's first request (its
        // API versions query) unanswered: the one sign librdkafka gives of
        // a client without TLS on a TLS port. Waiting will not cure it.
        if message.contains("Disconnected") && message.contains("state APIVERSION_QUERY") {
            self.security.store(true, Ordering::Relaxed);
            self.remember(format!(
                "{message}: the listener closed the connection before answering; \
                 does it expect TLS (security.protocol=SSL or SASL_SSL)?"
            ));
        }
        DefaultClientContext.log(level, fac, message);
    }
}

impl Probe {
    /// Keeps `reason` as the last word, unless it says less than the one
    /// before ("1/1 brokers are down").
    fn remember(&self, reason: String) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none() || !reason.contains("brokers are down") {
            *last = Some(reason);
        }
    }
}

impl ConsumerContext for Probe {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_setting_is_an_error_naming_it() {
        let e = Connection::new("b:9092", vec![Setting::new("no.such.thing", "1")])
            .expect_err("unknown");
        let text = e.to_string();
        assert!(text.contains("\"no.such.thing\""), "{text}");
        assert!(text.contains("no such setting"), "{text}");
    }

    #[test]
    fn a_refused_value_is_not_shown() {
        let e = Connection::new(
            "b:9092",
            vec![Setting::new("security.protocol", "hunter2-secret")],
        )
        .expect_err("invalid");
        let text = e.to_string();
        assert!(text.contains("security.protocol"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn settings_txflow_owns_are_refused_with_the_flag_to_use() {
        let e = Connection::new("b:9092", vec![Setting::new("group.id", "x")]).expect_err("owned");
        assert!(e.to_string().contains("--group"), "{e}");
    }

    #[test]
    fn values_never_show_in_debug_output_and_the_operator_wins() {
        let c = Connection::new(
            "b:9092",
            vec![
                Setting::new("sasl.password", "hunter2"),
                Setting::new("client.id", "mine"),
            ],
        )
        .expect("valid settings");
        let debug = format!("{c:?}");
        assert!(debug.contains("sasl.password=***"), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
        let config = c.config(&[("client.id", "txflow"), ("acks", "all")]);
        assert_eq!(config.get("client.id"), Some("mine"));
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("bootstrap.servers"), Some("b:9092"));
    }
}
