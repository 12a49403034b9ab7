//! Mono's callback: `{"event": "...", "data": {...}}`, some events also carrying
//! `event_id` and `timestamp`. Each callback is one event, published under Mono's own name with
//! Mono's `data` as its data.

use hookbus_core::CommandError;
use hookbus_router::json_kind;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::{
    notification::{Fields, Notification},
    publish::NewEvent,
};

/// The header Mono sends the shared secret in.
pub(crate) const SECRET_HEADER: &str = "mono-webhook-secret";

pub(crate) fn parse(body: &Value) -> Result<Vec<Notification>, CommandError> {
    let Value::Object(object) = body else {
        return Err(CommandError::validation(format!("body: must be a JSON object, not {}", json_kind(body))));
    };
    let mut errors = Vec::new();
    let mut fields = Fields::new(object, "", &mut errors);
    let event = fields.required_text("event");
    let data = fields.required_object("data");
    // An empty id identifies nothing: such an event is deduplicated by its content.
    let event_id = fields.optional_id("event_id").filter(|id| !id.is_empty());
    fields.optional_id("timestamp");
    let (Some(event), Some(data)) = (event, data) else {
        return Err(CommandError::Validation(errors));
    };
    if !errors.is_empty() {
        return Err(CommandError::Validation(errors));
    }
    let dedupe_key = match event_id {
        Some(id) => format!("event_id:{id}"),
        None => format!("{event}:{}:{}", subject(data), body_hash(body)),
    };
    Ok(vec![Notification {
        reference: ("event", event.clone()),
        dedupe_key,
        original: body.clone(),
        event: NewEvent { event_name: event, data: Value::Object(data.clone()), ..NewEvent::default() },
    }])
}

/// What an event is about, for deduplicating events without `event_id`: `data.id` (a payment, a
/// mandate), else `data.account._id` (an account event), else nothing.
fn subject(data: &Map<String, Value>) -> String {
    let id = data.get("id").or_else(|| data.get("account").and_then(|account| account.get("_id")));
    match id {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// SHA-256 of the body's compact JSON: a retry that only changed white space is the same event.
fn body_hash(body: &Value) -> String {
    hex::encode(Sha256::digest(body.to_string().as_bytes()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn key(body: Value) -> String {
        parse(&body).ok().and_then(|mut items| items.pop()).map(|n| n.dedupe_key).unwrap_or_default()
    }

    #[test]
    fn event_id_decides_when_present_else_name_subject_and_body() {
        let with_id = json!({"event": "direct_debit.payment_successful", "event_id": "evt_1", "data": {"id": "txd_1"}});
        assert_eq!(key(with_id), "event_id:evt_1");
        let account = json!({"event": "mono.events.account_updated", "data": {"account": {"_id": "acc_9"}}});
        assert!(key(account.clone()).starts_with("mono.events.account_updated:acc_9:"));
        let changed =
            json!({"event": "mono.events.account_updated", "data": {"account": {"_id": "acc_9", "balance": 1}}});
        assert_ne!(key(account), key(changed));
    }

    #[test]
    fn an_empty_event_id_identifies_nothing() {
        let first = json!({"event": "events.mandates.ready", "event_id": "", "data": {"id": "mmc_1"}});
        let second = json!({"event": "events.mandates.ready", "event_id": "", "data": {"id": "mmc_2"}});
        assert!(key(first.clone()).starts_with("events.mandates.ready:mmc_1:"), "{}", key(first.clone()));
        assert_ne!(key(first), key(second), "two events, not one and a duplicate");
    }

    #[test]
    fn bad_bodies_name_their_fields() {
        let errors = |body: Value| match parse(&body) {
            Err(CommandError::Validation(errors)) => errors,
            other => vec![format!("{other:?}")],
        };
        assert_eq!(errors(json!({"data": {}})), ["event is required"]);
        assert_eq!(
            errors(json!({"event": 5, "data": []})),
            ["event must be a string, not a number", "data must be an object, not an array"]
        );
        assert_eq!(
            errors(json!({"event": "x", "data": {}, "timestamp": {}})),
            ["timestamp must be a string or a number, not an object"]
        );
        assert_eq!(errors(json!([1])), ["body: must be a JSON object, not an array"]);
    }
}
