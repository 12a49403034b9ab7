//! `CreateApiTokenCommand`, `RevokeApiTokenCommand`, `GetApiTokenListQuery`.

use hookbus_core::{
    Answered, CommandError, Context, Handler, Page, PageRequest, Permission, Timestamp, register_command,
};
use hookbus_store::{DbResultExt, Store, fetch_page};
use schemars::JsonSchema;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, sea_query::Expr};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{IssuedToken, NewToken, TokenAuthority, TokenView, authority::TOKENS_PERMISSION, entity, issue_token};

/// Issues a token. The answer is the only time the token value is shown.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateApiTokenCommand {
    pub name: String,
    pub permissions: Vec<Permission>,
    #[serde(default)]
    pub partner_id: Option<Uuid>,
    #[serde(default)]
    pub customer_id: Option<String>,
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
}

impl Handler for CreateApiTokenCommand {
    const PERMISSION: Permission = TOKENS_PERMISSION;
    type Answer = IssuedToken;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        let Self { name, permissions, partner_id, customer_id, expires_at } = self;
        let new = NewToken::parse(name.clone(), permissions, *partner_id, customer_id.clone(), *expires_at)?;
        let issued = issue_token(ctx.service::<Store>()?.db(), new).await?;
        Answered::ok(issued, "API token created successfully")
    }
}
register_command!("CreateApiTokenCommand" => CreateApiTokenCommand);

/// Revokes a token: it stops working at once on this instance and within seconds on every other.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RevokeApiTokenCommand {
    pub id: Uuid,
}

/// What revoking a token answers.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Revoked {
    id: Uuid,
    name: String,
    revoked_at: Timestamp,
}

impl Handler for RevokeApiTokenCommand {
    const PERMISSION: Permission = TOKENS_PERMISSION;
    type Answer = Revoked;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        let db = ctx.service::<Store>()?.db();
        let token = entity::Entity::find_by_id(self.id)
            .one(db)
            .await
            .or_internal()?
            .ok_or_else(|| CommandError::not_found("Revocation failed", "Token not found"))?;
        // One conditional update: of two concurrent revocations, exactly one changes the row.
        let revoked_at = hookbus_core::now();
        let changed = entity::Entity::update_many()
            .col_expr(entity::Column::RevokedAt, Expr::value(Some(revoked_at)))
            .filter(entity::Column::Id.eq(token.id))
            .filter(entity::Column::RevokedAt.is_null())
            .exec(db)
            .await
            .or_internal()?;
        if changed.rows_affected == 0 {
            return Err(CommandError::conflict("Revocation failed", "Token is already revoked"));
        }
        ctx.service::<TokenAuthority>()?.forget(&token.token_hash);
        Answered::ok(Revoked { id: token.id, name: token.name, revoked_at }, "API token revoked successfully")
    }
}
register_command!("RevokeApiTokenCommand" => RevokeApiTokenCommand);

/// Lists tokens, newest first, without their values.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetApiTokenListQuery {
    #[serde(default)]
    pub page_number: Option<u64>,
    #[serde(default)]
    pub page_size: Option<u64>,
}

impl Handler for GetApiTokenListQuery {
    const PERMISSION: Permission = TOKENS_PERMISSION;
    type Answer = Page<TokenView>;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        let page = PageRequest::parse(self.page_number, self.page_size)?;
        let query = entity::Entity::find().order_by_desc(entity::Column::CreatedAt).order_by_desc(entity::Column::Id);
        let page = fetch_page(query, page, ctx.service::<Store>()?.db(), TokenView::from).await?;
        Answered::ok(page, "API tokens retrieved successfully")
    }
}
register_command!("GetApiTokenListQuery" => GetApiTokenListQuery);
