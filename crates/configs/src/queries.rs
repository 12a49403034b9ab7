//! The queries over configurations.

use hookbus_core::{Answered, CommandError, Context, Handler, Page, PageRequest, Permission, register_command};
use hookbus_store::{DbResultExt, Store, fetch_page};
use schemars::JsonSchema;
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder,
    sea_query::{Expr, ExprTrait, Func, LikeExpr},
};
use serde::{Deserialize, Serialize};

use crate::{ExecutionType, WebHookConfig, cache::ConfigCache, entity};

/// Lists configurations, by id, with optional filters.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetWebHookConfigListQuery {
    #[serde(default)]
    pub page_number: Option<u64>,
    #[serde(default)]
    pub page_size: Option<u64>,
    /// Case-insensitive substring of the key, description or path.
    #[serde(default)]
    pub search_text: Option<String>,
    #[serde(default)]
    pub is_enabled: Option<bool>,
    #[serde(default)]
    pub execution_type: Option<i64>,
}

impl Handler for GetWebHookConfigListQuery {
    const PERMISSION: Permission = Permission::WebhooksRead;
    type Answer = Page<WebHookConfig>;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        let page = PageRequest::parse(self.page_number, self.page_size)?;
        let mut filter = Condition::all();
        if let Some(text) = self.search_text.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            let pattern = format!("%{}%", escape_like(&text.to_lowercase()));
            let mut any = Condition::any();
            for column in [entity::Column::Key, entity::Column::Description, entity::Column::Path] {
                any = any.add(Expr::expr(Func::lower(Expr::col(column))).like(LikeExpr::new(&pattern).escape('\\')));
            }
            filter = filter.add(any);
        }
        if let Some(enabled) = self.is_enabled {
            filter = filter.add(entity::Column::IsEnabled.eq(enabled));
        }
        if let Some(code) = self.execution_type {
            let kind = ExecutionType::from_code(code).map_err(CommandError::validation)?;
            filter = filter.add(entity::Column::ExecutionType.eq(kind.code()));
        }
        let query = entity::Entity::find().filter(filter).order_by_asc(entity::Column::Id);
        let page = fetch_page(query, page, ctx.service::<Store>()?.db(), WebHookConfig::from).await?;
        Answered::ok(page, "Webhook configurations retrieved successfully")
    }
}
register_command!("GetWebHookConfigListQuery" => GetWebHookConfigListQuery);

/// One configuration by id.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetWebHookConfigByIdQuery {
    pub id: i32,
}

impl Handler for GetWebHookConfigByIdQuery {
    const PERMISSION: Permission = Permission::WebhooksRead;
    type Answer = WebHookConfig;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        const FOUND: &str = "Webhook configuration retrieved successfully";
        if let Some(entry) = ctx.service::<ConfigCache>()?.by_id(self.id) {
            let view = entry.view().map_err(CommandError::internal)?;
            return Ok(Answered::shared(view, FOUND));
        }
        let row =
            entity::Entity::find_by_id(self.id).one(ctx.service::<Store>()?.db()).await.or_internal()?.ok_or_else(
                || {
                    CommandError::not_found(
                        "Configuration not found",
                        "No webhook configuration found with the specified ID",
                    )
                },
            )?;
        Answered::ok(WebHookConfig::from(row), FOUND)
    }
}
register_command!("GetWebHookConfigByIdQuery" => GetWebHookConfigByIdQuery);

/// One configuration by key; with no key (or an empty one), every configuration.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LookupWebHookByKeyCommand {
    #[serde(default)]
    pub key: Option<String>,
}

impl Handler for LookupWebHookByKeyCommand {
    const PERMISSION: Permission = Permission::WebhooksRead;
    type Answer = Lookup;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        let db = ctx.service::<Store>()?.db();
        match self.key.as_deref().map(str::trim).filter(|k| !k.is_empty()) {
            None => {
                let rows = entity::Entity::find().order_by_asc(entity::Column::Id).all(db).await.or_internal()?;
                let all: Vec<WebHookConfig> = rows.into_iter().map(WebHookConfig::from).collect();
                Answered::ok(Lookup::All(all), "Webhook configuration found")
            }
            Some(key) => {
                let row = entity::Entity::find()
                    .filter(entity::Column::Key.eq(key))
                    .one(db)
                    .await
                    .or_internal()?
                    .ok_or_else(|| {
                        CommandError::not_found(
                            "Lookup failed",
                            "No webhook configuration found with the specified key",
                        )
                    })?;
                Answered::ok(Lookup::One(Box::new(WebHookConfig::from(row))), "Webhook configuration found")
            }
        }
    }
}

/// What a lookup answers: the configuration of the key, or every configuration when no key was
/// given.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Lookup {
    One(Box<WebHookConfig>),
    All(Vec<WebHookConfig>),
}
register_command!("LookupWebHookByKeyCommand" => LookupWebHookByKeyCommand);

fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}
