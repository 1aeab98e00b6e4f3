//! Training: a multinomial logistic regression (softmax, L2 penalty) fitted
//! by L-BFGS on the full batch, then a temperature fitted on a slice of
//! merchants held out from the fit.
//!
//! Deterministic for a seed: the rows are cut into [`SHARDS`] fixed shards
//! whose gradients are computed on up to that many threads and summed in
//! shard order, so the result depends on neither the thread count nor the
//! scheduling. Only buckets some fitted row uses get weights (the others
//! would stay 0 under the penalty), which keeps the optimizer's vectors
//! small.

use std::collections::{BTreeSet, HashMap};
use std::thread;

use sha2::{Digest, Sha256};
use txflow_core::{LabelSet, Side};

use crate::error::{Error, Result};
use crate::evaluate::{Evaluation, evaluate, top};
use crate::features::{BLOCKS, Extractor, FeatureSettings, Input, Sparse, weigh};
use crate::model::{Calibration, Header, LearnedModel, TrainingInfo, softmax};
use crate::split;

/// Gradient shards: fixed, so that sums are made in the same order
/// whatever the number of cores.
pub const SHARDS: usize = 4;

/// One labeled row, as `txflow train` reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct LabeledRow {
    pub description: String,
    pub category: String,
    pub merchant: Option<String>,
    pub amount_cents: Option<i64>,
    pub side: Option<Side>,
    pub operation_type: Option<String>,
}

impl LabeledRow {
    pub fn input(&self) -> Input<'_> {
        Input {
            description: &self.description,
            merchant: self.merchant.as_deref(),
            side: self.side,
            amount_cents: self.amount_cents,
            operation_type: self.operation_type.as_deref(),
        }
    }

    /// Whether the row is on the held-out side of a split by merchant.
    pub fn held_out(&self, fraction: f64, seed: u64) -> bool {
        split::held_out(&self.description, self.merchant.as_deref(), fraction, seed)
    }
}

/// What `txflow train` can set.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub name: String,
    pub seed: u64,
    /// The penalty `l2/2 * |W|^2` added to the mean cross-entropy.
    pub l2: f64,
    pub max_iterations: usize,
    /// Weigh each row by the inverse of its category's frequency (`n / (k
    /// n_c)`), so that every category counts alike in the loss: what
    /// macro-F1 rewards.
    pub balanced: bool,
    /// Fit the temperature on both halves of the merchants, each scored by
    /// a model fitted on the other half (cross-fitted), instead of on one
    /// held-out slice of `calibration_fraction`.
    pub cross_fit: bool,
    /// Share of the merchants held out to fit the temperature.
    pub calibration_fraction: f64,
    /// The weight of a copy of each row without its merchant
    /// ([`split::without_merchant`], and no merchant field), fitted beside
    /// the row (0: no copies). The model then also learns the cues a
    /// merchant it never met leaves it. Only the final model has them: the
    /// models that score held-out merchants for the temperature are fitted
    /// without copies, which calibrated the default weight (0.05) better
    /// on eight merchant splits; at high weights (0.5) it does not
    /// (docs/MODELS.md, "Session 19").
    pub merchant_copies: f64,
    pub features: FeatureSettings,
    /// Threads for the gradient (at most [`SHARDS`] are used).
    pub threads: usize,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            name: "model".into(),
            seed: 42,
            l2: 7e-7,
            max_iterations: 80,
            balanced: true,
            cross_fit: true,
            calibration_fraction: 0.3,
            merchant_copies: 0.05,
            features: FeatureSettings::default(),
            threads: thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

/// A trained model and what happened on its held-out slice.
#[derive(Debug)]
pub struct Trained {
    pub model: LearnedModel,
    /// The held-out slice, after calibration (`None` when no merchant was
    /// held out: too few rows).
    pub holdout: Option<Evaluation>,
}

/// Rows as a compressed sparse matrix, columns compacted to the buckets
/// used. Rows with the same label and the same features are one row with
/// a count (a statement line comes back every month, and digits are
/// masked): the loss is the same sum, made with fewer rows.
struct Matrix {
    starts: Vec<usize>,
    columns: Vec<u32>,
    values: Vec<f32>,
    labels: Vec<u16>,
    /// How many rows each row stands for.
    counts: Vec<f64>,
}

impl Matrix {
    fn rows(&self) -> usize {
        self.labels.len()
    }

    /// The rows given, duplicates included.
    fn total(&self) -> f64 {
        self.counts.iter().sum()
    }

    fn row(&self, i: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.starts[i], self.starts[i + 1]);
        (&self.columns[a..b], &self.values[a..b])
    }
}

/// Trains a model on `rows`.
pub fn train(rows: &[LabeledRow], options: &TrainOptions) -> Result<Trained> {
    options.features.check().map_err(Error::Options)?;
    if !(0.0..0.9).contains(&options.calibration_fraction) {
        return Err(Error::Options(format!(
            "the calibration fraction {} is not in [0, 0.9)",
            options.calibration_fraction
        )));
    }
    if !(0.0..=1.0).contains(&options.merchant_copies) {
        return Err(Error::Options(format!(
            "the weight of the copies without their merchant {} is not in [0, 1]",
            options.merchant_copies
        )));
    }
    let names: BTreeSet<&str> = rows.iter().map(|r| r.category.as_str()).collect();
    let labels = LabelSet::new(&names).map_err(|e| Error::Labels(e.to_string()))?;
    let names: Vec<String> = labels.names().into_iter().map(str::to_owned).collect();

    let (held, fit): (Vec<&LabeledRow>, Vec<&LabeledRow>) = rows
        .iter()
        .partition(|r| r.held_out(options.calibration_fraction, options.seed));
    if fit.is_empty() {
        return Err(Error::Options(
            "every row was held out for calibration: give more rows (merchants) or a smaller --calibration-fraction".into(),
        ));
    }

    // The temperature: a model fitted without the held-out merchants,
    // scored on them. Those models are fitted without the copies
    // (docs/MODELS.md, "Session 19": the halves fitted with them were more
    // over-confident than the final model turns out on new merchants).
    let scoring = TrainOptions {
        merchant_copies: 0.0,
        ..options.clone()
    };
    let mut calibration = Calibration {
        method: if options.cross_fit {
            "temperature (Brier score), cross-fitted on two halves of the merchants, without copies"
                .into()
        } else {
            "temperature (Brier score), without copies".into()
        },
        temperature: 1.0,
        rows: held.len(),
        ece_before: 0.0,
        ece_after: 0.0,
    };
    let mut holdout = None;
    // (fitted on, scored on): one held-out slice, or both halves in turn.
    let (half_a, half_b): (Vec<&LabeledRow>, Vec<&LabeledRow>) =
        rows.iter().partition(|r| r.held_out(0.5, options.seed));
    let plan: Vec<(&[&LabeledRow], &[&LabeledRow])> =
        if options.cross_fit && !half_a.is_empty() && !half_b.is_empty() {
            vec![(&half_b, &half_a), (&half_a, &half_b)]
        } else if !held.is_empty() {
            vec![(&fit, &held)]
        } else {
            Vec::new()
        };
    if !plan.is_empty() {
        let mut logits = Vec::new();
        let mut truth = Vec::new();
        let mut version = String::new();
        calibration.rows = 0;
        for (fitted_on, scored_on) in plan {
            let first = fit_rows(fitted_on, &labels, &scoring)?;
            let first = first.into_model(&scoring, &names, &labels, calibration.clone(), rows);
            for row in scored_on {
                logits.push(first.with_logits(&row.input(), <[f32]>::to_vec));
                truth.push(labels.index_of(&row.category).unwrap_or(0));
            }
            calibration.rows += scored_on.len();
            version = first.header.version.clone();
        }
        let before = score(&version, &names, &logits, &truth, 1.0);
        let t = fit_temperature(&logits, &truth);
        let after = score(&version, &names, &logits, &truth, t);
        calibration.temperature = t;
        calibration.ece_before = before.ece;
        calibration.ece_after = after.ece;
        holdout = Some(after);
    }
    // The model: every row, with that temperature.
    let all: Vec<&LabeledRow> = rows.iter().collect();
    let mut model =
        fit_rows(&all, &labels, options)?.into_model(options, &names, &labels, calibration, rows);
    model.header.training.fit_rows = all.len();
    model.header.training.calibration_rows = model.header.calibration.rows;
    if let Some(h) = &holdout {
        model.header.training.holdout_accuracy = h.accuracy;
        model.header.training.holdout_macro_f1 = h.macro_f1;
    }
    Ok(Trained { model, holdout })
}

/// What one fit gives.
struct Fitted {
    used: Vec<u32>,
    weights: Vec<f32>,
    bias: Vec<f32>,
    idf: Vec<f32>,
    iterations: usize,
    final_loss: f64,
}

impl Fitted {
    fn into_model(
        self,
        options: &TrainOptions,
        names: &[String],
        labels: &LabelSet,
        calibration: Calibration,
        rows: &[LabeledRow],
    ) -> LearnedModel {
        let k = labels.len();
        let digest = weights_digest(&self.used, &self.weights, &self.bias, k);
        LearnedModel {
            header: Header {
                format: crate::file::FORMAT.to_owned(),
                name: options.name.clone(),
                version: format!("{}@{digest}", options.name),
                labels: names.to_vec(),
                features: options.features,
                calibration,
                training: TrainingInfo {
                    data_sha256: data_digest(rows),
                    rows: rows.len(),
                    fit_rows: 0,
                    calibration_rows: 0,
                    seed: options.seed,
                    l2: options.l2,
                    merchant_copies: options.merchant_copies,
                    iterations: self.iterations,
                    final_loss: self.final_loss,
                    holdout_accuracy: 0.0,
                    holdout_macro_f1: 0.0,
                },
            },
            labels: labels.clone(),
            buckets: crate::model::buckets_of(&self.used, &self.idf),
            weights: self.weights,
            bias: self.bias,
        }
    }
}

/// `row` without its merchant (see [`TrainOptions::merchant_copies`]);
/// `None` when nothing names it.
fn without_merchant(row: &LabeledRow) -> Option<LabeledRow> {
    let description = split::without_merchant(&row.description, row.merchant.as_deref());
    if description.is_none() && row.merchant.is_none() {
        return None;
    }
    Some(LabeledRow {
        description: description.unwrap_or_else(|| row.description.clone()),
        merchant: None,
        ..row.clone()
    })
}

/// Fits weights, bias and idf on `rows` (and their copies without their
/// merchant, if the options say so).
fn fit_rows(rows: &[&LabeledRow], labels: &LabelSet, options: &TrainOptions) -> Result<Fitted> {
    let copies: Vec<LabeledRow> = if options.merchant_copies > 0.0 {
        rows.iter().filter_map(|r| without_merchant(r)).collect()
    } else {
        Vec::new()
    };
    let originals = rows.len();
    let rows: Vec<&LabeledRow> = rows.iter().copied().chain(&copies).collect();
    let rows = &rows[..];
    let k = labels.len();
    // Counts, document frequencies, idf.
    let buckets = options.features.buckets();
    let mut extractor = Extractor::new(options.features);
    let mut counts: Vec<(Sparse, [usize; BLOCKS])> = Vec::with_capacity(rows.len());
    let mut df = vec![0u32; buckets];
    for row in rows {
        let mut c = Vec::new();
        let mut blocks = [0; BLOCKS];
        extractor.counts(&row.input(), &mut c, &mut blocks);
        // A bucket counts once per row, even in two blocks.
        let mut seen: Vec<u32> = c.iter().map(|(b, _)| *b).collect();
        seen.sort_unstable();
        seen.dedup();
        for b in seen {
            df[b as usize] += 1;
        }
        counts.push((c, blocks));
    }
    let n = rows.len() as f32;
    let idf: Vec<f32> = df
        .iter()
        .map(|&d| {
            if d == 0 {
                0.0
            } else {
                ((1.0 + n) / (1.0 + d as f32)).ln() + 1.0
            }
        })
        .collect();
    let mut compact = vec![u32::MAX; buckets];
    let mut used: Vec<u32> = Vec::new();
    for (b, &d) in df.iter().enumerate() {
        if d > 0 {
            compact[b] = used.len() as u32;
            used.push(b as u32);
        }
    }
    let mut matrix = Matrix {
        starts: vec![0],
        columns: Vec::new(),
        values: Vec::new(),
        labels: Vec::with_capacity(rows.len()),
        counts: Vec::with_capacity(rows.len()),
    };
    let mut merged: Sparse = Vec::new();
    // A row's label and features, bit for bit -> its index in the matrix.
    let mut distinct: HashMap<Vec<u64>, usize> = HashMap::with_capacity(rows.len());
    let mut key: Vec<u64> = Vec::new();
    for (index, (row, (mut c, blocks))) in rows.iter().zip(counts).enumerate() {
        let weight = if index < originals {
            1.0
        } else {
            options.merchant_copies
        };
        let Some(label) = labels.index_of(&row.category) else {
            return Err(Error::Labels(format!(
                "{:?} is not in the label set",
                row.category
            )));
        };
        weigh(&mut c, &blocks, &idf);
        c.sort_unstable_by_key(|(b, _)| *b);
        merged.clear();
        for (b, v) in c {
            match merged.last_mut() {
                Some((last, value)) if *last == b => *value += v,
                _ => merged.push((b, v)),
            }
        }
        key.clear();
        key.push(label as u64);
        key.extend(
            merged
                .iter()
                .map(|&(b, v)| u64::from(b) << 32 | u64::from(v.to_bits())),
        );
        if let Some(&i) = distinct.get(&key) {
            matrix.counts[i] += weight;
            continue;
        }
        distinct.insert(key.clone(), matrix.rows());
        for &(b, v) in &merged {
            matrix.columns.push(compact[b as usize]);
            matrix.values.push(v);
        }
        matrix.starts.push(matrix.columns.len());
        matrix.labels.push(label as u16);
        matrix.counts.push(weight);
    }

    // Fit: theta = [W (used x k), b (k)].
    let m = used.len();
    let mut objective = Objective::new(&matrix, k, m, options.l2, options.threads);
    if options.balanced {
        let mut per_class = vec![0f64; k];
        for (&y, &count) in matrix.labels.iter().zip(&matrix.counts) {
            per_class[usize::from(y)] += count;
        }
        let n = matrix.total();
        objective.class_weights = per_class
            .iter()
            .map(|&c| if c == 0.0 { 0.0 } else { n / (k as f64 * c) })
            .collect();
    }
    let (theta, iterations, final_loss) = lbfgs(&objective, options.max_iterations);

    // One row per used bucket, in bucket order (as theta has them).
    let weights: Vec<f32> = theta[..m * k].iter().map(|&x| x as f32).collect();
    let bias: Vec<f32> = theta[m * k..].iter().map(|&x| x as f32).collect();
    Ok(Fitted {
        used,
        weights,
        bias,
        idf,
        iterations,
        final_loss,
    })
}

/// Evaluates raw scores at temperature `t`.
pub(crate) fn score(
    version: &str,
    labels: &[String],
    logits: &[Vec<f32>],
    truth: &[usize],
    t: f64,
) -> Evaluation {
    let mut predicted = Vec::with_capacity(truth.len());
    let mut confidence = Vec::with_capacity(truth.len());
    let mut p_truth = Vec::with_capacity(truth.len());
    for (z, &y) in logits.iter().zip(truth) {
        let p = softmax(z, t);
        let (best, q) = top(&p);
        predicted.push(best);
        confidence.push(q);
        p_truth.push(p[y]);
    }
    evaluate(version, labels, truth, &predicted, &confidence, &p_truth)
}

/// The temperature minimizing the Brier score (the squared distance
/// between the probabilities and the truth's one-hot vector) of the
/// held-out rows: golden-section search on ln t in [ln 0.05, ln 20].
///
/// Not the log-likelihood: the rows of one merchant are right or wrong
/// together, and a merchant confidently wrong costs the log-likelihood
/// without bound, so one such merchant pulled the temperature up for every
/// row (split 4 of docs/MODELS.md: 1.70, test ECE 0.24). A row costs the
/// Brier score at most 2.
fn fit_temperature(logits: &[Vec<f32>], truth: &[usize]) -> f64 {
    let brier = |ln_t: f64| -> f64 {
        let t = ln_t.exp();
        logits
            .iter()
            .zip(truth)
            .map(|(z, &y)| brier_score(&softmax(z, t), y))
            .sum::<f64>()
    };
    let phi = (5f64.sqrt() - 1.0) / 2.0;
    let (mut a, mut b) = (0.05f64.ln(), 20f64.ln());
    let mut c = b - phi * (b - a);
    let mut d = a + phi * (b - a);
    let (mut fc, mut fd) = (brier(c), brier(d));
    for _ in 0..60 {
        if fc < fd {
            b = d;
            d = c;
            fd = fc;
            c = b - phi * (b - a);
            fc = brier(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + phi * (b - a);
            fd = brier(d);
        }
    }
    ((a + b) / 2.0).exp()
}

/// `sum_j (p_j - [j = truth])^2`: 0 for a sure right answer, 2 for a sure
/// wrong one.
fn brier_score(probabilities: &[f64], truth: usize) -> f64 {
    probabilities
        .iter()
        .enumerate()
        .map(|(j, &p)| if j == truth { (1.0 - p).powi(2) } else { p * p })
        .sum()
}

/// The mean cross-entropy plus the penalty, and its gradient.
struct Objective<'a> {
    matrix: &'a Matrix,
    k: usize,
    m: usize,
    l2: f64,
    threads: usize,
    /// Each category's weight in the loss (1 unless balanced).
    class_weights: Vec<f64>,
    /// The rows the matrix stands for (the loss is their mean).
    total: f64,

    /// Each shard's gradient, kept between evaluations (allocating them
    /// anew each time cost more than computing them).
    shards: Vec<std::sync::Mutex<Vec<f64>>>,
}

impl<'a> Objective<'a> {
    fn new(matrix: &'a Matrix, k: usize, m: usize, l2: f64, threads: usize) -> Objective<'a> {
        Objective {
            matrix,
            k,
            m,
            l2,
            threads: threads.clamp(1, SHARDS),
            class_weights: vec![1.0; k],
            total: matrix.total(),
            shards: (0..SHARDS)
                .map(|_| std::sync::Mutex::new(vec![0f64; (m + 1) * k]))
                .collect(),
        }
    }

    fn dim(&self) -> usize {
        (self.m + 1) * self.k
    }

    /// The loss at `theta`; its gradient into `grad`.
    fn evaluate(&self, theta: &[f64], grad: &mut [f64]) -> f64 {
        let rows = self.matrix.rows();
        let per = rows.div_ceil(SHARDS);
        let shard = |s: usize| -> f64 {
            let mut g = self.shards[s].lock().unwrap_or_else(|p| p.into_inner());
            g.fill(0.0);
            let mut loss = 0f64;
            let mut z = vec![0f64; self.k];
            let bias = &theta[self.m * self.k..];
            for i in (s * per)..((s + 1) * per).min(rows) {
                let (cols, vals) = self.matrix.row(i);
                z.copy_from_slice(bias);
                for (&c, &v) in cols.iter().zip(vals) {
                    let w = &theta[c as usize * self.k..(c as usize + 1) * self.k];
                    let v = f64::from(v);
                    for (zj, wj) in z.iter_mut().zip(w) {
                        *zj += v * wj;
                    }
                }
                let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let mut sum = 0.0;
                for zj in z.iter_mut() {
                    *zj = (*zj - max).exp();
                    sum += *zj;
                }
                let y = usize::from(self.matrix.labels[i]);
                let weight = self.class_weights[y] * self.matrix.counts[i];
                loss += weight * (sum.ln() - (z[y].ln()));
                // z becomes the weighted residual w (p - onehot(y)).
                for zj in z.iter_mut() {
                    *zj /= sum;
                }
                z[y] -= 1.0;
                for zj in z.iter_mut() {
                    *zj *= weight;
                }
                for (&c, &v) in cols.iter().zip(vals) {
                    let gw = &mut g[c as usize * self.k..(c as usize + 1) * self.k];
                    let v = f64::from(v);
                    for (gj, rj) in gw.iter_mut().zip(&z) {
                        *gj += v * rj;
                    }
                }
                for (gj, rj) in g[self.m * self.k..].iter_mut().zip(&z) {
                    *gj += rj;
                }
            }
            loss
        };
        let mut results: Vec<Option<f64>> = (0..SHARDS).map(|_| None).collect();
        thread::scope(|scope| {
            let mut handles = Vec::new();
            for t in 0..self.threads {
                let shard = &shard;
                let threads = self.threads;
                handles.push(scope.spawn(move || {
                    (t..SHARDS)
                        .step_by(threads)
                        .map(|s| (s, shard(s)))
                        .collect::<Vec<_>>()
                }));
            }
            for h in handles {
                // A panic in a shard is a bug; carry it to the caller.
                let done = h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
                for (s, r) in done {
                    results[s] = Some(r);
                }
            }
        });
        let scale = 1.0 / self.total;
        grad.fill(0.0);
        let mut loss = 0.0;
        for (l, g) in results.into_iter().flatten().zip(&self.shards) {
            loss += l;
            let g = g.lock().unwrap_or_else(|p| p.into_inner());
            for (a, b) in grad.iter_mut().zip(g.iter()) {
                *a += b;
            }
        }
        loss *= scale;
        let weights = self.m * self.k;
        let mut penalty = 0.0;
        for (i, (gi, ti)) in grad.iter_mut().zip(theta).enumerate() {
            *gi *= scale;
            if i < weights {
                *gi += self.l2 * ti;
                penalty += ti * ti;
            }
        }
        loss + 0.5 * self.l2 * penalty
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Limited-memory BFGS (8 pairs) with a backtracking Armijo line search,
/// from zero. Returns the parameters, the iterations made and the loss.
fn lbfgs(objective: &Objective<'_>, max_iterations: usize) -> (Vec<f64>, usize, f64) {
    const PAIRS: usize = 8;
    let dim = objective.dim();
    let mut x = vec![0f64; dim];
    let mut g = vec![0f64; dim];
    let mut f = objective.evaluate(&x, &mut g);
    let mut history: Vec<(Vec<f64>, Vec<f64>, f64)> = Vec::new();
    let mut direction = vec![0f64; dim];
    let mut x_new = vec![0f64; dim];
    let mut g_new = vec![0f64; dim];
    let mut iterations = 0;
    for _ in 0..max_iterations {
        iterations += 1;
        // Two-loop recursion: direction = -H g.
        direction.copy_from_slice(&g);
        let mut alphas = Vec::with_capacity(history.len());
        for (s, y, rho) in history.iter().rev() {
            let a = rho * dot(s, &direction);
            for (d, yi) in direction.iter_mut().zip(y) {
                *d -= a * yi;
            }
            alphas.push(a);
        }
        let gamma = match history.last() {
            Some((s, y, _)) => dot(s, y) / dot(y, y),
            None => 1.0 / dot(&g, &g).sqrt().max(1e-12),
        };
        for d in direction.iter_mut() {
            *d *= gamma;
        }
        for ((s, y, rho), a) in history.iter().zip(alphas.iter().rev()) {
            let b = rho * dot(y, &direction);
            for (d, si) in direction.iter_mut().zip(s) {
                *d += (a - b) * si;
            }
        }
        for d in direction.iter_mut() {
            *d = -*d;
        }
        let mut slope = dot(&g, &direction);
        if slope >= 0.0 {
            // Not a descent direction: start again from the gradient.
            history.clear();
            let scale = 1.0 / dot(&g, &g).sqrt().max(1e-12);
            for (d, gi) in direction.iter_mut().zip(&g) {
                *d = -gi * scale;
            }
            slope = dot(&g, &direction);
        }
        let mut step = 1.0;
        let mut f_new = f;
        let mut accepted = false;
        for _ in 0..30 {
            for ((xn, xi), di) in x_new.iter_mut().zip(&x).zip(&direction) {
                *xn = xi + step * di;
            }
            f_new = objective.evaluate(&x_new, &mut g_new);
            if f_new <= f + 1e-4 * step * slope {
                accepted = true;
                break;
            }
            step *= 0.5;
        }
        if !accepted {
            break;
        }
        // The oldest pair's buffers make the new pair.
        let (mut s, mut y) = if history.len() == PAIRS {
            let (s, y, _) = history.remove(0);
            (s, y)
        } else {
            (vec![0f64; dim], vec![0f64; dim])
        };
        for ((si, a), b) in s.iter_mut().zip(&x_new).zip(&x) {
            *si = a - b;
        }
        for ((yi, a), b) in y.iter_mut().zip(&g_new).zip(&g) {
            *yi = a - b;
        }
        let sy = dot(&s, &y);
        if sy > 1e-12 {
            history.push((s, y, 1.0 / sy));
        }
        std::mem::swap(&mut x, &mut x_new);
        std::mem::swap(&mut g, &mut g_new);
        let decrease = f - f_new;
        f = f_new;
        let g_max = g.iter().fold(0f64, |m, v| m.max(v.abs()));
        if g_max < 1e-6 || decrease.abs() < 1e-10 * f.abs().max(1.0) {
            break;
        }
    }
    (x, iterations, f)
}

/// SHA-256 of the weights as stored, first 12 hex digits: the version's
/// suffix, so two different models never share a version.
fn weights_digest(used: &[u32], weights: &[f32], bias: &[f32], k: usize) -> String {
    let mut h = Sha256::new();
    for (&b, row) in used.iter().zip(weights.chunks_exact(k)) {
        h.update(b.to_le_bytes());
        for w in row {
            h.update(w.to_le_bytes());
        }
    }
    for b in bias {
        h.update(b.to_le_bytes());
    }
    hex(&h.finalize())[..12].to_owned()
}

/// SHA-256 of the training rows.
pub fn data_digest(rows: &[LabeledRow]) -> String {
    let mut h = Sha256::new();
    for r in rows {
        h.update(r.description.as_bytes());
        h.update([0x1f]);
        h.update(r.category.as_bytes());
        h.update([0x1f]);
        h.update(r.merchant.as_deref().unwrap_or("").as_bytes());
        h.update([0x1f]);
        h.update(r.amount_cents.map(|a| a.to_string()).unwrap_or_default());
        h.update([0x1f]);
        h.update(r.side.map(|s| s.as_str()).unwrap_or(""));
        h.update([0x1f]);
        h.update(r.operation_type.as_deref().unwrap_or("").as_bytes());
        h.update([0x1e]);
    }
    hex(&h.finalize())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(description: &str, category: &str) -> LabeledRow {
        LabeledRow {
            description: description.into(),
            category: category.into(),
            merchant: None,
            amount_cents: None,
            side: None,
            operation_type: None,
        }
    }

    fn fixture() -> Vec<LabeledRow> {
        let mut rows = Vec::new();
        for i in 0..30 {
            rows.push(row(&format!("[debit] PIZZA HUT #{i}"), "Restaurants"));
            rows.push(row(&format!("[debit] BURGER KING {i}"), "Restaurants"));
            rows.push(row(&format!("[debit] SHELL OIL {i}"), "Transportation"));
            rows.push(row(&format!("[debit] CHEVRON GAS {i}"), "Transportation"));
            rows.push(row(&format!("[credit] PAYROLL ACME {i}"), "Income"));
            rows.push(row(&format!("[credit] DIRECT DEP PAYROLL {i}"), "Income"));
        }
        rows
    }

    /// The default options without calibration: for tests of the fit.
    fn uncalibrated() -> TrainOptions {
        TrainOptions {
            calibration_fraction: 0.0,
            cross_fit: false,
            ..TrainOptions::default()
        }
    }

    #[test]
    fn training_learns_a_separable_fixture_and_is_deterministic() {
        let rows = fixture();
        let options = TrainOptions {
            threads: 2,
            ..uncalibrated()
        };
        let a = train(&rows, &options).expect("trains");
        let single = TrainOptions {
            threads: 1,
            ..options.clone()
        };
        let b = train(&rows, &single).expect("trains");
        assert_eq!(a.model.weights, b.model.weights);
        assert_eq!(a.model.header, b.model.header);
        for r in &rows {
            let (i, p) = a.model.best(&r.input());
            assert_eq!(a.model.labels().names()[i], r.category);
            assert!(p > 0.5);
        }
        assert_eq!(
            a.model.labels().names(),
            ["Income", "Restaurants", "Transportation"]
        );
    }

    /// The first `n` fixture rows as a matrix over 2^10 buckets, each
    /// row standing for `count(i)` rows.
    fn fixture_matrix(n: usize, count: impl Fn(usize) -> f64) -> Matrix {
        let labels = ["Income", "Restaurants", "Transportation"];
        let mut x = Extractor::new(FeatureSettings {
            hash_bits: 10,
            ..FeatureSettings::default()
        });
        let mut matrix = Matrix {
            starts: vec![0],
            columns: Vec::new(),
            values: Vec::new(),
            labels: Vec::new(),
            counts: Vec::new(),
        };
        let idf = vec![1.0; 1 << 10];
        for (i, r) in fixture().iter().take(n).enumerate() {
            let mut v = Vec::new();
            x.extract(&r.input(), &idf, &mut v);
            for (b, val) in v {
                matrix.columns.push(b);
                matrix.values.push(val);
            }
            matrix.starts.push(matrix.columns.len());
            matrix
                .labels
                .push(labels.iter().position(|l| *l == r.category).unwrap_or(0) as u16);
            matrix.counts.push(count(i));
        }
        matrix
    }

    #[test]
    fn a_row_with_a_count_weighs_as_that_many_rows() {
        // 12 rows, the first 6 twice over (counts 2), against the same 12
        // rows and those 6 again as rows of their own.
        let counted = fixture_matrix(12, |i| if i < 6 { 2.0 } else { 1.0 });
        let mut repeated = fixture_matrix(12, |_| 1.0);
        let again = fixture_matrix(6, |_| 1.0);
        let offset = repeated.columns.len();
        repeated.columns.extend(&again.columns);
        repeated.values.extend(&again.values);
        repeated
            .starts
            .extend(again.starts[1..].iter().map(|s| s + offset));
        repeated.labels.extend(&again.labels);
        repeated.counts.extend(&again.counts);
        let a = Objective::new(&counted, 3, 1 << 10, 0.01, 2);
        let b = Objective::new(&repeated, 3, 1 << 10, 0.01, 2);
        let theta: Vec<f64> = (0..a.dim())
            .map(|i| ((i * 7919) % 13) as f64 / 50.0 - 0.1)
            .collect();
        let (mut ga, mut gb) = (vec![0.0; a.dim()], vec![0.0; b.dim()]);
        let (la, lb) = (a.evaluate(&theta, &mut ga), b.evaluate(&theta, &mut gb));
        assert!((la - lb).abs() < 1e-12, "{la} vs {lb}");
        let worst = ga
            .iter()
            .zip(&gb)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-12, "gradients differ by {worst}");
    }

    #[test]
    fn copies_without_the_merchant_are_fitted_at_their_weight() {
        let rows = fixture();
        let plain = TrainOptions {
            merchant_copies: 0.0,
            ..uncalibrated()
        };
        let with_copies = TrainOptions {
            merchant_copies: 0.5,
            ..plain.clone()
        };
        let a = train(&rows, &plain).expect("trains");
        let b = train(&rows, &with_copies).expect("trains");
        assert_eq!(b.model.header.training.merchant_copies, 0.5);
        assert_eq!(a.model.header.training.merchant_copies, 0.0);
        assert_ne!(a.model.weights, b.model.weights);
        // What is left of a row once its merchant is gone ("[debit] HUT
        // #0") now speaks for its category more than before.
        let context = Input {
            description: "[debit] HUT #7",
            ..Input::default()
        };
        let restaurants = a.model.labels().index_of("Restaurants").expect("a label");
        let p = |m: &LearnedModel| m.probabilities_of(&context)[restaurants];
        assert!(
            p(&b.model) > p(&a.model),
            "{} vs {}",
            p(&b.model),
            p(&a.model)
        );
        let refused = TrainOptions {
            merchant_copies: 1.5,
            ..plain
        };
        assert!(matches!(train(&rows, &refused), Err(Error::Options(_))));
    }

    #[test]
    fn the_temperature_is_not_decided_by_a_few_confident_mistakes() {
        // Two classes, the first scored ln 4 above the second: 0.8 at
        // temperature 1, and right 80 times in 100, so 1 is calibrated.
        let sure = 4f32.ln();
        let mut logits = vec![vec![sure, 0.0]; 100];
        let mut truth: Vec<usize> = (0..100).map(|i| usize::from(i >= 80)).collect();
        let t = fit_temperature(&logits, &truth);
        assert!((t - 1.0).abs() < 0.02, "{t}");
        // Five rows (one merchant, say) wrong at a probability of 1 - e^-30:
        // they cost the log-likelihood 30 / t each, which would take the
        // temperature far above 1 for every row; the Brier score at most 2.
        logits.extend(vec![vec![30.0, 0.0]; 5]);
        truth.extend([1; 5]);
        let t = fit_temperature(&logits, &truth);
        assert!((1.0..1.2).contains(&t), "{t}");
        let nll = |t: f64| -> f64 {
            logits
                .iter()
                .zip(&truth)
                .map(|(z, &y)| -softmax(z, t)[y].ln())
                .sum()
        };
        assert!(nll(3.0) < nll(t), "the log-likelihood would want more");
    }

    #[test]
    fn the_gradient_matches_finite_differences() {
        // Rows standing for several, and a copy's fractional weight.
        let matrix = fixture_matrix(12, |i| [1.0, 3.0, 0.5][i % 3]);
        let objective = Objective::new(&matrix, 3, 1 << 10, 0.01, 2);
        let theta: Vec<f64> = (0..objective.dim())
            .map(|i| ((i * 7919) % 13) as f64 / 50.0 - 0.1)
            .collect();
        let mut g = vec![0.0; objective.dim()];
        objective.evaluate(&theta, &mut g);
        let mut scratch = vec![0.0; objective.dim()];
        let probes = [
            matrix.columns[0] as usize * 3,
            matrix.columns[5] as usize * 3 + 2,
            objective.dim() - 1,
        ];
        for i in probes {
            let mut plus = theta.clone();
            plus[i] += 1e-5;
            let mut minus = theta.clone();
            minus[i] -= 1e-5;
            let numeric = (objective.evaluate(&plus, &mut scratch)
                - objective.evaluate(&minus, &mut scratch))
                / 2e-5;
            assert!((numeric - g[i]).abs() < 1e-6, "{i}: {numeric} vs {}", g[i]);
        }
    }
}
