//! The request as a log row stores it, and the whole request read back from a row.
//!
//! A row's `request` column keeps only what the row's other columns do not: the configuration key
//! is `config_key`, the arrival time is `received_at`, and a body the router read as JSON is the
//! `raw_body` column parsed again, so that a JSON body costs its size once in the table, its
//! write-ahead log and the writer's traffic. Reading puts them back, so the queries, replays and
//! the async worker see the whole request; in a row that holds everything in `request`, what the
//! row holds wins over what is put back.

use std::{collections::BTreeMap, net::IpAddr};

use hookbus_core::{CommandError, Timestamp};
use hookbus_router::InboundRequest;
use serde::Serialize;
use serde_json::{Map, Value};

/// The stored form: an [`InboundRequest`]'s JSON less what the row has in other columns.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Stored<'a> {
    /// Only when it is not the row's `config_key` (a replay under a renamed configuration).
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    method: &'a str,
    path: &'a str,
    query: &'a BTreeMap<String, String>,
    headers: &'a BTreeMap<String, String>,
    ip: IpAddr,
    /// Only when it is not the row's `received_at` (a replay's row has its own).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "timestamp")]
    received_at: Option<Timestamp>,
    /// Absent when it is the raw body parsed as JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a Value>,
}

/// `request`'s stored form in a row under `config_key` received at `received_at`, its raw body in
/// `raw_body`.
pub(crate) fn to_stored(
    request: &InboundRequest,
    config_key: &str,
    received_at: Timestamp,
) -> Result<String, CommandError> {
    let stored = Stored {
        key: (request.key != config_key).then_some(request.key.as_str()),
        received_at: (request.received_at != received_at).then_some(request.received_at),
        method: &request.method,
        path: &request.path,
        query: &request.query,
        headers: &request.headers,
        ip: request.ip,
        body: (!request.body_from_raw).then_some(&request.body),
    };
    serde_json::to_string(&stored).map_err(CommandError::internal)
}

fn timestamp<S: serde::Serializer>(at: &Option<Timestamp>, serializer: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => hookbus_core::serialize_timestamp(at, serializer),
        None => serializer.serialize_none(),
    }
}

/// A row's whole request as JSON, and whether its body was put back from the raw body.
pub(crate) struct Restored {
    pub request: Map<String, Value>,
    pub body_from_raw: bool,
}

/// The whole request of a row whose `request` column is `stored`.
pub(crate) fn restore(
    stored: &str,
    config_key: &str,
    received_at: Timestamp,
    raw_body: &str,
) -> Result<Restored, CommandError> {
    let mut request: Map<String, Value> = serde_json::from_str(stored).map_err(CommandError::internal)?;
    request.entry("key").or_insert_with(|| Value::String(config_key.to_owned()));
    request.entry("receivedAt").or_insert_with(|| Value::String(hookbus_core::format_timestamp(&received_at)));
    let body_from_raw = !request.contains_key("body");
    if body_from_raw {
        let body = if raw_body.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(raw_body).map_err(CommandError::internal)?
        };
        request.insert("body".to_owned(), body);
    }
    Ok(Restored { request, body_from_raw })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn request(body: Value, raw_body: &str, body_from_raw: bool) -> InboundRequest {
        InboundRequest {
            key: "payments".to_owned(),
            method: "POST".to_owned(),
            path: "/api/webhooks/payments".to_owned(),
            query: BTreeMap::from([("page".to_owned(), "2".to_owned())]),
            headers: BTreeMap::from([("content-type".to_owned(), "application/json".to_owned())]),
            ip: IpAddr::from([10, 0, 0, 7]),
            body,
            raw_body: raw_body.to_owned(),
            body_from_raw,
            received_at: hookbus_core::now(),
        }
    }

    fn round_trip(request: &InboundRequest, config_key: &str) -> (String, Restored) {
        let stored = to_stored(request, config_key, request.received_at).expect("serializable");
        let restored = restore(&stored, config_key, request.received_at, &request.raw_body).expect("restorable");
        (stored, restored)
    }

    #[test]
    fn a_json_body_is_stored_once_and_read_back_whole() {
        let raw = r#"{"amount": 2500, "reference": "B7-000123", "items": [1, 2.5, null]}"#;
        let request = request(serde_json::from_str(raw).expect("JSON"), raw, true);
        let (stored, restored) = round_trip(&request, "payments");
        for left_out in ["\"key\"", "\"receivedAt\"", "\"body\"", "B7-000123"] {
            assert!(!stored.contains(left_out), "{left_out} is stored twice: {stored}");
        }
        assert_eq!(Value::Object(restored.request), serde_json::to_value(&request).expect("serializable"));
        assert!(restored.body_from_raw);
    }

    #[test]
    fn a_body_not_read_from_the_raw_text_and_a_different_key_or_time_are_kept() {
        let request = request(json!("plain text"), "plain text", false);
        let (stored, restored) = round_trip(&request, "renamed");
        assert!(stored.contains("\"body\":\"plain text\"") && stored.contains("\"key\":\"payments\""), "{stored}");
        assert_eq!(Value::Object(restored.request), serde_json::to_value(&request).expect("serializable"));
        assert!(!restored.body_from_raw);

        // A replay's row is received later than the request it runs again.
        let replayed_at = request.received_at + chrono::Duration::seconds(90);
        let stored = to_stored(&request, "payments", replayed_at).expect("serializable");
        let restored = restore(&stored, "payments", replayed_at, &request.raw_body).expect("restorable");
        assert_eq!(Value::Object(restored.request), serde_json::to_value(&request).expect("serializable"));
    }

    #[test]
    fn an_empty_body_reads_back_as_null_and_old_rows_read_as_stored() {
        let request = request(Value::Null, "", true);
        assert_eq!(round_trip(&request, "payments").1.request["body"], Value::Null);
        // A row written before the stored form kept the whole request; its fields win.
        let old = serde_json::to_string(&request).expect("serializable");
        let restored = restore(&old, "other", request.received_at, "{\"ignored\":true}").expect("restorable");
        assert_eq!(Value::Object(restored.request), serde_json::to_value(&request).expect("serializable"));
    }
}
