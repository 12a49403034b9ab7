//! The commands that create, change and delete one subscription.

use std::collections::BTreeSet;

use chrono::Duration as Span;
use hookbus_core::{Answered, CommandError, Context, Handler, Permission, Timestamp, UnknownFields, register_command};
use hookbus_store::{DbResultExt, Store};
use schemars::JsonSchema;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, EntityTrait, IntoActiveModel, QueryFilter,
    sea_query::Expr,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{DeliveryPolicy, Draft, Headers, Ordering, SubscriptionView};
use crate::{
    NotificationStatus, Outbound,
    entity::{notification, subscription},
    filter::Filters,
    owner::{OwnerFields, find_subscription},
    queue,
    secret::Secret,
    state,
};

/// What create answers: the subscription, with the secret in full this once.
#[derive(Debug, Serialize, JsonSchema)]
pub struct WithSecret {
    #[serde(flatten)]
    subscription: SubscriptionView,
}

/// What rotate answers: the subscription with the new secret in full, and until when the previous
/// secret still signs beside it.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rotated {
    #[serde(flatten)]
    subscription: WithSecret,
    previous_secret_valid_until: Timestamp,
}

/// What delete answers.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionDeleted {
    id: Uuid,
    /// Waiting notifications that will not be delivered.
    cancelled_notifications: u64,
}

fn with_secret(row: subscription::Model, secret: &Secret) -> WithSecret {
    let mut subscription = SubscriptionView::from(row);
    subscription.secret = secret.expose().to_owned();
    WithSecret { subscription }
}

/// Creates a subscription for a partner or a customer, or (by a caller not bound to an owner,
/// naming none) for the platform. The answer shows the signing secret in full, once.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateWebhookSubscriptionCommand {
    /// `partnerId` or `customerId`.
    #[serde(flatten)]
    pub owner: OwnerFields,
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
    /// Attempts in flight at once, at most, across every instance (1 to 256); default
    /// `outbound.per_subscription_concurrency`.
    #[serde(default)]
    pub max_concurrency: Option<i32>,
    /// Attempts started per second, at most, across every instance (1 to 10000); attempts beyond
    /// it wait, using no attempt. Default: no limit.
    #[serde(default)]
    pub rate_limit_per_second: Option<i32>,
    /// `unordered` (the default) or `fifo`: one at a time, in publish order.
    #[serde(default)]
    pub ordering: Option<Ordering>,
    /// Fields this command does not have; refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown: UnknownFields,
}

impl Handler for CreateWebhookSubscriptionCommand {
    const PERMISSION: Permission = Permission::SubscriptionsWrite;
    type Answer = WithSecret;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        self.unknown.refuse()?;
        let outbound = ctx.service::<Outbound>()?;
        // Without an owner (only an unbound caller may omit it) the subscription is the
        // platform's: it receives what unbound publishers publish and hookbus's own events.
        let owner = self.owner.for_caller(ctx)?;
        let secret = match &self.secret {
            Some(text) => Secret::parse(text).map_err(CommandError::validation)?,
            None => Secret::generate(),
        };
        let events = self.events.clone().unwrap_or_default();
        let draft = Draft {
            owner,
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
            max_concurrency: self.max_concurrency,
            rate_limit_per_second: self.rate_limit_per_second,
            ordering: self.ordering.unwrap_or_default(),
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
        let saved = super::save(ctx, draft, row, id).await?;
        Answered::ok(with_secret(saved, &secret), "Webhook subscription created successfully")
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
    /// Attempts in flight at once (1 to 256); 0 returns to `outbound.per_subscription_concurrency`.
    #[serde(default)]
    pub max_concurrency: Option<i32>,
    /// Attempts started per second (1 to 10000); 0 removes the limit.
    #[serde(default)]
    pub rate_limit_per_second: Option<i32>,
    /// `unordered` or `fifo`.
    #[serde(default)]
    pub ordering: Option<Ordering>,
}

impl Handler for UpdateWebhookSubscriptionCommand {
    const PERMISSION: Permission = Permission::SubscriptionsWrite;
    type Answer = SubscriptionView;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
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
        set(&mut draft.ordering, &self.ordering);
        if let Some(limit) = self.max_concurrency {
            draft.max_concurrency = (limit != 0).then_some(limit);
        }
        if let Some(rate) = self.rate_limit_per_second {
            draft.rate_limit_per_second = (rate != 0).then_some(rate);
        }
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
        let saved = super::save(ctx, draft, row.into_active_model(), id).await?;
        Answered::ok(SubscriptionView::from(saved), "Webhook subscription updated successfully")
    }
}
register_command!("UpdateWebhookSubscriptionCommand" => UpdateWebhookSubscriptionCommand);

/// Deletes a subscription; its waiting notifications are cancelled.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteWebhookSubscriptionCommand {
    pub id: Uuid,
}

impl Handler for DeleteWebhookSubscriptionCommand {
    const PERMISSION: Permission = Permission::SubscriptionsWrite;
    type Answer = SubscriptionDeleted;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        let row = find_subscription(ctx, self.id, "Delete failed").await?;
        let store = ctx.service::<Store>()?;
        let now = hookbus_core::now();
        let txn = store.begin_write().await.or_internal()?;
        queue::remove_subscription(&*txn, row.id).await.or_internal()?;
        crate::lane::delete(&*txn, row.id).await.or_internal()?;
        let cancelled = notification::Entity::update_many()
            .col_expr(notification::Column::Status, Expr::value(NotificationStatus::Cancelled))
            .col_expr(notification::Column::NextAttemptAt, Expr::value(Option::<Timestamp>::None))
            .col_expr(notification::Column::UpdatedAt, Expr::value(now))
            .filter(notification::Column::SubscriptionId.eq(row.id))
            .filter(
                Condition::any()
                    .add(notification::Column::NextAttemptAt.is_not_null())
                    .add(notification::Column::Status.eq(NotificationStatus::Diverted)),
            )
            .exec(&*txn)
            .await
            .or_internal()?;
        super::index_events(&*txn, row.id, &[]).await?;
        subscription::Entity::delete_by_id(row.id).exec(&*txn).await.or_internal()?;
        txn.commit().await.or_internal()?;
        let deleted = SubscriptionDeleted { id: row.id, cancelled_notifications: cancelled.rows_affected };
        Answered::ok(deleted, "Webhook subscription deleted successfully")
    }
}
register_command!("DeleteWebhookSubscriptionCommand" => DeleteWebhookSubscriptionCommand);

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
    type Answer = Rotated;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
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
        let answer = Rotated { subscription: with_secret(saved, &secret), previous_secret_valid_until: now + overlap };
        Answered::ok(
            answer,
            "Signing secret rotated; the previous secret signs beside it until previousSecretValidUntil",
        )
    }
}
register_command!("RotateWebhookSecretCommand" => RotateWebhookSecretCommand);

/// Resumes delivery to a suspended subscription; its diverted notifications are sent.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UnsuspendWebhookSubscriptionCommand {
    pub id: Uuid,
}

impl Handler for UnsuspendWebhookSubscriptionCommand {
    const PERMISSION: Permission = Permission::SubscriptionsWrite;
    type Answer = state::Requeued;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        let store = ctx.service::<Store>()?;
        let sub = find_subscription(ctx, self.id, "Unsuspend failed").await?;
        if !sub.suspended {
            return Err(CommandError::conflict("Unsuspend failed", "Subscription is not suspended"));
        }
        let txn = store.begin_write().await.or_internal()?;
        let requeued = state::unsuspend(&*txn, sub.id).await.or_internal()?;
        txn.commit().await.or_internal()?;
        Answered::ok(state::Requeued { requeued }, "Subscription unsuspended; diverted notifications are being sent")
    }
}
register_command!("UnsuspendWebhookSubscriptionCommand" => UnsuspendWebhookSubscriptionCommand);
