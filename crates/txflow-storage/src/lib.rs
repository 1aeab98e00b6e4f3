//! txflow's object-store adapter, over the `object_store` crate.
//!
//! - [`Location`]: a local path, a `file://` URL or an `s3://bucket/key`, with
//!   the store that serves it. [`Location::inputs`] expands a folder or prefix
//!   into its `.csv` files.
//! - [`CsvSource`]: a [`txflow_core::RecordSource`] that streams one file
//!   through the incremental CSV decoder: memory does not grow with file size.
//! - [`RejectFile`]: a [`txflow_core::RejectLog`] writing a run's invalid rows
//!   to `<prefix>/<run_id>.csv`, local or on S3.

mod error;
mod location;
mod reject_file;
mod source;

pub use error::{Error, Result};
pub use location::{ERRORS_FOLDER, Input, Location, S3Options};
pub use reject_file::RejectFile;
pub use source::CsvSource;
