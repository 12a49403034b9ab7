//! The `inbound_events` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "inbound_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub config_id: i32,
    pub config_key: String,
    /// The `InboundRequest`, secrets redacted.
    pub request: Json,
    pub raw_body: String,
    pub idempotency_value: Option<String>,
    pub duplicate_of: Option<Uuid>,
    pub replay_of: Option<Uuid>,
    pub status: String,
    pub http_status: Option<i32>,
    pub message: Option<String>,
    pub data: Option<Json>,
    pub errors: Option<Json>,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTimeUtc>,
    pub lease_until: Option<DateTimeUtc>,
    pub duration_ms: Option<i64>,
    pub received_at: DateTimeUtc,
    pub completed_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
