//! The history of configurations: every saved state of a configuration, who saved it and when.
//! Versions are written in the transaction that saves the configuration, so the history holds
//! exactly the states the router could have run. `GetWebHookConfigVersionsQuery` reads it;
//! `RollbackWebHookConfigCommand` (with the other commands) makes an old state current again as a
//! new version: history is never rewritten.

use hookbus_core::{Answered, CommandError, Context, Handler, Permission, Timestamp, register_command};
use hookbus_store::{DbResultExt, Store};
use schemars::JsonSchema;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, Set,
    sea_query::{Expr, ExprTrait, Query},
};
use serde::{Deserialize, Serialize};

use hookbus_script::ScriptEngine;

use crate::{ConfigEntry, WebHookConfig, entity as config};

pub(crate) mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhook_config_versions")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub config_id: i32,
        pub version: i32,
        pub config_key: String,
        /// A [`Change`](super::Change), as its wire name.
        pub change: String,
        /// The configuration as its queries show it ([`WebHookConfig`](crate::WebHookConfig)), as
        /// JSON text.
        pub config: String,
        pub changed_by: String,
        pub changed_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// What made a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Change {
    Created,
    Updated,
    Activated,
    Deactivated,
    RolledBack,
    /// The configuration was deleted; this version is its last state.
    Deleted,
    /// A state saved before the configuration's history was kept.
    Recorded,
}

impl Change {
    fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Activated => "activated",
            Self::Deactivated => "deactivated",
            Self::RolledBack => "rolledBack",
            Self::Deleted => "deleted",
            Self::Recorded => "recorded",
        }
    }

    fn parse(text: &str) -> Result<Self, CommandError> {
        serde_json::from_value(serde_json::Value::String(text.to_owned()))
            .map_err(|_| CommandError::internal(std::io::Error::other(format!("unknown version change '{text}'"))))
    }
}

/// Records `saved`, just written in `txn`, as version `saved.version`.
pub(crate) async fn record(
    txn: &impl ConnectionTrait,
    saved: &config::Model,
    change: Change,
    ctx: &Context,
) -> Result<(), CommandError> {
    insert(txn, saved, saved.version, change, ctx.principal.subject.to_string(), hookbus_core::now()).await
}

/// Before `existing` changes: its state joins the history if it is not there yet (a
/// configuration saved before history was kept).
pub(crate) async fn ensure_recorded(txn: &impl ConnectionTrait, existing: &config::Model) -> Result<(), CommandError> {
    if version_row(txn, existing.id, existing.version).await?.is_some() {
        return Ok(());
    }
    let by =
        WebHookConfig::from(existing.clone()).run_as.map_or_else(|| "unknown".to_owned(), |run_as| run_as.saved_by);
    insert(txn, existing, existing.version, Change::Recorded, by, existing.updated_at).await
}

/// Records the deletion of `existing`: its last state, as the version after its current one.
pub(crate) async fn record_deletion(
    txn: &impl ConnectionTrait,
    existing: &config::Model,
    ctx: &Context,
) -> Result<(), CommandError> {
    ensure_recorded(txn, existing).await?;
    let by = ctx.principal.subject.to_string();
    insert(txn, existing, existing.version + 1, Change::Deleted, by, hookbus_core::now()).await
}

async fn insert(
    txn: &impl ConnectionTrait,
    state: &config::Model,
    version: i32,
    change: Change,
    changed_by: String,
    changed_at: Timestamp,
) -> Result<(), CommandError> {
    let config = serde_json::to_string(&WebHookConfig::from(state.clone())).map_err(CommandError::internal)?;
    entity::ActiveModel {
        config_id: Set(state.id),
        version: Set(version),
        config_key: Set(state.key.clone()),
        change: Set(change.as_str().to_owned()),
        config: Set(config),
        changed_by: Set(changed_by),
        changed_at: Set(changed_at),
        ..Default::default()
    }
    .insert(txn)
    .await
    .or_internal()?;
    Ok(())
}

/// Deletes the history of configurations deleted before `cutoff`.
pub async fn sweep(store: &Store, cutoff: Timestamp) -> Result<u64, DbErr> {
    let deleted_before = Query::select()
        .column(entity::Column::ConfigId)
        .from(entity::Entity)
        .and_where(Expr::col(entity::Column::Change).eq(Change::Deleted.as_str()))
        .and_where(Expr::col(entity::Column::ChangedAt).lt(cutoff))
        .to_owned();
    let still_there = config::Entity::find().select_only().column(config::Column::Id).into_query();
    let old = entity::Entity::find()
        .select_only()
        .column(entity::Column::Id)
        .filter(
            Condition::all()
                .add(entity::Column::ConfigId.in_subquery(deleted_before))
                .add(entity::Column::ConfigId.not_in_subquery(still_there)),
        )
        .into_query();
    store.delete_in_chunks(entity::Entity, Expr::col(entity::Column::Id), old).await
}

/// The stored fields of version `version` of configuration `id`, as a create or update takes
/// them; `None` when the history has no such version.
pub(crate) async fn fields_at_version(
    db: &impl ConnectionTrait,
    id: i32,
    version: i32,
) -> Result<Option<crate::ConfigFields>, CommandError> {
    let row = version_row(db, id, version).await?;
    row.map(|row| serde_json::from_str(&row.config).map_err(CommandError::internal)).transpose()
}

/// The history's row for version `version` of configuration `id`.
async fn version_row(db: &impl ConnectionTrait, id: i32, version: i32) -> Result<Option<entity::Model>, CommandError> {
    entity::Entity::find()
        .filter(entity::Column::ConfigId.eq(id))
        .filter(entity::Column::Version.eq(version))
        .one(db)
        .await
        .or_internal()
}

/// Version `version` of configuration `id`, ready to run (its authority as recorded then).
/// `None` when the history has no such version.
pub async fn entry_at_version(ctx: &Context, id: i32, version: i32) -> Result<Option<ConfigEntry>, CommandError> {
    let Some(row) = version_row(ctx.service::<Store>()?.db(), id, version).await? else {
        return Ok(None);
    };
    let view: WebHookConfig = serde_json::from_str(&row.config).map_err(CommandError::internal)?;
    let model = config::Model {
        id: view.id,
        key: view.key,
        description: view.description,
        is_enabled: view.is_enabled,
        path: view.path,
        action: view.action,
        execution_type: view.execution_type,
        command_name: view.command_name,
        command_chain: view.command_chain,
        execution_code: view.execution_code,
        process_definition_id: view.process_definition_id,
        allowable_ips: view.allowable_ips,
        idempotency_key: view.idempotency_key,
        respond_async: view.respond_async,
        idempotency_returns_result: view.idempotency_returns_result,
        run_as: view.run_as.map(|run_as| serde_json::to_string(&run_as)).transpose().map_err(CommandError::internal)?,
        version: row.version,
        created_at: view.created_at,
        updated_at: view.updated_at,
    };
    ConfigEntry::new(model, ctx.service::<ScriptEngine>()?).map(Some).map_err(CommandError::internal)
}

/// One saved state of a configuration.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigVersion {
    pub version: i32,
    pub change: Change,
    /// Who saved it: `token:<id>`, `bootstrap`, or the route or process that did.
    pub changed_by: String,
    pub changed_at: Timestamp,
    /// The configuration as it was.
    pub config: WebHookConfig,
}

impl ConfigVersion {
    fn of(row: entity::Model) -> Result<Self, CommandError> {
        Ok(Self {
            version: row.version,
            change: Change::parse(&row.change)?,
            changed_by: row.changed_by,
            changed_at: row.changed_at,
            config: serde_json::from_str(&row.config).map_err(CommandError::internal)?,
        })
    }
}

/// Every version of a configuration, newest first; a deleted configuration's too, for
/// `inbound.retention_days` after its deletion.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetWebHookConfigVersionsQuery {
    pub id: i32,
}

impl Handler for GetWebHookConfigVersionsQuery {
    const PERMISSION: Permission = Permission::WebhooksRead;
    type Answer = Vec<ConfigVersion>;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        let db = ctx.service::<Store>()?.db();
        let mut rows = entity::Entity::find()
            .filter(entity::Column::ConfigId.eq(self.id))
            .order_by_desc(entity::Column::Version)
            .all(db)
            .await
            .or_internal()?;
        let current = config::Entity::find_by_id(self.id).one(db).await.or_internal()?;
        match (&current, rows.first()) {
            (None, None) => return Err(CommandError::not_found("Not found", "Configuration not found")),
            // Saved before history was kept and not changed since: its current state is its history.
            (Some(current), newest) if newest.is_none_or(|newest| newest.version < current.version) => {
                let txn = ctx.service::<Store>()?.begin_write().await.or_internal()?;
                ensure_recorded(&*txn, current).await?;
                txn.commit().await.or_internal()?;
                rows = entity::Entity::find()
                    .filter(entity::Column::ConfigId.eq(self.id))
                    .order_by_desc(entity::Column::Version)
                    .all(db)
                    .await
                    .or_internal()?;
            }
            _ => {}
        }
        let versions = rows.into_iter().map(ConfigVersion::of).collect::<Result<_, _>>()?;
        Answered::ok(versions, "Webhook configuration versions retrieved successfully")
    }
}
register_command!("GetWebHookConfigVersionsQuery" => GetWebHookConfigVersionsQuery);
