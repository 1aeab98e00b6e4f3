//! The table's schema in the protocol's JSON form, from the lake's Arrow
//! schema (`txflow_parquet::schema::SCHEMA`) and the `date` partition
//! column; and how a stored schema may evolve into the current one.

use arrow_schema::{DataType, TimeUnit};
use serde::{Deserialize, Serialize};
use txflow_parquet::schema::SCHEMA;

/// The partition column (a value per data file, from its path).
pub const DATE: &str = "date";

/// One column of a Delta schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: serde_json::Value,
    pub nullable: bool,
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// A Delta schema: a struct of fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StructType {
    #[serde(rename = "type")]
    pub kind: String,
    pub fields: Vec<Field>,
}

/// The Delta name of an Arrow type of the lake's schema.
fn delta_type(data_type: &DataType) -> String {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 => "string".into(),
        DataType::Dictionary(_, value) => delta_type(value),
        DataType::Decimal128(p, s) => format!("decimal({p},{s})"),
        DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => "timestamp".into(),
        DataType::Float64 => "double".into(),
        DataType::Int64 => "long".into(),
        DataType::Int32 => "integer".into(),
        DataType::Int16 => "short".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Date32 => "date".into(),
        other => unreachable!("the lake's schema has no {other} column"),
    }
}

/// The table's schema as txflow writes it now: every column of the lake's
/// files, then `date`.
pub fn current() -> StructType {
    let mut fields: Vec<Field> = SCHEMA
        .fields()
        .iter()
        .map(|f| Field {
            name: f.name().clone(),
            kind: serde_json::Value::String(delta_type(f.data_type())),
            nullable: f.is_nullable(),
            metadata: serde_json::Map::new(),
        })
        .collect();
    fields.push(Field {
        name: DATE.into(),
        kind: serde_json::Value::String("date".into()),
        nullable: true,
        metadata: serde_json::Map::new(),
    });
    StructType {
        kind: "struct".into(),
        fields,
    }
}

/// How a stored schema relates to the current one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evolution {
    /// The same columns.
    Same,
    /// The current schema adds nullable columns (named): a `metaData`
    /// action with the current schema makes them, old files read as null.
    Adds(Vec<String>),
    /// Not a change txflow makes by itself: the reason.
    Incompatible(String),
}

/// Compares the stored schema (its JSON string) with `current`.
pub fn evolution(stored: &str, current: &StructType) -> Evolution {
    let stored: StructType = match serde_json::from_str(stored) {
        Ok(s) => s,
        Err(e) => return Evolution::Incompatible(format!("its schema does not parse: {e}")),
    };
    for old in &stored.fields {
        match current.fields.iter().find(|f| f.name == old.name) {
            None => {
                return Evolution::Incompatible(format!(
                    "the table has a column {:?} that txflow does not write",
                    old.name
                ));
            }
            Some(new) if new.kind != old.kind => {
                return Evolution::Incompatible(format!(
                    "column {:?} is {} in the table, txflow writes {}",
                    old.name, old.kind, new.kind
                ));
            }
            Some(_) => {}
        }
    }
    let mut added = Vec::new();
    for new in &current.fields {
        if stored.fields.iter().all(|f| f.name != new.name) {
            if !new.nullable {
                return Evolution::Incompatible(format!(
                    "txflow writes a column {:?} that the table lacks and that cannot be null in older files",
                    new.name
                ));
            }
            added.push(new.name.clone());
        }
    }
    if added.is_empty() {
        Evolution::Same
    } else {
        Evolution::Adds(added)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_names_the_delta_types_and_ends_with_the_partition_column() {
        let schema = current();
        let kind = |name: &str| {
            schema
                .fields
                .iter()
                .find(|f| f.name == name)
                .map(|f| f.kind.as_str().unwrap_or_default().to_owned())
        };
        assert_eq!(kind("amount").as_deref(), Some("decimal(15,2)"));
        assert_eq!(kind("category").as_deref(), Some("string"));
        assert_eq!(kind("timestamp").as_deref(), Some("timestamp"));
        assert_eq!(kind("kafka_offset").as_deref(), Some("long"));
        assert_eq!(schema.fields.last().map(|f| f.name.as_str()), Some(DATE));
    }

    #[test]
    fn a_new_nullable_column_is_an_evolution_and_a_changed_type_is_refused() {
        let now = current();
        let json = |s: &StructType| serde_json::to_string(s).expect("encoded");
        assert_eq!(evolution(&json(&now), &now), Evolution::Same);
        let mut older = now.clone();
        older.fields.retain(|f| f.name != "confidence");
        assert_eq!(
            evolution(&json(&older), &now),
            Evolution::Adds(vec!["confidence".into()])
        );
        let mut missing_required = now.clone();
        missing_required.fields.retain(|f| f.name != "category");
        assert!(matches!(
            evolution(&json(&missing_required), &now),
            Evolution::Incompatible(m) if m.contains("\"category\"")
        ));
        let mut retyped = now.clone();
        retyped.fields[0].kind = serde_json::Value::String("long".into());
        assert!(matches!(
            evolution(&json(&retyped), &now),
            Evolution::Incompatible(m) if m.contains("transaction_id")
        ));
    }
}
