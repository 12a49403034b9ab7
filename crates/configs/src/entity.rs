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
    /// Bumped on every change, so that caches and compiled scripts can be keyed by it.
    pub version: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
