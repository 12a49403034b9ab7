use std::{collections::BTreeMap, net::IpAddr};

use hookbus_core::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A request as a handler sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InboundRequest {
    pub key: String,
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    /// Lower-case names; repeated headers joined with ", ".
    pub headers: BTreeMap<String, String>,
    pub ip: IpAddr,
    /// Parsed JSON when the content type is JSON, else the raw text (`null` when empty).
    pub body: Value,
    /// The body exactly as received (lossy UTF-8), for signature checks. Scripts see it as
    /// `raw_body`; it is not part of the request's JSON form.
    #[serde(skip)]
    pub raw_body: String,
    /// Whether `body` is `raw_body` parsed as JSON, as the router parses a JSON request: the
    /// inbound log then keeps the body once, as the raw text, and parses it again when read.
    /// False for a body made any other way.
    #[serde(skip)]
    pub body_from_raw: bool,
    #[serde(serialize_with = "hookbus_core::serialize_timestamp")]
    pub received_at: Timestamp,
}
