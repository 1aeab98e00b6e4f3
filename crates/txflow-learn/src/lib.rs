//! txflow's learned classifier. Pure: rows in, a model out; bytes in, a
//! model out; no I/O (the binary reads and writes the files).
//!
//! - [`features`]: the one feature extraction of training and prediction
//!   (hashed words, word pairs and character n-grams within words, and the
//!   optional fields).
//! - [`train`]: multinomial logistic regression by L-BFGS, deterministic
//!   for a seed on any number of cores, and a temperature fitted on held-out
//!   merchants.
//! - [`model`]: [`LearnedModel`], an in-process [`txflow_core::Model`].
//! - [`file`]: the `.txm` model file: signature, format version, a JSON
//!   header (labels, features, calibration, training data hash and metrics),
//!   the weights, and a SHA-256 of it all.
//! - [`evaluate`]: accuracy, macro-F1, per-category scores, confusion
//!   matrix, expected calibration error and the reliability diagram.
//! - [`split`]: splitting labeled rows by merchant.

pub mod error;
pub mod evaluate;
pub mod features;
pub mod file;
pub mod model;
pub mod split;
pub mod train;

pub use error::{Error, Result};
pub use evaluate::{Evaluation, evaluate};
pub use features::{FeatureSettings, Input};
pub use model::{Header, LearnedModel};
pub use train::{LabeledRow, TrainOptions, Trained, train};
