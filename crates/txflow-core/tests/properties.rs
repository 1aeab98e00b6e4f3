//! Properties of amounts and identities over generated inputs (proptest).

use proptest::prelude::*;
use txflow_core::Amount;
use txflow_core::identity::transaction_id;
use txflow_core::transaction::{AmountError, DecimalMark};

fn mark() -> impl Strategy<Value = DecimalMark> {
    prop_oneof![Just(DecimalMark::Point), Just(DecimalMark::Comma)]
}

fn cents() -> impl Strategy<Value = i64> {
    -Amount::MAX_CENTS..=Amount::MAX_CENTS
}

/// An amount as a file in `mark` writes it, with `zeros` trailing zeros.
fn written(cents: i64, mark: DecimalMark, zeros: usize) -> String {
    let text = Amount::from_cents(cents).expect("in range").to_string();
    let text = text.replace('.', &mark.as_char().to_string());
    format!("{text}{}", "0".repeat(zeros))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn an_amount_reads_back_as_written_in_either_mark(cents in cents(), mark in mark(), zeros in 0usize..4) {
        let text = written(cents, mark, zeros);
        prop_assert_eq!(Amount::parse(&text, mark).map(Amount::cents), Ok(cents));
        // Whole amounts may drop their decimals, and a plus sign is allowed.
        if cents % 100 == 0 {
            let whole = (cents / 100).to_string();
            prop_assert_eq!(Amount::parse(&whole, mark).map(Amount::cents), Ok(cents));
        }
        if cents >= 0 {
            prop_assert_eq!(Amount::parse(&format!("+{text}"), mark).map(Amount::cents), Ok(cents));
        }
    }

    #[test]
    fn the_other_mark_is_never_read_as_a_decimal(cents in cents(), mark in mark()) {
        prop_assume!(cents % 100 != 0);
        let other = match mark {
            DecimalMark::Point => DecimalMark::Comma,
            DecimalMark::Comma => DecimalMark::Point,
        };
        let text = written(cents, other, 0);
        prop_assert_eq!(Amount::parse(&text, mark), Err(AmountError::NotANumber));
    }

    #[test]
    fn a_third_decimal_that_is_not_zero_is_refused_never_rounded(
        cents in cents(), mark in mark(), digit in 1u8..=9, zeros in 0usize..3,
    ) {
        let text = format!("{}{}{}", written(cents, mark, 0), "0".repeat(zeros), digit);
        prop_assert_eq!(Amount::parse(&text, mark), Err(AmountError::TooPrecise));
    }

    #[test]
    fn beyond_the_largest_amount_is_out_of_range(excess in 1i64..1_000_000_000, mark in mark(), negative: bool) {
        let cents = Amount::MAX_CENTS + excess;
        let text = format!("{}{}{}{:02}", if negative { "-" } else { "" }, cents / 100, mark.as_char(), cents % 100);
        prop_assert_eq!(Amount::parse(&text, mark), Err(AmountError::OutOfRange));
    }

    #[test]
    fn any_text_is_an_amount_or_a_reason_and_never_a_panic(text in any::<String>(), mark in mark()) {
        if let Ok(amount) = Amount::parse(&text, mark) {
            prop_assert!(amount.cents().abs() <= Amount::MAX_CENTS);
        }
    }

    #[test]
    fn a_derived_id_is_stable_and_distinct_per_location_and_id(
        location in "(file:///|s3://)[a-z]{1,8}/[a-z0-9_]{1,12}\\.csv",
        other_location in "(file:///|s3://)[a-z]{1,8}/[a-z0-9_]{1,12}\\.csv",
        id in "[0-9]{1,9}",
        other_id in "[0-9]{1,9}",
    ) {
        let a = transaction_id(&location, &id);
        prop_assert_eq!(a, transaction_id(&location, &id));
        prop_assert_eq!(a.as_uuid().get_version_num(), 5);
        if (location.as_str(), id.as_str()) != (other_location.as_str(), other_id.as_str()) {
            prop_assert_ne!(a, transaction_id(&other_location, &other_id));
        }
        // Moving the separator between location and id changes the id.
        let shifted = format!("{location}{}", &id[..1]);
        if id.len() > 1 {
            prop_assert_ne!(a, transaction_id(&shifted, &id[1..]));
        }
    }

    #[test]
    fn a_uuid_id_is_kept_wherever_it_comes_from(bits: u128, location in "[a-z:/]{1,20}") {
        let uuid = uuid::Uuid::from_u128(bits);
        prop_assert_eq!(*transaction_id(&location, &uuid.to_string()).as_uuid(), uuid);
    }
}
