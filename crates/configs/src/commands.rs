//! The commands that change configurations.

use std::{collections::BTreeMap, sync::Arc};

use hookbus_core::{
    Answered, CommandError, Context, Delegation, Handler, Permission, Timestamp, authorize_commands, register_command,
};
use hookbus_script::ScriptEngine;
use hookbus_store::{DbResultExt, Store, WriteTransaction};
use schemars::JsonSchema;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, Set,
    sea_query::{Alias, Asterisk, Expr, ExprTrait, Query},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    ConfigEntry, ConfigFields, WebHookConfig, WebhookKey,
    cache::{Change as CacheChange, ConfigCache, bump_generation},
    entity,
    history::{self, Change},
    input::{ConfigSpec, ExecutionSpec, Problems},
    secrets,
};

const KEY_TAKEN: &str = "A webhook configuration with this key already exists";
const PATH_TAKEN: &str = "A webhook configuration with this path already exists";

/// Creates a configuration.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateWebHookConfigCommand {
    /// Required, unique, `[A-Za-z0-9._-]{1,100}`; cannot be changed later.
    pub key: Option<String>,
    #[serde(flatten)]
    pub fields: ConfigFields,
    /// Fields this command does not have; refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown: BTreeMap<String, Value>,
}

impl Handler for CreateWebHookConfigCommand {
    const PERMISSION: Permission = Permission::WebhooksWrite;
    type Answer = WebHookConfig;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        let Self { key, fields, unknown } = self;
        let mut problems = unknown_fields(unknown, |_| None);
        let key = problems.check(WebhookKey::parse(key.as_deref().unwrap_or_default()));
        let spec = fields.clone().validate(ctx.service::<ScriptEngine>()?, problems)?;
        let key = key.ok_or_else(|| CommandError::validation("Key is required"))?;
        authorize(ctx, &spec)?;
        ensure_process_exists(ctx, &spec).await?;
        secrets::check_script(ctx, &spec.execution).await?;

        let txn = ctx.service::<Store>()?.begin_write().await.or_internal()?;
        if find_by(&*txn, entity::Column::Key, key.as_str()).await?.is_some() {
            return Err(CommandError::conflict(KEY_TAKEN, format!("Key '{}' is taken", key.as_str())));
        }
        if find_by(&*txn, entity::Column::Path, spec.path.as_str()).await?.is_some() {
            return Err(CommandError::conflict(PATH_TAKEN, format!("Path '{}' is taken", spec.path.as_str())));
        }
        let now = hookbus_core::now();
        let mut row = entity::ActiveModel {
            key: Set(key.as_str().to_owned()),
            version: Set(1),
            created_at: Set(now),
            ..Default::default()
        };
        apply(&mut row, spec, Delegation::of(&ctx.principal), now);
        let saved = row.insert(&*txn).await.conflict_on_unique(KEY_TAKEN, "Key or path is taken")?;
        history::record(&*txn, &saved, Change::Created, ctx).await?;
        commit(ctx, txn, CacheChange::Upsert(entry(ctx, &saved)?)).await?;
        Answered::ok(WebHookConfig::from(saved), "Webhook configuration created successfully")
    }
}
register_command!("CreateWebHookConfigCommand" => CreateWebHookConfigCommand);

/// Replaces every field of a configuration but its key.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateWebHookConfigCommand {
    pub id: i32,
    #[serde(flatten)]
    pub fields: ConfigFields,
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown: BTreeMap<String, Value>,
}

impl Handler for UpdateWebHookConfigCommand {
    const PERMISSION: Permission = Permission::WebhooksWrite;
    type Answer = WebHookConfig;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        let Self { id, fields, unknown } = self;
        let problems =
            unknown_fields(unknown, |name| (name == "key").then(|| "key: Key cannot be changed after creation".into()));
        let saved = save_over(ctx, *id, fields.clone(), problems, Change::Updated).await?;
        Answered::ok(WebHookConfig::from(saved), "Webhook configuration updated successfully")
    }
}

/// Validates `fields` and saves them over configuration `id` as its next version. A rollback
/// keeps whether the configuration is enabled.
pub(crate) async fn save_over(
    ctx: &Context,
    id: i32,
    fields: ConfigFields,
    problems: Problems,
    change: Change,
) -> Result<entity::Model, CommandError> {
    let failure = if change == Change::RolledBack { "Rollback failed" } else { "Update failed" };
    let mut spec = fields.validate(ctx.service::<ScriptEngine>()?, problems)?;
    authorize(ctx, &spec)?;
    ensure_process_exists(ctx, &spec).await?;
    secrets::check_script(ctx, &spec.execution).await?;

    let txn = ctx.service::<Store>()?.begin_write().await.or_internal()?;
    let existing = entity::Entity::find_by_id(id)
        .one(&*txn)
        .await
        .or_internal()?
        .ok_or_else(|| CommandError::not_found(failure, "Configuration not found"))?;
    if let Some(other) = find_by(&*txn, entity::Column::Path, spec.path.as_str()).await?
        && other.id != existing.id
    {
        return Err(CommandError::conflict(PATH_TAKEN, format!("Path '{}' is taken", spec.path.as_str())));
    }
    if change == Change::RolledBack {
        spec.is_enabled = existing.is_enabled;
    }
    history::ensure_recorded(&*txn, &existing).await?;
    let version = existing.version;
    let mut row = existing.into_active_model();
    row.version = Set(version + 1);
    apply(&mut row, spec, Delegation::of(&ctx.principal), hookbus_core::now());
    let saved = row.update(&*txn).await.conflict_on_unique(PATH_TAKEN, "Path is taken")?;
    history::record(&*txn, &saved, change, ctx).await?;
    commit(ctx, txn, CacheChange::Upsert(entry(ctx, &saved)?)).await?;
    Ok(saved)
}
register_command!("UpdateWebHookConfigCommand" => UpdateWebHookConfigCommand);

/// Turns a configuration on.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActivateWebHookConfigCommand {
    pub id: i32,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Activated {
    id: i32,
    key: String,
    is_enabled: bool,
    activated_at: Timestamp,
}

impl Handler for ActivateWebHookConfigCommand {
    const PERMISSION: Permission = Permission::WebhooksWrite;
    type Answer = Activated;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        let saved = set_enabled(ctx, self.id, true, "Activation failed", "Configuration is already active").await?;
        let data = Activated { id: saved.id, key: saved.key, is_enabled: true, activated_at: saved.updated_at };
        Answered::ok(data, "Webhook configuration activated successfully")
    }
}
register_command!("ActivateWebHookConfigCommand" => ActivateWebHookConfigCommand);

/// Turns a configuration off: the router answers 404 for it until it is activated again.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeactivateWebHookConfigCommand {
    pub id: i32,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Deactivated {
    id: i32,
    key: String,
    is_enabled: bool,
    deactivated_at: Timestamp,
}

impl Handler for DeactivateWebHookConfigCommand {
    const PERMISSION: Permission = Permission::WebhooksWrite;
    type Answer = Deactivated;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        let saved =
            set_enabled(ctx, self.id, false, "Deactivation failed", "Configuration is already inactive").await?;
        let data = Deactivated { id: saved.id, key: saved.key, is_enabled: false, deactivated_at: saved.updated_at };
        Answered::ok(data, "Webhook configuration deactivated successfully")
    }
}
register_command!("DeactivateWebHookConfigCommand" => DeactivateWebHookConfigCommand);

/// Deletes a configuration; its key and path can be used again.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteWebHookConfigCommand {
    pub id: i32,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Deleted {
    id: i32,
    key: String,
    deleted_at: Timestamp,
}

impl Handler for DeleteWebHookConfigCommand {
    const PERMISSION: Permission = Permission::WebhooksWrite;
    type Answer = Deleted;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        let txn = ctx.service::<Store>()?.begin_write().await.or_internal()?;
        let existing = entity::Entity::find_by_id(self.id)
            .one(&*txn)
            .await
            .or_internal()?
            .ok_or_else(|| CommandError::not_found("Deletion failed", "Configuration not found"))?;
        history::record_deletion(&*txn, &existing, ctx).await?;
        entity::Entity::delete_by_id(existing.id).exec(&*txn).await.or_internal()?;
        commit(ctx, txn, CacheChange::Remove(existing.id)).await?;
        let data = Deleted { id: existing.id, key: existing.key, deleted_at: hookbus_core::now() };
        Answered::ok(data, "Webhook configuration deleted successfully")
    }
}
register_command!("DeleteWebHookConfigCommand" => DeleteWebHookConfigCommand);

/// Makes an old version of a configuration current again, as a new version. Everything but
/// whether it is enabled comes from that version; the configuration stays enabled or disabled as
/// it is. It runs with the authority of whoever rolls it back, who must be allowed every command
/// it names.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RollbackWebHookConfigCommand {
    pub id: i32,
    /// A version from `GetWebHookConfigVersionsQuery`.
    pub version: i32,
}

impl Handler for RollbackWebHookConfigCommand {
    const PERMISSION: Permission = Permission::WebhooksWrite;
    type Answer = WebHookConfig;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        let fields = history::fields_at_version(ctx.service::<Store>()?.db(), self.id, self.version)
            .await?
            .ok_or_else(|| CommandError::not_found("Rollback failed", "Version not found"))?;
        let saved = save_over(ctx, self.id, fields, Problems::default(), Change::RolledBack).await?;
        let message = format!("Webhook configuration rolled back to version {}", self.version);
        Answered::ok(WebHookConfig::from(saved), message)
    }
}
register_command!("RollbackWebHookConfigCommand" => RollbackWebHookConfigCommand);

/// Bumps the generation, commits, and applies the change to this instance's cache at once, so that
/// the instance reads its own writes.
async fn commit(ctx: &Context, txn: WriteTransaction, change: CacheChange) -> Result<(), CommandError> {
    let generation = bump_generation(&*txn).await.map_err(CommandError::internal)?;
    txn.commit().await.or_internal()?;
    // In a routed request's unit of work, once the unit commits.
    let cache = ctx.service::<ConfigCache>()?.clone();
    ctx.service::<Store>()?.after_commit(move || cache.record(generation, change));
    Ok(())
}

/// An unsaved configuration, checked as a create checks it (but for a key, and a path another
/// configuration has), ready to run in a dry run with the authority of `ctx`'s caller.
pub async fn draft_entry(ctx: &Context, fields: ConfigFields) -> Result<ConfigEntry, CommandError> {
    let scripts = ctx.service::<ScriptEngine>()?;
    let spec = fields.validate(scripts, Problems::default())?;
    authorize(ctx, &spec)?;
    ensure_process_exists(ctx, &spec).await?;
    secrets::check_script(ctx, &spec.execution).await?;
    let now = hookbus_core::now();
    let mut row = entity::ActiveModel {
        id: Set(0),
        key: Set("draft".to_owned()),
        version: Set(0),
        created_at: Set(now),
        ..Default::default()
    };
    apply(&mut row, spec, Delegation::of(&ctx.principal), now);
    let row = sea_orm::TryIntoModel::try_into_model(row).map_err(CommandError::internal)?;
    ConfigEntry::new(row, scripts).map_err(CommandError::internal)
}

/// The cache entry of a row just saved.
fn entry(ctx: &Context, saved: &entity::Model) -> Result<Arc<ConfigEntry>, CommandError> {
    ConfigEntry::new(saved.clone(), ctx.service::<ScriptEngine>()?).map(Arc::new).map_err(CommandError::internal)
}

/// Whoever saves a configuration must be allowed to run every command it names: it runs them
/// later with the saver's authority, for callers who present no token.
fn authorize(ctx: &Context, spec: &ConfigSpec) -> Result<(), CommandError> {
    let named = spec.execution.commands();
    authorize_commands(&ctx.principal, named.iter().map(|(at, name)| (at.clone(), name.as_str())))
}

/// A type-3 configuration must name an existing process definition. Read by table name: the
/// process engine's crate depends on this one, not the other way round.
async fn ensure_process_exists(ctx: &Context, spec: &ConfigSpec) -> Result<(), CommandError> {
    let ExecutionSpec::StartProcess(id) = spec.execution else { return Ok(()) };
    let db = ctx.service::<Store>()?.db();
    let query = Query::select()
        .expr(Expr::col(Asterisk).count())
        .from(Alias::new("process_definitions"))
        .and_where(Expr::col(Alias::new("id")).eq(id))
        .to_owned();
    let found =
        db.query_one(&query).await.or_internal()?.and_then(|row| row.try_get_by_index::<i64>(0).ok()).unwrap_or(0);
    if found == 0 {
        return Err(CommandError::validation(format!("processDefinitionId: no process definition has id {id}")));
    }
    Ok(())
}

/// Reports every unknown field; `special` may give a field a message of its own.
fn unknown_fields(unknown: &BTreeMap<String, Value>, special: impl Fn(&str) -> Option<String>) -> Problems {
    let mut problems = Problems::default();
    for name in unknown.keys() {
        problems.push(special(name).unwrap_or_else(|| format!("{name}: unknown field `{name}`")));
    }
    problems
}

async fn find_by(
    db: &impl ConnectionTrait,
    column: entity::Column,
    value: &str,
) -> Result<Option<entity::Model>, CommandError> {
    entity::Entity::find().filter(column.eq(value)).one(db).await.or_internal()
}

async fn set_enabled(
    ctx: &Context,
    id: i32,
    enabled: bool,
    failure: &str,
    already: &str,
) -> Result<entity::Model, CommandError> {
    let txn = ctx.service::<Store>()?.begin_write().await.or_internal()?;
    let existing = entity::Entity::find_by_id(id)
        .one(&*txn)
        .await
        .or_internal()?
        .ok_or_else(|| CommandError::not_found(failure, "Configuration not found"))?;
    if existing.is_enabled == enabled {
        return Err(CommandError::conflict(failure, already));
    }
    history::ensure_recorded(&*txn, &existing).await?;
    let version = existing.version;
    let mut row = existing.into_active_model();
    row.is_enabled = Set(enabled);
    row.version = Set(version + 1);
    row.updated_at = Set(hookbus_core::now());
    let saved = row.update(&*txn).await.or_internal()?;
    let change = if enabled { Change::Activated } else { Change::Deactivated };
    history::record(&*txn, &saved, change, ctx).await?;
    commit(ctx, txn, CacheChange::Upsert(entry(ctx, &saved)?)).await?;
    Ok(saved)
}

/// Writes a validated spec into a row, with the authority it will run with.
fn apply(row: &mut entity::ActiveModel, spec: ConfigSpec, run_as: Delegation, now: Timestamp) {
    let ConfigSpec {
        description,
        is_enabled,
        path,
        action,
        execution,
        allowable_ips,
        idempotency_key,
        respond_async,
        idempotency_returns_result,
    } = spec;
    row.description = Set(description);
    row.is_enabled = Set(is_enabled);
    row.path = Set(path.as_str().to_owned());
    row.action = Set(action.as_str().to_owned());
    row.execution_type = Set(execution.execution_type().code());
    let (command_name, command_chain, execution_code, process_definition_id) = match execution {
        ExecutionSpec::NativeCommand(name) => (Some(name), None, None, None),
        ExecutionSpec::CommandChain(steps) => (None, Some(serde_json::json!(steps)), None, None),
        ExecutionSpec::Code(code) => (None, None, Some(code), None),
        ExecutionSpec::StartProcess(id) => (None, None, None, Some(id)),
    };
    row.command_name = Set(command_name);
    row.command_chain = Set(command_chain);
    row.execution_code = Set(execution_code);
    row.process_definition_id = Set(process_definition_id);
    row.allowable_ips = Set((!allowable_ips.is_empty()).then(|| allowable_ips.to_string()));
    row.idempotency_key = Set(idempotency_key.map(|key| key.to_string()));
    row.respond_async = Set(respond_async);
    row.idempotency_returns_result = Set(idempotency_returns_result);
    row.run_as = Set(Some(run_as.to_stored()));
    row.updated_at = Set(now);
}
