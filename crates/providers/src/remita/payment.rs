//! Remita's payment notification: a JSON array of payments, each deduplicated by its
//! `rrr` (Remita Retrieval Reference). Remita spells the channel `channnel`; `channel` is
//! accepted too, and the published data carries `channel` either way. Unknown fields are kept.

use hookbus_core::CommandError;
use serde_json::Value;

use crate::notification::{BodyItem, Fields, Notification, collected, items};

pub(crate) const EVENT_NAME: &str = "remita.payment.notification";

/// The fields Remita documents besides `rrr` and `amount`: text, though ids may come as numbers.
const TEXT_FIELDS: [&str; 14] = [
    "channnel",
    "channel",
    "transactiondate",
    "debitdate",
    "bank",
    "branch",
    "serviceTypeId",
    "dateSent",
    "dateRequested",
    "orderRef",
    "payerName",
    "payerEmail",
    "payerPhoneNumber",
    "uniqueIdentifier",
];

pub(crate) fn parse(body: &Value, max_items: usize) -> Result<Vec<Notification>, CommandError> {
    let items = items(body, false, max_items)?;
    let mut errors = Vec::new();
    let mut notifications = Vec::with_capacity(items.len());
    for BodyItem { prefix, object } in items {
        let mut fields = Fields::new(object, &prefix, &mut errors);
        let rrr = fields.required_id("rrr");
        fields.required_amount("amount");
        for name in TEXT_FIELDS {
            fields.optional_id(name);
        }
        let Some(rrr) = rrr else { continue };
        // It becomes a segment of the status API's URL.
        if !rrr.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') || rrr.len() > 64 {
            errors.push(format!("{prefix}rrr must be at most 64 letters, digits or '-'"));
            continue;
        }
        let mut data = object.clone();
        if !data.contains_key("channel")
            && let Some(channel) = object.get("channnel")
        {
            data.insert("channel".into(), channel.clone());
        }
        notifications.push(Notification::keyed_by_reference(EVENT_NAME, ("rrr", rrr), object, data));
    }
    collected(notifications, errors)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_misspelt_channel_is_published_as_channel_and_unknown_fields_are_kept() {
        let body = json!([{"rrr": "110002071256", "channnel": "BRANCH", "amount": "1000.00", "extra": {"a": 1}}]);
        let notifications = parse(&body, 10).unwrap_or_default();
        let data = &notifications[0].event.data;
        assert_eq!(data["channel"], json!("BRANCH"));
        assert_eq!(data["channnel"], json!("BRANCH"));
        assert_eq!(data["extra"], json!({"a": 1}));
        assert_eq!(notifications[0].dedupe_key, "110002071256");
    }

    #[test]
    fn every_bad_item_is_reported() {
        let body = json!([{"rrr": "1", "amount": 5}, {"amount": "x"}, {"rrr": "1/2", "amount": 1, "bank": []}]);
        let Err(CommandError::Validation(errors)) = parse(&body, 10) else { panic!("expected a 422") };
        assert_eq!(
            errors,
            [
                "[1].rrr is required",
                "[1].amount must be a decimal number",
                "[2].bank must be a string or a number, not an array",
                "[2].rrr must be at most 64 letters, digits or '-'",
            ]
        );
    }
}
