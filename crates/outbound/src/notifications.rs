//! Notifications as commands see them: resending, and the queries with every attempt.

use hookbus_core::{
    Answered, CommandError, Context, Handler, Page, PageRequest, Permission, Timestamp, register_command,
};
use hookbus_store::{DbResultExt, Store, fetch_page};
use schemars::JsonSchema;
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    NotificationStatus,
    entity::{attempt, notification, queue_entry, subscription},
    owner::{find_subscription, owner_condition},
    state::{self, Requeued},
};

/// Queues expired (and diverted) notifications again: one, a subscription's, or all since a time.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResendExpiredNotificationsCommand {
    #[serde(default, alias = "notification_id")]
    pub notification_id: Option<Uuid>,
    #[serde(default)]
    pub subscription_id: Option<Uuid>,
    #[serde(default)]
    pub since: Option<Timestamp>,
}

impl Handler for ResendExpiredNotificationsCommand {
    const PERMISSION: Permission = Permission::SubscriptionsWrite;
    type Answer = Requeued;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        let store = ctx.service::<Store>()?;
        let mut which = Condition::all()
            .add(notification::Column::Status.is_in([NotificationStatus::Expired, NotificationStatus::Diverted]));
        if let Some(id) = self.subscription_id {
            find_subscription(ctx, id, "Resend failed").await?;
            which = which.add(notification::Column::SubscriptionId.eq(id));
        }
        if let Some(id) = self.notification_id {
            let found = visible(ctx).filter(notification::Column::Id.eq(id)).one(store.db()).await.or_internal()?;
            if found.is_none() {
                return Err(CommandError::not_found("Resend failed", "Notification not found"));
            }
            which = which.add(notification::Column::Id.eq(id));
        }
        if let Some(since) = self.since {
            which = which.add(notification::Column::CreatedAt.gte(since));
        }
        // Only notifications of subscriptions that are not suspended: a suspended one keeps its
        // diverted notifications until it is unsuspended.
        let open = subscription::Entity::find()
            .select_only()
            .column(subscription::Column::Id)
            .filter(subscription::Column::Suspended.eq(false))
            .filter(scope(ctx))
            .into_query();
        which = which.add(notification::Column::SubscriptionId.in_subquery(open));
        let txn = store.begin_write().await.or_internal()?;
        let requeued = state::requeue(&*txn, which).await.or_internal()?;
        txn.commit().await.or_internal()?;
        Answered::ok(Requeued { requeued }, "Expired notifications queued again")
    }
}
register_command!("ResendExpiredNotificationsCommand" => ResendExpiredNotificationsCommand);

/// The caller's subscriptions: every one, or an owner-bound token's own.
fn scope(ctx: &Context) -> Condition {
    match &ctx.principal.owner {
        Some(owner) => owner_condition(owner),
        None => Condition::all(),
    }
}

/// Notifications the caller may see.
fn visible(ctx: &Context) -> sea_orm::Select<notification::Entity> {
    let query = notification::Entity::find();
    match &ctx.principal.owner {
        Some(owner) => {
            let own = subscription::Entity::find()
                .select_only()
                .column(subscription::Column::Id)
                .filter(owner_condition(owner))
                .into_query();
            query.filter(notification::Column::SubscriptionId.in_subquery(own))
        }
        None => query,
    }
}

/// A notification: one event for one subscription, and how its delivery stands.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationView {
    id: Uuid,
    event_id: Uuid,
    subscription_id: Uuid,
    event_name: String,
    status: NotificationStatus,
    attempts: i32,
    next_attempt_at: Option<Timestamp>,
    last_attempt_at: Option<Timestamp>,
    last_http_status: Option<i32>,
    last_error: Option<String>,
    created_at: Timestamp,
    delivered_at: Option<Timestamp>,
    /// Every attempt, oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    attempt_log: Option<Vec<AttemptView>>,
    /// Why a waiting notification is held back, when it is (one notification's query only).
    #[serde(skip_serializing_if = "Option::is_none")]
    held: Option<Held>,
}

/// Why a waiting notification is not being sent.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", tag = "reason")]
pub enum Held {
    /// Its subscription's endpoint stopped answering: it waits, using no attempts, for a probe to
    /// get an answer.
    #[serde(rename = "endpointUnhealthy", rename_all = "camelCase")]
    EndpointUnhealthy { since: Timestamp, next_probe_at: Timestamp, detail: String },
    /// Its subscription delivers in order, and an earlier notification is not delivered yet.
    #[serde(rename = "ordering", rename_all = "camelCase")]
    Ordering { behind: Uuid },
}

/// Why `row` (waiting to be sent) is held back, if it is.
async fn held(db: &impl ConnectionTrait, row: &notification::Model) -> Result<Option<Held>, CommandError> {
    if !row.status.is_waiting() {
        return Ok(None);
    }
    let health = crate::lane::health_of(db, &[row.subscription_id]).await.or_internal()?;
    if let Some(crate::lane::Health::Unhealthy { since, next_probe_at, reason, .. }) = health.get(&row.subscription_id)
    {
        return Ok(Some(Held::EndpointUnhealthy {
            since: *since,
            next_probe_at: *next_probe_at,
            detail: reason.clone(),
        }));
    }
    let fifo = subscription::Entity::find_by_id(row.subscription_id)
        .one(db)
        .await
        .or_internal()?
        .is_some_and(|sub| sub.ordering == crate::subscription::Ordering::Fifo);
    if fifo {
        let earlier = queue_entry::Entity::find()
            .filter(queue_entry::Column::SubscriptionId.eq(row.subscription_id))
            .filter(queue_entry::Column::NotificationId.lt(row.id))
            .order_by_asc(queue_entry::Column::NotificationId)
            .one(db)
            .await
            .or_internal()?;
        if let Some(earlier) = earlier {
            return Ok(Some(Held::Ordering { behind: earlier.notification_id }));
        }
    }
    Ok(None)
}

/// One delivery attempt.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    attempt: i32,
    attempted_at: Timestamp,
    duration_ms: i64,
    http_status: Option<i32>,
    error: Option<String>,
    response_excerpt: Option<String>,
}

impl From<notification::Model> for NotificationView {
    fn from(row: notification::Model) -> Self {
        Self {
            id: row.id,
            event_id: row.event_id,
            subscription_id: row.subscription_id,
            event_name: row.event_name,
            status: row.status,
            attempts: row.attempts,
            next_attempt_at: row.next_attempt_at,
            last_attempt_at: row.last_attempt_at,
            last_http_status: row.last_http_status,
            last_error: row.last_error,
            created_at: row.created_at,
            delivered_at: row.delivered_at,
            attempt_log: None,
            held: None,
        }
    }
}

impl From<attempt::Model> for AttemptView {
    fn from(row: attempt::Model) -> Self {
        Self {
            attempt: row.attempt,
            attempted_at: row.attempted_at,
            duration_ms: row.duration_ms,
            http_status: row.http_status,
            error: row.error,
            response_excerpt: row.response_excerpt,
        }
    }
}

async fn attempts_of(db: &impl ConnectionTrait, id: Uuid) -> Result<Vec<AttemptView>, CommandError> {
    let rows = attempt::Entity::find()
        .filter(attempt::Column::NotificationId.eq(id))
        .order_by_asc(attempt::Column::AttemptedAt)
        .order_by_asc(attempt::Column::Id)
        .all(db)
        .await
        .or_internal()?;
    Ok(rows.into_iter().map(AttemptView::from).collect())
}

/// Lists notifications, newest first, each with its attempts.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetNotificationListQuery {
    #[serde(default)]
    pub subscription_id: Option<Uuid>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub event_name: Option<String>,
    #[serde(default)]
    pub page_number: Option<u64>,
    #[serde(default)]
    pub page_size: Option<u64>,
}

impl Handler for GetNotificationListQuery {
    const PERMISSION: Permission = Permission::SubscriptionsRead;
    type Answer = Page<NotificationView>;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        let page = PageRequest::parse(self.page_number, self.page_size)?;
        let db = ctx.service::<Store>()?.db();
        let mut query =
            visible(ctx).order_by_desc(notification::Column::CreatedAt).order_by_desc(notification::Column::Id);
        if let Some(id) = self.subscription_id {
            query = query.filter(notification::Column::SubscriptionId.eq(id));
        }
        if let Some(status) = &self.status {
            let status = NotificationStatus::parse(status).ok_or_else(|| {
                let known: Vec<&str> = NotificationStatus::ALL.iter().map(|s| s.as_str()).collect();
                CommandError::validation(format!("status: '{status}' is not one of {}", known.join(", ")))
            })?;
            query = query.filter(notification::Column::Status.eq(status));
        }
        if let Some(name) = &self.event_name {
            query = query.filter(notification::Column::EventName.eq(name.as_str()));
        }
        let mut page = fetch_page(query, page, db, NotificationView::from).await?;
        for item in &mut page.items {
            item.attempt_log = Some(attempts_of(db, item.id).await?);
        }
        Answered::ok(page, "Notifications retrieved successfully")
    }
}
register_command!("GetNotificationListQuery" => GetNotificationListQuery);

/// One notification with every attempt.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetNotificationByIdQuery {
    pub id: Uuid,
}

impl Handler for GetNotificationByIdQuery {
    const PERMISSION: Permission = Permission::SubscriptionsRead;
    type Answer = NotificationView;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        let db = ctx.service::<Store>()?.db();
        let row = visible(ctx)
            .filter(notification::Column::Id.eq(self.id))
            .one(db)
            .await
            .or_internal()?
            .ok_or_else(|| CommandError::not_found("Notification not found", "Notification not found"))?;
        let held = held(db, &row).await?;
        let mut view = NotificationView::from(row);
        view.attempt_log = Some(attempts_of(db, view.id).await?);
        view.held = held;
        Answered::ok(view, "Notification retrieved successfully")
    }
}
register_command!("GetNotificationByIdQuery" => GetNotificationByIdQuery);
