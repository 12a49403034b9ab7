//! The commands that change every subscription of one owner at once.

use hookbus_core::{Answered, CommandError, Context, Handler, Owner, Permission, UnknownFields, register_command};
use hookbus_store::{DbResultExt, Store};
use schemars::JsonSchema;
use sea_orm::{EntityTrait, IntoActiveModel, QueryFilter, QueryOrder};
use serde::Deserialize;
use uuid::Uuid;

use super::{Draft, SubscriptionView};
use crate::{
    Outbound, catalog,
    entity::subscription,
    owner::{OwnerFields, find_subscription, owner_condition},
};

/// The owner's subscriptions, for the owner-wide commands. An owner without any gets an empty
/// success: there is nothing to change (register a subscription first).
async fn owned(ctx: &Context, owner: &Owner) -> Result<Vec<subscription::Model>, CommandError> {
    subscription::Entity::find()
        .filter(owner_condition(owner))
        .order_by_asc(subscription::Column::CreatedAt)
        .all(ctx.service::<Store>()?.db())
        .await
        .or_internal()
}

/// Applies `change` to each of the owner's subscriptions, checking each like an update.
async fn update_each(
    ctx: &Context,
    rows: Vec<subscription::Model>,
    change: impl Fn(&mut Draft),
) -> Result<Vec<SubscriptionView>, CommandError> {
    let outbound = ctx.service::<Outbound>()?;
    let mut views = Vec::new();
    for row in rows {
        let mut draft = Draft::from_row(outbound, &row)?;
        change(&mut draft);
        let id = row.id;
        views.push(SubscriptionView::from(super::save(ctx, draft, row.into_active_model(), id).await?));
    }
    Ok(views)
}

/// Changes the URI of every subscription of an owner (none: nothing changes).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateWebhookUriCommand {
    /// `partnerId` or `customerId`.
    #[serde(flatten)]
    pub owner: OwnerFields,
    pub webhook_uri: String,
    /// Fields this command does not have; refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown: UnknownFields,
}

impl Handler for UpdateWebhookUriCommand {
    const PERMISSION: Permission = Permission::SubscriptionsWrite;
    type Answer = Vec<SubscriptionView>;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        self.unknown.refuse()?;
        let owner = self.owner.required(ctx)?;
        let rows = owned(ctx, &owner).await?;
        let views = update_each(ctx, rows, |draft| draft.webhook_uri = self.webhook_uri.clone()).await?;
        Answered::ok(views, "Webhook URI updated successfully")
    }
}
register_command!("UpdateWebhookUriCommand" => UpdateWebhookUriCommand);

/// Subscribes every subscription of an owner to every event (none: nothing changes).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscribeAllEventsCommand {
    /// `partnerId` or `customerId`.
    #[serde(flatten)]
    pub owner: OwnerFields,
    /// Fields this command does not have; refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown: UnknownFields,
}

impl Handler for SubscribeAllEventsCommand {
    const PERMISSION: Permission = Permission::SubscriptionsWrite;
    type Answer = Vec<SubscriptionView>;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        self.unknown.refuse()?;
        let owner = self.owner.required(ctx)?;
        let rows = owned(ctx, &owner).await?;
        let views = update_each(ctx, rows, |draft| draft.subscribe_all = true).await?;
        Answered::ok(views, "Subscribed to all events")
    }
}
register_command!("SubscribeAllEventsCommand" => SubscribeAllEventsCommand);

/// Removes events from a subscription (by id) or from an owner's; with no events listed, the
/// subscriptions are deactivated.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnregisterWebhookEventsCommand {
    #[serde(default)]
    pub id: Option<Uuid>,
    /// `partnerId` or `customerId`.
    #[serde(flatten)]
    pub owner: OwnerFields,
    #[serde(default, alias = "webhooks")]
    pub events: Option<Vec<String>>,
    /// Fields this command does not have; refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown: UnknownFields,
}

impl Handler for UnregisterWebhookEventsCommand {
    const PERMISSION: Permission = Permission::SubscriptionsWrite;
    type Answer = Vec<SubscriptionView>;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        self.unknown.refuse()?;
        let rows = match self.id {
            Some(id) => vec![find_subscription(ctx, id, "Unregister failed").await?],
            None => {
                let owner = self.owner.required(ctx)?;
                owned(ctx, &owner).await?
            }
        };
        let listed = self.events.clone().filter(|events| !events.is_empty());
        let every_name = match &listed {
            Some(_) => catalog::all_names(ctx.service::<Store>()?.db()).await?,
            None => Vec::new(),
        };
        let views = update_each(ctx, rows, |draft| match &listed {
            Some(listed) => {
                // "Everything" minus the listed names becomes an explicit list.
                if draft.subscribe_all {
                    draft.subscribe_all = false;
                    draft.events = every_name.clone();
                }
                draft.events.retain(|name| !listed.contains(name));
                if draft.events.is_empty() {
                    draft.is_active = false;
                }
            }
            None => draft.is_active = false,
        })
        .await?;
        Answered::ok(views, "Webhook events unregistered successfully")
    }
}
register_command!("UnregisterWebhookEventsCommand" => UnregisterWebhookEventsCommand);
