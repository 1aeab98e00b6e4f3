//! One file per subcommand: its flags (`Args`) and its `run`.

pub mod batch;
#[cfg(feature = "kafka")]
pub mod consume;
pub mod diff;
#[cfg(feature = "kafka")]
pub mod dlq;
pub mod evaluate;
pub mod generate;
#[cfg(feature = "kafka")]
pub mod lake;
pub mod list;
pub mod migrate;
pub mod models;
#[cfg(feature = "kafka")]
pub mod produce;
pub mod reclassify;
pub mod review;
pub mod runs;
pub mod serve;
#[cfg(feature = "kafka")]
pub mod sink;
pub mod split;
pub mod top;
#[cfg(feature = "kafka")]
pub mod topics;
pub mod train;
