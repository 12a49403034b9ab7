//! `TestSubscriptionFilterCommand`: whether an event would reach a subscription, and which rule
//! decided, without publishing anything.

use hookbus_core::{Answered, CommandError, Context, Handler, Permission, register_command};
use hookbus_store::Store;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{events_of, filters_of};
use crate::{
    catalog,
    filter::{Filters, Refusal},
    owner::find_subscription,
};

/// Whether `event` would be delivered to a subscription (by `id`, or the unsaved `events`,
/// `resource` and `filters` of one), and which rule decided. Nothing is published.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TestSubscriptionFilterCommand {
    #[serde(default)]
    pub id: Option<Uuid>,
    /// Unsaved: the event names; absent: every event.
    #[serde(default)]
    pub events: Option<Vec<String>>,
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub filters: Option<Filters>,
    pub event: SampleEvent,
}

/// An event as `PublishEventCommand` takes it.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SampleEvent {
    pub event_name: String,
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub data: Value,
    #[serde(default)]
    pub changed_attributes: Option<Vec<String>>,
}

/// The decision.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FilterDecision {
    pub delivered: bool,
    /// The rule that decided: `isActive`, `events`, `resource`, `filters.attributes`,
    /// `filters.match[i]`, or `all` when every rule passed.
    pub decided_by: String,
    pub reason: String,
    /// The subscription is suspended: a matching event would be kept (`Diverted`) and sent once it
    /// is unsuspended.
    pub suspended: bool,
}

impl Handler for TestSubscriptionFilterCommand {
    const PERMISSION: Permission = Permission::SubscriptionsRead;
    type Answer = FilterDecision;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        let db = ctx.service::<Store>()?.db();
        let event = &self.event;
        catalog::ensure_known(db, "event.eventName", std::slice::from_ref(&event.event_name)).await?;
        let (active, suspended, subscribe_all, events, resource, filters) = match self.id {
            Some(id) => {
                if self.events.is_some() || self.resource.is_some() || self.filters.is_some() {
                    return Err(CommandError::validation("id: give id or events, resource and filters, not both"));
                }
                let row = find_subscription(ctx, id, "Test failed").await?;
                let events = events_of(&row);
                let filters = filters_of(&row);
                (row.is_active, row.suspended, row.subscribe_all, events, row.resource, filters)
            }
            None => {
                let filters = self.filters.clone().unwrap_or_default().compile().map_err(CommandError::Validation)?;
                let events = self.events.clone().unwrap_or_default();
                (true, false, self.events.is_none(), events, self.resource.clone(), filters)
            }
        };
        let decide = |delivered: bool, decided_by: &str, reason: String| FilterDecision {
            delivered,
            decided_by: decided_by.to_owned(),
            reason,
            suspended,
        };
        let decision = if !active {
            decide(false, "isActive", "the subscription is inactive".into())
        } else if !subscribe_all && !events.contains(&event.event_name) {
            decide(false, "events", format!("'{}' is not among the subscription's events", event.event_name))
        } else if let Some(wanted) = resource
            .as_ref()
            .filter(|wanted| event.resource.as_ref().is_none_or(|given| !wanted.eq_ignore_ascii_case(given)))
        {
            decide(false, "resource", format!("the subscription takes only events about '{wanted}'"))
        } else {
            let document = json!({"eventName": event.event_name, "resource": event.resource, "data": event.data});
            match filters.refusal(&document, event.changed_attributes.as_deref()) {
                Some(Refusal::Attributes) => decide(
                    false,
                    "filters.attributes",
                    "no changed attribute is under any of the subscription's attribute paths".into(),
                ),
                Some(Refusal::Match(i)) => {
                    decide(false, &format!("filters.match[{i}]"), "the JSONPath selects nothing in the event".into())
                }
                None => decide(true, "all", "every rule passed".into()),
            }
        };
        Answered::ok(decision, "Filter tested")
    }
}
register_command!("TestSubscriptionFilterCommand" => TestSubscriptionFilterCommand);
