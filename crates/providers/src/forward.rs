//! `forward_to_key`: a route's accepted notifications also go to a router configuration, through
//! the router's own path (admission, the inbound log, idempotency, `respondAsync`), so that admins
//! can script extra handling. The provider's answer does not depend on it: the notifications are
//! published by then, and a retry would only be a duplicate. What the configuration answered is
//! part of the provider's answer and its log entry.

use std::sync::Arc;

use hookbus_configs::ConfigCache;
use hookbus_core::{CommandError, Services};
use hookbus_inbound::{HeaderRedaction, Inbound, Receipt};
use hookbus_router::{InboundRequest, admit, not_found};
use serde_json::{Value, json};

/// Runs configuration `key` on `request` with `body`; returns what it answered, as JSON.
pub(crate) async fn forward(services: &Arc<Services>, key: &str, request: &InboundRequest, body: Value) -> Value {
    let mut answer = match run(services, key, request, body).await {
        Ok(Receipt::Done(Ok(reply))) => {
            json!({"status": 200, "message": reply.message, "data": reply.data.into_value()})
        }
        Ok(Receipt::Accepted(event_id)) => json!({"status": 202, "eventId": event_id}),
        Ok(Receipt::Done(Err(error))) | Err(error) => error.summary(),
    };
    answer["key"] = json!(key);
    answer
}

async fn run(
    services: &Arc<Services>,
    key: &str,
    request: &InboundRequest,
    body: Value,
) -> Result<Receipt, CommandError> {
    let entry = services.get::<ConfigCache>()?.by_key(key).ok_or_else(not_found)?;
    admit(&entry, &request.method, request.ip)?;
    let mut forwarded = request.clone();
    // The provider's secret stays with the fixed route: a script has no use for it.
    services.get::<HeaderRedaction>()?.redact(&mut forwarded.headers);
    forwarded.key = key.to_owned();
    forwarded.raw_body = body.to_string();
    forwarded.body = body;
    Inbound::receive(services, &entry, forwarded).await
}
