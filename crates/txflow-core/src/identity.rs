//! Transaction identity.
//!
//! An input id that is a UUID is kept. Any other id (the reference data uses
//! integers) becomes a UUID v5 of the source location and the source id, so
//! the same row of the same file always maps to the same transaction id, and
//! a rerun updates nothing it already wrote.

use uuid::Uuid;

use crate::transaction::TransactionId;

/// The namespace of derived ids: UUID v5 of the URL namespace and
/// `https://txflow.dev/ns/transaction`. Changing it changes every derived id.
pub const NAMESPACE: Uuid = Uuid::from_u128(0x7281_b929_8d42_59d2_a3a7_c959_d17f_2647);

/// The transaction id of a record: its own UUID, or one derived from where it
/// came from (`location`, e.g. `s3://bank/2024/01.csv`) and its `source_id`.
pub fn transaction_id(location: &str, source_id: &str) -> TransactionId {
    if let Ok(uuid) = Uuid::try_parse(source_id) {
        return TransactionId::from_uuid(uuid);
    }
    let mut name = Vec::with_capacity(location.len() + 1 + source_id.len());
    name.extend_from_slice(location.as_bytes());
    // A NUL cannot appear in a URL, so (location, id) pairs never collide.
    name.push(0);
    name.extend_from_slice(source_id.as_bytes());
    TransactionId::from_uuid(Uuid::new_v5(&NAMESPACE, &name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_ids_are_kept() {
        let id = transaction_id("file:///a.csv", "b9fa6684-502b-4695-8f92-247432ba610d");
        assert_eq!(id.to_string(), "b9fa6684-502b-4695-8f92-247432ba610d");
    }

    #[test]
    fn other_ids_map_to_the_same_uuid_every_time() {
        let a = transaction_id("s3://bank/a.csv", "42");
        assert_eq!(a, transaction_id("s3://bank/a.csv", "42"));
        assert_eq!(a.as_uuid().get_version_num(), 5);
        assert_ne!(a, transaction_id("s3://bank/b.csv", "42"));
        assert_ne!(a, transaction_id("s3://bank/a.csv", "43"));
    }

    #[test]
    fn the_namespace_is_the_documented_one() {
        let derived = Uuid::new_v5(&Uuid::NAMESPACE_URL, b"https://txflow.dev/ns/transaction");
        assert_eq!(NAMESPACE, derived);
    }
}
