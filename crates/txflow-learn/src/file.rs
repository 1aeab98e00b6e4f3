//! The `.txm` model file: one self-describing file.
//!
//! ```text
//! signature        8 bytes   \x89 T X M \r \n \x1a \n
//! format version   u32 LE    1
//! header length    u32 LE
//! header           JSON      Header: format, name, version, labels,
//!                            features, calibration, training (data hash,
//!                            rows, seed, penalty, held-out metrics)
//! classes k        u32 LE
//! rows r           u32 LE    buckets that have weights
//! buckets          r x u32   strictly increasing, < 2^hash_bits
//! weights          r x k f32 a bucket's weights together
//! bias             k f32
//! idf              r f32     of each bucket (others: out of vocabulary)
//! checksum         32 bytes  SHA-256 of everything before it
//! ```
//!
//! All numbers little-endian. The signature's bytes catch a file mangled
//! as text (as PNG's do); the checksum any other change. Loading refuses,
//! by name, whatever it does not understand.

use sha2::{Digest, Sha256};
use txflow_core::LabelSet;

use crate::error::{Error, Result};
use crate::model::{Header, LearnedModel};

pub const SIGNATURE: [u8; 8] = *b"\x89TXM\r\n\x1a\n";
pub const FORMAT_VERSION: u32 = 1;
/// The header's `format`.
pub const FORMAT: &str = "txflow-model";
/// The largest header a loader reads.
const MAX_HEADER: usize = 1 << 20;
/// The most weights a model may hold in memory (1 GiB of f32).
const MAX_WEIGHTS: usize = 1 << 28;

/// The file's bytes.
pub fn encode(model: &LearnedModel) -> Vec<u8> {
    let k = model.classes();
    let used: Vec<u32> = (0..model.buckets.len() as u32)
        .filter(|&b| model.idf_of(b) != 0.0)
        .collect();
    // A header of plain values always serializes.
    let header = serde_json::to_vec(&model.header).unwrap_or_default();
    let mut out = Vec::with_capacity(64 + header.len() + used.len() * (k + 2) * 4);
    out.extend_from_slice(&SIGNATURE);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&(k as u32).to_le_bytes());
    out.extend_from_slice(&(used.len() as u32).to_le_bytes());
    for b in &used {
        out.extend_from_slice(&b.to_le_bytes());
    }
    let none = vec![0f32; k];
    for &b in &used {
        for w in model.weights_of(b).unwrap_or(&none) {
            out.extend_from_slice(&w.to_le_bytes());
        }
    }
    for b in &model.bias {
        out.extend_from_slice(&b.to_le_bytes());
    }
    for &b in &used {
        out.extend_from_slice(&model.idf_of(b).to_le_bytes());
    }
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    out
}

/// Reads a model from a file's bytes.
pub fn decode(bytes: &[u8]) -> Result<LearnedModel> {
    if bytes.len() < SIGNATURE.len() || bytes[..SIGNATURE.len()] != SIGNATURE {
        return Err(Error::NotAModel);
    }
    let mut r = Reader { bytes, at: 8 };
    let version = r.u32()?;
    if version != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion(version));
    }
    let header_len = r.u32()? as usize;
    if header_len > MAX_HEADER {
        return Err(Error::Header(format!(
            "{header_len} bytes, more than the {MAX_HEADER} a header may have"
        )));
    }
    let header_bytes = r.take(header_len)?;
    let k = r.u32()? as usize;
    let rows = r.u32()? as usize;
    // Sizes known: check the length, then the checksum, before the rest.
    let needed =
        r.at.saturating_add(rows.saturating_mul(4))
            .saturating_add(rows.saturating_mul(k).saturating_mul(4))
            .saturating_add(k.saturating_mul(4))
            .saturating_add(rows.saturating_mul(4))
            .saturating_add(32);
    if bytes.len() < needed {
        return Err(Error::Truncated {
            len: bytes.len(),
            needed,
        });
    }
    if bytes.len() > needed {
        return Err(Error::Inconsistent(format!(
            "{} bytes after its end",
            bytes.len() - needed
        )));
    }
    let (body, digest) = bytes.split_at(needed - 32);
    if Sha256::digest(body).as_slice() != digest {
        return Err(Error::Corrupted);
    }
    let header: Header =
        serde_json::from_slice(header_bytes).map_err(|e| Error::Header(e.to_string()))?;
    if header.format != FORMAT {
        return Err(Error::Header(format!(
            "format {:?}, expected {FORMAT:?}",
            header.format
        )));
    }
    header.features.check().map_err(Error::Header)?;
    let labels = LabelSet::new(&header.labels).map_err(|e| Error::Header(e.to_string()))?;
    if labels.len() != k {
        return Err(Error::Inconsistent(format!(
            "{} labels but weights for {k} classes",
            labels.len()
        )));
    }
    let t = header.calibration.temperature;
    if !(t.is_finite() && t > 0.0) {
        return Err(Error::Header(format!(
            "temperature {t} is not a positive number"
        )));
    }
    let buckets = header.features.buckets();
    if buckets.saturating_mul(k) > MAX_WEIGHTS {
        return Err(Error::Inconsistent(format!(
            "{buckets} buckets x {k} categories is more than the {MAX_WEIGHTS} weights a model may have; train with fewer --hash-bits"
        )));
    }
    let mut used = Vec::with_capacity(rows);
    for _ in 0..rows {
        let b = r.u32()?;
        if b as usize >= buckets || used.last().is_some_and(|&last| last >= b) {
            return Err(Error::Inconsistent(format!(
                "bucket {b} is out of order or beyond the {buckets} buckets"
            )));
        }
        used.push(b);
    }
    let weights = (0..used.len() * k)
        .map(|_| r.f32("weight"))
        .collect::<Result<Vec<_>>>()?;
    let bias = (0..k).map(|_| r.f32("bias")).collect::<Result<Vec<_>>>()?;
    let mut idf = vec![0f32; buckets];
    for &b in &used {
        idf[b as usize] = r.f32("idf")?;
    }
    Ok(LearnedModel {
        header,
        labels,
        weights,
        buckets: crate::model::buckets_of(&used, &idf),
        bias,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end {
            Some(end) => {
                let out = &self.bytes[self.at..end];
                self.at = end;
                Ok(out)
            }
            None => Err(Error::Truncated {
                len: self.bytes.len(),
                needed: self.at.saturating_add(n),
            }),
        }
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f32(&mut self, what: &str) -> Result<f32> {
        let b = self.take(4)?;
        let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if v.is_finite() {
            Ok(v)
        } else {
            Err(Error::Inconsistent(format!(
                "a {what} is not a finite number"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::{LabeledRow, TrainOptions, train};

    fn model() -> LearnedModel {
        let rows: Vec<LabeledRow> = (0..20)
            .flat_map(|i| {
                [
                    ("[debit] TAXI CAB", "Transport"),
                    ("[debit] FRESH MARKET", "Groceries"),
                ]
                .map(|(d, c)| LabeledRow {
                    description: format!("{d} {i}"),
                    category: c.into(),
                    merchant: None,
                    amount_cents: Some(-1200),
                    side: None,
                    operation_type: None,
                })
            })
            .collect();
        let options = TrainOptions {
            calibration_fraction: 0.0,
            features: crate::FeatureSettings {
                hash_bits: 12,
                ..Default::default()
            },
            ..TrainOptions::default()
        };
        train(&rows, &options).expect("trains").model
    }

    #[test]
    fn a_model_round_trips_through_its_file() {
        let m = model();
        let bytes = encode(&m);
        let back = decode(&bytes).expect("decodes");
        assert_eq!(back.header, m.header);
        assert_eq!(back.weights, m.weights);
        assert_eq!(back.buckets, m.buckets);
        assert_eq!(back.bias, m.bias);
        assert_eq!(encode(&back), bytes);
    }

    #[test]
    fn truncated_corrupted_and_foreign_files_are_refused_by_name() {
        let bytes = encode(&model());
        assert!(matches!(decode(b"PK\x03\x04zip"), Err(Error::NotAModel)));
        assert!(matches!(decode(&[]), Err(Error::NotAModel)));
        for cut in [9, 20, bytes.len() / 2, bytes.len() - 1] {
            let e = decode(&bytes[..cut]).err().map(|e| e.to_string());
            assert!(
                e.as_deref().is_some_and(|e| e.starts_with("truncated")),
                "{cut}: {e:?}"
            );
        }
        let mut flipped = bytes.clone();
        let i = bytes.len() - 40;
        flipped[i] ^= 0x40;
        assert!(matches!(decode(&flipped), Err(Error::Corrupted)));
        let mut newer = bytes.clone();
        newer[8] = 2;
        assert!(matches!(decode(&newer), Err(Error::UnsupportedVersion(2))));
    }
}
