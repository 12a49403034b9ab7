//! What a sender needs to deliver one notification, built once per event and per subscription and
//! shared between the notifications that use them.

use std::sync::Arc;

use hookbus_core::Timestamp;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::EngineError;
use crate::{
    Outbound,
    entity::{event, subscription},
    secret::Secret,
    subscription::{DeliveryPolicy, Headers, Ordering, headers_of},
};

/// What every delivery POSTs: the event, as the partner receives it. The OpenAPI document's
/// `webhooks` describe this type.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryBody<'a> {
    /// The publisher's `eventId`, else the event's own id. The same for every subscription and
    /// every attempt: receivers deduplicate on it (or on the `webhook-id` header, per subscription).
    pub event_id: &'a str,
    /// A name of the event catalog.
    pub event_name: &'a str,
    /// What the event is about, e.g. `loan/42`; `null` when the publisher named nothing.
    pub resource: Option<&'a str>,
    pub occurred_at: Timestamp,
    /// The event's data as published.
    pub data: &'a Value,
    /// The attributes that changed, when the publisher listed them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed_attributes: Option<&'a Value>,
    /// `true` on simulated events (`GenerateSimulatedWebhookCommand`); absent otherwise.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub simulated: bool,
}

/// An event's delivery body, serialized once.
#[derive(Debug)]
pub(crate) struct EventBody {
    pub occurred_at: Timestamp,
    pub body: Vec<u8>,
}

impl EventBody {
    pub fn of(row: &event::Model) -> Result<Arc<Self>, EngineError> {
        let body = DeliveryBody {
            event_id: crate::publish::public_event_id(&row.event_key),
            event_name: &row.event_name,
            resource: row.resource.as_deref(),
            occurred_at: row.occurred_at,
            data: &row.data,
            changed_attributes: row.changed_attributes.as_ref(),
            simulated: row.simulated,
        };
        let body = serde_json::to_vec(&body)?;
        Ok(Arc::new(Self { occurred_at: row.occurred_at, body }))
    }
}

/// A subscription as senders see it: where, how, and with which secrets.
#[derive(Debug)]
pub(crate) struct Target {
    pub id: Uuid,
    pub url: String,
    /// The current secret first, then the previous one while it still signs.
    pub secrets: Vec<Secret>,
    pub headers: Headers,
    pub hmac_enabled: bool,
    pub secure_ssl: bool,
    pub policy: DeliveryPolicy,
    pub max_attempts: i32,
    pub retry_interval_seconds: i32,
    pub active: bool,
    pub suspended: bool,
    pub max_concurrency: Option<i32>,
    pub rate_limit_per_second: Option<i32>,
    pub ordering: Ordering,
}

impl Target {
    pub fn of(outbound: &Outbound, row: &subscription::Model, now: Timestamp) -> Result<Arc<Self>, EngineError> {
        let mut secrets = vec![outbound.secrets.open(&row.secret)?];
        if let (Some(previous), Some(until)) = (&row.previous_secret, row.previous_secret_until)
            && until > now
        {
            secrets.push(outbound.secrets.open(previous)?);
        }
        Ok(Arc::new(Self {
            id: row.id,
            url: row.webhook_uri.clone(),
            secrets,
            headers: headers_of(row),
            hmac_enabled: row.hmac_enabled,
            secure_ssl: row.secure_ssl,
            policy: row.delivery_policy,
            max_attempts: row.max_attempts,
            retry_interval_seconds: row.retry_interval_seconds,
            active: row.is_active,
            suspended: row.suspended,
            max_concurrency: row.max_concurrency,
            rate_limit_per_second: row.rate_limit_per_second,
            ordering: row.ordering,
        }))
    }
}

/// One notification to send now.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub notification_id: Uuid,
    /// Attempts made before this one (since it was last queued).
    pub attempts: i32,
    pub event: Arc<EventBody>,
    pub target: Arc<Target>,
}
