//! Trying a subscription's endpoint: a signed `ping` now, or an event's sample payload through the
//! normal pipeline. Both go through the delivery engine's own entry points.

use hookbus_core::{Answered, CommandError, Context, Handler, Permission, UnknownFields, register_command};
use hookbus_store::Store;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    Outbound, Published, catalog, delivery,
    owner::{OwnerFields, find_subscription},
    publish::{Audience, NewEvent, publish_to},
};

/// Sends a signed `ping` event now and reports what the endpoint answered.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PingWebhookSubscriptionCommand {
    pub id: Uuid,
}

/// What the endpoint answered to a ping.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PingResult {
    success: bool,
    status_code: Option<u16>,
    latency_ms: i64,
    error: Option<String>,
    response_excerpt: Option<String>,
}

impl Handler for PingWebhookSubscriptionCommand {
    const PERMISSION: Permission = Permission::SubscriptionsWrite;
    type Answer = PingResult;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        let outbound = ctx.service::<Outbound>()?;
        let row = find_subscription(ctx, self.id, "Ping failed").await?;
        let probe = delivery::ping(outbound, &row).await?;
        let result = PingResult {
            success: probe.status.is_some_and(|code| (200..300).contains(&code)),
            status_code: probe.status,
            latency_ms: probe.duration_ms,
            error: probe.error,
            response_excerpt: probe.excerpt,
        };
        let message = if result.success { "Ping delivered" } else { "Ping failed" };
        Answered::ok(result, message)
    }
}
register_command!("PingWebhookSubscriptionCommand" => PingWebhookSubscriptionCommand);

/// Delivers an event's sample payload, marked `"simulated": true`, to one owner's subscriptions
/// through the normal pipeline.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GenerateSimulatedWebhookCommand {
    pub event_name: String,
    /// `partnerId` or `customerId`.
    #[serde(flatten)]
    pub owner: OwnerFields,
    /// Fields this command does not have; refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown: UnknownFields,
}

impl Handler for GenerateSimulatedWebhookCommand {
    const PERMISSION: Permission = Permission::SubscriptionsWrite;
    type Answer = Published;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        self.unknown.refuse()?;
        let owner = self.owner.required(ctx)?;
        let db = ctx.service::<Store>()?.db();
        let kind = catalog::find(db, &self.event_name).await?.ok_or_else(|| {
            CommandError::validation(format!(
                "eventName: unknown event name '{}' (see GetEventCatalogQuery)",
                self.event_name
            ))
        })?;
        let event = NewEvent { event_name: kind.name, data: kind.sample_payload, ..NewEvent::default() };
        let (store, outbound) = (ctx.service::<Store>()?, ctx.service::<crate::Outbound>()?);
        let published = publish_to(store, outbound, event, Audience::Owner(owner), true).await?;
        Answered::ok(published, "Simulated webhook queued")
    }
}
register_command!("GenerateSimulatedWebhookCommand" => GenerateSimulatedWebhookCommand);
