//! Amounts as PostgreSQL `numeric`, in its binary wire format, so COPY can
//! send them without a decimal library.

use bytes::{BufMut, BytesMut};
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use txflow_core::Amount;

/// An [`Amount`] encoded as `numeric` with scale 2.
#[derive(Debug, Clone, Copy)]
pub struct Numeric(pub Amount);

impl ToSql for Numeric {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        // numeric's wire format: ndigits, weight, sign, dscale, then base-10000
        // digits, most significant first; weight is the power of 10000 of the
        // first digit.
        let cents = self.0.cents();
        let abs = cents.unsigned_abs();
        let mut digits: Vec<i16> = Vec::with_capacity(5);
        let mut units = abs / 100;
        while units > 0 {
            digits.push((units % 10_000) as i16);
            units /= 10_000;
        }
        digits.reverse();
        let weight = digits.len() as i16 - 1;
        let fraction = (abs % 100) as i16 * 100;
        if fraction != 0 {
            digits.push(fraction);
        }
        let weight = if digits.is_empty() {
            0
        } else if weight < 0 {
            -1
        } else {
            weight
        };
        out.put_i16(digits.len() as i16);
        out.put_i16(weight);
        out.put_u16(if cents < 0 { 0x4000 } else { 0 });
        out.put_u16(2);
        for d in digits {
            out.put_i16(d);
        }
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }

    to_sql_checked!();
}
