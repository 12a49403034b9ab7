//! The states of a logged request, stored as their names.

use schemars::JsonSchema;
use sea_orm::{DeriveActiveEnum, EnumIter, sea_query::StringLen};
use serde::{Deserialize, Serialize};

/// Where a logged request stands. Stored as its name (`Pending`, ...); a stored value that is none
/// of these is an error when read, never taken for another state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize, JsonSchema)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum InboundStatus {
    /// Waiting in the async queue (first run or retry).
    #[sea_orm(string_value = "Pending")]
    Pending,
    /// A handler is running it (under a lease, for queued ones).
    #[sea_orm(string_value = "Processing")]
    Processing,
    #[sea_orm(string_value = "Succeeded")]
    Succeeded,
    #[sea_orm(string_value = "Failed")]
    Failed,
    /// A repeat of an idempotent request, answered without running.
    #[sea_orm(string_value = "Duplicate")]
    Duplicate,
}

impl InboundStatus {
    pub const ALL: [Self; 5] = [Self::Pending, Self::Processing, Self::Succeeded, Self::Failed, Self::Duplicate];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Processing => "Processing",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Duplicate => "Duplicate",
        }
    }

    /// The state named `text`, in any case.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str().eq_ignore_ascii_case(text.trim()))
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::ActiveEnum;

    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_refused() {
        for status in InboundStatus::ALL {
            assert_eq!(InboundStatus::parse(status.as_str()), Some(status));
            assert_eq!(InboundStatus::try_from_value(&status.to_value()).ok(), Some(status));
        }
        assert!(InboundStatus::try_from_value(&"Lost".to_owned()).is_err());
    }
}
