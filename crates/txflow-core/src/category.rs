//! The spending categories, in the order the original model service used.

use std::fmt;
use std::str::FromStr;

/// A spending category. The order of [`Category::ALL`] is part of the
/// reference model's contract: do not reorder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    Rent,
    SalaryIncome,
    Food,
    Restaurant,
    ClientExpenses,
    Transportation,
    Utilities,
    Entertainment,
    Healthcare,
    Shopping,
    Travel,
    Education,
    Insurance,
    Investment,
    Subscriptions,
}

impl Category {
    /// Every category, in the model's order.
    pub const ALL: [Category; 15] = [
        Category::Rent,
        Category::SalaryIncome,
        Category::Food,
        Category::Restaurant,
        Category::ClientExpenses,
        Category::Transportation,
        Category::Utilities,
        Category::Entertainment,
        Category::Healthcare,
        Category::Shopping,
        Category::Travel,
        Category::Education,
        Category::Insurance,
        Category::Investment,
        Category::Subscriptions,
    ];

    /// The name stored and sent over the wire, as the original spelled it.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Rent => "Rent",
            Category::SalaryIncome => "Salary Income",
            Category::Food => "Food",
            Category::Restaurant => "Restaurant",
            Category::ClientExpenses => "Client Expenses",
            Category::Transportation => "Transportation",
            Category::Utilities => "Utilities",
            Category::Entertainment => "Entertainment",
            Category::Healthcare => "Healthcare",
            Category::Shopping => "Shopping",
            Category::Travel => "Travel",
            Category::Education => "Education",
            Category::Insurance => "Insurance",
            Category::Investment => "Investment",
            Category::Subscriptions => "Subscriptions",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A category name that is not one of the 15.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown category {0:?}")]
pub struct UnknownCategory(pub String);

impl FromStr for Category {
    type Err = UnknownCategory;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Category::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownCategory(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in Category::ALL {
            assert_eq!(c.as_str().parse::<Category>(), Ok(c));
        }
        assert!("Groceries".parse::<Category>().is_err());
    }
}
