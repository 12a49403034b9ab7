//! Script secrets: named values that scripts read with `secret("name")` instead of carrying them
//! in their source, where every `webhooks:read` token could read them. Values are sealed at rest
//! like signing secrets and never answered: the commands show names, who set them and when.
//!
//! Whoever saves a script that reads secrets needs `secrets:read`, and every name it reads must
//! exist; at run time the script's authority (its saver's, within `router.internal_permissions`)
//! must still allow `secrets:read`. What a run answers, logs and fails with never carries a value
//! it read: the script engine writes `***` instead.

use hookbus_core::{Answered, CommandError, Context, Handler, Permission, Timestamp, UnknownFields, register_command};
use hookbus_seal::Sealer;
use hookbus_store::{DbResultExt, Store};
use schemars::JsonSchema;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, Set};
use serde::{Deserialize, Serialize};

use crate::{entity as config, input::ExecutionSpec};

pub(crate) mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "script_secrets")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        /// Sealed.
        pub value: String,
        pub created_by: String,
        pub created_at: DateTimeUtc,
        pub updated_by: String,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Shortest value: a shorter one would be redacted out of ordinary text.
const MIN_VALUE_CHARS: usize = 8;
const MAX_VALUE_CHARS: usize = 4096;

/// A secret as the commands show it: never its value.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScriptSecret {
    pub name: String,
    pub created_by: String,
    pub created_at: Timestamp,
    /// Who set the current value, and when.
    pub updated_by: String,
    pub updated_at: Timestamp,
}

impl From<entity::Model> for ScriptSecret {
    fn from(row: entity::Model) -> Self {
        Self {
            name: row.name,
            created_by: row.created_by,
            created_at: row.created_at,
            updated_by: row.updated_by,
            updated_at: row.updated_at,
        }
    }
}

/// Sets a secret's value, creating it if it is new.
#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetScriptSecretCommand {
    /// `[A-Za-z0-9._-]{1,100}`.
    pub name: String,
    /// 8 to 4,096 characters; never shown again.
    pub value: String,
    /// Fields this command does not have; refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown: UnknownFields,
}

// The value stays out of debug output and so out of any log line.
impl std::fmt::Debug for SetScriptSecretCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetScriptSecretCommand").field("name", &self.name).field("value", &"***").finish()
    }
}

impl Handler for SetScriptSecretCommand {
    const PERMISSION: Permission = Permission::SecretsWrite;
    type Answer = ScriptSecret;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        self.unknown.refuse()?;
        let mut problems = Vec::new();
        if let Err(problem) = check_name(&self.name) {
            problems.push(problem);
        }
        let chars = self.value.chars().count();
        if !(MIN_VALUE_CHARS..=MAX_VALUE_CHARS).contains(&chars) {
            problems.push(format!("value: must be {MIN_VALUE_CHARS} to {MAX_VALUE_CHARS} characters"));
        }
        if !problems.is_empty() {
            return Err(CommandError::Validation(problems));
        }
        let sealed = ctx.service::<Sealer>()?.seal(self.value.as_bytes());
        let by = ctx.principal.subject.to_string();
        let now = hookbus_core::now();
        let store = ctx.service::<Store>()?;
        let txn = store.begin_write().await.or_internal()?;
        let existing = entity::Entity::find_by_id(self.name.clone()).one(&*txn).await.or_internal()?;
        let saved = match existing {
            Some(row) => {
                let mut row = row.into_active_model();
                row.value = Set(sealed);
                row.updated_by = Set(by);
                row.updated_at = Set(now);
                row.update(&*txn).await.or_internal()?
            }
            None => entity::ActiveModel {
                name: Set(self.name.clone()),
                value: Set(sealed),
                created_by: Set(by.clone()),
                created_at: Set(now),
                updated_by: Set(by),
                updated_at: Set(now),
            }
            .insert(&*txn)
            .await
            .conflict_on_unique("Save failed", "The secret was created meanwhile; send it again")?,
        };
        txn.commit().await.or_internal()?;
        Answered::ok(ScriptSecret::from(saved), "Script secret saved")
    }
}
register_command!("SetScriptSecretCommand" => SetScriptSecretCommand);

/// Deletes a secret no configuration's script reads.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteScriptSecretCommand {
    pub name: String,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeletedSecret {
    pub name: String,
    pub deleted_at: Timestamp,
}

impl Handler for DeleteScriptSecretCommand {
    const PERMISSION: Permission = Permission::SecretsWrite;
    type Answer = DeletedSecret;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        let store = ctx.service::<Store>()?;
        let txn = store.begin_write().await.or_internal()?;
        entity::Entity::find_by_id(self.name.clone())
            .one(&*txn)
            .await
            .or_internal()?
            .ok_or_else(|| CommandError::not_found("Deletion failed", "Secret not found"))?;
        let scripts = config::Entity::find()
            .filter(config::Column::ExecutionCode.is_not_null())
            .order_by_asc(config::Column::Key)
            .all(&*txn)
            .await
            .or_internal()?;
        let readers: Vec<String> = scripts
            .into_iter()
            .filter(|row| {
                let source = row.execution_code.as_deref().unwrap_or_default();
                hookbus_script::secrets_named(source).is_ok_and(|names| names.contains(&self.name))
            })
            .map(|row| format!("configuration '{}' reads it", row.key))
            .collect();
        if !readers.is_empty() {
            return Err(CommandError::Conflict { message: "Secret in use".into(), errors: readers });
        }
        entity::Entity::delete_by_id(self.name.clone()).exec(&*txn).await.or_internal()?;
        txn.commit().await.or_internal()?;
        Answered::ok(
            DeletedSecret { name: self.name.clone(), deleted_at: hookbus_core::now() },
            "Script secret deleted",
        )
    }
}
register_command!("DeleteScriptSecretCommand" => DeleteScriptSecretCommand);

/// Every secret's name, who set it and when; never a value.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetScriptSecretListQuery {}

impl Handler for GetScriptSecretListQuery {
    const PERMISSION: Permission = Permission::SecretsRead;
    type Answer = Vec<ScriptSecret>;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        let rows = entity::Entity::find()
            .order_by_asc(entity::Column::Name)
            .all(ctx.service::<Store>()?.db())
            .await
            .or_internal()?;
        Answered::ok(rows.into_iter().map(ScriptSecret::from).collect(), "Script secrets retrieved successfully")
    }
}
register_command!("GetScriptSecretListQuery" => GetScriptSecretListQuery);

/// The value of secret `name`, or `None` when there is none.
pub async fn reveal(ctx: &Context, name: &str) -> Result<Option<String>, CommandError> {
    let row = entity::Entity::find_by_id(name.to_owned()).one(ctx.service::<Store>()?.db()).await.or_internal()?;
    row.map(|row| ctx.service::<Sealer>()?.open_text(&row.value).map_err(CommandError::internal)).transpose()
}

/// A script about to be saved may read only secrets that exist, and only for a saver who may.
pub(crate) async fn check_script(ctx: &Context, execution: &ExecutionSpec) -> Result<(), CommandError> {
    let ExecutionSpec::Code(source) = execution else { return Ok(()) };
    let names =
        hookbus_script::secrets_named(source).map_err(|e| CommandError::validation(format!("executionCode: {e}")))?;
    if names.is_empty() {
        return Ok(());
    }
    if !ctx.principal.permissions.allows(Permission::SecretsRead) {
        return Err(CommandError::ForbiddenCommands(vec![
            "executionCode: secret() requires permission secrets:read, which this token does not have".into(),
        ]));
    }
    let known = entity::Entity::find()
        .filter(entity::Column::Name.is_in(names.clone()))
        .all(ctx.service::<Store>()?.db())
        .await
        .or_internal()?;
    let unknown: Vec<String> = names
        .iter()
        .filter(|name| !known.iter().any(|row| &row.name == *name))
        .map(|name| format!("executionCode: unknown secret '{name}' (see GetScriptSecretListQuery)"))
        .collect();
    if unknown.is_empty() { Ok(()) } else { Err(CommandError::Validation(unknown)) }
}

fn check_name(name: &str) -> Result<(), String> {
    let valid = (1..=100).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid { Ok(()) } else { Err("name: must be 1 to 100 letters, digits, '.', '_' or '-'".to_owned()) }
}
