//! The process commands.

use std::sync::Arc;

use hookbus_core::{
    Answered, CommandError, Context, Delegation, DelegationView, Handler, Page, PageRequest, Permission, Timestamp,
    authorize_commands, register_command,
};
use hookbus_script::ScriptEngine;
use hookbus_store::{DbResultExt, Store, fetch_page};
use schemars::JsonSchema;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, Set,
    sea_query::Expr,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    ProcessEngine, ProcessStatus,
    definition::{self, StepInput},
    entity::{definition as definitions, instance as instances},
};

/// A process definition as the commands answer it.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DefinitionView {
    id: i32,
    name: String,
    description: Option<String>,
    /// The steps, as saved.
    steps: Value,
    /// The authority its steps run with: its saver's permissions (within
    /// `router.internal_permissions`) and owner. Absent for a definition saved before authority
    /// was recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    run_as: Option<DelegationView>,
    created_at: Timestamp,
}

impl From<definitions::Model> for DefinitionView {
    fn from(model: definitions::Model) -> Self {
        let definitions::Model { id, name, description, steps, run_as, created_at } = model;
        let run_as = run_as.and_then(|text| Delegation::from_stored(&text).ok()).map(|run_as| run_as.view());
        Self { id, name, description, steps, run_as, created_at }
    }
}

/// A process instance: where it stands, its variables and its step log.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceView {
    instance_id: Uuid,
    definition_id: i32,
    status: ProcessStatus,
    execution_mode: String,
    variables: Value,
    current_step: i32,
    step_log: Value,
    error: Option<String>,
    /// The authority its steps run with.
    #[serde(skip_serializing_if = "Option::is_none")]
    run_as: Option<DelegationView>,
    created_at: Timestamp,
    updated_at: Timestamp,
    completed_at: Option<Timestamp>,
}

/// What deleting a definition answers.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DefinitionDeleted {
    id: i32,
    name: String,
    deleted_at: Timestamp,
}

/// What starting an instance answers: an unsupervised start answers at once; a supervised one
/// answers the instance as it stands when it finished or the wait ran out.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Started {
    #[serde(rename_all = "camelCase")]
    Running {
        instance_id: Uuid,
        status: ProcessStatus,
    },
    Finished(Box<InstanceView>),
}

/// What cancelling an instance answers.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Cancelled {
    instance_id: Uuid,
    status: ProcessStatus,
    cancelled_at: Timestamp,
}

impl From<instances::Model> for InstanceView {
    fn from(model: instances::Model) -> Self {
        let instances::Model {
            id,
            definition_id,
            status,
            execution_mode,
            variables,
            current_step,
            step_log,
            error,
            lease_until: _,
            created_at,
            updated_at,
            completed_at,
            run_as,
        } = model;
        let run_as = run_as.and_then(|text| Delegation::from_stored(&text).ok()).map(|run_as| run_as.view());
        Self {
            instance_id: id,
            definition_id,
            status,
            execution_mode,
            variables,
            current_step,
            step_log,
            error,
            run_as,
            created_at,
            updated_at,
            completed_at,
        }
    }
}

/// Defines a process: steps that run a bus command or a script, in order.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateProcessDefinitionCommand {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub steps: Vec<StepInput>,
}

impl Handler for CreateProcessDefinitionCommand {
    const PERMISSION: Permission = Permission::ProcessesWrite;
    type Answer = DefinitionView;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        let mut problems = definition::validate(&self.steps, ctx.service::<ScriptEngine>()?);
        if self.name.trim().is_empty() {
            problems.insert(0, "name: Name is required".into());
        }
        if !problems.is_empty() {
            return Err(CommandError::Validation(problems));
        }
        // Its steps run later with the saver's authority: the saver must be allowed to run each.
        let named = definition::commands(&self.steps);
        authorize_commands(&ctx.principal, named.iter().map(|(at, name)| (at.clone(), name.as_str())))?;
        let saved = definitions::ActiveModel {
            name: Set(self.name.trim().to_owned()),
            description: Set(self.description.clone()),
            steps: Set(json!(self.steps)),
            run_as: Set(Some(Delegation::of(&ctx.principal).to_stored())),
            created_at: Set(hookbus_core::now()),
            ..Default::default()
        }
        .insert(ctx.service::<Store>()?.db())
        .await
        .or_internal()?;
        Answered::ok(DefinitionView::from(saved), "Process definition created successfully")
    }
}
register_command!("CreateProcessDefinitionCommand" => CreateProcessDefinitionCommand);

/// Lists process definitions by id.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetProcessDefinitionListQuery {
    #[serde(default)]
    pub page_number: Option<u64>,
    #[serde(default)]
    pub page_size: Option<u64>,
}

impl Handler for GetProcessDefinitionListQuery {
    const PERMISSION: Permission = Permission::ProcessesRead;
    type Answer = Page<DefinitionView>;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        let page = PageRequest::parse(self.page_number, self.page_size)?;
        let query = definitions::Entity::find().order_by_asc(definitions::Column::Id);
        let page = fetch_page(query, page, ctx.service::<Store>()?.db(), DefinitionView::from).await?;
        Answered::ok(page, "Process definitions retrieved successfully")
    }
}
register_command!("GetProcessDefinitionListQuery" => GetProcessDefinitionListQuery);

/// One process definition.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetProcessDefinitionByIdQuery {
    pub id: i32,
}

impl Handler for GetProcessDefinitionByIdQuery {
    const PERMISSION: Permission = Permission::ProcessesRead;
    type Answer = DefinitionView;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        let found = find_definition(ctx, self.id, "Process definition not found").await?;
        Answered::ok(DefinitionView::from(found), "Process definition retrieved successfully")
    }
}
register_command!("GetProcessDefinitionByIdQuery" => GetProcessDefinitionByIdQuery);

/// Deletes a definition; refused while any of its instances runs.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteProcessDefinitionCommand {
    pub id: i32,
}

impl Handler for DeleteProcessDefinitionCommand {
    const PERMISSION: Permission = Permission::ProcessesWrite;
    type Answer = DefinitionDeleted;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        let txn = ctx.service::<Store>()?.begin_write().await.or_internal()?;
        let found = definitions::Entity::find_by_id(self.id)
            .one(&*txn)
            .await
            .or_internal()?
            .ok_or_else(|| CommandError::not_found("Deletion failed", "Process definition not found"))?;
        let running = instances::Entity::find()
            .filter(instances::Column::DefinitionId.eq(found.id))
            .filter(instances::Column::Status.eq(ProcessStatus::Running))
            .count(&*txn)
            .await
            .or_internal()?;
        if running > 0 {
            return Err(CommandError::conflict("Deletion failed", format!("{running} instance(s) still running")));
        }
        definitions::Entity::delete_by_id(found.id).exec(&*txn).await.or_internal()?;
        txn.commit().await.or_internal()?;
        let deleted = DefinitionDeleted { id: found.id, name: found.name, deleted_at: hookbus_core::now() };
        Answered::ok(deleted, "Process definition deleted successfully")
    }
}
register_command!("DeleteProcessDefinitionCommand" => DeleteProcessDefinitionCommand);

/// How a start answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum ExecutionMode {
    /// Answer at once with `{instanceId, status: "RUNNING"}`.
    #[default]
    Unsupervised,
    /// Wait for the end (up to a limit) and answer with the final state.
    Supervised,
}

/// Starts an instance of a definition with `runtimeContext` as its variables.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartProcessInstanceCommand {
    /// The process definition.
    pub id: i32,
    /// A JSON object, or a string holding one.
    #[serde(default)]
    pub runtime_context: Option<Value>,
    #[serde(default)]
    pub execution_mode: ExecutionMode,
}

impl Handler for StartProcessInstanceCommand {
    const PERMISSION: Permission = Permission::ProcessesWrite;
    type Answer = Started;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        let variables = match &self.runtime_context {
            None | Some(Value::Null) => json!({}),
            Some(Value::Object(map)) => Value::Object(map.clone()),
            Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(map)) => Value::Object(map),
                _ => return Err(CommandError::validation("runtimeContext: the string must hold a JSON object")),
            },
            Some(_) => return Err(CommandError::validation("runtimeContext: must be a JSON object")),
        };
        if self.execution_mode == ExecutionMode::Supervised {
            // It would wait for the process's script steps while its own script waits for it.
            ctx.refuse_in_script("StartProcessInstanceCommand with executionMode Supervised")?;
            // In a routed request or a process step the instance starts when their writes commit,
            // after this command has answered: there is no end to wait for.
            ctx.service::<Store>()?.refuse_in_unit(
                "executionMode: a routed request or a process step starts processes Unsupervised: the instance \
                 starts once its writes commit",
            )?;
        }
        let definition = find_definition(ctx, self.id, "Start failed").await?;
        let run_as = definition_authority(&definition)?.for_caller(&ctx.principal).ok_or_else(|| {
            CommandError::not_found("Start failed", "No process definition found with the specified ID")
        })?;
        let engine = ctx.service::<ProcessEngine>()?;
        let store = ctx.service::<Store>()?;
        let now = hookbus_core::now();
        let mode = match self.execution_mode {
            ExecutionMode::Unsupervised => "Unsupervised",
            ExecutionMode::Supervised => "Supervised",
        };
        let instance = instances::ActiveModel {
            id: Set(Uuid::now_v7()),
            definition_id: Set(definition.id),
            status: Set(ProcessStatus::Running),
            execution_mode: Set(mode.to_owned()),
            variables: Set(variables),
            current_step: Set(0),
            step_log: Set(json!([])),
            error: Set(None),
            lease_until: Set(Some(
                now + chrono::Duration::from_std(engine.lease).unwrap_or(chrono::Duration::minutes(1)),
            )),
            created_at: Set(now),
            updated_at: Set(now),
            completed_at: Set(None),
            run_as: Set(Some(run_as.to_stored())),
        }
        .insert(store.db())
        .await
        .or_internal()?;
        if store.in_unit() {
            // It starts once the routed request's writes, the instance's row among them, commit.
            let (engine, services, id) = (engine.clone(), Arc::clone(ctx.services()), instance.id);
            store.after_commit(move || drop(engine.spawn_run(services, id)));
            let started = Started::Running { instance_id: instance.id, status: ProcessStatus::Running };
            return Answered::ok(started, "Process instance started");
        }
        let run = engine.spawn_run(Arc::clone(ctx.services()), instance.id);
        if self.execution_mode == ExecutionMode::Unsupervised {
            let started = Started::Running { instance_id: instance.id, status: ProcessStatus::Running };
            return Answered::ok(started, "Process instance started");
        }
        // Past the limit the instance keeps running; the answer is its state then.
        let _ = tokio::time::timeout(engine.supervised_wait, run).await;
        let state = find_instance(ctx, instance.id, "Start failed").await?;
        Answered::ok(Started::Finished(Box::new(InstanceView::from(state))), "Process instance finished")
    }
}
register_command!("StartProcessInstanceCommand" => StartProcessInstanceCommand);

/// One instance with its variables and step log.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetProcessInstanceByIdQuery {
    pub id: Uuid,
}

impl Handler for GetProcessInstanceByIdQuery {
    const PERMISSION: Permission = Permission::ProcessesRead;
    type Answer = InstanceView;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        let found = find_instance(ctx, self.id, "Process instance not found").await?;
        Answered::ok(InstanceView::from(found), "Process instance retrieved successfully")
    }
}
register_command!("GetProcessInstanceByIdQuery" => GetProcessInstanceByIdQuery);

/// Lists instances, newest first.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetProcessInstanceListQuery {
    #[serde(default)]
    pub page_number: Option<u64>,
    #[serde(default)]
    pub page_size: Option<u64>,
    #[serde(default)]
    pub definition_id: Option<i32>,
    /// RUNNING, COMPLETED, ERROR or CANCELLED.
    #[serde(default)]
    pub status: Option<String>,
}

impl Handler for GetProcessInstanceListQuery {
    const PERMISSION: Permission = Permission::ProcessesRead;
    type Answer = Page<InstanceView>;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        let page = PageRequest::parse(self.page_number, self.page_size)?;
        let mut filter = Condition::all();
        if let Some(id) = self.definition_id {
            filter = filter.add(instances::Column::DefinitionId.eq(id));
        }
        if let Some(wanted) = &self.status {
            let Some(found) = ProcessStatus::parse(wanted) else {
                let known: Vec<&str> = ProcessStatus::ALL.iter().map(|s| s.as_str()).collect();
                let wanted = wanted.to_ascii_uppercase();
                return Err(CommandError::validation(format!("status: '{wanted}' is not one of {}", known.join(", "))));
            };
            filter = filter.add(instances::Column::Status.eq(found));
        }
        let query = instances::Entity::find()
            .filter(filter)
            .order_by_desc(instances::Column::CreatedAt)
            .order_by_desc(instances::Column::Id);
        let page = fetch_page(query, page, ctx.service::<Store>()?.db(), InstanceView::from).await?;
        Answered::ok(page, "Process instances retrieved successfully")
    }
}
register_command!("GetProcessInstanceListQuery" => GetProcessInstanceListQuery);

/// Cancels a running instance: its current step finishes, no further step runs.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CancelProcessInstanceCommand {
    pub id: Uuid,
}

impl Handler for CancelProcessInstanceCommand {
    const PERMISSION: Permission = Permission::ProcessesWrite;
    type Answer = Cancelled;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        let found = find_instance(ctx, self.id, "Cancellation failed").await?;
        let now = hookbus_core::now();
        let changed = instances::Entity::update_many()
            .col_expr(instances::Column::Status, Expr::value(ProcessStatus::Cancelled))
            .col_expr(instances::Column::LeaseUntil, Expr::value(Option::<Timestamp>::None))
            .col_expr(instances::Column::UpdatedAt, Expr::value(now))
            .col_expr(instances::Column::CompletedAt, Expr::value(Some(now)))
            .filter(instances::Column::Id.eq(found.id))
            .filter(instances::Column::Status.eq(ProcessStatus::Running))
            .exec(ctx.service::<Store>()?.db())
            .await
            .or_internal()?;
        if changed.rows_affected == 0 {
            return Err(CommandError::conflict(
                "Cancellation failed",
                format!("Process instance is not running (it is {})", found.status),
            ));
        }
        let cancelled = Cancelled { instance_id: found.id, status: ProcessStatus::Cancelled, cancelled_at: now };
        Answered::ok(cancelled, "Process instance cancelled")
    }
}
register_command!("CancelProcessInstanceCommand" => CancelProcessInstanceCommand);

/// The authority a definition's steps run with. One saved before authority was recorded runs with
/// `router.internal_permissions`, bound to no owner.
pub(crate) fn definition_authority(definition: &definitions::Model) -> Result<Delegation, CommandError> {
    match &definition.run_as {
        Some(text) => {
            Delegation::from_stored(text).map_err(|problem| CommandError::internal(CorruptAuthority(problem)))
        }
        None => Ok(unrecorded_authority()),
    }
}

/// The authority of something saved before authority was recorded: nothing beyond the ceiling it
/// is always narrowed to, and no owner.
pub(crate) fn unrecorded_authority() -> Delegation {
    Delegation {
        permissions: hookbus_core::PermissionSet::all().without(Permission::Admin),
        owner: None,
        saved_by: "unrecorded".into(),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("a stored process authority is unreadable: {0}")]
pub(crate) struct CorruptAuthority(pub(crate) String);

async fn find_definition(ctx: &Context, id: i32, message: &str) -> Result<definitions::Model, CommandError> {
    definitions::Entity::find_by_id(id)
        .one(ctx.service::<Store>()?.db())
        .await
        .or_internal()?
        .ok_or_else(|| CommandError::not_found(message, "No process definition found with the specified ID"))
}

async fn find_instance(ctx: &Context, id: Uuid, message: &str) -> Result<instances::Model, CommandError> {
    instances::Entity::find_by_id(id)
        .one(ctx.service::<Store>()?.db())
        .await
        .or_internal()?
        .ok_or_else(|| CommandError::not_found(message, "No process instance found with the specified ID"))
}
