//! The fuzz targets' checks (`fuzz/src/lib.rs`, shared with the cargo fuzz
//! targets) replayed in `cargo test` on the stable toolchain: every seed in
//! `fuzz/seeds/<target>`, then seeded mutations of them (bytes flipped,
//! inserted, removed, ranges repeated, cut short, seeds spliced). The same
//! inputs every run; `scripts/fuzz.sh` stays for real fuzzing.

#[path = "../../../../fuzz/src/lib.rs"]
mod checks;

use std::path::Path;

/// Mutants per target, beyond the seeds themselves.
const MUTANTS: usize = 20_000;

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a seed").path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(f).expect("a seed file"))
        .collect();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// xorshift64*: a fixed sequence for a fixed start.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Bytes that matter to the parsers: separators, quotes, JSON's
/// punctuation, digits, the model file's signature bytes, extremes.
const INTERESTING: &[u8] = b";,\"\r\n{}[]:-.0123456789eE\\ \x00\x01\x7f\x80\xff\x89TXM";

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        let len = data.len();
        match rng.below(7) {
            0 if len > 0 => {
                let at = rng.below(len);
                data[at] ^= 1 << rng.below(8);
            }
            1 => {
                let at = rng.below(len + 1);
                let byte = INTERESTING[rng.below(INTERESTING.len())];
                data.insert(at, byte);
            }
            2 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(16));
                data.drain(at..at + n);
            }
            3 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(64));
                let piece = data[at..at + n].to_vec();
                let to = rng.below(len + 1);
                data.splice(to..to, piece);
            }
            4 => data.truncate(rng.below(len + 1)),
            5 => {
                let other = &seeds[rng.below(seeds.len())];
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            _ if len > 0 => {
                let at = rng.below(len);
                data[at] = INTERESTING[rng.below(INTERESTING.len())];
            }
            _ => data.push(rng.next() as u8),
        }
    }
    data
}

/// Runs the seeds and the mutants through `check`; the mutants must land
/// on both sides of the parser (some accepted, some refused), or they
/// test nothing but the refusal.
fn replay(target: &str, check: fn(&[u8]) -> bool) {
    let seeds = seeds(target);
    for seed in &seeds {
        check(seed);
    }
    let mut accepted = 0;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ target.len() as u64);
    for i in 0..MUTANTS {
        let input = mutate(&mut rng, &seeds);
        let outcome = std::panic::catch_unwind(|| check(&input));
        if let Ok(true) = outcome {
            accepted += 1;
        }
        if outcome.is_err() {
            let path = std::env::temp_dir().join(format!("txflow-fuzz-{target}-{i}"));
            std::fs::write(&path, &input).expect("write the failing input");
            panic!(
                "{target}: mutant {i} broke the check; its input is in {} (add it to fuzz/seeds/{target})",
                path.display()
            );
        }
    }
    eprintln!("{target}: {accepted} of {MUTANTS} mutants got past the parser");
    assert!(
        accepted > MUTANTS / 100 && accepted < MUTANTS,
        "{target}: {accepted} of {MUTANTS} mutants accepted; the mutations no longer reach both sides"
    );
}

#[test]
fn csv_decoder_seeds_and_mutants() {
    replay("csv_decoder", checks::csv_decoder);
}

#[test]
fn kafka_event_seeds_and_mutants() {
    replay("kafka_event", checks::kafka_event);
}

#[test]
fn predict_request_seeds_and_mutants() {
    replay("predict_request", checks::predict_request);
}

#[test]
fn model_file_seeds_and_mutants() {
    replay("model_file", checks::model_file);
}
