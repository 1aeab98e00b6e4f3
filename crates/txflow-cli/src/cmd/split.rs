//! `txflow split`: a labeled file cut in two by merchant.

use std::process::ExitCode;

use anyhow::{Context, Result};
use txflow_csv::labeled::{Columns, LabeledFields, write_header, write_row};

/// Cut labeled files in two by merchant: no merchant on both sides, so a
/// model evaluated on the second part meets merchants it never saw (a
/// random row split puts a merchant on both sides and flatters any model).
///
/// A row's merchant is its merchant column, else the first word of its
/// description that is not a payment rail's (pp, zelle, payment, ...).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(required = true, value_name = "LABELS.csv")]
    labels: Vec<String>,

    /// Share of the merchants that go to --test.
    #[arg(long, default_value_t = 0.2)]
    test_fraction: f64,

    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// Where the rest goes (CSV: description, category and the optional
    /// columns the input had).
    #[arg(long)]
    train: std::path::PathBuf,

    #[arg(long)]
    test: std::path::PathBuf,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let rows = crate::learned::read_labeled(&args.labels).await?;
    let columns = Columns {
        merchant: rows.iter().any(|r| r.merchant.is_some()),
        amount: rows.iter().any(|r| r.amount_cents.is_some()),
        side: rows.iter().any(|r| r.side.is_some()),
        operation_type: rows.iter().any(|r| r.operation_type.is_some()),
        transaction_id: false,
    };
    let (mut train, mut test) = (Vec::new(), Vec::new());
    write_header(&mut train, columns);
    write_header(&mut test, columns);
    let (mut n_train, mut n_test) = (0, 0);
    for r in &rows {
        let out = if r.held_out(args.test_fraction, args.seed) {
            n_test += 1;
            &mut test
        } else {
            n_train += 1;
            &mut train
        };
        let fields = LabeledFields {
            description: &r.description,
            category: &r.category,
            merchant: r.merchant.as_deref(),
            amount: r.amount_cents.and_then(txflow_core::Amount::from_cents),
            side: r.side,
            operation_type: r.operation_type.as_deref(),
            transaction_id: None,
        };
        write_row(out, columns, &fields);
    }
    std::fs::write(&args.train, train)
        .with_context(|| format!("writing {}", args.train.display()))?;
    std::fs::write(&args.test, test).with_context(|| format!("writing {}", args.test.display()))?;
    println!(
        "{} rows: {n_train} to {}, {n_test} to {} (merchants split {:.0} %/{:.0} %, seed {})",
        rows.len(),
        args.train.display(),
        args.test.display(),
        (1.0 - args.test_fraction) * 100.0,
        args.test_fraction * 100.0,
        args.seed
    );
    Ok(ExitCode::SUCCESS)
}
