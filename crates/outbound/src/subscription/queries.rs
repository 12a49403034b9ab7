//! The subscription queries.

use std::collections::BTreeSet;

use hookbus_core::{
    Answered, CommandError, Context, Handler, Page, PageRequest, Permission, UnknownFields, register_command,
};
use hookbus_store::{DbResultExt, Store, fetch_page};
use schemars::JsonSchema;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait};
use serde::Deserialize;
use uuid::Uuid;

use super::SubscriptionView;
use crate::{
    catalog,
    entity::{subscription, subscription_event},
    owner::{NOT_FOUND, OwnerFields, find_subscription, owner_condition},
};

/// The event names an owner is subscribed to.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GetRegisteredWebhooksQuery {
    /// `partnerId` or `customerId`.
    #[serde(flatten)]
    pub owner: OwnerFields,
    /// Fields this command does not have; refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown: UnknownFields,
}

impl Handler for GetRegisteredWebhooksQuery {
    const PERMISSION: Permission = Permission::SubscriptionsRead;
    type Answer = BTreeSet<String>;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        self.unknown.refuse()?;
        let owner = self.owner.required(ctx)?;
        let db = ctx.service::<Store>()?.db();
        let rows = subscription::Entity::find()
            .filter(owner_condition(&owner))
            .filter(subscription::Column::IsActive.eq(true))
            .all(db)
            .await
            .or_internal()?;
        let mut names = BTreeSet::new();
        for row in &rows {
            if row.subscribe_all {
                names.extend(catalog::all_names(db).await?);
            } else {
                names.extend(crate::subscription::events_of(row));
            }
        }
        Answered::ok(names, "Registered webhooks retrieved successfully")
    }
}
register_command!("GetRegisteredWebhooksQuery" => GetRegisteredWebhooksQuery);

/// One subscription: masked secret and last delivery status.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetWebhookSubscriptionQuery {
    pub id: Uuid,
}

impl Handler for GetWebhookSubscriptionQuery {
    const PERMISSION: Permission = Permission::SubscriptionsRead;
    type Answer = SubscriptionView;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        let row = find_subscription(ctx, self.id, NOT_FOUND).await?;
        let mut view = [SubscriptionView::from(row)];
        super::attach_health(ctx.service::<Store>()?.db(), &mut view).await?;
        let [view] = view;
        Answered::ok(view, "Webhook subscription retrieved successfully")
    }
}
register_command!("GetWebhookSubscriptionQuery" => GetWebhookSubscriptionQuery);

/// Subscriptions, newest first, with filters.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GetWebhookSubscriptionListQuery {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub is_active: Option<bool>,
    #[serde(default)]
    pub suspended: Option<bool>,
    #[serde(default)]
    pub event_name: Option<String>,
    /// `partnerId` or `customerId`.
    #[serde(flatten)]
    pub owner: OwnerFields,
    #[serde(default)]
    pub page_number: Option<u64>,
    #[serde(default)]
    pub page_size: Option<u64>,
    /// Fields this command does not have; refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown: UnknownFields,
}

impl Handler for GetWebhookSubscriptionListQuery {
    const PERMISSION: Permission = Permission::SubscriptionsRead;
    type Answer = Page<SubscriptionView>;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        self.unknown.refuse()?;
        let page = PageRequest::parse(self.page_number, self.page_size)?;
        let mut query = subscription::Entity::find()
            .order_by_desc(subscription::Column::CreatedAt)
            .order_by_desc(subscription::Column::Id);
        if let Some(owner) = self.owner.for_caller(ctx)? {
            query = query.filter(owner_condition(&owner));
        }
        if let Some(name) = &self.name {
            query = query.filter(subscription::Column::Name.contains(name.as_str()));
        }
        if let Some(active) = self.is_active {
            query = query.filter(subscription::Column::IsActive.eq(active));
        }
        if let Some(suspended) = self.suspended {
            query = query.filter(subscription::Column::Suspended.eq(suspended));
        }
        if let Some(event_name) = &self.event_name {
            let by_name = subscription_event::Entity::find()
                .select_only()
                .column(subscription_event::Column::SubscriptionId)
                .filter(subscription_event::Column::EventName.eq(event_name.as_str()))
                .into_query();
            query = query.filter(
                Condition::any()
                    .add(subscription::Column::SubscribeAll.eq(true))
                    .add(subscription::Column::Id.in_subquery(by_name)),
            );
        }
        let db = ctx.service::<Store>()?.db();
        let mut page = fetch_page(query, page, db, SubscriptionView::from).await?;
        super::attach_health(db, &mut page.items).await?;
        Answered::ok(page, "Webhook subscriptions retrieved successfully")
    }
}
register_command!("GetWebhookSubscriptionListQuery" => GetWebhookSubscriptionListQuery);
