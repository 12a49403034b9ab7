use hookbus_core::{Delegation, DelegationView, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::entity;

/// A configuration as the commands return it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebHookConfig {
    pub id: i32,
    pub key: String,
    pub description: String,
    pub is_enabled: bool,
    pub path: String,
    pub action: String,
    pub execution_type: i16,
    pub command_name: Option<String>,
    pub command_chain: Option<Value>,
    pub execution_code: Option<String>,
    pub process_definition_id: Option<i32>,
    #[serde(rename = "allowableIPs")]
    pub allowable_ips: Option<String>,
    pub idempotency_key: Option<String>,
    pub respond_async: bool,
    pub idempotency_returns_result: bool,
    /// The authority its commands run with: its saver's permissions (within
    /// `router.internal_permissions`) and owner. Absent for a configuration saved before
    /// authority was recorded: it runs with `router.internal_permissions`, bound to no owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as: Option<DelegationView>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl From<entity::Model> for WebHookConfig {
    fn from(model: entity::Model) -> Self {
        let entity::Model {
            id,
            key,
            description,
            is_enabled,
            path,
            action,
            execution_type,
            command_name,
            command_chain,
            execution_code,
            process_definition_id,
            allowable_ips,
            idempotency_key,
            respond_async,
            idempotency_returns_result,
            run_as,
            version: _,
            created_at,
            updated_at,
        } = model;
        Self {
            id,
            key,
            description,
            is_enabled,
            path,
            action,
            execution_type,
            command_name,
            command_chain,
            execution_code,
            process_definition_id,
            allowable_ips,
            idempotency_key,
            respond_async,
            idempotency_returns_result,
            run_as: run_as.and_then(|text| Delegation::from_stored(&text).ok()).map(|run_as| run_as.view()),
            created_at,
            updated_at,
        }
    }
}
