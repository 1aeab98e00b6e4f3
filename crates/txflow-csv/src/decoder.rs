//! Incremental CSV decoding that keeps, for every record, where it started
//! (line and byte offset) and its raw text, so a rejected row can be reported
//! exactly as it stood.

use csv_core::{ReadRecordResult, Reader, ReaderBuilder};
use txflow_core::{Column, Oversized, Position, RawRecord};

use crate::dialect::Dialect;
use crate::error::{Error, Result};

/// The longest record read. A longer one (a huge field, or a quote left
/// open) is skipped to its end, in bounded memory, and handed over as an
/// [`Oversized`] record whose raw text is its first [`KEPT_BYTES`].
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// How much of an oversized record is kept, for the rejected row.
pub const KEPT_BYTES: usize = 4096;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// What [`Decoder::advance`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// Push more bytes, or call [`Decoder::finish`] at the end of the input.
    NeedInput,
    /// A data record is ready: read it with [`Decoder::record`].
    Record,
    /// The input is exhausted.
    End,
}

/// The header's mapping of columns to field indexes.
#[derive(Debug, Clone)]
struct Header {
    index: [Option<usize>; 7],
    width: usize,
}

#[derive(Debug, Clone, Copy)]
struct Current {
    position: Position,
    raw: (usize, usize),
    fields: usize,
    /// Set for a record skipped for its length (its start is in `kept`).
    oversized: Option<Oversized>,
}

/// A record being skipped for its length.
#[derive(Debug)]
struct Skip {
    position: Position,
    length: u64,
    quotes: u64,
}

/// Decodes one CSV input pushed in chunks.
#[derive(Debug)]
pub struct Decoder {
    forced: Option<Dialect>,
    dialect: Option<Dialect>,
    reader: Option<Reader>,
    /// The delimiter the reader was built with.
    delimiter: u8,
    header: Option<Header>,
    /// Input not yet consumed, preceded by the raw bytes of the record being read.
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    base: u64,
    /// How far the CSV reader has consumed `buf`.
    pos: usize,
    /// Where the record being read starts in `buf`.
    start: usize,
    /// Line feeds in the file before `buf[start]`.
    lines_before: u64,
    out: Vec<u8>,
    ends: Vec<usize>,
    nout: usize,
    nend: usize,
    current: Option<Current>,
    /// The record being skipped, if any; its first bytes are in `kept`.
    skip: Option<Skip>,
    kept: Vec<u8>,
    peeked: bool,
    bom_checked: bool,
    eof: bool,
}

impl Decoder {
    /// A decoder for one input. With `dialect` `None`, the delimiter is
    /// detected from the header line and the decimal mark from the first row.
    pub fn new(dialect: Option<Dialect>) -> Self {
        Decoder {
            forced: dialect,
            dialect: None,
            reader: None,
            delimiter: b',',
            header: None,
            buf: Vec::new(),
            base: 0,
            pos: 0,
            start: 0,
            lines_before: 0,
            out: vec![0; 4096],
            ends: vec![0; 32],
            nout: 0,
            nend: 0,
            current: None,
            skip: None,
            kept: Vec::new(),
            peeked: false,
            bom_checked: false,
            eof: false,
        }
    }

    /// Appends the next chunk of input.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.start > 0 {
            // Nothing before the current record is needed any more.
            self.buf.drain(..self.start);
            self.base += self.start as u64;
            self.pos -= self.start;
            self.start = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    /// Marks the end of the input.
    pub fn finish(&mut self) {
        self.eof = true;
    }

    /// The dialect in use: the forced one, or what the header and first row
    /// showed (before the first row, the delimiter's usual decimal mark).
    pub fn dialect(&self) -> Dialect {
        self.dialect.or(self.forced).unwrap_or(Dialect {
            delimiter: self.delimiter,
            decimal: Dialect::default_decimal(self.delimiter),
        })
    }

    /// Whether a header was found (an empty input has none).
    pub fn has_header(&self) -> bool {
        self.header.is_some()
    }

    /// Bytes the decoder holds in its buffers (capacity): bounded by about
    /// four times [`MAX_RECORD_BYTES`] (input and field buffers grow by
    /// doubling), plus the largest chunk pushed.
    pub fn buffered(&self) -> usize {
        self.buf.capacity() + self.out.capacity() + self.kept.capacity()
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Moves to the first record without consuming it: the next
    /// [`Decoder::advance`] returns it again. Used to settle the dialect
    /// before the first record is validated.
    pub fn peek(&mut self) -> Result<Decoded> {
        let found = self.advance()?;
        self.peeked = found == Decoded::Record;
        Ok(found)
    }

    /// Decodes up to the next data record.
    pub fn advance(&mut self) -> Result<Decoded> {
        if std::mem::take(&mut self.peeked) {
            return Ok(Decoded::Record);
        }
        if self.current.take().is_some() {
            self.lines_before += count_lf(&self.buf[self.start..self.pos]);
            self.start = self.pos;
            self.nout = 0;
            self.nend = 0;
        }
        loop {
            if !self.bom_checked {
                if self.buf.len() < BOM.len() && !self.eof {
                    return Ok(Decoded::NeedInput);
                }
                if self.buf.starts_with(BOM) {
                    self.pos = BOM.len();
                    self.start = BOM.len();
                }
                self.bom_checked = true;
            }
            if self.reader.is_none() {
                let rest = &self.buf[self.pos..];
                let line = match rest.iter().position(|&b| b == b'\n') {
                    Some(end) => &rest[..end],
                    None if self.eof => rest,
                    None => return self.need_input(),
                };
                self.delimiter = self
                    .forced
                    .map_or_else(|| Dialect::detect_delimiter(line), |d| d.delimiter);
                self.reader = Some(ReaderBuilder::new().delimiter(self.delimiter).build());
            }
            let input = &self.buf[self.pos..];
            if input.is_empty() && !self.eof {
                return self.need_input();
            }
            let Some(reader) = self.reader.as_mut() else {
                unreachable!("built above")
            };
            let (result, nin, nout, nend) = reader.read_record(
                input,
                &mut self.out[self.nout..],
                &mut self.ends[self.nend..],
            );
            self.pos += nin;
            self.nout += nout;
            self.nend += nend;
            if self.skip.is_some() {
                if let Some(found) = self.skip_step(result) {
                    return Ok(found);
                }
                continue;
            }
            match result {
                ReadRecordResult::InputEmpty => {
                    if !self.eof {
                        return self.need_input();
                    }
                }
                ReadRecordResult::OutputFull => {
                    let len = self.out.len();
                    self.out.resize(len * 2, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let len = self.ends.len();
                    self.ends.resize(len * 2, 0);
                }
                ReadRecordResult::Record => {
                    let current = self.complete();
                    if self.header.is_some() {
                        self.settle_decimal(current.fields);
                        self.current = Some(current);
                        return Ok(Decoded::Record);
                    }
                    self.read_header(current.fields)?;
                    self.lines_before += count_lf(&self.buf[self.start..self.pos]);
                    self.start = self.pos;
                    self.nout = 0;
                    self.nend = 0;
                }
                ReadRecordResult::End => return Ok(Decoded::End),
            }
            self.check_length()?;
        }
    }

    /// One step of skipping an oversized record: the bytes just consumed
    /// are counted and let go. Returns what to hand back, if anything.
    fn skip_step(&mut self, result: ReadRecordResult) -> Option<Decoded> {
        let consumed = &self.buf[self.start..self.pos];
        let lines = count_lf(consumed);
        let quotes = count_quotes(consumed);
        let trail = trailing_breaks(consumed) as u64;
        let length = consumed.len() as u64;
        let skip = self.skip.as_mut()?;
        skip.length += length;
        skip.quotes += quotes;
        self.lines_before += lines;
        // Nothing of the record is needed any more: `push` drops it.
        self.start = self.pos;
        // The fields are not kept: reuse the output buffers.
        self.nout = 0;
        self.nend = 0;
        match result {
            ReadRecordResult::InputEmpty if !self.eof => Some(Decoded::NeedInput),
            ReadRecordResult::InputEmpty
            | ReadRecordResult::OutputFull
            | ReadRecordResult::OutputEndsFull => None,
            ReadRecordResult::Record | ReadRecordResult::End => {
                let skip = self.skip.take()?;
                let unclosed_quote = self.eof && self.pos == self.buf.len() && skip.quotes % 2 == 1;
                self.current = Some(Current {
                    position: skip.position,
                    raw: (0, 0),
                    fields: 0,
                    oversized: Some(Oversized {
                        length: skip.length - trail.min(skip.length),
                        limit: MAX_RECORD_BYTES as u64,
                        unclosed_quote,
                    }),
                });
                Some(Decoded::Record)
            }
        }
    }

    /// The record [`Decoder::advance`] last returned.
    ///
    /// # Panics
    /// When no record is ready.
    pub fn record(&self) -> RawRecord<'_> {
        let current = self.current.as_ref().expect("advance() returned Record");
        let header = self.header.as_ref().expect("records follow the header");
        if current.oversized.is_some() {
            return RawRecord {
                position: current.position,
                raw: &self.kept,
                fields: [None; 7],
                field_count: 0,
                expected_fields: header.width,
                oversized: current.oversized,
            };
        }
        let fields = std::array::from_fn(|c| {
            header.index[c]
                .filter(|&i| i < current.fields)
                .map(|i| self.field(i))
        });
        RawRecord {
            position: current.position,
            raw: &self.buf[current.raw.0..current.raw.1],
            fields,
            field_count: current.fields,
            expected_fields: header.width,
            oversized: None,
        }
    }

    fn field(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.out[start..self.ends[i]]
    }

    fn need_input(&mut self) -> Result<Decoded> {
        self.check_length()?;
        Ok(Decoded::NeedInput)
    }

    /// Past the limit, a data record is skipped to its end (its start
    /// kept); an over-long header stops the file, there being no columns.
    fn check_length(&mut self) -> Result<()> {
        if self.skip.is_some() || self.pos - self.start <= MAX_RECORD_BYTES {
            return Ok(());
        }
        let (lead, position) = self.record_start();
        let raw = &self.buf[self.start..self.pos];
        if self.header.is_none() {
            return Err(Error::RecordTooLong {
                line: position.line,
                limit: MAX_RECORD_BYTES,
            });
        }
        let record = &raw[lead..];
        self.kept.clear();
        self.kept
            .extend_from_slice(&record[..record.len().min(KEPT_BYTES)]);
        self.lines_before += count_lf(raw);
        self.skip = Some(Skip {
            position,
            length: record.len() as u64,
            quotes: count_quotes(record),
        });
        self.start = self.pos;
        self.nout = 0;
        self.nend = 0;
        Ok(())
    }

    /// Where the record just read starts and ends, without the line breaks
    /// around it (the reader leaves a CRLF's LF and blank lines in front).
    fn complete(&self) -> Current {
        let (lead, position) = self.record_start();
        let trail = trailing_breaks(&self.buf[self.start + lead..self.pos]);
        Current {
            position,
            raw: (self.start + lead, self.pos - trail),
            fields: self.nend,
            oversized: None,
        }
    }

    /// Where the record being read starts: past the line breaks in front of
    /// it (how many), and its line and byte offset.
    fn record_start(&self) -> (usize, Position) {
        let raw = &self.buf[self.start..self.pos];
        let lead = raw
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        let position = Position {
            line: self.lines_before + count_lf(&raw[..lead]) + 1,
            offset: self.base + (self.start + lead) as u64,
        };
        (lead, position)
    }

    fn read_header(&mut self, width: usize) -> Result<()> {
        let mut index = [None; 7];
        let mut found = Vec::with_capacity(width);
        for i in 0..width {
            let cell = String::from_utf8_lossy(self.field(i)).trim().to_owned();
            if let Some(column) = Column::from_header(&cell) {
                let slot = &mut index[column as usize];
                if slot.is_some() {
                    return Err(Error::DuplicateColumn { column });
                }
                *slot = Some(i);
            }
            found.push(cell);
        }
        let missing: Vec<Column> = Column::ALL
            .into_iter()
            .filter(|c| c.required() && index[*c as usize].is_none())
            .collect();
        if !missing.is_empty() {
            return Err(Error::MissingColumns {
                missing,
                found: found.join(", "),
            });
        }
        self.header = Some(Header { index, width });
        Ok(())
    }

    /// Fixes the decimal mark from the first row that tells it.
    fn settle_decimal(&mut self, fields: usize) {
        if self.dialect.is_some() {
            return;
        }
        let amount = self
            .header
            .as_ref()
            .and_then(|h| h.index[Column::Amount as usize]);
        let decimal = amount
            .filter(|&i| i < fields)
            .and_then(|i| Dialect::detect_decimal(self.field(i)))
            .unwrap_or_else(|| Dialect::default_decimal(self.delimiter));
        self.dialect = Some(self.forced.unwrap_or(Dialect {
            delimiter: self.delimiter,
            decimal,
        }));
    }
}

/// How many CR and LF bytes end `bytes`.
fn trailing_breaks(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .rev()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .count()
}

fn count_quotes(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'"').count() as u64
}

fn count_lf(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}
