//! The dynamic router's HTTP side: `/api/webhooks/{key}` and each configuration's own path.

use std::{collections::BTreeMap, net::IpAddr};

use actix_web::{
    HttpMessage, HttpRequest, HttpResponse,
    http::header::{CONTENT_TYPE, HeaderMap, HeaderName},
    web,
};
use hookbus_configs::CachedConfig;
use hookbus_core::{CommandError, Envelope};
use hookbus_inbound::{Inbound, Receipt};
use hookbus_router::{InboundRequest, admit, not_found};
use serde_json::Value;

use crate::{
    body::read_limited,
    envelope::{error_response, ok_response},
    state::AppState,
};

/// The prefix of the keyed routes, `/api/webhooks/{key}`.
pub const WEBHOOKS: &str = "/api/webhooks";

/// `<ANY> /api/webhooks/{key}`. Served by a scope on the static prefix rather than a `{key}`
/// pattern: actix matches a pattern with a regex, a cost every routed request would pay.
/// Deeper paths under the prefix are reserved: no configuration's own path can be there, so they
/// are 404, as a path that matches nothing.
pub async fn by_key(request: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let entry = match request.path().strip_prefix(WEBHOOKS).and_then(|tail| tail.strip_prefix('/')) {
        Some(key) if !key.is_empty() && !key.contains('/') => {
            request.extensions_mut().insert(RouteLabel("/api/webhooks/{key}"));
            state.configs.by_key(key)
        }
        _ => None,
    };
    respond(route(&request, entry, payload, &state).await)
}

/// The `route` label of a request's metrics when the matched pattern is not the right one.
#[derive(Debug, Clone, Copy)]
pub struct RouteLabel(pub &'static str);

/// Any path no fixed route serves: a configuration's own `path`, else 404.
pub async fn by_path(request: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let entry = state.configs.by_path(request.path());
    respond(route(&request, entry, payload, &state).await)
}

fn respond(result: Result<Answer, CommandError>) -> HttpResponse {
    match result {
        Ok(Answer::Ok(envelope)) => ok_response(envelope),
        Ok(Answer::Accepted(event_id)) => HttpResponse::Accepted().json(Envelope::ok(
            serde_json::json!({"eventId": event_id, "status": hookbus_inbound::InboundStatus::Pending}),
            "Accepted",
        )),
        Err(error) => error_response(&error),
    }
}

async fn route(
    request: &HttpRequest,
    entry: Option<CachedConfig>,
    payload: web::Payload,
    state: &AppState,
) -> Result<Answer, CommandError> {
    let entry = entry.ok_or_else(not_found)?;
    let client = client_ip(request, state)?;
    admit(&entry, request.method().as_str(), client)?;

    let body = read_limited(request, payload, state.body_limits).await?;
    let (parsed, body_from_raw) = parse_body(request.headers(), &body)?;
    let inbound = InboundRequest { body_from_raw, ..inbound_request(request, &entry.key, client, parsed, &body) };
    match Inbound::receive(&state.services, &entry, inbound).await? {
        Receipt::Done(result) => {
            state.metrics.record_execution(entry.execution.execution_type().code(), result.is_ok());
            result.map(|reply| Answer::Ok(reply.into()))
        }
        Receipt::Accepted(event_id) => Ok(Answer::Accepted(event_id)),
    }
}

/// The client's address: the TCP peer, or what a trusted proxy says in `X-Forwarded-For`.
pub(super) fn client_ip(request: &HttpRequest, state: &AppState) -> Result<IpAddr, CommandError> {
    let peer =
        request.peer_addr().map(|addr| addr.ip()).ok_or_else(|| CommandError::Denied("no peer address".into()))?;
    // A name from text is parsed (and a non-standard one copied) at every lookup.
    static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
    let forwarded_for = header_text(request.headers(), &X_FORWARDED_FOR);
    Ok(state.trusted_proxies.client_ip(peer, forwarded_for.as_deref()))
}

/// The request as handlers and the inbound log see it, under `key`, with `body` parsed as the
/// caller decided and `raw` as read.
pub(super) fn inbound_request(request: &HttpRequest, key: &str, ip: IpAddr, body: Value, raw: &[u8]) -> InboundRequest {
    InboundRequest {
        key: key.to_owned(),
        method: request.method().to_string(),
        path: request.path().to_owned(),
        query: web::Query::<BTreeMap<String, String>>::from_query(request.query_string())
            .map(web::Query::into_inner)
            .unwrap_or_default(),
        headers: headers(request.headers()),
        ip,
        body,
        raw_body: String::from_utf8_lossy(raw).into_owned(),
        body_from_raw: false,
        received_at: hookbus_core::now(),
    }
}

/// A successful answer: the handler's result, or a 202 for a queued request.
enum Answer {
    Ok(Envelope),
    Accepted(uuid::Uuid),
}

/// JSON when the content type says so (malformed JSON is a 400), else the text; `null` when empty.
/// With it, whether the value is the body read as JSON ([`InboundRequest::body_from_raw`]; an
/// empty body counts, as reading nothing gives `null`).
fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<(Value, bool), CommandError> {
    if body.is_empty() {
        return Ok((Value::Null, true));
    }
    let is_json = headers.get_all(CONTENT_TYPE).filter_map(|value| value.to_str().ok()).any(is_json_media_type);
    if is_json {
        let value = serde_json::from_slice(body)
            .map_err(|e| CommandError::InvalidBody(format!("body is not valid JSON: {e}")))?;
        Ok((value, true))
    } else {
        Ok((Value::String(String::from_utf8_lossy(body).into_owned()), false))
    }
}

/// `application/json`, or a `+json` type such as `application/cloudevents+json`, in any case,
/// with or without parameters.
fn is_json_media_type(content_type: &str) -> bool {
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    media_type.eq_ignore_ascii_case("application/json")
        || media_type.get(media_type.len().saturating_sub(5)..).is_some_and(|tail| tail.eq_ignore_ascii_case("+json"))
}

/// Lower-case names; repeated headers joined with ", ".
fn headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut map = BTreeMap::<String, String>::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        map.entry(name.as_str().to_owned())
            .and_modify(|existing| {
                existing.push_str(", ");
                existing.push_str(&value);
            })
            .or_insert(value);
    }
    map
}

fn header_text(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let values: Vec<&str> = headers.get_all(name).filter_map(|value| value.to_str().ok()).collect();
    (!values.is_empty()).then(|| values.join(", "))
}

#[cfg(test)]
mod tests {
    use super::is_json_media_type;

    #[test]
    fn json_media_types_are_recognized_in_any_case_with_parameters() {
        for json in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/cloudevents+json",
            " application/json ",
        ] {
            assert!(is_json_media_type(json), "{json}");
        }
        for other in ["text/plain", "application/jsonl", "application/x-www-form-urlencoded", "+jso", ""] {
            assert!(!is_json_media_type(other), "{other}");
        }
    }
}
