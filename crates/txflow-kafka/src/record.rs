//! A record as the poll thread hands it to a member: what a member reads of
//! a Kafka message (topic, partition, offset, timestamp, key, value,
//! headers), its bytes in one buffer shared with the records polled
//! together.
//!
//! A polled message cannot leave the poll thread, and
//! `OwnedMessage::detach` makes several allocations per record (the topic,
//! the key, the value, the headers' list and each header), made on the poll
//! thread and freed on the member's: in a drain of 1M events, allocation
//! was the largest share of the member's CPU (docs/PERFORMANCE.md). A
//! [`Chunk`] copies its records' bytes one after the other into one buffer
//! instead; each [`Record`] is a view of its part.

use std::fmt;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use rdkafka::Timestamp;
use rdkafka::message::{Headers, Message};

/// A length that marks an absent key, value or header value.
const ABSENT: u32 = u32::MAX;

/// One record of a topic's partition.
#[derive(Clone)]
pub(crate) struct Record {
    topic: Arc<str>,
    partition: i32,
    offset: i64,
    timestamp: Timestamp,
    /// The key, the value, then each header as the length of its name
    /// (`u32`, little endian), the name, the length of its value (or
    /// [`ABSENT`]) and the value.
    data: Bytes,
    key: u32,
    payload: u32,
}

impl Record {
    /// The topic's name, shared by the records of a chunk.
    pub(crate) fn topic(&self) -> &Arc<str> {
        &self.topic
    }

    pub(crate) fn partition(&self) -> i32 {
        self.partition
    }

    pub(crate) fn offset(&self) -> i64 {
        self.offset
    }

    pub(crate) fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    pub(crate) fn key(&self) -> Option<&[u8]> {
        let len = self.key;
        (len != ABSENT).then(|| &self.data[..len as usize])
    }

    pub(crate) fn payload(&self) -> Option<&[u8]> {
        let start = self.key_end();
        let len = self.payload;
        (len != ABSENT).then(|| &self.data[start..start + len as usize])
    }

    /// The headers in the order the record carries them: name and value.
    pub(crate) fn headers(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> {
        let start = self.key_end() + length(self.payload);
        let mut rest = &self.data[start..];
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let (name, after) = field(rest);
            let (value, after) = field(after);
            rest = after;
            // Names were `&str` when they were copied in.
            Some((std::str::from_utf8(name?).unwrap_or_default(), value))
        })
    }

    /// The value of the first header named `name`, when it has one.
    pub(crate) fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers().find(|(n, _)| *n == name)?.1
    }

    fn key_end(&self) -> usize {
        length(self.key)
    }

    /// A record made of its parts (for tests).
    #[cfg(test)]
    pub(crate) fn new(
        topic: &str,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
    ) -> Record {
        let mut chunk = Chunk::default();
        chunk.push_parts(
            topic,
            partition,
            offset,
            Timestamp::NotAvailable,
            key,
            payload,
            headers.iter().copied(),
        );
        chunk.take().pop().expect("one record")
    }
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("offset", &self.offset)
            .field("timestamp", &self.timestamp)
            .field("key_bytes", &self.key().map(<[u8]>::len))
            .field("payload_bytes", &self.payload().map(<[u8]>::len))
            .finish_non_exhaustive()
    }
}

fn length(len: u32) -> usize {
    if len == ABSENT { 0 } else { len as usize }
}

/// A header's name or value: its length then its bytes.
fn field(bytes: &[u8]) -> (Option<&[u8]>, &[u8]) {
    let (len, rest) = bytes.split_at(4);
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]);
    if len == ABSENT {
        return (None, rest);
    }
    let (value, rest) = rest.split_at(len as usize);
    (Some(value), rest)
}

/// Records being polled: their bytes in one growing buffer.
#[derive(Default)]
pub(crate) struct Chunk {
    buffer: BytesMut,
    pending: Vec<Pending>,
    /// The topic of the last record, shared by the records of that topic.
    topic: Option<Arc<str>>,
}

struct Pending {
    topic: Arc<str>,
    partition: i32,
    offset: i64,
    timestamp: Timestamp,
    end: usize,
    key: u32,
    payload: u32,
}

impl Chunk {
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Copies a polled message's parts in.
    pub(crate) fn push<M: Message>(&mut self, m: &M) {
        let headers = m.headers();
        let count = headers.map_or(0, Headers::count);
        let headers = (0..count).filter_map(|i| {
            let h = headers?.try_get(i)?;
            Some((h.key, h.value))
        });
        self.push_parts(
            m.topic(),
            m.partition(),
            m.offset(),
            m.timestamp(),
            m.key(),
            m.payload(),
            headers,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn push_parts<'h>(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        timestamp: Timestamp,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: impl Iterator<Item = (&'h str, Option<&'h [u8]>)>,
    ) {
        let topic = match &self.topic {
            Some(t) if **t == *topic => t.clone(),
            _ => {
                let t: Arc<str> = topic.into();
                self.topic = Some(t.clone());
                t
            }
        };
        let mut put = |bytes: Option<&[u8]>| match bytes {
            Some(b) => {
                self.buffer.extend_from_slice(b);
                b.len() as u32
            }
            None => ABSENT,
        };
        let key = put(key);
        let payload = put(payload);
        for (name, value) in headers {
            for part in [Some(name.as_bytes()), value] {
                match part {
                    Some(b) => {
                        self.buffer.put_u32_le(b.len() as u32);
                        self.buffer.extend_from_slice(b);
                    }
                    None => self.buffer.put_u32_le(ABSENT),
                }
            }
        }
        self.pending.push(Pending {
            topic,
            partition,
            offset,
            timestamp,
            end: self.buffer.len(),
            key,
            payload,
        });
    }

    /// The records pushed since the last take, in order.
    pub(crate) fn take(&mut self) -> Vec<Record> {
        let data = self.buffer.split().freeze();
        let mut start = 0;
        self.pending
            .drain(..)
            .map(|p| {
                let record = Record {
                    topic: p.topic,
                    partition: p.partition,
                    offset: p.offset,
                    timestamp: p.timestamp,
                    data: data.slice(start..p.end),
                    key: p.key,
                    payload: p.payload,
                };
                start = p.end;
                record
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_record_reads_back_its_own_parts() {
        let mut chunk = Chunk::default();
        chunk.push_parts(
            "tx",
            3,
            41,
            Timestamp::CreateTime(1_700_000_000_000),
            Some(b"k1"),
            Some(b"{\"a\":1}"),
            [
                ("content-type", Some(&b"application/json"[..])),
                ("empty", None),
            ]
            .into_iter(),
        );
        chunk.push_parts(
            "tx",
            3,
            42,
            Timestamp::NotAvailable,
            None,
            Some(b""),
            std::iter::empty(),
        );
        chunk.push_parts(
            "other",
            0,
            7,
            Timestamp::NotAvailable,
            Some(b""),
            None,
            [("traceparent", Some(&b"00-ab"[..]))].into_iter(),
        );
        assert_eq!(chunk.len(), 3);
        let records = chunk.take();
        assert!(chunk.is_empty());
        let [a, b, c] = &records[..] else {
            panic!("three records: {records:?}");
        };
        assert_eq!((&**a.topic(), a.partition(), a.offset()), ("tx", 3, 41));
        assert_eq!(a.timestamp().to_millis(), Some(1_700_000_000_000));
        assert_eq!(a.key(), Some(&b"k1"[..]));
        assert_eq!(a.payload(), Some(&b"{\"a\":1}"[..]));
        assert_eq!(
            a.headers().collect::<Vec<_>>(),
            [
                ("content-type", Some(&b"application/json"[..])),
                ("empty", None)
            ]
        );
        assert_eq!(a.header("content-type"), Some(&b"application/json"[..]));
        assert_eq!(a.header("empty"), None);
        assert_eq!((b.key(), b.payload()), (None, Some(&b""[..])));
        assert_eq!(b.headers().count(), 0);
        assert_eq!(
            (&**c.topic(), c.key(), c.payload()),
            ("other", Some(&b""[..]), None)
        );
        assert_eq!(c.header("traceparent"), Some(&b"00-ab"[..]));
        // The next chunk starts empty and its records are its own.
        chunk.push_parts(
            "tx",
            1,
            0,
            Timestamp::NotAvailable,
            None,
            Some(b"x"),
            std::iter::empty(),
        );
        let next = chunk.take();
        assert_eq!(next[0].payload(), Some(&b"x"[..]));
        assert_eq!(a.payload(), Some(&b"{\"a\":1}"[..]));
    }
}
