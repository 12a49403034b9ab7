//! Remita's direct-debit collection notification: the result of a debit on a mandate. No
//! public schema exists, so the body may be one object or an array of them; each needs a
//! reference (`transactionRef`, `requestId` or `rrr`, the first present), `mandateId`, `amount`
//! and `status`, is deduplicated by its reference, and keeps every other field.

use hookbus_core::CommandError;
use serde_json::Value;

use crate::notification::{BodyItem, Fields, Notification, collected, items};

pub(crate) const EVENT_NAME: &str = "remita.collection.notification";

/// Where a notification's reference may be, in order of preference.
const REFERENCE_FIELDS: [&str; 3] = ["transactionRef", "requestId", "rrr"];

pub(crate) fn parse(body: &Value, max_items: usize) -> Result<Vec<Notification>, CommandError> {
    let items = items(body, true, max_items)?;
    let mut errors = Vec::new();
    let mut notifications = Vec::with_capacity(items.len());
    for BodyItem { prefix, object } in items {
        let mut fields = Fields::new(object, &prefix, &mut errors);
        let reference = fields.required_id_of(&REFERENCE_FIELDS);
        // The other references are kept as they came; they must still be identifiers.
        for name in REFERENCE_FIELDS.iter().filter(|name| reference.as_ref().is_some_and(|(chosen, _)| chosen != *name))
        {
            fields.optional_id(name);
        }
        let mandate = fields.required_id("mandateId");
        let amount = fields.required_amount("amount");
        let status = fields.required_text("status");
        let (Some(reference), Some(_), Some(_), Some(_)) = (reference, mandate, amount, status) else {
            continue;
        };
        notifications.push(Notification::keyed_by_reference(EVENT_NAME, reference, object, object.clone()));
    }
    collected(notifications, errors)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_object_or_an_array_each_item_with_its_reference() {
        let one = json!({"requestId": "REQ-1", "mandateId": 2001, "amount": 5000, "status": "SUCCESSFUL", "x": 1});
        let parsed = parse(&one, 10).unwrap_or_default();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].reference, ("requestId", "REQ-1".to_owned()));
        assert_eq!(parsed[0].event.data["x"], json!(1));

        let many = json!([
            {"transactionRef": "T-1", "rrr": "999", "mandateId": "M1", "amount": "10.00", "status": "FAILED"},
            {"rrr": "998", "mandateId": "M1", "amount": 10, "status": "SUCCESSFUL"},
        ]);
        let keys: Vec<String> = parse(&many, 10).unwrap_or_default().into_iter().map(|n| n.dedupe_key).collect();
        assert_eq!(keys, ["T-1", "998"]);
    }

    #[test]
    fn missing_fields_are_named() {
        let Err(CommandError::Validation(errors)) = parse(&json!({"amount": "lots"}), 10) else {
            panic!("expected a 422")
        };
        assert_eq!(
            errors,
            [
                "transactionRef, requestId or rrr is required",
                "mandateId is required",
                "amount must be a decimal number",
                "status is required",
            ]
        );
    }
}
