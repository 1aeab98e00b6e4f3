//! `txflow list`: the files a batch run would read.

use std::process::ExitCode;
use txflow_core::Secret;

use anyhow::Result;

use crate::inputs::{self, S3Args};
use crate::store::{DEFAULT_DATABASE, Store, default_max_outage};

/// Print the .csv files that `txflow batch` would read for these inputs, one
/// URL per line (or a JSON array): what a scheduler maps one task per file over.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files, folders or prefixes, as for `txflow batch`.
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<String>,

    /// Leave out the files some earlier run has read to the end (looked up
    /// in the database's run_files table).
    #[arg(long)]
    skip_done: bool,

    /// The database --skip-done looks in.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE, hide_env_values = true)]
    database_url: Secret,

    /// One JSON array on one line instead of one URL per line.
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    s3: S3Args,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let (mut inputs, _) = inputs::resolve(&args.inputs, &args.s3.options()).await?;
    if args.skip_done {
        let store = Store::open(args.database_url.expose(), default_max_outage()).await?;
        inputs::skip_done(&store, &mut inputs).await?;
    }
    let urls: Vec<String> = inputs.iter().map(|i| i.location.url()).collect();
    if args.json {
        println!("{}", serde_json::to_string(&urls)?);
    } else {
        for url in urls {
            println!("{url}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
