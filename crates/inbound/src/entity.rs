//! The `inbound_events` table.

use hookbus_core::CommandError;
use sea_orm::entity::prelude::*;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::value::RawValue;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "inbound_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub config_id: i32,
    pub config_key: String,
    /// The `InboundRequest`, secrets redacted.
    pub request: JsonText,
    pub raw_body: String,
    pub idempotency_value: Option<String>,
    pub duplicate_of: Option<Uuid>,
    pub replay_of: Option<Uuid>,
    pub status: crate::InboundStatus,
    pub http_status: Option<i32>,
    pub message: Option<String>,
    pub data: Option<JsonText>,
    pub errors: Option<JsonText>,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTimeUtc>,
    pub lease_until: Option<DateTimeUtc>,
    pub duration_ms: Option<i64>,
    pub received_at: DateTimeUtc,
    pub completed_at: Option<DateTimeUtc>,
    /// A queued request's secret headers as they came, sealed, until its last run.
    pub sealed_headers: Option<String>,
    /// The version of the configuration that handled it; `None` for the fixed routes.
    pub config_version: Option<i32>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// A JSON document the log keeps as text: the columns `request`, `data` and `errors`.
///
/// The server writes these documents from values it serialized itself, so they are always valid
/// JSON; as PostgreSQL `json` columns they would be parsed again by the database on every insert,
/// a large share of its work under load. Text also holds any JSON string, `\u0000` included,
/// which `jsonb` refuses.
#[derive(Clone, Debug, PartialEq, Eq, DeriveValueType)]
pub struct JsonText(String);

impl JsonText {
    /// `value` as JSON text.
    pub fn of(value: &impl Serialize) -> Result<Self, CommandError> {
        serde_json::to_string(value).map(Self).map_err(CommandError::internal)
    }

    /// The document read into a `T`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, CommandError> {
        serde_json::from_str(&self.0).map_err(CommandError::internal)
    }

    /// JSON text serialized by the caller.
    pub(crate) fn from_stored(text: String) -> Self {
        Self(text)
    }

    /// The text, as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, as stored.
    pub fn into_string(self) -> String {
        self.0
    }

    /// The document for a response, sent as stored without building its tree. Text that is not
    /// JSON (written to the table by something other than hookbus) is sent as a JSON string.
    pub fn into_raw(self) -> Box<RawValue> {
        RawValue::from_string(self.0.clone()).unwrap_or_else(|error| {
            tracing::warn!(%error, "an inbound event holds text that is not JSON; it is sent as a string");
            serde_json::value::to_raw_value(&self.0).expect("a string is JSON")
        })
    }
}
