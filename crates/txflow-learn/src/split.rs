//! Splitting labeled rows by merchant: no merchant on both sides, the honest
//! test of meeting new merchants (what production does every day; a random
//! row split puts a merchant's rows on both sides and flatters any model).
//!
//! A row's merchant is its `merchant` field when it has one, else a key
//! taken from its description: case folded, the statement's
//! `[debit]`/`[credit]` tag and payment-rail words (`pp`, `zelle`, `payment`,
//! `preauthorized`, ...) skipped, the first remaining word of two letters or
//! more. Coarse on purpose ("golden dragon" and "golden corral" share
//! `golden`): a coarser key can only make the test harder, never leak.

/// Words that name how a payment travelled, not who was paid.
const RAIL_WORDS: &[&str] = &[
    "ach",
    "app",
    "autopay",
    "bill",
    "card",
    "cash",
    "checkcard",
    "credit",
    "debit",
    "from",
    "online",
    "payment",
    "paypal",
    "pos",
    "pp",
    "preapproved",
    "preauthorized",
    "purchase",
    "pypl",
    "recurring",
    "sq",
    "subscription",
    "the",
    "to",
    "tst",
    "user",
    "venmo",
    "withdrawal",
    "zelle",
];

/// The merchant key of a row (see the module's documentation).
pub fn merchant_key(description: &str, merchant: Option<&str>) -> String {
    if let Some(m) = merchant.map(str::trim).filter(|m| !m.is_empty()) {
        return m.to_lowercase();
    }
    let text = description.to_lowercase();
    let text = text
        .trim_start()
        .strip_prefix("[debit]")
        .or_else(|| text.trim_start().strip_prefix("[credit]"))
        .unwrap_or(&text);
    text.split(|c: char| !c.is_alphabetic())
        .filter(|w| w.chars().count() >= 2 && !RAIL_WORDS.contains(w))
        .map(str::to_owned)
        .next()
        .unwrap_or_default()
}

/// Where a merchant goes: a number in [0, 1) from its key and the seed.
pub fn position(key: &str, seed: u64) -> f64 {
    // SplitMix64 over FNV-1a of the key: stable across platforms and
    // releases (not std's hasher, which is neither).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether a row goes to the held-out side of a split taking `fraction`
/// of the merchants.
pub fn held_out(description: &str, merchant: Option<&str>, fraction: f64, seed: u64) -> bool {
    position(&merchant_key(description, merchant), seed) < fraction
}

/// `description` without the words that name its merchant: the words of
/// the `merchant` field when there is one, else the merchant key's word
/// (every occurrence, in any case; what is between words is kept). `None`
/// when no word was taken out.
///
/// Training fits such a copy of each row beside the row itself, so that
/// the model also learns what the rest of a description says (`FEE`,
/// `Payment Refund:`, a store number, `PPD ID`): for a merchant it never
/// met, that is all it has to go on.
pub fn without_merchant(description: &str, merchant: Option<&str>) -> Option<String> {
    let key = merchant_key(description, merchant);
    let named: Vec<&str> = key
        .split(|c: char| !c.is_alphabetic())
        .filter(|w| !w.is_empty())
        .collect();
    if named.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(description.len());
    let mut taken = false;
    let mut rest = description;
    while let Some(start) = rest.find(char::is_alphabetic) {
        out.push_str(&rest[..start]);
        let word_end = rest[start..]
            .find(|c: char| !c.is_alphabetic())
            .map_or(rest.len(), |e| start + e);
        let word = &rest[start..word_end];
        if named.iter().any(|n| word.to_lowercase() == *n) {
            taken = true;
        } else {
            out.push_str(word);
        }
        rest = &rest[word_end..];
    }
    out.push_str(rest);
    taken.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_skips_the_tag_and_the_payment_rail() {
        for (description, key) in [
            ("[debit] SZECHUAN PALACE - COLUMBUS", "szechuan"),
            ("[debit] Szechuan Palace", "szechuan"),
            ("[debit] PP*TRIPADVISOR", "tripadvisor"),
            (
                "[debit] Preauthorized Withdrawal To Dave & Buster's",
                "dave",
            ),
            ("[credit] Zelle payment from KAREN JOHNSON 6JDQ8", "karen"),
            ("[debit] APPLE.COM/BILL 9177 UNIVERSITY LN", "apple"),
            ("[debit] 7-ELEVEN 1234", "eleven"),
        ] {
            assert_eq!(merchant_key(description, None), key, "{description}");
        }
        assert_eq!(merchant_key("anything", Some(" Lidl ")), "lidl");
    }

    #[test]
    fn the_merchant_can_be_taken_out_of_a_description() {
        for (description, merchant, without) in [
            (
                "[debit] SZECHUAN PALACE - COLUMBUS",
                None,
                "[debit]  PALACE - COLUMBUS",
            ),
            (
                "[debit] APPLE.COM/BILL apple 9177",
                None,
                "[debit] .COM/BILL  9177",
            ),
            ("[debit] 7-ELEVEN 1234", None, "[debit] 7- 1234"),
            ("CB LIDL PARIS lidl", Some("Lidl Paris"), "CB   "),
        ] {
            assert_eq!(
                without_merchant(description, merchant).as_deref(),
                Some(without),
                "{description}"
            );
        }
        // Nothing names the merchant: no copy.
        assert_eq!(without_merchant("[debit] 1234", None), None);
        assert_eq!(without_merchant("CB 1234", Some("Lidl")), None);
    }

    #[test]
    fn a_merchant_is_on_one_side_only_and_the_seed_moves_it() {
        let a = held_out("[debit] STAPLES #99356", None, 0.5, 7);
        assert_eq!(held_out("[credit] staples 12", None, 0.5, 7), a);
        let positions: Vec<f64> = (0..8).map(|seed| position("staples", seed)).collect();
        assert!(positions.iter().all(|p| (0.0..1.0).contains(p)));
        assert!(positions.windows(2).any(|w| w[0] != w[1]));
    }
}
