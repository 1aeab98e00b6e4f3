//! The numbers a model is judged by: accuracy, macro-F1, per-category
//! precision, recall, F1 and support, the confusion matrix, and the
//! expected calibration error over 15 equal-width confidence bins with the
//! reliability diagram's points.

use serde::Serialize;

/// Confidence bins of the expected calibration error.
pub const ECE_BINS: usize = 15;

/// One category's scores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassScores {
    pub category: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Rows whose true category it is.
    pub support: u64,
    /// Rows the model put in it.
    pub predicted: u64,
}

/// One bin of the reliability diagram: predictions whose confidence is in
/// `(lower, upper]` (the first bin includes 0).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bin {
    pub lower: f64,
    pub upper: f64,
    pub count: u64,
    /// Mean confidence and share right, in the bin (0 when empty).
    pub confidence: f64,
    pub accuracy: f64,
}

/// How a model did on labeled rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    pub model_version: String,
    pub rows: u64,
    pub accuracy: f64,
    /// The mean of the per-category F1 over the categories that are some
    /// row's truth or some row's prediction (scikit-learn's `f1_score(...,
    /// average="macro")`).
    pub macro_f1: f64,
    /// The mean of `|accuracy - confidence|` over the bins, weighted by
    /// their share of the rows.
    pub ece: f64,
    /// Mean negative log-probability of the true category.
    pub log_loss: f64,
    pub per_category: Vec<ClassScores>,
    /// `confusion[truth][predicted]`, in the order of `labels`.
    pub labels: Vec<String>,
    pub confusion: Vec<Vec<u64>>,
    pub bins: Vec<Bin>,
}

/// Scores `predicted` (with its `confidence` and the probability the model
/// gave the truth, `p_truth`) against `truth`; indexes are into `labels`.
pub fn evaluate(
    model_version: &str,
    labels: &[String],
    truth: &[usize],
    predicted: &[usize],
    confidence: &[f64],
    p_truth: &[f64],
) -> Evaluation {
    let k = labels.len();
    let n = truth.len();
    let mut confusion = vec![vec![0u64; k]; k];
    for (&t, &p) in truth.iter().zip(predicted) {
        confusion[t][p] += 1;
    }
    let right: u64 = (0..k).map(|i| confusion[i][i]).sum();
    let mut per_category = Vec::with_capacity(k);
    let mut f1_sum = 0.0;
    let mut present = 0usize;
    for (i, label) in labels.iter().enumerate() {
        let support: u64 = confusion[i].iter().sum();
        let predicted_as: u64 = confusion.iter().map(|row| row[i]).sum();
        let tp = confusion[i][i] as f64;
        let precision = ratio(tp, predicted_as as f64);
        let recall = ratio(tp, support as f64);
        let f1 = ratio(2.0 * precision * recall, precision + recall);
        if support > 0 || predicted_as > 0 {
            f1_sum += f1;
            present += 1;
        }
        per_category.push(ClassScores {
            category: label.clone(),
            precision,
            recall,
            f1,
            support,
            predicted: predicted_as,
        });
    }
    let mut bins: Vec<Bin> = (0..ECE_BINS)
        .map(|b| Bin {
            lower: b as f64 / ECE_BINS as f64,
            upper: (b + 1) as f64 / ECE_BINS as f64,
            count: 0,
            confidence: 0.0,
            accuracy: 0.0,
        })
        .collect();
    for ((&t, &p), &c) in truth.iter().zip(predicted).zip(confidence) {
        let b = bin_of(c);
        bins[b].count += 1;
        bins[b].confidence += c;
        bins[b].accuracy += f64::from(u8::from(t == p));
    }
    let mut ece = 0.0;
    for bin in &mut bins {
        if bin.count > 0 {
            bin.confidence /= bin.count as f64;
            bin.accuracy /= bin.count as f64;
            ece += bin.count as f64 / n as f64 * (bin.accuracy - bin.confidence).abs();
        }
    }
    let log_loss = if n == 0 {
        0.0
    } else {
        p_truth.iter().map(|p| -p.max(1e-15).ln()).sum::<f64>() / n as f64
    };
    Evaluation {
        model_version: model_version.to_owned(),
        rows: n as u64,
        accuracy: ratio(right as f64, n as f64),
        macro_f1: ratio(f1_sum, present as f64),
        ece,
        log_loss,
        per_category,
        labels: labels.to_vec(),
        confusion,
        bins,
    }
}

/// The most probable category of a distribution and its probability (the
/// first among equals).
pub fn top(probabilities: &[f64]) -> (usize, f64) {
    probabilities.iter().enumerate().fold(
        (0, f64::MIN),
        |(bi, bq), (i, &q)| if q > bq { (i, q) } else { (bi, bq) },
    )
}

/// The bin of a confidence: `(b/15, (b+1)/15]`, 0 in the first.
pub fn bin_of(confidence: f64) -> usize {
    let b = (confidence * ECE_BINS as f64).ceil() as usize;
    b.saturating_sub(1).min(ECE_BINS - 1)
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_case_by_hand() {
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        // truth a a b b c ; predicted a b b b a
        let truth = [0, 0, 1, 1, 2];
        let predicted = [0, 1, 1, 1, 0];
        let confidence = [0.9, 0.6, 0.8, 0.7, 0.5];
        let e = evaluate("m", &labels, &truth, &predicted, &confidence, &[0.5; 5]);
        assert_eq!(e.accuracy, 3.0 / 5.0);
        // a: p 1/2 r 1/2 f 1/2; b: p 2/3 r 1 f 0.8; c: 0.
        assert!((e.macro_f1 - (0.5 + 0.8 + 0.0) / 3.0).abs() < 1e-12);
        assert_eq!(
            e.confusion,
            vec![vec![1, 1, 0], vec![0, 2, 0], vec![1, 0, 0]]
        );
        assert_eq!(bin_of(0.0), 0);
        assert_eq!(bin_of(1.0), 14);
        assert_eq!(bin_of(1.0 / 15.0), 0);
        let total: u64 = e.bins.iter().map(|b| b.count).sum();
        assert_eq!(total, 5);
    }
}
