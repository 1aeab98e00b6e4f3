//! `txflow diff`: what changes between two model versions over the
//! transactions both classified.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde_json::json;
use txflow_core::Secret;
use txflow_core::registry::DiffCell;
use txflow_http::html::escape;

/// Compare two model versions: a confusion matrix of old against new
/// category, the counts and amounts that move between categories, and a
/// few transactions of each cell; as a table, `--json`, or `--html FILE`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The version compared from (e.g. the active model).
    #[arg(long)]
    from: String,
    /// The version compared to (e.g. a candidate).
    #[arg(long)]
    to: String,
    /// The database: postgres://user:password@host:port/db or
    /// sqlite://path/to/file.db.
    #[arg(long, env = "DATABASE_URL", default_value = crate::store::DEFAULT_DATABASE, hide_env_values = true)]
    database_url: Secret,
    /// As JSON (with a top-level `changed` count).
    #[arg(long)]
    json: bool,
    /// Also write an HTML page with the matrix as a heatmap.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

/// The figures of a diff.
struct Summary {
    compared: i64,
    changed: i64,
    categories: Vec<String>,
}

fn summarise(cells: &[DiffCell]) -> Summary {
    let compared = cells.iter().map(|c| c.count).sum();
    let changed = cells
        .iter()
        .filter(|c| c.from != c.to)
        .map(|c| c.count)
        .sum();
    let categories: BTreeSet<String> = cells
        .iter()
        .flat_map(|c| [c.from.clone(), c.to.clone()])
        .collect();
    Summary {
        compared,
        changed,
        categories: categories.into_iter().collect(),
    }
}

fn count(cells: &[DiffCell], from: &str, to: &str) -> i64 {
    cells
        .iter()
        .find(|c| c.from == from && c.to == to)
        .map_or(0, |c| c.count)
}

fn euros(cents: i64) -> String {
    format!(
        "{}{}.{:02}",
        if cents < 0 { "-" } else { "" },
        cents.abs() / 100,
        cents.abs() % 100
    )
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let database = super::models::open(&args.database_url).await?;
    let cells = database
        .diff(&args.from, &args.to)
        .await
        .map_err(super::models::store_error)?;
    if cells.is_empty() {
        bail!(
            "no transaction has a prediction from both {:?} and {:?}: `txflow models list` shows the versions; `txflow reclassify` adds one",
            args.from,
            args.to
        );
    }
    let s = summarise(&cells);
    let unchanged_share = (s.compared - s.changed) as f64 / s.compared as f64;
    let mut moves: Vec<&DiffCell> = cells.iter().filter(|c| c.from != c.to).collect();
    moves.sort_by_key(|c| std::cmp::Reverse(c.count));
    if let Some(path) = &args.html {
        std::fs::write(path, html(&args.from, &args.to, &cells, &s))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        let out = json!({
            "from": args.from,
            "to": args.to,
            "compared": s.compared,
            "changed": s.changed,
            "unchanged_share": unchanged_share,
            "cells": cells.iter().map(|c| json!({
                "from": c.from, "to": c.to, "count": c.count,
                "amount": euros(c.amount_cents), "examples": c.examples,
            })).collect::<Vec<_>>(),
        });
        println!("{out:#}");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} → {}: {} transaction(s) compared, {} changed category, {:.1} % unchanged\n",
        args.from,
        args.to,
        s.compared,
        s.changed,
        unchanged_share * 100.0
    );
    // The matrix: rows are the old category, columns the new one.
    let width = s
        .categories
        .iter()
        .map(String::len)
        .max()
        .unwrap_or(4)
        .max(6);
    let mut line = format!("{:<width$}", "from \\ to");
    for c in &s.categories {
        let _ = write!(line, " {:>7}", abbreviate(c));
    }
    println!("{line}");
    for from in &s.categories {
        let mut line = format!("{from:<width$}");
        for to in &s.categories {
            let _ = write!(line, " {:>7}", count(&cells, from, to));
        }
        println!("{line}");
    }
    println!("\nMOVES (most first)");
    for c in moves.iter().take(20) {
        println!(
            "  {:>6}  {} → {}  ({} in amounts; e.g. {})",
            c.count,
            c.from,
            c.to,
            euros(c.amount_cents),
            c.examples.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A column heading of at most 7 characters.
fn abbreviate(category: &str) -> String {
    category.chars().take(7).collect()
}

/// The page: the matrix as a table whose cells are shaded by their share
/// of the row, the diagonal (unchanged) in green, moves in red.
fn html(from: &str, to: &str, cells: &[DiffCell], s: &Summary) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>txflow diff {f} → {t}</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{background:#f4f4f4}}\
         td.cat,th.cat{{text-align:left}}</style></head><body>\
         <h1>{f} → {t}</h1><p>{n} transactions compared; <strong>{c} changed category</strong> \
         ({u:.1} % unchanged). Rows: the category from {f}; columns: from {t}. \
         A cell's shade is its share of the row; hover for examples.</p><table><tr><th class=\"cat\">from \\ to</th>",
        f = escape(from),
        t = escape(to),
        n = s.compared,
        c = s.changed,
        u = (s.compared - s.changed) as f64 * 100.0 / s.compared as f64,
    );
    for c in &s.categories {
        let _ = write!(page, "<th>{}</th>", escape(c));
    }
    page.push_str("</tr>\n");
    for row in &s.categories {
        let total: i64 = cells
            .iter()
            .filter(|c| &c.from == row)
            .map(|c| c.count)
            .sum();
        let _ = write!(page, "<tr><th class=\"cat\">{}</th>", escape(row));
        for col in &s.categories {
            let cell = cells.iter().find(|c| &c.from == row && &c.to == col);
            let n = cell.map_or(0, |c| c.count);
            let share = if total > 0 {
                n as f64 / total as f64
            } else {
                0.0
            };
            let (r, g, b) = if row == col {
                (46, 160, 67)
            } else {
                (207, 34, 46)
            };
            let title = cell.map_or(String::new(), |c| {
                format!(
                    "{} in amounts; e.g. {}",
                    euros(c.amount_cents),
                    c.examples.join(", ")
                )
            });
            let _ = write!(
                page,
                "<td style=\"background:rgba({r},{g},{b},{share:.2})\" title=\"{}\">{n}</td>",
                escape(&title)
            );
        }
        page.push_str("</tr>\n");
    }
    page.push_str("</table></body></html>\n");
    page
}
