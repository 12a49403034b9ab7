//! Owners: a subscription belongs to a partner (a GUID) or a customer, and a token bound to an
//! owner sees and changes only that owner's subscriptions and notifications; any other looks as if
//! it did not exist.
//!
//! Commands that name an owner flatten [`OwnerFields`] into their fields; the scoping of rows to
//! the caller's owner is here, in one place.

use hookbus_core::{CommandError, Context, Owner};
use hookbus_store::{DbResultExt, Store};
use schemars::JsonSchema;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter};
use serde::{Deserialize, Deserializer, de::Error as _};
use uuid::Uuid;

use crate::entity::subscription;

/// What a missing or hidden subscription answers.
pub(crate) const NOT_FOUND: &str = "Subscription not found";

/// The owner a command names: `partnerId` (a GUID) or `customerId`, never both. A token bound to
/// an owner may leave both out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OwnerFields {
    /// The partner: a GUID.
    #[serde(default, deserialize_with = "partner_id")]
    pub partner_id: Option<Uuid>,
    /// The customer.
    #[serde(default, deserialize_with = "customer_id")]
    pub customer_id: Option<String>,
}

/// Errors name the field: inside a flattened group, serde's own do not.
fn partner_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Uuid>, D::Error> {
    let text = Option::<serde_json::Value>::deserialize(deserializer)?;
    match text {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(text)) => Uuid::parse_str(text.trim())
            .map(Some)
            .map_err(|_| D::Error::custom(format!("partnerId: '{text}' is not a GUID"))),
        Some(other) => Err(D::Error::custom(format!("partnerId: must be a GUID string, not {other}"))),
    }
}

fn customer_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    match Option::<serde_json::Value>::deserialize(deserializer)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(D::Error::custom(format!("customerId: must be a string, not {other}"))),
    }
}

impl OwnerFields {
    /// The owner named, if any; both is a 422.
    pub fn named(&self) -> Result<Option<Owner>, CommandError> {
        match (self.partner_id, &self.customer_id) {
            (Some(_), Some(_)) => Err(CommandError::validation("partnerId: give partnerId or customerId, not both")),
            (Some(partner), None) => Ok(Some(Owner::Partner(partner))),
            (None, Some(customer)) => Ok(Some(Owner::Customer(customer.clone()))),
            (None, None) => Ok(None),
        }
    }

    /// The owner the command acts for: the one named, checked against the caller's binding (a
    /// bound caller may leave it out; naming another is a 403).
    pub fn for_caller(&self, ctx: &Context) -> Result<Option<Owner>, CommandError> {
        match (&ctx.principal.owner, self.named()?) {
            (Some(bound), Some(named)) if *bound != named => {
                Err(CommandError::Denied("this token is bound to another owner".to_owned()))
            }
            (Some(bound), _) => Ok(Some(bound.clone())),
            (None, named) => Ok(named),
        }
    }

    /// As [`for_caller`](Self::for_caller), for commands that need an owner (422 without one).
    pub fn required(&self, ctx: &Context) -> Result<Owner, CommandError> {
        self.for_caller(ctx)?.ok_or_else(|| CommandError::validation("partnerId: partnerId or customerId is required"))
    }
}

/// The subscriptions of `owner`.
pub(crate) fn owner_condition(owner: &Owner) -> Condition {
    match owner {
        Owner::Partner(id) => Condition::all().add(subscription::Column::PartnerId.eq(*id)),
        Owner::Customer(id) => Condition::all().add(subscription::Column::CustomerId.eq(id.as_str())),
    }
}

/// The owner of a stored subscription.
pub(crate) fn owner_of(row: &subscription::Model) -> Option<Owner> {
    match (row.partner_id, &row.customer_id) {
        (Some(partner), _) => Some(Owner::Partner(partner)),
        (None, Some(customer)) => Some(Owner::Customer(customer.clone())),
        (None, None) => None,
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
