//! A CSV file in an object store, streamed record by record.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::ObjectStoreExt;
use txflow_core::transaction::DecimalMark;
use txflow_core::{BoxError, RawRecord, RecordSource};
use txflow_csv::{Decoded, Decoder, Dialect};

use crate::error::{Error, Result};
use crate::location::Location;

/// One CSV input, read as a stream of chunks: only the current chunk and
/// the current record are held in memory.
pub struct CsvSource {
    url: Arc<str>,
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    decoder: Decoder,
    done: bool,
}

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
        let stream = match location.store().get(location.path()).await {
            Ok(result) => result.into_stream(),
            Err(object_store::Error::NotFound { .. }) => return Err(Error::NotFound { url }),
            Err(source) => return Err(Error::Store { url, source }),
        };
        let mut source = CsvSource {
            url: Arc::from(url),
            stream,
            decoder: Decoder::new(dialect),
            done: false,
        };
        source.fill(true).await?;
        Ok(source)
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
                    Some(Ok(chunk)) => self.decoder.push(&chunk),
                    Some(Err(source)) => {
                        return Err(Error::Store {
                            url: self.url.to_string(),
                            source,
                        });
                    }
                    None => self.decoder.finish(),
                },
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
