//! `txflow split`: a labeled file cut in two by merchant.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::{Context, Result};

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
    let merchant = rows.iter().any(|r| r.merchant.is_some());
    let amount = rows.iter().any(|r| r.amount_cents.is_some());
    let side = rows.iter().any(|r| r.side.is_some());
    let op = rows.iter().any(|r| r.operation_type.is_some());
    let header = || {
        let mut h = String::from("description,category");
        for (present, name) in [
            (merchant, "merchant"),
            (amount, "amount"),
            (side, "side"),
            (op, "operation_type"),
        ] {
            if present {
                h.push(',');
                h.push_str(name);
            }
        }
        h.push('\n');
        h
    };
    let (mut train, mut test) = (header(), header());
    let (mut n_train, mut n_test) = (0, 0);
    for r in &rows {
        let out = if r.held_out(args.test_fraction, args.seed) {
            n_test += 1;
            &mut test
        } else {
            n_train += 1;
            &mut train
        };
        let _ = write!(out, "{},{}", quote(&r.description), quote(&r.category));
        if merchant {
            let _ = write!(out, ",{}", quote(r.merchant.as_deref().unwrap_or("")));
        }
        if amount {
            let a = r
                .amount_cents
                .and_then(txflow_core::Amount::from_cents)
                .map(|a| a.to_string())
                .unwrap_or_default();
            let _ = write!(out, ",{a}");
        }
        if side {
            let _ = write!(out, ",{}", r.side.map(|s| s.as_str()).unwrap_or(""));
        }
        if op {
            let _ = write!(out, ",{}", quote(r.operation_type.as_deref().unwrap_or("")));
        }
        out.push('\n');
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

/// A CSV field, quoted when it must be.
pub fn quote(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r', ';']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}
