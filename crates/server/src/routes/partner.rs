//! The partner API under `/api/Webhook/`: partners manage their own subscriptions over plain
//! REST. Every route runs a bus command (the same command, with the same permission and the same
//! owner scoping, as `POST /api/bpm/cmd`); this module only maps the partner's shapes onto the
//! command's fields and the command's answer onto the partner's.
//!
//! A token bound to an owner acts for that owner only; a token bound to none names the owner with
//! `partnerId` or `customerId`. Successes answer as the partner API promises: an empty 200, or
//! plain JSON for the reads. Errors answer the bus's envelope with its status.

use std::time::Instant;

use actix_web::{HttpRequest, HttpResponse, web};
use hookbus_core::{CommandError, Context, Reply, Timestamp, parse_named_command, run_command};
use hookbus_tokens::TokenAuthority;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::{bus::method_not_allowed, only_get};
use crate::{auth::authenticate, body::read_limited, envelope::error_response, state::AppState};

/// The prefix of every partner route.
pub const PREFIX: &str = "/api/Webhook";

/// The owner a partner request acts for.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Owner {
    /// The partner: a GUID.
    #[serde(default)]
    #[schemars(with = "Option<Uuid>")]
    pub partner_id: Option<Value>,
    /// The customer.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub customer_id: Option<Value>,
}

impl Owner {
    /// A token bound to an owner that names another: the partner API answers as for something
    /// that does not exist (404), as it does for another owner's subscription.
    fn check(&self, bound: Option<&hookbus_core::Owner>) -> Result<(), CommandError> {
        let Some(bound) = bound else { return Ok(()) };
        let (partner, customer) = match bound {
            hookbus_core::Owner::Partner(id) => (Some(id.to_string()), None),
            hookbus_core::Owner::Customer(id) => (None, Some(id.clone())),
        };
        let absent = |named: &Option<Value>| named.as_ref().is_none_or(Value::is_null);
        let partner_differs = !absent(&self.partner_id) && !same_partner(self.partner_id.as_ref(), partner.as_deref());
        let customer_differs =
            !absent(&self.customer_id) && !same_customer(self.customer_id.as_ref(), customer.as_deref());
        if partner_differs || customer_differs {
            return Err(not_owned());
        }
        Ok(())
    }

    fn names_one(&self) -> bool {
        let named = |value: &Option<Value>| value.as_ref().is_some_and(|value| !value.is_null());
        named(&self.partner_id) || named(&self.customer_id)
    }

    fn into_fields(self) -> Map<String, Value> {
        let mut fields = Map::new();
        if let Some(partner) = self.partner_id {
            fields.insert("partnerId".into(), partner);
        }
        if let Some(customer) = self.customer_id {
            fields.insert("customerId".into(), customer);
        }
        fields
    }
}

/// Whether a named partner id is `own` (GUIDs compare without regard to case).
fn same_partner(named: Option<&Value>, own: Option<&str>) -> bool {
    match (named.and_then(Value::as_str), own) {
        (Some(named), Some(own)) => named.trim().eq_ignore_ascii_case(own),
        _ => false,
    }
}

/// Whether a named customer id is `own`.
fn same_customer(named: Option<&Value>, own: Option<&str>) -> bool {
    match (named.and_then(Value::as_str), own) {
        (Some(named), Some(own)) => named.trim() == own,
        _ => false,
    }
}

/// A subscription as partners send it.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PartnerSubscription {
    /// The owner's subscription to change; absent or the nil GUID: a new subscription.
    #[serde(default)]
    pub id: Option<Uuid>,
    /// Where events are POSTed: a publicly reachable HTTPS URL.
    #[serde(default)]
    pub webhook_uri: Option<String>,
    /// The signing secret; omitted on registration: one is generated.
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub is_active: Option<bool>,
    /// Event names; omitted on registration: every event.
    #[serde(default)]
    pub webhooks: Option<Vec<String>>,
    #[serde(flatten)]
    pub owner: Owner,
}

impl PartnerSubscription {
    /// The subscription named, unless absent or nil.
    fn existing(&self) -> Option<Uuid> {
        self.id.filter(|id| !id.is_nil())
    }
}

/// `update-webhook-uri`'s body.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewUri {
    pub webhook_uri: String,
    #[serde(flatten)]
    pub owner: Owner,
}

/// `generate-simulated-webhook`'s body.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Simulation {
    /// An event of the catalog; its sample payload is sent.
    pub event_name: String,
    #[serde(flatten)]
    pub owner: Owner,
}

/// `update-all`'s body: the owner only.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OwnerOnly {
    #[serde(flatten)]
    pub owner: Owner,
}

/// A subscription as `GET /api/Webhook/subscription` shows it.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartnerSubscriptionView {
    pub id: Uuid,
    pub webhook_uri: String,
    /// Masked: `whsec_****abcd`.
    pub secret: String,
    /// The event names; empty with `subscribeAll`.
    pub webhooks: Vec<String>,
    /// Every event, present and future.
    pub subscribe_all: bool,
    pub is_active: bool,
    /// `Delivered`, `Failed`, `Expired`, ... of the last attempt; `null` before the first.
    pub last_delivery_status: Option<String>,
    pub last_delivery_at: Option<Timestamp>,
}

impl PartnerSubscriptionView {
    fn of(view: &Value) -> Option<Self> {
        let text = |field: &str| view[field].as_str().map(str::to_owned);
        Some(Self {
            id: text("id")?.parse().ok()?,
            webhook_uri: text("webhookUri")?,
            secret: text("secret")?,
            webhooks: serde_json::from_value(view["events"].clone()).ok()?,
            subscribe_all: view["subscribeAll"].as_bool()?,
            is_active: view["isActive"].as_bool()?,
            last_delivery_status: view["lastDelivery"]["status"].as_str().map(str::to_owned),
            last_delivery_at: serde_json::from_value(view["lastDelivery"]["at"].clone()).ok(),
        })
    }
}

pub fn register(config: &mut web::ServiceConfig) {
    config.service(
        web::scope(PREFIX)
            .service(
                web::resource("/register")
                    .route(web::post().to(register_subscription))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/unregister")
                    .route(web::post().to(unregister))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/update-all")
                    .route(web::post().to(update_all))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/update-webhook-uri")
                    .route(web::post().to(update_webhook_uri))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/generate-simulated-webhook")
                    .route(web::post().to(simulate))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/get-registered-webhooks")
                    .route(web::get().to(registered_webhooks))
                    .default_service(web::to(only_get)),
            )
            .service(
                web::resource("/subscription").route(web::get().to(subscriptions)).default_service(web::to(only_get)),
            )
            .default_service(web::to(not_found)),
    );
}

/// `POST /api/Webhook/register`: a new subscription, or (with `id`) a change to one of the
/// owner's.
async fn register_subscription(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    answer_empty(async {
        let body: PartnerSubscription = read_body(&request, payload, &state).await?;
        let existing = body.existing();
        let mut fields = Map::new();
        if let Some(uri) = body.webhook_uri {
            fields.insert("webhookUri".into(), Value::String(uri));
        }
        if let Some(secret) = body.secret {
            fields.insert("secret".into(), Value::String(secret));
        }
        if let Some(active) = body.is_active {
            fields.insert("isActive".into(), Value::Bool(active));
        }
        if let Some(events) = body.webhooks {
            fields.insert("events".into(), json!(events));
        }
        match existing {
            None => {
                require_owner(&request, &state, &body.owner).await?;
                fields.extend(body.owner.into_fields());
                run(&request, &state, "CreateWebhookSubscriptionCommand", fields).await
            }
            Some(id) => {
                owned_by(&request, &state, id, body.owner).await?;
                fields.insert("id".into(), json!(id));
                run(&request, &state, "UpdateWebhookSubscriptionCommand", fields).await
            }
        }
    })
    .await
}

/// `POST /api/Webhook/unregister`: the listed events off the owner's subscriptions (or the one
/// with `id`); with none listed, the subscriptions are deactivated.
async fn unregister(request: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    answer_empty(async {
        let body: PartnerSubscription = read_body(&request, payload, &state).await?;
        let existing = body.existing();
        if let Some(id) = existing {
            owned_by(&request, &state, id, body.owner.clone()).await?;
        }
        let mut fields = body.owner.into_fields();
        if let Some(id) = existing {
            fields.insert("id".into(), json!(id));
        }
        if let Some(events) = body.webhooks {
            fields.insert("events".into(), json!(events));
        }
        run(&request, &state, "UnregisterWebhookEventsCommand", fields).await
    })
    .await
}

/// `POST /api/Webhook/update-all`: every subscription of the owner to every event.
async fn update_all(request: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    answer_empty(async {
        let body: OwnerOnly = read_body(&request, payload, &state).await?;
        run(&request, &state, "SubscribeAllEventsCommand", body.owner.into_fields()).await
    })
    .await
}

/// `POST /api/Webhook/update-webhook-uri`: a new URI for every subscription of the owner.
async fn update_webhook_uri(request: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    answer_empty(async {
        let body: NewUri = read_body(&request, payload, &state).await?;
        let mut fields = body.owner.into_fields();
        fields.insert("webhookUri".into(), Value::String(body.webhook_uri));
        run(&request, &state, "UpdateWebhookUriCommand", fields).await
    })
    .await
}

/// `POST /api/Webhook/generate-simulated-webhook`: the event's sample payload to the owner's
/// subscriptions, marked simulated.
async fn simulate(request: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    answer_empty(async {
        let body: Simulation = read_body(&request, payload, &state).await?;
        let mut fields = body.owner.into_fields();
        fields.insert("eventName".into(), Value::String(body.event_name));
        run(&request, &state, "GenerateSimulatedWebhookCommand", fields).await
    })
    .await
}

/// `GET /api/Webhook/get-registered-webhooks`: the event names the owner is subscribed to.
async fn registered_webhooks(request: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    answer_json(async {
        let owner: Owner = read_query(&request)?;
        let reply = run(&request, &state, "GetRegisteredWebhooksQuery", owner.into_fields()).await?;
        Ok(reply.data.into_value())
    })
    .await
}

/// `GET /api/Webhook/subscription`: the owner's subscriptions, secrets masked, with their last
/// delivery.
async fn subscriptions(request: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    answer_json(async {
        let owner: Owner = read_query(&request)?;
        require_owner(&request, &state, &owner).await?;
        let mut fields = owner.into_fields();
        fields.insert("pageSize".into(), json!(100));
        let reply = run(&request, &state, "GetWebhookSubscriptionListQuery", fields).await?;
        let page = reply.data.into_value();
        let views: Vec<PartnerSubscriptionView> = page["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|view| {
                PartnerSubscriptionView::of(view)
                    .ok_or_else(|| CommandError::internal(std::io::Error::other("a subscription view lacks a field")))
            })
            .collect::<Result<_, _>>()?;
        serde_json::to_value(views).map_err(CommandError::internal)
    })
    .await
}

/// Any other path under the prefix.
async fn not_found() -> HttpResponse {
    error_response(&CommandError::not_found("Not found", "No partner route at this path"))
}

/// 404 unless subscription `id` is visible to the caller and, when the request names an owner,
/// belongs to it.
async fn owned_by(request: &HttpRequest, state: &AppState, id: Uuid, owner: Owner) -> Result<(), CommandError> {
    let reply = run(request, state, "GetWebhookSubscriptionQuery", Map::from_iter([("id".into(), json!(id))])).await;
    let view = reply.map_err(|_| not_owned())?.data.into_value();
    let partner_ok = owner.partner_id.is_none_or(|named| same_partner(Some(&named), view["partnerId"].as_str()));
    let customer_ok = owner.customer_id.is_none_or(|named| same_customer(Some(&named), view["customerId"].as_str()));
    if partner_ok && customer_ok { Ok(()) } else { Err(not_owned()) }
}

/// A partner request acts for an owner: the token's, or the one it names. (On the bus an unbound
/// token may also manage the platform's own subscriptions, which have none.)
async fn require_owner(request: &HttpRequest, state: &AppState, owner: &Owner) -> Result<(), CommandError> {
    if owner.names_one() {
        return Ok(());
    }
    let principal = authenticate(request, state.services.get::<TokenAuthority>()?).await?;
    if principal.owner.is_none() {
        return Err(CommandError::validation("partnerId: partnerId or customerId is required"));
    }
    Ok(())
}

fn not_owned() -> CommandError {
    CommandError::not_found("Subscription not found", "Subscription not found")
}

/// Runs bus command `name` with `fields` for the request's bearer token.
async fn run(
    request: &HttpRequest,
    state: &AppState,
    name: &str,
    fields: Map<String, Value>,
) -> Result<Reply, CommandError> {
    let principal = authenticate(request, state.services.get::<TokenAuthority>()?).await?;
    let named = Owner { partner_id: fields.get("partnerId").cloned(), customer_id: fields.get("customerId").cloned() };
    named.check(principal.owner.as_ref())?;
    let command = parse_named_command(name, &fields)?;
    let ctx = Context::new(principal, state.services.clone());
    let started = Instant::now();
    let result = run_command(command.as_ref(), &ctx).await;
    state.metrics.record_command(command.name(), result.is_ok(), started.elapsed());
    result
}

/// The body as `T`: not JSON is a 400, a field that does not fit a 422 naming it.
async fn read_body<T: DeserializeOwned>(
    request: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<T, CommandError> {
    // The caller is checked before the body is read.
    authenticate(request, state.services.get::<TokenAuthority>()?).await?;
    let bytes = read_limited(request, payload, state.body_limits).await?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| CommandError::InvalidBody(format!("body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(CommandError::InvalidBody("body must be a JSON object".into()));
    }
    fields_of(value)
}

/// The query string as `T`.
fn read_query<T: DeserializeOwned>(request: &HttpRequest) -> Result<T, CommandError> {
    let pairs: Map<String, Value> = url::form_urlencoded::parse(request.query_string().as_bytes())
        // `?customerId=` names nothing, as a form field left empty does.
        .filter(|(_, value)| !value.trim().is_empty())
        .map(|(name, value)| (name.into_owned(), Value::String(value.into_owned())))
        .collect();
    fields_of(Value::Object(pairs))
}

fn fields_of<T: DeserializeOwned>(value: Value) -> Result<T, CommandError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        CommandError::validation(if path == "." { inner } else { format!("{path}: {inner}") })
    })
}

/// An empty 200, or the error's envelope.
async fn answer_empty(work: impl Future<Output = Result<Reply, CommandError>>) -> HttpResponse {
    match work.await {
        Ok(_) => HttpResponse::Ok().finish(),
        Err(error) => error_response(&error),
    }
}

/// Plain JSON, or the error's envelope.
async fn answer_json(work: impl Future<Output = Result<Value, CommandError>>) -> HttpResponse {
    match work.await {
        Ok(value) => HttpResponse::Ok().json(value),
        Err(error) => error_response(&error),
    }
}
