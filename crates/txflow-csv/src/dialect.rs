//! The two CSV dialects txflow reads.

use txflow_core::transaction::DecimalMark;

/// Separator and decimal mark of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    pub delimiter: u8,
    pub decimal: DecimalMark,
}

impl Dialect {
    /// The original system's exports: `;`, `-952,40`, `2023-11-28 06:35:12`.
    pub const REFERENCE: Dialect = Dialect {
        delimiter: b';',
        decimal: DecimalMark::Comma,
    };

    /// The common one: `,`, `-952.40`, RFC 3339 timestamps.
    pub const COMMON: Dialect = Dialect {
        delimiter: b',',
        decimal: DecimalMark::Point,
    };

    /// The delimiter the header line uses: whichever of `;`, `,`, tab and `|`
    /// appears most often outside quotes (`,` when none does).
    pub fn detect_delimiter(header_line: &[u8]) -> u8 {
        let mut counts = [0usize; 4];
        let candidates = [b';', b',', b'\t', b'|'];
        let mut quoted = false;
        for &b in header_line {
            if b == b'"' {
                quoted = !quoted;
            } else if !quoted && let Some(i) = candidates.iter().position(|&c| c == b) {
                counts[i] += 1;
            }
        }
        let (best, count) = counts
            .iter()
            .enumerate()
            .max_by_key(|&(i, &n)| (n, std::cmp::Reverse(i)))
            .unwrap_or((1, &0));
        if *count == 0 { b',' } else { candidates[best] }
    }

    /// The decimal mark an amount uses, if it tells: `-952,40` says comma,
    /// `-952.40` point, `12` nothing.
    pub fn detect_decimal(amount: &[u8]) -> Option<DecimalMark> {
        match (amount.contains(&b','), amount.contains(&b'.')) {
            (true, false) => Some(DecimalMark::Comma),
            (false, true) => Some(DecimalMark::Point),
            _ => None,
        }
    }

    /// The default decimal mark for a delimiter: a comma cannot be both.
    pub fn default_decimal(delimiter: u8) -> DecimalMark {
        if delimiter == b',' {
            DecimalMark::Point
        } else {
            DecimalMark::Comma
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delimiters_are_detected_from_the_header() {
        assert_eq!(Dialect::detect_delimiter(b"id;description;amount"), b';');
        assert_eq!(Dialect::detect_delimiter(b"id,description,amount"), b',');
        assert_eq!(Dialect::detect_delimiter(b"\"a,b\";c;d"), b';');
        assert_eq!(Dialect::detect_delimiter(b"id\tamount"), b'\t');
        assert_eq!(Dialect::detect_delimiter(b"id"), b',');
    }

    #[test]
    fn decimal_marks_are_detected_from_an_amount() {
        assert_eq!(
            Dialect::detect_decimal(b"-952,40"),
            Some(DecimalMark::Comma)
        );
        assert_eq!(
            Dialect::detect_decimal(b"-952.40"),
            Some(DecimalMark::Point)
        );
        assert_eq!(Dialect::detect_decimal(b"12"), None);
    }
}
