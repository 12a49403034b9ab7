//! Subscriptions: a subscription as a value (a [`Draft`], built from a create command or from its
//! row plus an update, checked against its rules in one place, then written back as a row), its
//! view, and the commands and queries about them.

mod commands;
mod owner_wide;
mod probe;
mod queries;
mod trial;

use std::collections::{BTreeMap, BTreeSet};

use hookbus_core::{CommandError, Context, Owner, Timestamp};
use hookbus_store::{DbResultExt, Store};
use schemars::JsonSchema;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::{
    Outbound, catalog,
    entity::{subscription, subscription_event},
    filter::{CompiledFilters, Filters},
    secret::Secret,
};

pub use crate::status::{DeliveryPolicy, Ordering};

/// Header name -> values.
pub type Headers = BTreeMap<String, Vec<String>>;

/// Headers hookbus sets itself; a subscription may not override them.
const RESERVED_HEADERS: [&str; 7] =
    ["content-type", "content-length", "host", "webhook-id", "webhook-timestamp", "webhook-signature", "user-agent"];

/// Every field of a subscription that a client sets.
#[derive(Debug, Clone)]
pub struct Draft {
    pub owner: Option<Owner>,
    pub name: String,
    pub webhook_uri: String,
    pub secret: Secret,
    pub is_active: bool,
    pub subscribe_all: bool,
    pub events: Vec<String>,
    pub resource: Option<String>,
    pub filters: Filters,
    pub delivery_policy: DeliveryPolicy,
    pub max_attempts: i32,
    pub retry_interval_seconds: i32,
    pub headers: Headers,
    pub hmac_enabled: bool,
    pub secure_ssl: bool,
    pub tag: Option<String>,
    /// `None`: `outbound.per_subscription_concurrency`.
    pub max_concurrency: Option<i32>,
    pub rate_limit_per_second: Option<i32>,
    pub ordering: Ordering,
}

/// The most attempts a subscription may have in flight at once.
pub const MAX_CONCURRENCY: i32 = 256;
/// The highest rate limit a subscription may set, per second.
pub const MAX_RATE_PER_SECOND: i32 = 10_000;

impl Draft {
    /// Checks every rule; each failure is one message naming the field.
    pub async fn check(&mut self, outbound: &Outbound, db: &impl ConnectionTrait) -> Result<(), CommandError> {
        let mut errors = Vec::new();
        self.name = self.name.trim().to_owned();
        if self.name.is_empty() || self.name.len() > 200 {
            errors.push("name: must be 1 to 200 characters".to_owned());
        }
        if let Err(blocked) = outbound.policy.parse_url(self.webhook_uri.trim()) {
            errors.push(format!("webhookUri: {blocked}"));
        }
        self.webhook_uri = self.webhook_uri.trim().to_owned();
        if let Some(Owner::Customer(customer)) = &self.owner
            && (customer.trim().is_empty() || customer.len() > 200)
        {
            errors.push("customerId: must be 1 to 200 characters".to_owned());
        }
        dedupe(&mut self.events);
        if self.events.iter().any(|name| name == "*") {
            errors
                .push("events: '*' is not an event name; subscribe to every event with subscribeAll: true".to_owned());
        } else if let Err(CommandError::Validation(unknown)) = catalog::ensure_known(db, "events", &self.events).await {
            errors.extend(unknown);
        }
        // An inactive subscription may be left without events (unregistering every one).
        if self.events.is_empty() && !self.subscribe_all && self.is_active {
            errors.push("events: list at least one event name, or set subscribeAll: true".to_owned());
        }
        if let Err(filter_errors) = self.filters.compile() {
            errors.extend(filter_errors);
        }
        if !(1..=100).contains(&self.max_attempts) {
            errors.push("maxAttempts: must be between 1 and 100".to_owned());
        }
        if !(1..=86_400).contains(&self.retry_interval_seconds) {
            errors.push("retryIntervalSeconds: must be between 1 and 86400".to_owned());
        }
        if self.max_concurrency.is_some_and(|n| !(1..=MAX_CONCURRENCY).contains(&n)) {
            errors.push(format!("maxConcurrency: must be between 1 and {MAX_CONCURRENCY}"));
        }
        if self.rate_limit_per_second.is_some_and(|n| !(1..=MAX_RATE_PER_SECOND).contains(&n)) {
            errors.push(format!("rateLimitPerSecond: must be between 1 and {MAX_RATE_PER_SECOND}"));
        }
        errors.extend(check_headers(&mut self.headers));
        if errors.is_empty() { Ok(()) } else { Err(CommandError::Validation(errors)) }
    }

    /// The row's client-set columns (`id`, timestamps and delivery state are the caller's).
    pub fn write(&self, outbound: &Outbound, row: &mut subscription::ActiveModel) -> Result<(), CommandError> {
        let (partner, customer) = match &self.owner {
            Some(Owner::Partner(id)) => (Some(*id), None),
            Some(Owner::Customer(id)) => (None, Some(id.clone())),
            None => (None, None),
        };
        row.partner_id = Set(partner);
        row.customer_id = Set(customer);
        row.name = Set(self.name.clone());
        row.webhook_uri = Set(self.webhook_uri.clone());
        row.secret = Set(outbound.secrets.seal(&self.secret));
        row.secret_hint = Set(self.secret.mask());
        row.is_active = Set(self.is_active);
        row.subscribe_all = Set(self.subscribe_all);
        row.events = Set(serde_json::json!(self.events));
        row.resource = Set(self.resource.clone());
        row.filters = Set(serde_json::to_value(&self.filters).map_err(CommandError::internal)?);
        row.delivery_policy = Set(self.delivery_policy);
        row.max_attempts = Set(self.max_attempts);
        row.retry_interval_seconds = Set(self.retry_interval_seconds);
        row.headers = Set(serde_json::to_value(&self.headers).map_err(CommandError::internal)?);
        row.hmac_enabled = Set(self.hmac_enabled);
        row.secure_ssl = Set(self.secure_ssl);
        row.tag = Set(self.tag.clone());
        row.max_concurrency = Set(self.max_concurrency);
        row.rate_limit_per_second = Set(self.rate_limit_per_second);
        row.ordering = Set(self.ordering);
        Ok(())
    }

    /// The draft of a stored subscription, to apply an update to.
    pub fn from_row(outbound: &Outbound, row: &subscription::Model) -> Result<Self, CommandError> {
        Ok(Self {
            owner: crate::owner::owner_of(row),
            name: row.name.clone(),
            webhook_uri: row.webhook_uri.clone(),
            secret: outbound.secrets.open(&row.secret).map_err(CommandError::internal)?,
            is_active: row.is_active,
            subscribe_all: row.subscribe_all,
            events: events_of(row),
            resource: row.resource.clone(),
            filters: serde_json::from_value(row.filters.clone()).unwrap_or_default(),
            delivery_policy: row.delivery_policy,
            max_attempts: row.max_attempts,
            retry_interval_seconds: row.retry_interval_seconds,
            headers: headers_of(row),
            hmac_enabled: row.hmac_enabled,
            secure_ssl: row.secure_ssl,
            tag: row.tag.clone(),
            max_concurrency: row.max_concurrency,
            rate_limit_per_second: row.rate_limit_per_second,
            ordering: row.ordering,
        })
    }
}

fn dedupe(names: &mut Vec<String>) {
    let mut seen = BTreeSet::new();
    names.retain(|name| seen.insert(name.clone()));
}

/// Lower-cases names; refuses invalid names and values and the headers hookbus sets itself.
fn check_headers(headers: &mut Headers) -> Vec<String> {
    let mut errors = Vec::new();
    let mut normalized = Headers::new();
    for (name, values) in std::mem::take(headers) {
        let lower = name.trim().to_ascii_lowercase();
        if reqwest::header::HeaderName::from_bytes(lower.as_bytes()).is_err() {
            errors.push(format!("headers: '{name}' is not a valid header name"));
        } else if RESERVED_HEADERS.contains(&lower.as_str()) {
            errors.push(format!("headers: '{name}' is set by hookbus and cannot be overridden"));
        } else if values.iter().any(|v| reqwest::header::HeaderValue::from_str(v).is_err()) {
            errors.push(format!("headers.{name}: values must be visible ASCII text"));
        } else {
            normalized.entry(lower).or_default().extend(values);
        }
    }
    *headers = normalized;
    errors
}

pub fn events_of(row: &subscription::Model) -> Vec<String> {
    serde_json::from_value(row.events.clone()).unwrap_or_default()
}

pub fn headers_of(row: &subscription::Model) -> Headers {
    serde_json::from_value(row.headers.clone()).unwrap_or_default()
}

/// The filters of a stored subscription, compiled. They were checked when saved.
pub fn filters_of(row: &subscription::Model) -> CompiledFilters {
    serde_json::from_value::<Filters>(row.filters.clone())
        .ok()
        .and_then(|filters| filters.compile().ok())
        .unwrap_or_default()
}

/// Header values that look like credentials are masked on read, like the secret.
fn is_sensitive(name: &str) -> bool {
    ["authorization", "token", "secret", "key", "cookie", "password", "signature"]
        .iter()
        .any(|word| name.contains(word))
}

/// A subscription as reads show it: the secret masked, the last delivery attached.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionView {
    pub id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partner_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    pub name: String,
    pub webhook_uri: String,
    pub secret: String,
    pub is_active: bool,
    pub subscribe_all: bool,
    pub events: Vec<String>,
    pub resource: Option<String>,
    pub filters: Value,
    pub delivery_policy: DeliveryPolicy,
    pub max_attempts: i32,
    pub retry_interval_seconds: i32,
    pub headers: Headers,
    pub hmac_enabled: bool,
    pub secure_ssl: bool,
    pub tag: Option<String>,
    pub suspended: bool,
    pub suspended_at: Option<Timestamp>,
    /// Attempts in flight at once, at most; `null`: the server's default
    /// (`outbound.per_subscription_concurrency`).
    pub max_concurrency: Option<i32>,
    /// Attempts started per second, at most; `null`: no limit.
    pub rate_limit_per_second: Option<i32>,
    pub ordering: Ordering,
    /// Whether its endpoint answers (its circuit breaker).
    pub health: EndpointHealth,
    pub last_delivery: Option<LastDelivery>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// An endpoint's health as reads show it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", tag = "status")]
pub enum EndpointHealth {
    /// Its notifications are sent as usual.
    #[serde(rename = "healthy")]
    Healthy,
    /// It stopped answering (timeouts or connection failures in a row): its notifications wait,
    /// using no attempts, until a probe at `nextProbeAt` gets an answer.
    #[serde(rename = "unhealthy", rename_all = "camelCase")]
    Unhealthy { since: Timestamp, next_probe_at: Timestamp, reason: String },
}

impl From<&crate::lane::Health> for EndpointHealth {
    fn from(health: &crate::lane::Health) -> Self {
        match health {
            crate::lane::Health::Healthy => Self::Healthy,
            crate::lane::Health::Unhealthy { since, next_probe_at, reason, .. } => {
                Self::Unhealthy { since: *since, next_probe_at: *next_probe_at, reason: reason.clone() }
            }
        }
    }
}

/// Sets each view's endpoint health from the lanes.
pub(crate) async fn attach_health(
    db: &impl ConnectionTrait,
    views: &mut [SubscriptionView],
) -> Result<(), CommandError> {
    let ids: Vec<Uuid> = views.iter().map(|view| view.id).collect();
    let health = crate::lane::health_of(db, &ids).await.or_internal()?;
    for view in views {
        if let Some(health) = health.get(&view.id) {
            view.health = EndpointHealth::from(health);
        }
    }
    Ok(())
}

/// The most recent attempt to deliver to a subscription.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastDelivery {
    pub at: Timestamp,
    pub status: String,
    pub http_status: Option<i32>,
}

impl From<subscription::Model> for SubscriptionView {
    fn from(row: subscription::Model) -> Self {
        let headers = headers_of(&row)
            .into_iter()
            .map(|(name, values)| {
                let values =
                    if is_sensitive(&name) { values.iter().map(|_| "****".to_owned()).collect() } else { values };
                (name, values)
            })
            .collect();
        let events = events_of(&row);
        let last_delivery = match (row.last_delivery_at, row.last_delivery_status) {
            (Some(at), Some(status)) => Some(LastDelivery { at, status, http_status: row.last_http_status }),
            _ => None,
        };
        Self {
            id: row.id,
            partner_id: row.partner_id,
            customer_id: row.customer_id,
            name: row.name,
            webhook_uri: row.webhook_uri,
            secret: row.secret_hint,
            is_active: row.is_active,
            subscribe_all: row.subscribe_all,
            events,
            resource: row.resource,
            filters: row.filters,
            delivery_policy: row.delivery_policy,
            max_attempts: row.max_attempts,
            retry_interval_seconds: row.retry_interval_seconds,
            headers,
            hmac_enabled: row.hmac_enabled,
            secure_ssl: row.secure_ssl,
            tag: row.tag,
            suspended: row.suspended,
            suspended_at: row.suspended_at,
            max_concurrency: row.max_concurrency,
            rate_limit_per_second: row.rate_limit_per_second,
            ordering: row.ordering,
            health: EndpointHealth::Healthy,
            last_delivery,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// Replaces the index of event names a subscription wants.
pub(crate) async fn index_events(db: &impl ConnectionTrait, id: Uuid, events: &[String]) -> Result<(), CommandError> {
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
pub(crate) async fn save(
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
        let saved = row.insert(&*txn).await.or_internal()?;
        crate::lane::create(&*txn, saved.id).await.or_internal()?;
        saved
    };
    index_events(&*txn, id, if draft.subscribe_all { &[] } else { &draft.events }).await?;
    txn.commit().await.or_internal()?;
    Ok(saved)
}
