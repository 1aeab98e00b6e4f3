//! A run's invalid rows, as a CSV file people can open.

use object_store::buffered::BufWriter;
use tokio::io::AsyncWriteExt;
use txflow_core::{BoxError, RejectLog, RejectedRecord};
use txflow_csv::write;

use crate::error::{Error, Result};
use crate::location::Location;

/// Writes rejected rows to one file, created at the first one: a clean run
/// leaves no file behind. Large files are uploaded in parts as they grow.
pub struct RejectFile {
    target: Location,
    writer: Option<BufWriter>,
    rows: u64,
    buf: Vec<u8>,
}

impl std::fmt::Debug for RejectFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RejectFile")
            .field("target", &self.target.url())
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl RejectFile {
    pub fn new(target: Location) -> Self {
        RejectFile {
            target,
            writer: None,
            rows: 0,
            buf: Vec::new(),
        }
    }

    pub fn url(&self) -> String {
        self.target.url()
    }

    /// Completes the upload. Returns the file's URL and row count, or `None`
    /// when no row was rejected.
    async fn complete(mut self) -> Result<Option<(String, u64)>> {
        let Some(mut writer) = self.writer.take() else {
            return Ok(None);
        };
        writer.shutdown().await.map_err(|source| Error::Write {
            url: self.url(),
            source,
        })?;
        Ok(Some((self.url(), self.rows)))
    }
}

impl RejectLog for RejectFile {
    async fn append(&mut self, rejected: &[RejectedRecord]) -> Result<(), BoxError> {
        self.buf.clear();
        let writer = match &mut self.writer {
            Some(w) => w,
            None => {
                write::rejected_header(&mut self.buf);
                let store = std::sync::Arc::clone(self.target.store());
                self.writer
                    .insert(BufWriter::new(store, self.target.path().clone()))
            }
        };
        for r in rejected {
            write::rejected(&mut self.buf, r);
        }
        writer
            .write_all(&self.buf)
            .await
            .map_err(|source| Error::Write {
                url: self.target.url(),
                source,
            })?;
        self.rows += rejected.len() as u64;
        Ok(())
    }

    async fn finish(self) -> Result<Option<(String, u64)>, BoxError> {
        Ok(self.complete().await?)
    }
}
