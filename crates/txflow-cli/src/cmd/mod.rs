//! One file per subcommand: its flags (`Args`) and its `run`.

pub mod batch;
pub mod generate;
pub mod migrate;
pub mod serve;
