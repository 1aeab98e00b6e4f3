//! `txflow evaluate`: how a model does on labeled rows.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use txflow_core::Model;
use txflow_learn::{Evaluation, Input};

use txflow_http::html::escape;

/// Score a model on labeled files: accuracy, macro-F1, per-category
/// precision, recall, F1 and support, the confusion matrix, and the expected
/// calibration error (15 equal-width bins) with its reliability diagram.
///
/// Give it rows the model was not trained on (`txflow split` cuts a file
/// by merchant), or the figures flatter the model.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model: reference, merchant, or a model file (path, file:///,
    /// s3://).
    #[arg(long)]
    model: String,

    /// Labeled files (description, category; optional merchant, amount,
    /// side, operation_type).
    #[arg(required = true, value_name = "LABELS.csv")]
    labels: Vec<String>,

    /// Print the evaluation as JSON.
    #[arg(long)]
    json: bool,

    /// Also write a report page (one HTML file, no external asset).
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    // A file model reads the labeled row's own fields (what it was trained
    // on); a built-in one reads a transaction made of them.
    let (model, learned): (Arc<dyn Model>, _) = if crate::learned::is_model_file(&args.model) {
        let learned = crate::learned::load_model(&args.model).await?;
        (learned.clone(), Some(learned))
    } else {
        match crate::classifier::in_process_model(&args.model).await? {
            Some(model) => (model, None),
            None => bail!(
                "--model {:?} is not a model: use reference, merchant or a model file",
                args.model
            ),
        }
    };
    let rows = crate::learned::read_labeled(&args.labels).await?;
    let labels = model.labels().clone();
    let names: Vec<String> = labels.names().into_iter().map(str::to_owned).collect();
    let mut truth = Vec::with_capacity(rows.len());
    let mut predicted = Vec::with_capacity(rows.len());
    let mut confidence = Vec::with_capacity(rows.len());
    let mut p_truth = Vec::with_capacity(rows.len());
    let started = Instant::now();
    let mut predicting = Duration::ZERO;
    for (i, row) in rows.iter().enumerate() {
        let Some(y) = labels.index_of(&row.category) else {
            bail!(
                "row {} of the labeled files: category {:?} is not one of model {}'s [{}]; evaluate a model on rows of its own categories",
                i + 1,
                row.category,
                model.version(),
                names.join(", ")
            );
        };
        let (p, c, pt) = match &learned {
            Some(m) => {
                let start = Instant::now();
                let p = m.probabilities_of(&row.input());
                predicting += start.elapsed();
                let (best, q) = txflow_learn::evaluate::top(&p);
                (best, q, p[y])
            }
            None => {
                let tx = transaction_of(row);
                let start = Instant::now();
                let prediction = model.predict(&tx);
                predicting += start.elapsed();
                let best = labels.index_of(prediction.category.as_str()).unwrap_or(0);
                let c = prediction.confidence.unwrap_or(1.0);
                (best, c, if best == y { c } else { 0.0 })
            }
        };
        truth.push(y);
        predicted.push(p);
        confidence.push(c);
        p_truth.push(pt);
    }
    let e = txflow_learn::evaluate(
        model.version(),
        &names,
        &truth,
        &predicted,
        &confidence,
        &p_truth,
    );
    tracing::info!(
        rows = rows.len(),
        seconds = started.elapsed().as_secs_f64(),
        predicting_seconds = predicting.as_secs_f64(),
        "evaluated"
    );
    if let Some(path) = &args.html {
        std::fs::write(path, html(&e))
            .with_context(|| format!("writing the report to {}", path.display()))?;
    }
    if args.json {
        let mut value = serde_json::to_value(&e)?;
        // One thread's prediction time, features included: the model's
        // in-process throughput per core is rows / predict_seconds.
        value["predict_seconds"] = predicting.as_secs_f64().into();
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print_table(&e);
    }
    Ok(ExitCode::SUCCESS)
}

/// A transaction carrying a labeled row's fields (its id derived from the
/// description: built-in models read the id, trained ones the fields).
fn transaction_of(row: &txflow_learn::LabeledRow) -> txflow_core::Transaction {
    let input: Input<'_> = row.input();
    let description = &row.description;
    let id = txflow_core::identity::transaction_id("txflow-evaluate", description);
    txflow_core::Transaction::from(txflow_core::TransactionParts {
        id,
        source_id: String::new(),
        description: description.clone(),
        amount: input
            .amount_cents
            .and_then(txflow_core::Amount::from_cents)
            .or(txflow_core::Amount::from_cents(0))
            .unwrap_or_else(|| unreachable!("0 is an amount")),
        timestamp: chrono::DateTime::UNIX_EPOCH,
        merchant: row.merchant.clone(),
        operation_type: row.operation_type.clone().unwrap_or_default(),
        side: input
            .side
            .unwrap_or(if input.amount_cents.unwrap_or(-1) < 0 {
                txflow_core::Side::Debit
            } else {
                txflow_core::Side::Credit
            }),
    })
}

fn print_table(e: &Evaluation) {
    println!(
        "{}: {} rows, accuracy {:.4}, macro-F1 {:.4}, ECE {:.4} (15 bins), log loss {:.4}",
        e.model_version, e.rows, e.accuracy, e.macro_f1, e.ece, e.log_loss
    );
    println!(
        "{:<24} {:>9} {:>9} {:>9} {:>9}",
        "CATEGORY", "PRECISION", "RECALL", "F1", "SUPPORT"
    );
    for c in &e.per_category {
        println!(
            "{:<24} {:>9.3} {:>9.3} {:>9.3} {:>9}",
            c.category, c.precision, c.recall, c.f1, c.support
        );
    }
}

/// The report: headline figures, the reliability diagram (inline SVG), the
/// per-category table and the confusion matrix shaded by row share.
pub fn html(e: &Evaluation) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>txflow evaluate {v}</title>\
         <style>body{{font-family:sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:1em 0}}\
         td,th{{border:1px solid #ccc;padding:3px 7px;text-align:right}}th{{background:#f4f4f4}}\
         .cat{{text-align:left}}.figures span{{display:inline-block;margin-right:2em;font-size:1.3em}}</style>\
         </head><body><h1>Evaluation of {v}</h1>\
         <p class=\"figures\"><span id=\"rows\">{n} rows</span><span id=\"accuracy\">accuracy {a:.3}</span>\
         <span id=\"macro-f1\">macro-F1 {f:.3}</span><span id=\"ece\">ECE {c:.3}</span></p>",
        v = escape(&e.model_version),
        n = e.rows,
        a = e.accuracy,
        f = e.macro_f1,
        c = e.ece,
    );
    // Reliability diagram: accuracy against confidence per bin.
    let (w, h, pad) = (360.0, 360.0, 40.0);
    let _ = write!(
        page,
        "<h2>Reliability</h2><p>Each bar is a confidence bin (15 of equal width): its height is the share \
         of its predictions that were right, the dot its mean confidence, the diagonal perfect calibration. \
         Bar width grows with the bin's share of rows.</p>\
         <svg id=\"reliability\" width=\"{sw}\" height=\"{sh}\" viewBox=\"0 0 {sw} {sh}\" xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-label=\"reliability diagram\">\
         <rect x=\"{pad}\" y=\"{pad}\" width=\"{w}\" height=\"{h}\" fill=\"#fafafa\" stroke=\"#999\"/>\
         <line x1=\"{pad}\" y1=\"{y0}\" x2=\"{x1}\" y2=\"{pad}\" stroke=\"#888\" stroke-dasharray=\"4 3\"/>",
        sw = w + 2.0 * pad,
        sh = h + 2.0 * pad,
        y0 = pad + h,
        x1 = pad + w,
    );
    let most = e.bins.iter().map(|b| b.count).max().unwrap_or(1).max(1) as f64;
    for b in &e.bins {
        if b.count == 0 {
            continue;
        }
        let bw = w / 15.0;
        let share = (b.count as f64 / most).sqrt().max(0.15);
        let x = pad + b.lower * w + bw * (1.0 - share) / 2.0;
        let bh = b.accuracy * h;
        let _ = write!(
            page,
            "<rect class=\"bin\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bw2:.1}\" height=\"{bh:.1}\" fill=\"#3b7dd8\" opacity=\"0.8\">\
             <title>confidence {lo:.2}-{hi:.2}: {n} rows, mean confidence {c:.3}, accuracy {a:.3}</title></rect>\
             <circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"3\" fill=\"#d33\"/>",
            y = pad + h - bh,
            bw2 = bw * share,
            lo = b.lower,
            hi = b.upper,
            n = b.count,
            c = b.confidence,
            a = b.accuracy,
            cx = pad + (b.lower + b.upper) / 2.0 * w,
            cy = pad + h - b.confidence * h,
        );
    }
    for t in 0..=5 {
        let v = t as f64 / 5.0;
        let _ = write!(
            page,
            "<text x=\"{x:.1}\" y=\"{y:.1}\" font-size=\"11\" text-anchor=\"middle\">{v:.1}</text>\
             <text x=\"{lx:.1}\" y=\"{ly:.1}\" font-size=\"11\" text-anchor=\"end\">{v:.1}</text>",
            x = pad + v * w,
            y = pad + h + 16.0,
            lx = pad - 6.0,
            ly = pad + h - v * h + 4.0,
        );
    }
    let _ = write!(
        page,
        "<text x=\"{x:.1}\" y=\"{y:.1}\" font-size=\"12\" text-anchor=\"middle\">confidence</text>\
         <text x=\"12\" y=\"{my:.1}\" font-size=\"12\" transform=\"rotate(-90 12 {my:.1})\" text-anchor=\"middle\">accuracy</text></svg>",
        x = pad + w / 2.0,
        y = pad + h + 34.0,
        my = pad + h / 2.0,
    );
    page.push_str(
        "<h2>Per category</h2><table id=\"per-category\"><tr><th class=\"cat\">category</th>\
         <th>precision</th><th>recall</th><th>F1</th><th>support</th><th>predicted</th></tr>",
    );
    for c in &e.per_category {
        let _ = write!(
            page,
            "<tr><td class=\"cat\">{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td><td>{}</td></tr>",
            escape(&c.category),
            c.precision,
            c.recall,
            c.f1,
            c.support,
            c.predicted
        );
    }
    page.push_str(
        "</table><h2>Confusion matrix</h2><p>Rows: the true category; columns: the model's. \
         A cell's shade is its share of the row.</p><table id=\"confusion\"><tr><th class=\"cat\">true \\ predicted</th>",
    );
    for l in &e.labels {
        let _ = write!(page, "<th>{}</th>", escape(l));
    }
    page.push_str("</tr>");
    for (i, row) in e.confusion.iter().enumerate() {
        let total: u64 = row.iter().sum();
        let _ = write!(page, "<tr><th class=\"cat\">{}</th>", escape(&e.labels[i]));
        for (j, &n) in row.iter().enumerate() {
            let share = if total > 0 {
                n as f64 / total as f64
            } else {
                0.0
            };
            let (r, g, b) = if i == j { (46, 160, 67) } else { (207, 34, 46) };
            let _ = write!(
                page,
                "<td style=\"background:rgba({r},{g},{b},{share:.2})\">{n}</td>"
            );
        }
        page.push_str("</tr>");
    }
    page.push_str("</table></body></html>\n");
    page
}
