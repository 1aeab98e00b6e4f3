//! A CSV file in an object store, streamed record by record.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::{GetOptions, GetRange, ObjectStoreExt};
use txflow_core::resilience::{OutagePolicy, RetryDecision, jitter};
use txflow_core::transaction::DecimalMark;
use txflow_core::{BoxError, RawRecord, RecordSource};
use txflow_csv::{Decoded, Decoder, Dialect};

use crate::error::{Error, Result};
use crate::location::Location;

/// One CSV input, read as a stream of chunks: only the current chunk and
/// the current record are held in memory.
///
/// When the stream breaks (the object store restarted, the network cut),
/// the rest of the object is asked for again from the byte reached, with a
/// range request on the same version (`If-Match` its ETag), waiting out the
/// outage up to [`CsvSource::with_max_outage`]: a long file survives a
/// restart of the object store without starting over.
pub struct CsvSource {
    url: Arc<str>,
    location: Location,
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    /// Bytes received so far: where a resumed read starts.
    received: u64,
    /// The version being read; a resumed read must get the same one.
    e_tag: Option<String>,
    outage: OutagePolicy,
    decoder: Decoder,
    done: bool,
}

/// How long a broken read is retried by default.
pub const DEFAULT_MAX_OUTAGE: Duration = Duration::from_secs(60);

impl std::fmt::Debug for CsvSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvSource")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl CsvSource {
    /// Opens a file and reads its header and first row, so that a missing
    /// column stops the file before any row is written and the dialect is
    /// known. `dialect` forces one; `None` detects it.
    pub async fn open(location: &Location, dialect: Option<Dialect>) -> Result<CsvSource> {
        let url = location.url();
        let (stream, e_tag) = match location.store().get(location.path()).await {
            Ok(result) => {
                let e_tag = result.meta.e_tag.clone();
                (result.into_stream(), e_tag)
            }
            Err(object_store::Error::NotFound { .. }) => return Err(Error::NotFound { url }),
            Err(source) => return Err(Error::Store { url, source }),
        };
        let mut source = CsvSource {
            url: Arc::from(url),
            location: location.clone(),
            stream,
            received: 0,
            e_tag,
            outage: OutagePolicy::waiting(DEFAULT_MAX_OUTAGE),
            decoder: Decoder::new(dialect),
            done: false,
        };
        source.fill(true).await?;
        Ok(source)
    }

    /// How long a broken read may be retried before the file fails.
    pub fn with_max_outage(mut self, max_outage: Duration) -> CsvSource {
        self.outage.max_outage = max_outage;
        self
    }

    /// Whether the file had a header (an empty file has none).
    pub fn has_header(&self) -> bool {
        self.decoder.has_header()
    }

    pub fn dialect(&self) -> Dialect {
        self.decoder.dialect()
    }

    /// Pulls chunks until a record is ready or the input ends.
    async fn fill(&mut self, peek: bool) -> Result<bool> {
        loop {
            let step = if peek {
                self.decoder.peek()
            } else {
                self.decoder.advance()
            };
            let step = step.map_err(|source| Error::Csv {
                url: self.url.to_string(),
                source,
            })?;
            match step {
                Decoded::Record => return Ok(true),
                Decoded::End => {
                    self.done = true;
                    return Ok(false);
                }
                Decoded::NeedInput => match self.stream.next().await {
                    Some(Ok(chunk)) => {
                        self.received += chunk.len() as u64;
                        self.decoder.push(&chunk);
                    }
                    Some(Err(source)) => self.resume(source).await?,
                    None => self.decoder.finish(),
                },
            }
        }
    }
}

impl CsvSource {
    /// After the stream broke with `error`: asks for the rest of the object
    /// until it answers or the outage has lasted too long.
    async fn resume(&mut self, error: object_store::Error) -> Result<()> {
        let started = Instant::now();
        let mut last = error;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .outage
                .after_failure(attempt, started.elapsed(), jitter())
            {
                RetryDecision::RetryAfter(delay) => {
                    tracing::warn!(url = %self.url, at_byte = self.received, error = %last,
                        retry_in = ?delay, "the read broke; resuming from the byte reached");
                    tokio::time::sleep(delay).await;
                }
                RetryDecision::GiveUp => {
                    return Err(Error::Store {
                        url: self.url.to_string(),
                        source: last,
                    });
                }
            }
            let options = GetOptions {
                range: Some(GetRange::Offset(self.received)),
                if_match: self.e_tag.clone(),
                ..GetOptions::default()
            };
            match self
                .location
                .store()
                .get_opts(self.location.path(), options)
                .await
            {
                Ok(result) => {
                    tracing::info!(url = %self.url, at_byte = self.received, attempts = attempt,
                        "read resumed");
                    self.stream = result.into_stream();
                    return Ok(());
                }
                // The object was replaced meanwhile: its rest is not ours.
                Err(source @ object_store::Error::Precondition { .. }) => {
                    return Err(Error::Store {
                        url: self.url.to_string(),
                        source,
                    });
                }
                Err(e) => last = e,
            }
        }
    }
}

impl RecordSource for CsvSource {
    fn location(&self) -> &Arc<str> {
        &self.url
    }

    fn decimal_mark(&self) -> DecimalMark {
        self.decoder.dialect().decimal
    }

    async fn next_record(&mut self) -> Result<Option<RawRecord<'_>>, BoxError> {
        if self.done || !self.fill(false).await? {
            return Ok(None);
        }
        Ok(Some(self.decoder.record()))
    }

    fn bytes_read(&self) -> u64 {
        self.decoder.offset()
    }
}
