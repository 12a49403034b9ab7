//! Publishing (SPEC 5.1): the event and its notifications are written in one transaction, so once
//! publishing succeeds every delivery it implies happens, even if the process dies at once.

use std::sync::Arc;

use chrono::Duration as Span;
use hookbus_core::{CommandError, Context, Handler, Owner, Permission, Reply, Services, register_command};
use hookbus_store::{DbResultExt, Store};
use schemars::JsonSchema;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QuerySelect, QueryTrait, SqlErr};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    Outbound, catalog,
    delivery::{EventBody, Job, Target},
    entity::{event, notification, subscription, subscription_event},
    status,
    subscription::filters_of,
};

/// An event to publish.
#[derive(Debug, Clone, Default)]
pub struct NewEvent {
    pub event_name: String,
    pub resource: Option<String>,
    pub data: Value,
    /// Makes publishing idempotent: a repeat is answered with the first result.
    pub event_id: Option<String>,
    /// Paths that changed (`/contacts/0/name`), for attribute filters.
    pub changed_attributes: Option<Vec<String>>,
}

/// What publishing did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Published {
    /// The publisher's `eventId`, or the generated id.
    pub event_id: String,
    pub event_name: String,
    pub occurred_at: hookbus_core::Timestamp,
    /// Notifications created, one per matching subscription.
    pub notifications: i32,
    /// This `eventId` was published before; nothing new was created.
    pub duplicate: bool,
}

/// Who receives an event: every matching subscription, or (for simulated events) one owner's.
#[derive(Debug, Clone)]
pub(crate) enum Audience {
    Everyone,
    Owner(Owner),
}

/// Publishes `event` to every matching subscription.
pub async fn publish(services: &Services, event: NewEvent) -> Result<Published, CommandError> {
    publish_to(services, event, Audience::Everyone, false).await
}

pub(crate) async fn publish_to(
    services: &Services,
    event: NewEvent,
    audience: Audience,
    simulated: bool,
) -> Result<Published, CommandError> {
    let store = services.get::<Store>()?;
    let outbound = services.get::<Outbound>()?;
    let db = store.db();
    check(&event)?;
    catalog::ensure_known(db, "eventName", std::slice::from_ref(&event.event_name)).await?;
    if let Some(key) = &event.event_id
        && let Some(first) = find_published(store, key).await?
    {
        return Ok(first);
    }

    let now = hookbus_core::now();
    let id = Uuid::now_v7();
    let document = json!({"eventName": event.event_name, "resource": event.resource, "data": event.data});
    let subscriptions: Vec<subscription::Model> = recipients(&event.event_name, &audience)
        .all(db)
        .await
        .or_internal()?
        .into_iter()
        .filter(|sub| wants(sub, &event, &document))
        .collect();

    let row = event::Model {
        id,
        event_key: event.event_id.clone().unwrap_or_else(|| id.to_string()),
        event_name: event.event_name.clone(),
        resource: event.resource.clone(),
        data: event.data,
        changed_attributes: event.changed_attributes.map(|paths| json!(paths)),
        simulated,
        notifications: i32::try_from(subscriptions.len()).unwrap_or(i32::MAX),
        occurred_at: now,
    };
    let pending = subscriptions.iter().filter(|sub| !sub.suspended).count();
    let leased = pending > 0 && outbound.dispatcher.reserve(pending);
    let lease_until = now + Span::seconds(i64::try_from(outbound.settings.lease_secs).unwrap_or(60));
    let notifications: Vec<notification::Model> = subscriptions
        .iter()
        .map(|sub| notification::Model {
            id: Uuid::now_v7(),
            event_id: id,
            subscription_id: sub.id,
            event_name: row.event_name.clone(),
            status: if sub.suspended { status::DIVERTED } else { status::PENDING }.to_owned(),
            attempts: 0,
            next_attempt_at: (!sub.suspended).then_some(now),
            lease_until: (!sub.suspended && leased).then_some(lease_until),
            last_attempt_at: None,
            last_http_status: None,
            last_error: None,
            created_at: now,
            updated_at: now,
            delivered_at: None,
        })
        .collect();

    let written = write(store, &row, &notifications).await;
    if let Err(error) = written {
        if leased {
            outbound.dispatcher.release(pending);
        }
        return match (error, &event.event_id) {
            // Another publisher of the same eventId won the race: answer with its result.
            (Written::Duplicate, Some(key)) => find_published(store, key)
                .await?
                .ok_or_else(|| CommandError::conflict("Publishing failed", "eventId was published concurrently")),
            (Written::Duplicate, None) => {
                Err(CommandError::conflict("Publishing failed", "eventId was published concurrently"))
            }
            (Written::Failed(error), _) => Err(error),
        };
    }
    outbound.metrics.published();
    if leased {
        hand_over(outbound, &row, &subscriptions, &notifications, pending);
    }
    Ok(published(&row, false))
}

/// Gives the new notifications to this instance's senders. If that fails they are claimed from
/// the queue once their lease runs out.
fn hand_over(
    outbound: &Outbound,
    row: &event::Model,
    subscriptions: &[subscription::Model],
    notifications: &[notification::Model],
    reserved: usize,
) {
    let now = hookbus_core::now();
    let jobs: Result<Vec<Job>, CommandError> = EventBody::of(row).and_then(|body| {
        subscriptions
            .iter()
            .zip(notifications)
            .filter(|(sub, _)| !sub.suspended)
            .map(|(sub, n)| {
                Ok(Job {
                    notification_id: n.id,
                    attempts: 0,
                    event: Arc::clone(&body),
                    target: Target::of(outbound, sub, now)?,
                })
            })
            .collect()
    });
    match jobs {
        Ok(jobs) => outbound.dispatcher.submit(jobs),
        Err(_) => outbound.dispatcher.release(reserved),
    }
}

enum Written {
    Duplicate,
    Failed(CommandError),
}

async fn write(store: &Store, row: &event::Model, notifications: &[notification::Model]) -> Result<(), Written> {
    let txn = store.begin_write().await.map_err(Written::Failed)?;
    let inserted = event::Entity::insert(event::ActiveModel::from(row.clone())).exec(&*txn).await;
    if let Err(error) = inserted {
        return Err(match error.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => Written::Duplicate,
            _ => Written::Failed(CommandError::internal(error)),
        });
    }
    for chunk in notifications.chunks(1_000) {
        let rows = chunk.iter().cloned().map(notification::ActiveModel::from);
        notification::Entity::insert_many(rows).exec(&*txn).await.or_internal().map_err(Written::Failed)?;
    }
    txn.commit().await.map_err(Written::Failed)
}

fn published(row: &event::Model, duplicate: bool) -> Published {
    Published {
        event_id: row.event_key.clone(),
        event_name: row.event_name.clone(),
        occurred_at: row.occurred_at,
        notifications: row.notifications,
        duplicate,
    }
}

async fn find_published(store: &Store, key: &str) -> Result<Option<Published>, CommandError> {
    let first = event::Entity::find().filter(event::Column::EventKey.eq(key)).one(store.db()).await.or_internal()?;
    Ok(first.map(|row| published(&row, true)))
}

/// Active subscriptions to `event_name` (by name or to everything), limited to the audience.
fn recipients(event_name: &str, audience: &Audience) -> sea_orm::Select<subscription::Entity> {
    let by_name = subscription_event::Entity::find()
        .select_only()
        .column(subscription_event::Column::SubscriptionId)
        .filter(subscription_event::Column::EventName.eq(event_name))
        .into_query();
    let query = subscription::Entity::find().filter(subscription::Column::IsActive.eq(true)).filter(
        Condition::any()
            .add(subscription::Column::SubscribeAll.eq(true))
            .add(subscription::Column::Id.in_subquery(by_name)),
    );
    match audience {
        Audience::Everyone => query,
        Audience::Owner(owner) => query.filter(crate::commands::owner_condition(owner)),
    }
}

/// The subscription's resource and filters admit the event.
fn wants(sub: &subscription::Model, event: &NewEvent, document: &Value) -> bool {
    let resource_ok = match (&sub.resource, &event.resource) {
        (Some(wanted), Some(given)) => wanted.eq_ignore_ascii_case(given),
        (Some(_), None) => false,
        (None, _) => true,
    };
    resource_ok && filters_of(sub).admit(document, event.changed_attributes.as_deref())
}

fn check(event: &NewEvent) -> Result<(), CommandError> {
    let mut errors = Vec::new();
    if event.event_name.trim().is_empty() {
        errors.push("eventName: must not be empty".to_owned());
    }
    if event.event_name == catalog::PING {
        errors.push("eventName: 'ping' is reserved for PingWebhookSubscriptionCommand".to_owned());
    }
    if let Some(key) = &event.event_id
        && (key.trim().is_empty() || key.len() > 200)
    {
        errors.push("eventId: must be 1 to 200 characters".to_owned());
    }
    if let Some(resource) = &event.resource
        && resource.len() > 200
    {
        errors.push("resource: must be at most 200 characters".to_owned());
    }
    for (i, path) in event.changed_attributes.iter().flatten().enumerate() {
        if !path.starts_with('/') {
            errors.push(format!("changedAttributes[{i}]: '{path}' must start with '/'"));
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(CommandError::Validation(errors)) }
}

/// Publishes an event to every matching subscription.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublishEventCommand {
    pub event_name: String,
    #[serde(default)]
    pub resource: Option<String>,
    pub data: Value,
    #[serde(default)]
    pub event_id: Option<String>,
    #[serde(default)]
    pub changed_attributes: Option<Vec<String>>,
}

impl Handler for PublishEventCommand {
    const PERMISSION: Permission = Permission::EventsPublish;

    async fn handle(&self, ctx: &Context) -> Result<Reply, CommandError> {
        let event = NewEvent {
            event_name: self.event_name.clone(),
            resource: self.resource.clone(),
            data: self.data.clone(),
            event_id: self.event_id.clone(),
            changed_attributes: self.changed_attributes.clone(),
        };
        let published = publish(ctx.services(), event).await?;
        let message = if published.duplicate { "Event already published" } else { "Event published successfully" };
        Reply::new(published, message)
    }
}
register_command!("PublishEventCommand" => PublishEventCommand);
