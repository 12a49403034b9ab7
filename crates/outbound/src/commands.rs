//! The subscription commands. Owner-bound tokens see and change only their owner's
//! subscriptions: any other looks like it does not exist.

use std::collections::BTreeSet;

use chrono::Duration as Span;
use hookbus_core::{
    CommandError, Context, Handler, Owner, PageRequest, Permission, Reply, Timestamp, register_command,
};
use hookbus_store::{DbResultExt, Store, fetch_page};
use schemars::JsonSchema;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait, sea_query::Expr,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::{
    Outbound, catalog,
    delivery::{EventBody, Job, Target},
    entity::{event, notification, subscription, subscription_event},
    filter::Filters,
    publish::{Audience, NewEvent, publish_to},
    secret::Secret,
    status,
    subscription::{DeliveryPolicy, Draft, Headers, SubscriptionView},
};

const NOT_FOUND: &str = "Subscription not found";

/// Rows of `owner`.
pub(crate) fn owner_condition(owner: &Owner) -> Condition {
    match owner {
        Owner::Partner(id) => Condition::all().add(subscription::Column::PartnerId.eq(*id)),
        Owner::Customer(id) => Condition::all().add(subscription::Column::CustomerId.eq(id.as_str())),
    }
}

/// The subscription `id`, if the caller may see it; else 404 with `message`.
pub(crate) async fn find_subscription(
    ctx: &Context,
    id: Uuid,
    message: &str,
) -> Result<subscription::Model, CommandError> {
    let mut query = subscription::Entity::find_by_id(id);
    if let Some(owner) = &ctx.principal.owner {
        query = query.filter(owner_condition(owner));
    }
    query
        .one(ctx.service::<Store>()?.db())
        .await
        .or_internal()?
        .ok_or_else(|| CommandError::not_found(message, NOT_FOUND))
}

/// The owner a command names, checked against the caller's binding. A bound token may omit it.
fn owner_of_command(
    ctx: &Context,
    partner_id: Option<Uuid>,
    customer_id: Option<&str>,
) -> Result<Option<Owner>, CommandError> {
    let named = match (partner_id, customer_id) {
        (Some(_), Some(_)) => {
            return Err(CommandError::validation("partnerId: give partnerId or customerId, not both"));
        }
        (Some(partner), None) => Some(Owner::Partner(partner)),
        (None, Some(customer)) => Some(Owner::Customer(customer.to_owned())),
        (None, None) => None,
    };
    match (&ctx.principal.owner, named) {
        (Some(bound), Some(named)) if *bound != named => {
            Err(CommandError::Denied("this token is bound to another owner".to_owned()))
        }
        (Some(bound), _) => Ok(Some(bound.clone())),
        (None, named) => Ok(named),
    }
}

fn required_owner(ctx: &Context, partner_id: Option<Uuid>, customer_id: Option<&str>) -> Result<Owner, CommandError> {
    owner_of_command(ctx, partner_id, customer_id)?
        .ok_or_else(|| CommandError::validation("partnerId: partnerId or customerId is required"))
}

/// Replaces the index of event names a subscription wants.
async fn index_events(db: &impl ConnectionTrait, id: Uuid, events: &[String]) -> Result<(), CommandError> {
    subscription_event::Entity::delete_many()
        .filter(subscription_event::Column::SubscriptionId.eq(id))
        .exec(db)
        .await
        .or_internal()?;
    if !events.is_empty() {
        let rows = events
            .iter()
            .map(|name| subscription_event::ActiveModel { subscription_id: Set(id), event_name: Set(name.clone()) });
        subscription_event::Entity::insert_many(rows).exec(db).await.or_internal()?;
    }
    Ok(())
}

/// Writes a checked draft over `row` (a new one, or a stored one) with its event index.
async fn save(
    ctx: &Context,
    mut draft: Draft,
    mut row: subscription::ActiveModel,
    id: Uuid,
) -> Result<subscription::Model, CommandError> {
    let outbound = ctx.service::<Outbound>()?;
    let store = ctx.service::<Store>()?;
    draft.check(outbound, store.db()).await?;
    draft.write(outbound, &mut row)?;
    row.updated_at = Set(hookbus_core::now());
    let txn = store.begin_write().await.or_internal()?;
    // A stored row's id is unchanged (update); a new row's is set (insert).
    let saved = if matches!(row.id, sea_orm::ActiveValue::Unchanged(_)) {
        row.update(&*txn).await.or_internal()?
    } else {
        row.insert(&*txn).await.or_internal()?
    };
    index_events(&*txn, id, if draft.subscribe_all { &[] } else { &draft.events }).await?;
    txn.commit().await.or_internal()?;
    Ok(saved)
}

/// What create and rotate answer: the subscription, with the secret in full this once.
#[derive(Debug, Serialize)]
struct WithSecret {
    #[serde(flatten)]
    subscription: SubscriptionView,
}

fn with_secret(row: subscription::Model, secret: &Secret) -> WithSecret {
    let mut subscription = SubscriptionView::from(row);
    subscription.secret = secret.expose().to_owned();
    WithSecret { subscription }
}

/// Creates a subscription. The answer shows the signing secret in full, once.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateWebhookSubscriptionCommand {
    #[serde(default)]
    pub partner_id: Option<Uuid>,
    #[serde(default)]
    pub customer_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(alias = "endpoint", alias = "url")]
    pub webhook_uri: String,
    #[serde(default, alias = "signingKey", alias = "signingkey")]
    pub secret: Option<String>,
    #[serde(default, alias = "enableSubscription", alias = "enabled")]
    pub is_active: Option<bool>,
    #[serde(default, alias = "webhooks", alias = "eventTypes")]
    pub events: Option<Vec<String>>,
    #[serde(default)]
    pub subscribe_all: Option<bool>,
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub filters: Option<Filters>,
    #[serde(default)]
    pub delivery_policy: Option<DeliveryPolicy>,
    #[serde(default)]
    pub max_attempts: Option<i32>,
    #[serde(default)]
    pub retry_interval_seconds: Option<i32>,
    #[serde(default)]
    pub headers: Option<Headers>,
    #[serde(default)]
    pub hmac_enabled: Option<bool>,
    #[serde(default)]
    pub secure_ssl: Option<bool>,
    #[serde(default)]
    pub tag: Option<String>,
}

impl Handler for CreateWebhookSubscriptionCommand {
    const PERMISSION: Permission = Permission::SubscriptionsWrite;

    async fn handle(&self, ctx: &Context) -> Result<Reply, CommandError> {
        let outbound = ctx.service::<Outbound>()?;
        let owner = required_owner(ctx, self.partner_id, self.customer_id.as_deref())?;
        let secret = match &self.secret {
            Some(text) => Secret::parse(text).map_err(CommandError::validation)?,
            None => Secret::generate(),
        };
        let events = self.events.clone().unwrap_or_default();
        let draft = Draft {
            owner: Some(owner),
            name: self.name.clone().unwrap_or_else(|| default_name(&self.webhook_uri)),
            webhook_uri: self.webhook_uri.clone(),
            secret: secret.clone(),
            is_active: self.is_active.unwrap_or(true),
            // Omitting the events subscribes to everything.
            subscribe_all: self.subscribe_all.unwrap_or(self.events.is_none()),
            events,
            resource: self.resource.clone(),
            filters: self.filters.clone().unwrap_or_default(),
            delivery_policy: self.delivery_policy.unwrap_or(DeliveryPolicy::Linear),
            max_attempts: self.max_attempts.unwrap_or(outbound.settings.default_max_attempts),
            retry_interval_seconds: self
                .retry_interval_seconds
                .unwrap_or(outbound.settings.default_retry_interval_secs),
            headers: self.headers.clone().unwrap_or_default(),
            hmac_enabled: self.hmac_enabled.unwrap_or(true),
            secure_ssl: self.secure_ssl.unwrap_or(true),
            tag: self.tag.clone(),
        };
        let id = Uuid::now_v7();
        let now = hookbus_core::now();
        let row = subscription::ActiveModel {
            id: Set(id),
            previous_secret: Set(None),
            previous_secret_until: Set(None),
            suspended: Set(false),
            suspended_at: Set(None),
            expired_streak: Set(0),
            last_delivery_at: Set(None),
            last_delivery_status: Set(None),
            last_http_status: Set(None),
            created_at: Set(now),
            ..Default::default()
        };
        let saved = save(ctx, draft, row, id).await?;
        Reply::new(with_secret(saved, &secret), "Webhook subscription created successfully")
    }
}
register_command!("CreateWebhookSubscriptionCommand" => CreateWebhookSubscriptionCommand);

/// Overwrites `target` when the update gives a value.
fn set<T: Clone>(target: &mut T, value: &Option<T>) {
    if let Some(value) = value {
        *target = value.clone();
    }
}

fn default_name(uri: &str) -> String {
    url::Url::parse(uri).ok().and_then(|url| url.host_str().map(str::to_owned)).unwrap_or_else(|| "subscription".into())
}

/// Changes any field of a subscription. `addEvents`/`removeEvents` and `addHeaders`/`removeHeaders`
/// apply removals first, then additions.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateWebhookSubscriptionCommand {
    pub id: Uuid,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, alias = "endpoint", alias = "url")]
    pub webhook_uri: Option<String>,
    #[serde(default, alias = "signingKey", alias = "signingkey")]
    pub secret: Option<String>,
    #[serde(default, alias = "enableSubscription", alias = "enabled")]
    pub is_active: Option<bool>,
    /// Replaces the list.
    #[serde(default, alias = "webhooks", alias = "eventTypes")]
    pub events: Option<Vec<String>>,
    #[serde(default, alias = "addEventTypes")]
    pub add_events: Option<Vec<String>>,
    #[serde(default, alias = "removeEventTypes")]
    pub remove_events: Option<Vec<String>>,
    #[serde(default)]
    pub subscribe_all: Option<bool>,
    /// An empty string clears it.
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub filters: Option<Filters>,
    #[serde(default)]
    pub delivery_policy: Option<DeliveryPolicy>,
    #[serde(default)]
    pub max_attempts: Option<i32>,
    #[serde(default)]
    pub retry_interval_seconds: Option<i32>,
    /// Replaces every header.
    #[serde(default)]
    pub headers: Option<Headers>,
    #[serde(default)]
    pub add_headers: Option<Headers>,
    /// Header names to remove.
    #[serde(default)]
    pub remove_headers: Option<Vec<String>>,
    #[serde(default)]
    pub hmac_enabled: Option<bool>,
    #[serde(default)]
    pub secure_ssl: Option<bool>,
    #[serde(default)]
    pub tag: Option<String>,
}

impl Handler for UpdateWebhookSubscriptionCommand {
    const PERMISSION: Permission = Permission::SubscriptionsWrite;

    async fn handle(&self, ctx: &Context) -> Result<Reply, CommandError> {
        let outbound = ctx.service::<Outbound>()?;
        let row = find_subscription(ctx, self.id, "Update failed").await?;
        let mut draft = Draft::from_row(outbound, &row)?;
        set(&mut draft.name, &self.name);
        set(&mut draft.webhook_uri, &self.webhook_uri);
        set(&mut draft.is_active, &self.is_active);
        set(&mut draft.subscribe_all, &self.subscribe_all);
        set(&mut draft.filters, &self.filters);
        set(&mut draft.delivery_policy, &self.delivery_policy);
        set(&mut draft.max_attempts, &self.max_attempts);
        set(&mut draft.retry_interval_seconds, &self.retry_interval_seconds);
        set(&mut draft.hmac_enabled, &self.hmac_enabled);
        set(&mut draft.secure_ssl, &self.secure_ssl);
        if let Some(secret) = &self.secret {
            draft.secret = Secret::parse(secret).map_err(CommandError::validation)?;
        }
        if let Some(resource) = &self.resource {
            draft.resource = Some(resource.trim().to_owned()).filter(|r| !r.is_empty());
        }
        if let Some(tag) = &self.tag {
            draft.tag = Some(tag.trim().to_owned()).filter(|t| !t.is_empty());
        }
        set(&mut draft.events, &self.events);
        if let Some(remove) = &self.remove_events {
            draft.events.retain(|name| !remove.contains(name));
        }
        draft.events.extend(self.add_events.iter().flatten().cloned());
        set(&mut draft.headers, &self.headers);
        if let Some(remove) = &self.remove_headers {
            let remove: BTreeSet<String> = remove.iter().map(|name| name.trim().to_ascii_lowercase()).collect();
            draft.headers.retain(|name, _| !remove.contains(&name.to_ascii_lowercase()));
        }
        for (name, values) in self.add_headers.iter().flatten() {
            draft.headers.insert(name.trim().to_ascii_lowercase(), values.clone());
        }
        let id = row.id;
        let saved = save(ctx, draft, row.into_active_model(), id).await?;
        Reply::new(SubscriptionView::from(saved), "Webhook subscription updated successfully")
    }
}
register_command!("UpdateWebhookSubscriptionCommand" => UpdateWebhookSubscriptionCommand);

/// The owner's subscriptions, for the owner-wide commands; 404 when there are none.
async fn owned(ctx: &Context, owner: &Owner, message: &str) -> Result<Vec<subscription::Model>, CommandError> {
    let rows = subscription::Entity::find()
        .filter(owner_condition(owner))
        .order_by_asc(subscription::Column::CreatedAt)
        .all(ctx.service::<Store>()?.db())
        .await
        .or_internal()?;
    if rows.is_empty() {
        return Err(CommandError::not_found(message, "No subscription for this owner"));
    }
    Ok(rows)
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
        views.push(SubscriptionView::from(save(ctx, draft, row.into_active_model(), id).await?));
    }
    Ok(views)
}

/// Changes the URI of every subscription of an owner.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateWebhookUriCommand {
    #[serde(default)]
    pub partner_id: Option<Uuid>,
    #[serde(default)]
    pub customer_id: Option<String>,
    pub webhook_uri: String,
}

impl Handler for UpdateWebhookUriCommand {
    const PERMISSION: Permission = Permission::SubscriptionsWrite;

    async fn handle(&self, ctx: &Context) -> Result<Reply, CommandError> {
        let owner = required_owner(ctx, self.partner_id, self.customer_id.as_deref())?;
        let rows = owned(ctx, &owner, "Update failed").await?;
        let views = update_each(ctx, rows, |draft| draft.webhook_uri = self.webhook_uri.clone()).await?;
        Reply::new(views, "Webhook URI updated successfully")
    }
}
register_command!("UpdateWebhookUriCommand" => UpdateWebhookUriCommand);

/// Subscribes every subscription of an owner to every event.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubscribeAllEventsCommand {
    #[serde(default)]
    pub partner_id: Option<Uuid>,
    #[serde(default)]
    pub customer_id: Option<String>,
}

impl Handler for SubscribeAllEventsCommand {
    const PERMISSION: Permission = Permission::SubscriptionsWrite;

    async fn handle(&self, ctx: &Context) -> Result<Reply, CommandError> {
        let owner = required_owner(ctx, self.partner_id, self.customer_id.as_deref())?;
        let rows = owned(ctx, &owner, "Update failed").await?;
        let views = update_each(ctx, rows, |draft| draft.subscribe_all = true).await?;
        Reply::new(views, "Subscribed to all events")
    }
}
register_command!("SubscribeAllEventsCommand" => SubscribeAllEventsCommand);

/// Removes events from a subscription (by id) or from an owner's; with no events listed, the
/// subscriptions are deactivated.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UnregisterWebhookEventsCommand {
    #[serde(default)]
    pub id: Option<Uuid>,
    #[serde(default)]
    pub partner_id: Option<Uuid>,
    #[serde(default)]
    pub customer_id: Option<String>,
    #[serde(default, alias = "webhooks")]
    pub events: Option<Vec<String>>,
}

impl Handler for UnregisterWebhookEventsCommand {
    const PERMISSION: Permission = Permission::SubscriptionsWrite;

    async fn handle(&self, ctx: &Context) -> Result<Reply, CommandError> {
        let rows = match self.id {
            Some(id) => vec![find_subscription(ctx, id, "Unregister failed").await?],
            None => {
                let owner = required_owner(ctx, self.partner_id, self.customer_id.as_deref())?;
                owned(ctx, &owner, "Unregister failed").await?
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
        Reply::new(views, "Webhook events unregistered successfully")
    }
}
register_command!("UnregisterWebhookEventsCommand" => UnregisterWebhookEventsCommand);

/// Deletes a subscription; its waiting notifications are cancelled.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteWebhookSubscriptionCommand {
    pub id: Uuid,
}

impl Handler for DeleteWebhookSubscriptionCommand {
    const PERMISSION: Permission = Permission::SubscriptionsWrite;

    async fn handle(&self, ctx: &Context) -> Result<Reply, CommandError> {
        let row = find_subscription(ctx, self.id, "Delete failed").await?;
        let store = ctx.service::<Store>()?;
        let now = hookbus_core::now();
        let txn = store.begin_write().await.or_internal()?;
        crate::queue::remove_subscription(&*txn, row.id).await.or_internal()?;
        let cancelled = notification::Entity::update_many()
            .col_expr(notification::Column::Status, Expr::value(status::CANCELLED))
            .col_expr(notification::Column::NextAttemptAt, Expr::value(Option::<Timestamp>::None))
            .col_expr(notification::Column::UpdatedAt, Expr::value(now))
            .filter(notification::Column::SubscriptionId.eq(row.id))
            .filter(
                Condition::any()
                    .add(notification::Column::NextAttemptAt.is_not_null())
                    .add(notification::Column::Status.eq(status::DIVERTED)),
            )
            .exec(&*txn)
            .await
            .or_internal()?;
        index_events(&*txn, row.id, &[]).await?;
        subscription::Entity::delete_by_id(row.id).exec(&*txn).await.or_internal()?;
        txn.commit().await.or_internal()?;
        Reply::new(
            json!({"id": row.id, "cancelledNotifications": cancelled.rows_affected}),
            "Webhook subscription deleted successfully",
        )
    }
}
register_command!("DeleteWebhookSubscriptionCommand" => DeleteWebhookSubscriptionCommand);

/// The event names an owner is subscribed to.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetRegisteredWebhooksQuery {
    #[serde(default)]
    pub partner_id: Option<Uuid>,
    #[serde(default)]
    pub customer_id: Option<String>,
}

impl Handler for GetRegisteredWebhooksQuery {
    const PERMISSION: Permission = Permission::SubscriptionsRead;

    async fn handle(&self, ctx: &Context) -> Result<Reply, CommandError> {
        let owner = required_owner(ctx, self.partner_id, self.customer_id.as_deref())?;
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
        Reply::new(names, "Registered webhooks retrieved successfully")
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

    async fn handle(&self, ctx: &Context) -> Result<Reply, CommandError> {
        let row = find_subscription(ctx, self.id, NOT_FOUND).await?;
        Reply::new(SubscriptionView::from(row), "Webhook subscription retrieved successfully")
    }
}
register_command!("GetWebhookSubscriptionQuery" => GetWebhookSubscriptionQuery);

/// Subscriptions, newest first, with filters.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetWebhookSubscriptionListQuery {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub is_active: Option<bool>,
    #[serde(default)]
    pub suspended: Option<bool>,
    #[serde(default)]
    pub event_name: Option<String>,
    #[serde(default)]
    pub partner_id: Option<Uuid>,
    #[serde(default)]
    pub customer_id: Option<String>,
    #[serde(default)]
    pub page_number: Option<u64>,
    #[serde(default)]
    pub page_size: Option<u64>,
}

impl Handler for GetWebhookSubscriptionListQuery {
    const PERMISSION: Permission = Permission::SubscriptionsRead;

    async fn handle(&self, ctx: &Context) -> Result<Reply, CommandError> {
        let page = PageRequest::parse(self.page_number, self.page_size)?;
        let mut query = subscription::Entity::find()
            .order_by_desc(subscription::Column::CreatedAt)
            .order_by_desc(subscription::Column::Id);
        if let Some(owner) = owner_of_command(ctx, self.partner_id, self.customer_id.as_deref())? {
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
        let page = fetch_page(query, page, ctx.service::<Store>()?.db(), SubscriptionView::from).await?;
        Reply::new(page, "Webhook subscriptions retrieved successfully")
    }
}
register_command!("GetWebhookSubscriptionListQuery" => GetWebhookSubscriptionListQuery);

/// Sends a signed `ping` event now and reports what the endpoint answered.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PingWebhookSubscriptionCommand {
    pub id: Uuid,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PingResult {
    success: bool,
    status_code: Option<u16>,
    latency_ms: i64,
    error: Option<String>,
    response_excerpt: Option<String>,
}

impl Handler for PingWebhookSubscriptionCommand {
    const PERMISSION: Permission = Permission::SubscriptionsWrite;

    async fn handle(&self, ctx: &Context) -> Result<Reply, CommandError> {
        let outbound = ctx.service::<Outbound>()?;
        let row = find_subscription(ctx, self.id, "Ping failed").await?;
        let now = hookbus_core::now();
        let id = Uuid::now_v7();
        let ping = event::Model {
            id,
            event_key: id.to_string(),
            event_name: catalog::PING.to_owned(),
            resource: None,
            data: json!({"subscriptionId": row.id}),
            changed_attributes: None,
            simulated: false,
            notifications: 1,
            occurred_at: now,
        };
        let job = Job {
            notification_id: id,
            attempts: 0,
            event: EventBody::of(&ping)?,
            target: Target::of(outbound, &row, now)?,
        };
        let probe = outbound.sender.probe(&job, outbound).await;
        let result = PingResult {
            success: probe.status.is_some_and(|code| (200..300).contains(&code)),
            status_code: probe.status,
            latency_ms: probe.duration_ms,
            error: probe.error,
            response_excerpt: probe.excerpt,
        };
        let message = if result.success { "Ping delivered" } else { "Ping failed" };
        Reply::new(result, message)
    }
}
register_command!("PingWebhookSubscriptionCommand" => PingWebhookSubscriptionCommand);

/// Delivers an event's sample payload, marked `"simulated": true`, to one owner's subscriptions
/// through the normal pipeline.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GenerateSimulatedWebhookCommand {
    pub event_name: String,
    #[serde(default)]
    pub partner_id: Option<Uuid>,
    #[serde(default)]
    pub customer_id: Option<String>,
}

impl Handler for GenerateSimulatedWebhookCommand {
    const PERMISSION: Permission = Permission::SubscriptionsWrite;

    async fn handle(&self, ctx: &Context) -> Result<Reply, CommandError> {
        let owner = required_owner(ctx, self.partner_id, self.customer_id.as_deref())?;
        let db = ctx.service::<Store>()?.db();
        let kind = catalog::find(db, &self.event_name).await?.ok_or_else(|| {
            CommandError::validation(format!(
                "eventName: unknown event name '{}' (see GetEventCatalogQuery)",
                self.event_name
            ))
        })?;
        let event = NewEvent { event_name: kind.name, data: kind.sample_payload, ..NewEvent::default() };
        let published = publish_to(ctx.services(), event, Audience::Owner(owner), true).await?;
        Reply::new(published, "Simulated webhook queued")
    }
}
register_command!("GenerateSimulatedWebhookCommand" => GenerateSimulatedWebhookCommand);

/// Replaces the signing secret. The old one keeps signing beside it for the overlap
/// (`outbound.rotation_overlap_hours`, 24 by default) so receivers can switch without a gap.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotateWebhookSecretCommand {
    pub id: Uuid,
    /// The new secret; generated when omitted.
    #[serde(default)]
    pub secret: Option<String>,
}

impl Handler for RotateWebhookSecretCommand {
    const PERMISSION: Permission = Permission::SubscriptionsWrite;

    async fn handle(&self, ctx: &Context) -> Result<Reply, CommandError> {
        let outbound = ctx.service::<Outbound>()?;
        let store = ctx.service::<Store>()?;
        let row = find_subscription(ctx, self.id, "Rotation failed").await?;
        let secret = match &self.secret {
            Some(text) => Secret::parse(text).map_err(CommandError::validation)?,
            None => Secret::generate(),
        };
        let now = hookbus_core::now();
        let overlap = Span::hours(i64::try_from(outbound.settings.rotation_overlap_hours).unwrap_or(24));
        let mut active = row.clone().into_active_model();
        active.previous_secret = Set(Some(row.secret.clone()));
        active.previous_secret_until = Set(Some(now + overlap));
        active.secret = Set(outbound.secrets.seal(&secret));
        active.secret_hint = Set(secret.mask());
        active.updated_at = Set(now);
        let txn = store.begin_write().await.or_internal()?;
        let saved = active.update(&*txn).await.or_internal()?;
        txn.commit().await.or_internal()?;
        let mut answer = serde_json::to_value(with_secret(saved, &secret)).map_err(CommandError::internal)?;
        answer["previousSecretValidUntil"] = json!(now + overlap);
        Reply::new(answer, "Signing secret rotated; the previous secret signs beside it until previousSecretValidUntil")
    }
}
register_command!("RotateWebhookSecretCommand" => RotateWebhookSecretCommand);
