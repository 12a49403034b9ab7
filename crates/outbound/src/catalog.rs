//! The event catalog: names that may be published and subscribed to. The built-in names are the
//! platform's own and the fixed provider routes'; more are registered at run
//! time with `RegisterEventTypeCommand`.

use hookbus_core::{Answered, CommandError, Context, Handler, Permission, register_command};
use hookbus_store::{DbResultExt, Store};
use schemars::JsonSchema;
use sea_orm::{ConnectionTrait, EntityTrait, IntoActiveModel, QueryOrder};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::entity::event_type;

/// The platform's events.
const PLATFORM: [(&str, &str); 22] = [
    ("WB_Partner_Request", "A partner request was received"),
    ("WB_Application_Created", "A loan application was created"),
    ("WB_Customer_Created", "A customer was created"),
    ("WB_Customer_And_Application_Created", "A customer and an application were created together"),
    ("WB_Application_Current_Process", "An application moved to another process step"),
    ("WB_Application_Status_Changed", "An application's status changed"),
    ("WB_Loan_Created", "A loan was created"),
    ("WB_Bank_Transactions_Refresh", "A customer's bank transactions were refreshed"),
    ("WB_Communication_Sent", "A communication was sent to a customer"),
    ("WB_Loan_Withdrawal_Completed", "A loan withdrawal completed"),
    ("WB_Send_Secondary_Applicant_Notice", "A secondary applicant must be notified"),
    ("WB_Under_Review", "An application is under review"),
    ("WB_Send_Sms", "An SMS must be sent"),
    ("WB_Send_Otp", "A one-time password must be sent"),
    ("WB_Send_Loan_Otp", "A loan one-time password must be sent"),
    ("WB_Application_Cancelled", "An application was cancelled"),
    ("WB_Send_Two_Factor_Code", "A two-factor code must be sent"),
    ("WB_Send_Application_Ready", "An application-ready notice must be sent"),
    ("WB_Application_Ready", "An application is ready"),
    ("WB_Loan_Enabled_Or_Disabled", "A loan was enabled or disabled"),
    ("WB_Loan_Closed", "A loan was closed"),
    ("WB_Loan_Opened", "A loan was opened"),
];

/// Events the fixed provider routes publish: Mono's names as Mono sends them, and Remita's.
const PROVIDERS: [(&str, &str); 16] = [
    ("mono.events.account_connected", "Mono: a customer connected an account"),
    ("mono.events.account_updated", "Mono: an account's data was refreshed"),
    ("mono.events.account_synced", "Mono: an account finished syncing"),
    ("mono.events.reauthorisation_required", "Mono: an account needs the customer to re-authorise"),
    ("mono.events.account_reauthorized", "Mono: an account was re-authorised"),
    ("mono.events.account_unlinked", "Mono: an account was unlinked"),
    ("mono.events.statement_insights", "Mono: statement insights are ready"),
    ("direct_debit.payment_successful", "Mono: a direct debit payment succeeded"),
    ("direct_debit.payment_failed", "Mono: a direct debit payment failed"),
    ("events.mandates.created", "Mono: a mandate was created"),
    ("events.mandates.approved", "Mono: a mandate was approved"),
    ("events.mandates.ready", "Mono: a mandate is ready to debit"),
    ("events.mandates.cancelled", "Mono: a mandate was cancelled"),
    ("events.mandates.paused", "Mono: a mandate was paused"),
    ("remita.payment.notification", "Remita: a payment notification was received for an RRR"),
    ("remita.collection.notification", "Remita: a direct-debit collection result was received"),
];

/// hookbus's own events, about its subscriptions' delivery. Only hookbus publishes them.
pub(crate) const OPERATIONS: [(&str, &str); 4] = [
    (UNHEALTHY, "hookbus: a subscription's endpoint stopped answering; its notifications wait for a probe"),
    (HEALTHY, "hookbus: a subscription's endpoint answers again; its waiting notifications are sent"),
    (SUSPENDED, "hookbus: a subscription was suspended; new notifications are diverted"),
    (EXPIRED, "hookbus: a notification used all its attempts without being delivered"),
];

pub(crate) const UNHEALTHY: &str = "hookbus.subscription.unhealthy";
pub(crate) const HEALTHY: &str = "hookbus.subscription.healthy";
pub(crate) const SUSPENDED: &str = "hookbus.subscription.suspended";
pub(crate) const EXPIRED: &str = "hookbus.notification.expired";

/// The prefix of hookbus's own event names: neither publishable nor registrable.
pub(crate) const OPERATIONS_PREFIX: &str = "hookbus.";

/// The name a `PingWebhookSubscriptionCommand` sends; not publishable.
pub const PING: &str = "ping";

/// One entry of the catalog.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventType {
    pub name: String,
    pub description: String,
    pub sample_payload: Value,
    pub built_in: bool,
}

fn built_in(name: &str) -> Option<EventType> {
    PLATFORM.iter().chain(PROVIDERS.iter()).chain(OPERATIONS.iter()).find(|(known, _)| *known == name).map(
        |(name, description)| EventType {
            name: (*name).to_owned(),
            description: (*description).to_owned(),
            sample_payload: sample_for(name),
            built_in: true,
        },
    )
}

/// A plausible payload for a built-in event, sent by `GenerateSimulatedWebhookCommand`.
fn sample_for(name: &str) -> Value {
    let id = "00000000-0000-0000-0000-000000000001";
    match name {
        n if n.starts_with("WB_Customer") => {
            json!({"customerId": id, "firstName": "Ada", "lastName": "Obi", "email": "ada@example.com"})
        }
        n if n.starts_with("WB_Loan") => json!({"loanId": id, "amount": 250000, "currency": "NGN", "status": "Open"}),
        n if n.starts_with("WB_Application") || n == "WB_Under_Review" => {
            json!({"applicationId": id, "status": "UnderReview", "product": "Personal loan"})
        }
        n if n.starts_with("WB_Send") => json!({"customerId": id, "channel": "sms", "template": n}),
        n if n.starts_with("remita.") => json!({"rrr": "280007021192", "amount": 5000, "orderRef": "ORD-1"}),
        n if n.contains("mandate") || n.starts_with("direct_debit") => {
            json!({"id": "mmc_6823d1d2b1b5a6b7", "status": "approved", "amount": 500000})
        }
        n if n.starts_with("mono.") => json!({"account": {"_id": "5f171a530295e231abca1153"}}),
        n if n.starts_with(OPERATIONS_PREFIX) => json!({
            "subscriptionId": id,
            "partnerId": id,
            "customerId": null,
            "webhookUri": "https://partner.example.com/hooks",
            "reason": "timed out: operation timed out",
            "counts": {"consecutiveFailures": 5},
        }),
        _ => json!({"id": id}),
    }
}

/// The entry for `name`, built-in or registered; `None` when the name is unknown.
pub async fn find(db: &impl ConnectionTrait, name: &str) -> Result<Option<EventType>, CommandError> {
    if let Some(known) = built_in(name) {
        return Ok(Some(known));
    }
    let row = event_type::Entity::find_by_id(name.to_owned()).one(db).await.or_internal()?;
    Ok(row.map(EventType::from))
}

impl From<event_type::Model> for EventType {
    fn from(row: event_type::Model) -> Self {
        Self {
            name: row.name,
            description: row.description,
            sample_payload: row.sample_payload.unwrap_or_else(|| json!({})),
            built_in: false,
        }
    }
}

/// The built-in entries: the platform's, the provider routes' and hookbus's own.
pub fn built_ins() -> Vec<EventType> {
    PLATFORM.iter().chain(PROVIDERS.iter()).chain(OPERATIONS.iter()).filter_map(|(name, _)| built_in(name)).collect()
}

/// Every entry, built-in first, then the registered ones by name.
pub async fn all(db: &impl ConnectionTrait) -> Result<Vec<EventType>, CommandError> {
    let mut types = built_ins();
    let custom = event_type::Entity::find().order_by_asc(event_type::Column::Name).all(db).await.or_internal()?;
    types.extend(custom.into_iter().map(EventType::from));
    Ok(types)
}

/// Every name in the catalog, built-in and registered.
pub async fn all_names(db: &impl ConnectionTrait) -> Result<Vec<String>, CommandError> {
    let mut names: Vec<String> =
        PLATFORM.iter().chain(PROVIDERS.iter()).chain(OPERATIONS.iter()).map(|(name, _)| (*name).to_owned()).collect();
    let custom = event_type::Entity::find().order_by_asc(event_type::Column::Name).all(db).await.or_internal()?;
    names.extend(custom.into_iter().map(|row| row.name));
    Ok(names)
}

/// Fails with a 422 naming `field` for each name the catalog does not know.
pub async fn ensure_known(db: &impl ConnectionTrait, field: &str, names: &[String]) -> Result<(), CommandError> {
    let mut errors = Vec::new();
    for name in names {
        if find(db, name).await?.is_none() {
            errors.push(format!("{field}: unknown event name '{name}' (see GetEventCatalogQuery)"));
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(CommandError::Validation(errors)) }
}

/// Adds a custom event type to the catalog.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterEventTypeCommand {
    pub name: String,
    pub description: String,
    #[serde(default)]
    pub sample_payload: Option<Value>,
}

impl Handler for RegisterEventTypeCommand {
    const PERMISSION: Permission = Permission::EventsPublish;
    type Answer = EventType;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        let name = self.name.trim();
        let mut errors = Vec::new();
        if name.is_empty() || name.len() > 200 {
            errors.push("name: must be 1 to 200 characters".to_owned());
        } else if name == "*" || name == PING || name.chars().any(|c| c.is_whitespace() || c == '*') {
            errors.push("name: may not contain spaces or '*', and 'ping' is reserved".to_owned());
        } else if name.starts_with(OPERATIONS_PREFIX) {
            errors.push(format!("name: names starting with '{OPERATIONS_PREFIX}' are hookbus's own events"));
        }
        if self.description.trim().is_empty() {
            errors.push("description: must not be empty".to_owned());
        }
        if !errors.is_empty() {
            return Err(CommandError::Validation(errors));
        }
        let db = ctx.service::<Store>()?.db();
        if find(db, name).await?.is_some() {
            return Err(CommandError::conflict("Registration failed", format!("Event type '{name}' already exists")));
        }
        let row = event_type::Model {
            name: name.to_owned(),
            description: self.description.trim().to_owned(),
            sample_payload: self.sample_payload.clone(),
            created_at: hookbus_core::now(),
        };
        event_type::Entity::insert(row.clone().into_active_model())
            .exec(db)
            .await
            .conflict_on_unique("Registration failed", &format!("Event type '{name}' already exists"))?;
        Answered::ok(EventType::from(row), "Event type registered successfully")
    }
}
register_command!("RegisterEventTypeCommand" => RegisterEventTypeCommand);

/// Lists every event name that may be published and subscribed to.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetEventCatalogQuery {}

impl Handler for GetEventCatalogQuery {
    const PERMISSION: Permission = Permission::SubscriptionsRead;
    type Answer = Vec<EventType>;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        let types = all(ctx.service::<Store>()?.db()).await?;
        Answered::ok(types, "Event catalog retrieved successfully")
    }
}
register_command!("GetEventCatalogQuery" => GetEventCatalogQuery);
