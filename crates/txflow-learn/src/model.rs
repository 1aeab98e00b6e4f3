//! [`LearnedModel`]: a trained multinomial logistic regression over hashed
//! features, with its temperature, answering as any in-process model.

use std::cell::RefCell;

use serde::{Deserialize, Serialize};
use txflow_core::{LabelSet, Model, Prediction, Transaction};

use crate::features::{BLOCKS, Extractor, FeatureSettings, Input, Sparse, weigh_by};

/// What a model file says of itself besides its weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// `txflow-model`.
    pub format: String,
    /// The name given at training (`--name`).
    pub name: String,
    /// `name@` and the first 12 hex digits of the weights' SHA-256: what
    /// predictions carry.
    pub version: String,
    /// The categories, in the order of the weights' columns.
    pub labels: Vec<String>,
    pub features: FeatureSettings,
    pub calibration: Calibration,
    pub training: TrainingInfo,
}

/// How scores become confidences.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// `temperature`: probabilities are `softmax(logits / temperature)`.
    pub method: String,
    pub temperature: f64,
    /// Rows of the held-out slice it was fitted on.
    pub rows: usize,
    /// Expected calibration error on that slice, before and after.
    pub ece_before: f64,
    pub ece_after: f64,
}

/// How the model was trained, and how it did on its held-out slice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingInfo {
    /// SHA-256 of the training rows (description, category and the optional
    /// fields, in file order), hex.
    pub data_sha256: String,
    /// Rows read, rows fitted, rows held out for calibration.
    pub rows: usize,
    pub fit_rows: usize,
    pub calibration_rows: usize,
    pub seed: u64,
    /// L2 penalty on the weights (per row: the loss is a mean).
    pub l2: f64,
    /// The weight each row's copy without its merchant was fitted at
    /// (`TrainOptions::merchant_copies`; 0: none, as in files made before).
    #[serde(default)]
    pub merchant_copies: f64,
    pub iterations: usize,
    /// The loss (mean cross-entropy + penalty) at the end.
    pub final_loss: f64,
    /// Accuracy and macro-F1 on the held-out (calibration) slice, whose
    /// merchants training never saw, scored by the calibration's models
    /// (fitted without the copies, see `merchant_copies`).
    pub holdout_accuracy: f64,
    pub holdout_macro_f1: f64,
}

/// A trained model, ready to predict.
#[derive(Debug)]
pub struct LearnedModel {
    pub(crate) header: Header,
    pub(crate) labels: LabelSet,
    /// `rows × classes`, row-major: the weights of a bucket that has any
    /// together, one row per such bucket, in bucket order, as the file
    /// stores them. Only those rows are held (a third of the buckets for
    /// the 17-category model: 6 MiB instead of 18; prediction is as fast).
    pub(crate) weights: Vec<f32>,
    /// Per bucket: its idf and its row in `weights`.
    pub(crate) buckets: Vec<Bucket>,
    pub(crate) bias: Vec<f32>,
}

/// What prediction looks up for a bucket, side by side: one memory access
/// per feature instead of two (an idf table and a row table of 2^18
/// entries each, where a lookup is likely a cache miss).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bucket {
    /// 0 for a bucket training never saw.
    pub(crate) idf: f32,
    /// Its row in `weights`, or [`NO_ROW`].
    pub(crate) row: u32,
}

/// A bucket without weights (training never saw it).
pub(crate) const NO_ROW: u32 = u32::MAX;

const UNSEEN: Bucket = Bucket {
    idf: 0.0,
    row: NO_ROW,
};

/// Every bucket's entry, for `used` (sorted buckets, one row each in order)
/// and the idf of every bucket.
pub(crate) fn buckets_of(used: &[u32], idf: &[f32]) -> Vec<Bucket> {
    let mut buckets: Vec<Bucket> = idf.iter().map(|&idf| Bucket { idf, row: NO_ROW }).collect();
    for (row, &b) in used.iter().enumerate() {
        buckets[b as usize].row = row as u32;
    }
    buckets
}

struct Scratch {
    extractor: Extractor,
    /// The input's bucket counts, block by block, then (row, weighted
    /// value) of each.
    features: Sparse,
    logits: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Option<Scratch>> = const { RefCell::new(None) };
}

impl LearnedModel {
    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn labels(&self) -> &LabelSet {
        &self.labels
    }

    pub fn classes(&self) -> usize {
        self.bias.len()
    }

    /// The weights of `bucket`, if it has any.
    pub(crate) fn weights_of(&self, bucket: u32) -> Option<&[f32]> {
        let row = self.buckets.get(bucket as usize)?.row;
        (row != NO_ROW).then(|| self.row(row))
    }

    fn row(&self, row: u32) -> &[f32] {
        let k = self.bias.len();
        &self.weights[row as usize * k..(row as usize + 1) * k]
    }

    /// The idf of `bucket` (0: training never saw it).
    pub(crate) fn idf_of(&self, bucket: u32) -> f32 {
        self.buckets.get(bucket as usize).map_or(0.0, |b| b.idf)
    }

    /// Runs `f` on the raw scores of `input`, with this thread's buffers.
    ///
    /// The features are [`Extractor::extract`]'s, weighed with one lookup
    /// of each bucket's idf and row together (`weigh_by`), so the scores
    /// need no second lookup: the same values, summed in the same order,
    /// the same scores bit for bit (a unit test compares them).
    pub(crate) fn with_logits<T>(&self, input: &Input<'_>, f: impl FnOnce(&[f32]) -> T) -> T {
        SCRATCH.with(|cell| {
            let mut slot = cell.borrow_mut();
            let scratch = match &mut *slot {
                Some(s) if s.extractor.settings() == &self.header.features => s,
                _ => slot.insert(Scratch {
                    extractor: Extractor::new(self.header.features),
                    features: Vec::new(),
                    logits: Vec::new(),
                }),
            };
            let mut blocks = [0; BLOCKS];
            let features = &mut scratch.features;
            scratch.extractor.counts(input, features, &mut blocks);
            weigh_by(features, &blocks, |bucket| {
                let b = self.buckets.get(bucket as usize).unwrap_or(&UNSEEN);
                (b.row, b.idf)
            });
            let logits = &mut scratch.logits;
            logits.clear();
            logits.extend_from_slice(&self.bias);
            for &(row, value) in features.iter() {
                // A bucket training never saw has idf 0 and no row.
                if value != 0.0 && row != NO_ROW {
                    for (o, w) in logits.iter_mut().zip(self.row(row)) {
                        *o += value * w;
                    }
                }
            }
            f(logits)
        })
    }

    /// Calibrated probabilities of every category, in the labels' order.
    pub fn probabilities_of(&self, input: &Input<'_>) -> Vec<f64> {
        let t = self.header.calibration.temperature;
        self.with_logits(input, |logits| softmax(logits, t))
    }

    /// The most probable category's index and its calibrated probability,
    /// without allocating.
    pub fn best(&self, input: &Input<'_>) -> (usize, f64) {
        let t = self.header.calibration.temperature;
        self.with_logits(input, |logits| best_of(logits, t))
    }
}

/// `softmax(logits / t)`.
pub(crate) fn softmax(logits: &[f32], t: f64) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut p: Vec<f64> = logits
        .iter()
        .map(|&z| ((f64::from(z) - f64::from(max)) / t).exp())
        .collect();
    let sum: f64 = p.iter().sum();
    for x in &mut p {
        *x /= sum;
    }
    p
}

/// The argmax of `softmax(logits / t)` and its probability (the first
/// index among equals).
pub(crate) fn best_of(logits: &[f32], t: f64) -> (usize, f64) {
    let mut best = 0;
    for (i, z) in logits.iter().enumerate() {
        if *z > logits[best] {
            best = i;
        }
    }
    let max = f64::from(logits[best]);
    let sum: f64 = logits
        .iter()
        .map(|&z| ((f64::from(z) - max) / t).exp())
        .sum();
    (best, 1.0 / sum)
}

impl Model for LearnedModel {
    fn version(&self) -> &str {
        &self.header.version
    }

    fn labels(&self) -> &LabelSet {
        &self.labels
    }

    fn predict(&self, tx: &Transaction) -> Prediction {
        let (index, confidence) = self.best(&Input::of(tx));
        Prediction {
            transaction_id: tx.id(),
            // The index is one of the weights' columns, as many as labels.
            category: self
                .labels
                .get(index)
                .cloned()
                .unwrap_or_else(|| unreachable!("a column per label")),
            confidence: Some(confidence),
            model_version: self.header.version.clone(),
        }
    }

    fn probabilities(&self, tx: &Transaction) -> Option<Vec<f64>> {
        Some(self.probabilities_of(&Input::of(tx)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_class_and_its_probability_match_the_softmax() {
        let logits = [0.5f32, 2.0, -1.0, 2.0];
        for t in [0.5, 1.0, 3.0] {
            let p = softmax(&logits, t);
            let (i, q) = best_of(&logits, t);
            assert_eq!(i, 1);
            assert!((p[1] - q).abs() < 1e-12);
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn the_fused_lookup_scores_as_the_features_and_weights_do_bit_for_bit() {
        use crate::train::{LabeledRow, TrainOptions, train};
        use txflow_core::Side;
        let rows: Vec<LabeledRow> = (0..30)
            .flat_map(|i| {
                [
                    ("[debit] TAXI CAB RIDE", "Transport", Some("Cab Co")),
                    ("[debit] FRESH MARKET #0042", "Groceries", None),
                    ("[credit] PAYROLL ACME", "Income", Some("Acme")),
                ]
                .map(|(d, c, m)| LabeledRow {
                    description: format!("{d} {i}"),
                    category: c.into(),
                    merchant: m.map(str::to_owned),
                    amount_cents: Some(if c == "Income" { 250_000 } else { -1200 - i }),
                    side: None,
                    operation_type: (i % 2 == 0).then(|| "card".to_owned()),
                })
            })
            .collect();
        let options = TrainOptions {
            calibration_fraction: 0.0,
            cross_fit: false,
            features: FeatureSettings {
                hash_bits: 10,
                ..Default::default()
            },
            ..TrainOptions::default()
        };
        let model = train(&rows, &options).expect("trains").model;
        let idf: Vec<f32> = model.buckets.iter().map(|b| b.idf).collect();
        let mut extractor = Extractor::new(model.header.features);
        let mut x = Vec::new();
        let inputs = [
            Input {
                description: "[debit] TAXI CAB RIDE 7 taxi",
                ..Input::default()
            },
            Input {
                description: "Unseen words only: zyxwv qpo",
                merchant: Some("Nobody Known"),
                side: Some(Side::Credit),
                amount_cents: Some(99),
                operation_type: Some("transfer"),
            },
            Input {
                description: "",
                ..Input::default()
            },
            Input {
                description: "fresh fresh fresh market payroll Café",
                merchant: Some("Acme"),
                side: None,
                amount_cents: Some(-123_456),
                operation_type: Some("card"),
            },
        ];
        for input in &inputs {
            // The features, then the weights, as separate steps.
            extractor.extract(input, &idf, &mut x);
            let mut expected = model.bias.clone();
            for &(bucket, value) in &x {
                let row = model.weights_of(bucket).expect("a feature has weights");
                for (o, w) in expected.iter_mut().zip(row) {
                    *o += value * w;
                }
            }
            let fused = model.with_logits(input, <[f32]>::to_vec);
            let bits = |v: &[f32]| v.iter().map(|z| z.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fused), bits(&expected), "{:?}", input.description);
        }
    }
}
