//! Feature extraction: one function, [`Extractor::extract`], used by
//! training and prediction alike (no skew between the two).
//!
//! From the description: the text case folded with its digits masked
//! (`0`), cut into words (runs of letters and digits); each word, each pair
//! of neighbouring words, and the character n-grams of each word padded
//! with a space at both ends (`settings.char_ngrams`, 2 to 5 by default:
//! sklearn's `char_wb`). From the other fields when present: the merchant
//! (whole, and its words), the side (or the amount's sign), the operation
//! type, and the amount's order of magnitude.
//!
//! Each feature is hashed (FNV-1a, 64 bits, with its namespace) into one of
//! `2^hash_bits` buckets. A bucket's value is `1 + ln(count)` times its idf;
//! the three blocks (words, character n-grams, other fields) are each
//! scaled to unit length, then added. Buckets training never saw have an
//! idf of 0: they are out of vocabulary and take no part.

use serde::{Deserialize, Serialize};
use txflow_core::{Side, Transaction};

/// How features are made: part of the model file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSettings {
    /// Buckets: `2^hash_bits`.
    pub hash_bits: u8,
    /// The shortest and longest character n-gram within a word.
    pub char_ngrams: (u8, u8),
    /// Pairs of neighbouring words.
    pub word_bigrams: bool,
}

impl Default for FeatureSettings {
    fn default() -> Self {
        FeatureSettings {
            hash_bits: 18,
            char_ngrams: (2, 5),
            word_bigrams: true,
        }
    }
}

impl FeatureSettings {
    pub fn buckets(&self) -> usize {
        1usize << self.hash_bits
    }

    /// Settings a model file may hold.
    pub fn check(&self) -> Result<(), String> {
        if !(10..=24).contains(&self.hash_bits) {
            return Err(format!("hash_bits {} is not in 10..=24", self.hash_bits));
        }
        let (lo, hi) = self.char_ngrams;
        if lo == 0 || lo > hi || hi > 8 {
            return Err(format!("char_ngrams ({lo}, {hi}) is not within 1..=8"));
        }
        Ok(())
    }
}

/// What a transaction or a labeled row gives the model.
#[derive(Debug, Clone, Copy, Default)]
pub struct Input<'a> {
    pub description: &'a str,
    pub merchant: Option<&'a str>,
    pub side: Option<Side>,
    /// In cents, signed.
    pub amount_cents: Option<i64>,
    pub operation_type: Option<&'a str>,
}

impl<'a> Input<'a> {
    pub fn of(tx: &'a Transaction) -> Input<'a> {
        Input {
            description: tx.description(),
            merchant: tx.merchant(),
            side: Some(tx.side()),
            amount_cents: Some(tx.amount().cents()),
            operation_type: Some(tx.operation_type()),
        }
    }
}

/// A sparse vector: (bucket, value); a bucket may appear more than once
/// (in two blocks), and its values then add.
pub type Sparse = Vec<(u32, f32)>;

/// Makes feature vectors; holds the scratch buffers, so keep one per thread.
#[derive(Debug)]
pub struct Extractor {
    settings: FeatureSettings,
    text: String,
    word_starts: Vec<(usize, usize)>,
    hashes: Vec<u32>,
    padded: Vec<u8>,
    /// The block's distinct buckets so far, and where each is in `out`:
    /// open addressing, twice as many places as the block has hashes, so
    /// it stays in the first-level cache ([`EMPTY`]: a free place).
    table: Vec<(u32, u32)>,
}

/// Feature blocks, each scaled to unit length on its own: words, character
/// n-grams, the other fields.
pub const BLOCKS: usize = 3;

/// A free place in [`Extractor`]'s table (no bucket is: buckets are
/// below 2^24, `FeatureSettings::check`).
const EMPTY: u32 = u32::MAX;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = seed;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// The hash of `bytes` in namespace `ns`.
fn hashed(ns: &[u8], bytes: &[u8]) -> u64 {
    fnv(fnv(FNV_OFFSET, ns), bytes)
}

impl Extractor {
    pub fn new(settings: FeatureSettings) -> Extractor {
        Extractor {
            settings,
            text: String::new(),
            word_starts: Vec::new(),
            hashes: Vec::new(),
            padded: Vec::new(),
            table: Vec::new(),
        }
    }

    pub fn settings(&self) -> &FeatureSettings {
        &self.settings
    }

    /// The bucket counts of `input`, before weighting, block by block:
    /// (bucket, count), each bucket once in a block; `blocks` gets where
    /// each block ends in `out`.
    pub fn counts(
        &mut self,
        input: &Input<'_>,
        out: &mut Vec<(u32, f32)>,
        blocks: &mut [usize; BLOCKS],
    ) {
        out.clear();
        fold(input.description, &mut self.text);
        self.words();
        let mask = (self.settings.buckets() - 1) as u64;
        let (lo, hi) = self.settings.char_ngrams;
        // Block 0: words and pairs of words.
        self.hashes.clear();
        let mut previous: Option<(usize, usize)> = None;
        for &(start, end) in &self.word_starts {
            let word = &self.text.as_bytes()[start..end];
            self.hashes.push((hashed(b"w", word) & mask) as u32);
            if self.settings.word_bigrams
                && let Some((ps, pe)) = previous
            {
                let first = &self.text.as_bytes()[ps..pe];
                let h = fnv(fnv(hashed(b"b", first), b" "), word);
                self.hashes.push((h & mask) as u32);
            }
            previous = Some((start, end));
        }
        self.tally(out);
        blocks[0] = out.len();
        // Block 1: character n-grams within words.
        self.hashes.clear();
        let seed = fnv(FNV_OFFSET, b"c");
        for &(start, end) in &self.word_starts {
            let word = &self.text.as_bytes()[start..end];
            self.padded.clear();
            self.padded.push(b' ');
            self.padded.extend_from_slice(word);
            self.padded.push(b' ');
            // Each n-gram's hash extends the one of the n-gram one byte
            // shorter at the same start (FNV-1a is incremental).
            let len = self.padded.len();
            for start in 0..len {
                let mut h = seed;
                for (n, &b) in self.padded[start..len.min(start + usize::from(hi))]
                    .iter()
                    .enumerate()
                {
                    h ^= u64::from(b);
                    h = h.wrapping_mul(FNV_PRIME);
                    if n + 1 >= usize::from(lo) {
                        self.hashes.push((h & mask) as u32);
                    }
                }
            }
        }
        self.tally(out);
        blocks[1] = out.len();
        // Block 2: the other fields.
        self.hashes.clear();
        if let Some(merchant) = input.merchant.filter(|m| !m.trim().is_empty()) {
            fold(merchant, &mut self.text);
            let whole = self.text.trim().as_bytes();
            self.hashes.push((hashed(b"m", whole) & mask) as u32);
            self.words();
            for &(start, end) in &self.word_starts {
                let word = &self.text.as_bytes()[start..end];
                self.hashes.push((hashed(b"mw", word) & mask) as u32);
            }
        }
        let side = input.side.or(match input.amount_cents {
            Some(c) if c < 0 => Some(Side::Debit),
            Some(c) if c > 0 => Some(Side::Credit),
            _ => None,
        });
        if let Some(side) = side {
            let name: &[u8] = match side {
                Side::Debit => b"debit",
                Side::Credit => b"credit",
            };
            self.hashes.push((hashed(b"s", name) & mask) as u32);
        }
        if let Some(op) = input.operation_type.filter(|o| !o.trim().is_empty()) {
            fold(op, &mut self.text);
            self.hashes
                .push((hashed(b"o", self.text.trim().as_bytes()) & mask) as u32);
        }
        if let Some(cents) = input.amount_cents {
            // Orders of magnitude in euros or dollars: 0 (< 1), 1 (< 10), ...
            let units = cents.unsigned_abs() / 100;
            let magnitude = if units == 0 { 0 } else { units.ilog10() + 1 };
            self.hashes
                .push((hashed(b"a", &magnitude.to_le_bytes()) & mask) as u32);
        }
        self.tally(out);
        blocks[2] = out.len();
    }

    /// The feature vector of `input`: counts made sublinear, weighted by
    /// `idf` (0 drops a bucket), each block scaled to unit length, then the
    /// blocks added (as scikit-learn's stacked vectorizers do). A bucket
    /// may appear once per block: a linear model sums them alike.
    pub fn extract(&mut self, input: &Input<'_>, idf: &[f32], out: &mut Sparse) {
        let mut blocks = [0; BLOCKS];
        self.counts(input, out, &mut blocks);
        weigh(out, &blocks, idf);
        out.retain(|(_, v)| *v != 0.0);
    }

    /// Appends `self.hashes` to `out` as (bucket, count), in the order
    /// each bucket first appears: a small hash table of the block's buckets
    /// says whether this block has one already (no sorting: a sort was a
    /// fifth of prediction time; and not a stamp per bucket of the 2^18,
    /// whose lookups missed the cache, docs/PERFORMANCE.md).
    fn tally(&mut self, out: &mut Vec<(u32, f32)>) {
        let places = (2 * self.hashes.len()).next_power_of_two().max(16);
        let shift = 64 - places.trailing_zeros();
        self.table.clear();
        self.table.resize(places, (EMPTY, 0));
        for &h in &self.hashes {
            // Fibonacci hashing: the bucket's bits spread over the places.
            let mut i = (u64::from(h).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> shift) as usize;
            loop {
                let (bucket, slot) = &mut self.table[i];
                if *bucket == h {
                    out[*slot as usize].1 += 1.0;
                    break;
                }
                if *bucket == EMPTY {
                    *bucket = h;
                    *slot = out.len() as u32;
                    out.push((h, 1.0));
                    break;
                }
                i = (i + 1) & (places - 1);
            }
        }
    }

    /// Word boundaries of `self.text`.
    fn words(&mut self) {
        self.word_starts.clear();
        let bytes = self.text.as_bytes();
        let mut start = None;
        for (i, c) in self.text.char_indices() {
            if c.is_alphanumeric() {
                start.get_or_insert(i);
            } else if let Some(s) = start.take() {
                self.word_starts.push((s, i));
            }
        }
        if let Some(s) = start {
            self.word_starts.push((s, bytes.len()));
        }
    }
}

/// Counts into weighted values: `(1 + ln count) * idf`, each block scaled
/// to unit length.
pub fn weigh(raw: &mut [(u32, f32)], blocks: &[usize; BLOCKS], idf: &[f32]) {
    weigh_by(raw, blocks, |bucket| {
        (bucket, idf.get(bucket as usize).copied().unwrap_or(0.0))
    });
}

/// [`weigh`], with `lookup` giving a bucket's idf and what the bucket's
/// place in `raw` becomes (the bucket itself, or the model's row for it:
/// one lookup per feature when predicting).
pub(crate) fn weigh_by(
    raw: &mut [(u32, f32)],
    blocks: &[usize; BLOCKS],
    lookup: impl Fn(u32) -> (u32, f32),
) {
    let mut from = 0;
    for &to in blocks {
        let block = &mut raw[from..to];
        for (key, value) in block.iter_mut() {
            let (new_key, idf) = lookup(*key);
            // Most counts are 1, whose log is 0.
            let tf = if *value == 1.0 { 1.0 } else { 1.0 + value.ln() };
            *key = new_key;
            *value = tf * idf;
        }
        let norm = block.iter().map(|(_, x)| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            for (_, x) in block.iter_mut() {
                *x /= norm;
            }
        }
        from = to;
    }
}

/// Case folded, digits masked as `0`.
fn fold(text: &str, out: &mut String) {
    out.clear();
    for c in text.chars() {
        if c.is_ascii() {
            let c = c.to_ascii_lowercase();
            out.push(if c.is_ascii_digit() { '0' } else { c });
        } else if c.is_numeric() {
            out.push('0');
        } else {
            out.extend(c.to_lowercase());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(input: Input<'_>) -> Vec<(u32, f32)> {
        let mut out = Vec::new();
        let mut blocks = [0; BLOCKS];
        Extractor::new(FeatureSettings::default()).counts(&input, &mut out, &mut blocks);
        assert_eq!(blocks[BLOCKS - 1], out.len());
        out
    }

    #[test]
    fn case_and_digits_do_not_change_the_features() {
        let a = counts(Input {
            description: "UBER TRIP 1234 Paris",
            ..Input::default()
        });
        let b = counts(Input {
            description: "uber trip 9876 PARIS",
            ..Input::default()
        });
        assert_eq!(a, b);
        assert!(!a.is_empty());
    }

    #[test]
    fn a_word_gives_itself_its_ngrams_and_the_rest_their_own() {
        // "ab": the word, and " a", "ab", "b " (2), " ab", "ab " (3), " ab " (4).
        let only = counts(Input {
            description: "ab",
            ..Input::default()
        });
        let total: f32 = only.iter().map(|(_, c)| c).sum();
        assert_eq!(total, 7.0);
        let more = counts(Input {
            description: "ab",
            merchant: Some("Shop"),
            side: Some(Side::Debit),
            amount_cents: Some(-1250),
            operation_type: Some("card"),
        });
        let total: f32 = more.iter().map(|(_, c)| c).sum();
        // + merchant whole and its word, side, operation type, magnitude.
        assert_eq!(total, 12.0);
    }

    #[test]
    fn vectors_have_a_unit_length_block_and_unseen_buckets_drop_out() {
        let settings = FeatureSettings::default();
        let mut x = Extractor::new(settings);
        let idf = vec![1.0; settings.buckets()];
        let mut v = Vec::new();
        x.extract(
            &Input {
                description: "coffee shop coffee",
                ..Input::default()
            },
            &idf,
            &mut v,
        );
        // Two blocks (words, n-grams) of unit length each.
        let norm: f32 = v.iter().map(|(_, x)| x * x).sum();
        assert!((norm - 2.0).abs() < 1e-2, "{norm}");
        let none = vec![0.0; settings.buckets()];
        x.extract(
            &Input {
                description: "coffee",
                ..Input::default()
            },
            &none,
            &mut v,
        );
        assert!(v.is_empty());
    }
}
