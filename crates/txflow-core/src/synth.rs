//! A deterministic generator of realistic synthetic transactions, for
//! samples, tests, benchmarks and load generation. The same seed always
//! yields the same sequence.
//!
//! Amounts agree with sides, descriptions with operation types, and the
//! merchants are the kind French bank exports show.

use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

use crate::identity;
use crate::transaction::{Amount, Side, Transaction, TransactionId};

const MERCHANTS: [&str; 24] = [
    "Bouygues",
    "TotalEnergies",
    "Lidl",
    "Deliveroo",
    "SNCF",
    "Auchan",
    "EDF",
    "Uber",
    "Carrefour",
    "Franprix",
    "Air France",
    "Amazon.fr",
    "Monoprix",
    "La Poste",
    "Intermarche",
    "Darty",
    "Orange",
    "Fnac",
    "Transilien",
    "Veolia",
    "Systeme U",
    "RATP",
    "Leclerc",
    "SFR",
];

/// (description template, operation type, side); `{}` stands for the merchant.
const KINDS: [(&str, &str, Side); 10] = [
    ("Card expense at {}", "payment", Side::Debit),
    ("Purchase at {}", "payment", Side::Debit),
    ("Invoice from {}", "payment", Side::Debit),
    ("Subscription to {}", "direct_debit", Side::Debit),
    ("Direct debit", "direct_debit", Side::Debit),
    ("Online payment", "payment", Side::Debit),
    ("Outgoing transfer", "transfer", Side::Debit),
    ("Refund from {}", "refund", Side::Credit),
    ("Receipt from {}", "transfer", Side::Credit),
    ("Incoming transfer", "transfer", Side::Credit),
];

/// How generated ids look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdStyle {
    /// 1, 2, 3, … as in the reference data.
    Sequential,
    /// Random-looking UUIDs (v4 layout), still determined by the seed.
    Uuid,
}

/// An endless, deterministic stream of valid transactions.
#[derive(Debug, Clone)]
pub struct Generator {
    /// fastrand's WyRand from the seed: the same rows for the same seed
    /// (with the fastrand this lock file pins).
    rng: fastrand::Rng,
    next_id: u64,
    ids: IdStyle,
    start: DateTime<Utc>,
}

impl Generator {
    /// Timestamps fall in the 16 months from 2023-01-01, like the reference data.
    pub fn new(seed: u64, ids: IdStyle) -> Self {
        Generator {
            rng: fastrand::Rng::with_seed(seed),
            next_id: 1,
            ids,
            start: Utc
                .with_ymd_and_hms(2023, 1, 1, 0, 0, 0)
                .single()
                .unwrap_or_default(),
        }
    }

    /// The next transaction, timestamped in the reference period.
    pub fn next_transaction(&mut self) -> Transaction {
        let offset = self.rng.i64(0..486 * 86_400);
        let at = self.start + chrono::Duration::seconds(offset);
        self.next_at(at)
    }

    /// The next transaction, timestamped `at` (live event streams use now).
    pub fn next_at(&mut self, at: DateTime<Utc>) -> Transaction {
        let rng = &mut self.rng;
        // About a third credits, as in the reference data.
        let kind = if rng.u8(..100) < 35 {
            rng.usize(7..10)
        } else {
            rng.usize(..7)
        };
        let (template, operation_type, side) = KINDS[kind];
        let merchant = MERCHANTS[rng.usize(..MERCHANTS.len())];
        let cents = rng.i64(100..200_000);
        let cents = if side == Side::Debit { -cents } else { cents };
        let source_id = match self.ids {
            IdStyle::Sequential => self.next_id.to_string(),
            IdStyle::Uuid => {
                let bytes = rng.u128(..);
                uuid::Builder::from_random_bytes(bytes.to_be_bytes())
                    .into_uuid()
                    .to_string()
            }
        };
        self.next_id += 1;
        let id = match Uuid::try_parse(&source_id) {
            Ok(uuid) => TransactionId::from_uuid(uuid),
            Err(_) => identity::transaction_id("synth:", &source_id),
        };
        Transaction {
            id,
            source_id,
            description: template.replace("{}", merchant),
            // At most ±2,000.00: always within Amount::MAX_CENTS.
            amount: Amount(cents),
            timestamp: at,
            merchant: Some(merchant.to_owned()),
            operation_type: operation_type.to_owned(),
            side,
        }
    }
}

impl Iterator for Generator {
    type Item = Transaction;

    fn next(&mut self) -> Option<Transaction> {
        Some(self.next_transaction())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_rows() {
        let a: Vec<_> = Generator::new(7, IdStyle::Sequential).take(100).collect();
        let b: Vec<_> = Generator::new(7, IdStyle::Sequential).take(100).collect();
        let c: Vec<_> = Generator::new(8, IdStyle::Sequential).take(100).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn amounts_agree_with_sides() {
        for tx in Generator::new(1, IdStyle::Uuid).take(10_000) {
            match tx.side() {
                Side::Debit => assert!(tx.amount().cents() < 0),
                Side::Credit => assert!(tx.amount().cents() > 0),
            }
            assert_eq!(tx.id().as_uuid().get_version_num(), 4);
        }
    }
}
