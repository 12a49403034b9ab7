//! The `webhook_configs` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_configs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    #[sea_orm(unique)]
    pub key: String,
    pub description: String,
    pub is_enabled: bool,
    #[sea_orm(unique)]
    pub path: String,
    pub action: String,
    pub execution_type: i16,
    pub command_name: Option<String>,
    pub command_chain: Option<Json>,
    pub execution_code: Option<String>,
    pub process_definition_id: Option<i32>,
    pub allowable_ips: Option<String>,
    pub idempotency_key: Option<String>,
    pub respond_async: bool,
    /// Whether a repeated request gets the first one's answer data.
    pub idempotency_returns_result: bool,
    /// The authority its commands run with (`hookbus_core::Delegation`, stored as JSON text);
    /// `None` for configurations saved before authority was recorded.
    pub run_as: Option<String>,
    /// Bumped on every change, so that the cache can tell one version of a configuration from the next.
    pub version: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
