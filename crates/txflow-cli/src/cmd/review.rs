//! `txflow review`: the predictions queued for a person (`--review-below`),
//! their labels, and the review page.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use chrono::{DateTime, Utc};
use txflow_core::{
    Category, Label, LabelError, LabelSource, QueueFilter, ReviewStore, Secret, TransactionId,
};
use txflow_csv::labeled::{Columns, LabeledFields, write_header, write_row};
use txflow_http::review::{MAX_LIMIT, ReviewConfig, item_json};

use crate::store::{DEFAULT_DATABASE, Store};

const EXAMPLES: &str = "\
Examples:
  txflow batch statements.csv --classifier file:///models/us.txm --review-below 0.6
  txflow review list --limit 20
  txflow review label 0b6c3c1e-4f0e-5a43-9d55-0c2f7f3b5a11 Groceries --by ana
  txflow review serve --listen 127.0.0.1:8600     # the page, for people
  txflow review export --output labels.csv
  txflow train base.csv labels.csv --output next.txm    # or: txflow train --from-database
  txflow review import labels-from-elsewhere.csv --by finance-team

A label wins over every model in the views (transactions_with_latest_prediction,
category_totals). It must be a category of the model that queued the
transaction.";

/// Review the predictions a model was unsure of: list them, label them
/// (here or on the review page), export the labels to train the next model.
#[derive(Debug, clap::Args)]
#[command(after_long_help = EXAMPLES)]
pub struct Args {
    /// The database: postgres://user:password@host:port/db or
    /// sqlite://path/to/file.db.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE, hide_env_values = true, global = true)]
    database_url: Secret,

    #[command(subcommand)]
    command: ReviewCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ReviewCommand {
    /// The queue, least confident first.
    List {
        /// An array of objects: transaction_id, description, merchant,
        /// amount, timestamp, model_version, category, confidence, top (the
        /// model's best three with their confidences).
        #[arg(long)]
        json: bool,
        /// Only the items of this model version.
        #[arg(long)]
        model: Option<String>,
        /// Only the items the model put in this category.
        #[arg(long)]
        category: Option<String>,
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..=MAX_LIMIT))]
        limit: i64,
    },
    /// Label one transaction (a label given again replaces the first).
    Label {
        #[arg(value_name = "TRANSACTION_ID")]
        id: String,
        #[arg(value_name = "CATEGORY")]
        category: String,
        /// Who labels (default: the user running the command).
        #[arg(long)]
        by: Option<String>,
    },
    /// Write every label with its transaction as a labeled file that
    /// `txflow train` reads (and `review import` reads back).
    Export {
        #[arg(long, short)]
        output: PathBuf,
        /// Only labels given at or after this time (RFC 3339).
        #[arg(long, value_parser = super::reclassify::parse_time)]
        since: Option<DateTime<Utc>>,
    },
    /// Labels made elsewhere: a labeled file with transaction_id and
    /// category columns (what `review export` writes).
    Import {
        #[arg(value_name = "FILE.csv")]
        file: String,
        /// Recorded as who labeled.
        #[arg(long, default_value = "import")]
        by: String,
    },
    /// The review page (`/`) and its JSON API (`/api/queue`, `/api/labels`).
    Serve {
        #[arg(long, env = "TXFLOW_REVIEW_LISTEN", default_value = "127.0.0.1:8600")]
        listen: SocketAddr,
        /// Require a token on every route but /health: a file of tokens,
        /// one a line (the page asks for one and keeps it in a cookie).
        #[arg(long, env = "TXFLOW_AUTH_TOKEN_FILE")]
        auth_token_file: Option<PathBuf>,
        /// Serve HTTPS with this certificate chain (PEM, leaf first).
        #[arg(long, env = "TXFLOW_TLS_CERT", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The private key of --tls-cert (PEM).
        #[arg(long, env = "TXFLOW_TLS_KEY", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
}

fn transaction_id(text: &str, what: &str) -> Result<TransactionId> {
    TransactionId::parse(text).ok_or_else(|| {
        anyhow!("{what}: {text:?} is not a transaction id (a UUID, as `txflow review list` shows)")
    })
}

fn user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "cli".to_owned())
}

/// Stores a label; a refusal says why, naming the transaction.
async fn store_label(store: &dyn ReviewStore, label: &Label) -> Result<()> {
    match store.label(label).await {
        Ok(()) => Ok(()),
        Err(LabelError::Store(e)) => Err(anyhow!(e)).context("storing the label"),
        Err(e) => Err(e.into()),
    }
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let store = Store::open(
        args.database_url.expose(),
        crate::store::default_max_outage(),
    )
    .await?;
    let reviews: &dyn ReviewStore = &*store;
    match args.command {
        ReviewCommand::List {
            json,
            model,
            category,
            limit,
        } => {
            let filter = QueueFilter {
                model_version: model,
                category,
                limit,
            };
            let items = reviews.queue(&filter).await.map_err(|e| anyhow!(e))?;
            if json {
                let all: Vec<_> = items.iter().map(item_json).collect();
                println!("{}", serde_json::to_string_pretty(&all)?);
                return Ok(ExitCode::SUCCESS);
            }
            let progress = reviews.progress().await.map_err(|e| anyhow!(e))?;
            println!("{progress}");
            for item in &items {
                let top: Vec<String> = item
                    .top
                    .iter()
                    .map(|r| format!("{} {:.0}%", r.category, r.confidence * 100.0))
                    .collect();
                println!(
                    "{}  {:>10}  {:<40.40}  {:<16.16}  {}",
                    item.transaction_id,
                    item.amount,
                    item.description,
                    item.merchant.as_deref().unwrap_or("-"),
                    top.join(" | ")
                );
            }
        }
        ReviewCommand::Label { id, category, by } => {
            let label = Label {
                transaction_id: transaction_id(&id, "TRANSACTION_ID")?,
                category: Category::new(&category)?,
                labeled_by: by.unwrap_or_else(user),
                source: LabelSource::Review,
            };
            store_label(reviews, &label).await?;
            println!("{} labeled {}", label.transaction_id, label.category);
        }
        ReviewCommand::Export { output, since } => {
            let rows = reviews.labeled(since).await.map_err(|e| anyhow!(e))?;
            let columns = Columns {
                merchant: true,
                amount: true,
                side: true,
                operation_type: true,
                transaction_id: true,
            };
            let mut out = Vec::new();
            write_header(&mut out, columns);
            for r in &rows {
                let id = r.transaction_id.to_string();
                let fields = LabeledFields {
                    description: &r.description,
                    category: r.category.as_str(),
                    merchant: r.merchant.as_deref(),
                    amount: Some(r.amount),
                    side: Some(r.side),
                    operation_type: Some(&r.operation_type),
                    transaction_id: Some(&id),
                };
                write_row(&mut out, columns, &fields);
            }
            std::fs::write(&output, out)
                .with_context(|| format!("writing {}", output.display()))?;
            println!("{} label(s) written to {}", rows.len(), output.display());
        }
        ReviewCommand::Import { file, by } => {
            let s3 = crate::learned::s3_from_env();
            let location = txflow_storage::Location::parse(&file, &s3)?;
            let bytes = location
                .read_all()
                .await
                .with_context(|| format!("reading {file}"))?;
            let records = txflow_csv::labeled::read_labeled(&bytes)
                .with_context(|| format!("the labeled file {file}"))?;
            // Every row checked before any is stored.
            let mut labels = Vec::with_capacity(records.len());
            for r in &records {
                let Some(id) = &r.transaction_id else {
                    bail!(
                        "{file} row {}: no transaction_id; importing needs a transaction_id column (as `txflow review export` writes)",
                        r.row
                    );
                };
                labels.push(Label {
                    transaction_id: transaction_id(id, &format!("{file} row {}", r.row))?,
                    category: Category::new(&r.category)
                        .with_context(|| format!("{file} row {}", r.row))?,
                    labeled_by: by.clone(),
                    source: LabelSource::Import,
                });
            }
            for (label, r) in labels.iter().zip(&records) {
                store_label(reviews, label)
                    .await
                    .with_context(|| format!("{file} row {}", r.row))?;
            }
            println!("{} label(s) imported from {file}", labels.len());
        }
        ReviewCommand::Serve {
            listen,
            auth_token_file,
            tls_cert,
            tls_key,
        } => {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| {
                    format!("listening on {listen} (is the port in use? try --listen)")
                })?;
            let address = listener.local_addr().context("reading the bound address")?;
            let tokens = auth_token_file
                .as_deref()
                .map(txflow_http::Tokens::load)
                .transpose()?;
            let tls = match (&tls_cert, &tls_key) {
                (Some(cert), Some(key)) => Some(txflow_http::tls::server_config(cert, key)?),
                _ => None,
            };
            let scheme = if tls.is_some() { "https" } else { "http" };
            tracing::info!(%address, database = %store.describe(), auth = tokens.is_some(),
                "serving the review page");
            println!("review page: {scheme}://{address}/");
            let config = ReviewConfig {
                store: store.database() as Arc<dyn ReviewStore>,
                tokens,
                tls,
            };
            txflow_http::review::serve(listener, config, crate::signal::shutdown())
                .await
                .context("serving the review page")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
