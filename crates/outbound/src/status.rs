//! The states of a notification and a subscription's delivery choices, stored as their names.

use schemars::JsonSchema;
use sea_orm::{DeriveActiveEnum, EnumIter, sea_query::StringLen};
use serde::{Deserialize, Serialize};

/// Where a notification stands. Stored as its name (`Pending`, ...); a stored value that is none
/// of these is an error when read, never taken for another state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize, JsonSchema)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum NotificationStatus {
    /// Waiting for its first attempt.
    #[sea_orm(string_value = "Pending")]
    Pending,
    #[sea_orm(string_value = "Delivered")]
    Delivered,
    /// Failed at least once; waiting for a retry.
    #[sea_orm(string_value = "Failed")]
    Failed,
    /// Attempts exhausted.
    #[sea_orm(string_value = "Expired")]
    Expired,
    /// Held while the subscription is suspended.
    #[sea_orm(string_value = "Diverted")]
    Diverted,
    /// Its subscription was deleted or deactivated before it was sent.
    #[sea_orm(string_value = "Cancelled")]
    Cancelled,
}

impl NotificationStatus {
    pub const ALL: [Self; 6] =
        [Self::Pending, Self::Delivered, Self::Failed, Self::Expired, Self::Diverted, Self::Cancelled];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Delivered => "Delivered",
            Self::Failed => "Failed",
            Self::Expired => "Expired",
            Self::Diverted => "Diverted",
            Self::Cancelled => "Cancelled",
        }
    }

    /// The state named `text`, in any case.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str().eq_ignore_ascii_case(text.trim()))
    }

    /// Its metrics label: the name in lower case.
    pub fn label(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Expired => "expired",
            Self::Diverted => "diverted",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether it is still to be sent (it has a queue row).
    pub fn is_waiting(self) -> bool {
        matches!(self, Self::Pending | Self::Failed)
    }
}

/// How retries are spaced. Stored as its name; a stored value that is neither is an error when
/// read, never taken for the other.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, sea_orm::EnumIter, sea_orm::DeriveActiveEnum,
)]
#[serde(rename_all = "lowercase")]
#[sea_orm(rs_type = "String", db_type = "String(sea_orm::sea_query::StringLen::N(16))")]
pub enum DeliveryPolicy {
    /// `retryIntervalSeconds` between attempts.
    #[sea_orm(string_value = "linear")]
    Linear,
    /// `retryIntervalSeconds`, doubled after each attempt up to a cap, with jitter.
    #[sea_orm(string_value = "exponential")]
    Exponential,
}

/// In which order a subscription's notifications are sent. Stored as its name.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    JsonSchema,
    sea_orm::EnumIter,
    sea_orm::DeriveActiveEnum,
)]
#[serde(rename_all = "lowercase")]
#[sea_orm(rs_type = "String", db_type = "String(sea_orm::sea_query::StringLen::N(16))")]
pub enum Ordering {
    /// Up to `maxConcurrency` at once, in any order.
    #[default]
    #[sea_orm(string_value = "unordered")]
    Unordered,
    /// One at a time, in publish order; a notification waiting for a retry holds back the ones
    /// after it until it is delivered or expires.
    #[sea_orm(string_value = "fifo")]
    Fifo,
}

#[cfg(test)]
mod tests {
    use sea_orm::ActiveEnum;

    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_refused() {
        for status in NotificationStatus::ALL {
            assert_eq!(NotificationStatus::parse(status.as_str()), Some(status));
            assert_eq!(status.to_value(), status.as_str());
            assert_eq!(NotificationStatus::try_from_value(&status.as_str().to_owned()).ok(), Some(status));
        }
        assert!(NotificationStatus::try_from_value(&"Lost".to_owned()).is_err());
        assert_eq!(NotificationStatus::parse("delivered"), Some(NotificationStatus::Delivered));
    }
}
