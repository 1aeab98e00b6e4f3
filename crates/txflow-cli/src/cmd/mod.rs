//! One file per subcommand: its flags (`Args`) and its `run`.

pub mod batch;
pub mod consume;
pub mod diff;
pub mod dlq;
pub mod evaluate;
pub mod generate;
pub mod list;
pub mod migrate;
pub mod models;
pub mod produce;
pub mod reclassify;
pub mod review;
pub mod runs;
pub mod serve;
pub mod sink;
pub mod split;
pub mod top;
pub mod topics;
pub mod train;
