//! `txflow migrate`: bring a database's schema up to date.

use std::process::ExitCode;
use txflow_core::Secret;

use anyhow::Result;

use crate::store::{DEFAULT_DATABASE, Store, default_max_outage};

/// Create or upgrade the database schema (also done by every run).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// postgres://user:password@host:port/db, or sqlite://path.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE, hide_env_values = true)]
    database_url: Secret,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let store = Store::open(args.database_url.expose(), default_max_outage()).await?;
    println!("schema up to date in {}", store.describe());
    Ok(ExitCode::SUCCESS)
}
