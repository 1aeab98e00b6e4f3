//! Categories and label sets.
//!
//! A category is a label of the model that made it: every model declares its
//! [`LabelSet`] (the reference model's is the original service's 15 names, in
//! their order; a trained model's is whatever its training data used), and a
//! stored category is one of the labels of the model version stored with it.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// A category name: one label of a model's [`LabelSet`].
///
/// Cheap to clone (a shared string), so a prediction carries its own.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Category(Arc<str>);

impl Category {
    /// The longest name, in bytes.
    pub const MAX_LEN: usize = 64;

    /// A category named `name`: not empty, at most [`Category::MAX_LEN`]
    /// bytes, no control characters, no space at either end.
    pub fn new(name: &str) -> Result<Category, InvalidCategory> {
        let reason = if name.is_empty() {
            Some("it is empty")
        } else if name.len() > Category::MAX_LEN {
            Some("it is longer than 64 bytes")
        } else if name.chars().any(char::is_control) {
            Some("it holds a control character")
        } else if name.trim() != name {
            Some("it starts or ends with a space")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(InvalidCategory {
                name: name.chars().take(80).collect(),
                reason,
            }),
            None => Ok(Category(Arc::from(name))),
        }
    }

    /// The name, as stored and sent over the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl FromStr for Category {
    type Err = InvalidCategory;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Category::new(s)
    }
}

/// A name that cannot be a category.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not a category name: {reason}")]
pub struct InvalidCategory {
    pub name: String,
    pub reason: &'static str,
}

/// The categories a model answers with, in its order (the order of its
/// outputs: the reference model's index, a trained model's weight columns).
#[derive(Clone, PartialEq, Eq)]
pub struct LabelSet {
    labels: Arc<[Category]>,
}

/// Why a list of names is not a label set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelSetError {
    #[error("a label set needs at least 2 categories, this one has {0}")]
    TooFew(usize),
    #[error("a label set has at most {max} categories, this one has {0}", max = LabelSet::MAX)]
    TooMany(usize),
    #[error("category {0:?} appears twice in the label set")]
    Duplicate(String),
    #[error(transparent)]
    Invalid(#[from] InvalidCategory),
}

impl LabelSet {
    /// The most categories one model may have.
    pub const MAX: usize = 4_096;

    /// The names, in order: at least 2, at most [`LabelSet::MAX`], each a
    /// valid [`Category`] and none twice.
    pub fn new<S: AsRef<str>>(
        names: impl IntoIterator<Item = S>,
    ) -> Result<LabelSet, LabelSetError> {
        let mut labels: Vec<Category> = Vec::new();
        for name in names {
            let category = Category::new(name.as_ref())?;
            if labels.contains(&category) {
                return Err(LabelSetError::Duplicate(category.as_str().to_owned()));
            }
            labels.push(category);
            if labels.len() > LabelSet::MAX {
                return Err(LabelSetError::TooMany(labels.len()));
            }
        }
        if labels.len() < 2 {
            return Err(LabelSetError::TooFew(labels.len()));
        }
        Ok(LabelSet {
            labels: labels.into(),
        })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Never: a label set has at least two categories.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The category at `index` in the model's order.
    pub fn get(&self, index: usize) -> Option<&Category> {
        self.labels.get(index)
    }

    /// Where `name` stands in the model's order.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.labels.iter().position(|c| c.as_str() == name)
    }

    /// The category named `name`, if the set has it.
    pub fn find(&self, name: &str) -> Option<&Category> {
        self.labels.iter().find(|c| c.as_str() == name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Category> {
        self.labels.iter()
    }

    /// The names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.labels.iter().map(Category::as_str).collect()
    }
}

impl fmt::Debug for LabelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.labels.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in ["Rent", "Salary Income", "Personal Care", "Épicerie"] {
            assert_eq!(
                name.parse::<Category>().map(|c| c.as_str().to_owned()),
                Ok(name.to_owned())
            );
        }
    }

    #[test]
    fn names_that_cannot_be_stored_are_refused_with_the_reason() {
        for (name, reason) in [
            ("", "it is empty"),
            (" Rent", "it starts or ends with a space"),
            ("Rent\n", "it holds a control character"),
        ] {
            assert_eq!(Category::new(name).map_err(|e| e.reason), Err(reason));
        }
        assert!(Category::new(&"x".repeat(65)).is_err());
        assert!(Category::new(&"x".repeat(64)).is_ok());
    }

    #[test]
    fn a_label_set_keeps_its_order_and_refuses_duplicates() {
        let set = LabelSet::new(["b", "a", "c"]).expect("valid");
        assert_eq!(set.names(), ["b", "a", "c"]);
        assert_eq!(set.index_of("a"), Some(1));
        assert!(!set.contains("d"));
        assert_eq!(
            LabelSet::new(["a", "b", "a"]),
            Err(LabelSetError::Duplicate("a".into()))
        );
        assert_eq!(LabelSet::new(["a"]), Err(LabelSetError::TooFew(1)));
    }
}
