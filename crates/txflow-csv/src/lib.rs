//! The CSV format of txflow's inputs and outputs. Pure: bytes in, records out.
//!
//! - [`Decoder`]: incremental decoding. The caller pushes chunks of bytes as
//!   they arrive (from a file or an object store) and pulls records, each with
//!   its line number, byte offset and raw text. Memory is bounded by
//!   [`MAX_RECORD_BYTES`], never by the file: a longer record is skipped to
//!   its end and handed over as oversized, its start kept.
//! - [`Dialect`]: the reference dialect (`;`, decimal comma) or the common one
//!   (`,`, decimal point), detected from the header and first row or forced.
//! - [`labeled`]: labeled files (description, category, optional fields),
//!   what `txflow train` and `txflow evaluate` read.
//! - [`write`]: writing transactions and rejected rows back out as CSV.

mod decoder;
mod dialect;
mod error;
pub mod labeled;
pub mod write;

pub use decoder::{Decoded, Decoder, KEPT_BYTES, MAX_RECORD_BYTES};
pub use dialect::Dialect;
pub use error::{Error, Result};
