//! `txflow models`: the model versions that wrote predictions, and which
//! one is active.

use std::process::ExitCode;

use anyhow::{Result, bail};
use serde_json::json;
use txflow_core::registry::{ModelKind, Registration};
use txflow_core::{ReviewBelow, Secret};

use crate::store::{DEFAULT_DATABASE, Database, Store};

/// List, register and activate model versions.
///
/// The active model's prediction is the one `transactions_with_latest_prediction`
/// (and `category_totals`) show for each transaction; without one, or for a
/// transaction it has not classified, the latest prediction.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: ModelsCommand,

    /// The database: postgres://user:password@host:port/db or
    /// sqlite://path/to/file.db.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE, hide_env_values = true, global = true)]
    database_url: Secret,
}

#[derive(Debug, clap::Subcommand)]
enum ModelsCommand {
    /// Every version: registered, or only seen in predictions.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Register a version (again: update its name, kind and location).
    Register {
        /// The version, as predictions carry it (e.g. merchant-1).
        #[arg(value_name = "VERSION")]
        model: String,
        /// A name for people (default: the version).
        #[arg(long)]
        name: Option<String>,
        /// builtin (in-process), http (a service) or file (a model file:
        /// its label set and training metrics are read and recorded, and
        /// its version must be VERSION).
        #[arg(long, value_parser = ["builtin", "http", "file"])]
        kind: String,
        /// Where it runs: the service's URL or the file's path.
        #[arg(long)]
        location: Option<String>,
        /// The review threshold of runs with this model that give no
        /// --review-below: predictions under it are queued for a person.
        #[arg(long)]
        review_below: Option<ReviewBelow>,
    },
    /// Make a registered version the active one.
    Activate {
        #[arg(value_name = "VERSION")]
        model: String,
    },
}

/// A model file's label set and training metrics (JSON texts), after
/// checking that it holds `version`.
pub(crate) async fn file_description(version: &str, location: &str) -> Result<(String, String)> {
    let model = crate::learned::load_model(location).await?;
    let header = model.header();
    if header.version != version {
        bail!(
            "{location} holds model {}, not {version}: register it as `txflow models register {} --kind file --location {location}`",
            header.version,
            header.version
        );
    }
    let metrics = json!({
        "training": header.training,
        "calibration": header.calibration,
        "features": header.features,
    });
    Ok((serde_json::to_string(&header.labels)?, metrics.to_string()))
}

/// Registers a model; a model file is read first (it must hold the
/// version) and its label set and training metrics recorded with it.
pub(crate) async fn register(database: &dyn Database, model: Registration<'_>) -> Result<()> {
    let described = match (model.kind, model.location) {
        (ModelKind::File, Some(location)) => Some(file_description(model.version, location).await?),
        (ModelKind::File, None) => {
            bail!("--kind file needs --location, the model file's path or URL")
        }
        _ => None,
    };
    database.register(model).await.map_err(store_error)?;
    if let Some((labels, metrics)) = described {
        database
            .describe_model(model.version, &labels, &metrics)
            .await
            .map_err(store_error)?;
    }
    Ok(())
}

/// The database of model versions, reclassifications and diffs.
pub(crate) async fn open(url: &Secret) -> Result<Store> {
    Store::open(url.expose(), crate::store::default_max_outage()).await
}

/// A store's error, for `?` in a command.
pub(crate) fn store_error(e: txflow_core::BoxError) -> anyhow::Error {
    anyhow::anyhow!(e)
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let database = open(&args.database_url).await?;
    match args.command {
        ModelsCommand::List { json } => {
            let models = database.models().await.map_err(store_error)?;
            if json {
                let all: Vec<_> = models
                    .iter()
                    .map(|m| {
                        json!({
                            "version": m.version, "name": m.name, "kind": m.kind_name(),
                            "location": m.location,
                            "registered_at": m.registered_at.map(|t| t.to_rfc3339()),
                            "active": m.active, "predictions": m.predictions,
                            "labels": m.labels.as_deref().and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok()),
                            "metrics": m.metrics.as_deref().and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok()),
                            "review_below": m.review_below,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                println!(
                    "{:<3}{:<20} {:<16} {:<13} {:>12}  LOCATION",
                    "", "VERSION", "NAME", "KIND", "PREDICTIONS"
                );
                for m in &models {
                    println!(
                        "{:<3}{:<20} {:<16} {:<13} {:>12}  {}",
                        if m.active { "*" } else { "" },
                        m.version,
                        m.name,
                        m.kind_name(),
                        m.predictions,
                        m.location.as_deref().unwrap_or("-")
                    );
                }
            }
        }
        ModelsCommand::Register {
            model: version,
            name,
            kind,
            location,
            review_below,
        } => {
            let name = name.unwrap_or_else(|| crate::learned::model_name(&version).to_owned());
            let kind = ModelKind::parse(&kind)
                .ok_or_else(|| anyhow::anyhow!("--kind {kind:?}: use builtin, http or file"))?;
            let model = Registration {
                version: &version,
                name: &name,
                kind,
                location: location.as_deref(),
            };
            register(&*database, model).await?;
            if let Some(below) = review_below {
                database
                    .set_review_below(&version, Some(below.get()))
                    .await
                    .map_err(store_error)?;
            }
            println!("registered {version}");
        }
        ModelsCommand::Activate { model: version } => {
            if !database.activate(&version).await.map_err(store_error)? {
                bail!(
                    "model {version:?} is not registered: `txflow models register {version} --kind ...` first (`txflow models list` shows the versions)"
                );
            }
            println!("{version} is the active model");
        }
    }
    Ok(ExitCode::SUCCESS)
}
