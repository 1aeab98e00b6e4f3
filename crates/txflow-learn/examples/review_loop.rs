//! The review loop, simulated (scripts/bench-review-loop.sh): does asking
//! a person about the least confident predictions first teach the model
//! more than asking about random ones?
//!
//! The labeled file is split by merchant (20 % of the merchants held out
//! for scoring). A model starts from 10 % of the training part's rows; each
//! round, a simulated reviewer labels ROUND more rows of the unlabeled
//! remainder with their true category (the least confident predictions
//! first, or random ones), the model is trained again, and its macro-F1 on
//! the held-out merchants is recorded. Printed: a row per round, then the
//! full-data model's macro-F1 and how many labels each strategy needed to
//! come within 0.02 of it.
//!
//!     cargo run --release -p txflow-learn --example review_loop -- LABELED.csv [ROUNDS] [ROUND]

use txflow_learn::{LabeledRow, LearnedModel, TrainOptions, evaluate, train};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: review_loop LABELED.csv [ROUNDS] [ROUND]")?;
    let rounds: usize = args.next().map_or(Ok(24), |a| a.parse())?;
    let round: usize = args.next().map_or(Ok(500), |a| a.parse())?;
    let bytes = std::fs::read(&path)?;
    let rows: Vec<LabeledRow> = txflow_csv::labeled::read_labeled(&bytes)?
        .into_iter()
        .map(|r| LabeledRow {
            description: r.description,
            category: r.category,
            merchant: r.merchant,
            amount_cents: r.amount.map(|a| a.cents()),
            side: r.side,
            operation_type: r.operation_type,
        })
        .collect();
    let (test, pool): (Vec<LabeledRow>, Vec<LabeledRow>) =
        rows.into_iter().partition(|r| r.held_out(0.2, 1));
    // Calibration does not change which prediction is least confident
    // enough to matter here; leave it out to train faster.
    let options = TrainOptions {
        calibration_fraction: 0.0,
        cross_fit: false,
        ..TrainOptions::default()
    };
    let full = macro_f1(&train(&pool, &options)?.model, &test);
    println!(
        "pool {} rows, test {} rows (held-out merchants); full-data macro-F1 {full:.4}",
        pool.len(),
        test.len()
    );
    // The same 10 % start for both strategies.
    let mut order: Vec<usize> = (0..pool.len()).collect();
    shuffle(&mut order, 7);
    let start = pool.len() / 10;
    let mut strategies = [
        (
            "least confident",
            order[..start].to_vec(),
            order[start..].to_vec(),
        ),
        ("random", order[..start].to_vec(), order[start..].to_vec()),
    ];
    let mut reached: [Option<usize>; 2] = [None, None];
    println!(
        "{:>5} {:>7} {:>7} {:>16} {:>9}",
        "round", "labels", "share", "least confident", "random"
    );
    for r in 0..=rounds {
        let mut scores = [0.0; 2];
        let used = strategies[0].1.len();
        for (s, (name, labeled, unlabeled)) in strategies.iter_mut().enumerate() {
            let training: Vec<LabeledRow> = labeled.iter().map(|&i| pool[i].clone()).collect();
            let model = train(&training, &options)?.model;
            scores[s] = macro_f1(&model, &test);
            if reached[s].is_none() && scores[s] >= full - 0.02 {
                reached[s] = Some(labeled.len());
            }
            if r == rounds {
                continue;
            }
            // The reviewer's next ROUND rows.
            if *name == "random" {
                let take = round.min(unlabeled.len());
                labeled.extend(unlabeled.drain(..take));
            } else {
                let mut by_confidence: Vec<(f64, usize)> = unlabeled
                    .iter()
                    .map(|&i| (model.best(&pool[i].input()).1, i))
                    .collect();
                by_confidence.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                let picked: Vec<usize> =
                    by_confidence.iter().take(round).map(|&(_, i)| i).collect();
                let chosen: std::collections::HashSet<usize> = picked.iter().copied().collect();
                unlabeled.retain(|i| !chosen.contains(i));
                labeled.extend(picked);
            }
        }
        println!(
            "{r:>5} {used:>7} {:>6.1}% {:>16.4} {:>9.4}",
            used as f64 * 100.0 / pool.len() as f64,
            scores[0],
            scores[1]
        );
    }
    for (s, (name, _, _)) in strategies.iter().enumerate() {
        match reached[s] {
            Some(n) => println!(
                "{name}: within 0.02 of the full-data macro-F1 with {n} labels ({:.1} % of the pool)",
                n as f64 * 100.0 / pool.len() as f64
            ),
            None => {
                println!("{name}: not within 0.02 of the full-data macro-F1 in {rounds} rounds")
            }
        }
    }
    Ok(())
}

fn macro_f1(model: &LearnedModel, rows: &[LabeledRow]) -> f64 {
    let names: Vec<String> = model
        .labels()
        .names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let (mut truth, mut predicted, mut confidence) = (Vec::new(), Vec::new(), Vec::new());
    for r in rows {
        let Some(y) = names.iter().position(|n| *n == r.category) else {
            continue;
        };
        let (i, q) = model.best(&r.input());
        truth.push(y);
        predicted.push(i);
        confidence.push(q);
    }
    evaluate(
        "simulated",
        &names,
        &truth,
        &predicted,
        &confidence,
        &confidence,
    )
    .macro_f1
}

/// A shuffle determined by the seed (fastrand's, as every seeded random
/// choice in txflow).
fn shuffle(v: &mut [usize], seed: u64) {
    fastrand::Rng::with_seed(seed).shuffle(v);
}
