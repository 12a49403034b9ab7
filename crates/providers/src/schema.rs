//! What each fixed route accepts, as JSON Schema for the OpenAPI document. The routes read their
//! bodies field by field (a provider's spelling and types vary); these types state the same rules
//! for callers, and the tests below hold them to the parsers: every body a parser accepts is valid
//! here, and the documented examples parse.

use schemars::{JsonSchema, Schema, schema_for};
use serde_json::{Map, Value};

use crate::route::Route;

/// An identifier: providers send it as a string or a number.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum Id {
    Text(#[schemars(regex(pattern = r"\S"))] String),
    Number(f64),
}

/// An optional identifier: a string (maybe empty) or a number; `null` counts as absent.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum OptionalId {
    Text(String),
    Number(f64),
}

/// An amount: a number, or a decimal number as a string (`"1000.00"`).
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum Amount {
    Number(f64),
    Text(#[schemars(regex(pattern = r"^\s*-?[0-9]+(\.[0-9]*)?\s*$"))] String),
}

/// Mono's callback: one event. Other members are kept in the inbound log.
#[derive(JsonSchema)]
#[allow(dead_code)]
pub struct MonoCallback {
    /// Mono's event name, published as the event's name (e.g. `direct_debit.payment_successful`).
    #[schemars(regex(pattern = r"\S"))]
    event: String,
    /// Published as the event's data.
    data: Map<String, Value>,
    /// Mono's id of the event: deduplicates retries.
    event_id: Option<OptionalId>,
    timestamp: Option<OptionalId>,
}

/// One payment of Remita's payment notification. Other members are kept and published.
#[derive(JsonSchema)]
#[allow(dead_code)]
pub struct RemitaPayment {
    /// The Remita Retrieval Reference: deduplicates the notification.
    rrr: RemitaReference,
    amount: Amount,
    /// Remita's spelling; published as `channel` too.
    channnel: Option<OptionalId>,
    channel: Option<OptionalId>,
    transactiondate: Option<OptionalId>,
    debitdate: Option<OptionalId>,
    bank: Option<OptionalId>,
    branch: Option<OptionalId>,
    #[serde(rename = "serviceTypeId")]
    service_type_id: Option<OptionalId>,
    #[serde(rename = "dateSent")]
    date_sent: Option<OptionalId>,
    #[serde(rename = "dateRequested")]
    date_requested: Option<OptionalId>,
    #[serde(rename = "orderRef")]
    order_ref: Option<OptionalId>,
    #[serde(rename = "payerName")]
    payer_name: Option<OptionalId>,
    #[serde(rename = "payerEmail")]
    payer_email: Option<OptionalId>,
    #[serde(rename = "payerPhoneNumber")]
    payer_phone_number: Option<OptionalId>,
    #[serde(rename = "uniqueIdentifier")]
    unique_identifier: Option<OptionalId>,
}

/// An RRR: at most 64 letters, digits or `-`, or a number.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum RemitaReference {
    Text(#[schemars(regex(pattern = r"^\s*[A-Za-z0-9-]{1,64}\s*$"))] String),
    Number(#[schemars(schema_with = "any_integer")] i64),
}

/// Any integer, however large: the route reads it as text.
fn any_integer(_: &mut schemars::SchemaGenerator) -> Schema {
    schemars::json_schema!({"type": "integer"})
}

/// One result of Remita's collection notification. It needs a reference (`transactionRef`,
/// `requestId` or `rrr`: the first present deduplicates it); other members are kept and published.
#[derive(JsonSchema)]
#[schemars(extend("anyOf" = [
    {"required": ["transactionRef"], "properties": {"transactionRef": {"$ref": "#/$defs/Id"}}},
    {"required": ["requestId"], "properties": {"requestId": {"$ref": "#/$defs/Id"}}},
    {"required": ["rrr"], "properties": {"rrr": {"$ref": "#/$defs/Id"}}},
]))]
#[allow(dead_code)]
pub struct RemitaCollection {
    #[serde(rename = "transactionRef")]
    transaction_ref: Option<OptionalId>,
    #[serde(rename = "requestId")]
    request_id: Option<OptionalId>,
    rrr: Option<OptionalId>,
    #[serde(rename = "mandateId")]
    mandate_id: Id,
    amount: Amount,
    /// Remita's status of the debit.
    #[schemars(regex(pattern = r"\S"))]
    status: String,
}

/// A collection notification: one result, or several.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum RemitaCollectionBody {
    One(RemitaCollection),
    Many(#[schemars(length(min = 1))] Vec<RemitaCollection>),
}

/// A payment notification: one payment or more.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct RemitaPaymentBody(#[schemars(length(min = 1))] Vec<RemitaPayment>);

impl Route {
    /// The JSON Schema of the route's request body.
    pub fn body_schema(self) -> Schema {
        match self {
            Self::MonoCallback => schema_for!(MonoCallback),
            Self::RemitaPayment => schema_for!(RemitaPaymentBody),
            Self::RemitaCollection => schema_for!(RemitaCollectionBody),
        }
    }

    /// A body the route accepts, for the documentation.
    pub fn example(self) -> Value {
        match self {
            Self::MonoCallback => serde_json::json!({
                "event": "direct_debit.payment_successful",
                "data": {"id": "txd_6823d1d2b1b5", "status": "successful", "amount": 500000,
                         "mandate": "mmc_6823d1d2b1b5a6b7"},
                "event_id": "evt_0c9f2a"
            }),
            Self::RemitaPayment => serde_json::json!([{
                "rrr": "280007021192", "amount": "5000.00", "channnel": "BRANCH",
                "transactiondate": "2026-11-30 10:15:00", "orderRef": "ORD-1", "payerName": "Ada Obi"
            }]),
            Self::RemitaCollection => serde_json::json!({
                "transactionRef": "T-1", "mandateId": "290007021192", "amount": 2500, "status": "SUCCESSFUL"
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn valid(route: Route, body: &Value) -> bool {
        let schema = route.body_schema().to_value();
        jsonschema::validator_for(&schema).expect("the schema compiles").is_valid(body)
    }

    fn parses(route: Route, body: &Value) -> bool {
        route.parse(body, 100).is_ok()
    }

    #[test]
    fn the_examples_parse_and_are_valid() {
        for route in Route::ALL {
            let example = route.example();
            assert!(parses(route, &example), "{route:?}'s example does not parse");
            assert!(valid(route, &example), "{route:?}'s example is not valid against its schema");
        }
    }

    #[test]
    fn what_the_parsers_accept_the_schemas_accept() {
        let cases = [
            (Route::MonoCallback, json!({"event": "x", "data": {}, "event_id": 7, "timestamp": "t", "more": [1]})),
            (Route::MonoCallback, json!({"event": "x", "data": {"a": 1}, "event_id": null})),
            (Route::RemitaPayment, json!([{"rrr": 12345, "amount": 10}, {"rrr": "A-1", "amount": " 10.5 ", "x": {}}])),
            (Route::RemitaPayment, json!([{"rrr": "A1", "amount": "3.", "channel": null}])),
            (Route::RemitaCollection, json!({"requestId": 9, "mandateId": "M", "amount": "1", "status": "OK"})),
            (Route::RemitaCollection, json!([{"rrr": "R", "mandateId": 2, "amount": 1.5, "status": "FAILED"}])),
            (
                Route::RemitaCollection,
                json!({"transactionRef": "", "rrr": 7, "mandateId": 2, "amount": 1, "status": "OK"}),
            ),
            (Route::RemitaPayment, json!([{"rrr": 506.0, "amount": 1, "uniqueIdentifier": ""}])),
        ];
        for (route, body) in cases {
            assert!(parses(route, &body), "{route:?} refuses {body}");
            assert!(valid(route, &body), "{route:?}'s schema refuses {body}");
        }
    }

    #[test]
    fn what_the_schemas_refuse_the_parsers_refuse() {
        let cases = [
            (Route::MonoCallback, json!({"data": {}})),
            (Route::MonoCallback, json!({"event": "x", "data": []})),
            (Route::MonoCallback, json!({"event": "", "data": {}})),
            (Route::RemitaPayment, json!([])),
            (Route::RemitaPayment, json!({"rrr": "A", "amount": 1})),
            (Route::RemitaPayment, json!([{"rrr": "a b", "amount": 1}])),
            (Route::RemitaPayment, json!([{"rrr": "A", "amount": "ten"}])),
            (Route::RemitaCollection, json!({"mandateId": "M", "amount": 1, "status": "OK"})),
            (Route::RemitaCollection, json!({"rrr": "R", "mandateId": "M", "amount": 1, "status": ""})),
            (Route::RemitaCollection, json!([])),
            (
                Route::RemitaCollection,
                json!({"transactionRef": "T", "rrr": {}, "mandateId": 2, "amount": 1, "status": "OK"}),
            ),
            (Route::RemitaCollection, json!({"requestId": null, "mandateId": 2, "amount": 1, "status": "OK"})),
        ];
        for (route, body) in cases {
            assert!(!parses(route, &body), "{route:?} accepts {body}");
            assert!(!valid(route, &body), "{route:?}'s schema accepts {body}");
        }
    }
}
