//! hookbus's own events (`hookbus.subscription.unhealthy`, `.healthy`, `.suspended`,
//! `hookbus.notification.expired`), published through the catalog like any event, so admins
//! subscribe to them like any other (a chat or paging bridge, say).
//!
//! An event about a subscription reaches the platform's subscriptions (those without an owner)
//! and the subscriptions of the same owner, never the subscription it is about: a partner sees
//! its own endpoints' health, not another partner's. An expiry of one of these events announces
//! nothing, so two broken subscriptions cannot keep each other busy.
//!
//! The engine announces; one task publishes, one event after another, apart from the senders and
//! the writer, which never wait for it.

use hookbus_core::{Timestamp, error_chain};
use hookbus_store::Store;
use sea_orm::EntityTrait;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::{
    Outbound, catalog,
    entity::{notification, subscription},
    publish::{self, NewEvent},
};

/// Something to announce.
#[derive(Debug, Clone)]
pub(crate) enum Operational {
    Unhealthy { subscription_id: Uuid, reason: String, failures: u32, next_probe_at: Timestamp },
    Healthy { subscription_id: Uuid, unhealthy_since: Timestamp },
    Suspended { subscription_id: Uuid, reason: String },
    Expired { notification_id: Uuid, subscription_id: Uuid, attempts: i32, reason: Option<String> },
}

impl Operational {
    fn subscription_id(&self) -> Uuid {
        match self {
            Self::Unhealthy { subscription_id, .. }
            | Self::Healthy { subscription_id, .. }
            | Self::Suspended { subscription_id, .. }
            | Self::Expired { subscription_id, .. } => *subscription_id,
        }
    }
}

/// The handle the engine announces through.
#[derive(Debug, Clone)]
pub(crate) struct Announcer {
    events: mpsc::UnboundedSender<Operational>,
}

impl Announcer {
    pub fn spawn(store: Store, outbound: Outbound) -> Self {
        let (events, mut receiver) = mpsc::unbounded_channel::<Operational>();
        tokio::spawn(async move {
            while let Some(event) = receiver.recv().await {
                if let Err(error) = announce(&store, &outbound, event).await {
                    tracing::warn!(error = %error_chain(&error), "operational event not published");
                }
            }
        });
        Self { events }
    }

    pub fn announce(&self, event: Operational) {
        // Fails only once the task stopped with the runtime.
        let _ = self.events.send(event);
    }
}

async fn announce(store: &Store, outbound: &Outbound, event: Operational) -> Result<(), hookbus_core::CommandError> {
    use hookbus_store::DbResultExt;
    let db = store.db();
    let Some(about) = subscription::Entity::find_by_id(event.subscription_id()).one(db).await.or_internal()? else {
        return Ok(());
    };
    let (name, reason, counts, extra) = match event {
        Operational::Unhealthy { reason, failures, next_probe_at, .. } => (
            catalog::UNHEALTHY,
            Some(reason),
            json!({"consecutiveFailures": failures}),
            json!({"nextProbeAt": next_probe_at}),
        ),
        Operational::Healthy { unhealthy_since, .. } => {
            let seconds = (hookbus_core::now() - unhealthy_since).num_seconds();
            (catalog::HEALTHY, None, json!({"unhealthySeconds": seconds}), json!({"unhealthySince": unhealthy_since}))
        }
        Operational::Suspended { reason, .. } => {
            (catalog::SUSPENDED, Some(reason), json!({"expiredInARow": about.expired_streak}), json!({}))
        }
        Operational::Expired { notification_id, attempts, reason, .. } => {
            let Some(expired) = notification::Entity::find_by_id(notification_id).one(db).await.or_internal()? else {
                return Ok(());
            };
            if expired.event_name.starts_with(catalog::OPERATIONS_PREFIX) {
                return Ok(());
            }
            let extra = json!({
                "notificationId": notification_id,
                "eventId": expired.event_id,
                "eventName": expired.event_name,
            });
            (catalog::EXPIRED, reason, json!({"attempts": attempts}), extra)
        }
    };
    let mut data = json!({
        "subscriptionId": about.id,
        "partnerId": about.partner_id,
        "customerId": about.customer_id,
        "webhookUri": about.webhook_uri,
        "reason": reason,
        "counts": counts,
    });
    if let (Value::Object(data), Value::Object(extra)) = (&mut data, extra) {
        data.extend(extra);
    }
    let event = NewEvent { event_name: name.to_owned(), data, ..NewEvent::default() };
    publish::publish_operational(store, outbound, event, &about).await?;
    Ok(())
}
