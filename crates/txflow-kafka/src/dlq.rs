//! The dead-letter topic, read and replayed: `txflow dlq`.
//!
//! A letter is the original record (key, value, headers) with txflow's
//! headers added (see `consume::publish::dead_letter`). Replaying one
//! publishes the original key, value and headers to its source topic again,
//! with `txflow-replay-of` (the letter's topic/partition/offset) and the
//! attempt count plus one; a replayed record that fails again comes back to
//! the dead-letter topic with that count, so a cap on attempts ends loops.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use crate::client::Connection;
use crate::consume::publish::dead_letter;
use crate::error::{Error, Result};

/// The header naming the letter a replayed record comes from.
pub const REPLAY_OF: &str = "txflow-replay-of";

/// Headers txflow adds to a letter: not the original record's.
const OURS: [&str; 9] = [
    dead_letter::ERROR_CLASS,
    dead_letter::ERROR_RULE,
    dead_letter::ERROR_MESSAGE,
    dead_letter::SOURCE_TOPIC,
    dead_letter::SOURCE_PARTITION,
    dead_letter::SOURCE_OFFSET,
    dead_letter::ATTEMPTS,
    dead_letter::FIRST_FAILURE,
    dead_letter::VERSION,
];

/// Whether `key` is one of the headers txflow adds to a dead letter.
pub fn is_ours(key: &str) -> bool {
    OURS.contains(&key)
}

/// One dead letter.
#[derive(Debug, Clone, PartialEq)]
pub struct Letter {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: Option<DateTime<Utc>>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Letter {
    /// A header's value as text (the last one of that name).
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| std::str::from_utf8(v.as_deref()?).ok())
    }

    pub fn class(&self) -> &str {
        self.header(dead_letter::ERROR_CLASS).unwrap_or("?")
    }

    pub fn rule(&self) -> &str {
        self.header(dead_letter::ERROR_RULE).unwrap_or("?")
    }

    pub fn message(&self) -> &str {
        self.header(dead_letter::ERROR_MESSAGE).unwrap_or("")
    }

    pub fn source_topic(&self) -> Option<&str> {
        self.header(dead_letter::SOURCE_TOPIC)
    }

    pub fn source_partition(&self) -> Option<i32> {
        self.header(dead_letter::SOURCE_PARTITION)?.parse().ok()
    }

    pub fn source_offset(&self) -> Option<i64> {
        self.header(dead_letter::SOURCE_OFFSET)?.parse().ok()
    }

    /// How many times the record has failed (1 for a first failure).
    pub fn attempts(&self) -> u32 {
        self.header(dead_letter::ATTEMPTS)
            .and_then(|a| a.parse().ok())
            .unwrap_or(1)
    }

    /// The letter a replayed record came from (`topic/partition/offset`).
    pub fn replay_of(&self) -> Option<&str> {
        self.header(REPLAY_OF)
    }

    /// This letter's own name, as `txflow-replay-of` gives it.
    pub fn name(&self) -> String {
        format!("{}/{}/{}", self.topic, self.partition, self.offset)
    }

    /// The key as text (a transaction id), if it is text.
    pub fn key_text(&self) -> Option<&str> {
        std::str::from_utf8(self.key.as_deref()?).ok()
    }

    /// The record as it was first published: its headers without txflow's.
    fn original_headers(&self) -> impl Iterator<Item = &(String, Option<Vec<u8>>)> {
        self.headers
            .iter()
            .filter(|(k, _)| !is_ours(k) && k != REPLAY_OF)
    }
}

/// Which letters a command works on: every condition given must hold (an
/// empty list or `None` lets every letter through).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    /// Error classes (decode, validation, classification, sink).
    pub classes: Vec<String>,
    /// Rules (event_format, amount_format, refused, ...).
    pub rules: Vec<String>,
    /// Written at or after.
    pub since: Option<DateTime<Utc>>,
    /// Written before.
    pub until: Option<DateTime<Utc>>,
    /// From this partition of their source topic.
    pub source_partition: Option<i32>,
    /// At these offsets of their source partition, both ends included.
    pub source_offsets: Option<(i64, i64)>,
    /// With one of these keys (transaction ids, any case).
    pub ids: Vec<String>,
    /// These letters: (partition, offset) of the dead-letter topic.
    pub letters: Vec<(i32, i64)>,
}

impl Selection {
    pub fn keeps(&self, l: &Letter) -> bool {
        let any = |list: &[String], value: &str| list.is_empty() || list.iter().any(|x| x == value);
        any(&self.classes, l.class())
            && any(&self.rules, l.rule())
            && self
                .since
                .is_none_or(|t| l.timestamp.is_some_and(|at| at >= t))
            && self
                .until
                .is_none_or(|t| l.timestamp.is_some_and(|at| at < t))
            && self
                .source_partition
                .is_none_or(|p| l.source_partition() == Some(p))
            && self.source_offsets.is_none_or(|(from, to)| {
                l.source_offset().is_some_and(|o| (from..=to).contains(&o))
            })
            && (self.ids.is_empty()
                || l.key_text()
                    .is_some_and(|k| self.ids.iter().any(|i| i.eq_ignore_ascii_case(k))))
            && (self.letters.is_empty() || self.letters.contains(&(l.partition, l.offset)))
    }
}

/// Every letter of `topic` up to its end when the read starts, in
/// partition then offset order, that `keep` keeps.
pub async fn read(
    connection: &Connection,
    topic: &str,
    keep: impl Fn(&Letter) -> bool + Send + 'static,
) -> Result<Vec<Letter>> {
    let config = connection.config(&[
        ("group.id", "txflow-dlq-reader"),
        ("enable.auto.commit", "false"),
        ("enable.partition.eof", "false"),
    ]);
    let brokers = connection.brokers.clone();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let client = |source| Error::Client {
            brokers: brokers.clone(),
            source,
        };
        let consumer: BaseConsumer = config.create().map_err(client)?;
        let metadata = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .map_err(|source| Error::Metadata {
                topic: topic.clone(),
                source,
            })?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(Error::MissingTopic { topic });
        }
        // Where each partition ends now: the read stops there.
        let mut ends = Vec::new();
        let mut tpl = TopicPartitionList::new();
        for &p in &partitions {
            let (low, high) = consumer
                .fetch_watermarks(&topic, p, Duration::from_secs(10))
                .map_err(|source| Error::Metadata {
                    topic: topic.clone(),
                    source,
                })?;
            if high > low {
                ends.push((p, high));
                tpl.add_partition_offset(&topic, p, Offset::Offset(low))
                    .map_err(client)?;
            }
        }
        if ends.is_empty() {
            return Ok(Vec::new());
        }
        consumer.assign(&tpl).map_err(client)?;
        let mut letters = Vec::new();
        let mut reached = vec![false; ends.len()];
        // Read to each partition's end as it was when the read started.
        // (Tansu 0.6, which reported the end of a partition whose last
        // batch holds several records as that batch's start, needed a
        // second of silence more; Apache Kafka's ends are exact.)
        while !reached.iter().all(|r| *r) {
            let message = match consumer.poll(Duration::from_secs(10)) {
                Some(m) => m.map_err(client)?,
                None => {
                    return Err(Error::Client {
                        brokers: brokers.clone(),
                        source: rdkafka::error::KafkaError::Canceled,
                    });
                }
            };
            let Some(i) = ends.iter().position(|(p, _)| *p == message.partition()) else {
                continue;
            };
            if message.offset() >= ends[i].1 {
                // Arrived after the read started.
                continue;
            }
            if message.offset() + 1 >= ends[i].1 {
                reached[i] = true;
            }
            let letter = Letter {
                topic: topic.clone(),
                partition: message.partition(),
                offset: message.offset(),
                timestamp: message
                    .timestamp()
                    .to_millis()
                    .and_then(DateTime::from_timestamp_millis),
                key: message.key().map(<[u8]>::to_vec),
                value: message.payload().map(<[u8]>::to_vec),
                headers: message
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            if keep(&letter) {
                letters.push(letter);
            }
        }
        letters.sort_by_key(|l| (l.partition, l.offset));
        Ok(letters)
    })
    .await
    .map_err(|_| Error::Client {
        brokers: connection.brokers.clone(),
        source: rdkafka::error::KafkaError::Canceled,
    })?
}

/// Publishes a letter's record to its source topic again: the original
/// key, value and headers, `txflow-replay-of`, the attempt count plus one
/// and the first failure's time. Returns once the broker has it.
pub async fn replay(producer: &FutureProducer, letter: &Letter) -> Result<()> {
    let Some(topic) = letter.source_topic() else {
        return Err(Error::Letter {
            letter: letter.name(),
            reason: format!(
                "no {} header: not a txflow dead letter, it cannot be replayed",
                dead_letter::SOURCE_TOPIC
            ),
        });
    };
    let mut headers = OwnedHeaders::new();
    for (key, value) in letter.original_headers() {
        headers = headers.insert(Header {
            key,
            value: value.as_deref(),
        });
    }
    let name = letter.name();
    let attempts = (letter.attempts() + 1).to_string();
    let mut ours = vec![
        (REPLAY_OF, name.as_str()),
        (dead_letter::ATTEMPTS, &attempts),
    ];
    if let Some(first) = letter.header(dead_letter::FIRST_FAILURE) {
        ours.push((dead_letter::FIRST_FAILURE, first));
    }
    for (key, value) in ours {
        headers = headers.insert(Header {
            key,
            value: Some(value),
        });
    }
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(headers);
    if let Some(key) = &letter.key {
        record = record.key(key);
    }
    if let Some(value) = &letter.value {
        record = record.payload(value);
    }
    producer
        .send(record, Duration::from_secs(30))
        .await
        .map(|_| ())
        .map_err(|(source, _)| Error::Publish {
            topic: topic.to_owned(),
            source,
        })
}

/// A producer for replays: idempotent, acknowledged by every replica, a
/// record given up after 30 s (the command then fails, naming it).
pub fn producer(connection: &Connection) -> Result<FutureProducer> {
    connection.idempotent_producer(&[("message.timeout.ms", "30000")])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(partition: i32, offset: i64, class: &str, rule: &str, key: &str) -> Letter {
        let header = |k: &str, v: &str| (k.to_owned(), Some(v.as_bytes().to_vec()));
        Letter {
            topic: "t-failed".into(),
            partition,
            offset,
            timestamp: DateTime::from_timestamp(1_700_000_000 + offset, 0),
            key: Some(key.as_bytes().to_vec()),
            value: None,
            headers: vec![
                header(dead_letter::ERROR_CLASS, class),
                header(dead_letter::ERROR_RULE, rule),
                header(dead_letter::SOURCE_PARTITION, "2"),
                header(dead_letter::SOURCE_OFFSET, &(100 + offset).to_string()),
            ],
        }
    }

    #[test]
    fn a_selection_keeps_what_every_given_condition_keeps() {
        let letters = [
            letter(0, 1, "decode", "event_format", "A1"),
            letter(0, 2, "validation", "amount_format", "b2"),
            letter(1, 3, "validation", "side_sign", "c3"),
        ];
        let kept = |s: &Selection| -> Vec<i64> {
            letters
                .iter()
                .filter(|l| s.keeps(l))
                .map(|l| l.offset)
                .collect()
        };
        assert_eq!(kept(&Selection::default()), [1, 2, 3]);
        let validation = Selection {
            classes: vec!["validation".into()],
            ..Selection::default()
        };
        assert_eq!(kept(&validation), [2, 3]);
        assert_eq!(
            kept(&Selection {
                rules: vec!["side_sign".into()],
                ..validation.clone()
            }),
            [3]
        );
        assert_eq!(
            kept(&Selection {
                ids: vec!["a1".into(), "C3".into()],
                ..Selection::default()
            }),
            [1, 3]
        );
        assert_eq!(
            kept(&Selection {
                source_offsets: Some((101, 102)),
                source_partition: Some(2),
                ..Selection::default()
            }),
            [1, 2]
        );
        assert_eq!(
            kept(&Selection {
                since: DateTime::from_timestamp(1_700_000_002, 0),
                until: DateTime::from_timestamp(1_700_000_003, 0),
                ..Selection::default()
            }),
            [2]
        );
        assert_eq!(
            kept(&Selection {
                letters: vec![(1, 3)],
                ..Selection::default()
            }),
            [3]
        );
    }
}
