//! One file per subcommand: its flags (`Args`) and its `run`.

pub mod batch;
pub mod generate;
pub mod list;
pub mod migrate;
pub mod runs;
pub mod serve;
