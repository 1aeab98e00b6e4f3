//! One file per subcommand: its flags (`Args`) and its `run`.

pub mod batch;
pub mod consume;
pub mod dlq;
pub mod generate;
pub mod list;
pub mod migrate;
pub mod produce;
pub mod runs;
pub mod serve;
pub mod sink;
pub mod top;
pub mod topics;
